#!/usr/bin/env bash
# Prepare the VM (as root) and run the harness smoke test in it; non-zero on any failure.
# Extra arguments go to run.sh (e.g. --timeout 600, --kernel-log).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

"$here/prepare.sh"
start=$(date +%s)
if "$here/run.sh" --test "$here/smoke-test.sh" "$@"; then
    echo "vm/check: smoke test passed ($(( $(date +%s) - start ))s boot + test)"
else
    rc=$?
    echo "vm/check: FAIL: smoke test failed (status $rc)" >&2
    exit "$rc"
fi

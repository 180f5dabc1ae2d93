#!/usr/bin/env bash
# Prepare the VM (as root), run the harness smoke test in it, then rootbox's cgroup tests
# (cgroup-test.sh) with the built binaries and a busybox rootfs; non-zero on any failure.
# Extra arguments go to run.sh (e.g. --timeout 600, --kernel-log).
#
# Environment: ROOTBOX_BIN (directory with rootbox and rootbox-runtime, default
# <repo>/target/release: `cargo build --release` first).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
bin=${ROOTBOX_BIN:-$repo/target/release}

"$here/prepare.sh"

failed=0
start=$(date +%s)
if "$here/run.sh" --test "$here/smoke-test.sh" "$@"; then
    echo "vm/check: smoke test passed ($(( $(date +%s) - start ))s boot + test)"
else
    rc=$?
    echo "vm/check: FAIL: smoke test failed (status $rc)" >&2
    exit "$rc"
fi

for b in rootbox rootbox-runtime rootbox-monitor rootbox-monitor-supervise; do
    if [ ! -x "$bin/$b" ]; then
        echo "vm/check: FAIL: $bin/$b not found: run 'cargo build --release' (or set ROOTBOX_BIN)" >&2
        exit 1
    fi
done
bin=$(cd "$bin" && pwd)
# The binaries go to /opt/rootbox/bin in the VM: a checkout under /tmp, /run or /home would be
# hidden by the VM's own mounts there (--bin still brings their shared libraries).
vbin=/opt/rootbox/bin
work=$(mktemp -d "${TMPDIR:-/tmp}/rootbox-vmcheck.XXXXXX")
trap 'rm -rf "$work"' EXIT
"$repo/tests/lib/mk-busybox-rootfs.sh" "$work/rootfs" >/dev/null
# The same tree as a tarball for `rootbox import` (made here: in the VM the test user cannot
# read the rootfs's /root).
tar -C "$work/rootfs" -cf "$work/busybox.tar" .

start=$(date +%s)
if "$here/run.sh" --bin "$bin/rootbox" --bin "$bin/rootbox-runtime" --bin "$bin/rootbox-monitor" \
    --bin "$bin/rootbox-monitor-supervise" \
    --file "$bin/rootbox:$vbin/rootbox" --file "$bin/rootbox-runtime:$vbin/rootbox-runtime" \
    --file "$bin/rootbox-monitor:$vbin/rootbox-monitor" \
    --file "$bin/rootbox-monitor-supervise:$vbin/rootbox-monitor-supervise" \
    --file "$work/rootfs:/opt/rootbox-rootfs" --file "$work/busybox.tar:/opt/rootbox-busybox.tar" \
    --env ROOTBOX="$vbin/rootbox" --env ROOTBOX_RUNTIME="$vbin/rootbox-runtime" \
    --env ROOTBOX_MONITOR="$vbin/rootbox-monitor" \
    --env ROOTFS=/opt/rootbox-rootfs --env IMAGE_TAR=/opt/rootbox-busybox.tar --test "$here/cgroup-test.sh" "$@"; then
    echo "vm/check: cgroup tests passed ($(( $(date +%s) - start ))s boot + test)"
else
    rc=$?
    echo "vm/check: FAIL: cgroup tests failed (status $rc)" >&2
    failed=$rc
fi
exit "$failed"

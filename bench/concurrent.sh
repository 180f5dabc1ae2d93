#!/usr/bin/env bash
# N containers started at once: `rootbox run --rm IMAGE true` x N in parallel, for N = 1, 10,
# 50 (and podman for N = 1 and 10, for scale): total wall time, and per-container cost.
#
#   bench/concurrent.sh            (make bench runs it; BENCH_RUNS, default 5)
#
# Target: 50 concurrent starts take no longer than 50 single starts (n50/n1 <= 50).
set -euo pipefail
NAME=concurrent
# shellcheck source=bench/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
: "${BENCH_RUNS:=5}"
: "${BENCH_WARMUP:=1}"

busybox_image
IMG=bench/busybox:1
cat >"$WORK/bin/par" <<'SH'
#!/bin/bash
# par N CMD...: N copies of CMD at once; fails when any fails.
n=$1; shift
pids=()
for _ in $(seq "$n"); do "$@" & pids+=($!); done
rc=0
for p in "${pids[@]}"; do wait "$p" || rc=1; done
exit $rc
SH
chmod 0755 "$WORK/bin/par"
for n in 1 10 50; do
    add "rootbox-n$n" "$WORK/bin/par $n $RB run --rm --network none $IMG true"
done
if [ -z "$PODMAN_ERROR" ]; then
    for n in 1 10; do
        add "podman-n$n" "$WORK/bin/par $n $PODMAN run --rm --network none localhost/$IMG true"
    done
else
    skip podman-n1 "$PODMAN_ERROR"
fi
check_and_time host
report "N concurrent run --rm IMAGE true (network none)" \
    "rootbox-n50/rootbox-n1<=50" "rootbox-n10/rootbox-n1<=10" "rootbox-n10/podman-n10<=0.2"

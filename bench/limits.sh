#!/usr/bin/env bash
# The cost of applying limits, where cgroups are delegated: in the cgroup v2 VM (tests/vm, a
# delegated subtree for uid 1000), `rootbox run --rm --rootfs ROOTFS true` without a cgroup,
# in a cgroup of its own, and with memory + pids + cpu limits. The VM runs under emulation
# (TCG) when there is no KVM, so the absolute times are slow; the ratios are what count.
#
#   bench/limits.sh            (bench/all.sh limits; needs root for the VM's image, like
#                               tests/vm/check.sh)
set -euo pipefail
NAME=limits
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=${ROOTBOX_BIN:-$REPO/target/release}
RESULTS=${BENCH_RESULTS:-$REPO/bench/results}
vm=$REPO/tests/vm
"$vm/prepare.sh" >/dev/null
work=$(mktemp -d /tmp/rbl.XXXXXX)
trap 'rm -rf "$work"' EXIT
"$REPO/tests/lib/mk-busybox-rootfs.sh" "$work/rootfs" >/dev/null
vbin=/opt/rootbox/bin
"$vm/run.sh" --bin "$BIN/rootbox" --bin "$BIN/rootbox-monitor" --bin "$BIN/rootbox-monitor-supervise" \
    --file "$BIN/rootbox:$vbin/rootbox" --file "$BIN/rootbox-monitor:$vbin/rootbox-monitor" \
    --file "$BIN/rootbox-monitor-supervise:$vbin/rootbox-monitor-supervise" \
    --file "$work/rootfs:/opt/rootbox-rootfs" \
    --env ROOTBOX="$vbin/rootbox" --env ROOTBOX_MONITOR="$vbin/rootbox-monitor" \
    --env ROOTFS=/opt/rootbox-rootfs --env BENCH_RUNS="${BENCH_RUNS:-15}" \
    --test "$REPO/bench/limits-vm-test.sh" | tee "$work/out"
extra=$(awk '/^BENCH /{printf "%s\"%s\": {\"value\": %s, \"unit\": \"ms\"}", (n++ ? ", " : "{"), $2, $3} END{if (n) print "}"}' "$work/out")
[ -n "$extra" ] || { echo "bench/limits: no BENCH lines from the VM" >&2; exit 1; }
mkdir -p "$RESULTS"
EXTRA_JSON=$extra python3 "$REPO/bench/report.py" \
    "run --rm true in the cgroup v2 VM: without a cgroup, in one, and with limits" \
    "$RESULTS/limits.json" /nonexistent "limits/no-cgroup" "cgroup-only/no-cgroup"

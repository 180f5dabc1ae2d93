#!/bin/sh
# Run inside the cgroup v2 VM by bench/limits.sh, as uid 1000 with a delegated subtree (busybox
# sh): start-to-exit of `rootbox run --rootfs ROOTFS true` without and with limits (each in
# its own cgroup), alternating, N times each. Prints "BENCH name ms_median" lines.
set -u
: "${ROOTBOX:?}" "${ROOTFS:?}"
N=${BENCH_RUNS:-15}
# Centiseconds since boot (busybox's date has no %N; the runs take far more than 10 ms here).
cs() { read -r up _ </proc/uptime; echo "${up%.*}${up#*.}"; }
t() { # t ARGS...: microseconds of one run
    a=$(cs)
    "$ROOTBOX" run --rm --network none "$@" --rootfs "$ROOTFS" true >/dev/null 2>&1 || echo "FAIL $*" >&2
    b=$(cs)
    echo $(((b - a) * 10000))
}
: >/tmp/plain; : >/tmp/cgroup; : >/tmp/limits
i=0
while [ "$i" -lt "$N" ]; do
    t >>/tmp/plain
    t --cgroup-manager cgroupfs --cpu-shares 1024 >>/tmp/cgroup
    t --memory 64m --memory-swap 64m --pids-limit 100 --cpus 0.5 >>/tmp/limits
    i=$((i + 1))
done
med() { sort -n "$1" | awk '{a[NR]=$1} END{m=a[int((NR+1)/2)]; printf "%.2f\n", m/1000}'; }
echo "BENCH no-cgroup $(med /tmp/plain)"
echo "BENCH cgroup-only $(med /tmp/cgroup)"
echo "BENCH limits $(med /tmp/limits)"
echo "ROOTBOX-BENCH-DONE"

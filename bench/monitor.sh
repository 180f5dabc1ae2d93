#!/usr/bin/env bash
# Resident memory of a detached container's monitor: rootbox-monitor vs podman's conmon, each
# holding a running `sleep` container, as the unprivileged user. Measured from /proc: VmRSS,
# Pss and private memory (Private_Clean + Private_Dirty, what one more container costs),
# averaged over K containers each (BENCH_CONTAINERS, default 3).
#
#   bench/monitor.sh            (make bench runs it)
#
# Target: the monitor's RSS no more than conmon's (rootbox-monitor/conmon <= 1).
set -euo pipefail
NAME=monitor
# shellcheck source=bench/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
K=${BENCH_CONTAINERS:-3}

busybox_image
IMG=bench/busybox:1
ids=()
for _ in $(seq "$K"); do
    ids+=("$(as_user "$RB" run -d --network none "$IMG" sleep 3600)")
done
podman_ids=()
if [ -z "$PODMAN_ERROR" ]; then
    for _ in $(seq "$K"); do
        if id=$(as_user $PODMAN run -d --network none "localhost/$IMG" sleep 3600 2>"$WORK/podman.err"); then
            podman_ids+=("$id")
        else
            PODMAN_ERROR="podman run -d failed: $(tail -c 300 "$WORK/podman.err")"
            break
        fi
    done
fi
sleep 1
uid=$(id -u "$BENCH_USER")
# measure NAME PGREP-ARGS...: mean VmRSS, Pss, private MiB of the matching processes of the
# benchmark user.
measure() {
    local name=$1 pids
    shift
    pids=$(pgrep -u "$uid" "$@" || true)
    [ -n "$pids" ] || return 1
    python3 - "$name" $pids <<'PY'
import json, sys
comm, *pids = sys.argv[1:]
tot = {"rss": 0, "pss": 0, "private": 0}
for p in pids:
    st = dict(l.split(":", 1) for l in open(f"/proc/{p}/status"))
    tot["rss"] += int(st["VmRSS"].split()[0])
    sm = dict(l.split(":", 1) for l in open(f"/proc/{p}/smaps_rollup").readlines()[1:])
    kb = lambda k: int(sm[k].split()[0])
    tot["pss"] += kb("Pss")
    tot["private"] += kb("Private_Clean") + kb("Private_Dirty")
n = len(pids)
print(json.dumps({f"{comm}-{k}": {"value": v / n / 1024, "unit": "MiB"} for k, v in tot.items()}
                 | {f"{comm}-count": {"value": n, "unit": "processes"}}))
PY
}
# The idle monitor is rootbox-monitor-supervise, run as `rootbox-monitor --supervise ...` (its
# comm is "rootbox-monitor", the first 15 characters of the file name).
extra=$(measure rootbox-monitor -f "^rootbox-monitor --supervise --root $WORK/") || die "no rootbox-monitor process found"
if [ -z "$PODMAN_ERROR" ]; then
    if c=$(measure conmon -x conmon); then
        extra=$(python3 -c 'import json,sys; print(json.dumps(json.loads(sys.argv[1]) | json.loads(sys.argv[2])))' "$extra" "$c")
    else
        skip conmon "no conmon process found for podman's containers"
    fi
else
    skip conmon "$PODMAN_ERROR"
fi
for id in "${ids[@]}"; do as_user "$RB" rm -f "$id" >/dev/null; done
for id in "${podman_ids[@]}"; do as_user podman rm -f -t 0 "$id" >/dev/null 2>&1 || true; done
EXTRA_JSON=$extra report "resident memory of a detached container's monitor (MiB per container)" \
    "rootbox-monitor-rss/conmon-rss<=1" "rootbox-monitor-private/conmon-private<=1"

#!/usr/bin/env bash
# `exec CTR true` into a running container: rootbox exec vs crun exec vs podman exec, as the
# unprivileged user, alternating in one hyperfine run.
#
#   bench/exec.sh            (make bench runs it; BENCH_RUNS, default 30)
#
# crun refuses hybrid cgroup hosts: as root every command runs in a private mount namespace
# where the cgroup2 mount is detached (see lib.sh); without root on such a host crun is
# skipped.
set -euo pipefail
NAME=exec
# shellcheck source=bench/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
: "${BENCH_RUNS:=30}"

busybox_image
IMG=bench/busybox:1
mode=host
cmode=$(crun_mode)
[ "$cmode" = private ] && mode=private

rb_id=$(run_in "$mode" "$RB" run -d --network none "$IMG" sleep 3600)
add rootbox "$RB exec $rb_id true"

if [ -n "$cmode" ]; then
    # crun's container: the same busybox tree as a rootless bundle running sleep.
    b=$WORK/bundle
    mkdir -p "$b"
    cp -a "$WORK/rootfs" "$b/rootfs"
    [ "$AS_ROOT" = 1 ] && chown -R "$BENCH_USER:" "$b"
    run_in "$mode" crun spec --rootless --bundle "$b"
    run_in "$mode" python3 - "$b/config.json" <<'PY'
import json, sys
p = sys.argv[1]
c = json.load(open(p))
c["process"]["terminal"] = False
c["process"]["args"] = ["sleep", "3600"]
c["linux"].pop("resources", None)
json.dump(c, open(p, "w"))
PY
    run_in "$mode" crun --cgroup-manager=disabled --root "$WORK/xdg/crun" run -d --bundle "$b" bench-crun \
        </dev/null >/dev/null 2>"$WORK/xdg/crun.err" || skip crun "crun run -d failed: $(tail -c 300 "$WORK/xdg/crun.err")"
    [ -z "${SKIPPED[crun]:-}" ] && add crun "crun --cgroup-manager=disabled --root $WORK/xdg/crun exec bench-crun true"
else
    skip crun "crun refuses hybrid cgroups here; detaching the cgroup2 mount needs root"
fi
if [ -z "$PODMAN_ERROR" ]; then
    if pid=$(run_in "$mode" $PODMAN run -d --network none "localhost/$IMG" sleep 3600 2>"$WORK/podman.err"); then
        add podman "$PODMAN exec $pid true"
    else
        skip podman "podman run -d failed: $(tail -c 300 "$WORK/podman.err")"
    fi
else
    skip podman "$PODMAN_ERROR"
fi
check_and_time "$mode"
run_in "$mode" "$RB" rm -f "$rb_id" >/dev/null 2>&1 || true
[ -n "$cmode" ] && run_in "$mode" crun --root "$WORK/xdg/crun" delete -f bench-crun >/dev/null 2>&1 || true
report "exec CTR true into a running container" "rootbox/crun<=1" "rootbox/podman<=1"

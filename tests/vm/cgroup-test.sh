#!/bin/sh
# rootbox's cgroup v2 tests, run by run.sh inside the VM as uid 1000 (busybox sh), after the
# harness smoke test (check.sh). Exercises both front doors, `rootbox run` and the OCI runtime
# `rootbox-runtime`, against kernel-enforced limits in the subtree delegated to the user.
#
# Environment (from check.sh's --env): ROOTBOX, ROOTBOX_RUNTIME (the binaries), ROOTFS (a
# busybox rootfs from tests/lib/mk-busybox-rootfs.sh), IMAGE_TAR (the same as a tarball).
# Output: TAP lines, then "N passed, N failed"; exit status 0 only if all passed.
set -u

: "${ROOTBOX:?}" "${ROOTBOX_RUNTIME:?}" "${ROOTFS:?}"
CG=/sys/fs/cgroup
SVC=$CG/user.slice/user-1000.slice/user@1000.service
BASE=$SVC/rootbox
STATE=/tmp/rt-state
W=/tmp/cgtest
mkdir -p "$W" "$STATE"

n=0 failed=0
# Each result says how long its test took (uptime since the previous result): when the VM is slow
# or a step hangs, run.sh's timeout report shows where the time went.
T0=$(cut -d' ' -f1 /proc/uptime)
took() {  # sets TOOK, e.g. "1.3s" (not in a subshell: T0 must move on)
    t=$(cut -d' ' -f1 /proc/uptime)
    TOOK=$(awk -v a="$T0" -v b="$t" 'BEGIN { printf "%.1fs", b - a }')
    T0=$t
}
ok() { n=$((n + 1)); took; echo "ok $n - $1 [$TOOK]"; }
not_ok() {
    n=$((n + 1)); failed=$((failed + 1)); took; echo "not ok $n - $1 [$TOOK]"; shift
    for l in "$@"; do printf '%s\n' "$l" | sed 's/^/#   /'; done
}
field() { sed -n "s/^$2 //p" "$1" 2>/dev/null; }  # field FILE KEY
rb() { "$ROOTBOX" "$@"; }
rt() { "$ROOTBOX_RUNTIME" --root "$STATE" "$@"; }
run_in() { rb run --network none --rootfs "$ROOTFS" "$@"; }  # run_in [OPTS] -- CMD
# wait_for COND-COMMAND [TENTHS]: poll until it succeeds
wait_for() {
    i=0; while ! sh -c "$1" >/dev/null 2>&1; do
        i=$((i + 1)); [ "$i" -ge "${2:-100}" ] && return 1; sleep 0.1
    done
}
has_all() {  # has_all TEXT STRING...: TEXT contains every STRING
    t=$1; shift
    for s in "$@"; do case $t in *"$s"*) ;; *) return 1 ;; esac; done
}
alive() { [ -d "/proc/$1" ] && ! grep -q '^State:.*Z' "/proc/$1/status" 2>/dev/null; }
# bundle NAME ARGS_JSON [RESOURCES_JSON] [NAMESPACES_JSON]: an OCI bundle on $ROOTFS
# (without a pid namespace, /proc is the host's, bound: a new procfs needs its own pid namespace)
bundle() {
    b=$W/$1; mkdir -p "$b"
    ns=${4:-'[{"type":"pid"},{"type":"ipc"},{"type":"uts"},{"type":"mount"},{"type":"cgroup"},{"type":"user"},{"type":"network"}]'}
    proc='{"destination": "/proc", "type": "proc", "source": "proc"}'
    case $ns in *pid*) ;; *) proc='{"destination": "/proc", "type": "bind", "source": "/proc", "options": ["rbind"]}' ;; esac
    cat >"$b/config.json" <<EOF
{
  "ociVersion": "1.2.0",
  "process": {"terminal": false, "user": {"uid": 0, "gid": 0}, "args": $2,
              "env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"], "cwd": "/"},
  "root": {"path": "$ROOTFS", "readonly": true},
  "hostname": "rt",
  "mounts": [
    $proc,
    {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "mode=755"]},
    {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "nodev"]}
  ],
  "linux": {"namespaces": $ns, "resources": ${3:-"{}"}}
}
EOF
    echo "$b"
}
# state_field ID KEY: a string/number field of `rootbox-runtime state`
state_field() { rt state "$1" 2>/dev/null | sed -n "s/^ *\"$2\": \"\{0,1\}\([^\",]*\)\"\{0,1\},\{0,1\}$/\1/p"; }

echo "# rootbox: $($ROOTBOX --version 2>&1), kernel $(uname -r), $(grep -c ^processor /proc/cpuinfo) CPUs"

# --- the "no internal processes" rule: the caller sits in the delegated cgroup itself --------
# Like a shell in a delegated service's own cgroup: enabling controllers there needs its
# processes moved to a leaf first, which rootbox must do.
if echo $$ >"$SVC/cgroup.procs" 2>/dev/null; then
    out=$(run_in --memory 64m -- cat /sys/fs/cgroup/memory.max 2>&1); rc=$?
    mine=$(sed -n 's/^0:://p' /proc/self/cgroup)
    if [ $rc = 0 ] && [ "$out" = 67108864 ] && [ "$mine" = "/user.slice/user-1000.slice/user@1000.service/leaf" ]; then
        ok "caller in the delegated cgroup: moved to a leaf, controllers enabled, memory.max set"
    else
        not_ok "caller in the delegated cgroup is moved to a leaf" "rc=$rc out=$out" "now in: $mine"
    fi
else
    not_ok "move the test shell into $SVC (harness)" "$(cat /proc/self/cgroup)"
fi

# --- discovery ----------------------------------------------------------------------------
info=$(rb info --json 2>&1)
if echo "$info" | grep -q '"version": "v2"' && echo "$info" | grep -q "\"delegated\": \"$SVC\"" \
    && echo "$info" | grep -q '"manager": "cgroupfs"' \
    && ! echo "$info" | grep -q '"enforceable": false'; then
    ok "rootbox info --json: v2, delegated $SVC, cgroupfs, every limit enforceable"
else
    not_ok "rootbox info --json reports the delegated v2 layout" "$info"
fi
txt=$(rb info 2>&1)
case $txt in
    *"cgroup version:    v2"*"delegated:       $SVC"*) ok "rootbox info (text) shows the delegated cgroup" ;;
    *) not_ok "rootbox info (text) shows the delegated cgroup" "$txt" ;;
esac

# --- a container without limits: own cgroup, entered at clone, namespace rooted there -------
out=$(run_in --name plain -- sh -c 'cat /proc/self/cgroup; ls /sys/fs/cgroup/ | grep -c memory' 2>&1); rc=$?
if [ $rc = 0 ] && echo "$out" | grep -qx '0::/'; then
    ok "container without limits runs in its own cgroup (cgroup namespace root: 0::/)"
    if [ -d "$BASE" ] && [ -z "$(find "$BASE" -mindepth 1 -maxdepth 1 -type d)" ]; then ok "its cgroup is gone after the run"; else not_ok "its cgroup is gone after the run" "$(ls -la "$BASE" 2>&1)"; fi
else
    not_ok "container without limits runs in its own cgroup" "rc=$rc" "$out"
fi

# --- memory: OOM kill is reported ----------------------------------------------------------
err=$(run_in --name oom --memory 32m -- dd if=/dev/zero of=/dev/null bs=100M count=1 2>&1 >/dev/null); rc=$?
if [ $rc = 137 ] && echo "$err" | grep -q "OOM-killed"; then
    ok "rootbox run --memory 32m: a 100 MiB allocation is OOM-killed (exit 137, reported)"
else
    not_ok "rootbox run --memory 32m OOM-kills a 100 MiB allocation" "rc=$rc" "stderr: $err"
fi
# The fallback of kernels without CLONE_INTO_CGROUP: the parent writes the pid to cgroup.procs
# before the child may go on.
err=$(ROOTBOX_CGROUP_ENTRY=procs run_in --name fb --memory 32m -- sh -c 'cat /proc/self/cgroup; exec dd if=/dev/zero of=/dev/null bs=100M count=1' 2>&1); rc=$?
if [ $rc = 137 ] && has_all "$err" "OOM-killed" "/rootbox/"; then
    ok "cgroup.procs fallback (no CLONE_INTO_CGROUP): the process starts limited, OOM-killed"
else
    not_ok "cgroup.procs fallback enforces the memory limit" "rc=$rc" "$err"
fi
out=$(run_in --memory 32m -- dd if=/dev/zero of=/dev/null bs=8M count=1 2>&1); rc=$?
if [ $rc = 0 ]; then ok "--memory 32m: an 8 MiB allocation succeeds"; else not_ok "--memory 32m: an 8 MiB allocation succeeds" "rc=$rc $out"; fi
out=$(run_in --memory 1.5g --memory-swap -1 --memory-reservation 16m -- sh -c 'cat /sys/fs/cgroup/memory.max /sys/fs/cgroup/memory.swap.max /sys/fs/cgroup/memory.low' 2>&1)
if [ "$(echo $out)" = "1610612736 max 16777216" ]; then
    ok "--memory 1.5g --memory-swap -1 --memory-reservation 16m: memory.max, swap.max, low"
else
    not_ok "human sizes and swap reach the cgroup files" "$out"
fi

b=$(bundle oomb '["dd", "if=/dev/zero", "of=/dev/null", "bs=100M", "count=1"]' '{"memory": {"limit": 33554432}}')
if rt create --bundle "$b" oomb >/dev/null 2>&1 && rt start oomb; then
    wait_for "! $ROOTBOX_RUNTIME --root $STATE state oomb | grep -q running" 200
    st=$(rt state oomb 2>&1)
    if echo "$st" | grep -q '"status": "stopped"' && echo "$st" | grep -q '"oomKilled": true'; then
        ok "rootbox-runtime: linux.resources.memory.limit 32 MiB, OOM-killed, state says oomKilled"
    else
        not_ok "rootbox-runtime state reports the OOM kill" "$st"
    fi
    ev=$(rt events --stats oomb 2>&1)
    if has_all "$ev" '"type":"stats"' '"oom_kill":1' '"id":"oomb"'; then
        ok "rootbox-runtime events --stats: stats JSON with the OOM kill"
    else
        not_ok "rootbox-runtime events --stats" "$ev"
    fi
    rt delete oomb
else
    not_ok "rootbox-runtime create/start with a memory limit" "$(rt state oomb 2>&1)"
fi

# --- pids: the 21st process cannot be forked ------------------------------------------------
# The shell is process 1 of 20; it forks sleeps until a fork fails (ash then exits).
# shellcheck disable=SC2016  # expanded in the container
out=$(run_in --pids-limit 20 -- sh -c 'i=0; while [ $i -lt 40 ]; do sleep 30 & i=$((i + 1)); echo $i; done' 2>"$W/pids.err")
last=$(echo "$out" | tail -n1)
if [ "$last" = 19 ] && grep -qi "fork" "$W/pids.err"; then
    ok "--pids-limit 20: 19 children forked, the 21st process was refused"
else
    not_ok "--pids-limit 20 stops the 21st process" "forked: $last" "stderr: $(cat "$W/pids.err")"
fi

# --- cpu: --cpus 0.5 gets half a CPU -----------------------------------------------------------
run_in --name cpu --cpus 0.5 -- sh -c 'while :; do :; done' >/dev/null 2>&1 &
cpu_job=$!
# finish_job PID: wait for a background job, at most 30 s; then kill it and every container
# cgroup left under $BASE (a busy loop that never ends would hang the whole VM run).
finish_job() {
    i=0
    while kill -0 "$1" 2>/dev/null && [ "$i" -lt 300 ]; do i=$((i + 1)); sleep 0.1; done
    if kill -0 "$1" 2>/dev/null; then
        for k in "$BASE"/*/cgroup.kill; do [ -e "$k" ] && echo 1 >"$k"; done
        kill -9 "$1" 2>/dev/null
    fi
    wait "$1" 2>/dev/null
}
# The cgroup is named after the container's id (the name is only a label).
cid_of() { rb inspect "$1" 2>/dev/null | sed -n 's/^ *"Id": "\([0-9a-f]*\)".*/\1/p' | head -1; }
CPU=
for _ in $(seq 300); do
    c=$(cid_of cpu)
    if [ -n "$c" ] && [ -e "$BASE/$c/cpu.stat" ]; then CPU=$BASE/$c; break; fi
    sleep 0.1
done
if [ -n "$CPU" ]; then
    sleep 1
    u0=$(field "$CPU/cpu.stat" usage_usec); t0=$(cut -d' ' -f1 /proc/uptime)
    sleep 5
    u1=$(field "$CPU/cpu.stat" usage_usec); t1=$(cut -d' ' -f1 /proc/uptime)
    pct=$(awk -v a="$u0" -v b="$u1" -v s="$t0" -v e="$t1" 'BEGIN { printf "%d", (b - a) / ((e - s) * 10000) }')
    max=$(cat "$CPU/cpu.max")
    if [ "$pct" -ge 40 ] && [ "$pct" -le 60 ] && [ "$max" = "50000 100000" ]; then
        ok "--cpus 0.5: a busy loop got $pct% of a CPU over $(awk -v s="$t0" -v e="$t1" 'BEGIN{print e-s}')s (cpu.max $max)"
    else
        not_ok "--cpus 0.5 gives 40-60% of a CPU" "got $pct% (usage $u0 -> $u1 us, uptime $t0 -> $t1), cpu.max: $max"
    fi
    st=$(rb stats --no-stream cpu 2>&1)
    case $st in
        *NAME*cpu*%*) ok "rootbox stats --no-stream shows the running container" ;;
        *) not_ok "rootbox stats --no-stream" "$st" ;;
    esac
    js=$(rb stats --no-stream --format json cpu 2>&1)
    if has_all "$js" "\"id\":\"${CPU##*/}\"" '"cpu_percent":' '"memory_current":' '"pids_current":' '"oom_kills":0'; then
        ok "rootbox stats --format json"
    else
        not_ok "rootbox stats --format json" "$js"
    fi
    echo 1 >"$CPU/cgroup.kill"
    finish_job "$cpu_job"
    wait_for "[ ! -e $CPU ]" 50 && ok "killed through its cgroup: rootbox run ends and removes it" \
        || not_ok "rootbox run removes its cgroup after a kill" "$(ls "$BASE")"
else
    not_ok "--cpus 0.5 container starts" "$(ls "$BASE" 2>&1)" "$(rb ps -a 2>&1)"
    finish_job "$cpu_job"
fi
out=$(run_in --cpu-shares 1024 --cpu-quota 25000 --cpu-period 50000 -- sh -c 'cat /sys/fs/cgroup/cpu.weight /sys/fs/cgroup/cpu.max' 2>&1)
if [ "$(echo $out)" = "100 25000 50000" ]; then
    ok "--cpu-shares 1024 → cpu.weight 100; --cpu-quota/--cpu-period → cpu.max"
else
    not_ok "--cpu-shares/--cpu-quota/--cpu-period" "$out"
fi

# --- cpuset pins ---------------------------------------------------------------------------------
ncpu=$(grep -c ^processor /proc/cpuinfo)
if [ "$ncpu" -ge 2 ]; then
    out=$(run_in --cpuset-cpus 1 --cpuset-mems 0 -- sh -c 'grep Cpus_allowed_list /proc/self/status; cat /sys/fs/cgroup/cpuset.cpus.effective' 2>&1)
    if [ "$(echo $out)" = "Cpus_allowed_list: 1 1" ]; then
        ok "--cpuset-cpus 1: the container runs on CPU 1 only"
    else
        not_ok "--cpuset-cpus 1 pins the container" "$out"
    fi
else
    not_ok "cpuset test needs 2 CPUs (run.sh -smp)" "CPUs: $ncpu"
fi
out=$(run_in --cpuset-cpus 7 -- true 2>&1); rc=$?
case "$rc:$out" in
    125:*cpuset.cpus*) ok "--cpuset-cpus 7 on a 2-CPU machine fails before the start, naming cpuset.cpus" ;;
    *) not_ok "--cpuset-cpus 7 is refused" "rc=$rc $out" ;;
esac

# --- rootbox-runtime: update, pause/resume, exec, kill --all -----------------------------------
b=$(bundle upd '["sleep", "1000"]' '{"memory": {"limit": 67108864}, "pids": {"limit": 50}}')
if rt create --bundle "$b" upd >/dev/null 2>&1 && rt start upd; then
    cgp=$(state_field upd cgroup)
    if [ -n "$cgp" ] && [ "$(cat "$cgp/memory.max")" = 67108864 ] && [ "$(cat "$cgp/pids.max")" = 50 ]; then
        ok "rootbox-runtime: linux.resources applied ($cgp)"
    else
        not_ok "rootbox-runtime applies linux.resources" "cgroup: $cgp" "$(rt state upd)"
    fi
    if rt update --memory 48m --pids-limit 7 upd && [ "$(cat "$cgp/memory.max")" = 50331648 ] && [ "$(cat "$cgp/pids.max")" = 7 ]; then
        ok "rootbox-runtime update --memory 48m --pids-limit 7 changes the running container's limits"
    else
        not_ok "rootbox-runtime update" "memory.max=$(cat "$cgp/memory.max") pids.max=$(cat "$cgp/pids.max")"
    fi
    echo '{"memory": {"limit": 41943040}, "cpu": {"quota": 20000, "period": 100000}}' >"$W/res.json"
    if rt update -r "$W/res.json" upd && [ "$(cat "$cgp/memory.max")" = 41943040 ] && [ "$(cat "$cgp/cpu.max")" = "20000 100000" ]; then
        ok "rootbox-runtime update -r resources.json"
    else
        not_ok "rootbox-runtime update -r" "memory.max=$(cat "$cgp/memory.max") cpu.max=$(cat "$cgp/cpu.max")"
    fi
    out=$(rt exec upd cat /proc/self/cgroup 2>&1)
    if [ "$out" = "0::/" ]; then ok "exec joins the container's cgroup"; else not_ok "exec joins the container's cgroup" "$out"; fi
    if rt pause upd && [ "$(field "$cgp/cgroup.events" frozen)" = 1 ] && state_field upd status | grep -qx paused \
        && rt resume upd && [ "$(field "$cgp/cgroup.events" frozen)" = 0 ] && state_field upd status | grep -qx running; then
        ok "rootbox-runtime pause / resume freeze and thaw the cgroup"
    else
        not_ok "pause / resume" "$(cat "$cgp/cgroup.events")" "$(rt state upd)"
    fi
    pid=$(state_field upd pid)
    rt kill --all upd KILL
    if wait_for "! [ -d /proc/$pid ] || grep -q '^State:.*Z' /proc/$pid/status" 50; then
        ok "kill --all KILL ends the container"
    else
        not_ok "kill --all KILL ends the container" "$(cat "$cgp/cgroup.procs")"
    fi
    rt delete upd
    if [ ! -e "$cgp" ]; then ok "the cgroup is gone after delete"; else not_ok "the cgroup is gone after delete" "$cgp"; fi
else
    not_ok "rootbox-runtime create/start for update" "$(rt state upd 2>&1)"
fi

# --- forced delete kills every process, background children included -------------------------
# No pid namespace: nothing but the cgroup holds the forked child when the first process dies.
b=$(bundle fdel '["sh", "-c", "sleep 1000 & echo $! >/tmp/child; exec sleep 1000"]' '{}' \
    '[{"type":"ipc"},{"type":"uts"},{"type":"mount"},{"type":"cgroup"},{"type":"user"},{"type":"network"}]')
if rt create --bundle "$b" fdel >"$W/fdel.out" 2>&1 && rt start fdel; then
    cgp=$(state_field fdel cgroup)
    wait_for "[ \$(wc -l <$cgp/cgroup.procs) -ge 2 ]" 50
    pids=$(cat "$cgp/cgroup.procs" | tr '\n' ' ')
    rt delete --force fdel; rc=$?
    left=""
    for p in $pids; do alive "$p" && left="$left $p"; done
    if [ $rc = 0 ] && [ "$(echo $pids | wc -w)" -ge 2 ] && [ -z "$left" ] && [ ! -e "$cgp" ]; then
        ok "delete --force kills every process ($pids) and removes the cgroup"
    else
        not_ok "delete --force kills every process" "rc=$rc pids: $pids, still alive:$left" "cgroup: $(ls -d "$cgp" 2>&1)"
    fi
else
    not_ok "rootbox-runtime create/start without a pid namespace" "$(cat "$W/fdel.out")" "$(rt state fdel 2>&1)"
fi

# --- no delegation where asked: refused before the start, or run best-effort ------------------
# shellcheck disable=SC2016
out=$(run_in --cgroup-parent /system.slice --memory 32m -- sh -c 'echo started' 2>&1); rc=$?
case "$rc:$out" in
    125:*"cannot enforce the requested memory limit"*"Delegate="*"best-effort"*)
        case $out in *started*) not_ok "refused BEFORE the start" "$out" ;;
            *) ok "--memory under a cgroup the user may not manage: refused before the start, with how to fix" ;; esac ;;
    *) not_ok "--memory under a non-delegated cgroup is refused" "rc=$rc" "$out" ;;
esac
out=$(run_in --cgroup-parent /system.slice --memory 32m --cgroup-limits=best-effort -- echo started 2>&1); rc=$?
case "$rc:$out" in
    0:*warning*started*) ok "--cgroup-limits=best-effort runs it without the limit, with a warning" ;;
    *) not_ok "--cgroup-limits=best-effort" "rc=$rc" "$out" ;;
esac
out=$(run_in --cgroup-parent /system.slice -- echo started 2>&1); rc=$?
if [ $rc = 0 ] && [ "$out" = started ]; then ok "no limit asked: runs without a cgroup, silently"; else not_ok "no limit, no cgroup: still runs" "rc=$rc $out"; fi
out=$(run_in --cgroup-manager disabled --pids-limit 5 -- true 2>&1); rc=$?
case "$rc:$out" in
    125:*pids*disabled*) ok "--cgroup-manager disabled with a limit is refused" ;;
    *) not_ok "--cgroup-manager disabled with a limit" "rc=$rc $out" ;;
esac

# --- rootbox: a detached container under its monitor: pause, unpause, stop while paused, rm -----
if [ -n "${ROOTBOX_MONITOR:-}" ] && cid=$(rb run -d --network none --name frz --rootfs "$ROOTFS" -- sleep 1000 2>&1); then
    cg=$BASE/$cid
    if rb pause frz >/dev/null && [ "$(field "$cg/cgroup.events" frozen)" = 1 ] \
        && rb ps -a | grep frz | grep -qi paused \
        && rb unpause frz >/dev/null && [ "$(field "$cg/cgroup.events" frozen)" = 0 ]; then
        ok "rootbox pause / unpause freeze and thaw a detached container's cgroup"
    else
        not_ok "rootbox pause / unpause" "$(cat "$cg/cgroup.events" 2>&1)" "$(rb ps -a 2>&1)"
    fi
    rb pause frz >/dev/null 2>&1
    out=$(rb stop -t 2 frz 2>&1); rc=$?
    if [ $rc = 0 ] && rb ps -a | grep frz | grep -qi exited; then
        ok "rootbox stop of a paused container thaws and stops it"
    else
        not_ok "rootbox stop of a paused container" "rc=$rc $out" "$(rb ps -a 2>&1)"
    fi
    rb rm -f frz >/dev/null 2>&1
    if [ ! -e "$cg" ]; then ok "rootbox rm removes the detached container's cgroup"; else not_ok "rm removes the cgroup" "$(ls "$cg")"; fi
else
    not_ok "rootbox run -d under the monitor" "${cid:-ROOTBOX_MONITOR not set}"
fi

# --- rootbox commit freezes the container; a commit killed meanwhile does not leave it frozen ----
# The container writes 16 MiB of random data so that the commit (tar + gzip under TCG) takes long
# enough to be caught frozen and SIGKILLed; the next command that loads the container thaws it.
rb import "${IMAGE_TAR:-/nonexistent: IMAGE_TAR not set}" bb:vm >/dev/null 2>"$W/import.err"
if cid=$(rb run -d --network none --name cmt bb:vm \
        sh -c 'dd if=/dev/urandom of=/big bs=1M count=16 2>/dev/null; touch /ready; exec sleep 1000' 2>&1) \
    && wait_for "$ROOTBOX exec cmt test -e /ready" 600; then
    cg=$BASE/$cid
    out=
    "$ROOTBOX" commit cmt cmt:killed >/dev/null 2>&1 &  # not through rb(): $! must be rootbox itself
    cpid=$!
    i=0; while [ "$(field "$cg/cgroup.events" frozen)" != 1 ] && kill -0 "$cpid" 2>/dev/null && [ $i -lt 2000 ]; do i=$((i + 1)); done
    was=$(field "$cg/cgroup.events" frozen)
    kill -9 "$cpid" 2>/dev/null; wait "$cpid" 2>/dev/null
    still=$(field "$cg/cgroup.events" frozen)
    st=$(rb ps -a 2>&1)
    after=$(field "$cg/cgroup.events" frozen)
    if [ "$was" = 1 ] && [ "$still" = 1 ] && [ "$after" = 0 ] && out=$(rb exec cmt echo alive 2>&1) && [ "$out" = alive ]; then
        ok "a commit SIGKILLed while the container is frozen: the next command (ps) thaws it"
    else
        not_ok "a killed commit leaves no frozen container" "frozen during: $was, after the kill: $still, after ps: $after" "$st" "${out:-}"
    fi
    out=$(rb commit cmt cmt:whole 2>&1); rc=$?
    if [ $rc = 0 ] && [ "$(field "$cg/cgroup.events" frozen)" = 0 ] \
        && [ "$(rb run --rm --network none cmt:whole sh -c 'wc -c </big')" = 16777216 ]; then
        ok "rootbox commit of a running container: it is thawed after, the image has its file"
    else
        not_ok "rootbox commit of a running container" "rc=$rc $out" "$(cat "$cg/cgroup.events" 2>&1)"
    fi
    rb rm -f cmt >/dev/null 2>&1
else
    not_ok "rootbox run -d from an imported image" "${cid:-}" "$(cat "$W/import.err" 2>&1)" "$(rb ps -a 2>&1)"
    rb rm -f cmt >/dev/null 2>&1
fi

# --- nothing left behind -------------------------------------------------------------------
left=$(find "$BASE" -mindepth 1 -maxdepth 1 -type d 2>&1 | tr '\n' ' ')
if [ -d "$BASE" ] && [ -z "$left" ]; then ok "no container cgroup is left under $BASE"; else not_ok "no container cgroup left" "$left"; fi

echo "1..$n"
echo "$((n - failed)) passed, $failed failed"
[ "$failed" = 0 ]

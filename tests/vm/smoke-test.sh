#!/bin/sh
# Smoke test of the VM harness, run by run.sh inside the VM as uid 1000 (busybox sh).
# Proves that what the rootbox cgroup tests rely on is there: an unprivileged user, cgroup2 as
# the only hierarchy, a subtree delegated the systemd way, working memory/pids/cpu limits, OOM
# kills that are counted, user namespaces, overlayfs in a user namespace and pivot_root.
# Output: TAP lines, then "N passed, N failed"; exit status 0 only if all passed.
set -u

CG=/sys/fs/cgroup
SVC_REL=/user.slice/user-1000.slice/user@1000.service
n=0 failed=0
ok() { n=$((n + 1)); echo "ok $n - $1"; }
not_ok() { n=$((n + 1)); failed=$((failed + 1)); echo "not ok $n - $1"; shift; for l in "$@"; do echo "#   $l"; done; }
check() {  # check NAME COMMAND...: ok when COMMAND succeeds
    name=$1; shift
    if out=$("$@" 2>&1); then ok "$name"; else not_ok "$name" "command: $*" "output: $out"; fi
}
field() {  # field FILE KEY: the value of "KEY value" in a flat-keyed cgroup file
    sed -n "s/^$2 //p" "$1"
}

# --- identity -------------------------------------------------------------------------
check "runs as uid 1000 / gid 1000" test "$(id -u):$(id -g)" = "1000:1000"
caps=$(grep -E '^Cap(Inh|Prm|Eff|Amb):' /proc/self/status | awk '{print $2}' | sort -u)
check "holds no capabilities" test "$caps" = 0000000000000000
# shellcheck disable=SC2016  # expanded by the inner shell
check "HOME and XDG_RUNTIME_DIR are the user's" \
    sh -c '[ -O "$HOME" ] && [ -w "$HOME" ] && [ -O "$XDG_RUNTIME_DIR" ] &&
           [ "$(stat -c %a "$XDG_RUNTIME_DIR")" = 700 ] && [ "$XDG_RUNTIME_DIR" = /run/user/1000 ]'
check "/etc/subuid and /etc/subgid map user" grep -qx 'user:100000:65536' /etc/subuid /etc/subgid

# --- cgroup2 is the only hierarchy -----------------------------------------------------
check "cgroup2 is mounted at $CG" sh -c "grep -q '^cgroup2 $CG cgroup2 ' /proc/mounts"
check "no cgroup v1 hierarchy is mounted" sh -c "! grep -q ' cgroup ' /proc/mounts"
# shellcheck disable=SC2016
check "/proc/self/cgroup has the unified entry only" \
    sh -c 'test "$(wc -l </proc/self/cgroup)" = 1 && grep -q "^0::/" /proc/self/cgroup'
mine=$(sed -n 's/^0:://p' /proc/self/cgroup)
case $mine in
    "$SVC_REL"/*) ok "current cgroup $mine is inside the delegated $SVC_REL" ;;
    *) not_ok "current cgroup is inside the delegated $SVC_REL" "it is: $mine" ;;
esac
SVC=$CG$SVC_REL
check "the delegated cgroup and its cgroup.procs/subtree_control belong to the user" \
    sh -c "[ -O '$SVC' ] && [ -O '$SVC/cgroup.procs' ] && [ -O '$SVC/cgroup.subtree_control' ] && [ -O '$SVC/cgroup.threads' ]"
check "the delegated cgroup's own limits stay root's" sh -c "[ ! -O '$SVC/memory.max' ] && [ ! -w '$SVC/memory.max' ]"
for c in cpu memory pids cpuset io; do
    check "controller $c is available in the delegated cgroup" grep -qw "$c" "$SVC/cgroup.controllers"
done

# --- building a subtree as the user ----------------------------------------------------------
check "enable memory pids cpu in user@1000.service (no process of its own)" \
    sh -c "echo '+memory +pids +cpu' >'$SVC/cgroup.subtree_control'"
T=$SVC/smoke
check "create a child cgroup" mkdir "$T"
check "move myself into it (the delegated parent's cgroup.procs is mine)" sh -c "echo $$ >'$T/cgroup.procs'"
if sh -c "echo +memory >'$T/cgroup.subtree_control'" 2>/dev/null; then
    not_ok "no-internal-process rule: enabling controllers in a cgroup with a process fails"
else
    ok "no-internal-process rule: enabling controllers in a cgroup with a process fails"
fi
check "move myself to a leaf" sh -c "mkdir '$T/self' && echo $$ >'$T/self/cgroup.procs'"
check "then enable memory pids cpu in the child's subtree_control" \
    sh -c "echo '+memory +pids +cpu' >'$T/cgroup.subtree_control'"
check "grandchildren get the controllers" \
    sh -c "mkdir '$T/limits' && grep -qw memory '$T/limits/cgroup.controllers' && grep -qw pids '$T/limits/cgroup.controllers' && grep -qw cpu '$T/limits/cgroup.controllers'"
check "set memory.max" sh -c "echo 64M >'$T/limits/memory.max' && test \"\$(cat '$T/limits/memory.max')\" = 67108864"
check "set pids.max" sh -c "echo 10 >'$T/limits/pids.max' && test \"\$(cat '$T/limits/pids.max')\" = 10"
check "set cpu.max and cpu.weight" \
    sh -c "echo '50000 100000' >'$T/limits/cpu.max' && test \"\$(cat '$T/limits/cpu.max')\" = '50000 100000' && echo 50 >'$T/limits/cpu.weight'"

# --- pids.max=5 stops the sixth process ------------------------------------------------------
P=$T/pids5
mkdir "$P" && echo 5 >"$P/pids.max"
# A shell in P forks sleeps until fork fails (ash then exits): 1 shell + 4 sleeps = 5 tasks.
# shellcheck disable=SC2016  # expanded by the inner shell
sh -c 'echo $$ >"$1/cgroup.procs" || exit 99
       n=0; while [ $n -lt 20 ]; do sleep 60 & n=$((n + 1)); echo $n >"$2"; done' \
    - "$P" /tmp/smoke-forks >/dev/null 2>/tmp/smoke-forkerr
forks=$(cat /tmp/smoke-forks 2>/dev/null || echo 0)
if [ "$forks" = 4 ] && [ "$(field "$P/pids.events" max)" -ge 1 ]; then
    ok "pids.max=5: 4 children forked, the 5th fork failed (pids.events max=$(field "$P/pids.events" max))"
else
    not_ok "pids.max=5 limits forks" "forked: $forks, pids.events: $(tr '\n' ' ' <"$P/pids.events")" \
        "stderr: $(cat /tmp/smoke-forkerr)"
fi
check "cgroup.kill empties the cgroup" \
    sh -c "echo 1 >'$P/cgroup.kill'; i=0; while [ \"\$(cat '$P/pids.current')\" != 0 ] && [ \$i -lt 50 ]; do sleep 0.1; i=\$((i+1)); done; [ \"\$(cat '$P/pids.current')\" = 0 ]"

# --- memory.max=32M: an allocation of 64M is OOM-killed, and counted ---------------------------
M=$T/mem32
mkdir "$M" && echo 32M >"$M/memory.max"
# dd's 64 MiB buffer is touched by reading /dev/zero into it.
# shellcheck disable=SC2016
sh -c 'echo $$ >"$1/cgroup.procs" || exit 99; exec dd if=/dev/zero of=/dev/null bs=64M count=1' \
    - "$M" >/dev/null 2>&1
rc=$?
kills=$(field "$M/memory.events" oom_kill)
if [ "$rc" = 137 ] && [ "${kills:-0}" -ge 1 ]; then
    ok "memory.max=32M: a 64M allocation is OOM-killed (SIGKILL, memory.events oom_kill=$kills)"
else
    not_ok "memory.max=32M OOM-kills a 64M allocation" "exit status: $rc" \
        "memory.events: $(tr '\n' ' ' <"$M/memory.events")"
fi
M2=$T/mem32ok
mkdir "$M2" && echo 32M >"$M2/memory.max"
# shellcheck disable=SC2016
check "memory.max=32M: a 16M allocation succeeds" \
    sh -c 'echo $$ >"$1/cgroup.procs" && exec dd if=/dev/zero of=/dev/null bs=16M count=1' - "$M2"

# --- namespaces and filesystems rootbox needs ------------------------------------------------
check "unshare -U works" unshare -U true
# shellcheck disable=SC2016
check "unshare -Ur maps me to root in the new user namespace" sh -c '[ "$(unshare -Ur id -u)" = 0 ]'
O=/tmp/smoke-ovl
mkdir -p "$O/lower" "$O/upper" "$O/work" "$O/merged" && echo lower >"$O/lower/f"
check "overlayfs mounts in a user namespace (userxattr)" \
    unshare -Urm sh -c "mount -t overlay overlay -o 'lowerdir=$O/lower,upperdir=$O/upper,workdir=$O/work,userxattr' '$O/merged' && echo upper >'$O/merged/f' && [ \"\$(cat '$O/lower/f')\" = lower ]"
R=/tmp/smoke-root
mkdir -p "$R/old"
check "pivot_root works in a user+mount namespace (/ is not the initramfs)" \
    unshare -Urm sh -c "mount --bind '$R' '$R' && cd '$R' && pivot_root . old"
check "/dev/fuse and /dev/net/tun are usable (0666)" \
    sh -c '[ -r /dev/fuse ] && [ -w /dev/fuse ] && [ -r /dev/net/tun ] && [ -w /dev/net/tun ]'
check "loopback is up" sh -c 'ip link show lo | grep -q "UP"'

# --- clean up what can be -------------------------------------------------------------
for d in "$P" "$M" "$M2" "$T/limits"; do
    rmdir "$d" 2>/dev/null || true
done

echo "1..$n"
echo "$((n - failed)) passed, $failed failed"
[ "$failed" = 0 ]

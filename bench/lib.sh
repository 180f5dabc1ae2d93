# Shared by the bench/*.sh scenarios: the benchmark user, a work directory, running as that
# user (optionally in a private mount namespace without the hybrid cgroup2 mount, for crun),
# a busybox image, and hyperfine + report.py. Source it after setting NAME (the scenario).
#
# Environment: ROOTBOX_BIN (target/release), ROOTBOX_TEST_USER (rbtest, when run as root),
# BENCH_RUNS, BENCH_WARMUP, BENCH_RESULTS (bench/results).

die() { echo "bench/$NAME: $*" >&2; exit 1; }

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=${ROOTBOX_BIN:-$REPO/target/release}
RESULTS=${BENCH_RESULTS:-$REPO/bench/results}
[ -x "$BIN/rootbox" ] || die "$BIN/rootbox not found: cargo build --release (or set ROOTBOX_BIN)"
command -v hyperfine >/dev/null || die "hyperfine not found (apt-get install hyperfine)"

if [ "$(id -u)" -eq 0 ]; then
    BENCH_USER=${ROOTBOX_TEST_USER:-rbtest}
    id -u "$BENCH_USER" >/dev/null 2>&1 || die "user $BENCH_USER does not exist: run tests/setup-root.sh"
    AS_ROOT=1
else
    BENCH_USER=$(id -un)
    AS_ROOT=0
fi
HYBRID=0
mountpoint -q /sys/fs/cgroup/unified 2>/dev/null && HYBRID=1

# A short path: podman keeps sockets under $XDG_RUNTIME_DIR (108-byte limit).
WORK=$(mktemp -d /tmp/rbb.XXXXXX)
chmod 0755 "$WORK"
mkdir -p "$WORK/xdg" "$WORK/home" "$WORK/bin" "$WORK/out"
chmod 0700 "$WORK/xdg"
for b in rootbox rootbox-runtime rootbox-monitor rootbox-monitor-supervise; do
    [ -x "$BIN/$b" ] && install -m 0755 "$BIN/$b" "$WORK/bin/"
done
[ "$AS_ROOT" = 1 ] && chown -R "$BENCH_USER:" "$WORK/xdg" "$WORK/home" "$WORK/out"
RB="$WORK/bin/rootbox"

USER_ENV=(HOME="$WORK/home" XDG_RUNTIME_DIR="$WORK/xdg" XDG_DATA_HOME="$WORK/home/.local/share"
    XDG_CONFIG_HOME="$WORK/home/.config" PATH="/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin")

# as_user CMD...: CMD as the benchmark user, in $WORK, with its own XDG dirs.
as_user() {
    if [ "$AS_ROOT" = 1 ]; then
        runuser -u "$BENCH_USER" -- env -C "$WORK" "${USER_ENV[@]}" "$@"
    else
        env -C "$WORK" "${USER_ENV[@]}" "$@"
    fi
}

# in_private_ns CMD...: as_user, but in a private mount namespace where the hybrid cgroup2
# mount is lazily detached, so crun starts (root only; the host's mounts are untouched).
in_private_ns() {
    # shellcheck disable=SC2016
    unshare -m --propagation private bash -c '
        if mountpoint -q /sys/fs/cgroup/unified; then umount -l /sys/fs/cgroup/unified; fi
        user=$1 dir=$2; shift 2
        exec runuser -u "$user" -- env -C "$dir" "$@"
    ' bash "$BENCH_USER" "$WORK" "${USER_ENV[@]}" "$@"
}

# Where crun can run: "private" (as root), "host" (no hybrid mount), or "" (it can't).
crun_mode() {
    command -v crun >/dev/null || return 0
    if [ "$AS_ROOT" = 1 ]; then echo private
    elif [ "$HYBRID" = 0 ]; then echo host
    fi
}

# run_in MODE CMD...: as_user (MODE host) or in_private_ns (MODE private).
run_in() {
    local mode=$1
    shift
    if [ "$mode" = private ]; then in_private_ns "$@"; else as_user "$@"; fi
}

cleanup_lib() {
    if command -v podman >/dev/null && [ -d "$WORK/home/.local/share/containers" ]; then
        as_user podman system reset -f >/dev/null 2>&1 || true
    fi
    if [ -d "$WORK/home/.local/share/rootbox" ]; then
        local ids
        ids=$(as_user "$RB" ps -aq 2>/dev/null || true)
        # shellcheck disable=SC2086
        [ -n "$ids" ] && as_user "$RB" rm -f $ids >/dev/null 2>&1
        as_user "$RB" image prune -a >/dev/null 2>&1 || true
    fi
    as_user rm -rf "$WORK/home" "$WORK/xdg" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup_lib EXIT

# busybox_image: $WORK/busybox.tar, imported as bench/busybox:1 into rootbox's store (and,
# when podman works, as localhost/bench/busybox:1 into podman's; else PODMAN_ERROR says why).
PODMAN_ERROR=
busybox_image() {
    "$REPO/tests/lib/mk-busybox-rootfs.sh" "$WORK/rootfs" >/dev/null
    tar -C "$WORK/rootfs" -cf "$WORK/busybox.tar" .
    chmod a+r "$WORK/busybox.tar"
    as_user "$RB" import "$WORK/busybox.tar" bench/busybox:1 >/dev/null
    if ! command -v podman >/dev/null; then
        PODMAN_ERROR="podman is not installed (apt-get install podman)"
    elif ! err=$(as_user podman import "$WORK/busybox.tar" localhost/bench/busybox:1 2>&1 >/dev/null); then
        PODMAN_ERROR="podman import failed: ${err: -300}"
    fi
}
PODMAN="podman --runtime runc --cgroup-manager cgroupfs"

# Scenario commands: add NAME CMD, skip NAME WHY; check_and_time MODE runs each command once
# (a failing one is skipped with its error) and times the rest alternately with hyperfine.
declare -a NAMES=() CMDS=()
declare -A SKIPPED=()
add() { NAMES+=("$1"); CMDS+=("$2"); }
skip() { SKIPPED[$1]=$2; echo "bench/$NAME: $1 skipped: $2" >&2; }

check_and_time() { # MODE [hyperfine args...]
    local mode=$1 i rc msg
    shift
    local hf=(hyperfine -N --style basic --warmup "${BENCH_WARMUP:-3}" --runs "${BENCH_RUNS:-30}"
        --export-json "$WORK/out/$NAME.json" "$@")
    for i in "${!NAMES[@]}"; do
        rc=0
        # shellcheck disable=SC2086
        run_in "$mode" timeout -k 5 60 ${CMDS[$i]} >"$WORK/check.out" 2>&1 || rc=$?
        if [ "$rc" -ne 0 ]; then
            msg=$(tr '\n' ' ' <"$WORK/check.out" | cut -c1-300)
            skip "${NAMES[$i]}" "fails here (exit $rc): $msg"
            continue
        fi
        hf+=(--command-name "${NAMES[$i]}" "${CMDS[$i]}")
    done
    run_in "$mode" "${hf[@]}"
}

# report TITLE RATIO_SPEC...: writes $RESULTS/$NAME.json and prints the table; RATIO_SPEC is
# "a/b<=target" (median of a over median of b, and the target it must meet).
report() {
    local title=$1
    shift
    mkdir -p "$RESULTS"
    local skipped
    skipped=$(for k in "${!SKIPPED[@]}"; do printf '%s\t%s\n' "$k" "${SKIPPED[$k]}"; done)
    SKIPPED_TSV=$skipped python3 "$REPO/bench/report.py" "$title" "$RESULTS/$NAME.json" \
        "$WORK/out/$NAME.json" "$@"
}

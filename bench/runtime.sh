#!/usr/bin/env bash
# Start-to-exit time of `true` in one busybox bundle, rootless, no cgroups:
#   rootbox-runtime run | crun run | runc run | bwrap | unshare -Urmpf
#
#   bench/runtime.sh            (make bench)
#
# Runs as the unprivileged user: as root it drops to ROOTBOX_TEST_USER (default
# rbtest, created by tests/setup-root.sh); otherwise it runs as you.
#
# crun refuses to start anything while the hybrid hierarchy's cgroup2 mount
# (/sys/fs/cgroup/unified) is visible. As root, crun and runc are therefore timed
# inside a private mount namespace (unshare -m) in which that mount is lazily
# detached; the host's own mounts are never touched. Without root that is not
# possible and crun is reported as skipped on such hosts.
#
# Environment: BENCH_RUNS (100), BENCH_WARMUP (5), ROOTBOX_BIN (target/release),
# BENCH_OUT (bench/results/runtime.json), ROOTBOX_TEST_USER (rbtest).
# Output: a table of medians and rootbox/peer ratios, and BENCH_OUT as JSON.
set -euo pipefail

die() { echo "bench/runtime.sh: $*" >&2; exit 1; }

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
RUNS=${BENCH_RUNS:-100}
WARMUP=${BENCH_WARMUP:-5}
BIN=${ROOTBOX_BIN:-$REPO/target/release}
OUT=${BENCH_OUT:-$REPO/bench/results/runtime.json}

command -v hyperfine >/dev/null || die "hyperfine not found (apt-get install hyperfine)"
command -v python3 >/dev/null || die "python3 not found"

if [ "$(id -u)" -eq 0 ]; then
    BENCH_USER=${ROOTBOX_TEST_USER:-rbtest}
    id -u "$BENCH_USER" >/dev/null 2>&1 \
        || die "user $BENCH_USER does not exist: run tests/setup-root.sh (make test does) or set ROOTBOX_TEST_USER"
    AS_ROOT=1
else
    BENCH_USER=$(id -un)
    AS_ROOT=0
fi

work=$(mktemp -d /tmp/rootbox-bench.XXXXXX)
cleanup() {
    # Containers left by an interrupted run: delete them with their runtime.
    for rt in crun runc; do
        [ -d "$work/state-$rt" ] || continue
        for dir in "$work/state-$rt"/*/; do
            [ -d "$dir" ] || continue
            as_user "$rt" --root "$work/state-$rt" delete --force "$(basename "$dir")" >/dev/null 2>&1 || true
        done
    done
    rm -rf "$work"
}
trap cleanup EXIT
chmod 0755 "$work"

# as_user CMD...: run CMD as the benchmark user, in $work.
as_user() {
    if [ "$AS_ROOT" = 1 ]; then
        runuser -u "$BENCH_USER" -- env -C "$work" "$@"
    else
        (cd "$work" && "$@")
    fi
}

# in_private_ns CMD...: CMD as the benchmark user in a private mount namespace where
# the hybrid cgroup2 mount is detached (root only; the host's mounts are untouched).
in_private_ns() {
    # shellcheck disable=SC2016
    unshare -m --propagation private bash -c '
        if mountpoint -q /sys/fs/cgroup/unified; then umount -l /sys/fs/cgroup/unified; fi
        user=$1 dir=$2; shift 2
        exec runuser -u "$user" -- env -C "$dir" "$@"
    ' bash "$BENCH_USER" "$work" "$@"
}

# --- the bundle --------------------------------------------------------------------
bundle=$work/bundle
mkdir -p "$bundle"
"$REPO/tests/lib/mk-busybox-rootfs.sh" "$bundle/rootfs" >/dev/null
mkdir -p "$work/bin"
have_rootbox=0
if [ -x "$BIN/rootbox-runtime" ]; then
    install -m 0755 "$BIN/rootbox-runtime" "$work/bin/rootbox-runtime"
    have_rootbox=1
fi
[ "$AS_ROOT" = 1 ] && chown -R "$BENCH_USER:" "$work"

# One config.json for every OCI runtime: runc's rootless spec (the reference; the
# uid mapping is the benchmark user's), running /bin/true, no terminal, plus a
# network namespace (as bwrap --unshare-all has), and no cgroup settings.
spec_tool=
for t in runc crun; do
    if command -v "$t" >/dev/null; then spec_tool=$t; break; fi
done
if [ -n "$spec_tool" ]; then
    as_user "$spec_tool" spec --rootless --bundle "$bundle"
elif [ "$have_rootbox" = 1 ]; then
    as_user "$work/bin/rootbox-runtime" spec --rootless --bundle "$bundle"
else
    die "no runc, crun or rootbox-runtime to write a config.json"
fi
as_user python3 - "$bundle/config.json" <<'EOF'
import json, sys
p = sys.argv[1]
c = json.load(open(p))
c["process"]["terminal"] = False
c["process"]["args"] = ["/bin/true"]
ns = c["linux"]["namespaces"]
if not any(n["type"] == "network" for n in ns):
    ns.append({"type": "network"})
c["linux"].pop("resources", None)
c["linux"].pop("cgroupsPath", None)
json.dump(c, open(p, "w"), indent=2)
EOF

# --- the commands --------------------------------------------------------------------
declare -a NAMES=() CMDS=() MODES=()
declare -A SKIPPED=()
add() { NAMES+=("$1"); MODES+=("$2"); CMDS+=("$3"); }

if [ "$have_rootbox" = 1 ]; then
    add rootbox-runtime host "$work/bin/rootbox-runtime --root $work/state-rootbox run --bundle $bundle bench-rootbox"
else
    SKIPPED[rootbox-runtime]="$BIN/rootbox-runtime not built (make build)"
fi
hybrid=0
mountpoint -q /sys/fs/cgroup/unified 2>/dev/null && hybrid=1
for rt in crun runc; do
    path=$(command -v "$rt" || true)
    if [ -z "$path" ]; then
        SKIPPED[$rt]="not installed (apt-get install $rt)"
        continue
    fi
    flags="--root $work/state-$rt"
    [ "$rt" = crun ] && flags="--cgroup-manager=disabled $flags"
    cmd="$path $flags run --bundle $bundle bench-$rt"
    if [ "$AS_ROOT" = 1 ]; then
        add "$rt" private "$cmd"
    elif [ "$rt" = crun ] && [ "$hybrid" = 1 ]; then
        SKIPPED[$rt]="refuses hybrid cgroups; detaching /sys/fs/cgroup/unified needs root (run make bench as root)"
    else
        add "$rt" host "$cmd"
    fi
done
if path=$(command -v bwrap); then
    add bwrap host "$path --unshare-all --bind $bundle/rootfs / --proc /proc --dev /dev true"
else
    SKIPPED[bwrap]="not installed (apt-get install bubblewrap)"
fi
add unshare host "$(command -v unshare) -Urmpf true"

# --- check each command once, then time the working ones ----------------------------------
declare -a HOST_IDX=() PRIV_IDX=()
rootbox_failed=0
for i in "${!NAMES[@]}"; do
    name=${NAMES[$i]}
    # shellcheck disable=SC2206
    argv=(${CMDS[$i]})
    rc=0
    if [ "${MODES[$i]}" = private ]; then
        in_private_ns timeout -k 5 30 "${argv[@]}" >"$work/check.out" 2>&1 || rc=$?
    else
        as_user timeout -k 5 30 "${argv[@]}" >"$work/check.out" 2>&1 || rc=$?
    fi
    [ "$rc" -eq 124 ] && echo "(timed out after 30s)" >>"$work/check.out"
    if [ "$rc" -ne 0 ]; then
        msg=$(tr '\n' ' ' <"$work/check.out" | cut -c1-300)
        echo "bench: $name fails (exit $rc): $msg" >&2
        SKIPPED[$name]="fails here (exit $rc): $msg"
        [ "$name" = rootbox-runtime ] && rootbox_failed=1
        continue
    fi
    if [ "${MODES[$i]}" = private ]; then PRIV_IDX+=("$i"); else HOST_IDX+=("$i"); fi
done

style=basic
[ -t 1 ] && style=full
hf() { # hf JSON_OUT INDEXES... -> hyperfine args
    local out=$1
    shift
    HF=(hyperfine -N --style "$style" --warmup "$WARMUP" --runs "$RUNS" --export-json "$out")
    local i
    for i in "$@"; do HF+=(--command-name "${NAMES[$i]}" "${CMDS[$i]}"); done
}

exports=()
if [ ${#HOST_IDX[@]} -gt 0 ]; then
    echo "== host mount namespace, as $BENCH_USER"
    hf "$work/host.json" "${HOST_IDX[@]}"
    as_user "${HF[@]}"
    exports+=("$work/host.json")
fi
if [ ${#PRIV_IDX[@]} -gt 0 ]; then
    echo "== private mount namespace without the cgroup2 mount, as $BENCH_USER"
    hf "$work/private.json" "${PRIV_IDX[@]}"
    in_private_ns "${HF[@]}"
    exports+=("$work/private.json")
fi

# --- report --------------------------------------------------------------------------
mkdir -p "$(dirname "$OUT")"
skipped_tsv=$(for k in "${!SKIPPED[@]}"; do printf '%s\t%s\n' "$k" "${SKIPPED[$k]}"; done)
hf_files=$(IFS=:; echo "${exports[*]:-}")
SKIPPED_TSV=$skipped_tsv python3 "$REPO/bench/report.py" \
    "start-to-exit of true in a busybox bundle, rootless, no cgroups (hybrid cgroups: $hybrid)" \
    "$OUT" "$hf_files" "rootbox-runtime/crun<=0.75" rootbox-runtime/runc rootbox-runtime/bwrap \
    rootbox-runtime/unshare
if [ "$AS_ROOT" = 1 ] && [ -n "${SUDO_USER:-}" ]; then
    chown -R "$SUDO_USER:" "$(dirname "$OUT")" 2>/dev/null || true
fi

if [ "$rootbox_failed" = 1 ]; then
    die "rootbox-runtime could not run the bundle (see above)"
fi

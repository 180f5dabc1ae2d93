#!/usr/bin/env bash
# `run --rm IMAGE true` from a local image: rootbox vs podman (rootless), alternating in one
# hyperfine run, network none for both, as the unprivileged user.
#
#   bench/image.sh            (make bench runs it)
#
# podman runs with `--runtime runc --cgroup-manager cgroupfs --network none` (crun refuses
# hybrid cgroup hosts such as these); when podman cannot run here its error is printed and
# recorded instead of a number. Environment: BENCH_RUNS (30), BENCH_WARMUP (3), ROOTBOX_BIN,
# BENCH_OUT (bench/results/image.json), ROOTBOX_TEST_USER (rbtest, when run as root).
set -euo pipefail

die() { echo "bench/image.sh: $*" >&2; exit 1; }

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
RUNS=${BENCH_RUNS:-30}
WARMUP=${BENCH_WARMUP:-3}
BIN=${ROOTBOX_BIN:-$REPO/target/release}
OUT=${BENCH_OUT:-$REPO/bench/results/image.json}

command -v hyperfine >/dev/null || die "hyperfine not found (apt-get install hyperfine)"
[ -x "$BIN/rootbox" ] || die "$BIN/rootbox not found: cargo build --release (or set ROOTBOX_BIN)"

if [ "$(id -u)" -eq 0 ]; then
    BENCH_USER=${ROOTBOX_TEST_USER:-rbtest}
    id -u "$BENCH_USER" >/dev/null 2>&1 || die "user $BENCH_USER does not exist: run tests/setup-root.sh"
    AS_ROOT=1
else
    BENCH_USER=$(id -un)
    AS_ROOT=0
fi

# Short path: podman keeps sockets under $XDG_RUNTIME_DIR (108-byte limit).
work=$(mktemp -d /tmp/rbib.XXXXXX)
chmod 0755 "$work"
as_user() {
    local pre=()
    [ "$AS_ROOT" = 1 ] && pre=(runuser -u "$BENCH_USER" --)
    "${pre[@]}" env -C "$work" HOME="$work/home" XDG_RUNTIME_DIR="$work/xdg" \
        XDG_DATA_HOME="$work/home/.local/share" XDG_CONFIG_HOME="$work/home/.config" "$@"
}
cleanup() {
    if command -v podman >/dev/null; then as_user podman system reset -f >/dev/null 2>&1 || true; fi
    as_user rm -rf "$work/home" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

echo "preparing: a busybox image (rootbox import, podman import of the same tarball)"
mkdir -p "$work/xdg" "$work/home" "$work/bin" "$work/out"
"$REPO/tests/lib/mk-busybox-rootfs.sh" "$work/rootfs" >/dev/null
tar -C "$work/rootfs" -cf "$work/busybox.tar" .
install -m 0755 "$BIN/rootbox" "$work/bin/"
[ -x "$BIN/rootbox-monitor" ] && install -m 0755 "$BIN/rootbox-monitor" "$work/bin/"
[ "$AS_ROOT" = 1 ] && chown -R "$BENCH_USER:" "$work/xdg" "$work/home" "$work/out"
chmod 0700 "$work/xdg"
chmod a+r "$work/busybox.tar"
as_user "$work/bin/rootbox" import "$work/busybox.tar" bench/busybox:1 >/dev/null
ROOTBOX="$work/bin/rootbox run --rm --network none bench/busybox:1 true"
as_user $ROOTBOX || die "rootbox cannot run the image"

names=(rootbox)
cmds=("$ROOTBOX")
podman_error=
PODMAN="podman --runtime runc --cgroup-manager cgroupfs run --rm --network none localhost/bench/busybox:1 true"
if ! command -v podman >/dev/null; then
    podman_error="podman is not installed (apt-get install podman)"
elif ! err=$(as_user podman import "$work/busybox.tar" localhost/bench/busybox:1 2>&1 >/dev/null); then
    podman_error="podman import failed: ${err: -300}"
elif ! err=$(as_user $PODMAN 2>&1); then
    podman_error="podman could not run: ${err: -300}"
else
    names+=(podman)
    cmds+=("$PODMAN")
fi
[ -n "$podman_error" ] && echo "bench: podman skipped: $podman_error" >&2

HF=(hyperfine -N --style basic --warmup "$WARMUP" --runs "$RUNS" --export-json "$work/out/hf.json")
for i in "${!names[@]}"; do HF+=(--command-name "${names[$i]}" "${cmds[$i]}"); done
as_user "${HF[@]}"

mkdir -p "$(dirname "$OUT")"
PODMAN_ERROR=$podman_error python3 - "$work/out/hf.json" "$OUT" <<'PY'
import json, os, sys, time, platform
hf, out = sys.argv[1:]
res = {r["command"]: {"median_ms": r["median"] * 1e3, "mean_ms": r["mean"] * 1e3,
                      "stddev_ms": (r["stddev"] or 0) * 1e3, "runs": len(r["times"])}
       for r in json.load(open(hf))["results"]}
doc = {"benchmark": "run --rm IMAGE true (busybox image, network none)",
       "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
       "host": {"kernel": platform.release(), "cpus": os.cpu_count()},
       "results": res, "ratios": {}, "skipped": {}}
if os.environ.get("PODMAN_ERROR"):
    doc["skipped"]["podman"] = os.environ["PODMAN_ERROR"]
if "podman" in res:
    doc["ratios"]["rootbox/podman"] = res["rootbox"]["median_ms"] / res["podman"]["median_ms"]
json.dump(doc, open(out, "w"), indent=2)
print()
print(f"{'command':<10} {'median':>10}")
for k, v in res.items():
    print(f"{k:<10} {v['median_ms']:>8.1f} ms")
r = doc["ratios"].get("rootbox/podman")
if r is not None:
    print(f"rootbox/podman = {r:.3f}  (target <= 0.2: {'met' if r <= 0.2 else 'NOT met'})")
print(f"wrote {out}")
PY

#!/usr/bin/env bash
# Pull throughput: `rootbox pull` of a multi-layer image from a local docker-registry
# (download, digest checks, unpack of every layer) against `skopeo copy` of the same image
# into an OCI layout plus `umoci unpack` (what it takes a user to get the same root
# filesystem with those tools).
#
#   bench/pull.sh [RUNS]          (default 3 runs each; the best run counts)
#
# Environment: ROOTBOX_BIN (dir with rootbox, default target/release), BENCH_SRC (directories
# made into layers, one layer each; default usr/include, usr/lib/python3*, usr/share/perl*,
# usr/share/locale under /), BENCH_DIR (work dir, default /tmp), BENCH_OUT
# (bench/results/pull.json).
# Prints the times and the ratio rootbox / (skopeo + umoci) (target: <= 1, no slower).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
RB=${ROOTBOX_BIN:-$REPO/target/release}/rootbox
RUNS=${1:-3}
OUT=${BENCH_OUT:-$REPO/bench/results/pull.json}
[ -x "$RB" ] || { echo "pull.sh: $RB not found (cargo build --release)" >&2; exit 1; }
for t in docker-registry skopeo umoci python3; do
    command -v $t >/dev/null || { echo "pull.sh: $t not installed (tests/setup-root.sh installs it)" >&2; exit 1; }
done

work=$(mktemp -d "${BENCH_DIR:-/tmp}/rootbox-bench-pull.XXXXXX")
reg_pid=
cleanup() {
    [ -n "$reg_pid" ] && kill "$reg_pid" 2>/dev/null || true
    for s in "$work"/store*; do [ -d "$s" ] && ROOTBOX_ROOT=$s "$RB" image prune -a >/dev/null 2>&1 || true; done
    rm -rf "$work" 2>/dev/null || true
}
trap cleanup EXIT

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat >"$work/registry.yml" <<EOF
version: 0.1
log:
  level: error
storage:
  filesystem:
    rootdirectory: $work/registry
http:
  addr: 127.0.0.1:$port
EOF
docker-registry serve "$work/registry.yml" >"$work/registry.log" 2>&1 &
reg_pid=$!
for _ in $(seq 100); do
    python3 -c "import socket; socket.create_connection(('127.0.0.1', $port), 1)" 2>/dev/null && break
    sleep 0.1
done

# The image: one gzip layer per source directory, as an OCI layout, copied into the registry.
# shellcheck disable=SC2086
src=${BENCH_SRC:-$(cd / && ls -d usr/include usr/lib/python3* usr/share/perl* usr/share/locale 2>/dev/null | head -4)}
python3 - "$work/layout" $src <<'EOF'
import gzip, hashlib, json, os, subprocess, sys
out, dirs = sys.argv[1], sys.argv[2:]
os.makedirs(f"{out}/blobs/sha256")
def put(b):
    d = hashlib.sha256(b).hexdigest()
    open(f"{out}/blobs/sha256/{d}", "wb").write(b)
    return "sha256:" + d
layers, diffs = [], []
for d in dirs:
    tar = subprocess.run(["tar", "-C", "/", "-cf", "-", d], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL).stdout
    diffs.append("sha256:" + hashlib.sha256(tar).hexdigest())
    gz = gzip.compress(tar, compresslevel=6, mtime=0)
    layers.append({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": put(gz), "size": len(gz)})
arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(os.uname().machine, os.uname().machine)
cfg = json.dumps({"architecture": arch, "os": "linux", "config": {"Cmd": ["/bin/sh"]},
                  "rootfs": {"type": "layers", "diff_ids": diffs}}).encode()
man = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                  "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": put(cfg), "size": len(cfg)},
                  "layers": layers}).encode()
md = put(man)
open(f"{out}/oci-layout", "w").write('{"imageLayoutVersion":"1.0.0"}')
open(f"{out}/index.json", "w").write(json.dumps({"schemaVersion": 2, "manifests": [
    {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": md, "size": len(man),
     "annotations": {"org.opencontainers.image.ref.name": "bench"}}]}))
print(f"image: {len(dirs)} layers ({', '.join(dirs)}), {sum(l['size'] for l in layers) / 1e6:.0f} MB gzip")
EOF
ref=127.0.0.1:$port/bench/pull:1
skopeo --insecure-policy copy -q --dest-tls-verify=false "oci:$work/layout:bench" "docker://$ref"

now() { date +%s.%N; }
best() { sort -n | head -1; }

time_rootbox() {
    local s t0 t1
    s="$work/store-$RANDOM$RANDOM"
    sync
    t0=$(now)
    ROOTBOX_ROOT=$s "$RB" pull -q "$ref" >/dev/null
    t1=$(now)
    ROOTBOX_ROOT=$s "$RB" image prune -a >/dev/null 2>&1 || true
    rm -rf "$s" 2>/dev/null || true
    echo "$t1 - $t0" | bc
}

time_skopeo_umoci() {
    local d t0 t1
    d="$work/sk-$RANDOM$RANDOM"
    mkdir "$d"
    sync
    t0=$(now)
    skopeo --insecure-policy copy -q --src-tls-verify=false "docker://$ref" "oci:$d/layout:x"
    umoci unpack --rootless --image "$d/layout:x" "$d/bundle" >/dev/null
    t1=$(now)
    rm -rf "$d"
    echo "$t1 - $t0" | bc
}

# One untimed run each warms the page cache of the registry's files.
time_rootbox >/dev/null
time_skopeo_umoci >/dev/null
rt=$(for _ in $(seq "$RUNS"); do time_rootbox; done | best)
st=$(for _ in $(seq "$RUNS"); do time_skopeo_umoci; done | best)
ratio=$(echo "$rt / $st" | bc -l)
printf 'pull+unpack: rootbox %.3fs   skopeo copy + umoci unpack %.3fs   ratio %.2f (target <= 1)\n' "$rt" "$st" "$ratio"
mkdir -p "$(dirname "$OUT")"
printf '{\n  "bench": "pull",\n  "runs": %d,\n  "results": {"rootbox_pull_s": %.4f, "skopeo_copy_umoci_unpack_s": %.4f},\n  "ratios": {"rootbox/skopeo+umoci": %.3f}\n}\n' \
    "$RUNS" "$rt" "$st" "$ratio" >"$OUT"
echo "results: $OUT"

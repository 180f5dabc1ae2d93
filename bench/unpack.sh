#!/usr/bin/env bash
# Layer unpack throughput: `rootbox image unpack` (secure unpack + digest checks) against
# `tar -x` of the same layer, gzip-compressed and plain, and `umoci unpack --rootless` of the
# same image (gzip) saved as an OCI layout.
#
#   bench/unpack.sh [RUNS]        (default 3 runs each; the best run counts)
#
# Environment: ROOTBOX_BIN (dir with rootbox, default target/release),
# BENCH_SRC (directories to pack, default "usr/include usr/lib/python3*" under /),
# BENCH_DIR (where to unpack: default /dev/shm when it has 2 GB free — a tmpfs takes the
# disk's noise out and measures the unpacker itself — else /tmp).
# Prints one line per case and the ratio rootbox/tar (target: <= 1.5); writes
# bench/results/unpack.json (BENCH_RESULTS).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
RB=${ROOTBOX_BIN:-$REPO/target/release}/rootbox
RUNS=${1:-3}
[ -x "$RB" ] || { echo "unpack.sh: $RB not found (cargo build --release)" >&2; exit 1; }

dir=${BENCH_DIR:-}
if [ -z "$dir" ]; then
    dir=/tmp
    if [ -w /dev/shm ] && [ "$(df -Pk /dev/shm | awk 'NR==2 {print $4}')" -gt 2000000 ]; then dir=/dev/shm; fi
fi
work=$(mktemp -d "$dir/rootbox-bench-unpack.XXXXXX")
echo "unpacking under $dir ($(df -PT "$dir" | awk 'NR==2 {print $2}'))"
cleanup() {
    # Layers unpacked with subordinate ids are removed by rootbox itself.
    for s in "$work"/store*; do [ -d "$s" ] && ROOTBOX_ROOT=$s "$RB" image prune -a >/dev/null 2>&1 || true; done
    rm -rf "$work" 2>/dev/null || true
}
trap cleanup EXIT

# shellcheck disable=SC2086
src=${BENCH_SRC:-$(cd / && echo usr/include usr/lib/python3*)}
# shellcheck disable=SC2086
tar -C / -cf "$work/layer.tar" $src 2>/dev/null || true
gzip -c "$work/layer.tar" >"$work/layer.tar.gz"
files=$(tar -tf "$work/layer.tar" | wc -l)
size=$(stat -c %s "$work/layer.tar")
echo "layer: $files entries, $((size / 1000000)) MB uncompressed, $(($(stat -c %s "$work/layer.tar.gz") / 1000000)) MB gzip"

now() { date +%s.%N; }
best() { sort -n | head -1; }

time_tar() { # time_tar FLAGS FILE
    local d t0 t1
    d="$work/tar-out"
    rm -rf "$d"
    mkdir "$d"
    sync
    t0=$(now)
    tar "$1" "$2" -C "$d"
    t1=$(now)
    rm -rf "$d"
    echo "$t1 - $t0" | bc
}

time_rootbox() { # time_rootbox FILE
    local s t0 t1
    s="$work/store-$RANDOM$RANDOM"
    ROOTBOX_ROOT=$s "$RB" import "$1" bench:latest >/dev/null
    sync
    t0=$(now)
    ROOTBOX_ROOT=$s "$RB" image unpack bench:latest >/dev/null
    t1=$(now)
    ROOTBOX_ROOT=$s "$RB" rmi bench:latest >/dev/null
    rm -rf "$s"
    echo "$t1 - $t0" | bc
}

report() { # report NAME TAR_TIME RB_TIME
    printf '%-14s tar -x %6.3fs   rootbox %6.3fs   ratio %.2f  (%.0f MB/s vs %.0f MB/s)\n' \
        "$1" "$2" "$3" "$(echo "$3 / $2" | bc -l)" \
        "$(echo "$size / $2 / 1000000" | bc -l)" "$(echo "$size / $3 / 1000000" | bc -l)"
}

time_umoci() { # time_umoci: the gzip layer's image, saved as an OCI layout by rootbox
    local s=$work/store-umoci t0 t1
    if [ ! -d "$work/oci" ]; then
        ROOTBOX_ROOT=$s "$RB" import "$work/layer.tar.gz" bench:latest >/dev/null
        ROOTBOX_ROOT=$s "$RB" save --format oci-dir -o "$work/oci" bench:latest
    fi
    rm -rf "$work/umoci-out"
    sync
    t0=$(now)
    umoci unpack --rootless --image "$work/oci:docker.io/library/bench:latest" "$work/umoci-out" >/dev/null
    t1=$(now)
    rm -rf "$work/umoci-out"
    echo "$t1 - $t0" | bc
}

extra="{"
for kind in gzip plain; do
    if [ $kind = gzip ]; then f=$work/layer.tar.gz; flags=-xzf; else f=$work/layer.tar; flags=-xf; fi
    tt=$(for _ in $(seq "$RUNS"); do time_tar $flags "$f"; done | best)
    rt=$(for _ in $(seq "$RUNS"); do time_rootbox "$f"; done | best)
    report "$kind" "$tt" "$rt"
    extra+="\"tar-$kind\": {\"value\": $(echo "$tt * 1000" | bc), \"unit\": \"ms\"},"
    extra+="\"rootbox-$kind\": {\"value\": $(echo "$rt * 1000" | bc), \"unit\": \"ms\"},"
done
specs=("rootbox-gzip/tar-gzip<=1.5" "rootbox-plain/tar-plain<=1.5")
skipped=
if command -v umoci >/dev/null; then
    ut=$(for _ in $(seq "$RUNS"); do time_umoci; done | best)
    printf '%-14s umoci unpack %6.3fs\n' gzip "$ut"
    extra+="\"umoci-gzip\": {\"value\": $(echo "$ut * 1000" | bc), \"unit\": \"ms\"},"
    specs+=("rootbox-gzip/umoci-gzip<=1")
else
    skipped=$(printf 'umoci-gzip\tumoci is not installed (apt-get install umoci)')
fi
extra+="\"layer-mb\": {\"value\": $((size / 1000000)), \"unit\": \"MB\"}}"
mkdir -p "${BENCH_RESULTS:-$REPO/bench/results}"
SKIPPED_TSV=$skipped EXTRA_JSON=$extra python3 "$REPO/bench/report.py" \
    "layer unpack: rootbox image unpack vs tar -x and umoci unpack ($files entries)" \
    "${BENCH_RESULTS:-$REPO/bench/results}/unpack.json" /nonexistent "${specs[@]}"

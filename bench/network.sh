#!/usr/bin/env bash
# Published-port throughput and connection latency, rootless, on 127.0.0.1:
#   rootbox --network pasta | rootbox --network slirp4netns
#   | podman (rootless, default port handler rootlessport) | podman slirp4netns port_handler
#   | busybox httpd on the host's loopback (no container: the ceiling)
#
#   bench/network.sh            (make bench-network)
#
# A busybox httpd in the container serves a BENCH_NET_MB MiB file and a tiny one through
# `-p PORT:80`; a Python client on the host downloads the big file (best and median MB/s of
# BENCH_NET_ROUNDS) and opens BENCH_NET_CONNS fresh connections (TCP connect time, and
# connect + GET of the tiny file + close).
#
# Runs as the unprivileged user: as root it drops to ROOTBOX_TEST_USER (default rbtest).
# podman runs with `--runtime runc --cgroup-manager cgroupfs` (crun refuses hybrid cgroup
# hosts); when podman cannot run here its error is printed instead of a number.
#
# Environment: BENCH_NET_MB (256), BENCH_NET_ROUNDS (5), BENCH_NET_CONNS (300),
# ROOTBOX_BIN (target/release), BENCH_OUT (bench/results/network.json).
set -euo pipefail

die() { echo "bench/network.sh: $*" >&2; exit 1; }

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
MB=${BENCH_NET_MB:-256}
ROUNDS=${BENCH_NET_ROUNDS:-5}
CONNS=${BENCH_NET_CONNS:-300}
BIN=${ROOTBOX_BIN:-$REPO/target/release}
OUT=${BENCH_OUT:-$REPO/bench/results/network.json}

command -v python3 >/dev/null || die "python3 not found"
command -v busybox >/dev/null || die "busybox not found (apt-get install busybox-static)"
[ -x "$BIN/rootbox" ] || die "$BIN/rootbox not found: cargo build --release (or set ROOTBOX_BIN)"

if [ "$(id -u)" -eq 0 ]; then
    BENCH_USER=${ROOTBOX_TEST_USER:-rbtest}
    id -u "$BENCH_USER" >/dev/null 2>&1 \
        || die "user $BENCH_USER does not exist: run tests/setup-root.sh (make test does) or set ROOTBOX_TEST_USER"
    AS_ROOT=1
else
    BENCH_USER=$(id -un)
    AS_ROOT=0
fi

# Short: podman puts slirp4netns's API socket under $XDG_RUNTIME_DIR (108-byte limit).
work=$(mktemp -d /tmp/rbnb.XXXXXX)
chmod 0755 "$work"
SERVER_PIDFILE=$work/run/server.pid
cleanup() {
    stop_server || true
    if command -v podman >/dev/null; then
        as_user podman rm -f rbbench >/dev/null 2>&1 || true
        as_user podman system reset -f >/dev/null 2>&1 || true
    fi
    rm -rf "$work" 2>/dev/null || true
}
trap cleanup EXIT

# as_user CMD...: run CMD as the benchmark user, in $work, with a private runtime dir.
as_user() {
    if [ "$AS_ROOT" = 1 ]; then
        runuser -u "$BENCH_USER" -- env -C "$work" HOME="$work/home" XDG_RUNTIME_DIR="$work/xdg" \
            XDG_DATA_HOME="$work/home/.local/share" XDG_CONFIG_HOME="$work/home/.config" "$@"
    else
        env -C "$work" HOME="$work/home" XDG_RUNTIME_DIR="$work/xdg" \
            XDG_DATA_HOME="$work/home/.local/share" XDG_CONFIG_HOME="$work/home/.config" "$@"
    fi
}

echo "preparing: busybox rootfs, a ${MB} MiB file"
"$REPO/tests/lib/mk-busybox-rootfs.sh" "$work/rootfs" >/dev/null
mkdir -p "$work/www" "$work/xdg" "$work/home" "$work/run"
echo ok >"$work/www/small"
head -c "$((MB * 1024 * 1024))" /dev/urandom >"$work/www/big"
if [ "$AS_ROOT" = 1 ]; then
    chown -R "$BENCH_USER" "$work/xdg" "$work/home" "$work/run" "$work/rootfs"
fi
chmod 0700 "$work/xdg"
chmod -R a+rX "$work/www" "$work/rootfs"


free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# start_server CMD...: CMD runs in the background as the user; its pid is kept to stop it.
start_server() {
    as_user sh -c 'echo $$ >"$0"; exec "$@" >/dev/null 2>"$0.err"' "$SERVER_PIDFILE" "$@" &
}

stop_server() {
    [ -s "$SERVER_PIDFILE" ] || return 0
    local pid
    pid=$(cat "$SERVER_PIDFILE")
    rm -f "$SERVER_PIDFILE"
    kill -TERM "$pid" 2>/dev/null || return 0
    for _ in $(seq 1 100); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.05
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait 2>/dev/null || true
}

# The client: waits for the server, then measures. Prints one JSON object.
CLIENT=$(
    cat <<'PY'
import json, socket, statistics, sys, time
port, rounds, conns, size = (int(a) for a in sys.argv[1:5])
deadline = time.monotonic() + 20
while True:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
            s.sendall(b"GET /small HTTP/1.0\r\n\r\n")
            if b"ok" in s.recv(4096) + s.recv(4096):
                break
    except OSError:
        pass
    if time.monotonic() > deadline:
        print(json.dumps({"error": "the server never answered on 127.0.0.1:%d" % port}))
        sys.exit(0)
    time.sleep(0.05)

def get(path, bufsize=1 << 20):
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    s.sendall(b"GET " + path + b" HTTP/1.0\r\n\r\n")
    n = 0
    buf = bytearray(bufsize)
    while True:
        k = s.recv_into(buf)
        if not k:
            break
        n += k
    s.close()
    return n

rates = []
for _ in range(rounds):
    t = time.perf_counter()
    n = get(b"/big")
    dt = time.perf_counter() - t
    if n < size:
        print(json.dumps({"error": "short transfer: %d of %d bytes" % (n, size)}))
        sys.exit(0)
    rates.append(n / dt / 1e6)
connect, request = [], []
for _ in range(conns):
    t = time.perf_counter()
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    t1 = time.perf_counter()
    s.sendall(b"GET /small HTTP/1.0\r\n\r\n")
    while s.recv(4096):
        pass
    s.close()
    t2 = time.perf_counter()
    connect.append((t1 - t) * 1e3)
    request.append((t2 - t) * 1e3)
q = lambda v, p: sorted(v)[min(len(v) - 1, int(len(v) * p))]
print(json.dumps({
    "throughput_MBps_best": round(max(rates), 1),
    "throughput_MBps_median": round(statistics.median(rates), 1),
    "connect_ms_median": round(statistics.median(connect), 3),
    "request_ms_median": round(statistics.median(request), 3),
    "request_ms_p90": round(q(request, 0.9), 3),
}))
PY
)

declare -a NAMES=()
declare -A RESULT=()

measure() { # measure NAME PORT
    local name=$1 port=$2 res
    res=$(python3 -c "$CLIENT" "$port" "$ROUNDS" "$CONNS" "$((MB * 1024 * 1024))" || echo '{"error": "client failed"}')
    if grep -q '"error"' <<<"$res" && [ -s "$SERVER_PIDFILE.err" ]; then
        res=$(python3 -c 'import json,sys; d=json.loads(sys.argv[1]); d["server_stderr"]=open(sys.argv[2]).read()[-400:]; print(json.dumps(d))' "$res" "$SERVER_PIDFILE.err")
    fi
    NAMES+=("$name")
    RESULT[$name]=$res
    echo "  $name: $res"
}

RB=("$BIN/rootbox" run --init --rootfs "$work/rootfs" -v "$work/www:/www:ro")
HTTPD=(httpd -f -p 80 -h /www)

echo "host loopback (busybox httpd, no container)"
port=$(free_port)
start_server busybox httpd -f -p "127.0.0.1:$port" -h "$work/www"
measure "host-loopback" "$port"
stop_server

for helper in pasta slirp4netns; do
    if ! command -v "$helper" >/dev/null; then
        NAMES+=("rootbox-$helper")
        RESULT[rootbox-$helper]='{"error": "'"$helper"' is not installed"}'
        continue
    fi
    echo "rootbox --network $helper"
    port=$(free_port)
    start_server "${RB[@]}" --network "$helper" -p "$port:80" -- "${HTTPD[@]}"
    measure "rootbox-$helper" "$port"
    stop_server
done

podman_case() { # podman_case NAME NETWORK
    local name=$1 net=$2 port err
    echo "podman --network $net"
    if ! command -v podman >/dev/null; then
        NAMES+=("$name")
        RESULT[$name]='{"error": "podman is not installed"}'
        return
    fi
    port=$(free_port)
    if ! err=$(as_user podman --runtime runc --cgroup-manager cgroupfs run -d --name rbbench \
        --network "$net" -p "$port:80" -v "$work/www:/www:ro" --rootfs "$work/rootfs" \
        "${HTTPD[@]}" 2>&1); then
        NAMES+=("$name")
        RESULT[$name]=$(python3 -c 'import json,sys; print(json.dumps({"error": "podman could not run: " + sys.argv[1][-400:]}))' "$err")
        echo "  $name: ${RESULT[$name]}"
        as_user podman rm -f rbbench >/dev/null 2>&1 || true
        return
    fi
    measure "$name" "$port"
    as_user podman rm -f -t 0 rbbench >/dev/null 2>&1 || true
}
podman_case "podman-rootlessport" "slirp4netns"
podman_case "podman-slirp4netns" "slirp4netns:port_handler=slirp4netns"

echo
printf '%-22s %14s %14s %14s %14s %14s\n' "" "MB/s best" "MB/s median" "connect ms" "GET ms median" "GET ms p90"
for n in "${NAMES[@]}"; do
    python3 - "$n" "${RESULT[$n]}" <<'PY'
import json, sys
name, d = sys.argv[1], json.loads(sys.argv[2])
if "error" in d:
    print(f"{name:<22} {d['error'][:90]}")
else:
    print(f"{name:<22} {d['throughput_MBps_best']:>14} {d['throughput_MBps_median']:>14} "
          f"{d['connect_ms_median']:>14} {d['request_ms_median']:>14} {d['request_ms_p90']:>14}")
PY
done

mkdir -p "$(dirname "$OUT")"
{
    echo "{"
    echo "  \"file_MiB\": $MB, \"rounds\": $ROUNDS, \"connections\": $CONNS,"
    echo "  \"results\": {"
    first=1
    for n in "${NAMES[@]}"; do
        [ $first = 1 ] || echo ","
        first=0
        printf '    "%s": %s' "$n" "${RESULT[$n]}"
    done
    echo
    echo "  }"
    echo "}"
} >"$OUT"
echo "results: $OUT"

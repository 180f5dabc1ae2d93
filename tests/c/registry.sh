#!/usr/bin/env bash
# Starts Debian's docker-registry (the CNCF Distribution server) on 127.0.0.1 for the C API's
# registry test, serving from DIR/storage with a config made here, and prints its address
# (127.0.0.1:PORT) once it accepts connections. Its pid is in DIR/pid: stop it with
# `kill "$(cat DIR/pid)"`. The log is DIR/registry.log.
#   registry.sh DIR                       plain HTTP, no authentication
#   registry.sh DIR --tls USER PASSWORD   HTTPS with a certificate for 127.0.0.1 signed by a CA
#                                         made here (DIR/certs/ca.crt) and htpasswd auth
# Also: registry.sh --free-port prints a port nothing listens on (for "unreachable" tests).
set -euo pipefail

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

if [ "${1:-}" = --free-port ]; then
    free_port
    exit 0
fi
case "$#:${2:-}" in
    1: | 4:--tls) ;;
    *) echo "usage: $0 DIR [--tls USER PASSWORD] | --free-port" >&2; exit 2 ;;
esac
dir=$1
registry=$(command -v docker-registry || echo /usr/bin/docker-registry)
[ -x "$registry" ] \
    || { echo "registry.sh: docker-registry is not installed (tests/setup-root.sh installs it)" >&2; exit 1; }

mkdir -p "$dir/storage"
port=$(free_port)
{
    echo "version: 0.1"
    echo "log:"
    echo "  level: warn"
    echo "storage:"
    echo "  filesystem:"
    echo "    rootdirectory: $dir/storage"
    echo "http:"
    echo "  addr: 127.0.0.1:$port"
} >"$dir/config.yml"

if [ $# -eq 4 ]; then
    user=$3 password=$4
    for tool in openssl htpasswd; do
        command -v "$tool" >/dev/null \
            || { echo "registry.sh: $tool is not installed (tests/setup-root.sh installs it)" >&2; exit 1; }
    done
    mkdir -p "$dir/certs"
    ossl() { openssl "$@" >/dev/null 2>&1 || { echo "registry.sh: openssl $1 failed" >&2; exit 1; }; }
    ossl req -x509 -newkey rsa:2048 -nodes -keyout "$dir/ca.key" -out "$dir/certs/ca.crt" \
        -days 2 -subj "/CN=rootbox C test CA" \
        -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign"
    ossl req -newkey rsa:2048 -nodes -keyout "$dir/server.key" -out "$dir/server.csr" \
        -subj "/CN=127.0.0.1"
    printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' \
        >"$dir/ext.cnf"
    ossl x509 -req -in "$dir/server.csr" -CA "$dir/certs/ca.crt" -CAkey "$dir/ca.key" \
        -CAcreateserial -out "$dir/server.crt" -days 2 -extfile "$dir/ext.cnf"
    htpasswd -Bbn "$user" "$password" >"$dir/htpasswd"
    {
        echo "  tls:"
        echo "    certificate: $dir/server.crt"
        echo "    key: $dir/server.key"
        echo "auth:"
        echo "  htpasswd:"
        echo "    realm: rootbox-c-test"
        echo "    path: $dir/htpasswd"
    } >>"$dir/config.yml"
fi

"$registry" serve "$dir/config.yml" >"$dir/registry.log" 2>&1 </dev/null &
echo $! >"$dir/pid"
for _ in $(seq 400); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
        echo "127.0.0.1:$port"
        exit 0
    fi
    if ! kill -0 "$(cat "$dir/pid")" 2>/dev/null; then
        break
    fi
    sleep 0.05
done
echo "registry.sh: docker-registry did not start on 127.0.0.1:$port: $(cat "$dir/registry.log")" >&2
kill "$(cat "$dir/pid")" 2>/dev/null || true
exit 1

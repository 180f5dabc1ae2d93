#!/usr/bin/env bash
# One-time machine setup for the test suite; run as root (make test does).
#  - installs the Debian packages the tests and benchmarks use (apt-get update once,
#    only when something is missing),
#  - creates the unprivileged test user (default rbtest) with /etc/subuid and
#    /etc/subgid ranges,
#  - sets /dev/fuse and /dev/net/tun to 0666 as distributions ship them.
# Idempotent: a second run changes nothing.
set -euo pipefail

die() { echo "setup-root: $*" >&2; exit 1; }
log() { echo "setup-root: $*"; }

[ "$(id -u)" -eq 0 ] || die "must run as root"

TEST_USER=${ROOTBOX_TEST_USER:-rbtest}
SUBID_START=${ROOTBOX_TEST_SUBID_START:-200000}
SUBID_COUNT=${ROOTBOX_TEST_SUBID_COUNT:-65536}

# Packages: the runtime's helpers (uidmap: newuidmap/newgidmap), the rootfs
# (busybox-static), the network helpers (passt: pasta, slirp4netns), the test runner (python3-pytest from Debian, so that the
# unprivileged user gets it with the system python /usr/bin/python3), and the
# peers the benchmark compares with; the C API tests' compilers, pkg-config and valgrind.
PACKAGES=(
    busybox-static uidmap file procps util-linux
    python3 python3-pytest python3-pytest-timeout
    crun runc bubblewrap hyperfine strace
    passt slirp4netns
    gcc libc6-dev
    g++ pkg-config valgrind
    python3-venv python3-dev python3-pip
    fuse-overlayfs
    docker-registry apache2-utils openssl skopeo umoci
)
if [ -n "${ROOTBOX_EXTRA_PACKAGES:-}" ]; then
    # shellcheck disable=SC2206
    PACKAGES+=(${ROOTBOX_EXTRA_PACKAGES})
fi

missing=()
for p in "${PACKAGES[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q '^install ok installed$'; then
        missing+=("$p")
    fi
done
if [ ${#missing[@]} -gt 0 ]; then
    command -v apt-get >/dev/null || die "apt-get not found; install by hand: ${missing[*]}"
    log "installing: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    # Wait for another apt/dpkg (unattended-upgrades, a concurrent install).
    for _ in $(seq 1 120); do
        fuser /var/lib/dpkg/lock-frontend >/dev/null 2>&1 || break
        sleep 5
    done
    apt-get update -q
    apt-get install -y -q --no-install-recommends "${missing[@]}" \
        </dev/null || die "apt-get install failed"
else
    log "packages present"
fi

# The unprivileged test user.
if ! id -u "$TEST_USER" >/dev/null 2>&1; then
    log "creating user $TEST_USER"
    # No automatic subordinate ids: the ranges below are added explicitly.
    useradd -m -s /bin/bash -K SUB_UID_COUNT=0 -K SUB_GID_COUNT=0 "$TEST_USER"
fi

# Subordinate id ranges, unless the user already has one.
for f in /etc/subuid /etc/subgid; do
    touch "$f"
    if ! grep -q "^${TEST_USER}:" "$f"; then
        # Refuse to overlap a range another user already owns.
        if awk -F: -v s="$SUBID_START" -v c="$SUBID_COUNT" \
            'NF==3 && s < $2+$3 && $2 < s+c {bad=1} END {exit !bad}' "$f"; then
            die "range $SUBID_START+$SUBID_COUNT overlaps an entry in $f; set ROOTBOX_TEST_SUBID_START"
        fi
        log "adding ${TEST_USER}:${SUBID_START}:${SUBID_COUNT} to $f"
        echo "${TEST_USER}:${SUBID_START}:${SUBID_COUNT}" >> "$f"
    fi
done

# newuidmap/newgidmap must be setuid root (or carry file capabilities) to work.
for b in /usr/bin/newuidmap /usr/bin/newgidmap; do
    [ -x "$b" ] || die "$b missing (package uidmap)"
    if [ ! -u "$b" ] && ! { command -v getcap >/dev/null && getcap "$b" | grep -q cap_set; }; then
        die "$b is neither setuid nor has file capabilities"
    fi
done

# Unprivileged user namespaces must be allowed.
if [ -r /proc/sys/kernel/unprivileged_userns_clone ] \
    && [ "$(cat /proc/sys/kernel/unprivileged_userns_clone)" = 0 ]; then
    die "kernel.unprivileged_userns_clone=0: enable it (sysctl -w kernel.unprivileged_userns_clone=1)"
fi
if [ "$(cat /proc/sys/user/max_user_namespaces)" = 0 ]; then
    die "user.max_user_namespaces=0: enable user namespaces (sysctl -w user.max_user_namespaces=15000)"
fi

# Device modes as distributions ship them (fuse-overlayfs, pasta/slirp4netns).
for dev in /dev/fuse /dev/net/tun; do
    if [ -c "$dev" ]; then
        chmod 0666 "$dev"
    fi
done

# Python build tools for the rootbox module (maturin) and its checks (mypy's stubtest),
# in a virtualenv of the system python that every user can read and run.
PYENV=${ROOTBOX_PYENV:-/opt/rootbox-py}
if [ ! -x "$PYENV/bin/maturin" ] || [ ! -x "$PYENV/bin/stubtest" ] || [ ! -x "$PYENV/bin/pytest" ]; then
    log "creating $PYENV (maturin, mypy, pytest)"
    /usr/bin/python3 -m venv "$PYENV" || die "python3 -m venv $PYENV failed (package python3-venv)"
    "$PYENV/bin/pip" install -q --disable-pip-version-check \
        'maturin>=1.5,<2' 'mypy>=1.10' 'pytest>=7' 'pytest-timeout>=2' \
        || die "pip install into $PYENV failed"
    chmod -R a+rX "$PYENV"
else
    log "python tools present in $PYENV"
fi

log "done (test user: $TEST_USER, subids ${SUBID_START}+${SUBID_COUNT})"

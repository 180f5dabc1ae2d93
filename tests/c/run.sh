#!/usr/bin/env bash
# The C API tests: C programs compiled with `cc -std=c99` against the INSTALLED header and
# library (`make install PREFIX=...`), run as whoever calls this (run.sh runs it as the
# unprivileged test user):
#   - exported symbols: only rootbox_* (nm -D), soname, pkg-config file usable
#   - the header compiles as C99 and C++ (-pedantic -Werror) and can be included twice
#   - test_errors, test_lifecycle, test_run, test_threads (8 threads at once), the example,
#     a static link against libcontainer.a
#   - test_registry: push, pull into a fresh store, run; credentials and CAs in the options;
#     against two docker-registry servers on 127.0.0.1 (registry.sh: plain HTTP, and TLS with
#     htpasswd auth), stopped at the end; the example pull_and_run against the first
#   - test_errors again under valgrind (every call up to a container's launch): no leak, no
#     invalid access, no use of uninitialised memory (valgrind.supp: what is suppressed, why)
# Usage: tests/c/run.sh PREFIX [BUSYBOX_ROOTFS]   (rootfs default: $ROOTBOX_BUSYBOX_ROOTFS)
# Environment: CC (default cc), CXX (default g++), ROOTBOX_SKIP_VALGRIND=1.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
[ $# -ge 1 ] || { echo "usage: $0 PREFIX [BUSYBOX_ROOTFS]" >&2; exit 2; }
prefix=$(cd "$1" && pwd)
rootfs=${2:-${ROOTBOX_BUSYBOX_ROOTFS:-}}
[ -n "$rootfs" ] && [ -x "$rootfs/bin/busybox" ] \
    || { echo "c-tests: no busybox rootfs (argument 2 or ROOTBOX_BUSYBOX_ROOTFS)" >&2; exit 2; }
rootfs=$(cd "$rootfs" && pwd)
CC=${CC:-cc}
CXX=${CXX:-g++}
lib=$prefix/lib
work=$(mktemp -d "${TMPDIR:-/tmp}/rootbox-ctest.XXXXXX")
failed=0
cleanup() {
    local pidfile
    for pidfile in "$work"/registry-*/pid; do
        [ -f "$pidfile" ] && kill "$(cat "$pidfile")" 2>/dev/null || true
    done
    rm -rf "$work" 2>/dev/null || true
}
trap cleanup EXIT

pass() { echo "c-tests: PASS $*"; }
fail() { echo "c-tests: FAIL $*" >&2; failed=1; }

export PKG_CONFIG_PATH=$lib/pkgconfig
pc_cflags=$(pkg-config --cflags rootbox)
pc_libs=$(pkg-config --libs rootbox)
CFLAGS=(-std=c99 -Wall -Wextra -Werror -g $pc_cflags)
LIBS=($pc_libs -Wl,-rpath,"$lib" -lpthread)

# --- the library's exported symbols and soname --------------------------------------------
so=$lib/libcontainer.so
others=$(nm -D --defined-only "$so" | awk '{print $3}' | grep -v -e '^rootbox_' -e '^ROOTBOX_' || true)
count=$(nm -D --defined-only "$so" | awk '{print $3}' | grep -c '^rootbox_' || true)
if [ -z "$others" ] && [ "$count" -ge 30 ]; then
    pass "exports: $count symbols, all rootbox_*"
else
    fail "exports: $count rootbox_* symbols; others: $(echo "$others" | head -5 | tr '\n' ' ')"
fi
if readelf -d "$so" | grep -q 'SONAME.*libcontainer\.so\.[0-9]'; then
    pass "soname: $(readelf -d "$so" | sed -n 's/.*Library soname: \[\(.*\)\]/\1/p')"
else
    fail "soname missing"
fi

# --- the header as C99 and C++, included twice ----------------------------------------------
if "$CC" "${CFLAGS[@]}" -pedantic "$here/header_c99.c" -o "$work/header_c99" "${LIBS[@]}" \
    && "$work/header_c99"; then
    pass "header compiles as C99 (-pedantic -Werror), included twice"
else
    fail "header as C99"
fi
if "$CXX" -std=c++11 -Wall -Wextra -pedantic -Werror $pc_cflags "$here/header_cxx.cc" \
    -o "$work/header_cxx" "${LIBS[@]}" && "$work/header_cxx"; then
    pass "header compiles as C++11 (-pedantic -Werror), included twice, C linkage"
else
    fail "header as C++"
fi

# --- a static link ----------------------------------------------------------------------------
if "$CC" "${CFLAGS[@]}" "$here/header_c99.c" -o "$work/header_static" "$lib/libcontainer.a" \
    $(pkg-config --static --libs-only-other --libs-only-l rootbox | sed 's/-lcontainer//') \
    && "$work/header_static" && ! ldd "$work/header_static" | grep -q libcontainer; then
    pass "static link against libcontainer.a"
else
    fail "static link against libcontainer.a"
fi

# --- the programs -------------------------------------------------------------------------------
tar -C "$rootfs" -cf "$work/busybox.tar" .
export RB_TARBALL=$work/busybox.tar RB_ROOTFS=$rootfs RB_STORE=$work/store
build() { "$CC" "${CFLAGS[@]}" "$here/$1.c" -o "$work/$1" "${LIBS[@]}"; }
run_test() { # NAME [WRAPPER...]
    local name=$1 t0 rc=0
    shift
    export RB_WORK=$work/run-$name RB_STATE=$work/run-$name/state
    mkdir -p "$RB_WORK"
    t0=$(date +%s%N)
    timeout -k 10 300 "$@" "$work/${name%%-*}" || rc=$?
    if [ "$rc" -eq 0 ]; then
        pass "$name ($(( ($(date +%s%N) - t0) / 1000000 )) ms)"
    else
        fail "$name (exit $rc)"
    fi
}
for t in test_errors test_lifecycle test_run test_threads; do
    if build "$t"; then
        run_test "$t"
    else
        fail "$t does not compile"
    fi
done

# --- registries: push, pull, run ----------------------------------------------------------------
if build test_registry; then
    reg_user=ctest reg_password="c-api-pw-$$"
    if RB_REGISTRY=$("$here/registry.sh" "$work/registry-plain") \
        && RB_TLS_REGISTRY=$("$here/registry.sh" "$work/registry-tls" --tls "$reg_user" "$reg_password") \
        && RB_CLOSED_PORT=$("$here/registry.sh" --free-port); then
        install -d -m 0700 "$work/registry-home" "$work/registry-xdg"
        run_test test_registry env -u XDG_CONFIG_HOME -u REGISTRY_AUTH_FILE -u ROOTBOX_CERT_DIR \
            -u CONTAINERS_REGISTRIES_CONF HOME="$work/registry-home" \
            XDG_RUNTIME_DIR="$work/registry-xdg" RB_REGISTRY="$RB_REGISTRY" \
            RB_TLS_REGISTRY="$RB_TLS_REGISTRY" RB_TLS_CERTS="$work/registry-tls/certs" \
            RB_REG_USER="$reg_user" RB_REG_PASSWORD="$reg_password" RB_CLOSED_PORT="$RB_CLOSED_PORT"
        # The pull example, into a fresh default store, from what test_registry pushed.
        ex=$here/../../examples/c/pull_and_run.c
        if "$CC" -std=c99 -Wall -Wextra -Werror "$ex" -o "$work/pull_and_run" $pc_cflags "${LIBS[@]}"; then
            install -d -m 0700 "$work/pull-xdg"
            ex_env=(env -u REGISTRY_USER -u REGISTRY_PASSWORD XDG_RUNTIME_DIR="$work/pull-xdg"
                ROOTBOX_ROOT="$work/pull-store" HOME="$work/registry-home")
            rc=0
            "${ex_env[@]}" "$work/pull_and_run" "$RB_REGISTRY/ctest/busybox:1" echo hello from the registry \
                >"$work/pull.out" 2>"$work/pull.err" || rc=$?
            rc2=0
            "${ex_env[@]}" "$work/pull_and_run" "$RB_REGISTRY/ctest/nosuch:1" \
                >"$work/pull2.out" 2>"$work/pull2.err" || rc2=$?
            if [ "$rc" -eq 0 ] && grep -q '^pulled .* as sha256:' "$work/pull.out" \
                && grep -qx 'hello from the registry' "$work/pull.out" && [ "$rc2" -eq 125 ] \
                && grep -q 'ROOTBOX_ERROR_IMAGE_NOT_FOUND: .*ctest/nosuch:1' "$work/pull2.err"; then
                pass "example pull_and_run: $(tail -1 "$work/pull.out"); unknown image: exit $rc2"
            else
                fail "example pull_and_run (exit $rc, $rc2): $(cat "$work"/pull.out "$work"/pull.err "$work"/pull2.*)"
            fi
        else
            fail "example pull_and_run does not compile"
        fi
    else
        fail "test_registry: the registries did not start"
    fi
    for r in plain tls; do
        if [ -f "$work/registry-$r/pid" ]; then
            kill "$(cat "$work/registry-$r/pid")" 2>/dev/null || true
            rm -f "$work/registry-$r/pid"
        fi
    done
else
    fail "test_registry does not compile"
fi

# --- under valgrind ------------------------------------------------------------------------------
if [ "${ROOTBOX_SKIP_VALGRIND:-0}" != 1 ]; then
    if command -v valgrind >/dev/null; then
        # test_errors only: valgrind 3.19 (Debian 12) lacks openat2 and the new mount API, so a
        # container's process cannot run under it; every call up to the launch can. It runs
        # after the tests above, so the image's layers are already unpacked in the store.
        for t in test_errors; do
            RB_VALGRIND=1 run_test "$t-valgrind" valgrind -q --error-exitcode=99 --leak-check=full \
                --show-leak-kinds=definite,indirect --errors-for-leak-kinds=definite,indirect \
                --suppressions="$here/valgrind.supp" --child-silent-after-fork=yes
        done
    else
        fail "valgrind is not installed (tests/setup-root.sh installs it)"
    fi
fi

# --- the example ------------------------------------------------------------------------------
ex=$here/../../examples/c/memory_limit.c
if "$CC" -std=c99 -Wall -Wextra -Werror "$ex" -o "$work/memory_limit" $pc_cflags "${LIBS[@]}"; then
    mkdir -p "$work/example-xdg"
    chmod 700 "$work/example-xdg"
    rc=0
    XDG_RUNTIME_DIR=$work/example-xdg ROOTBOX_ROOT=$RB_STORE \
        "$work/memory_limit" busybox:ctest >"$work/ex.out" 2>"$work/ex.err" || rc=$?
    if [ "$rc" -eq 0 ] && grep -q '^hello from .*memory.max=67108864$' "$work/ex.out"; then
        pass "example: $(grep '^hello' "$work/ex.out")"
    elif [ "$rc" -eq 125 ] && grep -q 'ROOTBOX_ERROR_CGROUP: cannot enforce the requested memory' "$work/ex.err"; then
        pass "example: refused, as this host delegates no memory controller: $(head -1 "$work/ex.err")"
    else
        fail "example (exit $rc): $(cat "$work/ex.out" "$work/ex.err")"
    fi
else
    fail "example does not compile"
fi

[ "$failed" -eq 0 ] && echo "c-tests: all passed" || echo "c-tests: FAILED" >&2
exit "$failed"

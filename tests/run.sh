#!/usr/bin/env bash
# Functions are called indirectly through run_step:
# shellcheck disable=SC2317
# Everything `make test` does, in order:
#
#   as root:      setup (tests/setup-root.sh) -> lint -> build -> unit tests -> fuzz build
#                 -> stage -> short fuzz runs as the unprivileged test user
#                 -> integration tests as the unprivileged test user -> again as root
#                 -> C API tests (tests/c/run.sh) as the test user
#                 -> tests/vm/check.sh (when present)
#   as non-root:  lint -> build -> unit tests -> fuzz build and short runs
#                 -> integration tests as yourself
#
# Every step runs even when an earlier one failed (except after a failed build),
# and a summary says which failed; the exit code is non-zero if any did.
#
# Environment:
#   ROOTBOX_TEST_USER   unprivileged test user (default rbtest)
#   ROOTBOX_STAGE       where root stages binaries/rootfs/tests (default /tmp/rootbox-stage)
#   PYTEST_ARGS         extra pytest arguments, e.g. PYTEST_ARGS='-k lifecycle -x'
#   ROOTBOX_PYTEST_TIMEOUT  limit for one whole pytest run, seconds (default 420)
#   ROOTBOX_PYENV       virtualenv holding maturin and mypy (default /opt/rootbox-py, made by setup-root.sh)
#   ROOTBOX_SKIP_LINT=1, ROOTBOX_SKIP_UNIT=1, ROOTBOX_SKIP_ROOT_RUN=1, ROOTBOX_SKIP_VM=1,
#   ROOTBOX_SKIP_PYTHON=1 (the Python module: wheel, stubtest, tests/python),
#   ROOTBOX_SKIP_FUZZ=1 (the fuzz targets' build and short runs)
#   ROOTBOX_FUZZ_SECONDS  how long each fuzz target runs (default 10; fuzz/README.md)
#   CARGO               cargo binary (default cargo)
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"

CARGO=${CARGO:-cargo}
TEST_USER=${ROOTBOX_TEST_USER:-rbtest}
STAGE=${ROOTBOX_STAGE:-/tmp/rootbox-stage}
read -r -a EXTRA_PYTEST <<<"${PYTEST_ARGS:-}"
# A whole pytest run may take at most this long (a hanging build must not hang CI);
# SIGINT first, so pytest still prints its report.
PYTEST_LIMIT=${ROOTBOX_PYTEST_TIMEOUT:-420}
CAP=(timeout -s INT -k 30 "$PYTEST_LIMIT")

declare -a SUMMARY=()
FAILED=0

step() { printf '\n==== %s ====\n' "$*"; }
STEP_START=$SECONDS
record() { # record NAME RC: with the seconds since the previous record (the CI budget)
    local took=$((SECONDS - STEP_START))
    STEP_START=$SECONDS
    if [ "$2" -eq 0 ]; then
        SUMMARY+=("PASS  $1 [${took}s]")
    else
        SUMMARY+=("FAIL  $1 (exit $2) [${took}s]")
        FAILED=1
    fi
}
# Each step's output is also kept in STEP_LOGS; the summary ends with the lines of a failed
# step that say why (CI shows only the end of a long output).
STEP_LOGS=$(mktemp -d "${TMPDIR:-/tmp}/rootbox-test-logs.XXXXXX")
declare -a WHY=()
run_step() { # run_step NAME CMD... : run, record, never abort
    local name=$1 rc=0 log
    shift
    step "$name"
    log=$STEP_LOGS/${#SUMMARY[@]}.log
    local -a st
    set +e
    "$@" 2>&1 | tee "$log"
    st=("${PIPESTATUS[@]}")
    set -e
    rc=${st[0]}
    record "$name" "$rc"
    if [ "$rc" -ne 0 ]; then
        WHY+=("-- $name:")
        mapfile -t -O "${#WHY[@]}" WHY < <(grep -a -E \
            '^(not ok|FAILED|FAIL|ERROR|E  )|[^_]FAIL|panicked|^error|[0-9]+ (failed|errors?)\b' "$log" \
            | grep -av '^PASS' | cut -c1-300 | tail -n 8)
    fi
    return 0
}
summary() {
    printf '\n==== summary ====\n'
    printf '%s\n' "${SUMMARY[@]}"
    printf 'total %dm%02ds\n' $((SECONDS / 60)) $((SECONDS % 60))
    if [ "${#WHY[@]}" -gt 0 ]; then
        printf '\n==== why (failure lines of each failed step; whole logs in %s) ====\n' "$STEP_LOGS"
        printf '%s\n' "${WHY[@]}"
    fi
}
die() {
    echo "run.sh: $*" >&2
    summary
    exit 1
}

command -v "$CARGO" >/dev/null || die "cargo not found: install Rust (https://rustup.rs) and retry"

# ---------------------------------------------------------------------------
# pytest runner: the system python with Debian's python3-pytest as root (so the
# unprivileged user gets the very same interpreter); python3 from PATH otherwise.
pytest_rc_note() {
    case $1 in
        0) ;;
        5) echo "run.sh: pytest collected no tests (exit 5): the suite is missing or everything was deselected" >&2 ;;
        124 | 130 | 137) echo "run.sh: pytest stopped after ${PYTEST_LIMIT}s (ROOTBOX_PYTEST_TIMEOUT): something hangs" >&2 ;;
        *) echo "run.sh: pytest exited $1" >&2 ;;
    esac
}

integration_as_user() { # STAGE_DIR
    local stage=$1 home rc=0
    home=$(getent passwd "$TEST_USER" | cut -d: -f6)
    runuser -u "$TEST_USER" -- env -i -C "$stage" \
        HOME="$home" USER="$TEST_USER" LOGNAME="$TEST_USER" LANG=C.UTF-8 \
        PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        PYTHONDONTWRITEBYTECODE=1 \
        ROOTBOX_BIN="$stage/bin" ROOTBOX_BUSYBOX_ROOTFS="$stage/rootfs" ROOTBOX_REQUIRE_SUBIDS=1 \
        "${CAP[@]}" /usr/bin/python3 -m pytest -p no:cacheprovider "$stage/tests/integration" "${EXTRA_PYTEST[@]}" \
        || rc=$?
    pytest_rc_note "$rc"
    return "$rc"
}

c_tests_as_user() { # STAGE_DIR: tests/c against the staged install, as the test user
    local stage=$1 home
    home=$(getent passwd "$TEST_USER" | cut -d: -f6)
    runuser -u "$TEST_USER" -- env -i -C /tmp \
        HOME="$home" USER="$TEST_USER" LOGNAME="$TEST_USER" LANG=C.UTF-8 \
        PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        timeout -k 30 900 "$stage/tests/c/run.sh" "$stage/c" "$stage/rootfs"
}

c_tests_as_self() {
    local rootfs=$REPO/tests/.work/busybox-rootfs
    if [ ! -x "$rootfs/bin/busybox" ]; then
        rm -rf "$rootfs"
        mkdir -p "$REPO/tests/.work"
        tests/lib/mk-busybox-rootfs.sh "$rootfs" || return 1
    fi
    make --no-print-directory install PREFIX="$REPO/tests/.work/c-prefix" CARGO="$CARGO" >/dev/null || return 1
    tests/c/run.sh "$REPO/tests/.work/c-prefix" "$rootfs"
}

integration_as_root() { # STAGE_DIR
    local stage=$1 rc=0
    env -C "$stage" PYTHONDONTWRITEBYTECODE=1 \
        ROOTBOX_BIN="$stage/bin" ROOTBOX_BUSYBOX_ROOTFS="$stage/rootfs" \
        "${CAP[@]}" /usr/bin/python3 -m pytest -p no:cacheprovider "$stage/tests/integration" "${EXTRA_PYTEST[@]}" \
        || rc=$?
    pytest_rc_note "$rc"
    return "$rc"
}

integration_as_self() {
    local rootfs=$REPO/tests/.work/busybox-rootfs rc=0 py=${PYTHON:-python3}
    if [ ! -x "$rootfs/bin/busybox" ]; then
        rm -rf "$rootfs"
        mkdir -p "$REPO/tests/.work"
        tests/lib/mk-busybox-rootfs.sh "$rootfs" || return 1
    fi
    if ! "$py" -c 'import pytest' 2>/dev/null; then
        echo "run.sh: $py has no pytest: sudo apt-get install python3-pytest python3-pytest-timeout" \
            "(or run 'make test' as root once, which installs it)" >&2
        return 1
    fi
    ROOTBOX_BIN="$REPO/target/release" ROOTBOX_BUSYBOX_ROOTFS="$rootfs" PYTHONDONTWRITEBYTECODE=1 \
        "${CAP[@]}" "$py" -m pytest -p no:cacheprovider "$REPO/tests/integration" "${EXTRA_PYTEST[@]}" || rc=$?
    pytest_rc_note "$rc"
    return "$rc"
}

# ---------------------------------------------------------------------------
# Fuzzing (fuzz/README.md): the targets built here, a short run of each from its seeds; as
# root the runs are the unprivileged user's (what the unpack target unpacks is hostile).
# The `quick` profile: a cold build of about 2.3 CPU-minutes (the optimised one takes 4-5).
FUZZ_SECONDS=${ROOTBOX_FUZZ_SECONDS:-10}
export FUZZ_PROFILE=quick

fuzz_build() {
    CARGO="$CARGO" fuzz/run.sh build
}

stage_fuzz() { # STAGE_DIR
    local stage=$1 bin
    bin=$(rustc -vV | sed -n 's/^host: //p')
    install -d -m 0755 "$stage/fuzz" "$stage/fuzz/bin"
    cp -r fuzz/run.sh fuzz/seeds fuzz/dict "$stage/fuzz/"
    for t in $(fuzz/run.sh list); do
        install -m 0755 "fuzz/target/$bin/$FUZZ_PROFILE/$t" "$stage/fuzz/bin/"
    done
    chmod -R a+rX,go-w "$stage/fuzz"
}

fuzz_as_user() { # STAGE_DIR
    local stage=$1 home work rc=0
    home=$(getent passwd "$TEST_USER" | cut -d: -f6)
    work=$(runuser -u "$TEST_USER" -- mktemp -d /tmp/rbfuzz-work-XXXXXX)
    runuser -u "$TEST_USER" -- env -i -C "$work" \
        HOME="$home" USER="$TEST_USER" LOGNAME="$TEST_USER" LANG=C.UTF-8 \
        PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        FUZZ_BIN="$stage/fuzz/bin" FUZZ_WORK="$work" \
        timeout -k 30 $((FUZZ_SECONDS * 10 + 120)) "$stage/fuzz/run.sh" --no-build all "$FUZZ_SECONDS" || rc=$?
    if [ "$rc" -eq 0 ]; then
        rm -rf "$work"
    else
        echo "run.sh: a fuzz target failed: its crash inputs and logs are kept in $work/artifacts" >&2
    fi
    return "$rc"
}

fuzz_as_self() {
    CARGO="$CARGO" fuzz/run.sh --no-build all "$FUZZ_SECONDS"
}

# ---------------------------------------------------------------------------
# The Python module: a wheel built with maturin, installed into a fresh virtualenv of the
# system python (with its site packages, for Debian's pytest), tested as installed.
PYENV=${ROOTBOX_PYENV:-/opt/rootbox-py}
WHEEL_DIR=$REPO/target/wheels-test

python_wheel() {
    local maturin=$PYENV/bin/maturin
    [ -x "$maturin" ] || maturin=$(command -v maturin || true)
    if [ -z "$maturin" ]; then
        echo "run.sh: maturin not found: run 'make test' as root once (tests/setup-root.sh makes $PYENV)," \
            "or pip install maturin" >&2
        return 1
    fi
    rm -rf "$WHEEL_DIR"
    "$maturin" build --release --out "$WHEEL_DIR"
}

python_venv() { # DIR: a fresh virtualenv with the wheel installed
    local dir=$1 wheel
    wheel=$(ls "$WHEEL_DIR"/rootbox-*.whl 2>/dev/null | head -n1)
    [ -n "$wheel" ] || { echo "run.sh: no wheel in $WHEEL_DIR" >&2; return 1; }
    rm -rf "$dir"
    /usr/bin/python3 -m venv --system-site-packages "$dir" || return 1
    "$dir/bin/pip" install -q --no-index --disable-pip-version-check "$wheel" || return 1
    chmod -R a+rX "$dir"
}

python_stubtest() { # VENV: mypy's stubtest against the installed package
    local venv=$1 site py=$PYENV/bin/python
    [ -x "$py" ] || py=/usr/bin/python3
    site=$("$venv/bin/python" -c 'import rootbox, os; print(os.path.dirname(os.path.dirname(rootbox.__file__)))')
    env -C /tmp PYTHONPATH="$site" "$py" -m mypy.stubtest rootbox
}

python_tests_as_user() { # STAGE_DIR
    local stage=$1 home rc=0
    home=$(getent passwd "$TEST_USER" | cut -d: -f6)
    runuser -u "$TEST_USER" -- env -i -C "$stage" \
        HOME="$home" USER="$TEST_USER" LOGNAME="$TEST_USER" LANG=C.UTF-8 \
        PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        PYTHONDONTWRITEBYTECODE=1 ROOTBOX_BUSYBOX_ROOTFS="$stage/rootfs" \
        "${CAP[@]}" "$stage/pyvenv/bin/python" -m pytest -p no:cacheprovider "$stage/tests/python" "${EXTRA_PYTEST[@]}" \
        || rc=$?
    pytest_rc_note "$rc"
    return "$rc"
}

python_tests_as_root() { # STAGE_DIR
    local stage=$1 rc=0
    env -C "$stage" PYTHONDONTWRITEBYTECODE=1 ROOTBOX_BUSYBOX_ROOTFS="$stage/rootfs" \
        "${CAP[@]}" "$stage/pyvenv/bin/python" -m pytest -p no:cacheprovider "$stage/tests/python" "${EXTRA_PYTEST[@]}" \
        || rc=$?
    pytest_rc_note "$rc"
    return "$rc"
}

python_tests_as_self() {
    local venv=$REPO/tests/.work/pyvenv rootfs=$REPO/tests/.work/busybox-rootfs rc=0
    python_venv "$venv" || return 1
    if [ ! -x "$rootfs/bin/busybox" ]; then
        rm -rf "$rootfs"
        mkdir -p "$REPO/tests/.work"
        tests/lib/mk-busybox-rootfs.sh "$rootfs" || return 1
    fi
    ROOTBOX_BUSYBOX_ROOTFS="$rootfs" PYTHONDONTWRITEBYTECODE=1 \
        "${CAP[@]}" "$venv/bin/python" -m pytest -p no:cacheprovider "$REPO/tests/python" "${EXTRA_PYTEST[@]}" || rc=$?
    pytest_rc_note "$rc"
    return "$rc"
}

stage() {
    # A root-owned directory any user can read: CI may clone into a directory the
    # test user cannot enter, so nothing of the checkout is used from there.
    if [ -L "$STAGE" ]; then
        echo "run.sh: $STAGE is a symlink; refusing to use it" >&2
        return 1
    fi
    if [ -e "$STAGE" ]; then
        if [ "$(stat -c %u "$STAGE")" != 0 ]; then
            echo "run.sh: $STAGE exists and is not owned by root; remove it or set ROOTBOX_STAGE" >&2
            return 1
        fi
        rm -rf "$STAGE"
    fi
    install -d -m 0755 "$STAGE" "$STAGE/bin" "$STAGE/tests"
    install -m 0755 target/release/rootbox target/release/rootbox-runtime target/release/rootbox-monitor \
        target/release/rootbox-monitor-supervise "$STAGE/bin/"
    tests/lib/mk-busybox-rootfs.sh "$STAGE/rootfs"
    cp -r tests/integration tests/lib tests/c tests/python "$STAGE/tests/"
    rm -rf "$STAGE/tests/python/__pycache__"
    # The C API, installed as a user would (make install), with its example.
    make --no-print-directory install PREFIX="$STAGE/c" CARGO="$CARGO" >/dev/null || return 1
    install -d -m 0755 "$STAGE/examples"
    cp -r examples/c "$STAGE/examples/"
    chmod -R a+rX,go-w "$STAGE/c" "$STAGE/examples"
    rm -rf "$STAGE/tests/integration/__pycache__"
    # Readable by the test user, writable by root only; the rootfs keeps its own modes
    # (its /tmp and /var/tmp are 1777, as in any image).
    chmod -R a+rX,go-w "$STAGE/bin" "$STAGE/tests"
    chmod -R a+rX "$STAGE/rootfs"
    chmod 0755 "$STAGE"
    echo "staged into $STAGE"
}

# ---------------------------------------------------------------------------
IS_ROOT=0
[ "$(id -u)" -eq 0 ] && IS_ROOT=1

if [ "$IS_ROOT" = 1 ]; then
    step "setup (root): packages, test user $TEST_USER, subordinate ids"
    tests/setup-root.sh || die "setup failed"
    record "setup" 0
fi

if [ "${ROOTBOX_SKIP_LINT:-0}" != 1 ]; then
    run_step "cargo fmt --check" "$CARGO" fmt --all --check
    run_step "cargo clippy" "$CARGO" clippy --workspace --all-targets -- -D warnings
fi

step "cargo build --release"
rc=0
"$CARGO" build --release || rc=$?
record "build" "$rc"
[ "$rc" -eq 0 ] || die "build failed; nothing to test"

if [ "${ROOTBOX_SKIP_UNIT:-0}" != 1 ]; then
    # --release reuses the release build's dependencies (2 cores: one dependency build, not two).
    run_step "unit tests (cargo test --release)" "$CARGO" test --release
    run_step "include/rootbox.h is current (cargo test -p rootbox-ffi-header)" \
        "$CARGO" test -p rootbox-ffi-header
fi

FUZZ_OK=0
if [ "${ROOTBOX_SKIP_FUZZ:-0}" != 1 ]; then
    rc=0
    step "fuzz targets (fuzz/run.sh build)"
    fuzz_build || rc=$?
    record "fuzz build" "$rc"
    [ "$rc" -eq 0 ] && FUZZ_OK=1
fi

PY_OK=0
if [ "${ROOTBOX_SKIP_PYTHON:-0}" != 1 ]; then
    rc=0
    step "python wheel (maturin build --release)"
    python_wheel || rc=$?
    record "python wheel" "$rc"
    [ "$rc" -eq 0 ] && PY_OK=1
fi

if [ "$IS_ROOT" = 1 ]; then
    step "stage into $STAGE"
    rc=0
    stage || rc=$?
    record "stage" "$rc"
    [ "$rc" -eq 0 ] || die "staging failed"
    if [ "$FUZZ_OK" = 1 ]; then
        rc=0
        stage_fuzz "$STAGE" || rc=$?
        if [ "$rc" -eq 0 ]; then
            run_step "fuzz: each target ${FUZZ_SECONDS}s as $TEST_USER" fuzz_as_user "$STAGE"
        else
            record "fuzz: stage the targets" "$rc"
        fi
    fi
    run_step "integration tests as $TEST_USER (unprivileged)" integration_as_user "$STAGE"
    run_step "C API tests as $TEST_USER (tests/c)" c_tests_as_user "$STAGE"
    if [ "${ROOTBOX_SKIP_ROOT_RUN:-0}" != 1 ]; then
        run_step "integration tests as root" integration_as_root "$STAGE"
    fi
    if [ "$PY_OK" = 1 ]; then
        run_step "python: install the wheel into a fresh virtualenv" python_venv "$STAGE/pyvenv"
        run_step "python: mypy stubtest rootbox" python_stubtest "$STAGE/pyvenv"
        run_step "python tests as $TEST_USER (unprivileged)" python_tests_as_user "$STAGE"
        if [ "${ROOTBOX_SKIP_ROOT_RUN:-0}" != 1 ]; then
            run_step "python tests as root" python_tests_as_root "$STAGE"
        fi
    fi
else
    if [ "$FUZZ_OK" = 1 ]; then
        run_step "fuzz: each target ${FUZZ_SECONDS}s" fuzz_as_self
    fi
    run_step "integration tests as $(id -un)" integration_as_self
    run_step "C API tests as $(id -un) (tests/c)" c_tests_as_self
    if [ "$PY_OK" = 1 ]; then
        run_step "python tests as $(id -un)" python_tests_as_self
        run_step "python: mypy stubtest rootbox" python_stubtest "$REPO/tests/.work/pyvenv"
    fi
fi

if [ "${ROOTBOX_SKIP_VM:-0}" != 1 ] && [ -x tests/vm/check.sh ]; then
    run_step "VM tests (tests/vm/check.sh)" tests/vm/check.sh
fi

summary
exit "$FAILED"

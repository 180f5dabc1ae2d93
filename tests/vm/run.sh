#!/usr/bin/env bash
# Boot the cgroup-v2 test VM and run one test script in it as uid 1000.
#
# usage: tests/vm/run.sh [--bin PATH]... [--file SRC:DEST]... [--env NAME=VALUE]...
#                        [--module NAME]... [--timeout SECS] [--kernel-log] --test SCRIPT
#
#   --bin PATH         copy an executable into the VM at the same path (a bare name is looked up
#                      in $PATH), with its shared libraries and dynamic loader (from ldd), also at
#                      the same paths. Setuid bits are kept (files are owned by root in the VM).
#   --file SRC:DEST    copy a file or directory (recursively, symlinks kept) to DEST in the VM.
#   --env NAME=VALUE   set an environment variable for the test script.
#   --module NAME      load one more kernel module (with its dependencies) at boot; the defaults
#                      are $ROOTBOX_VM_MODULES or "overlay fuse tun veth".
#   --timeout SECS     kill the VM after SECS seconds (default 600: ten times what the
#                      tests take under TCG here, for slower emulation elsewhere).
#   --kernel-log       show kernel messages (boot log, OOM reports) on the console.
#   --test SCRIPT      the script to run (it gets a #! line of its own: /bin/sh is busybox).
#
# The script runs as uid 1000 ("user", no capabilities) with HOME=/home/user,
# XDG_RUNTIME_DIR=/run/user/1000, in the leaf cgroup
# /sys/fs/cgroup/user.slice/user-1000.slice/user@1000.service/init.scope; user@1000.service
# is delegated to uid 1000 as systemd does. Its output is streamed here. Exit status: the
# script's; 124 when the timeout hit; 125 when the VM setup failed or the exit marker never
# came. The full console log is kept in $CACHE/last-run.log.
#
# Needs tests/vm/prepare.sh to have run (as root). Environment: ROOTBOX_VM_CACHE (cache dir,
# default tests/.work/vm), ROOTBOX_VM_ACCEL (kvm|tcg, default: kvm when usable), ROOTBOX_VM_MODULES,
# ROOTBOX_VM_LOG (console log file, default $CACHE/last-run.log).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
cache=${ROOTBOX_VM_CACHE:-$repo/tests/.work/vm}

die() { printf 'vm/run: error: %s\n' "$*" >&2; exit 125; }
usage() { sed -n '3,16s/^# \{0,1\}//p' "${BASH_SOURCE[0]}" >&2; exit 2; }

bins=() files=() envs=() modules=()
read -r -a modules <<<"${ROOTBOX_VM_MODULES:-overlay fuse tun veth}"
test_script='' timeout=600 klog=0
while [ $# -gt 0 ]; do
    case $1 in
        --bin) [ $# -ge 2 ] || usage; bins+=("$2"); shift 2 ;;
        --file) [ $# -ge 2 ] || usage; files+=("$2"); shift 2 ;;
        --env) [ $# -ge 2 ] || usage; envs+=("$2"); shift 2 ;;
        --module) [ $# -ge 2 ] || usage; modules+=("$2"); shift 2 ;;
        --test) [ $# -ge 2 ] || usage; test_script=$2; shift 2 ;;
        --timeout) [ $# -ge 2 ] || usage; timeout=$2; shift 2 ;;
        --kernel-log) klog=1; shift ;;
        -h|--help) usage ;;
        *) printf 'vm/run: unknown argument: %s\n' "$1" >&2; usage ;;
    esac
done
[ -n "$test_script" ] || { printf 'vm/run: --test SCRIPT is required\n' >&2; usage; }
[ -f "$test_script" ] || die "test script not found: $test_script"
[[ $timeout =~ ^[1-9][0-9]*$ ]] || die "--timeout wants a positive number of seconds, got '$timeout'"

command -v qemu-system-x86_64 >/dev/null || die "qemu-system-x86_64 missing: run tests/vm/prepare.sh as root"
command -v cpio >/dev/null || die "cpio missing: run tests/vm/prepare.sh as root"
kdir=$cache/kernel
vmlinuz=$(compgen -G "$kdir/boot/vmlinuz-*" | head -n1 || true)
[ -n "$vmlinuz" ] || die "no kernel in $kdir: run tests/vm/prepare.sh as root first"
kver=${vmlinuz##*/vmlinuz-}
moddir=lib/modules/$kver

busybox=/bin/busybox
[ -x "$busybox" ] || die "$busybox missing: apt-get install busybox-static (tests/vm/prepare.sh)"
if ldd "$busybox" >/dev/null 2>&1; then
    die "$busybox is dynamically linked: apt-get install busybox-static (tests/vm/prepare.sh)"
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/rootbox-vm.XXXXXX")
trap 'rm -rf "$work"' EXIT
trap 'exit 130' INT TERM
stage=$work/root
mkdir -p "$stage"/{bin,sbin,usr/bin,usr/sbin,dev,proc,sys,tmp,run,etc,root,home,rootbox-vm,"$moddir"}

# --- busybox and its applets -------------------------------------------------------
cp "$busybox" "$stage/bin/busybox"
while read -r applet; do
    case $applet in ''|bin/busybox) continue ;; esac
    ln -sf /bin/busybox "$stage/$applet"
done < <("$busybox" --list-full)

# copy_same_path SRC: copy SRC (following symlinks) to the same absolute path in the VM.
copy_same_path() {
    local src=$1 dst=$stage$1
    mkdir -p "$(dirname "$dst")"
    rm -f "$dst"
    cp -L --preserve=mode,timestamps "$src" "$dst"
}

# --- --bin: executables with their shared libraries ----------------------------------
declare -A copied=()
for b in "${bins[@]}"; do
    path=$b
    if [[ $path != */* ]]; then
        path=$(command -v "$b" 2>/dev/null) || die "--bin $b: not found in PATH"
    fi
    if [ ! -f "$path" ] || [ ! -x "$path" ]; then
        die "--bin $b: not an executable file"
    fi
    path=$(realpath -s "$path")
    copy_same_path "$path"
    # ldd fails on static binaries ("not a dynamic executable"): nothing more to copy then.
    ldd_out=$(ldd "$path" 2>/dev/null) || continue
    if grep -q 'not found' <<<"$ldd_out"; then
        die "--bin $b: ldd cannot resolve: $(grep 'not found' <<<"$ldd_out" | tr -s ' \t' ' ')"
    fi
    # "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)" and "/lib64/ld-linux-x86-64.so.2 (0x...)"
    while read -r lib; do
        [ -z "${copied[$lib]:-}" ] || continue
        [ -e "$lib" ] || die "--bin $b: library $lib (from ldd) does not exist"
        copy_same_path "$lib"
        copied[$lib]=1
    done < <(awk '$2 == "=>" && $3 ~ /^\// { print $3; next } $1 ~ /^\// { print $1 }' <<<"$ldd_out")
done

# --- --file SRC:DEST -------------------------------------------------------------
for spec in "${files[@]}"; do
    src=${spec%%:*} dst=${spec#*:}
    if [ "$src" = "$spec" ] || [ -z "$src" ] || [[ $dst != /* ]]; then
        die "--file wants SRC:/ABSOLUTE/DEST, got '$spec'"
    fi
    [ -e "$src" ] || die "--file $spec: $src does not exist"
    mkdir -p "$(dirname "$stage$dst")"
    rm -rf "${stage:?}$dst"
    cp -a "$src" "$stage$dst"
done

# --- kernel modules, dependencies first ---------------------------------------------
kmods=$kdir/$moddir
declare -A modseen=()
modorder=()
add_module() {  # $1: module name (- and _ are the same)
    local name=${1//-/_} ko dep deps
    [ -z "${modseen[$name]:-}" ] || return 0
    modseen[$name]=1
    if grep -Eq "/${name//_/[-_]}\\.ko\$" "$kmods/modules.builtin" 2>/dev/null; then
        return 0  # built into the kernel
    fi
    ko=$(find "$kmods/kernel" -regextype posix-extended -regex ".*/${name//_/[-_]}\\.ko(\\.(xz|zst|gz))?" | head -n1)
    [ -n "$ko" ] || die "kernel module $1 not found in $kmods (nor built in)"
    case $ko in *.ko) ;; *) die "compressed module $ko: busybox insmod cannot load it";; esac
    deps=$(tr '\0' '\n' <"$ko" | sed -n 's/^depends=//p' | head -n1)
    for dep in ${deps//,/ }; do
        add_module "$dep"
    done
    mkdir -p "$stage/$(dirname "${ko#"$kdir"/}")"
    cp "$ko" "$stage/${ko#"$kdir"/}"
    modorder+=("/${ko#"$kdir"/}")
}
for m in "${modules[@]}"; do
    add_module "$m"
done
printf '%s\n' "${modorder[@]}" >"$stage/rootbox-vm/modules"

# --- init, test script, settings ------------------------------------------------------
cp "$here/init.sh" "$stage/init"
chmod 0755 "$stage/init"
cp "$test_script" "$stage/rootbox-vm/test"
chmod 0755 "$stage/rootbox-vm/test"
printf 'ROOTBOX_VM_KLOG=%s\n' "$klog" >"$stage/rootbox-vm/config"
: >"$stage/rootbox-vm/env"
for e in "${envs[@]}"; do
    name=${e%%=*} value=${e#*=}
    [[ $e == *=* && $name =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] || die "--env wants NAME=VALUE, got '$e'"
    printf "export %s='%s'\n" "$name" "${value//\'/\'\\\'\'}" >>"$stage/rootbox-vm/env"
done
chmod 0644 "$stage/rootbox-vm/env" "$stage/rootbox-vm/config"

# Uncompressed: decompressing in an emulated CPU costs more than copying.
initrd=$work/initrd.cpio
(cd "$stage" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet) >"$initrd" \
    || die "building the initramfs failed"

# --- boot ------------------------------------------------------------------------------
accel=${ROOTBOX_VM_ACCEL:-}
if [ -z "$accel" ]; then
    accel=tcg
    if [ -r /dev/kvm ] && [ -w /dev/kvm ] && grep -Eqw 'vmx|svm' /proc/cpuinfo; then
        accel=kvm
    fi
fi
case $accel in
    kvm) accel_args=(-enable-kvm -cpu host) ;;
    tcg) accel_args=(-accel tcg -cpu max) ;;
    *) die "ROOTBOX_VM_ACCEL must be kvm or tcg, got '$accel'" ;;
esac
append="console=ttyS0 init=/init panic=-1 quiet cgroup_no_v1=all mitigations=off 8250.nr_uarts=1"
[ "$klog" = 1 ] && append=${append/ quiet/}

mkdir -p "$cache"
log=${ROOTBOX_VM_LOG:-$cache/last-run.log}
printf 'vm/run: booting %s (%s, initramfs %s KiB), timeout %ss\n' \
    "$kver" "$accel" "$(( $(stat -c %s "$initrd") / 1024 ))" "$timeout" >&2
start=$(date +%s%N)
# Console lines are streamed as they come (without \r, SeaBIOS's banner and terminal escapes).
set +e
timeout -k 5 "$timeout" qemu-system-x86_64 "${accel_args[@]}" \
    -m 1024 -smp 2 -nographic -no-reboot -net none \
    -kernel "$vmlinuz" -initrd "$initrd" -append "$append" \
    </dev/null 2>&1 | sed -u -e 's/\r$//' -e 's/\x1b\[[0-9;?]*[A-Za-z]//g' -e 's/\x1bc//g' \
        -e '/^SeaBIOS (version /d' -e 's/^Booting from ROM\.\.*//' | tee "$log"
statuses=("${PIPESTATUS[@]}")
set -e
ms=$(( ($(date +%s%N) - start) / 1000000 ))
elapsed=$(printf '%d.%03d' $((ms / 1000)) $((ms % 1000)))

qrc=${statuses[0]}
if [ "$qrc" = 124 ] || [ "$qrc" = 137 ]; then
    last=$(grep -a -E '^(not )?ok [0-9]+ ' "$log" | tail -n1 || true)
    printf 'vm/run: FAIL: timed out after %ss; the last result before it: %s (log: %s)\n' \
        "$timeout" "${last:-none}" "$log" >&2
    exit 124
fi
if grep -aq '^ROOTBOX-VM-ERROR ' "$log"; then
    printf 'vm/run: FAIL: VM setup failed: %s (log: %s)\n' \
        "$(grep -a '^ROOTBOX-VM-ERROR ' "$log" | head -n1 | cut -d' ' -f2-)" "$log" >&2
    exit 125
fi
marker=$(grep -a '^ROOTBOX-VM-EXIT [0-9][0-9]*$' "$log" | tail -n1 || true)
if [ -z "$marker" ]; then
    printf 'vm/run: FAIL: the VM stopped (qemu status %s) without reporting the test status (no ROOTBOX-VM-EXIT line; kernel panic or init died?) (log: %s)\n' \
        "$qrc" "$log" >&2
    exit 125
fi
rc=${marker#ROOTBOX-VM-EXIT }
printf 'vm/run: test exited %s after %ss (qemu status %s)\n' "$rc" "$elapsed" "$qrc" >&2
exit "$rc"

#!/usr/bin/env bash
# Prepare the cgroup-v2 test VM (run as root; idempotent).
#
#  * installs qemu-system-x86, busybox-static and cpio when missing;
#  * downloads Debian's cloud kernel package (the real linux-image-<ver>-cloud-amd64
#    behind the linux-image-cloud-amd64 metapackage) WITHOUT installing it, and unpacks
#    it into the cache dir ($ROOTBOX_VM_CACHE, default tests/.work/vm/).
#
# After it: $CACHE/kernel/boot/vmlinuz-<ver>, $CACHE/kernel/lib/modules/<ver>/ and
# $CACHE/kernel/.rootbox-kernel (the package name and version that were unpacked).
#
# Environment:
#   ROOTBOX_VM_CACHE        cache dir (default: <repo>/tests/.work/vm)
#   ROOTBOX_VM_KERNEL_PKG   kernel package to use instead of resolving the metapackage
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
cache=${ROOTBOX_VM_CACHE:-$repo/tests/.work/vm}
meta=linux-image-cloud-amd64

log() { printf 'vm/prepare: %s\n' "$*" >&2; }
die() { printf 'vm/prepare: error: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "must run as root (it installs packages with apt-get)"

# --- host packages -----------------------------------------------------------
need=()
command -v qemu-system-x86_64 >/dev/null 2>&1 || need+=(qemu-system-x86)
command -v cpio >/dev/null 2>&1 || need+=(cpio)
# busybox-static: /bin/busybox must be the static build (it goes into the initramfs).
if ! dpkg-query -W -f='${Status}' busybox-static 2>/dev/null | grep -q 'install ok installed'; then
    need+=(busybox-static)
fi
if [ "${#need[@]}" -gt 0 ]; then
    log "installing ${need[*]}"
    while fuser /var/lib/dpkg/lock-frontend >/dev/null 2>&1; do
        log "waiting for the dpkg lock"; sleep 5
    done
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${need[@]}" >&2 \
        || die "apt-get install ${need[*]} failed (run 'apt-get update' first on a fresh machine)"
fi

# --- which kernel package ----------------------------------------------------
kdir=$cache/kernel
stamp=$kdir/.rootbox-kernel
pkg=${ROOTBOX_VM_KERNEL_PKG:-}
if [ -z "$pkg" ]; then
    # The metapackage depends on exactly one linux-image-<abi>-cloud-amd64.
    pkg=$(apt-cache depends "$meta" 2>/dev/null \
          | sed -n 's/^ *Depends: \(linux-image-[0-9][^ ]*-cloud-amd64\)$/\1/p' | head -n1 || true)
fi
if [ -z "$pkg" ]; then
    if [ -f "$stamp" ]; then
        log "cannot resolve $meta with apt-cache; keeping the cached kernel ($(cat "$stamp"))"
        exit 0
    fi
    die "cannot resolve $meta to a linux-image-<version>-cloud-amd64 package (run 'apt-get update' first)"
fi
ver=$(apt-cache policy "$pkg" 2>/dev/null | sed -n 's/^ *Candidate: //p' | head -n1)
if [ -z "$ver" ] || [ "$ver" = "(none)" ]; then
    die "no installable candidate for $pkg (run 'apt-get update' first)"
fi
want="$pkg $ver"

if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && compgen -G "$kdir/boot/vmlinuz-*" >/dev/null; then
    log "kernel ready: $want ($cache)"
    exit 0
fi

# --- download and unpack (no install) ------------------------------------------
mkdir -p "$cache/debs"
log "downloading $pkg=$ver"
deb="$cache/debs/${pkg}_${ver//:/%3a}_amd64.deb"
if [ ! -f "$deb" ]; then
    (cd "$cache/debs" && apt-get download -o APT::Sandbox::User=root "$pkg=$ver" >&2) \
        || die "apt-get download $pkg=$ver failed"
fi
[ -f "$deb" ] || die "downloaded .deb not found: $deb"

tmp=$(mktemp -d "$cache/kernel.tmp.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
log "unpacking $(basename "$deb")"
dpkg-deb -x "$deb" "$tmp" || die "dpkg-deb -x $deb failed"
vmlinuz=$(compgen -G "$tmp/boot/vmlinuz-*" | head -n1 || true)
[ -n "$vmlinuz" ] || die "no boot/vmlinuz-* in $deb"
kver=${vmlinuz##*/vmlinuz-}
config=$tmp/boot/config-$kver
[ -f "$config" ] || die "no boot/config-$kver in $deb"

# Check the kernel has what the tests need; report what is built as a module.
missing=()
for opt in CGROUPS MEMCG CGROUP_PIDS CGROUP_SCHED CPUSETS BLK_CGROUP USER_NS PID_NS NET_NS \
           UTS_NS IPC_NS BLK_DEV_INITRD DEVTMPFS TMPFS SERIAL_8250_CONSOLE OVERLAY_FS FUSE_FS TUN; do
    val=$(sed -n "s/^CONFIG_${opt}=//p" "$config")
    case $val in
        y) ;;
        m) log "CONFIG_$opt=m (loaded with insmod from the initramfs)" ;;
        *) missing+=("CONFIG_$opt") ;;
    esac
done
[ "${#missing[@]}" -eq 0 ] || die "kernel $kver lacks: ${missing[*]}"

# Drop the bulky bits the VM does not need; keep boot/ and lib/modules/.
rm -rf "${tmp:?}/usr"
printf '%s\n' "$want" >"$tmp/.rootbox-kernel"
rm -rf "$kdir"
mv "$tmp" "$kdir"
trap - EXIT
# Old .debs of other versions are useless now.
find "$cache/debs" -name '*.deb' ! -name "$(basename "$deb")" -delete
log "kernel ready: $want -> $kdir/boot/vmlinuz-$kver"

#!/usr/bin/env bash
# Make a tiny root filesystem directory from the host's busybox-static.
#
#   tests/lib/mk-busybox-rootfs.sh DEST
#
# DEST gets /bin/busybox, one symlink per applet in its usual directory
# (bin/sh -> /bin/busybox, usr/bin/env -> /bin/busybox, ...), /etc/passwd and
# /etc/group with root and nobody, /etc/hostname, /etc/hosts, and the empty
# directories a runtime mounts over (/proc /sys /dev /tmp /run ...).
# DEST must not exist or be empty; it is created with mode 0755.
set -euo pipefail

die() { echo "mk-busybox-rootfs: $*" >&2; exit 1; }

[ $# -eq 1 ] || die "usage: $0 DEST"
dest=$1

busybox=${BUSYBOX:-}
if [ -z "$busybox" ]; then
    for c in /bin/busybox /usr/bin/busybox; do
        if [ -x "$c" ]; then busybox=$c; break; fi
    done
fi
[ -n "$busybox" ] || die "busybox not found: install the busybox-static package (apt-get install busybox-static)"
# A dynamically linked busybox would need its libraries inside the rootfs.
if command -v file >/dev/null 2>&1; then
    file -L "$busybox" | grep -q 'statically linked' \
        || die "$busybox is not statically linked: install busybox-static (apt-get install busybox-static)"
fi

if [ -e "$dest" ] && [ -n "$(ls -A "$dest" 2>/dev/null)" ]; then
    die "$dest exists and is not empty"
fi

umask 022
mkdir -p "$dest"
chmod 0755 "$dest"
dest=$(cd "$dest" && pwd)

for d in bin sbin usr/bin usr/sbin etc root home proc sys dev tmp run var/tmp mnt opt; do
    mkdir -p "$dest/$d"
done
chmod 1777 "$dest/tmp" "$dest/var/tmp"
chmod 0700 "$dest/root"

install -m 0755 "$busybox" "$dest/bin/busybox"
# One symlink per applet at its usual place (bin/sh, usr/bin/env, sbin/ip, ...).
"$busybox" --list-full | while read -r applet; do
    [ -n "$applet" ] || continue
    [ "$applet" = bin/busybox ] && continue
    [ -e "$dest/$applet" ] || [ -L "$dest/$applet" ] || ln -s /bin/busybox "$dest/$applet"
done
[ -L "$dest/bin/sh" ] || die "busybox has no sh applet"

cat > "$dest/etc/passwd" <<'PW'
root:x:0:0:root:/root:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
PW
cat > "$dest/etc/group" <<'GR'
root:x:0:
nogroup:x:65534:
GR
echo rootbox > "$dest/etc/hostname"
cat > "$dest/etc/hosts" <<'HO'
127.0.0.1	localhost
::1	localhost ip6-localhost ip6-loopback
HO
: > "$dest/etc/resolv.conf"
chmod 0644 "$dest"/etc/*

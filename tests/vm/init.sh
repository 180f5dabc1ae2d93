#!/bin/sh
# PID 1 of the rootbox test VM (busybox ash). run.sh copies it to /init in the initramfs.
#
# Sets up a machine that looks, for uid 1000, like a systemd host with cgroup v2 delegation:
#   * cgroup2 mounted at /sys/fs/cgroup as the only hierarchy (cgroup_no_v1=all on the
#     kernel command line), controllers cpu memory pids cpuset io enabled from the root down to
#     user.slice/user-1000.slice/user@1000.service;
#   * user@1000.service delegated to uid 1000 as systemd's Delegate=yes does (the directory
#     and the kernel's delegatable files, /sys/kernel/cgroup/delegate, chowned to the user);
#   * the test runs as uid 1000 (no capabilities) in the leaf user@1000.service/init.scope,
#     where systemd --user would sit.
# Output goes to the serial console. Markers read by run.sh:
#   ROOTBOX-VM-BEGIN            the test script starts
#   ROOTBOX-VM-EXIT <code>      the test script's exit status (125: the VM setup failed)
#   ROOTBOX-VM-ERROR <message>  a setup step failed
if [ "$$" != 1 ]; then
    echo "init.sh: this is the test VM's PID 1 (run.sh boots it); never run it on a host" >&2
    exit 1
fi
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export PATH
umask 022

CFG=/rootbox-vm
UID_=1000
USER_=user
CG=/sys/fs/cgroup
SVC=$CG/user.slice/user-$UID_.slice/user@$UID_.service
LEAF=$SVC/init.scope
CONTROLLERS="cpu memory pids cpuset io"

finish() {
    echo "ROOTBOX-VM-EXIT $1"
    sync
    poweroff -f
    sleep 5
    echo o >/proc/sysrq-trigger
}

fail() {
    echo "ROOTBOX-VM-ERROR $*"
    finish 125
}

# --- leave the initramfs --------------------------------------------------------
# pivot_root(2) fails (EINVAL) while / is the initial rootfs, which would break every
# container runtime under test: move the files to a tmpfs and switch_root into it once.
if [ ! -e "$CFG/.switched" ]; then
    mkdir -p /newroot
    mount -t tmpfs -o mode=0755,size=80% tmpfs /newroot || fail "mount tmpfs /newroot"
    for e in /* /.[!.]*; do
        case $e in /newroot|/proc|/sys|/dev|/bin|/init) continue ;; esac
        [ -e "$e" ] || [ -L "$e" ] || continue
        /bin/busybox mv "$e" /newroot/ || fail "move $e to the new root"
    done
    /bin/busybox cp -a /bin /init /newroot/ || fail "copy /bin and /init to the new root"
    /bin/busybox mkdir -p /newroot/proc /newroot/sys /newroot/dev
    /bin/busybox touch "/newroot$CFG/.switched"
    exec /bin/busybox switch_root /newroot /init
fi

# --- pseudo filesystems -------------------------------------------------------
mount -t proc -o nosuid,nodev,noexec proc /proc || fail "mount /proc"
mount -t sysfs -o nosuid,nodev,noexec sysfs /sys || fail "mount /sys"
mount -t devtmpfs -o nosuid,mode=0755 devtmpfs /dev || fail "mount /dev"
mkdir -p /dev/pts /dev/shm /dev/mqueue
mount -t devpts -o nosuid,noexec,gid=5,mode=0620,ptmxmode=0666 devpts /dev/pts || fail "mount /dev/pts"
mount -t tmpfs -o nosuid,nodev,mode=1777 tmpfs /dev/shm || fail "mount /dev/shm"
mount -t mqueue -o nosuid,nodev,noexec mqueue /dev/mqueue || fail "mount /dev/mqueue"
mount -t tmpfs -o nosuid,nodev,mode=1777 tmpfs /tmp || fail "mount /tmp"
mount -t tmpfs -o nosuid,nodev,mode=0755 tmpfs /run || fail "mount /run"

# shellcheck source=/dev/null
. "$CFG/config"
if [ "${ROOTBOX_VM_KLOG:-0}" != 1 ]; then
    # Keep kernel chatter (OOM reports...) off the console; dmesg still has it.
    echo 1 >/proc/sys/kernel/printk
fi

# --- kernel modules (no modprobe: insmod in dependency order) --------------------------
if [ -s "$CFG/modules" ]; then
    while read -r ko; do
        [ -n "$ko" ] || continue
        insmod "$ko" || fail "insmod $ko"
    done <"$CFG/modules"
fi
# Distributions ship these 0666 (udev rules); devtmpfs makes them 0600.
for d in /dev/fuse /dev/net/tun; do
    [ -e "$d" ] && chmod 0666 "$d"
done
if [ -w /proc/sys/kernel/unprivileged_userns_clone ]; then
    echo 1 >/proc/sys/kernel/unprivileged_userns_clone
fi

# --- cgroup v2, the only hierarchy, delegated like systemd ---------------------
mount -t cgroup2 -o nosuid,nodev,noexec,nsdelegate,memory_recursiveprot cgroup2 $CG 2>/dev/null \
    || mount -t cgroup2 -o nosuid,nodev,noexec cgroup2 $CG || fail "mount cgroup2 at $CG"
if grep -v "^cgroup2 $CG " /proc/mounts | grep -q ' cgroup '; then
    fail "a cgroup v1 hierarchy is mounted"
fi

enable_controllers() {  # $1: cgroup dir whose children get the controllers
    for c in $CONTROLLERS; do
        echo "+$c" >"$1/cgroup.subtree_control" || fail "enable +$c in $1/cgroup.subtree_control"
    done
}
enable_controllers $CG
mkdir -p "$SVC" || fail "mkdir $SVC"
enable_controllers $CG/user.slice
enable_controllers $CG/user.slice/user-$UID_.slice

# Delegate=yes: the directory (0755) and the delegatable files (0644) belong to the user.
# systemd chowns cgroup.procs, cgroup.subtree_control, cgroup.threads (cg_set_access);
# the kernel lists every delegatable file in /sys/kernel/cgroup/delegate.
{ chown "$UID_:$UID_" "$SVC" && chmod 0755 "$SVC"; } || fail "chown $SVC"
delegate="cgroup.procs cgroup.subtree_control cgroup.threads"
if [ -r /sys/kernel/cgroup/delegate ]; then
    delegate="$delegate $(cat /sys/kernel/cgroup/delegate)"
fi
for f in $delegate; do
    [ -e "$SVC/$f" ] || continue
    { chown "$UID_:$UID_" "$SVC/$f" && chmod 0644 "$SVC/$f"; } || fail "chown $SVC/$f"
done
# The user's leaf, as systemd --user creates it (so everything in it belongs to the user).
{ mkdir -p "$LEAF" && chown -R "$UID_:$UID_" "$LEAF"; } || fail "create $LEAF"

# --- users, home, runtime dir ---------------------------------------------------
mkdir -p /etc /root /home/$USER_ /run/user/$UID_
[ -e /etc/passwd ] || cat >/etc/passwd <<EOF
root:x:0:0:root:/root:/bin/sh
$USER_:x:$UID_:$UID_:$USER_:/home/$USER_:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
EOF
[ -e /etc/group ] || cat >/etc/group <<EOF
root:x:0:
tty:x:5:
$USER_:x:$UID_:
nogroup:x:65534:
EOF
[ -e /etc/subuid ] || echo "$USER_:100000:65536" >/etc/subuid
[ -e /etc/subgid ] || echo "$USER_:100000:65536" >/etc/subgid
[ -e /etc/hosts ] || printf '127.0.0.1\tlocalhost rootbox-vm\n::1\tlocalhost\n' >/etc/hosts
[ -e /etc/hostname ] || echo rootbox-vm >/etc/hostname
[ -e /etc/nsswitch.conf ] || printf 'passwd: files\ngroup: files\nhosts: files\n' >/etc/nsswitch.conf
hostname -F /etc/hostname
chown "$UID_:$UID_" /home/$USER_ && chmod 0755 /home/$USER_
chown "$UID_:$UID_" /run/user/$UID_ && chmod 0700 /run/user/$UID_
chmod 0700 /root

ip link set lo up || fail "ip link set lo up"

# --- the test, as uid 1000 in its delegated leaf ---------------------------------
echo "rootbox-vm: kernel $(uname -r), cgroup controllers: $(cat $SVC/cgroup.controllers)"
echo "ROOTBOX-VM-BEGIN"
cd /home/$USER_ || fail "cd /home/$USER_"
# $CFG/env holds run.sh's --env settings as shell-quoted `export NAME='value'` lines.
# shellcheck disable=SC2016  # $$ and $1.. expand in the inner shell
env -i HOME=/home/$USER_ USER=$USER_ LOGNAME=$USER_ SHELL=/bin/sh TERM=dumb \
    PATH=/usr/local/bin:/usr/bin:/bin:/usr/local/sbin:/usr/sbin:/sbin \
    XDG_RUNTIME_DIR=/run/user/$UID_ \
    /bin/sh -c 'echo $$ >"$1/cgroup.procs" && exec su -m -s /bin/sh "$2" -c ". $3/env && exec $3/test"' \
    - "$LEAF" "$USER_" "$CFG" </dev/null
rc=$?
finish "$rc"

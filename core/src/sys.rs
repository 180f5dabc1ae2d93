//! Thin wrappers over the Linux system calls the launch path needs and that `libc` does not wrap
//! (the new mount API, `clone3`, `pivot_root`, `close_range`, `pidfd_open`).
//!
//! Every function here is async-signal-safe: a raw system call, no allocation, no lock. They are
//! the only calls the container child makes between clone and exec (see `launch::child`).

use std::ffi::CStr;
use std::os::fd::RawFd;

pub const OPEN_TREE_CLONE: u32 = 1;
pub const AT_RECURSIVE: u32 = 0x8000;
pub const MOVE_MOUNT_F_EMPTY_PATH: u32 = 0x0000_0004;
pub const MOVE_MOUNT_T_SYMLINKS: u32 = 0x0000_0010;
pub const FSOPEN_CLOEXEC: u32 = 1;
pub const FSCONFIG_SET_FLAG: u32 = 0;
pub const FSCONFIG_SET_STRING: u32 = 1;
pub const FSCONFIG_CMD_CREATE: u32 = 6;
pub const FSMOUNT_CLOEXEC: u32 = 1;

pub const MOUNT_ATTR_RDONLY: u64 = 0x0000_0001;
pub const MOUNT_ATTR_NOSUID: u64 = 0x0000_0002;
pub const MOUNT_ATTR_NODEV: u64 = 0x0000_0004;
pub const MOUNT_ATTR_NOEXEC: u64 = 0x0000_0008;
pub const MOUNT_ATTR__ATIME: u64 = 0x0000_0070;
pub const MOUNT_ATTR_NOATIME: u64 = 0x0000_0010;
pub const MOUNT_ATTR_STRICTATIME: u64 = 0x0000_0020;
pub const MOUNT_ATTR_NODIRATIME: u64 = 0x0000_0080;
pub const MOUNT_ATTR_NOSYMFOLLOW: u64 = 0x0020_0000;

pub const CLONE_NEWTIME: u64 = 0x0000_0080;
pub const CLONE_PIDFD: u64 = 0x0000_1000;
pub const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;
pub const CLOSE_RANGE_CLOEXEC: u32 = 1 << 2;

pub const RESOLVE_NO_MAGICLINKS: u64 = 0x02;
pub const RESOLVE_IN_ROOT: u64 = 0x10;

/// `struct mount_attr` of `mount_setattr(2)`.
#[repr(C)]
#[derive(Default)]
pub struct MountAttr {
    pub attr_set: u64,
    pub attr_clr: u64,
    pub propagation: u64,
    pub userns_fd: u64,
}

/// `struct clone_args` of `clone3(2)` (version 2, with `cgroup`).
#[repr(C)]
#[derive(Default)]
pub struct CloneArgs {
    pub flags: u64,
    pub pidfd: u64,
    pub child_tid: u64,
    pub parent_tid: u64,
    pub exit_signal: u64,
    pub stack: u64,
    pub stack_size: u64,
    pub tls: u64,
    pub set_tid: u64,
    pub set_tid_size: u64,
    pub cgroup: u64,
}

/// `struct open_how` of `openat2(2)`.
#[repr(C)]
#[derive(Default)]
pub struct OpenHow {
    pub flags: u64,
    pub mode: u64,
    pub resolve: u64,
}

/// The current thread's errno.
#[inline]
pub fn errno() -> i32 {
    std::io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EIO)
}

#[inline]
fn ret_fd(r: libc::c_long) -> Result<RawFd, i32> {
    if r < 0 {
        Err(errno())
    } else {
        Ok(r as RawFd)
    }
}

#[inline]
fn ret_unit(r: libc::c_long) -> Result<(), i32> {
    if r < 0 {
        Err(errno())
    } else {
        Ok(())
    }
}

#[inline]
fn ret_int(r: libc::c_int) -> Result<(), i32> {
    if r < 0 {
        Err(errno())
    } else {
        Ok(())
    }
}

pub fn open_tree(dirfd: RawFd, path: &CStr, flags: u32) -> Result<RawFd, i32> {
    // SAFETY: `path` is a valid NUL-terminated string for the duration of the call.
    ret_fd(unsafe { libc::syscall(libc::SYS_open_tree, dirfd, path.as_ptr(), flags) })
}

pub fn move_mount(from_fd: RawFd, to_path: &CStr, flags: u32) -> Result<(), i32> {
    // SAFETY: both strings are valid and NUL-terminated; the kernel only reads them.
    ret_unit(unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            from_fd,
            c"".as_ptr(),
            libc::AT_FDCWD,
            to_path.as_ptr(),
            flags | MOVE_MOUNT_F_EMPTY_PATH,
        )
    })
}

pub fn fsopen(fstype: &CStr) -> Result<RawFd, i32> {
    // SAFETY: `fstype` is a valid NUL-terminated string.
    ret_fd(unsafe { libc::syscall(libc::SYS_fsopen, fstype.as_ptr(), FSOPEN_CLOEXEC) })
}

pub fn fsconfig_string(fd: RawFd, key: &CStr, value: &CStr) -> Result<(), i32> {
    // SAFETY: key and value are valid NUL-terminated strings.
    ret_unit(unsafe {
        libc::syscall(
            libc::SYS_fsconfig,
            fd,
            FSCONFIG_SET_STRING,
            key.as_ptr(),
            value.as_ptr(),
            0,
        )
    })
}

pub fn fsconfig_flag(fd: RawFd, key: &CStr) -> Result<(), i32> {
    // SAFETY: key is a valid NUL-terminated string; value must be NULL for a flag.
    ret_unit(unsafe {
        libc::syscall(
            libc::SYS_fsconfig,
            fd,
            FSCONFIG_SET_FLAG,
            key.as_ptr(),
            std::ptr::null::<libc::c_char>(),
            0,
        )
    })
}

pub fn fsconfig_create(fd: RawFd) -> Result<(), i32> {
    // SAFETY: the create command takes no pointers.
    ret_unit(unsafe {
        libc::syscall(
            libc::SYS_fsconfig,
            fd,
            FSCONFIG_CMD_CREATE,
            std::ptr::null::<libc::c_char>(),
            std::ptr::null::<libc::c_char>(),
            0,
        )
    })
}

pub fn fsmount(fd: RawFd, attrs: u64) -> Result<RawFd, i32> {
    // SAFETY: plain integer arguments.
    ret_fd(unsafe { libc::syscall(libc::SYS_fsmount, fd, FSMOUNT_CLOEXEC, attrs) })
}

pub fn mount_setattr(dirfd: RawFd, path: &CStr, flags: u32, attr: &MountAttr) -> Result<(), i32> {
    // SAFETY: `attr` points to a properly laid out `struct mount_attr` whose size we pass.
    ret_unit(unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            dirfd,
            path.as_ptr(),
            flags,
            attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    })
}

pub fn mount(
    src: Option<&CStr>,
    target: &CStr,
    fstype: Option<&CStr>,
    flags: libc::c_ulong,
    data: Option<&CStr>,
) -> Result<(), i32> {
    let p = |s: Option<&CStr>| s.map_or(std::ptr::null(), |s| s.as_ptr());
    // SAFETY: every pointer is NULL or a valid NUL-terminated string.
    ret_int(unsafe { libc::mount(p(src), target.as_ptr(), p(fstype), flags, p(data).cast()) })
}

pub fn umount2(target: &CStr, flags: libc::c_int) -> Result<(), i32> {
    // SAFETY: valid NUL-terminated string.
    ret_int(unsafe { libc::umount2(target.as_ptr(), flags) })
}

pub fn pivot_root(new_root: &CStr, put_old: &CStr) -> Result<(), i32> {
    // SAFETY: valid NUL-terminated strings.
    ret_unit(unsafe { libc::syscall(libc::SYS_pivot_root, new_root.as_ptr(), put_old.as_ptr()) })
}

pub fn openat2(dirfd: RawFd, path: &CStr, flags: u64, resolve: u64) -> Result<RawFd, i32> {
    let how = OpenHow {
        flags,
        mode: 0,
        resolve,
    };
    // SAFETY: `how` is a valid `struct open_how` and its size is passed.
    ret_fd(unsafe {
        libc::syscall(
            libc::SYS_openat2,
            dirfd,
            path.as_ptr(),
            &how as *const OpenHow,
            std::mem::size_of::<OpenHow>(),
        )
    })
}

pub fn close_range(first: u32, last: u32, flags: u32) -> Result<(), i32> {
    // SAFETY: plain integer arguments.
    ret_unit(unsafe { libc::syscall(libc::SYS_close_range, first, last, flags) })
}

pub fn pidfd_open(pid: libc::pid_t) -> Result<RawFd, i32> {
    // SAFETY: plain integer arguments.
    ret_fd(unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) })
}

pub fn pidfd_send_signal(pidfd: RawFd, sig: i32) -> Result<(), i32> {
    // SAFETY: NULL siginfo means "as kill(2) would".
    ret_unit(unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd,
            sig,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    })
}

pub fn setns(fd: RawFd, nstype: libc::c_int) -> Result<(), i32> {
    // SAFETY: plain integer arguments.
    ret_int(unsafe { libc::setns(fd, nstype) })
}

pub fn close(fd: RawFd) {
    // SAFETY: closing an fd we own; errors are irrelevant here.
    unsafe {
        libc::close(fd);
    }
}

/// Fork-like `clone3`: returns 0 in the child, the child's pid in the parent.
///
/// # Safety
/// In the child only async-signal-safe code may run until exec or `_exit` when the caller is
/// multithreaded: the child is a copy of the calling thread alone.
pub unsafe fn clone3(args: &mut CloneArgs) -> Result<libc::pid_t, i32> {
    // SAFETY: `args` is a valid `struct clone_args` and its size is passed; no stack is given, so
    // the child continues on a copy of the caller's stack like fork(2).
    let r = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            args as *mut CloneArgs,
            std::mem::size_of::<CloneArgs>(),
        )
    };
    if r < 0 {
        Err(errno())
    } else {
        Ok(r as libc::pid_t)
    }
}

/// Fork-like legacy `clone` (for kernels or sandboxes without `clone3`).
///
/// # Safety
/// Same rule as [`clone3`].
pub unsafe fn clone_legacy(flags: u64) -> Result<libc::pid_t, i32> {
    // SAFETY: NULL stack means the child runs on a copy of the caller's stack like fork(2).
    let r = unsafe {
        libc::syscall(
            libc::SYS_clone,
            (flags as libc::c_ulong) | libc::SIGCHLD as libc::c_ulong,
            0usize,
            0usize,
            0usize,
            0usize,
        )
    };
    if r < 0 {
        Err(errno())
    } else {
        Ok(r as libc::pid_t)
    }
}

/// Writes all of `buf` to `fd`, retrying on EINTR. Async-signal-safe.
pub fn write_all(fd: RawFd, mut buf: &[u8]) -> Result<(), i32> {
    while !buf.is_empty() {
        // SAFETY: `buf` is a valid slice for its length.
        let n = unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) };
        if n < 0 {
            let e = errno();
            if e == libc::EINTR {
                continue;
            }
            return Err(e);
        }
        if n == 0 {
            return Err(libc::EIO);
        }
        buf = &buf[n as usize..];
    }
    Ok(())
}

/// A fixed-capacity string buffer on the stack, for building paths without allocating.
pub struct StackPath {
    buf: [u8; 4096],
    len: usize,
}

impl StackPath {
    pub const fn new() -> Self {
        StackPath {
            buf: [0; 4096],
            len: 0,
        }
    }

    pub fn clear(&mut self) {
        self.len = 0;
    }

    pub fn push_bytes(&mut self, b: &[u8]) -> Result<(), i32> {
        if self.len + b.len() + 1 > self.buf.len() {
            return Err(libc::ENAMETOOLONG);
        }
        self.buf[self.len..self.len + b.len()].copy_from_slice(b);
        self.len += b.len();
        Ok(())
    }

    pub fn push_u64(&mut self, mut v: u64) -> Result<(), i32> {
        let mut digits = [0u8; 20];
        let mut i = digits.len();
        loop {
            i -= 1;
            digits[i] = b'0' + (v % 10) as u8;
            v /= 10;
            if v == 0 {
                break;
            }
        }
        self.push_bytes(&digits[i..])
    }

    /// The NUL-terminated content.
    pub fn as_cstr(&mut self) -> &CStr {
        self.buf[self.len] = 0;
        // SAFETY: push_bytes keeps one spare byte, just set to NUL; inputs never contain NUL
        // because they come from `CStr`s or digits.
        unsafe { CStr::from_bytes_with_nul_unchecked(&self.buf[..=self.len]) }
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

impl Default for StackPath {
    fn default() -> Self {
        Self::new()
    }
}

/// `/proc/self/fd/N` for an fd, without allocating.
pub fn proc_fd_path(out: &mut StackPath, fd: RawFd) -> Result<(), i32> {
    out.clear();
    out.push_bytes(b"/proc/self/fd/")?;
    out.push_u64(fd as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stack_path_builds_proc_fd_paths() {
        let mut p = StackPath::new();
        proc_fd_path(&mut p, 0).unwrap();
        assert_eq!(p.as_cstr().to_bytes(), b"/proc/self/fd/0");
        proc_fd_path(&mut p, 1234).unwrap();
        assert_eq!(p.as_cstr().to_bytes(), b"/proc/self/fd/1234");
    }

    #[test]
    fn stack_path_refuses_overflow() {
        let mut p = StackPath::new();
        let big = [b'a'; 5000];
        assert_eq!(p.push_bytes(&big), Err(libc::ENAMETOOLONG));
    }
}

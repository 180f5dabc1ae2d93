//! File access as the container's root: opening, listing and creating files below a set of
//! root directories (image layers, a container's upper directory, a running container's
//! `/proc/PID/root`) with the permissions the container's root has on them.
//!
//! With a subordinate-id mapping, files owned by container users other than root belong to
//! subordinate ids on the host and may be unreadable for the caller. Then a helper process in a
//! user namespace with the container's maps does every open and create, and hands the
//! descriptors back over a socket (`SCM_RIGHTS`): read and write permission are checked when a
//! file is opened, so the caller then reads and writes through them. Without such a mapping
//! (as root, or with a single id) the same operations run in-process.
//!
//! Every path is resolved with `openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)` below its
//! root: `..` and symlinks can never leave it.
//!
//! Fork-safety: the helper is made by `clone` in a possibly multithreaded process, so it runs
//! only system calls over stack buffers ([`serve`]), like `launch::child` and `userns`.

use std::ffi::{CStr, CString};
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;

use oci_spec::runtime::LinuxIdMapping;

use crate::idmap;
use crate::sys;

/// Longest path a request carries.
const MAX_PATH: usize = 4096;
const HDR: usize = 20;
const REQ: usize = HDR + 2 * (MAX_PATH + 1);

const OP_OPEN: u32 = 1;
const OP_MKDIR: u32 = 2;
const OP_CREATE: u32 = 3;
const OP_SYMLINK: u32 = 4;
const OP_REMOVE: u32 = 5;
const OP_WHITEOUT: u32 = 6;
const OP_OPAQUE: u32 = 7;

/// `OP_OPEN` flag: follow a symlink in the last component.
const FOLLOW: u32 = 1;

/// Reply flag: a directory marked opaque (`user.overlay.opaque` / `trusted.overlay.opaque`).
const F_OPAQUE: u32 = 1;
/// Reply flag: a regular file that is an overlay xattr whiteout (`*.overlay.whiteout`).
const F_XWHITEOUT: u32 = 2;

/// One opened entry: a descriptor (readable for regular files and directories, `O_PATH` for
/// the rest), its metadata as the host sees it, and overlay marks read where they are visible.
#[derive(Debug)]
pub struct Node {
    pub fd: OwnedFd,
    pub st: libc::stat,
    pub opaque: bool,
    pub xattr_whiteout: bool,
}

impl Node {
    pub fn kind(&self) -> u32 {
        self.st.st_mode & libc::S_IFMT
    }

    pub fn is_dir(&self) -> bool {
        self.kind() == libc::S_IFDIR
    }

    pub fn is_reg(&self) -> bool {
        self.kind() == libc::S_IFREG
    }

    pub fn is_symlink(&self) -> bool {
        self.kind() == libc::S_IFLNK
    }

    /// An overlay whiteout: a character device 0/0, or a file with the whiteout xattr.
    pub fn is_whiteout(&self) -> bool {
        (self.kind() == libc::S_IFCHR && self.st.st_rdev == 0) || self.xattr_whiteout
    }

    /// The names in a directory (without `.` and `..`), sorted.
    pub fn names(&self) -> io::Result<Vec<Vec<u8>>> {
        let dup = self.fd.try_clone()?;
        let mut dir = nix::dir::Dir::from_fd(std::os::fd::IntoRawFd::into_raw_fd(dup))
            .map_err(|e| io::Error::from_raw_os_error(e as i32))?;
        let mut out = Vec::new();
        for e in dir.iter() {
            let e = e.map_err(|e| io::Error::from_raw_os_error(e as i32))?;
            let n = e.file_name().to_bytes();
            if n != b"." && n != b".." {
                out.push(n.to_vec());
            }
        }
        out.sort();
        Ok(out)
    }

    /// A symlink's target.
    pub fn link_target(&self) -> io::Result<Vec<u8>> {
        let mut buf = vec![0u8; MAX_PATH + 1];
        // SAFETY: the buffer is valid for its length; an empty path reads the O_PATH link itself.
        let n = unsafe {
            libc::readlinkat(
                self.fd.as_raw_fd(),
                c"".as_ptr(),
                buf.as_mut_ptr().cast(),
                buf.len(),
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        buf.truncate(n as usize);
        Ok(buf)
    }

    /// A reader over a regular file's content.
    pub fn file(&self) -> io::Result<File> {
        Ok(File::from(self.fd.try_clone()?))
    }
}

struct Helper {
    sock: OwnedFd,
    pid: libc::pid_t,
}

/// Access to files below a list of roots, as the container's root.
pub struct NsFs {
    roots: Vec<OwnedFd>,
    helper: Option<Helper>,
}

impl std::fmt::Debug for NsFs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NsFs")
            .field("roots", &self.roots.len())
            .field("helper", &self.helper.as_ref().map(|h| h.pid))
            .finish()
    }
}

fn err(e: i32) -> io::Error {
    io::Error::from_raw_os_error(e)
}

fn open_root(p: &Path) -> io::Result<OwnedFd> {
    let c = CString::new(p.as_os_str().as_encoded_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path holds a NUL"))?;
    // SAFETY: valid NUL-terminated path.
    let fd = unsafe {
        libc::open(
            c.as_ptr(),
            libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a descriptor we just opened.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

impl NsFs {
    /// Access below `roots` (each an existing directory) with the container's id maps: through
    /// a user-namespace helper when the maps need one (see the module docs).
    pub fn new(
        roots: &[&Path],
        uids: &[LinuxIdMapping],
        gids: &[LinuxIdMapping],
    ) -> Result<NsFs, super::ImageError> {
        let mut fds = Vec::with_capacity(roots.len());
        for r in roots {
            fds.push(open_root(r).map_err(|e| super::ImageError::io("cannot open", *r, e))?);
        }
        let mut fs = NsFs {
            roots: fds,
            helper: None,
        };
        if super::userns::needs_userns(uids) {
            fs.helper = Some(fs.spawn(uids, gids)?);
        }
        Ok(fs)
    }

    /// How many roots there are.
    pub fn roots(&self) -> usize {
        self.roots.len()
    }

    fn spawn(
        &self,
        uids: &[LinuxIdMapping],
        gids: &[LinuxIdMapping],
    ) -> Result<Helper, super::ImageError> {
        let syserr = |what: &str, e: i32| {
            super::ImageError::Userns(super::userns::UsernsError::Sys {
                what: what.to_string(),
                source: err(e),
            })
        };
        let mut sv = [0; 2];
        // SAFETY: `sv` has room for two descriptors.
        if unsafe {
            libc::socketpair(
                libc::AF_UNIX,
                libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC,
                0,
                sv.as_mut_ptr(),
            )
        } < 0
        {
            return Err(syserr("creating a socket pair", sys::errno()));
        }
        // SAFETY: socketpair returned two descriptors we own.
        let (ours, theirs) = unsafe { (OwnedFd::from_raw_fd(sv[0]), OwnedFd::from_raw_fd(sv[1])) };
        let roots: Vec<RawFd> = self.roots.iter().map(|r| r.as_raw_fd()).collect();
        let mut args = sys::CloneArgs {
            flags: libc::CLONE_NEWUSER as u64,
            exit_signal: libc::SIGCHLD as u64,
            ..Default::default()
        };
        // SAFETY: the child runs only `child_main` (system calls over stack buffers and data
        // prepared before the clone) and never returns.
        let mut pid = unsafe { sys::clone3(&mut args) };
        if matches!(pid, Err(libc::ENOSYS) | Err(libc::EPERM)) {
            // SAFETY: as above.
            pid = unsafe { sys::clone_legacy(libc::CLONE_NEWUSER as u64) };
        }
        let pid = pid.map_err(|e| syserr("creating a user namespace", e))?;
        if pid == 0 {
            // The parent's end must close here too, or the helper never sees end-of-file.
            sys::close(ours.as_raw_fd());
            child_main(&roots, theirs.as_raw_fd());
        }
        drop(theirs);
        if let Err(e) = idmap::apply(pid, uids, gids) {
            // SAFETY: killing and reaping our own child.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            reap(pid);
            return Err(super::ImageError::IdMap(e));
        }
        Ok(Helper { sock: ours, pid })
    }

    /// Runs one operation, directly or through the helper.
    fn call(
        &self,
        op: u32,
        root: usize,
        flags: u32,
        a: &[u8],
        b: &[u8],
    ) -> io::Result<(Option<OwnedFd>, u32)> {
        if root >= self.roots.len() {
            return Err(err(libc::EINVAL));
        }
        let a = if a.is_empty() { &b"."[..] } else { a };
        if a.len() > MAX_PATH || b.len() > MAX_PATH || a.contains(&0) || b.contains(&0) {
            return Err(err(libc::ENAMETOOLONG));
        }
        let mut req = vec![0u8; HDR + a.len() + b.len() + 2];
        req[0..4].copy_from_slice(&op.to_ne_bytes());
        req[4..8].copy_from_slice(&(root as u32).to_ne_bytes());
        req[8..12].copy_from_slice(&flags.to_ne_bytes());
        req[12..16].copy_from_slice(&(a.len() as u32).to_ne_bytes());
        req[16..20].copy_from_slice(&(b.len() as u32).to_ne_bytes());
        req[HDR..HDR + a.len()].copy_from_slice(a);
        req[HDR + a.len() + 1..HDR + a.len() + 1 + b.len()].copy_from_slice(b);
        match &self.helper {
            None => {
                let roots: Vec<RawFd> = self.roots.iter().map(|r| r.as_raw_fd()).collect();
                let (fd, fl) = handle(&roots, &req).map_err(err)?;
                // SAFETY: `handle` returns a descriptor it opened, or -1.
                Ok(((fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd) }), fl))
            }
            Some(h) => {
                sys::write_all(h.sock.as_raw_fd(), &req).map_err(err)?;
                let (e, fl, fd) = recv_reply(h.sock.as_raw_fd())?;
                if e != 0 {
                    return Err(err(e));
                }
                Ok((fd, fl))
            }
        }
    }

    /// Opens `path` (relative to root number `root`); `None` when it does not exist.
    pub fn open(&self, root: usize, path: &[u8], follow: bool) -> io::Result<Option<Node>> {
        let path = if path.is_empty() { &b"."[..] } else { path };
        match self.call(OP_OPEN, root, if follow { FOLLOW } else { 0 }, path, b"") {
            Ok((Some(fd), fl)) => {
                // SAFETY: `stat` is plain data; fstat fills it.
                let mut st: libc::stat = unsafe { std::mem::zeroed() };
                // SAFETY: valid descriptor and writable stat.
                if unsafe { libc::fstat(fd.as_raw_fd(), &mut st) } < 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(Some(Node {
                    fd,
                    st,
                    opaque: fl & F_OPAQUE != 0,
                    xattr_whiteout: fl & F_XWHITEOUT != 0,
                }))
            }
            Ok((None, _)) => Err(err(libc::EIO)),
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT) | Some(libc::ENOTDIR)) => {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// Makes directory `name` in `parent` (nothing if a directory is already there).
    pub fn mkdir(&self, root: usize, parent: &[u8], name: &[u8], mode: u32) -> io::Result<()> {
        self.call(OP_MKDIR, root, mode, parent, name).map(|_| ())
    }

    /// Creates (or truncates) regular file `name` in `parent`, replacing a non-directory there;
    /// returns it open for writing.
    pub fn create(&self, root: usize, parent: &[u8], name: &[u8], mode: u32) -> io::Result<File> {
        match self.call(OP_CREATE, root, mode, parent, name)? {
            (Some(fd), _) => Ok(File::from(fd)),
            (None, _) => Err(err(libc::EIO)),
        }
    }

    /// Creates symlink `name` in `parent` pointing to `target`, replacing a non-directory.
    pub fn symlink(
        &self,
        root: usize,
        parent: &[u8],
        name: &[u8],
        target: &[u8],
    ) -> io::Result<()> {
        let mut a = parent.to_vec();
        a.push(b'/');
        a.extend_from_slice(name);
        self.call(OP_SYMLINK, root, 0, &a, target).map(|_| ())
    }

    /// Removes `name` in `parent` and everything below it.
    pub fn remove(&self, root: usize, parent: &[u8], name: &[u8]) -> io::Result<()> {
        self.call(OP_REMOVE, root, 0, parent, name).map(|_| ())
    }

    /// Makes an overlay whiteout (char 0/0) `name` in `parent`.
    pub fn whiteout(&self, root: usize, parent: &[u8], name: &[u8]) -> io::Result<()> {
        self.call(OP_WHITEOUT, root, 0, parent, name).map(|_| ())
    }

    /// Marks directory `path` opaque for the overlay (`user.overlay.opaque=y`).
    pub fn set_opaque(&self, root: usize, path: &[u8]) -> io::Result<()> {
        self.call(OP_OPAQUE, root, 0, path, b"").map(|_| ())
    }
}

impl Drop for NsFs {
    fn drop(&mut self) {
        if let Some(h) = self.helper.take() {
            let pid = h.pid;
            // Closing the socket ends the helper's loop.
            drop(h.sock);
            reap(pid);
        }
    }
}

fn reap(pid: libc::pid_t) {
    let mut st = 0;
    // SAFETY: waiting for our own child.
    while unsafe { libc::waitpid(pid, &mut st, 0) } < 0 && sys::errno() == libc::EINTR {}
}

fn recv_reply(sock: RawFd) -> io::Result<(i32, u32, Option<OwnedFd>)> {
    let mut data = [0u8; 8];
    let mut cbuf = [0u64; 8];
    loop {
        let mut iov = libc::iovec {
            iov_base: data.as_mut_ptr().cast(),
            iov_len: data.len(),
        };
        // SAFETY: msghdr is plain data.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = cbuf.as_mut_ptr().cast();
        msg.msg_controllen = std::mem::size_of_val(&cbuf) as _;
        // SAFETY: the message points to live buffers of the given sizes.
        let n = unsafe { libc::recvmsg(sock, &mut msg, libc::MSG_CMSG_CLOEXEC) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            return Err(e);
        }
        if n as usize != data.len() {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the user-namespace file helper died",
            ));
        }
        let mut fd = None;
        // SAFETY: walking the control messages the kernel wrote into `cbuf`.
        unsafe {
            let mut c = libc::CMSG_FIRSTHDR(&msg);
            while !c.is_null() {
                if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_RIGHTS {
                    let raw = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast::<RawFd>());
                    fd = Some(OwnedFd::from_raw_fd(raw));
                }
                c = libc::CMSG_NXTHDR(&msg, c);
            }
        }
        let e = i32::from_ne_bytes([data[0], data[1], data[2], data[3]]);
        let fl = u32::from_ne_bytes([data[4], data[5], data[6], data[7]]);
        return Ok((e, fl, fd));
    }
}

/// The helper: serves requests until the socket closes.
fn child_main(roots: &[RawFd], sock: RawFd) -> ! {
    // SAFETY: raw system calls only; `_exit` never returns.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) };
    serve(roots, sock);
    // SAFETY: leaving the child without destructors or atexit handlers.
    unsafe { libc::_exit(0) }
}

fn serve(roots: &[RawFd], sock: RawFd) {
    let mut req = [0u8; REQ];
    loop {
        // SAFETY: reading into our buffer within its bounds.
        let n = unsafe { libc::read(sock, req.as_mut_ptr().cast(), req.len()) };
        if n < 0 && sys::errno() == libc::EINTR {
            continue;
        }
        if n <= 0 {
            return;
        }
        let (e, fd, fl) = match handle(roots, &req[..n as usize]) {
            Ok((fd, fl)) => (0, fd, fl),
            Err(e) => (e, -1, 0),
        };
        send_reply(sock, e, fl, fd);
        if fd >= 0 {
            sys::close(fd);
        }
    }
}

fn send_reply(sock: RawFd, e: i32, fl: u32, fd: RawFd) {
    let mut data = [0u8; 8];
    data[..4].copy_from_slice(&e.to_ne_bytes());
    data[4..].copy_from_slice(&fl.to_ne_bytes());
    let mut cbuf = [0u64; 4];
    let mut iov = libc::iovec {
        iov_base: data.as_mut_ptr().cast(),
        iov_len: data.len(),
    };
    // SAFETY: msghdr is plain data; the control buffer is large enough for one descriptor
    // (CMSG_SPACE(4) <= 24 bytes) and every pointer refers to live stack buffers.
    unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        if fd >= 0 {
            msg.msg_control = cbuf.as_mut_ptr().cast();
            msg.msg_controllen = libc::CMSG_SPACE(4) as _;
            let c = libc::CMSG_FIRSTHDR(&msg);
            (*c).cmsg_level = libc::SOL_SOCKET;
            (*c).cmsg_type = libc::SCM_RIGHTS;
            (*c).cmsg_len = libc::CMSG_LEN(4) as _;
            std::ptr::write_unaligned(libc::CMSG_DATA(c).cast::<RawFd>(), fd);
        }
        while libc::sendmsg(sock, &msg, libc::MSG_NOSIGNAL) < 0 && sys::errno() == libc::EINTR {}
    }
}

fn cstr_at(buf: &[u8], off: usize, len: usize) -> Result<&CStr, i32> {
    let b = buf.get(off..off + len + 1).ok_or(libc::EINVAL)?;
    CStr::from_bytes_with_nul(b).map_err(|_| libc::EINVAL)
}

fn u32_at(buf: &[u8], off: usize) -> u32 {
    match buf.get(off..off + 4) {
        Some(b) => u32::from_ne_bytes([b[0], b[1], b[2], b[3]]),
        None => 0,
    }
}

fn open_in(root: RawFd, path: &CStr, flags: i32) -> Result<RawFd, i32> {
    sys::openat2(
        root,
        path,
        (flags | libc::O_CLOEXEC) as u64,
        sys::RESOLVE_IN_ROOT | sys::RESOLVE_NO_MAGICLINKS,
    )
}

/// Re-opens an `O_PATH` descriptor with `flags` through `/proc/self/fd`.
fn reopen(fd: RawFd, flags: i32) -> Result<RawFd, i32> {
    let mut p = sys::StackPath::new();
    sys::proc_fd_path(&mut p, fd)?;
    // SAFETY: valid NUL-terminated path.
    let r = unsafe { libc::open(p.as_cstr().as_ptr(), flags | libc::O_CLOEXEC) };
    if r < 0 {
        Err(sys::errno())
    } else {
        Ok(r)
    }
}

fn has_xattr(fd: RawFd, names: &[&CStr], want: Option<u8>) -> bool {
    for n in names {
        let mut b = [0u8; 4];
        // SAFETY: valid name and buffer.
        let r = unsafe { libc::fgetxattr(fd, n.as_ptr(), b.as_mut_ptr().cast(), b.len()) };
        if r >= 0 && want.is_none_or(|w| r == 1 && b[0] == w) {
            return true;
        }
    }
    false
}

fn lstat_at(dir: RawFd, name: &CStr) -> Option<libc::stat> {
    // SAFETY: `stat` is plain data; fstatat fills it.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: valid name and writable stat.
    (unsafe { libc::fstatat(dir, name.as_ptr(), &mut st, libc::AT_SYMLINK_NOFOLLOW) } == 0)
        .then_some(st)
}

/// Removes a non-directory `name` in `dir` (a whiteout, file or symlink about to be replaced).
fn clear_nondir(dir: RawFd, name: &CStr) -> Result<(), i32> {
    match lstat_at(dir, name) {
        None => Ok(()),
        Some(st) if st.st_mode & libc::S_IFMT == libc::S_IFDIR => Err(libc::EISDIR),
        // SAFETY: valid name.
        Some(_) => match unsafe { libc::unlinkat(dir, name.as_ptr(), 0) } {
            0 => Ok(()),
            _ => Err(sys::errno()),
        },
    }
}

/// One request: system calls only (it runs in the helper). Returns a descriptor (or -1) and
/// reply flags.
fn handle(roots: &[RawFd], req: &[u8]) -> Result<(RawFd, u32), i32> {
    if req.len() < HDR {
        return Err(libc::EINVAL);
    }
    let op = u32_at(req, 0);
    let root = *roots.get(u32_at(req, 4) as usize).ok_or(libc::EINVAL)?;
    let flags = u32_at(req, 8);
    let (la, lb) = (u32_at(req, 12) as usize, u32_at(req, 16) as usize);
    let a = cstr_at(req, HDR, la)?;
    let b = cstr_at(req, HDR + la + 1, lb)?;
    match op {
        OP_OPEN => {
            let mut f = libc::O_PATH;
            if flags & FOLLOW == 0 {
                f |= libc::O_NOFOLLOW;
            }
            let p = open_in(root, a, f)?;
            // SAFETY: `stat` is plain data; fstat fills it.
            let mut st: libc::stat = unsafe { std::mem::zeroed() };
            // SAFETY: valid descriptor.
            if unsafe { libc::fstat(p, &mut st) } < 0 {
                let e = sys::errno();
                sys::close(p);
                return Err(e);
            }
            let kind = st.st_mode & libc::S_IFMT;
            if kind != libc::S_IFDIR && kind != libc::S_IFREG {
                return Ok((p, 0));
            }
            let r = reopen(
                p,
                if kind == libc::S_IFDIR {
                    libc::O_RDONLY | libc::O_DIRECTORY
                } else {
                    libc::O_RDONLY | libc::O_NOCTTY
                },
            );
            sys::close(p);
            let fd = r?;
            let fl = if kind == libc::S_IFDIR {
                if has_xattr(
                    fd,
                    &[c"user.overlay.opaque", c"trusted.overlay.opaque"],
                    Some(b'y'),
                ) {
                    F_OPAQUE
                } else {
                    0
                }
            } else if st.st_size == 0
                && has_xattr(
                    fd,
                    &[c"user.overlay.whiteout", c"trusted.overlay.whiteout"],
                    None,
                )
            {
                F_XWHITEOUT
            } else {
                0
            };
            Ok((fd, fl))
        }
        OP_MKDIR | OP_CREATE | OP_REMOVE | OP_WHITEOUT => {
            let dir = open_in(root, a, libc::O_PATH | libc::O_DIRECTORY)?;
            let r = match op {
                OP_MKDIR => {
                    // SAFETY: valid name.
                    if unsafe { libc::mkdirat(dir, b.as_ptr(), flags & 0o7777) } == 0 {
                        // SAFETY: as above; the mode without the umask.
                        unsafe { libc::fchmodat(dir, b.as_ptr(), flags & 0o7777, 0) };
                        Ok((-1, 0))
                    } else {
                        match sys::errno() {
                            libc::EEXIST => match lstat_at(dir, b) {
                                Some(st) if st.st_mode & libc::S_IFMT == libc::S_IFDIR => {
                                    Ok((-1, 0))
                                }
                                _ => Err(libc::EEXIST),
                            },
                            e => Err(e),
                        }
                    }
                }
                OP_CREATE => clear_nondir(dir, b).and_then(|()| {
                    // SAFETY: valid name; never through a symlink.
                    let fd = unsafe {
                        libc::openat(
                            dir,
                            b.as_ptr(),
                            libc::O_WRONLY
                                | libc::O_CREAT
                                | libc::O_EXCL
                                | libc::O_NOFOLLOW
                                | libc::O_CLOEXEC,
                            flags & 0o7777,
                        )
                    };
                    if fd < 0 {
                        return Err(sys::errno());
                    }
                    // SAFETY: our descriptor; the mode without the umask.
                    unsafe { libc::fchmod(fd, flags & 0o7777) };
                    Ok((fd, 0))
                }),
                OP_REMOVE => super::userns::remove_tree_at(dir, b).map(|()| (-1, 0)),
                _ => clear_nondir(dir, b).and_then(|()| {
                    // SAFETY: valid name.
                    if unsafe { libc::mknodat(dir, b.as_ptr(), libc::S_IFCHR, 0) } == 0 {
                        Ok((-1, 0))
                    } else {
                        Err(sys::errno())
                    }
                }),
            };
            sys::close(dir);
            r
        }
        OP_SYMLINK => {
            // `a` is PARENT/NAME: split at the last slash.
            let ab = a.to_bytes();
            let cut = ab.iter().rposition(|c| *c == b'/').ok_or(libc::EINVAL)?;
            let mut pbuf = [0u8; MAX_PATH + 1];
            let mut nbuf = [0u8; MAX_PATH + 1];
            let (pa, na) = (&ab[..cut], &ab[cut + 1..]);
            pbuf[..pa.len()].copy_from_slice(pa);
            if pa.is_empty() {
                pbuf[0] = b'.';
            }
            nbuf[..na.len()].copy_from_slice(na);
            let pl = pa.len().max(1);
            let pc = CStr::from_bytes_with_nul(&pbuf[..pl + 1]).map_err(|_| libc::EINVAL)?;
            let nc = CStr::from_bytes_with_nul(&nbuf[..na.len() + 1]).map_err(|_| libc::EINVAL)?;
            let dir = open_in(root, pc, libc::O_PATH | libc::O_DIRECTORY)?;
            let r = clear_nondir(dir, nc).and_then(|()| {
                // SAFETY: valid strings.
                if unsafe { libc::symlinkat(b.as_ptr(), dir, nc.as_ptr()) } == 0 {
                    Ok((-1, 0))
                } else {
                    Err(sys::errno())
                }
            });
            sys::close(dir);
            r
        }
        OP_OPAQUE => {
            let p = open_in(root, a, libc::O_PATH | libc::O_DIRECTORY | libc::O_NOFOLLOW)?;
            let fd = reopen(p, libc::O_RDONLY | libc::O_DIRECTORY);
            sys::close(p);
            let fd = fd?;
            // SAFETY: valid name and value.
            let r = unsafe {
                libc::fsetxattr(
                    fd,
                    c"user.overlay.opaque".as_ptr(),
                    b"y".as_ptr().cast(),
                    1,
                    0,
                )
            };
            let e = sys::errno();
            sys::close(fd);
            if r < 0 {
                Err(e)
            } else {
                Ok((-1, 0))
            }
        }
        _ => Err(libc::EINVAL),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_create_and_stay_inside() {
        let base = std::env::temp_dir().join(format!("rootbox-nsfs-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        std::fs::create_dir_all(base.join("r/d")).unwrap();
        std::fs::write(base.join("secret"), b"host").unwrap();
        std::os::unix::fs::symlink("../../../secret", base.join("r/esc")).unwrap();
        let fs = NsFs::new(&[&base.join("r")], &[], &[]).unwrap();
        assert!(fs.open(0, b"d", false).unwrap().unwrap().is_dir());
        // The symlink resolves inside the root, where there is no `secret`.
        assert!(fs.open(0, b"esc", true).unwrap().is_none());
        assert!(fs.open(0, b"esc", false).unwrap().unwrap().is_symlink());
        assert!(fs.open(0, b"../../secret", true).unwrap().is_none());
        use std::io::Write;
        fs.create(0, b"d", b"f", 0o640)
            .unwrap()
            .write_all(b"hi")
            .unwrap();
        fs.mkdir(0, b"d", b"sub", 0o750).unwrap();
        fs.symlink(0, b"d", b"l", b"/f").unwrap();
        let d = fs.open(0, b"d", false).unwrap().unwrap();
        assert_eq!(
            d.names().unwrap(),
            vec![b"f".to_vec(), b"l".to_vec(), b"sub".to_vec()]
        );
        let l = fs.open(0, b"d/l", false).unwrap().unwrap();
        assert_eq!(l.link_target().unwrap(), b"/f");
        fs.remove(0, b"", b"d").unwrap();
        assert!(!base.join("r/d").exists());
        assert_eq!(std::fs::read(base.join("secret")).unwrap(), b"host");
        std::fs::remove_dir_all(&base).unwrap();
    }
}

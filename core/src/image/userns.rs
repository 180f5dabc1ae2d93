//! Work that needs the container's user namespace: giving unpacked files their owners (a
//! subordinate uid can only be set from inside the namespace that maps it) and removing trees
//! that hold such files.
//!
//! Fork-safety: the library runs in multithreaded hosts, so the child made by `clone` runs only
//! system calls over a list prepared (allocated) in the parent — the same rule as
//! `launch::child`. The parent writes the id maps (newuidmap/newgidmap), then lets the child go;
//! the child reports `(errno, index)` of a failed step over a pipe.

use std::ffi::{CStr, CString};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;

use oci_spec::runtime::LinuxIdMapping;

use super::unpack::OwnerOp;
use crate::idmap;
use crate::sys;

#[derive(Debug, thiserror::Error)]
pub enum UsernsError {
    #[error("{what}: {source}")]
    Sys {
        what: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    IdMap(#[from] idmap::IdMapError),
    #[error("in the user namespace, {what} {path}: {source}")]
    Child {
        what: &'static str,
        path: String,
        source: std::io::Error,
    },
}

fn sys_err(what: impl Into<String>, errno: i32) -> UsernsError {
    UsernsError::Sys {
        what: what.into(),
        source: std::io::Error::from_raw_os_error(errno),
    }
}

/// Removes `name` under `dirfd` and everything below it.
///
/// Only system calls, no allocation and no recursion (it walks down and back up with `..`), so
/// it runs in a forked child and copes with trees of any depth. Directories are made
/// accessible (0700) before they are entered.
pub fn remove_tree_at(dirfd: RawFd, name: &CStr) -> Result<(), i32> {
    // SAFETY (all calls below): raw system calls on valid NUL-terminated strings and buffers.
    if unsafe { libc::unlinkat(dirfd, name.as_ptr(), 0) } == 0 {
        return Ok(());
    }
    match sys::errno() {
        libc::ENOENT => return Ok(()),
        libc::EISDIR | libc::EPERM => {}
        e => return Err(e),
    }
    if unsafe { libc::unlinkat(dirfd, name.as_ptr(), libc::AT_REMOVEDIR) } == 0 {
        return Ok(());
    }
    match sys::errno() {
        libc::ENOTEMPTY | libc::EEXIST => {}
        libc::ENOENT => return Ok(()),
        e => return Err(e),
    }
    let top = open_subdir(dirfd, name)?;
    let (top_dev, top_ino) = dev_ino(top)?;
    let mut cur = top;
    let mut buf = [0u64; 2048];
    loop {
        // SAFETY: plain syscall.
        unsafe { libc::lseek(cur, 0, libc::SEEK_SET) };
        let mut descended = false;
        'scan: loop {
            // SAFETY: the buffer is valid for its length.
            let n = unsafe {
                libc::syscall(
                    libc::SYS_getdents64,
                    cur,
                    buf.as_mut_ptr(),
                    std::mem::size_of_val(&buf),
                )
            };
            if n < 0 {
                let e = sys::errno();
                sys::close(cur);
                return Err(e);
            }
            if n == 0 {
                break;
            }
            // SAFETY: viewing the u64 buffer as bytes.
            let bytes: &[u8] = unsafe {
                std::slice::from_raw_parts(buf.as_ptr().cast::<u8>(), std::mem::size_of_val(&buf))
            };
            let mut off = 0usize;
            while off < n as usize {
                // struct linux_dirent64 { u64 ino; i64 off; u16 reclen; u8 type; char name[]; }
                let reclen = match bytes.get(off + 16..off + 18) {
                    Some(b) => u16::from_ne_bytes([b[0], b[1]]) as usize,
                    None => break,
                };
                let dtype = bytes.get(off + 18).copied().unwrap_or(libc::DT_UNKNOWN);
                let name_bytes = match bytes.get(off + 19..off + reclen) {
                    Some(b) => b,
                    None => break,
                };
                off += reclen.max(1);
                let Ok(ent) = CStr::from_bytes_until_nul(name_bytes) else {
                    continue;
                };
                let eb = ent.to_bytes();
                if eb == b"." || eb == b".." {
                    continue;
                }
                let is_dir = match dtype {
                    libc::DT_DIR => true,
                    libc::DT_UNKNOWN => is_dir_at(cur, ent),
                    _ => false,
                };
                if is_dir {
                    if unsafe { libc::unlinkat(cur, ent.as_ptr(), libc::AT_REMOVEDIR) } == 0 {
                        continue;
                    }
                    match sys::errno() {
                        libc::ENOENT => continue,
                        // Only a non-empty directory is entered (anything else would loop).
                        libc::ENOTEMPTY | libc::EEXIST => {}
                        e => {
                            sys::close(cur);
                            return Err(e);
                        }
                    }
                    let child = match open_subdir(cur, ent) {
                        Ok(fd) => fd,
                        Err(e) => {
                            sys::close(cur);
                            return Err(e);
                        }
                    };
                    sys::close(cur);
                    cur = child;
                    descended = true;
                    break 'scan;
                }
                if unsafe { libc::unlinkat(cur, ent.as_ptr(), 0) } < 0 {
                    let e = sys::errno();
                    if e != libc::ENOENT {
                        sys::close(cur);
                        return Err(e);
                    }
                }
            }
        }
        if descended {
            continue;
        }
        // `cur` is empty now: go back up; the parent's next scan removes it.
        let here = match dev_ino(cur) {
            Ok(x) => x,
            Err(e) => {
                sys::close(cur);
                return Err(e);
            }
        };
        if here == (top_dev, top_ino) {
            sys::close(cur);
            break;
        }
        let parent = unsafe {
            libc::openat(
                cur,
                c"..".as_ptr(),
                libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
            )
        };
        let e = sys::errno();
        sys::close(cur);
        if parent < 0 {
            return Err(e);
        }
        cur = parent;
    }
    if unsafe { libc::unlinkat(dirfd, name.as_ptr(), libc::AT_REMOVEDIR) } < 0 {
        let e = sys::errno();
        if e != libc::ENOENT {
            return Err(e);
        }
    }
    Ok(())
}

fn is_dir_at(dir: RawFd, name: &CStr) -> bool {
    // SAFETY: `stat` is plain data; fstatat fills it.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: valid string and writable stat.
    let r = unsafe { libc::fstatat(dir, name.as_ptr(), &mut st, libc::AT_SYMLINK_NOFOLLOW) };
    r == 0 && st.st_mode & libc::S_IFMT == libc::S_IFDIR
}

fn dev_ino(fd: RawFd) -> Result<(u64, u64), i32> {
    // SAFETY: `stat` is plain data; fstat fills it.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: writable stat.
    if unsafe { libc::fstat(fd, &mut st) } < 0 {
        return Err(sys::errno());
    }
    Ok((st.st_dev, st.st_ino))
}

/// Opens a subdirectory for reading after making it 0700 (never through a symlink).
fn open_subdir(dir: RawFd, name: &CStr) -> Result<RawFd, i32> {
    // SAFETY: valid NUL-terminated name.
    let p = unsafe {
        libc::openat(
            dir,
            name.as_ptr(),
            libc::O_PATH | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
        )
    };
    if p < 0 {
        return Err(sys::errno());
    }
    let mut path = sys::StackPath::new();
    if sys::proc_fd_path(&mut path, p).is_ok() {
        // SAFETY: valid path; failure is fine (we may already have access).
        unsafe { libc::chmod(path.as_cstr().as_ptr(), 0o700) };
    }
    // SAFETY: reopening the directory through its descriptor (".").
    let fd = unsafe {
        libc::openat(
            p,
            c".".as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    };
    let e = sys::errno();
    sys::close(p);
    if fd < 0 {
        Err(e)
    } else {
        Ok(fd)
    }
}

/// Whether these mappings need a user namespace to apply owners (i.e. not identity as root,
/// not a single id).
pub fn needs_userns(uids: &[LinuxIdMapping]) -> bool {
    // SAFETY: geteuid cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    !(root || matches!(uids, [m] if m.size() == 1))
}

enum Job<'a> {
    Owners { root: RawFd, ops: &'a [OwnerOp] },
    Remove { parent: RawFd, name: &'a CStr },
}

/// Applies recorded ownership changes below `root` inside a user namespace with these maps.
pub fn apply_owners(
    root: &Path,
    ops: &[OwnerOp],
    uids: &[LinuxIdMapping],
    gids: &[LinuxIdMapping],
) -> Result<(), UsernsError> {
    if ops.is_empty() {
        return Ok(());
    }
    let fd = open_path(root)?;
    run(
        Job::Owners {
            root: fd.as_raw_fd(),
            ops,
        },
        uids,
        gids,
    )
    .map_err(|f| match f {
        Failure::IdMap(e) => UsernsError::IdMap(e),
        Failure::Step(what, idx, e) => match idx.and_then(|i| ops.get(i)) {
            Some(op) => UsernsError::Child {
                what,
                path: format!(
                    "{}/{}",
                    root.display(),
                    String::from_utf8_lossy(op.path.as_bytes())
                ),
                source: std::io::Error::from_raw_os_error(e),
            },
            None => sys_err(what, e),
        },
    })
}

/// Removes a tree (e.g. a layer or a container's upper dir) that may hold files owned by
/// subordinate ids: inside the user namespace when the mapping needs it, else directly.
pub fn remove_tree(
    path: &Path,
    uids: &[LinuxIdMapping],
    gids: &[LinuxIdMapping],
) -> Result<(), UsernsError> {
    let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(sys_err(
            format!("refusing to remove {}", path.display()),
            libc::EINVAL,
        ));
    };
    let pfd = match open_path(parent) {
        Ok(fd) => fd,
        Err(_) if !path.exists() => return Ok(()),
        Err(e) => return Err(e),
    };
    let cname = CString::new(name.as_encoded_bytes())
        .map_err(|_| sys_err(format!("bad path {}", path.display()), libc::EINVAL))?;
    let direct = remove_tree_at(pfd.as_raw_fd(), &cname);
    match direct {
        Ok(()) => Ok(()),
        Err(libc::EACCES) | Err(libc::EPERM) if needs_userns(uids) => run(
            Job::Remove {
                parent: pfd.as_raw_fd(),
                name: &cname,
            },
            uids,
            gids,
        )
        .map_err(|f| match f {
            Failure::IdMap(e) => UsernsError::IdMap(e),
            Failure::Step(_, _, e) => UsernsError::Child {
                what: "removing",
                path: path.display().to_string(),
                source: std::io::Error::from_raw_os_error(e),
            },
        }),
        Err(e) => Err(UsernsError::Sys {
            what: format!("removing {}", path.display()),
            source: std::io::Error::from_raw_os_error(e),
        }),
    }
}

fn open_path(p: &Path) -> Result<OwnedFd, UsernsError> {
    let c = CString::new(p.as_os_str().as_encoded_bytes())
        .map_err(|_| sys_err(format!("bad path {}", p.display()), libc::EINVAL))?;
    // SAFETY: valid NUL-terminated path.
    let fd = unsafe {
        libc::open(
            c.as_ptr(),
            libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(sys_err(format!("opening {}", p.display()), sys::errno()));
    }
    // SAFETY: a descriptor we just opened.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn pipe() -> Result<(OwnedFd, OwnedFd), i32> {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for two descriptors.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } < 0 {
        return Err(sys::errno());
    }
    // SAFETY: pipe2 returned two new descriptors we own.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// How a namespace job failed: a step (what, index of the op, errno), or the id mapping.
enum Failure {
    Step(&'static str, Option<usize>, i32),
    IdMap(idmap::IdMapError),
}

/// Clones a child into a new user namespace, maps it, runs `job` there, reports back.
fn run(job: Job<'_>, uids: &[LinuxIdMapping], gids: &[LinuxIdMapping]) -> Result<(), Failure> {
    let (go_r, go_w) = pipe().map_err(|e| Failure::Step("creating a pipe", None, e))?;
    let (res_r, res_w) = pipe().map_err(|e| Failure::Step("creating a pipe", None, e))?;
    let mut args = sys::CloneArgs {
        flags: libc::CLONE_NEWUSER as u64,
        exit_signal: libc::SIGCHLD as u64,
        ..Default::default()
    };
    // SAFETY: the child runs only `child_main`, which makes system calls over data prepared
    // before the clone and never returns.
    let mut pid = unsafe { sys::clone3(&mut args) };
    if matches!(pid, Err(libc::ENOSYS) | Err(libc::EPERM)) {
        // SAFETY: as above.
        pid = unsafe { sys::clone_legacy(libc::CLONE_NEWUSER as u64) };
    }
    let pid = pid.map_err(|e| Failure::Step("creating a user namespace", None, e))?;
    if pid == 0 {
        child_main(&job, go_r.as_raw_fd(), res_w.as_raw_fd());
    }
    drop(go_r);
    drop(res_w);
    let reap = |pid: libc::pid_t| {
        let mut st = 0;
        // SAFETY: waiting for our own child.
        while unsafe { libc::waitpid(pid, &mut st, 0) } < 0 && sys::errno() == libc::EINTR {}
        st
    };
    if let Err(e) = idmap::apply(pid, uids, gids) {
        // SAFETY: killing our own child.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        reap(pid);
        return Err(Failure::IdMap(e));
    }
    let _ = sys::write_all(go_w.as_raw_fd(), b"g");
    drop(go_w);
    let mut rep = [0u8; 12];
    let mut got = 0;
    while got < rep.len() {
        // SAFETY: writing into our buffer within its bounds.
        let n = unsafe {
            libc::read(
                res_r.as_raw_fd(),
                rep[got..].as_mut_ptr().cast(),
                rep.len() - got,
            )
        };
        if n < 0 && sys::errno() == libc::EINTR {
            continue;
        }
        if n <= 0 {
            break;
        }
        got += n as usize;
    }
    let st = reap(pid);
    if got < rep.len() {
        return Err(Failure::Step(
            "the user-namespace helper died",
            None,
            if libc::WIFSIGNALED(st) {
                libc::EINTR
            } else {
                libc::EIO
            },
        ));
    }
    let errno = i32::from_ne_bytes([rep[0], rep[1], rep[2], rep[3]]);
    let step = u32::from_ne_bytes([rep[4], rep[5], rep[6], rep[7]]);
    let idx = u32::from_ne_bytes([rep[8], rep[9], rep[10], rep[11]]);
    if errno == 0 {
        return Ok(());
    }
    let what = match step {
        1 => "changing the owner of",
        2 => "setting the mode of",
        3 => "setting file capabilities on",
        4 => "opening",
        _ => "removing",
    };
    Err(Failure::Step(what, Some(idx as usize), errno))
}

fn report(fd: RawFd, errno: i32, step: u32, idx: u32) {
    let mut b = [0u8; 12];
    b[..4].copy_from_slice(&errno.to_ne_bytes());
    b[4..8].copy_from_slice(&step.to_ne_bytes());
    b[8..].copy_from_slice(&idx.to_ne_bytes());
    let _ = sys::write_all(fd, &b);
}

/// The child: waits for its maps, then runs the job with system calls only.
fn child_main(job: &Job<'_>, go: RawFd, res: RawFd) -> ! {
    // SAFETY (whole function): raw system calls on prepared data; `_exit` never returns.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) };
    let mut b = [0u8; 1];
    let n = loop {
        // SAFETY: one byte into our buffer.
        let n = unsafe { libc::read(go, b.as_mut_ptr().cast(), 1) };
        if n < 0 && sys::errno() == libc::EINTR {
            continue;
        }
        break n;
    };
    if n != 1 {
        // SAFETY: leaving the child.
        unsafe { libc::_exit(1) };
    }
    let r = match job {
        Job::Owners { root, ops } => owners(*root, ops),
        Job::Remove { parent, name } => remove_tree_at(*parent, name).map_err(|e| (e, 5, 0)),
    };
    let code = match r {
        Ok(()) => {
            report(res, 0, 0, 0);
            0
        }
        Err((e, step, idx)) => {
            report(res, e, step, idx);
            1
        }
    };
    // SAFETY: leaving the child without running any destructor or atexit handler.
    unsafe { libc::_exit(code) }
}

fn owners(root: RawFd, ops: &[OwnerOp]) -> Result<(), (i32, u32, u32)> {
    for (i, op) in ops.iter().enumerate() {
        let i = i as u32;
        // The entry itself, never following a symlink in its last component; every other
        // symlink resolves inside the layer.
        let fd = sys::openat2(
            root,
            &op.path,
            (libc::O_PATH | libc::O_NOFOLLOW | libc::O_CLOEXEC) as u64,
            sys::RESOLVE_IN_ROOT | sys::RESOLVE_NO_MAGICLINKS,
        )
        .map_err(|e| (e, 4, i))?;
        // SAFETY: AT_EMPTY_PATH changes the inode the O_PATH descriptor refers to.
        let r = unsafe { libc::fchownat(fd, c"".as_ptr(), op.uid, op.gid, libc::AT_EMPTY_PATH) };
        if r < 0 {
            let e = sys::errno();
            sys::close(fd);
            return Err((e, 1, i));
        }
        if op.mode.is_some() || !op.xattrs.is_empty() {
            // SAFETY: `stat` is plain data; fstat fills it.
            let mut st: libc::stat = unsafe { std::mem::zeroed() };
            // SAFETY: writable stat.
            let is_file = unsafe { libc::fstat(fd, &mut st) } == 0
                && st.st_mode & libc::S_IFMT == libc::S_IFREG;
            if is_file {
                let mut p = sys::StackPath::new();
                if sys::proc_fd_path(&mut p, fd).is_ok() {
                    if let Some(mode) = op.mode {
                        // SAFETY: valid path through the magic link to the regular file.
                        if unsafe { libc::chmod(p.as_cstr().as_ptr(), mode) } < 0 {
                            let e = sys::errno();
                            sys::close(fd);
                            return Err((e, 2, i));
                        }
                    }
                    for (k, v) in &op.xattrs {
                        // SAFETY: valid strings and buffer.
                        let r = unsafe {
                            libc::setxattr(
                                p.as_cstr().as_ptr(),
                                k.as_ptr(),
                                v.as_ptr().cast(),
                                v.len(),
                                0,
                            )
                        };
                        if r < 0 {
                            let e = sys::errno();
                            sys::close(fd);
                            return Err((e, 3, i));
                        }
                    }
                }
            }
        }
        sys::close(fd);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removes_deep_and_locked_trees() {
        let base = std::env::temp_dir().join(format!("rootbox-rmtree-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        let mut p = base.join("t");
        std::fs::create_dir_all(&p).unwrap();
        for i in 0..300 {
            p = p.join(format!("d{i}"));
            std::fs::create_dir(&p).unwrap();
            std::fs::write(p.join("f"), b"x").unwrap();
        }
        // A directory we cannot write or enter until it is chmodded.
        let locked = base.join("t/locked");
        std::fs::create_dir(&locked).unwrap();
        std::fs::write(locked.join("g"), b"y").unwrap();
        std::os::unix::fs::symlink("/etc", locked.join("etc")).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o000)).unwrap();
        let fd = open_path(&base).unwrap();
        remove_tree_at(fd.as_raw_fd(), c"t").unwrap();
        assert!(!base.join("t").exists());
        assert!(Path::new("/etc/passwd").exists());
        std::fs::remove_dir(&base).unwrap();
    }
}

//! The code that runs in the cloned child, between clone and exec.
//!
//! The caller may be a multithreaded host (Python, a C program): the child is a copy of one
//! thread, and another thread may have held the allocator's or any other lock at the time of the
//! clone. So everything here is async-signal-safe: raw system calls over the plan that the parent
//! built (`plan.rs`), stack buffers, no allocation, no formatting, no lock, no panic path. Errors
//! travel back to the parent as (step, index, errno) over the sync socket and are worded there.
//!
//! The order follows bubblewrap and runc: wait for the id mapping, mounts prepared as detached
//! trees while the host is still visible, pivot_root, mounts attached, masked and read-only paths,
//! the process's cwd, the executable looked up, then rlimits, user, capabilities, no_new_privs,
//! fds, signals and, last before exec, seccomp.

use std::convert::Infallible;
use std::ffi::CStr;
use std::os::fd::RawFd;

use super::plan::{ChildPlan, Fallback, MountKind, MountPlan, ProcessPlan};
use super::sync::{self, Msg};
use crate::rootfs::{overlay, LayeredMount, LayeredPlan};
use crate::sys::{self, StackPath};

/// Defines [`Step`] (numbered from 1, as the parent reads them back) and its list, from one
/// list of names.
macro_rules! steps {
    ($first:ident, $($name:ident),+ $(,)?) => {
        /// A setup step, reported with an error so the parent can say what failed.
        #[repr(u32)]
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum Step {
            $first = 1,
            $($name,)+
        }

        impl Step {
            const ALL: &'static [Step] = &[Step::$first, $(Step::$name,)+];
        }
    };
}

steps!(
    WaitMapping,
    TimeNamespace,
    Hostname,
    Propagation,
    PrepareMount,
    BindRootfs,
    HookPause,
    PivotRoot,
    AttachMount,
    DevSymlink,
    MaskPath,
    Sysctl,
    ReadonlyPath,
    ReadonlyRoot,
    OomScore,
    Chdir,
    FindExecutable,
    Tty,
    Ready,
    StartFifo,
    Init,
    Rlimit,
    Capabilities,
    Groups,
    SetGid,
    SetUid,
    NoNewPrivs,
    Seccomp,
    Exec,
    JoinNamespaces,
    Fork,
    Stdio,
    Signals,
    MountPoint,
    MountLayers,
);

impl Step {
    pub fn from_u32(v: u32) -> Option<Step> {
        Step::ALL.iter().copied().find(|s| *s as u32 == v)
    }
}

/// A failure in the child: which step, which item of the plan, and the errno.
pub type Fail = (Step, u32, i32);

fn at(step: Step, index: usize) -> impl FnOnce(i32) -> Fail {
    move |e| (step, index as u32, e)
}

fn check(r: libc::c_int) -> Result<libc::c_int, i32> {
    if r < 0 {
        Err(sys::errno())
    } else {
        Ok(r)
    }
}

/// Per-launch state the child may write to: fds of detached mounts, preallocated by the parent.
pub struct Ctx<'a> {
    pub sync: RawFd,
    pub fifo: Option<RawFd>,
    pub stdio: Option<[RawFd; 3]>,
    pub preserve_fds: u32,
    pub kill_on_parent_death: bool,
    pub mount_fds: &'a mut [RawFd],
}

/// Entry point of the container's first process. Never returns.
pub fn run(plan: &ChildPlan, ctx: &mut Ctx<'_>) -> ! {
    let err = match setup(plan, ctx) {
        Ok(never) => match never {},
        Err(e) => e,
    };
    report_and_exit(ctx.sync, err, &plan.process)
}

/// The first process of a container that joins an existing user namespace (and network
/// namespace): this intermediate process enters them, then forks the container's process
/// with the remaining new namespaces (a pid namespace takes effect only for children) as a
/// child of the launcher (`CLONE_PARENT`), sends its pid and exits. Only system calls.
pub fn run_joined(user_fd: RawFd, net_fd: Option<RawFd>, plan: &ChildPlan, ctx: &mut Ctx<'_>) -> ! {
    if let Err(e) = sys::setns(user_fd, libc::CLONE_NEWUSER) {
        report_and_exit(ctx.sync, (Step::JoinNamespaces, 0, e), &plan.process);
    }
    if let Some(fd) = net_fd {
        if let Err(e) = sys::setns(fd, libc::CLONE_NEWNET) {
            report_and_exit(ctx.sync, (Step::JoinNamespaces, 1, e), &plan.process);
        }
    }
    sys::close(user_fd);
    if let Some(fd) = net_fd {
        sys::close(fd);
    }
    // SAFETY: fork-like clone of this single-threaded process.
    let pid = match unsafe { sys::clone_legacy(plan.clone_flags | libc::CLONE_PARENT as u64) } {
        Ok(pid) => pid,
        Err(e) => report_and_exit(ctx.sync, (Step::Fork, 0, e), &plan.process),
    };
    if pid > 0 {
        let msg = Msg {
            kind: sync::CHILD_PID,
            step: 0,
            index: 0,
            value: pid,
        };
        let _ = sync::send(ctx.sync, &msg, None);
        // SAFETY: the intermediate process is done.
        unsafe { libc::_exit(0) };
    }
    run(plan, ctx)
}

/// Sends the failure to the parent (or, if it is gone, writes a line to stderr) and exits with
/// Docker's codes: 127 for a missing executable, 126 for one that cannot be executed.
pub fn report_and_exit(sync_fd: RawFd, (step, index, errno): Fail, pp: &ProcessPlan) -> ! {
    let msg = Msg {
        kind: sync::CHILD_ERROR,
        step: step as u32,
        index,
        value: errno,
    };
    if sync::send(sync_fd, &msg, None).is_err() {
        let mut line = StackPath::new();
        let _ = line.push_bytes(b"rootbox: container process failed at step ");
        let _ = line.push_u64(step as u64);
        let _ = line.push_bytes(b" (");
        let _ = line.push_bytes(pp.exec_name.as_bytes());
        let _ = line.push_bytes(b"): errno ");
        let _ = line.push_u64(errno as u64);
        let _ = line.push_bytes(b"\n");
        let _ = sys::write_all(2, line.as_bytes());
    }
    let code = exit_code_of(step, errno);
    // SAFETY: _exit is async-signal-safe and skips the host's atexit handlers and destructors.
    unsafe { libc::_exit(code) }
}

/// The exit code of a container process that failed at `step` with `errno`: 127 when the
/// command is missing, 126 when it cannot be executed, else 125.
pub const fn exit_code_of(step: Step, errno: i32) -> i32 {
    match (step, errno) {
        (Step::FindExecutable | Step::Exec, libc::ENOENT) => 127,
        (Step::FindExecutable | Step::Exec, _) => 126,
        _ => 125,
    }
}

/// Until the process is set up, it dies with the thread that launched it: a killed runtime
/// leaves no half-made container behind.
fn die_with_parent() {
    // SAFETY: prctl with integer arguments.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) };
}

/// Once ready: a container that outlives its launcher (`create`, detached runs) stops dying
/// with it. (Foreground runs set it again after the uid change, which clears it.)
fn outlive_parent_if_wanted(ctx: &Ctx<'_>) {
    if ctx.fifo.is_some() || !ctx.kill_on_parent_death {
        // SAFETY: prctl with integer arguments.
        unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, 0, 0, 0, 0) };
    }
}

fn setup(p: &ChildPlan, ctx: &mut Ctx<'_>) -> Result<Infallible, Fail> {
    die_with_parent();
    // 1. Wait until the parent has written our uid/gid maps.
    match sync::recv(ctx.sync) {
        Ok(Some((m, _))) if m.kind == sync::PARENT_MAPPED => {}
        // SAFETY: the parent aborted the launch (and reported why); leave quietly.
        _ => unsafe { libc::_exit(125) },
    }
    // Nothing of the container runs yet in this pid namespace, so this process stays dumpable
    // (OCI hooks join its namespaces through a pidfd); `exec`'s joining process is the one made
    // non-dumpable (see `run_exec`).
    if p.new_time_ns {
        // SAFETY: unshare with a flag value; affects only this process's children and exec.
        check(unsafe { libc::unshare(sys::CLONE_NEWTIME as libc::c_int) })
            .map_err(at(Step::TimeNamespace, 0))?;
        if let Some(off) = &p.time_offsets {
            write_file(c"/proc/self/timens_offsets", off.to_bytes())
                .map_err(at(Step::TimeNamespace, 0))?;
        }
    }
    if let Some(h) = &p.hostname {
        // SAFETY: valid buffer and length.
        check(unsafe { libc::sethostname(h.as_ptr(), h.as_bytes().len()) })
            .map_err(at(Step::Hostname, 0))?;
    }
    if let Some(d) = &p.domainname {
        // SAFETY: valid buffer and length.
        check(unsafe { libc::setdomainname(d.as_ptr(), d.as_bytes().len()) })
            .map_err(at(Step::Hostname, 1))?;
    }

    // 2. Stop mount events from flowing back to the host, then prepare every mount as a
    //    detached tree while host paths (and a visible /proc, /sys) are still reachable.
    sys::mount(None, c"/", None, p.propagation, None).map_err(at(Step::Propagation, 0))?;
    for (i, m) in p.mounts.iter().enumerate() {
        let fd = prepare_mount(m).map_err(at(Step::PrepareMount, i))?;
        if let Some(slot) = ctx.mount_fds.get_mut(i) {
            *slot = fd;
        }
    }
    if let Some(l) = &p.layered {
        mount_layers(l, &p.rootfs).map_err(at(Step::MountLayers, 0))?;
    }
    sys::mount(
        Some(&p.rootfs),
        &p.rootfs,
        None,
        libc::MS_BIND | libc::MS_REC,
        None,
    )
    .map_err(at(Step::BindRootfs, 0))?;

    if p.hook_pause {
        sync::send(ctx.sync, &Msg::new(sync::CHILD_HOOKS), None).map_err(at(Step::HookPause, 0))?;
        match sync::recv(ctx.sync) {
            Ok(Some((m, _))) if m.kind == sync::PARENT_CONTINUE => {}
            // SAFETY: the parent aborted (a hook failed and it reported it).
            _ => unsafe { libc::_exit(125) },
        }
    }

    // 3. Enter the root filesystem.
    // SAFETY: chdir with a valid path.
    check(unsafe { libc::chdir(p.rootfs.as_ptr()) }).map_err(at(Step::PivotRoot, 0))?;
    if p.no_pivot {
        sys::mount(Some(c"."), c"/", None, libc::MS_MOVE, None).map_err(at(Step::PivotRoot, 1))?;
        // SAFETY: chroot with a valid path.
        check(unsafe { libc::chroot(c".".as_ptr()) }).map_err(at(Step::PivotRoot, 2))?;
    } else {
        sys::pivot_root(c".", c".").map_err(at(Step::PivotRoot, 3))?;
        sys::umount2(c".", libc::MNT_DETACH).map_err(at(Step::PivotRoot, 4))?;
    }
    // SAFETY: chdir with a valid path.
    check(unsafe { libc::chdir(c"/".as_ptr()) }).map_err(at(Step::PivotRoot, 5))?;

    // 4. Attach the prepared mounts, in config order (so /dev comes before /dev/pts).
    for (i, m) in p.mounts.iter().enumerate() {
        let fd = ctx.mount_fds.get(i).copied().unwrap_or(-1);
        if fd < 0 {
            continue;
        }
        ensure_dest(&m.dest, m.dest_is_file).map_err(at(Step::MountPoint, i))?;
        // After pivot_root every lookup stays inside the container's root, so a bind mount
        // may follow a symlink at its destination (Docker's `/var/run` -> `/run`); the kernel
        // filesystems (proc, sysfs, ...) never do: a symlink there is refused (CVE-2019-19921).
        let follow = match m.kind {
            MountKind::Bind => sys::MOVE_MOUNT_T_SYMLINKS,
            MountKind::Fresh => 0,
        };
        sys::move_mount(fd, &m.dest, follow).map_err(at(Step::AttachMount, i))?;
        sys::close(fd);
    }
    for (i, (target, link)) in p.dev_symlinks.iter().enumerate() {
        // SAFETY: valid NUL-terminated strings.
        let r = unsafe { libc::symlink(target.as_ptr(), link.as_ptr()) };
        if r < 0 && sys::errno() != libc::EEXIST {
            return Err((Step::DevSymlink, i as u32, sys::errno()));
        }
    }

    // 5. Masked paths, sysctls, read-only paths, read-only root.
    for (i, path) in p.masked.iter().enumerate() {
        mask_path(path).map_err(at(Step::MaskPath, i))?;
    }
    for (i, (path, value)) in p.sysctls.iter().enumerate() {
        write_file(path, value.to_bytes()).map_err(at(Step::Sysctl, i))?;
    }
    for (i, path) in p.readonly_paths.iter().enumerate() {
        readonly_path(path).map_err(at(Step::ReadonlyPath, i))?;
    }
    if p.readonly_root {
        let attr = sys::MountAttr {
            attr_set: sys::MOUNT_ATTR_RDONLY,
            ..Default::default()
        };
        sys::mount_setattr(libc::AT_FDCWD, c"/", 0, &attr).map_err(at(Step::ReadonlyRoot, 0))?;
    }

    // 6. The process: cwd, executable, terminal; then tell the parent we are ready.
    // The death signal is dropped BEFORE the parent hears "ready": a `create` that exits right
    // after must not take the container with it.
    let chosen = prepare_process(&p.process, ctx)?;
    outlive_parent_if_wanted(ctx);
    sync::send(ctx.sync, &Msg::new(sync::CHILD_READY), None).map_err(at(Step::Ready, 0))?;

    // 7. `create`: block until `start` opens the fifo.
    if let Some(fifo) = ctx.fifo {
        wait_start(fifo).map_err(at(Step::StartFifo, 0))?;
    }
    if p.init {
        become_init_or_continue().map_err(at(Step::Init, 0))?;
    }
    exec_process(&p.process, ctx, chosen)
}

/// The errno-like value reported when fuse-overlayfs exits with an error.
pub const FUSE_FAILED: i32 = -1;

/// Mounts the layered rootfs on `rootfs`, in our (private) mount namespace.
fn mount_layers(l: &LayeredPlan, rootfs: &CStr) -> Result<(), i32> {
    match &l.mount {
        LayeredMount::Overlay(m) => overlay::mount(m, rootfs),
        LayeredMount::Bind(copy) => {
            sys::mount(Some(copy), rootfs, None, libc::MS_BIND | libc::MS_REC, None)
        }
        LayeredMount::Fuse(f) => {
            // A shared bind of the mount point carries the mount fuse-overlayfs makes in its
            // own mount namespace over to ours (see `rootfs::fuse`).
            sys::mount(
                Some(rootfs),
                rootfs,
                None,
                libc::MS_BIND | libc::MS_REC,
                None,
            )?;
            sys::mount(None, rootfs, None, libc::MS_SHARED, None)?;
            // Its stderr goes to a pipe, shown only when it fails (it chatters otherwise).
            let mut pipe = [0 as RawFd; 2];
            // SAFETY: pipe2 fills the array with two fresh descriptors.
            check(unsafe { libc::pipe2(pipe.as_mut_ptr(), libc::O_CLOEXEC) })?;
            // SAFETY: fork-like clone of this single-threaded child; the fork only makes
            // system calls and execs or exits.
            let pid = match unsafe { sys::clone_legacy(0) } {
                Ok(pid) => pid,
                Err(e) => {
                    sys::close(pipe[0]);
                    sys::close(pipe[1]);
                    return Err(e);
                }
            };
            if pid == 0 {
                // SAFETY: dup2/unshare/execve over strings the parent prepared; _exit on failure.
                unsafe {
                    if libc::dup2(pipe[1], 2) == 2
                        && libc::unshare(libc::CLONE_NEWNS) == 0
                        && reset_signals().is_ok()
                    {
                        libc::execve(f.path.as_ptr(), f.argv.as_ptr(), f.envp.as_ptr());
                    }
                    libc::_exit(127)
                }
            }
            sys::close(pipe[1]);
            let mut st = 0;
            loop {
                // SAFETY: waiting for our own child with a valid status pointer.
                let r = unsafe { libc::waitpid(pid, &mut st, 0) };
                if r == pid {
                    break;
                }
                if sys::errno() != libc::EINTR {
                    sys::close(pipe[0]);
                    return Err(sys::errno());
                }
            }
            if !libc::WIFEXITED(st) || libc::WEXITSTATUS(st) != 0 {
                // Its message to our stderr (the caller's); reported as "fuse-overlayfs failed".
                let mut buf = [0u8; 2048];
                // SAFETY: reading into a buffer we own.
                let n = unsafe { libc::read(pipe[0], buf.as_mut_ptr().cast(), buf.len()) };
                if n > 0 {
                    let _ = sys::write_all(2, b"fuse-overlayfs: ");
                    let _ = sys::write_all(2, &buf[..n as usize]);
                }
                sys::close(pipe[0]);
                return Err(FUSE_FAILED);
            }
            sys::close(pipe[0]);
            sys::mount(None, rootfs, None, libc::MS_PRIVATE | libc::MS_REC, None)
        }
    }
}

fn prepare_mount(m: &MountPlan) -> Result<RawFd, i32> {
    match m.kind {
        MountKind::Bind => bind_tree(&m.source, m.recursive, m.attrs),
        MountKind::Fresh => match fresh_mount(m) {
            Ok(fd) => Ok(fd),
            Err(e) => match m.fallback {
                Fallback::None => Err(e),
                Fallback::Skip => Ok(-1),
                Fallback::BindHost => bind_tree(&m.source, true, m.attrs | sys::MOUNT_ATTR_RDONLY),
            },
        },
    }
}

fn bind_tree(source: &CStr, recursive: bool, attrs: u64) -> Result<RawFd, i32> {
    let mut flags = sys::OPEN_TREE_CLONE | libc::O_CLOEXEC as u32;
    if recursive {
        flags |= sys::AT_RECURSIVE;
    }
    let fd = sys::open_tree(libc::AT_FDCWD, source, flags)?;
    if attrs != 0 {
        let mut attr = sys::MountAttr {
            attr_set: attrs,
            ..Default::default()
        };
        if attrs & sys::MOUNT_ATTR__ATIME != 0 {
            attr.attr_clr = sys::MOUNT_ATTR__ATIME;
        }
        let at_flags = libc::AT_EMPTY_PATH as u32 | if recursive { sys::AT_RECURSIVE } else { 0 };
        if let Err(e) = sys::mount_setattr(fd, c"", at_flags, &attr) {
            sys::close(fd);
            return Err(e);
        }
    }
    Ok(fd)
}

fn fresh_mount(m: &MountPlan) -> Result<RawFd, i32> {
    let fs = sys::fsopen(&m.fstype)?;
    let result = (|| {
        for (k, v) in &m.params {
            match v {
                Some(v) => sys::fsconfig_string(fs, k, v)?,
                None => sys::fsconfig_flag(fs, k)?,
            }
        }
        sys::fsconfig_create(fs)?;
        sys::fsmount(fs, m.attrs)
    })();
    sys::close(fs);
    result
}

/// Creates a mount destination (and its parents) inside the container's root.
fn ensure_dest(dest: &CStr, is_file: bool) -> Result<(), i32> {
    let bytes = dest.to_bytes();
    let mut prefix = StackPath::new();
    for (i, b) in bytes.iter().enumerate() {
        if *b == b'/' && i > 0 {
            prefix.clear();
            prefix.push_bytes(&bytes[..i])?;
            mkdir_ok(prefix.as_cstr())?;
        }
    }
    if is_file {
        // An existing entry is used as it is (opening it for writing would copy it up into an
        // overlay's upper layer).
        let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
        // SAFETY: valid path and stat buffer.
        if unsafe { libc::lstat(dest.as_ptr(), st.as_mut_ptr()) } == 0 {
            return Ok(());
        }
        // SAFETY: valid path; O_NOFOLLOW so a symlink at the destination is never followed.
        let fd = unsafe {
            libc::open(
                dest.as_ptr(),
                libc::O_CREAT | libc::O_WRONLY | libc::O_CLOEXEC | libc::O_NOFOLLOW,
                0o644,
            )
        };
        if fd >= 0 {
            sys::close(fd);
            return Ok(());
        }
        let e = sys::errno();
        // EEXIST-like results (a device node, a read-only existing file) are fine: we mount on it.
        let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
        // SAFETY: valid path and stat buffer.
        if unsafe { libc::lstat(dest.as_ptr(), st.as_mut_ptr()) } == 0 {
            return Ok(());
        }
        return Err(e);
    }
    mkdir_ok(dest)
}

fn mkdir_ok(path: &CStr) -> Result<(), i32> {
    // SAFETY: valid NUL-terminated path.
    if unsafe { libc::mkdir(path.as_ptr(), 0o755) } == 0 {
        return Ok(());
    }
    match sys::errno() {
        libc::EEXIST => Ok(()),
        // A read-only directory that already holds the entry is fine too.
        e @ (libc::EROFS | libc::EACCES | libc::EPERM) => {
            let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
            // SAFETY: valid path and stat buffer.
            if unsafe { libc::stat(path.as_ptr(), st.as_mut_ptr()) } == 0 {
                Ok(())
            } else {
                Err(e)
            }
        }
        e => Err(e),
    }
}

fn mask_path(path: &CStr) -> Result<(), i32> {
    let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: valid path and stat buffer.
    if unsafe { libc::stat(path.as_ptr(), st.as_mut_ptr()) } < 0 {
        return match sys::errno() {
            libc::ENOENT | libc::ENOTDIR => Ok(()),
            e => Err(e),
        };
    }
    // SAFETY: stat succeeded, so the buffer is initialised.
    let st = unsafe { st.assume_init() };
    if st.st_mode & libc::S_IFMT == libc::S_IFDIR {
        sys::mount(
            Some(c"tmpfs"),
            path,
            Some(c"tmpfs"),
            libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
            Some(c"size=0k"),
        )
    } else {
        sys::mount(Some(c"/dev/null"), path, None, libc::MS_BIND, None)
    }
}

fn readonly_path(path: &CStr) -> Result<(), i32> {
    match sys::mount(Some(path), path, None, libc::MS_BIND | libc::MS_REC, None) {
        Ok(()) => {}
        Err(libc::ENOENT) | Err(libc::ENOTDIR) => return Ok(()),
        Err(e) => return Err(e),
    }
    let attr = sys::MountAttr {
        attr_set: sys::MOUNT_ATTR_RDONLY,
        ..Default::default()
    };
    sys::mount_setattr(libc::AT_FDCWD, path, sys::AT_RECURSIVE, &attr)
}

fn write_file(path: &CStr, data: &[u8]) -> Result<(), i32> {
    // SAFETY: valid path.
    let fd = check(unsafe { libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC) })?;
    let r = sys::write_all(fd, data);
    sys::close(fd);
    r
}

fn wait_start(fifo: RawFd) -> Result<(), i32> {
    let mut path = StackPath::new();
    sys::proc_fd_path(&mut path, fifo)?;
    // Blocks until `start` opens the fifo for reading.
    // SAFETY: valid path; reopening our O_PATH fd of the fifo for writing.
    let fd =
        check(unsafe { libc::open(path.as_cstr().as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC) })?;
    let r = sys::write_all(fd, b"0");
    sys::close(fd);
    sys::close(fifo);
    r
}

/// cwd (created when missing, like Docker's WORKDIR, and checked to be inside the container),
/// the executable's lookup in `PATH`, and stdio or the terminal. Returns the chosen candidate.
pub fn prepare_process(pp: &ProcessPlan, ctx: &Ctx<'_>) -> Result<usize, Fail> {
    // SAFETY: umask cannot fail.
    unsafe { libc::umask(pp.umask) };
    if let Some(adj) = &pp.oom_score_adj {
        write_file(c"/proc/self/oom_score_adj", adj.to_bytes()).map_err(at(Step::OomScore, 0))?;
    }
    // SAFETY: chdir with a valid path.
    if unsafe { libc::chdir(pp.cwd.as_ptr()) } < 0 {
        let e = sys::errno();
        if e != libc::ENOENT || !pp.create_cwd {
            return Err((Step::Chdir, 0, e));
        }
        ensure_dest(&pp.cwd, false).map_err(at(Step::Chdir, 0))?;
        // SAFETY: chdir with a valid path.
        check(unsafe { libc::chdir(pp.cwd.as_ptr()) }).map_err(at(Step::Chdir, 0))?;
    }
    // The cwd must be reachable from the container's root (CVE-2024-21626): getcwd fails or
    // returns "(unreachable)..." when it is not.
    let mut buf = [0u8; 4096];
    // SAFETY: `buf` is writable for its length.
    let r = unsafe { libc::getcwd(buf.as_mut_ptr().cast(), buf.len()) };
    if r.is_null() || buf[0] != b'/' {
        return Err((Step::Chdir, 1, libc::EPERM));
    }

    let mut chosen = None;
    let mut err = libc::ENOENT;
    for (i, c) in pp.exec_candidates.iter().enumerate() {
        let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
        // SAFETY: valid path and stat buffer.
        if unsafe { libc::stat(c.as_ptr(), st.as_mut_ptr()) } < 0 {
            let e = sys::errno();
            if e != libc::ENOENT && e != libc::ENOTDIR {
                err = e;
            }
            continue;
        }
        // SAFETY: stat succeeded.
        let st = unsafe { st.assume_init() };
        if st.st_mode & libc::S_IFMT == libc::S_IFREG && st.st_mode & 0o111 != 0 {
            chosen = Some(i);
            break;
        }
        err = libc::EACCES;
    }
    let chosen = chosen.ok_or((Step::FindExecutable, 0, err))?;

    if pp.tty {
        setup_tty(pp, ctx.sync).map_err(at(Step::Tty, 0))?;
    } else {
        // A session of its own: Ctrl-C on the caller's terminal reaches the runtime, which
        // forwards it once, rather than the whole process group twice.
        // SAFETY: setsid has no arguments; failing (already a leader) is harmless.
        unsafe { libc::setsid() };
    }
    if let (false, Some(stdio)) = (pp.tty, ctx.stdio) {
        for (target, fd) in stdio.iter().enumerate() {
            if *fd >= 0 && *fd != target as RawFd {
                // SAFETY: dup2 onto the standard descriptors.
                check(unsafe { libc::dup2(*fd, target as RawFd) })
                    .map_err(at(Step::Stdio, target))?;
            }
        }
    }
    Ok(chosen)
}

/// Opens a pty in the container's devpts, sends the master to the parent, and makes the slave
/// our controlling terminal and stdio.
fn setup_tty(pp: &ProcessPlan, sync_fd: RawFd) -> Result<(), i32> {
    // SAFETY: valid path.
    let master = check(unsafe {
        libc::open(
            c"/dev/ptmx".as_ptr(),
            libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
        )
    })?;
    let unlock: libc::c_int = 0;
    // SAFETY: TIOCSPTLCK takes a pointer to an int.
    check(unsafe { libc::ioctl(master, libc::TIOCSPTLCK, &unlock) })?;
    // SAFETY: TIOCGPTPEER takes open flags and returns a new fd for the slave.
    let slave =
        check(unsafe { libc::ioctl(master, libc::TIOCGPTPEER, libc::O_RDWR | libc::O_NOCTTY) })?;
    if let Some((rows, cols)) = pp.console_size {
        let ws = libc::winsize {
            ws_row: rows,
            ws_col: cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCSWINSZ takes a pointer to a winsize.
        unsafe { libc::ioctl(slave, libc::TIOCSWINSZ, &ws) };
    }
    sync::send(sync_fd, &Msg::new(sync::CHILD_PTY), Some(master))?;
    sys::close(master);
    // SAFETY: setsid/ioctl/dup2 on fds we own.
    unsafe {
        check(libc::setsid())?;
        check(libc::ioctl(slave, libc::TIOCSCTTY, 0))?;
        for t in 0..3 {
            check(libc::dup2(slave, t))?;
        }
    }
    if slave > 2 {
        sys::close(slave);
    }
    Ok(())
}

/// `--init`: fork; the parent stays as PID 1, reaping zombies and forwarding signals to the
/// command; the child returns and goes on to exec the command.
fn become_init_or_continue() -> Result<(), i32> {
    // SAFETY: fork-like clone of this single-threaded child; both sides only make system calls.
    let pid = unsafe { sys::clone_legacy(0) }?;
    if pid == 0 {
        return Ok(());
    }
    init_loop(pid)
}

fn init_loop(main: libc::pid_t) -> ! {
    // The init keeps no descriptor but stdio: the sync socket must reach EOF when the command
    // execs. It keeps no privilege either.
    let _ = sys::close_range(3, u32::MAX, 0);
    // SAFETY: prctl and capset with valid arguments; failures leave us merely more privileged
    // inside the container's user namespace, never outside it.
    unsafe {
        libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
        let mut hdr = CapHeader {
            version: LINUX_CAPABILITY_VERSION_3,
            pid: 0,
        };
        let data = [CapData::default(); 2];
        libc::syscall(libc::SYS_capset, &mut hdr, data.as_ptr());
    }
    // All signals are blocked (the parent blocked them around clone): wait for them here.
    // SAFETY: sigset operations on a local set.
    let mut all: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    unsafe { libc::sigfillset(&mut all) };
    let mut status_code: Option<i32> = None;
    loop {
        // SAFETY: an all-zero siginfo is a valid out-buffer.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: valid set and out-buffer.
        let sig = unsafe { libc::sigwaitinfo(&all, &mut info) };
        if sig < 0 {
            continue;
        }
        if sig == libc::SIGCHLD {
            loop {
                let mut st = 0;
                // SAFETY: valid status pointer.
                let pid = unsafe { libc::waitpid(-1, &mut st, libc::WNOHANG) };
                if pid <= 0 {
                    break;
                }
                if pid == main {
                    status_code = Some(if libc::WIFEXITED(st) {
                        libc::WEXITSTATUS(st)
                    } else {
                        128 + libc::WTERMSIG(st)
                    });
                }
            }
            if let Some(code) = status_code {
                // SAFETY: _exit ends the init (and so the pid namespace).
                unsafe { libc::_exit(code) };
            }
        } else {
            // SAFETY: forwarding a signal to our own child.
            unsafe { libc::kill(main, sig) };
        }
    }
}

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;

/// rlimits, user and groups, capabilities, no_new_privs, fds, signals, seccomp, exec.
pub fn exec_process(pp: &ProcessPlan, ctx: &Ctx<'_>, chosen: usize) -> Result<Infallible, Fail> {
    for (i, (res, lim)) in pp.rlimits.iter().enumerate() {
        // SAFETY: valid rlimit struct. (The `as _` bridges glibc's enum type for the resource.)
        check(unsafe { libc::setrlimit(*res as _, lim) }).map_err(at(Step::Rlimit, i))?;
    }
    let caps = &pp.caps;
    for c in 0..=caps.last_cap {
        if caps.bounding & (1u64 << c) == 0 {
            // SAFETY: prctl with integer arguments.
            let r = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, c as libc::c_ulong, 0, 0, 0) };
            if r < 0 && sys::errno() != libc::EINVAL {
                return Err((Step::Capabilities, c as u32, sys::errno()));
            }
        }
    }
    // Without no_new_privs, seccomp needs CAP_SYS_ADMIN (in our namespace): load it now.
    if !pp.no_new_privs {
        if let Some(prog) = &pp.seccomp {
            // SAFETY: loading a filter the parent compiled.
            unsafe { crate::seccomp::install(prog, 0) }.map_err(at(Step::Seccomp, 0))?;
        }
    }
    // Raw system calls, not glibc's wrappers: glibc's setuid family broadcasts the change to
    // every thread it knows of, taking internal locks that another thread of the host may have
    // held at clone time — in this one-thread copy that would wait forever.
    // SAFETY: the calls below change only this process's credentials.
    unsafe {
        check(libc::prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0))
            .map_err(at(Step::Capabilities, 100))?;
        if pp.groups.is_empty() {
            // Denied when setgroups is disabled (single-id mapping): nothing to drop then.
            let r = libc::syscall(libc::SYS_setgroups, 0, std::ptr::null::<libc::gid_t>())
                as libc::c_int;
            if r < 0 && sys::errno() != libc::EPERM {
                return Err((Step::Groups, 0, sys::errno()));
            }
        } else {
            check(
                libc::syscall(libc::SYS_setgroups, pp.groups.len(), pp.groups.as_ptr())
                    as libc::c_int,
            )
            .map_err(at(Step::Groups, 0))?;
        }
        check(libc::syscall(libc::SYS_setresgid, pp.gid, pp.gid, pp.gid) as libc::c_int)
            .map_err(at(Step::SetGid, 0))?;
        check(libc::syscall(libc::SYS_setresuid, pp.uid, pp.uid, pp.uid) as libc::c_int)
            .map_err(at(Step::SetUid, 0))?;
        check(libc::prctl(libc::PR_SET_KEEPCAPS, 0, 0, 0, 0))
            .map_err(at(Step::Capabilities, 101))?;
        let mut hdr = CapHeader {
            version: LINUX_CAPABILITY_VERSION_3,
            pid: 0,
        };
        let data = [
            CapData {
                effective: caps.effective as u32,
                permitted: caps.permitted as u32,
                inheritable: caps.inheritable as u32,
            },
            CapData {
                effective: (caps.effective >> 32) as u32,
                permitted: (caps.permitted >> 32) as u32,
                inheritable: (caps.inheritable >> 32) as u32,
            },
        ];
        if libc::syscall(libc::SYS_capset, &mut hdr, data.as_ptr()) < 0 {
            return Err((Step::Capabilities, 102, sys::errno()));
        }
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL,
            0,
            0,
            0,
        );
        for c in 0..=caps.last_cap {
            // Like runc: an ambient capability that is not also inheritable and permitted
            // cannot be raised; it is skipped, not fatal.
            if caps.ambient & caps.inheritable & caps.permitted & (1u64 << c) != 0 {
                libc::prctl(
                    libc::PR_CAP_AMBIENT,
                    libc::PR_CAP_AMBIENT_RAISE,
                    c as libc::c_ulong,
                    0,
                    0,
                );
            }
        }
        // Set after the uid change, which clears it.
        if ctx.kill_on_parent_death {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0);
        }
        if pp.no_new_privs {
            check(libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0))
                .map_err(at(Step::NoNewPrivs, 0))?;
        }
    }
    // No descriptor of the host crosses exec but stdio and the preserved ones.
    let keep_to = 3 + ctx.preserve_fds;
    if sys::close_range(keep_to, u32::MAX, sys::CLOSE_RANGE_CLOEXEC).is_err() {
        for fd in keep_to..4096 {
            // SAFETY: setting FD_CLOEXEC on fds that may or may not be open.
            unsafe { libc::fcntl(fd as RawFd, libc::F_SETFD, libc::FD_CLOEXEC) };
        }
    }
    for fd in 3..keep_to {
        // SAFETY: clearing FD_CLOEXEC on a preserved fd.
        unsafe { libc::fcntl(fd as RawFd, libc::F_SETFD, 0) };
    }
    reset_signals().map_err(at(Step::Signals, 0))?;
    if pp.no_new_privs {
        if let Some(prog) = &pp.seccomp {
            // SAFETY: loading a filter the parent compiled; the last step before exec.
            unsafe { crate::seccomp::install(prog, 0) }.map_err(at(Step::Seccomp, 0))?;
        }
    }
    let path = pp
        .exec_candidates
        .get(chosen)
        .ok_or((Step::Exec, chosen as u32, libc::ENOENT))?;
    // SAFETY: argv and envp are NULL-terminated arrays of pointers into CStrings the plan owns.
    unsafe { libc::execve(path.as_ptr(), pp.argv.as_ptr(), pp.envp.as_ptr()) };
    Err((Step::Exec, chosen as u32, sys::errno()))
}

/// Default dispositions and an empty mask, so nothing the host ignored or blocked (Python
/// ignores SIGPIPE) leaks into the container's process.
fn reset_signals() -> Result<(), i32> {
    for sig in 1..=64 {
        if sig == libc::SIGKILL || sig == libc::SIGSTOP {
            continue;
        }
        // SAFETY: setting the default disposition; invalid numbers (32, 33 in glibc) just fail.
        unsafe { libc::signal(sig, libc::SIG_DFL) };
    }
    // SAFETY: sigset operations on a local set.
    unsafe {
        let mut empty: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut empty);
        check(libc::sigprocmask(
            libc::SIG_SETMASK,
            &empty,
            std::ptr::null_mut(),
        ))?;
    }
    Ok(())
}

/// Entry point of a process joining a running container (`exec`): join its namespaces, fork
/// into its pid namespace (the grandchild becomes the caller's child through CLONE_PARENT), and
/// exec. Never returns.
pub fn run_exec(pidfd: RawFd, ns_flags: libc::c_int, pp: &ProcessPlan, ctx: &mut Ctx<'_>) -> ! {
    // SAFETY: prctl with integer arguments: no one may ptrace or read us until exec.
    unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };
    if let Err(e) = sys::setns(pidfd, ns_flags) {
        report_and_exit(ctx.sync, (Step::JoinNamespaces, 0, e), pp);
    }
    // SAFETY: fork-like clone of this single-threaded process.
    let pid = match unsafe { sys::clone_legacy(libc::CLONE_PARENT as u64) } {
        Ok(pid) => pid,
        Err(e) => report_and_exit(ctx.sync, (Step::Fork, 0, e), pp),
    };
    if pid > 0 {
        let msg = Msg {
            kind: sync::CHILD_PID,
            step: 0,
            index: 0,
            value: pid,
        };
        let _ = sync::send(ctx.sync, &msg, None);
        // SAFETY: the intermediate process is done.
        unsafe { libc::_exit(0) };
    }
    die_with_parent();
    let err = match (|| {
        let chosen = prepare_process(pp, ctx)?;
        outlive_parent_if_wanted(ctx);
        sync::send(ctx.sync, &Msg::new(sync::CHILD_READY), None).map_err(at(Step::Ready, 0))?;
        exec_process(pp, ctx, chosen)
    })() {
        Ok(never) => match never {},
        Err(e) => e,
    };
    report_and_exit(ctx.sync, err, pp)
}

#[cfg(test)]
mod tests {
    use super::Step;

    #[test]
    fn every_step_reads_back_from_its_number() {
        assert_eq!(Step::ALL.len(), 35);
        for (i, s) in Step::ALL.iter().enumerate() {
            assert_eq!(*s as u32, i as u32 + 1);
            assert_eq!(Step::from_u32(*s as u32), Some(*s));
        }
        assert_eq!(Step::from_u32(0), None);
        assert_eq!(Step::from_u32(Step::ALL.len() as u32 + 1), None);
    }
}

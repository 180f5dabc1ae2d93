//! Launching a container's process: one clone with every namespace flag, the parent writing the
//! id maps, one socketpair for sync, and errors from the child sent back and worded here.
//!
//! Fork-safety rule: `plan.rs` computes and allocates everything in the parent; `child.rs` runs
//! between clone and exec using only system calls. That makes the launch safe from multithreaded
//! hosts (Python, C programs) — see the stress test in `tests/`.

pub mod child;
pub mod plan;
pub mod sync;

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{Process, Spec};

use crate::idmap;
use crate::sys;
use child::{Ctx, Step};

#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    #[error("invalid configuration: {0}")]
    Plan(String),
    #[error(transparent)]
    Seccomp(#[from] crate::seccomp::SeccompError),
    #[error(transparent)]
    IdMap(#[from] idmap::IdMapError),
    #[error("{what}: {source}")]
    Sys {
        what: String,
        source: std::io::Error,
    },
    /// The child failed before exec; `message` says what, with the path and errno.
    #[error("{message}")]
    Child {
        step: Step,
        errno: i32,
        message: String,
        exit_code: i32,
    },
    #[error("the container process exited during setup ({0})")]
    ChildDied(String),
    #[error(transparent)]
    Rootfs(#[from] crate::rootfs::RootfsError),
}

impl LaunchError {
    fn sys(what: impl Into<String>, errno: i32) -> Self {
        LaunchError::Sys {
            what: what.into(),
            source: std::io::Error::from_raw_os_error(errno),
        }
    }

    pub fn errno(&self) -> Option<i32> {
        match self {
            LaunchError::Sys { source, .. } => source.raw_os_error(),
            LaunchError::Child { errno, .. } => Some(*errno),
            LaunchError::Rootfs(e) => e.errno(),
            _ => None,
        }
    }

    /// The exit code a CLI should use: 127/126 for a missing/unexecutable command, else 125.
    pub fn exit_code(&self) -> i32 {
        match self {
            LaunchError::Child { exit_code, .. } => *exit_code,
            _ => 125,
        }
    }
}

/// What the caller chooses about a launch beyond the OCI config.
#[derive(Default)]
pub struct LaunchOptions<'a> {
    /// Descriptors for the process's stdin, stdout, stderr (default: inherited).
    pub stdio: Option<[RawFd; 3]>,
    /// Pass fds 3..3+N through to the process.
    pub preserve_fds: u32,
    /// `create` semantics: block before exec until this fifo is opened by `start`.
    pub start_fifo: Option<PathBuf>,
    /// Use MS_MOVE + chroot instead of pivot_root.
    pub no_pivot: bool,
    /// Kill the container when the launching thread dies (foreground CLI runs).
    pub kill_on_parent_death: bool,
    /// Called with the child's pid once namespaces exist and before pivot_root (OCI hooks).
    pub before_pivot: Option<&'a dyn Fn(i32) -> Result<(), String>>,
    /// The cgroup the process starts in (see [`CgroupEntry`]).
    pub cgroup: Option<CgroupEntry<'a>>,
}

/// A cgroup to start a process in: entered at clone time (`clone3` with `CLONE_INTO_CGROUP` and
/// this directory fd); where the kernel refuses that, the parent writes the child's pid to
/// `cgroup.procs` before releasing it, so it never runs a user instruction outside.
#[derive(Debug, Clone, Copy)]
pub struct CgroupEntry<'a> {
    /// The cgroup directory for `CLONE_INTO_CGROUP`; None: only the `cgroup.procs` way.
    pub dir_fd: Option<RawFd>,
    pub path: &'a Path,
}

/// Moves `pid` into the cgroup at `path` (the fallback of `CLONE_INTO_CGROUP`).
fn enter_cgroup(pid: i32, path: &Path) -> Result<(), LaunchError> {
    std::fs::write(path.join("cgroup.procs"), pid.to_string()).map_err(|e| LaunchError::Sys {
        what: format!(
            "moving the container process into cgroup {}",
            path.display()
        ),
        source: e,
    })
}

/// Strings to word a child's error with.
#[derive(Debug, Clone, Default)]
struct ErrorContext {
    mounts: Vec<(String, String)>,
    masked: Vec<String>,
    readonly: Vec<String>,
    sysctls: Vec<String>,
    cwd: String,
    exec_name: String,
    candidates: Vec<String>,
    uid: u32,
    gid: u32,
    rootfs: String,
    layers: String,
}

fn lossy(c: &CString) -> String {
    String::from_utf8_lossy(c.as_bytes()).into_owned()
}

impl ErrorContext {
    fn from_process(pp: &plan::ProcessPlan) -> Self {
        ErrorContext {
            cwd: lossy(&pp.cwd),
            exec_name: pp.exec_name.clone(),
            candidates: pp.exec_candidates.iter().map(lossy).collect(),
            uid: pp.uid,
            gid: pp.gid,
            ..Default::default()
        }
    }

    /// Whether mount `i`'s destination is a symbolic link in the rootfs (seen from the host).
    fn is_symlink_in_rootfs(&self, i: usize) -> bool {
        let Some((_, dest)) = self.mounts.get(i) else {
            return false;
        };
        let path = Path::new(&self.rootfs).join(dest.trim_start_matches('/'));
        std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink())
    }

    fn from_plan(p: &plan::ChildPlan) -> Self {
        let mut ctx = Self::from_process(&p.process);
        ctx.mounts = p
            .mounts
            .iter()
            .map(|m| {
                let what = match m.kind {
                    plan::MountKind::Bind => format!("bind {}", lossy(&m.source)),
                    plan::MountKind::Fresh => lossy(&m.fstype),
                };
                (what, lossy(&m.dest))
            })
            .collect();
        ctx.masked = p.masked.iter().map(lossy).collect();
        ctx.readonly = p.readonly_paths.iter().map(lossy).collect();
        ctx.sysctls = p.sysctls.iter().map(|(k, _)| lossy(k)).collect();
        ctx.rootfs = lossy(&p.rootfs);
        ctx.layers = p.layered.as_ref().map(|l| l.describe()).unwrap_or_default();
        ctx
    }

    fn describe(&self, step: Step, index: u32, errno: i32) -> String {
        let err = std::io::Error::from_raw_os_error(errno);
        let i = index as usize;
        let pick = |v: &Vec<String>| v.get(i).cloned().unwrap_or_default();
        match step {
            Step::FindExecutable if errno == libc::ENOENT => {
                if self.exec_name.contains('/') {
                    format!(
                        "exec: \"{0}\": stat {0}: no such file or directory",
                        self.exec_name
                    )
                } else {
                    format!(
                        "exec: \"{}\": executable file not found in $PATH",
                        self.exec_name
                    )
                }
            }
            Step::FindExecutable | Step::Exec if errno == libc::EACCES => {
                format!("exec: \"{}\": permission denied", self.exec_name)
            }
            Step::Exec => format!(
                "exec: \"{}\": {}",
                self.candidates.get(i).unwrap_or(&self.exec_name),
                err
            ),
            Step::AttachMount if errno == libc::EINVAL && self.is_symlink_in_rootfs(i) => {
                let (what, dest) = self.mounts.get(i).cloned().unwrap_or_default();
                format!(
                    "mount {what} on {dest}: refused, {dest} is a symbolic link in the container's \
                     root filesystem (mount points must be directories or files)"
                )
            }
            Step::PrepareMount | Step::AttachMount => {
                let (what, dest) = self.mounts.get(i).cloned().unwrap_or_default();
                format!("mount {what} on {dest}: {err}")
            }
            Step::MountPoint => {
                let (_, dest) = self.mounts.get(i).cloned().unwrap_or_default();
                format!("creating mount point {dest} in the rootfs: {err}")
            }
            Step::Chdir if index == 1 => format!(
                "working directory {} is outside the container's root",
                self.cwd
            ),
            Step::Chdir => format!("working directory {}: {err}", self.cwd),
            Step::MaskPath => format!("masking {}: {err}", pick(&self.masked)),
            Step::ReadonlyPath => format!("making {} read-only: {err}", pick(&self.readonly)),
            Step::Sysctl => format!("writing sysctl {}: {err}", pick(&self.sysctls)),
            Step::SetUid if errno == libc::EINVAL => format!(
                "user {} is not mapped in the container's user namespace (with a single-id mapping only uid 0 exists; use subordinate ids, --idmap subids)",
                self.uid
            ),
            Step::SetGid if errno == libc::EINVAL => format!(
                "group {} is not mapped in the container's user namespace (with a single-id mapping only gid 0 exists; use subordinate ids, --idmap subids)",
                self.gid
            ),
            Step::Groups => format!(
                "setting additional groups: {err} (not possible with a single-id mapping)"
            ),
            Step::BindRootfs => format!("bind-mounting the rootfs {}: {err}", self.rootfs),
            Step::MountLayers if errno == child::FUSE_FAILED => format!(
                "mounting the layered rootfs ({}) on {}: fuse-overlayfs failed (see its message above)",
                self.layers, self.rootfs
            ),
            Step::MountLayers => format!(
                "mounting the layered rootfs ({}) on {}: {err}{}",
                self.layers,
                self.rootfs,
                match errno {
                    libc::EPERM | libc::EINVAL | libc::ENODEV | libc::EACCES => {
                        "; upper and work must be on one filesystem that supports user xattrs (not NFS), or try --storage-driver fuse-overlayfs or vfs"
                    }
                    _ => "",
                }
            ),
            Step::PivotRoot => format!("pivot_root into {}: {err}", self.rootfs),
            Step::JoinNamespaces => format!("joining the container's namespaces: {err}"),
            other => format!("container setup failed at {other:?}: {err}"),
        }
    }
}

/// A launched container process, set up and ready (or already exec'd).
#[derive(Debug)]
pub struct Launched {
    pub pid: i32,
    pub pidfd: Option<OwnedFd>,
    /// The pty master when the process has a terminal.
    pub pty_master: Option<OwnedFd>,
    sync: OwnedFd,
    errors: ErrorContext,
}

impl Launched {
    /// The parent's end of the sync socket (for a supervisor that re-execs and reads the
    /// child's exec error itself; see [`child_error_from`]).
    pub fn sync_fd(&self) -> RawFd {
        self.sync.as_raw_fd()
    }

    /// Waits until the process has exec'd its command, or returns why it could not
    /// (the child has then exited; it is reaped here).
    pub fn wait_exec(&mut self) -> Result<(), LaunchError> {
        match sync::recv(self.sync.as_raw_fd()) {
            Ok(None) => Ok(()),
            Ok(Some((m, _))) if m.kind == sync::CHILD_ERROR => {
                let _ = wait_pid(self.pid);
                Err(child_error(&self.errors, m))
            }
            Ok(Some(_)) => Err(LaunchError::Plan(
                "unexpected message from the container process".into(),
            )),
            Err(e) => Err(LaunchError::sys("reading from the container process", e)),
        }
    }
}

/// The error a container process sent over its sync socket, worded from its config: for a
/// supervisor that no longer holds the [`Launched`] (the monitor after its re-exec).
pub fn child_error_from(spec: &Spec, m: sync::Msg) -> LaunchError {
    let errors = plan::child_plan(spec, false, false)
        .map(|p| ErrorContext::from_plan(&p))
        .unwrap_or_default();
    child_error(&errors, m)
}

fn child_error(errors: &ErrorContext, m: sync::Msg) -> LaunchError {
    let step = Step::from_u32(m.step).unwrap_or(Step::Exec);
    LaunchError::Child {
        step,
        errno: m.value,
        message: errors.describe(step, m.index, m.value),
        exit_code: child_exit_code(&m),
    }
}

/// The exit code of a container whose process sent `m` (a `CHILD_ERROR`): 127 when the
/// command is missing, 126 when it cannot be executed, else 125.
pub fn child_exit_code(m: &sync::Msg) -> i32 {
    child::exit_code_of(Step::from_u32(m.step).unwrap_or(Step::Exec), m.value)
}

/// Blocks every signal in the calling thread until dropped, so the child starts with all
/// signals blocked and none of the host's handlers can run in it before exec. (The network
/// helpers' clone uses it too.)
pub(crate) struct SignalsBlocked(libc::sigset_t);

impl SignalsBlocked {
    pub(crate) fn new() -> Self {
        // SAFETY: sigset operations on local sets; pthread_sigmask affects only this thread.
        unsafe {
            let mut all: libc::sigset_t = std::mem::zeroed();
            let mut old: libc::sigset_t = std::mem::zeroed();
            libc::sigfillset(&mut all);
            libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old);
            SignalsBlocked(old)
        }
    }
}

impl Drop for SignalsBlocked {
    fn drop(&mut self) {
        // SAFETY: restoring the mask saved in `new`.
        unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &self.0, std::ptr::null_mut()) };
    }
}

/// Forks the child with `flags`: clone3 with a pidfd, or legacy clone where clone3 is refused.
/// Runs `child` in the child (which must never return).
// The child branch calls a function returning an uninhabited type, which rustc flags.
#[allow(unreachable_code)]
fn spawn(
    flags: u64,
    cgroup_fd: Option<RawFd>,
    child: impl FnOnce() -> std::convert::Infallible,
) -> Result<(i32, Option<OwnedFd>, bool), LaunchError> {
    let mut pidfd: RawFd = -1;
    let mut args = sys::CloneArgs {
        flags: flags | sys::CLONE_PIDFD,
        pidfd: &mut pidfd as *mut RawFd as u64,
        exit_signal: libc::SIGCHLD as u64,
        ..Default::default()
    };
    let blocked = SignalsBlocked::new();
    let mut in_cgroup = false;
    let mut r = Err(libc::ENOSYS);
    if let Some(fd) = cgroup_fd {
        args.flags |= sys::CLONE_INTO_CGROUP;
        args.cgroup = fd as u64;
        // SAFETY: the child branch runs only `child`, which is async-signal-safe and never
        // returns.
        r = unsafe { sys::clone3(&mut args) };
        in_cgroup = r.is_ok();
        // Refused (old kernel, seccomp, a cgroup the kernel will not start a process in):
        // clone without it; the caller moves the child before releasing it.
        args.flags &= !sys::CLONE_INTO_CGROUP;
        args.cgroup = 0;
    }
    if cgroup_fd.is_none() || r.is_err() {
        pidfd = -1;
        // SAFETY: as above.
        r = unsafe { sys::clone3(&mut args) };
    }
    if matches!(r, Err(libc::ENOSYS) | Err(libc::EPERM)) {
        pidfd = -1;
        // SAFETY: as above.
        r = unsafe { sys::clone_legacy(flags) };
    }
    match r {
        Ok(0) => match child() {},
        Ok(pid) => {
            drop(blocked);
            let pidfd = (pidfd >= 0).then(|| {
                // SAFETY: the kernel returned a fresh pidfd that we own.
                unsafe { OwnedFd::from_raw_fd(pidfd) }
            });
            Ok((pid, pidfd, in_cgroup))
        }
        Err(e) => {
            drop(blocked);
            Err(LaunchError::sys("clone of the container process", e))
        }
    }
}

fn kill_and_reap(pid: i32) {
    // SAFETY: killing and reaping our own child.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    let _ = wait_pid(pid);
}

/// Starts a container's first process from an OCI spec. Returns once it is set up: in `create`
/// mode it then waits for `start`; otherwise it execs right away (see [`Launched::wait_exec`]).
pub fn launch(spec: &Spec, opts: &LaunchOptions<'_>) -> Result<Launched, LaunchError> {
    let plan = plan::child_plan(spec, opts.no_pivot, opts.before_pivot.is_some())?;
    let errors = ErrorContext::from_plan(&plan);
    let linux = spec.linux().clone().unwrap_or_default();
    let uids = linux.uid_mappings().clone().unwrap_or_default();
    let gids = linux.gid_mappings().clone().unwrap_or_default();
    let (uids, gids) = if uids.is_empty() || gids.is_empty() {
        idmap::mappings(idmap::IdMapMode::Single)?
    } else {
        (uids, gids)
    };
    let (parent_sock, child_sock) = sync::pair().map_err(|e| LaunchError::Sys {
        what: "socketpair".into(),
        source: e,
    })?;
    let fifo = match &opts.start_fifo {
        Some(p) => Some(open_path(p)?),
        None => None,
    };
    let mut mount_fds: Vec<RawFd> = vec![-1; plan.mounts.len()];
    let join_user = plan.join_user.as_deref().map(open_ns).transpose()?;
    let join_net = plan.join_net.as_deref().map(open_ns).transpose()?;
    // Joining a user namespace: the first process is an intermediate one (no new
    // namespaces) that joins, then forks the container's process, which inherits its cgroup.
    let (first, first_pidfd, in_cgroup) = spawn(
        if join_user.is_some() {
            0
        } else {
            plan.clone_flags
        },
        opts.cgroup.and_then(|c| c.dir_fd),
        || {
            sys::close(parent_sock.as_raw_fd());
            let mut ctx = Ctx {
                sync: child_sock.as_raw_fd(),
                fifo: fifo.as_ref().map(|f| f.as_raw_fd()),
                stdio: opts.stdio,
                preserve_fds: opts.preserve_fds,
                kill_on_parent_death: opts.kill_on_parent_death,
                mount_fds: &mut mount_fds,
            };
            match &join_user {
                Some(u) => child::run_joined(
                    u.as_raw_fd(),
                    join_net.as_ref().map(|n| n.as_raw_fd()),
                    &plan,
                    &mut ctx,
                ),
                None => child::run(&plan, &mut ctx),
            }
        },
    )?;
    drop(child_sock);
    drop(fifo);
    drop(join_user);
    let sync_fd = parent_sock.as_raw_fd();
    let (pid, pidfd) = if plan.join_user.is_some() {
        // The intermediate process joined the namespaces, forked the container's process as
        // our child and exits: take the pid it sends, and write no id maps (the joined user
        // namespace has them).
        let got = match sync::recv(sync_fd) {
            Ok(Some((m, _))) if m.kind == sync::CHILD_PID => Ok(m.value),
            Ok(Some((m, _))) if m.kind == sync::CHILD_ERROR => Err(child_error(&errors, m)),
            Ok(_) => Err(LaunchError::ChildDied("namespace-joining process".into())),
            Err(e) => Err(LaunchError::sys("reading from the container process", e)),
        };
        let _ = wait_pid(first);
        let pid = got?;
        let pidfd = sys::pidfd_open(pid)
            .ok()
            // SAFETY: a fresh pidfd we own.
            .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) });
        (pid, pidfd)
    } else {
        (first, first_pidfd)
    };
    drop(join_net);
    // The container's process waits for PARENT_MAPPED: move it into its cgroup now when
    // clone3 could not start it (or the intermediate process) there.
    if let (Some(cg), false) = (opts.cgroup, in_cgroup) {
        if let Err(e) = enter_cgroup(pid, cg.path) {
            let _ = sync::send(sync_fd, &sync::Msg::new(sync::PARENT_ABORT), None);
            kill_and_reap(pid);
            return Err(e);
        }
    }
    if plan.join_user.is_none() {
        if let Err(e) = idmap::apply(pid, &uids, &gids) {
            let _ = sync::send(sync_fd, &sync::Msg::new(sync::PARENT_ABORT), None);
            kill_and_reap(pid);
            return Err(e.into());
        }
    }
    if let Err(e) = sync::send(sync_fd, &sync::Msg::new(sync::PARENT_MAPPED), None) {
        kill_and_reap(pid);
        return Err(LaunchError::sys("signalling the container process", e));
    }
    let mut pty_master = None;
    loop {
        match sync::recv(sync_fd) {
            Ok(Some((m, fd))) => match m.kind {
                sync::CHILD_READY => break,
                sync::CHILD_PTY => pty_master = fd,
                sync::CHILD_HOOKS => {
                    let verdict = opts.before_pivot.map_or(Ok(()), |hook| hook(pid));
                    if let Err(message) = verdict {
                        let _ = sync::send(sync_fd, &sync::Msg::new(sync::PARENT_ABORT), None);
                        kill_and_reap(pid);
                        return Err(LaunchError::Plan(message));
                    }
                    let _ = sync::send(sync_fd, &sync::Msg::new(sync::PARENT_CONTINUE), None);
                }
                sync::CHILD_ERROR => {
                    let _ = wait_pid(pid);
                    return Err(child_error(&errors, m));
                }
                _ => {
                    kill_and_reap(pid);
                    return Err(LaunchError::Plan(
                        "unexpected message from the container process".into(),
                    ));
                }
            },
            Ok(None) => {
                let status = wait_pid(pid)
                    .map(|c| format!("exit code {c}"))
                    .unwrap_or_default();
                return Err(LaunchError::ChildDied(status));
            }
            Err(e) => {
                kill_and_reap(pid);
                return Err(LaunchError::sys("reading from the container process", e));
            }
        }
    }
    Ok(Launched {
        pid,
        pidfd,
        pty_master,
        sync: parent_sock,
        errors,
    })
}

/// Opens a namespace file to join (`/proc/PID/ns/TYPE` or a bind-mounted one).
fn open_ns(p: &Path) -> Result<OwnedFd, LaunchError> {
    let c = CString::new(p.as_os_str().as_bytes())
        .map_err(|_| LaunchError::Plan(format!("path {} contains a NUL byte", p.display())))?;
    // SAFETY: valid path.
    let fd = unsafe { libc::open(c.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(LaunchError::sys(
            format!("opening namespace {} to join", p.display()),
            sys::errno(),
        ));
    }
    // SAFETY: a fresh fd we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn open_path(p: &Path) -> Result<OwnedFd, LaunchError> {
    let c = CString::new(p.as_os_str().as_bytes())
        .map_err(|_| LaunchError::Plan(format!("path {} contains a NUL byte", p.display())))?;
    // SAFETY: valid path; O_PATH opens no data access.
    let fd = unsafe { libc::open(c.as_ptr(), libc::O_PATH | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(LaunchError::sys(
            format!("open {}", p.display()),
            sys::errno(),
        ));
    }
    // SAFETY: a fresh fd we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

const NAMESPACES: [(&str, libc::c_int); 8] = [
    ("user", libc::CLONE_NEWUSER),
    ("mnt", libc::CLONE_NEWNS),
    ("pid", libc::CLONE_NEWPID),
    ("uts", libc::CLONE_NEWUTS),
    ("ipc", libc::CLONE_NEWIPC),
    ("net", libc::CLONE_NEWNET),
    ("cgroup", libc::CLONE_NEWCGROUP),
    ("time", sys::CLONE_NEWTIME as libc::c_int),
];

/// The namespaces of `pid` that differ from ours (the ones `exec` must join).
fn differing_namespaces(pid: i32) -> Result<libc::c_int, LaunchError> {
    let mut flags = 0;
    for (name, flag) in NAMESPACES {
        let theirs = std::fs::read_link(format!("/proc/{pid}/ns/{name}"));
        let ours = std::fs::read_link(format!("/proc/self/ns/{name}"));
        match (theirs, ours) {
            (Ok(t), Ok(o)) if t != o => flags |= flag,
            (Ok(_), Ok(_)) => {}
            (Err(e), _) if name == "time" && e.kind() == std::io::ErrorKind::NotFound => {}
            (Err(e), _) => {
                return Err(LaunchError::Sys {
                    what: format!("reading namespaces of process {pid}"),
                    source: e,
                })
            }
            (_, Err(_)) => {}
        }
    }
    Ok(flags)
}

/// Runs `process` inside the running container whose first process is `pid`: joins its
/// namespaces (user first, all at once through a pidfd), with the container's capabilities,
/// no_new_privs and seccomp as given in `process`/`spec`.
pub fn exec_into(
    pid: i32,
    process: &Process,
    spec: &Spec,
    opts: &LaunchOptions<'_>,
) -> Result<Launched, LaunchError> {
    let pp = plan::process_plan(process, spec, false)?;
    let errors = ErrorContext::from_process(&pp);
    let ns_flags = differing_namespaces(pid)?;
    let target = sys::pidfd_open(pid)
        .map_err(|e| LaunchError::sys(format!("pidfd_open of container process {pid}"), e))?;
    // SAFETY: a fresh pidfd we own.
    let target = unsafe { OwnedFd::from_raw_fd(target) };
    let (parent_sock, child_sock) = sync::pair().map_err(|e| LaunchError::Sys {
        what: "socketpair".into(),
        source: e,
    })?;
    let (mid, _, in_cgroup) = spawn(0, opts.cgroup.and_then(|c| c.dir_fd), || {
        sys::close(parent_sock.as_raw_fd());
        let mut none: [RawFd; 0] = [];
        let mut ctx = Ctx {
            sync: child_sock.as_raw_fd(),
            fifo: None,
            stdio: opts.stdio,
            preserve_fds: opts.preserve_fds,
            kill_on_parent_death: opts.kill_on_parent_death,
            mount_fds: &mut none,
        };
        child::run_exec(target.as_raw_fd(), ns_flags, &pp, &mut ctx)
    })?;
    drop(child_sock);
    let sync_fd = parent_sock.as_raw_fd();
    if let (Some(cg), false) = (opts.cgroup, in_cgroup) {
        // The exec'd process is forked by `mid` once it has joined the namespaces; `mid` is
        // moved first so that the process starts inside.
        if let Err(e) = enter_cgroup(mid, cg.path) {
            kill_and_reap(mid);
            return Err(e);
        }
    }
    let mut grandchild = None;
    let mut pty_master = None;
    // `mid` sends the pid after its fork, and the forked process may report READY before
    // that message is sent: both are needed, in either order.
    let mut ready = false;
    let result = loop {
        match sync::recv(sync_fd) {
            Ok(Some((m, fd))) => match m.kind {
                sync::CHILD_PID => {
                    grandchild = Some(m.value);
                    // Fallback only (no CLONE_INTO_CGROUP): if `mid` forked before it was moved.
                    if let (Some(cg), false) = (opts.cgroup, in_cgroup) {
                        let _ = enter_cgroup(m.value, cg.path);
                    }
                    if ready {
                        break Ok(());
                    }
                }
                sync::CHILD_PTY => pty_master = fd,
                sync::CHILD_READY if grandchild.is_some() => break Ok(()),
                sync::CHILD_READY => ready = true,
                sync::CHILD_ERROR => {
                    let err = child_error(&errors, m);
                    if grandchild.is_none() {
                        // The process's error may come before `mid`'s pid message: read on
                        // until that message (or the end) so the process is reaped below. A
                        // zombie left in the container's pid namespace would keep its PID 1
                        // from ever exiting (zap_pid_ns_processes) in a long-lived caller.
                        while let Ok(Some((m, _))) = sync::recv(sync_fd) {
                            if m.kind == sync::CHILD_PID {
                                grandchild = Some(m.value);
                                break;
                            }
                        }
                    }
                    break Err(err);
                }
                _ => {
                    break Err(LaunchError::Plan(
                        "unexpected message from the exec process".into(),
                    ))
                }
            },
            Ok(None) => break Err(LaunchError::ChildDied("exec process".into())),
            Err(e) => break Err(LaunchError::sys("reading from the exec process", e)),
        }
    };
    let _ = wait_pid(mid);
    match (result, grandchild) {
        (Ok(()), Some(pid)) => Ok(Launched {
            pid,
            pidfd: sys::pidfd_open(pid)
                .ok()
                // SAFETY: a fresh pidfd we own.
                .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }),
            pty_master,
            sync: parent_sock,
            errors,
        }),
        (Err(e), Some(pid)) => {
            let _ = wait_pid(pid);
            Err(e)
        }
        (Err(e), None) => Err(e),
        (Ok(()), None) => Err(LaunchError::ChildDied("exec process sent no pid".into())),
    }
}

/// Waits for a child and returns its exit code, 128+signal when a signal killed it.
pub fn wait_pid(pid: i32) -> Result<i32, LaunchError> {
    loop {
        let mut st = 0;
        // SAFETY: valid status pointer.
        let r = unsafe { libc::waitpid(pid, &mut st, 0) };
        if r < 0 {
            let e = sys::errno();
            if e == libc::EINTR {
                continue;
            }
            return Err(LaunchError::sys(format!("waiting for process {pid}"), e));
        }
        return Ok(status_code(st));
    }
}

/// The shell-style exit code of a wait status.
pub fn status_code(st: libc::c_int) -> i32 {
    if libc::WIFEXITED(st) {
        libc::WEXITSTATUS(st)
    } else if libc::WIFSIGNALED(st) {
        128 + libc::WTERMSIG(st)
    } else {
        st
    }
}

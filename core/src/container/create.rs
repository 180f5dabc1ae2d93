//! `create`: set the container up and leave its process waiting for `start`.

use std::ffi::CString;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::DirBuilderExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use oci_spec::runtime::Spec;

use super::hooks::{self, HookPoint};
use super::state::{self, Lock, Record, StateRoot, Status};
use super::{Container, ContainerError, StateError};
use crate::cgroup::{self, CgroupOptions};
use crate::launch::{self, CgroupEntry, LaunchOptions, Launched};

/// Options of `create` (and of `run`) beyond the config.
#[derive(Debug, Clone, Default)]
pub struct CreateOptions {
    pub bundle: PathBuf,
    pub console_socket: Option<PathBuf>,
    pub pid_file: Option<PathBuf>,
    pub preserve_fds: u32,
    pub no_pivot: bool,
    pub stdio: Option<[RawFd; 3]>,
    /// Kill the container if the launching thread dies (foreground runs).
    pub kill_on_parent_death: bool,
    /// The network to attach once the namespaces exist (see `network::prepare`); its helper
    /// dies with the launching thread (the foreground `run`, or the container's monitor).
    pub network: Option<std::sync::Arc<crate::network::Prepared>>,
    /// cgroup manager and limit policy (`--cgroup-manager`, `--cgroup-limits`).
    pub cgroup: CgroupOptions,
    /// `rootbox run`'s per-container preparation: generated /etc files and volumes.
    pub rootfs_setup: Option<crate::rootfs::Setup>,
    /// The container's name (recorded before its process starts, so it can be used at once).
    pub name: String,
}

/// Applies `opts.rootfs_setup` (if any) to a registered container and saves the resulting
/// config; returns the spec to launch.
pub(crate) fn apply_setup(
    c: &Container,
    spec: &Spec,
    opts: &CreateOptions,
) -> Result<Spec, ContainerError> {
    apply_rootfs_setup(c, spec, opts.rootfs_setup.as_ref())
}

/// [`apply_setup`] for a setup given on its own (the detached path, before the monitor starts).
pub(crate) fn apply_rootfs_setup(
    c: &Container,
    spec: &Spec,
    setup: Option<&crate::rootfs::Setup>,
) -> Result<Spec, ContainerError> {
    let Some(setup) = setup else {
        return Ok(spec.clone());
    };
    let spec = setup.apply(&c.root.path, c.id(), &c.dir(), spec)?;
    let config = serde_json::to_vec_pretty(&spec).map_err(|e| StateError::Other(e.to_string()))?;
    state::write_atomic(&c.dir().join("config.json"), &config)?;
    Ok(spec)
}

/// Removes a container's directory after releasing what its setup acquired (volumes, the
/// layered rootfs's upper directory).
pub(crate) fn remove_dir(c: &Container) {
    crate::rootfs::setup::release(&c.dir(), true);
    let _ = std::fs::remove_dir_all(c.dir());
}

/// Registers a new container directory, failing if the id is taken.
pub(crate) fn register(
    root: &StateRoot,
    id: &str,
    spec: &Spec,
    bundle: &Path,
) -> Result<Container, ContainerError> {
    state::validate_id(id)?;
    let dir = root.dir(id);
    match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(StateError::io(&dir, e).into()),
    }
    // Under the container's lock, a record means the id is taken; a directory without one is
    // the leftover of a crash and is reused. The lock is released once the record is written
    // (the container's process must not inherit it).
    let lock = Lock::acquire(&dir)?;
    if dir.join("state.json").exists() {
        return Err(StateError::AlreadyExists(id.to_string()).into());
    }
    let config = serde_json::to_vec_pretty(spec).map_err(|e| StateError::Other(e.to_string()))?;
    state::write_atomic(&dir.join("config.json"), &config)?;
    let rootfs = spec
        .root()
        .as_ref()
        .map(|r| r.path().clone())
        .unwrap_or_default();
    let c = Container {
        root: root.clone(),
        record: Record {
            id: id.to_string(),
            bundle: bundle.to_path_buf(),
            rootfs,
            pid: None,
            pid_start: None,
            status: Status::Creating,
            created: state::now_rfc3339(),
            exit_code: None,
            annotations: spec.annotations().clone().unwrap_or_default(),
            cgroup: None,
            oom_killed: false,
            name: String::new(),
            lifecycle: Default::default(),
            network: None,
        },
    };
    c.save()?;
    drop(lock);
    Ok(c)
}

/// Launches the container's process for `create` (with `fifo`) or `run` (without), running the
/// createRuntime/createContainer hooks before pivot_root, and records it.
pub(crate) fn launch_recorded(
    c: &mut Container,
    spec: &Spec,
    opts: &CreateOptions,
    fifo: Option<PathBuf>,
) -> Result<Launched, ContainerError> {
    let hook_state = c.oci_state();
    let net = opts.network.as_deref();
    // The network is attached first (hooks see a configured interface); its error is kept
    // typed for the caller.
    let attached = std::cell::RefCell::new(None);
    let net_error = std::cell::RefCell::new(None);
    let before_pivot = |pid: i32| -> Result<(), String> {
        if let Some(n) = net {
            // The helper dies with this thread: the foreground `run`'s or the monitor's, which
            // both live as long as the container.
            match n.attach(pid, true) {
                Ok(a) => *attached.borrow_mut() = Some(a),
                Err(e) => {
                    let m = e.to_string();
                    *net_error.borrow_mut() = Some(e);
                    return Err(m);
                }
            }
        }
        let mut st = hook_state.clone();
        st.pid = Some(pid);
        st.status = Status::Creating;
        hooks::run(spec, HookPoint::CreateRuntime, &st).map_err(|e| e.to_string())?;
        hooks::run(spec, HookPoint::CreateContainer, &st).map_err(|e| e.to_string())
    };
    // The cgroup exists, limited, before the process does; the process starts inside it.
    let cg = cgroup::prepare(c.id(), spec, &opts.cgroup.with_spec(spec)?)?;
    if let Some(p) = &cg {
        c.record.cgroup = Some(p.cgroup.path.clone());
        c.save()?;
    }
    let lopts = LaunchOptions {
        stdio: opts.stdio,
        preserve_fds: opts.preserve_fds,
        start_fifo: fifo,
        no_pivot: opts.no_pivot,
        kill_on_parent_death: opts.kill_on_parent_death,
        before_pivot: if hooks::has_create_hooks(spec) || net.is_some_and(|n| n.needs_attach()) {
            Some(&before_pivot)
        } else {
            None
        },
        cgroup: cg.as_ref().map(|p| CgroupEntry {
            // ROOTBOX_CGROUP_ENTRY=procs forces the fallback of kernels without
            // CLONE_INTO_CGROUP (the pid written to cgroup.procs), so tests can cover it.
            dir_fd: (std::env::var_os("ROOTBOX_CGROUP_ENTRY").as_deref()
                != Some(std::ffi::OsStr::new("procs")))
            .then(|| p.dir.as_raw_fd()),
            path: &p.cgroup.path,
        }),
    };
    let launched = launch::launch(spec, &lopts);
    drop(cg);
    let attached = attached.into_inner();
    let mut launched = match launched {
        Ok(l) => l,
        Err(e) => {
            if let Some(a) = &attached {
                crate::network::release(a);
            }
            return Err(match net_error.into_inner() {
                Some(ne) => ne.into(),
                None => e.into(),
            });
        }
    };
    if let Some(a) = &attached {
        c.record.lifecycle.ports = a.ports.clone();
    }
    c.record.network = attached;
    if let (Some(sock), Some(master)) = (&opts.console_socket, &launched.pty_master) {
        send_console(sock, master.as_raw_fd())?;
        launched.pty_master = None;
    }
    c.record.pid = Some(launched.pid);
    c.record.pid_start = state::process_start_time(launched.pid);
    c.record.status = Status::Created;
    c.save()?;
    if let Some(pf) = &opts.pid_file {
        state::write_atomic(pf, launched.pid.to_string().as_bytes())?;
    }
    Ok(launched)
}

/// `create`: the process is set up and blocks until `start`.
pub fn create(
    root: &StateRoot,
    id: &str,
    spec: &Spec,
    opts: &CreateOptions,
) -> Result<Container, ContainerError> {
    require_console_socket(spec, opts)?;
    let mut c = register(root, id, spec, &opts.bundle)?;
    let result = (|| {
        let fifo = c.fifo_path();
        let cpath = CString::new(fifo.as_os_str().as_bytes())
            .map_err(|_| StateError::Other("state path contains a NUL byte".into()))?;
        // SAFETY: valid path.
        if unsafe { libc::mkfifo(cpath.as_ptr(), 0o600) } < 0 {
            return Err(StateError::io(&fifo, std::io::Error::last_os_error()).into());
        }
        let spec = apply_setup(&c, spec, opts)?;
        launch_recorded(&mut c, &spec, opts, Some(fifo))?;
        Ok(())
    })();
    match result {
        Ok(()) => Ok(c),
        Err(e) => {
            discard(&c);
            Err(e)
        }
    }
}

/// Undoes a failed create/run: the container's processes, cgroup and state directory.
pub(crate) fn discard(c: &Container) {
    if let Some(a) = &c.record.network {
        crate::network::release(a);
    }
    if let Some(cg) = c.cgroup() {
        let _ = cg.kill();
        let _ = cg.remove();
    }
    remove_dir(c);
}

/// A container that outlives this command and has a terminal needs somewhere to send it.
pub fn require_console_socket(spec: &Spec, opts: &CreateOptions) -> Result<(), StateError> {
    let terminal = spec
        .process()
        .as_ref()
        .and_then(|p| p.terminal())
        .unwrap_or(false);
    if terminal && opts.console_socket.is_none() {
        return Err(StateError::Other(
            "process.terminal is true but no --console-socket was given: a detached container's terminal must be sent to a console socket".into(),
        ));
    }
    Ok(())
}

/// Sends the pty master to an engine's console socket, as runc does.
pub fn send_console(path: &Path, master: RawFd) -> Result<(), StateError> {
    let sock = UnixStream::connect(path).map_err(|e| StateError::io(path, e))?;
    let name = b"/dev/ptmx";
    let mut iov = libc::iovec {
        iov_base: name.as_ptr() as *mut libc::c_void,
        iov_len: name.len(),
    };
    let mut cbuf = [0u64; 4];
    // SAFETY: an all-zero msghdr is a valid empty header; we then point it at our buffers and
    // fill one SCM_RIGHTS control message that fits in `cbuf`.
    let r = unsafe {
        let mut hdr: libc::msghdr = std::mem::zeroed();
        hdr.msg_iov = &mut iov;
        hdr.msg_iovlen = 1;
        hdr.msg_control = cbuf.as_mut_ptr().cast();
        hdr.msg_controllen = libc::CMSG_SPACE(std::mem::size_of::<RawFd>() as u32) as usize;
        let cmsg = libc::CMSG_FIRSTHDR(&hdr);
        (*cmsg).cmsg_level = libc::SOL_SOCKET;
        (*cmsg).cmsg_type = libc::SCM_RIGHTS;
        (*cmsg).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<RawFd>() as u32) as usize;
        std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<RawFd>(), master);
        libc::sendmsg(sock.as_raw_fd(), &hdr, 0)
    };
    if r < 0 {
        return Err(StateError::io(path, std::io::Error::last_os_error()));
    }
    Ok(())
}

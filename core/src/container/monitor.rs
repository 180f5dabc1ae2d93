//! The per-container monitor (`rootbox-monitor`, like podman's conmon): a small process that
//! owns a detached container. It is not a child of the command that started it (it forks once
//! and the intermediate exits, then it makes its own session), so it outlives that command; it
//! launches the container itself (the container is its child: it holds a pidfd and reaps it),
//! holds the container's stdio (pipes, or the pty master with `-t`), writes the log, serves the
//! attach socket, and records the exit code and finish time when the container ends, removing
//! it when it was started with `--rm`.
//!
//! Front ends start it with [`spawn`]: a plain `posix_spawn`-style `Command` (an exec right
//! away, so safe from multithreaded hosts), then one line on the monitor's stdout reports
//! whether the container started: `ok PID MONITOR_PID` or `err EXIT_CODE ERRNO STEP MESSAGE`.

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::create::{launch_recorded, CreateOptions};
use super::logs;
use super::state::{self, Lock, StateRoot, Status};
pub use super::supervise::Mode;
use super::supervise::{self, Args, Exit, Supervisor};
use super::{attach, Container, ContainerError, StateError};
use crate::launch::{self, LaunchError};

/// Environment variable naming the monitor executable.
pub const MONITOR_ENV: &str = "ROOTBOX_MONITOR";
/// The monitor's file name (looked up next to the running executable, then in `PATH`).
pub const MONITOR_BIN: &str = "rootbox-monitor";

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Places a library front door (the C ABI, the Python module) found its monitor in, in order;
/// see [`add_library_locations`].
static LIBRARY_LOCATIONS: std::sync::Mutex<Vec<PathBuf>> = std::sync::Mutex::new(Vec::new());

/// Adds places where the monitor may be installed next to a library (e.g. the directory of
/// `libcontainer.so`): [`locate`] tries them after `$ROOTBOX_MONITOR` and before the running
/// executable's directory, since a program embedding the library has no monitor of its own.
pub fn add_library_locations(paths: impl IntoIterator<Item = PathBuf>) {
    if let Ok(mut l) = LIBRARY_LOCATIONS.lock() {
        for p in paths {
            if !l.contains(&p) {
                l.push(p);
            }
        }
    }
}

/// Finds the monitor: `$ROOTBOX_MONITOR`, the library locations ([`add_library_locations`]),
/// next to the running executable, then `PATH`.
pub fn locate() -> Result<PathBuf, StateError> {
    if let Some(p) = std::env::var_os(MONITOR_ENV).filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        if is_executable(&p) {
            return Ok(p);
        }
        return Err(StateError::Other(format!(
            "{MONITOR_ENV}={} is not an executable file",
            p.display()
        )));
    }
    let library = LIBRARY_LOCATIONS
        .lock()
        .map(|l| l.clone())
        .unwrap_or_default();
    if let Some(p) = library.into_iter().find(|p| is_executable(p)) {
        return Ok(p);
    }
    if let Some(dir) = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(Path::to_path_buf))
    {
        let p = dir.join(MONITOR_BIN);
        if is_executable(&p) {
            return Ok(p);
        }
    }
    if let Some(path) = std::env::var_os("PATH") {
        for d in std::env::split_paths(&path) {
            let p = d.join(MONITOR_BIN);
            if is_executable(&p) {
                return Ok(p);
            }
        }
    }
    Err(StateError::Other(format!(
        "cannot find the container monitor {MONITOR_BIN}: install it next to this program or on PATH, or set {MONITOR_ENV}"
    )))
}

/// A program that runs [`main_hosted`] instead of `rootbox-monitor`, set once per process by a
/// front end that has no monitor binary next to it (the Python module runs its monitor as
/// `python -c ...` of the very same module). `$ROOTBOX_MONITOR` still wins over it.
#[derive(Debug, Clone)]
pub struct HostedMonitor {
    pub program: PathBuf,
    /// Arguments before the monitor's own (`--root ...`).
    pub leading_args: Vec<std::ffi::OsString>,
}

static HOSTED: std::sync::OnceLock<HostedMonitor> = std::sync::OnceLock::new();

/// Makes [`spawn`] start `hosted` (unless `$ROOTBOX_MONITOR` is set). The first call wins;
/// false when another program was set before.
pub fn set_hosted(hosted: HostedMonitor) -> bool {
    HOSTED.set(hosted).is_ok()
}

/// The command that starts a monitor: `$ROOTBOX_MONITOR`, the hosted monitor of this process
/// ([`set_hosted`]), else [`locate`]'s binary.
fn monitor_command() -> Result<Command, StateError> {
    let explicit = std::env::var_os(MONITOR_ENV).is_some_and(|p| !p.is_empty());
    if !explicit {
        if let Some(h) = HOSTED.get() {
            let mut c = Command::new(&h.program);
            c.args(&h.leading_args);
            return Ok(c);
        }
    }
    Ok(Command::new(locate()?))
}

/// What the monitor reported once the container started (or was created).
#[derive(Debug, Clone, Copy)]
pub struct Spawned {
    pub pid: i32,
    pub monitor_pid: i32,
}

/// Starts the monitor of the registered container `id` and waits until it reports that the
/// container is running (`Mode::Run`) or created (`Mode::Create`), or why it is not.
pub fn spawn(root: &StateRoot, id: &str, mode: Mode) -> Result<Spawned, ContainerError> {
    let mut cmd = monitor_command()?;
    let exe = PathBuf::from(cmd.get_program());
    let mut child = cmd
        .arg("--root")
        .arg(&root.path)
        .arg("--id")
        .arg(id)
        .arg("--mode")
        .arg(mode.as_str())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .current_dir("/")
        .spawn()
        .map_err(|e| StateError::Other(format!("starting {}: {e}", exe.display())))?;
    let mut line = String::new();
    if let Some(out) = child.stdout.take() {
        // One line: the container's setup process holds the pipe until it execs, so the end of
        // the stream cannot be waited for.
        let _ = BufReader::new(out).read_line(&mut line);
    }
    let _ = child.wait();
    parse_report(&line)
}

fn parse_report(line: &str) -> Result<Spawned, ContainerError> {
    let line = line.trim_end();
    let mut parts = line.splitn(5, ' ');
    match parts.next() {
        Some("ok") => {
            let pid = parts.next().and_then(|p| p.parse().ok());
            let monitor_pid = parts.next().and_then(|p| p.parse().ok());
            match (pid, monitor_pid) {
                (Some(pid), Some(monitor_pid)) => Ok(Spawned { pid, monitor_pid }),
                _ => {
                    Err(StateError::Other(format!("bad report from the monitor: {line:?}")).into())
                }
            }
        }
        Some("err") => {
            let code: i32 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(125);
            let errno: i32 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
            let step: u32 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
            let message = parts.next().unwrap_or("").to_string();
            if step != 0 {
                Err(LaunchError::Child {
                    step: launch::child::Step::from_u32(step).unwrap_or(launch::child::Step::Exec),
                    errno,
                    message,
                    exit_code: code,
                }
                .into())
            } else {
                Err(StateError::Other(message).into())
            }
        }
        _ => Err(StateError::Other(
            "the container monitor exited without reporting whether the container started".into(),
        )
        .into()),
    }
}

fn report_error(e: &ContainerError) -> String {
    let (code, errno, step) = match e {
        ContainerError::Launch(LaunchError::Child {
            step,
            errno,
            exit_code,
            ..
        }) => (*exit_code, *errno, *step as u32),
        _ => (125, 0, 0),
    };
    let msg = e.to_string().replace('\n', " ");
    format!("err {code} {errno} {step} {msg}\n")
}

// ---------------------------------------------------------------------------------------------
// The monitor process.

fn ignore_signal(sig: libc::c_int) {
    // SAFETY: setting a signal's disposition to ignore.
    unsafe { libc::signal(sig, libc::SIG_IGN) };
}

/// Entry point of `rootbox-monitor`. Returns the exit code.
///
/// `--root DIR --id ID --mode run|create`: leave the caller, launch the container, report, then
/// exec the supervising binary ([`supervise::SUPERVISE_BIN`], next to this one) with the
/// container's descriptors: a fresh, small process image holds only the supervision loop,
/// which keeps the monitor's resident memory small (the launch code, the config it parsed and
/// this binary's relocated data are gone). Without that binary it re-executes itself as
/// `--supervise ...` instead.
///
/// `--record-exit ... --code N`: records the end of the container (run by the supervising
/// binary, which holds no state code).
pub fn main(args: &[String]) -> i32 {
    run_main(args, true)
}

/// [`main`] for a monitor hosted by another program ([`set_hosted`]): it supervises from its
/// own process image instead of executing another (`/proc/self/exe` is not `rootbox-monitor`).
pub fn main_hosted(args: &[String]) -> i32 {
    run_main(args, false)
}

fn run_main(args: &[String], reexec: bool) -> i32 {
    let args = Args::parse(args);
    let Some((root, id, mode)) = args.container() else {
        eprintln!("{}", supervise::USAGE);
        return 2;
    };
    if args.has("record-exit") {
        let Some(exit) = Exit::from_args(&args) else {
            eprintln!("{MONITOR_BIN} --record-exit: --code N is missing");
            return 2;
        };
        return match record_end(&StateRoot { path: root }, &id, &exit) {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("{MONITOR_BIN} --record-exit: {e}");
                1
            }
        };
    }
    if args.has("supervise") {
        // The fallback of a monitor without its supervising binary (see `main`).
        return match Supervisor::from_args(&args) {
            Some((mut sup, _)) => {
                supervise::shed_code_pages();
                let state = StateRoot { path: root };
                sup.run(&mut |exit| {
                    let _ = record_end(&state, &id, exit);
                });
                0
            }
            None => 2,
        };
    }

    // Leave the command that started us: it waits for this intermediate process only, and
    // the monitor becomes the child of the nearest subreaper (or init), in a session of its own.
    // SAFETY: this process has just exec'd and runs no other thread: fork is safe.
    match unsafe { libc::fork() } {
        -1 => {
            println!(
                "err 125 0 0 monitor: fork: {}",
                std::io::Error::last_os_error()
            );
            return 125;
        }
        0 => {}
        // SAFETY: the intermediate process is done; _exit skips nothing it needs.
        _ => unsafe { libc::_exit(0) },
    }
    // SAFETY: setsid has no arguments; we are not a group leader after the fork.
    unsafe { libc::setsid() };
    for sig in [
        libc::SIGPIPE,
        libc::SIGHUP,
        libc::SIGINT,
        libc::SIGQUIT,
        libc::SIGTSTP,
    ] {
        ignore_signal(sig);
    }
    // The report goes to the pipe on stdout (moved to fd 3); nothing else inherited stays
    // open, and stdio becomes /dev/null.
    // SAFETY: dup2/close_range/fcntl on descriptor numbers; nothing else in this process owns
    // fds above 2 yet.
    unsafe {
        libc::dup2(1, 3);
        libc::fcntl(3, libc::F_SETFD, libc::FD_CLOEXEC);
    }
    let _ = crate::sys::close_range(4, u32::MAX, 0);
    // SAFETY: fd 3 is ours now.
    let mut report = unsafe { File::from_raw_fd(3) };
    if let Ok(null) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
    {
        for fd in 0..3 {
            // SAFETY: dup2 onto the standard descriptors.
            unsafe { libc::dup2(null.as_raw_fd(), fd) };
        }
    }
    let mut sup = match prepare(&root, &id, mode) {
        Ok(s) => s,
        Err(e) => {
            let _ = report.write_all(report_error(&e).as_bytes());
            return 1;
        }
    };
    // SAFETY: getpid cannot fail.
    let me = unsafe { libc::getpid() };
    let _ = report.write_all(format!("ok {} {me}\n", sup.pid).as_bytes());
    drop(report);
    if reexec {
        exec_supervisor(&mut sup);
    }
    // Hosted, or the exec failed: supervise from this process image.
    let state = StateRoot { path: root };
    sup.run(&mut |exit| {
        let _ = record_end(&state, &id, exit);
    });
    0
}

/// Replaces this process with the supervising binary (next to this executable), else with
/// this executable as `--supervise`. Returns only when both execs failed.
fn exec_supervisor(sup: &mut Supervisor) {
    let small = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(|d| d.join(supervise::SUPERVISE_BIN)))
        .filter(|p| is_executable(p))
        .and_then(|p| std::ffi::CString::new(p.into_os_string().into_encoded_bytes()).ok());
    if let Some(small) = small {
        // The supervising binary records the container's end by running this very binary
        // (`--record-exit`): a descriptor of it stays valid whatever happens to its path.
        if let Ok(exe) = std::fs::File::open("/proc/self/exe") {
            sup.exec(&small, Some(exe.as_raw_fd()));
        }
    }
    sup.exec(c"/proc/self/exe", None);
}

fn pipe() -> Result<(OwnedFd, OwnedFd), StateError> {
    let mut fds = [0 as RawFd; 2];
    // SAFETY: `fds` has room for two descriptors.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } < 0 {
        return Err(StateError::Other(format!(
            "pipe: {}",
            std::io::Error::last_os_error()
        )));
    }
    // SAFETY: two fresh fds we own.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

fn set_nonblocking(fd: RawFd) {
    // SAFETY: fcntl on an fd we own.
    unsafe {
        let fl = libc::fcntl(fd, libc::F_GETFL);
        libc::fcntl(fd, libc::F_SETFL, fl | libc::O_NONBLOCK);
    }
}

fn prepare(root: &Path, id: &str, mode: Mode) -> Result<Supervisor, ContainerError> {
    let _ = std::env::set_current_dir("/");
    let root = StateRoot::open(root)?;
    let mut c = Container::load(&root, id)?;
    let spec = c.spec()?;
    let lc = c.record.lifecycle.clone();
    // SAFETY: getpid cannot fail.
    let me = unsafe { libc::getpid() };
    c.record.lifecycle.monitor_pid = Some(me);
    c.record.lifecycle.monitor_start = state::process_start_time(me);
    c.record.lifecycle.error.clear();
    let dir = c.dir();
    let log = logs::Writer::open(&dir.join(logs::LOG_FILE))?;

    let null = File::open("/dev/null").map_err(|e| StateError::io(Path::new("/dev/null"), e))?;
    let (stdin_r, stdin_w) = if lc.open_stdin && !lc.tty {
        let (r, w) = pipe()?;
        (Some(r), Some(w))
    } else {
        (None, None)
    };
    let (out_r, out_w, err_r, err_w) = if lc.tty {
        (None, None, None, None)
    } else {
        let (or, ow) = pipe()?;
        let (er, ew) = pipe()?;
        (Some(or), Some(ow), Some(er), Some(ew))
    };
    let stdio = match (&out_w, &err_w) {
        (Some(o), Some(e)) => Some([
            stdin_r.as_ref().map_or(null.as_raw_fd(), |r| r.as_raw_fd()),
            o.as_raw_fd(),
            e.as_raw_fd(),
        ]),
        _ => None,
    };
    // The network planned by `run -d`/`create` (saved in the container's directory): its
    // helper is started by this process and dies with it.
    let network = crate::network::Prepared::load(&dir)?.map(std::sync::Arc::new);
    let opts = CreateOptions {
        bundle: c.record.bundle.clone(),
        stdio,
        kill_on_parent_death: false,
        network,
        ..Default::default()
    };
    let mut launched = match mode {
        Mode::Create => {
            let fifo = c.fifo_path();
            let _ = std::fs::remove_file(&fifo);
            let cpath = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes())
                .map_err(|_| StateError::Other("state path contains a NUL byte".into()))?;
            // SAFETY: valid path.
            if unsafe { libc::mkfifo(cpath.as_ptr(), 0o600) } < 0 {
                return Err(StateError::io(&fifo, std::io::Error::last_os_error()).into());
            }
            c.record.status = Status::Creating;
            launch_recorded(&mut c, &spec, &opts, Some(fifo))?
        }
        Mode::Run => super::run::start_registered(&mut c, &spec, &opts)?,
    };
    drop((stdin_r, out_w, err_w, null));
    let (out, stdin, pty) = match launched.pty_master.take() {
        Some(m) => {
            let raw = m.as_raw_fd();
            (Some(m), None, Some(raw))
        }
        None => (out_r, stdin_w, None),
    };
    for fd in [&out, &err_r].into_iter().flatten() {
        set_nonblocking(fd.as_raw_fd());
    }
    // Bound before the report, so `start -a` right after `create` finds it.
    let listener = bind_socket(&dir);
    // In create mode, an exec error after `start` arrives on the sync socket: kept past the
    // Launched (a dup of the one it owns).
    let sync = match mode {
        // SAFETY: fcntl on the descriptor the Launched owns; the dup is ours.
        Mode::Create => unsafe { libc::fcntl(launched.sync_fd(), libc::F_DUPFD_CLOEXEC, 3) },
        Mode::Run => -1,
    };
    Ok(Supervisor::new(
        root.path,
        id.to_string(),
        dir,
        mode,
        launched.pid,
        launched.pidfd.take(),
        // SAFETY: a fresh fd we own (when the dup worked).
        (sync >= 0).then(|| unsafe { OwnedFd::from_raw_fd(sync) }),
        out,
        err_r,
        stdin,
        pty,
        lc.open_stdin,
        Some(log),
        listener,
    ))
}

fn bind_socket(dir: &Path) -> Option<UnixListener> {
    let d = attach::open_dir(dir).ok()?;
    let path = attach::short_path(&d);
    let _ = std::fs::remove_file(&path);
    let l = UnixListener::bind(&path).ok()?;
    l.set_nonblocking(true).ok()?;
    Some(l)
}

/// Records `exit` (see [`record_exit`]), wording a launch error from the container's config.
fn record_end(root: &StateRoot, id: &str, exit: &Exit) -> Result<(), ContainerError> {
    let error = exit.child_error.map(|m| {
        match Container::load(root, id).and_then(|c| c.spec()) {
            Ok(spec) => launch::child_error_from(&spec, m),
            Err(_) => LaunchError::Child {
                step: launch::child::Step::from_u32(m.step).unwrap_or(launch::child::Step::Exec),
                errno: m.value,
                message: format!(
                    "container setup failed: {}",
                    std::io::Error::from_raw_os_error(m.value)
                ),
                exit_code: exit.code,
            },
        }
        .to_string()
    });
    record_exit(root, id, exit.code, error)
}

/// Records the end of a container's process: status, exit code, finish time, the OOM flag and
/// a launch error; then removes the container when it was started with `--rm`.
///
/// This is the one place where a container's end is handled, so per-container cleanup (the
/// cgroup, network helpers) and the OOM flag hook in here.
pub fn record_exit(
    root: &StateRoot,
    id: &str,
    code: i32,
    error: Option<String>,
) -> Result<(), ContainerError> {
    let dir = root.dir(id);
    if !dir.join("state.json").exists() {
        // Removed meanwhile (`rm -f`).
        return Ok(());
    }
    let lock = Lock::acquire(&dir)?;
    let mut c = Container::load(root, id)?;
    c.record.status = Status::Stopped;
    c.record.exit_code = Some(code);
    c.record.lifecycle.finished_at = Some(state::now_rfc3339());
    // The network helper goes with the container (its published ports are free again).
    if let Some(a) = &c.record.network {
        crate::network::release(a);
    }
    c.record.lifecycle.ports.clear();
    let oom = c.oom_killed();
    c.record.oom_killed = oom;
    c.record.lifecycle.oom_killed = oom;
    if let Some(e) = error {
        c.record.lifecycle.error = e;
    }
    c.save()?;
    drop(lock);
    if c.record.lifecycle.auto_remove {
        super::manage::remove_state(root, &c)?;
    }
    Ok(())
}

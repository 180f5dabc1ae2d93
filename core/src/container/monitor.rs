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
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::create::{launch_recorded, CreateOptions};
use super::logs::{self, Stream};
use super::state::{self, Lock, StateRoot, Status};
use super::{attach, Container, ContainerError, StateError};
use crate::launch::{self, LaunchError};

/// Environment variable naming the monitor executable.
pub const MONITOR_ENV: &str = "ROOTBOX_MONITOR";
/// The monitor's file name (looked up next to the running executable, then in `PATH`).
pub const MONITOR_BIN: &str = "rootbox-monitor";

/// How the monitor starts the container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Launch and exec right away (`run -d`).
    Run,
    /// Launch and wait for `start` (`create`, and `start`/`restart` of a stopped container).
    Create,
}

impl Mode {
    fn as_str(self) -> &'static str {
        match self {
            Mode::Run => "run",
            Mode::Create => "create",
        }
    }
}

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

/// Drops this process's page-table entries for the code it ran while starting (the
/// executable's and the libraries' `r-xp` mappings): the supervision loop faults back in the
/// few pages it uses, from the page cache, and the monitor's resident set stays at what it
/// really uses instead of everything its start-up touched (plus the kernel's fault-around).
/// Only never-written text is dropped (`MADV_DONTNEED` on it loses nothing); data, relocated
/// read-only data and anonymous memory are left alone.
fn shed_code_pages() {
    let Ok(maps) = std::fs::read_to_string("/proc/self/maps") else {
        return;
    };
    for line in maps.lines() {
        let mut f = line.split_whitespace();
        let (Some(range), Some(perms)) = (f.next(), f.next()) else {
            continue;
        };
        let path = f.nth(3).unwrap_or("");
        // Named file mappings only: not [vdso], [vsyscall] or anonymous executable memory.
        if perms != "r-xp" || !path.starts_with('/') {
            continue;
        }
        let Some((a, b)) = range.split_once('-') else {
            continue;
        };
        let (Ok(start), Ok(end)) = (usize::from_str_radix(a, 16), usize::from_str_radix(b, 16))
        else {
            continue;
        };
        // SAFETY: [start, end) is a private, read-only, executable file mapping of this
        // process, never written: MADV_DONTNEED only drops its PTEs, and the next access
        // maps the same file pages again. This function's own code is refaulted the same way.
        unsafe {
            libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_DONTNEED);
        }
    }
}

/// Entry point of `rootbox-monitor`. Returns the exit code.
///
/// `--root DIR --id ID --mode run|create`: leave the caller, launch the container, report, then
/// re-exec as `--supervise ...` with the container's descriptors: a fresh process image holds
/// only the supervision loop, which keeps the monitor's resident memory small (the launch code
/// and the config it parsed are gone).
pub fn main(args: &[String]) -> i32 {
    run_main(args, true)
}

/// [`main`] for a monitor hosted by another program ([`set_hosted`]): it supervises from its
/// own process image instead of re-executing `/proc/self/exe` (which is not `rootbox-monitor`).
pub fn main_hosted(args: &[String]) -> i32 {
    run_main(args, false)
}

fn run_main(args: &[String], reexec: bool) -> i32 {
    let mut opts = std::collections::HashMap::new();
    let mut it = args.iter();
    let mut supervise = false;
    while let Some(a) = it.next() {
        if a == "--supervise" {
            supervise = true;
        } else if let Some(k) = a.strip_prefix("--") {
            if let Some(v) = it.next() {
                opts.insert(k.to_string(), v.clone());
            }
        }
    }
    let mode = match opts.get("mode").map(String::as_str) {
        Some("run") => Some(Mode::Run),
        Some("create") => Some(Mode::Create),
        _ => None,
    };
    let (Some(root), Some(id), Some(mode)) = (opts.get("root"), opts.get("id"), mode) else {
        eprintln!(
            "usage: {MONITOR_BIN} --root STATE_DIR --id ID --mode run|create (started by rootbox)"
        );
        return 2;
    };
    let root = PathBuf::from(root);
    if supervise {
        return match Supervisor::from_args(&root, id, mode, &opts) {
            Some(mut sup) => {
                shed_code_pages();
                sup.run();
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
    let mut sup = match prepare(&root, id, mode) {
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
        sup.reexec();
    }
    // Hosted, or the re-exec failed: supervise from this process image.
    sup.run();
    0
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

struct Client {
    stream: UnixStream,
    hello: Option<u8>,
    buf: Vec<u8>,
    dead: bool,
}

struct Supervisor {
    root: StateRoot,
    id: String,
    dir: PathBuf,
    mode: Mode,
    pid: i32,
    pidfd: Option<OwnedFd>,
    /// The launch's sync socket: in create mode an exec error after `start` arrives there.
    sync: Option<OwnedFd>,
    /// stdout (or the pty master) and stderr of the container.
    out: Option<OwnedFd>,
    err: Option<OwnedFd>,
    /// Where client stdin goes: the stdin pipe (or, with `stdin_to_pty`, the pty master).
    stdin: Option<OwnedFd>,
    /// The pty master (borrowed from `out`), for window sizes and, with `-i`, input.
    pty: Option<RawFd>,
    stdin_to_pty: bool,
    log: Option<logs::Writer>,
    listener: Option<UnixListener>,
    clients: Vec<Client>,
}

fn fd_arg(fd: Option<RawFd>) -> String {
    fd.unwrap_or(-1).to_string()
}

fn keep_across_exec(fd: RawFd) {
    // SAFETY: fcntl on an fd this process owns.
    unsafe { libc::fcntl(fd, libc::F_SETFD, 0) };
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
    // SAFETY: dup of the sync socket the Launched owns, to keep it past the Launched.
    let sync = unsafe { libc::fcntl(launched.sync_fd(), libc::F_DUPFD_CLOEXEC, 3) };
    Ok(Supervisor {
        root,
        id: id.to_string(),
        dir,
        mode,
        pid: launched.pid,
        pidfd: launched.pidfd.take(),
        // SAFETY: a fresh fd we own (when the dup worked).
        sync: (sync >= 0).then(|| unsafe { OwnedFd::from_raw_fd(sync) }),
        out,
        err: err_r,
        stdin,
        pty,
        stdin_to_pty: lc.open_stdin,
        log: Some(log),
        listener,
        clients: Vec::new(),
    })
}

fn bind_socket(dir: &Path) -> Option<UnixListener> {
    let d = attach::open_dir(dir).ok()?;
    let path = attach::short_path(&d);
    let _ = std::fs::remove_file(&path);
    let l = UnixListener::bind(&path).ok()?;
    l.set_nonblocking(true).ok()?;
    Some(l)
}

fn read_some(fd: RawFd, buf: &mut [u8]) -> Option<usize> {
    // Returns Some(0) at end (or EIO from a pty whose slave is closed), None when nothing is
    // available now.
    loop {
        // SAFETY: reading into a buffer we own.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        if n >= 0 {
            return Some(n as usize);
        }
        match std::io::Error::last_os_error().raw_os_error() {
            Some(libc::EINTR) => continue,
            Some(libc::EAGAIN) => return None,
            _ => return Some(0),
        }
    }
}

fn write_all_fd(fd: RawFd, mut data: &[u8]) -> bool {
    while !data.is_empty() {
        // SAFETY: writing from a buffer we own.
        let n = unsafe { libc::write(fd, data.as_ptr().cast(), data.len()) };
        if n < 0 {
            if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return false;
        }
        data = &data[n as usize..];
    }
    true
}

/// Sends to a non-blocking client, waiting at most 2 s for room; false when it should go.
fn send_client(stream: &UnixStream, data: &[u8]) -> bool {
    let mut data = data;
    let deadline = Instant::now() + Duration::from_secs(2);
    while !data.is_empty() {
        // SAFETY: sending from a buffer we own.
        let n = unsafe {
            libc::send(
                stream.as_raw_fd(),
                data.as_ptr().cast(),
                data.len(),
                libc::MSG_NOSIGNAL,
            )
        };
        if n >= 0 {
            data = &data[n as usize..];
            continue;
        }
        match std::io::Error::last_os_error().raw_os_error() {
            Some(libc::EINTR) => {}
            Some(libc::EAGAIN) => {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return false;
                }
                let mut p = libc::pollfd {
                    fd: stream.as_raw_fd(),
                    events: libc::POLLOUT,
                    revents: 0,
                };
                // SAFETY: one valid pollfd.
                unsafe { libc::poll(&mut p, 1, left.as_millis() as libc::c_int) };
            }
            _ => return false,
        }
    }
    true
}

impl Supervisor {
    /// Replaces this process image with `rootbox-monitor --supervise`, passing the container's
    /// descriptors by number. Returns only when the exec failed.
    fn reexec(&mut self) {
        let raw = |f: &Option<OwnedFd>| f.as_ref().map(|f| f.as_raw_fd());
        let fds = [
            ("pidfd", raw(&self.pidfd)),
            ("sync", raw(&self.sync)),
            ("out", raw(&self.out)),
            ("err", raw(&self.err)),
            ("stdin", raw(&self.stdin)),
            ("listener", self.listener.as_ref().map(|l| l.as_raw_fd())),
        ];
        let mut args: Vec<std::ffi::CString> = Vec::new();
        let mut push = |s: String| {
            if let Ok(c) = std::ffi::CString::new(s) {
                args.push(c);
            }
        };
        push(MONITOR_BIN.into());
        push("--supervise".into());
        push("--root".into());
        push(self.root.path.display().to_string());
        push("--id".into());
        push(self.id.clone());
        push("--mode".into());
        push(self.mode.as_str().into());
        push("--pid".into());
        push(self.pid.to_string());
        push("--tty".into());
        push(if self.pty.is_some() { "1" } else { "0" }.into());
        push("--stdin-to-pty".into());
        push(if self.stdin_to_pty { "1" } else { "0" }.into());
        for (name, fd) in fds {
            push(format!("--{name}"));
            push(fd_arg(fd));
            if let Some(fd) = fd {
                keep_across_exec(fd);
            }
        }
        if args.len() != 14 + 2 * fds.len() {
            return;
        }
        let mut argv: Vec<*const libc::c_char> = args.iter().map(|a| a.as_ptr()).collect();
        argv.push(std::ptr::null());
        // The log is reopened after the exec; what this image buffered is written now.
        if let Some(mut log) = self.log.take() {
            log.flush();
        }
        // SAFETY: argv is a NULL-terminated array of pointers into `args`, alive for the call;
        // the environment is passed as it is.
        unsafe {
            libc::execv(c"/proc/self/exe".as_ptr(), argv.as_ptr());
        }
        // Failed: take the descriptors back and go on in this image.
        for (_, fd) in fds {
            if let Some(fd) = fd {
                // SAFETY: fcntl on an fd this process owns.
                unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
            }
        }
        self.log = logs::Writer::open(&self.dir.join(logs::LOG_FILE)).ok();
    }

    /// Rebuilds the supervisor after the re-exec from `--NAME FD` arguments.
    fn from_args(
        root: &Path,
        id: &str,
        mode: Mode,
        opts: &std::collections::HashMap<String, String>,
    ) -> Option<Supervisor> {
        let num = |k: &str| opts.get(k).and_then(|v| v.parse::<i32>().ok());
        let fd = |k: &str| -> Option<OwnedFd> {
            let n = num(k).filter(|n| *n >= 0)?;
            // The fds of this list were left open for us by the image before the exec.
            // SAFETY: we own these descriptors from here on.
            unsafe { libc::fcntl(n, libc::F_SETFD, libc::FD_CLOEXEC) };
            // SAFETY: as above.
            Some(unsafe { OwnedFd::from_raw_fd(n) })
        };
        let root = StateRoot {
            path: root.to_path_buf(),
        };
        let dir = root.dir(id);
        let out = fd("out");
        let pty = (num("tty") == Some(1))
            .then(|| out.as_ref().map(|o| o.as_raw_fd()))
            .flatten();
        let listener = fd("listener").map(UnixListener::from);
        Some(Supervisor {
            dir: dir.clone(),
            id: id.to_string(),
            mode,
            pid: num("pid")?,
            pidfd: fd("pidfd"),
            sync: fd("sync"),
            out,
            err: fd("err"),
            stdin: fd("stdin"),
            pty,
            stdin_to_pty: num("stdin-to-pty") == Some(1),
            log: logs::Writer::open(&dir.join(logs::LOG_FILE)).ok(),
            listener,
            clients: Vec::new(),
            root,
        })
    }

    fn broadcast(&mut self, kind: u8, data: &[u8]) {
        let frame = attach::encode(kind, data);
        for c in &mut self.clients {
            let wants = match kind {
                attach::M_EXIT => true,
                _ => c.hello.is_some_and(|h| h & attach::HELLO_OUTPUT != 0),
            };
            if wants && !c.dead && !send_client(&c.stream, &frame) {
                c.dead = true;
            }
        }
    }

    fn output(&mut self, stream: Stream, data: &[u8]) {
        if let Some(log) = &mut self.log {
            log.write(stream, data);
        }
        let kind = match stream {
            Stream::Stdout => attach::M_STDOUT,
            Stream::Stderr => attach::M_STDERR,
        };
        self.broadcast(kind, data);
    }

    /// Reads what one output fd has; false when it reached its end.
    fn pump(&mut self, stream: Stream) -> bool {
        let fd = match stream {
            Stream::Stdout => self.out.as_ref(),
            Stream::Stderr => self.err.as_ref(),
        }
        .map(|f| f.as_raw_fd());
        let Some(fd) = fd else { return false };
        let mut buf = [0u8; 32768];
        match read_some(fd, &mut buf) {
            None => true,
            Some(0) => {
                match stream {
                    Stream::Stdout => {
                        self.pty = None;
                        self.out = None
                    }
                    Stream::Stderr => self.err = None,
                }
                false
            }
            Some(n) => {
                self.output(stream, &buf[..n]);
                true
            }
        }
    }

    fn accept(&mut self) {
        let Some(l) = &self.listener else { return };
        while let Ok((s, _)) = l.accept() {
            if s.set_nonblocking(true).is_ok() {
                self.clients.push(Client {
                    stream: s,
                    hello: None,
                    buf: Vec::new(),
                    dead: false,
                });
            }
        }
    }

    fn client_input(&mut self, i: usize) {
        let mut chunk = [0u8; 16384];
        let fd = self.clients[i].stream.as_raw_fd();
        match read_some(fd, &mut chunk) {
            None => return,
            Some(0) => {
                self.clients[i].dead = true;
                return;
            }
            Some(n) => self.clients[i].buf.extend_from_slice(&chunk[..n]),
        }
        let c = &mut self.clients[i];
        if c.hello.is_none() && !c.buf.is_empty() {
            c.hello = Some(c.buf.remove(0));
            if !send_client(&c.stream, &attach::encode(attach::M_READY, &[])) {
                c.dead = true;
            }
        }
        let may_write = c.hello.is_some_and(|h| h & attach::HELLO_STDIN != 0);
        let mut frames = Vec::new();
        while let Some(f) = attach::take_frame(&mut c.buf) {
            frames.push(f);
        }
        if c.buf.len() > attach::MAX_FRAME + 5 {
            c.dead = true;
        }
        for (kind, payload) in frames {
            match kind {
                attach::C_STDIN if may_write => {
                    let pty = self.pty.filter(|_| self.stdin_to_pty);
                    let target = self.stdin.as_ref().map(|f| f.as_raw_fd()).or(pty);
                    if let Some(fd) = target {
                        if !write_all_fd(fd, &payload) && self.pty.is_none() {
                            self.stdin = None;
                        }
                    }
                }
                attach::C_STDIN_EOF if may_write => {
                    // Closing the pipe gives the container its end of input (not for a pty).
                    self.stdin = None;
                }
                attach::C_RESIZE if payload.len() == 4 => {
                    if let Some(pty) = self.pty {
                        let ws = libc::winsize {
                            ws_row: u16::from_be_bytes([payload[0], payload[1]]),
                            ws_col: u16::from_be_bytes([payload[2], payload[3]]),
                            ws_xpixel: 0,
                            ws_ypixel: 0,
                        };
                        // SAFETY: TIOCSWINSZ takes a pointer to a winsize.
                        unsafe { libc::ioctl(pty, libc::TIOCSWINSZ, &ws) };
                    }
                }
                _ => {}
            }
        }
    }

    fn exited(&self) -> bool {
        if self.pidfd.is_some() {
            return false;
        }
        // Without a pidfd: poll the child.
        let mut info: libc::siginfo_t =
            // SAFETY: an all-zero siginfo is a valid out-buffer.
            unsafe { std::mem::zeroed() };
        // SAFETY: waitid with WNOWAIT only looks.
        let r = unsafe {
            libc::waitid(
                libc::P_PID,
                self.pid as libc::id_t,
                &mut info,
                libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
            )
        };
        // SAFETY: si_pid is valid for a filled siginfo from waitid.
        r == 0 && unsafe { info.si_pid() } != 0
    }

    fn run(&mut self) {
        loop {
            self.clients.retain(|c| !c.dead);
            let mut fds: Vec<libc::pollfd> = Vec::with_capacity(4 + self.clients.len());
            let pf = |fd: RawFd| libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            };
            let pidfd = self.pidfd.as_ref().map(|f| f.as_raw_fd());
            fds.push(pf(pidfd.unwrap_or(-1)));
            fds.push(pf(self.out.as_ref().map_or(-1, |f| f.as_raw_fd())));
            fds.push(pf(self.err.as_ref().map_or(-1, |f| f.as_raw_fd())));
            fds.push(pf(self.listener.as_ref().map_or(-1, |l| l.as_raw_fd())));
            for c in &self.clients {
                fds.push(pf(c.stream.as_raw_fd()));
            }
            let timeout = if pidfd.is_some() { -1 } else { 200 };
            // SAFETY: `fds` is a valid array of pollfds.
            let r = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout) };
            if r < 0 {
                if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let ready = |i: usize| fds[i].revents != 0;
            if ready(1) {
                self.pump(Stream::Stdout);
            }
            if ready(2) {
                self.pump(Stream::Stderr);
            }
            if ready(3) {
                self.accept();
            }
            for i in 4..fds.len() {
                if ready(i) {
                    self.client_input(i - 4);
                }
            }
            if ready(0) || self.exited() {
                break;
            }
        }
        self.finish();
    }

    /// The exit code, and the error when the command never exec'd (create mode: the exec
    /// after `start` failed, reported on the sync socket).
    fn reap(&mut self) -> (i32, Option<String>) {
        let code = launch::wait_pid(self.pid).unwrap_or(-1);
        if self.mode != Mode::Create {
            return (code, None);
        }
        let Some(sync) = self.sync.take() else {
            return (code, None);
        };
        match launch::sync::recv(sync.as_raw_fd()) {
            Ok(Some((m, _))) if m.kind == launch::sync::CHILD_ERROR => {
                let e = match Container::load(&self.root, &self.id).and_then(|c| c.spec()) {
                    Ok(spec) => launch::child_error_from(&spec, m),
                    Err(_) => LaunchError::Child {
                        step: launch::child::Step::from_u32(m.step)
                            .unwrap_or(launch::child::Step::Exec),
                        errno: m.value,
                        message: format!(
                            "container setup failed: {}",
                            std::io::Error::from_raw_os_error(m.value)
                        ),
                        exit_code: code,
                    },
                };
                (e.exit_code(), Some(e.to_string()))
            }
            _ => (code, None),
        }
    }

    fn finish(&mut self) {
        let (code, error) = self.reap();
        // What is still in the pipes (the rest of the pid namespace is being killed and lets
        // go of them within moments).
        let deadline = Instant::now() + Duration::from_secs(2);
        while (self.out.is_some() || self.err.is_some()) && Instant::now() < deadline {
            let mut fds = [
                libc::pollfd {
                    fd: self.out.as_ref().map_or(-1, |f| f.as_raw_fd()),
                    events: libc::POLLIN,
                    revents: 0,
                },
                libc::pollfd {
                    fd: self.err.as_ref().map_or(-1, |f| f.as_raw_fd()),
                    events: libc::POLLIN,
                    revents: 0,
                },
            ];
            // SAFETY: valid pollfds.
            unsafe { libc::poll(fds.as_mut_ptr(), 2, 100) };
            if fds[0].revents != 0 {
                self.pump(Stream::Stdout);
            }
            if fds[1].revents != 0 {
                self.pump(Stream::Stderr);
            }
        }
        if let Some(log) = &mut self.log {
            log.flush();
        }
        self.stdin = None;
        let _ = record_exit(&self.root, &self.id, code, error);
        // Clients that connected meanwhile (`wait`) get the exit code too.
        self.accept();
        for i in 0..self.clients.len() {
            if self.clients[i].hello.is_none() {
                self.client_input(i);
            }
        }
        self.broadcast(attach::M_EXIT, &code.to_be_bytes());
        self.clients.clear();
        if let Some(l) = self.listener.take() {
            drop(l);
            if let Ok(d) = attach::open_dir(&self.dir) {
                let _ = std::fs::remove_file(attach::short_path(&d));
            }
        }
    }
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

//! The Python extension module `rootbox._rootbox`: a thin layer over `rootbox_core`, one core
//! call per method. The pure-Python package `rootbox` builds the Docker-SDK-like API on it.
//!
//! Rules kept here:
//! * every call that can block runs with the GIL released (`py.allow_threads`);
//! * long waits (a foreground run, `wait`, an exec, following logs) wait in slices of
//!   [`SLICE`] and check for signals between them, so Ctrl-C raises `KeyboardInterrupt`;
//! * errors become the exception classes of `rootbox.errors`, carrying the core's message,
//!   errno, path and exit code.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pyo3::exceptions::{PyRuntimeError, PyTimeoutError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};

use rootbox_core::build::{self, BuildError, BuildOptions};
use rootbox_core::cgroup::CgroupError;
use rootbox_core::container::commit::{CommitError, CopyIn, CopyOut};
use rootbox_core::container::request::{self, Dirs, RunRequest};
use rootbox_core::container::state::StateRoot;
use rootbox_core::container::{self, logs, manage, StateError};
use rootbox_core::image::archive::{self, ImportOptions, SaveFormat};
use rootbox_core::image::digest::Digest;
use rootbox_core::image::registry::{self, BlobOutcome, Problem, Progress, RegistryError};
use rootbox_core::image::store::human_size;
use rootbox_core::image::{ImageError, Store};
use rootbox_core::network::NetworkError;
use rootbox_core::rootfs::volume::VolumeStore;
use rootbox_core::rootfs::RootfsError;
use rootbox_core::spec::SpecError;
use rootbox_core::Error;

/// How long one wait lasts before signals are checked.
const SLICE: Duration = Duration::from_millis(100);

// ---------------------------------------------------------------------------------------------
// Errors

/// The `rootbox.errors` class for a core error.
fn class_of(e: &Error) -> &'static str {
    match e {
        Error::State(StateError::NotFound(_)) => "ContainerNotFound",
        Error::Image(ImageError::NotFound(_))
        | Error::Registry(RegistryError::Image(ImageError::NotFound(_)))
        | Error::Registry(RegistryError::Failed {
            problem: Problem::UnknownImage | Problem::UnknownTag { .. },
            ..
        }) => "ImageNotFound",
        // A path that is not in the container (get_archive, put_archive).
        Error::Commit(CommitError::Io { source, .. })
            if source.raw_os_error() == Some(libc::ENOENT) =>
        {
            "NotFound"
        }
        Error::Build(BuildError::Io { .. }) => "RuntimeFailure",
        // The Dockerfile or a step of it failed (docker-py's BuildError).
        Error::Build(_) => "BuildError",
        Error::Rootfs(RootfsError::NoVolume(_)) => "VolumeNotFound",
        Error::Network(NetworkError::NoSuchNetwork(_)) => "NotFound",
        Error::Cgroup(CgroupError::Unenforceable { .. } | CgroupError::NoCgroup(..)) => {
            "ResourceLimitUnavailable"
        }
        Error::Spec(SpecError::Invalid(_))
        | Error::State(StateError::BadName(_) | StateError::BadId(_))
        | Error::Image(ImageError::BadReference { .. } | ImageError::BadDigest { .. })
        | Error::Registry(RegistryError::Image(
            ImageError::BadReference { .. } | ImageError::BadDigest { .. },
        ))
        | Error::Cgroup(CgroupError::BadLimit { .. } | CgroupError::Invalid(_))
        | Error::Rootfs(RootfsError::Invalid { .. })
        | Error::Network(NetworkError::Invalid(_) | NetworkError::BadPort { .. })
        | Error::Commit(container::commit::CommitError::Invalid(_)) => "InvalidArgument",
        Error::State(
            StateError::NameInUse { .. }
            | StateError::AlreadyExists(_)
            | StateError::Ambiguous { .. },
        )
        | Error::Image(ImageError::Conflict(_))
        | Error::Rootfs(RootfsError::VolumeInUse { .. }) => "Conflict",
        _ => "RuntimeFailure",
    }
}

/// Builds the Python exception for a core error.
fn py_err(py: Python<'_>, e: Error) -> PyErr {
    let class = class_of(&e);
    let message = e.to_string();
    let made = (|| -> PyResult<PyErr> {
        let cls = py.import("rootbox.errors")?.getattr(class)?;
        let inst = cls.call1((message.clone(),))?;
        inst.setattr("errno", e.errno())?;
        inst.setattr("path", e.path().map(Path::to_path_buf))?;
        inst.setattr("exit_code", e.exit_code())?;
        Ok(PyErr::from_value(inst))
    })();
    made.unwrap_or_else(|err| err)
}

fn core<T, E: Into<Error>>(py: Python<'_>, r: Result<T, E>) -> PyResult<T> {
    r.map_err(|e| py_err(py, e.into()))
}

/// Runs `work` on a thread of its own and waits for it in slices, checking for signals (and
/// `deadline`) between them. On a signal, `on_interrupt` runs and the signal's exception is
/// returned; the thread goes on to its end by itself.
fn wait_thread<T: Send + 'static>(
    py: Python<'_>,
    work: impl FnOnce() -> T + Send + 'static,
    deadline: Option<Instant>,
    on_interrupt: impl FnOnce(&mpsc::Receiver<T>) + Send,
) -> PyResult<T> {
    let (tx, rx) = mpsc::channel();
    // Waited on with the GIL released, from this thread only.
    let rx = std::sync::Mutex::new(rx);
    std::thread::Builder::new()
        .name("rootbox-wait".into())
        .spawn(move || {
            let _ = tx.send(work());
        })
        .map_err(|e| PyRuntimeError::new_err(format!("starting a thread: {e}")))?;
    loop {
        let slice = match deadline {
            Some(d) => d.saturating_duration_since(Instant::now()).min(SLICE),
            None => SLICE,
        };
        let got = py.allow_threads(|| match rx.lock() {
            Ok(rx) => rx.recv_timeout(slice),
            Err(_) => Err(mpsc::RecvTimeoutError::Disconnected),
        });
        match got {
            Ok(v) => return Ok(v),
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                return Err(PyRuntimeError::new_err(
                    "rootbox: the waiting thread ended without a result (a panic in the core)",
                ))
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                if let Err(e) = py.check_signals() {
                    py.allow_threads(|| {
                        if let Ok(rx) = rx.lock() {
                            on_interrupt(&rx)
                        }
                    });
                    return Err(e);
                }
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    return Err(PyTimeoutError::new_err(
                        "timed out waiting for the container",
                    ));
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Requests

fn get_str(d: &Bound<'_, PyDict>, key: &str) -> PyResult<Option<String>> {
    match d.get_item(key)? {
        Some(v) if !v.is_none() => Ok(Some(v.extract()?)),
        _ => Ok(None),
    }
}

fn get_list(d: &Bound<'_, PyDict>, key: &str) -> PyResult<Vec<String>> {
    match d.get_item(key)? {
        Some(v) if !v.is_none() => v.extract(),
        _ => Ok(Vec::new()),
    }
}

fn get_bool(d: &Bound<'_, PyDict>, key: &str) -> PyResult<bool> {
    match d.get_item(key)? {
        Some(v) if !v.is_none() => v.extract(),
        _ => Ok(false),
    }
}

const REQUEST_KEYS: &[&str] = &[
    "image",
    "rootfs",
    "command",
    "entrypoint",
    "storage_driver",
    "volumes",
    "mounts",
    "tmpfs",
    "env",
    "workdir",
    "user",
    "hostname",
    "init",
    "read_only",
    "tty",
    "idmap",
    "network",
    "publish",
    "publish_all",
    "add_hosts",
    "dns",
    "dns_search",
    "security_opt",
    "name",
    "auto_remove",
    "stop_signal",
    "stop_timeout",
    "resources",
    "cgroup_parent",
    "cgroup_manager",
    "cgroup_limits",
];

/// A [`RunRequest`] from a dict of `rootbox run`'s flags (keys as in [`REQUEST_KEYS`];
/// `resources` is a list of `(flag, value)` pairs such as `("memory", "64m")`).
fn request_from(py: Python<'_>, d: &Bound<'_, PyDict>) -> PyResult<RunRequest> {
    for k in d.keys() {
        let k: String = k.extract()?;
        if !REQUEST_KEYS.contains(&k.as_str()) {
            return Err(PyValueError::new_err(format!("unknown run option {k:?}")));
        }
    }
    let mut req = RunRequest {
        image: get_str(d, "image")?,
        rootfs: get_str(d, "rootfs")?.map(PathBuf::from),
        command: get_list(d, "command")?,
        entrypoint: get_str(d, "entrypoint")?,
        storage_driver: get_str(d, "storage_driver")?,
        volumes: get_list(d, "volumes")?,
        mounts: get_list(d, "mounts")?,
        tmpfs: get_list(d, "tmpfs")?,
        env: get_list(d, "env")?,
        workdir: get_str(d, "workdir")?,
        user: get_str(d, "user")?,
        hostname: get_str(d, "hostname")?,
        init: get_bool(d, "init")?,
        read_only: get_bool(d, "read_only")?,
        tty: get_bool(d, "tty")?,
        idmap: get_str(d, "idmap")?,
        network: get_str(d, "network")?,
        publish: get_list(d, "publish")?,
        publish_all: get_bool(d, "publish_all")?,
        add_hosts: get_list(d, "add_hosts")?,
        dns: get_list(d, "dns")?,
        dns_search: get_list(d, "dns_search")?,
        security_opt: get_list(d, "security_opt")?,
        name: get_str(d, "name")?,
        auto_remove: get_bool(d, "auto_remove")?,
        stop_signal: get_str(d, "stop_signal")?,
        cgroup_parent: get_str(d, "cgroup_parent")?,
        ..Default::default()
    };
    if let Some(v) = d.get_item("stop_timeout")? {
        if !v.is_none() {
            req.stop_timeout = Some(v.extract()?);
        }
    }
    if let Some(v) = d.get_item("resources")? {
        if !v.is_none() {
            let pairs: Vec<(String, String)> = v.extract()?;
            for (flag, value) in pairs {
                core(py, req.resources.set(&flag, &value))?;
            }
        }
    }
    if let Some(m) = get_str(d, "cgroup_manager")? {
        req.cgroup.manager = core(py, m.parse::<rootbox_core::cgroup::Manager>())?;
    }
    if let Some(l) = get_str(d, "cgroup_limits")? {
        req.cgroup.policy = core(py, l.parse::<rootbox_core::cgroup::LimitPolicy>())?;
    }
    Ok(req)
}

// ---------------------------------------------------------------------------------------------
// Exec

fn pipe() -> std::io::Result<(File, File)> {
    let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
    Ok((File::from(r), File::from(w)))
}

/// A process started in a running container: its output pipes and its exit.
#[pyclass(module = "rootbox._rootbox")]
struct Exec {
    pid: i32,
    pidfd: Option<OwnedFd>,
    /// Output pipes: (stream number 1 or 2, read end).
    outputs: Vec<(u8, File)>,
    code: Option<i32>,
}

/// Reaps `pid` if it has exited; its exit code then.
fn try_reap(pid: i32) -> Result<Option<i32>, Error> {
    let mut st = 0;
    // SAFETY: waitpid with a valid status pointer, on our own child.
    let r = unsafe { libc::waitpid(pid, &mut st, libc::WNOHANG) };
    if r < 0 {
        let e = std::io::Error::last_os_error();
        return Err(StateError::Other(format!("waiting for process {pid}: {e}")).into());
    }
    Ok((r == pid).then(|| rootbox_core::launch::status_code(st)))
}

fn poll_fds(fds: &[RawFd], timeout: Duration) -> Vec<bool> {
    let mut p: Vec<libc::pollfd> = fds
        .iter()
        .map(|&fd| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    // SAFETY: `p` is a valid array of `p.len()` pollfds.
    let r = unsafe {
        libc::poll(
            p.as_mut_ptr(),
            p.len() as libc::nfds_t,
            timeout.as_millis() as i32,
        )
    };
    if r <= 0 {
        return vec![false; fds.len()];
    }
    p.iter().map(|x| x.revents != 0).collect()
}

#[pymethods]
impl Exec {
    /// The process's host pid.
    #[getter]
    fn pid(&self) -> i32 {
        self.pid
    }

    /// The exit code once known.
    #[getter]
    fn exit_code(&self) -> Option<i32> {
        self.code
    }

    /// The next chunk of output as `(stream, data)` (1: stdout, 2: stderr); None when every
    /// output has ended.
    fn read(&mut self, py: Python<'_>) -> PyResult<Option<(u8, Py<PyBytes>)>> {
        loop {
            if self.outputs.is_empty() {
                return Ok(None);
            }
            let fds: Vec<RawFd> = self.outputs.iter().map(|(_, f)| f.as_raw_fd()).collect();
            let ready = py.allow_threads(|| poll_fds(&fds, SLICE));
            if let Some(i) = ready.iter().position(|r| *r) {
                let (stream, f) = &mut self.outputs[i];
                let stream = *stream;
                let mut buf = vec![0u8; 65536];
                let n = py.allow_threads(|| loop {
                    match f.read(&mut buf) {
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                        r => break r,
                    }
                });
                match n {
                    Ok(0) | Err(_) => {
                        self.outputs.remove(i);
                    }
                    Ok(n) => return Ok(Some((stream, PyBytes::new(py, &buf[..n]).unbind()))),
                }
                continue;
            }
            py.check_signals()?;
        }
    }

    /// Waits for the process to exit (at most `timeout` seconds) and returns its exit code.
    #[pyo3(signature = (timeout=None))]
    fn wait(&mut self, py: Python<'_>, timeout: Option<f64>) -> PyResult<i32> {
        if let Some(c) = self.code {
            return Ok(c);
        }
        let deadline = timeout.map(|t| Instant::now() + Duration::from_secs_f64(t.max(0.0)));
        loop {
            if let Some(c) = core(py, try_reap(self.pid))? {
                self.code = Some(c);
                self.pidfd = None;
                return Ok(c);
            }
            match &self.pidfd {
                Some(fd) => {
                    let fd = fd.as_raw_fd();
                    py.allow_threads(|| poll_fds(&[fd], SLICE));
                }
                None => py.allow_threads(|| std::thread::sleep(Duration::from_millis(10))),
            }
            py.check_signals()?;
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Err(PyTimeoutError::new_err(format!(
                    "process {} still runs after {:?} s",
                    self.pid,
                    timeout.unwrap_or(0.0)
                )));
            }
        }
    }

    /// Sends `signal` to the process (when it has not been reaped yet).
    fn kill(&self, signal: i32) -> PyResult<()> {
        if self.code.is_none() {
            // SAFETY: our own child, not yet reaped: the pid is still its.
            unsafe { libc::kill(self.pid, signal) };
        }
        Ok(())
    }
}

impl Drop for Exec {
    fn drop(&mut self) {
        if self.code.is_none() {
            // Abandoned: nothing will read its output; end it and reap it on a thread.
            self.outputs.clear();
            let pid = self.pid;
            // SAFETY: our own child, not yet reaped.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            let _ = std::thread::Builder::new()
                .name("rootbox-reap".into())
                .spawn(move || rootbox_core::launch::wait_pid(pid));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Logs

/// The next item a producer thread sends, waited for with the GIL released and in slices,
/// so that Ctrl-C (KeyboardInterrupt) is seen; `None` once the producer is gone.
fn recv_interruptible<T: Send>(
    py: Python<'_>,
    rx: &std::sync::Mutex<mpsc::Receiver<T>>,
) -> PyResult<Option<T>> {
    loop {
        let got = py.allow_threads(|| match rx.lock() {
            Ok(rx) => rx.recv_timeout(SLICE),
            Err(_) => Err(mpsc::RecvTimeoutError::Disconnected),
        });
        match got {
            Ok(v) => return Ok(Some(v)),
            Err(mpsc::RecvTimeoutError::Disconnected) => return Ok(None),
            Err(mpsc::RecvTimeoutError::Timeout) => py.check_signals()?,
        }
    }
}

/// The next item of a stream of results: `None` at its end; an error ends it and is raised.
fn next_result<T: Send>(
    py: Python<'_>,
    slot: &mut Option<std::sync::Mutex<mpsc::Receiver<Result<T, Error>>>>,
) -> PyResult<Option<T>> {
    let Some(rx) = slot.as_ref() else {
        return Ok(None);
    };
    match recv_interruptible(py, rx)? {
        Some(Ok(v)) => Ok(Some(v)),
        Some(Err(e)) => {
            *slot = None;
            Err(py_err(py, e))
        }
        None => {
            *slot = None;
            Ok(None)
        }
    }
}

type LogItem = Result<(String, String, Vec<u8>), Error>;

/// Follows a container's log on a thread until the container has stopped.
#[pyclass(module = "rootbox._rootbox")]
struct LogFollower {
    rx: Option<std::sync::Mutex<mpsc::Receiver<LogItem>>>,
    stop: Arc<AtomicBool>,
}

#[pymethods]
impl LogFollower {
    /// The next entry `(stream, time, data)`; None at the end.
    fn next(&mut self, py: Python<'_>) -> PyResult<Option<(String, String, Py<PyBytes>)>> {
        Ok(next_result(py, &mut self.rx)?.map(|(s, t, d)| (s, t, PyBytes::new(py, &d).unbind())))
    }

    /// Stops following.
    fn close(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.rx = None;
    }
}

impl Drop for LogFollower {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

fn log_options(tail: Option<usize>, since: Option<f64>, until: Option<f64>) -> logs::LogOptions {
    logs::LogOptions {
        tail,
        since: since.map(|s| Duration::from_secs_f64(s.max(0.0))),
        until: until.map(|s| Duration::from_secs_f64(s.max(0.0))),
    }
}

// ---------------------------------------------------------------------------------------------
// Registry transfers

/// What a transfer thread sends: progress lines, then its result.
enum Event {
    /// A progress event: a JSON object as docker's pull/push stream has them.
    Line(String),
    /// The end: the image id (pull) or manifest digest (push), or the error.
    Done(Result<String, Error>),
}

/// A [`Progress`] that turns the core's reports into docker-like JSON events.
struct JsonProgress {
    tx: mpsc::Sender<Event>,
    pushing: bool,
    /// Per blob: (bytes so far, bytes at the last event, total).
    blobs: std::sync::Mutex<HashMap<Digest, (u64, u64, u64)>>,
}

impl JsonProgress {
    fn send(&self, v: serde_json::Value) {
        // The reader may be gone (an abandoned stream): the transfer goes on regardless.
        let _ = self.tx.send(Event::Line(v.to_string()));
    }

    fn bytes(&self, d: &Digest, current: u64, total: u64) {
        let width = 50u64;
        let filled = (current.min(total) * width).checked_div(total).unwrap_or(0) as usize;
        let mut bar = "=".repeat(filled);
        if filled < width as usize {
            bar.push('>');
            bar.push_str(&" ".repeat(width as usize - filled - 1));
        }
        self.send(serde_json::json!({
            "status": if self.pushing { "Pushing" } else { "Downloading" },
            "progressDetail": {"current": current, "total": total},
            "progress": format!("[{bar}] {}/{}", human_size(current), human_size(total)),
            "id": short_digest(d),
        }));
    }
}

fn short_digest(d: &Digest) -> String {
    d.hex().chars().take(12).collect()
}

impl Progress for JsonProgress {
    fn message(&self, line: &str) {
        self.send(serde_json::json!({ "status": line }));
    }

    fn start(&self, d: &Digest, total: u64) {
        if let Ok(mut m) = self.blobs.lock() {
            m.insert(d.clone(), (0, 0, total));
        }
        self.bytes(d, 0, total);
    }

    fn advance(&self, d: &Digest, n: u64) {
        // One event per 5% (at least 256 KiB) of a blob, and at its end.
        let report = match self.blobs.lock() {
            Ok(mut m) => match m.get_mut(d) {
                Some((cur, last, total)) => {
                    *cur += n;
                    let step = (*total / 20).max(256 * 1024);
                    if *cur >= *total || *cur - *last >= step {
                        *last = *cur;
                        Some((*cur, *total))
                    } else {
                        None
                    }
                }
                None => None,
            },
            Err(_) => None,
        };
        if let Some((cur, total)) = report {
            self.bytes(d, cur, total);
        }
    }

    fn done(&self, d: &Digest, how: BlobOutcome) {
        let status = match (self.pushing, how) {
            (false, BlobOutcome::Transferred) => "Pull complete",
            (false, _) => "Already exists",
            (true, BlobOutcome::Transferred) => "Pushed",
            (true, BlobOutcome::Exists) => "Layer already exists",
            (true, BlobOutcome::Mounted) => "Mounted from another repository",
        };
        self.send(serde_json::json!({
            "status": status,
            "progressDetail": {},
            "id": short_digest(d),
        }));
    }
}

/// A pull or push running on a thread of its own: its progress events, then its result.
#[pyclass(module = "rootbox._rootbox")]
struct Transfer {
    rx: Option<std::sync::Mutex<mpsc::Receiver<Event>>>,
    result: Option<String>,
}

impl Transfer {
    fn start(
        pushing: bool,
        work: impl FnOnce(Arc<JsonProgress>) -> Result<String, Error> + Send + 'static,
    ) -> PyResult<Transfer> {
        let (tx, rx) = mpsc::channel();
        let progress = Arc::new(JsonProgress {
            tx: tx.clone(),
            pushing,
            blobs: std::sync::Mutex::new(HashMap::new()),
        });
        std::thread::Builder::new()
            .name("rootbox-transfer".into())
            .spawn(move || {
                let r = work(progress);
                let _ = tx.send(Event::Done(r));
            })
            .map_err(|e| PyRuntimeError::new_err(format!("starting a thread: {e}")))?;
        Ok(Transfer {
            rx: Some(std::sync::Mutex::new(rx)),
            result: None,
        })
    }
}

#[pymethods]
impl Transfer {
    /// The next progress event (a JSON object as text); None once the transfer has ended
    /// (then `result` is set). Raises the transfer's error.
    fn next(&mut self, py: Python<'_>) -> PyResult<Option<String>> {
        let Some(rx) = &self.rx else { return Ok(None) };
        let got = recv_interruptible(py, rx)?;
        match got {
            Some(Event::Line(l)) => Ok(Some(l)),
            Some(Event::Done(r)) => {
                self.rx = None;
                match r {
                    Ok(v) => {
                        self.result = Some(v);
                        Ok(None)
                    }
                    Err(e) => Err(py_err(py, e)),
                }
            }
            None => {
                self.rx = None;
                Err(PyRuntimeError::new_err(
                    "rootbox: the transfer thread ended without a result (a panic in the core)",
                ))
            }
        }
    }

    /// The image id (pull) or manifest digest (push) once the transfer has ended.
    #[getter]
    fn result(&self) -> Option<String> {
        self.result.clone()
    }
}

/// Registry options of a call: credentials given (else stored ones), the platform, and the
/// CA directory of `$ROOTBOX_CERT_DIR` as the command line takes it.
fn registry_options(
    platform: Option<String>,
    username: Option<String>,
    password: Option<String>,
    authfile: Option<PathBuf>,
) -> registry::Options {
    registry::Options {
        creds: username.map(|u| (u, password.unwrap_or_default())),
        platform,
        authfile,
        cert_dir: std::env::var_os("ROOTBOX_CERT_DIR")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from),
        ..Default::default()
    }
}

// ---------------------------------------------------------------------------------------------
// Archives and build output

/// A tar stream made on a thread, in chunks.
#[pyclass(module = "rootbox._rootbox")]
struct Chunks {
    rx: Option<std::sync::Mutex<mpsc::Receiver<Chunk>>>,
}

/// A piece of an archive, or the error that ended it.
type Chunk = Result<Vec<u8>, Error>;

#[pymethods]
impl Chunks {
    /// The next chunk; None at the end. Raises the error that stopped the stream.
    fn next(&mut self, py: Python<'_>) -> PyResult<Option<Py<PyBytes>>> {
        Ok(next_result(py, &mut self.rx)?.map(|b| PyBytes::new(py, &b).unbind()))
    }

    /// Stops the stream (the thread making it ends at its next write).
    fn close(&mut self) {
        self.rx = None;
    }
}

/// A writer sending what it is given in chunks of `chunk` bytes; fails once the reader is gone.
struct ChunkWriter {
    tx: mpsc::SyncSender<Chunk>,
    buf: Vec<u8>,
    chunk: usize,
    gone: bool,
}

impl ChunkWriter {
    fn send(&mut self) -> std::io::Result<()> {
        let cap = self.chunk.min(1 << 20);
        let full = std::mem::replace(&mut self.buf, Vec::with_capacity(cap));
        if self.tx.send(Ok(full)).is_err() {
            self.gone = true;
            return Err(std::io::Error::new(
                std::io::ErrorKind::BrokenPipe,
                "the archive's reader has gone",
            ));
        }
        Ok(())
    }
}

impl Write for ChunkWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let mut rest = data;
        while !rest.is_empty() {
            let n = (self.chunk - self.buf.len()).min(rest.len());
            self.buf.extend_from_slice(&rest[..n]);
            rest = &rest[n..];
            if self.buf.len() >= self.chunk {
                self.send()?;
            }
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Build output, collected for the caller.
struct SharedOut(Arc<std::sync::Mutex<Vec<u8>>>);

impl Write for SharedOut {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        if let Ok(mut v) = self.0.lock() {
            v.extend_from_slice(data);
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// `(name, size, st_mode, mtime seconds, mtime nanoseconds, link target)` of a container path.
type StatTuple = (String, u64, u32, i64, i64, String);

// ---------------------------------------------------------------------------------------------
// The runtime

/// One state directory and one store: what `rootbox --state-dir --root` names.
#[pyclass(module = "rootbox._rootbox", frozen)]
struct Runtime {
    dirs: Dirs,
}

impl Runtime {
    fn root(&self, py: Python<'_>) -> PyResult<StateRoot> {
        let path = self.dirs.state.clone();
        core(py, py.allow_threads(|| StateRoot::open(&path)))
    }

    fn store(&self, py: Python<'_>) -> PyResult<Store> {
        let path = self.dirs.store.clone();
        core(py, py.allow_threads(|| Store::open(Some(path))))
    }

    fn volumes(&self, py: Python<'_>) -> PyResult<VolumeStore> {
        let path = self.dirs.store.clone();
        core(py, py.allow_threads(|| VolumeStore::open(&path)))
    }
}

/// `(exit_code, oom_killed, stdout, stderr, id)` of a captured run.
type RunResult = (i32, bool, Py<PyBytes>, Py<PyBytes>, String);

fn to_json<T: serde::Serialize>(v: &T) -> PyResult<String> {
    serde_json::to_string(v).map_err(|e| PyRuntimeError::new_err(format!("encoding JSON: {e}")))
}

#[pymethods]
impl Runtime {
    #[new]
    #[pyo3(signature = (state_dir=None, store_dir=None))]
    fn new(state_dir: Option<PathBuf>, store_dir: Option<PathBuf>) -> Self {
        Runtime {
            dirs: Dirs::new(state_dir.as_deref(), store_dir.as_deref()),
        }
    }

    #[getter]
    fn state_dir(&self) -> PathBuf {
        self.dirs.state.clone()
    }

    #[getter]
    fn store_dir(&self) -> PathBuf {
        self.dirs.store.clone()
    }

    /// Runs a container to its end with stdout and stderr captured:
    /// `(exit_code, oom_killed, stdout, stderr, id)`. Ctrl-C kills the container.
    fn run(
        &self,
        py: Python<'_>,
        request: &Bound<'_, PyDict>,
        remove: bool,
    ) -> PyResult<RunResult> {
        let req = request_from(py, request)?;
        let dirs = self.dirs.clone();
        let root = self.root(py)?;
        let prepared = core(py, py.allow_threads(|| request::prepare(&req, &dirs)))?;
        let id = prepared.id.clone();
        let run_id = id.clone();
        let run_root = root.clone();
        let captured = wait_thread(
            py,
            move || prepared.run_captured(&run_root, remove),
            None,
            |rx| {
                // Stop the container, then let the run finish (reap it, remove it).
                let until = Instant::now() + Duration::from_secs(10);
                while Instant::now() < until {
                    let _ = manage::kill(&root, &id, libc::SIGKILL);
                    if rx.recv_timeout(Duration::from_millis(50)).is_ok() {
                        break;
                    }
                }
            },
        )?;
        let c = core(py, captured)?;
        Ok((
            c.exit.code,
            c.exit.oom_killed,
            PyBytes::new(py, &c.stdout).unbind(),
            PyBytes::new(py, &c.stderr).unbind(),
            run_id,
        ))
    }

    /// Starts a container in the background under its monitor; returns its id.
    fn run_detached(&self, py: Python<'_>, request: &Bound<'_, PyDict>) -> PyResult<String> {
        let req = request_from(py, request)?;
        let dirs = self.dirs.clone();
        let root = self.root(py)?;
        let c = core(
            py,
            py.allow_threads(|| request::prepare(&req, &dirs)?.start_detached(&root)),
        )?;
        Ok(c.id().to_string())
    }

    /// Creates a container (set up, waiting for `start`); returns its id.
    fn create(&self, py: Python<'_>, request: &Bound<'_, PyDict>) -> PyResult<String> {
        let req = request_from(py, request)?;
        let dirs = self.dirs.clone();
        let root = self.root(py)?;
        let c = core(
            py,
            py.allow_threads(|| request::prepare(&req, &dirs)?.create(&root)),
        )?;
        Ok(c.id().to_string())
    }

    /// The full id of a container reference (id, name or unique id prefix).
    fn resolve(&self, py: Python<'_>, reference: &str) -> PyResult<String> {
        let root = self.root(py)?;
        let c = core(py, py.allow_threads(|| manage::lookup(&root, reference)))?;
        Ok(c.id().to_string())
    }

    /// Docker's inspect JSON of a container.
    fn inspect(&self, py: Python<'_>, reference: &str) -> PyResult<String> {
        let root = self.root(py)?;
        let v = core(
            py,
            py.allow_threads(|| manage::lookup(&root, reference).map(|c| manage::inspect(&c))),
        )?;
        to_json(&v)
    }

    /// Ids of the containers (running ones only unless `all`), newest first.
    #[pyo3(signature = (all=false, filters=Vec::new()))]
    fn list(&self, py: Python<'_>, all: bool, filters: Vec<String>) -> PyResult<Vec<String>> {
        let root = self.root(py)?;
        let mut f = manage::Filters::default();
        for x in &filters {
            if let Err(e) = f.add(x) {
                return Err(PyValueError::new_err(e.to_string()));
            }
        }
        let rows = core(py, py.allow_threads(|| manage::ps(&root, all, &f)))?;
        Ok(rows.into_iter().map(|r| r.id).collect())
    }

    fn start(&self, py: Python<'_>, reference: &str) -> PyResult<()> {
        let root = self.root(py)?;
        core(py, py.allow_threads(|| manage::start(&root, reference)))?;
        Ok(())
    }

    #[pyo3(signature = (reference, timeout=None))]
    fn stop(&self, py: Python<'_>, reference: &str, timeout: Option<u32>) -> PyResult<()> {
        let root = self.root(py)?;
        core(
            py,
            py.allow_threads(|| manage::stop(&root, reference, timeout, None)),
        )?;
        Ok(())
    }

    #[pyo3(signature = (reference, timeout=None))]
    fn restart(&self, py: Python<'_>, reference: &str, timeout: Option<u32>) -> PyResult<()> {
        let root = self.root(py)?;
        core(
            py,
            py.allow_threads(|| manage::restart(&root, reference, timeout)),
        )?;
        Ok(())
    }

    /// Sends a signal (a name such as "SIGTERM"/"TERM" or a number) to the container.
    fn kill(&self, py: Python<'_>, reference: &str, signal: &str) -> PyResult<()> {
        let sig = match container::kill::parse_signal(signal) {
            Ok(s) => s,
            Err(e) => return Err(PyValueError::new_err(e.to_string())),
        };
        let root = self.root(py)?;
        core(py, py.allow_threads(|| manage::kill(&root, reference, sig)))?;
        Ok(())
    }

    #[pyo3(signature = (reference, force=false))]
    fn remove(&self, py: Python<'_>, reference: &str, force: bool) -> PyResult<String> {
        let root = self.root(py)?;
        core(
            py,
            py.allow_threads(|| manage::remove(&root, reference, force)),
        )
    }

    fn rename(&self, py: Python<'_>, reference: &str, new: &str) -> PyResult<()> {
        let root = self.root(py)?;
        core(
            py,
            py.allow_threads(|| manage::rename(&root, reference, new)),
        )
    }

    fn pause(&self, py: Python<'_>, reference: &str) -> PyResult<()> {
        let root = self.root(py)?;
        core(
            py,
            py.allow_threads(|| {
                let c = manage::lookup(&root, reference)?;
                container::pause::pause(&root, c.id()).map_err(Error::from)
            }),
        )
    }

    fn unpause(&self, py: Python<'_>, reference: &str) -> PyResult<()> {
        let root = self.root(py)?;
        core(
            py,
            py.allow_threads(|| {
                let c = manage::lookup(&root, reference)?;
                container::pause::resume(&root, c.id()).map_err(Error::from)
            }),
        )
    }

    /// Removes every stopped container; their ids.
    fn prune(&self, py: Python<'_>) -> PyResult<Vec<String>> {
        let root = self.root(py)?;
        core(py, py.allow_threads(|| manage::prune(&root)))
    }

    /// Waits until the container has exited (at most `timeout` seconds); its exit code.
    #[pyo3(signature = (reference, timeout=None))]
    fn wait(&self, py: Python<'_>, reference: &str, timeout: Option<f64>) -> PyResult<i32> {
        let root = self.root(py)?;
        // Resolved first, so a bad reference fails here and not on the thread.
        let c = core(py, py.allow_threads(|| manage::lookup(&root, reference)))?;
        let id = c.id().to_string();
        let deadline = timeout.map(|t| Instant::now() + Duration::from_secs_f64(t.max(0.0)));
        let r = wait_thread(py, move || manage::wait(&root, &id), deadline, |_| {})?;
        core(py, r)
    }

    /// The log entries `(stream, time, data)` written so far.
    #[pyo3(signature = (reference, tail=None, since=None, until=None))]
    fn logs(
        &self,
        py: Python<'_>,
        reference: &str,
        tail: Option<usize>,
        since: Option<f64>,
        until: Option<f64>,
    ) -> PyResult<Vec<(String, String, Py<PyBytes>)>> {
        let root = self.root(py)?;
        let opts = log_options(tail, since, until);
        let entries = core(
            py,
            py.allow_threads(|| {
                let mut out = Vec::new();
                manage::logs(&root, reference, &opts, false, |e| {
                    out.push(e.clone());
                    true
                })
                .map(|_| out)
            }),
        )?;
        Ok(entries
            .into_iter()
            .map(|e| {
                (
                    e.stream.as_str().to_string(),
                    e.time,
                    PyBytes::new(py, &e.data).unbind(),
                )
            })
            .collect())
    }

    /// Follows the log until the container has stopped.
    #[pyo3(signature = (reference, tail=None, since=None, until=None))]
    fn follow_logs(
        &self,
        py: Python<'_>,
        reference: &str,
        tail: Option<usize>,
        since: Option<f64>,
        until: Option<f64>,
    ) -> PyResult<LogFollower> {
        let root = self.root(py)?;
        let c = core(py, py.allow_threads(|| manage::lookup(&root, reference)))?;
        let id = c.id().to_string();
        let opts = log_options(tail, since, until);
        let (tx, rx) = mpsc::channel::<LogItem>();
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        std::thread::Builder::new()
            .name("rootbox-logs".into())
            .spawn(move || {
                let r = manage::logs(&root, &id, &opts, true, |e| {
                    !stop2.load(Ordering::SeqCst)
                        && tx
                            .send(Ok((
                                e.stream.as_str().to_string(),
                                e.time.clone(),
                                e.data.clone(),
                            )))
                            .is_ok()
                });
                if let Err(e) = r {
                    let _ = tx.send(Err(e.into()));
                }
            })
            .map_err(|e| PyRuntimeError::new_err(format!("starting a thread: {e}")))?;
        Ok(LogFollower {
            rx: Some(std::sync::Mutex::new(rx)),
            stop,
        })
    }

    /// Starts `command` in a running container. `stdout`/`stderr`: capture that stream;
    /// `demux`: in separate pipes (else one pipe, in order); `detach`: no output, reaped in
    /// the background.
    #[pyo3(signature = (reference, command, env=Vec::new(), workdir=None, user=None, stdout=true, stderr=true, demux=false, detach=false))]
    #[allow(clippy::too_many_arguments)]
    fn exec(
        &self,
        py: Python<'_>,
        reference: &str,
        command: Vec<String>,
        env: Vec<String>,
        workdir: Option<String>,
        user: Option<String>,
        stdout: bool,
        stderr: bool,
        demux: bool,
        detach: bool,
    ) -> PyResult<Exec> {
        if command.is_empty() {
            return Err(PyValueError::new_err("exec needs a command"));
        }
        if let Some(w) = &workdir {
            if !w.starts_with('/') {
                return Err(PyValueError::new_err(format!(
                    "working directory {w:?} is not an absolute path"
                )));
            }
        }
        let uid_gid = match &user {
            Some(u) if !u.is_empty() => match rootbox_core::spec::parse_numeric_user(u) {
                Ok(x) => Some(x),
                Err(e) => return Err(PyValueError::new_err(e.to_string())),
            },
            _ => None,
        };
        let root = self.root(py)?;
        let result = py.allow_threads(|| -> Result<Exec, Error> {
            let c = manage::lookup(&root, reference)?;
            let mut p = container::exec::process_for(&c, command, &env, workdir.as_deref(), false)?;
            if let Some((uid, gid)) = uid_gid {
                let mut u = p.user().clone();
                u.set_uid(uid);
                u.set_gid(gid.unwrap_or(uid));
                u.set_additional_gids(None);
                p.set_user(u);
            }
            let io =
                |e: std::io::Error| Error::from(StateError::Other(format!("making a pipe: {e}")));
            let null = File::open("/dev/null")
                .map_err(|e| Error::from(StateError::Other(format!("/dev/null: {e}"))))?;
            let mut outputs = Vec::new();
            let mut fds = [null.as_raw_fd(); 3];
            let mut keep: Vec<File> = Vec::new();
            if !detach && (stdout || stderr) {
                if demux {
                    for (i, want) in [(1u8, stdout), (2u8, stderr)] {
                        if want {
                            let (r, w) = pipe().map_err(io)?;
                            fds[i as usize] = w.as_raw_fd();
                            outputs.push((i, r));
                            keep.push(w);
                        }
                    }
                } else {
                    let (r, w) = pipe().map_err(io)?;
                    if stdout {
                        fds[1] = w.as_raw_fd();
                    }
                    if stderr {
                        fds[2] = w.as_raw_fd();
                    }
                    outputs.push((1, r));
                    keep.push(w);
                }
            }
            let lopts = rootbox_core::launch::LaunchOptions {
                stdio: Some(fds),
                ..Default::default()
            };
            let mut launched = container::exec::exec(&root, c.id(), &p, &lopts)?;
            // Only the process holds the write ends now.
            drop(keep);
            drop(null);
            let pid = launched.pid;
            if detach {
                std::thread::Builder::new()
                    .name("rootbox-reap".into())
                    .spawn(move || rootbox_core::launch::wait_pid(pid))
                    .map_err(|e| StateError::Other(format!("starting a thread: {e}")))?;
                return Ok(Exec {
                    pid,
                    pidfd: None,
                    outputs: Vec::new(),
                    code: Some(0),
                });
            }
            Ok(Exec {
                pid,
                pidfd: launched.pidfd.take(),
                outputs,
                code: None,
            })
        });
        core(py, result)
    }

    /// Usage figures of the container's cgroup (JSON).
    fn stats(&self, py: Python<'_>, reference: &str) -> PyResult<String> {
        let root = self.root(py)?;
        let s = core(
            py,
            py.allow_threads(|| {
                let c = manage::lookup(&root, reference)?;
                c.stats().map_err(Error::from)
            }),
        )?;
        to_json(&s)
    }

    /// The container's processes (JSON rows of `top`).
    fn top(&self, py: Python<'_>, reference: &str) -> PyResult<String> {
        let root = self.root(py)?;
        let rows = core(
            py,
            py.allow_threads(|| {
                let c = manage::lookup(&root, reference)?;
                manage::top(&c).map_err(Error::from)
            }),
        )?;
        to_json(&rows)
    }

    /// The container's writable layer as a new image (named `repository` when given); its id.
    #[pyo3(signature = (reference, repository=None, message=None, author=None, changes=Vec::new(), pause=true))]
    #[allow(clippy::too_many_arguments)]
    fn commit(
        &self,
        py: Python<'_>,
        reference: &str,
        repository: Option<String>,
        message: Option<String>,
        author: Option<String>,
        changes: Vec<String>,
        pause: bool,
    ) -> PyResult<String> {
        let root = self.root(py)?;
        let store = self.dirs.store.clone();
        let opts = container::commit::CommitOptions {
            reference: repository,
            message,
            author,
            changes,
            pause,
        };
        let c = core(
            py,
            py.allow_threads(|| container::commit::commit(&root, &store, reference, &opts)),
        )?;
        Ok(c.id.to_string())
    }

    /// The changes of the container's writable layer: `(path, kind)` with kind 0 changed,
    /// 1 added, 2 deleted (Docker's numbers), sorted by path.
    fn diff(&self, py: Python<'_>, reference: &str) -> PyResult<Vec<(String, u8)>> {
        let root = self.root(py)?;
        let changes = core(
            py,
            py.allow_threads(|| container::commit::diff(&root, reference)),
        )?;
        Ok(changes
            .into_iter()
            .map(|c| {
                let kind = match c.kind {
                    rootbox_core::image::layerdiff::Kind::Changed => 0,
                    rootbox_core::image::layerdiff::Kind::Added => 1,
                    rootbox_core::image::layerdiff::Kind::Deleted => 2,
                };
                (format!("/{}", String::from_utf8_lossy(&c.path)), kind)
            })
            .collect())
    }

    /// Writes the container's merged file tree as a tar to `path`.
    fn export(&self, py: Python<'_>, reference: &str, path: PathBuf) -> PyResult<()> {
        let root = self.root(py)?;
        core(
            py,
            py.allow_threads(|| -> Result<(), Error> {
                let mut f = std::io::BufWriter::new(File::create(&path).map_err(|e| {
                    Error::from(StateError::Other(format!("{}: {e}", path.display())))
                })?);
                container::commit::export(&root, reference, &mut f)?;
                std::io::Write::flush(&mut f)
                    .map_err(|e| StateError::Other(format!("{}: {e}", path.display())))?;
                Ok(())
            }),
        )
    }

    // ---- images -----------------------------------------------------------------------------

    /// Inspect JSON of every image.
    fn images(&self, py: Python<'_>) -> PyResult<String> {
        let store = self.store(py)?;
        let list = core(py, py.allow_threads(|| store.images()))?;
        let v: Vec<serde_json::Value> = list.iter().map(|i| i.inspect()).collect();
        to_json(&v)
    }

    /// Inspect JSON of one image (a name, an id or an id prefix).
    fn image_inspect(&self, py: Python<'_>, reference: &str) -> PyResult<String> {
        let store = self.store(py)?;
        let img = core(py, py.allow_threads(|| store.resolve(reference)))?;
        to_json(&img.inspect())
    }

    /// Names `src` also `dst`; the full new name.
    fn image_tag(&self, py: Python<'_>, src: &str, dst: &str) -> PyResult<String> {
        let store = self.store(py)?;
        let r = core(py, py.allow_threads(|| store.tag(src, dst)))?;
        Ok(r.to_string())
    }

    #[pyo3(signature = (images, force=false))]
    fn image_remove(
        &self,
        py: Python<'_>,
        images: Vec<String>,
        force: bool,
    ) -> PyResult<Vec<String>> {
        let store = self.store(py)?;
        core(py, py.allow_threads(|| store.remove(&images, force)))
    }

    /// Removes dangling (all unused with `all`) images: (removed, bytes freed).
    #[pyo3(signature = (all=false))]
    fn image_prune(&self, py: Python<'_>, all: bool) -> PyResult<(Vec<String>, u64)> {
        let store = self.store(py)?;
        core(py, py.allow_threads(|| store.prune(all)))
    }

    /// Loads a docker-archive / OCI archive or layout; the ids of the images loaded.
    fn image_load(&self, py: Python<'_>, path: PathBuf) -> PyResult<Vec<String>> {
        let store = self.store(py)?;
        let loaded = core(py, py.allow_threads(|| archive::load(&store, &path)))?;
        Ok(loaded.iter().map(|l| l.id.to_string()).collect())
    }

    /// Imports a root filesystem tarball as a one-layer image; its id.
    #[pyo3(signature = (path, reference=None, changes=Vec::new(), message=None))]
    fn image_import(
        &self,
        py: Python<'_>,
        path: PathBuf,
        reference: Option<String>,
        changes: Vec<String>,
        message: Option<String>,
    ) -> PyResult<String> {
        let store = self.store(py)?;
        let opts = ImportOptions { changes, message };
        let l = core(
            py,
            py.allow_threads(|| archive::import(&store, &path, reference.as_deref(), &opts)),
        )?;
        Ok(l.id.to_string())
    }

    /// Writes images to `path` as a docker-archive, oci-archive or oci-dir.
    #[pyo3(signature = (images, path, format="docker-archive"))]
    fn image_save(
        &self,
        py: Python<'_>,
        images: Vec<String>,
        path: PathBuf,
        format: &str,
    ) -> PyResult<()> {
        let format: SaveFormat = core(py, format.parse::<SaveFormat>())?;
        let store = self.store(py)?;
        core(
            py,
            py.allow_threads(|| archive::save(&store, &images, &path, format)),
        )
    }

    /// Pulls `reference` (progress events, then the image id as `result`). `username`:
    /// these credentials instead of stored ones.
    #[pyo3(signature = (reference, platform=None, username=None, password=None))]
    fn pull(
        &self,
        py: Python<'_>,
        reference: String,
        platform: Option<String>,
        username: Option<String>,
        password: Option<String>,
    ) -> PyResult<Transfer> {
        let store = self.store(py)?;
        let opts = registry_options(platform, username, password, None);
        Transfer::start(false, move |p| {
            let pulled = registry::pull(&store, &reference, &opts, true, p.as_ref())?;
            let r = pulled.reference.familiar();
            p.message(&if pulled.downloaded > 0 {
                format!("Status: Downloaded newer image for {r}")
            } else {
                format!("Status: Image is up to date for {r}")
            });
            Ok(pulled.image.id().to_string())
        })
    }

    /// Pushes the stored image `source` to `destination` (default: `source`): progress
    /// events, then the manifest digest as `result`.
    #[pyo3(signature = (source, destination=None, username=None, password=None))]
    fn push(
        &self,
        py: Python<'_>,
        source: String,
        destination: Option<String>,
        username: Option<String>,
        password: Option<String>,
    ) -> PyResult<Transfer> {
        let store = self.store(py)?;
        let opts = registry_options(None, username, password, None);
        Transfer::start(true, move |p| {
            let progress: Arc<dyn Progress> = p.clone();
            let pushed = registry::push(&store, &source, destination.as_deref(), &opts, progress)?;
            let size = store.resolve(&source)?.manifest_size;
            let tag = pushed
                .reference
                .tag
                .clone()
                .unwrap_or_else(|| "latest".into());
            let digest = pushed.digest.to_string();
            p.message(&format!("{tag}: digest: {digest} size: {size}"));
            p.send(serde_json::json!({
                "progressDetail": {},
                "aux": {"Tag": tag, "Digest": digest, "Size": size},
            }));
            Ok(digest)
        })
    }

    /// The tags of a repository in its registry.
    #[pyo3(signature = (repository, username=None, password=None))]
    fn registry_tags(
        &self,
        py: Python<'_>,
        repository: String,
        username: Option<String>,
        password: Option<String>,
    ) -> PyResult<Vec<String>> {
        let opts = registry_options(None, username, password, None);
        core(py, py.allow_threads(|| registry::tags(&repository, &opts)))
    }

    /// Checks the credentials with the registry and stores them (in `authfile`, else where
    /// `rootbox login` stores them); the file written.
    #[pyo3(signature = (registry, username, password, authfile=None))]
    fn login(
        &self,
        py: Python<'_>,
        registry: String,
        username: String,
        password: String,
        authfile: Option<PathBuf>,
    ) -> PyResult<PathBuf> {
        let opts = registry_options(None, None, None, authfile);
        core(
            py,
            py.allow_threads(|| registry::login(&registry, &username, &password, &opts)),
        )
    }

    /// Builds an image from a Dockerfile: `(image id, build output)`. A failure raises with
    /// the output so far as the exception's `output`. Ctrl-C cancels the build: its running
    /// step's container is killed and removed, then KeyboardInterrupt is raised.
    #[pyo3(signature = (context, dockerfile=None, tags=Vec::new(), build_args=Vec::new(), target=None, no_cache=false, labels=Vec::new(), network=None))]
    #[allow(clippy::too_many_arguments)]
    fn build(
        &self,
        py: Python<'_>,
        context: PathBuf,
        dockerfile: Option<PathBuf>,
        tags: Vec<String>,
        build_args: Vec<String>,
        target: Option<String>,
        no_cache: bool,
        labels: Vec<String>,
        network: Option<String>,
    ) -> PyResult<(String, Py<PyBytes>)> {
        let cancel = Arc::new(AtomicBool::new(false));
        let opts = BuildOptions {
            context,
            dockerfile,
            tags,
            build_args,
            target,
            no_cache,
            labels,
            network,
            idmap: None,
            cancel: Some(cancel.clone()),
        };
        let dirs = self.dirs.clone();
        let out = Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut w = SharedOut(out.clone());
        // Ctrl-C cancels the build and waits (a bounded while) for it to clean up: the step's
        // container is killed and removed before KeyboardInterrupt reaches the caller.
        let r = wait_thread(
            py,
            move || build::build(&dirs, &opts, &mut w),
            None,
            move |rx| {
                cancel.store(true, Ordering::SeqCst);
                let _ = rx.recv_timeout(Duration::from_secs(30));
            },
        )?;
        let log = out.lock().map(|v| v.clone()).unwrap_or_default();
        match r {
            Ok(b) => Ok((b.id.to_string(), PyBytes::new(py, &log).unbind())),
            Err(e) => {
                let err = py_err(py, e);
                err.value(py).setattr("output", PyBytes::new(py, &log))?;
                Err(err)
            }
        }
    }

    /// What `path` in the container is, and a tar of it (made on a thread, in chunks of
    /// `chunk_size` bytes), as `docker cp CTR:PATH -` writes it.
    #[pyo3(signature = (reference, path, chunk_size=2 * 1024 * 1024))]
    fn get_archive(
        &self,
        py: Python<'_>,
        reference: &str,
        path: String,
        chunk_size: usize,
    ) -> PyResult<(StatTuple, Chunks)> {
        if chunk_size == 0 {
            return Err(PyValueError::new_err("chunk_size must be at least 1"));
        }
        let root = self.root(py)?;
        let (id, st) = core(
            py,
            py.allow_threads(|| -> Result<_, Error> {
                let c = manage::lookup(&root, reference)?;
                let id = c.id().to_string();
                let st = container::commit::stat(&root, &id, &path)?;
                Ok((id, st))
            }),
        )?;
        let (tx, rx) = mpsc::sync_channel::<Chunk>(4);
        std::thread::Builder::new()
            .name("rootbox-archive".into())
            .spawn(move || {
                let mut w = ChunkWriter {
                    tx: tx.clone(),
                    buf: Vec::new(),
                    chunk: chunk_size,
                    gone: false,
                };
                match container::commit::copy_out(&root, &id, &path, CopyOut::Tar(&mut w)) {
                    Ok(()) => {
                        if !w.buf.is_empty() {
                            let _ = w.send();
                        }
                    }
                    Err(e) => {
                        if !w.gone {
                            let _ = tx.send(Err(e));
                        }
                    }
                }
            })
            .map_err(|e| PyRuntimeError::new_err(format!("starting a thread: {e}")))?;
        Ok((
            (
                st.name,
                st.size,
                st.mode,
                st.mtime,
                st.mtime_nsec,
                st.link_target,
            ),
            Chunks {
                rx: Some(std::sync::Mutex::new(rx)),
            },
        ))
    }

    /// Extracts the tar `data` into the directory `path` of the container.
    fn put_archive(
        &self,
        py: Python<'_>,
        reference: &str,
        path: &str,
        data: &[u8],
    ) -> PyResult<()> {
        let root = self.root(py)?;
        core(
            py,
            py.allow_threads(|| {
                let mut r = std::io::Cursor::new(data);
                container::commit::copy_in(&root, reference, CopyIn::Tar(&mut r), path)
            }),
        )
    }

    // ---- volumes ----------------------------------------------------------------------------

    /// Creates a volume (an existing one of that name is returned as it is); its JSON.
    #[pyo3(signature = (name=None, labels=BTreeMap::new()))]
    fn volume_create(
        &self,
        py: Python<'_>,
        name: Option<String>,
        labels: BTreeMap<String, String>,
    ) -> PyResult<String> {
        let vs = self.volumes(py)?;
        let (info, _) = core(py, py.allow_threads(|| vs.create(name.as_deref(), labels)))?;
        to_json(&info)
    }

    fn volume_inspect(&self, py: Python<'_>, name: &str) -> PyResult<String> {
        let vs = self.volumes(py)?;
        let info = core(py, py.allow_threads(|| vs.inspect(name)))?;
        to_json(&info)
    }

    fn volume_list(&self, py: Python<'_>) -> PyResult<String> {
        let vs = self.volumes(py)?;
        let list = core(py, py.allow_threads(|| vs.list()))?;
        to_json(&list)
    }

    #[pyo3(signature = (name, force=false))]
    fn volume_remove(&self, py: Python<'_>, name: &str, force: bool) -> PyResult<()> {
        let vs = self.volumes(py)?;
        core(py, py.allow_threads(|| vs.remove(name, force)))
    }

    #[pyo3(signature = (all=false))]
    fn volume_prune(&self, py: Python<'_>, all: bool) -> PyResult<Vec<String>> {
        let vs = self.volumes(py)?;
        core(py, py.allow_threads(|| vs.prune(all)))
    }
}

// ---------------------------------------------------------------------------------------------
// The monitor

/// Runs this module as the monitor of a detached container (`python -c` of the hosted
/// monitor, see `rootbox._monitor`): never returns.
#[pyfunction]
fn monitor_main(args: Vec<String>) -> PyResult<()> {
    let code = container::monitor::main_hosted(&args);
    std::process::exit(code);
}

/// Makes detached containers' monitors run as `program leading_args... --root ...`
/// (unless `$ROOTBOX_MONITOR` names one). False when one was set already.
#[pyfunction]
fn set_monitor(program: PathBuf, leading_args: Vec<String>) -> bool {
    container::monitor::set_hosted(container::monitor::HostedMonitor {
        program,
        leading_args: leading_args.into_iter().map(Into::into).collect(),
    })
}

#[pymodule]
fn _rootbox(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", rootbox_core::VERSION)?;
    m.add_class::<Runtime>()?;
    m.add_class::<Exec>()?;
    m.add_class::<LogFollower>()?;
    m.add_class::<Transfer>()?;
    m.add_class::<Chunks>()?;
    m.add_function(wrap_pyfunction!(monitor_main, m)?)?;
    m.add_function(wrap_pyfunction!(set_monitor, m)?)?;
    Ok(())
}

//! The docker-like lifecycle of `rootbox` containers over one state root: detached runs and
//! two-step create/start through the per-container monitor, stop, restart, rm, wait, prune,
//! rename, top, and the data behind ps, inspect, port and logs.
//!
//! Every verb takes a reference: a full id, a name, or a unique id prefix ([`names::resolve`]).
//! Nothing here trusts the recorded status alone: the live status comes from the process (its
//! pid and start time), so state left by a crash, a reboot or a killed monitor is reported as
//! exited and never blocks the next command.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use oci_spec::runtime::Spec;
use serde::Serialize;
use serde_json::{json, Value};

use super::monitor::{self, Mode};
use super::state::{self, Lifecycle, Lock, StateRoot, Status};
use super::{create, delete, logs, names, Container, ContainerError, StateError};
use crate::sys;

/// What a new container gets besides its OCI config.
#[derive(Debug, Clone, Default)]
pub struct NewContainer {
    /// The id (a random one when none is given; the spec's default hostname comes from it).
    pub id: Option<String>,
    /// `--name` (a name is generated when none is given).
    pub name: Option<String>,
    pub bundle: PathBuf,
    /// `-i`: keep stdin open for `attach`.
    pub open_stdin: bool,
    /// `--rm`.
    pub auto_remove: bool,
    pub stop_signal: Option<String>,
    pub stop_timeout: Option<u32>,
    /// The image reference it was made from (empty for `--rootfs`).
    pub image: String,
    /// Generated /etc files and volumes, applied before the monitor starts.
    pub rootfs_setup: Option<crate::rootfs::Setup>,
    /// The network (see `network::prepare`): saved in the container's directory, attached by
    /// the monitor each time it launches the container.
    pub network: Option<crate::network::Prepared>,
}

/// Resolves a reference (id, name, unique id prefix) and loads the container.
pub fn lookup(root: &StateRoot, reference: &str) -> Result<Container, StateError> {
    let id = names::resolve(root, reference)?;
    Container::load(root, &id)
}

fn terminal(spec: &Spec) -> bool {
    spec.process()
        .as_ref()
        .and_then(|p| p.terminal())
        .unwrap_or(false)
}

/// Registers a new container (random id, name reserved) without starting anything.
pub fn register(
    root: &StateRoot,
    spec: &Spec,
    opts: &NewContainer,
) -> Result<Container, ContainerError> {
    let id = opts.id.clone().unwrap_or_else(super::new_id);
    let name = match &opts.name {
        Some(n) => {
            names::reserve(root, n, &id)?;
            n.clone()
        }
        None => names::generate(root, &id)?,
    };
    let mut c = match create::register(root, &id, spec, &opts.bundle) {
        Ok(c) => c,
        Err(e) => {
            names::release(root, &name, &id);
            return Err(e);
        }
    };
    c.record.name = name;
    c.record.lifecycle = Lifecycle {
        tty: terminal(spec),
        open_stdin: opts.open_stdin,
        auto_remove: opts.auto_remove,
        stop_signal: opts.stop_signal.clone(),
        stop_timeout: opts.stop_timeout,
        image: opts.image.clone(),
        ..Default::default()
    };
    if let Err(e) = c.save() {
        discard(root, &c);
        return Err(e.into());
    }
    Ok(c)
}

fn discard(root: &StateRoot, c: &Container) {
    create::remove_dir(c);
    names::release(root, &c.record.name, c.id());
}

fn launch_new(
    root: &StateRoot,
    spec: &Spec,
    opts: &NewContainer,
    mode: Mode,
) -> Result<Container, ContainerError> {
    let c = register(root, spec, opts)?;
    if let Err(e) = create::apply_rootfs_setup(&c, spec, opts.rootfs_setup.as_ref()) {
        discard(root, &c);
        return Err(e);
    }
    if let Some(n) = &opts.network {
        if let Err(e) = n.save(&c.dir()) {
            discard(root, &c);
            return Err(e.into());
        }
    }
    match monitor::spawn(root, c.id(), mode) {
        Ok(_) => match Container::load(root, c.id()) {
            Ok(c) => Ok(c),
            // Already over and removed (`--rm`).
            Err(StateError::NotFound(_)) => Ok(c),
            Err(e) => Err(e.into()),
        },
        Err(e) => {
            discard(root, &c);
            Err(e)
        }
    }
}

/// `run -d`: a new container, started by its monitor; returns once its command runs (or why
/// it could not, with Docker's exit codes: 127 for a command that is not found).
pub fn run_detached(
    root: &StateRoot,
    spec: &Spec,
    opts: &NewContainer,
) -> Result<Container, ContainerError> {
    launch_new(root, spec, opts, Mode::Run)
}

/// `create`: a new container, set up by its monitor and waiting for `start`.
pub fn create(
    root: &StateRoot,
    spec: &Spec,
    opts: &NewContainer,
) -> Result<Container, ContainerError> {
    launch_new(root, spec, opts, Mode::Create)
}

/// Updates a container's record under its lock (re-read first: others may have changed it).
pub fn update(
    root: &StateRoot,
    id: &str,
    f: impl FnOnce(&mut state::Record),
) -> Result<Container, StateError> {
    let dir = root.dir(id);
    let _lock = Lock::acquire(&dir)?;
    let mut c = Container::load(root, id)?;
    f(&mut c.record);
    c.save()?;
    Ok(c)
}

/// Whether the container's monitor is still running.
pub fn monitor_alive(c: &Container) -> bool {
    match (
        c.record.lifecycle.monitor_pid,
        c.record.lifecycle.monitor_start,
    ) {
        (Some(pid), Some(start)) => state::process_start_time(pid) == Some(start),
        _ => false,
    }
}

/// Waits (at most `limit`) until the monitor has finished; true when it has.
fn wait_monitor(c: &Container, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while monitor_alive(c) {
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    true
}

/// Prepares `start`: a created container is left as it is; a stopped one gets a new process
/// from a new monitor, set up and waiting like a created one (so `start -a` can attach before
/// it runs). A running one is returned as it is.
pub fn prepare_start(
    root: &StateRoot,
    reference: &str,
    restarting: bool,
) -> Result<Container, ContainerError> {
    let c = lookup(root, reference)?;
    match c.status() {
        Status::Created | Status::Running | Status::Paused => return Ok(c),
        Status::Stopped | Status::Creating => {}
    }
    // The previous run's monitor may still be writing its exit.
    wait_monitor(&c, Duration::from_secs(5));
    let id = c.id().to_string();
    update(root, &id, |r| {
        r.status = Status::Creating;
        r.pid = None;
        r.pid_start = None;
        r.exit_code = None;
        r.lifecycle.finished_at = None;
        r.lifecycle.started_at = None;
        r.lifecycle.oom_killed = false;
        r.lifecycle.error.clear();
        if restarting {
            r.lifecycle.restart_count += 1;
        }
    })?;
    if let Err(e) = monitor::spawn(root, &id, Mode::Create) {
        let msg = e.to_string();
        let code = match &e {
            ContainerError::Launch(l) => l.exit_code(),
            _ => 125,
        };
        let _ = update(root, &id, |r| {
            r.status = Status::Stopped;
            r.exit_code = Some(code);
            r.lifecycle.error = msg;
            r.lifecycle.finished_at = Some(state::now_rfc3339());
        });
        return Err(e);
    }
    Ok(Container::load(root, &id)?)
}

/// `start`: runs a created container, or a stopped one again.
pub fn start(root: &StateRoot, reference: &str) -> Result<Container, ContainerError> {
    let c = prepare_start(root, reference, false)?;
    if c.status() == Status::Created {
        super::start::start(root, c.id())?;
    }
    Ok(Container::load(root, c.id())?)
}

/// Waits until the container's first process is gone, at most `limit`; true when it is.
fn wait_gone(c: &Container, limit: Duration) -> bool {
    let Some(pid) = c.record.pid else { return true };
    if !c.is_alive() {
        return true;
    }
    let deadline = Instant::now() + limit;
    // A pidfd becomes readable when the process exits (zombie or reaped).
    let pidfd = sys::pidfd_open(pid).ok();
    loop {
        if !c.is_alive() {
            if let Some(fd) = pidfd {
                sys::close(fd);
            }
            return true;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            if let Some(fd) = pidfd {
                sys::close(fd);
            }
            return false;
        }
        match pidfd {
            Some(fd) => {
                let mut p = libc::pollfd {
                    fd,
                    events: libc::POLLIN,
                    revents: 0,
                };
                let ms = left.as_millis().min(100) as libc::c_int;
                // SAFETY: one valid pollfd.
                unsafe { libc::poll(&mut p, 1, ms.max(1)) };
            }
            None => std::thread::sleep(Duration::from_millis(5)),
        }
    }
}

fn signal_all(c: &Container, sig: i32) {
    for p in c.pids() {
        // SAFETY: signalling processes of this container (found alive in its pid namespace).
        unsafe { libc::kill(p, sig) };
    }
}

/// `stop`: the stop signal (the container's `--stop-signal`, else SIGTERM) to its first
/// process, then SIGKILL to all of its processes after `timeout` seconds (default: the
/// container's `--stop-timeout`, else 10). Returns once it has exited and its exit is recorded.
pub fn stop(
    root: &StateRoot,
    reference: &str,
    timeout: Option<u32>,
    signal: Option<i32>,
) -> Result<Container, ContainerError> {
    let c = lookup(root, reference)?;
    match c.status() {
        Status::Running | Status::Paused => {
            let sig = match signal {
                Some(s) => s,
                None => match &c.record.lifecycle.stop_signal {
                    Some(s) => super::kill::parse_signal(s)?,
                    None => libc::SIGTERM,
                },
            };
            let secs = timeout.or(c.record.lifecycle.stop_timeout).unwrap_or(10);
            if c.status() == Status::Paused {
                // A frozen process can't act on its stop signal: thaw it first.
                super::pause::resume(root, c.id())?;
            }
            if let Some(pid) = c.record.pid {
                // SAFETY: signalling the container's first process (checked alive above).
                unsafe { libc::kill(pid, sig) };
            }
            if !wait_gone(&c, Duration::from_secs(u64::from(secs))) {
                signal_all(&c, libc::SIGKILL);
                if !wait_gone(&c, Duration::from_secs(10)) {
                    return Err(StateError::Other(format!(
                        "container {}: its process did not exit after SIGKILL",
                        c.id()
                    ))
                    .into());
                }
            }
        }
        Status::Created | Status::Creating if c.is_alive() => {
            delete::kill_and_wait(&c)?;
        }
        _ => {}
    }
    wait_monitor(&c, Duration::from_secs(5));
    match Container::load(root, c.id()) {
        Ok(c) => Ok(c),
        // Removed by its monitor (`--rm`).
        Err(StateError::NotFound(_)) => Ok(c),
        Err(e) => Err(e.into()),
    }
}

/// `restart`: stop (when running), then start again.
pub fn restart(
    root: &StateRoot,
    reference: &str,
    timeout: Option<u32>,
) -> Result<Container, ContainerError> {
    let c = stop(root, reference, timeout, None)?;
    if !c.dir().join("state.json").exists() {
        return Err(StateError::NotFound(reference.to_string()).into());
    }
    let c = prepare_start(root, c.id(), true)?;
    if c.status() == Status::Created {
        super::start::start(root, c.id())?;
    }
    Ok(Container::load(root, c.id())?)
}

/// `kill -s SIG`: a signal to the container's first process.
pub fn kill(root: &StateRoot, reference: &str, signal: i32) -> Result<Container, ContainerError> {
    let c = lookup(root, reference)?;
    if c.status() != Status::Running && c.status() != Status::Paused {
        return Err(StateError::WrongStatus {
            id: display_name(&c),
            status: c.status(),
            action: "kill",
            wanted: "running",
        }
        .into());
    }
    super::kill::kill(root, c.id(), signal, false)?;
    Ok(c)
}

fn display_name(c: &Container) -> String {
    if c.record.name.is_empty() {
        c.id().to_string()
    } else {
        c.record.name.clone()
    }
}

/// Deletes a stopped container's state (and its name): what `rm` does once it has stopped.
pub fn remove_state(root: &StateRoot, c: &Container) -> Result<(), ContainerError> {
    match delete::delete(root, c.id(), true) {
        Ok(()) | Err(ContainerError::State(StateError::NotFound(_))) => {}
        Err(e) => return Err(e),
    }
    names::release(root, &c.record.name, c.id());
    Ok(())
}

/// `rm`: removes a container; a running one only with `force` (it is killed first). Its
/// monitor is waited for (and killed if it hangs), so nothing of it stays behind.
pub fn remove(root: &StateRoot, reference: &str, force: bool) -> Result<String, ContainerError> {
    let c = lookup(root, reference)?;
    let status = c.status();
    if matches!(status, Status::Running | Status::Paused) && !force {
        return Err(StateError::WrongStatus {
            id: display_name(&c),
            status,
            action: "remove",
            wanted: "stopped: stop it first, or use rm -f",
        }
        .into());
    }
    if c.is_alive() {
        delete::kill_and_wait(&c)?;
    }
    if !wait_monitor(&c, Duration::from_secs(5)) {
        if let Some(pid) = c.record.lifecycle.monitor_pid {
            // SAFETY: the monitor (same pid and start time, checked by wait_monitor) hangs.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            wait_monitor(&c, Duration::from_secs(2));
        }
    }
    remove_state(root, &c)?;
    Ok(c.id().to_string())
}

/// `container prune`: removes every stopped container; returns their ids.
pub fn prune(root: &StateRoot) -> Result<Vec<String>, ContainerError> {
    let mut removed = Vec::new();
    for c in super::list(root)? {
        if c.status() == Status::Stopped && !monitor_alive(&c) {
            remove_state(root, &c)?;
            removed.push(c.id().to_string());
        }
    }
    Ok(removed)
}

/// `rename OLD NEW`.
pub fn rename(root: &StateRoot, reference: &str, new: &str) -> Result<(), ContainerError> {
    let c = lookup(root, reference)?;
    names::validate_name(new)?;
    if c.record.name == new {
        return Ok(());
    }
    names::reserve(root, new, c.id())?;
    let old = c.record.name.clone();
    match update(root, c.id(), |r| r.name = new.to_string()) {
        Ok(_) => {
            names::release(root, &old, c.id());
            Ok(())
        }
        Err(e) => {
            names::release(root, new, c.id());
            Err(e.into())
        }
    }
}

/// `wait`: blocks until the container has exited; returns its exit code.
pub fn wait(root: &StateRoot, reference: &str) -> Result<i32, ContainerError> {
    let c = lookup(root, reference)?;
    let id = c.id().to_string();
    if monitor_alive(&c) {
        // The monitor sends the exit code once it has recorded it (even for `--rm`).
        if let Ok(mut client) = super::attach::Client::connect(&c.dir(), 0) {
            while let Ok(Some((kind, payload))) = client.read_frame() {
                if kind == super::attach::M_EXIT && payload.len() == 4 {
                    return Ok(i32::from_be_bytes([
                        payload[0], payload[1], payload[2], payload[3],
                    ]));
                }
            }
        }
    }
    loop {
        let c = match Container::load(root, &id) {
            Ok(c) => c,
            Err(StateError::NotFound(_)) => {
                return Err(StateError::Other(format!(
                    "container {id} was removed before its exit code could be read"
                ))
                .into())
            }
            Err(e) => return Err(e.into()),
        };
        if c.status() == Status::Stopped && !monitor_alive(&c) {
            return c.record.exit_code.ok_or_else(|| {
                StateError::Other(format!(
                    "container {id} has exited but its exit code is unknown (its monitor is gone)"
                ))
                .into()
            });
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

// ---------------------------------------------------------------------------------------------
// What ps, inspect, top, port and logs show.

fn now() -> Duration {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
}

/// Docker's human durations: "Less than a second", "5 seconds", "About a minute", ...
pub fn human_duration(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0 => "Less than a second".into(),
        1 => "1 second".into(),
        2..=59 => format!("{s} seconds"),
        60..=119 => "About a minute".into(),
        120..=3599 => format!("{} minutes", s / 60),
        3600..=7199 => "About an hour".into(),
        7200..=172_799 => format!("{} hours", s / 3600),
        _ => format!("{} days", s / 86400),
    }
}

fn since(t: Option<&str>) -> Option<Duration> {
    let t = state::parse_rfc3339(t?)?;
    Some(now().saturating_sub(t))
}

/// Docker's state word: created, running, paused, exited.
pub fn state_word(status: Status) -> &'static str {
    match status {
        Status::Created | Status::Creating => "created",
        Status::Running => "running",
        Status::Paused => "paused",
        Status::Stopped => "exited",
    }
}

/// The exit code to show: recorded, or unknown (the monitor died before recording it).
fn exit_code(c: &Container) -> Option<i32> {
    if c.record.status == Status::Stopped {
        c.record.exit_code
    } else {
        None
    }
}

/// The status column of `ps`.
pub fn status_text(c: &Container) -> String {
    match c.status() {
        Status::Running => {
            let up = human_duration(
                since(c.record.lifecycle.started_at.as_deref()).unwrap_or(Duration::ZERO),
            );
            if c.record.lifecycle.monitor_pid.is_some() && !monitor_alive(c) {
                // Still running, but nobody records its exit or keeps its log any more.
                format!("Up {up} (monitor gone)")
            } else {
                format!("Up {up}")
            }
        }
        Status::Paused => format!(
            "Up {} (Paused)",
            human_duration(
                since(c.record.lifecycle.started_at.as_deref()).unwrap_or(Duration::ZERO)
            )
        ),
        Status::Created | Status::Creating => "Created".into(),
        Status::Stopped => {
            let code = exit_code(c).map_or("unknown".to_string(), |c| c.to_string());
            match since(c.record.lifecycle.finished_at.as_deref()) {
                Some(ago) if exit_code(c).is_some() => {
                    format!("Exited ({code}) {} ago", human_duration(ago))
                }
                _ => format!("Exited ({code})"),
            }
        }
    }
}

/// One row of `ps`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Summary {
    #[serde(rename = "ID")]
    pub id: String,
    pub names: String,
    pub image: String,
    pub command: String,
    pub created_at: String,
    pub running_for: String,
    pub state: String,
    pub status: String,
    pub ports: String,
    pub pid: i32,
    pub exit_code: Option<i32>,
}

fn command_of(spec: Option<&Spec>) -> Vec<String> {
    spec.and_then(|s| s.process().as_ref())
        .and_then(|p| p.args().clone())
        .unwrap_or_default()
}

fn ports_text(c: &Container) -> String {
    port_lines(c).join(", ")
}

pub fn summary(c: &Container) -> Summary {
    let spec = c.spec().ok();
    let status = c.status();
    let image = if c.record.lifecycle.image.is_empty() {
        c.record.rootfs.display().to_string()
    } else {
        c.record.lifecycle.image.clone()
    };
    Summary {
        id: c.id().to_string(),
        names: display_name(c),
        image,
        command: command_of(spec.as_ref()).join(" "),
        created_at: c.record.created.clone(),
        running_for: since(Some(&c.record.created))
            .map(|d| format!("{} ago", human_duration(d)))
            .unwrap_or_default(),
        state: state_word(status).into(),
        status: status_text(c),
        ports: ports_text(c),
        pid: if status == Status::Running || status == Status::Paused {
            c.record.pid.unwrap_or(0)
        } else {
            0
        },
        exit_code: exit_code(c),
    }
}

/// `ps --filter` criteria (all must hold).
#[derive(Debug, Clone, Default)]
pub struct Filters {
    /// Docker's state words: created, running, paused, exited.
    pub status: Vec<String>,
    /// Substrings of the name.
    pub name: Vec<String>,
    /// Id prefixes.
    pub id: Vec<String>,
}

impl Filters {
    /// Adds one `KEY=VALUE` filter.
    pub fn add(&mut self, f: &str) -> Result<(), StateError> {
        match f.split_once('=') {
            Some(("status", v)) => {
                if ![
                    "created",
                    "running",
                    "paused",
                    "exited",
                    "restarting",
                    "removing",
                    "dead",
                ]
                .contains(&v)
                {
                    return Err(StateError::Other(format!(
                        "invalid filter status={v:?}: use created, running, paused or exited"
                    )));
                }
                self.status.push(v.to_string());
            }
            Some(("name", v)) => self.name.push(v.to_string()),
            Some(("id", v)) => self.id.push(v.to_string()),
            _ => {
                return Err(StateError::Other(format!(
                    "invalid filter {f:?}: use status=STATE, name=NAME or id=ID"
                )))
            }
        }
        Ok(())
    }

    fn matches(&self, c: &Container) -> bool {
        let word = state_word(c.status());
        (self.status.is_empty() || self.status.iter().any(|s| s == word))
            && (self.name.is_empty() || self.name.iter().any(|n| c.record.name.contains(n)))
            && (self.id.is_empty() || self.id.iter().any(|p| c.id().starts_with(p)))
    }
}

/// `ps`: running containers (all with `all`), newest first.
pub fn ps(root: &StateRoot, all: bool, filters: &Filters) -> Result<Vec<Summary>, StateError> {
    let mut list: Vec<Container> = super::list(root)?
        .into_iter()
        .filter(|c| {
            let st = c.status();
            (all || !filters.status.is_empty() || matches!(st, Status::Running | Status::Paused))
                && filters.matches(c)
        })
        .collect();
    list.sort_by(|a, b| b.record.created.cmp(&a.record.created));
    Ok(list.iter().map(summary).collect())
}

/// `port`: the published ports, as `80/tcp -> 0.0.0.0:8080`.
pub fn port_lines(c: &Container) -> Vec<String> {
    c.record
        .lifecycle
        .ports
        .iter()
        .map(|p| p.to_string())
        .collect()
}

const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

/// `inspect`: Docker's container JSON, filled with what rootbox knows. Image-related parts
/// (`Image`, `GraphDriver`) stay empty for containers made from a plain `--rootfs`.
pub fn inspect(c: &Container) -> Value {
    let spec = c.spec().ok();
    let status = c.status();
    let lc = &c.record.lifecycle;
    let args = command_of(spec.as_ref());
    let process = spec.as_ref().and_then(|s| s.process().clone());
    let running = matches!(status, Status::Running | Status::Paused);
    let code = exit_code(c);
    let mut error = lc.error.clone();
    if status == Status::Stopped && code.is_none() && error.is_empty() {
        error = "the container's monitor ended before recording the exit code".into();
    }
    let mounts: Vec<Value> = spec
        .as_ref()
        .and_then(|s| s.mounts().clone())
        .unwrap_or_default()
        .iter()
        .filter(|m| m.typ().as_deref() == Some("bind"))
        // The generated /etc files live in the container's own directory: Docker does not
        // list them as mounts either.
        .filter(|m| !m.source().as_ref().is_some_and(|s| s.starts_with(c.dir())))
        .map(|m| {
            let opts = m.options().clone().unwrap_or_default();
            let ro = opts.iter().any(|o| o == "ro");
            // A named or anonymous volume: <store>/volumes/NAME/_data.
            let volume = m.source().as_ref().and_then(|s| {
                let parent = s.parent()?;
                (s.file_name()? == "_data" && parent.parent()?.file_name()? == "volumes")
                    .then(|| parent.file_name().map(|n| n.to_string_lossy().into_owned()))
                    .flatten()
            });
            let mut v = json!({
                "Type": if volume.is_some() { "volume" } else { "bind" },
                "Source": m.source(),
                "Destination": m.destination(),
                "Mode": if ro { "ro" } else { "" },
                "RW": !ro,
                "Propagation": "rprivate",
            });
            if let (Some(name), Some(o)) = (volume, v.as_object_mut()) {
                o.insert("Name".into(), name.into());
            }
            v
        })
        .collect();
    let binds: Vec<String> = mounts
        .iter()
        .map(|m| {
            let mut s = format!(
                "{}:{}",
                m["Source"].as_str().unwrap_or(""),
                m["Destination"].as_str().unwrap_or("")
            );
            if m["RW"] == json!(false) {
                s.push_str(":ro");
            }
            s
        })
        .collect();
    let mut tmpfs = serde_json::Map::new();
    let base: Vec<&str> = [
        "/proc",
        "/dev",
        "/dev/pts",
        "/dev/shm",
        "/dev/mqueue",
        "/sys",
    ]
    .into();
    for m in spec
        .as_ref()
        .and_then(|s| s.mounts().clone())
        .unwrap_or_default()
    {
        let dest = m.destination().display().to_string();
        if m.typ().as_deref() == Some("tmpfs") && !base.contains(&dest.as_str()) {
            let opts = m.options().clone().unwrap_or_default();
            let extra: Vec<String> = opts
                .into_iter()
                .filter(|o| o != "nosuid" && o != "nodev")
                .collect();
            tmpfs.insert(dest, json!(extra.join(",")));
        }
    }
    let net_ns = spec
        .as_ref()
        .and_then(|s| s.linux().as_ref())
        .and_then(|l| l.namespaces().clone())
        .unwrap_or_default()
        .iter()
        .any(|n| n.typ() == oci_spec::runtime::LinuxNamespaceType::Network);
    let mut ports = serde_json::Map::new();
    let mut port_bindings = serde_json::Map::new();
    for p in &lc.ports {
        let key = format!("{}/{}", p.container_port, p.proto);
        let binding = json!({"HostIp": p.host_ip.to_string(), "HostPort": p.host_port.to_string()});
        for map in [&mut ports, &mut port_bindings] {
            match map.get_mut(&key).and_then(|v| v.as_array_mut()) {
                Some(list) => list.push(binding.clone()),
                None => {
                    map.insert(key.clone(), json!([binding.clone()]));
                }
            }
        }
    }
    let net = c.record.network.as_ref();
    let ip = if running {
        crate::network::ip_address(&c.record)
            .map(|a| a.to_string())
            .unwrap_or_default()
    } else {
        String::new()
    };
    let gateway = if running {
        net.and_then(|n| n.gateway)
            .map(|a| a.to_string())
            .unwrap_or_default()
    } else {
        String::new()
    };
    let net_mode = match net {
        Some(n) if !n.mode.is_empty() => n.mode.clone(),
        _ => if net_ns { "none" } else { "host" }.to_string(),
    };
    let mut networks = serde_json::Map::new();
    if let Some(name) = net.and_then(|n| n.network.clone()) {
        networks.insert(
            name.clone(),
            json!({"NetworkID": name, "IPAddress": ip, "Gateway": gateway, "Aliases": net.map(|n| n.facts.aliases.clone()).unwrap_or_default()}),
        );
    }
    let user = process
        .as_ref()
        .map(|p| format!("{}:{}", p.user().uid(), p.user().gid()))
        .unwrap_or_default();
    let pid = if running {
        c.record.pid.unwrap_or(0)
    } else {
        0
    };
    json!({
        "Id": c.id(),
        "Created": c.record.created,
        "Path": args.first().cloned().unwrap_or_default(),
        "Args": args.iter().skip(1).collect::<Vec<_>>(),
        "State": {
            "Status": state_word(status),
            "Running": status == Status::Running,
            "Paused": status == Status::Paused,
            "Restarting": false,
            "OOMKilled": lc.oom_killed || c.record.oom_killed,
            "Dead": false,
            "Pid": pid,
            "ExitCode": code.unwrap_or(if status == Status::Stopped { -1 } else { 0 }),
            "Error": error,
            "StartedAt": lc.started_at.clone().unwrap_or_else(|| ZERO_TIME.into()),
            "FinishedAt": lc.finished_at.clone().unwrap_or_else(|| ZERO_TIME.into()),
        },
        "Image": lc.image,
        "LogPath": c.dir().join(logs::LOG_FILE),
        "Name": format!("/{}", c.record.name),
        "RestartCount": lc.restart_count,
        "Driver": "",
        "Platform": "linux",
        "Rootfs": c.record.rootfs,
        "Monitor": {"Pid": lc.monitor_pid.filter(|_| monitor_alive(c)).unwrap_or(0)},
        "HostConfig": {
            "AutoRemove": lc.auto_remove,
            "Binds": binds,
            "Tmpfs": tmpfs,
            "NetworkMode": net_mode,
            "PortBindings": port_bindings,
            "ReadonlyRootfs": spec.as_ref().and_then(|s| s.root().as_ref()).and_then(|r| r.readonly()).unwrap_or(false),
            "Init": spec.as_ref().is_some_and(crate::spec::wants_init),
            "Privileged": false,
        },
        "GraphDriver": {"Name": "", "Data": null},
        "Mounts": mounts,
        "Config": {
            "Hostname": spec.as_ref().and_then(|s| s.hostname().clone()).unwrap_or_default(),
            "Domainname": spec.as_ref().and_then(|s| s.domainname().clone()).unwrap_or_default(),
            "User": user,
            "Tty": lc.tty,
            "OpenStdin": lc.open_stdin,
            "Env": process.as_ref().and_then(|p| p.env().clone()).unwrap_or_default(),
            "Cmd": args,
            "Image": lc.image,
            "WorkingDir": process.as_ref().map(|p| p.cwd().display().to_string()).unwrap_or_default(),
            "Entrypoint": null,
            "Labels": c.record.annotations,
            "StopSignal": lc.stop_signal.clone().unwrap_or_else(|| "SIGTERM".into()),
            "StopTimeout": lc.stop_timeout.unwrap_or(10),
        },
        "NetworkSettings": {
            "Networks": networks,
            "Ports": ports,
            "IPAddress": ip,
            "Gateway": gateway,
            "SandboxKey": if running && net_ns { format!("/proc/{pid}/ns/net") } else { String::new() },
        },
    })
}

/// One process of `top`.
#[derive(Debug, Clone, Serialize)]
pub struct TopRow {
    /// Host uid owning the process.
    pub uid: u32,
    /// Host pid and parent pid.
    pub pid: i32,
    pub ppid: i32,
    /// Pid inside the container.
    pub ns_pid: i32,
    /// CPU time, `[[DD-]HH:]MM:SS`.
    pub time: String,
    pub cmd: String,
}

fn cpu_time(ticks: u64) -> String {
    // SAFETY: sysconf with a constant.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    let s = ticks / hz;
    format!("{:02}:{:02}:{:02}", s / 3600, s % 3600 / 60, s % 60)
}

/// `top`: the container's processes (everything in its pid namespace).
pub fn top(c: &Container) -> Result<Vec<TopRow>, StateError> {
    if !matches!(c.status(), Status::Running | Status::Paused) {
        return Err(StateError::WrongStatus {
            id: display_name(c),
            status: c.status(),
            action: "top",
            wanted: "running",
        });
    }
    let mut rows = Vec::new();
    for pid in c.pids() {
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let Some(close) = stat.rfind(')') else {
            continue;
        };
        let fields: Vec<&str> = stat[close + 2..].split(' ').collect();
        let num = |i: usize| {
            fields
                .get(i)
                .and_then(|f| f.parse::<u64>().ok())
                .unwrap_or(0)
        };
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let field = |key: &str| -> Option<&str> {
            status
                .lines()
                .find_map(|l| l.strip_prefix(key).map(str::trim))
        };
        let uid = field("Uid:")
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let ns_pid = field("NSpid:")
            .and_then(|v| v.split_whitespace().last())
            .and_then(|v| v.parse().ok())
            .unwrap_or(pid);
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let mut cmd = cmdline
            .split(|&b| b == 0)
            .filter(|s| !s.is_empty())
            .map(|s| String::from_utf8_lossy(s).into_owned())
            .collect::<Vec<_>>()
            .join(" ");
        if cmd.is_empty() {
            cmd = format!("[{}]", &stat[stat.find('(').map_or(0, |i| i + 1)..close]);
        }
        rows.push(TopRow {
            uid,
            pid,
            ppid: num(1) as i32,
            ns_pid,
            time: cpu_time(num(11) + num(12)),
            cmd,
        });
    }
    rows.sort_by_key(|r| r.ns_pid);
    Ok(rows)
}

/// `logs`: calls `sink` with each selected entry; with `follow`, goes on with new entries
/// until the container has stopped (and its monitor has written everything), or `sink`
/// returns false.
pub fn logs(
    root: &StateRoot,
    reference: &str,
    opts: &logs::LogOptions,
    follow: bool,
    mut sink: impl FnMut(&logs::Entry) -> bool,
) -> Result<(), ContainerError> {
    let c = lookup(root, reference)?;
    let dir = c.dir();
    let (entries, mut offset) = logs::read(&dir, opts)?;
    for e in &entries {
        if !sink(e) {
            return Ok(());
        }
    }
    if !follow {
        return Ok(());
    }
    loop {
        let done = match Container::load(root, c.id()) {
            Ok(c) => c.status() == Status::Stopped && !monitor_alive(&c),
            Err(_) => true,
        };
        let (more, off) = logs::read_from(&dir, offset, opts)?;
        offset = off;
        for e in &more {
            if !sink(e) {
                return Ok(());
            }
        }
        if done {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_docker() {
        assert_eq!(
            human_duration(Duration::from_millis(300)),
            "Less than a second"
        );
        assert_eq!(human_duration(Duration::from_secs(5)), "5 seconds");
        assert_eq!(human_duration(Duration::from_secs(61)), "About a minute");
        assert_eq!(human_duration(Duration::from_secs(600)), "10 minutes");
        assert_eq!(human_duration(Duration::from_secs(3 * 3600)), "3 hours");
    }

    #[test]
    fn filters_parse() {
        let mut f = Filters::default();
        f.add("status=exited").unwrap();
        f.add("name=web").unwrap();
        assert!(f.add("status=sleeping").is_err());
        assert!(f.add("colour=blue").is_err());
    }
}

//! cgroup v2: discovery of the delegated subtree, a cgroup per container with its limits,
//! freeze/thaw, kill, usage statistics, and systemd's user manager where the caller's own
//! cgroup is not delegated.
//!
//! - [`discover`]: where we are (read-only; safe on any host).
//! - [`resources`]: options → OCI `linux.resources` → cgroup files.
//! - [`setup`]: the container's cgroup, created before clone and entered at clone time.
//! - [`stats`]: usage figures (`rootbox stats`, `rootbox-runtime events`).
//! - [`systemd`]: a transient delegated scope from systemd's user manager.
//!
//! rootbox manages cgroup v2 only. On v1 and hybrid hosts it never creates a cgroup: containers
//! run without one, and a limit that was asked for is an error (or, with
//! `--cgroup-limits=best-effort`, a warning).

pub mod discover;
pub mod resources;
pub mod setup;
pub mod stats;
pub mod systemd;

use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub use discover::{Discovery, Layout};
pub use oci_spec::runtime::LinuxResources;
pub use resources::{parse_size, ResourceOptions};
pub use setup::{prepare, CgroupOptions, LimitPolicy, Manager, Prepared};
pub use stats::Stats;

/// Errors of cgroup management, naming the cgroup file, the limit or the option.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("invalid {option} {value:?}: {why}")]
    BadLimit {
        option: String,
        value: String,
        why: String,
    },
    #[error("invalid resources: {0}")]
    Invalid(String),
    /// A limit was asked for and cannot be enforced on this host.
    #[error("cannot enforce the requested {what}: {why}.\n  To fix: {fix}.\n  To run without {it} instead: --cgroup-limits=best-effort (rootbox-runtime: environment ROOTBOX_CGROUP_LIMITS=best-effort or annotation io.rootbox.cgroup-limits=best-effort).")]
    Unenforceable {
        what: String,
        it: &'static str,
        why: String,
        fix: String,
    },
    #[error("cgroup {path}: {what}: {source}")]
    Io {
        path: PathBuf,
        what: String,
        source: std::io::Error,
    },
    #[error("systemd cgroup manager: {0}")]
    Systemd(String),
    #[error("container {0:?} has no cgroup ({1})")]
    NoCgroup(String, String),
}

impl CgroupError {
    fn io(path: &Path, what: impl Into<String>, source: std::io::Error) -> Self {
        CgroupError::Io {
            path: path.to_path_buf(),
            what: what.into(),
            source,
        }
    }

    pub fn errno(&self) -> Option<i32> {
        match self {
            CgroupError::Io { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }

    pub fn path(&self) -> Option<&Path> {
        match self {
            CgroupError::Io { path, .. } => Some(path),
            _ => None,
        }
    }
}

/// A cgroup v2 directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cgroup {
    pub path: PathBuf,
}

impl Cgroup {
    pub fn new(path: impl Into<PathBuf>) -> Cgroup {
        Cgroup { path: path.into() }
    }

    pub fn exists(&self) -> bool {
        self.path.join("cgroup.procs").exists()
    }

    pub fn read(&self, file: &str) -> Result<String, CgroupError> {
        let p = self.path.join(file);
        std::fs::read_to_string(&p)
            .map_err(|e| CgroupError::io(&self.path, format!("reading {file}"), e))
    }

    pub fn write(&self, file: &str, value: &str) -> Result<(), CgroupError> {
        let p = self.path.join(file);
        std::fs::write(&p, value)
            .map_err(|e| CgroupError::io(&self.path, format!("writing {value:?} to {file}"), e))
    }

    /// `key value` lines of a flat-keyed file (`memory.events`, `cpu.stat`) as a map.
    pub fn keyed(&self, file: &str) -> std::collections::BTreeMap<String, u64> {
        std::fs::read_to_string(self.path.join(file))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| {
                let (k, v) = l.split_once(' ')?;
                Some((k.to_string(), v.trim().parse().ok()?))
            })
            .collect()
    }

    /// A single-number file; None when missing or `max`.
    pub fn number(&self, file: &str) -> Option<u64> {
        std::fs::read_to_string(self.path.join(file))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// Processes in this cgroup and its descendants.
    pub fn pids(&self) -> Vec<i32> {
        let mut out = Vec::new();
        collect_pids(&self.path, &mut out);
        out
    }

    /// Whether any process is in the cgroup or below (`cgroup.events` populated).
    pub fn populated(&self) -> bool {
        match self.keyed("cgroup.events").get("populated") {
            Some(v) => *v != 0,
            None => !self.pids().is_empty(),
        }
    }

    pub fn oom_kills(&self) -> u64 {
        self.keyed("memory.events")
            .get("oom_kill")
            .copied()
            .unwrap_or(0)
    }

    pub fn frozen(&self) -> bool {
        self.keyed("cgroup.events").get("frozen") == Some(&1)
    }

    /// Freezes (or thaws) every process in the cgroup and waits until the kernel says so.
    pub fn freeze(&self, on: bool) -> Result<(), CgroupError> {
        if !self.path.join("cgroup.freeze").exists() {
            return Err(CgroupError::io(
                &self.path,
                "cgroup.freeze",
                std::io::Error::from_raw_os_error(libc::ENOENT),
            ));
        }
        self.write("cgroup.freeze", if on { "1" } else { "0" })?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.frozen() != on {
            if Instant::now() > deadline {
                return Err(CgroupError::io(
                    &self.path,
                    if on { "freezing" } else { "thawing" },
                    std::io::Error::from_raw_os_error(libc::ETIMEDOUT),
                ));
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        Ok(())
    }

    /// SIGKILL to every process in the cgroup: `cgroup.kill` (Linux 5.14), else freeze, kill
    /// each process, thaw (so none can fork away meanwhile).
    pub fn kill(&self) -> Result<(), CgroupError> {
        if self.path.join("cgroup.kill").exists() && self.write("cgroup.kill", "1").is_ok() {
            return Ok(());
        }
        self.signal_all(libc::SIGKILL)
    }

    /// `sig` to every process in the cgroup, frozen meanwhile (unless it already is) so none
    /// forks away.
    pub fn signal_all(&self, sig: i32) -> Result<(), CgroupError> {
        let froze = !self.frozen() && self.freeze(true).is_ok();
        for pid in self.pids() {
            // SAFETY: signalling a process of this container's cgroup.
            unsafe { libc::kill(pid, sig) };
        }
        if froze {
            self.freeze(false)?;
        }
        Ok(())
    }

    /// Waits (bounded) until the cgroup is empty, then removes it and its sub-cgroups.
    pub fn remove(&self) -> Result<(), CgroupError> {
        if !self.path.exists() {
            return Ok(());
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.populated() {
            if Instant::now() > deadline {
                return Err(CgroupError::io(
                    &self.path,
                    "removing (processes are still in it)",
                    std::io::Error::from_raw_os_error(libc::EBUSY),
                ));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        remove_tree(&self.path, deadline)
    }

    /// An fd of the directory, for `clone3`'s `CLONE_INTO_CGROUP`.
    pub fn open_dir(&self) -> Result<OwnedFd, CgroupError> {
        let c = std::ffi::CString::new(self.path.as_os_str().as_bytes()).map_err(|_| {
            CgroupError::Invalid(format!(
                "cgroup path {} contains a NUL",
                self.path.display()
            ))
        })?;
        // SAFETY: valid path.
        let fd = unsafe {
            libc::open(
                c.as_ptr(),
                libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
            )
        };
        if fd < 0 {
            return Err(CgroupError::io(
                &self.path,
                "opening",
                std::io::Error::last_os_error(),
            ));
        }
        // SAFETY: a fresh fd we own.
        Ok(unsafe { OwnedFd::from_raw_fd(fd) })
    }
}

fn collect_pids(dir: &Path, out: &mut Vec<i32>) {
    if let Ok(text) = std::fs::read_to_string(dir.join("cgroup.procs")) {
        out.extend(text.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
    }
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                collect_pids(&e.path(), out);
            }
        }
    }
}

fn remove_tree(dir: &Path, deadline: Instant) -> Result<(), CgroupError> {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                remove_tree(&e.path(), deadline)?;
            }
        }
    }
    loop {
        match std::fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            // Exited tasks linger a moment after cgroup.events says empty.
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(5))
            }
            Err(e) => return Err(CgroupError::io(dir, "removing", e)),
        }
    }
}

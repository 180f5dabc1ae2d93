//! Containers and their lifecycle: one file per verb (create, start, run, exec, kill, delete),
//! state and locks in `state.rs`, OCI hooks in `hooks.rs`.

pub mod attach;
pub mod commit;
pub mod create;
pub mod delete;
pub mod exec;
pub mod from_image;
pub mod hooks;
pub mod kill;
pub mod logs;
pub mod manage;
pub mod monitor;
pub mod names;
pub mod pause;
pub mod request;
pub mod run;
pub mod start;
pub mod state;
pub mod supervise;
pub mod update;

use std::path::{Path, PathBuf};

use oci_spec::runtime::Spec;

pub use state::{OciState, Record, StateRoot, Status};

/// In a container's state directory while a commit holds it frozen: "PID START_TIME" of the
/// committing process (see [`Container::load`]).
const COMMIT_FREEZE_MARK: &str = "commit-frozen";

use crate::cgroup::{Cgroup, CgroupError};
use crate::launch::LaunchError;
use crate::spec::SpecError;

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("container {0:?} does not exist")]
    NotFound(String),
    #[error("container {0:?} already exists")]
    AlreadyExists(String),
    #[error("invalid container id {0:?}: use letters, digits, '_', '-', '.', '+'")]
    BadId(String),
    #[error("container {id:?} is {status}: {action} needs it {wanted}")]
    WrongStatus {
        id: String,
        status: Status,
        action: &'static str,
        wanted: &'static str,
    },
    #[error("state directory {path} is not a private directory of this user")]
    NotPrivate { path: PathBuf },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("corrupt state {path}: {message}")]
    Corrupt { path: PathBuf, message: String },
    #[error("hook {path} failed: {message}")]
    Hook { path: PathBuf, message: String },
    #[error("invalid container name {0:?}: only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed (at least two characters)")]
    BadName(String),
    #[error("the container name {name:?} is already in use by container {id}: remove (or rename) that container to reuse the name")]
    NameInUse { name: String, id: String },
    #[error("container reference {reference:?} is ambiguous: it matches {}", ids.join(", "))]
    Ambiguous { reference: String, ids: Vec<String> },
    #[error("{0}")]
    Other(String),
}

impl StateError {
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        StateError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// Errors of lifecycle operations: state, configuration or launch.
#[derive(Debug, thiserror::Error)]
pub enum ContainerError {
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Spec(#[from] SpecError),
    #[error(transparent)]
    Launch(#[from] LaunchError),
    #[error(transparent)]
    Network(#[from] crate::network::NetworkError),
    #[error(transparent)]
    Cgroup(#[from] CgroupError),
    #[error(transparent)]
    Rootfs(#[from] crate::rootfs::RootfsError),
}

/// A container recorded in a state root.
#[derive(Debug, Clone)]
pub struct Container {
    pub root: StateRoot,
    pub record: Record,
}

impl Container {
    /// Loads a container's record.
    pub fn load(root: &StateRoot, id: &str) -> Result<Container, StateError> {
        state::validate_id(id).map_err(|_| StateError::NotFound(id.to_string()))?;
        let path = root.dir(id).join("state.json");
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(StateError::NotFound(id.to_string()))
            }
            Err(e) => return Err(StateError::io(&path, e)),
        };
        let record = serde_json::from_str(&text).map_err(|e| StateError::Corrupt {
            path: path.clone(),
            message: e.to_string(),
        })?;
        let c = Container {
            root: root.clone(),
            record,
        };
        c.thaw_after_killed_commit();
        Ok(c)
    }

    /// A commit freezes a running container while it reads its layer and marks that in
    /// [`COMMIT_FREEZE_MARK`] (its pid and start time). When that process is gone but the mark
    /// is still there, the commit was killed before it could thaw: thaw it now, unless the
    /// container was paused on purpose since.
    fn thaw_after_killed_commit(&self) {
        let mark = self.dir().join(COMMIT_FREEZE_MARK);
        let Ok(text) = std::fs::read_to_string(&mark) else {
            return;
        };
        let mut f = text.split_whitespace().map(str::parse::<u64>);
        if let (Some(Ok(pid)), Some(Ok(start))) = (f.next(), f.next()) {
            let pid = i32::try_from(pid).unwrap_or(0);
            if pid > 0 && state::process_start_time(pid) == Some(start) {
                return; // the commit is still at work
            }
        }
        if self.record.status != Status::Paused {
            if let Some(cg) = self.cgroup().filter(|cg| cg.exists()) {
                if cg.freeze(false).is_err() {
                    return; // the mark stays: the next command tries again
                }
            }
        }
        let _ = std::fs::remove_file(&mark);
    }

    pub fn id(&self) -> &str {
        &self.record.id
    }

    pub fn dir(&self) -> PathBuf {
        self.root.dir(&self.record.id)
    }

    pub fn fifo_path(&self) -> PathBuf {
        self.dir().join("exec.fifo")
    }

    /// The saved OCI config.
    pub fn spec(&self) -> Result<Spec, StateError> {
        let path = self.dir().join("config.json");
        let text = std::fs::read_to_string(&path).map_err(|e| StateError::io(&path, e))?;
        serde_json::from_str(&text).map_err(|e| StateError::Corrupt {
            path,
            message: e.to_string(),
        })
    }

    /// Whether the container's first process is alive (same pid and start time).
    pub fn is_alive(&self) -> bool {
        match (self.record.pid, self.record.pid_start) {
            (Some(pid), Some(start)) => state::process_start_time(pid) == Some(start),
            _ => false,
        }
    }

    /// The live status: derived from the process, not only from what was last written, so a
    /// crash or reboot shows as stopped and never blocks the next command.
    pub fn status(&self) -> Status {
        match self.record.status {
            Status::Creating if !self.is_alive() => Status::Stopped,
            Status::Stopped => Status::Stopped,
            _ if !self.is_alive() => Status::Stopped,
            Status::Created if !self.fifo_path().exists() => Status::Running,
            s => s,
        }
    }

    /// The container's cgroup, when it has one.
    pub fn cgroup(&self) -> Option<Cgroup> {
        self.record.cgroup.as_ref().map(Cgroup::new)
    }

    /// The container's cgroup, or an error naming why it has none (for pause, update, stats).
    /// The name the user knows the container by: its name, else its id.
    pub fn display_name(&self) -> String {
        if self.record.name.is_empty() {
            self.id().to_string()
        } else {
            self.record.name.clone()
        }
    }

    pub fn require_cgroup(&self, action: &str) -> Result<Cgroup, CgroupError> {
        // Named after what the user typed: the name when it has one.
        let who = if self.record.name.is_empty() {
            self.id()
        } else {
            &self.record.name
        };
        match self.cgroup() {
            Some(cg) if cg.exists() => Ok(cg),
            Some(cg) => Err(CgroupError::NoCgroup(
                who.to_string(),
                format!("{action}: its cgroup {} is gone", cg.path.display()),
            )),
            None => Err(CgroupError::NoCgroup(
                who.to_string(),
                format!(
                    "{action} needs one; it was started without, because this host delegates no cgroup v2 to the user: see `rootbox info`"
                ),
            )),
        }
    }

    /// Whether the OOM killer killed a process of this container (recorded at exit, or read
    /// from its cgroup's `memory.events`).
    pub fn oom_killed(&self) -> bool {
        self.record.oom_killed || self.cgroup().is_some_and(|cg| cg.oom_kills() > 0)
    }

    /// Usage figures from the container's cgroup.
    pub fn stats(&self) -> Result<crate::cgroup::Stats, CgroupError> {
        Ok(crate::cgroup::Stats::read(&self.require_cgroup("stats")?))
    }

    pub fn oci_state(&self) -> OciState {
        let status = self.status();
        OciState {
            oci_version: "1.2.0".into(),
            id: self.record.id.clone(),
            status,
            pid: if status == Status::Stopped {
                None
            } else {
                self.record.pid
            },
            bundle: self.record.bundle.clone(),
            annotations: self.record.annotations.clone(),
            created: Some(self.record.created.clone()),
            oom_killed: (status == Status::Stopped && self.oom_killed()).then_some(true),
            cgroup: self.record.cgroup.clone(),
        }
    }

    pub fn save(&self) -> Result<(), StateError> {
        let data = serde_json::to_vec_pretty(&self.record).map_err(|e| StateError::Corrupt {
            path: self.dir(),
            message: e.to_string(),
        })?;
        state::write_atomic(&self.dir().join("state.json"), &data)
    }

    /// Every process in the container's pid namespace (host pids), the first process first.
    pub fn pids(&self) -> Vec<i32> {
        let Some(pid) = self.record.pid.filter(|_| self.is_alive()) else {
            return Vec::new();
        };
        // Its cgroup holds exactly its processes, whatever their pid namespace.
        if let Some(cg) = self.cgroup().filter(|cg| cg.exists()) {
            let mut pids = vec![pid];
            pids.extend(cg.pids().into_iter().filter(|p| *p != pid));
            return pids;
        }
        let Ok(ns) = std::fs::read_link(format!("/proc/{pid}/ns/pid")) else {
            return vec![pid];
        };
        // Without a pid namespace of its own, a scan would find every process of the host's.
        if std::fs::read_link("/proc/self/ns/pid").ok().as_ref() == Some(&ns) {
            return vec![pid];
        }
        let mut pids = vec![pid];
        if let Ok(entries) = std::fs::read_dir("/proc") {
            for e in entries.flatten() {
                let Some(p) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
                    continue;
                };
                if p != pid
                    && std::fs::read_link(format!("/proc/{p}/ns/pid"))
                        .ok()
                        .as_ref()
                        == Some(&ns)
                {
                    pids.push(p);
                }
            }
        }
        pids
    }
}

/// All containers of a state root, skipping unreadable records.
pub fn list(root: &StateRoot) -> Result<Vec<Container>, StateError> {
    Ok(root
        .ids()?
        .iter()
        .filter_map(|id| Container::load(root, id).ok())
        .collect())
}

/// A new random container id (64 hex digits, like Docker's).
pub fn new_id() -> String {
    let mut buf = [0u8; 32];
    // SAFETY: getrandom fills the buffer we own.
    let n = unsafe { libc::getrandom(buf.as_mut_ptr().cast(), buf.len(), 0) };
    if n != buf.len() as isize {
        // Fall back to time and pid: unique enough for ids, which are checked for clashes anyway.
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        let seed = t ^ ((std::process::id() as u128) << 64);
        buf[..16].copy_from_slice(&seed.to_le_bytes());
        buf[16..].copy_from_slice(&seed.rotate_left(37).to_le_bytes());
    }
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

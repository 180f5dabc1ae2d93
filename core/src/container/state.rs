//! Container state on disk: one private directory per container under the state root, holding
//! `state.json`, the config, the `create`→`start` fifo and a lock file.

use std::fs;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::StateError;
pub use crate::network::PortMapping;

/// The lifecycle status, as the OCI runtime spec names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Creating,
    Created,
    Running,
    Paused,
    Stopped,
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = match self {
            Status::Creating => "creating",
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Stopped => "stopped",
        };
        f.write_str(s)
    }
}

/// What rootbox records about a container.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Record {
    pub id: String,
    pub bundle: PathBuf,
    pub rootfs: PathBuf,
    pub pid: Option<i32>,
    /// Start time of `pid` (field 22 of /proc/PID/stat), to detect pid reuse.
    pub pid_start: Option<u64>,
    /// Status as last written; the live status is derived from the process (see `Container`).
    pub status: Status,
    pub created: String,
    #[serde(default)]
    pub exit_code: Option<i32>,
    #[serde(default)]
    pub annotations: std::collections::HashMap<String, String>,
    /// The container's cgroup v2 directory, when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cgroup: Option<PathBuf>,
    /// The OOM killer killed a process of the container (`memory.events` oom_kill at exit).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub oom_killed: bool,
    /// The user-facing name (`rootbox run --name`); empty for OCI-runtime containers.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// What the docker-like lifecycle records (monitor, times, exit details, run options).
    #[serde(default)]
    pub lifecycle: Lifecycle,
    /// The container's network as attached: helper pid, ports, address (see `network`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<crate::network::Attached>,
}

/// Lifecycle details of a container managed by `rootbox` (run -d, create/start, stop, ...).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Lifecycle {
    /// The per-container monitor holding the container's stdio and recording its exit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monitor_pid: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monitor_start: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
    #[serde(default)]
    pub oom_killed: bool,
    /// Why the container could not run (a launch error), empty otherwise.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub error: String,
    /// The process has a terminal (`-t`).
    #[serde(default)]
    pub tty: bool,
    /// The container's stdin stays open for `attach` (`-i`).
    #[serde(default)]
    pub open_stdin: bool,
    /// Remove the container when it exits (`--rm`).
    #[serde(default)]
    pub auto_remove: bool,
    /// Signal `stop` sends first (default SIGTERM).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_signal: Option<String>,
    /// Seconds `stop` waits before SIGKILL (default 10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_timeout: Option<u32>,
    #[serde(default)]
    pub restart_count: u32,
    /// Published ports (the network's, see `network::Attached::ports`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<PortMapping>,
    /// The image the container was made from, when it was (empty for `--rootfs`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub image: String,
}

/// The OCI `state` output.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OciState {
    pub oci_version: String,
    pub id: String,
    pub status: Status,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pid: Option<i32>,
    pub bundle: PathBuf,
    #[serde(skip_serializing_if = "std::collections::HashMap::is_empty")]
    pub annotations: std::collections::HashMap<String, String>,
    /// Not in the OCI spec; runc prints it too.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    /// Not in the OCI spec: the OOM killer killed a process of the (stopped) container, like
    /// Docker's `State.OOMKilled`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oom_killed: Option<bool>,
    /// Not in the OCI spec: the container's cgroup v2 directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cgroup: Option<PathBuf>,
}

/// The directory holding every container's state for one user.
#[derive(Debug, Clone)]
pub struct StateRoot {
    pub path: PathBuf,
}

fn uid() -> u32 {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() }
}

impl StateRoot {
    /// `$XDG_RUNTIME_DIR/<name>`, `/run/<name>` for root, else `/tmp/<name>-<uid>`.
    pub fn default_path(name: &str) -> PathBuf {
        if let Some(d) = std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()) {
            let d = PathBuf::from(d);
            if d.is_dir() {
                return d.join(name);
            }
        }
        if uid() == 0 {
            PathBuf::from("/run").join(name)
        } else {
            std::env::temp_dir().join(format!("{name}-{}", uid()))
        }
    }

    /// Opens (creating, mode 0700) a state root and checks that it is private to the user.
    pub fn open(path: impl Into<PathBuf>) -> Result<StateRoot, StateError> {
        let path = path.into();
        match fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&path)
        {
            Ok(()) => {}
            Err(e) => return Err(StateError::io(&path, e)),
        }
        let md = fs::symlink_metadata(&path).map_err(|e| StateError::io(&path, e))?;
        if !md.is_dir() || md.uid() != uid() {
            return Err(StateError::NotPrivate { path });
        }
        if md.mode() & 0o077 != 0 {
            fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o700))
                .map_err(|e| StateError::io(&path, e))?;
        }
        Ok(StateRoot { path })
    }

    pub fn dir(&self, id: &str) -> PathBuf {
        self.path.join(id)
    }

    /// Every container id recorded here.
    pub fn ids(&self) -> Result<Vec<String>, StateError> {
        let mut ids = Vec::new();
        for e in fs::read_dir(&self.path).map_err(|e| StateError::io(&self.path, e))? {
            let e = e.map_err(|e| StateError::io(&self.path, e))?;
            if e.path().join("state.json").is_file() {
                ids.push(e.file_name().to_string_lossy().into_owned());
            }
        }
        ids.sort();
        Ok(ids)
    }
}

/// Container ids: what runc accepts.
pub fn validate_id(id: &str) -> Result<(), StateError> {
    let ok = !id.is_empty()
        && id.len() <= 1024
        && id != "."
        && id != ".."
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '+'));
    if ok {
        Ok(())
    } else {
        Err(StateError::BadId(id.to_string()))
    }
}

/// An exclusive lock on one container's state, released on drop.
pub struct Lock {
    _file: fs::File,
}

impl Lock {
    pub fn acquire(dir: &Path) -> Result<Lock, StateError> {
        let path = dir.join("lock");
        let f = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| StateError::io(&path, e))?;
        loop {
            // SAFETY: flock on an fd we own.
            if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) } == 0 {
                return Ok(Lock { _file: f });
            }
            let e = std::io::Error::last_os_error();
            if e.kind() != std::io::ErrorKind::Interrupted {
                return Err(StateError::io(&path, e));
            }
        }
    }
}

/// Writes a file atomically (temp file + rename), private to the user.
pub fn write_atomic(path: &Path, data: &[u8]) -> Result<(), StateError> {
    let tmp = path.with_extension("tmp");
    let mut f = fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| StateError::io(&tmp, e))?;
    f.write_all(data).map_err(|e| StateError::io(&tmp, e))?;
    fs::rename(&tmp, path).map_err(|e| StateError::io(path, e))
}

/// Start time of a process (clock ticks since boot), or None when it does not exist.
/// Zombies count as gone.
pub fn process_start_time(pid: i32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: fields start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    if fields.first() == Some(&"Z") || fields.first() == Some(&"X") {
        return None;
    }
    fields.get(19)?.parse().ok()
}

/// Now as RFC 3339 UTC with nanoseconds, like runc's `created`.
pub fn now_rfc3339() -> String {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    rfc3339(d)
}

/// A time since the epoch as RFC 3339 UTC with nanoseconds.
pub fn rfc3339(d: std::time::Duration) -> String {
    let secs = d.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86400), secs.rem_euclid(86400));
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719468;
    let era = z.div_euclid(146097);
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = if month <= 2 { y + 1 } else { y };
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:09}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_nanos()
    )
}

/// Parses an RFC 3339 time (`2024-05-01T12:00:00.5Z`, `...+02:00`) into a time since the epoch.
pub fn parse_rfc3339(s: &str) -> Option<std::time::Duration> {
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> { s.get(r)?.parse().ok() };
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, se) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || se > 60 {
        return None;
    }
    let mut rest = &s[19..];
    let mut nanos = 0u32;
    if let Some(frac) = rest.strip_prefix('.') {
        let digits = frac.bytes().take_while(|c| c.is_ascii_digit()).count();
        if digits == 0 {
            return None;
        }
        let mut v: u64 = 0;
        for (i, c) in frac[..digits].bytes().enumerate() {
            if i < 9 {
                v = v * 10 + u64::from(c - b'0');
            }
        }
        for _ in digits..9 {
            v *= 10;
        }
        nanos = v as u32;
        rest = &frac[digits..];
    }
    let offset = match rest {
        "Z" | "z" => 0,
        tz if tz.len() == 6 && (tz.starts_with('+') || tz.starts_with('-')) => {
            let oh: i64 = tz.get(1..3)?.parse().ok()?;
            let om: i64 = tz.get(4..6)?.parse().ok()?;
            let o = oh * 3600 + om * 60;
            if tz.starts_with('-') {
                -o
            } else {
                o
            }
        }
        _ => return None,
    };
    // Days from civil (Howard Hinnant's algorithm).
    let y = if mo <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146097 + doe - 719468;
    let secs = days * 86400 + h * 3600 + mi * 60 + se - offset;
    (secs >= 0).then(|| std::time::Duration::new(secs as u64, nanos))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_round_trip() {
        let d = std::time::Duration::new(1_714_564_800, 123_456_789);
        let s = rfc3339(d);
        assert_eq!(s, "2024-05-01T12:00:00.123456789Z");
        assert_eq!(parse_rfc3339(&s), Some(d));
        assert_eq!(
            parse_rfc3339("2024-05-01T14:00:00+02:00"),
            Some(std::time::Duration::new(1_714_564_800, 0))
        );
        assert_eq!(parse_rfc3339("2024-05-01"), None);
        assert_eq!(parse_rfc3339("yesterday, roughly"), None);
    }

    #[test]
    fn ids() {
        assert!(validate_id("abc-1.2_x").is_ok());
        assert!(validate_id("").is_err());
        assert!(validate_id("../x").is_err());
        assert!(validate_id("a/b").is_err());
    }

    #[test]
    fn own_start_time_is_known() {
        assert!(process_start_time(std::process::id() as i32).is_some());
        assert!(process_start_time(i32::MAX).is_none());
    }

    #[test]
    fn rfc3339_shape() {
        let s = now_rfc3339();
        assert_eq!(s.len(), 30, "{s}");
        assert!(s.starts_with("20") && s.ends_with('Z'));
    }
}

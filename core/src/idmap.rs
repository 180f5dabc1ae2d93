//! User and group id mappings of the container's user namespace: the caller's single id, or a
//! range from `/etc/subuid`/`/etc/subgid` written through `newuidmap`/`newgidmap`.

use std::path::{Path, PathBuf};
use std::process::Command;

use oci_spec::runtime::LinuxIdMapping;

/// How the container's ids map to the host's.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum IdMapMode {
    /// Subordinate ids when the caller has them and the helpers exist, else a single id.
    #[default]
    Auto,
    /// Only container root, mapped to the caller.
    Single,
    /// Container 0 → the caller, 1..65535 → the caller's subordinate range.
    SubIds,
}

impl std::str::FromStr for IdMapMode {
    type Err = IdMapError;
    fn from_str(s: &str) -> Result<Self, IdMapError> {
        match s {
            "auto" => Ok(Self::Auto),
            "single" => Ok(Self::Single),
            "subids" | "subuid" => Ok(Self::SubIds),
            other => Err(IdMapError::BadMode(other.to_string())),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum IdMapError {
    #[error("unknown id mapping mode {0:?} (expected auto, single or subids)")]
    BadMode(String),
    #[error("no subordinate id range for user {user} in {file} (add one, e.g. `usermod --add-subuids 100000-165535 --add-subgids 100000-165535 {user}`)")]
    NoRange { user: String, file: PathBuf },
    #[error("{helper} not found: install the `uidmap` package to map subordinate ids")]
    NoHelper { helper: &'static str },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{helper} failed for pid {pid}: {message}")]
    Helper {
        helper: &'static str,
        pid: i32,
        message: String,
    },
}

/// The number of container ids mapped in subordinate-id mode (0..=65535).
pub const SUBID_SPAN: u32 = 65536;

fn mapping(container: u32, host: u32, size: u32) -> LinuxIdMapping {
    // LinuxIdMapping has no public constructor other than its builder/serde.
    serde_json::from_value(serde_json::json!({
        "containerID": container, "hostID": host, "size": size
    }))
    .expect("id mapping fields are plain integers")
}

/// The caller's login name, from the password database.
pub fn user_name(uid: u32) -> Option<String> {
    let text = std::fs::read_to_string("/etc/passwd").ok()?;
    text.lines().find_map(|l| {
        let mut f = l.split(':');
        let name = f.next()?;
        let id = f.nth(1)?;
        (id.parse::<u32>().ok()? == uid).then(|| name.to_string())
    })
}

/// The first range of at least `want` ids for `name`/`id` in a subid file (`name:start:count`).
pub fn subid_range(file: &Path, name: Option<&str>, id: u32, want: u32) -> Option<(u32, u32)> {
    let text = std::fs::read_to_string(file).ok()?;
    let id_s = id.to_string();
    text.lines().find_map(|l| {
        let mut f = l.trim().split(':');
        let who = f.next()?;
        let start = f.next()?.parse::<u32>().ok()?;
        let count = f.next()?.parse::<u32>().ok()?;
        let mine = who == id_s || Some(who) == name;
        (mine && count >= want).then_some((start, count))
    })
}

/// Where a helper binary lives, if installed.
pub fn find_helper(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into());
    std::env::split_paths(&path)
        .chain(["/usr/bin", "/usr/sbin", "/bin", "/sbin"].map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// The mappings for a mode, for the calling user (identity of all ids when root).
pub fn mappings(mode: IdMapMode) -> Result<(Vec<LinuxIdMapping>, Vec<LinuxIdMapping>), IdMapError> {
    // SAFETY: geteuid/getegid cannot fail.
    let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
    if uid == 0 && mode != IdMapMode::Single {
        let all = mapping(0, 0, u32::MAX);
        return Ok((vec![all], vec![all]));
    }
    let single = || (vec![mapping(0, uid, 1)], vec![mapping(0, gid, 1)]);
    if mode == IdMapMode::Single {
        return Ok(single());
    }
    let name = user_name(uid);
    let want = SUBID_SPAN - 1;
    let ranges = (
        subid_range(Path::new("/etc/subuid"), name.as_deref(), uid, want),
        subid_range(Path::new("/etc/subgid"), name.as_deref(), uid, want),
    );
    let helpers = find_helper("newuidmap").is_some() && find_helper("newgidmap").is_some();
    match (ranges, helpers) {
        ((Some((us, _)), Some((gs, _))), true) => Ok((
            vec![mapping(0, uid, 1), mapping(1, us, want)],
            vec![mapping(0, gid, 1), mapping(1, gs, want)],
        )),
        _ if mode == IdMapMode::Auto => Ok(single()),
        ((None, _), _) => Err(IdMapError::NoRange {
            user: name.unwrap_or_else(|| uid.to_string()),
            file: "/etc/subuid".into(),
        }),
        ((_, None), _) => Err(IdMapError::NoRange {
            user: name.unwrap_or_else(|| uid.to_string()),
            file: "/etc/subgid".into(),
        }),
        (_, false) => Err(IdMapError::NoHelper {
            helper: "newuidmap",
        }),
    }
}

/// Which mode `Auto` resolves to for this caller, for `rootbox info`.
pub fn describe(uids: &[LinuxIdMapping]) -> &'static str {
    // SAFETY: geteuid cannot fail.
    let euid = unsafe { libc::geteuid() };
    match uids {
        [one] if one.size() == 1 => "single id (only container root is mapped, to you)",
        [one] if euid == 0 && one.host_id() == 0 => "identity (running as root)",
        _ => "subordinate ids (container 0 is you, 1..65535 come from /etc/subuid via newuidmap)",
    }
}

fn map_text(maps: &[LinuxIdMapping]) -> String {
    maps.iter()
        .map(|m| format!("{} {} {}\n", m.container_id(), m.host_id(), m.size()))
        .collect()
}

/// Whether the kernel lets us write these mappings ourselves (else the setuid helpers must).
fn direct_ok(maps: &[LinuxIdMapping], own: u32) -> bool {
    // SAFETY: geteuid cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    root || matches!(maps, [m] if m.size() == 1 && m.host_id() == own)
}

/// Writes a child's `uid_map`/`gid_map` (and `setgroups` when needed). Runs in the parent.
pub fn apply(pid: i32, uids: &[LinuxIdMapping], gids: &[LinuxIdMapping]) -> Result<(), IdMapError> {
    // SAFETY: geteuid/getegid cannot fail.
    let (euid, egid) = unsafe { (libc::geteuid(), libc::getegid()) };
    let proc_dir = PathBuf::from(format!("/proc/{pid}"));
    let write = |name: &str, text: &str| -> Result<(), IdMapError> {
        let path = proc_dir.join(name);
        std::fs::write(&path, text).map_err(|source| IdMapError::Write { path, source })
    };
    if direct_ok(gids, egid) {
        // SAFETY: geteuid cannot fail.
        if unsafe { libc::geteuid() } != 0 {
            write("setgroups", "deny")?;
        }
        write("gid_map", &map_text(gids))?;
    } else {
        run_helper("newgidmap", pid, gids)?;
    }
    if direct_ok(uids, euid) {
        write("uid_map", &map_text(uids))?;
    } else {
        run_helper("newuidmap", pid, uids)?;
    }
    Ok(())
}

fn run_helper(helper: &'static str, pid: i32, maps: &[LinuxIdMapping]) -> Result<(), IdMapError> {
    let bin = find_helper(helper).ok_or(IdMapError::NoHelper { helper })?;
    let mut cmd = Command::new(bin);
    cmd.arg(pid.to_string());
    for m in maps {
        cmd.arg(m.container_id().to_string())
            .arg(m.host_id().to_string())
            .arg(m.size().to_string());
    }
    let out = cmd.output().map_err(|e| IdMapError::Helper {
        helper,
        pid,
        message: e.to_string(),
    })?;
    if !out.status.success() {
        return Err(IdMapError::Helper {
            helper,
            pid,
            message: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(())
}

/// Whether a container id is mapped by these mappings.
pub fn is_mapped(maps: &[LinuxIdMapping], id: u32) -> bool {
    maps.iter()
        .any(|m| m.container_id() <= id && (id as u64) < m.container_id() as u64 + m.size() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn subid_lines_by_name_or_uid() {
        let mut f = tempfile_in_tmp();
        writeln!(f.1, "alice:100000:65536\n1001:300000:70000\nbob:1:10").unwrap();
        assert_eq!(
            subid_range(&f.0, Some("alice"), 1000, 65535),
            Some((100000, 65536))
        );
        assert_eq!(subid_range(&f.0, None, 1001, 65535), Some((300000, 70000)));
        assert_eq!(subid_range(&f.0, Some("bob"), 7, 65535), None);
        std::fs::remove_file(&f.0).unwrap();
    }

    #[test]
    fn modes_parse() {
        assert_eq!("single".parse::<IdMapMode>().unwrap(), IdMapMode::Single);
        assert!("nope".parse::<IdMapMode>().is_err());
    }

    #[test]
    fn mapped_ids() {
        let maps = vec![mapping(0, 1000, 1), mapping(1, 100000, 65535)];
        assert!(is_mapped(&maps, 0));
        assert!(is_mapped(&maps, 65535));
        assert!(!is_mapped(&maps, 65536));
        assert_eq!(map_text(&maps), "0 1000 1\n1 100000 65535\n");
    }

    fn tempfile_in_tmp() -> (PathBuf, std::fs::File) {
        let p = std::env::temp_dir().join(format!("rootbox-subid-{}", std::process::id()));
        let f = std::fs::File::create(&p).unwrap();
        (p, f)
    }
}

//! Where this process stands in the cgroup hierarchies: the cgroup2 mount, our cgroup, the
//! subtree delegated to us, the controllers it offers, and whether the host is v2, hybrid or v1.
//!
//! Discovery only reads (`/proc/self/cgroup`, `/proc/self/mountinfo`, `cgroup.*` files): `rootbox
//! info` and every launch may call it on any host without changing anything.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::Serialize;

/// The controllers rootbox manages, in the order it enables them.
pub const CONTROLLERS: [&str; 5] = ["cpu", "cpuset", "io", "memory", "pids"];

/// The host's cgroup layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Layout {
    /// cgroup2 is the only hierarchy (with controllers).
    V2,
    /// cgroup2 mounted next to v1 hierarchies that hold the controllers.
    Hybrid,
    /// Only cgroup v1 hierarchies.
    V1,
    /// No cgroup filesystem mounted.
    None,
}

impl std::fmt::Display for Layout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Layout::V2 => "v2",
            Layout::Hybrid => "hybrid",
            Layout::V1 => "v1",
            Layout::None => "none",
        })
    }
}

/// One line of `/proc/self/mountinfo`, the fields discovery needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountEntry {
    /// The root of the mount inside its filesystem (for cgroup2: a cgroup path).
    pub root: String,
    pub mount_point: PathBuf,
    pub fstype: String,
    pub super_options: Vec<String>,
}

/// Undoes mountinfo's octal escapes (`\040` for a space).
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1..i + 4].iter().all(u8::is_ascii_digit) {
            let v = (b[i + 1] - b'0') as u32 * 64
                + (b[i + 2] - b'0') as u32 * 8
                + (b[i + 3] - b'0') as u32;
            if let Ok(c) = u8::try_from(v) {
                out.push(c);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses `/proc/self/mountinfo` text.
pub fn parse_mountinfo(text: &str) -> Vec<MountEntry> {
    text.lines()
        .filter_map(|l| {
            let (left, right) = l.split_once(" - ")?;
            let fields: Vec<&str> = left.split(' ').collect();
            let mut r = right.split(' ');
            let fstype = r.next()?.to_string();
            let _source = r.next();
            let super_options = r
                .next()
                .unwrap_or("")
                .split(',')
                .filter(|o| !o.is_empty())
                .map(String::from)
                .collect();
            Some(MountEntry {
                root: unescape(fields.get(3)?),
                mount_point: PathBuf::from(unescape(fields.get(4)?)),
                fstype,
                super_options,
            })
        })
        .collect()
}

/// What `/proc/self/cgroup` says: the unified (v2) path and the v1 hierarchies.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProcCgroup {
    /// The `0::PATH` entry.
    pub unified: Option<String>,
    /// `(controllers, path)` of each v1 hierarchy (`name=systemd` included).
    pub v1: Vec<(Vec<String>, String)>,
}

/// Parses `/proc/self/cgroup` text.
pub fn parse_proc_cgroup(text: &str) -> ProcCgroup {
    let mut pc = ProcCgroup::default();
    for l in text.lines() {
        let mut it = l.splitn(3, ':');
        let (Some(id), Some(ctrls), Some(path)) = (it.next(), it.next(), it.next()) else {
            continue;
        };
        if id == "0" && ctrls.is_empty() {
            pc.unified = Some(path.to_string());
        } else {
            pc.v1.push((
                ctrls
                    .split(',')
                    .filter(|c| !c.is_empty())
                    .map(String::from)
                    .collect(),
                path.to_string(),
            ));
        }
    }
    pc
}

/// Resource controllers (not `name=` hierarchies) mounted on cgroup v1.
pub fn v1_controllers(mounts: &[MountEntry]) -> Vec<String> {
    let known = [
        "cpu",
        "cpuacct",
        "cpuset",
        "memory",
        "pids",
        "blkio",
        "devices",
        "freezer",
        "net_cls",
        "net_prio",
        "perf_event",
        "hugetlb",
        "rdma",
        "misc",
    ];
    let mut out: Vec<String> = mounts
        .iter()
        .filter(|m| m.fstype == "cgroup")
        .flat_map(|m| m.super_options.iter())
        .filter(|o| known.contains(&o.as_str()))
        .cloned()
        .collect();
    out.sort();
    out.dedup();
    out
}

/// The cgroup2 mount to use: `/sys/fs/cgroup` first, then `/sys/fs/cgroup/unified`, then any.
pub fn cgroup2_mount(mounts: &[MountEntry]) -> Option<&MountEntry> {
    let v2: Vec<&MountEntry> = mounts.iter().filter(|m| m.fstype == "cgroup2").collect();
    v2.iter()
        .find(|m| m.mount_point == Path::new("/sys/fs/cgroup"))
        .or_else(|| {
            v2.iter()
                .find(|m| m.mount_point == Path::new("/sys/fs/cgroup/unified"))
        })
        .or_else(|| v2.first())
        .copied()
}

/// The layout from the mounts.
pub fn layout(mounts: &[MountEntry]) -> Layout {
    let v2 = mounts.iter().any(|m| m.fstype == "cgroup2");
    let v1 = !v1_controllers(mounts).is_empty();
    match (v2, v1) {
        (true, false) => Layout::V2,
        (true, true) => Layout::Hybrid,
        (false, true) => Layout::V1,
        (false, false) => {
            if mounts.iter().any(|m| m.fstype == "cgroup") {
                Layout::V1
            } else {
                Layout::None
            }
        }
    }
}

/// The directory of cgroup `path` (as `/proc/self/cgroup` names it) under `mount`.
pub fn cgroup_dir(mount: &MountEntry, path: &str) -> PathBuf {
    // A mount whose root is not the namespace's root (bind of a sub-cgroup) shows paths relative
    // to that root.
    let root = mount.root.trim_end_matches('/');
    let rel = match path.strip_prefix(root) {
        Some(r) if !root.is_empty() && (r.is_empty() || r.starts_with('/')) => r,
        _ => path,
    };
    mount.mount_point.join(rel.trim_start_matches('/'))
}

pub(crate) fn euid() -> u32 {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() }
}

/// Whether the user may manage cgroup `dir`: owns its `cgroup.procs` and
/// `cgroup.subtree_control` and may create children in it.
pub fn manageable(dir: &Path) -> bool {
    let uid = euid();
    if uid == 0 {
        return dir.join("cgroup.procs").exists();
    }
    let owned = |p: &Path| {
        std::fs::metadata(p)
            .map(|m| m.uid() == uid)
            .unwrap_or(false)
    };
    let dir_ok = std::fs::metadata(dir)
        .map(|m| m.uid() == uid && m.mode() & 0o200 != 0)
        .unwrap_or(false);
    dir_ok && owned(&dir.join("cgroup.procs")) && owned(&dir.join("cgroup.subtree_control"))
}

/// The root of the delegated subtree holding `current`: walking up from it while the user may
/// manage the parent too. None when the user may not manage `current` itself. Root manages the
/// whole hierarchy, so for root it is the mount's root.
pub fn delegated_root(mount_point: &Path, current: &Path) -> Option<PathBuf> {
    if euid() == 0 {
        return Some(mount_point.to_path_buf());
    }
    if !current.starts_with(mount_point) || !manageable(current) {
        return None;
    }
    let mut dir = current.to_path_buf();
    while dir != mount_point {
        let Some(parent) = dir.parent() else { break };
        if !parent.starts_with(mount_point) || !manageable(parent) {
            break;
        }
        dir = parent.to_path_buf();
    }
    Some(dir)
}

/// Words of a cgroup file (`cgroup.controllers`, `cgroup.subtree_control`); empty on error.
pub fn read_words(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .split_whitespace()
        .map(String::from)
        .collect()
}

/// Everything discovery found.
#[derive(Debug, Clone, Serialize)]
pub struct Discovery {
    pub layout: Layout,
    /// Where cgroup2 is mounted.
    pub cgroup2_mount: Option<PathBuf>,
    /// Controllers held by cgroup v1 hierarchies (hybrid and v1 hosts).
    pub v1_controllers: Vec<String>,
    /// This process's cgroup v2 path (`0::` in /proc/self/cgroup).
    pub current: Option<String>,
    /// Its directory.
    pub current_dir: Option<PathBuf>,
    /// The root of the subtree this user may manage that holds `current` (systemd's
    /// `user@UID.service` on a delegating host).
    pub delegated: Option<PathBuf>,
    /// Controllers available in the delegated cgroup (`cgroup.controllers`).
    pub available: Vec<String>,
    /// Controllers enabled for its children (`cgroup.subtree_control`).
    pub enabled: Vec<String>,
    /// Whether systemd's user manager answers on the session bus (`busctl --user`).
    pub systemd_user: bool,
}

impl Discovery {
    /// Discovery from the given texts (for tests); `systemd_user` as given.
    pub fn from_texts(proc_cgroup: &str, mountinfo: &str, systemd_user: bool) -> Discovery {
        let mounts = parse_mountinfo(mountinfo);
        let pc = parse_proc_cgroup(proc_cgroup);
        let layout = layout(&mounts);
        let m2 = cgroup2_mount(&mounts);
        let current_dir = match (m2, &pc.unified) {
            (Some(m), Some(p)) => Some(cgroup_dir(m, p)),
            _ => None,
        };
        let delegated = match (m2, &current_dir) {
            (Some(m), Some(cur)) if layout == Layout::V2 => delegated_root(&m.mount_point, cur),
            _ => None,
        };
        let (available, enabled) = match &delegated {
            Some(d) => (
                read_words(&d.join("cgroup.controllers")),
                read_words(&d.join("cgroup.subtree_control")),
            ),
            None => (Vec::new(), Vec::new()),
        };
        Discovery {
            layout,
            cgroup2_mount: m2.map(|m| m.mount_point.clone()),
            v1_controllers: v1_controllers(&mounts),
            current: pc.unified,
            current_dir,
            delegated,
            available,
            enabled,
            systemd_user,
        }
    }

    /// Discovery of this process.
    pub fn probe() -> Discovery {
        let pc = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
        let mi = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let mounts = parse_mountinfo(&mi);
        let systemd = layout(&mounts) == Layout::V2 && super::systemd::user_manager_reachable();
        Self::from_texts(&pc, &mi, systemd)
    }

    /// Whether `controller` can be limited in a cgroup created under the delegated subtree.
    pub fn can_limit(&self, controller: &str) -> bool {
        self.layout == Layout::V2 && self.available.iter().any(|c| c == controller)
    }

    /// Why `controller` cannot be limited here (None when it can), in words for an error.
    pub fn why_not(&self, controller: &str) -> Option<String> {
        if self.can_limit(controller) {
            return None;
        }
        let v1_name = match controller {
            "io" => "blkio",
            c => c,
        };
        Some(match self.layout {
            Layout::Hybrid if self.v1_controllers.iter().any(|c| c == v1_name) => format!(
                "this host has hybrid cgroups: the {controller} controller is on a cgroup v1 hierarchy, which cannot be delegated to an unprivileged user, and rootbox only manages cgroup v2"
            ),
            Layout::Hybrid => format!(
                "this host has hybrid cgroups: its cgroup v2 hierarchy{} has no {controller} controller and rootbox does not manage cgroup v1",
                self.cgroup2_mount
                    .as_ref()
                    .map(|m| format!(" ({})", m.display()))
                    .unwrap_or_default()
            ),
            Layout::V1 => format!(
                "this host only has cgroup v1, which cannot be delegated to an unprivileged user; rootbox enforces {controller} limits through cgroup v2"
            ),
            Layout::None => "no cgroup filesystem is mounted".to_string(),
            Layout::V2 => match &self.delegated {
                None => format!(
                    "no cgroup is delegated to uid {}: its cgroup {} belongs to someone else",
                    euid(),
                    self.current.as_deref().unwrap_or("?")
                ),
                Some(d) => format!(
                    "the {controller} controller is not delegated to uid {}: {} offers only [{}]",
                    euid(),
                    d.join("cgroup.controllers").display(),
                    self.available.join(" ")
                ),
            },
        })
    }

    /// How to get `controllers` delegated, for an error message.
    pub fn how_to_fix(&self, controllers: &[String]) -> String {
        let list = controllers.join(" ");
        match self.layout {
            Layout::Hybrid | Layout::V1 => format!(
                "boot the host with cgroup v2 only (systemd.unified_cgroup_hierarchy=1 on the kernel command line) and delegate {list} to users: `sudo systemctl edit user@.service`, add `[Service]` `Delegate=cpu cpuset io memory pids`, then log in again"
            ),
            _ => format!(
                "ask the administrator to delegate {list}: `sudo systemctl edit user@.service`, add `[Service]` `Delegate=cpu cpuset io memory pids`, then log in again (without systemd: create a cgroup, chown it and its cgroup.procs, cgroup.subtree_control and cgroup.threads to the user, and pass it with --cgroup-parent)"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID_CGROUP: &str = "9:name=systemd:/
8:pids:/
7:blkio:/
4:memory:/process_api/51fc
1:cpu,cpuacct:/
0::/
";
    const HYBRID_MOUNTINFO: &str =
        "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
38 31 0:35 / /sys/fs/cgroup/blkio rw,relatime - cgroup cgroup rw,blkio
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw,nsdelegate
";
    const V2_CGROUP: &str =
        "0::/user.slice/user-1000.slice/user@1000.service/app.slice/term.scope\n";
    const V2_MOUNTINFO: &str = "22 1 0:21 / / rw - ext4 /dev/sda1 rw
25 22 0:23 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
";

    #[test]
    fn proc_cgroup_parses() {
        let pc = parse_proc_cgroup(HYBRID_CGROUP);
        assert_eq!(pc.unified.as_deref(), Some("/"));
        assert_eq!(pc.v1.len(), 5);
        assert_eq!(
            pc.v1[3],
            (vec!["memory".to_string()], "/process_api/51fc".to_string())
        );
        assert_eq!(pc.v1[4].0, vec!["cpu".to_string(), "cpuacct".to_string()]);
        let pc = parse_proc_cgroup(V2_CGROUP);
        assert!(pc.v1.is_empty());
        assert!(pc.unified.unwrap().ends_with("/term.scope"));
        // Paths may contain ':'.
        let pc = parse_proc_cgroup("0::/a:b\n");
        assert_eq!(pc.unified.as_deref(), Some("/a:b"));
    }

    #[test]
    fn mountinfo_parses() {
        let m = parse_mountinfo(HYBRID_MOUNTINFO);
        assert_eq!(m.len(), 7);
        assert_eq!(m[6].fstype, "cgroup2");
        assert_eq!(m[6].mount_point, PathBuf::from("/sys/fs/cgroup/unified"));
        assert_eq!(m[2].super_options, vec!["rw", "memory"]);
        let m = parse_mountinfo("1 2 0:1 / /a\\040b rw - tmpfs x rw\n");
        assert_eq!(m[0].mount_point, PathBuf::from("/a b"));
    }

    #[test]
    fn layouts() {
        assert_eq!(layout(&parse_mountinfo(HYBRID_MOUNTINFO)), Layout::Hybrid);
        assert_eq!(layout(&parse_mountinfo(V2_MOUNTINFO)), Layout::V2);
        let v1_only: String = HYBRID_MOUNTINFO
            .lines()
            .filter(|l| !l.contains("cgroup2"))
            .map(|l| format!("{l}\n"))
            .collect();
        assert_eq!(layout(&parse_mountinfo(&v1_only)), Layout::V1);
        assert_eq!(
            layout(&parse_mountinfo("22 1 0:21 / / rw - ext4 x rw\n")),
            Layout::None
        );
        assert_eq!(
            v1_controllers(&parse_mountinfo(HYBRID_MOUNTINFO)),
            vec!["blkio", "cpu", "cpuacct", "memory", "pids"]
        );
    }

    #[test]
    fn hybrid_discovery_says_v1_holds_the_controller() {
        let d = Discovery::from_texts(HYBRID_CGROUP, HYBRID_MOUNTINFO, false);
        assert_eq!(d.layout, Layout::Hybrid);
        assert_eq!(
            d.cgroup2_mount,
            Some(PathBuf::from("/sys/fs/cgroup/unified"))
        );
        assert_eq!(d.current.as_deref(), Some("/"));
        // Never a delegated subtree on a hybrid host, even for root.
        assert_eq!(d.delegated, None);
        assert!(!d.can_limit("memory"));
        let why = d.why_not("memory").unwrap();
        assert!(
            why.contains("hybrid") && why.contains("memory") && why.contains("v1"),
            "{why}"
        );
        let why = d.why_not("io").unwrap();
        assert!(why.contains("io controller is on a cgroup v1"), "{why}");
        assert!(d.how_to_fix(&["memory".into()]).contains("Delegate="));
    }

    #[test]
    fn v2_paths_resolve_under_the_mount() {
        let d = Discovery::from_texts(V2_CGROUP, V2_MOUNTINFO, false);
        assert_eq!(d.layout, Layout::V2);
        assert_eq!(
            d.current_dir,
            Some(PathBuf::from(
                "/sys/fs/cgroup/user.slice/user-1000.slice/user@1000.service/app.slice/term.scope"
            ))
        );
        let m =
            &parse_mountinfo("25 22 0:23 /user.slice /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n")[0];
        assert_eq!(
            cgroup_dir(m, "/user.slice/a.scope"),
            PathBuf::from("/sys/fs/cgroup/a.scope")
        );
        assert_eq!(
            cgroup_dir(m, "/other"),
            PathBuf::from("/sys/fs/cgroup/other")
        );
    }
}

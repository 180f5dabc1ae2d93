//! `rootbox info`: what this host gives a container — kernel, id mapping, overlay, cgroups,
//! helper programs.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::idmap::{self, IdMapMode};

#[derive(Debug, Clone, Serialize)]
pub struct HostInfo {
    pub version: String,
    pub kernel: String,
    pub uid: u32,
    pub gid: u32,
    pub user: Option<String>,
    pub rootless: bool,
    pub user_namespaces: bool,
    pub id_mapping: IdMappingInfo,
    pub overlay: OverlayInfo,
    pub cgroup: CgroupInfo,
    pub helpers: Vec<Helper>,
}

#[derive(Debug, Clone, Serialize)]
pub struct IdMappingInfo {
    /// `subids` or `single` (what `--idmap auto` chooses).
    pub mode: String,
    pub description: String,
    pub subuid_range: Option<(u32, u32)>,
    pub subgid_range: Option<(u32, u32)>,
    /// With a single id, files in images all belong to the container's root.
    pub ownership_squashed: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct OverlayInfo {
    /// The kernel mounts overlayfs inside a user namespace, whiteouts included (probed once
    /// per kernel release, cached in the store).
    pub kernel_userns_overlay: bool,
    /// What the probe found ("ok" or what failed).
    pub probe: String,
    pub probe_cache: Option<PathBuf>,
    pub fuse_overlayfs: Option<PathBuf>,
    /// What `--storage-driver auto` uses here.
    pub storage_driver: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct CgroupInfo {
    /// `v2`, `hybrid`, `v1` or `none`.
    pub version: String,
    pub cgroup2_mount: Option<PathBuf>,
    /// This process's cgroup v2 path.
    pub current: Option<String>,
    /// The nearest cgroup (this one or an ancestor) the user may manage.
    pub delegated: Option<PathBuf>,
    /// Controllers available in the delegated cgroup.
    pub controllers: Vec<String>,
    pub note: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Helper {
    pub name: String,
    pub path: Option<PathBuf>,
    pub purpose: String,
}

fn kernel_release() -> String {
    // SAFETY: an all-zero utsname is a valid out-buffer for uname.
    let mut u: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: valid out-buffer.
    if unsafe { libc::uname(&mut u) } < 0 {
        return "unknown".into();
    }
    // SAFETY: uname NUL-terminates release.
    unsafe { std::ffi::CStr::from_ptr(u.release.as_ptr()) }
        .to_string_lossy()
        .into_owned()
}

/// (major, minor) of a kernel release string.
pub fn kernel_version(release: &str) -> (u32, u32) {
    let mut it = release.split(|c: char| !c.is_ascii_digit());
    let major = it.next().and_then(|s| s.parse().ok()).unwrap_or(0);
    let minor = it.next().and_then(|s| s.parse().ok()).unwrap_or(0);
    (major, minor)
}

/// Mount points of a filesystem type, from /proc/self/mountinfo.
fn mounts_of(fstype: &str) -> Vec<PathBuf> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    text.lines()
        .filter_map(|l| {
            let (left, right) = l.split_once(" - ")?;
            let t = right.split(' ').next()?;
            if t == fstype {
                Some(PathBuf::from(left.split(' ').nth(4)?))
            } else {
                None
            }
        })
        .collect()
}

fn owned_by_me(p: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    // SAFETY: geteuid cannot fail.
    let uid = unsafe { libc::geteuid() };
    std::fs::metadata(p)
        .map(|m| m.uid() == uid)
        .unwrap_or(false)
}

fn cgroup_info() -> CgroupInfo {
    let v2 = mounts_of("cgroup2");
    let v1 = mounts_of("cgroup");
    let mount = v2.first().cloned();
    let version = match (&mount, v1.is_empty()) {
        (Some(m), true) if m == Path::new("/sys/fs/cgroup") => "v2",
        (Some(_), false) => "hybrid",
        (Some(_), true) => "v2",
        (None, false) => "v1",
        (None, true) => "none",
    }
    .to_string();
    let current = std::fs::read_to_string("/proc/self/cgroup")
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("0::").map(String::from))
        });
    let mut delegated = None;
    let mut controllers = Vec::new();
    if let (Some(m), Some(cur)) = (&mount, &current) {
        let mut dir = m.join(cur.trim_start_matches('/'));
        loop {
            if owned_by_me(&dir.join("cgroup.procs"))
                && owned_by_me(&dir.join("cgroup.subtree_control"))
            {
                controllers = std::fs::read_to_string(dir.join("cgroup.controllers"))
                    .unwrap_or_default()
                    .split_whitespace()
                    .map(String::from)
                    .collect();
                delegated = Some(dir);
                break;
            }
            if dir == *m || !dir.pop() || !dir.starts_with(m) {
                break;
            }
        }
    }
    let note = match (version.as_str(), &delegated, controllers.is_empty()) {
        ("v2", Some(_), false) => "resource limits are enforced through the delegated cgroup".to_string(),
        ("hybrid", _, _) => "hybrid cgroup host: the cpu, memory and pids controllers are on cgroup v1, which cannot be delegated to a user; containers run, but a resource limit is refused with an error".to_string(),
        ("v1", _, _) => "cgroup v1 host: containers run, but resource limits need cgroup v2 with delegation".to_string(),
        (_, None, _) => "no cgroup is delegated to this user: containers run without limits; ask for delegation (systemd: Delegate=yes on user@.service)".to_string(),
        _ => "the delegated cgroup has no controllers: limits cannot be enforced; enable them with systemd's Delegate=cpu memory pids io".to_string(),
    };
    CgroupInfo {
        version,
        cgroup2_mount: mount,
        current,
        delegated,
        controllers,
        note,
    }
}

/// Gathers what the host offers.
pub fn host_info() -> HostInfo {
    let kernel = kernel_release();
    // SAFETY: geteuid/getegid cannot fail.
    let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
    let user = idmap::user_name(uid);
    let (uids, _) = idmap::mappings(IdMapMode::Auto).unwrap_or_default();
    let single = matches!(uids.as_slice(), [m] if m.size() == 1);
    let want = idmap::SUBID_SPAN - 1;
    let userns = std::fs::read_to_string("/proc/sys/user/max_user_namespaces")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .is_some_and(|n| n > 0);
    let helper = |name: &str, purpose: &str| Helper {
        name: name.into(),
        path: idmap::find_helper(name),
        purpose: purpose.into(),
    };
    HostInfo {
        version: crate::VERSION.into(),
        kernel: kernel.clone(),
        uid,
        gid,
        user: user.clone(),
        rootless: uid != 0,
        user_namespaces: userns,
        id_mapping: IdMappingInfo {
            mode: if single { "single" } else { "subids" }.into(),
            description: idmap::describe(&uids).into(),
            subuid_range: idmap::subid_range(Path::new("/etc/subuid"), user.as_deref(), uid, want),
            subgid_range: idmap::subid_range(Path::new("/etc/subgid"), user.as_deref(), uid, want),
            ownership_squashed: single,
        },
        overlay: {
            let probe = crate::rootfs::overlay::probe_cached();
            OverlayInfo {
                kernel_userns_overlay: probe.works,
                probe: probe.detail,
                probe_cache: probe.cache,
                fuse_overlayfs: idmap::find_helper("fuse-overlayfs"),
                storage_driver: crate::rootfs::Driver::Auto.resolve().to_string(),
            }
        },
        cgroup: cgroup_info(),
        helpers: vec![
            helper("newuidmap", "maps subordinate uids (package uidmap)"),
            helper("newgidmap", "maps subordinate gids (package uidmap)"),
            helper("fuse-overlayfs", "overlay rootfs where the kernel cannot"),
            helper(
                "pasta",
                "private network with NAT and published ports (package passt)",
            ),
            helper("slirp4netns", "private network with NAT (fallback)"),
        ],
    }
}

impl HostInfo {
    /// The human-readable report.
    pub fn render(&self) -> String {
        let mut s = String::new();
        let yn = |b: bool| if b { "yes" } else { "no" };
        s.push_str(&format!("rootbox version:   {}\n", self.version));
        s.push_str(&format!("kernel:            {}\n", self.kernel));
        s.push_str(&format!(
            "user:              {} (uid {}, gid {}){}\n",
            self.user.as_deref().unwrap_or("?"),
            self.uid,
            self.gid,
            if self.rootless {
                ", rootless"
            } else {
                ", root"
            }
        ));
        s.push_str(&format!(
            "user namespaces:   {}\n",
            yn(self.user_namespaces)
        ));
        s.push_str(&format!(
            "uid mapping:       {}\n",
            self.id_mapping.description
        ));
        if let Some((start, count)) = self.id_mapping.subuid_range {
            s.push_str(&format!("  subuid range:    {start}+{count}\n"));
        }
        if self.id_mapping.ownership_squashed {
            s.push_str(
                "  note:            files in images are all owned by the container's root\n",
            );
        }
        s.push_str(&format!(
            "overlay:           kernel overlayfs in a user namespace: {}{}; fuse-overlayfs: {}\n",
            yn(self.overlay.kernel_userns_overlay),
            if self.overlay.kernel_userns_overlay {
                String::new()
            } else {
                format!(" ({})", self.overlay.probe)
            },
            self.overlay
                .fuse_overlayfs
                .as_ref()
                .map_or("not installed".into(), |p| p.display().to_string())
        ));
        s.push_str(&format!(
            "storage driver:    {} (for layered root filesystems)\n",
            self.overlay.storage_driver
        ));
        s.push_str(&format!("cgroup version:    {}\n", self.cgroup.version));
        if let Some(m) = &self.cgroup.cgroup2_mount {
            s.push_str(&format!("  cgroup2 mount:   {}\n", m.display()));
        }
        if let Some(c) = &self.cgroup.current {
            s.push_str(&format!("  current cgroup:  {c}\n"));
        }
        s.push_str(&format!(
            "  delegated:       {}\n",
            self.cgroup
                .delegated
                .as_ref()
                .map_or("none".into(), |p| p.display().to_string())
        ));
        s.push_str(&format!(
            "  controllers:     {}\n",
            if self.cgroup.controllers.is_empty() {
                "none".into()
            } else {
                self.cgroup.controllers.join(" ")
            }
        ));
        s.push_str(&format!("  note:            {}\n", self.cgroup.note));
        s.push_str("helpers:\n");
        for h in &self.helpers {
            s.push_str(&format!(
                "  {:<15}  {:<28} {}\n",
                h.name,
                h.path
                    .as_ref()
                    .map_or("not installed".into(), |p| p.display().to_string()),
                h.purpose
            ));
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_versions_parse() {
        assert_eq!(kernel_version("6.18.44-fc-v657"), (6, 18));
        assert_eq!(kernel_version("5.10.0-21-amd64"), (5, 10));
        assert!(kernel_version("5.11.0") >= (5, 11));
    }

    #[test]
    fn host_info_renders() {
        let info = host_info();
        let text = info.render();
        assert!(text.contains("kernel:"));
        assert!(text.contains("cgroup version:"));
        serde_json::to_string(&info).unwrap();
    }
}

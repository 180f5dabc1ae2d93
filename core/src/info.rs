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
    /// What `--network` defaults to here (`private` through a helper, or `none`).
    pub network_default: String,
    /// Why the default is `none`, when it is.
    pub network_note: Option<String>,
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
    /// Controllers on cgroup v1 hierarchies (hybrid and v1 hosts).
    pub v1_controllers: Vec<String>,
    /// This process's cgroup v2 path.
    pub current: Option<String>,
    /// The root of the delegated subtree holding this process's cgroup (the user may manage it).
    pub delegated: Option<PathBuf>,
    /// Controllers available in the delegated cgroup.
    pub controllers: Vec<String>,
    /// Controllers already enabled for its children.
    pub enabled: Vec<String>,
    /// Whether systemd's user manager looks reachable (for `--cgroup-manager systemd`).
    pub systemd_user: bool,
    /// What `--cgroup-manager auto` uses here: `cgroupfs`, `systemd` or `none`.
    pub manager: String,
    /// Per limit: whether it can be enforced, and why not.
    pub limits: Vec<LimitInfo>,
    pub note: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct LimitInfo {
    pub controller: String,
    /// The options it backs.
    pub options: String,
    pub enforceable: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
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

fn cgroup_info() -> CgroupInfo {
    use crate::cgroup::{Discovery, Layout};
    let d = Discovery::probe();
    let manager = match (d.layout, &d.delegated, d.systemd_user) {
        (Layout::V2, Some(_), _) => "cgroupfs",
        (Layout::V2, None, true) => "systemd",
        _ => "none",
    };
    let systemd_ok = manager == "systemd";
    let limits: Vec<LimitInfo> = [
        ("memory", "--memory --memory-swap --memory-reservation"),
        ("cpu", "--cpus --cpu-period --cpu-quota --cpu-shares"),
        ("cpuset", "--cpuset-cpus --cpuset-mems"),
        ("pids", "--pids-limit"),
        ("io", "--blkio-weight"),
    ]
    .iter()
    .map(|(c, opts)| {
        // Through systemd, what the scope gets is only known once it exists.
        let reason = if systemd_ok { None } else { d.why_not(c) };
        LimitInfo {
            controller: c.to_string(),
            options: opts.to_string(),
            enforceable: reason.is_none(),
            reason,
        }
    })
    .collect();
    let missing: Vec<String> = limits
        .iter()
        .filter(|l| !l.enforceable)
        .map(|l| l.controller.clone())
        .collect();
    let note = match (d.layout, manager) {
        (Layout::Hybrid, _) => format!(
            "hybrid cgroup host: the resource controllers ({}) are on cgroup v1, which cannot be delegated to a user; containers run, but asking for a limit is an error (or a warning with --cgroup-limits=best-effort). To fix: {}",
            d.v1_controllers.join(" "),
            d.how_to_fix(&missing)
        ),
        (Layout::V1, _) => format!(
            "cgroup v1 host: containers run, but resource limits need cgroup v2 with delegation. To fix: {}",
            d.how_to_fix(&missing)
        ),
        (Layout::None, _) => "no cgroup filesystem: containers run without limits".to_string(),
        (_, "systemd") => "the current cgroup is not delegated: rootbox asks systemd's user manager for a delegated scope per container (what it may limit depends on user@.service's Delegate=)".to_string(),
        (_, "none") => format!(
            "no cgroup is delegated to this user: containers run without a cgroup, and asking for a limit is an error. To fix: {}",
            d.how_to_fix(&["cpu".into(), "memory".into(), "pids".into()])
        ),
        _ if missing.is_empty() => "every limit is enforced through the delegated cgroup".to_string(),
        _ => format!(
            "limits on {} are enforced through the delegated cgroup; {} cannot be. To fix: {}",
            limits.iter().filter(|l| l.enforceable).map(|l| l.controller.as_str()).collect::<Vec<_>>().join(" "),
            missing.join(" "),
            d.how_to_fix(&missing)
        ),
    };
    CgroupInfo {
        version: d.layout.to_string(),
        cgroup2_mount: d.cgroup2_mount.clone(),
        v1_controllers: d.v1_controllers.clone(),
        current: d.current.clone(),
        delegated: d.delegated.clone(),
        controllers: d.available.clone(),
        enabled: d.enabled.clone(),
        systemd_user: d.systemd_user,
        manager: manager.to_string(),
        limits,
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
        network_default: match crate::network::default_mode() {
            (crate::network::Mode::Private(_), _) => match crate::network::preferred_helper() {
                Some(k) => format!("private ({k})"),
                None => "private".into(),
            },
            (m, _) => m.to_string(),
        },
        network_note: crate::network::default_mode().1,
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
        let c = &self.cgroup;
        s.push_str(&format!("cgroup version:    {}\n", c.version));
        if let Some(m) = &c.cgroup2_mount {
            s.push_str(&format!("  cgroup2 mount:   {}\n", m.display()));
        }
        if !c.v1_controllers.is_empty() {
            s.push_str(&format!(
                "  v1 controllers:  {}\n",
                c.v1_controllers.join(" ")
            ));
        }
        if let Some(cur) = &c.current {
            s.push_str(&format!("  current cgroup:  {cur}\n"));
        }
        s.push_str(&format!(
            "  delegated:       {}\n",
            c.delegated
                .as_ref()
                .map_or("none".into(), |p| p.display().to_string())
        ));
        let words = |v: &Vec<String>| {
            if v.is_empty() {
                "none".to_string()
            } else {
                v.join(" ")
            }
        };
        s.push_str(&format!("  controllers:     {}\n", words(&c.controllers)));
        s.push_str(&format!("  manager:         {}\n", c.manager));
        s.push_str("  limits:\n");
        for l in &c.limits {
            s.push_str(&format!(
                "    {:<8} {:<4} {}\n",
                l.controller,
                if l.enforceable { "yes" } else { "no" },
                l.reason.as_deref().unwrap_or(&l.options)
            ));
        }
        s.push_str(&format!("  note:            {}\n", c.note));
        s.push_str(&format!("network default:   {}\n", self.network_default));
        if let Some(n) = &self.network_note {
            s.push_str(&format!("  note:            {n}\n"));
        }
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

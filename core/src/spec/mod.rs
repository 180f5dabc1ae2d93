//! The OCI runtime configuration: rootbox's defaults (capabilities, mounts, masked and read-only
//! paths) and the translation of user-facing run options into an OCI [`Spec`].

pub mod caps;

use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxIdMapping, Mount, Spec};
use serde_json::json;

pub use oci_spec::runtime::Spec as OciSpec;

use crate::idmap::{self, IdMapMode};

/// Annotation that asks for rootbox's minimal init as PID 1.
pub const ANNOTATION_INIT: &str = "io.rootbox.init";

/// Errors in a container configuration, each naming what is wrong.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("cannot read OCI config {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid OCI config {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("invalid configuration: {0}")]
    Invalid(String),
    #[error("rootfs {path} does not exist or is not a directory")]
    NoRootfs { path: PathBuf },
    #[error("bind mount source {path} does not exist")]
    NoBindSource { path: PathBuf },
    #[error(transparent)]
    IdMap(#[from] idmap::IdMapError),
}

/// Docker's masked paths: present in the container but unreadable.
pub const MASKED_PATHS: [&str; 11] = [
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// Docker's read-only paths.
pub const READONLY_PATHS: [&str; 5] = [
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// The default `PATH` inside a container.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The base configuration every container starts from, like `runc spec`: all namespaces
/// (user, mount, pid, uts, ipc, network, cgroup), Docker's capabilities, masked and read-only
/// paths, a fresh /proc, /dev, /sys, and the given id mappings.
pub fn base_spec(uid_maps: &[LinuxIdMapping], gid_maps: &[LinuxIdMapping]) -> Spec {
    // devpts may only name gid 5 (tty) when that group is mapped into the container.
    let tty_mapped = gid_maps
        .iter()
        .any(|m| m.container_id() <= 5 && 5 < m.container_id() as u64 + m.size() as u64);
    let mut devpts_opts = vec![
        "nosuid",
        "noexec",
        "newinstance",
        "ptmxmode=0666",
        "mode=0620",
    ];
    if tty_mapped {
        devpts_opts.push("gid=5");
    }
    let caps: Vec<&str> = caps::DEFAULT_CAPS.to_vec();
    let value = json!({
        "ociVersion": "1.2.0",
        "process": {
            "terminal": false,
            "user": {"uid": 0, "gid": 0},
            "args": ["sh"],
            "env": [format!("PATH={DEFAULT_PATH}"), "TERM=xterm"],
            "cwd": "/",
            "capabilities": {
                "bounding": caps, "effective": caps, "permitted": caps
            },
            "rlimits": [],
            "noNewPrivileges": true
        },
        "root": {"path": "rootfs", "readonly": false},
        "hostname": "rootbox",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc",
             "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
             "options": devpts_opts},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
             "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
            {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
             "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs",
             "options": ["nosuid", "noexec", "nodev", "ro"]},
            {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
             "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]}
        ],
        "linux": {
            "uidMappings": uid_maps,
            "gidMappings": gid_maps,
            "namespaces": [
                {"type": "pid"}, {"type": "network"}, {"type": "ipc"}, {"type": "uts"},
                {"type": "mount"}, {"type": "cgroup"}, {"type": "user"}
            ],
            "maskedPaths": MASKED_PATHS,
            "readonlyPaths": READONLY_PATHS
        }
    });
    // The JSON above is a constant shape of valid OCI fields; failing to parse it is a bug.
    serde_json::from_value(value).expect("rootbox's base OCI spec is valid")
}

/// `rootbox-runtime spec`: a runc-like template with `rootfs` as root and `sh` as process.
pub fn template(rootless: bool) -> Result<Spec, SpecError> {
    let (uids, gids) = if rootless {
        idmap::mappings(IdMapMode::Single)?
    } else {
        idmap::mappings(IdMapMode::Auto)?
    };
    let mut spec = base_spec(&uids, &gids);
    if let Some(p) = spec.process_mut() {
        p.set_terminal(Some(true));
    }
    Ok(spec)
}

/// Loads `config.json` from a bundle and resolves its root path against the bundle.
pub fn load_bundle(bundle: &Path) -> Result<Spec, SpecError> {
    let path = bundle.join("config.json");
    let text = std::fs::read_to_string(&path).map_err(|source| SpecError::Read {
        path: path.clone(),
        source,
    })?;
    load_bundle_config(bundle, &text, &path)
}

/// An OCI config given as JSON text (`origin` names it in errors) for a bundle: its root path
/// resolved against `bundle`, checked like [`load_bundle`]'s.
pub fn load_bundle_config(bundle: &Path, text: &str, origin: &Path) -> Result<Spec, SpecError> {
    let path = origin.to_path_buf();
    let mut spec: Spec = serde_json::from_str(text).map_err(|e| SpecError::Parse {
        path: path.clone(),
        message: e.to_string(),
    })?;
    let root = spec
        .root()
        .as_ref()
        .ok_or_else(|| SpecError::Parse {
            path: path.clone(),
            message: "no \"root\" given".into(),
        })?
        .clone();
    let rootfs = if root.path().is_absolute() {
        root.path().clone()
    } else {
        bundle.join(root.path())
    };
    let rootfs = rootfs
        .canonicalize()
        .map_err(|_| SpecError::NoRootfs { path: rootfs })?;
    let mut root = root;
    root.set_path(rootfs);
    spec.set_root(Some(root));
    validate(&spec)?;
    Ok(spec)
}

/// Checks what the launch relies on, with a message naming the bad field.
pub fn validate(spec: &Spec) -> Result<(), SpecError> {
    let root = spec
        .root()
        .as_ref()
        .ok_or_else(|| SpecError::Invalid("no root filesystem given (\"root.path\")".into()))?;
    if !root.path().is_dir() {
        return Err(SpecError::NoRootfs {
            path: root.path().clone(),
        });
    }
    let process = spec
        .process()
        .as_ref()
        .ok_or_else(|| SpecError::Invalid("no process given (\"process\")".into()))?;
    match process.args() {
        Some(a) if !a.is_empty() && !a[0].is_empty() => {}
        _ => {
            return Err(SpecError::Invalid(
                "no command given (\"process.args\" is empty)".into(),
            ))
        }
    }
    if !process.cwd().is_absolute() {
        return Err(SpecError::Invalid(format!(
            "process.cwd {} is not an absolute path",
            process.cwd().display()
        )));
    }
    if let Some(linux) = spec.linux() {
        let has_time_ns =
            linux.namespaces().iter().flatten().any(|n| {
                n.typ() == oci_spec::runtime::LinuxNamespaceType::Time && n.path().is_none()
            });
        if linux.time_offsets().is_some() && !has_time_ns {
            return Err(SpecError::Invalid(
                "linux.timeOffsets needs a new time namespace: add {\"type\": \"time\"} to linux.namespaces".into(),
            ));
        }
    }
    for m in spec.mounts().iter().flatten() {
        if !m.destination().is_absolute() {
            return Err(SpecError::Invalid(format!(
                "mount destination {} is not an absolute path",
                m.destination().display()
            )));
        }
    }
    Ok(())
}

/// A volume given on a command line: `HOST:CTR[:ro|rw]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindVolume {
    pub source: PathBuf,
    pub destination: PathBuf,
    pub readonly: bool,
}

impl std::str::FromStr for BindVolume {
    type Err = SpecError;

    fn from_str(s: &str) -> Result<Self, SpecError> {
        let bad = |why: &str| SpecError::Invalid(format!("invalid volume {s:?}: {why}"));
        let parts: Vec<&str> = s.split(':').collect();
        let (src, dst, mode) = match parts.as_slice() {
            [src, dst] => (*src, *dst, None),
            [src, dst, mode] => (*src, *dst, Some(*mode)),
            _ => return Err(bad("expected HOST:CONTAINER[:ro|rw]")),
        };
        if !src.starts_with('/') {
            return Err(bad("the host path must be absolute"));
        }
        if !dst.starts_with('/') {
            return Err(bad("the container path must be absolute"));
        }
        let mut readonly = false;
        for opt in mode.unwrap_or("").split(',').filter(|o| !o.is_empty()) {
            match opt {
                "ro" => readonly = true,
                "rw" => readonly = false,
                "z" | "Z" => {}
                other => return Err(bad(&format!("unknown option {other:?}"))),
            }
        }
        Ok(BindVolume {
            source: PathBuf::from(src),
            destination: PathBuf::from(dst),
            readonly,
        })
    }
}

/// Which seccomp filter a container gets.
#[derive(Debug, Clone, Default)]
pub enum SeccompChoice {
    /// Docker's default profile.
    #[default]
    Default,
    /// No filter (`--security-opt seccomp=unconfined`).
    Unconfined,
    /// A JSON profile file (OCI or Docker format).
    Profile(PathBuf),
}

/// What a user asks for on `rootbox run`: translated into an OCI spec by [`RunOptions::to_spec`].
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    pub rootfs: PathBuf,
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub cwd: Option<String>,
    pub user: Option<String>,
    pub hostname: Option<String>,
    pub init: bool,
    pub read_only: bool,
    pub volumes: Vec<BindVolume>,
    pub tmpfs: Vec<String>,
    pub tty: bool,
    pub idmap: IdMapMode,
    pub network_host: bool,
    pub seccomp: SeccompChoice,
    /// `--network`, `-p`, `-P` (the image code fills `network.exposed`), `--add-host`,
    /// `--dns`, `--dns-search`: applied by `network::prepare` after `to_spec`.
    pub network: crate::network::NetworkOptions,
    /// Resource limits (`--memory`, `--cpus`, ...) → `linux.resources`.
    pub resources: crate::cgroup::ResourceOptions,
    /// `--cgroup-parent`: the container's cgroup is `<parent>/<id>` (absolute: from the cgroup2
    /// mount; relative: from the delegated cgroup) → `linux.cgroupsPath`.
    pub cgroup_parent: Option<String>,
    /// A layered rootfs; `rootfs` is then the (empty) directory it is mounted on.
    pub rootfs_layers: Option<crate::rootfs::Layers>,
}

impl RunOptions {
    /// The OCI spec for these options; `id` names the container (its default hostname).
    pub fn to_spec(&self, id: &str) -> Result<Spec, SpecError> {
        if self.args.is_empty() {
            return Err(SpecError::Invalid("no command given".into()));
        }
        let rootfs = self
            .rootfs
            .canonicalize()
            .map_err(|_| SpecError::NoRootfs {
                path: self.rootfs.clone(),
            })?;
        let (uids, gids) = idmap::mappings(self.idmap)?;
        let mut spec = base_spec(&uids, &gids);
        let mut root = spec.root().clone().unwrap_or_default();
        root.set_path(rootfs);
        root.set_readonly(Some(self.read_only));
        spec.set_root(Some(root));
        spec.set_hostname(Some(
            self.hostname
                .clone()
                .unwrap_or_else(|| id.chars().take(12).collect()),
        ));

        let mut process = spec.process().clone().unwrap_or_default();
        process.set_args(Some(self.args.clone()));
        process.set_terminal(Some(self.tty));
        let mut env = process.env().clone().unwrap_or_default();
        if let Some(h) = &self.hostname {
            env.push(format!("HOSTNAME={h}"));
        }
        for e in &self.env {
            let key = e.split('=').next().unwrap_or("");
            if key.is_empty() {
                return Err(SpecError::Invalid(format!(
                    "invalid environment variable {e:?}"
                )));
            }
            if !e.contains('=') {
                // `-e NAME` passes the caller's value, like docker.
                match std::env::var(e) {
                    Ok(v) => env.push(format!("{e}={v}")),
                    Err(_) => continue,
                }
                continue;
            }
            env.retain(|x| x.split('=').next() != Some(key));
            env.push(e.clone());
        }
        process.set_env(Some(env));
        if let Some(cwd) = &self.cwd {
            if !cwd.starts_with('/') {
                return Err(SpecError::Invalid(format!(
                    "working directory {cwd:?} is not an absolute path"
                )));
            }
            process.set_cwd(PathBuf::from(cwd));
        }
        if let Some(u) = &self.user {
            let (uid, gid) = parse_numeric_user(u)?;
            let mut user = process.user().clone();
            user.set_uid(uid);
            user.set_gid(gid.unwrap_or(uid));
            process.set_user(user);
        }
        spec.set_process(Some(process));

        let mut mounts = spec.mounts().clone().unwrap_or_default();
        for v in &self.volumes {
            if !v.source.exists() {
                return Err(SpecError::NoBindSource {
                    path: v.source.clone(),
                });
            }
            let mut opts = vec!["rbind".to_string()];
            opts.push(if v.readonly { "ro" } else { "rw" }.to_string());
            mounts.push(mount(&v.destination, "bind", &v.source, opts)?);
        }
        for t in &self.tmpfs {
            let (dst, extra) = t.split_once(':').unwrap_or((t.as_str(), ""));
            if !dst.starts_with('/') {
                return Err(SpecError::Invalid(format!(
                    "tmpfs destination {dst:?} is not an absolute path"
                )));
            }
            let mut opts: Vec<String> = ["nosuid", "nodev"].map(String::from).to_vec();
            opts.extend(extra.split(',').filter(|o| !o.is_empty()).map(String::from));
            mounts.push(mount(Path::new(dst), "tmpfs", Path::new("tmpfs"), opts)?);
        }
        spec.set_mounts(Some(mounts));

        if let Some(linux) = spec.linux_mut() {
            if self.network_host || self.network.mode == Some(crate::network::Mode::Host) {
                if let Some(ns) = linux.namespaces_mut() {
                    ns.retain(|n| n.typ() != oci_spec::runtime::LinuxNamespaceType::Network);
                }
            }
        }
        let cap_names: Vec<String> = caps::DEFAULT_CAPS.iter().map(|c| c.to_string()).collect();
        let seccomp = match &self.seccomp {
            SeccompChoice::Default => Some(crate::seccomp::default_profile(&cap_names)),
            SeccompChoice::Unconfined => None,
            SeccompChoice::Profile(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| SpecError::Read {
                    path: path.clone(),
                    source,
                })?;
                Some(
                    crate::seccomp::profile_from_json(&text, &cap_names).map_err(|e| {
                        SpecError::Parse {
                            path: path.clone(),
                            message: e.to_string(),
                        }
                    })?,
                )
            }
        };
        if let Some(linux) = spec.linux_mut() {
            linux.set_seccomp(seccomp);
        }
        self.apply_cgroup(&mut spec, id)?;
        if let Some(layers) = &self.rootfs_layers {
            let layers = layers
                .canonicalize()
                .and_then(|l| l.validate().map(|_| l))
                .map_err(|e| SpecError::Invalid(e.to_string()))?;
            let mut ann = spec.annotations().clone().unwrap_or_default();
            ann.insert(
                crate::rootfs::ANNOTATION_LAYERS.into(),
                layers.to_annotation(),
            );
            spec.set_annotations(Some(ann));
        }
        if self.init {
            let mut ann = spec.annotations().clone().unwrap_or_default();
            ann.insert(ANNOTATION_INIT.into(), "true".into());
            spec.set_annotations(Some(ann));
        }
        validate(&spec)?;
        Ok(spec)
    }
}

impl RunOptions {
    /// Limits and cgroup placement into the spec.
    fn apply_cgroup(&self, spec: &mut Spec, id: &str) -> Result<(), SpecError> {
        let resources = self
            .resources
            .to_oci()
            .map_err(|e| SpecError::Invalid(e.to_string()))?;
        if let Some(linux) = spec.linux_mut() {
            if resources.is_some() {
                linux.set_resources(resources);
            }
            if let Some(parent) = &self.cgroup_parent {
                if parent.is_empty() || parent.split('/').any(|c| c == "..") {
                    return Err(SpecError::Invalid(format!(
                        "invalid --cgroup-parent {parent:?}: expected a cgroup path without \"..\""
                    )));
                }
                linux.set_cgroups_path(Some(PathBuf::from(format!(
                    "{}/{id}",
                    parent.trim_end_matches('/')
                ))));
            }
        }
        Ok(())
    }
}

fn mount(dst: &Path, typ: &str, src: &Path, options: Vec<String>) -> Result<Mount, SpecError> {
    serde_json::from_value(json!({
        "destination": dst, "type": typ, "source": src, "options": options
    }))
    .map_err(|e| SpecError::Invalid(format!("mount {}: {e}", dst.display())))
}

/// `UID[:GID]` as numbers (names are resolved against an image's /etc/passwd elsewhere).
pub fn parse_numeric_user(s: &str) -> Result<(u32, Option<u32>), SpecError> {
    let bad = || SpecError::Invalid(format!("invalid user {s:?}: expected UID[:GID]"));
    let (u, g) = match s.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (s, None),
    };
    let uid = u.parse::<u32>().map_err(|_| bad())?;
    let gid = match g {
        Some(g) => Some(g.parse::<u32>().map_err(|_| bad())?),
        None => None,
    };
    Ok((uid, gid))
}

/// Whether the spec asks for rootbox's init as PID 1.
pub fn wants_init(spec: &Spec) -> bool {
    spec.annotations()
        .as_ref()
        .and_then(|a| a.get(ANNOTATION_INIT))
        .is_some_and(|v| v == "true")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_spec_parses_and_has_all_namespaces() {
        let spec = base_spec(&[], &[]);
        let ns = spec
            .linux()
            .as_ref()
            .unwrap()
            .namespaces()
            .as_ref()
            .unwrap();
        assert_eq!(ns.len(), 7);
        let devpts = spec
            .mounts()
            .as_ref()
            .unwrap()
            .iter()
            .find(|m| m.destination() == Path::new("/dev/pts"))
            .unwrap();
        assert!(!devpts.options().as_ref().unwrap().contains(&"gid=5".into()));
    }

    #[test]
    fn volumes_parse() {
        let v: BindVolume = "/a:/b:ro".parse().unwrap();
        assert!(v.readonly);
        assert_eq!(v.destination, PathBuf::from("/b"));
        assert!("/a".parse::<BindVolume>().is_err());
        assert!("a:/b".parse::<BindVolume>().is_err());
        assert!("/a:/b:xx".parse::<BindVolume>().is_err());
    }

    #[test]
    fn users_parse() {
        assert_eq!(parse_numeric_user("1000:100").unwrap(), (1000, Some(100)));
        assert_eq!(parse_numeric_user("7").unwrap(), (7, None));
        assert!(parse_numeric_user("bob").is_err());
    }
}

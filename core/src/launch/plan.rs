//! The launch plan: everything the container child needs, computed and allocated in the parent
//! before clone. The child only reads it (see `child.rs`): no allocation, no lock, no formatting.

use std::ffi::{CString, OsStr};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxNamespaceType, Mount, Process, Spec};

use super::LaunchError;
use crate::spec::{self, caps};
use crate::sys;

/// How a mount is made in the child.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MountKind {
    /// `open_tree(OPEN_TREE_CLONE)` of a host path, attached after pivot.
    Bind,
    /// A new filesystem instance (`fsopen`/`fsmount`), attached after pivot.
    Fresh,
}

/// What to do when a mount cannot be made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fallback {
    /// Fail the launch.
    None,
    /// Skip it (cgroup2 on hosts where it cannot be mounted rootless).
    Skip,
    /// Bind the host's same path instead, read-only (sysfs without a private netns).
    BindHost,
}

#[derive(Debug)]
pub struct MountPlan {
    /// Absolute path inside the container.
    pub dest: CString,
    pub kind: MountKind,
    /// Host path (bind) or filesystem type (fresh).
    pub source: CString,
    pub fstype: CString,
    /// `MOUNT_ATTR_*` flags.
    pub attrs: u64,
    /// Filesystem parameters for `fsconfig` (key, optional string value).
    pub params: Vec<(CString, Option<CString>)>,
    pub recursive: bool,
    /// The destination is a file (bind of a file), not a directory.
    pub dest_is_file: bool,
    pub fallback: Fallback,
}

#[derive(Debug, Default)]
pub struct CapPlan {
    pub bounding: u64,
    pub effective: u64,
    pub permitted: u64,
    pub inheritable: u64,
    pub ambient: u64,
    pub last_cap: u8,
}

/// The process to exec and the identity it runs with; shared by the container's first process
/// and by `exec`.
#[derive(Debug)]
pub struct ProcessPlan {
    pub cwd: CString,
    /// Absolute paths to try for `args[0]`, in `PATH` order.
    pub exec_candidates: Vec<CString>,
    pub exec_name: String,
    pub argv_storage: Vec<CString>,
    pub envp_storage: Vec<CString>,
    pub argv: Vec<*const libc::c_char>,
    pub envp: Vec<*const libc::c_char>,
    pub uid: libc::uid_t,
    pub gid: libc::gid_t,
    pub groups: Vec<libc::gid_t>,
    pub rlimits: Vec<(libc::c_int, libc::rlimit)>,
    pub caps: CapPlan,
    pub no_new_privs: bool,
    pub seccomp: Option<Vec<libc::sock_filter>>,
    pub tty: bool,
    pub console_size: Option<(u16, u16)>,
    pub umask: libc::mode_t,
    /// Create the working directory when it is missing (like Docker's WORKDIR).
    pub create_cwd: bool,
    pub oom_score_adj: Option<CString>,
}

#[derive(Debug)]
pub struct ChildPlan {
    pub clone_flags: u64,
    pub new_time_ns: bool,
    pub time_offsets: Option<CString>,
    pub hostname: Option<CString>,
    pub domainname: Option<CString>,
    pub rootfs: CString,
    pub propagation: libc::c_ulong,
    pub mounts: Vec<MountPlan>,
    pub dev_symlinks: Vec<(CString, CString)>,
    pub masked: Vec<CString>,
    pub readonly_paths: Vec<CString>,
    pub sysctls: Vec<(CString, CString)>,
    pub readonly_root: bool,
    pub no_pivot: bool,
    pub init: bool,
    pub process: ProcessPlan,
    /// Whether the parent wants a pause before pivot_root to run hooks.
    pub hook_pause: bool,
    /// Whether the child must set `/dev` up (a tmpfs /dev is among the mounts).
    pub has_dev: bool,
    /// Existing user and network namespaces to join (OCI `path`), e.g. a user network's: the
    /// process then runs in that user namespace instead of a new one (no id maps to write).
    pub join_user: Option<PathBuf>,
    pub join_net: Option<PathBuf>,
    /// A layered rootfs to mount on `rootfs` first (see `crate::rootfs`).
    pub layered: Option<crate::rootfs::LayeredPlan>,
}

fn cstr(s: impl AsRef<OsStr>, what: &str) -> Result<CString, LaunchError> {
    CString::new(s.as_ref().as_bytes())
        .map_err(|_| LaunchError::Plan(format!("{what} contains a NUL byte")))
}

fn path_cstr(p: &Path) -> Result<CString, LaunchError> {
    cstr(p.as_os_str(), &format!("path {}", p.display()))
}

/// The devices every container gets, bound from the host (mknod is not allowed rootless).
pub const DEFAULT_DEVICES: [&str; 6] = [
    "/dev/null",
    "/dev/zero",
    "/dev/full",
    "/dev/random",
    "/dev/urandom",
    "/dev/tty",
];

fn mount_plan(m: &Mount, has_netns: bool) -> Result<Option<MountPlan>, LaunchError> {
    let dest = path_cstr(m.destination())?;
    let typ = m.typ().clone().unwrap_or_default();
    let opts = m.options().clone().unwrap_or_default();
    let source = m.source().clone().unwrap_or_default();
    let is_bind = typ == "bind" || opts.iter().any(|o| o == "bind" || o == "rbind");
    let mut attrs = 0u64;
    let mut params = Vec::new();
    let mut recursive = false;
    for o in &opts {
        match o.as_str() {
            "ro" => attrs |= sys::MOUNT_ATTR_RDONLY,
            "rw" | "defaults" | "relatime" | "suid" | "dev" | "exec" | "async" | "atime"
            | "diratime" | "norelatime" | "private" | "rprivate" | "slave" | "rslave"
            | "shared" | "rshared" | "unbindable" | "runbindable" | "z" | "Z" | "nosymfollow"
            | "idmap" | "ridmap" => {}
            "nosuid" => attrs |= sys::MOUNT_ATTR_NOSUID,
            "nodev" => attrs |= sys::MOUNT_ATTR_NODEV,
            "noexec" => attrs |= sys::MOUNT_ATTR_NOEXEC,
            "noatime" => attrs |= sys::MOUNT_ATTR_NOATIME,
            "strictatime" => attrs |= sys::MOUNT_ATTR_STRICTATIME,
            "nodiratime" => attrs |= sys::MOUNT_ATTR_NODIRATIME,
            "rbind" => recursive = true,
            "bind" => {}
            kv => {
                if is_bind {
                    return Err(LaunchError::Plan(format!(
                        "unsupported option {kv:?} for bind mount {}",
                        m.destination().display()
                    )));
                }
                match kv.split_once('=') {
                    Some((k, v)) => {
                        params.push((cstr(k, "mount option")?, Some(cstr(v, "mount option")?)))
                    }
                    None => params.push((cstr(kv, "mount option")?, None)),
                }
            }
        }
    }
    if is_bind {
        if !source.exists() {
            return Err(LaunchError::Plan(format!(
                "bind mount source {} does not exist",
                source.display()
            )));
        }
        return Ok(Some(MountPlan {
            dest,
            kind: MountKind::Bind,
            dest_is_file: !source.is_dir(),
            source: path_cstr(&source)?,
            fstype: CString::default(),
            attrs,
            params,
            recursive,
            fallback: Fallback::None,
        }));
    }
    let (fstype, fallback) = match typ.as_str() {
        "cgroup" | "cgroup2" => ("cgroup2".to_string(), Fallback::Skip),
        "sysfs" if !has_netns => ("sysfs".to_string(), Fallback::BindHost),
        "sysfs" => ("sysfs".to_string(), Fallback::BindHost),
        "" => {
            return Err(LaunchError::Plan(format!(
                "mount {} has no type",
                m.destination().display()
            )))
        }
        t => (t.to_string(), Fallback::None),
    };
    let source = if fallback == Fallback::BindHost {
        path_cstr(m.destination())?
    } else {
        path_cstr(&source)?
    };
    Ok(Some(MountPlan {
        dest,
        kind: MountKind::Fresh,
        source,
        fstype: cstr(&fstype, "filesystem type")?,
        attrs,
        params,
        recursive: true,
        dest_is_file: false,
        fallback,
    }))
}

fn cap_mask(names: &Option<oci_spec::runtime::Capabilities>) -> Result<u64, LaunchError> {
    let mut mask = 0u64;
    for c in names.iter().flatten() {
        let name = c.to_string();
        let n = caps::number(&name)
            .ok_or_else(|| LaunchError::Plan(format!("unknown capability {name:?}")))?;
        mask |= 1 << n;
    }
    Ok(mask)
}

fn rlimit_resource(name: &str) -> Option<libc::c_int> {
    Some(match name {
        "RLIMIT_CPU" => libc::RLIMIT_CPU,
        "RLIMIT_FSIZE" => libc::RLIMIT_FSIZE,
        "RLIMIT_DATA" => libc::RLIMIT_DATA,
        "RLIMIT_STACK" => libc::RLIMIT_STACK,
        "RLIMIT_CORE" => libc::RLIMIT_CORE,
        "RLIMIT_RSS" => libc::RLIMIT_RSS,
        "RLIMIT_NPROC" => libc::RLIMIT_NPROC,
        "RLIMIT_NOFILE" => libc::RLIMIT_NOFILE,
        "RLIMIT_MEMLOCK" => libc::RLIMIT_MEMLOCK,
        "RLIMIT_AS" => libc::RLIMIT_AS,
        "RLIMIT_LOCKS" => libc::RLIMIT_LOCKS,
        "RLIMIT_SIGPENDING" => libc::RLIMIT_SIGPENDING,
        "RLIMIT_MSGQUEUE" => libc::RLIMIT_MSGQUEUE,
        "RLIMIT_NICE" => libc::RLIMIT_NICE,
        "RLIMIT_RTPRIO" => libc::RLIMIT_RTPRIO,
        "RLIMIT_RTTIME" => libc::RLIMIT_RTTIME,
        _ => return None,
    } as libc::c_int)
}

/// The value of `PATH` in an environment list, or the default.
fn env_path(env: &[String]) -> &str {
    env.iter()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or(spec::DEFAULT_PATH)
}

/// Builds the process part of the plan (also used by `exec`).
pub fn process_plan(
    process: &Process,
    spec: &Spec,
    create_cwd: bool,
) -> Result<ProcessPlan, LaunchError> {
    let args = process.args().clone().unwrap_or_default();
    let exec_name = args
        .first()
        .cloned()
        .ok_or_else(|| LaunchError::Plan("no command given".into()))?;
    let env = process.env().clone().unwrap_or_default();
    let exec_candidates = if exec_name.contains('/') {
        vec![cstr(&exec_name, "command")?]
    } else {
        env_path(&env)
            .split(':')
            .filter(|d| d.starts_with('/'))
            .map(|d| {
                cstr(
                    format!("{}/{}", d.trim_end_matches('/'), exec_name),
                    "command",
                )
            })
            .collect::<Result<_, _>>()?
    };
    let argv_storage: Vec<CString> = args
        .iter()
        .map(|a| cstr(a, "argument"))
        .collect::<Result<_, _>>()?;
    let envp_storage: Vec<CString> = env
        .iter()
        .map(|e| cstr(e, "environment variable"))
        .collect::<Result<_, _>>()?;
    let mut argv: Vec<*const libc::c_char> = argv_storage.iter().map(|c| c.as_ptr()).collect();
    argv.push(std::ptr::null());
    let mut envp: Vec<*const libc::c_char> = envp_storage.iter().map(|c| c.as_ptr()).collect();
    envp.push(std::ptr::null());

    let user = process.user();
    let mut rlimits = Vec::new();
    for r in process.rlimits().iter().flatten() {
        let name = serde_json::to_value(r.typ())
            .ok()
            .and_then(|v| v.as_str().map(String::from))
            .unwrap_or_default();
        let res = rlimit_resource(&name)
            .ok_or_else(|| LaunchError::Plan(format!("unknown rlimit {name:?}")))?;
        rlimits.push((
            res,
            libc::rlimit {
                rlim_cur: r.soft(),
                rlim_max: r.hard(),
            },
        ));
    }
    let caps_cfg = process.capabilities();
    let caps = CapPlan {
        bounding: cap_mask(&caps_cfg.as_ref().and_then(|c| c.bounding().clone()))?,
        effective: cap_mask(&caps_cfg.as_ref().and_then(|c| c.effective().clone()))?,
        permitted: cap_mask(&caps_cfg.as_ref().and_then(|c| c.permitted().clone()))?,
        inheritable: cap_mask(&caps_cfg.as_ref().and_then(|c| c.inheritable().clone()))?,
        ambient: cap_mask(&caps_cfg.as_ref().and_then(|c| c.ambient().clone()))?,
        last_cap: caps::last_cap(),
    };
    // As runc does, a config without `linux.seccomp` runs without a filter; `rootbox run` puts
    // the default profile into the config it generates.
    let seccomp = spec
        .linux()
        .as_ref()
        .and_then(|l| l.seccomp().as_ref())
        .map(crate::seccomp::compile)
        .transpose()?;
    let console_size = process
        .console_size()
        .as_ref()
        .map(|b| (b.height() as u16, b.width() as u16));
    Ok(ProcessPlan {
        cwd: path_cstr(process.cwd())?,
        exec_candidates,
        exec_name,
        argv_storage,
        envp_storage,
        argv,
        envp,
        uid: user.uid(),
        gid: user.gid(),
        groups: user.additional_gids().clone().unwrap_or_default(),
        rlimits,
        caps,
        no_new_privs: process.no_new_privileges().unwrap_or(false),
        seccomp,
        tty: process.terminal().unwrap_or(false),
        console_size,
        umask: user.umask().unwrap_or(0o022) as libc::mode_t,
        create_cwd,
        oom_score_adj: process
            .oom_score_adj()
            .map(|v| cstr(v.to_string(), "oom_score_adj"))
            .transpose()?,
    })
}

/// Builds the whole plan for a container's first process.
pub fn child_plan(spec: &Spec, no_pivot: bool, hook_pause: bool) -> Result<ChildPlan, LaunchError> {
    let root = spec
        .root()
        .as_ref()
        .ok_or_else(|| LaunchError::Plan("no root filesystem in the config".into()))?;
    let rootfs = root.path().clone();
    let linux = spec.linux().clone().unwrap_or_default();
    let mut clone_flags = 0u64;
    let mut new_time_ns = false;
    let mut has_netns = false;
    let mut join_user = None;
    let mut join_net = None;
    for ns in linux.namespaces().iter().flatten() {
        if let Some(path) = ns.path() {
            match ns.typ() {
                LinuxNamespaceType::User => join_user = Some(path.clone()),
                LinuxNamespaceType::Network => {
                    has_netns = true;
                    join_net = Some(path.clone())
                }
                t => {
                    return Err(LaunchError::Plan(format!(
                        "joining an existing {t} namespace by path is not supported (only user and network)"
                    )))
                }
            }
            continue;
        }
        match ns.typ() {
            LinuxNamespaceType::Time => new_time_ns = true,
            LinuxNamespaceType::Network => {
                has_netns = true;
                clone_flags |= libc::CLONE_NEWNET as u64
            }
            t => clone_flags |= t as u64,
        }
    }
    // rootbox always runs containers in a user namespace: that is what makes it rootless.
    clone_flags |= (libc::CLONE_NEWUSER | libc::CLONE_NEWNS) as u64;
    if join_user.is_some() {
        clone_flags &= !(libc::CLONE_NEWUSER as u64);
    } else if join_net.is_some() {
        return Err(LaunchError::Plan(
            "joining a network namespace by path needs its user namespace too (linux.namespaces: a \"user\" entry with the owning namespace's path)".into(),
        ));
    }
    if join_net.is_some() {
        clone_flags &= !(libc::CLONE_NEWNET as u64);
    }

    let time_offsets = match linux.time_offsets() {
        Some(offsets) if new_time_ns => {
            let mut text = String::new();
            for (clock, off) in offsets {
                text.push_str(&format!(
                    "{} {} {}\n",
                    clock,
                    off.secs().unwrap_or(0),
                    off.nanosecs().unwrap_or(0)
                ));
            }
            Some(cstr(text, "time offsets")?)
        }
        _ => None,
    };

    let mut mounts = Vec::new();
    let mut has_dev = false;
    for m in spec.mounts().iter().flatten() {
        if m.destination() == Path::new("/dev") && m.typ().as_deref() == Some("tmpfs") {
            has_dev = true;
        }
        if let Some(p) = mount_plan(m, has_netns)? {
            mounts.push(p);
        }
    }
    let mut dev_symlinks = Vec::new();
    if has_dev {
        let mut devices: Vec<PathBuf> = DEFAULT_DEVICES.iter().map(PathBuf::from).collect();
        for d in linux.devices().iter().flatten() {
            if !devices.contains(d.path()) {
                devices.push(d.path().clone());
            }
        }
        for d in devices {
            if !d.exists() {
                continue;
            }
            mounts.push(MountPlan {
                dest: path_cstr(&d)?,
                kind: MountKind::Bind,
                source: path_cstr(&d)?,
                fstype: CString::default(),
                attrs: sys::MOUNT_ATTR_NOSUID | sys::MOUNT_ATTR_NOEXEC,
                params: Vec::new(),
                recursive: false,
                dest_is_file: true,
                fallback: Fallback::None,
            });
        }
        for (target, link) in [
            ("/proc/self/fd", "/dev/fd"),
            ("/proc/self/fd/0", "/dev/stdin"),
            ("/proc/self/fd/1", "/dev/stdout"),
            ("/proc/self/fd/2", "/dev/stderr"),
            ("pts/ptmx", "/dev/ptmx"),
            ("/proc/kcore", "/dev/core"),
        ] {
            dev_symlinks.push((cstr(target, "symlink")?, cstr(link, "symlink")?));
        }
    }
    let propagation = match linux.rootfs_propagation().as_deref() {
        None | Some("") | Some("rslave") | Some("slave") => libc::MS_SLAVE | libc::MS_REC,
        Some("private") | Some("rprivate") => libc::MS_PRIVATE | libc::MS_REC,
        Some("shared") | Some("rshared") => libc::MS_SHARED | libc::MS_REC,
        Some("unbindable") | Some("runbindable") => libc::MS_UNBINDABLE | libc::MS_REC,
        Some(other) => {
            return Err(LaunchError::Plan(format!(
                "unknown rootfsPropagation {other:?}"
            )))
        }
    };
    let list = |v: &Option<Vec<String>>| -> Result<Vec<CString>, LaunchError> {
        v.iter().flatten().map(|p| cstr(p, "path")).collect()
    };
    let mut sysctls = Vec::new();
    for (k, v) in linux.sysctl().iter().flatten() {
        sysctls.push((
            cstr(format!("/proc/sys/{}", k.replace('.', "/")), "sysctl")?,
            cstr(v, "sysctl value")?,
        ));
    }
    let process = spec
        .process()
        .as_ref()
        .ok_or_else(|| LaunchError::Plan("no process in the config".into()))?;
    Ok(ChildPlan {
        clone_flags,
        new_time_ns,
        time_offsets,
        hostname: spec
            .hostname()
            .as_ref()
            .map(|h| cstr(h, "hostname"))
            .transpose()?,
        domainname: spec
            .domainname()
            .as_ref()
            .map(|h| cstr(h, "domainname"))
            .transpose()?,
        rootfs: path_cstr(&rootfs)?,
        propagation,
        mounts,
        dev_symlinks,
        masked: list(linux.masked_paths())?,
        readonly_paths: list(linux.readonly_paths())?,
        sysctls,
        readonly_root: root.readonly().unwrap_or(false),
        no_pivot,
        init: spec::wants_init(spec),
        process: process_plan(process, spec, true)?,
        hook_pause,
        has_dev,
        join_user,
        join_net,
        layered: crate::rootfs::launch_plan(spec)?,
    })
}

//! A container's cgroup: where it goes, creating it with the controllers its limits need
//! (honouring the "no internal processes" rule), writing the limits, and handing the launch an
//! fd to enter it at clone time (`CLONE_INTO_CGROUP`).
//!
//! Placement:
//! * cgroupfs (default when the caller's cgroup is in a delegated subtree):
//!   `<delegated root>/rootbox/<id>`; OCI `linux.cgroupsPath` or `--cgroup-parent` override it
//!   (absolute: from the cgroup2 mount; relative: from the delegated root).
//! * systemd (explicit, or by default when the caller's cgroup is not delegated and systemd's
//!   user manager is reachable): a transient `rootbox-<id>.scope` with `Delegate=yes` holding the
//!   launcher, the container in `<scope>/container`, the launcher moved to `<scope>/leaf`.
//!
//! Never fatal when no limit was asked for: any failure then means "no cgroup" and the container
//! runs as before.

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxResources, Spec};

use super::discover::{Discovery, Layout, CONTROLLERS};
use super::resources::{controllers_of, plan_writes, Write};
use super::{systemd, Cgroup, CgroupError};

/// Which cgroup manager to use (`--cgroup-manager`, `--systemd-cgroup`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Manager {
    /// cgroupfs when delegated, else systemd when reachable, else none.
    #[default]
    Auto,
    Cgroupfs,
    Systemd,
    /// No cgroup at all (limits cannot be enforced).
    Disabled,
}

impl std::str::FromStr for Manager {
    type Err = CgroupError;
    fn from_str(s: &str) -> Result<Self, CgroupError> {
        Ok(match s {
            "" | "auto" => Manager::Auto,
            "cgroupfs" => Manager::Cgroupfs,
            "systemd" => Manager::Systemd,
            "disabled" | "none" => Manager::Disabled,
            other => {
                return Err(CgroupError::Invalid(format!(
                    "unknown cgroup manager {other:?} (expected cgroupfs, systemd or disabled)"
                )))
            }
        })
    }
}

/// What to do with a limit that cannot be enforced (`--cgroup-limits`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LimitPolicy {
    /// Refuse to start the container (the default).
    #[default]
    Strict,
    /// Start it without the limit, with a warning.
    BestEffort,
}

impl std::str::FromStr for LimitPolicy {
    type Err = CgroupError;
    fn from_str(s: &str) -> Result<Self, CgroupError> {
        match s {
            "" | "strict" | "required" => Ok(LimitPolicy::Strict),
            "best-effort" | "besteffort" | "ignore" => Ok(LimitPolicy::BestEffort),
            other => Err(CgroupError::Invalid(format!(
                "unknown --cgroup-limits {other:?} (expected strict or best-effort)"
            ))),
        }
    }
}

/// Annotation that selects the limit policy in an OCI config.
pub const ANNOTATION_LIMITS: &str = "io.rootbox.cgroup-limits";
/// Annotation that selects the cgroup manager (how `rootbox run -d` hands `--cgroup-manager`
/// to the container's monitor).
pub const ANNOTATION_MANAGER: &str = "io.rootbox.cgroup-manager";
/// Environment variable that selects the limit policy.
pub const ENV_LIMITS: &str = "ROOTBOX_CGROUP_LIMITS";

/// cgroup choices of a launch beyond the OCI config.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CgroupOptions {
    pub manager: Manager,
    pub policy: LimitPolicy,
}

impl CgroupOptions {
    /// The policy from a config's `io.rootbox.cgroup-limits` annotation, else `self`'s.
    /// The manager from `io.rootbox.cgroup-manager` likewise.
    pub fn with_spec(mut self, spec: &Spec) -> Result<Self, CgroupError> {
        let annotations = spec.annotations().as_ref();
        if let Some(v) = annotations.and_then(|a| a.get(ANNOTATION_LIMITS)) {
            self.policy = v.parse()?;
        }
        if let Some(v) = annotations.and_then(|a| a.get(ANNOTATION_MANAGER)) {
            self.manager = v.parse()?;
        }
        Ok(self)
    }

    /// Records non-default choices as annotations of `spec`, so whoever launches it later
    /// (a monitor) makes the same choices.
    pub fn annotate(&self, spec: &mut Spec) {
        let mut a = spec.annotations().clone().unwrap_or_default();
        match self.policy {
            LimitPolicy::Strict => {}
            LimitPolicy::BestEffort => {
                a.insert(ANNOTATION_LIMITS.into(), "best-effort".into());
            }
        }
        let manager = match self.manager {
            Manager::Auto => None,
            Manager::Cgroupfs => Some("cgroupfs"),
            Manager::Systemd => Some("systemd"),
            Manager::Disabled => Some("disabled"),
        };
        if let Some(m) = manager {
            a.insert(ANNOTATION_MANAGER.into(), m.into());
        }
        spec.set_annotations(Some(a));
    }

    /// The policy from `ROOTBOX_CGROUP_LIMITS` when set (for front doors without a flag).
    pub fn with_env(mut self) -> Result<Self, CgroupError> {
        if let Ok(v) = std::env::var(ENV_LIMITS) {
            if !v.is_empty() {
                self.policy = v.parse()?;
            }
        }
        Ok(self)
    }
}

/// A container cgroup made ready before clone.
#[derive(Debug)]
pub struct Prepared {
    pub cgroup: Cgroup,
    /// Open directory for `CLONE_INTO_CGROUP`.
    pub dir: OwnedFd,
}

fn warn(msg: &str) {
    eprintln!("rootbox: warning: {msg}");
}

/// What a set of writes limits, in words: `memory limit (memory.max, memory.swap.max)`.
fn describe(writes: &[Write], controllers: &[String]) -> String {
    let files: Vec<&str> = writes
        .iter()
        .filter(|w| controllers.contains(&w.controller))
        .map(|w| w.file.as_str())
        .collect();
    let mut files_d = files.clone();
    files_d.dedup();
    format!(
        "{} limit{} ({})",
        controllers.join(", "),
        if controllers.len() > 1 { "s" } else { "" },
        files_d.join(", ")
    )
}

/// Fails (strict) or warns (best effort) about limits that cannot be enforced.
fn unenforceable(
    policy: LimitPolicy,
    writes: &[Write],
    controllers: &[String],
    why: String,
    fix: String,
) -> Result<(), CgroupError> {
    let what = describe(writes, controllers);
    match policy {
        LimitPolicy::Strict => Err(CgroupError::Unenforceable {
            what,
            it: if controllers.len() > 1 {
                "these limits"
            } else {
                "this limit"
            },
            why,
            fix,
        }),
        LimitPolicy::BestEffort => {
            warn(&format!(
                "running without the {what}: {why} (--cgroup-limits=best-effort)"
            ));
            Ok(())
        }
    }
}

/// What [`prepare`] would refuse before creating anything (strict policy only): limits asked
/// with the cgroup manager disabled, or on a host whose layout (cgroup v1, hybrid) cannot
/// enforce them at all. Front ends call it before handing a container to its monitor, so the
/// refusal reaches them as this typed error rather than as the monitor's report text.
pub fn check(spec: &Spec, opts: &CgroupOptions) -> Result<(), CgroupError> {
    let opts = opts.with_spec(spec)?;
    if opts.policy != LimitPolicy::Strict {
        return Ok(());
    }
    let resources = spec.linux().as_ref().and_then(|l| l.resources().clone());
    let writes = match &resources {
        Some(r) => plan_writes(r)?,
        None => Vec::new(),
    };
    let needed = controllers_of(&writes);
    if needed.is_empty() {
        return Ok(());
    }
    if opts.manager == Manager::Disabled {
        return unenforceable(
            opts.policy,
            &writes,
            &needed,
            "the cgroup manager is disabled (--cgroup-manager disabled)".into(),
            "use --cgroup-manager cgroupfs or systemd".into(),
        );
    }
    let disc = Discovery::probe();
    if disc.layout != Layout::V2 {
        let why = needed
            .iter()
            .filter_map(|c| disc.why_not(c))
            .collect::<Vec<_>>()
            .join("; ");
        return unenforceable(opts.policy, &writes, &needed, why, disc.how_to_fix(&needed));
    }
    Ok(())
}

/// Makes the container's cgroup with its limits, or decides to run without one. Returns None
/// when the container runs without a cgroup (nothing asked and none possible, manager disabled,
/// or best effort).
pub fn prepare(
    id: &str,
    spec: &Spec,
    opts: &CgroupOptions,
) -> Result<Option<Prepared>, CgroupError> {
    let resources = spec.linux().as_ref().and_then(|l| l.resources().clone());
    let writes = match &resources {
        Some(r) => plan_writes(r)?,
        None => Vec::new(),
    };
    let needed = controllers_of(&writes);
    let cgroups_path = spec
        .linux()
        .as_ref()
        .and_then(|l| l.cgroups_path().clone())
        .map(|p| p.to_string_lossy().into_owned())
        .filter(|p| !p.is_empty());

    if opts.manager == Manager::Disabled {
        if !needed.is_empty() {
            unenforceable(
                opts.policy,
                &writes,
                &needed,
                "the cgroup manager is disabled (--cgroup-manager disabled)".into(),
                "use --cgroup-manager cgroupfs or systemd".into(),
            )?;
        }
        return Ok(None);
    }
    let disc = Discovery::probe();
    if disc.layout != Layout::V2 {
        // v1/hybrid: never create a cgroup (the hierarchy is the machine's, and v1 cannot be
        // delegated); limits cannot be had.
        if !needed.is_empty() {
            let why = needed
                .iter()
                .filter_map(|c| disc.why_not(c))
                .collect::<Vec<_>>()
                .join("; ");
            unenforceable(opts.policy, &writes, &needed, why, disc.how_to_fix(&needed))?;
        }
        return Ok(None);
    }
    let use_systemd = match opts.manager {
        Manager::Systemd => true,
        Manager::Auto => disc.delegated.is_none() && disc.systemd_user,
        _ => false,
    };
    let placed = if use_systemd {
        place_systemd(id, cgroups_path.as_deref())
    } else {
        place_cgroupfs(id, cgroups_path.as_deref(), &disc)
    };
    let (base, target) = match placed {
        Ok(p) => p,
        Err(why) => {
            if !needed.is_empty() {
                unenforceable(opts.policy, &writes, &needed, why, disc.how_to_fix(&needed))?;
            }
            return Ok(None);
        }
    };
    match create(&base, &target, &needed, &writes, opts.policy, &disc) {
        Ok(p) => Ok(Some(p)),
        Err(e) if needed.is_empty() => {
            // Nothing was asked: a cgroup was a bonus (stats, kill); run without one.
            if std::env::var_os("ROOTBOX_DEBUG").is_some() {
                warn(&format!("running without a cgroup: {e}"));
            }
            Ok(None)
        }
        Err(e @ CgroupError::Unenforceable { .. }) => Err(e),
        Err(e) => match opts.policy {
            LimitPolicy::Strict => Err(e),
            LimitPolicy::BestEffort => {
                warn(&format!(
                    "running without a cgroup and its limits: {e} (--cgroup-limits=best-effort)"
                ));
                Ok(None)
            }
        },
    }
}

/// cgroupfs placement: (the cgroup where enabling starts, the container's cgroup).
fn place_cgroupfs(
    id: &str,
    cgroups_path: Option<&str>,
    disc: &Discovery,
) -> Result<(PathBuf, PathBuf), String> {
    let mount = disc
        .cgroup2_mount
        .clone()
        .ok_or_else(|| "cgroup2 is not mounted".to_string())?;
    let delegated = disc.delegated.clone();
    match (cgroups_path, delegated) {
        (Some(p), d) if p.starts_with('/') => {
            check_rel(p)?;
            let target = mount.join(p.trim_start_matches('/'));
            // Enable from the deepest ancestor we manage (root: the mount).
            let base = match d {
                Some(d) if target.starts_with(&d) => d,
                _ => nearest_manageable(&target, &mount).ok_or_else(|| {
                    format!(
                        "uid {} may not create cgroups at {}",
                        super::discover::euid(),
                        target.display()
                    )
                })?,
            };
            Ok((base, target))
        }
        (Some(p), Some(d)) => {
            check_rel(p)?;
            Ok((d.clone(), d.join(p)))
        }
        (None, Some(d)) => Ok((d.clone(), d.join("rootbox").join(id))),
        (_, None) => Err(disc
            .why_not("memory")
            .map(|w| {
                w.replace(
                    "the memory controller is not delegated",
                    "no cgroup is delegated",
                )
            })
            .unwrap_or_else(|| "no cgroup is delegated to this user".into())),
    }
}

fn check_rel(p: &str) -> Result<(), String> {
    if p.split('/').any(|c| c == "..") {
        Err(format!("cgroup path {p:?} contains \"..\""))
    } else {
        Ok(())
    }
}

/// The nearest existing ancestor of `target` (below `mount`) this user may manage.
fn nearest_manageable(target: &Path, mount: &Path) -> Option<PathBuf> {
    let mut dir = target.to_path_buf();
    loop {
        if dir.exists() {
            if super::discover::manageable(&dir) {
                return Some(dir);
            }
            return None;
        }
        if !dir.pop() || !dir.starts_with(mount) {
            return None;
        }
    }
}

fn place_systemd(id: &str, cgroups_path: Option<&str>) -> Result<(PathBuf, PathBuf), String> {
    let (slice, unit) = systemd::unit_for(cgroups_path, id);
    let path = systemd::enter_scope(&unit, slice.as_deref()).map_err(|e| e.to_string())?;
    let disc = Discovery::probe();
    let scope = disc
        .current_dir
        .filter(|d| d.ends_with(&unit))
        .ok_or_else(|| format!("systemd moved rootbox to {path}, which is not mounted here"))?;
    if !super::discover::manageable(&scope) {
        return Err(format!(
            "systemd did not delegate {} to uid {}",
            scope.display(),
            super::discover::euid()
        ));
    }
    Ok((scope.clone(), scope.join("container")))
}

/// Name of the leaf that processes are moved to when a cgroup must hand its controllers down.
pub const LEAF: &str = "leaf";

/// Enables `controller` for the children of `dir`, after moving the processes of `dir` itself
/// to `dir/leaf` (the "no internal processes" rule: a cgroup that hands controllers down may hold
/// no process; and threaded controllers such as cpu and pids would otherwise be accepted and
/// turn `dir` into a thread root, where memory can never be enabled).
fn enable(dir: &Path, controller: &str) -> Result<(), CgroupError> {
    let cg = Cgroup::new(dir);
    evacuate(&cg)?;
    cg.write("cgroup.subtree_control", &format!("+{controller}"))
}

/// Moves every process of `cg` (not its descendants) to `cg/leaf`. The root cgroup is exempt
/// from the rule and left alone.
fn evacuate(cg: &Cgroup) -> Result<(), CgroupError> {
    if cg.path.join("cgroup.subtree_control").exists() && !cg.path.join("cgroup.events").exists() {
        return Ok(()); // the root cgroup has no cgroup.events
    }
    let procs = cg.read("cgroup.procs")?;
    if procs.trim().is_empty() {
        return Ok(());
    }
    let leaf = Cgroup::new(cg.path.join(LEAF));
    if !leaf.exists() {
        match std::fs::create_dir(&leaf.path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(CgroupError::io(&leaf.path, "creating", e)),
        }
    }
    for pid in procs.lines().map(str::trim).filter(|p| !p.is_empty()) {
        match leaf.write("cgroup.procs", pid) {
            Ok(()) => {}
            // Gone meanwhile.
            Err(e) if e.errno() == Some(libc::ESRCH) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn create(
    base: &Path,
    target: &Path,
    needed: &[String],
    writes: &[Write],
    policy: LimitPolicy,
    disc: &Discovery,
) -> Result<Prepared, CgroupError> {
    let rel = target.strip_prefix(base).map_err(|_| {
        CgroupError::Invalid(format!(
            "{} is not below {}",
            target.display(),
            base.display()
        ))
    })?;
    if rel.as_os_str().is_empty() {
        return Err(CgroupError::Invalid(format!(
            "the container's cgroup cannot be the delegated cgroup {} itself",
            base.display()
        )));
    }
    // Every cgroup from base down to the target's parent hands the controllers down.
    let mut chain = vec![base.to_path_buf()];
    let comps: Vec<_> = rel.components().collect();
    let mut cur = base.to_path_buf();
    for c in &comps[..comps.len() - 1] {
        cur.push(c);
        chain.push(cur.clone());
    }
    let mut failures: Vec<(String, String)> = Vec::new();
    for dir in &chain {
        if !dir.exists() {
            match std::fs::create_dir(dir) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(CgroupError::io(dir, "creating", e)),
            }
        }
        let available = super::discover::read_words(&dir.join("cgroup.controllers"));
        let enabled = super::discover::read_words(&dir.join("cgroup.subtree_control"));
        for c in CONTROLLERS {
            if enabled.iter().any(|e| e == c) || !available.iter().any(|a| a == c) {
                continue;
            }
            // cpuset and io only when asked (cheap to skip, and cpuset needs parents' cpus).
            let wanted = needed.iter().any(|n| n == c);
            if !wanted && matches!(c, "cpuset" | "io") {
                continue;
            }
            if let Err(e) = enable(dir, c) {
                if wanted {
                    failures.push((c.to_string(), e.to_string()));
                }
            }
        }
    }
    let cg = Cgroup::new(target);
    if cg.exists() {
        if cg.populated() {
            return Err(CgroupError::io(
                target,
                "creating the container's cgroup (it exists and has processes: another container uses it)",
                std::io::Error::from_raw_os_error(libc::EEXIST),
            ));
        }
    } else {
        std::fs::create_dir(target).map_err(|e| CgroupError::io(target, "creating", e))?;
    }
    let result = (|| {
        let have = super::discover::read_words(&target.join("cgroup.controllers"));
        let missing: Vec<String> = needed
            .iter()
            .filter(|c| !have.contains(c))
            .cloned()
            .collect();
        if !missing.is_empty() {
            let why = missing
                .iter()
                .map(|c| match failures.iter().find(|(f, _)| f == c) {
                    Some((_, e)) => format!("the {c} controller could not be enabled: {e}"),
                    None => disc.why_not(c).unwrap_or_else(|| {
                        format!(
                            "the {c} controller is not available in {}",
                            target
                                .parent()
                                .unwrap_or(target)
                                .join("cgroup.controllers")
                                .display()
                        )
                    }),
                })
                .collect::<Vec<_>>()
                .join("; ");
            unenforceable(policy, writes, &missing, why, disc.how_to_fix(&missing))?;
        }
        apply_writes(&cg, writes, &have)
    })();
    match result {
        Ok(()) => Ok(Prepared {
            dir: cg.open_dir()?,
            cgroup: cg,
        }),
        Err(e) => {
            let _ = std::fs::remove_dir(target);
            Err(e)
        }
    }
}

/// Writes the limits whose controller is in `have` (the rest were reported already).
fn apply_writes(cg: &Cgroup, writes: &[Write], have: &[String]) -> Result<(), CgroupError> {
    for w in writes.iter().filter(|w| have.contains(&w.controller)) {
        if w.file == "memory.swap.max" && !cg.path.join(&w.file).exists() {
            // A kernel without swap accounting (swapaccount=0): like Docker, limit memory only.
            warn("this kernel does not account swap: the memory limit is applied without a swap limit");
            continue;
        }
        cg.write(&w.file, &w.value).map_err(|e| match e {
            CgroupError::Io { path, what, source }
                if source.raw_os_error() == Some(libc::EINVAL) =>
            {
                let hint = match w.controller.as_str() {
                    "cpuset" => {
                        let avail = std::fs::read_to_string(path.parent().unwrap_or(&path).join(
                            if w.file.ends_with("mems") {
                                "cpuset.mems.effective"
                            } else {
                                "cpuset.cpus.effective"
                            },
                        ))
                        .unwrap_or_default();
                        format!(" (available: {})", avail.trim())
                    }
                    _ => String::new(),
                };
                CgroupError::Invalid(format!(
                    "the kernel rejected {what} in {}{hint}: {source}",
                    path.display()
                ))
            }
            other => other,
        })?;
    }
    Ok(())
}

/// `update`: applies new limits to a running container's cgroup, enabling controllers in the
/// parents as needed.
pub fn update(cg: &Cgroup, resources: &LinuxResources) -> Result<(), CgroupError> {
    let writes = plan_writes(resources)?;
    let needed = controllers_of(&writes);
    let disc = Discovery::probe();
    let mut have = super::discover::read_words(&cg.path.join("cgroup.controllers"));
    let missing: Vec<String> = needed
        .iter()
        .filter(|c| !have.contains(c))
        .cloned()
        .collect();
    if !missing.is_empty() {
        // Walk up to the delegated root and enable them on the way down.
        let mut chain = Vec::new();
        let mut dir = cg.path.parent().map(Path::to_path_buf);
        while let Some(d) = dir {
            if !super::discover::manageable(&d) {
                break;
            }
            chain.push(d.clone());
            if Some(&d) == disc.delegated.as_ref() {
                break;
            }
            dir = d.parent().map(Path::to_path_buf);
        }
        for d in chain.iter().rev() {
            for c in &missing {
                let _ = enable(d, c);
            }
        }
        have = super::discover::read_words(&cg.path.join("cgroup.controllers"));
        let still: Vec<String> = needed
            .iter()
            .filter(|c| !have.contains(c))
            .cloned()
            .collect();
        if !still.is_empty() {
            let why = still
                .iter()
                .map(|c| {
                    disc.why_not(c).unwrap_or_else(|| {
                        format!(
                            "the {c} controller is not available to {}",
                            cg.path.display()
                        )
                    })
                })
                .collect::<Vec<_>>()
                .join("; ");
            unenforceable(
                LimitPolicy::Strict,
                &writes,
                &still,
                why,
                disc.how_to_fix(&still),
            )?;
        }
    }
    apply_writes(cg, &writes, &have)
}

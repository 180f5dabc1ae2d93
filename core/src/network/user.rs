//! User networks (`rootbox network create NAME`): several containers sharing one network.
//!
//! Design (see README, "Networking"): a network is one user namespace + network namespace held
//! by a tiny process of ours (the "infra" process, like a pod's pause process), with one
//! pasta or slirp4netns attached for outbound NAT. Containers on the network join that user
//! and network namespace (and make their own mount, pid, uts, ipc and cgroup namespaces), so
//! they share one address and one port space; each container's name resolves to it through
//! /etc/hosts entries rewritten whenever a container joins or leaves.
//!
//! Published ports on a user network are added to its running helper, which only slirp4netns
//! can do (through its API socket): user networks prefer slirp4netns for that reason.

use std::net::IpAddr;
use std::os::fd::AsRawFd;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::etc::HostEntry;
use super::helper::{self, HelperProc};
use super::{inspect, HelperKind, NetworkError};
use crate::container::state::{self, process_start_time, Lock, StateRoot};
use crate::idmap::{self, IdMapMode};
use crate::launch::sync;
use crate::sys;

/// Names that select a mode rather than a user network.
pub const RESERVED: [&str; 6] = ["none", "host", "private", "bridge", "pasta", "slirp4netns"];

/// A container attached to a user network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Member {
    /// The container id.
    pub id: String,
    /// Its name (`--name`; else its hostname).
    #[serde(default)]
    pub name: String,
    /// Names that resolve to it (its name and hostname).
    pub names: Vec<String>,
    /// Its first process and that process's start time (to prune crashed members).
    pub pid: i32,
    pub pid_start: Option<u64>,
    /// Its state directory (whose hosts file is kept up to date).
    pub dir: PathBuf,
}

/// A user network as recorded in `<state root>/@networks/NAME/network.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Network {
    pub name: String,
    pub created: String,
    /// The process holding the network's user and network namespaces.
    pub infra_pid: i32,
    pub infra_start: Option<u64>,
    pub helper: Option<HelperProc>,
    /// The address every container on the network has.
    pub ip: Option<IpAddr>,
    pub gateway: Option<IpAddr>,
    pub dns: Vec<IpAddr>,
    #[serde(default)]
    pub members: Vec<Member>,
}

/// `rootbox network inspect`'s view.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct NetworkInfo {
    pub name: String,
    pub created: String,
    pub driver: String,
    pub running: bool,
    #[serde(rename = "IPAddress")]
    pub ip_address: Option<IpAddr>,
    pub gateway: Option<IpAddr>,
    pub containers: Vec<Member>,
    /// The process holding the namespaces, and the helper's.
    pub infra_pid: Option<i32>,
    pub helper_pid: Option<i32>,
}

pub fn validate_name(name: &str) -> Result<(), NetworkError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        && !name.starts_with(['.', '-']);
    if !ok {
        return Err(NetworkError::Invalid(format!(
            "invalid network name {name:?}: use letters, digits, '_', '-', '.' (at most 64)"
        )));
    }
    if RESERVED.contains(&name) {
        return Err(NetworkError::Invalid(format!(
            "{name:?} is a network mode, not a name for a user network"
        )));
    }
    Ok(())
}

fn networks_dir(root: &StateRoot) -> PathBuf {
    // '@' is not allowed in container ids, so this never clashes with a container.
    root.path.join("@networks")
}

fn dir_of(root: &StateRoot, name: &str) -> PathBuf {
    networks_dir(root).join(name)
}

impl Network {
    pub fn dir(&self, root: &StateRoot) -> PathBuf {
        dir_of(root, &self.name)
    }

    pub fn infra_alive(&self) -> bool {
        self.infra_start.is_some() && process_start_time(self.infra_pid) == self.infra_start
    }

    fn save(&self, dir: &Path) -> Result<(), NetworkError> {
        let data = serde_json::to_vec_pretty(self)
            .map_err(|e| NetworkError::Invalid(format!("network state: {e}")))?;
        state::write_atomic(&dir.join("network.json"), &data)
            .map_err(|e| NetworkError::State(e.to_string()))
    }

    /// The live members (crashed ones pruned).
    fn live_members(&self) -> Vec<Member> {
        self.members
            .iter()
            .filter(|m| m.pid_start.is_some() && process_start_time(m.pid) == m.pid_start)
            .cloned()
            .collect()
    }

    /// `/etc/hosts` entries for every member.
    pub fn peers(&self) -> Vec<HostEntry> {
        let Some(ip) = self.ip else {
            return Vec::new();
        };
        let mut out: Vec<HostEntry> = Vec::new();
        for m in &self.members {
            for n in &m.names {
                if !out.iter().any(|e| &e.name == n) {
                    out.push(HostEntry {
                        name: n.clone(),
                        ip,
                    });
                }
            }
        }
        out
    }

    pub fn info(&self) -> NetworkInfo {
        NetworkInfo {
            name: self.name.clone(),
            created: self.created.clone(),
            driver: self
                .helper
                .as_ref()
                .map_or("none".into(), |h| h.kind.to_string()),
            running: self.infra_alive(),
            ip_address: self.ip,
            gateway: self.gateway,
            containers: self.live_members(),
            infra_pid: self.infra_alive().then_some(self.infra_pid),
            helper_pid: self.helper.as_ref().filter(|h| h.is_alive()).map(|h| h.pid),
        }
    }
}

fn load_dir(dir: &Path) -> Result<Network, NetworkError> {
    let path = dir.join("network.json");
    let text = std::fs::read_to_string(&path).map_err(|e| NetworkError::io("reading", &path, e))?;
    serde_json::from_str(&text).map_err(|e| NetworkError::State(format!("{}: {e}", path.display())))
}

fn lock(dir: &Path) -> Result<Lock, NetworkError> {
    Lock::acquire(dir).map_err(|e| NetworkError::State(e.to_string()))
}

/// Loads a user network.
pub fn load(root: &StateRoot, name: &str) -> Result<Network, NetworkError> {
    validate_name(name)?;
    let dir = dir_of(root, name);
    if !dir.join("network.json").is_file() {
        return Err(NetworkError::NoSuchNetwork(name.to_string()));
    }
    load_dir(&dir)
}

/// Every user network.
pub fn list(root: &StateRoot) -> Result<Vec<Network>, NetworkError> {
    let dir = networks_dir(root);
    let mut out = Vec::new();
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(NetworkError::io("reading", &dir, e)),
    };
    for e in entries.flatten() {
        if let Ok(n) = load_dir(&e.path()) {
            out.push(n);
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// `rootbox network create NAME`: the namespaces, their holder process and the helper.
pub fn create(
    root: &StateRoot,
    name: &str,
    helper: Option<HelperKind>,
) -> Result<Network, NetworkError> {
    validate_name(name)?;
    let kind = match helper {
        Some(k) => k,
        // slirp4netns first: it can add published ports to a running network.
        None => [HelperKind::Slirp4netns, HelperKind::Pasta]
            .into_iter()
            .find(|k| k.find().is_some())
            .ok_or(NetworkError::NoHelper)?,
    };
    let program = kind.find().ok_or(NetworkError::HelperMissing(kind))?;
    let parent = networks_dir(root);
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&parent)
        .map_err(|e| NetworkError::io("creating", &parent, e))?;
    let dir = dir_of(root, name);
    match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(NetworkError::io("creating", &dir, e)),
    }
    let _lock = lock(&dir)?;
    if dir.join("network.json").exists() {
        return Err(NetworkError::NetworkExists(name.to_string()));
    }
    let result = start(&dir, name, kind, &program);
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&dir);
    }
    result
}

fn start(
    dir: &Path,
    name: &str,
    kind: HelperKind,
    program: &Path,
) -> Result<Network, NetworkError> {
    let (pid, start) = spawn_infra()?;
    let kill_infra = || {
        // SAFETY: killing the process we just made.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    };
    let h = helper::start(&helper::Start {
        kind,
        program,
        target_pid: pid,
        ports: &[],
        dir,
        die_with_parent: false,
        dns_forward: false,
    });
    let h = match h {
        Ok(h) => h,
        Err(e) => {
            kill_infra();
            return Err(e);
        }
    };
    let (v4, _, gw) = inspect::addresses(pid);
    let dns = match kind {
        HelperKind::Slirp4netns => vec![helper::SLIRP_DNS
            .parse()
            .map_err(|_| NetworkError::Invalid("slirp4netns DNS address".into()))?],
        HelperKind::Pasta => super::pasta_dns().0,
    };
    let net = Network {
        name: name.to_string(),
        created: state::now_rfc3339(),
        infra_pid: pid,
        infra_start: start,
        helper: Some(h.clone()),
        ip: v4.first().copied().map(IpAddr::V4),
        gateway: gw,
        dns,
        members: Vec::new(),
    };
    if let Err(e) = net.save(dir) {
        h.stop();
        kill_infra();
        return Err(e);
    }
    Ok(net)
}

/// `rootbox network rm NAME`: refuses while containers use it (unless `force`).
pub fn remove(root: &StateRoot, name: &str, force: bool) -> Result<(), NetworkError> {
    let net = load(root, name)?;
    let dir = net.dir(root);
    let _lock = lock(&dir)?;
    let net = load_dir(&dir)?;
    let live = net.live_members();
    if !live.is_empty() && !force {
        return Err(NetworkError::NetworkInUse {
            name: name.to_string(),
            containers: live
                .iter()
                .map(|m| {
                    if m.name.is_empty() {
                        m.id.clone()
                    } else {
                        m.name.clone()
                    }
                })
                .collect(),
        });
    }
    stop(&net);
    std::fs::remove_dir_all(&dir).map_err(|e| NetworkError::io("removing", &dir, e))
}

fn stop(net: &Network) {
    if let Some(h) = &net.helper {
        h.stop();
    }
    if net.infra_alive() {
        // SAFETY: signalling the verified (pid + start time) infra process.
        unsafe { libc::kill(net.infra_pid, libc::SIGKILL) };
    }
}

/// Makes sure the network's namespaces and helper run (they do not survive a reboot or a
/// kill): restarts them when gone. Returns the current state.
pub fn ensure_running(root: &StateRoot, name: &str) -> Result<Network, NetworkError> {
    let net = load(root, name)?;
    let dir = net.dir(root);
    let _lock = lock(&dir)?;
    let net = load_dir(&dir)?;
    if net.infra_alive() && net.helper.as_ref().is_some_and(|h| h.is_alive()) {
        return Ok(net);
    }
    stop(&net);
    let kind = net
        .helper
        .as_ref()
        .map(|h| h.kind)
        .unwrap_or(HelperKind::Slirp4netns);
    let program = kind.find().ok_or(NetworkError::HelperMissing(kind))?;
    let mut fresh = start(&dir, name, kind, &program)?;
    fresh.created = net.created;
    fresh.save(&dir)?;
    Ok(fresh)
}

/// Adds a container to the network's members and rewrites every member's hosts file.
/// Returns the network as updated.
pub fn join(
    root: &StateRoot,
    name: &str,
    member: Member,
    write_hosts: &dyn Fn(&Path, &[HostEntry]),
) -> Result<Network, NetworkError> {
    let dir = dir_of(root, name);
    let _lock = lock(&dir)?;
    let mut net = load_dir(&dir)?;
    net.members = net.live_members();
    net.members.retain(|m| m.id != member.id);
    net.members.push(member);
    net.save(&dir)?;
    let peers = net.peers();
    for m in &net.members {
        write_hosts(&m.dir, &peers);
    }
    Ok(net)
}

/// Removes a container from the network's members and rewrites the others' hosts files.
pub fn leave(
    root_dir: &Path,
    id: &str,
    write_hosts: &dyn Fn(&Path, &[HostEntry]),
) -> Result<(), NetworkError> {
    if !root_dir.join("network.json").is_file() {
        return Ok(()); // removed meanwhile
    }
    let _lock = lock(root_dir)?;
    let mut net = load_dir(root_dir)?;
    net.members = net.live_members();
    net.members.retain(|m| m.id != id);
    net.save(root_dir)?;
    let peers = net.peers();
    for m in &net.members {
        write_hosts(&m.dir, &peers);
    }
    Ok(())
}

/// The namespace files a container joins to be on the network.
pub fn namespace_paths(net: &Network) -> (PathBuf, PathBuf) {
    let base = PathBuf::from(format!("/proc/{}/ns", net.infra_pid));
    (base.join("user"), base.join("net"))
}

/// Runs in the forked processes of [`spawn_infra`]: system calls only.
fn infra_child(sync_fd: i32) -> ! {
    // SAFETY: system calls on our own process; every path ends in _exit.
    unsafe {
        // A new session: no terminal signals reach it.
        libc::setsid();
        let r = sys::clone_legacy((libc::CLONE_NEWUSER | libc::CLONE_NEWNET) as u64);
        match r {
            Ok(0) => {}
            Ok(pid) => {
                let msg = sync::Msg {
                    kind: sync::CHILD_PID,
                    step: 0,
                    index: 0,
                    value: pid,
                };
                let _ = sync::send(sync_fd, &msg, None);
                libc::_exit(0);
            }
            Err(e) => {
                let msg = sync::Msg {
                    kind: sync::CHILD_ERROR,
                    step: 0,
                    index: 0,
                    value: e,
                };
                let _ = sync::send(sync_fd, &msg, None);
                libc::_exit(1);
            }
        }
        // The infra process: wait for the id maps, then hold the namespaces until killed.
        match sync::recv(sync_fd) {
            Ok(Some((m, _))) if m.kind == sync::PARENT_MAPPED => {}
            _ => libc::_exit(1),
        }
        let _ = sys::close_range(0, u32::MAX, 0);
        libc::prctl(libc::PR_SET_NAME, c"rootbox-netns".as_ptr(), 0, 0, 0);
        // Every signal stays blocked (no inherited handler can run); TERM and INT end it.
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGINT);
        loop {
            let mut sig: libc::c_int = 0;
            if libc::sigwait(&set, &mut sig) == 0 {
                libc::_exit(0);
            }
        }
    }
}

/// Starts the process holding a new user namespace (with the user's id mapping) and network
/// namespace. It is not our child (double fork), so nothing has to reap it.
fn spawn_infra() -> Result<(i32, Option<u64>), NetworkError> {
    let fail = |m: String| NetworkError::Helper {
        helper: "network namespace".into(),
        message: m,
    };
    let (uids, gids) = idmap::mappings(IdMapMode::Auto).map_err(|e| fail(e.to_string()))?;
    let (parent_sock, child_sock) = sync::pair().map_err(|e| fail(format!("socketpair: {e}")))?;
    let child_fd = child_sock.as_raw_fd();
    let blocked = crate::launch::SignalsBlocked::new();
    // SAFETY: the child runs only system calls (infra_child) and never returns.
    let r = unsafe { sys::clone_legacy(0) };
    let middle = match r {
        Ok(0) => infra_child(child_fd),
        Ok(pid) => pid,
        Err(e) => {
            drop(blocked);
            return Err(fail(format!(
                "fork: {}",
                std::io::Error::from_raw_os_error(e)
            )));
        }
    };
    drop(blocked);
    drop(child_sock);
    let fd = parent_sock.as_raw_fd();
    let got = sync::recv(fd);
    // SAFETY: reaping the intermediate process we forked.
    unsafe { libc::waitpid(middle, std::ptr::null_mut(), 0) };
    let pid = match got {
        Ok(Some((m, _))) if m.kind == sync::CHILD_PID => m.value,
        Ok(Some((m, _))) => {
            return Err(fail(format!(
                "cannot create the namespaces: {}",
                std::io::Error::from_raw_os_error(m.value)
            )))
        }
        _ => return Err(fail("the namespace process exited".into())),
    };
    if let Err(e) = idmap::apply(pid, &uids, &gids) {
        // SAFETY: killing the process we made.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        return Err(fail(e.to_string()));
    }
    if let Err(e) = sync::send(fd, &sync::Msg::new(sync::PARENT_MAPPED), None) {
        // SAFETY: as above.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        return Err(fail(format!(
            "signalling the namespace process: {}",
            std::io::Error::from_raw_os_error(e)
        )));
    }
    // Wait until it has closed its descriptors (its end of the socket): it is then set up.
    let _ = sync::recv(fd);
    Ok((pid, process_start_time(pid)))
}

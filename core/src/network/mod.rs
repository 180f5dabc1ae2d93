//! Networking for rootless containers.
//!
//! Modes (`--network`): `none` (own network namespace with only loopback), `host` (the host's
//! namespace), `private` (own namespace with a tap device, an address, a default route and
//! DNS through a user-mode helper: `pasta` when installed, else `slirp4netns`; `pasta` and
//! `slirp4netns` pick one) and `NAME`, a user network shared by several containers
//! ([`user`]). The default is `private` when a helper is installed, else `none`.
//!
//! The flow of a run: [`prepare`] (before launch: mode resolved, ports checked and chosen,
//! the spec given the namespaces and generated /etc files) → [`Prepared::attach`] (called with
//! the container's pid once its namespaces exist and before its command runs: starts the
//! helper, waits until the interface is configured, reads the container's address) → the
//! returned [`Attached`] is recorded in the container's state → [`release`] when the container
//! stops (or from `delete` after a crash: the helper's pid is in the record).

pub mod etc;
pub mod helper;
pub mod inspect;
pub mod ports;
pub mod user;

use std::fmt;
use std::net::{IpAddr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use oci_spec::runtime::{LinuxNamespaceType, Spec};
use serde::{Deserialize, Serialize};

pub use etc::{Facts, HostEntry};
pub use helper::HelperProc;
pub use ports::{PortMapping, PortSpec, Proto};

use crate::container::state::{Record, StateRoot};

#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    #[error("{0}")]
    Invalid(String),
    #[error("invalid port mapping {spec:?}: {why}")]
    BadPort { spec: String, why: String },
    #[error("cannot publish host port {port}: ports below {start} are privileged (net.ipv4.ip_unprivileged_port_start); use a port >= {start}, or ask the administrator to lower that sysctl")]
    PrivilegedPort { port: u16, start: u16 },
    #[error("cannot publish {ip}:{port}/{proto}: the port is already in use on the host")]
    PortInUse { ip: IpAddr, port: u16, proto: Proto },
    #[error("a private network needs pasta (package passt) or slirp4netns, and neither is installed; use --network none or host, or install one")]
    NoHelper,
    #[error("--network {0}: {0} is not installed")]
    HelperMissing(HelperKind),
    #[error("{helper}: {message}")]
    Helper { helper: String, message: String },
    #[error("network {0:?} does not exist (rootbox network create {0})")]
    NoSuchNetwork(String),
    #[error("network {0:?} already exists")]
    NetworkExists(String),
    #[error("network {name:?} is in use by container(s) {}: stop them first (or --force)", containers.join(", "))]
    NetworkInUse {
        name: String,
        containers: Vec<String>,
    },
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("network state: {0}")]
    State(String),
    #[error(transparent)]
    Files(#[from] crate::rootfs::RootfsError),
}

impl NetworkError {
    pub fn io(what: &'static str, path: &Path, source: std::io::Error) -> Self {
        NetworkError::Io {
            what,
            path: path.to_path_buf(),
            source,
        }
    }
}

/// A user-mode network helper program.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HelperKind {
    Pasta,
    Slirp4netns,
}

impl fmt::Display for HelperKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.program())
    }
}

impl HelperKind {
    pub fn program(self) -> &'static str {
        match self {
            HelperKind::Pasta => "pasta",
            HelperKind::Slirp4netns => "slirp4netns",
        }
    }

    /// The installed program, found in PATH and the usual directories.
    pub fn find(self) -> Option<PathBuf> {
        crate::idmap::find_helper(self.program())
    }
}

/// The helper `private` uses: pasta when installed, else slirp4netns.
pub fn preferred_helper() -> Option<HelperKind> {
    [HelperKind::Pasta, HelperKind::Slirp4netns]
        .into_iter()
        .find(|k| k.find().is_some())
}

/// `--network`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    None,
    Host,
    /// A private network through a helper (None: the preferred one).
    Private(Option<HelperKind>),
    /// A user network by name.
    User(String),
}

impl FromStr for Mode {
    type Err = NetworkError;
    fn from_str(s: &str) -> Result<Self, NetworkError> {
        Ok(match s {
            "none" => Mode::None,
            "host" => Mode::Host,
            // Docker's default network is called "bridge".
            "private" | "bridge" | "slirp" => Mode::Private(None),
            "pasta" => Mode::Private(Some(HelperKind::Pasta)),
            "slirp4netns" => Mode::Private(Some(HelperKind::Slirp4netns)),
            other if other.starts_with("container:") => {
                return Err(NetworkError::Invalid(format!(
                    "--network {other}: sharing another container's network is not supported; use a user network (rootbox network create NAME)"
                )))
            }
            other => {
                user::validate_name(other).map_err(|_| {
                    NetworkError::Invalid(format!(
                        "unknown network {other:?}: expected none, host, private, pasta, slirp4netns or the name of a user network"
                    ))
                })?;
                Mode::User(other.to_string())
            }
        })
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Mode::None => f.write_str("none"),
            Mode::Host => f.write_str("host"),
            Mode::Private(None) => f.write_str("private"),
            Mode::Private(Some(k)) => write!(f, "{k}"),
            Mode::User(n) => f.write_str(n),
        }
    }
}

/// The default mode on this host, and a note when it is `none` for lack of a helper.
pub fn default_mode() -> (Mode, Option<String>) {
    match preferred_helper() {
        Some(_) => (Mode::Private(None), None),
        None => (
            Mode::None,
            Some("no network helper (pasta or slirp4netns) is installed: containers get --network none (only loopback) by default; install passt or slirp4netns for a private network with NAT and published ports".into()),
        ),
    }
}

/// What the user asks for about networking on `run`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NetworkOptions {
    /// `--network` (None: [`default_mode`]).
    pub mode: Option<Mode>,
    /// `-p`.
    pub publish: Vec<PortSpec>,
    /// `-P`: publish every port of `exposed` on a free host port.
    pub publish_all: bool,
    /// The image's `ExposedPorts` keys (`80/tcp`), filled by the image code.
    pub exposed: Vec<String>,
    /// `--add-host`.
    pub add_hosts: Vec<HostEntry>,
    /// `--dns`.
    pub dns: Vec<IpAddr>,
    /// `--dns-search`.
    pub dns_search: Vec<String>,
}

/// The mode after resolution.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Resolved {
    None,
    Host,
    Private(HelperKind, PathBuf),
    User(user::Network),
}

/// A network ready to be attached to a container being launched. Serializable: a process
/// other than the one that prepared it (a detached container's monitor) can attach it
/// ([`Prepared::save`], [`Prepared::load`]).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Prepared {
    mode: Resolved,
    ports: Vec<PortMapping>,
    opts: NetworkOptions,
    root: PathBuf,
    id: String,
    hostname: String,
    aliases: Vec<String>,
    /// The container's name, when the user gave one.
    #[serde(default)]
    name: Option<String>,
    /// Where the generated /etc files live (the container's state directory), when any.
    files_dir: Option<PathBuf>,
    /// Say this to the user (the default fell back to `none`, first time only).
    #[serde(skip)]
    pub note: Option<String>,
}

/// The nameservers a pasta network gives containers: the host's, or pasta's forwarder when the
/// host's resolver is on loopback (systemd-resolved, dnsmasq). (servers, forwarder needed)
pub fn pasta_dns() -> (Vec<IpAddr>, bool) {
    let host = etc::host_nameservers();
    let usable: Vec<IpAddr> = host.iter().filter(|a| !a.is_loopback()).copied().collect();
    if !usable.is_empty() {
        return (usable, false);
    }
    match helper::PASTA_DNS_FORWARD.parse() {
        Ok(a) => (vec![a], true),
        Err(_) => (Vec::new(), false),
    }
}

/// Resolves the networking of container `id` (named `name` by the user, when it is) and
/// adjusts its spec's namespaces (none/host/a user network's). The generated /etc files are
/// the rootfs setup's (`rootfs::Setup::network` gets [`Prepared::facts`]); [`Prepared::attach`]
/// rewrites them in place once the address is known. Ports are checked here, before anything
/// starts: privileged or busy ports are clear errors.
pub fn prepare(
    opts: &NetworkOptions,
    root: &StateRoot,
    id: &str,
    name: Option<&str>,
    spec: &mut Spec,
) -> Result<Prepared, NetworkError> {
    let mut note = None;
    let mode = match &opts.mode {
        Some(m) => m.clone(),
        None => {
            let (m, n) = default_mode();
            if let Some(n) = n {
                let marker = root.path.join("@network-note-shown");
                if !marker.exists() {
                    let _ = std::fs::write(&marker, b"");
                    note = Some(n);
                }
            }
            m
        }
    };
    let resolved = match &mode {
        Mode::None => Resolved::None,
        Mode::Host => Resolved::Host,
        Mode::Private(k) => {
            let kind = match k {
                Some(k) => *k,
                None => preferred_helper().ok_or(NetworkError::NoHelper)?,
            };
            let program = kind.find().ok_or(NetworkError::HelperMissing(kind))?;
            Resolved::Private(kind, program)
        }
        Mode::User(name) => Resolved::User(user::ensure_running(root, name)?),
    };
    let mut specs = opts.publish.clone();
    if opts.publish_all {
        for s in ports::parse_exposed(&opts.exposed)? {
            if !specs
                .iter()
                .any(|p| p.container_port == s.container_port && p.proto == s.proto)
            {
                specs.push(s);
            }
        }
    }
    if !specs.is_empty() {
        match &resolved {
            Resolved::None => {
                return Err(NetworkError::Invalid(
                    "publishing ports (-p/-P) needs a network: --network none has only loopback; use --network private".into(),
                ))
            }
            Resolved::Host => {
                return Err(NetworkError::Invalid(
                    "publishing ports (-p/-P) makes no sense with --network host: the container's ports are the host's".into(),
                ))
            }
            Resolved::User(n)
                if n.helper.as_ref().map(|h| h.kind) != Some(HelperKind::Slirp4netns) =>
            {
                return Err(NetworkError::Invalid(format!(
                    "publishing ports on user network {:?} needs slirp4netns as its helper (pasta cannot add ports to a running network); recreate it with: rootbox network create --helper slirp4netns {}",
                    n.name, n.name
                )))
            }
            _ => {}
        }
    }
    let ports = ports::resolve(&specs)?;
    if ports.iter().any(|p| {
        p.host_ip.is_ipv6() && matches!(resolved, Resolved::Private(HelperKind::Slirp4netns, _))
    }) {
        return Err(NetworkError::Invalid(
            "slirp4netns publishes ports on IPv4 addresses only".into(),
        ));
    }

    let hostname = spec
        .hostname()
        .clone()
        .unwrap_or_else(|| id.chars().take(12).collect());
    let mut aliases = Vec::new();
    if let Some(n) = name.filter(|n| etc::valid_hostname(n) && *n != hostname) {
        aliases.push(n.to_string());
    }
    if let Some(linux) = spec.linux_mut() {
        let mut ns = linux.namespaces().clone().unwrap_or_default();
        match &resolved {
            Resolved::Host => ns.retain(|n| n.typ() != LinuxNamespaceType::Network),
            Resolved::User(net) => {
                let (userns, netns) = user::namespace_paths(net);
                for n in ns.iter_mut() {
                    match n.typ() {
                        LinuxNamespaceType::User => {
                            n.set_path(Some(userns.clone()));
                        }
                        LinuxNamespaceType::Network => {
                            n.set_path(Some(netns.clone()));
                        }
                        _ => {}
                    }
                }
            }
            _ => {}
        }
        linux.set_namespaces(Some(ns));
    }
    Ok(Prepared {
        mode: resolved,
        ports,
        opts: opts.clone(),
        root: root.path.clone(),
        id: id.to_string(),
        hostname,
        aliases,
        name: name.map(str::to_string),
        files_dir: Some(root.dir(id)),
        note,
    })
}

/// What a container's network is, once attached: recorded in its state (`Record.network`),
/// enough to list its ports, show its address, and stop its helper even after a crash.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Attached {
    /// `none`, `host`, `pasta`, `slirp4netns` or the user network's name.
    pub mode: String,
    /// The helper process serving this container alone (not a user network's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub helper: Option<HelperProc>,
    #[serde(default)]
    pub ports: Vec<PortMapping>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<IpAddr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip6: Option<Ipv6Addr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<IpAddr>,
    #[serde(default)]
    pub dns: Vec<IpAddr>,
    /// The user network, its directory and the forward ids added to its helper.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_dir: Option<PathBuf>,
    #[serde(default)]
    pub forwards: Vec<u64>,
    /// The facts the generated /etc files were made from.
    #[serde(default)]
    pub facts: Facts,
    /// Where those files are (the container's state directory).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub files_dir: Option<PathBuf>,
}

/// File name of a saved [`Prepared`] in a container's state directory.
pub const PREPARED_FILE: &str = "network-plan.json";

impl Prepared {
    fn state_root(&self) -> StateRoot {
        StateRoot {
            path: self.root.clone(),
        }
    }

    /// Saves the plan in the container's state directory (for its monitor).
    pub fn save(&self, dir: &Path) -> Result<(), NetworkError> {
        let data = serde_json::to_vec_pretty(self)
            .map_err(|e| NetworkError::State(format!("network plan: {e}")))?;
        crate::container::state::write_atomic(&dir.join(PREPARED_FILE), &data)
            .map_err(|e| NetworkError::State(e.to_string()))
    }

    /// Loads a plan saved by [`Prepared::save`]; None when there is none.
    pub fn load(dir: &Path) -> Result<Option<Prepared>, NetworkError> {
        let path = dir.join(PREPARED_FILE);
        match std::fs::read_to_string(&path) {
            Ok(t) => serde_json::from_str(&t)
                .map(Some)
                .map_err(|e| NetworkError::State(format!("{}: {e}", path.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(NetworkError::io("reading", &path, e)),
        }
    }

    /// The ports that will be published.
    pub fn ports(&self) -> &[PortMapping] {
        &self.ports
    }

    /// Whether [`Prepared::attach`] has work to do at launch.
    pub fn needs_attach(&self) -> bool {
        true
    }

    /// What the container's /etc files are made from, as far as it is known before the
    /// launch (everything but the address and a user network's peers): for the rootfs setup,
    /// which generates and mounts the files. The name servers are the user's (`--dns`), else
    /// the helper's; empty for none/host (the host's then, by the generator's rules).
    pub fn facts(&self) -> Facts {
        let dns = if !self.opts.dns.is_empty() {
            self.opts.dns.clone()
        } else {
            match &self.mode {
                Resolved::None | Resolved::Host => Vec::new(),
                Resolved::Private(HelperKind::Pasta, _) => pasta_dns().0,
                Resolved::Private(HelperKind::Slirp4netns, _) => helper::SLIRP_DNS
                    .parse()
                    .map(|a| vec![a])
                    .unwrap_or_default(),
                Resolved::User(net) => net.dns.clone(),
            }
        };
        Facts {
            hostname: self.hostname.clone(),
            aliases: self.aliases.clone(),
            dns,
            dns_search: self.opts.dns_search.clone(),
            extra_hosts: self.opts.add_hosts.clone(),
            host_network: matches!(self.mode, Resolved::Host),
            ..Default::default()
        }
    }

    /// Attaches the network to the container whose first process is `pid` (its namespaces
    /// exist, its command does not run yet): starts the helper and waits until the interface
    /// is configured, publishes ports, reads the address, fills the /etc files.
    /// `die_with_parent`: the helper dies with the calling thread (foreground runs).
    pub fn attach(&self, pid: i32, die_with_parent: bool) -> Result<Attached, NetworkError> {
        let mut a = Attached {
            ports: self.ports.clone(),
            files_dir: self.files_dir.clone(),
            ..Default::default()
        };
        let mut facts = self.facts();
        match &self.mode {
            Resolved::None => a.mode = "none".into(),
            Resolved::Host => a.mode = "host".into(),
            Resolved::Private(kind, program) => {
                a.mode = kind.to_string();
                let dir = self.state_root().dir(&self.id);
                let forward = *kind == HelperKind::Pasta && pasta_dns().1;
                let h = helper::start(&helper::Start {
                    kind: *kind,
                    program,
                    target_pid: pid,
                    ports: &self.ports,
                    dir: &dir,
                    die_with_parent,
                    dns_forward: forward && self.opts.dns.is_empty(),
                })?;
                a.helper = Some(h);
            }
            Resolved::User(net) => {
                a.mode = net.name.clone();
                a.network = Some(net.name.clone());
                a.network_dir = Some(net.dir(&self.state_root()));
                if let Some(h) = &net.helper {
                    for p in &self.ports {
                        match helper::slirp_add_forward(h, p) {
                            Ok(id) => a.forwards.push(id),
                            Err(e) => {
                                release(&a);
                                return Err(e);
                            }
                        }
                    }
                }
            }
        }
        let (v4, v6, gw) = inspect::addresses(pid);
        if !matches!(self.mode, Resolved::Host) {
            a.ip = v4.first().copied().map(IpAddr::V4);
            a.ip6 = v6.first().copied();
            a.gateway = gw;
        }
        facts.ip = a.ip;
        facts.gateway = a.gateway;
        a.dns = facts.dns.clone();
        if let Resolved::User(net) = &self.mode {
            let mut names = vec![self.hostname.clone()];
            names.extend(self.aliases.iter().cloned());
            let member = user::Member {
                id: self.id.clone(),
                name: self.name.clone().unwrap_or_else(|| self.hostname.clone()),
                names,
                pid,
                pid_start: crate::container::state::process_start_time(pid),
                dir: self
                    .files_dir
                    .clone()
                    .unwrap_or_else(|| self.state_root().dir(&self.id)),
            };
            let net = match user::join(&self.state_root(), &net.name, member, &rewrite_peers) {
                Ok(n) => n,
                Err(e) => {
                    release(&a);
                    return Err(e);
                }
            };
            facts.peers = net.peers();
        }
        a.facts = facts;
        if let Some(dir) = &self.files_dir {
            if let Err(e) = etc::write(dir, &a.facts) {
                release(&a);
                return Err(e);
            }
        }
        Ok(a)
    }
}

/// Rewrites the hosts file of a user network's member with the current peers.
fn rewrite_peers(dir: &Path, peers: &[HostEntry]) {
    let path = dir.join("state.json");
    let facts = std::fs::read_to_string(&path)
        .ok()
        .and_then(|t| serde_json::from_str::<Record>(&t).ok())
        .and_then(|r| r.network)
        .map(|a| a.facts);
    let mut facts = match facts {
        Some(f) => f,
        // Not recorded yet (the container joining right now): its own attach writes it.
        None => return,
    };
    facts.peers = peers.to_vec();
    let _ = etc::write(dir, &facts);
}

/// Stops what [`Prepared::attach`] started: the container's helper, its forwards on a user
/// network and its membership there. Idempotent; safe after a crash (pids are checked).
pub fn release(a: &Attached) {
    if let Some(h) = &a.helper {
        h.stop();
    }
    if let Some(dir) = &a.network_dir {
        if !a.forwards.is_empty() {
            if let Ok(text) = std::fs::read_to_string(dir.join("network.json")) {
                if let Ok(net) = serde_json::from_str::<user::Network>(&text) {
                    if let Some(h) = net.helper.as_ref().filter(|h| h.is_alive()) {
                        for id in &a.forwards {
                            let _ = helper::slirp_remove_forward(h, *id);
                        }
                    }
                }
            }
        }
        let id = a
            .files_dir
            .as_ref()
            .and_then(|d| d.file_name())
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let _ = user::leave(dir, &id, &rewrite_peers);
    }
}

/// The published ports of a container (`rootbox port`).
pub fn ports(record: &Record) -> Vec<PortMapping> {
    record
        .network
        .as_ref()
        .map(|a| a.ports.clone())
        .unwrap_or_default()
}

/// The container's address (inspect's NetworkSettings.IPAddress).
pub fn ip_address(record: &Record) -> Option<IpAddr> {
    record.network.as_ref().and_then(|a| a.ip)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_parse() {
        assert_eq!("none".parse::<Mode>().unwrap(), Mode::None);
        assert_eq!(
            "pasta".parse::<Mode>().unwrap(),
            Mode::Private(Some(HelperKind::Pasta))
        );
        assert_eq!("bridge".parse::<Mode>().unwrap(), Mode::Private(None));
        assert_eq!("mynet".parse::<Mode>().unwrap(), Mode::User("mynet".into()));
        let e = "bad name!".parse::<Mode>().unwrap_err().to_string();
        assert!(e.contains("unknown network"), "{e}");
        assert!("container:x".parse::<Mode>().is_err());
    }

    #[test]
    fn a_plan_survives_save_and_load() {
        let dir = std::env::temp_dir().join(format!("rbnet-plan-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let root = StateRoot { path: dir.clone() };
        let mut spec = crate::spec::base_spec(&[], &[]);
        let opts = NetworkOptions {
            mode: Some(Mode::None),
            add_hosts: vec!["db:10.0.0.5".parse().unwrap()],
            ..Default::default()
        };
        let p = prepare(&opts, &root, "c1", Some("web"), &mut spec).unwrap();
        p.save(&dir).unwrap();
        let q = Prepared::load(&dir).unwrap().unwrap();
        assert_eq!(
            serde_json::to_value(&p).unwrap(),
            serde_json::to_value(&q).unwrap()
        );
        assert_eq!(q.opts.add_hosts, opts.add_hosts);
        assert!(Prepared::load(&dir.join("nothing")).unwrap().is_none());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn reserved_names_are_not_networks() {
        assert!(user::validate_name("host").is_err());
        assert!(user::validate_name("my-net_1").is_ok());
    }
}

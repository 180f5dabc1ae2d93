//! `rootbox`: the user command line, docker-like. Each command maps to one `rootbox_core` call.
//! The lifecycle commands (ps, logs, stop, exec, ...) live in `rootbox/lifecycle.rs`.

#[path = "rootbox/lifecycle.rs"]
mod lifecycle;

use std::os::fd::AsRawFd;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use rootbox_cli::{die, wait_foreground_exit, SignalForwarder};
use rootbox_core::cgroup::{CgroupOptions, ResourceOptions};
use rootbox_core::container::{self, create::CreateOptions, state::StateRoot};
use rootbox_core::idmap::IdMapMode;
use rootbox_core::network;
use rootbox_core::rootfs::{Layers, MountRequest, Setup, VolumeStore};
use rootbox_core::spec::{BindVolume, RunOptions};
use rootbox_core::Error;

const PROG: &str = "rootbox";

#[derive(Parser, Debug)]
#[command(
    name = "rootbox",
    version,
    about = "Rootless Linux containers, no daemon"
)]
struct Cli {
    /// Directory for container state (default: $XDG_RUNTIME_DIR/rootbox).
    #[arg(long, global = true, env = "ROOTBOX_STATE_DIR")]
    state_dir: Option<PathBuf>,
    /// Store directory: images and volumes (default: $XDG_DATA_HOME/rootbox, i.e.
    /// ~/.local/share/rootbox).
    #[arg(long, global = true, env = "ROOTBOX_ROOT")]
    root: Option<PathBuf>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Run a command in a new container.
    Run(Box<RunArgs>),
    /// Manage user networks: containers on one reach each other by name.
    Network {
        #[command(subcommand)]
        cmd: NetCmd,
    },
    /// Create a new container (set up, waiting for `start`).
    Create(Box<RunArgs>),
    #[command(flatten)]
    Lifecycle(lifecycle::LifecycleCmd),
    /// Show what this host offers containers (kernel, id mapping, overlay, cgroups, helpers).
    Info {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show running containers' resource usage (memory, CPU, pids, OOM kills).
    Stats(StatsArgs),
    /// Manage volumes (create, ls, inspect, rm, prune).
    #[command(subcommand)]
    Volume(VolumeCmd),
    #[command(flatten)]
    Images(rootbox_cli::images::ImageCommands),
}

/// `rootbox stats`.
#[derive(Args, Debug)]
struct StatsArgs {
    /// Print one sample and exit (default: a sample every second until the containers stop).
    #[arg(long)]
    no_stream: bool,
    /// Output format: table or json (one object per container and sample).
    #[arg(long, default_value = "table")]
    format: String,
    /// Container names or ids.
    #[arg(required = true)]
    containers: Vec<String>,
}

/// Resource limits and cgroup placement of `rootbox run` (see README: Resource limits).
#[derive(Args, Debug)]
struct LimitArgs {
    /// Memory limit: bytes or a size such as 512k, 64m, 1.5g.
    #[arg(short = 'm', long, allow_hyphen_values = true)]
    memory: Option<String>,
    /// Memory plus swap limit (-1: unlimited swap; default: twice --memory).
    #[arg(long, allow_hyphen_values = true)]
    memory_swap: Option<String>,
    /// Memory soft limit (memory.low).
    #[arg(long, allow_hyphen_values = true)]
    memory_reservation: Option<String>,
    /// Number of CPUs (e.g. 0.5): cpu.max quota per 100ms period.
    #[arg(long, allow_hyphen_values = true)]
    cpus: Option<String>,
    /// CPU CFS period in microseconds.
    #[arg(long, allow_hyphen_values = true)]
    cpu_period: Option<String>,
    /// CPU CFS quota in microseconds per period (-1: none).
    #[arg(long, allow_hyphen_values = true)]
    cpu_quota: Option<String>,
    /// Relative CPU weight, cgroup v1 style (2-262144, 1024 = default; becomes cpu.weight).
    #[arg(short = 'c', long, allow_hyphen_values = true)]
    cpu_shares: Option<String>,
    /// CPUs the container may run on (e.g. 0-3,7).
    #[arg(long, allow_hyphen_values = true)]
    cpuset_cpus: Option<String>,
    /// Memory nodes the container may use (e.g. 0).
    #[arg(long, allow_hyphen_values = true)]
    cpuset_mems: Option<String>,
    /// Maximum number of processes (-1: unlimited).
    #[arg(long, allow_hyphen_values = true)]
    pids_limit: Option<String>,
    /// Block IO weight (10-1000; becomes io.weight).
    #[arg(long, allow_hyphen_values = true)]
    blkio_weight: Option<String>,
    /// Parent cgroup of the container's cgroup (absolute: from the cgroup2 mount; relative:
    /// from the delegated cgroup).
    #[arg(long)]
    cgroup_parent: Option<String>,
    /// cgroup manager: cgroupfs, systemd or disabled (default: cgroupfs where delegated, else
    /// systemd's user manager where reachable).
    #[arg(long, env = "ROOTBOX_CGROUP_MANAGER")]
    cgroup_manager: Option<String>,
    /// A limit that this host cannot enforce: strict (refuse to run, the default) or
    /// best-effort (run without it, with a warning).
    #[arg(long, env = "ROOTBOX_CGROUP_LIMITS")]
    cgroup_limits: Option<String>,
}

impl LimitArgs {
    fn resources(&self) -> Result<ResourceOptions, Error> {
        let mut r = ResourceOptions::default();
        for (flag, value) in [
            ("memory", &self.memory),
            ("memory-swap", &self.memory_swap),
            ("memory-reservation", &self.memory_reservation),
            ("cpus", &self.cpus),
            ("cpu-period", &self.cpu_period),
            ("cpu-quota", &self.cpu_quota),
            ("cpu-shares", &self.cpu_shares),
            ("cpuset-cpus", &self.cpuset_cpus),
            ("cpuset-mems", &self.cpuset_mems),
            ("pids-limit", &self.pids_limit),
            ("blkio-weight", &self.blkio_weight),
        ] {
            if let Some(v) = value {
                r.set(flag, v)?;
            }
        }
        Ok(r)
    }

    fn cgroup_options(&self) -> Result<CgroupOptions, Error> {
        Ok(CgroupOptions {
            manager: self.cgroup_manager.as_deref().unwrap_or("").parse()?,
            policy: self.cgroup_limits.as_deref().unwrap_or("").parse()?,
        })
    }
}

#[derive(Subcommand, Debug)]
enum VolumeCmd {
    /// Create a volume (a random name when none is given) and print its name.
    Create {
        name: Option<String>,
        /// KEY=VALUE metadata.
        #[arg(long = "label")]
        label: Vec<String>,
    },
    /// List volumes.
    #[command(alias = "list")]
    Ls {
        /// Only names.
        #[arg(short, long)]
        quiet: bool,
        /// `json` for a JSON array.
        #[arg(long)]
        format: Option<String>,
    },
    /// Show volumes as JSON.
    Inspect {
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Remove volumes (refused while a container uses them).
    #[command(alias = "remove")]
    Rm {
        /// Also remove volumes used by stopped containers.
        #[arg(short, long)]
        force: bool,
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Remove unused anonymous volumes (with --all, unused named ones too).
    Prune {
        #[arg(short, long)]
        all: bool,
        /// Do not ask (there is no prompt; accepted for docker compatibility).
        #[arg(short, long)]
        force: bool,
    },
}

#[derive(Subcommand, Debug)]
enum NetCmd {
    /// Create a user network.
    Create {
        name: String,
        /// The helper for outbound traffic: slirp4netns (default when installed: it can add
        /// published ports to a running network) or pasta.
        #[arg(long)]
        helper: Option<String>,
    },
    /// List user networks.
    #[command(alias = "list")]
    Ls {
        /// Only names.
        #[arg(short, long)]
        quiet: bool,
    },
    /// Remove user networks.
    #[command(alias = "remove")]
    Rm {
        #[arg(required = true)]
        names: Vec<String>,
        /// Remove even when containers still use it.
        #[arg(short, long)]
        force: bool,
    },
    /// Show user networks as JSON.
    Inspect {
        #[arg(required = true)]
        names: Vec<String>,
    },
}

#[derive(Args, Debug)]
struct RunArgs {
    /// Run in this root filesystem directory instead of an image (with --rootfs-overlay: the
    /// empty directory the layers are mounted on, inside the container only).
    #[arg(long)]
    rootfs: Option<PathBuf>,
    /// Override the image's ENTRYPOINT ('' clears it).
    #[arg(long, allow_hyphen_values = true)]
    entrypoint: Option<String>,
    /// Pull the image from its registry: always, missing (when not in the store) or never.
    #[arg(long, default_value = "missing")]
    pull: rootbox_cli::registry::PullPolicy,
    /// With a pull: no progress output.
    #[arg(short = 'q', long)]
    quiet: bool,
    /// Advanced: a layered rootfs, lower=BOTTOM:...:TOP,upper=DIR,work=DIR (lowest layer
    /// first; writes go to upper, which must be on the same filesystem as work).
    #[arg(long = "rootfs-overlay", value_name = "SPEC")]
    rootfs_overlay: Option<String>,
    /// How layers are stacked: overlay (kernel), fuse-overlayfs, vfs (a copy), or auto.
    #[arg(long = "storage-driver", env = "ROOTBOX_STORAGE_DRIVER")]
    storage_driver: Option<String>,
    /// Mount: type=bind|volume|tmpfs,source=...,target=...[,readonly][,tmpfs-size=N].
    #[arg(long = "mount")]
    mount: Vec<String>,
    /// Set an environment variable (NAME=VALUE, or NAME to pass the caller's value).
    #[arg(short = 'e', long = "env")]
    env: Vec<String>,
    /// Working directory inside the container (created when missing).
    #[arg(short = 'w', long = "workdir")]
    workdir: Option<String>,
    /// UID[:GID] to run as inside the container.
    #[arg(short = 'u', long = "user")]
    user: Option<String>,
    /// Container hostname (default: the first 12 characters of the id).
    #[arg(long)]
    hostname: Option<String>,
    /// Run a minimal init as PID 1 that reaps zombies and forwards signals.
    #[arg(long)]
    init: bool,
    /// Mount the root filesystem read-only.
    #[arg(long)]
    read_only: bool,
    /// HOST-PATH:CONTAINER-PATH[:ro], NAME:CONTAINER-PATH[:ro] (named volume) or
    /// CONTAINER-PATH (anonymous volume).
    #[arg(short = 'v', long = "volume")]
    volume: Vec<String>,
    /// Mount a tmpfs at PATH[:OPTIONS].
    #[arg(long)]
    tmpfs: Vec<String>,
    /// Allocate a pseudo-terminal.
    #[arg(short = 't', long)]
    tty: bool,
    /// Keep stdin open (without it the container's stdin is /dev/null).
    #[arg(short = 'i', long)]
    interactive: bool,
    /// How container ids map to the host's: auto, single or subids.
    #[arg(long, default_value = "auto")]
    idmap: String,
    /// Network: none (only loopback), host, private (pasta, else slirp4netns), pasta,
    /// slirp4netns, or the name of a user network. Default: private when a helper is
    /// installed, else none.
    #[arg(long = "network", visible_alias = "net")]
    network: Option<String>,
    /// Publish a container port: [IP:][HOST_PORT:]CONTAINER_PORT[/tcp|udp] (default IP
    /// 127.0.0.1; without a host port a free one is chosen and reported).
    #[arg(short = 'p', long = "publish")]
    publish: Vec<String>,
    /// Publish every port the image exposes on a free host port.
    #[arg(short = 'P', long = "publish-all")]
    publish_all: bool,
    /// Add an /etc/hosts entry NAME:IP.
    #[arg(long = "add-host")]
    add_host: Vec<String>,
    /// DNS server for the container's /etc/resolv.conf.
    #[arg(long)]
    dns: Vec<String>,
    /// DNS search domain for the container's /etc/resolv.conf.
    #[arg(long = "dns-search")]
    dns_search: Vec<String>,
    /// Security options: seccomp=unconfined, seccomp=PROFILE.json, no-new-privileges.
    #[arg(long = "security-opt")]
    security_opt: Vec<String>,
    /// Container name (unique; accepted wherever a container id is).
    #[arg(long)]
    name: Option<String>,
    /// Remove the container when it exits (the default for foreground runs for now).
    #[arg(long)]
    rm: bool,
    #[command(flatten)]
    limits: LimitArgs,
    /// Run in the background (under a monitor) and print the container id.
    #[arg(short = 'd', long)]
    detach: bool,
    /// Signal `stop` sends first (default SIGTERM).
    #[arg(long)]
    stop_signal: Option<String>,
    /// Seconds `stop` waits before SIGKILL (default 10).
    #[arg(long)]
    stop_timeout: Option<u32>,
    /// IMAGE [COMMAND [ARG...]], or with --rootfs: COMMAND [ARG...].
    #[arg(trailing_var_arg = true, value_name = "IMAGE | COMMAND")]
    command: Vec<String>,
}

fn main() {
    let cli = Cli::parse();
    let state_dir = cli
        .state_dir
        .clone()
        .unwrap_or_else(|| StateRoot::default_path("rootbox"));
    let store = rootbox_core::rootfs::data_root(cli.root.as_deref());
    let code = match cli.cmd {
        Cmd::Network { cmd } => network_cmd(cmd, state_dir),
        Cmd::Run(args) => run(*args, state_dir, store.clone(), false),
        Cmd::Create(args) => run(*args, state_dir, store.clone(), true),
        Cmd::Lifecycle(cmd) => {
            let exec_like = matches!(
                cmd,
                lifecycle::LifecycleCmd::Exec(_)
                    | lifecycle::LifecycleCmd::Start(_)
                    | lifecycle::LifecycleCmd::Attach(_)
            );
            match lifecycle::dispatch(cmd, &state_dir) {
                Ok(code) => Ok(code),
                // Management commands fail with 1, like Docker's; exec/start/attach keep
                // 125/126/127.
                Err(e) if !exec_like => die(PROG, &e, 1),
                Err(e) => Err(e),
            }
        }
        Cmd::Volume(v) => volume(v, &store),
        Cmd::Images(c) => rootbox_cli::images::run(c, Some(store.clone())),
        Cmd::Info { json } => {
            let info = rootbox_core::info::host_info();
            if json {
                match serde_json::to_string_pretty(&info) {
                    Ok(s) => println!("{s}"),
                    Err(e) => die(PROG, e, 1),
                }
            } else {
                print!("{}", info.render());
            }
            Ok(0)
        }
        Cmd::Stats(a) => stats(a, state_dir),
    };
    match code {
        Ok(code) => std::process::exit(code),
        Err(e) => die(PROG, &e, e.exit_code()),
    }
}

fn volume(cmd: VolumeCmd, store: &std::path::Path) -> Result<i32, Error> {
    let vs = VolumeStore::open(store)?;
    let mut code = 0;
    match cmd {
        VolumeCmd::Create { name, label } => {
            let mut labels = std::collections::BTreeMap::new();
            for l in label {
                let (k, v) = l.split_once('=').unwrap_or((l.as_str(), ""));
                labels.insert(k.to_string(), v.to_string());
            }
            let (v, _) = vs.create(name.as_deref(), labels)?;
            println!("{}", v.name);
        }
        VolumeCmd::Ls { quiet, format } => {
            let list = vs.list()?;
            match format.as_deref() {
                Some("json") => match serde_json::to_string_pretty(&list) {
                    Ok(s) => println!("{s}"),
                    Err(e) => die(PROG, e, 1),
                },
                Some(other) => {
                    eprintln!("{PROG}: unknown --format {other:?} (expected json)");
                    return Ok(125);
                }
                None if quiet => list.iter().for_each(|v| println!("{}", v.name)),
                None => {
                    println!("DRIVER    VOLUME NAME");
                    for v in &list {
                        println!("{:<10}{}", v.driver, v.name);
                    }
                }
            }
        }
        VolumeCmd::Inspect { names } => {
            let mut out = Vec::new();
            for n in &names {
                match vs.inspect(n) {
                    Ok(v) => out.push(v),
                    Err(e) => {
                        eprintln!("{PROG}: {e}");
                        code = 1;
                    }
                }
            }
            match serde_json::to_string_pretty(&out) {
                Ok(s) => println!("{s}"),
                Err(e) => die(PROG, e, 1),
            }
        }
        VolumeCmd::Rm { force, names } => {
            for n in &names {
                match vs.remove(n, force) {
                    Ok(()) => println!("{n}"),
                    Err(e) => {
                        eprintln!("{PROG}: {e}");
                        code = 1;
                    }
                }
            }
        }
        VolumeCmd::Prune { all, force: _ } => {
            for n in vs.prune(all)? {
                println!("{n}");
            }
        }
    }
    Ok(code)
}

fn run(a: RunArgs, state_dir: PathBuf, store: PathBuf, create_only: bool) -> Result<i32, Error> {
    let invalid = |m: String| Error::from(rootbox_core::spec::SpecError::Invalid(m));
    let idmap: IdMapMode = a
        .idmap
        .parse()
        .map_err(rootbox_core::spec::SpecError::from)?;
    let net_mode = a
        .network
        .as_deref()
        .map(str::parse::<network::Mode>)
        .transpose()?;
    let network_host = net_mode == Some(network::Mode::Host);
    let publish = a
        .publish
        .iter()
        .map(|p| p.parse::<network::PortSpec>())
        .collect::<Result<Vec<_>, _>>()?;
    let chosen_ports = a.publish_all || publish.iter().any(|p| p.host_port.is_none());
    let add_hosts = a
        .add_host
        .iter()
        .map(|h| h.parse::<network::HostEntry>())
        .collect::<Result<Vec<_>, _>>()?;
    let dns = a
        .dns
        .iter()
        .map(|d| {
            d.parse::<std::net::IpAddr>()
                .map_err(|_| invalid(format!("invalid --dns {d:?}: not an IP address")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    for d in &a.dns_search {
        if !network::etc::valid_hostname(d) {
            return Err(invalid(format!(
                "invalid --dns-search {d:?}: not a domain name"
            )));
        }
    }
    let mut volumes: Vec<BindVolume> = Vec::new();
    let mut tmpfs = a.tmpfs.clone();
    let mut setup = Setup {
        store: store.clone(),
        etc_files: true,
        network_host,
        ..Default::default()
    };
    let requests = a
        .volume
        .iter()
        .map(|v| MountRequest::parse_volume(v))
        .chain(a.mount.iter().map(|m| MountRequest::parse_mount(m)));
    for r in requests {
        match r? {
            MountRequest::Bind(b) => volumes.push(b),
            MountRequest::Volume(v) => setup.volumes.push(v),
            t @ MountRequest::Tmpfs { .. } => tmpfs.extend(t.tmpfs_arg()),
        }
    }
    // `run IMAGE [CMD...]` or `run --rootfs DIR CMD...`.
    let mut command = a.command.clone();
    let image = match &a.rootfs {
        Some(_) if command.is_empty() => {
            return Err(invalid(
                "no command given: rootbox run --rootfs DIR -- CMD [ARG...]".into(),
            ))
        }
        Some(_) => None,
        None if command.is_empty() => {
            return Err(invalid(
                "no image given: rootbox run [OPTIONS] IMAGE [CMD...] (or --rootfs DIR CMD...)"
                    .into(),
            ))
        }
        None => Some(command.remove(0)),
    };
    if image.is_none() && a.entrypoint.is_some() {
        return Err(invalid(
            "--entrypoint applies to an image, not to --rootfs".into(),
        ));
    }
    let rootfs_layers = match (&a.rootfs_overlay, &a.storage_driver) {
        (Some(_), _) if image.is_some() => {
            return Err(invalid(
                "--rootfs-overlay needs --rootfs DIR (its mount point)".into(),
            ))
        }
        (None, Some(_)) if image.is_some() => None,
        (Some(spec), driver) => {
            let mut l: Layers = spec.parse()?;
            if let Some(d) = driver {
                l.driver = d.parse()?;
            }
            Some(l)
        }
        (None, Some(d)) => {
            d.parse::<rootbox_core::rootfs::Driver>()?;
            return Err(invalid(
                "--storage-driver applies to a layered rootfs (--rootfs-overlay)".into(),
            ));
        }
        (None, None) => None,
    };
    let mut seccomp = rootbox_core::spec::SeccompChoice::Default;
    for o in &a.security_opt {
        match o.split_once(['=', ':']) {
            Some(("seccomp", "unconfined")) => {
                seccomp = rootbox_core::spec::SeccompChoice::Unconfined
            }
            Some(("seccomp", path)) => {
                seccomp = rootbox_core::spec::SeccompChoice::Profile(PathBuf::from(path))
            }
            None if o == "no-new-privileges" => {}
            Some(("no-new-privileges", "true")) => {}
            _ => return Err(invalid(format!("unknown --security-opt {o:?}"))),
        }
    }
    let mut opts = RunOptions {
        rootfs: a.rootfs.clone().unwrap_or_default(),
        args: command,
        env: a.env.clone(),
        cwd: a.workdir.clone(),
        user: a.user.clone(),
        hostname: a.hostname.clone(),
        init: a.init,
        read_only: a.read_only,
        volumes,
        tmpfs,
        tty: a.tty,
        idmap,
        network_host,
        seccomp,
        network: network::NetworkOptions {
            mode: net_mode,
            publish,
            publish_all: a.publish_all,
            exposed: Vec::new(),
            add_hosts,
            dns,
            dns_search: a.dns_search.clone(),
        },
        resources: a.limits.resources()?,
        cgroup_parent: a.limits.cgroup_parent.clone(),
        rootfs_layers,
    };
    let id = container::new_id();
    if let Some(n) = &a.name {
        container::names::validate_name(n)?;
    }
    let mut stop_signal = a.stop_signal.clone();
    if let Some(reference) = &image {
        rootbox_cli::registry::ensure_image(&store, reference, a.pull, a.quiet)?;
        let driver = match &a.storage_driver {
            Some(d) => d.parse()?,
            None => rootbox_core::rootfs::Driver::default(),
        };
        let req = container::from_image::FromImage {
            store: &store,
            reference,
            entrypoint: a.entrypoint.as_deref(),
            driver,
        };
        let prepared = container::from_image::prepare(&id, &req, &mut opts, &mut setup)?;
        if stop_signal.is_none() {
            stop_signal = prepared.applied.stop_signal.clone();
        }
        opts.network.exposed = prepared.applied.exposed_ports.clone();
    }
    // Until the container is registered, its writable layer is ours to remove on failure.
    let result = run_prepared(
        a,
        &opts,
        setup,
        &state_dir,
        &id,
        image.as_deref(),
        stop_signal,
        create_only,
        chosen_ports,
    );
    if result.is_err()
        && image.is_some()
        && !(StateRoot {
            path: state_dir.clone(),
        })
        .dir(&id)
        .exists()
    {
        if let Ok(store) = rootbox_core::image::Store::open(Some(store.clone())) {
            let _ = store.remove_container_dirs(&id);
        }
    }
    result
}

#[allow(clippy::too_many_arguments)]
fn run_prepared(
    a: RunArgs,
    opts: &RunOptions,
    mut setup: Setup,
    state_dir: &std::path::Path,
    id: &str,
    image: Option<&str>,
    stop_signal: Option<String>,
    create_only: bool,
    chosen_ports: bool,
) -> Result<i32, Error> {
    let id = id.to_string();
    let mut spec = opts.to_spec(&id)?;
    a.limits.cgroup_options()?.annotate(&mut spec);
    let root = StateRoot::open(state_dir)?;
    let net = network::prepare(&opts.network, &root, &id, a.name.as_deref(), &mut spec)?;
    if let Some(note) = &net.note {
        eprintln!("{PROG}: note: {note}");
    }
    if chosen_ports {
        for p in net.ports() {
            eprintln!("{PROG}: publishing {p}");
        }
    }
    setup.network = Some(net.facts());
    if a.detach || create_only {
        let opts = container::manage::NewContainer {
            id: Some(id),
            name: a.name,
            bundle: std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/")),
            open_stdin: a.interactive,
            auto_remove: a.rm,
            stop_signal,
            stop_timeout: a.stop_timeout,
            image: image.unwrap_or_default().to_string(),
            rootfs_setup: Some(setup),
            network: Some(net),
        };
        return lifecycle_new(&root, &spec, &opts, create_only);
    }
    let name = match a.name.clone() {
        Some(n) => {
            container::names::reserve(&root, &n, &id)?;
            n
        }
        None => container::names::generate(&root, &id)?,
    };
    let code = run_foreground(
        a.interactive || a.tty,
        &root,
        &spec,
        (&id, &name),
        setup,
        net,
        image,
    );
    container::names::release(&root, &name, &id);
    code
}

/// `run -d` and `create`: the container is started (or set up) by its monitor.
fn lifecycle_new(
    root: &StateRoot,
    spec: &rootbox_core::spec::OciSpec,
    opts: &container::manage::NewContainer,
    create_only: bool,
) -> Result<i32, Error> {
    let c = if create_only {
        container::manage::create(root, spec, opts)?
    } else {
        container::manage::run_detached(root, spec, opts)?
    };
    println!("{}", c.id());
    Ok(0)
}

fn run_foreground(
    stdin: bool,
    root: &StateRoot,
    spec: &rootbox_core::spec::OciSpec,
    (id, name): (&str, &str),
    setup: Setup,
    net: network::Prepared,
    image: Option<&str>,
) -> Result<i32, Error> {
    let invalid = |m: String| Error::from(rootbox_core::spec::SpecError::Invalid(m));
    let devnull = rootbox_cli::dev_null().map_err(|e| invalid(format!("/dev/null: {e}")))?;
    let stdio = if stdin {
        None
    } else {
        Some([devnull.as_raw_fd(), 1, 2])
    };
    let copts = CreateOptions {
        bundle: std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/")),
        stdio,
        kill_on_parent_death: true,
        rootfs_setup: Some(setup),
        name: name.to_string(),
        network: Some(std::sync::Arc::new(net)),
        ..Default::default()
    };
    let forwarder =
        SignalForwarder::install().map_err(|e| invalid(format!("signal handling: {e}")))?;
    let running = container::run::run(root, id, spec, &copts)?;
    if let Some(image) = image {
        let _ = container::manage::update(root, id, |r| r.lifecycle.image = image.to_string());
    }
    drop(devnull);
    let exit = wait_foreground_exit(running, forwarder, true)?;
    if exit.oom_killed {
        eprintln!(
            "{PROG}: container {id} was OOM-killed: a process exceeded its memory limit (exit code {})",
            exit.code
        );
    }
    Ok(exit.code)
}

/// `rootbox stats`: samples each container's cgroup (CPU % over the interval).
fn stats(a: StatsArgs, state_dir: PathBuf) -> Result<i32, Error> {
    use rootbox_core::cgroup::stats::{human_bytes, Stats};
    use std::time::{Duration, Instant};
    let json = match a.format.as_str() {
        "table" => false,
        "json" => true,
        other => {
            return Err(rootbox_core::spec::SpecError::Invalid(format!(
                "unknown --format {other:?} (expected table or json)"
            ))
            .into())
        }
    };
    let root = StateRoot::open(&state_dir)?;
    let mut ctrs = Vec::new();
    for id in &a.containers {
        let c = container::manage::lookup(&root, id)?;
        let cg = c.require_cgroup("stats")?;
        ctrs.push((c, cg));
    }
    let interval = if a.no_stream {
        Duration::from_millis(500)
    } else {
        Duration::from_secs(1)
    };
    let mut prev: Vec<(Stats, Instant)> = ctrs
        .iter()
        .map(|(_, cg)| (Stats::read(cg), Instant::now()))
        .collect();
    loop {
        std::thread::sleep(interval);
        if !json {
            println!(
                "{:<16} {:>7} {:>22} {:>7} {:>11} {:>9} {:>9}",
                "NAME", "CPU %", "MEM USAGE / LIMIT", "MEM %", "MEM PEAK", "PIDS", "OOM KILLS"
            );
        }
        let mut alive = 0;
        for ((c, cg), (p, t)) in ctrs.iter().zip(prev.iter_mut()) {
            if !cg.exists() {
                continue;
            }
            alive += 1;
            let now = Stats::read(cg);
            let wall = t.elapsed().as_micros().max(1) as f64;
            let cpu = now.cpu_usage_usec.saturating_sub(p.cpu_usage_usec) as f64 * 100.0 / wall;
            let mem_pct = now
                .memory_limit
                .map(|l| now.memory_current as f64 * 100.0 / l.max(1) as f64);
            if json {
                let mut v = serde_json::to_value(&now).unwrap_or_default();
                if let Some(o) = v.as_object_mut() {
                    o.remove("memory_stat");
                    o.insert("id".into(), c.id().into());
                    o.insert("cpu_percent".into(), ((cpu * 100.0).round() / 100.0).into());
                }
                println!("{v}");
            } else {
                let limit = now.memory_limit.map_or("unlimited".into(), human_bytes);
                println!(
                    "{:<16} {:>6.2}% {:>22} {:>7} {:>11} {:>9} {:>9}",
                    if c.record.name.is_empty() {
                        c.id().chars().take(16).collect::<String>()
                    } else {
                        c.record.name.clone()
                    },
                    cpu,
                    format!("{} / {}", human_bytes(now.memory_current), limit),
                    mem_pct.map_or("-".into(), |m| format!("{m:.2}%")),
                    human_bytes(now.memory_peak),
                    match now.pids_limit {
                        Some(l) => format!("{}/{l}", now.pids_current),
                        None => now.pids_current.to_string(),
                    },
                    now.oom_kills
                );
            }
            *p = now;
            *t = Instant::now();
        }
        if a.no_stream || alive == 0 {
            return Ok(0);
        }
    }
}

fn network_cmd(cmd: NetCmd, state_dir: PathBuf) -> Result<i32, Error> {
    let root = StateRoot::open(&state_dir)?;
    match cmd {
        NetCmd::Create { name, helper } => {
            let helper = match helper.as_deref() {
                None => None,
                Some("pasta") => Some(network::HelperKind::Pasta),
                Some("slirp4netns") => Some(network::HelperKind::Slirp4netns),
                Some(other) => {
                    return Err(network::NetworkError::Invalid(format!(
                        "unknown --helper {other:?} (expected pasta or slirp4netns)"
                    ))
                    .into())
                }
            };
            let net = network::user::create(&root, &name, helper)?;
            println!("{}", net.name);
        }
        NetCmd::Ls { quiet } => {
            let nets = network::user::list(&root)?;
            if quiet {
                for n in &nets {
                    println!("{}", n.name);
                }
            } else {
                println!(
                    "{:<20} {:<12} {:<16} {:<8} CONTAINERS",
                    "NAME", "DRIVER", "IP", "RUNNING"
                );
                for n in &nets {
                    let i = n.info();
                    println!(
                        "{:<20} {:<12} {:<16} {:<8} {}",
                        i.name,
                        i.driver,
                        i.ip_address.map_or("-".into(), |a| a.to_string()),
                        if i.running { "yes" } else { "no" },
                        i.containers.len()
                    );
                }
            }
        }
        NetCmd::Rm { names, force } => {
            let mut failed = false;
            for n in &names {
                match network::user::remove(&root, n, force) {
                    Ok(()) => println!("{n}"),
                    Err(e) => {
                        eprintln!("{PROG}: {e}");
                        failed = true;
                    }
                }
            }
            return Ok(if failed { 1 } else { 0 });
        }
        NetCmd::Inspect { names } => {
            let mut out = Vec::new();
            for n in &names {
                out.push(network::user::load(&root, n)?.info());
            }
            match serde_json::to_string_pretty(&out) {
                Ok(s) => println!("{s}"),
                Err(e) => die(PROG, e, 1),
            }
        }
    }
    Ok(0)
}

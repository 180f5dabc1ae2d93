//! `rootbox`: the user command line, docker-like. Each command maps to one `rootbox_core` call.
//! The lifecycle commands (ps, logs, stop, exec, ...) live in `rootbox/lifecycle.rs`.

#[path = "rootbox/build.rs"]
mod build;
#[path = "rootbox/changes.rs"]
mod changes;
#[path = "rootbox/lifecycle.rs"]
mod lifecycle;

use std::os::fd::AsRawFd;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use rootbox_cli::{die, relay_foreground, SignalForwarder};
use rootbox_core::cgroup::{CgroupOptions, ResourceOptions};
use rootbox_core::container;
use rootbox_core::container::request::{self, Dirs, Prepared, RunRequest};
use rootbox_core::container::state::StateRoot;
use rootbox_core::network;
use rootbox_core::rootfs::VolumeStore;
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
    #[command(flatten)]
    Changes(changes::ChangesCmd),
    #[command(flatten)]
    Build(build::BuildCmd),
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
        Cmd::Changes(cmd) => match changes::dispatch(cmd, &state_dir, &store) {
            Ok(code) => Ok(code),
            Err(e) => die(PROG, &e, 1),
        },
        Cmd::Build(cmd) => {
            let dirs = Dirs {
                state: state_dir.clone(),
                store: store.clone(),
            };
            match build::dispatch(cmd, &dirs) {
                Ok(code) => Ok(code),
                Err(e) => die(PROG, &e, 1),
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
    // `run IMAGE [CMD...]` or `run --rootfs DIR CMD...`.
    let mut command = a.command;
    let image = match &a.rootfs {
        None if !command.is_empty() => Some(command.remove(0)),
        _ => None,
    };
    if let Some(reference) = &image {
        rootbox_cli::registry::ensure_image(&store, reference, a.pull, a.quiet)?;
    }
    let req = RunRequest {
        image,
        rootfs: a.rootfs,
        command,
        entrypoint: a.entrypoint,
        rootfs_overlay: a.rootfs_overlay,
        storage_driver: a.storage_driver,
        volumes: a.volume,
        mounts: a.mount,
        tmpfs: a.tmpfs,
        env: a.env,
        workdir: a.workdir,
        user: a.user,
        hostname: a.hostname,
        init: a.init,
        read_only: a.read_only,
        tty: a.tty,
        interactive: a.interactive,
        idmap: Some(a.idmap),
        network: a.network,
        publish: a.publish,
        publish_all: a.publish_all,
        add_hosts: a.add_host,
        dns: a.dns,
        dns_search: a.dns_search,
        security_opt: a.security_opt,
        name: a.name,
        auto_remove: a.rm,
        stop_signal: a.stop_signal,
        stop_timeout: a.stop_timeout,
        resources: a.limits.resources()?,
        cgroup_parent: a.limits.cgroup_parent.clone(),
        cgroup: a.limits.cgroup_options()?,
    };
    let dirs = Dirs {
        state: state_dir,
        store,
    };
    let prepared = request::prepare(&req, &dirs)?;
    for note in &prepared.notes {
        eprintln!("{PROG}: {note}");
    }
    let root = StateRoot::open(&dirs.state)?;
    if a.detach || create_only {
        let c = if create_only {
            prepared.create(&root)?
        } else {
            prepared.start_detached(&root)?
        };
        println!("{}", c.id());
        return Ok(0);
    }
    run_foreground(req.interactive || req.tty, &root, prepared)
}

fn run_foreground(stdin: bool, root: &StateRoot, prepared: Prepared) -> Result<i32, Error> {
    let invalid = |m: String| Error::from(rootbox_core::spec::SpecError::Invalid(m));
    let devnull = rootbox_cli::dev_null().map_err(|e| invalid(format!("/dev/null: {e}")))?;
    let stdio = if stdin {
        None
    } else {
        Some([devnull.as_raw_fd(), 1, 2])
    };
    let id = prepared.id.clone();
    let forwarder =
        SignalForwarder::install().map_err(|e| invalid(format!("signal handling: {e}")))?;
    let mut fg = prepared.start(root, stdio, true)?;
    drop(devnull);
    let pid = fg.running.pid();
    let pty = fg.running.take_pty();
    // Foreground runs are removed when they end (for now, `--rm` or not).
    let exit = relay_foreground(pid, pty, forwarder, || fg.wait(true))?;
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

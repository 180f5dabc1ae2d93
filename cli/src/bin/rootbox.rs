//! `rootbox`: the user command line, docker-like. Each command maps to one `rootbox_core` call.

use std::os::fd::AsRawFd;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use rootbox_cli::{die, wait_foreground, SignalForwarder};
use rootbox_core::container::{self, create::CreateOptions, state::StateRoot};
use rootbox_core::idmap::IdMapMode;
use rootbox_core::network;
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
    /// Show what this host offers containers (kernel, id mapping, overlay, cgroups, helpers).
    Info {
        /// Print JSON.
        #[arg(long)]
        json: bool,
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
    /// Root filesystem directory to run in.
    #[arg(long)]
    rootfs: PathBuf,
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
    /// Bind mount HOST:CONTAINER[:ro|rw].
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
    /// Container name (used as its id).
    #[arg(long)]
    name: Option<String>,
    /// Remove the container when it exits (the default for foreground runs for now).
    #[arg(long)]
    rm: bool,
    /// The command and its arguments.
    #[arg(trailing_var_arg = true, required = true, num_args = 1..)]
    command: Vec<String>,
}

fn main() {
    let cli = Cli::parse();
    let state_dir = cli
        .state_dir
        .clone()
        .unwrap_or_else(|| StateRoot::default_path("rootbox"));
    let code = match cli.cmd {
        Cmd::Run(args) => run(*args, state_dir),
        Cmd::Network { cmd } => network_cmd(cmd, state_dir),
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
    };
    match code {
        Ok(code) => std::process::exit(code),
        Err(e) => die(PROG, &e, e.exit_code()),
    }
}

fn run(a: RunArgs, state_dir: PathBuf) -> Result<i32, Error> {
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
    let volumes = a
        .volume
        .iter()
        .map(|v| v.parse::<BindVolume>())
        .collect::<Result<Vec<_>, _>>()?;
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
    let opts = RunOptions {
        rootfs: a.rootfs,
        args: a.command,
        env: a.env,
        cwd: a.workdir,
        user: a.user,
        hostname: a.hostname,
        init: a.init,
        read_only: a.read_only,
        volumes,
        tmpfs: a.tmpfs,
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
            dns_search: a.dns_search,
        },
    };
    let id = match &a.name {
        Some(n) => n.clone(),
        None => container::new_id(),
    };
    let mut spec = opts.to_spec(&id)?;
    let root = StateRoot::open(&state_dir)?;
    let net = network::prepare(&opts.network, &root, &id, &mut spec)?;
    if let Some(note) = &net.note {
        eprintln!("{PROG}: note: {note}");
    }
    if chosen_ports {
        for p in net.ports() {
            eprintln!("{PROG}: publishing {p}");
        }
    }
    let devnull = rootbox_cli::dev_null().map_err(|e| invalid(format!("/dev/null: {e}")))?;
    let stdio = if a.interactive || a.tty {
        None
    } else {
        Some([devnull.as_raw_fd(), 1, 2])
    };
    let copts = CreateOptions {
        bundle: std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/")),
        stdio,
        kill_on_parent_death: true,
        network: Some(std::sync::Arc::new(net)),
        ..Default::default()
    };
    let forwarder =
        SignalForwarder::install().map_err(|e| invalid(format!("signal handling: {e}")))?;
    let running = container::run::run(&root, &id, &spec, &copts)?;
    drop(devnull);
    wait_foreground(running, forwarder, true)
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

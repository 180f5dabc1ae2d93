//! `rootbox`: the user command line, docker-like. Each command maps to one `rootbox_core` call.

use std::os::fd::AsRawFd;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use rootbox_cli::{die, wait_foreground, SignalForwarder};
use rootbox_core::container::{self, create::CreateOptions, state::StateRoot};
use rootbox_core::idmap::IdMapMode;
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
    /// Show what this host offers containers (kernel, id mapping, overlay, cgroups, helpers).
    Info {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Manage volumes (create, ls, inspect, rm, prune).
    #[command(subcommand)]
    Volume(VolumeCmd),
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

#[derive(Args, Debug)]
struct RunArgs {
    /// Root filesystem directory to run in (with --rootfs-overlay: the empty directory the
    /// layers are mounted on, inside the container only).
    #[arg(long)]
    rootfs: PathBuf,
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
    /// Network: none (only loopback) or host.
    #[arg(long, default_value = "none")]
    network: String,
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
    let store = rootbox_core::rootfs::data_root(cli.root.as_deref());
    let code = match cli.cmd {
        Cmd::Run(args) => run(*args, state_dir, store),
        Cmd::Volume(v) => volume(v, &store),
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

fn run(a: RunArgs, state_dir: PathBuf, store: PathBuf) -> Result<i32, Error> {
    let invalid = |m: String| Error::from(rootbox_core::spec::SpecError::Invalid(m));
    let idmap: IdMapMode = a
        .idmap
        .parse()
        .map_err(rootbox_core::spec::SpecError::from)?;
    let network_host = match a.network.as_str() {
        "none" => false,
        "host" => true,
        other => {
            return Err(invalid(format!(
                "unknown network {other:?} (expected none or host)"
            )))
        }
    };
    let mut volumes: Vec<BindVolume> = Vec::new();
    let mut tmpfs = a.tmpfs.clone();
    let mut setup = Setup {
        store,
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
    let rootfs_layers = match (&a.rootfs_overlay, &a.storage_driver) {
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
        tmpfs,
        tty: a.tty,
        idmap,
        network_host,
        seccomp,
        rootfs_layers,
    };
    let id = match &a.name {
        Some(n) => n.clone(),
        None => container::new_id(),
    };
    let spec = opts.to_spec(&id)?;
    let root = StateRoot::open(&state_dir)?;
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
        rootfs_setup: Some(setup),
        ..Default::default()
    };
    let forwarder =
        SignalForwarder::install().map_err(|e| invalid(format!("signal handling: {e}")))?;
    let running = container::run::run(&root, &id, &spec, &copts)?;
    drop(devnull);
    wait_foreground(running, forwarder, true)
}

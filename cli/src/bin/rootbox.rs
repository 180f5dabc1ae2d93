//! `rootbox`: the user command line, docker-like. Each command maps to one `rootbox_core` call.

use std::os::fd::AsRawFd;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use rootbox_cli::{die, wait_foreground, SignalForwarder};
use rootbox_core::container::{self, create::CreateOptions, state::StateRoot};
use rootbox_core::idmap::IdMapMode;
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
    /// Image store directory (default: $XDG_DATA_HOME/rootbox or ~/.local/share/rootbox).
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
    #[command(flatten)]
    Images(rootbox_cli::images::ImageCommands),
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
    let code = match cli.cmd {
        Cmd::Run(args) => run(*args, state_dir),
        Cmd::Images(c) => rootbox_cli::images::run(c, cli.root.clone()),
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
    let network_host = match a.network.as_str() {
        "none" => false,
        "host" => true,
        other => {
            return Err(invalid(format!(
                "unknown network {other:?} (expected none or host)"
            )))
        }
    };
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
        ..Default::default()
    };
    let forwarder =
        SignalForwarder::install().map_err(|e| invalid(format!("signal handling: {e}")))?;
    let running = container::run::run(&root, &id, &spec, &copts)?;
    drop(devnull);
    wait_foreground(running, forwarder, true)
}

//! `rootbox` lifecycle commands: ps, logs, stop, kill, restart, rm, wait, top, attach, rename,
//! port, inspect, exec, start, container prune. Each maps to `rootbox_core::container::manage`
//! (or `exec`); this file only parses arguments, prints, and relays terminals.

use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::path::Path;

use clap::{Args, Subcommand};
use rootbox_cli::{RawMode, SignalForwarder};
use rootbox_core::container::{
    self, attach,
    logs::{self, LogOptions, Stream},
    manage::{self, Filters},
    state::StateRoot,
    StateError, Status,
};
use rootbox_core::Error;

#[derive(Subcommand, Debug)]
pub enum LifecycleCmd {
    /// Start one or more created or stopped containers.
    Start(StartArgs),
    /// List containers.
    Ps(PsArgs),
    /// Show a container's output.
    Logs(LogsArgs),
    /// Stop running containers (the stop signal, then SIGKILL after a timeout).
    Stop(StopArgs),
    /// Send a signal to running containers.
    Kill(KillArgs),
    /// Stop and start containers again.
    Restart(StopArgs),
    /// Remove containers.
    Rm(RmArgs),
    /// Wait until containers stop; print their exit codes.
    Wait(RefsArgs),
    /// Freeze every process of containers (needs a delegated cgroup v2).
    Pause(RefsArgs),
    /// Thaw paused containers.
    Unpause(RefsArgs),
    /// Show the processes of a running container.
    Top(RefArgs),
    /// Attach to a running container's input and output.
    Attach(AttachArgs),
    /// Rename a container.
    Rename(RenameArgs),
    /// List a container's published ports.
    Port(RefArgs),
    /// Show containers' details as JSON.
    Inspect(RefsArgs),
    /// Run a command in a running container.
    Exec(ExecArgs),
    /// Manage containers.
    #[command(subcommand)]
    Container(ContainerCmd),
}

#[derive(Subcommand, Debug)]
pub enum ContainerCmd {
    /// Remove all stopped containers.
    Prune {
        /// Do not ask (rootbox never asks; accepted for Docker compatibility).
        #[arg(short, long)]
        force: bool,
    },
    /// List containers (like `ps`).
    #[command(alias = "list")]
    Ls(PsArgs),
    /// Show containers' details as JSON.
    Inspect(RefsArgs),
}

#[derive(Args, Debug)]
pub struct StartArgs {
    /// Attach to the container's output (and exit with its exit code).
    #[arg(short, long)]
    attach: bool,
    /// Attach the container's stdin.
    #[arg(short, long)]
    interactive: bool,
    #[arg(required = true)]
    containers: Vec<String>,
}

#[derive(Args, Debug)]
pub struct PsArgs {
    /// Show all containers (default: only running ones).
    #[arg(short, long)]
    all: bool,
    /// Only print ids.
    #[arg(short, long)]
    quiet: bool,
    /// Output format: table (default) or json (one object per line).
    #[arg(long, default_value = "table")]
    format: String,
    /// Filter: status=created|running|paused|exited, name=SUBSTRING, id=PREFIX.
    #[arg(short, long)]
    filter: Vec<String>,
    /// Do not truncate ids and commands.
    #[arg(long)]
    no_trunc: bool,
}

#[derive(Args, Debug)]
pub struct LogsArgs {
    /// Follow the output until the container stops.
    #[arg(short, long)]
    follow: bool,
    /// Only the last N lines ("all" for everything).
    #[arg(short = 'n', long, default_value = "all")]
    tail: String,
    /// Only lines since a time (RFC 3339, Unix seconds) or a duration ago (10s, 5m, 1h).
    #[arg(long)]
    since: Option<String>,
    /// Only lines until a time (same forms as --since).
    #[arg(long)]
    until: Option<String>,
    /// Prefix each line with its timestamp.
    #[arg(short, long)]
    timestamps: bool,
    container: String,
}

#[derive(Args, Debug)]
pub struct StopArgs {
    /// Seconds to wait before SIGKILL (default: the container's --stop-timeout, else 10).
    #[arg(short, long)]
    time: Option<u32>,
    /// Signal to send first (default: the container's --stop-signal, else SIGTERM).
    #[arg(short, long)]
    signal: Option<String>,
    #[arg(required = true)]
    containers: Vec<String>,
}

#[derive(Args, Debug)]
pub struct KillArgs {
    /// Signal to send (name or number).
    #[arg(short, long, default_value = "KILL")]
    signal: String,
    #[arg(required = true)]
    containers: Vec<String>,
}

#[derive(Args, Debug)]
pub struct RmArgs {
    /// Kill and remove running containers too.
    #[arg(short, long)]
    force: bool,
    /// Remove anonymous volumes too (none exist yet).
    #[arg(short, long)]
    volumes: bool,
    #[arg(required = true)]
    containers: Vec<String>,
}

#[derive(Args, Debug)]
pub struct RefsArgs {
    #[arg(required = true)]
    containers: Vec<String>,
}

#[derive(Args, Debug)]
pub struct RefArgs {
    container: String,
}

#[derive(Args, Debug)]
pub struct AttachArgs {
    /// Do not attach stdin.
    #[arg(long)]
    no_stdin: bool,
    /// Forward signals to the container (default true; not with a terminal).
    #[arg(long, default_value = "true", action = clap::ArgAction::Set)]
    sig_proxy: bool,
    container: String,
}

#[derive(Args, Debug)]
pub struct RenameArgs {
    container: String,
    new_name: String,
}

#[derive(Args, Debug)]
pub struct ExecArgs {
    /// Keep stdin open.
    #[arg(short, long)]
    interactive: bool,
    /// Allocate a pseudo-terminal.
    #[arg(short, long)]
    tty: bool,
    /// Run in the background.
    #[arg(short, long)]
    detach: bool,
    /// Set an environment variable (NAME=VALUE, or NAME to pass the caller's value).
    #[arg(short, long = "env")]
    env: Vec<String>,
    /// Working directory inside the container.
    #[arg(short, long)]
    workdir: Option<String>,
    /// UID[:GID] to run as.
    #[arg(short, long)]
    user: Option<String>,
    container: String,
    #[arg(trailing_var_arg = true, required = true, num_args = 1..)]
    command: Vec<String>,
}

fn root(state_dir: &Path) -> Result<StateRoot, Error> {
    Ok(StateRoot::open(state_dir)?)
}

/// Runs a lifecycle command; returns the exit code.
/// `pause` / `unpause`: each container in turn; 1 when any failed (Docker's exit code).
fn freeze_all(root: &StateRoot, refs: &[String], freeze: bool) -> i32 {
    use rootbox_core::container::{pause, ContainerError};
    let mut rc = 0;
    for r in refs {
        let done = container::names::resolve(root, r)
            .map_err(ContainerError::from)
            .and_then(|id| {
                if freeze {
                    pause::pause(root, &id)
                } else {
                    pause::resume(root, &id)
                }
            });
        match done {
            Ok(()) => println!("{r}"),
            Err(e) => {
                eprintln!("rootbox: {e}");
                rc = 1;
            }
        }
    }
    rc
}

pub fn dispatch(cmd: LifecycleCmd, state_dir: &Path) -> Result<i32, Error> {
    let root = root(state_dir)?;
    match cmd {
        LifecycleCmd::Start(a) => start(&root, a),
        LifecycleCmd::Ps(a) => ps(&root, a),
        LifecycleCmd::Logs(a) => logs_cmd(&root, a),
        LifecycleCmd::Stop(a) => {
            let sig = a
                .signal
                .as_deref()
                .map(container::kill::parse_signal)
                .transpose()?;
            each(&a.containers, |r| {
                manage::stop(&root, r, a.time, sig)?;
                Ok(())
            })
        }
        LifecycleCmd::Restart(a) => each(&a.containers, |r| {
            manage::restart(&root, r, a.time)?;
            Ok(())
        }),
        LifecycleCmd::Kill(a) => {
            let sig = container::kill::parse_signal(&a.signal)?;
            each(&a.containers, |r| {
                manage::kill(&root, r, sig)?;
                Ok(())
            })
        }
        LifecycleCmd::Rm(a) => each(&a.containers, |r| {
            manage::remove(&root, r, a.force)?;
            Ok(())
        }),
        LifecycleCmd::Pause(a) => Ok(freeze_all(&root, &a.containers, true)),
        LifecycleCmd::Unpause(a) => Ok(freeze_all(&root, &a.containers, false)),
        LifecycleCmd::Wait(a) => {
            let mut rc = 0;
            for r in &a.containers {
                match manage::wait(&root, r) {
                    Ok(code) => println!("{code}"),
                    Err(e) => {
                        eprintln!("rootbox: {e}");
                        rc = 1;
                    }
                }
            }
            Ok(rc)
        }
        LifecycleCmd::Top(a) => {
            let c = manage::lookup(&root, &a.container)?;
            let rows = manage::top(&c)?;
            println!(
                "{:<8} {:<8} {:<8} {:<6} {:<9} CMD",
                "UID", "PID", "PPID", "NSPID", "TIME"
            );
            for r in rows {
                println!(
                    "{:<8} {:<8} {:<8} {:<6} {:<9} {}",
                    r.uid, r.pid, r.ppid, r.ns_pid, r.time, r.cmd
                );
            }
            Ok(0)
        }
        LifecycleCmd::Attach(a) => attach_cmd(&root, a),
        LifecycleCmd::Rename(a) => {
            manage::rename(&root, &a.container, &a.new_name)?;
            Ok(0)
        }
        LifecycleCmd::Port(a) => {
            let c = manage::lookup(&root, &a.container)?;
            for l in manage::port_lines(&c) {
                println!("{l}");
            }
            Ok(0)
        }
        LifecycleCmd::Inspect(a) => inspect(&root, &a.containers),
        LifecycleCmd::Exec(a) => exec(&root, a),
        LifecycleCmd::Container(ContainerCmd::Prune { .. }) => {
            let ids = manage::prune(&root)?;
            if !ids.is_empty() {
                println!("Deleted Containers:");
                for id in &ids {
                    println!("{id}");
                }
                println!();
            }
            println!("Total reclaimed containers: {}", ids.len());
            Ok(0)
        }
        LifecycleCmd::Container(ContainerCmd::Ls(a)) => ps(&root, a),
        LifecycleCmd::Container(ContainerCmd::Inspect(a)) => inspect(&root, &a.containers),
    }
}

/// Runs `f` for each reference, printing it on success (like Docker) and the error otherwise;
/// exit code 1 when any failed.
fn each(refs: &[String], mut f: impl FnMut(&str) -> Result<(), Error>) -> Result<i32, Error> {
    let mut rc = 0;
    for r in refs {
        match f(r) {
            Ok(()) => println!("{r}"),
            Err(e) => {
                eprintln!("rootbox: {e}");
                rc = 1;
            }
        }
    }
    Ok(rc)
}

fn inspect(root: &StateRoot, refs: &[String]) -> Result<i32, Error> {
    let mut out = Vec::new();
    let mut rc = 0;
    for r in refs {
        match manage::lookup(root, r) {
            Ok(c) => out.push(manage::inspect(&c)),
            Err(e) => {
                eprintln!("rootbox: {e}");
                rc = 1;
            }
        }
    }
    let text = serde_json::to_string_pretty(&out)
        .map_err(|e| StateError::Other(format!("inspect: {e}")))?;
    println!("{text}");
    Ok(rc)
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(n.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

fn ps(root: &StateRoot, a: PsArgs) -> Result<i32, Error> {
    let mut filters = Filters::default();
    for f in &a.filter {
        filters.add(f)?;
    }
    if a.format != "table" && a.format != "json" {
        return Err(StateError::Other(format!(
            "unsupported --format {:?}: use table or json",
            a.format
        ))
        .into());
    }
    let rows = manage::ps(root, a.all, &filters)?;
    if a.quiet {
        for r in &rows {
            // Ids are cut, not ellipsized: what `ps -q` prints must work as a reference.
            let n = if a.no_trunc { r.id.len() } else { 12 };
            println!("{}", r.id.get(..n).unwrap_or(&r.id));
        }
        return Ok(0);
    }
    if a.format == "json" {
        for r in &rows {
            let line =
                serde_json::to_string(r).map_err(|e| StateError::Other(format!("ps: {e}")))?;
            println!("{line}");
        }
        return Ok(0);
    }
    let table: Vec<[String; 7]> = rows
        .iter()
        .map(|r| {
            let (id, cmd) = if a.no_trunc {
                (r.id.clone(), format!("{:?}", r.command))
            } else {
                (
                    r.id.chars().take(12).collect(),
                    format!("{:?}", truncate(&r.command, 20)),
                )
            };
            [
                id,
                r.image.clone(),
                cmd,
                r.running_for.clone(),
                r.status.clone(),
                r.ports.clone(),
                r.names.clone(),
            ]
        })
        .collect();
    let heads = [
        "CONTAINER ID",
        "IMAGE",
        "COMMAND",
        "CREATED",
        "STATUS",
        "PORTS",
        "NAMES",
    ];
    let mut widths: Vec<usize> = heads.iter().map(|h| h.chars().count()).collect();
    for row in &table {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                s.push_str(c);
            } else {
                s.push_str(c);
                s.push_str(&" ".repeat(widths[i] - c.chars().count() + 3));
            }
        }
        s
    };
    println!("{}", line(heads.to_vec()));
    for row in &table {
        println!("{}", line(row.iter().map(String::as_str).collect()));
    }
    Ok(0)
}

fn logs_cmd(root: &StateRoot, a: LogsArgs) -> Result<i32, Error> {
    let tail = match a.tail.as_str() {
        "all" | "-1" => None,
        n => Some(n.parse::<usize>().map_err(|_| {
            StateError::Other(format!("invalid --tail {n:?}: use a number or \"all\""))
        })?),
    };
    let opts = LogOptions {
        tail,
        since: a.since.as_deref().map(logs::parse_time_arg).transpose()?,
        until: a.until.as_deref().map(logs::parse_time_arg).transpose()?,
    };
    let stdout = std::io::stdout();
    let stderr = std::io::stderr();
    manage::logs(root, &a.container, &opts, a.follow, |e| {
        let mut buf = Vec::with_capacity(e.data.len() + 40);
        if a.timestamps {
            buf.extend_from_slice(e.time.as_bytes());
            buf.push(b' ');
        }
        buf.extend_from_slice(&e.data);
        let ok = match e.stream {
            Stream::Stdout => {
                let mut o = stdout.lock();
                o.write_all(&buf).and_then(|_| o.flush())
            }
            Stream::Stderr => {
                let mut o = stderr.lock();
                o.write_all(&buf).and_then(|_| o.flush())
            }
        };
        ok.is_ok()
    })?;
    Ok(0)
}

fn start(root: &StateRoot, a: StartArgs) -> Result<i32, Error> {
    if !a.attach && !a.interactive {
        return each(&a.containers, |r| {
            manage::start(root, r)?;
            Ok(())
        });
    }
    if a.containers.len() != 1 {
        return Err(StateError::Other("start -a/-i takes exactly one container".into()).into());
    }
    let c = manage::prepare_start(root, &a.containers[0], false)?;
    let stdin = a.interactive && c.record.lifecycle.open_stdin;
    let mut hello = attach::HELLO_OUTPUT;
    if stdin {
        hello |= attach::HELLO_STDIN;
    }
    let client = attach::Client::connect(&c.dir(), hello)
        .map_err(|e| StateError::Other(format!("attaching to {}: {e}", a.containers[0])))?;
    if c.status() == Status::Created {
        container::start::start(root, c.id())?;
    }
    let c = container::Container::load(root, c.id())?;
    relay(root, &c, client, stdin, true)
}

fn attach_cmd(root: &StateRoot, a: AttachArgs) -> Result<i32, Error> {
    let c = manage::lookup(root, &a.container)?;
    if !matches!(c.status(), Status::Running | Status::Paused) {
        return Err(StateError::Other(format!(
            "cannot attach to container {} ({}): start it first",
            a.container,
            manage::state_word(c.status())
        ))
        .into());
    }
    let stdin = !a.no_stdin && c.record.lifecycle.open_stdin;
    let mut hello = attach::HELLO_OUTPUT;
    if stdin {
        hello |= attach::HELLO_STDIN;
    }
    let client = attach::Client::connect(&c.dir(), hello).map_err(|e| {
        StateError::Other(format!(
            "attaching to {}: {e} (is its monitor running?)",
            a.container
        ))
    })?;
    relay(root, &c, client, stdin, a.sig_proxy)
}

fn window_size() -> Option<(u16, u16)> {
    // SAFETY: an all-zero winsize is valid; TIOCGWINSZ fills it.
    unsafe {
        let mut ws: libc::winsize = std::mem::zeroed();
        (libc::ioctl(0, libc::TIOCGWINSZ, &mut ws) == 0 && ws.ws_row > 0)
            .then_some((ws.ws_row, ws.ws_col))
    }
}

/// Relays a monitor connection to this terminal until the container exits; returns its code.
fn relay(
    root: &StateRoot,
    c: &container::Container,
    mut client: attach::Client,
    stdin: bool,
    sig_proxy: bool,
) -> Result<i32, Error> {
    let tty = c.record.lifecycle.tty;
    let io = |e: std::io::Error| Error::from(StateError::Other(format!("attach: {e}")));
    let mut sender = client.sender().map_err(io)?;
    if tty {
        if let Some((rows, cols)) = window_size() {
            let _ = sender.resize(rows, cols);
        }
    }
    let raw = if tty && stdin {
        RawMode::enable(0)
    } else {
        None
    };
    if stdin {
        let mut s = client.sender().map_err(io)?;
        std::thread::spawn(move || {
            let mut buf = [0u8; 8192];
            let mut input = std::io::stdin();
            loop {
                match input.read(&mut buf) {
                    Ok(0) | Err(_) => {
                        let _ = s.stdin_eof();
                        break;
                    }
                    Ok(n) => {
                        if s.stdin(&buf[..n]).is_err() {
                            break;
                        }
                    }
                }
            }
        });
    }
    // Window sizes go to the monitor; other signals to the container (no terminal: with one,
    // Ctrl-C travels as a byte).
    let fwd = if !tty && sig_proxy {
        let f = SignalForwarder::install().map_err(io)?;
        if let Some(pid) = c.record.pid {
            f.set_target(pid, None);
        }
        Some(f)
    } else {
        None
    };
    let winch = if tty {
        use signal_hook::consts::signal::SIGWINCH;
        let mut signals = signal_hook::iterator::Signals::new([SIGWINCH]).map_err(io)?;
        let handle = signals.handle();
        std::thread::spawn(move || {
            for _ in signals.forever() {
                if let Some((rows, cols)) = window_size() {
                    if sender.resize(rows, cols).is_err() {
                        break;
                    }
                }
            }
        });
        Some(handle)
    } else {
        None
    };
    let mut code = None;
    let stdout = std::io::stdout();
    let stderr = std::io::stderr();
    while let Ok(Some((kind, payload))) = client.read_frame() {
        match kind {
            attach::M_STDOUT => {
                let mut o = stdout.lock();
                let _ = o.write_all(&payload);
                let _ = o.flush();
            }
            attach::M_STDERR => {
                let mut o = stderr.lock();
                let _ = o.write_all(&payload);
                let _ = o.flush();
            }
            attach::M_EXIT if payload.len() == 4 => {
                code = Some(i32::from_be_bytes([
                    payload[0], payload[1], payload[2], payload[3],
                ]));
                break;
            }
            _ => {}
        }
    }
    drop(fwd);
    if let Some(h) = winch {
        h.close();
    }
    drop(raw);
    match code {
        Some(c) => Ok(c),
        // The monitor went away without an exit frame: read what it recorded.
        None => Ok(manage::wait(root, c.id())?),
    }
}

fn exec(root: &StateRoot, a: ExecArgs) -> Result<i32, Error> {
    let c = manage::lookup(root, &a.container)?;
    let mut env = Vec::new();
    for e in &a.env {
        if e.contains('=') {
            env.push(e.clone());
        } else if let Ok(v) = std::env::var(e) {
            env.push(format!("{e}={v}"));
        }
    }
    if let Some(w) = &a.workdir {
        if !w.starts_with('/') {
            return Err(rootbox_core::spec::SpecError::Invalid(format!(
                "working directory {w:?} is not an absolute path"
            ))
            .into());
        }
    }
    let mut p =
        container::exec::process_for(&c, a.command.clone(), &env, a.workdir.as_deref(), a.tty)?;
    if a.tty {
        if let Some((rows, cols)) = window_size() {
            container::exec::set_console_size(&mut p, rows, cols);
        }
    }
    if let Some(u) = &a.user {
        let (uid, gid) = rootbox_core::spec::parse_numeric_user(u)?;
        let mut user = p.user().clone();
        user.set_uid(uid);
        user.set_gid(gid.unwrap_or(uid));
        user.set_additional_gids(None);
        p.set_user(user);
    }
    let devnull =
        rootbox_cli::dev_null().map_err(|e| StateError::Other(format!("/dev/null: {e}")))?;
    let null = devnull.as_raw_fd();
    let stdio = if a.detach {
        Some([null, null, null])
    } else if a.interactive {
        None
    } else {
        Some([null, 1, 2])
    };
    let fwd = if a.detach {
        None
    } else {
        Some(
            SignalForwarder::install()
                .map_err(|e| StateError::Other(format!("signal handling: {e}")))?,
        )
    };
    let lopts = rootbox_core::launch::LaunchOptions {
        stdio,
        kill_on_parent_death: !a.detach,
        ..Default::default()
    };
    let mut launched = container::exec::exec(root, c.id(), &p, &lopts)?;
    drop(devnull);
    if a.detach {
        return Ok(0);
    }
    let pid = launched.pid;
    let pty = launched.pty_master.take();
    let raw = pty.as_ref().and_then(|_| {
        if a.interactive {
            RawMode::enable(0)
        } else {
            None
        }
    });
    if let Some(f) = &fwd {
        f.set_target(pid, pty.as_ref().map(|p| p.as_raw_fd()));
    }
    let out = pty.map(rootbox_cli::proxy_pty);
    let code = rootbox_core::launch::wait_pid(pid)?;
    if let Some(t) = out {
        let _ = t.join();
    }
    drop(fwd);
    drop(raw);
    Ok(code)
}

//! `rootbox-runtime`: an OCI runtime command line compatible with runc's, for engines (podman
//! `--runtime`, containerd, CRI-O). Each verb maps to one `rootbox_core` call.

use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use clap::{Parser, Subcommand};
use liboci_cli::{CommonCmd, GlobalOpts, StandardCmd};
use rootbox_cli::{wait_foreground, SignalForwarder};
use rootbox_core::cgroup::LinuxResources;
use rootbox_core::cgroup::{CgroupOptions, Manager};
use rootbox_core::container::{self, create::CreateOptions, state::StateRoot, Container};
use rootbox_core::{spec, Error};

const PROG: &str = "rootbox-runtime";

#[derive(Parser, Debug)]
#[command(
    name = "rootbox-runtime",
    version,
    about = "rootbox's OCI runtime (runc-compatible)"
)]
struct Opts {
    #[command(flatten)]
    global: GlobalOpts,
    #[command(subcommand)]
    cmd: SubCommand,
}

#[derive(Subcommand, Debug)]
enum SubCommand {
    #[command(flatten)]
    Standard(Box<StandardCmd>),
    #[command(flatten)]
    Common(Box<CommonCmd>),
}

/// Where errors go besides stderr: the `--log` file engines read, in runc's format.
struct Log {
    path: Option<PathBuf>,
    json: bool,
}

impl Log {
    fn error(&self, msg: &str) {
        if let Some(p) = &self.path {
            if let Ok(mut f) = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
            {
                let time = container::state::now_rfc3339();
                let line = if self.json {
                    serde_json::json!({"level": "error", "msg": msg, "time": time}).to_string()
                } else {
                    format!("time=\"{time}\" level=error msg={msg:?}")
                };
                let _ = writeln!(f, "{line}");
            }
        }
    }
}

/// runc's `update` takes sizes such as `64m` and negative numbers as values (`--memory-swap -1`);
/// liboci-cli wants bytes: the values are converted (an unparseable one is left for clap to
/// report).
fn update_args(args: Vec<std::ffi::OsString>) -> Vec<std::ffi::OsString> {
    let Some(verb) = args.iter().position(|a| a == "update") else {
        return args;
    };
    let sizes = [
        "--memory",
        "--memory-reservation",
        "--memory-swap",
        "--kernel-memory",
    ];
    let numbers = ["--pids-limit", "--cpu-quota", "--cpu-rt-runtime"];
    let mut out: Vec<std::ffi::OsString> = args[..=verb].to_vec();
    let mut it = args[verb + 1..].iter();
    while let Some(a) = it.next() {
        let text = a.to_string_lossy().into_owned();
        let (flag, value) = match text.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (text.clone(), None),
        };
        if !sizes.contains(&flag.as_str()) && !numbers.contains(&flag.as_str()) {
            out.push(a.clone());
            continue;
        }
        let value = match value {
            Some(v) => v,
            None => match it.next() {
                Some(v) => v.to_string_lossy().into_owned(),
                None => {
                    out.push(a.clone());
                    continue;
                }
            },
        };
        let value = if sizes.contains(&flag.as_str()) && value != "-1" {
            rootbox_core::cgroup::parse_size(&value)
                .map(|b| b.to_string())
                .unwrap_or(value)
        } else {
            value
        };
        out.push(format!("{flag}={value}").into());
    }
    out
}

/// Parses the command line; `kill ID` without a signal means SIGTERM, as with runc.
fn parse() -> Opts {
    let args: Vec<std::ffi::OsString> = update_args(std::env::args_os().collect());
    match Opts::try_parse_from(&args) {
        Ok(o) => o,
        Err(e)
            if e.kind() == clap::error::ErrorKind::MissingRequiredArgument
                && args.iter().any(|a| a == "kill") =>
        {
            let mut with_sig = args.clone();
            with_sig.push("SIGTERM".into());
            Opts::try_parse_from(&with_sig).unwrap_or_else(|_| e.exit())
        }
        Err(e) => e.exit(),
    }
}

fn main() {
    let opts = parse();
    let log = Log {
        path: opts.global.log.clone(),
        json: opts.global.log_format.as_deref() == Some("json"),
    };
    let root_path = opts
        .global
        .root
        .clone()
        .unwrap_or_else(|| StateRoot::default_path("rootbox-runtime"));
    let cgroup = match cgroup_options(opts.global.systemd_cgroup) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{PROG}: {e}");
            std::process::exit(1);
        }
    };
    let code = match dispatch(opts.cmd, &root_path, cgroup) {
        Ok(code) => code,
        Err(e) => {
            let msg = e.to_string();
            log.error(&msg);
            eprintln!("{PROG}: {msg}");
            // runc exits 1 on errors; a command that cannot be found or run keeps 127/126.
            match e.exit_code() {
                c @ (126 | 127) => c,
                _ => 1,
            }
        }
    };
    std::process::exit(code);
}

/// `--systemd-cgroup` (or ROOTBOX_CGROUP_MANAGER), and the limit policy from
/// ROOTBOX_CGROUP_LIMITS (a config's `io.rootbox.cgroup-limits` annotation wins).
fn cgroup_options(systemd: bool) -> Result<CgroupOptions, Error> {
    let manager = if systemd {
        Manager::Systemd
    } else {
        std::env::var("ROOTBOX_CGROUP_MANAGER")
            .unwrap_or_default()
            .parse()?
    };
    Ok(CgroupOptions {
        manager,
        ..Default::default()
    }
    .with_env()?)
}

fn root(path: &Path) -> Result<StateRoot, Error> {
    Ok(StateRoot::open(path)?)
}

fn bundle_spec(bundle: &Path) -> Result<(PathBuf, spec::OciSpec), Error> {
    let bundle = bundle.canonicalize().map_err(|_| {
        spec::SpecError::Invalid(format!("bundle {} does not exist", bundle.display()))
    })?;
    let spec = spec::load_bundle(&bundle)?;
    Ok((bundle, spec))
}

fn preserve(n: i32) -> u32 {
    n.max(0) as u32
}

fn dispatch(cmd: SubCommand, root_path: &Path, cgroup: CgroupOptions) -> Result<i32, Error> {
    match cmd {
        SubCommand::Standard(cmd) => {
            match *cmd {
                StandardCmd::Create(c) => {
                    let root = root(root_path)?;
                    let (bundle, spec) = bundle_spec(&c.bundle)?;
                    let opts = CreateOptions {
                        bundle,
                        console_socket: c.console_socket,
                        pid_file: c.pid_file,
                        preserve_fds: preserve(c.preserve_fds),
                        no_pivot: c.no_pivot,
                        cgroup,
                        ..Default::default()
                    };
                    container::create::create(&root, &c.container_id, &spec, &opts)?;
                    Ok(0)
                }
                StandardCmd::Start(s) => {
                    container::start::start(&root(root_path)?, &s.container_id)?;
                    Ok(0)
                }
                StandardCmd::State(s) => {
                    let c = Container::load(&root(root_path)?, &s.container_id)?;
                    println!("{}", to_json(&c.oci_state()));
                    Ok(0)
                }
                StandardCmd::Kill(k) => {
                    let sig = container::kill::parse_signal(&k.signal)?;
                    container::kill::kill(&root(root_path)?, &k.container_id, sig, k.all)?;
                    Ok(0)
                }
                StandardCmd::Delete(d) => {
                    let root = root(root_path)?;
                    match container::delete::delete(&root, &d.container_id, d.force) {
                        Ok(()) => Ok(0),
                        // runc: `delete --force` of a container that does not exist succeeds.
                        Err(container::ContainerError::State(container::StateError::NotFound(
                            _,
                        ))) if d.force => Ok(0),
                        Err(e) => Err(e.into()),
                    }
                }
            }
        }
        SubCommand::Common(cmd) => common(*cmd, root_path, cgroup),
    }
}

fn to_json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string_pretty(v).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
}

fn common(cmd: CommonCmd, root_path: &Path, cgroup: CgroupOptions) -> Result<i32, Error> {
    match cmd {
        CommonCmd::Run(r) => {
            let root = root(root_path)?;
            let (bundle, spec) = bundle_spec(&r.bundle)?;
            let opts = CreateOptions {
                bundle,
                console_socket: r.console_socket,
                pid_file: r.pid_file,
                preserve_fds: preserve(r.preserve_fds),
                no_pivot: r.no_pivot,
                kill_on_parent_death: !r.detach,
                cgroup,
                ..Default::default()
            };
            if r.detach {
                container::create::require_console_socket(&spec, &opts)?;
            }
            let forwarder =
                if r.detach {
                    None
                } else {
                    Some(SignalForwarder::install().map_err(|e| {
                        container::StateError::Other(format!("signal handling: {e}"))
                    })?)
                };
            let running = container::run::run(&root, &r.container_id, &spec, &opts)?;
            match forwarder {
                Some(f) => wait_foreground(running, f, !r.keep),
                None => Ok(0),
            }
        }
        CommonCmd::Exec(x) => {
            let root = root(root_path)?;
            let c = Container::load(&root, &x.container_id)?;
            let process = match &x.process {
                Some(p) => {
                    let text = std::fs::read_to_string(p).map_err(|e| spec::SpecError::Read {
                        path: p.clone(),
                        source: e,
                    })?;
                    serde_json::from_str(&text).map_err(|e| spec::SpecError::Parse {
                        path: p.clone(),
                        message: e.to_string(),
                    })?
                }
                None => {
                    if x.command.is_empty() {
                        return Err(
                            spec::SpecError::Invalid("exec: no command given".into()).into()
                        );
                    }
                    let env: Vec<String> = x.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
                    let cwd = x.cwd.as_ref().map(|p| p.to_string_lossy().into_owned());
                    let mut p = container::exec::process_for(
                        &c,
                        x.command.clone(),
                        &env,
                        cwd.as_deref(),
                        x.tty,
                    )?;
                    if let Some((uid, gid)) = x.user {
                        let mut u = p.user().clone();
                        u.set_uid(uid);
                        u.set_gid(gid.unwrap_or(uid));
                        if !x.additional_gids.is_empty() {
                            u.set_additional_gids(Some(x.additional_gids.clone()));
                        }
                        p.set_user(u);
                    }
                    if x.no_new_privs {
                        p.set_no_new_privileges(Some(true));
                    }
                    p
                }
            };
            let fwd =
                if x.detach {
                    None
                } else {
                    Some(SignalForwarder::install().map_err(|e| {
                        container::StateError::Other(format!("signal handling: {e}"))
                    })?)
                };
            let lopts = rootbox_core::launch::LaunchOptions {
                preserve_fds: preserve(x.preserve_fds),
                kill_on_parent_death: !x.detach,
                ..Default::default()
            };
            let mut launched = container::exec::exec(&root, &x.container_id, &process, &lopts)?;
            if let Some(pf) = &x.pid_file {
                container::state::write_atomic(pf, launched.pid.to_string().as_bytes())?;
            }
            if let (Some(sock), Some(master)) = (&x.console_socket, launched.pty_master.take()) {
                container::create::send_console(sock, master.as_raw_fd())?;
            }
            if x.detach {
                return Ok(0);
            }
            let pid = launched.pid;
            let pty = launched.pty_master.take();
            let raw = pty.as_ref().and_then(|_| rootbox_cli::RawMode::enable(0));
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
        CommonCmd::List(l) => {
            let root = root(root_path)?;
            let all = container::list(&root)?;
            if l.quiet {
                for c in &all {
                    println!("{}", c.id());
                }
            } else if l.format == "json" {
                let items: Vec<serde_json::Value> = all
                    .iter()
                    .map(|c| {
                        let st = c.oci_state();
                        serde_json::json!({
                            "ociVersion": st.oci_version, "id": st.id, "pid": st.pid.unwrap_or(0),
                            "status": st.status, "bundle": st.bundle, "rootfs": c.record.rootfs,
                            "created": c.record.created, "owner": "",
                        })
                    })
                    .collect();
                println!("{}", to_json(&items));
            } else {
                println!(
                    "{:<24} {:<8} {:<10} {:<40} CREATED",
                    "ID", "PID", "STATUS", "BUNDLE"
                );
                for c in &all {
                    let st = c.oci_state();
                    println!(
                        "{:<24} {:<8} {:<10} {:<40} {}",
                        st.id,
                        st.pid.unwrap_or(0),
                        st.status,
                        st.bundle.display(),
                        c.record.created
                    );
                }
            }
            Ok(0)
        }
        CommonCmd::Ps(p) => {
            let c = Container::load(&root(root_path)?, &p.container_id)?;
            let pids = c.pids();
            if p.format == "json" {
                println!("{}", serde_json::to_string(&pids).unwrap_or_default());
            } else {
                println!("{:<8} CMD", "PID");
                for pid in pids {
                    let cmd = std::fs::read(format!("/proc/{pid}/cmdline"))
                        .map(|b| {
                            String::from_utf8_lossy(&b)
                                .replace('\0', " ")
                                .trim()
                                .to_string()
                        })
                        .unwrap_or_default();
                    println!("{pid:<8} {cmd}");
                }
            }
            Ok(0)
        }
        CommonCmd::Spec(s) => {
            let dir = s.bundle.unwrap_or_else(|| PathBuf::from("."));
            let path = dir.join("config.json");
            if path.exists() {
                return Err(spec::SpecError::Invalid(format!(
                    "{} exists: remove it first",
                    path.display()
                ))
                .into());
            }
            let spec = spec::template(s.rootless)?;
            std::fs::write(&path, to_json(&spec)).map_err(|e| spec::SpecError::Read {
                path: path.clone(),
                source: e,
            })?;
            Ok(0)
        }
        CommonCmd::Features(_) => {
            println!("{}", to_json(&features()));
            Ok(0)
        }
        CommonCmd::Pause(p) => {
            container::pause::pause(&root(root_path)?, &p.container_id)?;
            Ok(0)
        }
        CommonCmd::Resume(p) => {
            container::pause::resume(&root(root_path)?, &p.container_id)?;
            Ok(0)
        }
        CommonCmd::Update(u) => {
            let resources = update_resources(&u)?;
            container::update::update(&root(root_path)?, &u.container_id, &resources)?;
            Ok(0)
        }
        CommonCmd::Events(e) => events(&root(root_path)?, &e),
        CommonCmd::Checkpointt(c) => Err(container::StateError::Other(format!(
            "checkpoint of {:?}: checkpoint/restore is not supported by rootbox",
            c.container_id
        ))
        .into()),
    }
}

/// The resources of `update`: `-r FILE` (`-` for stdin) or the flags.
fn update_resources(u: &liboci_cli::Update) -> Result<LinuxResources, Error> {
    if let Some(path) = &u.resources {
        let text = if path.as_os_str() == "-" {
            let mut t = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut t).map_err(|e| {
                spec::SpecError::Read {
                    path: path.clone(),
                    source: e,
                }
            })?;
            t
        } else {
            std::fs::read_to_string(path).map_err(|e| spec::SpecError::Read {
                path: path.clone(),
                source: e,
            })?
        };
        return Ok(
            serde_json::from_str(&text).map_err(|e| spec::SpecError::Parse {
                path: path.clone(),
                message: e.to_string(),
            })?,
        );
    }
    let mut r = serde_json::Map::new();
    let mut memory = serde_json::Map::new();
    if let Some(m) = u.memory {
        memory.insert("limit".into(), m.into());
    }
    if let Some(m) = u.memory_reservation {
        memory.insert("reservation".into(), m.into());
    }
    if let Some(m) = u.memory_swap {
        memory.insert("swap".into(), m.into());
    }
    if !memory.is_empty() {
        r.insert("memory".into(), memory.into());
    }
    let mut cpu = serde_json::Map::new();
    if let Some(v) = u.cpu_share {
        cpu.insert("shares".into(), v.into());
    }
    if let Some(v) = u.cpu_quota {
        cpu.insert("quota".into(), v.into());
    }
    if let Some(v) = u.cpu_period {
        cpu.insert("period".into(), v.into());
    }
    if let Some(v) = &u.cpuset_cpus {
        cpu.insert("cpus".into(), v.clone().into());
    }
    if let Some(v) = &u.cpuset_mems {
        cpu.insert("mems".into(), v.clone().into());
    }
    if u.cpu_rt_period.is_some() || u.cpu_rt_runtime.is_some() {
        return Err(rootbox_core::cgroup::CgroupError::Invalid(
            "--cpu-rt-period/--cpu-rt-runtime: realtime CPU limits do not exist in cgroup v2"
                .into(),
        )
        .into());
    }
    if u.l3_cache_schema.is_some() || u.mem_bw_schema.is_some() {
        return Err(rootbox_core::cgroup::CgroupError::Invalid(
            "--l3-cache-schema/--mem-bw-schema: Intel RDT is not supported".into(),
        )
        .into());
    }
    if !cpu.is_empty() {
        r.insert("cpu".into(), cpu.into());
    }
    if let Some(p) = u.pids_limit {
        r.insert("pids".into(), serde_json::json!({ "limit": p }));
    }
    if let Some(w) = u.blkio_weight {
        r.insert("blockIO".into(), serde_json::json!({ "weight": w }));
    }
    if r.is_empty() {
        return Err(spec::SpecError::Invalid(
            "update: no new limit given (use -r FILE or flags such as --memory 64m)".into(),
        )
        .into());
    }
    Ok(serde_json::from_value(serde_json::Value::Object(r))
        .map_err(|e| spec::SpecError::Invalid(format!("update: {e}")))?)
}

/// `events`: `--stats` prints one stats event; otherwise a stats event every `--interval`
/// seconds and an `oom` event whenever the OOM killer strikes, until the container stops.
fn events(root: &StateRoot, e: &liboci_cli::Events) -> Result<i32, Error> {
    let c = Container::load(root, &e.container_id)?;
    let cg = c.require_cgroup("events")?;
    let stats = rootbox_core::cgroup::Stats::read(&cg);
    if e.stats {
        println!("{}", stats.to_runc_event(c.id()));
        return Ok(0);
    }
    let interval = std::time::Duration::from_secs(u64::from(e.interval.max(1)));
    let mut ooms = stats.oom_kills;
    let mut next = std::time::Instant::now();
    let mut out = std::io::stdout();
    while cg.exists() && c.status() != container::Status::Stopped {
        let now = rootbox_core::cgroup::Stats::read(&cg);
        if now.oom_kills > ooms {
            ooms = now.oom_kills;
            let _ = writeln!(out, "{}", serde_json::json!({"type": "oom", "id": c.id()}));
        }
        if std::time::Instant::now() >= next {
            let _ = writeln!(out, "{}", now.to_runc_event(c.id()));
            next += interval;
        }
        let _ = out.flush();
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    Ok(0)
}

/// The OCI `features` document: what this runtime supports.
fn features() -> serde_json::Value {
    let seccomp_actions = [
        "SCMP_ACT_ALLOW",
        "SCMP_ACT_ERRNO",
        "SCMP_ACT_KILL",
        "SCMP_ACT_KILL_PROCESS",
        "SCMP_ACT_KILL_THREAD",
        "SCMP_ACT_LOG",
        "SCMP_ACT_TRAP",
        "SCMP_ACT_TRACE",
    ];
    serde_json::json!({
        "ociVersionMin": "1.0.0",
        "ociVersionMax": "1.2.0",
        "hooks": ["createRuntime", "createContainer", "startContainer", "poststart", "poststop"],
        "mountOptions": ["ro", "rw", "nosuid", "nodev", "noexec", "bind", "rbind", "noatime",
                         "strictatime", "nodiratime", "relatime", "private", "rprivate", "slave",
                         "rslave", "shared", "rshared"],
        "linux": {
            "namespaces": ["cgroup", "ipc", "mount", "network", "pid", "user", "uts", "time"],
            "capabilities": rootbox_core::spec::caps::ALL_CAPS.to_vec(),
            "cgroup": {"v1": false, "v2": true, "systemd": false, "systemdUser": true},
            "seccomp": {"enabled": true, "actions": seccomp_actions,
                        "operators": ["SCMP_CMP_NE", "SCMP_CMP_LT", "SCMP_CMP_LE", "SCMP_CMP_EQ",
                                      "SCMP_CMP_GE", "SCMP_CMP_GT", "SCMP_CMP_MASKED_EQ"],
                        "archs": ["SCMP_ARCH_X86_64"]},
            "apparmor": {"enabled": false},
            "selinux": {"enabled": false},
            "intelRdt": {"enabled": false}
        },
        "annotations": {"io.rootbox.version": rootbox_core::VERSION}
    })
}

//! The user-mode network helpers, `pasta` (package passt) and `slirp4netns`: started as child
//! processes attached to a container's network namespace by pid, waited for until the
//! namespace's interface is configured, stopped with the container.
//!
//! Fork-safety: helpers are spawned with `std::process::Command`; the only code run between
//! fork and exec is `pre_exec`'s raw system calls (prctl, dup2, fcntl).

use std::io::{Read, Write};
use std::net::IpAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::ports::PortMapping;
use super::{HelperKind, NetworkError};
use crate::container::state::process_start_time;

/// How long a helper may take to configure the namespace.
const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// The DNS forwarder address pasta answers on when the host's resolver is on loopback.
pub const PASTA_DNS_FORWARD: &str = "169.254.1.1";
/// slirp4netns's built-in DNS forwarder and gateway (its fixed 10.0.2.0/24 network).
pub const SLIRP_DNS: &str = "10.0.2.3";

/// A running helper process, as recorded in the container's (or network's) state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HelperProc {
    pub kind: HelperKind,
    pub pid: i32,
    /// Start time of `pid`, so a reused pid is never signalled.
    pub start_time: Option<u64>,
    /// slirp4netns's API socket (port forwards are added through it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_socket: Option<PathBuf>,
    /// Where the helper's messages go.
    pub log: PathBuf,
}

impl HelperProc {
    pub fn is_alive(&self) -> bool {
        self.start_time.is_some() && process_start_time(self.pid) == self.start_time
    }

    /// Stops the helper (SIGKILL: it keeps no state worth a clean exit, and the container is
    /// gone) and waits until it is; reaps it when it is our child. Harmless when already gone.
    pub fn stop(&self) {
        if self.is_alive() {
            // SAFETY: signalling a process verified (pid + start time) to be our helper.
            unsafe { libc::kill(self.pid, libc::SIGKILL) };
            let deadline = Instant::now() + Duration::from_secs(2);
            while self.is_alive() && Instant::now() < deadline {
                reap(self.pid);
                std::thread::sleep(Duration::from_micros(500));
            }
        }
        reap(self.pid);
    }
}

/// Reaps `pid` if it is an exited child of ours (no-op otherwise).
fn reap(pid: i32) {
    // SAFETY: non-blocking waitpid on one pid.
    unsafe { libc::waitpid(pid, std::ptr::null_mut(), libc::WNOHANG) };
}

fn is_root() -> bool {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// The helper's own messages, without pasta's complaints about a missing syslog.
fn read_log(path: &Path) -> String {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.contains("to syslog") && !l.trim().is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}

/// How a helper is started.
pub struct Start<'a> {
    pub kind: HelperKind,
    pub program: &'a Path,
    /// The process whose network (and user) namespace to attach to.
    pub target_pid: i32,
    pub ports: &'a [PortMapping],
    /// Directory for the pid file, log and API socket.
    pub dir: &'a Path,
    /// Kill the helper when the calling thread exits (foreground runs).
    pub die_with_parent: bool,
    /// The container's DNS servers need pasta's forwarder.
    pub dns_forward: bool,
}

fn pipe() -> Result<(OwnedFd, OwnedFd), NetworkError> {
    let mut fds = [0; 2];
    // SAFETY: valid out-array of two ints.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } < 0 {
        return Err(NetworkError::Helper {
            helper: "pipe".into(),
            message: std::io::Error::last_os_error().to_string(),
        });
    }
    // SAFETY: fresh fds we own.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Makes `src` available as `dst` in the exec'd program (between fork and exec: syscalls only).
fn pass_fd(src: RawFd, dst: RawFd) -> std::io::Result<()> {
    // SAFETY: dup2/fcntl on descriptors we own.
    let r = unsafe {
        if src == dst {
            libc::fcntl(src, libc::F_SETFD, 0)
        } else {
            libc::dup2(src, dst)
        }
    };
    if r < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Starts the helper and returns once the namespace's interface is configured (and, for
/// slirp4netns, the ports are forwarded).
pub fn start(s: &Start<'_>) -> Result<HelperProc, NetworkError> {
    match s.kind {
        HelperKind::Pasta => start_pasta(s),
        HelperKind::Slirp4netns => start_slirp(s),
    }
}

fn base_command(s: &Start<'_>, log: &Path) -> Result<Command, NetworkError> {
    let logf = std::fs::File::create(log).map_err(|e| NetworkError::io("creating", log, e))?;
    let mut cmd = Command::new(s.program);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(logf)
        .current_dir(s.dir)
        // Its own process group: a ^C at the terminal goes to the container (forwarded),
        // not straight to the helper.
        .process_group(0);
    if s.die_with_parent {
        // SAFETY: only a system call runs between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM, 0, 0, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    Ok(cmd)
}

fn helper_failed(s: &Start<'_>, log: &Path, what: String) -> NetworkError {
    let msg = read_log(log);
    NetworkError::Helper {
        helper: s.kind.to_string(),
        message: if msg.is_empty() {
            what
        } else {
            format!("{what}: {msg}")
        },
    }
}

fn start_pasta(s: &Start<'_>) -> Result<HelperProc, NetworkError> {
    let pid_file = s.dir.join("pasta.pid");
    let log = s.dir.join("pasta.log");
    let _ = std::fs::remove_file(&pid_file);
    let mut cmd = base_command(s, &log)?;
    cmd.args(["--config-net", "--foreground", "--quiet"])
        .arg("--pid")
        .arg(&pid_file)
        // No forwarding of the host's loopback ports into the container, and the gateway is
        // not the host: like slirp4netns --disable-host-loopback.
        .args(["-T", "none", "-U", "none", "--no-map-gw"]);
    let tcp: Vec<String> = pasta_ports(s.ports, super::Proto::Tcp);
    let udp: Vec<String> = pasta_ports(s.ports, super::Proto::Udp);
    cmd.arg("-t").arg(if tcp.is_empty() {
        "none".to_string()
    } else {
        tcp.join(",")
    });
    cmd.arg("-u").arg(if udp.is_empty() {
        "none".to_string()
    } else {
        udp.join(",")
    });
    if s.dns_forward {
        cmd.args(["--dns-forward", PASTA_DNS_FORWARD]);
    }
    let ns = format!("/proc/{}/ns", s.target_pid);
    if is_root() {
        // As root pasta would drop to "nobody", which may not open the namespace.
        cmd.args(["--runas", "0:0", "--netns"])
            .arg(format!("{ns}/net"));
    } else {
        cmd.arg("--userns")
            .arg(format!("{ns}/user"))
            .arg("--netns")
            .arg(format!("{ns}/net"));
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| helper_failed(s, &log, format!("cannot run {}: {e}", s.program.display())))?;
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        if let Ok(Some(st)) = child.try_wait() {
            return Err(helper_failed(s, &log, format!("exited ({st})")));
        }
        // pasta writes its pid file once the interface is configured and the ports are bound.
        if std::fs::read_to_string(&pid_file).is_ok_and(|t| !t.trim().is_empty()) {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(helper_failed(
                s,
                &log,
                "timed out setting up the network".into(),
            ));
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let pid = child.id() as i32;
    Ok(HelperProc {
        kind: HelperKind::Pasta,
        pid,
        start_time: process_start_time(pid),
        api_socket: None,
        log,
    })
}

fn pasta_ports(ports: &[PortMapping], proto: super::Proto) -> Vec<String> {
    ports
        .iter()
        .filter(|p| p.proto == proto)
        .map(|p| format!("{}/{}:{}", p.host_ip, p.host_port, p.container_port))
        .collect()
}

/// slirp4netns's API socket name, relative to its directory (socket paths are limited to
/// 108 bytes; the directory is reached through /proc/self/fd when connecting).
const SLIRP_SOCKET: &str = "slirp4netns.sock";

fn start_slirp(s: &Start<'_>) -> Result<HelperProc, NetworkError> {
    let log = s.dir.join("slirp4netns.log");
    let _ = std::fs::remove_file(s.dir.join(SLIRP_SOCKET));
    let (ready_r, ready_w) = pipe()?;
    let mut cmd = base_command(s, &log)?;
    let ready_fd = ready_w.as_raw_fd();
    // SAFETY: only system calls run between fork and exec.
    unsafe {
        cmd.pre_exec(move || pass_fd(ready_fd, 3));
    }
    cmd.args([
        "--configure",
        "--mtu=65520",
        "--disable-host-loopback",
        "--ready-fd=3",
        "--api-socket",
        SLIRP_SOCKET,
    ])
    .arg(format!("--userns-path=/proc/{}/ns/user", s.target_pid))
    .arg(s.target_pid.to_string())
    .arg("tap0");
    let mut child = cmd
        .spawn()
        .map_err(|e| helper_failed(s, &log, format!("cannot run {}: {e}", s.program.display())))?;
    drop(ready_w);
    // --ready-fd: one byte once the interface is configured; EOF if it exits first.
    let mut f = std::fs::File::from(ready_r);
    let mut buf = [0u8; 1];
    let ready = f.read(&mut buf).map(|n| n == 1).unwrap_or(false);
    if !ready {
        let _ = child.kill();
        let _ = child.wait();
        return Err(helper_failed(
            s,
            &log,
            "exited before the network was ready".into(),
        ));
    }
    let pid = child.id() as i32;
    let proc = HelperProc {
        kind: HelperKind::Slirp4netns,
        pid,
        start_time: process_start_time(pid),
        api_socket: Some(s.dir.join(SLIRP_SOCKET)),
        log,
    };
    for p in s.ports {
        if let Err(e) = slirp_add_forward(&proc, p) {
            proc.stop();
            return Err(e);
        }
    }
    Ok(proc)
}

/// One request to slirp4netns's API; returns the reply.
fn slirp_request(
    proc: &HelperProc,
    req: &serde_json::Value,
) -> Result<serde_json::Value, NetworkError> {
    let sock = proc
        .api_socket
        .as_ref()
        .ok_or_else(|| NetworkError::Helper {
            helper: proc.kind.to_string(),
            message: "no API socket".into(),
        })?;
    let fail = |m: String| NetworkError::Helper {
        helper: "slirp4netns".into(),
        message: format!("API {}: {m}", sock.display()),
    };
    let dir = sock.parent().unwrap_or(Path::new("/"));
    let dirf = std::fs::File::open(dir).map_err(|e| fail(e.to_string()))?;
    let name = sock
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let path = format!("/proc/self/fd/{}/{}", dirf.as_raw_fd(), name);
    let mut s = UnixStream::connect(&path).map_err(|e| fail(e.to_string()))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| fail(e.to_string()))?;
    s.write_all(req.to_string().as_bytes())
        .map_err(|e| fail(e.to_string()))?;
    s.shutdown(std::net::Shutdown::Write)
        .map_err(|e| fail(e.to_string()))?;
    let mut out = String::new();
    s.read_to_string(&mut out)
        .map_err(|e| fail(e.to_string()))?;
    serde_json::from_str(&out).map_err(|e| fail(format!("bad reply {out:?}: {e}")))
}

/// Publishes one port through slirp4netns; returns its forward id.
pub fn slirp_add_forward(proc: &HelperProc, p: &PortMapping) -> Result<u64, NetworkError> {
    let host_addr = match p.host_ip {
        IpAddr::V4(a) => a.to_string(),
        IpAddr::V6(_) => {
            return Err(NetworkError::BadPort {
                spec: p.to_string(),
                why: "slirp4netns publishes ports on IPv4 addresses only".into(),
            })
        }
    };
    let reply = slirp_request(
        proc,
        &serde_json::json!({"execute": "add_hostfwd", "arguments": {
            "proto": p.proto.to_string(), "host_addr": host_addr,
            "host_port": p.host_port, "guest_port": p.container_port}}),
    )?;
    if let Some(id) = reply.pointer("/return/id").and_then(|v| v.as_u64()) {
        return Ok(id);
    }
    let desc = reply
        .pointer("/error/desc")
        .and_then(|v| v.as_str())
        .unwrap_or("unknown error");
    Err(NetworkError::Helper {
        helper: "slirp4netns".into(),
        message: format!(
            "publishing {}:{}/{}: {desc} (is the port in use?)",
            p.host_ip, p.host_port, p.proto
        ),
    })
}

/// Removes a forward added by [`slirp_add_forward`].
pub fn slirp_remove_forward(proc: &HelperProc, id: u64) -> Result<(), NetworkError> {
    slirp_request(
        proc,
        &serde_json::json!({"execute": "remove_hostfwd", "arguments": {"id": id}}),
    )
    .map(|_| ())
}

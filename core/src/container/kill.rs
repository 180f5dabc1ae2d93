//! `kill`: send a signal to a container's first process (or, with `all`, to every process).

use super::state::{StateRoot, Status};
use super::{Container, ContainerError, StateError};

/// A signal given as `KILL`, `SIGKILL` or `9`.
pub fn parse_signal(s: &str) -> Result<i32, StateError> {
    if let Ok(n) = s.parse::<i32>() {
        if (1..=64).contains(&n) {
            return Ok(n);
        }
    }
    let name = s.trim_start_matches("SIG").to_ascii_uppercase();
    let n = match name.as_str() {
        "HUP" => libc::SIGHUP,
        "INT" => libc::SIGINT,
        "QUIT" => libc::SIGQUIT,
        "ILL" => libc::SIGILL,
        "TRAP" => libc::SIGTRAP,
        "ABRT" | "IOT" => libc::SIGABRT,
        "BUS" => libc::SIGBUS,
        "FPE" => libc::SIGFPE,
        "KILL" => libc::SIGKILL,
        "USR1" => libc::SIGUSR1,
        "SEGV" => libc::SIGSEGV,
        "USR2" => libc::SIGUSR2,
        "PIPE" => libc::SIGPIPE,
        "ALRM" => libc::SIGALRM,
        "TERM" => libc::SIGTERM,
        "STKFLT" => libc::SIGSTKFLT,
        "CHLD" | "CLD" => libc::SIGCHLD,
        "CONT" => libc::SIGCONT,
        "STOP" => libc::SIGSTOP,
        "TSTP" => libc::SIGTSTP,
        "TTIN" => libc::SIGTTIN,
        "TTOU" => libc::SIGTTOU,
        "URG" => libc::SIGURG,
        "XCPU" => libc::SIGXCPU,
        "XFSZ" => libc::SIGXFSZ,
        "VTALRM" => libc::SIGVTALRM,
        "PROF" => libc::SIGPROF,
        "WINCH" => libc::SIGWINCH,
        "IO" | "POLL" => libc::SIGIO,
        "PWR" => libc::SIGPWR,
        "SYS" => libc::SIGSYS,
        _ => return Err(StateError::Other(format!("unknown signal {s:?}"))),
    };
    Ok(n)
}

pub fn kill(root: &StateRoot, id: &str, signal: i32, all: bool) -> Result<(), ContainerError> {
    let c = Container::load(root, id)?;
    let status = c.status();
    if !matches!(status, Status::Created | Status::Running | Status::Paused) {
        return Err(StateError::WrongStatus {
            id: id.into(),
            status,
            action: "kill",
            wanted: "created or running",
        }
        .into());
    }
    if all {
        if let Some(cg) = c.cgroup().filter(|cg| cg.exists()) {
            // The cgroup holds every process, forked children included, whatever their pid
            // namespace.
            if signal == libc::SIGKILL {
                cg.kill()?;
            } else {
                cg.signal_all(signal)?;
            }
            return Ok(());
        }
    }
    let targets = if all {
        c.pids()
    } else {
        c.record.pid.into_iter().collect()
    };
    for pid in targets {
        // SAFETY: kill with a pid checked alive (same start time) just above.
        if unsafe { libc::kill(pid, signal) } < 0 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::ESRCH) {
                return Err(
                    StateError::Other(format!("signal {signal} to process {pid}: {e}")).into(),
                );
            }
        }
    }
    Ok(())
}

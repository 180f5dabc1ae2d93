//! `exec`: run another process inside a running container.

use oci_spec::runtime::Process;

use super::state::{StateRoot, Status};
use super::{Container, ContainerError, StateError};
use std::os::fd::AsRawFd;

use crate::launch::{self, CgroupEntry, LaunchOptions, Launched};

pub fn exec(
    root: &StateRoot,
    id: &str,
    process: &Process,
    opts: &LaunchOptions<'_>,
) -> Result<Launched, ContainerError> {
    let c = Container::load(root, id)?;
    let status = c.status();
    let pid = match (status, c.record.pid) {
        (Status::Running, Some(pid)) => pid,
        _ => {
            return Err(StateError::WrongStatus {
                id: id.into(),
                status,
                action: "exec",
                wanted: "running",
            }
            .into())
        }
    };
    let spec = c.spec()?;
    // The new process joins the container's cgroup (its limits count it), entered at clone.
    let cg = c.cgroup().filter(|cg| cg.exists());
    let dir = cg.as_ref().map(|cg| cg.open_dir()).transpose()?;
    let lopts = LaunchOptions {
        stdio: opts.stdio,
        preserve_fds: opts.preserve_fds,
        kill_on_parent_death: opts.kill_on_parent_death,
        no_pivot: opts.no_pivot,
        cgroup: match (&cg, &dir) {
            (Some(cg), Some(dir)) => Some(CgroupEntry {
                dir_fd: Some(dir.as_raw_fd()),
                path: &cg.path,
            }),
            _ => opts.cgroup,
        },
        ..LaunchOptions::default()
    };
    let mut launched = launch::exec_into(pid, process, &spec, &lopts)?;
    launched.wait_exec()?;
    Ok(launched)
}

/// The process for an exec: the container's own (user, capabilities, env, no_new_privs) with
/// the given command, extra env, cwd and terminal.
pub fn process_for(
    container: &Container,
    args: Vec<String>,
    env: &[String],
    cwd: Option<&str>,
    tty: bool,
) -> Result<Process, ContainerError> {
    let spec = container.spec()?;
    let mut p = spec.process().clone().unwrap_or_default();
    p.set_args(Some(args));
    let mut all = p.env().clone().unwrap_or_default();
    for e in env {
        let key = e.split('=').next().unwrap_or("");
        all.retain(|x| x.split('=').next() != Some(key));
        all.push(e.clone());
    }
    p.set_env(Some(all));
    if let Some(cwd) = cwd {
        p.set_cwd(cwd.into());
    }
    p.set_terminal(Some(tty));
    p.set_console_size(None);
    Ok(p)
}

/// Gives an exec's terminal its initial window size (set on the pty before the command runs,
/// so it never sees a 0x0 terminal).
pub fn set_console_size(p: &mut Process, rows: u16, cols: u16) {
    let size = oci_spec::runtime::BoxBuilder::default()
        .height(u64::from(rows))
        .width(u64::from(cols))
        .build();
    if let Ok(size) = size {
        p.set_console_size(Some(size));
    }
}

/// Runs `process` in the running container `id` to its end, with stdin from /dev/null and
/// its stdout and stderr captured (the library's exec: C's `rootbox_container_exec`). Never
/// tied to the calling thread's life.
pub fn exec_captured(
    root: &StateRoot,
    id: &str,
    process: &Process,
) -> Result<super::request::Captured, crate::Error> {
    let null =
        std::fs::File::open("/dev/null").map_err(|e| StateError::io("/dev/null".as_ref(), e))?;
    let (out_r, out_w) = super::request::pipe()?;
    let (err_r, err_w) = super::request::pipe()?;
    let opts = LaunchOptions {
        stdio: Some([null.as_raw_fd(), out_w.as_raw_fd(), err_w.as_raw_fd()]),
        ..LaunchOptions::default()
    };
    let launched = exec(root, id, process, &opts)?;
    // Only the process holds the write ends now: EOF comes when it (and its children) are gone.
    drop((null, out_w, err_w));
    let err_thread = std::thread::spawn(move || super::request::read_all(err_r));
    let stdout = super::request::read_all(out_r);
    let stderr = err_thread.join().unwrap_or_default();
    let code = launch::wait_pid(launched.pid)?;
    Ok(super::request::Captured {
        exit: super::run::Exit {
            code,
            oom_killed: false,
        },
        stdout,
        stderr,
    })
}

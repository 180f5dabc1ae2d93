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

//! `run`: create and start in one step, in the foreground (or detached).

use std::os::fd::OwnedFd;

use oci_spec::runtime::Spec;

use super::create::{apply_setup, discard, launch_recorded, register, remove_dir, CreateOptions};
use super::hooks::{self, HookPoint};
use super::state::{StateRoot, Status};
use super::{Container, ContainerError};
use crate::launch::{self, Launched};

/// A container whose command is running, launched by this process.
#[derive(Debug)]
pub struct Running {
    pub container: Container,
    launched: Launched,
    spec: Spec,
}

impl Running {
    pub fn pid(&self) -> i32 {
        self.launched.pid
    }

    /// The pty master, when the process has a terminal (taken once).
    pub fn take_pty(&mut self) -> Option<OwnedFd> {
        self.launched.pty_master.take()
    }

    /// Waits for the command to exit and returns its exit code (128+signal when killed).
    /// With `remove`, the container's state is deleted afterwards (poststop hooks run).
    pub fn wait(self, remove: bool) -> Result<i32, ContainerError> {
        Ok(self.wait_exit(remove)?.code)
    }

    /// [`Running::wait`], also telling whether the OOM killer struck.
    pub fn wait_exit(mut self, remove: bool) -> Result<Exit, ContainerError> {
        let code = launch::wait_pid(self.launched.pid)?;
        if let Some(a) = &self.container.record.network {
            crate::network::release(a);
        }
        self.container.record.lifecycle.ports.clear();
        self.container.record.status = Status::Stopped;
        self.container.record.exit_code = Some(code);
        let cg = self.container.cgroup();
        if let Some(cg) = &cg {
            self.container.record.oom_killed = cg.oom_kills() > 0;
        }
        let exit = Exit {
            code,
            oom_killed: self.container.record.oom_killed,
        };
        let st = self.container.oci_state();
        if remove {
            if let Some(cg) = &cg {
                // Whatever outlived the first process (no pid namespace) goes with it.
                let _ = cg.kill();
                if let Err(e) = cg.remove() {
                    eprintln!("rootbox: warning: {e}");
                }
            }
            remove_dir(&self.container);
            if let Err(e) = hooks::run(&self.spec, HookPoint::Poststop, &st) {
                eprintln!("rootbox: warning: {e}");
            }
        } else {
            self.container.save()?;
        }
        Ok(exit)
    }
}

/// How a container's command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exit {
    /// Exit code, 128+signal when killed (137 for an OOM kill).
    pub code: i32,
    /// The OOM killer killed a process of the container.
    pub oom_killed: bool,
}

/// Creates and starts a container; returns once its command has exec'd.
pub fn run(
    root: &StateRoot,
    id: &str,
    spec: &Spec,
    opts: &CreateOptions,
) -> Result<Running, ContainerError> {
    let mut c = register(root, id, spec, &opts.bundle)?;
    c.record.name = opts.name.clone();
    let result = (|| {
        let spec = apply_setup(&c, spec, opts)?;
        let launched = start_registered(&mut c, &spec, opts)?;
        Ok((launched, spec))
    })();
    match result {
        Ok((launched, spec)) => Ok(Running {
            container: c,
            launched,
            spec,
        }),
        Err(e) => {
            discard(&c);
            Err(e)
        }
    }
}

/// Launches the process of a registered container and lets it exec right away (startContainer
/// and poststart hooks around it); returns once it has exec'd. `run`, and the monitor of a
/// detached container, start containers this way.
pub(crate) fn start_registered(
    c: &mut Container,
    spec: &Spec,
    opts: &CreateOptions,
) -> Result<Launched, ContainerError> {
    let mut launched = launch_recorded(c, spec, opts, None)?;
    let st = c.oci_state();
    hooks::run(spec, HookPoint::StartContainer, &st)?;
    launched.wait_exec()?;
    c.record.status = Status::Running;
    c.record.lifecycle.started_at = Some(super::state::now_rfc3339());
    c.save()?;
    let st = c.oci_state();
    if let Err(e) = hooks::run(spec, HookPoint::Poststart, &st) {
        eprintln!("rootbox: warning: {e}");
    }
    Ok(launched)
}

//! `run`: create and start in one step, in the foreground (or detached).

use std::os::fd::OwnedFd;

use oci_spec::runtime::Spec;

use super::create::{apply_setup, launch_recorded, register, remove_dir, CreateOptions};
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
    pub fn wait(mut self, remove: bool) -> Result<i32, ContainerError> {
        let code = launch::wait_pid(self.launched.pid)?;
        self.container.record.status = Status::Stopped;
        self.container.record.exit_code = Some(code);
        let st = self.container.oci_state();
        if remove {
            remove_dir(&self.container);
            if let Err(e) = hooks::run(&self.spec, HookPoint::Poststop, &st) {
                eprintln!("rootbox: warning: {e}");
            }
        } else {
            self.container.save()?;
        }
        Ok(code)
    }
}

/// Creates and starts a container; returns once its command has exec'd.
pub fn run(
    root: &StateRoot,
    id: &str,
    spec: &Spec,
    opts: &CreateOptions,
) -> Result<Running, ContainerError> {
    let mut c = register(root, id, spec, &opts.bundle)?;
    let result = (|| {
        let spec = apply_setup(&c, spec, opts)?;
        let spec = &spec;
        let mut launched = launch_recorded(&mut c, spec, opts, None)?;
        let st = c.oci_state();
        hooks::run(spec, HookPoint::StartContainer, &st)?;
        launched.wait_exec()?;
        c.record.status = Status::Running;
        c.save()?;
        let st = c.oci_state();
        if let Err(e) = hooks::run(spec, HookPoint::Poststart, &st) {
            eprintln!("rootbox: warning: {e}");
        }
        Ok((launched, spec.clone()))
    })();
    match result {
        Ok((launched, spec)) => Ok(Running {
            container: c,
            launched,
            spec,
        }),
        Err(e) => {
            remove_dir(&c);
            Err(e)
        }
    }
}

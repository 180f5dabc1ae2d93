//! `delete`: remove a stopped container (or, with `force`, kill a running one first).

use std::time::{Duration, Instant};

use super::hooks::{self, HookPoint};
use super::state::{Lock, StateRoot, Status};
use super::{Container, ContainerError, StateError};

pub fn delete(root: &StateRoot, id: &str, force: bool) -> Result<(), ContainerError> {
    let c = Container::load(root, id)?;
    let lock = Lock::acquire(&c.dir())?;
    let status = c.status();
    match status {
        Status::Stopped => {}
        // A created container never ran its command: deleting it is what `create` undoes.
        Status::Created | Status::Creating => kill_and_wait(&c)?,
        Status::Running | Status::Paused if force => kill_and_wait(&c)?,
        _ => {
            return Err(StateError::WrongStatus {
                id: id.into(),
                status,
                action: "delete",
                wanted: "stopped (or --force)",
            }
            .into())
        }
    }
    // The network helper (stopped with the container normally; still there after a crash).
    if let Some(a) = &c.record.network {
        crate::network::release(a);
    }
    if let Some(cg) = c.cgroup() {
        // Processes outside the pid namespace's reach (a config without one) die with it too.
        if cg.exists() && cg.populated() {
            cg.kill()?;
        }
        cg.remove()?;
    }
    let spec = c.spec().ok();
    let mut st = c.oci_state();
    st.status = Status::Stopped;
    drop(lock);
    crate::rootfs::setup::release(&c.dir(), true);
    std::fs::remove_dir_all(c.dir()).map_err(|e| StateError::io(&c.dir(), e))?;
    if let Some(spec) = spec {
        if let Err(e) = hooks::run(&spec, HookPoint::Poststop, &st) {
            eprintln!("rootbox: warning: {e}");
        }
    }
    Ok(())
}

/// SIGKILL to every process of the container (its whole cgroup with `cgroup.kill` when it has
/// one), then wait (bounded) until the first is gone.
pub(crate) fn kill_and_wait(c: &Container) -> Result<(), ContainerError> {
    if let Some(cg) = c.cgroup().filter(|cg| cg.exists()) {
        cg.kill()?;
    }
    let Some(pid) = c.record.pid else {
        return Ok(());
    };
    for p in c.pids() {
        // SAFETY: killing processes of this container (pids checked alive in `pids`).
        unsafe { libc::kill(p, libc::SIGKILL) };
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while c.is_alive() {
        // Reap it if it is our own child (the runtime that launched it is still here).
        // SAFETY: non-blocking waitpid on a specific pid.
        unsafe { libc::waitpid(pid, std::ptr::null_mut(), libc::WNOHANG) };
        if Instant::now() > deadline {
            return Err(StateError::Other(format!(
                "container {:?}: process {pid} did not exit after SIGKILL",
                c.id()
            ))
            .into());
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    Ok(())
}

//! `pause` / `resume`: freeze and thaw every process of a container through its cgroup's
//! `cgroup.freeze`.

use super::state::{Lock, StateRoot, Status};
use super::{Container, ContainerError, StateError};

pub fn pause(root: &StateRoot, id: &str) -> Result<(), ContainerError> {
    let mut c = Container::load(root, id)?;
    let _lock = Lock::acquire(&c.dir())?;
    let status = c.status();
    if !matches!(status, Status::Running | Status::Created) {
        return Err(StateError::WrongStatus {
            id: c.display_name(),
            status,
            action: "pause",
            wanted: "running",
        }
        .into());
    }
    let cg = c.require_cgroup("pause")?;
    cg.freeze(true)?;
    c.record.status = Status::Paused;
    c.save()?;
    Ok(())
}

pub fn resume(root: &StateRoot, id: &str) -> Result<(), ContainerError> {
    let mut c = Container::load(root, id)?;
    let _lock = Lock::acquire(&c.dir())?;
    let status = c.status();
    if status != Status::Paused {
        return Err(StateError::WrongStatus {
            id: c.display_name(),
            status,
            action: "resume",
            wanted: "paused",
        }
        .into());
    }
    let cg = c.require_cgroup("resume")?;
    cg.freeze(false)?;
    c.record.status = if c.fifo_path().exists() {
        Status::Created
    } else {
        Status::Running
    };
    c.save()?;
    Ok(())
}

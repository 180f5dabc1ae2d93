//! `start`: let a created container's process exec its command.

use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::time::{Duration, Instant};

use super::hooks::{self, HookPoint};
use super::state::{Lock, StateRoot, Status};
use super::{Container, ContainerError, StateError};

pub fn start(root: &StateRoot, id: &str) -> Result<(), ContainerError> {
    let mut c = Container::load(root, id)?;
    let _lock = Lock::acquire(&c.dir())?;
    let status = c.status();
    if status != Status::Created {
        return Err(StateError::WrongStatus {
            id: id.into(),
            status,
            action: "start",
            wanted: "created",
        }
        .into());
    }
    let spec = c.spec()?;
    let st = c.oci_state();
    hooks::run(&spec, HookPoint::StartContainer, &st)?;

    let fifo = c.fifo_path();
    // Non-blocking open: the container's process is blocked opening the other end for writing
    // and is released by this open; then wait (bounded, watching it stays alive) for its byte.
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(&fifo)
        .map_err(|e| StateError::io(&fifo, e))?;
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut byte = [0u8; 1];
    loop {
        match f.read(&mut byte) {
            Ok(1) => break,
            Ok(_) | Err(_) if !c.is_alive() => {
                return Err(
                    StateError::Other(format!("container {id:?} exited before it started")).into(),
                )
            }
            _ if Instant::now() > deadline => {
                return Err(
                    StateError::Other(format!("container {id:?} did not start within 30s")).into(),
                )
            }
            _ => std::thread::sleep(Duration::from_millis(1)),
        }
    }
    let _ = std::fs::remove_file(&fifo);
    c.record.status = Status::Running;
    c.record.lifecycle.started_at = Some(super::state::now_rfc3339());
    c.save()?;
    let st = c.oci_state();
    if let Err(e) = hooks::run(&spec, HookPoint::Poststart, &st) {
        // The runtime spec: a failing poststart hook is logged, not fatal.
        eprintln!("rootbox: warning: {e}");
    }
    Ok(())
}

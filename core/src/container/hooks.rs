//! OCI hooks: run at the points the runtime spec names, with the container state on stdin.
//! `createContainer` and `startContainer` run in the container's namespaces (joined through a
//! pidfd before exec), the others in the runtime's.

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use oci_spec::runtime::{Hook, Spec};

use super::{OciState, StateError};
use crate::sys;

/// Which hooks of the config to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HookPoint {
    CreateRuntime,
    CreateContainer,
    StartContainer,
    Poststart,
    Poststop,
}

/// The hooks of one point in a config.
pub fn hooks_at(spec: &Spec, point: HookPoint) -> Vec<Hook> {
    let Some(h) = spec.hooks() else {
        return Vec::new();
    };
    let list = match point {
        HookPoint::CreateRuntime => h.create_runtime(),
        HookPoint::CreateContainer => h.create_container(),
        HookPoint::StartContainer => h.start_container(),
        HookPoint::Poststart => h.poststart(),
        HookPoint::Poststop => h.poststop(),
    };
    list.clone().unwrap_or_default()
}

/// Whether a config has any hook to run before pivot_root.
pub fn has_create_hooks(spec: &Spec) -> bool {
    !hooks_at(spec, HookPoint::CreateRuntime).is_empty()
        || !hooks_at(spec, HookPoint::CreateContainer).is_empty()
}

/// Runs the hooks of `point` in order; the first failure stops and is returned.
pub fn run(spec: &Spec, point: HookPoint, state: &OciState) -> Result<(), StateError> {
    let in_container = matches!(
        point,
        HookPoint::CreateContainer | HookPoint::StartContainer
    );
    let json = serde_json::to_vec(state).map_err(|e| StateError::Other(e.to_string()))?;
    for hook in hooks_at(spec, point) {
        run_one(&hook, &json, if in_container { state.pid } else { None })?;
    }
    Ok(())
}

fn run_one(hook: &Hook, state: &[u8], join_pid: Option<i32>) -> Result<(), StateError> {
    let path = hook.path().clone();
    let fail = |message: String| StateError::Hook {
        path: path.clone(),
        message,
    };
    let mut cmd = Command::new(&path);
    let args = hook.args().clone().unwrap_or_default();
    if let Some((argv0, rest)) = args.split_first() {
        cmd.arg0(argv0).args(rest);
    }
    cmd.env_clear();
    for e in hook.env().iter().flatten() {
        if let Some((k, v)) = e.split_once('=') {
            cmd.env(k, v);
        }
    }
    cmd.stdin(Stdio::piped());
    if let Some(pid) = join_pid {
        let pidfd = sys::pidfd_open(pid).map_err(|e| {
            fail(format!(
                "cannot open container process {pid}: {}",
                std::io::Error::from_raw_os_error(e)
            ))
        })?;
        // SAFETY: the closure runs between fork and exec and only makes a system call.
        unsafe {
            cmd.pre_exec(move || {
                sys::setns(pidfd, libc::CLONE_NEWUSER | libc::CLONE_NEWNS)
                    .map_err(std::io::Error::from_raw_os_error)
            });
        }
        let r = spawn_and_wait(cmd, state, hook.timeout());
        sys::close(pidfd);
        return r.map_err(fail);
    }
    spawn_and_wait(cmd, state, hook.timeout()).map_err(fail)
}

fn spawn_and_wait(mut cmd: Command, state: &[u8], timeout: Option<i64>) -> Result<(), String> {
    let mut child = cmd.spawn().map_err(|e| e.to_string())?;
    if let Some(mut stdin) = child.stdin.take() {
        // A hook that does not read its stdin is fine.
        let _ = stdin.write_all(state);
    }
    let deadline = timeout
        .filter(|t| *t > 0)
        .map(|t| Instant::now() + Duration::from_secs(t as u64));
    loop {
        match child.try_wait().map_err(|e| e.to_string())? {
            Some(st) if st.success() => return Ok(()),
            Some(st) => return Err(format!("exited with {st}")),
            None => {}
        }
        if deadline.is_some_and(|d| Instant::now() > d) {
            let _ = child.kill();
            let _ = child.wait();
            return Err("timed out".into());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

//! `fuse-overlayfs`, for kernels that refuse overlayfs in a user namespace.
//!
//! Lifecycle. The launch child stops after its mount namespace is private, makes its mount
//! point a shared bind mount, and asks the parent (sync message `CHILD_FUSE`). The parent runs
//! `fuse-overlayfs` with `std::process::Command`; its `pre_exec` hook (system calls only) joins
//! the child's user, mount and pid namespaces through descriptors opened beforehand, then
//! unshares a mount namespace of its own (so the container's pivot_root cannot make the daemon's
//! root its own FUSE mount, where it would deadlock on itself). So fuse-overlayfs sees the
//! layers with the container's ownership, and its mount reaches the container's mount namespace
//! (only) through the shared bind; the child then makes it private. Its daemon (it forks once the mount is made, and the parent's wait returns then) is a process
//! of the container's pid namespace: when the container's PID 1 exits, the kernel kills it with
//! the rest of the namespace, and the mount goes with the namespace. Nothing is left to unmount
//! or kill on the host, even when the runtime itself is killed. (It shows up in the container's
//! `ps` as `fuse-overlayfs`, as podman's shows up on the host.)

use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::{Layers, RootfsError};

/// The fuse-overlayfs binary, if installed.
pub fn binary() -> Option<PathBuf> {
    crate::idmap::find_helper("fuse-overlayfs")
}

/// fuse-overlayfs is installed and /dev/fuse can be opened.
pub fn usable() -> bool {
    binary().is_some()
        && std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/fuse")
            .is_ok()
}

fn option_path(p: &Path) -> Result<String, RootfsError> {
    let s = p.to_str().ok_or_else(|| {
        RootfsError::invalid("layer path", p.display().to_string(), "is not UTF-8")
    })?;
    if s.contains([':', ',', '\\']) {
        return Err(RootfsError::invalid(
            "layer path",
            s,
            "fuse-overlayfs cannot take paths with ':', ',' or '\\'",
        ));
    }
    Ok(s.to_string())
}

/// The `-o` option string for the layers.
pub fn options(layers: &Layers) -> Result<String, RootfsError> {
    let lowers = layers
        .lower
        .iter()
        .rev()
        .map(|p| option_path(p))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(format!(
        "lowerdir={},upperdir={},workdir={},allow_other",
        lowers.join(":"),
        option_path(&layers.upper)?,
        option_path(&layers.work)?
    ))
}

/// Mounts the layers on `target` inside the namespaces of process `pid` (the launch child,
/// waiting). Returns once the mount exists there.
pub fn mount_in(pid: i32, layers: &Layers, target: &Path) -> Result<(), RootfsError> {
    let bin = binary().ok_or(RootfsError::NoFuseOverlayfs)?;
    let opts = options(layers)?;
    let open_ns = |name: &str| {
        let p = PathBuf::from(format!("/proc/{pid}/ns/{name}"));
        File::open(&p).map_err(|e| RootfsError::io(&p, e))
    };
    let user = open_ns("user")?;
    let mnt = open_ns("mnt")?;
    let same = |name: &str| {
        std::fs::read_link(format!("/proc/{pid}/ns/{name}")).ok()
            == std::fs::read_link(format!("/proc/self/ns/{name}")).ok()
    };
    let pidns = if same("pid") {
        None
    } else {
        Some(open_ns("pid")?)
    };
    let joins_user = !same("user");
    let (user_fd, mnt_fd) = (user.as_raw_fd(), mnt.as_raw_fd());
    let pid_fd = pidns.as_ref().map(|f| f.as_raw_fd());
    let mut cmd = Command::new(&bin);
    cmd.arg("-o")
        .arg(&opts)
        .arg(target.as_os_str())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .current_dir("/");
    // SAFETY: the hook runs in the forked child before exec and only makes setns system calls
    // on descriptors opened above (kept open by this function until the command returns).
    unsafe {
        cmd.pre_exec(move || {
            if joins_user && libc::setns(user_fd, libc::CLONE_NEWUSER) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            if libc::setns(mnt_fd, libc::CLONE_NEWNS) < 0 || libc::unshare(libc::CLONE_NEWNS) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            if let Some(fd) = pid_fd {
                if libc::setns(fd, libc::CLONE_NEWPID) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    let out = cmd.output().map_err(|e| RootfsError::Fuse {
        target: target.to_path_buf(),
        message: format!("cannot run {}: {e}", bin.display()),
    })?;
    drop((user, mnt, pidns));
    if !out.status.success() {
        let mut message = String::from_utf8_lossy(&out.stderr).trim().to_string();
        if message.is_empty() {
            message = format!("{} exited with {}", bin.display(), out.status);
        }
        if message.contains("/dev/fuse") {
            message.push_str(
                " (is /dev/fuse readable and writable by you? distributions ship it 0666)",
            );
        }
        return Err(RootfsError::Fuse {
            target: target.to_path_buf(),
            message,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_are_topmost_first() {
        let l: Layers = "lower=/a:/b,upper=/u,work=/w".parse().unwrap();
        assert_eq!(
            options(&l).unwrap(),
            "lowerdir=/b:/a,upperdir=/u,workdir=/w,allow_other"
        );
        let l: Layers = "lower=/a:/b\\x,upper=/u,work=/w".parse().unwrap();
        assert!(options(&l).is_err());
    }
}

//! `fuse-overlayfs`, for kernels that refuse overlayfs in a user namespace.
//!
//! Lifecycle. The launch child (the container's future PID 1, already in its user, mount and
//! pid namespaces) makes its mount point a shared bind mount, forks, and the fork unshares a
//! mount namespace of its own (so the container's pivot_root cannot make the daemon's root its
//! own FUSE mount, where it would wait on itself) and execs `fuse-overlayfs` from arguments the
//! parent prepared. fuse-overlayfs mounts (the mount reaches the container through the shared
//! bind) and daemonizes; the child waits for the foreground process, makes the mount private
//! and goes on. So fuse-overlayfs sees the layers with the container's ownership, its mount is
//! visible in the container only, and its daemon is a child of the container's PID 1: when PID 1
//! exits, the kernel kills and reaps it with the rest of the pid namespace, and the mount goes
//! with its namespace. Nothing is left to unmount or kill on the host, even when the runtime
//! itself is killed. (It shows up in the container's `ps` as `fuse-overlayfs`, as podman's
//! shows up on the host.) Its error messages go to the runtime's stderr.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

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

/// `fuse-overlayfs -o OPTIONS TARGET`, prepared in the parent for the launch child to exec
/// (pointers into the strings it owns; no allocation after the clone).
#[derive(Debug)]
pub struct FuseExec {
    pub path: CString,
    storage: Vec<CString>,
    pub argv: Vec<*const libc::c_char>,
    pub envp: [*const libc::c_char; 1],
}

impl FuseExec {
    pub fn new(layers: &Layers, target: &Path) -> Result<FuseExec, RootfsError> {
        let bin = binary().ok_or(RootfsError::NoFuseOverlayfs)?;
        let c = |b: &[u8]| {
            CString::new(b)
                .map_err(|_| RootfsError::invalid("path", String::from_utf8_lossy(b), "NUL"))
        };
        let path = c(bin.as_os_str().as_bytes())?;
        let storage = vec![
            path.clone(),
            c(b"-o")?,
            c(options(layers)?.as_bytes())?,
            c(target.as_os_str().as_bytes())?,
        ];
        let mut argv: Vec<*const libc::c_char> = storage.iter().map(|s| s.as_ptr()).collect();
        argv.push(std::ptr::null());
        Ok(FuseExec {
            path,
            storage,
            argv,
            envp: [std::ptr::null()],
        })
    }

    /// The command line, for messages.
    pub fn describe(&self) -> String {
        self.storage
            .iter()
            .map(|s| s.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ")
    }
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

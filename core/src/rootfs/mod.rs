//! The container's root filesystem beyond a plain directory: layers stacked by a union
//! filesystem (kernel overlayfs inside the container's user namespace, `fuse-overlayfs` run in
//! that namespace, or a copy), the generated `/etc` files, and volumes.
//!
//! How a layered rootfs reaches the launch: the OCI config carries the annotation
//! [`ANNOTATION_LAYERS`] (JSON of [`Layers`]) and `root.path` names the (empty) directory the
//! merged tree is mounted on. `RunOptions::rootfs_layers` writes it for `rootbox run`; an engine
//! driving `rootbox-runtime` may write it by hand. The mount itself happens in the container's
//! own user and mount namespaces, so it is never visible on the host.
//!
//! - [`overlay`]: kernel overlayfs: the mount (async-signal-safe, run by the launch child), the
//!   one-time probe whether this kernel allows it in a user namespace, and its cache.
//! - [`fuse`]: `fuse-overlayfs` started in the container's namespaces.
//! - [`vfs`]: the copy fallback, and the merged-view copy used to seed volumes.
//! - [`etc`]: `/etc/hostname`, `/etc/hosts`, `/etc/resolv.conf`.
//! - [`volume`]: named and anonymous volumes in the store, and who uses them.
//! - [`mounts`]: `-v`, `--mount` parsing.
//! - [`setup`]: what `rootbox run` prepares in the container's directory before launch.

pub mod etc;
pub mod fuse;
pub mod mounts;
pub mod overlay;
pub mod setup;
pub mod vfs;
pub mod volume;

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use oci_spec::runtime::Spec;
use serde::{Deserialize, Serialize};

pub use mounts::{MountRequest, VolumeMount, VolumeSource};
pub use setup::Setup;
pub use volume::VolumeStore;

/// Annotation holding a layered rootfs (JSON of [`Layers`]); `root.path` is its mount point.
pub const ANNOTATION_LAYERS: &str = "io.rootbox.rootfs.layers";

/// Errors of the rootfs module, each naming the path or input at fault.
#[derive(Debug, thiserror::Error)]
pub enum RootfsError {
    #[error("invalid {what} {value:?}: {why}")]
    Invalid {
        what: &'static str,
        value: String,
        why: String,
    },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("layer {path} does not exist or is not a directory")]
    NoLayer { path: PathBuf },
    #[error("fuse-overlayfs not found: install the `fuse-overlayfs` package, or use --storage-driver vfs")]
    NoFuseOverlayfs,
    #[error("vfs copy of {path}: {source}")]
    Copy {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("no such volume: {0}")]
    NoVolume(String),
    #[error("volume {name} is in use by container {container} ({status}){hint}")]
    VolumeInUse {
        name: String,
        container: String,
        status: String,
        hint: &'static str,
    },
}

impl RootfsError {
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        RootfsError::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    pub fn invalid(what: &'static str, value: impl Into<String>, why: impl Into<String>) -> Self {
        RootfsError::Invalid {
            what,
            value: value.into(),
            why: why.into(),
        }
    }

    pub fn errno(&self) -> Option<i32> {
        match self {
            RootfsError::Io { source, .. } | RootfsError::Copy { source, .. } => {
                source.raw_os_error()
            }
            _ => None,
        }
    }

    pub fn path(&self) -> Option<&Path> {
        match self {
            RootfsError::Io { path, .. }
            | RootfsError::Copy { path, .. }
            | RootfsError::NoLayer { path } => Some(path),
            _ => None,
        }
    }
}

/// Which union filesystem stacks the layers (`--storage-driver`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Driver {
    /// Kernel overlayfs when the probe says the kernel allows it in a user namespace, else
    /// fuse-overlayfs when installed, else a copy.
    #[default]
    Auto,
    Overlay,
    FuseOverlayfs,
    Vfs,
}

impl Driver {
    pub fn as_str(self) -> &'static str {
        match self {
            Driver::Auto => "auto",
            Driver::Overlay => "overlay",
            Driver::FuseOverlayfs => "fuse-overlayfs",
            Driver::Vfs => "vfs",
        }
    }

    /// The driver `Auto` stands for on this host (the others stand for themselves).
    pub fn resolve(self) -> Driver {
        if self != Driver::Auto {
            return self;
        }
        if overlay::probe_cached().works {
            Driver::Overlay
        } else if fuse::usable() {
            Driver::FuseOverlayfs
        } else {
            Driver::Vfs
        }
    }
}

impl std::fmt::Display for Driver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Driver {
    type Err = RootfsError;
    fn from_str(s: &str) -> Result<Self, RootfsError> {
        match s {
            "" | "auto" => Ok(Driver::Auto),
            "overlay" | "overlayfs" | "overlay2" => Ok(Driver::Overlay),
            "fuse-overlayfs" | "fuse" => Ok(Driver::FuseOverlayfs),
            "vfs" | "copy" => Ok(Driver::Vfs),
            other => Err(RootfsError::invalid(
                "storage driver",
                other,
                "expected overlay, fuse-overlayfs, vfs or auto",
            )),
        }
    }
}

/// A layered root filesystem: read-only lower layers (lowest first, as an image lists them),
/// a per-container writable upper directory and the union filesystem's work directory (on the
/// same filesystem as `upper`).
///
/// Layer directories hold overlay whiteouts as on disk: a deleted file is a character device
/// 0/0, a replaced directory carries the xattr `user.overlay.opaque=y` (so kernel overlays are
/// mounted with `userxattr`). With the vfs driver, `upper` receives the full copy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Layers {
    pub lower: Vec<PathBuf>,
    pub upper: PathBuf,
    pub work: PathBuf,
    #[serde(default)]
    pub driver: Driver,
}

impl Layers {
    /// Checks that every directory exists.
    pub fn validate(&self) -> Result<(), RootfsError> {
        if self.lower.is_empty() {
            return Err(RootfsError::invalid(
                "layered rootfs",
                "",
                "at least one lower layer is needed",
            ));
        }
        for p in self.lower.iter().chain([&self.upper, &self.work]) {
            if !p.is_absolute() {
                return Err(RootfsError::invalid(
                    "layer path",
                    p.display().to_string(),
                    "must be absolute",
                ));
            }
            if !p.is_dir() {
                return Err(RootfsError::NoLayer { path: p.clone() });
            }
            CString::new(p.as_os_str().as_bytes()).map_err(|_| {
                RootfsError::invalid("layer path", p.display().to_string(), "contains a NUL")
            })?;
        }
        if self.upper == self.work {
            return Err(RootfsError::invalid(
                "layered rootfs",
                self.upper.display().to_string(),
                "upper and work must be different directories",
            ));
        }
        Ok(())
    }

    /// Makes every path absolute (relative to the current directory) and canonical.
    pub fn canonicalize(&self) -> Result<Layers, RootfsError> {
        let canon = |p: &PathBuf| {
            p.canonicalize()
                .map_err(|_| RootfsError::NoLayer { path: p.clone() })
        };
        Ok(Layers {
            lower: self.lower.iter().map(canon).collect::<Result<_, _>>()?,
            upper: canon(&self.upper)?,
            work: canon(&self.work)?,
            driver: self.driver,
        })
    }

    /// The layers of a spec, from [`ANNOTATION_LAYERS`].
    pub fn from_spec(spec: &Spec) -> Result<Option<Layers>, RootfsError> {
        let Some(text) = spec
            .annotations()
            .as_ref()
            .and_then(|a| a.get(ANNOTATION_LAYERS))
        else {
            return Ok(None);
        };
        let layers: Layers = serde_json::from_str(text).map_err(|e| {
            RootfsError::invalid("annotation", ANNOTATION_LAYERS, format!("{e} in {text:?}"))
        })?;
        Ok(Some(layers))
    }

    /// Writes the layers into a spec's annotations.
    pub fn to_annotation(&self) -> String {
        // A struct of paths and an enum always serialises.
        serde_json::to_string(self).unwrap_or_default()
    }
}

impl std::str::FromStr for Layers {
    type Err = RootfsError;

    /// `lower=BOTTOM:...:TOP,upper=DIR,work=DIR[,driver=NAME]` (`--rootfs-overlay`).
    fn from_str(s: &str) -> Result<Self, RootfsError> {
        let bad = |why: &str| RootfsError::invalid("--rootfs-overlay", s, why);
        let (mut lower, mut upper, mut work, mut driver) = (None, None, None, Driver::Auto);
        for part in s.split(',').filter(|p| !p.is_empty()) {
            let (k, v) = part
                .split_once('=')
                .ok_or_else(|| bad(&format!("{part:?} is not KEY=VALUE")))?;
            match k {
                "lower" | "lowerdir" => {
                    lower = Some(
                        v.split(':')
                            .filter(|l| !l.is_empty())
                            .map(PathBuf::from)
                            .collect::<Vec<_>>(),
                    )
                }
                "upper" | "upperdir" => upper = Some(PathBuf::from(v)),
                "work" | "workdir" => work = Some(PathBuf::from(v)),
                "driver" => driver = v.parse()?,
                other => {
                    return Err(bad(&format!(
                        "unknown key {other:?} (expected lower, upper, work, driver)"
                    )))
                }
            }
        }
        let lower = lower
            .filter(|l| !l.is_empty())
            .ok_or_else(|| bad("lower=... is missing"))?;
        Ok(Layers {
            lower,
            upper: upper.ok_or_else(|| bad("upper=... is missing"))?,
            work: work.ok_or_else(|| bad("work=... is missing"))?,
            driver,
        })
    }
}

/// How the launch child mounts a layered rootfs (built in the parent, see `launch::plan`).
#[derive(Debug)]
pub enum LayeredMount {
    /// Kernel overlayfs, mounted by the child itself.
    Overlay(overlay::OverlayMount),
    /// fuse-overlayfs, started by the child in its namespaces.
    Fuse(fuse::FuseExec),
    /// The vfs copy (this directory) bind-mounted.
    Bind(CString),
}

/// A layered rootfs ready for the launch: the layers (driver resolved) and the child's part.
#[derive(Debug)]
pub struct LayeredPlan {
    pub layers: Layers,
    pub mount: LayeredMount,
}

impl LayeredPlan {
    /// For error messages.
    pub fn describe(&self) -> String {
        format!(
            "{} with {} lower layer(s), upper {}, work {}",
            match self.layers.driver {
                Driver::Overlay | Driver::Auto => "kernel overlayfs",
                Driver::FuseOverlayfs => "fuse-overlayfs",
                Driver::Vfs => "a vfs copy",
            },
            self.layers.lower.len(),
            self.layers.upper.display(),
            self.layers.work.display()
        )
    }
}

/// The layered rootfs of a spec, prepared for the launch: the driver chosen (probing the
/// kernel once for `auto`), a vfs copy made. None for a plain rootfs directory.
pub fn launch_plan(spec: &Spec) -> Result<Option<LayeredPlan>, RootfsError> {
    let Some(layers) = Layers::from_spec(spec)? else {
        return Ok(None);
    };
    layers.validate()?;
    let driver = layers.driver.resolve();
    let mount = match driver {
        Driver::FuseOverlayfs => {
            let target = spec
                .root()
                .as_ref()
                .map(|r| r.path().clone())
                .unwrap_or_default();
            LayeredMount::Fuse(fuse::FuseExec::new(&layers, &target)?)
        }
        Driver::Vfs => {
            vfs::prepare(&layers)?;
            LayeredMount::Bind(
                CString::new(layers.upper.as_os_str().as_bytes()).map_err(|_| {
                    RootfsError::invalid("layer path", layers.upper.display().to_string(), "NUL")
                })?,
            )
        }
        Driver::Overlay | Driver::Auto => {
            LayeredMount::Overlay(overlay::OverlayMount::new(&layers)?)
        }
    };
    Ok(Some(LayeredPlan {
        layers: Layers { driver, ..layers },
        mount,
    }))
}

/// The store root: `--root`, else `$ROOTBOX_ROOT`, else `$XDG_DATA_HOME/rootbox`, else
/// `~/.local/share/rootbox` (the image store and named volumes live there).
pub fn data_root(explicit: Option<&Path>) -> PathBuf {
    if let Some(p) = explicit {
        return p.to_path_buf();
    }
    let env = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    if let Some(p) = env("ROOTBOX_ROOT") {
        return p;
    }
    if let Some(p) = env("XDG_DATA_HOME").filter(|p| p.is_absolute()) {
        return p.join("rootbox");
    }
    if let Some(home) = env("HOME") {
        return home.join(".local/share/rootbox");
    }
    // SAFETY: geteuid cannot fail.
    let uid = unsafe { libc::geteuid() };
    std::env::temp_dir().join(format!("rootbox-data-{uid}"))
}

/// Creates a directory (and its parents) private to the user.
pub(crate) fn mkdir_private(path: &Path) -> Result<(), RootfsError> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
        .map_err(|e| RootfsError::io(path, e))
}

/// Removes a tree even where directories lack write or search permission for us (the
/// overlay's work directory holds a mode-000 directory).
pub fn remove_tree(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    match std::fs::remove_dir_all(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(first) => {
            fn open_up(p: &Path) {
                let Ok(md) = std::fs::symlink_metadata(p) else {
                    return;
                };
                if md.is_dir() {
                    let _ = std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o700));
                    if let Ok(rd) = std::fs::read_dir(p) {
                        for e in rd.flatten() {
                            open_up(&e.path());
                        }
                    }
                }
            }
            open_up(path);
            std::fs::remove_dir_all(path).map_err(|_| first)
        }
    }
}

/// 64 random hex digits (volume names, probe directories).
pub(crate) fn random_hex() -> String {
    crate::container::new_id()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layers_parse() {
        let l: Layers = "lower=/a:/b,upper=/u,work=/w".parse().unwrap();
        assert_eq!(l.lower, vec![PathBuf::from("/a"), PathBuf::from("/b")]);
        assert_eq!(l.driver, Driver::Auto);
        let l: Layers = "lower=/a,upper=/u,work=/w,driver=vfs".parse().unwrap();
        assert_eq!(l.driver, Driver::Vfs);
        assert!("lower=/a,upper=/u".parse::<Layers>().is_err());
        assert!("lower=,upper=/u,work=/w".parse::<Layers>().is_err());
        assert!("lower=/a,upper=/u,work=/w,x=1".parse::<Layers>().is_err());
        assert!("lower=/a,upper=/u,work=/w,driver=zfs"
            .parse::<Layers>()
            .is_err());
    }

    #[test]
    fn layers_roundtrip_annotation() {
        let l: Layers = "lower=/a:/b,upper=/u,work=/w,driver=fuse-overlayfs"
            .parse()
            .unwrap();
        let back: Layers = serde_json::from_str(&l.to_annotation()).unwrap();
        assert_eq!(back, l);
        assert!(l.to_annotation().contains("\"fuse-overlayfs\""));
    }

    #[test]
    fn data_root_prefers_explicit() {
        assert_eq!(data_root(Some(Path::new("/x"))), PathBuf::from("/x"));
    }
}

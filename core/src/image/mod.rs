//! OCI images without a daemon: references, the content-addressed store, secure layer
//! unpacking, archives in and out, and the image config applied to a run.
//!
//! # The store (`$ROOTBOX_ROOT`, `--root`, else `$XDG_DATA_HOME/rootbox` or
//! `~/.local/share/rootbox`; every directory 0700)
//! ```text
//! oci-layout, index.json        an OCI image layout; index.json lists every image's manifest,
//!                               named by the `org.opencontainers.image.ref.name` annotation
//!                               (the full reference, e.g. docker.io/library/busybox:latest;
//!                               an entry without it is a dangling image)
//! blobs/sha256/<hex>            manifests, configs, layers; verified on write and on read
//! layers/<mapkey>/<diffid-hex>/diff       an unpacked layer (an overlay lower dir)
//! layers/<mapkey>/<diffid-hex>/meta.json  what it was unpacked from and for
//! containers/<id>/{upper,work,image}      per-container overlay dirs and the image in use
//!                               (`image` records the process making the container and its
//!                               state dir: once that process is gone without registering the
//!                               container, or the container's state is gone — a killed `run`,
//!                               a cleared `$XDG_RUNTIME_DIR` — the record holds no image and
//!                               the next GC removes the directory)
//! tmp/                          blobs and layers being written (renamed into place when whole)
//! store.lock, index.lock        flock(2): shared by writers of blobs and layers, exclusive by
//!                               garbage collection; exclusive around index.json updates
//! ```
//!
//! # Layer format
//! A layer is unpacked once per id mapping (`mapkey` = `single`, `identity` or
//! `subid-<hash of the maps>`) and shared read-only by every container. OCI whiteouts become
//! overlayfs whiteouts in the form a kernel overlay mounted with **`userxattr`** (and
//! fuse-overlayfs) reads:
//! * `.wh.NAME` → a character device 0/0 named `NAME` (unprivileged `mknod` of a whiteout is
//!   allowed since Linux 5.8);
//! * `.wh..wh..opq` → the xattr `user.overlay.opaque=y` on its directory.
//!
//! `trusted.overlay.*` is never used (root-only), so the same layers serve rootless and root
//! containers. With a subordinate-id mapping files keep their owners (set inside the user
//! namespace, see [`userns`]); with a single id they all belong to the caller, the container's
//! root.

pub mod archive;
pub mod config;
pub mod digest;
pub mod layerdiff;
pub mod nsfs;
pub mod reference;
#[cfg(feature = "registry")]
pub mod registry;
pub mod store;
pub mod time;
pub mod unpack;
pub mod userns;

use std::path::PathBuf;

pub use config::{apply, Applied, RootfsFiles};
pub use digest::Digest;
pub use reference::Reference;
pub use store::{Image, ImageSummary, PreparedRootfs, Store};

/// Errors of the image store and everything around it, each naming the bad thing.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("invalid reference format {reference:?}: {reason}")]
    BadReference { reference: String, reason: String },
    #[error("invalid digest {digest:?}: {reason}")]
    BadDigest { digest: String, reason: String },
    #[error("no such image: {0}")]
    NotFound(String),
    #[error("{what} {path}: {source}")]
    Io {
        what: String,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{what}: {message}")]
    Corrupt { what: String, message: String },
    #[error("{what}: {message}")]
    Format { what: String, message: String },
    #[error("unpacking layer {layer}: {source}")]
    Unpack {
        layer: Digest,
        source: unpack::UnpackError,
    },
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Config(String),
    #[error(transparent)]
    Userns(#[from] userns::UsernsError),
    #[error(transparent)]
    IdMap(#[from] crate::idmap::IdMapError),
}

impl ImageError {
    pub(crate) fn io(
        what: impl Into<String>,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        ImageError::Io {
            what: what.into(),
            path: path.into(),
            source,
        }
    }

    pub(crate) fn format(what: impl Into<String>, message: impl Into<String>) -> Self {
        ImageError::Format {
            what: what.into(),
            message: message.into(),
        }
    }

    /// The errno behind the error, when there is one.
    pub fn errno(&self) -> Option<i32> {
        match self {
            ImageError::Io { source, .. } => source.raw_os_error(),
            ImageError::Unpack {
                source: unpack::UnpackError::Sys { source, .. },
                ..
            } => source.raw_os_error(),
            _ => None,
        }
    }

    /// The path involved, when there is one.
    pub fn path(&self) -> Option<&std::path::Path> {
        match self {
            ImageError::Io { path, .. } => Some(path),
            _ => None,
        }
    }
}

pub type Result<T, E = ImageError> = std::result::Result<T, E>;

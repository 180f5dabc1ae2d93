//! rootbox core: rootless Linux containers.
//!
//! The three front doors (the `rootbox` and `rootbox-runtime` CLIs, the C ABI and the Python
//! module) are thin: every call maps to one function here, so behaviour, errors and tests are
//! shared.
//!
//! - [`spec`]: the OCI runtime config, rootbox's defaults, run options → config.
//! - [`idmap`]: user namespace id mappings (single id, or subordinate ids via newuidmap).
//! - [`launch`]: clone into new namespaces, the child's setup up to exec, the PID-1 init.
//! - [`seccomp`]: OCI seccomp profiles compiled to BPF, Docker's default profile.
//! - [`cgroup`]: cgroup v2 discovery, per-container cgroups and limits, stats, freeze, kill.
//! - [`container`]: state, locks and the lifecycle verbs.
//! - [`network`]: none/host/private (pasta, slirp4netns) networks, published ports, user networks.
//! - [`image`]: OCI image store, references, secure layer unpacking, archives, image config.
//! - [`rootfs`]: layered rootfs (overlay, fuse-overlayfs, vfs), generated /etc files, volumes.
//! - [`build`]: `rootbox build`: Dockerfile parsing, the context, steps, layers, the cache.
//! - [`info`]: what this host offers (kernel, id mapping, overlay, cgroups, helpers).

pub mod build;
pub mod cgroup;
pub mod container;
pub mod error;
pub mod idmap;
pub mod image;
pub mod info;
pub mod launch;
pub mod network;
pub mod rootfs;
pub mod seccomp;
pub mod spec;
pub mod sys;

pub use error::{Error, Result};

/// The library version (the crate version).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

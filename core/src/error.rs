//! The crate error: each module's typed error rolled up, keeping errno and path where known.

use std::path::Path;

use crate::cgroup::CgroupError;
use crate::container::{ContainerError, StateError};
use crate::idmap::IdMapError;
#[cfg(feature = "registry")]
use crate::image::registry::RegistryError;
use crate::image::ImageError;
use crate::launch::LaunchError;
use crate::network::NetworkError;
use crate::rootfs::RootfsError;
use crate::seccomp::SeccompError;
use crate::spec::SpecError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Spec(#[from] SpecError),
    #[error(transparent)]
    IdMap(#[from] IdMapError),
    #[error(transparent)]
    Launch(#[from] LaunchError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Seccomp(#[from] SeccompError),
    #[error(transparent)]
    Network(#[from] NetworkError),
    #[error(transparent)]
    Image(#[from] ImageError),
    #[error(transparent)]
    Cgroup(#[from] CgroupError),
    #[cfg(feature = "registry")]
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error(transparent)]
    Rootfs(#[from] RootfsError),
    #[error(transparent)]
    Build(#[from] crate::build::BuildError),
    #[error(transparent)]
    Commit(#[from] crate::container::commit::CommitError),
}

impl From<ContainerError> for Error {
    fn from(e: ContainerError) -> Self {
        match e {
            ContainerError::State(e) => Error::State(e),
            ContainerError::Spec(e) => Error::Spec(e),
            ContainerError::Launch(e) => Error::Launch(e),
            ContainerError::Network(e) => Error::Network(e),
            ContainerError::Cgroup(e) => Error::Cgroup(e),
            ContainerError::Rootfs(e) => Error::Rootfs(e),
        }
    }
}

impl Error {
    /// The errno behind the error, when there is one.
    pub fn errno(&self) -> Option<i32> {
        match self {
            Error::Launch(e) => e.errno(),
            Error::State(StateError::Io { source, .. }) => source.raw_os_error(),
            Error::Spec(SpecError::Read { source, .. }) => source.raw_os_error(),
            Error::Image(e) => e.errno(),
            #[cfg(feature = "registry")]
            Error::Registry(RegistryError::Image(e)) => e.errno(),
            Error::Cgroup(e) => e.errno(),
            Error::Rootfs(e) => e.errno(),
            Error::Commit(e) => e.errno(),
            Error::Build(e) => e.errno(),
            _ => None,
        }
    }

    /// The path involved, when there is one.
    pub fn path(&self) -> Option<&Path> {
        match self {
            Error::State(StateError::Io { path, .. })
            | Error::State(StateError::NotPrivate { path })
            | Error::State(StateError::Corrupt { path, .. })
            | Error::Spec(SpecError::Read { path, .. })
            | Error::Spec(SpecError::Parse { path, .. })
            | Error::Spec(SpecError::NoRootfs { path })
            | Error::Spec(SpecError::NoBindSource { path }) => Some(path),
            Error::Image(e) => e.path(),
            Error::Cgroup(e) => e.path(),
            Error::Rootfs(e) => e.path(),
            Error::Build(e) => e.path(),
            _ => None,
        }
    }

    /// The exit code a command line should use, Docker's convention: 127 for a command that is
    /// not found, 126 for one that cannot be executed, 125 for everything else.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Launch(e) => e.exit_code(),
            // `docker build` exits 1 when a build fails.
            Error::Build(_) => 1,
            _ => 125,
        }
    }

    /// Whether the error means "no such container".
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::State(StateError::NotFound(_)))
    }

    /// Whether the error means "no such image".
    pub fn is_image_not_found(&self) -> bool {
        match self {
            Error::Image(ImageError::NotFound(_)) => true,
            #[cfg(feature = "registry")]
            Error::Registry(RegistryError::Image(ImageError::NotFound(_))) => true,
            _ => false,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

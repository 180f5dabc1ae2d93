//! rootbox core: rootless Linux containers.

/// The library version (the crate version).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

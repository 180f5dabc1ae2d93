//! Nothing to link: this crate only carries `tests/header.rs`, the freshness check of
//! `include/rootbox.h` (see its Cargo.toml for why it is a crate of its own).

//! The C ABI over rootbox-core (filled by the C ABI work; only the version for now).

use std::ffi::c_char;

/// The library version as a NUL-terminated UTF-8 string owned by the library.
#[no_mangle]
pub extern "C" fn rootbox_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
}

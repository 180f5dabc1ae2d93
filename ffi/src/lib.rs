//! The C ABI over rootbox-core: `libcontainer.so` / `libcontainer.a` and `include/rootbox.h`.
//!
//! Conventions (as rustls-ffi): opaque handles (`rootbox_runtime_t`, `rootbox_image_t`,
//! `rootbox_container_t`, `rootbox_output_t`, `rootbox_error_t`) made by `_new`/lookup calls and
//! released by their `_free`; functions named `rootbox_<object>_<verb>`; every fallible call
//! returns a `rootbox_status_t` and, when its last argument is not NULL, stores a new
//! `rootbox_error_t` there on failure (message, errno, exit code); outputs are written only on
//! success; every pointer is checked; no panic crosses the boundary (each call runs under
//! `catch_unwind`, a panic becomes `ROOTBOX_ERROR_PANIC`). Strings are UTF-8, NUL-terminated;
//! strings the library returns with a `char **` are the caller's (`rootbox_string_free`),
//! `const char *` results are owned by the handle they come from. Handles are immutable, so
//! any call may be made from several threads at once.
//!
//! Each call maps to one core call: the library holds no logic of its own.
#![allow(non_camel_case_types)]
// Every exported function checks its pointers and documents what it requires of them.
#![allow(clippy::missing_safety_doc)]

pub mod container;
pub mod error;
pub mod image;
mod options;
pub mod runtime;
mod util;

use std::ffi::c_char;

pub use container::*;
pub use error::*;
pub use image::*;
pub use runtime::*;

/// The library version ("0.1.0"), a NUL-terminated string owned by the library.
#[no_mangle]
pub extern "C" fn rootbox_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
}

/// Frees a string the library returned through a `char **` argument (JSON, ...). NULL is
/// allowed.
#[no_mangle]
pub unsafe extern "C" fn rootbox_string_free(s: *mut c_char) {
    error::guard_value((), || {
        if !s.is_null() {
            // SAFETY: a non-NULL `s` came from `CString::into_raw` in this library and is freed
            // once (caller's contract).
            drop(unsafe { std::ffi::CString::from_raw(s) });
        }
    })
}

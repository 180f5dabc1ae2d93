//! The C ABI's contract, called from Rust through the library's rlib: bad arguments come back
//! as a status and an error object (never a crash), outputs are written only on success, and
//! a runtime opens and frees. (The C programs in tests/c test the same library from C.)
//!
//! Also keeps the release build's dependencies shared with `cargo test --release`: a test that
//! links the rlib of a library that is also a cdylib/staticlib makes cargo build them as object
//! code plus bitcode, as `cargo build --release` does.

use std::ffi::{CStr, CString};
use std::ptr;

use ::container::*;

fn message(err: *const rootbox_error_t) -> String {
    // SAFETY: an error from the library (or NULL); the message lives as long as the error.
    unsafe { CStr::from_ptr(rootbox_error_message(err)) }
        .to_string_lossy()
        .into_owned()
}

#[test]
fn version_is_the_crate_version() {
    // SAFETY: a static NUL-terminated string.
    let v = unsafe { CStr::from_ptr(rootbox_version()) };
    assert_eq!(v.to_str().unwrap(), env!("CARGO_PKG_VERSION"));
}

#[test]
fn bad_arguments_are_errors_and_outputs_stay_untouched() {
    let mut err: *mut rootbox_error_t = ptr::null_mut();
    // NULL out.
    // SAFETY: the contract allows any pointers: NULL ones are reported.
    let st = unsafe { rootbox_runtime_new(ptr::null(), ptr::null_mut(), &mut err) };
    assert_eq!(st, rootbox_status_t::ROOTBOX_ERROR_INVALID_ARGUMENT);
    assert!(!err.is_null());
    assert!(message(err).contains("out"), "{}", message(err));
    // SAFETY: the error from the call above, freed once.
    unsafe { rootbox_error_free(err) };

    // An options struct of an unknown size.
    let opts = rootbox_runtime_options_t {
        struct_size: 3,
        state_dir: ptr::null(),
        store_dir: ptr::null(),
    };
    let mut marker = 0u8;
    let sentinel = std::ptr::addr_of_mut!(marker).cast::<rootbox_runtime_t>();
    let mut out = sentinel;
    let mut err: *mut rootbox_error_t = ptr::null_mut();
    // SAFETY: valid pointers to the locals above.
    let st = unsafe { rootbox_runtime_new(&opts, &mut out, &mut err) };
    assert_eq!(st, rootbox_status_t::ROOTBOX_ERROR_INVALID_ARGUMENT);
    assert_eq!(out, sentinel, "an output is written only on success");
    assert!(message(err).contains("struct_size"), "{}", message(err));
    // SAFETY: as above.
    unsafe { rootbox_error_free(err) };

    // The error accessors and frees accept NULL.
    assert_eq!(message(ptr::null()), "");
    // SAFETY: NULL is allowed.
    unsafe {
        assert_eq!(
            rootbox_error_status(ptr::null()),
            rootbox_status_t::ROOTBOX_ERROR_INVALID_ARGUMENT
        );
        rootbox_error_free(ptr::null_mut());
        rootbox_runtime_free(ptr::null_mut());
    }
}

#[test]
fn a_runtime_opens_its_directories_and_frees() {
    let base = std::env::temp_dir().join(format!("rootbox-abi-{}", std::process::id()));
    let (state, store) = (base.join("state"), base.join("store"));
    let c = |p: &std::path::Path| CString::new(p.to_str().unwrap()).unwrap();
    let (cs, cr) = (c(&state), c(&store));
    let opts = rootbox_runtime_options_t {
        struct_size: std::mem::size_of::<rootbox_runtime_options_t>(),
        state_dir: cs.as_ptr(),
        store_dir: cr.as_ptr(),
    };
    let mut out: *mut rootbox_runtime_t = ptr::null_mut();
    let mut err: *mut rootbox_error_t = ptr::null_mut();
    // SAFETY: valid pointers to the locals above.
    let st = unsafe { rootbox_runtime_new(&opts, &mut out, &mut err) };
    assert_eq!(st, rootbox_status_t::ROOTBOX_OK, "{}", message(err));
    assert!(err.is_null() && !out.is_null());
    assert!(state.is_dir() && store.is_dir());
    // SAFETY: the runtime made above, freed once.
    unsafe { rootbox_runtime_free(out) };
    let _ = std::fs::remove_dir_all(&base);
}

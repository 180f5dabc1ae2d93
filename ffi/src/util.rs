//! Arguments in (C strings, NULL-terminated string arrays) and results out (owned strings,
//! handles), every pointer checked.

use std::ffi::{c_char, CStr, CString};
use std::path::PathBuf;

use crate::error::{Failure, Result};

/// A required UTF-8 string argument.
///
/// # Safety
/// `p` is NULL or a NUL-terminated string valid for the call.
pub(crate) unsafe fn str_arg<'a>(p: *const c_char, what: &str) -> Result<&'a str> {
    if p.is_null() {
        return Err(Failure::arg(format!("{what} is NULL")));
    }
    // SAFETY: non-NULL and NUL-terminated (caller's contract).
    unsafe { CStr::from_ptr(p) }
        .to_str()
        .map_err(|_| Failure::arg(format!("{what} is not valid UTF-8")))
}

/// An optional UTF-8 string argument (NULL: none).
///
/// # Safety
/// As [`str_arg`].
pub(crate) unsafe fn opt_str<'a>(p: *const c_char, what: &str) -> Result<Option<&'a str>> {
    if p.is_null() {
        Ok(None)
    } else {
        // SAFETY: as above.
        unsafe { str_arg(p, what) }.map(Some)
    }
}

/// An optional string argument as an owned `String`.
///
/// # Safety
/// As [`str_arg`].
pub(crate) unsafe fn opt_string(p: *const c_char, what: &str) -> Result<Option<String>> {
    // SAFETY: as above.
    Ok(unsafe { opt_str(p, what) }?.map(str::to_string))
}

/// An optional path argument.
///
/// # Safety
/// As [`str_arg`].
pub(crate) unsafe fn opt_path(p: *const c_char, what: &str) -> Result<Option<PathBuf>> {
    // SAFETY: as above.
    Ok(unsafe { opt_str(p, what) }?.map(PathBuf::from))
}

/// A NULL-terminated array of strings (NULL: empty).
///
/// # Safety
/// `p` is NULL or points to an array of string pointers ending with a NULL entry.
pub(crate) unsafe fn str_array(p: *const *const c_char, what: &str) -> Result<Vec<String>> {
    let mut out = Vec::new();
    if p.is_null() {
        return Ok(out);
    }
    let mut i = 0usize;
    loop {
        // SAFETY: the array ends with NULL, so every index up to it is in bounds.
        let item = unsafe { *p.add(i) };
        if item.is_null() {
            return Ok(out);
        }
        // SAFETY: a non-NULL entry is a NUL-terminated string (caller's contract).
        out.push(unsafe { str_arg(item, &format!("{what}[{i}]")) }?.to_string());
        i += 1;
    }
}

/// Checks an out-pointer argument.
pub(crate) fn out_arg<T>(p: *mut T, what: &str) -> Result<()> {
    if p.is_null() {
        Err(Failure::arg(format!("{what} (the output pointer) is NULL")))
    } else {
        Ok(())
    }
}

/// Writes `v` to a checked out-pointer.
///
/// # Safety
/// `p` was checked with [`out_arg`] and points to writable storage for a `T`.
pub(crate) unsafe fn write_out<T>(p: *mut T, v: T) {
    // SAFETY: caller's contract.
    unsafe { p.write(v) }
}

/// A C string made from Rust text (NULs, which C strings cannot hold, escaped).
pub(crate) fn cstring(s: &str) -> CString {
    match CString::new(s) {
        Ok(c) => c,
        Err(_) => CString::new(s.replace('\0', "\\0")).unwrap_or_default(),
    }
}

/// An owned C string for the caller (freed with `rootbox_string_free`).
pub(crate) fn owned_string(s: &str) -> *mut c_char {
    cstring(s).into_raw()
}

/// JSON text for the caller.
pub(crate) fn json_string(v: &impl serde::Serialize) -> Result<*mut c_char> {
    let text = serde_json::to_string_pretty(v)
        .map_err(|e| Failure::new(crate::error::ROOTBOX_ERROR_OTHER, format!("JSON: {e}")))?;
    Ok(owned_string(&text))
}

/// A handle for the caller.
pub(crate) fn into_handle<T>(v: T) -> *mut T {
    Box::into_raw(Box::new(v))
}

/// Borrows a handle argument.
///
/// # Safety
/// `p` is NULL or a live handle of type `T` made by this library.
pub(crate) unsafe fn handle<'a, T>(p: *const T, what: &str) -> Result<&'a T> {
    // SAFETY: caller's contract.
    unsafe { p.as_ref() }.ok_or_else(|| Failure::arg(format!("{what} is NULL")))
}

/// Frees a handle (NULL is allowed).
///
/// # Safety
/// `p` is NULL or a handle made by [`into_handle`] that is not used afterwards.
pub(crate) unsafe fn free_handle<T>(p: *mut T) {
    if !p.is_null() {
        // SAFETY: caller's contract.
        drop(unsafe { Box::from_raw(p) });
    }
}

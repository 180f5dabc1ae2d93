//! Status codes, the error object, and the panic boundary every exported function goes through.

use std::ffi::{c_char, c_int, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};

use rootbox_core::cgroup::CgroupError;
use rootbox_core::container::commit::CommitError;
use rootbox_core::container::StateError;
use rootbox_core::image::registry::{Problem, RegistryError};
use rootbox_core::image::ImageError;
use rootbox_core::Error;

/// What a fallible call returns: `ROOTBOX_OK` (0) on success, else the kind of failure (details
/// in the `rootbox_error_t` the call gives when asked for one).
#[repr(C)]
#[allow(non_camel_case_types)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum rootbox_status_t {
    /// Success.
    ROOTBOX_OK = 0,
    /// A bad argument: a NULL pointer where one is required, a string that is not UTF-8, an
    /// options struct whose `struct_size` is unknown.
    ROOTBOX_ERROR_INVALID_ARGUMENT = 1,
    /// Bad configuration: malformed OCI JSON, a bad option value (memory size, volume, ...).
    ROOTBOX_ERROR_INVALID_CONFIG = 2,
    /// No such container.
    ROOTBOX_ERROR_NOT_FOUND = 3,
    /// No such image: not in the store, or (`rootbox_image_pull`) not in the registry (no such
    /// repository, tag or digest there).
    ROOTBOX_ERROR_IMAGE_NOT_FOUND = 4,
    /// The container is not in a state that allows the operation (e.g. kill of a stopped one).
    ROOTBOX_ERROR_WRONG_STATE = 5,
    /// Something of that name exists already (container name, image tag conflict).
    ROOTBOX_ERROR_EXISTS = 6,
    /// The container's process could not be started (command not found: exit code 127, not
    /// executable: 126; see `rootbox_error_exit_code`).
    ROOTBOX_ERROR_LAUNCH = 7,
    /// A cgroup limit or figure that this host cannot provide (no delegated cgroup v2).
    ROOTBOX_ERROR_CGROUP = 8,
    /// A system call or file operation failed (see `rootbox_error_errno`).
    ROOTBOX_ERROR_SYSTEM = 9,
    /// Any other failure (the message says what).
    ROOTBOX_ERROR_OTHER = 10,
    /// A bug inside rootbox (a Rust panic), caught at the boundary; the library stays usable.
    ROOTBOX_ERROR_PANIC = 11,
    /// A registry could not be used for a pull or push: unreachable (connection refused, DNS,
    /// timeout), a TLS failure, credentials missing or refused, a corrupt blob, or anything
    /// else the registry said (the message names the reference, the registry and the reason).
    ROOTBOX_ERROR_REGISTRY = 12,
}

pub use rootbox_status_t::*;

/// An error: its status, errno (0 when none), the exit code a command line would use (Docker's
/// convention: 125, 126 or 127) and a UTF-8 message naming what went wrong. Owned by the caller,
/// freed with `rootbox_error_free`.
pub struct rootbox_error_t {
    pub(crate) status: rootbox_status_t,
    pub(crate) errno: c_int,
    pub(crate) exit_code: c_int,
    pub(crate) message: CString,
}

/// A failure inside the library, before it becomes a `rootbox_error_t`.
#[derive(Debug)]
pub(crate) struct Failure {
    pub status: rootbox_status_t,
    pub errno: i32,
    pub exit_code: i32,
    pub message: String,
}

impl Failure {
    pub fn new(status: rootbox_status_t, message: impl Into<String>) -> Failure {
        Failure {
            status,
            errno: 0,
            exit_code: 125,
            message: message.into(),
        }
    }

    /// A bad argument (NULL pointer, not UTF-8, ...).
    pub fn arg(message: impl Into<String>) -> Failure {
        Failure::new(ROOTBOX_ERROR_INVALID_ARGUMENT, message)
    }

    fn panic(payload: &(dyn std::any::Any + Send)) -> Failure {
        let what = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".into());
        Failure::new(
            ROOTBOX_ERROR_PANIC,
            format!("internal error in rootbox (please report): {what}"),
        )
    }

    fn into_error(self) -> rootbox_error_t {
        let message = CString::new(self.message.replace('\0', "\\0")).unwrap_or_default();
        rootbox_error_t {
            status: self.status,
            errno: self.errno,
            exit_code: self.exit_code,
            message,
        }
    }
}

fn image_status(e: &ImageError) -> Option<rootbox_status_t> {
    Some(match e {
        ImageError::NotFound(_) => ROOTBOX_ERROR_IMAGE_NOT_FOUND,
        ImageError::BadReference { .. } | ImageError::BadDigest { .. } => {
            ROOTBOX_ERROR_INVALID_ARGUMENT
        }
        ImageError::Conflict(_) => ROOTBOX_ERROR_EXISTS,
        ImageError::Config(_) => ROOTBOX_ERROR_INVALID_CONFIG,
        _ => return None,
    })
}

fn registry_status(e: &RegistryError) -> Option<rootbox_status_t> {
    Some(match e {
        RegistryError::Image(i) => return image_status(i),
        RegistryError::Config(_) => ROOTBOX_ERROR_INVALID_CONFIG,
        RegistryError::Failed { problem, .. } => match problem {
            Problem::UnknownImage | Problem::UnknownTag { .. } => ROOTBOX_ERROR_IMAGE_NOT_FOUND,
            _ => ROOTBOX_ERROR_REGISTRY,
        },
    })
}

fn status_of(e: &Error) -> rootbox_status_t {
    if let Some(s) = match e {
        Error::Image(i) => image_status(i),
        Error::Registry(r) => registry_status(r),
        _ => None,
    } {
        return s;
    }
    match e {
        Error::State(StateError::NotFound(_)) => ROOTBOX_ERROR_NOT_FOUND,
        Error::State(StateError::WrongStatus { .. }) => ROOTBOX_ERROR_WRONG_STATE,
        Error::State(StateError::AlreadyExists(_) | StateError::NameInUse { .. }) => {
            ROOTBOX_ERROR_EXISTS
        }
        Error::State(
            StateError::BadId(_) | StateError::BadName(_) | StateError::Ambiguous { .. },
        ) => ROOTBOX_ERROR_INVALID_ARGUMENT,
        Error::Spec(_) | Error::IdMap(_) => ROOTBOX_ERROR_INVALID_CONFIG,
        Error::Launch(_) => ROOTBOX_ERROR_LAUNCH,
        Error::Cgroup(CgroupError::BadLimit { .. } | CgroupError::Invalid(_)) => {
            ROOTBOX_ERROR_INVALID_CONFIG
        }
        Error::Cgroup(_) => ROOTBOX_ERROR_CGROUP,
        Error::Commit(CommitError::NoLayers(..)) => ROOTBOX_ERROR_INVALID_ARGUMENT,
        Error::Commit(CommitError::Invalid(_)) => ROOTBOX_ERROR_INVALID_CONFIG,
        _ if e.errno().is_some() => ROOTBOX_ERROR_SYSTEM,
        _ => ROOTBOX_ERROR_OTHER,
    }
}

impl From<Error> for Failure {
    fn from(e: Error) -> Failure {
        Failure {
            status: status_of(&e),
            errno: e.errno().unwrap_or(0),
            exit_code: e.exit_code(),
            message: e.to_string(),
        }
    }
}

macro_rules! from_core {
    ($($t:ty),*) => {$(
        impl From<$t> for Failure {
            fn from(e: $t) -> Failure {
                Failure::from(Error::from(e))
            }
        }
    )*};
}
from_core!(
    ImageError,
    StateError,
    CgroupError,
    RegistryError,
    rootbox_core::container::ContainerError,
    rootbox_core::spec::SpecError
);

pub(crate) type Result<T, E = Failure> = std::result::Result<T, E>;

/// Runs `f` behind the panic boundary: its failure (or panic) becomes the returned status and,
/// when `err` is not NULL, a new `rootbox_error_t` stored in `*err`. `*err` is left alone on
/// success.
pub(crate) fn guard(
    err: *mut *mut rootbox_error_t,
    f: impl FnOnce() -> Result<()>,
) -> rootbox_status_t {
    let failure = match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => return ROOTBOX_OK,
        Ok(Err(f)) => f,
        Err(payload) => Failure::panic(&*payload),
    };
    let status = failure.status;
    if !err.is_null() {
        let boxed = Box::into_raw(Box::new(failure.into_error()));
        // SAFETY: `err` is not NULL and, by the API's contract, points to writable storage
        // for one pointer.
        unsafe { *err = boxed };
    }
    status
}

/// Runs an infallible accessor behind the panic boundary; `fallback` when it panics.
pub(crate) fn guard_value<T>(fallback: T, f: impl FnOnce() -> T) -> T {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or(fallback)
}

/// Frees an error returned by any call. NULL is allowed (nothing happens).
#[no_mangle]
pub unsafe extern "C" fn rootbox_error_free(err: *mut rootbox_error_t) {
    guard_value((), || {
        if !err.is_null() {
            // SAFETY: a non-NULL `err` came from `Box::into_raw` in `guard` and is freed once,
            // by the caller's contract.
            drop(unsafe { Box::from_raw(err) });
        }
    })
}

/// The error's status (never `ROOTBOX_OK`); `ROOTBOX_ERROR_INVALID_ARGUMENT` for NULL.
#[no_mangle]
pub unsafe extern "C" fn rootbox_error_status(err: *const rootbox_error_t) -> rootbox_status_t {
    // SAFETY: a non-NULL `err` points to a live error (caller's contract).
    guard_value(ROOTBOX_ERROR_INVALID_ARGUMENT, || {
        match unsafe { err.as_ref() } {
            Some(e) => e.status,
            None => ROOTBOX_ERROR_INVALID_ARGUMENT,
        }
    })
}

/// The error's message: NUL-terminated UTF-8, owned by the error (valid until
/// `rootbox_error_free`). An empty string for NULL.
#[no_mangle]
pub unsafe extern "C" fn rootbox_error_message(err: *const rootbox_error_t) -> *const c_char {
    // SAFETY: a non-NULL `err` points to a live error (caller's contract).
    guard_value(c"".as_ptr(), || match unsafe { err.as_ref() } {
        Some(e) => e.message.as_ptr(),
        None => c"".as_ptr(),
    })
}

/// The errno behind the error, 0 when there is none (or for NULL).
#[no_mangle]
pub unsafe extern "C" fn rootbox_error_errno(err: *const rootbox_error_t) -> c_int {
    // SAFETY: a non-NULL `err` points to a live error (caller's contract).
    guard_value(0, || unsafe { err.as_ref() }.map_or(0, |e| e.errno))
}

/// The exit code a command line reports for this error (Docker's convention): 127 when the
/// container's command was not found, 126 when it could not be executed, 125 otherwise.
#[no_mangle]
pub unsafe extern "C" fn rootbox_error_exit_code(err: *const rootbox_error_t) -> c_int {
    // SAFETY: a non-NULL `err` points to a live error (caller's contract).
    guard_value(125, || unsafe { err.as_ref() }.map_or(125, |e| e.exit_code))
}

/// A short constant name for a status value ("ROOTBOX_OK", "ROOTBOX_ERROR_NOT_FOUND", ...),
/// owned by the library; "ROOTBOX_UNKNOWN_STATUS" for a value that is no status.
#[no_mangle]
pub extern "C" fn rootbox_status_name(status: c_int) -> *const c_char {
    let s: &'static std::ffi::CStr = match status {
        0 => c"ROOTBOX_OK",
        1 => c"ROOTBOX_ERROR_INVALID_ARGUMENT",
        2 => c"ROOTBOX_ERROR_INVALID_CONFIG",
        3 => c"ROOTBOX_ERROR_NOT_FOUND",
        4 => c"ROOTBOX_ERROR_IMAGE_NOT_FOUND",
        5 => c"ROOTBOX_ERROR_WRONG_STATE",
        6 => c"ROOTBOX_ERROR_EXISTS",
        7 => c"ROOTBOX_ERROR_LAUNCH",
        8 => c"ROOTBOX_ERROR_CGROUP",
        9 => c"ROOTBOX_ERROR_SYSTEM",
        10 => c"ROOTBOX_ERROR_OTHER",
        11 => c"ROOTBOX_ERROR_PANIC",
        12 => c"ROOTBOX_ERROR_REGISTRY",
        _ => c"ROOTBOX_UNKNOWN_STATUS",
    };
    s.as_ptr()
}

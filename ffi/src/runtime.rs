//! `rootbox_runtime_t`: where containers and images live (state and store directories).

use std::ffi::c_char;
use std::path::PathBuf;

use rootbox_core::container::request::Dirs;
use rootbox_core::container::StateRoot;
use rootbox_core::image::Store;

use crate::error::{guard, rootbox_error_t, rootbox_status_t, Result};
use crate::{options, util};

/// Options of `rootbox_runtime_new`. Zero-initialise it, set `struct_size`, then what you need.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct rootbox_runtime_options_t {
    /// `sizeof(rootbox_runtime_options_t)`.
    pub struct_size: usize,
    /// Container state directory; NULL: `$XDG_RUNTIME_DIR/rootbox` (as `rootbox --state-dir`).
    pub state_dir: *const c_char,
    /// Image and volume store; NULL: `$ROOTBOX_ROOT`, else `~/.local/share/rootbox` (as
    /// `rootbox --root`).
    pub store_dir: *const c_char,
}

/// A runtime: a state directory and a store. Immutable once made, so one runtime may be used
/// from several threads at once.
pub struct rootbox_runtime_t {
    pub(crate) dirs: Dirs,
    pub(crate) root: StateRoot,
}

impl rootbox_runtime_t {
    pub(crate) fn store(&self) -> Result<Store> {
        Ok(Store::open(Some(self.dirs.store.clone()))?)
    }
}

/// The places a monitor installed with this library may be: `LIBDIR/rootbox-monitor` (a build
/// tree), `LIBDIR/../libexec/rootbox/rootbox-monitor` (`make install`).
fn register_monitor_locations() {
    let mut info = std::mem::MaybeUninit::<libc::Dl_info>::zeroed();
    let addr = crate::rootbox_version as *const libc::c_void;
    // SAFETY: dladdr only reads the address and fills `info`.
    let found = unsafe { libc::dladdr(addr, info.as_mut_ptr()) };
    if found == 0 {
        return;
    }
    // SAFETY: dladdr succeeded, so `info` is initialised.
    let info = unsafe { info.assume_init() };
    if info.dli_fname.is_null() {
        return;
    }
    // SAFETY: dli_fname is a NUL-terminated path owned by the dynamic loader.
    let file = unsafe { std::ffi::CStr::from_ptr(info.dli_fname) };
    let file = PathBuf::from(
        <std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(file.to_bytes()),
    );
    let Some(dir) = file
        .canonicalize()
        .ok()
        .and_then(|f| f.parent().map(PathBuf::from))
    else {
        return;
    };
    let bin = rootbox_core::container::monitor::MONITOR_BIN;
    let mut places = vec![dir.join(bin)];
    if let Some(prefix) = dir.parent() {
        places.push(prefix.join("libexec").join("rootbox").join(bin));
    }
    rootbox_core::container::monitor::add_library_locations(places);
}

/// Opens a runtime. `options` may be NULL (all defaults). On success `*out` is a new runtime,
/// freed with `rootbox_runtime_free`. The directories are made (mode 0700) if missing.
#[no_mangle]
pub unsafe extern "C" fn rootbox_runtime_new(
    options: *const rootbox_runtime_options_t,
    out: *mut *mut rootbox_runtime_t,
    err: *mut *mut rootbox_error_t,
) -> rootbox_status_t {
    guard(err, || {
        util::out_arg(out, "out")?;
        // SAFETY: NULL or a struct of `struct_size` bytes (caller's contract).
        let o = unsafe { options::read(options, "options") }?;
        // SAFETY: the strings are NULL or NUL-terminated (caller's contract).
        let state = unsafe { util::opt_path(o.state_dir, "options.state_dir") }?;
        // SAFETY: as above.
        let store = unsafe { util::opt_path(o.store_dir, "options.store_dir") }?;
        let dirs = Dirs::new(state.as_deref(), store.as_deref());
        let root = StateRoot::open(&dirs.state)?;
        Store::open(Some(dirs.store.clone()))?;
        register_monitor_locations();
        // SAFETY: `out` checked above.
        unsafe { util::write_out(out, util::into_handle(rootbox_runtime_t { dirs, root })) };
        Ok(())
    })
}

/// Frees a runtime (NULL is allowed). Containers and images obtained from it stay valid.
#[no_mangle]
pub unsafe extern "C" fn rootbox_runtime_free(runtime: *mut rootbox_runtime_t) {
    crate::error::guard_value((), || {
        // SAFETY: NULL or a runtime from rootbox_runtime_new, not used afterwards.
        unsafe { util::free_handle(runtime) }
    })
}

/// Borrows the runtime argument.
///
/// # Safety
/// NULL or a live runtime.
pub(crate) unsafe fn arg<'a>(runtime: *const rootbox_runtime_t) -> Result<&'a rootbox_runtime_t> {
    // SAFETY: caller's contract.
    unsafe { util::handle(runtime, "runtime") }
}

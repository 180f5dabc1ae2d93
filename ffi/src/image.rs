//! Images in the store: import, load, list, get, tag, remove, inspect (and the image handle).

use std::ffi::{c_char, CString};
use std::path::Path;

use rootbox_core::image::archive::{self, ImportOptions, Loaded};
use rootbox_core::image::Image;
use serde_json::json;

use crate::error::{guard, guard_value, rootbox_error_t, rootbox_status_t, Failure, Result};
use crate::runtime::{self, rootbox_runtime_t};
use crate::util;

/// An image of the store, as it was when it was looked up (its id, names and config do not
/// change afterwards). Immutable: usable from several threads at once.
pub struct rootbox_image_t {
    image: Image,
    id: CString,
}

impl rootbox_image_t {
    pub(crate) fn new(image: Image) -> rootbox_image_t {
        let id = util::cstring(&image.id().to_string());
        rootbox_image_t { image, id }
    }
}

fn loaded_to_json(l: &[Loaded]) -> serde_json::Value {
    l.iter()
        .map(|l| {
            json!({
                "Id": l.id.to_string(),
                "Names": l.names.iter().map(|n| n.familiar()).collect::<Vec<_>>(),
            })
        })
        .collect()
}

fn check_input(path: &Path) -> Result<()> {
    if !path.exists() {
        return Err(Failure::new(
            crate::error::ROOTBOX_ERROR_SYSTEM,
            format!("{}: no such file or directory", path.display()),
        ));
    }
    Ok(())
}

/// Imports a root filesystem tarball (plain, gzip or zstd) as a one-layer image, named
/// `reference` when not NULL (e.g. "busybox:demo"). When `out` is not NULL, `*out` is the new
/// image (free it with `rootbox_image_free`).
#[no_mangle]
pub unsafe extern "C" fn rootbox_image_import(
    runtime: *const rootbox_runtime_t,
    tarball: *const c_char,
    reference: *const c_char,
    out: *mut *mut rootbox_image_t,
    err: *mut *mut rootbox_error_t,
) -> rootbox_status_t {
    guard(err, || {
        // SAFETY: the arguments follow the documented contract (NULL or valid).
        let (rt, path, reference) = unsafe {
            (
                runtime::arg(runtime)?,
                util::str_arg(tarball, "tarball")?,
                util::opt_str(reference, "reference")?,
            )
        };
        let path = Path::new(path);
        check_input(path)?;
        let store = rt.store()?;
        let loaded = archive::import(&store, path, reference, &ImportOptions::default())?;
        if !out.is_null() {
            let img = store.resolve(&loaded.id.to_string())?;
            // SAFETY: `out` is not NULL and points to storage for a pointer.
            unsafe { util::write_out(out, util::into_handle(rootbox_image_t::new(img))) };
        }
        Ok(())
    })
}

/// Loads the images of a docker-archive or OCI archive (tar, optionally compressed) or OCI
/// layout directory. When `loaded_json` is not NULL, `*loaded_json` is a JSON array of
/// `{"Id": "sha256:...", "Names": ["name:tag", ...]}`, one per image (free it with
/// `rootbox_string_free`).
#[no_mangle]
pub unsafe extern "C" fn rootbox_image_load(
    runtime: *const rootbox_runtime_t,
    archive_path: *const c_char,
    loaded_json: *mut *mut c_char,
    err: *mut *mut rootbox_error_t,
) -> rootbox_status_t {
    guard(err, || {
        // SAFETY: the arguments follow the documented contract.
        let (rt, path) = unsafe {
            (
                runtime::arg(runtime)?,
                util::str_arg(archive_path, "archive_path")?,
            )
        };
        let path = Path::new(path);
        check_input(path)?;
        let loaded = archive::load(&rt.store()?, path)?;
        if !loaded_json.is_null() {
            let text = util::json_string(&loaded_to_json(&loaded))?;
            // SAFETY: not NULL, storage for a pointer.
            unsafe { util::write_out(loaded_json, text) };
        }
        Ok(())
    })
}

/// Lists the store's images: `*json` is a JSON array with one object per name (as
/// `rootbox images --format json`: Repository, Tag, ID, Digest, CreatedAt, Size, ...). Free it
/// with `rootbox_string_free`.
#[no_mangle]
pub unsafe extern "C" fn rootbox_image_list(
    runtime: *const rootbox_runtime_t,
    json: *mut *mut c_char,
    err: *mut *mut rootbox_error_t,
) -> rootbox_status_t {
    guard(err, || {
        // SAFETY: NULL or a live runtime.
        let rt = unsafe { runtime::arg(runtime) }?;
        util::out_arg(json, "json")?;
        let rows = rt.store()?.summaries()?;
        let text = util::json_string(&rows)?;
        // SAFETY: checked above.
        unsafe { util::write_out(json, text) };
        Ok(())
    })
}

/// Looks an image up by reference ("busybox", "busybox:demo"), id or unique id prefix.
/// `*out` is the image (free it with `rootbox_image_free`); ROOTBOX_ERROR_IMAGE_NOT_FOUND when
/// there is none.
#[no_mangle]
pub unsafe extern "C" fn rootbox_image_get(
    runtime: *const rootbox_runtime_t,
    reference: *const c_char,
    out: *mut *mut rootbox_image_t,
    err: *mut *mut rootbox_error_t,
) -> rootbox_status_t {
    guard(err, || {
        // SAFETY: the arguments follow the documented contract.
        let (rt, reference) = unsafe {
            (
                runtime::arg(runtime)?,
                util::str_arg(reference, "reference")?,
            )
        };
        util::out_arg(out, "out")?;
        let img = rt.store()?.resolve(reference)?;
        // SAFETY: checked above.
        unsafe { util::write_out(out, util::into_handle(rootbox_image_t::new(img))) };
        Ok(())
    })
}

/// Gives the image `source` (reference or id) the name `target` ("name:tag").
#[no_mangle]
pub unsafe extern "C" fn rootbox_image_tag(
    runtime: *const rootbox_runtime_t,
    source: *const c_char,
    target: *const c_char,
    err: *mut *mut rootbox_error_t,
) -> rootbox_status_t {
    guard(err, || {
        // SAFETY: the arguments follow the documented contract.
        let (rt, source, target) = unsafe {
            (
                runtime::arg(runtime)?,
                util::str_arg(source, "source")?,
                util::str_arg(target, "target")?,
            )
        };
        rt.store()?.tag(source, target)?;
        Ok(())
    })
}

/// Removes an image name (the image goes with its last name). An image that containers use, or
/// an id naming an image with several names, needs `force`.
#[no_mangle]
pub unsafe extern "C" fn rootbox_image_remove(
    runtime: *const rootbox_runtime_t,
    reference: *const c_char,
    force: bool,
    err: *mut *mut rootbox_error_t,
) -> rootbox_status_t {
    guard(err, || {
        // SAFETY: the arguments follow the documented contract.
        let (rt, reference) = unsafe {
            (
                runtime::arg(runtime)?,
                util::str_arg(reference, "reference")?,
            )
        };
        rt.store()?.remove(&[reference.to_string()], force)?;
        Ok(())
    })
}

/// The image id ("sha256:<64 hex>"), owned by the image handle. NULL for a NULL image.
#[no_mangle]
pub unsafe extern "C" fn rootbox_image_id(image: *const rootbox_image_t) -> *const c_char {
    guard_value(std::ptr::null(), || {
        // SAFETY: NULL or a live image.
        unsafe { image.as_ref() }.map_or(std::ptr::null(), |i| i.id.as_ptr())
    })
}

/// The image as JSON (as `rootbox image inspect`: Id, RepoTags, Config, RootFS, ...). Free
/// `*json` with `rootbox_string_free`.
#[no_mangle]
pub unsafe extern "C" fn rootbox_image_inspect(
    image: *const rootbox_image_t,
    json: *mut *mut c_char,
    err: *mut *mut rootbox_error_t,
) -> rootbox_status_t {
    guard(err, || {
        // SAFETY: NULL or a live image.
        let img = unsafe { util::handle(image, "image") }?;
        util::out_arg(json, "json")?;
        let text = util::json_string(&img.image.inspect())?;
        // SAFETY: checked above.
        unsafe { util::write_out(json, text) };
        Ok(())
    })
}

/// Frees an image handle (NULL is allowed). The image stays in the store.
#[no_mangle]
pub unsafe extern "C" fn rootbox_image_free(image: *mut rootbox_image_t) {
    guard_value((), || {
        // SAFETY: NULL or an image handle, not used afterwards.
        unsafe { util::free_handle(image) }
    })
}

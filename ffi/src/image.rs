//! Images in the store: import, load, pull, push, list, get, tag, remove, inspect (and the
//! image handle).

use std::ffi::{c_char, CString};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rootbox_core::image::archive::{self, ImportOptions, Loaded};
use rootbox_core::image::registry;
use rootbox_core::image::Image;
use serde_json::json;

use crate::error::{guard, guard_value, rootbox_error_t, rootbox_status_t, Failure, Result};
use crate::runtime::{self, rootbox_runtime_t};
use crate::{options, util};

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

/// Options of `rootbox_image_pull`; NULL means all defaults. Zero-initialise (`= {0}` /
/// `memset`), set `struct_size` to `sizeof(rootbox_pull_options_t)`, then what you need.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct rootbox_pull_options_t {
    /// `sizeof(rootbox_pull_options_t)`.
    pub struct_size: usize,
    /// User name for the registry (as `rootbox pull --creds USER:PASSWORD`): used instead of
    /// stored credentials for this call only, never written anywhere. NULL: the credentials
    /// `rootbox login` stored for the registry (see `authfile`), else anonymous.
    pub username: *const c_char,
    /// The password for `username` (NULL: empty). Only with `username`.
    pub password: *const c_char,
    /// Credentials file to read (`--authfile`), never written by a pull. NULL: the first of
    /// `$REGISTRY_AUTH_FILE`, `$XDG_RUNTIME_DIR/containers/auth.json`,
    /// `~/.config/containers/auth.json`, `~/.docker/config.json` with an entry for the registry.
    pub authfile: *const c_char,
    /// Directory of CA certificates (`*.crt`) to trust for the registry (`--cert-dir`). NULL:
    /// `$ROOTBOX_CERT_DIR`, else `~/.config/containers/certs.d/HOST:PORT/`,
    /// `/etc/containers/certs.d/HOST:PORT/`, `/etc/docker/certs.d/HOST:PORT/`.
    pub cert_dir: *const c_char,
    /// The platform to pick from a multi-arch image, "OS/ARCH[/VARIANT]" (`--platform`); NULL:
    /// linux and this machine's architecture.
    pub platform: *const c_char,
    /// Blobs transferred in parallel (`--jobs`); 0: 3.
    pub jobs: usize,
    /// Do not verify the registry's certificate, and fall back to plain HTTP
    /// (`--tls-verify=false`). Without it a registry is HTTPS and verified, unless
    /// `registries.conf` lists it `insecure = true`; `localhost` and 127.0.0.0/8 may always be
    /// plain HTTP.
    pub insecure: bool,
}

/// Options of `rootbox_image_push`; NULL means all defaults. Zero-initialise, set
/// `struct_size` to `sizeof(rootbox_push_options_t)`. The fields mean what they mean in
/// `rootbox_pull_options_t`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct rootbox_push_options_t {
    /// `sizeof(rootbox_push_options_t)`.
    pub struct_size: usize,
    /// User name for the registry, for this call only (never written anywhere); NULL: stored
    /// credentials, else anonymous.
    pub username: *const c_char,
    /// The password for `username` (NULL: empty).
    pub password: *const c_char,
    /// Credentials file to read (never written by a push); NULL: the default places.
    pub authfile: *const c_char,
    /// Directory of CA certificates (`*.crt`) to trust; NULL: `$ROOTBOX_CERT_DIR`, else the
    /// `certs.d` directories.
    pub cert_dir: *const c_char,
    /// Blobs transferred in parallel; 0: 3.
    pub jobs: usize,
    /// Do not verify the registry's certificate, and fall back to plain HTTP.
    pub insecure: bool,
}

/// The registry options of a pull or push, from the fields both options structs have.
///
/// # Safety
/// The string pointers are NULL or NUL-terminated strings valid for the call.
unsafe fn registry_options(
    username: *const c_char,
    password: *const c_char,
    authfile: *const c_char,
    cert_dir: *const c_char,
    jobs: usize,
    insecure: bool,
) -> Result<registry::Options> {
    // SAFETY: caller's contract.
    let (user, pass, authfile, cert_dir) = unsafe {
        (
            util::opt_string(username, "options.username")?,
            util::opt_string(password, "options.password")?,
            util::opt_path(authfile, "options.authfile")?,
            util::opt_path(cert_dir, "options.cert_dir")?,
        )
    };
    let creds = match (user, pass) {
        (None, None) => None,
        (None, Some(_)) => {
            return Err(Failure::arg(
                "options.password is set but options.username is NULL",
            ))
        }
        (Some(u), _) if u.is_empty() => {
            return Err(Failure::arg("options.username is empty"));
        }
        (Some(u), p) => Some((u, p.unwrap_or_default())),
    };
    // As the command line: `--cert-dir` defaults to $ROOTBOX_CERT_DIR.
    let cert_dir = cert_dir.or_else(|| {
        std::env::var_os("ROOTBOX_CERT_DIR")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    });
    Ok(registry::Options {
        tls_verify: insecure.then_some(false),
        cert_dir,
        creds,
        authfile,
        platform: None,
        jobs: (jobs > 0).then_some(jobs),
    })
}

/// Pulls an image from a registry into the store (like `rootbox pull -q`): the manifest (for a
/// multi-arch index, the one for `options->platform`), the config and the layers, each checked
/// against its digest before it enters the store, then unpacked. `reference` is
/// "[REGISTRY/]NAME[:TAG|@DIGEST]" ("127.0.0.1:5000/team/app:1"; no registry: docker.io).
/// `options` may be NULL. When `out` is not NULL, `*out` is the pulled image (free it with
/// `rootbox_image_free`). Nothing is printed. Errors: a bad reference is
/// ROOTBOX_ERROR_INVALID_ARGUMENT; no such repository, tag or digest in the registry is
/// ROOTBOX_ERROR_IMAGE_NOT_FOUND; an unreachable registry, a TLS failure or refused
/// credentials are ROOTBOX_ERROR_REGISTRY. Credentials given in `options` are used for this
/// call only and never stored.
#[no_mangle]
pub unsafe extern "C" fn rootbox_image_pull(
    runtime: *const rootbox_runtime_t,
    reference: *const c_char,
    options: *const rootbox_pull_options_t,
    out: *mut *mut rootbox_image_t,
    err: *mut *mut rootbox_error_t,
) -> rootbox_status_t {
    guard(err, || {
        // SAFETY: the arguments follow the documented contract (NULL or valid).
        let (rt, reference, o) = unsafe {
            (
                runtime::arg(runtime)?,
                util::str_arg(reference, "reference")?,
                options::read(options, "options")?,
            )
        };
        // SAFETY: the options' pointers follow the documented contract.
        let mut opts = unsafe {
            registry_options(
                o.username, o.password, o.authfile, o.cert_dir, o.jobs, o.insecure,
            )
        }?;
        // SAFETY: as above.
        opts.platform = unsafe { util::opt_string(o.platform, "options.platform") }?;
        let store = rt.store()?;
        let pulled = registry::pull(&store, reference, &opts, true, &registry::Quiet)?;
        if !out.is_null() {
            let img = util::into_handle(rootbox_image_t::new(pulled.image));
            // SAFETY: `out` is not NULL and points to storage for a pointer.
            unsafe { util::write_out(out, img) };
        }
        Ok(())
    })
}

/// Pushes the image `source` (a name or id in the store) to a registry (like `rootbox push`):
/// the blobs the registry lacks (a blob it has is skipped), then the manifest. `destination`
/// is "[REGISTRY/]NAME[:TAG]" ("127.0.0.1:5000/team/app:1"); NULL pushes to `source` taken as
/// a reference (which must then be one of the image's names). `options` may be NULL. When
/// `digest` is not NULL, `*digest` is the pushed manifest's digest ("sha256:...", free it with
/// `rootbox_string_free`): the image can be pulled back as `NAME@DIGEST`. Nothing is printed.
/// Errors: no such image in the store is ROOTBOX_ERROR_IMAGE_NOT_FOUND; a bad reference is
/// ROOTBOX_ERROR_INVALID_ARGUMENT; an unreachable registry, a TLS failure or refused
/// credentials are ROOTBOX_ERROR_REGISTRY. Credentials given in `options` are used for this
/// call only and never stored.
#[no_mangle]
pub unsafe extern "C" fn rootbox_image_push(
    runtime: *const rootbox_runtime_t,
    source: *const c_char,
    destination: *const c_char,
    options: *const rootbox_push_options_t,
    digest: *mut *mut c_char,
    err: *mut *mut rootbox_error_t,
) -> rootbox_status_t {
    guard(err, || {
        // SAFETY: the arguments follow the documented contract (NULL or valid).
        let (rt, source, destination, o) = unsafe {
            (
                runtime::arg(runtime)?,
                util::str_arg(source, "source")?,
                util::opt_str(destination, "destination")?,
                options::read(options, "options")?,
            )
        };
        // SAFETY: the options' pointers follow the documented contract.
        let opts = unsafe {
            registry_options(
                o.username, o.password, o.authfile, o.cert_dir, o.jobs, o.insecure,
            )
        }?;
        let store = rt.store()?;
        let pushed = registry::push(
            &store,
            source,
            destination,
            &opts,
            Arc::new(registry::Quiet),
        )?;
        if !digest.is_null() {
            let text = util::owned_string(&pushed.digest.to_string());
            // SAFETY: `digest` is not NULL and points to storage for a pointer.
            unsafe { util::write_out(digest, text) };
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

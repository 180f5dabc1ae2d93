//! Containers: create (from an image or an OCI bundle), start, wait, kill, stop, delete, run to
//! completion with captured output, exec, state, inspect, stats (and the container handle).
//!
//! Containers made by `rootbox_container_create*` run under their own monitor process (like
//! `rootbox create`/`start`), so they outlive the calling thread and process; a run made by
//! `rootbox_container_run` is a child of the calling process, waited for in the call.

use std::ffi::{c_char, c_int, CString};
use std::path::{Path, PathBuf};

use rootbox_core::container::commit::{self, CommitOptions};
use rootbox_core::container::manage::{self, NewContainer};
use rootbox_core::container::request::{self, Captured, RunRequest};
use rootbox_core::container::{exec, Container, StateRoot, Status};

use crate::error::{
    guard, guard_value, rootbox_error_t, rootbox_status_t, Failure, Result,
    ROOTBOX_ERROR_INVALID_CONFIG,
};
use crate::runtime::{self, rootbox_runtime_t};
use crate::{options, util};

/// What a container is made from and how it runs: the flags of `rootbox run`, as text.
/// Zero-initialise it (`= {0}` / `memset`), set `struct_size` to
/// `sizeof(rootbox_container_options_t)`, then what you need; every field may stay NULL / false.
/// String arrays are NULL-terminated.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct rootbox_container_options_t {
    /// `sizeof(rootbox_container_options_t)`.
    pub struct_size: usize,
    /// The image reference ("busybox:demo"); NULL when `rootfs` is given.
    pub image: *const c_char,
    /// A root filesystem directory instead of an image (`--rootfs`; needs `command`).
    pub rootfs: *const c_char,
    /// The command and its arguments (replaces the image's CMD); NULL: the image's.
    pub command: *const *const c_char,
    /// `--entrypoint` ("" clears the image's); NULL: the image's.
    pub entrypoint: *const c_char,
    /// Environment entries "NAME=VALUE" added to the image's.
    pub env: *const *const c_char,
    /// `--workdir`.
    pub workdir: *const c_char,
    /// `--user` ("UID[:GID]" or a name from the image's /etc/passwd).
    pub user: *const c_char,
    /// `--hostname`.
    pub hostname: *const c_char,
    /// `--name` (a name is generated when NULL).
    pub name: *const c_char,
    /// `--network`: "none", "host", "private" (pasta/slirp4netns); NULL: the default.
    pub network: *const c_char,
    /// `-v` values ("/host:/ctr[:ro]", "volname:/ctr").
    pub volumes: *const *const c_char,
    /// `--tmpfs` values ("/ctr[:options]").
    pub tmpfs: *const *const c_char,
    /// `-p` values ("8080:80").
    pub publish: *const *const c_char,
    /// `--memory` ("64m"); needs a delegated cgroup v2 (else ROOTBOX_ERROR_CGROUP).
    pub memory: *const c_char,
    /// `--cpus` ("0.5").
    pub cpus: *const c_char,
    /// `--pids-limit` ("100").
    pub pids_limit: *const c_char,
    /// Other resource flags of `rootbox run` as "option=value" ("memory-swap=128m",
    /// "cpu-weight=50", "cpuset-cpus=0", ...).
    pub resources: *const *const c_char,
    /// `--cgroup-limits`: "strict" (default: a limit this host cannot enforce is an error) or
    /// "best-effort" (start without it, with a warning on stderr).
    pub cgroup_limits: *const c_char,
    /// `--cgroup-manager`: "cgroupfs", "systemd"; NULL: chosen for the host.
    pub cgroup_manager: *const c_char,
    /// `--idmap`: "auto" (default), "single" or "subids".
    pub idmap: *const c_char,
    /// `--security-opt` values ("seccomp=unconfined", ...).
    pub security_opt: *const *const c_char,
    /// `--init`: a minimal init as PID 1.
    pub init: bool,
    /// `--read-only` root filesystem.
    pub read_only: bool,
    /// `--rm`: remove the container once it has exited.
    pub auto_remove: bool,
}

/// Options of `rootbox_container_exec`; NULL means all defaults. Zero-initialise, set
/// `struct_size` to `sizeof(rootbox_exec_options_t)`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct rootbox_exec_options_t {
    /// `sizeof(rootbox_exec_options_t)`.
    pub struct_size: usize,
    /// Extra environment entries "NAME=VALUE" (NULL-terminated), over the container's.
    pub env: *const *const c_char,
    /// Working directory (absolute); NULL: the container's.
    pub workdir: *const c_char,
    /// "UID[:GID]"; NULL: the container's user.
    pub user: *const c_char,
}

/// A container's state.
#[repr(C)]
#[allow(non_camel_case_types)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum rootbox_container_state_t {
    ROOTBOX_STATE_CREATING = 0,
    ROOTBOX_STATE_CREATED = 1,
    ROOTBOX_STATE_RUNNING = 2,
    ROOTBOX_STATE_PAUSED = 3,
    ROOTBOX_STATE_STOPPED = 4,
}

/// A container, by id. The handle only names it: every call reads its current state, so the
/// handle stays valid (and usable from several threads at once) whatever happens to the
/// container; calls on a removed one fail with ROOTBOX_ERROR_NOT_FOUND.
pub struct rootbox_container_t {
    root: StateRoot,
    /// The store of the runtime it was found through (for commit).
    store: PathBuf,
    id: CString,
    name: CString,
}

impl rootbox_container_t {
    fn new(c: &Container, rt: &rootbox_runtime_t) -> rootbox_container_t {
        rootbox_container_t {
            root: c.root.clone(),
            store: rt.dirs.store.clone(),
            id: util::cstring(c.id()),
            name: util::cstring(&c.record.name),
        }
    }

    fn id(&self) -> &str {
        self.id.to_str().unwrap_or_default()
    }

    fn load(&self) -> Result<Container> {
        Ok(Container::load(&self.root, self.id())?)
    }
}

/// What a container (or an exec) run to completion printed, and how it ended. Immutable.
pub struct rootbox_output_t {
    exit_code: c_int,
    oom_killed: bool,
    /// Each with a NUL after the data (not counted in the length).
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    container_id: Option<CString>,
}

impl rootbox_output_t {
    fn new(c: Captured, container_id: Option<&str>) -> rootbox_output_t {
        let nul = |mut v: Vec<u8>| {
            v.push(0);
            v
        };
        rootbox_output_t {
            exit_code: c.exit.code,
            oom_killed: c.exit.oom_killed,
            stdout: nul(c.stdout),
            stderr: nul(c.stderr),
            container_id: container_id.map(util::cstring),
        }
    }
}

fn set_opt(
    resources: &mut rootbox_core::cgroup::ResourceOptions,
    option: &str,
    value: Option<&str>,
) -> Result<()> {
    if let Some(v) = value {
        resources.set(option, v)?;
    }
    Ok(())
}

/// The request the options describe.
///
/// # Safety
/// `o`'s pointers are NULL or valid (strings NUL-terminated, arrays NULL-terminated).
unsafe fn request_from(o: &rootbox_container_options_t) -> Result<RunRequest> {
    // SAFETY: every pointer follows the documented contract (caller's).
    unsafe {
        let mut r = RunRequest {
            image: util::opt_string(o.image, "options.image")?,
            rootfs: util::opt_path(o.rootfs, "options.rootfs")?,
            command: util::str_array(o.command, "options.command")?,
            entrypoint: util::opt_string(o.entrypoint, "options.entrypoint")?,
            env: util::str_array(o.env, "options.env")?,
            workdir: util::opt_string(o.workdir, "options.workdir")?,
            user: util::opt_string(o.user, "options.user")?,
            hostname: util::opt_string(o.hostname, "options.hostname")?,
            name: util::opt_string(o.name, "options.name")?,
            network: util::opt_string(o.network, "options.network")?,
            volumes: util::str_array(o.volumes, "options.volumes")?,
            tmpfs: util::str_array(o.tmpfs, "options.tmpfs")?,
            publish: util::str_array(o.publish, "options.publish")?,
            idmap: util::opt_string(o.idmap, "options.idmap")?,
            security_opt: util::str_array(o.security_opt, "options.security_opt")?,
            init: o.init,
            read_only: o.read_only,
            auto_remove: o.auto_remove,
            ..Default::default()
        };
        set_opt(
            &mut r.resources,
            "memory",
            util::opt_str(o.memory, "options.memory")?,
        )?;
        set_opt(
            &mut r.resources,
            "cpus",
            util::opt_str(o.cpus, "options.cpus")?,
        )?;
        set_opt(
            &mut r.resources,
            "pids-limit",
            util::opt_str(o.pids_limit, "options.pids_limit")?,
        )?;
        if let Some(p) = util::opt_str(o.cgroup_limits, "options.cgroup_limits")? {
            r.cgroup.policy = p.parse()?;
        }
        if let Some(m) = util::opt_str(o.cgroup_manager, "options.cgroup_manager")? {
            r.cgroup.manager = m.parse()?;
        }
        for kv in util::str_array(o.resources, "options.resources")? {
            let (k, v) = kv.split_once('=').ok_or_else(|| {
                Failure::new(
                    ROOTBOX_ERROR_INVALID_CONFIG,
                    format!("options.resources entry {kv:?}: expected option=value"),
                )
            })?;
            r.resources.set(k, v)?;
        }
        Ok(r)
    }
}

/// Reads the options argument (required) into a request.
///
/// # Safety
/// NULL or a valid options struct of `struct_size` bytes.
unsafe fn request_arg(options: *const rootbox_container_options_t) -> Result<RunRequest> {
    if options.is_null() {
        return Err(Failure::arg("options is NULL"));
    }
    // SAFETY: caller's contract.
    let o = unsafe { options::read(options, "options") }?;
    // SAFETY: caller's contract.
    unsafe { request_from(&o) }
}

/// Borrows the container argument.
///
/// # Safety
/// NULL or a live container handle.
unsafe fn container_arg<'a>(c: *const rootbox_container_t) -> Result<&'a rootbox_container_t> {
    // SAFETY: caller's contract.
    unsafe { util::handle(c, "container") }
}

fn give_container(out: *mut *mut rootbox_container_t, c: &Container, rt: &rootbox_runtime_t) {
    if !out.is_null() {
        let handle = util::into_handle(rootbox_container_t::new(c, rt));
        // SAFETY: not NULL, storage for a pointer (caller's contract).
        unsafe { util::write_out(out, handle) };
    }
}

/// Creates a container from an image (or a root filesystem directory) as `options` describe,
/// set up and waiting for `rootbox_container_start` (like `rootbox create`). When `out` is not
/// NULL, `*out` is the new container (free the handle with `rootbox_container_free`; that does
/// not remove the container: `rootbox_container_delete` does).
#[no_mangle]
pub unsafe extern "C" fn rootbox_container_create(
    runtime: *const rootbox_runtime_t,
    options: *const rootbox_container_options_t,
    out: *mut *mut rootbox_container_t,
    err: *mut *mut rootbox_error_t,
) -> rootbox_status_t {
    guard(err, || {
        // SAFETY: the arguments follow the documented contract.
        let (rt, req) = unsafe { (runtime::arg(runtime)?, request_arg(options)?) };
        let prepared = request::prepare(&req, &rt.dirs)?;
        let c = prepared.create(&rt.root)?;
        give_container(out, &c, rt);
        Ok(())
    })
}

/// Creates a container from an OCI runtime bundle (like `rootbox-runtime create`, but managed
/// like `rootbox create`): `config_json` is the OCI runtime config as JSON text, or NULL to
/// read `BUNDLE/config.json`; a relative `root.path` is taken from `bundle`. `name` may be
/// NULL (one is generated). Malformed JSON or a config that cannot work gives
/// ROOTBOX_ERROR_INVALID_CONFIG with a message naming the bad field.
#[no_mangle]
pub unsafe extern "C" fn rootbox_container_create_oci(
    runtime: *const rootbox_runtime_t,
    bundle: *const c_char,
    config_json: *const c_char,
    name: *const c_char,
    out: *mut *mut rootbox_container_t,
    err: *mut *mut rootbox_error_t,
) -> rootbox_status_t {
    guard(err, || {
        // SAFETY: the arguments follow the documented contract.
        let (rt, bundle, json, name) = unsafe {
            (
                runtime::arg(runtime)?,
                util::str_arg(bundle, "bundle")?,
                util::opt_str(config_json, "config_json")?,
                util::opt_string(name, "name")?,
            )
        };
        let bundle = Path::new(bundle).canonicalize().map_err(|_| {
            Failure::new(
                ROOTBOX_ERROR_INVALID_CONFIG,
                format!("bundle {bundle} does not exist"),
            )
        })?;
        let spec = match json {
            None => rootbox_core::spec::load_bundle(&bundle)?,
            Some(text) => rootbox_core::spec::load_bundle_config(
                &bundle,
                text,
                Path::new("(config_json argument)"),
            )?,
        };
        let new = NewContainer {
            name,
            bundle: bundle.clone(),
            ..Default::default()
        };
        let c = manage::create(&rt.root, &spec, &new)?;
        give_container(out, &c, rt);
        Ok(())
    })
}

/// Runs a container to completion as `options` describe: stdin is /dev/null, stdout and stderr
/// are captured. Returns once it has exited; `*out` holds its exit code and output (free with
/// `rootbox_output_free`). A command that fails to start is an error (ROOTBOX_ERROR_LAUNCH,
/// exit code 127 when not found); a command that runs and exits non-zero is a success with
/// that exit code. With `options->auto_remove` the container is removed afterwards, else it
/// stays, stopped. The container is a child of the calling process (not of the calling
/// thread: the thread may end first).
#[no_mangle]
pub unsafe extern "C" fn rootbox_container_run(
    runtime: *const rootbox_runtime_t,
    options: *const rootbox_container_options_t,
    out: *mut *mut rootbox_output_t,
    err: *mut *mut rootbox_error_t,
) -> rootbox_status_t {
    guard(err, || {
        // SAFETY: the arguments follow the documented contract.
        let (rt, req) = unsafe { (runtime::arg(runtime)?, request_arg(options)?) };
        util::out_arg(out, "out")?;
        let prepared = request::prepare(&req, &rt.dirs)?;
        let id = prepared.id.clone();
        let captured = prepared.run_captured(&rt.root, req.auto_remove)?;
        let output = rootbox_output_t::new(captured, Some(&id));
        // SAFETY: checked above.
        unsafe { util::write_out(out, util::into_handle(output)) };
        Ok(())
    })
}

/// Looks a container up by id, name or unique id prefix. `*out` is a new handle.
#[no_mangle]
pub unsafe extern "C" fn rootbox_container_get(
    runtime: *const rootbox_runtime_t,
    reference: *const c_char,
    out: *mut *mut rootbox_container_t,
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
        let c = manage::lookup(&rt.root, reference)?;
        give_container(out, &c, rt);
        Ok(())
    })
}

/// Starts a created container (or a stopped one again). Returns once its command runs; a
/// command that cannot be started is ROOTBOX_ERROR_LAUNCH.
#[no_mangle]
pub unsafe extern "C" fn rootbox_container_start(
    container: *const rootbox_container_t,
    err: *mut *mut rootbox_error_t,
) -> rootbox_status_t {
    guard(err, || {
        // SAFETY: NULL or a live handle.
        let c = unsafe { container_arg(container) }?;
        manage::start(&c.root, c.id())?;
        Ok(())
    })
}

/// Waits until the container has exited; `*exit_code` is its exit code (128+N when killed by
/// signal N). Returns at once for a stopped container.
#[no_mangle]
pub unsafe extern "C" fn rootbox_container_wait(
    container: *const rootbox_container_t,
    exit_code: *mut c_int,
    err: *mut *mut rootbox_error_t,
) -> rootbox_status_t {
    guard(err, || {
        // SAFETY: NULL or a live handle.
        let c = unsafe { container_arg(container) }?;
        util::out_arg(exit_code, "exit_code")?;
        let code = manage::wait(&c.root, c.id())?;
        // SAFETY: checked above.
        unsafe { util::write_out(exit_code, code) };
        Ok(())
    })
}

/// Sends `signal` (e.g. SIGKILL) to the container's first process. ROOTBOX_ERROR_WRONG_STATE
/// when it is not running.
#[no_mangle]
pub unsafe extern "C" fn rootbox_container_kill(
    container: *const rootbox_container_t,
    signal: c_int,
    err: *mut *mut rootbox_error_t,
) -> rootbox_status_t {
    guard(err, || {
        // SAFETY: NULL or a live handle.
        let c = unsafe { container_arg(container) }?;
        if !(1..=64).contains(&signal) {
            return Err(Failure::arg(format!(
                "signal {signal} is not a signal number"
            )));
        }
        manage::kill(&c.root, c.id(), signal)?;
        Ok(())
    })
}

/// Stops the container: its stop signal (SIGTERM unless configured), then SIGKILL after
/// `timeout_seconds` (negative: the container's stop timeout, else 10). Returns once it has
/// exited. Stopping a stopped container succeeds.
#[no_mangle]
pub unsafe extern "C" fn rootbox_container_stop(
    container: *const rootbox_container_t,
    timeout_seconds: c_int,
    err: *mut *mut rootbox_error_t,
) -> rootbox_status_t {
    guard(err, || {
        // SAFETY: NULL or a live handle.
        let c = unsafe { container_arg(container) }?;
        let timeout = u32::try_from(timeout_seconds).ok();
        manage::stop(&c.root, c.id(), timeout, None)?;
        Ok(())
    })
}

/// Removes the container and everything it made (state, writable layer, cgroup). A running
/// container needs `force` (it is killed first), else ROOTBOX_ERROR_WRONG_STATE. The handle
/// stays to be freed.
#[no_mangle]
pub unsafe extern "C" fn rootbox_container_delete(
    container: *const rootbox_container_t,
    force: bool,
    err: *mut *mut rootbox_error_t,
) -> rootbox_status_t {
    guard(err, || {
        // SAFETY: NULL or a live handle.
        let c = unsafe { container_arg(container) }?;
        manage::remove(&c.root, c.id(), force)?;
        Ok(())
    })
}

/// The container's current state (read from its process, not only from what was recorded).
#[no_mangle]
pub unsafe extern "C" fn rootbox_container_state(
    container: *const rootbox_container_t,
    state: *mut rootbox_container_state_t,
    err: *mut *mut rootbox_error_t,
) -> rootbox_status_t {
    use rootbox_container_state_t::*;
    guard(err, || {
        // SAFETY: NULL or a live handle.
        let c = unsafe { container_arg(container) }?;
        util::out_arg(state, "state")?;
        let s = match c.load()?.status() {
            Status::Creating => ROOTBOX_STATE_CREATING,
            Status::Created => ROOTBOX_STATE_CREATED,
            Status::Running => ROOTBOX_STATE_RUNNING,
            Status::Paused => ROOTBOX_STATE_PAUSED,
            Status::Stopped => ROOTBOX_STATE_STOPPED,
        };
        // SAFETY: checked above.
        unsafe { util::write_out(state, s) };
        Ok(())
    })
}

/// The container as JSON, as `rootbox inspect` prints it (Id, Name, State, Config, Mounts,
/// HostConfig, ...). Free `*json` with `rootbox_string_free`.
#[no_mangle]
pub unsafe extern "C" fn rootbox_container_inspect(
    container: *const rootbox_container_t,
    json: *mut *mut c_char,
    err: *mut *mut rootbox_error_t,
) -> rootbox_status_t {
    guard(err, || {
        // SAFETY: NULL or a live handle.
        let c = unsafe { container_arg(container) }?;
        util::out_arg(json, "json")?;
        let text = util::json_string(&manage::inspect(&c.load()?))?;
        // SAFETY: checked above.
        unsafe { util::write_out(json, text) };
        Ok(())
    })
}

/// Usage figures from the container's cgroup as JSON (memory_current, memory_peak,
/// memory_limit, cpu_usage_usec, pids_current, oom_kills, ...). ROOTBOX_ERROR_CGROUP when the
/// container has no cgroup (a host that delegates no cgroup v2 to the user). Free `*json` with
/// `rootbox_string_free`.
#[no_mangle]
pub unsafe extern "C" fn rootbox_container_stats(
    container: *const rootbox_container_t,
    json: *mut *mut c_char,
    err: *mut *mut rootbox_error_t,
) -> rootbox_status_t {
    guard(err, || {
        // SAFETY: NULL or a live handle.
        let c = unsafe { container_arg(container) }?;
        util::out_arg(json, "json")?;
        let stats = c.load()?.stats()?;
        let text = util::json_string(&stats)?;
        // SAFETY: checked above.
        unsafe { util::write_out(json, text) };
        Ok(())
    })
}

/// Runs `argv` (NULL-terminated, at least the command) inside the running container to its end,
/// stdin from /dev/null, stdout and stderr captured in `*out` (free with
/// `rootbox_output_free`). `options` may be NULL.
#[no_mangle]
pub unsafe extern "C" fn rootbox_container_exec(
    container: *const rootbox_container_t,
    argv: *const *const c_char,
    options: *const rootbox_exec_options_t,
    out: *mut *mut rootbox_output_t,
    err: *mut *mut rootbox_error_t,
) -> rootbox_status_t {
    guard(err, || {
        // SAFETY: the arguments follow the documented contract.
        let (c, args, o) = unsafe {
            (
                container_arg(container)?,
                util::str_array(argv, "argv")?,
                options::read(options, "options")?,
            )
        };
        util::out_arg(out, "out")?;
        if args.is_empty() || args[0].is_empty() {
            return Err(Failure::arg("argv is empty: give at least the command"));
        }
        // SAFETY: the options' pointers follow the documented contract.
        let (env, workdir, user) = unsafe {
            (
                util::str_array(o.env, "options.env")?,
                util::opt_str(o.workdir, "options.workdir")?,
                util::opt_str(o.user, "options.user")?,
            )
        };
        if let Some(w) = workdir.filter(|w| !w.starts_with('/')) {
            return Err(Failure::new(
                ROOTBOX_ERROR_INVALID_CONFIG,
                format!("options.workdir {w:?} is not an absolute path"),
            ));
        }
        let container = c.load()?;
        let mut p = exec::process_for(&container, args, &env, workdir, false)?;
        if let Some(u) = user {
            let (uid, gid) = rootbox_core::spec::parse_numeric_user(u)?;
            let mut user = p.user().clone();
            user.set_uid(uid);
            user.set_gid(gid.unwrap_or(uid));
            user.set_additional_gids(None);
            p.set_user(user);
        }
        let captured = exec::exec_captured(&c.root, c.id(), &p)?;
        // SAFETY: checked above.
        unsafe {
            util::write_out(
                out,
                util::into_handle(rootbox_output_t::new(captured, None)),
            )
        };
        Ok(())
    })
}

/// Options of `rootbox_container_commit`; NULL means all defaults (a dangling image, the
/// container paused meanwhile). Zero-initialise, set `struct_size` to
/// `sizeof(rootbox_commit_options_t)`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct rootbox_commit_options_t {
    /// `sizeof(rootbox_commit_options_t)`.
    pub struct_size: usize,
    /// The new image's name ("name:tag"); NULL: a dangling (`<none>`) image.
    pub reference: *const c_char,
    /// The commit message (`-m`).
    pub message: *const c_char,
    /// The author (`-a`).
    pub author: *const c_char,
    /// Dockerfile instructions applied to the image config (`-c`: "CMD ...", "ENV A=b", ...),
    /// NULL-terminated.
    pub changes: *const *const c_char,
    /// Do not freeze the container while its layer is read (`--pause=false`).
    pub no_pause: bool,
}

/// Makes a new image from the container's writable layer (like `rootbox commit`): its changes
/// become a layer over its image's, with a history entry and `options->changes` applied. When
/// `out` is not NULL, `*out` is the new image (free with `rootbox_image_free`). A container
/// made from a root directory (`rootfs`) has no layers: ROOTBOX_ERROR_INVALID_ARGUMENT.
#[no_mangle]
pub unsafe extern "C" fn rootbox_container_commit(
    container: *const rootbox_container_t,
    options: *const rootbox_commit_options_t,
    out: *mut *mut crate::image::rootbox_image_t,
    err: *mut *mut rootbox_error_t,
) -> rootbox_status_t {
    guard(err, || {
        // SAFETY: the arguments follow the documented contract.
        let (c, o) = unsafe {
            (
                container_arg(container)?,
                options::read(options, "options")?,
            )
        };
        // SAFETY: the options' pointers follow the documented contract.
        let opts = unsafe {
            CommitOptions {
                reference: util::opt_string(o.reference, "options.reference")?,
                message: util::opt_string(o.message, "options.message")?,
                author: util::opt_string(o.author, "options.author")?,
                changes: util::str_array(o.changes, "options.changes")?,
                pause: !o.no_pause,
            }
        };
        let done = commit::commit(&c.root, &c.store, c.id(), &opts)?;
        if !out.is_null() {
            let store = rootbox_core::image::Store::open(Some(c.store.clone()))?;
            let img = crate::image::rootbox_image_t::new(store.resolve(&done.id.to_string())?);
            // SAFETY: not NULL, storage for a pointer.
            unsafe { util::write_out(out, util::into_handle(img)) };
        }
        Ok(())
    })
}

/// The container's id (64 hex digits), owned by the handle. NULL for NULL.
#[no_mangle]
pub unsafe extern "C" fn rootbox_container_id(
    container: *const rootbox_container_t,
) -> *const c_char {
    guard_value(std::ptr::null(), || {
        // SAFETY: NULL or a live handle.
        unsafe { container.as_ref() }.map_or(std::ptr::null(), |c| c.id.as_ptr())
    })
}

/// The container's name when the handle was made, owned by the handle. NULL for NULL.
#[no_mangle]
pub unsafe extern "C" fn rootbox_container_name(
    container: *const rootbox_container_t,
) -> *const c_char {
    guard_value(std::ptr::null(), || {
        // SAFETY: NULL or a live handle.
        unsafe { container.as_ref() }.map_or(std::ptr::null(), |c| c.name.as_ptr())
    })
}

/// Frees a container handle (NULL is allowed). The container itself stays.
#[no_mangle]
pub unsafe extern "C" fn rootbox_container_free(container: *mut rootbox_container_t) {
    guard_value((), || {
        // SAFETY: NULL or a handle, not used afterwards.
        unsafe { util::free_handle(container) }
    })
}

/// The exit code of the run or exec (128+N when killed by signal N); -1 for NULL.
#[no_mangle]
pub unsafe extern "C" fn rootbox_output_exit_code(output: *const rootbox_output_t) -> c_int {
    // SAFETY: NULL or a live output.
    guard_value(-1, || {
        unsafe { output.as_ref() }.map_or(-1, |o| o.exit_code)
    })
}

/// Whether the OOM killer killed a process of the container (its memory limit was hit).
#[no_mangle]
pub unsafe extern "C" fn rootbox_output_oom_killed(output: *const rootbox_output_t) -> bool {
    // SAFETY: NULL or a live output.
    guard_value(false, || {
        unsafe { output.as_ref() }.is_some_and(|o| o.oom_killed)
    })
}

fn bytes(v: &[u8], len: *mut usize) -> *const u8 {
    if !len.is_null() {
        // SAFETY: not NULL, storage for a size_t (caller's contract).
        unsafe { len.write(v.len().saturating_sub(1)) };
    }
    v.as_ptr()
}

/// What the command wrote to stdout: `*len` bytes (when `len` is not NULL), followed by a NUL
/// (so text output can be used as a C string). Owned by the output. NULL for NULL.
#[no_mangle]
pub unsafe extern "C" fn rootbox_output_stdout(
    output: *const rootbox_output_t,
    len: *mut usize,
) -> *const u8 {
    guard_value(std::ptr::null(), || {
        // SAFETY: NULL or a live output.
        unsafe { output.as_ref() }.map_or(std::ptr::null(), |o| bytes(&o.stdout, len))
    })
}

/// What the command wrote to stderr, as `rootbox_output_stdout`.
#[no_mangle]
pub unsafe extern "C" fn rootbox_output_stderr(
    output: *const rootbox_output_t,
    len: *mut usize,
) -> *const u8 {
    guard_value(std::ptr::null(), || {
        // SAFETY: NULL or a live output.
        unsafe { output.as_ref() }.map_or(std::ptr::null(), |o| bytes(&o.stderr, len))
    })
}

/// The id of the container that ran (`rootbox_container_run`; NULL for an exec), owned by the
/// output. Without `auto_remove` it can be looked up with `rootbox_container_get`.
#[no_mangle]
pub unsafe extern "C" fn rootbox_output_container_id(
    output: *const rootbox_output_t,
) -> *const c_char {
    guard_value(std::ptr::null(), || {
        // SAFETY: NULL or a live output.
        unsafe { output.as_ref() }
            .and_then(|o| o.container_id.as_ref())
            .map_or(std::ptr::null(), |c| c.as_ptr())
    })
}

/// Frees an output (NULL is allowed).
#[no_mangle]
pub unsafe extern "C" fn rootbox_output_free(output: *mut rootbox_output_t) {
    guard_value((), || {
        // SAFETY: NULL or an output, not used afterwards.
        unsafe { util::free_handle(output) }
    })
}

//! A container asked for in a user's words: `rootbox run`/`create`, the C ABI and the Python
//! module all describe the container they want as a [`RunRequest`] (the flags of `rootbox run`,
//! as text), [`prepare`] it — parse and check everything, make the root filesystem from the
//! image, plan the network — and then start it in the foreground ([`Prepared::start`]), under a
//! monitor in the background ([`Prepared::start_detached`]) or only create it
//! ([`Prepared::create`]).

use std::os::fd::RawFd;
use std::path::{Path, PathBuf};

use super::create::CreateOptions;
use super::from_image::{self, FromImage};
use super::manage::{self, NewContainer};
use super::run::{Exit, Running};
use super::state::StateRoot;
use super::{names, Container};
use crate::cgroup::{CgroupOptions, ResourceOptions};
use crate::idmap::IdMapMode;
use crate::image::Store;
use crate::network;
use crate::rootfs::{Driver, Layers, MountRequest, Setup};
use crate::spec::{BindVolume, OciSpec, RunOptions, SeccompChoice, SpecError};
use crate::Error;

/// Where containers and images live.
#[derive(Debug, Clone)]
pub struct Dirs {
    /// Container state (`$XDG_RUNTIME_DIR/rootbox` by default).
    pub state: PathBuf,
    /// The store: images and volumes (`~/.local/share/rootbox` by default).
    pub store: PathBuf,
}

impl Dirs {
    /// The defaults, each overridable (`--state-dir`, `--root`).
    pub fn new(state: Option<&Path>, store: Option<&Path>) -> Dirs {
        Dirs {
            state: state
                .map(Path::to_path_buf)
                .unwrap_or_else(|| StateRoot::default_path("rootbox")),
            store: crate::rootfs::data_root(store),
        }
    }
}

/// Everything `rootbox run` can be asked, in the same words as its flags.
#[derive(Debug, Clone, Default)]
pub struct RunRequest {
    /// The image reference; `None` with [`RunRequest::rootfs`].
    pub image: Option<String>,
    /// A root filesystem directory instead of an image.
    pub rootfs: Option<PathBuf>,
    /// The command (with an image: replaces its CMD; empty keeps it).
    pub command: Vec<String>,
    /// `--entrypoint` (`Some("")` clears the image's).
    pub entrypoint: Option<String>,
    /// `--rootfs-overlay lower=..,upper=..,work=..`.
    pub rootfs_overlay: Option<String>,
    /// `--storage-driver`.
    pub storage_driver: Option<String>,
    /// `-v` values.
    pub volumes: Vec<String>,
    /// `--mount` values.
    pub mounts: Vec<String>,
    /// `--tmpfs` values.
    pub tmpfs: Vec<String>,
    /// `-e NAME=VALUE` (or `NAME` to pass the caller's value).
    pub env: Vec<String>,
    pub workdir: Option<String>,
    pub user: Option<String>,
    pub hostname: Option<String>,
    pub init: bool,
    pub read_only: bool,
    pub tty: bool,
    /// `-i`: keep stdin open.
    pub interactive: bool,
    /// `--idmap auto|single|subids` (`None`: auto).
    pub idmap: Option<String>,
    /// `--network`.
    pub network: Option<String>,
    /// `-p` values.
    pub publish: Vec<String>,
    pub publish_all: bool,
    /// `--add-host NAME:IP`.
    pub add_hosts: Vec<String>,
    pub dns: Vec<String>,
    pub dns_search: Vec<String>,
    /// `--security-opt`.
    pub security_opt: Vec<String>,
    pub name: Option<String>,
    /// `--rm`.
    pub auto_remove: bool,
    pub stop_signal: Option<String>,
    pub stop_timeout: Option<u32>,
    /// `--memory`, `--cpus`, ... ([`ResourceOptions::set`] parses each flag's text).
    pub resources: ResourceOptions,
    pub cgroup_parent: Option<String>,
    /// `--cgroup-manager`, `--cgroup-limits`.
    pub cgroup: CgroupOptions,
}

/// A container ready to start: its spec, root filesystem plan and network plan.
#[derive(Debug)]
pub struct Prepared {
    pub id: String,
    pub spec: OciSpec,
    setup: Setup,
    net: network::Prepared,
    name: Option<String>,
    image: Option<String>,
    stop_signal: Option<String>,
    stop_timeout: Option<u32>,
    open_stdin: bool,
    auto_remove: bool,
    /// Things to tell the user (the network's fallback note, the ports chosen for them).
    pub notes: Vec<String>,
    layer: LayerGuard,
}

/// Removes the writable layer made from the image for a container that never got registered
/// (a registered container's goes with `rm`).
#[derive(Debug)]
struct LayerGuard {
    store: PathBuf,
    state: PathBuf,
    id: String,
    armed: bool,
}

impl Drop for LayerGuard {
    fn drop(&mut self) {
        let registered = StateRoot {
            path: self.state.clone(),
        }
        .dir(&self.id)
        .exists();
        if self.armed && !registered {
            if let Ok(store) = Store::open(Some(self.store.clone())) {
                let _ = store.remove_container_dirs(&self.id);
            }
        }
    }
}

fn invalid(m: String) -> Error {
    Error::from(SpecError::Invalid(m))
}

/// Parses and checks `req`, makes the container's root filesystem from its image, and plans
/// its network. Nothing runs yet; dropping the result undoes what was made.
pub fn prepare(req: &RunRequest, dirs: &Dirs) -> Result<Prepared, Error> {
    let idmap: IdMapMode = req
        .idmap
        .as_deref()
        .unwrap_or("auto")
        .parse()
        .map_err(SpecError::from)?;
    let net_mode = req
        .network
        .as_deref()
        .map(str::parse::<network::Mode>)
        .transpose()?;
    let network_host = net_mode == Some(network::Mode::Host);
    let publish = req
        .publish
        .iter()
        .map(|p| p.parse::<network::PortSpec>())
        .collect::<Result<Vec<_>, _>>()?;
    let chosen_ports = req.publish_all || publish.iter().any(|p| p.host_port.is_none());
    let add_hosts = req
        .add_hosts
        .iter()
        .map(|h| h.parse::<network::HostEntry>())
        .collect::<Result<Vec<_>, _>>()?;
    let dns = req
        .dns
        .iter()
        .map(|d| {
            d.parse::<std::net::IpAddr>()
                .map_err(|_| invalid(format!("invalid --dns {d:?}: not an IP address")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    for d in &req.dns_search {
        if !network::etc::valid_hostname(d) {
            return Err(invalid(format!(
                "invalid --dns-search {d:?}: not a domain name"
            )));
        }
    }
    if let Some(n) = &req.name {
        names::validate_name(n)?;
    }
    let mut volumes: Vec<BindVolume> = Vec::new();
    let mut tmpfs = req.tmpfs.clone();
    let mut setup = Setup {
        store: dirs.store.clone(),
        etc_files: true,
        network_host,
        ..Default::default()
    };
    let requests = req
        .volumes
        .iter()
        .map(|v| MountRequest::parse_volume(v))
        .chain(req.mounts.iter().map(|m| MountRequest::parse_mount(m)));
    for r in requests {
        match r? {
            MountRequest::Bind(b) => volumes.push(b),
            MountRequest::Volume(v) => setup.volumes.push(v),
            t @ MountRequest::Tmpfs { .. } => tmpfs.extend(t.tmpfs_arg()),
        }
    }
    let image = match (&req.image, &req.rootfs) {
        (Some(_), Some(_)) => {
            return Err(invalid(
                "both an image and --rootfs given: a container has one root filesystem".into(),
            ))
        }
        (None, None) => {
            return Err(invalid(
                "no image given: rootbox run [OPTIONS] IMAGE [CMD...] (or --rootfs DIR CMD...)"
                    .into(),
            ))
        }
        (None, Some(_)) if req.command.is_empty() => {
            return Err(invalid(
                "no command given: rootbox run --rootfs DIR -- CMD [ARG...]".into(),
            ))
        }
        (Some(i), None) if i.is_empty() => {
            return Err(invalid("empty image reference".into()));
        }
        (i, _) => i.clone(),
    };
    if image.is_none() && req.entrypoint.is_some() {
        return Err(invalid(
            "--entrypoint applies to an image, not to --rootfs".into(),
        ));
    }
    let rootfs_layers = match (&req.rootfs_overlay, &req.storage_driver) {
        (Some(_), _) if image.is_some() => {
            return Err(invalid(
                "--rootfs-overlay needs --rootfs DIR (its mount point)".into(),
            ))
        }
        (None, Some(_)) if image.is_some() => None,
        (Some(spec), driver) => {
            let mut l: Layers = spec.parse()?;
            if let Some(d) = driver {
                l.driver = d.parse()?;
            }
            Some(l)
        }
        (None, Some(d)) => {
            d.parse::<Driver>()?;
            return Err(invalid(
                "--storage-driver applies to a layered rootfs (--rootfs-overlay)".into(),
            ));
        }
        (None, None) => None,
    };
    let mut seccomp = SeccompChoice::Default;
    for o in &req.security_opt {
        match o.split_once(['=', ':']) {
            Some(("seccomp", "unconfined")) => seccomp = SeccompChoice::Unconfined,
            Some(("seccomp", path)) => seccomp = SeccompChoice::Profile(PathBuf::from(path)),
            None if o == "no-new-privileges" => {}
            Some(("no-new-privileges", "true")) => {}
            _ => return Err(invalid(format!("unknown --security-opt {o:?}"))),
        }
    }
    let mut opts = RunOptions {
        rootfs: req.rootfs.clone().unwrap_or_default(),
        args: req.command.clone(),
        env: req.env.clone(),
        cwd: req.workdir.clone(),
        user: req.user.clone(),
        hostname: req.hostname.clone(),
        init: req.init,
        read_only: req.read_only,
        volumes,
        tmpfs,
        tty: req.tty,
        idmap,
        network_host,
        seccomp,
        network: network::NetworkOptions {
            mode: net_mode,
            publish,
            publish_all: req.publish_all,
            exposed: Vec::new(),
            add_hosts,
            dns,
            dns_search: req.dns_search.clone(),
        },
        resources: req.resources.clone(),
        cgroup_parent: req.cgroup_parent.clone(),
        rootfs_layers,
    };
    let id = super::new_id();
    let mut stop_signal = req.stop_signal.clone();
    let mut layer = LayerGuard {
        store: dirs.store.clone(),
        state: dirs.state.clone(),
        id: id.clone(),
        armed: false,
    };
    if let Some(reference) = &image {
        let driver = match &req.storage_driver {
            Some(d) => d.parse()?,
            None => Driver::default(),
        };
        let from = FromImage {
            store: &dirs.store,
            state: &dirs.state,
            reference,
            entrypoint: req.entrypoint.as_deref(),
            driver,
        };
        let prepared = from_image::prepare(&id, &from, &mut opts, &mut setup)?;
        // From here on, `layer` removes the writable layer if anything fails.
        layer.armed = true;
        if stop_signal.is_none() {
            stop_signal = prepared.applied.stop_signal.clone();
        }
        opts.network.exposed = prepared.applied.exposed_ports.clone();
    }
    let mut spec = opts.to_spec(&id)?;
    req.cgroup.annotate(&mut spec);
    // Limits this host cannot enforce at all are refused here, typed, before a monitor runs.
    crate::cgroup::setup::check(&spec, &req.cgroup)?;
    let root = StateRoot::open(&dirs.state)?;
    let net = network::prepare(&opts.network, &root, &id, req.name.as_deref(), &mut spec)?;
    let mut notes = Vec::new();
    if let Some(note) = &net.note {
        notes.push(format!("note: {note}"));
    }
    if chosen_ports {
        for p in net.ports() {
            notes.push(format!("publishing {p}"));
        }
    }
    setup.network = Some(net.facts());
    Ok(Prepared {
        id,
        spec,
        setup,
        net,
        name: req.name.clone(),
        image,
        stop_signal,
        stop_timeout: req.stop_timeout,
        open_stdin: req.interactive,
        auto_remove: req.auto_remove,
        notes,
        layer,
    })
}

/// A foreground container, started by this process: wait for it with [`Foreground::wait`].
#[derive(Debug)]
pub struct Foreground {
    pub running: Running,
    root: StateRoot,
    name: String,
    auto_remove: bool,
}

impl Foreground {
    /// Waits for the command to exit. With `remove` the container is removed (and its name
    /// free again); else it stays, stopped, until `rm`.
    pub fn wait(self, remove: bool) -> Result<Exit, Error> {
        let Foreground {
            running,
            root,
            name,
            ..
        } = self;
        let id = running.container.id().to_string();
        let exit = running.wait_exit(remove);
        if remove {
            names::release(&root, &name, &id);
        }
        Ok(exit?)
    }

    /// Whether `--rm` was asked.
    pub fn auto_remove(&self) -> bool {
        self.auto_remove
    }

    /// The name the container got (given or generated).
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Prepared {
    /// The image the container was made from, when any.
    pub fn image(&self) -> Option<&str> {
        self.image.as_deref()
    }

    fn new_container(&self) -> NewContainer {
        NewContainer {
            id: Some(self.id.clone()),
            name: self.name.clone(),
            bundle: std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/")),
            open_stdin: self.open_stdin,
            auto_remove: self.auto_remove,
            stop_signal: self.stop_signal.clone(),
            stop_timeout: self.stop_timeout,
            image: self.image.clone().unwrap_or_default(),
            rootfs_setup: Some(self.setup.clone()),
            network: Some(self.net.clone()),
        }
    }

    /// Creates the container under its monitor, set up and waiting for `start`.
    pub fn create(mut self, root: &StateRoot) -> Result<Container, Error> {
        let c = manage::create(root, &self.spec, &self.new_container())?;
        self.layer.armed = false;
        Ok(c)
    }

    /// Starts the container in the background under its monitor (`run -d`).
    pub fn start_detached(mut self, root: &StateRoot) -> Result<Container, Error> {
        let c = manage::run_detached(root, &self.spec, &self.new_container())?;
        self.layer.armed = false;
        Ok(c)
    }

    /// Starts the container in this process's foreground: `stdio` are the fds for its stdin,
    /// stdout and stderr (`None`: ours; ignored with a terminal). With `kill_on_parent_death`,
    /// the container dies with this process.
    pub fn start(
        mut self,
        root: &StateRoot,
        stdio: Option<[RawFd; 3]>,
        kill_on_parent_death: bool,
    ) -> Result<Foreground, Error> {
        let name = match &self.name {
            Some(n) => {
                names::reserve(root, n, &self.id)?;
                n.clone()
            }
            None => names::generate(root, &self.id)?,
        };
        let copts = CreateOptions {
            bundle: std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/")),
            stdio,
            kill_on_parent_death,
            rootfs_setup: Some(self.setup.clone()),
            name: name.clone(),
            network: Some(std::sync::Arc::new(self.net.clone())),
            ..Default::default()
        };
        let running = match super::run::run(root, &self.id, &self.spec, &copts) {
            Ok(r) => r,
            Err(e) => {
                names::release(root, &name, &self.id);
                return Err(e.into());
            }
        };
        // Registered (and removed with the container from now on).
        self.layer.armed = false;
        if let Some(image) = &self.image {
            let _ = manage::update(root, &self.id, |r| r.lifecycle.image = image.clone());
        }
        Ok(Foreground {
            running,
            root: root.clone(),
            name,
            auto_remove: self.auto_remove,
        })
    }
}

/// What a container run to completion printed, and how it ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Captured {
    pub exit: Exit,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

pub(crate) fn pipe() -> Result<(std::fs::File, std::fs::File), Error> {
    let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| invalid(format!("making a pipe for the container's output: {e}")))?;
    Ok((std::fs::File::from(r), std::fs::File::from(w)))
}

pub(crate) fn read_all(mut f: std::fs::File) -> Vec<u8> {
    use std::io::Read;
    let mut buf = Vec::new();
    let _ = f.read_to_end(&mut buf);
    buf
}

impl Prepared {
    /// Runs the container to its end with stdin from /dev/null and its stdout and stderr
    /// captured (the library's `run`: C's `rootbox_container_run`, Python's
    /// `containers.run`). With `remove`, the container is removed afterwards; else it stays,
    /// stopped. Never kills the container when the calling thread ends (a library's caller
    /// may start it from a short-lived thread).
    pub fn run_captured(self, root: &StateRoot, remove: bool) -> Result<Captured, Error> {
        use std::os::fd::AsRawFd;
        let null =
            std::fs::File::open("/dev/null").map_err(|e| invalid(format!("/dev/null: {e}")))?;
        let (out_r, out_w) = pipe()?;
        let (err_r, err_w) = pipe()?;
        let fg = self.start(
            root,
            Some([null.as_raw_fd(), out_w.as_raw_fd(), err_w.as_raw_fd()]),
            false,
        )?;
        // Only the container holds the write ends now: EOF comes when it is gone.
        drop((null, out_w, err_w));
        let err_thread = std::thread::spawn(move || read_all(err_r));
        let stdout = read_all(out_r);
        let stderr = err_thread.join().unwrap_or_default();
        let exit = fg.wait(remove)?;
        Ok(Captured {
            exit,
            stdout,
            stderr,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dirs(tag: &str) -> Dirs {
        let base = std::env::temp_dir().join(format!("rb-request-{tag}-{}", std::process::id()));
        Dirs {
            state: base.join("state"),
            store: base.join("store"),
        }
    }

    #[test]
    fn bad_requests_name_what_is_wrong() {
        let d = dirs("bad");
        let cases: Vec<(RunRequest, &str)> = vec![
            (RunRequest::default(), "no image given"),
            (
                RunRequest {
                    rootfs: Some("/nonexistent".into()),
                    ..Default::default()
                },
                "no command given",
            ),
            (
                RunRequest {
                    image: Some("busybox".into()),
                    rootfs: Some("/x".into()),
                    ..Default::default()
                },
                "both an image and --rootfs",
            ),
            (
                RunRequest {
                    rootfs: Some("/x".into()),
                    command: vec!["true".into()],
                    entrypoint: Some("sh".into()),
                    ..Default::default()
                },
                "--entrypoint applies to an image",
            ),
            (
                RunRequest {
                    rootfs: Some("/x".into()),
                    command: vec!["true".into()],
                    dns: vec!["not-an-ip".into()],
                    ..Default::default()
                },
                "invalid --dns \"not-an-ip\"",
            ),
            (
                RunRequest {
                    rootfs: Some("/x".into()),
                    command: vec!["true".into()],
                    security_opt: vec!["apparmor=x".into()],
                    ..Default::default()
                },
                "unknown --security-opt",
            ),
            (
                RunRequest {
                    rootfs: Some("/x".into()),
                    command: vec!["true".into()],
                    name: Some("-bad".into()),
                    ..Default::default()
                },
                "-bad",
            ),
        ];
        for (req, want) in cases {
            let e = prepare(&req, &d).expect_err(want).to_string();
            assert!(e.contains(want), "{e:?} should contain {want:?}");
        }
    }
}

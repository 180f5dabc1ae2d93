//! `commit`, `diff`, `export` and `cp`: a container's files, seen and changed from outside.
//!
//! * commit: the writable layer (overlay upper directory, or the vfs copy compared with the
//!   image's layers) becomes a gzip OCI layer in the store; the image config gets the layer's
//!   diff id, a history entry and the `--change` instructions; the new manifest is recorded
//!   under the given name (or as a dangling `<none>` image). The container is frozen meanwhile
//!   when it has a cgroup with a freezer (`--pause`, the default).
//! * diff: the same changes, as Docker prints them (`A`/`C`/`D`, sorted by path).
//! * export: the merged tree (image layers + writable layer; no volumes) as a tar.
//! * cp: into and out of a container: through `/proc/PID/root` while it runs (so volumes are
//!   included), else through its layers (writes go into the writable layer, directories copied
//!   up as an overlay would).
//!
//! Files are read and created as the container's root (see [`crate::image::nsfs`]); archives
//! carry the container's view of ownership; every path is resolved inside the container's
//! root.

use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use oci_spec::runtime::LinuxIdMapping;
use serde_json::{json, Value};

use super::state::{StateRoot, Status};
use super::{manage, Container};
use crate::image::digest::HashingWriter;
use crate::image::layerdiff::{self, Change, Entry, TarOut, Union};
use crate::image::nsfs::NsFs;
use crate::image::store::{
    parse_config, ContainerImage, Descriptor, Manifest, MEDIA_OCI_CONFIG, MEDIA_OCI_LAYER_GZIP,
    MEDIA_OCI_MANIFEST,
};
use crate::image::{archive, time, Digest, ImageError, Reference, Store};
use crate::rootfs::{vfs, Layers};
use crate::Error;

/// Errors of commit, diff, export and cp, each naming the container or path at fault.
#[derive(Debug, thiserror::Error)]
pub enum CommitError {
    #[error("container {0} was made from a plain root directory (--rootfs), not an image: {1} needs a container made from an image")]
    NoLayers(String, &'static str),
    #[error("container {container}: {what} {path}: {source}")]
    Io {
        container: String,
        what: &'static str,
        path: String,
        source: io::Error,
    },
    #[error("{0}")]
    Invalid(String),
}

impl CommitError {
    pub fn errno(&self) -> Option<i32> {
        match self {
            CommitError::Io { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }
}

fn ioerr(
    c: &Container,
    what: &'static str,
    path: impl AsRef<[u8]>,
) -> impl FnOnce(io::Error) -> Error {
    let container = c.display_name();
    let path = format!(
        "/{}",
        String::from_utf8_lossy(path.as_ref()).trim_start_matches('/')
    );
    move |source| {
        Error::Commit(CommitError::Io {
            container,
            what,
            path,
            source,
        })
    }
}

fn hosterr<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> Error + 'a {
    move |source| Error::Image(ImageError::io(what, path, source))
}

fn invalid(msg: impl Into<String>) -> Error {
    Error::Commit(CommitError::Invalid(msg.into()))
}

/// The container's id maps (none: the identity).
fn id_maps(c: &Container) -> Result<(Vec<LinuxIdMapping>, Vec<LinuxIdMapping>), Error> {
    let spec = c.spec()?;
    let linux = spec.linux().clone().unwrap_or_default();
    Ok((
        linux.uid_mappings().clone().unwrap_or_default(),
        linux.gid_mappings().clone().unwrap_or_default(),
    ))
}

fn layers_of(c: &Container, action: &'static str) -> Result<Layers, Error> {
    let spec = c.spec()?;
    crate::rootfs::Layers::from_spec(&spec)?
        .ok_or_else(|| Error::Commit(CommitError::NoLayers(c.display_name(), action)))
}

/// Paths the runtime itself makes in the writable layer at launch: mount points of the
/// generated /etc files (empty files, bind-mounted over) are not the container's changes.
fn generated(c: &Change) -> bool {
    const ETC: [&[u8]; 3] = [b"etc/hostname", b"etc/hosts", b"etc/resolv.conf"];
    c.kind == layerdiff::Kind::Added && ETC.contains(&c.path.as_slice())
}

/// The writable layer's changes: the file access, the lower layers' union and the changes.
struct Diff {
    fs: NsFs,
    upper: usize,
    changes: Vec<Change>,
    uids: Vec<LinuxIdMapping>,
    gids: Vec<LinuxIdMapping>,
}

fn compute(c: &Container, action: &'static str) -> Result<Diff, Error> {
    let layers = layers_of(c, action)?;
    let (uids, gids) = id_maps(c)?;
    let mut roots: Vec<&Path> = layers.lower.iter().map(|p| p.as_path()).collect();
    roots.push(&layers.upper);
    let fs = NsFs::new(&roots, &uids, &gids)?;
    let upper = layers.lower.len();
    let lower_idx: Vec<usize> = (0..upper).collect();
    let changes = {
        let lower = Union::new(&fs, &lower_idx);
        let r = if vfs::is_full_copy(&layers) {
            layerdiff::full_changes(upper, &lower)
        } else {
            layerdiff::overlay_changes(upper, &lower)
        };
        r.map_err(ioerr(c, "reading the writable layer", ""))?
    };
    let mut changes: Vec<Change> = changes.into_iter().filter(|x| !generated(x)).collect();
    // /etc in the writable layer only because the runtime made its generated files there.
    let etc_changed = changes.iter().any(|x| x.path.starts_with(b"etc/"));
    changes.retain(|x| {
        x.path != b"etc" || x.kind != layerdiff::Kind::Changed || x.opaque || etc_changed
    });
    Ok(Diff {
        fs,
        upper,
        changes,
        uids,
        gids,
    })
}

/// `diff`: the changes of a container's writable layer, sorted by path.
pub fn diff(root: &StateRoot, reference: &str) -> Result<Vec<Change>, Error> {
    let c = manage::lookup(root, reference)?;
    let mut changes = compute(&c, "diff")?.changes;
    changes.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(changes)
}

/// Options of `commit`.
#[derive(Debug, Clone, Default)]
pub struct CommitOptions {
    /// `REPO[:TAG]`; None makes a dangling (`<none>`) image.
    pub reference: Option<String>,
    /// `-m`.
    pub message: Option<String>,
    /// `-a`.
    pub author: Option<String>,
    /// `-c`: Dockerfile instructions (CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, USER, WORKDIR,
    /// VOLUME, STOPSIGNAL).
    pub changes: Vec<String>,
    /// Freeze the container while its layer is read (when it has a freezer).
    pub pause: bool,
}

/// What `commit` made.
#[derive(Debug, Clone)]
pub struct Committed {
    /// The image id (config digest).
    pub id: Digest,
    pub manifest: Digest,
    pub layer: Digest,
    pub diff_id: Digest,
    pub names: Vec<Reference>,
}

/// A writer that remembers the errno of its first failed write.
struct NotingWriter<W> {
    inner: W,
    failed: std::rc::Rc<std::cell::Cell<Option<i32>>>,
}

impl<W: Write> Write for NotingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.inner.write(buf).inspect_err(|e| self.note(e))
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush().inspect_err(|e| self.note(e))
    }
}

impl<W> NotingWriter<W> {
    fn note(&self, e: &io::Error) {
        if self.failed.get().is_none() && e.kind() != io::ErrorKind::Interrupted {
            self.failed.set(Some(e.raw_os_error().unwrap_or(libc::EIO)));
        }
    }
}

/// Thaws a container frozen for the commit, however the commit ends; and, for a commit that
/// is killed before it can, leaves a mark that the next command to load the container
/// honours ([`super::Container::load`] thaws it once this process is gone).
struct Frozen(Option<(crate::cgroup::Cgroup, PathBuf)>);

impl Frozen {
    fn freeze(c: &super::Container) -> Frozen {
        let Some(cg) = c.cgroup().filter(|cg| cg.exists()) else {
            return Frozen(None);
        };
        let me = std::process::id() as i32;
        let Some(start) = crate::container::state::process_start_time(me) else {
            return Frozen(None);
        };
        let mark = c.dir().join(super::COMMIT_FREEZE_MARK);
        // Without the mark a killed commit could leave the container frozen for good: no freeze.
        if crate::container::state::write_atomic(&mark, format!("{me} {start}\n").as_bytes())
            .is_err()
        {
            return Frozen(None);
        }
        if cg.freeze(true).is_err() {
            let _ = cg.freeze(false);
            let _ = std::fs::remove_file(&mark);
            return Frozen(None);
        }
        Frozen(Some((cg, mark)))
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        if let Some((cg, mark)) = self.0.take() {
            if cg.freeze(false).is_ok() {
                let _ = std::fs::remove_file(&mark);
            }
        }
    }
}

/// `commit`: the container's writable layer as a new image whose config is the container's
/// own (command, environment, working directory, user: see [`Store::set_run_config`]) with
/// `opts.changes` applied, as `docker commit` makes it.
pub fn commit(
    root: &StateRoot,
    store_root: &Path,
    reference: &str,
    opts: &CommitOptions,
) -> Result<Committed, Error> {
    commit_with(root, store_root, reference, opts, true)
}

/// [`commit`] keeping the base image's config as it is (plus `opts.changes`): a build's RUN
/// step, whose container ran the step's command, not the image's.
pub(crate) fn commit_layer(
    root: &StateRoot,
    store_root: &Path,
    reference: &str,
    opts: &CommitOptions,
) -> Result<Committed, Error> {
    commit_with(root, store_root, reference, opts, false)
}

fn commit_with(
    root: &StateRoot,
    store_root: &Path,
    reference: &str,
    opts: &CommitOptions,
    container_config: bool,
) -> Result<Committed, Error> {
    let c = manage::lookup(root, reference)?;
    let names = match &opts.reference {
        Some(r) => {
            let r = Reference::parse(r)?;
            if r.digest.is_some() {
                return Err(invalid(format!(
                    "invalid reference {r}: a committed image cannot be named by digest"
                )));
            }
            vec![r]
        }
        None => Vec::new(),
    };
    // Checked before any work: the changes are valid.
    let mut probe = serde_json::Map::new();
    archive::apply_changes(&mut probe, &opts.changes)?;
    let store = Store::open(Some(store_root.to_path_buf()))?;
    let rec_path = store.root().join("containers").join(c.id()).join("image");
    let rec: ContainerImage = match std::fs::read(&rec_path) {
        Ok(b) => serde_json::from_slice(&b).map_err(|e| ImageError::Corrupt {
            what: rec_path.display().to_string(),
            message: e.to_string(),
        })?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(Error::Commit(CommitError::NoLayers(
                c.display_name(),
                "commit",
            )))
        }
        Err(e) => return Err(ImageError::io("cannot read", &rec_path, e).into()),
    };
    let manifest: Manifest = serde_json::from_slice(&store.read_blob(&rec.image)?)
        .map_err(|e| ImageError::format(format!("manifest {}", rec.image), e.to_string()))?;
    let mut config: Value = serde_json::from_slice(&store.read_blob(&manifest.config.digest)?)
        .map_err(|e| ImageError::format(format!("image config {}", rec.config), e.to_string()))?;

    let status = c.status();
    let _frozen = if opts.pause && status == Status::Running {
        Frozen::freeze(&c)
    } else {
        Frozen(None)
    };
    let _g = store.lock("store", false)?;
    let d = compute(&c, "commit")?;

    // The layer: tar -> (diff id) -> gzip -> (blob digest) -> a temporary file.
    let tmp = store
        .root()
        .join("tmp")
        .join(format!("commit-{}-{}", std::process::id(), c.id()));
    let file = File::create(&tmp).map_err(hosterr("cannot create", &tmp))?;
    // Errors writing the layer file (a full disk) are told apart from errors reading the
    // container's files, which come through the same stream.
    let write_failed = std::rc::Rc::new(std::cell::Cell::new(None));
    let written = (|| -> Result<(Digest, Digest, u64), Error> {
        let file = NotingWriter {
            inner: file,
            failed: write_failed.clone(),
        };
        let blob_w = HashingWriter::new(BufWriter::with_capacity(1 << 20, file));
        let gz = flate2::write::GzEncoder::new(blob_w, flate2::Compression::default());
        let diff_w = HashingWriter::new(gz);
        let mut out = TarOut::new(diff_w, &d.uids, &d.gids);
        layerdiff::tar_changes(&d.fs, d.upper, &d.changes, &mut out).map_err(
            |e| match write_failed.get() {
                Some(errno) => hosterr("cannot write", &tmp)(io::Error::from_raw_os_error(errno)),
                None => ioerr(&c, "reading the writable layer", "")(e),
            },
        )?;
        let diff_w = out.finish().map_err(hosterr("cannot write", &tmp))?;
        let (gz, diff_id, _) = diff_w.finish();
        let blob_w = gz.finish().map_err(hosterr("cannot write", &tmp))?;
        let (buf, blob, size) = blob_w.finish();
        let f = buf
            .into_inner()
            .map_err(|e| ImageError::io("cannot write", &tmp, e.into_error()))?
            .inner;
        f.sync_data().map_err(hosterr("cannot write", &tmp))?;
        Ok((diff_id, blob, size))
    })();
    let stored = written.and_then(|(diff_id, blob, size)| {
        let mut f = File::open(&tmp).map_err(hosterr("cannot open", &tmp))?;
        store.write_blob(&mut f, Some(&blob))?;
        Ok((diff_id, blob, size))
    });
    let _ = std::fs::remove_file(&tmp);
    let (diff_id, blob, size) = stored?;
    drop(_frozen);

    // The config: the base image's, the layer appended, history and changes recorded.
    let created = time::now();
    let spec = c.spec().ok();
    let created_by = spec
        .as_ref()
        .and_then(|s| s.process().as_ref())
        .and_then(|p| p.args().clone())
        .unwrap_or_default()
        .join(" ");
    let obj = config
        .as_object_mut()
        .ok_or_else(|| ImageError::format("image config", "not a JSON object"))?;
    obj.insert("created".into(), json!(created));
    if let Some(a) = &opts.author {
        obj.insert("author".into(), json!(a));
    }
    let cfg = obj.entry("config").or_insert_with(|| json!({}));
    if !cfg.is_object() {
        *cfg = json!({});
    }
    if let Value::Object(m) = cfg {
        // As Docker: the container's own command, environment, directory and user.
        if let (true, Some(Value::Object(run))) = (container_config, &rec.run_config) {
            for (k, v) in run {
                match v {
                    Value::Null => m.remove(k),
                    v => m.insert(k.clone(), v.clone()),
                };
            }
        }
        archive::apply_changes(m, &opts.changes)?;
    }
    let rootfs = obj
        .entry("rootfs")
        .or_insert_with(|| json!({"type": "layers", "diff_ids": []}));
    match rootfs.get_mut("diff_ids").and_then(|v| v.as_array_mut()) {
        Some(ids) => ids.push(json!(diff_id.as_str())),
        None => return Err(ImageError::format("image config", "rootfs.diff_ids missing").into()),
    }
    let mut h = json!({"created": created, "created_by": created_by});
    if let Some(m) = &opts.message {
        h["comment"] = json!(m);
    }
    if let Some(a) = &opts.author {
        h["author"] = json!(a);
    }
    match obj.get_mut("history").and_then(|v| v.as_array_mut()) {
        Some(hist) => hist.push(h),
        None => {
            obj.insert("history".into(), json!([h]));
        }
    }
    let cbytes =
        serde_json::to_vec(&config).map_err(|e| ImageError::format("config", e.to_string()))?;
    parse_config(&cbytes, &Digest::of(&cbytes))?;
    let cd = store.write_blob_bytes(&cbytes)?;
    let mut layers = manifest.layers.clone();
    layers.push(Descriptor::new(MEDIA_OCI_LAYER_GZIP, blob.clone(), size));
    let new_manifest = Manifest {
        schema_version: 2,
        media_type: Some(MEDIA_OCI_MANIFEST.into()),
        config: Descriptor::new(MEDIA_OCI_CONFIG, cd.clone(), cbytes.len() as u64),
        layers,
        annotations: None,
    };
    let mbytes = serde_json::to_vec(&new_manifest)
        .map_err(|e| ImageError::format("manifest", e.to_string()))?;
    let md = store.write_blob_bytes(&mbytes)?;
    store.add_image(
        &Descriptor::new(MEDIA_OCI_MANIFEST, md.clone(), mbytes.len() as u64),
        &names,
    )?;
    Ok(Committed {
        id: cd,
        manifest: md,
        layer: blob,
        diff_id,
        names,
    })
}

// ---- the container's tree for export and cp ----

/// A container's files: the access, the layers (lowest first; the top one takes writes) and
/// whether writes must copy directories up from lower layers (a stopped overlay).
struct View {
    fs: NsFs,
    layers: Vec<usize>,
    copy_up: bool,
    uids: Vec<LinuxIdMapping>,
    gids: Vec<LinuxIdMapping>,
}

impl View {
    fn top(&self) -> usize {
        self.layers.last().copied().unwrap_or(0)
    }

    fn union(&self) -> Union<'_> {
        Union::new(&self.fs, &self.layers)
    }
}

/// `live`: use `/proc/PID/root` while the container runs (cp); else its layers.
fn view(c: &Container, live: bool) -> Result<View, Error> {
    let (uids, gids) = id_maps(c)?;
    let spec = c.spec()?;
    let running = matches!(c.status(), Status::Running | Status::Paused);
    if live && running {
        if let Some(pid) = c.record.pid {
            let p = PathBuf::from(format!("/proc/{pid}/root"));
            let fs = NsFs::new(&[&p], &uids, &gids)?;
            return Ok(View {
                fs,
                layers: vec![0],
                copy_up: false,
                uids,
                gids,
            });
        }
    }
    match Layers::from_spec(&spec)? {
        Some(l) if vfs::is_full_copy(&l) => Ok(View {
            fs: NsFs::new(&[&l.upper], &uids, &gids)?,
            layers: vec![0],
            copy_up: false,
            uids,
            gids,
        }),
        Some(l) => {
            let mut roots: Vec<&Path> = l.lower.iter().map(|p| p.as_path()).collect();
            roots.push(&l.upper);
            let n = roots.len();
            Ok(View {
                fs: NsFs::new(&roots, &uids, &gids)?,
                layers: (0..n).collect(),
                copy_up: true,
                uids,
                gids,
            })
        }
        None => {
            let dir = spec
                .root()
                .as_ref()
                .map(|r| r.path().clone())
                .unwrap_or_default();
            let dir = if dir.is_relative() {
                c.record.bundle.join(dir)
            } else {
                dir
            };
            Ok(View {
                fs: NsFs::new(&[&dir], &uids, &gids)?,
                layers: vec![0],
                copy_up: false,
                uids,
                gids,
            })
        }
    }
}

/// `export`: the container's merged tree (image layers and writable layer) as a tar.
pub fn export(root: &StateRoot, reference: &str, out: &mut dyn Write) -> Result<(), Error> {
    let c = manage::lookup(root, reference)?;
    let v = view(&c, false)?;
    let u = v.union();
    let top = u.root().map_err(ioerr(&c, "reading", ""))?;
    let mut t = TarOut::new(out, &v.uids, &v.gids);
    layerdiff::tar_tree(&u, &top, b"", b"", &mut t).map_err(ioerr(&c, "reading", ""))?;
    t.finish()
        .map_err(ioerr(&c, "writing the archive for", ""))?;
    Ok(())
}

/// Where `cp` copies to, out of a container.
pub enum CopyOut<'a> {
    /// A host path (Docker's rules: into an existing directory, else as that name).
    Host(&'a Path),
    /// A tar stream (`-`).
    Tar(&'a mut dyn Write),
}

/// Where `cp` copies from, into a container.
pub enum CopyIn<'a> {
    Host(&'a Path),
    /// A tar stream (`-`), extracted into the destination directory.
    Tar(&'a mut dyn Read),
}

fn base_name(p: &[u8]) -> &[u8] {
    match p.iter().rposition(|c| *c == b'/') {
        Some(i) => &p[i + 1..],
        None => p,
    }
}

fn split(p: &[u8]) -> (&[u8], &[u8]) {
    match p.iter().rposition(|c| *c == b'/') {
        Some(i) => (&p[..i], &p[i + 1..]),
        None => (&b""[..], p),
    }
}

fn not_found(c: &Container, path: &str) -> Error {
    ioerr(
        c,
        "no such file or directory in the container:",
        path.as_bytes(),
    )(io::Error::from_raw_os_error(libc::ENOENT))
}

/// A source path of `cp` resolved in the container: its canonical path and entry. A trailing
/// `/` (or `/.`) follows a symlink in the last component, as `docker cp` does.
fn resolve_src(c: &Container, u: &Union<'_>, src: &str) -> Result<(Vec<u8>, Entry), Error> {
    let follow = src.ends_with('/') || src.ends_with("/.");
    let (canon, entry) = match u.resolve(src.as_bytes(), follow) {
        Ok(x) => x,
        Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT) | Some(libc::ENOTDIR)) => {
            return Err(not_found(c, src))
        }
        Err(e) => return Err(ioerr(c, "resolving", src.as_bytes())(e)),
    };
    match entry {
        Some(e) => Ok((canon, e)),
        None => Err(not_found(c, src)),
    }
}

/// What [`stat`] tells of a path in a container (Docker's `ContainerPathStat`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathStat {
    /// The base name (`/` for the root directory).
    pub name: String,
    /// The size as `lstat` gives it.
    pub size: u64,
    /// `st_mode`: file type and permission bits.
    pub mode: u32,
    pub mtime: i64,
    pub mtime_nsec: i64,
    /// For a symlink: the absolute container path it resolves to; else empty.
    pub link_target: String,
}

/// The metadata of `path` in a container, as `cp` (and Docker's archive API) would copy it:
/// through `/proc/PID/root` while it runs, else through its layers. A symlink is described
/// itself unless `path` ends in `/`.
pub fn stat(root: &StateRoot, reference: &str, path: &str) -> Result<PathStat, Error> {
    let c = manage::lookup(root, reference)?;
    let v = view(&c, true)?;
    let u = v.union();
    let (canon, entry) = resolve_src(&c, &u, path)?;
    let st = &entry.node.st;
    let link_target = if entry.node.is_symlink() {
        match u.resolve(&canon, true) {
            Ok((t, _)) => format!("/{}", String::from_utf8_lossy(&t)),
            Err(e) => return Err(ioerr(&c, "resolving", &canon)(e)),
        }
    } else {
        String::new()
    };
    Ok(PathStat {
        name: if canon.is_empty() {
            "/".to_string()
        } else {
            String::from_utf8_lossy(base_name(&canon)).into_owned()
        },
        size: st.st_size.max(0) as u64,
        mode: st.st_mode,
        mtime: st.st_mtime,
        mtime_nsec: st.st_mtime_nsec,
        link_target,
    })
}

/// `cp CTR:SRC DEST`.
pub fn copy_out(
    root: &StateRoot,
    reference: &str,
    src: &str,
    dest: CopyOut<'_>,
) -> Result<(), Error> {
    let c = manage::lookup(root, reference)?;
    let v = view(&c, true)?;
    let u = v.union();
    let contents_only = src.ends_with("/.");
    let (canon, entry) = resolve_src(&c, &u, src)?;
    let rerr = |p: &[u8]| ioerr(&c, "reading", p.to_vec());
    match dest {
        CopyOut::Tar(w) => {
            let mut t = TarOut::new(w, &v.uids, &v.gids);
            let name = if canon.is_empty() {
                &b"."[..]
            } else {
                base_name(&canon)
            };
            if contents_only && entry.node.is_dir() {
                layerdiff::tar_tree(&u, &entry, &canon, b"", &mut t).map_err(rerr(&canon))?;
            } else {
                t.add(name, &entry.node, entry.layer)
                    .map_err(rerr(&canon))?;
                if entry.node.is_dir() {
                    layerdiff::tar_tree(&u, &entry, &canon, name, &mut t).map_err(rerr(&canon))?;
                }
            }
            t.finish()
                .map_err(hosterr("cannot write", Path::new("-")))?;
            Ok(())
        }
        CopyOut::Host(dest) => {
            let existing = std::fs::metadata(dest).ok();
            let name = OsStr::from_bytes(if canon.is_empty() {
                b"root"
            } else {
                base_name(&canon)
            });
            let target = match (&existing, entry.node.is_dir()) {
                (Some(m), true) if m.is_dir() => {
                    if contents_only {
                        dest.to_path_buf()
                    } else {
                        dest.join(name)
                    }
                }
                (Some(_), true) => {
                    return Err(invalid(format!(
                        "cannot copy directory {src} onto the file {}",
                        dest.display()
                    )))
                }
                (Some(m), false) if m.is_dir() => dest.join(name),
                (None, false) if dest.as_os_str().as_bytes().ends_with(b"/") => {
                    return Err(invalid(format!(
                        "destination directory {} does not exist",
                        dest.display()
                    )))
                }
                _ => dest.to_path_buf(),
            };
            extract(&c, &u, &entry, &canon, &target)
        }
    }
}

/// Writes a container entry (and what is below it) to a host path.
fn extract(
    c: &Container,
    u: &Union<'_>,
    e: &Entry,
    path: &[u8],
    target: &Path,
) -> Result<(), Error> {
    let n = &e.node;
    let mode = n.st.st_mode & 0o7777;
    if n.is_dir() {
        match std::fs::create_dir(target) {
            Ok(()) => {}
            Err(x) if x.kind() == io::ErrorKind::AlreadyExists && target.is_dir() => {}
            Err(x) => return Err(hosterr("cannot create", target)(x)),
        }
        let _ = std::fs::set_permissions(target, std::fs::Permissions::from_mode(0o700));
        for name in u.names_at(e, path).map_err(ioerr(c, "reading", path))? {
            if let Some(child) = u.child(e, path, &name).map_err(ioerr(c, "reading", path))? {
                extract(
                    c,
                    u,
                    &child,
                    &layerdiff::join(path, &name),
                    &target.join(OsStr::from_bytes(&name)),
                )?;
            }
        }
        std::fs::set_permissions(target, std::fs::Permissions::from_mode(mode))
            .map_err(hosterr("cannot set the mode of", target))?;
    } else if n.is_reg() {
        let mut src = n.file().map_err(ioerr(c, "reading", path))?;
        if target
            .symlink_metadata()
            .is_ok_and(|m| m.file_type().is_symlink())
        {
            std::fs::remove_file(target).map_err(hosterr("cannot replace", target))?;
        }
        let mut f = File::create(target).map_err(hosterr("cannot create", target))?;
        io::copy(&mut src, &mut f).map_err(hosterr("cannot write", target))?;
        f.set_permissions(std::fs::Permissions::from_mode(mode))
            .map_err(hosterr("cannot set the mode of", target))?;
        let mtime =
            std::time::UNIX_EPOCH + std::time::Duration::from_secs(n.st.st_mtime.max(0) as u64);
        let _ = f.set_modified(mtime);
    } else if n.is_symlink() {
        let t = n.link_target().map_err(ioerr(c, "reading", path))?;
        if target.symlink_metadata().is_ok() {
            std::fs::remove_file(target).map_err(hosterr("cannot replace", target))?;
        }
        std::os::unix::fs::symlink(OsStr::from_bytes(&t), target)
            .map_err(hosterr("cannot create", target))?;
    }
    // Devices, fifos and sockets are not copied out (Docker does not either without a tar).
    Ok(())
}

/// Makes sure the (resolved, canonical) directory `path` exists in the top layer, copying
/// directories up from lower layers with their modes.
fn ensure_dir(c: &Container, v: &View, u: &Union<'_>, path: &[u8]) -> Result<(), Error> {
    if !v.copy_up {
        return Ok(());
    }
    let top = v.top();
    let mut at: Vec<u8> = Vec::new();
    for comp in path.split(|b| *b == b'/').filter(|c| !c.is_empty()) {
        let next = layerdiff::join(&at, comp);
        let have =
            v.fs.open(top, &next, false)
                .map_err(ioerr(c, "reading", &next))?;
        if !have.is_some_and(|n| n.is_dir()) {
            let mode = match u.lookup(&next).map_err(ioerr(c, "reading", &next))? {
                Some(e) if e.node.is_dir() => e.node.st.st_mode & 0o7777,
                _ => 0o755,
            };
            v.fs.mkdir(top, &at, comp, mode)
                .map_err(ioerr(c, "creating", &next))?;
        }
        at = next;
    }
    Ok(())
}

/// Makes directory `name` in `parent` (top layer) for a copy, replacing a deleted one opaquely.
fn make_dir(
    c: &Container,
    v: &View,
    u: &Union<'_>,
    parent: &[u8],
    name: &[u8],
    mode: u32,
) -> Result<(), Error> {
    let p = layerdiff::join(parent, name);
    let parent_entry = u.lookup(parent).map_err(ioerr(c, "reading", parent))?;
    let merged = match &parent_entry {
        Some(pe) => u.child(pe, parent, name).map_err(ioerr(c, "reading", &p))?,
        None => None,
    };
    match merged {
        Some(e) if !e.node.is_dir() => {
            return Err(invalid(format!(
                "cannot overwrite the non-directory /{} in container {} with a directory",
                String::from_utf8_lossy(&p),
                c.display_name()
            )))
        }
        Some(_) => {
            return v
                .fs
                .mkdir(v.top(), parent, name, mode)
                .map_err(ioerr(c, "creating", &p));
        }
        None => {}
    }
    let top = v.top();
    let deleted = v.copy_up
        && v.fs
            .open(top, &p, false)
            .map_err(ioerr(c, "reading", &p))?
            .is_some_and(|n| n.is_whiteout());
    if deleted {
        v.fs.remove(top, parent, name)
            .map_err(ioerr(c, "replacing", &p))?;
    }
    v.fs.mkdir(top, parent, name, mode)
        .map_err(ioerr(c, "creating", &p))?;
    if deleted {
        v.fs.set_opaque(top, &p).map_err(ioerr(c, "creating", &p))?;
    }
    Ok(())
}

fn refuse_dir_overwrite(c: &Container, u: &Union<'_>, p: &[u8]) -> Result<(), Error> {
    if u.lookup(p)
        .map_err(ioerr(c, "reading", p))?
        .is_some_and(|e| e.node.is_dir())
    {
        return Err(invalid(format!(
            "cannot overwrite the directory /{} in container {} with a non-directory",
            String::from_utf8_lossy(p),
            c.display_name()
        )));
    }
    Ok(())
}

/// Copies a host path to `parent/name` in the container.
fn put(
    c: &Container,
    v: &View,
    u: &Union<'_>,
    src: &Path,
    parent: &[u8],
    name: &[u8],
) -> Result<(), Error> {
    let md = std::fs::symlink_metadata(src).map_err(hosterr("cannot copy", src))?;
    let p = layerdiff::join(parent, name);
    let top = v.top();
    if md.is_dir() {
        make_dir(c, v, u, parent, name, md.mode() & 0o7777)?;
        let mut names: Vec<_> = std::fs::read_dir(src)
            .map_err(hosterr("cannot read", src))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(hosterr("cannot read", src))?;
        names.sort_by_key(|e| e.file_name());
        for e in names {
            put(c, v, u, &e.path(), &p, e.file_name().as_bytes())?;
        }
    } else if md.file_type().is_symlink() {
        refuse_dir_overwrite(c, u, &p)?;
        let t = std::fs::read_link(src).map_err(hosterr("cannot read", src))?;
        v.fs.symlink(top, parent, name, t.as_os_str().as_bytes())
            .map_err(ioerr(c, "creating", &p))?;
    } else if md.is_file() {
        refuse_dir_overwrite(c, u, &p)?;
        let mut from = File::open(src).map_err(hosterr("cannot open", src))?;
        let mut f =
            v.fs.create(top, parent, name, md.mode() & 0o7777)
                .map_err(ioerr(c, "creating", &p))?;
        io::copy(&mut from, &mut f).map_err(ioerr(c, "writing", &p))?;
        if let Ok(t) = md.modified() {
            let _ = f.set_modified(t);
        }
    } else {
        return Err(invalid(format!(
            "cannot copy {}: only directories, regular files and symlinks are copied",
            src.display()
        )));
    }
    Ok(())
}

/// `cp SRC CTR:DEST`.
pub fn copy_in(
    root: &StateRoot,
    reference: &str,
    src: CopyIn<'_>,
    dest: &str,
) -> Result<(), Error> {
    let c = manage::lookup(root, reference)?;
    let v = view(&c, true)?;
    let u = v.union();
    let (canon, entry) = match u.resolve(dest.as_bytes(), true) {
        Ok(x) => x,
        Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT) | Some(libc::ENOTDIR)) => {
            return Err(not_found(&c, dest))
        }
        Err(e) => return Err(ioerr(&c, "resolving", dest.as_bytes())(e)),
    };
    match src {
        CopyIn::Tar(r) => {
            if !entry.as_ref().is_some_and(|e| e.node.is_dir()) {
                return Err(invalid(format!(
                    "destination {dest} in container {} is not a directory (a tar stream is extracted into a directory)",
                    c.display_name()
                )));
            }
            ensure_dir(&c, &v, &u, &canon)?;
            untar(&c, &v, &u, &canon, r)
        }
        CopyIn::Host(src) => {
            let md = std::fs::symlink_metadata(src).map_err(hosterr("cannot copy", src))?;
            let s = src.as_os_str().as_bytes();
            let contents_only = s.ends_with(b"/.");
            let src_name = src
                .file_name()
                .map(|n| n.as_bytes().to_vec())
                .unwrap_or_else(|| b"root".to_vec());
            match entry {
                Some(e) if e.node.is_dir() => {
                    ensure_dir(&c, &v, &u, &canon)?;
                    if contents_only && md.is_dir() {
                        let mut names: Vec<_> = std::fs::read_dir(src)
                            .map_err(hosterr("cannot read", src))?
                            .collect::<Result<Vec<_>, _>>()
                            .map_err(hosterr("cannot read", src))?;
                        names.sort_by_key(|e| e.file_name());
                        for x in names {
                            put(&c, &v, &u, &x.path(), &canon, x.file_name().as_bytes())?;
                        }
                        Ok(())
                    } else {
                        put(&c, &v, &u, src, &canon, &src_name)
                    }
                }
                Some(_) if md.is_dir() => Err(invalid(format!(
                    "cannot copy directory {} onto the file {dest} in container {}",
                    src.display(),
                    c.display_name()
                ))),
                None if dest.ends_with('/') => Err(not_found(&c, dest)),
                _ => {
                    let (parent, name) = split(&canon);
                    if name.is_empty() {
                        return Err(not_found(&c, dest));
                    }
                    ensure_dir(&c, &v, &u, parent)?;
                    put(&c, &v, &u, src, parent, name)
                }
            }
        }
    }
}

/// Extracts a tar stream into the (canonical, existing) directory `dir` of the container.
fn untar(
    c: &Container,
    v: &View,
    u: &Union<'_>,
    dir: &[u8],
    r: &mut dyn Read,
) -> Result<(), Error> {
    let mut ar = tar::Archive::new(r);
    let bad = |e: io::Error| invalid(format!("reading the tar stream: {e}"));
    let top = v.top();
    for e in ar.entries().map_err(bad)? {
        let mut e = e.map_err(bad)?;
        let raw = e.path_bytes().into_owned();
        let comps = crate::image::unpack::clean(&raw).map_err(|why| {
            invalid(format!(
                "refusing tar entry {:?}: {why}",
                String::from_utf8_lossy(&raw)
            ))
        })?;
        let Some((name, parents)) = comps.split_last() else {
            continue;
        };
        // Parents inside the stream are made as needed; none may be a symlink.
        let mut at = dir.to_vec();
        for p in parents {
            let next = layerdiff::join(&at, p);
            match u.lookup(&next).map_err(ioerr(c, "reading", &next))? {
                Some(x) if x.node.is_dir() => ensure_dir(c, v, u, &next)?,
                Some(_) => {
                    return Err(invalid(format!(
                        "refusing tar entry {:?}: /{} in the container is not a directory",
                        String::from_utf8_lossy(&raw),
                        String::from_utf8_lossy(&next)
                    )))
                }
                None => make_dir(c, v, u, &at, p, 0o755)?,
            }
            at = next;
        }
        let p = layerdiff::join(&at, name);
        let mode = e.header().mode().unwrap_or(0o644) & 0o7777;
        match e.header().entry_type() {
            tar::EntryType::Directory => make_dir(c, v, u, &at, name, mode)?,
            tar::EntryType::Symlink => {
                refuse_dir_overwrite(c, u, &p)?;
                let t = e
                    .link_name_bytes()
                    .map(|t| t.into_owned())
                    .unwrap_or_default();
                v.fs.symlink(top, &at, name, &t)
                    .map_err(ioerr(c, "creating", &p))?;
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                refuse_dir_overwrite(c, u, &p)?;
                let mut f =
                    v.fs.create(top, &at, name, mode)
                        .map_err(ioerr(c, "creating", &p))?;
                io::copy(&mut e, &mut f).map_err(ioerr(c, "writing", &p))?;
                if let Ok(m) = e.header().mtime() {
                    let _ =
                        f.set_modified(std::time::UNIX_EPOCH + std::time::Duration::from_secs(m));
                }
            }
            other => {
                return Err(invalid(format!(
                "refusing tar entry {:?}: entries of type {other:?} are not copied into containers",
                String::from_utf8_lossy(&raw)
            )))
            }
        }
    }
    Ok(())
}

/// Whether a path given to `cp` names a container (`CTR:PATH`): Docker's rule, a local path
/// starting with `/` or `.` never does.
pub fn split_container_path(s: &str) -> Option<(&str, &str)> {
    if s.starts_with('/') || s.starts_with('.') {
        return None;
    }
    let (c, p) = s.split_once(':')?;
    (!c.is_empty()).then_some((c, p))
}

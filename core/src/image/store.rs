//! The content-addressed image store: an OCI image layout plus a cache of unpacked layers and
//! per-container overlay directories. See the module documentation of [`super`] for the layout.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use oci_spec::image::ImageConfiguration;
use oci_spec::runtime::LinuxIdMapping;
use serde::{Deserialize, Serialize};
use sha2::Digest as _;

use super::digest::{CorruptBlob, Digest, HashingReader, VerifyingReader};
use super::reference::Reference;
use super::unpack::{self, Ownership, UnpackOptions};
use super::{time, userns, ImageError, Result};
use crate::idmap::{self, IdMapMode};

pub const MEDIA_OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const MEDIA_OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const MEDIA_OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const MEDIA_OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
pub const MEDIA_OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const MEDIA_OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
pub const MEDIA_DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const MEDIA_DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const MEDIA_DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
/// The annotation that names an image in an OCI index.
pub const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";
/// containerd's (and Docker 25's) full-name annotation.
pub const ANNOTATION_CONTAINERD_NAME: &str = "io.containerd.image.name";

/// Largest JSON document (manifest, config, index) read into memory.
pub const MAX_JSON: u64 = 16 << 20;

/// An OCI content descriptor.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<serde_json::Value>,
}

impl Descriptor {
    pub fn new(media_type: &str, digest: Digest, size: u64) -> Descriptor {
        Descriptor {
            media_type: media_type.to_string(),
            digest,
            size,
            annotations: None,
            platform: None,
        }
    }

    fn annotation(&self, key: &str) -> Option<&str> {
        self.annotations.as_ref()?.get(key).map(String::as_str)
    }
}

/// An image manifest (OCI or Docker schema 2, which share this shape).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
}

/// An image index (OCI) or manifest list (Docker).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Index {
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    pub manifests: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
}

impl Index {
    pub fn new(manifests: Vec<Descriptor>) -> Index {
        Index {
            schema_version: 2,
            media_type: Some(MEDIA_OCI_INDEX.into()),
            manifests,
            annotations: None,
        }
    }
}

/// An image in the store.
#[derive(Debug, Clone)]
pub struct Image {
    pub manifest_digest: Digest,
    pub manifest_media_type: String,
    pub manifest_size: u64,
    pub manifest: Manifest,
    /// The config digest: the image id.
    pub config_digest: Digest,
    pub config: ImageConfiguration,
    /// The config document as stored (for `inspect`).
    pub config_json: serde_json::Value,
    /// Every name the image has in the store.
    pub names: Vec<Reference>,
}

impl Image {
    /// The image id (the config digest), as Docker defines it.
    pub fn id(&self) -> &Digest {
        &self.config_digest
    }

    /// The uncompressed layer digests, lowest first.
    pub fn diff_ids(&self) -> Result<Vec<Digest>> {
        self.config
            .rootfs()
            .diff_ids()
            .iter()
            .map(|d| Digest::parse(d))
            .collect()
    }

    /// When the image was created (RFC 3339), from its config.
    pub fn created(&self) -> Option<&str> {
        self.config.created().as_deref()
    }

    /// Compressed size of the image's blobs (config and layers).
    pub fn size(&self) -> u64 {
        self.manifest.config.size + self.manifest.layers.iter().map(|l| l.size).sum::<u64>()
    }

    /// `docker image inspect`-like JSON.
    pub fn inspect(&self) -> serde_json::Value {
        let c = &self.config_json;
        let repo_tags: Vec<String> = self
            .names
            .iter()
            .filter(|n| n.tag.is_some())
            .map(Reference::familiar)
            .collect();
        let mut repo_digests: Vec<String> = self
            .names
            .iter()
            .map(|n| n.with_digest(&self.manifest_digest).familiar())
            .collect();
        repo_digests.dedup();
        serde_json::json!({
            "Id": self.config_digest.as_str(),
            "RepoTags": repo_tags,
            "RepoDigests": repo_digests,
            "Parent": "",
            "Comment": c.get("comment").cloned().unwrap_or(serde_json::Value::String(String::new())),
            "Created": c.get("created").cloned().unwrap_or_default(),
            "Author": c.get("author").cloned().unwrap_or(serde_json::Value::String(String::new())),
            "Config": c.get("config").cloned().unwrap_or_else(|| serde_json::json!({})),
            "Architecture": c.get("architecture").cloned().unwrap_or_default(),
            "Variant": c.get("variant").cloned(),
            "Os": c.get("os").cloned().unwrap_or_default(),
            "Size": self.size(),
            "RootFS": {
                "Type": "layers",
                "Layers": c.pointer("/rootfs/diff_ids").cloned().unwrap_or_else(|| serde_json::json!([])),
            },
            "History": c.get("history").cloned().unwrap_or_else(|| serde_json::json!([])),
            "Manifest": {
                "Digest": self.manifest_digest.as_str(),
                "MediaType": self.manifest_media_type,
                "Layers": self.manifest.layers,
            },
        })
    }
}

/// One row of `rootbox images`.
#[derive(Debug, Clone, Serialize)]
pub struct ImageSummary {
    #[serde(rename = "Repository")]
    pub repository: String,
    #[serde(rename = "Tag")]
    pub tag: String,
    #[serde(rename = "ID")]
    pub id: String,
    #[serde(rename = "Digest")]
    pub digest: String,
    #[serde(rename = "CreatedAt")]
    pub created: String,
    #[serde(rename = "CreatedSince")]
    pub created_since: String,
    #[serde(rename = "Size")]
    pub size: u64,
    #[serde(rename = "Containers")]
    pub containers: usize,
}

/// What a container's `containers/<id>/image` record holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ContainerImage {
    pub image: Digest,
    pub config: Digest,
    pub name: Option<String>,
    pub diff_ids: Vec<Digest>,
    pub mapping: String,
    /// The container's config in image-config terms (see `config::Applied::container_config`),
    /// the base of what `commit` records; absent for records written before it existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_config: Option<serde_json::Value>,
    /// The process that made the record and the state directory it registers the container
    /// in (absent in records of older versions, which are always taken as in use).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<RecordOwner>,
}

/// Who is making a container from an image: until the container is registered in `state`
/// (`<state>/<id>/state.json` written), only this process (pid + start time, so a reused pid
/// is not mistaken for it) can finish it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordOwner {
    pub pid: i32,
    /// Start time in clock ticks since boot (`/proc/PID/stat`).
    pub start: u64,
    /// The state root the container is registered in (`<state>/<id>`).
    pub state: PathBuf,
}

impl RecordOwner {
    /// This process, registering in `state` (made absolute: the record is read from other
    /// working directories).
    pub fn current(state: &Path) -> Option<RecordOwner> {
        let pid = std::process::id() as i32;
        Some(RecordOwner {
            pid,
            start: crate::container::state::process_start_time(pid)?,
            state: std::path::absolute(state).ok()?,
        })
    }
}

impl ContainerImage {
    /// Whether the container `id` this record was written for can never exist: the process
    /// that was making it is gone and it never registered the container (a `run` killed
    /// while it unpacked the image, say). Such a record holds nothing a user can see or
    /// remove: it neither keeps its image "in use" nor survives the next GC.
    pub fn abandoned(&self, id: &str) -> bool {
        match &self.owner {
            None => false,
            Some(o) => {
                crate::container::state::process_start_time(o.pid) != Some(o.start)
                    && !o.state.join(id).join("state.json").exists()
            }
        }
    }
}

/// `meta.json` of an unpacked layer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LayerMeta {
    pub diff_id: Digest,
    pub blob: Digest,
    pub mapping: String,
    pub size: u64,
    pub entries: u64,
    pub notes: Vec<String>,
    pub unpacked: String,
}

/// What [`Store::prepare_container`] gives the rootfs code.
#[derive(Debug, Clone)]
pub struct PreparedRootfs {
    /// Unpacked layers, lowest first (overlay wants them reversed in `lowerdir`).
    pub layers: Vec<PathBuf>,
    pub upper: PathBuf,
    pub work: PathBuf,
}

/// An flock(2) held until dropped.
pub struct Lock(#[allow(dead_code)] File);

/// The store.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

fn mkdir_private(p: &Path) -> Result<()> {
    match fs::DirBuilder::new().mode(0o700).create(p) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(ImageError::io("cannot create", p, e)),
    }
}

/// Writes a file atomically (temp file in the same directory, then rename).
pub(crate) fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.tmp-{}-{}",
        path.file_name().map_or("f".into(), |n| n.to_string_lossy()),
        std::process::id(),
        unique()
    ));
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| ImageError::io("cannot write", &tmp, e))?;
    f.write_all(data).and_then(|_| f.sync_data()).map_err(|e| {
        // (A full disk must not leave the partial file behind.)
        let _ = fs::remove_file(&tmp);
        ImageError::io("cannot write", &tmp, e)
    })?;
    fs::rename(&tmp, path).map_err(|e| {
        let _ = fs::remove_file(&tmp);
        ImageError::io("cannot write", path, e)
    })
}

/// A process-unique counter mixed with the time, for temporary names.
pub(crate) fn unique() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!("{t:x}{n}")
}

/// The name under which layers unpacked for these mappings are kept.
pub fn mapping_key(uids: &[LinuxIdMapping], gids: &[LinuxIdMapping]) -> String {
    // SAFETY: geteuid cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    if matches!(uids, [m] if m.size() == 1) {
        return "single".into();
    }
    if root && matches!(uids, [m] if m.container_id() == 0 && m.host_id() == 0) {
        return "identity".into();
    }
    let text: String = uids
        .iter()
        .chain(gids.iter())
        .map(|m| format!("{} {} {};", m.container_id(), m.host_id(), m.size()))
        .collect();
    format!("subid-{}", &Digest::of(text.as_bytes()).hex()[..12])
}

/// What kind of compression a stream starts with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

impl Compression {
    pub fn sniff(head: &[u8]) -> Compression {
        if head.starts_with(&[0x1f, 0x8b]) {
            Compression::Gzip
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Compression::Zstd
        } else {
            Compression::None
        }
    }

    pub fn layer_media_type(self) -> &'static str {
        match self {
            Compression::None => MEDIA_OCI_LAYER,
            Compression::Gzip => MEDIA_OCI_LAYER_GZIP,
            Compression::Zstd => MEDIA_OCI_LAYER_ZSTD,
        }
    }
}

/// A reader that decompresses what `inner` holds, by its magic bytes.
pub fn decompress<'a, R: BufRead + 'a>(mut inner: R) -> io::Result<Box<dyn Read + 'a>> {
    let head = inner.fill_buf()?;
    Ok(match Compression::sniff(head) {
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(inner)),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(inner)?),
        Compression::None => Box::new(inner),
    })
}

fn is_tar_head(head: &[u8]) -> bool {
    // ustar magic at 257, or an all-zero first block (an empty archive).
    head.get(257..262) == Some(b"ustar")
        || (head.len() >= 512 && head[..512].iter().all(|b| *b == 0))
}

/// Checks that a (decompressed) stream looks like a tar archive.
pub fn check_tar<R: BufRead>(r: &mut R, what: &str) -> Result<()> {
    let head = r
        .fill_buf()
        .map_err(|e| ImageError::format(what, format!("cannot read: {e}")))?;
    if head.is_empty() {
        return Err(ImageError::format(what, "empty input, not a tar archive"));
    }
    if head.len() >= 262 && !is_tar_head(head) {
        return Err(ImageError::format(
            what,
            "not a tar archive (nor a gzip/zstd-compressed one)",
        ));
    }
    Ok(())
}

/// The consumer side of [`spawn_layer_reader`]: a `Read` over chunks sent by the thread.
pub struct ChunkReader {
    rx: std::sync::mpsc::Receiver<Vec<u8>>,
    cur: Vec<u8>,
    pos: usize,
}

impl Read for ChunkReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pos >= self.cur.len() {
            match self.rx.recv() {
                Ok(c) => {
                    self.cur = c;
                    self.pos = 0;
                }
                Err(_) => return Ok(0),
            }
        }
        let n = buf.len().min(self.cur.len() - self.pos);
        buf[..n].copy_from_slice(&self.cur[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// Reads a layer blob in a thread: verifies the blob digest, decompresses (gzip/zstd by magic)
/// and verifies the uncompressed stream against `diff`, sending the tar stream in chunks. The
/// thread's result is an error (a [`CorruptBlob`] inside for a digest mismatch) when either
/// digest is wrong or reading fails.
pub fn spawn_layer_reader(
    blob: VerifyingReader<File>,
    blob_digest: Digest,
    diff: Digest,
    max_size: u64,
) -> (ChunkReader, std::thread::JoinHandle<io::Result<()>>) {
    let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(8);
    let handle = std::thread::spawn(move || -> io::Result<()> {
        let mut raw = BufReader::with_capacity(1 << 20, blob);
        let plain = Compression::sniff(raw.fill_buf()?) == Compression::None;
        let mut consumer_gone = false;
        let mut total = 0u64;
        let mut pump = |src: &mut dyn Read| -> io::Result<()> {
            loop {
                let mut chunk = vec![0u8; 512 * 1024];
                let mut n = 0;
                while n < chunk.len() {
                    match src.read(&mut chunk[n..]) {
                        Ok(0) => break,
                        Ok(k) => n += k,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => return Err(e),
                    }
                }
                if n == 0 {
                    return Ok(());
                }
                // A decompression bomb stops here: neither the unpack nor this thread (which
                // would otherwise read on to check the digests) goes past the limit.
                total += n as u64;
                if total > max_size {
                    return Err(io::Error::other(unpack::SizeLimitHit { limit: max_size }));
                }
                chunk.truncate(n);
                // When the unpack failed, keep reading to the end to check the digests.
                if !consumer_gone && tx.send(chunk).is_err() {
                    consumer_gone = true;
                }
            }
        };
        if plain {
            // Uncompressed: the diff id is the blob digest, which the verifying reader checks.
            if blob_digest != diff {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("it is uncompressed, so its diff id must be its digest, but the image config says {diff}"),
                ));
            }
            pump(&mut raw)?;
        } else {
            let got = {
                let mut h = HashingReader::new(decompress(&mut raw)?);
                pump(&mut h)?;
                h.finish()?.0
            };
            // Trailing data after the compressed stream, and the blob digest check.
            io::copy(&mut raw, &mut io::sink())?;
            if got != diff {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("its uncompressed content hashes to {got}, but the image config says {diff}"),
                ));
            }
        }
        Ok(())
    });
    (
        ChunkReader {
            rx,
            cur: Vec::new(),
            pos: 0,
        },
        handle,
    )
}

fn corrupt_from(e: &io::Error) -> Option<CorruptBlob> {
    e.get_ref()?.downcast_ref::<CorruptBlob>().cloned()
}

impl Store {
    /// `$ROOTBOX_ROOT`, else `$XDG_DATA_HOME/rootbox`, else `~/.local/share/rootbox` (the
    /// same root named volumes use, see [`crate::rootfs::data_root`]).
    pub fn default_root() -> PathBuf {
        crate::rootfs::data_root(None)
    }

    /// Opens (creating when missing, mode 0700) the store at `root` or the default place.
    pub fn open(root: Option<PathBuf>) -> Result<Store> {
        let root = root.unwrap_or_else(Self::default_root);
        if let Some(parent) = root.parent() {
            if !parent.as_os_str().is_empty() && !parent.exists() {
                fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(parent)
                    .map_err(|e| ImageError::io("cannot create", parent, e))?;
            }
        }
        mkdir_private(&root)?;
        let meta =
            fs::metadata(&root).map_err(|e| ImageError::io("cannot open the store", &root, e))?;
        // SAFETY: geteuid cannot fail.
        let me = unsafe { libc::geteuid() };
        use std::os::unix::fs::MetadataExt;
        if meta.uid() != me {
            return Err(ImageError::io(
                "the store does not belong to you:",
                &root,
                io::Error::from_raw_os_error(libc::EPERM),
            ));
        }
        if meta.mode() & 0o077 != 0 {
            fs::set_permissions(&root, fs::Permissions::from_mode(0o700))
                .map_err(|e| ImageError::io("cannot make private", &root, e))?;
        }
        let s = Store { root };
        for d in ["blobs", "blobs/sha256", "layers", "containers", "tmp"] {
            mkdir_private(&s.root.join(d))?;
        }
        let layout = s.root.join("oci-layout");
        if !layout.exists() {
            write_atomic(&layout, br#"{"imageLayoutVersion":"1.0.0"}"#)?;
        }
        let index = s.root.join("index.json");
        if !index.exists() {
            let _g = s.lock("index", true)?;
            if !index.exists() {
                s.write_index(&Index::new(Vec::new()))?;
            }
        }
        Ok(s)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Takes `<root>/<name>.lock` (shared or exclusive), waiting for it.
    pub fn lock(&self, name: &str, exclusive: bool) -> Result<Lock> {
        self.lock_file(&self.root.join(format!("{name}.lock")), exclusive)
    }

    fn lock_file(&self, path: &Path, exclusive: bool) -> Result<Lock> {
        let f = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(path)
            .map_err(|e| ImageError::io("cannot open lock", path, e))?;
        let op = if exclusive {
            libc::LOCK_EX
        } else {
            libc::LOCK_SH
        };
        loop {
            // SAFETY: flock on a descriptor we own.
            if unsafe { libc::flock(f.as_raw_fd(), op) } == 0 {
                return Ok(Lock(f));
            }
            let e = io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EINTR) {
                return Err(ImageError::io("cannot lock", path, e));
            }
        }
    }

    // ---- blobs ----

    pub fn blob_path(&self, d: &Digest) -> PathBuf {
        self.root.join("blobs/sha256").join(d.hex())
    }

    pub fn has_blob(&self, d: &Digest) -> bool {
        self.blob_path(d).is_file()
    }

    /// Stores a blob from a stream, verifying it against `expected` when given. Returns its
    /// digest and size. Callers hold the shared store lock (see [`Store::lock`]).
    pub fn write_blob(
        &self,
        src: &mut dyn Read,
        expected: Option<&Digest>,
    ) -> Result<(Digest, u64)> {
        let tmp = self
            .root
            .join("tmp")
            .join(format!("blob-{}-{}", std::process::id(), unique()));
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(|e| ImageError::io("cannot create", &tmp, e))?;
        let mut h = sha2::Sha256::new();
        let mut n = 0u64;
        let mut buf = vec![0u8; 256 * 1024];
        // (error, whether it came from reading the input rather than writing the store)
        let res: Result<(), (io::Error, bool)> = (|| {
            loop {
                let k = match src.read(&mut buf) {
                    Ok(0) => break,
                    Ok(k) => k,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err((e, true)),
                };
                h.update(&buf[..k]);
                f.write_all(&buf[..k]).map_err(|e| (e, false))?;
                n += k as u64;
            }
            Ok(())
        })();
        if let Err((e, reading)) = res {
            let _ = fs::remove_file(&tmp);
            if let Some(c) = corrupt_from(&e) {
                return Err(ImageError::Corrupt {
                    what: "reading input".into(),
                    message: c.to_string(),
                });
            }
            if reading && e.raw_os_error().is_none() {
                // A decompressor's or archive reader's error: the input is bad.
                return Err(ImageError::Corrupt {
                    what: "reading input".into(),
                    message: format!("corrupt or truncated: {e}"),
                });
            }
            let what = if reading {
                "cannot store blob: reading the input failed; partial copy"
            } else {
                "cannot store blob: writing"
            };
            return Err(ImageError::io(what, &tmp, e));
        }
        let d = Digest::from_hasher(h);
        if let Some(exp) = expected {
            if *exp != d {
                let _ = fs::remove_file(&tmp);
                return Err(ImageError::Corrupt {
                    what: format!("blob {exp}"),
                    message: format!("its content hashes to {d} (corrupt or truncated input)"),
                });
            }
        }
        let dst = self.blob_path(&d);
        if dst.exists() {
            let _ = fs::remove_file(&tmp);
        } else {
            fs::rename(&tmp, &dst).map_err(|e| {
                let _ = fs::remove_file(&tmp);
                ImageError::io("cannot store", &dst, e)
            })?;
        }
        Ok((d, n))
    }

    pub fn write_blob_bytes(&self, b: &[u8]) -> Result<Digest> {
        let d = Digest::of(b);
        if !self.has_blob(&d) {
            self.write_blob(&mut &b[..], Some(&d))?;
        }
        Ok(d)
    }

    /// A reader over a blob that fails at its end if the content does not match the digest.
    pub fn open_blob(&self, d: &Digest) -> Result<VerifyingReader<File>> {
        let p = self.blob_path(d);
        let f = File::open(&p).map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                ImageError::Corrupt {
                    what: format!("blob {d}"),
                    message: format!("missing from the store ({})", p.display()),
                }
            } else {
                ImageError::io("cannot open blob", &p, e)
            }
        })?;
        Ok(VerifyingReader::new(f, d.clone()))
    }

    /// Reads a (small) blob whole, verified.
    pub fn read_blob(&self, d: &Digest) -> Result<Vec<u8>> {
        let r = self.open_blob(d)?;
        let mut out = Vec::new();
        r.take(MAX_JSON + 1)
            .read_to_end(&mut out)
            .map_err(|e| match corrupt_from(&e) {
                Some(c) => ImageError::Corrupt {
                    what: "store".into(),
                    message: c.to_string(),
                },
                None => ImageError::io("cannot read blob", self.blob_path(d), e),
            })?;
        if out.len() as u64 > MAX_JSON {
            return Err(ImageError::Corrupt {
                what: format!("blob {d}"),
                message: "larger than expected for a JSON document".into(),
            });
        }
        Ok(out)
    }

    /// Checks a whole blob's digest (e.g. after an unpack error, to tell corruption apart).
    pub fn verify_blob(&self, d: &Digest) -> Result<()> {
        let r = self.open_blob(d)?;
        r.verify().map(|_| ()).map_err(|e| match corrupt_from(&e) {
            Some(c) => ImageError::Corrupt {
                what: "store".into(),
                message: c.to_string(),
            },
            None => ImageError::io("cannot read blob", self.blob_path(d), e),
        })
    }

    // ---- index ----

    pub fn read_index(&self) -> Result<Index> {
        let p = self.root.join("index.json");
        let text = fs::read(&p).map_err(|e| ImageError::io("cannot read", &p, e))?;
        serde_json::from_slice(&text).map_err(|e| ImageError::Corrupt {
            what: p.display().to_string(),
            message: format!("invalid index: {e}"),
        })
    }

    fn write_index(&self, idx: &Index) -> Result<()> {
        let data =
            serde_json::to_vec(idx).map_err(|e| ImageError::format("index", e.to_string()))?;
        write_atomic(&self.root.join("index.json"), &data)
    }

    /// Runs `f` on the index under the index lock and writes the result back.
    pub fn update_index<T>(&self, f: impl FnOnce(&mut Index) -> Result<T>) -> Result<T> {
        let _g = self.lock("index", true)?;
        let mut idx = self.read_index()?;
        let out = f(&mut idx)?;
        self.write_index(&idx)?;
        Ok(out)
    }

    /// Records an image (its manifest blob must be stored) under `names`; a name that pointed
    /// to another image moves here (that image stays, dangling if it has no name left).
    pub fn add_image(&self, manifest: &Descriptor, names: &[Reference]) -> Result<()> {
        self.update_index(|idx| {
            let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
            let before = idx.manifests.clone();
            idx.manifests.retain(|d| {
                !d.annotation(ANNOTATION_REF_NAME)
                    .is_some_and(|n| names.iter().any(|x| x == n))
            });
            // Images that lost their last name stay, as dangling entries.
            for d in before {
                if d.digest != manifest.digest
                    && !idx.manifests.iter().any(|m| m.digest == d.digest)
                {
                    let mut nameless = d;
                    nameless.annotations = None;
                    idx.manifests.push(nameless);
                }
            }
            let mut base = manifest.clone();
            base.annotations = None;
            base.platform = None;
            if names.is_empty() {
                if !idx.manifests.iter().any(|m| m.digest == manifest.digest) {
                    idx.manifests.push(base);
                }
            } else {
                // A nameless entry of this image goes when it gets a name.
                idx.manifests.retain(|m| {
                    !(m.digest == manifest.digest && m.annotation(ANNOTATION_REF_NAME).is_none())
                });
                for n in names {
                    let mut d = base.clone();
                    d.annotations = Some(BTreeMap::from([(ANNOTATION_REF_NAME.to_string(), n)]));
                    idx.manifests.push(d);
                }
            }
            Ok(())
        })
    }

    /// Every image in the store, with its names.
    pub fn images(&self) -> Result<Vec<Image>> {
        let idx = self.read_index()?;
        let mut order: Vec<Digest> = Vec::new();
        let mut names: HashMap<Digest, Vec<Reference>> = HashMap::new();
        let mut descs: HashMap<Digest, Descriptor> = HashMap::new();
        for d in &idx.manifests {
            if !names.contains_key(&d.digest) {
                order.push(d.digest.clone());
                names.insert(d.digest.clone(), Vec::new());
                descs.insert(d.digest.clone(), d.clone());
            }
            if let Some(n) = d.annotation(ANNOTATION_REF_NAME) {
                if let (Ok(r), Some(v)) = (Reference::parse(n), names.get_mut(&d.digest)) {
                    v.push(r);
                }
            }
        }
        let mut out = Vec::new();
        for d in order {
            let desc = &descs[&d];
            out.push(self.load_image(desc, names.remove(&d).unwrap_or_default())?);
        }
        Ok(out)
    }

    /// Reads an image's manifest and config from the store (both verified).
    pub fn load_image(&self, desc: &Descriptor, names: Vec<Reference>) -> Result<Image> {
        let mbytes = self.read_blob(&desc.digest)?;
        let manifest: Manifest =
            serde_json::from_slice(&mbytes).map_err(|e| ImageError::Corrupt {
                what: format!("manifest {}", desc.digest),
                message: e.to_string(),
            })?;
        let cbytes = self.read_blob(&manifest.config.digest)?;
        let (config, config_json) = parse_config(&cbytes, &manifest.config.digest)?;
        if config.rootfs().diff_ids().len() != manifest.layers.len() {
            return Err(ImageError::Corrupt {
                what: format!("image {}", manifest.config.digest),
                message: format!(
                    "the manifest has {} layers but the config lists {} diff ids",
                    manifest.layers.len(),
                    config.rootfs().diff_ids().len()
                ),
            });
        }
        Ok(Image {
            manifest_digest: desc.digest.clone(),
            manifest_media_type: manifest
                .media_type
                .clone()
                .unwrap_or_else(|| desc.media_type.clone()),
            manifest_size: mbytes.len() as u64,
            config_digest: manifest.config.digest.clone(),
            manifest,
            config,
            config_json,
            names,
        })
    }

    /// Finds an image by name (`busybox`, `busybox:1`, `name@sha256:…`), by id or id prefix
    /// (`sha256:…`, `3f57d9401f8d`), or by manifest digest.
    pub fn resolve(&self, s: &str) -> Result<Image> {
        let images = self.images()?;
        let parsed = Reference::parse(s);
        if let Ok(r) = &parsed {
            let hit = images.iter().find(|img| match &r.digest {
                Some(d) => &img.manifest_digest == d,
                None => img
                    .names
                    .iter()
                    .any(|n| n.name() == r.name() && n.tag == r.tag),
            });
            if let Some(img) = hit {
                return Ok(img.clone());
            }
        }
        let id = s.strip_prefix("sha256:").unwrap_or(s);
        if !id.is_empty() && id.len() <= 64 && id.bytes().all(|c| c.is_ascii_hexdigit()) {
            let id = id.to_ascii_lowercase();
            let mut hits: Vec<&Image> = images
                .iter()
                .filter(|img| {
                    img.config_digest.hex().starts_with(&id)
                        || (id.len() == 64 && img.manifest_digest.hex() == id)
                })
                .collect();
            hits.dedup_by(|a, b| a.config_digest == b.config_digest);
            match hits.len() {
                1 => return Ok(hits[0].clone()),
                0 => {}
                n => {
                    return Err(ImageError::Conflict(format!(
                        "image id prefix {s:?} is ambiguous ({n} images match); give more digits"
                    )))
                }
            }
        }
        match parsed {
            Err(e) if !s.bytes().all(|c| c.is_ascii_hexdigit() || c == b':') => Err(e),
            _ => Err(ImageError::NotFound(s.to_string())),
        }
    }

    /// `rootbox tag SRC DST`.
    pub fn tag(&self, src: &str, dst: &str) -> Result<Reference> {
        let img = self.resolve(src)?;
        let r = Reference::parse(dst)?;
        if r.digest.is_some() {
            return Err(ImageError::BadReference {
                reference: dst.into(),
                reason: "a tag cannot contain a digest".into(),
            });
        }
        let desc = Descriptor::new(
            &img.manifest_media_type,
            img.manifest_digest.clone(),
            img.manifest_size,
        );
        self.add_image(&desc, std::slice::from_ref(&r))?;
        Ok(r)
    }

    // ---- removal ----

    /// Containers recorded as using images, by id (records of containers that can never
    /// exist, see [`ContainerImage::abandoned`], left out).
    pub fn containers_using(&self) -> Result<BTreeMap<String, ContainerImage>> {
        Ok(self
            .container_records()?
            .into_iter()
            .filter(|(id, rec)| !rec.abandoned(id))
            .collect())
    }

    /// Every container record, abandoned or not.
    fn container_records(&self) -> Result<BTreeMap<String, ContainerImage>> {
        let dir = self.root.join("containers");
        let mut out = BTreeMap::new();
        let rd = match fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(ImageError::io("cannot list", &dir, e)),
        };
        for ent in rd.flatten() {
            let p = ent.path().join("image");
            if let Ok(b) = fs::read(&p) {
                if let Ok(rec) = serde_json::from_slice::<ContainerImage>(&b) {
                    out.insert(ent.file_name().to_string_lossy().into_owned(), rec);
                }
            }
        }
        Ok(out)
    }

    /// `rootbox rmi`: untags names; removes an image when its last name goes or when it is
    /// named by id. Images used by containers are refused unless `force`. Returns the
    /// `Untagged:`/`Deleted:` lines.
    pub fn remove(&self, what: &[String], force: bool) -> Result<Vec<String>> {
        let _g = self.lock("store", true)?;
        let mut lines = Vec::new();
        let users = self.containers_using()?;
        for s in what {
            let img = self.resolve(s)?;
            let used: Vec<&String> = users
                .iter()
                .filter(|(_, r)| r.config == img.config_digest || r.image == img.manifest_digest)
                .map(|(id, _)| id)
                .collect();
            let by_name = Reference::parse(s).ok().filter(|r| {
                img.names
                    .iter()
                    .any(|n| n.name() == r.name() && (r.digest.is_some() || n.tag == r.tag))
            });
            let untag: Vec<Reference> = match &by_name {
                Some(r) if r.digest.is_none() => vec![r.clone()],
                Some(r) => img
                    .names
                    .iter()
                    .filter(|n| n.name() == r.name())
                    .cloned()
                    .collect(),
                None => {
                    if img.names.len() > 1 && !force {
                        return Err(ImageError::Conflict(format!(
                            "image {} is referenced by several names ({}): remove them by name, or use --force",
                            img.config_digest.short(),
                            img.names.iter().map(Reference::familiar).collect::<Vec<_>>().join(", ")
                        )));
                    }
                    img.names.clone()
                }
            };
            let removes_image = untag.len() >= img.names.len();
            if removes_image && !used.is_empty() && !force {
                return Err(ImageError::Conflict(format!(
                    "image {} ({}) is in use by container(s) {}: remove them first, or use --force",
                    s,
                    img.config_digest.short(),
                    used.iter()
                        .map(|s| s.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
            self.update_index(|idx| {
                let names: Vec<String> = untag.iter().map(|n| n.to_string()).collect();
                idx.manifests.retain(|d| {
                    if d.digest != img.manifest_digest {
                        return true;
                    }
                    if removes_image {
                        return false;
                    }
                    !d.annotation(ANNOTATION_REF_NAME)
                        .is_some_and(|n| names.contains(&n.to_string()))
                });
                Ok(())
            })?;
            for n in &untag {
                lines.push(format!("Untagged: {}", n.familiar()));
            }
            if removes_image {
                lines.push(format!("Deleted: {}", img.config_digest));
            }
        }
        self.gc_locked()?;
        Ok(lines)
    }

    /// `rootbox image prune`: removes dangling images (with `all`, every image no container
    /// uses). Returns the deleted ids and the bytes reclaimed.
    pub fn prune(&self, all: bool) -> Result<(Vec<String>, u64)> {
        let _g = self.lock("store", true)?;
        let users = self.containers_using()?;
        let images = self.images()?;
        let victims: Vec<&Image> = images
            .iter()
            .filter(|img| img.names.is_empty() || all)
            .filter(|img| {
                !users
                    .values()
                    .any(|r| r.image == img.manifest_digest || r.config == img.config_digest)
            })
            .collect();
        let gone: BTreeSet<Digest> = victims.iter().map(|i| i.manifest_digest.clone()).collect();
        self.update_index(|idx| {
            idx.manifests.retain(|d| !gone.contains(&d.digest));
            Ok(())
        })?;
        let freed = self.gc_locked()?;
        Ok((
            victims
                .iter()
                .map(|i| i.config_digest.to_string())
                .collect(),
            freed,
        ))
    }

    /// Removes blobs and unpacked layers no image or container needs. Returns bytes freed.
    pub fn gc(&self) -> Result<u64> {
        let _g = self.lock("store", true)?;
        self.gc_locked()
    }

    fn gc_locked(&self) -> Result<u64> {
        let idx = self.read_index()?;
        let (uids, gids) = idmap::mappings(IdMapMode::Auto).unwrap_or_default();
        // What killed `run`s left of containers they never registered (a record that cannot
        // be removed now stays abandoned, and is tried again by the next GC): abandoned
        // records, and directories without a record at all (killed while writing it; only
        // `prepare_container` makes these directories, under the shared store lock, so none
        // is being made while we hold it exclusively).
        for (id, rec) in self.container_records()? {
            if rec.abandoned(&id) {
                if let Ok(d) = self.container_dir(&id) {
                    let _ = userns::remove_tree(&d, &uids, &gids);
                }
            }
        }
        if let Ok(rd) = fs::read_dir(self.root.join("containers")) {
            for ent in rd.flatten() {
                let record = ent.path().join("image");
                if matches!(fs::symlink_metadata(&record), Err(e) if e.kind() == io::ErrorKind::NotFound)
                {
                    let _ = userns::remove_tree(&ent.path(), &uids, &gids);
                }
            }
        }
        let users = self.containers_using()?;
        let mut keep_blobs: BTreeSet<String> = BTreeSet::new();
        let mut keep_layers: BTreeSet<String> = BTreeSet::new();
        let mut manifests: Vec<Digest> = idx.manifests.iter().map(|d| d.digest.clone()).collect();
        // Images of the build cache stay until `rootbox builder prune`.
        manifests.extend(crate::build::cached_manifests(&self.root));
        for r in users.values() {
            manifests.push(r.image.clone());
            keep_blobs.insert(r.config.hex().to_string());
            keep_layers.extend(r.diff_ids.iter().map(|d| d.hex().to_string()));
        }
        for m in manifests {
            keep_blobs.insert(m.hex().to_string());
            let Ok(bytes) = self.read_blob(&m) else {
                continue;
            };
            let Ok(man) = serde_json::from_slice::<Manifest>(&bytes) else {
                continue;
            };
            keep_blobs.insert(man.config.digest.hex().to_string());
            keep_blobs.extend(man.layers.iter().map(|l| l.digest.hex().to_string()));
            if let Ok(cb) = self.read_blob(&man.config.digest) {
                if let Ok((cfg, _)) = parse_config(&cb, &man.config.digest) {
                    for d in cfg.rootfs().diff_ids() {
                        if let Some(h) = d.strip_prefix("sha256:") {
                            keep_layers.insert(h.to_string());
                        }
                    }
                }
            }
        }
        let mut freed = 0u64;
        let bdir = self.root.join("blobs/sha256");
        if let Ok(rd) = fs::read_dir(&bdir) {
            for ent in rd.flatten() {
                let name = ent.file_name().to_string_lossy().into_owned();
                if !keep_blobs.contains(&name) {
                    freed += ent.metadata().map_or(0, |m| m.len());
                    let _ = fs::remove_file(ent.path());
                }
            }
        }
        let ldir = self.root.join("layers");
        if let Ok(rd) = fs::read_dir(&ldir) {
            for mapdir in rd.flatten() {
                let Ok(inner) = fs::read_dir(mapdir.path()) else {
                    continue;
                };
                for ent in inner.flatten() {
                    let name = ent.file_name().to_string_lossy().into_owned();
                    let hex = name.strip_suffix(".lock").unwrap_or(&name);
                    if keep_layers.contains(hex) {
                        continue;
                    }
                    if name.ends_with(".lock") {
                        let _ = fs::remove_file(ent.path());
                    } else {
                        userns::remove_tree(&ent.path(), &uids, &gids)?;
                    }
                }
            }
        }
        // Leftovers of writers that died (no writer runs: we hold the store lock).
        if let Ok(rd) = fs::read_dir(self.root.join("tmp")) {
            for ent in rd.flatten() {
                let _ = userns::remove_tree(&ent.path(), &uids, &gids);
            }
        }
        Ok(freed)
    }

    // ---- layers ----

    /// The unpacked layer directories of `img`, lowest first, for the default (`auto`) id
    /// mapping; layers not yet unpacked are unpacked now.
    pub fn layer_dirs(&self, img: &Image) -> Result<Vec<PathBuf>> {
        let (uids, gids) = idmap::mappings(IdMapMode::Auto)?;
        self.layer_dirs_for(img, &uids, &gids)
    }

    /// As [`Store::layer_dirs`], for a container with these id mappings.
    pub fn layer_dirs_for(
        &self,
        img: &Image,
        uids: &[LinuxIdMapping],
        gids: &[LinuxIdMapping],
    ) -> Result<Vec<PathBuf>> {
        let key = mapping_key(uids, gids);
        let diff_ids = img.diff_ids()?;
        let base = self.root.join("layers").join(&key);
        mkdir_private(&base)?;
        let mut out = Vec::with_capacity(diff_ids.len());
        let mut guard = None;
        for (desc, diff) in img.manifest.layers.iter().zip(diff_ids.iter()) {
            let dir = base.join(diff.hex());
            if !dir.join("diff").is_dir() {
                if guard.is_none() {
                    guard = Some(self.lock("store", false)?);
                }
                let _l = self.lock_file(&base.join(format!("{}.lock", diff.hex())), true)?;
                if !dir.join("diff").is_dir() {
                    self.unpack_layer(desc, diff, &dir, &key, uids, gids)?;
                }
            }
            out.push(dir.join("diff"));
        }
        Ok(out)
    }

    fn unpack_layer(
        &self,
        desc: &Descriptor,
        diff: &Digest,
        dir: &Path,
        key: &str,
        uids: &[LinuxIdMapping],
        gids: &[LinuxIdMapping],
    ) -> Result<()> {
        let parent = dir.parent().unwrap_or(&self.root);
        let tmp = parent.join(format!(
            ".tmp-{}-{}-{}",
            diff.short(),
            std::process::id(),
            unique()
        ));
        mkdir_private(&tmp)?;
        let res = self.unpack_into(desc, diff, &tmp, key, uids, gids);
        let res = res.and_then(|()| {
            fs::rename(&tmp, dir)
                .map_err(|e| ImageError::io("cannot move the unpacked layer to", dir, e))
        });
        if res.is_err() {
            let _ = userns::remove_tree(&tmp, uids, gids);
        }
        res
    }

    fn unpack_into(
        &self,
        desc: &Descriptor,
        diff: &Digest,
        tmp: &Path,
        key: &str,
        uids: &[LinuxIdMapping],
        gids: &[LinuxIdMapping],
    ) -> Result<()> {
        let target = tmp.join("diff");
        fs::DirBuilder::new()
            .mode(0o755)
            .create(&target)
            .map_err(|e| ImageError::io("cannot create", &target, e))?;
        let mut opts = UnpackOptions::for_caller(uids, gids);
        opts.limits = unpack::Limits::from_env().map_err(|e| ImageError::Config(e.to_string()))?;
        let blob = self.open_blob(&desc.digest)?;
        // Reading, checking the blob digest, decompressing and checking the diff id run in a
        // thread, so they overlap the unpack's system calls. The thread is joined before
        // anything forks (the user-namespace step below).
        let (mut stream, reader) = spawn_layer_reader(
            blob,
            desc.digest.clone(),
            diff.clone(),
            opts.limits.max_size,
        );
        let unpacked = unpack::unpack(&mut stream, &target, &opts);
        // Drain what the tar reader left (end-of-archive padding), so both digests cover it all.
        let drained = io::copy(&mut stream, &mut io::sink());
        drop(stream);
        let checked = reader
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("the layer reader thread panicked")));
        let outcome = match (unpacked, checked) {
            (Ok(o), Ok(())) if drained.is_ok() => o,
            (_, Err(e)) => return Err(self.read_err(&desc.digest, e)),
            (Err(e), Ok(())) => {
                // The digests were fine (a mismatch would explain garbage better than the
                // tar error it causes, and is reported first above): the layer itself is bad.
                return Err(ImageError::Unpack {
                    layer: desc.digest.clone(),
                    source: e,
                });
            }
            (Ok(_), Ok(())) => {
                let e = drained
                    .err()
                    .unwrap_or_else(|| io::Error::other("read failed"));
                return Err(self.read_err(&desc.digest, e));
            }
        };
        if let Ownership::Record { .. } = opts.ownership {
            userns::apply_owners(&target, &outcome.ops, uids, gids)?;
        }
        let meta = LayerMeta {
            diff_id: diff.clone(),
            blob: desc.digest.clone(),
            mapping: key.to_string(),
            size: outcome.size,
            entries: outcome.entries,
            notes: outcome.notes.clone(),
            unpacked: time::now(),
        };
        let bytes = serde_json::to_vec_pretty(&meta)
            .map_err(|e| ImageError::format("layer meta", e.to_string()))?;
        write_atomic(&tmp.join("meta.json"), &bytes)?;
        for n in &outcome.notes {
            eprintln!("rootbox: note: layer {}: {n}", diff.short());
        }
        Ok(())
    }

    fn read_err(&self, d: &Digest, e: io::Error) -> ImageError {
        if let Some(hit) = e
            .get_ref()
            .and_then(|i| i.downcast_ref::<unpack::SizeLimitHit>())
        {
            return ImageError::Unpack {
                layer: d.clone(),
                source: unpack::UnpackError::TooLarge { limit: hit.limit },
            };
        }
        match corrupt_from(&e) {
            Some(c) => ImageError::Corrupt {
                what: "store".into(),
                message: c.to_string(),
            },
            None if e.kind() == io::ErrorKind::InvalidData => ImageError::Corrupt {
                what: format!("layer {d}"),
                message: e.to_string(),
            },
            // Not a system call's error: the decompressor's (a truncated or corrupt stream).
            None if e.raw_os_error().is_none() => ImageError::Corrupt {
                what: format!("layer {d}"),
                message: format!("corrupt or truncated: {e}"),
            },
            None => ImageError::io("cannot read blob", self.blob_path(d), e),
        }
    }

    // ---- containers ----

    fn container_dir(&self, id: &str) -> Result<PathBuf> {
        if id.is_empty() || id == "." || id == ".." || id.contains('/') || id.contains('\0') {
            return Err(ImageError::Config(format!("invalid container id {id:?}")));
        }
        Ok(self.root.join("containers").join(id))
    }

    /// Creates (when missing) and returns a container's overlay `upper` and `work` dirs.
    pub fn container_dirs(&self, id: &str) -> Result<(PathBuf, PathBuf)> {
        let d = self.container_dir(id)?;
        mkdir_private(&d)?;
        let upper = d.join("upper");
        let work = d.join("work");
        match fs::DirBuilder::new().mode(0o755).create(&upper) {
            Ok(()) => {
                let _ = fs::set_permissions(&upper, fs::Permissions::from_mode(0o755));
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(ImageError::io("cannot create", &upper, e)),
        }
        mkdir_private(&work)?;
        Ok((upper, work))
    }

    /// Everything a container made from `img` needs, in the safe order: the in-use record
    /// first (so a concurrent `rmi`/GC keeps the layers), then the layers (unpacked if needed,
    /// lowest first) and the container's `upper`/`work` directories.
    ///
    /// `owner`: the process making the container and where it will register it, so a record
    /// this process never gets to register (it was killed) is known as abandoned.
    pub fn prepare_container(
        &self,
        id: &str,
        img: &Image,
        uids: &[LinuxIdMapping],
        gids: &[LinuxIdMapping],
        owner: Option<RecordOwner>,
    ) -> Result<PreparedRootfs> {
        let _g = self.lock("store", false)?;
        self.mark_in_use(id, img, uids, gids, owner)?;
        let made = self
            .layer_dirs_for(img, uids, gids)
            .and_then(|layers| Ok((layers, self.container_dirs(id)?)));
        match made {
            Ok((layers, (upper, work))) => Ok(PreparedRootfs {
                layers,
                upper,
                work,
            }),
            Err(e) => {
                // A layer that cannot be unpacked (a hostile or corrupt image, a full disk)
                // must not leave a record that keeps the image "in use".
                let _ = self.remove_container_dirs(id);
                Err(e)
            }
        }
    }

    /// Records that container `id` uses `img` (so `rmi` refuses it and GC keeps its layers).
    pub fn mark_in_use(
        &self,
        id: &str,
        img: &Image,
        uids: &[LinuxIdMapping],
        gids: &[LinuxIdMapping],
        owner: Option<RecordOwner>,
    ) -> Result<()> {
        let d = self.container_dir(id)?;
        mkdir_private(&d)?;
        let rec = ContainerImage {
            image: img.manifest_digest.clone(),
            config: img.config_digest.clone(),
            name: img.names.first().map(Reference::familiar),
            diff_ids: img.diff_ids()?,
            mapping: mapping_key(uids, gids),
            run_config: None,
            owner,
        };
        let bytes = serde_json::to_vec_pretty(&rec)
            .map_err(|e| ImageError::format("container record", e.to_string()))?;
        write_atomic(&d.join("image"), &bytes)
    }

    /// Adds the container's run config to its record (made by [`Store::mark_in_use`]).
    pub fn set_run_config(&self, id: &str, run_config: &serde_json::Value) -> Result<()> {
        let path = self.container_dir(id)?.join("image");
        let bytes = std::fs::read(&path).map_err(|e| ImageError::io("cannot read", &path, e))?;
        let mut rec: ContainerImage =
            serde_json::from_slice(&bytes).map_err(|e| ImageError::Corrupt {
                what: path.display().to_string(),
                message: e.to_string(),
            })?;
        rec.run_config = Some(run_config.clone());
        let bytes = serde_json::to_vec_pretty(&rec)
            .map_err(|e| ImageError::format("container record", e.to_string()))?;
        write_atomic(&path, &bytes)
    }

    /// Removes everything of a container in the store (its upper dir may hold files owned by
    /// subordinate ids: removed in the user namespace when needed).
    pub fn remove_container_dirs(&self, id: &str) -> Result<()> {
        let d = self.container_dir(id)?;
        let (uids, gids) = idmap::mappings(IdMapMode::Auto).unwrap_or_default();
        userns::remove_tree(&d, &uids, &gids)?;
        Ok(())
    }

    /// One row per name (a dangling image gets one `<none>` row), newest first.
    pub fn summaries(&self) -> Result<Vec<ImageSummary>> {
        let users = self.containers_using()?;
        let mut imgs = self.images()?;
        imgs.sort_by_key(|i| std::cmp::Reverse(i.created().and_then(time::parse).unwrap_or(0)));
        let mut out = Vec::new();
        for img in imgs {
            let containers = users
                .values()
                .filter(|r| r.config == img.config_digest)
                .count();
            let row = |repo: String, tag: String| ImageSummary {
                repository: repo,
                tag,
                id: img.config_digest.short().to_string(),
                digest: img.manifest_digest.to_string(),
                created: img.created().unwrap_or("").to_string(),
                created_since: time::ago(img.created()),
                size: img.size(),
                containers,
            };
            if img.names.is_empty() {
                out.push(row("<none>".into(), "<none>".into()));
            }
            for n in &img.names {
                out.push(row(
                    n.familiar_name(),
                    n.tag.clone().unwrap_or_else(|| "<none>".into()),
                ));
            }
        }
        Ok(out)
    }
}

/// Parses an image config (OCI or Docker), keeping the raw JSON too.
pub fn parse_config(
    bytes: &[u8],
    digest: &Digest,
) -> Result<(ImageConfiguration, serde_json::Value)> {
    let value: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| ImageError::Corrupt {
            what: format!("image config {digest}"),
            message: format!("invalid JSON: {e}"),
        })?;
    let config: ImageConfiguration =
        serde_json::from_value(value.clone()).map_err(|e| ImageError::Corrupt {
            what: format!("image config {digest}"),
            message: e.to_string(),
        })?;
    Ok((config, value))
}

/// Human-readable sizes as Docker prints them (`1.23MB`).
pub fn human_size(n: u64) -> String {
    let units = ["B", "kB", "MB", "GB", "TB"];
    let mut v = n as f64;
    let mut i = 0;
    while v >= 1000.0 && i < units.len() - 1 {
        v /= 1000.0;
        i += 1;
    }
    if i == 0 {
        format!("{n}B")
    } else {
        format!("{:.3}", v)
            .trim_end_matches('0')
            .trim_end_matches('.')
            .to_string()
            + units[i]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::archive::{self, ImportOptions};
    use crate::image::config::{self, LayerFiles};
    use crate::spec::RunOptions;

    fn tarball(path: &Path) {
        let f = File::create(path).unwrap();
        let mut b = tar::Builder::new(f);
        let mut add = |name: &str, data: &[u8], mode: u32| {
            let mut h = tar::Header::new_ustar();
            h.set_size(data.len() as u64);
            h.set_mode(mode);
            h.set_mtime(1_700_000_000);
            h.set_entry_type(tar::EntryType::Regular);
            b.append_data(&mut h, name, data).unwrap();
        };
        add(
            "etc/passwd",
            b"root:x:0:0:root:/root:/bin/sh\nweb:x:80:81:web:/srv:/bin/sh\n",
            0o644,
        );
        add(
            "etc/group",
            b"root:x:0:\nweb:x:81:\nextra:x:90:web\n",
            0o644,
        );
        add("bin/app", b"#!/bin/sh\n", 0o755);
        b.into_inner().unwrap().sync_all().unwrap();
    }

    #[test]
    fn import_prepare_apply_and_remove() {
        let base = std::env::temp_dir().join(format!(
            "rootbox-store-test-{}-{}",
            std::process::id(),
            unique()
        ));
        let store = Store::open(Some(base.join("store"))).unwrap();
        let tar = base.join("rootfs.tar");
        tarball(&tar);
        let opts = ImportOptions {
            changes: vec![
                "ENTRYPOINT [\"/bin/app\"]".into(),
                "USER web".into(),
                "EXPOSE 80".into(),
            ],
            message: None,
        };
        let loaded = archive::import(&store, &tar, Some("app:1"), &opts).unwrap();
        let img = store.resolve("app:1").unwrap();
        assert_eq!(img.id(), &loaded.id);
        assert_eq!(
            store.resolve(&loaded.id.short()[..6]).unwrap().id(),
            &loaded.id
        );
        assert!(matches!(
            store.resolve("nope"),
            Err(ImageError::NotFound(_))
        ));

        let (uids, gids) = idmap::mappings(IdMapMode::Single).unwrap();
        let prep = store
            .prepare_container("c1", &img, &uids, &gids, None)
            .unwrap();
        assert_eq!(prep.layers.len(), 1);
        assert!(prep.layers[0].join("bin/app").is_file());
        assert!(prep.upper.is_dir() && prep.work.is_dir());

        let mut run = RunOptions {
            args: vec!["--flag".into()],
            ..Default::default()
        };
        let applied =
            config::apply(&img.config, &LayerFiles(&prep.layers), None, &mut run).unwrap();
        assert_eq!(run.args, vec!["/bin/app", "--flag"]);
        assert_eq!(run.user.as_deref(), Some("80:81"));
        assert_eq!(applied.additional_gids, vec![90]);
        assert_eq!(applied.exposed_ports, vec!["80/tcp"]);

        // In use: rmi refuses, unless forced; the forced removal keeps the container's layer.
        let e = store
            .remove(&["app:1".into()], false)
            .unwrap_err()
            .to_string();
        assert!(e.contains("in use by container(s) c1"), "{e}");
        store.remove(&["app:1".into()], true).unwrap();
        assert!(prep.layers[0].join("bin/app").is_file());
        store.remove_container_dirs("c1").unwrap();
        assert!(!prep.upper.exists());
        store.gc().unwrap();
        assert!(!prep.layers[0].exists());
        assert_eq!(
            fs::read_dir(store.root().join("blobs/sha256"))
                .unwrap()
                .count(),
            0
        );
        fs::remove_dir_all(&base).unwrap();
    }
    #[test]
    fn failed_unpack_leaves_no_container_record() {
        let base = std::env::temp_dir().join(format!(
            "rootbox-store-test-{}-{}",
            std::process::id(),
            unique()
        ));
        let store = Store::open(Some(base.join("store"))).unwrap();
        // A tarball whose only entry climbs out of the layer: import takes it (it is a tar),
        // unpacking refuses it.
        let tar = base.join("evil.tar");
        {
            let mut b = tar::Builder::new(File::create(&tar).unwrap());
            let mut h = tar::Header::new_gnu();
            let name = b"../../evil";
            h.as_gnu_mut().unwrap().name[..name.len()].copy_from_slice(name);
            h.set_size(1);
            h.set_mode(0o644);
            h.set_entry_type(tar::EntryType::Regular);
            h.set_cksum();
            b.append(&h, &b"x"[..]).unwrap();
            b.into_inner().unwrap();
        }
        archive::import(&store, &tar, Some("evil:1"), &ImportOptions::default()).unwrap();
        let img = store.resolve("evil:1").unwrap();
        let (uids, gids) = idmap::mappings(IdMapMode::Single).unwrap();
        let e = store
            .prepare_container("c1", &img, &uids, &gids, None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("climbs out of the layer root"), "{e}");
        assert_eq!(
            fs::read_dir(store.root().join("containers"))
                .unwrap()
                .count(),
            0
        );
        // So the image is not "in use": rmi works without --force.
        store.remove(&["evil:1".into()], false).unwrap();
        fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn records_of_containers_never_registered_do_not_hold_images() {
        let base = std::env::temp_dir().join(format!(
            "rootbox-store-test-{}-{}",
            std::process::id(),
            unique()
        ));
        let store = Store::open(Some(base.join("store"))).unwrap();
        let state = base.join("state");
        fs::create_dir_all(&state).unwrap();
        let tar = base.join("rootfs.tar");
        tarball(&tar);
        archive::import(&store, &tar, Some("app:1"), &ImportOptions::default()).unwrap();
        let img = store.resolve("app:1").unwrap();
        let (uids, gids) = idmap::mappings(IdMapMode::Single).unwrap();
        // A process that is gone (reaped): the owner of a `run` killed before it registered.
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead_pid = child.id() as i32;
        child.wait().unwrap();
        let me = RecordOwner::current(&state).unwrap();
        let dead = RecordOwner {
            pid: dead_pid,
            ..me.clone()
        };
        // The same pid, another start time: a reused pid is not the owner.
        let reused = RecordOwner {
            start: me.start + 1,
            ..me.clone()
        };
        let made = |id: &str, owner: Option<RecordOwner>| {
            store
                .prepare_container(id, &img, &uids, &gids, owner)
                .unwrap()
        };
        let abandoned = made("gone", Some(dead.clone()));
        let reused_dir = made("reused", Some(reused));
        made("alive", Some(me.clone()));
        made("registered", Some(dead));
        fs::create_dir(state.join("registered")).unwrap();
        fs::write(state.join("registered/state.json"), b"{}").unwrap();
        // A state directory without a record is a crash's leftover, not a registration.
        fs::create_dir(state.join("gone")).unwrap();
        made("old", None);
        // Killed while it wrote the record: a directory with only the record's temporary file.
        fs::create_dir(store.root().join("containers/unrecorded")).unwrap();
        fs::write(
            store.root().join("containers/unrecorded/.image.tmp-1-2"),
            b"{",
        )
        .unwrap();
        let users: Vec<String> = store.containers_using().unwrap().into_keys().collect();
        assert_eq!(users, ["alive", "old", "registered"]);
        // The live ones keep the image in use.
        let e = store.remove(&["app:1".into()], false).unwrap_err();
        assert!(e.to_string().contains("alive, old, registered"), "{e}");
        for id in ["alive", "old", "registered"] {
            store.remove_container_dirs(id).unwrap();
        }
        // rmi without --force, and GC took what the abandoned records held.
        store.remove(&["app:1".into()], false).unwrap();
        assert!(!abandoned.upper.exists() && !reused_dir.upper.exists());
        assert_eq!(
            fs::read_dir(store.root().join("containers"))
                .unwrap()
                .count(),
            0
        );
        assert!(!abandoned.layers[0].exists(), "the layer stayed");
        fs::remove_dir_all(&base).unwrap();
    }
}

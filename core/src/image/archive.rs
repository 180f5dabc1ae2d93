//! Images in and out without a registry: `docker save` archives (docker-archive), OCI image
//! layouts (as a directory or a tar, "oci-archive"), and rootfs tarballs (`import`).
//!
//! Every blob read from an archive is verified on its way into the store (named blobs against
//! their digest; the layer of a docker-archive against the diff id its config lists when it is
//! uncompressed, otherwise at unpack time).

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::digest::{Digest, HashingReader};
use super::reference::Reference;
use super::store::{
    self, check_tar, decompress, parse_config, unique, Compression, Descriptor, Image, Index,
    Manifest, Store, ANNOTATION_CONTAINERD_NAME, ANNOTATION_REF_NAME, MEDIA_DOCKER_LIST,
    MEDIA_DOCKER_MANIFEST, MEDIA_OCI_CONFIG, MEDIA_OCI_INDEX, MEDIA_OCI_MANIFEST,
};
use super::{time, ImageError, Result};

/// Formats `rootbox save` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaveFormat {
    DockerArchive,
    OciArchive,
    OciDir,
}

impl std::str::FromStr for SaveFormat {
    type Err = ImageError;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "docker-archive" | "docker" => Ok(SaveFormat::DockerArchive),
            "oci-archive" | "oci" => Ok(SaveFormat::OciArchive),
            "oci-dir" => Ok(SaveFormat::OciDir),
            other => Err(ImageError::Config(format!(
                "unknown format {other:?} (expected docker-archive, oci-archive or oci-dir)"
            ))),
        }
    }
}

/// The `docker save` manifest.json entry.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerEntry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

/// The Go name of this machine's architecture, as image configs spell it.
pub fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        "arm" => "arm",
        "s390x" => "s390x",
        "riscv64" => "riscv64",
        other => other,
    }
}

/// Where the files of an archive are: a directory, or a tar whose files were read once
/// (small JSON documents kept in memory, everything else stored as blobs).
enum Source {
    Dir(PathBuf),
    Tar {
        small: HashMap<String, Vec<u8>>,
        blobs: HashMap<String, (Digest, u64)>,
        links: HashMap<String, String>,
    },
}

fn clean_path(p: &str) -> Option<String> {
    let mut out: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                out.pop()?;
            }
            c => out.push(c),
        }
    }
    Some(out.join("/"))
}

fn is_small_name(p: &str) -> bool {
    p.ends_with(".json") || p == "repositories" || p == "oci-layout" || p.ends_with("/VERSION")
}

impl Source {
    fn read_tar(store: &Store, input: &mut dyn BufRead, what: &str) -> Result<Source> {
        let mut dec = BufReader::with_capacity(
            1 << 20,
            decompress(input).map_err(|e| ImageError::format(what, format!("cannot read: {e}")))?,
        );
        check_tar(&mut dec, what)?;
        let mut small = HashMap::new();
        let mut blobs = HashMap::new();
        let mut links = HashMap::new();
        let mut ar = tar::Archive::new(dec);
        let entries = ar
            .entries()
            .map_err(|e| ImageError::format(what, format!("not a tar archive: {e}")))?;
        for ent in entries {
            let mut ent =
                ent.map_err(|e| ImageError::format(what, format!("bad tar archive: {e}")))?;
            let raw = String::from_utf8_lossy(&ent.path_bytes()).into_owned();
            let Some(path) = clean_path(&raw) else {
                return Err(ImageError::format(
                    what,
                    format!("entry {raw:?} climbs out of the archive"),
                ));
            };
            let kind = ent.header().entry_type();
            if kind.is_symlink() || kind.is_hard_link() {
                let target = ent
                    .link_name_bytes()
                    .map(|b| String::from_utf8_lossy(&b).into_owned())
                    .unwrap_or_default();
                let base = if kind.is_symlink() {
                    Path::new(&path)
                        .parent()
                        .map(|p| p.to_string_lossy().into_owned())
                        .unwrap_or_default()
                } else {
                    String::new()
                };
                if let Some(t) = clean_path(&format!("{base}/{target}")) {
                    links.insert(path, t);
                }
                continue;
            }
            if !kind.is_file() {
                continue;
            }
            let size = ent.header().size().unwrap_or(0);
            if is_small_name(&path) && size <= store::MAX_JSON {
                let mut b = Vec::with_capacity(size as usize);
                ent.read_to_end(&mut b)
                    .map_err(|e| ImageError::format(what, format!("reading {path}: {e}")))?;
                small.insert(path, b);
                continue;
            }
            // Named blobs of an OCI layout are verified against their name on the way in.
            let expected = path
                .strip_prefix("blobs/sha256/")
                .and_then(|h| Digest::parse(&format!("sha256:{h}")).ok());
            let (d, n) = store
                .write_blob(&mut ent, expected.as_ref())
                .map_err(|e| match e {
                    ImageError::Corrupt { message, .. } => ImageError::Corrupt {
                        what: format!("{what}: {path}"),
                        message,
                    },
                    other => other,
                })?;
            blobs.insert(path, (d, n));
        }
        Ok(Source::Tar {
            small,
            blobs,
            links,
        })
    }

    fn resolve<'a>(&'a self, path: &'a str) -> String {
        let mut p = clean_path(path).unwrap_or_default();
        if let Source::Tar { links, .. } = self {
            for _ in 0..16 {
                match links.get(&p) {
                    Some(t) => p = t.clone(),
                    None => break,
                }
            }
        }
        p
    }

    fn exists(&self, path: &str) -> bool {
        let p = self.resolve(path);
        match self {
            Source::Dir(d) => d.join(&p).is_file(),
            Source::Tar { small, blobs, .. } => small.contains_key(&p) || blobs.contains_key(&p),
        }
    }

    /// A small document (JSON), read whole.
    fn doc(&self, store: &Store, path: &str) -> Result<Option<Vec<u8>>> {
        let p = self.resolve(path);
        match self {
            Source::Dir(d) => {
                let f = d.join(&p);
                match File::open(&f) {
                    Ok(fh) => {
                        let mut b = Vec::new();
                        fh.take(store::MAX_JSON)
                            .read_to_end(&mut b)
                            .map_err(|e| ImageError::io("cannot read", &f, e))?;
                        Ok(Some(b))
                    }
                    Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
                    Err(e) => Err(ImageError::io("cannot read", &f, e)),
                }
            }
            Source::Tar { small, blobs, .. } => {
                if let Some(b) = small.get(&p) {
                    return Ok(Some(b.clone()));
                }
                match blobs.get(&p) {
                    Some((d, _)) => store.read_blob(d).map(Some),
                    None => Ok(None),
                }
            }
        }
    }

    /// Puts the file at `path` into the store (verified against `expected`), returning its
    /// digest and size.
    fn blob(
        &self,
        store: &Store,
        path: &str,
        expected: Option<&Digest>,
        what: &str,
    ) -> Result<(Digest, u64)> {
        if clean_path(path).is_none() {
            return Err(ImageError::format(
                what,
                format!("{path:?} climbs out of the archive"),
            ));
        }
        let p = self.resolve(path);
        let missing = || ImageError::format(what, format!("{p} is missing from the archive"));
        let (d, n) = match self {
            Source::Dir(dir) => {
                let f = dir.join(&p);
                if let Some(exp) = expected {
                    if store.has_blob(exp) {
                        let n = fs::metadata(store.blob_path(exp))
                            .map(|m| m.len())
                            .unwrap_or(0);
                        return Ok((exp.clone(), n));
                    }
                }
                let mut fh = File::open(&f).map_err(|e| {
                    if e.kind() == io::ErrorKind::NotFound {
                        missing()
                    } else {
                        ImageError::io("cannot read", &f, e)
                    }
                })?;
                store.write_blob(&mut fh, expected).map_err(|e| match e {
                    ImageError::Corrupt { message, .. } => ImageError::Corrupt {
                        what: format!("{}", f.display()),
                        message,
                    },
                    other => other,
                })?
            }
            Source::Tar { small, blobs, .. } => {
                if let Some(b) = small.get(&p) {
                    let d = store.write_blob_bytes(b)?;
                    (d, b.len() as u64)
                } else {
                    blobs.get(&p).cloned().ok_or_else(missing)?
                }
            }
        };
        if let Some(exp) = expected {
            if *exp != d {
                return Err(ImageError::Corrupt {
                    what: format!("{what}: {p}"),
                    message: format!("content hashes to {d}, expected {exp}"),
                });
            }
        }
        Ok((d, n))
    }
}

/// What `load` and `import` report per image.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub id: Digest,
    pub manifest: Digest,
    pub names: Vec<Reference>,
}

impl Loaded {
    /// Docker's `Loaded image: NAME` / `Loaded image ID: sha256:…` lines.
    pub fn lines(&self) -> Vec<String> {
        if self.names.is_empty() {
            vec![format!("Loaded image ID: {}", self.id)]
        } else {
            self.names
                .iter()
                .map(|n| format!("Loaded image: {}", n.familiar()))
                .collect()
        }
    }
}

/// `rootbox load`: a docker-archive or OCI archive (tar, optionally gzip/zstd-compressed),
/// an OCI layout directory, or `-` for standard input.
pub fn load(store: &Store, input: &Path) -> Result<Vec<Loaded>> {
    let what = if input == Path::new("-") {
        "standard input".to_string()
    } else {
        input.display().to_string()
    };
    let _g = store.lock("store", false)?;
    let src = if input == Path::new("-") {
        let stdin = io::stdin();
        let mut lock = BufReader::with_capacity(1 << 20, stdin.lock());
        Source::read_tar(store, &mut lock, &what)?
    } else if input.is_dir() {
        Source::Dir(input.to_path_buf())
    } else {
        let f = File::open(input).map_err(|e| ImageError::io("cannot open", input, e))?;
        let mut r = BufReader::with_capacity(1 << 20, f);
        Source::read_tar(store, &mut r, &what)?
    };
    if src.exists("index.json") {
        load_oci(store, &src, &what)
    } else if src.exists("manifest.json") {
        load_docker(store, &src, &what)
    } else {
        Err(ImageError::format(
            &what,
            "neither a docker-archive (no manifest.json) nor an OCI image layout (no index.json)",
        ))
    }
}

fn parse_json<T: serde::de::DeserializeOwned>(b: &[u8], what: &str, name: &str) -> Result<T> {
    serde_json::from_slice(b).map_err(|e| ImageError::format(what, format!("invalid {name}: {e}")))
}

fn names_from_annotations(d: &Descriptor) -> Vec<Reference> {
    let ann = |k: &str| d.annotations.as_ref().and_then(|a| a.get(k)).cloned();
    let full = ann(ANNOTATION_CONTAINERD_NAME).or_else(|| ann(ANNOTATION_REF_NAME));
    full.and_then(|n| Reference::parse(&n).ok())
        .filter(|r| r.digest.is_none())
        .into_iter()
        .collect()
}

fn pick_platform<'a>(idx: &'a Index, what: &str) -> Result<&'a Descriptor> {
    let plat = |d: &Descriptor, key: &str| {
        d.platform
            .as_ref()
            .and_then(|p| p.get(key))
            .and_then(|v| v.as_str())
            .map(String::from)
    };
    let fits = |d: &&Descriptor| {
        plat(d, "os").as_deref().is_none_or(|o| o == "linux")
            && plat(d, "architecture")
                .as_deref()
                .is_none_or(|a| a == host_arch())
            && !d.media_type.contains("index")
            && !d.media_type.contains("list")
            && plat(d, "architecture").as_deref() != Some("unknown")
    };
    if let Some(d) = idx.manifests.iter().find(fits) {
        return Ok(d);
    }
    let have: Vec<String> = idx
        .manifests
        .iter()
        .map(|d| match (plat(d, "os"), plat(d, "architecture")) {
            (None, None) => d.media_type.clone(),
            (os, arch) => format!("{}/{}", os.unwrap_or_default(), arch.unwrap_or_default()),
        })
        .collect();
    Err(ImageError::format(
        what,
        format!(
            "no image for linux/{} in the index (it has {})",
            host_arch(),
            have.join(", ")
        ),
    ))
}

fn blob_path(d: &Digest) -> String {
    format!("blobs/sha256/{}", d.hex())
}

fn load_oci(store: &Store, src: &Source, what: &str) -> Result<Vec<Loaded>> {
    if let Some(b) = src.doc(store, "oci-layout")? {
        let v: serde_json::Value = parse_json(&b, what, "oci-layout")?;
        if v.get("imageLayoutVersion")
            .and_then(|x| x.as_str())
            .is_none()
        {
            return Err(ImageError::format(
                what,
                "oci-layout has no imageLayoutVersion",
            ));
        }
    }
    let ib = src
        .doc(store, "index.json")?
        .ok_or_else(|| ImageError::format(what, "no index.json"))?;
    let idx: Index = parse_json(&ib, what, "index.json")?;
    if idx.manifests.is_empty() {
        return Err(ImageError::format(what, "the OCI index lists no image"));
    }
    let mut out: Vec<Loaded> = Vec::new();
    for top in &idx.manifests {
        let names = names_from_annotations(top);
        let mut desc = top.clone();
        // Follow nested indexes to this platform's manifest.
        for _ in 0..4 {
            if desc.media_type == MEDIA_OCI_INDEX || desc.media_type == MEDIA_DOCKER_LIST {
                let (d, _) = src.blob(store, &blob_path(&desc.digest), Some(&desc.digest), what)?;
                let nested: Index = parse_json(&store.read_blob(&d)?, what, "nested index")?;
                desc = pick_platform(&nested, what)?.clone();
            } else {
                break;
            }
        }
        let loaded = import_manifest(store, src, &desc, what)?;
        store.add_image(&loaded.0, &names)?;
        match out.iter_mut().find(|l| l.manifest == loaded.0.digest) {
            Some(l) => l.names.extend(names),
            None => out.push(Loaded {
                id: loaded.1,
                manifest: loaded.0.digest.clone(),
                names,
            }),
        }
    }
    Ok(out)
}

/// A descriptor's size must be its blob's (as the OCI spec requires): a manifest that claims a
/// giant layer would otherwise mislead every size shown or checked later.
fn check_size(desc: &Descriptor, actual: u64, kind: &str, what: &str) -> Result<()> {
    if desc.size != actual {
        return Err(ImageError::Corrupt {
            what: format!("{what}: {kind} {}", desc.digest),
            message: format!(
                "the descriptor says its size is {} bytes, but the blob has {actual}",
                desc.size
            ),
        });
    }
    Ok(())
}

/// Copies a manifest and everything it references into the store. Returns the manifest's
/// descriptor (as it should appear in the store's index) and the image id.
fn import_manifest(
    store: &Store,
    src: &Source,
    desc: &Descriptor,
    what: &str,
) -> Result<(Descriptor, Digest)> {
    if desc.media_type != MEDIA_OCI_MANIFEST && desc.media_type != MEDIA_DOCKER_MANIFEST {
        return Err(ImageError::format(
            what,
            format!("unsupported manifest type {:?}", desc.media_type),
        ));
    }
    let (md, msize) = src.blob(store, &blob_path(&desc.digest), Some(&desc.digest), what)?;
    check_size(desc, msize, "manifest", what)?;
    let manifest: Manifest = parse_json(&store.read_blob(&md)?, what, "manifest")?;
    let (cd, csize) = src.blob(
        store,
        &blob_path(&manifest.config.digest),
        Some(&manifest.config.digest),
        what,
    )?;
    check_size(&manifest.config, csize, "config", what)?;
    let (config, _) = parse_config(&store.read_blob(&cd)?, &cd)?;
    if config.rootfs().diff_ids().len() != manifest.layers.len() {
        return Err(ImageError::format(
            what,
            format!(
                "manifest {} has {} layers but its config lists {} diff ids",
                md,
                manifest.layers.len(),
                config.rootfs().diff_ids().len()
            ),
        ));
    }
    for l in &manifest.layers {
        let (_, n) = src.blob(store, &blob_path(&l.digest), Some(&l.digest), what)?;
        check_size(l, n, "layer", what)?;
    }
    let mut d = Descriptor::new(&desc.media_type, md, msize);
    d.annotations = None;
    Ok((d, cd))
}

fn load_docker(store: &Store, src: &Source, what: &str) -> Result<Vec<Loaded>> {
    let mb = src
        .doc(store, "manifest.json")?
        .ok_or_else(|| ImageError::format(what, "no manifest.json"))?;
    let entries: Vec<DockerEntry> = parse_json(&mb, what, "manifest.json")?;
    if entries.is_empty() {
        return Err(ImageError::format(what, "manifest.json lists no image"));
    }
    let mut out = Vec::new();
    for e in &entries {
        let cfg_expected = Path::new(&e.config)
            .file_name()
            .and_then(|n| n.to_str())
            .map(|n| n.trim_end_matches(".json"))
            .and_then(|h| Digest::parse(&format!("sha256:{h}")).ok());
        let (cd, csize) = src.blob(store, &e.config, cfg_expected.as_ref(), what)?;
        let (config, _) = parse_config(&store.read_blob(&cd)?, &cd)?;
        let diff_ids = config.rootfs().diff_ids();
        if diff_ids.len() != e.layers.len() {
            return Err(ImageError::format(
                what,
                format!(
                    "image {} lists {} layers but its config has {} diff ids",
                    e.config,
                    e.layers.len(),
                    diff_ids.len()
                ),
            ));
        }
        let mut layers = Vec::new();
        for (path, diff) in e.layers.iter().zip(diff_ids) {
            let (ld, lsize) = src.blob(store, path, None, what)?;
            let comp = {
                let mut head = [0u8; 4];
                let n = store.open_blob(&ld)?.read(&mut head).unwrap_or(0);
                Compression::sniff(&head[..n])
            };
            if comp == Compression::None && ld.as_str() != diff {
                return Err(ImageError::Corrupt {
                    what: format!("{what}: layer {path}"),
                    message: format!("content hashes to {ld}, but the image config says {diff}"),
                });
            }
            layers.push(Descriptor::new(comp.layer_media_type(), ld, lsize));
        }
        let manifest = Manifest {
            schema_version: 2,
            media_type: Some(MEDIA_OCI_MANIFEST.into()),
            config: Descriptor::new(MEDIA_OCI_CONFIG, cd.clone(), csize),
            layers,
            annotations: None,
        };
        let mbytes =
            serde_json::to_vec(&manifest).map_err(|e| ImageError::format(what, e.to_string()))?;
        let md = store.write_blob_bytes(&mbytes)?;
        let mut names = Vec::new();
        for t in e.repo_tags.iter().flatten() {
            names.push(
                Reference::parse(t).map_err(|err| {
                    ImageError::format(what, format!("bad RepoTags entry: {err}"))
                })?,
            );
        }
        store.add_image(
            &Descriptor::new(MEDIA_OCI_MANIFEST, md.clone(), mbytes.len() as u64),
            &names,
        )?;
        out.push(Loaded {
            id: cd,
            manifest: md,
            names,
        });
    }
    Ok(out)
}

/// Options of `rootbox import`: the `--change` instructions and a commit message.
#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    pub changes: Vec<String>,
    pub message: Option<String>,
}

fn parse_words(s: &str) -> Vec<String> {
    let t = s.trim();
    if t.starts_with('[') {
        if let Ok(v) = serde_json::from_str::<Vec<String>>(t) {
            return v;
        }
    }
    vec!["/bin/sh".into(), "-c".into(), t.to_string()]
}

/// Adds `items` as keys (with `{}` values) of the set-like object `key` of a config's `config`
/// object (`ExposedPorts`, `Volumes`), making it an object first when it is missing or not one.
pub fn add_to_set(
    cfg: &mut serde_json::Map<String, serde_json::Value>,
    key: &str,
    items: impl IntoIterator<Item = String>,
) {
    use serde_json::{json, Value};
    let e = cfg.entry(key).or_insert_with(|| json!({}));
    if !e.is_object() {
        *e = json!({});
    }
    if let Value::Object(m) = e {
        for i in items {
            m.insert(i, json!({}));
        }
    }
}

/// Applies Dockerfile-like `--change` lines (CMD, ENTRYPOINT, ENV, WORKDIR, USER, EXPOSE,
/// LABEL, STOPSIGNAL, VOLUME) to a config's `config` object.
pub fn apply_changes(
    cfg: &mut serde_json::Map<String, serde_json::Value>,
    changes: &[String],
) -> Result<()> {
    use serde_json::{json, Value};
    for ch in changes {
        let (ins, rest) = ch
            .trim()
            .split_once(char::is_whitespace)
            .unwrap_or((ch.trim(), ""));
        let rest = rest.trim();
        let bad = |why: &str| ImageError::Config(format!("invalid --change {ch:?}: {why}"));
        match ins.to_ascii_uppercase().as_str() {
            "CMD" => {
                cfg.insert("Cmd".into(), json!(parse_words(rest)));
            }
            "ENTRYPOINT" => {
                cfg.insert("Entrypoint".into(), json!(parse_words(rest)));
            }
            "ENV" => {
                let (k, v) = rest
                    .split_once('=')
                    .or_else(|| rest.split_once(char::is_whitespace))
                    .ok_or_else(|| bad("expected ENV NAME=VALUE"))?;
                let env = cfg.entry("Env").or_insert_with(|| json!([]));
                if let Value::Array(a) = env {
                    a.retain(|e| e.as_str().and_then(|s| s.split('=').next()) != Some(k.trim()));
                    a.push(json!(format!("{}={}", k.trim(), v.trim())));
                }
            }
            "WORKDIR" => {
                if !rest.starts_with('/') {
                    return Err(bad("WORKDIR must be an absolute path"));
                }
                cfg.insert("WorkingDir".into(), json!(rest));
            }
            "USER" => {
                cfg.insert("User".into(), json!(rest));
            }
            "STOPSIGNAL" => {
                cfg.insert("StopSignal".into(), json!(rest));
            }
            "EXPOSE" => {
                let ports = rest.split_whitespace().map(|p| {
                    if p.contains('/') {
                        p.to_string()
                    } else {
                        format!("{p}/tcp")
                    }
                });
                add_to_set(cfg, "ExposedPorts", ports);
            }
            "VOLUME" => {
                let list: Vec<String> = if rest.starts_with('[') {
                    serde_json::from_str(rest).map_err(|_| bad("bad JSON list"))?
                } else {
                    rest.split_whitespace().map(String::from).collect()
                };
                add_to_set(cfg, "Volumes", list);
            }
            "LABEL" => {
                let (k, v) = rest
                    .split_once('=')
                    .ok_or_else(|| bad("expected LABEL KEY=VALUE"))?;
                let labels = cfg.entry("Labels").or_insert_with(|| json!({}));
                if let Value::Object(m) = labels {
                    m.insert(k.trim().into(), json!(v.trim().trim_matches('"')));
                }
            }
            other => return Err(bad(&format!("unsupported instruction {other}"))),
        }
    }
    Ok(())
}

/// `rootbox import`: a root filesystem tarball (plain or gzip/zstd-compressed; `-` for standard
/// input) becomes a one-layer image, named `reference` when given.
pub fn import(
    store: &Store,
    input: &Path,
    reference: Option<&str>,
    opts: &ImportOptions,
) -> Result<Loaded> {
    let names = match reference {
        Some(r) => {
            let r = Reference::parse(r)?;
            if r.digest.is_some() {
                return Err(ImageError::BadReference {
                    reference: r.to_string(),
                    reason: "an imported image cannot be named by digest".into(),
                });
            }
            vec![r]
        }
        None => Vec::new(),
    };
    let mut config_obj = serde_json::Map::new();
    apply_changes(&mut config_obj, &opts.changes)?;
    let what = if input == Path::new("-") {
        "standard input".to_string()
    } else {
        input.display().to_string()
    };
    let _g = store.lock("store", false)?;
    // Store the tarball as given (the layer blob), then read it back to check it is a tar and
    // compute its diff id.
    let (blob, size) = if input == Path::new("-") {
        let stdin = io::stdin();
        let mut l = stdin.lock();
        store.write_blob(&mut l, None)?
    } else {
        let mut f = File::open(input).map_err(|e| ImageError::io("cannot open", input, e))?;
        store.write_blob(&mut f, None)?
    };
    let mut raw = BufReader::with_capacity(1 << 20, store.open_blob(&blob)?);
    let comp = Compression::sniff(
        raw.fill_buf()
            .map_err(|e| ImageError::io("cannot read", store.blob_path(&blob), e))?,
    );
    let diff = {
        let dec = decompress(&mut raw).map_err(|e| ImageError::format(&what, e.to_string()))?;
        let mut buffered = BufReader::with_capacity(1 << 20, HashingReader::new(dec));
        check_tar(&mut buffered, &what)?;
        {
            let mut ar = tar::Archive::new(&mut buffered);
            let entries = ar
                .entries()
                .map_err(|e| ImageError::format(&what, format!("not a tar archive: {e}")))?;
            for e in entries {
                let mut e =
                    e.map_err(|e| ImageError::format(&what, format!("bad tar archive: {e}")))?;
                io::copy(&mut e, &mut io::sink())
                    .map_err(|e| ImageError::format(&what, format!("bad tar archive: {e}")))?;
            }
        }
        let h = buffered.into_inner();
        let (d, _) = h
            .finish()
            .map_err(|e| ImageError::format(&what, format!("cannot read: {e}")))?;
        d
    };
    let created = time::now();
    let config = serde_json::json!({
        "created": created,
        "architecture": host_arch(),
        "os": "linux",
        "config": config_obj,
        "rootfs": {"type": "layers", "diff_ids": [diff.as_str()]},
        "history": [{
            "created": created,
            "created_by": "rootbox import",
            "comment": opts.message.clone().unwrap_or_else(|| format!("imported from {what}")),
        }],
    });
    let cbytes =
        serde_json::to_vec(&config).map_err(|e| ImageError::format("config", e.to_string()))?;
    parse_config(&cbytes, &Digest::of(&cbytes))?;
    let cd = store.write_blob_bytes(&cbytes)?;
    let manifest = Manifest {
        schema_version: 2,
        media_type: Some(MEDIA_OCI_MANIFEST.into()),
        config: Descriptor::new(MEDIA_OCI_CONFIG, cd.clone(), cbytes.len() as u64),
        layers: vec![Descriptor::new(comp.layer_media_type(), blob, size)],
        annotations: None,
    };
    let mbytes =
        serde_json::to_vec(&manifest).map_err(|e| ImageError::format("manifest", e.to_string()))?;
    let md = store.write_blob_bytes(&mbytes)?;
    store.add_image(
        &Descriptor::new(MEDIA_OCI_MANIFEST, md.clone(), mbytes.len() as u64),
        &names,
    )?;
    Ok(Loaded {
        id: cd,
        manifest: md,
        names,
    })
}

// ---- save ----

/// Something that takes archive members: a tar stream or a directory.
trait Sink {
    fn file(&mut self, path: &str, size: u64, data: &mut dyn Read) -> Result<()>;
    fn dir(&mut self, path: &str) -> Result<()>;
}

struct TarSink<W: Write> {
    b: tar::Builder<W>,
    mtime: u64,
}

impl<W: Write> Sink for TarSink<W> {
    fn file(&mut self, path: &str, size: u64, data: &mut dyn Read) -> Result<()> {
        let mut h = tar::Header::new_ustar();
        h.set_size(size);
        h.set_mode(0o644);
        h.set_mtime(self.mtime);
        h.set_entry_type(tar::EntryType::Regular);
        let mut r = data.take(size);
        self.b.append_data(&mut h, path, &mut r).map_err(|e| {
            ImageError::format(
                "writing the archive",
                format!("{path}: {}", describe_io(&e)),
            )
        })?;
        if r.limit() != 0 {
            return Err(ImageError::format(
                "writing the archive",
                format!("{path}: shorter than expected"),
            ));
        }
        Ok(())
    }
    fn dir(&mut self, path: &str) -> Result<()> {
        let mut h = tar::Header::new_ustar();
        h.set_size(0);
        h.set_mode(0o755);
        h.set_mtime(self.mtime);
        h.set_entry_type(tar::EntryType::Directory);
        self.b
            .append_data(&mut h, path, io::empty())
            .map_err(|e| ImageError::format("writing the archive", format!("{path}: {e}")))
    }
}

fn describe_io(e: &io::Error) -> String {
    match e
        .get_ref()
        .and_then(|x| x.downcast_ref::<super::digest::CorruptBlob>())
    {
        Some(c) => c.to_string(),
        None => e.to_string(),
    }
}

struct DirSink(PathBuf);

impl Sink for DirSink {
    fn file(&mut self, path: &str, size: u64, data: &mut dyn Read) -> Result<()> {
        let p = self.0.join(path);
        if path.starts_with("blobs/") && p.exists() {
            return Ok(());
        }
        let tmp = self.0.join(format!(".tmp-{}", unique()));
        let mut f = File::create(&tmp).map_err(|e| ImageError::io("cannot write", &tmp, e))?;
        let n = io::copy(&mut data.take(size), &mut f).map_err(|e| {
            let _ = fs::remove_file(&tmp);
            ImageError::format("writing the layout", format!("{path}: {}", describe_io(&e)))
        })?;
        if n != size {
            let _ = fs::remove_file(&tmp);
            return Err(ImageError::format(
                "writing the layout",
                format!("{path}: shorter than expected"),
            ));
        }
        fs::rename(&tmp, &p).map_err(|e| ImageError::io("cannot write", &p, e))
    }
    fn dir(&mut self, path: &str) -> Result<()> {
        let p = self.0.join(path);
        fs::create_dir_all(&p).map_err(|e| ImageError::io("cannot create", &p, e))
    }
}

/// Copies a blob out of the store, verified (a corrupt blob fails the save).
fn put_blob(store: &Store, sink: &mut dyn Sink, path: &str, d: &Digest) -> Result<()> {
    let size = fs::metadata(store.blob_path(d))
        .map_err(|e| ImageError::io("cannot read blob", store.blob_path(d), e))?
        .len();
    let mut r = store.open_blob(d)?;
    sink.file(path, size, &mut r)?;
    // Reach the end so the digest is checked even when `size` bytes were all we read.
    let mut rest = [0u8; 1];
    r.read(&mut rest)
        .map_err(|e| ImageError::format("saving", describe_io(&e)))?;
    Ok(())
}

/// `rootbox save`: writes images to `out` (a file, `-` for standard output, or a directory for
/// `oci-dir`).
pub fn save(store: &Store, images: &[String], out: &Path, format: SaveFormat) -> Result<()> {
    if images.is_empty() {
        return Err(ImageError::Config("no image given to save".into()));
    }
    let mut list: Vec<(Image, Vec<Reference>)> = Vec::new();
    for s in images {
        let img = store.resolve(s)?;
        // A name given on the command line is what the archive carries; an id carries all.
        let names = match Reference::parse(s) {
            Ok(r)
                if img
                    .names
                    .iter()
                    .any(|n| n.name() == r.name() && n.tag == r.tag) =>
            {
                vec![r]
            }
            _ => img.names.clone(),
        };
        match list
            .iter_mut()
            .find(|(i, _)| i.manifest_digest == img.manifest_digest)
        {
            Some((_, n)) => n.extend(names),
            None => list.push((img, names)),
        }
    }
    let _g = store.lock("store", false)?;
    match format {
        SaveFormat::OciDir => {
            fs::create_dir_all(out).map_err(|e| ImageError::io("cannot create", out, e))?;
            let existing = out.join("index.json");
            let mut prior: Vec<Descriptor> = Vec::new();
            if existing.exists() {
                let b =
                    fs::read(&existing).map_err(|e| ImageError::io("cannot read", &existing, e))?;
                let idx: Index = parse_json(&b, &existing.display().to_string(), "index.json")?;
                prior = idx.manifests;
            } else if fs::read_dir(out)
                .map(|mut d| d.next().is_some())
                .unwrap_or(false)
            {
                return Err(ImageError::Config(format!(
                    "{} is neither empty nor an OCI layout",
                    out.display()
                )));
            }
            let mut sink = DirSink(out.to_path_buf());
            write_oci(store, &mut sink, &list, prior)
        }
        SaveFormat::OciArchive | SaveFormat::DockerArchive => {
            let w: Box<dyn Write> = if out == Path::new("-") {
                Box::new(io::BufWriter::with_capacity(1 << 20, io::stdout()))
            } else {
                let tmp = out.with_file_name(format!(
                    ".{}.tmp-{}",
                    out.file_name()
                        .map_or("out".into(), |n| n.to_string_lossy()),
                    unique()
                ));
                let f = File::create(&tmp).map_err(|e| ImageError::io("cannot create", &tmp, e))?;
                let res = write_archive(
                    store,
                    Box::new(io::BufWriter::with_capacity(1 << 20, f)),
                    &list,
                    format,
                );
                return match res.and_then(|()| {
                    fs::rename(&tmp, out).map_err(|e| ImageError::io("cannot write", out, e))
                }) {
                    Ok(()) => Ok(()),
                    Err(e) => {
                        let _ = fs::remove_file(&tmp);
                        Err(e)
                    }
                };
            };
            write_archive(store, w, &list, format)
        }
    }
}

fn write_archive(
    store: &Store,
    w: Box<dyn Write>,
    list: &[(Image, Vec<Reference>)],
    format: SaveFormat,
) -> Result<()> {
    let mut sink = TarSink {
        b: tar::Builder::new(w),
        mtime: 0,
    };
    match format {
        SaveFormat::DockerArchive => write_docker(store, &mut sink, list)?,
        _ => write_oci(store, &mut sink, list, Vec::new())?,
    }
    let mut w = sink
        .b
        .into_inner()
        .map_err(|e| ImageError::format("writing the archive", e.to_string()))?;
    w.flush()
        .map_err(|e| ImageError::format("writing the archive", e.to_string()))
}

fn write_oci(
    store: &Store,
    sink: &mut dyn Sink,
    list: &[(Image, Vec<Reference>)],
    prior: Vec<Descriptor>,
) -> Result<()> {
    let layout = br#"{"imageLayoutVersion":"1.0.0"}"#;
    sink.file("oci-layout", layout.len() as u64, &mut &layout[..])?;
    sink.dir("blobs")?;
    sink.dir("blobs/sha256")?;
    let mut descs = prior;
    let mut written: std::collections::BTreeSet<Digest> = Default::default();
    for (img, names) in list {
        for d in std::iter::once(&img.manifest_digest)
            .chain(std::iter::once(&img.config_digest))
            .chain(img.manifest.layers.iter().map(|l| &l.digest))
        {
            if written.insert(d.clone()) {
                put_blob(store, sink, &blob_path(d), d)?;
            }
        }
        let base = Descriptor::new(
            &img.manifest_media_type,
            img.manifest_digest.clone(),
            img.manifest_size,
        );
        if names.is_empty() {
            descs.push(base.clone());
        }
        for n in names {
            let name = n.to_string();
            descs.retain(|d| {
                d.annotations
                    .as_ref()
                    .and_then(|a| a.get(ANNOTATION_REF_NAME))
                    .is_none_or(|x| *x != name)
            });
            let mut d = base.clone();
            d.annotations = Some(BTreeMap::from([
                (ANNOTATION_REF_NAME.to_string(), name.clone()),
                (ANNOTATION_CONTAINERD_NAME.to_string(), name),
            ]));
            descs.push(d);
        }
    }
    let idx = serde_json::to_vec(&Index::new(descs))
        .map_err(|e| ImageError::format("index", e.to_string()))?;
    sink.file("index.json", idx.len() as u64, &mut &idx[..])
}

fn write_docker(
    store: &Store,
    sink: &mut dyn Sink,
    list: &[(Image, Vec<Reference>)],
) -> Result<()> {
    let mut entries = Vec::new();
    let mut repos: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    let mut written: std::collections::BTreeSet<String> = Default::default();
    for (img, names) in list {
        let cfg_name = format!("{}.json", img.config_digest.hex());
        if written.insert(cfg_name.clone()) {
            put_blob(store, sink, &cfg_name, &img.config_digest)?;
        }
        let diff_ids = img.diff_ids()?;
        let mut layers = Vec::new();
        for (l, diff) in img.manifest.layers.iter().zip(diff_ids.iter()) {
            let dir = diff.hex().to_string();
            let path = format!("{dir}/layer.tar");
            if written.insert(path.clone()) {
                sink.dir(&dir)?;
                if l.digest == *diff {
                    put_blob(store, sink, &path, &l.digest)?;
                } else {
                    // docker-archive layers are plain tars: decompress to a temporary file (a
                    // tar header needs the size first), checking the diff id on the way.
                    let tmp = store.root().join("tmp").join(format!("save-{}", unique()));
                    let res = (|| -> Result<()> {
                        let mut raw =
                            BufReader::with_capacity(1 << 20, store.open_blob(&l.digest)?);
                        let (got, n) = {
                            let dec = decompress(&mut raw)
                                .map_err(|e| ImageError::format("saving", e.to_string()))?;
                            let mut h = HashingReader::new(dec);
                            let mut f = File::create(&tmp)
                                .map_err(|e| ImageError::io("cannot write", &tmp, e))?;
                            io::copy(&mut h, &mut f)
                                .map_err(|e| ImageError::format("saving", describe_io(&e)))?;
                            h.finish()
                                .map_err(|e| ImageError::format("saving", describe_io(&e)))?
                        };
                        io::copy(&mut raw, &mut io::sink())
                            .map_err(|e| ImageError::format("saving", describe_io(&e)))?;
                        if got != *diff {
                            return Err(ImageError::Corrupt {
                                what: format!("layer {}", l.digest),
                                message: format!(
                                    "uncompressed content hashes to {got}, the config says {diff}"
                                ),
                            });
                        }
                        let mut f =
                            File::open(&tmp).map_err(|e| ImageError::io("cannot read", &tmp, e))?;
                        sink.file(&path, n, &mut f)
                    })();
                    let _ = fs::remove_file(&tmp);
                    res?;
                }
            }
            layers.push(path);
        }
        let top = diff_ids
            .last()
            .map(|d| d.hex().to_string())
            .unwrap_or_default();
        let tags: Vec<String> = names
            .iter()
            .filter(|n| n.tag.is_some())
            .map(Reference::familiar)
            .collect();
        for n in names.iter().filter(|n| n.tag.is_some()) {
            repos
                .entry(n.familiar_name())
                .or_default()
                .insert(n.tag.clone().unwrap_or_default(), top.clone());
        }
        entries.push(DockerEntry {
            config: cfg_name,
            repo_tags: if tags.is_empty() { None } else { Some(tags) },
            layers,
        });
    }
    let m = serde_json::to_vec(&entries)
        .map_err(|e| ImageError::format("manifest.json", e.to_string()))?;
    sink.file("manifest.json", m.len() as u64, &mut &m[..])?;
    if !repos.is_empty() {
        let r = serde_json::to_vec(&repos)
            .map_err(|e| ImageError::format("repositories", e.to_string()))?;
        sink.file("repositories", r.len() as u64, &mut &r[..])?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_apply() {
        let mut m = serde_json::Map::new();
        apply_changes(
            &mut m,
            &[
                r#"CMD ["/bin/sh", "-c", "echo hi"]"#.into(),
                "ENTRYPOINT /init".into(),
                "ENV A=1".into(),
                "ENV A=2".into(),
                "WORKDIR /srv".into(),
                "EXPOSE 80 53/udp".into(),
                "LABEL k=v".into(),
            ],
        )
        .unwrap();
        let v = serde_json::Value::Object(m);
        assert_eq!(v["Cmd"], serde_json::json!(["/bin/sh", "-c", "echo hi"]));
        assert_eq!(
            v["Entrypoint"],
            serde_json::json!(["/bin/sh", "-c", "/init"])
        );
        assert_eq!(v["Env"], serde_json::json!(["A=2"]));
        assert_eq!(v["ExposedPorts"]["53/udp"], serde_json::json!({}));
        let mut m = serde_json::Map::new();
        assert!(apply_changes(&mut m, &["FROM x".into()]).is_err());
        assert!(apply_changes(&mut m, &["WORKDIR rel".into()]).is_err());
    }

    #[test]
    fn archive_paths_clean() {
        assert_eq!(clean_path("./a/../b").as_deref(), Some("b"));
        assert_eq!(clean_path("../x"), None);
    }
}

//! `rootbox build`: an image from a Dockerfile, one step per instruction, with a cache.
//!
//! * [`parse`]: the Dockerfile syntax (directives, continuations, flags, word rules).
//! * [`context`]: the build context, `.dockerignore`, COPY/ADD sources and their hash.
//! * [`layer`]: COPY/ADD layers written straight as tar.
//! * [`run`]: RUN steps: a real rootbox container of the previous step's image, whose
//!   writable layer is committed (by [`crate::container::commit`]) as the step's layer.
//!
//! Every step leaves an image in the store (blobs only; the final one is named by `-t`, or
//! dangling). Each filesystem-changing instruction (RUN, COPY, ADD) adds one layer; the others
//! add a history entry marked `empty_layer`, as Docker does.
//!
//! # The cache
//! `<store>/build-cache/<key>` holds the manifest descriptor of the image a step made, keyed
//! by sha256 of: the parent image id, the instruction after variable expansion, the build
//! args in scope (RUN) and the content hash of the copied files (COPY/ADD). A hit reuses the
//! image (so a rebuild of unchanged inputs gives the same image id); images named there are
//! kept by garbage collection until `rootbox builder prune`.

pub mod context;
pub mod layer;
pub mod parse;
pub mod run;

use std::collections::{BTreeMap, HashMap};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use serde_json::{json, Map, Value};
use sha2::{Digest as _, Sha256};

use crate::container::request::Dirs;
use crate::image::config::LayerFiles;
use crate::image::store::{
    parse_config, Descriptor, Manifest, MEDIA_OCI_CONFIG, MEDIA_OCI_LAYER_GZIP, MEDIA_OCI_MANIFEST,
};
use crate::image::{archive, time, Digest, ImageError, Reference, Store};
use crate::Error;

use context::{Context, EntryKind};
use layer::{LayerWriter, Owner};
use parse::{Command, Dockerfile, Instruction, Kind};

/// Errors of `build`, each naming the Dockerfile line or the file at fault.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("Dockerfile line {line}: {message}")]
    Parse { line: usize, message: String },
    #[error("Dockerfile line {line}: {instruction}: {message}")]
    Step {
        line: usize,
        instruction: String,
        message: String,
    },
    #[error("Dockerfile line {line}: {instruction}: the command returned a non-zero code: {code}")]
    RunFailed {
        line: usize,
        instruction: String,
        code: i32,
    },
    #[error("{what} {path}: {source}")]
    Io {
        what: String,
        path: PathBuf,
        source: io::Error,
    },
    #[error("{0}")]
    Invalid(String),
    #[error("the build was cancelled")]
    Cancelled,
}

impl BuildError {
    pub(crate) fn io(what: impl Into<String>, path: impl Into<PathBuf>, source: io::Error) -> Self {
        BuildError::Io {
            what: what.into(),
            path: path.into(),
            source,
        }
    }

    pub fn errno(&self) -> Option<i32> {
        match self {
            BuildError::Io { source, .. } => source.raw_os_error(),
            BuildError::Cancelled => Some(libc::ECANCELED),
            _ => None,
        }
    }

    pub fn path(&self) -> Option<&Path> {
        match self {
            BuildError::Io { path, .. } => Some(path),
            _ => None,
        }
    }
}

impl From<ImageError> for BuildError {
    fn from(e: ImageError) -> Self {
        BuildError::Invalid(e.to_string())
    }
}

/// What `rootbox build` was asked.
#[derive(Debug, Clone, Default)]
pub struct BuildOptions {
    /// The context directory.
    pub context: PathBuf,
    /// `-f` (default: `<context>/Dockerfile`).
    pub dockerfile: Option<PathBuf>,
    /// `-t` names.
    pub tags: Vec<String>,
    /// `--build-arg K=V` (or `K`, taking the caller's environment value).
    pub build_args: Vec<String>,
    /// `--target STAGE`.
    pub target: Option<String>,
    pub no_cache: bool,
    /// `--label K=V` for the final image.
    pub labels: Vec<String>,
    /// `--network` for RUN steps (default `host`).
    pub network: Option<String>,
    /// `--idmap` for RUN steps.
    pub idmap: Option<String>,
    /// Set from another thread to stop the build: checked before each instruction, and a RUN
    /// step's container is killed (the build then fails with [`BuildError::Cancelled`] and
    /// leaves no container behind).
    pub cancel: Option<Arc<AtomicBool>>,
}

impl BuildOptions {
    fn cancelled(&self) -> bool {
        self.cancel
            .as_ref()
            .is_some_and(|c| c.load(Ordering::SeqCst))
    }
}

/// What `build` made.
#[derive(Debug, Clone)]
pub struct Built {
    /// The image id (config digest).
    pub id: Digest,
    pub manifest: Digest,
    pub names: Vec<Reference>,
}

/// An image being built: its full config and layers, and where it is stored.
#[derive(Debug, Clone)]
pub(crate) struct Img {
    pub config: Value,
    pub layers: Vec<Descriptor>,
    /// The stored manifest (None: `scratch` before any step).
    pub manifest: Option<Descriptor>,
    /// The config digest (the image id), when stored.
    pub id: Option<Digest>,
}

impl Img {
    fn scratch() -> Img {
        Img {
            config: json!({
                "architecture": archive::host_arch(),
                "os": "linux",
                "config": {},
                "rootfs": {"type": "layers", "diff_ids": []},
                "history": [],
            }),
            layers: Vec::new(),
            manifest: None,
            id: None,
        }
    }

    fn cfg(&mut self) -> &mut Map<String, Value> {
        if !self.config["config"].is_object() {
            self.config["config"] = json!({});
        }
        match self.config.get_mut("config").and_then(Value::as_object_mut) {
            Some(m) => m,
            None => unreachable!("config.config was just made an object"),
        }
    }

    fn env(&self) -> Vec<String> {
        self.config["config"]["Env"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    }

    fn shell(&self) -> Vec<String> {
        match self.config["config"]["Shell"].as_array() {
            Some(a) if !a.is_empty() => a
                .iter()
                .filter_map(|v| v.as_str().map(String::from))
                .collect(),
            _ => vec!["/bin/sh".into(), "-c".into()],
        }
    }

    fn history(&mut self, created_by: &str, empty: bool) {
        let created = time::now();
        self.config["created"] = json!(created);
        let mut h =
            json!({"created": created, "created_by": created_by, "comment": "rootbox build"});
        if empty {
            h["empty_layer"] = json!(true);
        }
        match self.config.get_mut("history").and_then(Value::as_array_mut) {
            Some(a) => a.push(h),
            None => self.config["history"] = json!([h]),
        }
    }

    fn add_layer(&mut self, desc: Descriptor, diff_id: &Digest) -> Result<(), BuildError> {
        match self.config["rootfs"]["diff_ids"].as_array_mut() {
            Some(a) => a.push(json!(diff_id.as_str())),
            None => {
                self.config["rootfs"] = json!({"type": "layers", "diff_ids": [diff_id.as_str()]})
            }
        }
        self.layers.push(desc);
        Ok(())
    }

    /// Writes the config and manifest blobs (not the index).
    fn store(&mut self, store: &Store) -> Result<(), BuildError> {
        let cbytes = serde_json::to_vec(&self.config)
            .map_err(|e| BuildError::Invalid(format!("image config: {e}")))?;
        parse_config(&cbytes, &Digest::of(&cbytes))?;
        let cd = store.write_blob_bytes(&cbytes)?;
        let m = Manifest {
            schema_version: 2,
            media_type: Some(MEDIA_OCI_MANIFEST.into()),
            config: Descriptor::new(MEDIA_OCI_CONFIG, cd.clone(), cbytes.len() as u64),
            layers: self.layers.clone(),
            annotations: None,
        };
        let mbytes =
            serde_json::to_vec(&m).map_err(|e| BuildError::Invalid(format!("manifest: {e}")))?;
        let md = store.write_blob_bytes(&mbytes)?;
        self.manifest = Some(Descriptor::new(MEDIA_OCI_MANIFEST, md, mbytes.len() as u64));
        self.id = Some(cd);
        Ok(())
    }

    fn load(store: &Store, desc: &Descriptor) -> Result<Img, BuildError> {
        let img = store.load_image(desc, Vec::new())?;
        for l in &img.manifest.layers {
            if !store.has_blob(&l.digest) {
                return Err(BuildError::Invalid(format!(
                    "layer {} is missing",
                    l.digest
                )));
            }
        }
        Ok(Img {
            config: img.config_json.clone(),
            layers: img.manifest.layers.clone(),
            manifest: Some(Descriptor::new(
                MEDIA_OCI_MANIFEST,
                desc.digest.clone(),
                desc.size,
            )),
            id: Some(img.config_digest.clone()),
        })
    }

    fn short(&self) -> String {
        self.id
            .as_ref()
            .map_or_else(|| "scratch".to_string(), |d| d.short().to_string())
    }
}

/// The cache of step results.
struct Cache {
    dir: PathBuf,
    enabled: bool,
}

impl Cache {
    fn key(parent: &Img, parts: &[&str]) -> String {
        let mut h = Sha256::new();
        h.update(b"rootbox-build-v1\n");
        h.update(parent.id.as_ref().map_or("scratch", |d| d.as_str()));
        for p in parts {
            h.update(b"\n");
            h.update(p.len().to_string());
            h.update(b":");
            h.update(p);
        }
        hex::encode(h.finalize())
    }

    fn get(&self, store: &Store, key: &str) -> Option<Img> {
        if !self.enabled {
            return None;
        }
        let b = std::fs::read(self.dir.join(key)).ok()?;
        let desc: Descriptor = serde_json::from_slice(&b).ok()?;
        Img::load(store, &desc).ok()
    }

    fn put(&self, key: &str, img: &Img) -> Result<(), BuildError> {
        let Some(desc) = &img.manifest else {
            return Ok(());
        };
        std::fs::create_dir_all(&self.dir)
            .map_err(|e| BuildError::io("cannot create", &self.dir, e))?;
        let data = serde_json::to_vec(desc).map_err(|e| BuildError::Invalid(e.to_string()))?;
        let tmp = self.dir.join(format!(".{key}.{}", std::process::id()));
        std::fs::write(&tmp, data).map_err(|e| BuildError::io("cannot write", &tmp, e))?;
        let dst = self.dir.join(key);
        std::fs::rename(&tmp, &dst).map_err(|e| BuildError::io("cannot write", &dst, e))
    }
}

/// The manifests the build cache refers to (kept by garbage collection).
pub fn cached_manifests(store_root: &Path) -> Vec<Digest> {
    let Ok(rd) = std::fs::read_dir(store_root.join("build-cache")) else {
        return Vec::new();
    };
    rd.flatten()
        .filter_map(|e| std::fs::read(e.path()).ok())
        .filter_map(|b| serde_json::from_slice::<Descriptor>(&b).ok())
        .map(|d| d.digest)
        .collect()
}

/// `rootbox builder prune`: forgets the build cache and removes what only it kept. Returns
/// the number of entries and the bytes freed.
pub fn prune_cache(store: &Store) -> Result<(usize, u64), Error> {
    let dir = store.root().join("build-cache");
    let n = std::fs::read_dir(&dir).map(|rd| rd.count()).unwrap_or(0);
    match std::fs::remove_dir_all(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::Build(BuildError::io("cannot remove", &dir, e))),
    }
    let freed = store.gc()?;
    Ok((n, freed))
}

/// A stage's variables: its ARGs (with values) and the image's ENV (which wins).
struct Vars {
    args: BTreeMap<String, String>,
    /// The order ARGs were declared (for RUN's `|N K=V` prefix).
    order: Vec<String>,
}

fn lookup_env(img: &Img, vars: &Vars) -> HashMap<String, String> {
    let mut m: HashMap<String, String> = vars.args.clone().into_iter().collect();
    for e in img.env() {
        if let Some((k, v)) = e.split_once('=') {
            m.insert(k.to_string(), v.to_string());
        }
    }
    m
}

/// The history's `created_by` of an ENV or LABEL step: `KW k=v k2=v2`.
fn pairs_created_by(keyword: &str, pairs: &[(String, Option<String>)]) -> String {
    let text: Vec<String> = pairs
        .iter()
        .map(|(k, v)| format!("{k}={}", v.as_deref().unwrap_or_default()))
        .collect();
    format!("{keyword} {}", text.join(" "))
}

fn step_err(ins: &Instruction, message: impl Into<String>) -> BuildError {
    BuildError::Step {
        line: ins.line,
        instruction: ins.text.split_whitespace().next().unwrap_or("").to_string(),
        message: message.into(),
    }
}

/// A metadata instruction's change to the image config.
type ConfigChange = Box<dyn FnOnce(&mut Img) -> Result<(), BuildError>>;

/// The builder of one `build` call.
struct Builder<'a> {
    store: Store,
    dirs: &'a Dirs,
    opts: &'a BuildOptions,
    ctx: Context,
    cache: Cache,
    escape: char,
    build_args: HashMap<String, String>,
    out: &'a mut dyn Write,
    step: usize,
    total: usize,
}

macro_rules! say {
    ($b:expr, $($t:tt)*) => {{
        let _ = writeln!($b.out, $($t)*);
        let _ = $b.out.flush();
    }};
}

/// Builds the image `opts` describe, writing progress (steps, CACHED hits, RUN output, the
/// final id) to `out`.
pub fn build(dirs: &Dirs, opts: &BuildOptions, out: &mut dyn Write) -> Result<Built, Error> {
    let dockerfile = opts
        .dockerfile
        .clone()
        .unwrap_or_else(|| opts.context.join("Dockerfile"));
    let text = std::fs::read_to_string(&dockerfile)
        .map_err(|e| BuildError::io("cannot read the Dockerfile", &dockerfile, e))?;
    let df = parse::parse(&text)?;
    let names = opts
        .tags
        .iter()
        .map(|t| {
            let r = Reference::parse(t)?;
            if r.digest.is_some() {
                return Err(ImageError::BadReference {
                    reference: t.clone(),
                    reason: "a build tag cannot contain a digest".into(),
                });
            }
            Ok(r)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut build_args = HashMap::new();
    for a in &opts.build_args {
        match a.split_once('=') {
            Some((k, v)) => build_args.insert(k.to_string(), v.to_string()),
            None => match std::env::var(a) {
                Ok(v) => build_args.insert(a.clone(), v),
                Err(_) => None,
            },
        };
    }
    for l in &opts.labels {
        if !l.contains('=') {
            return Err(
                BuildError::Invalid(format!("invalid --label {l:?}: expected KEY=VALUE")).into(),
            );
        }
    }
    let store = Store::open(Some(dirs.store.clone()))?;
    let ctx = Context::open(&opts.context, &dockerfile)?;
    let cache = Cache {
        dir: store.root().join("build-cache"),
        enabled: !opts.no_cache,
    };
    let last = match &opts.target {
        Some(t) => df
            .stages
            .iter()
            .position(|s| matches!(&s.from.kind, Kind::From { name: Some(n), .. } if n.eq_ignore_ascii_case(t)))
            .ok_or_else(|| BuildError::Invalid(format!("target stage {t:?} could not be found in the Dockerfile")))?,
        None => df.stages.len() - 1,
    };
    let total = df.stages[..=last]
        .iter()
        .map(|s| 1 + s.instructions.len())
        .sum();
    let mut b = Builder {
        store,
        dirs,
        opts,
        ctx,
        cache,
        escape: df.escape,
        build_args,
        out,
        step: 0,
        total,
    };
    let img = b.run(&df, last)?;
    let desc = img
        .manifest
        .clone()
        .ok_or_else(|| BuildError::Invalid("the build made no image".into()))?;
    b.store.add_image(&desc, &names)?;
    let id = img
        .id
        .clone()
        .ok_or_else(|| BuildError::Invalid("the build made no image".into()))?;
    say!(b, "Successfully built {}", id.short());
    for n in &names {
        say!(b, "Successfully tagged {}", n.familiar());
    }
    say!(b, "{id}");
    Ok(Built {
        id,
        manifest: desc.digest,
        names,
    })
}

impl Builder<'_> {
    fn run(&mut self, df: &Dockerfile, last: usize) -> Result<Img, Error> {
        // Global ARGs: their defaults, overridden by --build-arg; used in FROM lines.
        let mut global = Vars {
            args: BTreeMap::new(),
            order: Vec::new(),
        };
        for ins in &df.global_args {
            self.arg(ins, &mut global, &Img::scratch(), None)?;
        }
        let mut stages: Vec<(Option<String>, Img)> = Vec::new();
        for (i, stage) in df.stages[..=last].iter().enumerate() {
            let img = self.stage(stage, &stages, &global, i == last)?;
            let name = match &stage.from.kind {
                Kind::From { name, .. } => name.clone(),
                _ => None,
            };
            stages.push((name, img));
        }
        match stages.pop() {
            Some((_, img)) => Ok(img),
            None => Err(BuildError::Invalid("no build stage".into()).into()),
        }
    }

    fn header(&mut self, ins: &Instruction) {
        self.step += 1;
        let (s, t) = (self.step, self.total);
        say!(self, "STEP {s}/{t}: {}", ins.text);
    }

    fn stage(
        &mut self,
        stage: &parse::Stage,
        done: &[(Option<String>, Img)],
        global: &Vars,
        is_last: bool,
    ) -> Result<Img, Error> {
        let from = &stage.from;
        self.header(from);
        let Kind::From {
            image, platform, ..
        } = &from.kind
        else {
            return Err(step_err(from, "not a FROM").into());
        };
        if let Some(p) = platform {
            let host = format!("linux/{}", archive::host_arch());
            if p != &host && !p.starts_with("$") {
                return Err(step_err(
                    from,
                    format!("--platform={p}: only the host platform {host} can be built here"),
                )
                .into());
            }
        }
        let env = global.args.clone();
        let lookup = |k: &str| env.get(k).cloned();
        let image = parse::word(image, &lookup, self.escape).map_err(|e| step_err(from, e))?;
        let mut img = if image.eq_ignore_ascii_case("scratch") {
            Img::scratch()
        } else if let Some((_, s)) = done
            .iter()
            .find(|(n, _)| n.as_deref() == Some(image.to_ascii_lowercase().as_str()))
        {
            s.clone()
        } else {
            let found = self.store.resolve(&image).map_err(|e| match e {
                ImageError::NotFound(_) => step_err(
                    from,
                    format!("no such image {image:?} in the store (pull or load it first: rootbox pull {image})"),
                ),
                e => step_err(from, e.to_string()),
            })?;
            Img {
                config: found.config_json.clone(),
                layers: found.manifest.layers.clone(),
                manifest: Some(Descriptor::new(
                    MEDIA_OCI_MANIFEST,
                    found.manifest_digest.clone(),
                    found.manifest_size,
                )),
                id: Some(found.config_digest.clone()),
            }
        };
        say!(self, "--> {}", img.short());
        let mut vars = Vars {
            args: BTreeMap::new(),
            order: Vec::new(),
        };
        let mut cmd_set = false;
        for ins in &stage.instructions {
            if self.opts.cancelled() {
                return Err(BuildError::Cancelled.into());
            }
            self.header(ins);
            img = self.instruction(ins, img, &mut vars, global, done, &mut cmd_set)?;
        }
        if is_last && !self.opts.labels.is_empty() {
            let labels = self.opts.labels.join("\n");
            let key = Cache::key(&img, &["--label", &labels]);
            img = self.cached(&key, img, |b, mut img| {
                let cfg = img.cfg();
                let l = cfg.entry("Labels").or_insert_with(|| json!({}));
                for kv in &b.opts.labels {
                    if let (Some((k, v)), Some(m)) = (kv.split_once('='), l.as_object_mut()) {
                        m.insert(k.to_string(), json!(v));
                    }
                }
                img.store(&b.store)?;
                Ok(img)
            })?;
        }
        if img.manifest.is_none() {
            // `FROM scratch` and nothing else: an empty image.
            img.store(&self.store)?;
        }
        Ok(img)
    }

    /// Reuses the cached result of `key`, else makes it with `f` and records it.
    fn cached(
        &mut self,
        key: &str,
        parent: Img,
        f: impl FnOnce(&mut Self, Img) -> Result<Img, Error>,
    ) -> Result<Img, Error> {
        if let Some(hit) = self.cache.get(&self.store, key) {
            say!(self, "--> CACHED {}", hit.short());
            return Ok(hit);
        }
        let img = f(self, parent)?;
        self.cache.put(key, &img)?;
        say!(self, "--> {}", img.short());
        Ok(img)
    }

    fn arg(
        &mut self,
        ins: &Instruction,
        vars: &mut Vars,
        img: &Img,
        global: Option<&Vars>,
    ) -> Result<(), Error> {
        let Kind::Arg(text) = &ins.kind else {
            return Ok(());
        };
        let env = lookup_env(img, vars);
        let lookup = |k: &str| env.get(k).cloned();
        let kvs =
            parse::key_values("ARG", text, &lookup, self.escape).map_err(|e| step_err(ins, e))?;
        for (k, v) in kvs {
            let val = self
                .build_args
                .get(&k)
                .cloned()
                .or(v)
                .or_else(|| global.and_then(|g| g.args.get(&k).cloned()));
            if let Some(val) = val {
                vars.args.insert(k.clone(), val);
            } else {
                vars.args.remove(&k);
            }
            vars.order.retain(|o| o != &k);
            vars.order.push(k);
        }
        Ok(())
    }

    fn instruction(
        &mut self,
        ins: &Instruction,
        img: Img,
        vars: &mut Vars,
        global: &Vars,
        done: &[(Option<String>, Img)],
        cmd_set: &mut bool,
    ) -> Result<Img, Error> {
        let esc = self.escape;
        let env = lookup_env(&img, vars);
        let lookup = |k: &str| env.get(k).cloned();
        let w = |s: &str| parse::word(s, &lookup, esc).map_err(|e| step_err(ins, e));
        let ws = |s: &str| parse::words(s, &lookup, esc).map_err(|e| step_err(ins, e));
        let kv =
            |i: &str, s: &str| parse::key_values(i, s, &lookup, esc).map_err(|e| step_err(ins, e));
        // Metadata instructions: (created_by, change to the config).
        let meta: Option<(String, ConfigChange)>;
        match &ins.kind {
            Kind::Arg(_) => {
                self.arg(ins, vars, &img, Some(global))?;
                say!(self, "--> {}", img.short());
                return Ok(img);
            }
            Kind::From { .. } => return Err(step_err(ins, "FROM inside a stage").into()),
            Kind::Env(t) => {
                let pairs = kv("ENV", t)?;
                let by = pairs_created_by("ENV", &pairs);
                meta = Some((
                    by,
                    Box::new(move |img: &mut Img| {
                        let cfg = img.cfg();
                        let e = cfg.entry("Env").or_insert_with(|| json!([]));
                        if let Value::Array(a) = e {
                            for (k, v) in pairs {
                                let pre = format!("{k}=");
                                a.retain(|x| !x.as_str().is_some_and(|s| s.starts_with(&pre)));
                                a.push(json!(format!("{k}={}", v.unwrap_or_default())));
                            }
                        }
                        Ok(())
                    }),
                ));
            }
            Kind::Label(t) => {
                let pairs = kv("LABEL", t)?;
                let by = pairs_created_by("LABEL", &pairs);
                meta = Some((
                    by,
                    Box::new(move |img: &mut Img| {
                        let l = img.cfg().entry("Labels").or_insert_with(|| json!({}));
                        if !l.is_object() {
                            *l = json!({});
                        }
                        if let Value::Object(m) = l {
                            for (k, v) in pairs {
                                m.insert(k, json!(v.unwrap_or_default()));
                            }
                        }
                        Ok(())
                    }),
                ));
            }
            Kind::Workdir(t) => {
                let d = w(t)?;
                let cur = img.config["config"]["WorkingDir"]
                    .as_str()
                    .unwrap_or("/")
                    .to_string();
                let d = if d.starts_with('/') {
                    d
                } else {
                    format!("{}/{d}", cur.trim_end_matches('/'))
                };
                let d = format!("/{}", context::clean(&d).unwrap_or_default());
                meta = Some((
                    format!("WORKDIR {d}"),
                    Box::new(move |img: &mut Img| {
                        img.cfg().insert("WorkingDir".into(), json!(d));
                        Ok(())
                    }),
                ));
            }
            Kind::User(t) => {
                let u = w(t)?;
                if u.is_empty() {
                    return Err(step_err(ins, "USER needs a user name or id").into());
                }
                meta = Some((
                    format!("USER {u}"),
                    Box::new(move |img: &mut Img| {
                        img.cfg().insert("User".into(), json!(u));
                        Ok(())
                    }),
                ));
            }
            Kind::Expose(t) => {
                let mut ports = Vec::new();
                for p in ws(t)? {
                    let (num, proto) = p.split_once('/').unwrap_or((p.as_str(), "tcp"));
                    let proto = proto.to_ascii_lowercase();
                    let ok_num = |s: &str| s.parse::<u16>().is_ok_and(|n| n > 0);
                    let ok = match num.split_once('-') {
                        Some((a, b)) => ok_num(a) && ok_num(b),
                        None => ok_num(num),
                    };
                    if !ok || !matches!(proto.as_str(), "tcp" | "udp" | "sctp") {
                        return Err(step_err(
                            ins,
                            format!("invalid port {p:?}: expected PORT[/tcp|udp|sctp]"),
                        )
                        .into());
                    }
                    ports.push(format!("{num}/{proto}"));
                }
                meta = Some((
                    format!("EXPOSE {}", ports.join(" ")),
                    Box::new(move |img: &mut Img| {
                        archive::add_to_set(img.cfg(), "ExposedPorts", ports);
                        Ok(())
                    }),
                ));
            }
            Kind::Volume(t) => {
                let list = match serde_json::from_str::<Vec<String>>(t.trim()) {
                    Ok(v) if t.trim().starts_with('[') => {
                        v.iter().map(|s| w(s)).collect::<Result<Vec<_>, _>>()?
                    }
                    _ => ws(t)?,
                };
                if list.iter().any(|v| v.is_empty()) {
                    return Err(step_err(ins, "VOLUME paths cannot be empty").into());
                }
                meta = Some((
                    format!("VOLUME {list:?}"),
                    Box::new(move |img: &mut Img| {
                        archive::add_to_set(img.cfg(), "Volumes", list);
                        Ok(())
                    }),
                ));
            }
            Kind::StopSignal(t) => {
                let s = w(t)?;
                let known = s.parse::<u32>().is_ok_and(|n| (1..=64).contains(&n))
                    || crate::container::kill::parse_signal(&s).is_ok();
                if !known {
                    return Err(step_err(ins, format!("invalid signal {s:?}")).into());
                }
                meta = Some((
                    format!("STOPSIGNAL {s}"),
                    Box::new(move |img: &mut Img| {
                        img.cfg().insert("StopSignal".into(), json!(s));
                        Ok(())
                    }),
                ));
            }
            Kind::Cmd(c) | Kind::Entrypoint(c) => {
                let is_cmd = matches!(ins.kind, Kind::Cmd(_));
                let list = match c {
                    Command::Exec(v) => v.clone(),
                    Command::Shell(s) => {
                        let mut v = img.shell();
                        v.push(s.clone());
                        v
                    }
                };
                let word = if is_cmd { "CMD" } else { "ENTRYPOINT" };
                let reset_cmd = !is_cmd && !*cmd_set;
                if is_cmd {
                    *cmd_set = true;
                }
                meta = Some((
                    format!(
                        "{word} {}",
                        serde_json::to_string(&list).unwrap_or_default()
                    ),
                    Box::new(move |img: &mut Img| {
                        let cfg = img.cfg();
                        cfg.insert(
                            if is_cmd { "Cmd" } else { "Entrypoint" }.into(),
                            json!(list),
                        );
                        // ENTRYPOINT resets a CMD inherited from the base image (as Docker).
                        if reset_cmd {
                            cfg.remove("Cmd");
                        }
                        Ok(())
                    }),
                ));
            }
            Kind::Shell(v) => {
                let v = v.clone();
                meta = Some((
                    format!("SHELL {}", serde_json::to_string(&v).unwrap_or_default()),
                    Box::new(move |img: &mut Img| {
                        img.cfg().insert("Shell".into(), json!(v));
                        Ok(())
                    }),
                ));
            }
            Kind::Healthcheck(h) => {
                let mut hc = Map::new();
                let test = match &h.test {
                    None => json!(["NONE"]),
                    Some(Command::Exec(v)) => {
                        let mut t = vec!["CMD".to_string()];
                        t.extend(v.iter().cloned());
                        json!(t)
                    }
                    Some(Command::Shell(s)) => json!(["CMD-SHELL", s]),
                };
                hc.insert("Test".into(), test);
                for (k, v) in [
                    ("Interval", &h.interval),
                    ("Timeout", &h.timeout),
                    ("StartPeriod", &h.start_period),
                    ("StartInterval", &h.start_interval),
                ] {
                    if let Some(d) = v.as_deref().and_then(parse::parse_duration) {
                        hc.insert(k.into(), json!(d));
                    }
                }
                if let Some(r) = h.retries {
                    hc.insert("Retries".into(), json!(r));
                }
                meta = Some((
                    ins.text.clone(),
                    Box::new(move |img: &mut Img| {
                        img.cfg().insert("Healthcheck".into(), Value::Object(hc));
                        Ok(())
                    }),
                ));
            }
            Kind::Maintainer(m) => {
                let m = m.clone();
                meta = Some((
                    ins.text.clone(),
                    Box::new(move |img: &mut Img| {
                        img.config["author"] = json!(m);
                        Ok(())
                    }),
                ));
            }
            Kind::Onbuild(t) => {
                let t = t.clone();
                meta = Some((
                    ins.text.clone(),
                    Box::new(move |img: &mut Img| {
                        let o = img.cfg().entry("OnBuild").or_insert_with(|| json!([]));
                        if !o.is_array() {
                            *o = json!([]);
                        }
                        if let Value::Array(a) = o {
                            a.push(json!(t));
                        }
                        Ok(())
                    }),
                ));
            }
            Kind::Copy(c) => {
                let c = c.clone();
                return self.copy(ins, img, &c, &lookup, done);
            }
            Kind::Run { cmd, network } => {
                let argv = match cmd {
                    Command::Exec(v) => v.clone(),
                    Command::Shell(s) => {
                        let mut v = img.shell();
                        v.push(s.clone());
                        v
                    }
                };
                let args: Vec<String> = vars
                    .order
                    .iter()
                    .filter_map(|k| vars.args.get(k).map(|v| format!("{k}={v}")))
                    .collect();
                let created_by = if args.is_empty() {
                    format!("RUN {}", argv.join(" "))
                } else {
                    format!("RUN |{} {} {}", args.len(), args.join(" "), argv.join(" "))
                };
                let network = network.clone().or_else(|| self.opts.network.clone());
                let key = Cache::key(&img, &[&created_by, network.as_deref().unwrap_or("")]);
                return self.cached(&key, img, |b, img| {
                    run::run_step(b, ins, img, &argv, &args, network.as_deref(), &created_by)
                });
            }
        }
        let Some((created_by, change)) = meta else {
            return Ok(img);
        };
        let key = Cache::key(&img, &[&created_by]);
        self.cached(&key, img, move |b, mut img| {
            change(&mut img).map_err(Error::from)?;
            img.history(&created_by, true);
            img.store(&b.store)?;
            Ok(img)
        })
    }

    fn copy(
        &mut self,
        ins: &Instruction,
        img: Img,
        c: &parse::CopySpec,
        lookup: &dyn Fn(&str) -> Option<String>,
        done: &[(Option<String>, Img)],
    ) -> Result<Img, Error> {
        let esc = self.escape;
        let w = |s: &str| parse::word(s, lookup, esc).map_err(|e| step_err(ins, e));
        let what = if c.add { "ADD" } else { "COPY" };
        let mut srcs = Vec::new();
        for s in &c.sources {
            let s = w(s)?;
            if s.contains("://") || s.starts_with("git@") {
                return Err(step_err(ins, format!("{s}: remote sources are not supported (no network fetches in {what}); download it in a RUN step instead")).into());
            }
            srcs.push(s);
        }
        let dest_raw = w(&c.dest)?;
        let workdir = img.config["config"]["WorkingDir"]
            .as_str()
            .unwrap_or("/")
            .to_string();
        let dest_abs = if dest_raw.starts_with('/') {
            dest_raw.clone()
        } else {
            format!("{}/{dest_raw}", workdir.trim_end_matches('/'))
        };
        let dest_is_dir = dest_raw.ends_with('/') || dest_raw == "." || dest_raw.ends_with("/.");
        let dest = context::clean(&dest_abs).unwrap_or_default();
        let chown = c.chown.as_deref().map(w).transpose()?;
        let chmod = match c.chmod.as_deref().map(w).transpose()? {
            Some(m) => Some(
                u32::from_str_radix(&m, 8)
                    .ok()
                    .filter(|m| *m <= 0o7777)
                    .ok_or_else(|| {
                        step_err(
                            ins,
                            format!("invalid --chmod {m:?}: an octal mode like 755"),
                        )
                    })?,
            ),
            None => None,
        };
        if let Some(from) = &c.from {
            let from = w(from)?;
            return run::copy_from(
                self,
                ins,
                img,
                &from,
                &srcs,
                &dest,
                dest_is_dir,
                chown.as_deref(),
                chmod,
                done,
            );
        }
        let sources = self
            .ctx
            .sources(&srcs)
            .map_err(|e| step_err(ins, e.to_string()))?;
        let multi = sources.len() > 1 || srcs.iter().any(|s| s.contains(['*', '?', '[']));
        if multi && !dest_is_dir {
            return Err(step_err(ins, format!("when copying several sources the destination must be a directory ending in '/': {dest_raw}")).into());
        }
        let hash = context::hash_sources(&sources)?;
        let created_by = format!(
            "{what} {}{}{} {}",
            c.chown
                .as_deref()
                .map(|o| format!("--chown={o} "))
                .unwrap_or_default(),
            c.chmod
                .as_deref()
                .map(|o| format!("--chmod={o} "))
                .unwrap_or_default(),
            srcs.join(" "),
            dest_raw
        );
        let key = Cache::key(&img, &[&created_by, &dest, &hash]);
        self.cached(&key, img, move |b, mut img| {
            let dirs = b.parent_layers(&img)?;
            let owner = match &chown {
                Some(spec) => {
                    let (uid, gid, _, _) =
                        crate::image::config::resolve_user(spec, &LayerFiles(&dirs))
                            .map_err(|e| step_err(ins, format!("--chown={spec}: {e}")))?;
                    Owner { uid, gid, chmod }
                }
                None => Owner {
                    uid: 0,
                    gid: 0,
                    chmod,
                },
            };
            let existing = |p: &str| dir_meta(&dirs, p);
            let mut lw = LayerWriter::new(&b.store, &existing)?;
            for s in &sources {
                let is_archive = c.add && !s.is_dir && is_tar_archive(&s.entries[0].host);
                if is_archive {
                    lw.parents(&format!("{dest}/x"))?;
                    let chowned = chown.as_ref().map(|_| owner);
                    lw.extract(&s.entries[0].host, &dest, chowned)?;
                    continue;
                }
                // A directory's contents go into dest; a file goes to dest/name when dest is
                // a directory, else to dest.
                let base = if s.is_dir {
                    dest.clone()
                } else if dest_is_dir || multi {
                    layer::join(&dest, s.path.rsplit('/').next().unwrap_or(&s.path))
                } else {
                    dest.clone()
                };
                if base.is_empty() && !s.is_dir {
                    return Err(step_err(ins, "cannot copy a file over the root directory").into());
                }
                lw.parents(&base)?;
                for e in &s.entries {
                    let path = layer::join(&base, &e.rel);
                    if path.is_empty() {
                        continue;
                    }
                    if e.rel.is_empty() && s.is_dir {
                        // The destination directory itself: as it is, or made.
                        let (m, u, g) =
                            dir_meta(&dirs, &path).unwrap_or((0o755, owner.uid, owner.gid));
                        lw.dir(&path, m, u, g, e.mtime)?;
                        continue;
                    }
                    let mode = owner.chmod.unwrap_or(e.mode);
                    match &e.kind {
                        EntryKind::Dir => lw.dir(&path, mode, owner.uid, owner.gid, e.mtime)?,
                        EntryKind::File { size } => {
                            let mut f = std::fs::File::open(&e.host)
                                .map_err(|x| BuildError::io("cannot open", &e.host, x))?;
                            lw.file(&path, mode, owner.uid, owner.gid, e.mtime, *size, &mut f)?
                        }
                        EntryKind::Symlink(t) => {
                            lw.symlink(&path, t, owner.uid, owner.gid, e.mtime)?
                        }
                    }
                }
            }
            let wr = lw.finish()?;
            img.add_layer(
                Descriptor::new(MEDIA_OCI_LAYER_GZIP, wr.blob, wr.size),
                &wr.diff_id,
            )?;
            img.history(&created_by, false);
            img.store(&b.store)?;
            Ok(img)
        })
    }

    /// The unpacked layer directories of `img` (for reading /etc/passwd and directory modes).
    fn parent_layers(&self, img: &Img) -> Result<Vec<PathBuf>, Error> {
        match &img.manifest {
            Some(desc) if !img.layers.is_empty() => {
                let full = self.store.load_image(desc, Vec::new())?;
                Ok(self.store.layer_dirs(&full)?)
            }
            _ => Ok(Vec::new()),
        }
    }
}

/// Mode (and root ownership) of a directory in unpacked layers, top layer first.
fn dir_meta(layers: &[PathBuf], path: &str) -> Option<(u32, u32, u32)> {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    for l in layers.iter().rev() {
        let p = l.join(path);
        if let Ok(m) = std::fs::symlink_metadata(&p) {
            if m.file_type().is_char_device() {
                return None;
            }
            if m.is_dir() {
                return Some((m.permissions().mode() & 0o7777, 0, 0));
            }
            return None;
        }
    }
    None
}

/// Whether a file is a (plain, gzip or zstd) tar archive, which ADD extracts.
fn is_tar_archive(p: &Path) -> bool {
    use std::io::{BufReader, Read};
    let Ok(f) = std::fs::File::open(p) else {
        return false;
    };
    let Ok(mut r) = crate::image::store::decompress(BufReader::new(f)) else {
        return false;
    };
    let mut head = vec![0u8; 512];
    let mut n = 0;
    while n < head.len() {
        match r.read(&mut head[n..]) {
            Ok(0) | Err(_) => break,
            Ok(k) => n += k,
        }
    }
    n == 512 && &head[257..262] == b"ustar"
}

/// One line of `rootbox history`.
#[derive(Debug, Clone)]
pub struct HistoryRow {
    /// The image's short id on its newest line (older steps' images are not named).
    pub image: Option<String>,
    /// How long ago ("5 minutes ago").
    pub created: String,
    pub created_by: String,
    /// The size of the step's layer blob (0 for metadata-only steps).
    pub size: u64,
    pub comment: String,
    pub empty_layer: bool,
}

/// `rootbox history IMAGE`: the image's history entries, newest first, each non-empty one
/// matched with its layer.
pub fn history(store: &Store, reference: &str) -> Result<Vec<HistoryRow>, Error> {
    let img = store.resolve(reference)?;
    let hist = img.config_json["history"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let mut layers = img.manifest.layers.iter();
    let mut rows = Vec::new();
    for h in &hist {
        let empty = h["empty_layer"].as_bool().unwrap_or(false);
        let size = if empty {
            0
        } else {
            layers.next().map_or(0, |l| l.size)
        };
        rows.push(HistoryRow {
            image: None,
            created: time::ago(h["created"].as_str()),
            created_by: h["created_by"].as_str().unwrap_or("").to_string(),
            size,
            comment: h["comment"].as_str().unwrap_or("").to_string(),
            empty_layer: empty,
        });
    }
    rows.reverse();
    if let Some(r) = rows.first_mut() {
        r.image = Some(img.config_digest.short().to_string());
    }
    Ok(rows)
}

//! The image commands of `rootbox` (import, load, save, images, tag, rmi, image ...): argument
//! parsing and output formatting only; the work is `rootbox_core::image`.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use rootbox_core::image::archive::{self, ImportOptions, SaveFormat};
use rootbox_core::image::store::human_size;
use rootbox_core::image::Store;
use rootbox_core::Error;

/// Top-level image commands (flattened into `rootbox`'s command list).
#[derive(Subcommand, Debug)]
pub enum ImageCommands {
    /// Create an image from a root filesystem tarball (like `docker import`).
    Import(ImportArgs),
    /// Load images from a docker-archive or OCI archive/layout (like `docker load`).
    Load(LoadArgs),
    /// Save images to a docker-archive, OCI archive or OCI layout directory.
    Save(SaveArgs),
    /// List images.
    Images(ListArgs),
    /// Give an image another name.
    Tag(TagArgs),
    /// Remove images.
    Rmi(RmiArgs),
    /// Manage images.
    #[command(subcommand)]
    Image(ImageSub),
    /// Pull an image from a registry.
    Pull(crate::registry::PullArgs),
    /// Push an image to a registry.
    Push(crate::registry::PushArgs),
    /// Log in to a registry (credentials are checked, then stored).
    Login(crate::registry::LoginArgs),
    /// Remove stored credentials of a registry.
    Logout(crate::registry::LogoutArgs),
}

/// `rootbox image ...`
#[derive(Subcommand, Debug)]
pub enum ImageSub {
    /// List images.
    #[command(alias = "list")]
    Ls(ListArgs),
    /// Show an image's details as JSON.
    Inspect(InspectArgs),
    /// Remove dangling images (with -a, every image no container uses).
    Prune(PruneArgs),
    /// Remove images.
    Rm(RmiArgs),
    /// Give an image another name.
    Tag(TagArgs),
    /// Load images from an archive.
    Load(LoadArgs),
    /// Save images to an archive.
    Save(SaveArgs),
    /// Create an image from a root filesystem tarball.
    Import(ImportArgs),
    /// Show the layer history of an image.
    History(InspectOne),
    /// Unpack an image's layers into the store (if not yet) and print their directories,
    /// lowest first.
    Unpack(UnpackArgs),
}

#[derive(Args, Debug)]
pub struct UnpackArgs {
    pub image: String,
    /// The id mapping the layers are for: auto, single or subids.
    #[arg(long, default_value = "auto")]
    pub idmap: String,
}

#[derive(Args, Debug)]
pub struct ImportArgs {
    /// Tarball of a root filesystem (plain, gzip or zstd); `-` for standard input.
    pub source: PathBuf,
    /// Name for the image (e.g. myimage:1.0).
    pub reference: Option<String>,
    /// Apply a Dockerfile instruction (CMD, ENTRYPOINT, ENV, WORKDIR, USER, EXPOSE, LABEL, VOLUME, STOPSIGNAL).
    #[arg(short = 'c', long = "change")]
    pub change: Vec<String>,
    /// Commit message recorded in the image history.
    #[arg(short = 'm', long = "message")]
    pub message: Option<String>,
}

#[derive(Args, Debug)]
pub struct LoadArgs {
    /// Archive to read (tar, tar.gz, tar.zst) or OCI layout directory (default: standard input).
    #[arg(short = 'i', long = "input")]
    pub input: Option<PathBuf>,
    /// Print only the image ids.
    #[arg(short = 'q', long)]
    pub quiet: bool,
}

#[derive(Args, Debug)]
pub struct SaveArgs {
    /// Write to this file (or directory for oci-dir); default: standard output.
    #[arg(short = 'o', long = "output")]
    pub output: Option<PathBuf>,
    /// docker-archive (default), oci-archive or oci-dir.
    #[arg(long, default_value = "docker-archive")]
    pub format: String,
    /// Images to save.
    #[arg(required = true)]
    pub images: Vec<String>,
}

#[derive(Args, Debug)]
pub struct ListArgs {
    /// Output format: table (default) or json.
    #[arg(long)]
    pub format: Option<String>,
    /// Only show image ids.
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Show all images (accepted for compatibility; there are no intermediate images).
    #[arg(short = 'a', long)]
    pub all: bool,
    /// Show full image ids.
    #[arg(long)]
    pub no_trunc: bool,
    /// Show digests.
    #[arg(long)]
    pub digests: bool,
    /// Only images of this repository[:tag].
    pub repository: Option<String>,
}

#[derive(Args, Debug)]
pub struct TagArgs {
    pub source: String,
    pub target: String,
}

#[derive(Args, Debug)]
pub struct RmiArgs {
    /// Remove even when containers use the image or it has several names.
    #[arg(short = 'f', long)]
    pub force: bool,
    #[arg(required = true)]
    pub images: Vec<String>,
}

#[derive(Args, Debug)]
pub struct InspectArgs {
    /// Go-template-like field selection is not supported; `json` only.
    #[arg(short = 'f', long)]
    pub format: Option<String>,
    #[arg(required = true)]
    pub images: Vec<String>,
}

#[derive(Args, Debug)]
pub struct InspectOne {
    pub image: String,
}

#[derive(Args, Debug)]
pub struct PruneArgs {
    /// Remove every image no container uses, not only dangling ones.
    #[arg(short = 'a', long)]
    pub all: bool,
    /// Do not ask for confirmation (accepted for compatibility; rootbox never asks).
    #[arg(short = 'f', long)]
    pub force: bool,
}

fn json_out(v: &impl serde::Serialize) -> Result<(), Error> {
    match serde_json::to_string_pretty(v) {
        Ok(s) => {
            println!("{s}");
            Ok(())
        }
        Err(e) => Err(rootbox_core::image::ImageError::Config(format!("JSON output: {e}")).into()),
    }
}

/// Runs an image command against the store at `root` (default place when `None`).
pub fn run(cmd: ImageCommands, root: Option<PathBuf>) -> Result<i32, Error> {
    let cmd = match cmd {
        ImageCommands::Login(a) => return crate::registry::login(a),
        ImageCommands::Logout(a) => return crate::registry::logout(a),
        other => other,
    };
    let store = Store::open(root)?;
    match cmd {
        ImageCommands::Pull(a) => crate::registry::pull(&store, a),
        ImageCommands::Push(a) => crate::registry::push(&store, a),
        ImageCommands::Login(_) | ImageCommands::Logout(_) => Ok(0),
        ImageCommands::Import(a) => import(&store, a),
        ImageCommands::Load(a) => load(&store, a),
        ImageCommands::Save(a) => save(&store, a),
        ImageCommands::Images(a) => list(&store, a),
        ImageCommands::Tag(a) => tag(&store, a),
        ImageCommands::Rmi(a) => rmi(&store, a),
        ImageCommands::Image(sub) => match sub {
            ImageSub::Ls(a) => list(&store, a),
            ImageSub::Inspect(a) => inspect(&store, a),
            ImageSub::Prune(a) => prune(&store, a),
            ImageSub::Rm(a) => rmi(&store, a),
            ImageSub::Tag(a) => tag(&store, a),
            ImageSub::Load(a) => load(&store, a),
            ImageSub::Save(a) => save(&store, a),
            ImageSub::Import(a) => import(&store, a),
            ImageSub::History(a) => history(&store, a),
            ImageSub::Unpack(a) => unpack(&store, a),
        },
    }
}

fn import(store: &Store, a: ImportArgs) -> Result<i32, Error> {
    if a.source != Path::new("-") && !a.source.exists() {
        return Err(rootbox_core::image::ImageError::Config(format!(
            "{}: no such file",
            a.source.display()
        ))
        .into());
    }
    let opts = ImportOptions {
        changes: a.change,
        message: a.message,
    };
    let loaded = archive::import(store, &a.source, a.reference.as_deref(), &opts)?;
    println!("{}", loaded.id);
    Ok(0)
}

fn load(store: &Store, a: LoadArgs) -> Result<i32, Error> {
    let input = a.input.unwrap_or_else(|| PathBuf::from("-"));
    if input == Path::new("-") && std::io::stdin().is_terminal() {
        return Err(rootbox_core::image::ImageError::Config(
            "requested load from stdin, but stdin is a terminal: use -i FILE or redirect an archive".into(),
        )
        .into());
    }
    let loaded = archive::load(store, &input)?;
    for l in loaded {
        if a.quiet {
            println!("{}", l.id);
        } else {
            for line in l.lines() {
                println!("{line}");
            }
        }
    }
    Ok(0)
}

fn save(store: &Store, a: SaveArgs) -> Result<i32, Error> {
    let format: SaveFormat = a.format.parse()?;
    let out = match a.output {
        Some(o) => o,
        None if format == SaveFormat::OciDir => {
            return Err(rootbox_core::image::ImageError::Config(
                "--format oci-dir needs -o DIRECTORY".into(),
            )
            .into())
        }
        None if std::io::stdout().is_terminal() => {
            return Err(rootbox_core::image::ImageError::Config(
                "cowardly refusing to write an archive to a terminal: use -o FILE or redirect"
                    .into(),
            )
            .into())
        }
        None => PathBuf::from("-"),
    };
    archive::save(store, &a.images, &out, format)?;
    Ok(0)
}

fn list(store: &Store, a: ListArgs) -> Result<i32, Error> {
    let mut rows = store.summaries()?;
    if let Some(r) = &a.repository {
        let want = rootbox_core::image::Reference::parse_name_tag_digest(r)?;
        rows.retain(|row| {
            let name = rootbox_core::image::Reference::parse(&row.repository).ok();
            name.is_some_and(|n| n.name() == want.name())
                && want.tag.as_ref().is_none_or(|t| *t == row.tag)
        });
    }
    if a.quiet {
        let mut seen = std::collections::BTreeSet::new();
        for r in &rows {
            if seen.insert(r.id.clone()) {
                println!("{}", r.id);
            }
        }
        return Ok(0);
    }
    match a.format.as_deref() {
        Some("json") => return json_out(&rows).map(|_| 0),
        None | Some("table") => {}
        Some(other) => {
            return Err(rootbox_core::image::ImageError::Config(format!(
                "unknown --format {other:?} (expected table or json)"
            ))
            .into())
        }
    }
    let mut table = vec![vec![
        "REPOSITORY".to_string(),
        "TAG".into(),
        "IMAGE ID".into(),
        "CREATED".into(),
        "SIZE".into(),
    ]];
    if a.digests {
        table[0].insert(2, "DIGEST".into());
    }
    for r in &rows {
        let mut row = vec![
            r.repository.clone(),
            r.tag.clone(),
            if a.no_trunc {
                format!(
                    "sha256:{}",
                    full_id(store, &r.id).unwrap_or_else(|| r.id.clone())
                )
            } else {
                r.id.clone()
            },
            r.created_since.clone(),
            human_size(r.size),
        ];
        if a.digests {
            row.insert(2, r.digest.clone());
        }
        table.push(row);
    }
    let widths: Vec<usize> = (0..table[0].len())
        .map(|i| table.iter().map(|r| r[i].len()).max().unwrap_or(0))
        .collect();
    for row in table {
        let line: Vec<String> = row
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<w$}", w = widths[i]))
            .collect();
        println!("{}", line.join("   ").trim_end());
    }
    Ok(0)
}

fn full_id(store: &Store, short: &str) -> Option<String> {
    store.resolve(short).ok().map(|i| i.id().hex().to_string())
}

fn tag(store: &Store, a: TagArgs) -> Result<i32, Error> {
    store.tag(&a.source, &a.target)?;
    Ok(0)
}

fn rmi(store: &Store, a: RmiArgs) -> Result<i32, Error> {
    for line in store.remove(&a.images, a.force)? {
        println!("{line}");
    }
    Ok(0)
}

fn inspect(store: &Store, a: InspectArgs) -> Result<i32, Error> {
    if let Some(f) = a.format.as_deref().filter(|f| *f != "json") {
        return Err(rootbox_core::image::ImageError::Config(format!(
            "unsupported --format {f:?}: only json"
        ))
        .into());
    }
    let mut out = Vec::new();
    let mut missing = None;
    for s in &a.images {
        match store.resolve(s) {
            Ok(img) => out.push(img.inspect()),
            Err(e) => {
                eprintln!("rootbox: {e}");
                missing = Some(e);
            }
        }
    }
    json_out(&out)?;
    match missing {
        Some(_) => Ok(1),
        None => Ok(0),
    }
}

fn history(store: &Store, a: InspectOne) -> Result<i32, Error> {
    let img = store.resolve(&a.image)?;
    println!("{:<24}  {:<60}  COMMENT", "CREATED", "CREATED BY");
    for h in img.config.history().iter().flatten().rev() {
        let mut by = h.created_by().clone().unwrap_or_default();
        if by.len() > 60 {
            by.truncate(57);
            by.push_str("...");
        }
        println!(
            "{:<24}  {:<60}  {}",
            rootbox_core::image::time::ago(h.created().as_deref()),
            by,
            h.comment().clone().unwrap_or_default()
        );
    }
    Ok(0)
}

fn unpack(store: &Store, a: UnpackArgs) -> Result<i32, Error> {
    let mode: rootbox_core::idmap::IdMapMode = a
        .idmap
        .parse()
        .map_err(rootbox_core::image::ImageError::from)?;
    let (uids, gids) =
        rootbox_core::idmap::mappings(mode).map_err(rootbox_core::image::ImageError::from)?;
    let img = store.resolve(&a.image)?;
    for d in store.layer_dirs_for(&img, &uids, &gids)? {
        println!("{}", d.display());
    }
    Ok(0)
}

fn prune(store: &Store, a: PruneArgs) -> Result<i32, Error> {
    let (deleted, freed) = store.prune(a.all)?;
    if !deleted.is_empty() {
        println!("Deleted Images:");
        for d in &deleted {
            println!("deleted: {d}");
        }
        println!();
    }
    println!("Total reclaimed space: {}", human_size(freed));
    Ok(0)
}

//! `rootbox build`, `history` and `builder prune`: argument parsing and printing only; the
//! work is `rootbox_core::build`.

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use clap::{Args, Subcommand};
use rootbox_core::build::{self, BuildOptions};
use rootbox_core::container::request::Dirs;
use rootbox_core::image::store::human_size;
use rootbox_core::image::Store;
use rootbox_core::Error;

/// Ctrl-C (SIGINT) or SIGTERM cancels the build: the step's container is killed and removed,
/// and the build ends with "cancelled"; a second one ends the process at once.
fn cancel_on_interrupt() -> Arc<AtomicBool> {
    use signal_hook::consts::signal::{SIGINT, SIGTERM};
    let flag = Arc::new(AtomicBool::new(false));
    for sig in [SIGINT, SIGTERM] {
        // Without the handlers the signal's default ends the build as before.
        let _ = signal_hook::flag::register_conditional_shutdown(sig, 130, flag.clone())
            .and_then(|_| signal_hook::flag::register(sig, flag.clone()));
    }
    flag
}

#[derive(Subcommand, Debug)]
pub enum BuildCmd {
    /// Build an image from a Dockerfile.
    Build(BuildArgs),
    /// Show the history of an image: one line per step, newest first.
    History(HistoryArgs),
    /// Manage the build cache.
    #[command(subcommand)]
    Builder(BuilderCmd),
}

#[derive(Subcommand, Debug)]
pub enum BuilderCmd {
    /// Forget the build cache and remove the images only it kept.
    Prune,
}

#[derive(Args, Debug)]
pub struct BuildArgs {
    /// Name (and optionally tag) of the image, NAME[:TAG]; repeatable.
    #[arg(short = 't', long = "tag")]
    tags: Vec<String>,
    /// The Dockerfile (default: CONTEXT/Dockerfile).
    #[arg(short = 'f', long = "file")]
    file: Option<PathBuf>,
    /// A build argument, KEY=VALUE (or KEY to take it from the environment); repeatable.
    #[arg(long = "build-arg")]
    build_args: Vec<String>,
    /// Build up to this stage (by its AS name).
    #[arg(long)]
    target: Option<String>,
    /// Do not use the cache: run every step.
    #[arg(long)]
    no_cache: bool,
    /// A label for the image, KEY=VALUE; repeatable.
    #[arg(long = "label")]
    labels: Vec<String>,
    /// Network of RUN steps: host (default), none, private, ...
    #[arg(long)]
    network: Option<String>,
    /// Id mapping of RUN steps: auto, single or subids.
    #[arg(long)]
    idmap: Option<String>,
    /// Print only the image id.
    #[arg(short = 'q', long)]
    quiet: bool,
    /// The build context directory.
    context: PathBuf,
}

#[derive(Args, Debug)]
pub struct HistoryArgs {
    /// Do not cut the CREATED BY column.
    #[arg(long)]
    no_trunc: bool,
    image: String,
}

pub fn dispatch(cmd: BuildCmd, dirs: &Dirs) -> Result<i32, Error> {
    match cmd {
        BuildCmd::Build(a) => {
            let opts = BuildOptions {
                context: a.context,
                dockerfile: a.file,
                tags: a.tags,
                build_args: a.build_args,
                target: a.target,
                no_cache: a.no_cache,
                labels: a.labels,
                network: a.network,
                idmap: a.idmap,
                cancel: Some(cancel_on_interrupt()),
            };
            let r = if a.quiet {
                build::build(dirs, &opts, &mut std::io::sink())
            } else {
                build::build(dirs, &opts, &mut std::io::stdout())
            };
            let built = match r {
                Err(Error::Build(build::BuildError::Cancelled)) => {
                    eprintln!("rootbox: the build was cancelled");
                    return Ok(130);
                }
                r => r?,
            };
            if a.quiet {
                println!("{}", built.id);
            }
            Ok(0)
        }
        BuildCmd::History(a) => {
            let store = Store::open(Some(dirs.store.clone()))?;
            let rows = build::history(&store, &a.image)?;
            println!(
                "{:<14}  {:<24}  {:<48}  {:>10}  COMMENT",
                "IMAGE", "CREATED", "CREATED BY", "SIZE"
            );
            for r in rows {
                let mut by = r.created_by.clone();
                if !a.no_trunc && by.chars().count() > 48 {
                    by = by.chars().take(45).collect::<String>() + "...";
                }
                println!(
                    "{:<14}  {:<24}  {:<48}  {:>10}  {}",
                    r.image.as_deref().unwrap_or("<missing>"),
                    r.created,
                    by,
                    human_size(r.size),
                    r.comment
                );
            }
            Ok(0)
        }
        BuildCmd::Builder(BuilderCmd::Prune) => {
            let store = Store::open(Some(dirs.store.clone()))?;
            let (n, freed) = build::prune_cache(&store)?;
            println!("Deleted build cache entries: {n}");
            println!("Total reclaimed space: {}", human_size(freed));
            Ok(0)
        }
    }
}

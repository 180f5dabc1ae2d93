//! `rootbox commit`, `diff`, `export`, `cp`: each maps to `rootbox_core::container::commit`;
//! this file only parses arguments and prints.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};

use clap::{ArgAction, Args, Subcommand};
use rootbox_core::container::commit::{self, CommitOptions, CopyIn, CopyOut};
use rootbox_core::container::state::StateRoot;
use rootbox_core::Error;

#[derive(Subcommand, Debug)]
pub enum ChangesCmd {
    /// Make a new image from a container's changes.
    Commit(CommitArgs),
    /// List the files a container added (A), changed (C) and deleted (D).
    Diff { container: String },
    /// Write a container's filesystem as a tar archive.
    Export {
        /// Write to a file instead of standard output.
        #[arg(short, long)]
        output: Option<PathBuf>,
        container: String,
    },
    /// Copy files between a container and the host: `cp CTR:SRC DEST`, `cp SRC CTR:DEST`
    /// (`-` for a tar stream on standard input or output).
    Cp { src: String, dest: String },
}

#[derive(Args, Debug)]
pub struct CommitArgs {
    /// Commit message.
    #[arg(short, long)]
    message: Option<String>,
    /// Author (e.g. "Jane Doe <jane@example.com>").
    #[arg(short, long)]
    author: Option<String>,
    /// Apply a Dockerfile instruction to the image config (CMD, ENTRYPOINT, ENV, EXPOSE,
    /// LABEL, USER, WORKDIR, VOLUME, STOPSIGNAL); repeatable.
    #[arg(short, long = "change")]
    change: Vec<String>,
    /// Freeze the container during the commit (when it has a cgroup freezer).
    #[arg(short, long, default_value_t = true, action = ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pause: bool,
    container: String,
    /// REPOSITORY[:TAG] (none: an untagged image).
    reference: Option<String>,
}

fn invalid(msg: String) -> Error {
    Error::Commit(commit::CommitError::Invalid(msg))
}

pub fn dispatch(cmd: ChangesCmd, state_dir: &Path, store: &Path) -> Result<i32, Error> {
    let root = StateRoot::open(state_dir)?;
    match cmd {
        ChangesCmd::Commit(a) => {
            let done = commit::commit(
                &root,
                store,
                &a.container,
                &CommitOptions {
                    reference: a.reference,
                    message: a.message,
                    author: a.author,
                    changes: a.change,
                    pause: a.pause,
                },
            )?;
            println!("{}", done.id);
        }
        ChangesCmd::Diff { container } => {
            for c in commit::diff(&root, &container)? {
                println!("{}", c.line());
            }
        }
        ChangesCmd::Export { output, container } => match output {
            Some(p) => {
                let tmp = p.with_extension(format!("rootbox-tmp-{}", std::process::id()));
                let f = std::fs::File::create(&tmp).map_err(|e| {
                    Error::Image(rootbox_core::image::ImageError::Io {
                        what: "cannot create".into(),
                        path: tmp.clone(),
                        source: e,
                    })
                })?;
                let mut w = std::io::BufWriter::new(f);
                let r = commit::export(&root, &container, &mut w).and_then(|()| {
                    w.flush()
                        .map_err(|e| invalid(format!("writing {}: {e}", p.display())))
                });
                match r.and_then(|()| {
                    std::fs::rename(&tmp, &p)
                        .map_err(|e| invalid(format!("writing {}: {e}", p.display())))
                }) {
                    Ok(()) => {}
                    Err(e) => {
                        let _ = std::fs::remove_file(&tmp);
                        return Err(e);
                    }
                }
            }
            None => {
                let out = std::io::stdout();
                if out.is_terminal() {
                    return Err(invalid(
                        "refusing to write a tar archive to a terminal: use -o FILE or redirect the output".into(),
                    ));
                }
                let mut w = std::io::BufWriter::new(out.lock());
                commit::export(&root, &container, &mut w)?;
                w.flush()
                    .map_err(|e| invalid(format!("writing standard output: {e}")))?;
            }
        },
        ChangesCmd::Cp { src, dest } => {
            match (
                commit::split_container_path(&src),
                commit::split_container_path(&dest),
            ) {
                (Some(_), Some(_)) => {
                    return Err(invalid(
                        "copying between containers is not supported: one side must be a host path"
                            .into(),
                    ))
                }
                (None, None) => {
                    return Err(invalid(format!(
                        "one of {src:?} and {dest:?} must name a container, as CONTAINER:PATH"
                    )))
                }
                (Some((ctr, path)), None) => {
                    if dest == "-" {
                        let out = std::io::stdout();
                        if out.is_terminal() {
                            return Err(invalid(
                                "refusing to write a tar archive to a terminal: redirect the output".into(),
                            ));
                        }
                        let mut w = std::io::BufWriter::new(out.lock());
                        commit::copy_out(&root, ctr, path, CopyOut::Tar(&mut w))?;
                        w.flush()
                            .map_err(|e| invalid(format!("writing standard output: {e}")))?;
                    } else {
                        commit::copy_out(&root, ctr, path, CopyOut::Host(Path::new(&dest)))?;
                    }
                }
                (None, Some((ctr, path))) => {
                    if src == "-" {
                        let mut r = std::io::stdin().lock();
                        commit::copy_in(&root, ctr, CopyIn::Tar(&mut r), path)?;
                    } else {
                        commit::copy_in(&root, ctr, CopyIn::Host(Path::new(&src)), path)?;
                    }
                }
            }
        }
    }
    Ok(0)
}

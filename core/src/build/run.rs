//! The steps that need a container or an image's files: RUN (a real rootbox container made
//! from the previous step's image, its writable layer committed by
//! [`crate::container::commit::commit`]) and `COPY --from` (files read from another stage's
//! or image's layers, as the container's root sees them, by [`crate::image::nsfs`]).

use std::io::{Read, Seek, SeekFrom};

use std::os::fd::AsRawFd;

use serde_json::{json, Value};

use super::layer::{self, LayerWriter, Owner};
use super::parse::Instruction;
use super::{step_err, BuildError, Builder, Img};
use crate::container::commit::{self, CommitOptions};
use crate::container::request::{self, RunRequest};
use crate::container::{manage, StateRoot};
use crate::idmap::{self, IdMapMode};
use crate::image::layerdiff::{to_container, Entry, Union};
use crate::image::nsfs::NsFs;
use crate::image::store::{Descriptor, Manifest, ANNOTATION_REF_NAME};
use crate::image::{Digest, ImageError, Store};
use crate::Error;

/// Removes a temporary index entry (the parent image, named so that the RUN container can be
/// made from it) and the RUN container, however the step ends.
struct Cleanup {
    store: Store,
    root: StateRoot,
    index_entry: Option<Digest>,
    container: Option<String>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Some(id) = self.container.take() {
            let _ = manage::remove(&self.root, &id, true);
        }
        if let Some(d) = self.index_entry.take() {
            drop_dangling(&self.store, &d);
        }
    }
}

/// Removes a nameless index entry of manifest `d` (named entries stay).
fn drop_dangling(store: &Store, d: &Digest) {
    let _ = store.update_index(|idx| {
        idx.manifests.retain(|m| {
            !(&m.digest == d
                && m.annotations
                    .as_ref()
                    .and_then(|a| a.get(ANNOTATION_REF_NAME))
                    .is_none())
        });
        Ok(())
    });
}

/// A hint for a failed RUN under a single-id mapping, where only uid/gid 0 exist.
fn single_id_hint(b: &Builder<'_>, output: &[u8]) -> Option<String> {
    let mode: IdMapMode = b.opts.idmap.as_deref().unwrap_or("auto").parse().ok()?;
    let (uids, _) = idmap::mappings(mode).ok()?;
    let single = uids.len() == 1 && uids[0].size() == 1;
    let text = String::from_utf8_lossy(output).to_ascii_lowercase();
    let suspicious = [
        "invalid argument",
        "chown",
        "setgroups",
        "setgid",
        "setuid",
        "operation not permitted",
    ]
    .iter()
    .any(|w| text.contains(w));
    (single && suspicious).then(|| {
        "note: this build runs with a single-id mapping (no range for this user in /etc/subuid and /etc/subgid, or --idmap single): only uid and gid 0 exist in its containers, so chown/setuid to other ids fails. Add a subordinate id range (e.g. `usermod --add-subuids 100000-165535 --add-subgids 100000-165535 USER`) to build such steps.".to_string()
    })
}

pub(super) fn run_step(
    b: &mut Builder<'_>,
    ins: &Instruction,
    img: Img,
    argv: &[String],
    args: &[String],
    network: Option<&str>,
    created_by: &str,
) -> Result<Img, Error> {
    let parent = img.manifest.clone().ok_or_else(|| {
        step_err(
            ins,
            "RUN needs a base image with a shell: FROM scratch has no files to run",
        )
    })?;
    if img.layers.is_empty() {
        return Err(step_err(
            ins,
            "RUN needs a base image with files: this image has no layers",
        )
        .into());
    }
    let root = StateRoot::open(&b.dirs.state)?;
    // The container is made from the parent image by id: it must be in the index meanwhile.
    let listed = b
        .store
        .read_index()?
        .manifests
        .iter()
        .any(|m| m.digest == parent.digest);
    b.store.add_image(&parent, &[])?;
    let id = img
        .id
        .clone()
        .ok_or_else(|| step_err(ins, "the parent image has no id"))?;
    let mut cleanup = Cleanup {
        store: Store::open(Some(b.dirs.store.clone()))?,
        root: root.clone(),
        index_entry: (!listed).then(|| parent.digest.clone()),
        container: None,
    };
    let req = RunRequest {
        image: Some(id.to_string()),
        command: argv.to_vec(),
        entrypoint: Some(String::new()),
        env: args.to_vec(),
        network: Some(network.unwrap_or("host").to_string()),
        idmap: b.opts.idmap.clone(),
        ..Default::default()
    };
    let prepared = request::prepare(&req, b.dirs).map_err(|e| step_err(ins, e.to_string()))?;
    let cid = prepared.id.clone();
    let null = std::fs::File::open("/dev/null")
        .map_err(|e| BuildError::io("cannot open", "/dev/null", e))?;
    let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| step_err(ins, format!("making a pipe for the output: {e}")))?;
    let (mut r, w) = (std::fs::File::from(r), std::fs::File::from(w));
    let fg = prepared
        .start(
            &root,
            Some([null.as_raw_fd(), w.as_raw_fd(), w.as_raw_fd()]),
            true,
        )
        .map_err(|e| step_err(ins, e.to_string()))?;
    cleanup.container = Some(cid.clone());
    drop((null, w));
    // The output as it comes (and kept for a hint on failure).
    let mut tail: Vec<u8> = Vec::new();
    let mut buf = vec![0u8; 1 << 14];
    let mut killed = false;
    loop {
        if b.opts.cancel.is_some() && !killed {
            // Waiting in slices, so that a cancel kills the step's container; its output then
            // ends and the loop with it.
            let mut p = libc::pollfd {
                fd: r.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd for the pipe this function owns.
            let n = unsafe { libc::poll(&mut p, 1, 100) };
            if b.opts.cancelled() {
                // SAFETY: the step's container process, started above and not yet waited for.
                unsafe { libc::kill(fg.running.pid(), libc::SIGKILL) };
                killed = true;
            }
            if n <= 0 {
                continue; // nothing to read yet (or a signal): check again
            }
        }
        match r.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                // Writing progress is best effort: the build goes on if the output is gone.
                let _ = b.out.write_all(&buf[..n]);
                let _ = b.out.flush();
                tail.extend_from_slice(&buf[..n]);
                if tail.len() > 1 << 16 {
                    tail.drain(..tail.len() - (1 << 16));
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    let exit = fg.wait(false)?;
    if killed {
        return Err(BuildError::Cancelled.into());
    }
    if exit.code != 0 {
        if let Some(h) = single_id_hint(b, &tail) {
            let _ = writeln!(b.out, "{h}");
        }
        return Err(BuildError::RunFailed {
            line: ins.line,
            instruction: created_by.to_string(),
            code: exit.code,
        }
        .into());
    }
    let committed = commit::commit_layer(
        &root,
        &b.dirs.store,
        &cid,
        &CommitOptions {
            reference: None,
            pause: false,
            ..Default::default()
        },
    )
    .map_err(|e| step_err(ins, format!("committing the step's layer: {e}")))?;
    // The committed image, with the step's history written as the build names it.
    let mbytes = b.store.read_blob(&committed.manifest)?;
    let m: Manifest = serde_json::from_slice(&mbytes).map_err(|e| {
        ImageError::format(format!("manifest {}", committed.manifest), e.to_string())
    })?;
    let mut config: Value = serde_json::from_slice(&b.store.read_blob(&m.config.digest)?)
        .map_err(|e| ImageError::format("image config", e.to_string()))?;
    if let Some(last) = config
        .get_mut("history")
        .and_then(Value::as_array_mut)
        .and_then(|h| h.last_mut())
    {
        *last = json!({
            "created": last["created"].clone(),
            "created_by": created_by,
            "comment": "rootbox build",
        });
    }
    let mut out = Img {
        config,
        layers: m.layers.clone(),
        manifest: None,
        id: None,
    };
    out.store(&b.store)?;
    drop_dangling(&b.store, &committed.manifest);
    drop(cleanup);
    Ok(out)
}

/// A `--from` source: its path, whether it is a directory, and its entries.
type Found = (String, bool, Vec<(String, Entry)>);

/// One entry found in an image's tree: its path below the copy's destination.
fn walk(
    u: &Union<'_>,
    e: Entry,
    at: &[u8],
    rel: String,
    out: &mut Vec<(String, Entry)>,
) -> Result<(), std::io::Error> {
    let is_dir = e.node.is_dir();
    let names = if is_dir {
        u.names_at(&e, at)?
    } else {
        Vec::new()
    };
    let children: Vec<(Vec<u8>, Entry)> = if is_dir {
        let mut v = Vec::new();
        for n in names {
            if let Some(c) = u.child(&e, at, &n)? {
                v.push((n, c));
            }
        }
        v
    } else {
        Vec::new()
    };
    out.push((rel.clone(), e));
    for (n, c) in children {
        let p = crate::image::layerdiff::join(at, &n);
        let name = String::from_utf8_lossy(&n).into_owned();
        let r = layer::join(&rel, &name);
        walk(u, c, &p, r, out)?;
    }
    Ok(())
}

/// `COPY --from=STAGE|IMAGE`: files from another image's layers.
#[allow(clippy::too_many_arguments)]
pub(super) fn copy_from(
    b: &mut Builder<'_>,
    ins: &Instruction,
    img: Img,
    from: &str,
    srcs: &[String],
    dest: &str,
    dest_is_dir: bool,
    chown: Option<&str>,
    chmod: Option<u32>,
    done: &[(Option<String>, Img)],
) -> Result<Img, Error> {
    let source = match done.iter().enumerate().find(|(i, (n, _))| {
        n.as_deref() == Some(from.to_ascii_lowercase().as_str()) || from == i.to_string()
    }) {
        Some((_, (_, s))) => s.clone(),
        None => {
            let found = b.store.resolve(from).map_err(|e| {
                step_err(
                    ins,
                    format!("--from={from}: no such stage, and as an image: {e}"),
                )
            })?;
            Img {
                config: found.config_json.clone(),
                layers: found.manifest.layers.clone(),
                manifest: Some(Descriptor::new(
                    crate::image::store::MEDIA_OCI_MANIFEST,
                    found.manifest_digest.clone(),
                    found.manifest_size,
                )),
                id: Some(found.config_digest.clone()),
            }
        }
    };
    if srcs.iter().any(|s| s.contains(['*', '?', '['])) {
        return Err(step_err(
            ins,
            "wildcards in COPY --from sources are not supported: name the files",
        )
        .into());
    }
    if srcs.len() > 1 && !dest_is_dir {
        return Err(step_err(
            ins,
            "when copying several sources the destination must be a directory ending in '/'",
        )
        .into());
    }
    let mode: IdMapMode = b
        .opts
        .idmap
        .as_deref()
        .unwrap_or("auto")
        .parse()
        .map_err(crate::spec::SpecError::from)?;
    let (uids, gids) = idmap::mappings(mode)?;
    let layers = match &source.manifest {
        Some(d) if !source.layers.is_empty() => {
            let full = b.store.load_image(d, Vec::new())?;
            b.store.layer_dirs_for(&full, &uids, &gids)?
        }
        _ => Vec::new(),
    };
    if layers.is_empty() {
        return Err(step_err(ins, format!("--from={from}: the image has no files")).into());
    }
    let roots: Vec<&std::path::Path> = layers.iter().map(|p| p.as_path()).collect();
    let fs = NsFs::new(&roots, &uids, &gids)?;
    let idx: Vec<usize> = (0..layers.len()).collect();
    let u = Union::new(&fs, &idx);
    let ioe = |p: &str, e: std::io::Error| step_err(ins, format!("--from={from}: {p}: {e}"));
    // Resolve and hash everything first: the cache key holds the content.
    let mut found: Vec<Found> = Vec::new();
    let mut h = sha2::Sha256::new();
    use sha2::Digest as _;
    for s in srcs {
        let (canon, e) = u.resolve(s.as_bytes(), true).map_err(|e| ioe(s, e))?;
        let e = e.ok_or_else(|| {
            step_err(
                ins,
                format!("--from={from}: {s}: no such file or directory"),
            )
        })?;
        let is_dir = e.node.is_dir();
        let mut entries = Vec::new();
        walk(&u, e, &canon, String::new(), &mut entries).map_err(|e| ioe(s, e))?;
        for (rel, e) in &entries {
            h.update(format!("{s}\n{rel}\n{:o}\n", e.node.st.st_mode));
            if e.node.is_reg() {
                let mut f = e.node.file().map_err(|e| ioe(rel, e))?;
                f.seek(SeekFrom::Start(0)).map_err(|e| ioe(rel, e))?;
                let mut buf = vec![0u8; 1 << 16];
                loop {
                    let n = f.read(&mut buf).map_err(|e| ioe(rel, e))?;
                    if n == 0 {
                        break;
                    }
                    h.update(&buf[..n]);
                }
            } else if e.node.is_symlink() {
                h.update(e.node.link_target().map_err(|e| ioe(rel, e))?);
            }
        }
        found.push((s.clone(), is_dir, entries));
    }
    let hash = hex::encode(h.finalize());
    let created_by = format!("{} (from {from})", ins.text);
    let key = super::Cache::key(
        &img,
        &[
            &created_by,
            dest,
            source.id.as_ref().map_or("", |d| d.as_str()),
            &hash,
        ],
    );
    b.cached(&key, img, move |b, mut img| {
        let dirs = b.parent_layers(&img)?;
        let owner = match chown {
            Some(spec) => {
                let (uid, gid, _, _) = crate::image::config::resolve_user(
                    spec,
                    &crate::image::config::LayerFiles(&dirs),
                )
                .map_err(|e| step_err(ins, format!("--chown={spec}: {e}")))?;
                Some((uid, gid))
            }
            None => None,
        };
        let existing = |p: &str| super::dir_meta(&dirs, p);
        let mut lw = LayerWriter::new(&b.store, &existing)?;
        let multi = found.len() > 1;
        for (s, is_dir, entries) in &found {
            let base = if *is_dir {
                dest.to_string()
            } else if dest_is_dir || multi {
                layer::join(
                    dest,
                    s.trim_end_matches('/').rsplit('/').next().unwrap_or(s),
                )
            } else {
                dest.to_string()
            };
            lw.parents(&base)?;
            for (rel, e) in entries {
                let path = layer::join(&base, rel);
                if path.is_empty() {
                    continue;
                }
                let st = &e.node.st;
                let (uid, gid) = owner.unwrap_or((
                    to_container(st.st_uid, &uids),
                    to_container(st.st_gid, &gids),
                ));
                let o = Owner { uid, gid, chmod };
                let mode = o.chmod.unwrap_or(st.st_mode & 0o7777);
                let mtime = st.st_mtime.max(0) as u64;
                if e.node.is_dir() {
                    lw.dir(&path, mode, o.uid, o.gid, mtime)?;
                } else if e.node.is_reg() {
                    let mut f = e.node.file().map_err(|e| ioe(rel, e))?;
                    f.seek(SeekFrom::Start(0)).map_err(|e| ioe(rel, e))?;
                    lw.file(&path, mode, o.uid, o.gid, mtime, st.st_size as u64, &mut f)?;
                } else if e.node.is_symlink() {
                    let t = e.node.link_target().map_err(|e| ioe(rel, e))?;
                    lw.symlink(&path, &String::from_utf8_lossy(&t), o.uid, o.gid, mtime)?;
                }
            }
        }
        let wr = lw.finish()?;
        img.add_layer(
            Descriptor::new(crate::image::store::MEDIA_OCI_LAYER_GZIP, wr.blob, wr.size),
            &wr.diff_id,
        )?;
        img.history(&created_by, false);
        img.store(&b.store)?;
        Ok(img)
    })
}

//! COPY/ADD layers: the copied files written straight into a gzip OCI layer tar (a COPY's
//! layer is exactly the files it copies, with the parent directories they need), stored as
//! a blob with its diff id.

use std::collections::BTreeSet;
use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read};
use std::path::PathBuf;

use crate::image::digest::HashingWriter;
use crate::image::store::decompress;
use crate::image::{Digest, Store};

use super::BuildError;

type Sink = HashingWriter<flate2::write::GzEncoder<HashingWriter<BufWriter<File>>>>;

/// Mode, uid and gid of a directory of the parent image, by path.
pub type ExistingDir<'a> = &'a dyn Fn(&str) -> Option<(u32, u32, u32)>;

/// Owner and mode rules of one COPY.
#[derive(Debug, Clone, Copy)]
pub struct Owner {
    pub uid: u32,
    pub gid: u32,
    /// `--chmod`: replaces the mode of every copied file and directory.
    pub chmod: Option<u32>,
}

/// A layer being written.
pub struct LayerWriter<'a> {
    store: &'a Store,
    tmp: PathBuf,
    tar: Option<tar::Builder<Sink>>,
    /// Paths already in the tar (directories are written once).
    written: BTreeSet<String>,
    /// Metadata of directories that exist in the parent image (kept when re-emitted).
    existing: ExistingDir<'a>,
}

/// The stored layer.
#[derive(Debug, Clone)]
pub struct Written {
    pub blob: Digest,
    pub diff_id: Digest,
    pub size: u64,
}

fn werr(p: &std::path::Path) -> impl Fn(io::Error) -> BuildError + '_ {
    move |e| BuildError::io("cannot write", p, e)
}

impl<'a> LayerWriter<'a> {
    /// `existing(path)`: (mode, uid, gid) of a directory at `path` in the parent image.
    pub fn new(store: &'a Store, existing: ExistingDir<'a>) -> Result<LayerWriter<'a>, BuildError> {
        let tmp = store.root().join("tmp").join(format!(
            "build-{}-{}",
            std::process::id(),
            crate::container::new_id()
        ));
        let f = File::create(&tmp).map_err(|e| BuildError::io("cannot create", &tmp, e))?;
        let blob_w = HashingWriter::new(BufWriter::with_capacity(1 << 20, f));
        let gz = flate2::write::GzEncoder::new(blob_w, flate2::Compression::default());
        let mut tar = tar::Builder::new(HashingWriter::new(gz));
        tar.mode(tar::HeaderMode::Complete);
        Ok(LayerWriter {
            store,
            tmp,
            tar: Some(tar),
            written: BTreeSet::new(),
            existing,
        })
    }

    fn tar(&mut self) -> Result<&mut tar::Builder<Sink>, BuildError> {
        // Only `finish` takes it, consuming self.
        self.tar
            .as_mut()
            .ok_or_else(|| BuildError::Invalid("the layer is already finished".into()))
    }

    fn header(kind: tar::EntryType, mode: u32, uid: u32, gid: u32, mtime: u64) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_uid(uid.into());
        h.set_gid(gid.into());
        h.set_mtime(mtime);
        h.set_size(0);
        h
    }

    /// The parent directories of `path` (relative, no leading `/`), as they are in the parent
    /// image (or 0755 root-owned when new).
    pub fn parents(&mut self, path: &str) -> Result<(), BuildError> {
        let comps: Vec<&str> = path.split('/').filter(|c| !c.is_empty()).collect();
        for k in 1..comps.len() {
            let p = comps[..k].join("/");
            if self.written.contains(&p) {
                continue;
            }
            let (mode, uid, gid) = (self.existing)(&p).unwrap_or((0o755, 0, 0));
            self.dir(
                &p,
                mode,
                uid,
                gid,
                crate::image::time::now_secs().max(0) as u64,
            )?;
        }
        Ok(())
    }

    pub fn dir(
        &mut self,
        path: &str,
        mode: u32,
        uid: u32,
        gid: u32,
        mtime: u64,
    ) -> Result<(), BuildError> {
        let mut h = Self::header(tar::EntryType::Directory, mode, uid, gid, mtime);
        let name = format!("{path}/");
        let tmp = self.tmp.clone();
        self.tar()?
            .append_data(&mut h, &name, io::empty())
            .map_err(werr(&tmp))?;
        self.written.insert(path.to_string());
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    pub fn file(
        &mut self,
        path: &str,
        mode: u32,
        uid: u32,
        gid: u32,
        mtime: u64,
        size: u64,
        data: &mut dyn Read,
    ) -> Result<(), BuildError> {
        let mut h = Self::header(tar::EntryType::Regular, mode, uid, gid, mtime);
        h.set_size(size);
        let tmp = self.tmp.clone();
        let mut r = data.take(size);
        self.tar()?
            .append_data(&mut h, path, &mut r)
            .map_err(werr(&tmp))?;
        if r.limit() != 0 {
            return Err(BuildError::Invalid(format!(
                "{path}: the file shrank while it was copied"
            )));
        }
        self.written.insert(path.to_string());
        Ok(())
    }

    pub fn symlink(
        &mut self,
        path: &str,
        target: &str,
        uid: u32,
        gid: u32,
        mtime: u64,
    ) -> Result<(), BuildError> {
        let mut h = Self::header(tar::EntryType::Symlink, 0o777, uid, gid, mtime);
        let tmp = self.tmp.clone();
        self.tar()?
            .append_link(&mut h, path, target)
            .map_err(werr(&tmp))?;
        self.written.insert(path.to_string());
        Ok(())
    }

    /// Copies the members of a (plain, gzip or zstd) tar archive under `dest` (ADD's
    /// auto-extraction). Owners are kept as in the archive unless `owner` is given.
    pub fn extract(
        &mut self,
        archive: &std::path::Path,
        dest: &str,
        owner: Option<Owner>,
    ) -> Result<(), BuildError> {
        let f = File::open(archive).map_err(|e| BuildError::io("cannot open", archive, e))?;
        let dec =
            decompress(BufReader::new(f)).map_err(|e| BuildError::io("cannot read", archive, e))?;
        let mut ar = tar::Archive::new(dec);
        let bad = |e: io::Error| {
            BuildError::Invalid(format!("{}: bad tar archive: {e}", archive.display()))
        };
        for e in ar.entries().map_err(bad)? {
            let mut e = e.map_err(bad)?;
            let raw = e.path_bytes().into_owned();
            let name = String::from_utf8_lossy(&raw).into_owned();
            let Some(rel) = super::context::clean(&name) else {
                return Err(BuildError::Invalid(format!(
                    "{}: member {name:?} climbs out of the destination",
                    archive.display()
                )));
            };
            if rel.is_empty() {
                continue;
            }
            let path = join(dest, &rel);
            self.parents(&path)?;
            let h = e.header().clone();
            let (uid, gid) = match owner {
                Some(o) => (o.uid, o.gid),
                None => (h.uid().unwrap_or(0) as u32, h.gid().unwrap_or(0) as u32),
            };
            let mode = owner
                .and_then(|o| o.chmod)
                .unwrap_or(h.mode().unwrap_or(0o644) & 0o7777);
            let mtime = h.mtime().unwrap_or(0);
            match h.entry_type() {
                tar::EntryType::Directory => self.dir(&path, mode, uid, gid, mtime)?,
                tar::EntryType::Regular | tar::EntryType::Continuous => {
                    let size = h.size().map_err(bad)?;
                    self.file(&path, mode, uid, gid, mtime, size, &mut e)?
                }
                tar::EntryType::Symlink => {
                    let t = e
                        .link_name_bytes()
                        .map(|b| String::from_utf8_lossy(&b).into_owned())
                        .unwrap_or_default();
                    self.symlink(&path, &t, uid, gid, mtime)?
                }
                tar::EntryType::Link => {
                    let t = e
                        .link_name_bytes()
                        .map(|b| String::from_utf8_lossy(&b).into_owned())
                        .unwrap_or_default();
                    let Some(t) = super::context::clean(&t) else {
                        return Err(BuildError::Invalid(format!(
                            "{}: hard link {name:?} points outside the archive",
                            archive.display()
                        )));
                    };
                    let mut lh = Self::header(tar::EntryType::Link, mode, uid, gid, mtime);
                    let target = join(dest, &t);
                    let tmp = self.tmp.clone();
                    self.tar()?
                        .append_link(&mut lh, &path, &target)
                        .map_err(werr(&tmp))?;
                }
                // Devices, fifos and extension headers are not carried into an image here.
                _ => {}
            }
        }
        Ok(())
    }

    /// Finishes the tar and stores it as a blob.
    pub fn finish(mut self) -> Result<Written, BuildError> {
        let tmp = self.tmp.clone();
        let tar = self.tar.take();
        let r = (|| -> Result<Written, BuildError> {
            let Some(tar) = tar else {
                return Err(BuildError::Invalid("layer already finished".into()));
            };
            let diff_w = tar.into_inner().map_err(werr(&tmp))?;
            let (gz, diff_id, _) = diff_w.finish();
            let blob_w = gz.finish().map_err(werr(&tmp))?;
            let (buf, blob, size) = blob_w.finish();
            let f = buf
                .into_inner()
                .map_err(|e| BuildError::io("cannot write", &tmp, e.into_error()))?;
            f.sync_data().map_err(werr(&tmp))?;
            let mut f = File::open(&tmp).map_err(|e| BuildError::io("cannot open", &tmp, e))?;
            self.store.write_blob(&mut f, Some(&blob))?;
            Ok(Written {
                blob,
                diff_id,
                size,
            })
        })();
        let _ = std::fs::remove_file(&tmp);
        r
    }
}

impl Drop for LayerWriter<'_> {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.tmp);
    }
}

/// `dest` + `/` + `rel` without doubled or leading slashes.
pub fn join(dest: &str, rel: &str) -> String {
    let d = dest.trim_matches('/');
    match (d.is_empty(), rel.is_empty()) {
        (true, _) => rel.to_string(),
        (false, true) => d.to_string(),
        (false, false) => format!("{d}/{rel}"),
    }
}

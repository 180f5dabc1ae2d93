//! The copy fallback (`--storage-driver vfs`): the lower layers copied, lowest first, into the
//! container's upper directory, whiteouts and opaque directories applied, so the container
//! writes to its own copy and never reaches a layer. File data is shared where the filesystem
//! can (`FICLONE` reflinks, else `copy_file_range`), never through hard links to the layers.
//!
//! The same merge copies the image's content at a volume's path into a new volume (seeding).
//!
//! The copy runs as the calling user on the host: files keep modes, times and xattrs; owners are
//! kept where the caller may set them (root), else the copy belongs to the caller (the
//! container's root). A file the caller cannot read fails the copy, naming it.

use std::collections::{BTreeMap, HashMap};
use std::ffi::CString;
use std::fs;
use std::io::Read;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::{Layers, RootfsError};

/// Marker in the work directory: the upper directory holds a complete copy.
const MARKER: &str = ".rootbox-vfs-complete";

const FICLONE: libc::c_ulong = 0x4004_9409;

fn cp(path: &Path) -> CString {
    // Paths come from directory listings and joined components: they hold no NUL.
    CString::new(path.as_os_str().as_bytes()).unwrap_or_default()
}

fn err(path: &Path) -> impl FnOnce(std::io::Error) -> RootfsError + '_ {
    move |source| RootfsError::Copy {
        path: path.to_path_buf(),
        source,
    }
}

/// A char device 0/0: an overlay whiteout.
pub fn is_whiteout(md: &fs::Metadata) -> bool {
    md.file_type().is_char_device() && md.rdev() == 0
}

fn xattr(path: &Path, name: &std::ffi::CStr) -> Option<Vec<u8>> {
    let c = cp(path);
    let mut buf = [0u8; 256];
    // SAFETY: valid path, name and buffer of the given length.
    let n = unsafe {
        libc::lgetxattr(
            c.as_ptr(),
            name.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    (n >= 0).then(|| buf[..n as usize].to_vec())
}

/// A directory marked opaque (overlay xattr, user or trusted namespace, or an OCI
/// `.wh..wh..opq` entry left in it).
pub fn is_opaque(dir: &Path) -> bool {
    xattr(dir, c"user.overlay.opaque").as_deref() == Some(b"y")
        || xattr(dir, c"trusted.overlay.opaque").as_deref() == Some(b"y")
        || dir.join(".wh..wh..opq").exists()
}

fn remove_any(path: &Path) -> Result<(), RootfsError> {
    match fs::symlink_metadata(path) {
        Ok(md) if md.is_dir() => super::remove_tree(path).map_err(err(path)),
        Ok(_) => fs::remove_file(path).map_err(err(path)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(err(path)(e)),
    }
}

#[derive(Clone, Copy)]
struct DirMeta {
    mode: u32,
    atime: (i64, i64),
    mtime: (i64, i64),
}

/// Copies trees onto a destination with overlay semantics.
struct Copier {
    /// Final metadata of every directory made or updated (applied last, deepest first, so
    /// read-only directories can still be filled meanwhile).
    dirs: BTreeMap<PathBuf, DirMeta>,
    /// (dev, ino) of a multiply-linked source file → its copy (links kept within the copy).
    links: HashMap<(u64, u64), PathBuf>,
}

impl Copier {
    fn new() -> Self {
        Copier {
            dirs: BTreeMap::new(),
            links: HashMap::new(),
        }
    }

    /// Removes a copied entry, forgetting the directories that were in it.
    fn remove(&mut self, path: &Path) -> Result<(), RootfsError> {
        remove_any(path)?;
        self.dirs.retain(|d, _| !d.starts_with(path));
        Ok(())
    }

    /// Copies the contents of `src` into the existing directory `dst`, applying whiteouts.
    fn layer(&mut self, src: &Path, dst: &Path) -> Result<(), RootfsError> {
        self.links.clear();
        self.dir_contents(src, dst)
    }

    fn dir_contents(&mut self, src: &Path, dst: &Path) -> Result<(), RootfsError> {
        let mut entries: Vec<_> = fs::read_dir(src)
            .map_err(err(src))?
            .collect::<Result<_, _>>()
            .map_err(err(src))?;
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let name = e.file_name();
            let s = src.join(&name);
            let d = dst.join(&name);
            let md = fs::symlink_metadata(&s).map_err(err(&s))?;
            let bytes = name.as_bytes();
            if is_whiteout(&md) {
                self.remove(&d)?;
                continue;
            }
            if bytes == b".wh..wh..opq" {
                continue;
            }
            if let Some(target) = bytes.strip_prefix(b".wh.") {
                self.remove(&dst.join(std::ffi::OsStr::from_bytes(target)))?;
                continue;
            }
            self.entry(&s, &d, &md)?;
        }
        Ok(())
    }

    fn entry(&mut self, s: &Path, d: &Path, md: &fs::Metadata) -> Result<(), RootfsError> {
        let existing = fs::symlink_metadata(d).ok();
        if md.is_dir() {
            let keep = existing.as_ref().is_some_and(|e| e.is_dir()) && !is_opaque(s);
            if !keep {
                self.remove(d)?;
                fs::create_dir(d).map_err(err(d))?;
            }
            fs::set_permissions(d, fs::Permissions::from_mode(0o700)).map_err(err(d))?;
            self.owner_and_xattrs(s, d, md);
            self.dirs.insert(
                d.to_path_buf(),
                DirMeta {
                    mode: md.mode() & 0o7777,
                    atime: (md.atime(), md.atime_nsec()),
                    mtime: (md.mtime(), md.mtime_nsec()),
                },
            );
            return self.dir_contents(s, d);
        }
        if existing.is_some() {
            self.remove(d)?;
        }
        let ft = md.file_type();
        if ft.is_symlink() {
            let target = fs::read_link(s).map_err(err(s))?;
            std::os::unix::fs::symlink(&target, d).map_err(err(d))?;
        } else if ft.is_file() {
            let key = (md.dev(), md.ino());
            if md.nlink() > 1 {
                if let Some(first) = self.links.get(&key) {
                    if fs::hard_link(first, d).is_ok() {
                        return Ok(());
                    }
                }
            }
            copy_data(s, d)?;
            if md.nlink() > 1 {
                self.links.insert(key, d.to_path_buf());
            }
        } else {
            let c = cp(d);
            // SAFETY: valid path; mknod of a fifo, socket or device node (devices only work
            // where the caller may create them).
            if unsafe { libc::mknod(c.as_ptr(), md.mode(), md.rdev()) } < 0 {
                let e = std::io::Error::last_os_error();
                if ft.is_char_device() || ft.is_block_device() {
                    // Devices cannot be made rootless; containers get theirs in /dev.
                    return Ok(());
                }
                return Err(err(d)(e));
            }
        }
        self.owner_and_xattrs(s, d, md);
        if !ft.is_symlink() {
            fs::set_permissions(d, fs::Permissions::from_mode(md.mode() & 0o7777))
                .map_err(err(d))?;
        }
        set_times(
            d,
            (md.atime(), md.atime_nsec()),
            (md.mtime(), md.mtime_nsec()),
        );
        Ok(())
    }

    fn owner_and_xattrs(&self, s: &Path, d: &Path, md: &fs::Metadata) {
        let c = cp(d);
        // SAFETY: valid path; failure (EPERM when rootless) leaves the caller as owner.
        unsafe { libc::lchown(c.as_ptr(), md.uid(), md.gid()) };
        copy_xattrs(s, d);
    }

    /// Applies directory modes and times, deepest first.
    fn finish(self) -> Result<(), RootfsError> {
        for (d, m) in self.dirs.iter().rev() {
            fs::set_permissions(d, fs::Permissions::from_mode(m.mode)).map_err(err(d))?;
            set_times(d, m.atime, m.mtime);
        }
        Ok(())
    }
}

fn set_times(d: &Path, atime: (i64, i64), mtime: (i64, i64)) {
    let c = cp(d);
    let ts = [
        libc::timespec {
            tv_sec: atime.0,
            tv_nsec: atime.1,
        },
        libc::timespec {
            tv_sec: mtime.0,
            tv_nsec: mtime.1,
        },
    ];
    // SAFETY: valid path and a two-element timespec array.
    unsafe {
        libc::utimensat(
            libc::AT_FDCWD,
            c.as_ptr(),
            ts.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
}

fn copy_xattrs(s: &Path, d: &Path) {
    let (cs, cd) = (cp(s), cp(d));
    let mut names = vec![0u8; 4096];
    // SAFETY: valid path and buffer.
    let n = unsafe { libc::llistxattr(cs.as_ptr(), names.as_mut_ptr().cast(), names.len()) };
    if n <= 0 {
        return;
    }
    for name in names[..n as usize]
        .split(|b| *b == 0)
        .filter(|n| !n.is_empty())
    {
        if name.starts_with(b"user.overlay.") || name.starts_with(b"trusted.overlay.") {
            continue;
        }
        let Ok(cname) = CString::new(name) else {
            continue;
        };
        let mut val = vec![0u8; 65536];
        // SAFETY: valid path, name and buffer.
        let len = unsafe {
            libc::lgetxattr(
                cs.as_ptr(),
                cname.as_ptr(),
                val.as_mut_ptr().cast(),
                val.len(),
            )
        };
        if len < 0 {
            continue;
        }
        // SAFETY: valid path, name and value; failures (EPERM for trusted/security) are skipped.
        unsafe {
            libc::lsetxattr(
                cd.as_ptr(),
                cname.as_ptr(),
                val.as_ptr().cast(),
                len as usize,
                0,
            )
        };
    }
}

/// Copies a regular file's data: a reflink when the filesystem shares extents, else
/// `copy_file_range`, else read/write.
fn copy_data(s: &Path, d: &Path) -> Result<(), RootfsError> {
    let mut src = fs::File::open(s).map_err(|e| RootfsError::Copy {
        path: s.to_path_buf(),
        source: e,
    })?;
    let mut dst = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(d)
        .map_err(err(d))?;
    // SAFETY: FICLONE takes the source descriptor as its argument.
    if unsafe { libc::ioctl(dst.as_raw_fd(), FICLONE as _, src.as_raw_fd()) } == 0 {
        return Ok(());
    }
    loop {
        // SAFETY: both descriptors are open; NULL offsets use and advance the file offsets.
        let n = unsafe {
            libc::copy_file_range(
                src.as_raw_fd(),
                std::ptr::null_mut(),
                dst.as_raw_fd(),
                std::ptr::null_mut(),
                1 << 30,
                0,
            )
        };
        if n == 0 {
            return Ok(());
        }
        if n < 0 {
            let e = std::io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EXDEV)
                | Some(libc::EINVAL)
                | Some(libc::ENOSYS)
                | Some(libc::EOPNOTSUPP) => break,
                Some(libc::EINTR) => continue,
                _ => return Err(err(d)(e)),
            }
        }
    }
    let mut buf = Vec::new();
    src.read_to_end(&mut buf).map_err(err(s))?;
    std::io::Write::write_all(&mut dst, &buf).map_err(err(d))
}

/// Copies layers (lowest first) into `dest`, an existing directory.
pub fn copy_layers(lower: &[PathBuf], dest: &Path) -> Result<(), RootfsError> {
    let mut c = Copier::new();
    for l in lower {
        c.layer(l, dest)?;
    }
    if let Some(top) = lower.last() {
        if let Ok(md) = fs::metadata(top) {
            c.dirs.insert(
                dest.to_path_buf(),
                DirMeta {
                    mode: md.mode() & 0o7777,
                    atime: (md.atime(), md.atime_nsec()),
                    mtime: (md.mtime(), md.mtime_nsec()),
                },
            );
        }
    }
    c.finish()
}

/// Whether `layers.upper` holds a complete vfs copy (else it is an overlay's writable layer,
/// or nothing was launched yet).
pub fn is_full_copy(layers: &Layers) -> bool {
    layers.work.join(MARKER).exists()
}

/// The vfs driver: makes `layers.upper` a full copy of the merged layers (once; a marker in
/// the work directory says the copy is complete, so a half-made copy is redone).
pub fn prepare(layers: &Layers) -> Result<(), RootfsError> {
    let marker = layers.work.join(MARKER);
    if marker.exists() {
        return Ok(());
    }
    for e in fs::read_dir(&layers.upper).map_err(err(&layers.upper))? {
        let e = e.map_err(err(&layers.upper))?;
        remove_any(&e.path())?;
    }
    copy_layers(&layers.lower, &layers.upper)?;
    fs::write(&marker, b"").map_err(err(&marker))
}

/// The layers (lowest first) that contribute to the merged view of the directory `rel`,
/// each as the path of `rel` in it; empty when `rel` is not a directory in the merged view.
pub fn merged_dir_sources(layer_roots: &[PathBuf], rel: &Path) -> Vec<PathBuf> {
    let comps: Vec<_> = rel
        .components()
        .filter(|c| matches!(c, std::path::Component::Normal(_)))
        .collect();
    let mut out = Vec::new();
    for root in layer_roots.iter().rev() {
        let mut p = root.clone();
        let mut present = true;
        let mut hides_lower = false;
        for c in &comps {
            p.push(c);
            match fs::symlink_metadata(&p) {
                Err(_) => {
                    // Absent here; an OCI-style `.wh.NAME` hides it in lower layers too.
                    let mut wh = p.clone();
                    wh.set_file_name(format!(".wh.{}", c.as_os_str().to_string_lossy()));
                    hides_lower |= wh.exists();
                    present = false;
                    break;
                }
                Ok(md) if md.is_dir() => hides_lower |= is_opaque(&p),
                // A whiteout, file or symlink shadows the path in every lower layer.
                Ok(_) => {
                    present = false;
                    hides_lower = true;
                    break;
                }
            }
        }
        if present {
            out.push(p);
        }
        if hides_lower {
            break;
        }
    }
    out.reverse();
    out
}

/// Copies the merged content of directory `rel` of the layers (lowest first) into `dest`
/// (an existing, empty directory), taking the directory's own mode and owner. Returns false
/// when the merged view has no directory at `rel`.
pub fn copy_merged_dir(
    layer_roots: &[PathBuf],
    rel: &Path,
    dest: &Path,
) -> Result<bool, RootfsError> {
    let sources = merged_dir_sources(layer_roots, rel);
    let Some(top) = sources.last().cloned() else {
        return Ok(false);
    };
    let mut c = Copier::new();
    for s in &sources {
        c.layer(s, dest)?;
    }
    let md = fs::symlink_metadata(&top).map_err(err(&top))?;
    c.owner_and_xattrs(&top, dest, &md);
    c.dirs.insert(
        dest.to_path_buf(),
        DirMeta {
            mode: md.mode() & 0o7777,
            atime: (md.atime(), md.atime_nsec()),
            mtime: (md.mtime(), md.mtime_nsec()),
        },
    );
    c.finish()?;
    Ok(true)
}

/// What the merged view of the layers (lowest first) has at `rel`: None when absent (or
/// deleted), else the metadata of the topmost entry (not following a final symlink).
pub fn merged_lookup(layer_roots: &[PathBuf], rel: &Path) -> Option<fs::Metadata> {
    let parent = rel.parent().unwrap_or(Path::new(""));
    let name = rel.file_name()?;
    let sources = merged_dir_sources(layer_roots, parent);
    for s in sources.iter().rev() {
        let p = s.join(name);
        if let Ok(md) = fs::symlink_metadata(&p) {
            if is_whiteout(&md) {
                return None;
            }
            return Some(md);
        }
        let mut wh = name.to_os_string();
        wh = std::ffi::OsString::from(format!(".wh.{}", wh.to_string_lossy()));
        if s.join(wh).exists() {
            return None;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layers(base: &Path) -> Vec<PathBuf> {
        let (l1, l2) = (base.join("l1"), base.join("l2"));
        fs::create_dir_all(l1.join("d/old/sub")).unwrap();
        fs::write(l1.join("d/keep"), "keep").unwrap();
        fs::write(l1.join("d/old/a"), "a").unwrap();
        fs::write(l1.join("d/old/sub/c"), "c").unwrap();
        fs::write(l1.join("d/same"), "one").unwrap();
        fs::set_permissions(l1.join("d/old/sub"), fs::Permissions::from_mode(0o555)).unwrap();
        std::os::unix::fs::symlink("same", l1.join("d/link")).unwrap();
        fs::create_dir_all(l2.join("d/old")).unwrap();
        // OCI-style markers (a char 0/0 needs privileges a unit test may lack).
        fs::write(l2.join("d/.wh.keep"), "").unwrap();
        fs::write(l2.join("d/old/.wh..wh..opq"), "").unwrap();
        fs::write(l2.join("d/old/b"), "b").unwrap();
        fs::write(l2.join("d/same"), "two").unwrap();
        vec![l1, l2]
    }

    fn listing(root: &Path) -> Vec<String> {
        let mut out = Vec::new();
        fn walk(root: &Path, p: &Path, out: &mut Vec<String>) {
            let mut es: Vec<_> = fs::read_dir(p).unwrap().flatten().collect();
            es.sort_by_key(|e| e.file_name());
            for e in es {
                let path = e.path();
                out.push(path.strip_prefix(root).unwrap().display().to_string());
                if e.file_type().unwrap().is_dir() {
                    walk(root, &path, out);
                }
            }
        }
        walk(root, root, &mut out);
        out
    }

    #[test]
    fn copies_with_whiteouts_and_opaque_dirs() {
        let base =
            std::env::temp_dir().join(format!("rbvfs-{}", &super::super::random_hex()[..12]));
        let ls = layers(&base);
        let dest = base.join("dest");
        fs::create_dir(&dest).unwrap();
        copy_layers(&ls, &dest).unwrap();
        assert_eq!(
            listing(&dest),
            ["d", "d/link", "d/old", "d/old/b", "d/same"]
        );
        assert_eq!(fs::read_to_string(dest.join("d/same")).unwrap(), "two");
        assert_eq!(
            fs::read_link(dest.join("d/link")).unwrap(),
            PathBuf::from("same")
        );
        // The copy is not linked to the layers.
        fs::write(dest.join("d/same"), "changed").unwrap();
        assert_eq!(fs::read_to_string(ls[1].join("d/same")).unwrap(), "two");

        assert_eq!(
            merged_dir_sources(&ls, Path::new("d/old")),
            vec![ls[1].join("d/old")]
        );
        assert_eq!(merged_dir_sources(&ls, Path::new("d")).len(), 2);
        assert!(merged_dir_sources(&ls, Path::new("d/old/sub")).is_empty());
        assert!(merged_lookup(&ls, Path::new("d/keep")).is_none());
        assert!(merged_lookup(&ls, Path::new("d/same")).unwrap().is_file());

        let seed = base.join("seed");
        fs::create_dir(&seed).unwrap();
        assert!(copy_merged_dir(&ls, Path::new("d/old"), &seed).unwrap());
        assert_eq!(listing(&seed), ["b"]);
        assert!(!copy_merged_dir(&ls, Path::new("nope"), &seed).unwrap());
        let _ = crate::rootfs::remove_tree(&base);
    }
}

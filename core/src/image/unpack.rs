//! Secure layer unpacking: a tar stream becomes a directory in the layer format described in
//! [`super`] (overlay char 0/0 whiteouts, `user.overlay.opaque=y` opaque directories).
//!
//! Nothing outside the target can be created, changed or linked:
//! * entry names are cleaned lexically; a `..` that climbs above the root is an error, a leading
//!   `/` is dropped (as `tar -x` does);
//! * every parent directory is opened with `openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)`
//!   from the target, so a symlink in the layer (absolute, `..`-laden or looping) resolves
//!   inside the target or fails; the last component is never followed (`O_NOFOLLOW`,
//!   `AT_SYMLINK_NOFOLLOW`, `O_EXCL`);
//! * a hard link's target is resolved the same way and must exist in this layer;
//! * device nodes are created only as real root; rootless they are skipped with one note;
//! * paths longer than `PATH_MAX` fail with a clear error (no recursion anywhere, so a
//!   10 000-deep path cannot overflow a stack);
//! * `user.overlay.*`/`trusted.overlay.*` xattrs from the tarball are dropped;
//! * a layer may hold at most [`Limits::max_entries`] entries, and its uncompressed tar stream
//!   may be at most [`Limits::max_size`] bytes (enforced where it is decompressed, see
//!   [`super::store::spawn_layer_reader`]): a tar bomb stops with a clear error instead of
//!   filling the disk. `ROOTBOX_MAX_LAYER_SIZE` and `ROOTBOX_MAX_LAYER_ENTRIES` change them.
//!
//! Modes (setuid/setgid included), mtimes (directories after their content) and xattrs are
//! kept where the kernel allows. Ownership follows [`Ownership`]: kept directly as real root,
//! squashed to the caller with a single-id mapping, or recorded as [`OwnerOp`]s that
//! [`super::userns`] applies inside a user namespace with the subordinate-id mapping.

use std::collections::{BTreeSet, HashMap};
use std::ffi::{CStr, CString};
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;

use oci_spec::runtime::LinuxIdMapping;

use crate::idmap;
use crate::sys;

/// Prefix of an OCI whiteout file.
pub const WHITEOUT_PREFIX: &[u8] = b".wh.";
/// Name of an OCI opaque-directory marker.
pub const OPAQUE_MARKER: &[u8] = b".wh..wh..opq";
/// The xattr that marks an opaque directory for overlay mounted with `userxattr`.
pub const OPAQUE_XATTR: &CStr = c"user.overlay.opaque";
/// Longest path (bytes) an entry may have: the kernel's `PATH_MAX` less the NUL.
pub const MAX_PATH: usize = 4095;

/// How file owners from the tarball are applied.
#[derive(Debug, Clone)]
pub enum Ownership {
    /// Real root with the identity mapping: `chown` directly.
    Keep,
    /// Single-id mapping: everything belongs to the caller (the container's root).
    Squash,
    /// Subordinate ids: recorded as [`OwnerOp`]s to apply inside a user namespace with these
    /// mappings (ids not mapped are squashed to 0, with a note).
    Record {
        uids: Vec<LinuxIdMapping>,
        gids: Vec<LinuxIdMapping>,
    },
}

/// Environment variable that changes [`Limits::max_size`] (a size: `64g`, `512m`, bytes).
pub const MAX_SIZE_ENV: &str = "ROOTBOX_MAX_LAYER_SIZE";
/// Environment variable that changes [`Limits::max_entries`].
pub const MAX_ENTRIES_ENV: &str = "ROOTBOX_MAX_LAYER_ENTRIES";

/// Bounds on what one layer may unpack to. The defaults are far above any real image
/// (the largest public layers are tens of GB and a few hundred thousand files) and far below
/// what a decompression bomb would need to fill a disk or exhaust its inodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Bytes of the uncompressed tar stream.
    pub max_size: u64,
    /// Tar entries (files, directories, links, whiteouts, ...).
    pub max_entries: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_size: 256 << 30,
            max_entries: 10_000_000,
        }
    }
}

impl Limits {
    /// The defaults, changed by `ROOTBOX_MAX_LAYER_SIZE` / `ROOTBOX_MAX_LAYER_ENTRIES`.
    pub fn from_env() -> Result<Limits, UnpackError> {
        Limits::from_values(
            std::env::var(MAX_SIZE_ENV).ok().as_deref(),
            std::env::var(MAX_ENTRIES_ENV).ok().as_deref(),
        )
    }

    /// The defaults, changed by these values (as the environment variables would give them).
    pub fn from_values(size: Option<&str>, entries: Option<&str>) -> Result<Limits, UnpackError> {
        let mut l = Limits::default();
        if let Some(v) = size.filter(|v| !v.trim().is_empty()) {
            let n = crate::cgroup::resources::parse_size(v).map_err(|reason| {
                UnpackError::BadLimit {
                    var: MAX_SIZE_ENV,
                    value: v.to_string(),
                    reason,
                }
            })?;
            if n <= 0 {
                return Err(UnpackError::BadLimit {
                    var: MAX_SIZE_ENV,
                    value: v.to_string(),
                    reason: "the limit must be above zero".into(),
                });
            }
            l.max_size = n as u64;
        }
        if let Some(v) = entries.filter(|v| !v.trim().is_empty()) {
            l.max_entries = match v.trim().parse::<u64>() {
                Ok(n) if n > 0 => n,
                _ => {
                    return Err(UnpackError::BadLimit {
                        var: MAX_ENTRIES_ENV,
                        value: v.to_string(),
                        reason: "expected a whole number of entries above zero".into(),
                    })
                }
            };
        }
        Ok(l)
    }
}

/// The error a layer reader returns (inside an [`io::Error`]) when the uncompressed stream
/// goes over [`Limits::max_size`]; the store turns it into [`UnpackError::TooLarge`].
#[derive(Debug, Clone, Copy)]
pub struct SizeLimitHit {
    pub limit: u64,
}

impl std::fmt::Display for SizeLimitHit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the uncompressed layer exceeds the limit of {} bytes",
            self.limit
        )
    }
}

impl std::error::Error for SizeLimitHit {}

/// Options of one unpack.
#[derive(Debug, Clone)]
pub struct UnpackOptions {
    pub ownership: Ownership,
    /// Create device nodes (only possible as real root outside a user namespace).
    pub devices: bool,
    pub limits: Limits,
}

impl UnpackOptions {
    /// What the calling process can do: real root keeps everything, others squash or record.
    pub fn for_caller(uids: &[LinuxIdMapping], gids: &[LinuxIdMapping]) -> UnpackOptions {
        // SAFETY: geteuid cannot fail.
        let root = unsafe { libc::geteuid() } == 0;
        let single = matches!(uids, [m] if m.size() == 1);
        let ownership = if root && !single {
            Ownership::Keep
        } else if single {
            Ownership::Squash
        } else {
            Ownership::Record {
                uids: uids.to_vec(),
                gids: gids.to_vec(),
            }
        };
        UnpackOptions {
            ownership,
            devices: root && !single,
            limits: Limits::default(),
        }
    }
}

/// An ownership change to make inside the user namespace (see [`super::userns`]).
#[derive(Debug, Clone)]
pub struct OwnerOp {
    /// Path relative to the layer root (resolved in the root, last component not followed).
    pub path: CString,
    pub uid: u32,
    pub gid: u32,
    /// A mode to set again after `chown` (which clears setuid/setgid on files).
    pub mode: Option<u32>,
    /// Privileged xattrs (file capabilities) to set as the namespace's root.
    pub xattrs: Vec<(CString, Vec<u8>)>,
}

/// What an unpack did.
#[derive(Debug, Default)]
pub struct Outcome {
    pub ops: Vec<OwnerOp>,
    /// Things worth telling the user once (skipped devices, dropped xattrs, ...).
    pub notes: Vec<String>,
    pub entries: u64,
    /// Bytes of regular file content written.
    pub size: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    #[error("layer entry {entry}: {reason}")]
    Entry { entry: String, reason: String },
    #[error("layer entry {entry}: {op}: {source}")]
    Sys {
        entry: String,
        op: String,
        source: io::Error,
    },
    #[error("cannot read the layer as a tar archive: {0}")]
    Read(io::Error),
    #[error("cannot open the unpack target {path}: {source}")]
    Target {
        path: std::path::PathBuf,
        source: io::Error,
    },
    #[error(
        "the layer has more than {limit} entries, the limit (set {} to change it)",
        MAX_ENTRIES_ENV
    )]
    TooManyEntries { limit: u64 },
    #[error(
        "the layer's uncompressed content exceeds the limit of {limit} bytes ({}; set {} to change it)",
        crate::image::store::human_size(*limit),
        MAX_SIZE_ENV
    )]
    TooLarge { limit: u64 },
    #[error("invalid {var}={value:?}: {reason}")]
    BadLimit {
        var: &'static str,
        value: String,
        reason: String,
    },
}

impl UnpackError {
    /// The read error behind this one, when the input stream failed (e.g. a corrupt blob).
    pub fn read_error(&self) -> Option<&io::Error> {
        match self {
            UnpackError::Read(e) => Some(e),
            _ => None,
        }
    }
}

fn errno_err(e: i32) -> io::Error {
    io::Error::from_raw_os_error(e)
}

fn last_errno() -> i32 {
    sys::errno()
}

/// Splits and cleans a tar path: empty and `.` components dropped, `..` pops (an error when it
/// climbs above the root), a leading `/` ignored.
pub fn clean(path: &[u8]) -> Result<Vec<&[u8]>, String> {
    let mut comps: Vec<&[u8]> = Vec::new();
    for c in path.split(|b| *b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => {
                if comps.pop().is_none() {
                    return Err("the path climbs out of the layer root with \"..\"".into());
                }
            }
            c => comps.push(c),
        }
    }
    let len: usize = comps.iter().map(|c| c.len() + 1).sum();
    if len > MAX_PATH {
        return Err(format!(
            "the path is too long or too deep ({} components, {} bytes; the limit is {} bytes)",
            comps.len(),
            len,
            MAX_PATH
        ));
    }
    Ok(comps)
}

fn join(comps: &[&[u8]]) -> Vec<u8> {
    let mut v = Vec::with_capacity(comps.iter().map(|c| c.len() + 1).sum());
    for (i, c) in comps.iter().enumerate() {
        if i > 0 {
            v.push(b'/');
        }
        v.extend_from_slice(c);
    }
    v
}

fn cstring(b: &[u8]) -> Result<CString, String> {
    CString::new(b).map_err(|_| "the name contains a NUL byte".to_string())
}

/// Opens a directory inside `root` with every symlink resolved in the root.
pub fn open_dir_in_root(root: RawFd, path: &CStr) -> Result<OwnedFd, i32> {
    let p = if path.is_empty() { c"." } else { path };
    let fd = sys::openat2(
        root,
        p,
        (libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC) as u64,
        sys::RESOLVE_IN_ROOT | sys::RESOLVE_NO_MAGICLINKS,
    )?;
    // SAFETY: openat2 returned a new descriptor that we now own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Creates the directory `comps` inside `root` like `mkdir -p`, resolving every symlink met on
/// the way by hand, clamped to `root` (an absolute target restarts at `root`, `..` stops
/// there), so a dangling symlink leads to directories created inside the root — never outside.
/// Each step is an `openat`/`mkdirat` relative to a directory descriptor with `O_NOFOLLOW`.
pub fn mkdir_p_in_root(root: RawFd, comps: &[&[u8]]) -> Result<OwnedFd, i32> {
    const MAX_LINKS: usize = 40;
    let dup = |fd: RawFd| -> Result<OwnedFd, i32> {
        // SAFETY: duplicating a valid descriptor.
        let d = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 0) };
        if d < 0 {
            Err(last_errno())
        } else {
            // SAFETY: a new descriptor we own.
            Ok(unsafe { OwnedFd::from_raw_fd(d) })
        }
    };
    // Components still to walk, last one on top.
    let mut todo: Vec<Vec<u8>> = comps.iter().rev().map(|c| c.to_vec()).collect();
    let mut path: Vec<Vec<u8>> = Vec::new();
    let mut cur = dup(root)?;
    let mut links = 0;
    while let Some(c) = todo.pop() {
        match c.as_slice() {
            b"" | b"." => continue,
            b".." => {
                path.pop();
                let refs: Vec<&[u8]> = path.iter().map(Vec::as_slice).collect();
                let p = CString::new(join(&refs)).map_err(|_| libc::EINVAL)?;
                cur = open_dir_in_root(root, &p)?;
                continue;
            }
            _ => {}
        }
        let name = CString::new(c.clone()).map_err(|_| libc::EINVAL)?;
        let st = match fstatat_nofollow(cur.as_raw_fd(), &name) {
            Ok(st) => Some(st),
            Err(libc::ENOENT) => None,
            Err(e) => return Err(e),
        };
        match st.map(|s| s.st_mode & libc::S_IFMT) {
            None => {
                // SAFETY: valid NUL-terminated name.
                if unsafe { libc::mkdirat(cur.as_raw_fd(), name.as_ptr(), 0o755) } < 0
                    && last_errno() != libc::EEXIST
                {
                    return Err(last_errno());
                }
            }
            Some(libc::S_IFDIR) => {}
            Some(libc::S_IFLNK) => {
                links += 1;
                if links > MAX_LINKS {
                    return Err(libc::ELOOP);
                }
                let mut buf = vec![0u8; 4096];
                // SAFETY: the buffer is valid for its length.
                let n = unsafe {
                    libc::readlinkat(
                        cur.as_raw_fd(),
                        name.as_ptr(),
                        buf.as_mut_ptr().cast(),
                        buf.len(),
                    )
                };
                if n < 0 {
                    return Err(last_errno());
                }
                buf.truncate(n as usize);
                if buf.first() == Some(&b'/') {
                    path.clear();
                    cur = dup(root)?;
                }
                for part in buf.split(|b| *b == b'/').rev() {
                    todo.push(part.to_vec());
                }
                continue;
            }
            Some(_) => return Err(libc::ENOTDIR),
        }
        // SAFETY: valid NUL-terminated name; never through a symlink.
        let fd = unsafe {
            libc::openat(
                cur.as_raw_fd(),
                name.as_ptr(),
                libc::O_PATH | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            )
        };
        if fd < 0 {
            return Err(last_errno());
        }
        // SAFETY: a descriptor we just opened.
        cur = unsafe { OwnedFd::from_raw_fd(fd) };
        path.push(c);
    }
    Ok(cur)
}

/// `setxattr` on the inode an `O_PATH` descriptor refers to (via its /proc magic link).
pub fn set_xattr_fd(fd: RawFd, name: &CStr, value: &[u8]) -> Result<(), i32> {
    let mut p = sys::StackPath::new();
    sys::proc_fd_path(&mut p, fd)?;
    // SAFETY: valid NUL-terminated strings and a buffer with its length.
    let r = unsafe {
        libc::setxattr(
            p.as_cstr().as_ptr(),
            name.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    if r < 0 {
        Err(last_errno())
    } else {
        Ok(())
    }
}

/// `chmod` of `name` under `dir` without following a symlink there.
pub fn chmod_nofollow(dir: RawFd, name: &CStr, mode: u32) -> Result<(), i32> {
    // SAFETY: valid NUL-terminated string.
    let fd = unsafe {
        libc::openat(
            dir,
            name.as_ptr(),
            libc::O_PATH | libc::O_NOFOLLOW | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(last_errno());
    }
    // SAFETY: a descriptor we just opened.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut st: libc::stat = unsafe_zeroed_stat();
    // SAFETY: fstat fills `st`.
    if unsafe { libc::fstat(fd.as_raw_fd(), &mut st) } < 0 {
        return Err(last_errno());
    }
    if st.st_mode & libc::S_IFMT == libc::S_IFLNK {
        return Ok(());
    }
    let mut p = sys::StackPath::new();
    sys::proc_fd_path(&mut p, fd.as_raw_fd())?;
    // SAFETY: valid NUL-terminated path.
    if unsafe { libc::chmod(p.as_cstr().as_ptr(), mode) } < 0 {
        return Err(last_errno());
    }
    Ok(())
}

fn unsafe_zeroed_stat() -> libc::stat {
    // SAFETY: `stat` is plain old data; all-zero is a valid value.
    unsafe { std::mem::zeroed() }
}

fn fstatat_nofollow(dir: RawFd, name: &CStr) -> Result<libc::stat, i32> {
    let mut st = unsafe_zeroed_stat();
    // SAFETY: valid string, `st` is writable.
    let r = unsafe { libc::fstatat(dir, name.as_ptr(), &mut st, libc::AT_SYMLINK_NOFOLLOW) };
    if r < 0 {
        Err(last_errno())
    } else {
        Ok(st)
    }
}

fn timespecs(mtime: (i64, i64)) -> [libc::timespec; 2] {
    let ts = libc::timespec {
        tv_sec: mtime.0 as libc::time_t,
        tv_nsec: mtime.1 as libc::c_long,
    };
    [ts, ts]
}

struct DirMeta {
    path: CString,
    mode: u32,
    mtime: (i64, i64),
    uid: u32,
    gid: u32,
}

struct Unpacker<'o> {
    root: OwnedFd,
    opts: &'o UnpackOptions,
    cache: HashMap<Vec<u8>, OwnedFd>,
    dirs: Vec<DirMeta>,
    out: Outcome,
    notes: BTreeSet<String>,
    devices_skipped: u64,
    first_device: Option<String>,
    buf: Vec<u8>,
    stale: bool,
}

/// Per-entry data gathered from the header and PAX records.
struct Meta {
    mode: u32,
    uid: u64,
    gid: u64,
    mtime: (i64, i64),
    xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

fn shorten(s: &str) -> String {
    if s.len() > 120 {
        let mut end = 100;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        format!("{:?}… ({} bytes)", &s[..end], s.len())
    } else {
        format!("{s:?}")
    }
}

/// Unpacks the tar stream `src` into the existing directory `target`.
pub fn unpack<R: Read>(
    src: &mut R,
    target: &Path,
    opts: &UnpackOptions,
) -> Result<Outcome, UnpackError> {
    let c =
        CString::new(target.as_os_str().as_encoded_bytes()).map_err(|_| UnpackError::Target {
            path: target.to_path_buf(),
            source: io::Error::new(io::ErrorKind::InvalidInput, "NUL in path"),
        })?;
    // SAFETY: valid NUL-terminated path.
    let fd = unsafe {
        libc::open(
            c.as_ptr(),
            libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(UnpackError::Target {
            path: target.to_path_buf(),
            source: io::Error::last_os_error(),
        });
    }
    // SAFETY: a descriptor we just opened.
    let root = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut u = Unpacker {
        root,
        opts,
        cache: HashMap::new(),
        dirs: Vec::new(),
        out: Outcome::default(),
        notes: BTreeSet::new(),
        devices_skipped: 0,
        first_device: None,
        buf: vec![0u8; 256 * 1024],
        stale: false,
    };
    let mut ar = tar::Archive::new(src);
    let entries = ar.entries().map_err(UnpackError::Read)?;
    for entry in entries {
        let mut entry = entry.map_err(UnpackError::Read)?;
        u.entry(&mut entry)?;
    }
    u.finish()
}

impl Unpacker<'_> {
    fn note(&mut self, s: String) {
        self.notes.insert(s);
    }

    fn entry<R: Read>(&mut self, e: &mut tar::Entry<R>) -> Result<(), UnpackError> {
        if self.stale {
            self.cache.clear();
            self.stale = false;
        }
        let raw = e.path_bytes().into_owned();
        let shown = shorten(&String::from_utf8_lossy(&raw));
        let fail = |reason: String| UnpackError::Entry {
            entry: shown.clone(),
            reason,
        };
        let comps = clean(&raw).map_err(fail)?;
        self.out.entries += 1;
        if self.out.entries > self.opts.limits.max_entries {
            return Err(UnpackError::TooManyEntries {
                limit: self.opts.limits.max_entries,
            });
        }
        let kind = e.header().entry_type();
        let meta = self
            .meta(e)
            .map_err(|err| fail(format!("bad header: {err}")))?;

        // Whiteouts are recognised by name, whatever their type.
        if let Some(base) = comps.last() {
            if *base == OPAQUE_MARKER {
                return self.opaque(&comps[..comps.len() - 1], &shown);
            }
            if base.starts_with(b".wh..wh.") {
                // AUFS metadata (.wh..wh.plnk, .wh..wh.aufs): not content, skipped as Docker does.
                return Ok(());
            }
            if let Some(name) = base.strip_prefix(WHITEOUT_PREFIX) {
                if name.is_empty() || name == b"." || name == b".." {
                    return Err(fail("invalid whiteout name".into()));
                }
                return self.whiteout(&comps[..comps.len() - 1], name, &shown);
            }
        }
        use tar::EntryType as T;
        match kind {
            T::Directory => self.directory(&comps, &meta, &shown),
            _ if comps.is_empty() => Err(fail("a non-directory entry names the layer root".into())),
            T::Regular | T::Continuous | T::GNUSparse => self.file(e, &comps, &meta, &shown),
            T::Symlink => {
                let target = e
                    .link_name_bytes()
                    .ok_or_else(|| fail("symlink without a target".into()))?
                    .into_owned();
                self.symlink(&comps, &target, &meta, &shown)
            }
            T::Link => {
                let target = e
                    .link_name_bytes()
                    .ok_or_else(|| fail("hard link without a target".into()))?
                    .into_owned();
                self.hardlink(&comps, &target, &shown)
            }
            T::Char | T::Block => {
                let major = e.header().device_major().ok().flatten().unwrap_or(0);
                let minor = e.header().device_minor().ok().flatten().unwrap_or(0);
                self.device(&comps, kind == T::Char, major, minor, &meta, &shown)
            }
            T::Fifo => self.fifo(&comps, &meta, &shown),
            T::XGlobalHeader | T::XHeader | T::GNULongName | T::GNULongLink => Ok(()),
            other => {
                self.note(format!(
                    "skipped entries of unsupported tar type {:?}",
                    other.as_byte() as char
                ));
                Ok(())
            }
        }
    }

    fn meta<R: Read>(&mut self, e: &mut tar::Entry<R>) -> io::Result<Meta> {
        let h = e.header();
        let mut m = Meta {
            mode: h.mode().unwrap_or(0o644) & 0o7777,
            uid: h.uid().unwrap_or(0),
            gid: h.gid().unwrap_or(0),
            mtime: (h.mtime().unwrap_or(0) as i64, 0),
            xattrs: Vec::new(),
        };
        if let Some(pax) = e.pax_extensions()? {
            for ext in pax {
                let ext = ext?;
                let key = ext.key_bytes();
                let val = ext.value_bytes();
                match key {
                    b"uid" => {
                        if let Some(v) = std::str::from_utf8(val).ok().and_then(|s| s.parse().ok())
                        {
                            m.uid = v;
                        }
                    }
                    b"gid" => {
                        if let Some(v) = std::str::from_utf8(val).ok().and_then(|s| s.parse().ok())
                        {
                            m.gid = v;
                        }
                    }
                    b"mtime" => {
                        if let Some(t) = std::str::from_utf8(val).ok().and_then(parse_pax_time) {
                            m.mtime = t;
                        }
                    }
                    k if k.starts_with(b"SCHILY.xattr.") => {
                        m.xattrs.push((k[13..].to_vec(), val.to_vec()));
                    }
                    _ => {}
                }
            }
        }
        Ok(m)
    }

    /// The directory `comps` (created with its missing parents, mode 0755), opened `O_PATH`.
    fn dir(&mut self, comps: &[&[u8]], shown: &str) -> Result<RawFd, UnpackError> {
        if comps.is_empty() {
            return Ok(self.root.as_raw_fd());
        }
        let key = join(comps);
        if let Some(fd) = self.cache.get(&key) {
            return Ok(fd.as_raw_fd());
        }
        let sys_err = |op: &str, e: i32| UnpackError::Sys {
            entry: shown.to_string(),
            op: op.to_string(),
            source: errno_err(e),
        };
        let ck = cstring(&key).map_err(|r| UnpackError::Entry {
            entry: shown.to_string(),
            reason: r,
        })?;
        let fd = match open_dir_in_root(self.root.as_raw_fd(), &ck) {
            Ok(fd) => fd,
            Err(libc::ENOENT) => mkdir_p_in_root(self.root.as_raw_fd(), comps).map_err(|e| {
                sys_err(
                    &format!("creating parent {}", String::from_utf8_lossy(&key)),
                    e,
                )
            })?,
            Err(e) => {
                return Err(sys_err(
                    &format!("opening parent {}", String::from_utf8_lossy(&key)),
                    e,
                ))
            }
        };
        if self.cache.len() > 256 {
            self.cache.clear();
        }
        let raw = fd.as_raw_fd();
        self.cache.insert(key, fd);
        Ok(raw)
    }

    /// Removes what is at `name` (a whole tree for a directory) so something else can go there.
    /// With `keep_dir`, an existing directory stays and `true` is returned.
    fn make_room(&mut self, parent: RawFd, name: &CStr, keep_dir: bool) -> Result<bool, i32> {
        let st = match fstatat_nofollow(parent, name) {
            Ok(st) => st,
            Err(libc::ENOENT) => return Ok(false),
            Err(e) => return Err(e),
        };
        if st.st_mode & libc::S_IFMT == libc::S_IFDIR {
            if keep_dir {
                return Ok(true);
            }
            super::userns::remove_tree_at(parent, name)?;
            // Cached descriptors may point into what was just removed: dropped before the next
            // entry (not now: `parent` may be one of them).
            self.stale = true;
            return Ok(false);
        }
        // SAFETY: valid NUL-terminated name.
        if unsafe { libc::unlinkat(parent, name.as_ptr(), 0) } < 0 && last_errno() != libc::ENOENT {
            return Err(last_errno());
        }
        Ok(false)
    }

    fn split(&mut self, comps: &[&[u8]], shown: &str) -> Result<(RawFd, CString), UnpackError> {
        let (base, parents) = comps.split_last().ok_or_else(|| UnpackError::Entry {
            entry: shown.to_string(),
            reason: "empty name".into(),
        })?;
        let name = cstring(base).map_err(|r| UnpackError::Entry {
            entry: shown.to_string(),
            reason: r,
        })?;
        let parent = self.dir(parents, shown)?;
        Ok((parent, name))
    }

    /// Runs `create` (returning -1/errno on failure); on EEXIST clears the place and retries once.
    fn create_with_room(
        &mut self,
        parent: RawFd,
        name: &CStr,
        shown: &str,
        what: &str,
        mut create: impl FnMut() -> libc::c_int,
    ) -> Result<libc::c_int, UnpackError> {
        let sys_err = |e: i32| UnpackError::Sys {
            entry: shown.to_string(),
            op: what.to_string(),
            source: errno_err(e),
        };
        let r = create();
        if r >= 0 {
            return Ok(r);
        }
        let e = last_errno();
        if e != libc::EEXIST {
            return Err(sys_err(e));
        }
        self.make_room(parent, name, false).map_err(sys_err)?;
        let r = create();
        if r < 0 {
            return Err(sys_err(last_errno()));
        }
        Ok(r)
    }

    fn owner_ids(&mut self, meta: &Meta) -> (u32, u32) {
        let (uid, gid) = (meta.uid, meta.gid);
        if let Ownership::Record { uids, gids } = &self.opts.ownership {
            let ok = uid <= u32::MAX as u64
                && gid <= u32::MAX as u64
                && idmap::is_mapped(uids, uid as u32)
                && idmap::is_mapped(gids, gid as u32);
            if !ok {
                self.note(format!(
                    "some files are owned by ids outside the mapped range (e.g. {uid}:{gid}); they belong to the container's root instead"
                ));
                return (0, 0);
            }
        }
        (
            uid.min(u32::MAX as u64) as u32,
            gid.min(u32::MAX as u64) as u32,
        )
    }

    fn record_owner(
        &mut self,
        comps: &[&[u8]],
        meta: &Meta,
        file_mode: Option<u32>,
        privileged: Vec<(CString, Vec<u8>)>,
    ) {
        if !matches!(self.opts.ownership, Ownership::Record { .. }) {
            return;
        }
        let (uid, gid) = self.owner_ids(meta);
        if uid == 0 && gid == 0 && privileged.is_empty() {
            return;
        }
        // The layer's root itself (a tar's `./` entry) is ".": an empty path opens nothing.
        let joined = join(comps);
        let Ok(path) = CString::new(if joined.is_empty() {
            b".".to_vec()
        } else {
            joined
        }) else {
            return;
        };
        self.out.ops.push(OwnerOp {
            path,
            uid,
            gid,
            mode: file_mode.filter(|m| m & 0o6000 != 0),
            xattrs: privileged,
        });
    }

    /// Applies xattrs to the inode `fd` (any descriptor, `O_PATH` included); returns the
    /// privileged ones to be set in the user namespace.
    fn xattrs(&mut self, fd: RawFd, list: &[(Vec<u8>, Vec<u8>)]) -> Vec<(CString, Vec<u8>)> {
        let mut later = Vec::new();
        for (k, v) in list {
            let shown = String::from_utf8_lossy(k).into_owned();
            if k.starts_with(b"user.overlay.") || k.starts_with(b"trusted.overlay.") {
                self.note("dropped overlay xattrs found in the layer (a layer cannot set overlay metadata)".into());
                continue;
            }
            let Ok(name) = CString::new(k.clone()) else {
                continue;
            };
            let keep = matches!(self.opts.ownership, Ownership::Keep);
            if k.starts_with(b"user.") || keep {
                if let Err(e) = set_xattr_fd(fd, &name, v) {
                    self.note(format!("could not set xattr {shown}: {}", errno_err(e)));
                }
            } else if k == b"security.capability" {
                if matches!(self.opts.ownership, Ownership::Record { .. }) {
                    later.push((name, v.clone()));
                } else {
                    self.note("file capabilities (security.capability) dropped: they need a subordinate-id mapping or root".into());
                }
            } else {
                self.note(format!("skipped xattr {shown}: only root may set it"));
            }
        }
        later
    }

    fn file<R: Read>(
        &mut self,
        e: &mut tar::Entry<R>,
        comps: &[&[u8]],
        meta: &Meta,
        shown: &str,
    ) -> Result<(), UnpackError> {
        let (parent, name) = self.split(comps, shown)?;
        let fd = self.create_with_room(parent, &name, shown, "creating the file", || {
            // SAFETY: valid NUL-terminated name.
            unsafe {
                libc::openat(
                    parent,
                    name.as_ptr(),
                    libc::O_WRONLY
                        | libc::O_CREAT
                        | libc::O_EXCL
                        | libc::O_NOFOLLOW
                        | libc::O_CLOEXEC,
                    0o600,
                )
            }
        })?;
        // SAFETY: a descriptor we just opened.
        let mut f = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) });
        let sys_err = |op: &str, err: io::Error| UnpackError::Sys {
            entry: shown.to_string(),
            op: op.to_string(),
            source: err,
        };
        loop {
            let n = match e.read(&mut self.buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(err) => return Err(UnpackError::Read(err)),
            };
            f.write_all(&self.buf[..n])
                .map_err(|err| sys_err("writing", err))?;
            self.out.size += n as u64;
        }
        let raw = f.as_raw_fd();
        if matches!(self.opts.ownership, Ownership::Keep) {
            // SAFETY: plain syscall on our descriptor.
            if unsafe { libc::fchown(raw, meta.uid as u32, meta.gid as u32) } < 0 {
                return Err(sys_err("chown", io::Error::last_os_error()));
            }
        }
        // SAFETY: plain syscall on our descriptor.
        if unsafe { libc::fchmod(raw, meta.mode) } < 0 {
            return Err(sys_err("chmod", io::Error::last_os_error()));
        }
        let privileged = if meta.xattrs.is_empty() {
            Vec::new()
        } else {
            self.xattrs(raw, &meta.xattrs)
        };
        let ts = timespecs(meta.mtime);
        // SAFETY: `ts` holds two timespecs.
        if unsafe { libc::futimens(raw, ts.as_ptr()) } < 0 {
            return Err(sys_err("setting mtime", io::Error::last_os_error()));
        }
        self.record_owner(comps, meta, Some(meta.mode), privileged);
        Ok(())
    }

    fn directory(&mut self, comps: &[&[u8]], meta: &Meta, shown: &str) -> Result<(), UnpackError> {
        let path = cstring(&join(comps)).map_err(|r| UnpackError::Entry {
            entry: shown.to_string(),
            reason: r,
        })?;
        if !comps.is_empty() {
            let (parent, name) = self.split(comps, shown)?;
            // SAFETY: valid NUL-terminated name.
            let r = unsafe { libc::mkdirat(parent, name.as_ptr(), 0o700) };
            if r < 0 {
                let e = last_errno();
                let sys_err = |e: i32| UnpackError::Sys {
                    entry: shown.to_string(),
                    op: "creating the directory".into(),
                    source: errno_err(e),
                };
                if e != libc::EEXIST {
                    return Err(sys_err(e));
                }
                if !self.make_room(parent, &name, true).map_err(sys_err)? {
                    // SAFETY: valid NUL-terminated name.
                    if unsafe { libc::mkdirat(parent, name.as_ptr(), 0o700) } < 0 {
                        return Err(sys_err(last_errno()));
                    }
                }
            }
        }
        if !meta.xattrs.is_empty() {
            let fd = self.dir(comps, shown)?;
            let privileged = self.xattrs(fd, &meta.xattrs);
            self.record_owner(comps, meta, None, privileged);
        } else {
            self.record_owner(comps, meta, None, Vec::new());
        }
        let (uid, gid) = (meta.uid as u32, meta.gid as u32);
        self.dirs.push(DirMeta {
            path,
            mode: meta.mode,
            mtime: meta.mtime,
            uid,
            gid,
        });
        Ok(())
    }

    fn symlink(
        &mut self,
        comps: &[&[u8]],
        target: &[u8],
        meta: &Meta,
        shown: &str,
    ) -> Result<(), UnpackError> {
        let target = cstring(target).map_err(|r| UnpackError::Entry {
            entry: shown.to_string(),
            reason: format!("symlink target: {r}"),
        })?;
        if target.as_bytes().is_empty() {
            return Err(UnpackError::Entry {
                entry: shown.to_string(),
                reason: "symlink with an empty target".into(),
            });
        }
        let (parent, name) = self.split(comps, shown)?;
        self.create_with_room(parent, &name, shown, "creating the symlink", || {
            // SAFETY: valid NUL-terminated strings.
            unsafe { libc::symlinkat(target.as_ptr(), parent, name.as_ptr()) }
        })?;
        if matches!(self.opts.ownership, Ownership::Keep) {
            // SAFETY: valid NUL-terminated name; the link itself is changed.
            unsafe {
                libc::fchownat(
                    parent,
                    name.as_ptr(),
                    meta.uid as u32,
                    meta.gid as u32,
                    libc::AT_SYMLINK_NOFOLLOW,
                )
            };
        }
        let ts = timespecs(meta.mtime);
        // SAFETY: valid name and two timespecs; the link itself is changed.
        unsafe {
            libc::utimensat(
                parent,
                name.as_ptr(),
                ts.as_ptr(),
                libc::AT_SYMLINK_NOFOLLOW,
            )
        };
        self.record_owner(comps, meta, None, Vec::new());
        Ok(())
    }

    fn hardlink(&mut self, comps: &[&[u8]], target: &[u8], shown: &str) -> Result<(), UnpackError> {
        let fail = |reason: String| UnpackError::Entry {
            entry: shown.to_string(),
            reason,
        };
        let tshown = String::from_utf8_lossy(target).into_owned();
        let tcomps =
            clean(target).map_err(|r| fail(format!("hard link target {tshown:?}: {r}")))?;
        let Some((tbase, tparents)) = tcomps.split_last() else {
            return Err(fail("hard link to the layer root".into()));
        };
        let tparent_path = cstring(&join(tparents)).map_err(&fail)?;
        let tname = cstring(tbase).map_err(&fail)?;
        let missing = || {
            fail(format!(
                "hard link target {tshown:?} does not exist in this layer (links may only point to files of the same layer)"
            ))
        };
        let tparent = match open_dir_in_root(self.root.as_raw_fd(), &tparent_path) {
            Ok(fd) => fd,
            Err(libc::ENOENT) | Err(libc::ENOTDIR) => return Err(missing()),
            Err(e) => {
                return Err(UnpackError::Sys {
                    entry: shown.to_string(),
                    op: format!("resolving hard link target {tshown:?}"),
                    source: errno_err(e),
                })
            }
        };
        match fstatat_nofollow(tparent.as_raw_fd(), &tname) {
            Ok(st) if st.st_mode & libc::S_IFMT == libc::S_IFDIR => {
                return Err(fail(format!("hard link target {tshown:?} is a directory")))
            }
            Ok(_) => {}
            Err(_) => return Err(missing()),
        }
        let (parent, name) = self.split(comps, shown)?;
        let tp = tparent.as_raw_fd();
        self.create_with_room(parent, &name, shown, "creating the hard link", || {
            // SAFETY: valid NUL-terminated names; no AT_SYMLINK_FOLLOW: a symlink target is
            // linked itself, never followed.
            unsafe { libc::linkat(tp, tname.as_ptr(), parent, name.as_ptr(), 0) }
        })?;
        Ok(())
    }

    fn device(
        &mut self,
        comps: &[&[u8]],
        chr: bool,
        major: u32,
        minor: u32,
        meta: &Meta,
        shown: &str,
    ) -> Result<(), UnpackError> {
        if !self.opts.devices {
            self.devices_skipped += 1;
            if self.first_device.is_none() {
                self.first_device = Some(shown.to_string());
            }
            return Ok(());
        }
        let (parent, name) = self.split(comps, shown)?;
        let kind = if chr { libc::S_IFCHR } else { libc::S_IFBLK };
        let dev = libc::makedev(major, minor);
        self.create_with_room(parent, &name, shown, "creating the device node", || {
            // SAFETY: valid NUL-terminated name.
            unsafe { libc::mknodat(parent, name.as_ptr(), kind | meta.mode, dev) }
        })?;
        self.finish_special(parent, &name, meta, shown)
    }

    fn fifo(&mut self, comps: &[&[u8]], meta: &Meta, shown: &str) -> Result<(), UnpackError> {
        let (parent, name) = self.split(comps, shown)?;
        self.create_with_room(parent, &name, shown, "creating the fifo", || {
            // SAFETY: valid NUL-terminated name.
            unsafe { libc::mknodat(parent, name.as_ptr(), libc::S_IFIFO | meta.mode, 0) }
        })?;
        self.finish_special(parent, &name, meta, shown)?;
        self.record_owner(comps, meta, None, Vec::new());
        Ok(())
    }

    fn finish_special(
        &mut self,
        parent: RawFd,
        name: &CStr,
        meta: &Meta,
        shown: &str,
    ) -> Result<(), UnpackError> {
        if matches!(self.opts.ownership, Ownership::Keep) {
            // SAFETY: valid name; the entry was just created by us and is not a symlink.
            unsafe {
                libc::fchownat(
                    parent,
                    name.as_ptr(),
                    meta.uid as u32,
                    meta.gid as u32,
                    libc::AT_SYMLINK_NOFOLLOW,
                )
            };
        }
        chmod_nofollow(parent, name, meta.mode).map_err(|e| UnpackError::Sys {
            entry: shown.to_string(),
            op: "chmod".into(),
            source: errno_err(e),
        })?;
        let ts = timespecs(meta.mtime);
        // SAFETY: valid name and two timespecs.
        unsafe {
            libc::utimensat(
                parent,
                name.as_ptr(),
                ts.as_ptr(),
                libc::AT_SYMLINK_NOFOLLOW,
            )
        };
        Ok(())
    }

    fn whiteout(&mut self, parents: &[&[u8]], name: &[u8], shown: &str) -> Result<(), UnpackError> {
        let parent = self.dir(parents, shown)?;
        let name = cstring(name).map_err(|r| UnpackError::Entry {
            entry: shown.to_string(),
            reason: r,
        })?;
        // SAFETY: valid NUL-terminated name; a 0/0 character device is overlay's whiteout,
        // which the kernel lets anyone create (Linux >= 5.8).
        let r = unsafe { libc::mknodat(parent, name.as_ptr(), libc::S_IFCHR, libc::makedev(0, 0)) };
        if r < 0 {
            let e = last_errno();
            // Something of this same layer is there already: the whiteout only hides lower
            // layers, so the layer's own entry wins (OCI image spec).
            if e == libc::EEXIST {
                return Ok(());
            }
            return Err(UnpackError::Sys {
                entry: shown.to_string(),
                op: "creating the overlay whiteout (char 0/0)".into(),
                source: errno_err(e),
            });
        }
        Ok(())
    }

    fn opaque(&mut self, parents: &[&[u8]], shown: &str) -> Result<(), UnpackError> {
        let fd = self.dir(parents, shown)?;
        set_xattr_fd(fd, OPAQUE_XATTR, b"y").map_err(|e| UnpackError::Sys {
            entry: shown.to_string(),
            op: "marking the directory opaque (user.overlay.opaque)".into(),
            source: errno_err(e),
        })
    }

    fn finish(mut self) -> Result<Outcome, UnpackError> {
        // Directory modes and times last, so creating their content does not change them.
        let dirs = std::mem::take(&mut self.dirs);
        for d in &dirs {
            let fd = match sys::openat2(
                self.root.as_raw_fd(),
                if d.path.is_empty() { c"." } else { &d.path },
                (libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC) as u64,
                sys::RESOLVE_IN_ROOT | sys::RESOLVE_NO_MAGICLINKS,
            ) {
                Ok(fd) => fd,
                // Replaced by a later entry of another type: nothing to do.
                Err(_) => continue,
            };
            // SAFETY: a descriptor we just opened.
            let fd = unsafe { OwnedFd::from_raw_fd(fd) };
            let raw = fd.as_raw_fd();
            let shown = String::from_utf8_lossy(d.path.as_bytes()).into_owned();
            let sys_err = |op: &str| UnpackError::Sys {
                entry: shorten(&shown),
                op: op.to_string(),
                source: io::Error::last_os_error(),
            };
            if matches!(self.opts.ownership, Ownership::Keep) {
                // SAFETY: plain syscall on our descriptor.
                if unsafe { libc::fchown(raw, d.uid, d.gid) } < 0 {
                    return Err(sys_err("chown"));
                }
            }
            // SAFETY: plain syscall on our descriptor.
            if unsafe { libc::fchmod(raw, d.mode) } < 0 {
                return Err(sys_err("chmod"));
            }
            let ts = timespecs(d.mtime);
            // SAFETY: `ts` holds two timespecs.
            if unsafe { libc::futimens(raw, ts.as_ptr()) } < 0 {
                return Err(sys_err("setting mtime"));
            }
        }
        if self.devices_skipped > 0 {
            let first = self.first_device.take().unwrap_or_default();
            self.note(format!(
                "skipped {} device node(s) (e.g. {first}): only real root can create them; containers get their own /dev",
                self.devices_skipped
            ));
        }
        self.out.notes = std::mem::take(&mut self.notes).into_iter().collect();
        Ok(self.out)
    }
}

/// Parses a PAX time (`seconds[.fraction]`).
fn parse_pax_time(s: &str) -> Option<(i64, i64)> {
    let (sec, frac) = match s.split_once('.') {
        Some((a, b)) => (a, b),
        None => (s, ""),
    };
    let sec: i64 = sec.parse().ok()?;
    let mut nsec: i64 = 0;
    let digits: String = frac.chars().take(9).collect();
    if !digits.is_empty() {
        nsec = digits.parse().ok()?;
        for _ in digits.len()..9 {
            nsec *= 10;
        }
    }
    Some((sec, nsec))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_paths() {
        assert_eq!(clean(b"./a/b/").unwrap(), vec![&b"a"[..], &b"b"[..]]);
        assert_eq!(
            clean(b"/etc/passwd").unwrap(),
            vec![&b"etc"[..], &b"passwd"[..]]
        );
        assert_eq!(clean(b"a/../b").unwrap(), vec![&b"b"[..]]);
        assert!(clean(b"../x").is_err());
        assert!(clean(b"a/../../x").is_err());
        assert!(clean(b"./").unwrap().is_empty());
        let deep = "a/".repeat(10_000);
        let e = clean(deep.as_bytes()).unwrap_err();
        assert!(e.contains("too long or too deep"), "{e}");
    }

    fn header(name: &str, kind: tar::EntryType, size: u64, link: &str) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        {
            let g = h.as_gnu_mut().unwrap();
            g.name[..name.len()].copy_from_slice(name.as_bytes());
            g.linkname[..link.len()].copy_from_slice(link.as_bytes());
        }
        h.set_entry_type(kind);
        h.set_size(size);
        h.set_mode(0o644);
        h.set_mtime(1_000_000);
        h.set_cksum();
        h
    }

    fn layer(entries: &[(&str, tar::EntryType, &str)]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, kind, arg) in entries {
            let (data, link) = if *kind == tar::EntryType::Regular {
                (arg.as_bytes(), "")
            } else {
                (&b""[..], *arg)
            };
            let h = header(name, *kind, data.len() as u64, link);
            b.append(&h, data).unwrap();
        }
        b.into_inner().unwrap()
    }

    fn run(
        entries: &[(&str, tar::EntryType, &str)],
    ) -> (std::path::PathBuf, Result<Outcome, UnpackError>) {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let base = std::env::temp_dir().join(format!(
            "rootbox-unpack-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&base);
        std::fs::create_dir_all(base.join("root")).unwrap();
        let opts = UnpackOptions {
            ownership: Ownership::Squash,
            devices: false,
            limits: Limits::default(),
        };
        let data = layer(entries);
        let r = unpack(&mut &data[..], &base.join("root"), &opts);
        (base, r)
    }

    #[test]
    fn whiteouts_become_overlay_format() {
        use tar::EntryType as T;
        let (base, r) = run(&[
            ("d/.wh..wh..opq", T::Regular, ""),
            ("d/.wh.gone", T::Regular, ""),
            ("d/keep", T::Regular, "k"),
            (".wh..wh.plnk", T::Regular, ""),
        ]);
        r.unwrap();
        let root = base.join("root");
        use std::os::unix::fs::{FileTypeExt, MetadataExt};
        let m = std::fs::symlink_metadata(root.join("d/gone")).unwrap();
        assert!(m.file_type().is_char_device() && m.rdev() == 0);
        let c = CString::new(root.join("d").as_os_str().as_encoded_bytes()).unwrap();
        let mut v = [0u8; 2];
        // SAFETY: valid strings and buffer.
        let n =
            unsafe { libc::getxattr(c.as_ptr(), OPAQUE_XATTR.as_ptr(), v.as_mut_ptr().cast(), 2) };
        assert_eq!((n, v[0]), (1, b'y'));
        assert!(!root.join("d/.wh..wh..opq").exists() && !root.join(".wh..wh.plnk").exists());
        std::fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn escapes_are_refused_or_kept_inside() {
        use tar::EntryType as T;
        let outside =
            std::env::temp_dir().join(format!("rootbox-unpack-outside-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&outside);
        std::fs::create_dir_all(&outside).unwrap();
        let o = outside.to_str().unwrap().to_string();
        // An absolute symlink, then a write through it: lands inside the root.
        let (base, r) = run(&[("esc", T::Symlink, &o), ("esc/f", T::Regular, "x")]);
        r.unwrap();
        assert!(base
            .join("root")
            .join(o.trim_start_matches('/'))
            .join("f")
            .is_file());
        assert!(!outside.join("f").exists());
        std::fs::remove_dir_all(&base).unwrap();
        // `..` out of the root.
        let (base, r) = run(&[("../../x", T::Regular, "x")]);
        assert!(r.unwrap_err().to_string().contains("climbs out"));
        std::fs::remove_dir_all(&base).unwrap();
        // A hard link to a host file.
        let (base, r) = run(&[("pw", T::Link, "/etc/passwd")]);
        assert!(r
            .unwrap_err()
            .to_string()
            .contains("does not exist in this layer"));
        std::fs::remove_dir_all(&base).unwrap();
        // A symlink loop walked through.
        let (base, r) = run(&[
            ("a", T::Symlink, "b"),
            ("b", T::Symlink, "a"),
            ("a/f", T::Regular, "x"),
        ]);
        let e = r.unwrap_err().to_string();
        assert!(e.contains("Too many levels of symbolic links"), "{e}");
        std::fs::remove_dir_all(&base).unwrap();
        // A file replaced by a directory and back.
        let (base, r) = run(&[
            ("x", T::Regular, "1"),
            ("x/", T::Directory, ""),
            ("x/y", T::Regular, "2"),
            ("x", T::Regular, "3"),
        ]);
        r.unwrap();
        assert_eq!(std::fs::read(base.join("root/x")).unwrap(), b"3");
        std::fs::remove_dir_all(&base).unwrap();
        assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0);
        std::fs::remove_dir_all(&outside).unwrap();
    }

    #[test]
    fn entry_limit_stops_the_unpack() {
        use tar::EntryType as T;
        let names: Vec<String> = (0..10).map(|i| format!("f{i}")).collect();
        let entries: Vec<(&str, T, &str)> =
            names.iter().map(|n| (n.as_str(), T::Regular, "")).collect();
        let data = layer(&entries);
        let base =
            std::env::temp_dir().join(format!("rootbox-unpack-limit-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        std::fs::create_dir_all(&base).unwrap();
        let mut opts = UnpackOptions {
            ownership: Ownership::Squash,
            devices: false,
            limits: Limits {
                max_size: 1 << 20,
                max_entries: 4,
            },
        };
        let e = unpack(&mut &data[..], &base, &opts).unwrap_err();
        assert!(matches!(e, UnpackError::TooManyEntries { limit: 4 }), "{e}");
        assert!(e.to_string().contains(MAX_ENTRIES_ENV), "{e}");
        // Exactly at the limit is fine.
        std::fs::remove_dir_all(&base).unwrap();
        std::fs::create_dir_all(&base).unwrap();
        opts.limits.max_entries = 10;
        assert_eq!(unpack(&mut &data[..], &base, &opts).unwrap().entries, 10);
        std::fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn limits_from_values() {
        assert_eq!(Limits::from_values(None, None).unwrap(), Limits::default());
        assert_eq!(
            Limits::from_values(Some(""), Some(" ")).unwrap(),
            Limits::default()
        );
        let l = Limits::from_values(Some("8m"), Some("2000")).unwrap();
        assert_eq!((l.max_size, l.max_entries), (8 << 20, 2000));
        for (size, entries, bad) in [
            (Some("lots"), None, "ROOTBOX_MAX_LAYER_SIZE=\"lots\""),
            (Some("0"), None, "above zero"),
            (None, Some("-3"), "ROOTBOX_MAX_LAYER_ENTRIES=\"-3\""),
            (None, Some("0"), "above zero"),
        ] {
            let e = Limits::from_values(size, entries).unwrap_err().to_string();
            assert!(e.contains(bad), "{e}");
        }
        let e = UnpackError::TooLarge { limit: 8 << 20 }.to_string();
        assert!(e.contains("8.389MB") && e.contains(MAX_SIZE_ENV), "{e}");
    }

    #[test]
    fn pax_times() {
        assert_eq!(parse_pax_time("12.5"), Some((12, 500_000_000)));
        assert_eq!(parse_pax_time("7"), Some((7, 0)));
        assert_eq!(parse_pax_time("x"), None);
    }
}

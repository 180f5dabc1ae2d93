//! The merged view of stacked layers and the changes of a container's writable layer:
//! what `commit`, `diff`, `export` and `cp` read.
//!
//! * [`Union`]: layers (roots of an [`NsFs`], lowest first) seen as one tree with overlay rules:
//!   a character device 0/0 (or a file with the `overlay.whiteout` xattr, or an OCI `.wh.NAME`
//!   left by fuse-overlayfs) deletes a name; a directory marked opaque (xattr or
//!   `.wh..wh..opq`) hides the layers below it. Symlinks are resolved inside the tree.
//! * [`overlay_changes`]: the writable layer of an overlay (kernel or fuse-overlayfs) is the
//!   diff itself; every entry is Added or Changed, whiteouts are Deleted, opaque directories
//!   replace the directory below.
//! * [`full_changes`]: the vfs driver's writable layer is a full copy: compared with the merged
//!   lower layers, entry by entry.
//! * [`TarOut`]: tar entries with the container's view of ownership (host ids mapped back
//!   through the container's id maps), and the files' extended attributes as PAX
//!   `SCHILY.xattr.*` records: `user.*` ones (not the storage's own: overlay, fuse-overlayfs,
//!   containers-storage) where this user may read them, and file capabilities.

use std::collections::{BTreeSet, HashMap};
use std::ffi::{CString, OsStr};
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;

use oci_spec::runtime::LinuxIdMapping;

use super::nsfs::{Node, NsFs};

/// Most symlinks followed while resolving one path.
const MAX_LINKS: usize = 40;

fn err(e: i32) -> io::Error {
    io::Error::from_raw_os_error(e)
}

/// `a/b` for relative paths ("" is the root).
pub fn join(parent: &[u8], name: &[u8]) -> Vec<u8> {
    let mut p = parent.to_vec();
    if !p.is_empty() {
        p.push(b'/');
    }
    p.extend_from_slice(name);
    p
}

/// One name in the merged tree: its topmost entry and, for a directory, the layers (top
/// first) whose directory contributes to its content.
#[derive(Debug)]
pub struct Entry {
    pub node: Node,
    pub layer: usize,
    pub dirs: Vec<usize>,
}

/// Layers seen as one tree.
pub struct Union<'a> {
    pub fs: &'a NsFs,
    /// Root indices of `fs`, top first.
    top_first: Vec<usize>,
}

impl<'a> Union<'a> {
    /// `layers`: root indices of `fs`, lowest first.
    pub fn new(fs: &'a NsFs, layers: &[usize]) -> Union<'a> {
        Union {
            fs,
            top_first: layers.iter().rev().copied().collect(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.top_first.is_empty()
    }

    /// The root directory.
    pub fn root(&self) -> io::Result<Entry> {
        let mut dirs = Vec::new();
        let mut top = None;
        for &l in &self.top_first {
            if let Some(n) = self.fs.open(l, b".", false)? {
                let opaque = n.opaque;
                if top.is_none() {
                    top = Some((n, l));
                }
                dirs.push(l);
                if opaque {
                    break;
                }
            }
        }
        let (node, layer) = top.ok_or_else(|| err(libc::ENOENT))?;
        Ok(Entry { node, layer, dirs })
    }

    fn marked(&self, layer: usize, path: &[u8]) -> io::Result<bool> {
        Ok(self.fs.open(layer, path, false)?.is_some())
    }

    /// `name` in the directory `parent` (at `parent_path`); None when absent or deleted.
    pub fn child(
        &self,
        parent: &Entry,
        parent_path: &[u8],
        name: &[u8],
    ) -> io::Result<Option<Entry>> {
        if name.starts_with(b".wh.") || name == b"." || name == b".." || name.contains(&b'/') {
            return Ok(None);
        }
        let p = join(parent_path, name);
        let mut dirs = Vec::new();
        let mut top: Option<(Node, usize)> = None;
        for &l in &parent.dirs {
            match self.fs.open(l, &p, false)? {
                None => {
                    let mut wh = b".wh.".to_vec();
                    wh.extend_from_slice(name);
                    if self.marked(l, &join(parent_path, &wh))? {
                        break;
                    }
                }
                Some(n) if n.is_whiteout() => break,
                Some(n) if n.is_dir() => {
                    let opaque = n.opaque || self.marked(l, &join(&p, b".wh..wh..opq"))?;
                    if top.is_none() {
                        top = Some((n, l));
                    }
                    dirs.push(l);
                    if opaque {
                        break;
                    }
                }
                Some(n) => {
                    if top.is_none() {
                        top = Some((n, l));
                    }
                    break;
                }
            }
        }
        Ok(top.map(|(node, layer)| Entry { node, layer, dirs }))
    }

    /// The names of a merged directory at `path`, opening every contributing layer.
    pub fn names_at(&self, dir: &Entry, path: &[u8]) -> io::Result<Vec<Vec<u8>>> {
        let mut all = BTreeSet::new();
        for &l in &dir.dirs {
            let names = if l == dir.layer {
                dir.node.names()?
            } else {
                match self.fs.open(l, path, false)? {
                    Some(n) if n.is_dir() => n.names()?,
                    _ => continue,
                }
            };
            all.extend(names.into_iter().filter(|n| !n.starts_with(b".wh.")));
        }
        Ok(all.into_iter().collect())
    }

    /// The entry at a canonical path (no symlinks followed).
    pub fn lookup(&self, path: &[u8]) -> io::Result<Option<Entry>> {
        let mut cur = self.root()?;
        let mut at = Vec::new();
        for c in path
            .split(|b| *b == b'/')
            .filter(|c| !c.is_empty() && *c != b".")
        {
            if !cur.node.is_dir() {
                return Ok(None);
            }
            match self.child(&cur, &at, c)? {
                Some(e) => cur = e,
                None => return Ok(None),
            }
            at = join(&at, c);
        }
        Ok(Some(cur))
    }

    /// Resolves a container path: symlinks (and `..`) resolved inside the tree, never above
    /// its root. Returns the canonical path and its entry (None when only the last component
    /// is missing); ENOENT/ENOTDIR when a directory on the way is missing.
    pub fn resolve(&self, path: &[u8], follow_last: bool) -> io::Result<(Vec<u8>, Option<Entry>)> {
        let mut queue: Vec<Vec<u8>> = path
            .split(|b| *b == b'/')
            .filter(|c| !c.is_empty() && *c != b".")
            .map(|c| c.to_vec())
            .rev()
            .collect();
        let mut canon: Vec<Vec<u8>> = Vec::new();
        let mut entries: Vec<Entry> = Vec::new();
        let root = self.root()?;
        let mut links = 0;
        while let Some(c) = queue.pop() {
            if c == b".." {
                canon.pop();
                entries.pop();
                continue;
            }
            let at = canon.join(&b'/');
            let parent = entries.last().unwrap_or(&root);
            if !parent.node.is_dir() {
                return Err(err(libc::ENOTDIR));
            }
            match self.child(parent, &at, &c)? {
                None if queue.is_empty() => {
                    canon.push(c);
                    return Ok((canon.join(&b'/'), None));
                }
                None => return Err(err(libc::ENOENT)),
                Some(e) if e.node.is_symlink() && (!queue.is_empty() || follow_last) => {
                    links += 1;
                    if links > MAX_LINKS {
                        return Err(err(libc::ELOOP));
                    }
                    let target = e.node.link_target()?;
                    if target.starts_with(b"/") {
                        canon.clear();
                        entries.clear();
                    }
                    queue.extend(
                        target
                            .split(|b| *b == b'/')
                            .filter(|c| !c.is_empty() && *c != b".")
                            .map(|c| c.to_vec())
                            .rev(),
                    );
                }
                Some(e) => {
                    canon.push(c);
                    entries.push(e);
                }
            }
        }
        let last = match entries.pop() {
            Some(e) => e,
            None => root,
        };
        Ok((canon.join(&b'/'), Some(last)))
    }
}

/// What happened to a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Added,
    Changed,
    Deleted,
}

impl Kind {
    pub fn letter(self) -> char {
        match self {
            Kind::Added => 'A',
            Kind::Changed => 'C',
            Kind::Deleted => 'D',
        }
    }
}

/// One change of the writable layer, in walk order (a directory before its content).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// Relative to the root, no leading slash.
    pub path: Vec<u8>,
    pub kind: Kind,
    /// A directory written as opaque (`.wh..wh..opq` in the layer).
    pub opaque: bool,
    /// Whether the layer tar carries it (a deletion under an opaque directory does not).
    pub in_layer: bool,
}

impl Change {
    fn new(path: Vec<u8>, kind: Kind) -> Change {
        Change {
            path,
            kind,
            opaque: false,
            in_layer: true,
        }
    }

    /// `A /path` as `diff` prints it.
    pub fn line(&self) -> String {
        format!(
            "{} /{}",
            self.kind.letter(),
            String::from_utf8_lossy(&self.path)
        )
    }
}

/// The changes in an overlay writable layer (root `upper` of the union's `fs`) over `lower`.
pub fn overlay_changes(upper: usize, lower: &Union<'_>) -> io::Result<Vec<Change>> {
    let fs = lower.fs;
    let mut out = Vec::new();
    let top = fs
        .open(upper, b".", false)?
        .ok_or_else(|| err(libc::ENOENT))?;
    let lroot = if lower.is_empty() {
        None
    } else {
        Some(lower.root()?)
    };
    overlay_walk(
        fs,
        upper,
        lower,
        b"",
        &top.names()?,
        lroot.as_ref(),
        &mut out,
    )?;
    Ok(out)
}

fn overlay_walk(
    fs: &NsFs,
    upper: usize,
    lower: &Union<'_>,
    path: &[u8],
    names: &[Vec<u8>],
    ldir: Option<&Entry>,
    out: &mut Vec<Change>,
) -> io::Result<()> {
    let lchild = |name: &[u8]| -> io::Result<Option<Entry>> {
        match ldir {
            Some(d) => lower.child(d, path, name),
            None => Ok(None),
        }
    };
    for name in names {
        if name == b".wh..wh..opq" {
            continue;
        }
        if let Some(real) = name.strip_prefix(b".wh.") {
            if lchild(real)?.is_some() {
                out.push(Change::new(join(path, real), Kind::Deleted));
            }
            continue;
        }
        let p = join(path, name);
        let Some(n) = fs.open(upper, &p, false)? else {
            continue;
        };
        let lc = lchild(name)?;
        if n.is_whiteout() {
            if lc.is_some() {
                out.push(Change::new(p, Kind::Deleted));
            }
            continue;
        }
        if !n.is_dir() {
            let kind = if lc.is_some() {
                Kind::Changed
            } else {
                Kind::Added
            };
            out.push(Change::new(p, kind));
            continue;
        }
        let sub = n.names()?;
        let opaque = n.opaque || sub.iter().any(|s| s == b".wh..wh..opq");
        match lc {
            Some(l) if l.node.is_dir() => {
                out.push(Change {
                    opaque,
                    ..Change::new(p.clone(), Kind::Changed)
                });
                if opaque {
                    // What the opaque directory hides from below: deleted, shown by `diff`
                    // only (the opaque marker carries it in the layer).
                    for x in lower.names_at(&l, &p)? {
                        if !sub.contains(&x) && lower.child(&l, &p, &x)?.is_some() {
                            out.push(Change {
                                in_layer: false,
                                ..Change::new(join(&p, &x), Kind::Deleted)
                            });
                        }
                    }
                }
                overlay_walk(fs, upper, lower, &p, &sub, Some(&l), out)?;
            }
            Some(_) => {
                out.push(Change::new(p.clone(), Kind::Changed));
                overlay_walk(fs, upper, lower, &p, &sub, None, out)?;
            }
            None => {
                out.push(Change::new(p.clone(), Kind::Added));
                overlay_walk(fs, upper, lower, &p, &sub, None, out)?;
            }
        }
    }
    Ok(())
}

fn same_meta(a: &Node, b: &Node) -> io::Result<bool> {
    // SAFETY: geteuid cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    let (x, y) = (&a.st, &b.st);
    if x.st_mode != y.st_mode || (root && (x.st_uid != y.st_uid || x.st_gid != y.st_gid)) {
        return Ok(false);
    }
    if a.is_dir() {
        return Ok(true);
    }
    if x.st_size != y.st_size
        || x.st_rdev != y.st_rdev
        || x.st_mtime != y.st_mtime
        || x.st_mtime_nsec != y.st_mtime_nsec
    {
        return Ok(false);
    }
    if a.is_symlink() {
        return Ok(a.link_target()? == b.link_target()?);
    }
    Ok(true)
}

/// The changes of a full copy (root `upper`: the vfs driver) against the merged `lower`.
pub fn full_changes(upper: usize, lower: &Union<'_>) -> io::Result<Vec<Change>> {
    let fs = lower.fs;
    let mut out = Vec::new();
    let top = fs
        .open(upper, b".", false)?
        .ok_or_else(|| err(libc::ENOENT))?;
    let lroot = lower.root()?;
    full_walk(fs, upper, lower, b"", &top, Some(&lroot), &mut out)?;
    Ok(out)
}

fn full_walk(
    fs: &NsFs,
    upper: usize,
    lower: &Union<'_>,
    path: &[u8],
    udir: &Node,
    ldir: Option<&Entry>,
    out: &mut Vec<Change>,
) -> io::Result<()> {
    let unames = udir.names()?;
    let mut all: BTreeSet<Vec<u8>> = unames.iter().cloned().collect();
    if let Some(l) = ldir {
        all.extend(lower.names_at(l, path)?);
    }
    for name in all {
        let p = join(path, &name);
        let u = if unames.contains(&name) {
            fs.open(upper, &p, false)?
        } else {
            None
        };
        let l = match ldir {
            Some(d) => lower.child(d, path, &name)?,
            None => None,
        };
        match (u, l) {
            (None, None) => {}
            (None, Some(_)) => out.push(Change::new(p, Kind::Deleted)),
            (Some(u), None) => {
                out.push(Change::new(p.clone(), Kind::Added));
                if u.is_dir() {
                    full_walk(fs, upper, lower, &p, &u, None, out)?;
                }
            }
            (Some(u), Some(l)) => {
                if u.is_dir() && l.node.is_dir() {
                    let mut sub = Vec::new();
                    full_walk(fs, upper, lower, &p, &u, Some(&l), &mut sub)?;
                    if !sub.is_empty() || !same_meta(&u, &l.node)? {
                        out.push(Change::new(p.clone(), Kind::Changed));
                        out.extend(sub);
                    }
                } else if !same_meta(&u, &l.node)? {
                    out.push(Change::new(p.clone(), Kind::Changed));
                    if u.is_dir() {
                        full_walk(fs, upper, lower, &p, &u, None, out)?;
                    }
                }
            }
        }
    }
    Ok(())
}

/// A host id seen from the container (through the container's maps; unmapped ids become
/// 65534, the overflow id; no maps: identity).
pub fn to_container(id: u32, maps: &[LinuxIdMapping]) -> u32 {
    if maps.is_empty() {
        return id;
    }
    for m in maps {
        if id >= m.host_id() && (id - m.host_id()) < m.size() {
            return m.container_id() + (id - m.host_id());
        }
    }
    65534
}

/// Prefixes of `user.*` xattrs that are the storage's own bookkeeping, not the files'.
const STORAGE_XATTRS: [&[u8]; 3] = [
    b"user.overlay.",
    b"user.fuseoverlayfs.",
    b"user.containers.",
];

/// The extended attributes a layer carries for the file open at `fd`, sorted by name: `user.*`
/// (but [`STORAGE_XATTRS`]) and `security.capability` as a revision-2 value. A revision-3
/// capability names the user namespace root it belongs to (a host id): kept, without that id,
/// when it is this container's root, else dropped. What cannot be read is left out.
fn layer_xattrs(fd: i32, uids: &[LinuxIdMapping]) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut names = vec![0u8; 4096];
    loop {
        // SAFETY: the buffer is valid for its length.
        let n = unsafe { libc::flistxattr(fd, names.as_mut_ptr().cast(), names.len()) };
        if n >= 0 {
            names.truncate(n as usize);
            break;
        }
        if io::Error::last_os_error().raw_os_error() != Some(libc::ERANGE) || names.len() > 1 << 20
        {
            return Vec::new();
        }
        names.resize(names.len() * 4, 0);
    }
    let mut out = Vec::new();
    for k in names.split(|c| *c == 0).filter(|k| !k.is_empty()) {
        let user = k.starts_with(b"user.") && !STORAGE_XATTRS.iter().any(|p| k.starts_with(p));
        let cap = k == b"security.capability";
        if !user && !cap {
            continue;
        }
        let Ok(ck) = CString::new(k) else { continue };
        let mut v = vec![0u8; 64 * 1024];
        // SAFETY: a NUL-terminated name and a buffer valid for its length.
        let n = unsafe { libc::fgetxattr(fd, ck.as_ptr(), v.as_mut_ptr().cast(), v.len()) };
        if n < 0 {
            continue;
        }
        v.truncate(n as usize);
        if cap {
            match capability_v2(&v, uids) {
                Some(v2) => v = v2,
                None => continue,
            }
        }
        out.push((k.to_vec(), v));
    }
    out.sort();
    out
}

/// `security.capability` as revision 2 (magic, then permitted and inheritable for two words):
/// a revision-2 value as it is; a revision-3 one whose root id maps to the container's root,
/// without the id; anything else `None`.
fn capability_v2(v: &[u8], uids: &[LinuxIdMapping]) -> Option<Vec<u8>> {
    const REV_MASK: u32 = 0xFF00_0000;
    const REV2: u32 = 0x0200_0000;
    const REV3: u32 = 0x0300_0000;
    let magic = u32::from_le_bytes(v.get(..4)?.try_into().ok()?);
    match (magic & REV_MASK, v.len()) {
        (REV2, 20) => Some(v.to_vec()),
        (REV3, 24) => {
            let root = u32::from_le_bytes(v[20..24].try_into().ok()?);
            if to_container(root, uids) != 0 {
                return None;
            }
            let mut v2 = v[..20].to_vec();
            v2[..4].copy_from_slice(&(REV2 | (magic & !REV_MASK)).to_le_bytes());
            Some(v2)
        }
        _ => None,
    }
}

/// Appends one PAX record, `"LEN KEY=VALUE\n"`, where LEN counts the whole record itself.
fn pax_record(out: &mut Vec<u8>, key: &[u8], value: &[u8]) {
    let rest = key.len() + value.len() + 3; // ' ', '=', '\n'
    let mut len = rest + 1;
    while len != rest + len.to_string().len() {
        len = rest + len.to_string().len();
    }
    out.extend_from_slice(format!("{len} ").as_bytes());
    out.extend_from_slice(key);
    out.push(b'=');
    out.extend_from_slice(value);
    out.push(b'\n');
}

/// Writes tar entries for nodes, owners as the container sees them.
pub struct TarOut<W: Write> {
    b: tar::Builder<W>,
    uids: Vec<LinuxIdMapping>,
    gids: Vec<LinuxIdMapping>,
    links: HashMap<(usize, u64, u64), Vec<u8>>,
}

impl<W: Write> TarOut<W> {
    pub fn new(w: W, uids: &[LinuxIdMapping], gids: &[LinuxIdMapping]) -> TarOut<W> {
        let mut b = tar::Builder::new(w);
        b.follow_symlinks(false);
        TarOut {
            b,
            uids: uids.to_vec(),
            gids: gids.to_vec(),
            links: HashMap::new(),
        }
    }

    fn header(&self, st: &libc::stat, kind: tar::EntryType) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(st.st_mode & 0o7777);
        h.set_uid(to_container(st.st_uid, &self.uids) as u64);
        h.set_gid(to_container(st.st_gid, &self.gids) as u64);
        h.set_mtime(st.st_mtime.max(0) as u64);
        h.set_size(0);
        h
    }

    /// An entry named `name` for `node` (`layer` tells hard links of one layer apart).
    pub fn add(&mut self, name: &[u8], node: &Node, layer: usize) -> io::Result<()> {
        let st = &node.st;
        let path = OsStr::from_bytes(name);
        if node.is_reg() && st.st_nlink > 1 {
            let key = (layer, st.st_dev, st.st_ino);
            if let Some(first) = self.links.get(&key) {
                let mut h = self.header(st, tar::EntryType::Link);
                let target = first.clone();
                return self.b.append_link(&mut h, path, OsStr::from_bytes(&target));
            }
            self.links.insert(key, name.to_vec());
        }
        match node.kind() {
            libc::S_IFREG => {
                self.xattrs(name, node)?;
                let mut h = self.header(st, tar::EntryType::Regular);
                h.set_size(st.st_size as u64);
                let mut f = node.file()?;
                let mut r = io::Read::take(&mut f, st.st_size as u64);
                self.b.append_data(&mut h, path, &mut r)?;
                if r.limit() != 0 {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!("{} shrank while being read", String::from_utf8_lossy(name)),
                    ));
                }
                Ok(())
            }
            libc::S_IFDIR => {
                self.xattrs(name, node)?;
                let mut h = self.header(st, tar::EntryType::Directory);
                let mut n = name.to_vec();
                n.push(b'/');
                self.b
                    .append_data(&mut h, OsStr::from_bytes(&n), io::empty())
            }
            libc::S_IFLNK => {
                let mut h = self.header(st, tar::EntryType::Symlink);
                let target = node.link_target()?;
                self.b.append_link(&mut h, path, OsStr::from_bytes(&target))
            }
            k => {
                let kind = match k {
                    libc::S_IFCHR => tar::EntryType::Char,
                    libc::S_IFBLK => tar::EntryType::Block,
                    libc::S_IFIFO => tar::EntryType::Fifo,
                    // Sockets do not go into archives (Docker skips them too).
                    _ => return Ok(()),
                };
                let mut h = self.header(st, kind);
                h.set_device_major(libc::major(st.st_rdev))?;
                h.set_device_minor(libc::minor(st.st_rdev))?;
                self.b.append_data(&mut h, path, io::empty())
            }
        }
    }

    /// A PAX header with `node`'s extended attributes for the entry that follows (none when
    /// it has none a layer carries). `node` is a readable regular file or directory.
    fn xattrs(&mut self, name: &[u8], node: &Node) -> io::Result<()> {
        let list = layer_xattrs(node.fd.as_raw_fd(), &self.uids);
        if list.is_empty() {
            return Ok(());
        }
        let mut data = Vec::new();
        for (k, v) in &list {
            let mut key = b"SCHILY.xattr.".to_vec();
            key.extend_from_slice(k);
            pax_record(&mut data, &key, v);
        }
        let base = name.rsplit(|c| *c == b'/').next().unwrap_or(name);
        let mut pname = b"PaxHeaders/".to_vec();
        pname.extend_from_slice(&base[..base.len().min(80)]);
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(tar::EntryType::XHeader);
        h.set_mode(0o644);
        h.set_size(data.len() as u64);
        h.set_path(OsStr::from_bytes(&pname))?;
        h.set_cksum();
        self.b.append(&h, &data[..])
    }

    /// An OCI whiteout for `path` (`DIR/.wh.NAME`).
    pub fn whiteout(&mut self, path: &[u8]) -> io::Result<()> {
        let (dir, name) = match path.iter().rposition(|c| *c == b'/') {
            Some(i) => (&path[..i], &path[i + 1..]),
            None => (&b""[..], path),
        };
        let mut wh = b".wh.".to_vec();
        wh.extend_from_slice(name);
        self.marker(&join(dir, &wh))
    }

    /// The OCI opaque marker in directory `path`.
    pub fn opaque(&mut self, path: &[u8]) -> io::Result<()> {
        self.marker(&join(path, b".wh..wh..opq"))
    }

    fn marker(&mut self, name: &[u8]) -> io::Result<()> {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_mode(0o644);
        h.set_size(0);
        h.set_mtime(0);
        self.b
            .append_data(&mut h, OsStr::from_bytes(name), io::empty())
    }

    /// Ends the archive and returns the writer.
    pub fn finish(self) -> io::Result<W> {
        self.b.into_inner()
    }
}

/// Writes the merged tree below `dir` (at `path`) into `out`, named `prefix/...` (no prefix:
/// relative to the root), directories before their content.
pub fn tar_tree<W: Write>(
    u: &Union<'_>,
    dir: &Entry,
    path: &[u8],
    prefix: &[u8],
    out: &mut TarOut<W>,
) -> io::Result<()> {
    for name in u.names_at(dir, path)? {
        let Some(e) = u.child(dir, path, &name)? else {
            continue;
        };
        let p = join(path, &name);
        let n = join(prefix, &name);
        out.add(&n, &e.node, e.layer)?;
        if e.node.is_dir() {
            tar_tree(u, &e, &p, &n, out)?;
        }
    }
    Ok(())
}

/// Writes a layer tar for `changes` of the writable layer (root `upper` of `fs`).
pub fn tar_changes<W: Write>(
    fs: &NsFs,
    upper: usize,
    changes: &[Change],
    out: &mut TarOut<W>,
) -> io::Result<()> {
    for c in changes.iter().filter(|c| c.in_layer) {
        match c.kind {
            Kind::Deleted => out.whiteout(&c.path)?,
            Kind::Added | Kind::Changed => {
                let Some(n) = fs.open(upper, &c.path, false)? else {
                    return Err(io::Error::new(
                        io::ErrorKind::NotFound,
                        format!(
                            "{} vanished during the commit",
                            String::from_utf8_lossy(&c.path)
                        ),
                    ));
                };
                out.add(&c.path, &n, upper)?;
                if c.opaque {
                    out.opaque(&c.path)?;
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pax_records_count_their_own_length() {
        for vlen in [
            0usize, 1, 4, 5, 6, 85, 86, 87, 95, 96, 97, 990, 995, 996, 1000,
        ] {
            let mut out = Vec::new();
            pax_record(&mut out, b"SCHILY.xattr.user.k", &vec![b'v'; vlen]);
            let sp = out.iter().position(|c| *c == b' ').unwrap();
            let len: usize = std::str::from_utf8(&out[..sp]).unwrap().parse().unwrap();
            assert_eq!(len, out.len(), "value of {vlen} bytes");
            assert!(out.ends_with(b"\n"));
        }
    }

    #[test]
    fn capabilities_become_revision_2() {
        let maps: [LinuxIdMapping; 1] = [serde_json::from_value(
            serde_json::json!({"containerID": 0, "hostID": 200000, "size": 65536}),
        )
        .unwrap()];
        let mut v3 = (0x0300_0001u32).to_le_bytes().to_vec();
        v3.extend_from_slice(&[0x00, 0x04, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        let mut bound_here = v3.clone();
        bound_here.extend_from_slice(&200000u32.to_le_bytes());
        let v2 = capability_v2(&bound_here, &maps).unwrap();
        assert_eq!(v2.len(), 20);
        assert_eq!(
            &v2[..4],
            &(0x0200_0001u32).to_le_bytes(),
            "effective flag kept"
        );
        assert_eq!(&v2[4..], &bound_here[4..20]);
        let mut elsewhere = v3.clone();
        elsewhere.extend_from_slice(&100000u32.to_le_bytes());
        assert_eq!(
            capability_v2(&elsewhere, &maps),
            None,
            "another namespace's root"
        );
        assert_eq!(capability_v2(&v2, &maps).as_deref(), Some(&v2[..]));
        assert_eq!(capability_v2(b"junk", &maps), None);
    }
}

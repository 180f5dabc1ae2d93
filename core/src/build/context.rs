//! The build context: `.dockerignore` patterns, the sources of a COPY/ADD (paths and globs,
//! resolved inside the context, never outside it), and their content hash for the cache.

use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

use super::BuildError;

/// Matches one path component against a glob component (`*`, `?`, `[a-z]`, `[!x]`, `\x`),
/// as Go's `filepath.Match` does.
pub fn match_component(pat: &[u8], name: &[u8]) -> bool {
    let (mut p, mut n) = (0usize, 0usize);
    let (mut star_p, mut star_n) = (usize::MAX, 0usize);
    while n < name.len() {
        if p < pat.len() {
            match pat[p] {
                b'*' => {
                    star_p = p;
                    star_n = n;
                    p += 1;
                    continue;
                }
                b'?' => {
                    p += 1;
                    n += 1;
                    continue;
                }
                b'[' => {
                    if let Some((ok, len)) = class(&pat[p..], name[n]) {
                        if ok {
                            p += len;
                            n += 1;
                            continue;
                        }
                    }
                }
                b'\\' if p + 1 < pat.len() && pat[p + 1] == name[n] => {
                    p += 2;
                    n += 1;
                    continue;
                }
                b'\\' if p + 1 < pat.len() => {}
                c if c == name[n] => {
                    p += 1;
                    n += 1;
                    continue;
                }
                _ => {}
            }
        }
        if star_p != usize::MAX {
            p = star_p + 1;
            star_n += 1;
            n = star_n;
            continue;
        }
        return false;
    }
    while p < pat.len() && pat[p] == b'*' {
        p += 1;
    }
    p == pat.len()
}

/// A `[...]` class at the start of `pat`: (matches `c`, length of the class).
fn class(pat: &[u8], c: u8) -> Option<(bool, usize)> {
    let mut i = 1;
    let negate = matches!(pat.get(1), Some(b'!') | Some(b'^'));
    if negate {
        i += 1;
    }
    let mut hit = false;
    let mut first = true;
    while i < pat.len() {
        if pat[i] == b']' && !first {
            return Some((hit != negate, i + 1));
        }
        first = false;
        let lo = pat[i];
        if pat.get(i + 1) == Some(&b'-') && pat.get(i + 2).is_some_and(|x| *x != b']') {
            let hi = pat[i + 2];
            if lo <= c && c <= hi {
                hit = true;
            }
            i += 3;
        } else {
            if lo == c {
                hit = true;
            }
            i += 1;
        }
    }
    None
}

/// Matches a relative path (components split by `/`) against a pattern whose components may
/// be `**` (any number of components).
pub fn match_path(pat: &[&[u8]], path: &[&[u8]]) -> bool {
    match pat.first() {
        None => path.is_empty(),
        Some(&b"**") => (0..=path.len()).any(|k| match_path(&pat[1..], &path[k..])),
        Some(p) => {
            !path.is_empty() && match_component(p, path[0]) && match_path(&pat[1..], &path[1..])
        }
    }
}

fn split(p: &str) -> Vec<&[u8]> {
    p.split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .map(str::as_bytes)
        .collect()
}

/// Lexically cleans a context-relative path; `None` when it climbs out of the context.
pub fn clean(p: &str) -> Option<String> {
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

/// `.dockerignore`: patterns in order, the last matching one deciding (`!` re-includes).
#[derive(Debug, Clone, Default)]
pub struct Ignore {
    rules: Vec<(bool, String)>,
}

impl Ignore {
    pub fn parse(text: &str) -> Ignore {
        let mut rules = Vec::new();
        for l in text.lines() {
            let t = l.trim();
            if t.is_empty() || t.starts_with('#') {
                continue;
            }
            let (neg, p) = match t.strip_prefix('!') {
                Some(p) => (true, p.trim()),
                None => (false, t),
            };
            // A pattern that climbs out of the context matches nothing in it.
            let p = clean(p.trim_start_matches('/')).unwrap_or_default();
            if !p.is_empty() {
                rules.push((neg, p));
            }
        }
        Ignore { rules }
    }

    /// Reads `<context>/.dockerignore` (none: nothing ignored).
    pub fn load(context: &Path) -> Result<Ignore, BuildError> {
        let p = context.join(".dockerignore");
        match fs::read_to_string(&p) {
            Ok(t) => Ok(Ignore::parse(&t)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Ignore::default()),
            Err(e) => Err(BuildError::io("cannot read", &p, e)),
        }
    }

    /// Whether some rule re-includes (`!pattern`).
    pub fn has_exceptions(&self) -> bool {
        self.rules.iter().any(|(neg, _)| *neg)
    }

    /// Whether `rel` (or a directory above it) is excluded.
    pub fn excluded(&self, rel: &str) -> bool {
        let comps = split(rel);
        let mut out = false;
        for (neg, p) in &self.rules {
            let pc = split(p);
            // A pattern matching a parent directory matches everything below it.
            let hit = (1..=comps.len()).any(|k| match_path(&pc, &comps[..k]));
            if hit {
                out = !neg;
            }
        }
        out
    }
}

/// What one source entry is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryKind {
    Dir,
    File { size: u64 },
    Symlink(String),
}

/// One file or directory to copy: where it is on the host and where it goes, relative to the
/// COPY's destination.
#[derive(Debug, Clone)]
pub struct Entry {
    pub host: PathBuf,
    /// Path under the destination ("" for the destination itself).
    pub rel: String,
    pub kind: EntryKind,
    pub mode: u32,
    pub mtime: u64,
}

/// One resolved source: its entries (a file gives one; a directory its tree, itself first).
#[derive(Debug, Clone)]
pub struct Source {
    /// The context-relative path it was found at.
    pub path: String,
    pub is_dir: bool,
    pub entries: Vec<Entry>,
}

fn has_glob(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

/// The build context directory and its ignore rules.
#[derive(Debug, Clone)]
pub struct Context {
    pub root: PathBuf,
    pub ignore: Ignore,
    /// The Dockerfile's context-relative path, when it lies in the context (never copied).
    pub dockerfile: Option<String>,
}

impl Context {
    pub fn open(root: &Path, dockerfile: &Path) -> Result<Context, BuildError> {
        let root = fs::canonicalize(root).map_err(|e| BuildError::io("build context", root, e))?;
        if !root.is_dir() {
            return Err(BuildError::Invalid(format!(
                "build context {} is not a directory",
                root.display()
            )));
        }
        let dockerfile = fs::canonicalize(dockerfile).ok().and_then(|d| {
            d.strip_prefix(&root)
                .ok()
                .map(|p| p.to_string_lossy().into_owned())
        });
        Ok(Context {
            ignore: Ignore::load(&root)?,
            root,
            dockerfile,
        })
    }

    fn skipped(&self, rel: &str) -> bool {
        rel == ".dockerignore"
            || self.dockerfile.as_deref() == Some(rel)
            || (!rel.is_empty() && self.ignore.excluded(rel))
    }

    /// Every path in the context that is not excluded, as context-relative paths.
    fn all_paths(&self) -> Result<Vec<String>, BuildError> {
        let mut out = Vec::new();
        let mut stack = vec![String::new()];
        while let Some(rel) = stack.pop() {
            let dir = self.root.join(&rel);
            let rd = fs::read_dir(&dir).map_err(|e| BuildError::io("cannot list", &dir, e))?;
            for ent in rd {
                let ent = ent.map_err(|e| BuildError::io("cannot list", &dir, e))?;
                let name = ent.file_name().to_string_lossy().into_owned();
                let r = if rel.is_empty() {
                    name
                } else {
                    format!("{rel}/{name}")
                };
                let is_dir = ent.file_type().map(|t| t.is_dir()).unwrap_or(false);
                if is_dir {
                    stack.push(r.clone());
                }
                if !self.skipped(&r) {
                    out.push(r);
                }
            }
        }
        out.sort();
        Ok(out)
    }

    /// Resolves COPY/ADD sources (already variable-expanded): each must exist in the context
    /// and not be excluded; globs match context paths.
    pub fn sources(&self, srcs: &[String]) -> Result<Vec<Source>, BuildError> {
        let mut out = Vec::new();
        let mut all: Option<Vec<String>> = None;
        for s in srcs {
            let Some(rel) = clean(s) else {
                return Err(BuildError::Invalid(format!(
                    "source {s:?} is outside the build context"
                )));
            };
            if has_glob(&rel) {
                if all.is_none() {
                    all = Some(self.all_paths()?);
                }
                let pat = split(&rel);
                let hits: Vec<&String> = all
                    .iter()
                    .flatten()
                    .filter(|p| match_path(&pat, &split(p)))
                    .collect();
                if hits.is_empty() {
                    return Err(BuildError::Invalid(format!(
                        "no source files were specified: {s:?} matches no file in the build context (or only excluded ones)"
                    )));
                }
                for h in hits {
                    out.push(self.source(h)?);
                }
            } else {
                if self.skipped(&rel) && !rel.is_empty() {
                    return Err(BuildError::Invalid(format!(
                        "{s:?}: excluded by .dockerignore (or the Dockerfile itself)"
                    )));
                }
                out.push(self.source(&rel)?);
            }
        }
        Ok(out)
    }

    fn source(&self, rel: &str) -> Result<Source, BuildError> {
        let host = self.root.join(rel);
        let md = fs::symlink_metadata(&host).map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                BuildError::Invalid(format!(
                    "{rel:?}: no such file or directory in the build context"
                ))
            } else {
                BuildError::io("cannot stat", &host, e)
            }
        })?;
        // A source that is a symlink is followed (it must stay in the context).
        let (host, md) = if md.file_type().is_symlink() {
            let real =
                fs::canonicalize(&host).map_err(|e| BuildError::io("cannot follow", &host, e))?;
            if !real.starts_with(&self.root) {
                return Err(BuildError::Invalid(format!(
                    "{rel:?} is a symbolic link pointing outside the build context"
                )));
            }
            let md = fs::metadata(&real).map_err(|e| BuildError::io("cannot stat", &real, e))?;
            (real, md)
        } else {
            (host, md)
        };
        let mut entries = Vec::new();
        if md.is_dir() {
            entries.push(entry(&host, String::new(), &md)?);
            self.walk(&host, rel, "", &mut entries)?;
            entries.sort_by(|a, b| a.rel.cmp(&b.rel));
        } else {
            entries.push(entry(&host, String::new(), &md)?);
        }
        Ok(Source {
            path: rel.to_string(),
            is_dir: md.is_dir(),
            entries,
        })
    }
}

impl Context {
    /// Adds the entries below `dir` (context path `crel`, copy path `drel`) to `out`. An
    /// excluded directory is still entered when a `!` rule may re-include something in it;
    /// it is copied only if something in it is.
    fn walk(
        &self,
        dir: &Path,
        crel: &str,
        drel: &str,
        out: &mut Vec<Entry>,
    ) -> Result<(), BuildError> {
        let mut names: Vec<_> = fs::read_dir(dir)
            .map_err(|e| BuildError::io("cannot list", dir, e))?
            .filter_map(|e| e.ok())
            .collect();
        names.sort_by_key(|e| e.file_name());
        for e in names {
            let name = e.file_name().to_string_lossy().into_owned();
            let c = if crel.is_empty() {
                name.clone()
            } else {
                format!("{crel}/{name}")
            };
            let d = if drel.is_empty() {
                name
            } else {
                format!("{drel}/{name}")
            };
            let p = e.path();
            let md = fs::symlink_metadata(&p).map_err(|e| BuildError::io("cannot stat", &p, e))?;
            let skipped = self.skipped(&c);
            if md.is_dir() {
                if skipped && !self.ignore.has_exceptions() {
                    continue;
                }
                let mut inner = Vec::new();
                self.walk(&p, &c, &d, &mut inner)?;
                if !skipped || !inner.is_empty() {
                    out.push(entry(&p, d, &md)?);
                    out.extend(inner);
                }
            } else if !skipped {
                out.push(entry(&p, d, &md)?);
            }
        }
        Ok(())
    }
}

fn entry(host: &Path, rel: String, md: &fs::Metadata) -> Result<Entry, BuildError> {
    let ft = md.file_type();
    let kind = if ft.is_dir() {
        EntryKind::Dir
    } else if ft.is_file() {
        EntryKind::File { size: md.len() }
    } else if ft.is_symlink() {
        let t = fs::read_link(host).map_err(|e| BuildError::io("cannot read link", host, e))?;
        EntryKind::Symlink(t.to_string_lossy().into_owned())
    } else {
        return Err(BuildError::Invalid(format!(
            "{}: not a regular file, directory or symbolic link (sockets, fifos and devices are not copied)",
            host.display()
        )));
    };
    Ok(Entry {
        host: host.to_path_buf(),
        rel,
        kind,
        mode: md.permissions().mode() & 0o7777,
        mtime: md.mtime().max(0) as u64,
    })
}

/// The content hash of sources, for the cache key: paths, kinds, modes, link targets and
/// file contents (not owners or times, as Docker).
pub fn hash_sources(sources: &[Source]) -> Result<String, BuildError> {
    let mut h = Sha256::new();
    for s in sources {
        h.update(format!("source {} {}\n", s.path, s.is_dir));
        for e in &s.entries {
            h.update(format!("{:?} {:o} {:?}\n", e.rel, e.mode, e.kind));
            if let EntryKind::File { .. } = e.kind {
                let mut f = fs::File::open(&e.host)
                    .map_err(|x| BuildError::io("cannot open", &e.host, x))?;
                let mut buf = vec![0u8; 1 << 16];
                loop {
                    let n = f
                        .read(&mut buf)
                        .map_err(|x| BuildError::io("cannot read", &e.host, x))?;
                    if n == 0 {
                        break;
                    }
                    h.update(&buf[..n]);
                }
            }
        }
    }
    Ok(hex::encode(h.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        let m = |p: &str, n: &str| match_component(p.as_bytes(), n.as_bytes());
        assert!(m("*.txt", "a.txt"));
        assert!(!m("*.txt", "a.txt.bak"));
        assert!(m("a?c", "abc"));
        assert!(m("[a-c]x", "bx"));
        assert!(!m("[!a-c]x", "bx"));
        assert!(m("*", ""));
        assert!(m("\\*", "*"));
        assert!(!m("\\*", "a"));
        let mp = |p: &str, n: &str| match_path(&split(p), &split(n));
        assert!(mp("**/*.go", "a/b/c.go"));
        assert!(mp("**/*.go", "c.go"));
        assert!(mp("a/**", "a/b/c"));
        assert!(!mp("a/*", "a/b/c"));
        assert!(mp("a/*/c", "a/b/c"));
    }

    #[test]
    fn dockerignore_rules() {
        let i =
            Ignore::parse("# comment\n*.log\nbuild/\n!build/keep.txt\n/secret\n**/*.tmp\n../x\n");
        assert!(i.excluded("a.log"));
        assert!(!i.excluded("dir/a.log"), "*.log is for the top level only");
        assert!(i.excluded("build/out.o"));
        assert!(!i.excluded("build/keep.txt"));
        assert!(i.excluded("secret"));
        assert!(i.excluded("secret/inner"));
        assert!(i.excluded("deep/down/x.tmp"));
        assert!(!i.excluded("app.py"));
    }

    #[test]
    fn cleaning() {
        assert_eq!(clean("./a/../b/").as_deref(), Some("b"));
        assert_eq!(clean("/abs/x").as_deref(), Some("abs/x"));
        assert_eq!(clean(".").as_deref(), Some(""));
        assert_eq!(clean("../x"), None);
    }

    #[test]
    fn sources_and_hashes() {
        let d = std::env::temp_dir().join(format!("rb-ctx-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(d.join("src/sub")).expect("mkdir");
        fs::write(d.join("src/a.txt"), "a").expect("write");
        fs::write(d.join("src/sub/b.txt"), "b").expect("write");
        fs::write(d.join("src/skip.log"), "x").expect("write");
        fs::write(d.join("Dockerfile"), "FROM x").expect("write");
        fs::write(d.join(".dockerignore"), "**/*.log\n").expect("write");
        let ctx = Context::open(&d, &d.join("Dockerfile")).expect("ctx");
        let s = ctx.sources(&["src".into()]).expect("sources");
        let rels: Vec<&str> = s[0].entries.iter().map(|e| e.rel.as_str()).collect();
        assert_eq!(rels, vec!["", "a.txt", "sub", "sub/b.txt"]);
        let all = ctx.sources(&[".".into()]).expect("all");
        assert!(!all[0]
            .entries
            .iter()
            .any(|e| e.rel == "Dockerfile" || e.rel == ".dockerignore"));
        let g = ctx.sources(&["src/*.txt".into()]).expect("glob");
        assert_eq!(g.len(), 1);
        assert!(ctx.sources(&["src/skip.log".into()]).is_err());
        assert!(ctx
            .sources(&["nope".into()])
            .unwrap_err()
            .to_string()
            .contains("nope"));
        assert!(ctx
            .sources(&["../etc/passwd".into()])
            .unwrap_err()
            .to_string()
            .contains("outside"));
        assert!(ctx.sources(&["*.none".into()]).is_err());
        let h1 = hash_sources(&s).expect("hash");
        fs::write(d.join("src/skip.log"), "changed").expect("write");
        assert_eq!(
            h1,
            hash_sources(&ctx.sources(&["src".into()]).expect("s")).expect("hash")
        );
        fs::write(d.join("src/sub/b.txt"), "B").expect("write");
        assert_ne!(
            h1,
            hash_sources(&ctx.sources(&["src".into()]).expect("s")).expect("hash")
        );
        let _ = fs::remove_dir_all(&d);
    }
}

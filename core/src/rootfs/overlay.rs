//! Kernel overlayfs inside the container's user namespace.
//!
//! The mount is made by the launch child (after clone, before pivot_root), so it follows the
//! child's rule: [`OverlayMount`] is built in the parent and [`mount`] only makes system calls.
//! The new mount API is tried first, one `lowerdir+` per layer (Linux >= 6.8), which has no
//! limit on the number of layers; older kernels (or a path longer than `fsconfig`'s 255-byte
//! strings) fall back to `mount(2)` with one option string, relative to the layers' common
//! parent when the absolute form would not fit in a page.
//!
//! Whether this kernel allows overlayfs in a user namespace at all, whiteouts included, is
//! probed once (in a throwaway user namespace) and cached per kernel release in the store.

use std::ffi::{CStr, CString};
use std::os::fd::RawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{Layers, RootfsError};
use crate::sys;

/// Longest value `fsconfig(FSCONFIG_SET_STRING)` accepts (the kernel copies at most 256 bytes
/// including the NUL).
const FSCONFIG_MAX: usize = 255;
/// Longest `mount(2)` data string (one page, NUL included).
const MOUNT_DATA_MAX: usize = 4095;

/// A kernel overlay mount, prepared in the parent.
#[derive(Debug, Clone)]
pub struct OverlayMount {
    /// Lower layers, topmost first (overlay's order).
    pub lowers_top_first: Vec<CString>,
    pub upper: CString,
    pub work: CString,
    /// Every value fits in `fsconfig`: try the new mount API first.
    pub new_api: bool,
    /// `mount(2)` data, when it can be expressed (None: paths with `:`, `,` or `\`, or too long).
    pub legacy_data: Option<CString>,
    /// Directory to chdir into before `mount(2)` (the data then holds relative paths).
    pub legacy_dir: Option<CString>,
}

fn cpath(p: &Path) -> Result<CString, RootfsError> {
    CString::new(p.as_os_str().as_bytes())
        .map_err(|_| RootfsError::invalid("layer path", p.display().to_string(), "contains a NUL"))
}

fn legacy_safe(p: &str) -> bool {
    !p.contains([':', ',', '\\'])
}

fn legacy_string(lowers_top_first: &[String], upper: &str, work: &str) -> String {
    format!(
        "lowerdir={},upperdir={upper},workdir={work},userxattr",
        lowers_top_first.join(":")
    )
}

/// The longest common ancestor directory of some absolute paths.
fn common_dir(paths: &[&Path]) -> Option<PathBuf> {
    let first = paths.first()?;
    let mut common: PathBuf = first.parent()?.to_path_buf();
    for p in &paths[1..] {
        while !p.starts_with(&common) {
            if !common.pop() {
                return None;
            }
        }
    }
    Some(common)
}

impl OverlayMount {
    pub fn new(layers: &Layers) -> Result<OverlayMount, RootfsError> {
        let tops: Vec<&PathBuf> = layers.lower.iter().rev().collect();
        let lowers_top_first = tops
            .iter()
            .map(|p| cpath(p))
            .collect::<Result<Vec<_>, _>>()?;
        let upper = cpath(&layers.upper)?;
        let work = cpath(&layers.work)?;
        let new_api = lowers_top_first
            .iter()
            .chain([&upper, &work])
            .all(|c| c.as_bytes().len() <= FSCONFIG_MAX);

        let s = |p: &Path| p.to_string_lossy().into_owned();
        let all: Vec<&Path> = tops
            .iter()
            .map(|p| p.as_path())
            .chain([layers.upper.as_path(), layers.work.as_path()])
            .collect();
        let mut legacy_data = None;
        let mut legacy_dir = None;
        if all.iter().all(|p| legacy_safe(&s(p))) {
            let abs = legacy_string(
                &tops.iter().map(|p| s(p)).collect::<Vec<_>>(),
                &s(&layers.upper),
                &s(&layers.work),
            );
            if abs.len() <= MOUNT_DATA_MAX {
                legacy_data = Some(abs);
            } else if let Some(dir) = common_dir(&all) {
                let rel = |p: &Path| {
                    p.strip_prefix(&dir)
                        .map(|r| r.to_string_lossy().into_owned())
                        .unwrap_or_else(|_| s(p))
                };
                let text = legacy_string(
                    &tops.iter().map(|p| rel(p)).collect::<Vec<_>>(),
                    &rel(&layers.upper),
                    &rel(&layers.work),
                );
                if text.len() <= MOUNT_DATA_MAX {
                    legacy_dir = Some(cpath(&dir)?);
                    legacy_data = Some(text);
                }
            }
        }
        if !new_api && legacy_data.is_none() {
            return Err(RootfsError::invalid(
                "layered rootfs",
                format!("{} layers", layers.lower.len()),
                "the layer paths are too long for the kernel's overlay options (each must be under 256 bytes, or all together under a page)",
            ));
        }
        Ok(OverlayMount {
            lowers_top_first,
            upper,
            work,
            new_api,
            legacy_data: legacy_data
                .map(|d| CString::new(d).map_err(|_| RootfsError::invalid("layer path", "", "NUL")))
                .transpose()?,
            legacy_dir,
        })
    }
}

fn new_api_mount(m: &OverlayMount) -> Result<RawFd, i32> {
    let fs = sys::fsopen(c"overlay")?;
    let result = (|| {
        for l in &m.lowers_top_first {
            sys::fsconfig_string(fs, c"lowerdir+", l)?;
        }
        sys::fsconfig_string(fs, c"upperdir", &m.upper)?;
        sys::fsconfig_string(fs, c"workdir", &m.work)?;
        sys::fsconfig_flag(fs, c"userxattr")?;
        sys::fsconfig_create(fs)?;
        sys::fsmount(fs, 0)
    })();
    sys::close(fs);
    result
}

/// Mounts the overlay on `target`. Async-signal-safe: system calls only (the launch child and
/// the probe call it between clone and exit). May change the working directory.
pub fn mount(m: &OverlayMount, target: &CStr) -> Result<(), i32> {
    let mut first_err = None;
    if m.new_api {
        match new_api_mount(m) {
            Ok(fd) => {
                let r = sys::move_mount(fd, target, 0);
                sys::close(fd);
                return r;
            }
            Err(e) => first_err = Some(e),
        }
    }
    let Some(data) = &m.legacy_data else {
        return Err(first_err.unwrap_or(libc::EINVAL));
    };
    if let Some(dir) = &m.legacy_dir {
        // SAFETY: chdir with a valid NUL-terminated path.
        if unsafe { libc::chdir(dir.as_ptr()) } < 0 {
            return Err(sys::errno());
        }
    }
    sys::mount(Some(c"overlay"), target, Some(c"overlay"), 0, Some(data))
}

/// What the probe found.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Probe {
    /// Overlayfs mounts in a user namespace and creates whiteouts and opaque directories.
    pub works: bool,
    /// What failed, or "ok".
    pub detail: String,
    pub kernel: String,
    /// Where the answer is cached (None: it could not be written).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache: Option<PathBuf>,
}

fn kernel_release() -> String {
    // SAFETY: an all-zero utsname is a valid out-buffer.
    let mut u: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: valid out-buffer.
    if unsafe { libc::uname(&mut u) } < 0 {
        return "unknown".into();
    }
    // SAFETY: uname NUL-terminates the release.
    unsafe { CStr::from_ptr(u.release.as_ptr()) }
        .to_string_lossy()
        .into_owned()
}

/// The cached probe result for this kernel, probing (and caching) when there is none.
/// The cache lives in `<store>/cache/overlay-probe-<kernel release>.json`.
pub fn probe_cached() -> Probe {
    probe_cached_in(&super::data_root(None))
}

/// [`probe_cached`] with an explicit store root.
pub fn probe_cached_in(store: &Path) -> Probe {
    let kernel = kernel_release();
    let safe: String = kernel
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    let cache_dir = store.join("cache");
    let file = cache_dir.join(format!("overlay-probe-{safe}.json"));
    if let Ok(text) = std::fs::read_to_string(&file) {
        if let Ok(mut p) = serde_json::from_str::<Probe>(&text) {
            if p.kernel == kernel {
                p.cache = Some(file);
                return p;
            }
        }
    }
    let work_dir = if super::mkdir_private(&cache_dir).is_ok() {
        cache_dir.clone()
    } else {
        std::env::temp_dir()
    };
    let (works, detail) = match probe_in(&work_dir) {
        Ok(()) => (true, "ok".to_string()),
        Err(e) => (false, e),
    };
    let mut p = Probe {
        works,
        detail,
        kernel,
        cache: None,
    };
    if let Ok(text) = serde_json::to_vec_pretty(&p) {
        if crate::container::state::write_atomic(&file, &text).is_ok() {
            p.cache = Some(file);
        }
    }
    p
}

/// Mounts an overlay in a new user namespace (this user as root) under `dir`, deletes a lower
/// file and replaces a lower directory through it, and checks that the upper layer got a
/// whiteout (char 0/0) and an opaque directory (`user.overlay.opaque=y`).
pub fn probe_in(dir: &Path) -> Result<(), String> {
    sweep_abandoned_probes(dir, std::time::Duration::from_secs(60));
    let base = dir.join(format!("probe-{}", &super::random_hex()[..16]));
    let r = probe_at(&base);
    let _ = super::remove_tree(&base);
    r
}

/// Removes this user's `probe-*` directories under `dir` older than `age`: what a probe killed
/// before its clean-up left (a probe takes milliseconds, and its directory's time is its start).
fn sweep_abandoned_probes(dir: &Path, age: std::time::Duration) {
    use std::os::unix::fs::MetadataExt;
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    // SAFETY: geteuid cannot fail.
    let me = unsafe { libc::geteuid() };
    for e in entries.flatten() {
        if !e.file_name().as_encoded_bytes().starts_with(b"probe-") {
            continue;
        }
        let Ok(md) = std::fs::symlink_metadata(e.path()) else {
            continue;
        };
        let old = md
            .modified()
            .ok()
            .and_then(|m| m.elapsed().ok())
            .is_some_and(|a| a > age);
        if md.is_dir() && md.uid() == me && old {
            let _ = super::remove_tree(&e.path());
        }
    }
}

fn probe_at(base: &Path) -> Result<(), String> {
    let io = |p: &Path, e: std::io::Error| format!("{}: {e}", p.display());
    for d in ["lower/dir", "upper", "work", "merged"] {
        let p = base.join(d);
        std::fs::create_dir_all(&p).map_err(|e| io(&p, e))?;
    }
    for f in ["lower/file", "lower/dir/inner"] {
        let p = base.join(f);
        std::fs::write(&p, b"x").map_err(|e| io(&p, e))?;
    }
    let layers = Layers {
        lower: vec![base.join("lower")],
        upper: base.join("upper"),
        work: base.join("work"),
        driver: super::Driver::Overlay,
    };
    let m = OverlayMount::new(&layers).map_err(|e| e.to_string())?;
    let c = |p: PathBuf| cpath(&p).map_err(|e| e.to_string());
    let merged = c(base.join("merged"))?;
    let m_file = c(base.join("merged/file"))?;
    let m_inner = c(base.join("merged/dir/inner"))?;
    let m_dir = c(base.join("merged/dir"))?;
    let u_file = c(base.join("upper/file"))?;
    let u_dir = c(base.join("upper/dir"))?;

    // SAFETY: geteuid/getegid cannot fail.
    let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
    let mut go = [0 as RawFd; 2];
    let mut res = [0 as RawFd; 2];
    // SAFETY: pipe2 fills the arrays with fresh descriptors.
    unsafe {
        if libc::pipe2(go.as_mut_ptr(), libc::O_CLOEXEC) < 0 {
            return Err(format!("pipe: {}", std::io::Error::last_os_error()));
        }
        if libc::pipe2(res.as_mut_ptr(), libc::O_CLOEXEC) < 0 {
            sys::close(go[0]);
            sys::close(go[1]);
            return Err(format!("pipe: {}", std::io::Error::last_os_error()));
        }
    }
    // SAFETY: the child branch only makes system calls over the strings prepared above and
    // exits with _exit; nothing in it allocates or takes a lock.
    let pid = unsafe { sys::clone_legacy((libc::CLONE_NEWUSER | libc::CLONE_NEWNS) as u64) };
    match pid {
        Ok(0) => {
            sys::close(go[1]);
            sys::close(res[0]);
            let step = probe_child(
                go[0], &m, &merged, &m_file, &m_inner, &m_dir, &u_file, &u_dir,
            );
            let (s, e) = match step {
                Ok(()) => (0u32, 0i32),
                Err((s, e)) => (s, e),
            };
            let mut buf = [0u8; 8];
            buf[..4].copy_from_slice(&s.to_ne_bytes());
            buf[4..].copy_from_slice(&e.to_ne_bytes());
            let _ = sys::write_all(res[1], &buf);
            // SAFETY: leaving the forked child without running the host's exit handlers.
            unsafe { libc::_exit(0) }
        }
        Ok(pid) => {
            sys::close(go[0]);
            sys::close(res[1]);
            let write = |f: &str, s: String| std::fs::write(format!("/proc/{pid}/{f}"), s);
            let mapped = write("setgroups", "deny".into())
                .and_then(|_| write("uid_map", format!("0 {uid} 1")))
                .and_then(|_| write("gid_map", format!("0 {gid} 1")));
            let _ = sys::write_all(go[1], b"g");
            sys::close(go[1]);
            let mut buf = [0u8; 8];
            // SAFETY: reading into a buffer we own.
            let n = unsafe { libc::read(res[0], buf.as_mut_ptr().cast(), buf.len()) };
            sys::close(res[0]);
            let _ = crate::launch::wait_pid(pid);
            if let Err(e) = mapped {
                return Err(format!("cannot map ids in a new user namespace: {e}"));
            }
            if n != 8 {
                return Err("the probe process died".into());
            }
            let step = u32::from_ne_bytes([buf[0], buf[1], buf[2], buf[3]]);
            let errno = i32::from_ne_bytes([buf[4], buf[5], buf[6], buf[7]]);
            let err = std::io::Error::from_raw_os_error(errno);
            match step {
                0 => Ok(()),
                1 => Err("the probe's user namespace was not set up".into()),
                2 => Err(format!(
                    "mounting overlayfs in a user namespace failed: {err}"
                )),
                3 => Err(format!(
                    "deleting a lower file through the overlay failed: {err}"
                )),
                4 => Err(format!(
                    "replacing a lower directory through the overlay failed: {err}"
                )),
                5 => Err(
                    "deleting a lower file left no whiteout (char 0/0) in the upper layer".into(),
                ),
                6 => Err(
                    "replacing a lower directory left no user.overlay.opaque=y in the upper layer"
                        .into(),
                ),
                _ => Err(format!("probe step {step} failed: {err}")),
            }
        }
        Err(e) => Err(format!(
            "cannot create a user namespace: {}",
            std::io::Error::from_raw_os_error(e)
        )),
    }
}

#[allow(clippy::too_many_arguments)]
fn probe_child(
    go: RawFd,
    m: &OverlayMount,
    merged: &CStr,
    m_file: &CStr,
    m_inner: &CStr,
    m_dir: &CStr,
    u_file: &CStr,
    u_dir: &CStr,
) -> Result<(), (u32, i32)> {
    let mut b = [0u8; 1];
    // SAFETY: reading one byte into a buffer we own.
    if unsafe { libc::read(go, b.as_mut_ptr().cast(), 1) } != 1 {
        return Err((1, sys::errno()));
    }
    sys::mount(None, c"/", None, libc::MS_PRIVATE | libc::MS_REC, None).map_err(|e| (2, e))?;
    mount(m, merged).map_err(|e| (2, e))?;
    // SAFETY: plain path-based system calls on valid NUL-terminated strings.
    unsafe {
        if libc::unlink(m_file.as_ptr()) < 0 {
            return Err((3, sys::errno()));
        }
        if libc::unlink(m_inner.as_ptr()) < 0
            || libc::rmdir(m_dir.as_ptr()) < 0
            || libc::mkdir(m_dir.as_ptr(), 0o755) < 0
        {
            return Err((4, sys::errno()));
        }
        let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
        if libc::lstat(u_file.as_ptr(), st.as_mut_ptr()) < 0 {
            return Err((5, sys::errno()));
        }
        let st = st.assume_init();
        if st.st_mode & libc::S_IFMT != libc::S_IFCHR || st.st_rdev != 0 {
            return Err((5, 0));
        }
        let mut v = [0u8; 4];
        let n = libc::lgetxattr(
            u_dir.as_ptr(),
            c"user.overlay.opaque".as_ptr(),
            v.as_mut_ptr().cast(),
            v.len(),
        );
        if n != 1 || v[0] != b'y' {
            return Err((6, sys::errno()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layers(n: usize, prefix: &str) -> Layers {
        Layers {
            lower: (0..n)
                .map(|i| PathBuf::from(format!("{prefix}/l{i}")))
                .collect(),
            upper: PathBuf::from(format!("{prefix}/u")),
            work: PathBuf::from(format!("{prefix}/w")),
            driver: super::super::Driver::Overlay,
        }
    }

    #[test]
    fn abandoned_probe_directories_are_swept() {
        let dir = std::env::temp_dir().join(format!("rb-sweep-{}", super::super::random_hex()));
        let (stale, fresh, other) = (dir.join("probe-aa"), dir.join("probe-bb"), dir.join("keep"));
        for d in [&stale, &fresh, &other] {
            std::fs::create_dir_all(d.join("work/work")).unwrap();
        }
        let ago = std::time::SystemTime::now() - std::time::Duration::from_secs(300);
        for d in [&stale, &other] {
            std::fs::File::open(d)
                .unwrap()
                .set_times(std::fs::FileTimes::new().set_modified(ago))
                .unwrap();
        }
        sweep_abandoned_probes(&dir, std::time::Duration::from_secs(60));
        assert!(!stale.exists(), "a 5-minute-old probe directory is removed");
        assert!(fresh.exists(), "a probe at work now is left alone");
        assert!(other.exists(), "only probe-* directories are touched");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn legacy_data_is_topmost_first() {
        let m = OverlayMount::new(&layers(3, "/s")).unwrap();
        assert!(m.new_api);
        assert_eq!(
            m.legacy_data.unwrap().to_str().unwrap(),
            "lowerdir=/s/l2:/s/l1:/s/l0,upperdir=/s/u,workdir=/s/w,userxattr"
        );
        assert_eq!(m.lowers_top_first[0].to_str().unwrap(), "/s/l2");
    }

    #[test]
    fn many_layers_use_relative_legacy_paths() {
        let prefix = format!("/store/{}", "x".repeat(100));
        let m = OverlayMount::new(&layers(60, &prefix)).unwrap();
        let data = m.legacy_data.unwrap();
        assert!(data.as_bytes().len() <= MOUNT_DATA_MAX);
        assert_eq!(m.legacy_dir.unwrap().to_str().unwrap(), prefix);
        assert!(data.to_str().unwrap().starts_with("lowerdir=l59:l58:"));
    }

    #[test]
    fn unsafe_legacy_paths_keep_new_api() {
        let mut l = layers(1, "/s");
        l.lower[0] = PathBuf::from("/s/a:b");
        let m = OverlayMount::new(&l).unwrap();
        assert!(m.new_api && m.legacy_data.is_none());
    }
}

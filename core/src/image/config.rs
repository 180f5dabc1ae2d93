//! The image config applied to a run, as Docker does it: the command from Entrypoint and Cmd
//! (with `--entrypoint` and a user command), Env merged under the user's `-e`, WorkingDir,
//! User resolved by name through the image's own `/etc/passwd` and `/etc/group`, and the
//! ExposedPorts/Volumes/Labels/StopSignal handed back for the caller to record.

use std::collections::BTreeMap;
use std::ffi::CString;
use std::io::Read;
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use oci_spec::image::ImageConfiguration;

use super::unpack::OPAQUE_XATTR;
use super::{ImageError, Result};
use crate::spec::RunOptions;
use crate::sys;

/// Largest /etc/passwd or /etc/group read from an image.
const MAX_DB: u64 = 8 << 20;

/// Read access to files of a container's root filesystem before it is mounted.
pub trait RootfsFiles {
    /// The content of the file at `path` (absolute, inside the rootfs), if it exists.
    fn read(&self, path: &str) -> Option<Vec<u8>>;
}

/// Reads a file inside `root` with every symlink resolved in `root`.
fn read_in_root(root: &Path, rel: &str) -> Option<Vec<u8>> {
    let croot = CString::new(root.as_os_str().as_bytes()).ok()?;
    // SAFETY: valid NUL-terminated path.
    let rfd = unsafe {
        libc::open(
            croot.as_ptr(),
            libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    };
    if rfd < 0 {
        return None;
    }
    // SAFETY: a descriptor we just opened.
    let rfd = unsafe { OwnedFd::from_raw_fd(rfd) };
    let crel = CString::new(rel.trim_start_matches('/')).ok()?;
    let fd = sys::openat2(
        std::os::fd::AsRawFd::as_raw_fd(&rfd),
        &crel,
        (libc::O_RDONLY | libc::O_CLOEXEC | libc::O_NONBLOCK) as u64,
        sys::RESOLVE_IN_ROOT | sys::RESOLVE_NO_MAGICLINKS,
    )
    .ok()?;
    // SAFETY: a descriptor openat2 just returned.
    let f = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) });
    if !f.metadata().ok()?.is_file() {
        return None;
    }
    let mut out = Vec::new();
    f.take(MAX_DB).read_to_end(&mut out).ok()?;
    Some(out)
}

/// A plain root filesystem directory.
pub struct DirFiles(pub PathBuf);

impl RootfsFiles for DirFiles {
    fn read(&self, path: &str) -> Option<Vec<u8>> {
        read_in_root(&self.0, path)
    }
}

/// Unpacked image layers (lowest first, as [`super::Store::layer_dirs`] returns them), read as
/// the overlay would show them: top layer first, whiteouts and opaque directories respected.
pub struct LayerFiles<'a>(pub &'a [PathBuf]);

fn is_whiteout(m: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    m.file_type().is_char_device() && m.rdev() == 0
}

fn is_opaque(p: &Path) -> bool {
    let Ok(c) = CString::new(p.as_os_str().as_bytes()) else {
        return false;
    };
    let mut buf = [0u8; 4];
    // SAFETY: valid strings and a buffer with its length.
    let n = unsafe {
        libc::lgetxattr(
            c.as_ptr(),
            OPAQUE_XATTR.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    n == 1 && buf[0] == b'y'
}

impl RootfsFiles for LayerFiles<'_> {
    fn read(&self, path: &str) -> Option<Vec<u8>> {
        let comps: Vec<&str> = path
            .split('/')
            .filter(|c| !c.is_empty() && *c != ".")
            .collect();
        if comps.is_empty() || comps.contains(&"..") {
            return None;
        }
        for layer in self.0.iter().rev() {
            let mut dir = layer.clone();
            let mut opaque = false;
            for (i, c) in comps.iter().enumerate() {
                let p = dir.join(c);
                let Ok(m) = std::fs::symlink_metadata(&p) else {
                    break;
                };
                if is_whiteout(&m) {
                    return None;
                }
                if i == comps.len() - 1 {
                    return read_in_root(layer, &comps.join("/"));
                }
                if !m.is_dir() {
                    // A file or symlink here hides whatever lower layers have below it.
                    return None;
                }
                if is_opaque(&p) {
                    opaque = true;
                }
                dir = p;
            }
            if opaque {
                return None;
            }
        }
        None
    }
}

/// What applying the image config gives besides the changes to [`RunOptions`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Applied {
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups of the user from the image's /etc/group.
    pub additional_gids: Vec<u32>,
    pub home: Option<String>,
    /// `ExposedPorts` (`80/tcp`), to be recorded with the container.
    pub exposed_ports: Vec<String>,
    pub volumes: Vec<String>,
    pub labels: BTreeMap<String, String>,
    pub stop_signal: Option<String>,
    /// The container's own config in the image config's terms (`Entrypoint`, `Cmd`, `Env`,
    /// `WorkingDir`, `User`: the image's with the user's run options applied), what `commit`
    /// records in the new image as Docker does.
    pub container_config: serde_json::Value,
}

/// Docker's choice of the process args.
///
/// * no `--entrypoint`: image Entrypoint + (user command, or image Cmd when none is given);
/// * `--entrypoint X`: `[X]` + user command (the image Cmd is dropped);
/// * `--entrypoint ''`: just the user command (the image Entrypoint and Cmd are dropped).
pub fn command(
    image_entrypoint: &[String],
    image_cmd: &[String],
    entrypoint: Option<&str>,
    user_cmd: &[String],
) -> Result<Vec<String>> {
    let mut args: Vec<String> = match entrypoint {
        Some("") => Vec::new(),
        Some(e) => vec![e.to_string()],
        None => image_entrypoint.to_vec(),
    };
    if !user_cmd.is_empty() {
        args.extend_from_slice(user_cmd);
    } else if entrypoint.is_none() {
        args.extend_from_slice(image_cmd);
    }
    if args.is_empty() {
        return Err(ImageError::Config(
            "no command specified: the image has no Entrypoint or Cmd, give one after the image name".into(),
        ));
    }
    Ok(args)
}

struct Passwd {
    name: String,
    uid: u32,
    gid: u32,
    home: String,
}

fn parse_passwd(text: &str) -> Vec<Passwd> {
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            Some(Passwd {
                name: f.first()?.to_string(),
                uid: f.get(2)?.parse().ok()?,
                gid: f.get(3)?.parse().ok()?,
                home: f.get(5).map_or("/".into(), |s| s.to_string()),
            })
        })
        .collect()
}

struct Group {
    name: String,
    gid: u32,
    members: Vec<String>,
}

fn parse_group(text: &str) -> Vec<Group> {
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            Some(Group {
                name: f.first()?.to_string(),
                gid: f.get(2)?.parse().ok()?,
                members: f
                    .get(3)
                    .map(|m| {
                        m.split(',')
                            .filter(|s| !s.is_empty())
                            .map(String::from)
                            .collect()
                    })
                    .unwrap_or_default(),
            })
        })
        .collect()
}

/// Resolves `user[:group]` (names or numbers) against the image's passwd and group files, as
/// runc's `GetExecUser` does. Returns (uid, gid, supplementary gids, home).
pub fn resolve_user(
    spec: &str,
    files: &dyn RootfsFiles,
) -> Result<(u32, u32, Vec<u32>, Option<String>)> {
    let (u, g) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let passwd = files
        .read("/etc/passwd")
        .map(|b| parse_passwd(&String::from_utf8_lossy(&b)));
    let groups = files
        .read("/etc/group")
        .map(|b| parse_group(&String::from_utf8_lossy(&b)));
    let u = if u.is_empty() { "0" } else { u };
    let entry = match u.parse::<u32>() {
        Ok(n) => passwd.as_ref().and_then(|p| p.iter().find(|e| e.uid == n)),
        Err(_) => {
            let Some(p) = passwd.as_ref() else {
                return Err(ImageError::Config(format!(
                    "unable to find user {u}: the image has no /etc/passwd"
                )));
            };
            Some(p.iter().find(|e| e.name == u).ok_or_else(|| {
                ImageError::Config(format!(
                    "unable to find user {u}: no matching entries in passwd file"
                ))
            })?)
        }
    };
    if u.starts_with('-') || (u.bytes().all(|c| c.is_ascii_digit()) && u.parse::<u32>().is_err()) {
        return Err(ImageError::Config(format!(
            "invalid user {u:?}: uid out of range"
        )));
    }
    let uid = entry.map_or_else(|| u.parse::<u32>().unwrap_or(0), |e| e.uid);
    let mut gid = entry.map_or(0, |e| e.gid);
    let home = entry.map(|e| e.home.clone());
    let mut sgids = Vec::new();
    match g {
        Some(g) if !g.is_empty() => {
            gid = match g.parse::<u32>() {
                Ok(n) => n,
                Err(_) => {
                    let found = groups
                        .as_ref()
                        .and_then(|gs| gs.iter().find(|x| x.name == g));
                    found.map(|x| x.gid).ok_or_else(|| {
                        ImageError::Config(format!(
                            "unable to find group {g}: no matching entries in group file"
                        ))
                    })?
                }
            };
        }
        _ => {
            if let (Some(e), Some(gs)) = (entry, groups.as_ref()) {
                for grp in gs {
                    if grp.members.contains(&e.name) && grp.gid != gid && !sgids.contains(&grp.gid)
                    {
                        sgids.push(grp.gid);
                    }
                }
            }
        }
    }
    Ok((uid, gid, sgids, home))
}

/// Applies the image config to run options holding what the user asked for: `opts.args` is the
/// user's command (possibly empty), `opts.env`/`cwd`/`user` their `-e`/`-w`/`-u`. Afterwards
/// `opts.args` is the full command, `opts.env` the image's Env overridden by the user's,
/// `opts.cwd` the working directory, and `opts.user` the numeric `uid:gid`.
pub fn apply(
    cfg: &ImageConfiguration,
    files: &dyn RootfsFiles,
    entrypoint: Option<&str>,
    opts: &mut RunOptions,
) -> Result<Applied> {
    let empty = oci_spec::image::Config::default();
    let c = cfg.config().as_ref().unwrap_or(&empty);
    let none: Vec<String> = Vec::new();
    let container_config = container_config(c, entrypoint, opts);
    opts.args = command(
        c.entrypoint().as_ref().unwrap_or(&none),
        c.cmd().as_ref().unwrap_or(&none),
        entrypoint,
        &opts.args,
    )?;
    let mut env: Vec<String> = c.env().clone().unwrap_or_default();
    env.append(&mut opts.env);

    if opts.cwd.is_none() {
        if let Some(wd) = c.working_dir().as_ref().filter(|w| !w.is_empty()) {
            opts.cwd = Some(if wd.starts_with('/') {
                wd.clone()
            } else {
                format!("/{wd}")
            });
        }
    }
    let user = opts
        .user
        .clone()
        .or_else(|| c.user().clone())
        .unwrap_or_default();
    let (uid, gid, additional_gids, home) = resolve_user(&user, files)?;
    opts.user = Some(format!("{uid}:{gid}"));
    if !env.iter().any(|e| e.starts_with("HOME=")) {
        env.push(format!(
            "HOME={}",
            home.clone().unwrap_or_else(|| "/".into())
        ));
    }
    opts.env = env;
    Ok(Applied {
        uid,
        gid,
        additional_gids,
        home,
        exposed_ports: c.exposed_ports().clone().unwrap_or_default(),
        volumes: c.volumes().clone().unwrap_or_default(),
        labels: c.labels().clone().unwrap_or_default().into_iter().collect(),
        stop_signal: c.stop_signal().clone(),
        container_config,
    })
}

/// The image config `c` as the run options change it, before the image's defaults are
/// resolved (the user's `-u` stays a name, no `HOME` is added): `Entrypoint` and `Cmd` as
/// [`command`] combines them, `Env` with the user's `-e` replacing the image's variable of the
/// same name, `WorkingDir` and `User`.
fn container_config(
    c: &oci_spec::image::Config,
    entrypoint: Option<&str>,
    opts: &RunOptions,
) -> serde_json::Value {
    let (ep, cmd): (Vec<String>, Vec<String>) = match entrypoint {
        Some("") => (Vec::new(), opts.args.clone()),
        Some(e) => (vec![e.to_string()], opts.args.clone()),
        None => (
            c.entrypoint().clone().unwrap_or_default(),
            if opts.args.is_empty() {
                c.cmd().clone().unwrap_or_default()
            } else {
                opts.args.clone()
            },
        ),
    };
    // Linear: an image may carry a huge Env (the hostile corpus has one).
    let mut env: Vec<Option<&String>> = Vec::new();
    let mut at: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    for e in c.env().iter().flatten().chain(opts.env.iter()) {
        let key = e.split('=').next().unwrap_or(e);
        if let Some(i) = at.insert(key, env.len()) {
            env[i] = None;
        }
        env.push(Some(e));
    }
    let env: Vec<String> = env.into_iter().flatten().cloned().collect();
    let list = |v: Vec<String>| {
        if v.is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::json!(v)
        }
    };
    let text = |v: Option<String>| match v.filter(|s| !s.is_empty()) {
        Some(s) => serde_json::json!(s),
        None => serde_json::Value::Null,
    };
    serde_json::json!({
        "Entrypoint": list(ep),
        "Cmd": list(cmd),
        "Env": list(env),
        "WorkingDir": text(opts.cwd.clone().or_else(|| c.working_dir().clone())),
        "User": text(opts.user.clone().or_else(|| c.user().clone())),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    struct Mem(HashMap<&'static str, &'static str>);
    impl RootfsFiles for Mem {
        fn read(&self, path: &str) -> Option<Vec<u8>> {
            self.0.get(path).map(|s| s.as_bytes().to_vec())
        }
    }

    fn v(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn docker_entrypoint_and_cmd() {
        let ep = v(&["/entry", "-x"]);
        let cmd = v(&["serve", "--port=1"]);
        // Image only.
        assert_eq!(
            command(&ep, &cmd, None, &[]).unwrap(),
            v(&["/entry", "-x", "serve", "--port=1"])
        );
        // User command replaces Cmd, keeps Entrypoint.
        assert_eq!(
            command(&ep, &cmd, None, &v(&["ls"])).unwrap(),
            v(&["/entry", "-x", "ls"])
        );
        // Cmd only.
        assert_eq!(
            command(&[], &cmd, None, &[]).unwrap(),
            v(&["serve", "--port=1"])
        );
        assert_eq!(command(&[], &cmd, None, &v(&["sh"])).unwrap(), v(&["sh"]));
        // --entrypoint drops the image Cmd.
        assert_eq!(
            command(&ep, &cmd, Some("/bin/sh"), &[]).unwrap(),
            v(&["/bin/sh"])
        );
        assert_eq!(
            command(&ep, &cmd, Some("/bin/sh"), &v(&["-c", "true"])).unwrap(),
            v(&["/bin/sh", "-c", "true"])
        );
        // --entrypoint '' clears both; the user command runs alone.
        assert_eq!(
            command(&ep, &cmd, Some(""), &v(&["echo", "hi"])).unwrap(),
            v(&["echo", "hi"])
        );
        let e = command(&ep, &cmd, Some(""), &[]).unwrap_err().to_string();
        assert!(e.contains("no command specified"), "{e}");
        assert!(command(&[], &[], None, &[]).is_err());
        // Entrypoint only.
        assert_eq!(command(&ep, &[], None, &[]).unwrap(), ep);
    }

    #[test]
    fn users_resolve_through_the_image() {
        let files = Mem(HashMap::from([
            ("/etc/passwd", "root:x:0:0:root:/root:/bin/sh\nwww:x:33:33:www:/var/www:/bin/false\nbob:x:1000:100::/home/bob:/bin/sh\n"),
            ("/etc/group", "root:x:0:\nusers:x:100:\nwheel:x:10:bob,alice\naudio:x:29:bob\nwww:x:33:\n"),
        ]));
        assert_eq!(
            resolve_user("", &files).unwrap(),
            (0, 0, vec![], Some("/root".into()))
        );
        assert_eq!(
            resolve_user("www", &files).unwrap(),
            (33, 33, vec![], Some("/var/www".into()))
        );
        assert_eq!(
            resolve_user("bob", &files).unwrap(),
            (1000, 100, vec![10, 29], Some("/home/bob".into()))
        );
        assert_eq!(
            resolve_user("bob:wheel", &files).unwrap(),
            (1000, 10, vec![], Some("/home/bob".into()))
        );
        assert_eq!(resolve_user("1000", &files).unwrap().0, 1000);
        assert_eq!(
            resolve_user("4242", &files).unwrap(),
            (4242, 0, vec![], None)
        );
        assert_eq!(
            resolve_user("4242:7", &files).unwrap(),
            (4242, 7, vec![], None)
        );
        assert_eq!(resolve_user("www:100", &files).unwrap().1, 100);
        let e = resolve_user("nobody", &files).unwrap_err().to_string();
        assert!(e.contains("unable to find user nobody"), "{e}");
        let e = resolve_user("bob:nogroup", &files).unwrap_err().to_string();
        assert!(e.contains("unable to find group nogroup"), "{e}");
        let empty = Mem(HashMap::new());
        assert_eq!(resolve_user("7:8", &empty).unwrap(), (7, 8, vec![], None));
        assert!(resolve_user("bob", &empty).is_err());
    }

    #[test]
    fn apply_merges_env_workdir_user() {
        let cfg: ImageConfiguration = serde_json::from_value(serde_json::json!({
            "architecture": "amd64", "os": "linux",
            "config": {
                "Env": ["PATH=/custom/bin", "A=image", "B=image"],
                "Entrypoint": ["/bin/app"], "Cmd": ["--default"],
                "WorkingDir": "srv", "User": "www",
                "ExposedPorts": {"80/tcp": {}, "53/udp": {}},
                "Labels": {"k": "v"}, "StopSignal": "SIGQUIT"
            },
            "rootfs": {"type": "layers", "diff_ids": []}
        }))
        .unwrap();
        let files = Mem(HashMap::from([(
            "/etc/passwd",
            "www:x:33:44:www:/var/www:/bin/false\n",
        )]));
        let mut opts = RunOptions {
            env: v(&["B=user"]),
            ..Default::default()
        };
        let a = apply(&cfg, &files, None, &mut opts).unwrap();
        assert_eq!(opts.args, v(&["/bin/app", "--default"]));
        assert_eq!(
            opts.env,
            v(&[
                "PATH=/custom/bin",
                "A=image",
                "B=image",
                "B=user",
                "HOME=/var/www"
            ])
        );
        assert_eq!(opts.cwd.as_deref(), Some("/srv"));
        assert_eq!(opts.user.as_deref(), Some("33:44"));
        let mut ports = a.exposed_ports.clone();
        ports.sort();
        assert_eq!(ports, v(&["53/udp", "80/tcp"]));
        assert_eq!(a.stop_signal.as_deref(), Some("SIGQUIT"));
        assert_eq!(a.labels.get("k").map(String::as_str), Some("v"));

        // The user's -u and -w win; --entrypoint '' with a command.
        let mut opts = RunOptions {
            args: v(&["id"]),
            user: Some("0:0".into()),
            cwd: Some("/tmp".into()),
            ..Default::default()
        };
        apply(&cfg, &files, Some(""), &mut opts).unwrap();
        assert_eq!(opts.args, v(&["id"]));
        assert_eq!(opts.user.as_deref(), Some("0:0"));
        assert_eq!(opts.cwd.as_deref(), Some("/tmp"));
    }

    #[test]
    fn layer_lookup_respects_whiteouts_and_opaque_dirs() {
        let base = std::env::temp_dir().join(format!("rootbox-cfg-layers-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        let l0 = base.join("l0");
        let l1 = base.join("l1");
        let l2 = base.join("l2");
        for d in [&l0, &l1, &l2] {
            std::fs::create_dir_all(d.join("etc")).unwrap();
        }
        std::fs::write(l0.join("etc/passwd"), "low").unwrap();
        std::fs::write(l0.join("etc/group"), "lowgroup").unwrap();
        std::fs::write(l0.join("etc/hosts"), "lowhosts").unwrap();
        std::fs::write(l1.join("etc/passwd"), "mid").unwrap();
        let layers = vec![l0.clone(), l1.clone(), l2.clone()];
        assert_eq!(LayerFiles(&layers).read("/etc/passwd").unwrap(), b"mid");
        assert_eq!(LayerFiles(&layers).read("/etc/group").unwrap(), b"lowgroup");
        // A whiteout in the top layer hides the file.
        let c = CString::new(l2.join("etc/passwd").as_os_str().as_bytes()).unwrap();
        // SAFETY: valid path.
        assert_eq!(unsafe { libc::mknod(c.as_ptr(), libc::S_IFCHR, 0) }, 0);
        assert_eq!(LayerFiles(&layers).read("/etc/passwd"), None);
        // An opaque etc in the middle layer hides the lowest layer's etc/group.
        let c = CString::new(l1.join("etc").as_os_str().as_bytes()).unwrap();
        // SAFETY: valid strings.
        let r = unsafe {
            libc::setxattr(
                c.as_ptr(),
                OPAQUE_XATTR.as_ptr(),
                b"y".as_ptr().cast(),
                1,
                0,
            )
        };
        assert_eq!(r, 0);
        assert_eq!(LayerFiles(&layers).read("/etc/group"), None);
        assert_eq!(
            LayerFiles(&layers[..1]).read("/etc/hosts").unwrap(),
            b"lowhosts"
        );
        std::fs::remove_dir_all(&base).unwrap();
    }
}

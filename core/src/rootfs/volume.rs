//! Named and anonymous volumes: `<store>/volumes/NAME/_data`, with `volume.json` (metadata) and
//! `users/` (one record per container that mounts it, so a volume in use cannot be removed).
//!
//! A user record names the container's state directory and id; it counts while that container
//! exists (running, or stopped but not removed, as with Docker), and is dropped as stale once
//! the container is gone, so a crashed run never pins a volume forever. Every change to the
//! store is made under one lock file (`volumes/.lock`).

use std::collections::BTreeMap;
use std::fs;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::RootfsError;
use crate::container::state::{write_atomic, StateRoot};
use crate::container::{Container, Status};

/// Docker's rule for volume names.
pub fn validate_name(name: &str) -> Result<(), RootfsError> {
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
    let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if first_ok && rest_ok && name.len() >= 2 && name.len() <= 255 {
        Ok(())
    } else {
        Err(RootfsError::invalid(
            "volume name",
            name,
            "use [a-zA-Z0-9][a-zA-Z0-9_.-]+ (at least 2 characters)",
        ))
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Meta {
    name: String,
    created_at: String,
    #[serde(default)]
    anonymous: bool,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    /// Mounted at least once (a volume is seeded from the image only before its first use).
    #[serde(default)]
    used: bool,
}

/// A container using a volume.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct User {
    pub state_dir: PathBuf,
    pub id: String,
}

/// `rootbox volume inspect`: Docker's fields, plus who uses the volume.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct VolumeInfo {
    pub name: String,
    pub driver: String,
    pub mountpoint: PathBuf,
    pub created_at: String,
    pub labels: BTreeMap<String, String>,
    pub scope: String,
    pub options: BTreeMap<String, String>,
    pub anonymous: bool,
    pub used_by: Vec<String>,
}

/// The volumes of one store.
#[derive(Debug, Clone)]
pub struct VolumeStore {
    pub dir: PathBuf,
}

/// The store-wide lock, released on drop.
struct Lock(#[allow(dead_code)] fs::File);

impl VolumeStore {
    /// `<store>/volumes`, created private to the user.
    pub fn open(store: &Path) -> Result<VolumeStore, RootfsError> {
        let dir = store.join("volumes");
        super::mkdir_private(&dir)?;
        Ok(VolumeStore { dir })
    }

    fn lock(&self) -> Result<Lock, RootfsError> {
        let path = self.dir.join(".lock");
        let f = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| RootfsError::io(&path, e))?;
        loop {
            // SAFETY: flock on a descriptor we own.
            if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) } == 0 {
                return Ok(Lock(f));
            }
            let e = std::io::Error::last_os_error();
            if e.kind() != std::io::ErrorKind::Interrupted {
                return Err(RootfsError::io(&path, e));
            }
        }
    }

    fn vdir(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Where a volume's data lives (what is mounted into containers).
    pub fn data_path(&self, name: &str) -> PathBuf {
        self.vdir(name).join("_data")
    }

    fn meta(&self, name: &str) -> Result<Meta, RootfsError> {
        validate_name(name).map_err(|_| RootfsError::NoVolume(name.to_string()))?;
        let path = self.vdir(name).join("volume.json");
        let text = match fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(RootfsError::NoVolume(name.to_string()))
            }
            Err(e) => return Err(RootfsError::io(&path, e)),
        };
        serde_json::from_str(&text).map_err(|e| {
            RootfsError::invalid("volume metadata", path.display().to_string(), e.to_string())
        })
    }

    fn save_meta(&self, m: &Meta) -> Result<(), RootfsError> {
        let path = self.vdir(&m.name).join("volume.json");
        let data = serde_json::to_vec_pretty(m).unwrap_or_default();
        write_atomic(&path, &data)
            .map_err(|e| RootfsError::io(&path, std::io::Error::other(e.to_string())))
    }

    fn info(&self, m: Meta) -> VolumeInfo {
        let used_by = self
            .live_users(&m.name)
            .into_iter()
            .map(|(_, _, shown)| shown)
            .collect();
        VolumeInfo {
            mountpoint: self.data_path(&m.name),
            name: m.name,
            driver: "local".into(),
            created_at: m.created_at,
            labels: m.labels,
            scope: "local".into(),
            options: BTreeMap::new(),
            anonymous: m.anonymous,
            used_by,
        }
    }

    /// `volume create [NAME]`: creates a volume (a random name when none is given); an
    /// existing volume of that name is returned as it is. The flag says whether it is new.
    pub fn create(
        &self,
        name: Option<&str>,
        labels: BTreeMap<String, String>,
    ) -> Result<(VolumeInfo, bool), RootfsError> {
        self.create_inner(name, labels, false)
    }

    fn create_inner(
        &self,
        name: Option<&str>,
        labels: BTreeMap<String, String>,
        anonymous: bool,
    ) -> Result<(VolumeInfo, bool), RootfsError> {
        let name = match name {
            Some(n) => {
                validate_name(n)?;
                n.to_string()
            }
            None => super::random_hex(),
        };
        let _lock = self.lock()?;
        if let Ok(m) = self.meta(&name) {
            return Ok((self.info(m), false));
        }
        let dir = self.vdir(&name);
        for d in [dir.join("_data"), dir.join("users")] {
            fs::create_dir_all(&d).map_err(|e| RootfsError::io(&d, e))?;
        }
        let m = Meta {
            name: name.clone(),
            created_at: crate::container::state::now_rfc3339(),
            anonymous,
            labels,
            used: false,
        };
        self.save_meta(&m)?;
        Ok((self.info(m), true))
    }

    pub fn inspect(&self, name: &str) -> Result<VolumeInfo, RootfsError> {
        let m = self.meta(name)?;
        Ok(self.info(m))
    }

    pub fn list(&self) -> Result<Vec<VolumeInfo>, RootfsError> {
        let mut out = Vec::new();
        for e in fs::read_dir(&self.dir).map_err(|e| RootfsError::io(&self.dir, e))? {
            let e = e.map_err(|e| RootfsError::io(&self.dir, e))?;
            let name = e.file_name().to_string_lossy().into_owned();
            if let Ok(m) = self.meta(&name) {
                out.push(self.info(m));
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    fn user_file(&self, name: &str, u: &User) -> PathBuf {
        // FNV-1a of the state directory keeps records of equal ids in different roots apart.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in u.state_dir.as_os_str().as_encoded_bytes() {
            h = (h ^ *b as u64).wrapping_mul(0x0100_0000_01b3);
        }
        self.vdir(name)
            .join("users")
            .join(format!("{}@{h:016x}", u.id))
    }

    /// Users whose container still exists, with its status; stale records are removed.
    /// The containers using a volume: who, their status, and the name to show them by.
    fn live_users(&self, name: &str) -> Vec<(User, Status, String)> {
        let dir = self.vdir(name).join("users");
        let mut out = Vec::new();
        for e in fs::read_dir(&dir).into_iter().flatten().flatten() {
            let p = e.path();
            let user: Option<User> = fs::read_to_string(&p)
                .ok()
                .and_then(|t| serde_json::from_str(&t).ok());
            let status = user.as_ref().and_then(|u| {
                Container::load(
                    &StateRoot {
                        path: u.state_dir.clone(),
                    },
                    &u.id,
                )
                .ok()
                .map(|c| {
                    let shown = if c.record.name.is_empty() {
                        c.id().to_string()
                    } else {
                        c.record.name.clone()
                    };
                    (c.status(), shown)
                })
            });
            match (user, status) {
                (Some(u), Some((s, shown))) => out.push((u, s, shown)),
                _ => {
                    let _ = fs::remove_file(&p);
                }
            }
        }
        out
    }

    /// Mounts a volume for a container: creates it when missing (anonymous volumes always
    /// are new), records the user, and returns (data path, whether it must be seeded: it was
    /// never mounted before and is empty).
    pub fn acquire(
        &self,
        name: Option<&str>,
        user: &User,
    ) -> Result<(String, PathBuf, bool), RootfsError> {
        let (info, _) = self.create_inner(name, BTreeMap::new(), name.is_none())?;
        let _lock = self.lock()?;
        let mut m = self.meta(&info.name)?;
        let data = self.data_path(&m.name);
        let empty = fs::read_dir(&data)
            .map(|mut d| d.next().is_none())
            .unwrap_or(false);
        let seed = !m.used && empty;
        if !m.used {
            m.used = true;
            self.save_meta(&m)?;
        }
        let rec = self.user_file(&m.name, user);
        let text = serde_json::to_vec(user).unwrap_or_default();
        fs::write(&rec, text).map_err(|e| RootfsError::io(&rec, e))?;
        Ok((m.name, data, seed))
    }

    /// Drops a container's use of a volume.
    pub fn release(&self, name: &str, user: &User) {
        let _ = fs::remove_file(self.user_file(name, user));
    }

    /// `volume rm`: refuses a volume a running container uses, or one a stopped container
    /// uses unless `force`.
    pub fn remove(&self, name: &str, force: bool) -> Result<(), RootfsError> {
        let _lock = self.lock()?;
        self.meta(name)?;
        for (_, status, shown) in self.live_users(name) {
            let running = status != Status::Stopped;
            if running || !force {
                return Err(RootfsError::VolumeInUse {
                    name: name.to_string(),
                    container: shown,
                    status: status.to_string(),
                    hint: if running {
                        ": stop the container first"
                    } else {
                        ": remove the container first, or use --force"
                    },
                });
            }
        }
        let dir = self.vdir(name);
        super::remove_tree(&dir).map_err(|e| RootfsError::io(&dir, e))
    }

    /// `volume prune`: removes unused anonymous volumes (with `all`, unused named ones too).
    /// Returns the names removed.
    pub fn prune(&self, all: bool) -> Result<Vec<String>, RootfsError> {
        let mut removed = Vec::new();
        for v in self.list()? {
            if (all || v.anonymous) && v.used_by.is_empty() && self.remove(&v.name, false).is_ok() {
                removed.push(v.name);
            }
        }
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in ["ab", "data", "my_vol.1-x", "0a"] {
            validate_name(ok).unwrap();
        }
        for bad in ["", "a", "-a", ".a", "a b", "a/b", "a:b", "../x"] {
            assert!(validate_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn create_use_remove() {
        let tmp = std::env::temp_dir().join(format!("rbvol-{}", super::super::random_hex()));
        let store = VolumeStore::open(&tmp).unwrap();
        let (v, new) = store.create(Some("data"), BTreeMap::new()).unwrap();
        assert!(new && v.name == "data" && v.mountpoint.ends_with("data/_data"));
        assert!(!store.create(Some("data"), BTreeMap::new()).unwrap().1);
        // A user whose container does not exist is stale: the volume can go.
        let u = User {
            state_dir: tmp.join("nostate"),
            id: "c1".into(),
        };
        let (name, _, seed) = store.acquire(Some("data"), &u).unwrap();
        assert!(seed && name == "data");
        assert!(!store.acquire(Some("data"), &u).unwrap().2);
        assert_eq!(store.list().unwrap().len(), 1);
        store.remove("data", false).unwrap();
        assert!(matches!(
            store.inspect("data"),
            Err(RootfsError::NoVolume(_))
        ));
        let (anon, _, _) = store.acquire(None, &u).unwrap();
        assert_eq!(store.prune(false).unwrap(), vec![anon]);
        let _ = fs::remove_dir_all(&tmp);
    }
}

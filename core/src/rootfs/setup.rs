//! What `rootbox run` prepares on the host for a container, in its state directory, before the
//! launch: the generated `/etc` files and the volumes (created, seeded, recorded as used), all
//! turned into bind mounts of the spec. `rootfs.json` in the state directory records what was
//! acquired, so [`release`] undoes it when the container is removed.

use std::path::{Path, PathBuf};

use oci_spec::runtime::{Mount, Spec};
use serde::{Deserialize, Serialize};

use super::volume::{User, VolumeStore};
use super::{etc, vfs, Layers, RootfsError, VolumeMount, VolumeSource};

/// Per-container preparation for `rootbox run` (see `CreateOptions::rootfs_setup`).
#[derive(Debug, Clone, Default)]
pub struct Setup {
    /// The store root (named volumes live in `<store>/volumes`).
    pub store: PathBuf,
    /// The container's rootfs comes from an image: its writable layer and in-use record
    /// (`<store>/containers/<id>`) go with the container.
    pub image: bool,
    /// Named and anonymous volumes, in order.
    pub volumes: Vec<VolumeMount>,
    /// Generate `/etc/hostname`, `/etc/hosts`, `/etc/resolv.conf`.
    pub etc_files: bool,
    /// The container shares the host's network (resolv.conf and hosts are the host's).
    pub network_host: bool,
    /// What the files are made from, from the container's network (`network::Prepared::facts`):
    /// names, name servers, `--add-host`; the network rewrites them once attached.
    pub network: Option<crate::network::Facts>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Record {
    store: PathBuf,
    #[serde(default)]
    image: bool,
    user: Option<User>,
    volumes: Vec<String>,
    anonymous: Vec<String>,
}

const RECORD: &str = "rootfs.json";

fn bind(source: &Path, dest: &Path, readonly: bool) -> Result<Mount, RootfsError> {
    serde_json::from_value(serde_json::json!({
        "destination": dest, "type": "bind", "source": source,
        "options": ["rbind", if readonly { "ro" } else { "rw" }, "nosuid", "nodev"]
    }))
    .map_err(|e| RootfsError::invalid("mount", dest.display().to_string(), e.to_string()))
}

fn rel(dest: &Path) -> PathBuf {
    dest.components()
        .filter(|c| matches!(c, std::path::Component::Normal(_)))
        .collect()
}

impl Setup {
    /// Prepares the container `id` of state root `state_dir` (its directory is `dir`) and
    /// returns `spec` with the mounts added. On error, whatever was acquired is released.
    pub fn apply(
        &self,
        state_dir: &Path,
        id: &str,
        dir: &Path,
        spec: &Spec,
    ) -> Result<Spec, RootfsError> {
        let mut rec = Record {
            store: self.store.clone(),
            image: self.image,
            user: Some(User {
                state_dir: state_dir.to_path_buf(),
                id: id.to_string(),
            }),
            ..Default::default()
        };
        let r = self.apply_inner(dir, spec, &mut rec);
        let text = serde_json::to_vec_pretty(&rec).unwrap_or_default();
        let path = dir.join(RECORD);
        let saved = std::fs::write(&path, text).map_err(|e| RootfsError::io(&path, e));
        match (r, saved) {
            (Ok(spec), Ok(())) => Ok(spec),
            (Err(e), _) | (Ok(_), Err(e)) => {
                release(dir, true);
                Err(e)
            }
        }
    }

    fn apply_inner(&self, dir: &Path, spec: &Spec, rec: &mut Record) -> Result<Spec, RootfsError> {
        let root_path = spec
            .root()
            .as_ref()
            .map(|r| r.path().clone())
            .unwrap_or_default();
        // The trees the container's root is made of, lowest first (a plain rootfs is one).
        let (roots, layered) = match Layers::from_spec(spec)? {
            Some(l) => {
                let mut r = l.lower.clone();
                r.push(l.upper.clone());
                (r, true)
            }
            None => (vec![root_path], false),
        };
        let mut mounts = spec.mounts().clone().unwrap_or_default();
        let taken = |mounts: &Vec<Mount>, d: &Path| mounts.iter().any(|m| m.destination() == d);

        if self.etc_files {
            let mut facts = self.network.clone().unwrap_or_default();
            if facts.hostname.is_empty() {
                facts.hostname = spec.hostname().clone().unwrap_or_else(|| "rootbox".into());
            }
            facts.host_network |= self.network_host;
            for (host, dest) in etc::write(dir, &facts)? {
                let dest = Path::new(dest);
                if taken(&mounts, dest) {
                    continue;
                }
                let etc_dir = vfs::merged_lookup(&roots, Path::new("etc"));
                let file = vfs::merged_lookup(&roots, &rel(dest));
                let usable = match (&etc_dir, &file) {
                    (_, Some(f)) => f.is_file(),
                    // Missing: the mount point is created through the overlay (in the upper
                    // layer); a user's plain rootfs directory is never written to.
                    (Some(d), None) => layered && d.is_dir(),
                    (None, None) => layered,
                };
                if usable {
                    mounts.push(bind(&host, dest, false)?);
                }
            }
        }

        if !self.volumes.is_empty() {
            let store = VolumeStore::open(&self.store)?;
            let user = rec.user.clone().unwrap_or(User {
                state_dir: PathBuf::new(),
                id: String::new(),
            });
            for v in &self.volumes {
                let name = match &v.source {
                    VolumeSource::Named(n) => Some(n.as_str()),
                    VolumeSource::Anonymous => None,
                };
                let (name, data, seed) = store.acquire(name, &user)?;
                rec.volumes.push(name.clone());
                if v.source == VolumeSource::Anonymous {
                    rec.anonymous.push(name);
                }
                if seed && !v.nocopy {
                    vfs::copy_merged_dir(&roots, &rel(&v.destination), &data)?;
                }
                mounts.push(bind(&data, &v.destination, v.readonly)?);
            }
        }
        let mut spec = spec.clone();
        spec.set_mounts(Some(mounts));
        Ok(spec)
    }
}

/// Undoes [`Setup::apply`] for the container directory `dir`: drops its use of volumes and,
/// with `remove_anonymous`, deletes its anonymous volumes. Harmless when nothing was set up.
pub fn release(dir: &Path, remove_anonymous: bool) {
    let Ok(text) = std::fs::read_to_string(dir.join(RECORD)) else {
        return;
    };
    let Ok(rec) = serde_json::from_str::<Record>(&text) else {
        return;
    };
    if rec.image {
        if let (Some(u), Ok(images)) = (
            &rec.user,
            crate::image::Store::open(Some(rec.store.clone())),
        ) {
            if let Err(e) = images.remove_container_dirs(&u.id) {
                eprintln!(
                    "rootbox: warning: container {}'s writable layer kept: {e}",
                    u.id
                );
            }
        }
    }
    if rec.volumes.is_empty() {
        return;
    }
    let Ok(store) = VolumeStore::open(&rec.store) else {
        return;
    };
    if let Some(u) = &rec.user {
        for v in &rec.volumes {
            store.release(v, u);
        }
    }
    if remove_anonymous {
        for v in &rec.anonymous {
            if let Err(e) = store.remove(v, false) {
                eprintln!("rootbox: warning: anonymous volume {v} kept: {e}");
            }
        }
    }
}

//! A container made from an image of the store: the image's layers, shared read-only, under
//! a writable layer of its own, and the image config (Entrypoint, Cmd, Env, WorkingDir, User,
//! Volumes) applied the way Docker does. `rootbox run IMAGE`, the C ABI and the Python module
//! all come through here.

use std::path::{Path, PathBuf};

use crate::idmap;
use crate::image::config::{self, Applied, LayerFiles};
use crate::image::store::RecordOwner;
use crate::image::{Image, Store};
use crate::rootfs::{Driver, Layers, Setup, VolumeMount, VolumeSource};
use crate::spec::RunOptions;
use crate::Error;

/// What to make a container's root filesystem from.
#[derive(Debug, Clone)]
pub struct FromImage<'a> {
    /// The store root (`rootfs::data_root`).
    pub store: &'a Path,
    /// The state root the container will be registered in (recorded with the store's
    /// in-use record, so a record whose container never got registered is known).
    pub state: &'a Path,
    /// The image reference (`busybox`, `localhost:5000/app:1`, `name@sha256:...`, an id).
    pub reference: &'a str,
    /// `--entrypoint`: `None` keeps the image's, `Some("")` clears it.
    pub entrypoint: Option<&'a str>,
    /// How the layers are stacked.
    pub driver: Driver,
}

/// The image and what its config asked for beyond the run options (ports to publish with
/// `-P`, supplementary groups, labels, the stop signal).
#[derive(Debug)]
pub struct Prepared {
    pub image: Image,
    pub applied: Applied,
}

/// Prepares container `id`'s root filesystem from `req`: unpacks what is not yet unpacked,
/// makes the container's writable layer, fills `opts` from the image config (the user's own
/// command, `-e`, `-w`, `-u` win), and asks `setup` for the image's anonymous volumes and the
/// removal of the writable layer with the container. Undone on error.
pub fn prepare(
    id: &str,
    req: &FromImage<'_>,
    opts: &mut RunOptions,
    setup: &mut Setup,
) -> Result<Prepared, Error> {
    let store = Store::open(Some(req.store.to_path_buf()))?;
    let image = store.resolve(req.reference)?;
    let (uids, gids) = idmap::mappings(opts.idmap)?;
    let owner = RecordOwner::current(req.state);
    let prep = store.prepare_container(id, &image, &uids, &gids, owner)?;
    let result = (|| {
        let merged = prep
            .upper
            .parent()
            .map_or_else(|| PathBuf::from("merged"), |p| p.join("merged"));
        std::fs::create_dir_all(&merged).map_err(|e| crate::rootfs::RootfsError::io(&merged, e))?;
        let applied = config::apply(
            &image.config,
            &LayerFiles(&prep.layers),
            req.entrypoint,
            opts,
        )?;
        store.set_run_config(id, &applied.container_config)?;
        opts.rootfs = merged;
        opts.rootfs_layers = Some(Layers {
            lower: prep.layers.clone(),
            upper: prep.upper.clone(),
            work: prep.work.clone(),
            driver: req.driver,
        });
        // The image's VOLUMEs become anonymous volumes, unless the user mounts something there.
        for v in &applied.volumes {
            let dest = PathBuf::from(v);
            let taken = setup.volumes.iter().any(|m| m.destination == dest)
                || opts.volumes.iter().any(|b| b.destination == dest)
                || opts
                    .tmpfs
                    .iter()
                    .any(|t| t.split(':').next() == Some(v.as_str()));
            if !taken {
                setup.volumes.push(VolumeMount {
                    source: VolumeSource::Anonymous,
                    destination: dest,
                    readonly: false,
                    nocopy: false,
                });
            }
        }
        setup.image = true;
        Ok::<_, Error>(applied)
    })();
    match result {
        Ok(applied) => Ok(Prepared { image, applied }),
        Err(e) => {
            let _ = store.remove_container_dirs(id);
            Err(e)
        }
    }
}

//! `rootbox pull`: manifest (or index, then this platform's manifest), config and layers into
//! the store; layers in parallel, each verified before it is renamed into `blobs/`.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;

use futures_util::{StreamExt, TryStreamExt};
use sha2::Digest as _;

use super::conf::{self, Conn};
use super::{
    auth, classify, oci_ref, BlobOutcome, Options, Problem, Progress, RegistryError, Result,
};
use crate::image::archive::host_arch;
use crate::image::digest::Digest;
use crate::image::store::{
    self, Descriptor, Index, Manifest, MEDIA_DOCKER_LAYER_GZIP, MEDIA_DOCKER_LIST,
    MEDIA_DOCKER_MANIFEST, MEDIA_OCI_CONFIG, MEDIA_OCI_INDEX, MEDIA_OCI_LAYER,
    MEDIA_OCI_LAYER_GZIP, MEDIA_OCI_LAYER_ZSTD, MEDIA_OCI_MANIFEST,
};
use crate::image::{Image, Reference, Store};

const MEDIA_DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
const MEDIA_DOCKER_FOREIGN: &str = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip";
const MEDIA_OCI_ND: &str = "application/vnd.oci.image.layer.nondistributable.v1.tar";
const MEDIA_OCI_ND_GZIP: &str = "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip";
const MEDIA_OCI_ND_ZSTD: &str = "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd";

const ACCEPT: &[&str] = &[
    MEDIA_OCI_MANIFEST,
    MEDIA_DOCKER_MANIFEST,
    MEDIA_OCI_INDEX,
    MEDIA_DOCKER_LIST,
];

/// What [`pull`] did.
#[derive(Debug, Clone)]
pub struct Pulled {
    pub image: Image,
    /// The reference pulled, normalised.
    pub reference: Reference,
    /// Layers downloaded, and layers that were already in the store.
    pub downloaded: usize,
    pub present: usize,
}

/// `os/arch[/variant]` wanted from an index.
struct Platform {
    os: String,
    arch: String,
    variant: Option<String>,
}

impl Platform {
    fn parse(s: Option<&str>) -> Result<Platform> {
        let Some(s) = s else {
            return Ok(Platform {
                os: "linux".into(),
                arch: host_arch().into(),
                variant: None,
            });
        };
        let parts: Vec<&str> = s.split('/').collect();
        match parts.as_slice() {
            [os, arch] if !os.is_empty() && !arch.is_empty() => Ok(Platform {
                os: os.to_string(),
                arch: arch.to_string(),
                variant: None,
            }),
            [os, arch, v] if !os.is_empty() && !arch.is_empty() && !v.is_empty() => Ok(Platform {
                os: os.to_string(),
                arch: arch.to_string(),
                variant: Some(v.to_string()),
            }),
            _ => Err(RegistryError::Config(format!(
                "invalid --platform {s:?}: expected OS/ARCH[/VARIANT], e.g. linux/amd64"
            ))),
        }
    }

    fn show(&self) -> String {
        match &self.variant {
            Some(v) => format!("{}/{}/{v}", self.os, self.arch),
            None => format!("{}/{}", self.os, self.arch),
        }
    }
}

fn plat(d: &Descriptor, key: &str) -> Option<String> {
    d.platform
        .as_ref()
        .and_then(|p| p.get(key))
        .and_then(|v| v.as_str())
        .map(String::from)
}

/// The index entry for `want` (attestation entries, `unknown/unknown`, never match).
fn pick<'a>(idx: &'a Index, want: &Platform) -> std::result::Result<&'a Descriptor, Problem> {
    let fits = |d: &&Descriptor| {
        plat(d, "os").as_deref() == Some(want.os.as_str())
            && plat(d, "architecture").as_deref() == Some(want.arch.as_str())
            && want
                .variant
                .as_ref()
                .is_none_or(|v| plat(d, "variant").as_deref() == Some(v.as_str()))
    };
    if let Some(d) = idx.manifests.iter().find(fits) {
        return Ok(d);
    }
    let have: Vec<String> = idx
        .manifests
        .iter()
        .map(|d| {
            let mut s = format!(
                "{}/{}",
                plat(d, "os").unwrap_or_else(|| "?".into()),
                plat(d, "architecture").unwrap_or_else(|| "?".into())
            );
            if let Some(v) = plat(d, "variant") {
                s.push('/');
                s.push_str(&v);
            }
            s
        })
        .collect();
    Err(Problem::NoPlatform(format!(
        "no image for {} in the index (it has {}); choose one with --platform",
        want.show(),
        have.join(", ")
    )))
}

fn check_layer_type(mt: &str) -> std::result::Result<(), Problem> {
    match mt {
        MEDIA_OCI_LAYER
        | MEDIA_OCI_LAYER_GZIP
        | MEDIA_OCI_LAYER_ZSTD
        | MEDIA_DOCKER_LAYER_GZIP
        | MEDIA_DOCKER_FOREIGN
        | MEDIA_OCI_ND
        | MEDIA_OCI_ND_GZIP
        | MEDIA_OCI_ND_ZSTD => Ok(()),
        other => Err(Problem::UnsupportedMediaType(format!(
            "{other:?} for a layer (not a container image layer)"
        ))),
    }
}

/// Downloads one blob into the store: hashed while written to `tmp/`, renamed into `blobs/`
/// only when its digest and size match (else removed).
pub(super) async fn fetch_blob(
    conn: &Conn,
    oref: &oci_client::Reference,
    store: &Store,
    desc: &Descriptor,
    progress: &dyn Progress,
    report: bool,
) -> std::result::Result<BlobOutcome, Problem> {
    if store.has_blob(&desc.digest) {
        if report {
            progress.done(&desc.digest, BlobOutcome::Exists);
        }
        return Ok(BlobOutcome::Exists);
    }
    let od = oci_client::manifest::OciDescriptor {
        media_type: desc.media_type.clone(),
        digest: desc.digest.to_string(),
        size: desc.size as i64,
        ..Default::default()
    };
    if report {
        progress.start(&desc.digest, desc.size);
    }
    let mut s = conn
        .client
        .pull_blob_stream(oref, &od)
        .await
        .map_err(|e| classify(&e, desc.digest.as_str()))?;
    let tmp =
        store
            .root()
            .join("tmp")
            .join(format!("pull-{}-{}", std::process::id(), store::unique()));
    let io =
        |e: std::io::Error, what: &str| Problem::Protocol(format!("{what} {}: {e}", tmp.display()));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| io(e, "cannot create"))?;
    let mut h = sha2::Sha256::new();
    let mut n: u64 = 0;
    let res: std::result::Result<(), Problem> = async {
        while let Some(chunk) = s.stream.next().await {
            let chunk = match chunk {
                Ok(c) => c,
                Err(e) if n >= desc.size => {
                    // The client's own verification at the end of the stream: ours says why.
                    let got = Digest::from_hasher(h.clone());
                    if got != desc.digest {
                        return Err(Problem::DigestMismatch {
                            digest: desc.digest.to_string(),
                            got: got.to_string(),
                        });
                    }
                    return Err(Problem::Protocol(format!(
                        "reading blob {}: {e}",
                        desc.digest
                    )));
                }
                Err(e) => {
                    return Err(Problem::Unreachable(format!(
                        "download of blob {} broke off after {n} of {} bytes: {e}",
                        desc.digest, desc.size
                    )))
                }
            };
            n += chunk.len() as u64;
            if n > desc.size {
                return Err(Problem::DigestMismatch {
                    digest: desc.digest.to_string(),
                    got: format!("more than its {} bytes", desc.size),
                });
            }
            h.update(&chunk);
            f.write_all(&chunk).map_err(|e| io(e, "cannot write"))?;
            if report {
                progress.advance(&desc.digest, chunk.len() as u64);
            }
        }
        let got = Digest::from_hasher(h.clone());
        if got != desc.digest {
            return Err(Problem::DigestMismatch {
                digest: desc.digest.to_string(),
                got: if n == desc.size {
                    got.to_string()
                } else {
                    format!("{got} ({n} of {} bytes)", desc.size)
                },
            });
        }
        f.sync_data().map_err(|e| io(e, "cannot write"))?;
        Ok(())
    }
    .await;
    drop(f);
    if let Err(p) = res {
        let _ = std::fs::remove_file(&tmp);
        return Err(p);
    }
    let dst = store.blob_path(&desc.digest);
    if dst.exists() {
        let _ = std::fs::remove_file(&tmp);
    } else if let Err(e) = std::fs::rename(&tmp, &dst) {
        let _ = std::fs::remove_file(&tmp);
        return Err(Problem::Protocol(format!(
            "cannot store {}: {e}",
            dst.display()
        )));
    }
    if report {
        progress.done(&desc.digest, BlobOutcome::Transferred);
    }
    Ok(BlobOutcome::Transferred)
}

/// Pulls `reference` into `store` and unpacks its layers for this user's id mapping (unless
/// `unpack` is false). Returns the image as stored.
pub fn pull(
    store: &Store,
    reference: &str,
    opts: &Options,
    unpack: bool,
    progress: &dyn Progress,
) -> Result<Pulled> {
    let r = Reference::parse(reference)?;
    let want = Platform::parse(opts.platform.as_deref())?;
    let fail = |problem: Problem| RegistryError::Failed {
        op: "pulling",
        reference: r.familiar(),
        registry: r.domain.clone(),
        problem,
    };
    let what = r
        .digest
        .as_ref()
        .map(|d| d.to_string())
        .or_else(|| r.tag.clone())
        .unwrap_or_default();
    let rt = super::runtime()?;
    let _g = store.lock("store", false)?;
    let res: Result<(Descriptor, usize, usize)> = rt.block_on(async {
        let conn = conf::connect(&r, opts, "pulling").await?;
        let creds = auth::registry_auth(&r.domain, opts)?;
        let oref = oci_ref(&r);
        progress.message(&format!("Trying to pull {}...", r.familiar()));
        let (mut body, _) = match conn.client.pull_manifest_raw(&oref, &creds, ACCEPT).await {
            Ok(x) => x,
            Err(e) => {
                let mut p = classify(&e, &what);
                if let Problem::UnknownTag { .. } = p {
                    // Distribution says MANIFEST_UNKNOWN for a missing repository too: the tag
                    // list tells an unknown image from an unknown tag.
                    p = match conn.client.list_tags(&oref, &creds, Some(20), None).await {
                        Ok(t) if t.tags.is_empty() => Problem::UnknownImage,
                        Ok(t) => Problem::UnknownTag {
                            tag: what.clone(),
                            known: t.tags,
                        },
                        Err(e2) => match classify(&e2, &what) {
                            Problem::UnknownImage | Problem::UnknownTag { .. } => Problem::UnknownImage,
                            _ => p,
                        },
                    };
                }
                return Err(fail(p));
            }
        };
        let mut v: serde_json::Value = serde_json::from_slice(&body)
            .map_err(|e| fail(Problem::Protocol(format!("invalid manifest JSON: {e}"))))?;
        let mut media = v
            .get("mediaType")
            .and_then(|m| m.as_str())
            .map(String::from);
        if v.get("schemaVersion").and_then(|s| s.as_u64()) == Some(1) {
            return Err(fail(Problem::UnsupportedMediaType(
                "application/vnd.docker.distribution.manifest.v1+json (Docker schema 1 manifests are not supported)".into(),
            )));
        }
        if v.get("manifests").is_some() {
            let idx: Index = serde_json::from_value(v)
                .map_err(|e| fail(Problem::Protocol(format!("invalid image index: {e}"))))?;
            let d = pick(&idx, &want).map_err(fail)?.clone();
            let child = oci_client::Reference::with_digest(
                oref.registry().to_string(),
                oref.repository().to_string(),
                d.digest.to_string(),
            );
            let (b, _) = conn
                .client
                .pull_manifest_raw(&child, &creds, ACCEPT)
                .await
                .map_err(|e| fail(classify(&e, d.digest.as_str())))?;
            if Digest::of(&b) != d.digest {
                return Err(fail(Problem::DigestMismatch {
                    digest: d.digest.to_string(),
                    got: Digest::of(&b).to_string(),
                }));
            }
            body = b;
            v = serde_json::from_slice(&body)
                .map_err(|e| fail(Problem::Protocol(format!("invalid manifest JSON: {e}"))))?;
            media = v
                .get("mediaType")
                .and_then(|m| m.as_str())
                .map(String::from)
                .or(Some(d.media_type.clone()));
        }
        let media = media.unwrap_or_else(|| MEDIA_OCI_MANIFEST.to_string());
        if media != MEDIA_OCI_MANIFEST && media != MEDIA_DOCKER_MANIFEST {
            return Err(fail(Problem::UnsupportedMediaType(format!(
                "{media:?} for a manifest"
            ))));
        }
        let manifest: Manifest = serde_json::from_value(v)
            .map_err(|e| fail(Problem::Protocol(format!("invalid manifest: {e}"))))?;
        let cmt = manifest.config.media_type.as_str();
        if cmt != MEDIA_OCI_CONFIG && cmt != MEDIA_DOCKER_CONFIG {
            return Err(fail(Problem::UnsupportedMediaType(format!(
                "{cmt:?} for the config (an OCI artifact, not a container image)"
            ))));
        }
        for l in &manifest.layers {
            check_layer_type(&l.media_type).map_err(fail)?;
        }
        fetch_blob(&conn, &oref, store, &manifest.config, progress, false)
            .await
            .map_err(fail)?;
        let (config, _) = store::parse_config(
            &store.read_blob(&manifest.config.digest)?,
            &manifest.config.digest,
        )?;
        if config.rootfs().diff_ids().len() != manifest.layers.len() {
            return Err(fail(Problem::Protocol(format!(
                "the manifest has {} layers but its config lists {} diff ids",
                manifest.layers.len(),
                config.rootfs().diff_ids().len()
            ))));
        }
        let jobs = opts.jobs.unwrap_or(3).max(1);
        let outcomes: Vec<BlobOutcome> = futures_util::stream::iter(manifest.layers.iter())
            .map(|l| fetch_blob(&conn, &oref, store, l, progress, true))
            .buffered(jobs)
            .try_collect()
            .await
            .map_err(fail)?;
        let downloaded = outcomes
            .iter()
            .filter(|o| **o == BlobOutcome::Transferred)
            .count();
        let digest = store.write_blob_bytes(&body)?;
        Ok((
            Descriptor::new(&media, digest, body.len() as u64),
            downloaded,
            outcomes.len() - downloaded,
        ))
    });
    drop(rt);
    let (desc, downloaded, present) = res?;
    let names: Vec<Reference> = if r.digest.is_none() {
        vec![r.clone()]
    } else {
        Vec::new()
    };
    store.add_image(&desc, &names)?;
    let image = store.load_image(&desc, names)?;
    drop(_g);
    if unpack {
        store.layer_dirs(&image)?;
    }
    progress.message(&format!("Digest: {}", desc.digest));
    Ok(Pulled {
        image,
        reference: r,
        downloaded,
        present,
    })
}

/// The tags of the repository `reference` names (a tag or digest in it is ignored), in the
/// order the registry lists them.
pub fn tags(reference: &str, opts: &Options) -> Result<Vec<String>> {
    let r = Reference::parse(reference)?;
    let fail = |problem: Problem| RegistryError::Failed {
        op: "listing the tags of",
        reference: r.familiar_name(),
        registry: r.domain.clone(),
        problem,
    };
    // An unknown repository answers NAME_UNKNOWN or a plain 404 here: no image either way.
    let unknown = |p: Problem| match p {
        Problem::UnknownTag { .. } => Problem::UnknownImage,
        p => p,
    };
    const PAGE: usize = 1000;
    let rt = super::runtime()?;
    let res: Result<Vec<String>> = rt.block_on(async {
        let conn = conf::connect(&r, opts, "listing the tags of").await?;
        let creds = auth::registry_auth(&r.domain, opts)?;
        let oref = oci_ref(&r);
        conn.client
            .auth(&oref, &creds, oci_client::RegistryOperation::Pull)
            .await
            .map_err(|e| fail(unknown(classify(&e, ""))))?;
        let mut all: Vec<String> = Vec::new();
        loop {
            let last = all.last().cloned();
            let page = conn
                .client
                .list_tags(&oref, &creds, Some(PAGE), last.as_deref())
                .await
                .map_err(|e| fail(unknown(classify(&e, ""))))?;
            let n = page.tags.len();
            all.extend(page.tags);
            if n < PAGE {
                break;
            }
        }
        Ok(all)
    });
    drop(rt);
    let all = res?;
    if all.is_empty() {
        return Err(fail(Problem::UnknownImage));
    }
    Ok(all)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn desc(os: &str, arch: &str, variant: Option<&str>) -> Descriptor {
        let mut d = Descriptor::new(MEDIA_OCI_MANIFEST, Digest::of(arch.as_bytes()), 1);
        let mut p = serde_json::json!({"os": os, "architecture": arch});
        if let Some(v) = variant {
            p["variant"] = v.into();
        }
        d.platform = Some(p);
        d
    }

    #[test]
    fn picks_platform() {
        let idx = Index::new(vec![
            desc("unknown", "unknown", None),
            desc("linux", "arm64", Some("v8")),
            desc("linux", "amd64", None),
        ]);
        let amd = Platform::parse(Some("linux/amd64")).unwrap_or_else(|_| unreachable!());
        assert_eq!(
            pick(&idx, &amd).ok().map(|d| d.digest.clone()),
            Some(Digest::of(b"amd64"))
        );
        let arm = Platform::parse(Some("linux/arm64/v8")).unwrap_or_else(|_| unreachable!());
        assert_eq!(
            pick(&idx, &arm).ok().map(|d| d.digest.clone()),
            Some(Digest::of(b"arm64"))
        );
        let s390 = Platform::parse(Some("linux/s390x")).unwrap_or_else(|_| unreachable!());
        let err = pick(&idx, &s390)
            .err()
            .map(|p| p.to_string())
            .unwrap_or_default();
        assert!(
            err.contains("linux/s390x") && err.contains("linux/arm64/v8"),
            "{err}"
        );
        assert!(Platform::parse(Some("linux")).is_err());
    }

    #[test]
    fn layer_types() {
        assert!(check_layer_type(MEDIA_OCI_LAYER_GZIP).is_ok());
        assert!(check_layer_type(MEDIA_DOCKER_LAYER_GZIP).is_ok());
        assert!(check_layer_type("application/vnd.cncf.helm.chart.content.v1.tar+gzip").is_err());
    }
}

//! `rootbox push`: blobs the registry lacks (checked with HEAD; mounted from another
//! repository of the same registry when the image came from there), then the manifest.

use std::io::Read;
use std::sync::Arc;

use futures_util::{StreamExt, TryStreamExt};

use super::conf::{self, Conn};
use super::{
    auth, classify, oci_ref, BlobOutcome, Options, Problem, Progress, RegistryError, Result,
};
use crate::image::digest::Digest;
use crate::image::store::Descriptor;
use crate::image::{Reference, Store};

/// What [`push`] did.
#[derive(Debug, Clone)]
pub struct Pushed {
    /// Where the image went.
    pub reference: Reference,
    /// The manifest digest (as the registry has it).
    pub digest: Digest,
    pub uploaded: usize,
    pub existed: usize,
    pub mounted: usize,
}

/// A stream over a stored blob, reporting progress.
fn blob_stream(
    store: &Store,
    d: &Digest,
    progress: Arc<dyn Progress>,
) -> std::io::Result<
    impl futures_util::Stream<Item = oci_client::errors::Result<bytes::Bytes>> + Send + 'static,
> {
    let f = std::fs::File::open(store.blob_path(d))?;
    let d = d.clone();
    Ok(futures_util::stream::try_unfold(
        (f, d, progress),
        |(mut f, d, progress)| async move {
            let mut buf = vec![0u8; 1 << 20];
            let n = loop {
                match f.read(&mut buf) {
                    Ok(n) => break n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(oci_client::errors::OciDistributionError::IoError(e)),
                }
            };
            if n == 0 {
                return Ok(None);
            }
            buf.truncate(n);
            progress.advance(&d, n as u64);
            Ok(Some((bytes::Bytes::from(buf), (f, d, progress))))
        },
    ))
}

async fn push_blob(
    conn: &Conn,
    dest: &oci_client::Reference,
    mount_from: &[oci_client::Reference],
    store: &Store,
    desc: &Descriptor,
    progress: Arc<dyn Progress>,
) -> std::result::Result<BlobOutcome, Problem> {
    let digest = desc.digest.as_str();
    if conn
        .client
        .blob_exists(dest, digest)
        .await
        .map_err(|e| classify(&e, digest))?
    {
        progress.done(&desc.digest, BlobOutcome::Exists);
        return Ok(BlobOutcome::Exists);
    }
    for src in mount_from {
        if conn.client.mount_blob(dest, src, digest).await.is_ok() {
            progress.done(&desc.digest, BlobOutcome::Mounted);
            return Ok(BlobOutcome::Mounted);
        }
    }
    // The store verified the blob when it was written; check it is still whole.
    store
        .verify_blob(&desc.digest)
        .map_err(|e| Problem::Protocol(format!("local blob: {e}")))?;
    progress.start(&desc.digest, desc.size);
    let stream = blob_stream(store, &desc.digest, progress.clone())
        .map_err(|e| Problem::Protocol(format!("cannot read blob {digest}: {e}")))?;
    conn.client
        .push_blob_stream(dest, stream, digest, Some(desc.size))
        .await
        .map_err(|e| classify(&e, digest))?;
    progress.done(&desc.digest, BlobOutcome::Transferred);
    Ok(BlobOutcome::Transferred)
}

/// Pushes the stored image `source` to `dest` (default: `source` as a reference).
pub fn push(
    store: &Store,
    source: &str,
    dest: Option<&str>,
    opts: &Options,
    progress: Arc<dyn Progress>,
) -> Result<Pushed> {
    let img = store.resolve(source)?;
    let r = match dest {
        Some(d) => Reference::parse(d)?,
        None => {
            let parsed = Reference::parse(source).ok();
            match parsed.filter(|p| img.names.iter().any(|n| n == p)) {
                Some(p) => p,
                None => {
                    return Err(RegistryError::Config(format!(
                        "push {source}: no name to push to; give a destination, e.g. rootbox push {source} REGISTRY/NAME:TAG"
                    )))
                }
            }
        }
    };
    if r.digest.is_some() {
        return Err(RegistryError::Config(format!(
            "push destination {}: give a tag, not a digest",
            r.familiar()
        )));
    }
    let fail = |problem: Problem| RegistryError::Failed {
        op: "pushing",
        reference: r.familiar(),
        registry: r.domain.clone(),
        problem,
    };
    let mbytes = store.read_blob(&img.manifest_digest)?;
    let media = img.manifest_media_type.clone();
    let rt = super::runtime()?;
    let res: Result<(usize, usize, usize)> = rt.block_on(async {
        let conn = conf::connect(&r, opts, "pushing").await?;
        let creds = auth::registry_auth(&r.domain, opts)?;
        let oref = oci_ref(&r);
        conn.client
            .auth(&oref, &creds, oci_client::RegistryOperation::Push)
            .await
            .map_err(|e| fail(classify(&e, r.tag.as_deref().unwrap_or_default())))?;
        progress.message(&format!("Pushing {}...", r.familiar()));
        let mount_from: Vec<oci_client::Reference> = img
            .names
            .iter()
            .filter(|n| n.domain == r.domain && n.path != r.path)
            .map(oci_ref)
            .collect();
        let mut blobs: Vec<&Descriptor> = img.manifest.layers.iter().collect();
        blobs.push(&img.manifest.config);
        let jobs = opts.jobs.unwrap_or(3).max(1);
        let outcomes: Vec<BlobOutcome> = futures_util::stream::iter(blobs)
            .map(|d| push_blob(&conn, &oref, &mount_from, store, d, progress.clone()))
            .buffered(jobs)
            .try_collect()
            .await
            .map_err(fail)?;
        let ct = reqwest::header::HeaderValue::from_str(&media).map_err(|_| {
            fail(Problem::UnsupportedMediaType(format!(
                "{media:?} for a manifest"
            )))
        })?;
        conn.client
            .push_manifest_raw(&oref, mbytes.clone(), ct)
            .await
            .map_err(|e| fail(classify(&e, r.tag.as_deref().unwrap_or_default())))?;
        let count = |o: BlobOutcome| outcomes.iter().filter(|x| **x == o).count();
        Ok((
            count(BlobOutcome::Transferred),
            count(BlobOutcome::Exists),
            count(BlobOutcome::Mounted),
        ))
    });
    drop(rt);
    let (uploaded, existed, mounted) = res?;
    progress.message(&format!("Digest: {}", img.manifest_digest));
    Ok(Pushed {
        reference: r,
        digest: img.manifest_digest.clone(),
        uploaded,
        existed,
        mounted,
    })
}

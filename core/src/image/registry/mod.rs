//! OCI registries: `pull`, `push`, `login`/`logout` over the Distribution API.
//!
//! The protocol (manifests, token auth, blob up/downloads) is the `oci-client` crate; this module
//! decides which registry speaks plain HTTP or which CA to trust ([`conf`]), where credentials
//! are ([`auth`]), and moves blobs between a registry and the [`Store`](super::Store): every
//! downloaded blob is hashed while it is written to `tmp/`, compared with its digest and only
//! then renamed into `blobs/` (a mismatch discards it); blobs already present are skipped.
//!
//! Nothing here is on the launch path: a tokio runtime exists only inside one call of
//! [`pull`], [`push`] or [`login`], and is gone (threads joined) when the call returns.

pub mod auth;
pub mod conf;
mod pull;
mod push;

use std::fmt;

pub use auth::{login, logout};
pub use pull::{pull, tags, Pulled};
pub use push::{push, Pushed};

use super::digest::Digest;
use super::ImageError;

/// What went wrong with a registry, as a user can act on it.
#[derive(Debug)]
pub enum Problem {
    /// The repository does not exist (Distribution's NAME_UNKNOWN).
    UnknownImage,
    /// The repository exists but has no such tag or digest (MANIFEST_UNKNOWN).
    UnknownTag { tag: String, known: Vec<String> },
    /// Missing or wrong credentials, or no permission.
    Unauthorized(String),
    /// No connection (refused, DNS, timeout).
    Unreachable(String),
    /// A TLS failure (unknown CA, bad certificate).
    Tls(String),
    /// A blob whose content does not hash to its digest; it was discarded.
    DigestMismatch { digest: String, got: String },
    /// A manifest, config or layer of a kind rootbox cannot use.
    UnsupportedMediaType(String),
    /// An index without an image for the wanted platform.
    NoPlatform(String),
    /// Anything else the registry said.
    Protocol(String),
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::UnknownImage => write!(f, "repository not found (unknown image)"),
            Problem::UnknownTag { tag, known } if known.is_empty() => {
                write!(f, "manifest unknown: no tag or digest {tag:?}")
            }
            Problem::UnknownTag { tag, known } => write!(
                f,
                "manifest unknown: no tag {tag:?} (the repository has {})",
                known.join(", ")
            ),
            Problem::Unauthorized(m) => write!(
                f,
                "unauthorized: {m} (log in with `rootbox login REGISTRY`, or check the user name and password)"
            ),
            Problem::Unreachable(m) => write!(f, "cannot reach the registry: {m}"),
            Problem::Tls(m) => write!(
                f,
                "TLS error: {m} (trust the registry's CA with --cert-dir DIR holding its .crt, or use --tls-verify=false)"
            ),
            Problem::DigestMismatch { digest, got } => write!(
                f,
                "digest mismatch: blob {digest} hashes to {got} (corrupt download; discarded)"
            ),
            Problem::UnsupportedMediaType(m) => write!(f, "unsupported media type {m}"),
            Problem::NoPlatform(m) => write!(f, "{m}"),
            Problem::Protocol(m) => write!(f, "{m}"),
        }
    }
}

/// Errors of registry operations: each names the operation, the reference and the registry.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("{op} {reference} ({registry}): {problem}")]
    Failed {
        op: &'static str,
        reference: String,
        registry: String,
        problem: Problem,
    },
    #[error("{0}")]
    Config(String),
    #[error(transparent)]
    Image(#[from] ImageError),
}

impl RegistryError {
    /// The problem behind a failed operation.
    pub fn problem(&self) -> Option<&Problem> {
        match self {
            RegistryError::Failed { problem, .. } => Some(problem),
            _ => None,
        }
    }
}

pub type Result<T, E = RegistryError> = std::result::Result<T, E>;

/// Options shared by pull, push and login.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// `--tls-verify`: `Some(false)` allows an unverified certificate or plain HTTP.
    pub tls_verify: Option<bool>,
    /// `--cert-dir`: a directory of `*.crt` CA certificates to trust.
    pub cert_dir: Option<std::path::PathBuf>,
    /// `--creds USER[:PASS]` overriding stored credentials.
    pub creds: Option<(String, String)>,
    /// `--authfile`: the credentials file to read (and for login, write).
    pub authfile: Option<std::path::PathBuf>,
    /// `--platform os/arch[/variant]` (default: linux and this machine's architecture).
    pub platform: Option<String>,
    /// Parallel blob transfers (default 3).
    pub jobs: Option<usize>,
}

/// How a blob transfer ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlobOutcome {
    /// Downloaded (pull) or uploaded (push).
    Transferred,
    /// Already in the store (pull) or the registry (push).
    Exists,
    /// Mounted from another repository of the same registry (push).
    Mounted,
}

/// Progress of a pull or push, reported from the transfer tasks (any thread).
pub trait Progress: Send + Sync {
    /// A line of information (e.g. "Trying to pull ...").
    fn message(&self, line: &str);
    /// A blob transfer starts; `total` is its size in bytes.
    fn start(&self, digest: &Digest, total: u64);
    /// `n` more bytes of the blob were transferred.
    fn advance(&self, digest: &Digest, n: u64);
    /// The blob is done.
    fn done(&self, digest: &Digest, how: BlobOutcome);
}

/// A [`Progress`] that reports nothing.
pub struct Quiet;

impl Progress for Quiet {
    fn message(&self, _: &str) {}
    fn start(&self, _: &Digest, _: u64) {}
    fn advance(&self, _: &Digest, _: u64) {}
    fn done(&self, _: &Digest, _: BlobOutcome) {}
}

/// A current-thread-free runtime for one operation; dropped (threads joined) at its end.
fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .thread_name("rootbox-registry")
        .build()
        .map_err(|e| RegistryError::Config(format!("cannot start the registry client: {e}")))
}

/// The error text of `e` with its sources, deduplicated.
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = vec![e.to_string()];
    let mut cur = e.source();
    while let Some(s) = cur {
        let t = s.to_string();
        if !parts.iter().any(|p| p.contains(&t)) {
            parts.push(t);
        }
        cur = s.source();
    }
    parts.join(": ")
}

/// Turns an `oci-client` error into what the user can act on.
fn classify(e: &oci_client::errors::OciDistributionError, what: &str) -> Problem {
    use oci_client::errors::{OciDistributionError as E, OciErrorCode as C};
    match e {
        E::RegistryError { envelope, .. } => {
            let codes: Vec<&C> = envelope.errors.iter().map(|x| &x.code).collect();
            let msg = envelope
                .errors
                .iter()
                .map(|x| format!("{:?}: {}", x.code, x.message))
                .collect::<Vec<_>>()
                .join("; ");
            if codes.contains(&&C::NameUnknown) {
                Problem::UnknownImage
            } else if codes.contains(&&C::ManifestUnknown) {
                Problem::UnknownTag {
                    tag: what.to_string(),
                    known: Vec::new(),
                }
            } else if codes
                .iter()
                .any(|c| matches!(c, C::Unauthorized | C::Denied))
            {
                Problem::Unauthorized(msg)
            } else {
                Problem::Protocol(format!("the registry said: {msg}"))
            }
        }
        E::ImageManifestNotFoundError(_) => Problem::UnknownTag {
            tag: what.to_string(),
            known: Vec::new(),
        },
        E::UnauthorizedError { url } => {
            Problem::Unauthorized(format!("the registry refused access to {url}"))
        }
        E::AuthenticationFailure(m) => Problem::Unauthorized(m.clone()),
        E::ServerError { code, url, message } => match code {
            401 | 403 => Problem::Unauthorized(format!("HTTP {code} for {url}")),
            404 => Problem::UnknownTag {
                tag: what.to_string(),
                known: Vec::new(),
            },
            _ => Problem::Protocol(format!("HTTP {code} for {url}: {}", message.trim())),
        },
        E::RequestError(r) => request_problem(r),
        E::DigestError(d) => match d {
            oci_client::errors::DigestError::VerificationError { expected, actual } => {
                Problem::DigestMismatch {
                    digest: expected.clone(),
                    got: actual.clone(),
                }
            }
            other => Problem::Protocol(other.to_string()),
        },
        E::UnsupportedMediaTypeError(m) | E::IncompatibleLayerMediaTypeError(m) => {
            Problem::UnsupportedMediaType(m.clone())
        }
        other => Problem::Protocol(chain(other)),
    }
}

fn request_problem(r: &reqwest::Error) -> Problem {
    let text = chain(r);
    if let Some(st) = r.status() {
        if matches!(st.as_u16(), 401 | 403) {
            return Problem::Unauthorized(format!(
                "HTTP {st} for {}",
                r.url().map_or("", |u| u.as_str())
            ));
        }
    }
    let lower = text.to_ascii_lowercase();
    if lower.contains("certificate")
        || lower.contains("tls")
        || lower.contains("invalidcertificate")
        || lower.contains("unknownissuer")
    {
        Problem::Tls(text)
    } else if r.is_connect() || r.is_timeout() {
        Problem::Unreachable(text)
    } else {
        Problem::Protocol(text)
    }
}

/// The `oci-client` reference for ours.
fn oci_ref(r: &super::Reference) -> oci_client::Reference {
    match (&r.tag, &r.digest) {
        (_, Some(d)) => oci_client::Reference::with_digest(
            r.domain.clone(),
            r.path.clone(),
            d.as_str().to_string(),
        ),
        (Some(t), None) => {
            oci_client::Reference::with_tag(r.domain.clone(), r.path.clone(), t.clone())
        }
        (None, None) => oci_client::Reference::with_tag(
            r.domain.clone(),
            r.path.clone(),
            super::reference::DEFAULT_TAG.to_string(),
        ),
    }
}

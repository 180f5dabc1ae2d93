//! How to talk to a registry: HTTPS (verified against the system roots plus custom CAs),
//! HTTPS without verification, or plain HTTP.
//!
//! * `localhost`, `127.0.0.0/8` and `::1` may be plain HTTP, as Docker allows: rootbox tries
//!   TLS first and uses HTTP only when the server does not speak TLS; a local TLS server is
//!   still verified.
//! * Any other registry is HTTPS, verified, unless it is *insecure*: `--tls-verify=false`, or
//!   listed `insecure = true` in `registries.conf` (`$CONTAINERS_REGISTRIES_CONF`, else
//!   `~/.config/containers/registries.conf`, else `/etc/containers/registries.conf`; the v2
//!   `[[registry]]` tables and the v1 `[registries.insecure]` list). An insecure registry is
//!   tried over HTTPS without certificate checks, then over HTTP.
//! * Custom CAs: every `*.crt` of `--cert-dir DIR`, else of `~/.config/containers/certs.d/REG/`,
//!   `/etc/containers/certs.d/REG/` and `/etc/docker/certs.d/REG/` (REG = `host[:port]`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use oci_client::client::{Certificate, CertificateEncoding, ClientConfig, ClientProtocol};

use super::{Options, Problem, RegistryError, Result};

/// A connection plan for one registry.
pub struct Conn {
    /// The registry as the client resolves it (`docker.io` is `index.docker.io`).
    pub host: String,
    pub client: oci_client::Client,
    /// A plain HTTP client with the same TLS settings (for login checks).
    pub http: reqwest::Client,
    /// `https` or `http`.
    pub scheme: &'static str,
}

fn install_crypto() {
    // Fails only when a provider is already installed, which is what we want anyway.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Whether `host[:port]` names this machine's loopback.
pub fn is_local(registry: &str) -> bool {
    let host = if let Some(rest) = registry.strip_prefix('[') {
        rest.split(']').next().unwrap_or("")
    } else {
        registry.rsplit_once(':').map_or(registry, |(h, _)| h)
    };
    if host == "localhost" || host == "::1" {
        return true;
    }
    match host.parse::<std::net::Ipv4Addr>() {
        Ok(ip) => ip.is_loopback(),
        Err(_) => false,
    }
}

/// `$HOME`.
pub(crate) fn home() -> Option<PathBuf> {
    std::env::var_os("HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

/// `$XDG_CONFIG_HOME`, else `~/.config`.
pub(crate) fn config_home() -> Option<PathBuf> {
    std::env::var_os("XDG_CONFIG_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| home().map(|h| h.join(".config")))
}

/// The registries.conf in force, if any.
fn registries_conf() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("CONTAINERS_REGISTRIES_CONF").filter(|v| !v.is_empty()) {
        return Some(PathBuf::from(p));
    }
    let user = config_home().map(|c| c.join("containers/registries.conf"));
    user.filter(|p| p.is_file())
        .or_else(|| Some(PathBuf::from("/etc/containers/registries.conf")))
        .filter(|p| p.is_file())
}

/// Registries marked insecure in `text` (registries.conf, v1 or v2 format).
pub fn parse_insecure(text: &str, path: &Path) -> Result<Vec<String>> {
    let v: toml::Table = toml::from_str(text)
        .map_err(|e| RegistryError::Config(format!("{}: invalid TOML: {e}", path.display())))?;
    let mut out = Vec::new();
    if let Some(regs) = v.get("registry").and_then(|r| r.as_array()) {
        for r in regs {
            let insecure = r.get("insecure").and_then(|i| i.as_bool()) == Some(true);
            let loc = r
                .get("location")
                .or_else(|| r.get("prefix"))
                .and_then(|l| l.as_str());
            if let (true, Some(loc)) = (insecure, loc) {
                out.push(loc.trim_end_matches('/').to_string());
            }
        }
    }
    if let Some(list) = v
        .get("registries")
        .and_then(|r| r.get("insecure"))
        .and_then(|i| i.get("registries"))
        .and_then(|l| l.as_array())
    {
        out.extend(list.iter().filter_map(|s| s.as_str().map(String::from)));
    }
    Ok(out)
}

/// Whether registries.conf lists `registry` as insecure.
pub fn listed_insecure(registry: &str) -> Result<bool> {
    let Some(path) = registries_conf() else {
        return Ok(false);
    };
    let text = std::fs::read_to_string(&path)
        .map_err(|e| RegistryError::Config(format!("cannot read {}: {e}", path.display())))?;
    Ok(parse_insecure(&text, &path)?
        .iter()
        .any(|l| l == registry || registry.starts_with(&format!("{l}/"))))
}

/// PEM CA certificates to trust for `registry`.
fn ca_certs(registry: &str, opts: &Options) -> Result<Vec<Vec<u8>>> {
    let dirs: Vec<PathBuf> = match &opts.cert_dir {
        Some(d) => {
            if !d.is_dir() {
                return Err(RegistryError::Config(format!(
                    "--cert-dir {}: not a directory",
                    d.display()
                )));
            }
            vec![d.clone()]
        }
        None => {
            let mut v = Vec::new();
            if let Some(c) = config_home() {
                v.push(c.join("containers/certs.d").join(registry));
            }
            v.push(Path::new("/etc/containers/certs.d").join(registry));
            v.push(Path::new("/etc/docker/certs.d").join(registry));
            v
        }
    };
    let mut out = Vec::new();
    for d in dirs {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        let mut names: Vec<PathBuf> = rd
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "crt"))
            .collect();
        names.sort();
        for p in names {
            let pem = std::fs::read(&p)
                .map_err(|e| RegistryError::Config(format!("cannot read {}: {e}", p.display())))?;
            if reqwest::Certificate::from_pem(&pem).is_err() {
                return Err(RegistryError::Config(format!(
                    "{}: not a PEM certificate",
                    p.display()
                )));
            }
            out.push(pem);
        }
    }
    Ok(out)
}

/// Whether `https://host/v2/` answers at all (TLS, any certificate).
async fn speaks_tls(host: &str) -> bool {
    let Ok(c) = reqwest::Client::builder()
        .tls_danger_accept_invalid_certs(true)
        .timeout(Duration::from_secs(5))
        .build()
    else {
        return false;
    };
    c.get(format!("https://{host}/v2/")).send().await.is_ok()
}

/// Decides scheme and TLS settings for the registry of `r` and builds the clients.
pub(crate) async fn connect(
    r: &crate::image::Reference,
    opts: &Options,
    op: &'static str,
) -> Result<Conn> {
    install_crypto();
    let host = super::oci_ref(r).resolve_registry().to_string();
    let insecure = opts.tls_verify == Some(false) || listed_insecure(&r.domain)?;
    let may_http = insecure || is_local(&host);
    let scheme = if may_http && !speaks_tls(&host).await {
        "http"
    } else {
        "https"
    };
    let certs = ca_certs(&r.domain, opts)?;
    let mut cfg = ClientConfig {
        protocol: if scheme == "http" {
            ClientProtocol::HttpsExcept(vec![host.clone()])
        } else {
            ClientProtocol::Https
        },
        accept_invalid_certificates: insecure,
        extra_root_certificates: certs
            .iter()
            .map(|pem| Certificate {
                encoding: CertificateEncoding::Pem,
                data: pem.clone(),
            })
            .collect(),
        use_monolithic_push: true,
        connect_timeout: Some(Duration::from_secs(15)),
        read_timeout: Some(Duration::from_secs(120)),
        max_concurrent_download: opts.jobs.unwrap_or(3).max(1),
        max_concurrent_upload: opts.jobs.unwrap_or(3).max(1),
        ..Default::default()
    };
    cfg.platform_resolver = None;
    let mut hb = reqwest::Client::builder()
        .tls_danger_accept_invalid_certs(insecure)
        .connect_timeout(Duration::from_secs(15))
        .timeout(Duration::from_secs(60));
    for pem in &certs {
        let c = reqwest::Certificate::from_pem(pem)
            .map_err(|e| RegistryError::Config(format!("bad CA certificate: {e}")))?;
        hb = hb.add_root_certificate(c);
    }
    let http = hb.build().map_err(|e| RegistryError::Failed {
        op,
        reference: r.to_string(),
        registry: r.domain.clone(),
        problem: Problem::Tls(super::chain(&e)),
    })?;
    Ok(Conn {
        host,
        client: oci_client::Client::new(cfg),
        http,
        scheme,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_names() {
        assert!(is_local("localhost:5000"));
        assert!(is_local("127.0.0.1:5000"));
        assert!(is_local("127.1.2.3"));
        assert!(is_local("[::1]:5000"));
        assert!(!is_local("registry.example.com:5000"));
        assert!(!is_local("10.0.0.1:5000"));
    }

    #[test]
    fn insecure_lists() {
        let v2 = r#"
unqualified-search-registries = ["docker.io"]
[[registry]]
location = "reg.example:5000"
insecure = true
[[registry]]
location = "quay.io"
"#;
        assert_eq!(
            parse_insecure(v2, Path::new("x")).unwrap_or_default(),
            vec!["reg.example:5000".to_string()]
        );
        let v1 = "[registries.insecure]\nregistries = ['a.example', 'b.example:1']\n";
        assert_eq!(
            parse_insecure(v1, Path::new("x")).unwrap_or_default(),
            vec!["a.example".to_string(), "b.example:1".to_string()]
        );
        assert!(parse_insecure("[[registry", Path::new("bad.conf")).is_err());
    }
}

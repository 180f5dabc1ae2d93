//! Registry credentials in podman's `auth.json` format (`{"auths": {"REG": {"auth":
//! base64(user:pass)}}}`), the one Docker's `config.json` also uses.
//!
//! `rootbox login` writes `--authfile`, else `$REGISTRY_AUTH_FILE`, else
//! `$XDG_RUNTIME_DIR/containers/auth.json`, else `~/.config/containers/auth.json`.
//! Pull and push read, first hit wins: `--creds`, that file, `~/.config/containers/auth.json`,
//! `~/.docker/config.json`.

use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use oci_client::secrets::RegistryAuth;

use super::conf::{self, Conn};
use super::{Options, Problem, RegistryError, Result};
use crate::image::Reference;

/// The key under which a registry's credentials are stored (`docker.io` for Docker Hub).
pub fn registry_key(arg: &str) -> Result<String> {
    let s = arg
        .trim()
        .trim_start_matches("https://")
        .trim_start_matches("http://");
    let s = s.split('/').next().unwrap_or("");
    if s.is_empty() || s.contains(char::is_whitespace) {
        return Err(RegistryError::Config(format!(
            "invalid registry {arg:?}: expected HOST[:PORT]"
        )));
    }
    Ok(match s {
        "index.docker.io" | "registry-1.docker.io" => "docker.io".into(),
        other => other.to_string(),
    })
}

/// The file `login` writes.
pub fn write_path(opts: &Options) -> Result<PathBuf> {
    if let Some(p) = &opts.authfile {
        return Ok(p.clone());
    }
    if let Some(p) = std::env::var_os("REGISTRY_AUTH_FILE").filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(p));
    }
    if let Some(run) = std::env::var_os("XDG_RUNTIME_DIR").filter(|v| !v.is_empty()) {
        let run = PathBuf::from(run);
        if run.is_dir() {
            return Ok(run.join("containers/auth.json"));
        }
    }
    conf::config_home()
        .map(|c| c.join("containers/auth.json"))
        .ok_or_else(|| {
            RegistryError::Config(
                "no place for credentials: set XDG_RUNTIME_DIR or HOME, or use --authfile".into(),
            )
        })
}

/// Files searched for credentials, in order.
fn read_paths(opts: &Options) -> Vec<PathBuf> {
    let mut v = Vec::new();
    if let Ok(p) = write_path(opts) {
        v.push(p);
    }
    if opts.authfile.is_none() {
        if let Some(c) = conf::config_home() {
            v.push(c.join("containers/auth.json"));
        }
        if let Some(h) = conf::home() {
            v.push(h.join(".docker/config.json"));
        }
    }
    v.dedup();
    v
}

fn read_json(path: &Path) -> Result<Option<serde_json::Value>> {
    match std::fs::read(path) {
        Ok(b) => serde_json::from_slice(&b).map(Some).map_err(|e| {
            RegistryError::Config(format!("{}: invalid credentials file: {e}", path.display()))
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(RegistryError::Config(format!(
            "cannot read {}: {e}",
            path.display()
        ))),
    }
}

fn decode(entry: &serde_json::Value, path: &Path) -> Result<Option<(String, String)>> {
    if let (Some(u), Some(p)) = (
        entry.get("username").and_then(|v| v.as_str()),
        entry.get("password").and_then(|v| v.as_str()),
    ) {
        return Ok(Some((u.to_string(), p.to_string())));
    }
    let Some(a) = entry.get("auth").and_then(|v| v.as_str()) else {
        return Ok(None);
    };
    let bad = || RegistryError::Config(format!("{}: invalid \"auth\" entry", path.display()));
    let raw = base64::engine::general_purpose::STANDARD
        .decode(a.trim())
        .map_err(|_| bad())?;
    let text = String::from_utf8(raw).map_err(|_| bad())?;
    let (u, p) = text.split_once(':').ok_or_else(bad)?;
    Ok(Some((u.to_string(), p.to_string())))
}

/// Keys an entry for `key` may be stored under.
fn aliases(key: &str) -> Vec<String> {
    let mut v = vec![
        key.to_string(),
        format!("https://{key}"),
        format!("http://{key}"),
        format!("https://{key}/v1/"),
        format!("https://{key}/v2/"),
    ];
    if key == "docker.io" {
        v.push("https://index.docker.io/v1/".into());
        v.push("index.docker.io".into());
        v.push("registry-1.docker.io".into());
    }
    v
}

/// Stored credentials for `registry` (host[:port]).
pub fn credentials(registry: &str, opts: &Options) -> Result<Option<(String, String)>> {
    if let Some(c) = &opts.creds {
        return Ok(Some(c.clone()));
    }
    let key = registry_key(registry)?;
    for path in read_paths(opts) {
        let Some(doc) = read_json(&path)? else {
            continue;
        };
        let Some(auths) = doc.get("auths").and_then(|a| a.as_object()) else {
            continue;
        };
        for k in aliases(&key) {
            if let Some(entry) = auths.get(&k) {
                if let Some(c) = decode(entry, &path)? {
                    return Ok(Some(c));
                }
            }
        }
    }
    Ok(None)
}

/// The `oci-client` auth for `registry`.
pub(crate) fn registry_auth(registry: &str, opts: &Options) -> Result<RegistryAuth> {
    Ok(match credentials(registry, opts)? {
        Some((u, p)) => RegistryAuth::Basic(u, p),
        None => RegistryAuth::Anonymous,
    })
}

fn failed(registry: &str, problem: Problem) -> RegistryError {
    RegistryError::Failed {
        op: "logging in to",
        reference: registry.to_string(),
        registry: registry.to_string(),
        problem,
    }
}

/// The value of `key="..."` in a WWW-Authenticate challenge.
fn challenge_param(h: &str, key: &str) -> Option<String> {
    let i = h.to_ascii_lowercase().find(&format!("{key}=\""))?;
    let rest = &h[i + key.len() + 2..];
    Some(rest[..rest.find('"')?].to_string())
}

/// Checks credentials against the registry: `/v2/` with basic auth, or the token service the
/// registry names in its bearer challenge.
async fn verify(conn: &Conn, registry: &str, user: &str, pass: &str) -> Result<()> {
    let url = format!("{}://{}/v2/", conn.scheme, conn.host);
    let net = |e: reqwest::Error| failed(registry, super::request_problem(&e));
    let res = conn.http.get(&url).send().await.map_err(net)?;
    if res.status().is_success() {
        return Ok(());
    }
    if res.status() != reqwest::StatusCode::UNAUTHORIZED {
        return Err(failed(
            registry,
            Problem::Protocol(format!(
                "{url} answered HTTP {}: not a container registry?",
                res.status()
            )),
        ));
    }
    let challenge = res
        .headers()
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let res = if challenge.to_ascii_lowercase().starts_with("bearer") {
        let realm = challenge_param(&challenge, "realm").ok_or_else(|| {
            failed(
                registry,
                Problem::Protocol(format!("bearer challenge without realm: {challenge}")),
            )
        })?;
        let mut q: Vec<(&str, String)> = vec![("account", user.to_string())];
        if let Some(s) = challenge_param(&challenge, "service") {
            q.push(("service", s));
        }
        conn.http
            .get(&realm)
            .query(&q)
            .basic_auth(user, Some(pass))
            .send()
            .await
            .map_err(net)?
    } else {
        conn.http
            .get(&url)
            .basic_auth(user, Some(pass))
            .send()
            .await
            .map_err(net)?
    };
    if res.status().is_success() {
        Ok(())
    } else if matches!(res.status().as_u16(), 401 | 403) {
        Err(failed(
            registry,
            Problem::Unauthorized(format!("wrong user name or password for {user:?}")),
        ))
    } else {
        Err(failed(
            registry,
            Problem::Protocol(format!("login answered HTTP {}", res.status())),
        ))
    }
}

fn write_entry(path: &Path, key: &str, entry: Option<serde_json::Value>) -> Result<bool> {
    let mut doc = read_json(path)?.unwrap_or_else(|| serde_json::json!({}));
    let Some(obj) = doc.as_object_mut() else {
        return Err(RegistryError::Config(format!(
            "{}: not a JSON object",
            path.display()
        )));
    };
    let auths = obj
        .entry("auths")
        .or_insert_with(|| serde_json::json!({}))
        .as_object_mut()
        .ok_or_else(|| {
            RegistryError::Config(format!("{}: \"auths\" is not an object", path.display()))
        })?;
    let changed = match entry {
        Some(e) => {
            auths.insert(key.to_string(), e);
            true
        }
        None => {
            let mut any = false;
            for k in aliases(key) {
                any |= auths.remove(&k).is_some();
            }
            any
        }
    };
    if !changed {
        return Ok(false);
    }
    let io =
        |e: std::io::Error| RegistryError::Config(format!("cannot write {}: {e}", path.display()));
    if let Some(dir) = path.parent() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(io)?;
    }
    let data = serde_json::to_vec_pretty(&doc)
        .map_err(|e| RegistryError::Config(format!("credentials: {e}")))?;
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io)?;
        f.write_all(&data).map_err(io)?;
    }
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        io(e)
    })?;
    Ok(true)
}

/// `rootbox login`: checks the credentials with the registry, then stores them. Returns the
/// file written.
pub fn login(registry: &str, user: &str, pass: &str, opts: &Options) -> Result<PathBuf> {
    let key = registry_key(registry)?;
    if user.is_empty() {
        return Err(RegistryError::Config(
            "login: the user name is empty".into(),
        ));
    }
    if pass.is_empty() {
        return Err(RegistryError::Config("login: the password is empty".into()));
    }
    let r = Reference::parse(&format!("{key}/x"))
        .map_err(|_| RegistryError::Config(format!("invalid registry {registry:?}")))?;
    let rt = super::runtime()?;
    rt.block_on(async {
        let conn = conf::connect(&r, opts, "logging in to").await?;
        verify(&conn, &key, user, pass).await
    })?;
    drop(rt);
    let path = write_path(opts)?;
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
    write_entry(&path, &key, Some(serde_json::json!({ "auth": auth })))?;
    Ok(path)
}

/// `rootbox logout`: removes the stored credentials of `registry`. Returns the file changed,
/// or an error when there were none.
pub fn logout(registry: &str, opts: &Options) -> Result<PathBuf> {
    let key = registry_key(registry)?;
    let path = write_path(opts)?;
    if write_entry(&path, &key, None)? {
        Ok(path)
    } else {
        Err(RegistryError::Config(format!(
            "not logged in to {key} (no credentials in {})",
            path.display()
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys() {
        assert_eq!(
            registry_key("https://index.docker.io/v1/").ok().as_deref(),
            Some("docker.io")
        );
        assert_eq!(
            registry_key("127.0.0.1:5000").ok().as_deref(),
            Some("127.0.0.1:5000")
        );
        assert_eq!(registry_key("quay.io/foo").ok().as_deref(), Some("quay.io"));
        assert!(registry_key("").is_err());
    }

    #[test]
    fn decode_auth() {
        let e = serde_json::json!({"auth": "dXNlcjpwYTpzcw=="});
        assert_eq!(
            decode(&e, Path::new("x")).ok().flatten(),
            Some(("user".into(), "pa:ss".into()))
        );
        assert!(decode(&serde_json::json!({"auth": "!!"}), Path::new("x")).is_err());
    }

    #[test]
    fn challenge() {
        let h = r#"Bearer realm="https://auth.example/token",service="registry.example",scope="x""#;
        assert_eq!(
            challenge_param(h, "realm").as_deref(),
            Some("https://auth.example/token")
        );
        assert_eq!(
            challenge_param(h, "service").as_deref(),
            Some("registry.example")
        );
    }
}

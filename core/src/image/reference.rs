//! Image references parsed and normalised as Docker does (`distribution/reference`):
//! `busybox` is `docker.io/library/busybox:latest`, `localhost:5000/x` keeps its registry,
//! `name@sha256:<hex>` pins a manifest digest.

use std::fmt;

use super::digest::Digest;
use super::ImageError;

/// The registry an unqualified name belongs to.
pub const DEFAULT_DOMAIN: &str = "docker.io";
/// The tag used when none is given.
pub const DEFAULT_TAG: &str = "latest";
const LEGACY_DOMAIN: &str = "index.docker.io";
const OFFICIAL_PREFIX: &str = "library/";
const NAME_MAX: usize = 255;

/// A normalised image reference: `domain/path[:tag][@digest]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Reference {
    pub domain: String,
    pub path: String,
    pub tag: Option<String>,
    pub digest: Option<Digest>,
}

fn bad(reference: &str, reason: impl Into<String>) -> ImageError {
    ImageError::BadReference {
        reference: reference.to_string(),
        reason: reason.into(),
    }
}

fn is_alnum_lower(c: u8) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit()
}

/// `[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*`
fn valid_path_component(s: &str) -> bool {
    let b = s.as_bytes();
    if b.is_empty() || !is_alnum_lower(b[0]) || !is_alnum_lower(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if is_alnum_lower(b[i]) {
            i += 1;
            continue;
        }
        // A separator: ".", "_", "__" or a run of "-", followed by an alphanumeric.
        let start = i;
        match b[i] {
            b'.' => i += 1,
            b'_' => {
                i += 1;
                if i < b.len() && b[i] == b'_' {
                    i += 1;
                }
            }
            b'-' => {
                while i < b.len() && b[i] == b'-' {
                    i += 1;
                }
            }
            _ => return false,
        }
        if i == start || i >= b.len() || !is_alnum_lower(b[i]) {
            return false;
        }
    }
    true
}

/// `[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]`, dot-separated, optional `:port`.
fn valid_domain(s: &str) -> bool {
    let (host, port) = match s.rsplit_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (s, None),
    };
    if let Some(p) = port {
        if p.is_empty() || !p.bytes().all(|c| c.is_ascii_digit()) {
            return false;
        }
    }
    if host.starts_with('[') && host.ends_with(']') {
        let inner = &host[1..host.len() - 1];
        return !inner.is_empty() && inner.bytes().all(|c| c.is_ascii_hexdigit() || c == b':');
    }
    !host.is_empty()
        && host.split('.').all(|label| {
            let b = label.as_bytes();
            !b.is_empty()
                && b[0].is_ascii_alphanumeric()
                && b[b.len() - 1].is_ascii_alphanumeric()
                && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
        })
}

/// `[\w][\w.-]{0,127}`
pub fn valid_tag(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

impl Reference {
    /// Parses and normalises a reference as `docker pull` would.
    pub fn parse(s: &str) -> Result<Reference, ImageError> {
        let mut r = Self::parse_name_tag_digest(s)?;
        if r.tag.is_none() && r.digest.is_none() {
            r.tag = Some(DEFAULT_TAG.to_string());
        }
        Ok(r)
    }

    /// Parses without adding the default tag (a bare name stays a bare name).
    pub fn parse_name_tag_digest(s: &str) -> Result<Reference, ImageError> {
        if s.is_empty() {
            return Err(bad(s, "the reference is empty"));
        }
        if s.len() == 64 && s.bytes().all(|c| c.is_ascii_hexdigit()) {
            return Err(bad(
                s,
                "repository name cannot be a 64-character hexadecimal string (that is an image id)",
            ));
        }
        let (rest, digest) = match s.split_once('@') {
            Some((r, d)) => {
                let d = Digest::parse(d).map_err(|e| bad(s, e.to_string()))?;
                (r, Some(d))
            }
            None => (s, None),
        };
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => {
                let tag = &rest[last_slash + i + 1..];
                if !valid_tag(tag) {
                    return Err(bad(
                        s,
                        format!("invalid tag {tag:?} (letters, digits, '_', '.', '-'; at most 128, not starting with '.' or '-')"),
                    ));
                }
                (&rest[..last_slash + i], Some(tag.to_string()))
            }
            None => (rest, None),
        };
        if name.is_empty() {
            return Err(bad(s, "the repository name is empty"));
        }
        let (domain, path) = split_domain(name);
        if domain != DEFAULT_DOMAIN && !valid_domain(&domain) {
            return Err(bad(s, format!("invalid registry {domain:?}")));
        }
        if path.bytes().any(|c| c.is_ascii_uppercase()) {
            return Err(bad(
                s,
                format!("repository name {path:?} must be lowercase"),
            ));
        }
        for comp in path.split('/') {
            if !valid_path_component(comp) {
                return Err(bad(
                    s,
                    format!("invalid repository name component {comp:?} (lowercase letters, digits and single '.', '_', '__' or '-' separators)"),
                ));
            }
        }
        if domain.len() + 1 + path.len() > NAME_MAX {
            return Err(bad(
                s,
                format!("repository name is longer than {NAME_MAX} characters"),
            ));
        }
        Ok(Reference {
            domain,
            path,
            tag,
            digest,
        })
    }

    /// `domain/path`, e.g. `docker.io/library/busybox`.
    pub fn name(&self) -> String {
        format!("{}/{}", self.domain, self.path)
    }

    /// The name as Docker prints it: `busybox`, `user/app`, `localhost:5000/x`. A Docker Hub
    /// name whose first component looks like a registry (`docker.io/my.org/app`) keeps its
    /// domain, so that what is printed names the same image when it is typed back.
    pub fn familiar_name(&self) -> String {
        if self.domain == DEFAULT_DOMAIN {
            let short = self
                .path
                .strip_prefix(OFFICIAL_PREFIX)
                .filter(|p| !p.contains('/'))
                .unwrap_or(&self.path);
            if split_domain(short) == (DEFAULT_DOMAIN.to_string(), self.path.clone()) {
                return short.to_string();
            }
        }
        self.name()
    }

    /// `busybox:latest` (familiar name with tag and digest).
    pub fn familiar(&self) -> String {
        let mut s = self.familiar_name();
        if let Some(t) = &self.tag {
            s.push(':');
            s.push_str(t);
        }
        if let Some(d) = &self.digest {
            s.push('@');
            s.push_str(d.as_str());
        }
        s
    }

    /// The same name with another tag and no digest.
    pub fn with_tag(&self, tag: &str) -> Reference {
        Reference {
            domain: self.domain.clone(),
            path: self.path.clone(),
            tag: Some(tag.to_string()),
            digest: None,
        }
    }

    /// The same name pinned to a digest, without tag.
    pub fn with_digest(&self, digest: &Digest) -> Reference {
        Reference {
            domain: self.domain.clone(),
            path: self.path.clone(),
            tag: None,
            digest: Some(digest.clone()),
        }
    }
}

fn split_domain(name: &str) -> (String, String) {
    let (mut domain, mut path) = match name.split_once('/') {
        Some((first, rest))
            if first.contains(['.', ':'])
                || first == "localhost"
                || first.bytes().any(|c| c.is_ascii_uppercase()) =>
        {
            (first.to_string(), rest.to_string())
        }
        _ => (DEFAULT_DOMAIN.to_string(), name.to_string()),
    };
    if domain == LEGACY_DOMAIN {
        domain = DEFAULT_DOMAIN.to_string();
    }
    if domain == DEFAULT_DOMAIN && !path.contains('/') {
        path = format!("{OFFICIAL_PREFIX}{path}");
    }
    (domain, path)
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.name())?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

impl std::str::FromStr for Reference {
    type Err = ImageError;
    fn from_str(s: &str) -> Result<Self, ImageError> {
        Reference::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(s: &str) -> String {
        Reference::parse(s).unwrap().to_string()
    }

    #[test]
    fn familiar_form_names_the_same_image() {
        // Found by fuzzing (fuzz/fuzz_targets/reference.rs): a Docker Hub path whose first
        // component has a dot was printed without `docker.io/`, and read back as a registry
        // (or as Docker Hub again, with another path).
        for s in [
            "docker.io/222222docker.o/l222/li",
            "docker.io/my.org/app:1",
            "docker.io/localhost/x",
            "index.docker.io/a:b/c",
            "docker.io/docker.io/1",
            "docker.io/index.docker.io/x",
            "docker.io/library/docker.io",
        ] {
            let Ok(r) = Reference::parse(s) else {
                continue;
            };
            let again = Reference::parse(&r.familiar()).unwrap();
            assert_eq!(again, r, "{s} -> {}", r.familiar());
        }
        let r = Reference::parse("docker.io/my.org/app:1").unwrap();
        assert_eq!(r.familiar(), "docker.io/my.org/app:1");
        assert_eq!(r.familiar_name(), "docker.io/my.org/app");
        assert_eq!(
            Reference::parse("user/app").unwrap().familiar(),
            "user/app:latest"
        );
        assert_eq!(
            Reference::parse("busybox").unwrap().familiar(),
            "busybox:latest"
        );
    }

    #[test]
    fn docker_normalisation() {
        assert_eq!(norm("busybox"), "docker.io/library/busybox:latest");
        assert_eq!(norm("busybox:1.36"), "docker.io/library/busybox:1.36");
        assert_eq!(norm("user/app"), "docker.io/user/app:latest");
        assert_eq!(
            norm("index.docker.io/busybox"),
            "docker.io/library/busybox:latest"
        );
        assert_eq!(norm("localhost/x"), "localhost/x:latest");
        assert_eq!(norm("localhost:5000/x"), "localhost:5000/x:latest");
        assert_eq!(norm("localhost:5000/x:v2"), "localhost:5000/x:v2");
        assert_eq!(norm("quay.io/a/b/c:t"), "quay.io/a/b/c:t");
        assert_eq!(
            norm("a.b_c__d-e--f"),
            "docker.io/library/a.b_c__d-e--f:latest"
        );
        assert_eq!(norm("[::1]:5000/x"), "[::1]:5000/x:latest");
        let d = format!("sha256:{}", "ab".repeat(32));
        assert_eq!(
            norm(&format!("busybox@{d}")),
            format!("docker.io/library/busybox@{d}")
        );
        assert_eq!(
            norm(&format!("busybox:1@{d}")),
            format!("docker.io/library/busybox:1@{d}")
        );
    }

    #[test]
    fn familiar_forms() {
        let r = Reference::parse("docker.io/library/busybox").unwrap();
        assert_eq!(r.familiar(), "busybox:latest");
        assert_eq!(
            Reference::parse("user/app:1").unwrap().familiar(),
            "user/app:1"
        );
        assert_eq!(
            Reference::parse("localhost:5000/x")
                .unwrap()
                .familiar_name(),
            "localhost:5000/x"
        );
    }

    #[test]
    fn invalid_references() {
        for s in [
            "",
            "Busybox",
            "busybox:",
            "busybox:-x",
            "-busybox",
            "busy..box",
            "busybox/",
            "a//b",
            "busybox@sha256:abc",
            "busybox@md5:00",
            "host:port/x",
            "a:b:c",
            &"a".repeat(300),
            &"ab".repeat(32),
            "bad space",
        ] {
            assert!(Reference::parse(s).is_err(), "{s:?} should be rejected");
        }
        let e = Reference::parse("Busybox").unwrap_err().to_string();
        assert!(e.contains("lowercase"), "{e}");
    }
}

//! Docker's mount syntaxes: `-v SRC:DST[:OPTS]`, `-v DST` and
//! `--mount type=bind|volume|tmpfs,source=...,target=...,readonly,...`.

use std::path::PathBuf;

use super::{volume, RootfsError};
use crate::spec::BindVolume;

/// Where a volume mount's data lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VolumeSource {
    /// A named volume of the store (created on first use).
    Named(String),
    /// A new volume with a random name, removed with the container (`--rm`).
    Anonymous,
}

/// A volume mounted into the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeMount {
    pub source: VolumeSource,
    pub destination: PathBuf,
    pub readonly: bool,
    /// Do not seed a new volume from the image's content (`volume-nocopy`, `:nocopy`).
    pub nocopy: bool,
}

/// One `-v`/`--mount` request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MountRequest {
    Bind(BindVolume),
    Volume(VolumeMount),
    /// A tmpfs: destination and its options (`size=`, `mode=`), as `--tmpfs DST:OPTS` takes.
    Tmpfs {
        destination: String,
        options: Vec<String>,
    },
}

fn absolute(what: &'static str, input: &str, p: &str) -> Result<PathBuf, RootfsError> {
    if p.is_empty() {
        return Err(RootfsError::invalid(what, input, "no container path given"));
    }
    if !p.starts_with('/') {
        return Err(RootfsError::invalid(
            what,
            input,
            format!("container path {p:?} is not absolute"),
        ));
    }
    Ok(PathBuf::from(p))
}

impl MountRequest {
    /// `-v /host:/ctr[:ro]`, `-v NAME:/ctr[:ro,nocopy]`, `-v /ctr`.
    pub fn parse_volume(s: &str) -> Result<MountRequest, RootfsError> {
        let parts: Vec<&str> = s.split(':').collect();
        match parts.as_slice() {
            [dst] => Ok(MountRequest::Volume(VolumeMount {
                source: VolumeSource::Anonymous,
                destination: absolute("volume", s, dst)?,
                readonly: false,
                nocopy: false,
            })),
            [src, ..] if src.starts_with('/') => s
                .parse::<BindVolume>()
                .map(MountRequest::Bind)
                .map_err(|e| RootfsError::invalid("volume", s, e.to_string())),
            [src, dst, rest @ ..] if rest.len() <= 1 => {
                volume::validate_name(src).map_err(|_| {
                    RootfsError::invalid(
                        "volume",
                        s,
                        format!("{src:?} is neither an absolute host path nor a volume name ([a-zA-Z0-9][a-zA-Z0-9_.-]+)"),
                    )
                })?;
                let mut v = VolumeMount {
                    source: VolumeSource::Named(src.to_string()),
                    destination: absolute("volume", s, dst)?,
                    readonly: false,
                    nocopy: false,
                };
                for o in rest.first().unwrap_or(&"").split(',').filter(|o| !o.is_empty()) {
                    match o {
                        "ro" | "readonly" => v.readonly = true,
                        "rw" => v.readonly = false,
                        "nocopy" => v.nocopy = true,
                        "z" | "Z" => {}
                        other => {
                            return Err(RootfsError::invalid(
                                "volume",
                                s,
                                format!("unknown option {other:?} (expected ro, rw, nocopy)"),
                            ))
                        }
                    }
                }
                Ok(MountRequest::Volume(v))
            }
            _ => Err(RootfsError::invalid(
                "volume",
                s,
                "expected HOST-PATH:CONTAINER-PATH[:OPTIONS], NAME:CONTAINER-PATH[:OPTIONS] or CONTAINER-PATH",
            )),
        }
    }

    /// `--mount type=bind|volume|tmpfs,source=...,target=...[,readonly][,...]`.
    pub fn parse_mount(s: &str) -> Result<MountRequest, RootfsError> {
        let bad = |why: String| RootfsError::invalid("--mount", s, why);
        let mut typ = "volume".to_string();
        let (mut src, mut dst) = (None::<String>, None::<String>);
        let mut readonly = false;
        let mut nocopy = false;
        let mut tmpfs_opts = Vec::new();
        let truth = |k: &str, v: Option<&str>| -> Result<bool, RootfsError> {
            match v {
                None | Some("true") | Some("1") => Ok(true),
                Some("false") | Some("0") => Ok(false),
                Some(o) => Err(bad(format!("{k}={o}: expected true or false"))),
            }
        };
        for field in s.split(',').filter(|f| !f.is_empty()) {
            let (k, v) = match field.split_once('=') {
                Some((k, v)) => (k, Some(v)),
                None => (field, None),
            };
            let need = |v: Option<&str>| -> Result<String, RootfsError> {
                v.filter(|v| !v.is_empty())
                    .map(String::from)
                    .ok_or_else(|| bad(format!("{k} needs a value")))
            };
            match k {
                "type" => typ = need(v)?,
                "source" | "src" => src = Some(need(v)?),
                "target" | "destination" | "dst" => dst = Some(need(v)?),
                "readonly" | "ro" => readonly = truth(k, v)?,
                "volume-nocopy" => nocopy = truth(k, v)?,
                "tmpfs-size" => tmpfs_opts.push(format!("size={}", tmpfs_size(&need(v)?).map_err(bad)?)),
                "tmpfs-mode" => {
                    let m = need(v)?;
                    u32::from_str_radix(&m, 8)
                        .map_err(|_| bad(format!("tmpfs-mode {m:?} is not an octal mode")))?;
                    tmpfs_opts.push(format!("mode={m}"));
                }
                "consistency" | "bind-propagation" => {}
                other => {
                    return Err(bad(format!(
                        "unknown field {other:?} (expected type, source, target, readonly, volume-nocopy, tmpfs-size, tmpfs-mode)"
                    )))
                }
            }
        }
        let dst = dst.ok_or_else(|| bad("target=... is missing".into()))?;
        let destination = absolute("--mount", s, &dst)?;
        match typ.as_str() {
            "bind" => {
                let src = src.ok_or_else(|| bad("a bind mount needs source=HOST-PATH".into()))?;
                if !src.starts_with('/') {
                    return Err(bad(format!("bind source {src:?} is not an absolute path")));
                }
                if !tmpfs_opts.is_empty() || nocopy {
                    return Err(bad(
                        "tmpfs-* and volume-* fields do not apply to a bind mount".into(),
                    ));
                }
                Ok(MountRequest::Bind(BindVolume {
                    source: PathBuf::from(src),
                    destination,
                    readonly,
                }))
            }
            "volume" => {
                if !tmpfs_opts.is_empty() {
                    return Err(bad("tmpfs-* fields do not apply to a volume".into()));
                }
                let source = match src {
                    Some(n) => {
                        volume::validate_name(&n).map_err(|e| bad(e.to_string()))?;
                        VolumeSource::Named(n)
                    }
                    None => VolumeSource::Anonymous,
                };
                Ok(MountRequest::Volume(VolumeMount {
                    source,
                    destination,
                    readonly,
                    nocopy,
                }))
            }
            "tmpfs" => {
                if src.is_some() {
                    return Err(bad("a tmpfs takes no source".into()));
                }
                if readonly {
                    tmpfs_opts.push("ro".into());
                }
                Ok(MountRequest::Tmpfs {
                    destination: dst,
                    options: tmpfs_opts,
                })
            }
            other => Err(bad(format!(
                "unknown type {other:?} (expected bind, volume or tmpfs)"
            ))),
        }
    }

    /// The `--tmpfs DST[:OPTS]` form of a tmpfs request.
    pub fn tmpfs_arg(&self) -> Option<String> {
        match self {
            MountRequest::Tmpfs {
                destination,
                options,
            } if options.is_empty() => Some(destination.clone()),
            MountRequest::Tmpfs {
                destination,
                options,
            } => Some(format!("{destination}:{}", options.join(","))),
            _ => None,
        }
    }
}

/// Docker's `tmpfs-size`: bytes, or with a k/m/g suffix.
fn tmpfs_size(v: &str) -> Result<String, String> {
    let (num, suffix) = v.split_at(v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len()));
    let n: u64 = num
        .parse()
        .map_err(|_| format!("tmpfs-size {v:?} is not a size (bytes, or with k, m, g)"))?;
    let mult = match suffix.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        _ => return Err(format!("tmpfs-size {v:?}: unknown unit {suffix:?}")),
    };
    if n == 0 {
        return Err(format!("tmpfs-size {v:?} must be more than 0"));
    }
    Ok((n * mult).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volume_flags() {
        assert!(matches!(
            MountRequest::parse_volume("/h:/c:ro").unwrap(),
            MountRequest::Bind(BindVolume { readonly: true, .. })
        ));
        match MountRequest::parse_volume("data:/c:ro,nocopy").unwrap() {
            MountRequest::Volume(v) => {
                assert_eq!(v.source, VolumeSource::Named("data".into()));
                assert!(v.readonly && v.nocopy);
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            MountRequest::parse_volume("/c").unwrap(),
            MountRequest::Volume(VolumeMount {
                source: VolumeSource::Anonymous,
                ..
            })
        ));
        assert!(MountRequest::parse_volume("c").is_err());
        assert!(MountRequest::parse_volume("da ta:/c").is_err());
        assert!(MountRequest::parse_volume("data:c").is_err());
        assert!(MountRequest::parse_volume("data:/c:xx").is_err());
    }

    #[test]
    fn mount_flags() {
        assert!(matches!(
            MountRequest::parse_mount("type=bind,source=/h,target=/c,readonly").unwrap(),
            MountRequest::Bind(BindVolume { readonly: true, .. })
        ));
        assert!(matches!(
            MountRequest::parse_mount("type=volume,target=/c").unwrap(),
            MountRequest::Volume(VolumeMount {
                source: VolumeSource::Anonymous,
                ..
            })
        ));
        let t =
            MountRequest::parse_mount("type=tmpfs,dst=/t,tmpfs-size=1m,tmpfs-mode=1777").unwrap();
        assert_eq!(t.tmpfs_arg().unwrap(), "/t:size=1048576,mode=1777");
        for bad in [
            "type=bind,target=/c",
            "type=bind,source=rel,target=/c",
            "type=nfs,target=/c",
            "type=volume,source=x",
            "type=volume,target=c",
            "type=tmpfs,source=/x,target=/t",
            "type=tmpfs,target=/t,tmpfs-size=lots",
            "type=volume,target=/c,colour=blue",
            "type=volume,target=/c,readonly=maybe",
        ] {
            let e = MountRequest::parse_mount(bad).expect_err(bad);
            assert!(e.to_string().contains(bad), "{e}");
        }
    }
}

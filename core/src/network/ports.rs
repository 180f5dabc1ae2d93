//! Published ports: `-p [IP:][HOST:]CTR[/tcp|udp]` parsed, checked against the host
//! (unprivileged port range, ports in use) and resolved to concrete mappings before launch.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::NetworkError;

/// A transport protocol of a published port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    Tcp,
    Udp,
}

impl fmt::Display for Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        })
    }
}

impl FromStr for Proto {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "tcp" => Ok(Proto::Tcp),
            "udp" => Ok(Proto::Udp),
            other => Err(format!("unknown protocol {other:?} (expected tcp or udp)")),
        }
    }
}

/// What the user asked for with `-p`: the host side may be left to us.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PortSpec {
    pub host_ip: Option<IpAddr>,
    /// `None`: a free port is chosen.
    pub host_port: Option<u16>,
    pub container_port: u16,
    pub proto: Proto,
}

/// A published port as set up: `host_ip:host_port` on the host forwards to `container_port`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PortMapping {
    pub host_ip: IpAddr,
    pub host_port: u16,
    pub container_port: u16,
    pub proto: Proto,
}

impl fmt::Display for PortMapping {
    /// `rootbox port`'s (and `docker port`'s) format: `80/tcp -> 127.0.0.1:8080`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let host = match self.host_ip {
            IpAddr::V6(ip) => format!("[{ip}]"),
            IpAddr::V4(ip) => ip.to_string(),
        };
        write!(
            f,
            "{}/{} -> {}:{}",
            self.container_port, self.proto, host, self.host_port
        )
    }
}

fn parse_port(s: &str, spec: &str, what: &str) -> Result<u16, NetworkError> {
    let bad = |why: String| NetworkError::BadPort {
        spec: spec.to_string(),
        why,
    };
    if s.contains('-') {
        return Err(bad("port ranges are not supported".into()));
    }
    match s.parse::<u32>() {
        Ok(0) => Err(bad(format!("{what} port 0 is not a port"))),
        Ok(p) if p <= 65535 => Ok(p as u16),
        Ok(p) => Err(bad(format!("{what} port {p} is out of range (1-65535)"))),
        Err(_) => Err(bad(format!("{what} port {s:?} is not a number"))),
    }
}

impl FromStr for PortSpec {
    type Err = NetworkError;

    /// `CTR`, `HOST:CTR`, `IP:HOST:CTR`, `IP::CTR`, `[IPv6]:HOST:CTR`, each with `/tcp|/udp`.
    fn from_str(spec: &str) -> Result<Self, NetworkError> {
        let bad = |why: &str| NetworkError::BadPort {
            spec: spec.to_string(),
            why: why.to_string(),
        };
        if spec.is_empty() {
            return Err(bad("empty"));
        }
        let (rest, proto) = match spec.rsplit_once('/') {
            Some((r, p)) => (
                r,
                p.parse::<Proto>().map_err(|e| NetworkError::BadPort {
                    spec: spec.to_string(),
                    why: e,
                })?,
            ),
            None => (spec, Proto::Tcp),
        };
        // An IPv6 address in brackets first.
        let (ip_part, rest) = if let Some(r) = rest.strip_prefix('[') {
            let (ip, r) = r
                .split_once(']')
                .ok_or_else(|| bad("unclosed '[' around the IPv6 address"))?;
            let r = r
                .strip_prefix(':')
                .ok_or_else(|| bad("expected ':' after the IPv6 address"))?;
            (Some(ip), r)
        } else {
            (None, rest)
        };
        let parts: Vec<&str> = rest.split(':').collect();
        let (ip, host, ctr) = match (ip_part, parts.as_slice()) {
            (None, [ctr]) => (None, None, *ctr),
            (None, [host, ctr]) => (None, Some(*host), *ctr),
            (None, [ip, host, ctr]) => (Some(*ip), Some(*host), *ctr),
            (Some(ip), [host, ctr]) => (Some(ip), Some(*host), *ctr),
            _ => return Err(bad("expected [IP:][HOST_PORT:]CONTAINER_PORT[/tcp|udp]")),
        };
        let host_ip = match ip {
            Some(ip) => Some(ip.parse::<IpAddr>().map_err(|_| NetworkError::BadPort {
                spec: spec.to_string(),
                why: format!("{ip:?} is not an IP address"),
            })?),
            None => None,
        };
        let host_port = match host {
            Some("") | None => None,
            Some(h) => Some(parse_port(h, spec, "host")?),
        };
        let container_port = parse_port(ctr, spec, "container")?;
        Ok(PortSpec {
            host_ip,
            host_port,
            container_port,
            proto,
        })
    }
}

/// `net.ipv4.ip_unprivileged_port_start`: the first port an ordinary user may bind.
pub fn unprivileged_port_start() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_unprivileged_port_start")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(1024)
}

fn is_root() -> bool {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Binds the address the helper will bind, to find a port in use (or a free port for port 0)
/// before anything starts. Returns the bound port.
fn probe(ip: IpAddr, port: u16, proto: Proto) -> std::io::Result<u16> {
    let addr = SocketAddr::new(ip, port);
    match proto {
        Proto::Tcp => TcpListener::bind(addr).and_then(|l| l.local_addr()),
        Proto::Udp => UdpSocket::bind(addr).and_then(|s| s.local_addr()),
    }
    .map(|a| a.port())
}

/// Resolves the requested ports: default address 127.0.0.1, free ports chosen for `-p CTR`,
/// privileged and busy ports refused with a clear error.
pub fn resolve(specs: &[PortSpec]) -> Result<Vec<PortMapping>, NetworkError> {
    let start = unprivileged_port_start();
    let mut out: Vec<PortMapping> = Vec::new();
    for s in specs {
        let host_ip = s.host_ip.unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST));
        let host_port = match s.host_port {
            Some(p) => {
                if p < start && !is_root() {
                    return Err(NetworkError::PrivilegedPort { port: p, start });
                }
                if out
                    .iter()
                    .any(|m| m.host_port == p && m.proto == s.proto && m.host_ip == host_ip)
                {
                    return Err(NetworkError::BadPort {
                        spec: format!("{host_ip}:{p}/{}", s.proto),
                        why: "published twice".into(),
                    });
                }
                probe(host_ip, p, s.proto).map_err(|e| port_error(host_ip, p, s.proto, e))?;
                p
            }
            None => probe(host_ip, 0, s.proto).map_err(|e| port_error(host_ip, 0, s.proto, e))?,
        };
        out.push(PortMapping {
            host_ip,
            host_port,
            container_port: s.container_port,
            proto: s.proto,
        });
    }
    Ok(out)
}

fn port_error(ip: IpAddr, port: u16, proto: Proto, e: std::io::Error) -> NetworkError {
    match e.raw_os_error() {
        Some(libc::EADDRINUSE) => NetworkError::PortInUse { ip, port, proto },
        Some(libc::EADDRNOTAVAIL) => NetworkError::BadPort {
            spec: format!("{ip}:{port}/{proto}"),
            why: format!("{ip} is not an address of this host"),
        },
        Some(libc::EACCES) => NetworkError::PrivilegedPort {
            port,
            start: unprivileged_port_start(),
        },
        _ => NetworkError::BadPort {
            spec: format!("{ip}:{port}/{proto}"),
            why: e.to_string(),
        },
    }
}

/// Image `ExposedPorts` keys (`80/tcp`, `53/udp`, `8080`) as container ports to publish.
pub fn parse_exposed(keys: &[String]) -> Result<Vec<PortSpec>, NetworkError> {
    keys.iter()
        .map(|k| {
            let spec: PortSpec = k.parse()?;
            if spec.host_port.is_some() || spec.host_ip.is_some() {
                return Err(NetworkError::BadPort {
                    spec: k.clone(),
                    why: "an exposed port names only the container port".into(),
                });
            }
            Ok(spec)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> PortSpec {
        s.parse().unwrap()
    }

    #[test]
    fn specs_parse() {
        assert_eq!(
            p("8080:80"),
            PortSpec {
                host_ip: None,
                host_port: Some(8080),
                container_port: 80,
                proto: Proto::Tcp
            }
        );
        assert_eq!(p("80").host_port, None);
        assert_eq!(p("53/udp").proto, Proto::Udp);
        let s = p("0.0.0.0:8080:80/tcp");
        assert_eq!(s.host_ip, Some("0.0.0.0".parse().unwrap()));
        let s = p("127.0.0.1::80");
        assert_eq!((s.host_ip.is_some(), s.host_port), (true, None));
        let s = p("[::1]:8080:80");
        assert_eq!(s.host_ip, Some("::1".parse().unwrap()));
    }

    #[test]
    fn bad_specs_are_refused_with_reason() {
        for (s, why) in [
            ("", "empty"),
            ("abc", "not a number"),
            ("70000:80", "out of range"),
            ("8080:0", "not a port"),
            ("8080:80/sctp", "unknown protocol"),
            ("1.2.3:8080:80", "not an IP address"),
            ("8000-8010:80", "ranges"),
            ("a:b:c:d", "expected"),
        ] {
            let e = s.parse::<PortSpec>().unwrap_err().to_string();
            assert!(e.contains(why), "{s}: {e}");
        }
    }

    #[test]
    fn display_like_docker_port() {
        let m = PortMapping {
            host_ip: "127.0.0.1".parse().unwrap(),
            host_port: 8080,
            container_port: 80,
            proto: Proto::Tcp,
        };
        assert_eq!(m.to_string(), "80/tcp -> 127.0.0.1:8080");
    }

    #[test]
    fn busy_port_is_refused_and_free_port_chosen() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let spec = PortSpec {
            host_ip: None,
            host_port: Some(port),
            container_port: 80,
            proto: Proto::Tcp,
        };
        let e = resolve(&[spec]).unwrap_err();
        assert!(matches!(e, NetworkError::PortInUse { .. }), "{e}");
        let free = resolve(&[p("80")]).unwrap();
        assert_ne!(free[0].host_port, 0);
    }
}

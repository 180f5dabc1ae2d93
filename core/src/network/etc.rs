//! The network facts a container's generated `/etc/hosts`, `/etc/resolv.conf` and
//! `/etc/hostname` are made from.
//!
//! The rootfs code (`rootfs::etc`, generated per-container files like Docker's init layer) is
//! the one place that turns [`Facts`] into file contents; [`write`] rewrites them in place.

use std::net::IpAddr;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::NetworkError;

/// One `/etc/hosts` entry (`--add-host NAME:IP`, or a peer on a user network).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostEntry {
    pub name: String,
    pub ip: IpAddr,
}

impl std::str::FromStr for HostEntry {
    type Err = NetworkError;

    /// `NAME:IP` (or `NAME=IP`); the IP may be IPv6 (`name:fd00::1`).
    fn from_str(s: &str) -> Result<Self, NetworkError> {
        let bad = |why: &str| NetworkError::Invalid(format!("invalid --add-host {s:?}: {why}"));
        let (name, ip) = s
            .split_once(['=', ':'])
            .ok_or_else(|| bad("expected NAME:IP"))?;
        if !valid_hostname(name) {
            return Err(bad(
                "the name must be a host name (letters, digits, '-', '.')",
            ));
        }
        let ip = ip
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            .map_err(|_| bad(&format!("{ip:?} is not an IP address")))?;
        Ok(HostEntry {
            name: name.to_string(),
            ip,
        })
    }
}

/// Whether `s` is usable as a host name in /etc/hosts.
pub fn valid_hostname(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))
        && !s.starts_with(['-', '.'])
}

/// What a container's name resolution is made from.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Facts {
    pub hostname: String,
    /// Other names of the container itself (its name), resolving to its address.
    pub aliases: Vec<String>,
    /// The container's address (None: no network beyond loopback).
    pub ip: Option<IpAddr>,
    pub gateway: Option<IpAddr>,
    pub dns: Vec<IpAddr>,
    pub dns_search: Vec<String>,
    /// `--add-host` entries.
    pub extra_hosts: Vec<HostEntry>,
    /// Other containers on the same user network.
    pub peers: Vec<HostEntry>,
    /// The container shares the host's network (its hosts and resolv.conf are the host's).
    #[serde(default)]
    pub host_network: bool,
}

/// Rewrites the generated files in the container directory `dir` in place (same inodes, so
/// the files bind-mounted into a running container show the new content).
pub fn write(dir: &Path, f: &Facts) -> Result<(), NetworkError> {
    crate::rootfs::etc::write(dir, f)?;
    Ok(())
}

/// Nameservers of the host's /etc/resolv.conf.
pub fn host_nameservers() -> Vec<IpAddr> {
    std::fs::read_to_string("/etc/resolv.conf")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            (w.next() == Some("nameserver"))
                .then(|| w.next()?.split('%').next()?.parse().ok())
                .flatten()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn add_host_parses() {
        let e: HostEntry = "db:10.0.0.5".parse().unwrap();
        assert_eq!(e.ip, "10.0.0.5".parse::<IpAddr>().unwrap());
        let e: HostEntry = "v6:fd00::1".parse().unwrap();
        assert_eq!(e.ip, "fd00::1".parse::<IpAddr>().unwrap());
        assert!("nocolon".parse::<HostEntry>().is_err());
        assert!("db:notanip".parse::<HostEntry>().is_err());
        assert!("bad name:1.2.3.4".parse::<HostEntry>().is_err());
    }
}

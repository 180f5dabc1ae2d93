//! The network facts a container's generated `/etc/hosts`, `/etc/resolv.conf` and
//! `/etc/hostname` are made from, and a minimal rendering of those files.
//!
//! The rootfs code (generated per-container files, like Docker's init layer) consumes
//! [`Facts`]; [`render`] is the one place that turns them into file contents.

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
}

/// The contents of (`/etc/hosts`, `/etc/resolv.conf`, `/etc/hostname`).
pub fn render(f: &Facts) -> (String, String, String) {
    let mut hosts =
        String::from("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n");
    let mut own = vec![f.hostname.clone()];
    own.extend(f.aliases.iter().filter(|a| **a != f.hostname).cloned());
    match f.ip {
        Some(ip) => hosts.push_str(&format!("{ip}\t{}\n", own.join(" "))),
        None => hosts.push_str(&format!("127.0.1.1\t{}\n", own.join(" "))),
    }
    for e in f.extra_hosts.iter().chain(&f.peers) {
        // A user network lists every member, this container included.
        if f.peers.contains(e) && own.contains(&e.name) {
            continue;
        }
        hosts.push_str(&format!("{}\t{}\n", e.ip, e.name));
    }
    let mut resolv = String::new();
    if !f.dns_search.is_empty() {
        resolv.push_str(&format!("search {}\n", f.dns_search.join(" ")));
    }
    for ns in &f.dns {
        resolv.push_str(&format!("nameserver {ns}\n"));
    }
    (hosts, resolv, format!("{}\n", f.hostname))
}

/// File names, in the container's state directory, of the generated files, with where each
/// is mounted in the container.
pub const FILES: [(&str, &str); 3] = [
    ("hosts", "/etc/hosts"),
    ("resolv.conf", "/etc/resolv.conf"),
    ("hostname", "/etc/hostname"),
];

/// Writes the rendered files into `dir` in place (same inode, so a file already bind-mounted
/// into a container shows the new content), readable by every id of the container.
pub fn write(dir: &Path, f: &Facts) -> Result<(), NetworkError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let (hosts, resolv, hostname) = render(f);
    for ((name, _), content) in FILES.iter().zip([hosts, resolv, hostname]) {
        let path = dir.join(name);
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .mode(0o644)
            .open(&path)
            .map_err(|e| NetworkError::io("writing", &path, e))?;
        file.write_all(content.as_bytes())
            .map_err(|e| NetworkError::io("writing", &path, e))?;
    }
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

    #[test]
    fn renders_docker_like_files() {
        let f = Facts {
            hostname: "web".into(),
            aliases: vec!["myweb".into()],
            ip: Some("10.0.2.100".parse().unwrap()),
            dns: vec!["10.0.2.3".parse().unwrap()],
            dns_search: vec!["example.org".into()],
            extra_hosts: vec!["db:10.1.1.1".parse().unwrap()],
            ..Default::default()
        };
        let (hosts, resolv, hostname) = render(&f);
        assert!(hosts.contains("127.0.0.1\tlocalhost\n"));
        assert!(hosts.contains("10.0.2.100\tweb myweb\n"));
        assert!(hosts.contains("10.1.1.1\tdb\n"));
        assert_eq!(resolv, "search example.org\nnameserver 10.0.2.3\n");
        assert_eq!(hostname, "web\n");
    }
}

//! The per-container `/etc/hostname`, `/etc/hosts` and `/etc/resolv.conf`, as Docker's init
//! layer makes them: written in the container's state directory and bind-mounted over the
//! rootfs's files, so neither the image nor a user's rootfs directory is ever changed.

use std::path::{Path, PathBuf};

use super::RootfsError;
use crate::network::Facts;

/// The files, by their path in the container.
pub const FILES: [&str; 3] = ["/etc/hostname", "/etc/hosts", "/etc/resolv.conf"];

/// Docker's fallback name servers when the host's are unreachable from the container.
const DEFAULT_NAMESERVERS: [&str; 2] = ["8.8.8.8", "8.8.4.4"];

/// `/etc/hosts`: the loopback names and the container's own names (hostname, then aliases)
/// on its address (127.0.1.1 without one), then `--add-host` entries and a user network's
/// peers. With the host's network, the host's own file with the hostname added (as Docker
/// does with `--network host`), then the `--add-host` entries.
pub fn hosts(f: &Facts, host_hosts: Option<&str>) -> String {
    let hostname = f.hostname.as_str();
    let mut own = vec![hostname.to_string()];
    own.extend(f.aliases.iter().filter(|a| *a != hostname).cloned());
    let mut s = match host_hosts.filter(|_| f.host_network) {
        Some(h) => {
            let mut s = h.to_string();
            if !s.is_empty() && !s.ends_with('\n') {
                s.push('\n');
            }
            if !s
                .lines()
                .any(|l| l.split_whitespace().skip(1).any(|n| n == hostname))
            {
                s.push_str(&format!("127.0.1.1\t{hostname}\n"));
            }
            s
        }
        None => {
            let addr = f.ip.map_or("127.0.1.1".to_string(), |ip| ip.to_string());
            format!(
                "127.0.0.1\tlocalhost\n\
                 ::1\tlocalhost ip6-localhost ip6-loopback\n\
                 fe00::0\tip6-localnet\n\
                 ff00::0\tip6-mcastprefix\n\
                 ff02::1\tip6-allnodes\n\
                 ff02::2\tip6-allrouters\n\
                 {addr}\t{}\n",
                own.join(" ")
            )
        }
    };
    for e in &f.extra_hosts {
        s.push_str(&format!("{}\t{}\n", e.ip, e.name));
    }
    // A user network lists every member, this container included.
    for e in f.peers.iter().filter(|e| !own.contains(&e.name)) {
        s.push_str(&format!("{}\t{}\n", e.ip, e.name));
    }
    s
}

fn is_loopback(addr: &str) -> bool {
    let addr = addr.split('%').next().unwrap_or(addr);
    match addr.parse::<std::net::IpAddr>() {
        Ok(ip) => ip.is_loopback(),
        Err(_) => false,
    }
}

fn nameservers(text: &str) -> Vec<&str> {
    text.lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            (w.next() == Some("nameserver")).then(|| w.next()).flatten()
        })
        .collect()
}

/// `/etc/resolv.conf` for a container in its own network namespace, by Docker's rules: the
/// host's file without loopback name servers (unreachable from the container); when the host
/// only has systemd-resolved's stub (127.0.0.53), resolved's upstream file instead; when no
/// name server is left, Google's public ones. `search` and `options` lines are kept.
pub fn resolv_conf(host: &str, resolved_upstream: Option<&str>) -> String {
    let servers = nameservers(host);
    let source = match resolved_upstream {
        Some(up) if !servers.is_empty() && servers.iter().all(|s| *s == "127.0.0.53") => up,
        _ => host,
    };
    let mut out = String::new();
    let mut kept = 0;
    for line in source.lines() {
        let mut w = line.split_whitespace();
        if w.next() == Some("nameserver") {
            match w.next() {
                Some(a) if !is_loopback(a) => kept += 1,
                _ => continue,
            }
        }
        out.push_str(line);
        out.push('\n');
    }
    if kept == 0 {
        for s in DEFAULT_NAMESERVERS {
            out.push_str(&format!("nameserver {s}\n"));
        }
    }
    out
}

/// `/etc/resolv.conf` from the facts: the host's file (with the host's network) or
/// [`resolv_conf`]'s Docker rules, with the name servers replaced by `f.dns` (the user's
/// `--dns`, or the network helper's) and the search domains by `f.dns_search` when given.
pub fn resolv(f: &Facts, host: &str, resolved_upstream: Option<&str>) -> String {
    let base = if f.host_network {
        host.to_string()
    } else {
        resolv_conf(host, resolved_upstream)
    };
    let first = |l: &str| l.split_whitespace().next().map(str::to_string);
    let mut out = String::new();
    if !f.dns_search.is_empty() {
        out.push_str(&format!("search {}\n", f.dns_search.join(" ")));
    }
    for line in base.lines() {
        let w = first(line);
        let w = w.as_deref();
        if (!f.dns.is_empty() && w == Some("nameserver"))
            || (!f.dns_search.is_empty() && matches!(w, Some("search") | Some("domain")))
        {
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    for ns in &f.dns {
        out.push_str(&format!("nameserver {ns}\n"));
    }
    out
}

/// Writes the three files into `dir` (the container's state directory), in place when they
/// exist (same inodes: a file bind-mounted into a running container shows the new content),
/// and returns (file on the host, path in the container) pairs.
pub fn write(dir: &Path, f: &Facts) -> Result<Vec<(PathBuf, &'static str)>, RootfsError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let host_resolv = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    let upstream = std::fs::read_to_string("/run/systemd/resolve/resolv.conf").ok();
    let host_hosts = std::fs::read_to_string("/etc/hosts").ok();
    let contents = [
        format!("{}\n", f.hostname),
        hosts(f, host_hosts.as_deref()),
        resolv(f, &host_resolv, upstream.as_deref()),
    ];
    let mut out = Vec::new();
    for (dest, text) in FILES.iter().zip(contents) {
        let name = dest.trim_start_matches("/etc/");
        let path = dir.join(name);
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            // Readable by every user of the container.
            .mode(0o644)
            .open(&path)
            .map_err(|e| RootfsError::io(&path, e))?;
        file.write_all(text.as_bytes())
            .map_err(|e| RootfsError::io(&path, e))?;
        out.push((path, *dest));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(hostname: &str) -> Facts {
        Facts {
            hostname: hostname.into(),
            ..Default::default()
        }
    }

    #[test]
    fn hosts_has_localhost_and_hostname() {
        let h = hosts(&facts("box1"), None);
        assert!(h.starts_with("127.0.0.1\tlocalhost\n"));
        assert!(h.contains("::1\tlocalhost"));
        assert!(h.ends_with("127.0.1.1\tbox1\n"));
        let mut f = facts("box1");
        f.host_network = true;
        let h = hosts(&f, Some("127.0.0.1 localhost\n10.0.0.1 db"));
        assert_eq!(h, "127.0.0.1 localhost\n10.0.0.1 db\n127.0.1.1\tbox1\n");
    }

    #[test]
    fn network_facts_fill_hosts_and_resolv() {
        let f = Facts {
            hostname: "web".into(),
            aliases: vec!["myweb".into()],
            ip: Some("10.0.2.100".parse().unwrap()),
            dns: vec!["10.0.2.3".parse().unwrap()],
            dns_search: vec!["example.org".into()],
            extra_hosts: vec!["db:10.1.1.1".parse().unwrap()],
            peers: vec![
                "web:10.0.2.100".parse().unwrap(),
                "cache:10.0.2.101".parse().unwrap(),
            ],
            ..Default::default()
        };
        let h = hosts(&f, None);
        assert!(h.contains("10.0.2.100\tweb myweb\n"), "{h}");
        assert!(!h.contains("127.0.1.1"), "{h}");
        assert!(h.contains("10.1.1.1\tdb\n"), "{h}");
        assert!(h.ends_with("10.0.2.101\tcache\n"), "{h}");
        assert_eq!(h.matches("\tweb").count(), 1, "{h}");
        let r = resolv(&f, "search lan\nnameserver 1.1.1.1\noptions edns0\n", None);
        assert_eq!(
            r,
            "search example.org\noptions edns0\nnameserver 10.0.2.3\n"
        );
        let r = resolv(&facts("x"), "nameserver 127.0.0.1\n", None);
        assert_eq!(r, "nameserver 8.8.8.8\nnameserver 8.8.4.4\n");
    }

    #[test]
    fn resolv_drops_loopback_and_falls_back() {
        let r = resolv_conf("nameserver 127.0.0.53\noptions edns0\nsearch lan\n", None);
        assert_eq!(
            r,
            "options edns0\nsearch lan\nnameserver 8.8.8.8\nnameserver 8.8.4.4\n"
        );
        let r = resolv_conf(
            "nameserver 127.0.0.53\n",
            Some("nameserver 10.1.1.1\nnameserver ::1\n"),
        );
        assert_eq!(r, "nameserver 10.1.1.1\n");
        let r = resolv_conf("nameserver 1.1.1.1\nnameserver 127.0.0.1\n", None);
        assert_eq!(r, "nameserver 1.1.1.1\n");
    }
}

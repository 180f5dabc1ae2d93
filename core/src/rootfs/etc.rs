//! The per-container `/etc/hostname`, `/etc/hosts` and `/etc/resolv.conf`, as Docker's init
//! layer makes them: written in the container's state directory and bind-mounted over the
//! rootfs's files, so neither the image nor a user's rootfs directory is ever changed.

use std::path::{Path, PathBuf};

use super::RootfsError;

/// The files, by their path in the container.
pub const FILES: [&str; 3] = ["/etc/hostname", "/etc/hosts", "/etc/resolv.conf"];

/// Docker's fallback name servers when the host's are unreachable from the container.
const DEFAULT_NAMESERVERS: [&str; 2] = ["8.8.8.8", "8.8.4.4"];

/// `/etc/hosts`: the loopback names and the container's hostname. With the host's network,
/// the host's own file with the hostname added (as Docker does with `--network host`).
pub fn hosts(hostname: &str, network_host: bool, host_hosts: Option<&str>) -> String {
    if network_host {
        if let Some(h) = host_hosts {
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
            return s;
        }
    }
    format!(
        "127.0.0.1\tlocalhost\n\
         ::1\tlocalhost ip6-localhost ip6-loopback\n\
         fe00::0\tip6-localnet\n\
         ff00::0\tip6-mcastprefix\n\
         ff02::1\tip6-allnodes\n\
         ff02::2\tip6-allrouters\n\
         127.0.1.1\t{hostname}\n"
    )
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

/// Writes the three files into `dir` (the container's state directory) and returns
/// (file on the host, path in the container) pairs.
pub fn write(
    dir: &Path,
    hostname: &str,
    network_host: bool,
) -> Result<Vec<(PathBuf, &'static str)>, RootfsError> {
    let host_resolv = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    let resolv = if network_host {
        host_resolv
    } else {
        let upstream = std::fs::read_to_string("/run/systemd/resolve/resolv.conf").ok();
        resolv_conf(&host_resolv, upstream.as_deref())
    };
    let host_hosts = std::fs::read_to_string("/etc/hosts").ok();
    let contents = [
        format!("{hostname}\n"),
        hosts(hostname, network_host, host_hosts.as_deref()),
        resolv,
    ];
    let mut out = Vec::new();
    for (dest, text) in FILES.iter().zip(contents) {
        let name = dest.trim_start_matches("/etc/");
        let path = dir.join(name);
        std::fs::write(&path, text).map_err(|e| RootfsError::io(&path, e))?;
        // Readable by every user of the container.
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o644))
            .map_err(|e| RootfsError::io(&path, e))?;
        out.push((path, *dest));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_has_localhost_and_hostname() {
        let h = hosts("box1", false, None);
        assert!(h.starts_with("127.0.0.1\tlocalhost\n"));
        assert!(h.contains("::1\tlocalhost"));
        assert!(h.ends_with("127.0.1.1\tbox1\n"));
        let h = hosts("box1", true, Some("127.0.0.1 localhost\n10.0.0.1 db"));
        assert_eq!(h, "127.0.0.1 localhost\n10.0.0.1 db\n127.0.1.1\tbox1\n");
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

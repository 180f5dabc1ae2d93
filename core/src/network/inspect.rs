//! What a network namespace looks like from the host, read through `/proc/PID/net` (no
//! setns): interfaces, IPv4 and IPv6 addresses, the default gateway.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Interface names of `pid`'s network namespace.
pub fn interfaces(pid: i32) -> Vec<String> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/net/dev")).unwrap_or_default();
    text.lines()
        .skip(2)
        .filter_map(|l| l.split_once(':').map(|(n, _)| n.trim().to_string()))
        .collect()
}

/// The local IPv4 addresses in `/proc/PID/net/fib_trie` format, loopback excluded.
pub fn parse_fib_trie(text: &str) -> Vec<Ipv4Addr> {
    let mut out = Vec::new();
    let mut last: Option<Ipv4Addr> = None;
    for line in text.lines() {
        let t = line.trim_start();
        if let Some(a) = t.strip_prefix("|-- ") {
            last = a.trim().parse().ok();
        } else if t.starts_with("/32 host LOCAL") {
            if let Some(a) = last.take() {
                if !a.is_loopback() && !out.contains(&a) {
                    out.push(a);
                }
            }
        }
    }
    out
}

/// Global IPv6 addresses in `/proc/PID/net/if_inet6` format.
pub fn parse_if_inet6(text: &str) -> Vec<Ipv6Addr> {
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let (hex, scope, dev) = (f.first()?, f.get(3)?, f.get(5)?);
            if *scope != "00" || *dev == "lo" || hex.len() != 32 {
                return None;
            }
            let n = u128::from_str_radix(hex, 16).ok()?;
            Some(Ipv6Addr::from(n))
        })
        .collect()
}

/// The IPv4 default gateway in `/proc/PID/net/route` format.
pub fn parse_route_gateway(text: &str) -> Option<Ipv4Addr> {
    text.lines().skip(1).find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        let (dest, gw, flags) = (f.get(1)?, f.get(2)?, f.get(3)?);
        let flags = u32::from_str_radix(flags, 16).ok()?;
        if *dest != "00000000" || flags & 0x2 == 0 {
            return None;
        }
        // The kernel prints the address's bytes read as a native-endian number.
        let v = u32::from_str_radix(gw, 16).ok()?;
        Some(Ipv4Addr::from(v.to_ne_bytes()))
    })
}

/// The addresses of `pid`'s network namespace: (IPv4s, global IPv6s, IPv4 gateway).
pub fn addresses(pid: i32) -> (Vec<Ipv4Addr>, Vec<Ipv6Addr>, Option<IpAddr>) {
    let read =
        |f: &str| std::fs::read_to_string(format!("/proc/{pid}/net/{f}")).unwrap_or_default();
    let v4 = parse_fib_trie(&read("fib_trie"));
    let v6 = parse_if_inet6(&read("if_inet6"));
    let gw = parse_route_gateway(&read("route")).map(IpAddr::V4);
    (v4, v6, gw)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TRIE: &str = "Main:\n  +-- 0.0.0.0/1 2 0 2\n     +-- 0.0.0.0/4 2 0 2\n        |-- 0.0.0.0\n           /0 universe UNICAST\n        +-- 10.0.2.0/24 2 0 1\n           |-- 10.0.2.0\n              /24 link UNICAST\n           |-- 10.0.2.100\n              /32 host LOCAL\n           |-- 10.0.2.255\n              /32 link BROADCAST\n     +-- 127.0.0.0/8 2 0 2\n           |-- 127.0.0.1\n              /32 host LOCAL\nLocal:\n           |-- 10.0.2.100\n              /32 host LOCAL\n";

    #[test]
    fn fib_trie_local_addresses() {
        assert_eq!(parse_fib_trie(TRIE), vec![Ipv4Addr::new(10, 0, 2, 100)]);
    }

    #[test]
    fn route_gateway() {
        let text =
            "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
                    tap0\t00000000\t0202000A\t0003\t0\t0\t0\t00000000\t0\t0\t0\n\
                    tap0\t0002000A\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n";
        assert_eq!(parse_route_gateway(text), Some(Ipv4Addr::new(10, 0, 2, 2)));
    }

    #[test]
    fn inet6_global_only() {
        let text = "fd000000000000000000000000000002 02 40 00 00 eth0\n\
                    fe8000000000000000fcfffffe000001 02 40 20 80 eth0\n\
                    00000000000000000000000000000001 01 80 10 80 lo\n";
        assert_eq!(
            parse_if_inet6(text),
            vec!["fd00::2".parse::<Ipv6Addr>().unwrap()]
        );
    }

    #[test]
    fn own_namespace_has_loopback() {
        assert!(interfaces(std::process::id() as i32).contains(&"lo".to_string()));
    }
}

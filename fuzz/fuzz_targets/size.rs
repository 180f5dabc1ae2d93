//! `--memory`-style arguments: sizes (`64m`, `1.5g`), CPU counts and sets, every resource
//! flag's value (alone and several together, down to the cgroup files they would write), the
//! layer limits from the environment. Parsing never panics, and what a size
//! parses to is a whole, non-negative number of bytes that respects its unit.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rootbox_core::cgroup::resources::{
    parse_cpus, parse_cpuset, parse_size, plan_writes, ResourceOptions,
};
use rootbox_core::image::unpack::Limits;

const FLAGS: &[&str] = &[
    "memory",
    "--memory-swap",
    "memory-reservation",
    "cpus",
    "cpu-period",
    "cpu-quota",
    "cpu-shares",
    "cpuset-cpus",
    "cpuset-mems",
    "pids-limit",
    "blkio-weight",
    "m",
    "c",
    "--no-such-flag",
];

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(n) = parse_size(s) {
        assert!(n >= 0, "{s:?} parsed to a negative size {n}");
        let t = s.trim().to_ascii_lowercase();
        if !t.contains('.') {
            let unit = t.trim_start_matches(|c: char| c.is_ascii_digit()).trim();
            let mult: i64 = match unit.chars().next() {
                Some('k') => 1 << 10,
                Some('m') => 1 << 20,
                Some('g') => 1 << 30,
                Some('t') => 1 << 40,
                Some('p') => 1 << 50,
                _ => 1,
            };
            assert_eq!(
                n % mult,
                0,
                "{s:?} parsed to {n}, not a multiple of its unit"
            );
        }
    }
    if let Ok(c) = parse_cpus(s) {
        assert!(c.is_finite() && c > 0.0, "{s:?} parsed to {c} CPUs");
    }
    let _ = parse_cpuset(s);
    for flag in FLAGS {
        let mut r = ResourceOptions::default();
        let _ = r.set(flag, s);
        if let Some(m) = r.memory {
            assert!(m > 0, "--memory {s:?} gave {m}");
        }
    }
    // Several flags at once (`FLAG=VALUE` lines), as OCI resources and cgroup v2 writes.
    let mut r = ResourceOptions::default();
    for line in s.lines() {
        if let Some((flag, value)) = line.split_once('=') {
            let _ = r.set(flag, value);
        }
    }
    if let Ok(Some(res)) = r.to_oci() {
        let _ = plan_writes(&res);
    }
    if let Ok(l) = Limits::from_values(Some(s), None) {
        assert!(l.max_size > 0);
    }
    if let Ok(l) = Limits::from_values(None, Some(s)) {
        assert!(l.max_entries > 0);
    }
});

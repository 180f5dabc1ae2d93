//! Resource limits: the user's options (`--memory 64m`, `--cpus 0.5`, ...) → OCI
//! `linux.resources` → the cgroup v2 files to write.
//!
//! The conversions follow runc and crun: `cpu.shares` → `cpu.weight` with crun's curve,
//! `blockIO.weight` → `io.weight`, OCI's memory+swap → `memory.swap.max`.

use oci_spec::runtime::LinuxResources;
use serde_json::{json, Value};

use super::CgroupError;

/// Default CFS period (µs), as Docker's `--cpus` uses.
pub const DEFAULT_CPU_PERIOD: u64 = 100_000;

fn bad(option: &str, value: &str, why: impl std::fmt::Display) -> CgroupError {
    CgroupError::BadLimit {
        option: option.to_string(),
        value: value.to_string(),
        why: why.to_string(),
    }
}

/// A size in bytes: `1024`, `512k`, `64m`, `1g`, `1.5g`, `2t`, with an optional `b`/`ib`
/// (`64MB`, `64MiB`); units are binary (k = 1024), as Docker's.
pub fn parse_size(s: &str) -> Result<i64, String> {
    let t = s.trim();
    if t.is_empty() {
        return Err("empty size".into());
    }
    let lower = t.to_ascii_lowercase();
    let split = lower
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(lower.len());
    let (num, unit) = lower.split_at(split);
    let mult: u64 = match unit.trim() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        "t" | "tb" | "tib" => 1 << 40,
        "p" | "pb" | "pib" => 1 << 50,
        u => {
            return Err(format!(
                "unknown unit {u:?}: use a number of bytes with an optional unit b, k, m, g, t (e.g. 512k, 64m, 1.5g)"
            ))
        }
    };
    if num.is_empty() || num.matches('.').count() > 1 || num.starts_with('.') || num.ends_with('.')
    {
        return Err(
            "expected a number of bytes with an optional unit b, k, m, g, t (e.g. 512k, 64m, 1.5g)"
                .into(),
        );
    }
    let bytes = if num.contains('.') {
        let v: f64 = num
            .parse()
            .map_err(|_| format!("{num:?} is not a number"))?;
        (v * mult as f64).round()
    } else {
        let v: u64 = num.parse().map_err(|_| format!("{num:?} is too large"))?;
        v.checked_mul(mult)
            .ok_or_else(|| "the size is too large".to_string())? as f64
    };
    if !(bytes.is_finite() && bytes >= 0.0 && bytes < i64::MAX as f64) {
        return Err("the size is too large".into());
    }
    Ok(bytes as i64)
}

/// A CPU count like Docker's `--cpus`: a positive decimal, at least 0.01.
pub fn parse_cpus(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .trim()
        .parse()
        .map_err(|_| "expected a number of CPUs such as 0.5 or 2".to_string())?;
    if !v.is_finite() || v <= 0.0 {
        return Err("the number of CPUs must be greater than 0 (e.g. 0.5 or 2)".into());
    }
    if v < 0.01 {
        return Err("the smallest CPU limit is 0.01".into());
    }
    Ok(v)
}

/// A cpuset list: `0-3,7`.
pub fn parse_cpuset(s: &str) -> Result<String, String> {
    let t = s.trim();
    let ok = !t.is_empty()
        && t.split(',').all(|part| {
            let mut it = part.splitn(2, '-');
            let a = it.next().unwrap_or("");
            let b = it.next();
            let num = |x: &str| !x.is_empty() && x.bytes().all(|c| c.is_ascii_digit());
            match b {
                None => num(a),
                Some(b) => num(a) && num(b) && a.parse::<u32>().ok() <= b.parse::<u32>().ok(),
            }
        });
    if ok {
        Ok(t.to_string())
    } else {
        Err("expected a list of numbers and ranges such as 0-3,7".into())
    }
}

/// `cpu.shares` (cgroup v1, 2..262144, default 1024) → `cpu.weight` (1..10000, default 100),
/// with crun's curve (shares 2 → 1, 1024 → 100, 262144 → 10000). 0 means unset.
pub fn shares_to_weight(shares: u64) -> u64 {
    if shares == 0 {
        return 0;
    }
    if shares <= 2 {
        return 1;
    }
    if shares >= 262_144 {
        return 10_000;
    }
    let l = (shares as f64).log2();
    let exponent = (l * l + 125.0 * l) / 612.0 - 7.0 / 34.0;
    let w = 10f64.powf(exponent);
    // ceil, but a value a rounding error above an integer is that integer (1024 → exactly 100).
    let r = w.round();
    let w = if (w - r).abs() < 1e-9 { r } else { w.ceil() };
    w.clamp(1.0, 10_000.0) as u64
}

/// `blkio.weight` (10..1000) → `io.weight` (1..10000), as runc converts it.
pub fn blkio_to_io_weight(weight: u64) -> u64 {
    if weight == 0 {
        return 0;
    }
    1 + (weight.saturating_sub(10)) * 9999 / 990
}

/// OCI's `memory.swap` (memory+swap, v1 semantics) → `memory.swap.max` (swap alone), as runc
/// converts it. None: leave it unset.
pub fn swap_to_v2(swap: i64, memory: Option<i64>) -> Result<Option<String>, String> {
    let memory = memory.unwrap_or(0);
    if memory == -1 && swap == 0 {
        return Ok(Some("max".into()));
    }
    match swap {
        -1 => return Ok(Some("max".into())),
        0 => return Ok(None),
        s if s < 0 => return Err(format!("invalid memory+swap value {s}")),
        _ => {}
    }
    if memory <= 0 {
        return Err("a swap limit needs a memory limit".into());
    }
    if swap < memory {
        return Err(format!(
            "the memory+swap limit ({swap} bytes) must be at least the memory limit ({memory} bytes)"
        ));
    }
    Ok(Some((swap - memory).to_string()))
}

/// The limits a user asks for on a command line (or through the C/Python front doors).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ResourceOptions {
    /// `--memory`, bytes.
    pub memory: Option<i64>,
    /// `--memory-swap`: memory+swap, bytes; -1 for unlimited swap.
    pub memory_swap: Option<i64>,
    /// `--memory-reservation` (`memory.low`), bytes.
    pub memory_reservation: Option<i64>,
    /// `--cpus`.
    pub cpus: Option<f64>,
    /// `--cpu-period`, µs.
    pub cpu_period: Option<u64>,
    /// `--cpu-quota`, µs; -1 for none.
    pub cpu_quota: Option<i64>,
    /// `--cpu-shares` (converted to `cpu.weight`).
    pub cpu_shares: Option<u64>,
    pub cpuset_cpus: Option<String>,
    pub cpuset_mems: Option<String>,
    /// `--pids-limit`; 0 or -1 for none.
    pub pids_limit: Option<i64>,
    /// `--blkio-weight` (10..1000).
    pub blkio_weight: Option<u16>,
}

impl ResourceOptions {
    /// Sets one option from its command-line spelling (`memory`, `--memory`, `cpus`, ...) and
    /// text, with an error naming the option and the bad value.
    pub fn set(&mut self, option: &str, value: &str) -> Result<(), CgroupError> {
        let name = option.trim_start_matches('-').replace('_', "-");
        let flag = format!("--{name}");
        let size = |v: &str| parse_size(v).map_err(|e| bad(&flag, v, e));
        let int = |v: &str| -> Result<i64, CgroupError> {
            v.trim()
                .parse::<i64>()
                .map_err(|_| bad(&flag, v, "expected an integer"))
        };
        match name.as_str() {
            "memory" | "m" => {
                let b = size(value)?;
                if b == 0 {
                    return Err(bad(&flag, value, "the memory limit must be greater than 0"));
                }
                self.memory = Some(b);
            }
            "memory-swap" => {
                self.memory_swap = Some(if value.trim() == "-1" {
                    -1
                } else {
                    size(value)?
                })
            }
            "memory-reservation" => self.memory_reservation = Some(size(value)?),
            "cpus" => self.cpus = Some(parse_cpus(value).map_err(|e| bad(&flag, value, e))?),
            "cpu-period" => {
                let p = int(value)?;
                if !(1000..=1_000_000).contains(&p) {
                    return Err(bad(
                        &flag,
                        value,
                        "the CPU period must be between 1000 and 1000000 microseconds",
                    ));
                }
                self.cpu_period = Some(p as u64);
            }
            "cpu-quota" => {
                let q = int(value)?;
                if q != -1 && q < 1000 {
                    return Err(bad(
                        &flag,
                        value,
                        "the CPU quota must be at least 1000 microseconds (or -1 for none)",
                    ));
                }
                self.cpu_quota = Some(q);
            }
            "cpu-shares" | "c" => {
                let s = int(value)?;
                if s != 0 && !(2..=262_144).contains(&s) {
                    return Err(bad(&flag, value, "CPU shares must be between 2 and 262144"));
                }
                self.cpu_shares = Some(s as u64);
            }
            "cpuset-cpus" => {
                self.cpuset_cpus = Some(parse_cpuset(value).map_err(|e| bad(&flag, value, e))?)
            }
            "cpuset-mems" => {
                self.cpuset_mems = Some(parse_cpuset(value).map_err(|e| bad(&flag, value, e))?)
            }
            "pids-limit" => self.pids_limit = Some(int(value)?),
            "blkio-weight" => {
                let w = int(value)?;
                if w != 0 && !(10..=1000).contains(&w) {
                    return Err(bad(
                        &flag,
                        value,
                        "the block IO weight must be between 10 and 1000",
                    ));
                }
                self.blkio_weight = Some(w as u16);
            }
            _ => {
                return Err(CgroupError::Invalid(format!(
                    "unknown resource option {option:?}"
                )))
            }
        }
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        *self == ResourceOptions::default()
    }

    /// The OCI `linux.resources` for these options (None when nothing is asked). Follows
    /// Docker: with `--memory` and no `--memory-swap`, swap may be as large as memory.
    pub fn to_oci(&self) -> Result<Option<LinuxResources>, CgroupError> {
        if self.is_empty() {
            return Ok(None);
        }
        let mut r = serde_json::Map::new();
        let mut memory = serde_json::Map::new();
        if let Some(m) = self.memory {
            memory.insert("limit".into(), json!(m));
        }
        match (self.memory_swap, self.memory) {
            (Some(-1), _) => {
                memory.insert("swap".into(), json!(-1));
            }
            (Some(s), Some(m)) => {
                if s < m {
                    return Err(bad(
                        "--memory-swap",
                        &s.to_string(),
                        "memory+swap must be at least --memory",
                    ));
                }
                memory.insert("swap".into(), json!(s));
            }
            (Some(s), None) => {
                return Err(bad(
                    "--memory-swap",
                    &s.to_string(),
                    "a swap limit needs --memory too",
                ))
            }
            (None, Some(m)) => {
                memory.insert("swap".into(), json!(m.saturating_mul(2)));
            }
            (None, None) => {}
        }
        if let Some(v) = self.memory_reservation {
            memory.insert("reservation".into(), json!(v));
        }
        if !memory.is_empty() {
            r.insert("memory".into(), Value::Object(memory));
        }
        let mut cpu = serde_json::Map::new();
        if let Some(c) = self.cpus {
            if self.cpu_quota.is_some() {
                return Err(CgroupError::Invalid(
                    "--cpus and --cpu-quota cannot both be given".into(),
                ));
            }
            let period = self.cpu_period.unwrap_or(DEFAULT_CPU_PERIOD);
            let quota = (c * period as f64).round() as i64;
            if quota < 1000 {
                return Err(bad(
                    "--cpus",
                    &c.to_string(),
                    format!("a quota of {quota}µs per {period}µs period is below the kernel's minimum of 1000µs"),
                ));
            }
            cpu.insert("quota".into(), json!(quota));
            cpu.insert("period".into(), json!(period));
        } else {
            if let Some(q) = self.cpu_quota {
                cpu.insert("quota".into(), json!(q));
            }
            if let Some(p) = self.cpu_period {
                cpu.insert("period".into(), json!(p));
            }
        }
        if let Some(s) = self.cpu_shares.filter(|s| *s != 0) {
            cpu.insert("shares".into(), json!(s));
        }
        if let Some(c) = &self.cpuset_cpus {
            cpu.insert("cpus".into(), json!(c));
        }
        if let Some(m) = &self.cpuset_mems {
            cpu.insert("mems".into(), json!(m));
        }
        if !cpu.is_empty() {
            r.insert("cpu".into(), Value::Object(cpu));
        }
        if let Some(p) = self.pids_limit {
            r.insert("pids".into(), json!({"limit": if p <= 0 { -1 } else { p }}));
        }
        if let Some(w) = self.blkio_weight.filter(|w| *w != 0) {
            r.insert("blockIO".into(), json!({"weight": w}));
        }
        serde_json::from_value(Value::Object(r))
            .map(Some)
            .map_err(|e| CgroupError::Invalid(format!("resources: {e}")))
    }
}

/// One write into a container's cgroup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Write {
    /// The controller the file belongs to.
    pub controller: String,
    pub file: String,
    pub value: String,
}

fn w(controller: &str, file: &str, value: impl Into<String>) -> Write {
    Write {
        controller: controller.into(),
        file: file.into(),
        value: value.into(),
    }
}

fn max_or(v: i64) -> String {
    if v < 0 {
        "max".into()
    } else {
        v.to_string()
    }
}

/// The cgroup v2 writes for OCI `linux.resources`. Device rules (rootless containers get bind
/// mounted devices, not a device cgroup) and v1-only settings (network classes, swappiness,
/// kernel memory) are not cgroup v2 limits and are left out.
pub fn plan_writes(r: &LinuxResources) -> Result<Vec<Write>, CgroupError> {
    let mut out = Vec::new();
    if let Some(m) = r.memory() {
        if let Some(l) = m.limit() {
            if l == 0 {
                return Err(CgroupError::Invalid(
                    "linux.resources.memory.limit is 0".into(),
                ));
            }
            out.push(w("memory", "memory.max", max_or(l)));
        }
        if let Some(res) = m.reservation() {
            out.push(w("memory", "memory.low", max_or(res)));
        }
        if let Some(s) = m.swap() {
            let v = swap_to_v2(s, m.limit())
                .map_err(|e| CgroupError::Invalid(format!("linux.resources.memory.swap: {e}")))?;
            if let Some(v) = v {
                out.push(w("memory", "memory.swap.max", v));
            }
        }
    }
    if let Some(c) = r.cpu() {
        if c.realtime_runtime().is_some_and(|v| v != 0)
            || c.realtime_period().is_some_and(|v| v != 0)
        {
            return Err(CgroupError::Invalid(
                "realtime CPU limits (cpu.realtimeRuntime/realtimePeriod) do not exist in cgroup v2"
                    .into(),
            ));
        }
        if let Some(s) = c.shares() {
            let weight = shares_to_weight(s);
            if weight != 0 {
                out.push(w("cpu", "cpu.weight", weight.to_string()));
            }
        }
        match (c.quota(), c.period()) {
            (Some(q), Some(p)) if p != 0 => out.push(w(
                "cpu",
                "cpu.max",
                format!("{} {p}", max_or(if q == 0 { -1 } else { q })),
            )),
            (Some(q), _) if q != 0 => out.push(w("cpu", "cpu.max", max_or(q))),
            (_, Some(p)) if p != 0 => out.push(w("cpu", "cpu.max", format!("max {p}"))),
            _ => {}
        }
        if let Some(b) = c.burst() {
            out.push(w("cpu", "cpu.max.burst", b.to_string()));
        }
        if let Some(i) = c.idle() {
            out.push(w("cpu", "cpu.idle", i.to_string()));
        }
        if let Some(cpus) = c.cpus().as_deref().filter(|s| !s.is_empty()) {
            out.push(w("cpuset", "cpuset.cpus", cpus));
        }
        if let Some(mems) = c.mems().as_deref().filter(|s| !s.is_empty()) {
            out.push(w("cpuset", "cpuset.mems", mems));
        }
    }
    if let Some(p) = r.pids() {
        out.push(w(
            "pids",
            "pids.max",
            max_or(if p.limit() == 0 { -1 } else { p.limit() }),
        ));
    }
    if let Some(b) = r.block_io() {
        if let Some(weight) = b.weight().filter(|w| *w != 0) {
            out.push(w(
                "io",
                "io.weight",
                format!("default {}", blkio_to_io_weight(weight as u64)),
            ));
        }
        for d in b.weight_device().iter().flatten() {
            if let Some(weight) = d.weight() {
                out.push(w(
                    "io",
                    "io.weight",
                    format!(
                        "{}:{} {}",
                        d.major(),
                        d.minor(),
                        blkio_to_io_weight(weight as u64)
                    ),
                ));
            }
        }
        let throttles = [
            ("rbps", b.throttle_read_bps_device()),
            ("wbps", b.throttle_write_bps_device()),
            ("riops", b.throttle_read_iops_device()),
            ("wiops", b.throttle_write_iops_device()),
        ];
        for (key, list) in throttles {
            for d in list.iter().flatten() {
                out.push(w(
                    "io",
                    "io.max",
                    format!("{}:{} {key}={}", d.major(), d.minor(), d.rate()),
                ));
            }
        }
    }
    for h in r.hugepage_limits().iter().flatten() {
        out.push(w(
            "hugetlb",
            &format!("hugetlb.{}.max", h.page_size()),
            h.limit().to_string(),
        ));
    }
    if let Some(unified) = r.unified() {
        let mut keys: Vec<&String> = unified.keys().collect();
        keys.sort();
        for k in keys {
            let controller = k.split('.').next().unwrap_or("");
            if k.contains('/')
                || controller.is_empty()
                || !k.contains('.')
                || controller == "cgroup"
            {
                return Err(CgroupError::Invalid(format!(
                    "linux.resources.unified: {k:?} is not a controller file"
                )));
            }
            out.push(w(controller, k, unified[k].clone()));
        }
    }
    Ok(out)
}

/// The controllers `writes` need, sorted, without duplicates.
pub fn controllers_of(writes: &[Write]) -> Vec<String> {
    let mut c: Vec<String> = writes.iter().map(|w| w.controller.clone()).collect();
    c.sort();
    c.dedup();
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1024"), Ok(1024));
        assert_eq!(parse_size("512k"), Ok(512 * 1024));
        assert_eq!(parse_size("64m"), Ok(64 << 20));
        assert_eq!(parse_size("64M"), Ok(64 << 20));
        assert_eq!(parse_size("64MiB"), Ok(64 << 20));
        assert_eq!(parse_size("64mb"), Ok(64 << 20));
        assert_eq!(parse_size("1g"), Ok(1 << 30));
        assert_eq!(parse_size("1.5g"), Ok(3 << 29));
        assert_eq!(parse_size("100b"), Ok(100));
        assert_eq!(parse_size("0"), Ok(0));
        for bad in [
            "12q",
            "",
            "m",
            "-1",
            "1.2.3m",
            ".5g",
            "1e3",
            "99999999999999999999",
            "10000000p",
        ] {
            assert!(parse_size(bad).is_err(), "{bad:?} parsed");
        }
        assert!(parse_size("12q").unwrap_err().contains("unknown unit"));
    }

    #[test]
    fn cpus_and_cpusets() {
        assert_eq!(parse_cpus("0.5"), Ok(0.5));
        assert_eq!(parse_cpus("2"), Ok(2.0));
        assert!(parse_cpus("-1").is_err());
        assert!(parse_cpus("0").is_err());
        assert!(parse_cpus("abc").is_err());
        assert!(parse_cpus("0.001").is_err());
        assert!(parse_cpus("inf").is_err());
        assert_eq!(parse_cpuset("0-3,7"), Ok("0-3,7".into()));
        assert_eq!(parse_cpuset("1"), Ok("1".into()));
        for bad in ["", "a", "3-1", "1,", "-1", "1-"] {
            assert!(parse_cpuset(bad).is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn shares_convert_like_crun() {
        assert_eq!(shares_to_weight(0), 0);
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(1024), 100);
        assert_eq!(shares_to_weight(262_144), 10_000);
        assert_eq!(shares_to_weight(1_000_000), 10_000);
        // Monotonic in between.
        let mut last = 0;
        for s in [3, 10, 100, 512, 1024, 2048, 4096, 100_000, 262_143] {
            let w = shares_to_weight(s);
            assert!(w >= last && (1..=10_000).contains(&w), "{s} -> {w}");
            last = w;
        }
        assert!(shares_to_weight(512) < 100 && shares_to_weight(2048) > 100);
    }

    #[test]
    fn blkio_weights_convert() {
        assert_eq!(blkio_to_io_weight(10), 1);
        assert_eq!(blkio_to_io_weight(1000), 10_000);
        assert_eq!(blkio_to_io_weight(500), 1 + 490 * 9999 / 990);
    }

    #[test]
    fn options_to_writes() {
        let mut o = ResourceOptions::default();
        o.set("--memory", "32m").unwrap();
        o.set("cpus", "0.5").unwrap();
        o.set("pids_limit", "20").unwrap();
        o.set("cpu-shares", "1024").unwrap();
        o.set("cpuset-cpus", "0").unwrap();
        o.set("blkio-weight", "500").unwrap();
        o.set("memory-reservation", "16m").unwrap();
        let r = o.to_oci().unwrap().unwrap();
        let writes = plan_writes(&r).unwrap();
        let get = |f: &str| writes.iter().find(|w| w.file == f).map(|w| w.value.clone());
        assert_eq!(get("memory.max").as_deref(), Some("33554432"));
        assert_eq!(get("memory.swap.max").as_deref(), Some("33554432"));
        assert_eq!(get("memory.low").as_deref(), Some("16777216"));
        assert_eq!(get("cpu.max").as_deref(), Some("50000 100000"));
        assert_eq!(get("cpu.weight").as_deref(), Some("100"));
        assert_eq!(get("pids.max").as_deref(), Some("20"));
        assert_eq!(get("cpuset.cpus").as_deref(), Some("0"));
        assert!(get("io.weight").unwrap().starts_with("default "));
        assert_eq!(
            controllers_of(&writes),
            vec!["cpu", "cpuset", "io", "memory", "pids"]
        );
        assert!(ResourceOptions::default().to_oci().unwrap().is_none());
    }

    #[test]
    fn bad_options_name_the_option() {
        let mut o = ResourceOptions::default();
        let e = o.set("memory", "12q").unwrap_err().to_string();
        assert!(e.contains("--memory") && e.contains("12q"), "{e}");
        let e = o.set("cpus", "-1").unwrap_err().to_string();
        assert!(e.contains("--cpus") && e.contains("-1"), "{e}");
        assert!(o.set("cpu-shares", "1").is_err());
        assert!(o.set("blkio-weight", "5").is_err());
        assert!(o.set("cpu-period", "10").is_err());
        assert!(o.set("pids-limit", "x").is_err());
        assert!(o.set("frobnicate", "1").is_err());
        let mut o = ResourceOptions::default();
        o.set("cpus", "1").unwrap();
        o.set("cpu-quota", "50000").unwrap();
        assert!(o.to_oci().is_err());
        let mut o = ResourceOptions::default();
        o.set("memory-swap", "64m").unwrap();
        assert!(o.to_oci().is_err());
        o.set("memory", "128m").unwrap();
        assert!(o.to_oci().is_err());
        o.set("memory-swap", "-1").unwrap();
        let r = o.to_oci().unwrap().unwrap();
        let writes = plan_writes(&r).unwrap();
        assert!(writes
            .iter()
            .any(|w| w.file == "memory.swap.max" && w.value == "max"));
    }

    #[test]
    fn oci_resources_to_writes() {
        let r: LinuxResources = serde_json::from_value(json!({
            "devices": [{"allow": false, "access": "rwm"}],
            "memory": {"limit": -1, "swap": 0},
            "cpu": {"quota": -1, "period": 100000},
            "pids": {"limit": 0},
            "unified": {"memory.high": "1000000"}
        }))
        .unwrap();
        let writes = plan_writes(&r).unwrap();
        let files: Vec<(&str, &str)> = writes
            .iter()
            .map(|w| (w.file.as_str(), w.value.as_str()))
            .collect();
        assert_eq!(
            files,
            vec![
                ("memory.max", "max"),
                ("memory.swap.max", "max"),
                ("cpu.max", "max 100000"),
                ("pids.max", "max"),
                ("memory.high", "1000000"),
            ]
        );
        let r: LinuxResources = serde_json::from_value(json!({"unified": {"../x": "1"}})).unwrap();
        assert!(plan_writes(&r).is_err());
        let r: LinuxResources =
            serde_json::from_value(json!({"cpu": {"realtimeRuntime": 5}})).unwrap();
        assert!(plan_writes(&r).is_err());
        let r: LinuxResources =
            serde_json::from_value(json!({"memory": {"limit": 100, "swap": 50}})).unwrap();
        assert!(plan_writes(&r).is_err());
        // Only device rules: nothing to write, nothing needed.
        let r: LinuxResources =
            serde_json::from_value(json!({"devices": [{"allow": false, "access": "rwm"}]}))
                .unwrap();
        assert!(plan_writes(&r).unwrap().is_empty());
    }
}

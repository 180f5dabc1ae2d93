//! Usage figures of a container's cgroup: memory (current, peak, limit, swap), CPU (usage,
//! throttling), pids, OOM kills; as rootbox prints them and as runc's `events` JSON.

use serde::Serialize;
use serde_json::{json, Value};

use super::Cgroup;

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Stats {
    /// Bytes in use (`memory.current`).
    pub memory_current: u64,
    /// Highest use seen (`memory.peak`, Linux 5.19; else the current use).
    pub memory_peak: u64,
    /// `memory.max` (None: unlimited).
    pub memory_limit: Option<u64>,
    pub swap_current: u64,
    pub swap_limit: Option<u64>,
    /// Times the limit was hit (`memory.events` max).
    pub memory_max_events: u64,
    /// Processes killed by the OOM killer in this cgroup (`memory.events` oom_kill).
    pub oom_kills: u64,
    /// CPU time, µs (`cpu.stat`).
    pub cpu_usage_usec: u64,
    pub cpu_user_usec: u64,
    pub cpu_system_usec: u64,
    pub cpu_periods: u64,
    pub cpu_throttled_periods: u64,
    pub cpu_throttled_usec: u64,
    /// `cpu.max` as (quota, period) µs; quota None: unlimited.
    pub cpu_quota: Option<u64>,
    pub cpu_period: Option<u64>,
    pub pids_current: u64,
    pub pids_limit: Option<u64>,
    /// `memory.stat` (anon, file, ...).
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub memory_stat: std::collections::BTreeMap<String, u64>,
}

impl Stats {
    /// Reads the figures of `cg` (missing files count as 0 / unlimited).
    pub fn read(cg: &Cgroup) -> Stats {
        let mem_current = cg.number("memory.current").unwrap_or(0);
        let events = cg.keyed("memory.events");
        let cpu = cg.keyed("cpu.stat");
        let (cpu_quota, cpu_period) = match cg.read("cpu.max") {
            Ok(t) => {
                let mut it = t.split_whitespace();
                let q = it.next().and_then(|q| q.parse().ok());
                let p = it.next().and_then(|p| p.parse().ok());
                (q, p)
            }
            Err(_) => (None, None),
        };
        Stats {
            memory_current: mem_current,
            memory_peak: cg.number("memory.peak").unwrap_or(mem_current),
            memory_limit: cg.number("memory.max"),
            swap_current: cg.number("memory.swap.current").unwrap_or(0),
            swap_limit: cg.number("memory.swap.max"),
            memory_max_events: events.get("max").copied().unwrap_or(0),
            oom_kills: events.get("oom_kill").copied().unwrap_or(0),
            cpu_usage_usec: cpu.get("usage_usec").copied().unwrap_or(0),
            cpu_user_usec: cpu.get("user_usec").copied().unwrap_or(0),
            cpu_system_usec: cpu.get("system_usec").copied().unwrap_or(0),
            cpu_periods: cpu.get("nr_periods").copied().unwrap_or(0),
            cpu_throttled_periods: cpu.get("nr_throttled").copied().unwrap_or(0),
            cpu_throttled_usec: cpu.get("throttled_usec").copied().unwrap_or(0),
            cpu_quota,
            cpu_period,
            pids_current: cg.number("pids.current").unwrap_or(cg.pids().len() as u64),
            pids_limit: cg.number("pids.max"),
            memory_stat: cg.keyed("memory.stat"),
        }
    }

    /// runc's `events --stats` document (`{"type":"stats","id":..,"data":{..}}`); CPU in ns.
    pub fn to_runc_event(&self, id: &str) -> Value {
        let limit = self.memory_limit.unwrap_or(u64::MAX);
        json!({
            "type": "stats",
            "id": id,
            "data": {
                "cpu": {
                    "usage": {
                        "total": self.cpu_usage_usec * 1000,
                        "percpu": [],
                        "kernel": self.cpu_system_usec * 1000,
                        "user": self.cpu_user_usec * 1000,
                    },
                    "throttling": {
                        "periods": self.cpu_periods,
                        "throttledPeriods": self.cpu_throttled_periods,
                        "throttledTime": self.cpu_throttled_usec * 1000,
                    }
                },
                "memory": {
                    "usage": {
                        "limit": limit,
                        "usage": self.memory_current,
                        "max": self.memory_peak,
                        "failcnt": self.memory_max_events,
                    },
                    "swap": {
                        "limit": self.swap_limit.unwrap_or(u64::MAX),
                        "usage": self.swap_current,
                    },
                    "kernel": {},
                    "kernelTCP": {},
                    "raw": self.memory_stat,
                    "oom_kill": self.oom_kills,
                },
                "pids": {
                    "current": self.pids_current,
                    "limit": self.pids_limit.unwrap_or(0),
                },
                "blkio": {},
                "hugetlb": {},
            }
        })
    }
}

/// Bytes as Docker prints them (`12.3MiB`).
pub fn human_bytes(b: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = b as f64;
    let mut i = 0;
    while v >= 1024.0 && i < UNITS.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{b}B")
    } else {
        format!("{v:.2}{}", UNITS[i])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human() {
        assert_eq!(human_bytes(12), "12B");
        assert_eq!(human_bytes(32 << 20), "32.00MiB");
        assert_eq!(human_bytes(1536), "1.50KiB");
    }

    #[test]
    fn runc_event_shape() {
        let s = Stats {
            memory_current: 10,
            cpu_usage_usec: 5,
            oom_kills: 1,
            pids_current: 2,
            pids_limit: Some(20),
            ..Default::default()
        };
        let v = s.to_runc_event("c1");
        assert_eq!(v["type"], "stats");
        assert_eq!(v["data"]["cpu"]["usage"]["total"], 5000);
        assert_eq!(v["data"]["memory"]["usage"]["usage"], 10);
        assert_eq!(v["data"]["memory"]["oom_kill"], 1);
        assert_eq!(v["data"]["pids"]["limit"], 20);
    }
}

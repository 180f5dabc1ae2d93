//! systemd's user manager: a transient scope with `Delegate=yes` for a container, when the
//! caller's own cgroup is not delegated (a login shell sits in root's `session-N.scope`; only
//! `user@UID.service` is the user's).
//!
//! rootbox asks the manager over D-Bus with `busctl --user` (part of systemd, so present wherever
//! the manager is): `StartTransientUnit` of `rootbox-ID.scope` holding the calling process. The
//! manager moves the process (asking the system manager when the move crosses into
//! `user@UID.service`) and hands the scope's cgroup to the user.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::CgroupError;

fn busctl() -> Option<PathBuf> {
    ["/usr/bin/busctl", "/bin/busctl", "/usr/local/bin/busctl"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
}

/// Whether a session bus with systemd's user manager looks reachable: `busctl` exists and
/// `$DBUS_SESSION_BUS_ADDRESS` or `$XDG_RUNTIME_DIR/bus` is set/there. (Cheap: no call is made.)
pub fn user_manager_reachable() -> bool {
    if busctl().is_none() {
        return false;
    }
    if std::env::var_os("DBUS_SESSION_BUS_ADDRESS").is_some_and(|v| !v.is_empty()) {
        return true;
    }
    std::env::var_os("XDG_RUNTIME_DIR")
        .map(|d| Path::new(&d).join("bus").exists())
        .unwrap_or(false)
}

/// A unit name from an OCI `cgroupsPath` in systemd form `slice:prefix:name`, or from the id.
/// Returns (slice, unit).
pub fn unit_for(cgroups_path: Option<&str>, id: &str) -> (Option<String>, String) {
    let clean = |s: &str| -> String {
        s.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, ':' | '_' | '.' | '-' | '@') {
                    c
                } else {
                    '_'
                }
            })
            .collect()
    };
    if let Some(p) = cgroups_path {
        let parts: Vec<&str> = p.split(':').collect();
        if let [slice, prefix, name] = parts.as_slice() {
            let unit = if name.ends_with(".scope") {
                clean(name)
            } else if prefix.is_empty() {
                format!("{}.scope", clean(name))
            } else {
                format!("{}-{}.scope", clean(prefix), clean(name))
            };
            let slice = (!slice.is_empty()).then(|| clean(slice));
            return (slice, unit);
        }
    }
    (None, format!("rootbox-{}.scope", clean(id)))
}

/// The `busctl` arguments of `StartTransientUnit` for `unit` holding `pid`.
pub fn start_args(unit: &str, slice: Option<&str>, pid: u32) -> Vec<String> {
    let mut props: Vec<String> = vec![
        "PIDs".into(),
        "au".into(),
        "1".into(),
        pid.to_string(),
        "Delegate".into(),
        "b".into(),
        "true".into(),
        "CollectMode".into(),
        "s".into(),
        "inactive-or-failed".into(),
        "Description".into(),
        "s".into(),
        format!("rootbox container {unit}"),
    ];
    let mut n = 4;
    if let Some(s) = slice {
        props.extend(["Slice".into(), "s".into(), s.to_string()]);
        n += 1;
    }
    let mut args: Vec<String> = [
        "--user",
        "--quiet",
        "call",
        "org.freedesktop.systemd1",
        "/org/freedesktop/systemd1",
        "org.freedesktop.systemd1.Manager",
        "StartTransientUnit",
        "ssa(sv)a(sa(sv))",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.push(unit.into());
    args.push("fail".into());
    args.push(n.to_string());
    args.extend(props);
    args.push("0".into());
    args
}

/// Moves this process into a new delegated scope `unit` and returns the scope's cgroup path
/// (as `/proc/self/cgroup` shows it) once the move happened.
pub fn enter_scope(unit: &str, slice: Option<&str>) -> Result<String, CgroupError> {
    let busctl =
        busctl().ok_or_else(|| CgroupError::Systemd("busctl (systemd) is not installed".into()))?;
    let out = Command::new(&busctl)
        .args(start_args(unit, slice, std::process::id()))
        .stdin(Stdio::null())
        .output()
        .map_err(|e| CgroupError::Systemd(format!("running {}: {e}", busctl.display())))?;
    if !out.status.success() {
        return Err(CgroupError::Systemd(format!(
            "systemd's user manager refused the scope {unit}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    // The job runs asynchronously: wait (bounded) until we are in the scope.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let text = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
        if let Some(path) = super::discover::parse_proc_cgroup(&text).unified {
            if path.ends_with(&format!("/{unit}")) {
                return Ok(path);
            }
        }
        if Instant::now() > deadline {
            return Err(CgroupError::Systemd(format!(
                "systemd's user manager did not move rootbox into {unit} within 5s"
            )));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units() {
        assert_eq!(unit_for(None, "abc"), (None, "rootbox-abc.scope".into()));
        assert_eq!(
            unit_for(Some("user.slice:libpod:abc"), "x"),
            (Some("user.slice".into()), "libpod-abc.scope".into())
        );
        assert_eq!(unit_for(Some(":: n/x"), "x"), (None, "_n_x.scope".into()));
        // Not the systemd form: the id names the unit.
        assert_eq!(unit_for(Some("/a/b"), "x").1, "rootbox-x.scope");
    }

    #[test]
    fn busctl_arguments() {
        let a = start_args("rootbox-x.scope", Some("app.slice"), 42);
        let i = a.iter().position(|s| s == "ssa(sv)a(sa(sv))").unwrap();
        assert_eq!(&a[i + 1..i + 4], ["rootbox-x.scope", "fail", "5"]);
        assert_eq!(&a[i + 4..i + 8], ["PIDs", "au", "1", "42"]);
        assert!(a.windows(3).any(|w| w == ["Delegate", "b", "true"]));
        assert!(a.windows(3).any(|w| w == ["Slice", "s", "app.slice"]));
        assert_eq!(a.last().map(String::as_str), Some("0"));
        let a = start_args("u.scope", None, 1);
        let i = a.iter().position(|s| s == "ssa(sv)a(sa(sv))").unwrap();
        assert_eq!(a[i + 3], "4");
    }
}

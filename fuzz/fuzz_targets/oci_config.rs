//! The OCI runtime's `config.json` (`rootbox-runtime create --bundle`): loading and checking
//! it, then building everything the launch plans from it in the parent (namespaces, mounts,
//! /dev, the process with its capabilities, rlimits and seccomp filter, the cgroup writes of
//! its resources) — never a panic, and a config that is refused says why.
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use rootbox_core::cgroup::resources::plan_writes;
use rootbox_core::launch::plan::child_plan;
use rootbox_core::rootfs::{Layers, ANNOTATION_LAYERS};
use rootbox_core::spec::load_bundle_config;

/// A bundle with an empty `rootfs` (made once per process, removed at exit by run.sh's
/// temporary directory).
fn bundle() -> &'static PathBuf {
    static B: OnceLock<PathBuf> = OnceLock::new();
    B.get_or_init(|| {
        let base = std::env::var_os("ROOTBOX_FUZZ_TMP")
            .map(PathBuf::from)
            .unwrap_or_else(std::env::temp_dir);
        let b = base.join(format!("rbfuzz-bundle-{}", std::process::id()));
        std::fs::create_dir_all(b.join("rootfs")).expect("cannot make the fuzz bundle");
        b
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let b = bundle();
    let spec = match load_bundle_config(b, text, &b.join("config.json")) {
        Ok(s) => s,
        Err(e) => {
            assert!(!e.to_string().is_empty(), "an error without a message");
            return;
        }
    };
    if let Some(r) = spec.linux().as_ref().and_then(|l| l.resources().as_ref()) {
        let _ = plan_writes(r);
    }
    // A layered rootfs annotation makes the plan prepare (copy, mount) real directories:
    // only its parsing and checks run here.
    let layered = spec
        .annotations()
        .as_ref()
        .is_some_and(|a| a.contains_key(ANNOTATION_LAYERS));
    if layered {
        if let Ok(Some(l)) = Layers::from_spec(&spec) {
            let _ = l.validate();
        }
        return;
    }
    let _ = child_plan(&spec, false, false);
});

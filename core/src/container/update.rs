//! `update`: new resource limits for a running container, written to its cgroup and recorded in
//! its saved config.

use oci_spec::runtime::LinuxResources;

use super::state::{self, Lock, StateRoot, Status};
use super::{Container, ContainerError, StateError};

pub fn update(
    root: &StateRoot,
    id: &str,
    resources: &LinuxResources,
) -> Result<(), ContainerError> {
    let c = Container::load(root, id)?;
    let _lock = Lock::acquire(&c.dir())?;
    let status = c.status();
    if status == Status::Stopped {
        return Err(StateError::WrongStatus {
            id: id.into(),
            status,
            action: "update",
            wanted: "created, running or paused",
        }
        .into());
    }
    let cg = c.require_cgroup("update")?;
    crate::cgroup::setup::update(&cg, resources)?;
    // Keep the saved config in step (merged at the JSON level: only the given fields change).
    let mut spec = serde_json::to_value(c.spec()?).map_err(|e| StateError::Other(e.to_string()))?;
    let new = serde_json::to_value(resources).map_err(|e| StateError::Other(e.to_string()))?;
    if let Some(linux) = spec.get_mut("linux").and_then(|l| l.as_object_mut()) {
        let slot = linux
            .entry("resources")
            .or_insert_with(|| serde_json::json!({}));
        merge(slot, &new);
    }
    let data = serde_json::to_vec_pretty(&spec).map_err(|e| StateError::Other(e.to_string()))?;
    state::write_atomic(&c.dir().join("config.json"), &data)?;
    Ok(())
}

fn merge(into: &mut serde_json::Value, from: &serde_json::Value) {
    match (into, from) {
        (serde_json::Value::Object(a), serde_json::Value::Object(b)) => {
            for (k, v) in b {
                merge(a.entry(k.clone()).or_insert(serde_json::Value::Null), v);
            }
        }
        (slot, v) => *slot = v.clone(),
    }
}

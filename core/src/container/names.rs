//! Container names (`--name`) and references: wherever a container is named, its full id, its
//! name, or a unique prefix of its id is accepted (like Docker).
//!
//! A name is a symlink `<state root>/.names/<name>` → id, made with one `symlink(2)`: two
//! commands racing for one name cannot both get it. A link whose container is gone (a crash
//! between the two steps of `rm`) is stale and taken over.

use std::path::PathBuf;

use super::state::{self, StateRoot};
use super::StateError;

const NAMES_DIR: &str = ".names";

fn names_dir(root: &StateRoot) -> PathBuf {
    root.path.join(NAMES_DIR)
}

/// Docker's rule: `[a-zA-Z0-9][a-zA-Z0-9_.-]+`.
pub fn validate_name(name: &str) -> Result<(), StateError> {
    let mut chars = name.chars();
    let ok = name.len() >= 2
        && name.len() <= 255
        && chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if ok {
        Ok(())
    } else {
        Err(StateError::BadName(name.to_string()))
    }
}

fn has_state(root: &StateRoot, id: &str) -> bool {
    state::validate_id(id).is_ok() && root.dir(id).join("state.json").is_file()
}

/// The id a name points to, when the name is taken by an existing container.
pub fn lookup(root: &StateRoot, name: &str) -> Option<String> {
    if validate_name(name).is_err() {
        return None;
    }
    let target = std::fs::read_link(names_dir(root).join(name)).ok()?;
    let id = target.to_str()?.to_string();
    has_state(root, &id).then_some(id)
}

/// Takes `name` for container `id`; a name held by another existing container is an error.
pub fn reserve(root: &StateRoot, name: &str, id: &str) -> Result<(), StateError> {
    validate_name(name)?;
    let dir = names_dir(root);
    match std::fs::create_dir(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(StateError::io(&dir, e)),
    }
    let link = dir.join(name);
    for _ in 0..3 {
        match std::os::unix::fs::symlink(id, &link) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                match std::fs::read_link(&link) {
                    Ok(t) if t.to_str() == Some(id) => return Ok(()),
                    Ok(t) => {
                        let holder = t.to_string_lossy().into_owned();
                        if has_state(root, &holder) {
                            return Err(StateError::NameInUse {
                                name: name.to_string(),
                                id: holder,
                            });
                        }
                        // Stale: its container is gone. Take it over (and retry the symlink,
                        // so a racing taker still loses cleanly).
                        let _ = std::fs::remove_file(&link);
                    }
                    Err(_) => {}
                }
            }
            Err(e) => return Err(StateError::io(&link, e)),
        }
    }
    Err(StateError::NameInUse {
        name: name.to_string(),
        id: String::from("(another container being created)"),
    })
}

/// Gives `name` up, if it still points to `id`.
pub fn release(root: &StateRoot, name: &str, id: &str) {
    if validate_name(name).is_err() {
        return;
    }
    let link = names_dir(root).join(name);
    if std::fs::read_link(&link)
        .ok()
        .and_then(|t| t.to_str().map(String::from))
        == Some(id.into())
    {
        let _ = std::fs::remove_file(&link);
    }
}

const ADJECTIVES: [&str; 24] = [
    "brave", "calm", "clever", "eager", "fancy", "gentle", "happy", "jolly", "keen", "lucid",
    "merry", "nimble", "proud", "quiet", "rapid", "sharp", "shiny", "silent", "steady", "swift",
    "tidy", "vivid", "wise", "zesty",
];
const NOUNS: [&str; 24] = [
    "badger", "beaver", "bison", "crane", "dingo", "eagle", "falcon", "ferret", "gecko", "heron",
    "ibis", "jackal", "koala", "lemur", "lynx", "marmot", "newt", "otter", "panda", "quokka",
    "raven", "stoat", "tapir", "walrus",
];

/// Generates and reserves a free `adjective_noun` name for `id`. A plain name already taken
/// (or taken by a racing create between the check and the reservation) falls back to the name
/// with the id's first characters appended, which is unique because the id is.
pub fn generate(root: &StateRoot, id: &str) -> Result<String, StateError> {
    let seed: u64 = id
        .bytes()
        .take(16)
        .fold(0u64, |a, b| a.wrapping_mul(31).wrapping_add(u64::from(b)));
    let base = format!(
        "{}_{}",
        ADJECTIVES[(seed % 24) as usize],
        NOUNS[((seed / 24) % 24) as usize]
    );
    let mut last = None;
    for len in [0usize, 6, 12, id.len()] {
        let name = if len == 0 {
            base.clone()
        } else {
            format!("{base}_{}", &id[..len.min(id.len())])
        };
        match reserve(root, &name, id) {
            Ok(()) => return Ok(name),
            Err(e @ StateError::NameInUse { .. }) => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or(StateError::BadName(base)))
}

/// Resolves a reference (full id, name, or unique id prefix) to a container id.
pub fn resolve(root: &StateRoot, reference: &str) -> Result<String, StateError> {
    if reference.is_empty() {
        return Err(StateError::NotFound(String::new()));
    }
    if has_state(root, reference) {
        return Ok(reference.to_string());
    }
    if let Some(id) = lookup(root, reference) {
        return Ok(id);
    }
    let matches: Vec<String> = root
        .ids()?
        .into_iter()
        .filter(|id| id.starts_with(reference))
        .collect();
    match matches.len() {
        0 => Err(StateError::NotFound(reference.to_string())),
        1 => Ok(matches.into_iter().next().unwrap_or_default()),
        _ => Err(StateError::Ambiguous {
            reference: reference.to_string(),
            ids: matches,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp_root(tag: &str) -> StateRoot {
        let d = std::env::temp_dir().join(format!("rb-names-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        StateRoot::open(&d).unwrap()
    }

    fn fake(root: &StateRoot, id: &str) {
        std::fs::create_dir_all(root.dir(id)).unwrap();
        std::fs::write(root.dir(id).join("state.json"), "{}").unwrap();
    }

    #[test]
    fn names_follow_docker_rules() {
        assert!(validate_name("web-1.a_b").is_ok());
        assert!(validate_name("a").is_err());
        assert!(validate_name("-web").is_err());
        assert!(validate_name("we b").is_err());
        assert!(validate_name("we/b").is_err());
    }

    #[test]
    fn reserve_clash_release_and_stale() {
        let root = tmp_root("reserve");
        fake(&root, "aaa111");
        fake(&root, "aab222");
        reserve(&root, "web", "aaa111").unwrap();
        let e = reserve(&root, "web", "aab222").unwrap_err();
        assert!(e.to_string().contains("already in use"), "{e}");
        assert_eq!(resolve(&root, "web").unwrap(), "aaa111");
        assert_eq!(resolve(&root, "aab").unwrap(), "aab222");
        // A generated name never clashes, even when its plain form is taken.
        let (id1, id2) = ("0123456789abcdef01", "0123456789abcdef02");
        fake(&root, id1);
        fake(&root, id2);
        let n1 = generate(&root, id1).unwrap();
        let n2 = generate(&root, id2).unwrap();
        assert_eq!(n2, format!("{n1}_012345"));
        assert_eq!(lookup(&root, &n2).as_deref(), Some(id2));
        release(&root, &n1, id1);
        release(&root, &n2, id2);
        let e = resolve(&root, "aa").unwrap_err();
        assert!(e.to_string().contains("ambiguous"), "{e}");
        assert!(matches!(
            resolve(&root, "zzz"),
            Err(StateError::NotFound(_))
        ));
        // The container is gone: the stale name is taken over.
        std::fs::remove_dir_all(root.dir("aaa111")).unwrap();
        reserve(&root, "web", "aab222").unwrap();
        release(&root, "web", "aaa111");
        assert_eq!(lookup(&root, "web").as_deref(), Some("aab222"));
        release(&root, "web", "aab222");
        assert_eq!(lookup(&root, "web"), None);
        let _ = std::fs::remove_dir_all(&root.path);
    }
}

//! Layer unpacking (`rootbox pull/load/run` of an image): a tar stream — raw bytes, or a
//! structured archive of hostile entries (`..`, absolute paths, symlinks and hardlinks out of
//! the root, whiteouts, devices, PAX long names and xattrs) — is unpacked into a fresh
//! directory inside a private sandbox, with the process's working directory in the sandbox.
//! Whatever the input: no panic, nothing written next to the target (the sandbox holds only
//! the target and an untouched sentinel), and no device node inside it but overlay whiteouts.
#![no_main]

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use oci_spec::runtime::LinuxIdMappingBuilder;
use rootbox_core::image::unpack::{unpack, Limits, Ownership, UnpackOptions};

#[derive(Arbitrary, Debug)]
enum Input {
    /// A tar stream as it comes.
    Raw(Vec<u8>),
    /// An archive built from entries.
    Entries {
        entries: Vec<Entry>,
        record_owners: bool,
        /// Small limits (size, entries) to hit them.
        limits: Option<(u16, u8)>,
    },
}

/// A path from pieces that matter to an unpacker.
#[derive(Arbitrary, Debug)]
enum Part {
    A,
    B,
    Dot,
    DotDot,
    Slash,
    Whiteout,
    Opaque,
    Long(u8),
    Bytes(Vec<u8>),
}

#[derive(Arbitrary, Debug)]
enum Kind {
    File,
    Dir,
    Symlink,
    Hardlink,
    Fifo,
    Char(u8, u8),
    Block(u8, u8),
    Other(u8),
}

#[derive(Arbitrary, Debug)]
struct Entry {
    path: Vec<Part>,
    kind: Kind,
    link: Vec<Part>,
    mode: u16,
    uid: u32,
    gid: u32,
    data: Vec<u8>,
    /// A PAX header even when the names fit the ustar header.
    pax: bool,
    xattr: Option<(Vec<u8>, Vec<u8>)>,
    mtime: Option<i64>,
}

fn name(parts: &[Part]) -> Vec<u8> {
    let mut v = Vec::new();
    for p in parts.iter().take(64) {
        match p {
            Part::A => v.extend_from_slice(b"a"),
            Part::B => v.extend_from_slice(b"b/"),
            Part::Dot => v.extend_from_slice(b"./"),
            Part::DotDot => v.extend_from_slice(b"../"),
            Part::Slash => v.push(b'/'),
            Part::Whiteout => v.extend_from_slice(b".wh."),
            Part::Opaque => v.extend_from_slice(b".wh..wh..opq"),
            Part::Long(n) => v.extend(std::iter::repeat_n(b'l', *n as usize + 1)),
            Part::Bytes(b) => v.extend(b.iter().take(32)),
        }
    }
    v
}

fn octal(field: &mut [u8], value: u64) {
    let digits = field.len() - 1;
    let s = format!("{value:0digits$o}");
    let s = s.as_bytes();
    // A value too large for the field keeps its low digits (a hostile header may lie).
    field[..digits].copy_from_slice(&s[s.len() - digits..]);
    field[digits] = 0;
}

fn header(
    path: &[u8],
    link: &[u8],
    typeflag: u8,
    e: &Entry,
    size: u64,
    dev: (u8, u8),
) -> [u8; 512] {
    let mut h = [0u8; 512];
    let n = path.len().min(100);
    h[..n].copy_from_slice(&path[..n]);
    octal(&mut h[100..108], u64::from(e.mode) & 0o7777);
    octal(&mut h[108..116], u64::from(e.uid) & 0o7777777);
    octal(&mut h[116..124], u64::from(e.gid) & 0o7777777);
    octal(&mut h[124..136], size);
    octal(
        &mut h[136..148],
        e.mtime.unwrap_or(0).unsigned_abs() & 0o77777777777,
    );
    h[156] = typeflag;
    let n = link.len().min(100);
    h[157..157 + n].copy_from_slice(&link[..n]);
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    octal(&mut h[329..337], u64::from(dev.0));
    octal(&mut h[337..345], u64::from(dev.1));
    h[148..156].copy_from_slice(b"        ");
    let sum: u64 = h.iter().map(|b| u64::from(*b)).sum();
    octal(&mut h[148..155], sum);
    h[155] = b' ';
    h
}

fn pax_record(out: &mut Vec<u8>, key: &[u8], value: &[u8]) {
    // "LEN KEY=VALUE\n", LEN counting itself.
    let body = key.len() + value.len() + 3;
    let mut len = body + 1;
    while (len.to_string().len() + body) != len {
        len = len.to_string().len() + body;
    }
    out.extend_from_slice(len.to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(key);
    out.push(b'=');
    out.extend_from_slice(value);
    out.push(b'\n');
}

fn pad(out: &mut Vec<u8>) {
    let rem = out.len() % 512;
    if rem != 0 {
        out.extend(std::iter::repeat_n(0u8, 512 - rem));
    }
}

fn archive(entries: &[Entry]) -> Vec<u8> {
    let mut out = Vec::new();
    for e in entries.iter().take(64) {
        let path = name(&e.path);
        let link = name(&e.link);
        let (typeflag, dev) = match e.kind {
            Kind::File => (b'0', (0, 0)),
            Kind::Dir => (b'5', (0, 0)),
            Kind::Symlink => (b'2', (0, 0)),
            Kind::Hardlink => (b'1', (0, 0)),
            Kind::Fifo => (b'6', (0, 0)),
            Kind::Char(a, b) => (b'3', (a, b)),
            Kind::Block(a, b) => (b'4', (a, b)),
            Kind::Other(t) => (t, (0, 0)),
        };
        let data: &[u8] = if typeflag == b'0' {
            &e.data[..e.data.len().min(4096)]
        } else {
            &[]
        };
        if e.pax || path.len() > 100 || link.len() > 100 || e.xattr.is_some() || e.mtime.is_some() {
            let mut rec = Vec::new();
            pax_record(&mut rec, b"path", &path);
            if !link.is_empty() {
                pax_record(&mut rec, b"linkpath", &link);
            }
            if let Some((k, v)) = &e.xattr {
                let mut key = b"SCHILY.xattr.".to_vec();
                key.extend(k.iter().take(64).filter(|b| **b != b'=' && **b != 0));
                pax_record(&mut rec, &key, &v[..v.len().min(256)]);
            }
            if let Some(t) = e.mtime {
                pax_record(
                    &mut rec,
                    b"mtime",
                    format!("{}.{}", t, t.unsigned_abs() % 1000).as_bytes(),
                );
            }
            out.extend_from_slice(&header(
                b"././@PaxHeader",
                b"",
                b'x',
                e,
                rec.len() as u64,
                (0, 0),
            ));
            out.extend_from_slice(&rec);
            pad(&mut out);
        }
        out.extend_from_slice(&header(&path, &link, typeflag, e, data.len() as u64, dev));
        out.extend_from_slice(data);
        pad(&mut out);
    }
    out.extend(std::iter::repeat_n(0u8, 1024));
    out
}

static N: AtomicU64 = AtomicU64::new(0);

fn base() -> PathBuf {
    std::env::var_os("ROOTBOX_FUZZ_TMP")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir)
}

/// Every entry under `dir` (not following symlinks): no device but a 0/0 whiteout.
fn check_tree(dir: &Path) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for ent in rd.flatten() {
        let p = ent.path();
        let Ok(md) = std::fs::symlink_metadata(&p) else {
            continue;
        };
        let ft = md.file_type();
        if ft.is_block_device() || (ft.is_char_device() && md.rdev() != 0) {
            panic!(
                "a device node was created: {} (rdev {:#x})",
                p.display(),
                md.rdev()
            );
        }
        if ft.is_dir() {
            check_tree(&p);
        }
    }
}

fn options(input: &Input) -> UnpackOptions {
    // SAFETY: getuid/getgid cannot fail.
    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
    let map = |host: u32| {
        vec![
            LinuxIdMappingBuilder::default()
                .container_id(0u32)
                .host_id(host)
                .size(1u32)
                .build(),
            LinuxIdMappingBuilder::default()
                .container_id(1u32)
                .host_id(200_000u32)
                .size(65_536u32)
                .build(),
        ]
        .into_iter()
        .collect::<Result<Vec<_>, _>>()
        .expect("a valid id mapping")
    };
    let (record, limits) = match input {
        Input::Raw(_) => (false, None),
        Input::Entries {
            record_owners,
            limits,
            ..
        } => (*record_owners, *limits),
    };
    UnpackOptions {
        ownership: if record {
            Ownership::Record {
                uids: map(uid),
                gids: map(gid),
            }
        } else {
            Ownership::Squash
        },
        devices: false,
        limits: match limits {
            Some((size, entries)) => Limits {
                max_size: u64::from(size) + 1,
                max_entries: u64::from(entries) + 1,
            },
            None => Limits::default(),
        },
    }
}

fuzz_target!(|input: Input| {
    let bytes = match &input {
        Input::Raw(b) => b.clone(),
        Input::Entries { entries, .. } => archive(entries),
    };
    let sandbox = base().join(format!(
        "rbfuzz-unpack-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let target = sandbox.join("root");
    let sentinel = sandbox.join("sentinel");
    std::fs::create_dir_all(&target).expect("cannot make the fuzz sandbox");
    std::fs::write(&sentinel, b"sentinel\n").expect("cannot write the sentinel");
    // Relative paths used by mistake would land here, next to the target.
    std::env::set_current_dir(&sandbox).expect("cannot enter the sandbox");
    let opts = options(&input);
    let res = unpack(&mut &bytes[..], &target, &opts);
    if let Err(e) = &res {
        assert!(!e.to_string().is_empty(), "an error without a message");
    }
    let mut names: Vec<String> = std::fs::read_dir(&sandbox)
        .expect("the sandbox is gone")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["root", "sentinel"],
        "written next to the target: {res:?}"
    );
    assert_eq!(
        std::fs::read(&sentinel).ok().as_deref(),
        Some(&b"sentinel\n"[..]),
        "the sentinel changed"
    );
    assert!(
        std::fs::symlink_metadata(&target).is_ok_and(|m| m.is_dir()),
        "the target is no longer a directory"
    );
    check_tree(&target);
    let _ = std::env::set_current_dir(base());
    rootbox_core::rootfs::remove_tree(&sandbox).expect("cannot remove the sandbox");
});

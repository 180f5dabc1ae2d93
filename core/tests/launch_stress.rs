//! Fork-safety under load: launch containers from one thread while other threads allocate and
//! hold locks. The child between clone and exec must not touch the allocator or any lock (a copy
//! of a lock held by another thread at clone time would never be released in the child), so a
//! violation shows up here as a hang — caught by the watchdog — or a crash.
//!
//! Run by `make test` both as root and as the unprivileged test user.

use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rootbox_core::launch::{self, LaunchOptions};
use rootbox_core::spec::RunOptions;

fn busybox() -> PathBuf {
    ["/bin/busybox", "/usr/bin/busybox"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .expect("busybox-static is needed for this test (apt-get install busybox-static)")
}

fn make_rootfs(dir: &Path) {
    let _ = std::fs::remove_dir_all(dir);
    for d in ["bin", "proc", "dev", "sys", "tmp", "etc"] {
        std::fs::create_dir_all(dir.join(d)).unwrap();
    }
    std::fs::copy(busybox(), dir.join("bin/busybox")).unwrap();
    std::os::unix::fs::symlink("busybox", dir.join("bin/sh")).unwrap();
}

#[test]
fn launches_while_other_threads_allocate_and_hold_locks() {
    let dir = std::env::temp_dir().join(format!("rootbox-stress-{}", std::process::id()));
    make_rootfs(&dir);

    let done = Arc::new(AtomicBool::new(false));
    // Watchdog: a deadlocked child never reports back, so the launch would block forever.
    {
        let done = Arc::clone(&done);
        std::thread::spawn(move || {
            let start = Instant::now();
            while !done.load(Ordering::SeqCst) {
                if start.elapsed() > Duration::from_secs(60) {
                    eprintln!(
                        "launch_stress: no progress for 60 s: deadlock between clone and exec"
                    );
                    std::process::abort();
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        });
    }
    let shared = Arc::new(Mutex::new(Vec::<Vec<u8>>::new()));
    let churn = Arc::new(AtomicU64::new(0));
    let mut workers = Vec::new();
    for t in 0..4 {
        let (shared, done, churn) = (Arc::clone(&shared), Arc::clone(&done), Arc::clone(&churn));
        workers.push(std::thread::spawn(move || {
            let mut n = t as usize;
            while !done.load(Ordering::SeqCst) {
                // Hold a lock while allocating and freeing: exactly the state a clone must survive.
                let mut g = shared.lock().unwrap();
                for i in 0..64 {
                    n = n
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    g.push(vec![i as u8; 1 + n % 4096]);
                }
                if g.len() > 4096 {
                    g.clear();
                }
                drop(g);
                // Hold the process-wide stderr lock for a moment too: a child that printed
                // (eprintln!) would block on its copy of it forever.
                {
                    let _err = std::io::stderr().lock();
                    let until = Instant::now() + Duration::from_micros(500);
                    while Instant::now() < until {
                        std::hint::black_box(vec![0u8; 1 + n % 65536]);
                    }
                }
                let s = format!("{n:x}").repeat(8);
                std::hint::black_box(s);
                churn.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }

    // Threads being created and exiting: glibc then holds its internal stack-cache lock, which
    // its setuid wrappers also take — a child that called them would hang.
    {
        let done = Arc::clone(&done);
        workers.push(std::thread::spawn(move || {
            while !done.load(Ordering::SeqCst) {
                let t = std::thread::spawn(|| std::hint::black_box(vec![1u8; 4096]).len());
                let _ = t.join();
            }
        }));
    }
    let devnull = std::fs::File::open("/dev/null").unwrap();
    let fd = devnull.as_raw_fd();
    let rounds = 40;
    let start = Instant::now();
    for i in 0..rounds {
        let opts = RunOptions {
            rootfs: dir.clone(),
            args: vec!["/bin/sh".into(), "-c".into(), format!("exit {}", i % 7)],
            ..Default::default()
        };
        let spec = opts.to_spec(&format!("stress{i}")).unwrap();
        let lopts = LaunchOptions {
            stdio: Some([fd, fd, fd]),
            ..Default::default()
        };
        let mut l = launch::launch(&spec, &lopts).unwrap();
        l.wait_exec().unwrap();
        assert_eq!(launch::wait_pid(l.pid).unwrap(), i % 7, "round {i}");
    }
    let elapsed = start.elapsed();
    done.store(true, Ordering::SeqCst);
    for w in workers {
        w.join().unwrap();
    }
    assert!(
        churn.load(Ordering::Relaxed) > 0,
        "the worker threads never ran"
    );
    eprintln!(
        "launch_stress: {rounds} containers in {:?} ({:?} each) with 4 allocating threads",
        elapsed,
        elapsed / rounds as u32
    );
    let _ = std::fs::remove_dir_all(&dir);
}

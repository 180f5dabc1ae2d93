//! What both command lines share: error reporting, signal forwarding and the terminal proxy.
//! No container logic lives here; that is all in `rootbox_core`.

pub mod images;
pub mod registry;

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use signal_hook::consts::signal::{SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGUSR1, SIGUSR2, SIGWINCH};
use signal_hook::iterator::{Handle, Signals};

/// Prints `prog: message` on stderr and exits with `code`.
pub fn die(prog: &str, message: impl std::fmt::Display, code: i32) -> ! {
    eprintln!("{prog}: {message}");
    std::process::exit(code)
}

/// Forwards the signals a user sends to the CLI (TERM, INT, HUP, QUIT, USR1, USR2) to the
/// container's process; with a terminal, window-size changes are passed to the pty.
///
/// Installed before the container is launched, so a signal that arrives while it starts is not
/// lost (nor kills the CLI): it is held and delivered as soon as the process exists.
pub struct SignalForwarder {
    handle: Handle,
    target: Arc<Mutex<Target>>,
    thread: Option<JoinHandle<()>>,
}

#[derive(Default)]
struct Target {
    pid: i32,
    pty: Option<RawFd>,
    pending: Vec<i32>,
}

impl SignalForwarder {
    pub fn install() -> std::io::Result<SignalForwarder> {
        let mut signals =
            Signals::new([SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGWINCH])?;
        let handle = signals.handle();
        let target = Arc::new(Mutex::new(Target::default()));
        let t = Arc::clone(&target);
        let thread = std::thread::spawn(move || {
            for sig in signals.forever() {
                let Ok(mut t) = t.lock() else { break };
                if sig == SIGWINCH {
                    if let Some(master) = t.pty {
                        copy_window_size(0, master);
                    }
                } else if t.pid > 0 {
                    // SAFETY: sending a signal to the container's process.
                    unsafe { libc::kill(t.pid, sig) };
                } else {
                    t.pending.push(sig);
                }
            }
        });
        Ok(SignalForwarder {
            handle,
            target,
            thread: Some(thread),
        })
    }

    /// Starts forwarding to `pid` (delivering what arrived meanwhile).
    pub fn set_target(&self, pid: i32, pty: Option<RawFd>) {
        if let Ok(mut t) = self.target.lock() {
            t.pid = pid;
            t.pty = pty;
            for sig in t.pending.drain(..) {
                // SAFETY: sending a signal to the container's process.
                unsafe { libc::kill(pid, sig) };
            }
        }
    }
}

impl Drop for SignalForwarder {
    fn drop(&mut self) {
        self.handle.close();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Copies the window size of terminal `from` to terminal `to`.
pub fn copy_window_size(from: RawFd, to: RawFd) {
    // SAFETY: an all-zero winsize is valid; TIOCGWINSZ/TIOCSWINSZ take a pointer to one.
    unsafe {
        let mut ws: libc::winsize = std::mem::zeroed();
        if libc::ioctl(from, libc::TIOCGWINSZ, &mut ws) == 0 {
            libc::ioctl(to, libc::TIOCSWINSZ, &ws);
        }
    }
}

/// Puts a terminal in raw mode until dropped.
pub struct RawMode {
    fd: RawFd,
    saved: libc::termios,
}

impl RawMode {
    pub fn enable(fd: RawFd) -> Option<RawMode> {
        // SAFETY: isatty/tcgetattr/tcsetattr on a descriptor we were given, with valid termios
        // buffers.
        unsafe {
            if libc::isatty(fd) != 1 {
                return None;
            }
            let mut t: libc::termios = std::mem::zeroed();
            if libc::tcgetattr(fd, &mut t) != 0 {
                return None;
            }
            let saved = t;
            libc::cfmakeraw(&mut t);
            libc::tcsetattr(fd, libc::TCSANOW, &t);
            Some(RawMode { fd, saved })
        }
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        // SAFETY: restoring the settings saved in `enable`.
        unsafe { libc::tcsetattr(self.fd, libc::TCSANOW, &self.saved) };
    }
}

/// Relays our stdin to the pty master and the master to our stdout. Returns the output thread,
/// which ends when the container side closes.
pub fn proxy_pty(master: OwnedFd) -> JoinHandle<()> {
    copy_window_size(0, master.as_raw_fd());
    let master = Arc::new(master);
    let input = Arc::clone(&master);
    std::thread::spawn(move || {
        let mut buf = [0u8; 8192];
        let mut stdin = std::io::stdin();
        while let Ok(n) = stdin.read(&mut buf) {
            if n == 0 || write_fd(input.as_raw_fd(), &buf[..n]).is_err() {
                break;
            }
        }
    });
    std::thread::spawn(move || {
        let mut buf = [0u8; 8192];
        let mut out = std::io::stdout();
        loop {
            // SAFETY: reading into a buffer we own.
            let n = unsafe { libc::read(master.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
            if n <= 0 {
                break;
            }
            if out.write_all(&buf[..n as usize]).is_err() {
                break;
            }
            let _ = out.flush();
        }
    })
}

fn write_fd(fd: RawFd, mut data: &[u8]) -> std::io::Result<()> {
    while !data.is_empty() {
        // SAFETY: writing from a buffer we own.
        let n = unsafe { libc::write(fd, data.as_ptr().cast(), data.len()) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        data = &data[n as usize..];
    }
    Ok(())
}

/// Runs a foreground container to its end: forwards signals (through `forwarder`, installed
/// before the launch), relays the terminal, waits, and returns the exit code.
pub fn wait_foreground(
    running: rootbox_core::container::run::Running,
    forwarder: SignalForwarder,
    remove: bool,
) -> Result<i32, rootbox_core::Error> {
    Ok(wait_foreground_exit(running, forwarder, remove)?.code)
}

/// [`wait_foreground`], also telling whether the OOM killer struck.
pub fn wait_foreground_exit(
    mut running: rootbox_core::container::run::Running,
    forwarder: SignalForwarder,
    remove: bool,
) -> Result<rootbox_core::container::run::Exit, rootbox_core::Error> {
    let pid = running.pid();
    let pty = running.take_pty();
    relay_foreground(pid, pty, forwarder, || Ok(running.wait_exit(remove)?))
}

/// Relays signals (to `pid`) and the terminal (`pty`, in raw mode) while `wait` waits for the
/// container's end.
pub fn relay_foreground<T>(
    pid: i32,
    pty: Option<OwnedFd>,
    forwarder: SignalForwarder,
    wait: impl FnOnce() -> Result<T, rootbox_core::Error>,
) -> Result<T, rootbox_core::Error> {
    let raw = pty.as_ref().and_then(|_| RawMode::enable(0));
    forwarder.set_target(pid, pty.as_ref().map(|p| p.as_raw_fd()));
    let output = pty.map(proxy_pty);
    let exit = wait();
    if let Some(t) = output {
        let _ = t.join();
    }
    drop(forwarder);
    drop(raw);
    exit
}

/// An fd for /dev/null, for a container without stdin.
pub fn dev_null() -> std::io::Result<std::fs::File> {
    std::fs::File::open("/dev/null")
}

//! The supervision loop of a detached container's monitor: what the monitor does for as long
//! as the container runs (pump its output into the log and to attached clients, pass client
//! input and window sizes on, wait for its end), after [`super::monitor`] launched it.
//!
//! The launching monitor replaces itself with `rootbox-monitor-supervise` (this loop alone, in
//! a binary of its own, installed next to `rootbox-monitor`) so that an idle monitor keeps
//! only what the loop needs: the full `rootbox-monitor` is a large position-independent
//! binary whose relocated read-only data (every page of it written by the dynamic loader at
//! start) alone costs more private memory than podman's conmon in all. The end of the
//! container, which needs the container's state and config, is recorded by the full monitor
//! again: [`main`] runs it as `rootbox-monitor --record-exit ...` from a descriptor of the very
//! binary that launched the container, and waits for it.
//!
//! Nothing here may reach the container state's serialization, the OCI config or the launch
//! code, or the supervising binary grows back to the size of the full one.

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::attach;
use super::logs::{self, Stream};
use super::state::StateRoot;
use crate::launch::{self, sync};

/// The supervising binary's file name, looked up next to `rootbox-monitor`.
pub const SUPERVISE_BIN: &str = "rootbox-monitor-supervise";
/// The `argv[0]` of every monitor process (what `ps` shows for the supervising one too).
pub const MONITOR_ARGV0: &str = "rootbox-monitor";

/// How the monitor starts the container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Launch and exec right away (`run -d`).
    Run,
    /// Launch and wait for `start` (`create`, and `start`/`restart` of a stopped container).
    Create,
}

impl Mode {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Mode::Run => "run",
            Mode::Create => "create",
        }
    }

    fn parse(s: Option<&str>) -> Option<Mode> {
        match s {
            Some("run") => Some(Mode::Run),
            Some("create") => Some(Mode::Create),
            _ => None,
        }
    }
}

/// A monitor's command line: `--FLAG` alone (`--supervise`, `--record-exit`) or `--NAME VALUE`.
pub(crate) struct Args {
    pub flags: Vec<String>,
    pub opts: std::collections::HashMap<String, String>,
}

impl Args {
    pub(crate) fn parse(args: &[String]) -> Args {
        const FLAGS: [&str; 2] = ["supervise", "record-exit"];
        let mut flags = Vec::new();
        let mut opts = std::collections::HashMap::new();
        let mut it = args.iter();
        while let Some(a) = it.next() {
            let Some(k) = a.strip_prefix("--") else {
                continue;
            };
            if FLAGS.contains(&k) {
                flags.push(k.to_string());
            } else if let Some(v) = it.next() {
                opts.insert(k.to_string(), v.clone());
            }
        }
        Args { flags, opts }
    }

    pub(crate) fn has(&self, flag: &str) -> bool {
        self.flags.iter().any(|f| f == flag)
    }

    pub(crate) fn get(&self, k: &str) -> Option<&str> {
        self.opts.get(k).map(String::as_str)
    }

    pub(crate) fn num(&self, k: &str) -> Option<i32> {
        self.get(k).and_then(|v| v.parse().ok())
    }

    /// `--root`, `--id` and `--mode`, which every monitor command line has.
    pub(crate) fn container(&self) -> Option<(PathBuf, String, Mode)> {
        Some((
            PathBuf::from(self.get("root")?),
            self.get("id")?.to_string(),
            Mode::parse(self.get("mode"))?,
        ))
    }

    /// Takes over the descriptor number `--k` names (left open across the exec for us).
    fn fd(&self, k: &str) -> Option<OwnedFd> {
        let n = self.num(k).filter(|n| *n >= 0)?;
        // SAFETY: fcntl on a descriptor number; the image before the exec left it open for us.
        if unsafe { libc::fcntl(n, libc::F_SETFD, libc::FD_CLOEXEC) } < 0 {
            return None;
        }
        // SAFETY: the descriptor is open (fcntl worked) and this process owns it from here on.
        Some(unsafe { OwnedFd::from_raw_fd(n) })
    }
}

pub(crate) const USAGE: &str =
    "usage: rootbox-monitor --root STATE_DIR --id ID --mode run|create (started by rootbox)";

/// How the container's process ended, as the supervision loop saw it.
#[derive(Debug, Clone, Copy)]
pub struct Exit {
    /// The exit code (shell-style; 125/126/127 when its process failed before its exec).
    pub code: i32,
    /// What the process reported when it failed before its exec (create mode: after `start`).
    pub child_error: Option<sync::Msg>,
}

impl Exit {
    /// The arguments of `rootbox-monitor --record-exit` that carry this exit.
    pub(crate) fn to_args(self) -> Vec<String> {
        let mut a = vec!["--code".to_string(), self.code.to_string()];
        if let Some(m) = self.child_error {
            for (k, v) in [
                ("error-step", m.step as i64),
                ("error-index", m.index as i64),
                ("error-errno", m.value as i64),
            ] {
                a.push(format!("--{k}"));
                a.push(v.to_string());
            }
        }
        a
    }

    pub(crate) fn from_args(args: &Args) -> Option<Exit> {
        let code = args.num("code")?;
        let child_error = match (args.get("error-step"), args.get("error-index")) {
            (Some(step), Some(index)) => Some(sync::Msg {
                kind: sync::CHILD_ERROR,
                step: step.parse().ok()?,
                index: index.parse().ok()?,
                value: args.num("error-errno")?,
            }),
            _ => None,
        };
        Some(Exit { code, child_error })
    }
}

struct Client {
    stream: UnixStream,
    hello: Option<u8>,
    buf: Vec<u8>,
    dead: bool,
}

/// A launched container under supervision: its process, its stdio and the attach socket.
pub(crate) struct Supervisor {
    pub root: PathBuf,
    pub id: String,
    pub dir: PathBuf,
    pub mode: Mode,
    pub pid: i32,
    pub pidfd: Option<OwnedFd>,
    /// The launch's sync socket: in create mode an exec error after `start` arrives there.
    pub sync: Option<OwnedFd>,
    /// stdout (or the pty master) and stderr of the container.
    pub out: Option<OwnedFd>,
    pub err: Option<OwnedFd>,
    /// Where client stdin goes: the stdin pipe (or, with `stdin_to_pty`, the pty master).
    pub stdin: Option<OwnedFd>,
    /// The pty master (borrowed from `out`), for window sizes and, with `-i`, input.
    pub pty: Option<RawFd>,
    pub stdin_to_pty: bool,
    pub log: Option<logs::Writer>,
    pub listener: Option<UnixListener>,
    clients: Vec<Client>,
    /// What reads go into (see [`read_some`]).
    buf: Vec<u8>,
}

fn fd_arg(fd: Option<RawFd>) -> String {
    fd.unwrap_or(-1).to_string()
}

fn keep_across_exec(fd: RawFd) {
    // SAFETY: fcntl on an fd this process owns.
    unsafe { libc::fcntl(fd, libc::F_SETFD, 0) };
}

/// How much one read of the container's output or a client's input takes at most.
const READ_SIZE: usize = 32 * 1024;

/// Reads into `buf` (emptied first, up to its capacity). Some(0) at end (or EIO from a pty
/// whose slave is closed), None when nothing is available now.
///
/// The buffer lives on the heap, allocated once and written only as far as reads fill it: an
/// idle or quiet container's monitor keeps no page of it resident (a buffer on the stack is
/// touched whole by the stack probes).
fn read_some(fd: RawFd, buf: &mut Vec<u8>) -> Option<usize> {
    buf.clear();
    let room = buf.capacity();
    let ptr = buf.spare_capacity_mut().as_mut_ptr();
    loop {
        // SAFETY: `ptr` points to `room` bytes of spare capacity of `buf`, which the kernel
        // writes into (never reads).
        let n = unsafe { libc::read(fd, ptr.cast(), room) };
        if n >= 0 {
            // SAFETY: read initialized the first n bytes (n <= room = capacity).
            unsafe { buf.set_len(n as usize) };
            return Some(n as usize);
        }
        match std::io::Error::last_os_error().raw_os_error() {
            Some(libc::EINTR) => continue,
            Some(libc::EAGAIN) => return None,
            _ => return Some(0),
        }
    }
}

fn write_all_fd(fd: RawFd, mut data: &[u8]) -> bool {
    while !data.is_empty() {
        // SAFETY: writing from a buffer we own.
        let n = unsafe { libc::write(fd, data.as_ptr().cast(), data.len()) };
        if n < 0 {
            if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return false;
        }
        data = &data[n as usize..];
    }
    true
}

/// Sends to a non-blocking client, waiting at most 2 s for room; false when it should go.
fn send_client(stream: &UnixStream, data: &[u8]) -> bool {
    let mut data = data;
    let deadline = Instant::now() + Duration::from_secs(2);
    while !data.is_empty() {
        // SAFETY: sending from a buffer we own.
        let n = unsafe {
            libc::send(
                stream.as_raw_fd(),
                data.as_ptr().cast(),
                data.len(),
                libc::MSG_NOSIGNAL,
            )
        };
        if n >= 0 {
            data = &data[n as usize..];
            continue;
        }
        match std::io::Error::last_os_error().raw_os_error() {
            Some(libc::EINTR) => {}
            Some(libc::EAGAIN) => {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return false;
                }
                let mut p = libc::pollfd {
                    fd: stream.as_raw_fd(),
                    events: libc::POLLOUT,
                    revents: 0,
                };
                // SAFETY: one valid pollfd.
                unsafe { libc::poll(&mut p, 1, left.as_millis() as libc::c_int) };
            }
            _ => return false,
        }
    }
    true
}

/// Drops this process's page-table entries for the code it ran while starting (the
/// executable's and the libraries' `r-xp` mappings): the supervision loop faults back in the
/// few pages it uses, from the page cache, and the monitor's resident set stays at what it
/// really uses instead of everything its start-up touched (plus the kernel's fault-around).
/// Only never-written text is dropped (`MADV_DONTNEED` on it loses nothing); data, relocated
/// read-only data and anonymous memory are left alone.
pub(crate) fn shed_code_pages() {
    let Ok(maps) = std::fs::read_to_string("/proc/self/maps") else {
        return;
    };
    for line in maps.lines() {
        let mut f = line.split_whitespace();
        let (Some(range), Some(perms)) = (f.next(), f.next()) else {
            continue;
        };
        let path = f.nth(3).unwrap_or("");
        // Named file mappings only: not [vdso], [vsyscall] or anonymous executable memory.
        if perms != "r-xp" || !path.starts_with('/') {
            continue;
        }
        let Some((a, b)) = range.split_once('-') else {
            continue;
        };
        let (Ok(start), Ok(end)) = (usize::from_str_radix(a, 16), usize::from_str_radix(b, 16))
        else {
            continue;
        };
        // SAFETY: [start, end) is a private, read-only, executable file mapping of this
        // process, never written: MADV_DONTNEED only drops its PTEs, and the next access
        // maps the same file pages again. This function's own code is refaulted the same way.
        unsafe {
            libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_DONTNEED);
        }
    }
}

impl Supervisor {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        root: PathBuf,
        id: String,
        dir: PathBuf,
        mode: Mode,
        pid: i32,
        pidfd: Option<OwnedFd>,
        sync: Option<OwnedFd>,
        out: Option<OwnedFd>,
        err: Option<OwnedFd>,
        stdin: Option<OwnedFd>,
        pty: Option<RawFd>,
        stdin_to_pty: bool,
        log: Option<logs::Writer>,
        listener: Option<UnixListener>,
    ) -> Supervisor {
        Supervisor {
            root,
            id,
            dir,
            mode,
            pid,
            pidfd,
            sync,
            out,
            err,
            stdin,
            pty,
            stdin_to_pty,
            log,
            listener,
            clients: Vec::new(),
            buf: Vec::with_capacity(READ_SIZE),
        }
    }

    /// Replaces this process image with `program --supervise ...` (`argv[0]` is
    /// `rootbox-monitor` either way), passing the container's descriptors by number, and
    /// `monitor_exe` (a descriptor of the full monitor, for `--record-exit`) when given.
    /// Returns only when the exec failed, with everything as it was.
    pub(crate) fn exec(&mut self, program: &std::ffi::CStr, monitor_exe: Option<RawFd>) {
        let raw = |f: &Option<OwnedFd>| f.as_ref().map(|f| f.as_raw_fd());
        let fds = [
            ("pidfd", raw(&self.pidfd)),
            ("sync", raw(&self.sync)),
            ("out", raw(&self.out)),
            ("err", raw(&self.err)),
            ("stdin", raw(&self.stdin)),
            ("listener", self.listener.as_ref().map(|l| l.as_raw_fd())),
            ("monitor-exe", monitor_exe),
        ];
        let mut strings = vec![
            MONITOR_ARGV0.to_string(),
            "--supervise".into(),
            "--root".into(),
            self.root.display().to_string(),
            "--id".into(),
            self.id.clone(),
            "--mode".into(),
            self.mode.as_str().into(),
            "--pid".into(),
            self.pid.to_string(),
            "--tty".into(),
            if self.pty.is_some() { "1" } else { "0" }.into(),
            "--stdin-to-pty".into(),
            if self.stdin_to_pty { "1" } else { "0" }.into(),
        ];
        for (name, fd) in fds {
            strings.push(format!("--{name}"));
            strings.push(fd_arg(fd));
        }
        let Ok(args) = strings
            .into_iter()
            .map(CString::new)
            .collect::<Result<Vec<_>, _>>()
        else {
            return;
        };
        for fd in fds.iter().filter_map(|(_, fd)| *fd) {
            keep_across_exec(fd);
        }
        let mut argv: Vec<*const libc::c_char> = args.iter().map(|a| a.as_ptr()).collect();
        argv.push(std::ptr::null());
        // The log is reopened after the exec; what this image buffered is written now.
        if let Some(mut log) = self.log.take() {
            log.flush();
        }
        // SAFETY: argv is a NULL-terminated array of pointers into `args`, alive for the call;
        // the environment is passed as it is.
        unsafe {
            libc::execv(program.as_ptr(), argv.as_ptr());
        }
        // Failed: take the descriptors back and go on in this image.
        for fd in fds.iter().filter_map(|(_, fd)| *fd) {
            // SAFETY: fcntl on an fd this process owns.
            unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
        }
        self.log = logs::Writer::open(&self.dir.join(logs::LOG_FILE)).ok();
    }

    /// Rebuilds the supervisor after the exec from its `--NAME FD` arguments; also returns the
    /// `--monitor-exe` descriptor when there is one.
    pub(crate) fn from_args(args: &Args) -> Option<(Supervisor, Option<OwnedFd>)> {
        let (root, id, mode) = args.container()?;
        let pid = args.num("pid")?;
        let dir = StateRoot { path: root.clone() }.dir(&id);
        let out = args.fd("out");
        let pty = (args.num("tty") == Some(1))
            .then(|| out.as_ref().map(|o| o.as_raw_fd()))
            .flatten();
        let log = logs::Writer::open(&dir.join(logs::LOG_FILE)).ok();
        let sup = Supervisor::new(
            root,
            id,
            dir,
            mode,
            pid,
            args.fd("pidfd"),
            args.fd("sync"),
            out,
            args.fd("err"),
            args.fd("stdin"),
            pty,
            args.num("stdin-to-pty") == Some(1),
            log,
            args.fd("listener").map(UnixListener::from),
        );
        Some((sup, args.fd("monitor-exe")))
    }

    fn broadcast(&mut self, kind: u8, data: &[u8]) {
        let frame = attach::encode(kind, data);
        for c in &mut self.clients {
            let wants = match kind {
                attach::M_EXIT => true,
                _ => c.hello.is_some_and(|h| h & attach::HELLO_OUTPUT != 0),
            };
            if wants && !c.dead && !send_client(&c.stream, &frame) {
                c.dead = true;
            }
        }
    }

    fn output(&mut self, stream: Stream, data: &[u8]) {
        if let Some(log) = &mut self.log {
            log.write(stream, data);
        }
        let kind = match stream {
            Stream::Stdout => attach::M_STDOUT,
            Stream::Stderr => attach::M_STDERR,
        };
        self.broadcast(kind, data);
    }

    /// Reads what one output fd has; false when it reached its end.
    fn pump(&mut self, stream: Stream) -> bool {
        let fd = match stream {
            Stream::Stdout => self.out.as_ref(),
            Stream::Stderr => self.err.as_ref(),
        }
        .map(|f| f.as_raw_fd());
        let Some(fd) = fd else { return false };
        let mut buf = std::mem::take(&mut self.buf);
        let more = match read_some(fd, &mut buf) {
            None => true,
            Some(0) => {
                match stream {
                    Stream::Stdout => {
                        self.pty = None;
                        self.out = None
                    }
                    Stream::Stderr => self.err = None,
                }
                false
            }
            Some(_) => {
                self.output(stream, &buf);
                true
            }
        };
        self.buf = buf;
        more
    }

    fn accept(&mut self) {
        let Some(l) = &self.listener else { return };
        while let Ok((s, _)) = l.accept() {
            if s.set_nonblocking(true).is_ok() {
                self.clients.push(Client {
                    stream: s,
                    hello: None,
                    buf: Vec::new(),
                    dead: false,
                });
            }
        }
    }

    fn client_input(&mut self, i: usize) {
        let fd = self.clients[i].stream.as_raw_fd();
        let mut chunk = std::mem::take(&mut self.buf);
        let got = read_some(fd, &mut chunk);
        self.clients[i].buf.extend_from_slice(&chunk);
        self.buf = chunk;
        match got {
            None => return,
            Some(0) => {
                self.clients[i].dead = true;
                return;
            }
            Some(_) => {}
        }
        let c = &mut self.clients[i];
        if c.hello.is_none() && !c.buf.is_empty() {
            c.hello = Some(c.buf.remove(0));
            if !send_client(&c.stream, &attach::encode(attach::M_READY, &[])) {
                c.dead = true;
            }
        }
        let may_write = c.hello.is_some_and(|h| h & attach::HELLO_STDIN != 0);
        let mut frames = Vec::new();
        while let Some(f) = attach::take_frame(&mut c.buf) {
            frames.push(f);
        }
        if c.buf.len() > attach::MAX_FRAME + 5 {
            c.dead = true;
        }
        for (kind, payload) in frames {
            match kind {
                attach::C_STDIN if may_write => {
                    let pty = self.pty.filter(|_| self.stdin_to_pty);
                    let target = self.stdin.as_ref().map(|f| f.as_raw_fd()).or(pty);
                    if let Some(fd) = target {
                        if !write_all_fd(fd, &payload) && self.pty.is_none() {
                            self.stdin = None;
                        }
                    }
                }
                attach::C_STDIN_EOF if may_write => {
                    // Closing the pipe gives the container its end of input (not for a pty).
                    self.stdin = None;
                }
                attach::C_RESIZE if payload.len() == 4 => {
                    if let Some(pty) = self.pty {
                        let ws = libc::winsize {
                            ws_row: u16::from_be_bytes([payload[0], payload[1]]),
                            ws_col: u16::from_be_bytes([payload[2], payload[3]]),
                            ws_xpixel: 0,
                            ws_ypixel: 0,
                        };
                        // SAFETY: TIOCSWINSZ takes a pointer to a winsize.
                        unsafe { libc::ioctl(pty, libc::TIOCSWINSZ, &ws) };
                    }
                }
                _ => {}
            }
        }
    }

    fn exited(&self) -> bool {
        if self.pidfd.is_some() {
            return false;
        }
        // Without a pidfd: poll the child.
        let mut info: libc::siginfo_t =
            // SAFETY: an all-zero siginfo is a valid out-buffer.
            unsafe { std::mem::zeroed() };
        // SAFETY: waitid with WNOWAIT only looks.
        let r = unsafe {
            libc::waitid(
                libc::P_PID,
                self.pid as libc::id_t,
                &mut info,
                libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
            )
        };
        // SAFETY: si_pid is valid for a filled siginfo from waitid.
        r == 0 && unsafe { info.si_pid() } != 0
    }

    /// Supervises until the container's process ends, then has `record` record its end
    /// before the attached clients hear of it.
    pub(crate) fn run(&mut self, record: &mut dyn FnMut(&Exit)) {
        loop {
            self.clients.retain(|c| !c.dead);
            let mut fds: Vec<libc::pollfd> = Vec::with_capacity(4 + self.clients.len());
            let pf = |fd: RawFd| libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            };
            let pidfd = self.pidfd.as_ref().map(|f| f.as_raw_fd());
            fds.push(pf(pidfd.unwrap_or(-1)));
            fds.push(pf(self.out.as_ref().map_or(-1, |f| f.as_raw_fd())));
            fds.push(pf(self.err.as_ref().map_or(-1, |f| f.as_raw_fd())));
            fds.push(pf(self.listener.as_ref().map_or(-1, |l| l.as_raw_fd())));
            for c in &self.clients {
                fds.push(pf(c.stream.as_raw_fd()));
            }
            let timeout = if pidfd.is_some() { -1 } else { 200 };
            // SAFETY: `fds` is a valid array of pollfds.
            let r = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout) };
            if r < 0 {
                if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let ready = |i: usize| fds[i].revents != 0;
            if ready(1) {
                self.pump(Stream::Stdout);
            }
            if ready(2) {
                self.pump(Stream::Stderr);
            }
            if ready(3) {
                self.accept();
            }
            for i in 4..fds.len() {
                if ready(i) {
                    self.client_input(i - 4);
                }
            }
            if ready(0) || self.exited() {
                break;
            }
        }
        self.finish(record);
    }

    /// How the process ended: its exit code, and in create mode the error it reported on the
    /// sync socket when its exec after `start` failed.
    fn reap(&mut self) -> Exit {
        let code = launch::wait_pid(self.pid).unwrap_or(-1);
        let mut exit = Exit {
            code,
            child_error: None,
        };
        if self.mode != Mode::Create {
            return exit;
        }
        let Some(sync) = self.sync.take() else {
            return exit;
        };
        if let Ok(Some((m, _))) = sync::recv(sync.as_raw_fd()) {
            if m.kind == sync::CHILD_ERROR {
                exit.code = launch::child_exit_code(&m);
                exit.child_error = Some(m);
            }
        }
        exit
    }

    fn finish(&mut self, record: &mut dyn FnMut(&Exit)) {
        let exit = self.reap();
        // What is still in the pipes (the rest of the pid namespace is being killed and lets
        // go of them within moments).
        let deadline = Instant::now() + Duration::from_secs(2);
        while (self.out.is_some() || self.err.is_some()) && Instant::now() < deadline {
            let mut fds = [
                libc::pollfd {
                    fd: self.out.as_ref().map_or(-1, |f| f.as_raw_fd()),
                    events: libc::POLLIN,
                    revents: 0,
                },
                libc::pollfd {
                    fd: self.err.as_ref().map_or(-1, |f| f.as_raw_fd()),
                    events: libc::POLLIN,
                    revents: 0,
                },
            ];
            // SAFETY: valid pollfds.
            unsafe { libc::poll(fds.as_mut_ptr(), 2, 100) };
            if fds[0].revents != 0 {
                self.pump(Stream::Stdout);
            }
            if fds[1].revents != 0 {
                self.pump(Stream::Stderr);
            }
        }
        if let Some(log) = &mut self.log {
            log.flush();
        }
        self.stdin = None;
        record(&exit);
        // Clients that connected meanwhile (`wait`) get the exit code too.
        self.accept();
        for i in 0..self.clients.len() {
            if self.clients[i].hello.is_none() {
                self.client_input(i);
            }
        }
        self.broadcast(attach::M_EXIT, &exit.code.to_be_bytes());
        self.clients.clear();
        if let Some(l) = self.listener.take() {
            drop(l);
            if let Ok(d) = attach::open_dir(&self.dir) {
                let _ = std::fs::remove_file(attach::short_path(&d));
            }
        }
    }
}

/// Records `exit` by running the full monitor (`monitor_exe`, a descriptor of the binary that
/// launched the container) as `rootbox-monitor --record-exit ...`, and waits for it. Meanwhile
/// other children of this process that end are reaped here: the container's network helper,
/// which the recorder stops, is this process's child, not the recorder's.
fn record_by_monitor(monitor_exe: &OwnedFd, sup: (&std::path::Path, &str, Mode), exit: &Exit) {
    use std::os::unix::process::CommandExt;
    let (root, id, mode) = sup;
    let mut cmd = std::process::Command::new(format!("/proc/self/fd/{}", monitor_exe.as_raw_fd()));
    cmd.arg0(MONITOR_ARGV0)
        .arg("--record-exit")
        .arg("--root")
        .arg(root)
        .args(["--id", id, "--mode", mode.as_str()])
        .args(exit.to_args())
        .current_dir("/");
    let Ok(child) = cmd.spawn() else {
        return;
    };
    let want = child.id() as libc::pid_t;
    loop {
        // SAFETY: waitpid with a null status pointer on any child of ours.
        let r = unsafe { libc::waitpid(-1, std::ptr::null_mut(), 0) };
        if r == want {
            break;
        }
        if r < 0 && std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            break;
        }
    }
}

/// Entry point of `rootbox-monitor-supervise` (exec'd by `rootbox-monitor` once the container
/// runs, with the container's descriptors): supervises it, then has the full monitor record
/// its end. Returns the exit code.
pub fn main(args: &[String]) -> i32 {
    let args = Args::parse(args);
    let Some((mut sup, Some(monitor_exe))) = Supervisor::from_args(&args) else {
        eprintln!("{SUPERVISE_BIN}: started by rootbox-monitor, not meant to be run by hand");
        return 2;
    };
    shed_code_pages();
    let (root, id, mode) = (sup.root.clone(), sup.id.clone(), sup.mode);
    sup.run(&mut |exit| record_by_monitor(&monitor_exe, (&root, &id, mode), exit));
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn args_parse_flags_and_values() {
        let a = Args::parse(&strings(&[
            "--supervise",
            "--root",
            "/s",
            "--id",
            "abc",
            "--mode",
            "create",
            "--pid",
            "42",
        ]));
        assert!(a.has("supervise"));
        assert!(!a.has("record-exit"));
        assert_eq!(a.num("pid"), Some(42));
        let (root, id, mode) = a.container().expect("root, id and mode");
        assert_eq!(
            (root, id.as_str(), mode),
            (PathBuf::from("/s"), "abc", Mode::Create)
        );
        // A bad mode is no container.
        let a = Args::parse(&strings(&["--root", "/s", "--id", "abc", "--mode", "x"]));
        assert!(a.container().is_none());
    }

    #[test]
    fn exit_survives_the_record_exit_command_line() {
        let m = sync::Msg {
            kind: sync::CHILD_ERROR,
            step: 7,
            index: 2,
            value: libc::EACCES,
        };
        for exit in [
            Exit {
                code: 137,
                child_error: None,
            },
            Exit {
                code: 126,
                child_error: Some(m),
            },
        ] {
            let mut line = strings(&["--record-exit", "--root", "/s", "--id", "x"]);
            line.extend(exit.to_args());
            let back = Exit::from_args(&Args::parse(&line)).expect("an exit");
            assert_eq!(back.code, exit.code);
            assert_eq!(back.child_error, exit.child_error);
        }
        // No code, no exit.
        assert!(Exit::from_args(&Args::parse(&strings(&["--record-exit"]))).is_none());
    }
}

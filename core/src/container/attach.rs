//! The attach protocol: the monitor serves `<state dir>/<id>/attach.sock`; `attach`,
//! `start -a` and `wait` connect to it.
//!
//! A client first sends one hello byte (`HELLO_*` flags) and waits for the monitor's ready
//! frame (so what the container prints after that reaches it), then sends frames `[kind u8][len u32 BE]
//! [payload]`: stdin data, stdin end, or a window size (rows u16 BE, cols u16 BE). The monitor
//! sends frames of stdout and stderr data (to clients that asked for output) and, once the
//! container has exited and its exit is recorded, an exit frame with the code (i32 BE).
//!
//! Socket paths are limited to 108 bytes, less than a state root plus a 64-digit id may take, so
//! both sides reach the socket through `/proc/self/fd/<dir fd>/attach.sock`.

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::UnixStream;
use std::path::Path;

pub const SOCKET: &str = "attach.sock";

/// Hello flags: send me the container's output / I will send stdin.
pub const HELLO_OUTPUT: u8 = 1;
pub const HELLO_STDIN: u8 = 2;

/// Client → monitor frame kinds.
pub const C_STDIN: u8 = 0;
pub const C_STDIN_EOF: u8 = 1;
pub const C_RESIZE: u8 = 2;

/// Monitor → client frame kinds.
pub const M_STDOUT: u8 = 1;
pub const M_STDERR: u8 = 2;
pub const M_EXIT: u8 = 3;
/// Sent once the monitor has registered the client (after its hello): output produced after
/// this frame reaches the client.
pub const M_READY: u8 = 4;

/// Largest frame payload accepted.
pub const MAX_FRAME: usize = 1 << 20;

pub fn encode(kind: u8, payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(payload.len() + 5);
    v.push(kind);
    v.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    v.extend_from_slice(payload);
    v
}

/// Splits complete frames off the front of `buf`.
pub fn take_frame(buf: &mut Vec<u8>) -> Option<(u8, Vec<u8>)> {
    if buf.len() < 5 {
        return None;
    }
    let len = u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]) as usize;
    if buf.len() < 5 + len {
        return None;
    }
    let kind = buf[0];
    let payload = buf[5..5 + len].to_vec();
    buf.drain(..5 + len);
    Some((kind, payload))
}

/// Opens a container directory as an `O_PATH` fd (to reach its socket by a short path).
pub fn open_dir(dir: &Path) -> std::io::Result<OwnedFd> {
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: valid path; O_PATH gives no data access.
    let fd = unsafe {
        libc::open(
            c.as_ptr(),
            libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: a fresh fd we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The short path of the socket of the directory open as `dirfd`.
pub fn short_path(dirfd: &OwnedFd) -> String {
    format!("/proc/self/fd/{}/{SOCKET}", dirfd.as_raw_fd())
}

/// A front end's connection to a monitor.
pub struct Client {
    stream: UnixStream,
    buf: Vec<u8>,
}

impl Client {
    /// Connects to the monitor of the container whose state directory is `dir`.
    pub fn connect(dir: &Path, hello: u8) -> std::io::Result<Client> {
        let d = open_dir(dir)?;
        let mut stream = UnixStream::connect(short_path(&d))?;
        stream.write_all(&[hello])?;
        let mut c = Client {
            stream,
            buf: Vec::new(),
        };
        c.stream
            .set_read_timeout(Some(std::time::Duration::from_secs(10)))?;
        match c.read_frame()? {
            Some((M_READY, _)) => {}
            _ => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::ConnectionAborted,
                    "the container's monitor did not accept the connection",
                ))
            }
        }
        c.stream.set_read_timeout(None)?;
        Ok(c)
    }

    /// A second handle for sending (stdin, resizes) from another thread.
    pub fn sender(&self) -> std::io::Result<Sender> {
        Ok(Sender {
            stream: self.stream.try_clone()?,
        })
    }

    /// The next frame from the monitor; `None` when it closed the connection.
    pub fn read_frame(&mut self) -> std::io::Result<Option<(u8, Vec<u8>)>> {
        loop {
            if let Some(f) = take_frame(&mut self.buf) {
                return Ok(Some(f));
            }
            let mut chunk = [0u8; 16384];
            let n = match self.stream.read(&mut chunk) {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => 0,
                Err(e) => return Err(e),
            };
            if n == 0 {
                return Ok(None);
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}

/// The sending half of a [`Client`].
pub struct Sender {
    stream: UnixStream,
}

impl Sender {
    pub fn stdin(&mut self, data: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(&encode(C_STDIN, data))
    }

    pub fn stdin_eof(&mut self) -> std::io::Result<()> {
        self.stream.write_all(&encode(C_STDIN_EOF, &[]))
    }

    pub fn resize(&mut self, rows: u16, cols: u16) -> std::io::Result<()> {
        let mut p = [0u8; 4];
        p[..2].copy_from_slice(&rows.to_be_bytes());
        p[2..].copy_from_slice(&cols.to_be_bytes());
        self.stream.write_all(&encode(C_RESIZE, &p))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_split_and_join() {
        let mut buf = encode(M_STDOUT, b"hello");
        buf.extend(encode(M_EXIT, &7i32.to_be_bytes()));
        buf.extend(&encode(M_STDERR, b"partial")[..4]);
        assert_eq!(take_frame(&mut buf), Some((M_STDOUT, b"hello".to_vec())));
        assert_eq!(
            take_frame(&mut buf),
            Some((M_EXIT, 7i32.to_be_bytes().to_vec()))
        );
        assert_eq!(take_frame(&mut buf), None);
        assert_eq!(buf.len(), 4);
    }
}

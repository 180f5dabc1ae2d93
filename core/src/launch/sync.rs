//! The parent <-> child sync channel: one `SOCK_SEQPACKET` socketpair carrying fixed-size
//! messages (and the pty master as `SCM_RIGHTS`). The child side is async-signal-safe.

use std::os::fd::{FromRawFd, OwnedFd, RawFd};

use crate::sys;

pub const PARENT_MAPPED: u32 = 1;
pub const PARENT_CONTINUE: u32 = 2;
pub const PARENT_ABORT: u32 = 3;
pub const CHILD_ERROR: u32 = 10;
pub const CHILD_READY: u32 = 11;
pub const CHILD_PTY: u32 = 12;
pub const CHILD_HOOKS: u32 = 13;
pub const CHILD_PID: u32 = 14;

/// One message: a kind, the setup step, an index into the plan's lists, and an errno or value.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Msg {
    pub kind: u32,
    pub step: u32,
    pub index: u32,
    pub value: i32,
}

impl Msg {
    pub const fn new(kind: u32) -> Self {
        Msg {
            kind,
            step: 0,
            index: 0,
            value: 0,
        }
    }
}

/// A connected pair: (parent end, child end), both close-on-exec.
pub fn pair() -> std::io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as RawFd; 2];
    // SAFETY: `fds` has room for the two descriptors socketpair writes.
    let r = unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: socketpair just returned these two fresh descriptors, owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Sends a message (and optionally one fd). Async-signal-safe.
pub fn send(fd: RawFd, msg: &Msg, pass_fd: Option<RawFd>) -> Result<(), i32> {
    let mut iov = libc::iovec {
        iov_base: msg as *const Msg as *mut libc::c_void,
        iov_len: std::mem::size_of::<Msg>(),
    };
    // Room for one SCM_RIGHTS control message carrying one int, suitably aligned.
    let mut cbuf = [0u64; 4];
    // SAFETY: an all-zero msghdr is a valid empty header.
    let mut hdr: libc::msghdr = unsafe { std::mem::zeroed() };
    hdr.msg_iov = &mut iov;
    hdr.msg_iovlen = 1;
    if let Some(pfd) = pass_fd {
        // SAFETY: CMSG_SPACE/CMSG_LEN are pure computations on a size.
        let space = unsafe { libc::CMSG_SPACE(std::mem::size_of::<RawFd>() as u32) } as usize;
        hdr.msg_control = cbuf.as_mut_ptr().cast();
        hdr.msg_controllen = space;
        // SAFETY: msg_control points to `space` bytes we own (32 >= CMSG_SPACE(4)), so the first
        // header is in bounds and its data has room for one int.
        unsafe {
            let cmsg = libc::CMSG_FIRSTHDR(&hdr);
            (*cmsg).cmsg_level = libc::SOL_SOCKET;
            (*cmsg).cmsg_type = libc::SCM_RIGHTS;
            (*cmsg).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<RawFd>() as u32) as usize;
            std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<RawFd>(), pfd);
        }
    }
    loop {
        // SAFETY: `hdr` describes buffers valid for the duration of the call.
        let n = unsafe { libc::sendmsg(fd, &hdr, libc::MSG_NOSIGNAL) };
        if n >= 0 {
            return Ok(());
        }
        let e = sys::errno();
        if e != libc::EINTR {
            return Err(e);
        }
    }
}

/// Receives a message; `Ok(None)` at end of stream (the peer exec'd or exited). Any fd passed
/// along is returned owned. Async-signal-safe.
pub fn recv(fd: RawFd) -> Result<Option<(Msg, Option<OwnedFd>)>, i32> {
    let mut msg = Msg::default();
    let mut iov = libc::iovec {
        iov_base: (&mut msg as *mut Msg).cast(),
        iov_len: std::mem::size_of::<Msg>(),
    };
    let mut cbuf = [0u64; 4];
    // SAFETY: an all-zero msghdr is a valid empty header.
    let mut hdr: libc::msghdr = unsafe { std::mem::zeroed() };
    hdr.msg_iov = &mut iov;
    hdr.msg_iovlen = 1;
    hdr.msg_control = cbuf.as_mut_ptr().cast();
    hdr.msg_controllen = std::mem::size_of_val(&cbuf);
    let n = loop {
        // SAFETY: `hdr` describes buffers valid for the duration of the call.
        let n = unsafe { libc::recvmsg(fd, &mut hdr, libc::MSG_CMSG_CLOEXEC) };
        if n >= 0 {
            break n as usize;
        }
        let e = sys::errno();
        if e != libc::EINTR {
            return Err(e);
        }
    };
    if n == 0 {
        return Ok(None);
    }
    if n != std::mem::size_of::<Msg>() {
        return Err(libc::EPROTO);
    }
    let mut passed = None;
    // SAFETY: the kernel filled `hdr.msg_control`; CMSG_FIRSTHDR/NXTHDR walk only within
    // msg_controllen, and an SCM_RIGHTS payload holds ints.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&hdr);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_RIGHTS {
                let pfd = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast::<RawFd>());
                passed = Some(OwnedFd::from_raw_fd(pfd));
            }
            cmsg = libc::CMSG_NXTHDR(&hdr, cmsg);
        }
    }
    Ok(Some((msg, passed)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    #[test]
    fn messages_and_fds_cross() {
        let (a, b) = pair().unwrap();
        let m = Msg {
            kind: CHILD_ERROR,
            step: 3,
            index: 7,
            value: libc::ENOENT,
        };
        send(a.as_raw_fd(), &m, None).unwrap();
        let (got, fd) = recv(b.as_raw_fd()).unwrap().unwrap();
        assert_eq!(got, m);
        assert!(fd.is_none());
        let devnull = std::fs::File::open("/dev/null").unwrap();
        send(
            a.as_raw_fd(),
            &Msg::new(CHILD_PTY),
            Some(devnull.as_raw_fd()),
        )
        .unwrap();
        let (got, fd) = recv(b.as_raw_fd()).unwrap().unwrap();
        assert_eq!(got.kind, CHILD_PTY);
        assert!(fd.is_some());
        drop(a);
        assert!(recv(b.as_raw_fd()).unwrap().is_none());
    }
}

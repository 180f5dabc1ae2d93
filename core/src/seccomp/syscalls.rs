//! Syscall name -> number tables for the seccomp compiler.
//!
//! The bulk of each table is generated from the `libc::SYS_*` constants by the
//! `libc_table!` macro (names present in both the glibc and the musl flavour
//! of the `libc` crate, so every Linux target of the architecture builds). A
//! short hand-written list adds the syscalls the `libc` crate does not define
//! yet but which seccomp profiles name (Docker's default profile allows e.g.
//! `cachestat`, `map_shadow_stack`, `futex_wait`, `statmount`, `getxattrat`).
//! Since Linux 5.1 (`pidfd_send_signal` = 424) new syscalls get the same number
//! on every architecture except alpha, mips and ia64, so these numbers are
//! shared by x86_64 and aarch64.

/// Expands a whitespace-separated list of `libc::SYS_*` constant names into a
/// `&[(&str, i64)]` table; the stored name keeps its `SYS_` prefix, which
/// `lookup` strips.
macro_rules! libc_table {
    ($($sys:ident)*) => {
        &[$((stringify!($sys), libc::$sys as i64)),*]
    };
}

/// Syscalls newer than the `libc` crate's tables (or missing from one of its
/// flavours), with their numbers on x86_64 and aarch64 (identical from 424 on).
#[cfg(any(
    all(target_arch = "x86_64", target_pointer_width = "64"),
    target_arch = "aarch64"
))]
const COMMON_NEW: &[(&str, i64)] = &[
    ("cachestat", 451),
    ("map_shadow_stack", 453),
    ("futex_wake", 454),
    ("futex_wait", 455),
    ("futex_requeue", 456),
    ("statmount", 457),
    ("listmount", 458),
    ("lsm_get_self_attr", 459),
    ("lsm_set_self_attr", 460),
    ("lsm_list_modules", 461),
    ("setxattrat", 463),
    ("getxattrat", 464),
    ("listxattrat", 465),
    ("removexattrat", 466),
    ("open_tree_attr", 467),
    ("file_getattr", 468),
    ("file_setattr", 469),
];

#[cfg(all(target_arch = "x86_64", target_pointer_width = "64"))]
mod native {
    /// `AUDIT_ARCH_X86_64` (`EM_X86_64 | __AUDIT_ARCH_64BIT | __AUDIT_ARCH_LE`).
    pub const AUDIT_ARCH: u32 = 0xc000_003e;
    /// Name of the architecture as Docker profiles spell it (`includes.arches`).
    pub const DOCKER_ARCH: &str = "amd64";

    pub const LIBC: &[(&str, i64)] = libc_table! {
        SYS_read SYS_write SYS_open SYS_close SYS_stat SYS_fstat SYS_lstat SYS_poll SYS_lseek
        SYS_mmap SYS_mprotect SYS_munmap SYS_brk SYS_rt_sigaction SYS_rt_sigprocmask
        SYS_rt_sigreturn SYS_ioctl SYS_pread64 SYS_pwrite64 SYS_readv SYS_writev SYS_access
        SYS_pipe SYS_select SYS_sched_yield SYS_mremap SYS_msync SYS_mincore SYS_madvise SYS_shmget
        SYS_shmat SYS_shmctl SYS_dup SYS_dup2 SYS_pause SYS_nanosleep SYS_getitimer SYS_alarm
        SYS_setitimer SYS_getpid SYS_sendfile SYS_socket SYS_connect SYS_accept SYS_sendto
        SYS_recvfrom SYS_sendmsg SYS_recvmsg SYS_shutdown SYS_bind SYS_listen SYS_getsockname
        SYS_getpeername SYS_socketpair SYS_setsockopt SYS_getsockopt SYS_clone SYS_fork SYS_vfork
        SYS_execve SYS_exit SYS_wait4 SYS_kill SYS_uname SYS_semget SYS_semop SYS_semctl SYS_shmdt
        SYS_msgget SYS_msgsnd SYS_msgrcv SYS_msgctl SYS_fcntl SYS_flock SYS_fsync SYS_fdatasync
        SYS_truncate SYS_ftruncate SYS_getdents SYS_getcwd SYS_chdir SYS_fchdir SYS_rename
        SYS_mkdir SYS_rmdir SYS_creat SYS_link SYS_unlink SYS_symlink SYS_readlink SYS_chmod
        SYS_fchmod SYS_chown SYS_fchown SYS_lchown SYS_umask SYS_gettimeofday SYS_getrlimit
        SYS_getrusage SYS_sysinfo SYS_times SYS_ptrace SYS_getuid SYS_syslog SYS_getgid SYS_setuid
        SYS_setgid SYS_geteuid SYS_getegid SYS_setpgid SYS_getppid SYS_getpgrp SYS_setsid
        SYS_setreuid SYS_setregid SYS_getgroups SYS_setgroups SYS_setresuid SYS_getresuid
        SYS_setresgid SYS_getresgid SYS_getpgid SYS_setfsuid SYS_setfsgid SYS_getsid SYS_capget
        SYS_capset SYS_rt_sigpending SYS_rt_sigtimedwait SYS_rt_sigqueueinfo SYS_rt_sigsuspend
        SYS_sigaltstack SYS_utime SYS_mknod SYS_uselib SYS_personality SYS_ustat SYS_statfs
        SYS_fstatfs SYS_sysfs SYS_getpriority SYS_setpriority SYS_sched_setparam SYS_sched_getparam
        SYS_sched_setscheduler SYS_sched_getscheduler SYS_sched_get_priority_max
        SYS_sched_get_priority_min SYS_sched_rr_get_interval SYS_mlock SYS_munlock SYS_mlockall
        SYS_munlockall SYS_vhangup SYS_modify_ldt SYS_pivot_root SYS__sysctl SYS_prctl
        SYS_arch_prctl SYS_adjtimex SYS_setrlimit SYS_chroot SYS_sync SYS_acct SYS_settimeofday
        SYS_mount SYS_umount2 SYS_swapon SYS_swapoff SYS_reboot SYS_sethostname SYS_setdomainname
        SYS_iopl SYS_ioperm SYS_init_module SYS_delete_module SYS_quotactl SYS_nfsservctl
        SYS_getpmsg SYS_putpmsg SYS_afs_syscall SYS_tuxcall SYS_security SYS_gettid SYS_readahead
        SYS_setxattr SYS_lsetxattr SYS_fsetxattr SYS_getxattr SYS_lgetxattr SYS_fgetxattr
        SYS_listxattr SYS_llistxattr SYS_flistxattr SYS_removexattr SYS_lremovexattr
        SYS_fremovexattr SYS_tkill SYS_time SYS_futex SYS_sched_setaffinity SYS_sched_getaffinity
        SYS_set_thread_area SYS_io_setup SYS_io_destroy SYS_io_getevents SYS_io_submit
        SYS_io_cancel SYS_get_thread_area SYS_lookup_dcookie SYS_epoll_create SYS_epoll_ctl_old
        SYS_epoll_wait_old SYS_remap_file_pages SYS_getdents64 SYS_set_tid_address
        SYS_restart_syscall SYS_semtimedop SYS_fadvise64 SYS_timer_create SYS_timer_settime
        SYS_timer_gettime SYS_timer_getoverrun SYS_timer_delete SYS_clock_settime SYS_clock_gettime
        SYS_clock_getres SYS_clock_nanosleep SYS_exit_group SYS_epoll_wait SYS_epoll_ctl SYS_tgkill
        SYS_utimes SYS_vserver SYS_mbind SYS_set_mempolicy SYS_get_mempolicy SYS_mq_open
        SYS_mq_unlink SYS_mq_timedsend SYS_mq_timedreceive SYS_mq_notify SYS_mq_getsetattr
        SYS_kexec_load SYS_waitid SYS_add_key SYS_request_key SYS_keyctl SYS_ioprio_set
        SYS_ioprio_get SYS_inotify_init SYS_inotify_add_watch SYS_inotify_rm_watch
        SYS_migrate_pages SYS_openat SYS_mkdirat SYS_mknodat SYS_fchownat SYS_futimesat
        SYS_newfstatat SYS_unlinkat SYS_renameat SYS_linkat SYS_symlinkat SYS_readlinkat
        SYS_fchmodat SYS_faccessat SYS_pselect6 SYS_ppoll SYS_unshare SYS_set_robust_list
        SYS_get_robust_list SYS_splice SYS_tee SYS_sync_file_range SYS_vmsplice SYS_move_pages
        SYS_utimensat SYS_epoll_pwait SYS_signalfd SYS_timerfd_create SYS_eventfd SYS_fallocate
        SYS_timerfd_settime SYS_timerfd_gettime SYS_accept4 SYS_signalfd4 SYS_eventfd2
        SYS_epoll_create1 SYS_dup3 SYS_pipe2 SYS_inotify_init1 SYS_preadv SYS_pwritev
        SYS_rt_tgsigqueueinfo SYS_perf_event_open SYS_recvmmsg SYS_fanotify_init SYS_fanotify_mark
        SYS_prlimit64 SYS_name_to_handle_at SYS_open_by_handle_at SYS_clock_adjtime SYS_syncfs
        SYS_sendmmsg SYS_setns SYS_getcpu SYS_process_vm_readv SYS_process_vm_writev SYS_kcmp
        SYS_finit_module SYS_sched_setattr SYS_sched_getattr SYS_renameat2 SYS_seccomp
        SYS_getrandom SYS_memfd_create SYS_kexec_file_load SYS_bpf SYS_execveat SYS_userfaultfd
        SYS_membarrier SYS_mlock2 SYS_copy_file_range SYS_preadv2 SYS_pwritev2 SYS_pkey_mprotect
        SYS_pkey_alloc SYS_pkey_free SYS_statx SYS_rseq SYS_pidfd_send_signal SYS_io_uring_setup
        SYS_io_uring_enter SYS_io_uring_register SYS_open_tree SYS_move_mount SYS_fsopen
        SYS_fsconfig SYS_fsmount SYS_fspick SYS_pidfd_open SYS_clone3 SYS_close_range SYS_openat2
        SYS_pidfd_getfd SYS_faccessat2 SYS_process_madvise SYS_epoll_pwait2 SYS_mount_setattr
        SYS_quotactl_fd SYS_landlock_create_ruleset SYS_landlock_add_rule
        SYS_landlock_restrict_self SYS_memfd_secret SYS_process_mrelease SYS_futex_waitv
        SYS_set_mempolicy_home_node SYS_fchmodat2 SYS_mseal
    };

    /// x86_64-only numbers missing from `libc`.
    pub const EXTRA: &[(&str, i64)] = &[
        ("create_module", 174),
        ("get_kernel_syms", 177),
        ("query_module", 178),
        ("io_pgetevents", 333),
        ("uretprobe", 335),
    ];
}

#[cfg(target_arch = "aarch64")]
mod native {
    /// `AUDIT_ARCH_AARCH64` (`EM_AARCH64 | __AUDIT_ARCH_64BIT | __AUDIT_ARCH_LE`).
    pub const AUDIT_ARCH: u32 = 0xc000_00b7;
    /// Name of the architecture as Docker profiles spell it (`includes.arches`).
    pub const DOCKER_ARCH: &str = "arm64";

    pub const LIBC: &[(&str, i64)] = libc_table! {
        SYS_io_setup SYS_io_destroy SYS_io_submit SYS_io_cancel SYS_io_getevents SYS_setxattr
        SYS_lsetxattr SYS_fsetxattr SYS_getxattr SYS_lgetxattr SYS_fgetxattr SYS_listxattr
        SYS_llistxattr SYS_flistxattr SYS_removexattr SYS_lremovexattr SYS_fremovexattr SYS_getcwd
        SYS_lookup_dcookie SYS_eventfd2 SYS_epoll_create1 SYS_epoll_ctl SYS_epoll_pwait SYS_dup
        SYS_dup3 SYS_fcntl SYS_inotify_init1 SYS_inotify_add_watch SYS_inotify_rm_watch SYS_ioctl
        SYS_ioprio_set SYS_ioprio_get SYS_flock SYS_mknodat SYS_mkdirat SYS_unlinkat SYS_symlinkat
        SYS_linkat SYS_umount2 SYS_mount SYS_pivot_root SYS_nfsservctl SYS_statfs SYS_fstatfs
        SYS_truncate SYS_ftruncate SYS_fallocate SYS_faccessat SYS_chdir SYS_fchdir SYS_chroot
        SYS_fchmod SYS_fchmodat SYS_fchownat SYS_fchown SYS_openat SYS_close SYS_vhangup SYS_pipe2
        SYS_quotactl SYS_getdents64 SYS_lseek SYS_read SYS_write SYS_readv SYS_writev SYS_pread64
        SYS_pwrite64 SYS_preadv SYS_pwritev SYS_sendfile SYS_pselect6 SYS_ppoll SYS_signalfd4
        SYS_vmsplice SYS_splice SYS_tee SYS_readlinkat SYS_newfstatat SYS_fstat SYS_sync SYS_fsync
        SYS_fdatasync SYS_timerfd_create SYS_timerfd_settime SYS_timerfd_gettime SYS_utimensat
        SYS_acct SYS_capget SYS_capset SYS_personality SYS_exit SYS_exit_group SYS_waitid
        SYS_set_tid_address SYS_unshare SYS_futex SYS_set_robust_list SYS_get_robust_list
        SYS_nanosleep SYS_getitimer SYS_setitimer SYS_kexec_load SYS_init_module SYS_delete_module
        SYS_timer_create SYS_timer_gettime SYS_timer_getoverrun SYS_timer_settime SYS_timer_delete
        SYS_clock_settime SYS_clock_gettime SYS_clock_getres SYS_clock_nanosleep SYS_syslog
        SYS_ptrace SYS_sched_setparam SYS_sched_setscheduler SYS_sched_getscheduler
        SYS_sched_getparam SYS_sched_setaffinity SYS_sched_getaffinity SYS_sched_yield
        SYS_sched_get_priority_max SYS_sched_get_priority_min SYS_sched_rr_get_interval
        SYS_restart_syscall SYS_kill SYS_tkill SYS_tgkill SYS_sigaltstack SYS_rt_sigsuspend
        SYS_rt_sigaction SYS_rt_sigprocmask SYS_rt_sigpending SYS_rt_sigtimedwait
        SYS_rt_sigqueueinfo SYS_rt_sigreturn SYS_setpriority SYS_getpriority SYS_reboot
        SYS_setregid SYS_setgid SYS_setreuid SYS_setuid SYS_setresuid SYS_getresuid SYS_setresgid
        SYS_getresgid SYS_setfsuid SYS_setfsgid SYS_times SYS_setpgid SYS_getpgid SYS_getsid
        SYS_setsid SYS_getgroups SYS_setgroups SYS_uname SYS_sethostname SYS_setdomainname
        SYS_getrusage SYS_umask SYS_prctl SYS_getcpu SYS_gettimeofday SYS_settimeofday SYS_adjtimex
        SYS_getpid SYS_getppid SYS_getuid SYS_geteuid SYS_getgid SYS_getegid SYS_gettid SYS_sysinfo
        SYS_mq_open SYS_mq_unlink SYS_mq_timedsend SYS_mq_timedreceive SYS_mq_notify
        SYS_mq_getsetattr SYS_msgget SYS_msgctl SYS_msgrcv SYS_msgsnd SYS_semget SYS_semctl
        SYS_semtimedop SYS_semop SYS_shmget SYS_shmctl SYS_shmat SYS_shmdt SYS_socket
        SYS_socketpair SYS_bind SYS_listen SYS_accept SYS_connect SYS_getsockname SYS_getpeername
        SYS_sendto SYS_recvfrom SYS_setsockopt SYS_getsockopt SYS_shutdown SYS_sendmsg SYS_recvmsg
        SYS_readahead SYS_brk SYS_munmap SYS_mremap SYS_add_key SYS_request_key SYS_keyctl
        SYS_clone SYS_execve SYS_mmap SYS_fadvise64 SYS_swapon SYS_swapoff SYS_mprotect SYS_msync
        SYS_mlock SYS_munlock SYS_mlockall SYS_munlockall SYS_mincore SYS_madvise
        SYS_remap_file_pages SYS_mbind SYS_get_mempolicy SYS_set_mempolicy SYS_migrate_pages
        SYS_move_pages SYS_rt_tgsigqueueinfo SYS_perf_event_open SYS_accept4 SYS_recvmmsg SYS_wait4
        SYS_prlimit64 SYS_fanotify_init SYS_fanotify_mark SYS_name_to_handle_at
        SYS_open_by_handle_at SYS_clock_adjtime SYS_syncfs SYS_setns SYS_sendmmsg
        SYS_process_vm_readv SYS_process_vm_writev SYS_kcmp SYS_finit_module SYS_sched_setattr
        SYS_sched_getattr SYS_renameat2 SYS_seccomp SYS_getrandom SYS_memfd_create SYS_bpf
        SYS_execveat SYS_userfaultfd SYS_membarrier SYS_mlock2 SYS_copy_file_range SYS_preadv2
        SYS_pwritev2 SYS_pkey_mprotect SYS_pkey_alloc SYS_pkey_free SYS_statx SYS_rseq
        SYS_pidfd_send_signal SYS_io_uring_setup SYS_io_uring_enter SYS_io_uring_register
        SYS_open_tree SYS_move_mount SYS_fsopen SYS_fsconfig SYS_fsmount SYS_fspick SYS_pidfd_open
        SYS_clone3 SYS_close_range SYS_openat2 SYS_pidfd_getfd SYS_faccessat2 SYS_process_madvise
        SYS_epoll_pwait2 SYS_mount_setattr SYS_quotactl_fd SYS_landlock_create_ruleset
        SYS_landlock_add_rule SYS_landlock_restrict_self SYS_memfd_secret SYS_process_mrelease
        SYS_futex_waitv SYS_set_mempolicy_home_node SYS_mseal
    };

    /// aarch64 numbers missing from one of `libc`'s flavours.
    pub const EXTRA: &[(&str, i64)] = &[
        ("renameat", 38),
        ("sync_file_range", 84),
        ("getrlimit", 163),
        ("setrlimit", 164),
        ("io_pgetevents", 292),
        ("kexec_file_load", 294),
        ("fchmodat2", 452),
    ];
}

#[cfg(not(any(
    all(target_arch = "x86_64", target_pointer_width = "64"),
    target_arch = "aarch64"
)))]
mod native {
    //! No table: [`super::super::compile`] reports the architecture as unsupported.
    pub const AUDIT_ARCH: u32 = 0;
    pub const DOCKER_ARCH: &str = "unsupported";
    pub const LIBC: &[(&str, i64)] = &[];
    pub const EXTRA: &[(&str, i64)] = &[];
}

#[cfg(not(any(
    all(target_arch = "x86_64", target_pointer_width = "64"),
    target_arch = "aarch64"
)))]
const COMMON_NEW: &[(&str, i64)] = &[];

/// Whether this build has a syscall table (x86_64 and aarch64).
pub(crate) const SUPPORTED: bool = native::AUDIT_ARCH != 0;

/// The kernel's `AUDIT_ARCH_*` value for the native architecture (what
/// `seccomp_data.arch` holds for native syscalls).
pub(crate) const NATIVE_AUDIT_ARCH: u32 = native::AUDIT_ARCH;

/// The native architecture as Docker/moby profiles name it (`amd64`, `arm64`).
pub(crate) const NATIVE_DOCKER_ARCH: &str = native::DOCKER_ARCH;

/// `AUDIT_ARCH_I386`: 32-bit x86 syscalls on an x86_64 kernel.
pub(crate) const AUDIT_ARCH_I386: u32 = 0x4000_0003;
/// `AUDIT_ARCH_ARM`: 32-bit ARM (EABI) syscalls on an aarch64 kernel.
pub(crate) const AUDIT_ARCH_ARM: u32 = 0x4000_0028;
/// Bit 30 of the syscall number marks an x32-ABI syscall on x86_64.
pub(crate) const X32_SYSCALL_BIT: u32 = 0x4000_0000;

fn lookup(name: &str) -> Option<i64> {
    native::LIBC
        .iter()
        .find(|(sys, _)| sys.strip_prefix("SYS_") == Some(name))
        .or_else(|| native::EXTRA.iter().find(|(n, _)| *n == name))
        .or_else(|| COMMON_NEW.iter().find(|(n, _)| *n == name))
        .map(|&(_, nr)| nr)
}

/// The native syscall number of `name` (e.g. `"read"` -> `Some(0)` on x86_64),
/// or `None` when this architecture has no such syscall (e.g. `"chown32"` or
/// `"socketcall"` on x86_64) or the name is unknown.
pub fn syscall_number(name: &str) -> Option<i64> {
    if name.is_empty() {
        return None;
    }
    lookup(name)
}

/// Every `(name, number)` pair the table knows for the native architecture.
pub fn known_syscalls() -> impl Iterator<Item = (&'static str, i64)> {
    native::LIBC
        .iter()
        .map(|&(sys, nr)| (sys.strip_prefix("SYS_").unwrap_or(sys), nr))
        .chain(native::EXTRA.iter().copied())
        .chain(COMMON_NEW.iter().copied())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn names_and_numbers_are_unique() {
        let mut by_name = HashMap::new();
        let mut by_nr = HashMap::new();
        for (name, nr) in known_syscalls() {
            assert!(nr >= 0, "{name}: negative number {nr}");
            assert!(by_name.insert(name, nr).is_none(), "duplicate name {name}");
            if let Some(other) = by_nr.insert(nr, name) {
                panic!("syscall number {nr} used by both {other} and {name}");
            }
        }
        if SUPPORTED {
            assert!(by_name.len() > 300, "table too small: {}", by_name.len());
        }
    }

    #[cfg(all(target_arch = "x86_64", target_pointer_width = "64"))]
    #[test]
    fn x86_64_numbers() {
        assert_eq!(syscall_number("read"), Some(0));
        assert_eq!(syscall_number("write"), Some(1));
        assert_eq!(syscall_number("getpid"), Some(39));
        assert_eq!(syscall_number("clone"), Some(56));
        assert_eq!(syscall_number("keyctl"), Some(250));
        assert_eq!(syscall_number("clone3"), Some(435));
        assert_eq!(syscall_number("uretprobe"), Some(335));
        assert_eq!(syscall_number("cachestat"), Some(451));
        assert_eq!(syscall_number("file_setattr"), Some(469));
        assert_eq!(syscall_number("chown32"), None);
        assert_eq!(syscall_number("socketcall"), None);
        assert_eq!(syscall_number(""), None);
        assert_eq!(syscall_number("SYS_read"), None);
        assert_eq!(NATIVE_AUDIT_ARCH, 0xc000_003e);
    }
}

//! Docker/moby's default seccomp profile, and moby-format profile files.
//!
//! [`default_profile`] encodes moby's `profiles/seccomp/default.json`
//! (github.com/moby/profiles, Apache-2.0) as Rust data: an allow-list with
//! `defaultAction: SCMP_ACT_ERRNO` / `defaultErrnoRet: EPERM`, argument-filtered
//! `socket` (an allow-list of address families: no `AF_VSOCK`, no `AF_ALG`, none of
//! the families the kernel removed), `personality` and `clone` (no namespace flags
//! without `CAP_SYS_ADMIN`), `clone3` -> `ENOSYS` without `CAP_SYS_ADMIN` (so libcs
//! fall back to `clone`, whose flags can be checked), and the syscalls unlocked by
//! capabilities (`CAP_SYS_ADMIN`, `CAP_SYS_PTRACE`, `CAP_BPF`, `CAP_PERFMON`, ...).
//! Note that moby allows `ptrace`, `process_vm_readv` and `process_vm_writev` for
//! everyone on Linux >= 4.8 (the kernel no longer lets ptrace bypass seccomp there).
//! `io_uring_*` is not allowed (moby removed it in 2023).
//!
//! [`profile_from_json`] reads the same format from a file (`docker run
//! --security-opt seccomp=FILE`): `names`/`name`, `action`, `errnoRet`, `args`,
//! `includes`/`excludes` (`caps`, `arches`, `minKernel`), `architectures` or
//! `archMap`, `flags`. An OCI `linux.seccomp` object is a valid input as well.
//! `includes`/`excludes` are resolved the way moby resolves them: against the
//! capability set given (the container's bounding set), the native architecture
//! (`amd64`, `arm64`), and the running kernel's version.

use std::str::FromStr;

use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompArgBuilder,
    LinuxSeccompFilterFlag, LinuxSeccompOperator, LinuxSyscall,
};
use serde::Deserialize;

use super::syscalls::NATIVE_DOCKER_ARCH;
use super::{Location, SeccompError};

/// A kernel version `(major, minor)`.
type KernelVersion = (u32, u32);

/// Conditions of `includes` / `excludes`.
#[derive(Debug, Clone, Default)]
struct Filter {
    caps: Vec<String>,
    arches: Vec<String>,
    min_kernel: Option<KernelVersion>,
}

/// A moby profile entry with its conditions still unresolved.
#[derive(Debug, Clone)]
struct Rule {
    names: Vec<String>,
    action: LinuxSeccompAction,
    errno_ret: Option<u32>,
    args: Vec<Cond>,
    includes: Filter,
    excludes: Filter,
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// An argument condition as plain data (`LinuxSeccompArg` has no setters, only a
/// builder, whose `build` returns a `Result`).
#[derive(Debug, Clone, Copy)]
struct Cond {
    index: usize,
    value: u64,
    value_two: Option<u64>,
    op: LinuxSeccompOperator,
}

impl Cond {
    fn to_oci(self) -> Result<LinuxSeccompArg, SeccompError> {
        let mut builder = LinuxSeccompArgBuilder::default()
            .index(self.index)
            .value(self.value)
            .op(self.op);
        if let Some(value_two) = self.value_two {
            builder = builder.value_two(value_two);
        }
        builder
            .build()
            .map_err(|e| SeccompError::InvalidProfile(e.to_string()))
    }
}

impl Rule {
    fn new(names: &str, action: LinuxSeccompAction, errno_ret: Option<u32>) -> Rule {
        Rule {
            names: names.split_whitespace().map(str::to_string).collect(),
            action,
            errno_ret,
            args: Vec::new(),
            includes: Filter::default(),
            excludes: Filter::default(),
        }
    }
    fn allow(names: &str) -> Rule {
        Rule::new(names, LinuxSeccompAction::ScmpActAllow, None)
    }
    fn errno(names: &str, errno: i32) -> Rule {
        Rule::new(names, LinuxSeccompAction::ScmpActErrno, Some(errno as u32))
    }
    fn arg(mut self, index: usize, value: u64, op: LinuxSeccompOperator) -> Rule {
        self.args.push(Cond {
            index,
            value,
            value_two: None,
            op,
        });
        self
    }
    fn caps(mut self, caps: &[&str]) -> Rule {
        self.includes.caps = strings(caps);
        self
    }
    fn arches(mut self, arches: &[&str]) -> Rule {
        self.includes.arches = strings(arches);
        self
    }
    fn min_kernel(mut self, major: u32, minor: u32) -> Rule {
        self.includes.min_kernel = Some((major, minor));
        self
    }
    fn unless_caps(mut self, caps: &[&str]) -> Rule {
        self.excludes.caps = strings(caps);
        self
    }
    fn unless_arches(mut self, arches: &[&str]) -> Rule {
        self.excludes.arches = strings(arches);
        self
    }

    /// Whether moby keeps this entry for `caps` (the bounding set), the native
    /// architecture and `kernel` (unknown: `minKernel` conditions fail).
    fn applies(&self, caps: &[String], kernel: Option<KernelVersion>) -> bool {
        let has = |cap: &String| caps.contains(cap);
        let at_least = |min: KernelVersion| kernel.is_some_and(|k| k >= min);
        let ex = &self.excludes;
        if ex.arches.iter().any(|a| a == NATIVE_DOCKER_ARCH)
            || ex.caps.iter().any(has)
            || ex.min_kernel.is_some_and(at_least)
        {
            return false;
        }
        let inc = &self.includes;
        (inc.arches.is_empty() || inc.arches.iter().any(|a| a == NATIVE_DOCKER_ARCH))
            && inc.caps.iter().all(has)
            && match inc.min_kernel {
                None => true,
                Some(min) => at_least(min),
            }
    }

    fn to_oci(&self) -> Result<LinuxSyscall, SeccompError> {
        let mut syscall = LinuxSyscall::default();
        syscall.set_names(self.names.clone());
        syscall.set_action(self.action);
        syscall.set_errno_ret(self.errno_ret);
        if !self.args.is_empty() {
            let args = self
                .args
                .iter()
                .map(|c| c.to_oci())
                .collect::<Result<_, _>>()?;
            syscall.set_args(Some(args));
        }
        Ok(syscall)
    }
}

/// Syscalls moby allows unconditionally (its first rule). Names of other
/// architectures (`chown32`, `socketcall`, ...) are skipped when compiling.
const ALLOWED: &str = "
    accept accept4 access adjtimex alarm bind brk cachestat capget capset chdir chmod chown
    chown32 clock_adjtime clock_adjtime64 clock_getres clock_getres_time64 clock_gettime
    clock_gettime64 clock_nanosleep clock_nanosleep_time64 close close_range connect
    copy_file_range creat dup dup2 dup3 epoll_create epoll_create1 epoll_ctl epoll_ctl_old
    epoll_pwait epoll_pwait2 epoll_wait epoll_wait_old eventfd eventfd2 execve execveat exit
    exit_group faccessat faccessat2 fadvise64 fadvise64_64 fallocate fanotify_mark fchdir fchmod
    fchmodat fchmodat2 fchown fchown32 fchownat fcntl fcntl64 fdatasync fgetxattr flistxattr
    flock fork fremovexattr fsetxattr fstat fstat64 fstatat64 fstatfs fstatfs64 fsync ftruncate
    ftruncate64 futex futex_requeue futex_time64 futex_wait futex_waitv futex_wake futimesat
    getcpu getcwd getdents getdents64 getegid getegid32 geteuid geteuid32 getgid getgid32
    getgroups getgroups32 getitimer getpeername getpgid getpgrp getpid getppid getpriority
    getrandom getresgid getresgid32 getresuid getresuid32 getrlimit get_robust_list getrusage
    getsid getsockname getsockopt get_thread_area gettid gettimeofday getuid getuid32 getxattr
    getxattrat inotify_add_watch inotify_init inotify_init1 inotify_rm_watch io_cancel ioctl
    io_destroy io_getevents io_pgetevents io_pgetevents_time64 ioprio_get ioprio_set io_setup
    io_submit ipc kill landlock_add_rule landlock_create_ruleset landlock_restrict_self lchown
    lchown32 lgetxattr link linkat listen listmount listxattr listxattrat llistxattr _llseek
    lremovexattr lseek lsetxattr lstat lstat64 madvise map_shadow_stack membarrier memfd_create
    memfd_secret mincore mkdir mkdirat mknod mknodat mlock mlock2 mlockall mmap mmap2 mprotect
    mq_getsetattr mq_notify mq_open mq_timedreceive mq_timedreceive_time64 mq_timedsend
    mq_timedsend_time64 mq_unlink mremap mseal msgctl msgget msgrcv msgsnd msync munlock
    munlockall munmap name_to_handle_at nanosleep newfstatat _newselect open openat openat2
    pause pidfd_open pidfd_send_signal pipe pipe2 pkey_alloc pkey_free pkey_mprotect poll ppoll
    ppoll_time64 prctl pread64 preadv preadv2 prlimit64 process_mrelease pselect6
    pselect6_time64 pwrite64 pwritev pwritev2 read readahead readlink readlinkat readv recv
    recvfrom recvmmsg recvmmsg_time64 recvmsg remap_file_pages removexattr removexattrat rename
    renameat renameat2 restart_syscall riscv_hwprobe rmdir rseq rt_sigaction rt_sigpending
    rt_sigprocmask rt_sigqueueinfo rt_sigreturn rt_sigsuspend rt_sigtimedwait
    rt_sigtimedwait_time64 rt_tgsigqueueinfo sched_getaffinity sched_getattr sched_getparam
    sched_get_priority_max sched_get_priority_min sched_getscheduler sched_rr_get_interval
    sched_rr_get_interval_time64 sched_setaffinity sched_setattr sched_setparam
    sched_setscheduler sched_yield seccomp select semctl semget semop semtimedop
    semtimedop_time64 send sendfile sendfile64 sendmmsg sendmsg sendto setfsgid setfsgid32
    setfsuid setfsuid32 setgid setgid32 setgroups setgroups32 setitimer setpgid setpriority
    setregid setregid32 setresgid setresgid32 setresuid setresuid32 setreuid setreuid32
    setrlimit set_robust_list setsid setsockopt set_thread_area set_tid_address setuid setuid32
    setxattr setxattrat shmat shmctl shmdt shmget shutdown sigaltstack signalfd signalfd4
    sigprocmask sigreturn socketcall socketpair splice stat stat64 statfs statfs64 statmount
    statx symlink symlinkat sync sync_file_range syncfs sysinfo tee tgkill time timer_create
    timer_delete timer_getoverrun timer_gettime timer_gettime64 timer_settime timer_settime64
    timerfd_create timerfd_gettime timerfd_gettime64 timerfd_settime timerfd_settime64 times
    tkill truncate truncate64 ugetrlimit umask uname unlink unlinkat uretprobe utime utimensat
    utimensat_time64 utimes vfork vmsplice wait4 waitid waitpid write writev
";

/// Socket address families `socket(2)` may create (moby's list). Left out: the
/// families the kernel removed (AF_DECnet 12, AF_ECONET 19, AF_ATMSVC 20, AF_IRDA 23,
/// AF_WANPIPE 25, AF_ISDN 34, AF_CAIF 37), AF_ALG 38 (kernel crypto API: attack
/// surface containers do not need) and AF_VSOCK 40 (host/guest sockets, not
/// isolated by network namespaces on most kernels).
const SOCKET_DOMAINS: &[u64] = &[
    1,  // AF_UNIX
    2,  // AF_INET
    3,  // AF_AX25
    4,  // AF_IPX
    5,  // AF_APPLETALK
    6,  // AF_NETROM
    7,  // AF_BRIDGE
    8,  // AF_ATMPVC
    9,  // AF_X25
    10, // AF_INET6
    11, // AF_ROSE
    13, // AF_NETBEUI
    14, // AF_SECURITY
    15, // AF_KEY
    16, // AF_NETLINK
    17, // AF_PACKET
    18, // AF_ASH
    21, // AF_RDS
    22, // AF_SNA
    24, // AF_PPPOX
    26, // AF_LLC
    27, // AF_IB
    28, // AF_MPLS
    29, // AF_CAN
    30, // AF_TIPC
    31, // AF_BLUETOOTH
    32, // AF_IUCV
    33, // AF_RXRPC
    35, // AF_PHONET
    36, // AF_IEEE802154
    39, // AF_NFC
    41, // AF_KCM
    42, // AF_QIPCRTR
    43, // AF_SMC
    44, // AF_XDP
    45, // AF_MCTP
];

/// `socket` rules for sorted `domains`, as moby generates them: the run starting
/// at AF_UNIX becomes one `domain < end` rule (AF_UNSPEC 0 cannot be created),
/// every later domain one `domain == d` rule.
fn socket_rules(domains: &[u64]) -> Vec<Rule> {
    let mut rules = Vec::new();
    let mut rest = domains;
    if let [1, 2, ..] = domains {
        let run = domains
            .iter()
            .zip(1u64..)
            .take_while(|(d, expected)| *d == expected)
            .count();
        let end = domains[run - 1] + 1;
        rules.push(Rule::allow("socket").arg(0, end, LinuxSeccompOperator::ScmpCmpLt));
        rest = &domains[run..];
    }
    for &domain in rest {
        rules.push(Rule::allow("socket").arg(0, domain, LinuxSeccompOperator::ScmpCmpEq));
    }
    rules
}

/// The namespace flags of `clone(2)`: CLONE_NEWNS | CLONE_NEWCGROUP |
/// CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNET
/// (0x7e020000, moby's 2114060288).
const CLONE_NAMESPACE_FLAGS: u64 = (libc::CLONE_NEWNS
    | libc::CLONE_NEWCGROUP
    | libc::CLONE_NEWUTS
    | libc::CLONE_NEWIPC
    | libc::CLONE_NEWUSER
    | libc::CLONE_NEWPID
    | libc::CLONE_NEWNET) as u64;

/// moby's default profile, entry by entry, in its order.
fn default_rules() -> Vec<Rule> {
    use LinuxSeccompOperator::{ScmpCmpEq as Eq, ScmpCmpMaskedEq as MaskedEq};
    const SYS_ADMIN: &[&str] = &["CAP_SYS_ADMIN"];

    let mut rules = vec![
        Rule::allow(ALLOWED),
        Rule::allow("process_vm_readv process_vm_writev ptrace").min_kernel(4, 8),
    ];
    rules.extend(socket_rules(SOCKET_DOMAINS));
    // personality: PER_LINUX, PER_LINUX32, UNAME26, UNAME26|PER_LINUX32, and the query.
    for persona in [0x0, 0x0008, 0x20000, 0x20008, 0xffff_ffff] {
        rules.push(Rule::allow("personality").arg(0, persona, Eq));
    }
    rules.extend([
        Rule::allow("sync_file_range2 swapcontext").arches(&["ppc64le"]),
        Rule::allow(
            "arm_fadvise64_64 arm_sync_file_range sync_file_range2 breakpoint cacheflush set_tls",
        )
        .arches(&["arm", "arm64"]),
        Rule::allow("arch_prctl").arches(&["amd64", "x32"]),
        Rule::allow("modify_ldt").arches(&["amd64", "x32", "x86"]),
        Rule::allow("s390_pci_mmio_read s390_pci_mmio_write s390_runtime_instr")
            .arches(&["s390", "s390x"]),
        Rule::allow("riscv_flush_icache").arches(&["riscv64"]),
        Rule::allow("open_by_handle_at").caps(&["CAP_DAC_READ_SEARCH"]),
        Rule::allow(
            "bpf clone clone3 fanotify_init fsconfig fsmount fsopen fspick lookup_dcookie
             lsm_get_self_attr lsm_list_modules lsm_set_self_attr mount mount_setattr move_mount
             open_tree perf_event_open quotactl quotactl_fd setdomainname sethostname setns
             syslog umount umount2 unshare",
        )
        .caps(SYS_ADMIN),
        Rule::allow("clone")
            .arg(0, CLONE_NAMESPACE_FLAGS, MaskedEq)
            .unless_caps(SYS_ADMIN)
            .unless_arches(&["s390", "s390x"]),
        // s390 passes clone's flags as the second argument.
        Rule::allow("clone")
            .arg(1, CLONE_NAMESPACE_FLAGS, MaskedEq)
            .arches(&["s390", "s390x"])
            .unless_caps(SYS_ADMIN),
        // clone3's flags are behind a pointer: make libcs fall back to clone.
        Rule::errno("clone3", libc::ENOSYS).unless_caps(SYS_ADMIN),
        Rule::allow("reboot").caps(&["CAP_SYS_BOOT"]),
        Rule::allow("chroot").caps(&["CAP_SYS_CHROOT"]),
        Rule::allow("delete_module init_module finit_module").caps(&["CAP_SYS_MODULE"]),
        Rule::allow("acct").caps(&["CAP_SYS_PACCT"]),
        Rule::allow("kcmp pidfd_getfd process_madvise process_vm_readv process_vm_writev ptrace")
            .caps(&["CAP_SYS_PTRACE"]),
        Rule::allow("iopl ioperm").caps(&["CAP_SYS_RAWIO"]),
        Rule::allow("settimeofday stime clock_settime clock_settime64").caps(&["CAP_SYS_TIME"]),
        Rule::allow("vhangup").caps(&["CAP_SYS_TTY_CONFIG"]),
        Rule::allow("get_mempolicy mbind set_mempolicy set_mempolicy_home_node")
            .caps(&["CAP_SYS_NICE"]),
        Rule::allow("syslog").caps(&["CAP_SYSLOG"]),
        Rule::allow("bpf").caps(&["CAP_BPF"]),
        Rule::allow("perf_event_open").caps(&["CAP_PERFMON"]),
    ]);
    rules
}

/// The architectures moby's `archMap` gives the native architecture.
fn native_architectures() -> Vec<Arch> {
    if cfg!(target_arch = "aarch64") {
        vec![Arch::ScmpArchAarch64, Arch::ScmpArchArm]
    } else {
        vec![Arch::ScmpArchX86_64, Arch::ScmpArchX86, Arch::ScmpArchX32]
    }
}

/// The running kernel's `(major, minor)`, from `uname(2)`.
fn running_kernel() -> Option<KernelVersion> {
    // SAFETY: `utsname` is plain old data; all-zero is a valid value.
    let mut uts: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: `uts` is a valid, writable `utsname`.
    if unsafe { libc::uname(&mut uts) } != 0 {
        return None;
    }
    let release: Vec<u8> = uts
        .release
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect();
    parse_kernel_version(&String::from_utf8_lossy(&release))
}

/// Parses the leading `MAJOR.MINOR` of a kernel release (`"6.1.0-18-amd64"`).
fn parse_kernel_version(s: &str) -> Option<KernelVersion> {
    let mut parts = s.split('.');
    let major = parts.next()?.parse().ok()?;
    let minor: String = parts
        .next()?
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    Some((major, minor.parse().ok()?))
}

fn build(
    default_action: LinuxSeccompAction,
    default_errno_ret: Option<u32>,
    architectures: Vec<Arch>,
    rules: &[Rule],
    capabilities: &[String],
    kernel: Option<KernelVersion>,
) -> Result<LinuxSeccomp, SeccompError> {
    let mut profile = LinuxSeccomp::default();
    profile.set_default_action(default_action);
    profile.set_default_errno_ret(default_errno_ret);
    if !architectures.is_empty() {
        profile.set_architectures(Some(architectures));
    }
    let syscalls = rules
        .iter()
        .filter(|r| r.applies(capabilities, kernel))
        .map(Rule::to_oci)
        .collect::<Result<_, _>>()?;
    profile.set_syscalls(Some(syscalls));
    Ok(profile)
}

/// Docker's default seccomp profile for a container whose bounding capability set
/// is `capabilities` (names like `"CAP_SYS_ADMIN"`), on this architecture and the
/// running kernel. Compile it with [`super::compile`].
pub fn default_profile(capabilities: &[String]) -> LinuxSeccomp {
    default_profile_for(capabilities, running_kernel())
}

fn default_profile_for(capabilities: &[String], kernel: Option<KernelVersion>) -> LinuxSeccomp {
    let default_action = LinuxSeccompAction::ScmpActErrno;
    let eperm = Some(libc::EPERM as u32);
    build(
        default_action,
        eperm,
        native_architectures(),
        &default_rules(),
        capabilities,
        kernel,
    )
    // Building from the built-in rules cannot fail (the tests build it); should it
    // ever, fail closed: every syscall gets EPERM.
    .unwrap_or_else(|_| {
        let mut deny_all = LinuxSeccomp::default();
        deny_all.set_default_action(default_action);
        deny_all.set_default_errno_ret(eperm);
        deny_all
    })
}

// ---------------------------------------------------------------------------
// moby-format profile files.

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct JsonProfile {
    default_action: Option<String>,
    default_errno_ret: Option<u32>,
    architectures: Option<Vec<String>>,
    arch_map: Option<Vec<JsonArchMap>>,
    flags: Option<Vec<String>>,
    listener_path: Option<String>,
    listener_metadata: Option<String>,
    syscalls: Option<Vec<JsonSyscall>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct JsonArchMap {
    architecture: String,
    sub_architectures: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct JsonSyscall {
    name: Option<String>,
    names: Option<Vec<String>>,
    action: String,
    errno_ret: Option<u32>,
    args: Option<Vec<JsonArg>>,
    includes: Option<JsonFilter>,
    excludes: Option<JsonFilter>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct JsonArg {
    index: usize,
    value: u64,
    value_two: Option<u64>,
    op: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct JsonFilter {
    caps: Option<Vec<String>>,
    arches: Option<Vec<String>>,
    min_kernel: Option<String>,
}

fn parse_action(s: &str, location: &Location) -> Result<LinuxSeccompAction, SeccompError> {
    LinuxSeccompAction::from_str(s).map_err(|_| SeccompError::UnknownAction {
        action: s.to_string(),
        location: location.clone(),
    })
}

fn parse_arch(s: &str) -> Result<Arch, SeccompError> {
    Arch::from_str(s).map_err(|_| SeccompError::UnknownArch(s.to_string()))
}

fn parse_filter(filter: Option<JsonFilter>) -> Result<Filter, SeccompError> {
    let Some(filter) = filter else {
        return Ok(Filter::default());
    };
    let min_kernel = match filter.min_kernel {
        None => None,
        Some(s) => Some(
            parse_kernel_version(&s)
                .filter(|_| s.split('.').count() == 2)
                .ok_or(SeccompError::InvalidKernelVersion(s))?,
        ),
    };
    Ok(Filter {
        caps: filter.caps.unwrap_or_default(),
        arches: filter.arches.unwrap_or_default(),
        min_kernel,
    })
}

fn parse_rule(syscall: JsonSyscall) -> Result<Rule, SeccompError> {
    let names = match (syscall.name, syscall.names) {
        (Some(_), Some(names)) if !names.is_empty() => {
            return Err(SeccompError::InvalidProfile(format!(
                "syscall entry {:?} has both 'name' and 'names'",
                names[0]
            )))
        }
        (Some(name), _) => vec![name],
        (None, names) => names.unwrap_or_default(),
    };
    let location = Location::Syscall(names.first().cloned().unwrap_or_default());
    let action = parse_action(&syscall.action, &location)?;
    let args = syscall
        .args
        .unwrap_or_default()
        .into_iter()
        .map(|a| {
            let op = LinuxSeccompOperator::from_str(&a.op).map_err(|_| {
                SeccompError::UnknownOperator {
                    op: a.op.clone(),
                    location: location.clone(),
                }
            })?;
            Ok(Cond {
                index: a.index,
                value: a.value,
                value_two: a.value_two,
                op,
            })
        })
        .collect::<Result<Vec<_>, SeccompError>>()?;
    Ok(Rule {
        names,
        action,
        errno_ret: syscall.errno_ret,
        args,
        includes: parse_filter(syscall.includes)?,
        excludes: parse_filter(syscall.excludes)?,
    })
}

/// Reads a seccomp profile in moby's JSON format (what `docker run --security-opt
/// seccomp=FILE` takes; OCI `linux.seccomp` JSON is accepted too) and resolves its
/// `includes`/`excludes` for `capabilities` (the bounding set), the native
/// architecture and the running kernel. Unknown actions, operators, architectures
/// and flags are errors naming the bad value.
pub fn profile_from_json(
    json: &str,
    capabilities: &[String],
) -> Result<LinuxSeccomp, SeccompError> {
    profile_from_json_for(json, capabilities, running_kernel())
}

fn profile_from_json_for(
    json: &str,
    capabilities: &[String],
    kernel: Option<KernelVersion>,
) -> Result<LinuxSeccomp, SeccompError> {
    let profile: JsonProfile = serde_json::from_str(json)?;
    let Some(default_action) = profile.default_action.filter(|a| !a.is_empty()) else {
        return Err(SeccompError::InvalidProfile(
            "no defaultAction (use seccomp=unconfined to disable seccomp)".to_string(),
        ));
    };
    let default_action = parse_action(&default_action, &Location::DefaultAction)?;

    let architectures = profile.architectures.unwrap_or_default();
    let arch_map = profile.arch_map.unwrap_or_default();
    if !architectures.is_empty() && !arch_map.is_empty() {
        return Err(SeccompError::InvalidProfile(
            "both 'architectures' and 'archMap' are given; use one".to_string(),
        ));
    }
    let mut arches = architectures
        .iter()
        .map(|a| parse_arch(a))
        .collect::<Result<Vec<_>, _>>()?;
    let native = native_architectures().first().copied();
    for entry in &arch_map {
        let arch = parse_arch(&entry.architecture)?;
        let subs = entry
            .sub_architectures
            .iter()
            .flatten()
            .map(|a| parse_arch(a))
            .collect::<Result<Vec<_>, _>>()?;
        if Some(arch) == native {
            arches.push(arch);
            arches.extend(subs);
        }
    }

    let flags = profile
        .flags
        .unwrap_or_default()
        .iter()
        .map(|f| {
            LinuxSeccompFilterFlag::from_str(f).map_err(|_| SeccompError::UnknownFlag(f.clone()))
        })
        .collect::<Result<Vec<_>, _>>()?;

    let rules = profile
        .syscalls
        .unwrap_or_default()
        .into_iter()
        .map(parse_rule)
        .collect::<Result<Vec<_>, _>>()?;

    let mut out = build(
        default_action,
        profile.default_errno_ret,
        arches,
        &rules,
        capabilities,
        kernel,
    )?;
    if !flags.is_empty() {
        out.set_flags(Some(flags));
    }
    out.set_listener_path(profile.listener_path.map(Into::into));
    out.set_listener_metadata(profile.listener_metadata);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caps(names: &[&str]) -> Vec<String> {
        strings(names)
    }

    /// The rules (names, action, errno, args) a profile ends up with for `name`.
    fn rules_for(profile: &LinuxSeccomp, name: &str) -> Vec<LinuxSyscall> {
        profile
            .syscalls()
            .iter()
            .flatten()
            .filter(|s| s.names().iter().any(|n| n == name))
            .cloned()
            .collect()
    }

    #[test]
    fn constants_match_moby() {
        assert_eq!(CLONE_NAMESPACE_FLAGS, 2_114_060_288);
        let rules = socket_rules(SOCKET_DOMAINS);
        let first = &rules[0].args[0];
        assert_eq!(
            (first.value, first.op),
            (12, LinuxSeccompOperator::ScmpCmpLt)
        );
        let eq: Vec<u64> = rules[1..].iter().map(|r| r.args[0].value).collect();
        let want = [
            13, 14, 15, 16, 17, 18, 21, 22, 24, 26, 27, 28, 29, 30, 31, 32, 33, 35, 36, 39, 41, 42,
            43, 44, 45,
        ];
        assert_eq!(eq, want);
        assert!(rules[1..]
            .iter()
            .all(|r| r.args[0].op == LinuxSeccompOperator::ScmpCmpEq));
        let allowed: Vec<&str> = ALLOWED.split_whitespace().collect();
        assert_eq!(allowed.len(), 361);
        for blocked in [
            "keyctl",
            "add_key",
            "request_key",
            "bpf",
            "userfaultfd",
            "unshare",
        ] {
            assert!(!allowed.contains(&blocked), "{blocked}");
        }
    }

    #[test]
    fn capabilities_select_rules() {
        let none = default_profile_for(&[], Some((6, 1)));
        assert_eq!(none.default_action(), LinuxSeccompAction::ScmpActErrno);
        assert_eq!(none.default_errno_ret(), Some(libc::EPERM as u32));
        let clone = rules_for(&none, "clone");
        assert_eq!(clone.len(), 1, "{clone:?}");
        assert_eq!(clone[0].args().as_ref().map(|a| a[0].index()), Some(0));
        let clone3 = rules_for(&none, "clone3");
        assert_eq!(clone3.len(), 1);
        assert_eq!(clone3[0].action(), LinuxSeccompAction::ScmpActErrno);
        assert_eq!(clone3[0].errno_ret(), Some(libc::ENOSYS as u32));
        assert!(rules_for(&none, "bpf").is_empty());
        assert!(rules_for(&none, "chroot").is_empty());
        assert!(!rules_for(&none, "arch_prctl").is_empty() || cfg!(target_arch = "aarch64"));
        assert!(rules_for(&none, "riscv_flush_icache").is_empty());
        assert!(rules_for(&none, "s390_runtime_instr").is_empty());

        let admin = default_profile_for(&caps(&["CAP_SYS_ADMIN"]), Some((6, 1)));
        let clone = rules_for(&admin, "clone");
        assert_eq!(clone.len(), 1);
        assert!(clone[0].args().is_none());
        assert!(rules_for(&admin, "clone3")
            .iter()
            .all(|r| r.action() == LinuxSeccompAction::ScmpActAllow));
        assert_eq!(rules_for(&admin, "bpf").len(), 1);

        let some = default_profile_for(&caps(&["CAP_SYS_CHROOT", "CAP_BPF"]), Some((6, 1)));
        assert_eq!(rules_for(&some, "chroot").len(), 1);
        assert_eq!(rules_for(&some, "bpf").len(), 1);
        assert!(rules_for(&some, "perf_event_open").is_empty());
    }

    #[test]
    fn min_kernel_gates_ptrace() {
        let has_ptrace = |k| !rules_for(&default_profile_for(&[], k), "ptrace").is_empty();
        assert!(has_ptrace(Some((4, 8))));
        assert!(has_ptrace(Some((6, 1))));
        assert!(!has_ptrace(Some((4, 7))));
        assert!(!has_ptrace(None));
        assert!(!rules_for(
            &default_profile_for(&caps(&["CAP_SYS_PTRACE"]), Some((4, 7))),
            "ptrace"
        )
        .is_empty());
        assert_eq!(parse_kernel_version("6.1.0-18-amd64"), Some((6, 1)));
        assert_eq!(parse_kernel_version("5.15"), Some((5, 15)));
        assert_eq!(parse_kernel_version("6.18.44-fc-v657"), Some((6, 18)));
        assert_eq!(parse_kernel_version("6"), None);
        assert!(running_kernel().is_some());
    }

    #[test]
    fn reads_moby_format() {
        let json = r#"{
            "defaultAction": "SCMP_ACT_ERRNO",
            "defaultErrnoRet": 1,
            "archMap": [
                {"architecture": "SCMP_ARCH_X86_64",
                 "subArchitectures": ["SCMP_ARCH_X86", "SCMP_ARCH_X32"]},
                {"architecture": "SCMP_ARCH_AARCH64", "subArchitectures": ["SCMP_ARCH_ARM"]},
                {"architecture": "SCMP_ARCH_RISCV64", "subArchitectures": null}
            ],
            "flags": ["SECCOMP_FILTER_FLAG_LOG"],
            "syscalls": [
                {"names": ["read", "write"], "action": "SCMP_ACT_ALLOW", "comment": "io"},
                {"name": "getpid", "action": "SCMP_ACT_ALLOW"},
                {"names": ["ptrace"], "action": "SCMP_ACT_ALLOW",
                 "includes": {"minKernel": "4.8"}},
                {"names": ["mount"], "action": "SCMP_ACT_ALLOW",
                 "includes": {"caps": ["CAP_SYS_ADMIN"]}},
                {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
                 "args": [{"index": 0, "value": 8, "valueTwo": 0, "op": "SCMP_CMP_EQ"}],
                 "excludes": {"caps": ["CAP_SYS_ADMIN"]}},
                {"names": ["arch_prctl"], "action": "SCMP_ACT_ALLOW",
                 "includes": {"arches": ["amd64"]}},
                {"names": ["set_tls"], "action": "SCMP_ACT_ALLOW",
                 "includes": {"arches": ["arm64"]}},
                {"names": ["sync"], "action": "SCMP_ACT_ALLOW",
                 "excludes": {"minKernel": "5.0"}}
            ]
        }"#;
        let p = profile_from_json_for(json, &[], Some((6, 1))).unwrap();
        let names: Vec<&str> = p
            .syscalls()
            .iter()
            .flatten()
            .flat_map(|s| s.names().iter().map(String::as_str))
            .collect();
        let native = if cfg!(target_arch = "aarch64") {
            "set_tls"
        } else {
            "arch_prctl"
        };
        assert_eq!(
            names,
            ["read", "write", "getpid", "ptrace", "personality", native]
        );
        assert_eq!(
            p.flags(),
            &Some(vec![LinuxSeccompFilterFlag::SeccompFilterFlagLog])
        );
        assert_eq!(
            p.architectures().as_ref().map(Vec::len),
            Some(if cfg!(target_arch = "aarch64") { 2 } else { 3 })
        );
        let args = rules_for(&p, "personality")[0].args().clone().unwrap();
        assert_eq!((args[0].value(), args[0].value_two()), (8, Some(0)));
        let admin = profile_from_json_for(json, &caps(&["CAP_SYS_ADMIN"]), Some((4, 4))).unwrap();
        assert!(rules_for(&admin, "personality").is_empty());
        assert!(rules_for(&admin, "ptrace").is_empty());
        assert_eq!(rules_for(&admin, "mount").len(), 1);
        assert_eq!(rules_for(&admin, "sync").len(), 1);
        // The compiler accepts the result.
        assert!(super::super::compile(&p).is_ok());

        // An OCI linux.seccomp object is accepted as it is.
        let oci = r#"{"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64"],
                      "syscalls": [{"names": ["keyctl"], "action": "SCMP_ACT_ERRNO",
                                    "errnoRet": 38}]}"#;
        let p = profile_from_json(oci, &[]).unwrap();
        assert_eq!(p.architectures(), &Some(vec![Arch::ScmpArchX86_64]));
        assert_eq!(rules_for(&p, "keyctl")[0].errno_ret(), Some(38));
    }

    #[test]
    fn bad_profiles_are_clear_errors() {
        let err = |json: &str| profile_from_json_for(json, &[], Some((6, 1))).unwrap_err();
        let e = err(r#"{"defaultAction": "SCMP_ACT_ERRNO",
                        "syscalls": [{"names": ["read"], "action": "SCMP_ACT_FOO"}]}"#);
        assert_eq!(
            e.to_string(),
            r#"unknown seccomp action "SCMP_ACT_FOO" for syscall "read""#
        );
        let e = err(r#"{"defaultAction": "SCMP_ACT_BAR"}"#);
        assert_eq!(
            e.to_string(),
            r#"unknown seccomp action "SCMP_ACT_BAR" for defaultAction"#
        );
        let e = err(
            r#"{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read"],
                        "action": "SCMP_ACT_ALLOW",
                        "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_SORTA"}]}]}"#,
        );
        assert_eq!(
            e.to_string(),
            r#"unknown seccomp operator "SCMP_CMP_SORTA" for syscall "read""#
        );
        let e = err(r#"{"defaultAction": "SCMP_ACT_ERRNO", "architectures": ["SCMP_ARCH_Z80"]}"#);
        assert_eq!(
            e.to_string(),
            r#"unknown seccomp architecture "SCMP_ARCH_Z80""#
        );
        let e =
            err(r#"{"defaultAction": "SCMP_ACT_ERRNO", "flags": ["SECCOMP_FILTER_FLAG_NOPE"]}"#);
        assert_eq!(
            e.to_string(),
            r#"unknown seccomp flag "SECCOMP_FILTER_FLAG_NOPE""#
        );
        let e = err(
            r#"{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read"],
                        "action": "SCMP_ACT_ALLOW", "includes": {"minKernel": "four"}}]}"#,
        );
        assert!(
            matches!(e, SeccompError::InvalidKernelVersion(ref v) if v == "four"),
            "{e}"
        );
        let e = err(
            r#"{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read"],
                        "action": "SCMP_ACT_ALLOW", "includes": {"minKernel": "4.8.1"}}]}"#,
        );
        assert!(matches!(e, SeccompError::InvalidKernelVersion(_)), "{e}");
        let e = err(
            r#"{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"name": "read",
                        "names": ["write"], "action": "SCMP_ACT_ALLOW"}]}"#,
        );
        assert!(e.to_string().contains("both 'name' and 'names'"), "{e}");
        let e = err(
            r#"{"defaultAction": "SCMP_ACT_ERRNO", "architectures": ["SCMP_ARCH_X86"],
                        "archMap": [{"architecture": "SCMP_ARCH_X86_64"}]}"#,
        );
        assert!(e.to_string().contains("archMap"), "{e}");
        let e = err(r#"{"syscalls": []}"#);
        assert!(e.to_string().contains("defaultAction"), "{e}");
        let e = err(r#"{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read"]}]}"#);
        assert!(matches!(e, SeccompError::Json(_)), "{e}");
        assert!(e.to_string().contains("action"), "{e}");
        let e = err("{not json");
        assert!(matches!(e, SeccompError::Json(_)), "{e}");
    }
}

//! Seccomp: compile OCI seccomp profiles to classic BPF, pure Rust (no libseccomp).
//!
//! * [`compile`] turns an [`oci_spec::runtime::LinuxSeccomp`] into a `sock_filter` program.
//! * [`default_profile()`] is Docker/moby's default profile for a capability set;
//!   [`profile_from_json`] reads a profile in moby's format (`docker run
//!   --security-opt seccomp=profile.json`), which is also a superset of the OCI format.
//! * [`install`] loads a program; it is async-signal-safe, for use between fork and exec.
//!
//! # Semantics (what runc + libseccomp do, and where this differs)
//!
//! * `defaultAction` (+ `defaultErrnoRet`) applies to every syscall no rule matches.
//!   `SCMP_ACT_ERRNO` without an errno returns `EPERM`, as does `SCMP_ACT_TRACE`
//!   without one (runc's choice). `SCMP_ACT_KILL` is `SCMP_ACT_KILL_THREAD`.
//!   `SCMP_ACT_NOTIFY` is rejected ([`SeccompError::UnsupportedAction`]).
//! * Each `syscalls[]` entry is one rule for each of its `names`; its `args` are ANDed
//!   (runc turns a rule naming the same argument index twice into several ORed rules;
//!   we AND them, which is what the profile says). Arguments are compared as full
//!   64-bit values (high and low 32-bit words), unsigned, like libseccomp on 64-bit
//!   arches; `SCMP_CMP_MASKED_EQ` is `(arg & value) == valueTwo`.
//! * Several rules for one syscall: the first matching rule, in profile order, wins.
//!   (libseccomp merges rules into a tree instead; the results only differ for
//!   profiles whose rules for one syscall overlap with different actions.)
//!   A rule whose action equals the default action is skipped, as runc does.
//! * Syscall names unknown on this architecture are skipped (Docker's profile names
//!   32-bit and other-arch syscalls). An empty name is an error.
//! * Like runc's `-ENOSYS` patch, when the default action is not an "allow" action
//!   (`ALLOW`, `LOG`, `TRACE`), a native syscall with a number above every syscall the
//!   profile names returns `ENOSYS`, so newer libcs fall back from syscalls the
//!   profile predates.
//! * Architectures: the native one (x86_64 or aarch64) is always filtered. Syscalls of
//!   the compat architectures the profile lists (`SCMP_ARCH_X86` and `SCMP_ARCH_X32` on
//!   x86_64, `SCMP_ARCH_ARM` on aarch64) are *not* translated: they get the default
//!   action (so under Docker's profile 32-bit and x32 programs fail with `EPERM`).
//!   Syscalls of unlisted architectures, and x32 syscalls (`nr & 0x40000000`) when x32
//!   is unlisted, kill the process (libseccomp's "bad arch" action kills the thread;
//!   killing the process is the stricter choice). `nr == -1` (a tracer skipping a
//!   syscall) gets the default action.
//! * Program layout: a linear chain. Unconditional rules with the same action share one
//!   `ret` per group of up to 200 syscalls; syscalls with argument rules get a
//!   block each. Any conditional jump that would exceed the 8-bit offset of classic BPF
//!   is rewritten as an inverted test plus `BPF_JA` (32-bit offset), so programs of any
//!   length up to the kernel's 4096 instructions are correct. The kernel's seccomp
//!   action cache (Linux 5.11+) makes constant-ALLOW syscalls free regardless.

mod default_profile;
mod syscalls;

pub use default_profile::{default_profile, profile_from_json};
pub use syscalls::{known_syscalls, syscall_number};

use std::collections::BTreeMap;
use std::fmt;

use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompFilterFlag,
    LinuxSeccompOperator,
};

/// Largest number of syscalls sharing one `ret` in an unconditional group, small
/// enough that every jump of the group fits the 8-bit offset.
const GROUP: usize = 200;

/// `offsetof(struct seccomp_data, nr)`.
const OFF_NR: u32 = 0;
/// `offsetof(struct seccomp_data, arch)`.
const OFF_ARCH: u32 = 4;
/// `offsetof(struct seccomp_data, args)`.
const OFF_ARGS: u32 = 16;
/// Linux syscalls take at most 6 arguments.
const MAX_ARGS: usize = 6;
/// Largest errno the kernel passes through (`MAX_ERRNO`).
const MAX_ERRNO: u32 = 4095;
/// Action for syscalls of an architecture the profile does not list.
const RET_BAD_ARCH: u32 = libc::SECCOMP_RET_KILL_PROCESS;

/// Where in a profile an error was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// The profile's `defaultAction`.
    DefaultAction,
    /// A `syscalls[]` entry, named by its first syscall name.
    Syscall(String),
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::DefaultAction => f.write_str("defaultAction"),
            Location::Syscall(name) => write!(f, "syscall {name:?}"),
        }
    }
}

/// Errors from compiling or parsing a seccomp profile.
#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    /// An action string that is not a libseccomp action.
    #[error("unknown seccomp action {action:?} for {location}")]
    UnknownAction { action: String, location: Location },
    /// An action rootbox cannot implement (`SCMP_ACT_NOTIFY`).
    #[error("seccomp action {action} for {location} is not supported by rootbox")]
    UnsupportedAction { action: String, location: Location },
    /// An operator string that is not a libseccomp comparison.
    #[error("unknown seccomp operator {op:?} for {location}")]
    UnknownOperator { op: String, location: Location },
    /// An argument index outside 0..=5.
    #[error("seccomp argument index {index} for {location} is out of range (0-5)")]
    ArgIndex { index: usize, location: Location },
    /// An `errnoRet` the kernel cannot return.
    #[error("seccomp errnoRet {value} for {location} is out of range (at most {max})")]
    ErrnoRange {
        value: u32,
        max: u32,
        location: Location,
    },
    /// A rule with an empty syscall name.
    #[error("seccomp rule has an empty syscall name")]
    EmptySyscallName,
    /// An architecture string that is not a libseccomp architecture.
    #[error("unknown seccomp architecture {0:?}")]
    UnknownArch(String),
    /// A flag string that is not a seccomp filter flag.
    #[error("unknown seccomp flag {0:?}")]
    UnknownFlag(String),
    /// A `minKernel` that is not `MAJOR.MINOR`.
    #[error("invalid minKernel {0:?} in seccomp profile (expected MAJOR.MINOR, e.g. \"4.8\")")]
    InvalidKernelVersion(String),
    /// A profile-level inconsistency (both `name` and `names`, no `defaultAction`, ...).
    #[error("invalid seccomp profile: {0}")]
    InvalidProfile(String),
    /// The profile is not valid JSON, or a field has the wrong type.
    #[error("invalid seccomp profile JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// The compiled program exceeds the kernel's limit.
    #[error("seccomp program has {len} instructions, more than the kernel's limit of {max}")]
    ProgramTooLong { len: usize, max: usize },
    /// This build has no syscall table for the CPU architecture.
    #[error("seccomp filtering is not supported on the {0} architecture")]
    UnsupportedArchitecture(&'static str),
}

/// The kernel return value (`SECCOMP_RET_*` | data) for an action.
fn action_value(
    action: LinuxSeccompAction,
    errno_ret: Option<u32>,
    location: &Location,
) -> Result<u32, SeccompError> {
    let data = |max: u32| match errno_ret {
        None => Ok(libc::EPERM as u32),
        Some(value) if value <= max => Ok(value),
        Some(value) => Err(SeccompError::ErrnoRange {
            value,
            max,
            location: location.clone(),
        }),
    };
    Ok(match action {
        LinuxSeccompAction::ScmpActKill | LinuxSeccompAction::ScmpActKillThread => {
            libc::SECCOMP_RET_KILL_THREAD
        }
        LinuxSeccompAction::ScmpActKillProcess => libc::SECCOMP_RET_KILL_PROCESS,
        LinuxSeccompAction::ScmpActTrap => libc::SECCOMP_RET_TRAP,
        LinuxSeccompAction::ScmpActErrno => libc::SECCOMP_RET_ERRNO | data(MAX_ERRNO)?,
        LinuxSeccompAction::ScmpActTrace => libc::SECCOMP_RET_TRACE | data(0xffff)?,
        LinuxSeccompAction::ScmpActLog => libc::SECCOMP_RET_LOG,
        LinuxSeccompAction::ScmpActAllow => libc::SECCOMP_RET_ALLOW,
        LinuxSeccompAction::ScmpActNotify => {
            return Err(SeccompError::UnsupportedAction {
                action: action.to_string(),
                location: location.clone(),
            })
        }
    })
}

/// Whether runc's `-ENOSYS` stub applies (the default action denies).
fn is_allow_action(action: LinuxSeccompAction) -> bool {
    matches!(
        action,
        LinuxSeccompAction::ScmpActAllow
            | LinuxSeccompAction::ScmpActLog
            | LinuxSeccompAction::ScmpActTrace
    )
}

/// The `seccomp(2)` flags a profile asks for (`SECCOMP_FILTER_FLAG_*`), for [`install`].
///
/// `SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV` is dropped: it is only valid with a
/// user-notification listener, which rootbox does not create.
pub fn filter_flags(profile: &LinuxSeccomp) -> u32 {
    let mut flags = 0;
    for flag in profile.flags().iter().flatten() {
        flags |= match flag {
            LinuxSeccompFilterFlag::SeccompFilterFlagLog => libc::SECCOMP_FILTER_FLAG_LOG,
            LinuxSeccompFilterFlag::SeccompFilterFlagTsync => libc::SECCOMP_FILTER_FLAG_TSYNC,
            LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow => {
                libc::SECCOMP_FILTER_FLAG_SPEC_ALLOW
            }
            LinuxSeccompFilterFlag::SeccompFilterFlagWaitKillableRecv => 0,
        } as u32;
    }
    flags
}

// ---------------------------------------------------------------------------
// A tiny assembler with forward labels and automatic long jumps.

type Label = usize;

#[derive(Debug, Clone, Copy)]
enum Insn {
    /// A non-jump instruction.
    Stmt { code: u16, k: u32 },
    /// `if ((A <code> k) == when) goto target;` otherwise fall through.
    Jump {
        code: u16,
        k: u32,
        when: bool,
        target: Label,
    },
    /// Marks a position; emits nothing. Every label is marked after its uses.
    Mark(Label),
}

#[derive(Default)]
struct Asm {
    insns: Vec<Insn>,
    labels: usize,
}

const LD_W_ABS: u16 = (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16;
const RET_K: u16 = (libc::BPF_RET | libc::BPF_K) as u16;
const AND_K: u16 = (libc::BPF_ALU | libc::BPF_AND | libc::BPF_K) as u16;
const JEQ_K: u16 = (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16;
const JGT_K: u16 = (libc::BPF_JMP | libc::BPF_JGT | libc::BPF_K) as u16;
const JGE_K: u16 = (libc::BPF_JMP | libc::BPF_JGE | libc::BPF_K) as u16;
const JA: u16 = (libc::BPF_JMP | libc::BPF_JA) as u16;

impl Asm {
    fn label(&mut self) -> Label {
        self.labels += 1;
        self.labels - 1
    }
    fn mark(&mut self, label: Label) {
        self.insns.push(Insn::Mark(label));
    }
    fn load(&mut self, offset: u32) {
        self.insns.push(Insn::Stmt {
            code: LD_W_ABS,
            k: offset,
        });
    }
    fn ret(&mut self, value: u32) {
        self.insns.push(Insn::Stmt {
            code: RET_K,
            k: value,
        });
    }
    fn and(&mut self, mask: u32) {
        self.insns.push(Insn::Stmt {
            code: AND_K,
            k: mask,
        });
    }
    /// `if (A <op> k) goto target;`
    fn jump_if(&mut self, code: u16, k: u32, target: Label) {
        self.insns.push(Insn::Jump {
            code,
            k,
            when: true,
            target,
        });
    }
    /// `if !(A <op> k) goto target;`
    fn jump_unless(&mut self, code: u16, k: u32, target: Label) {
        self.insns.push(Insn::Jump {
            code,
            k,
            when: false,
            target,
        });
    }

    /// Lays the program out. A conditional jump whose target is more than 255
    /// instructions ahead becomes an inverted test skipping a `BPF_JA` (32-bit
    /// offset) to the target; layout is redone until no short jump overflows
    /// (jumps only ever turn long, so this terminates).
    fn finish(self) -> Result<Vec<libc::sock_filter>, SeccompError> {
        let max = libc::BPF_MAXINSNS as usize;
        let mut long = vec![false; self.insns.len()];
        let (at, pos, len) = loop {
            // at[i]: address of insn i; pos[l]: address of label l.
            let mut at = Vec::with_capacity(self.insns.len());
            let mut pos = vec![0usize; self.labels];
            let mut len = 0usize;
            for (i, insn) in self.insns.iter().enumerate() {
                at.push(len);
                len += match insn {
                    Insn::Mark(label) => {
                        pos[*label] = len;
                        0
                    }
                    Insn::Jump { .. } if long[i] => 2,
                    _ => 1,
                };
            }
            let mut changed = false;
            for (i, insn) in self.insns.iter().enumerate() {
                if let Insn::Jump { target, .. } = insn {
                    debug_assert!(pos[*target] > at[i], "backward jump");
                    if !long[i] && pos[*target].saturating_sub(at[i] + 1) > 255 {
                        long[i] = true;
                        changed = true;
                    }
                }
            }
            if !changed {
                break (at, pos, len);
            }
        };
        if len > max {
            return Err(SeccompError::ProgramTooLong { len, max });
        }

        let filter = |code, jt, jf, k| libc::sock_filter { code, jt, jf, k };
        // The offsets were checked above (short ones fit in 8 bits, long ones
        // are below BPF_MAXINSNS); saturate instead of panicking all the same.
        let offset = |from: usize, to: usize| to.saturating_sub(from + 1);
        let mut out = Vec::with_capacity(len);
        for (i, insn) in self.insns.iter().enumerate() {
            match *insn {
                Insn::Mark(_) => {}
                Insn::Stmt { code, k } => out.push(filter(code, 0, 0, k)),
                Insn::Jump {
                    code,
                    k,
                    when,
                    target,
                } => {
                    if long[i] {
                        // Skip the BPF_JA when the jump is not taken.
                        let (jt, jf) = if when { (0, 1) } else { (1, 0) };
                        out.push(filter(code, jt, jf, k));
                        let far = u32::try_from(offset(at[i] + 1, pos[target]));
                        out.push(filter(JA, 0, 0, far.unwrap_or(u32::MAX)));
                    } else {
                        let near = u8::try_from(offset(at[i], pos[target])).unwrap_or(u8::MAX);
                        let (jt, jf) = if when { (near, 0) } else { (0, near) };
                        out.push(filter(code, jt, jf, k));
                    }
                }
            }
        }
        Ok(out)
    }
}

// ---------------------------------------------------------------------------
// Compilation.

/// One rule for one syscall, resolved.
#[derive(Debug, Clone)]
struct Rule {
    ret: u32,
    args: Vec<LinuxSeccompArg>,
}

fn hi(v: u64) -> u32 {
    (v >> 32) as u32
}
fn lo(v: u64) -> u32 {
    v as u32
}

/// Offsets of the high and low 32-bit words of syscall argument `index`.
fn arg_offsets(index: usize) -> (u32, u32) {
    let base = OFF_ARGS + 8 * index as u32;
    if cfg!(target_endian = "little") {
        (base + 4, base)
    } else {
        (base, base + 4)
    }
}

/// Emits the test of one argument condition: falls through when it holds, jumps
/// to `fail` when it does not.
fn emit_condition(asm: &mut Asm, arg: &LinuxSeccompArg, fail: Label) {
    let (off_hi, off_lo) = arg_offsets(arg.index());
    let value = arg.value();
    let pass = asm.label();
    match arg.op() {
        LinuxSeccompOperator::ScmpCmpEq => {
            asm.load(off_hi);
            asm.jump_unless(JEQ_K, hi(value), fail);
            asm.load(off_lo);
            asm.jump_unless(JEQ_K, lo(value), fail);
        }
        LinuxSeccompOperator::ScmpCmpNe => {
            asm.load(off_hi);
            asm.jump_unless(JEQ_K, hi(value), pass);
            asm.load(off_lo);
            asm.jump_if(JEQ_K, lo(value), fail);
        }
        LinuxSeccompOperator::ScmpCmpMaskedEq => {
            let datum = arg.value_two().unwrap_or(0);
            asm.load(off_hi);
            asm.and(hi(value));
            asm.jump_unless(JEQ_K, hi(datum), fail);
            asm.load(off_lo);
            asm.and(lo(value));
            asm.jump_unless(JEQ_K, lo(datum), fail);
        }
        // arg > v  <=>  hi > hi(v)  ||  (hi == hi(v) && lo > lo(v)); likewise >=.
        op @ (LinuxSeccompOperator::ScmpCmpGt | LinuxSeccompOperator::ScmpCmpGe) => {
            let code = if op == LinuxSeccompOperator::ScmpCmpGt {
                JGT_K
            } else {
                JGE_K
            };
            asm.load(off_hi);
            asm.jump_if(JGT_K, hi(value), pass);
            asm.jump_unless(JEQ_K, hi(value), fail);
            asm.load(off_lo);
            asm.jump_unless(code, lo(value), fail);
        }
        // arg < v  <=>  !(arg >= v); arg <= v  <=>  !(arg > v).
        op @ (LinuxSeccompOperator::ScmpCmpLt | LinuxSeccompOperator::ScmpCmpLe) => {
            let code = if op == LinuxSeccompOperator::ScmpCmpLt {
                JGE_K
            } else {
                JGT_K
            };
            asm.load(off_hi);
            asm.jump_if(JGT_K, hi(value), fail);
            asm.jump_unless(JEQ_K, hi(value), pass);
            asm.load(off_lo);
            asm.jump_if(code, lo(value), fail);
        }
    }
    asm.mark(pass);
}

/// Compiles an OCI seccomp profile to a classic BPF program for [`install`].
/// See the module documentation for the exact semantics.
pub fn compile(profile: &LinuxSeccomp) -> Result<Vec<libc::sock_filter>, SeccompError> {
    if !syscalls::SUPPORTED {
        return Err(SeccompError::UnsupportedArchitecture(
            std::env::consts::ARCH,
        ));
    }
    let default_action = profile.default_action();
    let default_ret = action_value(
        default_action,
        profile.default_errno_ret(),
        &Location::DefaultAction,
    )?;

    let native_is_x86_64 = syscalls::NATIVE_AUDIT_ARCH == 0xc000_003e;
    let (mut compat_listed, mut x32_listed) = (false, false);
    for arch in profile.architectures().iter().flatten() {
        match arch {
            Arch::ScmpArchX86 if native_is_x86_64 => compat_listed = true,
            Arch::ScmpArchX32 if native_is_x86_64 => x32_listed = true,
            Arch::ScmpArchArm if !native_is_x86_64 => compat_listed = true,
            _ => {}
        }
    }
    let compat_audit_arch = if native_is_x86_64 {
        syscalls::AUDIT_ARCH_I386
    } else {
        syscalls::AUDIT_ARCH_ARM
    };

    // Resolve rules per syscall number, in profile order.
    let mut rules: BTreeMap<u32, Vec<Rule>> = BTreeMap::new();
    let mut max_nr: Option<u32> = None;
    for syscall in profile.syscalls().iter().flatten() {
        let location = Location::Syscall(syscall.names().first().cloned().unwrap_or_default());
        let ret = action_value(syscall.action(), syscall.errno_ret(), &location)?;
        let args = syscall.args().clone().unwrap_or_default();
        if let Some(arg) = args.iter().find(|a| a.index() >= MAX_ARGS) {
            return Err(SeccompError::ArgIndex {
                index: arg.index(),
                location,
            });
        }
        for name in syscall.names() {
            if name.is_empty() {
                return Err(SeccompError::EmptySyscallName);
            }
            let Some(nr) = syscall_number(name).and_then(|nr| u32::try_from(nr).ok()) else {
                continue; // not a syscall on this architecture
            };
            max_nr = max_nr.max(Some(nr));
            if ret == default_ret {
                continue; // redundant, as runc skips it
            }
            rules.entry(nr).or_default().push(Rule {
                ret,
                args: args.clone(),
            });
        }
    }

    let mut asm = Asm::default();

    // Architecture.
    let native = asm.label();
    asm.load(OFF_ARCH);
    asm.jump_if(JEQ_K, syscalls::NATIVE_AUDIT_ARCH, native);
    if compat_listed {
        let bad = asm.label();
        asm.jump_unless(JEQ_K, compat_audit_arch, bad);
        asm.ret(default_ret);
        asm.mark(bad);
    }
    asm.ret(RET_BAD_ARCH);
    asm.mark(native);
    asm.load(OFF_NR);

    // x32 syscalls (and nr == -1) on x86_64.
    if native_is_x86_64 {
        let not_x32 = asm.label();
        asm.jump_unless(JGE_K, syscalls::X32_SYSCALL_BIT, not_x32);
        if !x32_listed {
            let bad = asm.label();
            asm.jump_unless(JEQ_K, u32::MAX, bad);
            asm.ret(default_ret);
            asm.mark(bad);
            asm.ret(RET_BAD_ARCH);
        } else {
            asm.ret(default_ret);
        }
        asm.mark(not_x32);
    }

    // runc's -ENOSYS for syscalls newer than the profile.
    if let Some(max_nr) = max_nr {
        if !is_allow_action(default_action)
            && default_ret != libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32
        {
            let known = asm.label();
            asm.jump_unless(JGT_K, max_nr, known);
            asm.ret(libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32);
            asm.mark(known);
        }
    }

    // Syscalls whose first rule is unconditional: grouped by action.
    let mut unconditional: BTreeMap<u32, Vec<u32>> = BTreeMap::new();
    let mut conditional: Vec<(u32, &[Rule])> = Vec::new();
    for (&nr, list) in &rules {
        match list.first() {
            Some(rule) if rule.args.is_empty() => {
                unconditional.entry(rule.ret).or_default().push(nr)
            }
            Some(_) => conditional.push((nr, list)),
            None => {}
        }
    }
    // ALLOW first: it is by far the largest group.
    let mut groups: Vec<(u32, Vec<u32>)> = unconditional.into_iter().collect();
    groups.sort_by_key(|(ret, _)| *ret != libc::SECCOMP_RET_ALLOW);
    for (ret, nrs) in &groups {
        for chunk in nrs.chunks(GROUP) {
            let Some((last, rest)) = chunk.split_last() else {
                continue;
            };
            let (hit, miss) = (asm.label(), asm.label());
            for &nr in rest {
                asm.jump_if(JEQ_K, nr, hit);
            }
            asm.jump_unless(JEQ_K, *last, miss);
            asm.mark(hit);
            asm.ret(*ret);
            asm.mark(miss);
        }
    }

    // Syscalls with argument rules: one block each, rules in profile order.
    for (nr, list) in conditional {
        let next_block = asm.label();
        asm.jump_unless(JEQ_K, nr, next_block);
        let mut terminated = false;
        for rule in list {
            if rule.args.is_empty() {
                asm.ret(rule.ret);
                terminated = true;
                break; // later rules for this syscall are unreachable
            }
            let next_rule = asm.label();
            for arg in &rule.args {
                emit_condition(&mut asm, arg, next_rule);
            }
            asm.ret(rule.ret);
            asm.mark(next_rule);
        }
        if !terminated {
            asm.ret(default_ret);
        }
        asm.mark(next_block);
        // A block leaves A holding an argument only on paths that return, so
        // the next block still sees the syscall number.
    }

    asm.ret(default_ret);
    asm.finish()
}

/// Loads `prog` as a seccomp filter on the calling thread:
/// `seccomp(SECCOMP_SET_MODE_FILTER, flags, &prog)`. Returns the errno on failure.
///
/// The caller must have set `no_new_privs` (`prctl(PR_SET_NO_NEW_PRIVS, 1)`) or hold
/// `CAP_SYS_ADMIN` in its user namespace. With `SECCOMP_FILTER_FLAG_TSYNC`, a failure
/// to synchronise another thread is reported as `ESRCH`.
///
/// # Safety
/// Async-signal-safe: it does not allocate or take locks, so it may run in a child
/// between `fork` and `exec`. The caller must make sure the filter does not forbid
/// the syscalls it still needs before `execve` (the caller's own code, not this
/// function, is what makes that sound).
pub unsafe fn install(prog: &[libc::sock_filter], flags: u32) -> Result<(), i32> {
    let Ok(len) = libc::c_ushort::try_from(prog.len()) else {
        return Err(libc::EINVAL);
    };
    let fprog = libc::sock_fprog {
        len,
        // The kernel only reads the program.
        filter: prog.as_ptr().cast_mut(),
    };
    // SAFETY: `fprog` points to `prog`, which outlives the call; the kernel copies
    // the program and does not keep the pointer. The syscall has no other memory
    // effects on this process.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            flags as libc::c_ulong,
            &fprog as *const libc::sock_fprog,
        )
    };
    match ret {
        0 => Ok(()),
        r if r > 0 => Err(libc::ESRCH),
        // Reads errno; no allocation.
        _ => Err(std::io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EINVAL)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const NATIVE: u32 = syscalls::NATIVE_AUDIT_ARCH;
    const ALLOW: u32 = libc::SECCOMP_RET_ALLOW;
    const EPERM: u32 = libc::SECCOMP_RET_ERRNO | libc::EPERM as u32;
    const ENOSYS: u32 = libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32;

    fn profile(value: serde_json::Value) -> LinuxSeccomp {
        serde_json::from_value(value).unwrap()
    }

    fn nr(name: &str) -> u32 {
        syscall_number(name).unwrap() as u32
    }

    /// Checks what the kernel's classic-BPF checker would: loads in range and
    /// aligned, jumps inside the program, only the opcodes we emit, a final `ret`.
    fn validate(prog: &[libc::sock_filter]) {
        assert!(!prog.is_empty() && prog.len() <= libc::BPF_MAXINSNS as usize);
        assert_eq!(
            prog[prog.len() - 1].code,
            RET_K,
            "program must end with ret"
        );
        for (pc, insn) in prog.iter().enumerate() {
            match insn.code {
                LD_W_ABS => assert!(insn.k % 4 == 0 && insn.k < 64, "bad load at {pc}"),
                RET_K | AND_K => {}
                JA => assert!(pc + 1 + (insn.k as usize) < prog.len(), "ja out at {pc}"),
                JEQ_K | JGT_K | JGE_K => {
                    let far = pc + 1 + insn.jt.max(insn.jf) as usize;
                    assert!(far < prog.len(), "jump out of program at {pc}");
                }
                code => panic!("unexpected opcode {code:#x} at {pc}"),
            }
        }
    }

    /// A classic-BPF interpreter for the instructions `compile` emits.
    fn run(prog: &[libc::sock_filter], nr: u32, arch: u32, args: [u64; 6]) -> u32 {
        let mut data = [0u8; 64];
        data[0..4].copy_from_slice(&nr.to_ne_bytes());
        data[4..8].copy_from_slice(&arch.to_ne_bytes());
        for (i, a) in args.iter().enumerate() {
            data[16 + 8 * i..24 + 8 * i].copy_from_slice(&a.to_ne_bytes());
        }
        let (mut acc, mut pc) = (0u32, 0usize);
        loop {
            let insn = prog[pc];
            pc += 1;
            let k = insn.k;
            let taken = match insn.code {
                LD_W_ABS => {
                    let at = k as usize;
                    acc = u32::from_ne_bytes(data[at..at + 4].try_into().unwrap());
                    continue;
                }
                AND_K => {
                    acc &= k;
                    continue;
                }
                RET_K => return k,
                JA => {
                    pc += k as usize;
                    continue;
                }
                JEQ_K => acc == k,
                JGT_K => acc > k,
                JGE_K => acc >= k,
                code => panic!("unexpected opcode {code:#x}"),
            };
            pc += if taken { insn.jt } else { insn.jf } as usize;
        }
    }

    /// The documented semantics, evaluated directly on the profile.
    fn reference(profile: &LinuxSeccomp, nr: u32, arch: u32, args: [u64; 6]) -> u32 {
        Reference::new(profile).eval(nr, arch, args)
    }

    struct Reference {
        default: u32,
        stub: bool,
        max: Option<i64>,
        compat: bool,
        x32: bool,
        /// (syscall numbers, action value, conditions) per entry, in order.
        entries: Vec<(Vec<i64>, u32, Vec<LinuxSeccompArg>)>,
    }

    impl Reference {
        fn new(profile: &LinuxSeccomp) -> Reference {
            let listed = |a: Arch| profile.architectures().iter().flatten().any(|x| *x == a);
            let x86_64 = NATIVE == 0xc000_003e;
            let entries: Vec<_> = profile
                .syscalls()
                .iter()
                .flatten()
                .map(|e| {
                    let nrs: Vec<i64> =
                        e.names().iter().filter_map(|n| syscall_number(n)).collect();
                    let location = Location::DefaultAction;
                    let ret = action_value(e.action(), e.errno_ret(), &location).unwrap();
                    (nrs, ret, e.args().clone().unwrap_or_default())
                })
                .collect();
            Reference {
                default: action_value(
                    profile.default_action(),
                    profile.default_errno_ret(),
                    &Location::DefaultAction,
                )
                .unwrap(),
                stub: !is_allow_action(profile.default_action()),
                max: entries.iter().flat_map(|e| e.0.iter().copied()).max(),
                compat: listed(if x86_64 {
                    Arch::ScmpArchX86
                } else {
                    Arch::ScmpArchArm
                }),
                x32: x86_64 && listed(Arch::ScmpArchX32),
                entries,
            }
        }

        fn eval(&self, nr: u32, arch: u32, args: [u64; 6]) -> u32 {
            let x86_64 = NATIVE == 0xc000_003e;
            if arch != NATIVE {
                let compat = if x86_64 {
                    syscalls::AUDIT_ARCH_I386
                } else {
                    syscalls::AUDIT_ARCH_ARM
                };
                return if arch == compat && self.compat {
                    self.default
                } else {
                    RET_BAD_ARCH
                };
            }
            if x86_64 && nr & 0x4000_0000 != 0 {
                return if self.x32 || nr == u32::MAX {
                    self.default
                } else {
                    RET_BAD_ARCH
                };
            }
            if self.stub && self.max.is_some_and(|max| i64::from(nr) > max) {
                return ENOSYS;
            }
            for (nrs, ret, conds) in &self.entries {
                if *ret == self.default || !nrs.contains(&i64::from(nr)) {
                    continue;
                }
                let holds = |a: &LinuxSeccompArg| {
                    let (v, x) = (args[a.index()], a.value());
                    match a.op() {
                        LinuxSeccompOperator::ScmpCmpEq => v == x,
                        LinuxSeccompOperator::ScmpCmpNe => v != x,
                        LinuxSeccompOperator::ScmpCmpLt => v < x,
                        LinuxSeccompOperator::ScmpCmpLe => v <= x,
                        LinuxSeccompOperator::ScmpCmpGe => v >= x,
                        LinuxSeccompOperator::ScmpCmpGt => v > x,
                        LinuxSeccompOperator::ScmpCmpMaskedEq => {
                            v & x == a.value_two().unwrap_or(0)
                        }
                    }
                };
                if conds.iter().all(holds) {
                    return *ret;
                }
            }
            self.default
        }
    }

    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
        fn pick<T: Clone>(&mut self, items: &[T]) -> T {
            items[self.below(items.len())].clone()
        }
    }

    const INTERESTING: &[u64] = &[
        0,
        1,
        2,
        0x30,
        0xf0,
        0x7fff_ffff,
        0x8000_0000,
        0xffff_ffff,
        0x1_0000_0000,
        0x1_0000_0001,
        0x1_0000_0030,
        0x2_ffff_ffff,
        0xffff_ffff_0000_0000,
        0x8000_0000_0000_0000,
        u64::MAX,
    ];

    const OPS: &[&str] = &[
        "SCMP_CMP_EQ",
        "SCMP_CMP_NE",
        "SCMP_CMP_LT",
        "SCMP_CMP_LE",
        "SCMP_CMP_GE",
        "SCMP_CMP_GT",
        "SCMP_CMP_MASKED_EQ",
    ];

    /// Values near `v`: +-1 on each 32-bit word.
    fn near(rng: &mut Rng, v: u64) -> u64 {
        match rng.below(6) {
            0 => v.wrapping_add(1),
            1 => v.wrapping_sub(1),
            2 => v.wrapping_add(1 << 32),
            3 => v.wrapping_sub(1 << 32),
            4 => v ^ 0x10,
            _ => v,
        }
    }

    fn random_profile(rng: &mut Rng) -> (LinuxSeccomp, Vec<u64>) {
        let names = [
            "getpid",
            "personality",
            "socket",
            "read",
            "keyctl",
            "chown32",
        ];
        let actions = [
            json!({"action": "SCMP_ACT_ALLOW"}),
            json!({"action": "SCMP_ACT_ERRNO"}),
            json!({"action": "SCMP_ACT_ERRNO", "errnoRet": 22}),
            json!({"action": "SCMP_ACT_ERRNO", "errnoRet": 38}),
            json!({"action": "SCMP_ACT_KILL_PROCESS"}),
            json!({"action": "SCMP_ACT_TRAP"}),
            json!({"action": "SCMP_ACT_LOG"}),
            json!({"action": "SCMP_ACT_TRACE", "errnoRet": 7}),
        ];
        let mut values = Vec::new();
        let mut syscalls = Vec::new();
        for _ in 0..=rng.below(8) {
            let mut entry = rng.pick(&actions);
            let n = 1 + rng.below(2);
            let picked: Vec<&str> = (0..n).map(|_| rng.pick(&names)).collect();
            entry["names"] = json!(picked);
            let mut args = Vec::new();
            for _ in 0..rng.below(4) {
                let value = rng.pick(INTERESTING);
                let value_two = rng.pick(INTERESTING) & value;
                values.extend([value, value_two]);
                args.push(json!({
                    "index": rng.below(MAX_ARGS),
                    "value": value,
                    "valueTwo": value_two,
                    "op": rng.pick(OPS),
                }));
            }
            if !args.is_empty() {
                entry["args"] = json!(args);
            }
            syscalls.push(entry);
        }
        let mut p = rng.pick(&actions);
        let default_action = p["action"].take();
        let mut out = json!({ "defaultAction": default_action, "syscalls": syscalls });
        if let Some(e) = p.get("errnoRet") {
            out["defaultErrnoRet"] = e.clone();
        }
        let arches = [
            json!([]),
            json!(["SCMP_ARCH_X86_64"]),
            json!(["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]),
            json!(["SCMP_ARCH_X32"]),
        ];
        out["architectures"] = rng.pick(&arches);
        (profile(out), values)
    }

    #[test]
    fn matches_reference_semantics_on_random_profiles() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let pool = ["getpid", "personality", "socket", "read", "keyctl", "write"];
        for _ in 0..300 {
            let (p, values) = random_profile(&mut rng);
            let prog = compile(&p).unwrap();
            validate(&prog);
            let model = Reference::new(&p);
            for _ in 0..150 {
                let nr = match rng.below(10) {
                    0 => 0x4000_0000 | nr("getpid"),
                    1 => u32::MAX,
                    2 => 1000,
                    _ => nr(rng.pick(&pool)),
                };
                let arch = match rng.below(10) {
                    0 => syscalls::AUDIT_ARCH_I386,
                    1 => 0xc000_00b7,
                    _ => NATIVE,
                };
                let mut args = [0u64; 6];
                for a in &mut args {
                    let base = if !values.is_empty() && rng.below(3) > 0 {
                        rng.pick(&values)
                    } else {
                        rng.pick(INTERESTING)
                    };
                    *a = near(&mut rng, base);
                }
                assert_eq!(
                    run(&prog, nr, arch, args),
                    model.eval(nr, arch, args),
                    "nr {nr} arch {arch:#x} args {args:x?} profile {p:?}"
                );
            }
        }
    }

    fn docker_caps(extra: &[&str]) -> Vec<String> {
        let mut caps: Vec<String> = crate::spec::caps::DEFAULT_CAPS
            .iter()
            .map(|s| s.to_string())
            .collect();
        caps.extend(extra.iter().map(|s| s.to_string()));
        caps
    }

    #[test]
    fn default_profile_compiles_to_a_sane_program() {
        for extra in [&[][..], &["CAP_SYS_ADMIN"], &["CAP_SYS_PTRACE", "CAP_BPF"]] {
            let prog = compile(&default_profile(&docker_caps(extra))).unwrap();
            validate(&prog);
            assert!(
                (300..1000).contains(&prog.len()),
                "default profile program has {} instructions",
                prog.len()
            );
        }
    }

    #[cfg(all(target_arch = "x86_64", target_pointer_width = "64"))]
    #[test]
    fn default_profile_decisions() {
        let p = default_profile(&docker_caps(&[]));
        let prog = compile(&p).unwrap();
        let call = |name: &str, args: [u64; 6]| run(&prog, nr(name), NATIVE, args);
        let no_args = [0; 6];
        for name in [
            "read",
            "write",
            "getpid",
            "execve",
            "exit_group",
            "ptrace",
            "chroot",
        ] {
            assert_eq!(call(name, no_args), ALLOW, "{name}");
        }
        for name in [
            "keyctl",
            "add_key",
            "request_key",
            "bpf",
            "userfaultfd",
            "perf_event_open",
            "unshare",
            "mount",
            "umount2",
            "setns",
            "kexec_load",
            "open_by_handle_at",
            "io_uring_setup",
            "reboot",
            "init_module",
            "syslog",
        ] {
            assert_eq!(call(name, no_args), EPERM, "{name}");
        }
        assert_eq!(call("clone3", no_args), ENOSYS);
        let newuser = libc::CLONE_NEWUSER as u64;
        let sigchld = libc::SIGCHLD as u64;
        assert_eq!(call("clone", [sigchld, 0, 0, 0, 0, 0]), ALLOW);
        let thread = (libc::CLONE_VM | libc::CLONE_THREAD | libc::CLONE_SIGHAND) as u64;
        assert_eq!(call("clone", [thread, 0, 0, 0, 0, 0]), ALLOW);
        assert_eq!(call("clone", [newuser | sigchld, 0, 0, 0, 0, 0]), EPERM);
        assert_eq!(
            call("clone", [libc::CLONE_NEWNET as u64, 0, 0, 0, 0, 0]),
            EPERM
        );
        assert_eq!(call("socket", [libc::AF_INET as u64, 1, 0, 0, 0, 0]), ALLOW);
        assert_eq!(call("socket", [libc::AF_UNIX as u64, 1, 0, 0, 0, 0]), ALLOW);
        assert_eq!(
            call("socket", [libc::AF_NETLINK as u64, 3, 0, 0, 0, 0]),
            ALLOW
        );
        assert_eq!(call("socket", [45, 2, 0, 0, 0, 0]), ALLOW); // AF_MCTP
        assert_eq!(
            call("socket", [libc::AF_VSOCK as u64, 1, 0, 0, 0, 0]),
            EPERM
        );
        assert_eq!(call("socket", [libc::AF_ALG as u64, 5, 0, 0, 0, 0]), EPERM);
        assert_eq!(call("socket", [12, 1, 0, 0, 0, 0]), EPERM); // AF_DECnet
        assert_eq!(call("socket", [0x1_0000_0002, 1, 0, 0, 0, 0]), EPERM);
        assert_eq!(call("personality", [0xffff_ffff, 0, 0, 0, 0, 0]), ALLOW);
        assert_eq!(call("personality", [0x0008, 0, 0, 0, 0, 0]), ALLOW);
        assert_eq!(call("personality", [6, 0, 0, 0, 0, 0]), EPERM);
        assert_eq!(call("personality", [0x1_0000_0000, 0, 0, 0, 0, 0]), EPERM);
        // Architectures: i386 and x32 get the default action, others are killed.
        assert_eq!(run(&prog, 20, syscalls::AUDIT_ARCH_I386, no_args), EPERM);
        assert_eq!(
            run(&prog, 0x4000_0000 | nr("getpid"), NATIVE, no_args),
            EPERM
        );
        assert_eq!(run(&prog, u32::MAX, NATIVE, no_args), EPERM);
        assert_eq!(
            run(&prog, 0, 0xc000_00b7, no_args),
            libc::SECCOMP_RET_KILL_PROCESS
        );
        // Syscalls newer than the profile: ENOSYS.
        assert_eq!(run(&prog, 1000, NATIVE, no_args), ENOSYS);

        let admin = compile(&default_profile(&docker_caps(&["CAP_SYS_ADMIN"]))).unwrap();
        let call = |name: &str, args: [u64; 6]| run(&admin, nr(name), NATIVE, args);
        for name in [
            "clone3",
            "unshare",
            "mount",
            "setns",
            "bpf",
            "perf_event_open",
        ] {
            assert_eq!(call(name, no_args), ALLOW, "{name} with CAP_SYS_ADMIN");
        }
        assert_eq!(call("clone", [newuser | sigchld, 0, 0, 0, 0, 0]), ALLOW);
        assert_eq!(call("keyctl", no_args), EPERM);

        let bpf = compile(&default_profile(&docker_caps(&["CAP_BPF", "CAP_PERFMON"]))).unwrap();
        assert_eq!(run(&bpf, nr("bpf"), NATIVE, no_args), ALLOW);
        assert_eq!(run(&bpf, nr("perf_event_open"), NATIVE, no_args), ALLOW);
        assert_eq!(run(&bpf, nr("unshare"), NATIVE, no_args), EPERM);
    }

    #[test]
    fn long_programs_use_long_jumps() {
        // 150 rules on one syscall (a block of ~750 instructions), a rule ANDing
        // 80 conditions (~330 instructions), and 400 unconditional syscalls.
        let mut syscalls = Vec::new();
        let mut and_args = Vec::new();
        for _ in 0..80 {
            and_args.push(json!({"index": 0, "value": 7, "op": "SCMP_CMP_EQ"}));
        }
        syscalls.push(json!({"names": ["getpid"], "action": "SCMP_ACT_ERRNO",
                             "errnoRet": 99, "args": and_args}));
        for i in 0..150u64 {
            syscalls.push(json!({
                "names": ["getpid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 100 + i,
                "args": [{"index": 5, "value": (i << 32) | i, "op": "SCMP_CMP_EQ"}],
            }));
        }
        let all: Vec<&str> = known_syscalls()
            .map(|(n, _)| n)
            .filter(|n| *n != "getpid")
            .collect();
        syscalls.push(json!({"names": all, "action": "SCMP_ACT_ALLOW"}));
        let p = profile(json!({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": syscalls}));
        let prog = compile(&p).unwrap();
        validate(&prog);
        assert!(prog.len() > 1000, "{}", prog.len());
        assert!(prog.iter().any(|i| i.code == JA), "expected long jumps");
        let getpid = nr("getpid");
        let errno = |e: u32| libc::SECCOMP_RET_ERRNO | e;
        assert_eq!(run(&prog, getpid, NATIVE, [7, 0, 0, 0, 0, 0]), errno(99));
        for i in [0u64, 1, 77, 149] {
            let args = [0, 0, 0, 0, 0, (i << 32) | i];
            assert_eq!(run(&prog, getpid, NATIVE, args), errno(100 + i as u32));
            assert_eq!(
                run(&prog, getpid, NATIVE, args),
                reference(&p, getpid, NATIVE, args)
            );
        }
        assert_eq!(run(&prog, getpid, NATIVE, [0, 0, 0, 0, 0, 150]), EPERM);
        assert_eq!(run(&prog, nr("read"), NATIVE, [0; 6]), ALLOW);
    }

    #[test]
    fn unknown_names_are_skipped_and_redundant_rules_dropped() {
        let p = profile(json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [
                {"names": ["no_such_syscall", "chown32"], "action": "SCMP_ACT_ERRNO"},
                // Same action as the default: skipped (runc), so it does not shadow
                // the next rule.
                {"names": ["getpid"], "action": "SCMP_ACT_ALLOW",
                 "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_EQ"}]},
                {"names": ["getpid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 5},
                // Unreachable: the previous rule is unconditional.
                {"names": ["getpid"], "action": "SCMP_ACT_KILL"},
            ]
        }));
        let prog = compile(&p).unwrap();
        validate(&prog);
        let e5 = libc::SECCOMP_RET_ERRNO | 5;
        assert_eq!(run(&prog, nr("getpid"), NATIVE, [1, 0, 0, 0, 0, 0]), e5);
        assert_eq!(run(&prog, nr("read"), NATIVE, [0; 6]), ALLOW);
        // Default ALLOW: no ENOSYS stub.
        assert_eq!(run(&prog, 1000, NATIVE, [0; 6]), ALLOW);
    }

    #[test]
    fn actions_map_to_kernel_values() {
        let cases = [
            (
                json!({"action": "SCMP_ACT_KILL"}),
                libc::SECCOMP_RET_KILL_THREAD,
            ),
            (
                json!({"action": "SCMP_ACT_KILL_THREAD"}),
                libc::SECCOMP_RET_KILL_THREAD,
            ),
            (
                json!({"action": "SCMP_ACT_KILL_PROCESS"}),
                libc::SECCOMP_RET_KILL_PROCESS,
            ),
            (json!({"action": "SCMP_ACT_TRAP"}), libc::SECCOMP_RET_TRAP),
            (json!({"action": "SCMP_ACT_ERRNO"}), EPERM),
            (
                json!({"action": "SCMP_ACT_ERRNO", "errnoRet": 13}),
                libc::SECCOMP_RET_ERRNO | 13,
            ),
            (
                json!({"action": "SCMP_ACT_TRACE"}),
                libc::SECCOMP_RET_TRACE | 1,
            ),
            (
                json!({"action": "SCMP_ACT_TRACE", "errnoRet": 9}),
                libc::SECCOMP_RET_TRACE | 9,
            ),
            (json!({"action": "SCMP_ACT_LOG"}), libc::SECCOMP_RET_LOG),
        ];
        for (mut rule, want) in cases {
            rule["names"] = json!(["getpid"]);
            let p = profile(json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [rule]}));
            assert_eq!(
                run(&compile(&p).unwrap(), nr("getpid"), NATIVE, [0; 6]),
                want
            );
        }
        let p = profile(json!({"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 38}));
        assert_eq!(run(&compile(&p).unwrap(), 0, NATIVE, [0; 6]), ENOSYS);
    }

    #[test]
    fn errors_name_the_bad_value() {
        let err = |v| compile(&profile(v)).unwrap_err();
        let e = err(json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
            {"names": ["read"], "action": "SCMP_ACT_ALLOW",
             "args": [{"index": 6, "value": 1, "op": "SCMP_CMP_EQ"}]}]}));
        assert!(matches!(e, SeccompError::ArgIndex { index: 6, .. }), "{e}");
        assert_eq!(
            e.to_string(),
            "seccomp argument index 6 for syscall \"read\" is out of range (0-5)"
        );
        let e = err(json!({"defaultAction": "SCMP_ACT_NOTIFY"}));
        assert!(matches!(e, SeccompError::UnsupportedAction { .. }), "{e}");
        assert!(e.to_string().contains("SCMP_ACT_NOTIFY"), "{e}");
        let e = err(json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
            {"names": ["write"], "action": "SCMP_ACT_NOTIFY"}]}));
        assert_eq!(
            e.to_string(),
            "seccomp action SCMP_ACT_NOTIFY for syscall \"write\" is not supported by rootbox"
        );
        let e = err(json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
            {"names": ["read"], "action": "SCMP_ACT_ERRNO", "errnoRet": 5000}]}));
        assert!(
            matches!(e, SeccompError::ErrnoRange { value: 5000, .. }),
            "{e}"
        );
        let e = err(json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
            {"names": [""], "action": "SCMP_ACT_ERRNO"}]}));
        assert!(matches!(e, SeccompError::EmptySyscallName), "{e}");
        // Too many instructions.
        let rules: Vec<_> = (0..1000u64)
            .map(|i| {
                json!({"names": ["getpid"], "action": "SCMP_ACT_ERRNO",
                            "args": [{"index": 0, "value": i, "op": "SCMP_CMP_EQ"}]})
            })
            .collect();
        let e = err(json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": rules}));
        assert!(matches!(e, SeccompError::ProgramTooLong { .. }), "{e}");
        // Garbage strings in an OCI config are rejected when it is parsed.
        let bad: Result<LinuxSeccomp, _> =
            serde_json::from_value(json!({"defaultAction": "SCMP_ACT_FOO"}));
        assert!(bad.unwrap_err().to_string().contains("SCMP_ACT_FOO"));
    }

    #[test]
    fn filter_flags_map_to_kernel_flags() {
        let p = profile(json!({"defaultAction": "SCMP_ACT_ALLOW", "flags": [
            "SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW",
            "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"]}));
        let want = libc::SECCOMP_FILTER_FLAG_LOG | libc::SECCOMP_FILTER_FLAG_SPEC_ALLOW;
        assert_eq!(filter_flags(&p), want as u32);
        assert_eq!(filter_flags(&default_profile(&[])), 0);
    }

    // -----------------------------------------------------------------------
    // Enforcement by the kernel, in forked children. Between fork and _exit the
    // child only makes raw syscalls and touches memory prepared before the fork
    // (the test harness is multithreaded: no allocation, no locks, no panics).

    /// Runs `child` in a forked process; returns its exit status (or 1000 + signal).
    fn in_child(child: impl FnOnce() -> i32) -> i32 {
        // SAFETY: the child runs `child`, which only makes raw syscalls, then exits.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork failed");
        if pid == 0 {
            let code = child();
            // SAFETY: terminating the forked child without running atexit handlers.
            unsafe { libc::_exit(code) };
        }
        let mut status = 0;
        // SAFETY: waiting for our own child.
        let r = unsafe { libc::waitpid(pid, &mut status, 0) };
        assert_eq!(r, pid);
        if libc::WIFEXITED(status) {
            libc::WEXITSTATUS(status)
        } else {
            1000 + libc::WTERMSIG(status)
        }
    }

    /// A raw syscall: `Ok(return value)` or `Err(errno)`.
    fn sys(nr: i64, a: [u64; 6]) -> Result<i64, i32> {
        // SAFETY: callers pass arguments that make the syscall touch no memory of
        // this process other than what they point to explicitly.
        let r = unsafe { libc::syscall(nr, a[0], a[1], a[2], a[3], a[4], a[5]) };
        if r == -1 {
            Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(0))
        } else {
            Ok(r)
        }
    }

    /// no_new_privs, then the filter. Returns false on failure.
    fn enter(prog: &[libc::sock_filter]) -> bool {
        // SAFETY: prctl with integer arguments.
        let nnp = unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) };
        // SAFETY: called in a single-threaded child; `prog` outlives the call.
        nnp == 0 && unsafe { install(prog, 0) }.is_ok()
    }

    /// Expected outcome of one syscall in a child.
    #[derive(Clone, Copy)]
    enum Want {
        Ok,
        Errno(i32),
        NotErrno(i32),
    }

    fn outcome_is(got: Result<i64, i32>, want: Want) -> bool {
        match (got, want) {
            (Ok(_), Want::Ok) => true,
            (Err(e), Want::Errno(w)) => e == w,
            (Ok(_), Want::NotErrno(_)) => true,
            (Err(e), Want::NotErrno(w)) => e != w,
            _ => false,
        }
    }

    #[cfg(all(target_arch = "x86_64", target_pointer_width = "64"))]
    #[test]
    fn kernel_enforces_default_profile() {
        let prog = compile(&default_profile(&docker_caps(&[]))).unwrap();
        let mut fds = [0; 2];
        // SAFETY: `fds` has room for two descriptors.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        let byte = b"x";
        let byte_ptr = byte.as_ptr() as u64;
        let s = |name: &str| syscall_number(name).unwrap();
        let newuser = libc::CLONE_NEWUSER as u64;
        let sigchld = libc::SIGCHLD as u64;
        let eperm = Want::Errno(libc::EPERM);
        // (syscall, args, expected); prepared before the fork.
        let checks: Vec<(i64, [u64; 6], Want)> = vec![
            (s("getpid"), [0; 6], Want::Ok),
            (s("write"), [fds[1] as u64, byte_ptr, 1, 0, 0, 0], Want::Ok),
            (s("keyctl"), [0, u64::MAX - 2, 0, 0, 0, 0], eperm),
            (s("add_key"), [0; 6], eperm),
            (s("request_key"), [0; 6], eperm),
            (s("bpf"), [0; 6], eperm),
            (s("userfaultfd"), [0; 6], eperm),
            (
                s("perf_event_open"),
                [0, 0, u64::MAX, u64::MAX, 0, 0],
                eperm,
            ),
            (s("unshare"), [newuser, 0, 0, 0, 0, 0], eperm),
            (s("clone"), [newuser | sigchld, 0, 0, 0, 0, 0], eperm),
            (s("clone3"), [0; 6], Want::Errno(libc::ENOSYS)),
            (s("mount"), [0; 6], eperm),
            (s("umount2"), [0; 6], eperm),
            (s("setns"), [u64::MAX, 0, 0, 0, 0, 0], eperm),
            (s("kexec_load"), [0; 6], eperm),
            (s("open_by_handle_at"), [u64::MAX, 0, 0, 0, 0, 0], eperm),
            (s("io_uring_setup"), [0; 6], eperm),
            (s("socket"), [libc::AF_VSOCK as u64, 1, 0, 0, 0, 0], eperm),
            (s("socket"), [libc::AF_ALG as u64, 5, 0, 0, 0, 0], eperm),
            (s("personality"), [6, 0, 0, 0, 0, 0], eperm),
            (s("personality"), [0xffff_ffff, 0, 0, 0, 0, 0], Want::Ok),
            // Allowed by moby on Linux >= 4.8; the kernel answers ESRCH.
            (
                s("ptrace"),
                [libc::PTRACE_GETREGS as u64, 0, 0, 0, 0, 0],
                Want::NotErrno(libc::EPERM),
            ),
            // x32 syscall: default action (the kernel itself would say ENOSYS or run it).
            (0x4000_0000 | s("getpid"), [0; 6], eperm),
        ];
        let (sock, clone, wait4, close) = (s("socket"), s("clone"), s("wait4"), s("close"));
        let code = in_child(|| {
            if !enter(&prog) {
                return 100;
            }
            for (i, &(nr, args, want)) in checks.iter().enumerate() {
                let got = sys(nr, args);
                if let (Ok(0), true) = (got, nr == clone) {
                    // SAFETY: the grandchild of an unexpectedly allowed clone exits.
                    unsafe { libc::_exit(0) };
                }
                if !outcome_is(got, want) {
                    return 1 + i as i32;
                }
            }
            // AF_UNIX sockets and plain fork-style clone still work.
            match sys(
                sock,
                [libc::AF_UNIX as u64, libc::SOCK_STREAM as u64, 0, 0, 0, 0],
            ) {
                Ok(fd) => {
                    let _ = sys(close, [fd as u64, 0, 0, 0, 0, 0]);
                }
                Err(_) => return 90,
            }
            match sys(clone, [sigchld, 0, 0, 0, 0, 0]) {
                // SAFETY: the grandchild exits at once.
                Ok(0) => unsafe { libc::_exit(0) },
                Ok(pid) => {
                    if sys(wait4, [pid as u64, 0, 0, 0, 0, 0]) != Ok(pid) {
                        return 92;
                    }
                }
                Err(_) => return 91,
            }
            0
        });
        let mut buf = [0u8; 1];
        // SAFETY: reading one byte into `buf` from our pipe.
        let n = unsafe { libc::read(fds[0], buf.as_mut_ptr().cast(), 1) };
        // SAFETY: closing our own descriptors.
        unsafe {
            libc::close(fds[0]);
            libc::close(fds[1]);
        }
        let what = match checks.get((code as usize).wrapping_sub(1)) {
            Some((nr, args, _)) => format!("syscall {nr} with args {args:x?}"),
            None => format!("code {code}"),
        };
        assert_eq!(code, 0, "child failed: {what}");
        assert_eq!((n, buf[0]), (1, b'x'));
    }

    #[test]
    fn kernel_compares_arguments_exactly() {
        // getpid ignores its arguments, so seccomp alone decides by them.
        let getpid = syscall_number("getpid").unwrap();
        let p = profile(json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [
                {"names": ["getpid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 100,
                 "args": [{"index": 0, "value": 0x1_0000_0005u64, "op": "SCMP_CMP_EQ"}]},
                {"names": ["getpid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 101,
                 "args": [{"index": 1, "value": 0xf0, "valueTwo": 0x30, "op": "SCMP_CMP_MASKED_EQ"},
                          {"index": 2, "value": 0x2_0000_0000u64, "op": "SCMP_CMP_GT"}]},
                {"names": ["getpid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 102,
                 "args": [{"index": 3, "value": 10, "op": "SCMP_CMP_LT"},
                          {"index": 4, "value": 0xffff_ffff_0000_0000u64, "op": "SCMP_CMP_GE"}]},
                {"names": ["getpid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 103,
                 "args": [{"index": 5, "value": 0, "op": "SCMP_CMP_NE"}]},
                {"names": ["getpid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 104,
                 "args": [{"index": 5, "value": 3, "op": "SCMP_CMP_LE"}]},
                {"names": ["personality"], "action": "SCMP_ACT_ERRNO", "errnoRet": 105,
                 "args": [{"index": 0, "value": 0xffff_ffffu32, "op": "SCMP_CMP_NE"}]},
            ]
        }));
        let prog = compile(&p).unwrap();
        let mut rng = Rng(42);
        let mut cases: Vec<[u64; 6]> = vec![
            [0; 6],
            [0x1_0000_0005, 0, 0, 0, 0, 0],
            [0x5, 0, 0, 0, 0, 0],
            [0x2_0000_0005, 0, 0, 0, 0, 0],
            [0, 0x1_0000_0035, 0x2_0000_0001, 0, 0, 0],
            [0, 0x35, 0x2_0000_0000, 0, 0, 0],
            [0, 0x25, 0x3_0000_0000, 0, 0, 0],
            [0, 0, 0, 9, 0xffff_ffff_0000_0000, 0],
            [0, 0, 0, 0x1_0000_0009, u64::MAX, 0],
            [0, 0, 0, 10, u64::MAX, 0],
            [0, 0, 0, 0, 0, 1 << 32],
        ];
        for _ in 0..200 {
            let mut args = [0u64; 6];
            for a in &mut args {
                let base = rng.pick(INTERESTING);
                *a = near(&mut rng, base);
            }
            cases.push(args);
        }
        let model = Reference::new(&p);
        let expected: Vec<u32> = cases
            .iter()
            .map(|a| model.eval(getpid as u32, NATIVE, *a))
            .collect();
        for (case, want) in cases.iter().zip(&expected) {
            assert_eq!(run(&prog, getpid as u32, NATIVE, *case), *want, "{case:x?}");
        }
        let personality = syscall_number("personality").unwrap();
        let code = in_child(|| {
            if !enter(&prog) {
                return 250;
            }
            for (i, (args, want)) in cases.iter().zip(&expected).enumerate() {
                let ok = match sys(getpid, *args) {
                    Ok(_) => *want == ALLOW,
                    Err(e) => *want == libc::SECCOMP_RET_ERRNO | e as u32,
                };
                if !ok {
                    return 1 + (i % 200) as i32;
                }
            }
            if sys(personality, [0xffff_ffff, 0, 0, 0, 0, 0]).is_err()
                || sys(personality, [0, 0, 0, 0, 0, 0]) != Err(105)
            {
                return 201;
            }
            0
        });
        assert_eq!(
            code,
            0,
            "case {:x?}",
            cases.get((code as usize).wrapping_sub(1))
        );
    }

    #[test]
    fn kernel_accepts_long_programs() {
        let getpid = syscall_number("getpid").unwrap();
        let mut syscalls = Vec::new();
        for i in 0..150u64 {
            syscalls.push(json!({
                "names": ["getpid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 100 + i,
                "args": [{"index": 5, "value": (i << 32) | i, "op": "SCMP_CMP_EQ"}],
            }));
        }
        let p = profile(json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": syscalls}));
        let prog = compile(&p).unwrap();
        assert!(prog.iter().any(|i| i.code == JA));
        let code = in_child(|| {
            if !enter(&prog) {
                return 1;
            }
            let e77 = sys(getpid, [0, 0, 0, 0, 0, (77 << 32) | 77]);
            let e149 = sys(getpid, [0, 0, 0, 0, 0, (149 << 32) | 149]);
            let miss = sys(getpid, [0, 0, 0, 0, 0, 77]);
            if e77 != Err(177) || e149 != Err(249) || miss.is_err() {
                return 2;
            }
            0
        });
        assert_eq!(code, 0);
    }

    #[test]
    fn install_reports_errno() {
        let code = in_child(|| {
            // SAFETY: an empty program is rejected before anything is installed.
            match unsafe { install(&[], 0) } {
                Err(e) if e == libc::EINVAL => 0,
                _ => 1,
            }
        });
        assert_eq!(code, 0);
    }
}

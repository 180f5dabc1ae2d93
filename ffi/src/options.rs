//! Options structs that can grow: each starts with `struct_size`, which the caller sets to
//! `sizeof` the struct its header declares. A caller built against an older header passes a
//! smaller struct (the fields it lacks read as zero / NULL); one built against a newer header
//! passes a larger one, accepted when every field this library does not know is zero.

use std::mem::{size_of, MaybeUninit};

use crate::error::{Failure, Result};

/// Reads an options struct of type `T` (which must start with a `usize` `struct_size` and be
/// valid when all zero: integers, bools and pointers only). NULL gives all zeros.
///
/// # Safety
/// `p` is NULL or points to at least `struct_size` readable bytes.
pub(crate) unsafe fn read<T: Copy>(p: *const T, what: &str) -> Result<T> {
    let mut out = MaybeUninit::<T>::zeroed();
    if p.is_null() {
        // SAFETY: T is valid all zero (caller's contract on T).
        return Ok(unsafe { out.assume_init() });
    }
    // SAFETY: the first field is a usize (caller's contract on T), readable at `p`.
    let given = unsafe { p.cast::<usize>().read_unaligned() };
    let ours = size_of::<T>();
    if given < size_of::<usize>() {
        return Err(Failure::arg(format!(
            "{what}.struct_size is {given}: set it to sizeof the struct"
        )));
    }
    if given > ours {
        // SAFETY: the caller's struct has `given` readable bytes.
        let extra = unsafe { std::slice::from_raw_parts(p.cast::<u8>().add(ours), given - ours) };
        if extra.iter().any(|b| *b != 0) {
            return Err(Failure::arg(format!(
                "{what}.struct_size is {given}, larger than this library's {ours}, and the fields it does not know are set: upgrade libcontainer"
            )));
        }
    }
    let n = given.min(ours);
    // SAFETY: `n` bytes are readable at `p` and writable in `out`; they do not overlap.
    unsafe { std::ptr::copy_nonoverlapping(p.cast::<u8>(), out.as_mut_ptr().cast::<u8>(), n) };
    // SAFETY: every field is either copied from the caller's struct of the same layout or
    // zero, which is valid for T (caller's contract on T). Bools from C are 0 or 1.
    Ok(unsafe { out.assume_init() })
}

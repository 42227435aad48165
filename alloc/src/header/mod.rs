//! The per-object header: its kinds, its words, and the layout arithmetic that places it.
//!
//! ```text
//!  Wide (the default, HEADER_OFFSET = 16 = MAX_ALIGN):
//!   align <= 16: offset 16                    align > 16: offset = align
//!   block                 obj                 block                          obj
//!   v                     v                   v                              v
//!   +----------+----------+-----------        +---------------+------+------+-----------
//!   | aux word | tie word | object ...        | pad (align-16)| aux  | tie  | object ...
//!   +----------+----------+-----------        +---------------+------+------+-----------
//!   ^ obj - 16 ^ obj - 8                                      ^obj-16^obj-8
//!
//!  Narrow (8 bytes):
//!   align <= 8: offset 8          align = 16: offset 16          align > 16: offset = align
//!   block      obj                block                 obj      [pad | tie | object ...]
//!   v          v                  v                     v
//!   +----------+-----------       +----------+----------+-----------
//!   | tie word | object ...       | pad (8)  | tie word | object ...
//!   +----------+-----------       +----------+----------+-----------
//!
//!  Bare (0 bytes): block = obj, no header; the inner allocator's block as it is.
//!
//!  The tie word (see `tie.rs`):  W address (8-aligned) | LOCK (4) | BUSY (2) | PARKED (1)
//!   0 = (a) detached, W = (b) bound to live wrapper W, W | PARKED = (c) parked wrapper memory.
//! ```
//!
//! The seed design had 32 bytes (`py_obj`, `cached_mem`, `free_cb`, padded to 32): the two
//! wrapper pointers became one tagged word (a wrapper is either live or parked, never both), and
//! the per-object free callback became one callback per allocator
//! ([`HeaderAlloc::set_free_callback`](crate::HeaderAlloc::set_free_callback)).
//!
//! Invariants (every object handed out by a [`HeaderAlloc`](crate::HeaderAlloc) of kind `K`):
//! 1. `K` = [`Wide`] or [`Narrow`]: the object's [`TieWord`] is at `obj - 8`, 8-aligned, inside
//!    the object's block, and null (state (a)) when the object is handed out.
//! 2. `K` = [`Wide`]: the aux word is at `obj - 16`, 8-aligned, inside the block, null when the
//!    object is handed out; this crate never reads it (it is the owner's).
//! 3. The block starts at `obj - offset_for::<K>(align)`, and its inner layout is
//!    [`block_layout::<K>`](block_layout)`(layout)`, so header and block recovery are pure
//!    arithmetic.
//! 4. The header words live exactly as long as the object and move with it on grow/shrink.
//! 5. `K` = [`Bare`]: nothing before `obj` belongs to the object ([`tie_of`] and [`aux_of`] must
//!    not be used on it).

mod kind;
mod tie;

pub use kind::{block_layout, offset_for, Bare, HeaderKind, Narrow, Wide, MAX_ALIGN};
pub use tie::{
    tie_ptr, tie_tag, tie_with, TieWord, TIE_ALIGN, TIE_BUSY, TIE_LOCK, TIE_PARKED, TIE_TAG_MASK,
};

use core::ffi::c_void;
use core::ptr::NonNull;
use core::sync::atomic::AtomicPtr;

/// The free callback, registered once per allocator
/// ([`HeaderAlloc::set_free_callback`](crate::HeaderAlloc::set_free_callback)).
///
/// The free funnel calls it when an object whose tie word is parked (`W | TIE_PARKED`) is
/// freed, with the untagged pointer `W`: never null, at most once per parked pointer (the word
/// is swapped to null first), on whichever thread frees the object, inside the allocator's
/// `deallocate` (so it must not allocate from that same allocator if it is the global one, and
/// it cannot unwind out: it is `extern "C"`). It is `unsafe` because the pointer's meaning
/// belongs to whoever parked it.
pub type FreeCallback = unsafe extern "C" fn(*mut c_void);

/// The default kind's header bytes: [`Wide::SIZE`](HeaderKind::SIZE), 16 on x86_64.
pub const HEADER_OFFSET: usize = <Wide as HeaderKind>::SIZE;

const _: () = assert!(core::mem::size_of::<TieWord>() <= TIE_ALIGN);
const _: () = assert!(core::mem::size_of::<AtomicPtr<()>>() <= TIE_ALIGN);
const _: () = assert!(HEADER_OFFSET % MAX_ALIGN == 0 && HEADER_OFFSET == 2 * TIE_ALIGN);

/// The tie word of an object: `obj - 8`.
///
/// ```
/// use allocator_api2::alloc::Allocator;
/// use core::alloc::Layout;
/// use core::sync::atomic::Ordering::Relaxed;
/// use tether_alloc::{tie_of, HeaderAlloc};
///
/// let alloc = HeaderAlloc::new();
/// let layout = Layout::new::<u64>();
/// let obj = alloc.allocate(layout).unwrap().cast::<u8>();
/// // SAFETY: `obj` came from a Wide HeaderAlloc and is still allocated.
/// let tie = unsafe { tie_of(obj) };
/// assert!(tie.load(Relaxed).is_null()); // state (a)
/// assert_eq!(tie as *const _ as usize + 8, obj.as_ptr() as usize);
/// // SAFETY: allocated above with this layout.
/// unsafe { alloc.deallocate(obj, layout) };
/// ```
///
/// # Safety
/// `obj` was returned by a `HeaderAlloc` of kind [`Wide`] or [`Narrow`] (through `Allocator`
/// or `GlobalAlloc`) and is not yet freed, and the reference does not outlive the object.
#[inline(always)]
pub unsafe fn tie_of<'a>(obj: NonNull<u8>) -> &'a TieWord {
    // SAFETY: invariant 1: the caller guarantees a Wide or Narrow object, so an initialized,
    // 8-aligned TieWord sits 8 bytes before it, in the same live block.
    unsafe { &*obj.as_ptr().sub(TIE_ALIGN).cast::<TieWord>() }
}

/// The aux word of an object: `obj - 16`, the owner's word (null at allocation; the runtime
/// keeps each object's deleter there). This crate never reads or writes it after allocation,
/// except to move it with its object on grow/shrink.
///
/// # Safety
/// `obj` was returned by a `HeaderAlloc` of kind [`Wide`] and is not yet freed, and the
/// reference does not outlive the object.
#[inline(always)]
pub unsafe fn aux_of<'a>(obj: NonNull<u8>) -> &'a AtomicPtr<()> {
    // SAFETY: invariant 2: the caller guarantees a Wide object, so an initialized, 8-aligned
    // word sits 16 bytes before it, in the same live block.
    unsafe { &*obj.as_ptr().sub(2 * TIE_ALIGN).cast::<AtomicPtr<()>>() }
}

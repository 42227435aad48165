//! The tie word: one tagged pointer that says which wrapper (if any) an object is tied to.
//!
//! ```text
//!  bit  63 ............................................ 3 | 2    | 1    | 0
//!       +-----------------------------------------------+------+------+--------+
//!       | wrapper address W (TIE_ALIGN = 8: low 3 bits 0) | LOCK | BUSY | PARKED |
//!       +-----------------------------------------------+------+------+--------+
//! ```
//!
//! | word               | state                                                         |
//! |--------------------|---------------------------------------------------------------|
//! | `0`                | (a) detached: never wrapped, or the wrapper memory was freed   |
//! | `W`                | (b) bound to the live wrapper `W`                              |
//! | `W \| TIE_PARKED`  | (c) parked: `W` is a finalized wrapper's memory, kept for revival |
//! | `... \| TIE_BUSY`  | a transition in progress has claimed the word                  |
//! | `... \| TIE_LOCK`  | reserved for free-threaded builds (never set by this crate)    |
//!
//! This is upstream tvm-ffi's direction (detached = 0, active = W, inactive = W | 1, a lock bit
//! for free-threaded builds), with the seed's claim bit as a second tag bit.
//!
//! Invariants:
//! 1. Every pointer that enters a tie word is [`TIE_ALIGN`]-aligned, so its low three bits are
//!    free for tags; [`tie_with`] checks it (`debug_assert!`), and every tagged word is composed
//!    by [`tie_with`] (tag 0 for a bound wrapper), never by hand.
//! 2. Tags are read and cleared only by [`tie_tag`] and [`tie_ptr`]; all three helpers keep the
//!    pointer's provenance (`map_addr`), so a tagged word can be untagged and dereferenced.
//! 3. This crate writes a tie word in three places only: zeroing it at allocation (state (a)),
//!    moving it with its object on grow/shrink, and the free funnel's swap of a parked word to
//!    null. Every transition between (a), (b) and (c) belongs to the word's owner (the runtime).

use core::ffi::c_void;
use core::ptr;
use core::sync::atomic::{AtomicPtr, Ordering};

/// Tag bit: the word holds parked wrapper memory (state (c)); the free funnel releases it.
pub const TIE_PARKED: usize = 0b001;
/// Tag bit: a transition in progress has claimed the word (the claim bit).
pub const TIE_BUSY: usize = 0b010;
/// Tag bit reserved for free-threaded builds (a per-object lock); this crate never sets it.
pub const TIE_LOCK: usize = 0b100;
/// All tag bits.
pub const TIE_TAG_MASK: usize = TIE_PARKED | TIE_BUSY | TIE_LOCK;
/// The alignment every pointer stored in a tie word must have (invariant 1).
pub const TIE_ALIGN: usize = 8;

const _: () = assert!(TIE_TAG_MASK == 0b111 && TIE_ALIGN == TIE_TAG_MASK + 1);
const _: () = assert!(core::mem::align_of::<TieWord>() <= TIE_ALIGN);
const _: () = assert!(core::mem::size_of::<TieWord>() <= TIE_ALIGN);

/// The tie word of a headered object, at `obj - 8` (see [`tie_of`](crate::tie_of)).
///
/// A thin atomic: the raw tagged word is loaded, stored and compared as a whole, so that a
/// state change (pointer and tags together) is one atomic step. The module docs give the
/// encoding; compose and take apart words with [`tie_with`], [`tie_ptr`] and [`tie_tag`].
///
/// ```
/// use core::ffi::c_void;
/// use core::sync::atomic::Ordering::{Acquire, Relaxed, Release};
/// use tether_alloc::{tie_ptr, tie_tag, tie_with, TieWord, TIE_BUSY, TIE_PARKED};
///
/// let mut wrapper = 0u64; // stands in for 8-aligned wrapper memory
/// let w = (&mut wrapper as *mut u64).cast::<c_void>();
/// let tie = TieWord::new();                               // (a) detached
/// assert!(tie.load(Relaxed).is_null());
/// tie.store(tie_with(w, 0), Release);                     // (b) bound to w
/// // A transition claims the word with the busy bit, then publishes the parked state.
/// let cur = tie.load(Acquire);
/// tie.compare_exchange(cur, tie_with(w, TIE_BUSY), Acquire, Relaxed).unwrap();
/// tie.store(tie_with(w, TIE_PARKED), Release);            // (c) parked
/// let now = tie.load(Acquire);
/// assert_eq!((tie_ptr(now), tie_tag(now)), (w, TIE_PARKED));
/// ```
#[repr(transparent)]
#[derive(Debug, Default)]
pub struct TieWord(AtomicPtr<c_void>);

impl TieWord {
    /// A detached word (state (a): null).
    #[inline]
    pub const fn new() -> Self {
        TieWord(AtomicPtr::new(ptr::null_mut()))
    }

    /// The raw tagged word.
    #[inline]
    pub fn load(&self, order: Ordering) -> *mut c_void {
        self.0.load(order)
    }

    /// Stores a raw tagged word (compose it with [`tie_with`]).
    #[inline]
    pub fn store(&self, word: *mut c_void, order: Ordering) {
        self.0.store(word, order)
    }

    /// Stores a raw tagged word and returns the previous one.
    #[inline]
    pub fn swap(&self, word: *mut c_void, order: Ordering) -> *mut c_void {
        self.0.swap(word, order)
    }

    /// Replaces `current` by `new` if the word is `current` (pointer and tags compared as one
    /// word); `Err` holds the word found.
    #[inline]
    pub fn compare_exchange(
        &self,
        current: *mut c_void,
        new: *mut c_void,
        success: Ordering,
        failure: Ordering,
    ) -> Result<*mut c_void, *mut c_void> {
        self.0.compare_exchange(current, new, success, failure)
    }

    /// As [`compare_exchange`](Self::compare_exchange), but may fail spuriously (for loops).
    #[inline]
    pub fn compare_exchange_weak(
        &self,
        current: *mut c_void,
        new: *mut c_void,
        success: Ordering,
        failure: Ordering,
    ) -> Result<*mut c_void, *mut c_void> {
        self.0.compare_exchange_weak(current, new, success, failure)
    }
}

/// The tag bits of a tie word (`word & TIE_TAG_MASK`).
///
/// Not a `const fn`: an address cannot be read in const evaluation.
///
/// ```
/// use tether_alloc::{tie_tag, TIE_BUSY, TIE_PARKED};
/// let word = core::ptr::without_provenance_mut(0x1000 | TIE_PARKED | TIE_BUSY);
/// assert_eq!(tie_tag(word), TIE_PARKED | TIE_BUSY);
/// ```
#[inline(always)]
pub fn tie_tag(word: *mut c_void) -> usize {
    word.addr() & TIE_TAG_MASK
}

/// The pointer in a tie word, tag bits cleared (provenance kept: it can be dereferenced).
///
/// ```
/// use tether_alloc::{tie_ptr, TIE_PARKED};
/// let word = core::ptr::without_provenance_mut(0x1000 | TIE_PARKED);
/// assert_eq!(tie_ptr(word).addr(), 0x1000);
/// ```
#[inline(always)]
pub fn tie_ptr(word: *mut c_void) -> *mut c_void {
    word.map_addr(|a| a & !TIE_TAG_MASK)
}

/// The tie word for pointer `p` with tag bits `tag` (`p | tag`, provenance kept).
///
/// In debug builds, panics (`debug_assert!`) if `p` is not [`TIE_ALIGN`]-aligned (its low bits
/// would read as tags: invariant 1) or if `tag` has bits outside [`TIE_TAG_MASK`].
///
/// ```
/// use tether_alloc::{tie_ptr, tie_tag, tie_with, TIE_PARKED};
/// let p = core::ptr::without_provenance_mut(0x2000);
/// let word = tie_with(p, TIE_PARKED);
/// assert_eq!((tie_ptr(word), tie_tag(word)), (p, TIE_PARKED));
/// ```
#[inline(always)]
pub fn tie_with(p: *mut c_void, tag: usize) -> *mut c_void {
    debug_assert!(
        p.addr() % TIE_ALIGN == 0,
        "tie word pointer {p:p} is not {TIE_ALIGN}-aligned"
    );
    debug_assert!(
        tag & !TIE_TAG_MASK == 0,
        "tie tag {tag:#x} outside the mask"
    );
    p.map_addr(|a| a | tag)
}

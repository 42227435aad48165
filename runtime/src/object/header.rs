//! The [`ObjHeader`] at offset 0 of every object, the encoding of its count word ([`Counts`]),
//! the [`Deleter`] contract, and the way from an object to its tie words.
//!
//! Bottom of the object floor: uses `crate::sync` only. Owns invariant 4 (`type_index` and
//! `deleter` never change after [`ObjHeader::new`]); the accessors here rely on invariants 1 and
//! 2 (the caller's count keeps the block, and so the header and the tie words, alive).

use crate::sync::{AtomicU64, Ordering, TieWords};
use core::fmt;
use core::ptr::NonNull;

/// One strong reference in `counts`.
pub(crate) const STRONG_ONE: u64 = 1;
/// One weak reference in `counts`.
pub(crate) const WEAK_ONE: u64 = 1 << 32;
/// The strong half of `counts`.
const STRONG_MASK: u64 = WEAK_ONE - 1;
/// Either half reaching this aborts (see the module docs of `crate::object`).
pub(super) const MAX_COUNT: u64 = i32::MAX as u64;

/// A snapshot of an object's count word: the strong count in the low 32 bits, the weak count
/// (which includes the one weak reference all strong references share) in the high 32 bits.
///
/// The word itself is an [`AtomicU64`] ([`counts`]); this names what a value read from it
/// means, so that no mask is written outside this file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Counts(pub(crate) u64);

impl Counts {
    /// Exactly one handle exists, and it is strong (it holds the strong refs' weak count).
    pub(crate) const UNIQUE: Counts = Counts(STRONG_ONE | WEAK_ONE);
    /// Strong 0, weak 1: the last reference is a weak one.
    pub(crate) const LAST_WEAK: Counts = Counts(WEAK_ONE);

    /// The strong count.
    #[inline(always)]
    pub(crate) const fn strong(self) -> u64 {
        self.0 & STRONG_MASK
    }

    /// The weak count, the strong refs' shared weak reference included.
    #[inline(always)]
    pub(crate) const fn weak(self) -> u64 {
        self.0 >> 32
    }

    /// Whether this is [`Counts::UNIQUE`]: one strong handle, no other handle at all.
    #[inline(always)]
    pub(crate) const fn is_unique(self) -> bool {
        self.0 == Counts::UNIQUE.0
    }
}

#[cold]
#[inline(never)]
pub(super) fn count_overflow() -> ! {
    // Like Arc: continuing would risk a use-after-free; a process with 2^31 handles to one
    // object is broken anyway.
    std::process::abort()
}

/// What a [`Deleter`] is asked to do.
///
/// ```
/// use tether_runtime::DeleteKind;
/// assert_ne!(DeleteKind::DropValue, DeleteKind::FreeBlock);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeleteKind {
    /// Drop the value in place (the strong count reached 0). The block stays.
    DropValue,
    /// Return the block through `ALLOC.deallocate` (the weak count reached 0).
    FreeBlock,
}

/// The per-type destruction routine stored in every [`ObjHeader`].
///
/// # Safety (for callers)
/// The pointer is a live object of the type the deleter belongs to; `DropValue` is called once,
/// when the strong count reaches 0; `FreeBlock` once, after `DropValue`, when the weak count
/// reaches 0.
pub type Deleter = unsafe fn(NonNull<ObjHeader>, DeleteKind);

/// The header at offset 0 of every object: reference counts, type index and deleter.
///
/// ```
/// use tether_runtime::{object_type, ObjRef, Object};
/// struct Leaf(u8);
/// object_type!(Leaf, "doc.object.Leaf");
/// let r = ObjRef::new(Leaf(1));
/// // SAFETY: `r` keeps the object alive while `h` is used.
/// let h = unsafe { r.as_ptr().as_ref() };
/// assert_eq!(h.type_index(), Leaf::type_index());
/// assert_eq!(h.strong_count(), 1);
/// ```
#[repr(C)]
pub struct ObjHeader {
    /// Strong count in the low 32 bits, weak count in the high 32 bits ([`Counts`]).
    counts: AtomicU64,
    /// Immutable (invariant 4).
    type_index: u32,
    /// Immutable (invariant 4); matches the block's layout (invariant 3).
    pub(super) deleter: Deleter,
    /// Under loom, the tie words live here (as loom atomics) instead of in the allocator header,
    /// so that the tie machine can be modelled; see `crate::tie`.
    #[cfg(loom)]
    pub(super) tie: crate::sync::LoomTie,
}

impl ObjHeader {
    /// A header with one strong reference (which holds the strong refs' weak reference).
    pub(crate) fn new(type_index: u32, deleter: Deleter) -> Self {
        ObjHeader {
            counts: AtomicU64::new(Counts::UNIQUE.0),
            type_index,
            deleter,
            #[cfg(loom)]
            tie: crate::sync::LoomTie::new(),
        }
    }

    /// The object's type index.
    #[inline]
    pub fn type_index(&self) -> u32 {
        self.type_index
    }

    /// The number of strong references (a racy snapshot).
    #[inline]
    pub fn strong_count(&self) -> usize {
        Counts(self.counts.load(Ordering::Relaxed)).strong() as usize
    }

    /// The number of [`WeakRef`](crate::WeakRef)s (a racy snapshot; the strong refs' shared weak
    /// count is not included).
    #[inline]
    pub fn weak_count(&self) -> usize {
        let c = Counts(self.counts.load(Ordering::Relaxed));
        let held_by_strong = u64::from(c.strong() != 0);
        (c.weak() - held_by_strong) as usize
    }
}

impl fmt::Debug for ObjHeader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ObjHeader")
            .field("strong", &self.strong_count())
            .field("weak", &self.weak_count())
            .field("type_index", &self.type_index)
            .finish()
    }
}

/// The count word of a live object.
///
/// # Safety
/// `p` is a live object (invariant 2: the caller holds a strong or weak count), and the
/// reference is not used after that count is given up.
#[inline(always)]
pub(crate) unsafe fn counts<'a>(p: NonNull<ObjHeader>) -> &'a AtomicU64 {
    // SAFETY: forwarded to the caller; only the atomic field is borrowed, never the whole
    // header, so no reference outlives the block.
    unsafe { &(*p.as_ptr()).counts }
}

/// The tie words of the object `p`.
///
/// # Safety
/// The caller holds a strong or weak count on `p` for as long as the reference is used.
#[inline(always)]
pub(crate) unsafe fn tie_words<'a>(p: NonNull<ObjHeader>) -> &'a TieWords {
    #[cfg(not(loom))]
    // SAFETY: every object comes from ALLOC (object invariant 1); the caller's count keeps the
    // block, and so the tie header, alive.
    unsafe {
        tether_alloc::header_of(p.cast())
    }
    #[cfg(loom)]
    // SAFETY: as above; under loom the tie words are in the ObjHeader.
    unsafe {
        &(*p.as_ptr()).tie
    }
}

/// Releases the cached wrapper memory of an object that just died (strong count 0) while weak
/// references keep its block: `free_cb(cached_mem)` runs now, once, instead of when the block
/// is freed.
///
/// # Safety
/// The object's strong count is 0 and the caller holds a weak count.
pub(super) unsafe fn release_cached_at_death(p: NonNull<ObjHeader>) {
    #[cfg(not(loom))]
    // SAFETY: the caller's weak count keeps the block (and the tie header) alive; the object is
    // dead, so the (free_cb, cached_mem) pair set by `park` is due (the funnel contract).
    unsafe {
        tether_alloc::header_of(p.cast()).release_cached();
    }
    #[cfg(loom)]
    // SAFETY: as above, on the loom copy of the tie words.
    unsafe {
        (*p.as_ptr()).tie.release_cached();
    }
}

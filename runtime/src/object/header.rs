//! The [`ObjHeader`] at offset 0 of every object, the encoding of its count word ([`Counts`]),
//! the [`Deleter`] contract, and the way from an object to its tie words.
//!
//! Bottom of the object floor: uses `crate::sync` only. Owns invariant 4 (`type_index` and
//! `deleter` never change after [`ObjHeader::new`]); the accessors here rely on invariants 1 and
//! 2 (the caller's count keeps the block, and so the header and the tie words, alive).

use crate::sync::{AtomicU64, Ordering, TieWord};
use core::fmt;
use core::ptr::NonNull;
use core::sync::atomic::AtomicU16;

/// One strong reference in `counts`.
pub(crate) const STRONG_ONE: u64 = 1;
/// One weak reference in `counts`.
pub(crate) const WEAK_ONE: u64 = 1 << 32;
/// The top bit of the strong half: the object's host wrapper is *kept* (`crate::tie::keep`):
/// the object owns a host reference to its wrapper, and the wrapper's own strong reference is
/// among the strong count. A release that would leave that reference alone claims the flag
/// instead (`rc::release_strong_with`). Strong counts never reach it ([`MAX_COUNT`]).
pub(crate) const KEPT: u64 = 1 << 31;
/// The strong half of `counts`, without [`KEPT`].
const STRONG_MASK: u64 = KEPT - 1;
/// The top bit of the weak half: the cycle collector found the object to be garbage and will
/// destroy it (`crate::cycles`): weak references no longer upgrade, as if it were dead. Weak
/// counts never reach it ([`MAX_COUNT`]).
pub(crate) const DOOMED: u64 = 1 << 63;
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

    /// Whether the [`KEPT`] flag is set.
    #[inline(always)]
    pub(crate) const fn is_kept(self) -> bool {
        self.0 & KEPT != 0
    }

    /// Kept, with two strong references: the wrapper's and the releaser's. The release of the
    /// latter must claim the flag (`rc::release_strong_with`): afterwards only the wrapper would
    /// hold the object, and the object the wrapper.
    #[inline(always)]
    pub(crate) const fn is_kept_pair(self) -> bool {
        self.0 & (KEPT | STRONG_MASK) == KEPT | 2
    }

    /// The weak count, the strong refs' shared weak reference included.
    #[inline(always)]
    pub(crate) const fn weak(self) -> u64 {
        (self.0 & !DOOMED) >> 32
    }

    /// Whether the [`DOOMED`] flag is set.
    #[inline(always)]
    pub(crate) const fn is_doomed(self) -> bool {
        self.0 & DOOMED != 0
    }

    /// The word without the [`DOOMED`] flag (for the comparisons with whole-word constants).
    #[inline(always)]
    pub(crate) const fn undoomed(self) -> Counts {
        Counts(self.0 & !DOOMED)
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

/// The per-type destruction routine of every object, kept in the allocator header's owner word
/// ([`tether_alloc::aux_of`]) beside its tie word.
///
/// # Safety (for callers)
/// The pointer is a live object of the type the deleter belongs to; `DropValue` is called once,
/// when the strong count reaches 0; `FreeBlock` once, after `DropValue`, when the weak count
/// reaches 0.
pub type Deleter = unsafe fn(NonNull<ObjHeader>, DeleteKind);

/// The header at offset 0 of every object: reference counts and type index (16 bytes; the
/// deleter is in the allocator header before it, see `deleter` in this module).
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
    /// Immutable (invariant 4): [`FLAG_BARE`] for objects allocated without a tie header.
    flags: u16,
    /// The object's own spin lock word, for its type's use (records guard their reference
    /// slots with it: `crate::types::record`); 0 when free. Other types leave it alone.
    lock: AtomicU16,
    /// Under loom, the tie word lives here (a loom atomic) instead of in the allocator header,
    /// so that the tie machine can be modelled; see `crate::tie`.
    #[cfg(loom)]
    pub(super) tie: crate::sync::LoomTie,
}

#[cfg(not(loom))]
const _: () = assert!(core::mem::size_of::<ObjHeader>() == 16);

impl ObjHeader {
    /// A header with one strong reference (which holds the strong refs' weak reference). The
    /// object's deleter goes into the allocator header with [`set_deleter`].
    pub(crate) fn new(type_index: u32) -> Self {
        Self::with_flags(type_index, 0)
    }

    /// A header for an object of a header-less type ([`FLAG_BARE`]): allocated by `BARE`, with
    /// no tie word and no owner word before it; its deleter is in [`TYPE_DELETERS`].
    /// A header for a record object ([`FLAG_RECORD`]): its deleter is found by type index, so
    /// its owner word is free for the cycle collector's registry index (`crate::tracked`).
    pub(crate) fn new_record(type_index: u32) -> Self {
        Self::with_flags(type_index, FLAG_RECORD)
    }

    pub(crate) fn new_bare(type_index: u32) -> Self {
        Self::with_flags(type_index, FLAG_BARE)
    }

    fn with_flags(type_index: u32, flags: u16) -> Self {
        ObjHeader {
            counts: AtomicU64::new(Counts::UNIQUE.0),
            type_index,
            flags,
            lock: AtomicU16::new(0),
            #[cfg(loom)]
            tie: crate::sync::LoomTie::new(),
        }
    }

    /// The object's type index.
    #[inline]
    pub fn type_index(&self) -> u32 {
        self.type_index
    }

    /// Whether the object has a tie header (its type is not header-less): only such objects can
    /// be tied to a host wrapper.
    #[inline]
    pub fn has_tie_header(&self) -> bool {
        self.flags & FLAG_BARE == 0
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

/// The lock word of a live object (see `ObjHeader`'s field); its protocol belongs to the type
/// that uses it.
///
/// # Safety
/// As for [`counts`].
#[inline(always)]
pub(crate) unsafe fn lock_word<'a>(p: NonNull<ObjHeader>) -> &'a AtomicU16 {
    // SAFETY: forwarded; only the atomic field is borrowed.
    unsafe { &(*p.as_ptr()).lock }
}

/// Records `deleter` as the deleter of the object being built at `p` (invariant 3).
///
/// # Safety
/// `p` was just built (by `ALLOC`, or by `BARE` for a header-less type, with its `ObjHeader`
/// initialized) and is not shared yet; `deleter` matches its layout.
#[inline(always)]
pub(crate) unsafe fn set_deleter(p: NonNull<ObjHeader>, deleter: Deleter) {
    // SAFETY: `p`'s header is initialized (caller); `flags` and `type_index` are immutable.
    let (by_type, index) = unsafe { (deleter_by_type(p), (*p.as_ptr()).type_index) };
    if by_type {
        // No owner word (a header-less object, or the Narrow header): by type index.
        register_type_deleter(index, deleter);
    } else {
        // SAFETY: a tied object from ALLOC, whose Wide header has the owner word (caller).
        let word = unsafe { tether_alloc::aux_of(p.cast()) };
        // Relaxed: written before the object is handed out; whoever receives the handle was
        // synchronized with its creation by the channel that carried it.
        word.store(deleter as *mut (), core::sync::atomic::Ordering::Relaxed);
    }
}

/// The object was allocated without a tie header (by `crate::heap::BARE`): a header-less type.
pub(crate) const FLAG_BARE: u16 = 1;
/// The object is a record: its deleter is its type's (every record has the same one), found by
/// type index, and its owner word holds its cycle-collector registry index instead
/// (`crate::tracked`).
pub(crate) const FLAG_RECORD: u16 = 2;

/// Whether the live object `p` finds its deleter by type index (no owner word, or the owner
/// word serves the cycle collector).
///
/// # Safety
/// `p` is an object whose header is alive.
#[inline(always)]
unsafe fn deleter_by_type(p: NonNull<ObjHeader>) -> bool {
    // SAFETY: forwarded; `flags` is immutable (invariant 4).
    cfg!(feature = "narrow-header")
        || unsafe { (*p.as_ptr()).flags } & (FLAG_BARE | FLAG_RECORD) != 0
}

/// The owner word of the record `p`, free for the cycle collector (Wide header builds).
///
/// # Safety
/// `p` is a live record object ([`FLAG_RECORD`]) allocated by `ALLOC` with the Wide header.
#[cfg(not(feature = "narrow-header"))]
#[inline(always)]
pub(crate) unsafe fn record_owner_word<'a>(
    p: NonNull<ObjHeader>,
) -> &'a core::sync::atomic::AtomicPtr<()> {
    // SAFETY: the header is alive (caller); `flags` is immutable.
    debug_assert!(unsafe { (*p.as_ptr()).flags } & FLAG_RECORD != 0);
    // SAFETY: forwarded (caller).
    unsafe { tether_alloc::aux_of(p.cast()) }
}

/// Deleters by type index, for objects with no owner word to keep theirs in: header-less types,
/// and every type with the `narrow-header` feature.
static TYPE_DELETERS: crate::table::Table<Deleter> = crate::table::Table::new();
/// Serializes the writers of [`TYPE_DELETERS`].
static TYPE_DELETERS_LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Records `deleter` as the deleter of type `index` in [`TYPE_DELETERS`] (idempotent: one
/// lock-free read once it is there).
fn register_type_deleter(index: u32, deleter: Deleter) {
    if TYPE_DELETERS.get(index).is_some() {
        return;
    }
    let _g = TYPE_DELETERS_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    if TYPE_DELETERS.get(index).is_none() {
        TYPE_DELETERS.set(index, Box::leak(Box::new(deleter)));
    }
}

/// Whether the live object `p` is header-less.
///
/// # Safety
/// `p` is an object whose header is alive.
#[inline(always)]
pub(crate) unsafe fn is_bare(p: NonNull<ObjHeader>) -> bool {
    // SAFETY: forwarded; `flags` is immutable (invariant 4).
    unsafe { (*p.as_ptr()).flags & FLAG_BARE != 0 }
}

/// The deleter of the object `p` (invariant 3).
///
/// # Safety
/// `p` is an object whose header is alive (the caller holds or is releasing a count).
#[inline(always)]
pub(crate) unsafe fn deleter(p: NonNull<ObjHeader>) -> Deleter {
    // SAFETY: the header is alive (caller).
    if unsafe { deleter_by_type(p) } {
        // SAFETY: as above; `type_index` is immutable.
        let index = unsafe { (*p.as_ptr()).type_index };
        // A header-less object is built only after its type's deleter is registered.
        return *TYPE_DELETERS
            .get(index)
            .expect("header-less type without a deleter");
    }
    // SAFETY: as in `set_deleter`; the word is immutable after construction (invariant 4).
    let raw = unsafe { tether_alloc::aux_of(p.cast()) }.load(core::sync::atomic::Ordering::Relaxed);
    debug_assert!(!raw.is_null(), "an object without a deleter");
    // SAFETY: only `Deleter`s are stored there (`set_deleter`); fn and data pointers have the
    // same size on the supported targets.
    unsafe { core::mem::transmute::<*mut (), Deleter>(raw) }
}

/// The tie word of the object `p`.
///
/// # Safety
/// The caller holds a strong or weak count on `p` for as long as the reference is used.
#[inline(always)]
pub(crate) unsafe fn tie_word<'a>(p: NonNull<ObjHeader>) -> &'a TieWord {
    // SAFETY: the caller's count keeps the header alive.
    let bare = unsafe { is_bare(p) };
    assert!(
        !bare,
        "tether_runtime: this object's type is header-less: it has no tie word and cannot be \
         tied to a host wrapper"
    );
    #[cfg(not(loom))]
    // SAFETY: every object comes from ALLOC (object invariant 1), a headered kind; the caller's
    // count keeps the block, and so the tie word, alive.
    unsafe {
        tether_alloc::tie_of(p.cast())
    }
    #[cfg(loom)]
    // SAFETY: as above; under loom the tie word is in the ObjHeader.
    unsafe {
        &(*p.as_ptr()).tie
    }
}

/// Hands parked wrapper memory in `word` to the allocator's free callback (the host's
/// `free_cached`), once: the word is swapped to detached first. Does nothing unless parked.
pub(crate) fn release_parked(word: &TieWord) {
    // Relaxed first: nothing parked is the common case, and a stale "parked" is re-read by the
    // swap. AcqRel swap: acquire the parker's writes to the memory; release our take.
    if tether_alloc::tie_tag(word.load(Ordering::Relaxed)) & tether_alloc::TIE_PARKED == 0 {
        return;
    }
    let w = word.swap(core::ptr::null_mut(), Ordering::AcqRel);
    if tether_alloc::tie_tag(w) & tether_alloc::TIE_PARKED != 0 {
        if let Some(cb) = crate::heap::ALLOC.free_callback() {
            // SAFETY: the parked pointer was published by `park` for exactly this call, and the
            // swap made it ours alone (the funnel contract: at most once per parked memory).
            unsafe { cb(tether_alloc::tie_ptr(w)) };
        }
    }
}

/// Releases the cached wrapper memory of an object that just died (strong count 0) while weak
/// references keep its block: `free_cached(W)` runs now, once, instead of when the block is
/// freed.
///
/// # Safety
/// The object's strong count is 0 and the caller holds a weak count.
pub(super) unsafe fn release_cached_at_death(p: NonNull<ObjHeader>) {
    // SAFETY: the caller's weak count keeps the header alive.
    if unsafe { is_bare(p) } {
        return; // no tie word: nothing can be parked
    }
    // SAFETY: the caller's weak count keeps the block (and the tie word) alive.
    release_parked(unsafe { tie_word(p) });
}

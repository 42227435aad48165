//! Objects: the [`ObjHeader`] at offset 0 of every object, the strong handle [`ObjRef`], the
//! weak handle [`WeakRef`], and the reference-count protocol they share with [`ObjAny`].
//!
//! ```text
//!  block (from ALLOC)
//!  +---------------------------+--------------------------------------+------------------+
//!  | tether_alloc::Header (tie)| ObjHeader                            | value: T          |
//!  | py_obj cached_mem free_cb | counts: u64 | type_index | deleter   |                   |
//!  +---------------------------+--------------------------------------+------------------+
//!  ^ obj - HEADER_OFFSET       ^ obj: what ObjRef / ObjAny point at
//! ```
//!
//! # Counts
//!
//! `counts` packs the strong count in its low 32 bits and the weak count in its high 32 bits.
//! All strong references together hold one weak reference, so the block outlives the value
//! for as long as any [`WeakRef`] exists, and "strong 1, weak 1" ([`UNIQUE`]) means "exactly
//! one handle exists, and it is strong".
//!
//! # Invariants (relied on by every `unsafe` block in this crate that touches an object)
//!
//! 1. **Layout.** Every object is allocated by [`ALLOC`](crate::ALLOC) with an [`ObjHeader`] at
//!    offset 0, so the tie header is at `obj - HEADER_OFFSET`; the value follows at the offset
//!    its own layout gives (`ObjBox<T>` for Rust types, the record layout for records). Handles
//!    keep the pointer `ALLOC` returned (provenance over the whole block).
//! 2. **Handles own counts.** A live [`ObjRef`] or [`ObjAny`] owns one strong count, a live
//!    [`WeakRef`] one weak count; raw pointers from `into_raw` carry the count they were made
//!    from. Hence while a handle is live, strong >= 1 (strong handles) or weak >= 1 (weak
//!    handles), and the header (and, for strong handles, the value) is valid.
//! 3. **The deleter matches the layout.** `header.deleter` is the deleter of the type the block
//!    was built for: `DropValue` drops the value in place exactly once (after the strong count
//!    reached 0), `FreeBlock` returns the block through `ALLOC.deallocate` exactly once (after
//!    the weak count reached 0), which runs the tie funnel (`free_cb(cached_mem)`).
//! 4. **`type_index` and `deleter` are immutable** after construction; only `counts` changes.
//! 5. **One destruction, by the releasing thread.** The release that takes the strong count to 0
//!    (or finds `UNIQUE`) owes the object its destruction; it runs it now or pushes the object
//!    on its own thread's trashcan stack, which destroys it before that thread's outermost
//!    destruction returns ("Deep structures" below). A deferred object is reachable only from
//!    that stack.
//!
//! # Orderings
//!
//! Like `std::sync::Arc`: increments are `Relaxed` (a new reference is made from an existing
//! one, which already proves the object is alive; whoever receives the new handle synchronizes
//! through whatever channel carried it). Decrements are `Release` and the thread that takes a
//! count to zero issues an `Acquire` fence before destroying, so every use of the object through
//! another handle happens-before the destruction.
//!
//! The last drop does no read-modify-write at all when the counts read `UNIQUE` with an
//! `Acquire` load: no other handle exists, and none can appear (a new strong reference is made
//! from a strong or weak one, a new weak one from a strong or weak one, and we hold the only
//! one), so the value is dropped and the block freed directly. Otherwise one `fetch_sub`.
//!
//! Counts above `i32::MAX` (in either half) abort the process, as `Arc` does past
//! `isize::MAX`: a program needs 2^31 live handles to one object for that, and the half-word
//! headroom above the threshold keeps racing increments from carrying into the other half.
//!
//! # Deep structures: the trashcan
//!
//! Destroying an object drops its value, which releases the objects the value holds, which are
//! destroyed in turn: one nested destruction per level of the object graph. Without a bound, a
//! 200,000-node chain of records overflows the main thread's stack from safe code, and a thread
//! with a 256 KiB stack overflows at ~20,000; hosts' chains (record → host handle → host
//! dealloc → release of another object → …) recurse the same way, through the same release.
//!
//! So, as CPython's trashcan does, the one funnel where a value is destroyed after its strong
//! count reached 0 (`destroy`, reached from the UNIQUE fast path of `release_strong_with` and
//! from `release_last_strong`) counts the destructions nested on the current thread:
//! * below `MAX_DEPTH` (50; 8 under Miri, so that short chains exercise deferral) the
//!   destruction runs now, one level deeper;
//! * at `MAX_DEPTH` the object (strong count 0, value intact) is pushed on the thread's deferred
//!   stack instead, and its release returns;
//! * when the outermost destruction is done (depth back at 0) it destroys the deferred objects,
//!   iteratively, each at depth 1: what they release again runs inline up to the limit or is
//!   deferred.
//!
//! Stack use is bounded by `MAX_DEPTH` nested destructions (plus any host frames between them),
//! however deep the graph. What stays as it was:
//! * for the outermost caller destruction is synchronous: when its release returns, everything
//!   it made unreachable has been destroyed (values dropped, blocks freed or left to their weak
//!   references, cached wrapper memory released);
//! * per object the sequence is unchanged: `DropValue` (the fields drop in their usual order),
//!   then either `FreeBlock` (no weak reference) or `release_cached_at_death` and the weak
//!   release; a deferred object's block stays allocated meanwhile (by the strong refs' weak
//!   count, or, unique, by nobody else's reference at all);
//! * deferred objects are destroyed depth-first in the order the recursion reached them, so a
//!   chain's values drop in chain order.
//!
//! CAUTION: a destructor that releases an object must not assume the object is destroyed when
//! its release returns (it may have been deferred); only the outermost release guarantees that.
//! A panicking destructor unwinds to the outermost destruction, which destroys the remaining
//! deferred objects while unwinding (a second panic aborts, as in drop glue).
//!
//! Nothing on the drop path allocates in the common case, and nothing aborts on allocation
//! failure. There is no free word to link deferred objects through, as CPython links through its
//! GC header: once strong is 0, `counts` is still read and written by [`WeakRef`]s, the tie
//! words are public through [`WeakRef::header`], `type_index` may be read by deleters (the
//! record deleter does), `deleter` is needed to destroy the object, the 4 padding bytes after
//! `type_index` are too small, and the value is not dropped yet. The deferred stack is therefore
//! a thread-local `Vec` whose buffer is reserved once per thread (64 entries, kept between
//! drains) and grows with `try_reserve`; when that fails the object is destroyed inline (the
//! recursion this avoids, only when memory is exhausted). The nesting state has no destructor,
//! so it also works in thread-local destructors at thread exit. Values without drop glue (`!needs_drop::<T>()`) release nothing and bypass
//! the count. `debug_assert!`s check that a deferred object's strong count is 0 when it is
//! deposited (or the count still reads `UNIQUE` on the fast path, which does not decrement) and
//! again before its destruction. The trashcan is compiled out under `--cfg loom` (see
//! `object/trashcan.rs` for why).

use crate::sync::{fence, AtomicU64, Ordering};
use crate::types::{type_info, TypeInfo};
use crate::ALLOC;
use core::alloc::Layout;
use core::fmt;
use core::marker::PhantomData;
use core::mem::ManuallyDrop;
use core::ops::Deref;
use core::ptr::{self, NonNull};
use tether_alloc::allocator_api2::alloc::{AllocError, Allocator};
use tether_alloc::{header_of, Header};

mod trashcan;

/// One strong reference in `counts`.
pub(crate) const STRONG_ONE: u64 = 1;
/// One weak reference in `counts`.
pub(crate) const WEAK_ONE: u64 = 1 << 32;
/// The strong half of `counts`.
pub(crate) const STRONG_MASK: u64 = WEAK_ONE - 1;
/// Exactly one handle, a strong one (it holds the strong refs' weak count).
pub(crate) const UNIQUE: u64 = STRONG_ONE | WEAK_ONE;
/// Either half reaching this aborts (see the module docs).
const MAX_COUNT: u64 = i32::MAX as u64;

/// The ordering of the last-drop check and of the decrement; deliberately wrong under
/// `--cfg tether_loom_broken="release_relaxed"` (see `crate::sync`).
#[cfg(not(tether_loom_broken = "release_relaxed"))]
const RELEASE: Ordering = Ordering::Release;
#[cfg(not(tether_loom_broken = "release_relaxed"))]
const ACQUIRE: Ordering = Ordering::Acquire;
#[cfg(tether_loom_broken = "release_relaxed")]
const RELEASE: Ordering = Ordering::Relaxed;
#[cfg(tether_loom_broken = "release_relaxed")]
const ACQUIRE: Ordering = Ordering::Relaxed;

/// The acquire fence before destruction (absent in the broken variant).
#[inline(always)]
fn acquire_fence() {
    #[cfg(not(tether_loom_broken = "release_relaxed"))]
    fence(Ordering::Acquire);
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
    /// Strong count in the low 32 bits, weak count in the high 32 bits.
    counts: AtomicU64,
    type_index: u32,
    deleter: Deleter,
    /// Under loom, the tie words live here (as loom atomics) instead of in the allocator header,
    /// so that the tie machine can be modelled; see `crate::tie`.
    #[cfg(loom)]
    pub(crate) tie: crate::tie::LoomTie,
}

impl ObjHeader {
    /// A header with one strong reference (which holds the strong refs' weak reference).
    pub(crate) fn new(type_index: u32, deleter: Deleter) -> Self {
        ObjHeader {
            counts: AtomicU64::new(UNIQUE),
            type_index,
            deleter,
            #[cfg(loom)]
            tie: crate::tie::LoomTie::new(),
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
        (self.counts.load(Ordering::Relaxed) & STRONG_MASK) as usize
    }

    /// The number of [`WeakRef`]s (a racy snapshot; the strong refs' shared weak count is not
    /// included).
    #[inline]
    pub fn weak_count(&self) -> usize {
        let c = self.counts.load(Ordering::Relaxed);
        let weak = c >> 32;
        let held_by_strong = u64::from(c & STRONG_MASK != 0);
        (weak - held_by_strong) as usize
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

#[cold]
#[inline(never)]
fn count_overflow() -> ! {
    // Like Arc: continuing would risk a use-after-free; a process with 2^31 handles to one
    // object is broken anyway.
    std::process::abort()
}

/// Adds a strong reference.
///
/// # Safety
/// The caller holds a strong reference to the live object `p`.
#[inline(always)]
pub(crate) unsafe fn inc_strong(p: NonNull<ObjHeader>) {
    // Relaxed: see the module docs (a new reference from an existing one).
    // SAFETY: the caller's strong reference keeps the header alive.
    let old = unsafe { counts(p) }.fetch_add(STRONG_ONE, Ordering::Relaxed);
    if old & STRONG_MASK >= MAX_COUNT {
        count_overflow();
    }
}

/// Adds a weak reference.
///
/// # Safety
/// The caller holds a strong or weak reference to the object `p`.
#[inline(always)]
pub(crate) unsafe fn inc_weak(p: NonNull<ObjHeader>) {
    // Relaxed: as for strong increments.
    // SAFETY: the caller's reference keeps the header alive.
    let old = unsafe { counts(p) }.fetch_add(WEAK_ONE, Ordering::Relaxed);
    if old >> 32 >= MAX_COUNT {
        count_overflow();
    }
}

/// A type's destruction routine, as [`destroy`] with that type's deleter halves: `(p, unique)`.
/// [`destroy_of`] (inlined into `ObjRef<T>`'s drop) or [`destroy_erased`] (out of line: the
/// erased halves are indirect calls anyway, and the erased handle's drop stays small).
pub(crate) type Destroy = unsafe fn(NonNull<ObjHeader>, bool);

/// Releases one strong reference; `destroy` destroys the object if it was the last.
///
/// # Safety
/// The caller gives up a strong reference to the live object `p`; `destroy` is the object's
/// type's destruction routine ([`destroy_of`] for its Rust type, or [`destroy_erased`]).
#[inline(always)]
pub(crate) unsafe fn release_strong_with(p: NonNull<ObjHeader>, destroy: Destroy) {
    // SAFETY: our strong reference keeps the header alive until we give it up below.
    let c = unsafe { counts(p) };
    // Acquire: if this reads UNIQUE, every other handle that ever existed is gone; their
    // Release decrements must happen-before our destruction of the value and the block.
    if c.load(ACQUIRE) == UNIQUE {
        // SAFETY: we hold the only handle (module docs), so we may destroy the object now.
        unsafe { destroy(p, true) };
        return;
    }
    // Release: our uses of the value happen-before whoever destroys it.
    let old = c.fetch_sub(STRONG_ONE, RELEASE);
    if old & STRONG_MASK != 1 {
        return;
    }
    // SAFETY: we released the last strong reference (forwarded otherwise).
    unsafe { release_last_strong(p, old, destroy) }
}

/// The destruction after the last strong reference was released by a `fetch_sub` that read
/// `old` (out of line: the common non-last release stays small).
///
/// # Safety
/// As for [`release_strong_with`], and the caller's decrement took the strong count to 0.
#[inline(never)]
unsafe fn release_last_strong(p: NonNull<ObjHeader>, old: u64, destroy: Destroy) {
    // Acquire: the other strong holders' Release decrements happen-before the destructor.
    acquire_fence();
    // old == UNIQUE: no weak reference existed, and none can appear once strong is 0, so nobody
    // else can reach the block.
    // SAFETY: strong reached 0, so the value is ours to drop (invariant 3); the strong refs'
    // weak reference, still held, keeps the block alive (or, unique, it is ours alone).
    unsafe { destroy(p, old == UNIQUE) }
}

/// [`Destroy`] for `ObjBox<T>` objects. A `T` without drop glue releases nothing, so its
/// destruction skips the trashcan's count.
///
/// # Safety
/// As for [`destroy`], for an `ObjBox<T>` object.
#[inline(always)]
unsafe fn destroy_of<T>(p: NonNull<ObjHeader>, unique: bool) {
    let may_recurse = core::mem::needs_drop::<T>();
    // SAFETY: forwarded; the halves are ObjBox<T>'s (invariant 3).
    unsafe {
        destroy(
            p,
            unique,
            may_recurse,
            drop_value_of::<T>,
            free_block_of::<T>,
        )
    }
}

/// [`Destroy`] through the header's deleter, for any object.
///
/// # Safety
/// As for [`destroy`].
#[inline(never)]
unsafe fn destroy_erased(p: NonNull<ObjHeader>, unique: bool) {
    // SAFETY: forwarded; the header's deleter matches the layout (invariant 3).
    unsafe { destroy(p, unique, true, erased_drop_value, erased_free_block) }
}

/// The funnel: every destruction of a value whose strong count reached 0 comes through here, and
/// through the trashcan (module docs, "Deep structures"), which runs it now, nested one level
/// deeper, or defers it to the bottom of this thread's destructions.
///
/// # Safety
/// `p`'s strong count reached 0 by the caller's release (or, `unique`, the caller held the only
/// handle): the caller owes `p` its destruction, which this call takes over. `unique` says that
/// no weak reference exists; the halves are the object's deleter halves (invariant 3), and
/// `may_recurse` is false only if `drop_value` releases nothing (then the count is skipped).
#[inline(always)]
unsafe fn destroy(
    p: NonNull<ObjHeader>,
    unique: bool,
    may_recurse: bool,
    drop_value: unsafe fn(NonNull<ObjHeader>),
    free_block: unsafe fn(NonNull<ObjHeader>),
) {
    if !may_recurse {
        // SAFETY: forwarded; a value without drop glue releases nothing, so nothing nests.
        unsafe { finish(p, unique, drop_value, free_block) };
        return;
    }
    // SAFETY: forwarded: the strong count is 0 and we are about to destroy `p` with `unique`.
    let Some(_level) = (unsafe { trashcan::enter(p, unique) }) else {
        return; // deferred: destroyed by the bottom destruction of this thread
    };
    // SAFETY: forwarded.
    unsafe { finish(p, unique, drop_value, free_block) };
    // `_level` ends here: one level up again (at the bottom, the deferred objects go now).
}

/// One object's destruction, in the order it always had: the value, then the block directly
/// (`unique`: no weak reference exists) or, with weak references, the cached wrapper memory and
/// the strong refs' weak count.
///
/// # Safety
/// As for [`destroy`] (which either runs this at once or defers it to the trashcan's drain).
#[inline(always)]
unsafe fn finish(
    p: NonNull<ObjHeader>,
    unique: bool,
    drop_value: unsafe fn(NonNull<ObjHeader>),
    free_block: unsafe fn(NonNull<ObjHeader>),
) {
    // SAFETY: strong is 0: the value is ours to drop, once (invariant 3); the block is alive.
    unsafe { drop_value(p) };
    if unique {
        // SAFETY: no other reference exists or can appear: we own the block exclusively.
        unsafe { free_block(p) };
        return;
    }
    // Weak references keep the block: hand the cached wrapper memory back now rather than when
    // the last weak reference goes (the object is dead; nobody can revive it).
    // SAFETY: the object is dead and we still hold the strong refs' weak count.
    unsafe { crate::tie::release_cached_at_death(p) };
    // SAFETY: we give up the strong refs' weak count.
    unsafe { release_weak_with(p, free_block) }
}

/// Releases one weak reference, freeing the block if it was the last.
///
/// # Safety
/// The caller gives up a weak count on the object `p` (its header is alive); `free_block` is
/// the object's `FreeBlock` half.
#[inline]
pub(crate) unsafe fn release_weak_with(
    p: NonNull<ObjHeader>,
    free_block: unsafe fn(NonNull<ObjHeader>),
) {
    // SAFETY: our weak count keeps the header alive until we give it up.
    let c = unsafe { counts(p) };
    // Acquire: reading "strong 0, weak 1" means every other handle is gone; their releases
    // (and their last reads of the header) happen-before the free.
    if c.load(Ordering::Acquire) == WEAK_ONE {
        // SAFETY: ours is the only reference, and no new one can be made (strong is 0).
        unsafe { free_block(p) };
        return;
    }
    // Release: our reads of the header happen-before whoever frees the block.
    if c.fetch_sub(WEAK_ONE, Ordering::Release) == WEAK_ONE {
        // Acquire: the other weak holders' releases happen-before the free.
        fence(Ordering::Acquire);
        // SAFETY: the weak count reached 0: the block is ours to free.
        unsafe { free_block(p) };
    }
}

/// `DropValue` through the header's deleter.
///
/// # Safety
/// The strong count of `p` reached 0 (the `DropValue` precondition).
unsafe fn erased_drop_value(p: NonNull<ObjHeader>) {
    // SAFETY: the caller (a release routine) guarantees the DropValue precondition; the deleter
    // matches the layout (invariant 3).
    unsafe { ((*p.as_ptr()).deleter)(p, DeleteKind::DropValue) }
}

/// `FreeBlock` through the header's deleter.
///
/// # Safety
/// The weak count of `p` reached 0 (the `FreeBlock` precondition).
unsafe fn erased_free_block(p: NonNull<ObjHeader>) {
    // SAFETY: as for `erased_drop_value`, for FreeBlock.
    unsafe { ((*p.as_ptr()).deleter)(p, DeleteKind::FreeBlock) }
}

/// Frees an object's block with the layout it was allocated with.
///
/// # Safety
/// `p` is an object block allocated by `ALLOC` with `layout`, whose value has been dropped and
/// whose counts are all released; nothing uses it afterwards.
#[inline]
pub(crate) unsafe fn free_block_layout(p: NonNull<ObjHeader>, layout: Layout) {
    #[cfg(loom)]
    // SAFETY: the block is still allocated; under loom the tie words are in the ObjHeader, so the
    // funnel the allocator runs on its own header is emulated on them here, then the header
    // (which owns loom objects) is dropped.
    unsafe {
        (*p.as_ptr()).tie.release_cached();
        ptr::drop_in_place(p.as_ptr());
    }
    // SAFETY: invariant 1: allocated by ALLOC with `layout`; the caller guarantees exclusivity.
    // `deallocate` runs the funnel on the tie header (free_cb(cached_mem), once).
    unsafe { ALLOC.deallocate(p.cast(), layout) }
}

/// The block layout of a Rust object: the header, then the value.
#[repr(C)]
pub(crate) struct ObjBox<T> {
    header: ObjHeader,
    value: T,
}

/// A pointer to the value of a `ObjBox<T>` object.
#[inline(always)]
fn value_ptr<T>(p: NonNull<ObjHeader>) -> *mut T {
    // No reference is created: `&raw mut` on a place through a raw pointer keeps the block's
    // provenance, and the arithmetic stays in bounds (invariant 1).
    let b = p.as_ptr().cast::<ObjBox<T>>();
    // SAFETY: `b` points into a live ObjBox<T> allocation (callers hold a count); computing a
    // field address does not read memory.
    unsafe { &raw mut (*b).value }
}

/// `DropValue` for `ObjBox<T>`.
///
/// # Safety
/// As for [`DeleteKind::DropValue`].
unsafe fn drop_value_of<T>(p: NonNull<ObjHeader>) {
    // SAFETY: the caller guarantees the strong count reached 0 and this runs once (invariant 3).
    unsafe { ptr::drop_in_place(value_ptr::<T>(p)) }
}

/// `FreeBlock` for `ObjBox<T>`.
///
/// # Safety
/// As for [`DeleteKind::FreeBlock`].
unsafe fn free_block_of<T>(p: NonNull<ObjHeader>) {
    // SAFETY: the caller guarantees the weak count reached 0; the block was allocated with
    // this layout by `ObjRef::try_new`.
    unsafe { free_block_layout(p, Layout::new::<ObjBox<T>>()) }
}

/// The [`Deleter`] of `ObjBox<T>` objects.
///
/// # Safety
/// The [`Deleter`] contract.
unsafe fn deleter_of<T>(p: NonNull<ObjHeader>, kind: DeleteKind) {
    // SAFETY: forwarded: the Deleter contract is the union of the two halves' preconditions.
    unsafe {
        match kind {
            DeleteKind::DropValue => drop_value_of::<T>(p),
            DeleteKind::FreeBlock => free_block_of::<T>(p),
        }
    }
}

/// A Rust type that can live in an object: it has a registered type index.
///
/// Implement it with [`object_type!`](crate::object_type), which registers the type once per
/// process and then answers with one acquire load.
///
/// # Safety
///
/// Downcasts ([`ObjAny::downcast`], [`ObjAny::downcast_ref`], [`ObjAny::as_typed`]) trust the
/// type index: an implementation must return the same index on every call, obtained from
/// [`register_rust_type`](crate::register_rust_type) for this type alone (no other type, Rust
/// or record, may report it). `object_type!` guarantees this; that is why the trait is `unsafe`
/// (the contract sketches a safe trait, but a safe hand-written `impl` returning another
/// type's index would make the safe downcasts unsound).
///
/// ```
/// use tether_runtime::{object_type, type_info, Object};
/// struct Counter(u64);
/// object_type!(Counter, "doc.Counter");
/// let ti = Counter::type_index();
/// assert_eq!(type_info(ti).unwrap().name, "doc.Counter");
/// assert_eq!(Counter::type_index(), ti);
/// ```
pub unsafe trait Object: Send + Sync + 'static {
    /// This type's index in the registry.
    fn type_index() -> u32;

    /// This type's registry entry.
    fn type_info() -> &'static TypeInfo {
        // A registered index always has an entry (entries are never removed).
        type_info(Self::type_index()).expect("registered type index has no entry")
    }
}

/// A strong, typed reference to an object: the runtime's `Arc<T>`.
///
/// ```
/// use tether_runtime::{object_type, ObjRef};
/// struct Point { x: i64 }
/// object_type!(Point, "doc.ObjRef.Point");
///
/// let a = ObjRef::new(Point { x: 1 });
/// let b = a.clone();
/// assert!(a.ptr_eq(&b));
/// assert_eq!((a.strong_count(), a.x), (2, 1));
/// drop(b);
/// let mut a = a;
/// a.get_mut().unwrap().x = 5;
/// assert_eq!(a.try_unwrap().ok().unwrap().x, 5);
/// ```
#[repr(transparent)]
pub struct ObjRef<T: Object> {
    ptr: NonNull<ObjHeader>,
    _owns: PhantomData<T>,
}

// SAFETY: an ObjRef gives shared access (&T) to its value from any thread and may drop it on any
// thread, which is sound exactly when T is Send + Sync (as for Arc<T>); the counts are atomic.
unsafe impl<T: Object + Send + Sync> Send for ObjRef<T> {}
// SAFETY: as above.
unsafe impl<T: Object + Send + Sync> Sync for ObjRef<T> {}

impl<T: Object> ObjRef<T> {
    /// Allocates an object holding `value`. Aborts through `handle_alloc_error` on OOM (like
    /// `Arc::new`).
    #[inline]
    pub fn new(value: T) -> Self {
        match Self::try_new(value) {
            Ok(r) => r,
            Err(AllocError) => std::alloc::handle_alloc_error(Layout::new::<ObjBox<T>>()),
        }
    }

    /// Allocates an object holding `value`, or returns `AllocError` (dropping `value`).
    ///
    /// ```
    /// use tether_runtime::{object_type, ObjRef};
    /// struct Unit;
    /// object_type!(Unit, "doc.try_new.Unit");
    /// assert!(ObjRef::try_new(Unit).is_ok());
    /// ```
    #[inline]
    pub fn try_new(value: T) -> Result<Self, AllocError> {
        let type_index = T::type_index();
        let block = ALLOC.allocate(Layout::new::<ObjBox<T>>())?;
        let b = block.cast::<ObjBox<T>>();
        // SAFETY: `b` is a fresh allocation valid and aligned for ObjBox<T> (invariant 1).
        unsafe {
            b.as_ptr().write(ObjBox {
                header: ObjHeader::new(type_index, deleter_of::<T>),
                value,
            })
        };
        Ok(ObjRef {
            ptr: b.cast(),
            _owns: PhantomData,
        })
    }

    /// Whether two handles point at the same object.
    #[inline]
    pub fn ptr_eq(&self, other: &Self) -> bool {
        self.ptr == other.ptr
    }

    /// The number of strong references (a racy snapshot).
    #[inline]
    pub fn strong_count(&self) -> usize {
        self.header().strong_count()
    }

    /// The number of [`WeakRef`]s (a racy snapshot).
    #[inline]
    pub fn weak_count(&self) -> usize {
        self.header().weak_count()
    }

    /// Mutable access when this is the only handle (no other strong and no weak reference).
    #[inline]
    pub fn get_mut(&mut self) -> Option<&mut T> {
        // Acquire: as in the last-drop check: the other handles' uses happen-before ours. No
        // handle can appear concurrently (we hold the only one, and `&mut self`).
        if self.counts().load(Ordering::Acquire) == UNIQUE {
            // SAFETY: unique, so no other reference to the value exists or can be made while
            // the returned borrow (tied to &mut self) lives.
            Some(unsafe { &mut *value_ptr::<T>(self.ptr) })
        } else {
            None
        }
    }

    /// The value, if this is the only strong reference; otherwise `Err(self)`. Weak references
    /// may exist: they fail to upgrade from then on.
    #[inline]
    pub fn try_unwrap(self) -> Result<T, Self> {
        let c = self.counts();
        // Acquire on both paths: the other handles' uses of the value happen-before we move it.
        if c.load(Ordering::Acquire) != UNIQUE {
            let mut cur = c.load(Ordering::Relaxed);
            loop {
                if cur & STRONG_MASK != 1 {
                    return Err(self);
                }
                match c.compare_exchange_weak(
                    cur,
                    cur - STRONG_ONE,
                    Ordering::Acquire,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => break,
                    Err(now) => cur = now,
                }
            }
            let this = ManuallyDrop::new(self);
            // SAFETY: strong is 0 and we took it there: the value is ours to move out (it will
            // not be dropped in place: DropValue never runs for this object).
            let value = unsafe { ptr::read(value_ptr::<T>(this.ptr)) };
            // SAFETY: the object is dead; release its cached wrapper, then the strong refs' weak.
            unsafe {
                crate::tie::release_cached_at_death(this.ptr);
                release_weak_with(this.ptr, free_block_of::<T>);
            }
            return Ok(value);
        }
        let this = ManuallyDrop::new(self);
        // SAFETY: unique: we move the value out and free the block; no other handle exists.
        unsafe {
            let value = ptr::read(value_ptr::<T>(this.ptr));
            free_block_of::<T>(this.ptr);
            Ok(value)
        }
    }

    /// A weak reference to the same object.
    #[inline]
    pub fn downgrade(&self) -> WeakRef<T> {
        // SAFETY: we hold a strong reference.
        unsafe { inc_weak(self.ptr) };
        WeakRef {
            ptr: self.ptr,
            _owns: PhantomData,
        }
    }

    /// The type-erased handle (moves the strong reference).
    #[inline]
    pub fn into_any(self) -> ObjAny {
        let this = ManuallyDrop::new(self);
        ObjAny { ptr: this.ptr }
    }

    /// The type-erased view of this handle, without touching the counts.
    #[inline]
    pub fn as_any(&self) -> &ObjAny {
        // SAFETY: ObjRef<T> and ObjAny are both #[repr(transparent)] over NonNull<ObjHeader>
        // (PhantomData is a 1-ZST), so the reference cast is a reinterpretation of the same
        // bytes; both own one strong count with the same meaning.
        unsafe { &*(self as *const Self).cast::<ObjAny>() }
    }

    /// The object's header pointer.
    #[inline]
    pub fn as_ptr(&self) -> NonNull<ObjHeader> {
        self.ptr
    }

    /// Gives up the handle without releasing its strong count.
    #[inline]
    pub fn into_raw(self) -> NonNull<ObjHeader> {
        ManuallyDrop::new(self).ptr
    }

    /// Rebuilds a handle from [`into_raw`](Self::into_raw).
    ///
    /// # Safety
    /// `ptr` came from `into_raw` (of an `ObjRef<T>` or of an `ObjAny` of type `T`'s exact
    /// index) and its strong count is handed over to the result.
    #[inline]
    pub unsafe fn from_raw(ptr: NonNull<ObjHeader>) -> Self {
        ObjRef {
            ptr,
            _owns: PhantomData,
        }
    }

    /// The object's header.
    #[inline]
    fn header(&self) -> &ObjHeader {
        // SAFETY: invariant 2: our strong count keeps the header alive while &self lives.
        unsafe { self.ptr.as_ref() }
    }

    #[inline(always)]
    fn counts(&self) -> &AtomicU64 {
        // SAFETY: as for `header`.
        unsafe { counts(self.ptr) }
    }
}

impl<T: Object> Clone for ObjRef<T> {
    #[inline]
    fn clone(&self) -> Self {
        // SAFETY: we hold a strong reference.
        unsafe { inc_strong(self.ptr) };
        ObjRef {
            ptr: self.ptr,
            _owns: PhantomData,
        }
    }
}

impl<T: Object> Drop for ObjRef<T> {
    #[inline]
    fn drop(&mut self) {
        // SAFETY: we give up our strong reference; the object is an ObjBox<T>.
        unsafe { release_strong_with(self.ptr, destroy_of::<T>) }
    }
}

impl<T: Object> Deref for ObjRef<T> {
    type Target = T;

    #[inline]
    fn deref(&self) -> &T {
        // SAFETY: our strong count keeps the value alive and initialized; only shared access is
        // handed out while other handles may exist (get_mut requires uniqueness).
        unsafe { &*value_ptr::<T>(self.ptr) }
    }
}

impl<T: Object> AsRef<ObjAny> for ObjRef<T> {
    fn as_ref(&self) -> &ObjAny {
        self.as_any()
    }
}

impl<T: Object> From<ObjRef<T>> for ObjAny {
    fn from(r: ObjRef<T>) -> ObjAny {
        r.into_any()
    }
}

impl<T: Object + fmt::Debug> fmt::Debug for ObjRef<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

/// A weak reference: keeps the block (and its tie header) but not the value.
///
/// ```
/// use tether_runtime::{object_type, ObjRef};
/// struct Node;
/// object_type!(Node, "doc.WeakRef.Node");
/// let strong = ObjRef::new(Node);
/// let weak = strong.downgrade();
/// assert!(weak.upgrade().is_some());
/// drop(strong);
/// assert!(weak.upgrade().is_none());
/// ```
#[repr(transparent)]
pub struct WeakRef<T: Object> {
    ptr: NonNull<ObjHeader>,
    _owns: PhantomData<T>,
}

// SAFETY: a WeakRef only yields ObjRef<T> (Send/Sync when T is Send + Sync); counts are atomic.
unsafe impl<T: Object + Send + Sync> Send for WeakRef<T> {}
// SAFETY: as above.
unsafe impl<T: Object + Send + Sync> Sync for WeakRef<T> {}

impl<T: Object> WeakRef<T> {
    /// A strong reference, unless the object is dead (strong count 0).
    #[inline]
    pub fn upgrade(&self) -> Option<ObjRef<T>> {
        // SAFETY: our weak count keeps the header alive.
        let c = unsafe { counts(self.ptr) };
        let mut cur = c.load(Ordering::Relaxed);
        loop {
            let strong = cur & STRONG_MASK;
            if strong == 0 {
                return None;
            }
            if strong >= MAX_COUNT {
                count_overflow();
            }
            // Relaxed: the CAS itself guarantees strong was nonzero (the value alive) when the
            // count was taken; the value was initialized before any weak reference existed
            // (weak references are made from strong ones), so there is nothing to acquire.
            match c.compare_exchange_weak(
                cur,
                cur + STRONG_ONE,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    return Some(ObjRef {
                        ptr: self.ptr,
                        _owns: PhantomData,
                    })
                }
                Err(now) => cur = now,
            }
        }
    }

    /// The number of strong references (0 once the object is dead).
    #[inline]
    pub fn strong_count(&self) -> usize {
        // SAFETY: our weak count keeps the header alive.
        unsafe { self.ptr.as_ref() }.strong_count()
    }

    /// The number of weak references.
    #[inline]
    pub fn weak_count(&self) -> usize {
        // SAFETY: as above.
        unsafe { self.ptr.as_ref() }.weak_count()
    }

    /// Whether two weak references point at the same object.
    #[inline]
    pub fn ptr_eq(&self, other: &Self) -> bool {
        self.ptr == other.ptr
    }

    /// The object's tie header (alive as long as the block is, even after the object died).
    #[inline]
    pub fn header(&self) -> &Header {
        // SAFETY: invariant 1 and 2: our weak count keeps the block, and so the tie header.
        unsafe { header_of(self.ptr.cast()) }
    }
}

impl<T: Object> Clone for WeakRef<T> {
    #[inline]
    fn clone(&self) -> Self {
        // SAFETY: we hold a weak reference.
        unsafe { inc_weak(self.ptr) };
        WeakRef {
            ptr: self.ptr,
            _owns: PhantomData,
        }
    }
}

impl<T: Object> Drop for WeakRef<T> {
    #[inline]
    fn drop(&mut self) {
        // SAFETY: we give up our weak count; the FreeBlock half is ObjBox<T>'s.
        unsafe { release_weak_with(self.ptr, free_block_of::<T>) }
    }
}

impl<T: Object> fmt::Debug for WeakRef<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "WeakRef({:p})", self.ptr)
    }
}

/// A type-erased strong reference, for hosts: any object, typed again by its type index.
///
/// ```
/// use tether_runtime::{object_type, ObjAny, ObjRef, Object};
/// struct Cat(&'static str);
/// object_type!(Cat, "doc.ObjAny.Cat");
///
/// let any: ObjAny = ObjRef::new(Cat("tom")).into_any();
/// assert_eq!(any.type_index(), Cat::type_index());
/// assert_eq!(any.downcast_ref::<Cat>().unwrap().0, "tom");
/// // A host keeps the wrapper's strong reference as a raw pointer.
/// let raw = any.into_raw();
/// // SAFETY: `raw` came from `into_raw` and its count is handed back.
/// let any = unsafe { ObjAny::from_raw(raw) };
/// let cat = any.downcast::<Cat>().ok().unwrap();
/// assert_eq!(cat.0, "tom");
/// ```
#[repr(transparent)]
pub struct ObjAny {
    ptr: NonNull<ObjHeader>,
}

// SAFETY: every object's value is Send + Sync (Rust objects implement `Object: Send + Sync`;
// records hold `Value`s, which are Send + Sync), and the counts are atomic.
unsafe impl Send for ObjAny {}
// SAFETY: as above.
unsafe impl Sync for ObjAny {}

impl ObjAny {
    /// The object's type index.
    #[inline]
    pub fn type_index(&self) -> u32 {
        self.obj_header().type_index
    }

    /// The object's registry entry.
    ///
    /// # Panics
    /// Never for objects built by this crate (their type is registered first).
    #[inline]
    pub fn type_info(&self) -> &'static TypeInfo {
        type_info(self.type_index()).expect("object with an unregistered type index")
    }

    /// Whether the object is an instance of `type_index` or one of its subtypes (walks the
    /// parent chain). [`ANY_OBJECT`](crate::ANY_OBJECT) matches every object.
    ///
    /// ```
    /// use tether_runtime::{object_type, ObjRef, Object, ANY_OBJECT};
    /// struct Base;
    /// struct Derived;
    /// object_type!(Base, "doc.is_instance.Base");
    /// object_type!(Derived, "doc.is_instance.Derived", parent = Base);
    /// let d = ObjRef::new(Derived).into_any();
    /// assert!(d.is_instance(Base::type_index()) && d.is_instance(ANY_OBJECT));
    /// assert!(!ObjRef::new(Base).as_any().is_instance(Derived::type_index()));
    /// ```
    pub fn is_instance(&self, type_index: u32) -> bool {
        crate::types::is_subtype(self.type_index(), type_index)
    }

    /// The typed handle, if the object's type is exactly `T`; otherwise the handle back.
    #[inline]
    pub fn downcast<T: Object>(self) -> Result<ObjRef<T>, ObjAny> {
        if self.type_index() == T::type_index() {
            let this = ManuallyDrop::new(self);
            Ok(ObjRef {
                ptr: this.ptr,
                _owns: PhantomData,
            })
        } else {
            Err(self)
        }
    }

    /// A reference to the value, if the object's type is exactly `T`.
    #[inline]
    pub fn downcast_ref<T: Object>(&self) -> Option<&T> {
        self.as_typed::<T>().map(|r| &**r)
    }

    /// The typed view of this handle, if the object's type is exactly `T` (no count changes).
    ///
    /// ```
    /// use tether_runtime::{object_type, ObjRef};
    /// struct Tag(u8);
    /// object_type!(Tag, "doc.as_typed.Tag");
    /// let any = ObjRef::new(Tag(3)).into_any();
    /// let typed: ObjRef<Tag> = any.as_typed::<Tag>().unwrap().clone();
    /// assert_eq!(typed.0, 3);
    /// ```
    #[inline]
    pub fn as_typed<T: Object>(&self) -> Option<&ObjRef<T>> {
        if self.type_index() == T::type_index() {
            // SAFETY: same representation (see `ObjRef::as_any`), and the type index says the
            // block is an ObjBox<T> (type indices are unique per Rust type, invariant 3).
            Some(unsafe { &*(self as *const ObjAny).cast::<ObjRef<T>>() })
        } else {
            None
        }
    }

    /// Whether two handles point at the same object.
    #[inline]
    pub fn ptr_eq(&self, other: &ObjAny) -> bool {
        self.ptr == other.ptr
    }

    /// The number of strong references (a racy snapshot).
    #[inline]
    pub fn strong_count(&self) -> usize {
        self.obj_header().strong_count()
    }

    /// The number of weak references (a racy snapshot).
    #[inline]
    pub fn weak_count(&self) -> usize {
        self.obj_header().weak_count()
    }

    /// The object's header pointer (the object's address).
    #[inline]
    pub fn as_ptr(&self) -> NonNull<ObjHeader> {
        self.ptr
    }

    /// Gives up the handle without releasing its strong count (a host stores it in the
    /// wrapper).
    #[inline]
    pub fn into_raw(self) -> NonNull<ObjHeader> {
        ManuallyDrop::new(self).ptr
    }

    /// Takes back a strong count given up by [`into_raw`](Self::into_raw).
    ///
    /// # Safety
    /// `ptr` came from `into_raw` (of an `ObjAny` or an `ObjRef`) and its count has not been
    /// taken back yet; the count is handed over to the result.
    #[inline]
    pub unsafe fn from_raw(ptr: NonNull<ObjHeader>) -> ObjAny {
        ObjAny { ptr }
    }

    /// A new strong handle to the object at `ptr`, incrementing the count (the raw count stays
    /// where it is).
    ///
    /// # Safety
    /// `ptr` is an object of this crate on which a strong count is held (by the caller or by a
    /// raw pointer the caller knows stays counted) for the duration of the call.
    ///
    /// ```
    /// use tether_runtime::{object_type, ObjAny, ObjRef};
    /// struct Leaf;
    /// object_type!(Leaf, "doc.clone_from_raw.Leaf");
    /// let raw = ObjRef::new(Leaf).into_any().into_raw();
    /// // SAFETY: `raw` holds a strong count.
    /// let extra = unsafe { ObjAny::clone_from_raw(raw) };
    /// assert_eq!(extra.strong_count(), 2);
    /// drop(extra);
    /// // SAFETY: hand the raw count back.
    /// drop(unsafe { ObjAny::from_raw(raw) });
    /// ```
    #[inline]
    pub unsafe fn clone_from_raw(ptr: NonNull<ObjHeader>) -> ObjAny {
        // SAFETY: the caller guarantees a strong count is held.
        unsafe { inc_strong(ptr) };
        ObjAny { ptr }
    }

    /// The tie header before the object (`py_obj`, `cached_mem`, `free_cb`).
    #[inline]
    pub fn header(&self) -> &Header {
        // SAFETY: invariant 1: allocated by ALLOC; invariant 2: our count keeps the block.
        unsafe { header_of(self.ptr.cast()) }
    }

    /// The object header.
    #[inline]
    pub fn obj_header(&self) -> &ObjHeader {
        // SAFETY: invariant 2: our strong count keeps the header alive while &self lives.
        unsafe { self.ptr.as_ref() }
    }
}

impl Clone for ObjAny {
    #[inline]
    fn clone(&self) -> Self {
        // SAFETY: we hold a strong reference.
        unsafe { inc_strong(self.ptr) };
        ObjAny { ptr: self.ptr }
    }
}

impl Drop for ObjAny {
    #[inline]
    fn drop(&mut self) {
        // SAFETY: we give up our strong count; the erased halves call the header's deleter,
        // which matches the layout (invariant 3).
        unsafe { release_strong_with(self.ptr, destroy_erased) }
    }
}

impl fmt::Debug for ObjAny {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = type_info(self.type_index()).map_or("?", |t| t.name.as_str());
        write!(f, "ObjAny({name} @ {:p})", self.ptr)
    }
}

//! The end of an object's life, after its strong count reached 0: the two deleter halves
//! (`DropValue`, `FreeBlock`) for Rust objects ([`ObjBox`]) and through the header's deleter,
//! the weak release that frees the block, and [`finish`], one object's whole destruction.
//!
//! On the object floor above `header`; uses `crate::heap` (`ALLOC`). Upholds invariant 3 (each
//! half runs once, in order: `DropValue` after strong reached 0, `FreeBlock` after weak did) for
//! the callers that pass it the halves of the object's own type, and invariant 1 (`ObjBox<T>`
//! is the layout of Rust objects; blocks go back to `ALLOC` with the layout they came with).

use super::header::{
    counts, deleter, release_cached_at_death, Counts, DeleteKind, ObjHeader, WEAK_ONE,
};
use crate::heap::ALLOC;
use crate::sync::{fence, Ordering};
use core::alloc::Layout;
use core::ptr::{self, NonNull};
use tether_alloc::allocator_api2::alloc::Allocator;

/// One object's destruction, in the order it always had: the value, then the block directly
/// (`unique`: no weak reference exists) or, with weak references, the cached wrapper memory and
/// the strong refs' weak count.
///
/// # Safety
/// As for `rc::destroy` (which either runs this at once or defers it to the trashcan's drain).
#[inline(always)]
pub(super) unsafe fn finish(
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
    unsafe { release_cached_at_death(p) };
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
    // (The cycle collector's DOOMED flag may be set: it says nothing about the counts.)
    if Counts(c.load(Ordering::Acquire)).undoomed() == Counts::LAST_WEAK {
        // SAFETY: ours is the only reference, and no new one can be made (strong is 0).
        unsafe { free_block(p) };
        return;
    }
    // Release: our reads of the header happen-before whoever frees the block.
    if Counts(c.fetch_sub(WEAK_ONE, Ordering::Release)).undoomed() == Counts::LAST_WEAK {
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
pub(super) unsafe fn erased_drop_value(p: NonNull<ObjHeader>) {
    // SAFETY: the caller (a release routine) guarantees the DropValue precondition; the deleter
    // matches the layout (invariant 3).
    unsafe { deleter(p)(p, DeleteKind::DropValue) }
}

/// `FreeBlock` through the header's deleter.
///
/// # Safety
/// The weak count of `p` reached 0 (the `FreeBlock` precondition).
pub(super) unsafe fn erased_free_block(p: NonNull<ObjHeader>) {
    // SAFETY: as for `erased_drop_value`, for FreeBlock.
    unsafe { deleter(p)(p, DeleteKind::FreeBlock) }
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
        if !super::header::is_bare(p) {
            super::header::release_parked(&(*p.as_ptr()).tie);
        }
        ptr::drop_in_place(p.as_ptr());
    }
    // SAFETY: the block is alive until freed below.
    if unsafe { super::header::is_bare(p) } {
        // SAFETY: a header-less object's block came from BARE with `layout` (invariant 1).
        unsafe { crate::heap::BARE.deallocate(p.cast(), layout) };
        return;
    }
    // SAFETY: invariant 1: allocated by ALLOC with `layout`; the caller guarantees exclusivity.
    // `deallocate` runs the funnel on the tie header (the parked memory, once).
    unsafe { ALLOC.deallocate(p.cast(), layout) }
}

/// The block layout of a Rust object: the header, then the value.
#[repr(C)]
pub(crate) struct ObjBox<T> {
    pub(crate) header: ObjHeader,
    pub(crate) value: T,
}

/// A pointer to the value of a `ObjBox<T>` object.
#[inline(always)]
pub(super) fn value_ptr<T>(p: NonNull<ObjHeader>) -> *mut T {
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
pub(super) unsafe fn drop_value_of<T>(p: NonNull<ObjHeader>) {
    // SAFETY: the caller guarantees the strong count reached 0 and this runs once (invariant 3).
    unsafe { ptr::drop_in_place(value_ptr::<T>(p)) }
}

/// `FreeBlock` for `ObjBox<T>`.
///
/// # Safety
/// As for [`DeleteKind::FreeBlock`].
pub(super) unsafe fn free_block_of<T>(p: NonNull<ObjHeader>) {
    // SAFETY: the caller guarantees the weak count reached 0; the block was allocated with
    // this layout by `ObjRef::try_new`.
    unsafe { free_block_layout(p, Layout::new::<ObjBox<T>>()) }
}

/// The [`Deleter`](super::Deleter) of `ObjBox<T>` objects.
///
/// # Safety
/// The [`Deleter`](super::Deleter) contract.
pub(crate) unsafe fn deleter_of<T>(p: NonNull<ObjHeader>, kind: DeleteKind) {
    // SAFETY: forwarded: the Deleter contract is the union of the two halves' preconditions.
    unsafe {
        match kind {
            DeleteKind::DropValue => drop_value_of::<T>(p),
            DeleteKind::FreeBlock => free_block_of::<T>(p),
        }
    }
}

//! The reference-count protocol: increments, the strong release with its last-drop fast path
//! ([`release_strong_with`]), and the destruction funnel (`destroy`) that every object whose
//! strong count reached 0 goes through, by way of the trashcan.
//!
//! Top of the object floor's machinery: uses `header` (the count word), `block` (the halves and
//! `finish`) and `trashcan`. Upholds invariant 2 (a release gives up exactly the caller's count)
//! and invariant 5 (the release that takes strong to 0, or finds `UNIQUE`, destroys or defers).
//! The orderings are those of the module docs of `crate::object` ("Orderings").

use super::block::{drop_value_of, erased_drop_value, erased_free_block, finish, free_block_of};
use super::header::{count_overflow, counts, Counts, ObjHeader, MAX_COUNT, STRONG_ONE, WEAK_ONE};
use super::trashcan;
#[cfg(not(tether_loom_broken = "release_relaxed"))]
use crate::sync::fence;
use crate::sync::Ordering;
use core::ptr::NonNull;

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

/// Adds a strong reference.
///
/// # Safety
/// The caller holds a strong reference to the live object `p`.
#[inline(always)]
pub(super) unsafe fn inc_strong(p: NonNull<ObjHeader>) {
    // Relaxed: see the module docs (a new reference from an existing one).
    // SAFETY: the caller's strong reference keeps the header alive.
    let old = Counts(unsafe { counts(p) }.fetch_add(STRONG_ONE, Ordering::Relaxed));
    debug_assert!(
        old.strong() >= 1,
        "inc_strong on an object with no strong reference"
    );
    if old.strong() >= MAX_COUNT {
        count_overflow();
    }
}

/// Adds a weak reference.
///
/// # Safety
/// The caller holds a strong or weak reference to the object `p`.
#[inline(always)]
pub(super) unsafe fn inc_weak(p: NonNull<ObjHeader>) {
    // Relaxed: as for strong increments.
    // SAFETY: the caller's reference keeps the header alive.
    let old = Counts(unsafe { counts(p) }.fetch_add(WEAK_ONE, Ordering::Relaxed));
    if old.weak() >= MAX_COUNT {
        count_overflow();
    }
}

/// A type's destruction routine, as [`destroy`] with that type's deleter halves: `(p, unique)`.
/// [`destroy_of`] (inlined into `ObjRef<T>`'s drop) or [`destroy_erased`] (out of line: the
/// erased halves are indirect calls anyway, and the erased handle's drop stays small).
pub(super) type Destroy = unsafe fn(NonNull<ObjHeader>, bool);

/// Releases one strong reference; `destroy` destroys the object if it was the last.
///
/// # Safety
/// The caller gives up a strong reference to the live object `p`; `destroy` is the object's
/// type's destruction routine ([`destroy_of`] for its Rust type, or [`destroy_erased`]).
#[inline(always)]
pub(super) unsafe fn release_strong_with(p: NonNull<ObjHeader>, destroy: Destroy) {
    // SAFETY: our strong reference keeps the header alive until we give it up below.
    let c = unsafe { counts(p) };
    // Acquire: if this reads UNIQUE, every other handle that ever existed is gone; their
    // Release decrements must happen-before our destruction of the value and the block.
    if Counts(c.load(ACQUIRE)).is_unique() {
        // SAFETY: we hold the only handle (module docs), so we may destroy the object now.
        unsafe { destroy(p, true) };
        return;
    }
    // Release: our uses of the value happen-before whoever destroys it.
    let old = Counts(c.fetch_sub(STRONG_ONE, RELEASE));
    if old.strong() != 1 {
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
unsafe fn release_last_strong(p: NonNull<ObjHeader>, old: Counts, destroy: Destroy) {
    // Acquire: the other strong holders' Release decrements happen-before the destructor.
    acquire_fence();
    // old == UNIQUE: no weak reference existed, and none can appear once strong is 0, so nobody
    // else can reach the block.
    // SAFETY: strong reached 0, so the value is ours to drop (invariant 3); the strong refs'
    // weak reference, still held, keeps the block alive (or, unique, it is ours alone).
    unsafe { destroy(p, old.is_unique()) }
}

/// [`Destroy`] for `ObjBox<T>` objects. A `T` without drop glue releases nothing, so its
/// destruction skips the trashcan's count.
///
/// # Safety
/// As for [`destroy`], for an `ObjBox<T>` object.
#[inline(always)]
pub(super) unsafe fn destroy_of<T>(p: NonNull<ObjHeader>, unique: bool) {
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
pub(super) unsafe fn destroy_erased(p: NonNull<ObjHeader>, unique: bool) {
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

//! The reference-count protocol: increments, the strong release with its last-drop fast path
//! ([`release_strong_with`]), and the destruction funnel (`destroy`) that every object whose
//! strong count reached 0 goes through, by way of the trashcan.
//!
//! Top of the object floor's machinery: uses `header` (the count word), `block` (the halves and
//! `finish`) and `trashcan`. Upholds invariant 2 (a release gives up exactly the caller's count)
//! and invariant 5 (the release that takes strong to 0, or finds `UNIQUE`, destroys or defers).
//! The orderings are those of the module docs of `crate::object` ("Orderings").

use super::block::{drop_value_of, erased_drop_value, erased_free_block, finish, free_block_of};
use super::header::{
    count_overflow, counts, Counts, ObjHeader, KEPT, MAX_COUNT, STRONG_ONE, WEAK_ONE,
};
use super::trashcan;
#[cfg(not(tether_loom_broken = "release_relaxed"))]
use crate::sync::fence;
use crate::sync::Ordering::{self, Acquire, Relaxed};
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
/// The decrement is a compare-and-swap from the value the `UNIQUE` check loaded, not a
/// `fetch_sub`: a release that finds the count [kept with two references](Counts::is_kept_pair)
/// must claim the flag instead of decrementing, in the same atomic step (a decrement first
/// would leave the object held only by its kept wrapper, and the wrapper by the object; a claim
/// after the decrement would touch an object this thread no longer holds). See
/// [`claim_kept`].
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
    let mut cur = Counts(c.load(ACQUIRE));
    if cur.is_unique() {
        // SAFETY: we hold the only handle (module docs), so we may destroy the object now.
        unsafe { destroy(p, true) };
        return;
    }
    loop {
        #[cfg(not(tether_loom_broken = "kept_unclaimed"))]
        if cur.is_kept_pair() {
            // SAFETY: we still hold our reference; claim_kept takes it over.
            match unsafe { claim_kept(p, cur) } {
                Ok(()) => return,
                Err(now) => {
                    cur = now;
                    continue;
                }
            }
        }
        // Release: our uses of the value happen-before whoever destroys it.
        match c.compare_exchange_weak(cur.0, cur.0 - STRONG_ONE, RELEASE, Relaxed) {
            Ok(_) => break,
            Err(now) => cur = Counts(now),
        }
    }
    if cur.strong() != 1 {
        return;
    }
    // SAFETY: we released the last strong reference (forwarded otherwise).
    unsafe { release_last_strong(p, cur, destroy) }
}

/// What the host does when a kept object's last other reference goes: it receives that
/// reference (as a raw strong pointer) and releases the kept wrapper (`crate::tie::keep`).
/// Set once by `crate::tie::set_host`; null before.
static KEPT_HOOK: core::sync::atomic::AtomicPtr<()> =
    core::sync::atomic::AtomicPtr::new(core::ptr::null_mut());

/// The host's side of a kept object's last other release: `hook(p)` receives one strong
/// reference to `p` (`ObjAny::from_raw` takes it over).
pub(crate) type KeptHook = unsafe fn(NonNull<ObjHeader>);

/// Installs the kept hook (once per process, by `crate::tie::set_host`).
pub(crate) fn set_kept_hook(hook: KeptHook) {
    // Release: pairs with the Acquire in `claim_kept` (a static fn, but any pointer stored must
    // be complete before it is called).
    KEPT_HOOK.store(hook as *mut (), core::sync::atomic::Ordering::Release);
}

/// Claims the [`KEPT`](super::header::KEPT) flag of `p`, whose count read `cur` (kept, two
/// strong references), without giving up our reference, then hands that reference to the
/// host's hook, which releases it and the kept wrapper. Fails with the count now if it changed.
///
/// One compare-and-swap decides among everyone who could end the kept state: other releasers
/// (a new reference made through the wrapper and released again), and the host's `unkeep`
/// (a move). The winner alone owes the wrapper's release; as long as the flag is set the object
/// is alive (its wrapper holds it, and the wrapper is held by the object), and the claimer
/// still holds its own reference after the claim, so nothing here touches a dead object.
///
/// # Safety
/// The caller holds a strong reference to `p`, which this takes over on success.
#[cold]
#[inline(never)]
unsafe fn claim_kept(p: NonNull<ObjHeader>, cur: Counts) -> Result<(), Counts> {
    // SAFETY: the caller's reference keeps the header alive.
    let c = unsafe { counts(p) };
    // Acquire: the keeper's Release (in `tie::keep`) happens-before our hand-over, so the host
    // finds whatever it recorded before keeping. Our reference is not given up here.
    if let Err(now) = c.compare_exchange(cur.0, cur.0 & !KEPT, Acquire, Relaxed) {
        return Err(Counts(now));
    }
    let hook = KEPT_HOOK.load(core::sync::atomic::Ordering::Acquire);
    assert!(!hook.is_null(), "a kept object without a kept hook");
    // SAFETY: only `KeptHook`s are stored (set_kept_hook); fn and data pointers have the same
    // size on the supported targets.
    let hook = unsafe { core::mem::transmute::<*mut (), KeptHook>(hook) };
    // SAFETY: our strong reference is handed over (the hook's contract).
    unsafe { hook(p) };
    Ok(())
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

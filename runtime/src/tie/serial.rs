//! The tie transitions for hosts that serialize them: plain loads and stores of the tie word
//! instead of compare-and-swap, for a host whose every transition runs under one lock of its
//! own (CPython's GIL).
//!
//! Top of the tie floor beside `finalize` (whose count step it shares); uses `word` and `host`.
//!
//! # The contract (what makes plain stores enough)
//!
//! 1. **Serialized.** The host calls these functions only while holding its lock (the GIL),
//!    and no other code changes tie words: native threads clone and drop references (and may
//!    free objects), but never call a transition. So no two transitions of one object overlap,
//!    and the lock orders each one after the previous (its release/acquire pair).
//! 2. **Counted.** Every call is made with a strong reference (`&ObjAny`, or the one
//!    [`park_or_release`] consumes), as for the CAS transitions (invariant 3 of `crate::tie`).
//!
//! Native threads may still call [`lookup`] or [`state`], but what they read is only a snapshot:
//! nothing orders the host's plain stores with their loads, so they must not use a wrapper
//! pointer without taking the host's lock (which is the rule for wrappers anyway). The only
//! other party that acts on a tie word is the allocator's free funnel, when an object dies. By (2) the object cannot die during a transition, so the funnel never runs
//! concurrently with one; it runs after the last strong reference is given up, and every such
//! give-up is a `Release` decrement of the count that the destroying thread's `Acquire` fence
//! pairs with (object invariant: "the release orders uses before destruction"). The host's tie
//! store happens-before its own decrement (program order), which happens-before the funnel. So
//! the funnel sees the word the host last wrote: `Relaxed` loads and stores suffice, and the
//! two compare-and-swaps of a revive/park cycle become plain moves.
//!
//! [`park_or_release`] keeps its compare-and-swap on the *count* (that word is shared with
//! native threads, which may drop the last other reference at any moment): it parks first,
//! then gives up the wrapper's reference only if it is not the last. `runtime/tests/loom.rs`
//! models exactly this claim (a host thread running these transitions while a native thread
//! drops and upgrades references), with a broken variant that decides on a count snapshot.
//!
//! A free-threaded host (no GIL) breaks (1) and must use the CAS transitions of `crate::tie`.

use super::finalize::{release_unless_last, Finalized};
use super::host::host;
use super::word::{check_aligned, decode, parked, word, TieState};
use crate::object::ObjAny;
use crate::sync::Ordering::Relaxed;
use core::ffi::c_void;
use core::ptr::{self, NonNull};

pub use super::transitions::{lookup, state};

/// (a) → (b), as [`tie::bind`](super::bind), under the serialization contract (module docs).
///
/// # Errors
/// The observed state, unchanged, if it was not (a).
///
/// # Panics
/// As for [`tie::bind`](super::bind).
pub fn bind(obj: &ObjAny, wrapper: NonNull<c_void>) -> Result<(), TieState> {
    check_aligned(wrapper);
    let _ = host();
    let w = word(obj);
    match decode(w.load(Relaxed)) {
        TieState::Detached => {
            w.store(wrapper.as_ptr(), Relaxed);
            Ok(())
        }
        other => Err(other),
    }
}

/// (c) → (b), as [`tie::revive`](super::revive), under the serialization contract.
///
/// # Errors
/// The observed state if nothing is parked.
#[inline]
pub fn revive(obj: &ObjAny) -> Result<NonNull<c_void>, TieState> {
    let w = word(obj);
    match decode(w.load(Relaxed)) {
        TieState::Parked(m) => {
            w.store(m.as_ptr(), Relaxed);
            Ok(m)
        }
        other => Err(other),
    }
}

/// Any → (a), as [`tie::detach`](super::detach), under the serialization contract: in (c) the
/// cached memory goes back to the host at once. Returns the state it left.
pub fn detach(obj: &ObjAny) -> TieState {
    let w = word(obj);
    let prev = decode(w.load(Relaxed));
    w.store(ptr::null_mut(), Relaxed);
    if let TieState::Parked(mem) = prev {
        // SAFETY: the store took the parked memory: ours alone to hand back, once.
        unsafe { (host().free_cached)(mem.as_ptr()) };
    }
    prev
}

/// (b: W) → (a), as [`tie::unbind_for_last_release`](super::unbind_for_last_release), under
/// the serialization contract.
///
/// # Errors
/// The observed state if it is not (b: W).
pub fn unbind_for_last_release(obj: &ObjAny, wrapper: NonNull<c_void>) -> Result<(), TieState> {
    let w = word(obj);
    let cur = w.load(Relaxed);
    if cur != wrapper.as_ptr() {
        return Err(decode(cur));
    }
    w.store(ptr::null_mut(), Relaxed);
    Ok(())
}

/// The dying wrapper's one call, as [`tie::park_or_release`](super::park_or_release), under the
/// serialization contract: parks W if the object lives on, else unbinds it and releases the
/// object, never letting W's own release hand W's memory to the free callback.
///
/// # Errors
/// Gives `obj` back if the state is not (b: W).
///
/// # Panics
/// As for [`tie::bind`](super::bind).
///
/// ```
/// use core::ffi::c_void;
/// use core::ptr::NonNull;
/// use tether_runtime::{object_type, tie, Finalized, ObjRef, TieHost, TieState};
/// unsafe extern "C" fn free_wrapper(_mem: *mut c_void) {}
/// fn release_kept(_: tether_runtime::ObjAny) {}
/// static HOST: TieHost = TieHost { free_cached: free_wrapper, release_kept };
/// tether_runtime::set_host(&HOST);
/// struct Thing;
/// object_type!(Thing, "doc.tie.serial.Thing");
///
/// let mut mem = [0u64; 4];
/// let w = NonNull::from(&mut mem).cast::<c_void>();
/// let obj = ObjRef::new(Thing).into_any();
/// let other = obj.clone();
/// tie::serial::bind(&obj, w).unwrap();
/// assert_eq!(tie::serial::park_or_release(obj, w).unwrap(), Finalized::Parked);
/// assert_eq!(tie::serial::revive(&other), Ok(w)); // same memory, same identity
/// assert_eq!(tie::serial::park_or_release(other, w).unwrap(), Finalized::Released);
/// ```
pub fn park_or_release(
    obj: ObjAny,
    wrapper: NonNull<c_void>,
) -> Result<Finalized, (ObjAny, TieState)> {
    check_aligned(wrapper);
    let w = word(&obj);
    let cur = w.load(Relaxed);
    if cur != wrapper.as_ptr() {
        return Err((obj, decode(cur)));
    }
    // 1. (b: W) → (c: W) while W's reference keeps the object alive; the decrement below
    //    (Release) publishes the store to whoever destroys the object.
    w.store(parked(wrapper), Relaxed);
    // 2. Give up W's reference unless it is the last (a CAS on the count: native threads share
    //    that word, and may drop the last other reference at any moment).
    #[cfg(tether_loom_broken = "serial_check_then_act")]
    {
        // Deliberately wrong: trust the GIL for the count too (a snapshot, then a release).
        if obj.strong_count() > 1 {
            drop(obj);
            return Ok(Finalized::Parked);
        }
    }
    match release_unless_last(obj) {
        Ok(()) => Ok(Finalized::Parked),
        Err(obj) => {
            // 3. Last reference: take W back, (c: W) → (a), then release the object, which dies
            //    with nothing cached. (No other transition can have run: serialized.)
            word(&obj).store(ptr::null_mut(), Relaxed);
            drop(obj);
            Ok(Finalized::Released)
        }
    }
}

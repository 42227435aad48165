//! The last-reference path: [`park_or_release`], the dying wrapper's one call, and its result
//! [`Finalized`] (the protocol is the module docs' "The last-reference path").
//!
//! Top of the tie floor: uses `transitions` (the park write sequence), `claim`, `host`, and the
//! count word of `crate::object`. Never lets the wrapper's own release destroy a parked object.

use super::claim::{cell, check_aligned, Claim, TieState};
use super::host::host;
use super::transitions::park_claimed;
use crate::object::{counts, Counts, ObjAny, STRONG_ONE};
use crate::sync::Ordering::{Relaxed, Release};
use core::ffi::c_void;
use core::ptr::{self, NonNull};

/// What [`park_or_release`] did with a dying wrapper.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finalized {
    /// (b) → (c): the object lives on and caches the wrapper memory; the host must keep that
    /// memory (resurrected) and not touch it again except through [`revive`](super::revive) or
    /// `free_cb`.
    Parked,
    /// The wrapper held the last strong reference: the tie went (b) → (a), then the reference
    /// was released (destroying the object unless a weak reference was upgraded meanwhile).
    /// Nothing refers to the wrapper memory any more: the host frees it itself.
    Released,
}

/// The dying wrapper's one call: parks it if the object lives on, otherwise unbinds it and
/// releases the object; consumes the wrapper's strong reference either way. See the module
/// docs ("The last-reference path") for the protocol and why it is race-free.
///
/// Before the call, the wrapper memory must be in its cached form (it may be revived or freed
/// by another thread as soon as it is parked); on [`Finalized::Released`] it is the host's
/// again.
///
/// # Errors
/// If the state was not (b) with this wrapper (it was detached, or never bound): the strong
/// reference is handed back with the observed state; the host drops it and frees the wrapper as
/// an ordinary, unbound one.
///
/// # Panics
/// If no host is installed or `wrapper` is odd.
///
/// ```
/// use core::ffi::c_void;
/// use core::ptr::NonNull;
/// use tether_runtime::{object_type, tie, Finalized, ObjRef, TieHost, TieState};
/// unsafe extern "C" fn free_wrapper(_mem: *mut c_void) {}
/// static HOST: TieHost = TieHost { free_cached: free_wrapper };
/// tether_runtime::set_host(&HOST);
/// struct Thing;
/// object_type!(Thing, "doc.tie.park_or_release.Thing");
///
/// let mut mem = [0u64; 4];
/// let w = NonNull::from(&mut mem).cast::<c_void>();
/// let obj = ObjRef::new(Thing).into_any();
/// let other = obj.clone(); // the object outlives its wrapper
/// tie::bind(&obj, w).unwrap();
/// assert_eq!(tie::park_or_release(obj, w).unwrap(), Finalized::Parked);
/// assert_eq!(tie::state(&other), TieState::Parked(w));
/// assert_eq!(tie::revive(&other), Ok(w)); // same memory, same identity
/// // The wrapper (now holding `other`) dies holding the last reference.
/// assert_eq!(tie::park_or_release(other, w).unwrap(), Finalized::Released);
/// ```
pub fn park_or_release(
    obj: ObjAny,
    wrapper: NonNull<c_void>,
) -> Result<Finalized, (ObjAny, TieState)> {
    check_aligned(wrapper);
    let free_cached = host().free_cached;
    let c = cell(&obj);
    let claim = Claim::take(c);
    if claim.cached != wrapper.as_ptr() || claim.py() != wrapper.as_ptr() {
        let s = claim.observed();
        claim.restore();
        return Err((obj, s));
    }
    // Step 1: "parking": (c: W) published, our reference still held.
    park_claimed(claim, free_cached, wrapper);

    // Step 2: give up our strong reference unless it is the last.
    // SAFETY: `obj` holds a strong count until it is given up (then we return at once).
    let counts = unsafe { counts(obj.as_ptr()) };
    let mut cur = counts.load(Relaxed);
    #[cfg(tether_loom_broken = "finalize_check_then_act")]
    {
        // Deliberately wrong: decide on a snapshot, then release unconditionally, so the
        // release may destroy the parked object (and free W) inside this call.
        if Counts(cur).strong() > 1 {
            drop(obj);
            return Ok(Finalized::Parked);
        }
    }
    while Counts(cur).strong() > 1 {
        // Release: our uses of the object happen-before whoever destroys it (as for any strong
        // release); and the (c: W) publication above happens-before that thread's funnel, which
        // acquires through the count's release sequence. Relaxed on failure: we only retry.
        match counts.compare_exchange_weak(cur, cur - STRONG_ONE, Release, Relaxed) {
            Ok(_) => {
                core::mem::forget(obj); // its strong count was given up by the CAS
                return Ok(Finalized::Parked);
            }
            Err(now) => cur = now,
        }
    }

    // Step 3: our reference is the last one: take W back before releasing it.
    let claim = Claim::take(c);
    let ours = claim.cached == wrapper.as_ptr() && claim.py().is_null();
    if ours {
        claim.publish(ptr::null_mut());
    } else {
        claim.restore();
    }
    drop(obj);
    Ok(if ours {
        Finalized::Released
    } else {
        Finalized::Parked
    })
}

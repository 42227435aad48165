//! The last-reference path: [`park_or_release`] and [`Finalized`] (the module docs of
//! `crate::tie`, "The last-reference path").
//!
//! Top of the tie floor: uses `word`, `host` and `crate::object` (the count word).

use super::host::host;
use super::word::{check_aligned, decode, parked, word, TieState};
use crate::object::{counts, Counts, ObjAny, STRONG_ONE};
use crate::sync::Ordering::{AcqRel, Acquire, Relaxed, Release};
use core::ffi::c_void;
use core::ptr::{self, NonNull};

/// What [`park_or_release`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finalized {
    /// W is parked (c); the object lives on, and W's memory belongs to the tie machine.
    Parked,
    /// W held the last reference: the object was released with nothing cached, and W's memory
    /// is the host's to free.
    Released,
}

/// The dying wrapper's one call: parks W if the object lives on, else unbinds it and releases
/// the object, never letting W's own release hand W's memory to the free callback.
///
/// `obj` is W's own strong reference (taken over). Fails, giving it back, if the state is not
/// (b: W).
///
/// Before the call, the wrapper memory must be in its cached form (it may be revived or freed
/// by another thread as soon as it is parked); on [`Finalized::Released`] it is the host's
/// again.
///
/// # Panics
/// As for [`bind`](super::bind).
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
    let _ = host();
    let w = word(&obj);
    // 1. (b: W) → (c: W) while W's reference still keeps the object alive. AcqRel: as in `park`.
    if let Err(cur) = w.compare_exchange(wrapper.as_ptr(), parked(wrapper), AcqRel, Acquire) {
        return Err((obj, decode(cur)));
    }

    // 2. Give up W's reference unless it is the last.
    let obj = match release_unless_last(obj) {
        Ok(()) => return Ok(Finalized::Parked),
        Err(obj) => obj,
    };

    // 3. Last reference: take W back, (c: W) → (a), then release the object.
    // Relaxed: W's memory is ours again (nobody else can take a parked W without a reference
    // of its own, and ours is the last); the release below orders what matters.
    let ours = word(&obj)
        .compare_exchange(parked(wrapper), ptr::null_mut(), Relaxed, Relaxed)
        .is_ok();
    drop(obj);
    Ok(if ours {
        Finalized::Released
    } else {
        Finalized::Parked
    })
}

/// Gives up `obj`'s strong reference unless it is the last one: a CAS loop `strong → strong −
/// 1` that refuses to go from 1 to 0, giving the reference back instead.
pub(super) fn release_unless_last(obj: ObjAny) -> Result<(), ObjAny> {
    // SAFETY: `obj`'s strong count keeps the header alive.
    let counts = unsafe { counts(obj.as_ptr()) };
    let mut cur = counts.load(Relaxed);
    #[cfg(tether_loom_broken = "finalize_check_then_act")]
    {
        // Deliberately wrong: decide on a snapshot, then release unconditionally.
        if Counts(cur).strong() > 1 {
            drop(obj);
            return Ok(());
        }
    }
    while Counts(cur).strong() > 1 {
        // Release: our uses of the object (and, for the serialized transitions, the tie word
        // stored before this) happen-before whoever destroys it (as any release).
        match counts.compare_exchange_weak(cur, cur - STRONG_ONE, Release, Relaxed) {
            Ok(_) => {
                core::mem::forget(obj); // its strong count was given up by the CAS
                return Ok(());
            }
            Err(now) => cur = now,
        }
    }
    Err(obj)
}

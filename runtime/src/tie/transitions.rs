//! The single transitions of the machine, each one claim of the state word: [`state`],
//! [`lookup`] (no claim: one load), [`bind`], [`park`], [`revive`], [`detach`] and
//! [`unbind_for_last_release`].
//!
//! On the tie floor above `host` and `claim`. Each transition checks its precondition under the
//! claim and publishes a state that keeps invariant 1; each takes `&ObjAny` (invariant 3).

use super::claim::{cell, check_aligned, Claim, TieState};
use super::host::host;
use crate::object::ObjAny;
use crate::sync::Ordering::{Acquire, Relaxed, Release};
use core::ffi::c_void;
use core::ptr::{self, NonNull};
use tether_alloc::FreeCallback;

/// The object's tie state (waits out a transition in progress).
///
/// ```
/// use tether_runtime::{object_type, tie, ObjRef, TieState};
/// struct Thing;
/// object_type!(Thing, "doc.tie.state.Thing");
/// let r = ObjRef::new(Thing);
/// assert_eq!(tie::state(r.as_any()), TieState::Detached);
/// ```
pub fn state(obj: &ObjAny) -> TieState {
    let claim = Claim::take(cell(obj));
    let s = claim.observed();
    claim.restore();
    s
}

/// The live canonical wrapper, in state (b). Never waits; one `Acquire` load.
///
/// ```
/// use tether_runtime::{object_type, tie, ObjRef};
/// struct Thing;
/// object_type!(Thing, "doc.tie.lookup.Thing");
/// assert!(tie::lookup(ObjRef::new(Thing).as_any()).is_none());
/// ```
#[inline]
pub fn lookup(obj: &ObjAny) -> Option<NonNull<c_void>> {
    // Acquire: pairs with the Release store of py_obj in `bind`/`revive`, so the wrapper's
    // initialization (done before `bind`) is visible to the caller.
    NonNull::new(cell(obj).py_obj_atomic().load(Acquire))
}

/// (a) → (b): makes `wrapper` the canonical wrapper of `obj`, and the host's `free_cached` the
/// header's `free_cb`. `wrapper` must be fully initialized (it is published to `lookup`) and
/// must own a strong reference to `obj`.
///
/// # Errors
/// The observed state, unchanged, if it was not (a) (e.g. another thread bound first).
///
/// # Panics
/// If no host is installed ([`set_host`](super::set_host)) or `wrapper` is odd.
///
/// ```
/// use core::ffi::c_void;
/// use core::ptr::NonNull;
/// use tether_runtime::{object_type, tie, ObjRef, TieHost, TieState};
/// unsafe extern "C" fn free_wrapper(_mem: *mut c_void) {}
/// static HOST: TieHost = TieHost { free_cached: free_wrapper };
/// tether_runtime::set_host(&HOST);
/// struct Thing;
/// object_type!(Thing, "doc.tie.bind.Thing");
///
/// let obj = ObjRef::new(Thing).into_any();
/// let mut wrapper_memory = [0u64; 4];
/// let w = NonNull::from(&mut wrapper_memory).cast::<c_void>();
/// tie::bind(&obj, w).unwrap();
/// assert_eq!(tie::lookup(&obj), Some(w));
/// assert_eq!(tie::bind(&obj, w), Err(TieState::Bound(w)));
/// assert_eq!(tie::detach(&obj), TieState::Bound(w));
/// ```
pub fn bind(obj: &ObjAny, wrapper: NonNull<c_void>) -> Result<(), TieState> {
    check_aligned(wrapper);
    let free_cached = host().free_cached;
    let c = cell(obj);
    let claim = Claim::take(c);
    if !claim.cached.is_null() || !claim.py().is_null() {
        let s = claim.observed();
        claim.restore();
        return Err(s);
    }
    c.set_free_cb(Some(free_cached));
    // Release: publishes the wrapper's initialization to `lookup`'s Acquire load.
    c.py_obj_atomic().store(wrapper.as_ptr(), Release);
    claim.publish(wrapper.as_ptr());
    Ok(())
}

/// (b: `wrapper`) → (c: `wrapper`): the wrapper died while the object lives on; its memory
/// stays cached for [`revive`]. The host then releases the wrapper's strong reference.
///
/// Prefer [`park_or_release`](super::park_or_release): if the wrapper's reference turns out to
/// be the last, the release after `park` destroys the object in (c) and hands `wrapper` to
/// `free_cb` right away, inside
/// the wrapper's own finalization.
///
/// # Errors
/// The observed state, unchanged, unless it was (b) with this wrapper.
///
/// # Panics
/// If no host is installed or `wrapper` is odd.
pub fn park(obj: &ObjAny, wrapper: NonNull<c_void>) -> Result<(), TieState> {
    check_aligned(wrapper);
    let free_cached = host().free_cached;
    let c = cell(obj);
    let claim = Claim::take(c);
    if claim.cached != wrapper.as_ptr() || claim.py() != wrapper.as_ptr() {
        let s = claim.observed();
        claim.restore();
        return Err(s);
    }
    park_claimed(claim, free_cached, wrapper);
    Ok(())
}

#[inline]
pub(super) fn park_claimed(claim: Claim<'_>, free_cached: FreeCallback, wrapper: NonNull<c_void>) {
    claim.cell.set_free_cb(Some(free_cached));
    // Relaxed: clearing the pointer publishes nothing (a reader that sees null dereferences
    // nothing); the ordering with cached_mem is given by `publish`.
    claim.cell.py_obj_atomic().store(ptr::null_mut(), Relaxed);
    claim.publish(wrapper.as_ptr());
}

/// (c: W) → (b: W): the cached memory becomes the live wrapper again and is returned; the host
/// re-initializes it in place (same address) and gives it a strong reference to `obj`.
///
/// # Errors
/// The observed state, unchanged, unless it was (c).
pub fn revive(obj: &ObjAny) -> Result<NonNull<c_void>, TieState> {
    let c = cell(obj);
    let claim = Claim::take(c);
    let py = claim.py();
    match NonNull::new(claim.cached) {
        Some(w) if py.is_null() => {
            // Release: orders this store after our claim (see `lookup` for what the host must
            // do before others use W).
            c.py_obj_atomic().store(w.as_ptr(), Release);
            claim.publish(w.as_ptr());
            Ok(w)
        }
        _ => {
            let s = claim.observed();
            claim.restore();
            Err(s)
        }
    }
}

/// Any → (a), for moves; returns the previous state. In (c) the cached memory goes back to the
/// host through `free_cb` now (once, after the transition). In (b) the host keeps its live
/// wrapper, which simply is no longer canonical (when it dies,
/// [`park_or_release`](super::park_or_release) reports the mismatch and the host frees it like
/// any unbound wrapper).
pub fn detach(obj: &ObjAny) -> TieState {
    let c = cell(obj);
    let claim = Claim::take(c);
    let prev = claim.observed();
    if let TieState::Bound(_) = prev {
        c.py_obj_atomic().store(ptr::null_mut(), Relaxed);
    }
    claim.publish(ptr::null_mut());
    if let TieState::Parked(mem) = prev {
        if let Some(cb) = c.free_cb() {
            // SAFETY: we took `mem` out of the header in the transition above, so nobody else
            // can revive or free it; (free_cb, mem) was set together by `park`.
            unsafe { cb(mem.as_ptr()) };
        }
    }
    prev
}

/// (b: `wrapper`) → (a), for a wrapper that holds the last strong reference: afterwards the host
/// frees the wrapper memory itself and then releases the object, and the free funnel finds
/// nothing cached (no double free). [`park_or_release`](super::park_or_release) makes the same
/// decision atomically.
///
/// # Errors
/// The observed state, unchanged, unless it was (b) with this wrapper.
pub fn unbind_for_last_release(obj: &ObjAny, wrapper: NonNull<c_void>) -> Result<(), TieState> {
    let c = cell(obj);
    let claim = Claim::take(c);
    if claim.cached != wrapper.as_ptr() || claim.py() != wrapper.as_ptr() {
        let s = claim.observed();
        claim.restore();
        return Err(s);
    }
    c.py_obj_atomic().store(ptr::null_mut(), Relaxed);
    claim.publish(ptr::null_mut());
    Ok(())
}

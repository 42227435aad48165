//! The single-step transitions: [`state`], [`lookup`], [`bind`], [`park`], [`revive`],
//! [`detach`], [`unbind_for_last_release`]. Each is one atomic operation on the tie word.
//!
//! Uses `word` (decoding) and `host` beside it. Upholds invariants 1 and 3 (module docs of
//! `crate::tie`).

use super::host::host;
use super::word::{check_aligned, decode, parked, word, TieState};
use crate::object::ObjAny;
#[cfg(not(tether_loom_broken = "tie_no_cas"))]
use crate::sync::Ordering::Release;
use crate::sync::Ordering::{AcqRel, Acquire, Relaxed};
use core::ffi::c_void;
use core::ptr::{self, NonNull};

/// The current state (a snapshot: another thread may change it right after).
pub fn state(obj: &ObjAny) -> TieState {
    // Acquire: as in `lookup`.
    decode(word(obj).load(Acquire))
}

/// (b): the live wrapper, if bound. One `Acquire` load and a tag test, no write.
///
/// ```
/// use tether_runtime::{object_type, tie, ObjRef};
/// struct Thing;
/// object_type!(Thing, "doc.tie.lookup.Thing");
/// assert!(tie::lookup(ObjRef::new(Thing).as_any()).is_none());
/// ```
#[inline]
pub fn lookup(obj: &ObjAny) -> Option<NonNull<c_void>> {
    if !obj.obj_header().has_tie_header() {
        return None; // a header-less type is never wrapped
    }
    // Acquire: pairs with the Release that published the wrapper (`bind`, `revive`), so its
    // initialization is visible to whoever uses the pointer.
    let w = word(obj).load(Acquire);
    if tether_alloc::tie_tag(w) == 0 {
        NonNull::new(w)
    } else {
        None
    }
}

/// (a) → (b): makes `wrapper` the canonical wrapper of `obj`. `wrapper` must be fully
/// initialized (it is published to `lookup`) and must own a strong reference to `obj`.
///
/// # Errors
/// The observed state, unchanged, if it was not (a) (e.g. another thread bound first).
///
/// # Panics
/// If `wrapper` is not `TIE_ALIGN`-aligned (invariant 2), or no host is installed
/// ([`set_host`](super::set_host)).
///
/// ```
/// use core::ffi::c_void;
/// use core::ptr::NonNull;
/// use tether_runtime::{object_type, tie, ObjRef, TieHost, TieState};
/// unsafe extern "C" fn free_wrapper(_mem: *mut c_void) {}
/// fn release_kept(_: tether_runtime::ObjAny) {}
/// static HOST: TieHost = TieHost { free_cached: free_wrapper, release_kept };
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
    let _ = host();
    let w = word(obj);
    #[cfg(not(tether_loom_broken = "tie_no_cas"))]
    {
        // Release: publishes the wrapper's initialization to `lookup`'s Acquire. Acquire on
        // failure: the state we report was published with Release.
        w.compare_exchange(ptr::null_mut(), wrapper.as_ptr(), Release, Acquire)
            .map(drop)
            .map_err(decode)
    }
    #[cfg(tether_loom_broken = "tie_no_cas")]
    {
        // Deliberately wrong: check, then store: two threads can both bind.
        let cur = w.load(Acquire);
        if !cur.is_null() {
            return Err(decode(cur));
        }
        w.store(wrapper.as_ptr(), crate::sync::Ordering::Release);
        Ok(())
    }
}

/// (b: W) → (c: W): the wrapper died while the object lives on; its memory stays cached.
///
/// # Panics
/// As for [`bind`].
pub fn park(obj: &ObjAny, wrapper: NonNull<c_void>) -> Result<(), TieState> {
    check_aligned(wrapper);
    let _ = host();
    // AcqRel: Release publishes the host's writes to the parked memory (to `revive` and to the
    // free funnel); Acquire orders us after the binder.
    word(obj)
        .compare_exchange(wrapper.as_ptr(), parked(wrapper), AcqRel, Acquire)
        .map(drop)
        .map_err(decode)
}

/// (c: W) → (b: W): the cached memory becomes the live wrapper again (same address). Fails
/// with the observed state if nothing is parked.
pub fn revive(obj: &ObjAny) -> Result<NonNull<c_void>, TieState> {
    let w = word(obj);
    let mut cur = w.load(Acquire);
    loop {
        let TieState::Parked(m) = decode(cur) else {
            return Err(decode(cur));
        };
        // AcqRel: Acquire sees the parker's writes to the memory; Release publishes (b) to
        // `lookup` (the host re-initializes W before anyone else can use it: module docs).
        match w.compare_exchange(cur, m.as_ptr(), AcqRel, Acquire) {
            Ok(_) => return Ok(m),
            Err(now) => cur = now,
        }
    }
}

/// Any → (a), for moves: unbinds; in (c) the cached memory goes back to the host at once.
/// Returns the state it left.
pub fn detach(obj: &ObjAny) -> TieState {
    // AcqRel: Acquire the parker's writes to memory we may hand to the host; Release our take.
    let prev = decode(word(obj).swap(ptr::null_mut(), AcqRel));
    if let TieState::Parked(mem) = prev {
        // SAFETY: the swap took the parked memory: ours alone to hand back, once.
        unsafe { (host().free_cached)(mem.as_ptr()) };
    }
    prev
}

/// (b: W) → (a) for a wrapper that holds the object's last strong reference and is about to
/// release it (so the funnel must not find W cached). Fails if the state is not (b: W).
pub fn unbind_for_last_release(obj: &ObjAny, wrapper: NonNull<c_void>) -> Result<(), TieState> {
    // Relaxed on success: nobody reads W through this object again; the caller frees it.
    word(obj)
        .compare_exchange(wrapper.as_ptr(), ptr::null_mut(), Relaxed, Acquire)
        .map(drop)
        .map_err(decode)
}

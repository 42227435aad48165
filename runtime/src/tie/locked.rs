//! The tie transitions for free-threaded hosts: a per-object lock in the tie word itself
//! ([`TIE_LOCK`]), under which the transitions are plain moves of the unlocked value, and under
//! which the host may do its own short work (take a reference to the bound wrapper, or
//! re-initialize a revived one) before anybody else can see the new state.
//!
//! Top of the tie floor beside `serial` and `finalize` (whose count step it shares); uses
//! `word` and `host`.
//!
//! # Why a lock, not the compare-and-swap transitions
//!
//! The CAS transitions of `crate::tie` make each transition atomic, but a free-threaded host
//! needs more than one step to be atomic with the state it read: "the word names W, so take a
//! reference to W" is two steps, and between them W's last reference may go and its memory be
//! freed and reused for another object's wrapper (an ABA the word cannot show). Likewise a
//! revived W must not be handed out by a second thread before the first has re-initialized it.
//! With the lock held, the word cannot change, and a wrapper it names cannot be unbound, parked
//! or freed (every such step takes the lock first), so the host's "try to take a reference" and
//! "initialize in place" run against a stable state. This is the lock tag bit upstream (tvm-ffi)
//! takes with CAS on free-threaded CPython, but per object and inside the one word the machine
//! already owns, so nothing grows.
//!
//! # The contract
//!
//! 1. **One family per host.** A host that uses these functions uses them for every
//!    transition; it never mixes them with the CAS transitions of `crate::tie` or with
//!    `crate::tie::serial` (their compare-and-swaps would see the lock bit as a foreign state).
//!    Native threads may still call [`lookup`](super::lookup) and [`state`](super::state)
//!    (decoding ignores the lock bit); what they read is a snapshot.
//! 2. **Counted.** Every lock is taken with a strong reference (the `&ObjAny` it borrows), so
//!    the object cannot die while its word is locked, and the allocator's free funnel (the only
//!    other party acting on the word, when the object dies) never sees the lock bit.
//! 3. **Short and leaf.** Nothing blocks or takes another tie lock while one is held; the
//!    lock is a spin lock and waiters spin. Hosts must not run code that can wait for another
//!    thread (for CPython: nothing that allocates Python objects or can stop the world).
//!
//! # Orderings
//!
//! Taking the lock is a compare-and-swap with `Acquire`, and giving it back a `Release` store
//! of the (possibly new) unlocked value: each holder's transition, and the host's work under
//! the lock (the in-place re-initialization of a revived wrapper), happen-before the next
//! holder's. The unlock also happens-before the holder's later release of its reference (program
//! order, then the `Release` decrement), which happens-before the free funnel, so the funnel
//! reads the last unlocked value, as in `serial`.
//!
//! `runtime/tests/loom.rs` models two host threads reviving one parked wrapper (one must win),
//! and a wrapper's death racing a revive and a native drop; `--cfg
//! tether_loom_broken="locked_no_exclusion"` makes [`lock`] a plain load, which those models
//! catch.

use super::finalize::{release_unless_last, Finalized};
use super::host::host;
use super::word::{check_aligned, decode, parked, word, TieState};
use crate::object::ObjAny;
use crate::sync::Ordering::{Acquire, Relaxed, Release};
use core::ffi::c_void;
use core::ptr::{self, NonNull};
use tether_alloc::{tie_tag, TIE_LOCK};

/// The locked tie word of one object: the unlocked value it will store back, and the
/// transitions on it. Dropping it unlocks.
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
/// object_type!(Thing, "doc.tie.locked.Thing");
///
/// let mut mem = [0u64; 4];
/// let w = NonNull::from(&mut mem).cast::<c_void>();
/// let obj = ObjRef::new(Thing).into_any();
/// let mut t = tie::locked::lock(&obj);
/// assert_eq!(t.state(), TieState::Detached);
/// t.bind(w).unwrap();
/// drop(t); // unlocks: the word is now (b: w)
/// assert_eq!(tie::state(&obj), TieState::Bound(w));
/// // An object must not die bound: the wrapper's death unbinds it first.
/// tie::locked::lock(&obj).unbind(w).unwrap();
/// ```
#[derive(Debug)]
#[must_use = "the word stays locked until the guard is dropped"]
pub struct TieLock<'a> {
    obj: &'a ObjAny,
    cur: *mut c_void,
}

/// Locks `obj`'s tie word, spinning while another thread holds it (contract 3: holders are
/// brief).
pub fn lock(obj: &ObjAny) -> TieLock<'_> {
    let w = word(obj);
    let mut spins = 0u32;
    loop {
        let v = w.load(Relaxed);
        #[cfg(tether_loom_broken = "locked_no_exclusion")]
        {
            // Deliberately wrong: no exclusion at all (a snapshot, stored back on unlock).
            if tie_tag(v) & TIE_LOCK == 0 {
                return TieLock { obj, cur: v };
            }
        }
        // Acquire: the previous holder's transition and host work (its Release unlock).
        if tie_tag(v) & TIE_LOCK == 0
            && w.compare_exchange(v, v.map_addr(|a| a | TIE_LOCK), Acquire, Relaxed)
                .is_ok()
        {
            return TieLock { obj, cur: v };
        }
        spins = spins.wrapping_add(1);
        crate::sync::spin_wait(spins);
    }
}

impl TieLock<'_> {
    /// The state under the lock (stable until the guard is dropped).
    #[inline]
    pub fn state(&self) -> TieState {
        decode(self.cur)
    }

    /// (a) → (b) for a new wrapper.
    ///
    /// # Errors
    /// The state, unchanged, if it was not (a).
    ///
    /// # Panics
    /// If `wrapper` is not [`TIE_ALIGN`](tether_alloc::TIE_ALIGN)-aligned or no host was set.
    pub fn bind(&mut self, wrapper: NonNull<c_void>) -> Result<(), TieState> {
        check_aligned(wrapper);
        let _ = host();
        match self.state() {
            TieState::Detached => {
                self.cur = wrapper.as_ptr();
                Ok(())
            }
            other => Err(other),
        }
    }

    /// (c) → (b): the parked memory becomes the live wrapper again. The host re-initializes
    /// it before dropping the guard, so no other thread can see it half-made.
    ///
    /// # Errors
    /// The state, unchanged, if nothing is parked.
    pub fn revive(&mut self) -> Result<NonNull<c_void>, TieState> {
        match self.state() {
            TieState::Parked(m) => {
                self.cur = m.as_ptr();
                Ok(m)
            }
            other => Err(other),
        }
    }

    /// (b: W) → (a), or (c: W) → (a) handing W's memory to the caller (which frees it or
    /// reuses it; the free callback will not see it).
    ///
    /// # Errors
    /// The state, unchanged, if the word names another wrapper or none.
    pub fn unbind(&mut self, wrapper: NonNull<c_void>) -> Result<(), TieState> {
        match self.state() {
            TieState::Bound(w) | TieState::Parked(w) if w == wrapper => {
                self.cur = ptr::null_mut();
                Ok(())
            }
            other => Err(other),
        }
    }

    /// Any → (a), for moves; parked memory goes back to the host (after unlocking). Returns
    /// the state it left.
    pub fn detach(mut self) -> TieState {
        let prev = self.state();
        self.cur = ptr::null_mut();
        drop(self);
        if let TieState::Parked(mem) = prev {
            // SAFETY: the store took the parked memory: ours alone to hand back, once.
            unsafe { (host().free_cached)(mem.as_ptr()) };
        }
        prev
    }
}

impl Drop for TieLock<'_> {
    fn drop(&mut self) {
        // Release: this holder's transition and host work, for the next holder's Acquire (and,
        // through the holder's later Release decrement, for the free funnel).
        word(self.obj).store(self.cur, Release);
    }
}

/// The dying wrapper's one call, as [`tie::park_or_release`](super::park_or_release), with the
/// lock: parks W if the object lives on, else unbinds it and releases the object, never letting
/// W's own release hand W's memory to the free callback.
///
/// The host must not hold `obj`'s lock when calling (this takes it, twice at most). Before the
/// call, W must be in its cached form: once parked and unlocked, another thread may revive it.
///
/// # Errors
/// Gives `obj` back if the state is not (b: W).
///
/// # Panics
/// As for [`TieLock::bind`].
///
/// ```
/// use core::ffi::c_void;
/// use core::ptr::NonNull;
/// use tether_runtime::{object_type, tie, Finalized, ObjRef, TieHost};
/// unsafe extern "C" fn free_wrapper(_mem: *mut c_void) {}
/// fn release_kept(_: tether_runtime::ObjAny) {}
/// static HOST: TieHost = TieHost { free_cached: free_wrapper, release_kept };
/// tether_runtime::set_host(&HOST);
/// struct Thing;
/// object_type!(Thing, "doc.tie.locked.park.Thing");
///
/// let mut mem = [0u64; 4];
/// let w = NonNull::from(&mut mem).cast::<c_void>();
/// let obj = ObjRef::new(Thing).into_any();
/// let other = obj.clone();
/// tie::locked::lock(&obj).bind(w).unwrap();
/// assert_eq!(tie::locked::park_or_release(obj, w).unwrap(), Finalized::Parked);
/// assert_eq!(tie::locked::lock(&other).revive(), Ok(w)); // same memory, same identity
/// assert_eq!(tie::locked::park_or_release(other, w).unwrap(), Finalized::Released);
/// ```
pub fn park_or_release(
    obj: ObjAny,
    wrapper: NonNull<c_void>,
) -> Result<Finalized, (ObjAny, TieState)> {
    check_aligned(wrapper);
    {
        // 1. (b: W) → (c: W) while W's reference keeps the object alive.
        let mut t = lock(&obj);
        if t.cur != wrapper.as_ptr() {
            let s = t.state();
            drop(t);
            return Err((obj, s));
        }
        t.cur = parked(wrapper);
    }
    // 2. Give up W's reference unless it is the last (unlocked: contract 2 for whoever may now
    //    drop the last other reference).
    let obj = match release_unless_last(obj) {
        Ok(()) => return Ok(Finalized::Parked),
        Err(obj) => obj,
    };
    // 3. Last reference: take W back if it is still parked, then release the object, which
    //    dies with nothing cached. If another thread revived W meanwhile (it upgraded a weak
    //    reference, so ours is no longer the last), W is that thread's now.
    let ours = {
        let mut t = lock(&obj);
        let still_parked = t.state() == TieState::Parked(wrapper);
        if still_parked {
            t.cur = ptr::null_mut();
        }
        still_parked
    };
    drop(obj);
    Ok(if ours {
        Finalized::Released
    } else {
        Finalized::Parked
    })
}

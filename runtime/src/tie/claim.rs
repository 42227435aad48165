//! The state word and its busy bit: [`Claim`], a transition's exclusive hold on an object's tie
//! words, and [`TieState`], what a claim observes.
//!
//! Bottom of the tie floor (beside `host`): uses `crate::object` (the tie words of a handle) and
//! `crate::sync`. The busy bit is read and set only through [`busy`] and [`with_busy`]. Upholds
//! invariant 2 (only the claim holder writes the words; a claim ends with one `Release` store
//! of `cached_mem`, busy bit clear) and checks invariants 1 (in [`Claim::publish`], in debug
//! builds) and 4 ([`check_aligned`]).

use crate::object::{tie_words, ObjAny};
#[cfg(not(tether_loom_broken = "tie_no_cas"))]
use crate::sync::Ordering::Acquire;
use crate::sync::Ordering::{Relaxed, Release};
use crate::sync::TieWords;
use core::ffi::c_void;
use core::ptr::NonNull;

/// The busy bit in `cached_mem`.
const BUSY: usize = 1;

/// Whether the busy bit of the state word `p` is set (or, for a wrapper pointer, whether it is
/// odd: invariant 4).
#[inline(always)]
fn busy(p: *mut c_void) -> bool {
    p.addr() & BUSY != 0
}

/// The state word `p` with its busy bit set.
#[inline(always)]
fn with_busy(p: *mut c_void) -> *mut c_void {
    p.map_addr(|a| a | BUSY)
}

/// The observable states of an object's tie.
///
/// ```
/// use tether_runtime::TieState;
/// assert_eq!(TieState::Detached, TieState::Detached);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TieState {
    /// (a): no wrapper, nothing cached.
    Detached,
    /// (b): bound to this live wrapper.
    Bound(NonNull<c_void>),
    /// (c): this finalized wrapper's memory is cached for revival.
    Parked(NonNull<c_void>),
}

// SAFETY: a TieState only reports addresses; nothing in safe code dereferences them (using a
// wrapper pointer is the host's unsafe business), so moving or sharing one across threads is
// harmless.
unsafe impl Send for TieState {}
// SAFETY: as above.
unsafe impl Sync for TieState {}

/// The tie words of the object behind `obj`.
#[inline(always)]
pub(super) fn cell(obj: &ObjAny) -> &TieWords {
    // SAFETY: the strong reference behind `obj` keeps the object alive for the borrow.
    unsafe { tie_words(obj.as_ptr()) }
}

/// The state word, claimed (busy bit set) by this thread.
pub(super) struct Claim<'a> {
    pub(super) cell: &'a TieWords,
    /// `cached_mem` as it was when claimed (busy bit clear).
    pub(super) cached: *mut c_void,
}

impl<'a> Claim<'a> {
    /// Spins until the busy bit is ours.
    #[inline]
    pub(super) fn take(cell: &'a TieWords) -> Self {
        let word = cell.cached_mem_atomic();
        let mut spins = 0;
        loop {
            let cur = word.load(Relaxed);
            if !busy(cur) {
                #[cfg(not(tether_loom_broken = "tie_no_cas"))]
                {
                    // Acquire: pairs with the Release store that ended the previous transition
                    // (`publish`), so its writes to `py_obj` and `free_cb` are visible to us.
                    if word
                        .compare_exchange_weak(cur, with_busy(cur), Acquire, Relaxed)
                        .is_ok()
                    {
                        return Claim { cell, cached: cur };
                    }
                }
                #[cfg(tether_loom_broken = "tie_no_cas")]
                {
                    // Deliberately wrong: check-then-store lets two threads claim at once.
                    crate::sync::backoff(&mut spins);
                    word.store(with_busy(cur), Relaxed);
                    return Claim { cell, cached: cur };
                }
            }
            crate::sync::backoff(&mut spins);
        }
    }

    /// `py_obj` (stable while claimed: invariant 2). Relaxed: our Acquire claim ordered us after
    /// the last writer.
    #[inline]
    pub(super) fn py(&self) -> *mut c_void {
        self.cell.py_obj_atomic().load(Relaxed)
    }

    /// The state observed at the claim.
    pub(super) fn observed(&self) -> TieState {
        observed(self.py(), self.cached)
    }

    /// Ends the transition with `cached_mem = new` (busy bit clear).
    #[inline]
    pub(super) fn publish(self, new: *mut c_void) {
        debug_assert!(
            {
                let py = self.py();
                py.is_null() || py == new
            },
            "tie: a transition would publish py_obj != cached_mem (invariant 1)"
        );
        // Release: the writes made while claimed (py_obj, free_cb) happen-before the next
        // claim (which acquires this store) and before any Acquire read of cached_mem.
        self.cell.cached_mem_atomic().store(new, Release);
        core::mem::forget(self);
    }

    /// Ends the transition leaving the state as it was.
    #[inline]
    pub(super) fn restore(self) {
        let cached = self.cached;
        self.publish(cached);
    }
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        // Only reached if a transition unwinds (none can: no code inside panics); never leave
        // the word busy.
        self.cell.cached_mem_atomic().store(self.cached, Release);
    }
}

fn observed(py: *mut c_void, cached: *mut c_void) -> TieState {
    if let Some(w) = NonNull::new(py) {
        TieState::Bound(w)
    } else if let Some(m) = NonNull::new(cached) {
        TieState::Parked(m)
    } else {
        TieState::Detached
    }
}

/// Invariant 4: a wrapper pointer must not collide with the busy bit.
#[inline]
pub(super) fn check_aligned(wrapper: NonNull<c_void>) {
    assert!(
        !busy(wrapper.as_ptr()),
        "tether_runtime::tie: wrapper pointers must be at least 2-aligned"
    );
}

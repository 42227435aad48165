//! The tie word of an object seen by the machine: [`TieState`] (what the word encodes) and the
//! decoding of its tag bits.
//!
//! Bottom of the tie floor (beside `host`): uses `crate::object` (the tie word of a handle) and
//! `crate::sync`. Checks invariant 2 ([`check_aligned`]).

use crate::object::{tie_word, ObjAny};
use crate::sync::TieWord;
use core::ffi::c_void;
use core::ptr::NonNull;
use tether_alloc::{tie_ptr, tie_tag, tie_with, TIE_ALIGN, TIE_PARKED};

/// The observable states of an object's tie.
///
/// ```
/// use tether_runtime::TieState;
/// assert_eq!(TieState::Detached, TieState::Detached);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TieState {
    /// (a): no wrapper, nothing cached (the word is 0).
    Detached,
    /// (b): bound to this live wrapper (the word is `W`).
    Bound(NonNull<c_void>),
    /// (c): this finalized wrapper's memory is cached for revival (the word is `W | PARKED`).
    Parked(NonNull<c_void>),
}

// SAFETY: a TieState only reports addresses; nothing in safe code dereferences them (using a
// wrapper pointer is the host's unsafe business), so moving or sharing one across threads is
// harmless.
unsafe impl Send for TieState {}
// SAFETY: as above.
unsafe impl Sync for TieState {}

/// The tie word of the object behind `obj`.
#[inline(always)]
pub(super) fn word(obj: &ObjAny) -> &TieWord {
    // SAFETY: the strong reference behind `obj` keeps the object alive for the borrow.
    unsafe { tie_word(obj.as_ptr()) }
}

/// What the raw word `w` encodes (invariant 1: only these three forms are ever stored).
#[inline]
pub(super) fn decode(w: *mut c_void) -> TieState {
    match NonNull::new(tie_ptr(w)) {
        None => TieState::Detached,
        Some(p) if tie_tag(w) & TIE_PARKED != 0 => TieState::Parked(p),
        Some(p) => TieState::Bound(p),
    }
}

/// The word of state (c) for wrapper memory `w`.
#[inline(always)]
pub(super) fn parked(w: NonNull<c_void>) -> *mut c_void {
    tie_with(w.as_ptr(), TIE_PARKED)
}

/// Invariant 2: a wrapper pointer must leave the tag bits free.
#[inline]
pub(super) fn check_aligned(wrapper: NonNull<c_void>) {
    assert!(
        wrapper.as_ptr().addr() % TIE_ALIGN == 0,
        "tether_runtime::tie: wrapper pointers must be {TIE_ALIGN}-aligned (the tie word's tag bits)"
    );
}

//! Kept wrappers: [`keep`], [`unkeep`], [`is_kept`]. A wrapper that must outlive its own host
//! references (CPython: one with weak references, which must follow the native object) is
//! *kept*: the object owns one host reference to it until the object's last other reference
//! goes, when the host's [`release_kept`](super::TieHost::release_kept) releases it.
//!
//! In the tie floor beside `finalize`: uses `host` and `crate::object` (the count word's
//! [`KEPT`] flag). Nothing here touches the tie word: a kept object is in state (b), bound to
//! the kept wrapper; the flag only says who holds whom.
//!
//! # Protocol
//!
//! While kept, the wrapper W holds the object (its own strong reference, which is in the count)
//! and the object holds W (one host reference, owned by the flag). That cycle is broken when
//! only W's reference would remain:
//!
//! * [`keep`] sets the flag only if some reference besides W's exists, in one compare-and-swap,
//!   so the flag is never set on an object that only W holds.
//! * A release that finds the count kept with two references claims the flag instead of
//!   decrementing, in one compare-and-swap, and hands its reference to the host's
//!   `release_kept`, which gives it up and then releases W (`crate::object`'s `claim_kept`).
//! * [`unkeep`] clears the flag for a host that ends the kept state itself (moving the object
//!   out of W); whoever clears the flag, of the releasers and the host, owes W's release, and
//!   only one can.
//!
//! Every change of the flag is a read-modify-write of the count word, so the flag and the count
//! change together: a decrement can never take a kept count to "W's reference alone" without
//! the claim. `tests/loom.rs` models it (`kept_wrapper_*`), and the broken variant
//! `kept_unclaimed` (releases ignore the flag) is caught.
//!
//! # The host's side of the contract
//!
//! * Only the bound wrapper, while its host holds it alive, is kept; it holds a strong reference
//!   to the object (`obj` in [`keep`]); the host records which wrapper it kept before the flag
//!   can be claimed (it is claimed by other threads, which call `release_kept`).
//! * A kept wrapper never dies (the object's reference keeps it) and is not moved out without
//!   [`unkeep`].

use super::host::host;
use crate::object::{counts, Counts, ObjAny, KEPT};
use crate::sync::Ordering::{AcqRel, Relaxed};

/// Keeps the wrapper that holds `obj`: sets the object's kept flag if another strong reference
/// exists besides `obj` (the wrapper's own) and the object is not cyclic garbage being freed
/// (`collect_cycles`), and says whether it did. On `true` the object owns
/// one host reference to the wrapper, released by the host's
/// [`release_kept`](super::TieHost::release_kept) when the object's last other reference
/// goes, or by the host itself after [`unkeep`].
///
/// # Panics
/// If no host is installed ([`set_host`](super::set_host)).
///
/// ```
/// use core::ffi::c_void;
/// use tether_runtime::{object_type, tie, ObjAny, ObjRef, TieHost};
/// unsafe extern "C" fn free_wrapper(_mem: *mut c_void) {}
/// fn release_kept(obj: ObjAny) {
///     drop(obj); // then release the kept wrapper (which holds the last reference)
/// }
/// static HOST: TieHost = TieHost { free_cached: free_wrapper, release_kept };
/// tether_runtime::set_host(&HOST);
/// struct Thing;
/// object_type!(Thing, "doc.tie.keep.Thing");
///
/// let wrappers_ref = ObjRef::new(Thing).into_any(); // the wrapper's own reference
/// assert!(!tie::keep(&wrappers_ref)); // nobody else holds the object
/// let other = wrappers_ref.clone();
/// assert!(tie::keep(&wrappers_ref));
/// assert!(tie::is_kept(&other));
/// assert!(tie::unkeep(&other)); // the host ends it itself (and releases the wrapper)
/// assert!(!tie::is_kept(&other));
/// ```
pub fn keep(obj: &ObjAny) -> bool {
    let _ = host();
    // SAFETY: `obj`'s strong count keeps the header alive.
    let c = unsafe { counts(obj.as_ptr()) };
    let mut cur = c.load(Relaxed);
    loop {
        let n = Counts(cur);
        debug_assert!(!n.is_kept(), "tie::keep: the object is kept already");
        if n.strong() < 2 || n.is_kept() || n.is_doomed() {
            return false; // (a doomed object is cyclic garbage being freed: crate::cycles)
        }
        // AcqRel: Release publishes what the host recorded before keeping to the claimer
        // (its Acquire in `claim_kept`); Acquire is not needed for our own part but keeps the
        // read of `cur` ordered after the releases it counts.
        match c.compare_exchange_weak(cur, cur | KEPT, AcqRel, Relaxed) {
            Ok(_) => return true,
            Err(now) => cur = now,
        }
    }
}

/// Ends the kept state of `obj` from the host's side (before moving the object out of its kept
/// wrapper): clears the flag and says whether this call did. On `true` the host owes the
/// wrapper's release; on `false` nothing was kept, or a releaser claimed the flag first and
/// its `release_kept` owes it.
///
/// ```
/// use tether_runtime::{object_type, tie, ObjRef};
/// struct Thing;
/// object_type!(Thing, "doc.tie.unkeep.Thing");
/// assert!(!tie::unkeep(&ObjRef::new(Thing).into_any()));
/// ```
pub fn unkeep(obj: &ObjAny) -> bool {
    // SAFETY: `obj`'s strong count keeps the header alive.
    let c = unsafe { counts(obj.as_ptr()) };
    // AcqRel: as a claim (Acquire, `claim_kept`), and our later release of the wrapper is
    // ordered after it.
    Counts(c.fetch_and(!KEPT, AcqRel)).is_kept()
}

/// Whether `obj`'s wrapper is kept (a racy snapshot).
#[inline]
pub fn is_kept(obj: &ObjAny) -> bool {
    // SAFETY: `obj`'s strong count keeps the header alive.
    Counts(unsafe { counts(obj.as_ptr()) }.load(Relaxed)).is_kept()
}

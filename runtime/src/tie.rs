//! The tie state machine: one canonical host wrapper per object, kept across the wrapper's
//! death and revival.
//!
//! Floor 3 (see "Layers" in the crate docs): uses `crate::object` (handles, the count word, the
//! tie words) and `crate::sync`.
//!
//! # States
//!
//! The machine runs over the allocator header in front of every object
//! ([`tether_alloc::Header`]: `py_obj`, `cached_mem`, `free_cb`):
//!
//! | state | `py_obj` | `cached_mem` | meaning |
//! |-------|----------|--------------|---------|
//! | (a) [`Detached`](TieState::Detached) | null | null | never wrapped, or unbound |
//! | (b) [`Bound(W)`](TieState::Bound)    | W    | W    | W is the live canonical wrapper |
//! | (c) [`Parked(W)`](TieState::Parked)  | null | W    | W was finalized; its memory is cached for revival |
//! | busy (transient)                     | any  | x \| 1 | a transition is in progress |
//!
//! ```text
//!            bind                      park / park_or_release (object lives on)
//!   (a) ─────────────▶ (b) ───────────────────────────────────────────────▶ (c)
//!    ▲  ◀──────────────  │  ◀───────────────────────────────────────────────  │
//!    │   detach,          │                    revive                          │
//!    │   unbind_for_last_release,                                            │
//!    │   park_or_release (wrapper held the last reference)                   │
//!    └──────────────────────────────────── detach: free_cb(W) now ───────────┘
//!                                          object dies: free_cb(W), once
//! ```
//!
//! # Operations
//!
//! Each operation is one linearizable transition. The state word is `cached_mem`: a transition
//! claims it with a compare-and-swap that sets its low bit (the busy bit), checks its
//! precondition on `py_obj` and `cached_mem`, writes `py_obj`, and publishes the new state with
//! a `Release` store of `cached_mem`, which clears the bit. A failed precondition restores the
//! state unchanged and returns the observed [`TieState`] as the error. The busy window is a few
//! instructions with no callback inside, so other transitions wait for it by spinning (and
//! yielding); [`lookup`] never waits: it is one `Acquire` load of `py_obj`.
//!
//! * [`lookup`]: (b) gives the live wrapper.
//! * [`bind`]: (a) → (b) for a new wrapper; stores the host's free callback as `free_cb`.
//! * [`park`]: (b) → (c): the wrapper died while the object lives on; its memory stays cached.
//! * [`revive`]: (c) → (b): the cached memory becomes the live wrapper again (same address, so
//!   the same `id()`); the host re-initializes it in place.
//! * [`detach`]: any → (a), for moves; in (c) the cached memory goes back to the host at once.
//! * Final free: when the object dies in (c), `free_cb(W)` hands the memory back, exactly once
//!   (when the last strong reference goes, or, with no weak references, through the
//!   allocator's free funnel when the block is freed).
//! * Last reference held by the wrapper: [`park_or_release`] (or [`unbind_for_last_release`]).
//!
//! # The last-reference path (the fourth state)
//!
//! A wrapper W that dies must either park (the object lives on) or go away with the object.
//! Deciding by reading the strong count first is a race: if the count drops to 1 after the
//! check, W parks, its own release then destroys the object, and the free funnel hands W's
//! memory to `free_cb` *inside W's own finalizer* (tvm-ffi's re-entrant use-after-free).
//! [`park_or_release`] never lets the wrapper's own release be the one that destroys a parked
//! object:
//!
//! 1. (b: W) → (c: W) as in [`park`], **while still holding W's strong reference**. This is the
//!    transient fourth state, "parking": it looks like (c) to everyone, but the object cannot
//!    die, because the finalizing thread's reference keeps it alive;
//! 2. give up that reference only if it is not the last: a CAS loop `strong → strong − 1` that
//!    refuses to go from 1 to 0. On success the state is a true (c) ([`Finalized::Parked`]):
//!    if the object dies later, on whichever thread, `free_cb(W)` runs there, once;
//! 3. if the reference is the last one, take W back: (c: W) → (a), then release the reference
//!    (the object dies with nothing cached, the funnel frees nothing), and the host frees W
//!    itself ([`Finalized::Released`]). A weak reference upgraded in between merely leaves the
//!    object alive in (a). If the state is no longer (c: W) (a free-threaded host revived or
//!    detached W meanwhile, which needs a reference of its own), W is not ours to free, and the
//!    result is `Parked`.
//!
//! Every transition, including both halves of this one, runs while the caller holds a strong
//! reference, so the object never dies with the busy bit set (invariant 3 below).
//!
//! # The host's side of the contract
//!
//! * A bound wrapper owns one strong reference to its object (stored with
//!   [`ObjAny::into_raw`](crate::ObjAny::into_raw)); a wrapper dies through
//!   [`park_or_release`] (or [`park`] / [`unbind_for_last_release`] when the host knows which
//!   applies).
//! * Before calling [`park_or_release`] or [`park`], W's memory must already be in its cached
//!   form (for CPython: resurrected): from the moment (c) is published, another thread may
//!   revive W or, if the object dies, call `free_cb(W)`. On `Released`, W is the host's again.
//! * [`revive`] publishes W in (b) before the host re-initializes it; a free-threaded host must
//!   keep concurrent `lookup`s from using W until it is initialized (under a GIL nobody can
//!   observe the gap). Likewise a wrapper returned by `lookup` may be finalizing concurrently;
//!   a free-threaded host takes its reference with a try-incref.
//! * An object must not die in state (b) (its wrapper owns a reference, so it cannot unless
//!   the host releases that reference without one of the transitions above): the free funnel
//!   would hand the live wrapper's memory to `free_cb`.
//! * [`set_host`] must be called before the first [`bind`] or [`park`].
//!
//! # Invariants
//!
//! 1. Outside a busy window: `py_obj` is null or equal to `cached_mem` (states (a), (b), (c)).
//! 2. `py_obj`, `cached_mem` (other than clearing it in the funnel) and `free_cb` are written
//!    only by the holder of the busy bit.
//! 3. Every operation is called with a strong reference (`&ObjAny`), so the object is alive and
//!    cannot enter the free funnel while a transition is in progress; hence the funnel never
//!    sees the busy bit.
//! 4. Wrapper pointers are at least 2-aligned (bit 0 is the busy bit); checked on entry.
//!
//! # Files
//!
//! Each uses only the ones before it (`host` and `claim` not each other); in them "invariant N"
//! cites the list above, "object invariant N" that of `crate::object`.
//! * `host`: [`TieHost`] and [`set_host`], what the host plugs in;
//! * `claim`: the busy bit, `Claim` (a transition's hold on the state word), [`TieState`];
//! * `transitions`: [`state`], [`lookup`], [`bind`], [`park`], [`revive`], [`detach`],
//!   [`unbind_for_last_release`];
//! * `finalize`: [`park_or_release`] and [`Finalized`], the last-reference path.

mod claim;
mod finalize;
mod host;
mod transitions;

pub use claim::TieState;
pub use finalize::{park_or_release, Finalized};
pub use host::{set_host, TieHost};
pub use transitions::{bind, detach, lookup, park, revive, state, unbind_for_last_release};

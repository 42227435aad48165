//! The tie state machine: one canonical host wrapper per object, kept across the wrapper's
//! death and revival.
//!
//! Floor 3 (see "Layers" in the crate docs): uses `crate::object` (handles, the count word, the
//! tie words) and `crate::sync`.
//!
//! # States
//!
//! The machine runs over the tie word in front of every object ([`tether_alloc::TieWord`], the
//! one word of the allocator header the machine owns), a tagged pointer:
//!
//! | state | tie word | meaning |
//! |-------|----------|---------|
//! | (a) [`Detached`](TieState::Detached) | 0 | never wrapped, or unbound |
//! | (b) [`Bound(W)`](TieState::Bound)    | W | W is the live canonical wrapper |
//! | (c) [`Parked(W)`](TieState::Parked)  | W \| `TIE_PARKED` | W was finalized; its memory is cached for revival |
//!
//! ```text
//!            bind                      park / park_or_release (object lives on)
//!   (a) ─────────────▶ (b) ───────────────────────────────────────────────▶ (c)
//!    ▲  ◀──────────────  │  ◀───────────────────────────────────────────────  │
//!    │   detach,          │                    revive                          │
//!    │   unbind_for_last_release,                                            │
//!    │   park_or_release (wrapper held the last reference)                   │
//!    └──────────────────────────────── detach: free_cached(W) now ───────────┘
//!                                      object dies: free_cached(W), once
//! ```
//!
//! # Operations
//!
//! Each operation is one linearizable transition: a single compare-and-swap (or swap) of the
//! tie word, so no lock or claim bit is needed (the old two-word header needed a busy bit to
//! change two words at once; `TIE_BUSY` stays reserved for free-threaded hosts). A failed
//! precondition changes nothing and returns the observed [`TieState`]. [`lookup`] is one
//! `Acquire` load and a tag test.
//!
//! * [`lookup`]: (b) gives the live wrapper.
//! * [`bind`]: (a) → (b) for a new wrapper.
//! * [`park`]: (b) → (c): the wrapper died while the object lives on; its memory stays cached.
//! * [`revive`]: (c) → (b): the cached memory becomes the live wrapper again (same address, so
//!   the same `id()`); the host re-initializes it in place.
//! * [`detach`]: any → (a), for moves; in (c) the cached memory goes back to the host at once.
//! * Final free: when the object dies in (c), the host's `free_cached(W)` (registered once, as
//!   the allocator's free callback, by [`set_host`]) hands the memory back, exactly once (when
//!   the last strong reference goes, or, with no weak references, through the allocator's
//!   free funnel when the block is freed).
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
//!    if the object dies later, on whichever thread, `free_cached(W)` runs there, once;
//! 3. if the reference is the last one, take W back: (c: W) → (a), then release the reference
//!    (the object dies with nothing cached, the funnel frees nothing), and the host frees W
//!    itself ([`Finalized::Released`]). A weak reference upgraded in between merely leaves the
//!    object alive in (a). If the state is no longer (c: W) (a free-threaded host revived or
//!    detached W meanwhile, which needs a reference of its own), W is not ours to free, and the
//!    result is `Parked`.
//!
//! Every transition, including both halves of this one, runs while the caller holds a strong
//! reference, so the object never dies in the middle of one (invariant 3 below).
//!
//! # The host's side of the contract
//!
//! * A bound wrapper owns one strong reference to its object (stored with
//!   [`ObjAny::into_raw`](crate::ObjAny::into_raw)); a wrapper dies through
//!   [`park_or_release`] (or [`park`] / [`unbind_for_last_release`] when the host knows which
//!   applies).
//! * Before calling [`park_or_release`] or [`park`], W's memory must already be in its cached
//!   form (for CPython: resurrected): from the moment (c) is published, another thread may
//!   revive W or, if the object dies, call `free_cached(W)`. On `Released`, W is the host's
//!   again.
//! * [`revive`] publishes W in (b) before the host re-initializes it; a free-threaded host must
//!   keep concurrent `lookup`s from using W until it is initialized (under a GIL nobody can
//!   observe the gap). Likewise a wrapper returned by `lookup` may be finalizing concurrently;
//!   a free-threaded host takes its reference with a try-incref.
//! * An object must not die in state (b) (its wrapper owns a reference, so it cannot unless
//!   the host releases that reference without one of the transitions above): the free funnel
//!   would find the live wrapper in the word (the funnel leaves a bound word alone).
//! * [`set_host`] must be called before the first [`bind`] or [`park`].
//!
//! # Invariants
//!
//! 1. The tie word holds 0, `W` or `W | TIE_PARKED`, nothing else (`TIE_BUSY` is never set;
//!    `TIE_LOCK` only by [`locked`], on top of one of those three, while a holder has it).
//! 2. Wrapper pointers are `TIE_ALIGN`-aligned, so the tag bits are free; checked on entry.
//! 3. Every operation is called with a strong reference (`&ObjAny`), so the object is alive and
//!    cannot enter the free funnel while a transition is in progress.
//!
//! # Files
//!
//! Each uses only the ones before it (`host` and `word` not each other); in them "invariant N"
//! cites the list above, "object invariant N" that of `crate::object`.
//! * `host`: [`TieHost`] and [`set_host`], what the host plugs in;
//! * `word`: [`TieState`] and the decoding of the tag bits;
//! * `transitions`: [`state`], [`lookup`], [`bind`], [`park`], [`revive`], [`detach`],
//!   [`unbind_for_last_release`];
//! * `finalize`: [`park_or_release`] and [`Finalized`], the last-reference path;
//! * `kept`: [`keep`], [`unkeep`], [`is_kept`]: a bound wrapper the object holds alive until
//!   its last other reference goes (the count word's kept flag; its module docs hold the
//!   protocol);
//! * [`serial`]: the same transitions with plain loads and stores, for hosts that serialize
//!   them under a lock of their own (a GIL), and its argument;
//! * [`locked`]: the same transitions under a per-object lock in the tie word ([`TIE_LOCK`]),
//!   for free-threaded hosts, which also need their own work (taking a reference to the bound
//!   wrapper, re-initializing a revived one) to be atomic with the state.
//!
//! [`TIE_LOCK`]: tether_alloc::TIE_LOCK

mod finalize;
mod host;
mod kept;
pub mod locked;
pub mod serial;
mod transitions;
mod word;

pub use finalize::{park_or_release, Finalized};
pub use host::{set_host, TieHost};
pub use kept::{is_kept, keep, unkeep};
pub use transitions::{bind, detach, lookup, park, revive, state, unbind_for_last_release};
pub use word::TieState;

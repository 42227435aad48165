//! Objects: the [`ObjHeader`] at offset 0 of every object, the strong handle [`ObjRef`], the
//! weak handle [`WeakRef`], and the reference-count protocol they share with [`ObjAny`].
//!
//! ```text
//!  block (from ALLOC)
//!  +---------------------------+--------------------------------------+------------------+
//!  | tether_alloc::Header (tie)| ObjHeader                            | value: T          |
//!  | py_obj cached_mem free_cb | counts: u64 | type_index | deleter   |                   |
//!  +---------------------------+--------------------------------------+------------------+
//!  ^ obj - HEADER_OFFSET       ^ obj: what ObjRef / ObjAny point at
//! ```
//!
//! Floor 2 (see "Layers" in the crate docs): uses `crate::sync`, `crate::heap` and
//! `crate::table`; knows of types only their index and name (the registry, one floor up, adds
//! the registry-aware methods: `Object`, `ObjRef::new`, `ObjAny::downcast`, ...).
//!
//! # Files (each uses only the ones before it)
//!
//! In these files "invariant N" cites the list below ("Invariants").
//!
//! | file | owns |
//! |---|---|
//! | `header` | [`ObjHeader`], `Counts` (the count word's encoding), [`Deleter`], the tie words |
//! | `block` | the deleter halves, `ObjBox<T>`, the weak release, `finish` (one destruction) |
//! | `trashcan` | the per-thread deferral of deep destructions |
//! | `rc` | increments, the strong release, the destruction funnel `destroy` |
//! | `names` | the type-name table the registry fills |
//! | `any` | [`ObjAny`] |
//! | `strong` | [`ObjRef`] |
//! | `weak` | [`WeakRef`], `ObjRef::downgrade` |
//!
//! # Counts
//!
//! `counts` packs the strong count in its low 32 bits and the weak count in its high 32 bits.
//! All strong references together hold one weak reference, so the block outlives the value
//! for as long as any [`WeakRef`] exists, and "strong 1, weak 1" (`Counts::UNIQUE`) means
//! "exactly one handle exists, and it is strong".
//!
//! # Invariants (relied on by every `unsafe` block in this crate that touches an object)
//!
//! 1. **Layout.** Every object is allocated by [`ALLOC`](crate::ALLOC) with an [`ObjHeader`] at
//!    offset 0, so the tie header is at `obj - HEADER_OFFSET`; the value follows at the offset
//!    its own layout gives (`ObjBox<T>` for Rust types, the record layout for records). Handles
//!    keep the pointer `ALLOC` returned (provenance over the whole block).
//! 2. **Handles own counts.** A live [`ObjRef`] or [`ObjAny`] owns one strong count, a live
//!    [`WeakRef`] one weak count; raw pointers from `into_raw` carry the count they were made
//!    from. Hence while a handle is live, strong >= 1 (strong handles) or weak >= 1 (weak
//!    handles), and the header (and, for strong handles, the value) is valid.
//! 3. **The deleter matches the layout.** `header.deleter` is the deleter of the type the block
//!    was built for: `DropValue` drops the value in place exactly once (after the strong count
//!    reached 0), `FreeBlock` returns the block through `ALLOC.deallocate` exactly once (after
//!    the weak count reached 0), which runs the tie funnel (`free_cb(cached_mem)`).
//! 4. **`type_index` and `deleter` are immutable** after construction; only `counts` changes.
//! 5. **One destruction, by the releasing thread.** The release that takes the strong count to 0
//!    (or finds `UNIQUE`) owes the object its destruction; it runs it now or pushes the object
//!    on its own thread's trashcan stack, which destroys it before that thread's outermost
//!    destruction returns ("Deep structures" below). A deferred object is reachable only from
//!    that stack.
//!
//! # Orderings
//!
//! Like `std::sync::Arc`: increments are `Relaxed` (a new reference is made from an existing
//! one, which already proves the object is alive; whoever receives the new handle synchronizes
//! through whatever channel carried it). Decrements are `Release` and the thread that takes a
//! count to zero issues an `Acquire` fence before destroying, so every use of the object through
//! another handle happens-before the destruction.
//!
//! The last drop does no read-modify-write at all when the counts read `UNIQUE` with an
//! `Acquire` load: no other handle exists, and none can appear (a new strong reference is made
//! from a strong or weak one, a new weak one from a strong or weak one, and we hold the only
//! one), so the value is dropped and the block freed directly. Otherwise one `fetch_sub`.
//!
//! Counts above `i32::MAX` (in either half) abort the process, as `Arc` does past
//! `isize::MAX`: a program needs 2^31 live handles to one object for that, and the half-word
//! headroom above the threshold keeps racing increments from carrying into the other half.
//!
//! # Deep structures: the trashcan
//!
//! Destroying an object drops its value, which releases the objects the value holds, which are
//! destroyed in turn: one nested destruction per level of the object graph. Without a bound, a
//! 200,000-node chain of records overflows the main thread's stack from safe code, and a thread
//! with a 256 KiB stack overflows at ~20,000; hosts' chains (record → host handle → host
//! dealloc → release of another object → …) recurse the same way, through the same release.
//!
//! So, as CPython's trashcan does, the one funnel where a value is destroyed after its strong
//! count reached 0 (`destroy`, reached from the UNIQUE fast path of `release_strong_with` and
//! from `release_last_strong`) counts the destructions nested on the current thread:
//! * below `MAX_DEPTH` (50; 8 under Miri, so that short chains exercise deferral) the
//!   destruction runs now, one level deeper;
//! * at `MAX_DEPTH` the object (strong count 0, value intact) is pushed on the thread's deferred
//!   stack instead, and its release returns;
//! * when the outermost destruction is done (depth back at 0) it destroys the deferred objects,
//!   iteratively, each at depth 1: what they release again runs inline up to the limit or is
//!   deferred.
//!
//! Stack use is bounded by `MAX_DEPTH` nested destructions (plus any host frames between them),
//! however deep the graph. What stays as it was:
//! * for the outermost caller destruction is synchronous: when its release returns, everything
//!   it made unreachable has been destroyed (values dropped, blocks freed or left to their weak
//!   references, cached wrapper memory released);
//! * per object the sequence is unchanged: `DropValue` (the fields drop in their usual order),
//!   then either `FreeBlock` (no weak reference) or `release_cached_at_death` and the weak
//!   release; a deferred object's block stays allocated meanwhile (by the strong refs' weak
//!   count, or, unique, by nobody else's reference at all);
//! * deferred objects are destroyed depth-first in the order the recursion reached them, so a
//!   chain's values drop in chain order.
//!
//! CAUTION: a destructor that releases an object must not assume the object is destroyed when
//! its release returns (it may have been deferred); only the outermost release guarantees that.
//! A panicking destructor unwinds to the outermost destruction, which destroys the remaining
//! deferred objects while unwinding (a second panic aborts, as in drop glue).
//!
//! Nothing on the drop path allocates in the common case, and nothing aborts on allocation
//! failure. There is no free word to link deferred objects through, as CPython links through its
//! GC header: once strong is 0, `counts` is still read and written by [`WeakRef`]s, the tie
//! words are public through [`WeakRef::header`], `type_index` may be read by deleters (the
//! record deleter does), `deleter` is needed to destroy the object, the 4 padding bytes after
//! `type_index` are too small, and the value is not dropped yet. The deferred stack is therefore
//! a thread-local `Vec` whose buffer is reserved once per thread (64 entries, kept between
//! drains) and grows with `try_reserve`; when that fails the object is destroyed inline (the
//! recursion this avoids, only when memory is exhausted). The nesting state has no destructor,
//! so it also works in thread-local destructors at thread exit. Values without drop glue
//! (`!needs_drop::<T>()`) release nothing and bypass the count. `debug_assert!`s check that a
//! deferred object's strong count is 0 when it is deposited (or the count still reads `UNIQUE`
//! on the fast path, which does not decrement) and again before its destruction. The trashcan
//! is compiled out under `--cfg loom` (see `object/trashcan.rs` for why).

mod any;
mod block;
mod header;
mod names;
mod rc;
mod strong;
mod trashcan;
mod weak;

pub use any::ObjAny;
pub use header::{DeleteKind, Deleter, ObjHeader};
pub use strong::ObjRef;
pub use weak::{WeakAny, WeakRef};

pub(crate) use block::{deleter_of, free_block_layout, ObjBox};
#[cfg(not(feature = "narrow-header"))]
pub(crate) use header::record_owner_word;
pub(crate) use header::{
    counts, lock_word, set_deleter, tie_word, Counts, DOOMED, KEPT, STRONG_ONE,
};
pub(crate) use names::publish_name;
pub(crate) use rc::set_kept_hook;

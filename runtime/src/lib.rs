//! # tether-runtime
//!
//! tether's object model, for hosts such as a Python extension: ref-counted objects allocated
//! with a tie header, the wrapper tie state machine, a type registry with reflected fields,
//! run-time record types, dynamically typed values, and function objects.
//!
//! ## The tie state machine
//!
//! Every object is allocated through [`ALLOC`], a [`tether_alloc::HeaderAlloc`], so the tie
//! header (`py_obj`, `cached_mem`, `free_cb`) sits 32 bytes before it. Over that header the
//! [`tie`] module runs a small state machine that gives each object at most one canonical host
//! wrapper and keeps the wrapper's memory (and so its identity) across the wrapper's death:
//!
//! | state | `py_obj` | `cached_mem` | meaning |
//! |-------|----------|--------------|---------|
//! | (a) detached | null | null | never wrapped, or unbound |
//! | (b) bound    | W    | W    | W is the live wrapper |
//! | (c) parked   | null | W    | W was finalized; its memory is cached for revival |
//!
//! [`tie::lookup`] reads (b); [`tie::bind`] (a)→(b); [`tie::park`] (b)→(c);
//! [`tie::revive`] (c)→(b), same memory, same identity; [`tie::detach`] →(a);
//! [`tie::park_or_release`] is the dying wrapper's single call, which parks or, when the
//! wrapper held the last reference, unbinds and frees without ever handing the wrapper's own
//! memory to the free callback. Every transition is a compare-and-swap on the state word; the
//! [`tie`] module documents the protocol, its transient fourth state and the host's side.
//!
//! ## Objects
//!
//! [`ObjRef<T>`] (strong) and [`WeakRef<T>`] are `Arc`/`Weak` for objects: strong and weak
//! counts packed in one atomic `u64` in the [`ObjHeader`] at offset 0; the last drop of a
//! unique object is a single atomic load. [`ObjAny`] is the type-erased strong handle hosts keep.
//!
//! ```
//! use tether_runtime::{object_type, ObjRef, Object};
//! struct Pair(i64, i64);
//! object_type!(Pair, "doc.crate.Pair");
//! let p = ObjRef::new(Pair(1, 2));
//! let any = p.clone().into_any();
//! assert!(any.downcast_ref::<Pair>().is_some_and(|q| q.1 == 2));
//! assert_eq!(any.type_info().name, "doc.crate.Pair");
//! assert_eq!(p.strong_count(), 2);
//! ```
//!
//! ## Types, values, functions
//!
//! [`types`]: type indices, names, parents and reflected fields ([`object_type!`], [`field!`],
//! [`register_record_type`]); [`Record`]: fields inline in the object; [`Value`]: none, bool,
//! int, float, str, bytes, object, function, host object; [`Function`] and the global registry
//! ([`register_global`], [`get_global`]).
//!
//! ## Building
//!
//! The `mimalloc` feature (default) allocates objects on mimalloc; without it, on
//! `std::alloc::System` (what Miri runs: `cargo +nightly miri test -p tether-runtime
//! --no-default-features`). Under `--cfg loom` the counts and the tie words are loom atomics
//! (`tests/loom.rs`).
//!
//! ## Layers
//!
//! The modules sit on floors: a module uses only modules on lower floors, never one on its own
//! floor or above (upper floors may add methods to lower types, as `types` does for the object
//! handles). This crate root only declares the modules and re-exports their public items.
//!
//! * 7: `cycles`, the cycle collector ([`collect_cycles`]). Uses containers, types, tie,
//!   tracked, object, value, sync.
//! * 6: [`demo`], the example `TreeNode` type; [`containers`], the native `List` and `Map`.
//!   Use the public API only (the containers also tell `tracked` when one is dropped).
//! * 5: `function`, `Function`'s type, its constructors, the global functions, and the
//!   conversions of objects into [`Value`]. Uses types, value, object, error.
//! * 4: [`types`], the registry, [`Object`], records, reflection, the macros. Uses object,
//!   value, error, table, heap, tracked.
//! * 3: [`tie`], the tie machine (uses object, sync); `tracked`, the objects the cycle
//!   collector scans (uses object); `value`, [`Value`] and the [`Function`] struct (uses object,
//!   host, error).
//! * 2: `object`, object headers and counts, the handles, the trashcan, type names. Uses sync,
//!   heap, table.
//! * 1: `error`, [`Error`]. Uses host.
//! * 0: `sync` (atomics and tie words, switchable to loom), `host` ([`HostHandle`]), `heap`
//!   ([`ALLOC`] and its counters), `table` (a lock-free append-only table). Use nothing.
//!
//! The macros expand to this root's paths; what they need besides the API is in the hidden
//! `__private` module.

#![warn(missing_docs)]

pub mod containers;
mod cycles;
pub mod demo;
mod error;
mod function;
mod heap;
mod host;
mod object;
mod sync;
mod table;
pub mod tie;
mod tracked;
pub mod types;
mod value;

pub use cycles::{
    collect_cycles, collect_cycles_keeping, cycle_totals, set_cycle_host, CycleHost, CycleStats,
    CycleTotals, HostEdges, HostGraph,
};
pub use error::Error;
pub use function::{
    get_global, list_globals, register_global, register_global_override, remove_global,
};
pub use heap::{
    alloc_stats, bare_alloc_stats, AllocStats, ObjectHeaderKind, ALLOC, BARE, OBJECT_HEADER_BYTES,
    STATS_ENABLED,
};
pub use host::{HostHandle, HostVTable};
pub use object::{DeleteKind, Deleter, ObjAny, ObjHeader, ObjRef, WeakAny, WeakRef};
pub use tie::{
    bind, detach, lookup, park, park_or_release, revive, set_host, unbind_for_last_release,
    Finalized, TieHost, TieState,
};
pub use tracked::tracked_objects;
pub use types::object::Object;
pub use types::record::{
    record_get, record_load_unchecked, record_replace_unchecked, record_set, slot_bool, slot_float,
    slot_int, slot_load, slot_replace, slot_set_bool, slot_set_float, slot_set_int, slot_with_ref,
    Record, RecordBuilder,
};
pub use types::{
    field_get, field_set, is_subtype, register_record_type, register_record_type_with,
    register_rust_type, type_count, type_index_of, type_info, FieldAccess, FieldGetter, FieldInfo,
    FieldKind, FieldSetter, FieldSpec, RecordOptions, TypeInfo, TypeKind, ANY_OBJECT, MAX_TYPES,
    SELF_TYPE,
};
pub use value::{Function, ReturnPolicy, Value};

pub use tether_alloc::allocator_api2::alloc::AllocError;
pub use tether_alloc::{DefaultInner, Stats, StatsSnapshot};

/// What the macros ([`object_type!`], [`field!`]) expand to besides the public API: not part of
/// the API, may change at any time (like PyO3's `impl_`).
#[doc(hidden)]
pub mod __private {
    pub use crate::types::object::expect_field_owner;
}

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

#![warn(missing_docs)]

pub mod demo;
mod error;
mod function;
mod object;
mod record;
mod sync;
pub mod tie;
pub mod types;
mod value;

pub use error::Error;
pub use function::{
    get_global, list_globals, register_global, register_global_override, remove_global, Function,
    ReturnPolicy,
};
pub use object::{DeleteKind, Deleter, ObjAny, ObjHeader, ObjRef, Object, WeakRef};
pub use record::{record_get, record_load_unchecked, record_replace_unchecked, record_set, Record};
pub use tie::{
    bind, detach, lookup, park, park_or_release, revive, set_host, unbind_for_last_release,
    Finalized, TieHost, TieState,
};
pub use types::{
    field_get, field_set, is_subtype, register_record_type, register_record_type_with,
    register_rust_type, type_count, type_index_of, type_info, FieldAccess, FieldGetter, FieldInfo,
    FieldKind, FieldSetter, FieldSpec, RecordOptions, TypeInfo, TypeKind, ANY_OBJECT, MAX_TYPES,
};
pub use value::{HostHandle, HostVTable, Value};

pub use tether_alloc::allocator_api2::alloc::AllocError;
pub use tether_alloc::{DefaultInner, Stats, StatsSnapshot};

use tether_alloc::HeaderAlloc;

/// The statistics sink of [`ALLOC`]: [`Stats`] with the `stats` feature (the default),
/// [`NoStats`](tether_alloc::NoStats) without it.
#[cfg(feature = "stats")]
pub type AllocStats = Stats;
/// The statistics sink of [`ALLOC`]: [`Stats`] with the `stats` feature (the default),
/// [`NoStats`](tether_alloc::NoStats) without it.
#[cfg(not(feature = "stats"))]
pub type AllocStats = tether_alloc::NoStats;

/// Whether [`alloc_stats`] counts (the `stats` feature).
pub const STATS_ENABLED: bool = cfg!(feature = "stats");

/// The allocator of every runtime object: a [`HeaderAlloc`] on the default inner allocator
/// (mimalloc with the `mimalloc` feature, `System` without), so every object has the tie header
/// before it; counting with the `stats` feature.
#[cfg(feature = "stats")]
pub static ALLOC: HeaderAlloc<DefaultInner, AllocStats> = HeaderAlloc::counting();
/// The allocator of every runtime object: a [`HeaderAlloc`] on the default inner allocator
/// (mimalloc with the `mimalloc` feature, `System` without), so every object has the tie header
/// before it; counting with the `stats` feature.
#[cfg(not(feature = "stats"))]
pub static ALLOC: HeaderAlloc<DefaultInner, AllocStats> = HeaderAlloc::new();

/// The allocation counters of [`ALLOC`] (blocks and bytes live, peak, totals); all zero when
/// the `stats` feature is off ([`STATS_ENABLED`]).
///
/// ```
/// use tether_runtime::{alloc_stats, object_type, ObjRef};
/// struct Blob([u8; 40]);
/// object_type!(Blob, "doc.alloc_stats.Blob");
/// let before = alloc_stats().total_allocs;
/// drop(ObjRef::new(Blob([0; 40])));
/// assert!(alloc_stats().total_allocs > before || !tether_runtime::STATS_ENABLED);
/// ```
pub fn alloc_stats() -> StatsSnapshot {
    #[cfg(feature = "stats")]
    return ALLOC.stats();
    #[cfg(not(feature = "stats"))]
    return StatsSnapshot::default();
}

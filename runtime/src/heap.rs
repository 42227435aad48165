//! [`ALLOC`], the allocator of every runtime object, and its counters ([`alloc_stats`]).
//!
//! Floor 0 (see "Layers" in the crate docs): uses no other module of the crate.
//!
//! Invariant: every object block comes from [`ALLOC`] (object invariant 1), so the tie header
//! sits before every object and the counters see every object.

use tether_alloc::{Bare, DefaultInner, HeaderAlloc, StatsSnapshot};

/// The statistics sink of [`ALLOC`]: [`ShardedStats`](tether_alloc::ShardedStats) with the
/// `stats` feature (the default: per-thread counters, no atomic read-modify-write per object),
/// [`NoStats`](tether_alloc::NoStats) without it.
#[cfg(feature = "stats")]
pub type AllocStats = tether_alloc::ShardedStats;
/// The statistics sink of [`ALLOC`]: [`ShardedStats`](tether_alloc::ShardedStats) with the
/// `stats` feature (the default), [`NoStats`](tether_alloc::NoStats) without it.
#[cfg(not(feature = "stats"))]
pub type AllocStats = tether_alloc::NoStats;

/// Whether [`alloc_stats`] counts (the `stats` feature).
pub const STATS_ENABLED: bool = cfg!(feature = "stats");

/// The header kind of every tied object: `Wide` (16 bytes) by default, `Narrow` (8) with the
/// `narrow-header` feature.
#[cfg(not(feature = "narrow-header"))]
pub type ObjectHeaderKind = tether_alloc::Wide;
/// The header kind of every tied object: `Wide` (16 bytes) by default, `Narrow` (8) with the
/// `narrow-header` feature.
#[cfg(feature = "narrow-header")]
pub type ObjectHeaderKind = tether_alloc::Narrow;

/// Header bytes before every tied object of align <= 8 (16, or 8 with `narrow-header`).
pub const OBJECT_HEADER_BYTES: usize = <ObjectHeaderKind as tether_alloc::HeaderKind>::SIZE;

#[cfg(feature = "stats")]
#[doc = "The allocator of every runtime object: a [`HeaderAlloc`] on the default inner allocator \
(mimalloc with the `mimalloc` feature, `System` without), so every object has the tie header \
before it; counting (the `stats` feature)."]
pub static ALLOC: HeaderAlloc<DefaultInner, AllocStats, ObjectHeaderKind> = HeaderAlloc::from_parts(
    tether_alloc::DEFAULT_INNER,
    tether_alloc::ShardedStats::new(),
);
/// The allocator of every runtime object: a [`HeaderAlloc`] on the default inner allocator
/// (mimalloc with the `mimalloc` feature, `System` without), so every object has the tie header
/// before it; counting with the `stats` feature.
#[cfg(not(feature = "stats"))]
pub static ALLOC: HeaderAlloc<DefaultInner, AllocStats, ObjectHeaderKind> =
    HeaderAlloc::from_parts(tether_alloc::DEFAULT_INNER, tether_alloc::NoStats);

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

/// The allocator of objects of header-less types (`Object::HEADERLESS`): the same inner
/// allocator with no header at all (its statistics show 0 header bytes).
#[cfg(feature = "stats")]
pub static BARE: HeaderAlloc<DefaultInner, AllocStats, Bare> = HeaderAlloc::from_parts(
    tether_alloc::DEFAULT_INNER,
    tether_alloc::ShardedStats::new(),
);
/// The allocator of objects of header-less types (`Object::HEADERLESS`): the same inner
/// allocator with no header at all.
#[cfg(not(feature = "stats"))]
pub static BARE: HeaderAlloc<DefaultInner, AllocStats, Bare> =
    HeaderAlloc::from_parts(tether_alloc::DEFAULT_INNER, tether_alloc::NoStats);

/// The counters of [`BARE`] (all zero without the `stats` feature).
pub fn bare_alloc_stats() -> StatsSnapshot {
    #[cfg(feature = "stats")]
    return BARE.stats();
    #[cfg(not(feature = "stats"))]
    return StatsSnapshot::default();
}

//! Allocation counters: a zero-cost [`NoStats`], a counting [`Stats`] and a counting
//! [`ShardedStats`], chosen by type.
//!
//! `Stats` costs a few relaxed atomic read-modify-writes per operation (measured in
//! `docs/benchmarks.md`), so it is opt-in by type rather than by cargo feature: the variants can
//! live in one program and be compared in one benchmark run. `ShardedStats` (`sharded.rs`)
//! keeps the same counters per thread, with plain stores, for allocators on a hot path; its
//! peak is sampled at snapshots.

mod sharded;

pub use sharded::{ShardedCounter, ShardedStats, SHARDS};

use core::sync::atomic::{AtomicUsize, Ordering::Relaxed};

/// What an allocator reports to: implemented by [`NoStats`] (compiled out) and [`Stats`].
pub trait StatsSink {
    /// A block of `bytes` (what the caller asked for, header excluded) was handed out, with
    /// `header` more header bytes to count. `HeaderAlloc` passes only the bytes beyond its
    /// kind's fixed `K::SIZE` (`offset_for::<K>(align) - K::SIZE`: 0 unless over-aligned) and
    /// adds `K::SIZE` per live block in `HeaderAlloc::stats`, so a common allocation touches no
    /// header counter.
    fn on_alloc(&self, bytes: usize, header: usize);
    /// A block of `bytes` object bytes and `header` header bytes was returned.
    fn on_free(&self, bytes: usize, header: usize);
    /// A snapshot, if this sink counts.
    fn snapshot(&self) -> Option<StatsSnapshot> {
        None
    }
}

/// A sink that counts: its [`snapshot`](StatsSink::snapshot) is always `Some`
/// ([`Stats`], [`ShardedStats`]); what `HeaderAlloc::stats` is offered for.
pub trait CountingSink: StatsSink {}

impl CountingSink for Stats {}
impl CountingSink for ShardedStats {}

/// The sink that counts nothing and compiles to nothing.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoStats;

impl StatsSink for NoStats {
    #[inline(always)]
    fn on_alloc(&self, _bytes: usize, _header: usize) {}
    #[inline(always)]
    fn on_free(&self, _bytes: usize, _header: usize) {}
}

/// Live blocks, object bytes and header bytes, the peak of live object bytes, and running totals.
///
/// All counters are relaxed atomics: each is individually exact, but a snapshot taken while
/// other threads allocate is not a consistent cut across counters.
///
/// ```
/// use tether_alloc::{Stats, StatsSink};
/// let s = Stats::new();
/// s.on_alloc(100, 16);
/// s.on_alloc(50, 16);
/// s.on_free(100, 16);
/// let snap = s.snapshot().unwrap();
/// assert_eq!((snap.live_blocks, snap.live_bytes, snap.peak_bytes), (1, 50, 150));
/// assert_eq!((snap.total_allocs, snap.total_frees, snap.header_bytes), (2, 1, 16));
/// ```
#[derive(Debug, Default)]
pub struct Stats {
    live_blocks: AtomicUsize,
    live_bytes: AtomicUsize,
    peak_bytes: AtomicUsize,
    total_allocs: AtomicUsize,
    total_frees: AtomicUsize,
    header_bytes: AtomicUsize,
}

/// A point-in-time copy of [`Stats`].
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct StatsSnapshot {
    /// Blocks handed out and not yet returned.
    pub live_blocks: usize,
    /// Bytes (as requested, headers excluded) handed out and not yet returned.
    pub live_bytes: usize,
    /// The highest `live_bytes` seen.
    pub peak_bytes: usize,
    /// Blocks ever handed out.
    pub total_allocs: usize,
    /// Blocks ever returned.
    pub total_frees: usize,
    /// Bytes the allocator reserves before the live objects beyond their size (the header and
    /// any alignment padding before it: `offset_for::<K>(align)` per live block; 0 for `Bare`),
    /// as `HeaderAlloc::stats` reports it; `live_bytes + header_bytes` is then what the live
    /// blocks ask of the inner allocator. (A bare [`Stats::snapshot`](StatsSink::snapshot) holds
    /// only the sum of the `header` arguments, i.e. the over-alignment part.)
    pub header_bytes: usize,
}

impl Stats {
    /// Zeroed counters.
    pub const fn new() -> Self {
        Stats {
            live_blocks: AtomicUsize::new(0),
            live_bytes: AtomicUsize::new(0),
            peak_bytes: AtomicUsize::new(0),
            total_allocs: AtomicUsize::new(0),
            total_frees: AtomicUsize::new(0),
            header_bytes: AtomicUsize::new(0),
        }
    }
}

impl StatsSink for Stats {
    #[inline]
    fn on_alloc(&self, bytes: usize, header: usize) {
        self.live_blocks.fetch_add(1, Relaxed);
        if header != 0 {
            self.header_bytes.fetch_add(header, Relaxed);
        }
        self.total_allocs.fetch_add(1, Relaxed);
        let live = self
            .live_bytes
            .fetch_add(bytes, Relaxed)
            .wrapping_add(bytes);
        if live > self.peak_bytes.load(Relaxed) {
            self.peak_bytes.fetch_max(live, Relaxed);
        }
    }

    #[inline]
    fn on_free(&self, bytes: usize, header: usize) {
        self.live_blocks.fetch_sub(1, Relaxed);
        if header != 0 {
            self.header_bytes.fetch_sub(header, Relaxed);
        }
        self.total_frees.fetch_add(1, Relaxed);
        self.live_bytes.fetch_sub(bytes, Relaxed);
    }

    fn snapshot(&self) -> Option<StatsSnapshot> {
        Some(StatsSnapshot {
            live_blocks: self.live_blocks.load(Relaxed),
            live_bytes: self.live_bytes.load(Relaxed),
            peak_bytes: self.peak_bytes.load(Relaxed),
            total_allocs: self.total_allocs.load(Relaxed),
            total_frees: self.total_frees.load(Relaxed),
            header_bytes: self.header_bytes.load(Relaxed),
        })
    }
}

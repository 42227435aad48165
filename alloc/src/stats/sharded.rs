//! [`ShardedStats`]: the counters of [`Stats`](super::Stats), kept per thread so that counting
//! costs no atomic read-modify-write on the allocation path; and [`ShardedCounter`], one such
//! counter on its own (for counts other crates keep on their hot paths).
//!
//! Below `mod.rs`'s sink trait only in what it implements; uses `core` atomics and one `std`
//! thread-local.
//!
//! # How it counts
//!
//! Each `ShardedStats` has [`SHARDS`] shards of monotonic counters (allocations, frees, bytes
//! in, bytes out, header bytes in and out), one cache line each, and one shared shard. A thread
//! claims a shard index the first time it counts (a bit in the process-wide [`SLOTS`] mask,
//! taken with a compare-and-swap) and gives it back when it exits (the thread-local's
//! destructor). The index is the same for every `ShardedStats`, so each shard has one writer at
//! a time: the owner updates its counters with a plain load and store (`Relaxed`; no `lock`
//! prefix). Live figures are differences of sums (`allocs - frees`), so a block allocated on one
//! thread and freed on another is counted right. A thread without a shard (more than [`SHARDS`]
//! at once, or one counting while its thread-locals are being destroyed) uses the shared shard
//! with atomic read-modify-writes.
//!
//! # Orderings
//!
//! A snapshot is not a consistent cut while other threads count (as for `Stats`), but it never
//! counts a free without its allocation: owners store with `Release`, and a snapshot loads every
//! "out" counter before any "in" counter with `Acquire` (see `add`), so live figures never go
//! below zero. Ownership of a shard passes through [`SLOTS`]: the
//! `Release` that gives a slot back publishes the last owner's stores to the next owner, whose
//! claiming `Acquire` sees them, so the next owner's load-and-store never loses an update.
//!
//! The peak is the one figure that needs a global running total; here it is the highest
//! `live_bytes` any [`snapshot`](StatsSink::snapshot) has seen.

use super::{StatsSink, StatsSnapshot};
use core::cell::Cell;
use core::sync::atomic::{AtomicU32, AtomicUsize, Ordering};

/// The number of per-thread shards of each [`ShardedStats`].
pub const SHARDS: usize = 32;

/// Which shard indices are owned by a live thread (bit `i`: index `i`).
static SLOTS: AtomicU32 = AtomicU32::new(0);

const UNCLAIMED: u32 = u32::MAX;
const NO_SLOT: u32 = u32::MAX - 1;

/// This thread's shard index; gives it back when the thread exits.
struct Slot(Cell<u32>);

impl Drop for Slot {
    fn drop(&mut self) {
        let i = self.0.get();
        if (i as usize) < SHARDS {
            // Release: our stores to shard `i` (of every ShardedStats) happen-before the next
            // owner's claim (its Acquire).
            SLOTS.fetch_and(!(1 << i), Ordering::Release);
        }
    }
}

std::thread_local! {
    static SLOT: Slot = const { Slot(Cell::new(UNCLAIMED)) };
}

/// This thread's shard index, claimed on first use; `None` without one.
#[inline]
fn my_slot() -> Option<usize> {
    SLOT.try_with(|s| {
        let mut i = s.0.get();
        if i == UNCLAIMED {
            i = claim();
            s.0.set(i);
        }
        ((i as usize) < SHARDS).then_some(i as usize)
    })
    .ok()
    .flatten()
}

/// This thread's own shard (`true`: written with plain stores), or the shared one.
#[inline(always)]
fn pick<'a, S>(shards: &'a [S; SHARDS], shared: &'a S) -> (&'a S, bool) {
    match my_slot() {
        Some(i) => (&shards[i], true),
        None => (shared, false),
    }
}

#[cold]
fn claim() -> u32 {
    let mut cur = SLOTS.load(Ordering::Relaxed);
    loop {
        let free = (!cur).trailing_zeros();
        if free as usize >= SHARDS {
            return NO_SLOT;
        }
        // Acquire: see the previous owner's stores (its Release in Slot::drop).
        match SLOTS.compare_exchange_weak(
            cur,
            cur | (1 << free),
            Ordering::Acquire,
            Ordering::Relaxed,
        ) {
            Ok(_) => return free,
            Err(now) => cur = now,
        }
    }
}

/// One thread's counters (monotonic; the live figures are differences).
#[repr(align(64))]
#[derive(Debug)]
struct Shard {
    allocs: AtomicUsize,
    frees: AtomicUsize,
    bytes_in: AtomicUsize,
    bytes_out: AtomicUsize,
    header_in: AtomicUsize,
    header_out: AtomicUsize,
}

impl Shard {
    const fn new() -> Self {
        Shard {
            allocs: AtomicUsize::new(0),
            frees: AtomicUsize::new(0),
            bytes_in: AtomicUsize::new(0),
            bytes_out: AtomicUsize::new(0),
            header_in: AtomicUsize::new(0),
            header_out: AtomicUsize::new(0),
        }
    }
}

/// Adds `n` to the monotonic counter `c`: a plain load and store by the shard's one owner, an
/// atomic add on the shared shard.
///
/// Release (free on x86: a plain store): what happened before this count is visible to a reader
/// that sees it. Every "out" count (a free, a thing gone) happens after its "in" count (on
/// whichever thread), so a reader that loads every "out" before any "in" with Acquire sees the
/// "in" of every "out" it counts: its differences never go below zero.
#[inline(always)]
fn add(c: &AtomicUsize, n: usize, owned: bool) {
    if owned {
        c.store(c.load(Ordering::Relaxed).wrapping_add(n), Ordering::Release);
    } else {
        c.fetch_add(n, Ordering::Release);
    }
}

/// The counters of [`Stats`](super::Stats) (live blocks and bytes, totals, header bytes) at the
/// cost of plain stores: per-thread shards (module docs). The peak is the highest `live_bytes`
/// seen by a snapshot.
///
/// ```
/// use tether_alloc::{ShardedStats, StatsSink};
/// let s = ShardedStats::new();
/// s.on_alloc(100, 16);
/// std::thread::scope(|t| {
///     t.spawn(|| s.on_free(100, 16)); // freed on another thread
/// });
/// s.on_alloc(50, 0);
/// let snap = s.snapshot().unwrap();
/// assert_eq!((snap.live_blocks, snap.live_bytes, snap.header_bytes), (1, 50, 0));
/// assert_eq!((snap.total_allocs, snap.total_frees), (2, 1));
/// ```
#[derive(Debug)]
pub struct ShardedStats {
    shards: [Shard; SHARDS],
    shared: Shard,
    peak: AtomicUsize,
}

impl Default for ShardedStats {
    fn default() -> Self {
        Self::new()
    }
}

impl ShardedStats {
    /// Zeroed counters.
    pub const fn new() -> Self {
        ShardedStats {
            shards: [const { Shard::new() }; SHARDS],
            shared: Shard::new(),
            peak: AtomicUsize::new(0),
        }
    }

    #[inline(always)]
    fn shard(&self) -> (&Shard, bool) {
        pick(&self.shards, &self.shared)
    }
}

impl StatsSink for ShardedStats {
    #[inline]
    fn on_alloc(&self, bytes: usize, header: usize) {
        let (s, owned) = self.shard();
        add(&s.allocs, 1, owned);
        add(&s.bytes_in, bytes, owned);
        if header != 0 {
            add(&s.header_in, header, owned);
        }
    }

    #[inline]
    fn on_free(&self, bytes: usize, header: usize) {
        let (s, owned) = self.shard();
        add(&s.frees, 1, owned);
        add(&s.bytes_out, bytes, owned);
        if header != 0 {
            add(&s.header_out, header, owned);
        }
    }

    fn snapshot(&self) -> Option<StatsSnapshot> {
        // Acquire, every "out" before any "in" (see `add`): no free is counted without its
        // allocation, so the live figures never wrap below zero.
        let sum = |f: fn(&Shard) -> &AtomicUsize| {
            self.shards
                .iter()
                .chain(core::iter::once(&self.shared))
                .fold(0usize, |a, s| a.wrapping_add(f(s).load(Ordering::Acquire)))
        };
        let total_frees = sum(|s| &s.frees);
        let bytes_out = sum(|s| &s.bytes_out);
        let header_out = sum(|s| &s.header_out);
        let total_allocs = sum(|s| &s.allocs);
        let bytes_in = sum(|s| &s.bytes_in);
        let header_in = sum(|s| &s.header_in);
        // (Saturating as well: a belt to the braces above.)
        let live_bytes = bytes_in.saturating_sub(bytes_out);
        let peak = self
            .peak
            .fetch_max(live_bytes, Ordering::Relaxed)
            .max(live_bytes);
        Some(StatsSnapshot {
            live_blocks: total_allocs.saturating_sub(total_frees),
            live_bytes,
            peak_bytes: peak,
            total_allocs,
            total_frees,
            header_bytes: header_in.saturating_sub(header_out),
        })
    }
}

/// One count of live things (up when one is made, down when it goes), kept per thread like
/// [`ShardedStats`]' counters: [`add`](Self::add) and [`sub`](Self::sub) are a plain load and
/// store on the thread's own shard (no `lock` prefix).
///
/// [`get`](Self::get) is exact when no thread is counting. While threads count, it keeps the
/// guarantee a single atomic counter gives to a reader that acts on zero: every `sub` it sees
/// has its matching `add` seen too, so it never counts a thing's going without its coming, and a
/// result of 0 means that at some instant during the call nothing counted was live. (Ups and
/// downs are separate monotonic sums, one cache line per thread; the stores are `Release`, `get`
/// loads every down before any up with `Acquire`: a thing's `add` happens-before its `sub` on
/// whatever thread, so a down that is seen carries its up with it.)
///
/// ```
/// use tether_alloc::ShardedCounter;
/// static LIVE: ShardedCounter = ShardedCounter::new();
/// LIVE.add(3);
/// std::thread::spawn(|| LIVE.sub(1)).join().unwrap();
/// assert_eq!(LIVE.get(), 2);
/// ```
#[derive(Debug)]
pub struct ShardedCounter {
    shards: [CounterShard; SHARDS],
    shared: CounterShard,
}

/// One thread's ups and downs, a cache line of their own (no false sharing between threads).
#[repr(align(64))]
#[derive(Debug)]
struct CounterShard {
    up: AtomicUsize,
    down: AtomicUsize,
}

impl CounterShard {
    const fn new() -> Self {
        CounterShard {
            up: AtomicUsize::new(0),
            down: AtomicUsize::new(0),
        }
    }
}

impl Default for ShardedCounter {
    fn default() -> Self {
        Self::new()
    }
}

impl ShardedCounter {
    /// Zero.
    pub const fn new() -> Self {
        ShardedCounter {
            shards: [const { CounterShard::new() }; SHARDS],
            shared: CounterShard::new(),
        }
    }

    #[inline(always)]
    fn shard(&self) -> (&CounterShard, bool) {
        pick(&self.shards, &self.shared)
    }

    /// Counts `n` things made.
    #[inline]
    pub fn add(&self, n: usize) {
        let (s, owned) = self.shard();
        add(&s.up, n, owned);
    }

    /// Counts `n` things gone (each counted in by an [`add`](Self::add) that happened before).
    #[inline]
    pub fn sub(&self, n: usize) {
        let (s, owned) = self.shard();
        add(&s.down, n, owned);
    }

    /// The things counted in and not yet out (see the type's docs for what holds while others
    /// count).
    pub fn get(&self) -> usize {
        // Acquire, downs first: see `add`.
        let all = || self.shards.iter().chain(core::iter::once(&self.shared));
        let downs = all().fold(0usize, |a, s| {
            a.wrapping_add(s.down.load(Ordering::Acquire))
        });
        let ups = all().fold(0usize, |a, s| a.wrapping_add(s.up.load(Ordering::Acquire)));
        ups.saturating_sub(downs)
    }
}

//! [`SlabPool`]: size-classed slabs of fixed-size blocks, with per-thread [`PoolCache`]s.
//!
//! It holds memory that is parked and reused: the memory of finalized Python wrappers
//! (state (c)). Requests of 1 to [`SlabPoolConfig::MAX_BLOCK_SIZE`] bytes are served from 64
//! size classes 16 bytes apart; each class owns slabs (chunks from the inner allocator) carved
//! into blocks of exactly the class size.
//!
//! ```text
//!  SlabPool (Sync, const-constructible: fits in a `static`)
//!  |- class c (blocks of 16 * (c + 1) bytes), one per size class
//!  |    depot: Mutex { free list: blk -> blk -> null, bump slab (carved lazily), slab registry }
//!  |                      ^                 |
//!  |       flush down to half when full   refill a batch when empty
//!  |                      |                 v
//!  |    PoolCache (one per thread, !Send): bin[c] head -> blk -> blk -> null, len <= limit
//!  `- inner allocator: slabs of `cap * size` bytes, 16-aligned
//! ```
//!
//! Blocks belong to the pool, not to a thread: a block taken through one thread's cache may be
//! freed through any other cache of the same pool, or through [`SlabPool::free`]; it simply
//! joins that cache's bin. Remote free is correct by construction.
//!
//! Design notes:
//! * Slabs need no alignment beyond 16: a block's slab is found only by `trim`, by binary search
//!   in the class's address-sorted slab registry. Aligning slabs to their size would make that
//!   O(1) but costs mimalloc an over-allocation per slab, and `trim` is a slow path.
//! * A new slab is carved lazily (a bump pointer), so memory a class never uses is never
//!   touched.
//! * A cache's bin does not count its blocks on the hot path: a free spends a unit of "room",
//!   an alloc only pops. When the room runs out the bin is walked once (invariant 1 of the
//!   `cache` module), so the alloc path updates no counter.
//! * Retention: after each trim a depot remembers its free blocks (the ones it could not release
//!   because their slabs had blocks out) as a floor, lowered as blocks leave. It trims itself
//!   when its free bytes exceed the floor by `max_retained_bytes`. So free bytes never exceed
//!   the floor plus the bound, and each automatic trim (a walk of the depot's free list) is paid
//!   for by at least `max_retained_bytes` of returns, never one walk per free.
//!
//! Invariants:
//! 1. Class `c` serves sizes `16c + 1 ..= 16(c + 1)` with blocks of `size = 16(c + 1)` bytes.
//!    A slab is one allocation of `inner` with layout `(cap * size, 16)`; its block `i < cap`
//!    starts at `base + i * size`. Blocks are therefore 16-aligned and lie inside their slab.
//! 2. Every block of every slab is in exactly one place: uncarved in its depot's bump slab, on
//!    its depot's free list, on one cache's bin list, or handed out to a caller. Blocks move
//!    between a depot and anything else only under that depot's mutex; between a bin and a
//!    caller only through the owning cache's `&mut self`; from a caller back only through
//!    `free`, whose contract says the caller owned the block.
//! 3. A block on any free list stores the next block of that list (or null) in its first word
//!    (`LINK` bytes). In debug builds its remaining bytes hold `POISON`.
//! 4. A slab goes back to the inner allocator only (a) in a trim, when all of its blocks are
//!    uncarved or on its depot's free list, or (b) when the pool is dropped (`&mut self`: no
//!    cache borrows it; callers must have freed their blocks, see [`SlabPool`]'s drop notes).
//! 5. A [`PoolCache`] borrows its pool and is `!Send`: its bins are plain fields touched only by
//!    the thread that owns it, without atomics.

mod block;
mod cache;
mod config;
mod depot;

use self::block::{check_poison, poison};
pub use self::cache::PoolCache;
use self::config::ClassInfo;
pub use self::config::{SlabPoolConfig, SlabPoolStats};
use self::depot::Depot;
use crate::inner::DefaultInner;
use allocator_api2::alloc::{AllocError, Allocator};
use core::ptr::NonNull;
use std::sync::{Mutex, MutexGuard, PoisonError};

/// Bytes between the starts of neighbouring size classes (and their blocks' alignment).
const GRANULE: usize = 16;
const GRANULE_SHIFT: u32 = GRANULE.trailing_zeros();
/// The largest block size.
const MAX_SIZE: usize = 1024;
/// How many size classes there are.
const NUM_CLASSES: usize = MAX_SIZE / GRANULE;
/// The largest slab the configuration may ask for (keeps `cap` and byte counts small).
const MAX_SLAB_BYTES: usize = 1 << 30;
/// The most blocks a cache keeps per class (bounds a refill's walk under the depot lock).
const MAX_CACHE_BLOCKS: usize = 256;

const _: () = assert!(GRANULE.is_power_of_two() && MAX_SIZE % GRANULE == 0);

/// The size class of a request: `None`-like (`>= NUM_CLASSES`) for 0 and for `> MAX_SIZE`.
#[inline(always)]
const fn class_of(size: usize) -> usize {
    size.wrapping_sub(1) >> GRANULE_SHIFT
}

/// Keeps each depot on its own cache lines, so classes do not contend through false sharing.
#[repr(align(128))]
struct Padded<T>(T);

/// A pool of fixed-size blocks in 64 size classes (16 to 1024 bytes, 16-aligned), carved from
/// slabs of the inner allocator `A`.
///
/// Fast use goes through a per-thread [`PoolCache`] ([`cache`](Self::cache)): alloc and free are
/// an intrusive free-list pop and push. [`alloc`](Self::alloc)/[`free`](Self::free) on the pool
/// itself take the class's depot lock; they suit callers without a cache at hand (a C free
/// callback). [`trim`](Self::trim) returns fully free slabs to `A`; a depot also trims itself
/// when its free bytes grow past [`SlabPoolConfig::max_retained_bytes`].
///
/// Dropping the pool returns every slab to `A`. Blocks still handed out at that point dangle:
/// free them all first (caches borrow the pool, so they are already gone).
///
/// The Python extension's shape, a `static` pool and a cache per thread:
///
/// ```
/// use std::cell::RefCell;
/// use tether_alloc::{PoolCache, SlabPool};
///
/// static POOL: SlabPool<std::alloc::System> = SlabPool::new(std::alloc::System);
/// thread_local! {
///     static CACHE: RefCell<PoolCache<'static, std::alloc::System>> = RefCell::new(POOL.cache());
/// }
///
/// /// A block handed to another thread.
/// struct Block(std::ptr::NonNull<u8>);
/// // SAFETY: pool blocks are not tied to a thread; the receiver owns the block.
/// unsafe impl Send for Block {}
///
/// let p = CACHE.with(|c| c.borrow_mut().alloc(48)).unwrap();
/// // SAFETY: the block is 48 bytes (at least), 16-aligned and ours until freed.
/// unsafe { p.as_ptr().write_bytes(7, 48) };
/// // Free on another thread, without a cache (remote free is fine).
/// let block = Block(p);
/// std::thread::spawn(move || {
///     let block = block;
///     // SAFETY: allocated from POOL with size 48, freed once.
///     unsafe { POOL.free(block.0, 48) };
/// })
/// .join()
/// .unwrap();
/// ```
pub struct SlabPool<A: Allocator = DefaultInner> {
    classes: [ClassInfo; NUM_CLASSES],
    depots: [Padded<Mutex<Depot>>; NUM_CLASSES],
    config: SlabPoolConfig,
    inner: A,
}

impl<A: Allocator> SlabPool<A> {
    /// An empty pool over `inner` with [`SlabPoolConfig::DEFAULT`]. Holds no memory until the
    /// first allocation.
    ///
    /// ```
    /// use tether_alloc::SlabPool;
    /// static POOL: SlabPool<std::alloc::System> = SlabPool::new(std::alloc::System);
    /// assert_eq!(POOL.stats().slabs, 0);
    /// ```
    pub const fn new(inner: A) -> Self {
        Self::with_config(inner, SlabPoolConfig::DEFAULT)
    }

    /// An empty pool over `inner` with `config` (out-of-range values clamped).
    ///
    /// ```
    /// use tether_alloc::{SlabPool, SlabPoolConfig};
    /// let pool = SlabPool::with_config(
    ///     std::alloc::System,
    ///     SlabPoolConfig { slab_bytes: 4096, ..SlabPoolConfig::DEFAULT },
    /// );
    /// let p = pool.alloc(64).unwrap();
    /// assert_eq!(pool.stats().bytes_held, 4096);
    /// // SAFETY: allocated above with size 64.
    /// unsafe { pool.free(p, 64) };
    /// ```
    pub const fn with_config(inner: A, config: SlabPoolConfig) -> Self {
        let mut classes = [ClassInfo::EMPTY; NUM_CLASSES];
        let mut c = 0;
        while c < NUM_CLASSES {
            classes[c] = ClassInfo::new(c, &config);
            c += 1;
        }
        SlabPool {
            classes,
            depots: [const { Padded(Mutex::new(Depot::new())) }; NUM_CLASSES],
            config,
            inner,
        }
    }

    /// A cache for the calling thread: the fast path. It is `!Send`, borrows the pool, and on
    /// drop (or [`PoolCache::flush`]) gives all of its blocks back to the depots.
    ///
    /// ```
    /// use tether_alloc::SlabPool;
    /// let pool = SlabPool::new(std::alloc::System);
    /// let mut cache = pool.cache();
    /// let a = cache.alloc(64).unwrap();
    /// // SAFETY: `a` came from this pool with size 64.
    /// unsafe { cache.free(a, 64) };
    /// assert_eq!(cache.alloc(64).unwrap(), a); // LIFO reuse
    /// # unsafe { cache.free(a, 64) };
    /// ```
    pub fn cache(&self) -> PoolCache<'_, A> {
        PoolCache::new(self)
    }

    /// A block of at least `size` bytes, 16-aligned, taken from the class's depot under its lock
    /// (no cache). Its contents are unspecified. `AllocError` for `size == 0`, for
    /// `size > MAX_BLOCK_SIZE`, and when the inner allocator fails; never a panic.
    ///
    /// ```
    /// use tether_alloc::SlabPool;
    /// let pool = SlabPool::new(std::alloc::System);
    /// assert!(pool.alloc(0).is_err() && pool.alloc(1025).is_err());
    /// let p = pool.alloc(1024).unwrap();
    /// assert_eq!(p.as_ptr() as usize % 16, 0);
    /// // SAFETY: allocated above with size 1024.
    /// unsafe { pool.free(p, 1024) };
    /// ```
    pub fn alloc(&self, size: usize) -> Result<NonNull<u8>, AllocError> {
        let c = class_of(size);
        let info = self.classes.get(c).ok_or(AllocError)?;
        let (block, _) = self.depot(c).take(1, info, &self.inner)?;
        // SAFETY: `block` was just taken off the depot (invariant 2), so it is a free block of
        // class `c` nobody else references.
        unsafe { check_poison(block, info.size) };
        Ok(block)
    }

    /// Returns a block to its class's depot under the lock (no cache). In debug builds its bytes
    /// after the link word are poisoned. May trim the class (bounded retention).
    ///
    /// # Safety
    /// `ptr` was returned by [`alloc`](Self::alloc) on this pool, or by
    /// [`PoolCache::alloc`] on a cache of this pool (on any thread), for a `size` in the same
    /// size class as this `size`, and is not freed again or used afterwards.
    pub unsafe fn free(&self, ptr: NonNull<u8>, size: usize) {
        let c = class_of(size);
        debug_assert!(c < NUM_CLASSES, "SlabPool::free: size {size} has no class");
        let info = &self.classes[c];
        // SAFETY: the caller hands back a block of class `c` it owned (invariant 2), so we may
        // write its bytes; `ptr` is a one-block chain once `give` links it.
        unsafe {
            poison(ptr, info.size);
            self.depot(c).give(ptr, ptr, 1, info, &self.inner);
        }
    }

    /// Returns to the inner allocator every slab all of whose blocks are in its depot (free or
    /// never carved); slabs with blocks in caches or in use stay. Returns the bytes released.
    ///
    /// ```
    /// use tether_alloc::SlabPool;
    /// let pool = SlabPool::new(std::alloc::System);
    /// let mut cache = pool.cache();
    /// let p = cache.alloc(32).unwrap();
    /// assert_eq!(pool.trim(), 0); // the cache and `p` keep the slab busy
    /// // SAFETY: `p` came from this pool with size 32.
    /// unsafe { cache.free(p, 32) };
    /// drop(cache);
    /// assert_eq!(pool.trim(), 65536);
    /// assert_eq!(pool.stats().bytes_held, 0);
    /// ```
    pub fn trim(&self) -> usize {
        (0..NUM_CLASSES)
            .map(|c| self.depot(c).trim(&self.classes[c], &self.inner))
            .sum()
    }

    /// A snapshot of what the pool holds (see [`SlabPoolStats`] for its precision). Takes each
    /// class's lock in turn; meant for monitoring and tests, not hot paths.
    pub fn stats(&self) -> SlabPoolStats {
        let mut s = SlabPoolStats::default();
        for (c, info) in self.classes.iter().enumerate() {
            self.depot(c).add_stats(info, &mut s);
        }
        s
    }

    /// The configuration the pool was built with (as given, before clamping).
    pub fn config(&self) -> &SlabPoolConfig {
        &self.config
    }

    /// The inner allocator.
    pub fn inner(&self) -> &A {
        &self.inner
    }

    /// Locks class `c`'s depot. A poisoned lock is taken over: the depot's own code does not
    /// panic while it holds the lock (only a panicking inner allocator could), so its state is
    /// consistent.
    #[inline]
    fn depot(&self, c: usize) -> MutexGuard<'_, Depot> {
        self.depots[c]
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

impl<A: Allocator + Default> Default for SlabPool<A> {
    fn default() -> Self {
        Self::new(A::default())
    }
}

impl<A: Allocator> core::fmt::Debug for SlabPool<A> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SlabPool")
            .field("config", &self.config)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl<A: Allocator> Drop for SlabPool<A> {
    fn drop(&mut self) {
        for (depot, info) in self.depots.iter_mut().zip(&self.classes) {
            let depot = depot.0.get_mut().unwrap_or_else(PoisonError::into_inner);
            depot.release_all(info, &self.inner);
        }
    }
}

//! [`PoolCache`]: a thread's private stock of blocks, one bin per size class.
//!
//! Invariants (in addition to those of [`super`]):
//! 1. `bins[c].head` starts a null-terminated intrusive list of free blocks of class `c` of
//!    `pool`, owned by this cache. Its length `len` is not stored; instead
//!    `len + bins[c].room <= limit` (the class's cache bound), so `len <= limit`. A free spends
//!    one unit of room; an alloc does not give it back, so the hot alloc path touches `head`
//!    alone. When the room is spent, `make_room` walks the list once, gives all but its first
//!    half-bound blocks to the depot and sets `room = limit - len`, at least half the bound:
//!    the walk costs O(1) amortized per free.
//! 2. `reported[c]` is the bin length this cache last reported to class `c`'s depot (it is part
//!    of that depot's `cached` sum).
//!
//! The hot paths touch only `bins[c]` and the block itself: no lock, no atomic.

use super::block::{check_poison, poison, read_link, write_link};
use super::{class_of, SlabPool, NUM_CLASSES};
use crate::inner::DefaultInner;
use allocator_api2::alloc::{AllocError, Allocator};
use core::ptr::{null_mut, NonNull};

#[derive(Clone, Copy)]
struct Bin {
    head: *mut u8,
    /// Frees left before the list must be counted (cache invariant 1).
    room: u32,
}

/// A per-thread cache of a [`SlabPool`]'s blocks: alloc and free are a free-list pop and push
/// on plain fields (no lock, no atomic). A class's bin holds at most its bound
/// ([`SlabPoolConfig::cache_bytes`](crate::SlabPoolConfig::cache_bytes)); when a free could
/// exceed it, the bin gives its older blocks to the depot until it is half full; when it is
/// empty, `alloc` refills half the bound from the depot. Dropping the cache gives every block
/// back to the depots.
///
/// Get one per thread with [`SlabPool::cache`]. Any block of the pool may be freed through any
/// of its caches, whichever thread allocated it.
///
/// ```
/// use tether_alloc::SlabPool;
/// /// A block handed to another thread.
/// struct Block(std::ptr::NonNull<u8>);
/// // SAFETY: pool blocks are not tied to a thread; the receiver owns the block.
/// unsafe impl Send for Block {}
///
/// let pool = SlabPool::new(std::alloc::System);
/// std::thread::scope(|s| {
///     let (tx, rx) = std::sync::mpsc::channel::<Block>();
///     let pool = &pool;
///     s.spawn(move || {
///         let mut cache = pool.cache();
///         for _ in 0..100 {
///             let p = cache.alloc(40).unwrap();
///             // SAFETY: the block holds at least 40 bytes.
///             unsafe { p.as_ptr().write_bytes(0xAB, 40) };
///             tx.send(Block(p)).unwrap();
///         }
///     });
///     s.spawn(move || {
///         let mut cache = pool.cache();
///         for Block(p) in rx {
///             // SAFETY: allocated from this pool with size 40 by the other thread, freed once.
///             unsafe { cache.free(p, 40) };
///         }
///     });
/// });
/// assert_eq!(pool.stats().in_use_blocks, 0);
/// ```
///
/// It is `!Send`: its bins belong to the thread that made it.
///
/// ```compile_fail
/// fn send<T: Send>(_: T) {}
/// let pool = tether_alloc::SlabPool::new(std::alloc::System);
/// send(pool.cache());
/// ```
pub struct PoolCache<'p, A: Allocator = DefaultInner> {
    bins: [Bin; NUM_CLASSES],
    reported: [u32; NUM_CLASSES],
    pool: &'p SlabPool<A>,
}

impl<'p, A: Allocator> PoolCache<'p, A> {
    pub(super) fn new(pool: &'p SlabPool<A>) -> Self {
        let mut bins = [Bin {
            head: null_mut(),
            room: 0,
        }; NUM_CLASSES];
        for (bin, info) in bins.iter_mut().zip(&pool.classes) {
            bin.room = info.limit;
        }
        PoolCache {
            bins,
            reported: [0; NUM_CLASSES],
            pool,
        }
    }

    /// A block of at least `size` bytes, 16-aligned; its contents are unspecified. Pops this
    /// thread's bin, refilling it from the depot when empty. `AllocError` for `size == 0`, for
    /// `size > MAX_BLOCK_SIZE`, and when the inner allocator fails; never a panic.
    ///
    /// ```
    /// use tether_alloc::SlabPool;
    /// let pool = SlabPool::new(std::alloc::System);
    /// let mut cache = pool.cache();
    /// assert!(cache.alloc(0).is_err());
    /// assert!(cache.alloc(4096).is_err());
    /// let p = cache.alloc(24).unwrap();
    /// // SAFETY: allocated above with size 24.
    /// unsafe { cache.free(p, 24) };
    /// ```
    #[inline]
    pub fn alloc(&mut self, size: usize) -> Result<NonNull<u8>, AllocError> {
        let c = class_of(size);
        let Some(bin) = self.bins.get_mut(c) else {
            return Err(AllocError);
        };
        let Some(block) = NonNull::new(bin.head) else {
            return self.refill(c);
        };
        // SAFETY: cache invariant 1: `block` is a listed free block owned by this cache; taking
        // it off the list hands it to the caller (invariant 2 of `super`).
        unsafe {
            bin.head = read_link(block);
            check_poison(block, (c + 1) * super::GRANULE);
        }
        Ok(block)
    }

    /// Returns a block to this thread's bin; when the bin may be full, it is counted and, if
    /// more than half full, flushed down to half its bound first. In debug builds the block's
    /// bytes after the link word are poisoned.
    ///
    /// # Safety
    /// `ptr` was returned by [`alloc`](Self::alloc) on a cache of this cache's pool (this one or
    /// another, on any thread) or by [`SlabPool::alloc`] on that pool, for a `size` in the same
    /// size class as this `size`, and is not freed again or used afterwards.
    #[inline]
    pub unsafe fn free(&mut self, ptr: NonNull<u8>, size: usize) {
        let c = class_of(size);
        debug_assert!(c < NUM_CLASSES, "PoolCache::free: size {size} has no class");
        if self.bins[c].room == 0 {
            self.make_room(c);
        }
        let bin = &mut self.bins[c];
        // SAFETY: the caller hands back a block of class `c` of our pool that it owned; pushing
        // it makes it a listed block of this cache, paid for by one unit of room (cache
        // invariant 1).
        unsafe {
            poison(ptr, (c + 1) * super::GRANULE);
            write_link(ptr, bin.head);
        }
        bin.head = ptr.as_ptr();
        bin.room -= 1;
    }

    /// Gives every cached block back to the depots (as dropping the cache does), e.g. before a
    /// thread goes idle or before [`SlabPool::trim`]. Afterwards the pool's stats count no
    /// block in this cache.
    ///
    /// ```
    /// use tether_alloc::SlabPool;
    /// let pool = SlabPool::new(std::alloc::System);
    /// let mut cache = pool.cache();
    /// let p = cache.alloc(16).unwrap();
    /// // SAFETY: allocated above with size 16.
    /// unsafe { cache.free(p, 16) };
    /// cache.flush();
    /// assert_eq!(pool.stats().cached_blocks, 0);
    /// assert!(pool.trim() > 0);
    /// ```
    pub fn flush(&mut self) {
        for c in 0..NUM_CLASSES {
            if !self.bins[c].head.is_null() {
                self.shrink_bin(c, 0);
            } else if self.reported[c] != 0 {
                self.pool.depot(c).report(self.reported[c], 0);
                self.reported[c] = 0;
            }
            self.bins[c].room = self.pool.classes[c].limit;
        }
    }

    /// The pool this cache takes from.
    pub fn pool(&self) -> &'p SlabPool<A> {
        self.pool
    }

    /// Refills the empty bin of class `c` with a batch from the depot and returns one block of
    /// it.
    #[cold]
    #[inline(never)]
    fn refill(&mut self, c: usize) -> Result<NonNull<u8>, AllocError> {
        let pool = self.pool;
        let info = &pool.classes[c];
        let (first, n) = {
            let mut depot = pool.depot(c);
            let (first, n) = depot.take(info.batch, info, &pool.inner)?;
            // n - 1 <= batch <= MAX_CACHE_BLOCKS fits in u32.
            depot.report(self.reported[c], (n - 1) as u32);
            (first, n)
        };
        self.reported[c] = (n - 1) as u32;
        let bin = &mut self.bins[c];
        debug_assert!(bin.head.is_null());
        // SAFETY: `take` returned a null-terminated chain of `n` free blocks of class `c`, now
        // owned by this cache (invariant 2 of `super`): the rest becomes the bin, with room for
        // the bound (cache invariant 1; n - 1 < batch <= limit), `first` goes to the caller.
        unsafe {
            bin.head = read_link(first);
            check_poison(first, info.size);
        }
        bin.room = info.limit - (n - 1) as u32;
        Ok(first)
    }

    /// The length of the bin of class `c`, by walking it (at most `limit` blocks).
    fn bin_len(&self, c: usize) -> usize {
        let mut n = 0;
        let mut p = self.bins[c].head;
        while let Some(block) = NonNull::new(p) {
            // SAFETY: cache invariant 1: `block` is listed, its link initialized.
            p = unsafe { read_link(block) };
            n += 1;
        }
        n
    }

    /// Called when the room of class `c` is spent: flushes the bin down to half the bound if it
    /// is fuller, and renews the room (cache invariant 1).
    #[cold]
    #[inline(never)]
    fn make_room(&mut self, c: usize) {
        let limit = self.pool.classes[c].limit;
        let len = self.shrink_bin(c, limit as usize / 2);
        self.bins[c].room = limit - len;
    }

    /// Keeps the first (most recently freed) `keep` blocks of the bin of class `c` and gives the
    /// rest, if any, to the depot in one chain. Walks the bin once. Returns the bin's length.
    fn shrink_bin(&mut self, c: usize, keep: usize) -> u32 {
        let bin = &mut self.bins[c];
        let mut kept = 0;
        let mut kept_tail: Option<NonNull<u8>> = None;
        let mut p = bin.head;
        while kept < keep {
            let Some(block) = NonNull::new(p) else {
                break;
            };
            // SAFETY: cache invariant 1: `block` is listed, its link initialized.
            p = unsafe { read_link(block) };
            kept_tail = Some(block);
            kept += 1;
        }
        let Some(first) = NonNull::new(p) else {
            return kept as u32;
        };
        let mut last = first;
        let mut n = 1;
        // SAFETY: cache invariant 1: the blocks after the kept ones are listed, and the kept
        // tail (or the head) is cut off from them before they go.
        unsafe {
            while let Some(next) = NonNull::new(read_link(last)) {
                last = next;
                n += 1;
            }
            match kept_tail {
                Some(tail) => write_link(tail, null_mut()),
                None => bin.head = null_mut(),
            }
        }
        // kept == keep <= limit fits in u32.
        let kept = kept as u32;
        let pool = self.pool;
        let info = &pool.classes[c];
        let mut depot = pool.depot(c);
        depot.report(self.reported[c], kept);
        // SAFETY: `first ..= last` is a chain of `n` blocks of class `c` of this pool that this
        // cache owned and no longer lists (cache invariant 1), poisoned when they were freed.
        unsafe { depot.give(first, last, n, info, &pool.inner) };
        drop(depot);
        self.reported[c] = kept;
        kept
    }
}

impl<A: Allocator> Drop for PoolCache<'_, A> {
    fn drop(&mut self) {
        self.flush();
    }
}

impl<A: Allocator> core::fmt::Debug for PoolCache<'_, A> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let cached: usize = (0..NUM_CLASSES).map(|c| self.bin_len(c)).sum();
        f.debug_struct("PoolCache")
            .field("cached_blocks", &cached)
            .finish_non_exhaustive()
    }
}

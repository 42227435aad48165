//! Integration tests of `SlabPool` and `PoolCache`: reuse, classes and alignment, bad sizes,
//! contents, cross-thread (remote) frees, trim, bounded retention, drop, debug poisoning, and a
//! proptest of random alloc/free sequences. Runs under Miri (`--no-default-features`) with
//! shrunken iteration counts.

use allocator_api2::alloc::{AllocError, Allocator};
use core::alloc::Layout;
use core::ptr::NonNull;
use proptest::prelude::*;
use std::alloc::System;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use tether_alloc::{PoolCache, SlabPool, SlabPoolConfig, SlabPoolStats};

/// Iteration counts: full natively, small under Miri.
const fn scaled(native: usize, miri: usize) -> usize {
    if cfg!(miri) {
        miri
    } else {
        native
    }
}

/// An inner allocator over `System` that counts live blocks and bytes.
#[derive(Debug, Default)]
struct Counting {
    live_blocks: AtomicUsize,
    live_bytes: AtomicUsize,
    allocs: AtomicUsize,
    /// Fail every allocation once this many have succeeded (0: never fail).
    fail_after: usize,
}

impl Counting {
    fn failing_after(n: usize) -> Self {
        Counting {
            fail_after: n,
            ..Counting::default()
        }
    }

    fn live(&self) -> (usize, usize) {
        (
            self.live_blocks.load(Relaxed),
            self.live_bytes.load(Relaxed),
        )
    }
}

// SAFETY: blocks come from `System` (which upholds the contract) and go back to it with the
// layout they were allocated with; the counters only observe.
unsafe impl Allocator for Counting {
    fn allocate(&self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        if self.fail_after != 0 && self.allocs.load(Relaxed) >= self.fail_after {
            return Err(AllocError);
        }
        let block = System.allocate(layout)?;
        self.allocs.fetch_add(1, Relaxed);
        self.live_blocks.fetch_add(1, Relaxed);
        self.live_bytes.fetch_add(layout.size(), Relaxed);
        Ok(block)
    }

    unsafe fn deallocate(&self, ptr: NonNull<u8>, layout: Layout) {
        self.live_blocks.fetch_sub(1, Relaxed);
        self.live_bytes.fetch_sub(layout.size(), Relaxed);
        // SAFETY: forwarded to the caller: a live block of ours with `layout`.
        unsafe { System.deallocate(ptr, layout) }
    }
}

/// A block handed to another thread.
struct Block(NonNull<u8>, usize, u8);
// SAFETY: pool blocks are not tied to a thread; whoever holds a `Block` owns it.
unsafe impl Send for Block {}

/// Small slabs so that a few blocks span several slabs.
const SMALL: SlabPoolConfig = SlabPoolConfig {
    slab_bytes: 1024,
    cache_bytes: 256,
    max_retained_bytes: usize::MAX,
};

fn block_size(size: usize) -> usize {
    SlabPoolConfig::block_size(size).unwrap()
}

/// Fills `len` bytes at `p` with a pattern derived from `seed`.
fn fill(p: NonNull<u8>, len: usize, seed: u8) {
    for i in 0..len {
        // SAFETY: callers pass live blocks of at least `len` bytes.
        unsafe { p.as_ptr().add(i).write(seed.wrapping_add(i as u8)) };
    }
}

/// Checks the pattern `fill` wrote.
fn check(p: NonNull<u8>, len: usize, seed: u8) {
    for i in 0..len {
        // SAFETY: callers pass live blocks of at least `len` bytes, filled by `fill`.
        let b = unsafe { p.as_ptr().add(i).read() };
        assert_eq!(b, seed.wrapping_add(i as u8), "byte {i} of block {p:p}");
    }
}

#[test]
fn cache_reuses_a_freed_block() {
    let pool = SlabPool::new(System);
    let mut cache = pool.cache();
    let a = cache.alloc(64).unwrap();
    // SAFETY: from this pool with size 64.
    unsafe { cache.free(a, 64) };
    let b = cache.alloc(60).unwrap(); // same class (64)
    assert_eq!(a, b);
    // SAFETY: from this pool, class 64.
    unsafe { cache.free(b, 49) };
}

#[test]
fn pool_path_reuses_a_freed_block() {
    let pool = SlabPool::new(System);
    let a = pool.alloc(200).unwrap();
    // SAFETY: from this pool with size 200.
    unsafe { pool.free(a, 200) };
    let b = pool.alloc(200).unwrap();
    assert_eq!(a, b);
    // Pool blocks can go through a cache and back.
    let mut cache = pool.cache();
    // SAFETY: from this pool with size 200.
    unsafe { cache.free(b, 200) };
    assert_eq!(cache.alloc(200).unwrap(), b);
    // SAFETY: as above.
    unsafe { pool.free(b, 200) };
}

#[test]
fn every_class_is_aligned_and_writable() {
    let pool = SlabPool::with_config(System, SMALL);
    let mut cache = pool.cache();
    let step = scaled(1, 7);
    for size in (1..=SlabPoolConfig::MAX_BLOCK_SIZE).step_by(step) {
        let bs = block_size(size);
        assert!(bs >= size && bs % 16 == 0 && bs - size < 16);
        let a = cache.alloc(size).unwrap();
        let b = pool.alloc(size).unwrap();
        for (p, seed) in [(a, 1u8), (b, 2u8)] {
            assert_eq!(p.as_ptr().addr() % SlabPoolConfig::BLOCK_ALIGN, 0);
            fill(p, bs, seed);
        }
        check(a, bs, 1);
        check(b, bs, 2);
        // SAFETY: from this pool with `size`.
        unsafe {
            cache.free(a, size);
            pool.free(b, size);
        }
    }
    drop(cache);
    assert_eq!(pool.stats().in_use_blocks, 0);
    assert_eq!(pool.stats().cached_blocks, 0);
}

#[test]
fn zero_and_oversize_are_alloc_errors() {
    let pool = SlabPool::new(System);
    let mut cache = pool.cache();
    for size in [0, 1025, 4096, usize::MAX] {
        assert_eq!(cache.alloc(size), Err(AllocError));
        assert_eq!(pool.alloc(size), Err(AllocError));
    }
    assert_eq!(pool.stats().slabs, 0);
}

#[test]
fn inner_failure_is_an_alloc_error() {
    let counting = Counting::failing_after(2);
    let pool = SlabPool::with_config(&counting, SMALL);
    let mut cache = pool.cache();
    // Two slabs of 16 blocks of 64 bytes, then the inner allocator refuses.
    let mut got = Vec::new();
    while let Ok(p) = cache.alloc(64) {
        got.push(p);
    }
    assert_eq!(got.len(), 2 * 16);
    assert_eq!(pool.alloc(128), Err(AllocError));
    for p in got {
        // SAFETY: from this pool with size 64.
        unsafe { cache.free(p, 64) };
    }
    drop(cache);
    assert_eq!(pool.trim(), 2048);
    assert_eq!(counting.live(), (0, 0));
}

#[test]
fn contents_survive_while_allocated() {
    let pool = SlabPool::with_config(System, SMALL);
    let mut cache = pool.cache();
    let n = scaled(3000, 200);
    let mut live: Vec<(NonNull<u8>, usize, u8)> = Vec::new();
    for i in 0..n {
        let size = 1 + (i * 37) % 300;
        let p = if i % 3 == 0 {
            pool.alloc(size).unwrap()
        } else {
            cache.alloc(size).unwrap()
        };
        fill(p, size, i as u8);
        live.push((p, size, i as u8));
        if i % 4 == 3 {
            // Free an older one to mix reuse into the sequence.
            let (q, qs, qseed) = live.swap_remove(i % live.len());
            check(q, qs, qseed);
            // SAFETY: from this pool with `qs`.
            unsafe { cache.free(q, qs) };
        }
    }
    for &(p, size, seed) in &live {
        check(p, size, seed);
    }
    for (p, size, _) in live {
        // SAFETY: from this pool with `size`.
        unsafe { pool.free(p, size) };
    }
    drop(cache);
    let s = pool.stats();
    assert_eq!((s.in_use_blocks, s.cached_blocks), (0, 0));
    assert!(pool.trim() > 0);
    assert_eq!(pool.stats(), SlabPoolStats::default());
}

/// Each thread allocates through its own cache and sends its blocks to the next thread, which
/// checks and frees them through its cache (or the pool): remote frees, from 2+ threads at once.
fn remote_frees_on<A: Allocator + Sync>(pool: &SlabPool<A>, threads: usize, per_thread: usize) {
    let (txs, rxs): (Vec<_>, Vec<_>) = (0..threads)
        .map(|_| std::sync::mpsc::channel::<Block>())
        .unzip();
    std::thread::scope(|s| {
        for (t, rx) in rxs.into_iter().enumerate() {
            let tx = txs[(t + 1) % threads].clone();
            s.spawn(move || {
                let mut cache = pool.cache();
                for i in 0..per_thread {
                    let size = 1 + (t * 131 + i * 53) % 512;
                    let p = cache.alloc(size).unwrap();
                    let seed = (t * 7 + i) as u8;
                    fill(p, size, seed);
                    tx.send(Block(p, size, seed)).unwrap();
                    // Free what arrived so far, interleaved with our own allocations.
                    while let Ok(Block(q, qs, qseed)) = rx.try_recv() {
                        check(q, qs, qseed);
                        // SAFETY: allocated from `pool` with `qs` by another thread; ours now.
                        unsafe { cache.free(q, qs) };
                    }
                }
                drop(tx);
                for (n, Block(q, qs, qseed)) in rx.into_iter().enumerate() {
                    check(q, qs, qseed);
                    // SAFETY: as above; every other block goes through the pool path.
                    unsafe {
                        if n % 2 == 0 {
                            pool.free(q, qs);
                        } else {
                            cache.free(q, qs);
                        }
                    }
                }
            });
        }
        drop(txs);
    });
}

#[test]
fn cross_thread_frees_through_per_thread_caches() {
    let counting = Counting::default();
    let pool = SlabPool::with_config(&counting, SMALL);
    remote_frees_on(&pool, scaled(4, 3), scaled(5000, 60));
    let s = pool.stats();
    assert_eq!((s.in_use_blocks, s.cached_blocks), (0, 0));
    assert!(s.slabs > 0);
    assert_eq!(pool.trim(), s.bytes_held);
    assert_eq!(pool.stats(), SlabPoolStats::default());
    assert_eq!(counting.live(), (0, 0));
}

#[test]
fn cross_thread_frees_with_default_config() {
    let pool = SlabPool::new(System);
    remote_frees_on(&pool, 2, scaled(20_000, 100));
    assert_eq!(pool.stats().in_use_blocks, 0);
}

static STATIC_POOL: SlabPool<System> = SlabPool::with_config(System, SMALL);

#[test]
fn static_pool_with_thread_caches() {
    remote_frees_on(&STATIC_POOL, 2, scaled(2000, 40));
    assert_eq!(STATIC_POOL.stats().in_use_blocks, 0);
    STATIC_POOL.trim();
    // Other tests do not use this pool, so everything went back.
    assert_eq!(STATIC_POOL.stats().slabs, 0);
}

#[test]
fn trim_releases_only_fully_free_slabs() {
    let counting = Counting::default();
    let pool = SlabPool::with_config(&counting, SMALL);
    // 64-byte blocks, 16 per 1 KiB slab: 49 blocks take 4 slabs, the last with 15 uncarved.
    let blocks: Vec<_> = (0..49).map(|_| pool.alloc(64).unwrap()).collect();
    let s = pool.stats();
    assert_eq!(
        (s.slabs, s.bytes_held, s.in_use_blocks, s.free_blocks),
        (4, 4096, 49, 15)
    );
    assert_eq!(counting.live(), (4, 4096));
    assert_eq!(pool.trim(), 0, "every slab has blocks in use");
    for &p in &blocks[1..] {
        // SAFETY: from this pool with size 64.
        unsafe { pool.free(p, 64) };
    }
    assert_eq!(pool.trim(), 3 * 1024);
    let s = pool.stats();
    assert_eq!(
        (s.slabs, s.bytes_held, s.in_use_blocks, s.free_blocks),
        (1, 1024, 1, 15)
    );
    assert_eq!(counting.live(), (1, 1024));
    // The kept slab's free blocks are still usable.
    let again: Vec<_> = (0..15).map(|_| pool.alloc(64).unwrap()).collect();
    assert_eq!(pool.stats().slabs, 1);
    for p in again.into_iter().chain([blocks[0]]) {
        // SAFETY: from this pool with size 64.
        unsafe { pool.free(p, 64) };
    }
    assert_eq!(pool.trim(), 1024);
    assert_eq!(pool.stats(), SlabPoolStats::default());
    assert_eq!(counting.live(), (0, 0));
}

#[test]
fn blocks_in_a_cache_keep_their_slab() {
    let counting = Counting::default();
    let pool = SlabPool::with_config(&counting, SlabPoolConfig::DEFAULT);
    let mut cache = pool.cache();
    let p = cache.alloc(64).unwrap();
    // SAFETY: from this pool with size 64.
    unsafe { cache.free(p, 64) };
    assert_eq!(pool.trim(), 0, "the cache holds blocks of the slab");
    let s = pool.stats();
    assert_eq!(
        s.cached_blocks, 127,
        "a refill of half the 256-block bound, one handed out"
    );
    cache.flush();
    let s = pool.stats();
    assert_eq!((s.cached_blocks, s.in_use_blocks), (0, 0));
    assert_eq!(pool.trim(), 65536);
    assert_eq!(counting.live(), (0, 0));
    // The cache still works after a flush.
    let q = cache.alloc(64).unwrap();
    // SAFETY: from this pool with size 64.
    unsafe { cache.free(q, 64) };
}

#[test]
fn full_bins_flush_half_to_the_depot() {
    let pool = SlabPool::with_config(System, SMALL); // 64-byte class: bound 4, batch 2
    let mut cache = pool.cache();
    let blocks: Vec<_> = (0..10).map(|_| cache.alloc(64).unwrap()).collect();
    for &p in &blocks {
        // SAFETY: from this pool with size 64.
        unsafe { cache.free(p, 64) };
    }
    // The bin never exceeds its bound (4 blocks); the rest went to the depot.
    let s = pool.stats();
    assert!(s.cached_blocks <= 4, "{s:?}");
    assert!(s.free_blocks >= 16 - 4, "{s:?}");
    drop(cache);
    assert_eq!(pool.stats().free_blocks, 16);
}

#[test]
fn tiny_caches_and_slabs_still_work() {
    let config = SlabPoolConfig {
        slab_bytes: 0,
        cache_bytes: 0,
        max_retained_bytes: 0,
    };
    let counting = Counting::default();
    let pool = SlabPool::with_config(&counting, config);
    let mut cache = pool.cache();
    let n = scaled(500, 40);
    let blocks: Vec<_> = (0..n).map(|i| cache.alloc(1 + i % 1024).unwrap()).collect();
    for (i, &p) in blocks.iter().enumerate() {
        fill(p, 1 + i % 1024, i as u8);
    }
    for (i, &p) in blocks.iter().enumerate() {
        check(p, 1 + i % 1024, i as u8);
        // SAFETY: from this pool with that size.
        unsafe { cache.free(p, 1 + i % 1024) };
    }
    drop(cache);
    assert_eq!(pool.stats().in_use_blocks, 0);
    // Eager retention: one-block slabs went back as their blocks did.
    assert_eq!(pool.stats().slabs, 0);
    drop(pool);
    assert_eq!(counting.live(), (0, 0));
}

/// Allocates `slabs` slabs' worth of 64-byte blocks and frees them all in order, through the
/// pool or a cache; returns the stats afterwards (caches dropped).
fn alloc_then_free_all<A: Allocator>(
    pool: &SlabPool<A>,
    slabs: usize,
    cached: bool,
) -> SlabPoolStats {
    let n = slabs * 16;
    let mut cache = pool.cache();
    let blocks: Vec<_> = (0..n)
        .map(|_| {
            if cached {
                cache.alloc(64).unwrap()
            } else {
                pool.alloc(64).unwrap()
            }
        })
        .collect();
    assert!(pool.stats().slabs >= slabs);
    for p in blocks {
        // SAFETY: from this pool with size 64.
        unsafe {
            if cached {
                cache.free(p, 64);
            } else {
                pool.free(p, 64);
            }
        }
    }
    drop(cache);
    pool.stats()
}

#[test]
fn retention_is_bounded() {
    let slabs = scaled(40, 8);
    let retain = 2 * 1024;
    let config = SlabPoolConfig {
        max_retained_bytes: retain,
        ..SMALL
    };
    for cached in [false, true] {
        let counting = Counting::default();
        let pool = SlabPool::with_config(&counting, config);
        let s = alloc_then_free_all(&pool, slabs, cached);
        assert_eq!(s.in_use_blocks, 0);
        assert!(s.bytes_held <= retain + 1024, "cached: {cached}, {s:?}");
        assert_eq!(counting.live().1, s.bytes_held);

        // Without a bound, everything stays.
        let unbounded = SlabPool::with_config(System, SMALL);
        let s = alloc_then_free_all(&unbounded, slabs, cached);
        assert_eq!(s.bytes_held, slabs * 1024, "cached: {cached}");
    }

    // A bound of zero releases slabs as soon as they are free.
    let eager = SlabPool::with_config(
        System,
        SlabPoolConfig {
            max_retained_bytes: 0,
            ..SMALL
        },
    );
    assert_eq!(alloc_then_free_all(&eager, slabs, false).slabs, 0);
}

#[test]
fn drop_returns_every_byte() {
    let counting = Counting::default();
    {
        let pool = SlabPool::with_config(&counting, SMALL);
        let mut cache = pool.cache();
        let mut kept = Vec::new();
        for i in 0..scaled(1000, 100) {
            let size = 1 + (i * 97) % 1024;
            let p = cache.alloc(size).unwrap();
            if i % 5 == 0 {
                kept.push((p, size));
            } else {
                // SAFETY: from this pool with `size`.
                unsafe { cache.free(p, size) };
            }
        }
        for (p, size) in kept {
            // SAFETY: from this pool with `size`.
            unsafe { pool.free(p, size) };
        }
        drop(cache);
        let s = pool.stats();
        assert!(s.slabs > 0);
        assert_eq!(counting.live(), (s.slabs, s.bytes_held));
    }
    assert_eq!(counting.live(), (0, 0));

    // Even with blocks still out (they dangle afterwards), every slab goes back.
    {
        let pool = SlabPool::with_config(&counting, SMALL);
        let _leaked = pool.alloc(100).unwrap();
        let mut cache = pool.cache();
        let _also = cache.alloc(300).unwrap();
        drop(cache);
    }
    assert_eq!(counting.live(), (0, 0));
}

#[test]
fn default_inner_pool_works() {
    let pool: SlabPool = SlabPool::default();
    let mut cache: PoolCache<'_> = pool.cache();
    let p = cache.alloc(8).unwrap();
    fill(p, 16, 3);
    check(p, 16, 3);
    // SAFETY: from this pool with size 8.
    unsafe { cache.free(p, 8) };
    assert!(format!("{pool:?}").contains("SlabPool"));
    assert!(format!("{cache:?}").contains("cached_blocks: 128"));
}

#[cfg(debug_assertions)]
#[test]
fn freed_blocks_are_poisoned_in_debug() {
    let pool = SlabPool::new(System);
    let mut cache = pool.cache();
    let link = core::mem::size_of::<usize>();
    for size in [16, 48, 1024] {
        let a = cache.alloc(size).unwrap();
        let b = pool.alloc(size).unwrap();
        fill(a, size, 0);
        fill(b, size, 0);
        // SAFETY: from this pool with `size`; the memory stays the pool's (its slab lives), so
        // reading it after the free is sound, if against the rules for real callers.
        unsafe {
            cache.free(a, size);
            pool.free(b, size);
            for p in [a, b] {
                let bytes = core::slice::from_raw_parts(p.as_ptr().add(link), size - link);
                assert!(bytes.iter().all(|&x| x == 0xDD), "size {size}");
            }
        }
    }
}

#[cfg(debug_assertions)]
#[test]
#[should_panic(expected = "written after it was freed")]
fn write_after_free_is_caught_in_debug() {
    let pool = SlabPool::new(System);
    let mut cache = pool.cache();
    let p = cache.alloc(64).unwrap();
    // SAFETY: from this pool with size 64. The write after the free is the bug under test; it
    // stays inside the pool's live slab.
    unsafe {
        cache.free(p, 64);
        p.as_ptr().add(40).write(0);
    }
    let _ = cache.alloc(64);
}

/// One step of a random sequence: allocate through cache 0, cache 1 or the pool; free a live
/// block through one of them; or trim.
#[derive(Debug, Clone)]
enum Op {
    Alloc { size: usize, via: u8 },
    Free { which: prop::sample::Index, via: u8 },
    Trim,
}

fn op() -> impl Strategy<Value = Op> {
    let size = prop_oneof![3 => 1usize..=64, 1 => 1usize..=1024];
    let which = any::<prop::sample::Index>();
    prop_oneof![
        5 => (size, 0u8..3).prop_map(|(size, via)| Op::Alloc { size, via }),
        4 => (which, 0u8..3).prop_map(|(which, via)| Op::Free { which, via }),
        1 => Just(Op::Trim),
    ]
}

fn proptest_config() -> ProptestConfig {
    ProptestConfig {
        cases: scaled(256, 3) as u32,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(proptest_config())]

    #[test]
    fn random_sequences_keep_contents_and_never_overlap(
        ops in prop::collection::vec(op(), 0..scaled(300, 60)),
        retain in prop_oneof![Just(0usize), Just(2048), Just(usize::MAX)],
    ) {
        let counting = Counting::default();
        let config = SlabPoolConfig { max_retained_bytes: retain, ..SMALL };
        let pool = SlabPool::with_config(&counting, config);
        let mut caches = [pool.cache(), pool.cache()];
        // Live blocks by address: (pointer, block size, requested size, seed).
        let mut live: BTreeMap<usize, (NonNull<u8>, usize, usize, u8)> = BTreeMap::new();
        for (step, op) in ops.into_iter().enumerate() {
            match op {
                Op::Alloc { size, via } => {
                    let p = match via {
                        0 | 1 => caches[via as usize].alloc(size).unwrap(),
                        _ => pool.alloc(size).unwrap(),
                    };
                    let addr = p.as_ptr().addr();
                    let bs = block_size(size);
                    prop_assert_eq!(addr % 16, 0);
                    if let Some((&prev, &(_, prev_bs, _, _))) = live.range(..=addr).next_back() {
                        prop_assert!(prev + prev_bs <= addr, "overlaps the block at {:#x}", prev);
                    }
                    if let Some((&next, _)) = live.range(addr..).next() {
                        prop_assert!(addr + bs <= next, "overlaps the block at {:#x}", next);
                    }
                    fill(p, size, step as u8);
                    live.insert(addr, (p, bs, size, step as u8));
                }
                Op::Free { which, via } => {
                    if live.is_empty() {
                        continue;
                    }
                    let addr = *live.keys().nth(which.index(live.len())).unwrap();
                    let (p, _, size, seed) = live.remove(&addr).unwrap();
                    check(p, size, seed);
                    // SAFETY: a live block of this pool allocated with `size`.
                    unsafe {
                        match via {
                            0 | 1 => caches[via as usize].free(p, size),
                            _ => pool.free(p, size),
                        }
                    }
                }
                Op::Trim => {
                    pool.trim();
                }
            }
            let s = pool.stats();
            prop_assert_eq!(counting.live(), (s.slabs, s.bytes_held));
        }
        for &(p, _, size, seed) in live.values() {
            check(p, size, seed);
        }
        for (p, _, size, _) in live.into_values() {
            // SAFETY: a live block of this pool allocated with `size`.
            unsafe { pool.free(p, size) };
        }
        drop(caches);
        let s = pool.stats();
        prop_assert_eq!((s.in_use_blocks, s.cached_blocks), (0, 0));
        pool.trim();
        prop_assert_eq!(pool.stats(), SlabPoolStats::default());
        prop_assert_eq!(counting.live(), (0, 0));
        drop(pool);
    }
}

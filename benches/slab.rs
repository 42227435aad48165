//! `SlabPool` against raw mimalloc, in one criterion group so the ratios come from one run:
//!
//! * `mimalloc_raw_64`: `mi_malloc(64)` + `mi_free` (the baseline);
//! * `pool_cache_64`: `PoolCache::alloc(64)` + `free` (the hot path: a free-list pop and push);
//! * `pool_depot_64`: `SlabPool::alloc(64)` + `free` (no cache: the depot lock each time);
//! * `*_batch1000`: 1000 allocations of 64 bytes, then 1000 frees (for the cache this crosses its
//!   bound, so refills and flushes to the depot are part of the measurement).
//!
//! Run: `cargo bench -p tether --bench slab -- --warm-up-time 1 --measurement-time 3`.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use libmimalloc_sys::{mi_free, mi_malloc};
use std::hint::black_box;
use std::ptr::NonNull;
use tether::alloc::{MiMalloc, SlabPool};

/// The shape the Python extension uses: a `static` pool over mimalloc.
static POOL: SlabPool<MiMalloc> = SlabPool::new(MiMalloc);

const SIZE: usize = 64;
const BATCH: usize = 1000;

fn slab(c: &mut Criterion) {
    let mut g = c.benchmark_group("slab");

    g.bench_function("mimalloc_raw_64", |b| {
        b.iter(|| {
            // SAFETY: mi_malloc accepts any size; the block is freed once, right away.
            unsafe {
                let p = mi_malloc(black_box(SIZE));
                mi_free(black_box(p));
            }
        })
    });

    let mut cache = POOL.cache();
    g.bench_function("pool_cache_64", |b| {
        b.iter(|| {
            let p = cache.alloc(black_box(SIZE)).unwrap();
            // SAFETY: allocated just above from this pool with SIZE, freed once.
            unsafe { cache.free(black_box(p), SIZE) };
        })
    });

    g.bench_function("pool_depot_64", |b| {
        b.iter(|| {
            let p = POOL.alloc(black_box(SIZE)).unwrap();
            // SAFETY: allocated just above from this pool with SIZE, freed once.
            unsafe { POOL.free(black_box(p), SIZE) };
        })
    });

    g.throughput(Throughput::Elements(BATCH as u64));
    let mut raw: Vec<*mut core::ffi::c_void> = Vec::with_capacity(BATCH);
    g.bench_function("mimalloc_raw_64_batch1000", |b| {
        b.iter(|| {
            for _ in 0..BATCH {
                // SAFETY: mi_malloc accepts any size.
                raw.push(unsafe { mi_malloc(black_box(SIZE)) });
            }
            for p in raw.drain(..) {
                // SAFETY: each block came from mi_malloc above and is freed once.
                unsafe { mi_free(black_box(p)) };
            }
        })
    });

    let mut blocks: Vec<NonNull<u8>> = Vec::with_capacity(BATCH);
    g.bench_function("pool_cache_64_batch1000", |b| {
        b.iter(|| {
            for _ in 0..BATCH {
                blocks.push(cache.alloc(black_box(SIZE)).unwrap());
            }
            for p in blocks.drain(..) {
                // SAFETY: each block came from this pool with SIZE above and is freed once.
                unsafe { cache.free(black_box(p), SIZE) };
            }
        })
    });

    g.bench_function("pool_depot_64_batch1000", |b| {
        b.iter(|| {
            for _ in 0..BATCH {
                blocks.push(POOL.alloc(black_box(SIZE)).unwrap());
            }
            for p in blocks.drain(..) {
                // SAFETY: each block came from this pool with SIZE above and is freed once.
                unsafe { POOL.free(black_box(p), SIZE) };
            }
        })
    });

    g.finish();
    drop(cache);
    POOL.trim();
}

criterion_group!(benches, slab);
criterion_main!(benches);

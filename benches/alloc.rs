//! tether-alloc against the allocators it wraps, all measured in one run.
//!
//! Contestants (every group, where they apply):
//! * `mimalloc`: raw `libmimalloc_sys::mi_malloc` / `mi_free` (`mi_malloc_aligned` above 16).
//! * `header_mi`: `HeaderAlloc<MiMalloc>` (the default 16-byte `Wide` header, `NoStats`).
//! * `header_mi_narrow`: the 8-byte `Narrow` header (layouts of align <= 8 only).
//! * `header_mi_stats`: `HeaderAlloc::counting()` (`Stats`).
//! * `system`: `std::alloc::System` (glibc malloc).
//! * `header_system`: `HeaderAlloc<System>`.
//! * `bump`: `&bumpalo::Bump` through `Allocator` (a LIFO free rewinds the bump pointer; a
//!   batch ends with `reset`).
//!
//! Groups (throughput in elements, so the per-element time is the cost of one alloc+free pair):
//! * `lifo`: sizes 16, 64, 256, 992 at align 8: allocate, `black_box`, free immediately.
//! * `batch`: 10,000 allocations of one size, then freed in a fixed random order.
//! * `align64`: LIFO at align 64 (raw `mi_malloc_aligned(size, 64)` vs the header allocator,
//!   which then places the object 64 bytes into its block).
//!
//! Time is the benchmark thread's CPU time (`CLOCK_THREAD_CPUTIME_ID`), not wall-clock time:
//! on a small machine shared with parallel builds, wall-clock samples mostly measure how often
//! the thread was preempted. CPU time leaves out the time the thread did not run (other
//! processes still disturb it through shared caches).
//!
//! Results and the exact command: `docs/benchmarks.md`, section "tether-alloc".

use allocator_api2::alloc::{Allocator, Layout};
use core::alloc::GlobalAlloc;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use std::alloc::System;
use std::hint::black_box;
use std::ptr::NonNull;
use tether_alloc::{HeaderAlloc, HeaderKind, MiMalloc, Narrow, NoStats, Stats, StatsSink};

#[path = "common/cpu_time.rs"]
mod cpu_time;
use cpu_time::CpuTime;

/// One allocator under test: allocate and free single blocks of a fixed layout.
trait Contestant {
    /// A block for `layout` (never null: the benchmarks allocate little).
    fn alloc(&self, layout: Layout) -> NonNull<u8>;
    /// Frees a block from `alloc`.
    ///
    /// # Safety
    /// `p` came from `self.alloc(layout)` and is not yet freed.
    unsafe fn free(&self, p: NonNull<u8>, layout: Layout);
    /// Called after every batch (a bump arena resets; others do nothing).
    fn end_batch(&mut self) {}
}

/// Raw mimalloc.
struct RawMi;

impl Contestant for RawMi {
    #[inline(always)]
    fn alloc(&self, layout: Layout) -> NonNull<u8> {
        // SAFETY: mi_malloc / mi_malloc_aligned accept any size and power-of-two alignment.
        let p = unsafe {
            if layout.align() <= 16 {
                libmimalloc_sys::mi_malloc(layout.size())
            } else {
                libmimalloc_sys::mi_malloc_aligned(layout.size(), layout.align())
            }
        };
        NonNull::new(p.cast()).expect("mimalloc out of memory")
    }

    #[inline(always)]
    unsafe fn free(&self, p: NonNull<u8>, _layout: Layout) {
        // SAFETY: the caller passes a live mimalloc block.
        unsafe { libmimalloc_sys::mi_free(p.as_ptr().cast()) }
    }
}

/// Any `allocator_api2` allocator: the header allocators and `&Bump`.
struct Api<A>(A);

impl<A: Allocator, S: StatsSink, K: HeaderKind> Contestant for Api<HeaderAlloc<A, S, K>> {
    #[inline(always)]
    fn alloc(&self, layout: Layout) -> NonNull<u8> {
        self.0.allocate(layout).expect("out of memory").cast()
    }

    #[inline(always)]
    unsafe fn free(&self, p: NonNull<u8>, layout: Layout) {
        // SAFETY: the caller passes a live block of this allocator with its layout.
        unsafe { self.0.deallocate(p, layout) }
    }
}

/// A bump arena; `deallocate` only reclaims the most recent block.
struct Bump(bumpalo::Bump);

impl Contestant for Bump {
    #[inline(always)]
    fn alloc(&self, layout: Layout) -> NonNull<u8> {
        (&self.0).allocate(layout).expect("out of memory").cast()
    }

    #[inline(always)]
    unsafe fn free(&self, p: NonNull<u8>, layout: Layout) {
        // SAFETY: the caller passes a live block of this arena with its layout.
        unsafe { (&self.0).deallocate(p, layout) }
    }

    fn end_batch(&mut self) {
        self.0.reset();
    }
}

/// `std::alloc::System` through `GlobalAlloc` (glibc `malloc`/`free`, `posix_memalign` above 16).
struct Sys;

impl Contestant for Sys {
    #[inline(always)]
    fn alloc(&self, layout: Layout) -> NonNull<u8> {
        // SAFETY: every benchmark layout has a non-zero size.
        NonNull::new(unsafe { System.alloc(layout) }).expect("out of memory")
    }

    #[inline(always)]
    unsafe fn free(&self, p: NonNull<u8>, layout: Layout) {
        // SAFETY: the caller passes a live System block with its layout.
        unsafe { System.dealloc(p.as_ptr(), layout) }
    }
}

type Group<'a> = criterion::BenchmarkGroup<'a, CpuTime>;

/// Benchmarks `who` as `name/size`: LIFO pairs (`order: None`) or a batch of `order.len()`
/// blocks freed in that order.
fn run<C: Contestant>(
    g: &mut Group<'_>,
    name: &str,
    layout: Layout,
    order: Option<&[u32]>,
    who: &mut C,
) {
    let id = BenchmarkId::new(name, layout.size());
    match order {
        None => {
            g.bench_function(id, |b| {
                b.iter(|| {
                    let p = black_box(who.alloc(layout));
                    // SAFETY: `p` was just allocated with `layout`.
                    unsafe { who.free(p, layout) };
                })
            });
        }
        Some(order) => {
            let mut ptrs: Vec<NonNull<u8>> = Vec::with_capacity(order.len());
            g.bench_function(id, |b| {
                b.iter(|| {
                    for _ in 0..order.len() {
                        ptrs.push(black_box(who.alloc(layout)));
                    }
                    for &i in order {
                        // SAFETY: `order` is a permutation, so every block is freed exactly
                        // once, with the layout it was allocated with.
                        unsafe { who.free(ptrs[i as usize], layout) };
                    }
                    ptrs.clear();
                    who.end_batch();
                })
            });
        }
    }
}

/// Every contestant on one layout (`bump` only with `with_bump`).
fn run_all(g: &mut Group<'_>, layout: Layout, order: Option<&[u32]>, with_bump: bool) {
    run(g, "mimalloc", layout, order, &mut RawMi);
    let header_mi = HeaderAlloc::<MiMalloc, NoStats>::new();
    run(g, "header_mi", layout, order, &mut Api(header_mi));
    if layout.align() <= 8 {
        let narrow = HeaderAlloc::<MiMalloc, NoStats, Narrow>::from_parts(MiMalloc, NoStats);
        run(g, "header_mi_narrow", layout, order, &mut Api(narrow));
    }
    let header_mi_stats = HeaderAlloc::<MiMalloc, Stats>::counting();
    run(
        g,
        "header_mi_stats",
        layout,
        order,
        &mut Api(header_mi_stats),
    );
    run(g, "system", layout, order, &mut Sys);
    let header_system = HeaderAlloc::with_inner(System);
    run(g, "header_system", layout, order, &mut Api(header_system));
    if with_bump {
        let bump = bumpalo::Bump::with_capacity(1 << 16);
        run(g, "bump", layout, order, &mut Bump(bump));
    }
}

/// A fixed random permutation of `0..n` (xorshift64, Fisher-Yates).
fn permutation(n: usize) -> Vec<u32> {
    let mut v: Vec<u32> = (0..n as u32).collect();
    let mut x = 0x2545_F491_4F6C_DD1Du64;
    for i in (1..n).rev() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.swap(i, (x % (i as u64 + 1)) as usize);
    }
    v
}

fn lifo(c: &mut Criterion<CpuTime>) {
    let mut g = c.benchmark_group("lifo");
    g.throughput(Throughput::Elements(1));
    for size in [16, 64, 256, 992] {
        run_all(
            &mut g,
            Layout::from_size_align(size, 8).unwrap(),
            None,
            true,
        );
    }
    g.finish();
}

fn batch(c: &mut Criterion<CpuTime>) {
    const N: usize = 10_000;
    let order = permutation(N);
    let mut g = c.benchmark_group("batch");
    g.throughput(Throughput::Elements(N as u64));
    for size in [64, 256] {
        let layout = Layout::from_size_align(size, 8).unwrap();
        run_all(&mut g, layout, Some(&order), true);
    }
    g.finish();
}

fn align64(c: &mut Criterion<CpuTime>) {
    let mut g = c.benchmark_group("align64");
    g.throughput(Throughput::Elements(1));
    for size in [64, 256] {
        run_all(
            &mut g,
            Layout::from_size_align(size, 64).unwrap(),
            None,
            false,
        );
    }
    g.finish();
}

criterion_group! {
    name = benches;
    // 50 samples: medians are stable at that count, and the whole suite stays within minutes.
    config = Criterion::default().with_measurement(CpuTime).sample_size(50);
    targets = lifo, batch, align64
}
criterion_main!(benches);

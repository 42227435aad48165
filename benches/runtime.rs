//! tether-runtime's objects against `std::sync::Arc`, and the tie transitions, in one run.
//!
//! mimalloc is the global allocator here (a small `GlobalAlloc` over `libmimalloc_sys`), so
//! `Arc` and the runtime (whose `ALLOC` sits on `tether_alloc::MiMalloc`) allocate from the same
//! allocator. The payload is 64 bytes (`[u64; 8]`) in both.
//!
//! Groups:
//! * `new_drop`: `Arc::new` + drop vs `ObjRef::new` + drop (the last-drop fast path). The
//!   runtime's `ALLOC` is the contract's counting allocator (`HeaderAlloc<_, Stats>`), so its
//!   cost is included. `replica_nostats` / `replica_stats` run a bench-only replica of
//!   `ObjRef::new` + the fast-path drop (same header writes, same single Acquire load) on a
//!   `NoStats` and on a `Stats` header allocator, to separate the protocol's cost from the
//!   counters'.
//! * `clone_drop`: clone + drop of a live handle (two refcount RMWs, never the last).
//! * `tie`: `lookup` on a bound object; `park` and `revive` each timed alone over a pool of
//!   objects; a `park_or_release` + `revive` cycle (what a wrapper's death and re-access cost).
//!
//! Time is the benchmark thread's CPU time (`CLOCK_THREAD_CPUTIME_ID`), as in `benches/alloc.rs`:
//! on a small shared machine, wall-clock samples mostly measure preemption.
//!
//! Results and the exact command: `docs/benchmarks.md`, section "tether-runtime".

use core::alloc::{GlobalAlloc, Layout};
use core::ffi::c_void;
use core::ptr::NonNull;
use criterion::measurement::Measurement;
use criterion::{criterion_group, criterion_main, Criterion};
use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;
use tether::runtime::{object_type, tie, ObjAny, ObjRef, TieHost};

#[path = "common/cpu_time.rs"]
mod cpu_time;
use cpu_time::CpuTime;

/// mimalloc as the process allocator.
struct Mi;

// SAFETY: mimalloc returns blocks valid for the requested size and alignment until freed, and
// accepts its own blocks in mi_free / mi_realloc_aligned from any thread.
unsafe impl GlobalAlloc for Mi {
    #[inline]
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        // SAFETY: any size, power-of-two alignment.
        unsafe {
            if l.align() <= 16 && l.align() <= l.size() {
                libmimalloc_sys::mi_malloc(l.size()).cast()
            } else {
                libmimalloc_sys::mi_malloc_aligned(l.size(), l.align()).cast()
            }
        }
    }
    #[inline]
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        // SAFETY: as in alloc.
        unsafe { libmimalloc_sys::mi_zalloc_aligned(l.size(), l.align()).cast() }
    }
    #[inline]
    unsafe fn dealloc(&self, p: *mut u8, _l: Layout) {
        // SAFETY: the caller passes a live block of ours.
        unsafe { libmimalloc_sys::mi_free(p.cast()) }
    }
    #[inline]
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        // SAFETY: a live block of ours; mimalloc keeps the alignment.
        unsafe { libmimalloc_sys::mi_realloc_aligned(p.cast(), new, l.align()).cast() }
    }
}

#[global_allocator]
static GLOBAL: Mi = Mi;

/// The 64-byte payload.
struct Payload([u64; 8]);
object_type!(Payload, "bench.Payload");

fn payload(i: u64) -> Payload {
    Payload([i; 8])
}

/// A bench-only replica of the runtime's new + last drop on a header allocator `A`: the same
/// header writes and the same single Acquire load on the last drop.
mod replica {
    use super::Payload;
    use core::alloc::Layout;
    use core::ptr::NonNull;
    use core::sync::atomic::{AtomicU64, Ordering};
    use tether::alloc::allocator_api2::alloc::Allocator;
    use tether::alloc::{DefaultInner, HeaderAlloc, Stats};

    pub static PLAIN: HeaderAlloc = HeaderAlloc::new();
    pub static COUNTING: HeaderAlloc<DefaultInner, Stats> = HeaderAlloc::counting();

    #[repr(C)]
    struct Boxed {
        counts: AtomicU64,
        type_index: u32,
        deleter: unsafe fn(NonNull<u8>),
        value: Payload,
    }

    unsafe fn deleter(_: NonNull<u8>) {}

    pub struct Handle<A: Allocator + 'static>(NonNull<Boxed>, &'static A);

    impl<A: Allocator + 'static> Handle<A> {
        #[inline]
        pub fn new(alloc: &'static A, value: Payload, type_index: u32) -> Handle<A> {
            let p = alloc
                .allocate(Layout::new::<Boxed>())
                .expect("oom")
                .cast::<Boxed>();
            // SAFETY: a fresh block for Boxed.
            unsafe {
                p.as_ptr().write(Boxed {
                    counts: AtomicU64::new(1 | 1 << 32),
                    type_index,
                    deleter,
                    value,
                })
            };
            Handle(p, alloc)
        }
        pub fn first(&self) -> u64 {
            // SAFETY: alive while the handle is.
            unsafe { self.0.as_ref().value.0[0] }
        }
    }

    impl<A: Allocator + 'static> Drop for Handle<A> {
        #[inline]
        fn drop(&mut self) {
            // SAFETY: we own the only handle (bench only).
            unsafe {
                if (*self.0.as_ptr()).counts.load(Ordering::Acquire) == 1 | 1 << 32 {
                    core::ptr::drop_in_place(&raw mut (*self.0.as_ptr()).value);
                    self.1.deallocate(self.0.cast(), Layout::new::<Boxed>());
                }
            }
        }
    }
}

fn new_drop(c: &mut Criterion<CpuTime>) {
    let ti = <Payload as tether::runtime::Object>::type_index();
    let mut g = c.benchmark_group("new_drop");
    g.bench_function("arc", |b| {
        let mut i = 0u64;
        b.iter(|| {
            i += 1;
            let a = Arc::new(payload(black_box(i)));
            black_box(&a);
            drop(a);
        })
    });
    g.bench_function("objref", |b| {
        let mut i = 0u64;
        b.iter(|| {
            i += 1;
            let a = ObjRef::new(payload(black_box(i)));
            black_box(&a);
            drop(a);
        })
    });
    g.bench_function("replica_nostats", |b| {
        let mut i = 0u64;
        b.iter(|| {
            i += 1;
            let a = replica::Handle::new(&replica::PLAIN, payload(black_box(i)), ti);
            black_box(a.first());
            drop(a);
        })
    });
    g.bench_function("replica_stats", |b| {
        let mut i = 0u64;
        b.iter(|| {
            i += 1;
            let a = replica::Handle::new(&replica::COUNTING, payload(black_box(i)), ti);
            black_box(a.first());
            drop(a);
        })
    });
    g.finish();
}

fn clone_drop(c: &mut Criterion<CpuTime>) {
    let mut g = c.benchmark_group("clone_drop");
    let arc = Arc::new(payload(1));
    g.bench_function("arc", |b| {
        b.iter(|| {
            let c = Arc::clone(black_box(&arc));
            black_box(&c);
            drop(c);
        })
    });
    let obj = ObjRef::new(payload(1));
    g.bench_function("objref", |b| {
        b.iter(|| {
            let c = black_box(&obj).clone();
            black_box(&c);
            drop(c);
        })
    });
    let any = obj.clone().into_any();
    g.bench_function("objany", |b| {
        b.iter(|| {
            let c = black_box(&any).clone();
            black_box(&c);
            drop(c);
        })
    });
    g.finish();
}

unsafe extern "C" fn free_wrapper(_mem: *mut c_void) {}
fn release_kept(_: ObjAny) {}
static HOST: TieHost = TieHost {
    free_cached: free_wrapper,
    release_kept,
};

/// Fake wrapper memory (8-aligned, never dereferenced by the runtime).
fn wrappers(n: usize) -> Vec<[u64; 4]> {
    vec![[0u64; 4]; n]
}

fn mem(w: &mut [u64; 4]) -> NonNull<c_void> {
    NonNull::from(w).cast()
}

fn tie_ops(c: &mut Criterion<CpuTime>) {
    tie::set_host(&HOST);
    let mut g = c.benchmark_group("tie");

    let obj = ObjRef::new(payload(1)).into_any();
    let mut w = wrappers(1);
    tie::bind(&obj, mem(&mut w[0])).unwrap();
    g.bench_function("lookup", |b| {
        b.iter(|| black_box(tie::lookup(black_box(&obj))))
    });
    tie::detach(&obj);

    // park and revive, each timed alone: a pool of bound objects is parked in one timed loop,
    // then revived in another.
    const POOL: usize = 1024;
    let objs: Vec<ObjAny> = (0..POOL as u64)
        .map(|i| ObjRef::new(payload(i)).into_any())
        .collect();
    let mut ws = wrappers(POOL);
    let ptrs: Vec<NonNull<c_void>> = ws.iter_mut().map(mem).collect();
    for (o, &p) in objs.iter().zip(&ptrs) {
        tie::bind(o, p).unwrap();
    }
    let cpu = CpuTime;
    g.bench_function("park", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            let mut done = 0;
            while done < iters {
                let n = (iters - done).min(POOL as u64) as usize;
                let start = cpu.start();
                for (o, &p) in objs[..n].iter().zip(&ptrs) {
                    let _ = black_box(tie::park(o, p));
                }
                total += cpu.end(start);
                for o in &objs[..n] {
                    tie::revive(o).unwrap();
                }
                done += n as u64;
            }
            total
        })
    });
    g.bench_function("revive", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            let mut done = 0;
            while done < iters {
                let n = (iters - done).min(POOL as u64) as usize;
                for (o, &p) in objs[..n].iter().zip(&ptrs) {
                    tie::park(o, p).unwrap();
                }
                let start = cpu.start();
                for o in &objs[..n] {
                    let _ = black_box(tie::revive(o));
                }
                total += cpu.end(start);
                done += n as u64;
            }
            total
        })
    });
    for o in &objs {
        tie::detach(o);
    }

    // A wrapper's death and re-access: park_or_release (the object lives on) + revive.
    tie::bind(&obj, mem(&mut w[0])).unwrap();
    g.bench_function("park_or_release+revive", |b| {
        b.iter(|| {
            let wrapper_ref = obj.clone();
            let r = tie::park_or_release(wrapper_ref, mem(&mut w[0]));
            black_box(r.is_ok());
            black_box(tie::revive(&obj).is_ok());
        })
    });
    tie::detach(&obj);
    g.finish();
}

fn config() -> Criterion<CpuTime> {
    Criterion::default()
        .with_measurement(CpuTime)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
        .sample_size(50)
}

criterion_group! {
    name = benches;
    config = config();
    targets = new_drop, clone_drop, tie_ops
}
criterion_main!(benches);

//! A model-based property test: random sequences of allocate / grow / shrink / deallocate with
//! random sizes and alignments, on every inner allocator.
//!
//! Every sequence runs on each header kind (`Wide`, `Narrow`, `Bare`). The model keeps, for every
//! live object, its layout, the pattern seed its bytes hold and the header words it was given
//! (each object gets distinct values; a quarter of the objects are parked, a quarter bound, a
//! quarter detached with an aux value, a quarter all null; the owner detaches a bound object
//! before freeing it). After every step the test checks every live object's bytes and header,
//! the inner blocks (through [`common::Tracking`]) and the statistics (`header_bytes` included);
//! after every free it checks that the free callback ran exactly when it should, with the right
//! pointer; at the end, the total callback count.

mod common;

use allocator_api2::alloc::{Allocator, Layout};
use common::*;
use core::ptr::NonNull;
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::Config;
use std::alloc::System;
use tether_alloc::{block_layout, offset_for, Bare, HeaderAlloc, HeaderKind, Narrow, Stats, Wide};

#[derive(Debug, Clone)]
enum Op {
    Alloc {
        size: usize,
        align_log: u32,
        zeroed: bool,
    },
    Grow {
        which: Index,
        extra: usize,
        align_log: u32,
        zeroed: bool,
    },
    Shrink {
        which: Index,
        keep: Index,
        align_log: u32,
    },
    Free {
        which: Index,
    },
    /// Rewrite an object's bytes and header in place (new seed, same header kind).
    Touch {
        which: Index,
    },
}

/// Sizes: mostly small, some around mimalloc's 1 KiB fast-path limit, a few large.
fn size() -> BoxedStrategy<usize> {
    let large: usize = if cfg!(miri) { 5_000 } else { 70_000 };
    prop_oneof![
        4 => 0..=64usize,
        3 => 900..=1100usize,
        2 => 0..=5_000usize,
        1 => 0..=large,
    ]
    .boxed()
}

fn op() -> impl Strategy<Value = Op> {
    let align_log = 0..=12u32;
    prop_oneof![
        4 => (size(), align_log.clone(), any::<bool>())
            .prop_map(|(size, align_log, zeroed)| Op::Alloc { size, align_log, zeroed }),
        2 => (any::<Index>(), size(), align_log.clone(), any::<bool>()).prop_map(
            |(which, extra, align_log, zeroed)| Op::Grow { which, extra, align_log, zeroed }
        ),
        2 => (any::<Index>(), any::<Index>(), align_log)
            .prop_map(|(which, keep, align_log)| Op::Shrink { which, keep, align_log }),
        2 => any::<Index>().prop_map(|which| Op::Free { which }),
        1 => any::<Index>().prop_map(|which| Op::Touch { which }),
    ]
}

fn ops() -> impl Strategy<Value = Vec<Op>> {
    proptest::collection::vec(op(), 1..if cfg!(miri) { 16 } else { 80 })
}

fn config() -> Config {
    Config {
        cases: if cfg!(miri) { 8 } else { 256 },
        // No regression files: under Miri's isolation there is no file system.
        failure_persistence: None,
        ..Config::default()
    }
}

#[derive(Debug)]
struct Obj {
    ptr: NonNull<u8>,
    layout: Layout,
    seed: usize,
    header: HeaderValues,
    /// The id its header values were made from.
    id: usize,
}

/// The header for object `id`: four states, only the first of which runs the callback when freed.
fn header_for(id: usize) -> HeaderValues {
    match id % 4 {
        0 => HeaderValues::parked(id),
        1 => HeaderValues::bound(id),
        2 => HeaderValues::detached(id),
        _ => HeaderValues::ZERO,
    }
}

/// Frees `obj` as its owner would: a bound object is detached first. Returns the callbacks the
/// free should run.
///
/// # Safety
/// `obj` is live in `alloc` (it leaves the model here).
unsafe fn free_obj<A: Allocator, K: HeaderKind>(
    alloc: &HeaderAlloc<A, Stats, K>,
    obj: &Obj,
) -> Vec<usize> {
    let mut header = obj.header;
    if header == HeaderValues::bound(obj.id).for_kind::<K>() {
        header = HeaderValues::detached(obj.id).for_kind::<K>();
        // SAFETY: `obj` is live (caller).
        unsafe { set_header::<K>(obj.ptr, header) };
    }
    // SAFETY: `obj` is live with its layout (caller).
    unsafe { alloc.deallocate(obj.ptr, obj.layout) };
    header.freed::<K>()
}

/// Runs `ops` against `alloc`, checking everything after each step. `blocks` looks up live inner
/// blocks by address.
fn run<A: Allocator, K: HeaderKind>(
    alloc: &HeaderAlloc<A, Stats, K>,
    blocks: &dyn Fn(usize) -> Option<Layout>,
    ops: &[Op],
) {
    take_freed();
    let mut live: Vec<Obj> = Vec::new();
    // Callbacks the model expects, and callbacks that ran, over the whole sequence.
    let (mut callbacks_expected, mut callbacks_seen) = (0, 0);
    for (id, op) in ops.iter().enumerate() {
        let id = id + 1;
        match *op {
            Op::Alloc {
                size,
                align_log,
                zeroed,
            } => {
                let layout = Layout::from_size_align(size, 1 << align_log).unwrap();
                let p = if zeroed {
                    alloc.allocate_zeroed(layout)
                } else {
                    alloc.allocate(layout)
                }
                .unwrap();
                let ptr = p.cast::<u8>();
                let header = header_for(id);
                // SAFETY: `ptr` is the fresh object for `layout`.
                unsafe {
                    assert_eq!(header_values::<K>(ptr), HeaderValues::ZERO, "{op:?}");
                    if zeroed {
                        assert!(is_zero(ptr, size), "{op:?}");
                    }
                    fill(ptr, size, id);
                    set_header::<K>(ptr, header);
                }
                live.push(Obj {
                    ptr,
                    layout,
                    seed: id,
                    header: header.for_kind::<K>(),
                    id,
                });
            }
            Op::Grow {
                which,
                extra,
                align_log,
                zeroed,
            } if !live.is_empty() => {
                let i = which.index(live.len());
                let obj = &mut live[i];
                let old = obj.layout;
                let new = Layout::from_size_align(old.size() + extra, 1 << align_log).unwrap();
                // SAFETY: `obj` is live with layout `old`; new.size() >= old.size().
                let p = unsafe {
                    if zeroed {
                        alloc.grow_zeroed(obj.ptr, old, new)
                    } else {
                        alloc.grow(obj.ptr, old, new)
                    }
                }
                .unwrap();
                obj.ptr = p.cast();
                obj.layout = new;
                // SAFETY: the grown object is live with layout `new`.
                unsafe {
                    assert!(holds_pattern(obj.ptr, old.size(), obj.seed), "{op:?}");
                    if zeroed {
                        assert!(is_zero(obj.ptr.add(old.size()), extra), "{op:?}");
                    }
                    fill(obj.ptr, new.size(), obj.seed);
                }
            }
            Op::Shrink {
                which,
                keep,
                align_log,
            } if !live.is_empty() => {
                let i = which.index(live.len());
                let obj = &mut live[i];
                let old = obj.layout;
                let size = keep.index(old.size() + 1);
                let new = Layout::from_size_align(size, 1 << align_log).unwrap();
                // SAFETY: `obj` is live with layout `old`; new.size() <= old.size().
                let p = unsafe { alloc.shrink(obj.ptr, old, new) }.unwrap();
                obj.ptr = p.cast();
                obj.layout = new;
            }
            Op::Free { which } if !live.is_empty() => {
                let obj = live.swap_remove(which.index(live.len()));
                // SAFETY: `obj` is live with its layout; it leaves the model here.
                let expected = unsafe { free_obj(alloc, &obj) };
                let got = take_freed();
                callbacks_expected += expected.len();
                callbacks_seen += got.len();
                assert_eq!(got, expected, "{op:?} of {obj:?}");
            }
            Op::Touch { which } if !live.is_empty() => {
                let i = which.index(live.len());
                let obj = &mut live[i];
                obj.seed = id;
                obj.id = id;
                obj.header = header_for(id).for_kind::<K>();
                // SAFETY: `obj` is live with its layout.
                unsafe {
                    fill(obj.ptr, obj.layout.size(), id);
                    set_header::<K>(obj.ptr, obj.header);
                }
            }
            _ => {} // Nothing live to act on.
        }
        assert!(
            take_freed().is_empty(),
            "callback outside deallocate: {op:?}"
        );
        check(alloc, blocks, &live);
    }
    let mut expected = Vec::new();
    for obj in live.drain(..) {
        // SAFETY: `obj` is live with its layout.
        expected.extend(unsafe { free_obj(alloc, &obj) });
    }
    let freed = take_freed();
    assert_eq!(freed, expected);
    callbacks_expected += expected.len();
    callbacks_seen += freed.len();
    assert_eq!(callbacks_seen, callbacks_expected);
    let s = alloc.stats();
    assert_eq!((s.live_blocks, s.live_bytes, s.header_bytes), (0, 0, 0));
}

/// Every live object: aligned, its bytes and header as the model says, its inner block where the
/// arithmetic says; the statistics agree with the model.
fn check<A: Allocator, K: HeaderKind>(
    alloc: &HeaderAlloc<A, Stats, K>,
    blocks: &dyn Fn(usize) -> Option<Layout>,
    live: &[Obj],
) {
    for obj in live {
        let addr = obj.ptr.as_ptr().addr();
        assert_eq!(addr % obj.layout.align(), 0, "{obj:?}");
        // SAFETY: every object in the model is live with its layout.
        unsafe {
            assert!(
                holds_pattern(obj.ptr, obj.layout.size(), obj.seed),
                "{obj:?}"
            );
            assert_eq!(header_values::<K>(obj.ptr), obj.header, "{obj:?}");
        }
        let bl = block_layout::<K>(obj.layout).unwrap();
        if bl.size() != 0 {
            let block = addr - offset_for::<K>(obj.layout.align());
            assert_eq!(blocks(block), Some(bl), "{obj:?}");
        }
    }
    let s = alloc.stats();
    assert_eq!(s.live_blocks, live.len());
    let bytes = live.iter().map(|o| o.layout.size()).sum::<usize>();
    assert_eq!(s.live_bytes, bytes);
    let headers = live
        .iter()
        .map(|o| offset_for::<K>(o.layout.align()))
        .sum::<usize>();
    assert_eq!(s.header_bytes, headers);
}

/// Runs `ops` on each header kind over the inner allocator `make()` gives (tracked).
fn run_kinds<A: Allocator>(make: impl Fn() -> A, ops: &[Op]) {
    fn one<A: Allocator, K: HeaderKind>(inner: A, ops: &[Op]) {
        let tracking = Tracking::new(inner);
        let alloc = recording::<_, _, K>(&tracking, Stats::new());
        run(&alloc, &|a| tracking.block_at(a), ops);
        tracking.assert_clean(true);
    }
    one::<A, Wide>(make(), ops);
    one::<A, Narrow>(make(), ops);
    one::<A, Bare>(make(), ops);
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn model_system(ops in ops()) {
        run_kinds(|| System, &ops);
    }

    #[test]
    fn model_bump(ops in ops()) {
        let bump = bumpalo::Bump::new();
        run_kinds(|| &bump, &ops);
    }

    #[cfg(feature = "mimalloc")]
    #[test]
    fn model_mimalloc(ops in ops()) {
        run_kinds(|| tether_alloc::MiMalloc, &ops);
    }
}

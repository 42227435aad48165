//! A model-based property test: random sequences of allocate / grow / shrink / deallocate with
//! random sizes and alignments, on every inner allocator.
//!
//! The model keeps, for every live object, its layout, the pattern seed its bytes hold and the
//! header values it was given (each object gets distinct values; a quarter of the objects have
//! both `cached_mem` and `free_cb` set, the others only one field or none). After every step the
//! test checks every live object's bytes and header, the inner blocks (through
//! [`common::Tracking`]) and the statistics; after every free it checks that the free callback ran
//! exactly when it should, with the right pointer; at the end, the total callback count.

mod common;

use allocator_api2::alloc::{Allocator, Layout};
use common::*;
use core::ptr::NonNull;
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::Config;
use std::alloc::System;
use tether_alloc::{block_layout, offset_for, HeaderAlloc, Stats};

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
}

/// The header for object `id`: four kinds, only the first of which should run the callback.
fn header_for(id: usize) -> HeaderValues {
    let full = HeaderValues::full(id);
    match id % 4 {
        0 => full,
        1 => HeaderValues {
            free_cb: None,
            ..full
        },
        2 => HeaderValues {
            cached_mem: 0,
            ..full
        },
        _ => HeaderValues::ZERO,
    }
}

fn expected_callbacks(h: HeaderValues) -> Vec<usize> {
    if h.cached_mem != 0 && h.free_cb.is_some() {
        vec![h.cached_mem]
    } else {
        Vec::new()
    }
}

/// Runs `ops` against `alloc`, checking everything after each step. `blocks` looks up live inner
/// blocks by address.
fn run<A: Allocator>(
    alloc: &HeaderAlloc<A, Stats>,
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
                    assert_eq!(header_values(ptr), HeaderValues::ZERO, "{op:?}");
                    if zeroed {
                        assert!(is_zero(ptr, size), "{op:?}");
                    }
                    fill(ptr, size, id);
                    set_header(ptr, header);
                }
                live.push(Obj {
                    ptr,
                    layout,
                    seed: id,
                    header,
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
                unsafe { alloc.deallocate(obj.ptr, obj.layout) };
                let (expected, got) = (expected_callbacks(obj.header), take_freed());
                callbacks_expected += expected.len();
                callbacks_seen += got.len();
                assert_eq!(got, expected, "{op:?} of {obj:?}");
            }
            Op::Touch { which } if !live.is_empty() => {
                let i = which.index(live.len());
                let obj = &mut live[i];
                obj.seed = id;
                obj.header = HeaderValues {
                    py_obj: obj.header.py_obj ^ 0x100,
                    ..obj.header
                };
                // SAFETY: `obj` is live with its layout.
                unsafe {
                    fill(obj.ptr, obj.layout.size(), id);
                    set_header(obj.ptr, obj.header);
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
        unsafe { alloc.deallocate(obj.ptr, obj.layout) };
        expected.extend(expected_callbacks(obj.header));
    }
    let freed = take_freed();
    assert_eq!(freed, expected);
    callbacks_expected += expected.len();
    callbacks_seen += freed.len();
    assert_eq!(callbacks_seen, callbacks_expected);
    let s = alloc.stats();
    assert_eq!((s.live_blocks, s.live_bytes), (0, 0));
}

/// Every live object: aligned, its bytes and header as the model says, its inner block where the
/// arithmetic says; the statistics agree with the model.
fn check<A: Allocator>(
    alloc: &HeaderAlloc<A, Stats>,
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
            assert_eq!(header_values(obj.ptr), obj.header, "{obj:?}");
        }
        let block = addr - offset_for(obj.layout.align());
        assert_eq!(blocks(block), block_layout(obj.layout), "{obj:?}");
    }
    let s = alloc.stats();
    assert_eq!(s.live_blocks, live.len());
    assert_eq!(
        s.live_bytes,
        live.iter().map(|o| o.layout.size()).sum::<usize>()
    );
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn model_system(ops in ops()) {
        let tracking = Tracking::new(System);
        let alloc = HeaderAlloc::counting_with_inner(&tracking);
        run(&alloc, &|a| tracking.block_at(a), &ops);
        tracking.assert_clean(true);
    }

    #[test]
    fn model_bump(ops in ops()) {
        let bump = bumpalo::Bump::new();
        let tracking = Tracking::new(&bump);
        let alloc = HeaderAlloc::counting_with_inner(&tracking);
        run(&alloc, &|a| tracking.block_at(a), &ops);
        tracking.assert_clean(true);
    }

    #[cfg(feature = "mimalloc")]
    #[test]
    fn model_mimalloc(ops in ops()) {
        let tracking = Tracking::new(tether_alloc::MiMalloc);
        let alloc = HeaderAlloc::counting_with_inner(&tracking);
        run(&alloc, &|a| tracking.block_at(a), &ops);
        tracking.assert_clean(true);
    }
}

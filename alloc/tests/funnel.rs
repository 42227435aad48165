//! The free funnel, for every header kind on every inner allocator.
//!
//! * `deallocate` of an object whose tie word is parked (`W | TIE_PARKED`) swaps the word to
//!   null and calls the allocator's free callback with `W` (untagged) exactly once; a detached
//!   word (null) calls nothing; `Bare` has no funnel at all.
//! * No callback registered (or cleared): nothing is called, the block is still freed.
//! * A bound word (`W`) at free time is the owner's bug: `debug_assert!` in debug builds (the
//!   block stays live, so the owner can detach and free it), left alone in release builds; the
//!   callback never runs for it.
//! * The callback runs on the freeing thread, also with many threads freeing each other's
//!   objects, and also on an arena (bumpalo), whose frees are otherwise no-ops.

#[macro_use]
mod common;

use allocator_api2::alloc::{Allocator, Layout};
use common::*;
use core::ptr::NonNull;
use std::alloc::System;
use tether_alloc::{Bare, HeaderAlloc, HeaderKind, Narrow, NoStats, Stats, StatsSink, Wide};

fn layout(size: usize, align: usize) -> Layout {
    Layout::from_size_align(size, align).unwrap()
}

/// Parked runs the callback once with the untagged pointer; detached does not; for several
/// alignments (the tie word is at `obj - 8` for each).
fn funnel_cases<A: Allocator, S: StatsSink, K: HeaderKind>(alloc: &HeaderAlloc<A, S, K>) {
    for &align in &[1, 8, 16, 64, 4096] {
        for (i, values) in [
            HeaderValues::parked(9),
            HeaderValues::detached(9),
            HeaderValues::ZERO,
        ]
        .into_iter()
        .enumerate()
        {
            let l = layout(48, align);
            let obj = alloc.allocate(l).unwrap().cast::<u8>();
            // SAFETY: `obj` is live with layout `l` until deallocated here.
            unsafe {
                set_header::<K>(obj, values);
                alloc.deallocate(obj, l);
            }
            let expect = if i == 0 && K::SIZE != 0 {
                vec![HeaderValues::wrapper(9)]
            } else {
                vec![]
            };
            assert_eq!(take_freed(), expect, "{values:?} align {align}");
            assert_eq!(values.freed::<K>(), expect);
        }
    }
}

fn funnel_on_every_inner<K: HeaderKind>() {
    funnel_cases(&recording::<_, _, K>(System, NoStats));
    funnel_cases(&recording::<_, _, K>(tether_alloc::DEFAULT_INNER, NoStats));
    funnel_cases(&recording::<_, _, K>(
        tether_alloc::DEFAULT_INNER,
        Stats::new(),
    ));
    #[cfg(feature = "mimalloc")]
    funnel_cases(&recording::<_, _, K>(tether_alloc::MiMalloc, NoStats));
    // An arena never really frees, but the funnel still runs on deallocate.
    let mut bump = bumpalo::Bump::new();
    funnel_cases(&recording::<_, _, K>(&bump, NoStats));
    bump.reset();
}

/// Without a registered callback a parked word is still taken (swapped to null) and the block
/// freed; registering, clearing and re-registering take effect for later frees.
fn callback_registration<K: HeaderKind>() {
    let tracking = Tracking::new(System);
    let alloc = HeaderAlloc::<_, Stats, K>::from_parts(&tracking, Stats::new());
    assert!(alloc.free_callback().is_none());
    let l = layout(32, 8);
    let free_parked = |id| {
        let obj = alloc.allocate(l).unwrap().cast::<u8>();
        // SAFETY: `obj` is live with layout `l` until deallocated here.
        unsafe {
            set_header::<K>(obj, HeaderValues::parked(id));
            alloc.deallocate(obj, l);
        }
        take_freed()
    };
    assert_eq!(free_parked(1), Vec::<usize>::new());
    alloc.set_free_callback(Some(RECORD));
    assert!(alloc
        .free_callback()
        .is_some_and(|f| core::ptr::fn_addr_eq(f, RECORD)));
    assert_eq!(free_parked(2), HeaderValues::parked(2).freed::<K>());
    alloc.set_free_callback(None);
    assert_eq!(free_parked(3), Vec::<usize>::new());
    alloc.set_free_callback(Some(RECORD));
    assert_eq!(free_parked(4), HeaderValues::parked(4).freed::<K>());
    tracking.assert_clean(true);
    assert_eq!(alloc.stats().live_blocks, 0);
}

/// A bound word at free time: `debug_assert!` (debug builds) before the block goes, never the
/// callback; in release builds the word is left alone and the block freed.
fn bound_at_free<K: HeaderKind>() {
    let tracking = Tracking::new(System);
    let alloc = recording::<_, _, K>(&tracking, Stats::new());
    let l = layout(24, 16);
    let obj = alloc.allocate(l).unwrap().cast::<u8>();
    let bound = HeaderValues::bound(5);
    // SAFETY: `obj` is live with layout `l`.
    unsafe { set_header::<K>(obj, bound) };
    let a = core::panic::AssertUnwindSafe(&alloc);
    // SAFETY: `obj` is live with layout `l`; if the debug check panics, it does so before the
    // block is returned, so `obj` is still live afterwards.
    let outcome = std::panic::catch_unwind(move || unsafe { a.deallocate(obj, l) });
    assert!(take_freed().is_empty(), "callback ran for a bound word");
    if cfg!(debug_assertions) && K::SIZE != 0 {
        assert!(outcome.is_err(), "no debug_assert for a bound word at free");
        // The block is still live and its word untouched: the owner detaches, then frees.
        // SAFETY: `obj` is still live with layout `l`.
        unsafe {
            assert_eq!(header_values::<K>(obj), bound.for_kind::<K>());
            set_header::<K>(obj, HeaderValues::detached(5));
            alloc.deallocate(obj, l);
        }
        assert!(take_freed().is_empty());
    } else {
        assert!(outcome.is_ok());
    }
    tracking.assert_clean(true);
    assert_eq!(alloc.stats().live_blocks, 0);
}

per_kind! {
    funnel_on_every_inner => funnel_on_every_inner,
    callback_registration => callback_registration,
    bound_at_free => bound_at_free,
}

fn free_on_another_thread<K: HeaderKind>() {
    struct SendPtr(NonNull<u8>);
    // SAFETY: the pointer is only moved to the other thread, which becomes its sole user.
    unsafe impl Send for SendPtr {}
    let alloc = recording::<_, _, K>(tether_alloc::DEFAULT_INNER, Stats::new());
    let l = layout(200, 64);
    let obj = alloc.allocate(l).unwrap().cast::<u8>();
    let header = HeaderValues::parked(42);
    // SAFETY: `obj` is live.
    unsafe { set_header::<K>(obj, header) };
    let p = SendPtr(obj);
    let freed = std::thread::scope(|s| {
        s.spawn(|| {
            let p = p;
            // SAFETY: `p.0` is the live object with layout `l`; this thread now owns it.
            unsafe { alloc.deallocate(p.0, l) };
            take_freed()
        })
        .join()
        .unwrap()
    });
    assert_eq!(freed, header.freed::<K>());
    assert!(take_freed().is_empty());
    assert_eq!(alloc.stats().live_blocks, 0);
}

#[test]
fn free_on_another_thread_wide() {
    free_on_another_thread::<Wide>();
}

#[test]
fn free_on_another_thread_narrow() {
    free_on_another_thread::<Narrow>();
}

/// Threads allocate, park, and free their own objects or hand them to a receiver thread that
/// frees them; every parked pointer is released exactly once, by the freeing thread.
fn threads_churn<K: HeaderKind>() {
    struct SendPtr(NonNull<u8>, Layout, HeaderValues);
    // SAFETY: each pointer is moved to exactly one other thread, which becomes its sole user.
    unsafe impl Send for SendPtr {}
    let threads = if cfg!(miri) { 2 } else { 4 };
    let rounds = if cfg!(miri) { 40 } else { 2_000 };
    let alloc = recording::<_, _, K>(tether_alloc::DEFAULT_INNER, Stats::new());
    let (tx, rx) = std::sync::mpsc::channel::<SendPtr>();
    let freed_elsewhere = std::thread::scope(|s| {
        for t in 0..threads {
            let (alloc, tx) = (&alloc, tx.clone());
            s.spawn(move || {
                let mut x = 0x9E37_79B9_7F4A_7C15u64 ^ t as u64;
                let mut expected = Vec::new();
                for i in 0..rounds {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    let size = (x % 3000) as usize;
                    let align = 1 << ((x >> 32) % 9);
                    let l = layout(size, align);
                    let obj = alloc.allocate(l).unwrap().cast::<u8>();
                    let header = HeaderValues::parked(t * rounds + i);
                    // SAFETY: `obj` is live with layout `l`; it is either freed here or sent
                    // to the receiver, which frees it.
                    unsafe {
                        fill(obj, size, i);
                        set_header::<K>(obj, header);
                        if i % 4 == 0 {
                            tx.send(SendPtr(obj, l, header)).unwrap();
                        } else {
                            assert!(holds_pattern(obj, size, i));
                            alloc.deallocate(obj, l);
                            expected.extend(header.freed::<K>());
                        }
                    }
                }
                assert_eq!(take_freed(), expected);
            });
        }
        drop(tx);
        let receiver = s.spawn(|| {
            let mut expected = Vec::new();
            for SendPtr(obj, l, header) in rx {
                // SAFETY: the sender gave up `obj`, live with layout `l`.
                unsafe {
                    assert_eq!(header_values::<K>(obj), header.for_kind::<K>());
                    alloc.deallocate(obj, l);
                }
                expected.extend(header.freed::<K>());
            }
            (expected, take_freed())
        });
        receiver.join().unwrap()
    });
    assert_eq!(freed_elsewhere.0, freed_elsewhere.1);
    let per_receiver = if K::SIZE == 0 {
        0
    } else {
        threads * rounds.div_ceil(4)
    };
    assert_eq!(freed_elsewhere.0.len(), per_receiver);
    let s = alloc.stats();
    assert_eq!((s.live_blocks, s.live_bytes, s.header_bytes), (0, 0, 0));
    assert_eq!(s.total_allocs, threads * rounds);
}

#[test]
fn threads_churn_wide() {
    threads_churn::<Wide>();
}

#[test]
fn threads_churn_narrow() {
    threads_churn::<Narrow>();
}

#[test]
fn threads_churn_bare() {
    threads_churn::<Bare>();
}

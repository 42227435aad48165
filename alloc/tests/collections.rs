//! `hashbrown::HashMap`, `allocator_api2::vec::Vec` (with growth) and `Box` on a `HeaderAlloc` of
//! every header kind, on every inner allocator (a bumpalo arena included).
//!
//! A header set on a vector's buffer survives every reallocation of the buffer; a parked header
//! on a box is released once when the box drops; everything the collections allocated comes back
//! (through [`common::Tracking`] and the statistics).

#[macro_use]
mod common;

use allocator_api2::alloc::{Allocator, Layout};
use allocator_api2::boxed::Box as ABox;
use allocator_api2::vec::Vec as AVec;
use common::*;
use core::ptr::NonNull;
use std::alloc::System;
use tether_alloc::{HeaderAlloc, HeaderKind, NoStats, Stats, StatsSink};

/// A `Box` in `alloc`, and its object pointer with the whole block's provenance.
///
/// Under Stacked Borrows, a pointer derived from a *reference* to the object (`&*b`) may only
/// touch the object, not the header before it; so the header is reached through the pointer the
/// allocator returned, which the `Box` is then built from.
fn boxed_in<T, A: Allocator>(value: T, alloc: A) -> (ABox<T, A>, NonNull<u8>) {
    let obj = alloc.allocate(Layout::new::<T>()).unwrap().cast::<T>();
    // SAFETY: `obj` is a fresh allocation of `T`'s layout from `alloc`: writable, and a valid
    // `Box<T, A>` once initialized.
    unsafe {
        obj.as_ptr().write(value);
        (ABox::from_raw_in(obj.as_ptr(), alloc), obj.cast())
    }
}

/// A vector's buffer, through the raw pointer the vector keeps (whole-block provenance).
fn vec_obj<T, A: Allocator>(v: &mut AVec<T, A>) -> NonNull<u8> {
    NonNull::new(v.as_mut_ptr()).unwrap().cast()
}

fn collections<A: Allocator, S: StatsSink, K: HeaderKind>(alloc: &HeaderAlloc<A, S, K>) {
    let n: u64 = if cfg!(miri) { 300 } else { 20_000 };
    let mut map = hashbrown::HashMap::new_in(alloc);
    for i in 0..n {
        map.insert(i, i * 3);
    }
    for i in (0..n).step_by(2) {
        assert_eq!(map.remove(&i), Some(i * 3));
    }
    map.shrink_to_fit();
    assert_eq!(map.len() as u64, n / 2);
    assert!((1..n).step_by(2).all(|i| map[&i] == i * 3));
    drop(map);

    let mut v = AVec::new_in(alloc);
    v.push(0u64);
    let header = HeaderValues::parked(1234);
    // SAFETY: the vector's buffer (capacity > 0) is a live object of kind K.
    unsafe { set_header::<K>(vec_obj(&mut v), header) };
    for i in 1..n {
        let cap = v.capacity();
        v.push(i);
        if v.capacity() != cap {
            // SAFETY: as above, for the reallocated buffer.
            let now = unsafe { header_values::<K>(vec_obj(&mut v)) };
            assert_eq!(
                now,
                header.for_kind::<K>(),
                "lost growing to {}",
                v.capacity()
            );
        }
    }
    assert!(v.iter().copied().eq(0..n));
    v.truncate(10);
    v.shrink_to_fit();
    // SAFETY: as above.
    let now = unsafe { header_values::<K>(vec_obj(&mut v)) };
    assert_eq!(now, header.for_kind::<K>());
    assert!(take_freed().is_empty());
    drop(v);
    assert_eq!(take_freed(), header.freed::<K>());

    let (b, obj) = boxed_in([7u8; 300], alloc);
    assert!(b.iter().all(|&x| x == 7));
    // SAFETY: the box's object is live.
    unsafe {
        assert_eq!(header_values::<K>(obj), HeaderValues::ZERO);
        set_header::<K>(obj, HeaderValues::parked(8));
    }
    drop(b);
    assert_eq!(take_freed(), HeaderValues::parked(8).freed::<K>());
}

fn system_tracked<K: HeaderKind>() {
    let tracking = Tracking::new(System);
    let alloc = recording::<_, _, K>(&tracking, Stats::new());
    collections(&alloc);
    tracking.assert_clean(true);
    let s = alloc.stats();
    assert_eq!((s.live_blocks, s.live_bytes, s.header_bytes), (0, 0, 0));
    assert!(s.total_allocs > 3 && s.total_allocs == s.total_frees);
}

fn default_and_counting<K: HeaderKind>() {
    collections(&recording::<_, _, K>(tether_alloc::DEFAULT_INNER, NoStats));
    let alloc = recording::<_, _, K>(tether_alloc::DEFAULT_INNER, Stats::new());
    collections(&alloc);
    let s = alloc.stats();
    assert_eq!((s.live_blocks, s.live_bytes, s.header_bytes), (0, 0, 0));
}

#[cfg(feature = "mimalloc")]
fn mimalloc_counting<K: HeaderKind>() {
    let alloc = recording::<_, _, K>(tether_alloc::MiMalloc, Stats::new());
    collections(&alloc);
    assert_eq!(alloc.stats().live_blocks, 0);
}

fn bump_tracked<K: HeaderKind>() {
    let bump = bumpalo::Bump::new();
    let tracking = Tracking::new(&bump);
    let alloc = recording::<_, _, K>(&tracking, Stats::new());
    collections(&alloc);
    tracking.assert_clean(true);
    assert_eq!(alloc.stats().live_blocks, 0);
}

per_kind! {
    system_tracked => system_tracked,
    default_and_counting => default_and_counting,
    #[cfg(feature = "mimalloc")]
    mimalloc_counting => mimalloc_counting,
    bump_tracked => bump_tracked,
}

//! The object model: ObjRef / WeakRef / ObjAny counts, destruction, layout and threads.

mod common;

use common::*;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use tether_runtime::{
    alloc_stats, object_type, tie, ObjAny, ObjRef, Object, TieState, WeakRef, ANY_OBJECT,
};

fn assert_send_sync<T: Send + Sync>() {}

#[test]
fn handles_are_send_and_sync() {
    let _s = serial();
    assert_send_sync::<ObjRef<Tracked>>();
    assert_send_sync::<WeakRef<Tracked>>();
    assert_send_sync::<ObjAny>();
}

#[test]
fn new_clone_drop_counts_and_destroys_once() {
    let _s = serial();
    let _leak = LeakCheck::new();
    let (t, d) = Tracked::new();
    let a = ObjRef::new(t);
    assert_eq!((a.strong_count(), a.weak_count()), (1, 0));
    let b = a.clone();
    let c = b.clone();
    assert_eq!(a.strong_count(), 3);
    assert!(a.ptr_eq(&c));
    drop(a);
    drop(c);
    assert_eq!((b.strong_count(), drops(&d)), (1, 0));
    assert_eq!(b.data, [7; 8]);
    drop(b);
    assert_eq!(drops(&d), 1);
}

#[test]
fn unique_last_drop_frees_the_block() {
    let _s = serial();
    let leak = LeakCheck::new();
    let (t, d) = Tracked::new();
    let a = ObjRef::new(t);
    assert_eq!(leak.extra_blocks(), 1);
    let before = alloc_stats().total_frees;
    drop(a);
    assert_eq!(drops(&d), 1);
    assert_eq!(alloc_stats().total_frees, before + 1);
}

#[test]
fn weak_keeps_the_block_not_the_value() {
    let _s = serial();
    let leak = LeakCheck::new();
    let (t, d) = Tracked::new();
    let a = ObjRef::new(t);
    let w = a.downgrade();
    let w2 = w.clone();
    assert_eq!((a.strong_count(), a.weak_count()), (1, 2));
    let up = w.upgrade().unwrap();
    assert!(up.ptr_eq(&a));
    drop(up);
    drop(a);
    assert_eq!(drops(&d), 1, "the value dies with the last strong ref");
    assert_eq!(leak.extra_blocks(), 1, "the block lives while weak refs do");
    assert!(w.upgrade().is_none());
    assert_eq!((w.strong_count(), w.weak_count()), (0, 2));
    assert!(w.ptr_eq(&w2));
    drop(w);
    assert_eq!(leak.extra_blocks(), 1);
    drop(w2);
    assert_eq!(leak.extra_blocks(), 0);
}

#[test]
fn weak_dropped_first() {
    let _s = serial();
    let _leak = LeakCheck::new();
    let (t, d) = Tracked::new();
    let a = ObjRef::new(t);
    drop(a.downgrade());
    let b = a.clone();
    drop(a);
    drop(b);
    assert_eq!(drops(&d), 1);
}

#[test]
fn get_mut_only_when_unique() {
    let _s = serial();
    let _leak = LeakCheck::new();
    let (t, _d) = Tracked::new();
    let mut a = ObjRef::new(t);
    a.get_mut().unwrap().data[0] = 1;
    let b = a.clone();
    assert!(a.get_mut().is_none());
    drop(b);
    let w = a.downgrade();
    assert!(a.get_mut().is_none(), "a weak ref could upgrade");
    drop(w);
    assert_eq!(a.get_mut().unwrap().data[0], 1);
}

#[test]
fn try_unwrap_unique_shared_and_with_weak() {
    let _s = serial();
    let leak = LeakCheck::new();
    let (t, d) = Tracked::new();
    let a = ObjRef::new(t);
    let b = a.clone();
    let a = a.try_unwrap().err().unwrap();
    drop(b);
    let v = a.try_unwrap().ok().unwrap();
    assert_eq!(leak.extra_blocks(), 0);
    assert_eq!(drops(&d), 0);
    drop(v);
    assert_eq!(drops(&d), 1);

    let (t, d) = Tracked::new();
    let a = ObjRef::new(t);
    let w = a.downgrade();
    let v = a.try_unwrap().ok().unwrap();
    assert!(w.upgrade().is_none());
    assert_eq!(leak.extra_blocks(), 1);
    drop(w);
    assert_eq!(leak.extra_blocks(), 0);
    drop(v);
    assert_eq!(drops(&d), 1, "moved out, dropped once, not in place");
}

#[test]
fn any_downcast_and_raw_round_trips() {
    let _s = serial();
    let _leak = LeakCheck::new();
    struct Other;
    object_type!(Other, "test.object.Other");

    let (t, d) = Tracked::new();
    let any = ObjRef::new(t).into_any();
    assert_eq!(any.type_index(), Tracked::type_index());
    assert_eq!(any.type_info().name, "test.Tracked");
    assert!(any.downcast_ref::<Other>().is_none());
    assert!(any.as_typed::<Tracked>().is_some());
    assert_eq!(any.downcast_ref::<Tracked>().unwrap().data, [7; 8]);
    let any = any.downcast::<Other>().err().unwrap();

    let raw = any.into_raw();
    // SAFETY: `raw` holds the strong count given up above.
    let extra = unsafe { ObjAny::clone_from_raw(raw) };
    assert_eq!(extra.strong_count(), 2);
    // SAFETY: handing the raw count back.
    let back = unsafe { ObjAny::from_raw(raw) };
    assert!(back.ptr_eq(&extra));
    let typed: ObjRef<Tracked> = back.downcast().ok().unwrap();
    assert_eq!(typed.as_any().strong_count(), 2);
    let raw = typed.into_raw();
    // SAFETY: from ObjRef::into_raw of the same type.
    let typed = unsafe { ObjRef::<Tracked>::from_raw(raw) };
    drop(typed);
    drop(extra);
    assert_eq!(drops(&d), 1);
}

#[test]
fn tie_header_sits_before_the_object() {
    let _s = serial();
    let _leak = LeakCheck::new();
    let (t, _d) = Tracked::new();
    let a = ObjRef::new(t);
    let h = a.as_any().tie_word();
    // The tie word is the last word of the 16-byte header, right before the object.
    assert_eq!(
        h as *const _ as usize + core::mem::size_of::<usize>(),
        a.as_ptr().as_ptr() as usize
    );
    assert_eq!(tether_alloc::HEADER_OFFSET, 16);
    assert!(h.load(Ordering::Relaxed).is_null());
    assert_eq!(tie::state(a.as_any()), TieState::Detached);
    let w = a.downgrade();
    assert!(std::ptr::eq(w.tie_word(), h));
}

#[test]
fn odd_layouts_zst_and_big_alignment() {
    let _s = serial();
    let _leak = LeakCheck::new();
    struct Zst;
    object_type!(Zst, "test.object.Zst");
    #[repr(align(64))]
    struct Line([u8; 64]);
    object_type!(Line, "test.object.Line");
    #[repr(align(4096))]
    struct Page(u8);
    object_type!(Page, "test.object.Page");

    let z = ObjRef::new(Zst);
    let z2 = z.clone();
    drop((z, z2));
    let l = ObjRef::new(Line([3; 64]));
    assert_eq!(l.0[63], 3);
    assert_eq!(&*l as *const Line as usize % 64, 0);
    let p = ObjRef::new(Page(9));
    assert_eq!(&*p as *const Page as usize % 4096, 0);
    assert_eq!(p.0, 9);
    let w = p.downgrade();
    drop(p);
    assert!(w.upgrade().is_none());
}

#[test]
fn is_instance_walks_parents() {
    let _s = serial();
    struct A;
    struct B;
    struct C;
    object_type!(A, "test.object.A");
    object_type!(B, "test.object.B", parent = A);
    object_type!(C, "test.object.C", parent = B);
    let c = ObjRef::new(C).into_any();
    assert!(c.is_instance(A::type_index()));
    assert!(c.is_instance(B::type_index()));
    assert!(c.is_instance(ANY_OBJECT));
    assert!(!ObjRef::new(A).as_any().is_instance(C::type_index()));
    assert_eq!(C::type_info().parent, Some(B::type_index()));
}

#[test]
fn threads_clone_drop_and_upgrade() {
    let _s = serial();
    let _leak = LeakCheck::new();
    let rounds = iters(200, 5);
    for _ in 0..rounds {
        let (t, d) = Tracked::new();
        let a = ObjRef::new(t);
        let w = a.downgrade();
        let seen = Arc::new(AtomicUsize::new(0));
        let mut hs = Vec::new();
        for i in 0..4 {
            let mine = a.clone();
            let w = w.clone();
            let seen = seen.clone();
            hs.push(thread::spawn(move || {
                for _ in 0..iters(50, 3) {
                    let c = mine.clone();
                    assert_eq!(c.data, [7; 8]);
                    drop(c);
                    if let Some(up) = w.upgrade() {
                        seen.fetch_add(up.data[0] as usize, Ordering::Relaxed);
                    }
                }
                if i % 2 == 0 {
                    drop(mine);
                    None
                } else {
                    Some(mine.into_any())
                }
            }));
        }
        drop(a);
        let kept: Vec<_> = hs.into_iter().map(|h| h.join().unwrap()).collect();
        assert_eq!(drops(&d), 0);
        drop(kept);
        assert_eq!(drops(&d), 1);
        assert!(w.upgrade().is_none());
    }
}

#[test]
fn racing_last_drops_destroy_once() {
    let _s = serial();
    let _leak = LeakCheck::new();
    for _ in 0..iters(500, 5) {
        let (t, d) = Tracked::new();
        let a = ObjRef::new(t);
        let b = a.clone();
        let w = a.downgrade();
        let h1 = thread::spawn(move || drop(a));
        let h2 = thread::spawn(move || drop(b));
        let h3 = thread::spawn(move || w.upgrade().map(|s| s.data[1]));
        h1.join().unwrap();
        h2.join().unwrap();
        let _ = h3.join().unwrap();
        assert_eq!(drops(&d), 1);
    }
}

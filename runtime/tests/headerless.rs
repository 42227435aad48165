//! Header-less types (`object_type!(T, name, headerless)`): objects allocated with no tie header
//! (the `Bare` kind), for hot small types that never cross into a host.

mod common;

use common::*;
use core::ffi::c_void;
use core::ptr::NonNull;
use tether_runtime::{
    bare_alloc_stats, object_type, tie, ObjRef, Object, TieHost, WeakRef, STATS_ENABLED,
};

struct Point {
    x: u64,
    y: u64,
    label: String,
}
object_type!(Point, "test.headerless.Point", headerless);

struct Tied(#[allow(dead_code)] u64);
object_type!(Tied, "test.headerless.Tied");

unsafe extern "C" fn free_wrapper(_mem: *mut c_void) {}
static HOST: TieHost = TieHost {
    free_cached: free_wrapper,
    release_kept: drop,
};

#[test]
fn headerless_objects_carry_no_header_bytes() {
    let _s = serial();
    let _leak = LeakCheck::new();
    const { assert!(Point::HEADERLESS && !Tied::HEADERLESS) };
    let before = bare_alloc_stats();
    let main_before = tether_runtime::alloc_stats();
    let pts: Vec<ObjRef<Point>> = (0..100)
        .map(|i| {
            ObjRef::new(Point {
                x: i,
                y: 2 * i,
                label: format!("p{i}"),
            })
        })
        .collect();
    assert!(pts
        .iter()
        .all(|p| !p.as_any().obj_header().has_tie_header()));
    if STATS_ENABLED {
        let now = bare_alloc_stats();
        assert_eq!(now.live_blocks - before.live_blocks, 100);
        assert_eq!(now.header_bytes, 0, "Bare allocations reserve no header");
        // The tied allocator saw none of them.
        assert_eq!(
            tether_runtime::alloc_stats().live_blocks,
            main_before.live_blocks
        );
    }
    assert_eq!(pts[7].x + pts[7].y, 21);
    assert_eq!(pts[3].label, "p3");
    drop(pts);
    if STATS_ENABLED {
        assert_eq!(bare_alloc_stats().live_blocks, before.live_blocks);
    }
}

#[test]
fn headerless_objects_drop_through_erased_and_weak_handles() {
    let _s = serial();
    let before = bare_alloc_stats();
    let p = ObjRef::new(Point {
        x: 1,
        y: 2,
        label: "a".repeat(100),
    });
    let weak: WeakRef<Point> = p.downgrade();
    let any = p.into_any(); // destroyed through the erased deleter (no owner word to read)
    assert!(weak.upgrade().is_some());
    drop(any);
    assert!(weak.upgrade().is_none());
    drop(weak);
    if STATS_ENABLED {
        assert_eq!(bare_alloc_stats().live_blocks, before.live_blocks);
    }
}

#[test]
fn headerless_objects_are_never_wrapped() {
    let _s = serial();
    tie::set_host(&HOST);
    let p = ObjRef::new(Point {
        x: 1,
        y: 1,
        label: String::new(),
    })
    .into_any();
    assert_eq!(tie::lookup(&p), None);
    let mut mem = [0u64; 4];
    let w = NonNull::from(&mut mem).cast::<c_void>();
    let refused = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| tie::bind(&p, w)));
    let msg = refused.expect_err("bind must refuse a header-less object");
    let msg = msg
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| msg.downcast_ref::<String>().cloned())
        .unwrap_or_default();
    assert!(msg.contains("header-less"), "{msg}");
    // A tied type next to it is unaffected.
    let t = ObjRef::new(Tied(1)).into_any();
    assert!(t.obj_header().has_tie_header());
    assert_eq!(tie::lookup(&t), None);
}

#[test]
fn tied_objects_reserve_the_header_of_the_configured_kind() {
    // 16 bytes (Wide) by default, 8 (Narrow) with the `narrow-header` feature; measured, not
    // assumed, through the allocator's counters.
    let _s = serial();
    let before = tether_runtime::alloc_stats();
    let t = ObjRef::new(Tied(5));
    if STATS_ENABLED {
        let now = tether_runtime::alloc_stats();
        assert_eq!(now.live_blocks - before.live_blocks, 1);
        assert_eq!(
            now.header_bytes - before.header_bytes,
            tether_runtime::OBJECT_HEADER_BYTES
        );
    }
    assert_eq!(
        tether_runtime::OBJECT_HEADER_BYTES,
        if cfg!(feature = "narrow-header") {
            8
        } else {
            16
        }
    );
    drop(t);
}

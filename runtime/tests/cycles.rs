//! The cycle collector (`tether_runtime::collect_cycles`): cycles through record fields, lists
//! and maps are freed, what the outside still references is not, weak references to garbage
//! stop upgrading, deep garbage goes with bounded stack, and threads holding, dropping and
//! making references while collections run never lose an object they can reach.

mod common;

use common::{serial, LeakCheck};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread;
use tether_runtime::containers::{List, Map, MapKey};
use tether_runtime::{
    collect_cycles, record_get, record_set, register_record_type, tracked_objects, FieldKind,
    FieldSpec, ObjAny, ObjRef, Record, Value, ANY_OBJECT,
};

/// `Node { val: int, next: Optional[object], other: Any }`: a record type that can form cycles.
fn node_type() -> u32 {
    static T: OnceLock<u32> = OnceLock::new();
    *T.get_or_init(|| {
        register_record_type(
            "test.cycles.Node",
            None,
            vec![
                FieldSpec::new("val", FieldKind::Int),
                FieldSpec::new(
                    "next",
                    FieldKind::Optional(Box::new(FieldKind::Object(ANY_OBJECT))),
                )
                .with_default(Value::None),
                FieldSpec::new("other", FieldKind::Any).with_default(Value::None),
            ],
        )
        .unwrap()
    })
}

/// A record type with scalar fields only: never tracked.
fn scalar_type() -> u32 {
    static T: OnceLock<u32> = OnceLock::new();
    *T.get_or_init(|| {
        register_record_type(
            "test.cycles.Scalar",
            None,
            vec![
                FieldSpec::new("val", FieldKind::Int),
                FieldSpec::new("s", FieldKind::Str),
            ],
        )
        .unwrap()
    })
}

fn node(val: i64) -> ObjAny {
    Record::new(node_type(), vec![Value::Int(val)]).unwrap()
}

fn link(from: &ObjAny, to: &ObjAny) {
    record_set(from, 1, Value::Object(to.clone())).unwrap();
}

/// A two-node cycle `a <-> b` (values `x`, `y`); returns `a`, the one handle left to it.
fn pair(x: i64, y: i64) -> ObjAny {
    let a = node(x);
    let b = node(y);
    link(&a, &b);
    link(&b, &a);
    a
}

fn val(n: &ObjAny) -> i64 {
    match record_get(n, 0).unwrap() {
        Value::Int(i) => i,
        v => panic!("val: {v:?}"),
    }
}

fn next(n: &ObjAny) -> ObjAny {
    match record_get(n, 1).unwrap() {
        Value::Object(o) => o,
        v => panic!("next: {v:?}"),
    }
}

#[test]
fn self_loops_rings_and_what_hangs_off_them_are_freed() {
    let _s = serial();
    let _leaks = LeakCheck::new();
    let a = node(1);
    link(&a, &a); // a -> a
    let ring: Vec<ObjAny> = (0..5).map(node).collect();
    for i in 0..5 {
        link(&ring[i], &ring[(i + 1) % 5]);
    }
    let tail = node(99); // hangs off the ring: no cycle of its own
    record_set(&ring[0], 2, Value::Object(tail.clone())).unwrap();
    let weak_a = a.downgrade();
    let weak_tail = tail.downgrade();
    drop((a, ring, tail));
    let s = collect_cycles();
    // The tail holds nothing: never tracked, it goes with the ring that held it.
    assert!(s.found >= 6 && !s.abandoned, "{s:?}");
    assert!(weak_a.upgrade().is_none());
    assert!(weak_tail.upgrade().is_none());
}

#[test]
fn what_the_outside_references_stays_intact_until_it_lets_go() {
    let _s = serial();
    let _leaks = LeakCheck::new();
    let keep = next(&pair(1, 2)); // b; a is reachable from it only
    collect_cycles();
    assert_eq!(val(&next(&keep)), 1, "a is reachable from b: kept, intact");
    assert_eq!(val(&next(&next(&keep))), 2);
    drop(keep);
    assert!(collect_cycles().found >= 2);
}

#[test]
fn cycles_through_lists_and_maps_are_freed() {
    let _s = serial();
    let _leaks = LeakCheck::new();
    let owner = node(1);
    let kids = ObjRef::new(List::new(FieldKind::Object(ANY_OBJECT))).into_any();
    for i in 0..10 {
        let k = node(i);
        link(&k, &owner); // child -> parent
        kids.downcast_ref::<List>()
            .unwrap()
            .push(Value::Object(k))
            .unwrap();
    }
    record_set(&owner, 2, Value::Object(kids.clone())).unwrap(); // parent -> list -> children
    let m = ObjRef::new(Map::new(FieldKind::Object(ANY_OBJECT), FieldKind::Any)).into_any();
    let key = node(50);
    m.downcast_ref::<Map>()
        .unwrap()
        .insert(MapKey::Object(key.clone()), Value::Object(m.clone()))
        .unwrap(); // the map holds itself, and an object key
    record_set(&key, 2, Value::Object(m.clone())).unwrap(); // key -> map -> key
    let weak = owner.downgrade();
    drop((owner, kids, m, key));
    let s = collect_cycles();
    assert!(s.found >= 14, "{s:?}");
    assert!(weak.upgrade().is_none());
}

#[test]
fn only_records_that_hold_references_are_tracked() {
    let _s = serial();
    let before = tracked_objects();
    let many: Vec<ObjAny> = (0..1000)
        .map(|i| Record::new(scalar_type(), vec![Value::Int(i), Value::from("s")]).unwrap())
        .collect();
    assert_eq!(tracked_objects(), before, "scalar records: never");
    let leaves: Vec<ObjAny> = (0..10).map(node).collect();
    assert_eq!(
        tracked_objects(),
        before,
        "nodes holding nothing cannot be in a cycle: not yet"
    );
    for pair in leaves.chunks(2) {
        link(&pair[0], &pair[1]); // holds a reference now
    }
    assert_eq!(tracked_objects(), before + 5);
    let built = Record::new(
        node_type(),
        vec![Value::Int(0), Value::Object(leaves[0].clone())],
    )
    .unwrap();
    assert_eq!(tracked_objects(), before + 6, "built holding one");
    drop((many, leaves, built));
    assert_eq!(tracked_objects(), before);
}

#[test]
fn a_tree_with_parent_pointers_is_freed() {
    let _s = serial();
    let _leaks = LeakCheck::new();
    let root = node(0);
    let mut level = vec![root.clone()];
    let mut count = 1;
    let total = if cfg!(miri) { 200 } else { 10_000 };
    while count < total {
        let mut next_level = Vec::new();
        for parent in &level {
            for _ in 0..4 {
                let child = node(count);
                record_set(&child, 1, Value::Object(parent.clone())).unwrap(); // up
                let kids = match record_get(parent, 2).unwrap() {
                    Value::Object(l) => l,
                    _ => {
                        let l = ObjRef::new(List::new(FieldKind::Object(ANY_OBJECT))).into_any();
                        record_set(parent, 2, Value::Object(l.clone())).unwrap();
                        l
                    }
                };
                kids.downcast_ref::<List>()
                    .unwrap()
                    .push(Value::Object(child.clone()))
                    .unwrap();
                next_level.push(child);
                count += 1;
            }
        }
        level = next_level;
    }
    drop((root, level));
    let s = collect_cycles();
    assert!(s.found >= total as usize, "{s:?}");
}

const DEEP: i64 = if cfg!(miri) { 300 } else { 100_000 };

#[test]
fn deep_garbage_is_freed_on_a_small_stack() {
    let _s = serial();
    let _leaks = LeakCheck::new();
    let t = thread::Builder::new()
        .stack_size(256 << 10)
        .spawn(|| {
            let head = node(0);
            link(&head, &head);
            let mut last = head.clone();
            for i in 1..DEEP {
                let n = node(i);
                record_set(&last, 2, Value::Object(n.clone())).unwrap();
                last = n;
            }
            drop((head, last));
            collect_cycles()
        })
        .unwrap();
    assert!(t.join().unwrap().found >= DEEP as usize - 1); // the last node holds nothing
}

#[test]
fn a_thread_holding_a_reference_into_a_cycle_keeps_all_of_it() {
    let _s = serial();
    let _leaks = LeakCheck::new();
    let held = pair(1, 2);
    let stop = Arc::new(AtomicBool::new(false));
    let reads = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let (stop2, reads2) = (stop.clone(), reads.clone());
    let holder = thread::spawn(move || {
        while !stop2.load(Ordering::Relaxed) {
            // Walk the cycle, cloning and dropping references as it goes.
            let b = next(&held);
            assert_eq!(val(&b), 2);
            assert_eq!(val(&next(&b)), 1);
            reads2.fetch_add(1, Ordering::Relaxed);
        }
        held
    });
    let mut runs = 0;
    let (min_runs, min_reads) = if cfg!(miri) { (3, 3) } else { (200, 1000) };
    while runs < min_runs || reads.load(Ordering::Relaxed) < min_reads {
        collect_cycles();
        runs += 1;
    }
    stop.store(true, Ordering::Relaxed);
    let held = holder.join().unwrap();
    assert_eq!(val(&next(&held)), 2, "intact after the collections");
    drop(held);
    assert!(collect_cycles().found >= 2);
}

#[test]
fn threads_making_and_dropping_cycles_race_collections() {
    let _s = serial();
    let _leaks = LeakCheck::new();
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..2)
        .map(|w| {
            let stop = stop.clone();
            thread::spawn(move || {
                let mut kept: Vec<ObjAny> = Vec::new();
                let mut weak = Vec::new();
                let mut i = 0i64;
                let least = if cfg!(miri) { 20 } else { 2_000 };
                while !stop.load(Ordering::Relaxed) || i < least {
                    let a = pair(i, i + 1);
                    weak.push(a.downgrade());
                    if i % 3 == 0 {
                        kept.push(a.clone()); // stays reachable: must stay intact
                    }
                    // Upgrades race the collector's commit.
                    if let Some(x) = weak[weak.len() / 2].upgrade() {
                        let _ = val(&x);
                    }
                    i += 1;
                }
                for k in &kept {
                    assert_eq!(
                        val(&next(&next(k))),
                        val(k),
                        "worker {w}: a kept cycle broke"
                    );
                }
                kept
            })
        })
        .collect();
    for _ in 0..if cfg!(miri) { 3 } else { 100 } {
        collect_cycles();
    }
    stop.store(true, Ordering::Relaxed);
    let kept: Vec<Vec<ObjAny>> = workers.into_iter().map(|t| t.join().unwrap()).collect();
    collect_cycles();
    for k in kept.iter().flatten() {
        assert_eq!(val(&next(&next(k))), val(k));
    }
    drop(kept);
    collect_cycles();
}

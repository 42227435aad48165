//! The native containers (`tether_runtime::containers`): kind checks that change nothing on
//! failure, Python's list and dict operations, keys by identity, and deep nesting freed on a
//! small stack.

use std::thread;
use tether_runtime::containers::{List, Map, MapKey, MapKeyRef};
use tether_runtime::{alloc_stats, FieldKind, ObjRef, Object, Value, ANY_OBJECT};

/// The tests share the allocator's counters: one at a time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn ints(v: &[i64]) -> Vec<Value> {
    v.iter().map(|&i| Value::Int(i)).collect()
}

#[test]
fn a_failed_insert_changes_nothing() {
    let _g = serial();
    let l = ObjRef::new(List::from_values(FieldKind::Int, ints(&[1, 2, 3])).unwrap());
    let bad = vec![Value::Int(4), Value::Str("x".into())];
    assert!(l.extend(bad.clone()).is_err());
    assert!(l.splice(0, 1, bad.clone()).is_err());
    assert!(l.replace_all(bad.clone()).is_err());
    assert!(l.set_many(&[0, 1], bad).is_err());
    assert!(l.push(Value::None).is_err());
    assert!(l.set(0, Value::Float(1.0)).is_err());
    assert_eq!(l.snapshot(), ints(&[1, 2, 3]));
    assert!(List::from_values(FieldKind::Int, vec![Value::Bool(true)]).is_err());
}

#[test]
fn list_operations_match_vec_semantics() {
    let _g = serial();
    let l = ObjRef::new(List::new(FieldKind::Int));
    l.extend(ints(&[0, 1, 2, 3, 4, 5])).unwrap();
    assert_eq!(l.slice(1, 5, 2), ints(&[1, 3]));
    assert_eq!(l.slice(4, 100, 1), ints(&[4, 5]));
    assert_eq!(l.splice(1, 3, ints(&[9])).unwrap(), ints(&[1, 2]));
    assert_eq!(l.snapshot(), ints(&[0, 9, 3, 4, 5]));
    assert_eq!(l.remove_many(&[4, 0, 4]), ints(&[5, 0]));
    assert_eq!(l.set_many(&[0, 2], ints(&[7, 8])).unwrap(), ints(&[9, 4]));
    l.insert(100, Value::Int(6)).unwrap();
    l.reverse();
    assert_eq!(l.snapshot(), ints(&[6, 8, 3, 7]));
    assert_eq!(l.remove(9), None);
    assert_eq!(l.with_item(1, |v| v.cloned()), Some(Value::Int(8)));
    assert!(l.set(10, Value::Int(0)).is_err());
}

struct Thing;
tether_runtime::object_type!(Thing, "tests.containers.Thing");

#[test]
fn map_keys_by_value_and_objects_by_identity_in_insertion_order() {
    let _g = serial();
    let m = ObjRef::new(Map::new(FieldKind::Object(ANY_OBJECT), FieldKind::Int));
    let a = ObjRef::new(Thing).into_any();
    let b = ObjRef::new(Thing).into_any();
    let v0 = m.version();
    assert_eq!(
        m.insert(MapKey::Object(b.clone()), Value::Int(2)).unwrap(),
        None
    );
    assert_eq!(
        m.insert(MapKey::Object(a.clone()), Value::Int(1)).unwrap(),
        None
    );
    assert_ne!(m.version(), v0);
    let v1 = m.version();
    assert_eq!(
        m.insert(MapKey::Object(b.clone()), Value::Int(3)).unwrap(),
        Some(Value::Int(2))
    );
    assert_eq!(m.version(), v1, "replacing a value keeps the key set");
    let order: Vec<_> = m.snapshot().into_iter().map(|(_, v)| v).collect();
    assert_eq!(order, ints(&[3, 1]));
    assert!(
        m.insert(MapKey::Str("k".into()), Value::Int(0)).is_err(),
        "wrong key kind"
    );
    let s = ObjRef::new(Map::new(FieldKind::Str, FieldKind::Int));
    assert!(s
        .update(vec![
            (MapKey::Str("a".into()), Value::Int(1)),
            (MapKey::Str("b".into()), Value::Str("x".into())),
        ])
        .is_err());
    assert!(s.is_empty(), "a failed update inserts nothing");
    // Borrowed lookups hash and compare like the owned keys.
    s.insert(MapKey::Str("key".into()), Value::Int(7)).unwrap();
    assert_eq!(s.get_ref(MapKeyRef::Str("key")), Some(Value::Int(7)));
    assert!(s.contains_ref(MapKeyRef::Str("key")) && !s.contains_ref(MapKeyRef::Str("kez")));
    assert!(!s.contains_ref(MapKeyRef::Int(7)));
    let by_ptr = MapKeyRef::Object(a.as_ptr().as_ptr().cast_const().cast());
    assert_eq!(m.get_ref(by_ptr), Some(Value::Int(1)));
    assert!(m.remove(&MapKey::Object(a.clone())).is_some());
    assert_eq!(m.pop_last().map(|(_, v)| v), Some(Value::Int(3)));
    assert!(m.clear().is_empty());
}

#[test]
fn a_deep_nesting_of_lists_is_freed_on_a_small_stack() {
    let _g = serial();
    let depth = if cfg!(miri) { 200 } else { 200_000 };
    let base = alloc_stats().live_blocks;
    thread::Builder::new()
        .stack_size(256 * 1024)
        .spawn(move || {
            let kind = FieldKind::Object(List::type_index());
            let mut top = ObjRef::new(List::new(kind.clone()));
            for _ in 0..depth {
                let outer = ObjRef::new(List::new(kind.clone()));
                outer.push(Value::Object(top.into_any())).unwrap();
                top = outer;
            }
            drop(top);
        })
        .unwrap()
        .join()
        .unwrap();
    assert_eq!(alloc_stats().live_blocks, base);
}

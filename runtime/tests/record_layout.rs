//! Record layouts: the compact slot forms, their sizes, and construction that fails halfway.

use tether_runtime::types::{SlotRepr, TypeKind};
use tether_runtime::{
    record_get, record_set, register_record_type, slot_int, slot_with_ref, type_info, Error,
    FieldKind, FieldSpec, ObjAny, Record, RecordBuilder, Value, ANY_OBJECT, SELF_TYPE,
};

fn opt(k: FieldKind) -> FieldKind {
    FieldKind::Optional(Box::new(k))
}

fn reprs(t: u32) -> Vec<SlotRepr> {
    let info = type_info(t).unwrap();
    info.layout
        .as_ref()
        .unwrap()
        .slots
        .iter()
        .map(|s| s.repr)
        .collect()
}

#[test]
fn a_two_field_node_is_its_header_and_two_words() {
    let node = register_record_type(
        "test.layout.Node",
        None,
        vec![
            FieldSpec::new("child", opt(FieldKind::Object(SELF_TYPE))).with_default(Value::None),
            FieldSpec::new("v", FieldKind::Int).with_default(0),
        ],
    )
    .unwrap();
    let info = type_info(node).unwrap();
    assert_eq!(info.kind, TypeKind::Record);
    // The self-reference resolved to the type's own index.
    assert_eq!(info.fields[0].kind, opt(FieldKind::Object(node)));
    assert_eq!(
        reprs(node),
        [SlotRepr::Ref { optional: true }, SlotRepr::Int]
    );
    let layout = info.layout.as_ref().unwrap().layout();
    // (With the Narrow header, which has no owner word, a type that can form cycles keeps its
    // cycle-collector index in one more word.)
    let size = if cfg!(feature = "narrow-header") {
        40
    } else {
        32
    };
    assert_eq!((layout.size(), layout.align()), (size, 8));

    let leaf = Record::new(node, vec![Value::None, Value::Int(7)]).unwrap();
    let pair = Record::new(node, vec![Value::Object(leaf.clone()), Value::Int(1)]).unwrap();
    let at = &info.layout.as_ref().unwrap().slots;
    // SAFETY: both are records of `node`; the slots are its Ref and Int slots.
    unsafe {
        assert!(slot_with_ref(&pair, at[0], |c| c.unwrap().ptr_eq(&leaf)));
        assert_eq!(slot_int(&leaf, at[1]), 7);
    }
    // The dynamic API sees the same values.
    assert_eq!(record_get(&pair, 0).unwrap(), Value::Object(leaf.clone()));
    record_set(&pair, 0, Value::None).unwrap();
    assert_eq!(leaf.strong_count(), 1);
    // A non-node is refused by the typed slot, and nothing changes.
    let other = register_record_type("test.layout.Other", None, vec![]).unwrap();
    let o = Record::new(other, vec![]).unwrap();
    assert!(matches!(
        record_set(&pair, 0, Value::Object(o)),
        Err(Error::Type(_))
    ));
    assert_eq!(record_get(&pair, 0).unwrap(), Value::None);
}

#[test]
fn each_kind_gets_its_form_and_round_trips() {
    let t = register_record_type(
        "test.layout.All",
        None,
        vec![
            FieldSpec::new("b", FieldKind::Bool),
            FieldSpec::new("f", FieldKind::Float),
            FieldSpec::new("s", FieldKind::Str),
            FieldSpec::new("any", FieldKind::Object(ANY_OBJECT)),
            FieldSpec::new("oi", opt(FieldKind::Int)),
        ],
    )
    .unwrap();
    assert_eq!(
        reprs(t),
        [
            SlotRepr::Bool,
            SlotRepr::Float,
            SlotRepr::Dyn,
            SlotRepr::Dyn,
            SlotRepr::Dyn
        ]
    );
    let any = Record::new(
        register_record_type("test.layout.Any", None, vec![]).unwrap(),
        vec![],
    )
    .unwrap();
    let values = vec![
        Value::Bool(true),
        Value::Int(2), // widens
        Value::from("x"),
        Value::Object(any.clone()),
        Value::None,
    ];
    let r = Record::new(t, values).unwrap();
    assert_eq!(record_get(&r, 0).unwrap(), Value::Bool(true));
    assert_eq!(record_get(&r, 1).unwrap(), Value::Float(2.0));
    assert_eq!(record_get(&r, 2).unwrap(), Value::from("x"));
    record_set(&r, 0, Value::Bool(false)).unwrap();
    record_set(&r, 1, Value::Float(-0.5)).unwrap();
    record_set(&r, 4, Value::Int(3)).unwrap();
    assert_eq!(record_get(&r, 0).unwrap(), Value::Bool(false));
    assert_eq!(record_get(&r, 1).unwrap(), Value::Float(-0.5));
    assert_eq!(record_get(&r, 4).unwrap(), Value::Int(3));
    drop(r);
    assert_eq!(any.strong_count(), 1);
}

#[test]
fn a_subtype_keeps_its_parents_slots_in_place() {
    let base = register_record_type(
        "test.layout.Base",
        None,
        vec![FieldSpec::new("a", FieldKind::Bool)],
    )
    .unwrap();
    let sub = register_record_type(
        "test.layout.Sub",
        Some(base),
        vec![FieldSpec::new("n", opt(FieldKind::Object(base))).with_default(Value::None)],
    )
    .unwrap();
    let b = type_info(base).unwrap().layout.clone().unwrap();
    let s = type_info(sub).unwrap().layout.clone().unwrap();
    assert_eq!(s.slots[0], b.slots[0]);
    assert_eq!(s.slots[1].offset, 24); // the Bool at 16, the pointer aligned to 8
}

#[test]
fn a_construction_that_fails_halfway_leaves_nothing_behind() {
    let node = register_record_type(
        "test.layout.Pair",
        None,
        vec![
            FieldSpec::new("x", opt(FieldKind::Object(SELF_TYPE))),
            FieldSpec::new("s", FieldKind::Str),
        ],
    )
    .unwrap();
    let info = type_info(node).unwrap();
    let live = info.live_objects();
    let child = Record::new(node, vec![Value::None, Value::from("c")]).unwrap();
    let mut b = RecordBuilder::new(node).unwrap();
    b.set(0, Value::Object(child.clone())).unwrap();
    assert_eq!(child.strong_count(), 2);
    assert!(matches!(b.set(1, Value::Int(1)), Err(Error::Type(_))));
    assert!(matches!(b.set(0, Value::None), Err(Error::Value(_)))); // set twice
    assert_eq!(b.missing().collect::<Vec<_>>(), [1]);
    drop(b); // unfinished: the child's reference is given back, the block freed
    assert_eq!(child.strong_count(), 1);
    assert_eq!(info.live_objects(), live + 1);
    let e = RecordBuilder::new(node).unwrap().finish().unwrap_err();
    assert!(e.to_string().contains("missing field x"), "{e}");
    drop(child);
    assert_eq!(info.live_objects(), live);
}

#[test]
fn many_fields_use_the_large_set() {
    let specs = (0..70)
        .map(|i| FieldSpec::new(format!("f{i}"), FieldKind::Int).with_default(i))
        .collect();
    let t = register_record_type("test.layout.Wide", None, specs).unwrap();
    let mut b = RecordBuilder::new(t).unwrap();
    b.set(69, Value::Int(-1)).unwrap();
    assert!(b.is_set(69) && !b.is_set(68));
    let r: ObjAny = b.finish().unwrap();
    assert_eq!(record_get(&r, 69).unwrap(), Value::Int(-1));
    assert_eq!(record_get(&r, 68).unwrap(), Value::Int(68));
}

#[test]
fn an_unresolved_reference_reads_none_until_it_is_stored() {
    let t = register_record_type(
        "test.layout.Strict",
        None,
        vec![
            FieldSpec::new("peer", FieldKind::Object(SELF_TYPE)),
            FieldSpec::new("n", FieldKind::Int),
        ],
    )
    .unwrap();
    let mut b = RecordBuilder::new(t).unwrap();
    assert!(matches!(b.set_unresolved(1), Err(Error::Value(_)))); // not a reference slot
    b.set_unresolved(0).unwrap();
    assert!(matches!(b.set_unresolved(0), Err(Error::Value(_)))); // already set
    b.set(1, Value::Int(1)).unwrap();
    let a = b.finish().unwrap();
    assert_eq!(record_get(&a, 0).unwrap(), Value::None);
    // The host stores the object once it exists (here: the record itself, a self-loop).
    record_set(&a, 0, Value::Object(a.clone())).unwrap();
    assert_eq!(record_get(&a, 0).unwrap(), Value::Object(a.clone()));
    let mut b = RecordBuilder::new(t).unwrap();
    b.set_unresolved(0).unwrap();
    b.set(1, Value::Int(2)).unwrap();
    let c = b.finish().unwrap();
    record_set(&a, 0, Value::Object(c.clone())).unwrap();
    assert_eq!(a.strong_count(), 1); // the self-reference was replaced and released
    assert_eq!(c.strong_count(), 2);
}

#[test]
fn a_rust_type_cannot_have_a_record_parent() {
    // Its objects would pass a record field's owner check and be read at the record's offsets.
    let record = register_record_type("test.layout.RecordParent", None, vec![]).unwrap();
    let r = std::panic::catch_unwind(|| {
        tether_runtime::register_rust_type("test.layout.RustChild", Some(record), vec![])
    });
    assert!(r.is_err());
    assert!(tether_runtime::type_index_of("test.layout.RustChild").is_none());
}

#[test]
fn a_weak_field_does_not_keep_its_object_and_reads_none_after_it_died() {
    let node = register_record_type(
        "test.layout.TreeNode",
        None,
        vec![
            FieldSpec::new("parent", FieldKind::Weak(SELF_TYPE)).with_default(Value::None),
            FieldSpec::new("child", opt(FieldKind::Object(SELF_TYPE))).with_default(Value::None),
        ],
    )
    .unwrap();
    assert_eq!(
        reprs(node),
        [SlotRepr::Weak, SlotRepr::Ref { optional: true }]
    );
    let live = type_info(node).unwrap().live_objects();
    let parent = Record::new(node, vec![]).unwrap();
    let child = Record::new(node, vec![Value::Object(parent.clone())]).unwrap();
    record_set(&parent, 1, Value::Object(child.clone())).unwrap(); // a cycle, half of it weak
    assert_eq!(parent.strong_count(), 1); // the weak field holds no strong count
    assert_eq!(
        record_get(&child, 0).unwrap(),
        Value::Object(parent.clone())
    );
    assert!(matches!(
        record_set(&child, 0, Value::Int(1)),
        Err(Error::Type(_))
    ));
    drop(parent); // the only strong reference: the parent and, through it, nothing else
    assert_eq!(record_get(&child, 0).unwrap(), Value::None);
    assert_eq!(child.strong_count(), 1);
    drop(child);
    assert_eq!(type_info(node).unwrap().live_objects(), live);
}

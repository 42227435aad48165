//! Types, records, values and functions.

mod common;

use common::*;
use core::ffi::c_void;
use core::ptr::NonNull;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tether_runtime::{
    field, field_get, field_set, get_global, list_globals, object_type, record_get,
    record_load_unchecked, record_replace_unchecked, record_set, register_global,
    register_global_override, register_record_type, register_record_type_with, remove_global,
    type_index_of, type_info, Error, FieldAccess, FieldKind, FieldSpec, Function, HostHandle,
    HostVTable, ObjAny, ObjRef, Object, Record, RecordOptions, ReturnPolicy, TypeKind, Value,
    ANY_OBJECT,
};

// ---------------------------------------------------------------- Rust types

struct Vec2 {
    x: f64,
    y: AtomicI64,
    label: Mutex<String>,
}

object_type!(
    Vec2,
    "test.types.Vec2",
    fields = [
        field!(Vec2, "x", FieldKind::Float, get = |v| Value::Float(v.x)),
        field!(
            Vec2,
            "y",
            FieldKind::Int,
            get = |v| Value::Int(v.y.load(Ordering::Relaxed)),
            set = |v, n| {
                v.y.store(n.as_int()?, Ordering::Relaxed);
                Ok(())
            },
            default = 0
        ),
        field!(
            Vec2,
            "label",
            FieldKind::Str,
            get = |v| Value::from(v.label.lock().unwrap().as_str()),
            set = |v, s| {
                *v.label.lock().unwrap() = s.as_str()?.to_owned();
                Ok(())
            }
        ),
    ]
);

struct Vec3(#[allow(dead_code)] Vec2);
object_type!(Vec3, "test.types.Vec3", parent = Vec2);

fn vec2() -> ObjRef<Vec2> {
    ObjRef::new(Vec2 {
        x: 1.5,
        y: AtomicI64::new(2),
        label: Mutex::new("a".into()),
    })
}

#[test]
fn rust_type_registration_and_reflection() {
    let _s = serial();
    let ti = Vec2::type_index();
    assert_eq!(Vec2::type_index(), ti, "registered once");
    let info = type_info(ti).unwrap();
    assert_eq!((info.index, info.name.as_str()), (ti, "test.types.Vec2"));
    assert_eq!(
        (info.kind, info.parent, info.frozen),
        (TypeKind::Rust, None, false)
    );
    assert_eq!(type_index_of("test.types.Vec2"), Some(ti));
    let names: Vec<_> = info.fields.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, ["x", "y", "label"]);
    assert_eq!(info.fields[1].default, Some(Value::Int(0)));
    assert!(matches!(
        info.fields[0].access,
        FieldAccess::Accessor { set: None, .. }
    ));
    assert_eq!(info.field_index("label"), Some(2));
    assert_eq!(Vec3::type_info().parent, Some(ti));
    assert_eq!(Vec3::type_info().parent_info().unwrap().index, ti);
    assert!(type_index_of("test.types.nope").is_none());
}

#[test]
fn rust_fields_get_and_set() {
    let _s = serial();
    let v = vec2();
    let o = v.as_any();
    assert_eq!(field_get(o, 0).unwrap(), Value::Float(1.5));
    field_set(o, 1, Value::Int(9)).unwrap();
    assert_eq!(v.y.load(Ordering::Relaxed), 9);
    field_set(o, 2, Value::from("hello")).unwrap();
    assert_eq!(field_get(o, 2).unwrap(), Value::from("hello"));
    assert!(matches!(
        field_set(o, 0, Value::Float(2.0)),
        Err(Error::Frozen(_))
    ));
    let e = field_set(o, 1, Value::from("nine")).unwrap_err();
    assert_eq!(e.to_string(), "type error: expected int, got str");
    assert_eq!(v.y.load(Ordering::Relaxed), 9, "kept on error");
    assert!(matches!(field_get(o, 3), Err(Error::NotFound(_))));
}

#[test]
fn host_data_attaches_once() {
    let _s = serial();
    struct Klass;
    object_type!(Klass, "test.types.Klass");
    let info = Klass::type_info();
    assert!(info.host_data().is_null());
    let a = 1u8;
    let b = 2u8;
    let pa = &a as *const u8 as *mut c_void;
    let pb = &b as *const u8 as *mut c_void;
    assert_eq!(info.init_host_data(pa), pa);
    assert_eq!(info.init_host_data(pb), pa);
    info.set_host_data(std::ptr::null_mut());
}

#[test]
#[should_panic(expected = "registered twice")]
fn rust_type_names_are_unique() {
    let _s = serial();
    struct One;
    struct Two;
    object_type!(One, "test.types.Same");
    object_type!(Two, "test.types.Same");
    let _ = One::type_index();
    let _ = Two::type_index();
}

// ---------------------------------------------------------------- records

fn point_type() -> u32 {
    static T: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    *T.get_or_init(|| {
        register_record_type(
            "test.types.Point",
            None,
            vec![
                FieldSpec::new("x", FieldKind::Float),
                FieldSpec::new("y", FieldKind::Float).with_default(0.0),
                FieldSpec::new("tag", FieldKind::Optional(Box::new(FieldKind::Str)))
                    .with_default(Value::None),
            ],
        )
        .unwrap()
    })
}

#[test]
fn records_construct_check_and_default() {
    let _s = serial();
    let _leak = LeakCheck::new();
    let t = point_type();
    let info = type_info(t).unwrap();
    assert_eq!(info.kind, TypeKind::Record);
    assert!(matches!(info.fields[2].access, FieldAccess::Inline(2)));

    let p = Record::new(t, vec![Value::Int(3)]).unwrap(); // int widens to float
    assert!(Record::is_record(&p));
    assert_eq!(Record::len(&p).unwrap(), 3);
    assert_eq!(record_get(&p, 0).unwrap(), Value::Float(3.0));
    assert_eq!(record_get(&p, 1).unwrap(), Value::Float(0.0));
    assert_eq!(record_get(&p, 2).unwrap(), Value::None);
    assert_eq!(field_get(&p, 0).unwrap(), Value::Float(3.0));

    let e = Record::new(t, vec![]).unwrap_err();
    assert_eq!(
        e.to_string(),
        "type error: test.types.Point: missing field x"
    );
    let e = Record::new(t, vec![Value::from("x")]).unwrap_err();
    assert_eq!(
        e.to_string(),
        "type error: test.types.Point.x: expected float, got str"
    );
    let too_many = vec![
        Value::Float(1.0),
        Value::Float(2.0),
        Value::None,
        Value::None,
    ];
    assert!(matches!(Record::new(t, too_many), Err(Error::Type(_))));
    assert!(matches!(
        Record::new(u32::MAX - 7, vec![]),
        Err(Error::NotFound(_))
    ));
    assert!(matches!(
        Record::new(Vec2::type_index(), vec![]),
        Err(Error::Type(_))
    ));
    assert!(matches!(
        record_get(vec2().as_any(), 0),
        Err(Error::Type(_))
    ));
    assert!(matches!(record_get(&p, 3), Err(Error::NotFound(_))));
}

#[test]
fn record_set_checks_and_keeps_old_value_on_error() {
    let _s = serial();
    let _leak = LeakCheck::new();
    let t = point_type();
    let p = Record::new(
        t,
        vec![Value::Float(1.0), Value::Float(2.0), Value::from("a")],
    )
    .unwrap();
    record_set(&p, 2, Value::from("b")).unwrap();
    assert_eq!(record_get(&p, 2).unwrap(), Value::from("b"));
    record_set(&p, 2, Value::None).unwrap();
    let e = record_set(&p, 2, Value::Int(1)).unwrap_err();
    assert_eq!(
        e.to_string(),
        "type error: test.types.Point.tag: expected Optional[str], got int"
    );
    assert_eq!(record_get(&p, 2).unwrap(), Value::None);
    assert!(matches!(
        record_set(&p, 9, Value::None),
        Err(Error::NotFound(_))
    ));
}

#[test]
fn record_fields_own_their_values() {
    let _s = serial();
    let _leak = LeakCheck::new();
    let holder = register_record_type(
        "test.types.Holder",
        None,
        vec![FieldSpec::new(
            "item",
            FieldKind::Object(Tracked::type_index()),
        )],
    )
    .unwrap();
    let (t1, d1) = Tracked::new();
    let (t2, d2) = Tracked::new();
    let h = Record::new(holder, vec![Value::from(ObjRef::new(t1))]).unwrap();
    // The old value is dropped after the new one is in place.
    record_set(&h, 0, Value::from(ObjRef::new(t2))).unwrap();
    assert_eq!((drops(&d1), drops(&d2)), (1, 0));
    let got = record_get(&h, 0).unwrap().to_object::<Tracked>().unwrap();
    assert_eq!(got.data, [7; 8]);
    drop(got);
    // Object(t) refuses other types.
    let e = record_set(&h, 0, Value::from(vec2())).unwrap_err();
    assert_eq!(
        e.to_string(),
        "type error: test.types.Holder.item: expected test.Tracked, got test.types.Vec2"
    );
    drop(h); // the record's death drops its fields
    assert_eq!(drops(&d2), 1);
}

#[test]
fn record_inheritance_and_subtype_fields() {
    let _s = serial();
    let _leak = LeakCheck::new();
    let base = register_record_type(
        "test.types.Base",
        None,
        vec![FieldSpec::new("a", FieldKind::Int)],
    )
    .unwrap();
    let derived = register_record_type(
        "test.types.Derived",
        Some(base),
        vec![FieldSpec::new("b", FieldKind::Any).with_default(Value::None)],
    )
    .unwrap();
    let info = type_info(derived).unwrap();
    assert_eq!(info.parent, Some(base));
    assert_eq!(info.fields.len(), 2);
    assert!(matches!(info.fields[1].access, FieldAccess::Inline(1)));
    let d = Record::new(derived, vec![Value::Int(1)]).unwrap();
    assert!(d.is_instance(base) && d.is_instance(ANY_OBJECT) && !d.is_instance(point_type()));

    // A field of kind Object(base) accepts a derived record.
    let slot = register_record_type(
        "test.types.Slot",
        None,
        vec![FieldSpec::new("r", FieldKind::Object(base))],
    )
    .unwrap();
    let s = Record::new(slot, vec![Value::Object(d.clone())]).unwrap();
    assert!(record_get(&s, 0).unwrap().as_object().unwrap().ptr_eq(&d));

    // Schema errors.
    assert!(matches!(
        register_record_type(
            "test.types.Dup",
            Some(base),
            vec![FieldSpec::new("a", FieldKind::Int)]
        ),
        Err(Error::Value(_))
    ));
    assert!(matches!(
        register_record_type("test.types.BadParent", Some(Vec2::type_index()), vec![]),
        Err(Error::Type(_))
    ));
    assert!(matches!(
        register_record_type("test.types.NoParent", Some(u32::MAX - 3), vec![]),
        Err(Error::NotFound(_))
    ));
    assert!(matches!(
        register_record_type(
            "test.types.BadDefault",
            None,
            vec![FieldSpec::new("a", FieldKind::Int).with_default("x")]
        ),
        Err(Error::Type(_))
    ));
    assert!(matches!(
        register_record_type("test.types.Vec2", None, vec![]),
        Err(Error::Value(_))
    ));
}

#[test]
fn record_types_can_be_redefined() {
    let _s = serial();
    let a = register_record_type("test.types.Redefined", None, vec![]).unwrap();
    let b = register_record_type(
        "test.types.Redefined",
        None,
        vec![FieldSpec::new("n", FieldKind::Int)],
    )
    .unwrap();
    assert_ne!(a, b);
    assert_eq!(type_index_of("test.types.Redefined"), Some(b));
    assert_eq!(Record::len(&Record::new(a, vec![]).unwrap()).unwrap(), 0);
}

#[test]
fn frozen_records_refuse_writes() {
    let _s = serial();
    let _leak = LeakCheck::new();
    let frozen = RecordOptions { frozen: true };
    let t = register_record_type_with(
        "test.types.Frozen",
        None,
        vec![FieldSpec::new("v", FieldKind::Int)],
        frozen,
    )
    .unwrap();
    let r = Record::new(t, vec![Value::Int(1)]).unwrap();
    let e = record_set(&r, 0, Value::Int(2)).unwrap_err();
    assert!(matches!(e, Error::Frozen(_)));
    assert_eq!(
        e.to_string(),
        "cannot assign: test.types.Frozen is frozen (field v)"
    );
    assert_eq!(record_get(&r, 0).unwrap(), Value::Int(1));
    // Frozen and mutable types do not mix in a hierarchy.
    assert!(matches!(
        register_record_type("test.types.Thawed", Some(t), vec![]),
        Err(Error::Value(_))
    ));
    assert!(register_record_type_with("test.types.Frozen2", Some(t), vec![], frozen).is_ok());
}

#[test]
fn unchecked_record_access_is_locked_and_counted() {
    let _s = serial();
    let _leak = LeakCheck::new();
    let t = point_type();
    let before = tether_runtime::type_info(t).unwrap().live_objects();
    let p = Record::new(t, vec![Value::Float(1.0)]).unwrap();
    assert_eq!(
        tether_runtime::type_info(t).unwrap().live_objects(),
        before + 1
    );
    // SAFETY: `p` is a record of `t`, which has a field 0 of kind float.
    unsafe {
        assert_eq!(record_load_unchecked(&p, 0), Value::Float(1.0));
        let old = record_replace_unchecked(&p, 0, Value::Float(5.0));
        assert_eq!(old, Value::Float(1.0));
        assert_eq!(record_load_unchecked(&p, 0), Value::Float(5.0));
    }
    drop(p);
    assert_eq!(tether_runtime::type_info(t).unwrap().live_objects(), before);
}

#[test]
fn records_under_threads() {
    let _s = serial();
    let _leak = LeakCheck::new();
    let t = point_type();
    let p = Record::new(t, vec![Value::Float(0.0)]).unwrap();
    std::thread::scope(|s| {
        for i in 0..4 {
            let p = &p;
            s.spawn(move || {
                for j in 0..iters(200, 5) {
                    record_set(p, 2, Value::from(format!("{i}-{j}"))).unwrap();
                    let v = record_get(p, 2).unwrap();
                    assert!(v.as_str().unwrap().contains('-'));
                }
            });
        }
    });
}

// ---------------------------------------------------------------- values

#[test]
fn value_conversions_and_errors() {
    let _s = serial();
    assert!(Value::from(true).as_bool().unwrap());
    assert_eq!(Value::from(7u8), Value::Int(7));
    assert_eq!(Value::from(2.5f32), Value::Float(2.5));
    assert_eq!(Value::from(String::from("s")).as_str().unwrap(), "s");
    assert_eq!(Value::from(&b"xy"[..]).as_bytes().unwrap(), b"xy");
    assert_eq!(Value::from(vec![1u8]).kind_name(), "bytes");
    assert!(Value::default().is_none());
    let e = Value::Float(1.0).as_int().unwrap_err();
    assert_eq!(e.to_string(), "type error: expected int, got float");
    let e = Value::Int(1).as_bool().unwrap_err();
    assert_eq!(e.to_string(), "type error: expected bool, got int");
    assert!(Value::None.as_object().is_err());
    let s: String = Value::from("abc").try_into().unwrap();
    assert_eq!(s, "abc");
    let f: f64 = Value::Int(2).try_into().unwrap();
    assert_eq!(f, 2.0);
    let r: Result<i64, _> = Value::from("x").try_into();
    assert!(matches!(r, Err(Error::Type(_))));
    let b: Arc<[u8]> = Value::from(vec![1u8, 2]).try_into().unwrap();
    assert_eq!(&*b, &[1, 2]);
    let v = vec2();
    let val = Value::from(v.clone());
    assert_eq!(val.kind_name(), "test.types.Vec2");
    let back: ObjRef<Vec2> = val.clone().try_into().unwrap();
    assert!(back.ptr_eq(&v));
    let wrong: Result<ObjRef<Tracked>, _> = val.clone().try_into();
    assert_eq!(
        wrong.err().unwrap().to_string(),
        "type error: expected test.Tracked, got test.types.Vec2"
    );
    let any: ObjAny = val.try_into().unwrap();
    assert!(any.ptr_eq(v.as_any()));
}

#[test]
fn functions_are_values() {
    let _s = serial();
    let f = Function::fresh(|_| Ok(Value::None));
    let v = Value::from(f.clone().into_any()); // normalized to Value::Function
    assert!(matches!(v, Value::Function(_)));
    assert_eq!(v.kind_name(), "function");
    assert!(v.as_function().unwrap().ptr_eq(&f));
    assert!(v.as_object().unwrap().ptr_eq(f.as_any()));
    assert!(FieldKind::Object(ANY_OBJECT).check(&v).is_ok());
    assert!(FieldKind::Object(Function::type_index()).check(&v).is_ok());
    assert!(FieldKind::Object(Vec2::type_index()).check(&v).is_err());
    assert!(FieldKind::Any.check(&v).is_ok());
    assert_eq!(f.policy(), ReturnPolicy::Fresh);
}

static HOST_RELEASES: AtomicUsize = AtomicUsize::new(0);
unsafe fn host_release(_: NonNull<c_void>) {
    HOST_RELEASES.fetch_add(1, Ordering::SeqCst);
}
static HOST_VT: HostVTable = HostVTable { drop: host_release };

#[test]
fn host_handles_share_one_host_reference() {
    let _s = serial();
    static mut PYOBJ: u64 = 0;
    let p = NonNull::new(&raw mut PYOBJ).unwrap().cast::<c_void>();
    HOST_RELEASES.store(0, Ordering::SeqCst);
    // SAFETY: a static address, a thread-safe vtable, one reference handed over.
    let h = unsafe { HostHandle::from_raw(p, &HOST_VT) };
    let v = Value::Opaque(h);
    let copies: Vec<Value> = (0..3).map(|_| v.clone()).collect();
    assert_eq!(v.as_opaque().unwrap().share_count(), 4);
    assert_eq!(v.as_opaque().unwrap().as_ptr(), p);
    assert_eq!(copies[0], v, "host handles compare by identity");
    let err = Error::Host(v.as_opaque().unwrap().clone());
    assert_eq!(err.to_string(), "host error");
    // Clones on another thread never call the host; only the last drop does, once.
    let t = std::thread::spawn(move || drop((copies, err)));
    t.join().unwrap();
    assert_eq!(HOST_RELEASES.load(Ordering::SeqCst), 0);
    drop(v);
    assert_eq!(HOST_RELEASES.load(Ordering::SeqCst), 1);
}

// ---------------------------------------------------------------- functions

#[test]
fn function_call_and_policies() {
    let _s = serial();
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let concat = Function::new(ReturnPolicy::Tied, move |args| {
        c.fetch_add(1, Ordering::Relaxed);
        let mut s = String::new();
        for a in args {
            s.push_str(a.as_str()?);
        }
        Ok(Value::from(s))
    });
    assert_eq!(concat.policy(), ReturnPolicy::Tied);
    let out = concat.call(&[Value::from("a"), Value::from("b")]).unwrap();
    assert_eq!(out, Value::from("ab"));
    let e = concat.call(&[Value::Int(1)]).unwrap_err();
    assert_eq!(e.to_string(), "type error: expected str, got int");
    assert_eq!(calls.load(Ordering::Relaxed), 2);
    assert_eq!(
        Function::tied(|_| Ok(Value::None)).policy(),
        ReturnPolicy::Tied
    );
}

#[test]
fn global_registry() {
    let _s = serial();
    let f = Function::tied(|a| Ok(Value::Int(a.len() as i64)));
    register_global("test.types.argc", f.clone()).unwrap();
    let g = get_global("test.types.argc").unwrap();
    assert!(g.ptr_eq(&f));
    assert_eq!(g.call(&[Value::None, Value::None]).unwrap(), Value::Int(2));
    let dup = register_global("test.types.argc", Function::tied(|_| Ok(Value::None)));
    assert!(matches!(dup, Err(Error::Value(_))));
    let replacement = Function::fresh(|_| Ok(Value::Int(-1)));
    let old = register_global_override("test.types.argc", replacement.clone()).unwrap();
    assert!(old.ptr_eq(&f));
    assert!(get_global("test.types.argc").unwrap().ptr_eq(&replacement));
    assert!(list_globals().contains(&"test.types.argc".to_owned()));
    assert!(get_global("test.types.missing").is_none());
    assert!(remove_global("test.types.argc")
        .unwrap()
        .ptr_eq(&replacement));
    assert!(get_global("test.types.argc").is_none());
}

#[test]
fn field_kind_names_and_checks() {
    let _s = serial();
    assert_eq!(FieldKind::Bytes.name(), "bytes");
    assert_eq!(FieldKind::Object(ANY_OBJECT).name(), "object");
    assert_eq!(
        FieldKind::Object(Vec2::type_index()).name(),
        "test.types.Vec2"
    );
    assert_eq!(
        FieldKind::Optional(Box::new(FieldKind::Float))
            .coerce(Value::Int(1))
            .unwrap(),
        Value::Float(1.0)
    );
    assert!(FieldKind::Bool.check(&Value::Int(1)).is_err());
    assert!(FieldKind::Object(Vec2::type_index())
        .check(&Value::from(ObjRef::new(Vec3(Vec2 {
            x: 0.0,
            y: AtomicI64::new(0),
            label: Mutex::new(String::new()),
        }))))
        .is_ok());
}

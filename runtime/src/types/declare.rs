//! Declaring types: [`register_rust_type`] (what `object_type!` calls) and
//! [`register_record_type`] / [`register_record_type_with`] (schemas at run time).
//!
//! On the types floor above `kind` (a record field's default is coerced to its kind) and
//! `registry`; uses `schema` and `crate::error`. Upholds invariant 3 of `crate::types` (a parent
//! is registered before its child) and, for records, that a record type's parent is a record
//! type with the same frozenness and that field names are unique.

use super::layout::{RecordLayout, SlotRepr};
use super::registry::{lock, publish, type_info, TypeInfo};
use super::schema::{
    FieldAccess, FieldInfo, FieldKind, FieldSpec, RecordOptions, TypeKind, ANY_OBJECT, SELF_TYPE,
};
use crate::error::Error;

/// Registers a Rust type; what [`object_type!`](crate::object_type) calls (once per type).
///
/// # Panics
/// If `name` is already registered (two Rust types may not share a name), the parent is not a
/// registered Rust type, or the registry is full: programming errors, found at the first use of
/// the type.
pub fn register_rust_type(name: &str, parent: Option<u32>, fields: Vec<FieldInfo>) -> u32 {
    let mut reg = lock();
    assert!(
        !reg.by_name.contains_key(name),
        "tether_runtime: type name {name:?} is registered twice"
    );
    if let Some(p) = parent {
        assert!(
            p < reg.next,
            "tether_runtime: parent of {name:?} is not registered"
        );
        // A Rust type's layout is its own: as a subtype of a record type its objects would
        // pass a record field's owner check and be read at the record's slot offsets.
        assert!(
            type_info(p).is_some_and(|i| i.kind == TypeKind::Rust),
            "tether_runtime: the parent of Rust type {name:?} is a record type"
        );
    }
    let info = TypeInfo::unpublished(name, parent, fields, TypeKind::Rust, false, None);
    match publish(&mut reg, info) {
        Ok(i) => i,
        Err(e) => panic!("{e}"),
    }
}

/// Registers a record type: `fields` are added after the parent's (a record type too). A field
/// of kind `Object(SELF_TYPE)` (possibly optional) refers to the type being registered.
///
/// Each field is stored in the form its kind allows ([`SlotRepr`]): `int`, `float` and `bool`
/// as plain 8/8/1-byte atomics, an object of a record type (this one included) as one pointer,
/// anything else as a [`Value`](crate::Value).
///
/// Registering a name again (e.g. a class re-defined in a REPL) makes the name refer to the new
/// type; the old one stays valid for its objects.
///
/// # Errors
/// `Error::NotFound` for an unknown parent, `Error::Type` if it is not a record type or a
/// default does not fit its field, `Error::Value` for a duplicate field name, a frozen/non-frozen
/// mix with the parent, a name taken by a Rust type, or a full registry.
///
/// ```
/// use tether_runtime::{register_record_type, type_info, FieldKind, FieldSpec};
/// let base = register_record_type("doc.Base", None, vec![FieldSpec::new("a", FieldKind::Int)]).unwrap();
/// let derived = register_record_type(
///     "doc.Derived",
///     Some(base),
///     vec![FieldSpec::new("b", FieldKind::Str).with_default("")],
/// )
/// .unwrap();
/// let names: Vec<_> = type_info(derived).unwrap().fields.iter().map(|f| f.name.as_str()).collect();
/// assert_eq!(names, ["a", "b"]);
/// ```
pub fn register_record_type(
    name: &str,
    parent: Option<u32>,
    fields: Vec<FieldSpec>,
) -> Result<u32, Error> {
    register_record_type_with(name, parent, fields, RecordOptions::default())
}

/// [`register_record_type`] with options (e.g. frozen).
///
/// # Errors
/// As for [`register_record_type`].
pub fn register_record_type_with(
    name: &str,
    parent: Option<u32>,
    fields: Vec<FieldSpec>,
    options: RecordOptions,
) -> Result<u32, Error> {
    let mut parent_layout = None;
    let mut all: Vec<FieldInfo> = match parent {
        None => Vec::new(),
        Some(p) => {
            let pinfo = type_info(p)
                .ok_or_else(|| Error::NotFound(format!("parent type index {p} of {name}")))?;
            if pinfo.kind != TypeKind::Record {
                return Err(Error::Type(format!(
                    "parent of record type {name} must be a record type, got {}",
                    pinfo.name
                )));
            }
            if pinfo.frozen != options.frozen {
                return Err(Error::Value(format!(
                    "record type {name} cannot be {} when its parent {} is {}",
                    if options.frozen { "frozen" } else { "mutable" },
                    pinfo.name,
                    if pinfo.frozen { "frozen" } else { "mutable" },
                )));
            }
            parent_layout = pinfo.layout.as_ref();
            pinfo.fields.clone()
        }
    };
    let first_own = all.len();
    for spec in fields {
        if all.iter().any(|f| f.name == spec.name) {
            return Err(Error::Value(format!(
                "duplicate field {} in record type {name}",
                spec.name
            )));
        }
        let default = match spec.default {
            Some(d) => Some(spec.kind.coerce(d).map_err(|e| match e {
                Error::Type(m) => Error::Type(format!("default of field {}: {m}", spec.name)),
                other => other,
            })?),
            None => None,
        };
        let slot = all.len();
        all.push(FieldInfo {
            name: spec.name,
            kind: spec.kind,
            default,
            access: FieldAccess::Inline(slot),
        });
    }
    let reprs: Vec<SlotRepr> = all[first_own..].iter().map(|f| repr_of(&f.kind)).collect();
    let mut layout = RecordLayout::extend(parent_layout, &reprs)
        .map_err(|_| Error::Value(format!("record type {name} has too many fields")))?;
    layout.holds_objects |= all[first_own..].iter().any(|f| f.kind.holds_objects());
    if layout.holds_objects && cfg!(feature = "narrow-header") {
        // (Wide headers keep the registry index in the owner word: `crate::tracked`.)
        layout
            .add_gc_slot()
            .map_err(|_| Error::Value(format!("record type {name} has too many fields")))?;
    }
    let mut reg = lock();
    if let Some(&existing) = reg.by_name.get(name) {
        if type_info(existing).is_some_and(|t| t.kind != TypeKind::Record) {
            return Err(Error::Value(format!(
                "type name {name} belongs to a Rust type"
            )));
        }
    }
    // The index `publish` will give this type (the lock is held from here to there).
    let me = reg.next;
    for f in &mut all[first_own..] {
        f.kind = resolve_self(core::mem::replace(&mut f.kind, FieldKind::Any), me);
    }
    let info = TypeInfo::unpublished(
        name,
        parent,
        all,
        TypeKind::Record,
        options.frozen,
        Some(layout),
    );
    publish(&mut reg, info)
}

/// The stored form of a field of kind `kind` (see [`register_record_type`]).
fn repr_of(kind: &FieldKind) -> SlotRepr {
    let is_record = |t: u32| {
        t == SELF_TYPE
            || (t != ANY_OBJECT && type_info(t).is_some_and(|i| i.kind == TypeKind::Record))
    };
    match kind {
        FieldKind::Int => SlotRepr::Int,
        FieldKind::Float => SlotRepr::Float,
        FieldKind::Bool => SlotRepr::Bool,
        FieldKind::Object(t) if is_record(*t) => SlotRepr::Ref { optional: false },
        FieldKind::Weak(_) => SlotRepr::Weak,
        FieldKind::Optional(inner) => match **inner {
            FieldKind::Object(t) if is_record(t) => SlotRepr::Ref { optional: true },
            _ => SlotRepr::Dyn,
        },
        _ => SlotRepr::Dyn,
    }
}

/// `kind` with [`SELF_TYPE`] replaced by the new type's index `me`.
fn resolve_self(kind: FieldKind, me: u32) -> FieldKind {
    match kind {
        FieldKind::Object(SELF_TYPE) => FieldKind::Object(me),
        FieldKind::Weak(SELF_TYPE) => FieldKind::Weak(me),
        FieldKind::Optional(k) => FieldKind::Optional(Box::new(resolve_self(*k, me))),
        k => k,
    }
}

//! Reflection: reading and writing any object's field by index, [`field_get`] and
//! [`field_set`], whether it is a record slot or a Rust type's accessor.
//!
//! Top of the types floor: uses `record` (inline slots), `kind` (the write's kind check),
//! `object` (`ObjAny::type_info`), `registry`, `schema`, `crate::value` and `crate::error`.

use super::record::{record_get, record_set};
use super::registry::TypeInfo;
use super::schema::FieldAccess;
use crate::error::Error;
use crate::object::ObjAny;
use crate::value::Value;

/// Reads field `index` of `obj` generically (records: the inline slot; Rust types: the getter).
///
/// # Errors
/// `Error::NotFound` for an index past the type's fields.
///
/// ```
/// use tether_runtime::{field_get, field_set, register_record_type, FieldKind, FieldSpec, Record, Value};
/// let t = register_record_type("doc.field_get.P", None, vec![FieldSpec::new("x", FieldKind::Int)]).unwrap();
/// let p = Record::new(t, vec![Value::Int(1)]).unwrap();
/// field_set(&p, 0, Value::Int(2)).unwrap();
/// assert_eq!(field_get(&p, 0).unwrap(), Value::Int(2));
/// ```
pub fn field_get(obj: &ObjAny, index: usize) -> Result<Value, Error> {
    let info = obj.type_info();
    match info.fields.get(index).map(|f| &f.access) {
        Some(FieldAccess::Inline(slot)) => record_get(obj, *slot),
        Some(FieldAccess::Accessor { get, .. }) => Ok(get(obj)),
        None => Err(no_field(info, index)),
    }
}

/// Writes field `index` of `obj` generically, after checking (and coercing) the value's kind.
///
/// # Errors
/// `Error::NotFound` for a bad index, `Error::Type` for a kind mismatch, `Error::Frozen` for a
/// frozen record or a field without a setter, or what the setter returns.
pub fn field_set(obj: &ObjAny, index: usize, value: Value) -> Result<(), Error> {
    let info = obj.type_info();
    let field = info
        .fields
        .get(index)
        .ok_or_else(|| no_field(info, index))?;
    match &field.access {
        FieldAccess::Inline(slot) => record_set(obj, *slot, value),
        FieldAccess::Accessor { set: None, .. } => Err(Error::Frozen(format!(
            "field {} of {} is read-only",
            field.name, info.name
        ))),
        FieldAccess::Accessor { set: Some(set), .. } => set(obj, field.kind.coerce(value)?),
    }
}

fn no_field(info: &TypeInfo, index: usize) -> Error {
    Error::NotFound(format!(
        "field #{index} of {} ({} fields)",
        info.name,
        info.fields.len()
    ))
}

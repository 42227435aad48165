//! Declaring types: [`register_rust_type`] (what `object_type!` calls) and
//! [`register_record_type`] / [`register_record_type_with`] (schemas at run time).
//!
//! On the types floor above `kind` (a record field's default is coerced to its kind) and
//! `registry`; uses `schema` and `crate::error`. Upholds invariant 3 of `crate::types` (a parent
//! is registered before its child) and, for records, that a record type's parent is a record
//! type with the same frozenness and that field names are unique.

use super::registry::{lock, publish, type_info, TypeInfo};
use super::schema::{FieldAccess, FieldInfo, FieldSpec, RecordOptions, TypeKind};
use crate::error::Error;

/// Registers a Rust type; what [`object_type!`](crate::object_type) calls (once per type).
///
/// # Panics
/// If `name` is already registered (two Rust types may not share a name) or the registry is
/// full: both are programming errors, found at the first use of the type.
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
    }
    let info = TypeInfo::unpublished(name, parent, fields, TypeKind::Rust, false);
    match publish(&mut reg, info) {
        Ok(i) => i,
        Err(e) => panic!("{e}"),
    }
}

/// Registers a record type: `fields` are added after the parent's (a record type too).
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
            pinfo.fields.clone()
        }
    };
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
    let mut reg = lock();
    if let Some(&existing) = reg.by_name.get(name) {
        if type_info(existing).is_some_and(|t| t.kind != TypeKind::Record) {
            return Err(Error::Value(format!(
                "type name {name} belongs to a Rust type"
            )));
        }
    }
    let info = TypeInfo::unpublished(name, parent, all, TypeKind::Record, options.frozen);
    publish(&mut reg, info)
}

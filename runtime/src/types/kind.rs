//! Checking a value against a [`FieldKind`]: [`check`](FieldKind::check),
//! [`coerce`](FieldKind::coerce) (ints widen to floats) and the kind's name in messages.
//!
//! On the types floor above `object` (an object field accepts instances of a type and its
//! subtypes: `ObjAny::is_instance`) and `registry` (a type's name); uses `schema`,
//! `crate::value` and `crate::error`. Record invariant 4 (every slot passed its field's check)
//! rests on these.

use super::registry::type_info;
use super::schema::{FieldKind, ANY_OBJECT, SELF_TYPE};
use crate::error::Error;
use crate::value::Value;

impl FieldKind {
    /// Whether a value of this kind can be a strong reference to an object (an object kind,
    /// `Any`, or an `Optional` of one): what makes a record type or a container traced by the
    /// cycle collector. Weak references do not count (they keep nothing alive).
    ///
    /// ```
    /// use tether_runtime::FieldKind;
    /// assert!(FieldKind::Optional(Box::new(FieldKind::Any)).holds_objects());
    /// assert!(!FieldKind::Str.holds_objects() && !FieldKind::Weak(0).holds_objects());
    /// ```
    pub fn holds_objects(&self) -> bool {
        match self {
            FieldKind::Object(_) | FieldKind::Any => true,
            FieldKind::Optional(k) => k.holds_objects(),
            _ => false,
        }
    }

    /// Whether `v` is acceptable as it is.
    ///
    /// # Errors
    /// `Error::Type` naming this kind and `v`'s kind.
    pub fn check(&self, v: &Value) -> Result<(), Error> {
        if self.accepts(v) {
            Ok(())
        } else {
            Err(Error::type_mismatch(&self.name(), v.kind_name()))
        }
    }

    /// [`check`](Self::check), widening an `Int` for a `Float` (or `Optional[Float]`) field.
    ///
    /// # Errors
    /// As for `check`.
    ///
    /// ```
    /// use tether_runtime::{FieldKind, Value};
    /// assert_eq!(FieldKind::Float.coerce(Value::Int(2)).unwrap(), Value::Float(2.0));
    /// ```
    pub fn coerce(&self, v: Value) -> Result<Value, Error> {
        if self.accepts(&v) {
            return Ok(v);
        }
        match (self.widens_int(), &v) {
            (true, Value::Int(i)) => Ok(Value::Float(*i as f64)),
            _ => Err(Error::type_mismatch(&self.name(), v.kind_name())),
        }
    }

    /// Whether an `Int` widens to this kind (`Float`, possibly optional).
    fn widens_int(&self) -> bool {
        match self {
            FieldKind::Float => true,
            FieldKind::Optional(inner) => inner.widens_int(),
            _ => false,
        }
    }

    fn accepts(&self, v: &Value) -> bool {
        match (self, v) {
            (FieldKind::Any, _) => true,
            (FieldKind::Int, Value::Int(_))
            | (FieldKind::Float, Value::Float(_))
            | (FieldKind::Bool, Value::Bool(_))
            | (FieldKind::Str, Value::Str(_))
            | (FieldKind::Bytes, Value::Bytes(_)) => true,
            (FieldKind::Object(t), Value::Object(o)) => o.is_instance(*t),
            (FieldKind::Object(t), Value::Function(f)) => f.as_any().is_instance(*t),
            (FieldKind::Optional(_) | FieldKind::Weak(_), Value::None) => true,
            (FieldKind::Weak(t), Value::Object(o)) => o.is_instance(*t),
            (FieldKind::Optional(inner), v) => inner.accepts(v),
            _ => false,
        }
    }

    /// The kind's name in messages: `int`, `float`, `bool`, `str`, `bytes`, `object`, the
    /// object type's name, `Optional[...]`, `Any`.
    pub fn name(&self) -> String {
        match self {
            FieldKind::Int => "int".into(),
            FieldKind::Float => "float".into(),
            FieldKind::Bool => "bool".into(),
            FieldKind::Str => "str".into(),
            FieldKind::Bytes => "bytes".into(),
            FieldKind::Object(ANY_OBJECT) => "object".into(),
            FieldKind::Object(SELF_TYPE) => "the type being declared".into(),
            FieldKind::Object(t) => {
                type_info(*t).map_or_else(|| format!("type #{t}"), |i| i.name.clone())
            }
            FieldKind::Optional(inner) => format!("Optional[{}]", inner.name()),
            FieldKind::Weak(t) => format!("Weak[{}]", FieldKind::Object(*t).name()),
            FieldKind::Any => "Any".into(),
        }
    }
}

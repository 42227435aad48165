//! What a type declares: the [`FieldKind`] of each field, how the field is reached
//! ([`FieldAccess`]), the reflected [`FieldInfo`], the record schema input ([`FieldSpec`],
//! [`RecordOptions`]) and the layout family ([`TypeKind`]).
//!
//! Bottom of the types floor: plain data, using `crate::value`, `crate::object` (`ObjAny` in the
//! accessor signatures) and `crate::error`. Checking a value against a kind is in `kind.rs`.

use crate::error::Error;
use crate::object::ObjAny;
use crate::value::Value;

/// A [`FieldKind::Object`] index that accepts any object.
pub const ANY_OBJECT: u32 = u32::MAX;

/// A [`FieldKind::Object`] index that, in a record schema given to
/// [`register_record_type`](crate::register_record_type), stands for the type being registered
/// (replaced by its index: a self-referential field such as a list node's `next`).
pub const SELF_TYPE: u32 = u32::MAX - 1;

/// How a type's objects are laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TypeKind {
    /// A Rust type (`ObjRef<T>`), registered by `object_type!`.
    Rust,
    /// A record type: fields inline, schema given at run time.
    Record,
}

/// What a field may hold; [`check`](FieldKind::check)ed on every record write.
///
/// ```
/// use tether_runtime::{FieldKind, Value};
/// assert!(FieldKind::Int.check(&Value::Int(1)).is_ok());
/// let opt = FieldKind::Optional(Box::new(FieldKind::Str));
/// assert!(opt.check(&Value::None).is_ok());
/// assert_eq!(
///     opt.check(&Value::Int(1)).unwrap_err().to_string(),
///     "type error: expected Optional[str], got int"
/// );
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FieldKind {
    /// `Value::Int`.
    Int,
    /// `Value::Float` (an `Int` is widened by [`coerce`](FieldKind::coerce)).
    Float,
    /// `Value::Bool`.
    Bool,
    /// `Value::Str`.
    Str,
    /// `Value::Bytes`.
    Bytes,
    /// An object that is an instance of this type index or a subtype ([`ANY_OBJECT`]: any
    /// object, functions included).
    Object(u32),
    /// `Value::None` or the inner kind.
    Optional(Box<FieldKind>),
    /// A weak reference to an object of this type index or a subtype (written as the object,
    /// `Value::Object`, or `Value::None`): the field does not keep the object alive, and reads
    /// give the object while it lives, else `Value::None`. Stored as one weak pointer
    /// (`SlotRepr::Weak`), for objects of any type.
    Weak(u32),
    /// Anything.
    Any,
}

/// Reads a field of a Rust object (see [`FieldAccess::Accessor`]).
pub type FieldGetter = fn(&ObjAny) -> Value;

/// Writes a field of a Rust object, after the kind check (see [`FieldAccess::Accessor`]).
pub type FieldSetter = fn(&ObjAny, Value) -> Result<(), Error>;

/// How a field's value is reached.
#[derive(Debug, Clone)]
pub enum FieldAccess {
    /// The i-th inline slot of a record ([`crate::record_get`] / [`crate::record_set`]).
    Inline(usize),
    /// Functions of the object (Rust types). `set: None` makes the field read-only.
    Accessor {
        /// Reads the field.
        get: FieldGetter,
        /// Writes the field (after the kind check), if writable.
        set: Option<FieldSetter>,
    },
}

/// A reflected field.
#[derive(Debug, Clone)]
pub struct FieldInfo {
    /// The field's name.
    pub name: String,
    /// What it may hold.
    pub kind: FieldKind,
    /// The value a constructor uses when none is given.
    pub default: Option<Value>,
    /// Where it lives.
    pub access: FieldAccess,
}

/// A field of a record schema, for [`register_record_type`](crate::register_record_type).
///
/// ```
/// use tether_runtime::{FieldKind, FieldSpec, Value};
/// let f = FieldSpec::new("x", FieldKind::Int).with_default(0);
/// assert_eq!(f.default, Some(Value::Int(0)));
/// ```
#[derive(Debug, Clone)]
pub struct FieldSpec {
    /// The field's name (unique within the type, parent's fields included).
    pub name: String,
    /// What it may hold.
    pub kind: FieldKind,
    /// The value used when a constructor gets none.
    pub default: Option<Value>,
}

impl FieldSpec {
    /// A field without a default.
    pub fn new(name: impl Into<String>, kind: FieldKind) -> FieldSpec {
        FieldSpec {
            name: name.into(),
            kind,
            default: None,
        }
    }

    /// The same field with a default.
    pub fn with_default(mut self, default: impl Into<Value>) -> FieldSpec {
        self.default = Some(default.into());
        self
    }
}

/// Options of a record type.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RecordOptions {
    /// Refuse every write after construction ([`crate::record_set`] returns `Error::Frozen`).
    pub frozen: bool,
}

//! [`Value`]: the dynamically typed value that crosses the host boundary, and the [`Function`]
//! object's data (a `Value::Function` holds one, and a function's body takes and returns
//! `Value`s: one recursion, so both live here).
//!
//! Floor 3 (see "Layers" in the crate docs): uses `crate::object` (handles, type names),
//! `crate::host` and `crate::error`. What needs the registry is added above: `Value::to_object`
//! and `TryFrom<Value> for ObjRef<T>` in `crate::types`; `Function`'s `Object` impl, its
//! constructors, `Value::as_function` and the `From` conversions of objects (which recognize
//! functions by their type index) in `crate::function`.
//!
//! Invariant: objects that are functions are `Value::Function` when made through the `From`
//! conversions; `as_object` and `TryFrom<Value> for ObjAny` accept both variants.

use crate::error::Error;
use crate::host::HostHandle;
use crate::object::{ObjAny, ObjRef};
use core::fmt;
use std::sync::Arc;

/// A dynamically typed value: what fields hold and functions take and return.
///
/// Objects that are functions are canonically `Value::Function` (the `From` conversions
/// normalize `ObjAny`s of the function type), everything else object-like is `Value::Object`.
///
/// ```
/// use tether_runtime::Value;
/// let v = Value::from(42);
/// assert_eq!(v.as_int().unwrap(), 42);
/// assert_eq!(v.as_float().unwrap(), 42.0); // ints widen to floats
/// assert_eq!(Value::from("hi").as_str().unwrap(), "hi");
/// assert_eq!(Value::from(Some(1.5)), Value::Float(1.5));
/// assert_eq!(Value::from(None::<i64>), Value::None);
/// let n: i64 = Value::Int(3).try_into().unwrap();
/// assert_eq!(n, 3);
/// ```
#[derive(Clone, Default)]
pub enum Value {
    /// No value (Python's `None`).
    #[default]
    None,
    /// A boolean.
    Bool(bool),
    /// A 64-bit integer.
    Int(i64),
    /// A 64-bit float.
    Float(f64),
    /// An immutable string.
    Str(Arc<str>),
    /// An immutable byte string.
    Bytes(Arc<[u8]>),
    /// A runtime object (Rust object or record).
    Object(ObjAny),
    /// A function object.
    Function(ObjRef<Function>),
    /// An object of the host, opaque to the runtime.
    Opaque(HostHandle),
}

impl Value {
    /// Whether this value is a reference (to an object or to a host object): what makes the
    /// record holding it a possible part of a cycle (`crate::tracked`).
    #[inline]
    pub(crate) fn is_reference(&self) -> bool {
        matches!(self, Value::Object(_) | Value::Opaque(_))
    }

    /// The kind's name as used in error messages: `none`, `bool`, `int`, `float`, `str`,
    /// `bytes`, `function`, `opaque`, or the object's type name.
    pub fn kind_name(&self) -> &str {
        match self {
            Value::None => "none",
            Value::Bool(_) => "bool",
            Value::Int(_) => "int",
            Value::Float(_) => "float",
            Value::Str(_) => "str",
            Value::Bytes(_) => "bytes",
            Value::Object(o) => o.type_name().unwrap_or("object"),
            Value::Function(_) => "function",
            Value::Opaque(_) => "opaque",
        }
    }

    /// `Error::Type` for this value where `expected` was wanted.
    pub(crate) fn mismatch(&self, expected: &str) -> Error {
        Error::type_mismatch(expected, self.kind_name())
    }

    /// Whether this is `Value::None`.
    pub fn is_none(&self) -> bool {
        matches!(self, Value::None)
    }

    /// The boolean, or `Error::Type`.
    pub fn as_bool(&self) -> Result<bool, Error> {
        match self {
            Value::Bool(b) => Ok(*b),
            _ => Err(self.mismatch("bool")),
        }
    }

    /// The integer, or `Error::Type` (bools are not ints here).
    pub fn as_int(&self) -> Result<i64, Error> {
        match self {
            Value::Int(i) => Ok(*i),
            _ => Err(self.mismatch("int")),
        }
    }

    /// The float; an int widens (possibly rounding beyond 2^53); otherwise `Error::Type`.
    pub fn as_float(&self) -> Result<f64, Error> {
        match self {
            Value::Float(f) => Ok(*f),
            Value::Int(i) => Ok(*i as f64),
            _ => Err(self.mismatch("float")),
        }
    }

    /// The string, or `Error::Type`.
    pub fn as_str(&self) -> Result<&str, Error> {
        match self {
            Value::Str(s) => Ok(s),
            _ => Err(self.mismatch("str")),
        }
    }

    /// The bytes, or `Error::Type`.
    pub fn as_bytes(&self) -> Result<&[u8], Error> {
        match self {
            Value::Bytes(b) => Ok(b),
            _ => Err(self.mismatch("bytes")),
        }
    }

    /// The object handle (functions included), or `Error::Type`.
    pub fn as_object(&self) -> Result<&ObjAny, Error> {
        match self {
            Value::Object(o) => Ok(o),
            Value::Function(f) => Ok(f.as_any()),
            _ => Err(self.mismatch("object")),
        }
    }

    /// The host handle, or `Error::Type`.
    pub fn as_opaque(&self) -> Result<&HostHandle, Error> {
        match self {
            Value::Opaque(h) => Ok(h),
            _ => Err(self.mismatch("opaque")),
        }
    }
}

impl PartialEq for Value {
    /// Scalars compare by value (floats with IEEE `==`), strings and bytes by content, objects,
    /// functions and host handles by identity.
    fn eq(&self, other: &Value) -> bool {
        match (self, other) {
            (Value::None, Value::None) => true,
            (Value::Bool(a), Value::Bool(b)) => a == b,
            (Value::Int(a), Value::Int(b)) => a == b,
            (Value::Float(a), Value::Float(b)) => a == b,
            (Value::Str(a), Value::Str(b)) => a == b,
            (Value::Bytes(a), Value::Bytes(b)) => a == b,
            (Value::Object(a), Value::Object(b)) => a.ptr_eq(b),
            (Value::Function(a), Value::Function(b)) => a.ptr_eq(b),
            (Value::Opaque(a), Value::Opaque(b)) => a.as_ptr() == b.as_ptr(),
            _ => false,
        }
    }
}

impl fmt::Debug for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::None => f.write_str("None"),
            Value::Bool(b) => write!(f, "Bool({b})"),
            Value::Int(i) => write!(f, "Int({i})"),
            Value::Float(x) => write!(f, "Float({x})"),
            Value::Str(s) => write!(f, "Str({s:?})"),
            Value::Bytes(b) => write!(f, "Bytes({b:?})"),
            Value::Object(o) => write!(f, "Object({o:?})"),
            Value::Function(func) => write!(f, "Function({:?})", func.as_any()),
            Value::Opaque(h) => write!(f, "Opaque({:p})", h.as_ptr()),
        }
    }
}

macro_rules! from_scalar {
    ($($t:ty => $variant:ident as $as:ty),* $(,)?) => {$(
        impl From<$t> for Value {
            fn from(v: $t) -> Value {
                Value::$variant(<$as>::from(v))
            }
        }
    )*};
}

from_scalar! {
    bool => Bool as bool,
    i8 => Int as i64, i16 => Int as i64, i32 => Int as i64, i64 => Int as i64,
    u8 => Int as i64, u16 => Int as i64, u32 => Int as i64,
    f32 => Float as f64, f64 => Float as f64,
}

impl From<&str> for Value {
    fn from(v: &str) -> Value {
        Value::Str(Arc::from(v))
    }
}

impl From<String> for Value {
    fn from(v: String) -> Value {
        Value::Str(Arc::from(v))
    }
}

impl From<Arc<str>> for Value {
    fn from(v: Arc<str>) -> Value {
        Value::Str(v)
    }
}

impl From<&[u8]> for Value {
    fn from(v: &[u8]) -> Value {
        Value::Bytes(Arc::from(v))
    }
}

impl From<Vec<u8>> for Value {
    fn from(v: Vec<u8>) -> Value {
        Value::Bytes(Arc::from(v))
    }
}

impl From<Arc<[u8]>> for Value {
    fn from(v: Arc<[u8]>) -> Value {
        Value::Bytes(v)
    }
}

impl From<HostHandle> for Value {
    fn from(h: HostHandle) -> Value {
        Value::Opaque(h)
    }
}

impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Value {
        v.map_or(Value::None, Into::into)
    }
}

impl TryFrom<Value> for bool {
    type Error = Error;
    fn try_from(v: Value) -> Result<bool, Error> {
        v.as_bool()
    }
}

impl TryFrom<Value> for i64 {
    type Error = Error;
    fn try_from(v: Value) -> Result<i64, Error> {
        v.as_int()
    }
}

impl TryFrom<Value> for f64 {
    type Error = Error;
    fn try_from(v: Value) -> Result<f64, Error> {
        v.as_float()
    }
}

impl TryFrom<Value> for Arc<str> {
    type Error = Error;
    fn try_from(v: Value) -> Result<Arc<str>, Error> {
        match v {
            Value::Str(s) => Ok(s),
            other => Err(other.mismatch("str")),
        }
    }
}

impl TryFrom<Value> for String {
    type Error = Error;
    fn try_from(v: Value) -> Result<String, Error> {
        v.as_str().map(str::to_owned)
    }
}

impl TryFrom<Value> for Arc<[u8]> {
    type Error = Error;
    fn try_from(v: Value) -> Result<Arc<[u8]>, Error> {
        match v {
            Value::Bytes(b) => Ok(b),
            other => Err(other.mismatch("bytes")),
        }
    }
}

impl TryFrom<Value> for ObjAny {
    type Error = Error;
    fn try_from(v: Value) -> Result<ObjAny, Error> {
        match v {
            Value::Object(o) => Ok(o),
            Value::Function(f) => Ok(f.into_any()),
            other => Err(other.mismatch("object")),
        }
    }
}

impl TryFrom<Value> for HostHandle {
    type Error = Error;
    fn try_from(v: Value) -> Result<HostHandle, Error> {
        match v {
            Value::Opaque(h) => Ok(h),
            other => Err(other.mismatch("opaque")),
        }
    }
}

/// What a host does with an object a function returns.
///
/// ```
/// use tether_runtime::ReturnPolicy;
/// assert_eq!(ReturnPolicy::default(), ReturnPolicy::Tied);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReturnPolicy {
    /// The caller gets the object's canonical wrapper (looked up, revived, or bound).
    #[default]
    Tied,
    /// The caller gets a new wrapper that is never bound (classic move/refcount semantics).
    Fresh,
}

pub(crate) type Body = dyn Fn(&[Value]) -> Result<Value, Error> + Send + Sync;

/// A callable object: a closure plus its [`ReturnPolicy`].
///
/// ```
/// use tether_runtime::{Function, ReturnPolicy, Value};
/// let add = Function::new(ReturnPolicy::Tied, |args| {
///     Ok(Value::Int(args[0].as_int()? + args[1].as_int()?))
/// });
/// assert_eq!(add.call(&[Value::Int(2), Value::Int(3)]).unwrap(), Value::Int(5));
/// assert!(add.call(&[Value::Int(2), Value::None]).is_err());
/// ```
pub struct Function {
    pub(crate) policy: ReturnPolicy,
    pub(crate) body: Box<Body>,
}

impl Function {
    /// Calls the function.
    ///
    /// # Errors
    /// Whatever the body returns.
    pub fn call(&self, args: &[Value]) -> Result<Value, Error> {
        (self.body)(args)
    }

    /// The return policy.
    pub fn policy(&self) -> ReturnPolicy {
        self.policy
    }
}

impl core::fmt::Debug for Function {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Function")
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

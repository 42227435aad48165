//! [`Value`]: the dynamically typed value that crosses the host boundary, and [`HostHandle`],
//! an opaque reference-counted host object.

use crate::error::Error;
use crate::function::Function;
use crate::object::{ObjAny, ObjRef, Object};
use core::ffi::c_void;
use core::fmt;
use core::ptr::NonNull;
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
            Value::Object(o) => {
                crate::types::type_info(o.type_index()).map_or("object", |t| t.name.as_str())
            }
            Value::Function(_) => "function",
            Value::Opaque(_) => "opaque",
        }
    }

    fn mismatch(&self, expected: &str) -> Error {
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

    /// A typed handle to the object, if it is exactly a `T`; otherwise `Error::Type` naming
    /// `T`'s registered name and the actual kind.
    ///
    /// ```
    /// use tether_runtime::{object_type, ObjRef, Value};
    /// struct Dog;
    /// object_type!(Dog, "doc.to_object.Dog");
    /// let v = Value::from(ObjRef::new(Dog));
    /// assert!(v.to_object::<Dog>().is_ok());
    /// let err = Value::Int(1).to_object::<Dog>().err().unwrap();
    /// assert_eq!(err.to_string(), "type error: expected doc.to_object.Dog, got int");
    /// ```
    pub fn to_object<T: Object>(&self) -> Result<ObjRef<T>, Error> {
        let want = || T::type_info().name.as_str();
        let obj = self.as_object().map_err(|_| self.mismatch(want()))?;
        obj.as_typed::<T>()
            .cloned()
            .ok_or_else(|| self.mismatch(want()))
    }

    /// The function, or `Error::Type`.
    pub fn as_function(&self) -> Result<&ObjRef<Function>, Error> {
        match self {
            Value::Function(f) => Ok(f),
            Value::Object(o) => o
                .as_typed::<Function>()
                .ok_or_else(|| self.mismatch("function")),
            _ => Err(self.mismatch("function")),
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

impl From<ObjAny> for Value {
    /// `Value::Function` for function objects, `Value::Object` otherwise.
    fn from(o: ObjAny) -> Value {
        match o.downcast::<Function>() {
            Ok(f) => Value::Function(f),
            Err(o) => Value::Object(o),
        }
    }
}

impl<T: Object> From<ObjRef<T>> for Value {
    fn from(r: ObjRef<T>) -> Value {
        Value::from(r.into_any())
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

impl<T: Object> TryFrom<Value> for ObjRef<T> {
    type Error = Error;
    fn try_from(v: Value) -> Result<ObjRef<T>, Error> {
        let name = T::type_info().name.as_str();
        let kind = v.kind_name().to_owned();
        ObjAny::try_from(v)
            .map_err(|_| Error::type_mismatch(name, &kind))?
            .downcast::<T>()
            .map_err(|_| Error::type_mismatch(name, &kind))
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

/// How the runtime releases a host object: the host's own reference counting.
///
/// `drop` receives the handle's pointer once, when the last clone of a [`HostHandle`] goes. It
/// may be called from any thread that drops a `Value` holding the handle (a GIL-based host
/// acquires its lock inside it if needed, or leaks the reference when it cannot, e.g. after the
/// host's interpreter was finalized). It must not unwind.
///
/// There is no `clone` entry: cloning a handle never calls the host (see [`HostHandle`]).
#[derive(Debug)]
pub struct HostVTable {
    /// Releases the host reference (called when the last clone of a `HostHandle` is dropped).
    pub drop: unsafe fn(NonNull<c_void>),
}

/// An opaque host object (e.g. a `PyObject*`): one host reference, shared natively by every
/// clone of the handle and released once, through its [`HostVTable`], when the last clone goes.
///
/// Cloning is one atomic increment and never calls the host, so a handle can be cloned where
/// host code must not run: under a record's lock (the record rule, `crate::record`), or on a
/// thread that could not attach to the host. Only the last drop calls the host.
///
/// The fields are private (with accessors) because a safe constructor would let safe code hand
/// arbitrary pointers to the vtable: use [`HostHandle::from_raw`].
///
/// ```
/// use core::ffi::c_void;
/// use core::ptr::NonNull;
/// use std::sync::atomic::{AtomicUsize, Ordering};
/// use tether_runtime::{HostHandle, HostVTable, Value};
///
/// static RELEASED: AtomicUsize = AtomicUsize::new(0);
/// unsafe fn release(_: NonNull<c_void>) { RELEASED.fetch_add(1, Ordering::Relaxed); }
/// static VT: HostVTable = HostVTable { drop: release };
///
/// static mut THING: u64 = 0;
/// let p = NonNull::new(&raw mut THING).unwrap().cast::<c_void>();
/// // SAFETY: `p` stays valid, the vtable is thread-safe, and we hand over our one reference.
/// let h = unsafe { HostHandle::from_raw(p, &VT) };
/// let v = Value::from(h);
/// let w = v.clone(); // no host call
/// drop(v);
/// assert_eq!(RELEASED.load(Ordering::Relaxed), 0);
/// drop(w); // the last clone releases the host reference, once
/// assert_eq!(RELEASED.load(Ordering::Relaxed), 1);
/// ```
#[derive(Clone)]
pub struct HostHandle(Arc<HostRef>);

/// The one host reference behind every clone of a [`HostHandle`].
struct HostRef {
    ptr: NonNull<c_void>,
    vtable: &'static HostVTable,
}

// SAFETY: `from_raw` requires the vtable's `drop` to be callable from any thread for this
// pointer; the runtime never dereferences the pointer itself.
unsafe impl Send for HostRef {}
// SAFETY: as above; `&HostRef` only allows reading the pointer and the vtable.
unsafe impl Sync for HostRef {}

impl Drop for HostRef {
    fn drop(&mut self) {
        // SAFETY: `from_raw`'s contract; the last clone releases the one host reference.
        unsafe { (self.vtable.drop)(self.ptr) }
    }
}

impl HostHandle {
    /// Wraps one host reference to `ptr`, to be released with `vtable.drop` when the last clone
    /// of the handle is dropped.
    ///
    /// # Safety
    /// The caller hands over one reference to `ptr`; `vtable.drop` is sound to call once with
    /// `ptr` from any thread.
    pub unsafe fn from_raw(ptr: NonNull<c_void>, vtable: &'static HostVTable) -> HostHandle {
        HostHandle(Arc::new(HostRef { ptr, vtable }))
    }

    /// The host pointer (the handle keeps its reference).
    pub fn as_ptr(&self) -> NonNull<c_void> {
        self.0.ptr
    }

    /// The vtable.
    pub fn vtable(&self) -> &'static HostVTable {
        self.0.vtable
    }

    /// How many clones share the host reference.
    pub fn share_count(&self) -> usize {
        Arc::strong_count(&self.0)
    }
}

impl fmt::Debug for HostHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HostHandle({:p})", self.0.ptr)
    }
}

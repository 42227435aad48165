//! The type registry: every object's type index names a [`TypeInfo`] with its name, parent and
//! reflected fields, so a host can expose attributes generically.
//!
//! * Rust types register once per process through [`object_type!`](crate::object_type) (a
//!   `OnceLock` per type; afterwards `T::type_index()` is one acquire load).
//! * Record types ([`register_record_type`]) get their schema at run time; their objects store
//!   the fields inline ([`Record`](crate::Record)).
//!
//! # Invariants
//!
//! 1. Entries are leaked `&'static TypeInfo`s, never removed or mutated after publication
//!    (except `host_data`, an atomic), so [`type_info`] hands out `'static` references.
//! 2. An entry is published with a `Release` store after it is fully built; readers load it with
//!    `Acquire`, so a reader that sees the pointer sees the whole entry. Writers are serialized
//!    by the registry mutex; readers take no lock.
//! 3. A type's parent is registered before it (indices grow), so parent chains are finite.

use crate::error::Error;
use crate::object::ObjAny;
use crate::value::Value;
use core::ffi::c_void;
use core::ptr;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};

/// A [`FieldKind::Object`] index that accepts any object.
pub const ANY_OBJECT: u32 = u32::MAX;

/// The most types a process can register.
pub const MAX_TYPES: u32 = (CHUNKS * CHUNK) as u32;

const CHUNK: usize = 256;
const CHUNKS: usize = 256;

type Chunk = [AtomicPtr<TypeInfo>; CHUNK];

/// The lock-free read side: CHUNKS lazily allocated chunks of CHUNK entries.
static TABLE: [AtomicPtr<Chunk>; CHUNKS] = [const { AtomicPtr::new(ptr::null_mut()) }; CHUNKS];

/// The write side: the next index and the name index.
struct Registry {
    next: u32,
    by_name: BTreeMap<String, u32>,
}

static REGISTRY: Mutex<Registry> = Mutex::new(Registry {
    next: 0,
    by_name: BTreeMap::new(),
});

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
    /// Anything.
    Any,
}

impl FieldKind {
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
            (FieldKind::Optional(_), Value::None) => true,
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
            FieldKind::Object(t) => {
                type_info(*t).map_or_else(|| format!("type #{t}"), |i| i.name.clone())
            }
            FieldKind::Optional(inner) => format!("Optional[{}]", inner.name()),
            FieldKind::Any => "Any".into(),
        }
    }
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

/// A field of a record schema, for [`register_record_type`].
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

/// A registered type.
#[derive(Debug)]
pub struct TypeInfo {
    /// Its index (what objects store in their header).
    pub index: u32,
    /// Its qualified name (unique among live names).
    pub name: String,
    /// Its parent type, if any.
    pub parent: Option<u32>,
    /// Reflected fields. For records: the parent's fields, then the type's own, in slot order.
    pub fields: Vec<FieldInfo>,
    /// Rust type or record.
    pub kind: TypeKind,
    /// Whether writes are refused (records declared frozen).
    pub frozen: bool,
    host_data: AtomicPtr<c_void>,
    /// Live objects of a record type (see [`TypeInfo::live_objects`]).
    live: AtomicUsize,
}

impl TypeInfo {
    /// How many objects of this record type are alive (built and not yet destroyed); always 0
    /// for Rust types, which are not counted. A host uses it to keep its class for the type
    /// alive while objects of the type exist (they may be wrapped again later).
    ///
    /// The count is a snapshot: another thread may build or destroy an object right after.
    pub fn live_objects(&self) -> usize {
        self.live.load(Ordering::Relaxed)
    }

    /// Counts an object of this record type in (`true`) or out (`false`).
    pub(crate) fn count_live(&self, born: bool) {
        // Relaxed: a statistic for hosts, read as a snapshot; it orders nothing.
        if born {
            self.live.fetch_add(1, Ordering::Relaxed);
        } else {
            self.live.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// What the host attached ([`set_host_data`](Self::set_host_data)), or null.
    pub fn host_data(&self) -> *mut c_void {
        // Acquire: pairs with the Release in set_host_data, so whatever the pointer refers to
        // (initialized by the host before storing it) is visible.
        self.host_data.load(Ordering::Acquire)
    }

    /// Attaches a host pointer (e.g. the Python class object for this type).
    ///
    /// ```
    /// use tether_runtime::{object_type, Object};
    /// struct Widget;
    /// object_type!(Widget, "doc.host_data.Widget");
    /// static CLASS: u8 = 0;
    /// let p = &CLASS as *const u8 as *mut core::ffi::c_void;
    /// Widget::type_info().set_host_data(p);
    /// assert_eq!(Widget::type_info().host_data(), p);
    /// ```
    pub fn set_host_data(&self, data: *mut c_void) {
        // Release: publishes the host's initialization of `data` (see host_data).
        self.host_data.store(data, Ordering::Release);
    }

    /// Stores `data` only if nothing is attached yet; returns what is attached afterwards.
    pub fn init_host_data(&self, data: *mut c_void) -> *mut c_void {
        // AcqRel: publish ours (Release) or see the winner's (Acquire).
        match self.host_data.compare_exchange(
            ptr::null_mut(),
            data,
            Ordering::AcqRel,
            Ordering::Acquire,
        ) {
            Ok(_) => data,
            Err(existing) => existing,
        }
    }

    /// The index of the field named `name`.
    pub fn field_index(&self, name: &str) -> Option<usize> {
        self.fields.iter().position(|f| f.name == name)
    }

    /// The parent's entry.
    pub fn parent_info(&self) -> Option<&'static TypeInfo> {
        self.parent.and_then(type_info)
    }
}

/// The registry entry of a type index (lock-free).
///
/// ```
/// use tether_runtime::{object_type, type_index_of, type_info, Object};
/// struct Gadget;
/// object_type!(Gadget, "doc.type_info.Gadget");
/// let i = Gadget::type_index();
/// assert_eq!(type_index_of("doc.type_info.Gadget"), Some(i));
/// assert_eq!(type_info(i).unwrap().index, i);
/// assert!(type_info(u32::MAX - 1).is_none());
/// ```
pub fn type_info(index: u32) -> Option<&'static TypeInfo> {
    let (hi, lo) = (index as usize / CHUNK, index as usize % CHUNK);
    // Acquire (both loads): invariant 2.
    let chunk = TABLE.get(hi)?.load(Ordering::Acquire);
    if chunk.is_null() {
        return None;
    }
    // SAFETY: published chunks are leaked and never freed (invariant 1).
    let entry = unsafe { &*chunk }[lo].load(Ordering::Acquire);
    // SAFETY: published entries are leaked, fully built, never freed (invariants 1, 2).
    (!entry.is_null()).then(|| unsafe { &*entry })
}

/// The index currently registered under `name`.
pub fn type_index_of(name: &str) -> Option<u32> {
    lock().by_name.get(name).copied()
}

/// How many types are registered.
pub fn type_count() -> u32 {
    lock().next
}

/// Whether `child` is `ancestor` or one of its subtypes ([`ANY_OBJECT`] is everyone's
/// ancestor).
pub fn is_subtype(child: u32, ancestor: u32) -> bool {
    if ancestor == ANY_OBJECT {
        return true;
    }
    let mut t = child;
    loop {
        if t == ancestor {
            return true;
        }
        match type_info(t).and_then(|i| i.parent) {
            Some(p) => t = p,
            None => return false,
        }
    }
}

fn lock() -> std::sync::MutexGuard<'static, Registry> {
    // Registry updates cannot panic midway (they are a push and an insert), so a poisoned lock
    // still guards a consistent registry.
    REGISTRY.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Publishes a fully built entry under the next index. Called with the registry lock held.
fn publish(reg: &mut Registry, mut info: TypeInfo) -> Result<u32, Error> {
    let index = reg.next;
    if index >= MAX_TYPES {
        return Err(Error::Value(format!(
            "cannot register type {}: the registry is full ({MAX_TYPES} types)",
            info.name
        )));
    }
    info.index = index;
    let (hi, lo) = (index as usize / CHUNK, index as usize % CHUNK);
    // Relaxed: chunks are only installed under the lock we hold.
    let mut chunk = TABLE[hi].load(Ordering::Relaxed);
    if chunk.is_null() {
        let fresh: Box<Chunk> = Box::new([const { AtomicPtr::new(ptr::null_mut()) }; CHUNK]);
        chunk = Box::into_raw(fresh);
        // Release: readers that see the chunk see its (null) initialization.
        TABLE[hi].store(chunk, Ordering::Release);
    }
    reg.by_name.insert(info.name.clone(), index);
    let entry = Box::into_raw(Box::new(info));
    // SAFETY: chunks are leaked, never freed.
    let slot = unsafe { &(*chunk)[lo] };
    // Release: invariant 2.
    slot.store(entry, Ordering::Release);
    reg.next = index + 1;
    Ok(index)
}

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
    let info = TypeInfo {
        index: 0,
        name: name.to_owned(),
        parent,
        fields,
        kind: TypeKind::Rust,
        frozen: false,
        host_data: AtomicPtr::new(ptr::null_mut()),
        live: AtomicUsize::new(0),
    };
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
    publish(
        &mut reg,
        TypeInfo {
            index: 0,
            name: name.to_owned(),
            parent,
            fields: all,
            kind: TypeKind::Record,
            frozen: options.frozen,
            host_data: AtomicPtr::new(ptr::null_mut()),
            live: AtomicUsize::new(0),
        },
    )
}

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
        Some(FieldAccess::Inline(slot)) => crate::record::record_get(obj, *slot),
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
        FieldAccess::Inline(slot) => crate::record::record_set(obj, *slot, value),
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

/// The typed value behind an accessor's `&ObjAny` (used by [`field!`](crate::field)).
///
/// # Panics
/// If `obj` is not exactly a `T`: an accessor was called with an object of another type, which
/// a host that reads `type_info(obj.type_index()).fields` never does.
#[doc(hidden)]
pub fn expect_field_owner<T: crate::Object>(obj: &ObjAny) -> &T {
    match obj.downcast_ref::<T>() {
        Some(v) => v,
        None => panic!(
            "field accessor of {} called on a {:?}",
            T::type_info().name,
            obj
        ),
    }
}

/// Implements [`Object`](crate::Object) for a Rust type, registering it once per process.
///
/// ```text
/// object_type!(Type, "qualified.name");
/// object_type!(Type, "qualified.name", parent = Parent);          // or `parent = None`
/// object_type!(Type, "qualified.name", fields = [field!(...), ...]);
/// object_type!(Type, "qualified.name", parent = Parent, fields = [...]);
/// ```
///
/// The first call of `Type::type_index()` registers the type (the parent first); later calls
/// are one acquire load.
///
/// ```
/// use tether_runtime::{field, field_get, object_type, FieldKind, ObjRef, Object, Value};
/// struct Shape;
/// struct Circle { r: f64 }
/// object_type!(Shape, "doc.macro.Shape", parent = None);
/// object_type!(Circle, "doc.macro.Circle", parent = Shape, fields = [
///     field!(Circle, "r", FieldKind::Float, get = |c| Value::Float(c.r)),
/// ]);
/// let c = ObjRef::new(Circle { r: 2.0 });
/// assert_eq!(Circle::type_info().parent, Some(Shape::type_index()));
/// assert_eq!(field_get(c.as_any(), 0).unwrap(), Value::Float(2.0));
/// ```
#[macro_export]
macro_rules! object_type {
    ($ty:ty, $name:expr $(,)?) => {
        $crate::object_type!(@impl $ty, $name, ::core::option::Option::None, []);
    };
    ($ty:ty, $name:expr, parent = None $(, fields = [$($field:expr),* $(,)?])? $(,)?) => {
        $crate::object_type!(@impl $ty, $name, ::core::option::Option::None, [$($($field),*)?]);
    };
    ($ty:ty, $name:expr, parent = $parent:ty $(, fields = [$($field:expr),* $(,)?])? $(,)?) => {
        $crate::object_type!(
            @impl $ty,
            $name,
            ::core::option::Option::Some(<$parent as $crate::Object>::type_index()),
            [$($($field),*)?]
        );
    };
    ($ty:ty, $name:expr, fields = [$($field:expr),* $(,)?] $(,)?) => {
        $crate::object_type!(@impl $ty, $name, ::core::option::Option::None, [$($field),*]);
    };
    (@impl $ty:ty, $name:expr, $parent:expr, [$($field:expr),*]) => {
        // SAFETY: the index comes from registering this type, under a fresh per-impl OnceLock,
        // and every later call returns that same index (`Object`'s contract).
        unsafe impl $crate::Object for $ty {
            #[inline]
            fn type_index() -> u32 {
                static INDEX: ::std::sync::OnceLock<u32> = ::std::sync::OnceLock::new();
                *INDEX.get_or_init(|| {
                    let parent: ::core::option::Option<u32> = $parent;
                    $crate::register_rust_type($name, parent, ::std::vec![$($field),*])
                })
            }
        }
    };
}

/// Builds a [`FieldInfo`] for a Rust type's field from a typed getter (and optional setter and
/// default), for [`object_type!`](crate::object_type).
///
/// ```text
/// field!(Type, "name", kind, get = |v: &Type| -> Value)
/// field!(Type, "name", kind, get = ..., set = |v: &Type, x: Value| -> Result<(), Error>)
/// field!(Type, "name", kind, get = ..., default = value)
/// ```
///
/// Setters get `&Type` (objects are shared), so writable fields use interior mutability; the
/// value is kind-checked before the setter runs ([`field_set`]).
///
/// ```
/// use std::sync::atomic::{AtomicI64, Ordering};
/// use tether_runtime::{field, field_get, field_set, object_type, FieldKind, ObjRef, Value};
/// struct Counter { n: AtomicI64 }
/// object_type!(Counter, "doc.field.Counter", fields = [
///     field!(Counter, "n", FieldKind::Int,
///         get = |c| Value::Int(c.n.load(Ordering::Relaxed)),
///         set = |c, v| { c.n.store(v.as_int()?, Ordering::Relaxed); Ok(()) },
///         default = 0),
/// ]);
/// let c = ObjRef::new(Counter { n: AtomicI64::new(1) });
/// field_set(c.as_any(), 0, Value::Int(5)).unwrap();
/// assert_eq!(field_get(c.as_any(), 0).unwrap(), Value::Int(5));
/// assert!(field_set(c.as_any(), 0, Value::from("x")).is_err());
/// ```
#[macro_export]
macro_rules! field {
    ($ty:ty, $name:expr, $kind:expr, get = $get:expr $(, set = $set:expr)? $(, default = $default:expr)? $(,)?) => {
        $crate::FieldInfo {
            name: ::std::string::String::from($name),
            kind: $kind,
            default: $crate::field!(@default $($default)?),
            access: $crate::FieldAccess::Accessor {
                get: {
                    fn get(obj: &$crate::ObjAny) -> $crate::Value {
                        let f: fn(&$ty) -> $crate::Value = $get;
                        f($crate::types::expect_field_owner::<$ty>(obj))
                    }
                    get
                },
                set: $crate::field!(@set $ty $(, $set)?),
            },
        }
    };
    (@default) => { ::core::option::Option::None };
    (@default $default:expr) => {
        ::core::option::Option::Some($crate::Value::from($default))
    };
    (@set $ty:ty) => { ::core::option::Option::None };
    (@set $ty:ty, $set:expr) => {
        ::core::option::Option::Some({
            fn set(obj: &$crate::ObjAny, v: $crate::Value) -> ::core::result::Result<(), $crate::Error> {
                let f: fn(&$ty, $crate::Value) -> ::core::result::Result<(), $crate::Error> = $set;
                f($crate::types::expect_field_owner::<$ty>(obj), v)
            }
            set as $crate::types::FieldSetter
        })
    };
}

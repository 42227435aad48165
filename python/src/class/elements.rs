//! What goes into a container, and containers as values: [`ElemSpec`] (the element kind of a
//! `tether.List`, or the value kind of a `tether.Dict`, as the annotation says it, with its
//! Python-side checks), [`Nested`] (a container kind: `list[T]` or `dict[K, V]`), and the
//! conversion of a Python value into one ([`Nested::convert`]).
//!
//! A container field or element holds a native container (`tether_runtime::containers`). An
//! existing `tether.List`/`tether.Dict` whose element kinds are the same is shared (reference
//! semantics, like Python: `a.children = b.children` makes both fields one list); any other
//! iterable (mapping) is converted into a new container, every element checked first, so a bad
//! element leaves nothing behind. Each native container carries its spec as its host tag, so a
//! container reached from anywhere converts what goes into it the same way.

use super::constraint::{Constraint, Forward};
use crate::convert::{from_py_kind, kind_name, Moves};
use crate::native;
use crate::pytypes::is_wrapper;
use core::ffi::c_void;
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyInt, PyString};
use tether_runtime::containers::{List, Map, MapKey};
use tether_runtime::types::FieldKind;
use tether_runtime::{ObjAny, ObjRef, Object, Value};

/// The kind of one element (or dict value), as declared.
#[derive(Debug)]
pub struct ElemSpec {
    /// The native kind (a container element: the container's object kind).
    pub kind: FieldKind,
    /// Enum, literal and union checks.
    pub constraint: Option<Constraint>,
    /// A class defined later.
    pub forward: Option<Forward>,
    /// The element is itself a container.
    pub nested: Option<Nested>,
    /// The class whose annotation this is (for alternatives naming the class itself).
    pub owner: u32,
    /// How the annotation reads, for messages and `repr`.
    pub display: String,
    /// Where the spec was declared, and how deep in it (1: the element of the outermost
    /// container): what pickling a container records to find its kind again.
    pub root: &'static SpecRoot,
    /// See `root`.
    pub depth: u32,
}

/// Where a container kind was declared.
#[derive(Debug)]
pub enum SpecRoot {
    /// A field's annotation: the declaring class's type index and the field's name.
    Field(u32, String),
    /// `tether.List[elem]`.
    List(Py<PyAny>),
    /// `tether.Dict[key, value]`.
    Dict(Py<PyAny>, Py<PyAny>),
    /// A container made by Rust code (its native kinds only).
    Native,
}

/// A container kind.
#[derive(Debug)]
pub enum Nested {
    /// `list[T]`.
    List(&'static ElemSpec),
    /// `dict[K, V]`: the key kind (`str`, `int`, `bytes` or an object kind) and the values'.
    Dict(FieldKind, &'static ElemSpec),
}

impl ElemSpec {
    /// Converts `value` for this element kind. May run Python code (iterating a plain list).
    pub fn convert<'py>(
        &self,
        value: &Bound<'py, PyAny>,
        moves: &mut Moves<'py>,
    ) -> PyResult<Value> {
        let py = value.py();
        if value.is_none() && matches!(self.kind, FieldKind::Optional(_)) {
            return Ok(Value::None);
        }
        if let Some(n) = &self.nested {
            return n.convert(value, moves).map(Value::Object);
        }
        // SAFETY: `value` is live; GIL held; a wrapper has the wrapper layout.
        if unsafe {
            is_wrapper(value.as_ptr())
                && native::is_empty(value.as_ptr())
                && !crate::wrapper::was_moved_out(value.as_ptr())
        } {
            return Err(PyTypeError::new_err(
                "this object is not initialized yet: it is being restored (unpickled or \
                 deep-copied) and reaches itself through a container, which cannot hold an \
                 object before it exists; break the cycle (or hold the object in a typed field) \
                 before pickling or copying",
            ));
        }
        let v = match &self.constraint {
            Some(c) => c.convert(value, self.owner, moves)?,
            None => from_py_kind(value, &self.kind, moves)?,
        };
        if let Some(f) = &self.forward {
            f.check(py, &v)?;
        }
        Ok(v)
    }

    /// Looks up the classes this element kind names by forward reference.
    pub fn resolve(&self, py: Python<'_>) -> PyResult<()> {
        if let Some(f) = &self.forward {
            f.resolve(py)?;
        }
        if let Some(c) = &self.constraint {
            c.resolve(py)?;
        }
        if let Some(n) = &self.nested {
            n.resolve(py)?;
        }
        Ok(())
    }

    /// Whether `other` declares the same element kind (what sharing a container needs).
    pub fn same_as(&self, other: &ElemSpec) -> bool {
        core::ptr::eq(self, other)
            || (self.kind == other.kind
                && self.display == other.display
                && match (&self.nested, &other.nested) {
                    (None, None) => true,
                    (Some(a), Some(b)) => a.same_as(b),
                    _ => false,
                })
    }
}

impl Nested {
    /// How the container kind reads: `tether.List[Node]`, `tether.Dict[str, int]`.
    pub fn display(&self) -> String {
        match self {
            Nested::List(e) => format!("tether.List[{}]", e.display),
            Nested::Dict(k, v) => format!("tether.Dict[{}, {}]", kind_name(k), v.display),
        }
    }

    /// Looks up the classes its element kinds name by forward reference.
    pub fn resolve(&self, py: Python<'_>) -> PyResult<()> {
        match self {
            Nested::List(e) | Nested::Dict(_, e) => e.resolve(py),
        }
    }

    fn same_as(&self, other: &Nested) -> bool {
        match (self, other) {
            (Nested::List(a), Nested::List(b)) => a.same_as(b),
            (Nested::Dict(ka, a), Nested::Dict(kb, b)) => ka == kb && a.same_as(b),
            _ => false,
        }
    }

    /// The native container for `value`: an existing container of the same kind (shared), or
    /// a new one made from a plain iterable (a mapping, for a dict), every element converted
    /// and checked first.
    pub fn convert<'py>(
        &self,
        value: &Bound<'py, PyAny>,
        moves: &mut Moves<'py>,
    ) -> PyResult<ObjAny> {
        if let Some(existing) = self.existing(value)? {
            return Ok(existing);
        }
        match self {
            Nested::List(elem) => new_list(elem, value, moves).map(ObjRef::into_any),
            Nested::Dict(k, v) => new_map(k, v, value, moves).map(ObjRef::into_any),
        }
    }

    /// `value`'s native container if it is a tether container of this kind; a `TypeError` if it
    /// is one of another kind; `None` for anything else.
    fn existing(&self, value: &Bound<'_, PyAny>) -> PyResult<Option<ObjAny>> {
        // SAFETY: `value` is live; GIL held.
        if !unsafe { is_wrapper(value.as_ptr()) } {
            return Ok(None);
        }
        // SAFETY: a wrapper, kept alive by `value`.
        let obj = unsafe { native::counted(value.as_ptr()) }?;
        let theirs = nested_of(&obj);
        match theirs {
            Some(t) if t.same_as(self) => Ok(Some(obj)),
            Some(t) => Err(PyTypeError::new_err(format!(
                "expected {}, got {}",
                self.display(),
                t.display()
            ))),
            None => Ok(None),
        }
    }
}

/// The container kind of a native container object, if it is one (its spec, or for a container
/// made natively without one, a spec of its native kinds).
pub fn nested_of(obj: &ObjAny) -> Option<Nested> {
    if let Some(l) = obj.downcast_ref::<List>() {
        return Some(Nested::List(list_spec(l)));
    }
    obj.downcast_ref::<Map>().map(|m| {
        let (k, v) = map_spec(m);
        Nested::Dict(k.clone(), v)
    })
}

/// A native list's element spec (its host tag; for a list made natively, one for its kind).
pub fn list_spec(l: &List) -> &'static ElemSpec {
    let tag = l.host_tag();
    if tag.is_null() {
        plain_spec(l.elem())
    } else {
        // SAFETY: tags are only ever set to leaked `&'static ElemSpec`s (`new_list`).
        unsafe { &*tag.cast::<ElemSpec>() }
    }
}

/// A native map's key kind and value spec.
pub fn map_spec(m: &Map) -> (&FieldKind, &'static ElemSpec) {
    let tag = m.host_tag();
    let v = if tag.is_null() {
        plain_spec(m.value_kind())
    } else {
        // SAFETY: tags are only ever set to leaked `&'static ElemSpec`s (`new_map`).
        unsafe { &*tag.cast::<ElemSpec>() }
    };
    (m.key_kind(), v)
}

/// A spec for a native kind alone (containers made by Rust code), interned.
fn plain_spec(kind: &FieldKind) -> &'static ElemSpec {
    static PLAIN: std::sync::Mutex<Vec<&'static ElemSpec>> = std::sync::Mutex::new(Vec::new());
    let mut all = PLAIN.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(s) = all.iter().find(|s| &s.kind == kind) {
        return s;
    }
    let s: &'static ElemSpec = Box::leak(Box::new(ElemSpec {
        kind: kind.clone(),
        constraint: None,
        forward: None,
        nested: None,
        owner: tether_runtime::types::ANY_OBJECT,
        display: kind_name(kind),
        root: &SpecRoot::Native,
        depth: 1,
    }));
    all.push(s);
    s
}

/// A new native list of `elem`s from the iterable `items`.
pub fn new_list<'py>(
    elem: &'static ElemSpec,
    items: &Bound<'py, PyAny>,
    moves: &mut Moves<'py>,
) -> PyResult<ObjRef<List>> {
    let values = convert_items(elem, items, moves, "tether.List", 0)?;
    let l = List::from_values(elem.kind.clone(), values)
        .map_err(|e| crate::errors::to_pyerr(items.py(), e))?;
    l.set_host_tag(core::ptr::from_ref(elem).cast_mut().cast::<c_void>());
    ObjRef::try_new(l).map_err(|_| pyo3::exceptions::PyMemoryError::new_err("out of memory"))
}

/// Every element of `items`, converted for `elem`; the error names the index the element would
/// have taken (`offset` + its position).
pub fn convert_items<'py>(
    elem: &ElemSpec,
    items: &Bound<'py, PyAny>,
    moves: &mut Moves<'py>,
    what: &str,
    offset: usize,
) -> PyResult<Vec<Value>> {
    if items.is_instance_of::<PyString>()
        || items.is_instance_of::<PyBytes>()
        || items.is_instance_of::<PyDict>()
    {
        return Err(PyTypeError::new_err(format!(
            "expected an iterable of {} for {what}[{}], got {}",
            elem.display,
            elem.display,
            items.get_type().name()?
        )));
    }
    let iter = items.try_iter().map_err(|_| {
        PyTypeError::new_err(format!(
            "expected an iterable for {what}[{}], got {}",
            elem.display,
            items
                .get_type()
                .name()
                .map_or_else(|_| "?".into(), |n| n.to_string())
        ))
    })?;
    let mut out = Vec::new();
    for (i, item) in iter.enumerate() {
        let item = item?;
        out.push(
            elem.convert(&item, moves)
                .map_err(|e| index_error(item.py(), e, what, elem, offset + i))?,
        );
    }
    Ok(out)
}

/// `e`, prefixed with the container and the index (a `TypeError`) when it is about the element.
pub fn index_error(py: Python<'_>, e: PyErr, what: &str, elem: &ElemSpec, i: usize) -> PyErr {
    super::annotate(py, e, &format!("{what}[{}] index {i}", elem.display))
}

/// A new native map from the mapping (or iterable of pairs) `items`.
pub fn new_map<'py>(
    key: &FieldKind,
    value: &'static ElemSpec,
    items: &Bound<'py, PyAny>,
    moves: &mut Moves<'py>,
) -> PyResult<ObjRef<Map>> {
    let entries = convert_entries(key, value, items, moves)?;
    let m = Map::new(key.clone(), value.kind.clone());
    m.update(entries)
        .map_err(|e| crate::errors::to_pyerr(items.py(), e))?;
    m.set_host_tag(core::ptr::from_ref(value).cast_mut().cast::<c_void>());
    ObjRef::try_new(m).map_err(|_| pyo3::exceptions::PyMemoryError::new_err("out of memory"))
}

/// Every entry of `items` (a mapping, or an iterable of key-value pairs), converted (the error
/// names the key).
pub fn convert_entries<'py>(
    key: &FieldKind,
    value: &ElemSpec,
    items: &Bound<'py, PyAny>,
    moves: &mut Moves<'py>,
) -> PyResult<Vec<(MapKey, Value)>> {
    let py = items.py();
    let what = format!("tether.Dict[{}, {}]", kind_name(key), value.display);
    let pairs = if items.hasattr("keys")? {
        let keys = items.call_method0("keys")?;
        let mut v = Vec::new();
        for k in keys.try_iter()? {
            let k = k?;
            let val = items.get_item(&k)?;
            v.push((k, val));
        }
        v
    } else {
        let mut v = Vec::new();
        for pair in items.try_iter().map_err(|_| {
            PyTypeError::new_err(format!(
                "expected a mapping for {what}, got {}",
                items
                    .get_type()
                    .name()
                    .map_or_else(|_| "?".into(), |n| n.to_string())
            ))
        })? {
            let (k, val): (Bound<'py, PyAny>, Bound<'py, PyAny>) = pair?.extract()?;
            v.push((k, val));
        }
        v
    };
    let mut out = Vec::with_capacity(pairs.len());
    for (k, v) in pairs {
        let mk = map_key(key, &k, moves).map_err(|e| {
            super::annotate(
                py,
                e,
                &format!(
                    "{what} key {}",
                    k.repr().map_or_else(|_| "?".into(), |r| r.to_string())
                ),
            )
        })?;
        let mv = value.convert(&v, moves).map_err(|e| {
            super::annotate(
                py,
                e,
                &format!(
                    "{what} key {}",
                    k.repr().map_or_else(|_| "?".into(), |r| r.to_string())
                ),
            )
        })?;
        out.push((mk, mv));
    }
    Ok(out)
}

/// `k` as a key of kind `key`.
pub fn map_key<'py>(
    key: &FieldKind,
    k: &Bound<'py, PyAny>,
    moves: &mut Moves<'py>,
) -> PyResult<MapKey> {
    let got = || {
        k.get_type()
            .name()
            .map_or_else(|_| "?".into(), |n| n.to_string())
    };
    match key {
        FieldKind::Str => match k.cast::<PyString>() {
            Ok(_) => match from_py_kind(k, key, moves)? {
                Value::Str(s) => Ok(MapKey::Str(s)),
                _ => unreachable!("a str converts to a str"),
            },
            Err(_) => Err(PyTypeError::new_err(format!(
                "expected a str key, got {}",
                got()
            ))),
        },
        FieldKind::Int
            if k.is_instance_of::<PyInt>() && !k.is_instance_of::<pyo3::types::PyBool>() =>
        {
            match from_py_kind(k, key, moves)? {
                Value::Int(i) => Ok(MapKey::Int(i)),
                _ => unreachable!("an int converts to an int"),
            }
        }
        FieldKind::Int => Err(PyTypeError::new_err(format!(
            "expected an int key, got {}",
            got()
        ))),
        FieldKind::Bytes => match from_py_kind(k, key, moves) {
            Ok(Value::Bytes(b)) => Ok(MapKey::Bytes(b)),
            _ => Err(PyTypeError::new_err(format!(
                "expected a bytes key, got {}",
                got()
            ))),
        },
        FieldKind::Object(_) => match from_py_kind(k, key, moves)? {
            Value::Object(o) => Ok(MapKey::Object(o)),
            _ => Err(PyTypeError::new_err(format!(
                "expected a {} key, got {}",
                kind_name(key),
                got()
            ))),
        },
        _ => Err(PyTypeError::new_err(format!(
            "unsupported key kind {}",
            kind_name(key)
        ))),
    }
}

/// An element kind as the annotation gives it, before its class exists: kinds may still hold
/// the placeholders for the class itself and for classes defined later ([`ElemDraft::finish`]
/// replaces them).
#[derive(Debug)]
pub struct ElemDraft {
    /// The native kind, placeholders included.
    pub kind: FieldKind,
    /// Enum, literal and union checks.
    pub constraint: Option<Constraint>,
    /// A class defined later: its name and where to look it up.
    pub forward: Option<(String, Vec<Py<PyDict>>)>,
    /// A container element.
    pub nested: Option<NestedDraft>,
    /// How the annotation reads.
    pub display: String,
}

/// A container kind as the annotation gives it (see [`ElemDraft`]).
#[derive(Debug)]
pub enum NestedDraft {
    /// `list[T]`.
    List(Box<ElemDraft>),
    /// `dict[K, V]`.
    Dict(FieldKind, Box<ElemDraft>),
}

impl ElemDraft {
    /// The final spec for class `me` (leaked: specs live as long as the containers and fields
    /// that point at them). `replace` maps the placeholders in a kind.
    pub fn finish(
        self,
        me: u32,
        replace: fn(FieldKind, u32) -> FieldKind,
        root: &'static SpecRoot,
        depth: u32,
    ) -> &'static ElemSpec {
        Box::leak(Box::new(ElemSpec {
            kind: replace(self.kind, me),
            constraint: self.constraint,
            forward: self.forward.map(|(n, g)| Forward::new(n, g)),
            nested: self.nested.map(|n| n.finish(me, replace, root, depth + 1)),
            owner: me,
            display: self.display,
            root,
            depth,
        }))
    }
}

impl NestedDraft {
    /// See [`ElemDraft::finish`].
    /// See [`ElemDraft::finish`]; `depth` is that of this container's element.
    pub fn finish(
        self,
        me: u32,
        replace: fn(FieldKind, u32) -> FieldKind,
        root: &'static SpecRoot,
        depth: u32,
    ) -> Nested {
        match self {
            NestedDraft::List(e) => Nested::List(e.finish(me, replace, root, depth)),
            NestedDraft::Dict(k, v) => {
                Nested::Dict(replace(k, me), v.finish(me, replace, root, depth))
            }
        }
    }
}

/// The runtime type indexes of the two container types.
pub fn list_type() -> u32 {
    List::type_index()
}

/// See [`list_type`].
pub fn map_type() -> u32 {
    Map::type_index()
}

//! The metaclass `tether.ObjectMeta`: turns a class body's annotations into native fields.
//!
//! Class creation (`meta_new`):
//! 1. find the tether parent among the bases (at most one with fields, or field lists that are
//!    prefixes of each other: two unrelated field layouts would collide on slot indexes);
//! 2. read `__annotations__`: each field's kind (`int`, `float`, `bool`, `str`, `bytes`,
//!    `object`, `Optional[...]`, a tether class, or the class itself by name), its default
//!    (taken out of the namespace) and clashes with methods;
//! 3. register a runtime record type (parent's fields + own) and put one descriptor per own field
//!    into the namespace, with `__slots__ = ()` so instances get no `__dict__`;
//! 4. let `type.__new__` build the class, then check and patch it before any instance exists:
//!    the wrapper's basic size, no dict, no item size; clear the GC flag (instances hold no
//!    Python references: a set GC flag on this layout crashed `gc.collect()` in the notes);
//!    install our `tp_alloc`/`tp_free`/`tp_dealloc`; record the `ClassInfo` in the metaclass's
//!    extra slot and the class in the runtime's type registry.

use crate::class::{register_class, ClassInfo, FieldDef};
use crate::convert::{from_py_kind, Moves};
use crate::field::new_descr;
use crate::pool;
use crate::pytypes::{is_tether_class, BASE_TYPE, META_TYPE, WRAPPER_SIZE};
use crate::trap::trap;
use crate::wrapper;
use core::ffi::c_void;
use core::ptr;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::Relaxed};
use pyo3::exceptions::PyTypeError;
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString, PyTuple, PyType};
use tether_runtime::types::{
    register_record_type_with, type_info, FieldAccess, FieldKind, FieldSpec, RecordOptions,
    ANY_OBJECT,
};

/// The Rust-defined runtime type the next class creation declares, set only by
/// [`create_native_class`] (this extension's own code) around its call of the metaclass and
/// taken by `meta_new` before any Python code runs. A class body has no way to set it, so no
/// Python code can bind a class to another type's objects.
static PENDING_NATIVE: AtomicU32 = AtomicU32::new(NO_NATIVE);
const NO_NATIVE: u32 = u32::MAX;

/// Offset of the `*const ClassInfo` slot in a class object (after CPython's heap type).
const INFO_OFFSET: usize = core::mem::size_of::<ffi::PyHeapTypeObject>();

/// The runtime type index of `tether.Object` (u32::MAX until created).
static ROOT_INDEX: AtomicU32 = AtomicU32::new(u32::MAX);

/// Distinguishes runtime type names of classes declared more than once (same qualified name).
static DECLARATIONS: AtomicU64 = AtomicU64::new(0);

/// The class info of `tp`, if it is a tether class.
///
/// # Safety
/// `tp` is a live type object; GIL held.
pub unsafe fn class_info(tp: *mut ffi::PyTypeObject) -> Option<&'static ClassInfo> {
    // SAFETY: `tp` is live; a type whose metatype is (a subtype of) ours has the extra slot,
    // which holds null or a leaked &'static ClassInfo.
    unsafe {
        if !is_tether_class(tp) {
            return None;
        }
        let slot = tp.cast::<u8>().add(INFO_OFFSET).cast::<*const ClassInfo>();
        slot.read().as_ref()
    }
}

/// Resolves one annotation into a field kind.
fn resolve_kind(
    py: Python<'_>,
    ann: &Bound<'_, PyAny>,
    class_name: &str,
    globals: &Bound<'_, PyDict>,
    ns: &Bound<'_, PyDict>,
) -> PyResult<FieldKind> {
    let builtins = py.import("builtins")?;
    let typing = py.import("typing")?;
    // String annotations (and typing.ForwardRef) name a type: the class itself, or something
    // visible from the class body or its module.
    let text = if let Ok(s) = ann.cast::<PyString>() {
        Some(s.to_string())
    } else if ann.is_instance(&typing.getattr("ForwardRef")?)? {
        Some(ann.getattr("__forward_arg__")?.extract::<String>()?)
    } else {
        None
    };
    if let Some(text) = text {
        if text == class_name {
            return Ok(FieldKind::Object(SELF_KIND));
        }
        let Ok(value) = builtins
            .getattr("eval")?
            .call1((text.as_str(), globals, ns))
        else {
            return Err(PyTypeError::new_err(format!(
                "cannot resolve the annotation '{text}' (use a class defined before this one, \
                 or the class's own name)"
            )));
        };
        return resolve_kind(py, &value, class_name, globals, ns);
    }
    for (name, kind) in [
        ("bool", FieldKind::Bool),
        ("int", FieldKind::Int),
        ("float", FieldKind::Float),
        ("str", FieldKind::Str),
        ("bytes", FieldKind::Bytes),
        ("object", FieldKind::Any),
    ] {
        if ann.is(&builtins.getattr(name)?) {
            return Ok(kind);
        }
    }
    // Optional[X], Union[X, None], X | None
    let args = typing
        .getattr("get_args")?
        .call1((ann,))?
        .cast_into::<PyTuple>()?;
    let origin = typing.getattr("get_origin")?.call1((ann,))?;
    let is_union = origin.is(&typing.getattr("Union")?)
        || origin.is(&py.import("types")?.getattr("UnionType")?);
    if is_union {
        let none_type = py.None().into_bound(py).get_type();
        let others: Vec<_> = args.iter().filter(|a| !a.is(&none_type)).collect();
        if others.len() == 1 && args.len() == 2 {
            let inner = resolve_kind(py, &others[0], class_name, globals, ns)?;
            return Ok(FieldKind::Optional(Box::new(inner)));
        }
    }
    if let Ok(tp) = ann.cast::<PyType>() {
        // SAFETY: `tp` is a live type object; GIL held.
        if let Some(info) = unsafe { class_info(tp.as_ptr().cast()) } {
            // `tether.Object` itself means any tether object.
            if ROOT_INDEX.load(Relaxed) == info.type_index {
                return Ok(FieldKind::Object(ANY_OBJECT));
            }
            return Ok(FieldKind::Object(info.type_index));
        }
    }
    Err(PyTypeError::new_err(format!(
        "unsupported field type {}: use int, float, bool, str, bytes, object, Optional[...] or \
         a tether.Object subclass",
        ann.repr()?
    )))
}

/// Placeholder for "the class being defined", replaced by its type index once registered.
const SELF_KIND: u32 = u32::MAX - 1;

fn replace_self(kind: FieldKind, me: u32) -> FieldKind {
    match kind {
        FieldKind::Object(SELF_KIND) => FieldKind::Object(me),
        FieldKind::Optional(k) => FieldKind::Optional(Box::new(replace_self(*k, me))),
        k => k,
    }
}

/// The runtime's view of a kind: the class's own type is not registered yet when its schema is
/// given, so a self-reference is checked as "any object" natively (and exactly by Python).
fn runtime_kind(kind: &FieldKind) -> FieldKind {
    match kind {
        FieldKind::Object(SELF_KIND) => FieldKind::Object(ANY_OBJECT),
        FieldKind::Optional(k) => FieldKind::Optional(Box::new(runtime_kind(k))),
        k => k.clone(),
    }
}

/// The parent's class info, rejecting incompatible field layouts.
fn tether_parent(bases: &Bound<'_, PyTuple>) -> PyResult<(Option<&'static ClassInfo>, bool)> {
    let base_type = BASE_TYPE.load(Relaxed);
    let mut best: Option<&'static ClassInfo> = None;
    let mut has_base = false;
    for b in bases.iter() {
        let Ok(tp) = b.cast::<PyType>() else { continue };
        let tp = tp.as_ptr().cast::<ffi::PyTypeObject>();
        has_base |= tp == base_type;
        // SAFETY: `tp` is a live type; GIL held.
        let Some(info) = (unsafe { class_info(tp) }) else {
            continue;
        };
        best = Some(match best {
            None => info,
            Some(cur) => {
                let (short, long) = if cur.fields.len() <= info.fields.len() {
                    (cur, info)
                } else {
                    (info, cur)
                };
                let prefix = short
                    .fields
                    .iter()
                    .zip(&long.fields)
                    .all(|(a, b)| ptr::eq(*a, *b));
                if !prefix {
                    return Err(PyTypeError::new_err(
                        "tether bases with different fields cannot be combined",
                    ));
                }
                long
            }
        });
    }
    Ok((best, has_base))
}

/// Normalizes and checks `__slots__`: only `()` or `('__weakref__',)` are accepted (the
/// wrapper already has a weakref slot, and instances can hold no other Python state).
fn check_slots(ns: &Bound<'_, PyDict>) -> PyResult<()> {
    if let Some(slots) = ns.get_item("__slots__")? {
        let names: Vec<String> = if let Ok(s) = slots.cast::<PyString>() {
            vec![s.to_string()]
        } else {
            slots
                .try_iter()?
                .map(|x| x?.extract::<String>())
                .collect::<PyResult<_>>()?
        };
        if names.iter().any(|n| n != "__weakref__") {
            return Err(PyTypeError::new_err(
                "tether classes keep their state natively: __slots__ may only be () or \
                 ('__weakref__',); declare fields with annotations",
            ));
        }
    }
    ns.set_item("__slots__", PyTuple::empty(ns.py()))
}

fn is_method_like(py: Python<'_>, v: &Bound<'_, PyAny>) -> PyResult<bool> {
    let builtins = py.import("builtins")?;
    let types = py.import("types")?;
    for t in [
        types.getattr("FunctionType")?,
        builtins.getattr("classmethod")?,
        builtins.getattr("staticmethod")?,
        builtins.getattr("property")?,
    ] {
        if v.is_instance(&t)? {
            return Ok(true);
        }
    }
    Ok(false)
}

struct OwnField {
    name: String,
    kind: FieldKind,
    default: Option<tether_runtime::Value>,
}

/// Reads the class body's annotations into fields (without registering anything).
fn own_fields(
    py: Python<'_>,
    class_name: &str,
    ns: &Bound<'_, PyDict>,
    parent: Option<&ClassInfo>,
) -> PyResult<Vec<OwnField>> {
    let Some(ann) = ns.get_item("__annotations__")? else {
        return Ok(Vec::new());
    };
    let ann = ann.cast_into::<PyDict>()?;
    let module = ns.get_item("__module__")?;
    let globals = match module {
        Some(m) => py
            .import("sys")?
            .getattr("modules")?
            .get_item(m)
            .and_then(|m| m.getattr("__dict__"))
            .and_then(|d| Ok(d.cast_into::<PyDict>()?))
            .unwrap_or_else(|_| PyDict::new(py)),
        None => PyDict::new(py),
    };
    let classvar = py.import("typing")?.getattr("ClassVar")?;
    let get_origin = py.import("typing")?.getattr("get_origin")?;
    let mut out = Vec::new();
    for (name, a) in ann.iter() {
        let name: String = name.extract()?;
        if a.is(&classvar) || get_origin.call1((&a,))?.is(&classvar) {
            continue;
        }
        if let Ok(s) = a.cast::<PyString>() {
            if s.to_str()?.starts_with("ClassVar") {
                continue;
            }
        }
        if parent.is_some_and(|p| p.fields.iter().any(|f| f.name == name)) {
            return Err(PyTypeError::new_err(format!(
                "field '{name}' of {class_name} is already declared by a base class"
            )));
        }
        let kind = resolve_kind(py, &a, class_name, &globals, ns)
            .map_err(|e| crate::class::annotate(py, e, &format!("{class_name}.{name}")))?;
        let default = match ns.get_item(&name)? {
            None => None,
            Some(v) if is_method_like(py, &v)? => {
                return Err(PyTypeError::new_err(format!(
                    "field '{name}' of {class_name} clashes with a method or property of the \
                     same name"
                )))
            }
            Some(v) => {
                ns.del_item(&name)?;
                let check = match &kind {
                    FieldKind::Object(SELF_KIND) => FieldKind::Object(ANY_OBJECT),
                    k => runtime_kind(k),
                };
                let mut moves = Moves::new();
                let d = from_py_kind(&v, &check, &mut moves).map_err(|e| {
                    crate::class::annotate(py, e, &format!("default of {class_name}.{name}"))
                })?;
                moves.commit()?; // a token as a default: the class takes its object
                Some(d)
            }
        };
        out.push(OwnField {
            name,
            kind,
            default,
        });
    }
    Ok(out)
}

/// Builds the class info for a class declared in Python: registers its record type.
fn declare_record(
    py: Python<'_>,
    class_name: &str,
    qualname: &str,
    ns: &Bound<'_, PyDict>,
    parent: Option<&'static ClassInfo>,
    frozen: bool,
) -> PyResult<(ClassInfo, Vec<&'static FieldDef>)> {
    let own = own_fields(py, class_name, ns, parent)?;
    let specs = own
        .iter()
        .map(|f| FieldSpec {
            name: f.name.clone(),
            kind: runtime_kind(&f.kind),
            default: f.default.clone(),
        })
        .collect();
    let n = DECLARATIONS.fetch_add(1, Relaxed);
    // A parent without fields (tether.Object, or a fieldless mixin class) adds nothing to the
    // record; it is the runtime parent only when frozenness agrees (the runtime forbids mixing).
    let runtime_parent = parent
        .filter(|p| !(p.fields.is_empty() && p.frozen != frozen))
        .map(|p| p.type_index);
    let type_index = register_record_type_with(
        &format!("{qualname}#{n}"),
        runtime_parent,
        specs,
        RecordOptions { frozen },
    )
    .map_err(|e| crate::errors::to_pyerr(py, e))?;
    let base = parent.map_or(0, |p| p.fields.len());
    let mut fields: Vec<&'static FieldDef> = parent.map(|p| p.fields.clone()).unwrap_or_default();
    let mut new_defs = Vec::new();
    for (j, f) in own.into_iter().enumerate() {
        let def: &'static FieldDef = Box::leak(Box::new(FieldDef {
            name: f.name,
            kind: replace_self(f.kind, type_index),
            default: f.default,
            access: FieldAccess::Inline(base + j),
            owner: type_index,
            frozen,
        }));
        fields.push(def);
        new_defs.push(def);
    }
    let info = ClassInfo {
        type_index,
        fields,
        frozen,
        constructible: true,
        name: class_name.to_string(),
        held: AtomicBool::new(false),
    };
    Ok((info, new_defs))
}

/// Builds the class info for a Rust-defined runtime type (fields by reflected accessors).
fn declare_native(
    class_name: &str,
    type_index: u32,
) -> PyResult<(ClassInfo, Vec<&'static FieldDef>)> {
    let ti = type_info(type_index)
        .ok_or_else(|| PyTypeError::new_err(format!("unknown native type {type_index}")))?;
    let mut fields = Vec::new();
    for f in ti.fields.iter() {
        let def: &'static FieldDef = Box::leak(Box::new(FieldDef {
            name: f.name.to_string(),
            kind: f.kind.clone(),
            default: f.default.clone(),
            access: f.access.clone(),
            owner: type_index,
            frozen: ti.frozen,
        }));
        fields.push(def);
    }
    let info = ClassInfo {
        type_index,
        fields: fields.clone(),
        frozen: ti.frozen,
        constructible: false,
        name: class_name.to_string(),
        held: AtomicBool::new(false),
    };
    Ok((info, fields))
}

unsafe extern "C" fn meta_new(
    meta: *mut ffi::PyTypeObject,
    args: *mut ffi::PyObject,
    kw: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    // SAFETY: CPython slot: GIL held; `args` is a tuple, `kw` a dict or null.
    unsafe {
        // Taken first, before any Python code runs (see PENDING_NATIVE).
        let native = match PENDING_NATIVE.swap(NO_NATIVE, Relaxed) {
            NO_NATIVE => None,
            idx => Some(idx),
        };
        trap(ptr::null_mut(), |py| {
            let args = Bound::from_borrowed_ptr(py, args).cast_into::<PyTuple>()?;
            let (name, bases, ns): (Bound<PyString>, Bound<PyTuple>, Bound<PyDict>) =
                args.extract()?;
            let ns = ns.copy()?;
            let kw = if kw.is_null() {
                PyDict::new(py)
            } else {
                Bound::from_borrowed_ptr(py, kw)
                    .cast_into::<PyDict>()?
                    .copy()?
            };
            let frozen_kw = match kw.get_item("frozen")? {
                Some(v) => {
                    kw.del_item("frozen")?;
                    Some(v.is_truthy()?)
                }
                None => None,
            };
            let is_root = match ns.get_item("__tether_root__")? {
                Some(_) => {
                    ns.del_item("__tether_root__")?;
                    true
                }
                None => false,
            };
            let class_name = name.to_str()?.to_string();
            let (parent, has_base) = tether_parent(&bases)?;
            if parent.is_none() && !has_base {
                return Err(PyTypeError::new_err(format!(
                    "{class_name} must derive from tether.Object"
                )));
            }
            let parent_frozen = parent.is_some_and(|p| p.frozen);
            let parent_has_fields = parent.is_some_and(|p| !p.fields.is_empty());
            let frozen = frozen_kw.unwrap_or(parent_frozen);
            if parent_has_fields && frozen != parent_frozen {
                return Err(PyTypeError::new_err(format!(
                    "{class_name}: cannot mix frozen and non-frozen tether classes with fields"
                )));
            }
            check_slots(&ns)?;
            let qualname = match ns.get_item("__qualname__")? {
                Some(q) => q.extract::<String>()?,
                None => class_name.clone(),
            };
            let module = match ns.get_item("__module__")? {
                Some(m) => m.extract::<String>().unwrap_or_default(),
                None => String::new(),
            };
            let (info, own_defs) = match native {
                Some(idx) => declare_native(&class_name, idx)?,
                None => declare_record(
                    py,
                    &class_name,
                    &format!("{module}.{qualname}"),
                    &ns,
                    parent,
                    frozen,
                )?,
            };
            for def in &own_defs {
                ns.set_item(&def.name, new_descr(py, def)?)?;
            }
            let call_args = PyTuple::new(py, [name.into_any(), bases.into_any(), ns.into_any()])?;
            let type_new = (*ptr::addr_of_mut!(ffi::PyType_Type))
                .tp_new
                .expect("type.tp_new");
            let cls = type_new(meta, call_args.as_ptr(), kw.as_ptr());
            if cls.is_null() {
                return Err(PyErr::fetch(py));
            }
            let cls = Bound::from_owned_ptr(py, cls);
            let tp = cls.as_ptr().cast::<ffi::PyTypeObject>();
            if (*tp).tp_basicsize != WRAPPER_SIZE as ffi::Py_ssize_t
                || (*tp).tp_itemsize != 0
                || (*tp).tp_dictoffset != 0
            {
                return Err(PyTypeError::new_err(format!(
                    "{class_name}: a base adds instance state (__dict__ or slots); tether objects \
                     keep their state natively, so mixins must declare __slots__ = ()"
                )));
            }
            (*tp).tp_flags &= !ffi::Py_TPFLAGS_HAVE_GC;
            (*tp).tp_traverse = None;
            (*tp).tp_clear = None;
            (*tp).tp_alloc = Some(pool::tp_alloc);
            (*tp).tp_free = Some(pool::tp_free);
            (*tp).tp_dealloc = Some(wrapper::tp_dealloc);
            let type_index = info.type_index;
            if is_root {
                ROOT_INDEX.store(type_index, Relaxed);
            }
            let info: &'static ClassInfo = Box::leak(Box::new(info));
            tp.cast::<u8>()
                .add(INFO_OFFSET)
                .cast::<*const ClassInfo>()
                .write(info);
            register_class(type_index, tp)?;
            Ok(cls.into_ptr())
        })
    }
}

unsafe extern "C" fn meta_dealloc(o: *mut ffi::PyObject) {
    // SAFETY: CPython slot: `o` is a dying class object. type's own dealloc frees it but does
    // not release the reference the class holds to its (heap) metatype; we do (notes: measured).
    unsafe {
        if let Some(info) = class_info(o.cast()) {
            crate::class::unregister_class(info.type_index, o.cast());
        }
        let mt = ffi::Py_TYPE(o);
        let type_dealloc = (*ptr::addr_of_mut!(ffi::PyType_Type))
            .tp_dealloc
            .expect("type dealloc");
        type_dealloc(o);
        ffi::Py_DECREF(mt.cast());
    }
}

/// Creates the metaclass (once, at module init).
pub fn create_meta_type(py: Python<'_>) -> PyResult<*mut ffi::PyTypeObject> {
    // SAFETY: the spec is only read during this call, under the GIL; `type` is a valid base.
    let tp = unsafe {
        let mut slots = [
            ffi::PyType_Slot {
                slot: ffi::Py_tp_new,
                pfunc: meta_new as *mut c_void,
            },
            ffi::PyType_Slot {
                slot: ffi::Py_tp_dealloc,
                pfunc: meta_dealloc as *mut c_void,
            },
            ffi::PyType_Slot {
                slot: ffi::Py_tp_doc,
                pfunc: c"The metaclass of tether classes: annotations become native fields."
                    .as_ptr() as *mut c_void,
            },
            ffi::PyType_Slot {
                slot: 0,
                pfunc: ptr::null_mut(),
            },
        ];
        let mut spec = ffi::PyType_Spec {
            name: c"tether._native.ObjectMeta".as_ptr(),
            basicsize: (INFO_OFFSET + core::mem::size_of::<*const ClassInfo>()) as i32,
            itemsize: 0,
            flags: (ffi::Py_TPFLAGS_DEFAULT | ffi::Py_TPFLAGS_BASETYPE) as u32,
            slots: slots.as_mut_ptr(),
        };
        let bases = PyTuple::new(py, [py.get_type::<PyType>()])?;
        ffi::PyType_FromSpecWithBases(&mut spec, bases.as_ptr())
    };
    if tp.is_null() {
        return Err(PyErr::fetch(py));
    }
    META_TYPE.store(tp.cast(), Relaxed);
    Ok(tp.cast())
}

/// Creates `tether.Object`: the root class (no fields), by calling the metaclass.
pub fn create_root(py: Python<'_>, meta: *mut ffi::PyTypeObject) -> PyResult<Bound<'_, PyAny>> {
    // SAFETY: `meta` and `_Base` are the live types made at module init.
    let (meta, base) = unsafe {
        (
            Bound::from_borrowed_ptr(py, meta.cast()),
            Bound::from_borrowed_ptr(py, BASE_TYPE.load(Relaxed).cast()),
        )
    };
    let ns = PyDict::new(py);
    ns.set_item("__module__", "tether")?;
    ns.set_item("__qualname__", "Object")?;
    ns.set_item("__tether_root__", true)?;
    ns.set_item(
        "__doc__",
        "Base of tether classes: annotated fields are stored natively, and each native object has \
         one canonical wrapper (a.x is a.x).",
    )?;
    meta.call1(("Object", (base,), ns))
}

/// Creates a Python class for a Rust-defined runtime type (read-only reflected fields).
pub fn create_native_class<'py>(
    py: Python<'py>,
    root: &Bound<'py, PyAny>,
    name: &str,
    module: &str,
    type_index: u32,
) -> PyResult<Bound<'py, PyAny>> {
    let meta = root.get_type();
    let ns = PyDict::new(py);
    ns.set_item("__module__", module)?;
    ns.set_item("__qualname__", name)?;
    PENDING_NATIVE.store(type_index, Relaxed);
    let cls = meta.call1((name, (root,), ns));
    PENDING_NATIVE.store(NO_NATIVE, Relaxed); // in case the call failed before meta_new
    cls
}

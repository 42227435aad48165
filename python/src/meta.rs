//! Floor 8: the metaclass `tether.ObjectMeta`: turns a class body's annotations into native
//! fields ([`annotations`], [`kinds`]), registers the record type ([`declare`]), then builds and patches the
//! class.
//!
//! Class creation (`meta_new`):
//! 1. find the tether parent among the bases (at most one with fields, or field lists that are
//!    prefixes of each other: two unrelated field layouts would collide on slot indexes);
//! 2. read `__annotations__`: each field's kind ([`kinds`]: scalars, `object`/`Any`, tether
//!    classes and the class itself, enums, literals, unions, containers, `Annotated`, `Final`),
//!    its default (taken out of the namespace) and clashes with methods;
//! 3. register a runtime record type (parent's fields + own) and put one descriptor per own field
//!    into the namespace, with `__slots__ = ()` so instances get no `__dict__`;
//! 4. let `type.__new__` build the class, then check and patch it before any instance exists:
//!    the wrapper's basic size, no dict, no item size; clear the GC flag (instances hold no
//!    Python references: a set GC flag on this layout crashed `gc.collect()` in the notes);
//!    install our `tp_alloc`/`tp_free`/`tp_dealloc`; record the `ClassInfo` in the metaclass's
//!    extra slot and the class in the runtime's type registry.

mod annotations;
mod kinds;
pub use annotations::_set_field_spec_type;
mod declare;

use crate::base;
use crate::class::{class_info, set_class_info, ClassInfo};
use crate::classes::{register_class, unregister_class};
use crate::field::new_descr;
use crate::pool;
use crate::pytypes::{OffsetMember, BASE_TYPE, CLASS_INFO_OFFSET, META_TYPE, WRAPPER_SIZE};
use crate::trap::trap;
use crate::wrapper;
use annotations::check_slots;
use core::ffi::c_void;
use core::ptr;
use core::sync::atomic::Ordering::Relaxed;
use declare::{declare_native, declare_record, tether_parent};
pub use kinds::replace_self as replace_placeholders;
use kinds::ROOT_INDEX;

use pyo3::exceptions::PyTypeError;
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyString, PyTuple};

std::thread_local! {
    /// The Rust-defined runtime type the next class creation on this thread declares, set only
    /// by [`create_native_class`] (this extension's own code) around its call of the metaclass
    /// and taken by `meta_new` before any Python code runs. A class body has no way to set it,
    /// so no Python code can bind a class to another type's objects; per thread, so a class
    /// created at the same moment on another thread (free-threaded builds) cannot take it.
    static PENDING_NATIVE: core::cell::Cell<u32> = const { core::cell::Cell::new(NO_NATIVE) };
}
const NO_NATIVE: u32 = u32::MAX;

/// `tether._finish_class(cls, eq, frozen)`, registered by the package at import
/// ([`set_class_hook`]) and called on every new class after it is registered.
static CLASS_HOOK: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

/// `_native._set_class_hook(f)`: registers the Python-level class finisher (once).
#[pyfunction]
pub fn _set_class_hook(py: Python<'_>, f: Py<PyAny>) {
    let _ = CLASS_HOOK.set(py, f);
}

unsafe extern "C" fn meta_new(
    meta: *mut ffi::PyTypeObject,
    args: *mut ffi::PyObject,
    kw: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    // SAFETY: CPython slot: GIL held; `args` is a tuple, `kw` a dict or null.
    unsafe {
        // Taken first, before any Python code runs (see PENDING_NATIVE).
        let native = match PENDING_NATIVE.with(|p| p.replace(NO_NATIVE)) {
            NO_NATIVE => None,
            idx => Some(idx),
        };
        trap(ptr::null_mut(), |py| {
            let args = Bound::from_borrowed_ptr(py, args).cast_into::<PyTuple>()?;
            if args.len() != 3 {
                return Err(PyTypeError::new_err(format!(
                    "ObjectMeta() takes exactly 3 arguments (name, bases, namespace), {} given; \
                     use type(x) for an object's class",
                    args.len()
                )));
            }
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
            let eq = match kw.get_item("eq")? {
                Some(v) => {
                    kw.del_item("eq")?;
                    v.is_truthy()?
                }
                None => false,
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
            refuse_instance_dict_users(py, &class_name, &ns)?;
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
            // For tools and `match`: every field, inherited first (unless the body set its own).
            let names = PyTuple::new(py, info.fields.iter().map(|f| f.name.as_str()))?;
            if !ns.contains("__match_args__")? {
                ns.set_item("__match_args__", &names)?;
            }
            ns.set_item("__tether_fields__", &names)?;
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
            // A GC class only if its objects may hold Python objects (crate::referents): then
            // `gc.get_referents` traverses them; its wrappers are never tracked.
            if crate::referents::holds_python_objects(info.fields(), info.type_index) {
                crate::pytypes::set_type_flags(tp, ffi::Py_TPFLAGS_HAVE_GC);
                (*tp).tp_traverse = Some(crate::referents::tp_traverse);
            } else {
                crate::pytypes::clear_type_flags(tp, ffi::Py_TPFLAGS_HAVE_GC);
                (*tp).tp_traverse = None;
            }
            (*tp).tp_clear = None;
            (*tp).tp_alloc = Some(pool::tp_alloc);
            (*tp).tp_free = Some(pool::tp_free);
            (*tp).tp_dealloc = Some(wrapper::tp_dealloc);
            // Calls of the class go straight to tether's construction (the metaclass declares
            // HAVE_VECTORCALL with this field's offset; see `create_meta_type`).
            (*tp).tp_vectorcall = Some(base::class_vectorcall);
            let type_index = info.type_index;
            if is_root {
                ROOT_INDEX.store(type_index, Relaxed);
            }
            let info: &'static ClassInfo = Box::leak(Box::new(info));
            set_class_info(tp, info);
            register_class(type_index, tp)?;
            if eq && info.frozen {
                if let Some(f) = info
                    .fields()
                    .find(|f| matches!(f.kind, tether_runtime::types::FieldKind::Weak(_)))
                {
                    return Err(PyTypeError::new_err(format!(
                        "{class_name}: a frozen eq=True class hashes its fields, and weak field \
                         '{}' changes (to None) when its object dies: leave it out of the class \
                         or drop eq=True",
                        f.name
                    )));
                }
            }
            // The metaclass derives from abc.ABCMeta (so `class S(tether.Object, abc.ABC)` has
            // no metaclass conflict): the ABC state ABCMeta.__new__ would have set up, including
            // `__abstractmethods__` (instantiating an abstract class is then refused).
            abc_fn(py, &ABC_INIT, "_abc_init")?.call1((&cls,))?;
            if let Some(hook) = CLASS_HOOK.get(py) {
                // Python-level finishing (eq=True): `tether._finish_class`.
                hook.call1(py, (&cls, eq, info.frozen))?;
            }
            Ok(cls.into_ptr())
        })
    }
}

/// `functools.cached_property` stores into the instance `__dict__`, which tether objects do not
/// have: refuse it when the class is made, with what to do instead, rather than at first use.
fn refuse_instance_dict_users(
    py: Python<'_>,
    class_name: &str,
    ns: &Bound<'_, PyDict>,
) -> PyResult<()> {
    let cached = py.import("functools")?.getattr("cached_property")?;
    for (k, v) in ns.iter() {
        if v.is_instance(&cached)? {
            return Err(PyTypeError::new_err(format!(
                "{class_name}.{k}: functools.cached_property needs an instance __dict__, which \
                 tether objects do not have (their state is native); use a property, or declare \
                 a field and fill it"
            )));
        }
    }
    Ok(())
}

/// `tp_setattro` of the metaclass: `@dataclasses.dataclass` on a tether class would replace
/// `__init__` with one that assigns fields of an uninitialized object (every later use raises
/// `MovedError`); it is refused when it marks the class, before it changes anything else.
unsafe extern "C" fn meta_setattro(
    cls: *mut ffi::PyObject,
    name: *mut ffi::PyObject,
    value: *mut ffi::PyObject,
) -> i32 {
    // SAFETY: CPython slot: GIL held; `cls` a tether class, `name` a str, `value` live or null.
    unsafe {
        trap(-1, |py| {
            let n = Bound::from_borrowed_ptr(py, name);
            if let Ok(n) = n.cast::<PyString>() {
                if matches!(n.to_str()?, "__dataclass_fields__" | "__dataclass_params__") {
                    return Err(PyTypeError::new_err(format!(
                        "{}: @dataclass cannot be applied to a tether class: tether classes \
                         already get a constructor, repr and pickling from their annotated \
                         fields (pass frozen=True in the class statement for a frozen one)",
                        crate::pytypes::type_name(cls.cast())
                    )));
                }
            }
            let setattro = (*ptr::addr_of_mut!(ffi::PyType_Type))
                .tp_setattro
                .expect("type.tp_setattro");
            match setattro(cls, name, value) {
                0 => Ok(0),
                _ => Err(PyErr::fetch(py)),
            }
        })
    }
}

unsafe extern "C" fn meta_dealloc(o: *mut ffi::PyObject) {
    // SAFETY: CPython slot: `o` is a dying class object. type's own dealloc frees it but does
    // not release the reference the class holds to its (heap) metatype; we do (notes: measured).
    unsafe {
        if let Some(info) = class_info(o.cast()) {
            unregister_class(info.type_index, o.cast());
        }
        let mt = ffi::Py_TYPE(o);
        let type_dealloc = (*ptr::addr_of_mut!(ffi::PyType_Type))
            .tp_dealloc
            .expect("type dealloc");
        type_dealloc(o);
        ffi::Py_DECREF(mt.cast());
    }
}

/// The metaclass's one member: `__vectorcalloffset__`, which makes calling a class (an instance
/// of the metaclass) use the class's `tp_vectorcall` ([`base::class_vectorcall`]). CPython 3.11
/// does not let heap types inherit `type`'s vectorcall support, so the metaclass declares it.
static VECTORCALL_MEMBER: OffsetMember = OffsetMember::new(
    c"__vectorcalloffset__",
    core::mem::offset_of!(ffi::PyTypeObject, tp_vectorcall),
);

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
                slot: ffi::Py_tp_setattro,
                pfunc: meta_setattro as *mut c_void,
            },
            ffi::PyType_Slot {
                slot: ffi::Py_tp_members,
                pfunc: VECTORCALL_MEMBER.as_slot_ptr(),
            },
            ffi::PyType_Slot {
                slot: ffi::Py_tp_methods,
                pfunc: meta_methods().cast(),
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
            basicsize: (CLASS_INFO_OFFSET + core::mem::size_of::<*const ClassInfo>()) as i32,
            itemsize: 0,
            flags: (ffi::Py_TPFLAGS_DEFAULT
                | ffi::Py_TPFLAGS_BASETYPE
                | ffi::Py_TPFLAGS_HAVE_VECTORCALL) as u32,
            slots: slots.as_mut_ptr(),
        };
        // abc.ABCMeta: a tether class may also be an ABC (its instance layout is `type`'s).
        let abc_meta = py.import("abc")?.getattr("ABCMeta")?;
        let bases = PyTuple::new(py, [abc_meta])?;
        ffi::PyType_FromSpecWithBases(&mut spec, bases.as_ptr())
    };
    if tp.is_null() {
        return Err(PyErr::fetch(py));
    }
    META_TYPE.store(tp.cast(), Relaxed);
    Ok(tp.cast())
}

static ABC_INIT: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
static ABC_INSTANCECHECK: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
static ABC_SUBCLASSCHECK: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

/// `_abc`'s function `name`, looked up once.
fn abc_fn<'py>(
    py: Python<'py>,
    cell: &'static PyOnceLock<Py<PyAny>>,
    name: &str,
) -> PyResult<Bound<'py, PyAny>> {
    Ok(cell
        .get_or_try_init(py, || py.import("_abc")?.getattr(name).map(Bound::unbind))?
        .bind(py)
        .clone())
}

/// `isinstance(x, C)` for a tether class `C`: a real instance answers at once (the common
/// case, without ABCMeta's Python-level `__instancecheck__`); otherwise ABCMeta's rule decides
/// (classes registered with `C.register`).
unsafe extern "C" fn meta_instancecheck(
    cls: *mut ffi::PyObject,
    inst: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    // SAFETY: a METH_O method of the metaclass: `cls` is a tether class, `inst` any object.
    unsafe {
        trap(ptr::null_mut(), |py| {
            if ffi::PyType_IsSubtype(ffi::Py_TYPE(inst), cls.cast()) != 0 {
                return Ok(ffi::Py_NewRef(ffi::Py_True()));
            }
            let f = abc_fn(py, &ABC_INSTANCECHECK, "_abc_instancecheck")?;
            Ok(f.call1((
                Bound::from_borrowed_ptr(py, cls),
                Bound::from_borrowed_ptr(py, inst),
            ))?
            .into_ptr())
        })
    }
}

/// `issubclass(D, C)`, as [`meta_instancecheck`].
unsafe extern "C" fn meta_subclasscheck(
    cls: *mut ffi::PyObject,
    sub: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    // SAFETY: a METH_O method of the metaclass.
    unsafe {
        trap(ptr::null_mut(), |py| {
            if ffi::PyType_Check(sub) != 0 && ffi::PyType_IsSubtype(sub.cast(), cls.cast()) != 0 {
                return Ok(ffi::Py_NewRef(ffi::Py_True()));
            }
            let f = abc_fn(py, &ABC_SUBCLASSCHECK, "_abc_subclasscheck")?;
            Ok(f.call1((
                Bound::from_borrowed_ptr(py, cls),
                Bound::from_borrowed_ptr(py, sub),
            ))?
            .into_ptr())
        })
    }
}

/// The metaclass's methods (leaked once: the type points at them for ever).
fn meta_methods() -> *mut ffi::PyMethodDef {
    let defs = Box::leak(Box::new([
        ffi::PyMethodDef {
            ml_name: c"__instancecheck__".as_ptr(),
            ml_meth: ffi::PyMethodDefPointer {
                PyCFunction: meta_instancecheck,
            },
            ml_flags: ffi::METH_O,
            ml_doc: c"isinstance(x, cls)".as_ptr(),
        },
        ffi::PyMethodDef {
            ml_name: c"__subclasscheck__".as_ptr(),
            ml_meth: ffi::PyMethodDefPointer {
                PyCFunction: meta_subclasscheck,
            },
            ml_flags: ffi::METH_O,
            ml_doc: c"issubclass(sub, cls)".as_ptr(),
        },
        ffi::PyMethodDef::zeroed(),
    ]));
    defs.as_mut_ptr()
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
    PENDING_NATIVE.with(|p| p.set(type_index));
    let cls = meta.call1((name, (root,), ns));
    PENDING_NATIVE.with(|p| p.set(NO_NATIVE)); // in case the call failed before meta_new
    cls
}

/// The scope of a `tether.List[...]`/`tether.Dict[...]` written outside a class body: the
/// running frame's globals, for string element types.
fn standalone_globals(py: Python<'_>) -> PyResult<Vec<Bound<'_, PyDict>>> {
    // SAFETY: attached; a borrowed reference or null.
    let g = unsafe { ffi::PyEval_GetGlobals() };
    Ok(if g.is_null() {
        vec![PyDict::new(py)]
    } else {
        // SAFETY: a live dict borrowed from the running frame; the Bound takes a reference.
        vec![unsafe { Bound::from_borrowed_ptr(py, g) }.cast_into::<PyDict>()?]
    })
}

/// The element draft of `tether.List[ann]` (or a dict's value type).
pub fn standalone_elem(
    py: Python<'_>,
    ann: &Bound<'_, PyAny>,
) -> PyResult<crate::class::ElemDraft> {
    let globals = standalone_globals(py)?;
    let scope = kinds::Scope::new(py, "", &globals, &PyDict::new(py), false)?;
    kinds::elem_draft(py, ann, &scope)
}

/// The key kind of `tether.Dict[ann, ...]`.
pub fn standalone_key(
    py: Python<'_>,
    ann: &Bound<'_, PyAny>,
) -> PyResult<tether_runtime::types::FieldKind> {
    let globals = standalone_globals(py)?;
    let scope = kinds::Scope::new(py, "", &globals, &PyDict::new(py), false)?;
    kinds::dict_key_kind(py, ann, &scope)
}

//! Floor 6: `tether._native._Base`, the ffi-built, non-GC type every tether class derives from,
//! and its slots: construction (`tp_new`, `tp_init`), `repr`, pickling (`__reduce__`,
//! `__setstate__`, the reconstructor `_reconstruct`).
//!
//! Invariants: construction converts every argument (Python code may run, see
//! [`crate::native`]) before it re-checks the wrapper is still uninitialized, then consumes the
//! move tokens, then installs: a re-entrant `__init__`/`__setstate__` makes the outer one fail
//! and change nothing. `repr` and `__reduce__` read through counted handles.

use crate::class;
use crate::classes::hold_class;
use crate::convert::Moves;
use crate::native;
use crate::pool;
use crate::pytypes::{type_name, OffsetMember, Wrapper, BASE_TYPE, WRAPPER_SIZE};
use crate::restore;
use crate::trap::trap;
use crate::wrapper::{alloc_instance, install, tp_dealloc};
use core::ffi::c_void;
use core::ptr;
use core::sync::atomic::Ordering::Relaxed;
use pyo3::exceptions::PyTypeError;
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyString, PyTuple};
use tether_runtime::ObjAny;

pub static RECONSTRUCTOR: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

/// The pickle reconstructor `tether._native._reconstruct`.
pub fn reconstructor(py: Python<'_>) -> PyResult<Bound<'_, PyAny>> {
    RECONSTRUCTOR
        .get(py)
        .map(|f| f.bind(py).clone())
        .ok_or_else(|| pyo3::exceptions::PyRuntimeError::new_err("tether is not initialized"))
}

/// `_reconstruct(cls)`: an uninitialized instance, to be filled by `__setstate__` (pickle, copy).
#[pyfunction]
pub fn _reconstruct(py: Python<'_>, cls: &Bound<'_, pyo3::types::PyType>) -> PyResult<Py<PyAny>> {
    let tp = cls.as_ptr().cast::<pyo3::ffi::PyTypeObject>();
    // SAFETY: `tp` is a live type and the GIL is held; the result is a new reference.
    unsafe { Ok(Py::from_owned_ptr(py, new_uninit(tp)?)) }
}

/// A new, uninitialized instance of `cls` for `tp_new` and the pickle reconstructor, after
/// checking that `cls` may be instantiated (not abstract, not a native-only type).
///
/// # Safety
/// GIL held; `cls` is a live type object.
pub unsafe fn new_uninit(cls: *mut ffi::PyTypeObject) -> PyResult<*mut ffi::PyObject> {
    // SAFETY: forwarded; `check_instantiable` succeeds only for tether classes.
    unsafe {
        class::check_instantiable(cls)?;
        alloc_instance(cls)
    }
}

/// `tp_new`: an uninitialized wrapper of `cls` (fields come in `__init__`/`__setstate__`).
unsafe extern "C" fn tp_new(
    cls: *mut ffi::PyTypeObject,
    _args: *mut ffi::PyObject,
    _kw: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    // SAFETY: CPython slot: GIL held, `cls` a tether class (tp_new is only inherited by them).
    unsafe { trap(ptr::null_mut(), |_py| new_uninit(cls)) }
}

/// Installs `obj` into the uninitialized wrapper `o` as the last step of `__init__` or
/// `__setstate__`: re-checks (argument conversion ran Python code, which may have initialized
/// `o` first) that `o` is still empty, then consumes the move tokens, then installs and binds.
/// On error nothing changed: `obj` is dropped, the tokens keep their objects.
///
/// # Safety
/// `o` is a live tether wrapper; GIL held.
unsafe fn finish_init(
    o: *mut ffi::PyObject,
    obj: ObjAny,
    moves: Moves<'_>,
    what: &str,
) -> PyResult<()> {
    // SAFETY: `o` is a live wrapper (caller).
    if !unsafe { native::is_empty(o) } {
        return Err(already_initialized(o, what));
    }
    moves.commit()?;
    // SAFETY: `o` is a live wrapper with null `rec` (checked); no Python code ran since.
    unsafe {
        let cls = ffi::Py_TYPE(o);
        hold_class(obj.type_index(), cls);
        install(o, obj);
    }
    Ok(())
}

fn already_initialized(o: *mut ffi::PyObject, what: &str) -> PyErr {
    // SAFETY: `o` is live (callers); reading its type name is safe under the GIL.
    let name = unsafe { type_name(ffi::Py_TYPE(o)) };
    PyTypeError::new_err(format!("{name}.{what} called on an initialized object"))
}

/// `tp_init`: builds the native record from the arguments.
unsafe extern "C" fn tp_init(
    o: *mut ffi::PyObject,
    args: *mut ffi::PyObject,
    kw: *mut ffi::PyObject,
) -> i32 {
    // SAFETY: CPython slot: GIL held, `o` a live tether wrapper, `args` a tuple, `kw` a dict
    // or null.
    unsafe {
        trap(-1, |py| {
            if !native::is_empty(o) {
                return Err(already_initialized(o, "__init__"));
            }
            let info = class::info_of(ffi::Py_TYPE(o))?;
            let args = Bound::from_borrowed_ptr(py, args).cast_into::<PyTuple>()?;
            let kw = (!kw.is_null())
                .then(|| Bound::from_borrowed_ptr(py, kw).cast_into::<PyDict>())
                .transpose()?;
            let mut moves = Moves::new();
            let cls = Bound::from_borrowed_ptr(py, ffi::Py_TYPE(o).cast());
            let obj = info.construct(&cls, &args, kw.as_ref(), &mut moves)?;
            finish_init(o, obj, moves, "__init__")?;
            // A restored structure may wait for this object (an overridden __setstate__ that
            // calls __init__): the second phase of crate::restore.
            restore::complete(py, o)?;
            Ok(0)
        })
    }
}

/// The `tp_vectorcall` of every tether class (set by the metaclass; see `crate::meta`): a call
/// `Cls(a, b, k=v)` converts the arguments straight into the native record, then allocates and
/// installs the wrapper: no argument tuple or dict, no `tp_new`/`tp_init` round trip. A class
/// whose `__new__` or `__init__` is not tether's own (overridden in Python, now or later) takes
/// CPython's ordinary path, so overrides keep their meaning.
///
/// # Safety
/// CPython's vectorcall convention, `callable` a tether class.
pub unsafe extern "C" fn class_vectorcall(
    callable: *mut ffi::PyObject,
    args: *const *mut ffi::PyObject,
    nargsf: usize,
    kwnames: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    let cls = callable.cast::<ffi::PyTypeObject>();
    // SAFETY: CPython calls with the GIL held, a live class and the vectorcall convention.
    unsafe {
        trap(ptr::null_mut(), |py| {
            let nargs = ffi::PyVectorcall_NARGS(nargsf) as usize;
            // A metaclass whose __call__ is not type's (a subclass's, or one assigned later;
            // CPython 3.11 keeps the vectorcall flag even then) decides what a call does.
            let meta_call = (*ffi::Py_TYPE(cls.cast())).tp_call;
            let type_call_fn = (*ptr::addr_of_mut!(ffi::PyType_Type)).tp_call;
            if meta_call.map(|f| f as usize) != type_call_fn.map(|f| f as usize) {
                return call_with(py, meta_call, cls, args, nargs, kwnames);
            }
            // Inherited slots are copies of _Base's: compare the stored addresses.
            let base = BASE_TYPE.load(Relaxed);
            let slots = |t: *mut ffi::PyTypeObject| {
                (
                    (*t).tp_new.map_or(0, |f| f as usize),
                    (*t).tp_init.map_or(0, |f| f as usize),
                )
            };
            if slots(cls) != slots(base) {
                return call_with(py, type_call_fn, cls, args, nargs, kwnames);
            }
            class::check_instantiable(cls)?;
            let info = class::info_of(cls)?;
            let mut moves = Moves::new();
            let cls_ref = Bound::from_borrowed_ptr(py, cls.cast());
            let obj = info.construct_vectorcall(py, &cls_ref, args, nargs, kwnames, &mut moves)?;
            let w = alloc_instance(cls)?;
            // Nobody else has seen `w`: it is empty, so finish_init only commits the tokens.
            if let Err(e) = finish_init(w, obj, moves, "__init__") {
                ffi::Py_DECREF(w);
                return Err(e);
            }
            Ok(w)
        })
    }
}

/// A vectorcall handed to a `tp_call` (`type.__call__`, or the metaclass's own): the path of
/// classes with their own `__new__` or `__init__`, or a metaclass with its own `__call__`.
///
/// # Safety
/// As for [`class_vectorcall`], with `nargs` decoded.
unsafe fn call_with(
    py: Python<'_>,
    call: Option<ffi::ternaryfunc>,
    cls: *mut ffi::PyTypeObject,
    args: *const *mut ffi::PyObject,
    nargs: usize,
    kwnames: *mut ffi::PyObject,
) -> PyResult<*mut ffi::PyObject> {
    // SAFETY: the vectorcall convention (caller): `nargs` positional arguments, then one value
    // per name in `kwnames`; all borrowed and alive for the call.
    unsafe {
        let positional = PyTuple::new(
            py,
            (0..nargs).map(|i| Bound::from_borrowed_ptr(py, *args.add(i))),
        )?;
        let kw = if kwnames.is_null() {
            None
        } else {
            let d = PyDict::new(py);
            for j in 0..ffi::PyTuple_GET_SIZE(kwnames) {
                d.set_item(
                    Bound::from_borrowed_ptr(py, ffi::PyTuple_GET_ITEM(kwnames, j)),
                    Bound::from_borrowed_ptr(py, *args.add(nargs + j as usize)),
                )?;
            }
            Some(d)
        };
        let Some(call) = call else {
            return Err(PyTypeError::new_err("the metaclass is not callable"));
        };
        let r = call(
            cls.cast(),
            positional.as_ptr(),
            kw.as_ref().map_or(ptr::null_mut(), |d| d.as_ptr()),
        );
        if r.is_null() {
            Err(PyErr::fetch(py))
        } else {
            Ok(r)
        }
    }
}

/// `tp_repr`: `ClassName(field=value, ...)`, safe against recursion and against field reprs
/// that move the object out (a counted handle is read throughout).
unsafe extern "C" fn tp_repr(o: *mut ffi::PyObject) -> *mut ffi::PyObject {
    // SAFETY: CPython slot: GIL held, `o` a live tether wrapper.
    unsafe {
        trap(ptr::null_mut(), |py| {
            let name = type_name(ffi::Py_TYPE(o));
            let r = ffi::Py_ReprEnter(o);
            if r != 0 {
                if r < 0 {
                    return Err(PyErr::fetch(py));
                }
                return Ok(PyString::new(py, &format!("{name}(...)")).into_ptr());
            }
            let out = (|| {
                let Ok(obj) = native::counted(o) else {
                    return Ok(format!("<{name} (moved)>"));
                };
                let info = class::info_of(ffi::Py_TYPE(o))?;
                info.check_native(&obj)?;
                let mut parts = Vec::new();
                for f in info.fields() {
                    let v = native::load_field(&obj, f.slot())?;
                    let v = Bound::from_owned_ptr(py, crate::convert::to_py(py, &v, true)?);
                    parts.push(format!("{}={}", f.name, v.repr()?));
                }
                Ok::<_, PyErr>(format!("{name}({})", parts.join(", ")))
            })();
            ffi::Py_ReprLeave(o);
            Ok(PyString::new(py, &out?).into_ptr())
        })
    }
}

/// `__reduce__`: `(copyreg.__newobj__-like reconstructor, (cls,), {field: value})`; the state
/// goes through `__setstate__`, so pickle's memo keeps shared substructure shared.
unsafe extern "C" fn reduce(
    o: *mut ffi::PyObject,
    _unused: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    // SAFETY: CPython method: GIL held, `o` a live tether wrapper.
    unsafe {
        trap(ptr::null_mut(), |py| {
            let obj = native::counted(o)?;
            let info = class::info_of(ffi::Py_TYPE(o))?;
            if !info.constructible {
                // Refused now, at dumps, rather than by `loads` later.
                return Err(PyTypeError::new_err(format!(
                    "cannot pickle {} objects: a native type that cannot be constructed from \
                     Python",
                    info.name
                )));
            }
            let cls = Bound::from_borrowed_ptr(py, ffi::Py_TYPE(o).cast());
            // A class's own __getstate__ decides what is pickled, as for plain classes (it may
            // leave secrets out); its __setstate__ (or ours) receives it.
            let own = cls.getattr("__getstate__")?;
            let default = py
                .get_type::<pyo3::types::PyAny>()
                .getattr("__getstate__")?;
            let state = if own.is(&default) {
                info.state_dict(py, &obj)?.into_any()
            } else {
                Bound::from_borrowed_ptr(py, o).call_method0("__getstate__")?
            };
            let (recon, args) = new_args(py, o, &cls)?;
            let t = PyTuple::new(py, [recon, args.into_any(), state])?;
            Ok(t.into_ptr())
        })
    }
}

/// How `__reduce__` has the object made again: by tether's reconstructor (`(cls,)`), or, when the
/// class defines `__getnewargs_ex__` or `__getnewargs__`, by `copyreg.__newobj_ex__` /
/// `copyreg.__newobj__` with the arguments they return, as `object.__reduce_ex__` does for
/// plain classes (so a class's own `__new__` receives them). Either way the state follows.
///
/// # Safety
/// GIL held; `o` is a live tether wrapper of class `cls`.
unsafe fn new_args<'py>(
    py: Python<'py>,
    o: *mut ffi::PyObject,
    cls: &Bound<'py, PyAny>,
) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyTuple>)> {
    // SAFETY: `o` is live (caller).
    let me = unsafe { Bound::from_borrowed_ptr(py, o) };
    let copyreg = py.import("copyreg")?;
    if cls.hasattr("__getnewargs_ex__")? {
        let got = me.call_method0("__getnewargs_ex__")?;
        let pair = got.cast::<PyTuple>().ok().filter(|t| t.len() == 2);
        let Some(pair) = pair else {
            return Err(PyTypeError::new_err(format!(
                "__getnewargs_ex__ should return a tuple of length 2, not '{}'",
                got.get_type().name()?
            )));
        };
        let (args, kwargs) = (pair.get_item(0)?, pair.get_item(1)?);
        if !args.is_instance_of::<PyTuple>() || !kwargs.is_instance_of::<pyo3::types::PyDict>() {
            return Err(PyTypeError::new_err(format!(
                "__getnewargs_ex__ should return (tuple, dict), not ('{}', '{}')",
                args.get_type().name()?,
                kwargs.get_type().name()?
            )));
        }
        let recon = copyreg.getattr("__newobj_ex__")?;
        return Ok((recon, PyTuple::new(py, [cls.clone(), args, kwargs])?));
    }
    if cls.hasattr("__getnewargs__")? {
        let got = me.call_method0("__getnewargs__")?;
        let Ok(args) = got.cast::<PyTuple>() else {
            return Err(PyTypeError::new_err(format!(
                "__getnewargs__ should return a tuple, not '{}'",
                got.get_type().name()?
            )));
        };
        let mut all = vec![cls.clone()];
        all.extend(args.iter());
        return Ok((copyreg.getattr("__newobj__")?, PyTuple::new(py, all)?));
    }
    Ok((reconstructor(py)?, PyTuple::new(py, [cls.clone()])?))
}

/// `__sizeof__()` (what `sys.getsizeof` reports for a non-GC object): the wrapper's block, plus
/// the native object it holds, with the allocator header in front of it.
unsafe extern "C" fn sizeof(o: *mut ffi::PyObject, _: *mut ffi::PyObject) -> *mut ffi::PyObject {
    // SAFETY: CPython method: GIL held, `o` a live tether wrapper.
    unsafe {
        trap(ptr::null_mut(), |py| {
            let mut bytes = WRAPPER_SIZE;
            if let Ok(view) = native::view(o) {
                let obj = view.native();
                if let Some(n) = obj.type_info().object_bytes() {
                    bytes += n;
                }
                if obj.obj_header().has_tie_header() {
                    bytes += tether_runtime::OBJECT_HEADER_BYTES;
                }
            }
            Ok(bytes.into_pyobject(py)?.into_ptr())
        })
    }
}

/// `__setstate__(state)`: initializes an object made by the reconstructor.
unsafe extern "C" fn setstate(
    o: *mut ffi::PyObject,
    state: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    // SAFETY: CPython method: GIL held, `o` a live tether wrapper, `state` a live object.
    unsafe {
        trap(ptr::null_mut(), |py| {
            if !native::is_empty(o) {
                return Err(already_initialized(o, "__setstate__"));
            }
            let info = class::info_of(ffi::Py_TYPE(o))?;
            let state = Bound::from_borrowed_ptr(py, state)
                .cast_into::<PyDict>()
                .map_err(|_| {
                    PyTypeError::new_err("tether objects unpickle from a dict of fields")
                })?;
            let mut moves = Moves::new();
            let mut deferred = Vec::new();
            let cls = Bound::from_borrowed_ptr(py, ffi::Py_TYPE(o).cast());
            let obj = info.restore(&cls, &state, &mut moves, &mut deferred)?;
            finish_init(o, obj, moves, "__setstate__")?;
            // Two-phase restore (crate::restore): fields that waited for objects not yet
            // initialized, then the fields that waited for this one (a self-loop: both).
            restore::defer(py, o, info, deferred)?;
            restore::complete(py, o)?;
            Ok(py.None().into_ptr())
        })
    }
}

/// Creates `_Base`: the ffi-built, non-GC base type with our slots.
pub fn create_base_type(py: Python<'_>) -> PyResult<*mut ffi::PyTypeObject> {
    static mut METHODS: [ffi::PyMethodDef; 4] = [
        ffi::PyMethodDef {
            ml_name: c"__sizeof__".as_ptr(),
            ml_meth: ffi::PyMethodDefPointer {
                PyCFunction: sizeof,
            },
            ml_flags: ffi::METH_NOARGS,
            ml_doc: c"Bytes of the wrapper plus its native object with the allocator header."
                .as_ptr(),
        },
        ffi::PyMethodDef {
            ml_name: c"__reduce__".as_ptr(),
            ml_meth: ffi::PyMethodDefPointer {
                PyCFunction: reduce,
            },
            ml_flags: ffi::METH_NOARGS,
            ml_doc: c"Pickle support: reconstructs the class and sets the fields.".as_ptr(),
        },
        ffi::PyMethodDef {
            ml_name: c"__setstate__".as_ptr(),
            ml_meth: ffi::PyMethodDefPointer {
                PyCFunction: setstate,
            },
            ml_flags: ffi::METH_O,
            ml_doc: c"Pickle support: initializes the fields from a dict.".as_ptr(),
        },
        ffi::PyMethodDef::zeroed(),
    ];
    static MEMBERS: OffsetMember = OffsetMember::new(
        c"__weaklistoffset__",
        core::mem::offset_of!(Wrapper, weaklist),
    );
    // SAFETY: the slot tables are 'static and only read by CPython during type creation,
    // which happens once at module init under the GIL.
    let tp = unsafe {
        let mut slots = [
            ffi::PyType_Slot {
                slot: ffi::Py_tp_new,
                pfunc: tp_new as *mut c_void,
            },
            ffi::PyType_Slot {
                slot: ffi::Py_tp_init,
                pfunc: tp_init as *mut c_void,
            },
            ffi::PyType_Slot {
                slot: ffi::Py_tp_dealloc,
                pfunc: tp_dealloc as *mut c_void,
            },
            ffi::PyType_Slot {
                slot: ffi::Py_tp_alloc,
                pfunc: pool::tp_alloc as *mut c_void,
            },
            ffi::PyType_Slot {
                slot: ffi::Py_tp_free,
                pfunc: pool::tp_free as *mut c_void,
            },
            ffi::PyType_Slot {
                slot: ffi::Py_tp_repr,
                pfunc: tp_repr as *mut c_void,
            },
            ffi::PyType_Slot {
                slot: ffi::Py_tp_methods,
                pfunc: ptr::addr_of_mut!(METHODS).cast(),
            },
            ffi::PyType_Slot {
                slot: ffi::Py_tp_members,
                pfunc: MEMBERS.as_slot_ptr(),
            },
            ffi::PyType_Slot {
                slot: ffi::Py_tp_doc,
                pfunc: c"The native base of tether.Object (not for direct use).".as_ptr()
                    as *mut c_void,
            },
            ffi::PyType_Slot {
                slot: 0,
                pfunc: ptr::null_mut(),
            },
        ];
        let mut spec = ffi::PyType_Spec {
            name: c"tether._native._Base".as_ptr(),
            basicsize: WRAPPER_SIZE as i32,
            itemsize: 0,
            flags: (ffi::Py_TPFLAGS_DEFAULT | ffi::Py_TPFLAGS_BASETYPE) as u32,
            slots: slots.as_mut_ptr(),
        };
        ffi::PyType_FromSpec(&mut spec)
    };
    if tp.is_null() {
        return Err(PyErr::fetch(py));
    }
    BASE_TYPE.store(tp.cast(), Relaxed);
    Ok(tp.cast())
}

//! The wrapper object and its life cycle: one canonical wrapper per native object.
//!
//! The layout is in [`crate::pytypes`].
//!
//! Invariants (all under the GIL; the module is declared `gil_used`):
//! 1. A wrapper with non-null `rec` owns exactly one strong reference to that native object.
//! 2. The native object's tie header names at most one wrapper: the canonical one. `wrap` hands
//!    it out (state b), revives it in place (state c: same address, so the same `id()`), or makes
//!    and binds a new one (state a). Fresh wrappers (tying off, or the fresh return policy) are
//!    never bound.
//! 3. `tp_dealloc` of a canonical wrapper whose object lives on (strong count above the
//!    wrapper's own reference) parks it: the memory stays, the tie header holds it, the class
//!    reference is dropped. Otherwise the wrapper is unbound, its memory returns to the pool,
//!    and then its reference is released (so the free funnel finds nothing cached: no double
//!    free). Classes with a finalizer (`__del__`) are never parked.
//! 4. Weakref callbacks may run Python code, which may ask for the same object again: the
//!    binding is detached before they run, so such code gets a new wrapper, never the dying one.

use crate::class;
use crate::convert::Moves;
use crate::native;
use crate::pool::{self, LIVE, PARKED};
use crate::pytypes::{type_name, Wrapper, BASE_TYPE, WRAPPER_SIZE};
use crate::trap::trap;
use core::ffi::c_void;
use core::mem::ManuallyDrop;
use core::ptr::{self, NonNull};
use core::sync::atomic::{AtomicBool, Ordering::Relaxed};
use pyo3::exceptions::PyTypeError;
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString, PyTuple};
use tether_runtime::tie::{self, Finalized, TieState};
use tether_runtime::ObjAny;

/// Whether `wrap` hands out canonical wrappers (the tying switch).
pub static TYING: AtomicBool = AtomicBool::new(true);

/// A new wrapper of class `cls` for `obj` (not bound).
///
/// # Safety
/// GIL held; `cls` is a tether class.
unsafe fn new_wrapper(cls: *mut ffi::PyTypeObject, obj: &ObjAny) -> PyResult<*mut ffi::PyObject> {
    // SAFETY: forwarded (GIL held, a tether class).
    let w = unsafe { alloc_instance(cls) }?;
    // SAFETY: `w` is a fresh wrapper; it takes its own strong reference (invariant 1).
    unsafe { (*w.cast::<Wrapper>()).rec = obj.clone().into_raw().as_ptr() };
    Ok(w)
}

/// A zeroed, uninitialized instance of tether class `cls` (null `rec`), as a new reference.
///
/// # Safety
/// GIL held; `cls` is a tether class.
unsafe fn alloc_instance(cls: *mut ffi::PyTypeObject) -> PyResult<*mut ffi::PyObject> {
    // SAFETY: tether classes use pool::tp_alloc; GIL held.
    let w = unsafe { pool::tp_alloc(cls, 0) };
    if w.is_null() {
        // SAFETY: GIL held (tp_alloc raised MemoryError).
        return Err(PyErr::fetch(unsafe { Python::assume_attached() }));
    }
    Ok(w)
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

/// The wrapper for `obj` as a new reference: the canonical one if `tied` and tying is on
/// (invariant 2), else a fresh, unbound one.
///
/// # Safety
/// GIL held.
pub unsafe fn wrap(obj: &ObjAny, tied: bool) -> PyResult<*mut ffi::PyObject> {
    let tied = tied && TYING.load(Relaxed);
    // (b): one acquire load, no claim.
    if tied {
        if let Some(w) = tie::lookup(obj) {
            let w = w.as_ptr().cast::<ffi::PyObject>();
            // SAFETY: invariant 2: a bound wrapper is alive (its dealloc unbinds it first).
            unsafe { ffi::Py_INCREF(w) };
            return Ok(w);
        }
    }
    let cls = class::class_for(obj.type_index())?;
    // SAFETY: `cls` is the registered, live class of the object's type; GIL held.
    unsafe { class::hold_class(class::info_of(cls)?, cls) };
    if !tied {
        // SAFETY: GIL held; `cls` is the object's tether class.
        return unsafe { new_wrapper(cls, obj) };
    }
    // (c) -> (b), or (a).
    match tie::revive(obj) {
        Ok(m) => {
            let w = m.as_ptr().cast::<ffi::PyObject>();
            PARKED.fetch_sub(1, Relaxed);
            // The class is compared by address only: the stale type pointer of parked memory
            // is never dereferenced.
            // SAFETY: the revived block is a live pool block of WRAPPER_SIZE bytes (invariant 3).
            if unsafe { (*w).ob_type } == cls {
                // SAFETY: nobody else references the block; PyObject_Init makes it a live
                // instance of `cls` at the same address; it takes a strong reference to the
                // object (invariant 1).
                unsafe {
                    ffi::PyObject_Init(w, cls);
                    let wr = w.cast::<Wrapper>();
                    (*wr).rec = obj.clone().into_raw().as_ptr();
                    (*wr).weaklist = ptr::null_mut();
                }
                LIVE.fetch_add(1, Relaxed);
                return Ok(w);
            }
            // The parked memory cannot serve this class: unbind it and return it to the pool
            // ourselves (it is ours since the revive), then make a new wrapper below.
            let _ = tie::unbind_for_last_release(obj, m);
            LIVE.fetch_add(1, Relaxed); // balanced by free_wrapper_mem's decrement
                                        // SAFETY: the block came from the pool and is referenced by nobody now.
            unsafe { pool::free_wrapper_mem(m.as_ptr()) };
        }
        Err(TieState::Bound(w)) => {
            // Bound between our lookup and the claim (another thread, in a free-threaded host).
            let w = w.as_ptr().cast::<ffi::PyObject>();
            // SAFETY: as for the lookup above.
            unsafe { ffi::Py_INCREF(w) };
            return Ok(w);
        }
        Err(_) => {}
    }
    // SAFETY: GIL held.
    let w = unsafe { new_wrapper(cls, obj) }?;
    // A failed bind (impossible under the GIL) leaves `w` a valid fresh wrapper.
    let _ = tie::bind(obj, wrapper_ptr(w));
    Ok(w)
}

#[inline]
fn wrapper_ptr(w: *mut ffi::PyObject) -> NonNull<c_void> {
    // SAFETY: callers pass live wrapper pointers, never null.
    unsafe { NonNull::new_unchecked(w.cast()) }
}

/// Installs a native object into an uninitialized wrapper and binds it (used by `__init__`,
/// `__setstate__`).
///
/// # Safety
/// `w` is a live tether wrapper with null `rec`; GIL held.
pub unsafe fn install(w: *mut ffi::PyObject, obj: ObjAny) {
    let raw = obj.into_raw();
    // SAFETY: `w` is a wrapper; it takes over the strong reference (invariant 1).
    unsafe { (*w.cast::<Wrapper>()).rec = raw.as_ptr() };
    if TYING.load(Relaxed) {
        // SAFETY: `raw` is alive, owned by `w`.
        let obj = ManuallyDrop::new(unsafe { ObjAny::from_raw(raw) });
        let _ = tie::bind(&obj, wrapper_ptr(w));
    }
}

/// Takes the native object out of wrapper `w` (for `tether.move`), unbinding it.
///
/// # Safety
/// `w` is a live tether wrapper; GIL held.
pub unsafe fn take_native(w: *mut ffi::PyObject) -> PyResult<ObjAny> {
    // SAFETY: `w` is a wrapper (caller).
    let wr = unsafe { &mut *w.cast::<Wrapper>() };
    // SAFETY: `w` is live (caller).
    let rec = NonNull::new(wr.rec).ok_or_else(|| unsafe { native::moved_error(w) })?;
    wr.rec = ptr::null_mut();
    // SAFETY: invariant 1: the wrapper owned this strong reference; it is now ours.
    let obj = unsafe { ObjAny::from_raw(rec) };
    if tie::lookup(&obj) == Some(wrapper_ptr(w)) {
        tie::detach(&obj);
    }
    Ok(obj)
}

/// `tp_dealloc` of every tether class: parks or frees (invariants 3 and 4).
///
/// # Safety
/// Called by CPython when the wrapper's refcount reached zero.
pub unsafe extern "C" fn tp_dealloc(o: *mut ffi::PyObject) {
    // SAFETY: `o` is a dying tether wrapper; all calls below follow CPython's dealloc protocol.
    unsafe {
        let tp = ffi::Py_TYPE(o);
        let has_finalizer = (*tp).tp_finalize.is_some();
        if has_finalizer && ffi::PyObject_CallFinalizerFromDealloc(o) < 0 {
            return; // resurrected by __del__
        }
        let wr = o.cast::<Wrapper>();
        let rec = (*wr).rec;
        let Some(rec) = NonNull::new(rec) else {
            if !(*wr).weaklist.is_null() {
                ffi::PyObject_ClearWeakRefs(o);
            }
            pool::free_wrapper_mem(o.cast());
            ffi::Py_DECREF(tp.cast());
            return;
        };
        let obj = ObjAny::from_raw(rec);
        (*wr).rec = ptr::null_mut();
        let me = wrapper_ptr(o);
        let mut bound = tie::lookup(&obj) == Some(me);
        if !(*wr).weaklist.is_null() {
            // Invariant 4: unbind before callbacks can run, re-bind after if nobody else did.
            if bound {
                tie::detach(&obj);
            }
            ffi::PyObject_ClearWeakRefs(o);
            bound = bound && tie::bind(&obj, me).is_ok();
        }
        if bound && !has_finalizer && TYING.load(Relaxed) {
            // Park if the object lives on, else unbind and release it: one atomic decision
            // (the runtime's park_or_release), which consumes the wrapper's reference.
            match tie::park_or_release(obj, me) {
                Ok(Finalized::Parked) => {
                    PARKED.fetch_add(1, Relaxed);
                    LIVE.fetch_sub(1, Relaxed);
                    ffi::Py_DECREF(tp.cast());
                }
                Ok(Finalized::Released) => {
                    pool::free_wrapper_mem(o.cast());
                    ffi::Py_DECREF(tp.cast());
                }
                Err((obj, _)) => {
                    pool::free_wrapper_mem(o.cast());
                    ffi::Py_DECREF(tp.cast());
                    drop(obj);
                }
            }
            return;
        }
        if bound {
            let _ = tie::unbind_for_last_release(&obj, me);
        }
        pool::free_wrapper_mem(o.cast());
        ffi::Py_DECREF(tp.cast());
        drop(obj);
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
        if let Ok(info) = class::info_of(cls) {
            class::hold_class(info, cls);
        }
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
            let obj = info.construct(py, &args, kw.as_ref(), &mut moves)?;
            finish_init(o, obj, moves, "__init__")?;
            Ok(0)
        })
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
            let state = info.state_dict(py, &obj)?;
            let cls = Bound::from_borrowed_ptr(py, ffi::Py_TYPE(o).cast());
            let recon = crate::reconstructor(py)?;
            let t = PyTuple::new(
                py,
                [recon, PyTuple::new(py, [cls])?.into_any(), state.into_any()],
            )?;
            Ok(t.into_ptr())
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
            let obj = info.from_state(py, &state, &mut moves)?;
            finish_init(o, obj, moves, "__setstate__")?;
            Ok(py.None().into_ptr())
        })
    }
}

/// Creates `_Base`: the ffi-built, non-GC base type with our slots.
pub fn create_base_type(py: Python<'_>) -> PyResult<*mut ffi::PyTypeObject> {
    static mut METHODS: [ffi::PyMethodDef; 3] = [
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
    static mut MEMBERS: [ffi::PyMemberDef; 2] = [
        ffi::PyMemberDef {
            name: c"__weaklistoffset__".as_ptr(),
            type_code: ffi::Py_T_PYSSIZET,
            offset: core::mem::offset_of!(Wrapper, weaklist) as ffi::Py_ssize_t,
            flags: ffi::Py_READONLY,
            doc: ptr::null(),
        },
        ffi::PyMemberDef {
            name: ptr::null(),
            type_code: 0,
            offset: 0,
            flags: 0,
            doc: ptr::null(),
        },
    ];
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
                pfunc: ptr::addr_of_mut!(MEMBERS).cast(),
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

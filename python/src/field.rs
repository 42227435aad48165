//! The field descriptor: one per declared field, placed in the class namespace.
//!
//! A descriptor points at its leaked `&'static FieldDef` and holds no reference to its class
//! (a strong one would keep every class alive; see the notes' pitfall 8). Reads and writes check
//! that the wrapper's native record really is an instance of the field's owner type: CPython
//! lets `__class__` be reassigned between tether classes, and a stale class must never make us
//! read past a record's fields.

use crate::class::FieldDef;
use crate::convert::{to_py, Moves};
use crate::errors::{FrozenInstanceError, MovedError};
use crate::native;
use crate::pytypes::is_wrapper;
use crate::trap::trap;
use core::ffi::c_void;
use core::ptr;
use core::sync::atomic::{AtomicPtr, Ordering::Relaxed};
use pyo3::exceptions::{PyAttributeError, PyTypeError};
use pyo3::ffi;
use pyo3::prelude::*;

/// The descriptor object.
#[repr(C)]
struct FieldDescr {
    ob_base: ffi::PyObject,
    def: *const FieldDef,
}

static DESCR_TYPE: AtomicPtr<ffi::PyTypeObject> = AtomicPtr::new(ptr::null_mut());

fn not_a_wrapper(def: &FieldDef) -> PyErr {
    PyTypeError::new_err(format!(
        "field '{}' applies only to tether objects",
        def.name
    ))
}

unsafe extern "C" fn descr_get(
    d: *mut ffi::PyObject,
    o: *mut ffi::PyObject,
    _tp: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    // SAFETY: CPython slot: GIL held; `d` is a FieldDescr whose `def` is a leaked &'static.
    unsafe {
        if o.is_null() || o == ffi::Py_None() {
            ffi::Py_INCREF(d);
            return d;
        }
        let def = &*(*d.cast::<FieldDescr>()).def;
        trap(ptr::null_mut(), |py| {
            if !is_wrapper(o) {
                return Err(not_a_wrapper(def));
            }
            // The hot path: an uncounted view for the copy only; no Python code runs until it
            // is gone (the copy holds its own references).
            let v = native::view(o)?.load(def.slot())?;
            to_py(py, &v, true)
        })
    }
}

unsafe extern "C" fn descr_set(
    d: *mut ffi::PyObject,
    o: *mut ffi::PyObject,
    value: *mut ffi::PyObject,
) -> i32 {
    // SAFETY: CPython slot: GIL held; `d` is a FieldDescr; `o` live; `value` live or null.
    unsafe {
        let def = &*(*d.cast::<FieldDescr>()).def;
        trap(-1, |py| {
            if value.is_null() {
                return Err(PyAttributeError::new_err(format!(
                    "field '{}' cannot be deleted",
                    def.name
                )));
            }
            if !is_wrapper(o) {
                return Err(not_a_wrapper(def));
            }
            if def.frozen {
                return Err(FrozenInstanceError::new_err(format!(
                    "cannot assign to field '{}' of a frozen class",
                    def.name
                )));
            }
            // Counted: the conversion below runs Python code, which may move `o`'s object out
            // and drop it.
            let obj = native::counted(o)?;
            let mut moves = Moves::new();
            let v = def.convert(&Bound::from_borrowed_ptr(py, value), &mut moves, "")?;
            // Re-check after the call-out: the assignment targets the object `o` holds now.
            if !native::still_holds(o, &obj) {
                return Err(MovedError::new_err(format!(
                    "cannot assign field '{}': the object was moved out of this wrapper while                      the value was converted",
                    def.name
                )));
            }
            moves.commit()?;
            let old = native::store_field(&obj, def.slot(), v)?;
            drop(old); // may run Python code: nothing borrowed is used after it
            Ok(0)
        })
    }
}

unsafe extern "C" fn descr_dealloc(d: *mut ffi::PyObject) {
    // SAFETY: CPython slot: `d` is dying; its memory came from PyType_GenericAlloc (tp_free),
    // and instances of heap types own a reference to their type.
    unsafe {
        let tp = ffi::Py_TYPE(d);
        ffi::PyObject_Free(d.cast());
        ffi::Py_DECREF(tp.cast());
    }
}

unsafe extern "C" fn descr_repr(d: *mut ffi::PyObject) -> *mut ffi::PyObject {
    // SAFETY: CPython slot: GIL held; `d` is a FieldDescr.
    unsafe {
        let def = &*(*d.cast::<FieldDescr>()).def;
        trap(ptr::null_mut(), |py| {
            Ok(
                pyo3::types::PyString::new(py, &format!("<tether field '{}'>", def.name))
                    .into_ptr(),
            )
        })
    }
}

/// Creates the descriptor type (once, at module init).
pub fn create_descr_type(py: Python<'_>) -> PyResult<()> {
    // SAFETY: the spec and slots are only read during this call, under the GIL.
    let tp = unsafe {
        let mut slots = [
            ffi::PyType_Slot {
                slot: ffi::Py_tp_descr_get,
                pfunc: descr_get as *mut c_void,
            },
            ffi::PyType_Slot {
                slot: ffi::Py_tp_descr_set,
                pfunc: descr_set as *mut c_void,
            },
            ffi::PyType_Slot {
                slot: ffi::Py_tp_dealloc,
                pfunc: descr_dealloc as *mut c_void,
            },
            ffi::PyType_Slot {
                slot: ffi::Py_tp_repr,
                pfunc: descr_repr as *mut c_void,
            },
            ffi::PyType_Slot {
                slot: 0,
                pfunc: ptr::null_mut(),
            },
        ];
        let mut spec = ffi::PyType_Spec {
            name: c"tether._native.Field".as_ptr(),
            basicsize: core::mem::size_of::<FieldDescr>() as i32,
            itemsize: 0,
            flags: ffi::Py_TPFLAGS_DEFAULT as u32,
            slots: slots.as_mut_ptr(),
        };
        ffi::PyType_FromSpec(&mut spec)
    };
    if tp.is_null() {
        return Err(PyErr::fetch(py));
    }
    DESCR_TYPE.store(tp.cast(), Relaxed);
    Ok(())
}

/// A new descriptor for `def`.
pub fn new_descr<'py>(py: Python<'py>, def: &'static FieldDef) -> PyResult<Bound<'py, PyAny>> {
    let tp = DESCR_TYPE.load(Relaxed);
    // SAFETY: `tp` is the descriptor type created at module init; GenericAlloc returns a zeroed
    // instance (with a type reference) or null with an exception set.
    unsafe {
        let d = ffi::PyType_GenericAlloc(tp, 0);
        if d.is_null() {
            return Err(PyErr::fetch(py));
        }
        (*d.cast::<FieldDescr>()).def = def;
        Ok(Bound::from_owned_ptr(py, d))
    }
}

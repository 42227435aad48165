//! The field descriptor: one per declared field, placed in the class namespace.
//!
//! A descriptor points at its leaked `&'static FieldDef` and holds no reference to its class
//! (a strong one would keep every class alive; see the notes' pitfall 8). Reads and writes check
//! that the wrapper's native record really is an instance of the field's owner type: CPython
//! lets `__class__` be reassigned between tether classes, and a stale class must never make us
//! read past a record's fields.

use crate::class::FieldDef;
use crate::trap::trap;
use crate::wrapper::{borrow_native, is_wrapper};
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

/// The checked native object of `o` for field `def`.
///
/// # Safety
/// GIL held; `o` is a live object.
#[inline(always)]
unsafe fn target(
    o: *mut ffi::PyObject,
    def: &FieldDef,
) -> PyResult<core::mem::ManuallyDrop<tether_runtime::ObjAny>> {
    // SAFETY: `o` is live (caller).
    if !unsafe { is_wrapper(o) } {
        return Err(PyTypeError::new_err(format!(
            "field '{}' applies only to tether objects",
            def.name
        )));
    }
    // SAFETY: checked to be a wrapper.
    let obj = unsafe { borrow_native(o) }?;
    if obj.type_index() != def.owner && !obj.is_instance(def.owner) {
        return Err(PyTypeError::new_err(format!(
            "field '{}' does not apply to this object's native type",
            def.name
        )));
    }
    Ok(obj)
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
        trap(ptr::null_mut(), |_py| {
            let obj = target(o, def)?;
            def.read(&obj)
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
            let obj = target(o, def)?;
            def.write(py, &obj, &Bound::from_borrowed_ptr(py, value))?;
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

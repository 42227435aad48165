//! The field descriptor: one per declared field, placed in the class namespace.
//!
//! A descriptor points at its leaked `&'static FieldDef` and holds no reference to its class
//! (a strong one would keep every class alive; see the notes' pitfall 8). Reads and writes check
//! that the wrapper's native record really is an instance of the field's owner type: CPython
//! lets `__class__` be reassigned between tether classes, and a stale class must never make us
//! read past a record's fields.

use crate::class::FieldDef;
use crate::convert::{to_py_owned, Moves};
use crate::errors::{FrozenInstanceError, MovedError};
use crate::native;
use crate::pytypes::is_wrapper;
use crate::trap::trap;
use crate::wrapper;
use core::ffi::c_void;
use core::ptr;
use core::sync::atomic::{AtomicPtr, Ordering::Relaxed};
use pyo3::exceptions::{PyAttributeError, PyTypeError};
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::PyBool;
use tether_runtime::types::{SlotAt, SlotRepr};
use tether_runtime::{
    slot_bool, slot_float, slot_int, slot_load, slot_set_bool, slot_set_float, slot_set_int,
    slot_with_ref, ObjAny,
};

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
            // The hot path: an uncounted view, used only for native work; no Python code runs
            // until it is gone.
            let view = native::view(o)?;
            match def.at {
                Some(at) => read_slot(py, view.native(), def, at),
                None => to_py_owned(py, view.load(def.slot())?, true),
            }
        })
    }
}

/// A record field's value as a new Python reference, straight from its slot: a scalar from
/// one atomic load; an object field's live wrapper with one `Py_INCREF` under the record's
/// lock and no native count traffic; otherwise the child's reference, cloned under the lock,
/// goes to its revived (or new) wrapper.
///
/// # Safety
/// GIL held; `obj` is alive for the call and no Python code runs until it returns (the caller's
/// view).
#[inline(always)]
unsafe fn read_slot(
    py: Python<'_>,
    obj: &ObjAny,
    def: &FieldDef,
    at: SlotAt,
) -> PyResult<*mut ffi::PyObject> {
    native::check_owner(obj, def.slot())?;
    // SAFETY: `obj` is an instance of the field's owner (checked), whose layout gave `at`; each
    // arm matches `at.repr`; GIL held.
    unsafe {
        Ok(match at.repr {
            SlotRepr::Int => ffi::PyLong_FromLongLong(slot_int(obj, at)),
            SlotRepr::Float => ffi::PyFloat_FromDouble(slot_float(obj, at)),
            SlotRepr::Bool => PyBool::new(py, slot_bool(obj, at)).to_owned().into_ptr(),
            SlotRepr::Ref { .. } => {
                // Under the lock only native work: the tie word's load and a Py_INCREF of a
                // wrapper that holds its own reference (record invariant 3).
                let found = slot_with_ref(obj, at, |child| match child {
                    None => Ok(None),
                    Some(c) => match wrapper::bound_wrapper(c, true) {
                        Some(w) => Ok(Some(w)),
                        None => Err(c.clone()),
                    },
                });
                match found {
                    Ok(Some(w)) => w,
                    Ok(None) => py.None().into_ptr(),
                    Err(child) => wrapper::wrap_owned(child, true)?,
                }
            }
            SlotRepr::Weak | SlotRepr::Dyn => to_py_owned(py, slot_load(obj, at), true)?,
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
                return Err(FrozenInstanceError::new_err(if def.is_final {
                    format!("cannot assign to field '{}': it is Final", def.name)
                } else {
                    format!("cannot assign to field '{}' of a frozen class", def.name)
                }));
            }
            if let Some(at) = def.at {
                if write_scalar(o, def, at, value)? {
                    return Ok(0);
                }
            }
            // Counted: the conversion below runs Python code, which may move `o`'s object out
            // and drop it.
            let obj = native::counted(o)?;
            let mut moves = Moves::new();
            let v = def.convert(
                &Bound::from_borrowed_ptr(py, value),
                &mut moves,
                String::new,
            )?;
            // Re-check after the call-out: the assignment targets the object `o` holds now.
            if !native::still_holds(o, &obj) {
                return Err(MovedError::new_err(format!(
                    "cannot assign field '{}': the object was moved out of this wrapper while \
                     the value was converted",
                    def.name
                )));
            }
            // All-or-nothing: the tokens are consumed only once the store has succeeded (it
            // can still refuse: a field of another type, a read-only accessor). Nothing runs
            // Python code between the check and the commit.
            moves.check()?;
            let old = native::store_field(&obj, def.slot(), v)?;
            moves.commit()?;
            drop(old); // may run Python code: nothing borrowed is used after it
            Ok(0)
        })
    }
}

/// The hot write path: an exact `int`, `float` or `bool` into a slot of that form. Converting
/// these runs no Python code (no `__index__` or `__float__`), so an uncounted view suffices and
/// the store is one atomic write. Returns `false` (nothing done) for anything else, which takes
/// the general path.
///
/// # Safety
/// GIL held; `o` is a live tether wrapper, `value` a live object.
#[inline(always)]
unsafe fn write_scalar(
    o: *mut ffi::PyObject,
    def: &FieldDef,
    at: SlotAt,
    value: *mut ffi::PyObject,
) -> PyResult<bool> {
    // SAFETY: `value` is live; exact type checks read only its type.
    unsafe {
        let v = match at.repr {
            SlotRepr::Int if ffi::PyLong_CheckExact(value) != 0 => {
                let mut overflow = 0;
                let i = ffi::PyLong_AsLongLongAndOverflow(value, &mut overflow);
                if overflow != 0 {
                    return Ok(false); // the general path raises the OverflowError
                }
                Scalar::Int(i)
            }
            SlotRepr::Float if ffi::PyFloat_CheckExact(value) != 0 => {
                Scalar::Float(ffi::PyFloat_AS_DOUBLE(value))
            }
            SlotRepr::Bool if value == ffi::Py_True() || value == ffi::Py_False() => {
                Scalar::Bool(value == ffi::Py_True())
            }
            _ => return Ok(false),
        };
        let view = native::view(o)?;
        let obj = view.native();
        native::check_owner(obj, def.slot())?;
        // SAFETY: `obj` is an instance of the owner (checked), whose layout gave `at`, of the
        // form matched above; the class is not frozen (the caller checked).
        match v {
            Scalar::Int(i) => slot_set_int(obj, at, i),
            Scalar::Float(f) => slot_set_float(obj, at, f),
            Scalar::Bool(b) => slot_set_bool(obj, at, b),
        }
        Ok(true)
    }
}

enum Scalar {
    Int(i64),
    Float(f64),
    Bool(bool),
}

unsafe extern "C" fn descr_dealloc(d: *mut ffi::PyObject) {
    // SAFETY: CPython slot: `d` is dying; it holds no references of its own.
    unsafe { crate::pytypes::free_plain_instance(d) }
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
    // SAFETY: each function has its slot's signature; attached (module init).
    let tp = unsafe {
        crate::pytypes::plain_type(
            py,
            c"tether._native.Field",
            core::mem::size_of::<FieldDescr>(),
            &[
                (ffi::Py_tp_descr_get, descr_get as *mut c_void),
                (ffi::Py_tp_descr_set, descr_set as *mut c_void),
                (ffi::Py_tp_dealloc, descr_dealloc as *mut c_void),
                (ffi::Py_tp_repr, descr_repr as *mut c_void),
            ],
        )
    }?;
    DESCR_TYPE.store(tp, Relaxed);
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
        // Free-threaded builds: every access takes a reference to the descriptor; immortal, it
        // is not a cache line that all threads reading the field fight over. It lives as long
        // as its leaked field definition anyway.
        crate::ft::make_immortal(d);
        Ok(Bound::from_owned_ptr(py, d))
    }
}

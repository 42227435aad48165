//! Floor 1: how Python-side code reaches a wrapper's native object, made so that the safe way is
//! the only easy one.
//!
//! The rule (learned the hard way): a native object is never used through an uncounted borrow
//! while Python code can run. Conversions (`__index__`, `__float__`), `repr`, `__eq__`,
//! `__hash__`, weakref callbacks, `__del__` and the cycle collector can all move the object out
//! of its wrapper and drop it. So there are exactly two ways in:
//! - [`NativeView`]: an uncounted view, for the hot read path. Its API cannot call Python: type
//!   checked slot copies under the record rule (native clones only), and [`NativeView::into_counted`].
//!   On free-threaded builds the view is counted after all: another thread may move the object
//!   out of the wrapper and drop it at any moment, so the view takes its reference inside the
//!   wrapper's critical section, where moves store (`crate::ft::critical`).
//! - [`counted`]: a strong handle (`ObjAny`), for every path that converts or calls out. After
//!   a call-out, [`still_holds`] re-checks that the wrapper still holds the same object before
//!   acting on what was checked before it.
//!
//! Field slots are read and written through [`load_field`] / [`store_field`], or, on the hot
//! paths of `crate::field`, through the runtime's slot accessors (`slot_int`, `slot_with_ref`,
//! ...) after the same owner check ([`check_owner`]). Both keep the runtime's record rule
//! (scalar slots are atomics; reference slots are touched under the record's lock, with no host
//! code under it and old values dropped by the caller after it), so a Rust thread mutating a
//! record that Python reads is safe.

use crate::errors::MovedError;
use crate::pytypes::{rec_load, type_name};
use core::marker::PhantomData;
use core::mem::ManuallyDrop;
use core::ptr::NonNull;
use pyo3::exceptions::{PyAttributeError, PyTypeError};
use pyo3::ffi;
use pyo3::prelude::*;
use tether_runtime::types::{FieldAccess, SlotAt};
use tether_runtime::{
    record_load_unchecked, record_replace_unchecked, slot_load, slot_replace, ObjAny, Value,
};

/// Where a field lives and who declared it: what [`load_field`] and [`store_field`] check.
#[derive(Debug, Clone, Copy)]
pub struct Slot<'a> {
    /// The runtime type that declared the field.
    pub owner: u32,
    /// Inline record slot or reflected accessors.
    pub access: &'a FieldAccess,
    /// The record slot of an inline field (`None` for reflected accessors).
    pub at: Option<SlotAt>,
    /// The attribute name, for messages.
    pub name: &'a str,
}

#[inline]
pub fn check_owner(obj: &ObjAny, slot: Slot<'_>) -> PyResult<()> {
    if obj.type_index() == slot.owner || obj.is_instance(slot.owner) {
        Ok(())
    } else {
        Err(PyTypeError::new_err(format!(
            "field '{}' does not apply to this object's native type",
            slot.name
        )))
    }
}

/// A copy of the field's value (objects as new strong handles). Runs no Python code.
pub fn load_field(obj: &ObjAny, slot: Slot<'_>) -> PyResult<Value> {
    check_owner(obj, slot)?;
    Ok(match (slot.access, slot.at) {
        // SAFETY: `obj` is an instance of the owner (checked), a record type whose layout gave
        // `at` (subtypes keep their parents' slots where they were).
        (FieldAccess::Inline(_), Some(at)) => unsafe { slot_load(obj, at) },
        // SAFETY: as above, by index: the owner's schema gave slot `i`.
        (FieldAccess::Inline(i), None) => unsafe { record_load_unchecked(obj, *i) },
        (FieldAccess::Accessor { get, .. }, _) => get(obj),
    })
}

/// Stores `v` (already converted to the field's kind) and returns the old value, which the
/// caller drops when it is done with everything it borrowed (the drop may run Python code).
/// Runs no Python code itself.
pub fn store_field(obj: &ObjAny, slot: Slot<'_>, v: Value) -> PyResult<Value> {
    check_owner(obj, slot)?;
    match (slot.access, slot.at) {
        // SAFETY: as in `load_field`; the kind was checked by the caller's conversion.
        (FieldAccess::Inline(_), Some(at)) => Ok(unsafe { slot_replace(obj, at, v) }),
        // SAFETY: as above.
        (FieldAccess::Inline(i), None) => Ok(unsafe { record_replace_unchecked(obj, *i, v) }),
        (FieldAccess::Accessor { set: Some(set), .. }, _) => set(obj, v)
            .map(|()| Value::None)
            .map_err(|e| PyTypeError::new_err(format!("field '{}': {e}", slot.name))),
        (FieldAccess::Accessor { set: None, .. }, _) => Err(PyAttributeError::new_err(format!(
            "field '{}' is read-only",
            slot.name
        ))),
    }
}

/// An uncounted view of a wrapper's native object (counted on free-threaded builds). Valid only
/// while no Python code runs: its methods cannot call Python, and it must be dropped before
/// anything that can.
#[derive(Debug)]
pub struct NativeView<'w> {
    obj: Held,
    _wrapper: PhantomData<&'w ffi::PyObject>,
}

/// What a view holds: a borrow of the wrapper's reference under a GIL, a reference of its own
/// without one.
#[cfg(not(Py_GIL_DISABLED))]
type Held = ManuallyDrop<ObjAny>;
#[cfg(Py_GIL_DISABLED)]
type Held = ObjAny;

impl NativeView<'_> {
    /// A copy of one field (see [`load_field`]).
    #[inline]
    pub fn load(&self, slot: Slot<'_>) -> PyResult<Value> {
        load_field(&self.obj, slot)
    }

    /// The view turned into a strong handle, usable across Python code (on free-threaded
    /// builds, the view's own reference).
    pub fn into_counted(self) -> ObjAny {
        #[cfg(not(Py_GIL_DISABLED))]
        return (*self.obj).clone();
        #[cfg(Py_GIL_DISABLED)]
        return self.obj;
    }

    /// The object, borrowed for native work that runs no Python code (the slot accessors of
    /// the hot paths in `crate::field`).
    #[inline]
    pub fn native(&self) -> &ObjAny {
        &self.obj
    }
}

/// The uncounted view of wrapper `w`'s native object, or `MovedError` if it has none.
///
/// # Safety
/// `w` is a live tether wrapper and the GIL is held; no Python code runs while the view lives
/// (the wrapper's strong reference then cannot go away under it).
#[inline]
pub unsafe fn view<'w>(w: *mut ffi::PyObject) -> PyResult<NativeView<'w>> {
    #[cfg(not(Py_GIL_DISABLED))]
    // SAFETY: `w` is a wrapper (caller).
    let held = NonNull::new(unsafe { rec_load(w) }).map(|rec| {
        // SAFETY: the wrapper owns a strong reference to `rec`; the ManuallyDrop borrow does
        // not change the count and cannot outlive a stretch with no Python code (caller).
        ManuallyDrop::new(unsafe { ObjAny::from_raw(rec) })
    });
    #[cfg(Py_GIL_DISABLED)]
    // SAFETY: `w` is live and the thread attached (caller). Inside the critical section `rec`
    // cannot be taken out (moves store it there), so the wrapper's reference keeps the object
    // alive while it is cloned.
    let held = unsafe {
        crate::ft::critical(w, || {
            NonNull::new(rec_load(w)).map(|rec| (*ManuallyDrop::new(ObjAny::from_raw(rec))).clone())
        })
    };
    match held {
        Some(obj) => Ok(NativeView {
            obj,
            _wrapper: PhantomData,
        }),
        // SAFETY: `w` is live (caller).
        None => Err(unsafe { moved_error(w) }),
    }
}

/// A strong handle to wrapper `w`'s native object, or `MovedError`.
///
/// # Safety
/// `w` is a live tether wrapper; GIL held.
#[inline]
pub unsafe fn counted(w: *mut ffi::PyObject) -> PyResult<ObjAny> {
    // SAFETY: forwarded; the view ends before any Python code can run.
    unsafe { view(w) }.map(NativeView::into_counted)
}

/// Whether wrapper `w` still holds `obj` (re-checked after Python code ran).
///
/// # Safety
/// `w` is a live tether wrapper; GIL held.
pub unsafe fn still_holds(w: *mut ffi::PyObject, obj: &ObjAny) -> bool {
    // SAFETY: `w` is a wrapper (caller).
    unsafe { rec_load(w) == obj.as_ptr().as_ptr() }
}

/// Whether wrapper `w` holds no native object (not initialized, or moved out).
///
/// # Safety
/// `w` is a live tether wrapper; GIL held.
pub unsafe fn is_empty(w: *mut ffi::PyObject) -> bool {
    // SAFETY: `w` is a wrapper (caller).
    unsafe { rec_load(w).is_null() }
}

/// The error for a wrapper without a native object.
///
/// # Safety
/// `w` is a live object; GIL held.
pub unsafe fn moved_error(w: *mut ffi::PyObject) -> PyErr {
    // SAFETY: `w` is live; its type is readable.
    let name = unsafe { type_name(ffi::Py_TYPE(w)) };
    MovedError::new_err(format!(
        "this {name} wrapper has no native object: it was moved out with tether.move(), or it \
         was never initialized (__init__ did not run, or its unpickling or copy did not \
         complete)"
    ))
}

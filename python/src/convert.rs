//! Conversions between Python objects and runtime [`Value`]s.
//!
//! Python objects held natively (fields of kind `object`, callables, exceptions) become
//! [`HostHandle`]s: one strong Python reference each, released with the GIL taken if needed.
//! Native objects become their canonical wrapper (see [`crate::wrapper::wrap`]); `str` and
//! `bytes` are copied both ways and are exempt from identity.

use crate::errors::MovedError;
use crate::function::{Moved, PyFunction};
use crate::wrapper::{self, borrow_native};
use core::ffi::c_void;
use core::ptr::NonNull;
use pyo3::exceptions::{PyOverflowError, PyTypeError};
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyBytes, PyFloat, PyInt, PyString};
use std::sync::Arc;
use tether_runtime::types::{type_info, FieldKind};
use tether_runtime::{HostHandle, HostVTable, ObjAny, Value};

unsafe fn handle_clone(p: NonNull<c_void>) {
    // SAFETY: the handle holds a strong reference to a live Python object; attach takes the GIL
    // (cheaply, if already held) before touching its refcount.
    Python::attach(|_| unsafe { ffi::Py_IncRef(p.as_ptr().cast()) });
}

unsafe fn handle_drop(p: NonNull<c_void>) {
    // SAFETY: as in `handle_clone`; this releases the handle's own reference.
    Python::attach(|_| unsafe { ffi::Py_DecRef(p.as_ptr().cast()) });
}

/// The vtable of Python objects held by the runtime.
pub static PY_HANDLE: HostVTable = HostVTable {
    clone: handle_clone,
    drop: handle_drop,
};

/// A host handle holding a new reference to `o`.
pub fn object_to_handle(o: &Bound<'_, PyAny>) -> HostHandle {
    let p = o.clone().into_ptr();
    // SAFETY: `p` is a new strong reference that the handle now owns, released by PY_HANDLE.
    unsafe { HostHandle::from_raw(NonNull::new_unchecked(p.cast()), &PY_HANDLE) }
}

/// The Python object behind a handle (a new reference), if the handle is one of ours.
pub fn handle_to_object<'py>(py: Python<'py>, h: &HostHandle) -> PyResult<Bound<'py, PyAny>> {
    if !core::ptr::eq(h.vtable(), &PY_HANDLE) {
        return Err(PyTypeError::new_err(
            "a native host handle that is not a Python object",
        ));
    }
    // SAFETY: handles with PY_HANDLE's vtable hold a strong reference to a live PyObject.
    Ok(unsafe { Bound::from_borrowed_ptr(py, h.as_ptr().as_ptr().cast()) })
}

/// Converts a value to a new Python reference. `tied`: objects come back as their canonical
/// wrapper (else as a fresh, unbound one).
#[inline]
pub fn to_py(py: Python<'_>, v: &Value, tied: bool) -> PyResult<*mut ffi::PyObject> {
    Ok(match v {
        Value::None => py.None().into_ptr(),
        Value::Bool(b) => PyBool::new(py, *b).to_owned().into_ptr(),
        Value::Int(i) => i.into_pyobject(py)?.into_ptr(),
        Value::Float(f) => PyFloat::new(py, *f).into_ptr(),
        Value::Str(s) => PyString::new(py, s).into_ptr(),
        Value::Bytes(b) => PyBytes::new(py, b).into_ptr(),
        // SAFETY: the GIL is held (we have `py`).
        Value::Object(o) => unsafe { wrapper::wrap(o, tied)? },
        Value::Function(f) => Bound::new(py, PyFunction::new(f.clone()))?.into_ptr(),
        Value::Opaque(h) => handle_to_object(py, h)?.into_ptr(),
    })
}

/// A native object from a Python value: a live wrapper (a new reference is taken) or a
/// `tether.move()` token (its reference is taken over).
fn native_of(o: &Bound<'_, PyAny>) -> PyResult<Option<ObjAny>> {
    // SAFETY: `o` is live and the GIL is held.
    if unsafe { wrapper::is_wrapper(o.as_ptr()) } {
        // SAFETY: checked to be a wrapper; the borrow is cloned before `o` can go away.
        let obj = unsafe { borrow_native(o.as_ptr()) }?;
        return Ok(Some((*obj).clone()));
    }
    if let Ok(m) = o.cast::<Moved>() {
        return m
            .get()
            .take()
            .map(Some)
            .ok_or_else(|| MovedError::new_err("this tether.move() token was already consumed"));
    }
    Ok(None)
}

fn kind_name(kind: &FieldKind) -> String {
    match kind {
        FieldKind::Int => "int".into(),
        FieldKind::Float => "float".into(),
        FieldKind::Bool => "bool".into(),
        FieldKind::Str => "str".into(),
        FieldKind::Bytes => "bytes".into(),
        FieldKind::Any => "object".into(),
        FieldKind::Optional(k) => format!("Optional[{}]", kind_name(k)),
        FieldKind::Object(t) => match crate::class::class_for(*t) {
            // SAFETY: registered classes are immortal type objects.
            Ok(cls) => unsafe { wrapper::type_name(cls) },
            Err(_) => type_info(*t).map_or_else(|| "tether.Object".into(), |i| i.name.clone()),
        },
    }
}

fn type_error(expected: &FieldKind, got: &Bound<'_, PyAny>) -> PyErr {
    let got = got
        .get_type()
        .name()
        .map_or_else(|_| "?".to_string(), |n| n.to_string());
    PyTypeError::new_err(format!("expected {}, got {got}", kind_name(expected)))
}

/// Converts `o` for a field of `kind`, or raises `TypeError` naming what was expected.
pub fn from_py_kind(o: &Bound<'_, PyAny>, kind: &FieldKind) -> PyResult<Value> {
    match kind {
        FieldKind::Optional(inner) => {
            if o.is_none() {
                Ok(Value::None)
            } else {
                from_py_kind(o, inner)
            }
        }
        FieldKind::Int => {
            if !o.is_instance_of::<PyInt>() {
                return Err(type_error(kind, o));
            }
            o.extract::<i64>()
                .map(Value::Int)
                .map_err(|_| PyOverflowError::new_err("int field out of the 64-bit signed range"))
        }
        FieldKind::Float => {
            if o.is_instance_of::<PyFloat>() || o.is_instance_of::<PyInt>() {
                Ok(Value::Float(o.extract::<f64>()?))
            } else {
                Err(type_error(kind, o))
            }
        }
        FieldKind::Bool => match o.cast::<PyBool>() {
            Ok(b) => Ok(Value::Bool(b.is_true())),
            Err(_) => Err(type_error(kind, o)),
        },
        FieldKind::Str => match o.cast::<PyString>() {
            Ok(s) => Ok(Value::Str(Arc::from(s.to_str()?))),
            Err(_) => Err(type_error(kind, o)),
        },
        FieldKind::Bytes => match o.cast::<PyBytes>() {
            Ok(b) => Ok(Value::Bytes(Arc::from(b.as_bytes()))),
            Err(_) => Err(type_error(kind, o)),
        },
        FieldKind::Any => Ok(Value::Opaque(object_to_handle(o))),
        FieldKind::Object(t) => match native_of(o)? {
            Some(obj) if obj.is_instance(*t) => Ok(Value::Object(obj)),
            _ => Err(type_error(kind, o)),
        },
    }
}

/// Converts an argument of a native function call, with no declared kind.
pub fn from_py_any(o: &Bound<'_, PyAny>) -> PyResult<Value> {
    if o.is_none() {
        return Ok(Value::None);
    }
    if let Ok(b) = o.cast::<PyBool>() {
        return Ok(Value::Bool(b.is_true()));
    }
    if o.is_exact_instance_of::<PyInt>() {
        if let Ok(i) = o.extract::<i64>() {
            return Ok(Value::Int(i));
        }
    }
    if o.is_exact_instance_of::<PyFloat>() {
        return Ok(Value::Float(o.extract::<f64>()?));
    }
    if let Ok(s) = o.cast_exact::<PyString>() {
        return Ok(Value::Str(Arc::from(s.to_str()?)));
    }
    if let Ok(b) = o.cast_exact::<PyBytes>() {
        return Ok(Value::Bytes(Arc::from(b.as_bytes())));
    }
    if let Some(obj) = native_of(o)? {
        return Ok(Value::Object(obj));
    }
    if let Ok(f) = o.cast::<PyFunction>() {
        return Ok(Value::Function(f.get().func.clone()));
    }
    Ok(Value::Opaque(object_to_handle(o)))
}

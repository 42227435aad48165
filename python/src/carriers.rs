//! Floor 3: the `#[pyclass]` data that carries native values through Python: `tether.Function`
//! (its methods are in [`crate::function`]) and `tether.Moved`, the token of `tether.move()`.
//!
//! Invariant: a `Moved` token holds its object until a conversion commits it (see
//! `crate::convert::Moves`): peeking never consumes.

use crate::errors::MovedError;
use crate::pytypes::is_wrapper;
use crate::wrapper;
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use std::sync::Mutex;
use tether_runtime::{Function, ObjAny, ObjRef};

/// A runtime function object, callable from Python.
///
/// Objects it returns come back as their canonical wrapper (tied policy) or as a new, unbound
/// wrapper (fresh policy).
#[pyclass(module = "tether", name = "Function", frozen)]
pub struct PyFunction {
    pub(crate) func: ObjRef<Function>,
}

impl PyFunction {
    /// Wraps a runtime function.
    pub fn new(func: ObjRef<Function>) -> Self {
        PyFunction { func }
    }
}

/// A native object in transit: made by `tether.move(x)`, consumed by the native call it is
/// passed to.
#[pyclass(module = "tether", name = "Moved", frozen)]
pub struct Moved {
    obj: Mutex<Option<ObjAny>>,
}

impl Moved {
    fn slot(&self) -> std::sync::MutexGuard<'_, Option<ObjAny>> {
        self.obj.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes the object out (once).
    pub fn take(&self) -> Option<ObjAny> {
        self.slot().take()
    }

    /// A counted handle to the object, which the token keeps (see `convert::Moves`).
    pub fn peek(&self) -> Option<ObjAny> {
        self.slot().clone()
    }

    /// Whether the token still holds the object at `p`.
    pub fn holds(&self, p: core::ptr::NonNull<tether_runtime::ObjHeader>) -> bool {
        self.slot().as_ref().is_some_and(|o| o.as_ptr() == p)
    }
}

#[pymethods]
impl Moved {
    fn __repr__(&self) -> String {
        let live = self.slot().is_some();
        format!(
            "<tether.Moved ({})>",
            if live { "pending" } else { "consumed" }
        )
    }
}

/// `tether.move(x)`: takes the native object out of wrapper `x` for a native call. The binding is
/// detached first, so the field it came from yields a new canonical wrapper; any later use of
/// `x` raises `tether.MovedError`.
#[pyfunction(name = "move")]
pub fn move_(x: &Bound<'_, PyAny>) -> PyResult<Moved> {
    // SAFETY: `x` is live; GIL held.
    if !unsafe { is_wrapper(x.as_ptr()) } {
        return Err(PyTypeError::new_err("tether.move() takes a tether object"));
    }
    // SAFETY: checked to be a wrapper.
    let obj = unsafe { wrapper::take_native(x.as_ptr()) }
        .map_err(|_| MovedError::new_err("this object was already moved"))?;
    Ok(Moved {
        obj: Mutex::new(Some(obj)),
    })
}

//! Floor 0: Python objects held by the runtime ([`HostHandle`]s with the [`PY_HANDLE`] vtable).
//!
//! Invariants: a handle made by [`object_to_handle`] owns one strong Python reference, shared by
//! all its native clones (cloning takes no GIL) and released once by [`PY_HANDLE`]'s `drop`,
//! which never unwinds and never calls into Python when it cannot (after finalization, or from
//! a thread without the GIL once finalization began): then the reference is leaked.

use core::ffi::c_void;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicBool, Ordering::Relaxed};
use pyo3::exceptions::PyTypeError;
use pyo3::ffi;
use pyo3::prelude::*;
use std::panic::{catch_unwind, AssertUnwindSafe};
use tether_runtime::{HostHandle, HostVTable};

/// Set once the interpreter starts finalizing (from `atexit`, see `tether/__init__.py`): from
/// then on a thread that does not hold the GIL never tries to take it.
pub static FINALIZING: AtomicBool = AtomicBool::new(false);

/// Gives up one Python reference to `p` from whatever thread the runtime runs this on. Never
/// unwinds, and never calls into Python when it cannot: after the interpreter is gone, or from a
/// thread without the GIL once finalization began (attaching then would hang or stop the
/// thread), the reference is leaked.
///
/// # Safety
/// The caller owns one strong reference to the live Python object `p`.
pub unsafe fn decref_from_any_thread(p: *mut ffi::PyObject) {
    let release = || {
        // SAFETY: reading the interpreter's state is allowed at any time from any thread.
        if unsafe { ffi::Py_IsInitialized() } == 0 {
            return; // the interpreter is gone: leak rather than touch it
        }
        // SAFETY: as above.
        if unsafe { ffi::PyGILState_Check() } == 1 {
            // SAFETY: the GIL is held; the caller owns this reference.
            unsafe { ffi::Py_DecRef(p) };
        } else if !FINALIZING.load(Relaxed) {
            // SAFETY: as above, after attaching.
            Python::attach(|_| unsafe { ffi::Py_DecRef(p) });
        }
    };
    // A panic (PyO3 refusing to attach) must not unwind into the runtime's drop path, which
    // may be inside a CPython slot: the reference is leaked instead.
    let _ = catch_unwind(AssertUnwindSafe(release));
}

/// Releases the Python reference of a host handle ([`decref_from_any_thread`]).
unsafe fn handle_drop(p: NonNull<c_void>) {
    // SAFETY: the handle owns one strong reference (module invariant).
    unsafe { decref_from_any_thread(p.as_ptr().cast()) }
}

/// The vtable of Python objects held by the runtime.
pub static PY_HANDLE: HostVTable = HostVTable { drop: handle_drop };

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

//! The boundary between CPython's C slots and Rust: results become CPython's error convention,
//! panics become Python exceptions (never unwinding into C).

use pyo3::exceptions::PySystemError;
use pyo3::prelude::*;
use std::panic::{catch_unwind, AssertUnwindSafe};

/// Runs `f` with the GIL token; on `Err` (or a panic) sets the Python error and returns `on_err`.
///
/// # Safety
/// The GIL must be held (true in every CPython slot).
#[inline(always)]
pub unsafe fn trap<R>(on_err: R, f: impl FnOnce(Python<'_>) -> PyResult<R>) -> R {
    // SAFETY: the caller holds the GIL.
    let py = unsafe { Python::assume_attached() };
    match catch_unwind(AssertUnwindSafe(|| f(py))) {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => {
            e.restore(py);
            on_err
        }
        Err(payload) => {
            let msg = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "panic in tether".to_string());
            PySystemError::new_err(format!("tether internal error: {msg}")).restore(py);
            on_err
        }
    }
}

//! dhat heap profiling from Python (cargo feature `dhat-heap`; `make profile` builds it into a
//! venv of its own and runs `profiles/churn.py`).
//!
//! The feature installs [`dhat::Alloc`] as this extension's `#[global_allocator]` and turns on
//! `global-inner`, so the runtime's objects (each with its 16-byte header), the wrapper pool's
//! slabs and every other Rust allocation of the extension go through dhat. CPython's own memory
//! (its object allocator, dicts, lists) is not seen.
//!
//! * `_native._dhat_start(path)`: starts a heap profiler that writes `path` when stopped.
//! * `_native._dhat_stats()`: dhat's counters now, as a dict.
//! * `_native._dhat_stop()`: the final counters as a dict; stops the profiler, which writes the
//!   JSON file (open it with dhat's viewer, `dh_view.html`) and prints a summary to stderr.

use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::types::PyDict;
use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard, PoisonError};

#[global_allocator]
static GLOBAL: dhat::Alloc = dhat::Alloc;

/// The running profiler, if any (dhat allows one at a time).
static PROFILER: Mutex<Option<dhat::Profiler>> = Mutex::new(None);

fn profiler() -> MutexGuard<'static, Option<dhat::Profiler>> {
    // The slot is a plain Option: a panic while it was held cannot leave it half-updated.
    PROFILER.lock().unwrap_or_else(PoisonError::into_inner)
}

fn not_running() -> PyErr {
    PyRuntimeError::new_err("no dhat profiler is running (call _dhat_start first)")
}

fn stats_dict(py: Python<'_>) -> PyResult<Bound<'_, PyDict>> {
    let s = dhat::HeapStats::get();
    let d = PyDict::new(py);
    d.set_item("total_blocks", s.total_blocks)?;
    d.set_item("total_bytes", s.total_bytes)?;
    d.set_item("curr_blocks", s.curr_blocks)?;
    d.set_item("curr_bytes", s.curr_bytes)?;
    d.set_item("max_blocks", s.max_blocks)?;
    d.set_item("max_bytes", s.max_bytes)?;
    Ok(d)
}

/// `_dhat_start(path)`: starts heap profiling; the profile is written to `path` on stop.
#[pyfunction]
fn _dhat_start(path: PathBuf) -> PyResult<()> {
    let mut slot = profiler();
    if slot.is_some() {
        return Err(PyRuntimeError::new_err(
            "a dhat profiler is already running",
        ));
    }
    *slot = Some(dhat::Profiler::builder().file_name(path).build());
    Ok(())
}

/// `_dhat_stats()`: dhat's counters (`curr_*`: live now, `max_*`: at the peak, `total_*`: all
/// allocations since the start).
#[pyfunction]
fn _dhat_stats(py: Python<'_>) -> PyResult<Bound<'_, PyDict>> {
    let slot = profiler();
    if slot.is_none() {
        return Err(not_running());
    }
    stats_dict(py)
}

/// `_dhat_stop()`: the final counters; stops the profiler, which writes the profile.
#[pyfunction]
fn _dhat_stop(py: Python<'_>) -> PyResult<Bound<'_, PyDict>> {
    let mut slot = profiler();
    if slot.is_none() {
        return Err(not_running());
    }
    let stats = stats_dict(py)?;
    drop(slot.take());
    Ok(stats)
}

/// Adds the profiling functions to the module.
pub fn init(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(_dhat_start, m)?)?;
    m.add_function(wrap_pyfunction!(_dhat_stats, m)?)?;
    m.add_function(wrap_pyfunction!(_dhat_stop, m)?)?;
    Ok(())
}

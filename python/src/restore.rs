//! Floor 6a: two-phase restore, so that typed cycles round-trip through pickle and deepcopy.
//!
//! Unpickling (or deep-copying) `a` with `a.next = b; b.prev = a` makes `a` first, empty (the
//! reconstructor), then restores `b`, whose state names `a` before `a` has any native object.
//! The first phase ([`ClassInfo::restore`](crate::class::ClassInfo::restore)) stores `None` in
//! such a field, or leaves a strict field of a tether class type unresolved (a null pointer
//! slot, read as `None`: `RecordBuilder::set_unresolved`), and lists it (only fields that will
//! accept the object: [`FieldDef::defers`]); [`defer`] records "when `a` is initialized, store it into
//! `b.prev`"; the second phase ([`complete`]), run as `a`'s own `__setstate__` finishes, does
//! the stores. A self-loop (`a.next = a`) is deferred and completed in the same call.
//!
//! Invariants (all under the GIL):
//! 1. Each pending entry holds strong references to its target (the object being restored) and
//!    its source (the object it waits for), so neither address can be reused while it waits.
//! 2. A completed entry is removed before its store, and a store goes only into a target that
//!    still holds the native object it had when the entry was made, into a field the source's
//!    native type fits (checked by `defers`; re-checked by the runtime's kind check).
//! 3. Entries whose source can no longer be initialized (nobody but the list holds it: the
//!    unpickling failed or was abandoned) are dropped by [`sweep`], run before each full
//!    collection: their targets keep `None` in the field (or the unresolved, null slot of a
//!    strict field, which reads as `None` and can be assigned).

use crate::class::{ClassInfo, FieldDef};
use crate::native;
use pyo3::ffi;
use pyo3::prelude::*;
use std::sync::Mutex;
use tether_runtime::{ObjAny, Value};

struct Pending {
    source: Py<PyAny>,
    target: Py<PyAny>,
    /// The native object `target` held when the entry was made (invariant 2).
    target_native: usize,
    field: &'static FieldDef,
}

/// The pending entries (invariant 1). Touched only with the GIL held, and never across Python
/// code (each use takes the entries out or puts them back, then releases the lock), so the lock
/// is never contended and never held while waiting for the GIL.
static PENDING: Mutex<Vec<Pending>> = Mutex::new(Vec::new());

fn with_pending<R>(f: impl FnOnce(&mut Vec<Pending>) -> R) -> R {
    // A poisoned lock still guards a consistent list (every use is a push or a partition).
    f(&mut PENDING.lock().unwrap_or_else(|e| e.into_inner()))
}

/// Records the first phase's deferred fields of `target` (just initialized) for completion
/// when each source is initialized.
///
/// # Safety
/// `target` is a live, initialized tether wrapper of class `info`; GIL held.
pub unsafe fn defer(
    py: Python<'_>,
    target: *mut ffi::PyObject,
    info: &ClassInfo,
    deferred: Vec<(usize, Bound<'_, PyAny>)>,
) -> PyResult<()> {
    if deferred.is_empty() {
        return Ok(());
    }
    // SAFETY: `target` is initialized (caller).
    let target_native = unsafe { native::counted(target) }?.as_ptr().as_ptr() as usize;
    // SAFETY: `target` is live (caller).
    let target_ref: Py<PyAny> = unsafe { Py::from_borrowed_ptr(py, target) };
    with_pending(|p| {
        for (i, source) in deferred {
            p.push(Pending {
                source: source.unbind(),
                target: target_ref.clone_ref(py),
                target_native,
                field: info.fields[i],
            });
        }
    });
    Ok(())
}

/// The second phase for `source`, whose native object was just installed: stores it into every
/// field that waited for it.
///
/// # Safety
/// `source` is a live tether wrapper; GIL held.
pub unsafe fn complete(py: Python<'_>, source: *mut ffi::PyObject) -> PyResult<()> {
    let ready: Vec<Pending> = with_pending(|p| {
        if p.is_empty() {
            return Vec::new();
        }
        let (ready, waiting) = core::mem::take(p)
            .into_iter()
            .partition(|e| e.source.as_ptr() == source);
        *p = waiting;
        ready
    });
    if ready.is_empty() {
        return Ok(());
    }
    // SAFETY: `source` is live (caller) and was just initialized.
    let value = unsafe { native::counted(source) }?;
    for e in ready {
        let t = e.target.as_ptr();
        // SAFETY: the entry's reference keeps the target alive; it is a tether wrapper.
        let Ok(obj) = (unsafe { native::counted(t) }) else {
            continue; // moved out since: nothing to complete
        };
        if obj.as_ptr().as_ptr() as usize != e.target_native {
            continue; // re-initialized or replaced since (invariant 2)
        }
        store(&obj, e.field, &value)?;
    }
    let _ = py;
    Ok(())
}

fn store(target: &ObjAny, field: &FieldDef, value: &ObjAny) -> PyResult<()> {
    let old = native::store_field(target, field.slot(), Value::Object(value.clone()))?;
    drop(old); // None: the first phase stored it
    Ok(())
}

/// Drops the entries whose source nobody but this list holds (invariant 3); returns how many.
pub fn sweep(_py: Python<'_>) -> usize {
    let dead: Vec<Pending> = with_pending(|p| {
        let (dead, live) = core::mem::take(p)
            .into_iter()
            // SAFETY: the entry's reference keeps the source alive; reading a live object's
            // reference count under the GIL.
            .partition(|e| unsafe { ffi::Py_REFCNT(e.source.as_ptr()) } <= 1);
        *p = live;
        dead
    });
    // Dropped outside the borrow: releasing them may run Python code (a class dealloc).
    let n = dead.len();
    drop(dead);
    n
}

/// How many entries wait (for tests).
pub fn pending() -> usize {
    with_pending(|p| p.len())
}

//! Floor 1: which Python class the runtime hands out for a type index, and keeping classes alive
//! for their native objects.
//!
//! Classes are ordinary mortal objects. Invariants:
//! 1. The runtime's type registry holds a *borrowed* pointer to each type's class
//!    ([`register_class`], set once per type), cleared when the class dies
//!    ([`unregister_class`], from the metaclass's dealloc): a non-null pointer names a live class.
//!    `CLASS_OF` mirrors it, written at the same two points.
//! 2. While native objects of a record type may be alive, its class is kept alive for them by
//!    one strong reference in [`HELD`] ([`hold_class`], when an object is built or wrapped),
//!    given back by [`release_idle_classes`] (before full collections and at exit) once the type
//!    has no live objects. A class with no instances and no Python references is then collected
//!    like any other, and with it whatever its methods' globals hold.
//!
//! On GIL builds all of it runs with the GIL held, and the atomics and the mutex only make the
//! statics shareable. On free-threaded builds classes are registered and wrapped on any Python
//! thread: `CLASS_OF` is published with `Release` and read with `Acquire` (a class is fully
//! built before another thread can use it), and holding races releasing (invariant 2, see
//! [`release_idle_classes`]).

use core::sync::atomic::{fence, AtomicBool, AtomicPtr, Ordering, Ordering::Relaxed};
use pyo3::exceptions::PyTypeError;
use pyo3::ffi;
use pyo3::prelude::*;
use std::sync::Mutex;
use tether_runtime::types::{type_info, TypeKind, MAX_TYPES};

/// Each type index's class, mirroring the registry's host data (invariant 1) in a flat table:
/// the revive path finds a class with one load instead of a registry lookup.
static CLASS_OF: [AtomicPtr<ffi::PyTypeObject>; MAX_TYPES as usize] =
    [const { AtomicPtr::new(core::ptr::null_mut()) }; MAX_TYPES as usize];

/// The orderings of `CLASS_OF` (Relaxed under a GIL, which orders everything; see the module
/// docs).
#[cfg(not(Py_GIL_DISABLED))]
const PUBLISH_LOAD: Ordering = Relaxed;
#[cfg(not(Py_GIL_DISABLED))]
const PUBLISH_STORE: Ordering = Relaxed;
#[cfg(Py_GIL_DISABLED)]
const PUBLISH_LOAD: Ordering = Ordering::Acquire;
#[cfg(Py_GIL_DISABLED)]
const PUBLISH_STORE: Ordering = Ordering::Release;

/// The class registered for runtime type `type_index` (borrowed: use it before any Python code
/// can run, or take a reference).
#[inline]
pub fn class_for(type_index: u32) -> PyResult<*mut ffi::PyTypeObject> {
    // GIL builds: classes are registered and unregistered under the GIL, which the caller
    // holds (it orders the class's creation before this load). Free-threaded builds: Acquire,
    // pairing with the Release store in `register_class`.
    match CLASS_OF
        .get(type_index as usize)
        .map(|c| c.load(PUBLISH_LOAD))
    {
        Some(cls) if !cls.is_null() => Ok(cls),
        _ => no_class(type_index),
    }
}

#[cold]
fn no_class(type_index: u32) -> PyResult<*mut ffi::PyTypeObject> {
    let info = type_info(type_index)
        .ok_or_else(|| PyTypeError::new_err(format!("unknown native type index {type_index}")))?;
    let cls = info.host_data();
    if cls.is_null() {
        return Err(PyTypeError::new_err(format!(
            "native type '{}' has no Python class (it was never declared, or it was collected)",
            info.name
        )));
    }
    Ok(cls.cast())
}

/// Records `cls` as the class of runtime type `type_index` (invariant 1). A type's class is set
/// once: a second class for the same type index is refused.
///
/// # Safety
/// `cls` is a live tether class; GIL held.
pub unsafe fn register_class(type_index: u32, cls: *mut ffi::PyTypeObject) -> PyResult<()> {
    let info = type_info(type_index)
        .ok_or_else(|| PyTypeError::new_err(format!("unknown native type index {type_index}")))?;
    if info.init_host_data(cls.cast()) != cls.cast() {
        return Err(PyTypeError::new_err(format!(
            "native type '{}' already has a Python class",
            info.name
        )));
    }
    if let Some(c) = CLASS_OF.get(type_index as usize) {
        c.store(cls, PUBLISH_STORE);
    }
    Ok(())
}

/// Forgets `cls` as its type's class (invariant 1; from the class's dealloc).
pub fn unregister_class(type_index: u32, cls: *mut ffi::PyTypeObject) {
    if let Some(info) = type_info(type_index) {
        if info.host_data() == cls.cast() {
            info.set_host_data(core::ptr::null_mut());
            if let Some(c) = CLASS_OF.get(type_index as usize) {
                c.store(core::ptr::null_mut(), Relaxed);
            }
        }
    }
}

/// Classes held for their native objects, each with one strong reference (invariant 2).
static HELD: Mutex<Vec<(u32, usize)>> = Mutex::new(Vec::new());

/// Whether type `i`'s class is in [`HELD`] (one flag per type index, for the one-load check).
static HELD_FLAGS: [AtomicBool; MAX_TYPES as usize] =
    [const { AtomicBool::new(false) }; MAX_TYPES as usize];

/// Keeps `cls`, the class of record type `type_index`, alive while native objects of the type
/// exist (invariant 2). Cheap when already held: one load. Classes of Rust-defined types are
/// not held: they live in the module that created them.
///
/// # Safety
/// `cls` is the live class registered for `type_index`; GIL held.
#[inline]
pub unsafe fn hold_class(type_index: u32, cls: *mut ffi::PyTypeObject) {
    let Some(flag) = HELD_FLAGS.get(type_index as usize) else {
        return;
    };
    // Free-threaded builds: the object that makes this call was counted live before it (its
    // allocation), and the fence orders that count before the flag's load, against
    // `release_idle_classes`, which clears the flag, fences, then re-reads the count: one of
    // the two sees the other (the store-buffering pattern, closed by the two SeqCst fences).
    #[cfg(Py_GIL_DISABLED)]
    fence(Ordering::SeqCst);
    if flag.load(Relaxed) || type_info(type_index).is_none_or(|i| i.kind != TypeKind::Record) {
        return;
    }
    let mut held = HELD.lock().unwrap_or_else(|e| e.into_inner());
    if flag.load(Relaxed) {
        return; // another thread held it meanwhile
    }
    flag.store(true, Relaxed);
    // SAFETY: `cls` is live (caller); this reference is HELD's, released in
    // `release_idle_classes`.
    unsafe { ffi::Py_INCREF(cls.cast()) };
    held.push((type_index, cls as usize));
}

/// Gives back the references of held classes whose types have no live native objects; returns
/// how many were released. A released class whose objects reappear (built natively) is held
/// again when one is wrapped.
///
/// Under the lock, a candidate's flag is cleared *before* its count is read (with a fence
/// between): a thread that counts a new object after that read sees the flag clear and holds
/// the class again itself (taking the lock, so after this release's bookkeeping), and one that
/// counted it before is seen here and keeps the class held.
pub fn release_idle_classes(_py: Python<'_>) -> usize {
    let idle: Vec<(u32, usize)> = {
        let mut held = HELD.lock().unwrap_or_else(|e| e.into_inner());
        let (idle, busy) = held.drain(..).partition(|&(t, _)| {
            let flag = &HELD_FLAGS[t as usize];
            flag.store(false, Relaxed);
            fence(Ordering::SeqCst);
            let idle = type_info(t).is_none_or(|i| i.live_objects() == 0);
            if !idle {
                flag.store(true, Relaxed);
            }
            idle
        });
        *held = busy;
        idle
    };
    // The lock is released: a DECREF below may free a class, whose dealloc runs Python code.
    for &(_, cls) in &idle {
        // SAFETY: HELD's reference kept `cls` alive until now; the thread is attached (`_py`).
        unsafe { ffi::Py_DECREF((cls as *mut ffi::PyTypeObject).cast()) };
    }
    idle.len()
}

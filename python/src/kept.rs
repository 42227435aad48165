//! Floor 2: kept wrappers, so that weak references follow the native object.
//!
//! A weak reference to a tether object is a weak reference to its canonical wrapper. If the
//! wrapper parked when its last Python reference went, its weak references would die with it
//! while the object lives on. So a dying canonical wrapper that has weak references is *kept*
//! instead: resurrected, and owned by its native object (`tether_runtime::tie::keep`), as long
//! as some other native reference to the object exists. It stays a live Python object, bound,
//! at the same address; its weak references keep working, and `lookup` finds it as any live
//! wrapper. When the object's last other reference goes, on whichever thread, the runtime calls
//! [`release_kept`]: the wrapper's kept reference is given up (with the GIL taken for it), and
//! its dealloc runs again, now finding nobody else: the weak references are cleared and their
//! callbacks run, once, and the object dies with it.
//!
//! Invariants:
//! 1. `TABLE` holds `(object, wrapper)` for every kept object, entered under its lock around
//!    `tie::keep` (so a claimer, which takes the lock after claiming, always finds it), and taken
//!    out by whoever ended the kept state: [`release_kept`] (after the runtime's claim) or
//!    [`unkeep`] (the host ends it for a move). That one owes the wrapper's kept reference.
//! 2. Only canonical wrappers of classes without a finalizer, with tying on, are kept (a class
//!    with `__del__` runs it at each death of its wrapper; keeping would change when).

use crate::pyhandle::decref_from_any_thread;
use pyo3::ffi;
use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};
use tether_runtime::{tie, ObjAny};

/// What the runtime's cycle collector asks of kept wrappers (`tether_runtime::collect_cycles`).
pub static CYCLE_HOST: tether_runtime::CycleHost = tether_runtime::CycleHost {
    kept_is_unreferenced,
    host_graph: crate::hostgraph::host_graph,
    prepare,
    release: crate::hostgraph::release,
};

/// `CycleHost::prepare`: the garbage Python objects are held (before any Python code runs),
/// the garbage native objects' kept wrappers are released (their weak reference callbacks
/// run), the Python objects are finalized; whether anything may have been resurrected.
fn prepare(natives: &[ObjAny], hosts: &[core::ptr::NonNull<core::ffi::c_void>]) -> bool {
    let before = crate::hostgraph::hold(hosts);
    for o in natives {
        before_clear(o);
    }
    crate::hostgraph::finalize(hosts, &before)
}

/// Whether the kept wrapper `w` is referenced by nothing but its object (its weak references
/// aside): then its reference to the object is part of the native graph. On a GIL build the
/// count is read only with the GIL held (else `false`: the collector keeps the object). On a
/// free-threaded build it is an atomic snapshot: a thread that takes a reference to `w` after
/// it (through a weak reference) keeps `w` alive past `before_clear`, and the collector, which
/// checks for live wrappers before it clears anything, then leaves the objects intact.
fn kept_is_unreferenced(w: core::ptr::NonNull<core::ffi::c_void>) -> bool {
    #[cfg(not(Py_GIL_DISABLED))]
    // SAFETY: a kept wrapper is alive (its object holds it); with the GIL held its count is
    // stable.
    return unsafe {
        ffi::PyGILState_Check() == 1 && ffi::Py_REFCNT(w.as_ptr().cast::<ffi::PyObject>()) == 1
    };
    #[cfg(Py_GIL_DISABLED)]
    // SAFETY: alive as above; Py_REFCNT reads the free-threaded counts atomically.
    return unsafe { ffi::Py_REFCNT(w.as_ptr().cast::<ffi::PyObject>()) == 1 };
}

/// Before the collector clears a garbage object: its kept wrapper, if any, is released now,
/// while every object is intact, so its weak references are cleared and their callbacks run
/// (the object is doomed: the dying wrapper parks instead of being kept again).
fn before_clear(obj: &ObjAny) {
    if let Some(w) = unkeep(obj) {
        // SAFETY: the kept reference is ours (unkeep).
        unsafe { decref_from_any_thread(w) };
    }
}

/// How the runtime's tie machine releases parked wrapper memory and kept wrappers.
pub static TIE_HOST: tie::TieHost = tie::TieHost {
    free_cached: crate::pool::free_parked,
    release_kept,
};

/// A kept wrapper, as the table holds it.
struct KeptWrapper(*mut ffi::PyObject);
// SAFETY: the pointer is only dereferenced by whoever takes the entry out, with the GIL (or, on
// free-threaded builds, attached); the table itself only stores it.
unsafe impl Send for KeptWrapper {}

/// Kept objects (by address) and their wrappers (invariant 1).
static TABLE: Mutex<BTreeMap<usize, KeptWrapper>> = Mutex::new(BTreeMap::new());

fn table() -> MutexGuard<'static, BTreeMap<usize, KeptWrapper>> {
    // A poisoned lock still guards a consistent map (each use is one insert or remove).
    TABLE.lock().unwrap_or_else(|e| e.into_inner())
}

fn key(obj: &ObjAny) -> usize {
    obj.as_ptr().as_ptr() as usize
}

/// How many wrappers are kept now.
pub fn count() -> usize {
    table().len()
}

/// What [`try_keep`] did with the dying wrapper.
pub enum Keep {
    /// Kept: alive again, owned by its object; the dealloc stops here.
    Kept,
    /// Another thread took a reference to it while it was resurrected (free-threaded builds):
    /// it is alive, owned by that reference; the dealloc stops here.
    #[cfg(Py_GIL_DISABLED)]
    Revived,
    /// Nobody else holds the object: the dealloc goes on (clearing the weak references).
    Dies,
}

/// Keeps the dying canonical wrapper `o` of `obj` if another reference to the object exists.
///
/// # Safety
/// `o` is a dying wrapper (its count reached zero; its dealloc is the caller) of a class
/// without a finalizer, bound to `obj`, whose reference `obj` is (borrowed, still in `rec`).
pub unsafe fn try_keep(o: *mut ffi::PyObject, obj: &ObjAny) -> Keep {
    // Resurrected first: from the moment the flag is set, another thread may release it.
    #[cfg(not(Py_GIL_DISABLED))]
    // SAFETY: `o` is dying under the GIL; its count is ours to set (CPython's own
    // resurrection from dealloc does this).
    unsafe {
        crate::pytypes::set_refcnt(o, 1)
    };
    #[cfg(Py_GIL_DISABLED)]
    // SAFETY: `o` is dying (caller): its counts are ours.
    unsafe {
        crate::ft::resurrect(o)
    };
    {
        let mut t = table();
        if tie::keep(obj) {
            t.insert(key(obj), KeptWrapper(o));
            return Keep::Kept;
        }
    }
    #[cfg(not(Py_GIL_DISABLED))]
    {
        // SAFETY: as above: nobody could take a reference meanwhile (GIL held, no Python
        // code ran), so the one we made is the only one.
        unsafe { crate::pytypes::set_refcnt(o, 0) };
        Keep::Dies
    }
    #[cfg(Py_GIL_DISABLED)]
    // SAFETY: resurrected by us above; this is its one end.
    if unsafe { crate::ft::end_resurrection(o) } {
        Keep::Dies
    } else {
        Keep::Revived
    }
}

/// Ends the kept state of `obj` for a move out of its wrapper: the wrapper whose kept
/// reference the caller now owes, if this call ended it (else nothing was kept, or a release on
/// another thread claimed it and its [`release_kept`] owes it).
pub fn unkeep(obj: &ObjAny) -> Option<*mut ffi::PyObject> {
    let mut t = table();
    if tie::unkeep(obj) {
        t.remove(&key(obj)).map(|w| w.0)
    } else {
        None
    }
}

/// `TieHost::release_kept`: `obj` is the last reference to a kept object besides its wrapper's.
/// Gives it up, then the wrapper's kept reference (from any thread: the GIL is taken for it;
/// once the interpreter is finalizing, the wrapper and its object are leaked instead).
fn release_kept(obj: ObjAny) {
    let w = table().remove(&key(&obj));
    drop(obj); // first: released after the wrapper, it could keep the wrapper again
    if let Some(w) = w {
        // SAFETY: the kept reference is ours since the claim (invariant 1).
        unsafe { decref_from_any_thread(w.0) };
    }
}

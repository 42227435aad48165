//! Floor 2: the tie machine as the wrapper life cycle uses it, one API for both builds.
//!
//! * GIL builds use `tether_runtime::tie::serial`: plain loads and stores, serialized by the
//!   GIL (its module docs hold the argument). A wrapper the tie word names is alive, because its
//!   dealloc unbinds or parks it first, so finding it is a load and a `Py_INCREF`.
//! * Free-threaded builds use `tether_runtime::tie::locked`: every transition of an object takes
//!   the lock bit in its tie word. Finding a wrapper is "lock, read, try to take a reference"
//!   (`crate::ft::try_incref`): the wrapper may be dying on another thread (its count reached
//!   zero, its dealloc not yet at the tie word); then the finder gives the lock back and waits
//!   for the death to park or release it, detached from the interpreter so a stop-the-world
//!   pause can proceed meanwhile. A revived wrapper is re-initialized under the lock, so no
//!   thread can see it half-made; a new one is allocated outside it and bound under it.
//!
//! Invariants:
//! 1. Only Python threads (holding a strong reference to the object) call these functions;
//!    native threads never make a transition.
//! 2. Under the lock nothing allocates Python objects, runs Python code or waits (the lock is a
//!    leaf spin lock: `tether_runtime::tie::locked`, contract 3).

use crate::ft;
use crate::pool::{self, LIVE, PARKED_NET};
use crate::pytypes::rec_store;
use core::ffi::c_void;
use core::ptr::{self, NonNull};
use pyo3::ffi;
use pyo3::prelude::*;
use tether_runtime::{Finalized, ObjAny, TieState};

#[cfg(not(Py_GIL_DISABLED))]
use tether_runtime::tie::serial as tie;

#[cfg(Py_GIL_DISABLED)]
use tether_runtime::tie::locked;

/// The tie-word form of a wrapper pointer.
#[inline(always)]
pub fn wrapper_ptr(w: *mut ffi::PyObject) -> NonNull<c_void> {
    // SAFETY: callers pass live wrapper pointers, never null.
    unsafe { NonNull::new_unchecked(w.cast()) }
}

/// (b): the live canonical wrapper of `obj` as a new reference, if it has one (a dying one does
/// not count: the caller takes the slow path, [`revive_or_bind`]).
///
/// # Safety
/// The thread is attached (GIL builds: holds the GIL); `obj` is alive for the call.
#[inline(always)]
pub unsafe fn find(obj: &ObjAny) -> Option<*mut ffi::PyObject> {
    #[cfg(not(Py_GIL_DISABLED))]
    {
        let w = tie::lookup(obj)?.as_ptr().cast::<ffi::PyObject>();
        // SAFETY: a bound wrapper is alive (module docs); GIL held: a plain Py_INCREF.
        let _ = unsafe { ft::try_incref(w) };
        Some(w)
    }
    #[cfg(Py_GIL_DISABLED)]
    {
        // Unlocked first: only a bound word is worth the lock (and a header-less object has no
        // word at all).
        if !obj.obj_header().has_tie_header()
            || !matches!(tether_runtime::tie::state(obj), TieState::Bound(_))
        {
            return None;
        }
        let t = locked::lock(obj);
        match t.state() {
            TieState::Bound(w) => {
                let w = w.as_ptr().cast::<ffi::PyObject>();
                // SAFETY: under the lock, a wrapper the word names is wrapper memory (ft
                // invariant 1).
                unsafe { ft::try_incref(w) }.then_some(w)
            }
            _ => None,
        }
    }
}

/// Whether `obj`'s canonical wrapper is `w`.
#[inline(always)]
pub fn is_bound_to(obj: &ObjAny, w: *mut ffi::PyObject) -> bool {
    #[cfg(not(Py_GIL_DISABLED))]
    return tie::lookup(obj) == Some(wrapper_ptr(w));
    // No lock needed: only `w`'s own dealloc (the caller) leaves (b: w) while `w` is dying,
    // and the word cannot come to name `w` from another thread.
    #[cfg(Py_GIL_DISABLED)]
    return tether_runtime::tie::state(obj) == TieState::Bound(wrapper_ptr(w));
}

/// (a) → (b): binds `w`, a wrapper holding `obj`. Fails, changing nothing, if the object has a
/// canonical wrapper already.
///
/// # Safety
/// `w` is a live wrapper holding a reference to `obj`.
#[inline]
pub unsafe fn bind(obj: &ObjAny, w: *mut ffi::PyObject) -> Result<(), TieState> {
    // SAFETY: `w` is live (caller); before it can be published (ft invariant 2).
    unsafe { ft::mark_shared_lookups(w) };
    #[cfg(not(Py_GIL_DISABLED))]
    return tie::bind(obj, wrapper_ptr(w));
    #[cfg(Py_GIL_DISABLED)]
    return locked::lock(obj).bind(wrapper_ptr(w));
}

/// (b: w) → (a), if `w` is `obj`'s canonical wrapper (a move, or a death that must not park).
/// Returns whether it was.
#[inline]
pub fn unbind(obj: &ObjAny, w: *mut ffi::PyObject) -> bool {
    #[cfg(not(Py_GIL_DISABLED))]
    return tie::unbind_for_last_release(obj, wrapper_ptr(w)).is_ok();
    #[cfg(Py_GIL_DISABLED)]
    return {
        let mut t = locked::lock(obj);
        t.state() == TieState::Bound(wrapper_ptr(w)) && t.unbind(wrapper_ptr(w)).is_ok()
    };
}

/// The dying wrapper `w`'s one call (the runtime's `park_or_release`): parks `w` if the object
/// lives on, else unbinds it and releases `obj` (the wrapper's own reference, consumed). The
/// pool's counters follow; on `Released` and on error the memory is the caller's.
///
/// # Safety
/// `w` is a dying wrapper whose reference `obj` was; its memory is in its cached form.
#[inline]
pub unsafe fn park_or_release(
    obj: ObjAny,
    w: *mut ffi::PyObject,
) -> Result<Finalized, (ObjAny, TieState)> {
    #[cfg(not(Py_GIL_DISABLED))]
    let r = tie::park_or_release(obj, wrapper_ptr(w));
    #[cfg(Py_GIL_DISABLED)]
    let r = locked::park_or_release(obj, wrapper_ptr(w));
    if let Ok(Finalized::Parked) = r {
        PARKED_NET.add(1);
        LIVE.add(-1);
    }
    r
}

/// Makes the parked block `w` a live instance of `cls` again, at the same address, taking over
/// `obj`'s reference.
///
/// # Safety
/// `w` was just revived by this thread (nobody else references it); `cls` is `obj`'s class
/// and the class `w` last had.
#[inline(always)]
unsafe fn init_revived(w: *mut ffi::PyObject, cls: *mut ffi::PyTypeObject, obj: ObjAny) {
    // SAFETY: PyObject_Init makes the block a live instance of `cls` (refcount one, owned by
    // this thread); it takes over our strong reference to the object.
    unsafe {
        ffi::PyObject_Init(w, cls);
        rec_store(w, obj.into_raw().as_ptr());
        (*w.cast::<crate::pytypes::Wrapper>()).weaklist = ptr::null_mut();
        ft::mark_shared_lookups(w);
    }
    PARKED_NET.add(-1);
    LIVE.add(1);
}

/// The canonical wrapper of `obj` (of class `cls`) as a new reference: the live one, the parked
/// one revived in place (same address, same `id()`), or a new one, bound. `obj` is the
/// caller's reference, which the revived or new wrapper takes over.
///
/// # Safety
/// The thread is attached (GIL builds: holds the GIL); `cls` is `obj`'s live tether class.
#[inline]
pub unsafe fn revive_or_bind(
    obj: ObjAny,
    cls: *mut ffi::PyTypeObject,
    new_wrapper: unsafe fn(*mut ffi::PyTypeObject, ObjAny) -> PyResult<*mut ffi::PyObject>,
) -> PyResult<*mut ffi::PyObject> {
    #[cfg(not(Py_GIL_DISABLED))]
    {
        match tie::revive(&obj) {
            Ok(m) => {
                let w = m.as_ptr().cast::<ffi::PyObject>();
                // The class is compared by address only: the stale type pointer of parked
                // memory is never dereferenced.
                // SAFETY: the revived block is a live pool block of WRAPPER_SIZE bytes.
                if unsafe { (*w).ob_type } == cls {
                    // SAFETY: revived by us; `cls` matches.
                    unsafe { init_revived(w, cls, obj) };
                    return Ok(w);
                }
                // The parked memory cannot serve this class: unbind it and return it to the
                // pool ourselves (it is ours since the revive), then make a new wrapper below.
                let _ = tie::unbind_for_last_release(&obj, m);
                PARKED_NET.add(-1);
                LIVE.add(1); // balanced by free_wrapper_mem's decrement
                             // SAFETY: the block came from the pool and is referenced by nobody now.
                unsafe { pool::free_wrapper_mem(m.as_ptr(), pool::parked_prefix(m.as_ptr())) };
            }
            Err(TieState::Bound(w)) => {
                let w = w.as_ptr().cast::<ffi::PyObject>();
                // SAFETY: a bound wrapper is alive; GIL held.
                unsafe { ffi::Py_INCREF(w) };
                return Ok(w);
            }
            Err(_) => {}
        }
        // SAFETY: an uncounted alias of `obj`, kept alive by the reference `w` takes over.
        let alias = core::mem::ManuallyDrop::new(unsafe { ObjAny::from_raw(obj.as_ptr()) });
        // SAFETY: GIL held; `cls` is the object's class.
        let w = unsafe { new_wrapper(cls, obj) }?;
        // A failed bind (impossible under the GIL) leaves `w` a valid fresh wrapper.
        // SAFETY: `w` is live and holds `alias`'s object.
        let _ = unsafe { bind(&alias, w) };
        Ok(w)
    }
    #[cfg(Py_GIL_DISABLED)]
    {
        // A wrapper made outside the lock (ft invariant 2 for allocation), bound if the object
        // is still unwrapped when we come back with it.
        let mut fresh: Option<*mut ffi::PyObject> = None;
        // SAFETY: an uncounted alias to lock with: `obj`'s reference (or, once it moved into
        // the revived wrapper, that wrapper's) keeps the object alive while the lock is held.
        let alias = core::mem::ManuallyDrop::new(unsafe { ObjAny::from_raw(obj.as_ptr()) });
        loop {
            let mut t = locked::lock(&alias);
            match t.state() {
                TieState::Bound(w) => {
                    let w = w.as_ptr().cast::<ffi::PyObject>();
                    // SAFETY: under the lock the named wrapper is wrapper memory.
                    if unsafe { ft::try_incref(w) } {
                        drop(t);
                        // SAFETY: our own unbound wrapper: its dealloc frees it.
                        fresh.inspect(|&f| unsafe { ffi::Py_DECREF(f) });
                        return Ok(w);
                    }
                    drop(t);
                    wait_for_death();
                }
                TieState::Parked(m) => {
                    let w = m.as_ptr().cast::<ffi::PyObject>();
                    let _ = t.revive();
                    // SAFETY: as in the GIL build: compared by address only.
                    if unsafe { (*w).ob_type } == cls {
                        // SAFETY: revived by us under the lock, which is held until the block
                        // is initialized (no other thread can see it half-made).
                        unsafe { init_revived(w, cls, obj) };
                        drop(t);
                        // SAFETY: as above.
                        fresh.inspect(|&f| unsafe { ffi::Py_DECREF(f) });
                        return Ok(w);
                    }
                    let _ = t.unbind(m);
                    drop(t);
                    PARKED_NET.add(-1);
                    LIVE.add(1); // balanced by free_wrapper_mem's decrement
                                 // SAFETY: the block is ours since the unbind, referenced by nobody.
                    unsafe { pool::free_wrapper_mem(m.as_ptr(), pool::parked_prefix(m.as_ptr())) };
                }
                TieState::Detached => match fresh {
                    Some(f) => {
                        let _ = t.bind(wrapper_ptr(f));
                        return Ok(f);
                    }
                    None => {
                        drop(t);
                        // SAFETY: attached; `cls` is the object's class. The new wrapper holds
                        // its own reference.
                        let f = unsafe { new_wrapper(cls, obj.clone()) }?;
                        // SAFETY: not yet published (ft invariant 2).
                        unsafe { ft::mark_shared_lookups(f) };
                        fresh = Some(f);
                    }
                },
            }
        }
    }
}

/// Waits, detached from the interpreter, for a dying wrapper's dealloc to reach its tie word
/// (it needs the lock we gave back, and maybe a stop-the-world pause to finish first).
#[cfg(Py_GIL_DISABLED)]
#[cold]
fn wait_for_death() {
    // SAFETY: the caller is attached (revive_or_bind's contract).
    let py = unsafe { Python::assume_attached() };
    py.detach(std::thread::yield_now);
}

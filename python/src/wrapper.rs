//! Floor 2: the wrapper's life cycle: one canonical wrapper per native object (wrap, install,
//! take out, dealloc with park). The `_Base` slots that build objects are in [`crate::base`].
//!
//! The layout is in [`crate::pytypes`].
//!
//! Invariants (all under the GIL; the module is declared `gil_used`):
//! 1. A wrapper with non-null `rec` owns exactly one strong reference to that native object.
//! 2. The native object's tie header names at most one wrapper: the canonical one. `wrap` hands
//!    it out (state b), revives it in place (state c: same address, so the same `id()`), or makes
//!    and binds a new one (state a). Fresh wrappers (tying off, or the fresh return policy) are
//!    never bound.
//! 3. `tp_dealloc` of a canonical wrapper whose object lives on (strong count above the
//!    wrapper's own reference) parks it: the memory stays, the tie header holds it, the class
//!    reference is dropped. Otherwise the wrapper is unbound, its memory returns to the pool,
//!    and then its reference is released (so the free funnel finds nothing cached: no double
//!    free). Classes with a finalizer (`__del__`) are never parked.
//! 4. Weakref callbacks may run Python code, which may ask for the same object again: the
//!    binding is detached before they run, so such code gets a new wrapper, never the dying one.

use crate::classes::{class_for, hold_class};
use crate::native;
use crate::pool::{self, LIVE, PARKED_NET};
use crate::pytypes::Wrapper;
use core::ffi::c_void;
use core::mem::ManuallyDrop;
use core::ptr::{self, NonNull};
use core::sync::atomic::{AtomicBool, Ordering::Relaxed};
use pyo3::ffi;
use pyo3::prelude::*;
// The serialized tie transitions (plain stores, `tether_runtime::tie::serial`): every
// transition runs under the GIL with a strong reference held, and native threads never make
// one. A free-threaded build must use the CAS transitions of `tether_runtime::tie` instead.
use tether_runtime::tie::serial as tie;
use tether_runtime::ObjAny;
use tether_runtime::{Finalized, TieState};

/// Whether `wrap` hands out canonical wrappers (the tying switch).
pub static TYING: AtomicBool = AtomicBool::new(true);

/// A new wrapper of class `cls` for `obj` (not bound), which takes over `obj`'s reference.
///
/// # Safety
/// GIL held; `cls` is a tether class.
unsafe fn new_wrapper(cls: *mut ffi::PyTypeObject, obj: ObjAny) -> PyResult<*mut ffi::PyObject> {
    // SAFETY: forwarded (GIL held, a tether class).
    let w = unsafe { alloc_instance(cls) }?;
    // SAFETY: `w` is a fresh wrapper; it takes the strong reference (invariant 1).
    unsafe { (*w.cast::<Wrapper>()).rec = obj.into_raw().as_ptr() };
    Ok(w)
}

/// A zeroed, uninitialized instance of tether class `cls` (null `rec`), as a new reference.
///
/// # Safety
/// GIL held; `cls` is a tether class.
pub unsafe fn alloc_instance(cls: *mut ffi::PyTypeObject) -> PyResult<*mut ffi::PyObject> {
    // SAFETY: tether classes use pool::tp_alloc; GIL held.
    let w = unsafe { pool::tp_alloc(cls, 0) };
    if w.is_null() {
        // SAFETY: GIL held (tp_alloc raised MemoryError).
        return Err(PyErr::fetch(unsafe { Python::assume_attached() }));
    }
    Ok(w)
}

/// The wrapper for `obj` as a new reference: the canonical one if `tied` and tying is on
/// (invariant 2), else a fresh, unbound one.
///
/// # Safety
/// GIL held.
#[inline]
pub unsafe fn wrap(obj: &ObjAny, tied: bool) -> PyResult<*mut ffi::PyObject> {
    // SAFETY: GIL held (caller).
    match unsafe { bound_wrapper(obj, tied) } {
        Some(w) => Ok(w),
        // SAFETY: GIL held (caller).
        None => unsafe { wrap_owned(obj.clone(), tied) },
    }
}

/// (b): the live canonical wrapper of `obj` as a new reference, if it has one and `tied` and
/// tying are on: one load of the tie word and a `Py_INCREF`, no native count traffic.
///
/// # Safety
/// GIL held; `obj` is alive for the call (a borrow the caller's lock keeps alive will do: the
/// wrapper found holds a reference of its own, and it can only die under the GIL).
#[inline(always)]
pub unsafe fn bound_wrapper(obj: &ObjAny, tied: bool) -> Option<*mut ffi::PyObject> {
    if !(tied && TYING.load(Relaxed)) {
        return None;
    }
    let w = tie::lookup(obj)?.as_ptr().cast::<ffi::PyObject>();
    // SAFETY: invariant 2: a bound wrapper is alive (its dealloc unbinds it first); GIL held.
    unsafe { ffi::Py_INCREF(w) };
    Some(w)
}

/// [`wrap`] for an object the caller owns a reference to, which the wrapper takes over when it
/// is revived or made (no clone-and-drop on the revive path).
///
/// # Safety
/// GIL held.
#[inline]
pub unsafe fn wrap_owned(obj: ObjAny, tied: bool) -> PyResult<*mut ffi::PyObject> {
    // SAFETY: forwarded.
    unsafe { wrap_as(obj, tied && TYING.load(Relaxed)) }
}

/// The canonical wrapper of `obj` whatever the tying switch: what pickling and copying hand to
/// `pickle`/`copy`, whose memos then keep aliased children shared even with tying off (a wrapper
/// bound while tying is off is unbound when it dies, never parked).
///
/// # Safety
/// GIL held.
pub unsafe fn wrap_canonical(obj: ObjAny) -> PyResult<*mut ffi::PyObject> {
    // SAFETY: forwarded.
    unsafe { wrap_as(obj, true) }
}

/// [`wrap_owned`] with the tying decision made: canonical if `tied`, else fresh.
///
/// # Safety
/// GIL held.
unsafe fn wrap_as(obj: ObjAny, tied: bool) -> PyResult<*mut ffi::PyObject> {
    if tied {
        if let Some(w) = tie::lookup(&obj) {
            let w = w.as_ptr().cast::<ffi::PyObject>();
            // SAFETY: invariant 2: a bound wrapper is alive (its dealloc unbinds it first).
            unsafe { ffi::Py_INCREF(w) };
            return Ok(w);
        }
    }
    if !obj.obj_header().has_tie_header() {
        return Err(pyo3::exceptions::PyTypeError::new_err(format!(
            "native type '{}' is header-less (declared never to cross into Python): its objects \
             cannot be wrapped",
            obj.type_info().name
        )));
    }
    let cls = class_for(obj.type_index())?;
    // SAFETY: `cls` is the registered, live class of the object's type; GIL held.
    unsafe { hold_class(obj.type_index(), cls) };
    if !tied {
        // SAFETY: GIL held; `cls` is the object's tether class.
        return unsafe { new_wrapper(cls, obj) };
    }
    // (c) -> (b), or (a).
    match tie::revive(&obj) {
        Ok(m) => {
            let w = m.as_ptr().cast::<ffi::PyObject>();
            PARKED_NET.add(-1);
            // The class is compared by address only: the stale type pointer of parked memory
            // is never dereferenced.
            // SAFETY: the revived block is a live pool block of WRAPPER_SIZE bytes (invariant 3).
            if unsafe { (*w).ob_type } == cls {
                // SAFETY: nobody else references the block; PyObject_Init makes it a live
                // instance of `cls` at the same address; it takes over our strong reference
                // to the object (invariant 1).
                unsafe {
                    ffi::PyObject_Init(w, cls);
                    let wr = w.cast::<Wrapper>();
                    (*wr).rec = obj.into_raw().as_ptr();
                    (*wr).weaklist = ptr::null_mut();
                }
                LIVE.add(1);
                return Ok(w);
            }
            // The parked memory cannot serve this class: unbind it and return it to the pool
            // ourselves (it is ours since the revive), then make a new wrapper below.
            let _ = tie::unbind_for_last_release(&obj, m);
            LIVE.add(1); // balanced by free_wrapper_mem's decrement
                         // SAFETY: the block came from the pool and is referenced by nobody now.
            unsafe { pool::free_wrapper_mem(m.as_ptr()) };
        }
        Err(TieState::Bound(w)) => {
            // Bound between our lookup and the claim (another thread, in a free-threaded host).
            let w = w.as_ptr().cast::<ffi::PyObject>();
            // SAFETY: as for the lookup above.
            unsafe { ffi::Py_INCREF(w) };
            return Ok(w);
        }
        Err(_) => {}
    }
    // SAFETY: an uncounted alias of `obj`, kept alive by the reference `w` takes over.
    let alias = ManuallyDrop::new(unsafe { ObjAny::from_raw(obj.as_ptr()) });
    // SAFETY: GIL held.
    let w = unsafe { new_wrapper(cls, obj) }?;
    // A failed bind (impossible under the GIL) leaves `w` a valid fresh wrapper.
    let _ = tie::bind(&alias, wrapper_ptr(w));
    Ok(w)
}

#[inline]
fn wrapper_ptr(w: *mut ffi::PyObject) -> NonNull<c_void> {
    // SAFETY: callers pass live wrapper pointers, never null.
    unsafe { NonNull::new_unchecked(w.cast()) }
}

/// Wrappers whose native object was moved out (`tether.move`) and that were not initialized
/// again: empty like a wrapper that was never initialized, but not waiting to be (what a
/// two-phase restore must tell apart: `crate::restore`). Touched only under the GIL; the length
/// lets the common paths skip the lock.
static MOVED_OUT: std::sync::Mutex<Vec<usize>> = std::sync::Mutex::new(Vec::new());
static MOVED_OUT_LEN: core::sync::atomic::AtomicUsize = core::sync::atomic::AtomicUsize::new(0);

fn moved_out() -> std::sync::MutexGuard<'static, Vec<usize>> {
    // A poisoned lock still guards a consistent list (each use is a push or a swap_remove).
    MOVED_OUT.lock().unwrap_or_else(|e| e.into_inner())
}

/// Forgets `w` as moved out (it is initialized again, or it dies).
fn forget_moved_out(w: *mut ffi::PyObject) {
    if MOVED_OUT_LEN.load(Relaxed) == 0 {
        return;
    }
    let mut m = moved_out();
    if let Some(i) = m.iter().position(|&a| a == w as usize) {
        m.swap_remove(i);
        MOVED_OUT_LEN.store(m.len(), Relaxed);
    }
}

/// Whether wrapper `w` is empty because its object was moved out (not because it was never
/// initialized).
pub fn was_moved_out(w: *mut ffi::PyObject) -> bool {
    MOVED_OUT_LEN.load(Relaxed) != 0 && moved_out().contains(&(w as usize))
}

/// Installs a native object into an uninitialized wrapper and binds it (used by `__init__`,
/// `__setstate__`).
///
/// # Safety
/// `w` is a live tether wrapper with null `rec`; GIL held.
pub unsafe fn install(w: *mut ffi::PyObject, obj: ObjAny) {
    forget_moved_out(w);
    let raw = obj.into_raw();
    // SAFETY: `w` is a wrapper; it takes over the strong reference (invariant 1).
    unsafe { (*w.cast::<Wrapper>()).rec = raw.as_ptr() };
    if TYING.load(Relaxed) {
        // SAFETY: `raw` is alive, owned by `w`.
        let obj = ManuallyDrop::new(unsafe { ObjAny::from_raw(raw) });
        let _ = tie::bind(&obj, wrapper_ptr(w));
    }
}

/// Takes the native object out of wrapper `w` (for `tether.move`), unbinding it.
///
/// # Safety
/// `w` is a live tether wrapper; GIL held.
pub unsafe fn take_native(w: *mut ffi::PyObject) -> PyResult<ObjAny> {
    // SAFETY: `w` is a wrapper (caller).
    let wr = unsafe { &mut *w.cast::<Wrapper>() };
    // SAFETY: `w` is live (caller).
    let rec = NonNull::new(wr.rec).ok_or_else(|| unsafe { native::moved_error(w) })?;
    wr.rec = ptr::null_mut();
    {
        let mut m = moved_out();
        m.push(w as usize);
        MOVED_OUT_LEN.store(m.len(), Relaxed);
    }
    // SAFETY: invariant 1: the wrapper owned this strong reference; it is now ours.
    let obj = unsafe { ObjAny::from_raw(rec) };
    if tie::lookup(&obj) == Some(wrapper_ptr(w)) {
        tie::detach(&obj);
    }
    Ok(obj)
}

/// `tp_dealloc` of every tether class: parks or frees (invariants 3 and 4).
///
/// # Safety
/// Called by CPython when the wrapper's refcount reached zero.
pub unsafe extern "C" fn tp_dealloc(o: *mut ffi::PyObject) {
    // SAFETY: `o` is a dying tether wrapper; all calls below follow CPython's dealloc protocol.
    unsafe {
        let tp = ffi::Py_TYPE(o);
        let has_finalizer = (*tp).tp_finalize.is_some();
        if has_finalizer && ffi::PyObject_CallFinalizerFromDealloc(o) < 0 {
            return; // resurrected by __del__
        }
        let wr = o.cast::<Wrapper>();
        let rec = (*wr).rec;
        let Some(rec) = NonNull::new(rec) else {
            if !(*wr).weaklist.is_null() {
                ffi::PyObject_ClearWeakRefs(o);
            }
            forget_moved_out(o); // before the memory can serve another wrapper
            pool::free_wrapper_mem(o.cast());
            ffi::Py_DECREF(tp.cast());
            return;
        };
        let obj = ObjAny::from_raw(rec);
        (*wr).rec = ptr::null_mut();
        let me = wrapper_ptr(o);
        let mut bound = tie::lookup(&obj) == Some(me);
        if !(*wr).weaklist.is_null() {
            // Invariant 4: unbind before callbacks can run, re-bind after if nobody else did.
            if bound {
                tie::detach(&obj);
            }
            ffi::PyObject_ClearWeakRefs(o);
            bound = bound && tie::bind(&obj, me).is_ok();
        }
        if bound && !has_finalizer && TYING.load(Relaxed) {
            // Park if the object lives on, else unbind and release it: one atomic decision
            // (the runtime's park_or_release), which consumes the wrapper's reference.
            match tie::park_or_release(obj, me) {
                Ok(Finalized::Parked) => {
                    PARKED_NET.add(1);
                    LIVE.add(-1);
                    ffi::Py_DECREF(tp.cast());
                }
                Ok(Finalized::Released) => {
                    pool::free_wrapper_mem(o.cast());
                    ffi::Py_DECREF(tp.cast());
                }
                Err((obj, _)) => {
                    pool::free_wrapper_mem(o.cast());
                    ffi::Py_DECREF(tp.cast());
                    drop(obj);
                }
            }
            return;
        }
        if bound {
            let _ = tie::unbind_for_last_release(&obj, me);
        }
        pool::free_wrapper_mem(o.cast());
        ffi::Py_DECREF(tp.cast());
        drop(obj);
    }
}

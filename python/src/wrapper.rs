//! Floor 2: the wrapper's life cycle: one canonical wrapper per native object (wrap, install,
//! take out, dealloc with park). The `_Base` slots that build objects are in [`crate::base`].
//!
//! The layout is in [`crate::pytypes`].
//!
//! The tie transitions themselves, per build, are in [`crate::tied`]. Invariants (on GIL
//! builds under the GIL; on free-threaded builds under the object's tie lock, `crate::tied`):
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
//! 5. A canonical wrapper with weak references whose object lives on is kept, not parked
//!    ([`crate::kept`]): its weak references die with the native object, not with the wrapper.
//!    So they are cleared (invariant 4) only when the wrapper holds the last reference.

use crate::classes::{class_for, hold_class};
use crate::kept;
use crate::native;
use crate::pool;
use crate::pytypes::{rec_load, rec_store, Wrapper};
use crate::tied;
use core::mem::ManuallyDrop;
use core::ptr::{self, NonNull};
use core::sync::atomic::{AtomicBool, Ordering::Relaxed};
use pyo3::ffi;
use pyo3::prelude::*;
use tether_runtime::Finalized;
use tether_runtime::ObjAny;

/// Whether `wrap` hands out canonical wrappers (the tying switch).
pub static TYING: AtomicBool = AtomicBool::new(true);

/// A new wrapper of class `cls` for `obj` (not bound), which takes over `obj`'s reference.
///
/// # Safety
/// GIL held; `cls` is a tether class.
unsafe fn new_wrapper(cls: *mut ffi::PyTypeObject, obj: ObjAny) -> PyResult<*mut ffi::PyObject> {
    // SAFETY: forwarded (GIL held, a tether class).
    let w = unsafe { alloc_instance(cls) }?;
    // SAFETY: `w` is a fresh wrapper, not yet visible to other threads; it takes the strong
    // reference (invariant 1).
    unsafe { rec_store(w, obj.into_raw().as_ptr()) };
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
    // SAFETY: attached (caller); `obj` is alive.
    unsafe { tied::find(obj) }
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
        // SAFETY: attached (caller); `obj` is alive.
        if let Some(w) = unsafe { tied::find(&obj) } {
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
    // SAFETY: `cls` is the registered, live class of the object's type; attached.
    unsafe { hold_class(obj.type_index(), cls) };
    if !tied {
        // SAFETY: attached; `cls` is the object's tether class.
        return unsafe { new_wrapper(cls, obj) };
    }
    // (c) -> (b), or (a).
    // SAFETY: attached; `cls` is the object's live class.
    unsafe { tied::revive_or_bind(obj, cls, new_wrapper) }
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
    // SAFETY: `w` is a live wrapper (caller); it takes over the strong reference (invariant 1),
    // stored inside its critical section (native views clone it there).
    unsafe { crate::ft::critical(w, || rec_store(w, raw.as_ptr())) };
    if TYING.load(Relaxed) {
        // SAFETY: `raw` is alive, owned by `w`.
        let obj = ManuallyDrop::new(unsafe { ObjAny::from_raw(raw) });
        // SAFETY: `w` is live and holds `obj`. A failed bind leaves `w` a fresh wrapper.
        let _ = unsafe { tied::bind(&obj, w) };
    }
}

/// Takes the native object out of wrapper `w` (for `tether.move`), unbinding it.
///
/// # Safety
/// `w` is a live tether wrapper; GIL held.
pub unsafe fn take_native(w: *mut ffi::PyObject) -> PyResult<ObjAny> {
    // SAFETY: `w` is a live wrapper (caller). Taken out inside its critical section, so a
    // concurrent native view either cloned it first or sees it gone.
    let rec = unsafe {
        crate::ft::critical(w, || {
            let rec = rec_load(w);
            rec_store(w, ptr::null_mut());
            rec
        })
    };
    // SAFETY: `w` is live (caller).
    let rec = NonNull::new(rec).ok_or_else(|| unsafe { native::moved_error(w) })?;
    {
        let mut m = moved_out();
        m.push(w as usize);
        MOVED_OUT_LEN.store(m.len(), Relaxed);
    }
    // SAFETY: invariant 1: the wrapper owned this strong reference; it is now ours.
    let obj = unsafe { ObjAny::from_raw(rec) };
    let kept = kept::unkeep(&obj);
    tied::unbind(&obj, w);
    if let Some(k) = kept {
        debug_assert_eq!(k, w, "only the canonical wrapper is kept");
        // SAFETY: the kept reference is ours (kept::unkeep); the caller's own keeps `w` alive.
        unsafe { ffi::Py_DECREF(k) };
    }
    Ok(obj)
}

/// Runs `__del__` of the dying wrapper `o`; returns whether it resurrected `o`. The wrapper
/// stays bound while it runs, so code in `__del__` that reaches the object through a field gets
/// `o` itself (and no second finalizer starts).
///
/// GIL builds use CPython's `PyObject_CallFinalizerFromDealloc`. On free-threaded builds that
/// would leave `o` in a state other threads cannot take a reference in (`crate::ft`), so a
/// thread asking for the object would wait for the death, and two finalizers reading each
/// other's objects would wait for each other; instead `o` is resurrected in the merged form,
/// where any thread may take a reference, and the end of the resurrection decides, atomically,
/// whether someone did ([`crate::ft::resurrect`]).
///
/// # Safety
/// `o` is a dying tether wrapper of a class with a finalizer.
unsafe fn finalize(o: *mut ffi::PyObject) -> bool {
    #[cfg(not(Py_GIL_DISABLED))]
    // SAFETY: CPython's protocol for finalizers called from dealloc.
    return unsafe { ffi::PyObject_CallFinalizerFromDealloc(o) } < 0;
    #[cfg(Py_GIL_DISABLED)]
    // SAFETY: `o` is dying, so its counts are ours to reset (ft::resurrect's contract); the
    // finalizer runs on a live object; its own errors are reported as unraisable by it.
    unsafe {
        crate::ft::resurrect(o);
        ffi::PyObject_CallFinalizer(o);
        !crate::ft::end_resurrection(o)
    }
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
        if has_finalizer && finalize(o) {
            return; // resurrected by __del__
        }
        let wr = o.cast::<Wrapper>();
        // Nobody else holds `o` now (a finder's try-incref fails on a dying wrapper), so the
        // plain accesses below race with nothing.
        let rec = rec_load(o);
        let Some(rec) = NonNull::new(rec) else {
            if !(*wr).weaklist.is_null() {
                ffi::PyObject_ClearWeakRefs(o);
            }
            forget_moved_out(o); // before the memory can serve another wrapper
            pool::free_dead_wrapper(o);
            ffi::Py_DECREF(tp.cast());
            return;
        };
        if !has_finalizer && !(*wr).weaklist.is_null() && TYING.load(Relaxed) {
            // Invariant 5: weak references follow the native object.
            let obj = ManuallyDrop::new(ObjAny::from_raw(rec));
            if tied::is_bound_to(&obj, o) {
                match kept::try_keep(o, &obj) {
                    kept::Keep::Dies => {}
                    _ => return, // kept, or (free-threaded) revived by another thread
                }
            }
        }
        let obj = ObjAny::from_raw(rec);
        rec_store(o, ptr::null_mut());
        let mut bound = tied::is_bound_to(&obj, o);
        if !(*wr).weaklist.is_null() {
            // Invariant 4: unbind before callbacks can run, re-bind after if nobody else did.
            if bound {
                tied::unbind(&obj, o);
            }
            ffi::PyObject_ClearWeakRefs(o);
            bound = bound && tied::bind(&obj, o).is_ok();
        }
        if bound && !has_finalizer && TYING.load(Relaxed) {
            // Park if the object lives on, else unbind and release it: one atomic decision
            // (the runtime's park_or_release), which consumes the wrapper's reference. The
            // memory's prefix goes with it (pool invariant 4).
            pool::mark_parked(o);
            match tied::park_or_release(obj, o) {
                Ok(Finalized::Parked) => ffi::Py_DECREF(tp.cast()),
                Ok(Finalized::Released) => {
                    pool::free_dead_wrapper(o);
                    ffi::Py_DECREF(tp.cast());
                }
                Err((obj, _)) => {
                    pool::free_dead_wrapper(o);
                    ffi::Py_DECREF(tp.cast());
                    drop(obj);
                }
            }
            return;
        }
        if bound {
            tied::unbind(&obj, o);
        }
        pool::free_dead_wrapper(o);
        ffi::Py_DECREF(tp.cast());
        drop(obj);
    }
}

//! Floor 0: what the free-threaded build (`Py_GIL_DISABLED`) needs of CPython's object header
//! beyond its public API, kept in one place, and the same names as no-ops (or their plain
//! forms) on GIL builds, so the floors above are written once.
//!
//! # Free-threaded reference counts (CPython 3.13t)
//!
//! A free-threaded object has two counts: `ob_ref_local`, changed without atomics by the
//! owning thread (`ob_tid`), and `ob_ref_shared`, changed atomically by every other thread,
//! whose low two bits are flags: 0 (none), 1 (may have weak references), 2 (queued for the
//! owner to merge), 3 (merged: `ob_ref_shared` alone is the count). When the owner's count
//! falls to zero with the "may have weak references" flag set, the counts are merged; the
//! object dies when the merged count is zero, i.e. when `ob_ref_shared` is exactly 3.
//!
//! tether finds wrappers through the tie word, without holding a reference (like a weak
//! reference), so another thread may be dropping the last reference while we look. Taking a
//! reference then must fail rather than resurrect a dying object: [`try_incref`], CPython's own
//! rule for weak references and lock-free container reads, written against the header:
//! 1. the owner adds to its local count if it holds a local reference;
//! 2. any thread adds to the shared count unless it is 0 (no flag: a fast-path death leaves
//!    it 0) or exactly 3 (merged and zero: dying).
//!
//! Rule 2 never refuses a live object because every wrapper is marked "may have weak
//! references" ([`mark_shared_lookups`]) before the tie word can name it, so a live wrapper's
//! shared word is never 0 and its death always goes through the merge.
//!
//! `runtime/tests/loom.rs` models this rule with the real tie lock (`host_try_incref_races_the_
//! last_release`, `host_resurrection_races_a_finder`), and `make loom-broken` shows the models
//! catch a plain increment (`host_incref_any`).
//!
//! Invariants:
//! 1. [`try_incref`] is called only on memory that is a wrapper (live or dying), never on
//!    freed or reused memory: callers hold the object's tie lock, under which a wrapper the
//!    word names cannot be freed (`tether_runtime::tie::locked`).
//! 2. [`mark_shared_lookups`] runs before a wrapper is first published in a tie word.

use pyo3::ffi;

/// Whether this build runs without the GIL.
pub const FREE_THREADED: bool = cfg!(Py_GIL_DISABLED);

#[cfg(Py_GIL_DISABLED)]
mod imp {
    use core::sync::atomic::{AtomicUsize, Ordering::Relaxed};
    use pyo3::ffi;

    const SHARED_SHIFT: u32 = 2;
    const FLAG_MASK: isize = 0b11;
    const MAYBE_WEAKREF: isize = 1;
    const MERGED: isize = 3;

    /// CPython's `_Py_ThreadId()`: the thread's TLS base, which `ob_tid` records.
    #[inline(always)]
    fn thread_id() -> usize {
        let tid: usize;
        #[cfg(target_arch = "x86_64")]
        // SAFETY: reads the TLS self pointer at %fs:0 (what CPython reads); no memory effects.
        unsafe {
            core::arch::asm!("mov {}, fs:0", out(reg) tid, options(nostack, readonly, preserves_flags));
        }
        #[cfg(target_arch = "aarch64")]
        // SAFETY: reads tpidr_el0 (what CPython reads); no memory effects.
        unsafe {
            core::arch::asm!("mrs {}, tpidr_el0", out(reg) tid, options(nostack, nomem, preserves_flags));
        }
        #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
        compile_error!("the free-threaded build of tether supports x86_64 and aarch64");
        tid
    }

    /// See the module docs.
    ///
    /// # Safety
    /// Invariant 1.
    #[inline]
    pub unsafe fn try_incref(o: *mut ffi::PyObject) -> bool {
        // SAFETY: `o` is wrapper memory (invariant 1): its header fields are readable.
        unsafe {
            // ob_tid is written by CPython with relaxed atomics.
            let tid = AtomicUsize::from_ptr(core::ptr::addr_of_mut!((*o).ob_tid)).load(Relaxed);
            if tid == thread_id() {
                let local = (*o).ob_ref_local.load(Relaxed);
                if local == u32::MAX {
                    return true; // immortal
                }
                if local > 0 {
                    // Only this thread writes its local count.
                    (*o).ob_ref_local.store(local + 1, Relaxed);
                    return true;
                }
            }
            let shared = &(*o).ob_ref_shared;
            let mut cur = shared.load(Relaxed);
            loop {
                if cur == 0 || cur == MERGED {
                    return false;
                }
                match shared.compare_exchange_weak(cur, cur + (1 << SHARED_SHIFT), Relaxed, Relaxed)
                {
                    Ok(_) => return true,
                    Err(now) => cur = now,
                }
            }
        }
    }

    /// See [`super::resurrect`].
    ///
    /// # Safety
    /// As there.
    pub unsafe fn resurrect(o: *mut ffi::PyObject) {
        // SAFETY: `o` is dying (caller): its counts are ours; finders' try_incref refuses the
        // dead forms (0, 3) until the store of the merged count one below.
        unsafe {
            AtomicUsize::from_ptr(core::ptr::addr_of_mut!((*o).ob_tid)).store(0, Relaxed);
            (*o).ob_ref_local.store(0, Relaxed);
            (*o).ob_ref_shared
                .store((1 << SHARED_SHIFT) | MERGED, Relaxed);
        }
    }

    /// See [`super::end_resurrection`].
    ///
    /// # Safety
    /// As there.
    pub unsafe fn end_resurrection(o: *mut ffi::PyObject) -> bool {
        // SAFETY: `o` is alive (resurrected); merged, so every thread counts in ob_ref_shared.
        let shared = unsafe { &(*o).ob_ref_shared };
        let one = (1 << SHARED_SHIFT) | MERGED;
        let mut cur = shared.load(Relaxed);
        loop {
            // Ours was the last reference: back to merged zero, dead for every try_incref.
            let new = if cur == one {
                MERGED
            } else {
                cur - (1 << SHARED_SHIFT)
            };
            match shared.compare_exchange_weak(cur, new, Relaxed, Relaxed) {
                Ok(_) => return new == MERGED,
                Err(now) => cur = now,
            }
        }
    }

    /// See [`super::make_immortal`].
    ///
    /// # Safety
    /// As there.
    pub unsafe fn make_immortal(o: *mut ffi::PyObject) {
        // SAFETY: `o` is live and not yet shared (caller): CPython's immortal form (an unowned
        // object whose local count is the immortal marker) makes every later incref and decref
        // a no-op.
        unsafe {
            AtomicUsize::from_ptr(core::ptr::addr_of_mut!((*o).ob_tid)).store(0, Relaxed);
            (*o).ob_ref_local.store(u32::MAX, Relaxed);
            (*o).ob_ref_shared.store(0, Relaxed);
        }
    }

    /// See the module docs.
    ///
    /// # Safety
    /// `o` is a live object.
    #[inline]
    pub unsafe fn mark_shared_lookups(o: *mut ffi::PyObject) {
        // SAFETY: `o` is live (caller).
        let shared = unsafe { &(*o).ob_ref_shared };
        let mut cur = shared.load(Relaxed);
        while cur & FLAG_MASK == 0 {
            match shared.compare_exchange_weak(cur, cur | MAYBE_WEAKREF, Relaxed, Relaxed) {
                Ok(_) => return,
                Err(now) => cur = now,
            }
        }
    }
}

/// Takes a new reference to wrapper `o` unless it is dying (its count already reached zero on
/// another thread). On GIL builds a plain `Py_INCREF`: the GIL is held, and a wrapper the tie
/// word names is alive (its dealloc unbinds it first).
///
/// # Safety
/// Invariant 1; on GIL builds, the GIL is held and `o` is a live wrapper.
#[inline(always)]
pub unsafe fn try_incref(o: *mut ffi::PyObject) -> bool {
    #[cfg(Py_GIL_DISABLED)]
    {
        // SAFETY: forwarded.
        unsafe { imp::try_incref(o) }
    }
    #[cfg(not(Py_GIL_DISABLED))]
    {
        // SAFETY: forwarded.
        unsafe { ffi::Py_INCREF(o) };
        true
    }
}

/// Marks wrapper `o` as found by lookups that hold no reference (invariant 2). Nothing on GIL
/// builds.
///
/// # Safety
/// `o` is a live object.
#[inline(always)]
pub unsafe fn mark_shared_lookups(o: *mut ffi::PyObject) {
    #[cfg(Py_GIL_DISABLED)]
    // SAFETY: forwarded.
    unsafe {
        imp::mark_shared_lookups(o)
    };
    #[cfg(not(Py_GIL_DISABLED))]
    let _ = o;
}

/// Resurrects the dying object `o` (count zero, in `tp_dealloc`) with one reference, in the
/// merged form (`ob_tid` 0, `ob_ref_shared` = count one | merged), so that any thread may take a
/// reference to it while its finalizer runs ([`try_incref`] accepts it), and every count change
/// is one atomic word. Free-threaded builds only.
///
/// # Safety
/// `o` is dying: its count reached zero and `tp_dealloc` is running on this thread.
#[cfg(Py_GIL_DISABLED)]
pub unsafe fn resurrect(o: *mut ffi::PyObject) {
    // SAFETY: forwarded.
    unsafe { imp::resurrect(o) }
}

/// Gives up the reference [`resurrect`] made: returns whether it was the last (the object is
/// dead again, and no `try_incref` can succeed on it), else the object lives on with the
/// references others took. One compare-and-swap decides, so no reference taken concurrently
/// is lost. Free-threaded builds only.
///
/// # Safety
/// `o` was resurrected by [`resurrect`] on this thread, and this is its one end.
#[cfg(Py_GIL_DISABLED)]
pub unsafe fn end_resurrection(o: *mut ffi::PyObject) -> bool {
    // SAFETY: forwarded.
    unsafe { imp::end_resurrection(o) }
}

/// Makes `o` immortal on free-threaded builds (nothing on GIL builds): its count is never
/// changed again, so threads that use it at once do not contend on its count's cache line.
/// For field descriptors, which every attribute access takes a reference to and which, like
/// their field definitions, live as long as the process anyway.
///
/// # Safety
/// `o` is a live object that no other thread has seen yet; it is never freed after this.
#[inline]
pub unsafe fn make_immortal(o: *mut ffi::PyObject) {
    #[cfg(Py_GIL_DISABLED)]
    // SAFETY: forwarded.
    unsafe {
        imp::make_immortal(o)
    };
    #[cfg(not(Py_GIL_DISABLED))]
    let _ = o;
}

/// Runs `f` inside the critical section of `o` (`Py_BEGIN_CRITICAL_SECTION`) on free-threaded
/// builds: CPython's per-object lock, suspended if the thread blocks, so it never deadlocks
/// with a stop-the-world pause. On GIL builds just `f()` (the GIL is the critical section).
/// `f` must not block or run Python code (the section could be suspended under it).
///
/// # Safety
/// `o` is a live object and the thread is attached.
#[inline(always)]
pub unsafe fn critical<R>(o: *mut ffi::PyObject, f: impl FnOnce() -> R) -> R {
    #[cfg(Py_GIL_DISABLED)]
    {
        struct End(*mut ffi::PyCriticalSection);
        impl Drop for End {
            fn drop(&mut self) {
                // SAFETY: begun below on this thread, at this stack address.
                unsafe { ffi::PyCriticalSection_End(self.0) };
            }
        }
        let mut cs = core::mem::MaybeUninit::<ffi::PyCriticalSection>::zeroed();
        // SAFETY: forwarded (caller); the section lives on this frame until `End` runs.
        unsafe { ffi::PyCriticalSection_Begin(cs.as_mut_ptr(), o) };
        let _end = End(cs.as_mut_ptr());
        f()
    }
    #[cfg(not(Py_GIL_DISABLED))]
    {
        let _ = o;
        f()
    }
}

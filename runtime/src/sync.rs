//! The atomics this crate's concurrent protocols use, switchable to loom's models, and the tie
//! words those protocols run on ([`TieWords`]).
//!
//! Floor 0 (see "Layers" in the crate docs): uses no other module of the crate.
//!
//! In normal builds these are `core::sync::atomic`; under `--cfg loom` they are loom's, so the
//! tests in `tests/loom.rs` explore every interleaving (and every weak-memory outcome loom models)
//! of the reference counts ([`crate::object`]) and of the tie machine ([`crate::tie`]). Under loom
//! the tie words are a `LoomTie` of loom atomics stored in the object header, instead of the
//! allocator's [`Header`](tether_alloc::Header) (whose atomics are `core`'s).
//!
//! Only the two protocols are switched. The type registry, the global function table and the
//! record locks use `std` directly: they are not modelled (a loom test must not contend on them).
//!
//! Ordering discipline, used throughout: an ordering stronger than `Relaxed` is justified where
//! it is written, by naming the write it publishes or the write it must observe.
//!
//! ## Deliberately broken variants
//!
//! `--cfg tether_loom_broken="..."` compiles one protocol wrongly, to show that the loom models
//! can fail (see the crate's report in `docs/benchmarks.md` and the `loom-broken` make target):
//! * `release_relaxed`: the strong-count decrement and the last-drop check are `Relaxed`, with
//!   no acquire fence before the destructor;
//! * `tie_no_cas`: the tie lock is taken by a load and a store instead of a compare-and-swap;
//! * `finalize_check_then_act`: `park_or_release` decides to park on a snapshot of the strong
//!   count and then releases unconditionally (the re-entrant last-reference bug).

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{fence, AtomicPtr, AtomicU64, Ordering};

#[cfg(not(loom))]
pub(crate) use core::sync::atomic::{fence, AtomicU64, Ordering};

#[cfg(loom)]
use core::{ffi::c_void, ptr};
#[cfg(loom)]
use tether_alloc::FreeCallback;

/// Waits politely for a lock holder that is a few instructions from releasing.
///
/// Spins with the CPU hint first; after `spins` rounds it yields the thread, so a preempted
/// holder on a small machine gets the core back. Under loom it always yields (loom needs a yield
/// to schedule the holder).
#[inline]
pub(crate) fn backoff(spins: &mut u32) {
    #[cfg(loom)]
    {
        let _ = spins;
        loom::thread::yield_now();
    }
    #[cfg(not(loom))]
    {
        if *spins < 64 {
            *spins += 1;
            core::hint::spin_loop();
        } else {
            std::thread::yield_now();
        }
    }
}

/// The tie words of an object: the allocator header normally, loom atomics in loom builds.
#[cfg(not(loom))]
pub(crate) type TieWords = tether_alloc::Header;
/// The tie words of an object: the allocator header normally, loom atomics in loom builds.
#[cfg(loom)]
pub(crate) type TieWords = LoomTie;

/// The loom stand-in for the tie words of [`tether_alloc::Header`], stored in the
/// object header under `--cfg loom` with the same method names, so the machine's code is the
/// same in both builds.
#[cfg(loom)]
#[derive(Debug)]
pub(crate) struct LoomTie {
    py_obj: AtomicPtr<c_void>,
    cached_mem: AtomicPtr<c_void>,
    free_cb: AtomicPtr<()>,
}

#[cfg(loom)]
impl LoomTie {
    pub(crate) fn new() -> Self {
        LoomTie {
            py_obj: AtomicPtr::new(ptr::null_mut()),
            cached_mem: AtomicPtr::new(ptr::null_mut()),
            free_cb: AtomicPtr::new(ptr::null_mut()),
        }
    }
    pub(crate) fn py_obj_atomic(&self) -> &AtomicPtr<c_void> {
        &self.py_obj
    }
    pub(crate) fn cached_mem_atomic(&self) -> &AtomicPtr<c_void> {
        &self.cached_mem
    }
    pub(crate) fn set_free_cb(&self, cb: Option<FreeCallback>) {
        let raw = cb.map_or(ptr::null_mut(), |f| f as *mut ());
        self.free_cb.store(raw, Ordering::Release);
    }
    pub(crate) fn free_cb(&self) -> Option<FreeCallback> {
        let raw = self.free_cb.load(Ordering::Acquire);
        // SAFETY: only FreeCallbacks are stored (set_free_cb).
        (!raw.is_null()).then(|| unsafe { core::mem::transmute::<*mut (), FreeCallback>(raw) })
    }
    /// Mirrors `Header::release_cached`.
    ///
    /// # Safety
    /// As for `Header::release_cached`.
    pub(crate) unsafe fn release_cached(&self) -> bool {
        let mem = self.cached_mem.swap(ptr::null_mut(), Ordering::AcqRel);
        match (mem.is_null(), self.free_cb()) {
            (false, Some(cb)) => {
                // SAFETY: forwarded to the caller.
                unsafe { cb(mem) };
                true
            }
            _ => false,
        }
    }
}

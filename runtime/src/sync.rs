//! The atomics this crate's concurrent protocols use, switchable to loom's models, and the tie
//! word those protocols run on ([`TieWord`]).
//!
//! Floor 0 (see "Layers" in the crate docs): uses no other module of the crate.
//!
//! In normal builds these are `core::sync::atomic`; under `--cfg loom` they are loom's, so the
//! tests in `tests/loom.rs` explore every interleaving (and every weak-memory outcome loom models)
//! of the reference counts ([`crate::object`]) and of the tie machine ([`crate::tie`]). Under loom
//! the tie word is a `LoomTie` (a loom atomic) stored in the object header, instead of the
//! allocator's [`TieWord`](tether_alloc::TieWord) (whose atomic is `core`'s).
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
//! * `tie_no_cas`: `bind` checks the tie word with a load and then stores, instead of one
//!   compare-and-swap;
//! * `finalize_check_then_act`: `park_or_release` decides to park on a snapshot of the strong
//!   count and then releases unconditionally (the re-entrant last-reference bug);
//! * `serial_check_then_act`: the serialized `tie::serial::park_or_release` does the same,
//!   trusting the host's lock for the count as well as for the tie word;
//! * `locked_no_exclusion`: `tie::locked::lock` takes no lock (a snapshot of the word, stored
//!   back on unlock), so two host threads can both act on one state;
//! * `host_incref_any` (in `tests/loom.rs`' model of tether-py's free-threaded reference rule):
//!   a finder takes a reference to a wrapper whatever its count, resurrecting a dying one;
//! * `kept_unclaimed`: a strong release ignores the kept flag (`crate::tie::keep`), so an object
//!   and its kept wrapper can end up holding only each other;
//! * `doom_unchecked`: the cycle collector dooms garbage without checking that its count is the
//!   one it read, and does not look at counts before clearing: a weak upgrade that raced the
//!   collection keeps an object the collector then takes apart.

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{fence, AtomicPtr, AtomicU64, Ordering};

#[cfg(not(loom))]
pub(crate) use core::sync::atomic::{fence, AtomicU64, Ordering};

#[cfg(loom)]
use core::{ffi::c_void, ptr};

/// The tie word of an object: the allocator's [`TieWord`](tether_alloc::TieWord) normally, a
/// loom atomic in loom builds.
#[cfg(not(loom))]
pub(crate) type TieWord = tether_alloc::TieWord;
/// The tie word of an object: the allocator's [`TieWord`](tether_alloc::TieWord) normally, a
/// loom atomic in loom builds.
#[cfg(loom)]
pub(crate) type TieWord = LoomTie;

/// The loom stand-in for [`tether_alloc::TieWord`], stored in the object header under
/// `--cfg loom` with the same method names, so the machine's code is the same in both builds.
#[cfg(loom)]
#[derive(Debug)]
pub(crate) struct LoomTie(AtomicPtr<c_void>);

#[cfg(loom)]
impl LoomTie {
    pub(crate) fn new() -> Self {
        LoomTie(AtomicPtr::new(ptr::null_mut()))
    }
    pub(crate) fn load(&self, o: Ordering) -> *mut c_void {
        self.0.load(o)
    }
    pub(crate) fn store(&self, v: *mut c_void, o: Ordering) {
        self.0.store(v, o)
    }
    pub(crate) fn swap(&self, v: *mut c_void, o: Ordering) -> *mut c_void {
        self.0.swap(v, o)
    }
    pub(crate) fn compare_exchange(
        &self,
        cur: *mut c_void,
        new: *mut c_void,
        s: Ordering,
        f: Ordering,
    ) -> Result<*mut c_void, *mut c_void> {
        self.0.compare_exchange(cur, new, s, f)
    }
}

/// One step of a spin-wait (`spins` counts the steps so far): a CPU hint for the first few,
/// then a yield to the scheduler (a holder that was descheduled needs the core back). Under
/// loom, always a loom yield, so the model explores the holder's progress.
#[inline]
pub(crate) fn spin_wait(spins: u32) {
    #[cfg(loom)]
    {
        let _ = spins;
        loom::thread::yield_now();
    }
    #[cfg(not(loom))]
    {
        if spins < 64 {
            core::hint::spin_loop();
        } else {
            std::thread::yield_now();
        }
    }
}

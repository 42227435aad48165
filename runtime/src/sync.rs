//! The atomics this crate's concurrent protocols use, switchable to loom's models.
//!
//! In normal builds these are `core::sync::atomic`; under `--cfg loom` they are loom's, so the
//! tests in `tests/loom.rs` explore every interleaving (and every weak-memory outcome loom models)
//! of the reference counts ([`crate::object`]) and of the tie machine ([`crate::tie`]).
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

//! loom models of the reference counts and of the tie transitions, across 2–3 threads.
//!
//! Run with `make loom`, i.e.
//! `RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=/work/tgt/loom cargo test -p tether-runtime --test loom --release`.
//!
//! The models can fail: `make loom-broken` builds the runtime with
//! `--cfg tether_loom_broken="..."` (a Relaxed release without the acquire fence, a tie claim
//! by load-and-store instead of CAS, a check-then-act finalizer), and each variant is caught by
//! the model named in `Makefile`.

#![cfg(loom)]

use core::ffi::c_void;
use core::ptr::NonNull;
use loom::cell::UnsafeCell;
use loom::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use loom::sync::Arc;
use loom::thread;
use std::sync::{Mutex, MutexGuard, PoisonError};
use tether_runtime::{
    alloc_stats, object_type, tie, Finalized, ObjAny, ObjRef, Object, TieHost, TieState,
};

/// The payload: a loom cell, so loom checks that the destructor's write is ordered after every
/// other thread's read, and a drop counter.
struct Payload {
    cell: UnsafeCell<u64>,
    drops: Arc<AtomicUsize>,
}

// SAFETY: the cell is only read through shared references while the object is alive and written
// only by the destructor; loom checks exactly that this is race-free.
unsafe impl Sync for Payload {}
// SAFETY: as above.
unsafe impl Send for Payload {}

object_type!(Payload, "loom.Payload");

impl Payload {
    fn read(&self) -> u64 {
        self.cell.with(|p| {
            // SAFETY: loom tracks this access.
            unsafe { *p }
        })
    }
}

impl Drop for Payload {
    fn drop(&mut self) {
        self.cell.with_mut(|p| {
            // SAFETY: loom tracks this access; it must not race with any read.
            unsafe { *p = 0 }
        });
        self.drops.fetch_add(1, Ordering::Relaxed);
    }
}

fn payload() -> (ObjRef<Payload>, Arc<AtomicUsize>) {
    let drops = Arc::new(AtomicUsize::new(0));
    let r = ObjRef::new(Payload {
        cell: UnsafeCell::new(7),
        drops: drops.clone(),
    });
    (r, drops)
}

static SERIAL: Mutex<()> = Mutex::new(());

/// Registers the type (a std OnceLock, outside the model), serializes the tests (they share the
/// allocator's counters), and returns the live block count to come back to.
fn setup() -> (MutexGuard<'static, ()>, usize) {
    let g = SERIAL.lock().unwrap_or_else(PoisonError::into_inner);
    let _ = Payload::type_index();
    tie::set_host(&HOST);
    (g, alloc_stats().live_blocks)
}

fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut b = loom::model::Builder::new();
    if b.preemption_bound.is_none() {
        b.preemption_bound = Some(3);
    }
    b.check(f);
}

// ---------------------------------------------------------------- reference counts

/// Two strong holders release concurrently; one has just read the value. The destructor runs
/// once, after the read (this is what the Release decrement + Acquire fence are for).
#[test]
fn strong_release_orders_uses_before_destruction() {
    let (_g, base) = setup();
    model(move || {
        let (a, drops) = payload();
        let b = a.clone();
        let t = thread::spawn(move || {
            assert_eq!(b.read(), 7);
            drop(b);
        });
        assert_eq!(a.read(), 7);
        drop(a);
        t.join().unwrap();
        assert_eq!(drops.load(Ordering::Relaxed), 1);
        assert_eq!(alloc_stats().live_blocks, base);
    });
}

/// The last strong drop races a weak upgrade and a weak drop: the upgrade either fails or
/// yields a live value; the value and the block are each destroyed once.
#[test]
fn last_drop_races_weak_upgrade() {
    let (_g, base) = setup();
    model(move || {
        let (a, drops) = payload();
        let w1 = a.downgrade();
        let w2 = w1.clone();
        let t1 = thread::spawn(move || {
            if let Some(s) = w1.upgrade() {
                assert_eq!(s.read(), 7);
            }
        });
        let t2 = thread::spawn(move || drop(w2));
        drop(a);
        t1.join().unwrap();
        t2.join().unwrap();
        assert_eq!(drops.load(Ordering::Relaxed), 1);
        assert_eq!(alloc_stats().live_blocks, base);
    });
}

/// Clones and drops on three threads, through both the typed and the erased handle.
#[test]
fn clone_drop_three_threads() {
    let (_g, base) = setup();
    model(move || {
        let (a, drops) = payload();
        let any = a.clone().into_any();
        let b = a.clone();
        let t1 = thread::spawn(move || {
            let c = any.clone();
            drop(any);
            assert_eq!(c.downcast_ref::<Payload>().unwrap().read(), 7);
        });
        let t2 = thread::spawn(move || {
            let mut b = b;
            // get_mut succeeds only when b is the last handle.
            if let Some(p) = b.get_mut() {
                p.cell.with_mut(|_| ());
            }
        });
        drop(a);
        t1.join().unwrap();
        t2.join().unwrap();
        assert_eq!(drops.load(Ordering::Relaxed), 1);
        assert_eq!(alloc_stats().live_blocks, base);
    });
}

/// try_unwrap races a clone's drop: either the value comes out (and the weak ref then fails to
/// upgrade) or the handle is handed back.
#[test]
fn try_unwrap_races_drop() {
    let (_g, base) = setup();
    model(move || {
        let (a, drops) = payload();
        let b = a.clone();
        let w = a.downgrade();
        let t = thread::spawn(move || drop(b));
        match a.try_unwrap() {
            Ok(v) => {
                assert!(w.upgrade().is_none());
                assert_eq!(v.read(), 7);
            }
            Err(a) => drop(a),
        }
        t.join().unwrap();
        drop(w);
        assert_eq!(drops.load(Ordering::Relaxed), 1);
        assert_eq!(alloc_stats().live_blocks, base);
    });
}

// ---------------------------------------------------------------- the tie machine

/// Fake wrapper memory: counts how it was released, and knows which thread is finalizing it.
struct Mem {
    freed_by_cb: AtomicUsize,
    finalizing: AtomicBool,
    finalizer: Mutex<Option<thread::ThreadId>>,
}

impl Mem {
    fn new() -> Box<Mem> {
        Box::new(Mem {
            freed_by_cb: AtomicUsize::new(0),
            finalizing: AtomicBool::new(false),
            finalizer: Mutex::new(None),
        })
    }
    fn ptr(&self) -> NonNull<c_void> {
        NonNull::from(self).cast()
    }
}

unsafe extern "C" fn free_cached(mem: *mut c_void) {
    // SAFETY: only `Mem`s are bound in these tests, and they outlive the model iteration.
    let m = unsafe { &*mem.cast::<Mem>() };
    if m.finalizing.load(Ordering::Relaxed) {
        let me = thread::current().id();
        let finalizer = *m.finalizer.lock().unwrap();
        assert_ne!(
            finalizer,
            Some(me),
            "free_cb ran re-entrantly inside the wrapper's own finalization"
        );
    }
    m.freed_by_cb.fetch_add(1, Ordering::Relaxed);
}

static HOST: TieHost = TieHost {
    free_cached,
    release_kept: kept_host::release_kept,
};

/// A pointer that may cross loom threads (the memory outlives them).
#[derive(Clone, Copy)]
struct P(NonNull<c_void>);
// SAFETY: the pointee lives until the model iteration ends, after the joins.
unsafe impl Send for P {}

/// Two threads bind different wrappers: exactly one wins, the other observes it.
#[test]
fn racing_binds_have_one_winner() {
    let (_g, base) = setup();
    model(move || {
        let (a, _drops) = payload();
        let obj = a.into_any();
        let m1 = Mem::new();
        let m2 = Mem::new();
        let (p1, p2) = (P(m1.ptr()), P(m2.ptr()));
        let o2 = obj.clone();
        let t = thread::spawn(move || {
            let p2 = p2;
            tie::bind(&o2, p2.0)
        });
        let r1 = tie::bind(&obj, p1.0);
        let r2 = t.join().unwrap();
        match (r1, r2) {
            (Ok(()), Err(TieState::Bound(w))) => assert_eq!(w, p1.0),
            (Err(TieState::Bound(w)), Ok(())) => assert_eq!(w, p2.0),
            other => panic!("both or neither bound: {other:?}"),
        }
        let winner = tie::lookup(&obj).unwrap();
        assert_eq!(tie::detach(&obj), TieState::Bound(winner));
        drop(obj);
        assert_eq!(alloc_stats().live_blocks, base);
    });
}

/// One thread parks the wrapper while another looks it up and tries to revive it: revive only
/// succeeds after the park, with the same memory; lookup sees the wrapper or nothing.
#[test]
fn park_races_lookup_and_revive() {
    let (_g, base) = setup();
    model(move || {
        let (a, _drops) = payload();
        let obj = a.into_any();
        let m = Mem::new();
        let w = P(m.ptr());
        tie::bind(&obj, w.0).unwrap();
        let o2 = obj.clone();
        let t = thread::spawn(move || {
            let w = w;
            if let Some(seen) = tie::lookup(&o2) {
                assert_eq!(seen, w.0);
            }
            match tie::revive(&o2) {
                Ok(mem) => {
                    assert_eq!(mem, w.0);
                    true
                }
                Err(TieState::Bound(b)) => {
                    assert_eq!(b, w.0);
                    false
                }
                Err(other) => panic!("unexpected {other:?}"),
            }
        });
        tie::park(&obj, w.0).unwrap();
        let revived = t.join().unwrap();
        let expect = if revived {
            TieState::Bound(w.0)
        } else {
            TieState::Parked(w.0)
        };
        assert_eq!(tie::state(&obj), expect);
        assert_eq!(tie::detach(&obj), expect);
        // Detach from (c) frees the memory; from (b) the host keeps it.
        assert_eq!(m.freed_by_cb.load(Ordering::Relaxed), usize::from(!revived));
        drop(obj);
        assert_eq!(alloc_stats().live_blocks, base);
    });
}

/// Detach races revive on a parked wrapper: exactly one of them gets the memory.
#[test]
fn detach_races_revive() {
    let (_g, base) = setup();
    model(move || {
        let (a, _drops) = payload();
        let obj = a.into_any();
        let m = Mem::new();
        let w = P(m.ptr());
        tie::bind(&obj, w.0).unwrap();
        tie::park(&obj, w.0).unwrap();
        let o2 = obj.clone();
        let t = thread::spawn(move || tie::revive(&o2).is_ok());
        let prev = tie::detach(&obj);
        let revived = t.join().unwrap();
        let freed = m.freed_by_cb.load(Ordering::Relaxed);
        match prev {
            TieState::Parked(p) => {
                assert_eq!((p, revived, freed), (w.0, false, 1));
            }
            TieState::Bound(p) => {
                assert_eq!((p, revived, freed), (w.0, true, 0));
            }
            TieState::Detached => panic!("detach saw (a)"),
        }
        assert_eq!(tie::state(&obj), TieState::Detached);
        drop(obj);
        assert_eq!(
            m.freed_by_cb.load(Ordering::Relaxed),
            freed,
            "no second free"
        );
        assert_eq!(alloc_stats().live_blocks, base);
    });
}

/// The wrapper dies (park_or_release) while the last other reference is dropped on another
/// thread: the wrapper memory is released exactly once — by the host (`Released`) or through
/// `free_cb` (`Parked`, object died in (c)) — and never re-entrantly on the finalizing thread.
#[test]
fn wrapper_death_races_last_other_reference() {
    wrapper_death_races_last_other_reference_with(tie::bind, tie::park_or_release);
}

type Bind = fn(&ObjAny, NonNull<c_void>) -> Result<(), TieState>;
type ParkOrRelease = fn(ObjAny, NonNull<c_void>) -> Result<Finalized, (ObjAny, TieState)>;

/// The model of [`wrapper_death_races_last_other_reference`], over either set of transitions
/// (the CAS ones, or `tie::serial`'s plain stores).
fn wrapper_death_races_last_other_reference_with(bind: Bind, park_or_release: ParkOrRelease) {
    let (_g, base) = setup();
    model(move || {
        let (a, drops) = payload();
        let obj = a.into_any();
        let m = Mem::new();
        let w = P(m.ptr());
        let wrapper_ref = obj.clone();
        bind(&obj, w.0).unwrap();
        let t = thread::spawn(move || drop(obj));
        *m.finalizer.lock().unwrap() = Some(thread::current().id());
        m.finalizing.store(true, Ordering::Relaxed);
        let outcome = park_or_release(wrapper_ref, w.0).map_err(|(_, s)| s);
        m.finalizing.store(false, Ordering::Relaxed);
        t.join().unwrap();
        let freed = m.freed_by_cb.load(Ordering::Relaxed);
        match outcome {
            Ok(Finalized::Parked) => assert_eq!(freed, 1, "parked, then the object died in (c)"),
            Ok(Finalized::Released) => assert_eq!(freed, 0, "the host frees it, not free_cb"),
            Err(s) => panic!("unexpected {s:?}"),
        }
        assert_eq!(drops.load(Ordering::Relaxed), 1);
        assert_eq!(alloc_stats().live_blocks, base);
    });
}

/// A weak reference is upgraded while the wrapper holding the last strong reference dies.
#[test]
fn wrapper_death_races_weak_upgrade() {
    let (_g, base) = setup();
    model(move || {
        let (a, drops) = payload();
        let weak = a.downgrade();
        let obj = a.into_any();
        let m = Mem::new();
        let w = P(m.ptr());
        tie::bind(&obj, w.0).unwrap();
        let t = thread::spawn(move || {
            let w = w;
            weak.upgrade().map(|s| {
                // A revived (or still bound) wrapper is the same memory.
                match tie::state(s.as_any()) {
                    TieState::Bound(b) | TieState::Parked(b) => assert_eq!(b, w.0),
                    TieState::Detached => {}
                }
                drop(s);
            })
        });
        let outcome = tie::park_or_release(obj, w.0).map_err(|(_, s)| s);
        let _ = t.join().unwrap();
        let freed = m.freed_by_cb.load(Ordering::Relaxed);
        match outcome {
            Ok(Finalized::Parked) => assert_eq!(freed, 1),
            Ok(Finalized::Released) => assert_eq!(freed, 0),
            Err(s) => panic!("unexpected {s:?}"),
        }
        assert_eq!(drops.load(Ordering::Relaxed), 1);
        assert_eq!(alloc_stats().live_blocks, base);
    });
}

// Keep ObjAny in the public surface exercised here even when a test above changes.
#[allow(dead_code)]
fn _uses(_: ObjAny) {}

/// The serialized transitions (`tie::serial`, what a GIL host uses): the host thread binds,
/// parks and revives with plain stores while a native thread drops the last other reference.
/// Whichever thread destroys the object, the funnel sees the word the host last stored (the
/// count's release/acquire orders it), so the wrapper memory is released exactly once, never
/// re-entrantly inside its own finalization. `make loom-broken` checks that a count snapshot
/// instead of the CAS (`serial_check_then_act`) is caught here.
#[test]
fn serial_wrapper_death_races_last_other_reference() {
    wrapper_death_races_last_other_reference_with(tie::serial::bind, tie::serial::park_or_release);
}

/// A revive/park cycle on the host thread (plain stores) while a native thread drops its
/// reference; then the host drops the last one it holds. The memory goes back exactly once.
#[test]
fn serial_revive_cycle_races_native_drop() {
    let (_g, base) = setup();
    model(move || {
        let (a, drops) = payload();
        let parent_slot = a.into_any(); // what keeps the object alive on the host side
        let native = parent_slot.clone();
        let m = Mem::new();
        let w = P(m.ptr());
        tie::serial::bind(&parent_slot, w.0).unwrap();
        let t = thread::spawn(move || drop(native));
        let mut released = 0;
        for _ in 0..2 {
            // The wrapper's reference, then its death: parked (the slot keeps the object).
            let wrapper_ref = parent_slot.clone();
            match tie::serial::park_or_release(wrapper_ref, w.0) {
                Ok(Finalized::Parked) => {}
                other => panic!("the slot's reference keeps it alive: {other:?}"),
            }
            assert_eq!(tie::serial::revive(&parent_slot), Ok(w.0));
        }
        // The last wrapper death while the native thread may still hold its reference.
        match tie::serial::park_or_release(parent_slot, w.0) {
            Ok(Finalized::Released) => released += 1,
            Ok(Finalized::Parked) => {}
            Err((_, s)) => panic!("unexpected {s:?}"),
        }
        t.join().unwrap();
        assert_eq!(m.freed_by_cb.load(Ordering::Relaxed) + released, 1);
        assert_eq!(drops.load(Ordering::Relaxed), 1);
        assert_eq!(alloc_stats().live_blocks, base);
    });
}

// ---------------------------------------------------------------- tie::locked (free-threaded hosts)

fn locked_bind(obj: &ObjAny, w: NonNull<c_void>) -> Result<(), TieState> {
    tie::locked::lock(obj).bind(w)
}

/// The last-reference claim under the per-object lock: as for the CAS and serial transitions.
#[test]
fn locked_wrapper_death_races_last_other_reference() {
    wrapper_death_races_last_other_reference_with(locked_bind, tie::locked::park_or_release);
}

/// Two host threads (free-threaded Python threads) ask for the wrapper of one parked object at
/// once: exactly one revives it, and the other, finding it bound, sees the reviver's
/// initialization (done under the lock, like CPython's in-place re-initialization).
#[test]
fn locked_revivals_have_one_owner() {
    let (_g, base) = setup();
    model(move || {
        let (a, drops) = payload();
        let obj = a.into_any();
        let m = Mem::new();
        let w = P(m.ptr());
        locked_bind(&obj, w.0).unwrap();
        let keep = obj.clone();
        assert_eq!(
            tie::locked::park_or_release(obj, w.0).unwrap(),
            Finalized::Parked
        );
        let revivals = Arc::new(AtomicUsize::new(0));
        let ready = Arc::new(UnsafeCell::new(false));
        let get = {
            let revivals = revivals.clone();
            let ready = ready.clone();
            move |o: ObjAny| {
                let w = w;
                let mut t = tie::locked::lock(&o);
                match t.state() {
                    TieState::Parked(p) => {
                        assert_eq!(t.revive(), Ok(p));
                        // SAFETY: loom checks this write is ordered with the other's read.
                        ready.with_mut(|r| unsafe { *r = true });
                        revivals.fetch_add(1, Ordering::Relaxed);
                    }
                    TieState::Bound(p) => {
                        assert_eq!(p, w.0);
                        // SAFETY: loom checks this read against the reviver's write.
                        assert!(ready.with(|r| unsafe { *r }), "bound but not initialized");
                    }
                    TieState::Detached => panic!("nobody unbinds here"),
                }
                drop(t);
                o
            }
        };
        let get2 = get.clone();
        let other = keep.clone();
        let t = thread::spawn(move || drop(get2(other)));
        let keep = get(keep);
        t.join().unwrap();
        assert_eq!(revivals.load(Ordering::Relaxed), 1, "one reviver");
        assert_eq!(tie::state(&keep), TieState::Bound(w.0));
        assert_eq!(
            tie::locked::park_or_release(keep, w.0).unwrap(),
            Finalized::Released
        );
        assert_eq!(m.freed_by_cb.load(Ordering::Relaxed), 0);
        assert_eq!(drops.load(Ordering::Relaxed), 1);
        assert_eq!(alloc_stats().live_blocks, base);
    });
}

/// A dying wrapper (its Python count already zero) races a host thread that wants the same
/// object's wrapper and a native thread dropping its reference. The asker may find the wrapper
/// bound but dying (its try-incref would fail): it gives the lock back and tries again (twice
/// here, to keep the model finite; the host retries until the death is done). The death parks
/// it (the asker's reference keeps the object alive), and whoever revives it gets the same
/// memory. Then that wrapper dies holding the last reference: nothing is freed twice.
#[test]
fn locked_death_races_revive_and_native_drop() {
    let (_g, base) = setup();
    model(move || {
        let (a, drops) = payload();
        let obj = a.into_any();
        let m = Mem::new();
        let w = P(m.ptr());
        locked_bind(&obj, w.0).unwrap();
        let asker_ref = obj.clone();
        let native = obj.clone();
        let asker = thread::spawn(move || {
            let w = w;
            for _ in 0..2 {
                let mut t = tie::locked::lock(&asker_ref);
                match t.state() {
                    // The dying W: its try-incref fails; retry after the lock is given back.
                    TieState::Bound(p) => assert_eq!(p, w.0),
                    TieState::Parked(p) => {
                        assert_eq!(p, w.0);
                        assert_eq!(t.revive(), Ok(w.0));
                        drop(t);
                        return (asker_ref, true);
                    }
                    TieState::Detached => panic!("the asker's reference keeps the object"),
                }
                drop(t);
                thread::yield_now();
            }
            (asker_ref, false)
        });
        let t = thread::spawn(move || drop(native));
        assert_eq!(
            tie::locked::park_or_release(obj, w.0).unwrap(),
            Finalized::Parked,
            "the asker's reference keeps the object alive"
        );
        let (asker_ref, revived) = asker.join().unwrap();
        t.join().unwrap();
        if !revived {
            assert_eq!(tie::locked::lock(&asker_ref).revive(), Ok(w.0));
        }
        assert_eq!(tie::state(&asker_ref), TieState::Bound(w.0));
        assert_eq!(
            tie::locked::park_or_release(asker_ref, w.0).unwrap(),
            Finalized::Released
        );
        assert_eq!(m.freed_by_cb.load(Ordering::Relaxed), 0);
        assert_eq!(drops.load(Ordering::Relaxed), 1);
        assert_eq!(alloc_stats().live_blocks, base);
    });
}

// ------------------------------------- the free-threaded host's reference rule (a model)

/// A model of tether-py's free-threaded reference rule (`python/src/ft.rs`), against the tie
/// lock of `tie::locked` (real code). The host object is a CPython 3.13t object reduced to its
/// shared count word in the merged form (the count in the high bits, flag 3 = merged: every
/// thread counts there), which is the form a tied wrapper's count takes once it has been shared
/// (and always during a finalizer, `ft::resurrect`). `HostObj::cell` stands for the object's
/// memory: its dealloc writes it, users read it, and loom reports any read not ordered before
/// the write.
mod host_rule {
    use super::*;
    use loom::sync::atomic::AtomicIsize;

    pub const SHIFT: u32 = 2;
    pub const MERGED: isize = 3;
    pub const ONE: isize = (1 << SHIFT) | MERGED;

    pub struct HostObj {
        pub shared: AtomicIsize,
        pub cell: UnsafeCell<u64>,
        pub deallocs: AtomicUsize,
    }

    impl HostObj {
        pub fn new() -> Box<HostObj> {
            Box::new(HostObj {
                shared: AtomicIsize::new(ONE),
                cell: UnsafeCell::new(1),
                deallocs: AtomicUsize::new(0),
            })
        }
        /// What a user of the object does: read its memory.
        pub fn use_it(&self) {
            // SAFETY: loom tracks the access.
            assert_eq!(self.cell.with(|p| unsafe { *p }), 1, "used after dealloc");
        }
        /// The object's dealloc: write its memory.
        pub fn dealloc(&self) {
            // SAFETY: loom tracks the access; it must not race with a use.
            self.cell.with_mut(|p| unsafe { *p = 0 });
            self.deallocs.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// `ft::try_incref`, shared-count path.
    pub fn try_incref(o: &HostObj) -> bool {
        #[cfg(tether_loom_broken = "host_incref_any")]
        {
            // Deliberately wrong: a plain Py_INCREF of whatever the word names.
            o.shared.fetch_add(1 << SHIFT, Ordering::Relaxed);
            return true;
        }
        #[allow(unreachable_code)]
        let mut cur = o.shared.load(Ordering::Relaxed);
        loop {
            if cur == 0 || cur == MERGED {
                return false;
            }
            match o.shared.compare_exchange(
                cur,
                cur + (1 << SHIFT),
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return true,
                Err(now) => cur = now,
            }
        }
    }

    /// CPython's `Py_DECREF` of a merged object: true when it reached merged zero (the caller
    /// then runs the dealloc). Release/Acquire: uses before the dealloc, as for any count.
    pub fn decref(o: &HostObj) -> bool {
        let prev = o.shared.fetch_sub(1 << SHIFT, Ordering::Release);
        if prev == ONE {
            loom::sync::atomic::fence(Ordering::Acquire);
            true
        } else {
            false
        }
    }

    /// `ft::resurrect` then `ft::end_resurrection` around a finalizer that does nothing:
    /// true when the object is dead again.
    pub fn finalize(o: &HostObj) -> bool {
        o.shared.store(ONE, Ordering::Release);
        let mut cur = o.shared.load(Ordering::Relaxed);
        loop {
            let new = if cur == ONE {
                MERGED
            } else {
                cur - (1 << SHIFT)
            };
            match o
                .shared
                .compare_exchange(cur, new, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => return new == MERGED,
                Err(now) => cur = now,
            }
        }
    }
}

/// A finder takes a reference to the bound wrapper (under the tie lock) while its last other
/// reference goes on another thread, whose dealloc parks it (under the lock). Either the finder
/// got in first (then its own release runs the dealloc later), or it is refused and finds the
/// memory parked: never a use of the wrapper after its dealloc, never two deallocs.
/// `make loom-broken` checks that a plain increment (`host_incref_any`) is caught.
#[test]
fn host_try_incref_races_the_last_release() {
    use host_rule::*;
    let (_g, base) = setup();
    model(move || {
        let (a, drops) = payload();
        let obj = a.into_any();
        let host = HostObj::new();
        let w = P(NonNull::from(&*host).cast());
        locked_bind(&obj, w.0).unwrap();
        let finder_ref = obj.clone();
        let dealloc = move |o: &HostObj, tied: &ObjAny, w: P| {
            o.dealloc();
            let mut t = tie::locked::lock(tied);
            if t.state() == TieState::Bound(w.0) {
                t.unbind(w.0).unwrap(); // (a real host parks here; unbinding suffices)
            }
        };
        let h = P(w.0);
        let finder = thread::spawn(move || {
            // SAFETY: the host object outlives the model iteration (joined below).
            let o = unsafe { &*h.0.as_ptr().cast::<HostObj>() };
            let t = tie::locked::lock(&finder_ref);
            let got = matches!(t.state(), TieState::Bound(p) if p == h.0) && try_incref(o);
            drop(t);
            if got {
                o.use_it();
                if decref(o) {
                    dealloc(o, &finder_ref, h);
                }
            }
            drop(finder_ref);
        });
        // The last other reference goes: its dealloc, if it reached zero.
        if decref(&host) {
            dealloc(&host, &obj, w);
        }
        finder.join().unwrap();
        assert_eq!(host.deallocs.load(Ordering::Relaxed), 1, "one dealloc");
        drop(obj);
        assert_eq!(drops.load(Ordering::Relaxed), 1);
        assert_eq!(alloc_stats().live_blocks, base);
    });
}

/// A finalizer runs (the free-threaded resurrection) while a finder takes a reference: the end
/// of the resurrection either sees the finder's reference (resurrected: the finder's release
/// runs the next dealloc) or the finder is refused. One final dealloc, no use after it.
#[test]
fn host_resurrection_races_a_finder() {
    use host_rule::*;
    let (_g, base) = setup();
    model(move || {
        let (a, drops) = payload();
        let obj = a.into_any();
        let host = HostObj::new();
        host.shared.store(MERGED, Ordering::Relaxed); // its count just reached zero
        let w = P(NonNull::from(&*host).cast());
        locked_bind(&obj, w.0).unwrap();
        let finder_ref = obj.clone();
        let h = P(w.0);
        let finder = thread::spawn(move || {
            // SAFETY: the host object outlives the model iteration (joined below).
            let o = unsafe { &*h.0.as_ptr().cast::<HostObj>() };
            let t = tie::locked::lock(&finder_ref);
            let got = try_incref(o);
            drop(t);
            if got {
                o.use_it();
                if decref(o) {
                    o.dealloc(); // the second dealloc, after the resurrection
                }
            }
            drop(finder_ref);
        });
        if finalize(&host) {
            host.dealloc(); // dead again: the dealloc goes on
        }
        finder.join().unwrap();
        assert_eq!(
            host.deallocs.load(Ordering::Relaxed),
            1,
            "one final dealloc"
        );
        tie::locked::lock(&obj).unbind(w.0).unwrap();
        drop(obj);
        assert_eq!(drops.load(Ordering::Relaxed), 1);
        assert_eq!(alloc_stats().live_blocks, base);
    });
}

// ---------------------------------------------------------------- kept wrappers

/// A model of a host that keeps wrappers (`tie::keep`), as tether-py keeps a wrapper with weak
/// references: the kept wrapper W is a host object whose own reference to the native object is
/// `rec`; the host's table (a loom mutex, as tether-py's) says which object keeps which
/// wrapper, and `release_kept` takes the table's entry, gives up the reference it was handed,
/// and then releases W.
mod kept_host {
    use super::*;
    use loom::sync::Mutex as LoomMutex;

    /// The kept wrapper: its reference to the object, and how often its kept host reference
    /// was released.
    pub struct KeptWrapper {
        pub rec: LoomMutex<Option<ObjAny>>,
        pub kept: LoomMutex<bool>,
        /// The host count (a Python refcount).
        pub refs: AtomicUsize,
        pub releases: AtomicUsize,
    }

    /// The model iteration's wrapper, for the hook (a plain fn).
    pub static CURRENT: Mutex<Option<Arc<KeptWrapper>>> = Mutex::new(None);

    pub fn current() -> Arc<KeptWrapper> {
        CURRENT
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
            .expect("no kept wrapper in this iteration")
    }

    impl KeptWrapper {
        pub fn new(rec: ObjAny) -> Arc<KeptWrapper> {
            let w = Arc::new(KeptWrapper {
                rec: LoomMutex::new(Some(rec)),
                kept: LoomMutex::new(false),
                refs: AtomicUsize::new(0),
                releases: AtomicUsize::new(0),
            });
            *CURRENT.lock().unwrap_or_else(PoisonError::into_inner) = Some(w.clone());
            w
        }

        /// The wrapper's host count reached zero: keep it (its object has other holders) or let
        /// it die, giving up its reference. As tether-py's dealloc: the table entry is made
        /// under the table's lock, around the keep.
        pub fn dealloc(&self) {
            let mut kept = self.kept.lock().unwrap();
            let rec = self.rec.lock().unwrap();
            let Some(r) = rec.as_ref() else {
                return; // moved out: W dies empty
            };
            self.refs.fetch_add(1, Ordering::Relaxed); // resurrected while we ask
            if tie::keep(r) {
                *kept = true;
                return;
            }
            self.refs.fetch_sub(1, Ordering::Relaxed);
            drop(rec);
            drop(kept);
            drop(self.rec.lock().unwrap().take());
        }

        /// Gives up one host reference; the dealloc runs at zero.
        pub fn decref(&self) {
            if self.refs.fetch_sub(1, Ordering::AcqRel) == 1 {
                self.dealloc();
            }
        }

        /// The host moves the object out of its kept wrapper: unkeep, then the reference is
        /// the mover's; the kept host reference is released if this call ended the kept state,
        /// else the entry stays for the claimer's `release_kept`.
        pub fn move_out(&self) -> Option<ObjAny> {
            let mut kept = self.kept.lock().unwrap();
            let obj = self.rec.lock().unwrap().take()?;
            let mine = *kept && tie::unkeep(&obj);
            if mine {
                *kept = false;
            }
            drop(kept);
            if mine {
                self.releases.fetch_add(1, Ordering::Relaxed);
                self.decref(); // the kept reference (the mover's own keeps W alive)
            }
            Some(obj)
        }
    }

    /// A kept-wrapper iteration's start: an object, another holder of it, and its wrapper
    /// (holding the object's first reference).
    pub fn start() -> (Arc<KeptWrapper>, ObjAny, Arc<AtomicUsize>) {
        let (a, drops) = payload();
        let obj = a.into_any();
        let other = obj.clone();
        (KeptWrapper::new(obj), other, drops)
    }

    /// An iteration's end: the hook's wrapper forgotten, nothing left allocated.
    pub fn finish(base: usize) {
        *CURRENT.lock().unwrap_or_else(PoisonError::into_inner) = None;
        assert_eq!(alloc_stats().live_blocks, base);
    }

    /// `TieHost::release_kept`: the entry, then our reference, then W.
    pub fn release_kept(obj: ObjAny) {
        let w = current();
        let mut kept = w.kept.lock().unwrap();
        let mine = core::mem::replace(&mut *kept, false);
        drop(kept);
        drop(obj);
        if mine {
            w.releases.fetch_add(1, Ordering::Relaxed);
            w.decref(); // at zero, W's dealloc runs again: kept again, or it dies
        }
    }
}

/// A wrapper is kept while another thread drops the object's last other reference: either the
/// keep sees that reference gone (W dies with it), or the drop claims the kept flag and
/// releases W. Never neither (W and the object would hold each other forever), never both.
/// `make loom-broken` checks that releases ignoring the flag (`kept_unclaimed`) are caught.
#[test]
fn kept_wrapper_death_races_last_other_reference() {
    use kept_host::*;
    let (_g, base) = setup();
    model(move || {
        let (w, other, drops) = start();
        let holder = thread::spawn(move || {
            // A reader, then the last other reference goes.
            let _ = other.downcast_ref::<Payload>().unwrap().read();
            drop(other);
        });
        w.dealloc();
        holder.join().unwrap();
        assert_eq!(drops.load(Ordering::Relaxed), 1, "the object died, once");
        assert!(w.rec.lock().unwrap().is_none(), "W gave up its reference");
        assert!(w.releases.load(Ordering::Relaxed) <= 1);
        finish(base);
    });
}

/// The host moves the object out of its kept wrapper while another thread drops the last other
/// reference: exactly one of them ends the kept state and releases W's kept reference; the
/// object lives on with the mover until it drops it.
#[test]
fn kept_wrapper_move_races_the_claim() {
    use kept_host::*;
    let (_g, base) = setup();
    model(move || {
        let (w, other, drops) = start();
        w.dealloc(); // kept: `other` holds the object too
        assert!(*w.kept.lock().unwrap());
        w.refs.fetch_add(1, Ordering::Relaxed); // the mover's own reference to W
        let holder = thread::spawn(move || drop(other));
        let moved = w
            .move_out()
            .expect("the mover holds W, so W holds the object");
        holder.join().unwrap();
        w.decref(); // the mover's reference to W: W dies (empty)
        assert_eq!(
            w.refs.load(Ordering::Relaxed),
            0,
            "W's kept reference was released"
        );
        assert_eq!(w.releases.load(Ordering::Relaxed), 1, "W released once");
        assert_eq!(drops.load(Ordering::Relaxed), 0, "the mover still holds it");
        assert!(!tie::is_kept(&moved));
        drop(moved);
        assert_eq!(drops.load(Ordering::Relaxed), 1);
        finish(base);
    });
}

// ---------------------------------------------------------------- the cycle collector

/// A record type that can form cycles: `{ next: Optional[object], other: Any }`.
fn cyclic_type() -> u32 {
    static T: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    *T.get_or_init(|| {
        use tether_runtime::{register_record_type, FieldKind, FieldSpec, Value, ANY_OBJECT};
        register_record_type(
            "loom.Cyclic",
            None,
            vec![
                FieldSpec::new(
                    "next",
                    FieldKind::Optional(Box::new(FieldKind::Object(ANY_OBJECT))),
                )
                .with_default(Value::None),
                FieldSpec::new("other", FieldKind::Any).with_default(Value::None),
            ],
        )
        .unwrap()
    })
}

/// A self-cycle holding a payload (which counts its drops).
fn self_cycle() -> (ObjAny, Arc<AtomicUsize>) {
    use tether_runtime::{record_set, Record, Value};
    let (p, drops) = payload();
    let a = Record::new(
        cyclic_type(),
        vec![Value::None, Value::Object(p.into_any())],
    )
    .unwrap();
    record_set(&a, 0, Value::Object(a.clone())).unwrap();
    (a, drops)
}

/// A collection commits a garbage self-cycle while another thread upgrades a weak reference
/// to it: either the upgrade came first (the commit's compare-and-swap sees the changed count
/// and abandons: nothing freed, the thread's object intact) or the upgrade fails (doomed).
/// Never both an upgrade and a free. `make loom-broken` checks that a commit by plain `fetch_or`
/// (`doom_unchecked`) is caught.
#[test]
fn collection_commit_races_a_weak_upgrade() {
    let (_g, base) = setup();
    let _ = cyclic_type();
    model(move || {
        let (a, drops) = self_cycle();
        let weak = a.downgrade();
        drop(a);
        let upgrader = thread::spawn(move || weak.upgrade());
        let s = tether_runtime::collect_cycles();
        let got = upgrader.join().unwrap();
        assert!(
            !(got.is_some() && s.freed > 0),
            "a weak reference was upgraded to an object the collector freed: {s:?}"
        );
        if got.is_some() {
            assert_eq!(
                drops.load(Ordering::Relaxed),
                0,
                "the upgraded object is intact"
            );
        }
        drop(got);
        tether_runtime::collect_cycles(); // whatever is left is garbage now
        assert_eq!(drops.load(Ordering::Relaxed), 1, "freed once");
        assert_eq!(alloc_stats().live_blocks, base);
    });
}

/// A collection runs while another thread drops the last outside reference to a cycle: the
/// cycle is freed by this collection or the next one, exactly once.
#[test]
fn collection_races_the_last_outside_reference() {
    let (_g, base) = setup();
    let _ = cyclic_type();
    model(move || {
        let (a, drops) = self_cycle();
        let dropper = thread::spawn(move || drop(a));
        tether_runtime::collect_cycles();
        dropper.join().unwrap();
        tether_runtime::collect_cycles();
        assert_eq!(drops.load(Ordering::Relaxed), 1, "freed once");
        assert_eq!(alloc_stats().live_blocks, base);
    });
}

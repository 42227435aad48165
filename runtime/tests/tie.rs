//! The tie state machine: every transition, the last-reference path, the object dying while its
//! wrapper memory is cached, detach after park, weak references across each state, and races.
//!
//! A small fake host plays the Python side: wrappers are boxed structs with a refcount and the
//! raw strong reference of their object; `free_cb` checks that it frees a cached (finalized)
//! wrapper, exactly once.

mod common;

use common::*;
use core::ffi::c_void;
use core::ptr::NonNull;
use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};
use std::thread;
use tether_runtime::{object_type, tie, Finalized, ObjAny, ObjHeader, ObjRef, TieHost, TieState};

// ---------------------------------------------------------------- the fake host

/// A host wrapper: what a PyObject would be.
struct Wrapper {
    refcnt: usize,
    /// The wrapper's strong reference (None once finalized: the memory is then cached).
    obj: Option<NonNull<ObjHeader>>,
    /// How many lives this memory has had (1 + revivals).
    lives: usize,
}

/// Wrapper memory that exists (live or cached), to catch double frees and stray pointers.
static LIVE: Mutex<Vec<usize>> = Mutex::new(Vec::new());
static FREED_BY_CB: AtomicUsize = AtomicUsize::new(0);
static FREED_BY_HOST: AtomicUsize = AtomicUsize::new(0);

fn live() -> std::sync::MutexGuard<'static, Vec<usize>> {
    LIVE.lock().unwrap_or_else(PoisonError::into_inner)
}

fn forget_live(p: *mut Wrapper) {
    let mut l = live();
    let i = l
        .iter()
        .position(|&a| a == p as usize)
        .expect("double free of wrapper memory");
    l.swap_remove(i);
}

unsafe extern "C" fn free_cached(mem: *mut c_void) {
    let w = mem.cast::<Wrapper>();
    // SAFETY: only wrapper memory is ever bound or parked.
    assert!(unsafe { (*w).obj.is_none() }, "free_cb got a live wrapper");
    forget_live(w);
    FREED_BY_CB.fetch_add(1, Ordering::SeqCst);
    // SAFETY: allocated by `new_wrapper` and no longer referenced by any header.
    drop(unsafe { Box::from_raw(w) });
}

static HOST: TieHost = TieHost {
    free_cached,
    release_kept,
};

// ---------------------------------------------------------------- kept wrappers

/// The fake host's lock for its wrappers' counts when other threads release kept ones (what a
/// GIL is), and its table of kept wrappers: (object, wrapper), as tether-py's.
static HOST_LOCK: Mutex<()> = Mutex::new(());
static KEPT: Mutex<Vec<(usize, Addr<Wrapper>)>> = Mutex::new(Vec::new());
static KEPT_RELEASES: AtomicUsize = AtomicUsize::new(0);

fn kept_table() -> std::sync::MutexGuard<'static, Vec<(usize, Addr<Wrapper>)>> {
    KEPT.lock().unwrap_or_else(PoisonError::into_inner)
}

fn host_lock() -> std::sync::MutexGuard<'static, ()> {
    HOST_LOCK.lock().unwrap_or_else(PoisonError::into_inner)
}

/// `TieHost::release_kept`: take the table's entry, give up the reference, release W.
fn release_kept(obj: ObjAny) {
    let _g = host_lock();
    let entry = {
        let mut t = kept_table();
        let at = obj.as_ptr().as_ptr() as usize;
        t.iter()
            .position(|&(o, _)| o == at)
            .map(|i| t.swap_remove(i).1)
    };
    drop(obj);
    let w = entry.expect("a claimed kept object without an entry").0;
    KEPT_RELEASES.fetch_add(1, Ordering::SeqCst);
    decref_keeping(w);
}

/// The host's decref of a wrapper that has weak references: at zero it is kept if its object
/// has other holders (resurrected, owned by the object), else it finalizes as usual. Returns
/// whether it was kept. Called under `host_lock`.
fn decref_keeping(w: NonNull<Wrapper>) -> bool {
    // SAFETY: the caller holds a reference to the live wrapper.
    let wr = unsafe { &mut *w.as_ptr() };
    if wr.refcnt > 1 {
        wr.refcnt -= 1;
        return false;
    }
    // Resurrected (refcount one, owned by the object) while we ask.
    let raw = wr.obj.unwrap();
    // SAFETY: the wrapper's reference, borrowed.
    let obj = core::mem::ManuallyDrop::new(unsafe { ObjAny::from_raw(raw) });
    let mut t = kept_table();
    if tie::keep(&obj) {
        t.push((raw.as_ptr() as usize, Addr(w)));
        return true;
    }
    drop(t);
    let _ = decref(w);
    false
}

fn new_wrapper(obj: &ObjAny) -> NonNull<Wrapper> {
    let b = Box::new(Wrapper {
        refcnt: 1,
        obj: Some(obj.clone().into_raw()),
        lives: 1,
    });
    let p = Box::into_raw(b);
    live().push(p as usize);
    NonNull::new(p).unwrap()
}

fn as_mem(w: NonNull<Wrapper>) -> NonNull<c_void> {
    w.cast()
}

/// The host's "return this object to the caller" with the tied policy.
fn get(obj: &ObjAny) -> NonNull<Wrapper> {
    tie::set_host(&HOST);
    if let Some(w) = tie::lookup(obj) {
        let w = w.cast::<Wrapper>();
        // SAFETY: a bound wrapper is live (single-threaded host, like a GIL).
        unsafe { (*w.as_ptr()).refcnt += 1 };
        return w;
    }
    if let Ok(mem) = tie::revive(obj) {
        let w = mem.cast::<Wrapper>();
        // SAFETY: revived memory is ours to re-initialize in place.
        unsafe {
            let w = &mut *w.as_ptr();
            assert!(w.obj.is_none() && w.refcnt == 0);
            w.refcnt = 1;
            w.obj = Some(obj.clone().into_raw());
            w.lives += 1;
        }
        return w;
    }
    let w = new_wrapper(obj);
    match tie::bind(obj, as_mem(w)) {
        Ok(()) => w,
        Err(other) => panic!("single-threaded bind failed: {other:?}"),
    }
}

/// A wrapper that is never bound (the fresh policy).
fn get_fresh(obj: &ObjAny) -> NonNull<Wrapper> {
    new_wrapper(obj)
}

fn incref(w: NonNull<Wrapper>) {
    // SAFETY: the caller holds a reference to the live wrapper.
    unsafe { (*w.as_ptr()).refcnt += 1 };
}

/// The host's decref; finalizes at zero, as tp_finalize + tp_dealloc would.
fn decref(w: NonNull<Wrapper>) -> Option<Result<Finalized, TieState>> {
    // SAFETY: the caller holds a reference to the live wrapper.
    let wr = unsafe { &mut *w.as_ptr() };
    wr.refcnt -= 1;
    if wr.refcnt > 0 {
        return None;
    }
    // Finalize: put the memory in its cached form first, then let the runtime decide.
    let raw = wr.obj.take().unwrap();
    // SAFETY: the wrapper's strong reference, stored with into_raw.
    let obj = unsafe { ObjAny::from_raw(raw) };
    match tie::park_or_release(obj, as_mem(w)) {
        Ok(Finalized::Parked) => Some(Ok(Finalized::Parked)),
        Ok(Finalized::Released) => {
            free_by_host(w);
            Some(Ok(Finalized::Released))
        }
        Err((obj, state)) => {
            drop(obj);
            free_by_host(w);
            Some(Err(state))
        }
    }
}

fn free_by_host(w: NonNull<Wrapper>) {
    forget_live(w.as_ptr());
    FREED_BY_HOST.fetch_add(1, Ordering::SeqCst);
    // SAFETY: allocated by new_wrapper; nothing refers to it any more.
    drop(unsafe { Box::from_raw(w.as_ptr()) });
}

/// A pointer that may cross threads in a test (the test keeps the pointee alive).
struct Addr<T>(NonNull<T>);
impl<T> Clone for Addr<T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for Addr<T> {}
// SAFETY: tests only use the pointer while the pointee lives and synchronize through joins.
unsafe impl<T> Send for Addr<T> {}

fn lives(w: NonNull<Wrapper>) -> usize {
    // SAFETY: the caller knows the memory exists (live or cached).
    unsafe { (*w.as_ptr()).lives }
}

/// Counters of one test: (frees by callback, frees by host, wrapper memory still existing).
struct HostCheck {
    cb: usize,
    host: usize,
    live: usize,
}

impl HostCheck {
    fn new() -> Self {
        HostCheck {
            cb: FREED_BY_CB.load(Ordering::SeqCst),
            host: FREED_BY_HOST.load(Ordering::SeqCst),
            live: live().len(),
        }
    }
    fn cb(&self) -> usize {
        FREED_BY_CB.load(Ordering::SeqCst) - self.cb
    }
    fn host(&self) -> usize {
        FREED_BY_HOST.load(Ordering::SeqCst) - self.host
    }
    fn live(&self) -> isize {
        live().len() as isize - self.live as isize
    }
}

impl Drop for HostCheck {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            assert_eq!(self.live(), 0, "wrapper memory leaked");
        }
    }
}

struct Thing(#[allow(dead_code)] u64);
object_type!(Thing, "test.tie.Thing");

fn thing() -> ObjAny {
    ObjRef::new(Thing(1)).into_any()
}

/// Guards for a test: serial (global counters), no runtime leak, no wrapper leak.
fn guards() -> (std::sync::MutexGuard<'static, ()>, LeakCheck, HostCheck) {
    tie::set_host(&HOST);
    let s = serial();
    (s, LeakCheck::new(), HostCheck::new())
}

// ---------------------------------------------------------------- transitions

#[test]
fn bind_a_to_b_and_lookup() {
    let (_s, _leak, hc) = guards();
    let obj = thing();
    assert_eq!(tie::state(&obj), TieState::Detached);
    assert_eq!(tie::lookup(&obj), None);
    let w = get(&obj);
    assert_eq!(tie::state(&obj), TieState::Bound(as_mem(w)));
    assert_eq!(tie::lookup(&obj), Some(as_mem(w)));
    assert_eq!(obj.tie_word().load(Ordering::Acquire), w.as_ptr().cast());
    assert_eq!(obj.strong_count(), 2, "the wrapper owns a reference");
    // Same object, same wrapper: `a.x is a.x`.
    assert_eq!(get(&obj), w);
    // A second bind is refused with the observed state.
    let mut other = [0u64; 2];
    let other = NonNull::from(&mut other).cast::<c_void>();
    assert_eq!(tie::bind(&obj, other), Err(TieState::Bound(as_mem(w))));
    assert_eq!(decref(w), None);
    assert_eq!(decref(w), Some(Ok(Finalized::Parked)));
    drop(obj);
    assert_eq!((hc.cb(), hc.host()), (1, 0));
}

#[test]
fn park_b_to_c_and_revive_c_to_b_same_memory() {
    let (_s, _leak, hc) = guards();
    let obj = thing();
    let w = get(&obj);
    assert_eq!(decref(w), Some(Ok(Finalized::Parked)));
    assert_eq!(tie::state(&obj), TieState::Parked(as_mem(w)));
    assert_eq!(tie::lookup(&obj), None);
    assert_eq!(obj.strong_count(), 1, "a parked wrapper owns no reference");
    // Revival gives the same memory back, re-initialized.
    let again = get(&obj);
    assert_eq!(again, w);
    assert_eq!(lives(w), 2);
    assert_eq!(tie::state(&obj), TieState::Bound(as_mem(w)));
    // Preconditions: revive needs (c); park needs (b) with that wrapper.
    assert_eq!(tie::revive(&obj), Err(TieState::Bound(as_mem(w))));
    let mut stray = [0u64; 2];
    let stray = NonNull::from(&mut stray).cast::<c_void>();
    assert_eq!(tie::park(&obj, stray), Err(TieState::Bound(as_mem(w))));
    assert_eq!(decref(w), Some(Ok(Finalized::Parked)));
    assert_eq!(tie::park(&obj, as_mem(w)), Err(TieState::Parked(as_mem(w))));
    drop(obj);
    assert_eq!((hc.cb(), hc.host()), (1, 0));
}

#[test]
fn plain_park_then_release() {
    let (_s, _leak, hc) = guards();
    let obj = thing();
    let keep = obj.clone();
    let w = new_wrapper(&obj);
    tie::bind(&obj, as_mem(w)).unwrap();
    // The host's finalizer using the two primitives.
    // SAFETY: the wrapper's raw reference.
    let raw = unsafe { &mut *w.as_ptr() }.obj.take().unwrap();
    // SAFETY: as above.
    let wref = unsafe { ObjAny::from_raw(raw) };
    // SAFETY: the wrapper memory exists.
    unsafe { (*w.as_ptr()).refcnt = 0 };
    tie::park(&wref, as_mem(w)).unwrap();
    drop(wref);
    assert_eq!(tie::state(&keep), TieState::Parked(as_mem(w)));
    drop((obj, keep));
    assert_eq!((hc.cb(), hc.host()), (1, 0));
}

#[test]
fn revive_in_a_fails() {
    let (_s, _leak, _hc) = guards();
    let obj = thing();
    assert_eq!(tie::revive(&obj), Err(TieState::Detached));
    let mut mem = [0u64; 2];
    let mem = NonNull::from(&mut mem).cast::<c_void>();
    assert_eq!(tie::park(&obj, mem), Err(TieState::Detached));
    assert_eq!(
        tie::unbind_for_last_release(&obj, mem),
        Err(TieState::Detached)
    );
}

#[test]
fn object_dies_while_parked_frees_cached_memory_once() {
    let (_s, _leak, hc) = guards();
    let obj = thing();
    let w = get(&obj);
    assert_eq!(decref(w), Some(Ok(Finalized::Parked)));
    assert_eq!(hc.live(), 1);
    drop(obj); // (c) and the object dies: free_cb(W), once
    assert_eq!((hc.cb(), hc.host()), (1, 0));
}

#[test]
fn last_reference_held_by_the_wrapper() {
    let (_s, _leak, hc) = guards();
    let (t, d) = Tracked::new();
    let obj = ObjRef::new(t).into_any();
    let w = get(&obj);
    drop(obj); // only the wrapper holds the object now
    assert_eq!(decref(w), Some(Ok(Finalized::Released)));
    assert_eq!(drops(&d), 1, "the wrapper's release destroyed the object");
    assert_eq!((hc.cb(), hc.host()), (0, 1), "freed once, by the host");
}

#[test]
fn last_reference_after_a_revival() {
    let (_s, _leak, hc) = guards();
    let obj = thing();
    let w = get(&obj);
    assert_eq!(decref(w), Some(Ok(Finalized::Parked)));
    assert_eq!(get(&obj), w);
    drop(obj);
    assert_eq!(decref(w), Some(Ok(Finalized::Released)));
    assert_eq!((hc.cb(), hc.host()), (0, 1));
}

#[test]
fn a_kept_wrapper_lives_until_the_last_other_reference_goes() {
    let (_s, _leaks, check) = guards();
    let releases = KEPT_RELEASES.load(Ordering::SeqCst);
    let obj = thing();
    let w = get(&obj);
    let other = obj.clone();
    {
        let _g = host_lock();
        assert!(decref_keeping(w), "another holder: kept");
    }
    assert!(tie::is_kept(&obj));
    assert_eq!(
        tie::state(&obj),
        TieState::Bound(as_mem(w)),
        "kept: still bound"
    );
    assert_eq!(get(&other), w, "the same wrapper, alive, not revived");
    assert_eq!(lives(w), 1);
    {
        let _g = host_lock();
        assert!(
            !decref_keeping(w),
            "the finder's reference goes; still kept"
        );
    }
    drop(obj);
    assert!(tie::is_kept(&other));
    assert_eq!(check.host(), 0);
    drop(other); // the last other reference: release_kept, then W finalizes and frees itself
    assert_eq!(KEPT_RELEASES.load(Ordering::SeqCst) - releases, 1);
    assert_eq!(check.host(), 1);
    assert_eq!(check.cb(), 0);
}

#[test]
fn a_kept_wrapper_is_released_by_whichever_thread_drops_the_last_other_reference() {
    let (_s, _leaks, check) = guards();
    let releases = KEPT_RELEASES.load(Ordering::SeqCst);
    let objs: Vec<ObjAny> = (0..200).map(|_| thing()).collect();
    let holders: Vec<ObjAny> = objs.to_vec();
    for obj in &objs {
        let w = get(obj);
        let _g = host_lock();
        assert!(decref_keeping(w));
    }
    drop(objs); // the wrappers' references remain, and each holder's
    let (a, b): (Vec<_>, Vec<_>) = holders
        .into_iter()
        .enumerate()
        .partition(|(i, _)| i % 2 == 0);
    let t = thread::spawn(move || drop(a));
    drop(b);
    t.join().unwrap();
    assert_eq!(KEPT_RELEASES.load(Ordering::SeqCst) - releases, 200);
    assert_eq!(check.host(), 200);
}

#[test]
fn unkeep_hands_the_wrapper_back_to_the_host() {
    let (_s, _leaks, check) = guards();
    let obj = thing();
    let w = get(&obj);
    {
        let _g = host_lock();
        assert!(decref_keeping(w));
    }
    // The host ends the kept state itself (a move): the entry and the kept reference are its.
    {
        let _g = host_lock();
        let mut t = kept_table();
        assert!(tie::unkeep(&obj));
        let at = obj.as_ptr().as_ptr() as usize;
        let i = t.iter().position(|&(o, _)| o == at).unwrap();
        t.swap_remove(i);
    }
    assert!(!tie::keep(&obj) || tie::unkeep(&obj)); // only our reference besides W's: refused
    assert!(!tie::is_kept(&obj));
    let _ = decref(w); // W's last reference (the kept one): it finalizes and parks
    assert_eq!(tie::state(&obj), TieState::Parked(as_mem(w)));
    drop(obj);
    assert_eq!(check.cb(), 1);
}

#[test]
fn unbind_for_last_release_then_release() {
    let (_s, _leak, hc) = guards();
    let obj = thing();
    let w = new_wrapper(&obj);
    tie::bind(&obj, as_mem(w)).unwrap();
    drop(obj);
    // SAFETY: the wrapper's raw reference.
    let raw = unsafe { &mut *w.as_ptr() }.obj.take().unwrap();
    // SAFETY: as above.
    let wref = unsafe { ObjAny::from_raw(raw) };
    tie::unbind_for_last_release(&wref, as_mem(w)).unwrap();
    assert_eq!(tie::state(&wref), TieState::Detached);
    free_by_host(w);
    drop(wref); // the funnel finds nothing cached
    assert_eq!((hc.cb(), hc.host()), (0, 1));
}

#[test]
fn detach_in_each_state() {
    let (_s, _leak, hc) = guards();
    // (a)
    let obj = thing();
    assert_eq!(tie::detach(&obj), TieState::Detached);
    // (b): the host keeps its wrapper, no longer canonical.
    let w = get(&obj);
    assert_eq!(tie::detach(&obj), TieState::Bound(as_mem(w)));
    assert_eq!(tie::state(&obj), TieState::Detached);
    let w2 = get(&obj);
    assert_ne!(w, w2, "a new canonical wrapper");
    assert_eq!(decref(w), Some(Err(TieState::Bound(as_mem(w2)))));
    assert_eq!((hc.cb(), hc.host()), (0, 1));
    // (c): detach after park releases the cached memory at once, once.
    assert_eq!(decref(w2), Some(Ok(Finalized::Parked)));
    assert_eq!(tie::detach(&obj), TieState::Parked(as_mem(w2)));
    assert_eq!((hc.cb(), hc.host()), (1, 1));
    assert_eq!(tie::state(&obj), TieState::Detached);
    drop(obj); // nothing cached any more: no second free
    assert_eq!((hc.cb(), hc.host()), (1, 1));
}

#[test]
fn fresh_wrappers_are_never_bound() {
    let (_s, _leak, hc) = guards();
    let obj = thing();
    let canonical = get(&obj);
    let fresh = get_fresh(&obj);
    assert_ne!(canonical, fresh);
    assert_eq!(tie::lookup(&obj), Some(as_mem(canonical)));
    assert_eq!(decref(fresh), Some(Err(TieState::Bound(as_mem(canonical)))));
    assert_eq!(decref(canonical), Some(Ok(Finalized::Parked)));
    drop(obj);
    assert_eq!((hc.cb(), hc.host()), (1, 1));
}

#[test]
fn identity_survives_many_park_revive_cycles() {
    let (_s, _leak, hc) = guards();
    let obj = thing();
    let first = get(&obj);
    assert_eq!(decref(first), Some(Ok(Finalized::Parked)));
    let n = iters(2000, 50);
    for _ in 0..n {
        let w = get(&obj);
        assert_eq!(w, first, "one wrapper address for the object's whole life");
        incref(w);
        assert_eq!(decref(w), None);
        assert_eq!(decref(w), Some(Ok(Finalized::Parked)));
    }
    assert_eq!(lives(first), n + 1);
    drop(obj);
    assert_eq!((hc.cb(), hc.host()), (1, 0));
}

// ---------------------------------------------------------------- weak references

#[test]
fn weak_refs_across_each_state() {
    let (_s, leak, hc) = guards();
    let (t, d) = Tracked::new();
    let strong = ObjRef::new(t);
    let weak = strong.downgrade();
    let obj = strong.into_any();
    // (a)
    assert!(weak.upgrade().is_some());
    // (b): an upgraded reference finds the same wrapper.
    let w = get(&obj);
    let up = weak.upgrade().unwrap();
    assert_eq!(get(up.as_any()), w);
    assert_eq!(decref(w), None);
    drop(up);
    // (c): an upgraded reference revives the same memory.
    assert_eq!(decref(w), Some(Ok(Finalized::Parked)));
    let up = weak.upgrade().unwrap();
    assert_eq!(tie::state(up.as_any()), TieState::Parked(as_mem(w)));
    assert_eq!(get(up.as_any()), w);
    assert_eq!(decref(w), Some(Ok(Finalized::Parked)));
    drop(up);
    // The object dies in (c) while a weak ref keeps the block: the cached memory goes back at
    // once (not when the block goes), and the weak ref can no longer upgrade.
    drop(obj);
    assert_eq!(drops(&d), 1);
    assert_eq!((hc.cb(), hc.host()), (1, 0));
    assert!(weak.upgrade().is_none());
    assert!(weak.tie_word().load(Ordering::Acquire).is_null());
    assert_eq!(leak.extra_blocks(), 1);
    drop(weak); // the block goes; the funnel has nothing left to free
    assert_eq!((hc.cb(), hc.host()), (1, 0));
}

#[test]
fn weak_ref_and_the_last_reference_path() {
    let (_s, _leak, hc) = guards();
    let (t, d) = Tracked::new();
    let strong = ObjRef::new(t);
    let weak = strong.downgrade();
    let w = get(strong.as_any());
    drop(strong);
    assert_eq!(decref(w), Some(Ok(Finalized::Released)));
    assert_eq!(drops(&d), 1);
    assert!(weak.upgrade().is_none());
    drop(weak);
    assert_eq!((hc.cb(), hc.host()), (0, 1));
}

// ---------------------------------------------------------------- races

#[test]
fn racing_binds_have_one_winner() {
    let (_s, _leak, _hc) = guards();
    for _ in 0..iters(200, 3) {
        let obj = thing();
        let mut mems: Vec<Box<[u64; 2]>> = (0..4).map(|_| Box::new([0; 2])).collect();
        let addrs: Vec<Addr<c_void>> = mems
            .iter_mut()
            .map(|m| Addr(NonNull::from(&mut **m).cast()))
            .collect();
        let wins: Vec<bool> = thread::scope(|s| {
            let hs: Vec<_> = addrs
                .iter()
                .map(|&a| {
                    let obj = &obj;
                    s.spawn(move || {
                        let a = a; // capture the whole Send wrapper
                        let p = a.0;
                        match tie::bind(obj, p) {
                            Ok(()) => true,
                            Err(TieState::Bound(q)) => {
                                assert_ne!(q, p);
                                false
                            }
                            Err(other) => panic!("unexpected {other:?}"),
                        }
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(wins.iter().filter(|&&w| w).count(), 1);
        let winner = addrs[wins.iter().position(|&w| w).unwrap()];
        assert_eq!(tie::lookup(&obj).unwrap(), winner.0);
        assert!(matches!(tie::detach(&obj), TieState::Bound(_)));
    }
}

#[test]
fn wrapper_death_races_the_last_other_reference() {
    let (_s, _leak, hc) = guards();
    let n = iters(1000, 10);
    let mut parked = 0;
    for _ in 0..n {
        let (t, d) = Tracked::new();
        let obj = ObjRef::new(t).into_any();
        let w = new_wrapper(&obj);
        tie::bind(&obj, as_mem(w)).unwrap();
        let w_addr = Addr(w);
        let (a, b) = thread::scope(|s| {
            // The wrapper dies on one thread...
            let a = s.spawn(move || {
                let w_addr = w_addr; // capture the whole Send wrapper
                let w = w_addr.0;
                // SAFETY: this thread owns the wrapper's last host reference.
                let raw = unsafe { &mut *w.as_ptr() }.obj.take().unwrap();
                // SAFETY: the wrapper's reference.
                let wref = unsafe { ObjAny::from_raw(raw) };
                // SAFETY: as above.
                unsafe { (*w.as_ptr()).refcnt = 0 };
                tie::park_or_release(wref, as_mem(w)).map_err(|(_, s)| s)
            });
            // ...while the last other reference goes on another.
            let b = s.spawn(move || drop(obj));
            (a.join().unwrap(), b.join().unwrap())
        });
        let () = b;
        match a {
            Ok(Finalized::Parked) => parked += 1,
            Ok(Finalized::Released) => free_by_host(w),
            Err(s) => panic!("unexpected {s:?}"),
        }
        assert_eq!(drops(&d), 1);
    }
    // Every wrapper was freed exactly once, by whichever side the race chose.
    assert_eq!(hc.cb(), parked);
    assert_eq!(hc.cb() + hc.host(), n);
}

#[test]
fn threads_share_a_tied_object() {
    // Park/revive cycles on one thread while others clone and drop the object: the cached
    // memory is freed once, at the end.
    let (_s, _leak, hc) = guards();
    let obj = thing();
    let first = get(&obj);
    assert_eq!(decref(first), Some(Ok(Finalized::Parked)));
    thread::scope(|s| {
        for _ in 0..2 {
            let o = &obj;
            s.spawn(move || {
                for _ in 0..iters(500, 10) {
                    let c = o.clone();
                    let _ = tie::lookup(&c);
                    drop(c);
                }
            });
        }
        for _ in 0..iters(500, 10) {
            let w = get(&obj);
            assert_eq!(w, first);
            assert_eq!(decref(w), Some(Ok(Finalized::Parked)));
        }
    });
    drop(obj);
    assert_eq!((hc.cb(), hc.host()), (1, 0));
}

#[test]
#[should_panic(expected = "8-aligned")]
fn odd_wrapper_pointers_are_refused() {
    let _s = serial();
    tie::set_host(&HOST);
    let obj = thing();
    let mut mem = [0u64; 2];
    let odd = NonNull::new(mem.as_mut_ptr().cast::<u8>().wrapping_add(1))
        .unwrap()
        .cast::<c_void>();
    let _ = tie::bind(&obj, odd);
}

#[test]
#[should_panic(expected = "8-aligned")]
fn wrapper_pointers_that_would_lose_a_tag_bit_are_refused() {
    // 4-aligned is not enough: bit 2 is the reserved lock tag.
    let _s = serial();
    tie::set_host(&HOST);
    let obj = thing();
    let mut mem = [0u64; 2];
    let four = NonNull::new(mem.as_mut_ptr().cast::<u8>().wrapping_add(4))
        .unwrap()
        .cast::<c_void>();
    let _ = tie::bind(&obj, four);
}

#[test]
fn every_transition_encodes_the_tag_bits() {
    let (_s, _leak, _hc) = guards();
    let obj = thing();
    let word = |o: &ObjAny| o.tie_word().load(Ordering::Acquire);
    assert!(word(&obj).is_null(), "(a) is 0");
    let w = get(&obj); // (a) -> (b)
    assert_eq!(word(&obj), w.as_ptr().cast(), "(b) is W, untagged");
    assert_eq!(w.as_ptr().addr() % tether_alloc::TIE_ALIGN, 0);
    assert_eq!(decref(w), Some(Ok(Finalized::Parked))); // (b) -> (c)
    assert_eq!(
        word(&obj).addr(),
        w.as_ptr().addr() | tether_alloc::TIE_PARKED,
        "(c) is W|PARKED"
    );
    assert_eq!(tie::state(&obj), TieState::Parked(as_mem(w)));
    assert_eq!(get(&obj), w); // (c) -> (b), same memory
    assert_eq!(word(&obj), w.as_ptr().cast());
    assert_eq!(decref(w), Some(Ok(Finalized::Parked)));
    drop(obj); // dies in (c): the parked memory goes back through the free callback, once
}

#[test]
fn distinct_objects_get_distinct_wrappers() {
    let (_s, _leak, hc) = guards();
    let objs: Vec<ObjAny> = (0..8).map(|_| thing()).collect();
    let ws: Vec<_> = objs.iter().map(get).collect();
    let set: HashSet<_> = ws.iter().map(|w| w.as_ptr() as usize).collect();
    assert_eq!(set.len(), 8);
    for (o, w) in objs.iter().zip(&ws) {
        assert_eq!(get(o), *w);
        assert_eq!(decref(*w), None);
    }
    for w in ws {
        assert_eq!(decref(w), Some(Ok(Finalized::Parked)));
    }
    drop(objs);
    assert_eq!((hc.cb(), hc.host()), (8, 0));
}

// ---------------------------------------------------------------- the serialized transitions

/// `tie::serial`, what a GIL host uses, over the same fake host: each transition's
/// preconditions, the park/revive cycle at one address, detach from (c), and the object dying
/// in (c) from a native thread (the funnel frees the parked memory exactly once).
#[test]
fn serial_transitions_follow_the_same_machine() {
    let (_g, _leaks, host) = guards();
    tie::set_host(&HOST);
    let obj = thing();
    let w = new_wrapper(&obj);
    let m = as_mem(w);
    assert_eq!(tie::serial::revive(&obj), Err(TieState::Detached));
    tie::serial::bind(&obj, m).unwrap();
    assert_eq!(tie::serial::bind(&obj, m), Err(TieState::Bound(m)));
    assert_eq!(tie::serial::lookup(&obj), Some(m));
    let other = new_wrapper(&obj);
    assert_eq!(
        tie::serial::unbind_for_last_release(&obj, as_mem(other)),
        Err(TieState::Bound(m))
    );
    free_fresh(other);

    // Park (the test's `obj` keeps the object alive), revive at the same address, twice.
    for _ in 0..2 {
        let raw = take_ref(w);
        assert_eq!(
            tie::serial::park_or_release(raw, m).unwrap(),
            Finalized::Parked
        );
        assert_eq!(tie::serial::state(&obj), TieState::Parked(m));
        assert_eq!(tie::serial::revive(&obj), Ok(m));
        give_ref(w, &obj);
    }
    // Detach from (c): the parked memory goes back through the callback at once.
    let raw = take_ref(w);
    assert_eq!(
        tie::serial::park_or_release(raw, m).unwrap(),
        Finalized::Parked
    );
    assert_eq!(tie::serial::detach(&obj), TieState::Parked(m));
    assert_eq!(host.cb(), 1);

    // Parked, then the last reference dies on a native thread: freed once, by the funnel.
    let w = new_wrapper(&obj);
    let m = as_mem(w);
    tie::serial::bind(&obj, m).unwrap();
    let raw = take_ref(w);
    assert_eq!(
        tie::serial::park_or_release(raw, m).unwrap(),
        Finalized::Parked
    );
    thread::spawn(move || drop(obj)).join().unwrap();
    assert_eq!(host.cb(), 2);

    // The wrapper holds the last reference: released, and the host frees its memory.
    let obj = thing();
    let w = new_wrapper(&obj);
    let m = as_mem(w);
    tie::serial::bind(&obj, m).unwrap();
    drop(obj);
    let raw = take_ref(w);
    assert_eq!(
        tie::serial::park_or_release(raw, m).unwrap(),
        Finalized::Released
    );
    free_by_host(w);
    assert_eq!((host.cb(), host.host()), (2, 2)); // the host freed `other` and `w`
}

/// The wrapper's strong reference, taken out as its finalization would.
fn take_ref(w: NonNull<Wrapper>) -> ObjAny {
    // SAFETY: a live test wrapper; its reference was stored with into_raw.
    unsafe {
        let wr = &mut *w.as_ptr();
        wr.refcnt = 0;
        ObjAny::from_raw(wr.obj.take().unwrap())
    }
}

/// A revived wrapper takes a new reference.
fn give_ref(w: NonNull<Wrapper>, obj: &ObjAny) {
    // SAFETY: a revived test wrapper, ours to re-initialize.
    unsafe {
        let wr = &mut *w.as_ptr();
        wr.refcnt = 1;
        wr.obj = Some(obj.clone().into_raw());
        wr.lives += 1;
    }
}

/// Frees a wrapper that was never bound, with its reference.
fn free_fresh(w: NonNull<Wrapper>) {
    drop(take_ref(w));
    free_by_host(w);
}

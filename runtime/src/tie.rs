//! The tie state machine: one canonical host wrapper per object, kept across the wrapper's
//! death and revival.
//!
//! # States
//!
//! The machine runs over the allocator header in front of every object
//! ([`tether_alloc::Header`]: `py_obj`, `cached_mem`, `free_cb`):
//!
//! | state | `py_obj` | `cached_mem` | meaning |
//! |-------|----------|--------------|---------|
//! | (a) [`Detached`](TieState::Detached) | null | null | never wrapped, or unbound |
//! | (b) [`Bound(W)`](TieState::Bound)    | W    | W    | W is the live canonical wrapper |
//! | (c) [`Parked(W)`](TieState::Parked)  | null | W    | W was finalized; its memory is cached for revival |
//! | busy (transient)                     | any  | x \| 1 | a transition is in progress |
//!
//! ```text
//!            bind                      park / park_or_release (object lives on)
//!   (a) ─────────────▶ (b) ───────────────────────────────────────────────▶ (c)
//!    ▲  ◀──────────────  │  ◀───────────────────────────────────────────────  │
//!    │   detach,          │                    revive                          │
//!    │   unbind_for_last_release,                                            │
//!    │   park_or_release (wrapper held the last reference)                   │
//!    └──────────────────────────────────── detach: free_cb(W) now ───────────┘
//!                                          object dies: free_cb(W), once
//! ```
//!
//! # Operations
//!
//! Each operation is one linearizable transition. The state word is `cached_mem`: a transition
//! claims it with a compare-and-swap that sets its low bit (the busy bit), checks its
//! precondition on `py_obj` and `cached_mem`, writes `py_obj`, and publishes the new state with
//! a `Release` store of `cached_mem`, which clears the bit. A failed precondition restores the
//! state unchanged and returns the observed [`TieState`] as the error. The busy window is a few
//! instructions with no callback inside, so other transitions wait for it by spinning (and
//! yielding); [`lookup`] never waits: it is one `Acquire` load of `py_obj`.
//!
//! * [`lookup`]: (b) gives the live wrapper.
//! * [`bind`]: (a) → (b) for a new wrapper; stores the host's free callback as `free_cb`.
//! * [`park`]: (b) → (c): the wrapper died while the object lives on; its memory stays cached.
//! * [`revive`]: (c) → (b): the cached memory becomes the live wrapper again (same address, so
//!   the same `id()`); the host re-initializes it in place.
//! * [`detach`]: any → (a), for moves; in (c) the cached memory goes back to the host at once.
//! * Final free: when the object dies in (c), `free_cb(W)` hands the memory back, exactly once
//!   (when the last strong reference goes, or, with no weak references, through the
//!   allocator's free funnel when the block is freed).
//! * Last reference held by the wrapper: [`park_or_release`] (or [`unbind_for_last_release`]).
//!
//! # The last-reference path (the fourth state)
//!
//! A wrapper W that dies must either park (the object lives on) or go away with the object.
//! Deciding by reading the strong count first is a race: if the count drops to 1 after the
//! check, W parks, its own release then destroys the object, and the free funnel hands W's
//! memory to `free_cb` *inside W's own finalizer* (tvm-ffi's re-entrant use-after-free).
//! [`park_or_release`] never lets the wrapper's own release be the one that destroys a parked
//! object:
//!
//! 1. (b: W) → (c: W) as in [`park`], **while still holding W's strong reference**. This is the
//!    transient fourth state, "parking": it looks like (c) to everyone, but the object cannot
//!    die, because the finalizing thread's reference keeps it alive;
//! 2. give up that reference only if it is not the last: a CAS loop `strong → strong − 1` that
//!    refuses to go from 1 to 0. On success the state is a true (c) ([`Finalized::Parked`]):
//!    if the object dies later, on whichever thread, `free_cb(W)` runs there, once;
//! 3. if the reference is the last one, take W back: (c: W) → (a), then release the reference
//!    (the object dies with nothing cached, the funnel frees nothing), and the host frees W
//!    itself ([`Finalized::Released`]). A weak reference upgraded in between merely leaves the
//!    object alive in (a). If the state is no longer (c: W) (a free-threaded host revived or
//!    detached W meanwhile, which needs a reference of its own), W is not ours to free, and the
//!    result is `Parked`.
//!
//! Every transition, including both halves of this one, runs while the caller holds a strong
//! reference, so the object never dies with the busy bit set (invariant 3 below).
//!
//! # The host's side of the contract
//!
//! * A bound wrapper owns one strong reference to its object (stored with
//!   [`ObjAny::into_raw`]); a wrapper dies through [`park_or_release`] (or [`park`] /
//!   [`unbind_for_last_release`] when the host knows which applies).
//! * Before calling [`park_or_release`] or [`park`], W's memory must already be in its cached
//!   form (for CPython: resurrected): from the moment (c) is published, another thread may
//!   revive W or, if the object dies, call `free_cb(W)`. On `Released`, W is the host's again.
//! * [`revive`] publishes W in (b) before the host re-initializes it; a free-threaded host must
//!   keep concurrent `lookup`s from using W until it is initialized (under a GIL nobody can
//!   observe the gap). Likewise a wrapper returned by `lookup` may be finalizing concurrently;
//!   a free-threaded host takes its reference with a try-incref.
//! * An object must not die in state (b) (its wrapper owns a reference, so it cannot unless
//!   the host releases that reference without one of the transitions above): the free funnel
//!   would hand the live wrapper's memory to `free_cb`.
//! * [`set_host`] must be called before the first [`bind`] or [`park`].
//!
//! # Invariants
//!
//! 1. Outside a busy window: `py_obj` is null or equal to `cached_mem` (states (a), (b), (c)).
//! 2. `py_obj`, `cached_mem` (other than clearing it in the funnel) and `free_cb` are written
//!    only by the holder of the busy bit.
//! 3. Every operation is called with a strong reference (`&ObjAny`), so the object is alive and
//!    cannot enter the free funnel while a transition is in progress; hence the funnel never
//!    sees the busy bit.
//! 4. Wrapper pointers are at least 2-aligned (bit 0 is the busy bit); checked on entry.

use crate::object::{counts, ObjAny, ObjHeader, STRONG_MASK, STRONG_ONE};
use crate::sync::Ordering::{Acquire, Relaxed, Release};
use core::ffi::c_void;
use core::ptr::{self, NonNull};
use tether_alloc::FreeCallback;

/// The busy bit in `cached_mem`.
const BUSY: usize = 1;

/// The observable states of an object's tie.
///
/// ```
/// use tether_runtime::TieState;
/// assert_eq!(TieState::Detached, TieState::Detached);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TieState {
    /// (a): no wrapper, nothing cached.
    Detached,
    /// (b): bound to this live wrapper.
    Bound(NonNull<c_void>),
    /// (c): this finalized wrapper's memory is cached for revival.
    Parked(NonNull<c_void>),
}

// SAFETY: a TieState only reports addresses; nothing in safe code dereferences them (using a
// wrapper pointer is the host's unsafe business), so moving or sharing one across threads is
// harmless.
unsafe impl Send for TieState {}
// SAFETY: as above.
unsafe impl Sync for TieState {}

/// What [`park_or_release`] did with a dying wrapper.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finalized {
    /// (b) → (c): the object lives on and caches the wrapper memory; the host must keep that
    /// memory (resurrected) and not touch it again except through [`revive`] or `free_cb`.
    Parked,
    /// The wrapper held the last strong reference: the tie went (b) → (a), then the reference
    /// was released (destroying the object unless a weak reference was upgraded meanwhile).
    /// Nothing refers to the wrapper memory any more: the host frees it itself.
    Released,
}

/// How the host plugs in: what to do with cached wrapper memory that is no longer needed.
///
/// ```
/// use core::ffi::c_void;
/// use tether_runtime::TieHost;
/// unsafe extern "C" fn free_wrapper(_mem: *mut c_void) { /* return it to the pool */ }
/// static HOST: TieHost = TieHost { free_cached: free_wrapper };
/// tether_runtime::set_host(&HOST);
/// ```
#[derive(Debug)]
pub struct TieHost {
    /// Receives cached (parked) wrapper memory when it is released: on [`detach`] from (c), or
    /// when the object dies in (c). Called at most once per parked memory, on whichever thread
    /// releases it, never with the busy bit held.
    pub free_cached: FreeCallback,
}

/// The process's host (a `&'static TieHost`, or null). Not a loom atomic: it is set once, before
/// any modelled execution.
static HOST: core::sync::atomic::AtomicPtr<TieHost> =
    core::sync::atomic::AtomicPtr::new(ptr::null_mut());

/// Installs the host (once per process; installing the same host again is a no-op).
///
/// # Panics
/// If a different host was installed before.
pub fn set_host(host: &'static TieHost) {
    let p = (host as *const TieHost).cast_mut();
    // AcqRel/Acquire: the host struct is a static, but pairing the publication with the
    // Acquire in `host()` keeps that true for any `&'static` (e.g. a leaked Box).
    match HOST.compare_exchange(
        ptr::null_mut(),
        p,
        core::sync::atomic::Ordering::AcqRel,
        core::sync::atomic::Ordering::Acquire,
    ) {
        Ok(_) => {}
        Err(prev) if prev == p => {}
        Err(_) => panic!("tether_runtime::set_host: a different TieHost is already installed"),
    }
}

/// The installed host.
fn host() -> &'static TieHost {
    // Acquire: pairs with the publication in `set_host`.
    let p = HOST.load(core::sync::atomic::Ordering::Acquire);
    assert!(
        !p.is_null(),
        "tether_runtime::set_host must be called before bind/park"
    );
    // SAFETY: only `&'static TieHost`s are stored.
    unsafe { &*p }
}

/// The tie words of an object: the allocator header normally, loom atomics in loom builds.
#[cfg(not(loom))]
type Cell = tether_alloc::Header;
#[cfg(loom)]
type Cell = LoomTie;

#[inline(always)]
fn cell(obj: &ObjAny) -> &Cell {
    // SAFETY: the strong reference behind `obj` keeps the object alive for the borrow.
    unsafe { cell_raw(obj.as_ptr()) }
}

/// The tie words of the object `p`.
///
/// # Safety
/// The caller holds a strong or weak count on `p` for as long as the reference is used.
#[inline(always)]
unsafe fn cell_raw<'a>(p: NonNull<ObjHeader>) -> &'a Cell {
    #[cfg(not(loom))]
    // SAFETY: every object comes from ALLOC (object invariant 1); the caller's count keeps the
    // block, and so the tie header, alive.
    unsafe {
        tether_alloc::header_of(p.cast())
    }
    #[cfg(loom)]
    // SAFETY: as above; under loom the tie words are in the ObjHeader.
    unsafe {
        &(*p.as_ptr()).tie
    }
}

/// Releases the cached wrapper memory of an object that just died (strong count 0) while weak
/// references keep its block: `free_cb(cached_mem)` runs now, once, instead of when the block
/// is freed.
///
/// # Safety
/// The object's strong count is 0 and the caller holds a weak count.
pub(crate) unsafe fn release_cached_at_death(p: NonNull<ObjHeader>) {
    #[cfg(not(loom))]
    // SAFETY: the caller's weak count keeps the block (and the tie header) alive; the object is
    // dead, so the (free_cb, cached_mem) pair set by `park` is due (the funnel contract).
    unsafe {
        tether_alloc::header_of(p.cast()).release_cached();
    }
    #[cfg(loom)]
    // SAFETY: as above, on the loom copy of the tie words.
    unsafe {
        (*p.as_ptr()).tie.release_cached();
    }
}

/// The loom stand-in for the tie words of [`tether_alloc::Header`], stored in the
/// [`ObjHeader`] under `--cfg loom` with the same method names, so the machine's code is the
/// same in both builds.
#[cfg(loom)]
#[derive(Debug)]
pub(crate) struct LoomTie {
    py_obj: crate::sync::AtomicPtr<c_void>,
    cached_mem: crate::sync::AtomicPtr<c_void>,
    free_cb: crate::sync::AtomicPtr<()>,
}

#[cfg(loom)]
impl LoomTie {
    pub(crate) fn new() -> Self {
        LoomTie {
            py_obj: crate::sync::AtomicPtr::new(ptr::null_mut()),
            cached_mem: crate::sync::AtomicPtr::new(ptr::null_mut()),
            free_cb: crate::sync::AtomicPtr::new(ptr::null_mut()),
        }
    }
    fn py_obj_atomic(&self) -> &crate::sync::AtomicPtr<c_void> {
        &self.py_obj
    }
    fn cached_mem_atomic(&self) -> &crate::sync::AtomicPtr<c_void> {
        &self.cached_mem
    }
    fn set_free_cb(&self, cb: Option<FreeCallback>) {
        let raw = cb.map_or(ptr::null_mut(), |f| f as *mut ());
        self.free_cb.store(raw, Release);
    }
    fn free_cb(&self) -> Option<FreeCallback> {
        let raw = self.free_cb.load(Acquire);
        // SAFETY: only FreeCallbacks are stored (set_free_cb).
        (!raw.is_null()).then(|| unsafe { core::mem::transmute::<*mut (), FreeCallback>(raw) })
    }
    /// Mirrors `Header::release_cached`.
    ///
    /// # Safety
    /// As for `Header::release_cached`.
    pub(crate) unsafe fn release_cached(&self) -> bool {
        let mem = self
            .cached_mem
            .swap(ptr::null_mut(), crate::sync::Ordering::AcqRel);
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

/// The state word, claimed (busy bit set) by this thread.
struct Claim<'a> {
    cell: &'a Cell,
    /// `cached_mem` as it was when claimed (busy bit clear).
    cached: *mut c_void,
}

impl<'a> Claim<'a> {
    /// Spins until the busy bit is ours.
    #[inline]
    fn take(cell: &'a Cell) -> Self {
        let word = cell.cached_mem_atomic();
        let mut spins = 0;
        loop {
            let cur = word.load(Relaxed);
            if cur.addr() & BUSY == 0 {
                #[cfg(not(tether_loom_broken = "tie_no_cas"))]
                {
                    // Acquire: pairs with the Release store that ended the previous transition
                    // (`publish`), so its writes to `py_obj` and `free_cb` are visible to us.
                    if word
                        .compare_exchange_weak(cur, cur.map_addr(|a| a | BUSY), Acquire, Relaxed)
                        .is_ok()
                    {
                        return Claim { cell, cached: cur };
                    }
                }
                #[cfg(tether_loom_broken = "tie_no_cas")]
                {
                    // Deliberately wrong: check-then-store lets two threads claim at once.
                    crate::sync::backoff(&mut spins);
                    word.store(cur.map_addr(|a| a | BUSY), Relaxed);
                    return Claim { cell, cached: cur };
                }
            }
            crate::sync::backoff(&mut spins);
        }
    }

    /// `py_obj` (stable while claimed: invariant 2). Relaxed: our Acquire claim ordered us after
    /// the last writer.
    #[inline]
    fn py(&self) -> *mut c_void {
        self.cell.py_obj_atomic().load(Relaxed)
    }

    /// The state observed at the claim.
    fn observed(&self) -> TieState {
        observed(self.py(), self.cached)
    }

    /// Ends the transition with `cached_mem = new` (busy bit clear).
    #[inline]
    fn publish(self, new: *mut c_void) {
        // Release: the writes made while claimed (py_obj, free_cb) happen-before the next
        // claim (which acquires this store) and before any Acquire read of cached_mem.
        self.cell.cached_mem_atomic().store(new, Release);
        core::mem::forget(self);
    }

    /// Ends the transition leaving the state as it was.
    #[inline]
    fn restore(self) {
        let cached = self.cached;
        self.publish(cached);
    }
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        // Only reached if a transition unwinds (none can: no code inside panics); never leave
        // the word busy.
        self.cell.cached_mem_atomic().store(self.cached, Release);
    }
}

fn observed(py: *mut c_void, cached: *mut c_void) -> TieState {
    if let Some(w) = NonNull::new(py) {
        TieState::Bound(w)
    } else if let Some(m) = NonNull::new(cached) {
        TieState::Parked(m)
    } else {
        TieState::Detached
    }
}

#[inline]
fn check_aligned(wrapper: NonNull<c_void>) {
    assert!(
        wrapper.as_ptr().addr() & BUSY == 0,
        "tether_runtime::tie: wrapper pointers must be at least 2-aligned"
    );
}

/// The object's tie state (waits out a transition in progress).
///
/// ```
/// use tether_runtime::{object_type, tie, ObjRef, TieState};
/// struct Thing;
/// object_type!(Thing, "doc.tie.state.Thing");
/// let r = ObjRef::new(Thing);
/// assert_eq!(tie::state(r.as_any()), TieState::Detached);
/// ```
pub fn state(obj: &ObjAny) -> TieState {
    let claim = Claim::take(cell(obj));
    let s = claim.observed();
    claim.restore();
    s
}

/// The live canonical wrapper, in state (b). Never waits; one `Acquire` load.
///
/// ```
/// use tether_runtime::{object_type, tie, ObjRef};
/// struct Thing;
/// object_type!(Thing, "doc.tie.lookup.Thing");
/// assert!(tie::lookup(ObjRef::new(Thing).as_any()).is_none());
/// ```
#[inline]
pub fn lookup(obj: &ObjAny) -> Option<NonNull<c_void>> {
    // Acquire: pairs with the Release store of py_obj in `bind`/`revive`, so the wrapper's
    // initialization (done before `bind`) is visible to the caller.
    NonNull::new(cell(obj).py_obj_atomic().load(Acquire))
}

/// (a) → (b): makes `wrapper` the canonical wrapper of `obj`, and the host's `free_cached` the
/// header's `free_cb`. `wrapper` must be fully initialized (it is published to `lookup`) and
/// must own a strong reference to `obj`.
///
/// # Errors
/// The observed state, unchanged, if it was not (a) (e.g. another thread bound first).
///
/// # Panics
/// If no host is installed ([`set_host`]) or `wrapper` is odd.
///
/// ```
/// use core::ffi::c_void;
/// use core::ptr::NonNull;
/// use tether_runtime::{object_type, tie, ObjRef, TieHost, TieState};
/// unsafe extern "C" fn free_wrapper(_mem: *mut c_void) {}
/// static HOST: TieHost = TieHost { free_cached: free_wrapper };
/// tether_runtime::set_host(&HOST);
/// struct Thing;
/// object_type!(Thing, "doc.tie.bind.Thing");
///
/// let obj = ObjRef::new(Thing).into_any();
/// let mut wrapper_memory = [0u64; 4];
/// let w = NonNull::from(&mut wrapper_memory).cast::<c_void>();
/// tie::bind(&obj, w).unwrap();
/// assert_eq!(tie::lookup(&obj), Some(w));
/// assert_eq!(tie::bind(&obj, w), Err(TieState::Bound(w)));
/// assert_eq!(tie::detach(&obj), TieState::Bound(w));
/// ```
pub fn bind(obj: &ObjAny, wrapper: NonNull<c_void>) -> Result<(), TieState> {
    check_aligned(wrapper);
    let free_cached = host().free_cached;
    let c = cell(obj);
    let claim = Claim::take(c);
    if !claim.cached.is_null() || !claim.py().is_null() {
        let s = claim.observed();
        claim.restore();
        return Err(s);
    }
    c.set_free_cb(Some(free_cached));
    // Release: publishes the wrapper's initialization to `lookup`'s Acquire load.
    c.py_obj_atomic().store(wrapper.as_ptr(), Release);
    claim.publish(wrapper.as_ptr());
    Ok(())
}

/// (b: `wrapper`) → (c: `wrapper`): the wrapper died while the object lives on; its memory
/// stays cached for [`revive`]. The host then releases the wrapper's strong reference.
///
/// Prefer [`park_or_release`]: if the wrapper's reference turns out to be the last, the release
/// after `park` destroys the object in (c) and hands `wrapper` to `free_cb` right away, inside
/// the wrapper's own finalization.
///
/// # Errors
/// The observed state, unchanged, unless it was (b) with this wrapper.
///
/// # Panics
/// If no host is installed or `wrapper` is odd.
pub fn park(obj: &ObjAny, wrapper: NonNull<c_void>) -> Result<(), TieState> {
    check_aligned(wrapper);
    let free_cached = host().free_cached;
    let c = cell(obj);
    let claim = Claim::take(c);
    if claim.cached != wrapper.as_ptr() || claim.py() != wrapper.as_ptr() {
        let s = claim.observed();
        claim.restore();
        return Err(s);
    }
    park_claimed(claim, free_cached, wrapper);
    Ok(())
}

#[inline]
fn park_claimed(claim: Claim<'_>, free_cached: FreeCallback, wrapper: NonNull<c_void>) {
    claim.cell.set_free_cb(Some(free_cached));
    // Relaxed: clearing the pointer publishes nothing (a reader that sees null dereferences
    // nothing); the ordering with cached_mem is given by `publish`.
    claim.cell.py_obj_atomic().store(ptr::null_mut(), Relaxed);
    claim.publish(wrapper.as_ptr());
}

/// (c: W) → (b: W): the cached memory becomes the live wrapper again and is returned; the host
/// re-initializes it in place (same address) and gives it a strong reference to `obj`.
///
/// # Errors
/// The observed state, unchanged, unless it was (c).
pub fn revive(obj: &ObjAny) -> Result<NonNull<c_void>, TieState> {
    let c = cell(obj);
    let claim = Claim::take(c);
    let py = claim.py();
    match NonNull::new(claim.cached) {
        Some(w) if py.is_null() => {
            // Release: orders this store after our claim (see `lookup` for what the host must
            // do before others use W).
            c.py_obj_atomic().store(w.as_ptr(), Release);
            claim.publish(w.as_ptr());
            Ok(w)
        }
        _ => {
            let s = claim.observed();
            claim.restore();
            Err(s)
        }
    }
}

/// Any → (a), for moves; returns the previous state. In (c) the cached memory goes back to the
/// host through `free_cb` now (once, after the transition). In (b) the host keeps its live
/// wrapper, which simply is no longer canonical (when it dies, [`park_or_release`] reports the
/// mismatch and the host frees it like any unbound wrapper).
pub fn detach(obj: &ObjAny) -> TieState {
    let c = cell(obj);
    let claim = Claim::take(c);
    let prev = claim.observed();
    if let TieState::Bound(_) = prev {
        c.py_obj_atomic().store(ptr::null_mut(), Relaxed);
    }
    claim.publish(ptr::null_mut());
    if let TieState::Parked(mem) = prev {
        if let Some(cb) = c.free_cb() {
            // SAFETY: we took `mem` out of the header in the transition above, so nobody else
            // can revive or free it; (free_cb, mem) was set together by `park`.
            unsafe { cb(mem.as_ptr()) };
        }
    }
    prev
}

/// (b: `wrapper`) → (a), for a wrapper that holds the last strong reference: afterwards the host
/// frees the wrapper memory itself and then releases the object, and the free funnel finds
/// nothing cached (no double free). [`park_or_release`] makes the same decision atomically.
///
/// # Errors
/// The observed state, unchanged, unless it was (b) with this wrapper.
pub fn unbind_for_last_release(obj: &ObjAny, wrapper: NonNull<c_void>) -> Result<(), TieState> {
    let c = cell(obj);
    let claim = Claim::take(c);
    if claim.cached != wrapper.as_ptr() || claim.py() != wrapper.as_ptr() {
        let s = claim.observed();
        claim.restore();
        return Err(s);
    }
    c.py_obj_atomic().store(ptr::null_mut(), Relaxed);
    claim.publish(ptr::null_mut());
    Ok(())
}

/// The dying wrapper's one call: parks it if the object lives on, otherwise unbinds it and
/// releases the object; consumes the wrapper's strong reference either way. See the module
/// docs ("The last-reference path") for the protocol and why it is race-free.
///
/// Before the call, the wrapper memory must be in its cached form (it may be revived or freed
/// by another thread as soon as it is parked); on [`Finalized::Released`] it is the host's
/// again.
///
/// # Errors
/// If the state was not (b) with this wrapper (it was detached, or never bound): the strong
/// reference is handed back with the observed state; the host drops it and frees the wrapper as
/// an ordinary, unbound one.
///
/// # Panics
/// If no host is installed or `wrapper` is odd.
///
/// ```
/// use core::ffi::c_void;
/// use core::ptr::NonNull;
/// use tether_runtime::{object_type, tie, Finalized, ObjRef, TieHost, TieState};
/// unsafe extern "C" fn free_wrapper(_mem: *mut c_void) {}
/// static HOST: TieHost = TieHost { free_cached: free_wrapper };
/// tether_runtime::set_host(&HOST);
/// struct Thing;
/// object_type!(Thing, "doc.tie.park_or_release.Thing");
///
/// let mut mem = [0u64; 4];
/// let w = NonNull::from(&mut mem).cast::<c_void>();
/// let obj = ObjRef::new(Thing).into_any();
/// let other = obj.clone(); // the object outlives its wrapper
/// tie::bind(&obj, w).unwrap();
/// assert_eq!(tie::park_or_release(obj, w).unwrap(), Finalized::Parked);
/// assert_eq!(tie::state(&other), TieState::Parked(w));
/// assert_eq!(tie::revive(&other), Ok(w)); // same memory, same identity
/// // The wrapper (now holding `other`) dies holding the last reference.
/// assert_eq!(tie::park_or_release(other, w).unwrap(), Finalized::Released);
/// ```
pub fn park_or_release(
    obj: ObjAny,
    wrapper: NonNull<c_void>,
) -> Result<Finalized, (ObjAny, TieState)> {
    check_aligned(wrapper);
    let free_cached = host().free_cached;
    let c = cell(&obj);
    let claim = Claim::take(c);
    if claim.cached != wrapper.as_ptr() || claim.py() != wrapper.as_ptr() {
        let s = claim.observed();
        claim.restore();
        return Err((obj, s));
    }
    // Step 1: "parking": (c: W) published, our reference still held.
    park_claimed(claim, free_cached, wrapper);

    // Step 2: give up our strong reference unless it is the last.
    // SAFETY: `obj` holds a strong count until it is given up (then we return at once).
    let counts = unsafe { counts(obj.as_ptr()) };
    let mut cur = counts.load(Relaxed);
    #[cfg(tether_loom_broken = "finalize_check_then_act")]
    {
        // Deliberately wrong: decide on a snapshot, then release unconditionally, so the
        // release may destroy the parked object (and free W) inside this call.
        if cur & STRONG_MASK > 1 {
            drop(obj);
            return Ok(Finalized::Parked);
        }
    }
    while cur & STRONG_MASK > 1 {
        // Release: our uses of the object happen-before whoever destroys it (as for any strong
        // release); and the (c: W) publication above happens-before that thread's funnel, which
        // acquires through the count's release sequence. Relaxed on failure: we only retry.
        match counts.compare_exchange_weak(cur, cur - STRONG_ONE, Release, Relaxed) {
            Ok(_) => {
                core::mem::forget(obj); // its strong count was given up by the CAS
                return Ok(Finalized::Parked);
            }
            Err(now) => cur = now,
        }
    }

    // Step 3: our reference is the last one: take W back before releasing it.
    let claim = Claim::take(c);
    let ours = claim.cached == wrapper.as_ptr() && claim.py().is_null();
    if ours {
        claim.publish(ptr::null_mut());
    } else {
        claim.restore();
    }
    drop(obj);
    Ok(if ours {
        Finalized::Released
    } else {
        Finalized::Parked
    })
}

//! Fuzz target `tie_ops`: random sequences of tie transitions and reference-count operations
//! on a few runtime objects, played by a fake host that keeps the contract of
//! `tether_runtime::tie` (the module docs, "The host's side of the contract"), against a model.
//!
//! The host: a wrapper is a boxed `WrapperMem` with a host refcount (in the model); a live
//! wrapper owns one strong reference to its object (stored with `ObjAny::into_raw`). When its
//! refcount reaches zero it is finalized in one of three ways: `park_or_release`, `park` then
//! release, or `unbind_for_last_release` then free then release; on a failed precondition it is
//! freed as an unbound wrapper. `wrap` is the host's "return this object": `lookup`, else
//! `revive`, else a new wrapper and `bind`. Besides: `bind` of new or existing wrappers,
//! unbound ("fresh") wrappers, `detach`, `revive`, and strong/weak handles (clone, drop,
//! downgrade, upgrade, `try_unwrap`, `get_mut`).
//!
//! The model: per object, its tie state ((a), (b: W), (c: W)) and whether it is dead; per
//! wrapper, live (with its refcount), parked or freed. Strong counts are derived (handles plus
//! live wrappers), weak counts are the weak handles. After every operation it checks, for each
//! live object: `tie::state`, `tie::lookup`, the strong and weak counts; for each dead object
//! with weak handles: nothing cached or bound in its header, `upgrade` fails; that every value
//! was dropped exactly when its last strong reference went; and that `free_cached` ran exactly
//! once for each parked wrapper memory whose object died or that was detached, and never
//! otherwise. At the end of each input everything is released: every wrapper memory must be
//! freed exactly once (by the host or by `free_cached`), and `tether_runtime::alloc_stats()`'s
//! live blocks and bytes must be back at their baseline.

#![no_main]

use core::ffi::c_void;
use core::mem::ManuallyDrop;
use core::ptr::NonNull;
use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use std::cell::{Cell, RefCell};
use tether_runtime::{
    alloc_stats, object_type, tie, Finalized, ObjAny, ObjHeader, ObjRef, Object, TieHost, TieState,
    WeakRef,
};

// The leak check compares `alloc_stats()`, which is all zeros without the runtime's `stats`
// feature: refuse to build rather than let it pass vacuously.
const _: () = assert!(
    tether_runtime::STATS_ENABLED,
    "tie_ops needs tether-runtime's `stats` feature"
);

/// Objects per input at most.
const MAX_OBJECTS: usize = 6;
/// Handles (strong, weak) and wrappers per input at most.
const MAX_HANDLES: usize = 16;
const MAX_WRAPPERS: usize = 16;

/// One operation. `o` picks an object (live ones only), `h` a strong handle, `w` a weak handle,
/// `s` a wrapper, all modulo their counts.
#[derive(Arbitrary, Debug)]
enum Op {
    New,
    Clone { h: u8 },
    Drop { h: u8 },
    Downgrade { h: u8 },
    CloneWeak { w: u8 },
    Upgrade { w: u8 },
    DropWeak { w: u8 },
    TryUnwrap { h: u8 },
    GetMut { h: u8 },
    Wrap { o: u8 },
    Fresh { o: u8 },
    BindNew { o: u8 },
    Bind { s: u8 },
    Incref { s: u8 },
    Decref { s: u8, how: u8 },
    Revive { o: u8 },
    Detach { o: u8 },
}

// ------------------------------------------------------------------ the value type

thread_local! {
    /// Ids of the `Thing`s dropped in this input, in order.
    static DROPS: RefCell<Vec<usize>> = const { RefCell::new(Vec::new()) };
    /// Ids of the wrapper memories `free_cached` received in this input, in order.
    static CB_FREED: RefCell<Vec<usize>> = const { RefCell::new(Vec::new()) };
    /// Wrapper memories allocated and not yet freed (by the host or `free_cached`).
    static WRAPPERS_LIVE: Cell<isize> = const { Cell::new(0) };
}

struct Thing {
    id: usize,
}

impl Drop for Thing {
    fn drop(&mut self) {
        DROPS.with(|d| d.borrow_mut().push(self.id));
    }
}

object_type!(Thing, "tether.fuzz.tie_ops.Thing");

// ------------------------------------------------------------------ the fake host

const MAGIC: u64 = 0x7e7e_e57e_7e7e_e57e;

/// A wrapper's memory. 16-aligned, so bit 0 (the tie's busy bit) is clear.
#[repr(C, align(16))]
struct WrapperMem {
    magic: u64,
    id: usize,
    /// The wrapper's strong reference while it is live; `None` in its cached (parked) form.
    obj: Option<NonNull<ObjHeader>>,
}

fn alloc_wrapper(id: usize, obj: ObjAny) -> NonNull<WrapperMem> {
    WRAPPERS_LIVE.with(|n| n.set(n.get() + 1));
    let b = Box::new(WrapperMem {
        magic: MAGIC,
        id,
        obj: Some(obj.into_raw()),
    });
    NonNull::from(Box::leak(b))
}

/// Frees wrapper memory.
///
/// # Safety
/// `w` came from `alloc_wrapper`, is not freed yet and is referenced by no header.
unsafe fn free_wrapper(w: NonNull<WrapperMem>) {
    WRAPPERS_LIVE.with(|n| n.set(n.get() - 1));
    // SAFETY: forwarded to the caller: a live Box from `alloc_wrapper`, ours alone now.
    let mut b = unsafe { Box::from_raw(w.as_ptr()) };
    assert_eq!(
        b.magic, MAGIC,
        "freeing wrapper memory twice or a stray pointer"
    );
    assert!(
        b.obj.is_none(),
        "freeing a wrapper that still holds its reference"
    );
    b.magic = 0;
    drop(b);
}

unsafe extern "C" fn free_cached(mem: *mut c_void) {
    let w = NonNull::new(mem.cast::<WrapperMem>()).expect("free_cached(null)");
    // SAFETY: only `WrapperMem`s are ever bound or parked; the runtime hands parked memory back
    // once, and ASan reports a use after free if it is handed back twice.
    let (magic, id, live) = unsafe { ((*w.as_ptr()).magic, (*w.as_ptr()).id, (*w.as_ptr()).obj) };
    assert_eq!(magic, MAGIC, "free_cached got freed or foreign memory");
    assert!(live.is_none(), "free_cached got a live wrapper");
    CB_FREED.with(|f| f.borrow_mut().push(id));
    // SAFETY: parked memory handed back by the runtime is the host's to free; no header
    // refers to it any more (the funnel swapped it out before calling us).
    unsafe { free_wrapper(w) };
}

static HOST: TieHost = TieHost {
    free_cached,
    release_kept: drop,
};

// ------------------------------------------------------------------ the model

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tie {
    Detached,
    Bound(usize),
    Parked(usize),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WState {
    /// Held by the host with this refcount; owns a strong reference.
    Live(usize),
    /// Cached in its object's header.
    Parked,
    Freed,
}

struct ObjModel {
    /// The object's address (dereferenced only while the model says a count is held).
    ptr: NonNull<ObjHeader>,
    tie: Tie,
    dead: bool,
}

struct Wrapper {
    obj: usize,
    mem: NonNull<WrapperMem>,
    state: WState,
}

struct Harness {
    objs: Vec<ObjModel>,
    strong: Vec<(usize, ObjRef<Thing>)>,
    weak: Vec<(usize, WeakRef<Thing>)>,
    wrappers: Vec<Wrapper>,
    expected_drops: Vec<usize>,
    expected_cb: Vec<usize>,
    baseline: (usize, usize),
}

fn pick(n: usize, i: u8) -> Option<usize> {
    (n > 0).then(|| usize::from(i) % n)
}

impl Harness {
    fn new() -> Self {
        tie::set_host(&HOST);
        let _ = Thing::type_index(); // registration allocates nothing from ALLOC, but do it first
        DROPS.with(|d| d.borrow_mut().clear());
        CB_FREED.with(|f| f.borrow_mut().clear());
        WRAPPERS_LIVE.with(|n| n.set(0));
        let s = alloc_stats();
        Harness {
            objs: Vec::new(),
            strong: Vec::new(),
            weak: Vec::new(),
            wrappers: Vec::new(),
            expected_drops: Vec::new(),
            expected_cb: Vec::new(),
            baseline: (s.live_blocks, s.live_bytes),
        }
    }

    fn strong_of(&self, o: usize) -> usize {
        let handles = self.strong.iter().filter(|(x, _)| *x == o).count();
        let wrappers = self
            .wrappers
            .iter()
            .filter(|w| w.obj == o && matches!(w.state, WState::Live(_)))
            .count();
        handles + wrappers
    }

    fn weak_of(&self, o: usize) -> usize {
        self.weak.iter().filter(|(x, _)| *x == o).count()
    }

    fn tie_state(&self, t: Tie) -> TieState {
        let mem = |i: usize| self.wrappers[i].mem.cast::<c_void>();
        match t {
            Tie::Detached => TieState::Detached,
            Tie::Bound(i) => TieState::Bound(mem(i)),
            Tie::Parked(i) => TieState::Parked(mem(i)),
        }
    }

    /// The wrapper index of `mem`.
    fn wrapper_of(&self, mem: NonNull<c_void>) -> usize {
        self.wrappers
            .iter()
            .position(|w| w.mem.cast() == mem)
            .expect("the runtime returned memory that is no wrapper")
    }

    /// A live object (picked modulo the live ones).
    fn pick_live(&self, o: u8) -> Option<usize> {
        let live: Vec<usize> = (0..self.objs.len())
            .filter(|&i| !self.objs[i].dead)
            .collect();
        pick(live.len(), o).map(|i| live[i])
    }

    /// A view of live object `o` as an `ObjAny` that owns no count of its own: a strong count
    /// is held by one of the harness's handles or live wrappers for as long as the view is used
    /// (views never outlive the operation that made them, and no operation releases the count
    /// a view borrows while the view is in use).
    fn view(&self, o: usize) -> ManuallyDrop<ObjAny> {
        assert!(self.strong_of(o) > 0 && !self.objs[o].dead);
        // SAFETY: see above; ManuallyDrop keeps the borrowed count from being released.
        ManuallyDrop::new(unsafe { ObjAny::from_raw(self.objs[o].ptr) })
    }

    fn new_wrapper(&mut self, o: usize, obj: ObjAny) -> usize {
        let id = self.wrappers.len();
        let mem = alloc_wrapper(id, obj);
        self.wrappers.push(Wrapper {
            obj: o,
            mem,
            state: WState::Live(1),
        });
        id
    }

    fn live_wrapper(&self, s: u8) -> Option<usize> {
        let live: Vec<usize> = (0..self.wrappers.len())
            .filter(|&i| matches!(self.wrappers[i].state, WState::Live(_)))
            .collect();
        pick(live.len(), s).map(|i| live[i])
    }

    /// Takes the live wrapper `s`'s strong reference out of its memory (its cached form).
    fn take_ref(&mut self, s: usize) -> ObjAny {
        let w = &mut self.wrappers[s];
        assert!(matches!(w.state, WState::Live(_)));
        // SAFETY: the wrapper is live, so its memory is allocated and ours.
        let raw = unsafe { (*w.mem.as_ptr()).obj.take() }.expect("live wrapper without a ref");
        w.state = WState::Freed; // provisional; the caller sets the final state
                                 // SAFETY: the count stored by `alloc_wrapper`/`revive` is handed back here, once.
        unsafe { ObjAny::from_raw(raw) }
    }

    /// Host frees wrapper `s`'s memory itself (it is referenced by no header).
    fn host_free(&mut self, s: usize) {
        self.wrappers[s].state = WState::Freed;
        // SAFETY: allocated by `alloc_wrapper`, not freed yet (the model says so), and by the
        // caller's reasoning no header refers to it.
        unsafe { free_wrapper(self.wrappers[s].mem) };
    }

    /// Notes objects that died in the last operation: their values must have been dropped and
    /// parked memory handed to `free_cached`.
    fn settle(&mut self) {
        for o in 0..self.objs.len() {
            if self.objs[o].dead || self.strong_of(o) > 0 {
                continue;
            }
            self.objs[o].dead = true;
            self.expected_drops.push(o);
            match self.objs[o].tie {
                Tie::Detached => {}
                Tie::Parked(w) => {
                    self.expected_cb.push(w);
                    self.wrappers[w].state = WState::Freed;
                }
                Tie::Bound(w) => panic!("harness bug: object {o} died bound to {w}"),
            }
            self.objs[o].tie = Tie::Detached;
        }
    }

    fn check(&self) {
        DROPS.with(|d| assert_eq!(*d.borrow(), self.expected_drops, "value drops"));
        CB_FREED.with(|f| assert_eq!(*f.borrow(), self.expected_cb, "free_cached calls"));
        let wrappers_held = self
            .wrappers
            .iter()
            .filter(|w| w.state != WState::Freed)
            .count();
        WRAPPERS_LIVE.with(|n| assert_eq!(n.get(), wrappers_held as isize, "wrapper memory"));
        for (o, m) in self.objs.iter().enumerate() {
            if m.dead {
                continue;
            }
            let obj = self.view(o);
            assert_eq!(obj.strong_count(), self.strong_of(o), "strong count of {o}");
            assert_eq!(obj.weak_count(), self.weak_of(o), "weak count of {o}");
            let expect = self.tie_state(m.tie);
            assert_eq!(tie::state(&obj), expect, "tie state of {o}");
            let bound = match expect {
                TieState::Bound(w) => Some(w),
                _ => None,
            };
            assert_eq!(tie::lookup(&obj), bound, "lookup of {o}");
        }
        for (o, w) in &self.weak {
            if self.objs[*o].dead {
                assert_eq!(w.strong_count(), 0);
                assert!(w.upgrade().is_none(), "upgrade of dead {o}");
                let word = w.tie_word().load(std::sync::atomic::Ordering::Acquire);
                assert!(word.is_null(), "dead {o} still bound or caching memory: {word:p}");
            }
        }
    }

    /// Finalizes wrapper `s` (its host refcount reached zero) along path `how`.
    fn finalize(&mut self, s: usize, how: u8) {
        let o = self.wrappers[s].obj;
        let tie_before = self.objs[o].tie;
        let expect_state = self.tie_state(tie_before);
        let bound_here = tie_before == Tie::Bound(s);
        let strong_before = self.strong_of(o);
        let mem = self.wrappers[s].mem.cast::<c_void>();
        let obj = self.take_ref(s);
        match how % 3 {
            0 => match tie::park_or_release(obj, mem) {
                Ok(Finalized::Parked) => {
                    assert!(bound_here && strong_before > 1, "parked unexpectedly");
                    self.wrappers[s].state = WState::Parked;
                    self.objs[o].tie = Tie::Parked(s);
                }
                Ok(Finalized::Released) => {
                    assert!(bound_here && strong_before == 1, "released unexpectedly");
                    self.objs[o].tie = Tie::Detached;
                    self.host_free(s);
                }
                Err((obj, st)) => {
                    assert!(!bound_here, "park_or_release refused a bound wrapper");
                    assert_eq!(st, expect_state);
                    drop(obj);
                    self.host_free(s);
                }
            },
            1 => match tie::park(&obj, mem) {
                Ok(()) => {
                    assert!(bound_here, "park of an unbound wrapper succeeded");
                    self.wrappers[s].state = WState::Parked;
                    self.objs[o].tie = Tie::Parked(s);
                    // If this was the last reference, the object dies in (c) and `free_cached`
                    // frees the memory inside this drop: the host touches it no more.
                    drop(obj);
                }
                Err(st) => {
                    assert!(!bound_here, "park refused a bound wrapper");
                    assert_eq!(st, expect_state);
                    self.host_free(s);
                    drop(obj);
                }
            },
            _ => {
                match tie::unbind_for_last_release(&obj, mem) {
                    Ok(()) => {
                        assert!(bound_here, "unbind of an unbound wrapper succeeded");
                        self.objs[o].tie = Tie::Detached;
                    }
                    Err(st) => {
                        assert!(!bound_here, "unbind refused a bound wrapper");
                        assert_eq!(st, expect_state);
                    }
                }
                // The host frees the wrapper memory itself, then releases the object.
                self.host_free(s);
                drop(obj);
            }
        }
    }

    /// The host's "return object `o`": lookup, else revive, else a new wrapper and bind.
    fn wrap(&mut self, o: usize) {
        let obj = self.view(o);
        if let Some(w) = tie::lookup(&obj) {
            let s = self.wrapper_of(w);
            assert_eq!(self.objs[o].tie, Tie::Bound(s));
            match &mut self.wrappers[s].state {
                WState::Live(n) => *n += 1,
                st => panic!("lookup gave a wrapper in state {st:?}"),
            }
            return;
        }
        if let Ok(w) = tie::revive(&obj) {
            let s = self.wrapper_of(w);
            self.revived(o, s, &obj);
            return;
        }
        assert_eq!(self.objs[o].tie, Tie::Detached);
        if self.wrappers.len() >= MAX_WRAPPERS {
            return;
        }
        let s = self.new_wrapper(o, (*obj).clone());
        tie::bind(&obj, self.wrappers[s].mem.cast()).expect("bind in (a) failed");
        self.objs[o].tie = Tie::Bound(s);
    }

    /// The host re-initializes revived memory `s` with a new strong reference.
    fn revived(&mut self, o: usize, s: usize, obj: &ObjAny) {
        assert_eq!(
            self.objs[o].tie,
            Tie::Parked(s),
            "revive gave the wrong memory"
        );
        assert_eq!(self.wrappers[s].state, WState::Parked);
        // SAFETY: revived memory is the host's to re-initialize (it was parked, so allocated).
        unsafe {
            let m = &mut *self.wrappers[s].mem.as_ptr();
            assert_eq!(m.magic, MAGIC);
            assert!(m.obj.is_none());
            m.obj = Some(obj.clone().into_raw());
        }
        self.wrappers[s].state = WState::Live(1);
        self.objs[o].tie = Tie::Bound(s);
    }

    fn run(&mut self, op: Op) {
        match op {
            Op::New => {
                if self.objs.len() >= MAX_OBJECTS || self.strong.len() >= MAX_HANDLES {
                    return;
                }
                let id = self.objs.len();
                let r = ObjRef::new(Thing { id });
                self.objs.push(ObjModel {
                    ptr: r.as_ptr(),
                    tie: Tie::Detached,
                    dead: false,
                });
                self.strong.push((id, r));
            }
            Op::Clone { h } => {
                let Some(i) = pick(self.strong.len(), h) else {
                    return;
                };
                if self.strong.len() < MAX_HANDLES {
                    let o = self.strong[i].0;
                    let c = self.strong[i].1.clone();
                    assert!(c.ptr_eq(&self.strong[i].1));
                    self.strong.push((o, c));
                }
            }
            Op::Drop { h } => {
                let Some(i) = pick(self.strong.len(), h) else {
                    return;
                };
                drop(self.strong.swap_remove(i));
            }
            Op::Downgrade { h } => {
                let Some(i) = pick(self.strong.len(), h) else {
                    return;
                };
                if self.weak.len() < MAX_HANDLES {
                    let o = self.strong[i].0;
                    let w = self.strong[i].1.downgrade();
                    self.weak.push((o, w));
                }
            }
            Op::CloneWeak { w } => {
                let Some(i) = pick(self.weak.len(), w) else {
                    return;
                };
                if self.weak.len() < MAX_HANDLES {
                    let o = self.weak[i].0;
                    let w = self.weak[i].1.clone();
                    self.weak.push((o, w));
                }
            }
            Op::Upgrade { w } => {
                let Some(i) = pick(self.weak.len(), w) else {
                    return;
                };
                let o = self.weak[i].0;
                let up = self.weak[i].1.upgrade();
                assert_eq!(up.is_some(), !self.objs[o].dead, "upgrade of {o}");
                if let Some(r) = up {
                    assert_eq!(r.id, o);
                    if self.strong.len() < MAX_HANDLES {
                        self.strong.push((o, r));
                    }
                }
            }
            Op::DropWeak { w } => {
                let Some(i) = pick(self.weak.len(), w) else {
                    return;
                };
                drop(self.weak.swap_remove(i));
            }
            Op::TryUnwrap { h } => {
                let Some(i) = pick(self.strong.len(), h) else {
                    return;
                };
                let (o, r) = self.strong.swap_remove(i);
                let unique = self.strong_of(o) == 0; // this handle was the only strong ref
                match r.try_unwrap() {
                    Ok(thing) => {
                        assert!(unique, "try_unwrap of a shared object succeeded");
                        assert_eq!(thing.id, o);
                        // The object is dead now (its parked memory, if any, handed back);
                        // the value dies with `thing`, counted as the object's drop.
                        self.settle_without_drop(o);
                        drop(thing);
                        self.expected_drops.push(o);
                    }
                    Err(r) => {
                        assert!(!unique, "try_unwrap of a unique object failed");
                        self.strong.push((o, r));
                    }
                }
            }
            Op::GetMut { h } => {
                let Some(i) = pick(self.strong.len(), h) else {
                    return;
                };
                let o = self.strong[i].0;
                let unique = self.strong_of(o) == 1 && self.weak_of(o) == 0;
                let got = self.strong[i].1.get_mut().map(|t| t.id);
                assert_eq!(got.is_some(), unique, "get_mut of {o}");
            }
            Op::Wrap { o } => {
                let Some(o) = self.pick_live(o) else { return };
                self.wrap(o);
            }
            Op::Fresh { o } => {
                let Some(o) = self.pick_live(o) else { return };
                if self.wrappers.len() < MAX_WRAPPERS {
                    let obj = self.view(o);
                    self.new_wrapper(o, (*obj).clone());
                }
            }
            Op::BindNew { o } => {
                let Some(o) = self.pick_live(o) else { return };
                if self.wrappers.len() >= MAX_WRAPPERS {
                    return;
                }
                let obj = self.view(o);
                let s = self.new_wrapper(o, (*obj).clone());
                let expect = self.tie_state(self.objs[o].tie);
                match tie::bind(&obj, self.wrappers[s].mem.cast()) {
                    Ok(()) => {
                        assert_eq!(self.objs[o].tie, Tie::Detached, "bind outside (a)");
                        self.objs[o].tie = Tie::Bound(s);
                    }
                    Err(st) => {
                        // A losing binder: the host drops its new wrapper at once.
                        assert_eq!(st, expect);
                        drop(self.take_ref(s));
                        self.host_free(s);
                    }
                }
            }
            Op::Bind { s } => {
                let Some(s) = self.live_wrapper(s) else {
                    return;
                };
                let o = self.wrappers[s].obj;
                let obj = self.view(o); // the wrapper's own count keeps it alive
                let expect = self.tie_state(self.objs[o].tie);
                match tie::bind(&obj, self.wrappers[s].mem.cast()) {
                    Ok(()) => {
                        assert_eq!(self.objs[o].tie, Tie::Detached, "bind outside (a)");
                        self.objs[o].tie = Tie::Bound(s);
                    }
                    Err(st) => assert_eq!(st, expect),
                }
            }
            Op::Incref { s } => {
                let Some(s) = self.live_wrapper(s) else {
                    return;
                };
                if let WState::Live(n) = &mut self.wrappers[s].state {
                    *n += 1;
                }
            }
            Op::Decref { s, how } => {
                let Some(s) = self.live_wrapper(s) else {
                    return;
                };
                let WState::Live(n) = &mut self.wrappers[s].state else {
                    unreachable!()
                };
                *n -= 1;
                if *n == 0 {
                    self.finalize(s, how);
                }
            }
            Op::Revive { o } => {
                let Some(o) = self.pick_live(o) else { return };
                let obj = self.view(o);
                let expect = self.tie_state(self.objs[o].tie);
                match tie::revive(&obj) {
                    Ok(w) => {
                        let s = self.wrapper_of(w);
                        self.revived(o, s, &obj);
                    }
                    Err(st) => {
                        assert!(!matches!(self.objs[o].tie, Tie::Parked(_)));
                        assert_eq!(st, expect);
                    }
                }
            }
            Op::Detach { o } => {
                let Some(o) = self.pick_live(o) else { return };
                let obj = self.view(o);
                let expect = self.tie_state(self.objs[o].tie);
                assert_eq!(tie::detach(&obj), expect, "detach of {o}");
                if let Tie::Parked(s) = self.objs[o].tie {
                    // Handed back to the host right away.
                    self.expected_cb.push(s);
                    self.wrappers[s].state = WState::Freed;
                }
                // In (b) the live wrapper stays the host's, no longer canonical.
                self.objs[o].tie = Tie::Detached;
            }
        }
        self.settle();
        self.check();
    }

    /// `try_unwrap` killed object `o` without dropping the value in place.
    fn settle_without_drop(&mut self, o: usize) {
        self.objs[o].dead = true;
        match self.objs[o].tie {
            Tie::Detached => {}
            Tie::Parked(w) => {
                self.expected_cb.push(w);
                self.wrappers[w].state = WState::Freed;
            }
            Tie::Bound(w) => panic!("harness bug: object {o} died bound to {w}"),
        }
        self.objs[o].tie = Tie::Detached;
    }

    /// Releases everything: wrappers die (through `park_or_release`), then strong handles, then
    /// weak handles. Then nothing may be left.
    fn finish(mut self) {
        for s in 0..self.wrappers.len() {
            if let WState::Live(_) = self.wrappers[s].state {
                self.wrappers[s].state = WState::Live(1);
                self.finalize(s, 0);
                self.settle();
                self.check();
            }
        }
        while let Some((_, r)) = self.strong.pop() {
            drop(r);
            self.settle();
            self.check();
        }
        while let Some((_, w)) = self.weak.pop() {
            drop(w);
            self.check();
        }
        assert!(
            self.objs.iter().all(|m| m.dead),
            "an object outlived every handle"
        );
        assert!(
            self.wrappers.iter().all(|w| w.state == WState::Freed),
            "wrapper memory left over"
        );
        WRAPPERS_LIVE.with(|n| assert_eq!(n.get(), 0, "wrapper memory leaked"));
        let mut drops = self.expected_drops.clone();
        drops.sort_unstable();
        assert_eq!(drops, (0..self.objs.len()).collect::<Vec<_>>(), "drops");
        let s = alloc_stats();
        assert_eq!(
            (s.live_blocks, s.live_bytes),
            self.baseline,
            "runtime objects leaked"
        );
    }
}

fuzz_target!(|ops: Vec<Op>| {
    let mut h = Harness::new();
    for op in ops {
        h.run(op);
    }
    h.finish();
});

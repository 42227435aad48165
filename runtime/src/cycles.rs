//! The cycle collector: [`collect_cycles`] finds groups of objects that only reference each
//! other (cycles, and what hangs off them) and frees them. Reference counting alone never
//! frees such a group: a tree with parent pointers, a doubly linked list, an object that
//! holds itself.
//!
//! Top floor (beside `demo` and `containers`): uses `tracked` (which objects to scan),
//! `types::record::gc` (a record's references), `containers` (their elements), `tie` (kept
//! wrappers) and `crate::object` (the counts).
//!
//! # Algorithm: trial deletion, as CPython's collector does
//!
//! Over the tracked objects (`crate::tracked`: records whose fields can hold objects, and the
//! native containers; objects of other types are never scanned):
//!
//! 1. **Freeze.** With the registry locked (no tracked object can be freed, tracked invariant
//!    2), take every tracked object's own lock (a record's lock word, a container's element
//!    lock) and keep them all. The references between tracked objects cannot change now.
//! 2. **Count.** Read each object's strong count: `refs = strong`, then subtract one for every
//!    reference to it from a tracked object's slot or element. What remains counts references
//!    from outside the tracked graph: Rust handles, live host wrappers, untracked objects. A
//!    kept wrapper's reference counts as inside when the host says nothing else references the
//!    wrapper (`CycleHost::kept_is_unreferenced`: reachable from the object alone).
//! 3. **Mark.** Objects with outside references (or strong count 0: being destroyed by a
//!    thread that waits for the registry) are live, and so is everything they reach. The rest
//!    is garbage.
//! 4. **Commit.** For each garbage object, a compare-and-swap from the count word read in step
//!    2 to the same word with `DOOMED` set. If any fails (a weak reference was upgraded or
//!    made since), the collection is abandoned and the flags set so far are cleared: nothing
//!    was freed. A doomed object's weak references no longer upgrade.
//! 5. **Clear.** Take one reference to each garbage object, unfreeze, let the host act on it
//!    (`CycleHost::before_clear`: tether-py releases a kept wrapper, whose weak references are
//!    cleared and whose callbacks run, with every object intact), check that no host wrapper
//!    came alive (a callback may resurrect: then nothing is cleared, the flags are cleared,
//!    and the objects live on intact), then take the object references out of their slots and
//!    elements and drop them, and finally our own references: the objects die through the
//!    ordinary release path (and the trashcan: bounded stack).
//!
//! # Why it is sound while other threads hold and drop references
//!
//! An object a thread can reach must not be doomed. A thread reaches an object through a
//! handle it holds (counted), through the slots of objects it reaches (frozen from step 1 on),
//! or through a weak reference (upgraded). After step 1 a thread can obtain a new reference to
//! a tracked object only by cloning a handle it already has (so the object was referenced from
//! outside when step 2 read its count, and is live) or by upgrading a weak reference. So:
//!
//! * an object referenced from outside when its count is read has `refs > 0` in step 2 and is
//!   marked live with everything it reaches; handles dropped after the read only make the
//!   result conservative;
//! * an upgrade after the read changes the count word, so the commit's compare-and-swap fails
//!   and nothing is freed; an upgrade after the commit fails (`DOOMED`);
//! * an object being destroyed (count 0) is a root: its references are released by its own
//!   destruction, never by us.
//!
//! `tests/loom.rs` models step 4 against a racing weak upgrade and a racing drop, with the
//! broken variant `doom_unchecked` (a plain store instead of the compare-and-swap).
//!
//! # Cost
//!
//! Objects of types that cannot form cycles are never tracked or scanned. A collection costs a
//! lock, two passes over the tracked objects' references and a mark; tracking costs a
//! registry insertion when a tracked object is made and a removal when it dies.

use crate::containers::{List, Map, MapKey};
use crate::object::{counts, Counts, ObjAny, ObjBox, ObjHeader, DOOMED};
use crate::sync::Ordering::{AcqRel, Acquire, Relaxed};
use crate::tracked::{self, Tracked};
use crate::types::record::gc as record_gc;
use crate::types::TypeKind;
use crate::value::Value;
use crate::Object;
use core::cell::Cell;
use core::ffi::c_void;
use core::mem::ManuallyDrop;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicPtr, AtomicU64};
use indexmap::IndexMap;
use std::sync::MutexGuard;

/// What one [`collect_cycles`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CycleStats {
    /// Tracked objects scanned.
    pub scanned: usize,
    /// Garbage objects found (and freed, unless the collection was abandoned).
    pub found: usize,
    /// Objects freed.
    pub freed: usize,
    /// The collection was abandoned: a weak reference to garbage was upgraded while it ran, or
    /// a host callback resurrected a garbage object (nothing was freed).
    pub abandoned: bool,
}

/// Totals over every collection of the process ([`cycle_totals`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CycleTotals {
    /// Collections run.
    pub runs: u64,
    /// Objects scanned, summed.
    pub scanned: u64,
    /// Objects freed, summed.
    pub freed: u64,
    /// Collections abandoned.
    pub abandoned: u64,
}

/// What a host (a binding whose wrappers hold objects) tells the collector.
#[derive(Debug)]
pub struct CycleHost {
    /// Whether the kept wrapper `w` ([`crate::tie::keep`]) is referenced by nothing but its
    /// object (then its reference to the object counts as inside the graph). Called in step 2,
    /// with every tracked object frozen: it must not touch objects. `false` is always safe.
    pub kept_is_unreferenced: fn(NonNull<c_void>) -> bool,
    /// Called for each garbage object before its references are cleared, with every garbage
    /// object still intact and no lock held (step 5); the host may run its own code here
    /// (tether-py releases a kept wrapper, which runs its weak reference callbacks).
    pub before_clear: fn(&ObjAny),
}

static HOST: AtomicPtr<CycleHost> = AtomicPtr::new(core::ptr::null_mut());

/// Installs the host's [`CycleHost`] (once; later calls replace it).
pub fn set_cycle_host(host: &'static CycleHost) {
    // Release: pairs with the Acquire in `host`.
    HOST.store(
        (host as *const CycleHost).cast_mut(),
        core::sync::atomic::Ordering::Release,
    );
}

fn host() -> Option<&'static CycleHost> {
    // Acquire: pairs with `set_cycle_host`.
    let p = HOST.load(core::sync::atomic::Ordering::Acquire);
    // SAFETY: only `&'static CycleHost`s are stored.
    (!p.is_null()).then(|| unsafe { &*p })
}

static RUNS: AtomicU64 = AtomicU64::new(0);
static SCANNED: AtomicU64 = AtomicU64::new(0);
static FREED: AtomicU64 = AtomicU64::new(0);
static ABANDONED: AtomicU64 = AtomicU64::new(0);

/// Totals over every collection so far.
///
/// ```
/// let before = tether_runtime::cycle_totals().runs;
/// tether_runtime::collect_cycles();
/// assert!(tether_runtime::cycle_totals().runs > before);
/// ```
pub fn cycle_totals() -> CycleTotals {
    let r = |a: &AtomicU64| a.load(core::sync::atomic::Ordering::Relaxed);
    CycleTotals {
        runs: r(&RUNS),
        scanned: r(&SCANNED),
        freed: r(&FREED),
        abandoned: r(&ABANDONED),
    }
}

std::thread_local! {
    /// This thread is collecting (a collection started from code it runs is a no-op).
    static COLLECTING: Cell<bool> = const { Cell::new(false) };
}

/// Clears [`COLLECTING`] however the collection ends.
struct Reentry;
impl Drop for Reentry {
    fn drop(&mut self) {
        let _ = COLLECTING.try_with(|c| c.set(false));
    }
}

/// What a tracked object is, for reading its references.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Shape {
    Record,
    List,
    Map,
}

/// A tracked object held still (step 1).
enum Frozen {
    Record(#[allow(dead_code)] record_gc::Frozen),
    List(MutexGuard<'static, Vec<Value>>),
    Map(MutexGuard<'static, IndexMap<MapKey, Value>>),
}

/// The value of the Rust object `p` of type `T`.
///
/// # Safety
/// `p` is a live object of type `T` that outlives the reference (tracked invariant 2).
unsafe fn value_of<'a, T>(p: NonNull<ObjHeader>) -> &'a T {
    // SAFETY: an `ObjBox<T>` (caller); `p` carries the block's provenance (object invariant 1).
    unsafe { &(*p.cast::<ObjBox<T>>().as_ptr()).value }
}

fn shape_of(p: NonNull<ObjHeader>) -> Shape {
    // SAFETY: the header is alive (tracked invariant 2); the type index is immutable.
    let index = unsafe { p.as_ref() }.type_index();
    if index == List::type_index() {
        Shape::List
    } else if index == Map::type_index() {
        Shape::Map
    } else {
        debug_assert!(crate::types::type_info(index).is_some_and(|t| t.kind == TypeKind::Record));
        Shape::Record
    }
}

/// Step 1 for one object.
///
/// # Safety
/// `p` is tracked and the registry is locked for as long as the result lives.
unsafe fn freeze(p: NonNull<ObjHeader>, shape: Shape) -> Frozen {
    // SAFETY: forwarded (caller): alive while the registry is locked, which outlives the guard.
    unsafe {
        match shape {
            Shape::Record => Frozen::Record(record_gc::freeze(p)),
            Shape::List => Frozen::List(value_of::<List>(p).lock_items()),
            Shape::Map => Frozen::Map(value_of::<Map>(p).lock_entries()),
        }
    }
}

/// Calls `f` with each object `p` references (strongly), `p` frozen as `frozen`.
///
/// # Safety
/// `p` is frozen by `frozen` (records: its lock is held).
unsafe fn edges(p: NonNull<ObjHeader>, frozen: &Frozen, mut f: impl FnMut(NonNull<ObjHeader>)) {
    let mut value = |v: &Value| {
        if let Value::Object(o) = v {
            f(o.as_ptr());
        }
    };
    match frozen {
        // SAFETY: frozen (caller).
        Frozen::Record(_) => unsafe { record_gc::for_each_edge(p, |q| value_ptr(&mut value, q)) },
        Frozen::List(items) => items.iter().for_each(value),
        Frozen::Map(entries) => {
            for (k, v) in entries.iter() {
                if let MapKey::Object(o) = k {
                    value_ptr(&mut value, o.as_ptr());
                }
                value(v);
            }
        }
    }
}

/// Passes the object `q` to an edge callback that takes values, without making a handle.
fn value_ptr(value: &mut impl FnMut(&Value), q: NonNull<ObjHeader>) {
    // An uncounted handle inside a Value that is never dropped: only its address is read.
    let v = ManuallyDrop::new(Value::Object(borrowed(q)));
    value(&v);
}

/// An uncounted handle to `p`, never dropped by its users.
fn borrowed(p: NonNull<ObjHeader>) -> ObjAny {
    // SAFETY: only used to read the address (see `edges`), inside ManuallyDrop.
    unsafe { ObjAny::from_raw(p) }
}

/// Collects the cycles among the tracked objects now (module docs): frees every group of
/// objects that nothing outside the group references. Safe to call from any thread at any
/// time; a call from inside a collection (a host callback) does nothing.
///
/// ```
/// use tether_runtime::{collect_cycles, record_set, register_record_type, FieldKind, FieldSpec, Record, Value, ANY_OBJECT};
/// let node = register_record_type(
///     "doc.cycles.Node",
///     None,
///     vec![FieldSpec::new("next", FieldKind::Optional(Box::new(FieldKind::Object(ANY_OBJECT)))).with_default(Value::None)],
/// )
/// .unwrap();
/// let a = Record::new(node, vec![]).unwrap();
/// let b = Record::new(node, vec![Value::Object(a.clone())]).unwrap();
/// record_set(&a, 0, Value::Object(b.clone())).unwrap(); // a -> b -> a
/// let weak = a.downgrade();
/// drop((a, b)); // reference counting alone would leak both
/// let stats = collect_cycles();
/// assert!(stats.freed >= 2);
/// assert!(weak.upgrade().is_none());
/// ```
pub fn collect_cycles() -> CycleStats {
    if COLLECTING.with(|c| c.replace(true)) {
        return CycleStats::default();
    }
    let _reentry = Reentry;
    let (mut stats, held) = find_garbage();
    RUNS.fetch_add(1, core::sync::atomic::Ordering::Relaxed);
    SCANNED.fetch_add(stats.scanned as u64, core::sync::atomic::Ordering::Relaxed);
    if stats.abandoned {
        ABANDONED.fetch_add(1, core::sync::atomic::Ordering::Relaxed);
        return stats;
    }
    if held.is_empty() {
        return stats;
    }
    // Step 5: the host first, everything intact.
    if let Some(h) = host() {
        for o in &held {
            (h.before_clear)(o);
        }
    }
    // A host wrapper alive again (resurrected by host code): leave the garbage alone, intact.
    let resurrected = held
        .iter()
        .any(|o| matches!(crate::tie::state(o), crate::TieState::Bound(_)));
    if resurrected {
        undoom(held.iter().map(ObjAny::as_ptr));
        stats.abandoned = true;
        ABANDONED.fetch_add(1, core::sync::atomic::Ordering::Relaxed);
        return stats;
    }
    let mut taken: Vec<Value> = Vec::new();
    for o in &held {
        match shape_of(o.as_ptr()) {
            Shape::Record => taken.extend(record_gc::clear_edges(o)),
            Shape::List => {
                // SAFETY: a live List (our reference keeps it).
                let l = unsafe { value_of::<List>(o.as_ptr()) };
                taken.extend(core::mem::take(&mut *l.lock_items()));
            }
            Shape::Map => {
                // SAFETY: a live Map (our reference keeps it).
                let m = unsafe { value_of::<Map>(o.as_ptr()) };
                let entries = core::mem::take(&mut *m.lock_entries());
                for (k, v) in entries {
                    taken.push(k.to_value());
                    taken.push(v);
                }
            }
        }
    }
    drop(taken); // the group's references to each other: nothing dies yet (we hold each one)
    stats.freed = held.len();
    FREED.fetch_add(held.len() as u64, core::sync::atomic::Ordering::Relaxed);
    drop(held); // now they die, through the ordinary releases
    stats
}

/// Clears `DOOMED` on each object (an abandoned collection).
fn undoom(ps: impl Iterator<Item = NonNull<ObjHeader>>) {
    for p in ps {
        // SAFETY: each object is alive (the caller holds it, or the registry is locked).
        // Relaxed: the flag only gates weak upgrades, whose CAS re-reads the word.
        unsafe { counts(p) }.fetch_and(!DOOMED, Relaxed);
    }
}

/// Steps 1 to 4, under the registry's lock: the garbage, doomed and held by one reference
/// each (empty if the collection was abandoned).
fn find_garbage() -> (CycleStats, Vec<ObjAny>) {
    let mut stats = CycleStats::default();
    let reg = tracked::lock();
    let n = reg.len();
    stats.scanned = n;
    if n == 0 {
        return (stats, Vec::new());
    }
    let ptrs: Vec<NonNull<ObjHeader>> = reg.iter().map(|t| t.0).collect();
    // Step 1.
    // SAFETY: every pointer is tracked and the registry stays locked until `frozen` is dropped.
    let frozen: Vec<Frozen> = ptrs
        .iter()
        .map(|&p| unsafe { freeze(p, shape_of(p)) })
        .collect();
    // Step 2.
    let kept_probe = host().map(|h| h.kept_is_unreferenced);
    let mut observed = Vec::with_capacity(n);
    let mut refs: Vec<i64> = Vec::with_capacity(n);
    for &p in &ptrs {
        // SAFETY: alive (tracked invariant 2). Acquire: the releases that brought the count
        // here happen-before our reading of the object's references.
        let c = unsafe { counts(p) }.load(Acquire);
        observed.push(c);
        let cc = Counts(c);
        let mut r = cc.strong() as i64;
        if r == 0 {
            r = i64::MAX / 2; // being destroyed: a root, its references released by its owner
        } else if cc.is_kept() {
            if let Some(probe) = kept_probe {
                let obj = ManuallyDrop::new(borrowed(p));
                if let crate::TieState::Bound(w) = crate::tie::state(&obj) {
                    if probe(w) {
                        r -= 1; // the wrapper is reachable from the object alone
                    }
                }
            }
        }
        refs.push(r);
    }
    let index = |q: NonNull<ObjHeader>| reg.get_index_of(&Tracked(q));
    for (i, &p) in ptrs.iter().enumerate() {
        // SAFETY: frozen above.
        unsafe {
            edges(p, &frozen[i], |q| {
                if let Some(j) = index(q) {
                    refs[j] -= 1;
                }
            })
        };
    }
    // Step 3.
    let mut live: Vec<bool> = refs.iter().map(|&r| r > 0).collect();
    let mut stack: Vec<usize> = (0..n).filter(|&i| live[i]).collect();
    while let Some(i) = stack.pop() {
        // SAFETY: frozen above.
        unsafe {
            edges(ptrs[i], &frozen[i], |q| {
                if let Some(j) = index(q) {
                    if !live[j] {
                        live[j] = true;
                        stack.push(j);
                    }
                }
            })
        };
    }
    let garbage: Vec<usize> = (0..n).filter(|&i| !live[i]).collect();
    stats.found = garbage.len();
    if garbage.is_empty() {
        return (stats, Vec::new());
    }
    // Step 4.
    for (k, &g) in garbage.iter().enumerate() {
        // SAFETY: alive (tracked invariant 2).
        let c = unsafe { counts(ptrs[g]) };
        #[cfg(not(tether_loom_broken = "doom_unchecked"))]
        // AcqRel: Acquire orders our later clearing after the releases counted in `observed`;
        // Release publishes the flag to upgraders (their CAS reads this word).
        let ok = c
            .compare_exchange(observed[g], observed[g] | DOOMED, AcqRel, Relaxed)
            .is_ok();
        #[cfg(tether_loom_broken = "doom_unchecked")]
        let ok = {
            c.fetch_or(DOOMED, AcqRel);
            true
        };
        if !ok {
            undoom(garbage[..k].iter().map(|&h| ptrs[h]));
            stats.abandoned = true;
            return (stats, Vec::new());
        }
    }
    // Step 5's references: each garbage object has a count (its references from the group).
    let held: Vec<ObjAny> = garbage
        .iter()
        .map(|&g| (*ManuallyDrop::new(borrowed(ptrs[g]))).clone())
        .collect();
    drop(frozen);
    drop(reg);
    (stats, held)
}

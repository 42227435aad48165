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
//!    (`CycleHost::prepare`: tether-py runs the garbage Python objects' finalizers and releases
//!    kept wrappers, whose weak references are cleared and whose callbacks run, with every
//!    object intact), check that nothing came alive (a count above what the group accounts for,
//!    a live wrapper that is not garbage: then nothing is cleared, the flags are cleared, and
//!    the objects live on intact), then take the object and host references out of their
//!    slots and elements and drop them, and finally our own references: the objects die
//!    through the ordinary release path (and the trashcan: bounded stack).
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
//! broken variant `doom_unchecked`. (Step 5's count check is a second guard against the same
//! race: an upgrade before the commit leaves the count above what the group accounts for. The
//! variant removes both, the compare-and-swap, replaced by a plain `fetch_or`, and the count
//! check, so that the model shows what they guard against.)
//!
//! # Cycles through host objects
//!
//! A tracked object may hold host objects (host handles: tether-py's Python objects), which may
//! hold host wrappers of tracked objects: a cycle the native graph alone cannot see. In step 2
//! the host may add its part of the graph ([`CycleHost::host_graph`]): the host objects the
//! handles reach, each with its references from outside the graph, their references to each
//! other, and each wrapper's reference to its object (which then counts as inside). A handle
//! counts as inside only if every clone of it is in a tracked object. Marking runs over both
//! kinds of node; the garbage host objects are handed to [`CycleHost::prepare`] (which holds
//! them and runs their finalizers) and [`CycleHost::release`]. A host that cannot make its
//! counts stand still returns no graph: its objects are then leaves held from outside, and
//! cycles through them are not collected.
//!
//! # Cost
//!
//! Objects of types that cannot form cycles are never tracked or scanned. A collection costs a
//! lock, two passes over the tracked objects' references and a mark; tracking costs a
//! registry insertion when a tracked object is made and a removal when it dies.

use crate::containers::{List, Map, MapKey};
use crate::host::HostHandle;
use crate::object::{counts, Counts, ObjAny, ObjBox, ObjHeader, DOOMED};
use crate::sync::Ordering::{AcqRel, Acquire, Relaxed};
use crate::tracked::{self, Registry};
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

/// What a host (a binding whose wrappers hold objects, and whose objects tracked objects hold)
/// tells the collector.
#[derive(Debug)]
pub struct CycleHost {
    /// Whether the kept wrapper `w` ([`crate::tie::keep`]) is referenced by nothing but its
    /// object (then its reference to the object counts as inside the graph). Called in step 2,
    /// with every tracked object frozen: it must not touch objects. `false` is always safe.
    pub kept_is_unreferenced: fn(NonNull<c_void>) -> bool,
    /// The host's part of the graph (module docs, "Cycles through host objects"): the host
    /// objects reachable from the tracked objects' host handles, with what references them
    /// from outside. Called in step 2, frozen: it must not run host code that
    /// could touch objects (tether-py traverses Python objects with the GIL held). `None`: no
    /// host graph (the host objects are then leaves, held from outside).
    pub host_graph: fn(&HostEdges<'_>) -> Option<HostGraph>,
    /// Step 5, before anything is cleared, with nothing frozen: `natives` are the garbage
    /// objects (intact), `hosts` the garbage host objects of the host graph. The host takes a
    /// reference to each host object (given back by [`release`](Self::release)), releases kept
    /// wrappers (their weak reference callbacks run), runs the host objects' finalizers, and
    /// returns whether any of its objects may have been resurrected (then nothing is cleared).
    /// Kept wrappers are not host objects of the graph (`kept_is_unreferenced` decides for
    /// them).
    pub prepare: fn(natives: &[ObjAny], hosts: &[NonNull<c_void>]) -> bool,
    /// After clearing (or abandoning): gives back the references `prepare` took.
    pub release: fn(hosts: &[NonNull<c_void>]),
}

/// What the collector shows the host ([`CycleHost::host_graph`]).
#[derive(Debug)]
pub struct HostEdges<'a> {
    /// Each distinct host reference that tracked objects hold: the host object, and whether
    /// every clone of its handle is in a tracked object (then the reference is inside the
    /// graph; otherwise something outside holds it too).
    pub handles: &'a [(NonNull<c_void>, bool)],
}

/// The host's part of the graph ([`CycleHost::host_graph`]): host objects `0..nodes.len()`.
#[derive(Debug, Default)]
pub struct HostGraph {
    /// The host objects.
    pub nodes: Vec<NonNull<c_void>>,
    /// Per node: its references from outside the graph (its count, less the references from
    /// other nodes and from the inside handles).
    pub outside: Vec<i64>,
    /// Per entry of `HostEdges::handles`: its node.
    pub handle_node: Vec<u32>,
    /// Node to node references.
    pub edges: Vec<(u32, u32)>,
    /// Node to object references (a wrapper's reference to its object).
    pub to_native: Vec<(u32, NonNull<ObjHeader>)>,
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

/// The shape of any live object: `None` for a Rust type other than the containers.
fn shape_of_any(p: NonNull<ObjHeader>) -> Option<Shape> {
    // SAFETY: the header is alive (caller); the type index is immutable.
    let index = unsafe { p.as_ref() }.type_index();
    if index == List::type_index() {
        Some(Shape::List)
    } else if index == Map::type_index() {
        Some(Shape::Map)
    } else if crate::types::type_info(index).is_some_and(|t| t.kind == TypeKind::Record) {
        Some(Shape::Record)
    } else {
        None
    }
}

/// The shape of a tracked object (only records, lists and maps are tracked).
fn shape_of(p: NonNull<ObjHeader>) -> Shape {
    shape_of_any(p).expect("a tracked object is a record, a List or a Map")
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

/// Calls `f` with each object `p` references (strongly), and `h` with each host handle it
/// holds, `p` frozen as `frozen`.
///
/// # Safety
/// `p` is frozen by `frozen` (records: its lock is held); the handles are used only while it
/// stays frozen.
unsafe fn edges(
    p: NonNull<ObjHeader>,
    frozen: &Frozen,
    mut f: impl FnMut(NonNull<ObjHeader>),
    mut h: impl FnMut(*const HostHandle),
) {
    let mut value = |v: &Value| match v {
        Value::Object(o) => f(o.as_ptr()),
        Value::Opaque(x) => h(x),
        _ => {}
    };
    match frozen {
        // SAFETY: frozen (caller).
        Frozen::Record(_) => unsafe { record_gc::for_each_value(p, &mut value) },
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
    collect(false).0
}

/// [`collect_cycles`] that keeps the garbage instead of freeing it, for hosts whose debugging
/// mode keeps it (CPython's `gc.DEBUG_SAVEALL`): everything up to the clearing runs (the host's
/// finalizers and weak reference callbacks included); then the garbage objects are un-doomed,
/// intact, and returned (`stats.freed` is 0).
///
/// ```
/// use tether_runtime::{collect_cycles_keeping, record_set, register_record_type, FieldKind, FieldSpec, Record, Value};
/// let t = register_record_type("doc.cycles.Kept", None, vec![FieldSpec::new("me", FieldKind::Any).with_default(Value::None)]).unwrap();
/// let a = Record::new(t, vec![]).unwrap();
/// record_set(&a, 0, Value::Object(a.clone())).unwrap();
/// let weak = a.downgrade();
/// drop(a);
/// let (_, kept) = collect_cycles_keeping();
/// assert!(kept.iter().any(|o| o.as_ptr() == weak.upgrade().unwrap().as_ptr()));
/// # drop(kept);
/// # tether_runtime::collect_cycles();
/// ```
pub fn collect_cycles_keeping() -> (CycleStats, Vec<ObjAny>) {
    collect(true)
}

/// [`collect_cycles`], or with `keep` [`collect_cycles_keeping`].
fn collect(keep: bool) -> (CycleStats, Vec<ObjAny>) {
    if COLLECTING.with(|c| c.replace(true)) {
        return (CycleStats::default(), Vec::new());
    }
    let _reentry = Reentry;
    let found = find_garbage();
    let mut stats = found.stats;
    RUNS.fetch_add(1, core::sync::atomic::Ordering::Relaxed);
    SCANNED.fetch_add(stats.scanned as u64, core::sync::atomic::Ordering::Relaxed);
    let abandon = |stats: &mut CycleStats| {
        stats.abandoned = true;
        ABANDONED.fetch_add(1, core::sync::atomic::Ordering::Relaxed);
    };
    if stats.abandoned {
        abandon(&mut stats);
        return (stats, Vec::new());
    }
    let held = found.held;
    if held.is_empty() {
        return (stats, Vec::new());
    }
    // Step 5: the host first, everything intact.
    let host = host();
    let resurrected_host = host.is_some_and(|h| (h.prepare)(&held, &found.host_garbage));
    let release = || {
        if let Some(h) = host {
            (h.release)(&found.host_garbage);
        }
    };
    // Resurrected by host code: a garbage object referenced more than the group, our handle
    // and its garbage wrapper account for, or a live wrapper that is not garbage.
    #[cfg(not(tether_loom_broken = "doom_unchecked"))]
    let counted_more = held
        .iter()
        .zip(&found.strong)
        .any(|(o, &s)| o.obj_header().strong_count() > s + 1);
    #[cfg(tether_loom_broken = "doom_unchecked")]
    let counted_more = false;
    let resurrected = resurrected_host
        || counted_more
        || held.iter().any(|o| match crate::tie::state(o) {
            crate::TieState::Bound(w) => !found.garbage_wrappers.contains(&(w.as_ptr() as usize)),
            _ => false,
        });
    if resurrected {
        undoom(held.iter().map(ObjAny::as_ptr));
        drop(held);
        release();
        abandon(&mut stats);
        return (stats, Vec::new());
    }
    if keep {
        undoom(held.iter().map(ObjAny::as_ptr));
        release();
        return (stats, held);
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
    drop(held); // now they die, through the ordinary releases (or with their garbage wrappers)
    release();
    (stats, Vec::new())
}

/// The registry index of the object `q`, if it is tracked (registry locked: tracked invariant 2,
/// so `q`, referenced from a frozen object, is alive).
fn index_of(reg: &Registry, q: NonNull<ObjHeader>) -> Option<usize> {
    // SAFETY: `q` is alive (above); its header says which slot it has, if any.
    let slot = unsafe {
        match shape_of_any(q) {
            Some(Shape::List) => Some(value_of::<List>(q).__tracked_slot()),
            Some(Shape::Map) => Some(value_of::<Map>(q).__tracked_slot()),
            Some(Shape::Record) => record_gc::slot_of(q),
            None => None,
        }
    }?;
    tracked::index_of(reg, q, slot)
}

/// Clears `DOOMED` on each object (an abandoned collection).
fn undoom(ps: impl Iterator<Item = NonNull<ObjHeader>>) {
    for p in ps {
        // SAFETY: each object is alive (the caller holds it, or the registry is locked).
        // Relaxed: the flag only gates weak upgrades, whose CAS re-reads the word.
        unsafe { counts(p) }.fetch_and(!DOOMED, Relaxed);
    }
}

/// What steps 1 to 4 found.
#[derive(Default)]
struct Found {
    stats: CycleStats,
    /// The garbage objects, doomed, each held by one reference of ours.
    held: Vec<ObjAny>,
    /// Their strong counts when counted (before our reference).
    strong: Vec<usize>,
    /// The garbage host objects of the host graph.
    host_garbage: Vec<NonNull<c_void>>,
    /// The garbage host objects that are wrappers of objects (their addresses).
    garbage_wrappers: Vec<usize>,
}

/// Steps 1 to 4, under the registry's lock.
fn find_garbage() -> Found {
    let mut found = Found::default();
    let reg = tracked::lock();
    let n = reg.len();
    found.stats.scanned = n;
    if n == 0 {
        return found;
    }
    let ptrs: Vec<NonNull<ObjHeader>> = reg.iter().map(|e| e.obj).collect();
    let index = |q: NonNull<ObjHeader>| index_of(&reg, q);
    // Step 1.
    // SAFETY: every pointer is tracked and the registry stays locked until `frozen` is dropped.
    let frozen: Vec<Frozen> = ptrs
        .iter()
        .map(|&p| unsafe { freeze(p, shape_of(p)) })
        .collect();
    // Step 2: the counts, the references between tracked objects, and the host's handles.
    let mut observed = Vec::with_capacity(n);
    let mut refs: Vec<i64> = Vec::with_capacity(n);
    let mut kept: Vec<(usize, NonNull<c_void>)> = Vec::new();
    for (i, &p) in ptrs.iter().enumerate() {
        // SAFETY: alive (tracked invariant 2). Acquire: the releases that brought the count
        // here happen-before our reading of the object's references.
        let c = Counts(unsafe { counts(p) }.load(Acquire));
        observed.push(c.0);
        let r = c.strong() as i64;
        // Strong 0: being destroyed, a root (its references are released by its owner).
        refs.push(if r == 0 { i64::MAX / 2 } else { r });
        if r > 0 && c.is_kept() {
            let obj = ManuallyDrop::new(borrowed(p));
            if let crate::TieState::Bound(w) = crate::tie::state(&obj) {
                kept.push((i, w));
            }
        }
    }
    let mut handle_refs: Vec<(usize, *const HostHandle)> = Vec::new();
    for (i, &p) in ptrs.iter().enumerate() {
        // SAFETY: frozen above.
        unsafe {
            edges(
                p,
                &frozen[i],
                |q| {
                    if let Some(j) = index(q) {
                        refs[j] -= 1;
                    }
                },
                |h| handle_refs.push((i, h)),
            )
        };
    }
    // The host's graph: each distinct handle once, inside if all its clones are in tracked
    // objects.
    let mut handle_ids: IndexMap<usize, (NonNull<c_void>, usize, usize)> = IndexMap::new();
    for &(_, h) in &handle_refs {
        // SAFETY: the handle is in a frozen slot (edges' contract).
        let h = unsafe { &*h };
        let e = handle_ids
            .entry(h.identity())
            .or_insert((h.as_ptr(), 0, h.share_count()));
        e.1 += 1;
    }
    let handles: Vec<(NonNull<c_void>, bool)> = handle_ids
        .values()
        .map(|&(p, seen, all)| (p, seen == all))
        .collect();
    let graph = host().and_then(|h| (h.host_graph)(&HostEdges { handles: &handles }));
    let m = graph.as_ref().map_or(0, |g| g.nodes.len());
    // Joint node numbering: objects 0..n, host objects n..n + m.
    let mut outside: Vec<i64> = refs;
    let mut adj: Vec<Vec<u32>> = vec![Vec::new(); n + m];
    // Without a host graph, host objects are leaves, held from outside.
    if let Some(g) = &graph {
        outside.extend_from_slice(&g.outside);
        for &(i, h) in &handle_refs {
            // SAFETY: as above.
            let id = unsafe { &*h }.identity();
            let k = handle_ids.get_index_of(&id).expect("grouped above");
            adj[i].push(n as u32 + g.handle_node[k]);
        }
        for &(a, b) in &g.edges {
            adj[n + a as usize].push(n as u32 + b);
        }
        for &(a, q) in &g.to_native {
            if let Some(j) = index(q) {
                outside[j] -= 1; // a wrapper's reference, from inside the graph
                adj[n + a as usize].push(j as u32);
            }
        }
    }
    // A kept wrapper counts as inside only if the host says nothing else references it.
    let probe = host().map(|h| h.kept_is_unreferenced);
    for &(i, w) in &kept {
        if probe.is_some_and(|f| f(w)) {
            outside[i] -= 1;
        }
    }
    // Step 3: mark from the roots, through objects and host objects alike.
    let mut live: Vec<bool> = outside.iter().map(|&r| r > 0).collect();
    let mut stack: Vec<usize> = (0..n + m).filter(|&i| live[i]).collect();
    let visit = |j: usize, live: &mut Vec<bool>, stack: &mut Vec<usize>| {
        if !live[j] {
            live[j] = true;
            stack.push(j);
        }
    };
    while let Some(i) = stack.pop() {
        for &j in &adj[i] {
            visit(j as usize, &mut live, &mut stack);
        }
        if i < n {
            // SAFETY: frozen above.
            unsafe {
                edges(
                    ptrs[i],
                    &frozen[i],
                    |q| {
                        if let Some(j) = index(q) {
                            visit(j, &mut live, &mut stack);
                        }
                    },
                    |_| {},
                )
            };
        }
    }
    let garbage: Vec<usize> = (0..n).filter(|&i| !live[i]).collect();
    found.stats.found = garbage.len();
    if garbage.is_empty() {
        return found;
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
            found.stats.abandoned = true;
            return found;
        }
    }
    // Step 5's references: each garbage object has a count (its references from the group).
    found.held = garbage
        .iter()
        .map(|&g| (*ManuallyDrop::new(borrowed(ptrs[g]))).clone())
        .collect();
    found.strong = garbage
        .iter()
        .map(|&g| Counts(observed[g]).strong() as usize)
        .collect();
    if let Some(g) = &graph {
        for (k, &p) in g.nodes.iter().enumerate() {
            if !live[n + k] {
                found.host_garbage.push(p);
            }
        }
        for &(a, _) in &g.to_native {
            if !live[n + a as usize] {
                found
                    .garbage_wrappers
                    .push(g.nodes[a as usize].as_ptr() as usize);
            }
        }
    }
    drop(frozen);
    drop(reg);
    found
}

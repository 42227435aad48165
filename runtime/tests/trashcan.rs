//! Deep structures are destroyed without deep recursion (the trashcan, `object.rs` module docs,
//! "Deep structures"), synchronously for the outermost release, leaving no block behind.
//!
//! Under Miri the chains are much shorter (Miri's trashcan threshold is 8, so they still defer
//! many times over).

mod common;

use common::*;
use core::ffi::c_void;
use core::ptr::NonNull;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread;
use tether_runtime::{
    object_type, record_get, register_record_type, tie, FieldKind, FieldSpec, HostHandle,
    HostVTable, ObjAny, ObjRef, Record, TieHost, TieState, Value, WeakRef, ANY_OBJECT,
};

const SMALL_STACK: usize = 256 * 1024;

/// Runs `f` in a thread with a 256 KiB stack (where ~20,000 nested destructions overflowed).
fn in_small_thread<F: FnOnce() + Send + 'static>(f: F) {
    thread::Builder::new()
        .stack_size(SMALL_STACK)
        .spawn(f)
        .unwrap()
        .join()
        .unwrap();
}

// ---------------------------------------------------------------- records

/// `test.trash.Link(n: int, next: Optional[object])`.
fn link_type() -> u32 {
    static T: OnceLock<u32> = OnceLock::new();
    *T.get_or_init(|| {
        register_record_type(
            "test.trash.Link",
            None,
            vec![
                FieldSpec::new("n", FieldKind::Int),
                FieldSpec::new(
                    "next",
                    FieldKind::Optional(Box::new(FieldKind::Object(ANY_OBJECT))),
                )
                .with_default(Value::None),
            ],
        )
        .unwrap()
    })
}

/// A chain of `n` records, the head first: node i's `next` is node i + 1.
fn record_chain(n: usize) -> ObjAny {
    let t = link_type();
    let mut head = Value::None;
    for i in (0..n).rev() {
        head = Value::from(Record::new(t, vec![Value::Int(i as i64), head]).unwrap());
    }
    head.as_object().unwrap().clone()
}

#[test]
fn million_record_chain_on_the_main_thread() {
    let _s = serial();
    let leak = LeakCheck::new();
    let n = iters(1_000_000, 1_000);
    let head = record_chain(n);
    assert_eq!(leak.extra_blocks(), n as isize);
    assert_eq!(record_get(&head, 0).unwrap(), Value::Int(0));
    drop(head);
    // Synchronous: every block is gone when the outermost release returns.
    assert_eq!(leak.extra_blocks(), 0);
}

#[test]
fn record_chain_in_a_thread_with_a_small_stack() {
    let _s = serial();
    let leak = LeakCheck::new();
    let n = iters(100_000, 1_000);
    let head = record_chain(n);
    in_small_thread(move || drop(head));
    assert_eq!(leak.extra_blocks(), 0);
}

#[test]
fn record_chain_built_and_dropped_in_a_small_thread() {
    let _s = serial();
    let _leak = LeakCheck::new();
    let n = iters(100_000, 1_000);
    in_small_thread(move || {
        let _ = link_type(); // registration uses the stack a little: before the baseline
        let base = tether_runtime::alloc_stats().live_blocks;
        drop(record_chain(n));
        assert_eq!(tether_runtime::alloc_stats().live_blocks, base);
    });
}

// ---------------------------------------------------------------- Rust objects

/// A Rust node holding the next one; checks on drop that nodes drop in chain order.
struct Node {
    index: usize,
    next: Option<ObjRef<Node>>,
    order: Arc<AtomicUsize>,
}
object_type!(Node, "test.trash.Node");

impl Drop for Node {
    fn drop(&mut self) {
        let expected = self.order.fetch_add(1, Ordering::Relaxed);
        assert_eq!(self.index, expected, "chain order");
    }
}

/// A chain of `n` nodes, the head first, and its order counter (the number of nodes dropped).
fn node_chain(n: usize) -> (ObjRef<Node>, Arc<AtomicUsize>) {
    let order = Arc::new(AtomicUsize::new(0));
    let mut next = None;
    for index in (0..n).rev() {
        next = Some(ObjRef::new(Node {
            index,
            next,
            order: order.clone(),
        }));
    }
    (next.unwrap(), order)
}

#[test]
fn rust_type_chain_drops_in_order() {
    let _s = serial();
    let leak = LeakCheck::new();
    let n = iters(1_000_000, 1_000);
    let (head, order) = node_chain(n);
    assert_eq!(head.next.as_ref().unwrap().index, 1);
    drop(head);
    assert_eq!(drops(&order), n);
    assert_eq!(leak.extra_blocks(), 0);
}

#[test]
fn rust_type_chain_in_a_small_thread_through_the_erased_handle() {
    let _s = serial();
    let leak = LeakCheck::new();
    let n = iters(100_000, 1_000);
    let (head, order) = node_chain(n);
    let any = head.into_any();
    in_small_thread(move || drop(any));
    assert_eq!(drops(&order), n);
    assert_eq!(leak.extra_blocks(), 0);
}

// ---------------------------------------------------------------- wide and deep

/// A node with any number of children, Rust objects or records.
struct Tree {
    #[allow(dead_code)] // held for its drop
    kids: Vec<ObjAny>,
    drops: Arc<AtomicUsize>,
}
object_type!(Tree, "test.trash.Tree");

impl Drop for Tree {
    fn drop(&mut self) {
        self.drops.fetch_add(1, Ordering::Relaxed);
    }
}

#[test]
fn wide_and_deep_tree() {
    let _s = serial();
    let leak = LeakCheck::new();
    // A spine of `depth` Tree nodes; each also holds `width` record chains of `len` records
    // (longer than the threshold) and one leaf Tree with `width` leaves of its own.
    let (depth, width, len) = if cfg!(miri) {
        (60, 3, 12)
    } else {
        (2_000, 3, 60)
    };
    let dropped = Arc::new(AtomicUsize::new(0));
    let leaf = |kids| {
        ObjRef::new(Tree {
            kids,
            drops: dropped.clone(),
        })
        .into_any()
    };
    let mut spine: Option<ObjAny> = None;
    for _ in 0..depth {
        let mut kids: Vec<ObjAny> = (0..width).map(|_| record_chain(len)).collect();
        kids.push(leaf((0..width).map(|_| leaf(Vec::new())).collect()));
        kids.extend(spine.take());
        spine = Some(leaf(kids));
    }
    let trees = depth * (2 + width);
    let blocks = trees + depth * width * len;
    assert_eq!(leak.extra_blocks(), blocks as isize);
    in_small_thread(move || drop(spine));
    assert_eq!(drops(&dropped), trees);
    assert_eq!(leak.extra_blocks(), 0);
}

// ---------------------------------------------------------------- weak references, parked wrappers

static FREED_WRAPPERS: AtomicUsize = AtomicUsize::new(0);

/// The host's free callback: the fake wrapper memory is a leaked `Box<[u64; 4]>`.
unsafe extern "C" fn free_wrapper(mem: *mut c_void) {
    FREED_WRAPPERS.fetch_add(1, Ordering::Relaxed);
    // SAFETY: every parked wrapper here is a Box<[u64; 4]> leaked by `park_fake_wrapper`, and the
    // tie machine hands each one back once.
    drop(unsafe { Box::from_raw(mem.cast::<[u64; 4]>()) });
}

static HOST: TieHost = TieHost {
    free_cached: free_wrapper,
    release_kept: drop,
};

fn park_fake_wrapper(obj: &ObjAny) {
    tie::set_host(&HOST);
    let w = NonNull::new(Box::into_raw(Box::new([0u64; 4])).cast::<c_void>()).unwrap();
    tie::bind(obj, w).unwrap();
    tie::park(obj, w).unwrap();
    assert_eq!(tie::state(obj), TieState::Parked(w));
}

#[test]
fn chain_with_weak_references_and_parked_wrappers() {
    let _s = serial();
    let leak = LeakCheck::new();
    let n = iters(100_000, 1_000);
    let (head, order) = node_chain(n);
    // Weak references to every 7th node, a parked wrapper on every 5th.
    let mut weak: Vec<WeakRef<Node>> = Vec::new();
    let mut parked = 0;
    let mut cur = Some(head.clone());
    while let Some(node) = cur {
        if node.index % 7 == 0 {
            weak.push(node.downgrade());
        }
        if node.index % 5 == 0 {
            park_fake_wrapper(node.as_any());
            parked += 1;
        }
        cur = node.next.clone();
    }
    let freed_before = FREED_WRAPPERS.load(Ordering::Relaxed);
    assert!(weak.iter().all(|w| w.strong_count() == 1));
    in_small_thread(move || drop(head));
    assert_eq!(drops(&order), n);
    // Every node is dead, and every cached wrapper was released at death: the ones whose block
    // a weak reference keeps through `release_cached_at_death`, the others when freed.
    assert!(weak
        .iter()
        .all(|w| w.upgrade().is_none() && w.strong_count() == 0));
    assert_eq!(
        FREED_WRAPPERS.load(Ordering::Relaxed) - freed_before,
        parked
    );
    // Only the weakly referenced blocks remain, until their weak references go.
    assert_eq!(leak.extra_blocks(), weak.len() as isize);
    assert!(weak.iter().all(|w| w
        .tie_word()
        .load(std::sync::atomic::Ordering::Acquire)
        .is_null()));
    drop(weak);
    assert_eq!(leak.extra_blocks(), 0);
}

// ---------------------------------------------------------------- through the host

/// A host reference that is a boxed native handle: its release releases the object, as a host
/// wrapper's dealloc releases the native object it wraps.
unsafe fn release_boxed(p: NonNull<c_void>) {
    // SAFETY: made by `Box::into_raw` in `host_chain`, released once (HostHandle's contract).
    drop(unsafe { Box::from_raw(p.as_ptr().cast::<ObjAny>()) });
}

static BOXED: HostVTable = HostVTable {
    drop: release_boxed,
};

/// `test.trash.HostLink(next: any)`, whose `next` is a host handle owning the next record.
fn host_chain(n: usize) -> ObjAny {
    static T: OnceLock<u32> = OnceLock::new();
    let t = *T.get_or_init(|| {
        register_record_type(
            "test.trash.HostLink",
            None,
            vec![FieldSpec::new("next", FieldKind::Any)],
        )
        .unwrap()
    });
    let mut head = Record::new(t, vec![Value::None]).unwrap();
    for _ in 1..n {
        let p = NonNull::new(Box::into_raw(Box::new(head)).cast::<c_void>()).unwrap();
        // SAFETY: `p` stays valid until `release_boxed` takes it back, once; the vtable is
        // callable from any thread.
        let h = unsafe { HostHandle::from_raw(p, &BOXED) };
        head = Record::new(t, vec![Value::from(h)]).unwrap();
    }
    head
}

#[test]
fn chain_through_host_handles_in_a_small_thread() {
    let _s = serial();
    let leak = LeakCheck::new();
    let n = iters(100_000, 1_000);
    let head = host_chain(n);
    assert_eq!(leak.extra_blocks(), n as isize);
    in_small_thread(move || drop(head));
    assert_eq!(leak.extra_blocks(), 0);
}

// ---------------------------------------------------------------- thread exit

thread_local! {
    static HELD: std::cell::RefCell<Option<ObjAny>> = const { std::cell::RefCell::new(None) };
}

#[test]
fn chain_dropped_by_a_thread_local_destructor_at_thread_exit() {
    let _s = serial();
    let leak = LeakCheck::new();
    let n = iters(100_000, 1_000);
    let head = record_chain(n);
    in_small_thread(move || {
        HELD.with(|h| *h.borrow_mut() = Some(head));
        // A deep drop after that makes the trashcan keep a buffer in a thread-local registered
        // after HELD, so (destructors running in reverse order) it is gone when HELD's
        // destructor drops the chain: the drain then reserves a buffer of its own.
        drop(record_chain(1_000));
    });
    assert_eq!(leak.extra_blocks(), 0);
}

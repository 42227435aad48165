//! The trashcan: destruction of deep object graphs without deep recursion (the parent module's
//! docs, "Deep structures", describe the mechanism and its guarantees).
//!
//! On the object floor above `block` (whose [`finish`](super::block::finish) it runs for
//! deferred objects) and below `rc` (whose funnel, `destroy`, asks it through [`enter`]); uses
//! `header` for the count word. Upholds invariant 5: a deferred object is reachable only from
//! this thread's stack, and is destroyed once, by this thread.
//!
//! State, per thread: the nesting depth of destructions in progress and the stack of deferred
//! objects, in one thread-local without a destructor (so the fast path is a few instructions on
//! a `Cell`, and it is usable until the thread's very end, thread-local destructors included);
//! and the stack's
//! reserved buffer between drains, in a second thread-local (with a destructor, so the buffer is
//! freed with the thread; when it is gone, a drain reserves a buffer of its own).
//!
//! Under `--cfg loom` the trashcan is compiled out: [`enter`] always answers "destroy now" and
//! nothing is counted. Its state is purely thread-local and involves no atomics, so there is
//! nothing for loom to interleave; the models never nest destructions anywhere near
//! [`MAX_DEPTH`] (so no object would be deferred); and loom runs its threads as coroutines on one
//! OS thread, so a `std` thread-local would be shared by the modelled threads
//! (`loom::thread_local!` would not be, but it panics outside a model).

use core::marker::PhantomData;

/// The nesting depth at which a destruction that is about to start is deferred instead: at most
/// this many destructions are nested on a thread's stack (plus the host frames between them).
/// CPython's `PyTrash_UNWIND_LEVEL` was 50 too. Smaller under Miri, so that the tests' short
/// chains (which Miri can afford) exercise deferral.
#[cfg_attr(loom, allow(dead_code))]
pub(super) const MAX_DEPTH: u32 = if cfg!(miri) { 8 } else { 50 };

/// A destruction in progress: one level of nesting, given back when it is dropped (which, at the
/// bottom, destroys the deferred objects first).
pub(super) struct Nest {
    /// Thread-bound: the level belongs to this thread's count.
    _not_send: PhantomData<*const ()>,
}

const NEST: Nest = Nest {
    _not_send: PhantomData,
};

#[cfg(loom)]
/// Always "destroy now" (see the module docs).
///
/// # Safety
/// As in normal builds.
#[inline(always)]
pub(super) unsafe fn enter(
    _p: core::ptr::NonNull<super::header::ObjHeader>,
    _unique: bool,
) -> Option<Nest> {
    Some(NEST)
}

#[cfg(not(loom))]
pub(super) use imp::enter;

#[cfg(not(loom))]
mod imp {
    use super::super::block::{erased_drop_value, erased_free_block, finish};
    use super::super::header::{counts, Counts, ObjHeader};
    use super::{Nest, MAX_DEPTH, NEST};
    use crate::sync::Ordering::Relaxed;
    use core::cell::{Cell, RefCell};
    use core::mem::{self, ManuallyDrop};
    use core::ptr::NonNull;

    /// Entries the deferred stack reserves when it first needs room.
    const INITIAL: usize = 64;
    /// A buffer that grew beyond this many entries is freed when its drain ends instead of kept
    /// for the next one, so that one huge graph does not hold memory for the thread's lifetime.
    const RETAIN: usize = 4096;

    /// An object whose destruction was deferred: its strong count is 0, its value not dropped.
    #[derive(Clone, Copy)]
    struct Deferred {
        p: NonNull<ObjHeader>,
        /// No weak reference existed when the strong count reached 0 (`finish`'s `unique`).
        unique: bool,
    }

    /// The per-thread state. It has no destructor, so it stays accessible during the thread's
    /// thread-local destructors (which may drop deep graphs too); for the same reason `stack`
    /// never holds memory outside a drain: its buffer is parked in [`SPARE`] in between.
    struct Nesting {
        /// Destructions in progress on this thread (0: none, the bottom).
        depth: Cell<u32>,
        /// Whether objects were deferred since the bottom was last left.
        pending: Cell<bool>,
        /// The deferred objects. Borrowed only for a push or a pop, never across a destruction.
        stack: RefCell<ManuallyDrop<Vec<Deferred>>>,
        /// `stack[segment..]` were deferred during the current drained destruction (see `next`).
        segment: Cell<usize>,
    }

    std::thread_local! {
        static NESTING: Nesting = const {
            Nesting {
                depth: Cell::new(0),
                pending: Cell::new(false),
                stack: RefCell::new(ManuallyDrop::new(Vec::new())),
                segment: Cell::new(0),
            }
        };
        /// The stack's buffer between drains, reserved once per thread (freed with the thread:
        /// this one has a destructor, and after it ran a drain allocates a buffer of its own).
        static SPARE: Cell<Vec<Deferred>> = const { Cell::new(Vec::new()) };
    }

    #[cfg(test)]
    std::thread_local! {
        /// Objects deferred on this thread (the unit tests check that deferral happens).
        pub(super) static DEFERRALS: Cell<usize> = const { Cell::new(0) };
        /// Makes the deferred stack refuse to grow, as if memory were exhausted.
        pub(super) static FAIL_RESERVE: Cell<bool> = const { Cell::new(false) };
    }

    /// Starts a destruction of `p`: `Some(nest)` means "destroy it now" (one level deeper until
    /// `nest` is dropped), `None` that `p` was deferred: this thread's bottom destruction will
    /// destroy it, and the caller must not touch `p` again.
    ///
    /// # Safety
    /// `p`'s strong count reached 0 by the caller's release (or the caller holds its only
    /// handle, `unique`), and the caller is about to run its destruction (`block::finish`) with
    /// `unique`; on `None` that duty is handed over.
    #[inline(always)]
    pub(in crate::object) unsafe fn enter(p: NonNull<ObjHeader>, unique: bool) -> Option<Nest> {
        let deferred = NESTING.try_with(|n| {
            let d = n.depth.get();
            // SAFETY: forwarded from the caller.
            if d >= MAX_DEPTH && unsafe { deposit(n, p, unique) } {
                n.pending.set(true);
                return true;
            }
            // Past MAX_DEPTH only when the deposit failed: then the destruction runs inline.
            n.depth.set(d + 1);
            false
        });
        match deferred {
            Ok(true) => None,
            // Ok(false): nested. Err cannot happen (the key has no destructor); the destruction
            // would run inline, uncounted, and `Nest::drop` would find the key gone too.
            _ => Some(NEST),
        }
    }

    impl Drop for Nest {
        #[inline(always)]
        fn drop(&mut self) {
            let _ = NESTING.try_with(|n| {
                let d = n.depth.get() - 1;
                n.depth.set(d);
                if d == 0 && n.pending.get() {
                    drain(n);
                }
            });
        }
    }

    /// Pushes `p` on the deferred stack; false if there is no room and no memory for more, in
    /// which case the caller destroys `p` inline. Never aborts: the stack only grows through
    /// `try_reserve`, so `push` does not allocate.
    ///
    /// # Safety
    /// As for [`enter`].
    #[cold]
    #[inline(never)]
    unsafe fn deposit(n: &Nesting, p: NonNull<ObjHeader>, unique: bool) -> bool {
        // SAFETY: the block is alive: the strong refs' weak count is still held, or (unique) the
        // caller owns it exclusively.
        let c = unsafe { counts(p) };
        // The UNIQUE fast path destroys without a decrement: its count still reads UNIQUE.
        debug_assert!(
            Counts(c.load(Relaxed)).strong() == 0
                || (unique && Counts(c.load(Relaxed)).is_unique()),
            "trashcan: deposit of an object whose strong count is not 0"
        );
        let Ok(mut stack) = n.stack.try_borrow_mut() else {
            return false;
        };
        if stack.len() == stack.capacity() {
            if stack.capacity() == 0 {
                // The first deferral of a drain: the thread's reserved buffer (empty), if any.
                if let Ok(spare) = SPARE.try_with(Cell::take) {
                    **stack = spare;
                }
            }
            #[cfg(test)]
            if FAIL_RESERVE.with(Cell::get) && stack.len() == stack.capacity() {
                return false;
            }
            if stack.len() == stack.capacity() && stack.try_reserve(INITIAL).is_err() {
                return false;
            }
        }
        stack.push(Deferred { p, unique });
        if unique {
            // A deferred object reads strong 0 like every dead one (the drain asserts it).
            // Nobody can observe the store: no handle to a unique object exists.
            c.store(0, Relaxed);
        }
        #[cfg(test)]
        DEFERRALS.with(|d| d.set(d.get() + 1));
        true
    }

    /// The next object to destroy: the first one deferred by the drained destruction that just
    /// ended, else the next one deferred before it. The objects deferred during one destruction
    /// are on top of the stack in the order they were reached; reversing them before popping
    /// makes the drain depth-first in that order (the order the recursion would have taken).
    fn next(n: &Nesting) -> Option<Deferred> {
        let mut stack = n.stack.borrow_mut(); // never held across a destruction: cannot fail
        stack[n.segment.get()..].reverse();
        let x = stack.pop();
        n.segment.set(stack.len());
        x
    }

    /// Destroys the deferred objects, iteratively, from the bottom (depth 0). Each one is
    /// destroyed at depth 1, so the destructions it causes nest from there (inline up to
    /// `MAX_DEPTH`, deferred beyond) and never reach the bottom themselves: no recursion.
    #[cold]
    #[inline(never)]
    fn drain(n: &Nesting) {
        /// Back to the bottom when the drain ends, also by a panicking destructor: then the
        /// remaining objects are destroyed while unwinding (as drop glue goes on dropping the
        /// other fields when one panics; a second panic aborts).
        struct Bottom<'a>(&'a Nesting);
        impl Drop for Bottom<'_> {
            fn drop(&mut self) {
                run_all(self.0);
                end_drain(self.0);
            }
        }
        n.depth.set(1);
        let bottom = Bottom(n);
        run_all(n);
        mem::forget(bottom);
        end_drain(n);
    }

    /// Back at the bottom with an empty stack, whose buffer is parked for the next drain.
    fn end_drain(n: &Nesting) {
        n.depth.set(0);
        n.pending.set(false);
        let buffer = mem::take(&mut **n.stack.borrow_mut());
        if buffer.capacity() <= RETAIN {
            // Kept for the next drain (and freed right here if the key is already gone).
            let _ = SPARE.try_with(move |s| s.set(buffer));
        }
    }

    fn run_all(n: &Nesting) {
        while let Some(x) = next(n) {
            // SAFETY: an object on the stack is reachable from nowhere else (its strong count is
            // 0, and no handle to it exists) and its block is alive (as in `deposit`).
            let c = unsafe { counts(x.p) };
            debug_assert_eq!(
                Counts(c.load(Relaxed)).strong(),
                0,
                "trashcan: a deferred object's strong count is not 0"
            );
            // SAFETY: `deposit` took over the duty to destroy `x.p` with `x.unique`, once; the
            // erased halves call the header's deleter, which matches the object's layout
            // (invariant 3), so they do what the caller's typed halves would have done.
            unsafe { finish(x.p, x.unique, erased_drop_value, erased_free_block) };
        }
    }

    /// The current nesting depth (for tests).
    #[cfg(test)]
    pub(super) fn depth() -> u32 {
        NESTING.with(|n| n.depth.get())
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::imp::{depth, DEFERRALS, FAIL_RESERVE};
    use super::MAX_DEPTH;
    use crate::{object_type, ObjRef};
    use std::cell::{Cell, RefCell};

    std::thread_local! {
        static MAX_SEEN: Cell<u32> = const { Cell::new(0) };
        static ORDER: RefCell<Vec<u32>> = const { RefCell::new(Vec::new()) };
    }

    /// A tree node that records, when dropped, its label and the nesting depth.
    struct Node {
        label: u32,
        #[allow(dead_code)] // held for its drop
        kids: Vec<ObjRef<Node>>,
    }
    object_type!(Node, "trashcan.unit.Node");

    impl Drop for Node {
        fn drop(&mut self) {
            MAX_SEEN.with(|m| m.set(m.get().max(depth())));
            ORDER.with(|o| o.borrow_mut().push(self.label));
        }
    }

    /// A chain of `n` nodes labelled `base`, `base + 1`, ... from the head.
    fn chain(n: u32, base: u32) -> ObjRef<Node> {
        let mut head = ObjRef::new(Node {
            label: base + n - 1,
            kids: Vec::new(),
        });
        for i in (0..n - 1).rev() {
            head = ObjRef::new(Node {
                label: base + i,
                kids: vec![head],
            });
        }
        head
    }

    fn reset() {
        MAX_SEEN.with(|m| m.set(0));
        ORDER.with(|o| o.borrow_mut().clear());
        DEFERRALS.with(|d| d.set(0));
    }

    #[test]
    fn chain_is_destroyed_in_order_with_bounded_nesting() {
        reset();
        let n = 10 * MAX_DEPTH;
        drop(chain(n, 0));
        assert!(DEFERRALS.with(Cell::get) >= 9, "deferral happened");
        assert!(MAX_SEEN.with(Cell::get) <= MAX_DEPTH);
        assert_eq!(depth(), 0);
        // A chain's destructors run in chain order, as they would inline.
        let order = ORDER.with(|o| o.borrow().clone());
        assert_eq!(order, (0..n).collect::<Vec<_>>());
    }

    #[test]
    fn deferred_siblings_are_destroyed_depth_first_in_order() {
        reset();
        // A node whose destruction starts at depth MAX_DEPTH - 1 (below a spine of MAX_DEPTH - 1
        // nodes) holding three chains: their heads are all deferred, and each chain (itself
        // deferred in pieces) is destroyed before the next one starts, in field order.
        let len = 3 * MAX_DEPTH;
        let kids = (0..3).map(|k| chain(len, 1000 * (k + 1))).collect();
        let mut head = ObjRef::new(Node { label: 0, kids });
        for label in 1..MAX_DEPTH {
            head = ObjRef::new(Node {
                label,
                kids: vec![head],
            });
        }
        drop(head);
        assert!(DEFERRALS.with(Cell::get) >= 3 + 3 * 2);
        assert!(MAX_SEEN.with(Cell::get) <= MAX_DEPTH);
        let order = ORDER.with(|o| o.borrow().clone());
        let spine: Vec<u32> = (0..MAX_DEPTH).rev().collect();
        let chains = (1..=3).flat_map(|k| (0..len).map(move |i| 1000 * k + i));
        assert_eq!(order, spine.into_iter().chain(chains).collect::<Vec<_>>());
    }

    #[test]
    fn without_memory_for_the_stack_destruction_runs_inline() {
        reset();
        // Use up the stack's reserve in a thread of its own (its stack starts unreserved).
        std::thread::spawn(|| {
            FAIL_RESERVE.with(|f| f.set(true));
            let n = 4 * MAX_DEPTH;
            drop(chain(n, 0));
            assert_eq!(DEFERRALS.with(Cell::get), 0, "nothing could be deferred");
            assert!(
                MAX_SEEN.with(Cell::get) >= n - 1,
                "the recursion ran inline"
            );
            assert_eq!(depth(), 0);
            let order = ORDER.with(|o| o.borrow().clone());
            assert_eq!(order, (0..n).collect::<Vec<_>>());
        })
        .join()
        .unwrap();
    }
}

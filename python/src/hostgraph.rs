//! Floor 1: the Python side of the cycle collector's graph (`tether_runtime::CycleHost`): the
//! Python objects that tracked native objects hold (through `object` fields and containers),
//! and what those reach, so that cycles through Python objects are collected too:
//! `self.h = Holder(self.on_event)` (native → bound method → wrapper → native), a Python list in
//! an `object` field that holds its owner's wrapper.
//!
//! [`host_graph`] runs in the collector's step 2, with every tracked object frozen and the GIL
//! held: it walks the Python objects reachable from the handles with their types'
//! `tp_traverse`, as CPython's collector does, and reports per object its references from
//! outside the graph (its count, less the references from other objects of the graph and from
//! handles whose every clone is in a tracked object). A tether wrapper is not traversed: its
//! one reference is to its native object (an edge into the native graph).
//!
//! Invariants:
//! 1. Only with the GIL held on a GIL build: then nothing changes a Python count while the
//!    collector runs (a native thread that drops a handle attaches first, and waits). On a
//!    free-threaded build there is no such moment short of stopping the world: no graph (the
//!    Python objects are leaves held from outside, and such cycles are not collected there).
//! 2. A wrapper with weak references counts as referenced from outside: its weak references'
//!    callbacks could reach it while the collector takes its native object apart.
//! 3. [`hold`] takes a reference to every garbage Python object before any Python code runs;
//!    [`finalize`] runs their finalizers (PEP 442: once per object; `tp_finalize` of a GC
//!    object is not called again) and reports a resurrection when any count grew since;
//!    [`release`] gives the references back after the clearing.

use crate::pytypes::{is_wrapper, rec_load, Wrapper};
use core::ffi::{c_int, c_void};
use core::ptr::NonNull;
use pyo3::ffi;
use std::collections::HashMap;
use tether_runtime::{HostEdges, HostGraph};

/// The graph being built by one [`host_graph`] call.
struct Builder {
    graph: HostGraph,
    index: HashMap<usize, u32>,
    todo: Vec<u32>,
}

impl Builder {
    /// The node of `p`, added (with its whole count as outside references) if new.
    ///
    /// # Safety
    /// `p` is a live object; GIL held.
    unsafe fn node(&mut self, p: *mut ffi::PyObject) -> u32 {
        if let Some(&k) = self.index.get(&(p as usize)) {
            return k;
        }
        let k = self.graph.nodes.len() as u32;
        self.index.insert(p as usize, k);
        // SAFETY: live (caller); NonNull: CPython never visits null.
        self.graph
            .nodes
            .push(unsafe { NonNull::new_unchecked(p.cast::<c_void>()) });
        // SAFETY: live (caller), GIL held: a stable count.
        let mut outside = unsafe { ffi::Py_REFCNT(p) } as i64;
        // SAFETY: as above.
        if unsafe { has_weak_references(p) } {
            outside += 1; // invariant 2
        }
        self.graph.outside.push(outside);
        self.todo.push(k);
        k
    }
}

/// Whether `p` has weak references (invariant 2). Read in place, with no call into Python (the
/// collector holds every tracked object frozen: Python code, or a collection an allocation
/// could start, must not run here): a wrapper's list directly; another object's through its
/// type's `tp_weaklistoffset`, which on 3.12+ also locates the list of "managed" weak
/// references in front of the object. A type object counts as having some (the static types'
/// lists live elsewhere).
///
/// # Safety
/// `p` is a live object; GIL held.
unsafe fn has_weak_references(p: *mut ffi::PyObject) -> bool {
    // SAFETY: forwarded (caller): the type is alive, and an object of a type with a non-zero
    // offset has its list pointer there.
    unsafe {
        if is_wrapper(p) {
            return !(*p.cast::<Wrapper>()).weaklist.is_null();
        }
        let offset = (*ffi::Py_TYPE(p)).tp_weaklistoffset;
        if offset == 0 {
            return false;
        }
        if ffi::PyType_Check(p) != 0 {
            return true;
        }
        !(*p.cast::<u8>().offset(offset).cast::<*mut ffi::PyObject>()).is_null()
    }
}

/// The context `visit` gets: the builder and the node being traversed.
struct Visit<'a> {
    b: &'a mut Builder,
    from: u32,
}

/// `tp_traverse`'s visitor: an edge to each object that can hold references (a GC object or a
/// wrapper); others hold none and are left out.
unsafe extern "C" fn visit(child: *mut ffi::PyObject, arg: *mut c_void) -> c_int {
    // SAFETY: `arg` is the `Visit` passed to tp_traverse below; `child` is a live object the
    // traversed one references; GIL held.
    unsafe {
        let v = &mut *arg.cast::<Visit<'_>>();
        if child.is_null() || !(ffi::PyObject_IS_GC(child) != 0 || is_wrapper(child)) {
            return 0;
        }
        let k = v.b.node(child);
        v.b.graph.outside[k as usize] -= 1;
        v.b.graph.edges.push((v.from, k));
    }
    0
}

/// `CycleHost::host_graph` (module docs).
pub fn host_graph(e: &HostEdges<'_>) -> Option<HostGraph> {
    if cfg!(Py_GIL_DISABLED) {
        return None; // invariant 1
    }
    // SAFETY: a query, allowed from any thread.
    if unsafe { ffi::PyGILState_Check() } != 1 {
        return None;
    }
    let mut b = Builder {
        graph: HostGraph::default(),
        index: HashMap::new(),
        todo: Vec::new(),
    };
    for &(p, inside) in e.handles {
        // SAFETY: a handle's object is alive (the handle holds it); GIL held.
        let k = unsafe { b.node(p.as_ptr().cast()) };
        b.graph.handle_node.push(k);
        if inside {
            b.graph.outside[k as usize] -= 1;
        }
    }
    while let Some(k) = b.todo.pop() {
        let p = b.graph.nodes[k as usize].as_ptr().cast::<ffi::PyObject>();
        // SAFETY: nodes are alive (referenced from the graph, nothing runs meanwhile).
        unsafe {
            if is_wrapper(p) {
                if let Some(rec) = NonNull::new(rec_load(p)) {
                    b.graph.to_native.push((k, rec));
                }
                continue; // its native object's references are the native graph's
            }
            if ffi::PyObject_IS_GC(p) == 0 {
                continue;
            }
            if let Some(traverse) = (*ffi::Py_TYPE(p)).tp_traverse {
                let mut v = Visit { b: &mut b, from: k };
                traverse(p, visit, (&mut v as *mut Visit<'_>).cast());
            }
        }
    }
    Some(b.graph)
}

/// The first half of `CycleHost::prepare` (invariant 3): takes a reference to each garbage
/// Python object, before any Python code runs, and returns their counts after it.
/// Called with the GIL held (the graph exists only then).
pub fn hold(hosts: &[NonNull<c_void>]) -> Vec<ffi::Py_ssize_t> {
    // SAFETY: GIL held (invariant 1); each object is alive: the garbage natives hold them, and
    // nothing ran since the graph was made.
    unsafe {
        for p in hosts {
            ffi::Py_INCREF(p.as_ptr().cast());
        }
        hosts
            .iter()
            .map(|p| ffi::Py_REFCNT(p.as_ptr().cast()))
            .collect()
    }
}

/// The second half: runs the objects' finalizers (`tp_finalize`, once per GC object, PEP 442;
/// errors reported as unraisable) and says whether any count grew since [`hold`]: whatever
/// ran in between (finalizers, weak reference callbacks) may have resurrected them.
pub fn finalize(hosts: &[NonNull<c_void>], before: &[ffi::Py_ssize_t]) -> bool {
    // SAFETY: GIL held; each object is alive (held since `hold`).
    unsafe {
        for p in hosts {
            ffi::PyObject_CallFinalizer(p.as_ptr().cast());
        }
        hosts
            .iter()
            .zip(before)
            .any(|(p, &b)| ffi::Py_REFCNT(p.as_ptr().cast()) > b)
    }
}

/// `CycleHost::release`: gives back the references [`hold`] took.
pub fn release(hosts: &[NonNull<c_void>]) {
    for p in hosts {
        // SAFETY: prepare took this reference, with the GIL, which is still held.
        unsafe { ffi::Py_DECREF(p.as_ptr().cast()) };
    }
}

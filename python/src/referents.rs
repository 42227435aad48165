//! Floor 7: what CPython's GC tools see of a tether object: `tp_traverse` for the classes whose
//! objects may hold Python objects, so `gc.get_referents(obj)` lists them (leak hunters'
//! first tool).
//!
//! A class is a GC class (`Py_TPFLAGS_HAVE_GC`) when a field can hold a Python object (an
//! `object`/`Any` field, or one whose `Optional[...]` is), or a container (whose elements may),
//! and so are `tether.List` and `tether.Dict` ([`holds_python_objects`]). Scalar and tether-typed
//! fields hold native values only: such classes stay non-GC, and their wrappers keep their
//! 32-byte blocks (GC classes' have the 16-byte `PyGC_Head` in front on GIL builds:
//! `crate::pool`, invariant 4).
//!
//! Invariants:
//! 1. Wrappers are never tracked by the collector (nothing calls `PyObject_GC_Track`), so
//!    CPython calls [`tp_traverse`] only on request (`gc.get_referents`), never during a
//!    collection, and what it visits cannot change what a collection decides. (Tracking them
//!    would need the visits to be exactly the references the wrapper owns; a native object
//!    shared with other native holders, or a host handle shared by clones, breaks that: the
//!    cycle-collection issue's design.)
//! 2. A traversal runs no Python code and never unwinds: it clones the Python objects it finds
//!    (host handles: no GIL traffic) under each record's lock, then visits them.

use crate::class;
use crate::native;
use crate::pyhandle::PY_HANDLE;
use core::ffi::{c_int, c_void};
use pyo3::ffi;
use std::panic::{catch_unwind, AssertUnwindSafe};
use tether_runtime::containers::{List, Map};
use tether_runtime::types::FieldKind;
use tether_runtime::{HostHandle, ObjAny, Object, Value};

/// How deep nested containers are followed (`list[list[object]]`: 2).
const MAX_NESTING: usize = 8;

/// Whether a field kind can hold a Python object.
fn kind_holds_python(kind: &FieldKind) -> bool {
    match kind {
        FieldKind::Any => true,
        FieldKind::Optional(k) => kind_holds_python(k),
        _ => false,
    }
}

/// Whether objects of a class with these fields (or of the native container type
/// `type_index`) may hold Python objects: then the class is a GC class.
pub fn holds_python_objects<'a>(
    fields: impl IntoIterator<Item = &'a class::FieldDef>,
    type_index: u32,
) -> bool {
    type_index == List::type_index()
        || type_index == Map::type_index()
        || fields
            .into_iter()
            .any(|f| kind_holds_python(&f.kind) || f.container.is_some())
}

/// Adds the Python objects `v` holds (itself, or a container's elements) to `out`.
fn collect_value(v: &Value, out: &mut Vec<HostHandle>, depth: usize) {
    match v {
        Value::Opaque(h) if core::ptr::eq(h.vtable(), &PY_HANDLE) => out.push(h.clone()),
        Value::Object(o) if depth < MAX_NESTING => collect_container(o, out, depth + 1),
        _ => {}
    }
}

/// Adds the Python objects among the elements of `o`, if it is a native container.
fn collect_container(o: &ObjAny, out: &mut Vec<HostHandle>, depth: usize) {
    if let Some(l) = o.downcast_ref::<List>() {
        // The items are cloned under the list's lock; nested lists are read after it.
        for v in l.snapshot() {
            collect_value(&v, out, depth);
        }
    } else if let Some(m) = o.downcast_ref::<Map>() {
        for i in 0..m.len() {
            if let Some((k, v)) = m.entry_at(i) {
                collect_value(&k.to_value(), out, depth);
                collect_value(&v, out, depth);
            }
        }
    }
}

/// `tp_traverse` of the GC classes (module docs).
///
/// # Safety
/// Called by CPython (attached) with a live instance of a tether GC class.
pub unsafe extern "C" fn tp_traverse(
    o: *mut ffi::PyObject,
    visit: ffi::visitproc,
    arg: *mut c_void,
) -> c_int {
    // SAFETY: forwarded (CPython's contract); a panic is contained here (invariant 2).
    catch_unwind(AssertUnwindSafe(|| unsafe { traverse(o, visit, arg) })).unwrap_or(0)
}

/// See [`tp_traverse`].
///
/// # Safety
/// As there.
unsafe fn traverse(o: *mut ffi::PyObject, visit: ffi::visitproc, arg: *mut c_void) -> c_int {
    // SAFETY: `o` is a live tether wrapper (caller); an empty one has no referents.
    let Ok(obj) = (unsafe { native::counted(o) }) else {
        return 0;
    };
    let mut found = Vec::new();
    // SAFETY: `o` is live (caller), so its type is.
    let info = unsafe { class::info_of(ffi::Py_TYPE(o)) };
    if obj.downcast_ref::<List>().is_some() || obj.downcast_ref::<Map>().is_some() {
        collect_container(&obj, &mut found, 1);
    } else if let Ok(info) = info {
        for f in info.fields() {
            if kind_holds_python(&f.kind) || f.container.is_some() {
                if let Ok(v) = native::load_field(&obj, f.slot()) {
                    collect_value(&v, &mut found, 0);
                }
            }
        }
    }
    for h in &found {
        // SAFETY: `h` holds a strong reference to this Python object for as long as the visit
        // runs (our clone).
        let rc = unsafe { visit(h.as_ptr().as_ptr().cast(), arg) };
        if rc != 0 {
            return rc;
        }
    }
    0
}

//! Floor 6b: two-phase restore, so that typed cycles round-trip through pickle and deepcopy.
//!
//! Unpickling (or deep-copying) `a` with `a.next = b; b.prev = a` makes `a` first, empty (the
//! reconstructor), then restores `b`, whose state names `a` before `a` has any native object.
//! The first phase ([`ClassInfo::restore`](crate::class::ClassInfo::restore)) stores `None` in
//! such a field, or leaves a strict field unresolved (a null reference slot or a `None` value
//! slot, read as `None`: `RecordBuilder::set_unresolved`), and lists it (only fields that will
//! accept the object: [`FieldDef::defers`]); [`defer`] records "when `a` is initialized, store
//! it into `b.prev`"; the second phase ([`complete`]), run when `a`'s own `__setstate__` or
//! `__init__` finishes, does the stores. A self-loop (`a.next = a`) is deferred and completed
//! in the same call.
//!
//! Invariants (all under the GIL):
//! 1. Pending entries are grouped by source (the object they wait for), each group holding one
//!    strong reference to its source and each entry one to its target (the object restored) and
//!    a counted handle of the target's native object, so no address can be reused while it
//!    waits.
//! 2. A group is removed before its stores. An entry's store happens only if its target still
//!    holds the same native object, the field still reads `None` (nothing assigned it since),
//!    and the source's object passes the field's checks (the runtime kind, and a forward
//!    reference's class): the class a wrapper had when it was deferred may have changed.
//! 3. A group whose source nobody else holds (the unpickling failed or was abandoned) is
//!    dropped by [`sweep`], run before each full collection: its targets keep `None` in the
//!    field (or the unresolved slot of a strict field, which reads as `None` and can be
//!    assigned).

use crate::class::{ClassInfo, FieldDef};
use crate::native;
use core::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use pyo3::ffi;
use pyo3::prelude::*;
use std::collections::HashMap;
use std::sync::Mutex;
use tether_runtime::{ObjAny, Value};

/// One field waiting for a source.
struct Entry {
    target: Py<PyAny>,
    /// The native object `target` held when the entry was made (invariant 2).
    target_native: ObjAny,
    field: &'static FieldDef,
}

/// The fields waiting for one source (invariant 1).
struct Group {
    source: Py<PyAny>,
    entries: Vec<Entry>,
}

/// The pending groups by source address. Touched only with the GIL held, and never across
/// Python code (each use takes groups out or puts them in, then releases the lock), so the lock
/// is never contended and never held while waiting for the GIL.
static PENDING: Mutex<Option<HashMap<usize, Group>>> = Mutex::new(None);

/// How many groups wait (kept with the map): `complete`, run after every `__init__` and
/// `__setstate__`, skips the lock when it is 0.
static GROUPS: AtomicUsize = AtomicUsize::new(0);

fn with_pending<R>(f: impl FnOnce(&mut HashMap<usize, Group>) -> R) -> R {
    // A poisoned lock still guards a consistent map (every use is an insert or a removal).
    let mut g = PENDING.lock().unwrap_or_else(|e| e.into_inner());
    let map = g.get_or_insert_with(HashMap::new);
    let r = f(map);
    GROUPS.store(map.len(), Relaxed);
    r
}

/// Records the first phase's deferred fields of `target` (just initialized) for completion
/// when each source is initialized.
///
/// # Safety
/// `target` is a live, initialized tether wrapper of class `info`; GIL held.
pub unsafe fn defer(
    py: Python<'_>,
    target: *mut ffi::PyObject,
    info: &ClassInfo,
    deferred: Vec<(usize, Bound<'_, PyAny>)>,
) -> PyResult<()> {
    if deferred.is_empty() {
        return Ok(());
    }
    // SAFETY: `target` is initialized (caller).
    let target_native = unsafe { native::counted(target) }?;
    // SAFETY: `target` is live (caller).
    let target_ref: Py<PyAny> = unsafe { Py::from_borrowed_ptr(py, target) };
    with_pending(|p| {
        for (i, source) in deferred {
            let group = p.entry(source.as_ptr() as usize).or_insert_with(|| Group {
                source: source.clone().unbind(),
                entries: Vec::new(),
            });
            group.entries.push(Entry {
                target: target_ref.clone_ref(py),
                target_native: target_native.clone(),
                field: info.fields[i],
            });
        }
    });
    Ok(())
}

/// The second phase for `source`, whose native object was just installed: stores it into every
/// field that waited for it (invariant 2).
///
/// # Safety
/// `source` is a live tether wrapper; GIL held.
pub unsafe fn complete(py: Python<'_>, source: *mut ffi::PyObject) -> PyResult<()> {
    if GROUPS.load(Relaxed) == 0 {
        return Ok(());
    }
    let Some(group) = with_pending(|p| p.remove(&(source as usize))) else {
        return Ok(());
    };
    // SAFETY: `source` is live (caller) and was just initialized.
    let value = unsafe { native::counted(source) }?;
    for e in &group.entries {
        // SAFETY: the entry's reference keeps the target alive; it is a tether wrapper.
        if !unsafe { native::still_holds(e.target.as_ptr(), &e.target_native) } {
            continue; // moved out or re-initialized since: nothing to complete
        }
        store(py, &e.target_native, e.field, &value)?;
    }
    drop(group); // outside the lock: releasing the references may run Python code
    Ok(())
}

/// Stores `value` into `field` of `target` if the field still reads `None` and `value` passes
/// the field's checks (invariant 2).
fn store(py: Python<'_>, target: &ObjAny, field: &FieldDef, value: &ObjAny) -> PyResult<()> {
    if native::load_field(target, field.slot())? != Value::None {
        return Ok(()); // assigned since the first phase: that assignment stands
    }
    let v = Value::Object(value.clone());
    let fits = field.kind.check(&v).is_ok()
        && field
            .forward
            .as_ref()
            .is_none_or(|f| f.check(py, &v).is_ok());
    if !fits {
        return Ok(()); // the object's class changed while it was restored: the field keeps None
    }
    let old = native::store_field(target, field.slot(), v)?;
    drop(old); // None: the first phase stored it
    Ok(())
}

/// Drops the groups whose source nobody but this map holds (invariant 3); returns how many
/// fields stop waiting.
pub fn sweep(_py: Python<'_>) -> usize {
    let dead: Vec<Group> = with_pending(|p| {
        let dead_keys: Vec<usize> = p
            .iter()
            // SAFETY: the group's reference keeps the source alive; reading a live object's
            // reference count under the GIL.
            .filter(|(_, g)| unsafe { ffi::Py_REFCNT(g.source.as_ptr()) } <= 1)
            .map(|(&k, _)| k)
            .collect();
        dead_keys.iter().filter_map(|k| p.remove(k)).collect()
    });
    // Dropped outside the lock: releasing them may run Python code (a class dealloc).
    dead.iter().map(|g| g.entries.len()).sum()
}

/// How many fields wait (for tests).
pub fn pending() -> usize {
    with_pending(|p| p.values().map(|g| g.entries.len()).sum())
}

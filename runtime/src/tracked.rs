//! The objects the cycle collector scans ([`crate::cycles`]): every live object whose type can
//! hold references to objects (a record type with object-capable fields, a [`List`] or [`Map`]),
//! in one registry. Objects of types that cannot form cycles (scalar fields only, weak
//! references only, Rust types other than the containers) are never in it, cost nothing here,
//! and are never scanned.
//!
//! The registry is a vector of entries; each tracked object keeps its own index in a word of
//! its own (records: the allocator header's owner word, which their deleter does not need, or
//! with the `narrow-header` feature a hidden slot of their layout; the containers: a field), so
//! entering, leaving and the collector's lookups are O(1) with no hashing. Records enter when
//! they first hold a reference: an object that holds none cannot be part of a cycle, so leaves
//! never enter at all.
//!
//! Floor 3 (beside `tie`): uses `crate::object` (headers).
//!
//! Invariants:
//! 1. An object is in the registry from the end of its construction until its `DropValue`
//!    begins (its strong count reached 0): entered by [`track`], left by [`untrack`], both under
//!    the registry's lock. Its slot holds its index while it is in, [`UNTRACKED`] otherwise;
//!    slots change only under the lock (a removal moves the last entry into the hole and
//!    updates that entry's slot).
//! 2. While a thread holds the lock ([`lock`]), no tracked object's block is freed: an object's
//!    `DropValue` must first take the lock to leave. So the collector may read the header, the
//!    counts, the slots and (under each object's own lock) the references of every object it
//!    lists, counting none; an object it finds with strong count 0 is being destroyed by the
//!    thread waiting for the lock.
//! 3. Nothing run under the lock allocates or frees tracked objects (it would wait for itself).
//!
//! [`List`]: crate::containers::List
//! [`Map`]: crate::containers::Map

use crate::object::ObjHeader;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicPtr, Ordering::Relaxed};
use std::sync::{Mutex, MutexGuard};

/// A slot's value when its object is not in the registry.
pub(crate) const UNTRACKED: usize = usize::MAX;

/// An index slot: a pointer-sized word holding the index as an address without provenance
/// (records use their owner word, which their deleter does not need: `object::FLAG_RECORD`).
pub(crate) type Slot = AtomicPtr<()>;

fn load(slot: &Slot) -> usize {
    slot.load(Relaxed).addr()
}

fn store(slot: &Slot, i: usize) {
    slot.store(core::ptr::without_provenance_mut(i), Relaxed);
}

/// Initializes `slot` to "not tracked".
pub(crate) fn init(slot: &Slot) {
    store(slot, UNTRACKED);
}

/// One tracked object: the object and its index slot.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Entry {
    pub(crate) obj: NonNull<ObjHeader>,
    slot: NonNull<Slot>,
}

// SAFETY: the registry only stores the pointers; whoever dereferences one does so under
// invariant 2.
unsafe impl Send for Entry {}

/// The tracked objects (invariant 1).
pub(crate) type Registry = Vec<Entry>;

static REGISTRY: Mutex<Registry> = Mutex::new(Vec::new());

/// The registry, locked (invariant 2). A poisoned lock still guards a consistent list (each use
/// is one insertion or removal with its slot updates, or a read).
pub(crate) fn lock() -> MutexGuard<'static, Registry> {
    REGISTRY.lock().unwrap_or_else(|e| e.into_inner())
}

/// Enters the live object `obj`, whose index slot is `slot`, unless it is in already
/// (invariant 1). Records enter when they first hold a reference (an object that holds none
/// cannot be part of a cycle); containers when they are made.
///
/// # Safety
/// `slot` is `obj`'s index slot (initialized by [`init`]) and lives as long as `obj`'s value;
/// the caller holds a reference to `obj` and no object lock (invariant 3's lock order).
pub(crate) unsafe fn track(obj: NonNull<ObjHeader>, slot: &Slot) {
    if load(slot) != UNTRACKED {
        return; // in already: only its own untrack takes it out, at its death
    }
    let mut r = lock();
    if load(slot) != UNTRACKED {
        return;
    }
    store(slot, r.len());
    r.push(Entry {
        obj,
        slot: NonNull::from(slot),
    });
}

/// Removes the object whose index slot is `slot`, whose `DropValue` begins (invariant 1).
/// Nothing happens if it is not tracked (a container value dropped outside an object).
pub(crate) fn untrack(slot: &Slot) {
    // The object is dying: nobody tracks it concurrently, so an UNTRACKED read is final; an
    // index may be stale (a removal moving us), and is read again under the lock.
    if load(slot) == UNTRACKED {
        return;
    }
    let mut r = lock();
    let i = load(slot);
    debug_assert!(
        r[i].slot == NonNull::from(slot),
        "a tracked slot out of place"
    );
    r.swap_remove(i);
    if let Some(moved) = r.get(i) {
        // SAFETY: a tracked object's slot lives as long as it is tracked (track's contract).
        store(unsafe { moved.slot.as_ref() }, i);
    }
    store(slot, UNTRACKED);
    if r.is_empty() {
        *r = Vec::new(); // nothing tracked: the buffer goes too (a program that made no cycles
                         // since leaves nothing behind)
    } else if r.capacity() > 64 && r.len() < r.capacity() / 4 {
        let half = r.capacity() / 2;
        r.shrink_to(half);
    }
}

/// The index of the tracked object `obj` whose slot is `slot`, if it is tracked (the caller
/// holds the lock `r` came from).
pub(crate) fn index_of(r: &Registry, obj: NonNull<ObjHeader>, slot: &Slot) -> Option<usize> {
    let i = load(slot);
    (i < r.len() && r[i].obj == obj).then_some(i)
}

/// How many objects are tracked now.
pub fn tracked_objects() -> usize {
    lock().len()
}

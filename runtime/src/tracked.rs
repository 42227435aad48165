//! The objects the cycle collector scans ([`crate::cycles`]): every live object whose type can
//! hold references to objects (a record type with object-capable fields, a [`List`] or [`Map`]
//! whose elements can be objects), in one registry. Objects of types that cannot form cycles
//! (scalar fields only, weak references only, Rust types other than the containers) are never
//! in it, cost nothing here, and are never scanned.
//!
//! Floor 3 (beside `tie`): uses `crate::object` (headers and the count word's `DOOMED` flag).
//!
//! Invariants:
//! 1. An object is in the registry from the end of its construction until its `DropValue`
//!    begins (its strong count reached 0): entered by [`track`], left by [`untrack`], both under
//!    the registry's lock.
//! 2. While a thread holds the lock ([`lock`]), no tracked object's block is freed: an object's
//!    `DropValue` must first take the lock to leave. So the collector may read the header, the
//!    counts and (under each object's own lock) the references of every object it lists,
//!    counting none; an object it finds with strong count 0 is being destroyed by the thread
//!    waiting for the lock.
//! 3. Nothing run under the lock allocates or frees tracked objects (it would wait for itself).
//!
//! [`List`]: crate::containers::List
//! [`Map`]: crate::containers::Map

use crate::object::{ObjBox, ObjHeader};
use core::hash::{BuildHasherDefault, Hasher};
use core::ptr::NonNull;
use indexmap::IndexSet;
use std::sync::{Mutex, MutexGuard};

/// A hasher for addresses: one multiplication (addresses are distinct and well spread above
/// their low bits, which the rotation moves up).
#[derive(Default)]
pub(crate) struct AddrHasher(u64);

impl Hasher for AddrHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
        }
    }
    fn write_usize(&mut self, n: usize) {
        self.0 = (n as u64)
            .rotate_right(4)
            .wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

/// A tracked object's pointer, compared and hashed by address.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Tracked(pub(crate) NonNull<ObjHeader>);

impl PartialEq for Tracked {
    fn eq(&self, other: &Self) -> bool {
        self.0 == other.0
    }
}
impl Eq for Tracked {}
impl core::hash::Hash for Tracked {
    fn hash<H: Hasher>(&self, h: &mut H) {
        h.write_usize(self.0.as_ptr() as usize);
    }
}
// SAFETY: the registry only stores and compares the pointers; whoever dereferences one does so
// under invariant 2.
unsafe impl Send for Tracked {}

/// The tracked objects (an `IndexSet`: dense indices for the collector's tables, O(1)
/// insertion and removal).
pub(crate) type Registry = IndexSet<Tracked, BuildHasherDefault<AddrHasher>>;

static REGISTRY: Mutex<Registry> = Mutex::new(IndexSet::with_hasher(BuildHasherDefault::new()));

/// The registry, locked (invariant 2). A poisoned lock still guards a consistent set (each use
/// is one insertion or removal, or a read).
pub(crate) fn lock() -> MutexGuard<'static, Registry> {
    REGISTRY.lock().unwrap_or_else(|e| e.into_inner())
}

/// Enters the just-built object `p` (invariant 1).
pub(crate) fn track(p: NonNull<ObjHeader>) {
    lock().insert(Tracked(p));
}

/// Removes the object `p`, whose `DropValue` begins (invariant 1). Removing an address that is
/// not there does nothing (a container value dropped outside an object).
pub(crate) fn untrack(p: NonNull<ObjHeader>) {
    lock().swap_remove(&Tracked(p));
}

/// [`untrack`] for the value `v` of a Rust object (`ObjBox<T>`): a traced type's `Drop` calls
/// it first thing. A value that is not in an object (dropped before it was boxed) is not
/// tracked, and nothing happens.
pub(crate) fn untrack_value<T>(v: &T) {
    // Only compared, never dereferenced: the address of the header in front of the value.
    let at = (v as *const T)
        .cast::<u8>()
        .wrapping_sub(core::mem::offset_of!(ObjBox<T>, value))
        .cast::<ObjHeader>()
        .cast_mut();
    if let Some(p) = NonNull::new(at) {
        lock().swap_remove(&Tracked(p));
    }
}

/// How many objects are tracked now.
pub fn tracked_objects() -> usize {
    lock().len()
}

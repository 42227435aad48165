//! [`HostHandle`]: an opaque reference-counted host object, and the [`HostVTable`] through which
//! the runtime releases it.
//!
//! Floor 0 (see "Layers" in the crate docs): uses no other module of the crate.
//!
//! Invariant: every [`HostHandle`] clone shares one `HostRef`, which owns exactly one host
//! reference and releases it once, when the last clone is dropped (`from_raw`'s contract makes
//! that release callable from any thread). Cloning never calls the host.

use core::ffi::c_void;
use core::fmt;
use core::ptr::NonNull;
use std::sync::Arc;

/// How the runtime releases a host object: the host's own reference counting.
///
/// `drop` receives the handle's pointer once, when the last clone of a [`HostHandle`] goes. It
/// may be called from any thread that drops a `Value` holding the handle (a GIL-based host
/// acquires its lock inside it if needed, or leaks the reference when it cannot, e.g. after the
/// host's interpreter was finalized). It must not unwind.
///
/// There is no `clone` entry: cloning a handle never calls the host (see [`HostHandle`]).
#[derive(Debug)]
pub struct HostVTable {
    /// Releases the host reference (called when the last clone of a `HostHandle` is dropped).
    pub drop: unsafe fn(NonNull<c_void>),
}

/// An opaque host object (e.g. a `PyObject*`): one host reference, shared natively by every
/// clone of the handle and released once, through its [`HostVTable`], when the last clone goes.
///
/// Cloning is one atomic increment and never calls the host, so a handle can be cloned where
/// host code must not run: under a record's lock (the record rule, `crate::types::record`), or on a
/// thread that could not attach to the host. Only the last drop calls the host.
///
/// The fields are private (with accessors) because a safe constructor would let safe code hand
/// arbitrary pointers to the vtable: use [`HostHandle::from_raw`].
///
/// ```
/// use core::ffi::c_void;
/// use core::ptr::NonNull;
/// use std::sync::atomic::{AtomicUsize, Ordering};
/// use tether_runtime::{HostHandle, HostVTable, Value};
///
/// static RELEASED: AtomicUsize = AtomicUsize::new(0);
/// unsafe fn release(_: NonNull<c_void>) { RELEASED.fetch_add(1, Ordering::Relaxed); }
/// static VT: HostVTable = HostVTable { drop: release };
///
/// static mut THING: u64 = 0;
/// let p = NonNull::new(&raw mut THING).unwrap().cast::<c_void>();
/// // SAFETY: `p` stays valid, the vtable is thread-safe, and we hand over our one reference.
/// let h = unsafe { HostHandle::from_raw(p, &VT) };
/// let v = Value::from(h);
/// let w = v.clone(); // no host call
/// drop(v);
/// assert_eq!(RELEASED.load(Ordering::Relaxed), 0);
/// drop(w); // the last clone releases the host reference, once
/// assert_eq!(RELEASED.load(Ordering::Relaxed), 1);
/// ```
#[derive(Clone)]
pub struct HostHandle(Arc<HostRef>);

/// The one host reference behind every clone of a [`HostHandle`].
struct HostRef {
    ptr: NonNull<c_void>,
    vtable: &'static HostVTable,
}

// SAFETY: `from_raw` requires the vtable's `drop` to be callable from any thread for this
// pointer; the runtime never dereferences the pointer itself.
unsafe impl Send for HostRef {}
// SAFETY: as above; `&HostRef` only allows reading the pointer and the vtable.
unsafe impl Sync for HostRef {}

impl Drop for HostRef {
    fn drop(&mut self) {
        // SAFETY: `from_raw`'s contract; the last clone releases the one host reference.
        unsafe { (self.vtable.drop)(self.ptr) }
    }
}

impl HostHandle {
    /// Wraps one host reference to `ptr`, to be released with `vtable.drop` when the last clone
    /// of the handle is dropped.
    ///
    /// # Safety
    /// The caller hands over one reference to `ptr`; `vtable.drop` is sound to call once with
    /// `ptr` from any thread.
    pub unsafe fn from_raw(ptr: NonNull<c_void>, vtable: &'static HostVTable) -> HostHandle {
        HostHandle(Arc::new(HostRef { ptr, vtable }))
    }

    /// The host pointer (the handle keeps its reference).
    pub fn as_ptr(&self) -> NonNull<c_void> {
        self.0.ptr
    }

    /// The vtable.
    pub fn vtable(&self) -> &'static HostVTable {
        self.0.vtable
    }

    /// How many clones share the host reference.
    pub fn share_count(&self) -> usize {
        Arc::strong_count(&self.0)
    }

    /// Which host reference this clone shares (equal for clones of one handle; an address,
    /// for grouping only).
    pub(crate) fn identity(&self) -> usize {
        Arc::as_ptr(&self.0) as *const () as usize
    }
}

impl fmt::Debug for HostHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HostHandle({:p})", self.0.ptr)
    }
}

//! [`WeakRef<T>`]: the weak handle, which keeps the block (and its tie header) but not the
//! value, and [`ObjRef::downgrade`], which makes one; [`WeakAny`] and [`ObjAny::downgrade`],
//! the same for type-erased handles (what a record's weak field holds).
//!
//! Top of the object floor: uses `strong` (an upgrade makes an [`ObjRef`]), `block` (the weak
//! release) and `rc`. A `WeakRef` owns one weak count (invariant 2), so its header and tie words
//! stay valid after the object died; `upgrade` takes a strong count only while strong >= 1.

use super::any::ObjAny;
use super::block::{erased_free_block, free_block_of, release_weak_with};
use super::header::{count_overflow, counts, Counts, ObjHeader, MAX_COUNT, STRONG_ONE};
use super::rc::inc_weak;
use super::strong::ObjRef;
use crate::sync::Ordering;
use core::fmt;
use core::marker::PhantomData;
use core::ptr::NonNull;
use tether_alloc::{tie_of, TieWord};

/// A weak reference: keeps the block (and its tie header) but not the value.
///
/// ```
/// use tether_runtime::{object_type, ObjRef};
/// struct Node;
/// object_type!(Node, "doc.WeakRef.Node");
/// let strong = ObjRef::new(Node);
/// let weak = strong.downgrade();
/// assert!(weak.upgrade().is_some());
/// drop(strong);
/// assert!(weak.upgrade().is_none());
/// ```
#[repr(transparent)]
pub struct WeakRef<T> {
    ptr: NonNull<ObjHeader>,
    _owns: PhantomData<T>,
}

// SAFETY: a WeakRef only yields ObjRef<T> (Send/Sync when T is Send + Sync); counts are atomic.
unsafe impl<T: Send + Sync> Send for WeakRef<T> {}
// SAFETY: as above.
unsafe impl<T: Send + Sync> Sync for WeakRef<T> {}

impl<T> ObjRef<T> {
    /// A weak reference to the same object.
    #[inline]
    pub fn downgrade(&self) -> WeakRef<T> {
        // SAFETY: we hold a strong reference.
        unsafe { inc_weak(self.as_ptr()) };
        WeakRef {
            ptr: self.as_ptr(),
            _owns: PhantomData,
        }
    }
}

/// Takes a strong count of `p` unless the object is dead (strong count 0) or doomed (cyclic
/// garbage the collector is destroying); whether it did.
///
/// # Safety
/// The caller holds a weak count of `p` (which keeps the header alive).
#[inline]
unsafe fn try_upgrade(p: NonNull<ObjHeader>) -> bool {
    // SAFETY: the caller's weak count keeps the header alive.
    let c = unsafe { counts(p) };
    let mut cur = c.load(Ordering::Relaxed);
    loop {
        let strong = Counts(cur).strong();
        if strong == 0 || Counts(cur).is_doomed() {
            return false; // dead, or cyclic garbage about to be destroyed (crate::cycles)
        }
        if strong >= MAX_COUNT {
            count_overflow();
        }
        // Relaxed: the CAS itself guarantees strong was nonzero (the value alive) when the
        // count was taken; the value was initialized before any weak reference existed (weak
        // references are made from strong ones), so there is nothing to acquire.
        match c.compare_exchange_weak(cur, cur + STRONG_ONE, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return true,
            Err(now) => cur = now,
        }
    }
}

impl<T> WeakRef<T> {
    /// A strong reference, unless the object is dead (strong count 0).
    #[inline]
    pub fn upgrade(&self) -> Option<ObjRef<T>> {
        // SAFETY: our weak count (invariant 2).
        unsafe { try_upgrade(self.ptr) }.then(|| ObjRef {
            ptr: self.ptr,
            _owns: PhantomData,
        })
    }

    /// The number of strong references (0 once the object is dead).
    #[inline]
    pub fn strong_count(&self) -> usize {
        // SAFETY: our weak count keeps the header alive.
        unsafe { self.ptr.as_ref() }.strong_count()
    }

    /// The number of weak references.
    #[inline]
    pub fn weak_count(&self) -> usize {
        // SAFETY: as above.
        unsafe { self.ptr.as_ref() }.weak_count()
    }

    /// Whether two weak references point at the same object.
    #[inline]
    pub fn ptr_eq(&self, other: &Self) -> bool {
        self.ptr == other.ptr
    }

    /// The object's tie word (alive as long as the block is, even after the object died; see
    /// [`ObjAny::tie_word`](crate::ObjAny::tie_word)).
    #[inline]
    ///
    /// # Panics
    /// If the object's type is header-less (`Object::HEADERLESS`).
    pub fn tie_word(&self) -> &TieWord {
        // SAFETY: our weak count keeps the header alive (invariant 2).
        let header = unsafe { self.ptr.as_ref() };
        assert!(
            header.has_tie_header(),
            "a header-less object has no tie word"
        );
        // SAFETY: invariant 1 and 2: our weak count keeps the block, and so the tie word.
        unsafe { tie_of(self.ptr.cast()) }
    }
}

impl<T> Clone for WeakRef<T> {
    #[inline]
    fn clone(&self) -> Self {
        // SAFETY: we hold a weak reference.
        unsafe { inc_weak(self.ptr) };
        WeakRef {
            ptr: self.ptr,
            _owns: PhantomData,
        }
    }
}

impl<T> Drop for WeakRef<T> {
    #[inline]
    fn drop(&mut self) {
        // SAFETY: we give up our weak count; the FreeBlock half is ObjBox<T>'s.
        unsafe { release_weak_with(self.ptr, free_block_of::<T>) }
    }
}

impl<T> fmt::Debug for WeakRef<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "WeakRef({:p})", self.ptr)
    }
}

/// A weak reference to an object of any type: what [`WeakRef<T>`] is for [`ObjRef<T>`], for
/// [`ObjAny`]. Keeps the block (and its tie header), not the value.
///
/// ```
/// use tether_runtime::{object_type, ObjRef};
/// struct Leaf;
/// object_type!(Leaf, "doc.WeakAny.Leaf");
/// let strong = ObjRef::new(Leaf).into_any();
/// let weak = strong.downgrade();
/// assert!(weak.upgrade().unwrap().ptr_eq(&strong));
/// drop(strong);
/// assert!(weak.upgrade().is_none());
/// ```
pub struct WeakAny {
    ptr: NonNull<ObjHeader>,
}

// SAFETY: as for WeakRef: every object type is Send + Sync (`Object`'s bound), counts are
// atomic, and a WeakAny only yields ObjAny.
unsafe impl Send for WeakAny {}
// SAFETY: as above.
unsafe impl Sync for WeakAny {}

impl ObjAny {
    /// A weak reference to the same object.
    #[inline]
    pub fn downgrade(&self) -> WeakAny {
        // SAFETY: we hold a strong reference.
        unsafe { inc_weak(self.as_ptr()) };
        WeakAny { ptr: self.as_ptr() }
    }
}

impl WeakAny {
    /// A strong reference, unless the object is dead (strong count 0).
    #[inline]
    pub fn upgrade(&self) -> Option<ObjAny> {
        // SAFETY: our weak count (invariant 2); a taken strong count goes to the handle.
        unsafe { try_upgrade(self.ptr).then(|| ObjAny::from_raw(self.ptr)) }
    }

    /// The object this refers to (alive or not), for identity comparisons only.
    #[inline]
    pub fn as_ptr(&self) -> NonNull<ObjHeader> {
        self.ptr
    }

    /// Gives up the handle without releasing its weak count (see [`from_raw`](Self::from_raw)).
    #[inline]
    pub fn into_raw(self) -> NonNull<ObjHeader> {
        let p = self.ptr;
        core::mem::forget(self);
        p
    }

    /// A handle for a weak count released with [`into_raw`](Self::into_raw).
    ///
    /// # Safety
    /// `ptr` came from `into_raw`, and its weak count is given to the new handle (once).
    #[inline]
    pub unsafe fn from_raw(ptr: NonNull<ObjHeader>) -> WeakAny {
        WeakAny { ptr }
    }
}

impl Clone for WeakAny {
    #[inline]
    fn clone(&self) -> Self {
        // SAFETY: we hold a weak reference.
        unsafe { inc_weak(self.ptr) };
        WeakAny { ptr: self.ptr }
    }
}

impl Drop for WeakAny {
    #[inline]
    fn drop(&mut self) {
        // SAFETY: we give up our weak count; the FreeBlock half is the header's deleter's.
        unsafe { release_weak_with(self.ptr, erased_free_block) }
    }
}

impl fmt::Debug for WeakAny {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "WeakAny({:p})", self.ptr)
    }
}

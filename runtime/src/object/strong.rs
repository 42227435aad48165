//! [`ObjRef<T>`]: the strong, typed handle, the runtime's `Arc<T>`.
//!
//! On the object floor above `any` (an `ObjRef<T>` is an [`ObjAny`] that knows its value's type)
//! and `rc`. The constructors that need the registry (`new`, `try_new`) are added one floor up,
//! in `crate::types` (`types/object.rs`), and [`downgrade`](ObjRef::downgrade) in `weak`. Every
//! `ObjRef<T>` holds an `ObjBox<T>` of a `T: Object` (its constructors see to it), so its
//! destruction uses `ObjBox<T>`'s halves (invariant 3); it owns one strong count (invariant 2).

use super::any::ObjAny;
use super::block::{free_block_of, release_weak_with, value_ptr};
use super::header::{counts, release_cached_at_death, Counts, ObjHeader, STRONG_ONE};
use super::rc::{destroy_of, inc_strong, release_strong_with};
use crate::sync::{AtomicU64, Ordering};
use core::fmt;
use core::marker::PhantomData;
use core::mem::ManuallyDrop;
use core::ops::Deref;
use core::ptr::{self, NonNull};

/// A strong, typed reference to an object: the runtime's `Arc<T>`.
///
/// ```
/// use tether_runtime::{object_type, ObjRef};
/// struct Point { x: i64 }
/// object_type!(Point, "doc.ObjRef.Point");
///
/// let a = ObjRef::new(Point { x: 1 });
/// let b = a.clone();
/// assert!(a.ptr_eq(&b));
/// assert_eq!((a.strong_count(), a.x), (2, 1));
/// drop(b);
/// let mut a = a;
/// a.get_mut().unwrap().x = 5;
/// assert_eq!(a.try_unwrap().ok().unwrap().x, 5);
/// ```
#[repr(transparent)]
pub struct ObjRef<T> {
    pub(super) ptr: NonNull<ObjHeader>,
    pub(super) _owns: PhantomData<T>,
}

// SAFETY: an ObjRef gives shared access (&T) to its value from any thread and may drop it on any
// thread, which is sound exactly when T is Send + Sync (as for Arc<T>); the counts are atomic.
unsafe impl<T: Send + Sync> Send for ObjRef<T> {}
// SAFETY: as above.
unsafe impl<T: Send + Sync> Sync for ObjRef<T> {}

impl<T> ObjRef<T> {
    /// Whether two handles point at the same object.
    #[inline]
    pub fn ptr_eq(&self, other: &Self) -> bool {
        self.ptr == other.ptr
    }

    /// The number of strong references (a racy snapshot).
    #[inline]
    pub fn strong_count(&self) -> usize {
        self.header().strong_count()
    }

    /// The number of [`WeakRef`](crate::WeakRef)s (a racy snapshot).
    #[inline]
    pub fn weak_count(&self) -> usize {
        self.header().weak_count()
    }

    /// Mutable access when this is the only handle (no other strong and no weak reference).
    #[inline]
    pub fn get_mut(&mut self) -> Option<&mut T> {
        // Acquire: as in the last-drop check: the other handles' uses happen-before ours. No
        // handle can appear concurrently (we hold the only one, and `&mut self`).
        if Counts(self.counts().load(Ordering::Acquire)).is_unique() {
            // SAFETY: unique, so no other reference to the value exists or can be made while
            // the returned borrow (tied to &mut self) lives.
            Some(unsafe { &mut *value_ptr::<T>(self.ptr) })
        } else {
            None
        }
    }

    /// The value, if this is the only strong reference; otherwise `Err(self)`. Weak references
    /// may exist: they fail to upgrade from then on.
    #[inline]
    pub fn try_unwrap(self) -> Result<T, Self> {
        let c = self.counts();
        // Acquire on both paths: the other handles' uses of the value happen-before we move it.
        if !Counts(c.load(Ordering::Acquire)).is_unique() {
            let mut cur = c.load(Ordering::Relaxed);
            loop {
                if Counts(cur).strong() != 1 {
                    return Err(self);
                }
                match c.compare_exchange_weak(
                    cur,
                    cur - STRONG_ONE,
                    Ordering::Acquire,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => break,
                    Err(now) => cur = now,
                }
            }
            let this = ManuallyDrop::new(self);
            // SAFETY: strong is 0 and we took it there: the value is ours to move out (it will
            // not be dropped in place: DropValue never runs for this object).
            let value = unsafe { ptr::read(value_ptr::<T>(this.ptr)) };
            // SAFETY: the object is dead; release its cached wrapper, then the strong refs' weak.
            unsafe {
                release_cached_at_death(this.ptr);
                release_weak_with(this.ptr, free_block_of::<T>);
            }
            return Ok(value);
        }
        let this = ManuallyDrop::new(self);
        // SAFETY: unique: we move the value out and free the block; no other handle exists.
        unsafe {
            let value = ptr::read(value_ptr::<T>(this.ptr));
            free_block_of::<T>(this.ptr);
            Ok(value)
        }
    }

    /// The type-erased handle (moves the strong reference).
    #[inline]
    pub fn into_any(self) -> ObjAny {
        let this = ManuallyDrop::new(self);
        ObjAny { ptr: this.ptr }
    }

    /// The type-erased view of this handle, without touching the counts.
    #[inline]
    pub fn as_any(&self) -> &ObjAny {
        // SAFETY: ObjRef<T> and ObjAny are both #[repr(transparent)] over NonNull<ObjHeader>
        // (PhantomData is a 1-ZST), so the reference cast is a reinterpretation of the same
        // bytes; both own one strong count with the same meaning.
        unsafe { &*(self as *const Self).cast::<ObjAny>() }
    }

    /// The object's header pointer.
    #[inline]
    pub fn as_ptr(&self) -> NonNull<ObjHeader> {
        self.ptr
    }

    /// Gives up the handle without releasing its strong count.
    #[inline]
    pub fn into_raw(self) -> NonNull<ObjHeader> {
        ManuallyDrop::new(self).ptr
    }

    /// Rebuilds a handle from [`into_raw`](Self::into_raw).
    ///
    /// # Safety
    /// `ptr` came from `into_raw` (of an `ObjRef<T>` or of an `ObjAny` of type `T`'s exact
    /// index) and its strong count is handed over to the result.
    #[inline]
    pub unsafe fn from_raw(ptr: NonNull<ObjHeader>) -> Self {
        ObjRef {
            ptr,
            _owns: PhantomData,
        }
    }

    /// The object's header.
    #[inline]
    fn header(&self) -> &ObjHeader {
        // SAFETY: invariant 2: our strong count keeps the header alive while &self lives.
        unsafe { self.ptr.as_ref() }
    }

    #[inline(always)]
    fn counts(&self) -> &AtomicU64 {
        // SAFETY: as for `header`.
        unsafe { counts(self.ptr) }
    }
}

impl<T> Clone for ObjRef<T> {
    #[inline]
    fn clone(&self) -> Self {
        // SAFETY: we hold a strong reference.
        unsafe { inc_strong(self.ptr) };
        ObjRef {
            ptr: self.ptr,
            _owns: PhantomData,
        }
    }
}

impl<T> Drop for ObjRef<T> {
    #[inline]
    fn drop(&mut self) {
        // SAFETY: we give up our strong reference; the object is an ObjBox<T>.
        unsafe { release_strong_with(self.ptr, destroy_of::<T>) }
    }
}

impl<T> Deref for ObjRef<T> {
    type Target = T;

    #[inline]
    fn deref(&self) -> &T {
        // SAFETY: our strong count keeps the value alive and initialized; only shared access is
        // handed out while other handles may exist (get_mut requires uniqueness).
        unsafe { &*value_ptr::<T>(self.ptr) }
    }
}

impl<T> AsRef<ObjAny> for ObjRef<T> {
    fn as_ref(&self) -> &ObjAny {
        self.as_any()
    }
}

impl<T> From<ObjRef<T>> for ObjAny {
    fn from(r: ObjRef<T>) -> ObjAny {
        r.into_any()
    }
}

impl<T: fmt::Debug> fmt::Debug for ObjRef<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

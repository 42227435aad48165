//! [`ObjAny`]: the type-erased strong handle that hosts keep.
//!
//! On the object floor above `rc` and `names`: its clone and drop are the count protocol's, with
//! the erased destruction (the header's deleter); its `Debug` names the type through `names`.
//! The registry-aware methods (`type_info`, `is_instance`, the downcasts) are added one floor
//! up, in `crate::types` (`types/object.rs`). Relies on invariant 2 (an `ObjAny` owns one strong
//! count) and invariant 3 (the erased halves match the layout).

use super::header::ObjHeader;
use super::names::type_name;
use super::rc::{destroy_erased, inc_strong, release_strong_with};
use core::fmt;
use core::mem::ManuallyDrop;
use core::ptr::NonNull;
use tether_alloc::{tie_of, TieWord};

/// A type-erased strong reference, for hosts: any object, typed again by its type index.
///
/// ```
/// use tether_runtime::{object_type, ObjAny, ObjRef, Object};
/// struct Cat(&'static str);
/// object_type!(Cat, "doc.ObjAny.Cat");
///
/// let any: ObjAny = ObjRef::new(Cat("tom")).into_any();
/// assert_eq!(any.type_index(), Cat::type_index());
/// assert_eq!(any.downcast_ref::<Cat>().unwrap().0, "tom");
/// // A host keeps the wrapper's strong reference as a raw pointer.
/// let raw = any.into_raw();
/// // SAFETY: `raw` came from `into_raw` and its count is handed back.
/// let any = unsafe { ObjAny::from_raw(raw) };
/// let cat = any.downcast::<Cat>().ok().unwrap();
/// assert_eq!(cat.0, "tom");
/// ```
#[repr(transparent)]
pub struct ObjAny {
    pub(super) ptr: NonNull<ObjHeader>,
}

// SAFETY: every object's value is Send + Sync, and the counts are atomic. Objects are built only
// by `ObjRef::try_new` (for `T: Object`, and `Object: Send + Sync`) and `Record::new` (records
// hold `Value`s, which are Send + Sync); every other handle (`from_raw`, `downcast`, `upgrade`)
// is made from an existing one to the same object.
unsafe impl Send for ObjAny {}
// SAFETY: as above.
unsafe impl Sync for ObjAny {}

impl ObjAny {
    /// The object's type index.
    #[inline]
    pub fn type_index(&self) -> u32 {
        self.obj_header().type_index()
    }

    /// The registered name of the object's type (`None` only for an index that is not
    /// registered, which objects built by this crate never have).
    #[inline]
    pub(crate) fn type_name(&self) -> Option<&'static str> {
        type_name(self.type_index())
    }

    /// Whether two handles point at the same object.
    #[inline]
    pub fn ptr_eq(&self, other: &ObjAny) -> bool {
        self.ptr == other.ptr
    }

    /// The number of strong references (a racy snapshot).
    #[inline]
    pub fn strong_count(&self) -> usize {
        self.obj_header().strong_count()
    }

    /// The number of weak references (a racy snapshot).
    #[inline]
    pub fn weak_count(&self) -> usize {
        self.obj_header().weak_count()
    }

    /// The object's header pointer (the object's address).
    #[inline]
    pub fn as_ptr(&self) -> NonNull<ObjHeader> {
        self.ptr
    }

    /// Gives up the handle without releasing its strong count (a host stores it in the
    /// wrapper).
    #[inline]
    pub fn into_raw(self) -> NonNull<ObjHeader> {
        ManuallyDrop::new(self).ptr
    }

    /// Takes back a strong count given up by [`into_raw`](Self::into_raw).
    ///
    /// # Safety
    /// `ptr` came from `into_raw` (of an `ObjAny` or an `ObjRef`) and its count has not been
    /// taken back yet; the count is handed over to the result.
    #[inline]
    pub unsafe fn from_raw(ptr: NonNull<ObjHeader>) -> ObjAny {
        ObjAny { ptr }
    }

    /// A new strong handle to the object at `ptr`, incrementing the count (the raw count stays
    /// where it is).
    ///
    /// # Safety
    /// `ptr` is an object of this crate on which a strong count is held (by the caller or by a
    /// raw pointer the caller knows stays counted) for the duration of the call.
    ///
    /// ```
    /// use tether_runtime::{object_type, ObjAny, ObjRef};
    /// struct Leaf;
    /// object_type!(Leaf, "doc.clone_from_raw.Leaf");
    /// let raw = ObjRef::new(Leaf).into_any().into_raw();
    /// // SAFETY: `raw` holds a strong count.
    /// let extra = unsafe { ObjAny::clone_from_raw(raw) };
    /// assert_eq!(extra.strong_count(), 2);
    /// drop(extra);
    /// // SAFETY: hand the raw count back.
    /// drop(unsafe { ObjAny::from_raw(raw) });
    /// ```
    #[inline]
    pub unsafe fn clone_from_raw(ptr: NonNull<ObjHeader>) -> ObjAny {
        // SAFETY: the caller guarantees a strong count is held.
        unsafe { inc_strong(ptr) };
        ObjAny { ptr }
    }

    /// The allocator's tie word before the object (detached, `W` bound, `W | TIE_PARKED`
    /// parked; see [`tether_alloc::TieWord`]), for inspection. (Under `--cfg loom` the tie
    /// machine runs on a loom copy in the object header instead.)
    #[inline]
    ///
    /// # Panics
    /// If the object's type is header-less (`Object::HEADERLESS`): it has no tie word.
    pub fn tie_word(&self) -> &TieWord {
        assert!(
            self.obj_header().has_tie_header(),
            "a header-less object has no tie word"
        );
        // SAFETY: invariant 1: allocated by ALLOC (not BARE: checked); invariant 2: our count
        // keeps the block.
        unsafe { tie_of(self.ptr.cast()) }
    }

    /// The object header.
    #[inline]
    pub fn obj_header(&self) -> &ObjHeader {
        // SAFETY: invariant 2: our strong count keeps the header alive while &self lives.
        unsafe { self.ptr.as_ref() }
    }
}

impl Clone for ObjAny {
    #[inline]
    fn clone(&self) -> Self {
        // SAFETY: we hold a strong reference.
        unsafe { inc_strong(self.ptr) };
        ObjAny { ptr: self.ptr }
    }
}

impl Drop for ObjAny {
    #[inline]
    fn drop(&mut self) {
        // SAFETY: we give up our strong count; the erased halves call the header's deleter,
        // which matches the layout (invariant 3).
        unsafe { release_strong_with(self.ptr, destroy_erased) }
    }
}

impl fmt::Debug for ObjAny {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = self.type_name().unwrap_or("?");
        write!(f, "ObjAny({name} @ {:p})", self.ptr)
    }
}

//! [`Object`], the trait of Rust types that live in objects, and the methods of the object
//! handles that need the registry: [`ObjRef::new`] / [`ObjRef::try_new`] (a new object's type
//! index), [`ObjAny`]'s `type_info`, `is_instance` and downcasts, and the typed conversions out
//! of a [`Value`].
//!
//! On the types floor above `registry`; uses `crate::object` (the handles and the `ObjBox<T>`
//! layout), `crate::heap`, `crate::value` and `crate::error`. Upper floors add these methods to
//! the object floor's types (as hashbrown's `raw_entry` does); only this floor and the ones
//! above call them. Relies on `Object`'s contract (one index per Rust type) for every downcast,
//! and establishes object invariants 1 to 3 for Rust objects in `try_new`.

use super::registry::{is_subtype, type_info, TypeInfo};
use crate::error::Error;
use crate::heap::{ALLOC, BARE};
use crate::object::{deleter_of, set_deleter, ObjAny, ObjBox, ObjHeader, ObjRef};
use crate::value::Value;
use core::alloc::Layout;
use tether_alloc::allocator_api2::alloc::{AllocError, Allocator};

/// A Rust type that can live in an object: it has a registered type index.
///
/// Implement it with [`object_type!`](crate::object_type), which registers the type once per
/// process and then answers with one acquire load.
///
/// # Safety
///
/// Downcasts ([`ObjAny::downcast`], [`ObjAny::downcast_ref`], [`ObjAny::as_typed`]) trust the
/// type index: an implementation must return the same index on every call, obtained from
/// [`register_rust_type`](crate::register_rust_type) for this type alone (no other type, Rust
/// or record, may report it). `object_type!` guarantees this; that is why the trait is `unsafe`
/// (the contract sketches a safe trait, but a safe hand-written `impl` returning another
/// type's index would make the safe downcasts unsound).
///
/// ```
/// use tether_runtime::{object_type, type_info, Object};
/// struct Counter(u64);
/// object_type!(Counter, "doc.Counter");
/// let ti = Counter::type_index();
/// assert_eq!(type_info(ti).unwrap().name, "doc.Counter");
/// assert_eq!(Counter::type_index(), ti);
/// ```
pub unsafe trait Object: Send + Sync + 'static {
    /// This type's index in the registry.
    fn type_index() -> u32;

    /// Whether objects of this type are allocated without a tie header (`object_type!(T,
    /// name, headerless)`): for hot small types that never cross into a host. They save the
    /// header's 16 bytes; they can never be wrapped (`tie` refuses them, and so do hosts).
    const HEADERLESS: bool = false;

    /// Whether objects of this type are tracked by the cycle collector (`crate::tracked`):
    /// only the runtime's own containers, whose tracing the collector knows. Not for other
    /// types (the collector would not know how to read their references).
    #[doc(hidden)]
    const TRACED: bool = false;

    /// For a `TRACED` type: the value's registry-index slot (`crate::tracked`).
    #[doc(hidden)]
    fn tracked_slot(&self) -> Option<&core::sync::atomic::AtomicPtr<()>> {
        None
    }

    /// This type's registry entry.
    fn type_info() -> &'static TypeInfo {
        // A registered index always has an entry (entries are never removed).
        type_info(Self::type_index()).expect("registered type index has no entry")
    }
}

impl<T: Object> ObjRef<T> {
    /// Allocates an object holding `value`. Aborts through `handle_alloc_error` on OOM (like
    /// `Arc::new`).
    #[inline]
    pub fn new(value: T) -> Self {
        match Self::try_new(value) {
            Ok(r) => r,
            Err(AllocError) => std::alloc::handle_alloc_error(Layout::new::<ObjBox<T>>()),
        }
    }

    /// Allocates an object holding `value`, or returns `AllocError` (dropping `value`).
    ///
    /// ```
    /// use tether_runtime::{object_type, ObjRef};
    /// struct Unit;
    /// object_type!(Unit, "doc.try_new.Unit");
    /// assert!(ObjRef::try_new(Unit).is_ok());
    /// ```
    #[inline]
    pub fn try_new(value: T) -> Result<Self, AllocError> {
        let type_index = T::type_index();
        let layout = Layout::new::<ObjBox<T>>();
        // A header-less type's blocks come from BARE and go back there (object invariant 1).
        let (block, header) = if T::HEADERLESS {
            (BARE.allocate(layout)?, ObjHeader::new_bare(type_index))
        } else {
            (ALLOC.allocate(layout)?, ObjHeader::new(type_index))
        };
        let b = block.cast::<ObjBox<T>>();
        // SAFETY: `b` is a fresh allocation valid and aligned for ObjBox<T> (object invariant 1),
        // not shared yet; deleter_of::<T> is ObjBox<T>'s deleter.
        unsafe {
            b.as_ptr().write(ObjBox { header, value });
            set_deleter(b.cast(), deleter_of::<T>);
        };
        if T::TRACED {
            // SAFETY: the value was just written; its slot (UNTRACKED since the value was
            // made) lives as long as the value, which leaves the registry in its Drop.
            unsafe {
                if let Some(slot) = (*b.as_ptr()).value.tracked_slot() {
                    crate::tracked::track(b.cast(), slot); // tracked invariant 1
                }
            }
        }
        // SAFETY: a fully built ObjBox<T> with one strong count, which the handle takes; its
        // deleter is ObjBox<T>'s (object invariants 1 to 3).
        Ok(unsafe { ObjRef::from_raw(b.cast()) })
    }
}

impl ObjAny {
    /// The object's registry entry.
    ///
    /// # Panics
    /// Never for objects built by this crate (their type is registered first).
    #[inline]
    pub fn type_info(&self) -> &'static TypeInfo {
        type_info(self.type_index()).expect("object with an unregistered type index")
    }

    /// Whether the object is an instance of `type_index` or one of its subtypes (walks the
    /// parent chain). [`ANY_OBJECT`](crate::ANY_OBJECT) matches every object.
    ///
    /// ```
    /// use tether_runtime::{object_type, ObjRef, Object, ANY_OBJECT};
    /// struct Base;
    /// struct Derived;
    /// object_type!(Base, "doc.is_instance.Base");
    /// object_type!(Derived, "doc.is_instance.Derived", parent = Base);
    /// let d = ObjRef::new(Derived).into_any();
    /// assert!(d.is_instance(Base::type_index()) && d.is_instance(ANY_OBJECT));
    /// assert!(!ObjRef::new(Base).as_any().is_instance(Derived::type_index()));
    /// ```
    pub fn is_instance(&self, type_index: u32) -> bool {
        is_subtype(self.type_index(), type_index)
    }

    /// The typed handle, if the object's type is exactly `T`; otherwise the handle back.
    #[inline]
    pub fn downcast<T: Object>(self) -> Result<ObjRef<T>, ObjAny> {
        if self.type_index() == T::type_index() {
            // SAFETY: the strong count moves from `self` to the result; the type index says the
            // block is an ObjBox<T> (type indices are unique per Rust type: `Object`'s contract).
            Ok(unsafe { ObjRef::from_raw(self.into_raw()) })
        } else {
            Err(self)
        }
    }

    /// A reference to the value, if the object's type is exactly `T`.
    #[inline]
    pub fn downcast_ref<T: Object>(&self) -> Option<&T> {
        self.as_typed::<T>().map(|r| &**r)
    }

    /// The typed view of this handle, if the object's type is exactly `T` (no count changes).
    ///
    /// ```
    /// use tether_runtime::{object_type, ObjRef};
    /// struct Tag(u8);
    /// object_type!(Tag, "doc.as_typed.Tag");
    /// let any = ObjRef::new(Tag(3)).into_any();
    /// let typed: ObjRef<Tag> = any.as_typed::<Tag>().unwrap().clone();
    /// assert_eq!(typed.0, 3);
    /// ```
    #[inline]
    pub fn as_typed<T: Object>(&self) -> Option<&ObjRef<T>> {
        if self.type_index() == T::type_index() {
            // SAFETY: same representation (see `ObjRef::as_any`), and the type index says the
            // block is an ObjBox<T> (type indices are unique per Rust type, object invariant 3).
            Some(unsafe { &*(self as *const ObjAny).cast::<ObjRef<T>>() })
        } else {
            None
        }
    }
}

impl Value {
    /// A typed handle to the object, if it is exactly a `T`; otherwise `Error::Type` naming
    /// `T`'s registered name and the actual kind.
    ///
    /// ```
    /// use tether_runtime::{object_type, ObjRef, Value};
    /// struct Dog;
    /// object_type!(Dog, "doc.to_object.Dog");
    /// let v = Value::from(ObjRef::new(Dog));
    /// assert!(v.to_object::<Dog>().is_ok());
    /// let err = Value::Int(1).to_object::<Dog>().err().unwrap();
    /// assert_eq!(err.to_string(), "type error: expected doc.to_object.Dog, got int");
    /// ```
    pub fn to_object<T: Object>(&self) -> Result<ObjRef<T>, Error> {
        let want = || T::type_info().name.as_str();
        let obj = self.as_object().map_err(|_| self.mismatch(want()))?;
        obj.as_typed::<T>()
            .cloned()
            .ok_or_else(|| self.mismatch(want()))
    }
}

impl<T: Object> TryFrom<Value> for ObjRef<T> {
    type Error = Error;
    fn try_from(v: Value) -> Result<ObjRef<T>, Error> {
        let name = T::type_info().name.as_str();
        let kind = v.kind_name().to_owned();
        ObjAny::try_from(v)
            .map_err(|_| Error::type_mismatch(name, &kind))?
            .downcast::<T>()
            .map_err(|_| Error::type_mismatch(name, &kind))
    }
}

/// The typed value behind an accessor's `&ObjAny` (used by [`field!`](crate::field)).
///
/// # Panics
/// If `obj` is not exactly a `T`: an accessor was called with an object of another type, which
/// a host that reads `type_info(obj.type_index()).fields` never does.
#[doc(hidden)]
pub fn expect_field_owner<T: Object>(obj: &ObjAny) -> &T {
    match obj.downcast_ref::<T>() {
        Some(v) => v,
        None => panic!(
            "field accessor of {} called on a {:?}",
            T::type_info().name,
            obj
        ),
    }
}

/// Notes the object size of Rust type `T` (registered as `index`) in its registry entry: what
/// [`object_type!`](crate::object_type) calls right after registering, so that
/// [`TypeInfo::object_bytes`](crate::TypeInfo::object_bytes) knows it.
#[doc(hidden)]
pub fn note_object_size<T>(index: u32) -> u32 {
    if let Some(info) = super::registry::type_info(index) {
        info.note_object_size(core::mem::size_of::<crate::object::ObjBox<T>>());
    }
    index
}

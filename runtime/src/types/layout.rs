//! How a record type's fields are stored: each field's [`SlotRepr`] (a compact, typed form for
//! the kinds hosts read most, a [`Value`] for the rest) and its offset in the object
//! ([`SlotAt`]), gathered in the type's [`RecordLayout`].
//!
//! Just above `schema` on the types floor: plain layout arithmetic, using `crate::object` (the
//! size of `ObjHeader`, where slots start), `crate::value` and `crate::error`. Which kind gets
//! which form is decided in `declare` (a reference slot needs the registry: only fields whose
//! type is a record type get one).
//!
//! ```text
//!  ObjHeader (16 bytes) | slot 0 | slot 1 | ...      offsets fixed per type; a subtype's
//!  ^ object               Int: 8, Float: 8, Bool: 1,  layout starts with its parent's
//!                         Ref: 8, Dyn: a Value (24)
//! ```
//!
//! Every step of the arithmetic is checked: a layout that does not fit `isize` (or the `u32`
//! offsets) is refused with `Error::Value`, never wrapped.

use crate::error::Error;
use crate::object::ObjHeader;
use crate::value::Value;
use core::alloc::Layout;

/// The stored form of one record field.
///
/// ```
/// use tether_runtime::types::SlotRepr;
/// assert_eq!(SlotRepr::Int.size(), 8);
/// assert_eq!(SlotRepr::Bool.size(), 1);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotRepr {
    /// An `int` field: an `i64`, read and written atomically without the record's lock.
    Int,
    /// A `float` field: an `f64` (as its bits), atomic like `Int`.
    Float,
    /// A `bool` field: one byte, atomic like `Int`.
    Bool,
    /// A field holding an object of a record type: one pointer, owning a strong reference
    /// (null only when `optional`, for `None`). Read and written under the record's lock.
    Ref {
        /// `Optional[...]`: null stands for `None`.
        optional: bool,
    },
    /// A weak field: one pointer owning a weak count (null for `None`), under the record's
    /// lock; reads upgrade it.
    Weak,
    /// Any other kind: a [`Value`], under the record's lock.
    Dyn,
}

impl SlotRepr {
    /// The slot's size in bytes.
    pub const fn size(self) -> usize {
        match self {
            SlotRepr::Int | SlotRepr::Float => 8,
            SlotRepr::Bool => 1,
            SlotRepr::Ref { .. } | SlotRepr::Weak => core::mem::size_of::<*mut ObjHeader>(),
            SlotRepr::Dyn => core::mem::size_of::<Value>(),
        }
    }

    /// The slot's alignment.
    pub const fn align(self) -> usize {
        match self {
            SlotRepr::Int | SlotRepr::Float => 8,
            SlotRepr::Bool => 1,
            SlotRepr::Ref { .. } | SlotRepr::Weak => core::mem::align_of::<*mut ObjHeader>(),
            SlotRepr::Dyn => core::mem::align_of::<Value>(),
        }
    }

    /// Whether reads and writes take the record's lock (the slot owns references).
    pub const fn is_locked(self) -> bool {
        matches!(self, SlotRepr::Ref { .. } | SlotRepr::Weak | SlotRepr::Dyn)
    }
}

/// Where one field lives: its form and its byte offset from the object's start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlotAt {
    /// The stored form.
    pub repr: SlotRepr,
    /// Bytes from the object (its `ObjHeader`) to the slot.
    pub offset: u32,
}

/// The layout of a record type's objects: one [`SlotAt`] per field, in field order, and the
/// object's size and alignment.
///
/// ```
/// use tether_runtime::types::{RecordLayout, SlotRepr};
/// let l = RecordLayout::extend(None, &[SlotRepr::Bool, SlotRepr::Int]).unwrap();
/// assert_eq!((l.slots[0].offset, l.slots[1].offset), (16, 24));
/// assert_eq!(l.layout().size(), 32);
/// // A subtype keeps its parent's slots where they were.
/// let sub = RecordLayout::extend(Some(&l), &[SlotRepr::Bool]).unwrap();
/// assert_eq!(sub.slots[..2], l.slots[..]);
/// assert_eq!(sub.slots[2].offset, 32);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordLayout {
    /// The fields' slots, the parent's first.
    pub slots: Vec<SlotAt>,
    /// Up to the end of the last slot, unpadded (what a subtype extends).
    unpadded: Layout,
    /// A field can hold a strong reference to an object (set by `declare`): the type's objects
    /// are tracked for the cycle collector (`crate::tracked`).
    pub(crate) holds_objects: bool,
    /// With the `narrow-header` feature (no owner word), where such an object keeps its index in
    /// the collector's registry (a word after the field slots of the first type that needed it;
    /// a subtype keeps its parent's).
    pub(crate) gc_at: Option<u32>,
}

impl RecordLayout {
    /// The layout of a type whose parent has layout `parent` (its slots stay first, at the same
    /// offsets) and which adds fields stored as `reprs`.
    ///
    /// # Errors
    /// `Error::Value` if the object would not fit `isize` or an offset would not fit `u32`.
    pub fn extend(parent: Option<&RecordLayout>, reprs: &[SlotRepr]) -> Result<Self, Error> {
        let too_big = || Error::Value("record layout too large".into());
        let (mut layout, mut slots) = match parent {
            Some(p) => (p.unpadded, p.slots.clone()),
            None => (Layout::new::<ObjHeader>(), Vec::new()),
        };
        for &repr in reprs {
            let one = Layout::from_size_align(repr.size(), repr.align()).map_err(|_| too_big())?;
            let (grown, offset) = layout.extend(one).map_err(|_| too_big())?;
            let offset = u32::try_from(offset).map_err(|_| too_big())?;
            slots.push(SlotAt { repr, offset });
            layout = grown;
        }
        Ok(RecordLayout {
            holds_objects: parent.is_some_and(|p| p.holds_objects),
            gc_at: parent.and_then(|p| p.gc_at),
            slots,
            unpadded: layout,
        })
    }

    /// Adds the registry-index slot of a type whose objects are tracked (`crate::tracked`), if
    /// it has none yet.
    ///
    /// # Errors
    /// `Error::Value` if the object would not fit `isize` or the offset would not fit `u32`.
    pub(crate) fn add_gc_slot(&mut self) -> Result<(), Error> {
        if self.gc_at.is_some() {
            return Ok(());
        }
        let too_big = || Error::Value("record layout too large".into());
        let one = Layout::new::<crate::tracked::Slot>();
        let (grown, offset) = self.unpadded.extend(one).map_err(|_| too_big())?;
        self.gc_at = Some(u32::try_from(offset).map_err(|_| too_big())?);
        self.unpadded = grown;
        Ok(())
    }

    /// The allocation layout of one object (padded to its alignment).
    pub fn layout(&self) -> Layout {
        self.unpadded.pad_to_align()
    }
}

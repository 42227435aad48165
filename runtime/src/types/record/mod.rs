//! Record objects: instances of record types (schemas given at run time), their fields stored
//! inline in the object's own allocation, each in the compact form of its kind.
//!
//! On the types floor above `kind` (every write is kind-checked) and `object` (`ObjAny`'s
//! `type_info`); uses `registry`, `layout`, `schema`, `crate::object` (the header, its lock
//! word, the block's release), `crate::heap` (`ALLOC`), `crate::value` and `crate::error`.
//! `reflect` reaches the fields generically through it. Files: `slots` (one slot's raw
//! operations and the lock), this one (construction, the checked accessors, the deleter),
//! `fast` (the unchecked accessors hosts use on their hot paths).
//!
//! ```text
//!  tie header | ObjHeader (counts, type, flags, lock) | slot 0 | slot 1 | ... (RecordLayout)
//!             ^ obj
//! ```
//!
//! # Invariants
//!
//! 1. A record object is allocated by [`RecordBuilder`] with its type's
//!    [`RecordLayout`]; all slots are initialized before the object is handed out. Its type's
//!    layout (in the registry, immutable) says where each slot is and what form it has.
//! 2. Its `ObjHeader`'s type index is a [`TypeKind::Record`] type, and its deleter is
//!    [`record_deleter`]: record type indices are never given to other layouts.
//! 3. **The record rule.** Every access to a slot that holds references (`Ref`, `Weak`, `Dyn`) holds
//!    the record's lock (the header's lock word), from every thread and every host (there is no
//!    unlocked accessor); scalar slots are atomics. Under the lock only native work happens: a
//!    read clones the value (atomic increments: objects, strings, functions, host handles, none
//!    of which calls the host) or looks at it, a write swaps it. No host code runs and no value
//!    is dropped while the lock is held: the old value of a write is dropped after the lock is
//!    released, by the caller. So a host holding its own lock (the GIL) may take a record lock,
//!    and a thread holding a record lock never waits for the host's lock: no deadlock.
//! 4. Every slot holds a value that passed its field's kind check, in its slot's form; except
//!    an object slot left unresolved by [`RecordBuilder::set_unresolved`] (null or `None`, read
//!    as `None`) until its host stores the object.

mod fast;
pub(crate) mod gc;
mod slots;

pub use fast::{
    slot_bool, slot_float, slot_int, slot_load, slot_replace, slot_set_bool, slot_set_float,
    slot_set_int, slot_with_ref,
};

use super::layout::{RecordLayout, SlotAt, SlotRepr};
use super::registry::{type_info, TypeInfo};
use super::schema::TypeKind;
use crate::error::Error;
use crate::heap::ALLOC;
use crate::object::{free_block_layout, DeleteKind, ObjAny, ObjHeader};
use crate::value::Value;
use core::ptr::{self, NonNull};
use tether_alloc::allocator_api2::alloc::Allocator;

/// Namespace of record construction. Record objects are handled as [`ObjAny`]; their fields
/// through [`record_get`] / [`record_set`] (or [`field_get`](crate::field_get)).
///
/// ```
/// use tether_runtime::{record_get, record_set, register_record_type, Error, FieldKind, FieldSpec, Record, Value};
/// let point = register_record_type(
///     "doc.record.Point",
///     None,
///     vec![FieldSpec::new("x", FieldKind::Int), FieldSpec::new("y", FieldKind::Int).with_default(0)],
/// )
/// .unwrap();
/// let p = Record::new(point, vec![Value::Int(3)]).unwrap(); // y takes its default
/// assert_eq!(record_get(&p, 1).unwrap(), Value::Int(0));
/// record_set(&p, 1, Value::Int(4)).unwrap();
/// assert!(matches!(record_set(&p, 0, Value::from("no")), Err(Error::Type(_))));
/// assert_eq!(record_get(&p, 0).unwrap(), Value::Int(3)); // the old value was kept
/// ```
#[derive(Debug)]
pub struct Record {
    _no_instances: (),
}

impl Record {
    /// Builds a record of type `type_index` from `values` in field order. Missing trailing
    /// values take their field's default; every value is kind-checked (ints widen to floats).
    ///
    /// # Errors
    /// `Error::NotFound` (unknown type), `Error::Type` (not a record type, too many values, a
    /// missing value without default, a kind mismatch), `Error::Alloc`.
    #[allow(clippy::new_ret_no_self)] // the contract's name; records are handled as ObjAny
    pub fn new(type_index: u32, values: Vec<Value>) -> Result<ObjAny, Error> {
        let mut b = RecordBuilder::new(type_index)?;
        let n = b.len();
        if values.len() > n {
            return Err(Error::Type(format!(
                "{} takes {n} fields, got {}",
                b.info.name,
                values.len()
            )));
        }
        for (i, v) in values.into_iter().enumerate() {
            b.set(i, v)?;
        }
        b.finish()
    }

    /// Whether `obj` is a record.
    pub fn is_record(obj: &ObjAny) -> bool {
        obj.type_info().kind == TypeKind::Record
    }

    /// The number of fields of the record `obj`.
    ///
    /// # Errors
    /// `Error::Type` if `obj` is not a record.
    pub fn len(obj: &ObjAny) -> Result<usize, Error> {
        Ok(as_record(obj)?.fields.len())
    }
}

/// A record object under construction: its block is allocated up front and each field is
/// written straight into its slot, in any order ([`set`](Self::set)); [`finish`](Self::finish)
/// fills the rest from the defaults and hands out the object. Dropped unfinished, it drops the
/// values already set and frees the block: a failed construction leaves nothing behind.
///
/// ```
/// use tether_runtime::{record_get, register_record_type, FieldKind, FieldSpec, RecordBuilder, Value};
/// let t = register_record_type(
///     "doc.builder.P",
///     None,
///     vec![FieldSpec::new("x", FieldKind::Int), FieldSpec::new("y", FieldKind::Str).with_default("")],
/// )
/// .unwrap();
/// let mut b = RecordBuilder::new(t).unwrap();
/// assert_eq!(b.missing().collect::<Vec<_>>(), [0]); // x has no default
/// b.set(0, Value::Int(7)).unwrap();
/// assert!(b.set(1, Value::Int(1)).is_err()); // kind-checked; nothing changed
/// let p = b.finish().unwrap();
/// assert_eq!(record_get(&p, 1).unwrap(), Value::from(""));
/// ```
#[derive(Debug)]
pub struct RecordBuilder {
    block: NonNull<ObjHeader>,
    info: &'static TypeInfo,
    layout: &'static RecordLayout,
    /// Which slots hold a value.
    set: Filled,
}

/// A set of field indices: a bit mask for up to 64 fields (no allocation on the common path),
/// else one flag per field.
#[derive(Debug)]
enum Filled {
    Small { len: usize, bits: u64 },
    Large(Vec<bool>),
}

impl Filled {
    fn new(len: usize) -> Filled {
        if len <= 64 {
            Filled::Small { len, bits: 0 }
        } else {
            Filled::Large(vec![false; len])
        }
    }

    fn len(&self) -> usize {
        match self {
            Filled::Small { len, .. } => *len,
            Filled::Large(v) => v.len(),
        }
    }

    fn get(&self, i: usize) -> bool {
        match self {
            Filled::Small { len, bits } => i < *len && bits & (1 << i) != 0,
            Filled::Large(v) => v.get(i).copied().unwrap_or(false),
        }
    }

    fn insert(&mut self, i: usize) {
        match self {
            Filled::Small { bits, .. } => *bits |= 1 << i,
            Filled::Large(v) => v[i] = true,
        }
    }
}

impl RecordBuilder {
    /// Allocates a record of type `type_index` with no field set yet.
    ///
    /// # Errors
    /// `Error::NotFound` (unknown type), `Error::Type` (not a record type), `Error::Alloc`.
    pub fn new(type_index: u32) -> Result<RecordBuilder, Error> {
        let info = record_type(type_index)?;
        let layout = record_layout(info);
        let block = ALLOC.allocate(layout.layout())?.cast::<ObjHeader>();
        // SAFETY: `block` is fresh, valid and aligned for the layout, whose first part is the
        // ObjHeader (invariant 1).
        unsafe { block.as_ptr().write(ObjHeader::new_record(type_index)) };
        // SAFETY: the header is written; the slot is in the block (Wide: its owner word).
        if let Some(slot) = unsafe { gc::slot_in(block, layout) } {
            crate::tracked::init(slot);
        }
        Ok(RecordBuilder {
            block,
            info,
            layout,
            set: Filled::new(info.fields.len()),
        })
    }

    /// The number of fields.
    pub fn len(&self) -> usize {
        self.set.len()
    }

    /// Whether the type has no fields.
    pub fn is_empty(&self) -> bool {
        self.set.len() == 0
    }

    /// Whether field `i` has been set.
    pub fn is_set(&self, i: usize) -> bool {
        self.set.get(i)
    }

    /// The fields not set yet that have no default (what [`finish`](Self::finish) would
    /// refuse), in field order.
    pub fn missing(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.len()).filter(|&i| !self.set.get(i) && self.info.fields[i].default.is_none())
    }

    /// Sets field `i` (kind-checked; ints widen to floats).
    ///
    /// # Errors
    /// `Error::NotFound` for an index out of range, `Error::Value` if the field is already set,
    /// `Error::Type` for a kind mismatch. On error nothing changes.
    pub fn set(&mut self, i: usize, v: Value) -> Result<(), Error> {
        let Some(field) = self.info.fields.get(i) else {
            return Err(Error::NotFound(format!(
                "field #{i} of {} ({} fields)",
                self.info.name,
                self.len()
            )));
        };
        if self.set.get(i) {
            return Err(Error::Value(format!(
                "{}: field {} set twice",
                self.info.name, field.name
            )));
        }
        let v = field
            .kind
            .coerce(v)
            .map_err(|e| in_field(e, self.info, &field.name))?;
        // SAFETY: slot `i` of our unshared block is uninitialized (`set[i]` was false); `v`
        // passed the field's kind check (invariant 4).
        unsafe { slots::init(self.block, self.layout.slots[i], v) };
        self.set.insert(i);
        Ok(())
    }

    /// Leaves field `i`, an object field (a `Ref` or `Dyn` slot), without an object for now:
    /// for hosts that restore cycles in two phases, which store the object (`record_set`,
    /// `slot_replace`) once it exists. Until then the slot holds null (`Ref`) or `Value::None`
    /// (`Dyn`) whatever the field's kind, and reads give `Value::None` (the one exception to
    /// invariant 4: memory-safe, since every reader of a slot handles both).
    ///
    /// # Errors
    /// `Error::NotFound` for an index out of range, `Error::Value` if the field is already set
    /// or is not stored as a reference slot.
    pub fn set_unresolved(&mut self, i: usize) -> Result<(), Error> {
        let Some(&at) = self.layout.slots.get(i) else {
            return Err(Error::NotFound(format!(
                "field #{i} of {} ({} fields)",
                self.info.name,
                self.len()
            )));
        };
        if self.set.get(i) || !matches!(at.repr, SlotRepr::Ref { .. } | SlotRepr::Dyn) {
            return Err(Error::Value(format!(
                "{}: field {} cannot be left unresolved",
                self.info.name, self.info.fields[i].name
            )));
        }
        // SAFETY: slot `i` of our unshared block is an uninitialized Ref or Dyn slot; null (Ref)
        // and None (Dyn) are forms every reader of those slots handles.
        unsafe { slots::init_unresolved(self.block, at) };
        self.set.insert(i);
        Ok(())
    }

    /// Fills the unset fields from their defaults and hands out the object.
    ///
    /// # Errors
    /// `Error::Type` naming the first field that is unset and has no default.
    pub fn finish(mut self) -> Result<ObjAny, Error> {
        if let Some(i) = self.missing().next() {
            return Err(Error::Type(format!(
                "{}: missing field {}",
                self.info.name, self.info.fields[i].name
            )));
        }
        for i in 0..self.len() {
            if !self.set.get(i) {
                if let Some(d) = &self.info.fields[i].default {
                    // SAFETY: slot `i` is uninitialized (unset); defaults were coerced to their
                    // field's kind at registration (invariant 4).
                    unsafe { slots::init(self.block, self.layout.slots[i], d.clone()) };
                    self.set.insert(i);
                }
            }
        }
        let block = self.block;
        // The block is the object's now: no drop (which would free it); `Filled` owns at most
        // a Vec, dropped here.
        let this = core::mem::ManuallyDrop::new(self);
        // SAFETY: `this` is never used or dropped again; its one owning field is moved out.
        drop(unsafe { ptr::read(&this.set) });
        // SAFETY: every slot is initialized (invariant 1); the deleter matches the layout.
        unsafe { crate::object::set_deleter(block, record_deleter) };
        // SAFETY: the header was written by `new`; nobody else can reach the block.
        let index = unsafe { block.as_ref() }.type_index();
        if let Some(info) = type_info(index) {
            info.count_live(true);
        }
        // SAFETY: a fully built object with one strong count, which the handle takes.
        let obj = unsafe { ObjAny::from_raw(block) };
        // Tracked if it holds a reference already (tracked invariant 1).
        // SAFETY: every slot is initialized; nobody else can reach the object yet.
        if this.layout.holds_objects && unsafe { gc::holds_reference(block, this.layout) } {
            gc::track_holder(&obj);
        }
        Ok(obj)
    }
}

impl Drop for RecordBuilder {
    fn drop(&mut self) {
        for i in 0..self.len() {
            if self.set.get(i) {
                // SAFETY: slot `i` was initialized by `set` and is dropped once; the block was
                // never shared.
                unsafe { slots::drop_in_place(self.block, self.layout.slots[i]) };
            }
        }
        // SAFETY: the block came from ALLOC with this layout and was never shared.
        unsafe { free_block_layout(self.block, self.layout.layout()) };
    }
}

fn in_field(e: Error, info: &TypeInfo, field: &str) -> Error {
    match e {
        Error::Type(m) => Error::Type(format!("{}.{field}: {m}", info.name)),
        other => other,
    }
}

/// A record type's layout (invariant 1: `declare` gives every record type one).
fn record_layout(info: &'static TypeInfo) -> &'static RecordLayout {
    match &info.layout {
        Some(l) => l,
        None => unreachable!("record type {} without a layout", info.name),
    }
}

fn record_type(type_index: u32) -> Result<&'static TypeInfo, Error> {
    let info =
        type_info(type_index).ok_or_else(|| Error::NotFound(format!("type index {type_index}")))?;
    if info.kind != TypeKind::Record {
        return Err(Error::Type(format!("{} is not a record type", info.name)));
    }
    Ok(info)
}

fn as_record(obj: &ObjAny) -> Result<&'static TypeInfo, Error> {
    let info = obj.type_info();
    if info.kind == TypeKind::Record {
        Ok(info)
    } else {
        Err(Error::type_mismatch("record", &info.name))
    }
}

fn checked_slot(obj: &ObjAny, i: usize) -> Result<(&'static TypeInfo, SlotAt), Error> {
    let info = as_record(obj)?;
    match record_layout(info).slots.get(i) {
        Some(&at) => Ok((info, at)),
        None => Err(Error::NotFound(format!(
            "field #{i} of {} ({} fields)",
            info.name,
            info.fields.len()
        ))),
    }
}

/// A copy of field `i` of the record `obj` (reference slots under the record's lock).
///
/// # Errors
/// `Error::Type` if `obj` is not a record, `Error::NotFound` for an index out of range.
pub fn record_get(obj: &ObjAny, i: usize) -> Result<Value, Error> {
    let (_, at) = checked_slot(obj, i)?;
    // SAFETY: a live record with slot `at` (checked).
    Ok(unsafe { slots::load(obj.as_ptr(), at) })
}

/// Replaces field `i` of the record `obj` with `value` after checking its kind (ints widen to
/// floats). The old value is dropped after the new one is in place and the lock is released; on
/// any error the old value is kept.
///
/// # Errors
/// `Error::Type` (not a record, kind mismatch), `Error::NotFound` (index),
/// `Error::Frozen` (frozen type).
pub fn record_set(obj: &ObjAny, i: usize, value: Value) -> Result<(), Error> {
    let (info, at) = checked_slot(obj, i)?;
    let field = &info.fields[i];
    if info.frozen {
        return Err(Error::Frozen(format!(
            "{} is frozen (field {})",
            info.name, field.name
        )));
    }
    let value = field
        .kind
        .coerce(value)
        .map_err(|e| in_field(e, info, &field.name))?;
    // SAFETY: a live record with slot `at`; the value passed the kind check (invariant 4).
    let old = unsafe { gc::replace(obj, at, value) };
    drop(old); // the old value, outside the lock (its drop may run arbitrary code)
    Ok(())
}

/// A copy of field `i` of the record `obj` with no type or index check, for hosts that have
/// already established that `obj` is a record of a type with more than `i` fields. Like
/// [`record_get`] it copies reference slots under the record's lock (invariant 3). Hosts on a
/// hot path use the slot accessors ([`slot_int`], [`slot_with_ref`], ...) with the field's
/// [`SlotAt`] instead, which skip the layout lookup.
///
/// # Safety
/// `obj` is a record object with more than `i` fields.
///
/// ```
/// use tether_runtime::{record_load_unchecked, register_record_type, FieldKind, FieldSpec, Record, Value};
/// let t = register_record_type("doc.unchecked.P", None, vec![FieldSpec::new("x", FieldKind::Int)]).unwrap();
/// let p = Record::new(t, vec![Value::Int(3)]).unwrap();
/// // SAFETY: `p` is a record of type `t`, which has one field.
/// assert_eq!(unsafe { record_load_unchecked(&p, 0) }, Value::Int(3));
/// ```
#[inline]
pub unsafe fn record_load_unchecked(obj: &ObjAny, i: usize) -> Value {
    let at = record_layout(obj.type_info()).slots[i];
    // SAFETY: a live record with slot `at` (caller).
    unsafe { slots::load(obj.as_ptr(), at) }
}

/// Replaces field `i` of the record `obj` with `value`, with no type, index, kind or frozen
/// check, and returns the old value, which the caller drops (outside any lock of its own: the
/// drop may run host code).
///
/// # Safety
/// `obj` is a record object with more than `i` fields, and `value` is of the field's kind (the
/// caller checked it, keeping invariant 4).
#[inline]
pub unsafe fn record_replace_unchecked(obj: &ObjAny, i: usize, value: Value) -> Value {
    let at = record_layout(obj.type_info()).slots[i];
    // SAFETY: a live record with slot `at`; the value is of the field's kind (caller).
    unsafe { gc::replace(obj, at, value) }
}

/// The [`Deleter`](crate::Deleter) of record objects.
///
/// # Safety
/// The `Deleter` contract, for a record object (invariants 1, 2).
unsafe fn record_deleter(p: NonNull<ObjHeader>, kind: DeleteKind) {
    // SAFETY: the header is alive until FreeBlock; invariant 2: a record type, registered
    // before any of its objects existed and never removed.
    let info = unsafe { type_info((*p.as_ptr()).type_index()) };
    let Some(info) = info else {
        unreachable!("a record whose type is not registered")
    };
    let layout = record_layout(info);
    match kind {
        DeleteKind::DropValue => {
            // SAFETY: the record's own slot; before any field slot goes (tracked invariant 1).
            if let Some(slot) = unsafe { gc::slot_in(p, layout) } {
                crate::tracked::untrack(slot);
            }
            info.count_live(false);
            for &at in &layout.slots {
                // SAFETY: strong count 0: nobody else can reach the slots; each dropped once.
                unsafe { slots::drop_in_place(p, at) };
            }
        }
        DeleteKind::FreeBlock => {
            // SAFETY: the weak count reached 0: the block is ours; invariant 1: its layout.
            unsafe { free_block_layout(p, layout.layout()) };
        }
    }
}

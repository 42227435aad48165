//! Record objects: instances of record types (schemas given at run time), their fields stored
//! inline in the object's own allocation.
//!
//! On the types floor above `kind` (every write is kind-checked) and `object` (`ObjAny`'s
//! `type_info`); uses `registry`, `schema`, `crate::object` (the header, the block's release),
//! `crate::heap` (`ALLOC`), `crate::value` and `crate::error`. `reflect` reaches the fields
//! generically through it.
//!
//! ```text
//!  tie header | ObjHeader | lock | len | Value 0 | Value 1 | ... | Value len-1
//!             ^ obj
//! ```
//!
//! # Invariants
//!
//! 1. A record object is allocated by [`Record::new`] with [`record_layout`]`(len)`, where `len`
//!    is its type's field count, stored in the object and never changed; all `len` slots are
//!    initialized before the object is handed out.
//! 2. Its `ObjHeader`'s type index is a [`TypeKind::Record`] type, and its deleter is
//!    [`record_deleter`]: record type indices are never given to other layouts.
//! 3. **The record rule.** Every read and write of a slot holds the record's lock, from every
//!    thread and every host (there is no unlocked accessor). Under the lock only native work
//!    happens: a read clones the value (atomic increments: objects, strings, functions, host
//!    handles, none of which calls the host), a write swaps it. No host code runs and no value
//!    is dropped while the lock is held: the old value of a write is dropped after the lock is
//!    released, by the caller. So a host holding its own lock (the GIL) may take a record lock,
//!    and a thread holding a record lock never waits for the host's lock: no deadlock.
//! 4. Every slot holds a value that passed its field's kind check.

use super::registry::{type_info, TypeInfo};
use super::schema::TypeKind;
use crate::error::Error;
use crate::heap::ALLOC;
use crate::object::{free_block_layout, DeleteKind, ObjAny, ObjHeader};
use crate::value::Value;
use core::alloc::Layout;
use core::cell::UnsafeCell;
use core::ptr::{self, NonNull};
use core::sync::atomic::{AtomicBool, Ordering};
use tether_alloc::allocator_api2::alloc::Allocator;

/// The fixed part of a record object.
#[repr(C)]
struct RecordHead {
    header: ObjHeader,
    lock: SlotLock,
    len: usize,
}

/// The offset of slot 0 from the object: independent of the number of fields.
const SLOT0: usize = {
    let align = core::mem::align_of::<UnsafeCell<Value>>();
    (core::mem::size_of::<RecordHead>() + align - 1) & !(align - 1)
};

/// The layout of a record with `len` fields and the offset of slot 0 (which is [`SLOT0`]).
fn record_layout(len: usize) -> Result<(Layout, usize), Error> {
    let slots = Layout::array::<UnsafeCell<Value>>(len).map_err(|_| Error::Alloc)?;
    let (layout, offset) = Layout::new::<RecordHead>()
        .extend(slots)
        .map_err(|_| Error::Alloc)?;
    Ok((layout.pad_to_align(), offset))
}

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
        let info = record_type(type_index)?;
        let n = info.fields.len();
        if values.len() > n {
            return Err(Error::Type(format!(
                "{} takes {n} fields, got {}",
                info.name,
                values.len()
            )));
        }
        let mut given = values.into_iter();
        let mut slots = Vec::with_capacity(n);
        for field in &info.fields {
            let v = match given.next() {
                Some(v) => v,
                None => field.default.clone().ok_or_else(|| {
                    Error::Type(format!("{}: missing field {}", info.name, field.name))
                })?,
            };
            slots.push(
                field
                    .kind
                    .coerce(v)
                    .map_err(|e| in_field(e, info, &field.name))?,
            );
        }
        let (layout, offset) = record_layout(n)?;
        debug_assert_eq!(offset, SLOT0);
        let block = ALLOC.allocate(layout)?.cast::<u8>();
        // SAFETY: `block` is fresh, valid and aligned for `layout`: RecordHead at 0, `n` slots at
        // `offset` (invariant 1). Ownership of each value moves into its slot.
        unsafe {
            block.cast::<RecordHead>().as_ptr().write(RecordHead {
                header: ObjHeader::new(type_index),
                lock: SlotLock(AtomicBool::new(false)),
                len: n,
            });
            let first = block.as_ptr().add(offset).cast::<UnsafeCell<Value>>();
            for (i, v) in slots.into_iter().enumerate() {
                first.add(i).write(UnsafeCell::new(v));
            }
            crate::object::set_deleter(block.cast(), record_deleter);
        }
        info.count_live(true);
        // SAFETY: a fully built object with one strong count, which the handle takes.
        Ok(unsafe { ObjAny::from_raw(block.cast()) })
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
        let _ = as_record(obj)?;
        // SAFETY: a record (checked), alive while `obj` is.
        Ok(unsafe { head(obj) }.len)
    }
}

fn in_field(e: Error, info: &TypeInfo, field: &str) -> Error {
    match e {
        Error::Type(m) => Error::Type(format!("{}.{field}: {m}", info.name)),
        other => other,
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

/// The head of a record object.
///
/// # Safety
/// `obj` is a record (invariant 2).
unsafe fn head(obj: &ObjAny) -> &RecordHead {
    // SAFETY: invariant 1; `obj`'s strong count keeps the object alive for the borrow.
    unsafe { obj.as_ptr().cast::<RecordHead>().as_ref() }
}

/// Slot `i` of a record object.
///
/// # Safety
/// `p` is a live record object and `i < len`.
unsafe fn slot<'a>(p: NonNull<ObjHeader>, i: usize) -> &'a UnsafeCell<Value> {
    // SAFETY: as below: a live record's head.
    debug_assert!(i < unsafe { (*p.as_ptr().cast::<RecordHead>()).len });
    // SAFETY: invariant 1: the layout of `len` slots, slot 0 at SLOT0; `i < len` by the caller.
    unsafe {
        &*p.as_ptr()
            .cast::<u8>()
            .add(SLOT0)
            .cast::<UnsafeCell<Value>>()
            .add(i)
    }
}

type SlotRefs<'a> = (&'static TypeInfo, &'a RecordHead, &'a UnsafeCell<Value>);

fn checked_slot(obj: &ObjAny, i: usize) -> Result<SlotRefs<'_>, Error> {
    let info = as_record(obj)?;
    // SAFETY: a record (checked above).
    let h = unsafe { head(obj) };
    if i >= h.len {
        return Err(Error::NotFound(format!(
            "field #{i} of {} ({} fields)",
            info.name, h.len
        )));
    }
    // SAFETY: a live record and i < len.
    Ok((info, h, unsafe { slot(obj.as_ptr(), i) }))
}

/// A record's lock: a test-and-test-and-set spin lock. Held only for a slot copy or swap (a few
/// native instructions: invariant 3 forbids host code and drops under it), so waiting by
/// spinning (then yielding) is cheaper than a parked mutex, and the uncontended pair is one
/// CAS and one store. Nothing under it can panic, so there is no poisoning to track.
struct SlotLock(AtomicBool);

/// Holds a [`SlotLock`] until dropped.
struct SlotGuard<'a>(&'a AtomicBool);

impl Drop for SlotGuard<'_> {
    #[inline]
    fn drop(&mut self) {
        // Release: the slot access made under the lock happens-before the next holder's.
        self.0.store(false, Ordering::Release);
    }
}

#[inline]
fn guard(h: &RecordHead) -> SlotGuard<'_> {
    let l = &h.lock.0;
    let mut spins = 0u32;
    // Acquire: pairs with the Release in SlotGuard::drop (the previous holder's access).
    while l
        .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
        .is_err()
    {
        while l.load(Ordering::Relaxed) {
            if spins < 64 {
                spins += 1;
                core::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
        }
    }
    SlotGuard(l)
}

/// A copy of field `i` of the record `obj` (under the record's lock).
///
/// # Errors
/// `Error::Type` if `obj` is not a record, `Error::NotFound` for an index out of range.
pub fn record_get(obj: &ObjAny, i: usize) -> Result<Value, Error> {
    let (_, h, cell) = checked_slot(obj, i)?;
    let _g = guard(h);
    // SAFETY: invariant 3: the lock serializes slot access.
    Ok(unsafe { (*cell.get()).clone() })
}

/// Replaces field `i` of the record `obj` with `value` after checking its kind (ints widen to
/// floats). The old value is dropped after the new one is in place and the lock is released; on
/// any error the old value is kept.
///
/// # Errors
/// `Error::Type` (not a record, kind mismatch), `Error::NotFound` (index),
/// `Error::Frozen` (frozen type).
pub fn record_set(obj: &ObjAny, i: usize, value: Value) -> Result<(), Error> {
    let (info, h, cell) = checked_slot(obj, i)?;
    let field = &info.fields[i];
    if info.frozen {
        return Err(Error::Frozen(format!(
            "{} is frozen (field {})",
            info.name, field.name
        )));
    }
    let mut value = field
        .kind
        .coerce(value)
        .map_err(|e| in_field(e, info, &field.name))?;
    {
        let _g = guard(h);
        // SAFETY: invariant 3: the lock serializes slot access.
        core::mem::swap(unsafe { &mut *cell.get() }, &mut value);
    }
    drop(value); // the old value, outside the lock (its drop may run arbitrary code)
    Ok(())
}

/// A copy of field `i` of the record `obj` with no type or index check: the host's fast path,
/// for hosts that have already established that `obj` is a record of a type with more than `i`
/// fields (e.g. through the object's type index and a schema they built the access from).
/// Like [`record_get`] it copies under the record's lock (the record rule, invariant 3).
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
    // SAFETY: the caller guarantees a live record (invariant 2 gives its head) with `i < len`.
    let (h, cell) = unsafe { (head(obj), slot(obj.as_ptr(), i)) };
    let _g = guard(h);
    // SAFETY: invariant 3: the lock serializes slot access; the clone runs no host code.
    unsafe { (*cell.get()).clone() }
}

/// Replaces field `i` of the record `obj` with `value` under the record's lock, with no type,
/// index, kind or frozen check, and returns the old value, which the caller drops (outside any
/// lock of its own: the drop may run host code).
///
/// # Safety
/// `obj` is a record object with more than `i` fields, and `value` is of the field's kind (the
/// caller checked it, keeping invariant 4).
#[inline]
pub unsafe fn record_replace_unchecked(obj: &ObjAny, i: usize, mut value: Value) -> Value {
    // SAFETY: the caller guarantees a live record with `i < len`.
    let (h, cell) = unsafe { (head(obj), slot(obj.as_ptr(), i)) };
    let _g = guard(h);
    // SAFETY: invariant 3: the lock serializes slot access.
    core::mem::swap(unsafe { &mut *cell.get() }, &mut value);
    value
}

/// The [`Deleter`](crate::Deleter) of record objects.
///
/// # Safety
/// The `Deleter` contract, for a record object (invariants 1, 2).
unsafe fn record_deleter(p: NonNull<ObjHeader>, kind: DeleteKind) {
    // SAFETY: invariant 1: `len` is set and constant.
    let len = unsafe { (*p.as_ptr().cast::<RecordHead>()).len };
    match kind {
        DeleteKind::DropValue => {
            // SAFETY: the header is alive until FreeBlock; invariant 2: a record type.
            let index = unsafe { (*p.as_ptr()).type_index() };
            if let Some(info) = type_info(index) {
                info.count_live(false);
            }
            for i in 0..len {
                // SAFETY: strong count 0: nobody else can reach the slots; each dropped once.
                unsafe { ptr::drop_in_place(slot(p, i).get()) };
            }
            // (The lock, a bare atomic, has nothing to drop.)
        }
        DeleteKind::FreeBlock => {
            // SAFETY: invariant 1: allocated with this layout (which was computable then).
            let (layout, _) = unsafe { record_layout(len).unwrap_unchecked() };
            // SAFETY: the weak count reached 0: the block is ours.
            unsafe { free_block_layout(p, layout) };
        }
    }
}

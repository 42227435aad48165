//! The unchecked slot accessors hosts use on their hot paths: given a field's [`SlotAt`] (taken
//! once from the type's [`RecordLayout`](crate::types::RecordLayout)), a read or write is a
//! few instructions: one atomic load or store for a scalar, the record's lock for a reference,
//! and for [`slot_with_ref`] no reference-count traffic at all.
//!
//! Top of the record floor: uses `slots` and `mod.rs`'s invariants.
//!
//! Every function here has the same contract, called "the slot contract" below: `obj` is a
//! record object whose type's layout has `at`: `at` was taken from the layout of `obj`'s type
//! or of one of its ancestors (a subtype keeps its parent's slots), and the function matches
//! `at.repr` (`slot_int` an `Int` slot, ...). Writes store a value of the field's kind.

use super::slots;
use crate::object::ObjAny;
use crate::types::layout::{SlotAt, SlotRepr};
use crate::value::Value;
use core::sync::atomic::Ordering::Relaxed;

/// Reads an `Int` slot (one atomic load, no lock).
///
/// ```
/// use tether_runtime::{register_record_type, slot_int, slot_set_int, FieldKind, FieldSpec, Record, Value};
/// let t = register_record_type("doc.fast.P", None, vec![FieldSpec::new("x", FieldKind::Int)]).unwrap();
/// let at = tether_runtime::type_info(t).unwrap().layout.as_ref().unwrap().slots[0];
/// let p = Record::new(t, vec![Value::Int(3)]).unwrap();
/// // SAFETY: `p` is a record of type `t`, and `at` is its Int slot.
/// unsafe {
///     assert_eq!(slot_int(&p, at), 3);
///     slot_set_int(&p, at, 4);
///     assert_eq!(slot_int(&p, at), 4);
/// }
/// ```
///
/// # Safety
/// The slot contract (module docs), for an `Int` slot.
#[inline(always)]
pub unsafe fn slot_int(obj: &ObjAny, at: SlotAt) -> i64 {
    debug_assert_eq!(at.repr, SlotRepr::Int);
    // SAFETY: the slot contract; `obj`'s count keeps the record alive.
    unsafe { slots::int(obj.as_ptr(), at) }.load(Relaxed)
}

/// Writes an `Int` slot (one atomic store, no lock).
///
/// # Safety
/// The slot contract, for an `Int` slot of a mutable type.
#[inline(always)]
pub unsafe fn slot_set_int(obj: &ObjAny, at: SlotAt, v: i64) {
    debug_assert_eq!(at.repr, SlotRepr::Int);
    // SAFETY: as in `slot_int`.
    unsafe { slots::int(obj.as_ptr(), at) }.store(v, Relaxed)
}

/// Reads a `Float` slot.
///
/// # Safety
/// The slot contract, for a `Float` slot.
#[inline(always)]
pub unsafe fn slot_float(obj: &ObjAny, at: SlotAt) -> f64 {
    debug_assert_eq!(at.repr, SlotRepr::Float);
    // SAFETY: as in `slot_int`.
    f64::from_bits(unsafe { slots::float(obj.as_ptr(), at) }.load(Relaxed))
}

/// Writes a `Float` slot.
///
/// # Safety
/// The slot contract, for a `Float` slot of a mutable type.
#[inline(always)]
pub unsafe fn slot_set_float(obj: &ObjAny, at: SlotAt, v: f64) {
    debug_assert_eq!(at.repr, SlotRepr::Float);
    // SAFETY: as in `slot_int`.
    unsafe { slots::float(obj.as_ptr(), at) }.store(v.to_bits(), Relaxed)
}

/// Reads a `Bool` slot.
///
/// # Safety
/// The slot contract, for a `Bool` slot.
#[inline(always)]
pub unsafe fn slot_bool(obj: &ObjAny, at: SlotAt) -> bool {
    debug_assert_eq!(at.repr, SlotRepr::Bool);
    // SAFETY: as in `slot_int`.
    unsafe { slots::boolean(obj.as_ptr(), at) }.load(Relaxed) != 0
}

/// Writes a `Bool` slot.
///
/// # Safety
/// The slot contract, for a `Bool` slot of a mutable type.
#[inline(always)]
pub unsafe fn slot_set_bool(obj: &ObjAny, at: SlotAt, v: bool) {
    debug_assert_eq!(at.repr, SlotRepr::Bool);
    // SAFETY: as in `slot_int`.
    unsafe { slots::boolean(obj.as_ptr(), at) }.store(u8::from(v), Relaxed)
}

/// Runs `f` on the object a `Ref` slot holds (`None` for an empty optional slot), under the
/// record's lock and without touching its reference count: `f` gets a borrow that the slot's
/// own reference keeps alive. `f` clones the handle if it needs one beyond the call.
///
/// `f` must run no host code that could reach this record (record invariant 3: only native
/// work under the lock) and must not block; taking a reference to something the object
/// already owns (a host wrapper it is bound to, say) is what it is for.
///
/// ```
/// use tether_runtime::{register_record_type, slot_with_ref, FieldKind, FieldSpec, Record, SELF_TYPE, Value};
/// let t = register_record_type(
///     "doc.fast.Node",
///     None,
///     vec![FieldSpec::new("next", FieldKind::Optional(Box::new(FieldKind::Object(SELF_TYPE)))).with_default(Value::None)],
/// )
/// .unwrap();
/// let at = tether_runtime::type_info(t).unwrap().layout.as_ref().unwrap().slots[0];
/// let tail = Record::new(t, vec![]).unwrap();
/// let head = Record::new(t, vec![Value::Object(tail.clone())]).unwrap();
/// // SAFETY: `head` and `tail` are records of type `t`, and `at` is its Ref slot.
/// unsafe {
///     assert!(slot_with_ref(&head, at, |next| next.unwrap().ptr_eq(&tail)));
///     assert!(slot_with_ref(&tail, at, |next| next.is_none()));
/// }
/// assert_eq!(tail.strong_count(), 2); // the borrow took no count
/// ```
///
/// # Safety
/// The slot contract, for a `Ref` slot.
#[inline(always)]
pub unsafe fn slot_with_ref<R>(
    obj: &ObjAny,
    at: SlotAt,
    f: impl FnOnce(Option<&ObjAny>) -> R,
) -> R {
    debug_assert!(matches!(at.repr, SlotRepr::Ref { .. }));
    let p = obj.as_ptr();
    // SAFETY: the slot contract; the lock is held while the borrow lives (`f` returns before
    // the guard drops), so no writer can drop the object the slot references.
    unsafe {
        let _g = slots::lock(p);
        let child = slots::borrow_ref(slots::ref_ptr(p, at));
        f(child.as_deref())
    }
}

/// A copy of any slot's value, as [`record_get`](crate::record_get) gives it, without its
/// checks.
///
/// # Safety
/// The slot contract.
#[inline]
pub unsafe fn slot_load(obj: &ObjAny, at: SlotAt) -> Value {
    // SAFETY: the slot contract.
    unsafe { slots::load(obj.as_ptr(), at) }
}

/// Replaces any slot's value and returns the old one (the caller drops it outside any lock of
/// its own: the drop may run host code), without [`record_set`](crate::record_set)'s checks.
///
/// # Safety
/// The slot contract; `v` is of the field's kind (record invariant 4).
#[inline]
pub unsafe fn slot_replace(obj: &ObjAny, at: SlotAt, v: Value) -> Value {
    // SAFETY: the slot contract.
    unsafe { super::gc::replace(obj, at, v) }
}

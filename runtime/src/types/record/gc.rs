//! What the cycle collector (`crate::cycles`) does to a record: freeze it (hold its lock while
//! the collector counts), list the objects its slots reference, and clear those slots.
//!
//! In the record module beside `fast`: uses `slots` (the lock, the raw slots).

use super::slots::{self, Guard};
use super::{record_layout, RecordLayout, SlotAt, SlotRepr};
use crate::object::{ObjAny, ObjHeader};
use crate::tracked::Slot;
use crate::types::registry::type_info;
use crate::value::Value;
use core::ptr::NonNull;

/// The registry-index slot of record `p` (`crate::tracked`): its owner word (Wide header), or
/// with the `narrow-header` feature the hidden slot of its layout (`RecordLayout::gc_at`).
/// `None` if its type cannot hold references.
///
/// # Safety
/// `p` is a live record object (or one being built, its header written).
pub(crate) unsafe fn slot_of<'a>(p: NonNull<ObjHeader>) -> Option<&'a Slot> {
    // SAFETY: the header is alive (caller).
    let info = type_info(unsafe { p.as_ref() }.type_index())?;
    // SAFETY: forwarded.
    unsafe { slot_in(p, info.layout.as_ref()?) }
}

/// [`slot_of`] for a record whose layout the caller has at hand.
///
/// # Safety
/// As for [`slot_of`], and `layout` is the record's.
#[inline]
pub(crate) unsafe fn slot_in<'a>(p: NonNull<ObjHeader>, layout: &RecordLayout) -> Option<&'a Slot> {
    if !layout.holds_objects {
        return None;
    }
    #[cfg(not(feature = "narrow-header"))]
    // SAFETY: a record (FLAG_RECORD) from ALLOC with the Wide header (caller).
    return Some(unsafe { crate::object::record_owner_word(p) });
    #[cfg(feature = "narrow-header")]
    {
        let at = layout.gc_at?;
        // SAFETY: the layout puts a Slot at `at` inside the block; `p` carries the block's
        // provenance (object invariant 1).
        Some(unsafe { &*p.as_ptr().cast::<u8>().add(at as usize).cast::<Slot>() })
    }
}

/// Whether the record `p` being built holds a reference in any slot.
///
/// # Safety
/// `p` is a fully initialized record of layout `layout`, not yet shared (no lock needed).
pub(crate) unsafe fn holds_reference(p: NonNull<ObjHeader>, layout: &RecordLayout) -> bool {
    layout.slots.iter().any(|&at| match at.repr {
        // SAFETY: initialized slots of an unshared record (caller).
        SlotRepr::Ref { .. } => !unsafe { slots::ref_ptr(p, at) }.is_null(),
        SlotRepr::Dyn => {
            // SAFETY: as above.
            unsafe { slots::peek_dyn(p, at) }.is_reference()
        }
        _ => false,
    })
}

/// `slots::replace` for a record's slot, tracking the record when the new value is a
/// reference ([`track_holder`], after the slot's lock is released): every write path of a
/// reference slot goes through here.
///
/// # Safety
/// As for `slots::replace`: `obj` has slot `at`, initialized; `v` is of the field's kind.
#[inline]
pub(crate) unsafe fn replace(obj: &ObjAny, at: SlotAt, v: Value) -> Value {
    let holds = v.is_reference();
    // SAFETY: forwarded (caller).
    let old = unsafe { slots::replace(obj.as_ptr(), at, v) };
    if holds {
        track_holder(obj); // it holds a reference: it may be part of a cycle now
    }
    old
}

/// A reference just went into a slot of record `obj`: the record is tracked from now on
/// (`crate::tracked`: it may be part of a cycle). Called with no lock held.
pub(crate) fn track_holder(obj: &ObjAny) {
    // SAFETY: `obj` is a live record (caller's reference).
    if let Some(slot) = unsafe { slot_of(obj.as_ptr()) } {
        // SAFETY: the record's own slot, alive as long as it is; no lock held (caller).
        unsafe { crate::tracked::track(obj.as_ptr(), slot) };
    }
}

/// A record held still: its lock, taken by [`freeze`], released when this drops.
pub(crate) struct Frozen(#[allow(dead_code)] Guard<'static>);

/// Takes the lock of the tracked record `p`, for as long as the result lives.
///
/// # Safety
/// `p` is a record object that stays alive while the result lives (tracked invariant 2: the
/// collector holds the registry's lock).
pub(crate) unsafe fn freeze(p: NonNull<ObjHeader>) -> Frozen {
    // SAFETY: forwarded (caller).
    Frozen(unsafe { slots::lock(p) })
}

/// Calls `f` with the value of every reference slot of record `p`: a `Ref` slot's object as a
/// `Value::Object` (an uncounted handle, never dropped), a `Dyn` slot's value in place.
///
/// # Safety
/// `p` is a record object frozen by the caller ([`freeze`]).
pub(crate) unsafe fn for_each_value(p: NonNull<ObjHeader>, f: &mut impl FnMut(&Value)) {
    // SAFETY: the header is alive (caller); records keep their type registered.
    let Some(info) = type_info(unsafe { p.as_ref() }.type_index()) else {
        return;
    };
    for &at in &record_layout(info).slots {
        match at.repr {
            SlotRepr::Ref { .. } => {
                // SAFETY: a Ref slot read under the lock (caller).
                if let Some(q) = NonNull::new(unsafe { slots::ref_ptr(p, at) }) {
                    // SAFETY: the slot's reference keeps `q` alive; the handle is not counted
                    // and never dropped (ManuallyDrop), only looked at.
                    let v =
                        core::mem::ManuallyDrop::new(Value::Object(unsafe { ObjAny::from_raw(q) }));
                    f(&v);
                }
            }
            // SAFETY: a Dyn slot is an initialized Value, read in place under the lock.
            SlotRepr::Dyn => f(unsafe { slots::peek_dyn(p, at) }),
            _ => {}
        }
    }
}

/// Takes every object and host reference out of record `obj`'s slots (a reference slot left
/// null reads as `None`, like an unresolved one: record invariant 4), returning them for the caller to
/// drop after the lock. The collector does this to the objects of a garbage cycle, which nobody
/// else can reach (`crate::cycles`).
pub(crate) fn clear_edges(obj: &ObjAny) -> Vec<Value> {
    let p = obj.as_ptr();
    let Some(info) = type_info(obj.type_index()) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    // SAFETY: `obj` keeps the record alive; slot access under its lock (record invariant 3).
    let _g = unsafe { slots::lock(p) };
    for &at in &record_layout(info).slots {
        match at.repr {
            // SAFETY: as above; a null Ref slot is the unresolved form (invariant 4).
            SlotRepr::Ref { .. } => out.push(unsafe { slots::take_ref(p, at) }),
            // SAFETY: as above.
            SlotRepr::Dyn if unsafe { slots::peek_dyn(p, at) }.is_reference() => {
                // SAFETY: as above.
                out.push(unsafe { slots::replace_dyn(p, at, Value::None) });
            }
            _ => {}
        }
    }
    out
}

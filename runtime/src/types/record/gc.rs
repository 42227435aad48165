//! What the cycle collector (`crate::cycles`) does to a record: freeze it (hold its lock while
//! the collector counts), list the objects its slots reference, and clear those slots.
//!
//! In the record module beside `fast`: uses `slots` (the lock, the raw slots).

use super::slots::{self, Guard};
use super::{record_layout, SlotRepr};
use crate::object::{ObjAny, ObjHeader};
use crate::types::registry::type_info;
use crate::value::Value;
use core::ptr::NonNull;

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
            SlotRepr::Dyn => {
                // SAFETY: as above.
                let v = unsafe { slots::peek_dyn(p, at) };
                if matches!(v, Value::Object(_) | Value::Opaque(_)) {
                    // SAFETY: as above.
                    out.push(unsafe { slots::replace_dyn(p, at, Value::None) });
                }
            }
            _ => {}
        }
    }
    out
}

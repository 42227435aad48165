//! The raw operations on one slot of a record object, by its [`SlotRepr`], and the record's
//! lock. Bottom of the record floor: `mod.rs` and `fast.rs` build on it.
//!
//! Scalar slots (`Int`, `Float`, `Bool`) are atomics: a read or a write is one plain load or
//! store (`Relaxed`: a field value publishes no other memory), so they need no lock and cannot
//! tear. Reference slots (`Ref`, `Dyn`) own strong references, and `Weak` slots a weak count; a
//! reader must clone (or, for `Weak`, upgrade: a CAS) what it read before a concurrent writer
//! can drop it, so both hold the record's lock (record invariant 3).

use super::super::layout::{SlotAt, SlotRepr};
use crate::object::{lock_word, ObjAny, ObjHeader, WeakAny};
use crate::value::Value;
use core::mem::ManuallyDrop;
use core::ptr::{self, NonNull};
use core::sync::atomic::{AtomicI64, AtomicU16, AtomicU64, AtomicU8, Ordering};

/// A record's lock (the `ObjHeader`'s lock word): a test-and-test-and-set spin lock. Held only
/// for a slot copy or swap (a few native instructions: record invariant 3 forbids host code and
/// drops under it), so waiting by spinning (then yielding) is cheaper than a parked mutex, and
/// the uncontended pair is one CAS and one store. Nothing under it can panic.
pub(super) struct Guard<'a>(&'a AtomicU16);

impl Drop for Guard<'_> {
    #[inline]
    fn drop(&mut self) {
        // Release: the slot access made under the lock happens-before the next holder's.
        self.0.store(0, Ordering::Release);
    }
}

/// Takes the lock of the live record `p`.
///
/// # Safety
/// `p` is a live record object (a count keeps it alive while the guard lives).
#[inline]
pub(super) unsafe fn lock<'a>(p: NonNull<ObjHeader>) -> Guard<'a> {
    // SAFETY: forwarded (caller).
    let l = unsafe { lock_word(p) };
    let mut spins = 0u32;
    // Acquire: pairs with the Release in Guard::drop (the previous holder's access).
    while l
        .compare_exchange_weak(0, 1, Ordering::Acquire, Ordering::Relaxed)
        .is_err()
    {
        while l.load(Ordering::Relaxed) != 0 {
            if spins < 64 {
                spins += 1;
                core::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
        }
    }
    Guard(l)
}

/// The address of slot `at` of the object at `p`, as a `T`.
///
/// # Safety
/// `p` is a record object whose layout has `at`, and `T` is the slot's stored type.
#[inline(always)]
unsafe fn cell<T>(p: NonNull<ObjHeader>, at: SlotAt) -> *mut T {
    // SAFETY: the layout puts the slot at `at.offset` inside the block (caller), and `p` carries
    // the whole block's provenance (object invariant 2).
    unsafe { p.as_ptr().cast::<u8>().add(at.offset as usize).cast::<T>() }
}

/// The atomic of a scalar slot.
///
/// # Safety
/// As for [`cell`], with the slot initialized; the reference is not used after the object dies.
#[inline(always)]
pub(super) unsafe fn int<'a>(p: NonNull<ObjHeader>, at: SlotAt) -> &'a AtomicI64 {
    // SAFETY: an `Int` slot is an initialized AtomicI64 (caller).
    unsafe { &*cell::<AtomicI64>(p, at) }
}

/// As [`int`], for a `Float` slot (the `f64`'s bits).
///
/// # Safety
/// As for [`int`].
#[inline(always)]
pub(super) unsafe fn float<'a>(p: NonNull<ObjHeader>, at: SlotAt) -> &'a AtomicU64 {
    // SAFETY: a `Float` slot is an initialized AtomicU64 (caller).
    unsafe { &*cell::<AtomicU64>(p, at) }
}

/// As [`int`], for a `Bool` slot (0 or 1).
///
/// # Safety
/// As for [`int`].
#[inline(always)]
pub(super) unsafe fn boolean<'a>(p: NonNull<ObjHeader>, at: SlotAt) -> &'a AtomicU8 {
    // SAFETY: a `Bool` slot is an initialized AtomicU8 (caller).
    unsafe { &*cell::<AtomicU8>(p, at) }
}

/// The pointer a `Ref` slot holds (null: `None`), read under the lock.
///
/// # Safety
/// As for [`cell`]; the record's lock is held.
#[inline(always)]
pub(super) unsafe fn ref_ptr(p: NonNull<ObjHeader>, at: SlotAt) -> *mut ObjHeader {
    // SAFETY: a `Ref` slot holds a pointer (caller); the lock serializes access.
    unsafe { *cell::<*mut ObjHeader>(p, at) }
}

/// A borrowed handle to the object a `Ref` slot points to: no count of its own, valid while
/// the lock is held (the slot's reference keeps it alive).
///
/// # Safety
/// `raw` came from [`ref_ptr`] under a lock that is still held.
#[inline(always)]
pub(super) unsafe fn borrow_ref(raw: *mut ObjHeader) -> Option<ManuallyDrop<ObjAny>> {
    // SAFETY: a non-null slot pointer is a strong reference the slot owns (caller: locked).
    NonNull::new(raw).map(|nn| ManuallyDrop::new(unsafe { ObjAny::from_raw(nn) }))
}

/// The slot form of a value of the slot's kind, as raw bits ready to store: scalars as their
/// integer, references as the pointer whose count the slot takes over.
#[inline(always)]
fn into_bits(repr: SlotRepr, v: Value) -> SlotBits {
    match (repr, v) {
        (SlotRepr::Int, Value::Int(i)) => SlotBits::Word(i as u64),
        (SlotRepr::Float, Value::Float(f)) => SlotBits::Word(f.to_bits()),
        (SlotRepr::Bool, Value::Bool(b)) => SlotBits::Word(u64::from(b)),
        (SlotRepr::Ref { .. }, Value::Object(o)) => SlotBits::Ref(o.into_raw().as_ptr()),
        (SlotRepr::Ref { optional: true } | SlotRepr::Weak, Value::None) => {
            SlotBits::Ref(ptr::null_mut())
        }
        // The slot keeps a weak count; the strong reference given is released here (before any
        // lock is taken: its drop may run host code).
        (SlotRepr::Weak, Value::Object(o)) => SlotBits::Ref(o.downgrade().into_raw().as_ptr()),
        (SlotRepr::Dyn, v) => SlotBits::Dyn(v),
        // Record invariant 4: values are kind-checked before they reach a slot, and `declare`
        // gives each kind the form that holds all its values.
        (repr, v) => wrong_form(repr, &v),
    }
}

#[cold]
#[inline(never)]
fn wrong_form(repr: SlotRepr, v: &Value) -> ! {
    unreachable!("a {} value for a {repr:?} slot", v.kind_name())
}

enum SlotBits {
    Word(u64),
    Ref(*mut ObjHeader),
    Dyn(Value),
}

/// The value an owned slot form stands for.
#[inline(always)]
fn from_bits(repr: SlotRepr, bits: SlotBits) -> Value {
    match (repr, bits) {
        (SlotRepr::Int, SlotBits::Word(w)) => Value::Int(w as i64),
        (SlotRepr::Float, SlotBits::Word(w)) => Value::Float(f64::from_bits(w)),
        (SlotRepr::Bool, SlotBits::Word(w)) => Value::Bool(w != 0),
        (SlotRepr::Weak, SlotBits::Ref(raw)) => match NonNull::new(raw) {
            // SAFETY: the slot owned this weak count; the caller took it out of the slot. The
            // object, if it still lives, is upgraded; the weak count is released with the handle.
            Some(nn) => unsafe { WeakAny::from_raw(nn) }
                .upgrade()
                .map_or(Value::None, Value::Object),
            None => Value::None,
        },
        (_, SlotBits::Ref(raw)) => match NonNull::new(raw) {
            // SAFETY: the slot owned this strong reference; the caller took it out of the slot.
            Some(nn) => Value::Object(unsafe { ObjAny::from_raw(nn) }),
            None => Value::None,
        },
        (_, SlotBits::Dyn(v)) => v,
        (repr, _) => unreachable!("slot form of {repr:?}"),
    }
}

/// Writes the first value of a slot of an object not yet shared.
///
/// # Safety
/// As for [`cell`]; the slot is uninitialized and nobody else can reach the object; `v` is of
/// the field's kind.
#[inline]
pub(super) unsafe fn init(p: NonNull<ObjHeader>, at: SlotAt, v: Value) {
    // SAFETY: the slot is ours to initialize (caller), with its stored type.
    unsafe {
        match into_bits(at.repr, v) {
            SlotBits::Word(w) => match at.repr {
                SlotRepr::Bool => cell::<AtomicU8>(p, at).write(AtomicU8::new(w as u8)),
                _ => cell::<AtomicU64>(p, at).write(AtomicU64::new(w)),
            },
            SlotBits::Ref(raw) => cell::<*mut ObjHeader>(p, at).write(raw),
            SlotBits::Dyn(v) => cell::<Value>(p, at).write(v),
        }
    }
}

/// Writes "no object yet" into a fresh `Ref` (null) or `Dyn` (`Value::None`) slot, whatever
/// its field's kind (an unresolved reference: see `RecordBuilder::set_unresolved`).
///
/// # Safety
/// As for [`init`], for a `Ref` or `Dyn` slot.
pub(super) unsafe fn init_unresolved(p: NonNull<ObjHeader>, at: SlotAt) {
    // SAFETY: the slot is ours to initialize (caller), of the form matched.
    unsafe {
        match at.repr {
            SlotRepr::Ref { .. } => cell::<*mut ObjHeader>(p, at).write(ptr::null_mut()),
            SlotRepr::Dyn => cell::<Value>(p, at).write(Value::None),
            repr => unreachable!("an unresolved {repr:?} slot"),
        }
    }
}

/// A copy of the slot's value (references cloned: native atomic increments only).
///
/// # Safety
/// As for [`int`]; `p` is kept alive by the caller's count.
pub(super) unsafe fn load(p: NonNull<ObjHeader>, at: SlotAt) -> Value {
    // SAFETY: an initialized slot of a live record (caller); locked slots under the lock.
    unsafe {
        match at.repr {
            SlotRepr::Int => Value::Int(int(p, at).load(Ordering::Relaxed)),
            SlotRepr::Float => Value::Float(f64::from_bits(float(p, at).load(Ordering::Relaxed))),
            SlotRepr::Bool => Value::Bool(boolean(p, at).load(Ordering::Relaxed) != 0),
            SlotRepr::Ref { .. } => {
                let _g = lock(p);
                borrow_ref(ref_ptr(p, at)).map_or(Value::None, |o| Value::Object((*o).clone()))
            }
            SlotRepr::Weak => {
                let _g = lock(p);
                // The slot's weak count keeps the block; upgrading is a native CAS.
                NonNull::new(ref_ptr(p, at))
                    .and_then(|nn| ManuallyDrop::new(WeakAny::from_raw(nn)).upgrade())
                    .map_or(Value::None, Value::Object)
            }
            SlotRepr::Dyn => {
                let _g = lock(p);
                (*cell::<Value>(p, at)).clone()
            }
        }
    }
}

/// Stores `v` and returns the old value, which the caller drops (outside any lock: the drop
/// may run host code).
///
/// # Safety
/// As for [`load`]; `v` is of the field's kind.
pub(super) unsafe fn replace(p: NonNull<ObjHeader>, at: SlotAt, v: Value) -> Value {
    let new = into_bits(at.repr, v);
    // SAFETY: an initialized slot of a live record (caller); locked slots under the lock.
    let old = unsafe {
        match new {
            SlotBits::Word(w) => SlotBits::Word(match at.repr {
                SlotRepr::Int => int(p, at).swap(w as i64, Ordering::Relaxed) as u64,
                SlotRepr::Float => float(p, at).swap(w, Ordering::Relaxed),
                _ => u64::from(boolean(p, at).swap(w as u8, Ordering::Relaxed)),
            }),
            SlotBits::Ref(raw) => {
                let _g = lock(p);
                SlotBits::Ref(cell::<*mut ObjHeader>(p, at).replace(raw))
            }
            SlotBits::Dyn(v) => {
                let _g = lock(p);
                SlotBits::Dyn(cell::<Value>(p, at).replace(v))
            }
        }
    };
    from_bits(at.repr, old)
}

/// The value of a `Dyn` slot, borrowed in place (for the cycle collector: `super::gc`).
///
/// # Safety
/// As for [`cell`], a `Dyn` slot, initialized; the record's lock is held by the caller for as
/// long as the reference is used.
#[inline]
pub(super) unsafe fn peek_dyn<'a>(p: NonNull<ObjHeader>, at: SlotAt) -> &'a Value {
    // SAFETY: forwarded (caller).
    unsafe { &*cell::<Value>(p, at) }
}

/// Takes the reference out of a `Ref` slot, leaving it null (the unresolved form, read as
/// `None`: record invariant 4).
///
/// # Safety
/// As for [`cell`], a `Ref` slot, initialized; the caller holds the record's lock.
pub(super) unsafe fn take_ref(p: NonNull<ObjHeader>, at: SlotAt) -> Value {
    // SAFETY: forwarded (caller); the slot owned the reference, now ours.
    unsafe {
        let raw = cell::<*mut ObjHeader>(p, at).replace(ptr::null_mut());
        from_bits(at.repr, SlotBits::Ref(raw))
    }
}

/// Replaces the value of a `Dyn` slot, returning the old one.
///
/// # Safety
/// As for [`cell`], a `Dyn` slot, initialized; the caller holds the record's lock.
pub(super) unsafe fn replace_dyn(p: NonNull<ObjHeader>, at: SlotAt, v: Value) -> Value {
    // SAFETY: forwarded (caller).
    unsafe { cell::<Value>(p, at).replace(v) }
}

/// Drops the slot's value in place.
///
/// # Safety
/// As for [`cell`]; the slot is initialized, nobody else can reach the object (strong count 0,
/// or never shared), and the slot is not used again.
pub(super) unsafe fn drop_in_place(p: NonNull<ObjHeader>, at: SlotAt) {
    // SAFETY: the slot's owned reference or value is dropped once (caller).
    unsafe {
        match at.repr {
            SlotRepr::Int | SlotRepr::Float | SlotRepr::Bool => {}
            SlotRepr::Ref { .. } => drop(from_bits(at.repr, SlotBits::Ref(ref_ptr(p, at)))),
            SlotRepr::Weak => {
                if let Some(nn) = NonNull::new(ref_ptr(p, at)) {
                    drop(WeakAny::from_raw(nn)); // release the weak count (no upgrade)
                }
            }
            SlotRepr::Dyn => ptr::drop_in_place(cell::<Value>(p, at)),
        }
    }
}

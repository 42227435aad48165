//! The registry itself: [`TypeInfo`] entries in a lock-free [`Table`], the name index and the
//! next index behind a mutex, the lookups ([`type_info`], [`type_index_of`], [`is_subtype`])
//! and [`publish`], the one way in.
//!
//! On the types floor above `schema`; uses `crate::table` and the name table of
//! `crate::object`. Owns invariants 1 to 4 of the module docs of `crate::types` (1 and 2 through
//! the table's own invariants, 3 through `declare`'s parent check, 4 in `publish`).

use super::layout::RecordLayout;
use super::schema::{FieldInfo, TypeKind, ANY_OBJECT};
use crate::error::Error;
use crate::object::publish_name;
use crate::table::{Table, CAPACITY};
use core::ffi::c_void;
use core::ptr;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use tether_alloc::ShardedCounter;

/// The most types a process can register.
pub const MAX_TYPES: u32 = CAPACITY as u32;

/// The lock-free read side (invariants 1, 2).
static TABLE: Table<TypeInfo> = Table::new();

/// The write side: the next index and the name index.
pub(super) struct Registry {
    pub(super) next: u32,
    pub(super) by_name: BTreeMap<String, u32>,
}

static REGISTRY: Mutex<Registry> = Mutex::new(Registry {
    next: 0,
    by_name: BTreeMap::new(),
});

/// A registered type.
#[derive(Debug)]
pub struct TypeInfo {
    /// Its index (what objects store in their header).
    pub index: u32,
    /// Its qualified name (unique among live names).
    pub name: String,
    /// Its parent type, if any.
    pub parent: Option<u32>,
    /// Reflected fields. For records: the parent's fields, then the type's own, in slot order.
    pub fields: Vec<FieldInfo>,
    /// Rust type or record.
    pub kind: TypeKind,
    /// Whether writes are refused (records declared frozen).
    pub frozen: bool,
    /// For record types, how their objects store the fields (`None` for Rust types).
    pub layout: Option<RecordLayout>,
    host_data: AtomicPtr<c_void>,
    /// The size of one object of a Rust type (its `ObjBox<T>`), noted when the type registers
    /// (0 until then, and for records, whose layout says it).
    object_size: AtomicUsize,
    /// Live objects of a record type (see [`TypeInfo::live_objects`]): per-thread shards, so
    /// building and destroying a record costs no atomic read-modify-write for it. An object is
    /// counted out by its deleter, after the last drop's acquire fence, so its counting in
    /// happens-before its counting out (what `ShardedCounter::get`'s zero relies on).
    live: ShardedCounter,
}

impl TypeInfo {
    /// An entry to [`publish`]: no host data, no live objects, index assigned by `publish`.
    pub(super) fn unpublished(
        name: &str,
        parent: Option<u32>,
        fields: Vec<FieldInfo>,
        kind: TypeKind,
        frozen: bool,
        layout: Option<RecordLayout>,
    ) -> TypeInfo {
        TypeInfo {
            index: 0,
            name: name.to_owned(),
            parent,
            fields,
            kind,
            frozen,
            layout,
            host_data: AtomicPtr::new(ptr::null_mut()),
            object_size: AtomicUsize::new(0),
            live: ShardedCounter::new(),
        }
    }

    /// How many objects of this record type are alive (built and not yet destroyed); always 0
    /// for Rust types, which are not counted. A host uses it to keep its class for the type
    /// alive while objects of the type exist (they may be wrapped again later).
    ///
    /// The count is a snapshot: another thread may build or destroy an object right after.
    pub fn live_objects(&self) -> usize {
        self.live.get()
    }

    /// The bytes one object of this type occupies after its allocator header (the record
    /// layout's size, or a Rust type's `ObjBox<T>`), if known.
    ///
    /// ```
    /// use tether_runtime::{object_type, Object};
    /// struct Pt(u64, u64);
    /// object_type!(Pt, "doc.object_bytes.Pt");
    /// assert_eq!(Pt::type_info().object_bytes(), Some(16 + 16)); // ObjHeader + the value
    /// ```
    pub fn object_bytes(&self) -> Option<usize> {
        match &self.layout {
            Some(l) => Some(l.layout().size()),
            None => Some(self.object_size.load(Ordering::Relaxed)).filter(|&n| n != 0),
        }
    }

    /// Notes the size of one object of this Rust type (once, at registration).
    pub(crate) fn note_object_size(&self, bytes: usize) {
        self.object_size.store(bytes, Ordering::Relaxed);
    }

    /// Counts an object of this record type in (`true`) or out (`false`).
    pub(crate) fn count_live(&self, born: bool) {
        // A statistic for hosts, read as a snapshot; it orders nothing.
        if born {
            self.live.add(1);
        } else {
            self.live.sub(1);
        }
    }

    /// What the host attached ([`set_host_data`](Self::set_host_data)), or null.
    pub fn host_data(&self) -> *mut c_void {
        // Acquire: pairs with the Release in set_host_data, so whatever the pointer refers to
        // (initialized by the host before storing it) is visible.
        self.host_data.load(Ordering::Acquire)
    }

    /// Attaches a host pointer (e.g. the Python class object for this type).
    ///
    /// ```
    /// use tether_runtime::{object_type, Object};
    /// struct Widget;
    /// object_type!(Widget, "doc.host_data.Widget");
    /// static CLASS: u8 = 0;
    /// let p = &CLASS as *const u8 as *mut core::ffi::c_void;
    /// Widget::type_info().set_host_data(p);
    /// assert_eq!(Widget::type_info().host_data(), p);
    /// ```
    pub fn set_host_data(&self, data: *mut c_void) {
        // Release: publishes the host's initialization of `data` (see host_data).
        self.host_data.store(data, Ordering::Release);
    }

    /// Stores `data` only if nothing is attached yet; returns what is attached afterwards.
    pub fn init_host_data(&self, data: *mut c_void) -> *mut c_void {
        // AcqRel: publish ours (Release) or see the winner's (Acquire).
        match self.host_data.compare_exchange(
            ptr::null_mut(),
            data,
            Ordering::AcqRel,
            Ordering::Acquire,
        ) {
            Ok(_) => data,
            Err(existing) => existing,
        }
    }

    /// The index of the field named `name`.
    pub fn field_index(&self, name: &str) -> Option<usize> {
        self.fields.iter().position(|f| f.name == name)
    }

    /// The parent's entry.
    pub fn parent_info(&self) -> Option<&'static TypeInfo> {
        self.parent.and_then(type_info)
    }
}

/// The registry entry of a type index (lock-free).
///
/// ```
/// use tether_runtime::{object_type, type_index_of, type_info, Object};
/// struct Gadget;
/// object_type!(Gadget, "doc.type_info.Gadget");
/// let i = Gadget::type_index();
/// assert_eq!(type_index_of("doc.type_info.Gadget"), Some(i));
/// assert_eq!(type_info(i).unwrap().index, i);
/// assert!(type_info(u32::MAX - 1).is_none());
/// ```
pub fn type_info(index: u32) -> Option<&'static TypeInfo> {
    TABLE.get(index)
}

/// The index currently registered under `name`.
pub fn type_index_of(name: &str) -> Option<u32> {
    lock().by_name.get(name).copied()
}

/// How many types are registered.
pub fn type_count() -> u32 {
    lock().next
}

/// Whether `child` is `ancestor` or one of its subtypes ([`ANY_OBJECT`] is everyone's
/// ancestor).
pub fn is_subtype(child: u32, ancestor: u32) -> bool {
    if ancestor == ANY_OBJECT {
        return true;
    }
    let mut t = child;
    loop {
        if t == ancestor {
            return true;
        }
        match type_info(t).and_then(|i| i.parent) {
            Some(p) => t = p,
            None => return false,
        }
    }
}

pub(super) fn lock() -> MutexGuard<'static, Registry> {
    // Registry updates cannot panic midway (they are a push and an insert), so a poisoned lock
    // still guards a consistent registry.
    REGISTRY.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Publishes a fully built entry under the next index. Called with the registry lock held
/// (which serializes the writers of both tables: table invariant 3).
pub(super) fn publish(reg: &mut Registry, mut info: TypeInfo) -> Result<u32, Error> {
    let index = reg.next;
    if index >= MAX_TYPES {
        return Err(Error::Value(format!(
            "cannot register type {}: the registry is full ({MAX_TYPES} types)",
            info.name
        )));
    }
    info.index = index;
    reg.by_name.insert(info.name.clone(), index);
    let entry: &'static TypeInfo = Box::leak(Box::new(info));
    // Invariant 4: the name first, then the entry (whose Release store publishes both).
    publish_name(index, &entry.name);
    // Release (in `set`): invariant 2.
    TABLE.set(index, entry);
    reg.next = index + 1;
    Ok(index)
}

//! Native containers: [`List`] (a sequence) and [`Map`] (an insertion-ordered map with `str`,
//! `int`, `bytes` or object-identity keys), objects like any other, so a host ties one wrapper
//! to each and keeps the identity of their elements (an element that is an object is a strong
//! reference; its host wrapper is the object's canonical one).
//!
//! Top floor beside `demo`: uses only the public API below it (objects, values, field kinds).
//!
//! Invariants:
//! 1. Every element passed its container's kind check ([`FieldKind::check`]) before it went in;
//!    an operation that would insert several values checks them all first, and changes nothing
//!    if one fails.
//! 2. The element lock is held only for the container's own work: no host code runs under it.
//!    Values that leave a container (replaced, removed, cleared) are returned to the caller,
//!    which drops them after the lock is gone (a dropped value may release a host object, whose
//!    destructor may run host code that uses this very container).
//! 3. The host tag ([`List::host_tag`], [`Map::host_tag`]) is opaque here: a host stores what it
//!    needs to convert elements (tether-py: its element spec), set once, before the container is
//!    shared.
//!
//! Freeing a deep structure of containers takes bounded stack: elements are objects, whose
//! destruction goes through the runtime's trashcan.
//!
//! ```
//! use tether_runtime::containers::{List, Map, MapKey};
//! use tether_runtime::{FieldKind, ObjRef, Value};
//!
//! let list = ObjRef::new(List::new(FieldKind::Int));
//! list.push(Value::Int(1)).unwrap();
//! list.extend(vec![Value::Int(2), Value::Int(3)]).unwrap();
//! assert!(list.extend(vec![Value::Int(4), Value::Str("x".into())]).is_err()); // all or nothing
//! assert_eq!(list.snapshot(), vec![Value::Int(1), Value::Int(2), Value::Int(3)]);
//!
//! let map = ObjRef::new(Map::new(FieldKind::Str, FieldKind::Any));
//! map.insert(MapKey::Str("a".into()), Value::Int(1)).unwrap();
//! assert_eq!(map.get(&MapKey::Str("a".into())), Some(Value::Int(1)));
//! ```

use crate::error::Error;
use crate::types::FieldKind;
use crate::value::Value;
use crate::{object_type, ObjAny};
use core::ffi::c_void;
use core::hash::{Hash, Hasher};
use core::sync::atomic::{AtomicPtr, AtomicU64, Ordering};
use indexmap::IndexMap;
use std::sync::{Arc, Mutex, MutexGuard};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while held leaves the data consistent: every operation's effect is one call on
    // the collection (invariant 2 keeps host code out).
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn check_all(kind: &FieldKind, values: &[Value]) -> Result<(), Error> {
    for (i, v) in values.iter().enumerate() {
        kind.check(v)
            .map_err(|e| Error::Type(format!("item {i}: {e}")))?;
    }
    Ok(())
}

/// A sequence of values of one kind.
#[derive(Debug)]
pub struct List {
    elem: FieldKind,
    host: AtomicPtr<c_void>,
    /// Bumped by every change, under the lock (what a compare-and-replace checks).
    version: AtomicU64,
    items: Mutex<Vec<Value>>,
    /// Its index in the cycle collector's registry (`crate::tracked`).
    gc: crate::tracked::Slot,
}

object_type!(List, "tether.List", traced);

impl Drop for List {
    fn drop(&mut self) {
        crate::tracked::untrack(&self.gc); // before the items go (tracked invariant 1)
    }
}

impl List {
    /// An empty list whose elements are of kind `elem`.
    pub fn new(elem: FieldKind) -> List {
        List {
            elem,
            host: AtomicPtr::new(core::ptr::null_mut()),
            version: AtomicU64::new(0),
            items: Mutex::new(Vec::new()),
            gc: AtomicPtr::new(core::ptr::without_provenance_mut(crate::tracked::UNTRACKED)),
        }
    }

    /// A list of `values`, each checked against `elem` (invariant 1).
    ///
    /// # Errors
    /// `Error::Type` naming the first value of the wrong kind.
    pub fn from_values(elem: FieldKind, values: Vec<Value>) -> Result<List, Error> {
        check_all(&elem, &values)?;
        let l = List::new(elem);
        *lock(&l.items) = values;
        Ok(l)
    }

    /// The element kind.
    pub fn elem(&self) -> &FieldKind {
        &self.elem
    }

    #[doc(hidden)]
    pub(crate) fn __tracked_slot(&self) -> &crate::tracked::Slot {
        &self.gc
    }

    /// The items, locked (for the cycle collector, which holds them still while it counts:
    /// `crate::cycles`).
    pub(crate) fn lock_items(&self) -> MutexGuard<'_, Vec<Value>> {
        lock(&self.items)
    }

    /// The elements, locked for a change (the version moves on; Relaxed: the version is only
    /// read and written under the lock, which orders it).
    fn change(&self) -> MutexGuard<'_, Vec<Value>> {
        let g = lock(&self.items);
        self.version.fetch_add(1, Ordering::Relaxed);
        g
    }

    /// Copies of all elements and the version they are of (see [`replace_if`](Self::replace_if)).
    pub fn snapshot_versioned(&self) -> (Vec<Value>, u64) {
        let g = lock(&self.items);
        (g.clone(), self.version.load(Ordering::Relaxed))
    }

    /// Replaces every element by `values` if nothing changed since `version` (a host's sort:
    /// read, sort outside the lock, write back); returns the old elements, or `None` if the
    /// list changed meanwhile (then nothing is done).
    ///
    /// # Errors
    /// `Error::Type` naming the first value of the wrong kind.
    pub fn replace_if(
        &self,
        version: u64,
        values: Vec<Value>,
    ) -> Result<Option<Vec<Value>>, Error> {
        check_all(&self.elem, &values)?;
        let mut g = lock(&self.items);
        if self.version.load(Ordering::Relaxed) != version {
            return Ok(None);
        }
        self.version.fetch_add(1, Ordering::Relaxed);
        Ok(Some(core::mem::replace(&mut *g, values)))
    }

    /// Removes and returns element `i`, counted from the end if negative (Python's `pop`).
    pub fn pop(&self, i: isize) -> Option<Value> {
        let mut items = self.change();
        let n = items.len() as isize;
        let j = if i < 0 { i + n } else { i };
        (0..n).contains(&j).then(|| items.remove(j as usize))
    }

    /// Removes element `i` if it is still `expected` (the same object, or an equal value):
    /// a host's `remove(x)` finds the index outside the lock, then removes it here.
    pub fn remove_if(&self, i: usize, expected: &Value) -> Option<Value> {
        let mut items = self.change();
        let same = items.get(i).is_some_and(|v| match (v, expected) {
            (Value::Object(a), Value::Object(b)) => a.as_ptr() == b.as_ptr(),
            (a, b) => a == b,
        });
        same.then(|| items.remove(i))
    }

    /// The host's tag (null until set; invariant 3). Acquire: pairs with the Release in
    /// [`set_host_tag`](Self::set_host_tag), so what the tag points to is visible.
    pub fn host_tag(&self) -> *mut c_void {
        self.host.load(Ordering::Acquire)
    }

    /// Sets the host's tag (invariant 3). Release: what it points to is published with it.
    pub fn set_host_tag(&self, tag: *mut c_void) {
        self.host.store(tag, Ordering::Release);
    }

    /// The number of elements.
    pub fn len(&self) -> usize {
        lock(&self.items).len()
    }

    /// Whether there are no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A copy of element `i` (objects as new strong references).
    pub fn get(&self, i: usize) -> Option<Value> {
        lock(&self.items).get(i).cloned()
    }

    /// Runs `f` on element `i` under the lock (no copy). `f` must not run host code
    /// (invariant 2).
    pub fn with_item<R>(&self, i: usize, f: impl FnOnce(Option<&Value>) -> R) -> R {
        f(lock(&self.items).get(i))
    }

    /// Runs `f` on all elements under the lock (no copies). `f` must not run host code
    /// (invariant 2).
    pub fn with_items<R>(&self, f: impl FnOnce(&[Value]) -> R) -> R {
        f(&lock(&self.items))
    }

    /// Copies of all elements, in order.
    pub fn snapshot(&self) -> Vec<Value> {
        lock(&self.items).clone()
    }

    /// Copies of the elements in `start..end` (clamped), every `step`-th (`step` > 0).
    pub fn slice(&self, start: usize, end: usize, step: usize) -> Vec<Value> {
        let items = lock(&self.items);
        let end = end.min(items.len());
        if start >= end {
            return Vec::new();
        }
        items[start..end]
            .iter()
            .step_by(step.max(1))
            .cloned()
            .collect()
    }

    /// Replaces element `i`; returns the old value (drop it after the call: invariant 2).
    ///
    /// # Errors
    /// `Error::Type` for a value of the wrong kind, `Error::Value` for an index out of range.
    pub fn set(&self, i: usize, v: Value) -> Result<Value, Error> {
        self.elem.check(&v)?;
        let mut items = self.change();
        match items.get_mut(i) {
            Some(slot) => Ok(core::mem::replace(slot, v)),
            None => Err(Error::Value(format!("list index {i} out of range"))),
        }
    }

    /// Inserts `v` before index `i` (clamped to the length).
    ///
    /// # Errors
    /// `Error::Type` for a value of the wrong kind.
    pub fn insert(&self, i: usize, v: Value) -> Result<(), Error> {
        self.elem.check(&v)?;
        let mut items = self.change();
        let i = i.min(items.len());
        items.insert(i, v);
        Ok(())
    }

    /// Appends `v`.
    ///
    /// # Errors
    /// `Error::Type` for a value of the wrong kind.
    pub fn push(&self, v: Value) -> Result<(), Error> {
        self.elem.check(&v)?;
        self.change().push(v);
        Ok(())
    }

    /// Appends all of `values`, or none of them (invariant 1).
    ///
    /// # Errors
    /// `Error::Type` naming the first value of the wrong kind.
    pub fn extend(&self, values: Vec<Value>) -> Result<(), Error> {
        check_all(&self.elem, &values)?;
        self.change().extend(values);
        Ok(())
    }

    /// Removes and returns element `i`.
    pub fn remove(&self, i: usize) -> Option<Value> {
        let mut items = self.change();
        (i < items.len()).then(|| items.remove(i))
    }

    /// Replaces the elements at `start..end` (clamped) by `values`, all checked first; returns
    /// the removed ones (invariant 2).
    ///
    /// # Errors
    /// `Error::Type` naming the first value of the wrong kind; nothing changes.
    pub fn splice(
        &self,
        start: usize,
        end: usize,
        values: Vec<Value>,
    ) -> Result<Vec<Value>, Error> {
        check_all(&self.elem, &values)?;
        let mut items = self.change();
        let end = end.min(items.len());
        let start = start.min(end);
        Ok(items.splice(start..end, values).collect())
    }

    /// Replaces the elements at `indexes` (each in range, as an extended slice gives them) by
    /// `values`, one each, all checked first; returns the old ones.
    ///
    /// # Errors
    /// `Error::Type` for a value of the wrong kind, `Error::Value` if the counts differ or an
    /// index is out of range; nothing changes.
    pub fn set_many(&self, indexes: &[usize], values: Vec<Value>) -> Result<Vec<Value>, Error> {
        if indexes.len() != values.len() {
            return Err(Error::Value(format!(
                "attempt to assign sequence of size {} to extended slice of size {}",
                values.len(),
                indexes.len()
            )));
        }
        check_all(&self.elem, &values)?;
        let mut items = self.change();
        if indexes.iter().any(|&i| i >= items.len()) {
            return Err(Error::Value("list index out of range".into()));
        }
        Ok(indexes
            .iter()
            .zip(values)
            .map(|(&i, v)| core::mem::replace(&mut items[i], v))
            .collect())
    }

    /// Removes the elements at `indexes` (any order, each once); returns them.
    pub fn remove_many(&self, indexes: &[usize]) -> Vec<Value> {
        let mut items = self.change();
        let mut sorted: Vec<usize> = indexes
            .iter()
            .copied()
            .filter(|&i| i < items.len())
            .collect();
        sorted.sort_unstable();
        sorted.dedup();
        sorted.iter().rev().map(|&i| items.remove(i)).collect()
    }

    /// Replaces every element by `values` (all checked first); returns the old ones.
    ///
    /// # Errors
    /// `Error::Type` naming the first value of the wrong kind; nothing changes.
    pub fn replace_all(&self, values: Vec<Value>) -> Result<Vec<Value>, Error> {
        check_all(&self.elem, &values)?;
        Ok(core::mem::replace(&mut *self.change(), values))
    }

    /// Reverses the elements in place.
    pub fn reverse(&self) {
        self.change().reverse();
    }
}

/// A map key: text, an integer, bytes, or an object compared by identity.
#[derive(Debug, Clone)]
pub enum MapKey {
    /// A `str` key.
    Str(Arc<str>),
    /// An `int` key.
    Int(i64),
    /// A `bytes` key.
    Bytes(Arc<[u8]>),
    /// An object key, by identity (the map holds a strong reference).
    Object(ObjAny),
}

impl PartialEq for MapKey {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (MapKey::Str(a), MapKey::Str(b)) => a == b,
            (MapKey::Int(a), MapKey::Int(b)) => a == b,
            (MapKey::Bytes(a), MapKey::Bytes(b)) => a == b,
            (MapKey::Object(a), MapKey::Object(b)) => a.as_ptr() == b.as_ptr(),
            _ => false,
        }
    }
}

impl Eq for MapKey {}

impl Hash for MapKey {
    fn hash<H: Hasher>(&self, h: &mut H) {
        self.as_ref().hash(h);
    }
}

/// A borrowed [`MapKey`], for lookups that allocate nothing (a `str` key is looked up by its
/// text, not copied into an `Arc` first).
#[derive(Debug, Clone, Copy)]
pub enum MapKeyRef<'a> {
    /// A `str` key.
    Str(&'a str),
    /// An `int` key.
    Int(i64),
    /// A `bytes` key.
    Bytes(&'a [u8]),
    /// An object key, by identity.
    Object(*const ()),
}

impl Hash for MapKeyRef<'_> {
    fn hash<H: Hasher>(&self, h: &mut H) {
        // One tag byte and the content, the same for a key and its borrowed form.
        match *self {
            MapKeyRef::Str(s) => {
                0u8.hash(h);
                s.hash(h);
            }
            MapKeyRef::Int(i) => {
                1u8.hash(h);
                i.hash(h);
            }
            MapKeyRef::Bytes(b) => {
                2u8.hash(h);
                b.hash(h);
            }
            MapKeyRef::Object(p) => {
                3u8.hash(h);
                p.hash(h);
            }
        }
    }
}

impl indexmap::Equivalent<MapKey> for MapKeyRef<'_> {
    fn equivalent(&self, key: &MapKey) -> bool {
        match (*self, key) {
            (MapKeyRef::Str(a), MapKey::Str(b)) => a == &**b,
            (MapKeyRef::Int(a), MapKey::Int(b)) => a == *b,
            (MapKeyRef::Bytes(a), MapKey::Bytes(b)) => a == &**b,
            (MapKeyRef::Object(a), MapKey::Object(b)) => {
                a == b.as_ptr().as_ptr().cast_const().cast()
            }
            _ => false,
        }
    }
}

impl MapKey {
    /// The borrowed form of the key.
    pub fn as_ref(&self) -> MapKeyRef<'_> {
        match self {
            MapKey::Str(s) => MapKeyRef::Str(s),
            MapKey::Int(i) => MapKeyRef::Int(*i),
            MapKey::Bytes(b) => MapKeyRef::Bytes(b),
            MapKey::Object(o) => MapKeyRef::Object(o.as_ptr().as_ptr().cast_const().cast()),
        }
    }

    /// The key as a value (an object key as a new strong reference).
    pub fn to_value(&self) -> Value {
        match self {
            MapKey::Str(s) => Value::Str(s.clone()),
            MapKey::Int(i) => Value::Int(*i),
            MapKey::Bytes(b) => Value::Bytes(b.clone()),
            MapKey::Object(o) => Value::Object(o.clone()),
        }
    }

    fn check(&self, kind: &FieldKind) -> Result<(), Error> {
        kind.check(&self.to_value())
    }
}

/// An insertion-ordered map from [`MapKey`]s of one kind to values of one kind.
#[derive(Debug)]
pub struct Map {
    key: FieldKind,
    value: FieldKind,
    host: AtomicPtr<c_void>,
    /// Bumped by every change of the key set, for iterators that must notice it.
    version: AtomicU64,
    entries: Mutex<IndexMap<MapKey, Value>>,
    /// Its index in the cycle collector's registry (`crate::tracked`).
    gc: crate::tracked::Slot,
}

object_type!(Map, "tether.Dict", traced);

impl Drop for Map {
    fn drop(&mut self) {
        crate::tracked::untrack(&self.gc); // before the entries go (tracked invariant 1)
    }
}

impl Map {
    /// An empty map with keys of kind `key` (`Str`, `Int`, `Bytes` or an object kind) and values
    /// of kind `value`.
    pub fn new(key: FieldKind, value: FieldKind) -> Map {
        Map {
            key,
            value,
            host: AtomicPtr::new(core::ptr::null_mut()),
            version: AtomicU64::new(0),
            entries: Mutex::new(IndexMap::new()),
            gc: AtomicPtr::new(core::ptr::without_provenance_mut(crate::tracked::UNTRACKED)),
        }
    }

    /// The key kind.
    pub fn key_kind(&self) -> &FieldKind {
        &self.key
    }

    #[doc(hidden)]
    pub(crate) fn __tracked_slot(&self) -> &crate::tracked::Slot {
        &self.gc
    }

    /// The entries, locked (for the cycle collector: `crate::cycles`).
    pub(crate) fn lock_entries(&self) -> MutexGuard<'_, IndexMap<MapKey, Value>> {
        lock(&self.entries)
    }

    /// The value kind.
    pub fn value_kind(&self) -> &FieldKind {
        &self.value
    }

    /// The host's tag (invariant 3). Acquire, as for [`List::host_tag`].
    pub fn host_tag(&self) -> *mut c_void {
        self.host.load(Ordering::Acquire)
    }

    /// Sets the host's tag (invariant 3). Release, as for [`List::set_host_tag`].
    pub fn set_host_tag(&self, tag: *mut c_void) {
        self.host.store(tag, Ordering::Release);
    }

    /// A counter that changes whenever keys are added or removed.
    pub fn version(&self) -> u64 {
        // Relaxed: it is bumped under the map's lock, which orders the change itself; a reader
        // only compares values to notice changes (an iterator's check), and one that reads a
        // stale value notices at its next step.
        self.version.load(Ordering::Relaxed)
    }

    fn bump(&self) {
        self.version.fetch_add(1, Ordering::Relaxed);
    }

    /// The number of entries.
    pub fn len(&self) -> usize {
        lock(&self.entries).len()
    }

    /// Whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A copy of the value for `key`.
    pub fn get(&self, key: &MapKey) -> Option<Value> {
        self.get_ref(key.as_ref())
    }

    /// A copy of the value for the borrowed `key` (no allocation for the lookup).
    pub fn get_ref(&self, key: MapKeyRef<'_>) -> Option<Value> {
        lock(&self.entries).get(&key).cloned()
    }

    /// Whether the borrowed `key` is present.
    pub fn contains_ref(&self, key: MapKeyRef<'_>) -> bool {
        lock(&self.entries).contains_key(&key)
    }

    /// The entry at position `i` in insertion order (copies).
    pub fn entry_at(&self, i: usize) -> Option<(MapKey, Value)> {
        lock(&self.entries)
            .get_index(i)
            .map(|(k, v)| (k.clone(), v.clone()))
    }

    /// Copies of all entries, in insertion order.
    pub fn snapshot(&self) -> Vec<(MapKey, Value)> {
        lock(&self.entries)
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// Sets `key` to `value` (a new key goes last); returns the old value (invariant 2).
    ///
    /// # Errors
    /// `Error::Type` for a key or value of the wrong kind.
    pub fn insert(&self, key: MapKey, value: Value) -> Result<Option<Value>, Error> {
        key.check(&self.key)?;
        self.value.check(&value)?;
        let mut e = lock(&self.entries);
        let old = e.insert(key, value);
        if old.is_none() {
            self.bump();
        }
        Ok(old)
    }

    /// The value for `key`, inserting `value` first if the key is absent (Python's
    /// `setdefault`, in one step), and whether it did.
    ///
    /// # Errors
    /// `Error::Type` for a key or value of the wrong kind.
    pub fn get_or_insert(&self, key: MapKey, value: Value) -> Result<(Value, bool), Error> {
        key.check(&self.key)?;
        self.value.check(&value)?;
        let mut e = lock(&self.entries);
        if let Some(v) = e.get(&key) {
            return Ok((v.clone(), false));
        }
        e.insert(key, value.clone());
        self.bump();
        Ok((value, true))
    }

    /// Sets every entry of `entries`, or none (all keys and values checked first); returns the
    /// replaced values.
    ///
    /// # Errors
    /// `Error::Type` naming the first entry of the wrong kind; nothing changes.
    pub fn update(&self, entries: Vec<(MapKey, Value)>) -> Result<Vec<Value>, Error> {
        for (i, (k, v)) in entries.iter().enumerate() {
            k.check(&self.key)
                .and_then(|()| self.value.check(v))
                .map_err(|e| Error::Type(format!("entry {i}: {e}")))?;
        }
        let mut e = lock(&self.entries);
        let before = e.len();
        let old: Vec<Value> = entries
            .into_iter()
            .filter_map(|(k, v)| e.insert(k, v))
            .collect();
        if e.len() != before {
            self.bump();
        }
        Ok(old)
    }

    /// Removes `key`; returns its entry (the key too: it may hold the last reference).
    pub fn remove(&self, key: &MapKey) -> Option<(MapKey, Value)> {
        let r = lock(&self.entries).shift_remove_entry(key);
        if r.is_some() {
            self.bump();
        }
        r
    }

    /// Removes and returns the last entry.
    pub fn pop_last(&self) -> Option<(MapKey, Value)> {
        let r = lock(&self.entries).pop();
        if r.is_some() {
            self.bump();
        }
        r
    }

    /// Removes every entry; returns them.
    pub fn clear(&self) -> Vec<(MapKey, Value)> {
        let old: Vec<_> = core::mem::take(&mut *lock(&self.entries))
            .into_iter()
            .collect();
        if !old.is_empty() {
            self.bump();
        }
        old
    }
}

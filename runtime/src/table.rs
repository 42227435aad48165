//! [`Table`]: an append-only table of leaked `&'static T` entries indexed by a `u32`, read
//! without a lock. The type registry keeps its entries in one, the object floor its type names
//! in another.
//!
//! Floor 0 (see "Layers" in the crate docs): uses no other module of the crate.
//!
//! # Invariants
//!
//! 1. Chunks and entries are leaked: once published they are never freed, moved or replaced, so
//!    [`Table::get`] hands out `'static` references.
//! 2. A chunk or an entry is published with a `Release` store after it is fully built; readers
//!    load it with `Acquire`, so a reader that sees the pointer sees what it points at.
//! 3. Writers are serialized by the owner of the table (the registry mutex); readers take no
//!    lock. (A racing second writer could not break memory safety, only lose an entry.)
//!
//! The table is not a loom atomic: the registry is not modelled (see `crate::sync`).

use core::ptr;
use std::sync::atomic::{AtomicPtr, Ordering};

/// Entries per chunk.
const CHUNK: usize = 256;
/// Chunks per table.
const CHUNKS: usize = 256;
/// How many entries a table can hold (indices `0..CAPACITY`).
pub(crate) const CAPACITY: usize = CHUNKS * CHUNK;

type Chunk<T> = [AtomicPtr<T>; CHUNK];

/// The lock-free read side of a registry: `CHUNKS` lazily allocated chunks of `CHUNK` entries.
pub(crate) struct Table<T: 'static> {
    chunks: [AtomicPtr<Chunk<T>>; CHUNKS],
}

impl<T: Sync + 'static> Table<T> {
    /// An empty table (no chunk allocated yet).
    pub(crate) const fn new() -> Self {
        Table {
            chunks: [const { AtomicPtr::new(ptr::null_mut()) }; CHUNKS],
        }
    }

    /// The entry at `index`, if one was published (lock-free). `T: Sync`: the entry is shared
    /// with every thread that reads the table.
    #[inline]
    pub(crate) fn get(&self, index: u32) -> Option<&'static T> {
        let (hi, lo) = (index as usize / CHUNK, index as usize % CHUNK);
        // Acquire (both loads): invariant 2.
        let chunk = self.chunks.get(hi)?.load(Ordering::Acquire);
        if chunk.is_null() {
            return None;
        }
        // SAFETY: published chunks are leaked and never freed (invariant 1).
        let entry = unsafe { &*chunk }[lo].load(Ordering::Acquire);
        // SAFETY: published entries are leaked, fully built, never freed (invariants 1, 2).
        (!entry.is_null()).then(|| unsafe { &*entry })
    }

    /// Publishes `entry` at `index` (invariant 3: the caller serializes writers).
    ///
    /// # Panics
    /// If `index >= CAPACITY` (the owner checks its bound first).
    pub(crate) fn set(&self, index: u32, entry: &'static T) {
        let (hi, lo) = (index as usize / CHUNK, index as usize % CHUNK);
        // Relaxed: chunks are only installed by writers, which are serialized (invariant 3).
        let mut chunk = self.chunks[hi].load(Ordering::Relaxed);
        if chunk.is_null() {
            let fresh: Box<Chunk<T>> = Box::new([const { AtomicPtr::new(ptr::null_mut()) }; CHUNK]);
            chunk = Box::into_raw(fresh);
            // Release: readers that see the chunk see its (null) initialization.
            self.chunks[hi].store(chunk, Ordering::Release);
        }
        // SAFETY: chunks are leaked, never freed.
        let slot = unsafe { &(*chunk)[lo] };
        // Release: invariant 2.
        slot.store(ptr::from_ref(entry).cast_mut(), Ordering::Release);
    }
}

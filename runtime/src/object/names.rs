//! The type names of objects: a table from type index to the name the registry published for
//! it, so that this floor can name an object's type (`ObjAny`'s `Debug`, `Value::kind_name`)
//! without the registry (`crate::types`), which sits above it and fills the table.
//!
//! On the object floor; uses `crate::table`. Invariant: the name at index `i` is published
//! (by `types`, under its registry lock) before the registry entry `i`, and both are never
//! changed afterwards; so whoever can see an object of type `i` can see its name.

use crate::table::Table;

/// The names, by type index; each entry is the `name` of a leaked registry entry.
static NAMES: Table<String> = Table::new();

/// Publishes the name of type `index`. Called by the registry with its lock held (the table's
/// writers are serialized), before it publishes the entry itself. The name is the leaked entry's
/// own `String` (a thin pointer, which the table can store atomically; a `&str` is not).
pub(crate) fn publish_name(index: u32, name: &'static String) {
    NAMES.set(index, name);
}

/// The registered name of type `index`, if that index is registered (lock-free).
#[inline]
pub(crate) fn type_name(index: u32) -> Option<&'static str> {
    NAMES.get(index).map(String::as_str)
}

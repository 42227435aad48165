//! The type registry: every object's type index names a [`TypeInfo`] with its name, parent and
//! reflected fields, so a host can expose attributes generically.
//!
//! * Rust types register once per process through [`object_type!`](crate::object_type) (a
//!   `OnceLock` per type; afterwards `T::type_index()` is one acquire load).
//! * Record types ([`register_record_type`]) get their schema at run time; their objects store
//!   the fields inline ([`Record`](crate::Record)).
//!
//! Floor 4 (see "Layers" in the crate docs): uses `crate::object`, `crate::value`,
//! `crate::error`, `crate::table` and `crate::heap`. The records (`Record`, `record_get`, ...)
//! live here too, because reading a field generically ([`field_get`]) needs them and their
//! construction needs the registry.
//!
//! # Invariants
//!
//! 1. Entries are leaked `&'static TypeInfo`s, never removed or mutated after publication
//!    (except `host_data` and the live count, atomics), so [`type_info`] hands out `'static`
//!    references.
//! 2. An entry is published with a `Release` store after it is fully built; readers load it with
//!    `Acquire`, so a reader that sees the pointer sees the whole entry. Writers are serialized
//!    by the registry mutex; readers take no lock.
//! 3. A type's parent is registered before it (indices grow), so parent chains are finite.
//! 4. A type's name is published in the object floor's name table (`object/names.rs`) before
//!    its entry, with the same index (so whoever sees an object can name its type).
//!
//! # Files
//!
//! Each uses only the ones before it (`declare` and `record` not each other). In them
//! "invariant N" cites the list above, except in `record`, which has its own list; other lists
//! are named ("object invariant N", "record invariant N", "table invariant N").
//! * `schema`: what a type declares ([`FieldKind`], [`FieldInfo`], [`FieldSpec`], ...);
//! * `layout`: how a record type stores its fields ([`SlotRepr`], [`SlotAt`],
//!   [`RecordLayout`]);
//! * `registry`: [`TypeInfo`], the table and the lookups ([`type_info`], [`is_subtype`], ...);
//! * `object`: [`Object`](crate::Object) and the registry-aware methods of the object handles
//!   ([`ObjRef::new`](crate::ObjRef::new), [`ObjAny::downcast`](crate::ObjAny::downcast), ...);
//! * `kind`: checking a value against a [`FieldKind`];
//! * `declare`: [`register_rust_type`], [`register_record_type`];
//! * `record`: record objects ([`Record`](crate::Record), [`record_get`](crate::record_get),
//!   ...);
//! * `reflect`: [`field_get`], [`field_set`];
//! * `macros`: [`object_type!`](crate::object_type) and [`field!`](crate::field).

mod declare;
mod kind;
mod layout;
mod macros;
pub(crate) mod object;
pub(crate) mod record;
mod reflect;
mod registry;
mod schema;

pub use declare::{register_record_type, register_record_type_with, register_rust_type};
pub use layout::{RecordLayout, SlotAt, SlotRepr};
#[doc(hidden)]
pub use object::note_object_size;
pub use reflect::{field_get, field_set};
pub use registry::{is_subtype, type_count, type_index_of, type_info, TypeInfo, MAX_TYPES};
pub use schema::{
    FieldAccess, FieldGetter, FieldInfo, FieldKind, FieldSetter, FieldSpec, RecordOptions,
    TypeKind, ANY_OBJECT, SELF_TYPE,
};

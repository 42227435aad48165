//! The declaration macros: [`object_type!`](crate::object_type) (an `Object` impl that
//! registers the type on first use) and [`field!`](crate::field) (a reflected field of a Rust
//! type).
//!
//! On the types floor, but they use nothing here: they expand, in the caller's crate, to the
//! crate root's public paths (`$crate::Object`, `$crate::register_rust_type`, ...), and to
//! `$crate::__private` for what exists only for them. `crate::function` and `crate::demo`,
//! above this floor, use them.

/// Implements [`Object`](crate::Object) for a Rust type, registering it once per process.
///
/// ```text
/// object_type!(Type, "qualified.name");
/// object_type!(Type, "qualified.name", parent = Parent);          // or `parent = None`
/// object_type!(Type, "qualified.name", fields = [field!(...), ...]);
/// object_type!(Type, "qualified.name", parent = Parent, fields = [...]);
/// ```
///
/// The first call of `Type::type_index()` registers the type (the parent first); later calls
/// are one acquire load.
///
/// ```
/// use tether_runtime::{field, field_get, object_type, FieldKind, ObjRef, Object, Value};
/// struct Shape;
/// struct Circle { r: f64 }
/// object_type!(Shape, "doc.macro.Shape", parent = None);
/// object_type!(Circle, "doc.macro.Circle", parent = Shape, fields = [
///     field!(Circle, "r", FieldKind::Float, get = |c| Value::Float(c.r)),
/// ]);
/// let c = ObjRef::new(Circle { r: 2.0 });
/// assert_eq!(Circle::type_info().parent, Some(Shape::type_index()));
/// assert_eq!(field_get(c.as_any(), 0).unwrap(), Value::Float(2.0));
/// ```
#[macro_export]
macro_rules! object_type {
    ($ty:ty, $name:expr $(,)?) => {
        $crate::object_type!(@impl $ty, $name, ::core::option::Option::None, []);
    };
    ($ty:ty, $name:expr, headerless $(,)?) => {
        $crate::object_type!(@impl $ty, $name, ::core::option::Option::None, [], headerless);
    };
    ($ty:ty, $name:expr, traced $(,)?) => {
        $crate::object_type!(@impl $ty, $name, ::core::option::Option::None, [], traced);
    };
    ($ty:ty, $name:expr, parent = None $(, fields = [$($field:expr),* $(,)?])? $(,)?) => {
        $crate::object_type!(@impl $ty, $name, ::core::option::Option::None, [$($($field),*)?]);
    };
    ($ty:ty, $name:expr, parent = $parent:ty $(, fields = [$($field:expr),* $(,)?])? $(,)?) => {
        $crate::object_type!(
            @impl $ty,
            $name,
            ::core::option::Option::Some(<$parent as $crate::Object>::type_index()),
            [$($($field),*)?]
        );
    };
    ($ty:ty, $name:expr, fields = [$($field:expr),* $(,)?] $(,)?) => {
        $crate::object_type!(@impl $ty, $name, ::core::option::Option::None, [$($field),*]);
    };
    (@impl $ty:ty, $name:expr, $parent:expr, [$($field:expr),*], headerless) => {
        // SAFETY: as below; HEADERLESS only changes where the objects are allocated.
        unsafe impl $crate::Object for $ty {
            const HEADERLESS: bool = true;
            $crate::object_type!(@index $ty, $name, $parent, [$($field),*]);
        }
    };
    (@impl $ty:ty, $name:expr, $parent:expr, [$($field:expr),*], traced) => {
        // SAFETY: as below; TRACED only makes its objects known to the cycle collector, which
        // only the runtime's own containers are (`crate::cycles`).
        unsafe impl $crate::Object for $ty {
            #[doc(hidden)]
            const TRACED: bool = true;
            fn tracked_slot(&self) -> ::core::option::Option<&::core::sync::atomic::AtomicPtr<()>> {
                ::core::option::Option::Some(<$ty>::__tracked_slot(self))
            }
            $crate::object_type!(@index $ty, $name, $parent, [$($field),*]);
        }
    };
    (@impl $ty:ty, $name:expr, $parent:expr, [$($field:expr),*]) => {
        // SAFETY: the index comes from registering this type, under a fresh per-impl OnceLock,
        // and every later call returns that same index (`Object`'s contract).
        unsafe impl $crate::Object for $ty {
            $crate::object_type!(@index $ty, $name, $parent, [$($field),*]);
        }
    };
    (@index $ty:ty, $name:expr, $parent:expr, [$($field:expr),*]) => {
        #[inline]
        fn type_index() -> u32 {
            static INDEX: ::std::sync::OnceLock<u32> = ::std::sync::OnceLock::new();
            *INDEX.get_or_init(|| {
                let parent: ::core::option::Option<u32> = $parent;
                $crate::types::note_object_size::<$ty>($crate::register_rust_type(
                    $name,
                    parent,
                    ::std::vec![$($field),*],
                ))
            })
        }
    };
}

/// Builds a [`FieldInfo`](crate::FieldInfo) for a Rust type's field from a typed getter (and
/// optional setter and default), for [`object_type!`](crate::object_type).
///
/// ```text
/// field!(Type, "name", kind, get = |v: &Type| -> Value)
/// field!(Type, "name", kind, get = ..., set = |v: &Type, x: Value| -> Result<(), Error>)
/// field!(Type, "name", kind, get = ..., default = value)
/// ```
///
/// Setters get `&Type` (objects are shared), so writable fields use interior mutability; the
/// value is kind-checked before the setter runs ([`field_set`](crate::field_set)).
///
/// ```
/// use std::sync::atomic::{AtomicI64, Ordering};
/// use tether_runtime::{field, field_get, field_set, object_type, FieldKind, ObjRef, Value};
/// struct Counter { n: AtomicI64 }
/// object_type!(Counter, "doc.field.Counter", fields = [
///     field!(Counter, "n", FieldKind::Int,
///         get = |c| Value::Int(c.n.load(Ordering::Relaxed)),
///         set = |c, v| { c.n.store(v.as_int()?, Ordering::Relaxed); Ok(()) },
///         default = 0),
/// ]);
/// let c = ObjRef::new(Counter { n: AtomicI64::new(1) });
/// field_set(c.as_any(), 0, Value::Int(5)).unwrap();
/// assert_eq!(field_get(c.as_any(), 0).unwrap(), Value::Int(5));
/// assert!(field_set(c.as_any(), 0, Value::from("x")).is_err());
/// ```
#[macro_export]
macro_rules! field {
    ($ty:ty, $name:expr, $kind:expr, get = $get:expr $(, set = $set:expr)? $(, default = $default:expr)? $(,)?) => {
        $crate::FieldInfo {
            name: ::std::string::String::from($name),
            kind: $kind,
            default: $crate::field!(@default $($default)?),
            access: $crate::FieldAccess::Accessor {
                get: {
                    fn get(obj: &$crate::ObjAny) -> $crate::Value {
                        let f: fn(&$ty) -> $crate::Value = $get;
                        f($crate::__private::expect_field_owner::<$ty>(obj))
                    }
                    get
                },
                set: $crate::field!(@set $ty $(, $set)?),
            },
        }
    };
    (@default) => { ::core::option::Option::None };
    (@default $default:expr) => {
        ::core::option::Option::Some($crate::Value::from($default))
    };
    (@set $ty:ty) => { ::core::option::Option::None };
    (@set $ty:ty, $set:expr) => {
        ::core::option::Option::Some({
            fn set(obj: &$crate::ObjAny, v: $crate::Value) -> ::core::result::Result<(), $crate::Error> {
                let f: fn(&$ty, $crate::Value) -> ::core::result::Result<(), $crate::Error> = $set;
                f($crate::__private::expect_field_owner::<$ty>(obj), v)
            }
            set as $crate::types::FieldSetter
        })
    };
}

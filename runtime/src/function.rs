//! Function objects and the global function registry.
//!
//! A [`Function`] is an object (so it can be a field value, an argument, or bound to a host
//! wrapper) holding a Rust closure; a host callable is exposed through the same interface by a
//! closure that calls into the host (capturing a [`HostHandle`](crate::HostHandle)).
//!
//! Floor 5 (see "Layers" in the crate docs): uses `crate::types` (`object_type!`, `Object`),
//! `crate::value` (the `Function` struct and `Value`), `crate::object` and `crate::error`. Owns
//! `Function`'s type (registered as `tether.Function`) and what needs its type index: the
//! constructors, [`Value::as_function`], and the `From` conversions of objects into `Value`
//! (functions become `Value::Function`: the invariant of `crate::value`). The global registry
//! maps each name to one function; its lock is never held while a function runs or drops.

use crate::error::Error;
use crate::object::{ObjAny, ObjRef};
use crate::types::object::Object;
use crate::value::{Function, ReturnPolicy, Value};
use std::collections::BTreeMap;
use std::sync::{PoisonError, RwLock};

crate::object_type!(Function, "tether.Function");

impl Function {
    /// A function object running `body` (returns the object: functions are always shared).
    pub fn new(
        policy: ReturnPolicy,
        body: impl Fn(&[Value]) -> Result<Value, Error> + Send + Sync + 'static,
    ) -> ObjRef<Function> {
        ObjRef::new(Function {
            policy,
            body: Box::new(body),
        })
    }

    /// [`Function::new`] with the default policy, [`ReturnPolicy::Tied`].
    pub fn tied(
        body: impl Fn(&[Value]) -> Result<Value, Error> + Send + Sync + 'static,
    ) -> ObjRef<Function> {
        Function::new(ReturnPolicy::Tied, body)
    }

    /// [`Function::new`] with [`ReturnPolicy::Fresh`].
    pub fn fresh(
        body: impl Fn(&[Value]) -> Result<Value, Error> + Send + Sync + 'static,
    ) -> ObjRef<Function> {
        Function::new(ReturnPolicy::Fresh, body)
    }
}

impl Value {
    /// The function, or `Error::Type`.
    pub fn as_function(&self) -> Result<&ObjRef<Function>, Error> {
        match self {
            Value::Function(f) => Ok(f),
            Value::Object(o) => o
                .as_typed::<Function>()
                .ok_or_else(|| self.mismatch("function")),
            _ => Err(self.mismatch("function")),
        }
    }
}

impl From<ObjAny> for Value {
    /// `Value::Function` for function objects, `Value::Object` otherwise.
    fn from(o: ObjAny) -> Value {
        match o.downcast::<Function>() {
            Ok(f) => Value::Function(f),
            Err(o) => Value::Object(o),
        }
    }
}

impl<T: Object> From<ObjRef<T>> for Value {
    fn from(r: ObjRef<T>) -> Value {
        Value::from(r.into_any())
    }
}

static GLOBALS: RwLock<BTreeMap<String, ObjRef<Function>>> = RwLock::new(BTreeMap::new());

fn read() -> std::sync::RwLockReadGuard<'static, BTreeMap<String, ObjRef<Function>>> {
    // Map updates are single insertions: a poisoned lock still guards a consistent map.
    GLOBALS.read().unwrap_or_else(PoisonError::into_inner)
}

fn write() -> std::sync::RwLockWriteGuard<'static, BTreeMap<String, ObjRef<Function>>> {
    GLOBALS.write().unwrap_or_else(PoisonError::into_inner)
}

/// Registers `f` under `name`.
///
/// # Errors
/// `Error::Value` if the name is taken (see [`register_global_override`]).
///
/// ```
/// use tether_runtime::{get_global, list_globals, register_global, Function, Value};
/// register_global("doc.double", Function::tied(|a| Ok(Value::Int(a[0].as_int()? * 2)))).unwrap();
/// let f = get_global("doc.double").unwrap();
/// assert_eq!(f.call(&[Value::Int(21)]).unwrap(), Value::Int(42));
/// assert!(list_globals().contains(&"doc.double".to_string()));
/// assert!(register_global("doc.double", Function::tied(|_| Ok(Value::None))).is_err());
/// ```
pub fn register_global(name: &str, f: ObjRef<Function>) -> Result<(), Error> {
    let mut map = write();
    if map.contains_key(name) {
        return Err(Error::Value(format!(
            "global function {name} is already registered"
        )));
    }
    map.insert(name.to_owned(), f);
    Ok(())
}

/// Registers `f` under `name`, replacing (and returning) any previous function.
pub fn register_global_override(name: &str, f: ObjRef<Function>) -> Option<ObjRef<Function>> {
    // The previous function is returned (so dropped by the caller, outside the lock).
    write().insert(name.to_owned(), f)
}

/// Removes the function registered under `name`.
pub fn remove_global(name: &str) -> Option<ObjRef<Function>> {
    write().remove(name)
}

/// The function registered under `name`.
pub fn get_global(name: &str) -> Option<ObjRef<Function>> {
    read().get(name).cloned()
}

/// The registered names, sorted.
pub fn list_globals() -> Vec<String> {
    read().keys().cloned().collect()
}

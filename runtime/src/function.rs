//! Function objects and the global function registry.
//!
//! A [`Function`] is an object (so it can be a field value, an argument, or bound to a host
//! wrapper) holding a Rust closure; a host callable is exposed through the same interface by a
//! closure that calls into the host (capturing a [`HostHandle`](crate::HostHandle)).

use crate::error::Error;
use crate::object::ObjRef;
use crate::value::Value;
use std::collections::BTreeMap;
use std::sync::{PoisonError, RwLock};

/// What a host does with an object a function returns.
///
/// ```
/// use tether_runtime::ReturnPolicy;
/// assert_eq!(ReturnPolicy::default(), ReturnPolicy::Tied);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReturnPolicy {
    /// The caller gets the object's canonical wrapper (looked up, revived, or bound).
    #[default]
    Tied,
    /// The caller gets a new wrapper that is never bound (classic move/refcount semantics).
    Fresh,
}

type Body = dyn Fn(&[Value]) -> Result<Value, Error> + Send + Sync;

/// A callable object: a closure plus its [`ReturnPolicy`].
///
/// ```
/// use tether_runtime::{Function, ReturnPolicy, Value};
/// let add = Function::new(ReturnPolicy::Tied, |args| {
///     Ok(Value::Int(args[0].as_int()? + args[1].as_int()?))
/// });
/// assert_eq!(add.call(&[Value::Int(2), Value::Int(3)]).unwrap(), Value::Int(5));
/// assert!(add.call(&[Value::Int(2), Value::None]).is_err());
/// ```
pub struct Function {
    policy: ReturnPolicy,
    body: Box<Body>,
}

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

    /// Calls the function.
    ///
    /// # Errors
    /// Whatever the body returns.
    pub fn call(&self, args: &[Value]) -> Result<Value, Error> {
        (self.body)(args)
    }

    /// The return policy.
    pub fn policy(&self) -> ReturnPolicy {
        self.policy
    }
}

impl core::fmt::Debug for Function {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Function")
            .field("policy", &self.policy)
            .finish_non_exhaustive()
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

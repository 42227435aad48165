//! The runtime's error type, [`Error`].
//!
//! Floor 1 (see "Layers" in the crate docs): uses `crate::host` (a host error is carried as a
//! [`HostHandle`]).

use crate::host::HostHandle;
use core::fmt;

/// Everything the runtime's fallible operations report.
///
/// ```
/// use tether_runtime::{Error, Value};
/// let err = Value::from("seven").as_int().unwrap_err();
/// assert_eq!(err.to_string(), "type error: expected int, got str");
/// assert!(matches!(err, Error::Type(_)));
/// ```
#[derive(Debug, Clone)]
pub enum Error {
    /// A value of the wrong kind (the message names the expected and the actual kind).
    Type(String),
    /// A value of the right kind but unacceptable (out of range, duplicate name, ...).
    Value(String),
    /// A write to a frozen record type or a read-only field (the message names it).
    Frozen(String),
    /// The object was moved out of its handle.
    Moved,
    /// The allocator had no memory.
    Alloc,
    /// A name or index that is not registered.
    NotFound(String),
    /// An error raised by host code, carried as a host object (e.g. a Python exception).
    Host(HostHandle),
}

impl Error {
    /// `Error::Type` for a value of kind `actual` where `expected` was wanted.
    pub fn type_mismatch(expected: &str, actual: &str) -> Error {
        Error::Type(format!("expected {expected}, got {actual}"))
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Type(m) => write!(f, "type error: {m}"),
            Error::Value(m) => write!(f, "value error: {m}"),
            Error::Frozen(m) => write!(f, "cannot assign: {m}"),
            Error::Moved => f.write_str("object was moved out of this handle"),
            Error::Alloc => f.write_str("out of memory"),
            Error::NotFound(m) => write!(f, "not found: {m}"),
            Error::Host(_) => f.write_str("host error"),
        }
    }
}

impl std::error::Error for Error {}

impl From<tether_alloc::allocator_api2::alloc::AllocError> for Error {
    fn from(_: tether_alloc::allocator_api2::alloc::AllocError) -> Self {
        Error::Alloc
    }
}

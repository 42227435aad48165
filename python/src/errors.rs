//! Floor 1: Python exceptions raised by tether, and the mapping from runtime errors.

use pyo3::create_exception;
use pyo3::exceptions::{
    PyAttributeError, PyLookupError, PyMemoryError, PyRuntimeError, PyTypeError, PyValueError,
};
use pyo3::prelude::*;
use tether_runtime::Error;

create_exception!(
    tether,
    MovedError,
    PyRuntimeError,
    "Use of a wrapper whose native object was moved out with tether.move()."
);
create_exception!(
    tether,
    FrozenInstanceError,
    PyAttributeError,
    "Assignment to a field of a frozen tether class."
);

/// Converts a runtime error into the matching Python exception. A host error carries a Python
/// exception (raised by a callback) and is re-raised as itself.
pub fn to_pyerr(py: Python<'_>, e: Error) -> PyErr {
    match e {
        Error::Type(m) => PyTypeError::new_err(m),
        Error::Value(m) => PyValueError::new_err(m),
        Error::Frozen(m) => FrozenInstanceError::new_err(m),
        Error::Moved => MovedError::new_err("use of a moved-from object"),
        Error::Alloc => PyMemoryError::new_err("tether: native allocation failed"),
        Error::NotFound(m) => PyLookupError::new_err(m),
        Error::Host(h) => match crate::pyhandle::handle_to_object(py, &h) {
            Ok(obj) => PyErr::from_value(obj),
            Err(e) => e,
        },
    }
}

//! Floor 5: native functions as Python callables (`tether.Function`'s methods), Python
//! callables as native functions, and the global function registry.

use crate::carriers::PyFunction;
use crate::convert::{from_py_any, to_py, Moves};
use crate::errors::to_pyerr;
use crate::pyhandle::{handle_to_object, object_to_handle};
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::PyTuple;
use tether_runtime::{Error, Function, ObjRef, ReturnPolicy, Value};

#[pymethods]
impl PyFunction {
    #[pyo3(signature = (*args, **kwargs))]
    fn __call__(
        &self,
        py: Python<'_>,
        args: &Bound<'_, PyTuple>,
        kwargs: Option<&Bound<'_, pyo3::types::PyDict>>,
    ) -> PyResult<Py<PyAny>> {
        if let Some(kw) = kwargs.filter(|k| !k.is_empty()) {
            let names: Vec<String> = kw.keys().iter().map(|k| k.to_string()).collect();
            return Err(pyo3::exceptions::PyTypeError::new_err(format!(
                "tether native functions take positional arguments only (got keyword argument{} \
                 {}); pass them in order",
                if names.len() == 1 { "" } else { "s" },
                names.join(", ")
            )));
        }
        let mut moves = Moves::new();
        let values = args
            .iter()
            .map(|a| from_py_any(&a, &mut moves))
            .collect::<PyResult<Vec<Value>>>()?;
        moves.commit()?;
        let out = self.func.call(&values).map_err(|e| to_pyerr(py, e))?;
        drop(values);
        let tied = matches!(self.func.policy(), ReturnPolicy::Tied);
        let p = to_py(py, &out, tied)?;
        // SAFETY: `to_py` returns a new reference.
        Ok(unsafe { Py::from_owned_ptr(py, p) })
    }

    /// `"tied"` or `"fresh"`.
    #[getter]
    fn policy(&self) -> &'static str {
        match self.func.policy() {
            ReturnPolicy::Tied => "tied",
            ReturnPolicy::Fresh => "fresh",
        }
    }

    fn __repr__(&self) -> String {
        format!("<tether.Function ({})>", self.policy())
    }
}

/// A runtime function that calls the Python callable `f` (a host callable behind the same
/// interface as Rust closures). Arguments reach Python as canonical wrappers.
pub fn host_function(f: &Bound<'_, PyAny>, policy: ReturnPolicy) -> PyResult<ObjRef<Function>> {
    let handle = object_to_handle(f);
    let func = Function::new(policy, move |args: &[Value]| {
        Python::attach(|py| {
            let callable = handle_to_object(py, &handle).map_err(|e| host_error(py, e))?;
            let mut py_args = Vec::with_capacity(args.len());
            for a in args {
                let p = to_py(py, a, true).map_err(|e| host_error(py, e))?;
                // SAFETY: `to_py` returns a new reference.
                py_args.push(unsafe { Bound::from_owned_ptr(py, p) });
            }
            let tuple = PyTuple::new(py, py_args).map_err(|e| host_error(py, e))?;
            let out = callable.call1(tuple).map_err(|e| host_error(py, e))?;
            let mut moves = Moves::new();
            let v = from_py_any(&out, &mut moves).map_err(|e| host_error(py, e))?;
            moves.commit().map_err(|e| host_error(py, e))?;
            Ok(v)
        })
    });
    Ok(func)
}

/// A Python exception carried through native code as a host error.
fn host_error(py: Python<'_>, e: PyErr) -> Error {
    Error::Host(object_to_handle(e.value(py).as_any()))
}

/// `tether.function(f, policy="tied")`: a Python callable as a runtime function object.
#[pyfunction]
#[pyo3(signature = (f, policy = "tied"))]
pub fn function(f: &Bound<'_, PyAny>, policy: &str) -> PyResult<PyFunction> {
    let policy = parse_policy(policy)?;
    Ok(PyFunction::new(host_function(f, policy)?))
}

fn parse_policy(p: &str) -> PyResult<ReturnPolicy> {
    match p {
        "tied" => Ok(ReturnPolicy::Tied),
        "fresh" => Ok(ReturnPolicy::Fresh),
        _ => Err(PyTypeError::new_err("policy must be 'tied' or 'fresh'")),
    }
}

/// `tether.get_global(name)`: a function from the runtime's global registry.
#[pyfunction]
pub fn get_global(py: Python<'_>, name: &str) -> PyResult<PyFunction> {
    tether_runtime::get_global(name)
        .map(PyFunction::new)
        .ok_or_else(|| to_pyerr(py, Error::NotFound(format!("no global function '{name}'"))))
}

/// `tether.register_global(name, f, policy="tied", override=False)`.
#[pyfunction]
#[pyo3(signature = (name, f, policy = "tied", r#override = false))]
pub fn register_global(
    py: Python<'_>,
    name: &str,
    f: &Bound<'_, PyAny>,
    policy: &str,
    r#override: bool,
) -> PyResult<()> {
    let func = match f.cast::<PyFunction>() {
        Ok(pf) => pf.get().func.clone(),
        Err(_) => host_function(f, parse_policy(policy)?)?,
    };
    if r#override {
        tether_runtime::register_global_override(name, func);
        Ok(())
    } else {
        tether_runtime::register_global(name, func).map_err(|e| to_pyerr(py, e))
    }
}

/// `tether.list_globals()`.
#[pyfunction]
pub fn list_globals() -> Vec<String> {
    tether_runtime::list_globals()
}

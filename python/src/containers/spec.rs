//! The container kinds Python sees: [`Spec`] (what `tether.List[T]` and `tether.Dict[K, V]`
//! carry, and how a pickled container finds its kind again), interned standalone specs.

use super::{with_list, with_map};
use crate::class::elements::{list_spec, map_spec, ElemSpec, Nested, SpecRoot};
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::PyTuple;
use tether_runtime::types::FieldKind;

/// A container kind, as `tether.List[T]` and `tether.Dict[K, V]` carry it.
#[pyclass(frozen, module = "tether._native", name = "_Spec")]
pub struct Spec(pub(super) &'static ElemSpec, pub(super) Option<FieldKind>);

#[pymethods]
impl Spec {
    /// Pickled as where it was declared: a class's field (by the class, which pickles by
    /// reference) or the annotation of `tether.List[...]`, and how deep.
    fn __reduce__(&self, py: Python<'_>) -> PyResult<(Py<PyAny>, Py<PyTuple>)> {
        let native = py.import("tether._native")?;
        let depth = self.0.depth;
        Ok(match self.0.root {
            SpecRoot::Field(owner, name) => {
                let cls = crate::classes::class_for(*owner)?;
                // SAFETY: a registered class is live; a new reference for the tuple.
                let cls = unsafe { Bound::from_borrowed_ptr(py, cls.cast()) };
                (
                    native.getattr("_field_spec")?.unbind(),
                    PyTuple::new(
                        py,
                        [
                            cls,
                            name.into_pyobject(py)?.into_any(),
                            depth.into_pyobject(py)?.into_any(),
                        ],
                    )?
                    .unbind(),
                )
            }
            SpecRoot::List(e) if depth == 1 => (
                native.getattr("_list_spec")?.unbind(),
                PyTuple::new(py, [e.bind(py)])?.unbind(),
            ),
            SpecRoot::Dict(k, v) if depth == 1 => (
                native.getattr("_dict_spec")?.unbind(),
                PyTuple::new(py, [k.bind(py), v.bind(py)])?.unbind(),
            ),
            SpecRoot::List(e) => {
                let top = native.getattr("_list_spec")?.call1((e.bind(py),))?;
                (
                    native.getattr("_spec_at")?.unbind(),
                    PyTuple::new(py, [top, depth.into_pyobject(py)?.into_any()])?.unbind(),
                )
            }
            SpecRoot::Dict(k, v) => {
                let top = native
                    .getattr("_dict_spec")?
                    .call1((k.bind(py), v.bind(py)))?;
                (
                    native.getattr("_spec_at")?.unbind(),
                    PyTuple::new(py, [top, depth.into_pyobject(py)?.into_any()])?.unbind(),
                )
            }
            SpecRoot::Native => {
                return Err(PyTypeError::new_err(
                    "a container made by Rust code has no declared kind to pickle by",
                ))
            }
        })
    }

    fn __repr__(&self) -> String {
        match &self.1 {
            None => format!("tether.List[{}]", self.0.display),
            Some(k) => format!(
                "tether.Dict[{}, {}]",
                crate::convert::kind_name(k),
                self.0.display
            ),
        }
    }
}

/// Standalone specs, one per annotation seen (by identity of the annotation objects), so
/// `tether.List[Node]` written twice makes lists of one kind, and nothing leaks per call.
pub(super) static STANDALONE: std::sync::Mutex<Vec<Interned>> = std::sync::Mutex::new(Vec::new());

/// One interned standalone spec: the annotations' addresses (key or 0, element), the spec and
/// its key kind.
pub(super) type Interned = (usize, usize, &'static ElemSpec, Option<FieldKind>);

pub(super) fn standalone(
    py: Python<'_>,
    key: Option<&Bound<'_, PyAny>>,
    elem: &Bound<'_, PyAny>,
) -> PyResult<Spec> {
    let id = (
        key.map_or(0, |k| k.as_ptr() as usize),
        elem.as_ptr() as usize,
    );
    let found = STANDALONE
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .find(|(k, e, _, _)| (*k, *e) == id)
        .map(|(_, _, s, k)| Spec(s, k.clone()));
    if let Some(s) = found {
        return Ok(s);
    }
    // Outside the lock: resolving runs Python code.
    let k = key
        .map(|k| crate::meta::standalone_key(py, k))
        .transpose()?;
    let draft = crate::meta::standalone_elem(py, elem)?;
    let root: &'static SpecRoot = Box::leak(Box::new(match key {
        Some(k) => SpecRoot::Dict(k.clone().unbind(), elem.clone().unbind()),
        None => SpecRoot::List(elem.clone().unbind()),
    }));
    let spec = draft.finish(
        tether_runtime::types::ANY_OBJECT,
        crate::meta::replace_placeholders,
        root,
        1,
    );
    // The annotation objects stay alive in `root`, so their addresses stay theirs.
    let mut all = STANDALONE.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, _, s, k)) = all.iter().find(|(k, e, _, _)| (*k, *e) == id) {
        return Ok(Spec(s, k.clone()));
    }
    all.push((id.0, id.1, spec, k.clone()));
    Ok(Spec(spec, k))
}

/// `_native._list_spec(elem)`: the spec of `tether.List[elem]`.
#[pyfunction]
pub(super) fn _list_spec(py: Python<'_>, elem: &Bound<'_, PyAny>) -> PyResult<Spec> {
    standalone(py, None, elem)
}

/// `_native._dict_spec(key, value)`: the spec of `tether.Dict[key, value]`.
#[pyfunction]
pub(super) fn _dict_spec(
    py: Python<'_>,
    key: &Bound<'_, PyAny>,
    value: &Bound<'_, PyAny>,
) -> PyResult<Spec> {
    standalone(py, Some(key), value)
}

/// `_native._field_spec(cls, name, depth)`: the spec `depth` levels into field `name` of
/// `cls` (how a pickled container finds its kind again).
#[pyfunction]
pub(super) fn _field_spec(
    cls: &Bound<'_, pyo3::types::PyType>,
    name: &str,
    depth: u32,
) -> PyResult<Spec> {
    // SAFETY: `cls` is a live type object; GIL held.
    let info = unsafe { crate::class::info_of(cls.as_ptr().cast()) }?;
    let def = info
        .fields
        .iter()
        .find(|f| f.name == name)
        .ok_or_else(|| PyTypeError::new_err(format!("{} has no field '{name}'", info.name)))?;
    let top = def
        .container
        .as_ref()
        .ok_or_else(|| PyTypeError::new_err(format!("field '{name}' is not a container")))?;
    descend(top, depth)
}

pub(super) fn descend(top: &Nested, depth: u32) -> PyResult<Spec> {
    let mut n = top;
    for _ in 1..depth {
        let elem = match n {
            Nested::List(e) | Nested::Dict(_, e) => e,
        };
        n = elem
            .nested
            .as_ref()
            .ok_or_else(|| PyTypeError::new_err("no container at that depth"))?;
    }
    Ok(match n {
        Nested::List(e) => Spec(e, None),
        Nested::Dict(k, e) => Spec(e, Some(k.clone())),
    })
}

/// `_native._spec_at(spec, depth)`: the spec `depth` levels into a standalone spec.
#[pyfunction]
pub(super) fn _spec_at(spec: &Spec, depth: u32) -> PyResult<Spec> {
    let top = match &spec.1 {
        None => Nested::List(spec.0),
        Some(k) => Nested::Dict(k.clone(), spec.0),
    };
    descend(&top, depth)
}

/// `_list_spec_of(l)`: the list's kind (what `copy()` and slices make).
#[pyfunction]
pub(super) fn _list_spec_of(l: &Bound<'_, PyAny>) -> PyResult<Spec> {
    with_list(l, |list| Ok(Spec(list_spec(list), None)))
}

/// `_dict_spec_of(d)`.
#[pyfunction]
pub(super) fn _dict_spec_of(d: &Bound<'_, PyAny>) -> PyResult<Spec> {
    with_map(d, |m| {
        let (k, v) = map_spec(m);
        Ok(Spec(v, Some(k.clone())))
    })
}

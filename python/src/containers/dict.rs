//! The primitives of `tether.Dict`, and its iterators (which raise if keys are added or
//! removed while they run).

use super::spec::Spec;
use super::{all_or_nothing, out, rt, with_map, wrap};
use crate::class::elements::{convert_entries, map_key, map_spec, new_map};
use crate::convert::Moves;
use pyo3::exceptions::{PyKeyError, PyRuntimeError, PyTypeError};
use pyo3::prelude::*;
use pyo3::types::PyTuple;
use tether_runtime::containers::{Map, MapKey, MapKeyRef};
use tether_runtime::types::FieldKind;

/// `_native._dict_new(spec, items)`: a new `tether.Dict` of `items`.
#[pyfunction]
pub(super) fn _dict_new(
    py: Python<'_>,
    spec: &Spec,
    items: &Bound<'_, PyAny>,
) -> PyResult<Py<PyAny>> {
    let key = spec
        .1
        .as_ref()
        .ok_or_else(|| PyTypeError::new_err("not a dict spec"))?;
    let mut moves = Moves::new();
    let m = new_map(key, spec.0, items, &mut moves)?;
    moves.commit()?;
    wrap(py, m.into_any())
}

pub(super) fn key_of<'py>(
    m: &Map,
    k: &Bound<'py, PyAny>,
    moves: &mut Moves<'py>,
) -> PyResult<MapKey> {
    map_key(m.key_kind(), k, moves)
}

/// `k` and `v` converted for map `m`; an error names the dict kind and the key.
fn convert_entry<'py>(
    m: &Map,
    k: &Bound<'py, PyAny>,
    v: &Bound<'py, PyAny>,
    moves: &mut Moves<'py>,
) -> PyResult<(MapKey, tether_runtime::Value)> {
    let (kk, spec) = map_spec(m);
    let where_ = || {
        format!(
            "tether.Dict[{}, {}] key {}",
            crate::convert::kind_name(kk),
            spec.display,
            k.repr().map_or_else(|_| "?".into(), |r| r.to_string())
        )
    };
    let key = key_of(m, k, moves).map_err(|e| crate::class::annotate(k.py(), e, &where_()))?;
    let value = spec
        .convert(v, moves)
        .map_err(|e| crate::class::annotate(k.py(), e, &where_()))?;
    Ok((key, value))
}

/// Runs `f` on `k` borrowed as a key of `m`'s kind (no copy of a `str` or `bytes` key), or
/// `None` if `k` cannot be one. Runs no Python code.
fn with_key_ref<R>(m: &Map, k: &Bound<'_, PyAny>, f: impl FnOnce(MapKeyRef<'_>) -> R) -> Option<R> {
    use pyo3::types::{PyBool, PyBytes, PyInt, PyString};
    match m.key_kind() {
        FieldKind::Str => {
            // A str with a lone surrogate has no UTF-8 form: it cannot be a key.
            let s = k.cast::<PyString>().ok()?.to_str().ok()?;
            Some(f(MapKeyRef::Str(s)))
        }
        FieldKind::Int if k.is_instance_of::<PyInt>() && !k.is_instance_of::<PyBool>() => {
            Some(f(MapKeyRef::Int(k.extract::<i64>().ok()?)))
        }
        FieldKind::Bytes => Some(f(MapKeyRef::Bytes(k.cast::<PyBytes>().ok()?.as_bytes()))),
        FieldKind::Object(_) => {
            // SAFETY: `k` is live; GIL held.
            if !unsafe { crate::pytypes::is_wrapper(k.as_ptr()) } {
                return None;
            }
            // SAFETY: a wrapper, kept alive by `k`; only its address is used.
            let obj = unsafe { crate::native::counted(k.as_ptr()) }.ok()?;
            Some(f(MapKeyRef::Object(
                obj.as_ptr().as_ptr().cast_const().cast(),
            )))
        }
        _ => None,
    }
}

/// The value for `k` in `m` (a copy), if `k` is a key there.
fn lookup(m: &Map, k: &Bound<'_, PyAny>) -> Option<tether_runtime::Value> {
    with_key_ref(m, k, |key| m.get_ref(key)).flatten()
}

pub(super) fn key_error(k: &Bound<'_, PyAny>) -> PyErr {
    PyKeyError::new_err(k.clone().unbind())
}

#[pyfunction]
pub(super) fn _dict_len(d: &Bound<'_, PyAny>) -> PyResult<usize> {
    with_map(d, |m| Ok(m.len()))
}

#[pyfunction]
pub(super) fn _dict_get(
    py: Python<'_>,
    d: &Bound<'_, PyAny>,
    k: &Bound<'_, PyAny>,
) -> PyResult<Py<PyAny>> {
    // A key of another kind is simply absent.
    let v = with_map(d, |m| lookup(m, k).ok_or_else(|| key_error(k)))?;
    out(py, v)
}

#[pyfunction]
pub(super) fn _dict_contains(d: &Bound<'_, PyAny>, k: &Bound<'_, PyAny>) -> PyResult<bool> {
    with_map(d, |m| {
        Ok(with_key_ref(m, k, |key| m.contains_ref(key)).unwrap_or(false))
    })
}

#[pyfunction]
pub(super) fn _dict_set(
    d: &Bound<'_, PyAny>,
    k: &Bound<'_, PyAny>,
    v: &Bound<'_, PyAny>,
) -> PyResult<()> {
    let old = with_map(d, |m| {
        all_or_nothing(
            |moves| convert_entry(m, k, v, moves),
            |(key, value)| rt(d.py(), m.insert(key, value)),
        )
    })?;
    drop(old);
    Ok(())
}

/// `_dict_pop(d, key, default)`: removes `key` and returns its value, in one step; `default`
/// if absent (`missing` as the default: raise `KeyError`).
#[pyfunction]
pub(super) fn _dict_pop(
    py: Python<'_>,
    d: &Bound<'_, PyAny>,
    k: &Bound<'_, PyAny>,
    default: &Bound<'_, PyAny>,
    missing: &Bound<'_, PyAny>,
) -> PyResult<Py<PyAny>> {
    let found = with_map(d, |m| {
        let mut moves = Moves::new();
        Ok(key_of(m, k, &mut moves).ok().and_then(|key| m.remove(&key)))
    })?;
    match found {
        Some((_, v)) => out(py, v),
        None if default.is(missing) => Err(key_error(k)),
        None => Ok(default.clone().unbind()),
    }
}

/// `_dict_get_or(d, key, default)`: the value for `key`, or `default`, in one step.
#[pyfunction]
pub(super) fn _dict_get_or(
    py: Python<'_>,
    d: &Bound<'_, PyAny>,
    k: &Bound<'_, PyAny>,
    default: &Bound<'_, PyAny>,
) -> PyResult<Py<PyAny>> {
    match with_map(d, |m| Ok(lookup(m, k)))? {
        Some(v) => out(py, v),
        None => Ok(default.clone().unbind()),
    }
}

/// `_dict_setdefault(d, key, default)`: Python's `setdefault`, in one step.
#[pyfunction]
pub(super) fn _dict_setdefault(
    py: Python<'_>,
    d: &Bound<'_, PyAny>,
    k: &Bound<'_, PyAny>,
    default: &Bound<'_, PyAny>,
) -> PyResult<Py<PyAny>> {
    // Not `all_or_nothing`: a key already there is no error, yet a `tether.move()` token given
    // as the default must then keep its object.
    let v = with_map(d, |m| {
        let mut moves = Moves::new();
        let (key, value) = convert_entry(m, k, default, &mut moves)?;
        moves.check()?;
        let (v, inserted) = rt(d.py(), m.get_or_insert(key, value))?;
        if inserted {
            moves.commit()?;
        }
        Ok(v)
    })?;
    out(py, v)
}

#[pyfunction]
pub(super) fn _dict_del(d: &Bound<'_, PyAny>, k: &Bound<'_, PyAny>) -> PyResult<()> {
    let old = with_map(d, |m| {
        let mut moves = Moves::new();
        let key = key_of(m, k, &mut moves).map_err(|_| key_error(k))?;
        m.remove(&key).ok_or_else(|| key_error(k))
    })?;
    drop(old);
    Ok(())
}

/// `_dict_items(d)`: `(key, value)` pairs in insertion order.
#[pyfunction]
pub(super) fn _dict_items(
    py: Python<'_>,
    d: &Bound<'_, PyAny>,
) -> PyResult<Vec<(Py<PyAny>, Py<PyAny>)>> {
    let all = with_map(d, |m| Ok(m.snapshot()))?;
    all.into_iter()
        .map(|(k, v)| Ok((out(py, k.to_value())?, out(py, v)?)))
        .collect()
}

/// `_dict_update(d, items)`: every entry converted first; all or nothing.
#[pyfunction]
pub(super) fn _dict_update(d: &Bound<'_, PyAny>, items: &Bound<'_, PyAny>) -> PyResult<()> {
    let old = with_map(d, |m| {
        let (k, v) = map_spec(m);
        all_or_nothing(
            |moves| convert_entries(k, v, items, moves),
            |entries| rt(d.py(), m.update(entries)),
        )
    })?;
    drop(old);
    Ok(())
}

#[pyfunction]
pub(super) fn _dict_popitem(
    py: Python<'_>,
    d: &Bound<'_, PyAny>,
) -> PyResult<(Py<PyAny>, Py<PyAny>)> {
    let (k, v) = with_map(d, |m| {
        m.pop_last()
            .ok_or_else(|| PyKeyError::new_err("popitem(): dictionary is empty"))
    })?;
    Ok((out(py, k.to_value())?, out(py, v)?))
}

#[pyfunction]
pub(super) fn _dict_clear(d: &Bound<'_, PyAny>) -> PyResult<()> {
    let old = with_map(d, |m| Ok(m.clear()))?;
    drop(old);
    Ok(())
}

/// The key iterator of a `tether.Dict`: raises `RuntimeError` if keys are added or removed
/// while it runs, as a dict's does.
#[pyclass(module = "tether._native", name = "_DictIterator")]
pub(super) struct DictIter {
    dict: Py<PyAny>,
    next: usize,
    version: u64,
    /// 0: keys, 1: values, 2: items.
    what: u8,
}

#[pymethods]
impl DictIter {
    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__(&mut self, py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
        let d = self.dict.bind(py);
        let version = self.version;
        let e = with_map(d, |m| {
            if m.version() != version {
                return Err(PyRuntimeError::new_err(
                    "dictionary changed size during iteration",
                ));
            }
            Ok(m.entry_at(self.next))
        })?;
        let Some((k, v)) = e else { return Ok(None) };
        self.next += 1;
        Ok(Some(match self.what {
            0 => out(py, k.to_value())?,
            1 => out(py, v)?,
            _ => PyTuple::new(py, [out(py, k.to_value())?, out(py, v)?])?
                .into_any()
                .unbind(),
        }))
    }
}

/// `_dict_iter(d, what)`: keys (0), values (1) or items (2).
#[pyfunction]
pub(super) fn _dict_iter(d: &Bound<'_, PyAny>, what: u8) -> PyResult<DictIter> {
    let version = with_map(d, |m| Ok(m.version()))?;
    Ok(DictIter {
        dict: d.clone().unbind(),
        next: 0,
        version,
        what,
    })
}

//! Floor 7: `tether.List` and `tether.Dict`, the Python side of the runtime's native containers
//! (`tether_runtime::containers`). The classes are tether classes of the runtime's `List` and
//! `Map` types, so each container has one canonical wrapper, parked and revived like any
//! object's, and its elements are converted and handed out like fields (objects through their
//! canonical wrappers). The Python methods are in `tether/_containers.py`, over the primitives
//! here; indexing, `len` and iteration are C slots ([`install_fast_slots`]).
//!
//! Every primitive takes a counted reference to the native container first (Python code may
//! run while arguments are converted), converts everything that goes in before changing
//! anything (an `extend` with one bad item inserts none), and drops what comes out after the
//! container's lock is gone.

use crate::class::elements::{
    convert_entries, convert_items, index_error, list_spec, map_key, map_spec, new_list, new_map,
    ElemSpec, Nested, SpecRoot,
};
use crate::convert::{to_py_owned, Moves};
use crate::errors::to_pyerr;
use crate::native;
use crate::pytypes::is_wrapper;
use crate::trap::trap;
use pyo3::exceptions::{PyIndexError, PyKeyError, PyRuntimeError, PyTypeError};
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyList, PyTuple};
use tether_runtime::containers::{List, Map, MapKey};
use tether_runtime::types::FieldKind;
use tether_runtime::{ObjAny, Value};

/// A container kind, as `tether.List[T]` and `tether.Dict[K, V]` carry it.
#[pyclass(frozen, module = "tether._native", name = "_Spec")]
pub struct Spec(&'static ElemSpec, Option<FieldKind>);

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
static STANDALONE: std::sync::Mutex<Vec<Interned>> = std::sync::Mutex::new(Vec::new());

/// One interned standalone spec: the annotations' addresses (key or 0, element), the spec and
/// its key kind.
type Interned = (usize, usize, &'static ElemSpec, Option<FieldKind>);

fn standalone(
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
fn _list_spec(py: Python<'_>, elem: &Bound<'_, PyAny>) -> PyResult<Spec> {
    standalone(py, None, elem)
}

/// `_native._dict_spec(key, value)`: the spec of `tether.Dict[key, value]`.
#[pyfunction]
fn _dict_spec(py: Python<'_>, key: &Bound<'_, PyAny>, value: &Bound<'_, PyAny>) -> PyResult<Spec> {
    standalone(py, Some(key), value)
}

/// `_native._field_spec(cls, name, depth)`: the spec `depth` levels into field `name` of
/// `cls` (how a pickled container finds its kind again).
#[pyfunction]
fn _field_spec(cls: &Bound<'_, pyo3::types::PyType>, name: &str, depth: u32) -> PyResult<Spec> {
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

fn descend(top: &Nested, depth: u32) -> PyResult<Spec> {
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
fn _spec_at(spec: &Spec, depth: u32) -> PyResult<Spec> {
    let top = match &spec.1 {
        None => Nested::List(spec.0),
        Some(k) => Nested::Dict(k.clone(), spec.0),
    };
    descend(&top, depth)
}

fn wrap(py: Python<'_>, obj: ObjAny) -> PyResult<Py<PyAny>> {
    let p = to_py_owned(py, Value::Object(obj), true)?;
    // SAFETY: a new reference.
    Ok(unsafe { Bound::from_owned_ptr(py, p) }.unbind())
}

fn out(py: Python<'_>, v: Value) -> PyResult<Py<PyAny>> {
    let p = to_py_owned(py, v, true)?;
    // SAFETY: a new reference.
    Ok(unsafe { Bound::from_owned_ptr(py, p) }.unbind())
}

/// `_native._list_new(spec, items)`: a new `tether.List` of `items`.
#[pyfunction]
fn _list_new(py: Python<'_>, spec: &Spec, items: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
    let mut moves = Moves::new();
    let l = new_list(spec.0, items, &mut moves)?;
    moves.commit()?;
    wrap(py, l.into_any())
}

/// `_native._dict_new(spec, items)`: a new `tether.Dict` of `items`.
#[pyfunction]
fn _dict_new(py: Python<'_>, spec: &Spec, items: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
    let key = spec
        .1
        .as_ref()
        .ok_or_else(|| PyTypeError::new_err("not a dict spec"))?;
    let mut moves = Moves::new();
    let m = new_map(key, spec.0, items, &mut moves)?;
    moves.commit()?;
    wrap(py, m.into_any())
}

/// The native object behind container wrapper `o` (counted).
fn native_of(o: &Bound<'_, PyAny>) -> PyResult<ObjAny> {
    // SAFETY: `o` is live; GIL held.
    if !unsafe { is_wrapper(o.as_ptr()) } {
        return Err(PyTypeError::new_err("not a tether container"));
    }
    // SAFETY: a wrapper, kept alive by `o`.
    unsafe { native::counted(o.as_ptr()) }
}

/// The native list behind `o`, held by `obj`.
fn with_list<R>(
    o: &Bound<'_, PyAny>,
    f: impl FnOnce(&List, &ObjAny) -> PyResult<R>,
) -> PyResult<R> {
    let obj = native_of(o)?;
    let l = obj
        .downcast_ref::<List>()
        .ok_or_else(|| PyTypeError::new_err("not a tether.List"))?;
    f(l, &obj)
}

fn with_map<R>(o: &Bound<'_, PyAny>, f: impl FnOnce(&Map) -> PyResult<R>) -> PyResult<R> {
    let obj = native_of(o)?;
    let m = obj
        .downcast_ref::<Map>()
        .ok_or_else(|| PyTypeError::new_err("not a tether.Dict"))?;
    f(m)
}

/// A Python index into a sequence of `len`: negative from the end; out of range is an error.
fn index(i: isize, len: usize) -> PyResult<usize> {
    let n = len as isize;
    let j = if i < 0 { i + n } else { i };
    if (0..n).contains(&j) {
        Ok(j as usize)
    } else {
        Err(PyIndexError::new_err("list index out of range"))
    }
}

/// The positions a slice `(start, stop, step)` (already `slice.indices(len)`) selects.
fn positions(start: isize, stop: isize, step: isize) -> Vec<usize> {
    let mut v = Vec::new();
    let mut i = start;
    while (step > 0 && i < stop) || (step < 0 && i > stop) {
        v.push(i as usize);
        i += step;
    }
    v
}

fn convert_one<'py>(
    l: &List,
    v: &Bound<'py, PyAny>,
    moves: &mut Moves<'py>,
    i: usize,
) -> PyResult<Value> {
    let spec = list_spec(l);
    spec.convert(v, moves)
        .map_err(|e| index_error(v.py(), e, "tether.List", spec, i))
}

#[pyfunction]
fn _list_len(l: &Bound<'_, PyAny>) -> PyResult<usize> {
    with_list(l, |l, _| Ok(l.len()))
}

#[pyfunction]
fn _list_get(py: Python<'_>, l: &Bound<'_, PyAny>, i: isize) -> PyResult<Py<PyAny>> {
    let v = with_list(l, |l, _| {
        let j = index(i, l.len())?;
        l.get(j)
            .ok_or_else(|| PyIndexError::new_err("list index out of range"))
    })?;
    out(py, v)
}

/// `_list_slice(l, start, stop, step)`: a new list of the same kind sharing the elements.
#[pyfunction]
fn _list_slice(
    py: Python<'_>,
    l: &Bound<'_, PyAny>,
    start: isize,
    stop: isize,
    step: isize,
) -> PyResult<Py<PyAny>> {
    let made = with_list(l, |l, _| {
        let all = l.snapshot();
        let picked: Vec<Value> = positions(start, stop, step)
            .into_iter()
            .filter_map(|i| all.get(i).cloned())
            .collect();
        drop(all);
        let n = List::from_values(l.elem().clone(), picked).map_err(|e| to_pyerr(py, e))?;
        n.set_host_tag(l.host_tag());
        tether_runtime::ObjRef::try_new(n)
            .map_err(|_| pyo3::exceptions::PyMemoryError::new_err("out of memory"))
    })?;
    wrap(py, made.into_any())
}

#[pyfunction]
fn _list_set(l: &Bound<'_, PyAny>, i: isize, v: &Bound<'_, PyAny>) -> PyResult<()> {
    let old = with_list(l, |list, _| {
        let j = index(i, list.len())?;
        let mut moves = Moves::new();
        let value = convert_one(list, v, &mut moves, j)?;
        moves.check()?;
        let j = index(i, list.len())?; // the conversion may have run Python code
        let old = list.set(j, value).map_err(|e| to_pyerr(v.py(), e))?;
        moves.commit()?;
        Ok(old)
    })?;
    drop(old); // may run Python code: after everything
    Ok(())
}

/// `_list_set_slice(l, start, stop, step, items)`: slice assignment (`step` 1: any length).
#[pyfunction]
fn _list_set_slice(
    l: &Bound<'_, PyAny>,
    start: isize,
    stop: isize,
    step: isize,
    items: &Bound<'_, PyAny>,
) -> PyResult<()> {
    let old = with_list(l, |list, _| {
        let mut moves = Moves::new();
        let values = convert_items(
            list_spec(list),
            items,
            &mut moves,
            "tether.List",
            start.max(0) as usize,
        )?;
        moves.check()?;
        let old = if step == 1 {
            list.splice(
                start.max(0) as usize,
                stop.max(start).max(0) as usize,
                values,
            )
        } else {
            list.set_many(&positions(start, stop, step), values)
        }
        .map_err(|e| to_pyerr(l.py(), e))?;
        moves.commit()?;
        Ok(old)
    })?;
    drop(old);
    Ok(())
}

#[pyfunction]
fn _list_del(l: &Bound<'_, PyAny>, i: isize) -> PyResult<()> {
    let old = with_list(l, |list, _| {
        let j = index(i, list.len())?;
        list.remove(j)
            .ok_or_else(|| PyIndexError::new_err("list index out of range"))
    })?;
    drop(old);
    Ok(())
}

#[pyfunction]
fn _list_del_slice(l: &Bound<'_, PyAny>, start: isize, stop: isize, step: isize) -> PyResult<()> {
    let old = with_list(l, |list, _| {
        Ok(list.remove_many(&positions(start, stop, step)))
    })?;
    drop(old);
    Ok(())
}

#[pyfunction]
fn _list_insert(l: &Bound<'_, PyAny>, i: isize, v: &Bound<'_, PyAny>) -> PyResult<()> {
    with_list(l, |list, _| {
        let n = list.len() as isize;
        let at = if i < 0 { (i + n).max(0) } else { i.min(n) } as usize;
        let mut moves = Moves::new();
        let value = convert_one(list, v, &mut moves, at)?;
        moves.check()?;
        list.insert(at, value).map_err(|e| to_pyerr(v.py(), e))?;
        moves.commit()
    })
}

#[pyfunction]
fn _list_append(l: &Bound<'_, PyAny>, v: &Bound<'_, PyAny>) -> PyResult<()> {
    with_list(l, |list, _| {
        let mut moves = Moves::new();
        let value = convert_one(list, v, &mut moves, list.len())?;
        moves.check()?;
        list.push(value).map_err(|e| to_pyerr(v.py(), e))?;
        moves.commit()
    })
}

#[pyfunction]
fn _list_extend(l: &Bound<'_, PyAny>, items: &Bound<'_, PyAny>) -> PyResult<()> {
    with_list(l, |list, _| {
        let mut moves = Moves::new();
        // A list extended by itself: iterate a snapshot (Python's list does the same).
        let items = if items.is(l) {
            PyList::new(l.py(), _list_items(l.py(), l)?)?.into_any()
        } else {
            items.clone()
        };
        let values = convert_items(
            list_spec(list),
            &items,
            &mut moves,
            "tether.List",
            list.len(),
        )?;
        moves.check()?;
        list.extend(values).map_err(|e| to_pyerr(l.py(), e))?;
        moves.commit()
    })
}

/// `_list_items(l)`: the elements as a Python list (objects through their canonical wrappers).
#[pyfunction]
fn _list_items(py: Python<'_>, l: &Bound<'_, PyAny>) -> PyResult<Vec<Py<PyAny>>> {
    let all = with_list(l, |list, _| Ok(list.snapshot()))?;
    all.into_iter().map(|v| out(py, v)).collect()
}

/// `_list_replace(l, items)`: every element replaced by `items` (all converted first).
#[pyfunction]
fn _list_replace(l: &Bound<'_, PyAny>, items: &Bound<'_, PyAny>) -> PyResult<()> {
    let old = with_list(l, |list, _| {
        let mut moves = Moves::new();
        let values = convert_items(list_spec(list), items, &mut moves, "tether.List", 0)?;
        moves.check()?;
        let old = list.replace_all(values).map_err(|e| to_pyerr(l.py(), e))?;
        moves.commit()?;
        Ok(old)
    })?;
    drop(old);
    Ok(())
}

/// `_list_pop(l, i)`: removes and returns element `i` (from the end if negative), in one step.
#[pyfunction]
fn _list_pop(py: Python<'_>, l: &Bound<'_, PyAny>, i: isize) -> PyResult<Py<PyAny>> {
    let v = with_list(l, |list, _| {
        if list.is_empty() {
            return Err(PyIndexError::new_err("pop from empty list"));
        }
        list.pop(i)
            .ok_or_else(|| PyIndexError::new_err("pop index out of range"))
    })?;
    out(py, v)
}

/// `_list_remove_at(l, i, expected)`: removes element `i` if it is still `expected` (the
/// Python side found it by equality, which runs Python code and so cannot happen under the
/// list's lock); returns whether it did.
#[pyfunction]
fn _list_remove_at(l: &Bound<'_, PyAny>, i: usize, expected: &Bound<'_, PyAny>) -> PyResult<bool> {
    let old = with_list(l, |list, _| {
        let spec = list_spec(list);
        let mut moves = Moves::new();
        let Ok(v) = spec.convert(expected, &mut moves) else {
            return Ok(None);
        };
        Ok(list.remove_if(i, &v))
    })?;
    let done = old.is_some();
    drop(old);
    Ok(done)
}

/// `_list_snapshot(l)`: `(elements, version)`, for a sort or repeat written back with
/// [`_list_replace_if`].
#[pyfunction]
fn _list_snapshot(py: Python<'_>, l: &Bound<'_, PyAny>) -> PyResult<(Vec<Py<PyAny>>, u64)> {
    let (all, version) = with_list(l, |list, _| Ok(list.snapshot_versioned()))?;
    Ok((
        all.into_iter()
            .map(|v| out(py, v))
            .collect::<PyResult<_>>()?,
        version,
    ))
}

/// `_list_replace_if(l, version, items)`: every element replaced by `items` if the list did not
/// change since `version`; returns whether it was.
#[pyfunction]
fn _list_replace_if(
    l: &Bound<'_, PyAny>,
    version: u64,
    items: &Bound<'_, PyAny>,
) -> PyResult<bool> {
    let old = with_list(l, |list, _| {
        let mut moves = Moves::new();
        let values = convert_items(list_spec(list), items, &mut moves, "tether.List", 0)?;
        moves.check()?;
        let old = list
            .replace_if(version, values)
            .map_err(|e| to_pyerr(l.py(), e))?;
        if old.is_some() {
            moves.commit()?;
        }
        Ok(old)
    })?;
    let done = old.is_some();
    drop(old);
    Ok(done)
}

#[pyfunction]
fn _list_reverse(l: &Bound<'_, PyAny>) -> PyResult<()> {
    with_list(l, |list, _| {
        list.reverse();
        Ok(())
    })
}

/// `_list_spec_of(l)`: the list's kind (what `copy()` and slices make).
#[pyfunction]
fn _list_spec_of(l: &Bound<'_, PyAny>) -> PyResult<Spec> {
    with_list(l, |list, _| Ok(Spec(list_spec(list), None)))
}

/// `_dict_spec_of(d)`.
#[pyfunction]
fn _dict_spec_of(d: &Bound<'_, PyAny>) -> PyResult<Spec> {
    with_map(d, |m| {
        let (k, v) = map_spec(m);
        Ok(Spec(v, Some(k.clone())))
    })
}

fn key_of<'py>(m: &Map, k: &Bound<'py, PyAny>, moves: &mut Moves<'py>) -> PyResult<MapKey> {
    map_key(m.key_kind(), k, moves)
}

fn key_error(k: &Bound<'_, PyAny>) -> PyErr {
    PyKeyError::new_err(k.clone().unbind())
}

#[pyfunction]
fn _dict_len(d: &Bound<'_, PyAny>) -> PyResult<usize> {
    with_map(d, |m| Ok(m.len()))
}

#[pyfunction]
fn _dict_get(py: Python<'_>, d: &Bound<'_, PyAny>, k: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
    let v = with_map(d, |m| {
        let mut moves = Moves::new();
        // A key of the wrong kind is simply absent (as a dict lookup of an unhashable... no:
        // of another type).
        let key = key_of(m, k, &mut moves).map_err(|_| key_error(k))?;
        m.get(&key).ok_or_else(|| key_error(k))
    })?;
    out(py, v)
}

#[pyfunction]
fn _dict_contains(d: &Bound<'_, PyAny>, k: &Bound<'_, PyAny>) -> PyResult<bool> {
    with_map(d, |m| {
        let mut moves = Moves::new();
        Ok(key_of(m, k, &mut moves).is_ok_and(|key| m.get(&key).is_some()))
    })
}

#[pyfunction]
fn _dict_set(d: &Bound<'_, PyAny>, k: &Bound<'_, PyAny>, v: &Bound<'_, PyAny>) -> PyResult<()> {
    let old = with_map(d, |m| {
        let mut moves = Moves::new();
        let (kk, spec) = map_spec(m);
        let what = format!(
            "tether.Dict[{}, {}]",
            crate::convert::kind_name(kk),
            spec.display
        );
        let shown = k.repr().map_or_else(|_| "?".into(), |r| r.to_string());
        let key = key_of(m, k, &mut moves)
            .map_err(|e| crate::class::annotate(d.py(), e, &format!("{what} key {shown}")))?;
        let value = spec
            .convert(v, &mut moves)
            .map_err(|e| crate::class::annotate(d.py(), e, &format!("{what} key {shown}")))?;
        moves.check()?;
        let old = m.insert(key, value).map_err(|e| to_pyerr(d.py(), e))?;
        moves.commit()?;
        Ok(old)
    })?;
    drop(old);
    Ok(())
}

/// `_dict_pop(d, key, default)`: removes `key` and returns its value, in one step; `default`
/// if absent (`missing` as the default: raise `KeyError`).
#[pyfunction]
fn _dict_pop(
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
fn _dict_get_or(
    py: Python<'_>,
    d: &Bound<'_, PyAny>,
    k: &Bound<'_, PyAny>,
    default: &Bound<'_, PyAny>,
) -> PyResult<Py<PyAny>> {
    let found = with_map(d, |m| {
        let mut moves = Moves::new();
        Ok(key_of(m, k, &mut moves).ok().and_then(|key| m.get(&key)))
    })?;
    match found {
        Some(v) => out(py, v),
        None => Ok(default.clone().unbind()),
    }
}

/// `_dict_setdefault(d, key, default)`: Python's `setdefault`, in one step.
#[pyfunction]
fn _dict_setdefault(
    py: Python<'_>,
    d: &Bound<'_, PyAny>,
    k: &Bound<'_, PyAny>,
    default: &Bound<'_, PyAny>,
) -> PyResult<Py<PyAny>> {
    let v = with_map(d, |m| {
        let mut moves = Moves::new();
        let (kk, spec) = map_spec(m);
        let what = format!(
            "tether.Dict[{}, {}]",
            crate::convert::kind_name(kk),
            spec.display
        );
        let shown = k.repr().map_or_else(|_| "?".into(), |r| r.to_string());
        let key = key_of(m, k, &mut moves)
            .map_err(|e| crate::class::annotate(d.py(), e, &format!("{what} key {shown}")))?;
        let value = spec
            .convert(default, &mut moves)
            .map_err(|e| crate::class::annotate(d.py(), e, &format!("{what} key {shown}")))?;
        moves.check()?;
        let v = m
            .get_or_insert(key, value)
            .map_err(|e| to_pyerr(d.py(), e))?;
        moves.commit()?;
        Ok(v)
    })?;
    out(py, v)
}

#[pyfunction]
fn _dict_del(d: &Bound<'_, PyAny>, k: &Bound<'_, PyAny>) -> PyResult<()> {
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
fn _dict_items(py: Python<'_>, d: &Bound<'_, PyAny>) -> PyResult<Vec<(Py<PyAny>, Py<PyAny>)>> {
    let all = with_map(d, |m| Ok(m.snapshot()))?;
    all.into_iter()
        .map(|(k, v)| Ok((out(py, k.to_value())?, out(py, v)?)))
        .collect()
}

/// `_dict_update(d, items)`: every entry converted first; all or nothing.
#[pyfunction]
fn _dict_update(d: &Bound<'_, PyAny>, items: &Bound<'_, PyAny>) -> PyResult<()> {
    let old = with_map(d, |m| {
        let mut moves = Moves::new();
        let (k, v) = map_spec(m);
        let entries = convert_entries(k, v, items, &mut moves)?;
        moves.check()?;
        let old = m.update(entries).map_err(|e| to_pyerr(d.py(), e))?;
        moves.commit()?;
        Ok(old)
    })?;
    drop(old);
    Ok(())
}

#[pyfunction]
fn _dict_popitem(py: Python<'_>, d: &Bound<'_, PyAny>) -> PyResult<(Py<PyAny>, Py<PyAny>)> {
    let (k, v) = with_map(d, |m| {
        m.pop_last()
            .ok_or_else(|| PyKeyError::new_err("popitem(): dictionary is empty"))
    })?;
    Ok((out(py, k.to_value())?, out(py, v)?))
}

#[pyfunction]
fn _dict_clear(d: &Bound<'_, PyAny>) -> PyResult<()> {
    let old = with_map(d, |m| Ok(m.clear()))?;
    drop(old);
    Ok(())
}

/// The iterator of a `tether.List`: by index, like a Python list's (it sees appends and
/// removals made while it runs, and never fails because of them). A small C type: its
/// `tp_iternext` is the whole cost of a `for` loop's step.
#[repr(C)]
struct ListIter {
    ob_base: ffi::PyObject,
    /// A strong reference to the list wrapper.
    list: *mut ffi::PyObject,
    /// The next index (atomic: two threads may share one iterator on free-threaded builds).
    next: core::sync::atomic::AtomicUsize,
}

static LIST_ITER_TYPE: core::sync::atomic::AtomicPtr<ffi::PyTypeObject> =
    core::sync::atomic::AtomicPtr::new(core::ptr::null_mut());

unsafe extern "C" fn list_iter_next(it: *mut ffi::PyObject) -> *mut ffi::PyObject {
    // SAFETY: CPython slot: attached, `it` a live ListIter.
    unsafe {
        trap(core::ptr::null_mut(), |py| {
            let it = &*it.cast::<ListIter>();
            let i = it.next.load(core::sync::atomic::Ordering::Relaxed);
            match item_at(py, it.list, i)? {
                Some(p) => {
                    it.next.store(i + 1, core::sync::atomic::Ordering::Relaxed);
                    Ok(p)
                }
                None => Ok(core::ptr::null_mut()), // exhausted: NULL with no exception set
            }
        })
    }
}

unsafe extern "C" fn list_iter_dealloc(it: *mut ffi::PyObject) {
    // SAFETY: CPython slot: `it` is dying; it owns a reference to its list and to its type.
    unsafe {
        let tp = ffi::Py_TYPE(it);
        ffi::Py_DECREF((*it.cast::<ListIter>()).list);
        ffi::PyObject_Free(it.cast());
        ffi::Py_DECREF(tp.cast());
    }
}

/// A new iterator over the list wrapper `o`.
///
/// # Safety
/// `o` is live; attached.
unsafe fn new_list_iter(py: Python<'_>, o: *mut ffi::PyObject) -> PyResult<*mut ffi::PyObject> {
    let tp = LIST_ITER_TYPE.load(core::sync::atomic::Ordering::Acquire);
    // SAFETY: the type was made at module init; GenericAlloc gives a zeroed instance with a
    // reference to its type.
    unsafe {
        let it = ffi::PyType_GenericAlloc(tp, 0);
        if it.is_null() {
            return Err(PyErr::fetch(py));
        }
        ffi::Py_INCREF(o);
        (*it.cast::<ListIter>()).list = o;
        Ok(it)
    }
}

fn create_list_iter_type(py: Python<'_>) -> PyResult<()> {
    // SAFETY: the spec and slots are only read during this call.
    let tp = unsafe {
        let mut slots = [
            ffi::PyType_Slot {
                slot: ffi::Py_tp_iter,
                pfunc: ffi::PyObject_SelfIter as *mut core::ffi::c_void,
            },
            ffi::PyType_Slot {
                slot: ffi::Py_tp_iternext,
                pfunc: list_iter_next as *mut core::ffi::c_void,
            },
            ffi::PyType_Slot {
                slot: ffi::Py_tp_dealloc,
                pfunc: list_iter_dealloc as *mut core::ffi::c_void,
            },
            ffi::PyType_Slot {
                slot: 0,
                pfunc: core::ptr::null_mut(),
            },
        ];
        let mut spec = ffi::PyType_Spec {
            name: c"tether._native._ListIterator".as_ptr(),
            basicsize: core::mem::size_of::<ListIter>() as i32,
            itemsize: 0,
            flags: ffi::Py_TPFLAGS_DEFAULT as u32,
            slots: slots.as_mut_ptr(),
        };
        ffi::PyType_FromSpec(&mut spec)
    };
    if tp.is_null() {
        return Err(PyErr::fetch(py));
    }
    LIST_ITER_TYPE.store(tp.cast(), core::sync::atomic::Ordering::Release);
    Ok(())
}

/// The key iterator of a `tether.Dict`: raises `RuntimeError` if keys are added or removed
/// while it runs, as a dict's does.
#[pyclass(module = "tether._native", name = "_DictIterator")]
pub struct DictIter {
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

/// `_list_iter(l)`: `l.__iter__()` (the `tp_iter` slot makes the same).
#[pyfunction]
fn _list_iter(py: Python<'_>, l: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
    with_list(l, |_, _| Ok(()))?;
    // SAFETY: `l` is live; attached; a new reference.
    Ok(unsafe { Bound::from_owned_ptr(py, new_list_iter(py, l.as_ptr())?) }.unbind())
}

/// `_dict_iter(d, what)`: keys (0), values (1) or items (2).
#[pyfunction]
fn _dict_iter(d: &Bound<'_, PyAny>, what: u8) -> PyResult<DictIter> {
    let version = with_map(d, |m| Ok(m.version()))?;
    Ok(DictIter {
        dict: d.clone().unbind(),
        next: 0,
        version,
        what,
    })
}

/// Element `i` (not negative) of the list behind wrapper `o` as a new reference, `None` past
/// the end: an element's live wrapper with one `Py_INCREF` under the list's lock (no count
/// traffic), else a copy, converted after the lock and the view are gone.
///
/// # Safety
/// `o` is a live object; attached.
unsafe fn item_at(
    py: Python<'_>,
    o: *mut ffi::PyObject,
    i: usize,
) -> PyResult<Option<*mut ffi::PyObject>> {
    enum Got {
        Wrapper(*mut ffi::PyObject),
        Copy(Value),
    }
    // SAFETY: `o` is live (caller).
    if !unsafe { is_wrapper(o) } {
        return Err(PyTypeError::new_err("not a tether.List"));
    }
    // The view's scope ends before the conversion below, which may run Python code.
    let got = {
        // SAFETY: a live wrapper; no Python code runs while the view lives.
        let view = unsafe { native::view(o) }?;
        let l = view
            .native()
            .downcast_ref::<List>()
            .ok_or_else(|| PyTypeError::new_err("not a tether.List"))?;
        l.with_items(|items| {
            items.get(i).map(|v| match v {
                // SAFETY: attached; the element is alive under the lock, and its wrapper found
                // holds a reference of its own.
                Value::Object(c) => match unsafe { crate::wrapper::bound_wrapper(c, true) } {
                    Some(w) => Got::Wrapper(w),
                    None => Got::Copy(Value::Object(c.clone())),
                },
                v => Got::Copy(v.clone()),
            })
        })
    };
    match got {
        None => Ok(None),
        Some(Got::Wrapper(w)) => Ok(Some(w)),
        Some(Got::Copy(v)) => to_py_owned(py, v, true).map(Some),
    }
}

/// `l[key]` for an int key, through [`item_at`].
///
/// # Safety
/// As for [`item_at`].
unsafe fn get_index(
    py: Python<'_>,
    o: *mut ffi::PyObject,
    key: &Bound<'_, PyAny>,
) -> PyResult<*mut ffi::PyObject> {
    let i: isize = key.extract()?;
    let j = if i < 0 {
        // SAFETY: as above (the length read is its own short lock).
        let n = _list_len(unsafe { &Bound::from_borrowed_ptr(py, o) })? as isize;
        if i + n < 0 {
            return Err(PyIndexError::new_err("list index out of range"));
        }
        (i + n) as usize
    } else {
        i as usize
    };
    // SAFETY: forwarded.
    unsafe { item_at(py, o, j) }?.ok_or_else(|| PyIndexError::new_err("list index out of range"))
}

unsafe extern "C" fn list_length(o: *mut ffi::PyObject) -> ffi::Py_ssize_t {
    // SAFETY: CPython slot: attached, `o` a live object of the List class.
    unsafe {
        trap(-1, |py| {
            let o = Bound::from_borrowed_ptr(py, o);
            Ok(_list_len(&o)? as ffi::Py_ssize_t)
        })
    }
}

unsafe extern "C" fn list_subscript(
    o: *mut ffi::PyObject,
    key: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    // SAFETY: CPython slot: attached, `o` a live List, `key` live.
    unsafe {
        trap(core::ptr::null_mut(), |py| {
            let key = Bound::from_borrowed_ptr(py, key);
            if key.is_instance_of::<pyo3::types::PyInt>()
                || ffi::PyIndex_Check(key.as_ptr()) != 0
                    && !key.is_instance_of::<pyo3::types::PySlice>()
            {
                return get_index(py, o, &key);
            }
            let o = Bound::from_borrowed_ptr(py, o);
            Ok(o.call_method1("_getslice", (key,))?.into_ptr())
        })
    }
}

unsafe extern "C" fn list_iter(o: *mut ffi::PyObject) -> *mut ffi::PyObject {
    // SAFETY: CPython slot: attached, `o` a live List.
    unsafe { trap(core::ptr::null_mut(), |py| new_list_iter(py, o)) }
}

unsafe extern "C" fn m_getitem(
    o: *mut ffi::PyObject,
    key: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    // SAFETY: a METH_O method of tether.List: `o` is the instance, `key` the argument.
    unsafe { list_subscript(o, key) }
}

unsafe extern "C" fn m_len(o: *mut ffi::PyObject, _: *mut ffi::PyObject) -> *mut ffi::PyObject {
    // SAFETY: a METH_NOARGS method of tether.List.
    unsafe {
        let n = list_length(o);
        if n < 0 {
            return core::ptr::null_mut();
        }
        ffi::PyLong_FromSsize_t(n)
    }
}

unsafe extern "C" fn m_iter(o: *mut ffi::PyObject, _: *mut ffi::PyObject) -> *mut ffi::PyObject {
    // SAFETY: a METH_NOARGS method of tether.List.
    unsafe { list_iter(o) }
}

unsafe extern "C" fn m_append(o: *mut ffi::PyObject, v: *mut ffi::PyObject) -> *mut ffi::PyObject {
    // SAFETY: a METH_O method of tether.List.
    unsafe {
        trap(core::ptr::null_mut(), |py| {
            _list_append(
                &Bound::from_borrowed_ptr(py, o),
                &Bound::from_borrowed_ptr(py, v),
            )?;
            Ok(py.None().into_ptr())
        })
    }
}

/// `_native._install_fast_slots(List)`: `len`, indexing, iteration and `append` of
/// `tether.List` in C: the slots, and method descriptors for `__getitem__`, `__len__`,
/// `__iter__` and `append` written straight into the class dict (a Python `__getitem__` there
/// would make the interpreter's specialization call it instead of the slot).
#[pyfunction]
fn _install_fast_slots(cls: &Bound<'_, pyo3::types::PyType>) -> PyResult<()> {
    let py = cls.py();
    let tp = cls.as_ptr().cast::<ffi::PyTypeObject>();
    let list_class = crate::classes::class_for(crate::class::elements::list_type())?;
    if !core::ptr::eq(tp, list_class) {
        return Err(PyTypeError::new_err(
            "_install_fast_slots takes tether.List",
        ));
    }
    let methods: [(
        &'static core::ffi::CStr,
        ffi::PyMethodDefPointer,
        core::ffi::c_int,
        &'static core::ffi::CStr,
    ); 4] = [
        (
            c"__getitem__",
            ffi::PyMethodDefPointer {
                PyCFunction: m_getitem,
            },
            ffi::METH_O,
            c"l[i] or l[a:b]",
        ),
        (
            c"__len__",
            ffi::PyMethodDefPointer { PyCFunction: m_len },
            ffi::METH_NOARGS,
            c"len(l)",
        ),
        (
            c"__iter__",
            ffi::PyMethodDefPointer {
                PyCFunction: m_iter,
            },
            ffi::METH_NOARGS,
            c"iter(l)",
        ),
        (
            c"append",
            ffi::PyMethodDefPointer {
                PyCFunction: m_append,
            },
            ffi::METH_O,
            c"Append one element (converted and checked).",
        ),
    ];
    // SAFETY: `tp` is the live heap type of tether.List: its mapping and sequence tables are
    // its own (PyHeapTypeObject), and nothing iterates them concurrently at this point (the
    // package's import). The method definitions are leaked: descriptors point at them forever.
    unsafe {
        let dict = (*tp).tp_dict;
        for (name, meth, flags, doc) in methods {
            let def = Box::leak(Box::new(ffi::PyMethodDef {
                ml_name: name.as_ptr(),
                ml_meth: meth,
                ml_flags: flags,
                ml_doc: doc.as_ptr(),
            }));
            let d = ffi::PyDescr_NewMethod(tp, def);
            if d.is_null() || ffi::PyDict_SetItemString(dict, name.as_ptr(), d) < 0 {
                return Err(PyErr::fetch(py));
            }
            ffi::Py_DECREF(d);
        }
        let heap = tp.cast::<ffi::PyHeapTypeObject>();
        (*heap).as_mapping.mp_length = Some(list_length);
        (*heap).as_mapping.mp_subscript = Some(list_subscript);
        (*heap).as_sequence.sq_length = Some(list_length);
        (*tp).tp_iter = Some(list_iter);
        ffi::PyType_Modified(tp);
    }
    Ok(())
}

/// Whether `o` is a `tether.List` or `tether.Dict` of some kind: the container kind's
/// `repr`, for messages (`None` for anything else).
#[pyfunction]
fn _container_kind(o: &Bound<'_, PyAny>) -> PyResult<Option<String>> {
    // SAFETY: `o` is live; GIL held.
    if !unsafe { is_wrapper(o.as_ptr()) } {
        return Ok(None);
    }
    // SAFETY: a wrapper, kept alive by `o`.
    let obj = unsafe { native::counted(o.as_ptr()) }?;
    Ok(crate::class::elements::nested_of(&obj).map(|n: Nested| n.display()))
}

/// Creates the two classes and adds the primitives to the module.
pub fn init(m: &Bound<'_, PyModule>, root: &Bound<'_, PyAny>) -> PyResult<()> {
    let py = m.py();
    let list = crate::meta::create_native_class(
        py,
        root,
        "List",
        "tether",
        crate::class::elements::list_type(),
    )?;
    m.add("List", list)?;
    let dict = crate::meta::create_native_class(
        py,
        root,
        "Dict",
        "tether",
        crate::class::elements::map_type(),
    )?;
    m.add("Dict", dict)?;
    m.add_class::<Spec>()?;
    create_list_iter_type(py)?;
    m.add_class::<DictIter>()?;
    for f in [
        wrap_pyfunction!(_list_spec, m)?,
        wrap_pyfunction!(_dict_spec, m)?,
        wrap_pyfunction!(_field_spec, m)?,
        wrap_pyfunction!(_spec_at, m)?,
        wrap_pyfunction!(_list_new, m)?,
        wrap_pyfunction!(_dict_new, m)?,
        wrap_pyfunction!(_list_len, m)?,
        wrap_pyfunction!(_list_get, m)?,
        wrap_pyfunction!(_list_slice, m)?,
        wrap_pyfunction!(_list_set, m)?,
        wrap_pyfunction!(_list_set_slice, m)?,
        wrap_pyfunction!(_list_del, m)?,
        wrap_pyfunction!(_list_del_slice, m)?,
        wrap_pyfunction!(_list_insert, m)?,
        wrap_pyfunction!(_list_append, m)?,
        wrap_pyfunction!(_list_extend, m)?,
        wrap_pyfunction!(_list_items, m)?,
        wrap_pyfunction!(_list_replace, m)?,
        wrap_pyfunction!(_list_reverse, m)?,
        wrap_pyfunction!(_list_pop, m)?,
        wrap_pyfunction!(_list_remove_at, m)?,
        wrap_pyfunction!(_list_snapshot, m)?,
        wrap_pyfunction!(_list_replace_if, m)?,
        wrap_pyfunction!(_dict_pop, m)?,
        wrap_pyfunction!(_dict_get_or, m)?,
        wrap_pyfunction!(_dict_setdefault, m)?,
        wrap_pyfunction!(_list_spec_of, m)?,
        wrap_pyfunction!(_dict_spec_of, m)?,
        wrap_pyfunction!(_dict_len, m)?,
        wrap_pyfunction!(_dict_get, m)?,
        wrap_pyfunction!(_dict_contains, m)?,
        wrap_pyfunction!(_dict_set, m)?,
        wrap_pyfunction!(_dict_del, m)?,
        wrap_pyfunction!(_dict_items, m)?,
        wrap_pyfunction!(_dict_update, m)?,
        wrap_pyfunction!(_dict_popitem, m)?,
        wrap_pyfunction!(_dict_clear, m)?,
        wrap_pyfunction!(_dict_iter, m)?,
        wrap_pyfunction!(_list_iter, m)?,
        wrap_pyfunction!(_install_fast_slots, m)?,
        wrap_pyfunction!(_container_kind, m)?,
    ] {
        m.add_function(f)?;
    }
    Ok(())
}

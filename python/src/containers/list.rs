//! The primitives of `tether.List` (`tether/_containers.py` builds the methods on them): each
//! converts everything that goes in first, then makes one native change.

use super::spec::Spec;
use super::{all_or_nothing, out, rt, with_list, wrap};
use crate::class::elements::{convert_items, index_error, list_spec, new_list};
use crate::convert::Moves;
use pyo3::exceptions::PyIndexError;
use pyo3::prelude::*;
use pyo3::types::PyList;
use tether_runtime::containers::List;
use tether_runtime::Value;

/// `_native._list_new(spec, items)`: a new `tether.List` of `items`.
#[pyfunction]
pub(super) fn _list_new(
    py: Python<'_>,
    spec: &Spec,
    items: &Bound<'_, PyAny>,
) -> PyResult<Py<PyAny>> {
    let mut moves = Moves::new();
    let l = new_list(spec.0, items, &mut moves)?;
    moves.commit()?;
    wrap(py, l.into_any())
}

/// A Python index into a sequence of `len`: negative from the end; out of range is an error.
pub(super) fn index(i: isize, len: usize) -> PyResult<usize> {
    let n = len as isize;
    let j = if i < 0 { i + n } else { i };
    if (0..n).contains(&j) {
        Ok(j as usize)
    } else {
        Err(PyIndexError::new_err("list index out of range"))
    }
}

/// The positions a slice `(start, stop, step)` (already `slice.indices(len)`) selects.
pub(super) fn positions(start: isize, stop: isize, step: isize) -> Vec<usize> {
    let mut v = Vec::new();
    let mut i = start;
    while (step > 0 && i < stop) || (step < 0 && i > stop) {
        v.push(i as usize);
        i += step;
    }
    v
}

pub(super) fn convert_one<'py>(
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
pub(super) fn _list_len(l: &Bound<'_, PyAny>) -> PyResult<usize> {
    with_list(l, |l| Ok(l.len()))
}

/// `_list_slice(l, start, stop, step)`: a new list of the same kind sharing the elements.
#[pyfunction]
pub(super) fn _list_slice(
    py: Python<'_>,
    l: &Bound<'_, PyAny>,
    start: isize,
    stop: isize,
    step: isize,
) -> PyResult<Py<PyAny>> {
    let made = with_list(l, |l| {
        let all = l.snapshot();
        let picked: Vec<Value> = positions(start, stop, step)
            .into_iter()
            .filter_map(|i| all.get(i).cloned())
            .collect();
        drop(all);
        let n = rt(py, List::from_values(l.elem().clone(), picked))?;
        n.set_host_tag(l.host_tag());
        tether_runtime::ObjRef::try_new(n)
            .map_err(|_| pyo3::exceptions::PyMemoryError::new_err("out of memory"))
    })?;
    wrap(py, made.into_any())
}

#[pyfunction]
pub(super) fn _list_set(l: &Bound<'_, PyAny>, i: isize, v: &Bound<'_, PyAny>) -> PyResult<()> {
    let old = with_list(l, |list| {
        let j = index(i, list.len())?;
        all_or_nothing(
            |moves| convert_one(list, v, moves, j),
            |value| {
                let j = index(i, list.len())?; // the conversion may have run Python code
                rt(v.py(), list.set(j, value))
            },
        )
    })?;
    drop(old); // may run Python code: after everything
    Ok(())
}

/// `_list_set_slice(l, start, stop, step, items)`: slice assignment (`step` 1: any length).
#[pyfunction]
pub(super) fn _list_set_slice(
    l: &Bound<'_, PyAny>,
    start: isize,
    stop: isize,
    step: isize,
    items: &Bound<'_, PyAny>,
) -> PyResult<()> {
    let old = with_list(l, |list| {
        let at = start.max(0) as usize;
        all_or_nothing(
            |moves| convert_items(list_spec(list), items, moves, "tether.List", at),
            |values| {
                rt(
                    l.py(),
                    if step == 1 {
                        list.splice(at, stop.max(start).max(0) as usize, values)
                    } else {
                        list.set_many(&positions(start, stop, step), values)
                    },
                )
            },
        )
    })?;
    drop(old);
    Ok(())
}

#[pyfunction]
pub(super) fn _list_del(l: &Bound<'_, PyAny>, i: isize) -> PyResult<()> {
    let old = with_list(l, |list| {
        let j = index(i, list.len())?;
        list.remove(j)
            .ok_or_else(|| PyIndexError::new_err("list index out of range"))
    })?;
    drop(old);
    Ok(())
}

#[pyfunction]
pub(super) fn _list_del_slice(
    l: &Bound<'_, PyAny>,
    start: isize,
    stop: isize,
    step: isize,
) -> PyResult<()> {
    let old = with_list(
        l,
        |list| Ok(list.remove_many(&positions(start, stop, step))),
    )?;
    drop(old);
    Ok(())
}

#[pyfunction]
pub(super) fn _list_insert(l: &Bound<'_, PyAny>, i: isize, v: &Bound<'_, PyAny>) -> PyResult<()> {
    with_list(l, |list| {
        let n = list.len() as isize;
        let at = if i < 0 { (i + n).max(0) } else { i.min(n) } as usize;
        all_or_nothing(
            |moves| convert_one(list, v, moves, at),
            |value| rt(v.py(), list.insert(at, value)),
        )
    })
}

#[pyfunction]
pub(super) fn _list_append(l: &Bound<'_, PyAny>, v: &Bound<'_, PyAny>) -> PyResult<()> {
    with_list(l, |list| {
        all_or_nothing(
            |moves| convert_one(list, v, moves, list.len()),
            |value| rt(v.py(), list.push(value)),
        )
    })
}

#[pyfunction]
pub(super) fn _list_extend(l: &Bound<'_, PyAny>, items: &Bound<'_, PyAny>) -> PyResult<()> {
    with_list(l, |list| {
        // A list extended by itself: iterate a snapshot (Python's list does the same).
        let items = if items.is(l) {
            PyList::new(l.py(), _list_items(l.py(), l)?)?.into_any()
        } else {
            items.clone()
        };
        all_or_nothing(
            |moves| convert_items(list_spec(list), &items, moves, "tether.List", list.len()),
            |values| rt(l.py(), list.extend(values)),
        )
    })
}

/// `_list_items(l)`: the elements as a Python list (objects through their canonical wrappers).
#[pyfunction]
pub(super) fn _list_items(py: Python<'_>, l: &Bound<'_, PyAny>) -> PyResult<Vec<Py<PyAny>>> {
    let all = with_list(l, |list| Ok(list.snapshot()))?;
    all.into_iter().map(|v| out(py, v)).collect()
}

/// `_list_replace(l, items)`: every element replaced by `items` (all converted first).
#[pyfunction]
pub(super) fn _list_replace(l: &Bound<'_, PyAny>, items: &Bound<'_, PyAny>) -> PyResult<()> {
    let old = with_list(l, |list| {
        all_or_nothing(
            |moves| convert_items(list_spec(list), items, moves, "tether.List", 0),
            |values| rt(l.py(), list.replace_all(values)),
        )
    })?;
    drop(old);
    Ok(())
}

/// `_list_pop(l, i)`: removes and returns element `i` (from the end if negative), in one step.
#[pyfunction]
pub(super) fn _list_pop(py: Python<'_>, l: &Bound<'_, PyAny>, i: isize) -> PyResult<Py<PyAny>> {
    let v = with_list(l, |list| {
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
pub(super) fn _list_remove_at(
    l: &Bound<'_, PyAny>,
    i: usize,
    expected: &Bound<'_, PyAny>,
) -> PyResult<bool> {
    let old = with_list(l, |list| {
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
pub(super) fn _list_snapshot(
    py: Python<'_>,
    l: &Bound<'_, PyAny>,
) -> PyResult<(Vec<Py<PyAny>>, u64)> {
    let (all, version) = with_list(l, |list| Ok(list.snapshot_versioned()))?;
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
pub(super) fn _list_replace_if(
    l: &Bound<'_, PyAny>,
    version: u64,
    items: &Bound<'_, PyAny>,
) -> PyResult<bool> {
    // Not `all_or_nothing`: a list changed meanwhile is not an error, yet its tokens must stay.
    let old = with_list(l, |list| {
        let mut moves = Moves::new();
        let values = convert_items(list_spec(list), items, &mut moves, "tether.List", 0)?;
        moves.check()?;
        let old = rt(l.py(), list.replace_if(version, values))?;
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
pub(super) fn _list_reverse(l: &Bound<'_, PyAny>) -> PyResult<()> {
    with_list(l, |list| {
        list.reverse();
        Ok(())
    })
}

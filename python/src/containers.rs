//! Floor 9: `tether.List` and `tether.Dict`, the Python side of the runtime's native containers
//! (`tether_runtime::containers`). The classes are tether classes of the runtime's `List` and
//! `Map` types, so each container has one canonical wrapper, parked and revived like any
//! object's, and its elements are converted and handed out like fields (objects through their
//! canonical wrappers). The Python methods are in `tether/_containers.py`, over the primitives
//! here (`containers/list.rs`, `containers/dict.rs`, the kinds in `containers/spec.rs`);
//! indexing, `len`, iteration and `append` are C slots and methods (`containers/fast.rs`).
//!
//! Every primitive takes a counted reference to the native container first (Python code may
//! run while arguments are converted), converts everything that goes in before changing
//! anything (an `extend` with one bad item inserts none), and drops what comes out after the
//! container's lock is gone.

use crate::class::elements::Nested;
use crate::convert::{to_py_owned, Moves};
use crate::native;
use crate::pytypes::is_wrapper;
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use tether_runtime::containers::{List, Map};
use tether_runtime::{ObjAny, Value};

mod dict;
mod fast;
mod list;
mod spec;

use dict::*;
use fast::*;
use list::*;
use spec::*;

pub(super) fn wrap(py: Python<'_>, obj: ObjAny) -> PyResult<Py<PyAny>> {
    let p = to_py_owned(py, Value::Object(obj), true)?;
    // SAFETY: a new reference.
    Ok(unsafe { Bound::from_owned_ptr(py, p) }.unbind())
}

pub(super) fn out(py: Python<'_>, v: Value) -> PyResult<Py<PyAny>> {
    let p = to_py_owned(py, v, true)?;
    // SAFETY: a new reference.
    Ok(unsafe { Bound::from_owned_ptr(py, p) }.unbind())
}

/// The all-or-nothing shape of every change to a container: `prepare` converts what goes in
/// (it may run Python code, and it peeks at `tether.move()` tokens), the tokens are checked,
/// `apply` makes the one native change (which may still refuse: then no token is consumed),
/// and only then are the tokens consumed. What the change took out comes back, for the caller
/// to drop once the container's borrow is gone (dropping it may run Python code).
pub(super) fn all_or_nothing<'py, P, R>(
    prepare: impl FnOnce(&mut Moves<'py>) -> PyResult<P>,
    apply: impl FnOnce(P) -> PyResult<R>,
) -> PyResult<R> {
    let mut moves = Moves::new();
    let prepared = prepare(&mut moves)?;
    moves.check()?;
    let out = apply(prepared)?;
    moves.commit()?;
    Ok(out)
}

/// A runtime result as a Python one.
pub(super) fn rt<T>(py: Python<'_>, r: Result<T, tether_runtime::Error>) -> PyResult<T> {
    r.map_err(|e| crate::errors::to_pyerr(py, e))
}

/// The native object behind container wrapper `o` (counted).
pub(super) fn native_of(o: &Bound<'_, PyAny>) -> PyResult<ObjAny> {
    // SAFETY: `o` is live; GIL held.
    if !unsafe { is_wrapper(o.as_ptr()) } {
        return Err(PyTypeError::new_err("not a tether container"));
    }
    // SAFETY: a wrapper, kept alive by `o`.
    unsafe { native::counted(o.as_ptr()) }
}

/// The native list behind `o`, held by `obj`.
/// Runs `f` on the native list behind `o` (a counted reference held for the call).
pub(super) fn with_list<R>(
    o: &Bound<'_, PyAny>,
    f: impl FnOnce(&List) -> PyResult<R>,
) -> PyResult<R> {
    let obj = native_of(o)?;
    let l = obj
        .downcast_ref::<List>()
        .ok_or_else(|| PyTypeError::new_err("not a tether.List"))?;
    f(l)
}

pub(super) fn with_map<R>(
    o: &Bound<'_, PyAny>,
    f: impl FnOnce(&Map) -> PyResult<R>,
) -> PyResult<R> {
    let obj = native_of(o)?;
    let m = obj
        .downcast_ref::<Map>()
        .ok_or_else(|| PyTypeError::new_err("not a tether.Dict"))?;
    f(m)
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
        wrap_pyfunction!(_install_fast_slots, m)?,
        wrap_pyfunction!(_container_kind, m)?,
    ] {
        m.add_function(f)?;
    }
    Ok(())
}

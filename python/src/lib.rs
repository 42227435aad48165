//! # tether-py: the native core of the `tether` Python package
//!
//! Python classes declared as `class Inner(tether.Object): val: int` get native storage (a
//! runtime record) and one canonical wrapper per native object, tied through the allocator
//! header: `a.x is a.x`, and `id(a.x)` survives the wrapper's death and revival (the wrapper's
//! memory is parked while the native object lives, and revived at the same address).
//!
//! Modules form floors: each uses only modules on floors below it (docs/architecture.md).
//!
//! | floor | modules | owns |
//! |---|---|---|
//! | 0 | `trap`, `pytypes`, `pyhandle`, `ft` | the slot boundary; raw layouts and type objects; Python objects held natively; the free-threaded header rules |
//! | 1 | `errors`, `pool`, `classes`, `hostgraph` | exceptions; wrapper memory; which class a type index has, classes kept alive; the Python objects of the cycle collector's graph |
//! | 2 | `native`, `tied`, `kept` | the uncounted view and counted handles: the one way to a wrapper's native object; the tie transitions per build; wrappers kept for their weak references |
//! | 3 | `wrapper` | wrap / install / take out / dealloc (park) |
//! | 4 | `carriers` | the `Function` and `Moved` pyclasses, `tether.move` |
//! | 5 | `convert` | values both ways, all-or-nothing moves |
//! | 6 | `class`, `function` | field definitions and class info (`class/constraint.rs`: enum, literal, union and forward checks); native functions |
//! | 7 | `field`, `base`, `referents` | descriptors; `_Base`'s slots (construct, repr, pickle); `tp_traverse` for `gc.get_referents` |
//! | 8 | `meta` | the metaclass (`meta/kinds.rs`, `meta/annotations.rs`, `meta/declare.rs`) |
//! | 9 | `containers`, `testing` | `tether.List`/`tether.Dict` (their classes are made by the metaclass); `tether.testing`, written the way an extension author would |
//!
//! One source, two builds, chosen at compile time by PyO3's `Py_GIL_DISABLED` cfg: on GIL
//! builds everything runs with the GIL held and the hot paths use plain stores; on free-threaded
//! builds (CPython 3.13t) the module is declared `gil_used = false`, and what the GIL used to
//! protect has its own lock or atomic (docs/design.md, "Threads").

mod base;
mod carriers;
mod class;
mod classes;
mod containers;
mod convert;
mod errors;
mod field;
mod ft;
mod function;
mod hostgraph;
mod kept;
mod meta;
mod native;
mod pool;
#[cfg(feature = "dhat-heap")]
mod profiling;
mod pyhandle;
mod pytypes;
mod referents;
mod restore;
mod testing;
mod tied;
mod trap;
mod wrapper;

use core::sync::atomic::Ordering::Relaxed;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};

/// `tether.set_tying(on)`: with tying off, every access hands out a fresh, unbound wrapper (the
/// behaviour of ordinary bindings), so the gain can be measured side by side.
#[pyfunction]
fn set_tying(on: &Bound<'_, PyAny>) -> PyResult<()> {
    wrapper::TYING.store(on.is_truthy()?, Relaxed);
    Ok(())
}

/// `TETHER_TYING` as people write it: `0`/`off`/`false`/`no` switch tying off, `1`/`on`/`true`/
/// `yes` (or an empty value) keep it on, anything else warns and keeps it on.
fn tying_from_env(py: Python<'_>) -> PyResult<()> {
    let Ok(v) = std::env::var("TETHER_TYING") else {
        return Ok(());
    };
    match v.trim().to_ascii_lowercase().as_str() {
        "0" | "off" | "false" | "no" => wrapper::TYING.store(false, Relaxed),
        "" | "1" | "on" | "true" | "yes" => wrapper::TYING.store(true, Relaxed),
        _ => PyErr::warn(
            py,
            &py.get_type::<pyo3::exceptions::PyRuntimeWarning>(),
            &std::ffi::CString::new(format!(
                "TETHER_TYING={v:?} is not understood (use 0/off/false/no or 1/on/true/yes); \
                 tying stays on"
            ))?,
            1,
        )?,
    }
    Ok(())
}

/// `tether.tying_enabled()`.
#[pyfunction]
fn tying_enabled() -> bool {
    wrapper::TYING.load(Relaxed)
}

/// `_native._fields(cls)`: `(name, has_default, default, default_factory or None)` for every
/// field of tether class `cls`, inherited first (what `tether.fields`, `__signature__` and
/// `tether.replace` are built on).
#[pyfunction]
#[allow(clippy::type_complexity)] // one tuple per field, as Python receives it
fn _fields<'py>(
    py: Python<'py>,
    cls: &Bound<'py, pyo3::types::PyType>,
) -> PyResult<Vec<(String, bool, Bound<'py, PyAny>, Option<Py<PyAny>>)>> {
    // SAFETY: `cls` is a live type object; GIL held.
    let info = unsafe { class::info_of(cls.as_ptr().cast()) }?;
    info.fields()
        .map(|f| {
            let default = match &f.default {
                // SAFETY: `to_py` returns a new reference.
                Some(v) => unsafe { Bound::from_owned_ptr(py, convert::to_py(py, v, true)?) },
                None => py.None().into_bound(py),
            };
            let factory = if f.has_factory {
                Some(
                    cls.getattr("__tether_factories__")?
                        .get_item(&f.name)?
                        .unbind(),
                )
            } else {
                None
            };
            Ok((f.name.clone(), f.default.is_some(), default, factory))
        })
        .collect()
}

/// `_native._resolve(cls)`: looks up now the classes `cls`'s fields name by forward reference
/// (`tether.resolve`).
#[pyfunction]
fn _resolve(cls: &Bound<'_, pyo3::types::PyType>) -> PyResult<()> {
    // SAFETY: `cls` is a live type object; GIL held.
    unsafe { class::info_of(cls.as_ptr().cast()) }?.resolve(cls.py())
}

/// `_native._check_live(obj)`: raises `MovedError` if tether object `obj` has no native object.
#[pyfunction]
fn _check_live(obj: &Bound<'_, PyAny>) -> PyResult<()> {
    // SAFETY: `obj` is live; GIL held.
    if !unsafe { pytypes::is_wrapper(obj.as_ptr()) } {
        return Err(pyo3::exceptions::PyTypeError::new_err(
            "not a tether object",
        ));
    }
    // SAFETY: checked to be a wrapper; the view is dropped at once.
    unsafe { native::view(obj.as_ptr()) }.map(drop)
}

/// `tether.stats()`: the allocator's and the wrapper pool's counters.
#[pyfunction]
fn stats(py: Python<'_>) -> PyResult<Bound<'_, PyDict>> {
    let d = PyDict::new(py);
    let a = tether_runtime::alloc_stats();
    d.set_item("native_objects", a.live_blocks)?;
    d.set_item("native_bytes", a.live_bytes)?;
    d.set_item("native_peak_bytes", a.peak_bytes)?;
    d.set_item("header_bytes", a.header_bytes)?;
    d.set_item("native_allocs_total", a.total_allocs)?;
    d.set_item("live_wrappers", pool::LIVE.get())?;
    d.set_item("parked_wrappers", pool::parked())?;
    d.set_item("kept_wrappers", kept::count())?;
    let t = tether_runtime::cycle_totals();
    let cy = PyDict::new(py);
    cy.set_item("runs", t.runs)?;
    cy.set_item("scanned", t.scanned)?;
    cy.set_item("freed", t.freed)?;
    cy.set_item("abandoned", t.abandoned)?;
    cy.set_item("tracked", tether_runtime::tracked_objects())?;
    d.set_item("cycles", cy)?;
    d.set_item("wrapper_size", pool::WRAPPER_SIZE)?;
    let p = pool::POOL.stats();
    let ps = PyDict::new(py);
    ps.set_item("slabs", p.slabs)?;
    ps.set_item("bytes_held", p.bytes_held)?;
    ps.set_item("blocks_in_use", p.in_use_blocks)?;
    ps.set_item("blocks_free", p.free_blocks)?;
    d.set_item("pool", ps)?;
    Ok(d)
}

/// `tether.collect_cycles()`: runs the native cycle collector now (it also runs at the start of
/// every full garbage collection, see `tether/__init__.py`); returns what it did.
#[pyfunction]
fn collect_cycles(py: Python<'_>) -> PyResult<Bound<'_, PyDict>> {
    let s = tether_runtime::collect_cycles();
    let d = PyDict::new(py);
    d.set_item("scanned", s.scanned)?;
    d.set_item("found", s.found)?;
    d.set_item("freed", s.freed)?;
    d.set_item("abandoned", s.abandoned)?;
    Ok(d)
}

/// `_native._collect_cycles_saving()`: the collector run of a `gc.DEBUG_SAVEALL` collection:
/// the garbage is kept, intact, and returned as its canonical wrappers (for `gc.garbage`).
#[pyfunction]
fn _collect_cycles_saving(py: Python<'_>) -> PyResult<Bound<'_, PyList>> {
    let (_, kept) = tether_runtime::collect_cycles_keeping();
    let out = PyList::empty(py);
    for obj in kept {
        // SAFETY: attached (a pyfunction); the wrapper takes over or clones `obj`'s reference.
        let w = unsafe { wrapper::wrap_canonical(obj) }?;
        // SAFETY: a new reference, owned by the Bound.
        out.append(unsafe { Bound::from_owned_ptr(py, w) })?;
    }
    Ok(out)
}

/// `tether.trim()`: returns fully free wrapper-pool slabs to the allocator and (with mimalloc)
/// asks mimalloc to return its retained free pages to the OS. Returns the pool bytes released.
/// It also runs after every full garbage collection (see `tether/__init__.py`): measured at
/// under a millisecond, with or without a million live objects, so memory freed by a program
/// goes back to the OS without the program asking.
#[pyfunction]
fn trim() -> usize {
    // SAFETY: a pyfunction: the thread is attached.
    unsafe { pool::flush_cache() };
    let released = pool::POOL.trim();
    #[cfg(feature = "mimalloc")]
    tether_alloc::MiMalloc::collect(true);
    released
}

/// `_native._pending_restores()`: how many fields of restored objects still wait for an object
/// that is not initialized yet (two-phase restore, `restore.rs`; for tests).
#[pyfunction]
fn _pending_restores() -> usize {
    restore::pending()
}

/// `_native._release_idle_classes()`: gives back the references that kept classes alive for
/// their native objects, for types that have none left (run before full garbage collections and
/// at exit, see `tether/__init__.py`). Returns how many classes were released.
#[pyfunction]
fn _release_idle_classes(py: Python<'_>) -> usize {
    restore::sweep(py);
    classes::release_idle_classes(py)
}

/// `_native._at_exit()`: the interpreter is finalizing. From now on native threads never try to
/// take the GIL to release Python objects (they leak them instead of hanging), and classes
/// without native objects are released so their modules' globals can be finalized.
#[pyfunction]
fn _at_exit(py: Python<'_>) {
    pyhandle::FINALIZING.store(true, Relaxed);
    classes::release_idle_classes(py);
}

#[pymodule(gil_used = false)]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    tether_runtime::tie::set_host(&kept::TIE_HOST);
    tether_runtime::set_cycle_host(&kept::CYCLE_HOST);
    let base = base::create_base_type(py)?;
    field::create_descr_type(py)?;
    let meta_tp = meta::create_meta_type(py)?;
    // SAFETY: both types were just created; the module takes new references.
    unsafe {
        m.add("_Base", Bound::from_borrowed_ptr(py, base.cast()))?;
        m.add("ObjectMeta", Bound::from_borrowed_ptr(py, meta_tp.cast()))?;
    }
    let root = meta::create_root(py, meta_tp)?;
    m.add("Object", &root)?;
    m.add("MovedError", py.get_type::<errors::MovedError>())?;
    m.add(
        "FrozenInstanceError",
        py.get_type::<errors::FrozenInstanceError>(),
    )?;
    m.add_class::<carriers::PyFunction>()?;
    m.add_class::<carriers::Moved>()?;
    m.add_function(wrap_pyfunction!(carriers::move_, m)?)?;
    m.add_function(wrap_pyfunction!(function::function, m)?)?;
    m.add_function(wrap_pyfunction!(function::get_global, m)?)?;
    m.add_function(wrap_pyfunction!(function::register_global, m)?)?;
    m.add_function(wrap_pyfunction!(function::list_globals, m)?)?;
    m.add_function(wrap_pyfunction!(set_tying, m)?)?;
    m.add_function(wrap_pyfunction!(tying_enabled, m)?)?;
    m.add_function(wrap_pyfunction!(stats, m)?)?;
    m.add("FREE_THREADED", ft::FREE_THREADED)?;
    m.add("WRAPPER_BYTES", pool::WRAPPER_SIZE)?;
    m.add_function(wrap_pyfunction!(trim, m)?)?;
    m.add_function(wrap_pyfunction!(collect_cycles, m)?)?;
    m.add_function(wrap_pyfunction!(_collect_cycles_saving, m)?)?;
    m.add_function(wrap_pyfunction!(_release_idle_classes, m)?)?;
    m.add_function(wrap_pyfunction!(_pending_restores, m)?)?;
    m.add_function(wrap_pyfunction!(_at_exit, m)?)?;
    m.add_function(wrap_pyfunction!(_fields, m)?)?;
    m.add_function(wrap_pyfunction!(_check_live, m)?)?;
    m.add_function(wrap_pyfunction!(_resolve, m)?)?;
    m.add_function(wrap_pyfunction!(meta::_set_class_hook, m)?)?;
    m.add_function(wrap_pyfunction!(meta::_set_field_spec_type, m)?)?;
    let recon = wrap_pyfunction!(base::_reconstruct, m)?;
    m.add("_reconstruct", &recon)?;
    let _ = base::RECONSTRUCTOR.set(py, recon.into_any().unbind());
    tying_from_env(py)?;
    containers::init(m, &root)?;
    testing::init(m, &root)?;
    #[cfg(feature = "dhat-heap")]
    profiling::init(m)?;
    Ok(())
}

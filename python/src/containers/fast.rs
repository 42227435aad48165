//! `tether.List` in C: element reads with no count traffic for a live wrapper, the iterator
//! type, and the slots and method descriptors that make `len`, indexing, iteration and
//! `append` C calls.

use super::dict::{_dict_contains, _dict_del, _dict_get, _dict_len, _dict_set};
use super::list::{_list_append, _list_len};
use crate::convert::to_py_owned;
use crate::native;
use crate::pytypes::is_wrapper;
use crate::trap::trap;
use pyo3::exceptions::{PyIndexError, PyTypeError};
use pyo3::ffi;
use pyo3::prelude::*;
use tether_runtime::containers::List;
use tether_runtime::Value;

/// The iterator of a `tether.List`: by index, like a Python list's (it sees appends and
/// removals made while it runs, and never fails because of them). A small C type: its
/// `tp_iternext` is the whole cost of a `for` loop's step.
#[repr(C)]
pub(super) struct ListIter {
    ob_base: ffi::PyObject,
    /// A strong reference to the list wrapper.
    list: *mut ffi::PyObject,
    /// The next index (atomic: two threads may share one iterator on free-threaded builds).
    next: core::sync::atomic::AtomicUsize,
}

pub(super) static LIST_ITER_TYPE: core::sync::atomic::AtomicPtr<ffi::PyTypeObject> =
    core::sync::atomic::AtomicPtr::new(core::ptr::null_mut());

pub(super) unsafe extern "C" fn list_iter_next(it: *mut ffi::PyObject) -> *mut ffi::PyObject {
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

pub(super) unsafe extern "C" fn list_iter_dealloc(it: *mut ffi::PyObject) {
    // SAFETY: CPython slot: `it` is dying; it owns a reference to its list and to its type.
    unsafe {
        ffi::Py_DECREF((*it.cast::<ListIter>()).list);
        crate::pytypes::free_plain_instance(it);
    }
}

/// A new iterator over the list wrapper `o`.
///
/// # Safety
/// `o` is live; attached.
pub(super) unsafe fn new_list_iter(
    py: Python<'_>,
    o: *mut ffi::PyObject,
) -> PyResult<*mut ffi::PyObject> {
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

pub(super) fn create_list_iter_type(py: Python<'_>) -> PyResult<()> {
    // SAFETY: each function has its slot's signature; attached (module init).
    let tp = unsafe {
        crate::pytypes::plain_type(
            py,
            c"tether._native._ListIterator",
            core::mem::size_of::<ListIter>(),
            &[
                (
                    ffi::Py_tp_iter,
                    ffi::PyObject_SelfIter as *mut core::ffi::c_void,
                ),
                (
                    ffi::Py_tp_iternext,
                    list_iter_next as *mut core::ffi::c_void,
                ),
                (
                    ffi::Py_tp_dealloc,
                    list_iter_dealloc as *mut core::ffi::c_void,
                ),
            ],
        )
    }?;
    LIST_ITER_TYPE.store(tp, core::sync::atomic::Ordering::Release);
    Ok(())
}

/// Element `i` (not negative) of the list behind wrapper `o` as a new reference, `None` past
/// the end: an element's live wrapper with one `Py_INCREF` under the list's lock (no count
/// traffic), else a copy, converted after the lock and the view are gone.
///
/// # Safety
/// `o` is a live object; attached.
pub(super) unsafe fn item_at(
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
pub(super) unsafe fn get_index(
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

pub(super) unsafe extern "C" fn list_length(o: *mut ffi::PyObject) -> ffi::Py_ssize_t {
    // SAFETY: CPython slot: attached, `o` a live object of the List class.
    unsafe {
        trap(-1, |py| {
            let o = Bound::from_borrowed_ptr(py, o);
            Ok(_list_len(&o)? as ffi::Py_ssize_t)
        })
    }
}

pub(super) unsafe extern "C" fn list_subscript(
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

pub(super) unsafe extern "C" fn list_iter(o: *mut ffi::PyObject) -> *mut ffi::PyObject {
    // SAFETY: CPython slot: attached, `o` a live List.
    unsafe { trap(core::ptr::null_mut(), |py| new_list_iter(py, o)) }
}

pub(super) unsafe extern "C" fn m_getitem(
    o: *mut ffi::PyObject,
    key: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    // SAFETY: a METH_O method of tether.List: `o` is the instance, `key` the argument.
    unsafe { list_subscript(o, key) }
}

pub(super) unsafe extern "C" fn m_len(
    o: *mut ffi::PyObject,
    _: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    // SAFETY: a METH_NOARGS method of tether.List.
    unsafe {
        let n = list_length(o);
        if n < 0 {
            return core::ptr::null_mut();
        }
        ffi::PyLong_FromSsize_t(n)
    }
}

pub(super) unsafe extern "C" fn m_iter(
    o: *mut ffi::PyObject,
    _: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    // SAFETY: a METH_NOARGS method of tether.List.
    unsafe { list_iter(o) }
}

pub(super) unsafe extern "C" fn m_append(
    o: *mut ffi::PyObject,
    v: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
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

type MethodRow = (
    &'static core::ffi::CStr,
    ffi::PyMethodDefPointer,
    core::ffi::c_int,
    &'static core::ffi::CStr,
);

/// Writes C method descriptors for `methods` straight into `tp`'s dict (not through
/// `setattr`, which would install the generic slot wrappers).
///
/// # Safety
/// `tp` is a live heap type nobody else uses concurrently (the package's import).
unsafe fn add_methods(
    py: Python<'_>,
    tp: *mut ffi::PyTypeObject,
    methods: &[MethodRow],
) -> PyResult<()> {
    // SAFETY: as the caller promises; the definitions are leaked, as descriptors point at them
    // for ever.
    unsafe {
        let dict = (*tp).tp_dict;
        for &(name, meth, flags, doc) in methods {
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
    }
    Ok(())
}

unsafe extern "C" fn dict_length(o: *mut ffi::PyObject) -> ffi::Py_ssize_t {
    // SAFETY: CPython slot: attached, `o` a live object of the Dict class.
    unsafe {
        trap(-1, |py| {
            Ok(_dict_len(&Bound::from_borrowed_ptr(py, o))? as ffi::Py_ssize_t)
        })
    }
}

unsafe extern "C" fn dict_subscript(
    o: *mut ffi::PyObject,
    key: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    // SAFETY: CPython slot: attached, `o` a live Dict, `key` live.
    unsafe {
        trap(core::ptr::null_mut(), |py| {
            let (o, k) = (
                Bound::from_borrowed_ptr(py, o),
                Bound::from_borrowed_ptr(py, key),
            );
            Ok(_dict_get(py, &o, &k)?.into_ptr())
        })
    }
}

unsafe extern "C" fn dict_ass_subscript(
    o: *mut ffi::PyObject,
    key: *mut ffi::PyObject,
    value: *mut ffi::PyObject,
) -> core::ffi::c_int {
    // SAFETY: CPython slot: attached, `o` a live Dict, `key` live, `value` live or null (delete).
    unsafe {
        trap(-1, |py| {
            let (o, k) = (
                Bound::from_borrowed_ptr(py, o),
                Bound::from_borrowed_ptr(py, key),
            );
            if value.is_null() {
                _dict_del(&o, &k)?;
            } else {
                _dict_set(&o, &k, &Bound::from_borrowed_ptr(py, value))?;
            }
            Ok(0)
        })
    }
}

unsafe extern "C" fn dict_contains(
    o: *mut ffi::PyObject,
    key: *mut ffi::PyObject,
) -> core::ffi::c_int {
    // SAFETY: CPython slot: attached, `o` a live Dict, `key` live.
    unsafe {
        trap(-1, |py| {
            let (o, k) = (
                Bound::from_borrowed_ptr(py, o),
                Bound::from_borrowed_ptr(py, key),
            );
            Ok(core::ffi::c_int::from(_dict_contains(&o, &k)?))
        })
    }
}

unsafe extern "C" fn md_getitem(
    o: *mut ffi::PyObject,
    key: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    // SAFETY: a METH_O method of tether.Dict.
    unsafe { dict_subscript(o, key) }
}

unsafe extern "C" fn md_len(o: *mut ffi::PyObject, _: *mut ffi::PyObject) -> *mut ffi::PyObject {
    // SAFETY: a METH_NOARGS method of tether.Dict.
    unsafe {
        let n = dict_length(o);
        if n < 0 {
            return core::ptr::null_mut();
        }
        ffi::PyLong_FromSsize_t(n)
    }
}

unsafe extern "C" fn md_contains(
    o: *mut ffi::PyObject,
    key: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    // SAFETY: a METH_O method of tether.Dict.
    unsafe {
        match dict_contains(o, key) {
            r if r < 0 => core::ptr::null_mut(),
            0 => ffi::Py_NewRef(ffi::Py_False()),
            _ => ffi::Py_NewRef(ffi::Py_True()),
        }
    }
}

unsafe extern "C" fn md_delitem(
    o: *mut ffi::PyObject,
    key: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    // SAFETY: a METH_O method of tether.Dict.
    unsafe {
        if dict_ass_subscript(o, key, core::ptr::null_mut()) < 0 {
            return core::ptr::null_mut();
        }
        ffi::Py_NewRef(ffi::Py_None())
    }
}

unsafe extern "C" fn md_setitem(
    o: *mut ffi::PyObject,
    args: *mut *mut ffi::PyObject,
    nargs: ffi::Py_ssize_t,
) -> *mut ffi::PyObject {
    // SAFETY: a METH_FASTCALL method of tether.Dict: `args` holds `nargs` live objects.
    unsafe {
        if nargs != 2 {
            return trap(core::ptr::null_mut(), |_| {
                Err(PyTypeError::new_err(format!(
                    "__setitem__ expected 2 arguments, got {nargs}"
                )))
            });
        }
        if dict_ass_subscript(o, *args, *args.add(1)) < 0 {
            return core::ptr::null_mut();
        }
        ffi::Py_NewRef(ffi::Py_None())
    }
}

/// `_native._install_fast_slots(cls)` for `tether.List` and `tether.Dict`: `len`, indexing,
/// membership, iteration and `append` (for the list) as C slots, and C method descriptors for
/// them written straight into the class dict (a Python `__getitem__` there would make the
/// interpreter's specialization call it instead of the slot). Run after the Python methods are
/// in the class: setting a dunder attribute later would replace the slots again.
#[pyfunction]
pub(super) fn _install_fast_slots(cls: &Bound<'_, pyo3::types::PyType>) -> PyResult<()> {
    let py = cls.py();
    let tp = cls.as_ptr().cast::<ffi::PyTypeObject>();
    let is = |t: u32| crate::classes::class_for(t).is_ok_and(|c| core::ptr::eq(c, tp));
    let list = is(crate::class::elements::list_type());
    if !list && !is(crate::class::elements::map_type()) {
        return Err(PyTypeError::new_err(
            "_install_fast_slots takes tether.List or tether.Dict",
        ));
    }
    let m =
        |f: unsafe extern "C" fn(*mut ffi::PyObject, *mut ffi::PyObject) -> *mut ffi::PyObject| {
            ffi::PyMethodDefPointer { PyCFunction: f }
        };
    // SAFETY: `tp` is the live heap type of tether.List or tether.Dict: its mapping and
    // sequence tables are its own (PyHeapTypeObject), and nothing uses them concurrently at
    // this point (the package's import).
    unsafe {
        let heap = tp.cast::<ffi::PyHeapTypeObject>();
        if list {
            add_methods(
                py,
                tp,
                &[
                    (c"__getitem__", m(m_getitem), ffi::METH_O, c"l[i] or l[a:b]"),
                    (c"__len__", m(m_len), ffi::METH_NOARGS, c"len(l)"),
                    (c"__iter__", m(m_iter), ffi::METH_NOARGS, c"iter(l)"),
                    (
                        c"append",
                        m(m_append),
                        ffi::METH_O,
                        c"Append one element (converted and checked).",
                    ),
                ],
            )?;
            (*heap).as_mapping.mp_length = Some(list_length);
            (*heap).as_mapping.mp_subscript = Some(list_subscript);
            (*heap).as_sequence.sq_length = Some(list_length);
            (*tp).tp_iter = Some(list_iter);
        } else {
            add_methods(
                py,
                tp,
                &[
                    (c"__getitem__", m(md_getitem), ffi::METH_O, c"d[key]"),
                    (c"__len__", m(md_len), ffi::METH_NOARGS, c"len(d)"),
                    (c"__contains__", m(md_contains), ffi::METH_O, c"key in d"),
                    (c"__delitem__", m(md_delitem), ffi::METH_O, c"del d[key]"),
                    (
                        c"__setitem__",
                        ffi::PyMethodDefPointer {
                            PyCFunctionFast: md_setitem,
                        },
                        ffi::METH_FASTCALL,
                        c"d[key] = value (converted and checked)",
                    ),
                ],
            )?;
            (*heap).as_mapping.mp_length = Some(dict_length);
            (*heap).as_mapping.mp_subscript = Some(dict_subscript);
            (*heap).as_mapping.mp_ass_subscript = Some(dict_ass_subscript);
            (*heap).as_sequence.sq_length = Some(dict_length);
            (*heap).as_sequence.sq_contains = Some(dict_contains);
        }
        ffi::PyType_Modified(tp);
    }
    Ok(())
}

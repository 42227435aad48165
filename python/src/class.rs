//! Class information: what a tether class's fields are and how to build its native records.
//!
//! Every tether class (instance of the metaclass, see [`crate::meta`]) carries a pointer to a
//! leaked, immutable [`ClassInfo`] in the metaclass's extra slot. Field definitions are leaked
//! too (`&'static`), so descriptors and subclasses can point at them without reference counts.
//! Classes are registered with the runtime (type index -> class) and live for the process.

use crate::convert::{from_py_kind, to_py};
use crate::errors::to_pyerr;
use crate::meta;
use pyo3::exceptions::{PyAttributeError, PyTypeError};
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString, PyTuple};
use tether_runtime::types::{type_info, FieldAccess, FieldKind};
use tether_runtime::{ObjAny, Record, Value};

/// One field of a tether class.
pub struct FieldDef {
    /// The attribute name.
    pub name: String,
    /// The declared kind.
    pub kind: FieldKind,
    /// The default, if declared.
    pub default: Option<Value>,
    /// Where the value lives: an inline record slot, or a Rust type's reflected accessors.
    pub access: FieldAccess,
    /// The class (runtime type index) that declared the field.
    pub owner: u32,
    /// Whether the declaring class is frozen.
    pub frozen: bool,
}

impl FieldDef {
    /// Reads the field of `obj` as a new Python reference (objects as their canonical wrapper).
    ///
    /// # Safety
    /// GIL held; `obj` is an instance of the field's owner type.
    #[inline]
    pub unsafe fn read(&self, obj: &ObjAny) -> PyResult<*mut ffi::PyObject> {
        // SAFETY: the GIL is held (caller).
        let py = unsafe { Python::assume_attached() };
        match &self.access {
            FieldAccess::Inline(i) => {
                // SAFETY: `obj` is an instance of the owner record type (caller), whose schema
                // gave this slot index, so it is a record with more than `i` fields; the GIL
                // serializes every access to record fields from Python, and the reference is
                // used only before any Python code can run.
                let v = unsafe { tether_runtime::record_field_ref_unchecked(obj, *i) };
                to_py(py, v, true)
            }
            FieldAccess::Accessor { get, .. } => to_py(py, &get(obj), true),
        }
    }

    /// Writes `value` into the field of `obj`, checking its kind; on error nothing changes.
    ///
    /// # Safety
    /// GIL held; `obj` is an instance of the field's owner type.
    pub unsafe fn write(
        &self,
        py: Python<'_>,
        obj: &ObjAny,
        value: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        if self.frozen {
            return Err(crate::errors::FrozenInstanceError::new_err(format!(
                "cannot assign to field '{}' of a frozen class",
                self.name
            )));
        }
        let v = from_py_kind(value, &self.kind)
            .map_err(|e| annotate(py, e, &format!("field '{}'", self.name)))?;
        match &self.access {
            FieldAccess::Inline(i) => {
                // SAFETY: as in `read`: a record with more than `i` fields, GIL-serialized
                // access (caller); the kind was checked above.
                let old = unsafe { tether_runtime::record_field_replace_unchecked(obj, *i, v) };
                drop(old); // may run Python code (a released object); the new value is in place
                Ok(())
            }
            FieldAccess::Accessor { set: Some(set), .. } => {
                set(obj, v).map_err(|e| to_pyerr(py, e))
            }
            FieldAccess::Accessor { set: None, .. } => Err(PyAttributeError::new_err(format!(
                "field '{}' is read-only",
                self.name
            ))),
        }
    }
}

/// Prefixes a TypeError's message with where it happened.
pub fn annotate(py: Python<'_>, e: PyErr, what: &str) -> PyErr {
    if e.is_instance_of::<PyTypeError>(py) {
        PyTypeError::new_err(format!("{what}: {}", e.value(py)))
    } else {
        e
    }
}

/// Everything tether knows about one class.
pub struct ClassInfo {
    /// The runtime type index of its native records.
    pub type_index: u32,
    /// All fields, inherited first, in declaration order.
    pub fields: Vec<&'static FieldDef>,
    /// Fields cannot be assigned.
    pub frozen: bool,
    /// Instances can be created from Python (false for Rust-defined types).
    pub constructible: bool,
    /// The class name, for messages.
    pub name: String,
}

impl ClassInfo {
    /// All fields, inherited first.
    pub fn fields(&self) -> impl Iterator<Item = &'static FieldDef> + '_ {
        self.fields.iter().copied()
    }

    fn field_index(&self, name: &str) -> Option<usize> {
        self.fields.iter().position(|f| f.name == name)
    }

    fn build(&self, py: Python<'_>, slots: Vec<Option<Value>>) -> PyResult<ObjAny> {
        let mut values = Vec::with_capacity(slots.len());
        let mut missing = Vec::new();
        for (f, v) in self.fields.iter().zip(slots) {
            match v.or_else(|| f.default.clone()) {
                Some(v) => values.push(v),
                None => missing.push(format!("'{}'", f.name)),
            }
        }
        if !missing.is_empty() {
            return Err(PyTypeError::new_err(format!(
                "{}() missing required field(s): {}",
                self.name,
                missing.join(", ")
            )));
        }
        Record::new(self.type_index, values).map_err(|e| to_pyerr(py, e))
    }

    fn check_constructible(&self) -> PyResult<()> {
        if self.constructible {
            Ok(())
        } else {
            Err(PyTypeError::new_err(format!(
                "{} is a native type and cannot be constructed from Python",
                self.name
            )))
        }
    }

    /// A native record from constructor arguments (positional in field order, or keywords).
    pub fn construct(
        &self,
        py: Python<'_>,
        args: &Bound<'_, PyTuple>,
        kw: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<ObjAny> {
        self.check_constructible()?;
        if args.len() > self.fields.len() {
            return Err(PyTypeError::new_err(format!(
                "{}() takes at most {} positional argument(s) ({} given)",
                self.name,
                self.fields.len(),
                args.len()
            )));
        }
        let mut slots: Vec<Option<Value>> = (0..self.fields.len()).map(|_| None).collect();
        for (i, a) in args.iter().enumerate() {
            let f = self.fields[i];
            slots[i] =
                Some(from_py_kind(&a, &f.kind).map_err(|e| {
                    annotate(py, e, &format!("{}() field '{}'", self.name, f.name))
                })?);
        }
        if let Some(kw) = kw {
            for (k, v) in kw.iter() {
                let k = k.cast_into::<PyString>()?;
                let k = k.to_str()?;
                let i = self.field_index(k).ok_or_else(|| {
                    PyTypeError::new_err(format!("{}() got an unexpected field '{k}'", self.name))
                })?;
                if slots[i].is_some() {
                    return Err(PyTypeError::new_err(format!(
                        "{}() got multiple values for field '{k}'",
                        self.name
                    )));
                }
                let f = self.fields[i];
                slots[i] = Some(
                    from_py_kind(&v, &f.kind)
                        .map_err(|e| annotate(py, e, &format!("{}() field '{k}'", self.name)))?,
                );
            }
        }
        self.build(py, slots)
    }

    /// Checks that `obj` really is an instance of this class's native type (a wrapper's
    /// `__class__` can be reassigned between tether classes; reading a field of the new class
    /// from a record of the old one must never happen).
    pub fn check_native(&self, obj: &ObjAny) -> PyResult<()> {
        if obj.type_index() == self.type_index || obj.is_instance(self.type_index) {
            Ok(())
        } else {
            Err(PyTypeError::new_err(format!(
                "this object's native type is not {}'s (was __class__ reassigned?)",
                self.name
            )))
        }
    }

    /// `{field: value}` for pickling and copying.
    pub fn state_dict<'py>(&self, py: Python<'py>, obj: &ObjAny) -> PyResult<Bound<'py, PyDict>> {
        self.check_native(obj)?;
        let d = PyDict::new(py);
        for f in self.fields() {
            // SAFETY: GIL held; `obj` is an instance of this class (its wrapper's class).
            let v = unsafe { Bound::from_owned_ptr_or_err(py, f.read(obj)?)? };
            d.set_item(&f.name, v)?;
        }
        Ok(d)
    }

    /// A native record from a pickled state dict: every field must be present or defaulted and
    /// no unknown field may appear (the class may have changed since pickling).
    pub fn from_state(&self, py: Python<'_>, state: &Bound<'_, PyDict>) -> PyResult<ObjAny> {
        self.check_constructible()?;
        let mut slots: Vec<Option<Value>> = (0..self.fields.len()).map(|_| None).collect();
        for (k, v) in state.iter() {
            let k = k.cast_into::<PyString>()?;
            let k = k.to_str()?;
            let i = self.field_index(k).ok_or_else(|| {
                PyTypeError::new_err(format!(
                    "cannot restore {}: the data has a field '{k}' the class does not declare \
                     (was the class changed since it was pickled?)",
                    self.name
                ))
            })?;
            let f = self.fields[i];
            slots[i] = Some(from_py_kind(&v, &f.kind).map_err(|e| {
                annotate(py, e, &format!("cannot restore {} field '{k}'", self.name))
            })?);
        }
        self.build(py, slots)
    }
}

/// The class info of a tether class.
///
/// # Safety
/// `tp` is a live type object; GIL held.
pub unsafe fn info_of(tp: *mut ffi::PyTypeObject) -> PyResult<&'static ClassInfo> {
    // SAFETY: forwarded.
    unsafe { meta::class_info(tp) }
        .ok_or_else(|| PyTypeError::new_err("not a tether class (tether.Object subclass)"))
}

/// Raises unless `cls` can be instantiated (abstract classes and native-only types cannot).
///
/// # Safety
/// `cls` is a live type object; GIL held.
pub unsafe fn check_instantiable(cls: *mut ffi::PyTypeObject) -> PyResult<()> {
    // SAFETY: `cls` is live (caller).
    let flags = unsafe { (*cls).tp_flags };
    if flags & ffi::Py_TPFLAGS_IS_ABSTRACT != 0 {
        // SAFETY: `cls` is live.
        let name = unsafe { crate::wrapper::type_name(cls) };
        return Err(PyTypeError::new_err(format!(
            "Can't instantiate abstract class {name}"
        )));
    }
    // SAFETY: forwarded.
    unsafe { info_of(cls) }?.check_constructible()
}

/// The class registered for runtime type `type_index` (borrowed; classes are immortal).
pub fn class_for(type_index: u32) -> PyResult<*mut ffi::PyTypeObject> {
    let info = type_info(type_index)
        .ok_or_else(|| PyTypeError::new_err(format!("unknown native type index {type_index}")))?;
    let cls = info.host_data();
    if cls.is_null() {
        return Err(PyTypeError::new_err(format!(
            "native type '{}' has no Python class",
            info.name
        )));
    }
    Ok(cls.cast())
}

/// Records `cls` as the class of runtime type `type_index`, keeping it alive for the process.
///
/// # Safety
/// `cls` is a live tether class; GIL held.
pub unsafe fn register_class(type_index: u32, cls: *mut ffi::PyTypeObject) -> PyResult<()> {
    let info = type_info(type_index)
        .ok_or_else(|| PyTypeError::new_err(format!("unknown native type index {type_index}")))?;
    // SAFETY: the registry's reference keeps the class alive for the process.
    unsafe { ffi::Py_INCREF(cls.cast()) };
    let old = info.host_data();
    info.set_host_data(cls.cast());
    if !old.is_null() {
        // SAFETY: the previous class had the registry's reference, released here.
        unsafe { ffi::Py_DECREF(old.cast()) };
    }
    Ok(())
}

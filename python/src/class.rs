//! Class information: what a tether class's fields are, how to build its native records, and
//! which class the runtime hands out for a type index.
//!
//! Every tether class (instance of the metaclass, see [`crate::meta`]) carries a pointer to a
//! leaked, immutable [`ClassInfo`] in the metaclass's extra slot. Field definitions are leaked
//! too (`&'static`), so descriptors and subclasses can point at them without reference counts.
//! Which class the runtime hands out for a type index is [`crate::classes`]'s business.

use crate::convert::{from_py_kind, Moves};
use crate::errors::to_pyerr;
use crate::native::{load_field, Slot};
use crate::pytypes::{class_info_slot, is_tether_class, is_wrapper, type_name};
use pyo3::exceptions::PyTypeError;
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString, PyTuple};
use pyo3::Borrowed;
use tether_runtime::types::{is_subtype, FieldAccess, FieldKind, SlotAt, SlotRepr, ANY_OBJECT};
use tether_runtime::{ObjAny, RecordBuilder, Value};

mod constraint;
pub mod elements;
pub use constraint::{Alt, Constraint, Forward};
pub use elements::{ElemDraft, Nested, NestedDraft};

/// One field of a tether class.
#[derive(Debug)]
pub struct FieldDef {
    /// The attribute name.
    pub name: String,
    /// The declared kind.
    pub kind: FieldKind,
    /// The default, if declared.
    pub default: Option<Value>,
    /// Where the value lives: an inline record slot, or a Rust type's reflected accessors.
    pub access: FieldAccess,
    /// For a record field, its slot in the record layout (the hot paths' way in).
    pub at: Option<SlotAt>,
    /// The class (runtime type index) that declared the field.
    pub owner: u32,
    /// Whether the declaring type is frozen (from the runtime's registry entry).
    pub frozen: bool,
    /// For a field naming a class defined after its own: which class, checked on the way in.
    pub forward: Option<Forward>,
    /// An enum, `Literal[...]` or union field: what it accepts, checked on the way in (the
    /// native kind is a value slot).
    pub constraint: Option<Constraint>,
    /// Declared `Final[...]`: never assigned after construction (`frozen` is then set too).
    pub is_final: bool,
    /// A `list[...]` or `dict[...]` field: the container kind (the native kind is the
    /// container's object kind).
    pub container: Option<Nested>,
    /// `tether.field(default_factory=...)` was given: the factory itself is kept in the class's
    /// `__tether_factories__` dict (owned by the class, so a factory that refers to classes does
    /// not make them immortal through this leaked definition).
    pub has_factory: bool,
}

impl FieldDef {
    /// What [`crate::native`]'s field accessors check.
    #[inline]
    pub fn slot(&self) -> Slot<'_> {
        Slot {
            owner: self.owner,
            access: &self.access,
            at: self.at,
            name: &self.name,
        }
    }

    /// Converts `value` for this field (tokens peeked into `moves`); a `TypeError` names the
    /// field, after `what()` (the operation, only formatted on error). May run Python code.
    pub fn convert<'py>(
        &self,
        value: &Bound<'py, PyAny>,
        moves: &mut Moves<'py>,
        what: impl FnOnce() -> String,
    ) -> PyResult<Value> {
        let py = value.py();
        let optional_none = value.is_none() && matches!(self.kind, FieldKind::Optional(_));
        let converted = match (&self.container, &self.constraint) {
            // An optional constrained or container field takes None as it is.
            (Some(_), _) | (_, Some(_)) if optional_none => Ok(Value::None),
            (Some(n), _) => n.convert(value, moves).map(Value::Object),
            (None, Some(c)) => c.convert(value, self.owner, moves),
            (None, None) => from_py_kind(value, &self.kind, moves),
        };
        converted
            .and_then(|v| match &self.forward {
                Some(f) => f.check(py, &v).map(|()| v),
                None => Ok(v),
            })
            .map_err(|e| annotate(py, e, &format!("{}field '{}'", what(), self.name)))
    }
}

impl FieldDef {
    /// Looks up the classes this field names by forward reference (see [`ClassInfo::resolve`]).
    pub fn resolve(&self, py: Python<'_>) -> PyResult<()> {
        if let Some(f) = &self.forward {
            f.resolve(py)?;
        }
        if let Some(c) = &self.constraint {
            c.resolve(py)?;
        }
        if let Some(n) = &self.container {
            n.resolve(py)?;
        }
        Ok(())
    }

    /// Whether restoring this field from `value` waits for a second phase (see
    /// `crate::restore`): `value` is a tether object that is not initialized yet (unpickling or
    /// deep-copying a structure that reaches it again before its own state is set), and the
    /// field can hold `None` meanwhile and will accept the object once it is initialized.
    pub fn defers(&self, value: &Bound<'_, PyAny>) -> bool {
        let o = value.as_ptr();
        // SAFETY: `value` is live and the GIL is held (we have a Bound): its type is readable,
        // and a wrapper has the wrapper layout.
        let info = unsafe {
            if !is_wrapper(o) || !crate::native::is_empty(o) || crate::wrapper::was_moved_out(o) {
                return false;
            }
            class_info(ffi::Py_TYPE(o))
        };
        let Some(info) = info else {
            return false;
        };
        let fits = |t: u32| t == ANY_OBJECT || is_subtype(info.type_index, t);
        match &self.kind {
            FieldKind::Any => true,
            FieldKind::Weak(t) => fits(*t),
            FieldKind::Optional(k) => match &**k {
                FieldKind::Any => true,
                FieldKind::Object(t) => fits(*t),
                _ => false,
            },
            // A strict field can wait unresolved (a null pointer slot, or a `None` value slot).
            FieldKind::Object(t) => {
                fits(*t)
                    && matches!(self.at, Some(at) if matches!(at.repr, SlotRepr::Ref { .. } | SlotRepr::Dyn))
            }
            _ => false,
        }
    }

    /// Whether the field can hold `None` (a deferred value waits there as `None`; otherwise it
    /// waits unresolved).
    fn accepts_none(&self) -> bool {
        matches!(
            self.kind,
            FieldKind::Any | FieldKind::Optional(_) | FieldKind::Weak(_)
        )
    }
}

/// Prefixes a TypeError's message with where it happened.
pub fn annotate(py: Python<'_>, e: PyErr, what: &str) -> PyErr {
    use pyo3::exceptions::{PyOverflowError, PyValueError};
    if e.is_instance_of::<PyTypeError>(py) {
        PyTypeError::new_err(format!("{what}: {}", e.value(py)))
    } else if e.is_instance_of::<PyOverflowError>(py) {
        PyOverflowError::new_err(format!("{what}: {}", e.value(py)))
    } else if e.get_type(py).is(py.get_type::<PyValueError>()) {
        PyValueError::new_err(format!("{what}: {}", e.value(py)))
    } else {
        e
    }
}

/// Everything tether knows about one class.
#[derive(Debug)]
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
    /// Every forward reference of its fields (and their elements and unions) has been looked
    /// up ([`ClassInfo::resolve`]).
    pub resolved: core::sync::atomic::AtomicBool,
}

/// Where constructor-like arguments come from, for the messages.
#[derive(Clone, Copy)]
enum Source {
    Call,
    State,
}

impl ClassInfo {
    /// Looks up every class its fields name that was defined after them (forward references,
    /// in fields, union alternatives and container elements), once; a name that still names
    /// no tether class raises `TypeError` naming the class, the field and the name. Runs at the
    /// first construction, and from `tether.resolve()`.
    pub fn resolve(&self, py: Python<'_>) -> PyResult<()> {
        use core::sync::atomic::Ordering::{Acquire, Release};
        if self.resolved.load(Acquire) {
            return Ok(());
        }
        for f in &self.fields {
            f.resolve(py)
                .map_err(|e| annotate(py, e, &format!("{}.{}", self.name, f.name)))?;
        }
        self.resolved.store(true, Release);
        Ok(())
    }

    /// All fields, inherited first.
    pub fn fields(&self) -> impl Iterator<Item = &'static FieldDef> + '_ {
        self.fields.iter().copied()
    }

    fn field_index(&self, name: &str) -> Option<usize> {
        self.fields.iter().position(|f| f.name == name)
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

    /// The one slot-filling loop of construction and unpickling: positional values in field
    /// order, then named ones, each converted straight into its slot of the record being built
    /// (no intermediate tuple, dict or vector); defaults for the rest. Tokens are peeked into
    /// `moves`; the caller commits them once nothing else can fail. On error the half-built
    /// record is dropped: nothing changes.
    fn build<'a, 'py: 'a>(
        &self,
        positional: &[Borrowed<'a, 'py, PyAny>],
        named: impl Iterator<Item = (Borrowed<'a, 'py, PyAny>, Borrowed<'a, 'py, PyAny>)>,
        moves: &mut Moves<'py>,
        source: Source,
        mut deferred: Option<&mut Vec<(usize, Bound<'py, PyAny>)>>,
        cls: &Bound<'py, PyAny>,
    ) -> PyResult<ObjAny> {
        let py = cls.py();
        self.check_constructible()?;
        let what = || match source {
            Source::Call => format!("{}() ", self.name),
            Source::State => format!("cannot restore {} ", self.name),
        };
        if positional.len() > self.fields.len() {
            return Err(PyTypeError::new_err(format!(
                "{}() takes at most {} positional argument(s) ({} given)",
                self.name,
                self.fields.len(),
                positional.len()
            )));
        }
        let err = |e| to_pyerr(py, e);
        let mut record = RecordBuilder::new(self.type_index).map_err(err)?;
        for (i, a) in positional.iter().enumerate() {
            let v = self.fields[i].convert(a, moves, what)?;
            record.set(i, v).map_err(err)?;
        }
        for (k, v) in named {
            let k = k.cast::<PyString>()?;
            // A name that is not valid text (a lone surrogate) names no field.
            let Ok(k) = k.to_str() else {
                return Err(PyTypeError::new_err(format!(
                    "{}() got an unexpected field {}",
                    self.name,
                    k.repr()?
                )));
            };
            let i = self.field_index(k).ok_or_else(|| match source {
                Source::Call => {
                    PyTypeError::new_err(format!("{}() got an unexpected field '{k}'", self.name))
                }
                Source::State => PyTypeError::new_err(format!(
                    "cannot restore {}: the data has a field '{k}' the class does not declare \
                     (was the class changed since it was pickled?)",
                    self.name
                )),
            })?;
            if record.is_set(i) {
                return Err(PyTypeError::new_err(format!(
                    "{}() got multiple values for field '{k}'",
                    self.name
                )));
            }
            if let Some(d) = deferred.as_deref_mut() {
                if self.fields[i].defers(&v) {
                    if self.fields[i].accepts_none() {
                        record.set(i, Value::None).map_err(err)?;
                    } else {
                        record.set_unresolved(i).map_err(err)?;
                    }
                    d.push((i, v.to_owned()));
                    continue;
                }
            }
            let v = self.fields[i].convert(&v, moves, what)?;
            record.set(i, v).map_err(err)?;
        }
        // Fields still unset and without a default (the common construction has none: one
        // check): required ones are an error, raised before any factory runs, so a failing
        // construction calls none; the rest are filled by their factories.
        if record.missing().next().is_some() {
            let missing: Vec<String> = record
                .missing()
                .filter(|&i| !self.fields[i].has_factory)
                .map(|i| format!("'{}'", self.fields[i].name))
                .collect();
            if !missing.is_empty() {
                return Err(PyTypeError::new_err(format!(
                    "{}() missing required field(s): {}",
                    self.name,
                    missing.join(", ")
                )));
            }
            let pending: Vec<usize> = record.missing().collect();
            let factories = cls.getattr("__tether_factories__")?;
            for i in pending {
                let f = self.fields[i];
                // Python code: it may re-enter; the record is ours alone until `finish`.
                let v = factories.get_item(&f.name)?.call0()?;
                let v = f.convert(&v, moves, what)?;
                record.set(i, v).map_err(err)?;
            }
        }
        record.finish().map_err(err)
    }

    /// A native record from constructor arguments (positional in field order, or keywords).
    pub fn construct<'py>(
        &self,
        cls: &Bound<'py, PyAny>,
        args: &Bound<'py, PyTuple>,
        kw: Option<&Bound<'py, PyDict>>,
        moves: &mut Moves<'py>,
    ) -> PyResult<ObjAny> {
        self.resolve(cls.py())?;
        let positional: Vec<_> = args.iter_borrowed().collect();
        // A snapshot of the items: converting a value runs Python code, which may resize the
        // dict.
        let named: Vec<(Bound<'py, PyAny>, Bound<'py, PyAny>)> =
            kw.map_or_else(Vec::new, |d| d.iter().collect());
        let named = named
            .iter()
            .map(|(k, v)| (k.as_borrowed(), v.as_borrowed()));
        self.build(&positional, named, moves, Source::Call, None, cls)
    }

    /// A native record from vectorcall arguments: `args` positional, then one value per name in
    /// `kwnames` (a tuple of `str`, or null).
    ///
    /// # Safety
    /// The vectorcall convention: `args` holds `nargs` positional arguments followed by
    /// `len(kwnames)` keyword values, all borrowed and alive for the call; GIL held.
    pub unsafe fn construct_vectorcall<'py>(
        &self,
        py: Python<'py>,
        cls: &Bound<'py, PyAny>,
        args: *const *mut ffi::PyObject,
        nargs: usize,
        kwnames: *mut ffi::PyObject,
        moves: &mut Moves<'py>,
    ) -> PyResult<ObjAny> {
        self.resolve(py)?;
        let positional: &[*mut ffi::PyObject] = if nargs == 0 {
            &[]
        } else {
            // SAFETY: the vectorcall convention (caller): `nargs` live borrowed arguments.
            unsafe { core::slice::from_raw_parts(args, nargs) }
        };
        // SAFETY: each is a live object borrowed for the call (caller).
        let borrow = |p: *mut ffi::PyObject| unsafe { Borrowed::from_ptr(py, p) };
        let nkw = if kwnames.is_null() {
            0
        } else {
            // SAFETY: `kwnames` is a tuple (the convention).
            unsafe { ffi::PyTuple_GET_SIZE(kwnames) as usize }
        };
        let named = (0..nkw).map(|j| {
            // SAFETY: the convention: `kwnames[j]` names the value at `args[nargs + j]`.
            unsafe {
                (
                    borrow(ffi::PyTuple_GET_ITEM(kwnames, j as ffi::Py_ssize_t)),
                    borrow(*args.add(nargs + j)),
                )
            }
        });
        if positional.len() <= 8 {
            // SAFETY: None is immortal enough for a placeholder that is never read (only the
            // first `nargs` entries are used).
            let mut buf = [borrow(unsafe { ffi::Py_None() }); 8];
            for (slot, &p) in buf.iter_mut().zip(positional) {
                *slot = borrow(p);
            }
            self.build(
                &buf[..positional.len()],
                named,
                moves,
                Source::Call,
                None,
                cls,
            )
        } else {
            let all: Vec<_> = positional.iter().map(|&p| borrow(p)).collect();
            self.build(&all, named, moves, Source::Call, None, cls)
        }
    }

    /// A native record from a pickled state dict: every field must be present or defaulted and
    /// no unknown field may appear (the class may have changed since pickling). Fields whose
    /// value is a tether object still waiting for its own state ([`FieldDef::defers`]) are set
    /// to `None` and listed in `deferred` (field index, object) for `crate::restore`.
    pub fn restore<'py>(
        &self,
        cls: &Bound<'py, PyAny>,
        state: &Bound<'py, PyDict>,
        moves: &mut Moves<'py>,
        deferred: &mut Vec<(usize, Bound<'py, PyAny>)>,
    ) -> PyResult<ObjAny> {
        let named: Vec<(Bound<'py, PyAny>, Bound<'py, PyAny>)> = state.iter().collect();
        let named = named
            .iter()
            .map(|(k, v)| (k.as_borrowed(), v.as_borrowed()));
        self.build(&[], named, moves, Source::State, Some(deferred), cls)
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

    /// `{field: value}` for pickling and copying, from a counted handle (building the dict
    /// runs Python code). Objects come as their canonical wrappers whatever the tying switch,
    /// so that pickle's and copy's memos keep aliased children shared.
    pub fn state_dict<'py>(&self, py: Python<'py>, obj: &ObjAny) -> PyResult<Bound<'py, PyDict>> {
        self.check_native(obj)?;
        let d = PyDict::new(py);
        for f in self.fields() {
            let v = load_field(obj, f.slot())?;
            let v = crate::convert::to_py_canonical(py, v)?;
            // SAFETY: `to_py_canonical` returns a new reference.
            d.set_item(&f.name, unsafe { Bound::from_owned_ptr(py, v) })?;
        }
        Ok(d)
    }
}

/// The class info of `tp`, if it is a tether class.
///
/// # Safety
/// `tp` is a live type object; GIL held.
pub unsafe fn class_info(tp: *mut ffi::PyTypeObject) -> Option<&'static ClassInfo> {
    // SAFETY: `tp` is live; a tether class has the metaclass's extra slot, which holds null or
    // a leaked &'static ClassInfo (written once by the metaclass before any instance exists).
    unsafe {
        if !is_tether_class(tp) {
            return None;
        }
        class_info_slot(tp)
            .cast::<*const ClassInfo>()
            .read()
            .as_ref()
    }
}

/// Records `info` as the class info of the new tether class `tp`.
///
/// # Safety
/// `tp` is a tether class being created (no instance exists yet); GIL held.
pub unsafe fn set_class_info(tp: *mut ffi::PyTypeObject, info: &'static ClassInfo) {
    // SAFETY: the metaclass's extra slot of `tp` (caller: a tether class).
    unsafe { class_info_slot(tp).cast::<*const ClassInfo>().write(info) }
}

/// The class info of a tether class.
///
/// # Safety
/// `tp` is a live type object; GIL held.
pub unsafe fn info_of(tp: *mut ffi::PyTypeObject) -> PyResult<&'static ClassInfo> {
    // SAFETY: forwarded.
    unsafe { class_info(tp) }
        .ok_or_else(|| PyTypeError::new_err("not a tether class (tether.Object subclass)"))
}

/// Raises unless `cls` can be instantiated (abstract classes and native-only types cannot).
///
/// # Safety
/// `cls` is a live type object; GIL held.
pub unsafe fn check_instantiable(cls: *mut ffi::PyTypeObject) -> PyResult<()> {
    // SAFETY: `cls` is live (caller).
    let flags = unsafe { crate::pytypes::type_flags(cls) };
    if flags & ffi::Py_TPFLAGS_IS_ABSTRACT != 0 {
        // SAFETY: `cls` is live.
        let name = unsafe { type_name(cls) };
        // SAFETY: GIL held (caller); `cls` is a live type object.
        let py = unsafe { Python::assume_attached() };
        // SAFETY: as above; a borrowed reference to a live object.
        let cls = unsafe { Bound::from_borrowed_ptr(py, cls.cast()) };
        let mut missing: Vec<String> = cls
            .getattr("__abstractmethods__")
            .and_then(|a| a.try_iter()?.map(|n| n?.extract::<String>()).collect())
            .unwrap_or_default();
        missing.sort();
        return Err(PyTypeError::new_err(format!(
            "Can't instantiate abstract class {name} with abstract method{} {}",
            if missing.len() == 1 { "" } else { "s" },
            missing.join(", ")
        )));
    }
    // SAFETY: forwarded.
    unsafe { info_of(cls) }?.check_constructible()
}

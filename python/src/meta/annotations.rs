//! Floor 7b: a class body's annotations into fields and defaults (nothing is registered here);
//! each annotation's kind comes from `kinds`.

use super::kinds::{pre_registration_kind, resolve_kind, Extra, Scope};
use crate::class::{annotate, ClassInfo, Constraint};
use crate::convert::{from_py_kind, Moves};
use pyo3::exceptions::PyTypeError;
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString, PyTuple};
use tether_runtime::types::{FieldKind, SELF_TYPE};

/// The class of what `tether.field(...)` returns (`tether._FieldSpec`), registered at import
/// (again by `importlib.reload(tether)`, whose new class then replaces the old one). Only used
/// under the GIL; the lock is never held across Python code.
static FIELD_SPEC: std::sync::Mutex<Option<Py<PyAny>>> = std::sync::Mutex::new(None);

/// `_native._set_field_spec_type(t)`: registers the class of `tether.field(...)`'s result.
#[pyfunction]
pub fn _set_field_spec_type(t: Py<PyAny>) {
    let old = FIELD_SPEC
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .replace(t);
    drop(old); // outside the lock
}

/// A default as the class body gives it: a plain value, or `tether.field(default=...)` /
/// `tether.field(default_factory=...)`.
enum GivenDefault<'py> {
    Value(Bound<'py, PyAny>),
    Factory(Py<PyAny>),
}

fn given_default<'py>(v: Bound<'py, PyAny>) -> PyResult<Option<GivenDefault<'py>>> {
    let py = v.py();
    let spec = FIELD_SPEC
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .as_ref()
        .map(|s| s.clone_ref(py));
    let Some(spec) = spec else {
        return Ok(Some(GivenDefault::Value(v)));
    };
    if !v.is_instance(spec.bind(py))? {
        return Ok(Some(GivenDefault::Value(v)));
    }
    let missing = py.import("tether")?.getattr("MISSING")?;
    let factory = v.getattr("default_factory")?;
    if !factory.is(&missing) {
        return Ok(Some(GivenDefault::Factory(factory.unbind())));
    }
    let default = v.getattr("default")?;
    Ok((!default.is(&missing)).then_some(GivenDefault::Value(default)))
}

/// A `list`, `dict`, `set` or `bytearray` default would be one Python object shared by every
/// instance (an `object` field stores the object, not a copy): refused, as `dataclasses` does.
fn refuse_mutable_default(
    py: Python<'_>,
    v: &Bound<'_, PyAny>,
    class_name: &str,
    name: &str,
) -> PyResult<()> {
    let builtins = py.import("builtins")?;
    for t in ["list", "dict", "set", "bytearray"] {
        if v.is_instance(&builtins.getattr(t)?)? {
            return Err(PyTypeError::new_err(format!(
                "mutable default {t} for field '{name}' of {class_name} would be shared by every \
                 instance: use tether.field(default_factory={t})"
            )));
        }
    }
    Ok(())
}

/// Normalizes and checks `__slots__`: only `()` or `('__weakref__',)` are accepted (the
/// wrapper already has a weakref slot, and instances can hold no other Python state).
pub fn check_slots(ns: &Bound<'_, PyDict>) -> PyResult<()> {
    if let Some(slots) = ns.get_item("__slots__")? {
        let names: Vec<String> = if let Ok(s) = slots.cast::<PyString>() {
            vec![s.to_string()]
        } else {
            slots
                .try_iter()?
                .map(|x| x?.extract::<String>())
                .collect::<PyResult<_>>()?
        };
        if names.iter().any(|n| n != "__weakref__") {
            return Err(PyTypeError::new_err(
                "tether classes keep their state natively: __slots__ may only be () or \
                 ('__weakref__',); declare fields with annotations",
            ));
        }
    }
    ns.set_item("__slots__", PyTuple::empty(ns.py()))
}

fn is_method_like(py: Python<'_>, v: &Bound<'_, PyAny>) -> PyResult<bool> {
    let builtins = py.import("builtins")?;
    let types = py.import("types")?;
    for t in [
        types.getattr("FunctionType")?,
        builtins.getattr("classmethod")?,
        builtins.getattr("staticmethod")?,
        builtins.getattr("property")?,
    ] {
        if v.is_instance(&t)? {
            return Ok(true);
        }
    }
    Ok(false)
}

/// One field the class body declares.
pub struct OwnField {
    /// The attribute name.
    pub name: String,
    /// Its kind (a self-reference as [`SELF_KIND`]).
    pub kind: FieldKind,
    /// Its checked default.
    pub default: Option<tether_runtime::Value>,
    /// A class defined later that the annotation names: its name and where to look it up.
    pub forward: Option<(String, Vec<Py<PyDict>>)>,
    /// `tether.field(default_factory=...)`: called for each object built without the field.
    pub default_factory: Option<Py<PyAny>>,
    /// An enum, `Literal[...]` or union: what it accepts.
    pub constraint: Option<Constraint>,
    /// Declared `Final[...]`.
    pub is_final: bool,
    /// A `list[...]` or `dict[...]` field.
    pub container: Option<crate::class::NestedDraft>,
}

/// Reads the class body's annotations into fields (without registering anything).
pub fn own_fields(
    py: Python<'_>,
    class_name: &str,
    ns: &Bound<'_, PyDict>,
    parent: Option<&ClassInfo>,
) -> PyResult<Vec<OwnField>> {
    let Some(ann) = ns.get_item("__annotations__")? else {
        return Ok(Vec::new());
    };
    let ann = ann.cast_into::<PyDict>()?;
    // Names resolve in the globals of the code running the class statement (the metaclass is
    // called from it with no Python frame of its own: an `exec`'d class body sees its dict), if
    // that code belongs to the class's module (not a metaclass `__new__` elsewhere that calls
    // ours), then in those of the class's module (a class made by a factory elsewhere).
    let module_name = ns.get_item("__module__")?;
    let module_dict = match &module_name {
        Some(m) => py
            .import("sys")?
            .getattr("modules")?
            .get_item(m)
            .and_then(|m| m.getattr("__dict__"))
            .and_then(|d| Ok(d.cast_into::<PyDict>()?))
            .ok(),
        None => None,
    };
    let mut globals = Vec::new();
    let mut frame_is_the_class_statement = false;
    // SAFETY: GIL held; PyEval_GetGlobals returns a borrowed reference or null.
    let frame_globals = unsafe { ffi::PyEval_GetGlobals() };
    if !frame_globals.is_null() {
        // SAFETY: a live dict borrowed from the running frame; the Bound takes a reference.
        let g = unsafe { Bound::from_borrowed_ptr(py, frame_globals) }.cast_into::<PyDict>()?;
        let same_module = match (&module_name, g.get_item("__name__")?) {
            (Some(m), Some(n)) => m.eq(n)?,
            (None, _) => true,
            (Some(_), None) => true, // an exec'd namespace without a name: the class's own
        };
        if same_module {
            globals.push(g);
            frame_is_the_class_statement = true;
        }
    }
    if let Some(d) = module_dict {
        if !globals.iter().any(|g| g.is(&d)) {
            globals.push(d);
        }
    }
    if globals.is_empty() {
        globals.push(PyDict::new(py));
    }
    let scope = Scope::new(py, class_name, &globals, ns, frame_is_the_class_statement)?;
    let classvar = py.import("typing")?.getattr("ClassVar")?;
    let get_origin = py.import("typing")?.getattr("get_origin")?;
    let mut out = Vec::new();
    for (name, a) in ann.iter() {
        let name: String = name.extract()?;
        if a.is(&classvar) || get_origin.call1((&a,))?.is(&classvar) {
            continue;
        }
        // A string annotation is a ClassVar if it evaluates to one (not if it merely starts
        // with the word: `"ClassVarious"` may name a class).
        if let Ok(s) = a.cast::<PyString>() {
            if let Some(v) = scope.eval(s.to_str()?) {
                if v.is(&classvar) || get_origin.call1((&v,))?.is(&classvar) {
                    continue;
                }
            }
        }
        if name.len() > 4 && name.starts_with("__") && name.ends_with("__") {
            // A field descriptor named `__init__` or `__eq__` would shadow the protocol.
            return Err(PyTypeError::new_err(format!(
                "field '{name}' of {class_name}: names of the form __name__ are reserved for \
                 Python's protocols"
            )));
        }
        if parent.is_some_and(|p| p.fields.iter().any(|f| f.name == name)) {
            return Err(PyTypeError::new_err(format!(
                "field '{name}' of {class_name} is already declared by a base class"
            )));
        }
        let mut extra = Extra::default();
        let kind = resolve_kind(py, &a, &scope, &mut extra)
            .map_err(|e| annotate(py, e, &format!("{class_name}.{name}")))?;
        let Extra {
            forward,
            constraint,
            is_final,
            container,
        } = extra;
        let mut default_factory = None;
        let given = match ns.get_item(&name)? {
            None => None,
            Some(v) if is_method_like(py, &v)? => {
                return Err(PyTypeError::new_err(format!(
                    "field '{name}' of {class_name} clashes with a method or property of the \
                     same name"
                )))
            }
            Some(v) => {
                ns.del_item(&name)?;
                given_default(v)?
            }
        };
        let default = match given {
            None => None,
            Some(GivenDefault::Factory(_)) if matches!(kind, FieldKind::Weak(_)) => {
                return Err(PyTypeError::new_err(format!(
                    "field '{name}' of {class_name}: a weak field cannot have a default_factory \
                     (nothing would keep the object it makes alive)"
                )));
            }
            Some(GivenDefault::Factory(f)) => {
                default_factory = Some(f);
                None
            }
            Some(GivenDefault::Value(v)) => {
                refuse_mutable_default(py, &v, class_name, &name)?;
                let check = pre_registration_kind(&kind);
                let mut moves = Moves::new();
                if container.is_some() && !v.is_none() {
                    return Err(PyTypeError::new_err(format!(
                        "field '{name}' of {class_name}: a container field's default must be \
                         None (with an Optional annotation); for an empty container use \
                         tether.field(default_factory=list) (or dict)"
                    )));
                }
                let d = match &constraint {
                    _ if container.is_some() => Ok(tether_runtime::Value::None),
                    Some(_) if v.is_none() && matches!(kind, FieldKind::Optional(_)) => {
                        Ok(tether_runtime::Value::None)
                    }
                    // The class itself does not exist yet: its own alternatives match nothing.
                    Some(c) => c.convert(&v, SELF_TYPE, &mut moves),
                    None => from_py_kind(&v, &check, &mut moves),
                }
                .map_err(|e| annotate(py, e, &format!("default of {class_name}.{name}")))?;
                moves.commit()?; // a token as a default: the class takes its object
                Some(d)
            }
        };
        out.push(OwnField {
            name,
            kind,
            default,
            forward: forward.map(|n| (n, globals.iter().map(|g| g.clone().unbind()).collect())),
            default_factory,
            constraint,
            is_final,
            container,
        });
    }
    Ok(out)
}

//! Floor 7a: a class body's annotations into field kinds and defaults (nothing is registered
//! here). Owns [`ROOT_INDEX`] (what `tether.Object` as an annotation means) and the
//! self-reference placeholder.

use crate::class::{annotate, ClassInfo};
use crate::convert::{from_py_kind, Moves};
use core::cell::RefCell;
use core::sync::atomic::{AtomicU32, Ordering::Relaxed};
use pyo3::exceptions::PyTypeError;
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString, PyTuple, PyType};
use tether_runtime::types::{FieldKind, ANY_OBJECT, SELF_TYPE};

/// The runtime type index of `tether.Object` (u32::MAX until created).
pub static ROOT_INDEX: AtomicU32 = AtomicU32::new(u32::MAX);

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

/// Where an annotation is resolved: the class body and its module, and a stand-in for the
/// class being declared (which does not exist yet).
struct Scope<'a, 'py> {
    class_name: &'a str,
    /// The globals to evaluate string annotations in, tried in order.
    globals: &'a [Bound<'py, PyDict>],
    /// The class body's namespace with the class's own name bound to `me`, for evaluating
    /// string annotations (`"Optional[Node]"`, `"Node | None"`, and every annotation under
    /// `from __future__ import annotations`). Binding the name first also makes a re-run class
    /// definition (a notebook cell) refer to itself, not to the earlier class of that name.
    locals: Bound<'py, PyDict>,
    /// A fresh type standing for the class itself: a type, so that `me | None` and
    /// `Optional[me]` evaluate.
    me: Bound<'py, PyAny>,
    /// Stand-in types for names that do not exist yet (a class defined later in the module),
    /// bound into `locals` as evaluation meets them: `(stand-in, name)`.
    forwards: RefCell<Vec<(Bound<'py, PyAny>, String)>>,
}

impl<'a, 'py> Scope<'a, 'py> {
    /// Evaluates a string annotation in this scope (the first set of globals it works in). A
    /// name that exists nowhere yet becomes a forward reference: a stand-in type is bound for
    /// it and the evaluation retried.
    fn eval(&self, text: &str) -> Option<Bound<'py, PyAny>> {
        let py = self.me.py();
        let builtins = py.import("builtins").ok()?;
        let eval = builtins.getattr("eval").ok()?;
        let name_error = builtins.getattr("NameError").ok()?;
        // A bound on the retries: each one binds a new name.
        for _ in 0..16 {
            let mut missing = None;
            for g in self.globals {
                match eval.call1((text, g, &self.locals)) {
                    Ok(v) => return Some(v),
                    Err(e) if e.is_instance(py, &name_error) => {
                        missing = e.value(py).getattr("name").ok()?.extract::<String>().ok();
                    }
                    Err(_) => {}
                }
            }
            let name = missing?;
            if self.forwards.borrow().iter().any(|(_, n)| *n == name) {
                return None;
            }
            let stand_in = builtins
                .getattr("type")
                .ok()?
                .call1((name.as_str(), PyTuple::empty(py), PyDict::new(py)))
                .ok()?;
            self.locals.set_item(name.as_str(), &stand_in).ok()?;
            self.forwards.borrow_mut().push((stand_in, name));
        }
        None
    }

    /// The name `ann` stands for, if it is a forward reference's stand-in.
    fn forward_name(&self, ann: &Bound<'py, PyAny>) -> Option<String> {
        self.forwards
            .borrow()
            .iter()
            .find(|(t, _)| t.is(ann))
            .map(|(_, n)| n.clone())
    }

    fn new(
        py: Python<'py>,
        class_name: &'a str,
        globals: &'a [Bound<'py, PyDict>],
        ns: &Bound<'py, PyDict>,
        frame_is_the_class_statement: bool,
    ) -> PyResult<Self> {
        let me = py.import("builtins")?.getattr("type")?.call1((
            class_name,
            PyTuple::empty(py),
            PyDict::new(py),
        ))?;
        // The running frame's locals first (a class statement in a function sees the function's
        // other local names, classes included), then the class body, then the class itself.
        let locals = PyDict::new(py);
        let frame_locals = if frame_is_the_class_statement {
            // SAFETY: GIL held; PyEval_GetLocals returns a borrowed mapping or null (with no
            // error set when there is no frame).
            unsafe { ffi::PyEval_GetLocals() }
        } else {
            core::ptr::null_mut()
        };
        if frame_locals.is_null() {
            // SAFETY: GIL held; a failed lookup may leave an exception set: drop it.
            unsafe { ffi::PyErr_Clear() };
        } else {
            // SAFETY: a live mapping borrowed from the running frame.
            let frame_locals = unsafe { Bound::from_borrowed_ptr(py, frame_locals) };
            if let Ok(d) = frame_locals.cast::<PyDict>() {
                locals.update(d.as_mapping())?;
            }
        }
        locals.update(ns.as_mapping())?;
        locals.set_item(class_name, &me)?;
        Ok(Scope {
            class_name,
            globals,
            locals,
            me,
            forwards: RefCell::new(Vec::new()),
        })
    }
}

/// Resolves one annotation into a field kind; a reference to a class defined later sets
/// `forward` to its name (the kind then holds [`FORWARD_KIND`]).
fn resolve_kind<'py>(
    py: Python<'py>,
    ann: &Bound<'py, PyAny>,
    scope: &Scope<'_, 'py>,
    forward: &mut Option<String>,
) -> PyResult<FieldKind> {
    if ann.is(&scope.me) {
        return Ok(FieldKind::Object(SELF_KIND));
    }
    if let Some(name) = scope.forward_name(ann) {
        *forward = Some(name);
        return Ok(FieldKind::Object(FORWARD_KIND));
    }
    let builtins = py.import("builtins")?;
    let typing = py.import("typing")?;
    // String annotations (and typing.ForwardRef) name a type: the class itself, or something
    // visible from the class body or its module.
    let text = if let Ok(s) = ann.cast::<PyString>() {
        Some(s.to_string())
    } else if ann.is_instance(&typing.getattr("ForwardRef")?)? {
        Some(ann.getattr("__forward_arg__")?.extract::<String>()?)
    } else {
        None
    };
    if let Some(text) = text {
        if text == scope.class_name {
            return Ok(FieldKind::Object(SELF_KIND));
        }
        let Some(value) = scope.eval(&text) else {
            return Err(PyTypeError::new_err(format!(
                "cannot resolve the annotation '{text}' (use a class defined before this one, \
                 or the class's own name)"
            )));
        };
        return resolve_kind(py, &value, scope, forward);
    }
    for (name, kind) in [
        ("bool", FieldKind::Bool),
        ("int", FieldKind::Int),
        ("float", FieldKind::Float),
        ("str", FieldKind::Str),
        ("bytes", FieldKind::Bytes),
        ("object", FieldKind::Any),
    ] {
        if ann.is(&builtins.getattr(name)?) {
            return Ok(kind);
        }
    }
    // tether.Weak[X]: a weak field of X (X a tether class, the class itself, or a forward name).
    if let Ok(target) = ann.getattr("__tether_weak__") {
        if !ann.is_instance_of::<PyType>() {
            return match resolve_kind(py, &target, scope, forward)? {
                FieldKind::Object(t) | FieldKind::Weak(t) => Ok(FieldKind::Weak(t)),
                FieldKind::Optional(k) => match *k {
                    FieldKind::Object(t) => Ok(FieldKind::Weak(t)),
                    _ => Err(weak_of_what(&target)?),
                },
                _ => Err(weak_of_what(&target)?),
            };
        }
    }
    // Optional[X], Union[X, None], X | None
    let args = typing
        .getattr("get_args")?
        .call1((ann,))?
        .cast_into::<PyTuple>()?;
    let origin = typing.getattr("get_origin")?.call1((ann,))?;
    let is_union = origin.is(&typing.getattr("Union")?)
        || origin.is(&py.import("types")?.getattr("UnionType")?);
    if is_union {
        let none_type = py.None().into_bound(py).get_type();
        let others: Vec<_> = args.iter().filter(|a| !a.is(&none_type)).collect();
        if others.len() == 1 && args.len() == 2 {
            let inner = resolve_kind(py, &others[0], scope, forward)?;
            // A weak field already reads None once its object is gone: Optional adds nothing.
            if let FieldKind::Weak(_) = inner {
                return Ok(inner);
            }
            return Ok(FieldKind::Optional(Box::new(inner)));
        }
    }
    if let Ok(tp) = ann.cast::<PyType>() {
        // SAFETY: `tp` is a live type object; GIL held.
        if let Some(info) = unsafe { crate::class::class_info(tp.as_ptr().cast()) } {
            // `tether.Object` itself means any tether object.
            if ROOT_INDEX.load(Relaxed) == info.type_index {
                return Ok(FieldKind::Object(ANY_OBJECT));
            }
            return Ok(FieldKind::Object(info.type_index));
        }
    }
    Err(PyTypeError::new_err(format!(
        "unsupported field type {}: use int, float, bool, str, bytes, object, Optional[...] or \
         a tether.Object subclass",
        ann.repr()?
    )))
}

fn weak_of_what(target: &Bound<'_, PyAny>) -> PyResult<PyErr> {
    Ok(PyTypeError::new_err(format!(
        "tether.Weak[...] takes a tether class, got {}",
        target.repr()?
    )))
}

/// Placeholder for "the class being defined": the runtime's [`SELF_TYPE`], which the runtime
/// resolves to the new type's index when it registers the schema (so a self-referential field
/// is stored as one native pointer, like any field of a record type).
pub const SELF_KIND: u32 = SELF_TYPE;

/// Placeholder for "a class defined later" (a forward reference): natively any object, checked
/// against the named class on the Python side once it exists (`crate::class::Forward`).
pub const FORWARD_KIND: u32 = u32::MAX - 2;

/// `kind` with the placeholders replaced: the class itself by its type index `me`, a forward
/// reference by "any object" (the name is checked on the Python side).
pub fn replace_self(kind: FieldKind, me: u32) -> FieldKind {
    match kind {
        FieldKind::Object(SELF_KIND) => FieldKind::Object(me),
        FieldKind::Object(FORWARD_KIND) => FieldKind::Object(ANY_OBJECT),
        FieldKind::Weak(SELF_KIND) => FieldKind::Weak(me),
        FieldKind::Weak(FORWARD_KIND) => FieldKind::Weak(ANY_OBJECT),
        FieldKind::Optional(k) => FieldKind::Optional(Box::new(replace_self(*k, me))),
        k => k,
    }
}

/// The kind the runtime registers: a forward reference as "any object".
pub fn runtime_kind(kind: &FieldKind) -> FieldKind {
    match kind {
        FieldKind::Object(FORWARD_KIND) => FieldKind::Object(ANY_OBJECT),
        FieldKind::Weak(FORWARD_KIND) => FieldKind::Weak(ANY_OBJECT),
        FieldKind::Optional(k) => FieldKind::Optional(Box::new(runtime_kind(k))),
        k => k.clone(),
    }
}

/// The kind a default is converted with before the class exists: a self-reference accepts any
/// object here (there is no class to convert to yet); the runtime then refuses anything but
/// `None` for it when it registers the schema (no object of the new type exists yet).
fn pre_registration_kind(kind: &FieldKind) -> FieldKind {
    match kind {
        FieldKind::Object(SELF_KIND | FORWARD_KIND) => FieldKind::Object(ANY_OBJECT),
        FieldKind::Weak(SELF_KIND | FORWARD_KIND) => FieldKind::Weak(ANY_OBJECT),
        FieldKind::Optional(k) => FieldKind::Optional(Box::new(pre_registration_kind(k))),
        k => k.clone(),
    }
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
        let mut forward = None;
        let kind = resolve_kind(py, &a, &scope, &mut forward)
            .map_err(|e| annotate(py, e, &format!("{class_name}.{name}")))?;
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
                let d = from_py_kind(&v, &check, &mut moves)
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
        });
    }
    Ok(out)
}

//! Floor 7a: one annotation into a field kind ([`resolve_kind`]): where names resolve
//! ([`Scope`]), what an annotation says beyond its native kind ([`Extra`]: a forward reference,
//! an enum, literal or union constraint, `Final`), and the placeholders for the class itself
//! and for classes defined later. Owns [`ROOT_INDEX`] (what `tether.Object` as an annotation
//! means).

use crate::class::{Alt, Constraint, ElemDraft, Forward, NestedDraft};
use core::cell::RefCell;
use core::sync::atomic::{AtomicU32, Ordering::Relaxed};
use pyo3::exceptions::PyTypeError;
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString, PyTuple, PyType};
use tether_runtime::types::{FieldKind, ANY_OBJECT, SELF_TYPE};

/// The runtime type index of `tether.Object` (u32::MAX until created).
pub static ROOT_INDEX: AtomicU32 = AtomicU32::new(u32::MAX);

/// Where an annotation is resolved: the class body and its module, and a stand-in for the
/// class being declared (which does not exist yet).
pub struct Scope<'a, 'py> {
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
    pub fn eval(&self, text: &str) -> Option<Bound<'py, PyAny>> {
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

    pub fn new(
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

/// What an annotation says beyond its native kind.
#[derive(Default)]
pub struct Extra {
    /// A class defined later: its name (the kind then holds [`FORWARD_KIND`]).
    pub forward: Option<String>,
    /// An enum, `Literal[...]` or union: checked on the Python side (the kind is `Any`).
    pub constraint: Option<Constraint>,
    /// `Final[...]`.
    pub is_final: bool,
    /// `list[...]` or `dict[...]`: the container kind (the native kind is its object kind).
    pub container: Option<NestedDraft>,
}

/// Resolves one annotation into a field kind and what it says beyond it (`extra`).
pub fn resolve_kind<'py>(
    py: Python<'py>,
    ann: &Bound<'py, PyAny>,
    scope: &Scope<'_, 'py>,
    extra: &mut Extra,
) -> PyResult<FieldKind> {
    if ann.is(&scope.me) {
        return Ok(FieldKind::Object(SELF_KIND));
    }
    if let Some(name) = scope.forward_name(ann) {
        extra.forward = Some(name);
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
        return resolve_kind(py, &value, scope, extra);
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
    if ann.is(&typing.getattr("Any")?) {
        return Ok(FieldKind::Any);
    }
    // tether.Weak[X]: a weak field of X (X a tether class, the class itself, or a forward name).
    if let Ok(target) = ann.getattr("__tether_weak__") {
        if !ann.is_instance_of::<PyType>() {
            return match resolve_kind(py, &target, scope, extra)? {
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
    // Annotated[T, ...] is T; Final[T] is T, never assigned after construction.
    if origin.is(&typing.getattr("Annotated")?) {
        return resolve_kind(py, &args.get_item(0)?, scope, extra);
    }
    if ann.is(&typing.getattr("Final")?) {
        return Err(PyTypeError::new_err(
            "Final needs a type here (Final[int]): tether fields are typed",
        ));
    }
    if origin.is(&typing.getattr("Final")?) {
        extra.is_final = true;
        return resolve_kind(py, &args.get_item(0)?, scope, extra);
    }
    // list[T] (typing.List[T], tether.List[T]) and dict[K, V] (typing.Dict, tether.Dict).
    let is_list = origin.is(&builtins.getattr("list")?) || is_container_class(&origin, true);
    let is_dict = origin.is(&builtins.getattr("dict")?) || is_container_class(&origin, false);
    if is_list || is_dict {
        let want = if is_list { 1 } else { 2 };
        if args.len() != want {
            return Err(PyTypeError::new_err(format!(
                "{} needs {} (e.g. {})",
                ann.repr()?,
                if is_list {
                    "an element type"
                } else {
                    "a key and a value type"
                },
                if is_list {
                    "list[int]"
                } else {
                    "dict[str, int]"
                }
            )));
        }
        let container = if is_list {
            NestedDraft::List(Box::new(elem_draft(py, &args.get_item(0)?, scope)?))
        } else {
            let key = dict_key_kind(py, &args.get_item(0)?, scope)?;
            NestedDraft::Dict(key, Box::new(elem_draft(py, &args.get_item(1)?, scope)?))
        };
        extra.container = Some(container);
        let t = if is_list {
            crate::class::elements::list_type()
        } else {
            crate::class::elements::map_type()
        };
        return Ok(FieldKind::Object(t));
    }
    if origin.is(&typing.getattr("Literal")?) {
        extra.constraint = Some(Constraint::Literal(
            args.iter().map(|a| a.unbind()).collect(),
        ));
        return Ok(FieldKind::Any);
    }
    let is_union = origin.is(&typing.getattr("Union")?)
        || origin.is(&py.import("types")?.getattr("UnionType")?);
    if is_union {
        let none_type = py.None().into_bound(py).get_type();
        let others: Vec<_> = args.iter().filter(|a| !a.is(&none_type)).collect();
        if others.len() == 1 && args.len() == 2 {
            let inner = resolve_kind(py, &others[0], scope, extra)?;
            // A weak field already reads None once its object is gone: Optional adds nothing.
            if let FieldKind::Weak(_) = inner {
                return Ok(inner);
            }
            return Ok(FieldKind::Optional(Box::new(inner)));
        }
        let mut alts = Vec::new();
        for a in args.iter() {
            if a.is(&none_type) {
                alts.push(Alt::None);
                continue;
            }
            match union_alt(py, &a, scope)? {
                Alt::Any => return Ok(FieldKind::Any), // a union with Any is Any
                alt => alts.push(alt),
            }
        }
        extra.constraint = Some(Constraint::Union(alts));
        return Ok(FieldKind::Any);
    }
    if ann.is_instance_of::<PyType>()
        && ann.is_instance(&py.import("enum")?.getattr("EnumMeta")?)?
    {
        extra.constraint = Some(Constraint::Enum(
            ann.clone().cast_into::<PyType>()?.unbind(),
        ));
        return Ok(FieldKind::Any);
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
        "unsupported field type {}: use int, float, bool, str, bytes, object, Any, a tether.Object \
         subclass, an enum.Enum subclass, Literal[...], a union of these (X | Y, Optional[X]), \
         Annotated[X, ...] or Final[X]",
        ann.repr()?
    )))
}

/// Whether `origin` is tether's own `List` (or `Dict`) class.
fn is_container_class(origin: &Bound<'_, PyAny>, list: bool) -> bool {
    let t = if list {
        crate::class::elements::list_type()
    } else {
        crate::class::elements::map_type()
    };
    crate::classes::class_for(t).is_ok_and(|c| core::ptr::eq(c.cast(), origin.as_ptr()))
}

/// A dict key annotation: `str`, `int`, `bytes` or a tether class (keys by identity).
pub fn dict_key_kind<'py>(
    py: Python<'py>,
    ann: &Bound<'py, PyAny>,
    scope: &Scope<'_, 'py>,
) -> PyResult<FieldKind> {
    let mut extra = Extra::default();
    let key = resolve_kind(py, ann, scope, &mut extra)?;
    match key {
        FieldKind::Str | FieldKind::Int | FieldKind::Bytes
            if extra.constraint.is_none() && extra.container.is_none() =>
        {
            Ok(key)
        }
        FieldKind::Object(t) if extra.container.is_none() && t != FORWARD_KIND => Ok(key),
        _ => Err(PyTypeError::new_err(format!(
            "dict keys must be str, int, bytes or a tether class (by identity), got {}",
            ann.repr()?
        ))),
    }
}

/// An element (or dict value) annotation as a draft spec.
pub fn elem_draft<'py>(
    py: Python<'py>,
    ann: &Bound<'py, PyAny>,
    scope: &Scope<'_, 'py>,
) -> PyResult<ElemDraft> {
    let mut extra = Extra::default();
    let kind = resolve_kind(py, ann, scope, &mut extra)?;
    if extra.is_final {
        return Err(PyTypeError::new_err("Final[...] cannot be an element type"));
    }
    if matches!(kind, FieldKind::Weak(_)) {
        return Err(PyTypeError::new_err(
            "tether.Weak[...] cannot be an element type (elements are strong references)",
        ));
    }
    let display = match ann.cast::<PyType>() {
        Ok(t) => t.qualname()?.to_string(),
        Err(_) => ann.repr()?.to_string().replace("typing.", ""),
    };
    Ok(ElemDraft {
        kind,
        constraint: extra.constraint,
        forward: extra.forward.map(|n| {
            (
                n,
                scope.globals.iter().map(|g| g.clone().unbind()).collect(),
            )
        }),
        nested: extra.container,
        display,
    })
}

/// One alternative of a union annotation.
fn union_alt<'py>(
    py: Python<'py>,
    ann: &Bound<'py, PyAny>,
    scope: &Scope<'_, 'py>,
) -> PyResult<Alt> {
    let mut extra = Extra::default();
    let kind = resolve_kind(py, ann, scope, &mut extra)?;
    if extra.is_final {
        return Err(PyTypeError::new_err(
            "Final[...] cannot be one alternative of a union",
        ));
    }
    if extra.container.is_some() {
        return Err(PyTypeError::new_err(format!(
            "{} cannot be one alternative of a union (a container field is one container \
             kind; Optional[...] of it works)",
            ann.repr()?
        )));
    }
    Ok(match (kind, extra.constraint, extra.forward) {
        (FieldKind::Object(FORWARD_KIND), _, Some(name)) => Alt::Forward(Forward::new(
            name,
            scope.globals.iter().map(|g| g.clone().unbind()).collect(),
        )),
        (FieldKind::Any, Some(Constraint::Enum(cls)), _) => Alt::Enum(cls),
        (FieldKind::Any, Some(Constraint::Literal(ls)), _) => Alt::Literal(ls),
        (FieldKind::Any, None, _) => Alt::Any,
        (FieldKind::Object(t), None, _) => Alt::Tether(if t == SELF_KIND { SELF_TYPE } else { t }),
        (
            k @ (FieldKind::Int
            | FieldKind::Float
            | FieldKind::Bool
            | FieldKind::Str
            | FieldKind::Bytes),
            None,
            _,
        ) => Alt::Scalar(k),
        _ => {
            return Err(PyTypeError::new_err(format!(
                "{} cannot be one alternative of a union (use int, float, bool, str, bytes, \
                 None, Any, a tether.Object subclass, an enum or Literal[...])",
                ann.repr()?
            )))
        }
    })
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
pub fn pre_registration_kind(kind: &FieldKind) -> FieldKind {
    match kind {
        FieldKind::Object(SELF_KIND | FORWARD_KIND) => FieldKind::Object(ANY_OBJECT),
        FieldKind::Weak(SELF_KIND | FORWARD_KIND) => FieldKind::Weak(ANY_OBJECT),
        FieldKind::Optional(k) => FieldKind::Optional(Box::new(pre_registration_kind(k))),
        k => k.clone(),
    }
}

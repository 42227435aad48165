//! Field kinds checked on the Python side: a reference to a class defined later ([`Forward`]),
//! `enum.Enum` classes, `Literal[...]` and unions of supported kinds ([`Constraint`]).
//!
//! Natively such a field is a value slot (`FieldKind::Any`, or `Object(ANY_OBJECT)` for a
//! forward reference), which holds anything; what may go in is decided here, before the
//! conversion, and every refusal is a `TypeError` naming what was expected and what was given
//! (the caller adds the field and the class). What is stored:
//! * an enum member or a literal: the Python object itself, so it reads back as the same object
//!   (`n.color is Color.RED`);
//! * a union alternative: what a field of that kind would store (an `int` as a native integer, a
//!   tether object as a native reference, so it keeps its canonical wrapper), or the object
//!   itself for enum, literal and `Any` alternatives.

use super::class_info;
use crate::convert::{from_py_kind, Moves};
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyBytes, PyDict, PyFloat, PyInt, PyString, PyType};
use tether_runtime::types::{FieldKind, SELF_TYPE};
use tether_runtime::Value;

/// A field's reference to a class that did not exist when the field was declared (`b: "B"`
/// with `B` defined further down). Natively the field holds any object (a `Value` slot); values
/// are checked against the named class, looked up the first time one is converted.
#[derive(Debug)]
pub struct Forward {
    name: String,
    /// Where the class statement ran, then the class's module.
    globals: Vec<Py<PyDict>>,
    resolved: std::sync::OnceLock<u32>,
}

impl Forward {
    /// A reference to `name`, to be looked up in `globals` (in order).
    pub fn new(name: String, globals: Vec<Py<PyDict>>) -> Forward {
        Forward {
            name,
            globals,
            resolved: std::sync::OnceLock::new(),
        }
    }

    /// The named class's runtime type index (looked up once, then kept).
    fn type_index(&self, py: Python<'_>) -> PyResult<u32> {
        if let Some(&t) = self.resolved.get() {
            return Ok(t);
        }
        let found = self
            .globals
            .iter()
            .find_map(|g| g.bind(py).get_item(&self.name).ok().flatten());
        let t = found
            .as_ref()
            .and_then(|c| c.cast::<PyType>().ok())
            // SAFETY: a live type object; GIL held.
            .and_then(|tp| unsafe { class_info(tp.as_ptr().cast()) })
            .map(|info| info.type_index)
            .ok_or_else(|| {
                PyTypeError::new_err(format!(
                    "the annotation '{}' names no tether class (yet)",
                    self.name
                ))
            })?;
        Ok(*self.resolved.get_or_init(|| t))
    }

    /// Looks the named class up now (an error if the name names no tether class).
    pub fn resolve(&self, py: Python<'_>) -> PyResult<()> {
        self.type_index(py).map(|_| ())
    }

    /// Checks a converted value: `None` or an object of the named class (or a subclass).
    pub fn check(&self, py: Python<'_>, v: &Value) -> PyResult<()> {
        let Value::Object(o) = v else {
            return Ok(()); // None (the kind's check allowed it)
        };
        let t = self.type_index(py)?;
        if o.type_index() == t || o.is_instance(t) {
            Ok(())
        } else {
            Err(PyTypeError::new_err(format!(
                "expected {}, got {}",
                self.name,
                crate::convert::object_type_name(o)
            )))
        }
    }
}

/// One alternative of a union.
#[derive(Debug)]
pub enum Alt {
    /// `None`.
    None,
    /// `int`, `float`, `bool`, `str` or `bytes`: stored as that kind.
    Scalar(FieldKind),
    /// `object` or `typing.Any`.
    Any,
    /// A tether class (its type index; `SELF_TYPE` for the class being declared).
    Tether(u32),
    /// A tether class defined later.
    Forward(Forward),
    /// An `enum.Enum` subclass.
    Enum(Py<PyType>),
    /// `Literal[...]`.
    Literal(Vec<Py<PyAny>>),
}

/// What a field accepts beyond its native kind.
#[derive(Debug)]
pub enum Constraint {
    /// A member of this `enum.Enum` subclass.
    Enum(Py<PyType>),
    /// One of these values (`Literal[...]`): equal and of the same type.
    Literal(Vec<Py<PyAny>>),
    /// One of these alternatives, tried in order.
    Union(Vec<Alt>),
}

/// `value` is one of `literals`: equal, and of the same type (so `True` is not `Literal[1]`, as
/// for type checkers). Returns the literal itself.
fn literal_of<'py>(
    value: &Bound<'py, PyAny>,
    literals: &[Py<PyAny>],
) -> PyResult<Option<Bound<'py, PyAny>>> {
    let py = value.py();
    for l in literals {
        let l = l.bind(py);
        if value.get_type().is(l.get_type()) && value.eq(l)? {
            return Ok(Some(l.clone()));
        }
    }
    Ok(None)
}

fn opaque(o: &Bound<'_, PyAny>) -> Value {
    Value::Opaque(crate::pyhandle::object_to_handle(o))
}

impl Alt {
    /// The value stored for `value` if this alternative takes it, `None` if it does not;
    /// `exact`: scalars only of exactly their type (a first pass, so `True` in `int | bool`
    /// stays a bool). Errors are real failures (an `int` out of range), not a mismatch.
    fn take<'py>(
        &self,
        value: &Bound<'py, PyAny>,
        owner: u32,
        exact: bool,
        moves: &mut Moves<'py>,
    ) -> PyResult<Option<Value>> {
        let py = value.py();
        let fits = match self {
            Alt::None => return Ok(value.is_none().then_some(Value::None)),
            Alt::Any => return Ok(Some(opaque(value))),
            Alt::Enum(cls) => return Ok(value.is_instance(cls.bind(py))?.then(|| opaque(value))),
            Alt::Literal(ls) => return Ok(literal_of(value, ls)?.map(|l| opaque(&l))),
            Alt::Scalar(k) => match k {
                FieldKind::Int if exact => value.is_exact_instance_of::<PyInt>(),
                FieldKind::Int => value.is_instance_of::<PyInt>(),
                FieldKind::Float if exact => value.is_exact_instance_of::<PyFloat>(),
                FieldKind::Float => value.is_instance_of::<PyFloat>(),
                FieldKind::Bool => value.is_instance_of::<PyBool>(),
                FieldKind::Str if exact => value.is_exact_instance_of::<PyString>(),
                FieldKind::Str => value.is_instance_of::<PyString>(),
                FieldKind::Bytes if exact => value.is_exact_instance_of::<PyBytes>(),
                FieldKind::Bytes => value.is_instance_of::<PyBytes>(),
                _ => false,
            },
            // Only a tether object (or a moved-out one) can be one; anything else is not even
            // worth resolving a forward name for.
            Alt::Tether(_) | Alt::Forward(_) => {
                // SAFETY: `value` is live; GIL held.
                let wrapper = unsafe { crate::pytypes::is_wrapper(value.as_ptr()) };
                wrapper || value.cast::<crate::carriers::Moved>().is_ok()
            }
        };
        if !fits {
            return Ok(None);
        }
        let kind = match self {
            Alt::Scalar(k) => k.clone(),
            Alt::Tether(SELF_TYPE) => FieldKind::Object(owner),
            Alt::Tether(t) => FieldKind::Object(*t),
            Alt::Forward(f) => FieldKind::Object(f.type_index(py)?),
            _ => unreachable!("returned above"),
        };
        match from_py_kind(value, &kind, moves) {
            Ok(v) => Ok(Some(v)),
            // Not an object of this class: not this alternative.
            Err(e)
                if matches!(self, Alt::Tether(_) | Alt::Forward(_))
                    && e.is_instance_of::<PyTypeError>(py) =>
            {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    fn describe(&self, py: Python<'_>) -> String {
        match self {
            Alt::None => "None".into(),
            Alt::Scalar(k) => k.name(),
            Alt::Any => "Any".into(),
            Alt::Tether(SELF_TYPE) => "the class itself".into(),
            Alt::Tether(t) => crate::convert::kind_name(&FieldKind::Object(*t)),
            Alt::Forward(f) => f.name.clone(),
            Alt::Enum(cls) => class_name(cls.bind(py)),
            Alt::Literal(ls) => literal_name(py, ls),
        }
    }
}

fn class_name(cls: &Bound<'_, PyType>) -> String {
    cls.qualname()
        .map_or_else(|_| "?".into(), |n| n.to_string())
}

fn literal_name(py: Python<'_>, ls: &[Py<PyAny>]) -> String {
    let items: Vec<String> = ls
        .iter()
        .map(|l| {
            l.bind(py)
                .repr()
                .map_or_else(|_| "?".into(), |r| r.to_string())
        })
        .collect();
    format!("Literal[{}]", items.join(", "))
}

impl Constraint {
    /// What a field with this constraint stores for `value`, or a `TypeError` naming what was
    /// expected and what was given. `owner` is the declaring class's type index (for
    /// alternatives naming the class itself).
    pub fn convert<'py>(
        &self,
        value: &Bound<'py, PyAny>,
        owner: u32,
        moves: &mut Moves<'py>,
    ) -> PyResult<Value> {
        let py = value.py();
        let taken = match self {
            Constraint::Enum(cls) => value.is_instance(cls.bind(py))?.then(|| opaque(value)),
            Constraint::Literal(ls) => literal_of(value, ls)?.map(|l| opaque(&l)),
            Constraint::Union(alts) => {
                let mut found = None;
                // Exact types first, then subclasses (bool as int, str subclasses), then an
                // int widened to a float alternative.
                'passes: for exact in [true, false] {
                    for alt in alts {
                        if let Some(v) = alt.take(value, owner, exact, moves)? {
                            found = Some(v);
                            break 'passes;
                        }
                    }
                }
                if found.is_none()
                    && value.is_instance_of::<PyInt>()
                    && !value.is_instance_of::<PyBool>()
                    && alts
                        .iter()
                        .any(|a| matches!(a, Alt::Scalar(FieldKind::Float)))
                {
                    found = Some(from_py_kind(value, &FieldKind::Float, moves)?);
                }
                found
            }
        };
        taken.ok_or_else(|| {
            let got = value
                .get_type()
                .name()
                .map_or_else(|_| "?".to_string(), |n| n.to_string());
            let shown = if value.is_instance_of::<PyString>() || value.is_instance_of::<PyInt>() {
                value.repr().map_or(got.clone(), |r| format!("{got} {r}"))
            } else {
                got
            };
            PyTypeError::new_err(format!("expected {}, got {shown}", self.describe(py)))
        })
    }

    /// Looks up the classes its alternatives name by forward reference.
    pub fn resolve(&self, py: Python<'_>) -> PyResult<()> {
        if let Constraint::Union(alts) = self {
            for a in alts {
                if let Alt::Forward(f) = a {
                    f.resolve(py)?;
                }
            }
        }
        Ok(())
    }

    /// The constraint as the annotation reads: `Color`, `Literal['a', 'b']`, `int | str | None`.
    pub fn describe(&self, py: Python<'_>) -> String {
        match self {
            Constraint::Enum(cls) => class_name(cls.bind(py)),
            Constraint::Literal(ls) => literal_name(py, ls),
            Constraint::Union(alts) => alts
                .iter()
                .map(|a| a.describe(py))
                .collect::<Vec<_>>()
                .join(" | "),
        }
    }
}

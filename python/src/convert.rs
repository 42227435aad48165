//! Conversions between Python objects and runtime [`Value`]s.
//!
//! Python objects held natively (fields of kind `object`, callables, exceptions) become host
//! handles ([`crate::pyhandle`]). Native objects become their canonical wrapper (see [`crate::wrapper::wrap`]); `str` and
//! `bytes` are copied both ways and are exempt from identity.

use crate::carriers::{Moved, PyFunction};
use crate::classes::class_for;
use crate::errors::MovedError;
use crate::native;
use crate::pyhandle::{handle_to_object, object_to_handle};
use crate::pytypes::{is_wrapper, type_name};
use crate::wrapper;
use core::ptr::NonNull;
use pyo3::exceptions::{PyOverflowError, PyTypeError};
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyBytes, PyFloat, PyInt, PyString};
use std::sync::Arc;
use tether_runtime::types::{type_info, FieldKind};
use tether_runtime::{ObjAny, ObjHeader, Value};

/// Converts a value to a new Python reference. `tied`: objects come back as their canonical
/// wrapper (else as a fresh, unbound one).
#[inline]
pub fn to_py(py: Python<'_>, v: &Value, tied: bool) -> PyResult<*mut ffi::PyObject> {
    Ok(match v {
        Value::None => py.None().into_ptr(),
        Value::Bool(b) => PyBool::new(py, *b).to_owned().into_ptr(),
        Value::Int(i) => i.into_pyobject(py)?.into_ptr(),
        Value::Float(f) => PyFloat::new(py, *f).into_ptr(),
        Value::Str(s) => PyString::new(py, s).into_ptr(),
        Value::Bytes(b) => PyBytes::new(py, b).into_ptr(),
        // SAFETY: the GIL is held (we have `py`).
        Value::Object(o) => unsafe { wrapper::wrap(o, tied)? },
        Value::Function(f) => Bound::new(py, PyFunction::new(f.clone()))?.into_ptr(),
        Value::Opaque(h) => handle_to_object(py, h)?.into_ptr(),
    })
}

/// [`to_py`] for a value the caller owns: an object's reference goes to its revived or new
/// wrapper instead of being cloned and dropped.
#[inline]
pub fn to_py_owned(py: Python<'_>, v: Value, tied: bool) -> PyResult<*mut ffi::PyObject> {
    match v {
        // SAFETY: the GIL is held (we have `py`).
        Value::Object(o) => unsafe { wrapper::wrap_owned(o, tied) },
        v => to_py(py, &v, tied),
    }
}

/// [`to_py_owned`] with objects as their canonical wrappers whatever the tying switch (see
/// [`wrapper::wrap_canonical`]): for the state that pickling and copying hand out.
pub fn to_py_canonical(py: Python<'_>, v: Value) -> PyResult<*mut ffi::PyObject> {
    match v {
        // SAFETY: the GIL is held (we have `py`).
        Value::Object(o) => unsafe { wrapper::wrap_canonical(o) },
        v => to_py(py, &v, true),
    }
}

/// The `tether.move()` tokens one operation converts: all-or-nothing moves.
///
/// Conversion only *peeks* at a token (a counted clone of its object, the token keeps it). The
/// operation calls [`Moves::commit`] after its last step that can fail and before it stores
/// anything, so a rejected operation leaves every token holding its object. A token can be used
/// once per operation, and [`Moves::commit`] refuses (consuming none) if Python code that ran
/// during the conversion consumed one of them in the meantime.
#[derive(Debug, Default)]
pub struct Moves<'py> {
    peeked: Vec<(Bound<'py, Moved>, NonNull<ObjHeader>)>,
}

impl<'py> Moves<'py> {
    /// No tokens (for conversions that may not consume any, e.g. defaults).
    pub fn new() -> Self {
        Moves { peeked: Vec::new() }
    }

    fn peek(&mut self, token: &Bound<'py, Moved>) -> PyResult<ObjAny> {
        if self.peeked.iter().any(|(t, _)| t.is(token)) {
            return Err(MovedError::new_err(
                "the same tether.move() token was passed twice",
            ));
        }
        let obj = token
            .get()
            .peek()
            .ok_or_else(|| MovedError::new_err("this tether.move() token was already consumed"))?;
        self.peeked.push((token.clone(), obj.as_ptr()));
        Ok(obj)
    }

    /// Refuses (consuming nothing) if Python code consumed one of the peeked tokens since it
    /// was peeked: what [`commit`](Self::commit) checks first, for operations that must know
    /// before a last step that can still fail.
    pub fn check(&self) -> PyResult<()> {
        if self.peeked.iter().any(|(t, p)| !t.get().holds(*p)) {
            return Err(MovedError::new_err(
                "a tether.move() token was consumed while this operation converted its arguments",
            ));
        }
        Ok(())
    }

    /// Consumes every peeked token, or none. Runs no Python code: the objects taken out are
    /// also held by the converted values, so releasing the tokens' references destroys nothing.
    pub fn commit(self) -> PyResult<()> {
        self.check()?;
        for (t, _) in &self.peeked {
            drop(t.get().take());
        }
        Ok(())
    }
}

/// A native object from a Python value: a counted handle from a live wrapper, or a peek at a
/// `tether.move()` token (see [`Moves`]).
fn native_of<'py>(o: &Bound<'py, PyAny>, moves: &mut Moves<'py>) -> PyResult<Option<ObjAny>> {
    // SAFETY: `o` is live and the GIL is held.
    if unsafe { is_wrapper(o.as_ptr()) } {
        // SAFETY: checked to be a wrapper; `o` keeps it alive.
        return unsafe { native::counted(o.as_ptr()) }.map(Some);
    }
    if let Ok(m) = o.cast::<Moved>() {
        return moves.peek(m).map(Some);
    }
    Ok(None)
}

/// The Python-facing name of a native object's type (its class's name, if it has one).
pub fn object_type_name(obj: &ObjAny) -> String {
    match class_for(obj.type_index()) {
        // SAFETY: a registered class is a live type object (it unregisters when it dies).
        Ok(cls) => unsafe { type_name(cls) },
        Err(_) => obj.type_info().name.clone(),
    }
}

/// A kind's name as Python users write it (a tether class by its class name).
pub fn kind_name(kind: &FieldKind) -> String {
    match kind {
        FieldKind::Int => "int".into(),
        FieldKind::Float => "float".into(),
        FieldKind::Bool => "bool".into(),
        FieldKind::Str => "str".into(),
        FieldKind::Bytes => "bytes".into(),
        FieldKind::Any => "object".into(),
        FieldKind::Optional(k) => format!("Optional[{}]", kind_name(k)),
        FieldKind::Weak(t) => format!("tether.Weak[{}]", kind_name(&FieldKind::Object(*t))),
        FieldKind::Object(t) => match class_for(*t) {
            // SAFETY: as in `object_type_name`.
            Ok(cls) => unsafe { type_name(cls) },
            Err(_) => type_info(*t).map_or_else(|| "tether.Object".into(), |i| i.name.clone()),
        },
    }
}

fn type_error(expected: &FieldKind, got: &str) -> PyErr {
    PyTypeError::new_err(format!("expected {}, got {got}", kind_name(expected)))
}

/// The error for a `str` that UTF-8 cannot encode (it holds a lone surrogate, e.g. from
/// `os.fsdecode` of undecodable bytes): where it is, and what to do.
#[cold]
fn surrogate_error(s: &Bound<'_, PyString>) -> PyErr {
    let at = s.as_any().try_iter().ok().and_then(|chars| {
        chars
            .map_while(Result::ok)
            .position(|c| c.extract::<String>().is_err())
    });
    let at = at.map_or_else(String::new, |i| format!(" at index {i}"));
    pyo3::exceptions::PyValueError::new_err(format!(
        "str with a lone surrogate{at} cannot be stored (native strings are UTF-8): encode it \
         first, e.g. s.encode('utf-8', 'surrogateescape'), and use a bytes field"
    ))
}

fn py_type_name(o: &Bound<'_, PyAny>) -> String {
    o.get_type()
        .name()
        .map_or_else(|_| "?".to_string(), |n| n.to_string())
}

/// Converts `o` for a field of `kind`, or raises `TypeError` naming what was expected and what
/// was given (for a `tether.move()` token: the type of the object inside). Tokens are peeked
/// into `moves`, never consumed here. May run Python code (`__index__`, `__float__`, `str`
/// subclasses): callers hold no uncounted borrow across it.
pub fn from_py_kind<'py>(
    o: &Bound<'py, PyAny>,
    kind: &FieldKind,
    moves: &mut Moves<'py>,
) -> PyResult<Value> {
    match kind {
        FieldKind::Optional(inner) => {
            if o.is_none() {
                Ok(Value::None)
            } else {
                from_py_kind(o, inner, moves)
            }
        }
        FieldKind::Int => {
            if !o.is_instance_of::<PyInt>() {
                return Err(type_error(kind, &py_type_name(o)));
            }
            o.extract::<i64>()
                .map(Value::Int)
                .map_err(|_| PyOverflowError::new_err("int field out of the 64-bit signed range"))
        }
        FieldKind::Float => {
            if o.is_instance_of::<PyFloat>() || o.is_instance_of::<PyInt>() {
                Ok(Value::Float(o.extract::<f64>()?))
            } else {
                Err(type_error(kind, &py_type_name(o)))
            }
        }
        FieldKind::Bool => match o.cast::<PyBool>() {
            Ok(b) => Ok(Value::Bool(b.is_true())),
            Err(_) => Err(type_error(kind, &py_type_name(o))),
        },
        FieldKind::Str => match o.cast::<PyString>() {
            Ok(s) => match s.to_str() {
                Ok(text) => Ok(Value::Str(Arc::from(text))),
                // Native strings are UTF-8, which has no encoding for a lone surrogate.
                Err(_) => Err(surrogate_error(s)),
            },
            Err(_) => Err(type_error(kind, &py_type_name(o))),
        },
        FieldKind::Bytes => match o.cast::<PyBytes>() {
            Ok(b) => Ok(Value::Bytes(Arc::from(b.as_bytes()))),
            Err(_) => Err(type_error(kind, &py_type_name(o))),
        },
        // A token stores the object it carries, and a live tether object is stored natively
        // too (reading gives its canonical wrapper): the native graph, and so the cycle
        // collector, sees the reference. Anything else (an emptied wrapper included) is held
        // as a Python object.
        FieldKind::Any => match o.cast::<Moved>() {
            Ok(m) => moves.peek(m).map(Value::Object),
            // SAFETY: `o` is live and the GIL is held.
            Err(_) if unsafe { is_wrapper(o.as_ptr()) } => {
                // SAFETY: checked to be a wrapper; `o` keeps it alive.
                Ok(match unsafe { native::counted(o.as_ptr()) } {
                    Ok(obj) => Value::Object(obj),
                    Err(_) => Value::Opaque(object_to_handle(o)),
                })
            }
            Err(_) => Ok(Value::Opaque(object_to_handle(o))),
        },
        // A weak field holds the object without keeping it alive, so a moved-out object (a
        // token, which nothing else holds) would die at once: refused.
        FieldKind::Weak(t) => {
            if o.is_none() {
                Ok(Value::None)
            } else if o.cast::<Moved>().is_ok() {
                Err(PyTypeError::new_err(
                    "a tether.move() token cannot go into a weak field: nothing would keep its \
                     object alive",
                ))
            } else {
                object_of(o, *t, moves, kind)
            }
        }
        FieldKind::Object(t) => object_of(o, *t, moves, kind),
    }
}

/// A native object of type `t` (or a subtype) from `o`, for a field of kind `expected` (what an
/// error names): a wrapper's object, or a peek at a `tether.move()` token.
fn object_of<'py>(
    o: &Bound<'py, PyAny>,
    t: u32,
    moves: &mut Moves<'py>,
    expected: &FieldKind,
) -> PyResult<Value> {
    match native_of(o, moves)? {
        Some(obj) if obj.is_instance(t) => Ok(Value::Object(obj)),
        Some(obj) => {
            let got = object_type_name(&obj);
            if o.cast::<Moved>().is_ok() {
                // Not consumed: forget the peek so a later commit leaves this token alone.
                moves.peeked.pop();
            }
            Err(type_error(expected, &got))
        }
        None => Err(type_error(expected, &py_type_name(o))),
    }
}

/// Converts an argument of a native function call, with no declared kind (tokens are peeked
/// into `moves`).
pub fn from_py_any<'py>(o: &Bound<'py, PyAny>, moves: &mut Moves<'py>) -> PyResult<Value> {
    if o.is_none() {
        return Ok(Value::None);
    }
    if let Ok(b) = o.cast::<PyBool>() {
        return Ok(Value::Bool(b.is_true()));
    }
    if o.is_exact_instance_of::<PyInt>() {
        if let Ok(i) = o.extract::<i64>() {
            return Ok(Value::Int(i));
        }
    }
    if o.is_exact_instance_of::<PyFloat>() {
        return Ok(Value::Float(o.extract::<f64>()?));
    }
    if let Ok(s) = o.cast_exact::<PyString>() {
        return Ok(Value::Str(Arc::from(s.to_str()?)));
    }
    if let Ok(b) = o.cast_exact::<PyBytes>() {
        return Ok(Value::Bytes(Arc::from(b.as_bytes())));
    }
    if let Some(obj) = native_of(o, moves)? {
        return Ok(Value::Object(obj));
    }
    if let Ok(f) = o.cast::<PyFunction>() {
        return Ok(Value::Function(f.get().func.clone()));
    }
    Ok(Value::Opaque(object_to_handle(o)))
}

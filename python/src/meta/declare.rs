//! Floor 7b: a class's record type and [`ClassInfo`]: the tether parent among the bases, the
//! runtime registration of the record type (parent's fields, then the class's own), the leaked
//! [`FieldDef`]s; or the info of a Rust-defined type's class.

use super::annotations::own_fields;
use super::kinds::{replace_self, runtime_kind};
use crate::class::{ClassInfo, FieldDef, Forward};
use crate::pytypes::BASE_TYPE;
use core::ptr;
use core::sync::atomic::{AtomicU64, Ordering::Relaxed};
use pyo3::exceptions::PyTypeError;
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple, PyType};
use tether_runtime::types::{
    register_record_type_with, type_info, FieldAccess, FieldSpec, RecordOptions,
};

/// Distinguishes runtime type names of classes declared more than once (same qualified name).
static DECLARATIONS: AtomicU64 = AtomicU64::new(0);

/// The parent's class info, rejecting incompatible field layouts.
pub fn tether_parent(bases: &Bound<'_, PyTuple>) -> PyResult<(Option<&'static ClassInfo>, bool)> {
    let base_type = BASE_TYPE.load(Relaxed);
    let mut best: Option<&'static ClassInfo> = None;
    let mut has_base = false;
    for b in bases.iter() {
        let Ok(tp) = b.cast::<PyType>() else { continue };
        let tp = tp.as_ptr().cast::<ffi::PyTypeObject>();
        has_base |= tp == base_type;
        // SAFETY: `tp` is a live type; GIL held.
        let Some(info) = (unsafe { crate::class::class_info(tp) }) else {
            continue;
        };
        best = Some(match best {
            None => info,
            Some(cur) => {
                let (short, long) = if cur.fields.len() <= info.fields.len() {
                    (cur, info)
                } else {
                    (info, cur)
                };
                let prefix = short
                    .fields
                    .iter()
                    .zip(&long.fields)
                    .all(|(a, b)| ptr::eq(*a, *b));
                if !prefix {
                    return Err(PyTypeError::new_err(
                        "tether bases with different fields cannot be combined",
                    ));
                }
                long
            }
        });
    }
    Ok((best, has_base))
}

/// Builds the class info for a class declared in Python: registers its record type.
pub fn declare_record(
    py: Python<'_>,
    class_name: &str,
    qualname: &str,
    ns: &Bound<'_, PyDict>,
    parent: Option<&'static ClassInfo>,
    frozen: bool,
) -> PyResult<(ClassInfo, Vec<&'static FieldDef>)> {
    let own = own_fields(py, class_name, ns, parent)?;
    let specs = own
        .iter()
        .map(|f| FieldSpec {
            name: f.name.clone(),
            kind: runtime_kind(&f.kind),
            default: f.default.clone(),
        })
        .collect();
    let n = DECLARATIONS.fetch_add(1, Relaxed);
    // A parent without fields (tether.Object, or a fieldless mixin class) adds nothing to the
    // record; it is the runtime parent only when frozenness agrees (the runtime forbids mixing).
    let runtime_parent = parent
        .filter(|p| !(p.fields.is_empty() && p.frozen != frozen))
        .map(|p| p.type_index);
    let type_index = register_record_type_with(
        &format!("{qualname}#{n}"),
        runtime_parent,
        specs,
        RecordOptions { frozen },
    )
    .map_err(|e| crate::errors::to_pyerr(py, e))?;
    let base = parent.map_or(0, |p| p.fields.len());
    let layout = type_info(type_index).and_then(|t| t.layout.as_ref());
    // Default factories live in the class's namespace (`__tether_factories__`, the parent's
    // merged in), owned by the class and visible to the garbage collector.
    if own.iter().any(|f| f.default_factory.is_some()) {
        let factories = PyDict::new(py);
        if let Some(p) = parent {
            if let Ok(cls) = crate::classes::class_for(p.type_index) {
                // SAFETY: a registered class is alive (it unregisters when it dies); GIL held.
                let cls = unsafe { Bound::from_borrowed_ptr(py, cls.cast()) };
                if let Ok(inherited) = cls.getattr("__tether_factories__") {
                    factories.update(inherited.cast::<PyDict>()?.as_mapping())?;
                }
            }
        }
        for f in &own {
            if let Some(factory) = &f.default_factory {
                factories.set_item(&f.name, factory)?;
            }
        }
        ns.set_item("__tether_factories__", factories)?;
    }
    let mut fields: Vec<&'static FieldDef> = parent.map(|p| p.fields.clone()).unwrap_or_default();
    let mut new_defs = Vec::new();
    for (j, f) in own.into_iter().enumerate() {
        let container = f.container.map(|c| {
            let root = Box::leak(Box::new(crate::class::elements::SpecRoot::Field(
                type_index,
                f.name.clone(),
            )));
            c.finish(type_index, replace_self, root, 1)
        });
        let def: &'static FieldDef = Box::leak(Box::new(FieldDef {
            name: f.name,
            kind: replace_self(f.kind, type_index),
            default: f.default,
            forward: f.forward.map(|(name, globals)| Forward::new(name, globals)),
            constraint: f.constraint,
            is_final: f.is_final,
            container,
            has_factory: f.default_factory.is_some(),
            access: FieldAccess::Inline(base + j),
            at: layout.and_then(|l| l.slots.get(base + j).copied()),
            owner: type_index,
            frozen: frozen || f.is_final,
        }));
        fields.push(def);
        new_defs.push(def);
    }
    let info = ClassInfo {
        resolved: core::sync::atomic::AtomicBool::new(false),
        type_index,
        fields,
        frozen,
        constructible: true,
        name: class_name.to_string(),
    };
    Ok((info, new_defs))
}

/// Builds the class info for a Rust-defined runtime type (fields by reflected accessors).
pub fn declare_native(
    class_name: &str,
    type_index: u32,
) -> PyResult<(ClassInfo, Vec<&'static FieldDef>)> {
    let ti = type_info(type_index)
        .ok_or_else(|| PyTypeError::new_err(format!("unknown native type {type_index}")))?;
    let mut fields = Vec::new();
    for f in ti.fields.iter() {
        let def: &'static FieldDef = Box::leak(Box::new(FieldDef {
            name: f.name.to_string(),
            kind: f.kind.clone(),
            default: f.default.clone(),
            access: f.access.clone(),
            at: None,
            forward: None,
            constraint: None,
            is_final: false,
            container: None,
            has_factory: false,
            owner: type_index,
            frozen: ti.frozen,
        }));
        fields.push(def);
    }
    let info = ClassInfo {
        resolved: core::sync::atomic::AtomicBool::new(false),
        type_index,
        fields: fields.clone(),
        frozen: ti.frozen,
        constructible: false,
        name: class_name.to_string(),
    };
    Ok((info, fields))
}

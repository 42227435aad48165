//! `tether.testing`: native functions and a Rust-defined type, registered through the runtime's
//! API exactly as an extension author would (Python finds them in the global registry).

use crate::function::host_function;
use crate::pyhandle::handle_to_object;
use pyo3::prelude::*;
use tether_runtime::demo::{build_tree, TreeNode};
use tether_runtime::{
    field, object_type, register_global_override, Error, FieldKind, Function, ObjRef, Object,
    ReturnPolicy, Value,
};

/// A block of native memory from the runtime's allocator, for exercising allocation failure.
pub struct Blob {
    ptr: core::ptr::NonNull<u8>,
    layout: core::alloc::Layout,
}

// SAFETY: a Blob exclusively owns its block; nothing in it is tied to a thread.
unsafe impl Send for Blob {}
// SAFETY: a Blob exposes only its size through `&Blob`.
unsafe impl Sync for Blob {}

impl Drop for Blob {
    fn drop(&mut self) {
        use tether_alloc::allocator_api2::alloc::Allocator;
        // SAFETY: `ptr` was allocated by ALLOC with `layout` in `alloc_blob` and is freed once.
        unsafe { tether_runtime::ALLOC.deallocate(self.ptr, self.layout) };
    }
}

object_type!(
    Blob,
    "tether.testing.Blob",
    fields = [field!(
        Blob,
        "size",
        FieldKind::Int,
        get = |b| Value::Int(b.layout.size() as i64)
    ),]
);

fn alloc_blob(args: &[Value]) -> Result<Value, Error> {
    use tether_alloc::allocator_api2::alloc::Allocator;
    let n = one_arg("alloc_blob", args)?.as_int()?;
    let n = usize::try_from(n).map_err(|_| Error::Value(format!("negative size {n}")))?;
    let layout = core::alloc::Layout::from_size_align(n, 8)
        .map_err(|_| Error::Value(format!("size {n} is not a valid layout")))?;
    let ptr = tether_runtime::ALLOC
        .allocate(layout)
        .map_err(|_| Error::Alloc)?;
    let blob = ObjRef::try_new(Blob {
        ptr: ptr.cast(),
        layout,
    })
    .map_err(|_| Error::Alloc)?;
    Ok(Value::Object(blob.into_any()))
}

/// A header-less Rust type (no tie header): `make_plain` returns one, which Python must refuse.
pub struct Plain(#[allow(dead_code)] u64);

object_type!(Plain, "tether.testing.Plain", headerless);

fn make_plain(_args: &[Value]) -> Result<Value, Error> {
    let p = ObjRef::try_new(Plain(7)).map_err(|_| Error::Alloc)?;
    Ok(Value::Object(p.into_any()))
}

/// A native thread working on a record while Python uses it (`start_writer`, `start_reader`):
/// the test of the record rule with threads the GIL does not serialize.
pub struct Worker {
    done: std::sync::Arc<std::sync::atomic::AtomicBool>,
    handle: std::sync::Mutex<Option<std::thread::JoinHandle<Result<(), String>>>>,
}

object_type!(
    Worker,
    "tether.testing.Worker",
    fields = [field!(
        Worker,
        "done",
        FieldKind::Bool,
        get = |w| Value::Bool(w.done.load(std::sync::atomic::Ordering::Acquire))
    ),]
);

fn spawn_worker(work: impl FnOnce() -> Result<(), Error> + Send + 'static) -> Result<Value, Error> {
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = done.clone();
    let handle = std::thread::spawn(move || {
        let r = work().map_err(|e| e.to_string());
        // Release: the worker's effects happen-before a reader that sees `done`.
        flag.store(true, std::sync::atomic::Ordering::Release);
        r
    });
    let w = ObjRef::try_new(Worker {
        done,
        handle: std::sync::Mutex::new(Some(handle)),
    })
    .map_err(|_| Error::Alloc)?;
    Ok(Value::Object(w.into_any()))
}

fn record_and_index(
    args: &[Value],
    name: &str,
) -> Result<(tether_runtime::ObjAny, usize, usize), Error> {
    match args {
        [obj, i, n, ..] => Ok((
            obj.as_object()?.clone(),
            usize::try_from(i.as_int()?).map_err(|_| Error::Value("negative index".into()))?,
            usize::try_from(n.as_int()?).map_err(|_| Error::Value("negative count".into()))?,
        )),
        _ => Err(Error::Type(format!("{name}(obj, index, n, ...)"))),
    }
}

/// `start_writer(obj, index, n, *values)`: a native thread sets field `index` of record `obj`
/// to the values in turn, `n` times, through the runtime's locked `record_set`.
fn start_writer(args: &[Value]) -> Result<Value, Error> {
    let (obj, i, n) = record_and_index(args, "start_writer")?;
    let values = args[3..].to_vec();
    if values.is_empty() {
        return Err(Error::Type("start_writer needs at least one value".into()));
    }
    spawn_worker(move || {
        for k in 0..n {
            tether_runtime::record_set(&obj, i, values[k % values.len()].clone())?;
        }
        Ok(())
    })
}

/// `start_reader(obj, index, n)`: a native thread copies field `index` of record `obj` `n`
/// times through the runtime's locked `record_get` and drops each copy.
fn start_reader(args: &[Value]) -> Result<Value, Error> {
    let (obj, i, n) = record_and_index(args, "start_reader")?;
    spawn_worker(move || {
        for _ in 0..n {
            drop(tether_runtime::record_get(&obj, i)?);
        }
        Ok(())
    })
}

/// `start_holder(obj, index, n)`: a native thread holds `obj` (an `ObjRef` clone: the only
/// reference once the caller drops its own) and `n` times follows field `index` two steps
/// (`obj.f.f`), checking that it comes back to `obj`: a cycle kept alive, and intact, by a Rust
/// thread alone. It drops `obj` at the end. Raises through `join` if the cycle was broken.
fn start_holder(args: &[Value]) -> Result<Value, Error> {
    let (obj, i, n) = record_and_index(args, "start_holder")?;
    spawn_worker(move || {
        for k in 0..n {
            let Value::Object(next) = tether_runtime::record_get(&obj, i)? else {
                return Err(Error::Value(format!(
                    "step {k}: the cycle was broken (None)"
                )));
            };
            let Value::Object(back) = tether_runtime::record_get(&next, i)? else {
                return Err(Error::Value(format!(
                    "step {k}: the cycle was broken (None)"
                )));
            };
            if back.as_ptr() != obj.as_ptr() {
                return Err(Error::Value(format!("step {k}: the cycle changed")));
            }
        }
        drop(obj);
        Ok(())
    })
}

/// `join(worker)`: waits for a worker whose `done` is set; raises what the worker raised.
fn join(args: &[Value]) -> Result<Value, Error> {
    let w = one_arg("join", args)?.as_object()?;
    let w = w
        .downcast_ref::<Worker>()
        .ok_or_else(|| Error::type_mismatch("Worker", w.type_info().name.as_str()))?;
    let handle = w.handle.lock().unwrap_or_else(|e| e.into_inner()).take();
    match handle.map(|h| h.join()) {
        Some(Ok(Ok(()))) | None => Ok(Value::None),
        Some(Ok(Err(e))) => Err(Error::Value(format!("worker failed: {e}"))),
        Some(Err(_)) => Err(Error::Value("worker panicked".into())),
    }
}

fn one_arg<'a>(name: &str, args: &'a [Value]) -> Result<&'a Value, Error> {
    match args {
        [v] => Ok(v),
        _ => Err(Error::Type(format!(
            "{name}() takes exactly one argument ({} given)",
            args.len()
        ))),
    }
}

fn echo(args: &[Value]) -> Result<Value, Error> {
    one_arg("echo", args).cloned()
}

fn call(args: &[Value]) -> Result<Value, Error> {
    let (f, rest) = args
        .split_first()
        .ok_or_else(|| Error::Type("call() needs a callable".into()))?;
    match f {
        Value::Function(f) => f.call(rest),
        Value::Opaque(h) => {
            let func = Python::attach(|py| {
                let callable = handle_to_object(py, h).map_err(|e| e.to_string())?;
                host_function(&callable, ReturnPolicy::Tied).map_err(|e| e.to_string())
            })
            .map_err(Error::Type)?;
            func.call(rest)
        }
        other => Err(Error::type_mismatch("a callable", other.kind_name())),
    }
}

fn use_count(args: &[Value]) -> Result<Value, Error> {
    let obj = one_arg("use_count", args)?.as_object()?;
    // Not counting the reference this call's argument holds.
    Ok(Value::Int(obj.strong_count() as i64 - 1))
}

fn discard(args: &[Value]) -> Result<Value, Error> {
    one_arg("discard", args)?;
    Ok(Value::None) // the argument (and the reference it holds) is dropped by the caller
}

fn make_tree(args: &[Value]) -> Result<Value, Error> {
    let depth = one_arg("make_tree", args)?.as_int()?;
    if !(0..=24).contains(&depth) {
        return Err(Error::Value(format!(
            "make_tree depth must be 0..=24, got {depth}"
        )));
    }
    let nodes = (1usize << (depth + 1)) - 1; // a complete tree of `depth` levels below the root
    Ok(Value::Object(
        build_tree(nodes).expect("at least one node").into_any(),
    ))
}

/// `make_list(n)`: what a Rust extension author writes to hand Python a container: a native
/// `List` of `n` `TreeNode`s (values 0..n) and, as a second object, a `Map` from their values
/// to them, returned as a two-element list.
fn make_list(args: &[Value]) -> Result<Value, Error> {
    use tether_runtime::containers::{List, Map, MapKey};
    let n = one_arg("make_list", args)?.as_int()?;
    if !(0..=1_000_000).contains(&n) {
        return Err(Error::Value(format!(
            "make_list takes 0..=1000000, got {n}"
        )));
    }
    let kind = FieldKind::Object(TreeNode::type_index());
    let nodes: Vec<Value> = (0..n)
        .map(|i| build_tree(1).map(|t| (i, t)))
        .map(|t| t.map(|(_, t)| Value::Object(t.into_any())))
        .collect::<Option<_>>()
        .ok_or(Error::Alloc)?;
    let map = Map::new(FieldKind::Int, kind.clone());
    map.update(
        nodes
            .iter()
            .enumerate()
            .map(|(i, v)| (MapKey::Int(i as i64), v.clone()))
            .collect(),
    )?;
    let list = List::from_values(kind, nodes)?;
    let pair = List::from_values(
        FieldKind::Any,
        vec![
            Value::Object(ObjRef::try_new(list).map_err(|_| Error::Alloc)?.into_any()),
            Value::Object(ObjRef::try_new(map).map_err(|_| Error::Alloc)?.into_any()),
        ],
    )?;
    Ok(Value::Object(
        ObjRef::try_new(pair).map_err(|_| Error::Alloc)?.into_any(),
    ))
}

/// Registers the functions and creates the `TreeNode` class.
pub fn init(m: &Bound<'_, PyModule>, root: &Bound<'_, PyAny>) -> PyResult<()> {
    let py = m.py();
    for (name, f) in [
        ("tether.testing.echo", Function::tied(echo)),
        ("tether.testing.echo_fresh", Function::fresh(echo)),
        ("tether.testing.call", Function::tied(call)),
        ("tether.testing.use_count", Function::tied(use_count)),
        ("tether.testing.discard", Function::tied(discard)),
        ("tether.testing.make_tree", Function::tied(make_tree)),
        ("tether.testing.make_list", Function::tied(make_list)),
        ("tether.testing.alloc_blob", Function::tied(alloc_blob)),
        ("tether.testing.start_writer", Function::tied(start_writer)),
        ("tether.testing.start_reader", Function::tied(start_reader)),
        ("tether.testing.start_holder", Function::tied(start_holder)),
        ("tether.testing.join", Function::tied(join)),
        ("tether.testing.make_plain", Function::tied(make_plain)),
    ] {
        register_global_override(name, f);
    }
    let cls = crate::meta::create_native_class(
        py,
        root,
        "TreeNode",
        "tether.testing",
        TreeNode::type_index(),
    )?;
    m.add("TreeNode", cls)?;
    let blob =
        crate::meta::create_native_class(py, root, "Blob", "tether.testing", Blob::type_index())?;
    m.add("Blob", blob)?;
    let worker = crate::meta::create_native_class(
        py,
        root,
        "Worker",
        "tether.testing",
        Worker::type_index(),
    )?;
    m.add("Worker", worker)?;
    Ok(())
}

//! # tether-profiles
//!
//! Heap-profile workloads for tether's runtime under [dhat], and the bookkeeping that turns
//! dhat's counters into per-object figures. The binaries (`tree`, `mix`) install `dhat::Alloc`
//! as the global allocator and write `profiles/out/<name>.json`; `tests/no_leaks.rs` checks in
//! dhat's testing mode that the workloads leave no block behind. `profiles/README.md` says how
//! to run them and how to read the profiles.
//!
//! dhat sees only the global allocator. The runtime allocates its objects through
//! `tether_runtime::ALLOC`, a `HeaderAlloc` on `tether_alloc::DefaultInner`: with this crate's
//! `global-inner` feature that is `allocator_api2::alloc::Global`, so every object block, its
//! 16-byte header included, goes through dhat ([`SEES_RUNTIME`]). Without the feature dhat sees
//! only the std-heap side (strings, bytes, boxed closures, vectors) and the figures for object
//! blocks come from the runtime's own counters ([`tether_runtime::alloc_stats`]).
//!
//! Every runtime type here has an alignment of at most 32, so each object block carries exactly
//! [`HEADER_OFFSET`] (the runtime's `OBJECT_HEADER_BYTES`) bytes of header.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::OnceLock;
use tether_runtime::OBJECT_HEADER_BYTES as HEADER_OFFSET;
use tether_runtime::{
    alloc_stats, object_type, register_record_type, FieldKind, FieldSpec, Function, ObjAny, ObjRef,
    Record, Value, WeakRef,
};

/// Whether dhat sees the runtime's object blocks (the `global-inner` feature).
pub const SEES_RUNTIME: bool = cfg!(feature = "global-inner");

/// Where a profile named `name` is written: `profiles/out/<name>.json` (the directory is
/// created if needed), whatever the current directory.
///
/// # Panics
/// If the directory cannot be created.
pub fn out_path(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("out");
    if let Err(e) = std::fs::create_dir_all(&dir) {
        panic!("cannot create {}: {e}", dir.display());
    }
    dir.join(format!("{name}.json"))
}

/// Prints (to stderr) that the runtime's blocks are invisible to dhat in this build.
pub fn warn_if_blind() {
    if !SEES_RUNTIME {
        eprintln!(
            "warning: built without the `global-inner` feature: dhat sees only std-heap blocks, \
             not the runtime's objects (object and header figures come from the runtime's \
             counters); `make profile` builds with it"
        );
    }
}

/// One reading of both counters: dhat's live heap and the runtime allocator's live objects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reading {
    /// Blocks live in dhat's view (every global-allocator block).
    pub heap_blocks: usize,
    /// Bytes live in dhat's view (requested sizes; the system allocator's rounding is unseen).
    pub heap_bytes: usize,
    /// Live object blocks of `tether_runtime::ALLOC`.
    pub obj_blocks: usize,
    /// Live object bytes of `tether_runtime::ALLOC`, headers excluded.
    pub obj_bytes: usize,
}

impl Reading {
    /// Reads both counters now.
    ///
    /// # Panics
    /// If no dhat heap profiler is running.
    pub fn now() -> Reading {
        let heap = dhat::HeapStats::get();
        let obj = alloc_stats();
        Reading {
            heap_blocks: heap.curr_blocks,
            heap_bytes: heap.curr_bytes,
            obj_blocks: obj.live_blocks,
            obj_bytes: obj.live_bytes,
        }
    }
}

fn delta(after: usize, before: usize) -> i64 {
    after as i64 - before as i64
}

/// What `count` objects added to the heap between two [`Reading`]s, split by origin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Footprint {
    /// What was measured.
    pub label: String,
    /// How many objects.
    pub count: usize,
    /// Change in dhat's live blocks.
    pub heap_blocks: i64,
    /// Change in dhat's live bytes.
    pub heap_bytes: i64,
    /// Change in the runtime's live object blocks.
    pub obj_blocks: i64,
    /// Change in the runtime's live object bytes (headers excluded).
    pub obj_bytes: i64,
}

impl Footprint {
    /// The change from `before` to `after`, for `count` objects.
    pub fn between(label: &str, count: usize, before: &Reading, after: &Reading) -> Footprint {
        Footprint {
            label: label.to_owned(),
            count,
            heap_blocks: delta(after.heap_blocks, before.heap_blocks),
            heap_bytes: delta(after.heap_bytes, before.heap_bytes),
            obj_blocks: delta(after.obj_blocks, before.obj_blocks),
            obj_bytes: delta(after.obj_bytes, before.obj_bytes),
        }
    }

    /// Header bytes: [`HEADER_OFFSET`] per runtime block.
    pub fn header_bytes(&self) -> i64 {
        self.obj_blocks * HEADER_OFFSET as i64
    }

    /// Bytes of std-heap blocks (strings, bytes, boxed closures): what dhat saw beyond the
    /// runtime's blocks.
    pub fn std_bytes(&self) -> i64 {
        if SEES_RUNTIME {
            self.heap_bytes - self.obj_bytes - self.header_bytes()
        } else {
            self.heap_bytes
        }
    }

    /// Std-heap blocks.
    pub fn std_blocks(&self) -> i64 {
        if SEES_RUNTIME {
            self.heap_blocks - self.obj_blocks
        } else {
            self.heap_blocks
        }
    }

    /// All bytes: object bodies, headers and std-heap blocks.
    pub fn total_bytes(&self) -> i64 {
        self.obj_bytes + self.header_bytes() + self.std_bytes()
    }

    /// All blocks: runtime blocks and std-heap blocks.
    pub fn total_blocks(&self) -> i64 {
        self.obj_blocks + self.std_blocks()
    }

    /// The header's share of all bytes, in percent.
    pub fn header_share(&self) -> f64 {
        match self.total_bytes() {
            0 => 0.0,
            t => 100.0 * self.header_bytes() as f64 / t as f64,
        }
    }

    fn per(&self, v: i64) -> f64 {
        v as f64 / self.count.max(1) as f64
    }
}

/// A table of footprints, per object: blocks, bytes, and where the bytes come from.
pub fn footprint_table(rows: &[Footprint]) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:<34} {:>9} {:>10} {:>10} {:>8} {:>8} {:>9} {:>8}",
        "per object", "objects", "blocks", "bytes", "object", "header", "std-heap", "header%"
    );
    for r in rows {
        let _ = writeln!(
            s,
            "{:<34} {:>9} {:>10.2} {:>10.1} {:>8.1} {:>8.1} {:>9.1} {:>7.1}%",
            r.label,
            r.count,
            r.per(r.total_blocks()),
            r.per(r.total_bytes()),
            r.per(r.obj_bytes),
            r.per(r.header_bytes()),
            r.per(r.std_bytes()),
            r.header_share(),
        );
    }
    s
}

/// dhat's whole-run figures: totals, the peak, and what is live now against `base`.
pub fn heap_summary(stats: &dhat::HeapStats, base: &Reading) -> String {
    format!(
        "dhat: total {} blocks / {} bytes allocated; peak (t-gmax) {} blocks / {} bytes; \
         live now {} blocks / {} bytes (baseline {} / {})",
        stats.total_blocks,
        stats.total_bytes,
        stats.max_blocks,
        stats.max_bytes,
        stats.curr_blocks,
        stats.curr_bytes,
        base.heap_blocks,
        base.heap_bytes,
    )
}

pub use tether_runtime::demo::{build_tree, walk_tree, TreeNode};

/// A small Rust-defined object, for the weak-reference rows of the mix.
pub struct Leaf {
    payload: [u64; 4],
}

object_type!(Leaf, "tether.profiles.Leaf");

impl Leaf {
    /// A leaf whose payload is derived from `i`.
    pub fn new(i: usize) -> Leaf {
        Leaf {
            payload: [i as u64; 4],
        }
    }

    /// The payload's sum.
    pub fn sum(&self) -> u64 {
        self.payload.iter().sum()
    }
}

/// The record types of the mix, registered once per process (registrations are kept for the
/// process's life, by design of the type registry).
#[derive(Debug, Clone, Copy)]
pub struct MixTypes {
    /// A record of 1 int field.
    pub rec1: u32,
    /// A record of 4 int fields.
    pub rec4: u32,
    /// A record of 16 int fields.
    pub rec16: u32,
    /// A record of a `str` and a `bytes` field.
    pub blob: u32,
}

/// Registers (on the first call) and returns the mix's record types.
///
/// # Panics
/// If registration fails (a name clash with a Rust type: a programming error).
pub fn mix_types() -> MixTypes {
    static TYPES: OnceLock<MixTypes> = OnceLock::new();
    *TYPES.get_or_init(|| {
        let ints = |name: &str, n: usize| {
            let fields = (0..n)
                .map(|i| FieldSpec::new(format!("f{i}"), FieldKind::Int))
                .collect();
            register_record_type(name, None, fields).expect("register a record type")
        };
        let blob = register_record_type(
            "tether.profiles.Blob",
            None,
            vec![
                FieldSpec::new("name", FieldKind::Str),
                FieldSpec::new("data", FieldKind::Bytes),
            ],
        )
        .expect("register the blob type");
        MixTypes {
            rec1: ints("tether.profiles.Rec1", 1),
            rec4: ints("tether.profiles.Rec4", 4),
            rec16: ints("tether.profiles.Rec16", 16),
            blob,
        }
    })
}

/// Bytes in each blob's `data` field and in each bytes value.
pub const BLOB_DATA: usize = 64;

/// A record of `fields` int fields of type `type_index`, values derived from `i`.
///
/// # Panics
/// If `type_index` is not a record type of `fields` int fields.
pub fn int_record(type_index: u32, fields: usize, i: usize) -> ObjAny {
    let values = (0..fields).map(|f| Value::Int((i + f) as i64)).collect();
    Record::new(type_index, values).expect("build an int record")
}

/// A blob record: a 20-character name and [`BLOB_DATA`] bytes, both fresh allocations.
///
/// # Panics
/// If `type_index` is not [`MixTypes::blob`].
pub fn blob_record(type_index: u32, i: usize) -> ObjAny {
    Record::new(type_index, vec![name_value(i), bytes_value(i)]).expect("build a blob record")
}

/// A 20-character string value (one `Arc<str>` block).
pub fn name_value(i: usize) -> Value {
    Value::from(format!("blob-{i:015}"))
}

/// A [`BLOB_DATA`]-byte bytes value (one `Arc<[u8]>` block).
pub fn bytes_value(i: usize) -> Value {
    Value::from(vec![i as u8; BLOB_DATA])
}

/// A function object whose closure captures one `i64` (so its boxed body is a heap block too).
pub fn function(i: usize) -> ObjRef<Function> {
    let k = i as i64;
    Function::tied(move |args| Ok(Value::Int(k + args.len() as i64)))
}

/// A leaf object and a weak reference to it.
pub fn leaf_with_weak(i: usize) -> (ObjRef<Leaf>, WeakRef<Leaf>) {
    let strong = ObjRef::new(Leaf::new(i));
    let weak = strong.downgrade();
    (strong, weak)
}

/// A weak reference whose object has been dropped: the value is gone, the block (header
/// included) stays until the weak reference goes.
pub fn weak_only(i: usize) -> WeakRef<Leaf> {
    leaf_with_weak(i).1
}

/// Builds `count` values with `make`, kept in a vector reserved before the first reading, and
/// returns their footprint and the values (drop them to free).
pub fn measure<T>(
    label: &str,
    count: usize,
    mut make: impl FnMut(usize) -> T,
) -> (Footprint, Vec<T>) {
    let mut keep = Vec::with_capacity(count);
    let before = Reading::now();
    for i in 0..count {
        keep.push(make(i));
    }
    let after = Reading::now();
    (Footprint::between(label, count, &before, &after), keep)
}

/// Runs the allocation mix, `count` objects per row, dropping each row's objects before the
/// next, and returns the rows (each measured with everything of the previous rows freed).
///
/// # Panics
/// If no dhat heap profiler is running, or a record cannot be built.
pub fn run_mix(count: usize) -> Vec<Footprint> {
    let t = mix_types();
    let mut rows = Vec::new();
    macro_rules! row {
        ($label:expr, $make:expr) => {{
            let (fp, keep) = measure($label, count, $make);
            drop(keep);
            rows.push(fp);
        }};
    }
    row!("record, 1 int field", |i| int_record(t.rec1, 1, i));
    row!("record, 4 int fields", |i| int_record(t.rec4, 4, i));
    row!("record, 16 int fields", |i| int_record(t.rec16, 16, i));
    row!("record, str (20 B) + bytes (64 B)", |i| blob_record(
        t.blob, i
    ));
    row!("value, str (20 B)", name_value);
    row!("value, bytes (64 B)", bytes_value);
    row!("function (closure of one i64)", function);
    row!("object [u64; 4] + a weak ref", leaf_with_weak);
    row!("weak ref only (value dropped)", weak_only);
    rows
}

//! The drop-in workload: one mixed, allocation-heavy program, compiled into five example
//! binaries that differ only in their `#[global_allocator]` (`dropin_mimalloc`,
//! `dropin_system`, `dropin_wide`, `dropin_narrow`, `dropin_bare`). `make bench-dropin` builds
//! them in release mode and runs them alternating (`dropin/run.py`).
//!
//! Three phases, sized so that one run takes about 1-3 s:
//! 1. **Binary trees** (the benchmarks game's binary-trees, single-threaded, depth
//!    [`TREE_DEPTH`]): millions of 16-byte `Box` nodes allocated and freed in bursts.
//! 2. **JSON**: a generated document of a few MB ([`RECORDS`] records with strings, vectors and
//!    maps) serialized with `serde_json`, parsed into a `serde_json::Value`, changed, serialized
//!    again and parsed back into typed records, [`JSON_ROUNDS`] times.
//! 3. **Hash-map churn**: a `HashMap<String, Vec<u64>>` under random inserts, appends,
//!    removals, truncations and shrinks ([`MAP_OPS`] operations).
//!
//! Each binary prints one line: `dropin NAME wall_ms=.. cpu_ms=.. trees_ms=.. json_ms=..
//! map_ms=.. maxrss_kb=.. minflt=.. checksum=..` (CPU = user + sys of the process and minor page
//! faults, from `getrusage`; the checksum must be the same for every allocator).
//! `DROPIN_PHASES=json` (or `trees`, `map`, comma-separated) runs only those phases.

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

/// Depth of the binary-trees phase (the long-lived tree's depth).
pub const TREE_DEPTH: u32 = 18;
/// Records in the JSON document.
pub const RECORDS: usize = 20_000;
/// Serialize / parse rounds of the JSON phase.
pub const JSON_ROUNDS: usize = 4;
/// Operations of the hash-map phase.
pub const MAP_OPS: usize = 3_000_000;

/// A small deterministic generator (xorshift64*), so every binary runs the same work.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn word(&mut self) -> String {
        const SYL: [&str; 12] = [
            "ka", "to", "ri", "mu", "se", "ne", "lo", "pa", "vi", "do", "qu", "zen",
        ];
        let n = 1 + self.below(4);
        (0..n).map(|_| SYL[self.below(12) as usize]).collect()
    }
}

// ---------------------------------------------------------------- binary trees

struct Node {
    left: Option<Box<Node>>,
    right: Option<Box<Node>>,
}

fn bottom_up(depth: u32) -> Box<Node> {
    if depth == 0 {
        Box::new(Node {
            left: None,
            right: None,
        })
    } else {
        Box::new(Node {
            left: Some(bottom_up(depth - 1)),
            right: Some(bottom_up(depth - 1)),
        })
    }
}

fn check(node: &Node) -> u64 {
    1 + node.left.as_deref().map_or(0, check) + node.right.as_deref().map_or(0, check)
}

fn trees(max_depth: u32) -> u64 {
    let min_depth = 4;
    let mut sum = check(&bottom_up(max_depth + 1));
    let long_lived = bottom_up(max_depth);
    for depth in (min_depth..=max_depth).step_by(2) {
        let iterations = 1u64 << (max_depth - depth + min_depth);
        for _ in 0..iterations {
            sum += check(&bottom_up(depth));
        }
    }
    sum + check(&long_lived)
}

// ---------------------------------------------------------------- JSON

#[derive(Serialize, Deserialize)]
struct Event {
    t: u64,
    kind: String,
    value: f64,
}

#[derive(Serialize, Deserialize)]
struct Record {
    id: u64,
    name: String,
    email: String,
    active: bool,
    score: f64,
    tags: Vec<String>,
    history: Vec<Event>,
    attrs: BTreeMap<String, String>,
}

fn record(rng: &mut Rng, id: u64) -> Record {
    let name = format!("{} {}", rng.word(), rng.word());
    Record {
        id,
        email: format!("{}.{}@example.invalid", rng.word(), id),
        name,
        active: rng.below(2) == 0,
        score: rng.below(1_000_000) as f64 / 997.0,
        tags: (0..rng.below(6)).map(|_| rng.word()).collect(),
        history: (0..rng.below(5))
            .map(|i| Event {
                t: 1_700_000_000 + i * 3600 + rng.below(3600),
                kind: rng.word(),
                value: rng.below(10_000) as f64 / 8.0,
            })
            .collect(),
        attrs: (0..rng.below(4))
            .map(|_| (rng.word(), rng.word()))
            .collect(),
    }
}

/// A sum over a parsed document's structure (numbers, string lengths, element counts).
fn value_sum(v: &serde_json::Value) -> u64 {
    use serde_json::Value::*;
    match v {
        Null => 1,
        Bool(b) => 2 + u64::from(*b),
        Number(n) => n
            .as_u64()
            .unwrap_or_else(|| n.as_f64().unwrap_or(0.0) as u64),
        String(s) => s.len() as u64,
        Array(a) => a.iter().map(value_sum).sum::<u64>() + a.len() as u64,
        Object(o) => o.iter().map(|(k, v)| k.len() as u64 + value_sum(v)).sum(),
    }
}

fn json(records: usize, rounds: usize) -> u64 {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut sum = 0;
    for round in 0..rounds {
        let doc: Vec<Record> = (0..records as u64).map(|id| record(&mut rng, id)).collect();
        let text = serde_json::to_string(&doc).expect("serializable");
        drop(doc);
        let mut value: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
        sum += value_sum(&value) + text.len() as u64;
        for (i, item) in value
            .as_array_mut()
            .expect("an array")
            .iter_mut()
            .enumerate()
        {
            let obj = item.as_object_mut().expect("records are objects");
            obj.insert("round".to_string(), serde_json::json!(round));
            if i % 3 == 0 {
                obj.remove("attrs");
                obj.insert(
                    "attrs".to_string(),
                    serde_json::json!({ "seen": i.to_string() }),
                );
            }
        }
        let again = serde_json::to_string(&value).expect("serializable");
        drop(value);
        let back: Vec<Record> = serde_json::from_str(&again).expect("typed records");
        sum += back
            .iter()
            .map(|r| r.id + r.tags.len() as u64 + r.history.len() as u64)
            .sum::<u64>();
        sum += again.len() as u64;
    }
    sum
}

// ---------------------------------------------------------------- hash-map churn

fn map_churn(ops: usize) -> u64 {
    let mut rng = Rng(0xD1B5_4A32_D192_ED03);
    let keys = 40_000;
    let mut map: HashMap<String, Vec<u64>> = HashMap::new();
    let mut sum = 0u64;
    for i in 0..ops {
        let x = rng.next();
        let key = format!("key-{}", x % keys);
        match (x >> 56) % 16 {
            0..=8 => map.entry(key).or_default().push(i as u64),
            9..=10 => {
                if let Some(v) = map.remove(&key) {
                    sum += v.len() as u64;
                }
            }
            11 => {
                if let Some(v) = map.get_mut(&key) {
                    v.truncate(v.len() / 2);
                    v.shrink_to_fit();
                }
            }
            12 => {
                let v = map.entry(key).or_default();
                v.extend((0..(x % 64)).map(|j| j ^ x));
            }
            _ => sum += map.get(&key).map_or(0, |v| v.len() as u64),
        }
        if i % (ops / 8) == ops / 8 - 1 {
            map.retain(|_, v| v.len() % 3 != 0);
            map.shrink_to_fit();
        }
    }
    sum + map.len() as u64 + map.values().map(|v| v.len() as u64).sum::<u64>()
}

// ---------------------------------------------------------------- driver

/// User + system CPU time of this process, in milliseconds, its peak RSS in KiB and its minor
/// page faults.
fn rusage() -> (f64, i64, i64) {
    // SAFETY: an all-zero rusage is a valid out-buffer; getrusage fills it.
    let mut ru: libc::rusage = unsafe { core::mem::zeroed() };
    // SAFETY: RUSAGE_SELF with a valid pointer to a rusage.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    assert_eq!(rc, 0, "getrusage failed");
    let ms = |t: libc::timeval| t.tv_sec as f64 * 1e3 + t.tv_usec as f64 / 1e3;
    (
        ms(ru.ru_utime) + ms(ru.ru_stime),
        ru.ru_maxrss,
        ru.ru_minflt,
    )
}

/// Whether phase `name` runs: all of them, unless `DROPIN_PHASES` lists some (comma-separated:
/// `trees`, `json`, `map`), for looking at one phase on its own.
fn enabled(name: &str) -> bool {
    std::env::var("DROPIN_PHASES").map_or(true, |v| v.split(',').any(|p| p.trim() == name))
}

/// Runs `f` if phase `name` is enabled: its result (0 if skipped) and its wall time in ms.
fn phase(name: &str, f: impl FnOnce() -> u64) -> (u64, f64) {
    if !enabled(name) {
        return (0, 0.0);
    }
    let t = Instant::now();
    let r = f();
    (r, t.elapsed().as_secs_f64() * 1e3)
}

/// Runs the three phases and prints the result line for the allocator `name`.
pub fn run(name: &str) {
    let (cpu0, _, flt0) = rusage();
    let start = Instant::now();
    let (a, trees_ms) = phase("trees", || trees(TREE_DEPTH));
    let (b, json_ms) = phase("json", || json(RECORDS, JSON_ROUNDS));
    let (c, map_ms) = phase("map", || map_churn(MAP_OPS));
    let wall_ms = start.elapsed().as_secs_f64() * 1e3;
    let (cpu1, maxrss_kb, flt1) = rusage();
    let checksum = a
        .wrapping_mul(31)
        .wrapping_add(b)
        .wrapping_mul(31)
        .wrapping_add(c);
    println!(
        "dropin {name} wall_ms={wall_ms:.1} cpu_ms={:.1} trees_ms={trees_ms:.1} \
         json_ms={json_ms:.1} map_ms={map_ms:.1} maxrss_kb={maxrss_kb} minflt={} \
         checksum={checksum}",
        cpu1 - cpu0,
        flt1 - flt0
    );
}

//! dhat in testing mode: the workloads leave no block behind (a `harness = false` test binary:
//! dhat allows one profiler at a time, and the global allocator is per process).
//!
//! Two checks, each from a baseline taken after the types were registered (registrations are
//! kept for the process's life by design) and with nothing printed in between:
//! 1. build, walk and drop a tree of 10,000 nodes;
//! 2. the allocation mix (records, string and bytes values, functions, weak references).
//!
//! Each asserts with `dhat::assert_eq!` that dhat's live blocks and bytes are back at the
//! baseline, and that the runtime allocator's live objects are too. With the `global-inner`
//! feature (`make profile` runs this test with it) dhat sees the runtime's blocks as well, and
//! the check also asserts that it did; without it (the default, in `cargo test --workspace`)
//! dhat covers the std-heap side and the runtime's counters cover the objects.

use tether_profiles::{build_tree, leaf_with_weak, mix_types, run_mix, walk_tree, SEES_RUNTIME};
use tether_runtime::{alloc_stats, Object};

#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

const TREE_NODES: usize = 10_000;
const MIX_COUNT: usize = 500;

/// Runs `work` between two readings and asserts that nothing it allocated is still live;
/// `min_runtime_blocks` is how many runtime blocks dhat must have seen allocated (when it can).
fn leaves_nothing(work: impl FnOnce(), min_runtime_blocks: u64) {
    let heap = dhat::HeapStats::get();
    let objects = alloc_stats();
    work();
    let heap_after = dhat::HeapStats::get();
    let objects_after = alloc_stats();
    dhat::assert_eq!(heap_after.curr_blocks, heap.curr_blocks);
    dhat::assert_eq!(heap_after.curr_bytes, heap.curr_bytes);
    dhat::assert_eq!(objects_after.live_blocks, objects.live_blocks);
    dhat::assert_eq!(objects_after.live_bytes, objects.live_bytes);
    let runtime_allocs = (objects_after.total_allocs - objects.total_allocs) as u64;
    dhat::assert!(runtime_allocs >= min_runtime_blocks);
    if SEES_RUNTIME {
        // Every runtime block went through dhat, on top of the std-heap ones.
        dhat::assert!(heap_after.total_blocks - heap.total_blocks >= runtime_allocs);
    }
}

fn main() {
    // Testing mode writes a profile only when a dhat assertion fails: then to profiles/out.
    let _profiler = dhat::Profiler::builder()
        .testing()
        .file_name(tether_profiles::out_path("no_leaks"))
        .build();
    // Before the baselines: stdout's buffer, the type registrations, the Function type.
    println!(
        "no_leaks: dhat sees the runtime's blocks: {SEES_RUNTIME} (feature global-inner: {})",
        cfg!(feature = "global-inner")
    );
    let _ = tether_profiles::TreeNode::type_index();
    let _ = mix_types();
    drop(leaf_with_weak(0));
    drop(tether_profiles::function(0));
    // Each record type's deleter entry, made at its first object (records find their deleter
    // by type, their owner word being the cycle collector's: tether_runtime's FLAG_RECORD).
    drop(run_mix(1));

    leaves_nothing(
        || {
            let root = build_tree(TREE_NODES);
            let (n, _) = root.as_ref().map_or((0, 0), walk_tree);
            std::assert_eq!(n, TREE_NODES);
        },
        TREE_NODES as u64,
    );
    println!("tree of {TREE_NODES} nodes, built and dropped: ok");

    leaves_nothing(
        || {
            let rows = run_mix(MIX_COUNT);
            std::assert!(rows.iter().all(|r| r.total_blocks() > 0));
        },
        7 * MIX_COUNT as u64,
    );
    println!("allocation mix, {MIX_COUNT} objects per row: ok");
    println!("no_leaks: 2 passed, 0 failed");
}

//! `tree [NODES]`: builds a binary tree of NODES (default 1,000,000) Rust-defined runtime
//! objects natively under dhat, walks it, drops it, and writes `profiles/out/tree.json`.
//!
//! Prints bytes per node, the header's share, the peak and the block totals.

use tether_profiles::{
    build_tree, footprint_table, heap_summary, out_path, walk_tree, warn_if_blind, Footprint,
    Reading, TreeNode,
};
use tether_runtime::Object;

#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

fn main() {
    let nodes: usize = match std::env::args().nth(1).map(|a| a.parse()) {
        None => 1_000_000,
        Some(Ok(n)) => n,
        Some(Err(e)) => {
            eprintln!("usage: tree [NODES]: {e}");
            std::process::exit(2);
        }
    };
    let path = out_path("tree");
    warn_if_blind();
    let profiler = dhat::Profiler::builder().file_name(&path).build();
    // Register the type (kept for the process's life) before the baseline.
    let _ = TreeNode::type_index();
    println!("tree: {nodes} TreeNode objects (left, right: Option<ObjRef>, value: i64)");

    let base = Reading::now();
    let root = build_tree(nodes);
    let built = Reading::now();
    let (seen, sum) = root.as_ref().map_or((0, 0), walk_tree);
    assert_eq!(seen, nodes, "the walk sees every node");
    drop(root);
    let freed = Reading::now();
    let stats = dhat::HeapStats::get();

    let fp = Footprint::between("tree node", nodes, &base, &built);
    print!("{}", footprint_table(&[fp]));
    println!("walk: {seen} nodes, value sum {sum}");
    println!("{}", heap_summary(&stats, &base));
    println!(
        "after the drop: {} blocks / {} bytes live beyond the baseline",
        freed.heap_blocks as i64 - base.heap_blocks as i64,
        freed.heap_bytes as i64 - base.heap_bytes as i64,
    );
    drop(profiler);
    println!("profile: {}", path.display());
}

//! `mix [COUNT]`: an allocation mix under dhat, COUNT (default 100,000) objects per row: records
//! of 1, 4 and 16 fields, a record with a string and bytes, string and bytes values, functions,
//! objects with weak references, and weak references alone. Writes `profiles/out/mix.json`.
//!
//! Each row is measured with the previous rows' objects freed; the table gives blocks and bytes
//! per object and where the bytes come from (object bodies, headers, std-heap blocks).

use tether_profiles::{
    footprint_table, heap_summary, leaf_with_weak, mix_types, out_path, run_mix, warn_if_blind,
    Reading,
};

#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

fn main() {
    let count: usize = match std::env::args().nth(1).map(|a| a.parse()) {
        None => 100_000,
        Some(Ok(n)) => n,
        Some(Err(e)) => {
            eprintln!("usage: mix [COUNT]: {e}");
            std::process::exit(2);
        }
    };
    let path = out_path("mix");
    warn_if_blind();
    let profiler = dhat::Profiler::builder().file_name(&path).build();
    // Register the types (kept for the process's life) before the baseline.
    let _ = mix_types();
    drop(leaf_with_weak(0));
    drop(tether_profiles::function(0));
    println!("mix: {count} objects per row");

    let base = Reading::now();
    let rows = run_mix(count);
    print!("{}", footprint_table(&rows));
    drop(rows);
    let end = Reading::now();
    let stats = dhat::HeapStats::get();

    println!("{}", heap_summary(&stats, &base));
    println!(
        "after every row is dropped: {} blocks / {} bytes live beyond the baseline",
        end.heap_blocks as i64 - base.heap_blocks as i64,
        end.heap_bytes as i64 - base.heap_bytes as i64,
    );
    drop(profiler);
    println!("profile: {}", path.display());
}

//! The drop-in workload (`dropin/workload.rs`) on raw mimalloc: [`tether_alloc::MiMalloc`] as
//! the global allocator, no header.

#[path = "dropin/workload.rs"]
mod workload;

#[global_allocator]
static GLOBAL: tether_alloc::MiMalloc = tether_alloc::MiMalloc;

fn main() {
    workload::run("mimalloc");
}

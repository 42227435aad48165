//! The drop-in workload (`dropin/workload.rs`) on `HeaderAlloc<MiMalloc>`: the default `Wide`
//! kind, 16 header bytes before every allocation.

#[path = "dropin/workload.rs"]
mod workload;

use tether_alloc::{HeaderAlloc, MiMalloc};

#[global_allocator]
static GLOBAL: HeaderAlloc<MiMalloc> = HeaderAlloc::with_inner(MiMalloc);

fn main() {
    workload::run("wide");
}

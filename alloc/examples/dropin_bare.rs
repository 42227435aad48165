//! The drop-in workload (`dropin/workload.rs`) on `HeaderAlloc<MiMalloc, NoStats, Bare>`: no
//! header (the opt-out), i.e. the cost of the `HeaderAlloc` layer itself.

#[path = "dropin/workload.rs"]
mod workload;

use tether_alloc::{Bare, HeaderAlloc, MiMalloc, NoStats};

#[global_allocator]
static GLOBAL: HeaderAlloc<MiMalloc, NoStats, Bare> = HeaderAlloc::from_parts(MiMalloc, NoStats);

fn main() {
    workload::run("bare");
}

//! The drop-in workload (`dropin/workload.rs`) on `HeaderAlloc<MiMalloc, NoStats, Narrow>`: 8
//! header bytes before every allocation of alignment up to 8.

#[path = "dropin/workload.rs"]
mod workload;

use tether_alloc::{HeaderAlloc, MiMalloc, Narrow, NoStats};

#[global_allocator]
static GLOBAL: HeaderAlloc<MiMalloc, NoStats, Narrow> = HeaderAlloc::from_parts(MiMalloc, NoStats);

fn main() {
    workload::run("narrow");
}

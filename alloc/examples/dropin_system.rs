//! The drop-in workload (`dropin/workload.rs`) on `std::alloc::System` (glibc malloc).

#[path = "dropin/workload.rs"]
mod workload;

#[global_allocator]
static GLOBAL: std::alloc::System = std::alloc::System;

fn main() {
    workload::run("system");
}

//! `HeaderAlloc` (the default `Wide` kind) as the process-wide `#[global_allocator]` (a
//! `harness = false` test binary; `global_alloc/narrow.rs` runs the same checks on `Narrow`).
//!
//! Every allocation of this process, the test code's and std's, goes through a counting
//! `HeaderAlloc`. Each check runs under `catch_unwind`; the binary prints one line per check and a
//! closing `global_alloc: N passed, M failed`, and exits non-zero on any failure.
//!
//! Checks that compare live-block counts take their baseline and their final reading with no
//! printing in between (stdout's buffer is allocated lazily) and with every value dropped.
//!
//! Under Miri this binary needs Tree Borrows (`-Zmiri-tree-borrows`): `std::boxed::Box` passes
//! `dealloc` a pointer whose Stacked-Borrows provenance covers only the boxed value, so reading
//! the header before it is reported as UB by Stacked Borrows (a known limitation of that model
//! for allocators that keep metadata before the object: rust-lang/unsafe-code-guidelines#402).

/// The header kind of this binary's global allocator.
type Kind = tether_alloc::Wide;

include!("global_alloc/body.rs");

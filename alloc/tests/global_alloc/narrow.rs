//! `HeaderAlloc<_, Stats, Narrow>` (the 8-byte header) as the process-wide `#[global_allocator]`:
//! the checks of `tests/global_alloc.rs` (see there) on the other header kind. Not in the
//! Makefile's Miri runs (which take `tests/*.rs`); the `Wide` binary covers the same code paths.

/// The header kind of this binary's global allocator.
type Kind = tether_alloc::Narrow;

include!("body.rs");

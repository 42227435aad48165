//! Declares the cfgs this crate reads, so `unexpected_cfgs` stays quiet:
//! `tether_loom_broken` selects a deliberately wrong variant of one atomic protocol under loom,
//! to show that the loom models in `tests/loom.rs` can fail (see `src/sync.rs`).

fn main() {
    println!("cargo::rustc-check-cfg=cfg(tether_loom_broken, values(\"release_relaxed\", \"tie_no_cas\", \"finalize_check_then_act\", \"serial_check_then_act\", \"locked_no_exclusion\", \"host_incref_any\", \"kept_unclaimed\", \"doom_unchecked\"))");
    println!("cargo::rerun-if-changed=build.rs");
}

//! Shared test helpers: serialization of tests that read the global allocation counters, a
//! leak check over them, and payloads that count their drops.

#![allow(dead_code)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use tether_runtime::{alloc_stats, object_type};

static SERIAL: Mutex<()> = Mutex::new(());

/// Tests that check `alloc_stats()` run one at a time (the counters are process-wide).
pub fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Asserts on drop that the number of live runtime blocks is back to where it was.
/// Hold a [`serial`] guard while it lives.
pub struct LeakCheck {
    live_blocks: usize,
    live_bytes: usize,
}

impl LeakCheck {
    pub fn new() -> Self {
        let s = alloc_stats();
        LeakCheck {
            live_blocks: s.live_blocks,
            live_bytes: s.live_bytes,
        }
    }

    /// Blocks allocated since the check started.
    pub fn extra_blocks(&self) -> isize {
        alloc_stats().live_blocks as isize - self.live_blocks as isize
    }
}

impl Drop for LeakCheck {
    fn drop(&mut self) {
        if std::thread::panicking() {
            return;
        }
        let s = alloc_stats();
        assert_eq!(s.live_blocks, self.live_blocks, "runtime blocks leaked");
        assert_eq!(s.live_bytes, self.live_bytes, "runtime bytes leaked");
    }
}

/// A payload that counts its drops.
pub struct Tracked {
    pub drops: Arc<AtomicUsize>,
    pub data: [u64; 8],
}
object_type!(Tracked, "test.Tracked");

impl Tracked {
    pub fn new() -> (Self, Arc<AtomicUsize>) {
        let drops = Arc::new(AtomicUsize::new(0));
        (
            Tracked {
                drops: drops.clone(),
                data: [7; 8],
            },
            drops,
        )
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        self.drops.fetch_add(1, Ordering::SeqCst);
    }
}

pub fn drops(c: &AtomicUsize) -> usize {
    c.load(Ordering::SeqCst)
}

/// Iterations for loops that are slow under Miri.
pub fn iters(native: usize, miri: usize) -> usize {
    if cfg!(miri) {
        miri
    } else {
        native
    }
}

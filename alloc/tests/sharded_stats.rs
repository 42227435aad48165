//! `ShardedStats`: per-thread counters that add up across threads, through thread exits (a
//! shard changes hands) and with more threads than shards (the shared fallback shard).

use std::sync::Barrier;
use tether_alloc::{ShardedStats, StatsSink, SHARDS};

#[test]
fn counts_add_up_across_threads_frees_elsewhere_and_thread_exits() {
    let s = ShardedStats::new();
    // Many short-lived threads: each claims a shard, counts, exits (the shard goes back).
    for round in 0..4 {
        std::thread::scope(|t| {
            for i in 0..8 {
                let s = &s;
                t.spawn(move || {
                    for _ in 0..1000 {
                        s.on_alloc(10 + i, 0);
                    }
                    s.on_alloc(1, 64); // an over-aligned block: header bytes counted
                });
            }
        });
        // Freed on the main thread, allocated on the others.
        for i in 0..8 {
            for _ in 0..1000 {
                s.on_free(10 + i, 0);
            }
            s.on_free(1, 64);
        }
        let snap = s.snapshot().unwrap();
        assert_eq!(
            (snap.live_blocks, snap.live_bytes, snap.header_bytes),
            (0, 0, 0)
        );
        assert_eq!(snap.total_allocs, (round + 1) * 8 * 1001);
        assert_eq!(snap.total_allocs, snap.total_frees);
    }
}

#[test]
fn more_threads_than_shards_fall_back_to_the_shared_shard() {
    let s = ShardedStats::new();
    let n = SHARDS + 8;
    // All alive at once, so some cannot have a shard of their own.
    let barrier = Barrier::new(n);
    std::thread::scope(|t| {
        for _ in 0..n {
            let (s, barrier) = (&s, &barrier);
            t.spawn(move || {
                barrier.wait();
                for _ in 0..500 {
                    s.on_alloc(8, 0);
                }
                barrier.wait();
            });
        }
    });
    let snap = s.snapshot().unwrap();
    assert_eq!(snap.live_blocks, n * 500);
    assert_eq!(snap.live_bytes, n * 500 * 8);
    assert_eq!(snap.peak_bytes, n * 500 * 8);
    for _ in 0..n * 500 {
        s.on_free(8, 0);
    }
    let snap = s.snapshot().unwrap();
    assert_eq!((snap.live_blocks, snap.live_bytes), (0, 0));
    assert_eq!(snap.peak_bytes, n * 500 * 8); // the highest a snapshot saw
}

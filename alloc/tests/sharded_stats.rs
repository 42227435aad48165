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

#[test]
fn a_snapshot_never_counts_a_free_without_its_allocation() {
    // Allocated on one thread, freed on another, snapshotted on a third: a snapshot that read
    // the freeing thread's shard after the free and the allocating one's before the allocation
    // would see live figures below zero (wrapped); the counts are read "out" before "in".
    let s = ShardedStats::new();
    let (tx, rx) = std::sync::mpsc::channel::<usize>();
    let stop = std::sync::atomic::AtomicBool::new(false);
    let rounds = if cfg!(miri) { 200 } else { 200_000 };
    std::thread::scope(|t| {
        let s = &s;
        let stop = &stop;
        t.spawn(move || {
            for _ in 0..rounds {
                s.on_alloc(64, 0);
                tx.send(64).unwrap();
            }
        });
        t.spawn(move || {
            for bytes in rx {
                s.on_free(bytes, 0);
            }
            stop.store(true, std::sync::atomic::Ordering::Release);
        });
        t.spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::Acquire) {
                let snap = s.snapshot().unwrap();
                assert!(
                    snap.live_blocks <= rounds,
                    "live blocks wrapped: {}",
                    snap.live_blocks
                );
                assert!(
                    snap.live_bytes <= rounds * 64,
                    "live bytes wrapped: {}",
                    snap.live_bytes
                );
                assert!(
                    snap.peak_bytes <= rounds * 64,
                    "peak wrapped: {}",
                    snap.peak_bytes
                );
            }
        });
    });
    let snap = s.snapshot().unwrap();
    assert_eq!((snap.live_blocks, snap.live_bytes), (0, 0));
    assert_eq!(snap.total_allocs, rounds);
}

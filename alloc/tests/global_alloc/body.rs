// The body of the `global_alloc` test binaries (tests/global_alloc.rs: `Wide`;
// tests/global_alloc/narrow.rs: `Narrow`): each defines `type Kind` and includes this file.

use core::ffi::c_void;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicUsize, Ordering};
use std::collections::HashMap;
use std::process::ExitCode;
use tether_alloc::{
    aux_of, offset_for, tie_of, tie_with, HeaderAlloc, HeaderKind, Stats, TIE_PARKED,
};

#[cfg(not(feature = "global-inner"))]
#[global_allocator]
static GLOBAL: HeaderAlloc<tether_alloc::DefaultInner, Stats, Kind> =
    HeaderAlloc::from_parts(tether_alloc::DEFAULT_INNER, Stats::new());

/// With `global-inner` the default inner allocator *is* the global allocator, so the global
/// `HeaderAlloc` names its inner allocator explicitly (else it would call itself).
#[cfg(feature = "global-inner")]
#[global_allocator]
static GLOBAL: HeaderAlloc<std::alloc::System, Stats, Kind> =
    HeaderAlloc::from_parts(std::alloc::System, Stats::new());

/// Smaller workloads under Miri.
const SCALE: usize = if cfg!(miri) { 1 } else { 50 };

/// Whether the kind has the aux word (`Wide`).
const HAS_AUX: bool = <Kind as HeaderKind>::SIZE == 16;

static FREED_CALLS: AtomicUsize = AtomicUsize::new(0);
static FREED_LAST: AtomicUsize = AtomicUsize::new(0);

/// The free callback: counts and remembers the pointer. It must not allocate (it runs inside the
/// global allocator's `dealloc`), hence atomics rather than a `Vec`.
unsafe extern "C" fn count_free(p: *mut c_void) {
    FREED_CALLS.fetch_add(1, Ordering::SeqCst);
    FREED_LAST.store(p.addr(), Ordering::SeqCst);
}

fn live_blocks() -> usize {
    GLOBAL.stats().live_blocks
}

/// A live global-heap object, as the header functions take it.
fn obj<T>(p: *const T) -> NonNull<u8> {
    NonNull::new(p.cast_mut()).unwrap().cast()
}

/// The header words of a live global-heap object: (tie word, aux word or 0).
///
/// # Safety
/// `p` is a live allocation of the global allocator, reached through a pointer that carries the
/// whole block's provenance (a `Vec`'s buffer pointer, a raw allocation).
unsafe fn words<T>(p: *const T) -> (usize, usize) {
    // SAFETY: forwarded to the caller; every global allocation is an object of kind `Kind`.
    unsafe {
        let tie = tie_of(obj(p)).load(Ordering::Acquire).addr();
        let aux = if HAS_AUX {
            aux_of(obj(p)).load(Ordering::Acquire).addr()
        } else {
            0
        };
        (tie, aux)
    }
}

/// Parks `wrapper` in the tie word of a live global-heap object and sets the aux word (Wide).
///
/// # Safety
/// As for [`words`].
unsafe fn park<T>(p: *const T, wrapper: usize, aux: usize) {
    // SAFETY: forwarded to the caller.
    unsafe {
        let w = core::ptr::without_provenance_mut(wrapper);
        tie_of(obj(p)).store(tie_with(w, TIE_PARKED), Ordering::Release);
        if HAS_AUX {
            aux_of(obj(p)).store(core::ptr::without_provenance_mut(aux), Ordering::Release);
        }
    }
}

/// State (a): every header word null.
///
/// # Safety
/// As for [`words`].
unsafe fn is_state_a<T>(p: *const T) -> bool {
    // SAFETY: forwarded to the caller.
    unsafe { words(p) == (0, 0) }
}

/// Box, Vec, String and HashMap work, and everything they allocated is returned.
fn collections_balance() {
    let base = live_blocks();
    {
        let b = Box::new(41u64);
        let mut v: Vec<u32> = (0..1000 * SCALE as u32).collect();
        v.retain(|x| x % 3 == 0);
        let mut s = String::new();
        for i in 0..100 {
            s.push_str(&i.to_string());
        }
        let mut m = HashMap::new();
        for i in 0..200 * SCALE {
            m.insert(i, i.to_string());
        }
        assert_eq!(*b + 1, 42);
        assert_eq!(v.len(), (1000 * SCALE).div_ceil(3));
        assert!(s.starts_with("0123456789101112"));
        assert_eq!(m[&7], "7");
        assert!(live_blocks() > base + 3);
        assert!(GLOBAL.stats().live_bytes > 0);
    }
    assert_eq!(live_blocks(), base);
}

/// A parked tie word (and the aux word) set on a Vec's buffer survive every reallocation of the
/// buffer; the callback runs once, when the buffer is finally freed.
fn realloc_keeps_header() {
    let base = live_blocks();
    let calls = FREED_CALLS.load(Ordering::SeqCst);
    let mut v: Vec<u64> = Vec::with_capacity(4);
    v.push(1);
    let (wrapper, aux) = (0xCAFE_0000, 0xBEEF_0000);
    let expect = (wrapper | TIE_PARKED, if HAS_AUX { aux } else { 0 });
    // SAFETY: `v`'s buffer is a live global allocation; `as_ptr` keeps the block's provenance.
    unsafe { park(v.as_ptr(), wrapper, aux) };
    let (mut grows, mut moves) = (0, 0);
    for i in 2..=(2000 * SCALE) as u64 {
        let (cap, ptr) = (v.capacity(), v.as_ptr());
        v.push(i);
        if v.capacity() != cap {
            grows += 1;
            moves += usize::from(v.as_ptr() != ptr);
            // SAFETY: as above, for the reallocated buffer.
            let now = unsafe { words(v.as_ptr()) };
            assert_eq!(now, expect, "header lost at capacity {}", v.capacity());
        }
    }
    assert!(v.iter().copied().eq(1..=(2000 * SCALE) as u64));
    v.truncate(3);
    v.shrink_to_fit();
    // SAFETY: as above.
    assert_eq!(unsafe { words(v.as_ptr()) }, expect);
    assert!(grows >= 5 && moves >= 1, "grows {grows}, moves {moves}");
    assert_eq!(
        FREED_CALLS.load(Ordering::SeqCst),
        calls,
        "callback ran on realloc"
    );
    drop(v);
    assert_eq!(FREED_CALLS.load(Ordering::SeqCst), calls + 1);
    assert_eq!(FREED_LAST.load(Ordering::SeqCst), wrapper);
    assert_eq!(live_blocks(), base);
}

#[repr(C, align(4096))]
struct Page([u8; 4096]);

#[repr(C, align(64))]
struct Line([u64; 8]);

/// Over-aligned boxes (up to 4096) are aligned, have a zeroed header right before them, and so
/// do the buffers of vectors of them as they grow.
fn over_aligned() {
    let base = live_blocks();
    {
        let page = Box::new(Page([9; 4096]));
        let line = Box::new(Line([3; 8]));
        assert_eq!((&*page as *const Page).addr() % 4096, 0);
        assert_eq!((&*line as *const Line).addr() % 64, 0);
        assert!(page.0.iter().all(|&b| b == 9) && line.0 == [3; 8]);

        // The header of a fresh 4096-aligned block, through a full-provenance pointer.
        let layout = std::alloc::Layout::new::<Page>();
        // SAFETY: a non-zero-size layout; freed below with the same layout.
        let raw = unsafe { std::alloc::alloc(layout) };
        assert_eq!(raw.addr() % 4096, 0);
        // SAFETY: `raw` is a live global allocation.
        unsafe {
            assert!(is_state_a(raw));
            assert_eq!((tie_of(obj(raw)) as *const _ as usize) + 8, raw.addr());
        }
        // SAFETY: allocated above with `layout`.
        unsafe { std::alloc::dealloc(raw, layout) };

        let mut pages: Vec<Page> = Vec::new();
        for i in 0..6 {
            pages.push(Page([i; 4096]));
            assert_eq!(pages.as_ptr().addr() % 4096, 0);
            // SAFETY: the buffer is a live global allocation.
            assert!(unsafe { is_state_a(pages.as_ptr()) });
        }
        assert!(pages.iter().enumerate().all(|(i, p)| p.0[4095] == i as u8));
    }
    assert_eq!(live_blocks(), base);
}

/// `alloc_zeroed` (via `vec![0; n]`) is zero, header included.
fn zeroed_memory() {
    let base = live_blocks();
    {
        let v = vec![0u8; if cfg!(miri) { 1 << 12 } else { 1 << 20 }];
        assert!(v.iter().all(|&b| b == 0));
        // SAFETY: the buffer is a live global allocation.
        assert!(unsafe { is_state_a(v.as_ptr()) });
        let w = vec![0u64; 5000];
        assert!(w.iter().all(|&x| x == 0));
    }
    assert_eq!(live_blocks(), base);
}

/// The counters follow allocations exactly (object bytes, and the header bytes apart).
fn stats_follow_allocations() {
    let before = GLOBAL.stats();
    let v: Vec<u8> = Vec::with_capacity(1000);
    let during = GLOBAL.stats();
    assert_eq!(during.live_blocks, before.live_blocks + 1);
    assert_eq!(during.live_bytes, before.live_bytes + 1000);
    assert_eq!(during.header_bytes, before.header_bytes + offset_for::<Kind>(1));
    assert_eq!(during.total_allocs, before.total_allocs + 1);
    assert!(during.peak_bytes >= during.live_bytes);
    drop(v);
    let after = GLOBAL.stats();
    assert_eq!(after.live_blocks, before.live_blocks);
    assert_eq!(after.live_bytes, before.live_bytes);
    assert_eq!(after.header_bytes, before.header_bytes);
    assert_eq!(after.total_frees, before.total_frees + 1);
}

/// The free callback runs once, on dealloc, only for a parked word (not for a detached word or
/// after the callback is cleared); impossible sizes fail without aborting.
fn free_callback_and_overflow() {
    let base = live_blocks();
    let layout = std::alloc::Layout::from_size_align(100, 16).unwrap();
    for (parked, registered) in [(true, true), (false, true), (true, false), (false, false)] {
        let calls = FREED_CALLS.load(Ordering::SeqCst);
        if !registered {
            GLOBAL.set_free_callback(None);
        }
        // SAFETY: a non-zero-size layout; freed below with the same layout; `p` reaches the
        // header with the block's provenance.
        unsafe {
            let p = std::alloc::alloc(layout);
            assert!(is_state_a(p));
            if parked {
                park(p, 0xD00D_0000, 0x1234_5670);
            } else if HAS_AUX {
                aux_of(obj(p)).store(core::ptr::without_provenance_mut(8), Ordering::Relaxed);
            }
            std::alloc::dealloc(p, layout);
        }
        GLOBAL.set_free_callback(Some(count_free));
        let ran = FREED_CALLS.load(Ordering::SeqCst) - calls;
        assert_eq!(ran, usize::from(parked && registered), "({parked}, {registered})");
        if ran == 1 {
            assert_eq!(FREED_LAST.load(Ordering::SeqCst), 0xD00D_0000);
        }
    }
    let mut v: Vec<u8> = Vec::new();
    assert!(v.try_reserve(isize::MAX as usize - 8).is_err());
    assert!(v.try_reserve_exact(isize::MAX as usize - 20).is_err());
    if !cfg!(miri) {
        // The header fits, but no machine has that memory (Miri stops on such requests).
        assert!(v.try_reserve_exact(isize::MAX as usize - 40).is_err());
        assert!(v.try_reserve_exact(isize::MAX as usize / 2).is_err());
    }
    let mut w: Vec<u8> = vec![1; 10];
    assert!(w.try_reserve(isize::MAX as usize - 20).is_err());
    assert_eq!(w, [1; 10]);
    drop((v, w));
    assert_eq!(live_blocks(), base);
}

/// Threads allocate, hand blocks to each other and free them.
fn threads_workload() {
    let threads = if cfg!(miri) { 2 } else { 4 };
    let (tx, rx) = std::sync::mpsc::channel::<Box<[u64]>>();
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let tx = tx.clone();
            std::thread::spawn(move || {
                let mut kept = Vec::new();
                for i in 0..40 * SCALE {
                    let b: Box<[u64]> = vec![(t * 1000 + i) as u64; 1 + i % 50].into();
                    if i % 3 == 0 {
                        tx.send(b).unwrap();
                    } else {
                        kept.push(b);
                    }
                    if kept.len() > 20 {
                        kept.clear();
                    }
                }
                kept.len()
            })
        })
        .collect();
    drop(tx);
    let received: usize = rx.iter().map(|b| b.len()).sum();
    let kept: usize = handles.into_iter().map(|h| h.join().unwrap()).sum();
    assert!(received > 0 && kept <= 20 * threads);
}

/// The threaded workload balances: live blocks return to the baseline.
fn threads_balance() {
    // Warm up once: the first spawn and the first blocking receive on this thread initialize
    // process- and thread-wide state (e.g. the channel's cached per-thread context) that lives on.
    threads_workload();
    // std's channels cache a per-thread waiting context the first time a thread *blocks* in
    // `recv`; whether the warm-up blocked depends on timing, so block once on purpose.
    let (tx, rx) = std::sync::mpsc::channel::<u8>();
    let sender = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_millis(20));
        tx.send(1).unwrap();
    });
    assert_eq!(rx.recv().unwrap(), 1);
    sender.join().unwrap();
    let base = live_blocks();
    threads_workload();
    // A joined thread's last handles (std's `Thread`/packet `Arc`s) can be released a moment
    // after `join` returns: wait briefly for the count to settle before comparing (it must
    // still come back exactly to the baseline).
    for _ in 0..200 {
        if live_blocks() == base {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    assert_eq!(live_blocks(), base);
}

type Check = (&'static str, fn());

const CHECKS: &[Check] = &[
    ("collections_balance", collections_balance),
    ("realloc_keeps_header", realloc_keeps_header),
    ("over_aligned", over_aligned),
    ("zeroed_memory", zeroed_memory),
    ("stats_follow_allocations", stats_follow_allocations),
    ("free_callback_and_overflow", free_callback_and_overflow),
    ("threads_balance", threads_balance),
];

fn main() -> ExitCode {
    GLOBAL.set_free_callback(Some(count_free));
    let (mut passed, mut failed) = (0, 0);
    for &(name, check) in CHECKS {
        match std::panic::catch_unwind(check) {
            Ok(()) => {
                passed += 1;
                println!("test {name} ... ok");
            }
            Err(_) => {
                failed += 1;
                println!("test {name} ... FAILED");
            }
        }
    }
    let s = GLOBAL.stats();
    println!(
        "global allocator ({}-byte header): {} live blocks, {} live bytes, {} header bytes, \
         peak {} bytes, {} allocations",
        <Kind as HeaderKind>::SIZE,
        s.live_blocks,
        s.live_bytes,
        s.header_bytes,
        s.peak_bytes,
        s.total_allocs
    );
    println!("global_alloc: {passed} passed, {failed} failed");
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

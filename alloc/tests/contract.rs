//! The `allocator_api2` contract of [`HeaderAlloc`], for every header kind (`Wide`, `Narrow`,
//! `Bare`) on every inner allocator.
//!
//! What is checked, for alignments 1..=4096 and sizes 0..=1 MiB (64 KiB under Miri):
//! * `allocate` / `allocate_zeroed`: the pointer is aligned, the object is usable for its full
//!   size, zeroed memory really is zero (the memory is dirtied first), and the header words
//!   (tie word at `obj - 8`, aux word at `obj - 16` for `Wide`) are null even when the block
//!   reuses dirty memory.
//! * The header arithmetic: through [`common::Tracking`], the inner block sits at
//!   `obj - offset_for::<K>(align)` with layout `block_layout::<K>(layout)`, and every block goes
//!   back with the layout it was obtained with.
//! * `grow` / `grow_zeroed` / `shrink`, also across alignment changes (where the object's offset
//!   in its block changes): the object's bytes and both header words survive; `grow_zeroed`'s
//!   tail is zero; the funnel does not run on a resize, and runs once at the final free.
//! * Layouts whose size plus header overflows are `AllocError` (null for `GlobalAlloc`), with the
//!   object of a failed `grow` left intact.
//! * Statistics, `header_bytes` included (0 for `Bare`).
//!
//! The free funnel has its own file (`funnel.rs`), as do the collections on top
//! (`collections.rs`) and the tie word (`tie.rs`).

#[macro_use]
mod common;

use allocator_api2::alloc::{AllocError, Allocator, Layout};
use common::*;
use core::ptr::NonNull;
use std::alloc::System;
use tether_alloc::{
    block_layout, offset_for, Bare, HeaderAlloc, HeaderKind, NoStats, Stats, StatsSink,
    HEADER_OFFSET,
};

/// Looks up the inner block starting at an address (via [`Tracking`]), if the test can.
type Lookup<'a> = Option<&'a dyn Fn(usize) -> Option<Layout>>;

fn layout(size: usize, align: usize) -> Layout {
    Layout::from_size_align(size, align).unwrap()
}

/// Checks a freshly allocated object: aligned, long enough, header words null, zero if
/// `zeroed`, and (with `blocks`) its inner block where the arithmetic says.
///
/// # Safety
/// `p` was just returned by a `HeaderAlloc<_, _, K>` for `l` and is live.
unsafe fn check_fresh<K: HeaderKind>(
    p: NonNull<[u8]>,
    l: Layout,
    zeroed: bool,
    blocks: Lookup<'_>,
) {
    let obj = p.cast::<u8>();
    let addr = obj.as_ptr().addr();
    assert!(p.len() >= l.size(), "{l:?}: got {} bytes", p.len());
    assert_eq!(addr % l.align(), 0, "{l:?}: misaligned {addr:#x}");
    if K::SIZE != 0 {
        assert_eq!((addr - K::SIZE) % 8, 0, "{l:?}: header misaligned");
    }
    // SAFETY: `obj` is live (caller).
    unsafe {
        assert_eq!(header_values::<K>(obj), HeaderValues::ZERO, "{l:?}");
        assert!(raw_header_words::<K>(obj).iter().all(|&w| w == 0), "{l:?}");
        if zeroed {
            assert!(is_zero(obj, l.size()), "{l:?}: allocate_zeroed not zero");
        }
    }
    let bl = block_layout::<K>(l).unwrap();
    if let Some(blocks) = blocks.filter(|_| bl.size() != 0) {
        let block = addr - offset_for::<K>(l.align());
        assert_eq!(blocks(block), Some(bl), "{l:?}: block at {block:#x}");
        assert!(addr - K::SIZE >= block && addr + l.size() <= block + bl.size());
    }
}

/// Leaves dirty memory where the next allocation of `l` will probably land: a block of
/// `block_layout::<K>(l)` straight from the inner allocator, filled (header slots included) with
/// a non-zero pattern.
fn dirty_inner<A: Allocator, S, K: HeaderKind>(
    alloc: &HeaderAlloc<A, S, K>,
    l: Layout,
    seed: usize,
) {
    let bl = block_layout::<K>(l).unwrap();
    let block = alloc.inner().allocate(bl).unwrap().cast::<u8>();
    // SAFETY: `block` is a live inner block of `bl`; at most its size is written.
    unsafe {
        fill(block, bl.size().min(MAX_SIZE), seed);
        alloc.inner().deallocate(block, bl);
    }
}

/// The allocate/allocate_zeroed sweep over every alignment and size.
fn sweep<A: Allocator, S: StatsSink, K: HeaderKind>(
    alloc: &HeaderAlloc<A, S, K>,
    blocks: Lookup<'_>,
) {
    let mut id = 0;
    for &align in &ALIGNS {
        for size in sizes() {
            id += 1;
            let l = layout(size, align);
            dirty_inner(alloc, l, id);
            // A parked header on a dirty object: the funnel runs on this free.
            let obj = alloc.allocate(l).unwrap().cast::<u8>();
            let dirty = HeaderValues::parked(id);
            // SAFETY: `obj` is live with layout `l`.
            unsafe {
                fill(obj, size, id);
                set_header::<K>(obj, dirty);
                alloc.deallocate(obj, l);
            }
            assert_eq!(take_freed(), dirty.freed::<K>(), "{l:?}: dirty pass");

            for zeroed in [false, true] {
                dirty_inner(alloc, l, id + 7);
                let p = if zeroed {
                    alloc.allocate_zeroed(l)
                } else {
                    alloc.allocate(l)
                }
                .unwrap();
                let obj = p.cast::<u8>();
                let parked = HeaderValues::parked(id);
                // SAFETY: `p` is live with layout `l`; writes stay within `size` bytes.
                unsafe {
                    check_fresh::<K>(p, l, zeroed, blocks);
                    set_header::<K>(obj, parked);
                    fill(obj, size, id + 1);
                    assert!(holds_pattern(obj, size, id + 1), "{l:?}: not usable");
                    let now = header_values::<K>(obj);
                    assert_eq!(
                        now,
                        parked.for_kind::<K>(),
                        "{l:?}: object clobbered header"
                    );
                    alloc.deallocate(obj, l);
                }
                assert_eq!(take_freed(), parked.freed::<K>(), "{l:?}: callback");
            }
        }
    }
}

fn sweep_system<K: HeaderKind>() {
    let tracking = Tracking::new(System);
    let alloc = recording::<_, _, K>(&tracking, NoStats);
    sweep(&alloc, Some(&|a| tracking.block_at(a)));
    tracking.assert_clean(true);
}

#[cfg(feature = "mimalloc")]
fn sweep_mimalloc<K: HeaderKind>() {
    let tracking = Tracking::new(tether_alloc::MiMalloc);
    let alloc = recording::<_, _, K>(&tracking, NoStats);
    sweep(&alloc, Some(&|a| tracking.block_at(a)));
    tracking.assert_clean(true);
}

fn sweep_bump<K: HeaderKind>() {
    // One arena per alignment keeps the arena's footprint small.
    for &align in &ALIGNS {
        let bump = bumpalo::Bump::new();
        let tracking = Tracking::new(&bump);
        let alloc = recording::<_, _, K>(&tracking, NoStats);
        let blocks = |a| tracking.block_at(a);
        for size in sizes() {
            let l = layout(size, align);
            for zeroed in [false, true] {
                let p = if zeroed {
                    alloc.allocate_zeroed(l)
                } else {
                    alloc.allocate(l)
                }
                .unwrap();
                let obj = p.cast::<u8>();
                let parked = HeaderValues::parked(size);
                // SAFETY: `p` is live with layout `l`.
                unsafe {
                    check_fresh::<K>(p, l, zeroed, Some(&blocks));
                    set_header::<K>(obj, parked);
                    fill(obj, size, size);
                    assert!(holds_pattern(obj, size, size));
                    alloc.deallocate(obj, l);
                }
                assert_eq!(take_freed(), parked.freed::<K>());
            }
        }
        tracking.assert_clean(true);
    }
}

fn sweep_default_and_counting<K: HeaderKind>() {
    sweep(
        &recording::<_, _, K>(tether_alloc::DEFAULT_INNER, NoStats),
        None,
    );
    let counting = recording::<_, _, K>(tether_alloc::DEFAULT_INNER, Stats::new());
    sweep(&counting, None);
    let s = counting.stats();
    assert_eq!((s.live_blocks, s.live_bytes, s.header_bytes), (0, 0, 0));
    assert_eq!(s.total_allocs, s.total_frees);
    assert_eq!(s.total_allocs, 3 * ALIGNS.len() * sizes().len());
    assert_eq!(s.peak_bytes, MAX_SIZE);
}

per_kind! {
    sweep_system => sweep_system,
    #[cfg(feature = "mimalloc")]
    sweep_mimalloc => sweep_mimalloc,
    sweep_bump => sweep_bump,
    sweep_default_and_counting => sweep_default_and_counting,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Resize {
    Grow,
    GrowZeroed,
    Shrink,
}

/// Every (old align, new align) pair of a set including 8 -> 16 (Narrow's offset changes),
/// 16 <-> 32 and 32 <-> 64 (Wide's and Narrow's), for growing and shrinking size pairs. Half the
/// objects are parked (the funnel runs at the final free), half bound (detached before it).
fn resize_matrix<A: Allocator, S: StatsSink, K: HeaderKind>(
    alloc: &HeaderAlloc<A, S, K>,
    blocks: Lookup<'_>,
) {
    let aligns: &[usize] = if cfg!(miri) {
        &[1, 8, 16, 64, 4096]
    } else {
        &[1, 8, 16, 32, 64, 256, 4096]
    };
    let pairs: Vec<(usize, usize)> = [
        (0, 1),
        (1, 64),
        (24, 1000),
        (992, 1024),
        (1000, 4103),
        (4000, 70_000),
        (65_536, 1 << 20),
    ]
    .into_iter()
    .filter(|&(_, big)| big <= MAX_SIZE)
    .collect();
    let mut id = 0;
    for &old_align in aligns {
        for &new_align in aligns {
            for &(small, big) in &pairs {
                for op in [Resize::Grow, Resize::GrowZeroed, Resize::Shrink] {
                    id += 1;
                    let (old_size, new_size) = match op {
                        Resize::Shrink => (big, small),
                        _ => (small, big),
                    };
                    let (old, new) = (layout(old_size, old_align), layout(new_size, new_align));
                    let what = format!("{op:?} {old:?} -> {new:?}");
                    let header = if id % 2 == 0 {
                        HeaderValues::parked(id)
                    } else {
                        HeaderValues::bound(id)
                    };
                    let obj = alloc.allocate(old).unwrap().cast::<u8>();
                    // SAFETY: `obj` is live with layout `old`; grow/shrink get the size
                    // relation they require; afterwards only the new object is used.
                    unsafe {
                        fill(obj, old_size, id);
                        set_header::<K>(obj, header);
                        let p = match op {
                            Resize::Grow => alloc.grow(obj, old, new),
                            Resize::GrowZeroed => alloc.grow_zeroed(obj, old, new),
                            Resize::Shrink => alloc.shrink(obj, old, new),
                        }
                        .unwrap();
                        let obj = p.cast::<u8>();
                        assert!(take_freed().is_empty(), "{what}: callback ran on resize");
                        assert!(p.len() >= new_size, "{what}");
                        assert_eq!(obj.as_ptr().addr() % new_align, 0, "{what}: misaligned");
                        let now = header_values::<K>(obj);
                        assert_eq!(now, header.for_kind::<K>(), "{what}: header lost");
                        let kept = old_size.min(new_size);
                        assert!(holds_pattern(obj, kept, id), "{what}: bytes lost");
                        if op == Resize::GrowZeroed {
                            let tail = obj.add(old_size);
                            assert!(is_zero(tail, new_size - old_size), "{what}: tail");
                        }
                        if let Some(blocks) = blocks.filter(|_| new_size + K::SIZE != 0) {
                            let block = obj.as_ptr().addr() - offset_for::<K>(new_align);
                            assert_eq!(blocks(block), block_layout::<K>(new), "{what}: block");
                        }
                        fill(obj, new_size, id + 1);
                        assert!(holds_pattern(obj, new_size, id + 1), "{what}: not usable");
                        if id % 2 == 1 {
                            // The owner detaches a bound object before freeing it.
                            set_header::<K>(obj, HeaderValues::detached(id));
                        }
                        alloc.deallocate(obj, new);
                    }
                    let expect = if id % 2 == 0 {
                        header.freed::<K>()
                    } else {
                        vec![]
                    };
                    assert_eq!(take_freed(), expect, "{what}: callback");
                }
            }
        }
    }
}

fn resize_system<K: HeaderKind>() {
    let tracking = Tracking::new(System);
    let alloc = recording::<_, _, K>(&tracking, Stats::new());
    resize_matrix(&alloc, Some(&|a| tracking.block_at(a)));
    tracking.assert_clean(true);
    let s = alloc.stats();
    assert_eq!((s.live_blocks, s.live_bytes, s.header_bytes), (0, 0, 0));
}

#[cfg(feature = "mimalloc")]
fn resize_mimalloc<K: HeaderKind>() {
    let tracking = Tracking::new(tether_alloc::MiMalloc);
    let alloc = recording::<_, _, K>(&tracking, NoStats);
    resize_matrix(&alloc, Some(&|a| tracking.block_at(a)));
    tracking.assert_clean(true);
    resize_matrix(&recording::<_, _, K>(tether_alloc::MiMalloc, NoStats), None);
}

fn resize_bump<K: HeaderKind>() {
    let bump = bumpalo::Bump::new();
    let tracking = Tracking::new(&bump);
    let alloc = recording::<_, _, K>(&tracking, NoStats);
    resize_matrix(&alloc, Some(&|a| tracking.block_at(a)));
    tracking.assert_clean(true);
}

/// One object walks through many layouts (both header words kept at every step); the callback
/// runs only at the final free; the stats follow every step.
fn resize_chain<K: HeaderKind>() {
    let alloc = recording::<_, _, K>(tether_alloc::DEFAULT_INNER, Stats::new());
    let steps = [
        (8, 8),
        (100, 8),
        (100, 16),
        (100, 256),
        (5000, 256),
        (40, 16),
        (40, 4096),
        (3, 1),
        (2000, 64),
        (0, 32),
        (33, 2),
    ];
    let header = HeaderValues::parked(77);
    let mut l = layout(steps[0].0, steps[0].1);
    let mut obj = alloc.allocate(l).unwrap().cast::<u8>();
    // SAFETY: `obj` is always the live object with layout `l`; each resize is chosen by the size
    // relation it requires.
    unsafe {
        set_header::<K>(obj, header);
        fill(obj, l.size(), 5);
        for &(size, align) in &steps[1..] {
            let new = layout(size, align);
            let p = if size >= l.size() {
                alloc.grow(obj, l, new)
            } else {
                alloc.shrink(obj, l, new)
            }
            .unwrap();
            obj = p.cast::<u8>();
            let now = header_values::<K>(obj);
            assert_eq!(now, header.for_kind::<K>(), "{l:?} -> {new:?}");
            assert!(
                holds_pattern(obj, l.size().min(size), 5),
                "{l:?} -> {new:?}"
            );
            fill(obj, size, 5);
            let s = alloc.stats();
            assert_eq!((s.live_bytes, s.live_blocks), (size, 1));
            assert_eq!(s.header_bytes, offset_for::<K>(align));
            l = new;
        }
        assert!(take_freed().is_empty());
        alloc.deallocate(obj, l);
    }
    assert_eq!(take_freed(), header.freed::<K>());
    assert_eq!(alloc.stats().live_blocks, 0);
}

per_kind! {
    resize_system => resize_system,
    #[cfg(feature = "mimalloc")]
    resize_mimalloc => resize_mimalloc,
    resize_bump => resize_bump,
    resize_chain => resize_chain,
}

/// Layouts that must fail: ones whose header no longer fits (Wide, Narrow) and, natively, ones
/// that are merely too big for any machine (every kind; Miri stops on such requests).
fn huge_layouts<K: HeaderKind>() -> Vec<Layout> {
    let max = isize::MAX as usize;
    let mut v = Vec::new();
    for align in [1usize, 8, 16, 32, 64, 4096] {
        if K::SIZE != 0 {
            // The largest size a Layout of this alignment accepts: the header no longer fits.
            v.push(layout(max + 1 - align, align));
            // The header just does not fit (block size would be isize::MAX + 1, before rounding).
            v.push(layout(
                (max + 1 - offset_for::<K>(align)) & !(align - 1),
                align,
            ));
        }
        if !cfg!(miri) {
            // Representable, but no machine has that memory: the inner allocator says no.
            if K::SIZE == 0 {
                v.push(layout(max + 1 - align, align));
            }
            v.push(layout((max / 2) & !(align - 1), align));
            v.push(layout((max & !4095) - 8192, align));
        }
    }
    v
}

fn overflow_cases<A: Allocator, S: StatsSink, K: HeaderKind>(alloc: &HeaderAlloc<A, S, K>) {
    for l in huge_layouts::<K>() {
        assert_eq!(alloc.allocate(l), Err(AllocError), "{l:?}");
        assert_eq!(alloc.allocate_zeroed(l), Err(AllocError), "{l:?}");
        for &align in &[1, 8, 16, 64, 4096] {
            let small = layout(16, align);
            let obj = alloc.allocate(small).unwrap().cast::<u8>();
            let header = HeaderValues::parked(align);
            // SAFETY: `obj` is live with layout `small`; a failed grow leaves it so.
            unsafe {
                fill(obj, 16, align);
                set_header::<K>(obj, header);
                assert_eq!(alloc.grow(obj, small, l), Err(AllocError), "{l:?}");
                assert_eq!(alloc.grow_zeroed(obj, small, l), Err(AllocError), "{l:?}");
                assert!(
                    holds_pattern(obj, 16, align),
                    "{l:?}: failed grow lost bytes"
                );
                let now = header_values::<K>(obj);
                assert_eq!(
                    now,
                    header.for_kind::<K>(),
                    "{l:?}: failed grow lost header"
                );
                assert!(take_freed().is_empty());
                alloc.deallocate(obj, small);
            }
            assert_eq!(take_freed(), header.freed::<K>());
        }
    }
}

fn overflow_is_alloc_error<K: HeaderKind>() {
    let tracking = Tracking::new(System);
    let alloc = recording::<_, _, K>(&tracking, Stats::new());
    overflow_cases(&alloc);
    tracking.assert_clean(true);
    assert_eq!(alloc.stats().live_blocks, 0);
    overflow_cases(&recording::<_, _, K>(tether_alloc::DEFAULT_INNER, NoStats));
    #[cfg(feature = "mimalloc")]
    overflow_cases(&recording::<_, _, K>(tether_alloc::MiMalloc, NoStats));
    let bump = bumpalo::Bump::new();
    overflow_cases(&recording::<_, _, K>(&bump, NoStats));
}

fn global_alloc_interface<K: HeaderKind>() {
    use core::alloc::GlobalAlloc;
    let alloc = recording::<_, _, K>(tether_alloc::DEFAULT_INNER, Stats::new());
    for l in huge_layouts::<K>() {
        // SAFETY: `l` has a non-zero size.
        unsafe {
            assert!(alloc.alloc(l).is_null(), "{l:?}");
            assert!(alloc.alloc_zeroed(l).is_null(), "{l:?}");
        }
    }
    for &align in &[1, 8, 16, 64, 4096] {
        let l = layout(100, align);
        let header = HeaderValues::parked(align);
        // SAFETY: each pointer is the live block of the layout passed with it; realloc's new
        // sizes are non-zero; a failed realloc leaves the block live with its old layout.
        unsafe {
            let p = alloc.alloc_zeroed(l);
            let obj = NonNull::new(p).unwrap();
            assert_eq!(p.addr() % align, 0);
            assert!(is_zero(obj, 100));
            assert_eq!(header_values::<K>(obj), HeaderValues::ZERO);
            fill(obj, 100, 1);
            set_header::<K>(obj, header);
            // Too big for the header (and for Layout, at high alignments): null, block intact.
            if K::SIZE != 0 || !cfg!(miri) {
                assert!(alloc.realloc(p, l, isize::MAX as usize).is_null());
            }
            assert!(alloc.realloc(p, l, usize::MAX - 10).is_null());
            assert!(holds_pattern(obj, 100, 1));
            let p = alloc.realloc(p, l, 5000);
            let obj = NonNull::new(p).unwrap();
            assert_eq!(p.addr() % align, 0);
            assert!(holds_pattern(obj, 100, 1));
            assert_eq!(header_values::<K>(obj), header.for_kind::<K>());
            let p = alloc.realloc(p, layout(5000, align), 10);
            let obj = NonNull::new(p).unwrap();
            assert!(holds_pattern(obj, 10, 1));
            assert_eq!(header_values::<K>(obj), header.for_kind::<K>());
            assert!(take_freed().is_empty());
            alloc.dealloc(p, layout(10, align));
        }
        assert_eq!(take_freed(), header.freed::<K>());
    }
    assert_eq!(alloc.stats().live_blocks, 0);
}

/// The counters, `header_bytes` included: `offset_for::<K>(align)` per live block.
fn stats_counters<K: HeaderKind>() {
    let alloc = HeaderAlloc::<System, Stats, K>::from_parts(System, Stats::new());
    assert_eq!(alloc.stats(), Default::default());
    let (la, lb, lc) = (layout(10, 1), layout(20, 8), layout(4096, 64));
    let h = |align| offset_for::<K>(align);
    let a = alloc.allocate(la).unwrap().cast::<u8>();
    let b = alloc.allocate_zeroed(lb).unwrap().cast::<u8>();
    let c = alloc.allocate(lc).unwrap().cast::<u8>();
    let s = alloc.stats();
    assert_eq!((s.live_blocks, s.live_bytes, s.peak_bytes), (3, 4126, 4126));
    assert_eq!((s.total_allocs, s.total_frees), (3, 0));
    assert_eq!(s.header_bytes, h(1) + h(8) + h(64));
    // SAFETY: each pointer is live with the layout passed alongside it.
    unsafe {
        alloc.deallocate(c, lc);
        let s = alloc.stats();
        assert_eq!((s.live_blocks, s.live_bytes, s.peak_bytes), (2, 30, 4126));
        assert_eq!(s.header_bytes, h(1) + h(8));
        let a = alloc.grow(a, la, layout(1000, 256)).unwrap().cast::<u8>();
        let s = alloc.stats();
        assert_eq!((s.live_blocks, s.live_bytes), (2, 1020));
        assert_eq!(s.header_bytes, h(256) + h(8));
        let a = alloc.shrink(a, layout(1000, 256), layout(5, 16)).unwrap();
        let a = a.cast::<u8>();
        assert_eq!(alloc.stats().live_bytes, 25);
        assert_eq!(alloc.stats().header_bytes, h(16) + h(8));
        alloc.deallocate(a, layout(5, 16));
        alloc.deallocate(b, lb);
    }
    let s = alloc.stats();
    assert_eq!((s.live_blocks, s.live_bytes, s.peak_bytes), (0, 0, 4126));
    assert_eq!((s.total_allocs, s.total_frees, s.header_bytes), (5, 5, 0));
    // A failed allocation counts nothing (Bare: the inner allocator fails, which Miri stops on).
    if K::SIZE != 0 || !cfg!(miri) {
        assert!(alloc
            .allocate(layout(usize::MAX / 2 + 1 - 4096, 4096))
            .is_err());
        assert_eq!(alloc.stats(), s);
    }
}

per_kind! {
    overflow_is_alloc_error => overflow_is_alloc_error,
    global_alloc_interface => global_alloc_interface,
    stats_counters => stats_counters,
}

#[test]
fn header_bytes_per_kind() {
    // The opt-out type shows header bytes 0; the others their offsets.
    fn live_header<K: HeaderKind>() -> usize {
        let alloc = HeaderAlloc::<System, Stats, K>::from_parts(System, Stats::new());
        let v = allocator_api2::vec![in &alloc; 0u64; 100];
        let l = Layout::new::<u32>();
        let b = alloc.allocate(l).unwrap().cast::<u8>();
        let s = alloc.stats();
        assert_eq!((s.live_blocks, s.live_bytes), (2, 804));
        drop(v);
        // SAFETY: allocated above with `l`.
        unsafe { alloc.deallocate(b, l) };
        assert_eq!(alloc.stats().header_bytes, 0);
        s.header_bytes
    }
    assert_eq!(live_header::<tether_alloc::Wide>(), 2 * HEADER_OFFSET);
    assert_eq!(live_header::<tether_alloc::Narrow>(), 16);
    assert_eq!(live_header::<Bare>(), 0);
}

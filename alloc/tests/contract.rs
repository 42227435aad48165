//! The `allocator_api2` contract of [`HeaderAlloc`], on every inner allocator.
//!
//! What is checked, for alignments 1..=4096 and sizes 0..=1 MiB (64 KiB under Miri):
//! * `allocate` / `allocate_zeroed`: the pointer is aligned, the object is usable for its full
//!   size, zeroed memory really is zero (the memory is dirtied first), and the header at
//!   `obj - HEADER_OFFSET` is in state (a) even when the block reuses a dirty header.
//! * The header arithmetic: through [`common::Tracking`], the inner block sits at
//!   `obj - offset_for(align)` with layout `block_layout(layout)`, and every block goes back with
//!   the layout it was obtained with.
//! * `grow` / `grow_zeroed` / `shrink`, also across alignment changes: the object's bytes and the
//!   header's three fields survive; `grow_zeroed`'s tail is zero; the free callback does not run.
//! * The free funnel: `deallocate` calls `free_cb(cached_mem)` exactly once, with that pointer,
//!   and only when both are set.
//! * Layouts whose size plus header overflows are `AllocError` (null for `GlobalAlloc`), with the
//!   object of a failed `grow` left intact.
//! * `hashbrown::HashMap`, `allocator_api2::vec::Vec` and `Box` on top; statistics; threads.

mod common;

use allocator_api2::alloc::{AllocError, Allocator, Layout};
use allocator_api2::boxed::Box as ABox;
use allocator_api2::vec::Vec as AVec;
use common::*;
use core::ptr::NonNull;
use std::alloc::System;
use tether_alloc::{
    block_layout, header_of, offset_for, HeaderAlloc, Stats, StatsSink, HEADER_OFFSET,
};

/// Looks up the inner block starting at an address (via [`Tracking`]), if the test can.
type Lookup<'a> = Option<&'a dyn Fn(usize) -> Option<Layout>>;

fn layout(size: usize, align: usize) -> Layout {
    Layout::from_size_align(size, align).unwrap()
}

/// Checks a freshly allocated object: aligned, long enough, header in state (a) at the right
/// place, zero if `zeroed`, and (with `blocks`) its inner block where the arithmetic says.
///
/// # Safety
/// `p` was just returned by a `HeaderAlloc` for `l` and is live.
unsafe fn check_fresh(p: NonNull<[u8]>, l: Layout, zeroed: bool, blocks: Lookup<'_>) {
    let obj = p.cast::<u8>();
    let addr = obj.as_ptr().addr();
    assert!(p.len() >= l.size(), "{l:?}: got {} bytes", p.len());
    assert_eq!(addr % l.align(), 0, "{l:?}: misaligned {addr:#x}");
    // SAFETY: `obj` is live (caller).
    let h = unsafe { header_of(obj) };
    let h_addr = (h as *const tether_alloc::Header).addr();
    assert_eq!(h_addr, addr - HEADER_OFFSET, "{l:?}");
    assert_eq!(h_addr % 8, 0, "{l:?}");
    // SAFETY: `obj` is live (caller).
    unsafe {
        assert_eq!(header_values(obj), HeaderValues::ZERO, "{l:?}");
        assert_eq!(raw_header_words(obj), [0; 3], "{l:?}");
        if zeroed {
            assert!(is_zero(obj, l.size()), "{l:?}: allocate_zeroed not zero");
        }
    }
    if let Some(blocks) = blocks {
        let block = addr - offset_for(l.align());
        assert_eq!(blocks(block), block_layout(l), "{l:?}: block at {block:#x}");
        let bl = block_layout(l).unwrap();
        assert!(
            h_addr >= block && addr + l.size() <= block + bl.size(),
            "{l:?}"
        );
    }
}

/// A `Box` in `alloc`, and its object pointer with the whole block's provenance.
///
/// Under Stacked Borrows, a pointer derived from a *reference* to the object (`&*b`) may only
/// touch the object, not the header before it; so the header is reached through the pointer the
/// allocator returned, which the `Box` is then built from.
fn boxed_in<T, A: Allocator>(value: T, alloc: A) -> (ABox<T, A>, NonNull<u8>) {
    let obj = alloc.allocate(Layout::new::<T>()).unwrap().cast::<T>();
    // SAFETY: `obj` is a fresh allocation of `T`'s layout from `alloc`: writable, and a valid
    // `Box<T, A>` once initialized.
    unsafe {
        obj.as_ptr().write(value);
        (ABox::from_raw_in(obj.as_ptr(), alloc), obj.cast())
    }
}

/// A vector's buffer, through the raw pointer the vector keeps (whole-block provenance).
fn vec_obj<T, A: Allocator>(v: &mut AVec<T, A>) -> NonNull<u8> {
    NonNull::new(v.as_mut_ptr()).unwrap().cast()
}

/// The allocate/allocate_zeroed sweep over every alignment and size.
fn sweep<A: Allocator, S: StatsSink>(alloc: &HeaderAlloc<A, S>, blocks: Lookup<'_>) {
    let mut id = 0;
    for &align in &ALIGNS {
        for size in sizes() {
            id += 1;
            let l = layout(size, align);
            // Dirty pass: leave a pattern and a non-null header where the next allocation of
            // this layout will probably land. Only py_obj and cached_mem are set: no callback.
            let obj = alloc.allocate(l).unwrap().cast::<u8>();
            let dirty = HeaderValues {
                free_cb: None,
                ..HeaderValues::full(id)
            };
            // SAFETY: `obj` is live with layout `l`.
            unsafe {
                fill(obj, size, id);
                set_header(obj, dirty);
                alloc.deallocate(obj, l);
            }
            assert!(take_freed().is_empty(), "callback without free_cb");

            for zeroed in [false, true] {
                let p = if zeroed {
                    alloc.allocate_zeroed(l)
                } else {
                    alloc.allocate(l)
                }
                .unwrap();
                let obj = p.cast::<u8>();
                let full = HeaderValues::full(id);
                // SAFETY: `p` is live with layout `l`; writes stay within `size` bytes.
                unsafe {
                    check_fresh(p, l, zeroed, blocks);
                    set_header(obj, full);
                    fill(obj, size, id + 1);
                    assert!(holds_pattern(obj, size, id + 1), "{l:?}: not usable");
                    assert_eq!(header_values(obj), full, "{l:?}: object clobbered header");
                    alloc.deallocate(obj, l);
                }
                assert_eq!(take_freed(), [full.cached_mem], "{l:?}: callback");
            }
        }
    }
}

#[test]
fn sweep_system() {
    let tracking = Tracking::new(System);
    let alloc = HeaderAlloc::with_inner(&tracking);
    sweep(&alloc, Some(&|a| tracking.block_at(a)));
    tracking.assert_clean(true);
}

#[cfg(feature = "mimalloc")]
#[test]
fn sweep_mimalloc() {
    let tracking = Tracking::new(tether_alloc::MiMalloc);
    let alloc = HeaderAlloc::with_inner(&tracking);
    sweep(&alloc, Some(&|a| tracking.block_at(a)));
    tracking.assert_clean(true);
}

#[test]
fn sweep_bump() {
    // One arena per alignment keeps the arena's footprint small.
    for &align in &ALIGNS {
        let bump = bumpalo::Bump::new();
        let tracking = Tracking::new(&bump);
        let alloc = HeaderAlloc::with_inner(&tracking);
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
                // SAFETY: `p` is live with layout `l`.
                unsafe {
                    check_fresh(p, l, zeroed, Some(&blocks));
                    set_header(obj, HeaderValues::full(size));
                    fill(obj, size, size);
                    assert!(holds_pattern(obj, size, size));
                    alloc.deallocate(obj, l);
                }
                assert_eq!(take_freed(), [HeaderValues::full(size).cached_mem]);
            }
        }
        tracking.assert_clean(true);
    }
}

#[test]
fn sweep_default_and_counting() {
    sweep(&HeaderAlloc::new(), None);
    let counting = HeaderAlloc::counting();
    sweep(&counting, None);
    let s = counting.stats();
    assert_eq!((s.live_blocks, s.live_bytes), (0, 0));
    assert_eq!(s.total_allocs, s.total_frees);
    assert_eq!(s.total_allocs, 3 * ALIGNS.len() * sizes().len());
    assert_eq!(s.peak_bytes, MAX_SIZE);
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Resize {
    Grow,
    GrowZeroed,
    Shrink,
}

/// Every (old align, new align) pair of a set including 8 -> 256 and 32 <-> 64 (where the
/// object's offset in its block changes), for growing and shrinking size pairs.
fn resize_matrix<A: Allocator, S: StatsSink>(alloc: &HeaderAlloc<A, S>, blocks: Lookup<'_>) {
    let aligns: &[usize] = if cfg!(miri) {
        &[1, 8, 32, 64, 4096]
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
                    let header = HeaderValues::full(id);
                    let obj = alloc.allocate(old).unwrap().cast::<u8>();
                    // SAFETY: `obj` is live with layout `old`; grow/shrink get the size
                    // relation they require; afterwards only the new object is used.
                    unsafe {
                        fill(obj, old_size, id);
                        set_header(obj, header);
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
                        assert_eq!(header_values(obj), header, "{what}: header lost");
                        let kept = old_size.min(new_size);
                        assert!(holds_pattern(obj, kept, id), "{what}: bytes lost");
                        if op == Resize::GrowZeroed {
                            let tail = obj.add(old_size);
                            assert!(is_zero(tail, new_size - old_size), "{what}: tail");
                        }
                        if let Some(blocks) = blocks {
                            let block = obj.as_ptr().addr() - offset_for(new_align);
                            assert_eq!(blocks(block), block_layout(new), "{what}: block");
                        }
                        fill(obj, new_size, id + 1);
                        assert!(holds_pattern(obj, new_size, id + 1), "{what}: not usable");
                        alloc.deallocate(obj, new);
                    }
                    assert_eq!(take_freed(), [header.cached_mem], "{what}: callback");
                }
            }
        }
    }
}

#[test]
fn resize_system() {
    let tracking = Tracking::new(System);
    let alloc = HeaderAlloc::counting_with_inner(&tracking);
    resize_matrix(&alloc, Some(&|a| tracking.block_at(a)));
    tracking.assert_clean(true);
    assert_eq!(alloc.stats().live_blocks, 0);
    assert_eq!(alloc.stats().live_bytes, 0);
}

#[cfg(feature = "mimalloc")]
#[test]
fn resize_mimalloc() {
    let tracking = Tracking::new(tether_alloc::MiMalloc);
    let alloc = HeaderAlloc::with_inner(&tracking);
    resize_matrix(&alloc, Some(&|a| tracking.block_at(a)));
    tracking.assert_clean(true);
    resize_matrix(&HeaderAlloc::new(), None);
}

#[test]
fn resize_bump() {
    let bump = bumpalo::Bump::new();
    let tracking = Tracking::new(&bump);
    let alloc = HeaderAlloc::with_inner(&tracking);
    resize_matrix(&alloc, Some(&|a| tracking.block_at(a)));
    tracking.assert_clean(true);
}

#[test]
fn resize_chain_keeps_header_and_runs_callback_once() {
    // One object walks through many layouts; the callback runs only at the final free.
    let alloc = HeaderAlloc::counting();
    let steps = [
        (8, 8),
        (100, 8),
        (100, 256),
        (5000, 256),
        (40, 16),
        (40, 4096),
        (3, 1),
        (2000, 64),
        (0, 32),
        (33, 2),
    ];
    let header = HeaderValues::full(77);
    let mut l = layout(steps[0].0, steps[0].1);
    let mut obj = alloc.allocate(l).unwrap().cast::<u8>();
    // SAFETY: `obj` is always the live object with layout `l`; each resize is chosen by the size
    // relation it requires.
    unsafe {
        set_header(obj, header);
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
            assert_eq!(header_values(obj), header, "{l:?} -> {new:?}");
            assert!(
                holds_pattern(obj, l.size().min(size), 5),
                "{l:?} -> {new:?}"
            );
            fill(obj, size, 5);
            assert_eq!(alloc.stats().live_bytes, size);
            assert_eq!(alloc.stats().live_blocks, 1);
            l = new;
        }
        assert!(take_freed().is_empty());
        alloc.deallocate(obj, l);
    }
    assert_eq!(take_freed(), [header.cached_mem]);
    assert_eq!(alloc.stats().live_blocks, 0);
}

/// The free callback runs exactly once, on deallocate, and only if both fields are set.
fn free_callback_cases<A: Allocator, S: StatsSink>(alloc: &HeaderAlloc<A, S>) {
    let full = HeaderValues::full(9);
    let cases = [
        (full, true),
        (HeaderValues { py_obj: 0, ..full }, true),
        (
            HeaderValues {
                free_cb: None,
                ..full
            },
            false,
        ),
        (
            HeaderValues {
                cached_mem: 0,
                ..full
            },
            false,
        ),
        (
            HeaderValues {
                py_obj: full.py_obj,
                ..HeaderValues::ZERO
            },
            false,
        ),
        (HeaderValues::ZERO, false),
    ];
    for &align in &[1, 16, 64, 4096] {
        for (values, runs) in cases {
            let l = layout(48, align);
            let obj = alloc.allocate(l).unwrap().cast::<u8>();
            // SAFETY: `obj` is live with layout `l` until deallocated here.
            unsafe {
                set_header(obj, values);
                alloc.deallocate(obj, l);
            }
            let expect: &[usize] = if runs { &[values.cached_mem] } else { &[] };
            assert_eq!(take_freed(), expect, "{values:?} align {align}");
        }
    }
}

#[test]
fn free_callback_system_default_counting() {
    free_callback_cases(&HeaderAlloc::with_inner(System));
    free_callback_cases(&HeaderAlloc::new());
    free_callback_cases(&HeaderAlloc::counting());
}

#[cfg(feature = "mimalloc")]
#[test]
fn free_callback_mimalloc() {
    free_callback_cases(&HeaderAlloc::with_inner(tether_alloc::MiMalloc));
}

#[test]
fn free_callback_bump() {
    // An arena never really frees, but the funnel still runs on deallocate.
    let mut bump = bumpalo::Bump::new();
    free_callback_cases(&HeaderAlloc::with_inner(&bump));
    let alloc = HeaderAlloc::with_inner(&bump);
    let (b, obj) = boxed_in(7u64, &alloc);
    // SAFETY: the box's object is live.
    unsafe { set_header(obj, HeaderValues::full(3)) };
    assert_eq!(*b, 7);
    drop(b);
    assert_eq!(take_freed(), [HeaderValues::full(3).cached_mem]);
    bump.reset();
}

#[test]
fn free_callback_runs_on_the_freeing_thread() {
    struct SendPtr(NonNull<u8>);
    // SAFETY: the pointer is only moved to the other thread, which becomes its sole user.
    unsafe impl Send for SendPtr {}
    let alloc = HeaderAlloc::counting();
    let l = layout(200, 64);
    let obj = alloc.allocate(l).unwrap().cast::<u8>();
    let header = HeaderValues::full(42);
    // SAFETY: `obj` is live.
    unsafe { set_header(obj, header) };
    let p = SendPtr(obj);
    let freed = std::thread::scope(|s| {
        s.spawn(|| {
            let p = p;
            // SAFETY: `p.0` is the live object with layout `l`; this thread now owns it.
            unsafe { alloc.deallocate(p.0, l) };
            take_freed()
        })
        .join()
        .unwrap()
    });
    assert_eq!(freed, [header.cached_mem]);
    assert!(take_freed().is_empty());
    assert_eq!(alloc.stats().live_blocks, 0);
}

/// Layouts whose block size overflows (and, natively, ones that are merely too big).
fn huge_layouts() -> Vec<Layout> {
    let max = isize::MAX as usize;
    let mut v = Vec::new();
    for align in [1usize, 8, 32, 64, 4096] {
        // The largest size a Layout of this alignment accepts: the header no longer fits.
        let largest = max + 1 - align;
        v.push(layout(largest, align));
        // The header just does not fit (block size would be isize::MAX + 1, before rounding).
        v.push(layout((max + 1 - offset_for(align)) & !(align - 1), align));
        if !cfg!(miri) {
            // Representable, but no machine has that memory: the inner allocator says no.
            v.push(layout((max / 2) & !(align - 1), align));
            v.push(layout((max & !4095) - 8192, align));
        }
    }
    v
}

fn overflow_cases<A: Allocator, S: StatsSink>(alloc: &HeaderAlloc<A, S>) {
    for l in huge_layouts() {
        assert_eq!(alloc.allocate(l), Err(AllocError), "{l:?}");
        assert_eq!(alloc.allocate_zeroed(l), Err(AllocError), "{l:?}");
        for &align in &[1, 8, 64, 4096] {
            let small = layout(16, align);
            let obj = alloc.allocate(small).unwrap().cast::<u8>();
            let header = HeaderValues::full(align);
            // SAFETY: `obj` is live with layout `small`; a failed grow leaves it so.
            unsafe {
                fill(obj, 16, align);
                set_header(obj, header);
                assert_eq!(alloc.grow(obj, small, l), Err(AllocError), "{l:?}");
                assert_eq!(alloc.grow_zeroed(obj, small, l), Err(AllocError), "{l:?}");
                assert!(
                    holds_pattern(obj, 16, align),
                    "{l:?}: failed grow lost bytes"
                );
                assert_eq!(header_values(obj), header, "{l:?}: failed grow lost header");
                assert!(take_freed().is_empty());
                alloc.deallocate(obj, small);
            }
            assert_eq!(take_freed(), [header.cached_mem]);
        }
    }
}

#[test]
fn overflow_is_alloc_error() {
    let tracking = Tracking::new(System);
    let alloc = HeaderAlloc::counting_with_inner(&tracking);
    overflow_cases(&alloc);
    tracking.assert_clean(true);
    assert_eq!(alloc.stats().live_blocks, 0);
    overflow_cases(&HeaderAlloc::new());
    #[cfg(feature = "mimalloc")]
    overflow_cases(&HeaderAlloc::with_inner(tether_alloc::MiMalloc));
    let bump = bumpalo::Bump::new();
    overflow_cases(&HeaderAlloc::with_inner(&bump));
}

#[test]
fn global_alloc_interface() {
    use core::alloc::GlobalAlloc;
    let alloc = HeaderAlloc::counting();
    for l in huge_layouts() {
        // SAFETY: `l` has a non-zero size.
        unsafe {
            assert!(alloc.alloc(l).is_null(), "{l:?}");
            assert!(alloc.alloc_zeroed(l).is_null(), "{l:?}");
        }
    }
    for &align in &[1, 16, 64, 4096] {
        let l = layout(100, align);
        let header = HeaderValues::full(align);
        // SAFETY: each pointer is the live block of the layout passed with it; realloc's new
        // sizes are non-zero; a failed realloc leaves the block live with its old layout.
        unsafe {
            let p = alloc.alloc_zeroed(l);
            let obj = NonNull::new(p).unwrap();
            assert_eq!(p.addr() % align, 0);
            assert!(is_zero(obj, 100));
            assert_eq!(header_values(obj), HeaderValues::ZERO);
            fill(obj, 100, 1);
            set_header(obj, header);
            // Too big for the header (and for Layout, at high alignments): null, block intact.
            assert!(alloc.realloc(p, l, isize::MAX as usize).is_null());
            assert!(alloc.realloc(p, l, usize::MAX - 10).is_null());
            assert!(holds_pattern(obj, 100, 1));
            let p = alloc.realloc(p, l, 5000);
            let obj = NonNull::new(p).unwrap();
            assert_eq!(p.addr() % align, 0);
            assert!(holds_pattern(obj, 100, 1));
            assert_eq!(header_values(obj), header);
            let p = alloc.realloc(p, layout(5000, align), 10);
            let obj = NonNull::new(p).unwrap();
            assert!(holds_pattern(obj, 10, 1));
            assert_eq!(header_values(obj), header);
            assert!(take_freed().is_empty());
            alloc.dealloc(p, layout(10, align));
        }
        assert_eq!(take_freed(), [header.cached_mem]);
    }
    assert_eq!(alloc.stats().live_blocks, 0);
}

/// `hashbrown::HashMap`, `Vec` (with growth) and `Box` on a `HeaderAlloc`.
fn collections<A: Allocator, S: StatsSink>(alloc: &HeaderAlloc<A, S>) {
    let n: u64 = if cfg!(miri) { 300 } else { 20_000 };
    let mut map = hashbrown::HashMap::new_in(alloc);
    for i in 0..n {
        map.insert(i, i * 3);
    }
    for i in (0..n).step_by(2) {
        assert_eq!(map.remove(&i), Some(i * 3));
    }
    map.shrink_to_fit();
    assert_eq!(map.len() as u64, n / 2);
    assert!((1..n).step_by(2).all(|i| map[&i] == i * 3));
    drop(map);

    let mut v = AVec::new_in(alloc);
    v.push(0u64);
    let header = HeaderValues::full(1234);
    // SAFETY: the vector's buffer (capacity > 0) is a live HeaderAlloc object.
    unsafe { set_header(vec_obj(&mut v), header) };
    for i in 1..n {
        let cap = v.capacity();
        v.push(i);
        if v.capacity() != cap {
            // SAFETY: as above, for the reallocated buffer.
            let now = unsafe { header_values(vec_obj(&mut v)) };
            assert_eq!(now, header, "header lost growing to {}", v.capacity());
        }
    }
    assert!(v.iter().copied().eq(0..n));
    v.truncate(10);
    v.shrink_to_fit();
    // SAFETY: as above.
    let now = unsafe { header_values(vec_obj(&mut v)) };
    assert_eq!(now, header);
    assert!(take_freed().is_empty());
    drop(v);
    assert_eq!(take_freed(), [header.cached_mem]);

    let (b, obj) = boxed_in([7u8; 300], alloc);
    assert!(b.iter().all(|&x| x == 7));
    // SAFETY: the box's object is live.
    unsafe {
        assert_eq!(header_values(obj), HeaderValues::ZERO);
        set_header(obj, HeaderValues::full(8));
    }
    drop(b);
    assert_eq!(take_freed(), [HeaderValues::full(8).cached_mem]);
}

#[test]
fn collections_system_tracked() {
    let tracking = Tracking::new(System);
    let alloc = HeaderAlloc::counting_with_inner(&tracking);
    collections(&alloc);
    tracking.assert_clean(true);
    let s = alloc.stats();
    assert_eq!((s.live_blocks, s.live_bytes), (0, 0));
    assert!(s.total_allocs > 3 && s.total_allocs == s.total_frees);
}

#[test]
fn collections_default_and_counting() {
    collections(&HeaderAlloc::new());
    let alloc = HeaderAlloc::counting();
    collections(&alloc);
    assert_eq!(alloc.stats().live_blocks, 0);
    assert_eq!(alloc.stats().live_bytes, 0);
}

#[cfg(feature = "mimalloc")]
#[test]
fn collections_mimalloc_counting() {
    let alloc = HeaderAlloc::counting_with_inner(tether_alloc::MiMalloc);
    collections(&alloc);
    assert_eq!(alloc.stats().live_blocks, 0);
}

#[test]
fn collections_bump() {
    let bump = bumpalo::Bump::new();
    let tracking = Tracking::new(&bump);
    let alloc = HeaderAlloc::counting_with_inner(&tracking);
    collections(&alloc);
    tracking.assert_clean(true);
    assert_eq!(alloc.stats().live_blocks, 0);
}

#[test]
fn stats_counters() {
    let alloc = HeaderAlloc::<System, Stats>::counting_with_inner(System);
    let zero = alloc.stats();
    assert_eq!(zero, Default::default());
    let (la, lb, lc) = (layout(10, 1), layout(20, 8), layout(4096, 64));
    let a = alloc.allocate(la).unwrap().cast::<u8>();
    let b = alloc.allocate_zeroed(lb).unwrap().cast::<u8>();
    let c = alloc.allocate(lc).unwrap().cast::<u8>();
    let s = alloc.stats();
    assert_eq!((s.live_blocks, s.live_bytes, s.peak_bytes), (3, 4126, 4126));
    assert_eq!((s.total_allocs, s.total_frees), (3, 0));
    // SAFETY: each pointer is live with the layout passed alongside it.
    unsafe {
        alloc.deallocate(c, lc);
        let s = alloc.stats();
        assert_eq!((s.live_blocks, s.live_bytes, s.peak_bytes), (2, 30, 4126));
        let a = alloc.grow(a, la, layout(1000, 256)).unwrap().cast::<u8>();
        let s = alloc.stats();
        assert_eq!((s.live_blocks, s.live_bytes), (2, 1020));
        let a = alloc
            .shrink(a, layout(1000, 256), layout(5, 4))
            .unwrap()
            .cast::<u8>();
        assert_eq!(alloc.stats().live_bytes, 25);
        alloc.deallocate(a, layout(5, 4));
        alloc.deallocate(b, lb);
    }
    let s = alloc.stats();
    assert_eq!((s.live_blocks, s.live_bytes, s.peak_bytes), (0, 0, 4126));
    assert_eq!(s.total_allocs, s.total_frees);
    // A failed allocation counts nothing.
    assert!(alloc.allocate(huge_layouts()[0]).is_err());
    assert_eq!(alloc.stats(), s);
}

#[test]
fn threads_churn_and_cross_thread_frees() {
    struct SendPtr(NonNull<u8>, Layout, HeaderValues);
    // SAFETY: each pointer is moved to exactly one other thread, which becomes its sole user.
    unsafe impl Send for SendPtr {}
    let threads = if cfg!(miri) { 2 } else { 4 };
    let rounds = if cfg!(miri) { 40 } else { 2_000 };
    let alloc = HeaderAlloc::counting();
    let (tx, rx) = std::sync::mpsc::channel::<SendPtr>();
    let freed_elsewhere = std::thread::scope(|s| {
        for t in 0..threads {
            let (alloc, tx) = (&alloc, tx.clone());
            s.spawn(move || {
                let mut x = 0x9E37_79B9_7F4A_7C15u64 ^ t as u64;
                for i in 0..rounds {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    let size = (x % 3000) as usize;
                    let align = 1 << ((x >> 32) % 9);
                    let l = layout(size, align);
                    let obj = alloc.allocate(l).unwrap().cast::<u8>();
                    let header = HeaderValues::full(t * rounds + i);
                    // SAFETY: `obj` is live with layout `l`; it is either freed here or sent
                    // to the receiver, which frees it.
                    unsafe {
                        fill(obj, size, i);
                        set_header(obj, header);
                        if i % 4 == 0 {
                            tx.send(SendPtr(obj, l, header)).unwrap();
                        } else {
                            assert!(holds_pattern(obj, size, i));
                            alloc.deallocate(obj, l);
                        }
                    }
                }
                let mine = take_freed();
                assert_eq!(mine.len(), rounds - rounds.div_ceil(4));
            });
        }
        drop(tx);
        let receiver = s.spawn(|| {
            let mut expected = Vec::new();
            for SendPtr(obj, l, header) in rx {
                // SAFETY: the sender gave up `obj`, live with layout `l`.
                unsafe {
                    assert_eq!(header_values(obj), header);
                    alloc.deallocate(obj, l);
                }
                expected.push(header.cached_mem);
            }
            (expected, take_freed())
        });
        receiver.join().unwrap()
    });
    assert_eq!(freed_elsewhere.0, freed_elsewhere.1);
    assert_eq!(freed_elsewhere.0.len(), threads * rounds.div_ceil(4));
    let s = alloc.stats();
    assert_eq!((s.live_blocks, s.live_bytes), (0, 0));
    assert_eq!(s.total_allocs, threads * rounds);
}

#[test]
fn header_of_is_pure_arithmetic() {
    let alloc = HeaderAlloc::new();
    for &align in &ALIGNS {
        let l = layout(align * 3, align);
        let obj = alloc.allocate(l).unwrap().cast::<u8>();
        // SAFETY: `obj` is live with layout `l`.
        let h = unsafe { header_of(obj) };
        assert_eq!(
            (h as *const tether_alloc::Header)
                .cast::<u8>()
                .wrapping_add(HEADER_OFFSET),
            obj.as_ptr().cast_const()
        );
        h.set_py_obj(fake(0x5550));
        // SAFETY: `obj` is still live; the same header is found again.
        assert_eq!(unsafe { header_of(obj) }.py_obj().addr(), 0x5550);
        // SAFETY: `obj` is live with layout `l`.
        unsafe { alloc.deallocate(obj, l) };
    }
}

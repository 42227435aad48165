//! Fuzz target `alloc_ops`: random sequences of `HeaderAlloc` operations against a model.
//!
//! Every input runs on each header kind (`Wide`, `Narrow`, `Bare`). Operations: `allocate`,
//! `allocate_zeroed`, `grow`, `grow_zeroed`, `shrink`, `deallocate` (through `Allocator`),
//! `alloc`, `alloc_zeroed`, `realloc`, `dealloc` (through `GlobalAlloc`), header writes (the
//! tie word detached, bound or parked; the aux word), the allocator's free callback (one of two,
//! or none), and impossible sizes (which must fail cleanly and leave the block alone). Sizes are
//! capped at 16 KiB to keep executions fast; alignments are 1..=4096.
//!
//! The model keeps, per live block, its layout, its exact expected contents and its header
//! words. After every operation it checks: alignment and length of what was handed out, the
//! header of every live block, the contents of the block touched, the allocator's live
//! counters (header bytes included), and the exact list of free-callback calls (which callback,
//! with which pointer): freeing a block whose tie word is parked calls the registered callback
//! exactly once with the untagged pointer, never on grow/shrink/realloc, never twice, and never
//! for a detached word; a bound block is detached by its owner (the model) before it is freed.

#![no_main]

use core::alloc::{GlobalAlloc, Layout};
use core::ffi::c_void;
use core::ptr::NonNull;
use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use std::cell::RefCell;
use tether_alloc::allocator_api2::alloc::Allocator;
use core::sync::atomic::Ordering::{Relaxed, Release};
use tether_alloc::{
    aux_of, offset_for, tie_of, tie_ptr, tie_tag, tie_with, Bare, FreeCallback, HeaderAlloc,
    HeaderKind, Narrow, Stats, Wide, TIE_PARKED,
};

#[cfg(not(feature = "mimalloc"))]
type Inner = std::alloc::System;
#[cfg(not(feature = "mimalloc"))]
const INNER: Inner = std::alloc::System;
#[cfg(feature = "mimalloc")]
type Inner = tether_alloc::MiMalloc;
#[cfg(feature = "mimalloc")]
const INNER: Inner = tether_alloc::MiMalloc;

/// Live blocks at most (further allocations are skipped).
const MAX_SLOTS: usize = 16;
/// Largest object size (grows are clamped to it).
const MAX_SIZE: usize = 1 << 14;
/// Largest alignment exponent: 2^12 = 4096.
const MAX_ALIGN_LOG2: u8 = 12;

/// One operation. Indices are taken modulo the number of live blocks.
#[derive(Arbitrary, Debug)]
enum Op {
    Alloc {
        size: u16,
        align: u8,
        zeroed: bool,
        global: bool,
    },
    Grow {
        slot: u8,
        extra: u16,
        align: u8,
        zeroed: bool,
    },
    Shrink {
        slot: u8,
        less: u16,
        align: u8,
    },
    Realloc {
        slot: u8,
        size: u16,
    },
    Dealloc {
        slot: u8,
        global: bool,
    },
    SetHeader {
        slot: u8,
        state: u8,
        wrapper: u8,
        aux: u8,
    },
    Fill {
        slot: u8,
        seed: u8,
    },
    SetCallback {
        which: u8,
    },
    Huge {
        align: u8,
        global: bool,
    },
    GrowHuge {
        slot: u8,
        align: u8,
        global: bool,
    },
}

// ------------------------------------------------------------------ the two free callbacks

thread_local! {
    /// Every free-callback call of the current input: (which callback, pointer).
    static CALLS: RefCell<Vec<(u8, usize)>> = const { RefCell::new(Vec::new()) };
}

unsafe extern "C" fn cb_a(mem: *mut c_void) {
    CALLS.with(|c| c.borrow_mut().push((1, mem.addr())));
}

unsafe extern "C" fn cb_b(mem: *mut c_void) {
    CALLS.with(|c| c.borrow_mut().push((2, mem.addr())));
}

/// Callback choice 1 or 2 (0: none).
fn callback(which: u8) -> Option<FreeCallback> {
    match which {
        1 => Some(cb_a),
        2 => Some(cb_b),
        _ => None,
    }
}

fn which_callback(cb: Option<FreeCallback>) -> u8 {
    match cb {
        None => 0,
        Some(f) if f as *const () == cb_a as *const () => 1,
        Some(f) if f as *const () == cb_b as *const () => 2,
        Some(_) => panic!("header holds a callback nobody stored"),
    }
}

// ------------------------------------------------------------------ the model

/// A live block and what the model expects of it.
struct Block {
    ptr: NonNull<u8>,
    layout: Layout,
    contents: Vec<u8>,
    /// The raw tie word (0: detached; `W`: bound; `W | TIE_PARKED`: parked) and the aux word,
    /// as the block's kind holds them (0 where it has no such word).
    tie: usize,
    aux: usize,
    /// Unique per allocation in this input, so header tokens of different blocks differ.
    serial: usize,
}

fn size_of_code(s: u16) -> usize {
    // Four tiers so that small sizes (and zero) are as likely as large ones.
    let s = usize::from(s);
    match s >> 14 {
        0 => s & 0x3f,
        1 => s & 0x1ff,
        2 => s & 0xfff,
        _ => s & (MAX_SIZE - 1),
    }
}

fn align_of_code(a: u8) -> usize {
    1 << (a % (MAX_ALIGN_LOG2 + 1))
}

fn pattern(seed: u8, i: usize) -> u8 {
    seed.wrapping_mul(31) ^ (i as u8).wrapping_add((i >> 8) as u8)
}

/// A nonzero, 16-aligned token for a header word (0 stays null), distinct per block and word.
fn token(serial: usize, field: usize, code: u8) -> usize {
    if code == 0 {
        0
    } else {
        (serial << 16) | (field << 12) | (usize::from(code) << 4)
    }
}

/// The tie word a `SetHeader` state code and token give: detached, bound or parked.
fn tie_word(state: u8, token: usize) -> usize {
    match (state % 3, token) {
        (_, 0) | (0, _) => 0,
        (1, w) => w,
        (_, w) => w | TIE_PARKED,
    }
}

fn addr_ptr(a: usize) -> *mut c_void {
    core::ptr::without_provenance_mut(a)
}

struct Harness<K> {
    alloc: HeaderAlloc<Inner, Stats, K>,
    blocks: Vec<Block>,
    expected_calls: Vec<(u8, usize)>,
    serial: usize,
    /// The allocator's registered callback (0: none).
    cb: u8,
}

impl<K: HeaderKind> Harness<K> {
    fn new() -> Self {
        CALLS.with(|c| c.borrow_mut().clear());
        Harness {
            alloc: HeaderAlloc::from_parts(INNER, Stats::new()),
            blocks: Vec::new(),
            expected_calls: Vec::new(),
            serial: 0,
            cb: 0,
        }
    }

    /// Frees block `b` as its owner would (a bound block is detached first) and records the
    /// callback call the free must make.
    fn free(&mut self, mut b: Block, global: bool) {
        Self::check_contents(&b);
        let global = global && (K::SIZE != 0 || b.layout.size() != 0);
        if b.tie != 0 && tie_tag(addr_ptr(b.tie)) == 0 {
            b.tie = 0;
            // SAFETY: `b.ptr` is a live block of a Wide or Narrow allocator (tie != 0).
            unsafe { tie_of(b.ptr).store(core::ptr::null_mut(), Release) };
        }
        if tie_tag(addr_ptr(b.tie)) & TIE_PARKED != 0 && self.cb != 0 {
            self.expected_calls
                .push((self.cb, tie_ptr(addr_ptr(b.tie)).addr()));
        }
        // SAFETY: live block of ours with this layout; removed from the model.
        unsafe {
            if global {
                self.alloc.dealloc(b.ptr.as_ptr(), b.layout);
            } else {
                self.alloc.deallocate(b.ptr, b.layout);
            }
        }
    }

    fn pick(&self, slot: u8) -> Option<usize> {
        (!self.blocks.is_empty()).then(|| usize::from(slot) % self.blocks.len())
    }

    /// Checks what `ptr`/`len` say against `layout`.
    fn check_handed_out(ptr: NonNull<u8>, len: usize, layout: Layout) {
        assert_eq!(
            ptr.as_ptr().addr() % layout.align(),
            0,
            "misaligned for {layout:?}"
        );
        assert!(len >= layout.size(), "short block for {layout:?}");
        if K::SIZE != 0 {
            let header = ptr.as_ptr().addr() - K::SIZE;
            assert_eq!(header % 8, 0, "header misaligned");
        }
    }

    fn check_header(b: &Block) {
        // SAFETY: `b.ptr` is a live block of our HeaderAlloc; only the words K has are read.
        unsafe {
            if K::SIZE >= 8 {
                assert_eq!(tie_of(b.ptr).load(Relaxed).addr(), b.tie, "tie word");
            }
            if K::SIZE >= 16 {
                assert_eq!(aux_of(b.ptr).load(Relaxed).addr(), b.aux, "aux word");
            }
        }
    }

    fn check_contents(b: &Block) {
        // SAFETY: the block is live and valid for `layout.size()` bytes, all of which the model
        // has written or knows to be zero.
        let bytes = unsafe { core::slice::from_raw_parts(b.ptr.as_ptr(), b.layout.size()) };
        if let Some(i) = bytes.iter().zip(&b.contents).position(|(x, y)| x != y) {
            panic!(
                "contents differ at {i} of {:?}: {} != {}",
                b.layout, bytes[i], b.contents[i]
            );
        }
    }

    fn check_all(&self) {
        for b in &self.blocks {
            Self::check_header(b);
        }
        let s = self.alloc.stats();
        assert_eq!(s.live_blocks, self.blocks.len(), "live blocks");
        let bytes: usize = self.blocks.iter().map(|b| b.layout.size()).sum();
        assert_eq!(s.live_bytes, bytes, "live bytes");
        let headers: usize = self
            .blocks
            .iter()
            .map(|b| offset_for::<K>(b.layout.align()))
            .sum();
        assert_eq!(s.header_bytes, headers, "header bytes");
        CALLS.with(|c| assert_eq!(*c.borrow(), self.expected_calls, "free-callback calls"));
    }

    /// Writes the pattern for `seed` into `from..` of the block and the model.
    fn fill(b: &mut Block, from: usize, seed: u8) {
        for i in from..b.layout.size() {
            let v = pattern(seed, i);
            // SAFETY: `i < size`: in bounds of the live block.
            unsafe { b.ptr.as_ptr().add(i).write(v) };
            b.contents[i] = v;
        }
    }

    fn run(&mut self, op: &Op) {
        match *op {
            Op::Alloc {
                size,
                align,
                zeroed,
                global,
            } => {
                if self.blocks.len() >= MAX_SLOTS {
                    return;
                }
                let layout = Layout::from_size_align(size_of_code(size), align_of_code(align))
                    .expect("small layouts are valid");
                // GlobalAlloc takes no zero-size layouts; only a Bare one passes them on as such.
                let global = global && (K::SIZE != 0 || layout.size() != 0);
                let (ptr, len) = if global {
                    // SAFETY: GlobalAlloc::alloc: a non-zero size, or a zero-size layout that
                    // a header kind turns into a real block (the header's).
                    let p = unsafe {
                        if zeroed {
                            self.alloc.alloc_zeroed(layout)
                        } else {
                            self.alloc.alloc(layout)
                        }
                    };
                    (
                        NonNull::new(p).expect("small allocation failed"),
                        layout.size(),
                    )
                } else {
                    let r = if zeroed {
                        self.alloc.allocate_zeroed(layout)
                    } else {
                        self.alloc.allocate(layout)
                    };
                    let r = r.expect("small allocation failed");
                    (r.cast::<u8>(), r.len())
                };
                Self::check_handed_out(ptr, len, layout);
                self.serial += 1;
                let mut b = Block {
                    ptr,
                    layout,
                    contents: vec![0; layout.size()],
                    tie: 0,
                    aux: 0,
                    serial: self.serial,
                };
                Self::check_header(&b); // state (a): all null
                if zeroed {
                    Self::check_contents(&b);
                } else {
                    let seed = b.serial as u8;
                    Self::fill(&mut b, 0, seed);
                }
                self.blocks.push(b);
            }
            Op::Grow {
                slot,
                extra,
                align,
                zeroed,
            } => {
                let Some(i) = self.pick(slot) else { return };
                let b = &mut self.blocks[i];
                let old = b.layout;
                let size = (old.size() + size_of_code(extra)).min(MAX_SIZE.max(old.size()));
                let new = Layout::from_size_align(size, align_of_code(align)).unwrap();
                // SAFETY: `b.ptr` is live with layout `old`; new.size() >= old.size().
                let r = unsafe {
                    if zeroed {
                        self.alloc.grow_zeroed(b.ptr, old, new)
                    } else {
                        self.alloc.grow(b.ptr, old, new)
                    }
                };
                let r = r.expect("small grow failed");
                Self::check_handed_out(r.cast(), r.len(), new);
                b.ptr = r.cast();
                b.layout = new;
                b.contents.resize(size, 0);
                Self::check_header(b); // moved with the object
                if zeroed {
                    Self::check_contents(b);
                } else {
                    // The prefix is kept; the tail is unspecified: check the prefix, then write.
                    let keep = old.size();
                    // SAFETY: the block is valid for `size >= keep` bytes.
                    let prefix = unsafe { core::slice::from_raw_parts(b.ptr.as_ptr(), keep) };
                    assert_eq!(prefix, &b.contents[..keep], "grow lost contents");
                    Self::fill(b, keep, extra as u8);
                }
                Self::check_contents(b);
            }
            Op::Shrink { slot, less, align } => {
                let Some(i) = self.pick(slot) else { return };
                let b = &mut self.blocks[i];
                let old = b.layout;
                let size = old.size() - size_of_code(less).min(old.size());
                let new = Layout::from_size_align(size, align_of_code(align)).unwrap();
                // SAFETY: `b.ptr` is live with layout `old`; new.size() <= old.size().
                let r = unsafe { self.alloc.shrink(b.ptr, old, new) }.expect("shrink failed");
                Self::check_handed_out(r.cast(), r.len(), new);
                b.ptr = r.cast();
                b.layout = new;
                b.contents.truncate(size);
                Self::check_header(b);
                Self::check_contents(b);
            }
            Op::Realloc { slot, size } => {
                let Some(i) = self.pick(slot) else { return };
                let b = &mut self.blocks[i];
                let old = b.layout;
                let size = size_of_code(size);
                if K::SIZE == 0 && (size == 0 || old.size() == 0) {
                    return; // realloc's contract: non-zero sizes (a header kind has its block)
                }
                // SAFETY: `b.ptr` came from this allocator with `old`; the new size rounded up
                // to the alignment stays far below isize::MAX.
                let p = unsafe { self.alloc.realloc(b.ptr.as_ptr(), old, size) };
                let p = NonNull::new(p).expect("small realloc failed");
                let new = Layout::from_size_align(size, old.align()).unwrap();
                Self::check_handed_out(p, size, new);
                b.ptr = p;
                b.layout = new;
                let keep = old.size().min(size);
                // SAFETY: valid for `size >= keep` bytes.
                let prefix = unsafe { core::slice::from_raw_parts(b.ptr.as_ptr(), keep) };
                assert_eq!(prefix, &b.contents[..keep], "realloc lost contents");
                b.contents.resize(size, 0);
                Self::fill(b, keep, size as u8);
                Self::check_header(b);
            }
            Op::Dealloc { slot, global } => {
                let Some(i) = self.pick(slot) else { return };
                let b = self.blocks.swap_remove(i);
                self.free(b, global);
            }
            Op::SetHeader {
                slot,
                state,
                wrapper,
                aux,
            } => {
                let Some(i) = self.pick(slot) else { return };
                let b = &mut self.blocks[i];
                let tie = tie_word(state, token(b.serial, 1, wrapper));
                let aux = token(b.serial, 2, aux);
                // SAFETY: live block of ours; only the words K has are written.
                unsafe {
                    if K::SIZE >= 8 {
                        let t = addr_ptr(tie);
                        tie_of(b.ptr).store(tie_with(tie_ptr(t), tie_tag(t)), Release);
                        b.tie = tie;
                    }
                    if K::SIZE >= 16 {
                        aux_of(b.ptr).store(addr_ptr(aux).cast(), Release);
                        b.aux = aux;
                    }
                }
            }
            Op::Fill { slot, seed } => {
                let Some(i) = self.pick(slot) else { return };
                Self::fill(&mut self.blocks[i], 0, seed);
            }
            Op::SetCallback { which } => {
                self.cb = which % 3;
                self.alloc.set_free_callback(callback(self.cb));
                assert_eq!(which_callback(self.alloc.free_callback()), self.cb);
            }
            // Bare hands impossible sizes straight to the inner allocator, which libFuzzer
            // (malloc limit) and ASan report as fatal: only the header kinds are probed.
            Op::Huge { .. } | Op::GrowHuge { .. } if K::SIZE == 0 => return,
            Op::Huge { align, global } => {
                let align = align_of_code(align);
                // The largest valid Layout for `align`, and the smallest size whose header no
                // longer fits: both fail in the layout arithmetic, before the inner allocator
                // (which, when a huge request's result is only null-tested, the optimizer may
                // assume to succeed).
                let max = isize::MAX as usize;
                let tight = (max + 1 - offset_for::<K>(align)) & !(align - 1);
                for size in [max + 1 - align, tight] {
                    let Ok(layout) = Layout::from_size_align(size, align) else {
                        continue;
                    };
                    if global {
                        // SAFETY: GlobalAlloc::alloc with a valid layout; null is the answer.
                        let p = unsafe { self.alloc.alloc(layout) };
                        assert!(p.is_null(), "huge alloc succeeded");
                        // SAFETY: as above.
                        let p = unsafe { self.alloc.alloc_zeroed(layout) };
                        assert!(p.is_null(), "huge alloc_zeroed succeeded");
                    } else {
                        assert!(self.alloc.allocate(layout).is_err());
                        assert!(self.alloc.allocate_zeroed(layout).is_err());
                    }
                }
            }
            Op::GrowHuge {
                slot,
                align,
                global,
            } => {
                let Some(i) = self.pick(slot) else { return };
                let b = &self.blocks[i];
                let old = b.layout;
                if global {
                    // Too big for a Layout at all, then too big with the header.
                    for size in [usize::MAX - 7, isize::MAX as usize + 1 - old.align()] {
                        // SAFETY: live block of ours with `old`; the contract's size limit is
                        // what is being probed: realloc must refuse with null, not touch it.
                        let p = unsafe { self.alloc.realloc(b.ptr.as_ptr(), old, size) };
                        assert!(p.is_null(), "huge realloc succeeded");
                    }
                } else {
                    let a = align_of_code(align);
                    let new = Layout::from_size_align(isize::MAX as usize + 1 - a, a).unwrap();
                    // SAFETY: live block with `old`; new.size() >= old.size().
                    let r = unsafe { self.alloc.grow(b.ptr, old, new) };
                    assert!(r.is_err(), "huge grow succeeded");
                    // SAFETY: as above.
                    let r = unsafe { self.alloc.grow_zeroed(b.ptr, old, new) };
                    assert!(r.is_err(), "huge grow_zeroed succeeded");
                }
                // The block is untouched.
                Self::check_header(b);
                Self::check_contents(b);
            }
        }
        self.check_all();
    }

    /// Frees everything left (through the funnel) and checks the totals.
    fn finish(mut self) {
        for b in core::mem::take(&mut self.blocks) {
            Self::check_header(&b);
            self.free(b, false);
        }
        self.check_all();
        let s = self.alloc.stats();
        assert_eq!((s.live_blocks, s.live_bytes, s.header_bytes), (0, 0, 0), "leak");
        assert_eq!(s.total_allocs, s.total_frees, "allocs != frees");
    }
}

fn run_kind<K: HeaderKind>(ops: &[Op]) {
    let mut h = Harness::<K>::new();
    for op in ops {
        h.run(op);
    }
    h.finish();
}

fuzz_target!(|ops: Vec<Op>| {
    run_kind::<Wide>(&ops);
    run_kind::<Narrow>(&ops);
    run_kind::<Bare>(&ops);
});

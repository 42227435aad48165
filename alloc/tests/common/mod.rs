//! Shared helpers for the `tether-alloc` integration tests.
//!
//! * [`ALIGNS`] and [`sizes`]: the alignment and size sweeps (smaller under Miri).
//! * [`fill`] / [`holds_pattern`] / [`is_zero`]: write and check object bytes with `memcpy` and
//!   `memcmp` against shared buffers, so that megabyte objects stay cheap in debug builds and
//!   under Miri (no per-byte loops).
//! * [`record_free`] / [`take_freed`]: a free callback that records, per thread, every pointer it
//!   is called with; [`recording`] builds an allocator of any kind with it registered.
//! * [`HeaderValues`]: the header words of an object of any kind (tie word and, for `Wide`, the
//!   aux word) as plain values; [`header_values`] / [`set_header`] read and write them.
//! * [`Tracking`]: an inner allocator that wraps another and checks that every block handed back
//!   (deallocate, grow, shrink) is live and comes with the exact layout it was obtained with; it
//!   also lets a test look a block up by address, to check the header arithmetic.
//!
//! Invariant of the helpers: every pointer passed to `fill`, `holds_pattern`, `is_zero`,
//! `header_values` and `set_header` is a live object of at least the given size (and, for the
//! header helpers, of the kind named).

#![allow(dead_code)]

use allocator_api2::alloc::{AllocError, Allocator, Layout};
use core::cell::RefCell;
use core::ffi::c_void;
use core::ptr::{self, NonNull};
use core::sync::atomic::Ordering::{Relaxed, Release};
use std::collections::BTreeMap;
use std::sync::{Mutex, OnceLock};
use tether_alloc::{
    aux_of, tie_of, tie_ptr, tie_tag, tie_with, FreeCallback, HeaderAlloc, HeaderKind, TIE_PARKED,
};
/// Every power-of-two alignment from 1 to 4096.
pub const ALIGNS: [usize; 13] = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096];

/// The largest object size any test uses.
pub const MAX_SIZE: usize = if cfg!(miri) { 1 << 16 } else { 1 << 20 };

/// The representative size sweep from 0 to 1 MiB (to 64 KiB under Miri).
pub fn sizes() -> Vec<usize> {
    [
        0,
        1,
        7,
        8,
        15,
        16,
        17,
        31,
        32,
        33,
        63,
        64,
        255,
        992,
        1023,
        1024,
        4095,
        4096,
        65536,
        1 << 20,
    ]
    .into_iter()
    .filter(|&s| s <= MAX_SIZE)
    .collect()
}

/// How many distinct pattern seeds there are (a seed is an offset into the pattern buffer).
pub const SEEDS: usize = 251;

fn pattern() -> &'static [u8] {
    static PATTERN: OnceLock<Vec<u8>> = OnceLock::new();
    PATTERN.get_or_init(|| {
        // A period (251) that is prime and not a power of two, so a shifted copy never matches.
        let period: Vec<u8> = (0..SEEDS).map(|i| (i * 7 + 3) as u8).collect();
        let mut v = Vec::with_capacity(MAX_SIZE + SEEDS);
        while v.len() < MAX_SIZE + SEEDS {
            v.extend_from_slice(&period);
        }
        v
    })
}

fn zeros() -> &'static [u8] {
    static ZEROS: OnceLock<Vec<u8>> = OnceLock::new();
    ZEROS.get_or_init(|| vec![0u8; MAX_SIZE])
}

/// Fills `size` bytes at `obj` with the pattern for `seed`.
///
/// # Safety
/// `obj` is valid for writes of `size <= MAX_SIZE` bytes.
pub unsafe fn fill(obj: NonNull<u8>, size: usize, seed: usize) {
    let src = &pattern()[seed % SEEDS..][..size];
    // SAFETY: the caller guarantees `obj` is writable for `size` bytes; `src` is a distinct
    // buffer of the same length.
    unsafe { ptr::copy_nonoverlapping(src.as_ptr(), obj.as_ptr(), size) };
}

/// Whether `size` bytes at `obj` hold the pattern for `seed`.
///
/// # Safety
/// `obj` is valid for reads of `size <= MAX_SIZE` initialized bytes.
pub unsafe fn holds_pattern(obj: NonNull<u8>, size: usize, seed: usize) -> bool {
    // SAFETY: the caller guarantees `size` initialized, readable bytes at `obj`.
    let got = unsafe { core::slice::from_raw_parts(obj.as_ptr(), size) };
    got == &pattern()[seed % SEEDS..][..size]
}

/// Whether `size` bytes at `obj` are all zero.
///
/// # Safety
/// `obj` is valid for reads of `size <= MAX_SIZE` initialized bytes.
pub unsafe fn is_zero(obj: NonNull<u8>, size: usize) -> bool {
    // SAFETY: the caller guarantees `size` initialized, readable bytes at `obj`.
    let got = unsafe { core::slice::from_raw_parts(obj.as_ptr(), size) };
    got == &zeros()[..size]
}

/// A pointer with the address `addr` and no provenance: a recognizable header value that is
/// never dereferenced (fine under `-Zmiri-strict-provenance`).
pub fn fake(addr: usize) -> *mut c_void {
    ptr::without_provenance_mut(addr)
}

thread_local! {
    static FREED: RefCell<Vec<usize>> = const { RefCell::new(Vec::new()) };
}

/// The free callback used by the tests: records the address it is called with on this thread.
///
/// # Safety
/// None needed (it never dereferences `p`); `unsafe` only to match [`FreeCallback`].
pub unsafe extern "C" fn record_free(p: *mut c_void) {
    FREED.with(|f| f.borrow_mut().push(p.addr()));
}

/// [`record_free`] as the allocator's callback type.
pub const RECORD: FreeCallback = record_free;

/// Takes (and clears) the addresses [`record_free`] saw on this thread.
pub fn take_freed() -> Vec<usize> {
    FREED.with(|f| core::mem::take(&mut *f.borrow_mut()))
}

/// An allocator of kind `K` on `inner`, reporting to `stats`, with [`RECORD`] registered.
pub fn recording<A, S, K: HeaderKind>(inner: A, stats: S) -> HeaderAlloc<A, S, K> {
    let alloc = HeaderAlloc::from_parts(inner, stats);
    alloc.set_free_callback(Some(RECORD));
    alloc
}

/// An object's header words, as plain values: the raw tie word (address and tag bits) and the
/// aux word. A kind without a word reads it as 0 ([`HeaderValues::for_kind`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeaderValues {
    /// The tie word's raw value (`Wide`, `Narrow`).
    pub tie: usize,
    /// The aux word (`Wide`).
    pub aux: usize,
}

impl HeaderValues {
    /// State (a): everything null.
    pub const ZERO: HeaderValues = HeaderValues { tie: 0, aux: 0 };

    /// The wrapper address used for object number `id` (8-aligned, never dereferenced).
    pub fn wrapper(id: usize) -> usize {
        0x1000_0000 + id * 16
    }

    /// Object `id` parked (`W | TIE_PARKED`), with an aux value: freeing it runs the callback.
    pub fn parked(id: usize) -> HeaderValues {
        HeaderValues {
            tie: Self::wrapper(id) | TIE_PARKED,
            aux: 0x2000_0000 + id * 16,
        }
    }

    /// Object `id` bound to its wrapper (`W`), with an aux value: must be detached before it
    /// is freed.
    pub fn bound(id: usize) -> HeaderValues {
        HeaderValues {
            tie: Self::wrapper(id),
            ..Self::parked(id)
        }
    }

    /// Object `id` detached (tie 0) with an aux value: freeing it runs no callback.
    pub fn detached(id: usize) -> HeaderValues {
        HeaderValues {
            tie: 0,
            ..Self::parked(id)
        }
    }

    /// These values as kind `K` holds them: `Narrow` has no aux word, `Bare` no words at all.
    pub fn for_kind<K: HeaderKind>(self) -> HeaderValues {
        HeaderValues {
            tie: if K::SIZE >= 8 { self.tie } else { 0 },
            aux: if K::SIZE >= 16 { self.aux } else { 0 },
        }
    }

    /// What freeing an object with these values (as kind `K` holds them) passes to the free
    /// callback: the untagged pointer of a parked word.
    pub fn freed<K: HeaderKind>(self) -> Vec<usize> {
        let tie = fake(self.for_kind::<K>().tie);
        if tie_tag(tie) & TIE_PARKED != 0 {
            vec![tie_ptr(tie).addr()]
        } else {
            Vec::new()
        }
    }
}

/// The header words of a live object of kind `K`.
///
/// # Safety
/// `obj` is a live object of a `HeaderAlloc<_, _, K>`.
pub unsafe fn header_values<K: HeaderKind>(obj: NonNull<u8>) -> HeaderValues {
    // SAFETY: forwarded to the caller; only the words kind K has are read.
    unsafe {
        HeaderValues {
            tie: if K::SIZE >= 8 {
                tie_of(obj).load(Relaxed).addr()
            } else {
                0
            },
            aux: if K::SIZE >= 16 {
                aux_of(obj).load(Relaxed).addr()
            } else {
                0
            },
        }
    }
}

/// Sets the header words of a live object of kind `K` (the words it has).
///
/// # Safety
/// `obj` is a live object of a `HeaderAlloc<_, _, K>`.
pub unsafe fn set_header<K: HeaderKind>(obj: NonNull<u8>, v: HeaderValues) {
    // SAFETY: forwarded to the caller; only the words kind K has are written.
    unsafe {
        if K::SIZE >= 8 {
            let tie = fake(v.tie);
            tie_of(obj).store(tie_with(tie_ptr(tie), tie_tag(tie)), Release);
        }
        if K::SIZE >= 16 {
            aux_of(obj).store(fake(v.aux).cast(), Release);
        }
    }
}

/// The raw `K::SIZE` header bytes before `obj`, as (up to two) words, lowest address first.
///
/// # Safety
/// `obj` is a live object of a `HeaderAlloc<_, _, K>`.
pub unsafe fn raw_header_words<K: HeaderKind>(obj: NonNull<u8>) -> Vec<usize> {
    (0..K::SIZE / 8)
        .map(|i| {
            // SAFETY: the header words (initialized, 8-aligned) sit in the K::SIZE bytes before
            // a live object; reading pointer bytes as integers just drops their provenance.
            unsafe { obj.as_ptr().sub(K::SIZE - 8 * i).cast::<usize>().read() }
        })
        .collect()
}

/// An inner allocator that checks how its blocks come back.
///
/// Every block handed out is recorded with its layout; `deallocate`, `grow` and `shrink` must
/// name a live block with exactly that layout, or a fault is recorded (not a panic, so that a
/// fault found inside a destructor still reports cleanly). [`Tracking::assert_clean`] fails the
/// test on any fault. Zero-size blocks (which only a `Bare` allocator asks for) are checked for
/// alignment but not recorded: an inner allocator may hand out one dangling address for many of
/// them, or the address of a live block.
#[derive(Debug)]
pub struct Tracking<A> {
    inner: A,
    live: Mutex<BTreeMap<usize, Layout>>,
    faults: Mutex<Vec<String>>,
}

impl<A> Tracking<A> {
    /// Wraps `inner`.
    pub fn new(inner: A) -> Self {
        Tracking {
            inner,
            live: Mutex::new(BTreeMap::new()),
            faults: Mutex::new(Vec::new()),
        }
    }

    /// The layout of the live block starting at `addr`, if any.
    pub fn block_at(&self, addr: usize) -> Option<Layout> {
        self.live.lock().unwrap().get(&addr).copied()
    }

    /// How many blocks are live.
    pub fn live_blocks(&self) -> usize {
        self.live.lock().unwrap().len()
    }

    /// Panics if any block came back wrong, or (with `expect_empty`) if any block is still live.
    pub fn assert_clean(&self, expect_empty: bool) {
        let faults = self.faults.lock().unwrap();
        assert!(faults.is_empty(), "inner-allocator faults: {faults:?}");
        if expect_empty {
            let live = self.live.lock().unwrap();
            assert!(live.is_empty(), "blocks still live: {live:?}");
        }
    }

    fn fault(&self, msg: String) {
        self.faults.lock().unwrap().push(msg);
    }

    fn insert(&self, block: NonNull<[u8]>, layout: Layout) {
        let addr = block.cast::<u8>().as_ptr().addr();
        if block.len() < layout.size() || addr % layout.align() != 0 {
            self.fault(format!(
                "inner returned a bad block {addr:#x} for {layout:?}"
            ));
        }
        if layout.size() == 0 {
            return;
        }
        if let Some(old) = self.live.lock().unwrap().insert(addr, layout) {
            self.fault(format!(
                "block {addr:#x} handed out twice ({old:?}, {layout:?})"
            ));
        }
    }

    fn check(&self, ptr: NonNull<u8>, layout: Layout, what: &str) {
        if layout.size() == 0 {
            return;
        }
        let addr = ptr.as_ptr().addr();
        match self.block_at(addr) {
            Some(l) if l == layout => {}
            other => self.fault(format!(
                "{what} of {addr:#x} with {layout:?}, but it is {other:?}"
            )),
        }
    }

    fn remove(&self, ptr: NonNull<u8>, layout: Layout) {
        if layout.size() != 0 {
            self.live.lock().unwrap().remove(&ptr.as_ptr().addr());
        }
    }
}

// SAFETY: every call is forwarded to `inner` unchanged (which upholds the contract); the
// bookkeeping only observes addresses and layouts.
unsafe impl<A: Allocator> Allocator for Tracking<A> {
    fn allocate(&self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        let block = self.inner.allocate(layout)?;
        self.insert(block, layout);
        Ok(block)
    }

    fn allocate_zeroed(&self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        let block = self.inner.allocate_zeroed(layout)?;
        self.insert(block, layout);
        Ok(block)
    }

    unsafe fn deallocate(&self, ptr: NonNull<u8>, layout: Layout) {
        self.check(ptr, layout, "deallocate");
        self.remove(ptr, layout);
        // SAFETY: forwarded to the caller.
        unsafe { self.inner.deallocate(ptr, layout) }
    }

    unsafe fn grow(
        &self,
        ptr: NonNull<u8>,
        old: Layout,
        new: Layout,
    ) -> Result<NonNull<[u8]>, AllocError> {
        self.check(ptr, old, "grow");
        // SAFETY: forwarded to the caller.
        let block = unsafe { self.inner.grow(ptr, old, new) }?;
        self.remove(ptr, old);
        self.insert(block, new);
        Ok(block)
    }

    unsafe fn grow_zeroed(
        &self,
        ptr: NonNull<u8>,
        old: Layout,
        new: Layout,
    ) -> Result<NonNull<[u8]>, AllocError> {
        self.check(ptr, old, "grow_zeroed");
        // SAFETY: forwarded to the caller.
        let block = unsafe { self.inner.grow_zeroed(ptr, old, new) }?;
        self.remove(ptr, old);
        self.insert(block, new);
        Ok(block)
    }

    unsafe fn shrink(
        &self,
        ptr: NonNull<u8>,
        old: Layout,
        new: Layout,
    ) -> Result<NonNull<[u8]>, AllocError> {
        self.check(ptr, old, "shrink");
        // SAFETY: forwarded to the caller.
        let block = unsafe { self.inner.shrink(ptr, old, new) }?;
        self.remove(ptr, old);
        self.insert(block, new);
        Ok(block)
    }
}

/// One `#[test]` per header kind for each generic test function: `name::{wide, narrow, bare}`,
/// each calling `f::<Kind>()`. Attributes before a name (e.g. `#[cfg(...)]`) apply to its module.
#[macro_export]
macro_rules! per_kind {
    ($($(#[$m:meta])* $name:ident => $f:ident),* $(,)?) => {$(
        $(#[$m])*
        mod $name {
            #[test]
            fn wide() {
                super::$f::<tether_alloc::Wide>()
            }
            #[test]
            fn narrow() {
                super::$f::<tether_alloc::Narrow>()
            }
            #[test]
            fn bare() {
                super::$f::<tether_alloc::Bare>()
            }
        }
    )*};
}

//! Shared helpers for the `tether-alloc` integration tests.
//!
//! * [`ALIGNS`] and [`sizes`]: the alignment and size sweeps (smaller under Miri).
//! * [`fill`] / [`holds_pattern`] / [`is_zero`]: write and check object bytes with `memcpy` and
//!   `memcmp` against shared buffers, so that megabyte objects stay cheap in debug builds and
//!   under Miri (no per-byte loops).
//! * [`record_free`] / [`take_freed`]: a free callback that records, per thread, every pointer it
//!   is called with.
//! * [`Tracking`]: an inner allocator that wraps another and checks that every block handed back
//!   (deallocate, grow, shrink) is live and comes with the exact layout it was obtained with; it
//!   also lets a test look a block up by address, to check the header arithmetic.
//!
//! Invariant of the helpers: every pointer passed to `fill`, `holds_pattern`, `is_zero` and
//! `header_values` is a live object of at least the given size.

#![allow(dead_code)]

use allocator_api2::alloc::{AllocError, Allocator, Layout};
use core::cell::RefCell;
use core::ffi::c_void;
use core::ptr::{self, NonNull};
use std::collections::BTreeMap;
use std::sync::{Mutex, OnceLock};
use tether_alloc::{header_of, FreeCallback, Header};

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

/// [`record_free`] as the header's callback type.
pub const RECORD: FreeCallback = record_free;

/// Takes (and clears) the addresses [`record_free`] saw on this thread.
pub fn take_freed() -> Vec<usize> {
    FREED.with(|f| core::mem::take(&mut *f.borrow_mut()))
}

/// The header's three fields, as plain values for comparisons.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeaderValues {
    /// `py_obj`'s address.
    pub py_obj: usize,
    /// `cached_mem`'s address.
    pub cached_mem: usize,
    /// Whether `free_cb` is [`record_free`] (`Some(true)`), another callback, or unset.
    pub free_cb: Option<bool>,
}

impl HeaderValues {
    /// State (a): everything null.
    pub const ZERO: HeaderValues = HeaderValues {
        py_obj: 0,
        cached_mem: 0,
        free_cb: None,
    };

    /// A distinct, fully set header for object number `id` (callback: [`record_free`]).
    pub fn full(id: usize) -> HeaderValues {
        HeaderValues {
            py_obj: 0x1000_0000 + id * 16,
            cached_mem: 0x2000_0000 + id * 16,
            free_cb: Some(true),
        }
    }

    /// Reads the header of `h`.
    pub fn read(h: &Header) -> HeaderValues {
        HeaderValues {
            py_obj: h.py_obj().addr(),
            cached_mem: h.cached_mem().addr(),
            free_cb: h.free_cb().map(|f| ptr::fn_addr_eq(f, RECORD)),
        }
    }

    /// Writes these values into `h` (`free_cb: Some(false)` is not supported).
    pub fn write(&self, h: &Header) {
        assert_ne!(self.free_cb, Some(false));
        h.set_py_obj(fake(self.py_obj));
        h.set_cached_mem(fake(self.cached_mem));
        h.set_free_cb(self.free_cb.map(|_| RECORD));
    }
}

/// The header values of a live object.
///
/// # Safety
/// `obj` is a live `HeaderAlloc` object.
pub unsafe fn header_values(obj: NonNull<u8>) -> HeaderValues {
    // SAFETY: forwarded to the caller.
    HeaderValues::read(unsafe { header_of(obj) })
}

/// Sets the header of a live object.
///
/// # Safety
/// `obj` is a live `HeaderAlloc` object.
pub unsafe fn set_header(obj: NonNull<u8>, v: HeaderValues) {
    // SAFETY: forwarded to the caller.
    v.write(unsafe { header_of(obj) });
}

/// The raw 24 header bytes before `obj`, as three words.
///
/// # Safety
/// `obj` is a live `HeaderAlloc` object.
pub unsafe fn raw_header_words(obj: NonNull<u8>) -> [usize; 3] {
    // SAFETY: the header (three initialized, 8-aligned words) sits HEADER_OFFSET bytes before
    // a live object; reading pointer bytes as integers just drops their provenance.
    unsafe {
        obj.as_ptr()
            .sub(tether_alloc::HEADER_OFFSET)
            .cast::<[usize; 3]>()
            .read()
    }
}

/// An inner allocator that checks how its blocks come back.
///
/// Every block handed out is recorded with its layout; `deallocate`, `grow` and `shrink` must
/// name a live block with exactly that layout, or a fault is recorded (not a panic, so that a
/// fault found inside a destructor still reports cleanly). [`Tracking::assert_clean`] fails the
/// test on any fault.
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
        if let Some(old) = self.live.lock().unwrap().insert(addr, layout) {
            self.fault(format!(
                "block {addr:#x} handed out twice ({old:?}, {layout:?})"
            ));
        }
    }

    fn check(&self, ptr: NonNull<u8>, layout: Layout, what: &str) {
        let addr = ptr.as_ptr().addr();
        match self.block_at(addr) {
            Some(l) if l == layout => {}
            other => self.fault(format!(
                "{what} of {addr:#x} with {layout:?}, but it is {other:?}"
            )),
        }
    }

    fn remove(&self, ptr: NonNull<u8>) {
        self.live.lock().unwrap().remove(&ptr.as_ptr().addr());
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
        self.remove(ptr);
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
        self.remove(ptr);
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
        self.remove(ptr);
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
        self.remove(ptr);
        self.insert(block, new);
        Ok(block)
    }
}

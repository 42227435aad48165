//! [`HeaderAlloc`]: the allocator that reserves a header of kind `K` before every object.
//!
//! Invariants (in addition to those of [`crate::header`]):
//! 1. Every block comes from `inner` with layout `block_layout::<K>(object_layout)` and goes
//!    back to `inner` with the same layout (or, after grow/shrink, that of the new object
//!    layout).
//! 2. `deallocate` runs the free funnel once per block, before the block goes back to `inner`
//!    (`K` = [`Wide`] or [`Narrow`]; [`Bare`](crate::Bare) has none): a tie word tagged
//!    [`TIE_PARKED`] is swapped to null and the untagged pointer passed to the free callback,
//!    if one is registered. Grow/shrink move the header with the object and do not run the
//!    funnel: the object lives on.
//! 3. `free_cb` is null or a [`FreeCallback`] cast to `*mut ()`; it is stored with Release and
//!    loaded with Acquire.
//! 4. Nothing here panics or aborts on bad input: impossible layouts are `AllocError`. Freeing
//!    an object whose tie word is still bound or claimed is the owner's bug, checked in debug
//!    builds only (`cfg!(debug_assertions)`, before the block goes): a panic through
//!    `Allocator`, an abort through `GlobalAlloc` (which must not unwind). Release builds leave
//!    such a word alone and free the block.

mod api;

use crate::header::{
    offset_for, tie_of, tie_ptr, tie_tag, FreeCallback, HeaderKind, TieWord, Wide, TIE_PARKED,
};
use crate::inner::{DefaultInner, DEFAULT_INNER};
use crate::stats::{CountingSink, NoStats, Stats, StatsSink, StatsSnapshot};
use allocator_api2::alloc::Allocator;
use core::alloc::Layout;
use core::ffi::c_void;
use core::marker::PhantomData;
use core::ptr::{self, NonNull};
use core::sync::atomic::{AtomicPtr, Ordering};

/// An allocator that reserves a header of kind `K` before every object.
///
/// `A` is the inner allocator (mimalloc by default), `S` the statistics sink ([`NoStats`] by
/// default: compiled out; [`Stats`] counts), `K` the header kind: [`Wide`] (16 bytes, the
/// default), [`Narrow`](crate::Narrow) (8) or [`Bare`](crate::Bare) (none).
///
/// ```
/// use allocator_api2::vec::Vec;
/// use tether_alloc::HeaderAlloc;
///
/// let alloc = HeaderAlloc::new();
/// let mut v = Vec::new_in(&alloc);
/// v.extend_from_slice(&[1u32, 2, 3]);
/// assert_eq!(v.iter().sum::<u32>(), 6);
/// ```
///
/// As the process-wide allocator of an embedding app (any kind; here the 8-byte header):
///
/// ```
/// use tether_alloc::{DefaultInner, HeaderAlloc, Narrow, NoStats, DEFAULT_INNER};
/// #[global_allocator]
/// static GLOBAL: HeaderAlloc<DefaultInner, NoStats, Narrow> =
///     HeaderAlloc::from_parts(DEFAULT_INNER, NoStats);
/// # fn main() { let b = Box::new(5); assert_eq!(*b, 5); }
/// ```
#[derive(Debug)]
pub struct HeaderAlloc<A = DefaultInner, S = NoStats, K = Wide> {
    inner: A,
    stats: S,
    /// Null or a `FreeCallback` (invariant 3).
    free_cb: AtomicPtr<()>,
    _kind: PhantomData<K>,
}

impl HeaderAlloc<DefaultInner, NoStats> {
    /// A [`Wide`] header allocator on the default inner allocator, counting nothing.
    pub const fn new() -> Self {
        HeaderAlloc::from_parts(DEFAULT_INNER, NoStats)
    }
}

impl HeaderAlloc<DefaultInner, Stats> {
    /// A [`Wide`] header allocator on the default inner allocator that keeps [`Stats`].
    ///
    /// ```
    /// use allocator_api2::boxed::Box;
    /// use tether_alloc::{HeaderAlloc, HEADER_OFFSET};
    /// let alloc = HeaderAlloc::counting();
    /// let b = Box::new_in([0u8; 40], &alloc);
    /// assert_eq!(alloc.stats().live_bytes, 40);
    /// assert_eq!(alloc.stats().header_bytes, HEADER_OFFSET);
    /// drop(b);
    /// assert_eq!(alloc.stats().live_blocks, 0);
    /// ```
    pub const fn counting() -> Self {
        HeaderAlloc::from_parts(DEFAULT_INNER, Stats::new())
    }
}

impl<A> HeaderAlloc<A, NoStats> {
    /// A [`Wide`] header allocator on `inner`, counting nothing.
    ///
    /// ```
    /// use allocator_api2::boxed::Box;
    /// use tether_alloc::HeaderAlloc;
    /// let bump = bumpalo::Bump::new();
    /// let alloc = HeaderAlloc::with_inner(&bump);
    /// let b = Box::new_in(7u64, &alloc);
    /// assert_eq!(*b, 7);
    /// ```
    pub const fn with_inner(inner: A) -> Self {
        HeaderAlloc::from_parts(inner, NoStats)
    }
}

impl<A> HeaderAlloc<A, Stats> {
    /// A [`Wide`] header allocator on `inner` that keeps [`Stats`]. (Other kinds:
    /// [`from_parts`](HeaderAlloc::from_parts)`(inner, Stats::new())`.)
    pub const fn counting_with_inner(inner: A) -> Self {
        HeaderAlloc::from_parts(inner, Stats::new())
    }
}

impl<A, S: CountingSink, K: HeaderKind> HeaderAlloc<A, S, K> {
    /// The current counters (a counting sink: [`Stats`] or [`ShardedStats`](crate::ShardedStats)): object bytes in `live_bytes`/`peak_bytes`, the bytes reserved
    /// before the live objects in `header_bytes` (0 for [`Bare`](crate::Bare)).
    ///
    /// ```
    /// use allocator_api2::boxed::Box;
    /// use std::alloc::System;
    /// use tether_alloc::{Bare, HeaderAlloc, Stats};
    /// let alloc = HeaderAlloc::<System, Stats, Bare>::from_parts(System, Stats::new());
    /// let b = Box::new_in([1u64; 4], &alloc);
    /// assert_eq!((alloc.stats().live_bytes, alloc.stats().header_bytes), (32, 0));
    /// # drop(b);
    /// ```
    pub fn stats(&self) -> StatsSnapshot {
        let mut snap = self.stats.snapshot().unwrap_or_default();
        // The sink counts only the header bytes beyond the kind's fixed size (over-aligned
        // blocks), so the common allocation touches no header counter; add the fixed part.
        snap.header_bytes = snap
            .header_bytes
            .saturating_add(snap.live_blocks.saturating_mul(K::SIZE));
        snap
    }
}

impl<A, S, K: HeaderKind> HeaderAlloc<A, S, K> {
    /// A header allocator of kind `K` on `inner`, reporting to `stats`, with no free callback.
    ///
    /// ```
    /// use std::alloc::System;
    /// use tether_alloc::{HeaderAlloc, Narrow, NoStats};
    /// static NARROW: HeaderAlloc<System, NoStats, Narrow> = HeaderAlloc::from_parts(System, NoStats);
    /// ```
    pub const fn from_parts(inner: A, stats: S) -> Self {
        HeaderAlloc {
            inner,
            stats,
            free_cb: AtomicPtr::new(ptr::null_mut()),
            _kind: PhantomData,
        }
    }

    /// The inner allocator.
    pub fn inner(&self) -> &A {
        &self.inner
    }

    /// Registers (or, with `None`, clears) the callback the free funnel calls with the parked
    /// pointer of a freed object (see [`FreeCallback`]). Meant to be set once, before objects
    /// are parked; a parked object freed later gets whichever callback is registered then
    /// (Release here, Acquire in the funnel: the callback's own setup is visible to it).
    ///
    /// ```
    /// use allocator_api2::alloc::{Allocator, Layout};
    /// use core::ffi::c_void;
    /// use core::sync::atomic::{AtomicUsize, Ordering::*};
    /// use tether_alloc::{tie_of, tie_with, HeaderAlloc, TIE_PARKED};
    ///
    /// static RELEASED: AtomicUsize = AtomicUsize::new(0);
    /// unsafe extern "C" fn release(mem: *mut c_void) {
    ///     RELEASED.store(mem.addr(), SeqCst);
    /// }
    /// let alloc = HeaderAlloc::new();
    /// alloc.set_free_callback(Some(release));
    /// let l = Layout::new::<u64>();
    /// let obj = alloc.allocate(l).unwrap().cast::<u8>();
    /// let parked = core::ptr::without_provenance_mut(0x4000);
    /// // SAFETY: `obj` is a live Wide object; it is freed once, with its layout.
    /// unsafe {
    ///     tie_of(obj).store(tie_with(parked, TIE_PARKED), Release);
    ///     alloc.deallocate(obj, l);
    /// }
    /// assert_eq!(RELEASED.load(SeqCst), 0x4000);
    /// ```
    pub fn set_free_callback(&self, cb: Option<FreeCallback>) {
        let raw = cb.map_or(ptr::null_mut(), |f| f as *mut ());
        self.free_cb.store(raw, Ordering::Release);
    }

    /// The registered free callback, if any (Acquire).
    #[inline]
    pub fn free_callback(&self) -> Option<FreeCallback> {
        let raw = self.free_cb.load(Ordering::Acquire);
        if raw.is_null() {
            None
        } else {
            // SAFETY: invariant 3: the only non-null values stored are `FreeCallback`s cast to
            // `*mut ()` (set_free_callback); function and data pointers have the same size here.
            Some(unsafe { core::mem::transmute::<*mut (), FreeCallback>(raw) })
        }
    }
}

impl<A: Allocator, S: StatsSink, K: HeaderKind> HeaderAlloc<A, S, K> {
    /// Frees a live object: the free funnel (invariant 2), then the block goes back to `inner`.
    /// `ABORT`: a misuse found in a debug build (invariant 4) aborts (`GlobalAlloc`) instead of
    /// panicking (`Allocator`).
    ///
    /// The fast path is one Relaxed load and a bit test (nothing parked: no read-modify-write);
    /// a parked word takes the cold [`free_parked`](Self::free_parked) as a tail call.
    ///
    /// # Safety
    /// `ptr` is a live object of this allocator with `layout`, no longer used by anyone else:
    /// every access to its header happens-before this call.
    #[inline(always)]
    unsafe fn free_object<const ABORT: bool>(&self, ptr: NonNull<u8>, layout: Layout) {
        if K::SIZE != 0 {
            // SAFETY: K is Wide or Narrow and `ptr` is live (caller): header invariant 1.
            let tie = unsafe { tie_of(ptr) };
            // Relaxed is exact: every store to the word happens-before the free (caller), so
            // this load reads the latest one.
            let word = tie.load(Ordering::Relaxed);
            if tie_tag(word) & TIE_PARKED != 0 {
                // SAFETY: forwarded to the caller.
                return unsafe { self.free_parked::<ABORT>(ptr, layout, word) };
            }
            if cfg!(debug_assertions) && !word.is_null() {
                misuse::<ABORT>();
            }
        }
        // SAFETY: forwarded to the caller; the funnel had nothing to do.
        unsafe { self.free_block(ptr, layout) }
    }

    /// The funnel's slow path, then the free: swaps the parked word to null and hands its
    /// pointer to the free callback, exactly once per parked pointer (the swap takes it out
    /// first).
    ///
    /// # Safety
    /// As for `free_object`; `word` is the parked word just loaded from the object's tie word.
    #[cold]
    #[inline(never)]
    unsafe fn free_parked<const ABORT: bool>(
        &self,
        ptr: NonNull<u8>,
        layout: Layout,
        word: *mut c_void,
    ) {
        if cfg!(debug_assertions) && (tie_tag(word) != TIE_PARKED || tie_ptr(word).is_null()) {
            misuse::<ABORT>(); // claimed (busy) while being freed, or a parked null
        }
        // SAFETY: K is Wide or Narrow (a parked word was read) and `ptr` is live (caller).
        let tie = unsafe { tie_of(ptr) };
        // AcqRel: acquire what the parker published with the word; release our take.
        let word = tie.swap(ptr::null_mut(), Ordering::AcqRel);
        let mem = tie_ptr(word);
        if tie_tag(word) & TIE_PARKED != 0 && !mem.is_null() {
            if let Some(cb) = self.free_callback() {
                // SAFETY: the callback and the parked pointer were both set by the allocator's
                // owner, who promised (FreeCallback) that this call is valid once the object
                // dies.
                unsafe { cb(mem) };
            }
        }
        // SAFETY: forwarded to the caller; the funnel has run.
        unsafe { self.free_block(ptr, layout) }
    }
}

/// Freeing an object whose tie word is bound or claimed (invariant 4, debug builds): a panic
/// through `Allocator`, an abort through `GlobalAlloc` (a global allocator must not unwind).
#[cold]
#[inline(never)]
fn misuse<const ABORT: bool>() -> ! {
    if ABORT {
        std::process::abort()
    }
    panic!("freed an object whose tie word is bound or claimed")
}

impl<A: Default, S: Default, K: HeaderKind> Default for HeaderAlloc<A, S, K> {
    fn default() -> Self {
        HeaderAlloc::from_parts(A::default(), S::default())
    }
}

/// The block start for an object at `obj` with alignment `align`.
///
/// # Safety
/// `obj` was placed by this module, under kind `K`, for an object of that alignment.
#[inline(always)]
unsafe fn block_of<K: HeaderKind>(obj: NonNull<u8>, align: usize) -> NonNull<u8> {
    // SAFETY: header invariant 3: the block starts offset_for::<K>(align) bytes before.
    unsafe { obj.sub(offset_for::<K>(align)) }
}

/// The object within a block, as a slice of the object's size.
///
/// # Safety
/// `block` is a live block of at least `block_layout::<K>(layout)` size.
#[inline(always)]
unsafe fn object_in<K: HeaderKind>(block: NonNull<[u8]>, layout: Layout) -> NonNull<[u8]> {
    // SAFETY: offset_for::<K>(align) + size <= block length by the caller's guarantee.
    let obj = unsafe { block.cast::<u8>().add(offset_for::<K>(layout.align())) };
    NonNull::slice_from_raw_parts(obj, layout.size())
}

/// Writes the null header (state (a); aux word null for `Wide`) before a fresh object.
///
/// # Safety
/// `obj` lies at `offset_for::<K>(align)` in a live block (so `K::SIZE` bytes before it are in
/// the block and 8-aligned).
#[inline(always)]
unsafe fn init_header<K: HeaderKind>(obj: NonNull<u8>) {
    // SAFETY: header invariants 1 and 2: the words are inside the block, 8-aligned.
    unsafe {
        if K::SIZE >= 8 {
            obj.as_ptr().sub(8).cast::<TieWord>().write(TieWord::new());
        }
        if K::SIZE >= 16 {
            let aux = obj.as_ptr().sub(16).cast::<AtomicPtr<()>>();
            aux.write(AtomicPtr::new(ptr::null_mut()));
        }
    }
}

impl<A, S: StatsSink, K: HeaderKind> HeaderAlloc<A, S, K> {
    #[inline(always)]
    fn count_alloc(&self, layout: Layout) {
        // Only the bytes beyond K::SIZE (0 unless over-aligned): see `stats`.
        self.stats
            .on_alloc(layout.size(), offset_for::<K>(layout.align()) - K::SIZE);
    }

    #[inline(always)]
    fn count_free(&self, layout: Layout) {
        self.stats
            .on_free(layout.size(), offset_for::<K>(layout.align()) - K::SIZE);
    }
}

//! [`HeaderAlloc`]: the allocator that places a [`Header`] before every object.
//!
//! Invariants (in addition to those of [`crate::header`]):
//! 1. Every block comes from `inner` with layout `block_layout(object_layout)` and goes back to
//!    `inner` with the same layout (or, after grow/shrink, the layout of the new object layout).
//! 2. `deallocate` runs the free funnel ([`Header::release_cached`]) exactly once per block, before
//!    the block is returned to `inner`. Grow/shrink move the header with the object and do not run
//!    the funnel: the object lives on.
//! 3. Nothing here panics or aborts on bad input: impossible layouts are `AllocError`.

use crate::header::{block_layout, offset_for, Header, HEADER_OFFSET};
use crate::inner::{DefaultInner, DEFAULT_INNER};
use crate::stats::{NoStats, Stats, StatsSink, StatsSnapshot};
use allocator_api2::alloc::{AllocError, Allocator};
use core::alloc::Layout;
use core::ptr::NonNull;

/// An allocator that reserves a [`Header`] in the [`HEADER_OFFSET`] bytes before every object.
///
/// `A` is the inner allocator (mimalloc by default), `S` the statistics sink ([`NoStats`] by
/// default: compiled out; [`Stats`] counts).
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
/// As the process-wide allocator of an embedding app:
///
/// ```
/// use tether_alloc::HeaderAlloc;
/// #[global_allocator]
/// static GLOBAL: HeaderAlloc = HeaderAlloc::new();
/// # fn main() { let b = Box::new(5); assert_eq!(*b, 5); }
/// ```
#[derive(Debug, Default)]
pub struct HeaderAlloc<A = DefaultInner, S = NoStats> {
    inner: A,
    stats: S,
}

impl HeaderAlloc<DefaultInner, NoStats> {
    /// A header allocator on the default inner allocator, counting nothing.
    pub const fn new() -> Self {
        HeaderAlloc {
            inner: DEFAULT_INNER,
            stats: NoStats,
        }
    }
}

impl HeaderAlloc<DefaultInner, Stats> {
    /// A header allocator on the default inner allocator that keeps [`Stats`].
    ///
    /// ```
    /// use allocator_api2::boxed::Box;
    /// use tether_alloc::HeaderAlloc;
    /// let alloc = HeaderAlloc::counting();
    /// let b = Box::new_in([0u8; 40], &alloc);
    /// assert_eq!(alloc.stats().live_bytes, 40);
    /// drop(b);
    /// assert_eq!(alloc.stats().live_blocks, 0);
    /// ```
    pub const fn counting() -> Self {
        HeaderAlloc {
            inner: DEFAULT_INNER,
            stats: Stats::new(),
        }
    }
}

impl<A> HeaderAlloc<A, NoStats> {
    /// A header allocator on `inner`, counting nothing.
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
        HeaderAlloc {
            inner,
            stats: NoStats,
        }
    }
}

impl<A> HeaderAlloc<A, Stats> {
    /// A header allocator on `inner` that keeps [`Stats`].
    pub const fn counting_with_inner(inner: A) -> Self {
        HeaderAlloc {
            inner,
            stats: Stats::new(),
        }
    }

    /// The current counters (bytes are object bytes, headers excluded; each live block also
    /// holds `HEADER_OFFSET` or more bytes of header).
    pub fn stats(&self) -> StatsSnapshot {
        self.stats.snapshot().unwrap_or_default()
    }
}

impl<A, S> HeaderAlloc<A, S> {
    /// The inner allocator.
    pub fn inner(&self) -> &A {
        &self.inner
    }
}

/// The block start for an object at `obj` with alignment `align`.
///
/// # Safety
/// `obj` was placed by this module for an object of that alignment.
#[inline(always)]
unsafe fn block_of(obj: NonNull<u8>, align: usize) -> NonNull<u8> {
    // SAFETY: invariant 2 of `crate::header`: the block starts offset_for(align) bytes before.
    unsafe { obj.sub(offset_for(align)) }
}

/// The object pointer within a block, as a slice of the object's size.
///
/// # Safety
/// `block` is a live block of at least `block_layout(layout)` size.
#[inline(always)]
unsafe fn object_in(block: NonNull<[u8]>, layout: Layout) -> NonNull<[u8]> {
    // SAFETY: offset_for(align) + size <= block length by the caller's guarantee.
    let obj = unsafe { block.cast::<u8>().add(offset_for(layout.align())) };
    NonNull::slice_from_raw_parts(obj, layout.size())
}

impl<A: Allocator, S: StatsSink> HeaderAlloc<A, S> {
    /// Moves an object to a block for `new`, for grow/shrink.
    ///
    /// # Safety
    /// `ptr` is a live object of this allocator with layout `old`; `zero` only with
    /// `new.size() >= old.size()`.
    unsafe fn relocate(
        &self,
        ptr: NonNull<u8>,
        old: Layout,
        new: Layout,
        zero: bool,
    ) -> Result<NonNull<[u8]>, AllocError> {
        let old_block_layout = block_layout(old).ok_or(AllocError)?;
        let new_block_layout = block_layout(new).ok_or(AllocError)?;
        // SAFETY: `ptr` is ours with layout `old` (caller), so its block is recoverable.
        let old_block = unsafe { block_of(ptr, old.align()) };
        let moved = if offset_for(old.align()) == offset_for(new.align()) {
            // Same offset: the inner allocator moves header and object together.
            // SAFETY: `old_block` is a live inner block with `old_block_layout`; the size
            // relation between block layouts is the same as between the object layouts.
            unsafe {
                if new.size() >= old.size() && zero {
                    self.inner
                        .grow_zeroed(old_block, old_block_layout, new_block_layout)
                } else if new.size() >= old.size() {
                    self.inner
                        .grow(old_block, old_block_layout, new_block_layout)
                } else {
                    self.inner
                        .shrink(old_block, old_block_layout, new_block_layout)
                }
            }?
        } else {
            // The offset changes with the alignment: copy header and object by hand.
            let fresh = if zero {
                self.inner.allocate_zeroed(new_block_layout)?
            } else {
                self.inner.allocate(new_block_layout)?
            };
            // SAFETY: `fresh` is valid for new_block_layout; the header and min(old, new)
            // object bytes are read from the live old block; the blocks do not overlap. The old
            // block is freed without the funnel (invariant 2): its header now lives in `fresh`.
            unsafe {
                let dst = object_in(fresh, new).cast::<u8>();
                core::ptr::copy_nonoverlapping(
                    ptr.as_ptr().sub(HEADER_OFFSET),
                    dst.as_ptr().sub(HEADER_OFFSET),
                    HEADER_OFFSET + old.size().min(new.size()),
                );
                self.inner.deallocate(old_block, old_block_layout);
            }
            fresh
        };
        self.stats.on_free(old.size());
        self.stats.on_alloc(new.size());
        // SAFETY: `moved` is a live block of new_block_layout.
        Ok(unsafe { object_in(moved, new) })
    }
}

// SAFETY: blocks come from `inner` (which upholds the Allocator contract) and are handed out
// offset by offset_for(align), which is a multiple of `align`, so the object is aligned and valid
// for `layout.size()` bytes while the block lives; `deallocate`/`grow`/`shrink` recover the block
// by the same arithmetic and return it with the layout it was obtained with. Zero-size layouts
// get a real block (the header must exist), which the contract allows. Cloning is not provided,
// so "memory from one allocator instance" is simply this instance.
unsafe impl<A: Allocator, S: StatsSink> Allocator for HeaderAlloc<A, S> {
    #[inline]
    fn allocate(&self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        let block = self
            .inner
            .allocate(block_layout(layout).ok_or(AllocError)?)?;
        // SAFETY: `block` is valid for block_layout(layout); the header slot is the 8-aligned
        // HEADER_OFFSET bytes before the object, inside the block.
        let obj = unsafe {
            let obj = object_in(block, layout);
            Header::init(obj.cast::<u8>().as_ptr().sub(HEADER_OFFSET).cast());
            obj
        };
        self.stats.on_alloc(layout.size());
        Ok(obj)
    }

    #[inline]
    fn allocate_zeroed(&self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        let block = self
            .inner
            .allocate_zeroed(block_layout(layout).ok_or(AllocError)?)?;
        self.stats.on_alloc(layout.size());
        // SAFETY: as in `allocate`; the zeroed header already is state (a) (null pointers).
        Ok(unsafe { object_in(block, layout) })
    }

    #[inline]
    unsafe fn deallocate(&self, ptr: NonNull<u8>, layout: Layout) {
        // SAFETY: the caller guarantees `ptr` is a live object of ours with `layout`: its header
        // is valid, and the funnel runs once here, before the block goes (invariant 2).
        unsafe { crate::header::header_of(ptr).release_cached() };
        self.stats.on_free(layout.size());
        // SAFETY: `layout` was accepted by `allocate`, so block_layout is Some; the block is
        // returned with the layout it was obtained with (invariant 1).
        unsafe {
            let block_layout = block_layout(layout).unwrap_unchecked();
            self.inner
                .deallocate(block_of(ptr, layout.align()), block_layout)
        }
    }

    #[inline]
    unsafe fn grow(
        &self,
        ptr: NonNull<u8>,
        old: Layout,
        new: Layout,
    ) -> Result<NonNull<[u8]>, AllocError> {
        // SAFETY: forwarded to the caller.
        unsafe { self.relocate(ptr, old, new, false) }
    }

    #[inline]
    unsafe fn grow_zeroed(
        &self,
        ptr: NonNull<u8>,
        old: Layout,
        new: Layout,
    ) -> Result<NonNull<[u8]>, AllocError> {
        // SAFETY: forwarded to the caller, who guarantees new.size() >= old.size().
        unsafe { self.relocate(ptr, old, new, true) }
    }

    #[inline]
    unsafe fn shrink(
        &self,
        ptr: NonNull<u8>,
        old: Layout,
        new: Layout,
    ) -> Result<NonNull<[u8]>, AllocError> {
        // SAFETY: forwarded to the caller.
        unsafe { self.relocate(ptr, old, new, false) }
    }
}

// SAFETY: `GlobalAlloc` is the `Allocator` implementation above with null for `AllocError`;
// nothing unwinds (no code path here panics). Do not install a `HeaderAlloc` whose inner
// allocator is `Global`: that would recurse into itself.
unsafe impl<A: Allocator, S: StatsSink> core::alloc::GlobalAlloc for HeaderAlloc<A, S> {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        self.allocate(layout)
            .map_or(core::ptr::null_mut(), |p| p.cast::<u8>().as_ptr())
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        self.allocate_zeroed(layout)
            .map_or(core::ptr::null_mut(), |p| p.cast::<u8>().as_ptr())
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: GlobalAlloc's contract: `ptr` was returned by `alloc*` with `layout`, so it is
        // non-null and ours.
        unsafe { self.deallocate(NonNull::new_unchecked(ptr), layout) }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let Ok(new) = Layout::from_size_align(new_size, layout.align()) else {
            return core::ptr::null_mut();
        };
        // SAFETY: GlobalAlloc's contract: `ptr` is a live non-null block of ours with `layout`;
        // grow/shrink are chosen by the size relation they require.
        let moved = unsafe {
            let ptr = NonNull::new_unchecked(ptr);
            if new_size >= layout.size() {
                self.grow(ptr, layout, new)
            } else {
                self.shrink(ptr, layout, new)
            }
        };
        moved.map_or(core::ptr::null_mut(), |p| p.cast::<u8>().as_ptr())
    }
}

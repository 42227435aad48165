//! `allocator_api2`'s `Allocator` and core's `GlobalAlloc` for every [`HeaderAlloc`] kind.

use super::{block_of, init_header, object_in, HeaderAlloc};
use crate::header::{block_layout, offset_for, HeaderKind};
use crate::stats::StatsSink;
use allocator_api2::alloc::{AllocError, Allocator};
use core::alloc::Layout;
use core::ptr::NonNull;

impl<A: Allocator, S: StatsSink, K: HeaderKind> HeaderAlloc<A, S, K> {
    /// Moves an object to a block for `new`, for grow/shrink, header words included.
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
        let old_block_layout = block_layout::<K>(old).ok_or(AllocError)?;
        let new_block_layout = block_layout::<K>(new).ok_or(AllocError)?;
        // SAFETY: `ptr` is ours with layout `old` (caller), so its block is recoverable.
        let old_block = unsafe { block_of::<K>(ptr, old.align()) };
        let moved = if offset_for::<K>(old.align()) == offset_for::<K>(new.align()) {
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
            // The offset changes with the alignment (K::SIZE != 0 here: Bare's offset is
            // always 0): copy the K::SIZE header bytes and the object bytes by hand.
            let fresh = if zero {
                self.inner.allocate_zeroed(new_block_layout)?
            } else {
                self.inner.allocate(new_block_layout)?
            };
            // SAFETY: `fresh` is valid for new_block_layout, whose object sits at least K::SIZE
            // bytes in; the header and min(old, new) object bytes are read from the live old
            // block; the blocks do not overlap. The old block is freed without the funnel
            // (invariant 2): its header words now live in `fresh`.
            unsafe {
                let dst = object_in::<K>(fresh, new).cast::<u8>();
                core::ptr::copy_nonoverlapping(
                    ptr.as_ptr().sub(K::SIZE),
                    dst.as_ptr().sub(K::SIZE),
                    K::SIZE + old.size().min(new.size()),
                );
                self.inner.deallocate(old_block, old_block_layout);
            }
            fresh
        };
        self.count_free(old);
        self.count_alloc(new);
        // SAFETY: `moved` is a live block of new_block_layout.
        Ok(unsafe { object_in::<K>(moved, new) })
    }

    /// Returns a funnelled object's block to `inner`.
    ///
    /// # Safety
    /// `ptr` is a live object of this allocator with `layout`, and the funnel has run.
    #[inline(always)]
    pub(super) unsafe fn free_block(&self, ptr: NonNull<u8>, layout: Layout) {
        self.count_free(layout);
        // SAFETY: `layout` was accepted by `allocate`, so block_layout is Some; the block is
        // returned with the layout it was obtained with (invariant 1).
        unsafe {
            let block_layout = block_layout::<K>(layout).unwrap_unchecked();
            self.inner
                .deallocate(block_of::<K>(ptr, layout.align()), block_layout)
        }
    }
}

// SAFETY: blocks come from `inner` (which upholds the Allocator contract) and are handed out
// offset by offset_for::<K>(align), a multiple of `align`, so the object is aligned and valid
// for `layout.size()` bytes while the block lives; `deallocate`/`grow`/`shrink` recover the block
// by the same arithmetic and return it with the layout it was obtained with. With a header,
// zero-size layouts get a real block (the header must exist), which the contract allows; Bare
// passes every layout through unchanged. Cloning is not provided, so "memory from one
// allocator instance" is simply this instance.
unsafe impl<A: Allocator, S: StatsSink, K: HeaderKind> Allocator for HeaderAlloc<A, S, K> {
    #[inline]
    fn allocate(&self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        let block = self
            .inner
            .allocate(block_layout::<K>(layout).ok_or(AllocError)?)?;
        // SAFETY: `block` is valid for block_layout::<K>(layout); the object sits at
        // offset_for::<K>(align) in it, with the header words before it inside the block.
        let obj = unsafe {
            let obj = object_in::<K>(block, layout);
            init_header::<K>(obj.cast());
            obj
        };
        self.count_alloc(layout);
        Ok(obj)
    }

    #[inline]
    fn allocate_zeroed(&self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        let block = self
            .inner
            .allocate_zeroed(block_layout::<K>(layout).ok_or(AllocError)?)?;
        self.count_alloc(layout);
        // SAFETY: as in `allocate`; the zeroed header already is state (a) (null words).
        Ok(unsafe { object_in::<K>(block, layout) })
    }

    #[inline]
    unsafe fn deallocate(&self, ptr: NonNull<u8>, layout: Layout) {
        // SAFETY: the caller guarantees `ptr` is a live object of ours with `layout`, which
        // nobody else uses any more (a debug build panics on a bound word, before the free).
        unsafe { self.free_object::<false>(ptr, layout) }
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
// nothing unwinds (no code path here panics: the debug check of `dealloc` aborts instead). Do
// not install a `HeaderAlloc` whose inner allocator is `Global`: that would recurse into itself.
unsafe impl<A: Allocator, S: StatsSink, K: HeaderKind> core::alloc::GlobalAlloc
    for HeaderAlloc<A, S, K>
{
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
        // non-null and ours, and its user is done with it (a debug build aborts on a bound word).
        unsafe { self.free_object::<true>(NonNull::new_unchecked(ptr), layout) }
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

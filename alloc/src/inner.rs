//! Inner allocators: where a [`HeaderAlloc`](crate::HeaderAlloc) gets its blocks.
//!
//! Any `allocator_api2::alloc::Allocator` works as an inner allocator: [`MiMalloc`] (the
//! default, when the `mimalloc` feature is on), `std::alloc::System` (under Miri and sanitizers),
//! `allocator_api2::alloc::Global` (the `global-inner` feature: whatever `#[global_allocator]` the
//! program installs, e.g. `dhat::Alloc` for heap profiles), or `&bumpalo::Bump` (an arena: frees
//! are no-ops, but the free funnel still runs).
//!
//! With `global-inner`, a `HeaderAlloc` on the default inner allocator must never itself be the
//! `#[global_allocator]`: its every allocation would call the global allocator, i.e. itself,
//! without end. Use `HeaderAlloc<MiMalloc>` or `HeaderAlloc<System>` for that.

#[cfg(feature = "mimalloc")]
pub use self::mi::MiMalloc;

/// The inner allocator `HeaderAlloc::new()` uses: `allocator_api2::alloc::Global` with the
/// `global-inner` feature (it wins over `mimalloc`; never make such a `HeaderAlloc` the
/// `#[global_allocator]`), else [`MiMalloc`] with the `mimalloc` feature, else
/// `std::alloc::System` (the configuration Miri runs).
#[cfg(feature = "global-inner")]
pub type DefaultInner = allocator_api2::alloc::Global;
/// The inner allocator `HeaderAlloc::new()` uses: `allocator_api2::alloc::Global` with the
/// `global-inner` feature (it wins over `mimalloc`; never make such a `HeaderAlloc` the
/// `#[global_allocator]`), else [`MiMalloc`] with the `mimalloc` feature, else
/// `std::alloc::System` (the configuration Miri runs).
#[cfg(all(feature = "mimalloc", not(feature = "global-inner")))]
pub type DefaultInner = MiMalloc;
/// The inner allocator `HeaderAlloc::new()` uses: `allocator_api2::alloc::Global` with the
/// `global-inner` feature (it wins over `mimalloc`; never make such a `HeaderAlloc` the
/// `#[global_allocator]`), else [`MiMalloc`] with the `mimalloc` feature, else
/// `std::alloc::System` (the configuration Miri runs).
#[cfg(not(any(feature = "mimalloc", feature = "global-inner")))]
pub type DefaultInner = std::alloc::System;

/// The default inner allocator as a constant, for `const` constructors of statics.
#[cfg(feature = "global-inner")]
pub const DEFAULT_INNER: DefaultInner = allocator_api2::alloc::Global;
/// The default inner allocator as a constant, for `const` constructors of statics.
#[cfg(all(feature = "mimalloc", not(feature = "global-inner")))]
pub const DEFAULT_INNER: DefaultInner = MiMalloc;
/// The default inner allocator as a constant, for `const` constructors of statics.
#[cfg(not(any(feature = "mimalloc", feature = "global-inner")))]
pub const DEFAULT_INNER: DefaultInner = std::alloc::System;

#[cfg(feature = "mimalloc")]
mod mi {
    use allocator_api2::alloc::{AllocError, Allocator};
    use core::alloc::Layout;
    use core::ffi::c_void;
    use core::ptr::NonNull;
    use libmimalloc_sys as ffi;

    /// mimalloc's guaranteed minimum alignment (`MI_MAX_ALIGN_SIZE`) for blocks of at least
    /// that size.
    const MI_MIN_ALIGN: usize = 16;

    /// mimalloc as an `Allocator` and a `GlobalAlloc`, calling `libmimalloc-sys` directly.
    ///
    /// For `align <= 16` (and `align <= size`) it calls plain `mi_malloc`/`mi_free`, mimalloc's
    /// fastest path; only larger alignments take `mi_malloc_aligned`, with sizes up to 1 KiB
    /// rounded up to a power of two so that it stays on its fast path (see `aligned_request`).
    ///
    /// ```
    /// use allocator_api2::alloc::Allocator;
    /// use core::alloc::Layout;
    /// use tether_alloc::MiMalloc;
    /// let l = Layout::from_size_align(48, 64).unwrap();
    /// let p = MiMalloc.allocate(l).unwrap().cast::<u8>();
    /// assert_eq!(p.as_ptr() as usize % 64, 0);
    /// // SAFETY: allocated above with `l`.
    /// unsafe { MiMalloc.deallocate(p, l) };
    /// ```
    ///
    /// As the process allocator (the raw baseline of the drop-in benchmark):
    ///
    /// ```
    /// #[global_allocator]
    /// static GLOBAL: tether_alloc::MiMalloc = tether_alloc::MiMalloc;
    /// # fn main() { assert_eq!(vec![1u8; 3].len(), 3); }
    /// ```
    #[derive(Debug, Default, Clone, Copy)]
    pub struct MiMalloc;

    #[inline(always)]
    fn plain(layout: Layout) -> bool {
        layout.align() <= MI_MIN_ALIGN && layout.align() <= layout.size()
    }

    /// mimalloc's largest "small" size (`MI_SMALL_SIZE_MAX`, 128 words): the sizes its aligned
    /// fast path serves.
    const MI_SMALL_SIZE_MAX: usize = 128 * core::mem::size_of::<usize>();

    /// The size to request from `mi_malloc_aligned` / `mi_zalloc_aligned` for a non-plain layout.
    ///
    /// mimalloc serves an aligned request from its fast path only when the next free block of the
    /// size class is already aligned, which it guarantees for power-of-two classes (up to 4 KiB);
    /// otherwise it over-allocates `size + align - 1` and flags the page as holding interior
    /// pointers, which makes that `mi_free` slower as well (2 to 2.5 times the cost of the pair,
    /// see docs/benchmarks.md). A header makes almost every over-aligned block a
    /// non-power-of-two size (`align + object size`), so small sizes are rounded up to the next
    /// power of two. The block is then at most twice the request, and often no larger than the
    /// over-allocation would have been (`align + size + align - 1`, rounded to a size class).
    #[inline(always)]
    fn aligned_request(layout: Layout) -> usize {
        if layout.size() <= MI_SMALL_SIZE_MAX {
            layout.size().next_power_of_two()
        } else {
            layout.size()
        }
    }

    #[inline(always)]
    fn wrap(p: *mut c_void, size: usize) -> Result<NonNull<[u8]>, AllocError> {
        NonNull::new(p.cast::<u8>())
            .map(|p| NonNull::slice_from_raw_parts(p, size))
            .ok_or(AllocError)
    }

    // SAFETY: mimalloc returns blocks valid for the requested size and alignment until freed,
    // does not move them, and accepts any of its blocks in `mi_free`/`mi_realloc*`, from any
    // thread. Layout sizes are at most isize::MAX by construction.
    unsafe impl Allocator for MiMalloc {
        #[inline]
        fn allocate(&self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
            // SAFETY: mi_malloc/mi_malloc_aligned accept any size; align is a power of two.
            let p = unsafe {
                if plain(layout) {
                    ffi::mi_malloc(layout.size())
                } else {
                    ffi::mi_malloc_aligned(aligned_request(layout), layout.align())
                }
            };
            wrap(p, layout.size())
        }

        #[inline]
        fn allocate_zeroed(&self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
            // SAFETY: as in `allocate`.
            let p = unsafe {
                if plain(layout) {
                    ffi::mi_zalloc(layout.size())
                } else {
                    ffi::mi_zalloc_aligned(aligned_request(layout), layout.align())
                }
            };
            wrap(p, layout.size())
        }

        #[inline]
        unsafe fn deallocate(&self, ptr: NonNull<u8>, _layout: Layout) {
            // SAFETY: the caller guarantees `ptr` is a live block of this allocator.
            unsafe { ffi::mi_free(ptr.as_ptr().cast()) }
        }

        #[inline]
        unsafe fn grow(
            &self,
            ptr: NonNull<u8>,
            old: Layout,
            new: Layout,
        ) -> Result<NonNull<[u8]>, AllocError> {
            // SAFETY: forwarded to the caller (live block, new.size() >= old.size()).
            unsafe { self.move_block(ptr, old, new) }
        }

        #[inline]
        unsafe fn grow_zeroed(
            &self,
            ptr: NonNull<u8>,
            old: Layout,
            new: Layout,
        ) -> Result<NonNull<[u8]>, AllocError> {
            // SAFETY: forwarded to the caller.
            let block = unsafe { self.move_block(ptr, old, new) }?;
            let p = block.cast::<u8>().as_ptr();
            // SAFETY: the new block is valid for new.size() >= old.size() bytes.
            unsafe { p.add(old.size()).write_bytes(0, new.size() - old.size()) };
            Ok(block)
        }

        #[inline]
        unsafe fn shrink(
            &self,
            ptr: NonNull<u8>,
            old: Layout,
            new: Layout,
        ) -> Result<NonNull<[u8]>, AllocError> {
            // SAFETY: forwarded to the caller (live block, new.size() <= old.size()).
            unsafe { self.move_block(ptr, old, new) }
        }
    }

    // SAFETY: the `Allocator` implementation above with null for `AllocError` (same blocks, same
    // alignment rules); nothing here panics or unwinds.
    unsafe impl core::alloc::GlobalAlloc for MiMalloc {
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
        unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
            // SAFETY: GlobalAlloc's contract: `ptr` is a live block of this allocator.
            unsafe { ffi::mi_free(ptr.cast()) }
        }

        #[inline]
        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            let Ok(new) = Layout::from_size_align(new_size, layout.align()) else {
                return core::ptr::null_mut();
            };
            // SAFETY: GlobalAlloc's contract: `ptr` is a live, non-null block of ours with
            // `layout`; on failure it is left intact.
            unsafe { self.move_block(NonNull::new_unchecked(ptr), layout, new) }
                .map_or(core::ptr::null_mut(), |p| p.cast::<u8>().as_ptr())
        }
    }

    impl MiMalloc {
        /// Asks mimalloc to return the memory it keeps for reuse (freed pages not yet
        /// purged) to the operating system: `mi_collect(force)`. Useful before measuring RSS.
        ///
        /// ```
        /// tether_alloc::MiMalloc::collect(true);
        /// ```
        pub fn collect(force: bool) {
            // SAFETY: mi_collect takes no pointers and may be called at any time.
            unsafe { ffi::mi_collect(force) }
        }

        /// Moves a block to a new layout, keeping the common prefix of its bytes.
        ///
        /// # Safety
        /// `ptr` is a live block of this allocator allocated with `old`.
        #[inline]
        unsafe fn move_block(
            &self,
            ptr: NonNull<u8>,
            old: Layout,
            new: Layout,
        ) -> Result<NonNull<[u8]>, AllocError> {
            if new.align() == old.align() || plain(new) {
                // SAFETY: `ptr` is a live mimalloc block; on failure mimalloc leaves it intact.
                let p = unsafe {
                    if plain(new) {
                        ffi::mi_realloc(ptr.as_ptr().cast(), new.size())
                    } else {
                        ffi::mi_realloc_aligned(ptr.as_ptr().cast(), new.size(), new.align())
                    }
                };
                return wrap(p, new.size());
            }
            // Alignment changes to a non-plain one: allocate, copy, free.
            let fresh = self.allocate(new)?;
            // SAFETY: both blocks are valid for min(old, new) bytes and do not overlap.
            unsafe {
                core::ptr::copy_nonoverlapping(
                    ptr.as_ptr(),
                    fresh.cast::<u8>().as_ptr(),
                    old.size().min(new.size()),
                );
                self.deallocate(ptr, old);
            }
            Ok(fresh)
        }
    }
}

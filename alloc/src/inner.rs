//! Inner allocators: where a [`HeaderAlloc`](crate::HeaderAlloc) gets its blocks.
//!
//! Any `allocator_api2::alloc::Allocator` works as an inner allocator: [`MiMalloc`] (the
//! default, when the `mimalloc` feature is on), `std::alloc::System` (under Miri, sanitizers and
//! dhat), or `&bumpalo::Bump` (an arena: frees are no-ops, but the header's free callback still
//! runs).

#[cfg(feature = "mimalloc")]
pub use self::mi::MiMalloc;

/// The inner allocator `HeaderAlloc::new()` uses: [`MiMalloc`] with the `mimalloc` feature,
/// `std::alloc::System` without it (the configuration Miri runs).
#[cfg(feature = "mimalloc")]
pub type DefaultInner = MiMalloc;
/// The inner allocator `HeaderAlloc::new()` uses: [`MiMalloc`] with the `mimalloc` feature,
/// `std::alloc::System` without it (the configuration Miri runs).
#[cfg(not(feature = "mimalloc"))]
pub type DefaultInner = std::alloc::System;

/// The default inner allocator as a constant, for `const` constructors of statics.
#[cfg(feature = "mimalloc")]
pub const DEFAULT_INNER: DefaultInner = MiMalloc;
/// The default inner allocator as a constant, for `const` constructors of statics.
#[cfg(not(feature = "mimalloc"))]
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

    /// mimalloc as an `Allocator`, calling `libmimalloc-sys` directly.
    ///
    /// For `align <= 16` (and `align <= size`) it calls plain `mi_malloc`/`mi_free`, mimalloc's
    /// fastest path; only larger alignments take `mi_malloc_aligned`.
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
    #[derive(Debug, Default, Clone, Copy)]
    pub struct MiMalloc;

    #[inline(always)]
    fn plain(layout: Layout) -> bool {
        layout.align() <= MI_MIN_ALIGN && layout.align() <= layout.size()
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
                    ffi::mi_malloc_aligned(layout.size(), layout.align())
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
                    ffi::mi_zalloc_aligned(layout.size(), layout.align())
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
            unsafe { self.realloc(ptr, old, new) }
        }

        #[inline]
        unsafe fn grow_zeroed(
            &self,
            ptr: NonNull<u8>,
            old: Layout,
            new: Layout,
        ) -> Result<NonNull<[u8]>, AllocError> {
            // SAFETY: forwarded to the caller.
            let block = unsafe { self.realloc(ptr, old, new) }?;
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
            unsafe { self.realloc(ptr, old, new) }
        }
    }

    impl MiMalloc {
        /// Moves a block to a new layout, keeping the common prefix of its bytes.
        ///
        /// # Safety
        /// `ptr` is a live block of this allocator allocated with `old`.
        #[inline]
        unsafe fn realloc(
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

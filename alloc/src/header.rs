//! The per-object header and the layout arithmetic that places it.
//!
//! ```text
//!  block start (from the inner allocator)
//!  |
//!  v            align <= 32: offset = HEADER_OFFSET (32)      align > 32: offset = align
//!  +---------------------------+------+------------------------------------------+
//!  | (padding, align > 32 only)| Header (24 B) | pad |  object (layout.size())  |
//!  +---------------------------+---------------+-----+--------------------------+
//!                              ^ obj - 32            ^ obj: the pointer handed out
//! ```
//!
//! Invariants (every pointer handed out by [`HeaderAlloc`](crate::HeaderAlloc)):
//! 1. `obj - HEADER_OFFSET` is a valid, 8-aligned [`Header`], zeroed at allocation (state (a)).
//! 2. The block starts at `obj - offset_for(layout.align())`; its inner layout is
//!    [`block_layout`]`(layout)`, so header recovery and block recovery are pure arithmetic.
//! 3. The header lives exactly as long as the object's block.

use core::alloc::Layout;
use core::ffi::c_void;
use core::ptr::{self, NonNull};
use core::sync::atomic::{AtomicPtr, Ordering};

/// The free callback type: receives the `cached_mem` pointer when the object's block is freed.
///
/// It is `unsafe` because it receives a raw pointer whose meaning belongs to whoever set it.
pub type FreeCallback = unsafe extern "C" fn(*mut c_void);

/// The per-object header: which wrapper (if any) this object is tied to.
///
/// The three fields mirror the seed design: `py_obj` (the live wrapper, or null),
/// `cached_mem` (the memory of a finalized wrapper kept for revival, or null) and `free_cb`
/// (how to release `cached_mem` when the object dies). All fields are atomics so that the
/// runtime's tie machine can move between states with compare-and-swap.
///
/// ```
/// use tether_alloc::{header_of, HeaderAlloc, HEADER_OFFSET};
/// use allocator_api2::alloc::Allocator;
/// use core::alloc::Layout;
///
/// let alloc = HeaderAlloc::new();
/// let layout = Layout::new::<u64>();
/// let obj = alloc.allocate(layout).unwrap().cast::<u8>();
/// // SAFETY: `obj` came from a HeaderAlloc and is still allocated.
/// let header = unsafe { header_of(obj) };
/// assert!(header.py_obj().is_null() && header.cached_mem().is_null());
/// assert_eq!(header as *const _ as usize + HEADER_OFFSET, obj.as_ptr() as usize);
/// // SAFETY: allocated above with this layout.
/// unsafe { alloc.deallocate(obj, layout) };
/// ```
#[repr(C)]
#[derive(Debug)]
pub struct Header {
    py_obj: AtomicPtr<c_void>,
    cached_mem: AtomicPtr<c_void>,
    free_cb: AtomicPtr<()>,
}

/// The alignment of C's `max_align_t` on this target (16 on x86_64 Linux).
pub const MAX_ALIGN: usize = core::mem::align_of::<libc::max_align_t>();

/// Distance from the header's start to the object: `size_of::<Header>()` rounded up to
/// [`MAX_ALIGN`]. 32 bytes on x86_64.
pub const HEADER_OFFSET: usize = round_up(core::mem::size_of::<Header>(), MAX_ALIGN);

const _: () = assert!(core::mem::size_of::<Header>() == 3 * core::mem::size_of::<usize>());
const _: () = assert!(HEADER_OFFSET % MAX_ALIGN == 0 && HEADER_OFFSET >= 24);
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
const _: () = assert!(HEADER_OFFSET == 32);

const fn round_up(n: usize, align: usize) -> usize {
    (n + align - 1) & !(align - 1)
}

/// Where the object sits within its block for an object alignment of `align` (a power of two):
/// [`HEADER_OFFSET`] for `align <= HEADER_OFFSET`, else `align` itself.
///
/// ```
/// use tether_alloc::{offset_for, HEADER_OFFSET};
/// assert_eq!(offset_for(8), HEADER_OFFSET);
/// assert_eq!(offset_for(4096), 4096);
/// ```
#[inline]
pub const fn offset_for(align: usize) -> usize {
    if align <= HEADER_OFFSET {
        HEADER_OFFSET
    } else {
        align
    }
}

/// The inner allocator's layout for an object `layout`: `offset_for(align) + size` bytes, aligned
/// to `max(align, align_of::<Header>())`. `None` when the sum overflows or exceeds `isize::MAX`
/// after rounding (such layouts are rejected with `AllocError`).
///
/// ```
/// use core::alloc::Layout;
/// use tether_alloc::block_layout;
/// let b = block_layout(Layout::from_size_align(100, 64).unwrap()).unwrap();
/// assert_eq!((b.size(), b.align()), (164, 64));
/// let huge = Layout::from_size_align(isize::MAX as usize - 8, 1).unwrap();
/// assert!(block_layout(huge).is_none());
/// ```
#[inline]
pub const fn block_layout(layout: Layout) -> Option<Layout> {
    let align = layout.align();
    let Some(size) = offset_for(align).checked_add(layout.size()) else {
        return None;
    };
    let align = if align < core::mem::align_of::<Header>() {
        core::mem::align_of::<Header>()
    } else {
        align
    };
    match Layout::from_size_align(size, align) {
        Ok(l) => Some(l),
        Err(_) => None,
    }
}

/// The header of an object allocated by [`HeaderAlloc`](crate::HeaderAlloc).
///
/// # Safety
/// `obj` must have been returned by a `HeaderAlloc` (through `Allocator` or `GlobalAlloc`) and not
/// yet freed, and the returned reference must not outlive that allocation.
#[inline]
pub unsafe fn header_of<'a>(obj: NonNull<u8>) -> &'a Header {
    // SAFETY: invariant 1 of this module: the caller guarantees `obj` came from a HeaderAlloc, so
    // a live, initialized, 8-aligned Header sits HEADER_OFFSET bytes before it in the same block.
    unsafe { &*obj.as_ptr().sub(HEADER_OFFSET).cast::<Header>() }
}

impl Header {
    /// A header in state (a): all fields null.
    pub const fn new() -> Self {
        Header {
            py_obj: AtomicPtr::new(ptr::null_mut()),
            cached_mem: AtomicPtr::new(ptr::null_mut()),
            free_cb: AtomicPtr::new(ptr::null_mut()),
        }
    }

    /// The live wrapper this object is bound to, or null. (Acquire: a non-null wrapper pointer
    /// was published with Release by whoever initialized the wrapper.)
    #[inline]
    pub fn py_obj(&self) -> *mut c_void {
        self.py_obj.load(Ordering::Acquire)
    }

    /// Memory of a finalized wrapper kept for revival, or null (Acquire, as for `py_obj`).
    #[inline]
    pub fn cached_mem(&self) -> *mut c_void {
        self.cached_mem.load(Ordering::Acquire)
    }

    /// The callback that releases `cached_mem` when the object's block is freed.
    #[inline]
    pub fn free_cb(&self) -> Option<FreeCallback> {
        let raw = self.free_cb.load(Ordering::Acquire);
        if raw.is_null() {
            None
        } else {
            // SAFETY: the only non-null values ever stored are `FreeCallback`s cast to `*mut ()`
            // (see `set_free_cb`); function pointers and data pointers have the same size here.
            Some(unsafe { core::mem::transmute::<*mut (), FreeCallback>(raw) })
        }
    }

    /// Sets the live wrapper pointer (Release: publishes the wrapper's initialization).
    #[inline]
    pub fn set_py_obj(&self, p: *mut c_void) {
        self.py_obj.store(p, Ordering::Release);
    }

    /// Sets the cached wrapper memory (Release, as for `set_py_obj`).
    #[inline]
    pub fn set_cached_mem(&self, p: *mut c_void) {
        self.cached_mem.store(p, Ordering::Release);
    }

    /// Sets (or clears) the free callback.
    #[inline]
    pub fn set_free_cb(&self, cb: Option<FreeCallback>) {
        let raw = cb.map_or(ptr::null_mut(), |f| f as *mut ());
        self.free_cb.store(raw, Ordering::Release);
    }

    /// The `py_obj` atomic itself, for compare-and-swap transitions.
    #[inline]
    pub fn py_obj_atomic(&self) -> &AtomicPtr<c_void> {
        &self.py_obj
    }

    /// The `cached_mem` atomic itself, for compare-and-swap transitions.
    #[inline]
    pub fn cached_mem_atomic(&self) -> &AtomicPtr<c_void> {
        &self.cached_mem
    }

    /// The free funnel's first half: takes `cached_mem` (leaving null) and, if a callback is set,
    /// calls it with the taken pointer. Returns whether a callback ran. Because the pointer is
    /// swapped out before the call, a second call is a no-op: the callback runs at most once per
    /// cached pointer.
    ///
    /// # Safety
    /// The callback is called with the cached pointer; whoever set them promised that pairing is
    /// valid to call once the object is being freed.
    #[inline]
    pub unsafe fn release_cached(&self) -> bool {
        // Fast path: no cached memory, nothing to do (Relaxed: a stale non-null is rechecked by
        // the swap below; a stale null cannot happen, as only this object's owner, which is
        // freeing it now, could have stored one, and that store happens-before the free).
        if self.cached_mem.load(Ordering::Relaxed).is_null() {
            return false;
        }
        // AcqRel: acquire the memory the parker published; release our take.
        let mem = self.cached_mem.swap(ptr::null_mut(), Ordering::AcqRel);
        match (mem.is_null(), self.free_cb()) {
            (false, Some(cb)) => {
                // SAFETY: forwarded to the caller: the (cb, mem) pairing was set by the owner.
                unsafe { cb(mem) };
                true
            }
            _ => false,
        }
    }

    /// Writes state (a) (all null) into raw header memory.
    ///
    /// # Safety
    /// `p` must be valid for a write of `Header` and 8-aligned.
    #[inline]
    pub(crate) unsafe fn init(p: *mut Header) {
        // SAFETY: forwarded to the caller.
        unsafe { p.write(Header::new()) };
    }
}

impl Default for Header {
    fn default() -> Self {
        Header::new()
    }
}

//! Header kinds ([`Wide`], [`Narrow`], [`Bare`]) and the layout arithmetic that places a header.
//!
//! Everything here is checked `const fn` arithmetic on `K::SIZE` (as hashbrown's
//! `TableLayout`), so a kind's layout folds to constants in every `HeaderAlloc` method.

use super::tie::TIE_ALIGN;
use core::alloc::Layout;

/// The alignment of C's `max_align_t` on this target (16 on x86_64 Linux).
pub const MAX_ALIGN: usize = core::mem::align_of::<libc::max_align_t>();

mod sealed {
    /// Only this crate's kinds implement [`HeaderKind`](super::HeaderKind).
    pub trait Sealed {}
}

/// How many header bytes a [`HeaderAlloc`](crate::HeaderAlloc) reserves before each object.
///
/// Sealed: the kinds are [`Wide`] (16 bytes, the default), [`Narrow`] (8) and [`Bare`] (0).
///
/// # Safety
/// `SIZE` is 0 or a multiple of [`TIE_ALIGN`] no larger than [`MAX_ALIGN`]'s 16, and every
/// header word lies in the `SIZE` bytes before the object; `HeaderAlloc`'s block arithmetic
/// ([`offset_for`], [`block_layout`]) relies on it. Only this crate implements the trait.
pub unsafe trait HeaderKind: sealed::Sealed + Send + Sync + 'static {
    /// Header bytes before each object (its distance from the object is at least this).
    const SIZE: usize;
}

/// The default kind: 16 header bytes, `[aux word | tie word | object ...]`.
///
/// The aux word (at `obj - 16`, [`aux_of`](crate::aux_of)) is the owner's (the runtime keeps
/// each object's deleter there); the tie word is at `obj - 8` ([`tie_of`](crate::tie_of)).
/// Objects of alignment up to [`MAX_ALIGN`] sit at block + 16, on mimalloc's plain path.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Wide;

/// 8 header bytes, `[tie word | object ...]`: no aux word.
///
/// Objects of alignment up to 8 sit at block + 8 (the block is a plain `mi_malloc(size + 8)`).
/// An object of alignment 16 cannot sit 8 bytes after a 16-aligned block, so it takes 16 bytes
/// (8 of them padding), as with [`Wide`]; larger alignments take `align` bytes, as every kind.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Narrow;

/// No header at all: the opt-out, a thin pass-through to the inner allocator.
///
/// Objects have no tie word and no aux word ([`tie_of`](crate::tie_of) and
/// [`aux_of`](crate::aux_of) must not be called on them) and no free funnel runs.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Bare;

impl sealed::Sealed for Wide {}
impl sealed::Sealed for Narrow {}
impl sealed::Sealed for Bare {}

// SAFETY: 16 = 2 * TIE_ALIGN = MAX_ALIGN on x86_64 (asserted below); the aux and tie words are
// the two 8-aligned words right before the object.
unsafe impl HeaderKind for Wide {
    const SIZE: usize = 2 * TIE_ALIGN;
}

// SAFETY: 8 = TIE_ALIGN; the tie word is the 8-aligned word right before the object.
unsafe impl HeaderKind for Narrow {
    const SIZE: usize = TIE_ALIGN;
}

// SAFETY: no header words at all.
unsafe impl HeaderKind for Bare {
    const SIZE: usize = 0;
}

#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
const _: () = assert!(MAX_ALIGN == 16);
#[cfg(target_pointer_width = "64")]
const _: () = assert!(Wide::SIZE == MAX_ALIGN);
const _: () = assert!(Wide::SIZE <= 16 && Narrow::SIZE == TIE_ALIGN && Bare::SIZE == 0);
const _: () = assert!(core::mem::align_of::<usize>() <= TIE_ALIGN);

/// Where the object sits within its block, for a header kind `K` and an object alignment of
/// `align` (a power of two): `max(K::SIZE, align)` for [`Wide`] and [`Narrow`], 0 for [`Bare`].
///
/// The offset is a multiple of `align` (both are powers of two), so an `align`-aligned block
/// gives an `align`-aligned object; it is at least `K::SIZE`, so the header fits before it.
///
/// ```
/// use tether_alloc::{offset_for, Bare, Narrow, Wide};
/// assert_eq!(offset_for::<Wide>(8), 16);
/// assert_eq!(offset_for::<Narrow>(8), 8);
/// assert_eq!(offset_for::<Narrow>(16), 16);
/// assert_eq!(offset_for::<Wide>(4096), 4096);
/// assert_eq!(offset_for::<Bare>(4096), 0);
/// ```
#[inline(always)]
pub const fn offset_for<K: HeaderKind>(align: usize) -> usize {
    if K::SIZE == 0 {
        0
    } else if align <= K::SIZE {
        K::SIZE
    } else {
        align
    }
}

/// The inner allocator's layout for an object `layout` under header kind `K`:
/// `offset_for::<K>(align) + size` bytes, aligned to `max(align, 8)` (the header words' alignment;
/// [`Bare`]: `layout` itself). `None` when the sum overflows or exceeds `isize::MAX` after
/// rounding (such layouts are rejected with `AllocError`).
///
/// ```
/// use core::alloc::Layout;
/// use tether_alloc::{block_layout, Bare, Narrow, Wide};
/// let l = Layout::from_size_align(100, 64).unwrap();
/// let b = block_layout::<Wide>(l).unwrap();
/// assert_eq!((b.size(), b.align()), (164, 64));
/// let n = block_layout::<Narrow>(Layout::new::<u32>()).unwrap();
/// assert_eq!((n.size(), n.align()), (12, 8));
/// assert_eq!(block_layout::<Bare>(l), Some(l));
/// let huge = Layout::from_size_align(isize::MAX as usize - 8, 1).unwrap();
/// assert!(block_layout::<Wide>(huge).is_none());
/// ```
#[inline(always)]
pub const fn block_layout<K: HeaderKind>(layout: Layout) -> Option<Layout> {
    if K::SIZE == 0 {
        return Some(layout);
    }
    let align = layout.align();
    let Some(size) = offset_for::<K>(align).checked_add(layout.size()) else {
        return None;
    };
    let align = if align < TIE_ALIGN { TIE_ALIGN } else { align };
    // Layout's rule: the size rounded up to the alignment must not exceed isize::MAX.
    if size > isize::MAX as usize - (align - 1) {
        return None;
    }
    // SAFETY: `align` is a power of two (the layout's, or TIE_ALIGN), and `size` rounded up to
    // it fits in isize (checked above): `from_size_align`'s conditions, without re-testing the
    // alignment on every allocation.
    Some(unsafe { Layout::from_size_align_unchecked(size, align) })
}

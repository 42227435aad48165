//! Free blocks: the intrusive link in a free block's first word and, in debug builds, the
//! poison in the rest of it (invariant 3 of [`super`]).

use core::ptr::NonNull;

/// Bytes of a free block that hold the list link.
const LINK: usize = core::mem::size_of::<*mut u8>();
/// The byte debug builds fill freed blocks with (after the link word).
#[cfg(debug_assertions)]
const POISON: u8 = 0xDD;
#[cfg(debug_assertions)]
static POISON_BYTES: [u8; super::MAX_SIZE] = [POISON; super::MAX_SIZE];

const _: () = assert!(super::GRANULE >= LINK);

/// The link (next free block or null) stored in a free block.
///
/// # Safety
/// `block` is a free block (invariant 3): 16-aligned, valid for reads of `LINK` bytes, link
/// initialized.
#[inline(always)]
pub(super) unsafe fn read_link(block: NonNull<u8>) -> *mut u8 {
    // SAFETY: forwarded to the caller.
    unsafe { block.cast::<*mut u8>().read() }
}

/// Stores `next` as the link of `block`.
///
/// # Safety
/// `block` is a block of this pool that the caller owns (invariant 2): 16-aligned, valid for
/// writes of `LINK` bytes.
#[inline(always)]
pub(super) unsafe fn write_link(block: NonNull<u8>, next: *mut u8) {
    // SAFETY: forwarded to the caller.
    unsafe { block.cast::<*mut u8>().write(next) }
}

/// Fills the bytes after the link word with `POISON` (debug builds; nothing in release).
///
/// # Safety
/// `block` is an owned block of `size` bytes.
#[cfg(debug_assertions)]
#[inline(always)]
pub(super) unsafe fn poison(block: NonNull<u8>, size: usize) {
    // SAFETY: forwarded to the caller; LINK < size, so the range lies inside the block.
    unsafe { block.add(LINK).write_bytes(POISON, size - LINK) }
}

/// Fills the bytes after the link word with `POISON` (debug builds; nothing in release).
///
/// # Safety
/// `block` is an owned block of `size` bytes.
#[cfg(not(debug_assertions))]
#[inline(always)]
pub(super) unsafe fn poison(_block: NonNull<u8>, _size: usize) {}

/// Checks (debug builds) that a block just taken off a free list was not written since it was
/// freed: its bytes after the link word are still `POISON`. Panics with the block's address if
/// not, a write-after-free bug in the caller.
///
/// # Safety
/// `block` is a block of `size` bytes taken off a free list (invariant 3).
#[cfg(debug_assertions)]
#[inline(always)]
pub(super) unsafe fn check_poison(block: NonNull<u8>, size: usize) {
    // SAFETY: forwarded to the caller; the bytes are initialized (invariant 3).
    let bytes = unsafe { core::slice::from_raw_parts(block.add(LINK).as_ptr(), size - LINK) };
    if bytes != &POISON_BYTES[..size - LINK] {
        poison_violation(block, size);
    }
}

/// Checks (debug builds) that a block just taken off a free list was not written since it was
/// freed.
///
/// # Safety
/// `block` is a block of `size` bytes taken off a free list (invariant 3).
#[cfg(not(debug_assertions))]
#[inline(always)]
pub(super) unsafe fn check_poison(_block: NonNull<u8>, _size: usize) {}

#[cfg(debug_assertions)]
#[cold]
#[inline(never)]
fn poison_violation(block: NonNull<u8>, size: usize) -> ! {
    panic!("SlabPool: block {block:p} of {size} bytes was written after it was freed");
}

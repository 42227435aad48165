//! [`SlabPoolConfig`], [`SlabPoolStats`] and the per-class table derived from a configuration.

use super::{class_of, GRANULE, MAX_CACHE_BLOCKS, MAX_SIZE, MAX_SLAB_BYTES, NUM_CLASSES};
use core::alloc::Layout;

/// How a [`SlabPool`](super::SlabPool) sizes its slabs, thread caches and retention.
/// Out-of-range values are clamped, never rejected.
///
/// ```
/// use tether_alloc::{SlabPool, SlabPoolConfig};
/// let config = SlabPoolConfig { slab_bytes: 16 << 10, ..SlabPoolConfig::DEFAULT };
/// static POOL: SlabPool<std::alloc::System> = SlabPool::with_config(
///     std::alloc::System,
///     SlabPoolConfig { max_retained_bytes: 0, ..SlabPoolConfig::DEFAULT },
/// );
/// let pool = SlabPool::with_config(std::alloc::System, config);
/// assert_eq!(pool.config().slab_bytes, 16 << 10);
/// assert_eq!(POOL.config().max_retained_bytes, 0);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlabPoolConfig {
    /// Bytes per slab asked of the inner allocator. Each class rounds it down to whole blocks
    /// (at least one block), and it is capped at 1 GiB. Default 64 KiB.
    pub slab_bytes: usize,
    /// The bound of one thread cache for one class, in bytes; the block count is clamped to
    /// `1..=256`. A bin about to exceed it gives its older blocks to the depot until it is half
    /// full; an empty one refills half of it. Default 16 KiB.
    pub cache_bytes: usize,
    /// Free bytes a class's depot may gain beyond what its last trim could not release (blocks
    /// in slabs that still had blocks out) before it trims itself. `0` trims on every return
    /// that leaves releasable slabs; `usize::MAX` never trims automatically. Default 1 MiB.
    pub max_retained_bytes: usize,
}

impl SlabPoolConfig {
    /// The largest request a pool serves, in bytes.
    pub const MAX_BLOCK_SIZE: usize = MAX_SIZE;
    /// The alignment of every block (a multiple of [`TIE_ALIGN`](crate::TIE_ALIGN): a parked
    /// wrapper's memory goes into a tie word, whose low bits are tags).
    pub const BLOCK_ALIGN: usize = GRANULE;
    /// The default configuration: 64 KiB slabs, 16 KiB per class per cache, 1 MiB retained per
    /// class.
    pub const DEFAULT: SlabPoolConfig = SlabPoolConfig {
        slab_bytes: 64 << 10,
        cache_bytes: 16 << 10,
        max_retained_bytes: 1 << 20,
    };

    /// The block size serving a request of `size` bytes: `size` rounded up to a multiple of 16,
    /// or `None` for 0 and for more than [`MAX_BLOCK_SIZE`](Self::MAX_BLOCK_SIZE).
    ///
    /// ```
    /// use tether_alloc::SlabPoolConfig;
    /// assert_eq!(SlabPoolConfig::block_size(1), Some(16));
    /// assert_eq!(SlabPoolConfig::block_size(48), Some(48));
    /// assert_eq!(SlabPoolConfig::block_size(1000), Some(1008));
    /// assert_eq!(SlabPoolConfig::block_size(0), None);
    /// assert_eq!(SlabPoolConfig::block_size(1025), None);
    /// ```
    pub const fn block_size(size: usize) -> Option<usize> {
        let c = class_of(size);
        if c < NUM_CLASSES {
            Some((c + 1) * GRANULE)
        } else {
            None
        }
    }
}

impl Default for SlabPoolConfig {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// A point-in-time summary of a [`SlabPool`](super::SlabPool), summed over its classes.
///
/// Each class is read under its own lock, so a snapshot taken while other threads work is not a
/// consistent cut across classes. `cached_blocks` is as of each cache's last exchange with the
/// depot (refill, flush, drop); it is exact once caches are flushed or dropped, and
/// `in_use_blocks` (blocks out of the depots and not counted as cached) is exact then too.
///
/// ```
/// use tether_alloc::SlabPool;
/// let pool = SlabPool::new(std::alloc::System);
/// let p = pool.alloc(100).unwrap();
/// let s = pool.stats();
/// // 100 bytes use the 112-byte class: a 64 KiB slab holds 585 of them.
/// assert_eq!((s.slabs, s.bytes_held, s.in_use_blocks), (1, 585 * 112, 1));
/// assert_eq!(s.free_blocks, 584);
/// // SAFETY: `p` came from this pool with size 100.
/// unsafe { pool.free(p, 100) };
/// ```
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SlabPoolStats {
    /// Slabs held from the inner allocator.
    pub slabs: usize,
    /// Bytes held from the inner allocator (the sum of the slabs' layouts).
    pub bytes_held: usize,
    /// Blocks in the depots: on their free lists or not yet carved.
    pub free_blocks: usize,
    /// Blocks in thread caches (as last reported by each cache).
    pub cached_blocks: usize,
    /// Blocks handed out to callers (out of the depots and not counted as cached).
    pub in_use_blocks: usize,
}

/// What a class needs on its slow paths, fixed at construction.
#[derive(Debug, Clone, Copy)]
pub(super) struct ClassInfo {
    /// Block size (invariant 1 of `super`).
    pub(super) size: usize,
    /// Blocks per slab.
    pub(super) cap: usize,
    /// The inner layout of one slab: `(cap * size, 16)`.
    pub(super) slab_layout: Layout,
    /// Blocks a cache keeps at most.
    pub(super) limit: u32,
    /// Blocks a refill asks for.
    pub(super) batch: usize,
    /// `max_retained_bytes` in blocks.
    pub(super) retain: usize,
}

impl ClassInfo {
    pub(super) const EMPTY: ClassInfo = ClassInfo {
        size: 0,
        cap: 0,
        slab_layout: Layout::new::<u8>(),
        limit: 0,
        batch: 0,
        retain: 0,
    };

    pub(super) const fn new(c: usize, config: &SlabPoolConfig) -> ClassInfo {
        let size = (c + 1) * GRANULE;
        let slab = min(config.slab_bytes, MAX_SLAB_BYTES);
        let cap = max(slab / size, 1);
        let limit = clamp(config.cache_bytes / size, 1, MAX_CACHE_BLOCKS);
        ClassInfo {
            size,
            cap,
            // SAFETY: GRANULE is a power of two and cap * size <= max(MAX_SLAB_BYTES, MAX_SIZE)
            // = 2^30, far below isize::MAX - GRANULE.
            slab_layout: unsafe { Layout::from_size_align_unchecked(cap * size, GRANULE) },
            limit: limit as u32,
            batch: max(limit / 2, 1),
            retain: config.max_retained_bytes / size,
        }
    }
}

const fn min(a: usize, b: usize) -> usize {
    if a < b {
        a
    } else {
        b
    }
}

const fn max(a: usize, b: usize) -> usize {
    if a > b {
        a
    } else {
        b
    }
}

const fn clamp(v: usize, lo: usize, hi: usize) -> usize {
    max(min(v, hi), lo)
}

const _: () = assert!(SlabPoolConfig::BLOCK_ALIGN % crate::header::TIE_ALIGN == 0);

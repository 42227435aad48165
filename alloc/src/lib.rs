//! # tether-alloc
//!
//! An allocator that reserves a small header before every object it hands out, so that
//! per-object metadata (which Python wrapper an object is tied to) is found by pointer
//! arithmetic alone. The header's kind is a type parameter:
//!
//! ```text
//!  Wide (16 B, the default)         Narrow (8 B)                Bare (0 B: the opt-out)
//!  +---------+---------+--------    +---------+--------         +--------
//!  | aux     | tie     | object     | tie     | object          | object
//!  +---------+---------+--------    +---------+--------         +--------
//!  ^ obj-16  ^ obj-8   ^ obj        ^ obj-8   ^ obj             ^ obj
//!
//!  tie word: wrapper address W (8-aligned) | LOCK | BUSY | PARKED   (0 / W / W|PARKED)
//! ```
//!
//! (Over-aligned objects sit at `align` bytes into their block, the header right before them.)
//!
//! * [`TieWord`] at [`tie_of`]`(obj)` (`Wide`, `Narrow`): one tagged pointer, zeroed at
//!   allocation: 0 = detached, `W` = bound to wrapper `W`, `W | TIE_PARKED` = parked wrapper
//!   memory; [`tie_with`], [`tie_ptr`] and [`tie_tag`] compose and take it apart. The aux word at
//!   [`aux_of`]`(obj)` (`Wide` only) belongs to the owner.
//! * [`HeaderAlloc<A, S, K>`](HeaderAlloc): an `allocator_api2` 0.2
//!   [`Allocator`](allocator_api2::alloc::Allocator) and a
//!   [`GlobalAlloc`](core::alloc::GlobalAlloc), generic over its inner allocator `A`
//!   ([`MiMalloc`] by default; `std::alloc::System`; `&bumpalo::Bump`), its statistics `S` and
//!   its header kind `K` ([`Wide`], [`Narrow`], [`Bare`]). Freeing an object runs the free
//!   funnel: a parked tie word is swapped to null and its pointer handed, exactly once, to the
//!   allocator's free callback ([`HeaderAlloc::set_free_callback`]).
//! * [`SlabPool`]: size-classed slabs of fixed-size blocks with per-thread [`PoolCache`]s, for
//!   memory that is parked and reused (finalized wrappers in state (c)).
//! * [`Stats`]: live/peak/total counters and live header bytes, opt-in by type ([`NoStats`]
//!   compiles to nothing).
//!
//! Bad input never panics: a layout whose size plus header overflows is `AllocError`.
//!
//! ```
//! use allocator_api2::alloc::{Allocator, Layout};
//! use core::sync::atomic::Ordering::Relaxed;
//! use tether_alloc::{tie_of, Bare, HeaderAlloc, Narrow, NoStats, HEADER_OFFSET};
//!
//! let alloc = HeaderAlloc::new(); // Wide, on mimalloc (System without the feature)
//! let too_big = Layout::from_size_align(isize::MAX as usize - 4, 1).unwrap();
//! assert!(alloc.allocate(too_big).is_err());
//!
//! let l = Layout::from_size_align(24, 4096).unwrap();
//! let obj = alloc.allocate(l).unwrap().cast::<u8>();
//! assert_eq!(obj.as_ptr() as usize % 4096, 0);
//! // SAFETY: `obj` is a live Wide HeaderAlloc object.
//! assert!(unsafe { tie_of(obj) }.load(Relaxed).is_null());
//! // SAFETY: allocated above with this layout.
//! unsafe { alloc.deallocate(obj, l) };
//! assert_eq!(HEADER_OFFSET, 16);
//!
//! // The 8-byte header and the header-less opt-out are types, not conventions.
//! let narrow = HeaderAlloc::<_, NoStats, Narrow>::from_parts(std::alloc::System, NoStats);
//! let bare = HeaderAlloc::<_, NoStats, Bare>::from_parts(std::alloc::System, NoStats);
//! let mut v = allocator_api2::vec::Vec::new_in(&narrow);
//! let mut w = allocator_api2::vec::Vec::new_in(&bare);
//! v.extend([1u64, 2, 3]);
//! w.extend([4u64, 5, 6]);
//! assert_eq!(v.iter().chain(&w).sum::<u64>(), 21);
//! ```

#![warn(missing_docs)]

mod header;
mod header_alloc;
mod inner;
mod slab;
mod stats;

pub use allocator_api2;
pub use header::{
    aux_of, block_layout, offset_for, tie_of, tie_ptr, tie_tag, tie_with, Bare, FreeCallback,
    HeaderKind, Narrow, TieWord, Wide, HEADER_OFFSET, MAX_ALIGN, TIE_ALIGN, TIE_BUSY, TIE_LOCK,
    TIE_PARKED, TIE_TAG_MASK,
};
pub use header_alloc::HeaderAlloc;
#[cfg(feature = "mimalloc")]
pub use inner::MiMalloc;
pub use inner::{DefaultInner, DEFAULT_INNER};
pub use slab::{PoolCache, SlabPool, SlabPoolConfig, SlabPoolStats};
pub use stats::{
    CountingSink, NoStats, ShardedCounter, ShardedStats, Stats, StatsSink, StatsSnapshot, SHARDS,
};

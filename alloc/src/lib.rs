//! # tether-alloc
//!
//! An allocator that reserves a [`Header`] before every object it hands out, so that per-object
//! metadata (which Python wrapper an object is tied to) is found by pointer arithmetic alone:
//!
//! ```text
//!  block start          obj - HEADER_OFFSET                  obj (what callers get)
//!  |                    |                                    |
//!  v                    v                                    v
//!  +--------------------+--------+---------------+----------+---------------------------+
//!  | padding (align>32) | py_obj | cached_mem    | free_cb  | pad | object bytes ...    |
//!  +--------------------+--------+---------------+----------+-----+---------------------+
//!                       |<-------------- HEADER_OFFSET (32 on x86_64) ---------->|
//! ```
//!
//! * [`Header`]: `py_obj`, `cached_mem`, `free_cb`, zeroed at allocation (state (a), never
//!   wrapped). [`header_of`] recovers it from an object pointer for every alignment.
//! * [`HeaderAlloc`]: an `allocator_api2` 0.2 [`Allocator`](allocator_api2::alloc::Allocator)
//!   and a [`GlobalAlloc`](core::alloc::GlobalAlloc), generic over its inner allocator
//!   ([`MiMalloc`] by default; `std::alloc::System`; `&bumpalo::Bump`). Freeing an object runs
//!   the free funnel: `free_cb(cached_mem)` if both are set, exactly once, then the block goes.
//! * [`SlabPool`]: size-classed slabs of fixed-size blocks with per-thread [`PoolCache`]s, for
//!   memory that is parked and reused (finalized wrappers in state (c)).
//! * [`Stats`]: live/peak/total counters, opt-in by type ([`NoStats`] compiles to nothing).
//!
//! Bad input never panics: a layout whose size plus header overflows is `AllocError`.
//!
//! ```
//! use allocator_api2::alloc::{Allocator, Layout};
//! use tether_alloc::{header_of, HeaderAlloc};
//!
//! let alloc = HeaderAlloc::new();
//! let too_big = Layout::from_size_align(isize::MAX as usize - 4, 1).unwrap();
//! assert!(alloc.allocate(too_big).is_err());
//!
//! let obj = alloc.allocate(Layout::from_size_align(24, 4096).unwrap()).unwrap().cast::<u8>();
//! assert_eq!(obj.as_ptr() as usize % 4096, 0);
//! // SAFETY: `obj` is a live HeaderAlloc object.
//! let h = unsafe { header_of(obj) };
//! assert!(h.py_obj().is_null());
//! // SAFETY: allocated above with this layout.
//! unsafe { alloc.deallocate(obj, Layout::from_size_align(24, 4096).unwrap()) };
//! ```

#![warn(missing_docs)]

mod header;
mod header_alloc;
mod inner;
mod slab;
mod stats;

pub use allocator_api2;
pub use header::{
    block_layout, header_of, offset_for, FreeCallback, Header, HEADER_OFFSET, MAX_ALIGN,
};
pub use header_alloc::HeaderAlloc;
#[cfg(feature = "mimalloc")]
pub use inner::MiMalloc;
pub use inner::{DefaultInner, DEFAULT_INNER};
pub use slab::{PoolCache, SlabPool, SlabPoolConfig, SlabPoolStats};
pub use stats::{NoStats, Stats, StatsSink, StatsSnapshot};

//! # tether
//!
//! The facade over tether's crates: [`alloc`] (the header allocator).
//!
//! ```
//! use tether::alloc::HeaderAlloc;
//! let _a = HeaderAlloc::new();
//! ```

pub use tether_alloc as alloc;
pub use tether_runtime as runtime;

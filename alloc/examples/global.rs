//! An embedding app that makes `HeaderAlloc` its process-wide allocator.
//!
//! Every allocation of the program (its own and std's) then carries a tether header, so any heap
//! object can later be tied to a Python wrapper without a side table. Run with
//! `cargo run -p tether-alloc --example global` (add `--no-default-features` for the System
//! inner allocator).

use std::collections::HashMap;
use std::ptr::NonNull;
use std::sync::atomic::Ordering::Relaxed;
use tether_alloc::{aux_of, tie_of, HeaderAlloc, HEADER_OFFSET};

#[cfg(not(feature = "global-inner"))]
#[global_allocator]
static GLOBAL: HeaderAlloc = HeaderAlloc::new();

/// With `global-inner`, `HeaderAlloc::new()` would allocate from the global allocator, i.e. from
/// itself: name an inner allocator instead.
#[cfg(feature = "global-inner")]
#[global_allocator]
static GLOBAL: HeaderAlloc<std::alloc::System> = HeaderAlloc::with_inner(std::alloc::System);

/// A 256-byte-aligned type, to show over-aligned allocation (offset = align, not 16).
#[repr(align(256))]
struct Aligned {
    words: [u64; 4],
}

/// Whether the header before a live global-heap object is in state (a): the tie word and the
/// aux word are null.
fn header_is_clear<T>(p: *const T) -> bool {
    let obj = NonNull::new(p.cast_mut())
        .expect("heap pointers are non-null")
        .cast::<u8>();
    // SAFETY: `p` points to a live allocation of the global allocator, a Wide HeaderAlloc, so
    // both header words precede it; the references are dropped before the allocation is.
    unsafe { tie_of(obj).load(Relaxed).is_null() && aux_of(obj).load(Relaxed).is_null() }
}

fn main() {
    // Ordinary collections, all on the header allocator.
    let words = ["header", "before", "every", "object", "header", "object"];
    let mut counts: HashMap<String, usize> = HashMap::new();
    for w in words {
        *counts.entry(w.to_string()).or_default() += 1;
    }
    let mut sentence = String::new();
    for w in words {
        sentence.push_str(w);
        sentence.push(' ');
    }
    println!(
        "counted {} distinct words in {:?}",
        counts.len(),
        sentence.trim_end()
    );

    // A boxed over-aligned value: aligned, with a zeroed header in the 16 bytes before it.
    let boxed = Box::new(Aligned {
        words: [1, 2, 3, 4],
    });
    let addr = &*boxed as *const Aligned;
    println!(
        "Box<Aligned> at {addr:p}: aligned to 256: {}, sum {}, header at obj-{HEADER_OFFSET} clear: {}",
        addr.addr() % 256 == 0,
        boxed.words.iter().sum::<u64>(),
        header_is_clear(addr),
    );

    // Growth through realloc: the header moves with the buffer.
    let mut v: Vec<u64> = Vec::with_capacity(1);
    let mut reallocs = 0;
    for i in 0..100_000 {
        let cap = v.capacity();
        v.push(i);
        reallocs += usize::from(v.capacity() != cap);
    }
    println!(
        "Vec grew to {} elements through {reallocs} reallocations; header still clear: {}",
        v.len(),
        header_is_clear(v.as_ptr()),
    );
}

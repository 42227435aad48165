//! Wrapper memory: every tether wrapper is one fixed-size block from a process-wide
//! [`SlabPool`], so parked memory (state (c)) can serve any tether class on revival.
//!
//! Invariants:
//! 1. Every wrapper block is [`WRAPPER_SIZE`] bytes from [`POOL`] and goes back to it exactly once:
//!    through [`free_wrapper_mem`] (the wrapper died without parking) or through
//!    [`free_parked`] (the allocator's free funnel, when the native object dies while parked).
//! 2. [`parked`] counts blocks currently in state (c): adjusted at park and revive (under the
//!    GIL, [`PARKED_NET`]) and at release ([`free_parked`], any thread).
//! 3. `GIL_CACHE` is touched only with the GIL held: the GIL gives mutual exclusion and
//!    orders successive holders, so one pool cache serves every Python thread without atomics.
//!    The free funnel ([`free_parked`]) may run without the GIL and uses the pool's locked path.

pub use crate::pytypes::WRAPPER_SIZE;
use core::cell::UnsafeCell;
use core::ffi::c_void;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicIsize, Ordering::Relaxed};
use pyo3::ffi;
use tether_alloc::{DefaultInner, PoolCache, SlabPool};

/// The pool all wrapper memory comes from.
pub static POOL: SlabPool<DefaultInner> = SlabPool::new(tether_alloc::DEFAULT_INNER);

/// How the runtime's tie machine releases parked wrapper memory.
pub static TIE_HOST: tether_runtime::tie::TieHost = tether_runtime::tie::TieHost {
    free_cached: free_parked,
};

/// A statistic changed only with the GIL held: a plain load and store, no atomic
/// read-modify-write (the GIL orders successive holders; the atomic type only makes the static
/// shareable). Readers without the GIL see a snapshot.
#[derive(Debug)]
pub struct GilCounter(AtomicIsize);

impl GilCounter {
    const fn new() -> Self {
        GilCounter(AtomicIsize::new(0))
    }

    /// Adds `n`. Call with the GIL held.
    #[inline(always)]
    pub fn add(&self, n: isize) {
        self.0.store(self.0.load(Relaxed) + n, Relaxed);
    }

    /// The current value.
    pub fn get(&self) -> isize {
        self.0.load(Relaxed)
    }
}

/// Wrappers parked (+1) and revived or detached from (c) (-1) by code holding the GIL.
pub static PARKED_NET: GilCounter = GilCounter::new();

/// Parked wrappers whose memory the free funnel released ([`free_parked`], any thread).
static PARKED_RELEASED: AtomicIsize = AtomicIsize::new(0);

/// Wrappers currently parked (state (c)).
pub fn parked() -> isize {
    PARKED_NET.get() - PARKED_RELEASED.load(Relaxed)
}

/// Wrappers currently alive as Python objects (allocated and not yet parked or freed).
pub static LIVE: GilCounter = GilCounter::new();

/// The pool cache used under the GIL (invariant 3).
struct GilCache(UnsafeCell<Option<PoolCache<'static, DefaultInner>>>);

// SAFETY: invariant 3: only accessed with the GIL held, which serializes all access.
unsafe impl Sync for GilCache {}

static GIL_CACHE: GilCache = GilCache(UnsafeCell::new(None));

/// The GIL-protected cache of [`POOL`].
///
/// # Safety
/// The GIL is held, and the returned reference is not kept past the current slot call (no
/// other call to this function may overlap its use).
#[inline]
unsafe fn gil_cache() -> &'static mut PoolCache<'static, DefaultInner> {
    // SAFETY: invariant 3; the caller keeps uses from overlapping.
    unsafe { (*GIL_CACHE.0.get()).get_or_insert_with(|| POOL.cache()) }
}

/// Takes a zeroed wrapper block, or raises `MemoryError` and returns null.
///
/// # Safety
/// The GIL is held.
pub unsafe fn alloc_wrapper_mem() -> *mut ffi::PyObject {
    // SAFETY: the GIL is held (caller); the cache reference ends with this statement.
    match unsafe { gil_cache() }.alloc(WRAPPER_SIZE) {
        Ok(p) => {
            // SAFETY: the pool handed out WRAPPER_SIZE writable bytes.
            unsafe { p.as_ptr().write_bytes(0, WRAPPER_SIZE) };
            LIVE.add(1);
            p.as_ptr().cast()
        }
        Err(_) => {
            // SAFETY: the GIL is held (caller).
            unsafe { ffi::PyErr_NoMemory() };
            core::ptr::null_mut()
        }
    }
}

/// Returns a wrapper block that is not parked.
///
/// # Safety
/// The GIL is held; `mem` came from [`alloc_wrapper_mem`], is not parked, and is not used again.
pub unsafe fn free_wrapper_mem(mem: *mut c_void) {
    LIVE.add(-1);
    if let Some(p) = NonNull::new(mem.cast::<u8>()) {
        // SAFETY: invariant 1: the block came from POOL with WRAPPER_SIZE and is freed once;
        // the GIL is held (invariant 3).
        unsafe { gil_cache().free(p, WRAPPER_SIZE) };
    }
}

/// The allocator's free funnel callback: the native object died while its wrapper was parked.
/// May run on any thread, with or without the GIL: it touches only the pool.
///
/// # Safety
/// `mem` is a parked wrapper block whose object is being freed (the funnel calls this once).
pub unsafe extern "C" fn free_parked(mem: *mut c_void) {
    // An RMW: this may run on any thread, without the GIL.
    PARKED_RELEASED.fetch_add(1, Relaxed);
    if let Some(p) = NonNull::new(mem.cast::<u8>()) {
        // SAFETY: invariant 1: parked memory is a POOL block released only here.
        unsafe { POOL.free(p, WRAPPER_SIZE) };
    }
}

/// `tp_alloc` for every tether class: a pool block, initialized as an instance of `tp`.
///
/// # Safety
/// Called by CPython with the GIL held and a tether class.
pub unsafe extern "C" fn tp_alloc(
    tp: *mut ffi::PyTypeObject,
    _n: ffi::Py_ssize_t,
) -> *mut ffi::PyObject {
    // SAFETY: GIL held (CPython calls slots with it).
    let mem = unsafe { alloc_wrapper_mem() };
    if mem.is_null() {
        return mem;
    }
    // SAFETY: `mem` is WRAPPER_SIZE zeroed bytes, enough for any tether class (their basic size
    // is checked to equal WRAPPER_SIZE at class creation); PyObject_Init sets the type (with a
    // new reference for heap types) and the refcount.
    unsafe { ffi::PyObject_Init(mem, tp) }
}

/// `tp_free` for every tether class.
///
/// # Safety
/// Called by CPython with a block from [`tp_alloc`].
pub unsafe extern "C" fn tp_free(mem: *mut c_void) {
    // SAFETY: forwarded: tp_free receives blocks tp_alloc produced.
    unsafe { free_wrapper_mem(mem) }
}

//! Wrapper memory: every tether wrapper is one fixed-size block from a process-wide
//! [`SlabPool`], so parked memory (state (c)) can serve any tether class on revival.
//!
//! Invariants:
//! 1. Every wrapper block is [`WRAPPER_SIZE`] bytes (plus [`GC_HEAD`], invariant 4) from [`POOL`]
//!    and goes back to it exactly once:
//!    through [`free_wrapper_mem`] (the wrapper died without parking) or through
//!    [`free_parked`] (the allocator's free funnel, when the native object dies while parked).
//! 2. [`parked`] counts blocks currently in state (c): adjusted at park and revive (by Python
//!    threads, [`PARKED_NET`]) and at release ([`free_parked`], any thread).
//! 3. GIL builds: `GIL_CACHE` is touched only with the GIL held: the GIL gives mutual exclusion
//!    and orders successive holders, so one pool cache serves every Python thread without
//!    atomics. Free-threaded builds: each thread has its own cache (`THREAD_CACHE`), so the hot
//!    path takes no lock either; a block freed on another thread than the one that took it
//!    goes to that thread's cache (the pool is one: any cache may free any of its blocks). The
//!    free funnel ([`free_parked`]) may run on any thread and uses the pool's locked path.
//! 4. A wrapper of a GC class (`Py_TPFLAGS_HAVE_GC`: it may hold Python objects, so
//!    `gc.get_referents` traverses it) has [`GC_HEAD`] bytes in front of it on GIL builds,
//!    zeroed (never tracked): its block is `WRAPPER_SIZE + GC_HEAD` bytes. A live wrapper's
//!    type says which; parked memory keeps it in its refcount word ([`mark_parked`]).

pub use crate::pytypes::WRAPPER_SIZE;
use core::cell::UnsafeCell;
use core::ffi::c_void;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicIsize, Ordering::Relaxed};
use pyo3::ffi;
use tether_alloc::{DefaultInner, PoolCache, SlabPool};

/// The pool all wrapper memory comes from.
pub static POOL: SlabPool<DefaultInner> = SlabPool::new(tether_alloc::DEFAULT_INNER);

/// A statistic of the wrapper life cycle. Under a GIL it is changed only with the GIL held: a
/// plain load and store, no atomic read-modify-write (the GIL orders successive holders; the
/// atomic type only makes the static shareable). On free-threaded builds it is a sharded
/// counter: each thread adds to its own cache line, so counting never serializes threads.
/// Readers see a snapshot.
#[derive(Debug)]
pub struct WrapperCounter {
    #[cfg(not(Py_GIL_DISABLED))]
    n: AtomicIsize,
    #[cfg(Py_GIL_DISABLED)]
    n: tether_alloc::ShardedCounter,
}

impl WrapperCounter {
    const fn new() -> Self {
        WrapperCounter {
            #[cfg(not(Py_GIL_DISABLED))]
            n: AtomicIsize::new(0),
            #[cfg(Py_GIL_DISABLED)]
            n: tether_alloc::ShardedCounter::new(),
        }
    }

    /// Adds `n` (under the GIL on GIL builds).
    #[inline(always)]
    pub fn add(&self, n: isize) {
        #[cfg(not(Py_GIL_DISABLED))]
        self.n.store(self.n.load(Relaxed) + n, Relaxed);
        #[cfg(Py_GIL_DISABLED)]
        if n >= 0 {
            self.n.add(n.unsigned_abs());
        } else {
            self.n.sub(n.unsigned_abs());
        }
    }

    /// The current value.
    pub fn get(&self) -> isize {
        #[cfg(not(Py_GIL_DISABLED))]
        return self.n.load(Relaxed);
        #[cfg(Py_GIL_DISABLED)]
        return isize::try_from(self.n.get()).unwrap_or(isize::MAX);
    }
}

/// Wrappers parked (+1) and revived or detached from (c) (-1) by Python threads.
pub static PARKED_NET: WrapperCounter = WrapperCounter::new();

/// Parked wrappers whose memory the free funnel released ([`free_parked`], any thread).
static PARKED_RELEASED: AtomicIsize = AtomicIsize::new(0);

/// Wrappers currently parked (state (c)).
pub fn parked() -> isize {
    PARKED_NET.get() - PARKED_RELEASED.load(Relaxed)
}

/// Wrappers currently alive as Python objects (allocated and not yet parked or freed).
pub static LIVE: WrapperCounter = WrapperCounter::new();

/// The pool cache used under the GIL (invariant 3).
#[cfg(not(Py_GIL_DISABLED))]
struct GilCache(UnsafeCell<Option<PoolCache<'static, DefaultInner>>>);

// SAFETY: invariant 3: only accessed with the GIL held, which serializes all access.
#[cfg(not(Py_GIL_DISABLED))]
unsafe impl Sync for GilCache {}

#[cfg(not(Py_GIL_DISABLED))]
static GIL_CACHE: GilCache = GilCache(UnsafeCell::new(None));

#[cfg(Py_GIL_DISABLED)]
std::thread_local! {
    /// Each thread's cache of [`POOL`] on free-threaded builds (invariant 3): no lock on the
    /// hot path; flushed to the pool's depot when the thread exits.
    static THREAD_CACHE: UnsafeCell<Option<PoolCache<'static, DefaultInner>>> =
        const { UnsafeCell::new(None) };
}

/// Runs `f` on this thread's cache of [`POOL`] (the GIL's one on GIL builds), or on `None`
/// while the thread is exiting (its cache is gone: use the pool's locked path).
///
/// # Safety
/// GIL builds: the GIL is held. `f` does not call back into this function.
#[inline(always)]
unsafe fn with_cache<R>(f: impl FnOnce(Option<&mut PoolCache<'static, DefaultInner>>) -> R) -> R {
    #[cfg(not(Py_GIL_DISABLED))]
    // SAFETY: invariant 3: the GIL serializes access; `f` does not re-enter (caller).
    return f(Some(unsafe {
        (*GIL_CACHE.0.get()).get_or_insert_with(|| POOL.cache())
    }));
    #[cfg(Py_GIL_DISABLED)]
    {
        let mut f = Some(f);
        let r = THREAD_CACHE.try_with(|c| {
            // SAFETY: this thread's own cell; `f` does not re-enter (caller).
            let cache = unsafe { (*c.get()).get_or_insert_with(|| POOL.cache()) };
            (f.take().expect("called once"))(Some(cache))
        });
        match r {
            Ok(r) => r,
            Err(_) => (f.take().expect("not called"))(None),
        }
    }
}

/// Bytes in front of a wrapper of a class CPython's collector may visit (`Py_TPFLAGS_HAVE_GC`):
/// its `PyGC_Head`, which GIL builds keep before the object (invariant 4). Free-threaded builds
/// keep the collector's state in the object header instead: 0 there.
#[cfg(not(Py_GIL_DISABLED))]
pub const GC_HEAD: usize = 2 * core::mem::size_of::<usize>(); // `_gc_next`, `_gc_prev`
/// See the GIL build's.
#[cfg(Py_GIL_DISABLED)]
pub const GC_HEAD: usize = 0;

/// The bytes in front of a wrapper of class `tp`: [`GC_HEAD`] for a GC class, else 0.
///
/// # Safety
/// `tp` is a live type object.
#[inline(always)]
pub unsafe fn prefix_of(tp: *mut ffi::PyTypeObject) -> usize {
    // SAFETY: forwarded.
    if GC_HEAD != 0 && unsafe { crate::pytypes::type_flags(tp) } & ffi::Py_TPFLAGS_HAVE_GC != 0 {
        GC_HEAD
    } else {
        0
    }
}

/// Puts the prefix of the dying wrapper `o` where [`parked_prefix`] finds it once `o` is parked
/// memory, whose type pointer is stale (invariant 4): its refcount word, which is 0 and unused
/// while parked (revival re-initializes it).
///
/// # Safety
/// `o` is a dying wrapper about to be parked, its type still alive.
#[inline(always)]
pub unsafe fn mark_parked(o: *mut ffi::PyObject) {
    #[cfg(not(Py_GIL_DISABLED))]
    // SAFETY: the count of a dying object is ours; its type is alive (caller).
    unsafe {
        crate::pytypes::set_refcnt(o, prefix_of(ffi::Py_TYPE(o)) as ffi::Py_ssize_t)
    }
    #[cfg(Py_GIL_DISABLED)]
    let _ = o;
}

/// The prefix [`mark_parked`] recorded in parked (or just revived, not yet re-initialized)
/// wrapper memory `mem`.
///
/// # Safety
/// `mem` is such memory.
#[inline(always)]
pub unsafe fn parked_prefix(mem: *mut c_void) -> usize {
    #[cfg(not(Py_GIL_DISABLED))]
    // SAFETY: written by mark_parked and untouched since (caller).
    return unsafe { crate::pytypes::refcnt_word(mem.cast()) as usize };
    #[cfg(Py_GIL_DISABLED)]
    {
        let _ = mem;
        0
    }
}

/// Takes a zeroed wrapper block with `prefix` bytes in front of the object (a zeroed
/// `PyGC_Head` reads "not tracked"), or raises `MemoryError` and returns null.
///
/// # Safety
/// The thread is attached (on GIL builds: holds the GIL).
pub unsafe fn alloc_wrapper_mem(prefix: usize) -> *mut ffi::PyObject {
    let size = WRAPPER_SIZE + prefix;
    // SAFETY: the GIL is held on GIL builds (caller); the closure does not re-enter.
    let block = unsafe {
        with_cache(|c| match c {
            Some(c) => c.alloc(size),
            None => POOL.alloc(size),
        })
    };
    match block {
        Ok(p) => {
            // SAFETY: the pool handed out `size` writable bytes; the object starts `prefix`
            // bytes in (16-aligned blocks, so TIE_ALIGN-aligned objects).
            unsafe {
                p.as_ptr().write_bytes(0, size);
                LIVE.add(1);
                p.as_ptr().add(prefix).cast()
            }
        }
        Err(_) => {
            // SAFETY: the GIL is held (caller).
            unsafe { ffi::PyErr_NoMemory() };
            core::ptr::null_mut()
        }
    }
}

/// Gives this thread's cached free blocks back to the pool's depot (before a trim: a cached
/// block keeps its whole slab from being released).
///
/// # Safety
/// The thread is attached (on GIL builds: holds the GIL).
pub unsafe fn flush_cache() {
    // SAFETY: forwarded (caller); the closure does not re-enter.
    unsafe {
        with_cache(|c| {
            if let Some(c) = c {
                c.flush();
            }
        })
    };
}

/// Returns a wrapper block that is not parked; `mem` is the object, `prefix` the bytes before it.
///
/// # Safety
/// The GIL is held; `mem` came from [`alloc_wrapper_mem`] with `prefix`, is not parked, and is
/// not used again.
pub unsafe fn free_wrapper_mem(mem: *mut c_void, prefix: usize) {
    LIVE.add(-1);
    if let Some(p) = NonNull::new(mem.cast::<u8>()) {
        // SAFETY: invariant 1: the block came from POOL with this size, `prefix` bytes before
        // the object, and is freed once; the GIL is held on GIL builds (invariant 3); the
        // closure does not re-enter.
        unsafe {
            let block = NonNull::new_unchecked(p.as_ptr().sub(prefix));
            with_cache(|c| match c {
                Some(c) => c.free(block, WRAPPER_SIZE + prefix),
                None => POOL.free(block, WRAPPER_SIZE + prefix),
            })
        };
    }
}

/// [`free_wrapper_mem`] for a dying wrapper whose type is still alive (it gives the prefix).
///
/// # Safety
/// As there; `o`'s type is alive.
pub unsafe fn free_dead_wrapper(o: *mut ffi::PyObject) {
    // SAFETY: forwarded (caller).
    unsafe { free_wrapper_mem(o.cast(), prefix_of(ffi::Py_TYPE(o))) }
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
        // SAFETY: invariant 1: parked memory is a POOL block released only here, with the
        // prefix mark_parked recorded (invariant 4).
        unsafe {
            let prefix = parked_prefix(mem);
            POOL.free(
                NonNull::new_unchecked(p.as_ptr().sub(prefix)),
                WRAPPER_SIZE + prefix,
            )
        };
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
    // SAFETY: GIL held (CPython calls slots with it); `tp` is live.
    let mem = unsafe { alloc_wrapper_mem(prefix_of(tp)) };
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
    // SAFETY: forwarded: tp_free receives blocks tp_alloc produced, of a live object whose
    // type gives the prefix.
    unsafe { free_dead_wrapper(mem.cast()) }
}

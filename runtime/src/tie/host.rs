//! What the host plugs into the tie machine: [`TieHost`] (how to free cached wrapper memory,
//! how to release a kept wrapper), installed once per process with [`set_host`].
//!
//! Bottom of the tie floor: uses `crate::heap` (the allocator, whose free callback it sets). Invariant: `HOST` is null or a
//! `&'static TieHost`, and once set it never changes.

use core::ptr;
use tether_alloc::FreeCallback;

/// How the host plugs in: what to do with cached wrapper memory that is no longer needed, and
/// with a kept wrapper whose object lost its last other reference.
///
/// ```
/// use core::ffi::c_void;
/// use tether_runtime::{ObjAny, TieHost};
/// unsafe extern "C" fn free_wrapper(_mem: *mut c_void) { /* return it to the pool */ }
/// fn release_kept(obj: ObjAny) { drop(obj); /* then release the kept wrapper */ }
/// static HOST: TieHost = TieHost { free_cached: free_wrapper, release_kept };
/// tether_runtime::set_host(&HOST);
/// ```
#[derive(Debug)]
pub struct TieHost {
    /// Receives cached (parked) wrapper memory when it is released: on
    /// [`detach`](super::detach) from (c), or when the object dies in (c). Called at most once
    /// per parked memory, on whichever thread releases it.
    pub free_cached: FreeCallback,
    // (Registered once, as the allocator's free callback: no per-object callback word.)
    /// Receives a strong reference to an object whose wrapper is kept ([`keep`](super::keep)),
    /// when that reference is the last but the wrapper's: the kept state is over (the flag was
    /// claimed for this call), and the host must give up the reference and then release the
    /// kept wrapper, in that order (releasing the wrapper first could keep it again). Called on
    /// whichever thread made that release, once per kept state; it must not unwind.
    pub release_kept: fn(crate::ObjAny),
}

/// The runtime's side of `release_kept`: the object floor's hook hands over a raw reference.
///
/// # Safety
/// `p` carries one strong reference, which this takes over.
unsafe fn kept_hook(p: core::ptr::NonNull<crate::ObjHeader>) {
    // SAFETY: forwarded: the reference is ours.
    let obj = unsafe { crate::ObjAny::from_raw(p) };
    (host().release_kept)(obj)
}

/// The process's host (a `&'static TieHost`, or null). Not a loom atomic: it is set once, before
/// any modelled execution.
static HOST: core::sync::atomic::AtomicPtr<TieHost> =
    core::sync::atomic::AtomicPtr::new(ptr::null_mut());

/// Installs the host (once per process; installing the same host again is a no-op).
///
/// # Panics
/// If a different host was installed before.
pub fn set_host(host: &'static TieHost) {
    let p = (host as *const TieHost).cast_mut();
    // AcqRel/Acquire: the host struct is a static, but pairing the publication with the
    // Acquire in `host()` keeps that true for any `&'static` (e.g. a leaked Box).
    match HOST.compare_exchange(
        ptr::null_mut(),
        p,
        core::sync::atomic::Ordering::AcqRel,
        core::sync::atomic::Ordering::Acquire,
    ) {
        Ok(_) => {
            crate::heap::ALLOC.set_free_callback(Some(host.free_cached));
            crate::object::set_kept_hook(kept_hook);
        }
        Err(prev) if prev == p => {}
        Err(_) => panic!("tether_runtime::set_host: a different TieHost is already installed"),
    }
}

/// The installed host.
pub(super) fn host() -> &'static TieHost {
    // Acquire: pairs with the publication in `set_host`.
    let p = HOST.load(core::sync::atomic::Ordering::Acquire);
    assert!(
        !p.is_null(),
        "tether_runtime::set_host must be called before bind/park"
    );
    // SAFETY: only `&'static TieHost`s are stored.
    unsafe { &*p }
}

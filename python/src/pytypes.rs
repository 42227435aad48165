//! Floor 0 of the extension: the raw layouts CPython sees and the type objects made at module
//! init, gathered in one place (like a `-sys` crate under a safe one). Nothing here calls Python.
//!
//! ```text
//!  Wrapper (WRAPPER_SIZE = 32 bytes on GIL builds, from the slab pool)
//!  +-----------+----------+---------------------+----------------------+
//!  | ob_refcnt | ob_type  | rec: *ObjHeader     | weaklist             |
//!  +-----------+----------+---------------------+----------------------+
//!                          one strong reference to the native object (null: moved / not initialized)
//! ```
//!
//! On free-threaded builds CPython's header is 32 bytes (thread id, per-object mutex, local and
//! shared counts, type), so a wrapper is 48. There `rec` is written only inside the wrapper's
//! critical section (`crate::ft::critical`) and read atomically ([`rec_load`]).

use core::ptr;
use core::sync::atomic::{AtomicPtr, Ordering::Relaxed};
use pyo3::ffi;
use tether_runtime::ObjHeader;

/// The memory layout of every tether wrapper.
#[repr(C)]
#[derive(Debug)]
pub struct Wrapper {
    /// CPython's object header.
    pub ob_base: ffi::PyObject,
    /// One strong reference to the native object, or null (moved from / not yet initialized).
    pub rec: *mut ObjHeader,
    /// CPython's weak reference list.
    pub weaklist: *mut ffi::PyObject,
}

/// Bytes of every wrapper object: `PyObject` header, the native pointer, the weakref list.
pub const WRAPPER_SIZE: usize = core::mem::size_of::<Wrapper>();

#[cfg(not(Py_GIL_DISABLED))]
const _: () = assert!(WRAPPER_SIZE == 32);
#[cfg(Py_GIL_DISABLED)]
const _: () = assert!(WRAPPER_SIZE == 48);

/// The native object wrapper `w` holds (null: moved out or not initialized). An atomic load:
/// on free-threaded builds another thread may be moving the object out; to use the object,
/// take a counted reference inside the wrapper's critical section (`crate::native`).
///
/// # Safety
/// `w` is a live tether wrapper (or one being deallocated).
#[inline(always)]
pub unsafe fn rec_load(w: *mut ffi::PyObject) -> *mut ObjHeader {
    // SAFETY: `w` has the Wrapper layout (caller); `rec` is pointer-aligned.
    unsafe { AtomicPtr::from_ptr(ptr::addr_of_mut!((*w.cast::<Wrapper>()).rec)) }.load(Relaxed)
}

/// Stores `rec` into wrapper `w` (see [`rec_load`]).
///
/// # Safety
/// `w` is a live tether wrapper; on free-threaded builds the caller is inside `w`'s critical
/// section, or `w` is not yet (or no longer) visible to other threads.
#[inline(always)]
pub unsafe fn rec_store(w: *mut ffi::PyObject, rec: *mut ObjHeader) {
    // SAFETY: as in `rec_load`.
    unsafe { AtomicPtr::from_ptr(ptr::addr_of_mut!((*w.cast::<Wrapper>()).rec)) }
        .store(rec, Relaxed)
}

/// `Py_SET_REFCNT` on a GIL build (pyo3-ffi does not export it): the count word, written
/// plainly.
///
/// # Safety
/// `o` is an object whose count the caller owns entirely (a dying one, under the GIL, or parked
/// memory, which is no object).
#[cfg(not(Py_GIL_DISABLED))]
#[inline(always)]
pub unsafe fn set_refcnt(o: *mut ffi::PyObject, n: ffi::Py_ssize_t) {
    // SAFETY: forwarded; on 3.12+ the count is the union's full-width member.
    unsafe {
        #[cfg(Py_3_12)]
        {
            (*o).ob_refcnt.ob_refcnt = n;
        }
        #[cfg(not(Py_3_12))]
        {
            (*o).ob_refcnt = n;
        }
    }
}

/// The count word of `o` on a GIL build, read plainly (what [`set_refcnt`] wrote).
///
/// # Safety
/// As for [`set_refcnt`]: nobody changes the word concurrently.
#[cfg(not(Py_GIL_DISABLED))]
#[inline(always)]
pub unsafe fn refcnt_word(o: *mut ffi::PyObject) -> ffi::Py_ssize_t {
    // SAFETY: forwarded.
    unsafe {
        #[cfg(Py_3_12)]
        return (*o).ob_refcnt.ob_refcnt;
        #[cfg(not(Py_3_12))]
        return (*o).ob_refcnt;
    }
}

/// `tp_flags` of type `tp` (an atomic on free-threaded builds).
///
/// # Safety
/// `tp` is a live type object.
#[inline]
pub unsafe fn type_flags(tp: *mut ffi::PyTypeObject) -> u64 {
    #[cfg(Py_GIL_DISABLED)]
    // SAFETY: `tp` is live (caller).
    return unsafe { (*tp).tp_flags.load(Relaxed) };
    #[cfg(not(Py_GIL_DISABLED))]
    // SAFETY: `tp` is live (caller).
    #[allow(clippy::unnecessary_cast)]
    return unsafe { (*tp).tp_flags } as u64;
}

/// Sets `bits` in `tp_flags` of type `tp`, which nobody else uses yet.
///
/// # Safety
/// `tp` is a live type object not yet used by other threads.
pub unsafe fn set_type_flags(tp: *mut ffi::PyTypeObject, bits: u64) {
    #[cfg(Py_GIL_DISABLED)]
    // SAFETY: `tp` is live (caller).
    unsafe {
        (*tp).tp_flags.fetch_or(bits, Relaxed);
    }
    #[cfg(not(Py_GIL_DISABLED))]
    // SAFETY: `tp` is live (caller).
    #[allow(clippy::unnecessary_cast)]
    unsafe {
        (*tp).tp_flags |= bits as core::ffi::c_ulong;
    }
}

/// Clears `bits` in `tp_flags` of type `tp`, which nobody else uses yet.
///
/// # Safety
/// `tp` is a live type object still being set up.
pub unsafe fn clear_type_flags(tp: *mut ffi::PyTypeObject, bits: u64) {
    #[cfg(Py_GIL_DISABLED)]
    // SAFETY: `tp` is live (caller).
    unsafe {
        (*tp).tp_flags.fetch_and(!bits, Relaxed);
    }
    #[cfg(not(Py_GIL_DISABLED))]
    // SAFETY: `tp` is live (caller).
    #[allow(clippy::unnecessary_cast)]
    unsafe {
        (*tp).tp_flags &= !(bits as core::ffi::c_ulong);
    }
}

/// `tether._native._Base`, the ffi-built type every tether class derives from.
pub static BASE_TYPE: AtomicPtr<ffi::PyTypeObject> = AtomicPtr::new(ptr::null_mut());

/// The metaclass type object `tether.ObjectMeta`.
pub static META_TYPE: AtomicPtr<ffi::PyTypeObject> = AtomicPtr::new(ptr::null_mut());

/// Offset of the class-info slot in a tether class object (after CPython's heap type): the
/// metaclass's basic size is `CLASS_INFO_OFFSET` plus one pointer.
pub const CLASS_INFO_OFFSET: usize = core::mem::size_of::<ffi::PyHeapTypeObject>();

/// The address of tether class `tp`'s class-info slot (a pointer-sized word, see
/// `crate::class::class_info`).
///
/// # Safety
/// `tp` is a live tether class ([`is_tether_class`]).
pub unsafe fn class_info_slot(tp: *mut ffi::PyTypeObject) -> *mut *const core::ffi::c_void {
    // SAFETY: the metaclass's instances are CLASS_INFO_OFFSET + one pointer bytes (caller).
    unsafe { tp.cast::<u8>().add(CLASS_INFO_OFFSET).cast() }
}

/// Is `tp` a tether class (its metatype is, or derives from, the tether metaclass)? Every such
/// class was checked and patched to the wrapper layout at creation (see `crate::meta`).
///
/// # Safety
/// `tp` is a live type object; GIL held.
#[inline]
pub unsafe fn is_tether_class(tp: *mut ffi::PyTypeObject) -> bool {
    let meta = META_TYPE.load(Relaxed);
    // SAFETY: `tp` is live, so its type is readable; PyType_IsSubtype only reads the MROs.
    unsafe {
        let mt = ffi::Py_TYPE(tp.cast());
        mt == meta || (!meta.is_null() && ffi::PyType_IsSubtype(mt, meta) != 0)
    }
}

/// Is `o` a tether wrapper?
///
/// # Safety
/// `o` is a live object; GIL held.
#[inline]
pub unsafe fn is_wrapper(o: *mut ffi::PyObject) -> bool {
    // SAFETY: `o` is live, so its type is a live type object.
    unsafe { is_tether_class(ffi::Py_TYPE(o)) }
}

/// A type's `__name__` (the last part of `tp_name`).
///
/// # Safety
/// `tp` is a live type; GIL held.
pub unsafe fn type_name(tp: *mut ffi::PyTypeObject) -> String {
    // SAFETY: tp_name is a NUL-terminated C string owned by the type.
    let full = unsafe { core::ffi::CStr::from_ptr((*tp).tp_name) };
    let full = full.to_string_lossy();
    full.rsplit('.').next().unwrap_or(&full).to_string()
}

/// A `PyType_Spec` member table of one read-only `Py_ssize_t` offset member (what CPython reads
/// `__weaklistoffset__` and `__vectorcalloffset__` from), with its terminator. Immutable, and
/// holds only pointers to static C strings, so it can be a plain `static`.
pub struct OffsetMember([ffi::PyMemberDef; 2]);

// SAFETY: see the type's docs: never written, only static strings behind the pointers.
unsafe impl Sync for OffsetMember {}

impl OffsetMember {
    /// The table for member `name` at byte `offset`.
    pub const fn new(name: &'static core::ffi::CStr, offset: usize) -> Self {
        OffsetMember([
            ffi::PyMemberDef {
                name: name.as_ptr(),
                type_code: ffi::Py_T_PYSSIZET,
                offset: offset as ffi::Py_ssize_t,
                flags: ffi::Py_READONLY,
                doc: ptr::null(),
            },
            ffi::PyMemberDef {
                name: ptr::null(),
                type_code: 0,
                offset: 0,
                flags: 0,
                doc: ptr::null(),
            },
        ])
    }

    /// The table, as `Py_tp_members` wants it.
    pub fn as_slot_ptr(&'static self) -> *mut core::ffi::c_void {
        self.0.as_ptr().cast_mut().cast()
    }
}

/// A small helper type of the extension (not a tether class): instances of `basicsize` bytes,
/// no GC, no subclasses, the given `(slot, function)` pairs (the terminating zero slot is added
/// here). The field descriptor and the list iterator are made this way.
///
/// # Safety
/// Each `pfunc` has the signature its slot expects; attached.
pub unsafe fn plain_type(
    py: pyo3::Python<'_>,
    name: &'static core::ffi::CStr,
    basicsize: usize,
    slots: &[(core::ffi::c_int, *mut core::ffi::c_void)],
) -> pyo3::PyResult<*mut ffi::PyTypeObject> {
    let mut table: Vec<ffi::PyType_Slot> = slots
        .iter()
        .map(|&(slot, pfunc)| ffi::PyType_Slot { slot, pfunc })
        .chain(core::iter::once(ffi::PyType_Slot {
            slot: 0,
            pfunc: ptr::null_mut(),
        }))
        .collect();
    let mut spec = ffi::PyType_Spec {
        name: name.as_ptr(),
        basicsize: basicsize as i32,
        itemsize: 0,
        flags: ffi::Py_TPFLAGS_DEFAULT as u32,
        slots: table.as_mut_ptr(),
    };
    // SAFETY: the spec and its slot table live across the call, which copies what it needs;
    // the slots' signatures are the caller's promise.
    let tp = unsafe { ffi::PyType_FromSpec(&mut spec) };
    if tp.is_null() {
        return Err(pyo3::PyErr::fetch(py));
    }
    Ok(tp.cast())
}

/// The end of a [`plain_type`] instance's `tp_dealloc`: its memory back to CPython's
/// allocator (where `PyType_GenericAlloc` took it), then the instance's reference to its type.
///
/// # Safety
/// `o` is a dying instance of a [`plain_type`] whose own references are already released.
pub unsafe fn free_plain_instance(o: *mut ffi::PyObject) {
    // SAFETY: forwarded (caller); heap-type instances own a reference to their type.
    unsafe {
        let tp = ffi::Py_TYPE(o);
        ffi::PyObject_Free(o.cast());
        ffi::Py_DECREF(tp.cast());
    }
}

//! The tie word: its tag helpers, its atomic operations, and where it sits.
//!
//! * Every tag combination (0..=7) round-trips through `tie_with` / `tie_ptr` / `tie_tag` for
//!   real (dereferenceable: provenance is kept) and made-up pointers, low and high addresses.
//! * A misaligned pointer, or a tag outside the mask, is caught by `debug_assert!` in debug
//!   builds.
//! * The states and their moves as the owner makes them (detached, bound, claimed, parked,
//!   revived), with `load` / `store` / `swap` / `compare_exchange(_weak)`.
//! * `tie_of` is `obj - 8` (Wide, Narrow) and `aux_of` is `obj - 16` (Wide), for every alignment.

#[macro_use]
mod common;

use allocator_api2::alloc::{Allocator, Layout};
use common::*;
use core::ffi::c_void;
use core::sync::atomic::Ordering::{AcqRel, Acquire, Relaxed, Release};
use tether_alloc::{
    aux_of, tie_of, tie_ptr, tie_tag, tie_with, HeaderAlloc, HeaderKind, Narrow, NoStats, TieWord,
    Wide, TIE_ALIGN, TIE_BUSY, TIE_LOCK, TIE_PARKED, TIE_TAG_MASK,
};

static DETACHED: TieWord = TieWord::new();

#[test]
fn constants() {
    assert_eq!((TIE_PARKED, TIE_BUSY, TIE_LOCK), (1, 2, 4));
    assert_eq!((TIE_TAG_MASK, TIE_ALIGN), (7, 8));
    assert_eq!(
        core::mem::size_of::<TieWord>(),
        core::mem::size_of::<usize>()
    );
    assert!(DETACHED.load(Relaxed).is_null());
    assert!(TieWord::default().load(Relaxed).is_null());
}

#[test]
fn every_tag_round_trips() {
    // Real wrapper memory: 8-aligned (TIE_ALIGN), and still usable after a tag round trip.
    let mut words = vec![0u64; 4];
    let base = words.as_mut_ptr();
    // SAFETY: `i < 4`: in bounds of `words`.
    let real: Vec<*mut c_void> = (0..4).map(|i| unsafe { base.add(i) }.cast()).collect();
    let fake_ptrs = [8, 0x1000, 0x7fff_ffff_fff8, usize::MAX & !7].map(fake);
    for &p in real.iter().chain(&fake_ptrs) {
        assert_eq!(p.addr() % TIE_ALIGN, 0);
        for tag in 0..=TIE_TAG_MASK {
            let word = tie_with(p, tag);
            assert_eq!(word.addr(), p.addr() | tag);
            assert_eq!(tie_tag(word), tag, "{p:p} {tag}");
            assert_eq!(tie_ptr(word), p, "{p:p} {tag}");
            // Composing again from the parts gives the same word; so does adding tags one by one.
            assert_eq!(tie_with(tie_ptr(word), tie_tag(word)), word);
            let mut acc = tie_with(p, 0);
            for bit in [TIE_PARKED, TIE_BUSY, TIE_LOCK] {
                if tag & bit != 0 {
                    acc = tie_with(tie_ptr(acc), tie_tag(acc) | bit);
                }
            }
            assert_eq!(acc, word);
        }
    }
    for (i, &p) in real.iter().enumerate() {
        for tag in 0..=TIE_TAG_MASK {
            // SAFETY: `p` points into `words`, alive; the untagged pointer keeps its provenance.
            unsafe { *tie_ptr(tie_with(p, tag)).cast::<u64>() += 1 };
        }
        assert_eq!(words[i], 8);
    }
    // The null pointer with tags (never stored by the runtime, but well-defined here).
    assert_eq!(tie_tag(tie_with(core::ptr::null_mut(), TIE_BUSY)), TIE_BUSY);
    assert!(tie_ptr(tie_with(core::ptr::null_mut(), TIE_BUSY)).is_null());
}

#[cfg(debug_assertions)]
#[test]
#[should_panic(expected = "not 8-aligned")]
fn misaligned_pointer_is_caught() {
    tie_with(fake(0x1004), 0);
}

#[cfg(debug_assertions)]
#[test]
#[should_panic(expected = "not 8-aligned")]
fn misaligned_pointer_with_tag_is_caught() {
    tie_with(fake(0x1001), TIE_PARKED);
}

#[cfg(debug_assertions)]
#[test]
#[should_panic(expected = "outside the mask")]
fn tag_outside_the_mask_is_caught() {
    tie_with(fake(0x1000), 0b1000);
}

/// The states and the owner's moves between them, with the claim bit held during each move.
#[test]
fn states_and_moves() {
    let mut wrapper = [0u64; 2];
    let w = wrapper.as_mut_ptr().cast::<c_void>();
    let tie = TieWord::new();
    // (a) -> claim -> (b): bind a fresh wrapper.
    assert_eq!(
        tie.compare_exchange(
            core::ptr::null_mut(),
            tie_with(core::ptr::null_mut(), TIE_BUSY),
            Acquire,
            Relaxed
        ),
        Ok(core::ptr::null_mut())
    );
    tie.store(tie_with(w, 0), Release);
    assert_eq!(
        (tie_ptr(tie.load(Acquire)), tie_tag(tie.load(Acquire))),
        (w, 0)
    );
    // A second claimant loses while the word is bound-and-claimed.
    let bound = tie.load(Acquire);
    tie.compare_exchange(bound, tie_with(w, TIE_BUSY), Acquire, Relaxed)
        .unwrap();
    let lost = tie.compare_exchange(bound, tie_with(w, TIE_BUSY), Acquire, Relaxed);
    assert_eq!(lost, Err(tie_with(w, TIE_BUSY)));
    // (b) -> (c): park (the wrapper died, its memory is kept).
    tie.store(tie_with(w, TIE_PARKED), Release);
    // (c) -> claim -> (b): revive at the same address, with the weak variant in a loop.
    let mut cur = tie.load(Relaxed);
    loop {
        assert_eq!(tie_tag(cur) & TIE_BUSY, 0);
        match tie.compare_exchange_weak(
            cur,
            tie_with(tie_ptr(cur), tie_tag(cur) | TIE_BUSY),
            Acquire,
            Relaxed,
        ) {
            Ok(_) => break,
            Err(now) => cur = now,
        }
    }
    assert_eq!(tie_tag(tie.load(Relaxed)), TIE_PARKED | TIE_BUSY);
    tie.store(tie_with(tie_ptr(cur), 0), Release);
    assert_eq!(tie.load(Acquire), w);
    // (b) -> (a): detach, taking the word whole.
    assert_eq!(tie.swap(core::ptr::null_mut(), AcqRel), w);
    assert!(tie.load(Relaxed).is_null());
    // The wrapper memory is untouched by all of it.
    assert_eq!(wrapper, [0, 0]);
}

/// `tie_of` / `aux_of` are pure arithmetic for every alignment, and the words are the ones the
/// allocator zeroes and moves.
fn words_are_at_fixed_offsets<K: HeaderKind>() {
    let alloc = HeaderAlloc::<_, NoStats, K>::from_parts(tether_alloc::DEFAULT_INNER, NoStats);
    for &align in &ALIGNS {
        let l = Layout::from_size_align(align * 3, align).unwrap();
        let obj = alloc.allocate(l).unwrap().cast::<u8>();
        // SAFETY: `obj` is live with layout `l` (a Wide or Narrow object).
        unsafe {
            let tie = tie_of(obj);
            assert_eq!((tie as *const TieWord).addr() + 8, obj.as_ptr().addr());
            assert_eq!((tie as *const TieWord).addr() % TIE_ALIGN, 0);
            tie.store(tie_with(fake(0x5550), TIE_PARKED), Relaxed);
            assert_eq!(tie_of(obj).load(Relaxed).addr(), 0x5551);
            if K::SIZE == 16 {
                let aux = aux_of(obj);
                assert_eq!(
                    (aux as *const _ as *const u8).addr() + 16,
                    obj.as_ptr().addr()
                );
                aux.store(fake(0x7770).cast(), Relaxed);
                assert_eq!(raw_header_words::<K>(obj), [0x7770, 0x5551]);
            } else {
                assert_eq!(raw_header_words::<K>(obj), [0x5551]);
            }
            tie.store(core::ptr::null_mut(), Relaxed);
            alloc.deallocate(obj, l);
        }
    }
}

#[test]
fn words_are_at_fixed_offsets_wide() {
    words_are_at_fixed_offsets::<Wide>();
}

#[test]
fn words_are_at_fixed_offsets_narrow() {
    words_are_at_fixed_offsets::<Narrow>();
}

//! A size class's depot: its shared free list, the slab being carved, and the registry of its
//! slabs. Every method runs under the class's mutex (`&mut self` through the guard).
//!
//! Invariants (in addition to those of [`super`]):
//! 1. `slabs` is sorted by base address. Each entry is a live allocation of the pool's inner
//!    allocator with the class's `slab_layout`, owned by this depot alone.
//! 2. `head` starts a null-terminated intrusive list of exactly `len` free blocks of slabs in
//!    `slabs`.
//! 3. If `bump_left > 0`, `bump` is the first of the last `bump_left` blocks of one slab in
//!    `slabs` (the bump slab), none of which was ever handed out (uncarved). All other slabs are
//!    fully carved. If `bump_left == 0`, `bump` is null.
//! 4. `cached` is the sum of the bin lengths the live caches of this class last reported;
//!    `floor` is at most the depot's free blocks just after the last trim (lowered by takes).

use super::block::{poison, read_link, write_link};
use super::config::ClassInfo;
use super::SlabPoolStats;
use allocator_api2::alloc::{AllocError, Allocator};
use core::ptr::{null_mut, NonNull};

/// One slab in the registry.
#[derive(Debug)]
struct SlabRec {
    base: NonNull<u8>,
    /// Scratch for `trim`: blocks of this slab found free.
    free: usize,
}

/// The shared state of one size class (see the module invariants).
#[derive(Debug)]
pub(super) struct Depot {
    head: *mut u8,
    len: usize,
    bump: *mut u8,
    bump_left: usize,
    floor: usize,
    cached: usize,
    slabs: Vec<SlabRec>,
}

// SAFETY: the raw pointers point into slabs this depot owns (invariants 1-3), not into any
// thread's state; the depot lives behind a Mutex, so moving its ownership between threads is
// sound.
unsafe impl Send for Depot {}

impl Depot {
    pub(super) const fn new() -> Depot {
        Depot {
            head: null_mut(),
            len: 0,
            bump: null_mut(),
            bump_left: 0,
            floor: 0,
            cached: 0,
            slabs: Vec::new(),
        }
    }

    /// Blocks here: listed or uncarved.
    #[inline]
    fn free_blocks(&self) -> usize {
        self.len + self.bump_left
    }

    /// Takes a null-terminated chain of `1..=want` blocks (`want >= 1`), from the free list if it
    /// is not empty, else carved from the bump slab (getting a new slab from `inner` when there
    /// is none). Returns the chain's first block and its length. In debug builds every block
    /// of the chain is poisoned after its link word.
    pub(super) fn take<A: Allocator>(
        &mut self,
        want: usize,
        info: &ClassInfo,
        inner: &A,
    ) -> Result<(NonNull<u8>, usize), AllocError> {
        let taken = if let Some(first) = NonNull::new(self.head) {
            let mut last = first;
            let mut n = 1;
            // SAFETY: invariant 2: `len` blocks are listed from `head`, each holding its link;
            // we walk at most to the null terminator and cut the chain after `last`.
            unsafe {
                while n < want {
                    match NonNull::new(read_link(last)) {
                        Some(next) => last = next,
                        None => break,
                    }
                    n += 1;
                }
                self.head = read_link(last);
                write_link(last, null_mut());
            }
            self.len -= n;
            (first, n)
        } else {
            if self.bump_left == 0 {
                self.grow(info, inner)?;
            }
            let n = want.min(self.bump_left);
            // SAFETY: invariant 3: bump_left > 0, so `bump` is a non-null uncarved block.
            let first = unsafe { NonNull::new_unchecked(self.bump) };
            // SAFETY: invariant 3: the `n <= bump_left` blocks from `bump` are uncarved blocks
            // of the bump slab, owned by nobody else; linking and poisoning them makes them a
            // free chain (invariant 3 of `super`). The last step stays within the slab (or
            // one past its end, which we never store).
            unsafe {
                for i in 0..n {
                    let block = first.add(i * info.size);
                    poison(block, info.size);
                    let next = if i + 1 < n {
                        block.add(info.size).as_ptr()
                    } else {
                        null_mut()
                    };
                    write_link(block, next);
                }
                self.bump_left -= n;
                self.bump = if self.bump_left == 0 {
                    null_mut()
                } else {
                    first.add(n * info.size).as_ptr()
                };
            }
            (first, n)
        };
        self.floor = self.floor.min(self.free_blocks());
        Ok(taken)
    }

    /// Registers a new slab from `inner` as the bump slab. Only called with `bump_left == 0`.
    fn grow<A: Allocator>(&mut self, info: &ClassInfo, inner: &A) -> Result<(), AllocError> {
        debug_assert_eq!(self.bump_left, 0);
        // Reserve first, so that registering cannot fail (or panic) once we hold the slab.
        self.slabs.try_reserve(1).map_err(|_| AllocError)?;
        let base = inner.allocate(info.slab_layout)?.cast::<u8>();
        let addr = base.as_ptr().addr();
        let at = self
            .slabs
            .partition_point(|s| s.base.as_ptr().addr() < addr);
        self.slabs.insert(at, SlabRec { base, free: 0 });
        self.bump = base.as_ptr();
        self.bump_left = info.cap;
        Ok(())
    }

    /// Pushes a chain of `n` blocks, `first` to `last`, onto the free list; then trims if the
    /// free blocks exceed the floor by more than the class's retention.
    ///
    /// # Safety
    /// `first ..= last` is a chain of `n` blocks of this class's slabs linked through their first
    /// words (the link of `last` is overwritten), owned by the caller and referenced by nobody
    /// afterwards, poisoned in debug builds.
    pub(super) unsafe fn give<A: Allocator>(
        &mut self,
        first: NonNull<u8>,
        last: NonNull<u8>,
        n: usize,
        info: &ClassInfo,
        inner: &A,
    ) {
        // SAFETY: forwarded to the caller: `last` is an owned block of this class.
        unsafe { write_link(last, self.head) };
        self.head = first.as_ptr();
        self.len += n;
        if self.free_blocks() > self.floor.saturating_add(info.retain) {
            self.trim(info, inner);
        }
    }

    /// A cache that last reported `old` blocks in its bin now holds `new`.
    #[inline]
    pub(super) fn report(&mut self, old: u32, new: u32) {
        // `cached` includes `old` (invariant 4), so this cannot underflow.
        self.cached = self.cached + new as usize - old as usize;
    }

    /// The index in `slabs` of the slab holding `p`, trying `hint` first.
    fn find(&self, p: *mut u8, hint: usize, slab_bytes: usize) -> usize {
        let a = p.addr();
        if let Some(s) = self.slabs.get(hint) {
            let base = s.base.as_ptr().addr();
            if a >= base && a - base < slab_bytes {
                return hint;
            }
        }
        // Invariant 2/3: `p` lies in some slab, so at least one base is <= a.
        self.slabs.partition_point(|s| s.base.as_ptr().addr() <= a) - 1
    }

    /// Releases every slab whose blocks are all listed or uncarved, unlinking their blocks from
    /// the free list first. Returns the bytes released. O(listed blocks * log(slabs)).
    pub(super) fn trim<A: Allocator>(&mut self, info: &ClassInfo, inner: &A) -> usize {
        if self.slabs.is_empty() {
            return 0;
        }
        let bytes = info.slab_layout.size();
        for s in &mut self.slabs {
            s.free = 0;
        }
        let mut hint = 0;
        if self.bump_left > 0 {
            hint = self.find(self.bump, 0, bytes);
            self.slabs[hint].free = self.bump_left;
        }
        let mut p = self.head;
        while let Some(block) = NonNull::new(p) {
            hint = self.find(p, hint, bytes);
            self.slabs[hint].free += 1;
            // SAFETY: invariant 2: `block` is listed, so its link is initialized.
            p = unsafe { read_link(block) };
        }
        let cap = info.cap;
        let releasable = self.slabs.iter().filter(|s| s.free == cap).count();
        if releasable > 0 {
            // Relink the list without the blocks of releasable slabs, keeping its order.
            let mut kept_head: *mut u8 = null_mut();
            let mut kept_tail: Option<NonNull<u8>> = None;
            let mut kept = 0;
            let mut p = self.head;
            while let Some(block) = NonNull::new(p) {
                // SAFETY: invariant 2: `block` is listed; its slab is still allocated.
                p = unsafe { read_link(block) };
                hint = self.find(block.as_ptr(), hint, bytes);
                if self.slabs[hint].free != cap {
                    match kept_tail {
                        // SAFETY: `tail` is a listed block we own under the lock.
                        Some(tail) => unsafe { write_link(tail, block.as_ptr()) },
                        None => kept_head = block.as_ptr(),
                    }
                    kept_tail = Some(block);
                    kept += 1;
                }
            }
            if let Some(tail) = kept_tail {
                // SAFETY: as above.
                unsafe { write_link(tail, null_mut()) };
            }
            self.head = kept_head;
            self.len = kept;
            if self.bump_left > 0 && self.slabs[self.find(self.bump, 0, bytes)].free == cap {
                self.bump = null_mut();
                self.bump_left = 0;
            }
            self.slabs.retain(|s| {
                if s.free != cap {
                    return true;
                }
                // SAFETY: depot invariant 1: `s.base` is a live slab of `inner` with this
                // layout; all of its blocks were listed or uncarved (none out, invariant 2 of
                // `super`), none is listed any more, and the entry leaves the registry here.
                unsafe { inner.deallocate(s.base, info.slab_layout) };
                false
            });
        }
        self.floor = self.free_blocks();
        releasable * bytes
    }

    /// Returns every slab to `inner` and empties the depot (pool drop).
    pub(super) fn release_all<A: Allocator>(&mut self, info: &ClassInfo, inner: &A) {
        for s in self.slabs.drain(..) {
            // SAFETY: depot invariant 1: a live slab of `inner` with this layout, leaving the
            // registry here so released once. The pool is being dropped (invariant 4 of
            // `super`); no cache exists and callers have freed their blocks.
            unsafe { inner.deallocate(s.base, info.slab_layout) };
        }
        *self = Depot {
            slabs: core::mem::take(&mut self.slabs),
            ..Depot::new()
        };
    }

    /// Adds this class's counts to `s`.
    pub(super) fn add_stats(&self, info: &ClassInfo, s: &mut SlabPoolStats) {
        let held = self.slabs.len() * info.cap;
        let out = held - self.free_blocks();
        s.slabs += self.slabs.len();
        s.bytes_held += self.slabs.len() * info.slab_layout.size();
        s.free_blocks += self.free_blocks();
        s.cached_blocks += self.cached;
        s.in_use_blocks += out.saturating_sub(self.cached);
    }
}

//! Spans: runs of pages holding objects of one size class (or one large object), with their side
//! bitmaps.
//!
//! Each span has two bitmaps, one bit per object slot, kept beside the objects (never in them):
//! - **alloc bits** say which slots held a live object when the span was last swept. Slots below
//!   `free_index` are allocated too (Go's scheme): an allocator walks `free_index` forward over
//!   free slots, using `alloc_cache`, the inverted alloc bits of the current 64-slot word shifted
//!   so that bit 0 is slot `free_index`. So a slot is allocated iff `i < free_index || alloc[i]`.
//! - **mark bits** are set atomically by the marker (and by black allocation). Sweeping turns the
//!   mark bits into the next alloc bits and clears the mark bits.
//!
//! Ownership: the allocation state (`AllocState`) belongs to exactly one *holder* at a time — the
//! per-thread cache that has the span, the sweeper that popped it from a list, or the central list
//! (under its lock). Handing a span over always goes through a lock or a handshake, which orders
//! the previous holder's writes before the next holder's reads. Everything else in a span is either
//! immutable after creation or atomic, so the marker may read it at any time.
//!
//! `sweepgen` follows Go: with the heap's sweep generation `sg`, a span with `sweepgen == sg - 2`
//! still needs sweeping for this cycle, `sg - 1` is being swept, and `sg` is swept.

use super::size_class::{CLASS_PAGES, CLASS_SIZES, NUM_CLASSES, PAGE_SIZE};
use crate::sync::{AtomicU32, AtomicU64, Ordering};
use std::cell::UnsafeCell;

/// What a span's objects need: scanning (they may hold GC references) and/or drop glue.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct SpanKind(pub(crate) u8);

impl SpanKind {
    pub(crate) const COUNT: usize = 4;
    #[inline]
    pub(crate) const fn new(scan: bool, drop: bool) -> SpanKind {
        SpanKind(scan as u8 | ((drop as u8) << 1))
    }
    #[inline]
    pub(crate) const fn scan(self) -> bool {
        self.0 & 1 != 0
    }
    #[inline]
    pub(crate) const fn drop(self) -> bool {
        self.0 & 2 != 0
    }
    #[inline]
    pub(crate) const fn index(self) -> usize {
        self.0 as usize
    }
}

/// Most objects a span holds: class 16 on one page. Bitmaps are inline arrays of this many bits,
/// so making or recycling a span allocates nothing.
pub(crate) const MAX_SPAN_OBJECTS: usize = {
    let mut max = 1;
    let mut c = 0;
    while c < NUM_CLASSES {
        let n = CLASS_PAGES[c] as usize * PAGE_SIZE / CLASS_SIZES[c] as usize;
        if n > max {
            max = n;
        }
        c += 1;
    }
    max
};
/// Words of one bitmap.
pub(crate) const BITMAP_WORDS: usize = MAX_SPAN_OBJECTS.div_ceil(64);

/// The allocation state of a span, owned by its current holder (see the module docs).
pub(crate) struct AllocState {
    /// Every slot below this index is allocated.
    pub(crate) free_index: usize,
    /// Inverted alloc bits of word `free_index / 64`, shifted so bit 0 is slot `free_index`.
    pub(crate) alloc_cache: u64,
    /// Slots that were live at the last sweep (the first `nelems` bits).
    pub(crate) alloc_bits: [u64; BITMAP_WORDS],
    /// Words of the bitmaps in use.
    pub(crate) words: usize,
    /// Allocated slots (live at the last sweep plus allocated since).
    pub(crate) alloc_count: usize,
}

/// A run of pages holding objects of one size class, or one large object.
pub(crate) struct Span {
    pub(crate) base: usize,
    pub(crate) npages: usize,
    /// Size class, or [`Span::LARGE`].
    pub(crate) class: u8,
    pub(crate) kind: SpanKind,
    /// Bytes per slot (the whole span for a large object).
    pub(crate) elem_size: usize,
    pub(crate) nelems: usize,
    pub(crate) sweepgen: AtomicU32,
    pub(crate) mark_bits: [AtomicU64; BITMAP_WORDS],
    alloc: UnsafeCell<AllocState>,
}

// SAFETY: `alloc` is only touched by the span's single holder (module docs), and every other field
// is immutable or atomic.
unsafe impl Sync for Span {}
// SAFETY: as above; a span moves between threads only through locks or handshakes.
unsafe impl Send for Span {}

impl Span {
    pub(crate) const LARGE: u8 = u8::MAX;

    pub(crate) fn new(base: usize, npages: usize, class: u8, kind: SpanKind, elem_size: usize, sweepgen: u32) -> Span {
        let nelems = (npages * PAGE_SIZE) / elem_size;
        let words = nelems.div_ceil(64);
        assert!(words <= BITMAP_WORDS, "a span of {nelems} objects");
        Span {
            base,
            npages,
            class,
            kind,
            elem_size,
            nelems,
            sweepgen: AtomicU32::new(sweepgen),
            mark_bits: std::array::from_fn(|_| AtomicU64::new(0)),
            alloc: UnsafeCell::new(AllocState {
                free_index: 0,
                alloc_cache: !0,
                alloc_bits: [0; BITMAP_WORDS],
                words,
                alloc_count: 0,
            }),
        }
    }

    /// The allocation state.
    ///
    /// # Safety
    /// The caller is the span's current holder (module docs), and holds no other reference from
    /// this method alive.
    #[inline]
    #[allow(clippy::mut_from_ref)]
    pub(crate) unsafe fn alloc_state(&self) -> &mut AllocState {
        // SAFETY: exclusive by the holder rule, which the caller guarantees.
        unsafe { &mut *self.alloc.get() }
    }

    /// Slot index of the object starting at or containing `addr`.
    #[inline]
    pub(crate) fn slot_of(&self, addr: usize) -> usize {
        (addr - self.base) / self.elem_size
    }

    /// Start address of slot `i`.
    #[inline]
    pub(crate) fn slot_addr(&self, i: usize) -> usize {
        self.base + i * self.elem_size
    }

    /// Sets the mark bit of slot `i`; returns whether it was clear before (the caller greyed it).
    #[inline]
    pub(crate) fn mark(&self, i: usize) -> bool {
        let bit = 1u64 << (i % 64);
        let word = &self.mark_bits[i / 64];
        // A plain load first: most shades hit objects already marked, and a load does not take the
        // cache line exclusive.
        if word.load(Ordering::Relaxed) & bit != 0 {
            return false;
        }
        word.fetch_or(bit, Ordering::AcqRel) & bit == 0
    }

    /// Whether slot `i` is marked.
    #[inline]
    pub(crate) fn is_marked(&self, i: usize) -> bool {
        self.mark_bits[i / 64].load(Ordering::Acquire) & (1u64 << (i % 64)) != 0
    }

    /// Whether every slot is allocated.
    ///
    /// # Safety
    /// As for [`Span::alloc_state`].
    #[inline]
    pub(crate) unsafe fn is_full(&self) -> bool {
        // SAFETY: forwarded from the caller.
        unsafe { self.alloc_state().alloc_count >= self.nelems }
    }
}

impl AllocState {
    /// The fast path: the next free slot if it lies in the cached 64-slot word (Go's
    /// `nextFreeFast`). No atomics, no locks.
    #[inline(always)]
    pub(crate) fn alloc_fast(&mut self, nelems: usize) -> Option<usize> {
        let bit = self.alloc_cache.trailing_zeros() as usize;
        if bit < 64 {
            let result = self.free_index + bit;
            if result < nelems {
                let next = result + 1;
                if !(next % 64 == 0 && next != nelems) {
                    self.alloc_cache = self.alloc_cache.checked_shr(bit as u32 + 1).unwrap_or(0);
                    self.free_index = next;
                    self.alloc_count += 1;
                    return Some(result);
                }
            }
        }
        None
    }

    /// The next free slot anywhere in the span (Go's `nextFreeIndex`), or `None` if it is full.
    pub(crate) fn alloc_slow(&mut self, nelems: usize) -> Option<usize> {
        let mut free_index = self.free_index;
        if free_index >= nelems {
            return None;
        }
        let mut bit = self.alloc_cache.trailing_zeros() as usize;
        while bit == 64 {
            free_index = (free_index + 64) & !63;
            if free_index >= nelems {
                self.free_index = nelems;
                return None;
            }
            self.refill_cache(free_index);
            bit = self.alloc_cache.trailing_zeros() as usize;
        }
        let result = free_index + bit;
        if result >= nelems {
            self.free_index = nelems;
            return None;
        }
        self.alloc_cache = self.alloc_cache.checked_shr(bit as u32 + 1).unwrap_or(0);
        free_index = result + 1;
        if free_index % 64 == 0 && free_index != nelems {
            self.refill_cache(free_index);
        }
        self.free_index = free_index;
        self.alloc_count += 1;
        Some(result)
    }

    /// Loads `alloc_cache` for the word starting at `index` (a multiple of 64).
    #[inline]
    fn refill_cache(&mut self, index: usize) {
        self.alloc_cache = !self.alloc_bits[index / 64];
    }

    /// Resets to the state right after a sweep: `alloc_bits` (already replaced by the marks) are
    /// the live slots; allocation restarts at slot 0.
    pub(crate) fn reset_after_sweep(&mut self, live: usize) {
        self.free_index = 0;
        self.alloc_count = live;
        self.alloc_cache = 0;
        self.refill_cache(0);
    }

    /// Whether slot `i` holds an object (live at the last sweep, or allocated since).
    #[inline]
    pub(crate) fn is_allocated(&self, i: usize) -> bool {
        i < self.free_index || self.alloc_bits[i / 64] & (1 << (i % 64)) != 0
    }

    /// Mask of allocated slots in word `w` (see [`AllocState::is_allocated`]).
    #[inline]
    pub(crate) fn allocated_word(&self, w: usize) -> u64 {
        let below = if self.free_index >= (w + 1) * 64 {
            !0
        } else if self.free_index <= w * 64 {
            0
        } else {
            (1u64 << (self.free_index - w * 64)) - 1
        };
        self.alloc_bits[w] | below
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(nelems: usize, live: &[usize]) -> AllocState {
        let mut bits = vec![0u64; nelems.div_ceil(64)];
        for &i in live {
            bits[i / 64] |= 1 << (i % 64);
        }
        let words = bits.len();
        bits.resize(BITMAP_WORDS, 0);
        let mut s =
            AllocState { free_index: 0, alloc_cache: 0, alloc_bits: bits.try_into().unwrap(), words, alloc_count: 0 };
        s.reset_after_sweep(live.len());
        s
    }

    fn alloc(s: &mut AllocState, nelems: usize) -> Option<usize> {
        s.alloc_fast(nelems).or_else(|| s.alloc_slow(nelems))
    }

    #[test]
    fn allocation_visits_exactly_the_free_slots_in_order() {
        let nelems = 200;
        let live: Vec<usize> = (0..nelems).filter(|i| i % 3 == 0 || (64..130).contains(i)).collect();
        let mut s = state(nelems, &live);
        let mut got = Vec::new();
        while let Some(i) = alloc(&mut s, nelems) {
            got.push(i);
        }
        let want: Vec<usize> = (0..nelems).filter(|i| !live.contains(i)).collect();
        assert_eq!(got, want);
        assert_eq!(s.alloc_count, nelems);
        for i in 0..nelems {
            assert!(s.is_allocated(i));
        }
    }

    #[test]
    fn allocated_word_matches_is_allocated() {
        let nelems = 300;
        let mut s = state(nelems, &[1, 70, 199, 250]);
        for _ in 0..140 {
            alloc(&mut s, nelems);
        }
        for w in 0..nelems.div_ceil(64) {
            let m = s.allocated_word(w);
            for b in 0..64 {
                let i = w * 64 + b;
                if i < nelems {
                    assert_eq!(m & (1 << b) != 0, s.is_allocated(i), "slot {i}");
                }
            }
        }
    }

    #[test]
    fn a_full_span_yields_nothing() {
        let nelems = 64;
        let live: Vec<usize> = (0..64).collect();
        let mut s = state(nelems, &live);
        assert_eq!(alloc(&mut s, nelems), None);
    }
}

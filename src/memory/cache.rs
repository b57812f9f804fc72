//! Per-thread allocation caches (Go's `mcache`).
//!
//! A cache holds at most one span per size class and kind. Allocation takes the next free slot of
//! that span from its alloc-bit cache: no lock, no atomic read-modify-write. When the span has no
//! free slot left, the out-of-line slow path swaps it for another from the central lists.
//!
//! **Colour.** While a cycle marks, a thread that has taken its snapshot allocates *black*: the
//! new object's mark bit is set (an atomic OR, the one exception to the rule above). But only in
//! spans that this cycle's sweep will visit (`span.sweepgen < black_below`): a mark left in a span
//! that was already swept would survive into the next cycle and make the marker skip the object's
//! children. Each cached span carries its colour, decided when it enters the cache.
//!
//! A cache is owned by one thread's registry entry and used only by whoever the entry's state word
//! makes its owner (the thread inside a scope, or the collector acting for a thread outside one).

use super::size_class::NUM_CLASSES;
use super::span::SpanKind;
use super::{Exhausted, Memory, Scratch, SpanPtr};
use crate::sync::Ordering::Relaxed;

#[derive(Clone, Copy, Default)]
struct Slot {
    span: Option<SpanPtr>,
    black: bool,
}

pub(crate) struct Cache {
    slots: [Slot; NUM_CLASSES * SpanKind::COUNT],
    /// Spans with `sweepgen` below this get black allocation (0: allocate white).
    black_below: u32,
    /// Bytes and objects allocated since the last flush into the heap's counters.
    pub(crate) local_bytes: usize,
    pub(crate) local_objects: usize,
    /// Bytes allocated black since the last flush (they count as marked).
    pub(crate) local_black_bytes: usize,
    /// Large-object spans allocated and not yet published (their object is being initialised).
    pub(crate) pending_large: u32,
    /// Bytes to allocate before the next allocation sample (the heap profile), and the random
    /// state that draws the distances.
    pub(crate) sample_left: isize,
    pub(crate) sample_rng: u64,
    scratch: Scratch,
}

impl Default for Cache {
    fn default() -> Self {
        Cache {
            slots: [Slot::default(); NUM_CLASSES * SpanKind::COUNT],
            black_below: 0,
            local_bytes: 0,
            local_objects: 0,
            local_black_bytes: 0,
            pending_large: 0,
            sample_left: isize::MAX,
            sample_rng: 0,
            scratch: Scratch::default(),
        }
    }
}

impl Cache {
    /// The fast path: a slot of size class `class` for an object of kind `kind` from the cached
    /// span's current 64-slot word, or `None` (take [`Cache::alloc_small`]).
    #[inline(always)]
    pub(crate) fn alloc_fast(&mut self, class: u8, kind: SpanKind) -> Option<usize> {
        let slot = self.slots[class as usize * SpanKind::COUNT + kind.index()];
        let sp = slot.span?;
        // SAFETY: the cache holds this span, and the cache belongs to the running thread.
        let s = unsafe { sp.get() };
        // SAFETY: we are the span's holder.
        let i = unsafe { s.alloc_state() }.alloc_fast(s.nelems)?;
        self.local_bytes += s.elem_size;
        self.local_objects += 1;
        if slot.black {
            self.blacken(s, i);
        }
        Some(s.slot_addr(i))
    }

    #[cold]
    #[inline(never)]
    fn blacken(&mut self, s: &super::span::Span, i: usize) {
        s.mark(i);
        self.local_black_bytes += s.elem_size;
    }

    /// Ends the hold a refill took on the sweep ([`Memory::release_held`]); call it after
    /// queueing the drop glue its `on_dead` collected.
    pub(crate) fn release_held(&mut self, mem: &Memory) {
        mem.release_held(&mut self.scratch);
    }

    /// The slow path: a slot of size class `class` from anywhere in the cached span, or from a
    /// span refilled from the central lists.
    /// `on_dead` decides the slots of dead objects in spans swept on the way (see
    /// [`Memory::refill`]).
    pub(crate) fn alloc_small(
        &mut self,
        mem: &Memory,
        class: u8,
        kind: SpanKind,
        on_dead: &mut dyn FnMut(usize) -> super::Dead,
    ) -> Result<usize, Exhausted> {
        let idx = class as usize * SpanKind::COUNT + kind.index();
        loop {
            let slot = self.slots[idx];
            if let Some(sp) = slot.span {
                // SAFETY: the cache holds this span.
                let s = unsafe { sp.get() };
                // SAFETY: we are its holder.
                if let Some(i) = unsafe { s.alloc_state() }.alloc_slow(s.nelems) {
                    self.local_bytes += s.elem_size;
                    self.local_objects += 1;
                    if slot.black {
                        self.blacken(s, i);
                    }
                    return Ok(s.slot_addr(i));
                }
                self.slots[idx] = Slot::default();
                // SAFETY: we held it, and give it up.
                unsafe { mem.release_span(sp) };
            }
            self.flush_counters(mem);
            let sp = mem.refill(class, kind, &mut self.scratch, on_dead)?;
            self.slots[idx] = Slot { span: Some(sp), black: self.is_black(sp) };
        }
    }

    /// Whether allocation into `sp` must be black now.
    #[inline]
    fn is_black(&self, sp: SpanPtr) -> bool {
        // SAFETY: the caller holds the span, so it is in use.
        unsafe { sp.get() }.sweepgen.load(Relaxed) < self.black_below
    }

    /// Allocates a large object of `size` bytes on a span of its own; returns its address and the
    /// span, which the caller publishes with [`Memory::publish_large`] once the object is written.
    pub(crate) fn alloc_large(
        &mut self,
        mem: &Memory,
        size: usize,
        kind: SpanKind,
    ) -> Result<(usize, SpanPtr), Exhausted> {
        let sp = mem.alloc_large(size, kind)?;
        // SAFETY: the span is new and ours.
        let s = unsafe { sp.get() };
        if self.is_black(sp) {
            self.blacken(s, 0);
        }
        self.local_bytes += s.elem_size;
        self.local_objects += 1;
        self.pending_large += 1;
        self.flush_counters(mem);
        Ok((s.base, sp))
    }

    /// Publishes a large-object span from [`Cache::alloc_large`] once its object is written.
    pub(crate) fn publish_large(&mut self, mem: &Memory, sp: SpanPtr) {
        self.pending_large -= 1;
        // SAFETY: the thread held the new span until now and gives it up.
        unsafe { mem.release_span(sp) };
    }

    /// Starts allocating black in every span this cycle's sweep will visit (`sweepgen <
    /// black_below`); 0 switches back to white.
    pub(crate) fn set_colour(&mut self, black_below: u32) {
        self.black_below = black_below;
        for i in 0..self.slots.len() {
            if let Some(sp) = self.slots[i].span {
                self.slots[i].black = self.is_black(sp);
            }
        }
    }

    /// Hands every cached span back to the central lists (spans this cycle's sweep has not visited
    /// go to its unswept lists).
    pub(crate) fn release_all(&mut self, mem: &Memory) {
        for slot in self.slots.iter_mut() {
            if let Some(sp) = slot.span.take() {
                // SAFETY: the cache held the span and gives it up.
                unsafe { mem.release_span(sp) };
            }
            slot.black = false;
        }
    }

    /// Moves the local allocation counts into the heap's counters.
    pub(crate) fn flush_counters(&mut self, mem: &Memory) {
        let bytes = std::mem::take(&mut self.local_bytes);
        let objects = std::mem::take(&mut self.local_objects);
        let black = std::mem::take(&mut self.local_black_bytes);
        if bytes != 0 {
            mem.counters.allocated_bytes.fetch_add(bytes, Relaxed);
            mem.counters.allocated_objects.fetch_add(objects, Relaxed);
        }
        if black != 0 {
            mem.counters.black_bytes.fetch_add(black, Relaxed);
        }
    }
}

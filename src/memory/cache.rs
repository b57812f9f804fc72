//! Per-thread allocation caches (Go's `mcache`).
//!
//! A cache holds at most one span per size class and kind. Allocation takes the next free slot of
//! that span from its alloc-bit cache: no lock, no atomic read-modify-write (the one exception is
//! black allocation while the collector marks, which sets the new object's mark bit). When the span
//! has no free slot left, the out-of-line slow path swaps it for another from the central lists.
//!
//! A cache is owned by one thread's registry entry and used only by that thread while it is inside
//! a scope; the collector touches it only while the thread is outside every scope (the handshake
//! guarantees the exclusion). That is what makes the plain `&mut` access sound.

use super::size_class::{CLASS_SIZES, NUM_CLASSES};
use super::span::SpanKind;
use super::{Exhausted, Memory, SpanPtr};

pub(crate) struct Cache {
    spans: [Option<SpanPtr>; NUM_CLASSES * SpanKind::COUNT],
    /// Whether new objects are born marked (the thread has answered the snapshot handshake of a
    /// cycle that is marking).
    pub(crate) alloc_black: bool,
    /// Bytes and objects allocated since the last flush into the heap's counters.
    pub(crate) local_bytes: usize,
    pub(crate) local_objects: usize,
}

impl Default for Cache {
    fn default() -> Self {
        Cache { spans: [None; NUM_CLASSES * SpanKind::COUNT], alloc_black: false, local_bytes: 0, local_objects: 0 }
    }
}

impl Cache {
    /// Allocates a slot of size class `class` for an object of kind `kind`; returns its address.
    #[inline(always)]
    pub(crate) fn alloc_small(&mut self, mem: &Memory, class: u8, kind: SpanKind) -> Result<usize, Exhausted> {
        let idx = class as usize * SpanKind::COUNT + kind.index();
        if let Some(sp) = self.spans[idx] {
            // SAFETY: the cache holds this span, and the cache belongs to the running thread.
            let s = unsafe { sp.get() };
            // SAFETY: we are the span's holder.
            if let Some(i) = unsafe { s.alloc_state() }.alloc_fast(s.nelems) {
                self.local_bytes += s.elem_size;
                self.local_objects += 1;
                if self.alloc_black {
                    s.mark(i);
                }
                return Ok(s.slot_addr(i));
            }
        }
        self.alloc_small_slow(mem, idx, class, kind)
    }

    #[cold]
    #[inline(never)]
    fn alloc_small_slow(&mut self, mem: &Memory, idx: usize, class: u8, kind: SpanKind) -> Result<usize, Exhausted> {
        loop {
            if let Some(sp) = self.spans[idx] {
                // SAFETY: the cache holds this span.
                let s = unsafe { sp.get() };
                // SAFETY: we are its holder.
                if let Some(i) = unsafe { s.alloc_state() }.alloc_slow(s.nelems) {
                    self.local_bytes += CLASS_SIZES[class as usize] as usize;
                    self.local_objects += 1;
                    if self.alloc_black {
                        s.mark(i);
                    }
                    return Ok(s.slot_addr(i));
                }
                self.spans[idx] = None;
                // SAFETY: we held it, and give it up.
                unsafe { mem.release_span(sp) };
            }
            self.flush_counters(mem);
            self.spans[idx] = Some(mem.refill(class, kind)?);
        }
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
        if self.alloc_black {
            s.mark(0);
        }
        self.local_bytes += s.elem_size;
        self.local_objects += 1;
        self.flush_counters(mem);
        Ok((s.base, sp))
    }

    /// Hands every cached span back to the central lists (the thread is outside every scope, or
    /// detaching).
    pub(crate) fn release_all(&mut self, mem: &Memory) {
        for slot in self.spans.iter_mut() {
            if let Some(sp) = slot.take() {
                // SAFETY: the cache held the span and gives it up.
                unsafe { mem.release_span(sp) };
            }
        }
    }

    /// Moves the local allocation counts into the heap's counters; returns the bytes moved.
    pub(crate) fn flush_counters(&mut self, mem: &Memory) -> usize {
        let bytes = std::mem::take(&mut self.local_bytes);
        let objects = std::mem::take(&mut self.local_objects);
        if bytes != 0 {
            use crate::sync::Ordering::Relaxed;
            mem.counters.allocated_bytes.fetch_add(bytes, Relaxed);
            mem.counters.allocated_objects.fetch_add(objects, Relaxed);
        }
        bytes
    }
}

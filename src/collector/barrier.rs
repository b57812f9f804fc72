//! The write barrier: Go's hybrid barrier, shading both the value a store overwrites and the value
//! it writes, behind one global flag.
//!
//! When the collector is idle, a barriered store costs one relaxed load of `barrier_on` and a
//! branch that is always predicted the same way. While the flag is on, the store greys the old and
//! the new target itself (sets the mark bit; an object already marked costs one load) and queues
//! grey objects that need scanning in the thread's [`BarrierBuffer`]: a single-producer ring the
//! collector drains itself, so a thread that stays inside one scope never has to answer a flush.
//!
//! Why both targets: shading the *old* value means a deletion can never hide an object from the
//! marker (Yuasa's snapshot barrier); shading the *new* value makes a pointer that moves from a
//! thread into the heap visible without rescanning the thread (Dijkstra's insertion barrier).
//! Together they let each thread take its snapshot at its own scope boundary (Go's design 17503).
//!
//! **The in-barrier flag.** Between loading the old value and marking it, a barrier holds a
//! reference the marker cannot see. The thread raises `in_barrier` (SeqCst) before the load and
//! lowers it after its grey objects are queued; a termination round that finds a thread's flag
//! up is not clean. A barrier that raises the flag after a clean round can only meet black
//! objects (docs/design.md, "Termination").

use super::mark::Work;
use super::mutator::ThreadRecord;
use super::Collector;
use crate::object::HEADER_SIZE;
use crate::sync::{AtomicBool, AtomicPtr, AtomicUsize, Mutex, Ordering};

/// Entries in a thread's barrier ring.
pub(crate) const BARRIER_BUFFER: usize = 256;

/// A single-producer ring of grey objects (payload addresses). The owning thread pushes; any
/// thread drains, under `drain_lock`.
pub(crate) struct BarrierBuffer {
    slots: Box<[AtomicUsize]>,
    /// Next entry to drain (written by drainers).
    head: AtomicUsize,
    /// Next entry to fill (written by the producer).
    tail: AtomicUsize,
    /// The producer is between loading an old value and queueing what it greyed.
    pub(crate) in_barrier: AtomicBool,
    drain_lock: Mutex<()>,
}

impl Default for BarrierBuffer {
    fn default() -> Self {
        BarrierBuffer {
            slots: (0..BARRIER_BUFFER).map(|_| AtomicUsize::new(0)).collect(),
            head: AtomicUsize::new(0),
            tail: AtomicUsize::new(0),
            in_barrier: AtomicBool::new(false),
            drain_lock: Mutex::new(()),
        }
    }
}

impl BarrierBuffer {
    /// Queues `v`; false if the ring is full. Only the owning thread calls this.
    #[inline]
    pub(crate) fn push(&self, v: usize) -> bool {
        let t = self.tail.load(Ordering::Relaxed);
        if t.wrapping_sub(self.head.load(Ordering::Acquire)) >= BARRIER_BUFFER {
            return false;
        }
        self.slots[t % BARRIER_BUFFER].store(v, Ordering::Relaxed);
        self.tail.store(t.wrapping_add(1), Ordering::Release);
        true
    }

    /// Hands every published entry to `f`; returns how many.
    pub(crate) fn drain(&self, mut f: impl FnMut(usize)) -> usize {
        let _g = self.drain_lock.lock();
        let h = self.head.load(Ordering::Relaxed);
        let t = self.tail.load(Ordering::Acquire);
        let n = t.wrapping_sub(h);
        for i in 0..n {
            f(self.slots[h.wrapping_add(i) % BARRIER_BUFFER].load(Ordering::Relaxed));
        }
        self.head.store(t, Ordering::Release);
        n
    }
}

impl Collector {
    /// Whether stores must be barriered now.
    #[inline(always)]
    pub(crate) fn barrier_on(&self) -> bool {
        self.barrier_on.load(Ordering::Relaxed)
    }

    /// A store of `new` into `slot` while the barrier is on: greys the old and the new target,
    /// then stores.
    ///
    /// # Safety
    /// `rec` is the calling thread's record, the thread is inside a scope, and `slot` is a
    /// reference field of an object of this heap; `new` is null or an object of this heap.
    #[cold]
    #[inline(never)]
    pub(crate) unsafe fn barriered_store(&self, rec: &ThreadRecord, slot: &AtomicPtr<u8>, new: *mut u8) {
        let buf = &rec.barrier;
        buf.in_barrier.store(true, Ordering::SeqCst);
        let old = slot.load(Ordering::Acquire);
        self.grey_from_mutator(rec, old as usize);
        self.grey_from_mutator(rec, new as usize);
        slot.store(new, Ordering::Release);
        buf.in_barrier.store(false, Ordering::SeqCst);
    }

    /// Greys `payload` (0 for null) on behalf of a mutator inside a scope.
    fn grey_from_mutator(&self, rec: &ThreadRecord, payload: usize) {
        if payload == 0 {
            return;
        }
        if let Some(scan) = self.grey(payload) {
            if scan && !rec.barrier.push(payload) {
                self.flush_barrier(rec);
                let pushed = rec.barrier.push(payload);
                debug_assert!(pushed);
            }
        }
    }

    /// Sets the mark bit of `payload`'s object. `None` if it was already marked; otherwise
    /// whether the object needs scanning (the caller queues it).
    #[inline]
    pub(crate) fn grey(&self, payload: usize) -> Option<bool> {
        let obj = payload - HEADER_SIZE;
        // SAFETY: `payload` is an object of this heap that a thread or root can reach, so it is
        // allocated and its span is in use.
        let span = unsafe { self.memory.span_of(obj) };
        if !span.mark(span.slot_of(obj)) {
            return None;
        }
        self.grey_events.fetch_add(1, Ordering::SeqCst);
        self.marked_bytes.fetch_add(span.elem_size, Ordering::Relaxed);
        Some(span.kind.scan())
    }

    /// Moves a thread's queued grey objects to the shared mark queue; returns how many.
    pub(crate) fn flush_barrier(&self, rec: &ThreadRecord) -> usize {
        let n = rec.barrier.drain(|p| self.mark.injector.push(Work::new(p)));
        if n > 0 {
            self.mark.wake_workers();
        }
        n
    }

    /// Shades an object a root operation adds or removes while the barrier is on (from any
    /// thread, inside a scope or not).
    pub(crate) fn shade_for_root(&self, payload: usize) {
        if self.barrier_on() {
            if let Some(true) = self.grey(payload) {
                self.mark.injector.push(Work::new(payload));
                self.mark.wake_workers();
            }
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn the_ring_keeps_order_and_reports_full() {
        let b = BarrierBuffer::default();
        for i in 1..=BARRIER_BUFFER {
            assert!(b.push(i));
        }
        assert!(!b.push(0));
        let mut got = Vec::new();
        assert_eq!(b.drain(|v| got.push(v)), BARRIER_BUFFER);
        assert_eq!(got, (1..=BARRIER_BUFFER).collect::<Vec<_>>());
        assert!(b.push(7));
        got.clear();
        b.drain(|v| got.push(v));
        assert_eq!(got, [7]);
    }
}

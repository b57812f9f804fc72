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
//! reference the marker cannot see. The thread raises `in_barrier` before the load and lowers it
//! after its grey objects are queued; a termination round that finds a thread's flag up is not
//! clean. A barrier that raises the flag after a clean round can only meet black objects
//! (docs/design.md, "Termination").
//!
//! **No fence on the store.** Raising the flag must be ordered before the loads of the barrier
//! flag and of the old value (store then load: a Dekker pair with the collector's store of the
//! barrier flag at the end of marking, and with its reading of the flags in a termination round).
//! The store side pays only a [`light_fence`] (a compiler fence where the OS has `membarrier`);
//! the collector pays a [`heavy_fence`] (the system call) once per round and once per end of
//! marking. The flag itself is the thread's own line, stored relaxed and lowered with release.

use super::mark::Work;
use super::mutator::ThreadRecord;
use super::Collector;
use crate::object::HEADER_SIZE;
use crate::sync::{fence, heavy_fence, light_fence, AtomicBool, AtomicPtr, AtomicUsize, Mutex, Ordering};

/// Entries in a thread's barrier ring.
#[cfg(not(loom))]
pub(crate) const BARRIER_BUFFER: usize = 256;
/// Entries in a thread's barrier ring (small in models: each slot is a modelled atomic).
#[cfg(loom)]
pub(crate) const BARRIER_BUFFER: usize = 4;

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

/// The hybrid barrier's store, with the collector's parts passed in: `grey(p)` sets `p`'s mark
/// bit and says whether it was white and needs scanning (`Some(true)`), `queue(p)` hands such an
/// object to the marker.
///
/// `in_barrier` is raised *before* the barrier flag and the old value are read (a light fence
/// between) and lowered, with release, after both targets are greyed and queued. Two rules rest
/// on it:
/// - a termination round never misses a reference held only by a barrier in flight (the round
///   reads the flags after a heavy fence);
/// - marking's end turns the flag off, heavy-fences, and then waits for every `in_barrier` to
///   drop, so a barrier that read the flag during marking cannot grey anything after the sweep
///   has begun (it would leave a mark on a new white object that no sweep clears, hiding its
///   children from the next cycle). Either the collector sees `in_barrier` up and waits, or the
///   barrier sees the flag down and stores plainly.
///
/// (Only the loom models call this form; the collector calls [`hybrid_store_word`].)
#[cfg(loom)]
#[inline]
pub(crate) fn hybrid_store(
    in_barrier: &AtomicBool,
    barrier_on: &AtomicBool,
    slot: &AtomicPtr<u8>,
    new: *mut u8,
    grey: impl FnMut(usize) -> Option<bool>,
    queue: impl FnMut(usize),
) {
    hybrid_store_word(in_barrier, barrier_on, slot, new, |w| w as usize, grey, queue)
}

/// [`hybrid_store`] for a slot whose word may be something other than a payload address (a
/// tagged value): `decode(word)` is the object address the word refers to, or 0.
#[inline]
pub(crate) fn hybrid_store_word(
    in_barrier: &AtomicBool,
    barrier_on: &AtomicBool,
    slot: &AtomicPtr<u8>,
    new: *mut u8,
    decode: impl Fn(*mut u8) -> usize,
    grey: impl FnMut(usize) -> Option<bool>,
    queue: impl FnMut(usize),
) {
    in_barrier.store(true, Ordering::Relaxed);
    // Store-then-load on both sides (Dekker): this light fence and the collector's heavy fence
    // order each side's store before its load.
    light_fence();
    shade_old_and_new(barrier_on, slot, new, decode, grey, queue);
    slot.store(new, Ordering::Release);
    // Release: a round that reads the flag down sees what this barrier queued.
    in_barrier.store(false, Ordering::Release);
}

/// The hybrid barrier's greying, for a caller whose `in_barrier` flag is already up (raised
/// before this reads `barrier_on`): if the barrier is on, greys the objects of the word `slot`
/// holds and of `new`, queueing those that need scanning. The caller then stores `new`.
#[inline]
pub(crate) fn shade_old_and_new(
    barrier_on: &AtomicBool,
    slot: &AtomicPtr<u8>,
    new: *mut u8,
    decode: impl Fn(*mut u8) -> usize,
    mut grey: impl FnMut(usize) -> Option<bool>,
    mut queue: impl FnMut(usize),
) {
    // Relaxed: ordered after the caller's raising of `in_barrier` by its fence.
    if barrier_on.load(Ordering::Relaxed) {
        let old = slot.load(Ordering::Acquire);
        for p in [decode(old), decode(new)] {
            if p != 0 && grey(p) == Some(true) {
                queue(p);
            }
        }
    }
}

/// Turns the barrier flag off, then waits until no barrier (`rings`' flags) and no root operation
/// (`roots_in_flight`) that may have read it on is still in flight.
pub(crate) fn end_barrier<'a>(
    barrier_on: &AtomicBool,
    rings: impl Iterator<Item = &'a BarrierBuffer>,
    roots_in_flight: &AtomicUsize,
) {
    barrier_on.store(false, Ordering::SeqCst);
    // Pairs with each barrier's light fence: a barrier that read the flag on has its
    // `in_barrier` seen below.
    heavy_fence();
    for ring in rings {
        let mut spins = 0;
        while ring.in_barrier.load(Ordering::SeqCst) {
            spins += 1;
            crate::sync::spin_wait(spins);
        }
    }
    let mut spins = 0;
    while roots_in_flight.load(Ordering::SeqCst) != 0 {
        spins += 1;
        crate::sync::spin_wait(spins);
    }
}

impl Collector {
    /// Turns the barrier off at the end of marking and waits until no barrier or root operation
    /// that read it on is still in flight (see [`hybrid_store`]). Such a barrier only meets black
    /// objects, so this is short; afterwards nothing is greyed until the next cycle.
    pub(crate) fn barrier_off(&self) {
        let records = self.registry.records();
        end_barrier(&self.barrier_on, records.iter().map(|r| &r.barrier), &self.roots_in_flight);
    }

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
        // SAFETY: forwarded; a plain member's word is its target's address.
        unsafe { self.barriered_store_word(rec, slot, new, |w| w as usize) }
    }

    /// [`Collector::barriered_store`] for a slot holding a tagged word: `decode(word)` is the
    /// object address the word refers to, or 0.
    ///
    /// # Safety
    /// As for [`Collector::barriered_store`], with `decode(new)` null or an object of this heap.
    #[cold]
    #[inline(never)]
    pub(crate) unsafe fn barriered_store_word(
        &self,
        rec: &ThreadRecord,
        slot: &AtomicPtr<u8>,
        new: *mut u8,
        decode: impl Fn(*mut u8) -> usize,
    ) {
        hybrid_store_word(
            &rec.barrier.in_barrier,
            &self.barrier_on,
            slot,
            new,
            decode,
            |p| self.grey(p),
            |p| self.queue_grey(rec, p),
        );
    }

    /// Queues a grey object in the calling thread's ring (`rec` is its record), flushing the ring
    /// to the shared queue first if it is full.
    #[inline]
    pub(crate) fn queue_grey(&self, rec: &ThreadRecord, p: usize) {
        if !rec.barrier.push(p) {
            self.flush_barrier(rec);
            let pushed = rec.barrier.push(p);
            debug_assert!(pushed);
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
        self.mark.grey_events.fetch_add(1, Ordering::SeqCst);
        self.mark.marked_bytes.fetch_add(span.elem_size, Ordering::Relaxed);
        if self.mark.profiling.load(Ordering::Relaxed) {
            // SAFETY: a thread or root reached the object, so it was published, header written.
            unsafe { self.mark.count_live(payload, span.elem_size) };
        }
        Some(span.kind.scan())
    }

    /// Greys the object at `payload` and, if it was white and needs scanning, queues it in the
    /// shared injector; returns whether it queued it.
    #[inline]
    pub(crate) fn grey_to_injector(&self, payload: usize) -> bool {
        let queued = self.grey(payload) == Some(true);
        if queued {
            self.mark.injector.push(Work::new(payload));
        }
        queued
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
    /// thread, inside a scope or not). Like a barrier, it is *in flight* from before it reads the
    /// flag until what it greyed is queued, and termination rounds see that (`roots_in_flight`),
    /// so a round cannot end marking between the greying and the queueing.
    pub(crate) fn shade_for_root(&self, payload: usize) {
        self.roots_in_flight.fetch_add(1, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        if self.barrier_on.load(Ordering::SeqCst) && self.grey_to_injector(payload) {
            self.mark.wake_workers();
        }
        self.roots_in_flight.fetch_sub(1, Ordering::SeqCst);
    }

    /// Adds `payload` to the root table, then shades it (in that order: see
    /// [`RootTable::add_shaded`](super::roots::RootTable::add_shaded); shading first let a `Root` cloned on a thread outside every scope,
    /// or the finalizer thread's root of a ready object, miss a cycle: a stress test of finalizers
    /// under churn found it); returns its slot.
    pub(crate) fn add_root(&self, payload: usize) -> u32 {
        self.roots.add_shaded(payload, |p| self.shade_for_root(p))
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

//! Marking: the tracer, grey work, and the parallel markers.
//!
//! Tri-colour terms: an object is *white* while its mark bit is clear, *grey* once its bit is set
//! and it waits in a work queue to be scanned, and *black* once scanned (or born marked; objects of
//! no-scan kinds are black as soon as their bit is set).
//!
//! Grey work lives in crossbeam-deque queues: one shared injector (roots, flushed barrier rings)
//! and one LIFO deque per marker, which the other markers steal from. A work item is an object and
//! the element to resume at: arrays bigger than [`CHUNK_BYTES`] are scanned a chunk at a time,
//! the rest pushed back as a new item, so one huge array never keeps a marker busy alone.
//!
//! `active` counts markers that may hold grey work; a marker raises it *before* it looks for work
//! and lowers it only when its own deque is empty and nothing could be stolen. So "the injector is
//! empty, and then `active` is 0" means no grey work exists anywhere.
//!
//! The [`Tracer`] is what a `Trace` impl is handed. Modes: *mark* (grey each reference), *clear*
//! (store null into each reference: the sweeper, before drop glue), and *verify* (the checkmark
//! pass: every reference must point to a marked object).

use super::verify::Verifier;
use crate::memory::Memory;
use crate::object::{Header, HEADER_SIZE};
use crate::sync::{AtomicPtr, AtomicU64, AtomicUsize, Condvar, Mutex, Ordering};
use crossbeam_deque::{Injector, Steal, Stealer, Worker};
use std::time::Duration;

/// Bytes of an array scanned in one work item.
pub(crate) const CHUNK_BYTES: usize = 32 << 10;

/// A grey object, and the element its scan resumes at.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Work {
    payload: usize,
    start: usize,
}

impl Work {
    pub(crate) fn new(payload: usize) -> Work {
        Work { payload, start: 0 }
    }
}

/// Visits the GC references of a value on behalf of the collector. Handed to [`Trace::trace`].
///
/// There is nothing to call on a `Tracer` from user code except passing it on: a hand-written
/// `Trace` impl calls `trace(tracer)` on each field.
///
/// ```
/// use lowpause::{Member, Trace, Tracer};
/// struct Pair { a: Member<u64>, b: Member<u64> }
/// // SAFETY: visits both fields, the only GC references of a Pair.
/// unsafe impl Trace for Pair {
///     const NEEDS_TRACE: bool = true;
///     fn trace(&self, tracer: &mut Tracer<'_>) {
///         self.a.trace(tracer);
///         self.b.trace(tracer);
///     }
/// }
/// ```
///
/// [`Trace::trace`]: crate::Trace::trace
pub struct Tracer<'a> {
    mode: Mode<'a>,
}

enum Mode<'a> {
    Mark(&'a mut Marker),
    Clear,
    Verify(&'a mut Verifier),
}

impl<'a> Tracer<'a> {
    pub(crate) fn clearing() -> Tracer<'static> {
        Tracer { mode: Mode::Clear }
    }

    pub(crate) fn verifying(v: &'a mut Verifier) -> Tracer<'a> {
        Tracer { mode: Mode::Verify(v) }
    }

    /// Visits one reference slot (the word inside a `Member`). Not for user code.
    #[doc(hidden)]
    #[inline]
    pub fn __edge(&mut self, slot: &AtomicPtr<u8>) {
        match &mut self.mode {
            Mode::Mark(m) => {
                let p = slot.load(Ordering::Acquire);
                if !p.is_null() {
                    m.shade(p as usize);
                }
            }
            Mode::Clear => slot.store(std::ptr::null_mut(), Ordering::Relaxed),
            Mode::Verify(v) => {
                let p = slot.load(Ordering::Acquire);
                if !p.is_null() {
                    v.visit(p as usize);
                }
            }
        }
    }
}

/// The shared side of marking: the injector, the markers' stealers, and idle tracking.
pub(crate) struct MarkQueue {
    pub(crate) injector: Injector<Work>,
    stealers: Mutex<Vec<Stealer<Work>>>,
    /// Markers that may hold grey work.
    active: AtomicUsize,
    /// Parked markers wait here for work.
    sleep: Mutex<()>,
    wake: Condvar,
    sleepers: AtomicUsize,
}

impl Default for MarkQueue {
    fn default() -> Self {
        MarkQueue {
            injector: Injector::new(),
            stealers: Mutex::new(Vec::new()),
            active: AtomicUsize::new(0),
            sleep: Mutex::new(()),
            wake: Condvar::new(),
            sleepers: AtomicUsize::new(0),
        }
    }
}

impl MarkQueue {
    /// Whether no grey work exists in the queues or in any marker.
    pub(crate) fn is_idle(&self) -> bool {
        self.injector.is_empty() && self.active.load(Ordering::SeqCst) == 0
    }

    /// Wakes parked markers (cheap when none is parked).
    pub(crate) fn wake_workers(&self) {
        if self.sleepers.load(Ordering::SeqCst) > 0 {
            let _g = self.sleep.lock();
            self.wake.notify_all();
        }
    }

    /// Parks a background marker for at most `timeout`, unless work shows up first.
    pub(crate) fn park(&self, timeout: Duration) {
        let mut g = self.sleep.lock();
        self.sleepers.fetch_add(1, Ordering::SeqCst);
        if self.injector.is_empty() {
            self.wake.wait_for(&mut g, timeout);
        }
        self.sleepers.fetch_sub(1, Ordering::SeqCst);
    }
}

/// One marker: its deque and what it has marked.
///
/// It points to the heap's memory and queue by raw pointer so that a `Tracer` needs one lifetime
/// only; a marker never outlives the collector that made it.
pub(crate) struct Marker {
    mem: *const Memory,
    queue: *const MarkQueue,
    local: Worker<Work>,
    marked_bytes: usize,
    greyed: u64,
}

// SAFETY: the raw pointers point into the collector, which outlives every marker (background
// markers are joined before the collector is dropped).
unsafe impl Send for Marker {}

impl Marker {
    /// A marker whose deque other markers can steal from (`stealable`), or a private one.
    pub(crate) fn new(mem: &Memory, queue: &MarkQueue, stealable: bool) -> Marker {
        let local = Worker::new_lifo();
        if stealable {
            queue.stealers.lock().push(local.stealer());
        }
        Marker { mem, queue, local, marked_bytes: 0, greyed: 0 }
    }

    #[inline]
    fn mem(&self) -> &Memory {
        // SAFETY: a marker never outlives the collector that owns the memory.
        unsafe { &*self.mem }
    }

    /// The shared queue, borrowed independently of `self` (it lives in the collector).
    #[inline]
    fn queue<'q>(&self) -> &'q MarkQueue {
        // SAFETY: as above; the queue outlives every marker.
        unsafe { &*self.queue }
    }

    /// Greys the object at `payload`, if it is white.
    #[inline]
    pub(crate) fn shade(&mut self, payload: usize) {
        let obj = payload - HEADER_SIZE;
        // SAFETY: `payload` came from a reference a marked object or a root held, so it is an
        // allocated object of this heap and its span is in use.
        let span = unsafe { self.mem().span_of(obj) };
        if span.mark(span.slot_of(obj)) {
            self.marked_bytes += span.elem_size;
            self.greyed += 1;
            if span.kind.scan() {
                self.local.push(Work::new(payload));
            }
        }
    }

    fn find_work(&self) -> Option<Work> {
        if let Some(w) = self.local.pop() {
            return Some(w);
        }
        let q = self.queue();
        loop {
            match q.injector.steal_batch_and_pop(&self.local) {
                Steal::Success(w) => return Some(w),
                Steal::Retry => continue,
                Steal::Empty => break,
            }
        }
        let stealers = q.stealers.lock();
        for s in stealers.iter() {
            loop {
                match s.steal() {
                    Steal::Success(w) => return Some(w),
                    Steal::Retry => continue,
                    Steal::Empty => break,
                }
            }
        }
        None
    }

    /// Scans one work item; returns the bytes scanned.
    fn scan(&mut self, w: Work) -> usize {
        // SAFETY: only allocated, initialised objects are ever greyed; this one stays allocated at
        // least until the cycle's sweep, which starts after marking ends.
        let h = unsafe { Header::of(w.payload) };
        let (info, len) = (h.info, h.len);
        debug_assert!(
            // SAFETY: the object is allocated, so its span is in use.
            h.object_size() <= unsafe { self.mem().span_of(w.payload - HEADER_SIZE) }.elem_size,
            "object of `{}` at {:#x} overflows its slot",
            (info.name)(),
            w.payload
        );
        let per_chunk = (CHUNK_BYTES / info.size.max(1)).max(1);
        let end = len.min(w.start + per_chunk);
        if end < len {
            self.local.push(Work { payload: w.payload, start: end });
        }
        let mut tracer = Tracer { mode: Mode::Mark(self) };
        // SAFETY: elements `start..end` of the object are initialised `T`s of `info.size` bytes.
        unsafe { (info.trace)((w.payload + w.start * info.size) as *const u8, end - w.start, &mut tracer) };
        (end - w.start) * info.size
    }

    /// Marks until no grey work can be found, or until about `budget` bytes were scanned.
    /// Returns true if it ran out of work (not budget). Adds what it marked to the collector's
    /// counters (`marked_bytes`, `grey_events`).
    pub(crate) fn drain(&mut self, budget: usize, marked: &AtomicUsize, grey_events: &AtomicU64) -> bool {
        let q = self.queue();
        q.active.fetch_add(1, Ordering::SeqCst);
        let mut scanned = 0;
        let out_of_work = loop {
            if scanned >= budget {
                break false;
            }
            match self.find_work() {
                Some(w) => scanned += self.scan(w),
                None => break true,
            }
        };
        if !out_of_work {
            // Hand what is left to the others before going quiet.
            while let Some(w) = self.local.pop() {
                q.injector.push(w);
            }
            q.wake_workers();
        }
        marked.fetch_add(std::mem::take(&mut self.marked_bytes), Ordering::Relaxed);
        grey_events.fetch_add(std::mem::take(&mut self.greyed), Ordering::SeqCst);
        q.active.fetch_sub(1, Ordering::SeqCst);
        out_of_work
    }
}

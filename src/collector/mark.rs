//! Marking: the tracer, grey work, and the parallel markers.
//!
//! Tri-colour terms: an object is *white* while its mark bit is clear, *grey* once its bit is set
//! and it waits in a work queue to be scanned, and *black* once scanned (or born marked; objects of
//! no-scan kinds are black as soon as their bit is set).
//!
//! **Grey work in batches** (Go's gcWork buffers). Each marker keeps its grey objects on a private
//! stack (a `Vec`: a push and a pop are plain stores and loads, no atomic, no fence). Work is
//! shared a batch at a time through the `batches` queue: a stack that grows past [`SPILL_AT`]
//! gives its oldest half away (the objects nearest the roots, with the most work under them), and
//! every [`BALANCE_EVERY`] objects a marker whose stack holds some work gives half of it away if
//! `batches` is empty (someone may be hungry). A hungry marker takes a whole batch as its stack.
//! So a queue operation is paid per batch, not per object. Roots, flushed barrier rings and
//! finalizer objects arrive one by one in the shared `injector`, which markers take from in runs
//! of up to [`INJECTOR_RUN`]. A work item is an object and the element to resume at: arrays
//! bigger than [`CHUNK_BYTES`] are scanned a chunk at a time, the rest pushed back as a new item,
//! so one huge array never keeps a marker busy alone.
//!
//! `active` counts markers that may hold grey work; a marker raises it *before* it looks for work
//! and lowers it only when its own stack is empty and both queues were found empty. So "both
//! queues are empty, and then `active` is 0" means no grey work exists anywhere.
//!
//! The [`Tracer`] is what a `Trace` impl is handed. Modes: *mark* (grey each reference), *clear*
//! (store null into each reference: before drop glue), and *verify* (the checkmark pass: every
//! reference must point to a marked object).
//!
//! A mark can *fail*: a `Trace::trace` that panicked (caught per object, in `TypeInfo::trace`)
//! or a reference that points outside the heap's reservation (only an unsound hand-written
//! `Trace` impl can make one). Either way the marks no longer prove anything, so the marker
//! records the first reason in [`MarkQueue::fail`], marking runs on to its normal end, and the
//! cycle then frees nothing (cycle.rs). A foreign reference is never dereferenced.

use super::context::{self, UserCode, UserCodeGuard};
use super::verify::Verifier;
use crate::memory::Memory;
use crate::object::{Header, TypeInfo, HEADER_SIZE};
use crate::sync::{AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Mutex, Ordering};
use crate::telemetry::profile::TypeTable;
use crossbeam_deque::{Injector, Steal};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Bytes of an array scanned in one work item.
pub(crate) const CHUNK_BYTES: usize = 32 << 10;
/// Scan work a marker does between publishing its counters.
pub(crate) const FLUSH_BYTES: usize = 64 << 10;
/// A marker's stack size at which it gives its oldest half away as a batch.
pub(crate) const SPILL_AT: usize = 512;
/// Objects a marker scans between looks at whether the batch queue is empty.
pub(crate) const BALANCE_EVERY: u32 = 64;
/// Items a marker takes from the injector at a time.
pub(crate) const INJECTOR_RUN: usize = 64;
/// Grey objects a marker has prefetched ahead of the one it scans.
const PREFETCH: usize = 8;

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

    /// Visits one slot holding a tagged word (a `Value`): `decode(word)` is the object address
    /// the word refers to, or 0. Clearing stores `cleared`.
    ///
    /// # Safety
    /// `slot` lies in an object of the heap being traced, and `decode` of every word it can hold is
    /// 0 or the payload address of an allocated object of that heap (what a `Value` guarantees).
    #[inline]
    pub(crate) unsafe fn tagged_edge(&mut self, slot: &AtomicPtr<u8>, decode: fn(*mut u8) -> usize, cleared: *mut u8) {
        match &mut self.mode {
            Mode::Mark(m) => {
                let p = decode(slot.load(Ordering::Acquire));
                if p != 0 {
                    m.shade(p);
                }
            }
            Mode::Clear => slot.store(cleared, Ordering::Relaxed),
            Mode::Verify(v) => {
                let p = decode(slot.load(Ordering::Acquire));
                if p != 0 {
                    v.visit(p);
                }
            }
        }
    }

    /// Visits one reference slot (the word inside a `Member`).
    ///
    /// # Safety
    /// `slot` lies in an object of the heap being traced, and holds null or the payload address of
    /// an allocated object of that heap (what a `Member` guarantees).
    #[inline]
    pub(crate) unsafe fn edge(&mut self, slot: &AtomicPtr<u8>) {
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

/// The shared side of marking: the injector, the markers' stealers, idle tracking, the cycle's
/// marking counters, and the parked background markers.
///
/// Nothing here takes a lock once marking runs: the queues are lock-free, and markers park with `std::thread::park` and are woken with `unpark` (a futex, no mutex). So a
/// marker preempted anywhere (an idle worker at the lowest OS priority on a busy machine) never
/// holds a lock that a mutator or another marker waits for.
#[derive(Default)]
pub(crate) struct MarkQueue {
    /// Grey objects queued one by one (roots, barrier rings, finalizers, ephemerons).
    pub(crate) injector: Injector<Work>,
    /// Batches of grey objects markers gave away.
    batches: Injector<Vec<Work>>,
    /// Markers that may hold grey work.
    active: AtomicUsize,
    /// The background markers' threads, to unpark, and how many are parked.
    threads: OnceLock<Vec<std::thread::Thread>>,
    sleepers: AtomicUsize,
    /// Bytes marked (greyed) this cycle.
    pub(crate) marked_bytes: AtomicUsize,
    /// Bytes scanned this cycle.
    pub(crate) scan_work: AtomicUsize,
    /// Greying events (any thread): termination rounds compare it.
    pub(crate) grey_events: AtomicU64,
    /// Scan work background markers did and assists have not drawn on yet.
    pub(crate) credit: AtomicUsize,
    /// Whether this cycle counts what it marks by type (a heap profile asked for it), into
    /// `live_types`. Set before the barrier turns on, cleared after marking ends.
    pub(crate) profiling: AtomicBool,
    pub(crate) live_types: TypeTable,
    /// This cycle's marks cannot be trusted: the first reason (see the module docs).
    failed: AtomicBool,
    failure: Mutex<Option<String>>,
}

impl MarkQueue {
    /// Whether no grey work exists in the queues or in any marker.
    pub(crate) fn is_idle(&self) -> bool {
        self.injector.is_empty() && self.batches.is_empty() && self.active.load(Ordering::SeqCst) == 0
    }

    /// Whether both queues are empty (markers may still hold work).
    pub(crate) fn queues_empty(&self) -> bool {
        self.injector.is_empty() && self.batches.is_empty()
    }

    /// Empties both queues, dropping their work (a failed mark's leftovers).
    pub(crate) fn discard_queued(&self) {
        while !self.injector.steal().is_empty() {}
        while !self.batches.steal().is_empty() {}
    }

    /// Fixes the background markers' threads (once, when the workers start).
    pub(crate) fn set_workers(&self, threads: Vec<std::thread::Thread>) {
        let fresh = self.threads.set(threads).is_ok();
        assert!(fresh, "the mark workers are started once");
    }

    /// Wakes parked markers (one load when none is parked; never takes a lock).
    pub(crate) fn wake_workers(&self) {
        if self.sleepers.load(Ordering::SeqCst) > 0 {
            for t in self.threads.get().into_iter().flatten() {
                t.unpark();
            }
        }
    }

    /// Parks a background marker for at most `timeout`, unless woken first.
    pub(crate) fn park(&self, timeout: Duration) {
        self.sleepers.fetch_add(1, Ordering::SeqCst);
        if self.queues_empty() {
            std::thread::park_timeout(timeout);
        }
        self.sleepers.fetch_sub(1, Ordering::SeqCst);
    }

    /// Adds a newly marked object to the live profile.
    ///
    /// # Safety
    /// `payload` is an allocated object a published reference pointed to (its header is written).
    #[cold]
    pub(crate) unsafe fn count_live(&self, payload: usize, slot_bytes: usize) {
        // SAFETY: by the caller's guarantee.
        let info = unsafe { Header::of(payload) }.info;
        self.live_types.add(info, 1, slot_bytes as u64);
    }

    /// Records that this cycle's marks cannot be trusted (the first reason is kept).
    #[cold]
    pub(crate) fn fail(&self, reason: String) {
        if !self.failed.swap(true, Ordering::SeqCst) {
            *self.failure.lock() = Some(reason);
        }
    }

    /// Whether this cycle's mark has failed so far.
    pub(crate) fn has_failed(&self) -> bool {
        self.failed.load(Ordering::SeqCst)
    }

    /// Whether this cycle's mark failed, and why (taken: the next cycle starts clean).
    pub(crate) fn take_failure(&self) -> Option<String> {
        if self.failed.swap(false, Ordering::SeqCst) {
            Some(self.failure.lock().take().unwrap_or_default())
        } else {
            None
        }
    }

    /// Resets the counters for a new cycle.
    pub(crate) fn begin_cycle(&self) {
        self.marked_bytes.store(0, Ordering::Relaxed);
        self.scan_work.store(0, Ordering::Relaxed);
        self.credit.store(0, Ordering::Relaxed);
    }

    /// Takes up to `want` bytes of banked credit; returns what it took.
    pub(crate) fn take_credit(&self, want: usize) -> usize {
        let mut have = self.credit.load(Ordering::Relaxed);
        loop {
            let take = have.min(want);
            if take == 0 {
                return 0;
            }
            match self.credit.compare_exchange_weak(have, have - take, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return take,
                Err(now) => have = now,
            }
        }
    }
}

/// Asks the CPU to bring the line at `addr` into its caches (a hint: never faults).
#[inline(always)]
fn prefetch(addr: usize) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is a hint that never faults, whatever the address.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(addr as *const i8)
    };
    #[cfg(not(target_arch = "x86_64"))]
    let _ = addr;
}

/// One marker: its stack of grey objects and what it has marked.
///
/// It points to the heap's memory and queue by raw pointer so that a `Tracer` needs one lifetime
/// only; a marker never outlives the collector that made it.
pub(crate) struct Marker {
    mem: *const Memory,
    queue: *const MarkQueue,
    /// Grey objects to scan, private (the top is scanned next).
    stack: Vec<Work>,
    /// Objects taken off the stack and prefetched, scanned oldest first (a ring).
    ahead: [Work; PREFETCH],
    ahead_head: usize,
    ahead_len: usize,
    /// Objects scanned until the next look at the batch queue.
    until_balance: u32,
    marked_bytes: usize,
    greyed: u64,
    /// Whether scan work banks credit for assists (background markers).
    banks_credit: bool,
    /// The queue's `profiling` flag, read when a drain starts.
    profiling: bool,
}

// SAFETY: the raw pointers point into the collector, which outlives every marker (background
// markers are joined before the collector is dropped).
unsafe impl Send for Marker {}

impl Marker {
    /// A marker; a background one (`background`) banks its scan work as credit for assists.
    pub(crate) fn new(mem: &Memory, queue: &MarkQueue, background: bool) -> Marker {
        Marker {
            mem,
            queue,
            stack: Vec::with_capacity(SPILL_AT),
            ahead: [Work::new(0); PREFETCH],
            ahead_head: 0,
            ahead_len: 0,
            until_balance: BALANCE_EVERY,
            marked_bytes: 0,
            greyed: 0,
            banks_credit: background,
            profiling: false,
        }
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
        let obj = payload.wrapping_sub(HEADER_SIZE);
        if !self.mem().contains(obj) {
            return self.foreign_edge(payload);
        }
        // SAFETY: `payload` came from a reference a marked object or a root held, so it is an
        // allocated object of this heap and its span is in use.
        let span = unsafe { self.mem().span_of(obj) };
        if span.mark(span.slot_of(obj)) {
            self.marked_bytes += span.elem_size;
            self.greyed += 1;
            if self.profiling {
                // SAFETY: a reference to the object was published, so its header is written.
                unsafe { self.queue().count_live(payload, span.elem_size) };
            }
            if span.kind.scan() {
                self.push(Work::new(payload));
            }
        }
    }

    /// A reference to an address outside this heap: never followed; the cycle fails.
    #[cold]
    #[inline(never)]
    fn foreign_edge(&mut self, payload: usize) {
        let msg = format!(
            "a reference to {payload:#x}, outside this heap's reservation, was found while marking; \
             only a hand-written `unsafe impl Trace` that breaks its contract can store one"
        );
        crate::telemetry::report(&format!("lowpause: {msg}"));
        self.queue().fail(msg);
    }

    /// An object's `Trace::trace` panicked: the cycle fails (nothing is freed).
    #[cold]
    #[inline(never)]
    fn trace_panicked(&mut self, info: &TypeInfo, payload: usize, p: Box<dyn std::any::Any + Send>) {
        let msg = context::panic_message(&*p);
        context::discard_payload(p);
        let reason =
            format!("`{}`'s Trace::trace panicked while marking the object at {payload:#x}: {msg}", (info.name)());
        self.queue().fail(reason);
    }

    /// Pushes grey work on the private stack, giving the oldest half away if it is too deep.
    #[inline]
    fn push(&mut self, w: Work) {
        self.stack.push(w);
        if self.stack.len() >= SPILL_AT {
            self.give_away(SPILL_AT / 2);
        }
    }

    /// Moves the `n` oldest items of the stack to the batch queue and wakes a parked marker.
    #[cold]
    #[inline(never)]
    fn give_away(&mut self, n: usize) {
        let batch: Vec<Work> = self.stack.drain(..n).collect();
        let q = self.queue();
        q.batches.push(batch);
        q.wake_workers();
    }

    /// Every `BALANCE_EVERY` objects: if no batch is waiting, gives half of the stack away.
    #[inline]
    fn balance(&mut self) {
        self.until_balance -= 1;
        if self.until_balance == 0 {
            self.until_balance = BALANCE_EVERY;
            if self.stack.len() >= 2 && self.queue().batches.is_empty() {
                self.give_away(self.stack.len() / 2);
            }
        }
    }

    /// The next object to scan. Objects come off the stack into a ring of [`PREFETCH`], their
    /// headers prefetched as they enter, and are scanned as they leave: marking is bound by
    /// cache misses on objects scattered over the heap, and this overlaps them.
    #[inline]
    fn find_work(&mut self) -> Option<Work> {
        while self.ahead_len < PREFETCH {
            let Some(w) = self.stack.pop() else { break };
            prefetch(w.payload.wrapping_sub(HEADER_SIZE));
            self.ahead[(self.ahead_head + self.ahead_len) % PREFETCH] = w;
            self.ahead_len += 1;
        }
        if self.ahead_len == 0 {
            return self.refill();
        }
        let w = self.ahead[self.ahead_head];
        self.ahead_head = (self.ahead_head + 1) % PREFETCH;
        self.ahead_len -= 1;
        Some(w)
    }

    /// Puts the prefetched objects back on the stack (before giving work away).
    fn unprefetch(&mut self) {
        while self.ahead_len > 0 {
            self.ahead_len -= 1;
            self.stack.push(self.ahead[(self.ahead_head + self.ahead_len) % PREFETCH]);
        }
        self.ahead_head = 0;
    }

    /// The stack is empty: takes a batch, or a run of the injector's items.
    #[cold]
    #[inline(never)]
    fn refill(&mut self) -> Option<Work> {
        let q = self.queue();
        loop {
            match q.batches.steal() {
                Steal::Success(batch) => {
                    if batch.capacity() > self.stack.capacity() {
                        self.stack = batch;
                    } else {
                        self.stack.extend_from_slice(&batch);
                    }
                    if let Some(w) = self.stack.pop() {
                        return Some(w);
                    }
                }
                Steal::Retry => continue,
                Steal::Empty => break,
            }
        }
        while self.stack.len() < INJECTOR_RUN {
            match q.injector.steal() {
                Steal::Success(w) => self.stack.push(w),
                Steal::Retry => continue,
                Steal::Empty => break,
            }
        }
        self.stack.pop()
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
            self.push(Work { payload: w.payload, start: end });
        }
        let mut tracer = Tracer { mode: Mode::Mark(self) };
        // SAFETY: elements `start..end` of the object are initialised `T`s of `info.size` bytes.
        let r = unsafe { (info.trace)((w.payload + w.start * info.size) as *const u8, end - w.start, &mut tracer) };
        if let Err(p) = r {
            self.trace_panicked(info, w.payload, p);
        }
        (end - w.start) * info.size
    }

    /// [`Marker::drain`] in slices of `slice` bytes until `deadline`, until about `budget` bytes
    /// were scanned, or until it runs out of work; returns whether it ran out of work, and the
    /// bytes scanned. For markers whose time is bounded: assists and `Heap::idle_step`.
    pub(crate) fn drain_for(&mut self, deadline: Instant, budget: usize, slice: usize) -> (bool, usize) {
        // `spent` counts a slice that scanned nothing as one byte, so the loop always advances.
        let (mut out_of_work, mut scanned, mut spent) = (false, 0, 0);
        while spent < budget && !out_of_work && Instant::now() < deadline {
            let (done, n) = self.drain((budget - spent).min(slice));
            out_of_work = done;
            scanned += n;
            spent += n.max(1);
        }
        (out_of_work, scanned)
    }

    /// Marks until no grey work can be found, or until about `budget` bytes were scanned, handing
    /// what is left to the injector in that case. Returns whether it ran out of work (not budget),
    /// and the bytes it scanned. Adds to the queue's counters as it goes (every
    /// [`FLUSH_BYTES`] scanned), so the pacer sees marking progress while it runs.
    pub(crate) fn drain(&mut self, budget: usize) -> (bool, usize) {
        // Whatever thread this is, it runs `Trace` impls now: they may not use the heap.
        let _user_code = UserCodeGuard::enter(UserCode::Trace);
        let q = self.queue();
        q.active.fetch_add(1, Ordering::SeqCst);
        self.profiling = q.profiling.load(Ordering::Relaxed);
        let (mut scanned, mut unflushed) = (0, 0);
        let out_of_work = loop {
            if scanned >= budget {
                break false;
            }
            match self.find_work() {
                Some(w) => {
                    self.balance();
                    let n = self.scan(w);
                    scanned += n;
                    unflushed += n;
                    if unflushed >= FLUSH_BYTES {
                        self.flush(std::mem::take(&mut unflushed));
                    }
                }
                None => break true,
            }
        };
        self.unprefetch();
        if !out_of_work && !self.stack.is_empty() {
            // Hand what is left to the others before going quiet.
            self.give_away(self.stack.len());
        }
        self.flush(unflushed);
        q.active.fetch_sub(1, Ordering::SeqCst);
        (out_of_work, scanned)
    }

    fn flush(&mut self, scanned: usize) {
        let q = self.queue();
        q.marked_bytes.fetch_add(std::mem::take(&mut self.marked_bytes), Ordering::Relaxed);
        q.scan_work.fetch_add(scanned, Ordering::Relaxed);
        if self.banks_credit {
            q.credit.fetch_add(scanned, Ordering::Relaxed);
        }
        q.grey_events.fetch_add(std::mem::take(&mut self.greyed), Ordering::SeqCst);
    }
}

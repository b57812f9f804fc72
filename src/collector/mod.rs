//! The collector: the cycle state machine, the handshakes with mutator threads, the barrier,
//! marking, sweeping and pacing. It drives the memory layer and never names a type of the public
//! API (the API layer calls down into it, never the reverse).
//!
//! No thread is ever stopped. A cycle (cycle.rs) posts three requests that each thread answers
//! at its own safepoints (handshake.rs): *barrier on*, *snapshot* (from which it allocates
//! black), and *release* (its cached spans go to the sweep, and it allocates white again).
//! Threads outside every scope are answered for. Between the first two answers, background
//! markers (mark.rs) trace from the roots while the barrier (barrier.rs) greys whatever mutators
//! overwrite or store; termination is a sequence of rounds that find no grey work anywhere.
//! Then the spans are swept in the background and, lazily, by allocating threads (sweep.rs).
//!
//! Safepoints: scope entry and exit, and every allocation slow path. The fast path of allocation
//! and of the barrier never looks at the cycle at all.
//!
//! Invariants:
//! - at most one driver advances the cycle at a time (`cycle` lock);
//! - a cycle starts only after the previous sweep finished (mark bits are never reused under a
//!   running sweep);
//! - every object reachable from a root or a thread when marking terminates is marked;
//! - drop glue runs only on a driver outside every scope, holding no lock a mutator needs.

pub(crate) mod barrier;
pub(crate) mod cycle;
pub(crate) mod handshake;
#[cfg(all(test, loom))]
mod loom_models;
pub(crate) mod mark;
pub(crate) mod mutator;
pub(crate) mod pacer;
pub(crate) mod roots;
pub(crate) mod sweep;
pub(crate) mod verify;
pub(crate) mod workers;

pub use mark::Tracer;

use crate::memory::span::SpanKind;
use crate::memory::{Memory, SpanPtr};
use crate::sync::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Condvar, Mutex, Ordering};
use crate::telemetry::{Stats, Telemetry};
use cycle::{CycleState, Drive, Phase};
use handshake::{level, LEVEL_BARRIER, LEVEL_RELEASE, LEVEL_SNAPSHOT};
use mark::MarkQueue;
use mutator::{Registry, ThreadRecord};
use pacer::Pacer;
use roots::RootTable;
use std::time::{Duration, Instant};

/// Settings of a collector, validated by the API's builder.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Config {
    pub(crate) gc_percent: u32,
    pub(crate) max_heap: usize,
    /// Background mark workers; 0 runs every cycle synchronously in the mutators.
    pub(crate) workers: usize,
    /// Re-mark the heap after every mark and panic on anything reachable left unmarked.
    pub(crate) verify: bool,
    /// Print one trace line per cycle on stderr (`LOWPAUSE_TRACE=1`).
    pub(crate) trace: bool,
}

/// A heap's collector and everything it owns.
pub(crate) struct Collector {
    pub(crate) memory: Memory,
    pub(crate) roots: RootTable,
    pub(crate) registry: Registry,
    pub(crate) config: Config,
    barrier_on: AtomicBool,
    /// Background markers should look for work.
    pub(crate) marking: AtomicBool,
    pub(crate) mark: MarkQueue,
    cycle: Mutex<CycleState>,
    /// The current phase, readable without the cycle lock.
    phase: AtomicU32,
    gc_requested: AtomicBool,
    /// Cycles started and completed (a cycle is complete when its sweep is).
    started: AtomicU64,
    completed: AtomicU64,
    done_lock: Mutex<()>,
    done_cv: Condvar,
    /// The coordinator sleeps here between steps.
    coordinator_lock: Mutex<()>,
    coordinator_cv: Condvar,
    pub(crate) shutdown: AtomicBool,
    /// Greying events (any thread): termination rounds compare it.
    grey_events: AtomicU64,
    /// Root operations between reading the barrier flag and queueing what they greyed.
    roots_in_flight: AtomicUsize,
    /// Bytes marked by this cycle so far.
    marked_bytes: AtomicUsize,
    pacer: Mutex<Pacer>,
    /// A cycle is requested once `memory.counters.allocated_bytes` reaches this.
    next_gc_at: AtomicUsize,
    /// A verification failure or a dead collector thread, reported by mutators.
    failure: Mutex<Option<String>>,
    pub(crate) telemetry: Telemetry,
    /// When the heap was created (trace timestamps).
    created: Instant,
}

impl Collector {
    pub(crate) fn new(config: Config) -> std::io::Result<Collector> {
        let pacer = Pacer { gc_percent: config.gc_percent };
        let goal = pacer.goal(0);
        let c = Collector {
            memory: Memory::new(config.max_heap)?,
            roots: RootTable::default(),
            registry: Registry::default(),
            config,
            barrier_on: AtomicBool::new(false),
            marking: AtomicBool::new(false),
            mark: MarkQueue::default(),
            cycle: Mutex::new(CycleState::new()),
            phase: AtomicU32::new(Phase::Idle as u32),
            gc_requested: AtomicBool::new(false),
            started: AtomicU64::new(0),
            completed: AtomicU64::new(0),
            done_lock: Mutex::new(()),
            done_cv: Condvar::new(),
            coordinator_lock: Mutex::new(()),
            coordinator_cv: Condvar::new(),
            shutdown: AtomicBool::new(false),
            grey_events: AtomicU64::new(0),
            roots_in_flight: AtomicUsize::new(0),
            marked_bytes: AtomicUsize::new(0),
            pacer: Mutex::new(pacer),
            next_gc_at: AtomicUsize::new(goal),
            failure: Mutex::new(None),
            telemetry: Telemetry::default(),
            created: Instant::now(),
        };
        c.telemetry.goal.store(goal, Ordering::Relaxed);
        Ok(c)
    }

    /// Allocates `size` bytes (header included) for an object of kind `kind` from `rec`'s cache.
    /// Returns the object's start address; large objects return their span too, to be published
    /// with [`Collector::publish_large`] once written.
    ///
    /// # Safety
    /// `rec` is the calling thread's record and the thread is inside a scope.
    #[inline(always)]
    pub(crate) unsafe fn alloc(
        &self,
        rec: &ThreadRecord,
        class: Option<u8>,
        size: usize,
        kind: SpanKind,
    ) -> (usize, Option<SpanPtr>) {
        if let Some(class) = class {
            // SAFETY: the thread is inside a scope, so it owns its cache.
            if let Some(a) = unsafe { rec.cache() }.alloc_fast(class, kind) {
                return (a, None);
            }
        }
        // SAFETY: forwarded.
        unsafe { self.alloc_slow(rec, class, size, kind) }
    }

    /// The allocation slow path, and a safepoint: answers requests that need no scope boundary,
    /// requests a cycle when the heap passed its trigger, and in synchronous mode advances it.
    ///
    /// # Safety
    /// As for [`Collector::alloc`].
    #[cold]
    #[inline(never)]
    unsafe fn alloc_slow(
        &self,
        rec: &ThreadRecord,
        class: Option<u8>,
        size: usize,
        kind: SpanKind,
    ) -> (usize, Option<SpanPtr>) {
        // SAFETY: the thread is inside a scope and owns its record.
        unsafe { self.answer(rec, false) };
        if self.trigger_passed() {
            self.request();
        }
        if self.drives_itself() {
            self.advance(Drive::SlowPath);
            // SAFETY: as above; the step may have posted a new request.
            unsafe { self.answer(rec, false) };
        }
        // SAFETY: the thread owns its cache.
        let cache = unsafe { rec.cache() };
        let r = match class {
            Some(class) => cache.alloc_small(&self.memory, class, kind).map(|a| (a, None)),
            None => cache.alloc_large(&self.memory, size, kind).map(|(a, sp)| (a, Some(sp))),
        };
        match r {
            Ok(r) => r,
            Err(_) => self.exhausted(size),
        }
    }

    #[cold]
    #[inline(never)]
    fn exhausted(&self, size: usize) -> ! {
        panic!(
            "lowpause: the heap's reservation ({}) is exhausted while allocating {size} bytes; \
             raise HeapBuilder::max_heap, or keep less alive",
            crate::telemetry::bytes(self.memory.len())
        )
    }

    /// Whether the heap has grown past the point where the next cycle should start.
    #[inline]
    pub(crate) fn trigger_passed(&self) -> bool {
        self.memory.counters.allocated_bytes.load(Ordering::Relaxed) >= self.next_gc_at.load(Ordering::Relaxed)
    }

    /// Asks for a cycle (it starts once the previous sweep is done). Never waits.
    pub(crate) fn request(&self) {
        if !self.gc_requested.swap(true, Ordering::AcqRel) {
            self.wake_coordinator();
        }
    }

    pub(crate) fn wake_coordinator(&self) {
        if self.config.workers > 0 {
            let _g = self.coordinator_lock.lock();
            self.coordinator_cv.notify_all();
        }
    }

    /// The coordinator's nap between steps that found nothing to do.
    pub(crate) fn coordinator_wait(&self, timeout: Duration) {
        let mut g = self.coordinator_lock.lock();
        if !self.shutdown.load(Ordering::Acquire) {
            self.coordinator_cv.wait_for(&mut g, timeout);
        }
    }

    /// Answers the current request from a safepoint of `rec`'s thread. `boundary`: a scope
    /// boundary (the thread holds no GC pointer), where a snapshot request can be answered.
    ///
    /// # Safety
    /// `rec` is the calling thread's record and the thread is inside a scope.
    #[inline]
    pub(crate) unsafe fn answer(&self, rec: &ThreadRecord, boundary: bool) {
        let token = self.registry.token.load(Ordering::Acquire);
        let acked = rec.state.acked();
        if acked >= token {
            return;
        }
        let answered = match level(token) {
            LEVEL_SNAPSHOT if !boundary => handshake::token(token / 4, LEVEL_BARRIER),
            // A large object being initialised keeps its span out of every list. Its span may be
            // of the generation this sweep must visit, so the thread may not answer "release"
            // (which lets the sweep finish) until it has published it: at the next boundary.
            // SAFETY: the thread owns its cache (caller's guarantee).
            LEVEL_RELEASE if !boundary && unsafe { rec.cache() }.pending_large > 0 => acked,
            l => {
                // SAFETY: forwarded from the caller.
                unsafe { self.act_for(rec, l, self.registry.black_below.load(Ordering::Acquire)) };
                token
            }
        };
        if answered > acked {
            rec.state.answer_inside(answered);
            self.wake_coordinator();
        }
    }

    /// Publishes a large object's span once the object is initialised.
    ///
    /// # Safety
    /// `rec` is the calling thread's record, the thread is inside a scope, and `sp` came from its
    /// [`Collector::alloc`].
    pub(crate) unsafe fn publish_large(&self, rec: &ThreadRecord, sp: SpanPtr) {
        // SAFETY: the thread owns its cache.
        unsafe { rec.cache() }.publish_large(&self.memory, sp);
    }

    /// Registers the calling thread as a mutator.
    pub(crate) fn attach(&self) -> crate::sync::Arc<ThreadRecord> {
        self.registry.attach()
    }

    /// Unregisters a thread outside every scope, returning its cache and ring to the heap.
    pub(crate) fn detach(&self, rec: &crate::sync::Arc<ThreadRecord>) {
        rec.state.enter();
        // SAFETY: entering made us the record's owner.
        unsafe {
            let cache = rec.cache();
            cache.release_all(&self.memory);
            cache.set_colour(0);
            cache.flush_counters(&self.memory);
        }
        self.flush_barrier(rec);
        self.registry.unlist(rec);
        self.wake_coordinator();
    }

    /// Scope entry for `rec`'s thread.
    pub(crate) fn enter(&self, rec: &ThreadRecord) {
        if self.drives_itself() {
            self.advance(Drive::Outside);
        }
        let start = Instant::now();
        let (_, spins) = rec.state.enter();
        if spins > 0 {
            Telemetry::record_max(&self.telemetry.max_stall_ns, start.elapsed());
        }
        // SAFETY: the thread just entered its scope.
        unsafe { self.answer(rec, true) };
    }

    /// Scope exit for `rec`'s thread.
    ///
    /// # Safety
    /// `rec` is the calling thread's record and the thread is inside a scope.
    pub(crate) unsafe fn exit(&self, rec: &ThreadRecord) {
        // SAFETY: the thread is at a scope boundary and owns its record.
        unsafe {
            self.answer(rec, true);
            rec.cache().flush_counters(&self.memory);
        }
        self.flush_barrier(rec);
        rec.state.exit(rec.state.acked());
        if self.trigger_passed() {
            self.request();
        }
        if self.drives_itself() {
            self.advance(Drive::Outside);
        }
    }

    /// Synchronous mode, with a cycle running or requested: mutators drive it at safepoints.
    #[inline]
    fn drives_itself(&self) -> bool {
        self.config.workers == 0
            && (self.phase.load(Ordering::Relaxed) != Phase::Idle as u32 || self.gc_requested.load(Ordering::Relaxed))
    }

    /// Runs a full collection: one whole cycle that starts after this call, its sweep included.
    /// The caller is outside every scope of this heap.
    pub(crate) fn collect(&self) {
        self.check_failure();
        let target = {
            let _st = self.cycle.lock();
            let started = self.started.load(Ordering::Acquire);
            if self.completed.load(Ordering::Acquire) == started {
                started + 1
            } else {
                started + 2
            }
        };
        while self.completed.load(Ordering::Acquire) < target {
            self.request();
            if self.config.workers == 0 {
                if !self.advance(Drive::Outside) {
                    std::thread::sleep(Duration::from_micros(20));
                }
            } else {
                let mut g = self.done_lock.lock();
                if self.completed.load(Ordering::Acquire) < target {
                    self.done_cv.wait_for(&mut g, Duration::from_millis(10));
                }
            }
            self.check_failure();
        }
    }

    /// Panics if a verification (checkmark) pass found a collector bug, or a collector thread
    /// died.
    pub(crate) fn check_failure(&self) {
        if let Some(msg) = self.failure.lock().clone() {
            panic!("{msg}");
        }
    }

    /// Records a collector failure for mutators to report (the first one wins), and wakes anyone
    /// waiting for a cycle.
    pub(crate) fn record_failure(&self, msg: String) {
        eprintln!("{msg}");
        self.failure.lock().get_or_insert(msg);
        let _g = self.done_lock.lock();
        self.done_cv.notify_all();
    }

    /// Sweeps one span, running the drop glue of its dead objects if its kind has any.
    ///
    /// # Safety
    /// As for [`Memory::sweep_span`], and for a kind with drop glue the calling thread is
    /// outside every scope.
    unsafe fn sweep_span(&self, sp: SpanPtr, dead_spans: &mut Vec<SpanPtr>) -> Option<SpanPtr> {
        // SAFETY: the caller holds the span.
        let needs_finalize = unsafe { sp.get() }.kind.drop();
        let mut panics = 0;
        // SAFETY: forwarded from the caller; each dead object is unreachable and visited once.
        let r = unsafe {
            self.memory.sweep_span(
                sp,
                |obj| {
                    if needs_finalize && !sweep::finalize_dead(obj) {
                        panics += 1;
                    }
                },
                dead_spans,
            )
        };
        if panics > 0 {
            self.telemetry.drop_panics.fetch_add(panics, Ordering::Relaxed);
        }
        r
    }

    /// A snapshot of the counters.
    pub(crate) fn stats(&self) -> Stats {
        let t = &self.telemetry;
        let c = &self.memory.counters;
        let (committed, in_use) = self.memory.footprint();
        Stats {
            cycles: t.cycles.load(Ordering::Relaxed),
            live_bytes: t.live_bytes.load(Ordering::Relaxed),
            live_objects: t.live_objects.load(Ordering::Relaxed),
            allocated_bytes: c.allocated_bytes.load(Ordering::Relaxed),
            allocated_objects: c.allocated_objects.load(Ordering::Relaxed),
            freed_bytes: c.freed_bytes.load(Ordering::Relaxed),
            freed_objects: c.freed_objects.load(Ordering::Relaxed),
            heap_goal: t.goal.load(Ordering::Relaxed),
            heap_in_use: in_use,
            heap_committed: committed,
            roots: self.roots.len(),
            threads: self.registry.len(),
            drop_panics: t.drop_panics.load(Ordering::Relaxed),
            max_handshake_wait: Duration::from_nanos(t.max_handshake_ns.load(Ordering::Relaxed)),
            max_mutator_stall: Duration::from_nanos(t.max_stall_ns.load(Ordering::Relaxed)),
            gc_time: Duration::from_nanos(t.gc_wall_ns.load(Ordering::Relaxed)),
            max_mark_time: Duration::from_nanos(t.max_mark_ns.load(Ordering::Relaxed)),
            workers: self.config.workers,
        }
    }
}

impl Drop for Collector {
    /// Tears the heap down on the thread that dropped its last handle (background threads are
    /// joined before): every object still allocated with drop glue is cleared and dropped, outside
    /// every scope and lock, then the memory is returned to the OS. Objects in spans not yet swept
    /// are all still allocated (dead ones included), and each is dropped exactly once here.
    fn drop(&mut self) {
        let mut dead = Vec::new();
        self.memory.for_each_allocated(|obj, span| {
            if span.kind.drop() {
                dead.push(obj);
            }
        });
        for obj in dead {
            // SAFETY: the heap has no handle left, so no thread can reach any object; each object
            // is visited once.
            if !unsafe { sweep::finalize_dead(obj) } {
                self.telemetry.drop_panics.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

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
//! - drop glue never runs in a sweep nor under a collector lock: the sweep queues it, and it runs
//!   outside every scope (sweep.rs), so a destructor that blocks never holds up a cycle;
//! - no user code the collector runs (`trace`, drop glue) can unwind into it, nor re-enter a heap
//!   (context.rs).

pub(crate) mod barrier;
pub(crate) mod context;
pub(crate) mod cycle;
pub(crate) mod finalize;
pub(crate) mod handshake;
pub(crate) mod locals;
#[cfg(all(test, loom))]
mod loom_models;
pub(crate) mod mark;
pub(crate) mod mutator;
pub(crate) mod pacer;
pub(crate) mod roots;
pub(crate) mod sweep;
pub(crate) mod verify;
pub(crate) mod weak;
pub(crate) mod workers;

pub use mark::Tracer;

use crate::memory::cache::Cache;
use crate::memory::size_class::{CLASS_SIZES, PAGE_SIZE};
use crate::memory::span::SpanKind;
use crate::memory::{self, Memory, SpanPtr};
use crate::object::TypeInfo;
use crate::sync::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Condvar, Mutex, Ordering};
use crate::telemetry::profile::{self, Counts, HeapProfile};
use crate::telemetry::stalls::StallCause;
use crate::telemetry::{thread_cpu_ns, Stats, Telemetry};
use cycle::{CycleState, Drive, Phase};
use handshake::{level, LEVEL_BARRIER, LEVEL_RELEASE, LEVEL_SNAPSHOT};
use mark::MarkQueue;
use mutator::{Registry, ThreadRecord};
use pacer::{CpuLimiter, Pacer, WorkerPlan};
use roots::RootTable;
use std::time::{Duration, Instant};

/// Scan work an assist does at least (Go's `gcOverAssistWork`): smaller debts wait.
const ASSIST_MIN_WORK: usize = 64 << 10;
/// The longest one assist marks; a larger debt is carried to the thread's next slow paths. Go's
/// assists pay the whole debt at once; a low-pause heap bounds the stall instead, and lets the
/// heap overshoot its goal a little when a thread allocates far faster than marking proceeds.
const ASSIST_MAX_TIME: Duration = Duration::from_micros(200);
/// Scan work between an assist's clock checks.
const ASSIST_SLICE: usize = 16 << 10;
/// Scan work between deadline checks of [`Collector::idle_step`].
const IDLE_STEP_SLICE: usize = 64 << 10;
/// An allocation slow path that took at least this long while the sweep ran counts as a stall.
const ALLOCATION_STALL_MIN: Duration = Duration::from_micros(1);

/// Settings of a collector, validated by the API's builder.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Config {
    /// `None`: off (only the memory limit starts cycles).
    pub(crate) gc_percent: Option<u32>,
    pub(crate) memory_limit: Option<usize>,
    pub(crate) max_heap: usize,
    /// Background mark workers at normal priority; 0 runs every cycle synchronously in the
    /// mutators.
    pub(crate) workers: usize,
    /// Background mark workers at the lowest OS priority (only with `workers > 0`).
    pub(crate) idle_workers: usize,
    /// Re-mark the heap after every mark and panic on anything reachable left unmarked.
    pub(crate) verify: bool,
    /// Print one trace line per cycle on stderr (`LOWPAUSE_TRACE=1`).
    pub(crate) trace: bool,
    /// Mean bytes between allocation samples for the heap profile (0: off).
    pub(crate) profile_rate: usize,
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
    /// The coordinator thread, parked between steps (woken with `unpark`: no lock).
    pub(crate) coordinator: std::sync::OnceLock<std::thread::Thread>,
    pub(crate) shutdown: AtomicBool,
    /// Root operations between reading the barrier flag and queueing what they greyed.
    roots_in_flight: AtomicUsize,
    pacer: Mutex<Pacer>,
    /// The heap as the pacer counts it is `heap_marked` (at the last mark's end) plus what was
    /// allocated since: `allocated_bytes − alloc_at_mark_end`.
    heap_marked: AtomicUsize,
    alloc_at_mark_end: AtomicUsize,
    /// A cycle is requested once `memory.counters.allocated_bytes` reaches this.
    next_gc_at: AtomicUsize,
    /// Scan work owed per byte allocated while marking (an `f64`'s bits); 0 outside marking.
    assist_ratio: AtomicU64,
    /// The CPU limiter is on: assists are skipped.
    limiting: AtomicBool,
    limiter: Mutex<(CpuLimiter, Instant, u64)>,
    /// CPUs available, and the background workers' share of them.
    pub(crate) procs: usize,
    pub(crate) plan: WorkerPlan,
    /// The cycle whose mark began last, and when (ns after `created`): the fractional worker's
    /// duty cycle counts from there.
    pub(crate) mark_epoch: AtomicU64,
    pub(crate) mark_began_ns: AtomicU64,
    /// A verification failure or a dead collector thread, reported by mutators.
    failure: Mutex<Option<String>>,
    pub(crate) telemetry: Telemetry,
    /// A heap profile asked the next cycle to count what it marks by type; the last such
    /// cycle's number and counts.
    profile_requested: AtomicBool,
    last_profile: Mutex<(u64, Vec<Counts>)>,
    /// When the heap was created (trace timestamps).
    created: Instant,
    /// Weak cells, ephemeron tables, and the gate weak reads obey (weak.rs).
    pub(crate) weak: weak::WeakRegistry,
    /// Registered and ready finalizers (finalize.rs).
    pub(crate) finalizers: finalize::Finalizers,
    /// Dead objects whose drop glue has not run yet (sweep.rs).
    pub(crate) drops: sweep::DropQueue,
}

impl Collector {
    pub(crate) fn new(config: Config) -> std::io::Result<Collector> {
        // Before any thread of this heap can run a barrier (barrier.rs: the light fence).
        crate::sync::init_asymmetric_fences();
        let pacer = Pacer::new(config.gc_percent, config.memory_limit);
        let procs = std::thread::available_parallelism().map_or(1, |n| n.get());
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
            coordinator: std::sync::OnceLock::new(),
            shutdown: AtomicBool::new(false),
            roots_in_flight: AtomicUsize::new(0),
            pacer: Mutex::new(pacer),
            heap_marked: AtomicUsize::new(0),
            alloc_at_mark_end: AtomicUsize::new(0),
            next_gc_at: AtomicUsize::new(usize::MAX),
            assist_ratio: AtomicU64::new(0),
            limiting: AtomicBool::new(false),
            limiter: Mutex::new((CpuLimiter::new(procs), Instant::now(), 0)),
            procs,
            plan: WorkerPlan::for_procs(procs).capped(config.workers),
            mark_epoch: AtomicU64::new(0),
            mark_began_ns: AtomicU64::new(0),
            failure: Mutex::new(None),
            telemetry: Telemetry::default(),
            profile_requested: AtomicBool::new(false),
            last_profile: Mutex::new((0, Vec::new())),
            created: Instant::now(),
            weak: weak::WeakRegistry::default(),
            finalizers: finalize::Finalizers::default(),
            drops: sweep::DropQueue::default(),
        };
        c.publish_pacing(&c.pacer.lock());
        Ok(c)
    }

    /// The heap as the pacer counts it: bytes marked by the last mark plus bytes allocated since.
    pub(crate) fn heap_live(&self) -> usize {
        let allocated = self.memory.counters.allocated_bytes.load(Ordering::Relaxed);
        let since = allocated.saturating_sub(self.alloc_at_mark_end.load(Ordering::Relaxed));
        self.heap_marked.load(Ordering::Relaxed).saturating_add(since)
    }

    /// Publishes the pacer's trigger (as an allocation count to reach) and goal.
    fn publish_pacing(&self, pacer: &Pacer) {
        let trigger = pacer.trigger();
        let at = if trigger == pacer::NONE {
            usize::MAX
        } else {
            let base = self.alloc_at_mark_end.load(Ordering::Relaxed);
            base.saturating_add(trigger.saturating_sub(self.heap_marked.load(Ordering::Relaxed)))
        };
        self.next_gc_at.store(at, Ordering::Relaxed);
        self.telemetry.goal.store(if pacer.goal() == pacer::NONE { 0 } else { pacer.goal() }, Ordering::Relaxed);
    }

    /// Changes a pacer setting at run time: the new goal and trigger apply at once.
    fn repace(&self, change: impl FnOnce(&mut Pacer)) {
        let mut p = self.pacer.lock();
        change(&mut p);
        self.publish_pacing(&p);
        drop(p);
        if self.trigger_passed() {
            self.request();
        }
    }

    /// Changes gc_percent (`None`: off) at run time.
    pub(crate) fn set_gc_percent(&self, gc_percent: Option<u32>) {
        self.repace(|p| p.set_gc_percent(gc_percent));
    }

    /// Changes the soft memory limit (`None`: none) at run time; free pages above the new limit
    /// go back to the OS.
    pub(crate) fn set_memory_limit(&self, limit: Option<usize>) {
        self.repace(|p| p.set_memory_limit(limit));
        self.scavenge(0);
    }

    /// The current gc_percent and memory limit.
    pub(crate) fn pacing_settings(&self) -> (Option<u32>, Option<usize>) {
        let p = self.pacer.lock();
        (p.gc_percent(), p.memory_limit())
    }

    /// Returns free pages to the OS until the heap maps no more than a tenth over the largest of
    /// its goal, `recent_peak` (the heap the last cycle reached) and the most bytes in spans in
    /// use since the last scavenge (releasing pages the next cycle will fault back in only
    /// costs), plus the fragmentation last measured; and never more than
    /// the memory limit.
    pub(crate) fn scavenge(&self, recent_peak: usize) {
        let target = {
            let p = self.pacer.lock();
            if p.goal() == pacer::NONE {
                return;
            }
            let frag = self.telemetry.overhead.load(Ordering::Relaxed);
            // Nor below what the spans in use reached since the last scavenge: the next cycle
            // needs those pages again, and releasing them only makes it fault them back in.
            let keep = p.goal().max(recent_peak).max(self.memory.take_peak_in_use());
            let target = keep.saturating_add(keep / 10).saturating_add(frag);
            target.min(p.memory_limit().unwrap_or(usize::MAX))
        };
        let released = self.memory.scavenge(target);
        self.telemetry.scavenged_bytes.fetch_add(released, Ordering::Relaxed);
    }

    /// Scan work still owed by `rec`'s thread for what it allocated while marking is paid here:
    /// from the workers' banked credit first, then by marking itself (Go's `gcAssistAlloc`).
    /// Skipped while the CPU limiter is on. Called at allocation slow paths and scope exits.
    ///
    /// # Safety
    /// `rec` is the calling thread's record and the thread is inside a scope.
    unsafe fn assist(&self, rec: &ThreadRecord) {
        // SAFETY: the thread owns its cache and assist state (caller's guarantee).
        let (cache, debt) = unsafe { (rec.cache(), rec.assist()) };
        // Every assist is followed by a flush of the cache's counters: what is unflushed now was
        // allocated since the last assist.
        let allocated = cache.local_bytes;
        let ratio = f64::from_bits(self.assist_ratio.load(Ordering::Relaxed));
        if ratio == 0.0 || !self.marking.load(Ordering::Relaxed) || self.limiting.load(Ordering::Relaxed) {
            debt.owed = 0.0;
            return;
        }
        debt.owed += allocated as f64 * ratio;
        if debt.owed < ASSIST_MIN_WORK as f64 {
            return;
        }
        debt.owed -= self.mark.take_credit(debt.owed as usize) as f64;
        if debt.owed < ASSIST_MIN_WORK as f64 {
            return;
        }
        let (start, cpu0) = (Instant::now(), thread_cpu_ns());
        // Over-assist a little, so the next few allocations need not assist at all.
        let budget = debt.owed as usize + ASSIST_MIN_WORK;
        let marker = debt.marker.get_or_insert_with(|| mark::Marker::new(&self.memory, &self.mark, false));
        let (out_of_work, scanned) = marker.drain_for(start + ASSIST_MAX_TIME, budget, ASSIST_SLICE);
        debt.owed -= scanned as f64;
        if out_of_work {
            // Nothing left to scan: the debt cannot be paid, and marking is about to end.
            debt.owed = 0.0;
            self.wake_coordinator();
        }
        self.telemetry.cpu_assist_ns.fetch_add(thread_cpu_ns().saturating_sub(cpu0), Ordering::Relaxed);
        self.record_stall(StallCause::Assist, start);
    }

    /// Donates the calling thread's time until `deadline` to the collector: marks (or in
    /// synchronous mode advances the cycle) or sweeps. Returns whether
    /// there was work to do. The CPU is counted as idle-worker time.
    pub(crate) fn idle_step(&self, deadline: Instant) -> bool {
        let c0 = thread_cpu_ns();
        let mut did = false;
        if self.config.workers == 0 {
            while Instant::now() < deadline && self.phase.load(Ordering::Acquire) != Phase::Idle as u32 {
                if !self.advance(Drive::SlowPath) {
                    break;
                }
                did = true;
            }
        } else if self.marking.load(Ordering::Acquire) {
            let mut marker = mark::Marker::new(&self.memory, &self.mark, true);
            // Once marking ends nothing is grey, so the drain runs out of work and stops.
            let (out_of_work, scanned) = marker.drain_for(deadline, usize::MAX, IDLE_STEP_SLICE);
            did = scanned > 0;
            if out_of_work {
                self.wake_coordinator();
            }
        } else if self.phase.load(Ordering::Acquire) == Phase::Sweep as u32 {
            let mut bufs = cycle::SweepBuffers::default();
            let cycle = self.started.load(Ordering::Acquire);
            while Instant::now() < deadline && self.sweep_batch(8, cycle, &mut bufs) {
                did = true;
            }
        }
        self.telemetry.cpu_idle_ns.fetch_add(thread_cpu_ns().saturating_sub(c0), Ordering::Relaxed);
        did
    }

    /// Records a mutator stall that began at `start` and ends now.
    pub(crate) fn record_stall(&self, cause: StallCause, start: Instant) {
        let ns = start.elapsed().as_nanos() as u64;
        let at = start.saturating_duration_since(self.created).as_nanos() as u64;
        self.telemetry.stalls.record(cause, at, ns);
    }

    /// Called by the coordinator between steps: feeds the CPU limiter, and while marking, revises
    /// the assist ratio from the heap and the scan work done so far (Go's `revise`).
    pub(crate) fn pace_step(&self) {
        {
            let mut l = self.limiter.lock();
            let (ref mut limiter, ref mut last, ref mut last_gc) = *l;
            let now = Instant::now();
            let wall = now.duration_since(*last).as_nanos() as u64;
            let gc: u64 = self.telemetry.cpu_ns().iter().sum();
            let limiting = limiter.update(gc.saturating_sub(*last_gc), wall.saturating_mul(self.procs as u64));
            (*last, *last_gc) = (now, gc);
            self.limiting.store(limiting, Ordering::Relaxed);
        }
        if self.marking.load(Ordering::Relaxed) {
            let ratio =
                self.pacer.lock().assist_work_per_byte(self.heap_live(), self.mark.scan_work.load(Ordering::Relaxed));
            self.assist_ratio.store(ratio.to_bits(), Ordering::Relaxed);
        }
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
        info: &'static TypeInfo,
    ) -> (usize, Option<SpanPtr>) {
        // SAFETY: the thread is inside a scope, so it owns its cache.
        let cache = unsafe { rec.cache() };
        cache.sample_left -= size as isize;
        if cache.sample_left < 0 {
            self.sample_allocation(cache, class, size, info);
        }
        if let Some(class) = class {
            if let Some(a) = cache.alloc_fast(class, kind) {
                return (a, None);
            }
        }
        // SAFETY: forwarded.
        unsafe { self.alloc_slow(rec, class, size, kind) }
    }

    /// Records an allocation sample for the heap profile and draws the next distance.
    #[cold]
    #[inline(never)]
    fn sample_allocation(&self, cache: &mut Cache, class: Option<u8>, size: usize, info: &'static TypeInfo) {
        let slot = match class {
            Some(c) => CLASS_SIZES[c as usize] as usize,
            None => size.div_ceil(PAGE_SIZE) * PAGE_SIZE,
        };
        let rate = self.config.profile_rate;
        profile::record_sample(&self.telemetry.alloc_types, info, slot, rate);
        cache.sample_left = profile::next_sample(rate, &mut cache.sample_rng);
    }

    /// Runs a full cycle that counts what it marks by type, and returns the heap profile.
    pub(crate) fn heap_profile(&self) -> HeapProfile {
        self.profile_requested.store(true, Ordering::SeqCst);
        self.collect();
        let last = self.last_profile.lock();
        HeapProfile::build(last.0, self.config.profile_rate, &last.1, &self.telemetry.alloc_types.snapshot())
    }

    /// Whether a heap profile asked for the cycle now starting to count its marking by type.
    pub(crate) fn take_profile_request(&self) -> bool {
        self.profile_requested.swap(false, Ordering::SeqCst)
    }

    /// Stores what a profiling cycle counted.
    pub(crate) fn store_profile(&self, cycle: u64, counts: Vec<Counts>) {
        *self.last_profile.lock() = (cycle, counts);
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
        unsafe {
            self.answer(rec, false);
            self.assist(rec);
            rec.cache().flush_counters(&self.memory);
        }
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
        // While the sweep runs, a refill may sweep spans first: time it as a stall.
        let sweeping = self.phase.load(Ordering::Relaxed) == Phase::Sweep as u32;
        let start = sweeping.then(Instant::now);
        // Spans swept on the way queue their dead objects' drop glue, as the sweep of the cycle
        // whose sweep is running.
        let mut drops = Vec::new();
        let r = match class {
            // SAFETY: `refill` calls this only for dead objects of spans it holds and sweeps after
            // their marking ended.
            Some(class) => cache
                .alloc_small(&self.memory, class, kind, &mut |obj| unsafe { sweep::sweep_dead(obj, &mut drops) })
                .map(|a| (a, None)),
            None => cache.alloc_large(&self.memory, size, kind).map(|(a, sp)| (a, Some(sp))),
        };
        self.drops.push(self.started.load(Ordering::Acquire), &mut drops);
        cache.release_held(&self.memory);
        if let Some(start) = start {
            if start.elapsed() >= ALLOCATION_STALL_MIN {
                self.record_stall(StallCause::Allocation, start);
            }
        }
        match r {
            Ok(r) => r,
            Err(_) => self.exhausted(size),
        }
    }

    #[cold]
    #[inline(never)]
    fn exhausted(&self, size: usize) -> ! {
        let waiting = self.drops.waiting();
        let drops = if waiting > 0 {
            format!(
                " ({waiting} dead objects still wait for their destructors, whose slots are kept \
                 until they have run: a destructor that blocks holds up its drop thread)"
            )
        } else {
            String::new()
        };
        panic!(
            "lowpause: the heap's reservation ({}) is exhausted while allocating {size} bytes{drops}; \
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

    /// Wakes the coordinator (an `unpark`: no lock, so a mutator never waits here).
    pub(crate) fn wake_coordinator(&self) {
        if let Some(t) = self.coordinator.get() {
            t.unpark();
        }
    }

    /// The coordinator's nap between steps that found nothing to do.
    pub(crate) fn coordinator_wait(&self, timeout: Duration) {
        if !self.shutdown.load(Ordering::Acquire) {
            std::thread::park_timeout(timeout);
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
            rec.answered_at_ns.store(self.created.elapsed().as_nanos() as u64, Ordering::Relaxed);
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
        self.registry.attach(self.config.profile_rate)
    }

    /// Unregisters a thread outside every scope, returning its cache and ring to the heap.
    pub(crate) fn detach(&self, rec: &crate::sync::Arc<ThreadRecord>) {
        rec.state.enter();
        // Its cache goes back as answering a release would give it back.
        // SAFETY: entering made us the record's owner.
        unsafe { self.act_for(rec, LEVEL_RELEASE, 0) };
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
            self.record_stall(StallCause::Handshake, start);
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
            self.assist(rec);
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

    /// Whether a request is posted that `rec`'s thread has not answered: the poll of a safepoint
    /// inside a scope (two loads and a compare).
    #[inline(always)]
    pub(crate) fn request_pending(&self, rec: &ThreadRecord) -> bool {
        self.registry.token.load(Ordering::Relaxed) > rec.state.acked()
    }

    /// A safepoint inside a scope, with a request pending: answers it as at a scope boundary
    /// (the thread holds no GC pointer), hands its grey objects to the markers, and in
    /// synchronous mode advances the cycle by a bounded step.
    ///
    /// # Safety
    /// `rec` is the calling thread's record, the thread is inside a scope and holds no GC
    /// pointer of this heap outside its local stacks.
    #[cold]
    #[inline(never)]
    pub(crate) unsafe fn safepoint(&self, rec: &ThreadRecord) {
        // SAFETY: forwarded from the caller.
        unsafe { self.answer(rec, true) };
        self.flush_barrier(rec);
        if self.drives_itself() {
            self.advance(Drive::SlowPath);
            // SAFETY: as above; the step may have posted a new request.
            unsafe { self.answer(rec, true) };
        }
    }

    /// Synchronous mode, with a cycle running or requested: mutators drive it at safepoints.
    #[inline]
    fn drives_itself(&self) -> bool {
        self.config.workers == 0
            && (self.phase.load(Ordering::Relaxed) != Phase::Idle as u32 || self.gc_requested.load(Ordering::Relaxed))
    }

    /// Runs a full collection: one whole cycle that starts after this call, its sweep included,
    /// and the drop glue queued by the cycles not over at the call (run here, or waited for if a
    /// drop thread took it).
    /// The caller is outside every scope of every heap.
    pub(crate) fn collect(&self) {
        self.check_failure();
        let (open, target) = {
            let _st = self.cycle.lock();
            let started = self.started.load(Ordering::Acquire);
            let completed = self.completed.load(Ordering::Acquire);
            (completed + 1, if completed == started { started + 1 } else { started + 2 })
        };
        while self.completed.load(Ordering::Acquire) < target {
            // Only until the target cycle has started: a request left behind would start one more
            // cycle nobody asked for (and the next `collect` would then wait for two).
            if self.started.load(Ordering::Acquire) < target {
                self.request();
            }
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
        // The drop glue queued by every cycle not over at the call (one running then may find
        // that moment's garbage too) runs here, or is waited for if a drop thread runs it.
        // Earlier cycles' is left to the drop threads: one of those destructors may be blocked,
        // even waiting for this very thread.
        self.run_drops(open..=target);
        self.drops.wait_running(open..=target);
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
        crate::telemetry::report(&msg);
        self.failure.lock().get_or_insert(msg);
        let _g = self.done_lock.lock();
        self.done_cv.notify_all();
    }

    /// Sweeps one span; the drop glue of its dead objects (if its kind has any) is queued in
    /// `drops`, not run (sweep.rs).
    ///
    /// # Safety
    /// As for [`Memory::sweep_span`].
    unsafe fn sweep_span(
        &self,
        sp: SpanPtr,
        drops: &mut Vec<sweep::DropItem>,
        dead_spans: &mut Vec<SpanPtr>,
    ) -> Option<SpanPtr> {
        // SAFETY: the caller holds the span.
        if !unsafe { sp.get() }.kind.drop() {
            // SAFETY: forwarded from the caller; a kind without drop glue frees every dead slot.
            return unsafe { self.memory.sweep_span(sp, |_| memory::Dead::Free, dead_spans) };
        }
        // SAFETY: forwarded from the caller; each dead object is unreachable and visited once.
        unsafe { self.memory.sweep_span(sp, |obj| sweep::sweep_dead(obj, drops), dead_spans) }
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
            failed_cycles: t.failed_cycles.load(Ordering::Relaxed),
            finalizer_panics: t.finalizer_panics.load(Ordering::Relaxed),
            max_handshake_wait: Duration::from_nanos(t.max_handshake_ns.load(Ordering::Relaxed)),
            max_mutator_stall: Duration::from_nanos(t.stalls.max_ns()),
            gc_time: Duration::from_nanos(t.gc_wall_ns.load(Ordering::Relaxed)),
            max_mark_time: Duration::from_nanos(t.max_mark_ns.load(Ordering::Relaxed)),
            workers: self.config.workers,
        }
    }
}

impl Collector {
    /// Everything the collector measures (see [`Metrics`](crate::Metrics)).
    pub(crate) fn metrics(&self) -> crate::Metrics {
        let t = &self.telemetry;
        let c = &self.memory.counters;
        let (mapped, released, in_use) = self.memory.mapped();
        let (gc_percent, memory_limit) = self.pacing_settings();
        let uptime = self.created.elapsed();
        let [assists, workers, idle, sweeping, other] = t.cpu_ns().map(Duration::from_nanos);
        let gc_cpu = crate::GcCpu { workers, idle, assists, sweeping, other };
        let summary = |cause| t.stalls.summary(cause);
        let (handshake_wait, assist, allocation_wait) =
            (summary(StallCause::Handshake), summary(StallCause::Assist), summary(StallCause::Allocation));
        let longest_stall = [
            (StallCause::Handshake, handshake_wait.max),
            (StallCause::Assist, assist.max),
            (StallCause::Allocation, allocation_wait.max),
        ]
        .into_iter()
        .filter(|&(_, d)| d > Duration::ZERO)
        .max_by_key(|&(_, d)| d);
        let [mmu_1ms, mmu_10ms, mmu_100ms] = t.stalls.mmu(uptime.as_nanos() as u64);
        let goal = t.goal.load(Ordering::Relaxed);
        crate::Metrics {
            uptime,
            cycles: t.cycles.load(Ordering::Relaxed),
            allocated_bytes: c.allocated_bytes.load(Ordering::Relaxed),
            allocated_objects: c.allocated_objects.load(Ordering::Relaxed),
            freed_bytes: c.freed_bytes.load(Ordering::Relaxed),
            freed_objects: c.freed_objects.load(Ordering::Relaxed),
            live_bytes: t.live_bytes.load(Ordering::Relaxed),
            live_objects: t.live_objects.load(Ordering::Relaxed),
            heap_goal: (goal != 0).then_some(goal),
            gc_percent,
            memory_limit,
            peak_heap: t.peak_heap.load(Ordering::Relaxed),
            mapped_bytes: mapped,
            released_bytes: released,
            scavenged_bytes: t.scavenged_bytes.load(Ordering::Relaxed),
            heap_in_use: in_use,
            gc_cpu_fraction: gc_cpu.total().as_secs_f64() / (uptime.as_secs_f64() * self.procs as f64).max(1e-9),
            gc_cpu,
            handshake_wait,
            assist,
            allocation_wait,
            longest_stall,
            scope_wait: t.scope_wait.lock().clone(),
            mmu_1ms,
            mmu_10ms,
            mmu_100ms,
        }
    }
}

impl Drop for Collector {
    /// Tears the heap down on the thread that dropped its last handle (background threads are
    /// joined before): every object still allocated with drop glue is cleared and dropped, outside
    /// every scope and lock, then the memory is returned to the OS. Objects in spans not yet swept
    /// are all still allocated (dead ones included), and each is dropped exactly once here.
    fn drop(&mut self) {
        // Queued drop glue first (those objects' headers say so; the walk below skips them).
        self.run_drops(0..=u64::MAX);
        let mut dead = Vec::new();
        self.memory.for_each_allocated(|obj, span| {
            if span.kind.drop() {
                dead.push(obj);
            }
        });
        for obj in dead {
            // SAFETY: the heap has no handle left, so no thread can reach any object; each object
            // is visited once, and the drop queue is empty.
            if unsafe { sweep::drop_at_teardown(obj) } != sweep::DropOutcome::Dropped {
                self.telemetry.drop_panics.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

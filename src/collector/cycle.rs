//! The cycle state machine. Each call of [`Collector::advance`] takes one or more steps that do
//! not wait for anything; whoever drives it (the coordinator thread, or with `workers(0)` the
//! mutators' allocation slow paths, scope boundaries and `collect`) calls it again later.
//!
//! ```text
//!  Idle ──request──► BarrierWait ──all answered 1 (C1)──► Mark ──all answered 2──► Terminate
//!   ▲                 (barrier on,    roots greyed,          markers drain          clean round
//!   │                  post 1)        post 2                                          │
//!   │                                                                                 ▼
//!   └──── all answered 3, nothing unswept ◄──── Sweep ◄──── post 3, begin_sweep ◄── MarkDone
//!                                             (sweepers)    barrier off, pace         (verify)
//! ```
//!
//! **Termination.** A *round* starts with no grey work anywhere (markers idle, injector empty),
//! notes the count of greying events, drains every thread's barrier ring, checks that no thread
//! is inside a barrier, waits for the markers to go idle again, and compares the count. If the
//! rings were empty, no barrier was in flight and nothing was greyed meanwhile, the round is
//! *clean*: every reachable object is black, and stays black until the sweep — so marking is
//! done. The argument is in docs/design.md.
//!
//! **A failed mark.** If a `Trace` impl panicked or a reference pointed outside the heap
//! (mark.rs), the marks prove nothing. Marking still runs to its normal end (so every thread's
//! state and every queue is as after any mark), but the cycle then clears no weak reference,
//! queues no finalizer, and its sweep frees nothing (`Memory::begin_sweep(keep_all)`); the
//! failure is reported on stderr, in the trace line and in `Stats::failed_cycles`, and the next
//! cycle starts from scratch. So user code that panics inside the collector costs memory, never
//! soundness, and the heap goes on working.

use super::barrier::BarrierBuffer;
use super::handshake::{level, token, Claim, LEVEL_BARRIER, LEVEL_RELEASE, LEVEL_SNAPSHOT};
use super::mark::Marker;
use super::mutator::ThreadRecord;
use super::pacer::MarkReport;
use super::verify::{Verifier, VerifyError};
use super::weak::{GATE_CLEARING, GATE_CLOSED, GATE_KEEP_ALL, GATE_OPEN};
use super::Collector;
use crate::sync::{heavy_fence, AtomicU64, AtomicUsize, Ordering};
use crate::telemetry::trace::CycleTrace;
use crate::telemetry::{keep_longest_wait, thread_cpu_ns, Telemetry};
use std::time::{Duration, Instant};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Phase {
    Idle,
    BarrierWait,
    Mark,
    Terminate,
    MarkDone,
    Sweep,
}

/// Who is driving the cycle, which decides what it may do.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Drive {
    /// The coordinator thread: outside every scope; sweeps everything.
    Background,
    /// A mutator outside every scope (`collect`, a scope boundary in synchronous mode): unbounded
    /// work.
    Outside,
    /// A mutator's allocation slow path, inside a scope: bounded work. (Sweeping runs no user
    /// code in either: drop glue is only queued.)
    SlowPath,
}

/// The driver's state, under `Collector::cycle`.
pub(crate) struct CycleState {
    pub(crate) phase: Phase,
    pub(crate) cycle: u64,
    sg_target: u32,
    phase_start: Instant,
    cycle_start: Instant,
    mark_start: Instant,
    term_start: Instant,
    /// The cycle's trace line, filled in as it goes, and the CPU counters at its start.
    trace: CycleTrace,
    cpu_at_start: [u64; 5],
    /// The heap when the cycle was triggered, and the marking CPU counters when marking began.
    heap_triggered: usize,
    cpu_at_mark: [u64; 5],
    /// The heap when this cycle's mark ended.
    heap_peak: usize,
    /// The cycle completed: once the last step's CPU is counted, its trace line is printed and the
    /// completion published (so `collect` returns after the line).
    completed_pending: bool,
    /// This cycle counts what it marks by type (a heap profile asked for it).
    profiling: bool,
    /// The driver's own marker (synchronous mode).
    marker: Option<Marker>,
    bufs: SweepBuffers,
    /// When the current request was posted, and the last thread found inside a scope while it
    /// was outstanding (the one the cycle is waiting on).
    posted: Instant,
    held_by: Option<crate::sync::Arc<ThreadRecord>>,
}

/// Buffers a sweeper reuses: spans popped, swept and still in use, and emptied.
#[derive(Default)]
pub(crate) struct SweepBuffers {
    spans: Vec<crate::memory::SpanPtr>,
    swept: Vec<crate::memory::SpanPtr>,
    dead: Vec<crate::memory::SpanPtr>,
    drops: Vec<super::sweep::DropItem>,
}

impl CycleState {
    pub(crate) fn new() -> CycleState {
        let now = Instant::now();
        CycleState {
            phase: Phase::Idle,
            cycle: 0,
            sg_target: 0,
            phase_start: now,
            cycle_start: now,
            mark_start: now,
            term_start: now,
            trace: CycleTrace::default(),
            cpu_at_start: [0; 5],
            heap_triggered: 0,
            cpu_at_mark: [0; 5],
            heap_peak: 0,
            completed_pending: false,
            profiling: false,
            marker: None,
            bufs: SweepBuffers::default(),
            posted: now,
            held_by: None,
        }
    }
}

/// Marking work (bytes scanned) a slow path does per call in synchronous mode.
const SLOW_PATH_MARK_BUDGET: usize = 256 << 10;
/// Spans a slow path sweeps per call in synchronous mode.
const SLOW_PATH_SWEEP_BUDGET: usize = 8;

/// One termination round, started when no grey work exists anywhere: looks for root operations
/// in flight, drains every thread's ring (`requeue` hands each entry back to the markers) after
/// looking for a barrier in flight there, lets `marked_out` finish any work that turned up (true:
/// the markers are idle), and compares the count of greying events. Clean (true) only if nothing
/// was found and nothing was greyed.
pub(crate) fn termination_round<'a>(
    grey_events: &AtomicU64,
    roots_in_flight: &AtomicUsize,
    rings: impl Iterator<Item = &'a BarrierBuffer>,
    mut requeue: impl FnMut(usize),
    marked_out: impl FnOnce() -> bool,
) -> bool {
    let before = grey_events.load(Ordering::SeqCst);
    // Pairs with each barrier's light fence (barrier.rs), so the proof's step "a barrier in
    // flight when its thread is checked has its flag seen" holds as it did with SeqCst flags
    // (docs/design.md, "Termination"). The late-flush loom model passes without it (its rounds
    // synchronise with the barrier through the mark bit); it costs one system call per round.
    heavy_fence();
    // In flight before this check: its greyed object is in the injector before the count drops,
    // so `marked_out` sees it. After: it greys after `before` was read.
    let mut dirty = roots_in_flight.load(Ordering::SeqCst) != 0;
    for ring in rings {
        // The flag first: if it is down, every barrier that began before has queued what it
        // greyed, and the drain below sees it; one that begins after greys after `before` was
        // read, which the final comparison sees. (Draining first misses a barrier that queues
        // and lowers its flag between the two; a loom model found that.)
        dirty |= ring.in_barrier.load(Ordering::SeqCst);
        dirty |= ring.drain(&mut requeue) > 0;
    }
    let idle = marked_out();
    !dirty && idle && grey_events.load(Ordering::SeqCst) == before
}

impl Collector {
    /// Takes every step of the cycle that needs no waiting. Returns whether anything changed.
    pub(crate) fn advance(&self, drive: Drive) -> bool {
        let mut st = match drive {
            Drive::SlowPath => match self.cycle.try_lock() {
                Some(g) => g,
                None => return false,
            },
            _ => self.cycle.lock(),
        };
        let mut progressed = false;
        loop {
            // Each step's CPU time is charged to the collector, by kind.
            let (phase, c0) = (st.phase, thread_cpu_ns());
            let step = match st.phase {
                Phase::Idle => self.start_cycle(&mut st),
                Phase::BarrierWait => self.finish_barrier_handshake(&mut st),
                Phase::Mark => self.mark_step(&mut st, drive),
                Phase::Terminate => self.terminate_step(&mut st, drive),
                Phase::MarkDone => self.mark_done(&mut st, drive),
                Phase::Sweep => self.sweep_step(&mut st, drive),
            };
            let t = &self.telemetry;
            let slot = match phase {
                Phase::Sweep => &t.cpu_sweep_ns,
                Phase::Mark | Phase::Terminate if self.config.workers == 0 => &t.cpu_mark_ns,
                _ => &t.cpu_other_ns,
            };
            slot.fetch_add(thread_cpu_ns().saturating_sub(c0), Ordering::Relaxed);
            if std::mem::take(&mut st.completed_pending) {
                if self.config.trace {
                    self.print_trace(&mut st);
                }
                self.telemetry.cycles.fetch_add(1, Ordering::Relaxed);
                // The MMU so far, kept as the run goes (telemetry/stalls.rs).
                self.telemetry.stalls.fold(self.created.elapsed().as_nanos() as u64);
                self.completed.store(st.cycle, Ordering::Release);
                {
                    let _g = self.done_lock.lock();
                    self.done_cv.notify_all();
                }
                // Drop glue left behind a blocked destructor gets a thread even if no more comes.
                self.drops.check_stuck();
            }
            if !step {
                return progressed;
            }
            progressed = true;
        }
    }

    fn enter_phase(&self, st: &mut CycleState, phase: Phase) -> bool {
        st.phase = phase;
        st.phase_start = Instant::now();
        self.phase.store(phase as u32, Ordering::Release);
        true
    }

    fn start_cycle(&self, st: &mut CycleState) -> bool {
        if !self.gc_requested.swap(false, Ordering::AcqRel) {
            return false;
        }
        st.cycle += 1;
        st.cycle_start = Instant::now();
        st.trace = CycleTrace { cycle: st.cycle, ..CycleTrace::default() };
        st.cpu_at_start = self.telemetry.cpu_ns();
        st.sg_target = self.memory.sweepgen.load(Ordering::Acquire) + 2;
        self.started.store(st.cycle, Ordering::Release);
        st.heap_triggered = self.heap_live();
        self.mark.begin_cycle();
        self.memory.counters.black_bytes.store(0, Ordering::Relaxed);
        st.profiling = self.take_profile_request();
        if st.profiling {
            // Before the barrier turns on: every mark bit this cycle sets is counted.
            self.mark.live_types.clear();
            self.mark.profiling.store(true, Ordering::SeqCst);
        }
        debug_assert!(self.mark.queues_empty());
        // Weak reads grey their targets from the moment the barrier is on.
        self.weak.gate.store(GATE_OPEN, Ordering::SeqCst);
        self.barrier_on.store(true, Ordering::SeqCst);
        self.post(st, LEVEL_BARRIER, 0);
        self.enter_phase(st, Phase::BarrierWait)
    }

    fn finish_barrier_handshake(&self, st: &mut CycleState) -> bool {
        if !self.answer_for_outside(st, token(st.cycle, LEVEL_BARRIER)) {
            return false;
        }
        st.trace.handshake = st.phase_start.elapsed();
        Telemetry::record_max(&self.telemetry.max_handshake_ns, st.trace.handshake);
        // C1: every store is barriered from here on. Grey the roots.
        self.roots.for_each(|p| {
            self.grey_to_injector(p);
        });
        self.finalizer_roots();
        self.post(st, LEVEL_SNAPSHOT, st.sg_target);
        st.mark_start = std::time::Instant::now();
        st.cpu_at_mark = self.telemetry.cpu_ns();
        self.mark_began_ns.store(st.mark_start.duration_since(self.created).as_nanos() as u64, Ordering::Relaxed);
        self.mark_epoch.store(st.cycle, Ordering::Release);
        self.marking.store(true, Ordering::SeqCst);
        self.pace_step();
        self.mark.wake_workers();
        self.enter_phase(st, Phase::Mark)
    }

    /// Marks with the driver's own marker (synchronous mode only); returns whether it ran out of
    /// work.
    fn mark_with_driver(&self, st: &mut CycleState, drive: Drive) -> bool {
        if self.config.workers > 0 {
            return self.mark.is_idle();
        }
        let marker = st.marker.get_or_insert_with(|| Marker::new(&self.memory, &self.mark, false));
        let budget = if drive == Drive::SlowPath { SLOW_PATH_MARK_BUDGET } else { usize::MAX };
        for rec in self.registry.records() {
            self.flush_barrier(&rec);
        }
        marker.drain(budget).0
    }

    fn mark_step(&self, st: &mut CycleState, drive: Drive) -> bool {
        self.mark_with_driver(st, drive);
        if !self.answer_for_outside(st, token(st.cycle, LEVEL_SNAPSHOT)) {
            return false;
        }
        Telemetry::record_max(&self.telemetry.max_handshake_ns, st.phase_start.elapsed());
        st.term_start = Instant::now();
        st.trace.snapshot = st.mark_start.elapsed();
        // The heap the snapshot covers: every thread allocates black from here on, so everything
        // marking can find (white and reachable) is already in these spans and heap_start >= live.
        // Read at the trigger it missed what threads allocated white before their snapshot.
        st.trace.heap_start = self.memory.footprint().1;
        self.enter_phase(st, Phase::Terminate)
    }

    fn terminate_step(&self, st: &mut CycleState, drive: Drive) -> bool {
        if !self.mark_with_driver(st, drive) || !self.mark.is_idle() {
            return false;
        }
        // One round: nothing grey anywhere now; is anything hiding in a ring or a barrier, or
        // behind a live key of an ephemeron table? Weak reads wait while it runs (weak.rs).
        self.weak.gate.store(GATE_CLOSED, Ordering::SeqCst);
        // Dekker with a weak reader (flag store, fence, gate load): our gate store, fence, then the
        // round's flag loads. A reader that saw the gate open has its flag seen, or is done.
        crate::sync::fence(Ordering::SeqCst);
        let records = self.registry.records();
        let clean = termination_round(
            &self.mark.grey_events,
            &self.roots_in_flight,
            records.iter().map(|r| &r.barrier),
            |p| self.mark.injector.push(super::mark::Work::new(p)),
            || {
                self.ephemeron_scan();
                self.mark.wake_workers();
                self.mark_with_driver(st, drive) && self.mark.is_idle()
            },
        );
        // A clean round with a failed mark: nothing will be freed, so a weak read may hand out
        // any target (and must not answer "dead" for an unmarked one that is reachable).
        // With verification on, readers wait (the gate stays closed) until the verifier has said
        // whether the marks hold: a `trace` that panics only there fails the cycle too, and a
        // read must not have answered "dead" for an object the failed cycle then keeps.
        let gate = match (clean, self.mark.has_failed()) {
            (false, _) => GATE_OPEN,
            (true, true) => GATE_KEEP_ALL,
            (true, false) if self.config.verify => GATE_CLOSED,
            (true, false) => GATE_CLEARING,
        };
        self.weak.gate.store(gate, Ordering::SeqCst);
        if !clean {
            return false;
        }
        self.enter_phase(st, Phase::MarkDone)
    }

    fn mark_done(&self, st: &mut CycleState, drive: Drive) -> bool {
        let mut failure = self.mark.take_failure();
        let mut broken = None;
        if self.config.verify && failure.is_none() {
            match self.verify() {
                Ok(_) => {}
                Err(VerifyError::TracePanicked(msg)) => failure = Some(msg),
                Err(VerifyError::Broken(msg)) => {
                    // A collector bug (or an unsound unsafe impl): nothing may be freed on these
                    // marks, and every mutator will report it.
                    let msg = format!("lowpause verification failed in cycle {}: {msg}", st.cycle);
                    self.record_failure(msg.clone());
                    failure = Some(msg.clone());
                    broken = Some(msg);
                }
            }
            self.weak.gate.store(if failure.is_some() { GATE_KEEP_ALL } else { GATE_CLEARING }, Ordering::SeqCst);
        }
        if let Some(reason) = &failure {
            crate::telemetry::report(&format!(
                "lowpause: cycle {} failed and frees nothing: {reason}. A Trace impl must neither panic \
                 nor hold a reference the heap does not own; the next cycle tries again",
                st.cycle
            ));
            self.telemetry.failed_cycles.fetch_add(1, Ordering::Relaxed);
            st.trace.failed = true;
        } else {
            // Weak references to dead objects are cleared before anything is freed, then
            // finalizable objects left unmarked are resurrected for their finalizers (finalize.rs).
            let (cells, entries) = self.clear_weak();
            let queued = self.queue_finalizers();
            st.trace.weak = (cells + entries, queued);
        }
        self.marking.store(false, Ordering::SeqCst);
        if std::mem::take(&mut st.profiling) {
            self.mark.profiling.store(false, Ordering::SeqCst);
            self.store_profile(st.cycle, self.mark.live_types.snapshot());
        }
        self.assist_ratio.store(0, Ordering::Relaxed);
        self.barrier_off();
        if failure.is_some() {
            // After a failed mark, reachable objects may still be white, so barriers (and weak
            // reads, roots) that ran after the last round may have greyed some, and markers
            // (assists, `idle_step`, a worker's slice) may be scanning them. With the barrier off
            // nobody greys more; once every marker has run dry, no mark bit can be set until the
            // next cycle. Only then may the sweep begin: a mark set on a span already swept would
            // survive into the next cycle and hide its object's children from it.
            self.discard_grey_until_idle();
        }
        let goal = self.pace_next_cycle(st);
        Telemetry::record_max(&self.telemetry.max_mark_ns, st.mark_start.elapsed());
        st.trace.mark = st.term_start.elapsed();
        st.trace.heap_mark_end = self.memory.footprint().1;
        st.trace.live = self.mark.marked_bytes.load(Ordering::Relaxed);
        st.trace.goal = goal;
        self.memory.begin_sweep(failure.is_some());
        self.post(st, LEVEL_RELEASE, 0);
        self.enter_phase(st, Phase::Sweep);
        if let (Some(msg), false) = (broken, drive == Drive::Background) {
            panic!("{msg}");
        }
        true
    }

    /// The checkmark pass over the heap as marking left it.
    fn verify(&self) -> Result<usize, VerifyError> {
        let mut roots = Vec::new();
        self.roots.for_each(|p| roots.push(p));
        // Every thread answered its snapshot, so its local stacks hold only marked objects and
        // black allocations (locals.rs): a word read now, however stale, must verify.
        for rec in self.registry.records() {
            rec.locals.scan_locked(|p| roots.push(p));
        }
        let (scan_only, ready) = self.finalizer_verify_roots();
        roots.extend(ready);
        let ephemerons = |reached: &dyn Fn(usize) -> bool| self.ephemeron_values(reached);
        // The lists are read when the walk is over (the verifier asks only then): a weak object
        // is listed before it can be reached, so one reached during the walk is listed by its end.
        let lists = std::cell::OnceCell::new();
        let listed = |p: usize, kind: u8| {
            let (cells, tables) = lists.get_or_init(|| self.weak.listed());
            if kind == crate::object::WEAK_TABLE {
                tables.contains(&p)
            } else {
                cells.contains(&p)
            }
        };
        Verifier::run(&self.memory, roots, scan_only, &ephemerons, &listed)
    }

    /// Empties every barrier ring and the shared queue, until no marker holds grey work (after a
    /// failed mark, with the barrier off: markers still draining finish what they hold, and what
    /// they hand back to the queue is discarded).
    fn discard_grey_until_idle(&self) {
        for rec in self.registry.records() {
            rec.barrier.drain(|_| {});
        }
        let mut spins = 0;
        loop {
            self.mark.discard_queued();
            if self.mark.is_idle() {
                return;
            }
            spins += 1;
            crate::sync::spin_wait(spins);
        }
    }

    /// Hands the pacer what this mark measured and publishes the next trigger; returns the goal (0:
    /// none).
    fn pace_next_cycle(&self, st: &mut CycleState) -> usize {
        let marked = self.mark.marked_bytes.load(Ordering::Relaxed);
        // Objects allocated black count as marked (as in Go): they may well be live.
        let heap_marked = marked + self.memory.counters.black_bytes.load(Ordering::Relaxed);
        let heap_at_mark_end = self.heap_live();
        st.heap_peak = heap_at_mark_end;
        let cpu = self.telemetry.cpu_ns();
        let wall_cpus = st.mark_start.elapsed().as_nanos().max(1) as f64 * self.procs as f64;
        let used = |i: usize| cpu[i].saturating_sub(st.cpu_at_mark[i]) as f64 / wall_cpus;
        let report = MarkReport {
            heap_marked,
            root_bytes: self.roots.len() * std::mem::size_of::<usize>(),
            scan_work: self.mark.scan_work.load(Ordering::Relaxed),
            heap_triggered: st.heap_triggered,
            heap_at_mark_end,
            utilization: (used(0) + used(1)).min(1.0),
            idle_utilization: used(2).min(1.0),
        };
        self.telemetry.peak_heap.fetch_max(heap_at_mark_end, Ordering::Relaxed);
        let mut p = self.pacer.lock();
        p.end_mark(&report);
        self.alloc_at_mark_end.store(self.memory.counters.allocated_bytes.load(Ordering::Relaxed), Ordering::Relaxed);
        self.heap_marked.store(heap_marked, Ordering::Relaxed);
        self.publish_pacing(&p);
        self.telemetry.goal.load(Ordering::Relaxed)
    }

    /// Sweeps up to `max` unswept spans, and queues the drop glue of the dead objects found as
    /// the sweep of `cycle` (sweep.rs). Returns whether there were any.
    pub(crate) fn sweep_batch(&self, max: usize, cycle: u64, b: &mut SweepBuffers) -> bool {
        b.spans.clear();
        self.memory.pop_unswept(max, &mut b.spans);
        if b.spans.is_empty() {
            return false;
        }
        for sp in std::mem::take(&mut b.spans) {
            // SAFETY: popping made us the holder; marking is over for this sweep generation;
            // drop glue is only queued.
            if let Some(sp) = unsafe { self.sweep_span(sp, &mut b.drops, &mut b.dead) } {
                b.swept.push(sp);
            }
        }
        self.drops.push(cycle, &mut b.drops);
        // SAFETY: we hold the swept spans and give them up; the emptied ones hold no live object.
        unsafe {
            self.memory.release_spans(&b.swept);
            self.memory.free_spans(&mut b.dead);
        }
        b.swept.clear();
        true
    }

    fn sweep_step(&self, st: &mut CycleState, drive: Drive) -> bool {
        let max = if drive == Drive::SlowPath { SLOW_PATH_SWEEP_BUDGET } else { usize::MAX };
        let mut swept = false;
        while self.sweep_batch(max.min(64), st.cycle, &mut st.bufs) {
            swept = true;
            if max != usize::MAX {
                break;
            }
        }
        // Every thread must have released its cached spans before "nothing left to sweep" means
        // the sweep is done: only then can no stale span appear any more.
        if !self.answer_for_outside(st, token(st.cycle, LEVEL_RELEASE)) || !self.memory.sweep_done() {
            return swept;
        }
        // The cycle is complete. What the spans hold beyond live objects is overhead the memory
        // limit must leave room for; free pages above the new goal go back to the OS.
        let t = &self.telemetry;
        let swept_live = self.memory.counters.swept_live_bytes.load(Ordering::Relaxed);
        let overhead = self.memory.footprint().1.saturating_sub(swept_live);
        t.overhead.store(overhead, Ordering::Relaxed);
        {
            let mut p = self.pacer.lock();
            p.set_overhead(overhead);
            self.publish_pacing(&p);
        }
        if drive != Drive::SlowPath {
            self.scavenge(st.heap_peak);
        }
        t.live_bytes.store(swept_live, Ordering::Relaxed);
        t.live_objects.store(self.memory.counters.swept_live_objects.load(Ordering::Relaxed), Ordering::Relaxed);
        t.gc_wall_ns.fetch_add(st.cycle_start.elapsed().as_nanos() as u64, Ordering::Relaxed);
        st.trace.sweep = st.phase_start.elapsed();
        st.trace.since_start = self.created.elapsed();
        st.trace.roots = self.roots.len();
        st.trace.threads = self.registry.len();
        st.trace.workers = self.config.workers;
        st.completed_pending = true;
        self.enter_phase(st, Phase::Idle);
        true
    }

    /// Completes the cycle's trace line and prints it to stderr.
    fn print_trace(&self, st: &mut CycleState) {
        let now = self.telemetry.cpu_ns();
        let tr = &mut st.trace;
        [tr.cpu_assist_ns, tr.cpu_mark_ns, tr.cpu_idle_ns, tr.cpu_sweep_ns, tr.cpu_other_ns] =
            std::array::from_fn(|k| now[k].saturating_sub(st.cpu_at_start[k]));
        tr.gc_cpu_share =
            now.iter().sum::<u64>() as f64 / 1e9 / (tr.since_start.as_secs_f64() * self.procs as f64).max(1e-9);
        crate::telemetry::report(&tr.line());
    }

    /// Answers request `token` for every thread outside a scope; true if every thread has now
    /// answered it.
    fn answer_for_outside(&self, st: &mut CycleState, token: u64) -> bool {
        let sg_target = st.sg_target;
        let mut all = true;
        for rec in self.registry.records() {
            match rec.state.claim(token) {
                Claim::Answered => {}
                Claim::Inside => {
                    all = false;
                    st.held_by = Some(rec);
                }
                Claim::Claimed => {
                    // SAFETY: the claim makes us the owner of the record's cache.
                    unsafe { self.act_for(&rec, level(token), sg_target) };
                    rec.state.end_claim(token);
                }
            }
        }
        if all {
            // A request some thread held up by staying in its scope: the wait is the cycle's (it
            // could not advance), charged to the last thread found inside, and it lasts until
            // that thread answered (its own timestamp), not until we looked.
            if let Some(rec) = st.held_by.take() {
                let posted = st.posted.duration_since(self.created);
                let answered = Duration::from_nanos(rec.answered_at_ns.load(Ordering::Relaxed));
                let wait = answered.saturating_sub(posted);
                self.telemetry.record_scope_wait(&rec.name, wait);
                keep_longest_wait(&mut st.trace.scope_wait, &rec.name, wait);
            }
        }
        all
    }

    /// Posts request `level` of the current cycle (and the colour a snapshot adopts).
    fn post(&self, st: &mut CycleState, level: u64, black_below: u32) {
        st.posted = Instant::now();
        st.held_by = None;
        self.registry.post(token(st.cycle, level), black_below);
    }

    /// Does to a thread's cache what answering a request of `level` asks.
    ///
    /// # Safety
    /// The caller owns the record (the thread inside a scope, or a claim).
    pub(crate) unsafe fn act_for(&self, rec: &ThreadRecord, level: u64, sg_target: u32) {
        // SAFETY: forwarded from the caller.
        let cache = unsafe { rec.cache() };
        match level {
            LEVEL_SNAPSHOT => {
                // The thread's local stacks are grey until now: shade what they hold, before the
                // answer is published (locals.rs). From here the thread allocates black.
                // SAFETY: the caller owns the record.
                unsafe { rec.locals.scan(|p| _ = self.grey_to_injector(p)) };
                cache.set_colour(sg_target);
            }
            LEVEL_RELEASE => {
                cache.release_all(&self.memory);
                cache.set_colour(0);
                cache.flush_counters(&self.memory);
            }
            _ => {}
        }
    }
}

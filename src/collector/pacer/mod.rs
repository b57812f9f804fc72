//! The pacer: when a cycle starts, how much CPU it gets, and how much an allocating thread pays.
//!
//! This is Go's pacer (runtime/mgcpacer.go, the 2021 redesign), as pure arithmetic on numbers the
//! collector measures: nothing here reads a clock or an atomic, so the tests in `sim.rs` can drive
//! it with synthetic allocation and scan rates and check its promises exactly.
//!
//! **Heap goal.** After a mark that found `marked` bytes live (objects allocated black during the
//! mark included, as Go counts them) with `roots` bytes of roots, the heap may grow to
//!
//! ```text
//! gc_percent goal = marked + (marked + roots) × gc_percent / 100,   at least 4 MiB × gc_percent / 100
//! limit goal      = memory_limit − headroom − overhead              (headroom: 3 %, at least 1 MiB)
//! goal            = min(gc_percent goal, limit goal),               at least marked + 64 KiB
//! ```
//!
//! where `overhead` is what the heap has mapped beyond its objects (span fragmentation, page
//! tables, span structs). `gc_percent` may be off: then only the limit sets a goal, and with no
//! limit either no cycle ever starts by itself.
//!
//! **Trigger.** A cycle must start early enough that marking, at its 25 % CPU share, ends by the
//! time the heap reaches the goal. The *runway* is how far the heap grows during a mark: the
//! cons/mark ratio (bytes allocated per mutator CPU-second over bytes scanned per GC CPU-second,
//! the largest of the last four cycles, so one quiet cycle does not shorten the next runway) times
//! `(1 − 0.25)/0.25` times the scan work expected (last cycle's plus the roots). The trigger is
//! `goal − runway`, clamped to 70–95 % of the way from `marked` to the goal.
//!
//! **Assists.** If the runway was too short (the allocation rate jumped), allocating threads pay
//! for their allocation in scan work: `assist_work_per_byte` is the scan work left over the heap
//! left before the goal (Go's `revise`). Work the background workers did first goes into a bank of
//! credit that assists draw on, so at steady state nobody assists. If more work turns up than last
//! cycle's, the heap may stretch to a *hard goal* (`goal × (1 + gc_percent/100)`), and past the
//! goal the assists aim at 1.1 × goal with everything assumed live.
//!
//! **Background CPU.** 25 % of the CPUs: `dedicated` workers that mark full time, plus one
//! *fractional* worker with a duty cycle when 25 % is not a whole number of CPUs (Go's rule: round
//! to the nearest whole count unless that is more than 30 % off).
//!
//! **CPU limiter.** A bucket that fills with GC CPU time and drains with mutator CPU time, holding
//! one second of all CPUs: while it is full, GC has taken more than half the CPU for a while, and
//! assists are skipped (the heap overshoots rather than the program stopping).

#[cfg(test)]
mod sim;

/// The smallest heap goal at gc_percent 100, in bytes (scaled by gc_percent / 100).
pub(crate) const MIN_HEAP: usize = 4 << 20;
/// The share of the CPUs background marking aims at.
pub(crate) const BACKGROUND_UTILIZATION: f64 = 0.25;
/// The trigger lies between these fractions of the way from the marked heap to the goal.
pub(crate) const TRIGGER_MIN_RATIO: f64 = 0.70;
pub(crate) const TRIGGER_MAX_RATIO: f64 = 0.95;
/// Cycles whose cons/mark ratio the runway takes the largest of.
const CONS_MARK_HISTORY: usize = 4;
/// Headroom kept below the memory limit: this percentage, and at least `LIMIT_MIN_HEADROOM`.
const LIMIT_HEADROOM_PERCENT: usize = 3;
const LIMIT_MIN_HEADROOM: usize = 1 << 20;
/// The least room the goal leaves above the marked heap (when the limit is below the live heap).
const MIN_RUNWAY: usize = 64 << 10;
/// Past the goal, assists aim to finish by this multiple of it.
const MAX_OVERSHOOT: f64 = 1.1;
/// A goal or trigger of `NONE` never arrives.
pub(crate) const NONE: usize = usize::MAX;

/// What one mark measured, handed to [`Pacer::end_mark`].
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct MarkReport {
    /// Bytes marked, objects allocated black during the mark included.
    pub(crate) heap_marked: usize,
    /// Bytes of roots (the root table's words).
    pub(crate) root_bytes: usize,
    /// Bytes scanned by the mark (workers and assists).
    pub(crate) scan_work: usize,
    /// The heap (marked at the last cycle plus allocated since) when this cycle was triggered,
    /// and when its mark ended.
    pub(crate) heap_triggered: usize,
    pub(crate) heap_at_mark_end: usize,
    /// GC CPU (workers and assists) over all CPUs' time during the mark, and idle workers' share.
    pub(crate) utilization: f64,
    pub(crate) idle_utilization: f64,
}

/// The pacer's state: its settings, what the last marks measured, and what it decided.
#[derive(Debug)]
pub(crate) struct Pacer {
    gc_percent: Option<u32>,
    memory_limit: usize,
    heap_marked: usize,
    root_bytes: usize,
    last_scan: usize,
    cons_mark: [f64; CONS_MARK_HISTORY],
    cons_mark_next: usize,
    /// Bytes the heap has mapped beyond its objects, as last measured.
    overhead: usize,
    runway: usize,
    goal: usize,
    trigger: usize,
}

impl Pacer {
    /// A pacer for a new, empty heap.
    pub(crate) fn new(gc_percent: Option<u32>, memory_limit: Option<usize>) -> Pacer {
        let mut p = Pacer {
            gc_percent,
            memory_limit: memory_limit.unwrap_or(NONE),
            heap_marked: 0,
            root_bytes: 0,
            last_scan: 0,
            cons_mark: [0.0; CONS_MARK_HISTORY],
            cons_mark_next: 0,
            overhead: 0,
            runway: 0,
            goal: NONE,
            trigger: NONE,
        };
        p.commit();
        p
    }

    pub(crate) fn gc_percent(&self) -> Option<u32> {
        self.gc_percent
    }

    pub(crate) fn memory_limit(&self) -> Option<usize> {
        (self.memory_limit != NONE).then_some(self.memory_limit)
    }

    /// The heap size the next cycle must finish by (`NONE`: no cycle starts by itself).
    pub(crate) fn goal(&self) -> usize {
        self.goal
    }

    /// The heap size at which the next cycle starts (`NONE`: never by itself).
    pub(crate) fn trigger(&self) -> usize {
        self.trigger
    }

    /// Whether the memory limit, not gc_percent, sets the goal.
    #[cfg(test)]
    pub(crate) fn limit_bound(&self) -> bool {
        self.limit_goal() < self.gc_percent_goal()
    }

    pub(crate) fn set_gc_percent(&mut self, gc_percent: Option<u32>) {
        self.gc_percent = gc_percent;
        self.commit();
    }

    pub(crate) fn set_memory_limit(&mut self, limit: Option<usize>) {
        self.memory_limit = limit.unwrap_or(NONE);
        self.commit();
    }

    /// Records what the heap maps beyond its objects, and re-decides goal and trigger.
    pub(crate) fn set_overhead(&mut self, overhead: usize) {
        self.overhead = overhead;
        self.commit();
    }

    fn gc_percent_goal(&self) -> usize {
        match self.gc_percent {
            None => NONE,
            Some(p) => {
                let p = p as u128;
                let grown = self.heap_marked as u128 + (self.heap_marked as u128 + self.root_bytes as u128) * p / 100;
                let floor = MIN_HEAP as u128 * p / 100;
                grown.max(floor).min(NONE as u128 - 1) as usize
            }
        }
    }

    fn limit_goal(&self) -> usize {
        if self.memory_limit == NONE {
            return NONE;
        }
        let headroom = (self.memory_limit / 100 * LIMIT_HEADROOM_PERCENT).max(LIMIT_MIN_HEADROOM);
        self.memory_limit.saturating_sub(headroom).saturating_sub(self.overhead)
    }

    /// The larger of the recent cons/mark ratios.
    fn cons_mark(&self) -> f64 {
        self.cons_mark.iter().copied().fold(0.0, f64::max)
    }

    /// Re-decides goal and trigger from the settings and measurements.
    fn commit(&mut self) {
        let goal = self.gc_percent_goal().min(self.limit_goal());
        if goal == NONE {
            self.goal = NONE;
            self.trigger = NONE;
            return;
        }
        let goal = goal.max(self.heap_marked.saturating_add(MIN_RUNWAY));
        let expected_scan = self.last_scan.saturating_add(self.root_bytes) as f64;
        let runway = self.cons_mark() * (1.0 - BACKGROUND_UTILIZATION) / BACKGROUND_UTILIZATION * expected_scan;
        self.runway = runway.min(NONE as f64) as usize;
        let distance = (goal - self.heap_marked) as f64;
        let lo = self.heap_marked + (distance * TRIGGER_MIN_RATIO) as usize;
        let hi = self.heap_marked + (distance * TRIGGER_MAX_RATIO) as usize;
        self.goal = goal;
        self.trigger = goal.saturating_sub(self.runway).clamp(lo, hi);
    }

    /// Takes in what a mark measured: the marked heap, the scan work, and this cycle's cons/mark
    /// ratio; re-decides goal and trigger for the next cycle.
    pub(crate) fn end_mark(&mut self, r: &MarkReport) {
        if r.scan_work > 0 && r.utilization > 0.0 && r.utilization < 1.0 {
            let allocated = r.heap_at_mark_end.saturating_sub(r.heap_triggered) as f64;
            let cons_mark =
                allocated * (r.utilization + r.idle_utilization) / (r.scan_work as f64 * (1.0 - r.utilization));
            self.cons_mark[self.cons_mark_next] = cons_mark;
            self.cons_mark_next = (self.cons_mark_next + 1) % CONS_MARK_HISTORY;
        }
        self.heap_marked = r.heap_marked;
        self.root_bytes = r.root_bytes;
        self.last_scan = r.scan_work;
        self.commit();
    }

    /// Scan work an allocating thread owes per byte it allocates while marking, given the heap now
    /// and the scan work done so far this cycle (Go's `revise`).
    pub(crate) fn assist_work_per_byte(&self, heap_live: usize, scan_done: usize) -> f64 {
        if self.goal == NONE {
            return 0.0;
        }
        let mut goal = self.goal as f64;
        let mut expected = self.last_scan.saturating_add(self.root_bytes) as f64;
        // Everything allocated since the last mark may turn out live and scannable.
        let max_scan = (heap_live.saturating_add(self.root_bytes)) as f64;
        let scan_done = scan_done as f64;
        if scan_done > expected {
            // The heap grew: stretch to the hard goal, assuming everything may be live.
            expected = max_scan;
            goal *= 1.0 + self.gc_percent.unwrap_or(100) as f64 / 100.0;
        }
        if heap_live as f64 > goal {
            goal *= MAX_OVERSHOOT;
            expected = max_scan;
        }
        let remaining_scan = (expected - scan_done).max(1000.0);
        let remaining_heap = (goal - heap_live as f64).max(1.0);
        remaining_scan / remaining_heap
    }
}

/// How the background share of the CPUs is spent (Go's `startCycle`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct WorkerPlan {
    /// Workers that mark full time.
    pub(crate) dedicated: usize,
    /// The duty cycle (0..1) of one more worker that marks part time; 0 when none is needed.
    pub(crate) fractional: f64,
}

impl WorkerPlan {
    /// The plan for `procs` CPUs.
    pub(crate) fn for_procs(procs: usize) -> WorkerPlan {
        let procs = procs.max(1);
        let total = procs as f64 * BACKGROUND_UTILIZATION;
        let mut dedicated = (total + 0.5) as usize;
        let error = dedicated as f64 / total - 1.0;
        if error.abs() > 0.3 {
            if dedicated as f64 > total {
                dedicated -= 1;
            }
            WorkerPlan { dedicated, fractional: (total - dedicated as f64).min(1.0) }
        } else {
            WorkerPlan { dedicated, fractional: 0.0 }
        }
    }

    /// The plan capped to `threads` background threads.
    pub(crate) fn capped(self, threads: usize) -> WorkerPlan {
        if self.dedicated >= threads {
            WorkerPlan { dedicated: threads, fractional: 0.0 }
        } else if self.dedicated + 1 > threads {
            WorkerPlan { dedicated: self.dedicated, fractional: 0.0 }
        } else {
            self
        }
    }

    /// Background CPUs the plan uses.
    #[cfg(test)]
    pub(crate) fn cpus(&self) -> f64 {
        self.dedicated as f64 + self.fractional
    }
}

/// The fractional worker's duty cycle: whether, having used `cpu_ns` of CPU over `elapsed_ns` of
/// the mark, it should mark now; if not, how long to wait until it should.
pub(crate) fn fractional_wait_ns(duty: f64, cpu_ns: u64, elapsed_ns: u64) -> u64 {
    if duty <= 0.0 {
        return u64::MAX;
    }
    let due = cpu_ns as f64 / duty;
    (due - elapsed_ns as f64).max(0.0) as u64
}

/// Go's GC CPU limiter: a bucket of `capacity` nanoseconds that GC CPU time fills and mutator CPU
/// time drains. While it is full, assists are skipped.
#[derive(Clone, Debug)]
pub(crate) struct CpuLimiter {
    fill: f64,
    capacity: f64,
    limiting: bool,
}

impl CpuLimiter {
    /// A limiter for `procs` CPUs: its window is one second of all of them.
    pub(crate) fn new(procs: usize) -> CpuLimiter {
        CpuLimiter { fill: 0.0, capacity: procs.max(1) as f64 * 1e9, limiting: false }
    }

    /// Accounts an interval in which GC used `gc_ns` of the `total_ns` the CPUs had; returns
    /// whether the limiter is on.
    pub(crate) fn update(&mut self, gc_ns: u64, total_ns: u64) -> bool {
        let gc = gc_ns.min(total_ns) as f64;
        let mutator = total_ns as f64 - gc;
        self.fill = (self.fill + gc - mutator).clamp(0.0, self.capacity);
        // Hysteresis: on when full, off once a tenth has drained.
        self.limiting = if self.limiting { self.fill > self.capacity * 0.9 } else { self.fill >= self.capacity };
        self.limiting
    }

    #[cfg(test)]
    pub(crate) fn limiting(&self) -> bool {
        self.limiting
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: usize = 1 << 20;

    fn marked(p: &mut Pacer, heap_marked: usize, root_bytes: usize) {
        p.end_mark(&MarkReport { heap_marked, root_bytes, ..MarkReport::default() });
    }

    #[test]
    fn goal_counts_roots_and_has_a_scaled_floor() {
        let mut p = Pacer::new(Some(100), None);
        assert_eq!(p.goal(), 4 * MIB);
        marked(&mut p, 10 * MIB, MIB);
        assert_eq!(p.goal(), 21 * MIB, "marked + (marked + roots) × 100 %");
        let mut p = Pacer::new(Some(50), None);
        assert_eq!(p.goal(), 2 * MIB, "the floor scales with gc_percent");
        marked(&mut p, 100 * MIB, 0);
        assert_eq!(p.goal(), 150 * MIB);
        marked(&mut p, usize::MAX / 2, 0);
        assert!(p.goal() < NONE, "no overflow into 'never'");
    }

    #[test]
    fn gc_percent_off_without_a_limit_never_triggers() {
        let mut p = Pacer::new(None, None);
        assert_eq!((p.goal(), p.trigger()), (NONE, NONE));
        marked(&mut p, 100 * MIB, 0);
        assert_eq!(p.trigger(), NONE);
        assert_eq!(p.assist_work_per_byte(1 << 40, 0), 0.0);
        p.set_memory_limit(Some(256 * MIB));
        assert!(p.trigger() < 256 * MIB);
    }

    #[test]
    fn the_limit_lowers_the_goal_with_headroom_and_overhead() {
        let mut p = Pacer::new(Some(100), Some(100 * MIB));
        marked(&mut p, 60 * MIB, 0);
        p.set_overhead(5 * MIB);
        assert!(p.limit_bound());
        assert_eq!(p.goal(), 100 * MIB - 3 * MIB - 5 * MIB);
        p.set_memory_limit(None);
        assert_eq!(p.goal(), 120 * MIB);
        p.set_memory_limit(Some(10 * MIB));
        assert_eq!(p.goal(), 60 * MIB + MIN_RUNWAY, "never below the marked heap");
    }

    #[test]
    fn trigger_is_clamped_between_70_and_95_percent() {
        let mut p = Pacer::new(Some(100), None);
        marked(&mut p, 100 * MIB, 0);
        // No cons/mark history: no runway, the latest trigger.
        assert_eq!(p.trigger(), 100 * MIB + 95 * MIB);
        // A huge cons/mark ratio: the earliest trigger.
        p.end_mark(&MarkReport {
            heap_marked: 100 * MIB,
            scan_work: MIB,
            heap_triggered: 0,
            heap_at_mark_end: 1000 * MIB,
            utilization: 0.25,
            ..MarkReport::default()
        });
        assert_eq!(p.trigger(), 100 * MIB + 70 * MIB);
    }

    #[test]
    fn runway_is_the_allocation_expected_during_the_next_mark() {
        let mut p = Pacer::new(Some(100), None);
        // At exactly 25 % utilization, the runway is what was allocated during the mark (scaled
        // by the scan work expected next time, here the same).
        p.end_mark(&MarkReport {
            heap_marked: 100 * MIB,
            scan_work: 100 * MIB,
            heap_triggered: 180 * MIB,
            heap_at_mark_end: 200 * MIB,
            utilization: 0.25,
            ..MarkReport::default()
        });
        assert_eq!(p.runway, 20 * MIB);
        assert_eq!(p.trigger(), 200 * MIB - 20 * MIB);
    }

    #[test]
    fn assists_pay_the_remaining_scan_over_the_remaining_heap() {
        let mut p = Pacer::new(Some(100), None);
        p.end_mark(&MarkReport { heap_marked: 100 * MIB, scan_work: 100 * MIB, ..MarkReport::default() });
        // 60 MiB of scanning left with 20 MiB of heap left: 3 bytes of scan per byte.
        let r = p.assist_work_per_byte(180 * MIB, 40 * MIB);
        assert!((r - 3.0).abs() < 1e-9, "{r}");
        // Past the goal: aim at 1.1 × goal with everything assumed live.
        let r = p.assist_work_per_byte(210 * MIB, 40 * MIB);
        assert!((r - (210.0 - 40.0) / (220.0 - 210.0)).abs() < 1e-9, "{r}");
    }

    #[test]
    fn worker_plans_match_go() {
        let plan = |n| WorkerPlan::for_procs(n);
        assert_eq!(plan(1), WorkerPlan { dedicated: 0, fractional: 0.25 });
        assert_eq!(plan(2), WorkerPlan { dedicated: 0, fractional: 0.5 });
        assert_eq!(plan(4), WorkerPlan { dedicated: 1, fractional: 0.0 });
        assert_eq!(plan(6), WorkerPlan { dedicated: 1, fractional: 0.5 });
        assert_eq!(plan(8), WorkerPlan { dedicated: 2, fractional: 0.0 });
        assert_eq!(plan(10), WorkerPlan { dedicated: 3, fractional: 0.0 }, "2.5 rounds up: 20 % off is fine");
        for n in 1..64 {
            assert!((plan(n).cpus() - n as f64 / 4.0).abs() < 0.3 * n as f64 / 4.0 + 1e-9, "{n}");
        }
        assert_eq!(plan(8).capped(1), WorkerPlan { dedicated: 1, fractional: 0.0 });
        assert_eq!(plan(6).capped(1), WorkerPlan { dedicated: 1, fractional: 0.0 });
        assert_eq!(plan(2).capped(1), plan(2));
    }

    #[test]
    fn fractional_worker_keeps_its_duty_cycle() {
        assert_eq!(fractional_wait_ns(0.5, 0, 1000), 0);
        assert_eq!(fractional_wait_ns(0.5, 1000, 1000), 1000, "ran all along: wait as long again");
        assert_eq!(fractional_wait_ns(0.25, 100, 1000), 0);
        assert_eq!(fractional_wait_ns(0.0, 0, 1000), u64::MAX);
    }

    #[test]
    fn cpu_limiter_engages_after_a_second_of_gc_majority_and_lets_go() {
        let mut l = CpuLimiter::new(2);
        let ms = 1_000_000;
        // 90 % GC: the bucket (2 CPU-seconds) fills at 1.6 CPU-ms per ms.
        let mut t = 0;
        while !l.update(18 * ms / 10, 2 * ms) {
            t += 1;
            assert!(t < 2000);
        }
        assert!((1200..=1300).contains(&t), "full after {t} ms");
        // 40 % GC: drains at 0.4 CPU-ms per ms; off once a tenth (200 CPU-ms) has drained.
        let mut t = 0;
        while l.update(8 * ms / 10, 2 * ms) {
            t += 1;
        }
        assert!((450..=550).contains(&t), "off after {t} ms");
        assert!(!l.limiting());
        // Half and half never fills it.
        let mut l = CpuLimiter::new(2);
        for _ in 0..10_000 {
            assert!(!l.update(ms, 2 * ms));
        }
    }
}

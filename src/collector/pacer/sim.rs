//! A deterministic simulation of a program and its collector, driving the real [`Pacer`],
//! [`WorkerPlan`], fractional duty cycle and [`CpuLimiter`] with synthetic rates (no clock): the
//! mutators allocate `alloc_rate` bytes per CPU-second on every CPU the collector leaves them, the
//! markers scan `scan_rate` bytes per CPU-second, and the live heap follows a function of time.
//!
//! Each step of `DT` seconds: if no cycle runs and the heap passed the trigger, one starts (its
//! scan work is the live heap plus the roots); while one runs, the background workers get the
//! plan's CPUs, their scan work banks credit, and the mutators pay for what they allocate at the
//! pacer's assist ratio, from the bank first and then by scanning themselves (unless the limiter
//! is on). A mark ends when its scan work is done; what it allocated meanwhile counts as marked.

use super::*;

const DT: f64 = 50e-6;
const MIB: f64 = (1 << 20) as f64;

struct Params {
    procs: usize,
    /// Bytes a mutator allocates per CPU-second, as a function of time.
    alloc_rate: Box<dyn Fn(f64) -> f64>,
    /// Bytes a marker scans per CPU-second.
    scan_rate: f64,
    /// The live heap, as a function of time.
    live: Box<dyn Fn(f64) -> f64>,
    root_bytes: usize,
    gc_percent: Option<u32>,
    memory_limit: Option<usize>,
    /// Bytes the heap maps beyond its objects.
    overhead: usize,
}

/// One simulated cycle's outcome.
#[derive(Clone, Copy, Debug)]
struct Cycle {
    start: f64,
    goal: usize,
    /// The heap when the mark ended: the most it reached in this cycle.
    peak: f64,
    live: f64,
    /// GC CPU (workers, assists) and assists alone, as shares of all CPUs during the mark.
    gc_share: f64,
    assist_share: f64,
}

struct Marking {
    start: f64,
    work: f64,
    scanned: f64,
    triggered: f64,
    credit: f64,
    bg_cpu: f64,
    frac_cpu: f64,
    assist_cpu: f64,
    goal: usize,
}

struct Sim {
    p: Params,
    pacer: Pacer,
    plan: WorkerPlan,
    limiter: CpuLimiter,
    t: f64,
    heap: f64,
    marking: Option<Marking>,
    cycles: Vec<Cycle>,
    limited_steps: u64,
}

impl Sim {
    fn new(p: Params) -> Sim {
        let mut pacer = Pacer::new(p.gc_percent, p.memory_limit);
        pacer.set_overhead(p.overhead);
        let heap = (p.live)(0.0);
        Sim {
            plan: WorkerPlan::for_procs(p.procs),
            limiter: CpuLimiter::new(p.procs),
            pacer,
            t: 0.0,
            heap,
            marking: None,
            cycles: Vec::new(),
            limited_steps: 0,
            p,
        }
    }

    fn run(&mut self, seconds: f64) {
        let end = self.t + seconds;
        while self.t < end {
            self.step();
        }
    }

    fn step(&mut self) {
        let procs = self.p.procs as f64;
        let rate = (self.p.alloc_rate)(self.t);
        let s = self.p.scan_rate;
        if self.marking.is_none() && self.heap >= self.pacer.trigger() as f64 {
            let live = (self.p.live)(self.t);
            self.marking = Some(Marking {
                start: self.t,
                work: live + self.p.root_bytes as f64,
                scanned: 0.0,
                triggered: self.heap,
                credit: 0.0,
                bg_cpu: 0.0,
                frac_cpu: 0.0,
                assist_cpu: 0.0,
                goal: self.pacer.goal(),
            });
        }
        let Some(m) = self.marking.as_mut() else {
            self.heap += procs * DT * rate;
            self.limiter.update(0, (procs * DT * 1e9) as u64);
            self.t += DT;
            return;
        };
        // Background workers: the dedicated ones, and the fractional one when it is due.
        let elapsed = self.t - m.start;
        let frac_runs =
            fractional_wait_ns(self.plan.fractional, (m.frac_cpu * 1e9) as u64, (elapsed * 1e9) as u64) == 0;
        let frac = if frac_runs { DT } else { 0.0 };
        m.frac_cpu += frac;
        let bg = self.plan.dedicated as f64 * DT + frac;
        m.bg_cpu += bg;
        m.scanned += bg * s;
        m.credit += bg * s;
        // Mutators: allocate on the rest, paying `ratio` bytes of scan work per byte.
        let mutator_cpu = procs * DT - bg;
        let ratio = if self.limiter.limiting() {
            self.limited_steps += 1;
            0.0
        } else {
            self.pacer.assist_work_per_byte(self.heap as usize, m.scanned as usize)
        };
        let debt = mutator_cpu * rate * ratio;
        let (alloc_cpu, assist_cpu) = if debt <= m.credit {
            m.credit -= debt;
            (mutator_cpu, 0.0)
        } else {
            // a + assist = mutator_cpu, assist × s = a × rate × ratio − credit.
            let a = (mutator_cpu + m.credit / s) / (1.0 + rate * ratio / s);
            m.credit = 0.0;
            (a, mutator_cpu - a)
        };
        m.assist_cpu += assist_cpu;
        m.scanned += assist_cpu * s;
        self.heap += alloc_cpu * rate;
        self.limiter.update(((bg + assist_cpu) * 1e9) as u64, (procs * DT * 1e9) as u64);
        self.t += DT;
        if m.scanned >= m.work {
            let mark_time = self.t - m.start;
            let live = (self.p.live)(self.t);
            // Objects allocated during the mark were allocated black: they count as marked.
            let marked = live + (self.heap - m.triggered);
            let gc = m.bg_cpu + m.assist_cpu;
            self.cycles.push(Cycle {
                start: m.start,
                goal: m.goal,
                peak: self.heap,
                live,
                gc_share: gc / (procs * mark_time),
                assist_share: m.assist_cpu / (procs * mark_time),
            });
            self.pacer.end_mark(&MarkReport {
                heap_marked: marked as usize,
                root_bytes: self.p.root_bytes,
                scan_work: m.scanned as usize,
                heap_triggered: m.triggered as usize,
                heap_at_mark_end: self.heap as usize,
                utilization: gc / (procs * mark_time),
                idle_utilization: 0.0,
            });
            self.heap = marked;
            self.marking = None;
        }
    }
}

fn steady(procs: usize, alloc_rate: f64) -> Params {
    Params {
        procs,
        alloc_rate: Box::new(move |_| alloc_rate),
        scan_rate: 400.0 * MIB,
        live: Box::new(|_| 64.0 * MIB),
        root_bytes: 64 << 10,
        gc_percent: Some(100),
        memory_limit: None,
        overhead: 0,
    }
}

#[test]
fn steady_state_peaks_at_the_goal_with_a_quarter_of_the_cpu() {
    for procs in [1, 2, 4, 6, 8] {
        let mut sim = Sim::new(steady(procs, 40.0 * MIB));
        sim.run(30.0);
        assert!(sim.cycles.len() > 10, "{procs} CPUs: {} cycles", sim.cycles.len());
        for c in &sim.cycles[5..] {
            let peak = c.peak / c.goal as f64;
            assert!((0.95..=1.05).contains(&peak), "{procs} CPUs: peak {:.3} of the goal in {c:?}", peak);
            assert!(
                (0.22..=0.28).contains(&c.gc_share),
                "{procs} CPUs: GC used {:.3} of the CPUs in {c:?}",
                c.gc_share
            );
            assert!(c.assist_share < 0.01, "{procs} CPUs: assists at steady state in {c:?}");
        }
    }
}

#[test]
fn the_heap_stays_within_the_memory_limit_until_the_live_heap_exceeds_it() {
    let limit = 256 << 20;
    let overhead = 8 << 20;
    let mut sim = Sim::new(Params {
        procs: 2,
        alloc_rate: Box::new(|_| 40.0 * MIB),
        scan_rate: 400.0 * MIB,
        // Grows from 16 MiB by 4 MiB a second, past the limit after about 60 s.
        live: Box::new(|t| 16.0 * MIB + 4.0 * MIB * t),
        root_bytes: 64 << 10,
        gc_percent: Some(100),
        memory_limit: Some(limit),
        overhead,
    });
    sim.run(75.0);
    let limit = limit as f64;
    let mut bound = 0;
    for c in &sim.cycles {
        let mapped = c.peak + overhead as f64;
        if c.live + overhead as f64 <= 0.9 * limit {
            assert!(mapped <= 1.05 * limit, "mapped {:.1} MiB over a {} MiB limit in {c:?}", mapped / MIB, limit / MIB);
            if 2.0 * c.live + (overhead as f64) > limit {
                bound += 1;
                assert!(mapped >= 0.90 * limit, "limit-bound, yet only {:.1} MiB used in {c:?}", mapped / MIB);
            }
        }
    }
    assert!(bound > 10, "the limit bound {bound} cycles");
    // Past the limit, cycles run back to back, and the limiter caps GC near half the CPU.
    let late: Vec<_> = sim.cycles.iter().filter(|c| c.live > limit).collect();
    assert!(late.len() > 5, "{} cycles past the limit", late.len());
    assert!(sim.limited_steps > 0, "the CPU limiter never engaged");
    for c in &late {
        assert!(c.gc_share < 0.65, "GC used {:.2} of the CPUs past the limit: {c:?}", c.gc_share);
    }
}

#[test]
fn assists_hold_the_goal_when_the_allocation_rate_jumps_tenfold() {
    let mut p = steady(2, 4.0 * MIB);
    p.alloc_rate = Box::new(|t| if t < 10.0 { 4.0 * MIB } else { 40.0 * MIB });
    let mut sim = Sim::new(p);
    sim.run(25.0);
    let jump = sim.cycles.iter().position(|c| c.start >= 10.0).unwrap();
    for c in &sim.cycles[5..] {
        let over = c.peak / c.goal as f64;
        assert!(over <= 1.10, "peak {over:.3} of the goal in {c:?}");
    }
    assert!(sim.cycles[jump..].iter().any(|c| c.assist_share > 0.05), "assists did the work");
    // Then the runway adapts: assists fade out again.
    let last = sim.cycles.last().unwrap();
    assert!(last.assist_share < 0.01, "still assisting at the end: {last:?}");
}

#[test]
fn with_gc_percent_off_and_no_limit_no_cycle_starts() {
    let mut p = steady(2, 1000.0 * MIB);
    p.gc_percent = None;
    let mut sim = Sim::new(p);
    sim.run(10.0);
    assert!(sim.cycles.is_empty());
    assert!(sim.heap > 10e9, "allocated {} bytes", sim.heap);
}

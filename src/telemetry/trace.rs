//! `LOWPAUSE_TRACE=1`: one line per cycle on stderr, in the spirit of Go's `GODEBUG=gctrace=1`.
//!
//! ```text
//! gc 7 @1.234s 3%: 0.021+12.5+0.310+4.02 ms clock, 0.4/9.1/2.2+3.0+0.7=15.4 ms cpu, 41->44->20 MiB, 40 MiB goal, 3 roots, 2 threads, 1 workers
//! ```
//!
//! | field | meaning |
//! |---|---|
//! | `gc 7` | the cycle's number |
//! | `@1.234s` | time since the heap was created, at the end of the cycle |
//! | `3%` | share of the CPU (all cores) spent on collection since the heap was created |
//! | `a+b+c+d ms clock` | wall time of the phases: *handshake* (the cycle's start to every thread having turned its barrier on), *snapshot* (to every thread having taken its snapshot; marking runs meanwhile), *mark* (to the clean termination round, verification included), *sweep* (to the end of the sweep) |
//! | `a/w/i+s+o=t ms cpu` | CPU time of this cycle: marking split into mark assists / background workers (dedicated and fractional; in synchronous mode the mutators' marking) / idle workers, + sweeping (background) + other collector work (handshakes, termination rounds, verification) = total |
//! | `41->44->20 MiB` | bytes in spans in use at the start of the cycle (read when the snapshot is complete, so it holds every object marking can reach), at the end of marking, and marked live |
//! | `40 MiB goal` | the heap goal the cycle set for the next one |
//! | `roots`, `threads`, `workers` | live `Root`s, attached threads, background mark workers |
//! | `waited x ms on thread T's scope` | (shown from 0.1 ms) the longest one of the cycle's requests waited for thread `T`, inside a scope, to reach a safepoint: time in which the cycle could not advance |

use crate::memory::size_class::PAGE_SIZE;
use std::time::Duration;

/// What a cycle measured, for its trace line.
#[derive(Clone, Debug, Default)]
pub(crate) struct CycleTrace {
    pub(crate) cycle: u64,
    pub(crate) since_start: Duration,
    pub(crate) gc_cpu_share: f64,
    pub(crate) handshake: Duration,
    pub(crate) snapshot: Duration,
    pub(crate) mark: Duration,
    pub(crate) sweep: Duration,
    pub(crate) cpu_assist_ns: u64,
    pub(crate) cpu_mark_ns: u64,
    pub(crate) cpu_idle_ns: u64,
    pub(crate) cpu_sweep_ns: u64,
    pub(crate) cpu_other_ns: u64,
    pub(crate) heap_start: usize,
    pub(crate) heap_mark_end: usize,
    pub(crate) live: usize,
    pub(crate) goal: usize,
    pub(crate) roots: usize,
    pub(crate) threads: usize,
    pub(crate) workers: usize,
    /// Weak references cleared (cells and table entries), and finalizers queued, at mark end.
    pub(crate) weak: (usize, usize),
    /// The mark failed (a `Trace` impl panicked): the cycle freed nothing.
    pub(crate) failed: bool,
    /// The longest a request of this cycle waited on a thread inside a scope, and its name.
    pub(crate) scope_wait: Option<(String, Duration)>,
}

/// Scope waits shorter than this are left out of the line.
const SCOPE_WAIT_SHOWN: Duration = Duration::from_micros(100);

fn ms(d: Duration) -> String {
    format!("{:.3}", d.as_secs_f64() * 1e3)
}

fn mib(bytes: usize) -> usize {
    (bytes + PAGE_SIZE) >> 20
}

impl CycleTrace {
    /// The trace line (no newline).
    pub(crate) fn line(&self) -> String {
        let (a, m, i) = (self.cpu_assist_ns, self.cpu_mark_ns, self.cpu_idle_ns);
        let (s, o) = (self.cpu_sweep_ns, self.cpu_other_ns);
        let cpu = |ns: u64| format!("{:.3}", ns as f64 / 1e6);
        let weak = match self.weak {
            (0, 0) => String::new(),
            (w, f) => format!(", {w} weak cleared, {f} finalizers queued"),
        };
        let held = match &self.scope_wait {
            Some((name, d)) if *d >= SCOPE_WAIT_SHOWN => format!(", waited {} ms on thread {name}'s scope", ms(*d)),
            _ => String::new(),
        };
        format!(
            "gc {} @{:.3}s {:.0}%: {}+{}+{}+{} ms clock, {}/{}/{}+{}+{}={} ms cpu, {}->{}->{} MiB, {} MiB goal, {} roots, {} threads, {} workers{}{}",
            self.cycle,
            self.since_start.as_secs_f64(),
            self.gc_cpu_share * 100.0,
            ms(self.handshake),
            ms(self.snapshot),
            ms(self.mark),
            ms(self.sweep),
            cpu(a),
            cpu(m),
            cpu(i),
            cpu(s),
            cpu(o),
            cpu(a + m + i + s + o),
            mib(self.heap_start),
            mib(self.heap_mark_end),
            mib(self.live),
            mib(self.goal),
            self.roots,
            self.threads,
            self.workers,
            weak,
            held,
        ) + if self.failed { ", FAILED: a Trace impl panicked, nothing freed" } else { "" }
    }
}

//! The metrics snapshot a user reads from [`Heap::metrics`](crate::Heap::metrics), and its
//! printed report.

use super::bytes;
use super::stalls::{StallCause, StallSummary};
use std::fmt;
use std::time::Duration;

/// GC CPU time by kind.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct GcCpu {
    /// Background mark workers (dedicated and fractional; in synchronous mode, the marking the
    /// mutators did while driving the cycle).
    pub workers: Duration,
    /// Idle mark workers, and time donated with [`Heap::idle_step`](crate::Heap::idle_step).
    pub idle: Duration,
    /// Mark assists by allocating threads.
    pub assists: Duration,
    /// The background sweep (drop glue included).
    pub sweeping: Duration,
    /// Everything else: handshakes, termination rounds, verification, pacing.
    pub other: Duration,
}

impl GcCpu {
    /// The sum of every kind.
    pub fn total(&self) -> Duration {
        self.workers + self.idle + self.assists + self.sweeping + self.other
    }
}

/// A snapshot of everything the collector measures. Counters are exact; the snapshot as a whole
/// is not taken atomically.
///
/// ```
/// let heap = lowpause::Heap::new();
/// let m = heap.metrics();
/// assert_eq!(m.cycles, 0);
/// assert_eq!(m.gc_percent, Some(100));
/// assert_eq!(m.assist.count, 0);
/// ```
#[derive(Clone, Debug, Default, PartialEq)]
#[non_exhaustive]
pub struct Metrics {
    /// Time since the heap was created.
    pub uptime: Duration,
    /// Cycles completed.
    pub cycles: u64,
    /// Bytes allocated since the heap was created.
    pub allocated_bytes: usize,
    /// Objects allocated since the heap was created.
    pub allocated_objects: usize,
    /// Bytes freed by sweeping since the heap was created.
    pub freed_bytes: usize,
    /// Objects freed by sweeping since the heap was created.
    pub freed_objects: usize,
    /// Bytes found live by the last cycle's sweep.
    pub live_bytes: usize,
    /// Objects found live by the last cycle's sweep.
    pub live_objects: usize,
    /// The heap size the next cycle must finish by (`None`: gc_percent off and no limit).
    pub heap_goal: Option<usize>,
    /// gc_percent (`None`: off).
    pub gc_percent: Option<u32>,
    /// The soft memory limit (`None`: none).
    pub memory_limit: Option<usize>,
    /// The largest heap (marked plus allocated since) a mark ended at.
    pub peak_heap: usize,
    /// Bytes the heap maps: touched and not returned to the OS.
    pub mapped_bytes: usize,
    /// Bytes of free pages now released to the OS.
    pub released_bytes: usize,
    /// Bytes the scavenger has returned to the OS since the heap was created.
    pub scavenged_bytes: usize,
    /// Bytes in spans in use.
    pub heap_in_use: usize,
    /// GC CPU time by kind.
    pub gc_cpu: GcCpu,
    /// GC CPU over all CPUs' time since the heap was created.
    pub gc_cpu_fraction: f64,
    /// Mutator stalls: entering a scope during a handshake.
    pub handshake_wait: StallSummary,
    /// Mark assists.
    pub assist: StallSummary,
    /// Allocations that swept or waited for memory.
    pub allocation_wait: StallSummary,
    /// The longest single stall and its cause.
    pub longest_stall: Option<(StallCause, Duration)>,
    /// The longest a cycle waited on one thread that stayed inside a scope (a request the
    /// collector could not answer for it), and that thread's name: time in which no cycle could
    /// advance for anyone. Keep it short with [`Session::safepoint`](crate::Session::safepoint)
    /// or shorter scopes.
    pub scope_wait: Option<(String, Duration)>,
    /// Minimum mutator utilisation over 1 ms windows (1.0: no stall ever).
    pub mmu_1ms: f64,
    /// Minimum mutator utilisation over 10 ms windows.
    pub mmu_10ms: f64,
    /// Minimum mutator utilisation over 100 ms windows.
    pub mmu_100ms: f64,
}

fn us(d: Duration) -> String {
    format!("{:.1} µs", d.as_secs_f64() * 1e6)
}

impl fmt::Display for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = |d: Duration| format!("{:.1} ms", d.as_secs_f64() * 1e3);
        writeln!(
            f,
            "lowpause: {} cycles in {:.2} s; GC CPU {:.1} % ({} workers, {} idle, {} assists, {} sweeping, {} other)",
            self.cycles,
            self.uptime.as_secs_f64(),
            self.gc_cpu_fraction * 100.0,
            ms(self.gc_cpu.workers),
            ms(self.gc_cpu.idle),
            ms(self.gc_cpu.assists),
            ms(self.gc_cpu.sweeping),
            ms(self.gc_cpu.other),
        )?;
        writeln!(
            f,
            "  heap: live {} ({} objects), goal {}, peak {}, mapped {}, released {}; gc_percent {}, limit {}",
            bytes(self.live_bytes),
            self.live_objects,
            self.heap_goal.map_or("none".into(), bytes),
            bytes(self.peak_heap),
            bytes(self.mapped_bytes),
            bytes(self.released_bytes),
            self.gc_percent.map_or("off".into(), |p| p.to_string()),
            self.memory_limit.map_or("none".into(), bytes),
        )?;
        writeln!(
            f,
            "  allocated {} ({} objects), freed {} ({} objects)",
            bytes(self.allocated_bytes),
            self.allocated_objects,
            bytes(self.freed_bytes),
            self.freed_objects
        )?;
        for (cause, s) in [
            (StallCause::Handshake, &self.handshake_wait),
            (StallCause::Assist, &self.assist),
            (StallCause::Allocation, &self.allocation_wait),
        ] {
            writeln!(
                f,
                "  stalls, {cause:<15}: {:>8} total {:>10}, max {:>10}, p99 {:>10}, p99.9 {:>10}",
                s.count,
                us(s.total),
                us(s.max),
                us(s.p99),
                us(s.p999)
            )?;
        }
        match self.longest_stall {
            Some((cause, d)) => writeln!(f, "  longest stall: {} ({cause})", us(d))?,
            None => writeln!(f, "  longest stall: none")?,
        }
        if let Some((thread, d)) = &self.scope_wait {
            writeln!(f, "  longest wait of a cycle on a thread's scope: {} (thread {thread})", us(*d))?;
        }
        write!(
            f,
            "  MMU: {:.1} % at 1 ms, {:.1} % at 10 ms, {:.1} % at 100 ms",
            self.mmu_1ms * 100.0,
            self.mmu_10ms * 100.0,
            self.mmu_100ms * 100.0
        )
    }
}

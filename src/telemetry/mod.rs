//! Telemetry: what the collector tells its users.
//!
//! The collector updates the counters in [`Telemetry`] as it runs (relaxed atomics: each counter is
//! exact, a snapshot of several is not atomic as a whole); [`Stats`] is the snapshot a user reads,
//! and its `Display` is one line.

pub(crate) mod metrics;
pub(crate) mod profile;
pub(crate) mod stalls;
pub(crate) mod trace;

use crate::sync::{AtomicU64, AtomicUsize, Ordering};
use std::fmt;
use std::time::Duration;

/// Counters the collector keeps.
#[derive(Default)]
pub(crate) struct Telemetry {
    pub(crate) cycles: AtomicU64,
    pub(crate) live_bytes: AtomicUsize,
    pub(crate) live_objects: AtomicUsize,
    pub(crate) goal: AtomicUsize,
    pub(crate) drop_panics: AtomicU64,
    /// Cycles whose mark failed (a `Trace` impl panicked) and that freed nothing.
    pub(crate) failed_cycles: AtomicU64,
    /// Finalizers that panicked.
    pub(crate) finalizer_panics: AtomicU64,
    /// Longest time a cycle waited for every thread to reach a scope boundary, in nanoseconds.
    pub(crate) max_handshake_ns: AtomicU64,
    /// Wall time of all cycles, in nanoseconds.
    pub(crate) gc_wall_ns: AtomicU64,
    /// Longest mark phase (from the snapshot request to termination), in nanoseconds.
    pub(crate) max_mark_ns: AtomicU64,
    /// CPU time spent on collection, by kind, in nanoseconds: mark workers (dedicated and
    /// fractional, or a driving mutator's marking in synchronous mode), idle workers, mark
    /// assists, sweeping (the coordinator's sweep phase, or a mutator's in synchronous mode),
    /// everything else the coordinator (or a driving mutator) did.
    pub(crate) cpu_mark_ns: AtomicU64,
    pub(crate) cpu_idle_ns: AtomicU64,
    pub(crate) cpu_assist_ns: AtomicU64,
    pub(crate) cpu_sweep_ns: AtomicU64,
    pub(crate) cpu_other_ns: AtomicU64,
    /// Every mutator stall, by cause.
    pub(crate) stalls: stalls::Stalls,
    /// Most bytes the heap held (marked plus allocated since) at the end of a mark.
    pub(crate) peak_heap: AtomicUsize,
    /// Bytes the heap maps beyond its objects (span fragmentation), measured after each sweep.
    pub(crate) overhead: AtomicUsize,
    /// Bytes returned to the OS by the scavenger, in total.
    pub(crate) scavenged_bytes: AtomicUsize,
    /// Sampled allocations by type, since the heap was created.
    pub(crate) alloc_types: profile::TypeTable,
    /// The longest a cycle waited on one thread's scope (a request it could not answer for the
    /// thread, because the thread was inside a scope), and that thread's name.
    pub(crate) scope_wait: crate::sync::Mutex<Option<(String, Duration)>>,
}

impl Telemetry {
    /// Records that a request waited `wait` for `thread` to reach a safepoint of its scope.
    pub(crate) fn record_scope_wait(&self, thread: &str, wait: Duration) {
        keep_longest_wait(&mut self.scope_wait.lock(), thread, wait);
    }
}

/// Keeps in `slot` the longer of its wait and `wait` on `thread` (the heap's longest scope wait,
/// and a cycle's for its trace line).
pub(crate) fn keep_longest_wait(slot: &mut Option<(String, Duration)>, thread: &str, wait: Duration) {
    if slot.as_ref().is_none_or(|(_, d)| *d < wait) {
        *slot = Some((thread.to_owned(), wait));
    }
}

/// Writes one line to the process's standard error, with `write(2)` on file descriptor 2 rather
/// than through `std::io::stderr()`: the collector reports from its own threads and under its own
/// locks, and std's stderr lock may be held by a user thread that is waiting for the collector
/// (`collect` with `stderr().lock()` held). One system call per line for lines below the pipe
/// buffer size, so lines of different threads do not interleave.
pub(crate) fn report(line: &str) {
    let mut buf = Vec::with_capacity(line.len() + 1);
    buf.extend_from_slice(line.as_bytes());
    buf.push(b'\n');
    let mut rest = &buf[..];
    while !rest.is_empty() {
        // SAFETY: `rest` is a valid buffer of `rest.len()` bytes for the duration of the call.
        let n = unsafe { libc::write(2, rest.as_ptr().cast(), rest.len()) };
        if n > 0 {
            rest = &rest[n as usize..];
        } else if n < 0 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
            continue;
        } else {
            return; // stderr closed or broken: nothing to report to
        }
    }
}

/// CPU time the calling thread has used, in nanoseconds.
pub(crate) fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid out-pointer for the duration of the call.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

impl Telemetry {
    pub(crate) fn record_max(slot: &AtomicU64, d: Duration) {
        slot.fetch_max(d.as_nanos().min(u64::MAX as u128) as u64, Ordering::Relaxed);
    }

    /// GC CPU time so far by kind, in nanoseconds: assists, workers, idle workers, sweeping,
    /// other.
    pub(crate) fn cpu_ns(&self) -> [u64; 5] {
        [&self.cpu_assist_ns, &self.cpu_mark_ns, &self.cpu_idle_ns, &self.cpu_sweep_ns, &self.cpu_other_ns]
            .map(|c| c.load(Ordering::Relaxed))
    }
}

/// A snapshot of a heap's counters, from [`Heap::stats`](crate::Heap::stats).
///
/// ```
/// let heap = lowpause::Heap::new();
/// let s = heap.stats();
/// assert_eq!(s.cycles, 0);
/// println!("{s}");
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Collection cycles completed.
    pub cycles: u64,
    /// Bytes (object slots) marked live by the last cycle.
    pub live_bytes: usize,
    /// Objects marked live by the last cycle.
    pub live_objects: usize,
    /// Bytes allocated since the heap was created (object slots, headers included).
    pub allocated_bytes: usize,
    /// Objects allocated since the heap was created.
    pub allocated_objects: usize,
    /// Bytes freed by sweeping since the heap was created.
    pub freed_bytes: usize,
    /// Objects freed by sweeping since the heap was created.
    pub freed_objects: usize,
    /// The heap size at which the next cycle starts.
    pub heap_goal: usize,
    /// Bytes in spans in use (objects and their free slots).
    pub heap_in_use: usize,
    /// Bytes of the reservation committed from the OS.
    pub heap_committed: usize,
    /// Live `Root` handles.
    pub roots: usize,
    /// Attached mutator threads.
    pub threads: usize,
    /// Destructors that panicked (each was contained), and dead objects whose clearing `trace`
    /// panicked (their destructor was skipped).
    pub drop_panics: u64,
    /// Cycles whose mark failed because a `Trace` impl panicked (or held a reference the heap
    /// does not own): each freed nothing, and the heap went on (see [`Trace`](crate::Trace)).
    pub failed_cycles: u64,
    /// Finalizers that panicked (each was contained; the others still run).
    pub finalizer_panics: u64,
    /// Longest time a cycle waited for the threads to reach a scope boundary.
    pub max_handshake_wait: Duration,
    /// Longest time any mutator waited on the collector.
    pub max_mutator_stall: Duration,
    /// Wall time spent in cycles (from the first request to the end of the sweep), summed.
    pub gc_time: Duration,
    /// Longest mark phase, from the snapshot request to termination.
    pub max_mark_time: Duration,
    /// Background mark workers (0: cycles run synchronously in the mutators).
    pub workers: usize,
}

/// Formats a byte count with a binary unit.
pub(crate) fn bytes(n: usize) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

impl fmt::Display for Stats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "lowpause: {} cycles, live {} ({} objects), goal {}, in use {}, committed {}, \
             allocated {} ({} objects), freed {} objects, {} roots, {} threads, \
             max handshake {:?}, max stall {:?}, max mark {:?}, gc time {:?}, {} workers",
            self.cycles,
            bytes(self.live_bytes),
            self.live_objects,
            bytes(self.heap_goal),
            bytes(self.heap_in_use),
            bytes(self.heap_committed),
            bytes(self.allocated_bytes),
            self.allocated_objects,
            self.freed_objects,
            self.roots,
            self.threads,
            self.max_handshake_wait,
            self.max_mutator_stall,
            self.max_mark_time,
            self.gc_time,
            self.workers,
        )?;
        if self.drop_panics > 0 {
            write!(f, ", {} destructor panics", self.drop_panics)?;
        }
        if self.failed_cycles > 0 {
            write!(f, ", {} failed cycles", self.failed_cycles)?;
        }
        if self.finalizer_panics > 0 {
            write!(f, ", {} finalizer panics", self.finalizer_panics)?;
        }
        Ok(())
    }
}

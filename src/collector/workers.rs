//! The collector's background threads: one *coordinator* that drives the cycle (handshakes,
//! termination rounds, verification, the background sweep and its drop glue) and `n` *mark
//! workers* that drain grey work with work stealing.
//!
//! Threads hold the collector by `Arc`, but never the user-facing handles: when the last `Heap`,
//! `Mutator` or `Root` goes, the API layer stops and joins them first, so the heap is torn down
//! on the user's thread, never on a GC thread.

use super::cycle::{Drive, Phase};
use super::mark::Marker;
use super::Collector;
use crate::sync::{Arc, Ordering};
use crate::telemetry::thread_cpu_ns;
use std::thread::JoinHandle;
use std::time::Duration;

/// The running background threads of one heap.
pub(crate) struct Workers {
    collector: Arc<Collector>,
    threads: Vec<JoinHandle<()>>,
}

impl Workers {
    /// Starts the coordinator and `collector.config.workers` mark workers.
    pub(crate) fn start(collector: &Arc<Collector>) -> std::io::Result<Workers> {
        let mut threads = Vec::new();
        let c = collector.clone();
        threads.push(std::thread::Builder::new().name("lowpause-coordinator".into()).spawn(move || coordinator(&c))?);
        for i in 0..collector.config.workers {
            let c = collector.clone();
            let marker = Marker::new(&collector.memory, &collector.mark, true);
            threads.push(
                std::thread::Builder::new()
                    .name(format!("lowpause-mark-{i}"))
                    .spawn(move || mark_worker(&c, marker))?,
            );
        }
        Ok(Workers { collector: collector.clone(), threads })
    }

    /// Whether the calling thread is one of these.
    pub(crate) fn is_current(&self) -> bool {
        let me = std::thread::current().id();
        self.threads.iter().any(|t| t.thread().id() == me)
    }

    /// Stops and joins every thread.
    pub(crate) fn stop(mut self) {
        self.collector.shutdown.store(true, Ordering::SeqCst);
        self.collector.wake_coordinator();
        self.collector.mark.wake_workers();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// Runs `f` on a collector thread; a panic (a collector bug, or a hand-written `Trace` impl that
/// panicked) is recorded so that mutators report it instead of waiting forever for a dead thread.
fn guarded(c: &Collector, what: &str, f: impl FnOnce()) {
    if let Err(p) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        let msg = super::sweep::panic_message(&*p);
        c.record_failure(format!("lowpause: the collector's {what} thread panicked: {msg}"));
    }
}

fn coordinator(c: &Collector) {
    guarded(c, "coordinator", || coordinator_loop(c));
}

fn coordinator_loop(c: &Collector) {
    let mut idle_naps = 0u32;
    while !c.shutdown.load(Ordering::Acquire) {
        if c.advance(Drive::Background) {
            idle_naps = 0;
            continue;
        }
        // Waiting for a request or for threads to answer one: nap, shortly at first.
        let phase = c.phase.load(Ordering::Acquire);
        let nap = if phase == Phase::Idle as u32 {
            Duration::from_millis(50)
        } else {
            idle_naps = (idle_naps + 1).min(10);
            Duration::from_micros(20 << idle_naps.min(6))
        };
        c.coordinator_wait(nap);
    }
}

fn mark_worker(c: &Collector, mut marker: Marker) {
    guarded(c, "mark worker", || mark_loop(c, &mut marker));
}

fn mark_loop(c: &Collector, marker: &mut Marker) {
    while !c.shutdown.load(Ordering::Acquire) {
        if c.marking.load(Ordering::Acquire) {
            let c0 = thread_cpu_ns();
            marker.drain(usize::MAX, &c.marked_bytes, &c.grey_events);
            c.telemetry.cpu_mark_ns.fetch_add(thread_cpu_ns().saturating_sub(c0), Ordering::Relaxed);
            if c.mark.is_idle() {
                c.wake_coordinator();
            }
        }
        c.mark.park(Duration::from_millis(if c.marking.load(Ordering::Acquire) { 1 } else { 20 }));
    }
}

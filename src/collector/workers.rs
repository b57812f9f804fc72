//! The collector's background threads: one *coordinator* that drives the cycle (handshakes,
//! termination rounds, verification, pacing, the background sweep, the scavenger), the mark
//! workers, in three roles decided by the pacer's [`WorkerPlan`], and the drop threads:
//!
//! - *dedicated* workers mark full time while a cycle marks;
//! - one *fractional* worker marks in slices, keeping its on-duty CPU time since the mark began
//!   at its duty cycle (when 25 % of the CPUs is not a whole number of them); ahead of that, it
//!   switches itself to `SCHED_IDLE` and marks as an idle worker until it falls behind;
//! - dedicated and fractional workers run as `SCHED_BATCH`: woken, they do not preempt the
//!   thread running on their CPU (a mutator);
//! - *idle* workers run at the lowest OS priority (`SCHED_IDLE`), so they get a CPU only when no
//!   ordinary thread wants it, and mark in short slices. They touch only lock-free structures
//!   (the lock-free queues, mark bits, atomics; they park with `park`/`unpark`), so being
//!   preempted anywhere never leaves a lock held that a mutator waits for. Linux still gives an
//!   idle thread a small share of the CPU, so one preempted mid-slice finishes it eventually and
//!   cannot hold termination back forever;
//! - *drop threads* run the drop glue the sweep queues (sweep.rs), off the coordinator, so a
//!   destructor that blocks holds up only its own drop thread, never a cycle. Every heap has one,
//!   synchronous ones (`workers(0)`, no coordinator and no mark worker) too; the queue starts more
//!   when every one is stuck in a destructor.
//!
//! The coordinator and the mark workers are marked collector threads (context.rs): attaching,
//! opening a scope or collecting from one panics; a drop thread is marked as running drop glue
//! while it does.
//!
//! Threads hold the collector by `Arc`, but never the user-facing handles: when the last `Heap`,
//! `Mutator` or `Root` goes, the API layer stops and joins them first, so the heap is torn down
//! on the user's thread, never on a GC thread. The exceptions: a drop thread caught inside a
//! destructor at that moment is not waited for (the destructor may wait for the very thread
//! dropping the heap), and when the last handle is dropped on one of these threads none is
//! joined; the heap is torn down by the last of them to exit.

use super::context::{self, UserCode, UserCodeGuard};
use super::cycle::{Drive, Phase};
use super::mark::Marker;
use super::pacer::fractional_wait_ns;
use super::sweep::{Progress, Take};
use super::Collector;
use crate::sync::{Arc, Ordering};
use crate::telemetry::thread_cpu_ns;
use std::thread::JoinHandle;
use std::time::Duration;

/// Scan work between duty-cycle checks of the fractional worker.
const FRACTIONAL_SLICE: usize = 256 << 10;
/// Scan work an idle worker does before checking again whether marking still runs.
const IDLE_SLICE: usize = 64 << 10;

#[derive(Clone, Copy, PartialEq, Debug)]
enum Role {
    Dedicated,
    Fractional(f64),
    Idle,
}

/// The running background threads of one heap.
pub(crate) struct Workers {
    collector: Arc<Collector>,
    /// The coordinator, then the mark workers. (The drop threads are listed in the drop queue.)
    threads: Vec<JoinHandle<()>>,
}

impl Workers {
    /// Starts the drop thread and, unless the heap runs its cycles synchronously (`workers(0)`),
    /// the coordinator, `config.workers` mark workers (dedicated and fractional as the plan says;
    /// any beyond the plan run as idle workers) and `config.idle_workers` idle ones.
    pub(crate) fn start(collector: &Arc<Collector>) -> std::io::Result<Workers> {
        let threads = if collector.config.workers > 0 { start_collector_threads(collector)? } else { Vec::new() };
        spawn_drop_thread(collector, false)?;
        #[cfg(not(loom))]
        {
            // More drop threads when every one is stuck in a destructor (sweep.rs). The queue
            // holds the heap only weakly, through this closure.
            let heap = Arc::downgrade(collector);
            let _ = collector.drops.spawn.set(Box::new(move || {
                if let Some(c) = heap.upgrade() {
                    if let Err(e) = spawn_drop_thread(&c, true) {
                        c.drops.spawn_failed();
                        crate::telemetry::report(&format!("lowpause: could not start another drop thread: {e}"));
                    }
                }
            }));
        }
        Ok(Workers { collector: collector.clone(), threads })
    }

    /// Whether the calling thread is one of these, or a drop thread.
    pub(crate) fn is_current(&self) -> bool {
        let me = std::thread::current().id();
        self.threads.iter().any(|t| t.thread().id() == me) || self.collector.drops.is_runner(me)
    }

    /// Tells every thread to stop and wakes it.
    fn signal_stop(&self) {
        self.collector.shutdown.store(true, Ordering::SeqCst);
        for t in &self.threads {
            t.thread().unpark();
        }
    }

    /// Stops and joins every thread (a drop thread only if it is not inside a destructor).
    pub(crate) fn stop(mut self) {
        self.signal_stop();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        for d in self.collector.drops.stop_runners() {
            let _ = d.join();
        }
    }

    /// Stops every thread without waiting for any (the caller is one of them): each exits on its
    /// own, dropping its hold on the collector; the last one tears the heap down.
    pub(crate) fn abandon(self) {
        self.signal_stop();
        drop(self.collector.drops.stop_runners());
    }
}

/// Starts a drop thread and lists it with the drop queue (`spawned`: asked for by its stuck
/// check).
fn spawn_drop_thread(collector: &Arc<Collector>, spawned: bool) -> std::io::Result<()> {
    let c = collector.clone();
    let progress = Progress::default();
    let mine = progress.clone();
    let handle = std::thread::Builder::new().name("lowpause-drop".into()).spawn(move || drop_thread(&c, &mine))?;
    collector.drops.add_runner(handle, progress, spawned);
    Ok(())
}

/// The coordinator and the mark workers (concurrent mode).
fn start_collector_threads(collector: &Arc<Collector>) -> std::io::Result<Vec<JoinHandle<()>>> {
    let c = collector.clone();
    let coordinator = std::thread::Builder::new().name("lowpause-coordinator".into()).spawn(move || coordinator(&c))?;
    let _ = collector.coordinator.set(coordinator.thread().clone());
    let mut threads = vec![coordinator];
    let plan = collector.plan;
    let roles = (0..collector.config.workers)
        .map(|i| match i {
            i if i < plan.dedicated => Role::Dedicated,
            i if i == plan.dedicated && plan.fractional > 0.0 => Role::Fractional(plan.fractional),
            _ => Role::Idle,
        })
        .chain((0..collector.config.idle_workers).map(|_| Role::Idle));
    for (i, role) in roles.enumerate() {
        let c = collector.clone();
        let marker = Marker::new(&collector.memory, &collector.mark, true);
        let name = match role {
            Role::Idle => format!("lowpause-idle-{i}"),
            _ => format!("lowpause-mark-{i}"),
        };
        threads.push(std::thread::Builder::new().name(name).spawn(move || mark_worker(&c, marker, role))?);
    }
    collector.mark.set_workers(threads[1..].iter().map(|t| t.thread().clone()).collect());
    Ok(threads)
}

/// Runs `f` on a collector thread, marked as one; a panic (a collector bug: user code the
/// collector runs has its panics contained where it runs) is recorded so that mutators report it
/// instead of waiting forever for a dead thread.
fn guarded(c: &Collector, what: &str, f: impl FnOnce()) {
    let _collector_thread = UserCodeGuard::enter(UserCode::CollectorThread);
    if let Err(msg) = context::contain(f) {
        c.record_failure(format!("lowpause: the collector's {what} thread panicked: {msg}"));
    }
}

/// A drop thread: runs queued drop glue until the heap stops it (or, an extra one, until it has
/// had nothing to do for a while). Destructor panics are contained per object (sweep.rs), so
/// nothing else ends this loop.
fn drop_thread(c: &Collector, progress: &Progress) {
    guarded(c, "drop", || {
        let me = std::thread::current().id();
        let mut idle_since = std::time::Instant::now();
        loop {
            match c.drops.take(0..=u64::MAX, Some(me)) {
                Take::Batch(batch) => {
                    c.run_batch(&batch, Some(progress));
                    idle_since = std::time::Instant::now();
                }
                Take::Empty if c.shutdown.load(Ordering::Acquire) => return,
                Take::Empty if c.drops.retire(me, idle_since) => return,
                Take::Empty => std::thread::park_timeout(Duration::from_millis(100)),
                Take::Stopped => return,
            }
        }
    });
}

fn coordinator(c: &Collector) {
    guarded(c, "coordinator", || coordinator_loop(c));
}

fn coordinator_loop(c: &Collector) {
    let mut idle_naps = 0u32;
    while !c.shutdown.load(Ordering::Acquire) {
        c.pace_step();
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

/// Sets the calling thread's scheduling policy (`SCHED_IDLE`, `SCHED_BATCH`).
fn set_policy(policy: libc::c_int) {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: `param` is a valid sched_param for the duration of the call; pid 0 is this thread.
    let r = unsafe { libc::sched_setscheduler(0, policy, &param) };
    debug_assert_eq!(r, 0, "scheduling policy {policy} refused: {}", std::io::Error::last_os_error());
}

fn mark_worker(c: &Collector, mut marker: Marker, role: Role) {
    match role {
        // Idle workers run only on a CPU nothing else wants.
        Role::Idle => set_policy(libc::SCHED_IDLE),
        // Dedicated and fractional workers take their CPU share at normal priority, but as
        // SCHED_BATCH: waking up, they do not preempt the thread running where they woke. Under
        // SCHED_OTHER the fractional worker, woken by its timer on the mutator's CPU, preempted
        // it for a whole slice (about 1 ms: `perf sched timehist` on gc-latency-ptr showed the
        // stalls) while the other CPU ran only idle workers.
        _ => set_policy(libc::SCHED_BATCH),
    }
    guarded(c, "mark worker", || mark_loop(c, &mut marker, role));
}

fn mark_loop(c: &Collector, marker: &mut Marker, role: Role) {
    let t = &c.telemetry;
    // The fractional worker's on-duty CPU in the current mark: (epoch, CPU so far), and whether
    // it is marking off duty (at idle priority) now.
    let (mut epoch, mut duty_cpu, mut off_duty) = (0, 0, false);
    while !c.shutdown.load(Ordering::Acquire) {
        if !c.marking.load(Ordering::Acquire) {
            if off_duty {
                // The next mark starts on duty.
                off_duty = false;
                set_policy(libc::SCHED_BATCH);
            }
            c.mark.park(Duration::from_millis(20));
            continue;
        }
        let c0 = thread_cpu_ns();
        // Whether this slice is idle marking (counted as idle CPU), and whether it is the
        // fractional worker's on-duty marking (counted toward its duty cycle).
        let (mut idle, mut on_duty) = (role == Role::Idle, false);
        let out_of_work = match role {
            Role::Dedicated => marker.drain(usize::MAX).0,
            Role::Idle => marker.drain(IDLE_SLICE).0,
            Role::Fractional(duty) => {
                let e = c.mark_epoch.load(Ordering::Acquire);
                if e != epoch {
                    (epoch, duty_cpu) = (e, 0);
                }
                let now = c.created.elapsed().as_nanos() as u64;
                let elapsed = now.saturating_sub(c.mark_began_ns.load(Ordering::Relaxed));
                let ahead = fractional_wait_ns(duty, duty_cpu, elapsed) > 0;
                // Ahead of its duty cycle, it goes on marking as an idle worker would (Go's
                // fractional worker runs idle mark work when its P has nothing else): only on
                // a CPU nothing else wants. Each switch is one system call.
                if ahead != off_duty {
                    off_duty = ahead;
                    set_policy(if ahead { libc::SCHED_IDLE } else { libc::SCHED_BATCH });
                }
                (idle, on_duty) = (ahead, !ahead);
                marker.drain(if ahead { IDLE_SLICE } else { FRACTIONAL_SLICE }).0
            }
        };
        let used = thread_cpu_ns().saturating_sub(c0);
        if on_duty {
            duty_cpu += used;
        }
        let counter = if idle { &t.cpu_idle_ns } else { &t.cpu_mark_ns };
        counter.fetch_add(used, Ordering::Relaxed);
        if out_of_work {
            if c.mark.is_idle() {
                c.wake_coordinator();
            }
            c.mark.park(Duration::from_millis(1));
        }
    }
}

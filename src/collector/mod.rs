//! The collector: the cycle state machine, the handshake with mutator threads, the barrier,
//! marking, sweeping and pacing. It drives the memory layer and never names a type of the public
//! API (the API layer calls down into it, never the reverse).
//!
//! One cycle, as this version runs it:
//!
//! 1. *Finish the previous sweep* (mark bits are never reused under a running sweep).
//! 2. *Handshake*: every attached thread is taken at its next scope boundary (at once if it is
//!    outside every scope); its cache is handed back and its barrier buffer flushed. The time
//!    this waited is recorded.
//! 3. *Barrier on; mark*: shade the root table, then drain grey objects (and the shared grey
//!    queue) until none is left.
//! 4. *Barrier off; new sweep generation*; compute the heap goal; release the threads.
//! 5. *Sweep*: the cycle's thread sweeps every span, running drop glue outside every scope and
//!    lock; allocating threads sweep spans without drop glue lazily as they need them.
//!
//! The cycle runs on the thread that asked for it (`Mutator::collect`, or a scope boundary that
//! found the heap past its trigger). Invariants:
//! - at most one cycle at a time (`cycle_lock`);
//! - every object reachable from a root when marking starts is marked before sweeping starts;
//! - no drop glue runs while a thread is held or a collector lock is held.

pub(crate) mod barrier;
pub(crate) mod mark;
pub(crate) mod mutator;
pub(crate) mod pacer;
pub(crate) mod roots;
pub(crate) mod sweep;

pub use mark::Tracer;

use crate::memory::span::SpanKind;
use crate::memory::{Memory, SpanPtr};
use crate::sync::{AtomicBool, AtomicUsize, Mutex, Ordering};
use crate::telemetry::{Stats, Telemetry};
use mark::Marker;
use mutator::{Registry, ThreadRecord};
use pacer::Pacer;
use roots::RootTable;
use std::time::{Duration, Instant};

/// Settings of a collector, validated by the API's builder.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Config {
    pub(crate) gc_percent: u32,
    pub(crate) max_heap: usize,
}

/// Why a cycle runs.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Trigger {
    /// The heap passed its goal (skipped if another cycle got there first).
    Heap,
    /// `Mutator::collect`.
    Explicit,
}

/// A heap's collector and everything it owns.
pub(crate) struct Collector {
    pub(crate) memory: Memory,
    pub(crate) roots: RootTable,
    pub(crate) registry: Registry,
    barrier_on: AtomicBool,
    /// Grey objects from flushed barrier buffers and root operations.
    grey_queue: Mutex<Vec<usize>>,
    cycle_lock: Mutex<()>,
    pacer: Mutex<Pacer>,
    /// A cycle starts once `memory.counters.allocated_bytes` reaches this.
    next_gc_at: AtomicUsize,
    pub(crate) telemetry: Telemetry,
}

impl Collector {
    /// Another strong handle to this collector, which always lives in an `Arc`.
    pub(crate) fn arc(&self) -> crate::sync::Arc<Collector> {
        // SAFETY: every `Collector` is created inside an `Arc` (by `HeapBuilder::build`) and is
        // only reached through one that is alive for the call, so the count is at least 1.
        unsafe {
            let p = self as *const Collector;
            crate::sync::Arc::increment_strong_count(p);
            crate::sync::Arc::from_raw(p)
        }
    }

    pub(crate) fn new(config: Config) -> std::io::Result<Collector> {
        let pacer = Pacer { gc_percent: config.gc_percent };
        let goal = pacer.goal(0);
        let c = Collector {
            memory: Memory::new(config.max_heap)?,
            roots: RootTable::default(),
            registry: Registry::default(),
            barrier_on: AtomicBool::new(false),
            grey_queue: Mutex::new(Vec::new()),
            cycle_lock: Mutex::new(()),
            pacer: Mutex::new(pacer),
            next_gc_at: AtomicUsize::new(goal),
            telemetry: Telemetry::default(),
        };
        c.telemetry.goal.store(goal, Ordering::Relaxed);
        Ok(c)
    }

    /// Allocates `size` bytes (header included) for an object of kind `kind` from `rec`'s cache.
    /// Returns the object's start address; large objects return their span too, to be published
    /// with [`Memory::publish_large`] once written.
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
        // SAFETY: the thread is inside a scope, so it owns its cache.
        let cache = unsafe { rec.cache() };
        match class {
            Some(class) => match cache.alloc_small(&self.memory, class, kind) {
                Ok(a) => (a, None),
                Err(_) => self.exhausted(size),
            },
            None => match cache.alloc_large(&self.memory, size, kind) {
                Ok((a, sp)) => (a, Some(sp)),
                Err(_) => self.exhausted(size),
            },
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

    /// Registers the calling thread as a mutator.
    pub(crate) fn attach(&self) -> crate::sync::Arc<ThreadRecord> {
        self.registry.attach()
    }

    /// Unregisters a thread outside every scope, returning its cache and buffer to the heap.
    pub(crate) fn detach(&self, rec: &crate::sync::Arc<ThreadRecord>) {
        self.registry.detach(rec);
        // SAFETY: `detach` made us the record's owner, and the record is no longer listed.
        unsafe { self.give_back(rec) };
    }

    /// Scope entry for `rec`'s thread.
    pub(crate) fn enter(&self, rec: &ThreadRecord) {
        let waited = self.registry.enter(rec);
        if !waited.is_zero() {
            Telemetry::record_max(&self.telemetry.max_stall_ns, waited);
        }
    }

    /// Scope exit for `rec`'s thread: flushes its barrier buffer and counters, then leaves.
    ///
    /// # Safety
    /// `rec` is the calling thread's record and the thread is inside a scope.
    pub(crate) unsafe fn exit(&self, rec: &ThreadRecord) {
        // SAFETY: the thread is inside its scope, so it owns its record's buffer and cache.
        unsafe {
            self.flush_barrier_buffer(rec.barrier_buffer());
            rec.cache().flush_counters(&self.memory);
        }
        self.registry.exit(rec);
    }

    /// Hands a record's cache and barrier buffer back to the heap.
    ///
    /// # Safety
    /// The caller owns the record by its state word (holds the thread, or the thread detached).
    unsafe fn give_back(&self, rec: &ThreadRecord) {
        // SAFETY: forwarded from the caller.
        let cache = unsafe { rec.cache() };
        cache.release_all(&self.memory);
        cache.flush_counters(&self.memory);
        cache.alloc_black = false;
        // SAFETY: as above.
        self.flush_barrier_buffer(unsafe { rec.barrier_buffer() });
    }

    /// Runs one collection cycle on the calling thread, which must be outside every scope of
    /// this heap.
    pub(crate) fn collect(&self, trigger: Trigger) {
        let _cycle = self.cycle_lock.lock();
        if trigger == Trigger::Heap && !self.trigger_passed() {
            return; // another thread's cycle got there first
        }
        let start = Instant::now();
        self.finish_sweep();

        // Handshake: take every thread at a scope boundary.
        let hs = Instant::now();
        let held = self.registry.hold_all();
        Telemetry::record_max(&self.telemetry.max_handshake_ns, hs.elapsed());
        for rec in &held {
            // SAFETY: `hold_all` made us the owner of every listed record.
            unsafe { self.give_back(rec) };
        }

        // Mark. Entries left in the grey queue since the last cycle's final check (a root dropped
        // just before its barrier went off) are stale: their objects were marked then.
        self.grey_queue.lock().clear();
        self.barrier_on.store(true, Ordering::SeqCst);
        let mut marker = Marker::new(&self.memory);
        self.roots.for_each(|p| marker.shade(p));
        loop {
            marker.drain();
            let queued = std::mem::take(&mut *self.grey_queue.lock());
            if queued.is_empty() {
                break;
            }
            for p in queued {
                marker.shade(p);
            }
        }
        debug_assert!(marker.is_empty());
        self.barrier_on.store(false, Ordering::SeqCst);

        // Start the sweep and pace the next cycle.
        self.memory.begin_sweep();
        let live = marker.marked_bytes;
        let goal = self.pacer.lock().goal(live);
        let allocated = self.memory.counters.allocated_bytes.load(Ordering::Relaxed);
        self.next_gc_at.store(allocated.saturating_add(goal - live.min(goal)), Ordering::Relaxed);
        let t = &self.telemetry;
        t.live_bytes.store(live, Ordering::Relaxed);
        t.live_objects.store(marker.marked_objects, Ordering::Relaxed);
        t.goal.store(goal, Ordering::Relaxed);
        drop(held);
        self.registry.release_all();

        self.finish_sweep();
        t.cycles.fetch_add(1, Ordering::Relaxed);
        t.gc_wall_ns.fetch_add(start.elapsed().as_nanos() as u64, Ordering::Relaxed);
    }

    /// Sweeps every span still unswept in this cycle, and waits for sweeps other threads started.
    /// Runs drop glue: the caller is outside every scope and holds no collector lock but
    /// `cycle_lock` (which no mutator path takes).
    pub(crate) fn finish_sweep(&self) {
        while let Some(sp) = self.memory.pop_unswept() {
            // SAFETY: popping made us the span's holder; marking has finished for this sweep
            // generation, and unmarked objects are unreachable.
            if let Some(sp) = unsafe { self.sweep_span(sp) } {
                // SAFETY: we hold it, and give it up.
                unsafe { self.memory.release_span(sp) };
            }
        }
        while self.memory.unswept.load(Ordering::Acquire) != 0 {
            std::thread::yield_now(); // a lazy sweep in another thread's slow path: short
        }
    }

    /// Sweeps one span, running the drop glue of its dead objects if its kind has any.
    ///
    /// # Safety
    /// As for [`Memory::sweep_span`], and the calling thread is outside every scope.
    unsafe fn sweep_span(&self, sp: SpanPtr) -> Option<SpanPtr> {
        // SAFETY: the caller holds the span.
        let needs_finalize = unsafe { sp.get() }.kind.drop();
        let mut panics = 0;
        // SAFETY: forwarded from the caller; each dead object is unreachable and visited once.
        let r = unsafe {
            self.memory.sweep_span(sp, |obj| {
                if needs_finalize && !sweep::finalize_dead(obj) {
                    panics += 1;
                }
            })
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
        }
    }
}

impl Drop for Collector {
    /// Tears the heap down on the thread that dropped its last handle: every object still
    /// allocated is cleared and dropped (outside every scope, no lock held), then the memory is
    /// returned to the OS.
    fn drop(&mut self) {
        self.finish_sweep();
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

//! `Heap` and `HeapBuilder`: creating a heap and attaching threads to it.

use super::error::ConfigError;
use super::mutator::Mutator;
use crate::collector::workers::Workers;
use crate::collector::{Collector, Config};
use crate::memory::size_class::PAGE_SIZE;
use crate::sync::Arc;
use crate::telemetry::Stats;

pub(crate) const MIN_GC_PERCENT: i64 = 1;
pub(crate) const MAX_GC_PERCENT: i64 = 100_000;
pub(crate) const MIN_MAX_HEAP: usize = 16 << 20;
pub(crate) const MAX_MAX_HEAP: usize = 1 << 46;
const DEFAULT_MAX_HEAP: usize = 64 << 30;
/// Mean bytes between allocation samples unless the builder says otherwise.
pub(crate) const DEFAULT_PROFILE_RATE: usize = 512 << 10;
pub(crate) const MAX_WORKERS: usize = 256;
pub(crate) const MIN_MEMORY_LIMIT: usize = 2 * crate::collector::pacer::MIN_HEAP;

/// Checks a gc_percent setting.
fn gc_percent_setting(percent: Option<i64>) -> Result<Option<u32>, ConfigError> {
    match percent {
        None => Ok(None),
        Some(p) if (MIN_GC_PERCENT..=MAX_GC_PERCENT).contains(&p) => Ok(Some(p as u32)),
        Some(p) => Err(ConfigError::GcPercent(p)),
    }
}

/// Checks a memory limit setting.
fn memory_limit_setting(limit: Option<usize>) -> Result<Option<usize>, ConfigError> {
    match limit {
        Some(l) if l < MIN_MEMORY_LIMIT => Err(ConfigError::MemoryLimit(l)),
        l => Ok(l),
    }
}

/// A garbage-collected heap: a cheap, cloneable handle that any thread may hold.
///
/// Threads that allocate or read GC objects [`attach`](Heap::attach) to it and work inside
/// [scopes](Mutator::scope). The heap lives until its last `Heap`, [`Mutator`] and
/// [`Root`](crate::Root) are dropped; then it drops every object left and returns its memory to the
/// OS, on the thread that dropped the last handle. Exceptions, so that teardown never waits for
/// a destructor that may be waiting for the dropping thread: if that thread is inside a scope (of
/// another heap), teardown runs on a teardown thread (a small pool, shared by all heaps); if it is one of the heap's own threads (a
/// destructor or finalizer dropped the last handle), or the heap's drop thread is inside a
/// destructor at that moment, teardown runs on that thread once it is done.
///
/// ```
/// use lowpause::{Heap, Member, Trace};
///
/// #[derive(Trace)]
/// struct Node { value: u64, next: Member<Node> }
///
/// let heap = Heap::new();
/// let mut m = heap.attach();
/// let keep = m.scope(|s| {
///     let a = s.alloc(Node { value: 1, next: Member::null() });
///     let b = s.alloc(Node { value: 2, next: Member::null() });
///     a.next.set(s, Some(b));
///     b.next.set(s, Some(a)); // a cycle
///     s.root(b)
/// });
/// m.scope(|s| assert_eq!(keep.get(s).next.get(s).unwrap().value, 1));
/// m.collect();
/// println!("{}", heap.stats());
/// ```
#[derive(Clone)]
pub struct Heap {
    pub(crate) inner: Arc<Shared>,
}

/// What every user-facing handle (`Heap`, `Mutator`, `Root`) shares: the collector and its
/// background threads. When the last handle goes, the threads are stopped and joined here, so the
/// collector is torn down on the thread that dropped that handle.
pub(crate) struct Shared {
    /// Dropped by hand in `Drop` (on this thread, or on a teardown thread: see there).
    pub(crate) collector: std::mem::ManuallyDrop<Arc<Collector>>,
    workers: Option<Workers>,
    /// Started with the first finalizer.
    pub(crate) finalizer: super::finalizer::FinalizerThread,
}

impl Drop for Shared {
    fn drop(&mut self) {
        self.finalizer.stop(&self.collector);
        let abandoned = match self.workers.take() {
            // Code running on one of the heap's own threads (a destructor on the drop thread)
            // dropped the last handle. That thread cannot join itself: the threads are told to
            // stop and left to exit on their own; each holds the collector, and the last one to
            // exit tears the heap down.
            Some(w) if w.is_current() => {
                w.abandon();
                true
            }
            Some(w) => {
                w.stop();
                false
            }
            None => false,
        };
        // SAFETY: `collector` is not used again: this is the end of `drop`.
        let collector = unsafe { std::mem::ManuallyDrop::take(&mut self.collector) };
        if !abandoned && crate::collector::context::scopes_open() > 0 {
            // The last handle went inside a scope (of another heap). Teardown runs the remaining
            // destructors, and one that waits for a thread collecting that other heap would
            // wait for this thread's scope boundary: tear down on a thread of its own instead.
            teardown::defer(Box::new(move || drop(collector)));
        } else {
            drop(collector);
        }
    }
}

impl Heap {
    /// A heap with the default configuration (gc_percent 100, a 64 GiB reservation).
    ///
    /// # Panics
    /// If the OS refuses the address-space reservation; use [`Heap::builder`] to handle that.
    ///
    /// ```
    /// let heap = lowpause::Heap::new();
    /// assert_eq!(heap.stats().cycles, 0);
    /// ```
    pub fn new() -> Heap {
        match Heap::builder().build() {
            Ok(h) => h,
            Err(e) => panic!("lowpause: Heap::new failed: {e}"),
        }
    }

    /// A builder to configure a heap.
    ///
    /// ```
    /// let heap = lowpause::Heap::builder().gc_percent(50).max_heap(1 << 30).build().unwrap();
    /// # drop(heap);
    /// ```
    pub fn builder() -> HeapBuilder {
        HeapBuilder {
            gc_percent: Some(100),
            memory_limit: None,
            max_heap: DEFAULT_MAX_HEAP,
            workers: None,
            idle_workers: None,
            verify: None,
            trace: None,
            profile_rate: DEFAULT_PROFILE_RATE,
        }
    }

    /// Makes the calling thread a mutator of this heap. Dropping the [`Mutator`] detaches it.
    ///
    /// # Panics
    /// If this thread already has a `Mutator` for this heap (there is one per heap per thread:
    /// keep it and pass it around), or if called from the drop glue of a GC object, from a
    /// `Trace` impl, or on one of the collector's threads.
    ///
    /// ```
    /// let heap = lowpause::Heap::new();
    /// let h2 = heap.clone();
    /// std::thread::spawn(move || {
    ///     let mut m = h2.attach();
    ///     m.scope(|s| { s.alloc(7u64); });
    /// }).join().unwrap();
    /// ```
    pub fn attach(&self) -> Mutator {
        Mutator::new(self.inner.clone())
    }

    /// A snapshot of the heap's counters; its `Display` is one line.
    ///
    /// ```
    /// let heap = lowpause::Heap::new();
    /// let mut m = heap.attach();
    /// m.scope(|s| { s.alloc(1u64); });
    /// assert_eq!(heap.stats().allocated_objects, 1);
    /// ```
    pub fn stats(&self) -> Stats {
        self.inner.collector.stats()
    }

    /// Everything the collector measures: counters, GC CPU by kind, mutator stalls by cause with
    /// percentiles, and minimum mutator utilisation. Its `Display` is a readable report.
    ///
    /// ```
    /// let heap = lowpause::Heap::new();
    /// let mut m = heap.attach();
    /// m.scope(|s| { s.alloc([0u8; 100]); });
    /// m.collect();
    /// let metrics = heap.metrics();
    /// assert_eq!(metrics.cycles, 1);
    /// assert!(metrics.mmu_10ms <= 1.0);
    /// println!("{metrics}");
    /// ```
    pub fn metrics(&self) -> crate::Metrics {
        self.inner.collector.metrics()
    }

    /// Changes gc_percent at run time (`None`: off, so only the memory limit starts cycles); the
    /// new goal applies at once.
    ///
    /// # Errors
    /// [`ConfigError::GcPercent`] for a value outside 1 to 100,000; the setting is unchanged.
    ///
    /// ```
    /// let heap = lowpause::Heap::new();
    /// heap.set_gc_percent(Some(50)).unwrap();
    /// assert_eq!(heap.metrics().gc_percent, Some(50));
    /// assert!(heap.set_gc_percent(Some(-1)).is_err());
    /// ```
    pub fn set_gc_percent(&self, percent: Option<i64>) -> Result<(), ConfigError> {
        self.inner.collector.set_gc_percent(gc_percent_setting(percent)?);
        Ok(())
    }

    /// Changes the soft memory limit at run time (`None`: no limit). The heap's goal drops below
    /// what gc_percent allows whenever that is needed to keep everything the heap maps under the
    /// limit, and free pages above it go back to the OS now.
    ///
    /// # Errors
    /// [`ConfigError::MemoryLimit`] for a limit below 8 MiB; the setting is unchanged.
    ///
    /// ```
    /// let heap = lowpause::Heap::new();
    /// heap.set_memory_limit(Some(64 << 20)).unwrap();
    /// assert_eq!(heap.metrics().memory_limit, Some(64 << 20));
    /// ```
    pub fn set_memory_limit(&self, limit: Option<usize>) -> Result<(), ConfigError> {
        self.inner.collector.set_memory_limit(memory_limit_setting(limit)?);
        Ok(())
    }

    /// Whether stores are barriered now (a cycle is past its first handshake). For benchmarks
    /// and tests; not part of the stable API.
    #[doc(hidden)]
    pub fn __barrier_on(&self) -> bool {
        self.inner.collector.barrier_on()
    }

    /// Lets an event loop donate time to the collector until `deadline`: while a cycle marks,
    /// the calling thread marks; while it sweeps, it sweeps. Returns whether there was anything
    /// to do. Call it from any thread, attached or not, inside a scope or not (destructors
    /// included).
    ///
    /// # Panics
    /// If called from a `Trace` impl or on the coordinator or a mark worker (marking from inside
    /// marking).
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// let heap = lowpause::Heap::new();
    /// // Nothing to do on a fresh heap.
    /// assert!(!heap.idle_step(Instant::now() + Duration::from_millis(1)));
    /// ```
    pub fn idle_step(&self, deadline: std::time::Instant) -> bool {
        use crate::collector::context::{self, UserCode};
        if let Some(code @ (UserCode::Trace | UserCode::CollectorThread)) = context::user_code() {
            super::mutator::refused("Heap::idle_step", code);
        }
        self.inner.collector.idle_step(deadline)
    }
}

impl Default for Heap {
    fn default() -> Heap {
        Heap::new()
    }
}

impl std::fmt::Debug for Heap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Heap")
            .field("base", &format_args!("{:#x}", self.inner.collector.memory.base()))
            .finish_non_exhaustive()
    }
}

/// Configures a [`Heap`]; [`build`](HeapBuilder::build) validates the settings.
///
/// ```
/// use lowpause::Heap;
/// let heap = Heap::builder().gc_percent(200).max_heap(256 << 20).build()?;
/// # Ok::<(), lowpause::ConfigError>(())
/// ```
#[derive(Clone, Debug)]
#[must_use]
pub struct HeapBuilder {
    gc_percent: Option<i64>,
    memory_limit: Option<usize>,
    max_heap: usize,
    workers: Option<usize>,
    idle_workers: Option<usize>,
    verify: Option<bool>,
    trace: Option<bool>,
    profile_rate: usize,
}

impl HeapBuilder {
    /// How far the heap may grow past the live data of the last cycle before the next starts, in
    /// percent (Go's GOGC): 100 lets it double. Accepted: 1 to 100,000. Default 100.
    ///
    /// ```
    /// assert!(lowpause::Heap::builder().gc_percent(0).build().is_err());
    /// ```
    pub fn gc_percent(mut self, percent: i64) -> HeapBuilder {
        self.gc_percent = Some(percent);
        self
    }

    /// Turns gc_percent off (Go's `GOGC=off`): cycles then start only when the heap nears its
    /// [memory limit](HeapBuilder::memory_limit), or with [`Mutator::collect`].
    ///
    /// ```
    /// let heap = lowpause::Heap::builder().gc_percent_off().memory_limit(64 << 20).build().unwrap();
    /// assert_eq!(heap.metrics().gc_percent, None);
    /// ```
    pub fn gc_percent_off(mut self) -> HeapBuilder {
        self.gc_percent = None;
        self
    }

    /// A soft limit on the memory the heap maps (objects, fragmentation, free pages not yet
    /// returned to the OS), in bytes: when gc_percent would let the heap grow past it, cycles
    /// start earlier instead, and free pages go back to the OS. Soft: if the live data alone
    /// exceeds it, the heap grows anyway (and the collector, limited to about half the CPU,
    /// runs back to back). Accepted: at least 8 MiB. Default: none.
    ///
    /// ```
    /// let err = lowpause::Heap::builder().memory_limit(1 << 20).build().unwrap_err();
    /// assert!(err.to_string().contains("memory_limit 1048576"));
    /// ```
    pub fn memory_limit(mut self, bytes: usize) -> HeapBuilder {
        self.memory_limit = Some(bytes);
        self
    }

    /// Idle mark workers: threads at the lowest OS priority (`SCHED_IDLE`) that mark only when
    /// a CPU would otherwise sit idle, on top of the 25 % the normal workers take (the
    /// part-time worker also marks at that priority when it is ahead of its share). Only with
    /// `workers` above 0. Accepted: 0 to 256. Default: the CPUs left after one mutator and the
    /// workers (none on 2 CPUs: more threads than CPUs only time-slice the mutator; measured on
    /// gc-latency-ptr, two idle workers on 2 CPUs left the total unchanged).
    ///
    /// ```
    /// let heap = lowpause::Heap::builder().idle_workers(0).build().unwrap();
    /// # drop(heap);
    /// ```
    pub fn idle_workers(mut self, n: usize) -> HeapBuilder {
        self.idle_workers = Some(n);
        self
    }

    /// The size of the heap's address-space reservation, in bytes (rounded up to 8 KiB pages):
    /// the most it can ever hold. Only what is used is committed. Accepted: 16 MiB to 64 TiB.
    /// Default 64 GiB.
    ///
    /// ```
    /// let err = lowpause::Heap::builder().max_heap(1024).build().unwrap_err();
    /// assert!(err.to_string().contains("max_heap 1024"));
    /// ```
    pub fn max_heap(mut self, bytes: usize) -> HeapBuilder {
        self.max_heap = bytes;
        self
    }

    /// Background mark workers at normal priority. Together they take 25 % of the CPUs while a
    /// cycle marks (Go's share): as many full-time workers as that makes whole CPUs, plus one
    /// part-time worker for the rest; workers beyond that plan run as idle workers. Each heap
    /// also has one coordinator thread that runs the handshakes, the background sweep and the
    /// scavenger. `0` starts no marking or sweeping thread: every cycle then runs in the mutators, in
    /// allocation slow paths, at scope boundaries and in [`Mutator::collect`] (deterministic,
    /// for tests and for embedders that want no marking threads); destructors still run on the
    /// heap's drop thread, never inside a mutator's scope boundary. Accepted: 0 to 256. Default: a
    /// quarter of the CPUs, rounded up.
    ///
    /// ```
    /// let heap = lowpause::Heap::builder().workers(0).build().unwrap();
    /// assert_eq!(heap.stats().workers, 0);
    /// ```
    pub fn workers(mut self, n: usize) -> HeapBuilder {
        self.workers = Some(n);
        self
    }

    /// Verification mode (Go's `gccheckmark`): after every mark, before anything is swept, the
    /// whole heap is traced again from the roots, and a reachable object left unmarked makes
    /// the collector panic, naming the object's type. Slow; for tests. Default: on if the
    /// environment variable `LOWPAUSE_VERIFY` is `1`.
    ///
    /// ```
    /// let heap = lowpause::Heap::builder().verify(true).build().unwrap();
    /// let mut m = heap.attach();
    /// m.scope(|s| { s.alloc(1u64); });
    /// m.collect(); // marks, verifies, sweeps
    /// ```
    pub fn verify(mut self, on: bool) -> HeapBuilder {
        self.verify = Some(on);
        self
    }

    /// The trace line (Go's `gctrace`): one line per cycle on stderr, with its phases, CPU, heap
    /// sizes and goal (`src/telemetry/trace.rs` explains every field). Default: on if the
    /// environment variable `LOWPAUSE_TRACE` is `1`.
    ///
    /// ```
    /// let heap = lowpause::Heap::builder().trace(true).build().unwrap();
    /// heap.attach().collect(); // prints "gc 1 @0.001s 0%: ..." on stderr
    /// ```
    pub fn trace(mut self, on: bool) -> HeapBuilder {
        self.trace = Some(on);
        self
    }

    /// How often allocations are sampled for the heap profile
    /// ([`Mutator::heap_profile`](crate::Mutator::heap_profile)): on average once every `bytes`
    /// allocated, at random distances, as Go's `MemProfileRate`. `1` records every allocation
    /// (exact counts, for tests); `0` turns sampling off. Any value is accepted. Default 512 KiB,
    /// which costs the allocation fast path one subtraction and one branch.
    ///
    /// ```
    /// let heap = lowpause::Heap::builder().profile_rate(1).build().unwrap();
    /// let mut m = heap.attach();
    /// m.scope(|s| for i in 0..10u64 { s.alloc(i); });
    /// let p = m.heap_profile();
    /// assert_eq!(p.types.iter().find(|t| t.name == "u64").unwrap().allocated_objects, 10);
    /// ```
    pub fn profile_rate(mut self, bytes: usize) -> HeapBuilder {
        self.profile_rate = bytes;
        self
    }

    /// Validates the settings and creates the heap.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the first invalid setting, or the OS's refusal to reserve memory.
    pub fn build(self) -> Result<Heap, ConfigError> {
        let gc_percent = gc_percent_setting(self.gc_percent)?;
        let memory_limit = memory_limit_setting(self.memory_limit)?;
        if !(MIN_MAX_HEAP..=MAX_MAX_HEAP).contains(&self.max_heap) {
            return Err(ConfigError::MaxHeap(self.max_heap));
        }
        let workers = self
            .workers
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()).div_ceil(4).max(1));
        let idle_workers = if workers == 0 {
            0
        } else {
            self.idle_workers.unwrap_or_else(|| {
                std::thread::available_parallelism().map_or(1, |n| n.get()).saturating_sub(1 + workers)
            })
        };
        if workers > MAX_WORKERS || idle_workers > MAX_WORKERS {
            return Err(ConfigError::Workers(workers.max(idle_workers)));
        }
        let verify = self.verify.unwrap_or_else(|| std::env::var("LOWPAUSE_VERIFY").is_ok_and(|v| v == "1"));
        let max_heap = self.max_heap.div_ceil(PAGE_SIZE) * PAGE_SIZE;
        let trace = self.trace.unwrap_or_else(|| std::env::var("LOWPAUSE_TRACE").is_ok_and(|v| v == "1"));
        let profile_rate = self.profile_rate;
        let config = Config { gc_percent, memory_limit, max_heap, workers, idle_workers, verify, trace, profile_rate };
        let collector =
            Arc::new(Collector::new(config).map_err(|error| ConfigError::Reserve { bytes: max_heap, error })?);
        let workers = Some(Workers::start(&collector).map_err(ConfigError::Spawn)?);
        Ok(Heap {
            inner: Arc::new(Shared {
                collector: std::mem::ManuallyDrop::new(collector),
                workers,
                finalizer: Default::default(),
            }),
        })
    }
}

/// Heaps whose last handle went inside another heap's scope are torn down here, on threads of
/// their own, in order: one thread, and one more (up to [`MAX_THREADS`]) whenever every one has
/// been inside the same teardown for [`STUCK`] when another comes. A teardown runs destructors,
/// which may wait, so the pool follows the drop threads' policy (sweep.rs) with its numbers.
/// Threads exit when the queue is empty, so a loop of such teardowns does not pile threads up.
mod teardown {
    use crate::collector::sweep::{MAX_DROP_THREADS as MAX_THREADS, STUCK};
    use parking_lot::Mutex;
    use std::collections::VecDeque;
    use std::time::Instant;

    type Job = Box<dyn FnOnce() + Send>;

    struct State {
        jobs: VecDeque<Job>,
        /// Teardown threads running.
        threads: usize,
        /// The threads inside a teardown now (their number), with when each started it.
        busy: Vec<(u64, Instant)>,
        next_id: u64,
    }

    static STATE: Mutex<State> = Mutex::new(State { jobs: VecDeque::new(), threads: 0, busy: Vec::new(), next_id: 0 });

    /// Queues a teardown; starts a thread if none is free: every one is inside a teardown, and
    /// has been for [`STUCK`].
    pub(super) fn defer(job: Job) {
        let mut st = STATE.lock();
        st.jobs.push_back(job);
        let free = st.threads > st.busy.len() || st.busy.iter().any(|(_, since)| since.elapsed() < STUCK);
        if (st.threads > 0 && free) || st.threads >= MAX_THREADS {
            return;
        }
        st.threads += 1;
        let id = st.next_id;
        st.next_id += 1;
        drop(st);
        let spawned = std::thread::Builder::new().name("lowpause-teardown".into()).spawn(move || run(id));
        if let Err(e) = spawned {
            let mut st = STATE.lock();
            st.threads -= 1;
            let waiting = st.jobs.len();
            drop(st);
            crate::telemetry::report(&format!(
                "lowpause: could not start a thread to tear a heap down ({e}); {waiting} teardown(s) wait for the next one"
            ));
        }
    }

    /// A teardown thread: runs queued teardowns until none is left, then exits.
    fn run(id: u64) {
        loop {
            let job = {
                let mut st = STATE.lock();
                st.busy.retain(|&(b, _)| b != id);
                let Some(job) = st.jobs.pop_front() else {
                    st.threads -= 1;
                    return;
                };
                st.busy.push((id, Instant::now()));
                job
            };
            // A teardown's destructors have their panics contained already; this is a last guard.
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
        }
    }
}

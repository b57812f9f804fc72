//! Sweeping: turning unmarked objects back into free slots, and the deferred drop glue of dead
//! objects.
//!
//! Spans are swept once per cycle, after marking (the memory layer's `sweepgen` tracks which are
//! done). Spans whose objects have no drop glue are swept by their bitmaps alone, by whoever needs
//! one first — the collector, or an allocating thread in its slow path. Spans with drop glue are
//! swept by the collector's sweep (the coordinator, or in synchronous mode a mutator outside its
//! scope).
//!
//! **Drop glue never runs in the sweep.** A destructor is arbitrary user code: it may block, or
//! wait for another thread that enters a scope or collects. If the sweep ran it, the sweep could
//! not finish, so no next cycle could start, and that other thread's `collect` would wait
//! forever. So the sweep only *queues* a dead object with drop glue, in three steps on the
//! object's header `info` word (always atomic: see object.rs):
//!
//! ```text
//!   own info ──sweep: queue it──► PENDING_DROP ──drop runner: clear, drop──► DROPPED ──next sweep──► free
//!   (unmarked, needs drop)         (slot kept allocated)                      (slot kept until then)
//! ```
//!
//! A pending object's slot stays allocated through every sweep until its drop glue has run, and
//! the sweep after that frees it: so a slot is never reused under a running destructor, and a
//! destructor never runs twice. A dead object is unreachable, so nothing but the sweeper and the
//! one drop runner that took it ever touches it; the runner's release store of `DROPPED` orders
//! the destructor's writes before the sweep that frees the slot (acquire load), and that sweep
//! before the slot's reuse (the span changes hands under a lock). A dead object counts as freed
//! when it is queued; its slot is reclaimed one cycle later.
//!
//! The queue is drained outside every scope and every collector lock: by the heap's drop threads
//! (workers.rs; every heap has one, synchronous ones too), and by `collect`, which runs what the
//! cycles not over at its call queued before returning. Runners claim items one at a time, so a
//! blocked destructor holds up only itself and its thread, never the items behind it nor a
//! cycle; when every drop thread is stuck, another is started ([`DropQueue`]). (An earlier version ran
//! synchronous heaps' drop glue at scope boundaries: inside another heap's scope that could wait
//! for that heap's cycle, and skipping it there let a heap used only inside other scopes fill up.)
//!
//! Before a dead object's drop glue runs, the runner *clears* it: every GC reference its `Trace`
//! visits is set to null. So a destructor sees only null `Member`s and cannot move a pointer to
//! another dead (or soon dead) object out of the heap. The clearing `trace` and the
//! `drop_in_place` each run under `catch_unwind`, with the payload discarded safely (even one that
//! panics when dropped): a panicking destructor is reported on stderr and counted; a panicking
//! clear skips the drop glue (the object's own resources leak; nothing unsafe can follow).
//!
//! While drop glue runs, the thread's context says so; entering a scope, attaching or collecting
//! checks it and panics, so a destructor can never reach a heap.

use super::context::{self, UserCode, UserCodeGuard};
use super::mark::Tracer;
use crate::memory::Dead;
use crate::object::{Header, TypeInfo, DROPPED, HEADER_SIZE, PENDING_DROP};
use crate::sync::{Arc, AtomicPtr, AtomicU64, AtomicUsize, Condvar, Mutex, Ordering};
use std::collections::VecDeque;
use std::ops::RangeInclusive;

/// A dead object whose drop glue waits in the queue: its start, and its own type info and length
/// (its header's `info` word says `PENDING_DROP` meanwhile).
pub(crate) struct DropItem {
    obj: usize,
    info: &'static TypeInfo,
    len: usize,
}

// SAFETY: the item is the only handle to a dead object nobody else touches (module docs); the
// type info is `'static` and immutable.
unsafe impl Send for DropItem {}

impl DropItem {
    /// An item for a model: nothing at `obj` is ever dereferenced by the queue.
    #[cfg(all(test, loom))]
    pub(crate) fn fake(obj: usize) -> DropItem {
        DropItem { obj, info: &DROPPED, len: 0 }
    }

    /// The object's start (for models).
    #[cfg(all(test, loom))]
    pub(crate) fn addr(&self) -> usize {
        self.obj
    }
}

/// How running one object's drop glue went.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum DropOutcome {
    Dropped,
    /// The destructor panicked (contained).
    DropPanicked,
    /// The clearing `trace` panicked (contained); the drop glue was skipped.
    TracePanicked,
}

/// Where a dead object's `info` word says its drop glue is (the states of the module docs).
pub(crate) enum DropState {
    /// Not queued yet: the object's own type info.
    Fresh(&'static TypeInfo),
    /// Queued; its drop glue has not finished.
    Pending,
    /// Its drop glue ran.
    Dropped,
}

/// Reads a dead object's `info` word (acquire: after `Dropped`, the destructor's writes are
/// visible, so the slot may be reused).
pub(crate) fn drop_state(word: &AtomicPtr<TypeInfo>) -> DropState {
    let info = word.load(Ordering::Acquire);
    if std::ptr::eq(info, &PENDING_DROP) {
        DropState::Pending
    } else if std::ptr::eq(info, &DROPPED) {
        DropState::Dropped
    } else {
        // SAFETY: any other value is the object's own `&'static TypeInfo` (object.rs).
        DropState::Fresh(unsafe { &*info })
    }
}

/// The sweep queues a dead object: from now on its slot is kept. Relaxed: only the span's holder
/// touches a dead object's header until the item is handed over through the queue's lock.
pub(crate) fn set_pending(word: &AtomicPtr<TypeInfo>) {
    word.store(&PENDING_DROP as *const TypeInfo as *mut TypeInfo, Ordering::Relaxed);
}

/// The runner is done with a dead object: release, so the sweep that reads `Dropped` (and frees
/// the slot for reuse) sees everything the destructor wrote.
pub(crate) fn set_dropped(word: &AtomicPtr<TypeInfo>) {
    word.store(&DROPPED as *const TypeInfo as *mut TypeInfo, Ordering::Release);
}

/// The sweep's decision for one dead object, from its `info` word: keep a pending slot, free a
/// dropped one or one with nothing to drop, or mark it pending and return its info (the caller
/// queues it). `len` reads the object's element count.
pub(crate) fn sweep_word(word: &AtomicPtr<TypeInfo>, len: impl FnOnce() -> usize) -> (Dead, Option<&'static TypeInfo>) {
    match drop_state(word) {
        DropState::Pending => (Dead::Keep, None),
        DropState::Dropped => (Dead::FreeUncounted, None),
        DropState::Fresh(info) if !info.needs_drop || len() == 0 => (Dead::Free, None),
        DropState::Fresh(info) => {
            set_pending(word);
            (Dead::KeepCounted, Some(info))
        }
    }
}

/// What the sweep does with the dead object starting at `obj` in a span with drop glue: queue its
/// drop glue in `queued` (keeping the slot), keep a pending one, free one whose drop glue ran.
///
/// # Safety
/// `obj` is the start of an allocated, initialised object that is unmarked after a complete mark:
/// unreachable. The caller holds its span.
pub(crate) unsafe fn sweep_dead(obj: usize, queued: &mut Vec<DropItem>) -> Dead {
    // SAFETY: the object is allocated and its header written (caller's guarantee); `len` never
    // changes.
    let len = || unsafe { Header::of(obj + HEADER_SIZE) }.len;
    // SAFETY: as above.
    let (dead, info) = sweep_word(unsafe { Header::info_word(obj) }, len);
    if let Some(info) = info {
        queued.push(DropItem { obj, info, len: len() });
    }
    dead
}

/// Clears (nulls every reference) and drops `len` elements of type `info` at `payload`.
///
/// # Safety
/// `payload` holds `len` initialised elements of `info`'s type, of an object that no thread can
/// reach any more, and this is the only time its drop glue runs.
unsafe fn clear_and_drop(payload: usize, info: &'static TypeInfo, len: usize) -> DropOutcome {
    if info.needs_trace {
        let _user_code = UserCodeGuard::enter(UserCode::Trace);
        let mut t = Tracer::clearing();
        // SAFETY: the elements are initialised; clearing only stores nulls into references.
        if let Err(p) = unsafe { (info.trace)(payload as *const u8, len, &mut t) } {
            let msg = context::panic_message(&*p);
            context::discard_payload(p);
            crate::telemetry::report(&format!(
                "lowpause: the Trace::trace of a dead `{}` panicked while clearing it before its \
                 destructor ({msg}); the panic was contained, the destructor skipped and the object's \
                 own resources leaked",
                (info.name)()
            ));
            return DropOutcome::TracePanicked;
        }
    }
    let _user_code = UserCodeGuard::enter(UserCode::DropGlue);
    // SAFETY: initialised and dead, and this is the only time its drop glue runs (caller).
    match context::contain(|| unsafe { (info.drop)(payload as *mut u8, len) }) {
        Ok(()) => DropOutcome::Dropped,
        Err(msg) => {
            crate::telemetry::report(&format!(
                "lowpause: the destructor of a dead `{}` panicked ({msg}); the panic was contained \
                 and the object's memory reclaimed",
                (info.name)()
            ));
            DropOutcome::DropPanicked
        }
    }
}

/// Runs a queued object's drop glue, then tells the next sweep its slot may be freed.
///
/// # Safety
/// `item` came from [`sweep_dead`] and is run once.
unsafe fn run_item(item: &DropItem) -> DropOutcome {
    // SAFETY: the sweep queued an unreachable, initialised object; items are run once.
    let outcome = unsafe { clear_and_drop(item.obj + HEADER_SIZE, item.info, item.len) };
    // SAFETY: the slot stays allocated while the word says PENDING_DROP, so the header is there.
    set_dropped(unsafe { Header::info_word(item.obj) });
    outcome
}

/// Clears and drops the dead object starting at `obj` at heap teardown, if it has drop glue that
/// has not run yet (a pending or dropped object's header says so).
///
/// # Safety
/// `obj` is the start of an allocated, initialised object that no thread can reach any more, and
/// that nobody will read again; the drop queue is empty.
pub(crate) unsafe fn drop_at_teardown(obj: usize) -> DropOutcome {
    // SAFETY: allocated and initialised (caller's guarantee).
    let DropState::Fresh(info) = drop_state(unsafe { Header::info_word(obj) }) else {
        return DropOutcome::Dropped;
    };
    // SAFETY: as above.
    let len = unsafe { Header::of(obj + HEADER_SIZE) }.len;
    if !info.needs_drop || len == 0 {
        return DropOutcome::Dropped;
    }
    // SAFETY: forwarded from the caller; the inert infos have no drop glue, so this object's
    // drop glue has not run.
    unsafe { clear_and_drop(obj + HEADER_SIZE, info, len) }
}

/// The dead objects one sweep step queued, shared by whoever runs them: each item is claimed by
/// one runner (an atomic cursor), so a destructor that blocks holds up only itself, never the
/// items queued behind it: another runner goes on with those.
pub(crate) struct Batch {
    /// The cycle whose sweep queued it.
    cycle: u64,
    items: Vec<DropItem>,
    /// The next item to claim.
    next: AtomicUsize,
    /// How many items have finished running.
    done: AtomicUsize,
}

impl Batch {
    /// Claims the next item, if any is left.
    fn claim(&self) -> Option<&DropItem> {
        self.items.get(self.next.fetch_add(1, Ordering::Relaxed))
    }

    /// Whether every item is claimed.
    fn all_claimed(&self) -> bool {
        self.next.load(Ordering::Relaxed) >= self.items.len()
    }
}

/// What [`DropQueue::take`] found.
pub(crate) enum Take {
    /// A batch with items left to claim; run them with [`DropQueue::run`].
    Batch(Arc<Batch>),
    Empty,
    /// The drop thread must exit (only for drop threads).
    Stopped,
}

/// Drop threads a heap may have at once: one, and one more each time every one of them has been
/// inside one destructor for [`STUCK`] while drop glue waits.
pub(crate) const MAX_DROP_THREADS: usize = 8;
/// How long one destructor may run before its drop thread counts as stuck.
pub(crate) const STUCK: std::time::Duration = std::time::Duration::from_millis(10);
/// How long an extra drop thread stays without work before it exits.
pub(crate) const RETIRE_AFTER: std::time::Duration = std::time::Duration::from_secs(1);

/// A drop thread's progress word: +1 when it starts an item, +1 when it finishes one (odd: inside
/// a destructor). Written by the thread alone; read by the stuck check.
pub(crate) type Progress = Arc<AtomicU64>;

/// One of the heap's drop threads.
struct Runner {
    id: std::thread::ThreadId,
    thread: std::thread::Thread,
    handle: Option<std::thread::JoinHandle<()>>,
    progress: Progress,
    /// The progress word when last looked at, and when it was first seen at that value.
    seen: (u64, std::time::Instant),
}

impl Runner {
    /// Whether the thread has been inside the same destructor for [`STUCK`] (at least since the
    /// previous look at `now`).
    fn stuck(&mut self, now: std::time::Instant) -> bool {
        let p = self.progress.load(Ordering::Relaxed);
        if p != self.seen.0 {
            self.seen = (p, now);
        }
        p % 2 == 1 && now.duration_since(self.seen.1) >= STUCK
    }
}

#[derive(Default)]
struct QueueState {
    /// Batches not yet finished, by the cycle whose sweep queued them, oldest first.
    batches: VecDeque<Arc<Batch>>,
    /// The heap's drop threads.
    runners: Vec<Runner>,
    /// Drop threads asked for and not listed yet (they count against the cap).
    spawning: usize,
    /// The drop threads must take nothing more.
    stopped: bool,
}

/// The queue of dead objects whose drop glue has not run yet, and the heap's drop threads.
///
/// A destructor that blocks holds up its drop thread. The items behind it stay claimable, and
/// when drop glue waits while every drop thread has been inside one destructor for [`STUCK`] or
/// more, the queue asks for one more thread (up to [`MAX_DROP_THREADS`], counting those being
/// started); an extra thread exits once it has had nothing to do for [`RETIRE_AFTER`]. The check
/// runs whenever drop glue is queued and once per cycle ([`DropQueue::check_stuck`]), so work
/// left behind a blocked destructor is taken up even when no more drop glue comes.
#[derive(Default)]
pub(crate) struct DropQueue {
    state: Mutex<QueueState>,
    /// Signalled when a batch finishes.
    finished: Condvar,
    /// Starts one more drop thread (set where the threads are started; absent in loom models).
    /// It must call [`DropQueue::add_runner`] or [`DropQueue::spawn_failed`].
    pub(crate) spawn: std::sync::OnceLock<Box<dyn Fn() + Send + Sync>>,
}

impl DropQueue {
    /// Queues what the sweep of `cycle` found, wakes the drop threads, and starts another if
    /// every one of them is stuck in a destructor.
    pub(crate) fn push(&self, cycle: u64, items: &mut Vec<DropItem>) {
        if items.is_empty() {
            return;
        }
        let batch = Batch { cycle, items: std::mem::take(items), next: AtomicUsize::new(0), done: AtomicUsize::new(0) };
        let mut st = self.state.lock();
        st.batches.push_back(Arc::new(batch));
        for r in &st.runners {
            r.thread.unpark();
        }
        self.spawn_if_stuck(st);
    }

    /// Starts one more drop thread if drop glue waits and every drop thread is stuck inside a
    /// destructor. Called once per cycle, so work behind a blocked destructor does not wait for
    /// more drop glue to come.
    pub(crate) fn check_stuck(&self) {
        let st = self.state.lock();
        if st.batches.iter().any(|b| !b.all_claimed()) {
            self.spawn_if_stuck(st);
        }
    }

    fn spawn_if_stuck(&self, mut st: crate::sync::MutexGuard<'_, QueueState>) {
        let now = std::time::Instant::now();
        let mut all_stuck = true;
        for r in st.runners.iter_mut() {
            // Every runner is looked at, so each one's first sighting is recorded.
            all_stuck &= r.stuck(now);
        }
        let room = st.runners.len() + st.spawning < MAX_DROP_THREADS;
        if st.stopped || !room || !all_stuck || self.spawn.get().is_none() {
            return;
        }
        st.spawning += 1;
        drop(st);
        if let Some(spawn) = self.spawn.get() {
            spawn();
        }
    }

    /// A new drop thread for [`DropQueue::take`] as `Some(id)`; returns the progress word it
    /// must pass to [`DropQueue::run`]. `spawned` says whether it was asked for by the stuck
    /// check (the first one is not).
    pub(crate) fn add_runner(&self, handle: std::thread::JoinHandle<()>, progress: Progress, spawned: bool) {
        let (id, thread) = (handle.thread().id(), handle.thread().clone());
        let mut st = self.state.lock();
        if spawned {
            st.spawning -= 1;
        }
        let seen = (progress.load(Ordering::Relaxed), std::time::Instant::now());
        st.runners.push(Runner { id, thread, handle: Some(handle), progress, seen });
    }

    /// A drop thread asked for by the stuck check could not be started.
    pub(crate) fn spawn_failed(&self) {
        self.state.lock().spawning -= 1;
    }

    /// How many queued objects' destructors have not finished.
    pub(crate) fn waiting(&self) -> usize {
        let st = self.state.lock();
        st.batches.iter().map(|b| b.items.len() - b.done.load(Ordering::Acquire).min(b.items.len())).sum()
    }

    /// Whether `id` is one of the heap's drop threads.
    pub(crate) fn is_runner(&self, id: std::thread::ThreadId) -> bool {
        self.state.lock().runners.iter().any(|r| r.id == id)
    }

    /// The oldest batch queued by a cycle in `cycles` that has items left to claim, for a drop
    /// thread (`by` its id) or another thread outside every scope (`None`).
    pub(crate) fn take(&self, cycles: RangeInclusive<u64>, by: Option<std::thread::ThreadId>) -> Take {
        let st = self.state.lock();
        if by.is_some() && st.stopped {
            return Take::Stopped;
        }
        match st.batches.iter().find(|b| cycles.contains(&b.cycle) && !b.all_claimed()) {
            Some(b) => Take::Batch(b.clone()),
            None => Take::Empty,
        }
    }

    /// Claims and runs the items of `batch` with `run` until none is left to claim;
    /// the runner that finishes the batch's last item unlists it and wakes the waiters.
    /// `progress` is a drop thread's progress word.
    pub(crate) fn run(&self, batch: &Batch, progress: Option<&AtomicU64>, mut run: impl FnMut(&DropItem)) {
        let mut ran = 0;
        while let Some(item) = batch.claim() {
            // Only this thread writes its progress word: plain stores suffice.
            if let Some(p) = progress {
                p.store(p.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
            }
            run(item);
            if let Some(p) = progress {
                p.store(p.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
            }
            ran += 1;
        }
        // Counted once per run: whoever brings the count to the batch's length ran the last item.
        if ran > 0 && batch.done.fetch_add(ran, Ordering::AcqRel) + ran == batch.items.len() {
            let mut st = self.state.lock();
            st.batches.retain(|b| !std::ptr::eq(&**b, batch));
            self.finished.notify_all();
        }
    }

    /// An extra drop thread (not the last one) that found nothing to do for [`RETIRE_AFTER`]
    /// unlists itself; true if the caller must exit.
    pub(crate) fn retire(&self, id: std::thread::ThreadId, idle_since: std::time::Instant) -> bool {
        let mut st = self.state.lock();
        if st.runners.len() <= 1 || idle_since.elapsed() < RETIRE_AFTER {
            return false;
        }
        st.runners.retain(|r| r.id != id);
        true
    }

    /// Waits until no item queued by a cycle in `cycles` is being run by another thread (the
    /// caller ran every unclaimed one). Items of other cycles being run are not waited for: their
    /// destructors may be waiting for this thread.
    pub(crate) fn wait_running(&self, cycles: RangeInclusive<u64>) {
        let mut st = self.state.lock();
        while st.batches.iter().any(|b| cycles.contains(&b.cycle)) {
            self.finished.wait(&mut st);
        }
    }

    /// Tells the drop threads to take nothing more and wakes them; returns the handles of those
    /// that are not inside a destructor now, to join (one that is may take any time, and may be
    /// waiting for the caller: it is left to exit on its own).
    pub(crate) fn stop_runners(&self) -> Vec<std::thread::JoinHandle<()>> {
        let mut st = self.state.lock();
        st.stopped = true;
        st.runners
            .iter_mut()
            .filter_map(|r| {
                r.thread.unpark();
                let busy = r.progress.load(Ordering::Relaxed) % 2 == 1;
                let handle = r.handle.take();
                if busy {
                    None
                } else {
                    handle
                }
            })
            .collect()
    }
}

impl super::Collector {
    /// Runs, on the calling thread, the drop glue of every unclaimed object queued by the sweeps
    /// of `cycles`. The caller is outside every scope and holds no collector lock.
    pub(crate) fn run_drops(&self, cycles: RangeInclusive<u64>) {
        while let Take::Batch(batch) = self.drops.take(cycles.clone(), None) {
            self.run_batch(&batch, None);
        }
    }

    /// Runs what is left to claim of one batch of drop glue, counting the panics (each before
    /// its item counts as done, so a `collect` that waited for the item sees it counted).
    pub(crate) fn run_batch(&self, batch: &Batch, progress: Option<&AtomicU64>) {
        self.drops.run(batch, progress, |item| {
            // SAFETY: claimed from the batch, so run exactly once.
            if unsafe { run_item(item) } != DropOutcome::Dropped {
                self.telemetry.drop_panics.fetch_add(1, Ordering::Relaxed);
            }
        });
    }
}

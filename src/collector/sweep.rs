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
//! The queue is drained outside every scope and every collector lock: by the heap's drop thread
//! (workers.rs; every heap has one, synchronous ones too), and by `collect`, which runs what its
//! own cycle queued before returning. A blocked destructor therefore holds up only the
//! destructors queued behind it on the same thread, never a cycle. (An earlier version ran
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
use crate::sync::{AtomicPtr, Condvar, Mutex, Ordering};
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

/// What [`DropQueue::take`] found.
pub(crate) enum Take {
    /// A batch to run, queued by the sweep of this cycle; the taker must call
    /// [`DropQueue::finish`] after running it.
    Batch(u64, Vec<DropItem>),
    Empty,
    /// The drop thread must exit (only for drop threads).
    Stopped,
}

/// Who takes a batch: one of the heap's drop threads, or another thread (`collect`).
pub(crate) type Taker = Option<std::thread::ThreadId>;

/// Drop threads a heap may have at once: one, and one more each time every one of them has been
/// inside a destructor for [`STUCK`] when more drop glue is queued.
pub(crate) const MAX_DROP_THREADS: usize = 8;
/// How long a batch may run before its drop thread counts as stuck.
pub(crate) const STUCK: std::time::Duration = std::time::Duration::from_millis(10);
/// How long an extra drop thread stays without work before it exits.
pub(crate) const RETIRE_AFTER: std::time::Duration = std::time::Duration::from_secs(1);

/// A batch being run.
struct Running {
    cycle: u64,
    by: Taker,
    since: std::time::Instant,
}

/// One of the heap's drop threads.
struct Runner {
    id: std::thread::ThreadId,
    thread: std::thread::Thread,
    handle: Option<std::thread::JoinHandle<()>>,
}

#[derive(Default)]
struct QueueState {
    /// Batches not yet taken, by the cycle whose sweep queued them, oldest first.
    batches: VecDeque<(u64, Vec<DropItem>)>,
    /// The batches being run now.
    running: Vec<Running>,
    /// The heap's drop threads.
    runners: Vec<Runner>,
    /// The drop threads must take nothing more.
    stopped: bool,
}

/// The queue of dead objects whose drop glue has not run yet, and the heap's drop threads.
///
/// A destructor that blocks holds up its drop thread, and with it every batch queued behind it:
/// their slots stay allocated, and a heap whose garbage has drop glue would fill up. So when
/// drop glue is queued while every drop thread has been inside one batch for [`STUCK`] or more,
/// the queue asks for one more thread (up to [`MAX_DROP_THREADS`]); an extra thread exits once it
/// has had nothing to do for [`RETIRE_AFTER`].
#[derive(Default)]
pub(crate) struct DropQueue {
    state: Mutex<QueueState>,
    /// Signalled when a batch finishes.
    finished: Condvar,
    /// Starts one more drop thread (set where the threads are started; absent in loom models).
    pub(crate) spawn: std::sync::OnceLock<Box<dyn Fn() + Send + Sync>>,
}

impl DropQueue {
    /// Queues what the sweep of `cycle` found, wakes the drop threads, and starts another if
    /// every one of them is stuck in a destructor.
    pub(crate) fn push(&self, cycle: u64, items: &mut Vec<DropItem>) {
        if items.is_empty() {
            return;
        }
        let wants_another = {
            let mut st = self.state.lock();
            st.batches.push_back((cycle, std::mem::take(items)));
            for r in &st.runners {
                r.thread.unpark();
            }
            let stuck = |r: &Runner| st.running.iter().any(|b| b.by == Some(r.id) && b.since.elapsed() >= STUCK);
            !st.stopped && st.runners.len() < MAX_DROP_THREADS && st.runners.iter().all(stuck)
        };
        if wants_another {
            if let Some(spawn) = self.spawn.get() {
                spawn();
            }
        }
    }

    /// Lists a new drop thread.
    pub(crate) fn add_runner(&self, handle: std::thread::JoinHandle<()>) {
        let (id, thread) = (handle.thread().id(), handle.thread().clone());
        self.state.lock().runners.push(Runner { id, thread, handle: Some(handle) });
    }

    /// Whether `id` is one of the heap's drop threads.
    pub(crate) fn is_runner(&self, id: std::thread::ThreadId) -> bool {
        self.state.lock().runners.iter().any(|r| r.id == id)
    }

    /// Takes the oldest batch queued by a cycle in `cycles`, for a drop thread or another
    /// thread outside every scope (`by`).
    pub(crate) fn take(&self, cycles: RangeInclusive<u64>, by: Taker) -> Take {
        let mut st = self.state.lock();
        if by.is_some() && st.stopped {
            return Take::Stopped;
        }
        let Some(i) = st.batches.iter().position(|(c, _)| cycles.contains(c)) else { return Take::Empty };
        let (cycle, items) = st.batches.remove(i).expect("a batch at a found index");
        st.running.push(Running { cycle, by, since: std::time::Instant::now() });
        Take::Batch(cycle, items)
    }

    /// A batch of `cycle` taken with [`DropQueue::take`] by `by` has run.
    pub(crate) fn finish(&self, cycle: u64, by: Taker) {
        let mut st = self.state.lock();
        if let Some(i) = st.running.iter().position(|b| b.cycle == cycle && b.by == by) {
            st.running.swap_remove(i);
        }
        self.finished.notify_all();
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

    /// Waits until no batch queued by `cycle` is being run by another thread. (Batches of
    /// earlier cycles are not waited for: their destructors may be waiting for this thread.)
    pub(crate) fn wait_running(&self, cycle: u64) {
        let mut st = self.state.lock();
        while st.running.iter().any(|b| b.cycle == cycle) {
            self.finished.wait(&mut st);
        }
    }

    /// Tells the drop threads to take nothing more and wakes them; returns the handles of those
    /// that are not inside a destructor now, to join (one that is may take any time, and may be
    /// waiting for the caller: it is left to exit on its own).
    pub(crate) fn stop_runners(&self) -> Vec<std::thread::JoinHandle<()>> {
        let mut st = self.state.lock();
        st.stopped = true;
        let QueueState { runners, running, .. } = &mut *st;
        runners
            .iter_mut()
            .filter_map(|r| {
                r.thread.unpark();
                let busy = running.iter().any(|b| b.by == Some(r.id));
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
    /// Runs, on the calling thread, the drop glue of every object queued by the sweeps of
    /// `cycles`. The caller is outside every scope and holds no collector lock.
    pub(crate) fn run_drops(&self, cycles: RangeInclusive<u64>) {
        while let Take::Batch(cycle, items) = self.drops.take(cycles.clone(), None) {
            self.run_batch(&items);
            self.drops.finish(cycle, None);
        }
    }

    /// Runs one batch of drop glue, counting the panics.
    pub(crate) fn run_batch(&self, items: &[DropItem]) {
        let mut panics = 0;
        for item in items {
            // SAFETY: taken from the queue, so run exactly once.
            if unsafe { run_item(item) } != DropOutcome::Dropped {
                panics += 1;
            }
        }
        if panics > 0 {
            self.telemetry.drop_panics.fetch_add(panics, Ordering::Relaxed);
        }
    }
}

//! The thread registry and the handshake between mutator threads and the collector.
//!
//! Every attached thread has a [`ThreadRecord`], owned by the registry (not by the thread): its
//! allocation cache, its barrier buffer, and a state word.
//!
//! ```text
//!            enter (CAS)               collector hold (CAS)
//!   INSIDE <------------- OUTSIDE -----------------------> HELD
//!          -------------->        <-----------------------
//!            exit (store)              collector release
//! ```
//!
//! A thread inside a scope may hold `Gc` pointers and uses its cache and barrier buffer without any
//! lock. Outside every scope it holds no GC pointer, so the collector may act for it: a CAS from
//! OUTSIDE to HELD answers the handshake on the thread's behalf and gives the collector its cache.
//! A thread that finds itself HELD when it wants to enter waits until the collector releases it.
//! A thread that is detached, or whose `Mutator` was leaked, is simply always OUTSIDE.
//!
//! In this version a cycle holds every thread for its mark phase (each at its own scope
//! boundary: nothing is interrupted inside a scope). The barrier and black allocation are already
//! wired to the state the concurrent collector will use; see docs/design.md.

use crate::memory::cache::Cache;
use crate::sync::{Arc, AtomicBool, AtomicU32, Condvar, Mutex, Ordering};
use std::cell::UnsafeCell;

pub(crate) const OUTSIDE: u32 = 0;
pub(crate) const INSIDE: u32 = 1;
pub(crate) const HELD: u32 = 2;

/// Size of a thread's barrier buffer before it is flushed to the shared grey queue.
pub(crate) const BARRIER_BUFFER: usize = 256;

/// The per-thread state of one attached thread.
pub(crate) struct ThreadRecord {
    pub(crate) state: AtomicU32,
    cache: UnsafeCell<Cache>,
    barrier: UnsafeCell<Vec<usize>>,
    /// The thread's name, for messages.
    pub(crate) name: String,
}

// SAFETY: `cache` and `barrier` are used only by whoever the state word makes their owner: the
// thread itself while INSIDE, the collector while HELD (see the module docs).
unsafe impl Sync for ThreadRecord {}
// SAFETY: as above.
unsafe impl Send for ThreadRecord {}

impl ThreadRecord {
    fn new(state: u32) -> ThreadRecord {
        let t = std::thread::current();
        ThreadRecord {
            state: AtomicU32::new(state),
            cache: UnsafeCell::new(Cache::default()),
            barrier: UnsafeCell::new(Vec::with_capacity(BARRIER_BUFFER)),
            name: t.name().map(str::to_owned).unwrap_or_else(|| format!("{:?}", t.id())),
        }
    }

    /// The thread's allocation cache.
    ///
    /// # Safety
    /// The caller owns the record by its state word: it is the thread itself inside a scope, or
    /// the collector holding the thread; and no other reference from this method is alive.
    #[inline]
    #[allow(clippy::mut_from_ref)]
    pub(crate) unsafe fn cache(&self) -> &mut Cache {
        // SAFETY: exclusive by the state-word rule the caller guarantees.
        unsafe { &mut *self.cache.get() }
    }

    /// The thread's barrier buffer.
    ///
    /// # Safety
    /// As for [`ThreadRecord::cache`].
    #[inline]
    #[allow(clippy::mut_from_ref)]
    pub(crate) unsafe fn barrier_buffer(&self) -> &mut Vec<usize> {
        // SAFETY: exclusive by the state-word rule the caller guarantees.
        unsafe { &mut *self.barrier.get() }
    }
}

#[derive(Default)]
struct Threads {
    records: Vec<Arc<ThreadRecord>>,
    /// A collector is holding (or about to hold) every thread: new threads start HELD.
    holding: bool,
}

/// The set of attached threads, and the waits of the handshake.
#[derive(Default)]
pub(crate) struct Registry {
    threads: Mutex<Threads>,
    changed: Condvar,
    /// A collector is waiting for threads to leave their scopes: exits must notify.
    collector_waiting: AtomicBool,
}

impl Registry {
    /// Registers the calling thread. Under the same lock the collector lists threads with, so a
    /// thread attaching during a cycle joins it held, like every other thread.
    pub(crate) fn attach(&self) -> Arc<ThreadRecord> {
        let mut t = self.threads.lock();
        let rec = Arc::new(ThreadRecord::new(if t.holding { HELD } else { OUTSIDE }));
        t.records.push(rec.clone());
        rec
    }

    /// Unregisters a thread that is outside every scope; returns once the collector no longer
    /// holds it, with the record's cache owned by the caller (state INSIDE, record unlisted).
    pub(crate) fn detach(&self, rec: &Arc<ThreadRecord>) {
        self.enter(rec);
        let mut t = self.threads.lock();
        t.records.retain(|r| !Arc::ptr_eq(r, rec));
    }

    /// Number of attached threads.
    pub(crate) fn len(&self) -> usize {
        self.threads.lock().records.len()
    }

    /// Scope entry: OUTSIDE → INSIDE, waiting while the collector holds the thread. Returns how
    /// long the thread waited.
    pub(crate) fn enter(&self, rec: &ThreadRecord) -> std::time::Duration {
        if rec.state.compare_exchange(OUTSIDE, INSIDE, Ordering::SeqCst, Ordering::SeqCst).is_ok() {
            return std::time::Duration::ZERO;
        }
        let start = std::time::Instant::now();
        let mut t = self.threads.lock();
        loop {
            match rec.state.compare_exchange(OUTSIDE, INSIDE, Ordering::SeqCst, Ordering::SeqCst) {
                Ok(_) => return start.elapsed(),
                Err(HELD) => self.changed.wait(&mut t),
                Err(s) => unreachable!("scope entered twice on one thread record (state {s})"),
            }
        }
    }

    /// Scope exit: INSIDE → OUTSIDE, waking a collector waiting for this thread.
    pub(crate) fn exit(&self, rec: &ThreadRecord) {
        let prev = rec.state.swap(OUTSIDE, Ordering::SeqCst);
        debug_assert_eq!(prev, INSIDE);
        if self.collector_waiting.load(Ordering::SeqCst) {
            let _t = self.threads.lock();
            self.changed.notify_all();
        }
    }

    /// The handshake: takes every attached thread at its next scope boundary (at once if it is
    /// outside). Threads attaching meanwhile start held. Returns the held records.
    pub(crate) fn hold_all(&self) -> Vec<Arc<ThreadRecord>> {
        let mut t = self.threads.lock();
        t.holding = true;
        self.collector_waiting.store(true, Ordering::SeqCst);
        // Rescan from the start after every wait: a thread may have detached meanwhile.
        loop {
            let mut all_held = true;
            for rec in &t.records {
                match rec.state.compare_exchange(OUTSIDE, HELD, Ordering::SeqCst, Ordering::SeqCst) {
                    Ok(_) | Err(HELD) => {}
                    Err(_) => all_held = false,
                }
            }
            if all_held {
                break;
            }
            self.changed.wait(&mut t);
        }
        self.collector_waiting.store(false, Ordering::SeqCst);
        t.records.clone()
    }

    /// Ends the handshake: every held thread may enter scopes again.
    pub(crate) fn release_all(&self) {
        let mut t = self.threads.lock();
        t.holding = false;
        for r in &t.records {
            let _ = r.state.compare_exchange(HELD, OUTSIDE, Ordering::SeqCst, Ordering::SeqCst);
        }
        self.changed.notify_all();
    }
}

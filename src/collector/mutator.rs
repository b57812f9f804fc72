//! The thread registry: every attached thread's record, and the posting of handshake requests.
//!
//! A [`ThreadRecord`] belongs to the registry, not to its thread: its allocation cache, its
//! barrier ring and its [`StateWord`]. The state word decides who may touch the cache: the thread
//! while it is inside a scope, the collector while it holds a claim on a thread outside one (see
//! handshake.rs). A detached thread's record is unlisted and left answering every request, so a
//! collector still holding an old list of records never waits for it.
//!
//! Requests are posted under the registry lock, and a thread attaching takes the current token
//! and colour under the same lock: a thread that joins mid-cycle starts in the state every
//! existing thread reached by answering.

use super::barrier::BarrierBuffer;
use super::handshake::{level, StateWord, LEVEL_SNAPSHOT};
use super::locals::LocalRoots;
use super::mark::Marker;
use crate::memory::cache::Cache;
use crate::sync::{Arc, AtomicU32, AtomicU64, Mutex, Ordering};
use std::cell::UnsafeCell;

/// What a thread owes in mark assists, and the marker it pays with.
#[derive(Default)]
pub(crate) struct AssistState {
    /// Scan work owed, in bytes.
    pub(crate) owed: f64,
    pub(crate) marker: Option<Marker>,
}

/// The per-thread state of one attached thread.
pub(crate) struct ThreadRecord {
    pub(crate) state: StateWord,
    cache: UnsafeCell<Cache>,
    assist: UnsafeCell<AssistState>,
    pub(crate) barrier: BarrierBuffer,
    /// The thread's local stacks (locals.rs): part of its root set.
    pub(crate) locals: LocalRoots,
    /// The thread's name, for messages.
    pub(crate) name: String,
    /// When the thread last answered a request from inside a scope (nanoseconds since the heap
    /// was created): how long a cycle waited on its scope is measured to this, not to when the
    /// collector got round to looking.
    pub(crate) answered_at_ns: AtomicU64,
}

// SAFETY: `cache` and `assist` are used only by whoever the state word makes its owner (the thread inside a
// scope, or the collector holding a claim); everything else is atomic or locked.
unsafe impl Sync for ThreadRecord {}
// SAFETY: as above.
unsafe impl Send for ThreadRecord {}

impl ThreadRecord {
    /// The thread's allocation cache.
    ///
    /// # Safety
    /// The caller owns the record by its state word (the thread inside a scope, or the collector
    /// holding a claim), and no other reference from this method is alive.
    #[inline]
    #[allow(clippy::mut_from_ref)]
    pub(crate) unsafe fn cache(&self) -> &mut Cache {
        // SAFETY: exclusive by the state-word rule the caller guarantees.
        unsafe { &mut *self.cache.get() }
    }

    /// The thread's assist state.
    ///
    /// # Safety
    /// As for [`ThreadRecord::cache`].
    #[inline]
    #[allow(clippy::mut_from_ref)]
    pub(crate) unsafe fn assist(&self) -> &mut AssistState {
        // SAFETY: exclusive by the state-word rule the caller guarantees.
        unsafe { &mut *self.assist.get() }
    }
}

/// The attached threads and the current request.
#[derive(Default)]
pub(crate) struct Registry {
    records: Mutex<Vec<Arc<ThreadRecord>>>,
    /// The current request token (handshake.rs).
    pub(crate) token: AtomicU64,
    /// The colour threads adopt when they answer the current snapshot request.
    pub(crate) black_below: AtomicU32,
}

impl Registry {
    /// Registers the calling thread, in the state the current request asks for.
    pub(crate) fn attach(&self, profile_rate: usize) -> Arc<ThreadRecord> {
        let mut cache = Cache::default();
        // Seed the sampling distances from the clock and the cache's address: threads differ.
        cache.sample_rng = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0x9E37_79B9, |d| d.as_nanos() as u64)
            ^ (&cache as *const Cache as u64).rotate_left(32)
            | 1;
        cache.sample_left = crate::telemetry::profile::next_sample(profile_rate, &mut cache.sample_rng);
        let mut records = self.records.lock();
        let token = self.token.load(Ordering::SeqCst);
        if level(token) == LEVEL_SNAPSHOT {
            cache.set_colour(self.black_below.load(Ordering::SeqCst));
        }
        let t = std::thread::current();
        let rec = Arc::new(ThreadRecord {
            state: StateWord::new(token),
            cache: UnsafeCell::new(cache),
            assist: UnsafeCell::new(AssistState::default()),
            barrier: BarrierBuffer::default(),
            locals: LocalRoots::default(),
            answered_at_ns: AtomicU64::new(0),
            name: t.name().map(str::to_owned).unwrap_or_else(|| format!("{:?}", t.id())),
        });
        records.push(rec.clone());
        rec
    }

    /// Unlists a record whose thread is inside its last scope (it entered to own its cache);
    /// from now on it answers every request.
    pub(crate) fn unlist(&self, rec: &Arc<ThreadRecord>) {
        self.records.lock().retain(|r| !Arc::ptr_eq(r, rec));
        rec.state.exit(super::handshake::BUSY - 1);
    }

    /// Posts a request (and, for a snapshot, the colour to adopt).
    pub(crate) fn post(&self, token: u64, black_below: u32) {
        let _records = self.records.lock();
        self.black_below.store(black_below, Ordering::SeqCst);
        self.token.store(token, Ordering::SeqCst);
    }

    /// The records listed now.
    pub(crate) fn records(&self) -> Vec<Arc<ThreadRecord>> {
        self.records.lock().clone()
    }

    /// Number of attached threads.
    pub(crate) fn len(&self) -> usize {
        self.records.lock().len()
    }
}

//! Weak references and ephemeron tables: the references marking does not follow, settled when
//! marking ends.
//!
//! **Weak cells.** A weak reference is a small GC object, a [`WeakCell`], holding its target's
//! payload address in one atomic word. Marking never follows that word. Every cell is listed in
//! [`WeakRegistry::cells`] when it is made. When marking has terminated and before the sweep
//! begins ([`Collector::clear_weak`]), the collector walks the list: a cell that is unmarked itself
//! leaves the list (the sweep frees it); a cell whose target is unmarked is cleared to 0. Nothing
//! is freed before that walk, so a cell never holds the address of a freed slot (which could be
//! reused by another object). Go clears its weak handles lazily, when it sweeps the target's span
//! (and makes a reader sweep that span first); we clear eagerly, one pass over the cells per
//! cycle on the collector's side, so a reader never has to sweep.
//!
//! **Reading a weak reference** (Go's `makeStrongFromWeak`) must never hand out a dead object and
//! must not let a live one escape marking. With the barrier off, the reader is either before this
//! cycle's snapshot (what it holds needs no mark: its scope ends before marking can) or after the
//! walk (every non-zero cell's target is live), so it loads the word. With the barrier on it raises
//! its `in_barrier` flag, as a store barrier does, and reads the *gate*:
//! - `GATE_OPEN` (marking): it greys the target and queues it in its ring. A termination round
//!   sees the flag or the greying (the same argument as for the store barrier).
//! - `GATE_CLOSED`: a termination round that may be the last one is running. The reader lowers its
//!   flag and waits for the round (microseconds). Without the gate, a reader could grey an object
//!   after the round that declared marking done, or a round that turned out dirty could leave
//!   readers treating unmarked but reachable objects as dead.
//! - `GATE_KEEP_ALL`: marking is done but failed: this cycle frees nothing, so the reader keeps
//!   every target, greying nothing (the marks prove nothing, and the walk does not run).
//! - `GATE_CLEARING`: marking is done; an unmarked target is dead, and the reader answers `None`
//!   even if the walk has not reached its cell yet. The sweep cannot start while the flag is up
//!   (turning the barrier off waits for every flag), so the mark bit it reads is this cycle's.
//!   After a marked answer it reloads the cell: a finalizer's object is marked again (resurrected)
//!   only after the walk cleared the cells that pointed to it, so a weak reference never hands
//!   out an object whose finalizer is queued.
//!
//! **Ephemeron tables** ([`RawWeakTable`]): entries of (hash, weak key, value word). A value is
//! reachable only while its key is: marking does not trace tables; instead every termination
//! round ([`Collector::ephemeron_scan`]) greys the values of entries whose key is marked, in every
//! table that is itself marked. A round that greys anything is not clean, so marking ends only
//! when no live key has an unmarked value. The walk at the end of marking removes entries whose
//! key is dead. Value stores go through the hybrid barrier; key reads follow the weak-read rules.
//!
//! Invariants kept here:
//! - every cell and table allocated is listed until the walk finds it unmarked;
//! - after the walk and until the next cycle's walk, a non-zero cell (or a table key) refers to
//!   an object that was marked in the last cycle or allocated since;
//! - no weak read greys anything after a clean round (the gate).

use super::barrier::shade_old_and_new;
use super::mutator::ThreadRecord;
use super::Collector;
use crate::collector::Tracer;
use crate::object::HEADER_SIZE;
use crate::sync::{fence, AtomicBool, AtomicPtr, AtomicU32, AtomicUsize, Mutex, Ordering};
use crate::Trace;
use hashbrown::HashTable;

/// Marking: weak reads grey their target.
pub(crate) const GATE_OPEN: u32 = 0;
/// A termination round is deciding whether marking is done: weak reads wait.
pub(crate) const GATE_CLOSED: u32 = 1;
/// Marking is done: an unmarked target is dead.
pub(crate) const GATE_CLEARING: u32 = 2;
/// Marking is done but failed (cycle.rs): nothing is freed this cycle, so every target may be
/// handed out, and none is greyed.
pub(crate) const GATE_KEEP_ALL: u32 = 3;

/// A weak reference's cell: a GC object holding its target's payload address, or 0 once cleared.
pub(crate) struct WeakCell {
    target: AtomicUsize,
}

impl WeakCell {
    pub(crate) fn new(target: usize) -> WeakCell {
        WeakCell { target: AtomicUsize::new(target) }
    }
}

// SAFETY: the cell holds no strong reference: its target is weak, handled by the registry.
unsafe impl Trace for WeakCell {
    const NEEDS_TRACE: bool = false;
    const __WEAK_KIND: u8 = crate::object::WEAK_CELL;
    fn trace(&self, _: &mut Tracer<'_>) {}
}

/// One entry of an ephemeron table.
pub(crate) struct Entry {
    pub(crate) hash: u64,
    /// The key's payload address (weak).
    pub(crate) key: usize,
    /// The value's word (strong while the key lives), decoded by the table's `decode`.
    pub(crate) value: AtomicPtr<u8>,
}

/// The untyped part of an ephemeron table. It must be the first field of a GC object that is
/// listed in the registry (the typed wrapper is `#[repr(C)]`).
pub(crate) struct RawWeakTable {
    pub(crate) entries: Mutex<HashTable<Entry>>,
    /// The object address a value word refers to, or 0.
    pub(crate) decode: fn(*mut u8) -> usize,
}

impl RawWeakTable {
    pub(crate) fn new(decode: fn(*mut u8) -> usize) -> RawWeakTable {
        RawWeakTable { entries: Mutex::new(HashTable::new()), decode }
    }
}

/// The collector's lists of weak cells and ephemeron tables, and the gate weak reads obey.
#[derive(Default)]
pub(crate) struct WeakRegistry {
    pub(crate) gate: AtomicU32,
    cells: Mutex<Vec<usize>>,
    tables: Mutex<Vec<usize>>,
}

impl WeakRegistry {
    /// The payload addresses of every listed cell and table (for the verifier).
    pub(crate) fn listed(&self) -> (std::collections::HashSet<usize>, std::collections::HashSet<usize>) {
        (self.cells.lock().iter().copied().collect(), self.tables.lock().iter().copied().collect())
    }
}

/// A weak read in progress: the thread's `in_barrier` flag is up (if the barrier was on) and the
/// gate was not closed. Lowers the flag when dropped. The caller must not allocate while holding
/// one (turning the barrier off waits for the flag).
pub(crate) struct WeakAccess<'a> {
    c: &'a Collector,
    rec: &'a ThreadRecord,
    /// `None`: the barrier was off (no flag raised).
    gate: Option<u32>,
}

impl WeakAccess<'_> {
    /// Whether the weakly held object at `payload` may be handed out, greying it while marking.
    ///
    /// # Safety
    /// `payload` was read from a cell or table key of this heap (so it is allocated: nothing is
    /// freed before the walk clears its weak references).
    pub(crate) unsafe fn keep(&self, payload: usize) -> bool {
        match self.gate {
            None | Some(GATE_KEEP_ALL) => true,
            Some(GATE_CLEARING) => self.c.is_marked(payload),
            Some(_) => {
                if self.c.grey(payload) == Some(true) {
                    self.c.queue_grey(self.rec, payload);
                }
                true
            }
        }
    }

    /// Reads a cell: its target, or 0 if it is cleared or its target is dead.
    pub(crate) fn read_cell(&self, cell: &WeakCell) -> usize {
        // SAFETY: a non-zero cell refers to an allocated object (module invariant).
        read_weak(self.gate, &cell.target, |p| unsafe { self.keep(p) })
    }

    /// Stores `new` into a slot with the flag already up: the hybrid barrier's greying of the old
    /// and the new word's object, if the barrier is on.
    ///
    /// # Safety
    /// `slot` is a value slot of this heap's table; `decode(new)` is 0 or an object of this heap.
    pub(crate) unsafe fn store(&self, slot: &AtomicPtr<u8>, new: *mut u8, decode: fn(*mut u8) -> usize) {
        if self.gate.is_some() {
            shade_old_and_new(
                &self.c.barrier_on,
                slot,
                new,
                decode,
                |p| self.c.grey(p),
                |p| self.c.queue_grey(self.rec, p),
            );
        }
        slot.store(new, Ordering::Release);
    }
}

/// The table whose object's payload is at `addr`.
///
/// # Safety
/// `addr` is listed in the registry's tables (the payload of an object whose first field is a
/// `RawWeakTable`) and the object is still allocated.
unsafe fn table_at<'a>(addr: usize) -> &'a RawWeakTable {
    // SAFETY: forwarded from the caller.
    unsafe { &*(addr as *const RawWeakTable) }
}

/// Keeps the addresses of `list` for which `keep` is true. The list is taken out while `keep`
/// runs (it may be slow); addresses listed meanwhile (new, hence live) are kept.
fn retain_listed(list: &Mutex<Vec<usize>>, mut keep: impl FnMut(usize) -> bool) {
    let mut taken = std::mem::take(&mut *list.lock());
    taken.retain(|&a| keep(a));
    list.lock().append(&mut taken);
}

/// The reader's entry into a weak read: `None` if the barrier is off (no flag left up);
/// otherwise raises `in_barrier`, waits out a closed gate (`wait(spins)`, flag down meanwhile) and
/// returns the gate it saw with the flag up.
pub(crate) fn enter_weak_read(
    in_barrier: &AtomicBool,
    barrier_on: &AtomicBool,
    gate: &AtomicU32,
    mut wait: impl FnMut(u32),
) -> Option<u32> {
    let mut spins = 0;
    loop {
        if !barrier_on.load(Ordering::SeqCst) {
            return None;
        }
        in_barrier.store(true, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        let g = gate.load(Ordering::SeqCst);
        if !barrier_on.load(Ordering::SeqCst) {
            // Marking ended meanwhile and the walk is done: cells hold only live targets.
            in_barrier.store(false, Ordering::SeqCst);
            return None;
        }
        if g != GATE_CLOSED {
            return Some(g);
        }
        in_barrier.store(false, Ordering::SeqCst);
        spins += 1;
        wait(spins);
    }
}

/// Reads a weak word under the gate `gate` (from [`enter_weak_read`]): `keep(p)` greys `p` while
/// marking and says whether it is marked after. 0 if the word is cleared or its target dead.
pub(crate) fn read_weak(gate: Option<u32>, word: &AtomicUsize, keep: impl Fn(usize) -> bool) -> usize {
    let p = word.load(Ordering::SeqCst);
    if p == 0 || !keep(p) {
        return 0;
    }
    if gate == Some(GATE_CLEARING) && word.load(Ordering::SeqCst) != p {
        // Cleared since (and perhaps resurrected for its finalizer since): dead.
        return 0;
    }
    p
}

impl Drop for WeakAccess<'_> {
    fn drop(&mut self) {
        if self.gate.is_some() {
            self.rec.barrier.in_barrier.store(false, Ordering::SeqCst);
        }
    }
}

impl Collector {
    /// Starts a weak read on the calling thread (`rec`, inside a scope).
    #[inline]
    pub(crate) fn weak_access<'a>(&'a self, rec: &'a ThreadRecord) -> WeakAccess<'a> {
        // Acquire: a reader that sees the barrier off after a cycle's end must also see what
        // that cycle's walk cleared before turning it off (the release of the barrier flag's
        // store), or it could read a cell's stale target that the sweep is about to free.
        if !self.barrier_on.load(Ordering::Acquire) {
            return WeakAccess { c: self, rec, gate: None };
        }
        self.weak_access_slow(rec)
    }

    #[cold]
    fn weak_access_slow<'a>(&'a self, rec: &'a ThreadRecord) -> WeakAccess<'a> {
        let mut waited: Option<std::time::Instant> = None;
        let gate = enter_weak_read(&rec.barrier.in_barrier, &self.barrier_on, &self.weak.gate, |spins| {
            waited.get_or_insert_with(std::time::Instant::now);
            crate::sync::spin_wait(spins);
        });
        if let Some(t) = waited {
            // Waiting for the collector's round, as a scope entry waits for a claim.
            self.record_stall(crate::telemetry::stalls::StallCause::Handshake, t);
        }
        WeakAccess { c: self, rec, gate }
    }

    /// Whether the object at `payload` is marked.
    pub(crate) fn is_marked(&self, payload: usize) -> bool {
        let obj = payload - HEADER_SIZE;
        // SAFETY: callers pass allocated objects of this heap, so the span is in use.
        let span = unsafe { self.memory.span_of(obj) };
        span.is_marked(span.slot_of(obj))
    }

    /// Lists a new weak cell (its payload address).
    pub(crate) fn register_cell(&self, payload: usize) {
        self.weak.cells.lock().push(payload);
    }

    /// Lists a new ephemeron table (the payload address of the object whose first field it is).
    pub(crate) fn register_table(&self, payload: usize) {
        self.weak.tables.lock().push(payload);
    }

    /// Calls `f(key, value)` for every entry with a value, in every listed table that is `live`
    /// (tables, keys and values are payload addresses).
    fn for_each_ephemeron(&self, live: impl Fn(usize) -> bool, mut f: impl FnMut(usize, usize)) {
        let tables = self.weak.tables.lock();
        for &t in tables.iter().filter(|&&t| live(t)) {
            // SAFETY: listed tables are allocated until the walk unlists them.
            let t = unsafe { table_at(t) };
            for e in t.entries.lock().iter() {
                let v = (t.decode)(e.value.load(Ordering::Acquire));
                if v != 0 {
                    f(e.key, v);
                }
            }
        }
    }

    /// Calls `f` with the value of every entry whose key is `live`, in every listed table that
    /// is `live`.
    fn for_each_ephemeron_value(&self, live: impl Fn(usize) -> bool, mut f: impl FnMut(usize)) {
        self.for_each_ephemeron(&live, |k, v| {
            if live(k) {
                f(v)
            }
        });
    }

    /// Greys the value of every entry whose key is marked, in every marked table (one step of
    /// ephemeron marking; a termination round runs it, and sees what it greyed in its count).
    ///
    /// A value greyed here may itself be the key of another entry (a chain: key → value = key
    /// → ...). Those are followed at once, through a map from the unresolved entries' keys to
    /// their values, so a chain costs one scan whatever order its entries lie in; rescanning
    /// every table once per link made `collect` quadratic in the chain's length (32,000 links
    /// took 11 s). A chain through a value's *fields* still needs the markers to scan the value
    /// first, and so one round per such link, as in every ephemeron collector.
    pub(crate) fn ephemeron_scan(&self) {
        let (mut greyed, mut unresolved) = (Vec::new(), Vec::new());
        let grey = |v: usize, greyed: &mut Vec<usize>| {
            if let Some(scan) = self.grey(v) {
                if scan {
                    self.mark.injector.push(super::mark::Work::new(v));
                }
                greyed.push(v);
            }
        };
        self.for_each_ephemeron(
            |t| self.is_marked(t),
            |k, v| if self.is_marked(k) { grey(v, &mut greyed) } else { unresolved.push((k, v)) },
        );
        if greyed.is_empty() || unresolved.is_empty() {
            return;
        }
        let mut pending: std::collections::HashMap<usize, Vec<usize>> = std::collections::HashMap::new();
        for (k, v) in unresolved {
            pending.entry(k).or_default().push(v);
        }
        while let Some(v) = greyed.pop() {
            for w in pending.remove(&v).into_iter().flatten() {
                grey(w, &mut greyed);
            }
        }
    }

    /// The verifier's view of ephemerons: the values of entries whose key `reached`, in tables
    /// that `reached` (the verifier runs before the walk).
    pub(crate) fn ephemeron_values(&self, reached: impl Fn(usize) -> bool) -> Vec<usize> {
        let mut out = Vec::new();
        self.for_each_ephemeron_value(reached, |v| out.push(v));
        out
    }

    /// The walk at the end of marking, before the sweep: unlists dead cells and tables, clears
    /// cells whose target is dead and removes table entries whose key is dead. Returns the cells
    /// cleared and the entries removed.
    pub(crate) fn clear_weak(&self) -> (usize, usize) {
        debug_assert_eq!(self.weak.gate.load(Ordering::SeqCst), GATE_CLEARING);
        let mut cleared = 0;
        retain_listed(&self.weak.cells, |c| {
            if !self.is_marked(c) {
                return false;
            }
            // SAFETY: a listed, marked cell is allocated, and its payload is a `WeakCell`.
            let cell = unsafe { &*(c as *const WeakCell) };
            let t = cell.target.load(Ordering::SeqCst);
            if t != 0 && !self.is_marked(t) {
                cell.target.store(0, Ordering::SeqCst);
                cleared += 1;
            }
            true
        });
        let mut removed = 0;
        retain_listed(&self.weak.tables, |t| {
            if !self.is_marked(t) {
                return false;
            }
            // SAFETY: a listed table is allocated until this walk unlists it.
            let mut entries = unsafe { table_at(t) }.entries.lock();
            let before = entries.len();
            entries.retain(|e| self.is_marked(e.key));
            removed += before - entries.len();
            true
        });
        (cleared, removed)
    }
}

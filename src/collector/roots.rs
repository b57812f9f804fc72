//! The root table: the objects `Root` handles keep alive.
//!
//! A `Root` owns one slot of the table, holding its object's payload address; the marker shades
//! every occupied slot at the start of marking. Slots are recycled through a free list.
//!
//! Invariant kept here (with the collector): an added slot is shaded *after* it is in the table
//! ([`RootTable::add_shaded`]), a removed one *before* it leaves ([`RootTable::remove`]), so an
//! object whose only reference moves between a thread, another root and the table is never
//! missed: the scan at the start of marking finds the slot, or the barrier was already on for
//! the shade.

use crate::sync::Mutex;

#[derive(Default)]
struct Slots {
    slots: Vec<usize>,
    free: Vec<u32>,
}

#[derive(Default)]
pub(crate) struct RootTable {
    inner: Mutex<Slots>,
}

impl RootTable {
    /// Occupies a slot with `payload`; returns its index.
    pub(crate) fn add(&self, payload: usize) -> u32 {
        debug_assert_ne!(payload, 0);
        let mut t = self.inner.lock();
        if let Some(i) = t.free.pop() {
            t.slots[i as usize] = payload;
            i
        } else {
            t.slots.push(payload);
            u32::try_from(t.slots.len() - 1).expect("more than 2^32 roots")
        }
    }

    /// Occupies a slot with `payload`, then calls `shade` on it (shades it if the barrier is on);
    /// returns the slot. The order matters for a thread nothing synchronises with (outside every
    /// scope): shading first could read the barrier off, and the scan at C1 could then run before
    /// the slot is added, missing it. Adding first, either the scan sees the slot, or it took the
    /// table's lock before this add did, after the barrier went on: the shade then sees it on.
    pub(crate) fn add_shaded(&self, payload: usize, shade: impl FnOnce(usize)) -> u32 {
        let i = self.add(payload);
        shade(payload);
        i
    }

    /// Frees slot `idx`, after `shade` has shaded its object (the barrier's rule for roots: a
    /// marker that scanned the table before this removal saw the object; one that scans after
    /// finds it shaded).
    pub(crate) fn remove(&self, idx: u32, shade: impl FnOnce(usize)) {
        let payload = self.inner.lock().slots[idx as usize];
        shade(payload);
        let mut t = self.inner.lock();
        t.slots[idx as usize] = 0;
        t.free.push(idx);
    }

    /// Calls `f` with every occupied slot's payload address, under the table's lock.
    pub(crate) fn for_each(&self, mut f: impl FnMut(usize)) {
        let t = self.inner.lock();
        for &p in &t.slots {
            if p != 0 {
                f(p);
            }
        }
    }

    /// Number of occupied slots.
    pub(crate) fn len(&self) -> usize {
        let t = self.inner.lock();
        t.slots.len() - t.free.len()
    }
}

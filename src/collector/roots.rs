//! The root table: the objects `Root` handles keep alive.
//!
//! A `Root` owns one slot of the table, holding its object's payload address; the marker shades
//! every occupied slot at the start of marking. Slots are recycled through a free list.
//!
//! Invariant kept here (with the collector): while the barrier is on, adding or removing a slot
//! shades its object *before* the slot changes, so an object whose only reference moves between
//! a thread and the root table is never missed by a marker that already scanned the table.

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

//! The page heap: hands out runs of 8 KiB pages from the heap's reservation and takes them back.
//!
//! Free runs are kept coalesced (no two free runs touch) and indexed by size for best fit and by
//! start and end address for merging. Fresh pages come from a bump pointer over the reservation,
//! committing it in large chunks as the bump pointer passes the committed prefix.
//!
//! Invariant kept here: every page below the bump pointer is in exactly one place — a span in use,
//! or one free run — and `in_use_pages` counts the former. Callers hold the page-heap lock.

use super::os::Reservation;
use super::size_class::PAGE_SIZE;
use std::collections::{BTreeMap, BTreeSet};

pub(crate) struct PageHeap {
    reservation: Reservation,
    /// Bytes handed out from the start of the reservation so far.
    bump: usize,
    /// Free runs by (pages, start address): best fit is the first entry at or above the size.
    by_size: BTreeSet<(usize, usize)>,
    /// Free runs by start address → pages.
    by_start: BTreeMap<usize, usize>,
    /// Free runs by end address → start address.
    by_end: BTreeMap<usize, usize>,
    pub(crate) in_use_pages: usize,
    pub(crate) free_pages: usize,
}

impl PageHeap {
    pub(crate) fn new(reservation: Reservation) -> PageHeap {
        PageHeap {
            reservation,
            bump: 0,
            by_size: BTreeSet::new(),
            by_start: BTreeMap::new(),
            by_end: BTreeMap::new(),
            in_use_pages: 0,
            free_pages: 0,
        }
    }

    /// Bytes committed from the OS so far.
    pub(crate) fn committed(&self) -> usize {
        self.reservation.committed()
    }

    /// Takes a run of `npages` pages, or `None` if the reservation is exhausted.
    pub(crate) fn alloc(&mut self, npages: usize) -> Option<usize> {
        if let Some(&(len, start)) = self.by_size.range((npages, 0)..).next() {
            self.remove_free(start, len);
            if len > npages {
                self.insert_free(start + npages * PAGE_SIZE, len - npages);
            }
            self.in_use_pages += npages;
            return Some(start);
        }
        let bytes = npages * PAGE_SIZE;
        let end = self.bump.checked_add(bytes)?;
        self.reservation.commit(end).ok()?;
        let start = self.reservation.base() + self.bump;
        self.bump = end;
        self.in_use_pages += npages;
        Some(start)
    }

    /// Returns a run taken by [`PageHeap::alloc`], merging it with free neighbours.
    pub(crate) fn free(&mut self, mut start: usize, mut npages: usize) {
        self.in_use_pages -= npages;
        if let Some(&prev) = self.by_end.get(&start) {
            let plen = self.by_start[&prev];
            self.remove_free(prev, plen);
            start = prev;
            npages += plen;
        }
        let end = start + npages * PAGE_SIZE;
        if let Some(&nlen) = self.by_start.get(&end) {
            self.remove_free(end, nlen);
            npages += nlen;
        }
        self.insert_free(start, npages);
    }

    fn insert_free(&mut self, start: usize, npages: usize) {
        self.by_size.insert((npages, start));
        self.by_start.insert(start, npages);
        self.by_end.insert(start + npages * PAGE_SIZE, start);
        self.free_pages += npages;
    }

    fn remove_free(&mut self, start: usize, npages: usize) {
        self.by_size.remove(&(npages, start));
        self.by_start.remove(&start);
        self.by_end.remove(&(start + npages * PAGE_SIZE));
        self.free_pages -= npages;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_are_reused_and_coalesced() {
        let mut ph = PageHeap::new(Reservation::new(256 << 20).unwrap());
        let a = ph.alloc(2).unwrap();
        let b = ph.alloc(3).unwrap();
        let c = ph.alloc(1).unwrap();
        assert_eq!(b, a + 2 * PAGE_SIZE);
        assert_eq!(c, b + 3 * PAGE_SIZE);
        ph.free(a, 2);
        ph.free(c, 1);
        ph.free(b, 3);
        assert_eq!(ph.by_start.len(), 1, "three neighbours merge into one run");
        assert_eq!(ph.free_pages, 6);
        assert_eq!(ph.alloc(6).unwrap(), a);
        assert_eq!(ph.in_use_pages, 6);
    }

    #[test]
    fn exhaustion_is_reported_not_crashed() {
        let mut ph = PageHeap::new(Reservation::new(64 * PAGE_SIZE).unwrap());
        assert!(ph.alloc(64).is_some());
        assert!(ph.alloc(1).is_none());
    }
}

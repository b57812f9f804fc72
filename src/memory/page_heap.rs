//! The page heap: hands out runs of 8 KiB pages from the heap's reservation and takes them back.
//!
//! Free runs are kept coalesced (no two free runs touch) and indexed by size for best fit and by
//! start and end address for merging. Fresh pages come from a bump pointer over the reservation,
//! committing it in large chunks as the bump pointer passes the committed prefix.
//!
//! Invariant kept here: every page below the bump pointer is in exactly one place — a span in use,
//! one free run, or a run the scavenger has taken out to return to the OS — and `in_use_pages`
//! counts the first. Callers hold the page-heap lock.
//!
//! **Released runs.** The scavenger returns free runs to the OS (`madvise`), outside the lock: it
//! takes a run out ([`PageHeap::take_for_release`]), advises it, and puts it back marked released
//! ([`PageHeap::put_released`]). A released run needs nothing special when reused (its pages come
//! back zero-filled on first touch). When a released run merges with an unreleased neighbour, the
//! merged run counts as unreleased: `released_pages` may undercount what the OS has taken back,
//! never overcount it, so "mapped" (touched and not released) errs on the high side.

use super::os::Reservation;
use super::size_class::PAGE_SIZE;
use std::collections::{BTreeMap, BTreeSet};

pub(crate) struct PageHeap {
    reservation: Reservation,
    /// Bytes handed out from the start of the reservation so far.
    bump: usize,
    /// Free runs by (pages, start address): best fit is the first entry at or above the size.
    by_size: BTreeSet<(usize, usize)>,
    /// Free runs by start address → (pages, released to the OS).
    by_start: BTreeMap<usize, (usize, bool)>,
    /// Free runs by end address → start address.
    by_end: BTreeMap<usize, usize>,
    pub(crate) in_use_pages: usize,
    /// The most pages in use since the scavenger last read it ([`PageHeap::take_peak_in_use`]).
    peak_in_use_pages: usize,
    pub(crate) free_pages: usize,
    /// Pages of free runs released to the OS.
    pub(crate) released_pages: usize,
    /// Pages of free runs the scavenger has taken out to release (outside every list).
    pub(crate) out_for_release: usize,
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
            peak_in_use_pages: 0,
            free_pages: 0,
            released_pages: 0,
            out_for_release: 0,
        }
    }

    /// Bytes committed from the OS so far.
    pub(crate) fn committed(&self) -> usize {
        self.reservation.committed()
    }

    /// Bytes touched and not released to the OS: everything handed out from the reservation so
    /// far, less the released free runs.
    pub(crate) fn mapped(&self) -> usize {
        self.bump - self.released_pages * PAGE_SIZE
    }

    /// The most pages in use since the last call, which starts a new window from now.
    pub(crate) fn take_peak_in_use(&mut self) -> usize {
        std::mem::replace(&mut self.peak_in_use_pages, self.in_use_pages)
    }

    /// Takes a run of `npages` pages, or `None` if the reservation is exhausted.
    pub(crate) fn alloc(&mut self, npages: usize) -> Option<usize> {
        let start = self.take_run(npages)?;
        self.in_use_pages += npages;
        self.peak_in_use_pages = self.peak_in_use_pages.max(self.in_use_pages);
        Some(start)
    }

    /// A run of `npages` pages: the best-fitting free run (its rest stays free), else fresh pages
    /// from the bump pointer.
    fn take_run(&mut self, npages: usize) -> Option<usize> {
        if let Some(&(len, start)) = self.by_size.range((npages, 0)..).next() {
            let released = self.remove_free(start, len);
            if len > npages {
                self.insert_free(start + npages * PAGE_SIZE, len - npages, released);
            }
            return Some(start);
        }
        let end = self.bump.checked_add(npages * PAGE_SIZE)?;
        self.reservation.commit(end).ok()?;
        let start = self.reservation.base() + self.bump;
        self.bump = end;
        Some(start)
    }

    /// Returns a run taken by [`PageHeap::alloc`], merging it with free neighbours.
    pub(crate) fn free(&mut self, start: usize, npages: usize) {
        self.in_use_pages -= npages;
        self.insert_merged(start, npages, false);
    }

    /// Inserts a free run, merging it with free neighbours; the result is released only if every
    /// part was.
    fn insert_merged(&mut self, mut start: usize, mut npages: usize, mut released: bool) {
        if let Some(&prev) = self.by_end.get(&start) {
            let plen = self.by_start[&prev].0;
            released &= self.remove_free(prev, plen);
            start = prev;
            npages += plen;
        }
        let end = start + npages * PAGE_SIZE;
        if let Some(&(nlen, _)) = self.by_start.get(&end) {
            released &= self.remove_free(end, nlen);
            npages += nlen;
        }
        self.insert_free(start, npages, released);
    }

    /// Takes the largest free run not yet released, for the scavenger to release outside the
    /// lock; it is out of every list until [`PageHeap::put_released`], and counted in
    /// `out_for_release` meanwhile (an allocation that finds no run then waits for it rather than
    /// reporting the reservation exhausted).
    pub(crate) fn take_for_release(&mut self) -> Option<(usize, usize)> {
        let &(npages, start) = self.by_size.iter().rev().find(|&&(_, start)| !self.by_start[&start].1)?;
        self.remove_free(start, npages);
        self.out_for_release += npages;
        Some((start, npages))
    }

    /// Puts back a run from [`PageHeap::take_for_release`] that could not be released.
    pub(crate) fn free_taken(&mut self, start: usize, npages: usize) {
        self.out_for_release -= npages;
        self.insert_merged(start, npages, false);
    }

    /// Puts back a run from [`PageHeap::take_for_release`] once the OS has taken its pages.
    pub(crate) fn put_released(&mut self, start: usize, npages: usize) {
        self.out_for_release -= npages;
        self.insert_merged(start, npages, true);
    }

    fn insert_free(&mut self, start: usize, npages: usize, released: bool) {
        self.by_size.insert((npages, start));
        self.by_start.insert(start, (npages, released));
        self.by_end.insert(start + npages * PAGE_SIZE, start);
        self.free_pages += npages;
        if released {
            self.released_pages += npages;
        }
    }

    /// Removes a free run; returns whether it was released.
    fn remove_free(&mut self, start: usize, npages: usize) -> bool {
        self.by_size.remove(&(npages, start));
        let (_, released) = self.by_start.remove(&start).expect("a free run");
        self.by_end.remove(&(start + npages * PAGE_SIZE));
        self.free_pages -= npages;
        if released {
            self.released_pages -= npages;
        }
        released
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
    fn a_run_out_for_release_is_counted() {
        let mut ph = PageHeap::new(Reservation::new(256 << 20).unwrap());
        let a = ph.alloc(8).unwrap();
        let _pin = ph.alloc(1).unwrap();
        ph.free(a, 8);
        let (start, n) = ph.take_for_release().unwrap();
        assert_eq!((start, n, ph.out_for_release), (a, 8, 8));
        ph.put_released(start, n);
        assert_eq!((ph.out_for_release, ph.released_pages), (0, 8));
        let (start, n) = (ph.alloc(8).unwrap(), 8);
        ph.free(start, n);
        let (start, n) = ph.take_for_release().unwrap();
        ph.free_taken(start, n);
        assert_eq!(ph.out_for_release, 0);
    }

    #[test]
    fn released_runs_are_counted_reused_and_merge_conservatively() {
        let mut ph = PageHeap::new(Reservation::new(256 << 20).unwrap());
        let a = ph.alloc(4).unwrap();
        let b = ph.alloc(4).unwrap();
        let _c = ph.alloc(1).unwrap();
        assert_eq!(ph.mapped(), 9 * PAGE_SIZE);
        ph.free(a, 4);
        let (start, n) = ph.take_for_release().unwrap();
        assert_eq!((start, n), (a, 4));
        assert!(ph.take_for_release().is_none(), "nothing else is free");
        ph.put_released(start, n);
        assert_eq!(ph.released_pages, 4);
        assert_eq!(ph.mapped(), 5 * PAGE_SIZE);
        assert!(ph.take_for_release().is_none(), "a released run is not taken again");
        // Reusing part of it: those pages are mapped again, the rest stays released.
        assert_eq!(ph.alloc(1).unwrap(), a);
        assert_eq!(ph.released_pages, 3);
        // Merging with an unreleased neighbour: the whole run counts as mapped.
        ph.free(b, 4);
        assert_eq!(ph.released_pages, 0);
        assert_eq!(ph.free_pages, 7);
        assert_eq!(ph.mapped(), 9 * PAGE_SIZE);
    }

    #[test]
    fn exhaustion_is_reported_not_crashed() {
        let mut ph = PageHeap::new(Reservation::new(64 * PAGE_SIZE).unwrap());
        assert!(ph.alloc(64).is_some());
        assert!(ph.alloc(1).is_none());
    }
}

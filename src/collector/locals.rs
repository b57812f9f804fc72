//! Local roots: stacks of value slots that belong to one thread, written with plain stores and
//! no barrier, and treated by the collector as part of that thread's root set.
//!
//! An interpreter's value stack changes on every instruction; a barriered store into a GC array
//! per push is what made the first Lox VM four times slower than clox. A [`LocalBuf`] is instead
//! a buffer outside the heap, listed in its thread's record, and the collector never looks at
//! it while the thread may be writing it:
//!
//! - **Who reads it.** Only the record's owner (handshake.rs): the thread itself while it is
//!   inside a scope, or the collector while it holds a claim on the thread outside one. The
//!   thread writes it only inside a scope (every access needs a `Scope` of its record), so
//!   writes and scans never overlap. The words are atomics all the same, stored with release
//!   and scanned with acquire (a plain `mov` on x86), so the verifier may read them concurrently
//!   under the buffer's lock and still see the mark bit of a black allocation pushed there.
//! - **When it is read.** Once per cycle, when the thread's snapshot request is answered: by the
//!   thread at a scope boundary or a [`Session`](crate::Session) safepoint, or by the collector
//!   for a thread outside its scope ([`Collector::act_for`]). The answer greys every object the
//!   buffer holds, then publishes the acknowledgement (a SeqCst store the collector reads before
//!   it lets marking terminate), so the greyed objects are in the mark queue first.
//! - **Why no barrier and no rescan** (Go's argument for goroutine stacks under the hybrid
//!   barrier; docs/design.md, "Local roots", has it in full). Before the snapshot the stack is
//!   grey: anything it holds is shaded by the scan, and anything it hands to the heap goes
//!   through a barriered store, which shades the new value. After the snapshot the thread is
//!   black: it allocates black, and every reference it can load from the heap or a root was
//!   reachable at some moment after C1 and is therefore marked (the deletion half of the barrier
//!   keeps what a store removes). So a word written into the stack after the scan is already
//!   marked, or is a black allocation: marking never needs to see it.
//!
//! Invariants kept here:
//! - only words `0..len` are scanned, and every one of them was written by the owner from a
//!   value of its heap (words past `len` may be stale: they are never read);
//! - the words array is replaced (on growth) only by the owner, under `grow`, which the verifier
//!   also takes.

use crate::sync::{AtomicPtr, AtomicUsize, Mutex, Ordering};
use std::cell::UnsafeCell;

/// One local stack's storage.
pub(crate) struct LocalBuf {
    /// The slots. Replaced only by the owner while it is inside a scope, holding `grow`.
    words: UnsafeCell<Box<[AtomicPtr<u8>]>>,
    /// Slots in use (written by the owner).
    pub(crate) len: AtomicUsize,
    /// Held while `words` is replaced, and by readers other than the owner (the verifier).
    grow: Mutex<()>,
    /// The object address a word refers to, or 0.
    decode: fn(*mut u8) -> usize,
}

// SAFETY: `words` is replaced only by the record's owner under `grow`; every other access is to
// atomics, by the owner, or under `grow` (see the module comment).
unsafe impl Sync for LocalBuf {}
// SAFETY: as above.
unsafe impl Send for LocalBuf {}

impl LocalBuf {
    pub(crate) fn new(capacity: usize, decode: fn(*mut u8) -> usize) -> LocalBuf {
        LocalBuf {
            words: UnsafeCell::new(empty_words(capacity)),
            len: AtomicUsize::new(0),
            grow: Mutex::new(()),
            decode,
        }
    }

    /// The slots (as many as the capacity).
    ///
    /// # Safety
    /// The caller owns the record the buffer is listed in (so nobody replaces the array while
    /// the returned slice lives), or holds `grow`.
    #[inline(always)]
    pub(crate) unsafe fn words(&self) -> &[AtomicPtr<u8>] {
        // SAFETY: the array is replaced only by the owner under `grow` (caller's guarantee).
        unsafe { &*self.words.get() }
    }

    /// Replaces the slots by an array of at least `need` slots, keeping the first `len`.
    ///
    /// # Safety
    /// The caller is the owner of the record, inside a scope, and holds no slice from
    /// [`LocalBuf::words`].
    #[cold]
    #[inline(never)]
    pub(crate) unsafe fn grow(&self, need: usize) {
        let _g = self.grow.lock();
        // SAFETY: the owner, holding `grow`: no one else reads the array now.
        let words = unsafe { &mut *self.words.get() };
        let cap = need.max(words.len() * 2).max(16);
        let new = empty_words(cap);
        let len = self.len.load(Ordering::Relaxed);
        for (n, o) in new.iter().zip(&words[..len]) {
            n.store(o.load(Ordering::Relaxed), Ordering::Relaxed);
        }
        *words = new;
    }

    /// Calls `f` with every object the buffer's live slots refer to.
    ///
    /// # Safety
    /// As for [`LocalBuf::words`].
    pub(crate) unsafe fn for_each_object(&self, mut f: impl FnMut(usize)) {
        let len = self.len.load(Ordering::Relaxed);
        // SAFETY: forwarded.
        for w in unsafe { &self.words()[..len] } {
            // Acquire, against the owner's release stores: a black allocation's mark bit is set
            // before the object is pushed, and the verifier (reading concurrently) must see it.
            let p = (self.decode)(w.load(Ordering::Acquire));
            if p != 0 {
                f(p);
            }
        }
    }

    /// [`LocalBuf::for_each_object`] for a reader that does not own the record (the verifier):
    /// the words may change meanwhile, the array may not.
    pub(crate) fn for_each_object_locked(&self, f: impl FnMut(usize)) {
        let _g = self.grow.lock();
        // SAFETY: holding `grow`.
        unsafe { self.for_each_object(f) }
    }
}

fn empty_words(n: usize) -> Box<[AtomicPtr<u8>]> {
    (0..n).map(|_| AtomicPtr::new(std::ptr::null_mut())).collect()
}

/// The local stacks listed in one thread record.
#[derive(Default)]
pub(crate) struct LocalRoots {
    bufs: Mutex<Vec<crate::sync::Arc<LocalBuf>>>,
}

impl LocalRoots {
    pub(crate) fn add(&self, buf: crate::sync::Arc<LocalBuf>) {
        self.bufs.lock().push(buf);
    }

    pub(crate) fn remove(&self, buf: &crate::sync::Arc<LocalBuf>) {
        self.bufs.lock().retain(|b| !crate::sync::Arc::ptr_eq(b, buf));
    }

    /// Calls `f` with every object the thread's stacks refer to (the snapshot scan).
    ///
    /// # Safety
    /// The caller owns the record these roots belong to.
    pub(crate) unsafe fn scan(&self, mut f: impl FnMut(usize)) {
        for b in self.bufs.lock().iter() {
            // SAFETY: forwarded.
            unsafe { b.for_each_object(&mut f) };
        }
    }

    /// Every object the thread's stacks refer to now, read without owning the record.
    pub(crate) fn scan_locked(&self, mut f: impl FnMut(usize)) {
        for b in self.bufs.lock().iter() {
            b.for_each_object_locked(&mut f);
        }
    }
}

//! The write barrier: Go's hybrid barrier, shading both the value a store overwrites and the value
//! it writes, behind one global flag.
//!
//! When the collector is idle, a barriered store costs one relaxed load of `barrier_on` and a
//! branch that is always predicted right. When a cycle has the barrier on, the shaded addresses go
//! into the storing thread's buffer (no lock, no atomic), which is flushed to the collector's
//! shared grey queue when it fills and whenever the thread leaves its scope.
//!
//! Why both: shading the *old* value keeps every object that was reachable when marking began
//! (a deletion can never hide an object from the marker — Yuasa's snapshot barrier); shading the
//! *new* value makes a pointer that moves from a thread into the heap visible even when the thread
//! has not been rescanned (Dijkstra's insertion barrier). Together they let each thread take its
//! snapshot at its own scope boundary, with no stack rescan (Go's design doc 17503).

use super::mutator::{ThreadRecord, BARRIER_BUFFER};
use super::Collector;
use crate::sync::Ordering;

impl Collector {
    /// Whether stores must be barriered now.
    #[inline(always)]
    pub(crate) fn barrier_on(&self) -> bool {
        self.barrier_on.load(Ordering::Relaxed)
    }

    /// The barrier's slow path: records `old` and `new` (payload addresses, 0 for null) for the
    /// marker.
    ///
    /// # Safety
    /// `rec` is the calling thread's record and the thread is inside a scope.
    #[cold]
    #[inline(never)]
    pub(crate) unsafe fn write_barrier_slow(&self, rec: &ThreadRecord, old: usize, new: usize) {
        // SAFETY: the calling thread is inside a scope, so it owns its record's buffer.
        let buf = unsafe { rec.barrier_buffer() };
        if old != 0 {
            buf.push(old);
        }
        if new != 0 {
            buf.push(new);
        }
        if buf.len() >= BARRIER_BUFFER {
            self.flush_barrier_buffer(buf);
        }
    }

    /// Moves a barrier buffer's entries to the shared grey queue.
    pub(crate) fn flush_barrier_buffer(&self, buf: &mut Vec<usize>) {
        if !buf.is_empty() {
            self.grey_queue.lock().append(buf);
        }
    }

    /// Shades an object a root operation adds or removes while the barrier is on.
    pub(crate) fn shade_for_root(&self, payload: usize) {
        if self.barrier_on() {
            self.grey_queue.lock().push(payload);
        }
    }
}

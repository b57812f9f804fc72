//! Finalizers, with Go's semantics (`runtime.SetFinalizer`).
//!
//! An object with a finalizer is *registered*. Marking treats what a registered object refers to
//! as reachable, but not the object itself: at the start of marking each registered object is
//! scanned without being marked (Go's `markrootSpans`). When marking ends (after the weak walk,
//! so weak references to it are already cleared), a registered object left unmarked is
//! unreachable: it is marked again (resurrected) for this sweep, unregistered, and moved to the
//! *ready* queue. Everything it refers to was marked by the scan, so nothing it reaches is freed.
//! Ready objects are roots: the finalizer runs once, later, on the heap's finalizer thread, outside
//! every scope, with the object as a `Root` (made while it is still on the ready queue); the
//! object is then unreachable unless the finalizer kept it somewhere (resurrection), and an
//! unregistered object is freed normally by a later cycle. Because the finalizer thread is never
//! inside a scope while a finalizer runs, a finalizer that blocks holds up no cycle.
//!
//! Registering an object while the barrier is on shades it, so it survives the cycle that is
//! running (its referents were never scanned as roots); taking an object off the ready queue
//! roots it first.
//!
//! Ephemeron tables cannot be finalized (the API refuses): the walk unlists an unmarked table
//! before finalizers are queued, and a resurrected table would be listed nowhere, its values
//! unprotected.
//!
//! As in Go, an object reachable from its own finalizable referents (a cycle through it) is never
//! finalized, and a finalizer that captures a `Root` of its own object keeps it forever.
//!
//! Invariants kept here:
//! - a registered object is never freed while registered (it is resurrected instead);
//! - a ready object stays marked until its finalizer has taken it (it is greyed as a root).

use super::mark::Work;
use super::Collector;
use crate::object::HEADER_SIZE;
use crate::sync::Mutex;
use std::any::Any;
use std::collections::VecDeque;

/// One finalizer: its object's payload address and the closure (opaque to the collector).
pub(crate) struct Finalizer {
    pub(crate) obj: usize,
    pub(crate) run: Box<dyn Any + Send>,
}

#[derive(Default)]
pub(crate) struct Finalizers {
    registered: Mutex<Vec<Finalizer>>,
    ready: Mutex<VecDeque<Finalizer>>,
    /// Wakes the finalizer thread. Shared with it, so that it can wait without holding the heap.
    pub(crate) signal: std::sync::Arc<ReadySignal>,
}

/// "Finalizers are ready" and "stop", for a thread that waits without holding the heap.
#[derive(Default)]
pub(crate) struct ReadySignal {
    state: parking_lot::Mutex<(bool, bool)>,
    cv: parking_lot::Condvar,
}

impl ReadySignal {
    fn raise(&self, stop: bool) {
        let mut st = self.state.lock();
        st.0 = true;
        st.1 |= stop;
        self.cv.notify_all();
    }

    /// Asks the finalizer thread to exit.
    pub(crate) fn stop(&self) {
        self.raise(true);
    }

    /// Waits until finalizers may be ready (true) or the thread must stop (false).
    pub(crate) fn wait(&self) -> bool {
        let mut st = self.state.lock();
        while !st.0 {
            self.cv.wait(&mut st);
        }
        st.0 = false;
        !st.1
    }
}

impl Collector {
    /// Registers a finalizer for the object at `obj` (called inside a scope that holds it).
    pub(crate) fn add_finalizer(&self, f: Finalizer) {
        // A cycle already running never scanned this object's referents: keep it this cycle.
        // Listed first, then shaded (the order `Collector::add_root` explains).
        let obj = f.obj;
        self.finalizers.registered.lock().push(f);
        self.shade_for_root(obj);
    }

    /// At the start of marking: scans every registered object without marking it, and greys
    /// every ready object.
    pub(crate) fn finalizer_roots(&self) {
        for f in self.finalizers.registered.lock().iter() {
            // SAFETY: a registered object is allocated (it is never freed while registered).
            let span = unsafe { self.memory.span_of(f.obj - HEADER_SIZE) };
            if span.kind.scan() {
                self.mark.injector.push(Work::new(f.obj));
            }
        }
        for f in self.finalizers.ready.lock().iter() {
            self.grey_to_injector(f.obj);
        }
    }

    /// The verifier's roots from finalizers: registered objects (to scan, not to check) and
    /// ready objects (ordinary roots).
    pub(crate) fn finalizer_verify_roots(&self) -> (Vec<usize>, Vec<usize>) {
        let scan = self.finalizers.registered.lock().iter().map(|f| f.obj).collect();
        let roots = self.finalizers.ready.lock().iter().map(|f| f.obj).collect();
        (scan, roots)
    }

    /// At the end of marking, after the weak walk: resurrects every registered object left
    /// unmarked and queues its finalizer. Returns how many it queued.
    pub(crate) fn queue_finalizers(&self) -> usize {
        let mut now_ready = Vec::new();
        self.finalizers.registered.lock().retain_mut(|f| {
            if self.is_marked(f.obj) {
                return true;
            }
            let obj = f.obj - HEADER_SIZE;
            // SAFETY: registered, hence allocated.
            let span = unsafe { self.memory.span_of(obj) };
            span.mark(span.slot_of(obj));
            now_ready.push(Finalizer { obj: f.obj, run: std::mem::replace(&mut f.run, Box::new(())) });
            false
        });
        let n = now_ready.len();
        if n > 0 {
            self.finalizers.ready.lock().extend(now_ready);
            self.finalizers.signal.raise(false);
        }
        n
    }

    /// The next ready finalizer, if any, with its object rooted: the object is added to the root
    /// table (shaded, as any new root) while it is still on the ready queue, so it is a root at
    /// every moment. Returns the finalizer and the object's root-table slot. Called by the
    /// finalizer thread outside every scope.
    pub(crate) fn take_ready_finalizer(&self) -> Option<(Finalizer, u32)> {
        let mut ready = self.finalizers.ready.lock();
        let obj = ready.front()?.obj;
        let slot = self.add_root(obj);
        Some((ready.pop_front().expect("the front entry"), slot))
    }
}

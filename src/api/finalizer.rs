//! Finalizers: `Scope::set_finalizer`, and the heap's finalizer thread that runs them.
//!
//! The collector decides when a finalizer is ready (collector/finalize.rs); this layer keeps the
//! closures (opaque to the collector) and runs each once on a thread of its own, started with the
//! first finalizer. The thread waits without holding the heap; when woken it takes each ready
//! finalizer with its object rooted and runs it *outside every scope* and unattached, handing it
//! the heap and a `Root` of the object. So a finalizer that blocks (or waits for another thread
//! that collects) delays the finalizers behind it, never a cycle; and running finalizers off the
//! allocating threads means a finalizer never observes, or deadlocks on, the state of the code
//! whose allocation ended the cycle. A panicking finalizer is contained (payload included) and
//! counted, and the thread goes on.

use super::gc::{Gc, GcObject};
use super::heap::{Heap, Shared};
use super::root::Root;
use super::scope::Scope;
use crate::collector::context;
use crate::collector::finalize::Finalizer;
use crate::collector::Collector;
use crate::object::{Header, WEAK_TABLE};
use crate::sync::{Arc, Ordering};

/// A finalizer as stored: it gets the heap, the object's payload address and its root slot.
type FinalizerFn = Box<dyn FnOnce(&Heap, usize, u32) + Send>;

/// The finalizer thread's handle, kept in [`Shared`].
#[derive(Default)]
pub(crate) struct FinalizerThread {
    handle: std::sync::OnceLock<std::thread::JoinHandle<()>>,
}

impl FinalizerThread {
    /// (Under `--cfg loom` the heap's `Arc` is loom's, which has no weak count: no thread is
    /// started and finalizers never run; no model uses them.)
    #[cfg(loom)]
    fn start(&self, _: &Arc<Shared>) {}

    #[cfg(not(loom))]
    fn start(&self, shared: &Arc<Shared>) {
        self.handle.get_or_init(|| {
            let heap = Arc::downgrade(shared);
            let signal = shared.collector.finalizers.signal.clone();
            std::thread::Builder::new()
                .name("lowpause-finalizer".into())
                .spawn(move || {
                    while signal.wait() {
                        let Some(inner) = heap.upgrade() else { return };
                        run_ready(&Heap { inner });
                    }
                })
                .expect("lowpause: could not start the finalizer thread")
        });
    }

    /// Stops the thread and joins it (unless this is the thread: it dropped the last handle).
    pub(crate) fn stop(&mut self, collector: &Collector) {
        collector.finalizers.signal.stop();
        if let Some(h) = self.handle.take() {
            if h.thread().id() != std::thread::current().id() {
                let _ = h.join();
            }
        }
    }
}

/// Runs every ready finalizer, outside every scope. Nothing a finalizer does can end the loop.
fn run_ready(heap: &Heap) {
    let c = &heap.inner.collector;
    while let Some((f, slot)) = c.take_ready_finalizer() {
        let Finalizer { obj, run } = f;
        let r = context::contain(move || match run.downcast::<FinalizerFn>() {
            Ok(run) => run(heap, obj, slot),
            Err(_) => unreachable!("lowpause: a finalizer of another type"),
        });
        if let Err(msg) = r {
            c.telemetry.finalizer_panics.fetch_add(1, Ordering::Relaxed);
            crate::telemetry::report(&format!(
                "lowpause: a finalizer panicked ({msg}); the panic was contained and the other finalizers still run"
            ));
        }
    }
}

impl<'s> Scope<'s> {
    /// Runs `finalizer` once `obj` has become unreachable, as Go's `runtime.SetFinalizer`.
    ///
    /// The object, and everything it refers to, is kept for one more cycle; then `finalizer`
    /// runs once, on the heap's finalizer thread, with the heap and a [`Root`] of the object.
    /// It runs outside every scope, on a thread that is not attached: open one with
    /// `heap.attach()` and `scope` to read the object. It may keep the object (hold on to the
    /// root, or store the object somewhere reachable: resurrection); otherwise a later cycle frees
    /// it, without running the finalizer again. Weak references to the object are cleared before
    /// the finalizer runs. Finalizers run one at a time in no particular order, and not at all if
    /// the heap is dropped first. An object reachable from what it refers to (a cycle through
    /// it) is never finalized, and a finalizer that captures a [`Root`] or a
    /// [`Heap`] of its own heap keeps that heap alive.
    ///
    /// A finalizer may block or wait for other threads: that delays only the finalizers behind
    /// it, never a collection (`collect` does not wait for finalizers). A panicking finalizer is
    /// reported on stderr, counted in [`Stats::finalizer_panics`](crate::Stats::finalizer_panics),
    /// and does not stop the others.
    ///
    /// # Panics
    /// If `obj` is a [`WeakTable`](crate::WeakTable): a table's values are kept only while the
    /// table itself is reachable, so a resurrected table could not keep them. Put the table in a
    /// field of an object and set the finalizer on that object.
    ///
    /// ```
    /// use std::sync::atomic::{AtomicUsize, Ordering};
    /// use std::sync::Arc;
    /// let heap = lowpause::Heap::builder().workers(0).build().unwrap();
    /// let mut m = heap.attach();
    /// let seen = Arc::new(AtomicUsize::new(0));
    /// m.scope(|s| {
    ///     let seen = seen.clone();
    ///     s.set_finalizer(s.alloc(42u64), move |heap, obj| {
    ///         let mut m = heap.attach(); // the finalizer thread is not attached: attach to read
    ///         let v = m.scope(|s| *obj.get(s));
    ///         seen.store(v as usize, Ordering::SeqCst);
    ///     });
    /// });
    /// while seen.load(Ordering::SeqCst) == 0 {
    ///     m.collect(); // the first cycle queues the finalizer; the thread runs it
    ///     std::thread::sleep(std::time::Duration::from_millis(1));
    /// }
    /// assert_eq!(seen.load(Ordering::SeqCst), 42);
    /// ```
    pub fn set_finalizer<T: ?Sized + GcObject>(
        &self,
        obj: Gc<'s, T>,
        finalizer: impl FnOnce(&Heap, Root<T>) + Send + 'static,
    ) {
        let payload = obj.payload().as_ptr() as usize;
        // SAFETY: `obj` is an initialised object of this scope's heap.
        if unsafe { Header::of(payload) }.info.weak_kind == WEAK_TABLE {
            panic!(
                "lowpause: Scope::set_finalizer on a WeakTable is refused: a table's values are kept \
                 only while the table itself is reachable, so a finalizer could not resurrect them; \
                 put the table in a field of an object and set the finalizer on that object"
            );
        }
        let run: FinalizerFn = Box::new(move |heap: &Heap, payload, slot| {
            // SAFETY: `payload` is the object this finalizer was registered for, a `T` of this
            // heap, and `slot` the root-table slot the collector rooted it in (taking it off the
            // ready queue); the root takes the slot over.
            let root = unsafe { Root::from_slot(&heap.inner, slot, payload) };
            finalizer(heap, root)
        });
        let shared = self.shared();
        shared.finalizer.start(shared);
        self.collector().add_finalizer(Finalizer { obj: payload, run: Box::new(run) });
    }
}

//! Finalizers: `Scope::set_finalizer`, and the heap's finalizer thread that runs them.
//!
//! The collector decides when a finalizer is ready (collector/finalize.rs); this layer keeps the
//! closures (opaque to the collector) and runs each once on a thread of its own, started with
//! the first finalizer: it waits without holding the heap, and when woken attaches, runs every
//! ready finalizer in a scope of its own, and detaches. Running finalizers off the allocating
//! threads means a finalizer never observes, or deadlocks on, the state of the code whose
//! allocation ended the cycle.

use super::gc::{Gc, GcObject};
use super::heap::{Heap, Shared};
use super::scope::Scope;
use crate::collector::finalize::Finalizer;
use crate::collector::Collector;
use crate::sync::Arc;
use std::ptr::NonNull;

/// A finalizer as stored: the object's payload address is passed back in.
type FinalizerFn = Box<dyn for<'a> FnOnce(&Scope<'a>, usize) + Send>;

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

/// Runs every ready finalizer, each in a scope of its own.
fn run_ready(heap: &Heap) {
    let mut m = heap.attach();
    loop {
        let ran = m.scope(|s| {
            let Some(f) = s.collector().take_ready_finalizer() else { return false };
            let run = f.run.downcast::<FinalizerFn>().expect("lowpause: a finalizer of another type");
            if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(s, f.obj))).is_err() {
                eprintln!("lowpause: a finalizer panicked (the panic was contained)");
            }
            true
        });
        if !ran {
            return;
        }
    }
}

impl<'s> Scope<'s> {
    /// Runs `finalizer` once `obj` has become unreachable, as Go's `runtime.SetFinalizer`.
    ///
    /// The object, and everything it refers to, is kept for one more cycle; then `finalizer`
    /// runs once, on the heap's finalizer thread inside a scope of its own, with the object as a
    /// `Gc`. It may store the object somewhere reachable again (resurrection); otherwise a later
    /// cycle frees it (without running the finalizer again). Weak references to the object are
    /// cleared before the finalizer runs. Finalizers run in no particular order, and not at all
    /// if the heap is dropped first. An object reachable from what it refers to (a cycle through
    /// it) is never finalized, and a finalizer that captures a [`Root`](crate::Root) of its own
    /// heap keeps that heap alive.
    ///
    /// A panicking finalizer is reported on stderr and does not stop the others.
    ///
    /// ```
    /// use std::sync::atomic::{AtomicUsize, Ordering};
    /// use std::sync::Arc;
    /// let heap = lowpause::Heap::builder().workers(0).build().unwrap();
    /// let mut m = heap.attach();
    /// let seen = Arc::new(AtomicUsize::new(0));
    /// m.scope(|s| {
    ///     let seen = seen.clone();
    ///     s.set_finalizer(s.alloc(42u64), move |_s, obj| {
    ///         seen.store(*obj as usize, Ordering::SeqCst);
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
        finalizer: impl for<'a> FnOnce(&Scope<'a>, Gc<'a, T>) + Send + 'static,
    ) {
        let run: FinalizerFn = Box::new(move |s, payload| {
            // SAFETY: `payload` is the object this finalizer was registered for, a `T` of this
            // heap; the collector kept it (a ready object is a root, shaded when taken), so it
            // stays allocated for this scope.
            let obj = unsafe { Gc::from_payload(NonNull::new_unchecked(payload as *mut u8)) };
            finalizer(s, obj)
        });
        let shared = self.shared();
        shared.finalizer.start(shared);
        self.collector().add_finalizer(Finalizer { obj: obj.payload().as_ptr() as usize, run: Box::new(run) });
    }
}

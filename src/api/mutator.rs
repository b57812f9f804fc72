//! `Mutator`: a thread's membership of a heap, and the entry to mutation scopes.

use super::heap::Shared;
use super::scope::Scope;
use super::session::Session;
use crate::collector::context::{self, ScopeGuard, UserCode};
use crate::collector::mutator::ThreadRecord;
use crate::collector::Collector;
use crate::sync::Arc;
use std::cell::RefCell;
use std::marker::PhantomData;

thread_local! {
    /// The heaps this thread is attached to, by the address of their collector.
    static ATTACHED: RefCell<Vec<usize>> = const { RefCell::new(Vec::new()) };
}

/// A thread attached to a [`Heap`](crate::Heap): the only way to open [scopes](Mutator::scope) in
/// which GC objects are allocated and read. Made by [`Heap::attach`](crate::Heap::attach); dropping
/// it detaches the thread.
///
/// A `Mutator` stays on its thread (`!Send`): the thread registry keeps its allocation cache. One
/// per heap per thread. A `Mutator` leaked with `mem::forget` counts as a thread permanently
/// outside every scope: it delays nothing.
///
/// ```
/// let heap = lowpause::Heap::new();
/// let mut m = heap.attach();
/// let sum: u64 = m.scope(|s| *s.alloc(20u64) + *s.alloc(22u64));
/// assert_eq!(sum, 42);
/// ```
pub struct Mutator {
    shared: Arc<Shared>,
    rec: Arc<ThreadRecord>,
    _not_send: PhantomData<*mut ()>,
}

impl Mutator {
    pub(crate) fn new(shared: Arc<Shared>) -> Mutator {
        if let Some(code) = context::user_code() {
            refused("Heap::attach", code);
        }
        let key = Arc::as_ptr(&shared) as usize;
        let fresh = ATTACHED.try_with(|a| {
            let mut a = a.borrow_mut();
            let fresh = !a.contains(&key);
            if fresh {
                a.push(key);
            }
            fresh
        });
        match fresh {
            Ok(true) => {}
            Ok(false) => panic!(
                "lowpause: Heap::attach called on a thread that already has a Mutator for this \
                 heap; there is one Mutator per heap per thread: keep the first one and pass \
                 `&mut Mutator` where it is needed"
            ),
            Err(_) => panic!(
                "lowpause: Heap::attach called while this thread's thread-locals are being \
                 destroyed (from a thread-local's destructor); attach from a thread that is running"
            ),
        }
        let rec = shared.collector.attach();
        Mutator { shared, rec, _not_send: PhantomData }
    }

    /// Runs `f` in a mutation scope, where GC objects can be allocated and read.
    ///
    /// The closure gets a [`Scope`] whose lifetime `'s` brands every [`Gc`](crate::Gc) made in
    /// it, so no `Gc` can leave the closure; keep objects beyond the scope with a
    /// [`Root`](crate::Root), or by linking them from a rooted object. The collector never frees
    /// an object a scope can still reach, and it never interrupts a scope: a cycle waits for every
    /// thread's next scope boundary (so keep scopes short in long-running loops, and open a fresh
    /// scope per batch of work).
    ///
    /// Scope boundaries are safepoints: here the thread answers the collector's requests, and
    /// here, in synchronous mode (`workers(0)`), it does the cycle's work. No other thread ever
    /// waits for a scope, but the cycle does: while one thread stays inside a scope, no cycle
    /// can finish, so nothing is freed for anyone and the heap grows. Keep scopes short, or run
    /// long work in a [`session`](Mutator::session), which answers at every inner scope.
    ///
    /// # Panics
    /// If called from the drop glue of a GC object, from a `Trace` impl, or on one of the
    /// collector's threads. A panic inside `f` leaves the scope cleanly.
    ///
    /// ```
    /// use lowpause::{Heap, Member, Trace};
    /// #[derive(Trace)]
    /// struct Cell { v: u64, next: Member<Cell> }
    ///
    /// let heap = Heap::new();
    /// let mut m = heap.attach();
    /// let root = m.scope(|s| s.root(s.alloc(Cell { v: 1, next: Member::null() })));
    /// for i in 0..3 {
    ///     m.scope(|s| {
    ///         let head = root.get(s);
    ///         let new = s.alloc(Cell { v: i, next: Member::null() });
    ///         new.next.set(s, head.next.get(s));
    ///         head.next.set(s, Some(new));
    ///     });
    /// }
    /// ```
    pub fn scope<R>(&mut self, f: impl for<'s> FnOnce(&Scope<'s>) -> R) -> R {
        let exit = self.enter_scope("Mutator::scope");
        let r = f(&Scope::new(&self.shared, &self.rec));
        drop(exit);
        r
    }

    /// Runs `f` in one long scope, a [`Session`], in which the thread opens inner scopes with
    /// [`Session::scope`] and answers the collector at [`Session::safepoint`]s (every inner
    /// scope's entry is one). Entering an inner scope costs a poll of one flag, not a scope
    /// entry; the borrow checker proves that no `Gc` is alive at a safepoint (it needs `&mut`
    /// access to the session, which every inner scope holds while it runs).
    ///
    /// This is how an interpreter runs a whole script in one scope without holding up the heap:
    /// it keeps its values in a [`LocalStack`](crate::LocalStack) (which the thread's own
    /// snapshot answer scans) and calls an inner scope per few thousand instructions. A cycle
    /// that has to wait on a thread inside a session waits at most until its next safepoint;
    /// the wait is reported ([`Metrics::scope_wait`](crate::Metrics::scope_wait), and in the
    /// trace line).
    ///
    /// # Panics
    /// As [`scope`](Mutator::scope).
    ///
    /// ```
    /// use lowpause::{Heap, LocalStack, ValueRef};
    /// let heap = Heap::new();
    /// let mut m = heap.attach();
    /// let mut stack = LocalStack::<String>::new(&m);
    /// let total = m.session(|sess| {
    ///     let mut total = 0;
    ///     for i in 0..100 {
    ///         // Each inner scope is a safepoint: a cycle may advance between two of them.
    ///         total += sess.scope(|s| {
    ///             stack.push(s, ValueRef::Object(s.alloc(format!("item {i}"))));
    ///             match stack.peek(s, 0) {
    ///                 ValueRef::Object(text) => text.len(),
    ///                 _ => unreachable!(),
    ///             }
    ///         });
    ///     }
    ///     total
    /// });
    /// assert_eq!(total, 10 * 6 + 90 * 7);
    /// assert_eq!(stack.len(), 100);
    /// ```
    pub fn session<R>(&mut self, f: impl for<'m> FnOnce(&mut Session<'m>) -> R) -> R {
        let exit = self.enter_scope("Mutator::session");
        let r = f(&mut Session::new(&self.shared, &self.rec));
        drop(exit);
        r
    }

    /// Enters a scope for `op`; the guard leaves it on every exit path, unwinding included.
    fn enter_scope(&self, op: &'static str) -> Exit<'_> {
        if let Some(code) = context::user_code() {
            refused(op, code);
        }
        let collector = &*self.shared.collector;
        collector.check_failure();
        collector.enter(&self.rec);
        Exit(collector, &self.rec, Some(ScopeGuard::enter()))
    }

    /// Runs a full collection: a whole cycle that starts after this call, marking everything
    /// reachable from roots and sweeping the whole heap (running the drop glue of dead objects),
    /// before returning.
    ///
    /// It waits for every other attached thread to reach its next scope boundary (threads outside
    /// every scope do not delay it), and it cannot be called inside a scope of this heap (`scope`
    /// borrows the `Mutator`). When it returns, the drop glue of the objects found dead by the
    /// cycles not over at the call (its own included) has run, on this thread or on a drop thread
    /// it then waits for. What cycles over before the call found is left to the heap's drop
    /// threads (one of those destructors may be blocked, even waiting for this very thread). Finalizers run later on their own thread, and `collect` does
    /// not wait for them.
    ///
    /// # Panics
    /// If verification mode found a collector bug; if called inside a scope of any heap (a
    /// thread waiting here could not answer its own heap's cycle: two threads doing this to each
    /// other's heaps would hang); and if called from drop glue or a `Trace` impl.
    ///
    /// ```
    /// let heap = lowpause::Heap::new();
    /// let mut m = heap.attach();
    /// m.scope(|s| { s.alloc(String::from("garbage")); });
    /// m.collect();
    /// assert_eq!(heap.stats().freed_objects, 1);
    /// ```
    pub fn collect(&mut self) {
        check_may_wait("Mutator::collect");
        self.shared.collector.collect();
    }

    /// Runs a full collection that counts what it marks by type, and returns the heap profile:
    /// live objects and bytes per type (what the cycle found reachable at its start) and the
    /// allocations since the heap was created (sampled; see
    /// [`HeapBuilder::profile_rate`](crate::HeapBuilder::profile_rate)). It costs what
    /// [`collect`](Mutator::collect) costs, plus a header read per marked object.
    ///
    /// ```
    /// use lowpause::{Heap, Member};
    /// let heap = Heap::new();
    /// let mut m = heap.attach();
    /// let list = m.scope(|s| s.root(s.alloc_slice(10, |_| Member::<Vec<u8>>::null())));
    /// m.scope(|s| for slot in list.get(s).iter() { slot.set(s, Some(s.alloc(vec![0u8; 64]))) });
    /// let profile = m.heap_profile();
    /// let vecs = profile.types.iter().find(|t| t.name == "alloc::vec::Vec<u8>").unwrap();
    /// assert_eq!(vecs.live_objects, 10);
    /// print!("{profile}");
    /// ```
    ///
    /// # Panics
    /// As [`collect`](Mutator::collect).
    pub fn heap_profile(&mut self) -> crate::HeapProfile {
        check_may_wait("Mutator::heap_profile");
        self.shared.collector.heap_profile()
    }

    /// This mutator's thread record (local stacks belong to it).
    pub(crate) fn record(&self) -> &Arc<ThreadRecord> {
        &self.rec
    }

    /// The heap this mutator belongs to.
    ///
    /// ```
    /// let heap = lowpause::Heap::new();
    /// let m = heap.attach();
    /// assert_eq!(m.heap().stats().threads, 1);
    /// ```
    pub fn heap(&self) -> crate::Heap {
        crate::Heap { inner: self.shared.clone() }
    }
}

/// Leaves a scope when dropped (see [`Mutator::enter_scope`]).
struct Exit<'a>(&'a Collector, &'a ThreadRecord, Option<ScopeGuard>);

impl Drop for Exit<'_> {
    fn drop(&mut self) {
        // The thread is outside this scope from here (it may run drop glue below).
        self.2.take();
        // SAFETY: constructed right after `enter` on this thread's own record, and dropped
        // exactly once at the end of the scope.
        unsafe { self.0.exit(self.1) };
    }
}

/// Panics unless the calling thread may wait for a whole cycle: outside every scope of every
/// heap, and not running code for a collector.
fn check_may_wait(op: &str) {
    if let Some(code) = context::user_code() {
        refused(op, code);
    }
    let open = context::scopes_open();
    if open > 0 {
        panic!(
            "lowpause: {op} called inside a scope ({open} open on this thread, of another heap: this \
             heap's own scope borrows the Mutator). A collection waits for every thread of its heap \
             to reach a scope boundary, and while this thread waits it cannot reach one of its \
             own: two threads doing this to each other's heaps never return. Call it outside every \
             scope"
        );
    }
}

/// The panic for a heap entry point called from user code the collector runs.
#[cold]
#[inline(never)]
pub(crate) fn refused(op: &str, code: UserCode) -> ! {
    let why = match code {
        UserCode::DropGlue => {
            "destructors of heap objects run outside every scope and may not use a heap: do that \
             work before the object dies, or hand it to another thread (waiting for it is fine)"
        }
        UserCode::Trace => {
            "a Trace impl runs inside the collector (on its threads, or in another thread's \
             allocation) and may only visit the references it holds"
        }
        UserCode::CollectorThread => "the collector's threads never use a heap",
    };
    panic!("lowpause: {op} called from {}; {why}", code.describe())
}

impl Drop for Mutator {
    fn drop(&mut self) {
        self.shared.collector.detach(&self.rec);
        let key = Arc::as_ptr(&self.shared) as usize;
        // The thread-local may already be gone if this runs in a thread-local destructor.
        let _ = ATTACHED.try_with(|a| a.borrow_mut().retain(|&k| k != key));
    }
}

impl std::fmt::Debug for Mutator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mutator").field("thread", &self.rec.name).finish_non_exhaustive()
    }
}

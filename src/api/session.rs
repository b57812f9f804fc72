//! `Session<'m>`: one long scope with safepoints inside it.
//!
//! A session is a scope of its mutator that stays open for as long as its closure runs; inside
//! it the thread opens *inner scopes* ([`Session::scope`]), each with a fresh brand, and between
//! two of them it is at a safepoint: it holds no `Gc` (none can leave an inner scope) and so can
//! answer every request of the collector, the snapshot included, exactly as at a scope
//! boundary. What makes this cheap is that the thread never leaves its scope: an inner scope's
//! entry is a poll (the posted request token against the thread's last answer, two loads and a
//! compare), and only a pending request takes the out-of-line path.
//!
//! Soundness rests on two facts the type system gives:
//! - [`Session::safepoint`] and [`Session::scope`] take `&mut self`, and an inner scope's closure
//!   runs while that borrow is held, so no safepoint can run inside an inner scope, and no `Gc`
//!   (branded by the inner scope) exists at one;
//! - a session's own brand `'m` is fresh and invariant per [`Mutator::session`] call, so two
//!   sessions cannot be swapped with `mem::swap` (which would leave one heap's session in the hands
//!   of code that outlives it).

use super::heap::Shared;
use super::scope::Scope;
use crate::collector::mutator::ThreadRecord;
use crate::sync::Arc;
use std::marker::PhantomData;

/// One long scope of a [`Mutator`](crate::Mutator), made by
/// [`Mutator::session`](crate::Mutator::session): inner scopes are opened with
/// [`scope`](Session::scope) and the collector is answered at every
/// [`safepoint`](Session::safepoint) between them.
///
/// A `Gc` cannot live across a safepoint: the borrow checker rejects it.
///
/// ```compile_fail
/// let heap = lowpause::Heap::new();
/// let mut m = heap.attach();
/// m.session(|sess| {
///     sess.scope(|s| {
///         let x = s.alloc(1u64);
///         sess.safepoint(); // error: `sess` is already borrowed by `scope`
///         *x
///     })
/// });
/// ```
pub struct Session<'m> {
    shared: &'m Arc<Shared>,
    rec: &'m ThreadRecord,
    /// Invariant in `'m` (a fresh brand per session), and neither `Send` nor `Sync`.
    _brand: PhantomData<*mut &'m ()>,
}

impl<'m> Session<'m> {
    pub(crate) fn new(shared: &'m Arc<Shared>, rec: &'m ThreadRecord) -> Session<'m> {
        Session { shared, rec, _brand: PhantomData }
    }

    /// Runs `f` in an inner scope, after a [`safepoint`](Session::safepoint). The `Scope` is
    /// like one of [`Mutator::scope`](crate::Mutator::scope), with its own fresh brand; opening
    /// it costs the safepoint's poll.
    ///
    /// ```
    /// let heap = lowpause::Heap::new();
    /// let mut m = heap.attach();
    /// let keep = m.session(|sess| {
    ///     let a = sess.scope(|s| s.root(s.alloc(40u64)));
    ///     sess.scope(|s| *a.get(s) + *s.alloc(2u64))
    /// });
    /// assert_eq!(keep, 42);
    /// ```
    #[inline]
    pub fn scope<R>(&mut self, f: impl for<'s> FnOnce(&Scope<'s>) -> R) -> R {
        self.safepoint();
        f(&Scope::new(self.shared, self.rec))
    }

    /// Answers the collector if it is waiting for this thread. The poll is a load of the posted
    /// request and one of the thread's own state word; a pending request (a few per cycle) is
    /// answered out of line: the thread shades what its local stacks hold if the request is the
    /// snapshot, and in synchronous mode (`workers(0)`) it advances the cycle a bounded step.
    ///
    /// Call it every few thousand steps of a long computation that does not otherwise open an
    /// inner scope.
    ///
    /// ```
    /// let heap = lowpause::Heap::new();
    /// let mut m = heap.attach();
    /// m.session(|sess| {
    ///     let mut x = 0u64;
    ///     for i in 0..1_000_000u64 {
    ///         x = x.wrapping_mul(31).wrapping_add(i);
    ///         if i % 4096 == 0 {
    ///             sess.safepoint();
    ///         }
    ///     }
    ///     x
    /// });
    /// ```
    #[inline]
    pub fn safepoint(&mut self) {
        let c = &self.shared.collector;
        if c.request_pending(self.rec) {
            // SAFETY: our own record, inside the session's scope; `&mut self` proves no inner
            // scope is running, so the thread holds no `Gc` of this heap.
            unsafe { c.safepoint(self.rec) };
        }
    }

    /// The heap this session belongs to.
    ///
    /// ```
    /// let heap = lowpause::Heap::new();
    /// let mut m = heap.attach();
    /// m.session(|sess| assert_eq!(sess.heap().stats().threads, 1));
    /// ```
    pub fn heap(&self) -> crate::Heap {
        crate::Heap { inner: self.shared.clone() }
    }
}

impl std::fmt::Debug for Session<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session").field("thread", &self.rec.name).finish_non_exhaustive()
    }
}

//! `Member<T>`: the reference field of a heap object.

use super::gc::{Gc, GcObject};
use super::scope::Scope;
use crate::collector::Tracer;
use crate::sync::{AtomicPtr, Ordering};
use crate::Trace;
use std::fmt;
use std::marker::PhantomData;
use std::ptr::NonNull;

/// A nullable reference from one GC object to another: one atomic word.
///
/// A `Member` starts null ([`Member::null`]); it is pointed at an object with
/// [`set`](Member::set), which runs the write barrier, and read with [`get`](Member::get). There is
/// no way to make a non-null `Member` outside the heap, and `Member` is not `Clone`: references are
/// set after allocation, in place.
///
/// Both `get` and `set` check that the `Member` lies inside the scope's heap (one subtract and one
/// compare) and panic if not: a `Member` on the stack, or inside another heap's object, cannot be
/// used.
///
/// ```
/// use lowpause::{Heap, Member, Trace};
/// #[derive(Trace)]
/// struct Pair { left: Member<Pair>, right: Member<Pair> }
///
/// let heap = Heap::new();
/// let mut m = heap.attach();
/// m.scope(|s| {
///     let p = s.alloc(Pair { left: Member::null(), right: Member::null() });
///     assert!(p.left.get(s).is_none());
///     p.left.set(s, Some(p)); // a self-cycle
///     assert!(lowpause::Gc::ptr_eq(p.left.get(s).unwrap(), p));
///     p.left.set(s, None);
/// });
/// ```
#[repr(transparent)]
pub struct Member<T: ?Sized> {
    ptr: AtomicPtr<u8>,
    _target: PhantomData<fn() -> *const T>,
}

impl<T: ?Sized> Member<T> {
    /// A null reference, the only way to make a `Member`.
    ///
    /// ```
    /// let m: lowpause::Member<u64> = lowpause::Member::null();
    /// # drop(m);
    /// ```
    #[inline]
    pub fn null() -> Member<T> {
        Member { ptr: AtomicPtr::new(std::ptr::null_mut()), _target: PhantomData }
    }
}

impl<T: ?Sized> Default for Member<T> {
    fn default() -> Self {
        Member::null()
    }
}

/// Panics unless the slot at `addr` (a `kind`: `Member`, `Value`) lies inside the scope's heap.
#[inline(always)]
pub(crate) fn check_in_heap(s: &Scope<'_>, addr: usize, kind: &'static str, op: &'static str) {
    if !s.in_heap(addr) {
        off_heap(addr, kind, op);
    }
}

impl<T: ?Sized + GcObject> Member<T> {
    #[inline(always)]
    fn check(&self, s: &Scope<'_>, op: &'static str) {
        check_in_heap(s, self as *const Self as usize, "Member", op);
    }

    /// The referenced object, or `None` if the member is null.
    ///
    /// # Panics
    /// If this `Member` does not lie inside an object of the scope's heap.
    ///
    /// ```
    /// use lowpause::{Heap, Member, Trace};
    /// #[derive(Trace)]
    /// struct Link { to: Member<u64> }
    /// let heap = Heap::new();
    /// let mut m = heap.attach();
    /// m.scope(|s| {
    ///     let l = s.alloc(Link { to: Member::null() });
    ///     assert!(l.to.get(s).is_none());
    ///     l.to.set(s, Some(s.alloc(3)));
    ///     assert_eq!(*l.to.get(s).unwrap(), 3);
    /// });
    /// ```
    #[inline]
    pub fn get<'s>(&self, s: &Scope<'s>) -> Option<Gc<'s, T>> {
        self.check(s, "get");
        // SAFETY: the member lies in the scope's heap (checked above).
        let r = unsafe { self.get_unchecked() };
        debug_assert!(
            r.is_none_or(|g| s.in_heap(g.payload().as_ptr() as usize - crate::object::HEADER_SIZE)),
            "a Member held a foreign reference"
        );
        r
    }

    /// [`Member::get`] without the heap-range check.
    ///
    /// # Safety
    /// The member lies inside an object of the heap whose scope `'s` is.
    #[inline(always)]
    pub(crate) unsafe fn get_unchecked<'s>(&self) -> Option<Gc<'s, T>> {
        // SAFETY: a non-null member of an object of this heap (the caller's guarantee) points to
        // an initialised object of type `T` of the same heap (only `set` writes it, from a
        // `Gc<'s, T>` of this scope's heap), and an object reachable in a scope stays allocated
        // until the scope ends.
        NonNull::new(self.ptr.load(Ordering::Acquire)).map(|p| unsafe { Gc::from_payload(p) })
    }

    /// Points the member at `target` (or nulls it), through the write barrier.
    ///
    /// # Panics
    /// If this `Member` does not lie inside an object of the scope's heap (for example a
    /// `Member::null()` on the stack):
    ///
    /// ```should_panic
    /// let heap = lowpause::Heap::new();
    /// let mut m = heap.attach();
    /// let on_stack = lowpause::Member::<u64>::null();
    /// m.scope(|s| on_stack.set(s, Some(s.alloc(1)))); // panics: not inside the heap
    /// ```
    #[inline]
    pub fn set<'s>(&self, s: &Scope<'s>, target: Option<Gc<'s, T>>) {
        self.check(s, "set");
        let new = target.map_or(std::ptr::null_mut(), |g| g.payload().as_ptr());
        let c = s.collector();
        if c.barrier_on() {
            // SAFETY: `s` is the calling thread's scope, so its record is the thread's own and the
            // thread is inside a scope; the member lies in this heap (checked above) and `new` is
            // null or an object of this heap (a `Gc` of this scope).
            unsafe { c.barriered_store(s.record(), &self.ptr, new) };
        } else {
            self.ptr.store(new, Ordering::Release);
        }
    }

    /// Whether the member is null (no scope needed: the answer may change at once if another
    /// thread sets it).
    ///
    /// ```
    /// assert!(lowpause::Member::<u64>::null().is_null());
    /// ```
    #[inline]
    pub fn is_null(&self) -> bool {
        self.ptr.load(Ordering::Relaxed).is_null()
    }
}

#[cold]
#[inline(never)]
fn off_heap(addr: usize, kind: &str, op: &str) -> ! {
    panic!(
        "lowpause: {kind}::{op} on a {kind} at {addr:#x}, which is not inside this scope's heap. \
         A {kind} works only inside an object allocated in the heap whose scope is passed: not on \
         the stack, not in a Box, and not through another heap's scope"
    )
}

// SAFETY: the member's only GC reference is its own word, which it hands to the tracer.
unsafe impl<T: ?Sized + GcObject> Trace for Member<T> {
    const NEEDS_TRACE: bool = true;
    #[inline(always)]
    fn trace(&self, tracer: &mut Tracer<'_>) {
        // SAFETY: the member lies in a heap object being traced (a `Member` is used only as a
        // field of one: every use checks it), and holds null or an object of that heap (only
        // `set` writes it, from a `Gc` of the member's own heap).
        unsafe { tracer.edge(&self.ptr) };
    }
}

impl<T: ?Sized> fmt::Debug for Member<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Member({:p})", self.ptr.load(Ordering::Relaxed))
    }
}

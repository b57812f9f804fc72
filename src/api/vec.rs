//! `GcVec<E>`: a growable vector of reference slots (`Member`s or `Value`s) whose backing store is
//! a GC array.
//!
//! The vector is a field of a heap object: a `Member` to its backing array and a length. Growing
//! allocates a larger array, copies the slots through the barrier and points the member at it;
//! the old array becomes garbage. Marking traces the backing array like any other (every slot of
//! it, including those past the length, which are kept empty), so a marker scanning the vector
//! while another thread pushes sees either array, both complete. Mutations take a small lock, so
//! concurrent pushes never lose an element; reads take none.

use super::gc::{Gc, GcObject};
use super::member::{check_in_heap, Member};
use super::scope::Scope;
use super::value::{Value, ValueRef};
use crate::collector::Tracer;
use crate::sync::{AtomicUsize, Ordering};
use crate::Trace;
use std::fmt;

mod sealed {
    pub trait Sealed {}
}

/// A reference slot a [`GcVec`] can hold: [`Member<T>`] (elements `Option<Gc<T>>`) or
/// [`Value<T>`] (elements [`ValueRef<T>`]). Implemented by the crate only.
pub trait Slot: sealed::Sealed + Trace + Send + Sync + 'static {
    /// What a scope reads from and writes to the slot.
    type Ref<'s>: Copy;
    /// An empty slot.
    fn empty() -> Self;
    /// Reads the slot (which lies in the scope's heap).
    fn load<'s>(&self, s: &Scope<'s>) -> Self::Ref<'s>;
    /// Writes the slot through the barrier.
    fn store<'s>(&self, s: &Scope<'s>, v: Self::Ref<'s>);
    /// The empty slot's value.
    fn empty_ref<'s>() -> Self::Ref<'s>;
    /// Reads the slot without checking that it lies in the scope's heap.
    ///
    /// # Safety
    /// The slot lies inside an object of the heap whose scope `'s` is.
    #[doc(hidden)]
    unsafe fn load_unchecked<'s>(&self) -> Self::Ref<'s>;
}

impl<T: ?Sized + GcObject> sealed::Sealed for Member<T> {}
impl<T: ?Sized + GcObject> Slot for Member<T> {
    type Ref<'s> = Option<Gc<'s, T>>;
    fn empty() -> Self {
        Member::null()
    }
    #[inline]
    fn load<'s>(&self, s: &Scope<'s>) -> Self::Ref<'s> {
        self.get(s)
    }
    #[inline]
    fn store<'s>(&self, s: &Scope<'s>, v: Self::Ref<'s>) {
        self.set(s, v)
    }
    fn empty_ref<'s>() -> Self::Ref<'s> {
        None
    }
    #[inline(always)]
    unsafe fn load_unchecked<'s>(&self) -> Self::Ref<'s> {
        // SAFETY: forwarded.
        unsafe { self.get_unchecked() }
    }
}

impl<T: ?Sized + GcObject> sealed::Sealed for Value<T> {}
impl<T: ?Sized + GcObject> Slot for Value<T> {
    type Ref<'s> = ValueRef<'s, T>;
    fn empty() -> Self {
        Value::nil()
    }
    #[inline]
    fn load<'s>(&self, s: &Scope<'s>) -> Self::Ref<'s> {
        self.get(s)
    }
    #[inline]
    fn store<'s>(&self, s: &Scope<'s>, v: Self::Ref<'s>) {
        self.set(s, v)
    }
    fn empty_ref<'s>() -> Self::Ref<'s> {
        ValueRef::Nil
    }
    #[inline(always)]
    unsafe fn load_unchecked<'s>(&self) -> Self::Ref<'s> {
        // SAFETY: forwarded.
        unsafe { self.get_unchecked() }
    }
}

/// A growable vector of [`Member`]s or [`Value`]s, as a field of a heap object; its backing
/// store is a GC array.
///
/// Reads (`get`, `len`) take no lock; `push`, `pop`, `set` and `truncate` take the vector's own
/// small lock, so threads may push concurrently without losing elements. Like a `Member`, every
/// method that touches elements checks that the vector lies in the scope's heap.
///
/// ```
/// use lowpause::{GcVec, Heap, Member, Trace};
/// #[derive(Trace)]
/// struct List { items: GcVec<Member<String>> }
///
/// let heap = Heap::new();
/// let mut m = heap.attach();
/// m.scope(|s| {
///     let l = s.alloc(List { items: GcVec::new() });
///     for w in ["a", "b", "c"] {
///         l.items.push(s, Some(s.alloc(w.to_string())));
///     }
///     assert_eq!(l.items.len(), 3);
///     assert_eq!(l.items.get(s, 1).flatten().unwrap().as_str(), "b");
///     assert_eq!(l.items.pop(s).flatten().unwrap().as_str(), "c");
///     l.items.set(s, 0, None);
///     l.items.truncate(s, 1);
///     assert_eq!(l.items.len(), 1);
/// });
/// ```
pub struct GcVec<E: Slot> {
    buf: Member<[E]>,
    len: AtomicUsize,
    lock: parking_lot::Mutex<()>,
}

impl<E: Slot> GcVec<E> {
    /// An empty vector (no backing array until the first push).
    pub fn new() -> GcVec<E> {
        GcVec { buf: Member::null(), len: AtomicUsize::new(0), lock: parking_lot::Mutex::new(()) }
    }

    /// Panics unless the vector lies in the scope's heap, naming the operation.
    #[inline(always)]
    fn check(&self, s: &Scope<'_>, op: &'static str) {
        check_in_heap(s, self as *const Self as usize, "GcVec", op);
    }

    /// Elements in the vector.
    #[inline]
    pub fn len(&self) -> usize {
        self.len.load(Ordering::Acquire)
    }

    /// Whether the vector has no elements.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Element `i`, or `None` past the end.
    ///
    /// # Panics
    /// If the vector does not lie inside an object of the scope's heap.
    #[inline]
    pub fn get<'s>(&self, s: &Scope<'s>, i: usize) -> Option<E::Ref<'s>> {
        self.check(s, "get");
        // The length first: the array it was stored with (or a later one) holds element `i`.
        if i >= self.len() {
            return None;
        }
        Some(Gc::as_scoped(self.buf.get(s)?).get(i)?.load(s))
    }

    /// Appends `v`, growing the backing array (doubling it) when full.
    ///
    /// # Panics
    /// If the vector does not lie inside an object of the scope's heap.
    pub fn push<'s>(&self, s: &Scope<'s>, v: E::Ref<'s>) {
        self.check(s, "push");
        let _g = self.lock.lock();
        let len = self.len.load(Ordering::Relaxed);
        let buf = match self.buf.get(s) {
            Some(b) if b.len() > len => b,
            old => {
                let cap = old.map_or(0, |b| b.len());
                let new = s.alloc_slice((cap * 2).max(4), |_| E::empty());
                if let Some(old) = old {
                    for (n, o) in new.iter().zip(old.iter()).take(len) {
                        n.store(s, o.load(s));
                    }
                }
                self.buf.set(s, Some(new));
                new
            }
        };
        buf[len].store(s, v);
        self.len.store(len + 1, Ordering::Release);
    }

    /// Removes and returns the last element.
    ///
    /// # Panics
    /// If the vector does not lie inside an object of the scope's heap.
    pub fn pop<'s>(&self, s: &Scope<'s>) -> Option<E::Ref<'s>> {
        self.check(s, "pop");
        let _g = self.lock.lock();
        let len = self.len.load(Ordering::Relaxed);
        let buf = Gc::as_scoped(self.buf.get(s)?);
        if len == 0 {
            return None;
        }
        let v = buf[len - 1].load(s);
        self.len.store(len - 1, Ordering::Release);
        buf[len - 1].store(s, E::empty_ref());
        Some(v)
    }

    /// Replaces element `i`.
    ///
    /// # Panics
    /// If `i` is out of bounds, or the vector does not lie inside an object of the scope's heap.
    pub fn set<'s>(&self, s: &Scope<'s>, i: usize, v: E::Ref<'s>) {
        self.check(s, "set");
        let _g = self.lock.lock();
        let len = self.len.load(Ordering::Relaxed);
        match self.buf.get(s) {
            Some(buf) if i < len => buf[i].store(s, v),
            _ => panic!("lowpause: GcVec::set index {i} out of bounds (length {len})"),
        }
    }

    /// Shortens the vector to `n` elements (no effect if it is not longer), emptying the slots
    /// past the end so their objects can be freed. The backing array is kept.
    ///
    /// # Panics
    /// If the vector does not lie inside an object of the scope's heap.
    pub fn truncate<'s>(&self, s: &Scope<'s>, n: usize) {
        self.check(s, "truncate");
        let _g = self.lock.lock();
        let len = self.len.load(Ordering::Relaxed);
        let Some(buf) = self.buf.get(s) else { return };
        if n >= len {
            return;
        }
        self.len.store(n, Ordering::Release);
        for e in &buf[n..len] {
            e.store(s, E::empty_ref());
        }
    }
}

impl<E: Slot> Default for GcVec<E> {
    fn default() -> Self {
        GcVec::new()
    }
}

// SAFETY: the vector's only GC reference is its backing array's member, handed to the tracer; the
// array traces its own slots.
unsafe impl<E: Slot> Trace for GcVec<E> {
    const NEEDS_TRACE: bool = true;
    fn trace(&self, tracer: &mut Tracer<'_>) {
        self.buf.trace(tracer);
    }
}

impl<E: Slot> fmt::Debug for GcVec<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "GcVec(len {})", self.len())
    }
}

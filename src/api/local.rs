//! `LocalStack<T>`: local roots, a growable stack of value slots owned by one mutator.
//!
//! Its slots live outside the heap, in a buffer listed in the thread's record
//! (collector/locals.rs): reads and writes are plain loads and stores, with no barrier and no
//! heap-range check, and the collector scans the buffer once per cycle, when the thread's
//! snapshot request is answered (by the thread at a scope boundary or safepoint, or by the
//! collector for a thread outside its scope). Every access takes a [`Scope`] of the mutator
//! that made the stack, checked by one pointer compare, so the slots are only touched by their
//! owner while it is inside a scope: the condition under which skipping the barrier is sound
//! (docs/design.md, "Local roots").

use super::gc::GcObject;
use super::mutator::Mutator;
use super::scope::Scope;
use super::value::{read_word, write_word, ValueRef};
use crate::collector::locals::LocalBuf;
use crate::collector::mutator::ThreadRecord;
use crate::sync::{Arc, Ordering};
use std::fmt;
use std::marker::PhantomData;

/// A stack of value slots that belongs to one [`Mutator`]: the thread's local roots. Everything
/// it holds stays alive, across scopes, until it is popped, overwritten or truncated away.
///
/// Made for an interpreter's value stack: [`push`](LocalStack::push),
/// [`pop`](LocalStack::pop), [`peek`](LocalStack::peek) and [`poke`](LocalStack::poke) by depth
/// from the top, [`get`](LocalStack::get) and [`set`](LocalStack::set) by index from the
/// bottom (a call frame's base plus a slot), and [`truncate`](LocalStack::truncate). Each costs
/// what the same operation costs on a `Vec`, plus one compare that the scope is the owner's.
///
/// A `LocalStack` is neither `Send` nor `Sync`: it stays with its mutator's thread.
///
/// # Panics
/// Every method that takes a scope panics if the scope is not one of the mutator that made the
/// stack (another thread's, or another heap's), and every indexed access panics if the slot is
/// not below [`len`](LocalStack::len). The stack is unchanged after such a panic.
///
/// ```
/// use lowpause::{Heap, LocalStack, ValueRef};
/// let heap = Heap::new();
/// let mut m = heap.attach();
/// let mut stack = LocalStack::<String>::new(&m);
/// m.scope(|s| {
///     stack.push(s, ValueRef::Object(s.alloc("kept".to_string())));
///     stack.push(s, ValueRef::Number(2.0));
/// });
/// m.collect(); // the string survives: the stack is a root
/// m.scope(|s| {
///     assert_eq!(stack.pop(s), ValueRef::Number(2.0));
///     assert!(matches!(stack.peek(s, 0), ValueRef::Object(t) if *t == "kept"));
/// });
/// ```
pub struct LocalStack<T: ?Sized> {
    buf: Arc<LocalBuf>,
    rec: Arc<ThreadRecord>,
    /// Neither `Send` nor `Sync`.
    _owner: PhantomData<*mut T>,
}

/// The panic for a stack used through another mutator's scope.
#[cold]
#[inline(never)]
fn not_owner(op: &str) -> ! {
    panic!(
        "lowpause: LocalStack::{op} through a scope that is not of the Mutator that made the stack \
         (another heap's, or a Mutator attached again); a LocalStack is one thread's roots on one \
         heap: use it only inside that Mutator's scopes"
    )
}

/// The panic for a slot index out of range.
#[cold]
#[inline(never)]
fn out_of_range(op: &str, what: &str, at: usize, len: usize) -> ! {
    panic!(
        "lowpause: LocalStack::{op} at {what} {at}, but the stack holds {len} slots; push the slot \
         first, or index below `len()`"
    )
}

impl<T: ?Sized + GcObject> LocalStack<T> {
    /// An empty stack of `m`'s thread.
    ///
    /// ```
    /// let heap = lowpause::Heap::new();
    /// let m = heap.attach();
    /// let stack = lowpause::LocalStack::<u64>::new(&m);
    /// assert!(stack.is_empty());
    /// ```
    pub fn new(m: &Mutator) -> LocalStack<T> {
        LocalStack::with_capacity(m, 0)
    }

    /// An empty stack of `m`'s thread with room for `capacity` slots before it grows.
    ///
    /// ```
    /// let heap = lowpause::Heap::new();
    /// let m = heap.attach();
    /// let stack = lowpause::LocalStack::<u64>::with_capacity(&m, 256);
    /// assert_eq!(stack.len(), 0);
    /// ```
    pub fn with_capacity(m: &Mutator, capacity: usize) -> LocalStack<T> {
        let buf = Arc::new(LocalBuf::new(capacity, super::value::decode));
        let rec = m.record().clone();
        rec.locals.add(buf.clone());
        LocalStack { buf, rec, _owner: PhantomData }
    }

    /// Panics unless `s` is a scope of the stack's own mutator.
    #[inline(always)]
    fn check(&self, s: &Scope<'_>, op: &'static str) {
        if !std::ptr::eq(s.record(), Arc::as_ptr(&self.rec)) {
            not_owner(op);
        }
    }

    /// The slots, while the owner is inside a scope (`check` passed).
    #[inline(always)]
    fn words(&self) -> &[crate::sync::AtomicPtr<u8>] {
        // SAFETY: only called after `check`: the thread is inside a scope of the record the
        // buffer is listed in, so it owns the record, and only `&mut self` methods replace
        // the array (not while this borrow of `self` lives).
        unsafe { self.buf.words() }
    }

    /// Slots in use.
    #[inline]
    pub fn len(&self) -> usize {
        self.buf.len.load(Ordering::Relaxed)
    }

    /// Whether no slot is in use.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Reads the word of slot `i` (below `len`, checked by the caller).
    #[inline(always)]
    fn read<'s>(&self, i: usize) -> ValueRef<'s, T> {
        let w = self.words()[i].load(Ordering::Relaxed);
        // SAFETY: slots below `len` were written by `write_word` from values of scopes of this
        // stack's heap (every write checks the scope), and the stack is a root: the object is
        // allocated until the scope `'s` ends at least (docs/design.md, "Local roots").
        unsafe { read_word(w) }
    }

    /// Pushes `v` on top.
    ///
    /// ```
    /// use lowpause::{LocalStack, ValueRef};
    /// let heap = lowpause::Heap::new();
    /// let mut m = heap.attach();
    /// let mut st = LocalStack::<u64>::new(&m);
    /// m.scope(|s| st.push(s, ValueRef::Bool(true)));
    /// assert_eq!(st.len(), 1);
    /// ```
    #[inline]
    pub fn push<'s>(&mut self, s: &Scope<'s>, v: ValueRef<'s, T>) {
        self.open(s, "push").push(v);
    }

    /// Removes the top slot and returns what it held.
    ///
    /// # Panics
    /// If the stack is empty.
    ///
    /// ```
    /// use lowpause::{LocalStack, ValueRef};
    /// let heap = lowpause::Heap::new();
    /// let mut m = heap.attach();
    /// let mut st = LocalStack::<u64>::new(&m);
    /// m.scope(|s| {
    ///     st.push(s, ValueRef::Number(1.0));
    ///     assert_eq!(st.pop(s), ValueRef::Number(1.0));
    /// });
    /// ```
    #[inline]
    pub fn pop<'s>(&mut self, s: &Scope<'s>) -> ValueRef<'s, T> {
        self.open(s, "pop").pop()
    }

    /// The slot `depth` below the top (0: the top).
    ///
    /// # Panics
    /// If `depth >= len()`.
    ///
    /// ```
    /// use lowpause::{LocalStack, ValueRef};
    /// let heap = lowpause::Heap::new();
    /// let mut m = heap.attach();
    /// let mut st = LocalStack::<u64>::new(&m);
    /// m.scope(|s| {
    ///     st.push(s, ValueRef::Number(1.0));
    ///     st.push(s, ValueRef::Number(2.0));
    ///     assert_eq!(st.peek(s, 1), ValueRef::Number(1.0));
    /// });
    /// ```
    #[inline]
    pub fn peek<'s>(&self, s: &Scope<'s>, depth: usize) -> ValueRef<'s, T> {
        self.check(s, "peek");
        let len = self.len();
        if depth >= len {
            out_of_range("peek", "depth", depth, len);
        }
        self.read(len - 1 - depth)
    }

    /// Overwrites the slot `depth` below the top (0: the top).
    ///
    /// # Panics
    /// If `depth >= len()`.
    ///
    /// ```
    /// use lowpause::{LocalStack, ValueRef};
    /// let heap = lowpause::Heap::new();
    /// let mut m = heap.attach();
    /// let mut st = LocalStack::<u64>::new(&m);
    /// m.scope(|s| {
    ///     st.push(s, ValueRef::Nil);
    ///     st.poke(s, 0, ValueRef::Bool(false));
    ///     assert_eq!(st.peek(s, 0), ValueRef::Bool(false));
    /// });
    /// ```
    #[inline]
    pub fn poke<'s>(&mut self, s: &Scope<'s>, depth: usize, v: ValueRef<'s, T>) {
        self.open(s, "poke").poke(depth, v);
    }

    /// The slot at index `i` from the bottom (0: the first pushed).
    ///
    /// # Panics
    /// If `i >= len()`.
    ///
    /// ```
    /// use lowpause::{LocalStack, ValueRef};
    /// let heap = lowpause::Heap::new();
    /// let mut m = heap.attach();
    /// let mut st = LocalStack::<u64>::new(&m);
    /// m.scope(|s| {
    ///     st.push(s, ValueRef::Number(7.0));
    ///     st.push(s, ValueRef::Nil);
    ///     assert_eq!(st.get(s, 0), ValueRef::Number(7.0));
    /// });
    /// ```
    #[inline]
    pub fn get<'s>(&self, s: &Scope<'s>, i: usize) -> ValueRef<'s, T> {
        self.check(s, "get");
        let len = self.len();
        if i >= len {
            out_of_range("get", "index", i, len);
        }
        self.read(i)
    }

    /// Overwrites the slot at index `i` from the bottom.
    ///
    /// # Panics
    /// If `i >= len()`.
    ///
    /// ```
    /// use lowpause::{LocalStack, ValueRef};
    /// let heap = lowpause::Heap::new();
    /// let mut m = heap.attach();
    /// let mut st = LocalStack::<u64>::new(&m);
    /// m.scope(|s| {
    ///     st.push(s, ValueRef::Nil);
    ///     st.set(s, 0, ValueRef::Number(3.0));
    ///     assert_eq!(st.get(s, 0), ValueRef::Number(3.0));
    /// });
    /// ```
    #[inline]
    pub fn set<'s>(&mut self, s: &Scope<'s>, i: usize, v: ValueRef<'s, T>) {
        self.open(s, "set").set(i, v);
    }

    /// Shortens the stack to `len` slots (no effect if it holds fewer); what the removed slots
    /// held is no longer kept alive by it.
    ///
    /// ```
    /// use lowpause::{LocalStack, ValueRef};
    /// let heap = lowpause::Heap::new();
    /// let mut m = heap.attach();
    /// let mut st = LocalStack::<u64>::new(&m);
    /// m.scope(|s| {
    ///     for i in 0..5 {
    ///         st.push(s, ValueRef::Number(i as f64));
    ///     }
    ///     st.truncate(s, 2);
    /// });
    /// assert_eq!(st.len(), 2);
    /// ```
    #[inline]
    pub fn truncate(&mut self, s: &Scope<'_>, len: usize) {
        self.open(s, "truncate").truncate(len);
    }
}

impl<T: ?Sized + GcObject> LocalStack<T> {
    /// The stack opened for a run of operations in one scope: the owner check is done once, and
    /// the length and the slots' address stay in the view (in registers, in a tight loop) until
    /// it is dropped, which writes the length back. An interpreter takes one per batch of
    /// instructions.
    ///
    /// # Panics
    /// If `s` is not a scope of the mutator that made the stack.
    ///
    /// ```
    /// use lowpause::{LocalStack, ValueRef};
    /// let heap = lowpause::Heap::new();
    /// let mut m = heap.attach();
    /// let mut st = LocalStack::<u64>::new(&m);
    /// m.scope(|s| {
    ///     let mut v = st.view(s);
    ///     v.push(ValueRef::Number(1.0));
    ///     v.push(ValueRef::Number(2.0));
    ///     let (ValueRef::Number(a), ValueRef::Number(b)) = (v.pop(), v.pop()) else { panic!() };
    ///     v.push(ValueRef::Number(a + b));
    /// });
    /// assert_eq!(st.len(), 1);
    /// ```
    #[inline]
    pub fn view<'a, 's>(&'a mut self, s: &'a Scope<'s>) -> StackView<'a, 's, T> {
        self.open(s, "view")
    }

    /// [`LocalStack::view`] for the operation `op` (named if the owner check fails): every
    /// operation that changes the stack runs through a view.
    #[inline(always)]
    fn open<'a, 's>(&'a mut self, s: &'a Scope<'s>, op: &'static str) -> StackView<'a, 's, T> {
        self.check(s, op);
        let words = self.words();
        StackView { len: self.len(), words: words.as_ptr(), cap: words.len(), stack: self, _scope: PhantomData }
    }
}

/// A [`LocalStack`] opened in one scope by [`LocalStack::view`]: the same operations, without
/// the per-operation owner check, with the length kept in the view until it is dropped.
///
/// Indexed accesses still check their bounds (a slot past the length may hold a stale word) and
/// panic as the stack's do.
pub struct StackView<'a, 's, T: ?Sized> {
    len: usize,
    words: *const crate::sync::AtomicPtr<u8>,
    cap: usize,
    stack: &'a mut LocalStack<T>,
    _scope: PhantomData<&'a Scope<'s>>,
}

impl<'s, T: ?Sized + GcObject> StackView<'_, 's, T> {
    /// Slots in use.
    #[inline(always)]
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no slot is in use.
    #[inline(always)]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    #[inline(always)]
    fn slot(&self, i: usize) -> &crate::sync::AtomicPtr<u8> {
        debug_assert!(i < self.cap);
        // SAFETY: `i < cap` (every caller checks `i < len <= cap`, or `len < cap` for a push),
        // and the array stays in place while the view lives: only the view's own `push`
        // replaces it, and reloads the pointer.
        unsafe { &*self.words.add(i) }
    }

    #[inline(always)]
    fn read(&self, i: usize) -> ValueRef<'s, T> {
        // SAFETY: as in `LocalStack::read`: slot `i < len` holds a word of this heap, kept alive.
        unsafe { read_word(self.slot(i).load(Ordering::Relaxed)) }
    }

    /// Pushes `v` on top.
    #[inline(always)]
    pub fn push(&mut self, v: ValueRef<'s, T>) {
        if self.len == self.cap {
            (self.words, self.cap) = Self::grow(self.stack, self.len);
        }
        self.slot(self.len).store(write_word(v), Ordering::Release);
        self.len += 1;
    }

    /// Grows the stack's array (the view's length first written back) and returns the new
    /// array's address and capacity. Takes no reference to the view, so that the view's fields
    /// can live in registers in the caller's loop.
    #[cold]
    #[inline(never)]
    fn grow(stack: &mut LocalStack<T>, len: usize) -> (*const crate::sync::AtomicPtr<u8>, usize) {
        stack.buf.len.store(len, Ordering::Relaxed);
        // SAFETY: the owner inside a scope (checked when the view was made); no slice of the
        // array is held (the view holds only its address, replaced by the caller).
        unsafe { stack.buf.grow(len + 1) };
        let words = stack.words();
        (words.as_ptr(), words.len())
    }

    /// Removes the top slot and returns what it held.
    ///
    /// # Panics
    /// If the stack is empty.
    #[inline(always)]
    pub fn pop(&mut self) -> ValueRef<'s, T> {
        if self.len == 0 {
            out_of_range("pop", "depth", 0, 0);
        }
        self.len -= 1;
        self.read(self.len)
    }

    /// The slot `depth` below the top (0: the top).
    ///
    /// # Panics
    /// If `depth >= len()`.
    #[inline(always)]
    pub fn peek(&self, depth: usize) -> ValueRef<'s, T> {
        if depth >= self.len {
            out_of_range("peek", "depth", depth, self.len);
        }
        self.read(self.len - 1 - depth)
    }

    /// Overwrites the slot `depth` below the top.
    ///
    /// # Panics
    /// If `depth >= len()`.
    #[inline(always)]
    pub fn poke(&mut self, depth: usize, v: ValueRef<'s, T>) {
        if depth >= self.len {
            out_of_range("poke", "depth", depth, self.len);
        }
        self.slot(self.len - 1 - depth).store(write_word(v), Ordering::Release);
    }

    /// The slot at index `i` from the bottom.
    ///
    /// # Panics
    /// If `i >= len()`.
    #[inline(always)]
    pub fn get(&self, i: usize) -> ValueRef<'s, T> {
        if i >= self.len {
            out_of_range("get", "index", i, self.len);
        }
        self.read(i)
    }

    /// Overwrites the slot at index `i` from the bottom.
    ///
    /// # Panics
    /// If `i >= len()`.
    #[inline(always)]
    pub fn set(&mut self, i: usize, v: ValueRef<'s, T>) {
        if i >= self.len {
            out_of_range("set", "index", i, self.len);
        }
        self.slot(i).store(write_word(v), Ordering::Release);
    }

    /// Pushes a copy of slot `i` (an interpreter's "get local"), moving the word as it is,
    /// without decoding and re-encoding the value.
    ///
    /// # Panics
    /// If `i >= len()`.
    ///
    /// ```
    /// use lowpause::{LocalStack, ValueRef};
    /// let heap = lowpause::Heap::new();
    /// let mut m = heap.attach();
    /// let mut st = LocalStack::<u64>::new(&m);
    /// m.scope(|s| {
    ///     let mut v = st.view(s);
    ///     v.push(ValueRef::Number(4.0));
    ///     v.push(ValueRef::Nil);
    ///     v.push_copy(0);
    ///     assert_eq!(v.peek(0), ValueRef::Number(4.0));
    /// });
    /// ```
    #[inline(always)]
    pub fn push_copy(&mut self, i: usize) {
        if i >= self.len {
            out_of_range("push_copy", "index", i, self.len);
        }
        let w = self.slot(i).load(Ordering::Relaxed);
        if self.len == self.cap {
            (self.words, self.cap) = Self::grow(self.stack, self.len);
        }
        self.slot(self.len).store(w, Ordering::Release);
        self.len += 1;
    }

    /// Overwrites slot `i` with a copy of the top slot (an interpreter's "set local"), moving the
    /// word as it is.
    ///
    /// # Panics
    /// If `i >= len()`.
    ///
    /// ```
    /// use lowpause::{LocalStack, ValueRef};
    /// let heap = lowpause::Heap::new();
    /// let mut m = heap.attach();
    /// let mut st = LocalStack::<u64>::new(&m);
    /// m.scope(|s| {
    ///     let mut v = st.view(s);
    ///     v.push(ValueRef::Nil);
    ///     v.push(ValueRef::Bool(true));
    ///     v.copy_top_to(0);
    ///     assert_eq!(v.get(0), ValueRef::Bool(true));
    /// });
    /// ```
    #[inline(always)]
    pub fn copy_top_to(&mut self, i: usize) {
        if i >= self.len {
            out_of_range("copy_top_to", "index", i, self.len);
        }
        let w = self.slot(self.len - 1).load(Ordering::Relaxed);
        self.slot(i).store(w, Ordering::Release);
    }

    /// Shortens the stack to `len` slots (no effect if it holds fewer).
    #[inline(always)]
    pub fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len);
    }
}

impl<T: ?Sized> Drop for StackView<'_, '_, T> {
    #[inline(always)]
    fn drop(&mut self) {
        self.stack.buf.len.store(self.len, Ordering::Relaxed);
    }
}

impl<T: ?Sized> fmt::Debug for StackView<'_, '_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StackView").field("len", &self.len).finish_non_exhaustive()
    }
}

impl<T: ?Sized> Drop for LocalStack<T> {
    fn drop(&mut self) {
        self.rec.locals.remove(&self.buf);
    }
}

impl<T: ?Sized> fmt::Debug for LocalStack<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalStack")
            .field("len", &self.buf.len.load(Ordering::Relaxed))
            .field("thread", &self.rec.name)
            .finish()
    }
}

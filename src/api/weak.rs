//! Weak references: `Weak<T>` (a handle held anywhere), `WeakMember<T>` (a field of a heap
//! object) and `WeakTable<K, V>` (an ephemeron table). The collector's side, and why a weak
//! read never hands out a dead object, is in `collector/weak.rs`.

use super::gc::{Gc, GcObject};
use super::member::{check_in_heap, Member};
use super::root::Root;
use super::scope::Scope;
use super::value::{self, ValueRef};
use crate::collector::weak::{Entry, RawWeakTable, WeakAccess, WeakCell};
use crate::collector::Tracer;
use crate::sync::{AtomicPtr, Ordering};
use crate::Trace;
use std::fmt;
use std::marker::PhantomData;
use std::ptr::NonNull;

/// Makes a weak cell for `target` and lists it with the collector.
fn new_cell<'s, T: ?Sized + GcObject>(s: &Scope<'s>, target: Gc<'s, T>) -> Gc<'s, WeakCell> {
    let cell = s.alloc(WeakCell::new(target.payload().as_ptr() as usize));
    s.collector().register_cell(cell.payload().as_ptr() as usize);
    cell
}

/// Reads a weak cell in scope `s`.
fn read_cell<'s, T: ?Sized + GcObject>(s: &Scope<'s>, cell: &WeakCell) -> Option<Gc<'s, T>> {
    let p = s.collector().weak_access(s.record()).read_cell(cell);
    // SAFETY: the cell was made from a `Gc<T>` of this heap, and a non-zero answer is an object
    // the weak read kept: greyed while marking, marked after it, or live since the last walk. It
    // therefore stays allocated for the rest of this scope.
    NonNull::new(p as *mut u8).map(|p| unsafe { Gc::from_payload(p) })
}

/// A weak reference held outside the heap: it does not keep its object alive, and
/// [`get`](Weak::get) answers `None` once the object is unreachable. `Send + Sync + Clone`.
///
/// ```
/// use lowpause::{Heap, Weak};
/// let heap = Heap::builder().workers(0).build().unwrap();
/// let mut m = heap.attach();
/// let (kept, lost) = m.scope(|s| {
///     let kept = s.alloc(1u64);
///     (Weak::new(s, kept), Weak::new(s, s.alloc(2u64)))
/// });
/// let root = m.scope(|s| s.root(kept.get(s).unwrap())); // make `kept` strongly reachable
/// m.collect();
/// m.scope(|s| {
///     assert_eq!(kept.get(s).map(|g| *g), Some(1));
///     assert!(lost.get(s).is_none()); // nothing else referred to it
/// });
/// # drop(root);
/// ```
pub struct Weak<T: ?Sized + GcObject> {
    cell: Root<WeakCell>,
    _target: PhantomData<fn() -> *const T>,
}

impl<T: ?Sized + GcObject> Weak<T> {
    /// A weak reference to `target`.
    pub fn new<'s>(s: &Scope<'s>, target: Gc<'s, T>) -> Weak<T> {
        Weak { cell: s.root(new_cell(s, target)), _target: PhantomData }
    }

    /// The object, if it is still reachable (strongly, from a root or a scope).
    ///
    /// # Panics
    /// If `s` is a scope of another heap.
    pub fn get<'s>(&self, s: &Scope<'s>) -> Option<Gc<'s, T>> {
        self.cell.check_heap(s, "Weak::get");
        read_cell(s, Gc::as_scoped(self.cell.get(s)))
    }
}

impl<T: ?Sized + GcObject> Clone for Weak<T> {
    fn clone(&self) -> Self {
        Weak { cell: self.cell.clone(), _target: PhantomData }
    }
}

impl<T: ?Sized + GcObject> fmt::Debug for Weak<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Weak(..)")
    }
}

/// A weak reference field of a heap object: like a [`Member`], but it does not keep its target
/// alive; [`get`](WeakMember::get) answers `None` once the target is unreachable.
///
/// ```
/// use lowpause::{Heap, Root, Trace, WeakMember};
/// #[derive(Trace)]
/// struct Cache { last: WeakMember<String> }
///
/// let heap = Heap::builder().workers(0).build().unwrap();
/// let mut m = heap.attach();
/// let cache: Root<Cache> = m.scope(|s| {
///     let c = s.alloc(Cache { last: WeakMember::null() });
///     c.last.set(s, Some(s.alloc(String::from("temporary"))));
///     assert_eq!(c.last.get(s).unwrap().as_str(), "temporary");
///     s.root(c)
/// });
/// m.collect();
/// m.scope(|s| assert!(cache.get(s).last.get(s).is_none()));
/// ```
pub struct WeakMember<T: ?Sized> {
    cell: Member<WeakCell>,
    _target: PhantomData<fn() -> *const T>,
}

impl<T: ?Sized> WeakMember<T> {
    /// A weak field referring to nothing.
    pub fn null() -> WeakMember<T> {
        WeakMember { cell: Member::null(), _target: PhantomData }
    }
}

impl<T: ?Sized> Default for WeakMember<T> {
    fn default() -> Self {
        WeakMember::null()
    }
}

impl<T: ?Sized + GcObject> WeakMember<T> {
    /// The target, if the field refers to one that is still reachable.
    ///
    /// # Panics
    /// If this field does not lie inside an object of the scope's heap.
    pub fn get<'s>(&self, s: &Scope<'s>) -> Option<Gc<'s, T>> {
        check_in_heap(s, self as *const Self as usize, "WeakMember", "get");
        let cell = self.cell.get(s)?;
        read_cell(s, Gc::as_scoped(cell))
    }

    /// Points the field at `target` weakly (allocating a small cell), or clears it.
    ///
    /// # Panics
    /// If this field does not lie inside an object of the scope's heap.
    pub fn set<'s>(&self, s: &Scope<'s>, target: Option<Gc<'s, T>>) {
        check_in_heap(s, self as *const Self as usize, "WeakMember", "set");
        let cell = target.map(|t| new_cell(s, t));
        self.cell.set(s, cell);
    }
}

// SAFETY: the field's only strong reference is to its cell, which it hands to the tracer; the
// target is weak, handled by the collector's walk.
unsafe impl<T: ?Sized + GcObject> Trace for WeakMember<T> {
    const NEEDS_TRACE: bool = true;
    fn trace(&self, tracer: &mut Tracer<'_>) {
        self.cell.trace(tracer);
    }
}

impl<T: ?Sized> fmt::Debug for WeakMember<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WeakMember(..)")
    }
}

/// A weak-keyed hash table with ephemeron semantics: an entry's value is kept alive only while
/// its key is reachable from outside the table, and the entry disappears once the key is
/// unreachable. Values are [`ValueRef`]s (immediates or references to `V`).
///
/// A table is a heap object of its own, made by [`WeakTable::new_in`]; keep it with a
/// [`Member`] or a [`Root`]. Keys are looked up either by identity ([`get`](WeakTable::get),
/// [`insert`](WeakTable::insert), [`remove`](WeakTable::remove)) or by a hash of your own and
/// an equality test ([`find`](WeakTable::find), [`insert_hashed`](WeakTable::insert_hashed)),
/// which is how a string-interning table is built. Use one kind of lookup per table.
///
/// A JavaScript-style `WeakMap`:
///
/// ```
/// use lowpause::{Heap, ValueRef, WeakTable};
/// let heap = Heap::builder().workers(0).build().unwrap();
/// let mut m = heap.attach();
/// let (map, key) = m.scope(|s| {
///     let map = WeakTable::<u64, String>::new_in(s);
///     let key = s.alloc(7u64);
///     map.insert(s, key, ValueRef::Object(s.alloc(String::from("seven"))));
///     map.insert(s, s.alloc(8u64), ValueRef::Number(8.0)); // its key is dropped at once
///     (s.root(map), s.root(key))
/// });
/// m.collect();
/// m.scope(|s| {
///     let map = map.get(s);
///     match map.get(s, key.get(s)) {
///         Some(ValueRef::Object(v)) => assert_eq!(v.as_str(), "seven"),
///         other => panic!("{other:?}"),
///     }
///     assert_eq!(map.len(), 1); // the entry of the unreachable key is gone
/// });
/// ```
#[repr(C)]
pub struct WeakTable<K: ?Sized, V: ?Sized> {
    /// First, so the collector finds it at the object's payload address.
    raw: RawWeakTable,
    _types: PhantomData<fn() -> (*const K, *const V)>,
}

// SAFETY: a table's references are handled by the collector as ephemerons (each termination round
// greys the values of live keys; the walk removes dead keys), never by tracing.
unsafe impl<K: ?Sized, V: ?Sized> Trace for WeakTable<K, V> {
    const NEEDS_TRACE: bool = false;
    const __WEAK_KIND: u8 = crate::object::WEAK_TABLE;
    fn trace(&self, _: &mut Tracer<'_>) {}
}

/// The hash identity lookups use: the key's address, mixed.
pub(crate) fn identity_hash(addr: usize) -> u64 {
    mix(addr as u64)
}

/// Spreads a hash over all 64 bits. Applied to every caller-supplied hash: a caller's 32-bit
/// hash leaves the top bits zero, and hashbrown takes its 7-bit tags from the top (one tag for
/// every entry made every probe compare every key: interning ran 26 % of a string-heavy Lox
/// program in `find`).
#[inline(always)]
pub(crate) fn mix(hash: u64) -> u64 {
    hash.wrapping_mul(0x9e37_79b9_7f4a_7c15).rotate_left(29)
}

impl<K: ?Sized + GcObject, V: ?Sized + GcObject> WeakTable<K, V> {
    /// A new, empty table in the heap.
    ///
    /// ```
    /// let heap = lowpause::Heap::new();
    /// let mut m = heap.attach();
    /// m.scope(|s| assert!(lowpause::WeakTable::<u64, u64>::new_in(s).is_empty()));
    /// ```
    pub fn new_in<'s>(s: &Scope<'s>) -> Gc<'s, WeakTable<K, V>> {
        let t = s.alloc(WeakTable { raw: RawWeakTable::new(value::decode), _types: PhantomData });
        s.collector().register_table(t.payload().as_ptr() as usize);
        t
    }

    /// Panics unless the table lies in the scope's heap: keys and values are then objects of
    /// that heap (each was stored through a scope of it), and so is every `Gc` a lookup returns.
    #[inline]
    fn check(&self, s: &Scope<'_>, op: &'static str) {
        check_in_heap(s, self as *const Self as usize, "WeakTable", op);
    }

    /// Runs `f` with the weak read started (before the table's lock: a read may wait for a
    /// termination round, which locks tables), after checking the table is in the scope's heap.
    fn with_access<'s, R>(&self, s: &Scope<'s>, op: &'static str, f: impl FnOnce(&WeakAccess<'_>) -> R) -> R {
        self.check(s, op);
        let acc = s.collector().weak_access(s.record());
        f(&acc)
    }

    /// The value stored for `key` (by identity).
    ///
    /// # Panics
    /// If the table does not lie in the scope's heap (a table of another heap).
    ///
    /// ```
    /// use lowpause::{ValueRef, WeakTable};
    /// let heap = lowpause::Heap::new();
    /// let mut m = heap.attach();
    /// m.scope(|s| {
    ///     let t = WeakTable::<u64, u64>::new_in(s);
    ///     let k = s.alloc(1u64);
    ///     assert!(t.get(s, k).is_none());
    ///     t.insert(s, k, ValueRef::Bool(true));
    ///     assert_eq!(t.get(s, k), Some(ValueRef::Bool(true)));
    /// });
    /// ```
    pub fn get<'s>(&self, s: &Scope<'s>, key: Gc<'s, K>) -> Option<ValueRef<'s, V>> {
        let k = key.payload().as_ptr() as usize;
        self.with_access(s, "get", |_| {
            let entries = self.raw.entries.lock();
            let e = entries.find(identity_hash(k), |e| e.key == k)?;
            // SAFETY: the word was written from a `ValueRef<V>` of this heap; the value is kept
            // while its key is, and the caller holds the key for this scope.
            Some(unsafe { value::read_word(e.value.load(Ordering::Acquire)) })
        })
    }

    /// Stores `value` for `key` (by identity), replacing any value stored before.
    ///
    /// # Panics
    /// If the table does not lie in the scope's heap (a table of another heap).
    pub fn insert<'s>(&self, s: &Scope<'s>, key: Gc<'s, K>, value: ValueRef<'s, V>) {
        let k = key.payload().as_ptr() as usize;
        self.store(s, "insert", identity_hash(k), k, value, true);
    }

    /// Removes the entry of `key` (by identity); returns whether there was one.
    ///
    /// # Panics
    /// If the table does not lie in the scope's heap (a table of another heap).
    pub fn remove<'s>(&self, s: &Scope<'s>, key: Gc<'s, K>) -> bool {
        let k = key.payload().as_ptr() as usize;
        self.with_access(s, "remove", |acc| {
            let mut entries = self.raw.entries.lock();
            match entries.find_entry(identity_hash(k), |e| e.key == k) {
                Ok(e) => {
                    // SAFETY: a value slot of this heap's table; nil refers to nothing.
                    unsafe { acc.store(&e.get().value, value::NIL_WORD, value::decode) };
                    e.remove();
                    true
                }
                Err(_) => false,
            }
        })
    }

    /// The first live entry with this `hash` whose key satisfies `eq`, with its value.
    ///
    /// `eq` runs after the table's lock is released, so it may do anything, allocation included.
    ///
    /// # Panics
    /// If the table does not lie in the scope's heap (a table of another heap).
    ///
    /// ```
    /// use lowpause::{ValueRef, WeakTable};
    /// let heap = lowpause::Heap::new();
    /// let mut m = heap.attach();
    /// m.scope(|s| {
    ///     let interned = WeakTable::<String, String>::new_in(s);
    ///     let hash = |t: &str| t.bytes().fold(0u64, |h, b| h.wrapping_mul(31).wrapping_add(b as u64));
    ///     let hello = s.alloc(String::from("hello"));
    ///     interned.insert_hashed(s, hash("hello"), hello, ValueRef::Nil);
    ///     let (found, _) = interned.find(s, hash("hello"), |k| k.as_str() == "hello").unwrap();
    ///     assert!(lowpause::Gc::ptr_eq(found, hello));
    ///     assert!(interned.find(s, hash("world"), |k| k.as_str() == "world").is_none());
    /// });
    /// ```
    pub fn find<'s>(
        &self,
        s: &Scope<'s>,
        hash: u64,
        mut eq: impl FnMut(Gc<'s, K>) -> bool,
    ) -> Option<(Gc<'s, K>, ValueRef<'s, V>)> {
        let hash = mix(hash);
        let mut candidates: few::Few<(usize, *mut u8)> = Default::default();
        self.with_access(s, "find", |acc| {
            let entries = self.raw.entries.lock();
            for e in entries.iter_hash(hash) {
                // SAFETY: a key of a listed table is allocated (weak.rs's invariant).
                if e.hash == hash && unsafe { acc.keep(e.key) } {
                    candidates.push((e.key, e.value.load(Ordering::Acquire)));
                }
            }
        });
        for (k, v) in candidates.iter().copied() {
            // SAFETY: the weak read kept the key (greyed it while marking, found it marked after,
            // or it is live since the last walk), so it stays allocated for this scope; it was
            // inserted from a `Gc<K>` of this heap. The value is kept while the key is.
            let key = unsafe { Gc::from_payload(NonNull::new_unchecked(k as *mut u8)) };
            if eq(key) {
                // SAFETY: as above, for the value's word.
                return Some((key, unsafe { value::read_word(v) }));
            }
        }
        None
    }

    /// Adds an entry under your own `hash` (use [`find`](WeakTable::find) first: this does not
    /// look for an equal key).
    ///
    /// # Panics
    /// If the table does not lie in the scope's heap (a table of another heap).
    pub fn insert_hashed<'s>(&self, s: &Scope<'s>, hash: u64, key: Gc<'s, K>, value: ValueRef<'s, V>) {
        self.store(s, "insert_hashed", mix(hash), key.payload().as_ptr() as usize, value, false);
    }

    fn store<'s>(&self, s: &Scope<'s>, op: &'static str, hash: u64, key: usize, value: ValueRef<'s, V>, replace: bool) {
        let new = value::write_word(value);
        self.with_access(s, op, |acc| {
            let mut entries = self.raw.entries.lock();
            let slot: &AtomicPtr<u8> = match replace.then(|| entries.find(hash, |e| e.key == key)).flatten() {
                Some(e) => &e.value,
                None => {
                    let e = Entry { hash, key, value: AtomicPtr::new(value::NIL_WORD) };
                    &entries.insert_unique(hash, e, |e| e.hash).into_mut().value
                }
            };
            // SAFETY: a value slot of this heap's table; `new` was made from a value of this scope.
            unsafe { acc.store(slot, new, value::decode) };
        });
    }

    /// Entries in the table, counting those whose key died in a cycle that has not ended yet.
    pub fn len(&self) -> usize {
        self.raw.entries.lock().len()
    }

    /// Whether the table has no entries.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<K: ?Sized, V: ?Sized> fmt::Debug for WeakTable<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The lock is released before the caller's writer runs (it may do anything, and
        // termination rounds take this lock).
        let n = self.raw.entries.lock().len();
        write!(f, "WeakTable({n} entries)")
    }
}

mod few {
    /// A few candidates without a heap allocation in the common case of zero or one.
    #[derive(Default)]
    pub(super) struct Few<T: Copy> {
        first: Option<T>,
        rest: Vec<T>,
    }
    impl<T: Copy> Few<T> {
        pub(super) fn push(&mut self, v: T) {
            if self.first.is_none() {
                self.first = Some(v);
            } else {
                self.rest.push(v);
            }
        }
        pub(super) fn iter(&self) -> impl Iterator<Item = &T> {
            self.first.iter().chain(self.rest.iter())
        }
    }
}

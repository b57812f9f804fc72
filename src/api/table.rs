//! `GcTable<K, E>`: a hash table of strong references, stored in a GC array.
//!
//! Open addressing with linear probing over one GC array of entries, each a hash, a key slot and
//! a value slot. The key slot is a `Value<K>`: nil marks a free entry, `true` a removed one (a
//! tombstone, so probe chains stay intact), an object the key. Marking traces the array like any
//! other object (the key and the value are ordinary strong slots), so the table needs nothing
//! from the collector beyond what a `GcVec` needs.
//!
//! **Reads take no lock.** A reader loads the array (the table's member), probes it and reads
//! the value slot. Each entry is a small seqlock: a writer that changes an entry's *key* (an
//! insert into a free or removed entry, a removal) makes the entry's sequence number odd, fences,
//! writes, and makes it even again; a reader reads the number, the key and the value, fences,
//! and rereads the number, and retries the entry if it changed or was odd. So a lookup never
//! pairs a key with a value it did not have (an attack paired a key with the value of the key
//! that reused its entry in between). Updating the value of a present key changes no key and
//! takes no sequence number: a reader sees the old value or the new one. Growing builds a complete new array and then
//! points the member at it; the old one stays intact, so a reader that loaded it finds what it
//! held (a moment stale) and the array stays allocated while its scope can reach it.
//! **Writes take the table's small lock**, so concurrent writers never lose an entry or leave a
//! key twice; every store into the array goes through the write barrier.
//!
//! Keys are compared by identity ([`get`](GcTable::get), [`insert`](GcTable::insert)) with a
//! hash of the key's address (objects never move), or by a hash the caller supplies and an
//! equality it supplies ([`find`](GcTable::find), [`insert_hashed`](GcTable::insert_hashed)), for
//! keys such as strings whose hash the object stores. A table is used in one of the two ways: an
//! identity lookup does not find an entry added under a caller's hash.

use super::gc::{Gc, GcObject};
use super::member::{check_in_heap, Member};
use super::scope::Scope;
use super::value::{Value, ValueRef};
use super::vec::Slot;
use super::weak::{identity_hash, mix};
use crate::collector::Tracer;
use crate::sync::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use crate::Trace;
use std::fmt;

/// One entry of a table's array.
pub(crate) struct TableEntry<K: ?Sized, E> {
    /// The key's hash (its low 32 bits) above a sequence number, odd while a writer changes
    /// the entry's key (readers retry: see the module comment).
    meta: AtomicU64,
    key: Value<K>,
    value: E,
}

/// The `meta` word of an entry for `hash` with sequence number `seq`.
#[inline(always)]
fn meta(hash: u64, seq: u64) -> u64 {
    (hash << 32) | (seq & 0xffff_ffff)
}

/// The hash bits an entry keeps (the position in the array and the compare of `find`).
#[inline(always)]
fn hash_of(meta: u64) -> u64 {
    meta >> 32
}

/// Where `hash`'s chain starts in an array of `mask + 1` entries: from the low 32 bits only, the
/// ones an entry keeps, so that `grow` (which has only those) puts every entry on its chain.
#[inline(always)]
fn home(hash: u64, mask: usize) -> usize {
    (hash & 0xffff_ffff) as usize & mask
}

// SAFETY: an entry's references are its key slot and its value slot, both handed to the tracer
// through their own `Trace` impls.
unsafe impl<K: ?Sized + GcObject, E: Slot> Trace for TableEntry<K, E> {
    const NEEDS_TRACE: bool = true;
    #[inline]
    fn trace(&self, tracer: &mut Tracer<'_>) {
        self.key.trace(tracer);
        self.value.trace(tracer);
    }
}

/// A hash table from objects to [`Member`]s or [`Value`]s, as a field of a heap object (or an
/// object of its own); its entries live in a GC array.
///
/// It is what an interpreter builds globals, fields, methods and interned strings on. Lookups
/// take no lock and cost a hash, a few loads and a compare; inserts and removals take the
/// table's own small lock, so several threads may write at once (what one thread reads while
/// another writes may be a moment stale, never torn). Every method checks that the table lies in
/// the scope's heap.
///
/// ```
/// use lowpause::{GcTable, Heap, Trace, Value, ValueRef};
/// #[derive(Trace)]
/// struct Instance { fields: GcTable<String, Value<String>> }
///
/// let heap = Heap::new();
/// let mut m = heap.attach();
/// m.scope(|s| {
///     let obj = s.alloc(Instance { fields: GcTable::new() });
///     let (x, y) = (s.alloc("x".to_string()), s.alloc("y".to_string()));
///     obj.fields.insert(s, x, ValueRef::Number(1.0));
///     obj.fields.insert(s, y, ValueRef::Object(s.alloc("two".to_string())));
///     assert_eq!(obj.fields.get(s, x), Some(ValueRef::Number(1.0)));
///     assert_eq!(obj.fields.len(), 2);
///     assert!(obj.fields.remove(s, x));
///     assert_eq!(obj.fields.get(s, x), None);
/// });
/// ```
pub struct GcTable<K: ?Sized, E> {
    entries: Member<[TableEntry<K, E>]>,
    /// Live entries.
    len: AtomicU32,
    /// Entries that are live or removed (not free): what the load factor counts.
    used: AtomicU32,
    lock: WriteLock,
}

impl<K: ?Sized, E> GcTable<K, E> {
    /// An empty table (no array until the first insert).
    ///
    /// ```
    /// let t = lowpause::GcTable::<u64, lowpause::Member<u64>>::new();
    /// assert!(t.is_empty());
    /// ```
    pub fn new() -> GcTable<K, E> {
        GcTable {
            entries: Member::null(),
            len: AtomicU32::new(0),
            used: AtomicU32::new(0),
            lock: WriteLock(AtomicBool::new(false)),
        }
    }

    /// Entries in the table.
    #[inline]
    pub fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed) as usize
    }

    /// Whether the table has no entries.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<K: ?Sized, E> Default for GcTable<K, E> {
    fn default() -> Self {
        GcTable::new()
    }
}

/// The writers' lock: one swap to take it and a plain release store to give it back (a
/// `parking_lot` mutex pays a second read-modify-write to release, and writes are the table's
/// common case in an interpreter: every field store). Held only for a probe and a few stores, or
/// a grow (an allocation, which never waits for a cycle), so a waiter spins, then yields.
struct WriteLock(AtomicBool);

/// Holds a [`WriteLock`]; releases it when dropped, unwinding included.
struct WriteGuard<'a>(&'a AtomicBool);

impl WriteLock {
    #[inline]
    fn lock(&self) -> WriteGuard<'_> {
        if self.0.swap(true, Ordering::Acquire) {
            self.lock_slow();
        }
        WriteGuard(&self.0)
    }

    #[cold]
    #[inline(never)]
    fn lock_slow(&self) {
        let mut spins = 0;
        loop {
            while self.0.load(Ordering::Relaxed) {
                spins += 1;
                crate::sync::spin_wait(spins);
            }
            if !self.0.swap(true, Ordering::Acquire) {
                return;
            }
        }
    }
}

impl Drop for WriteGuard<'_> {
    #[inline]
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

/// The panic for a table past its entry limit.
#[cold]
#[inline(never)]
fn table_full(live: usize) -> ! {
    panic!("lowpause: GcTable::insert on a table of {live} entries: a table holds at most 2^31 entries; split the data over several tables")
}

/// An entry's seqlock: the sequence number in the low 32 bits of its `meta` word, odd while a
/// writer (holding the table's lock) changes the entry's key. A reader loads the word with
/// [`start`](seq::start), reads the key and the value, and keeps what it read only if
/// [`unchanged`](seq::unchanged) says no writer began a change meanwhile (Boehm's seqlock: the
/// writer's release fence after making the number odd, the reader's acquire fence before
/// rereading it). Checked by the loom model `loom_table_entry_reads_never_pair_a_key_with_another_keys_value`.
mod seq {
    use super::{hash_of, meta};
    use crate::sync::{fence, AtomicU64, Ordering};

    /// Begins a change: the number odd, then a release fence. Returns the number that ends it.
    #[inline(always)]
    pub(super) fn begin(m: &AtomicU64) -> u64 {
        let old = m.load(Ordering::Relaxed);
        m.store(meta(hash_of(old), old + 1), Ordering::Relaxed);
        fence(Ordering::Release);
        old + 2
    }

    /// Ends a change begun by [`begin`], with the entry's (new) hash.
    #[inline(always)]
    pub(super) fn end(m: &AtomicU64, hash: u64, seq: u64) {
        m.store(meta(hash & 0xffff_ffff, seq), Ordering::Release);
    }

    /// A reader's first load of the word.
    #[inline(always)]
    pub(super) fn start(m: &AtomicU64) -> u64 {
        m.load(Ordering::Acquire)
    }

    /// Whether what the reader read since `start` returned `first` is of one moment: no change
    /// was in progress then, and none began since.
    #[inline(always)]
    pub(super) fn unchanged(m: &AtomicU64, first: u64) -> bool {
        fence(Ordering::Acquire);
        first & 1 == 0 && m.load(Ordering::Relaxed) == first
    }
}

#[cfg(all(test, loom))]
mod loom_models {
    use super::{meta, seq};
    use loom::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
    use loom::sync::Arc;

    const K1: usize = 16;
    const K2: usize = 32;
    const V1: usize = 100;
    const V2: usize = 200;
    const REMOVED: usize = 1;

    /// A writer removes key K1 from an entry and reuses the entry for K2 (same hash), as the
    /// table's `remove` and `insert` do, while a reader reads the entry once. Bug it catches: a
    /// reader that pairs a key with a value it never had (K1 with nothing, or with K2's value).
    /// Guard: the sequence number (`checked`); the twin without it is caught. The key and the
    /// value are accessed relaxed here (the table's own accesses are release and acquire), so the
    /// seqlock's two fences are what the model checks: without either one, it fails.
    fn entry_read_against_remove_and_reuse(checked: bool) {
        loom::model(move || {
            let m = Arc::new(AtomicU64::new(meta(7, 0)));
            let key = Arc::new(AtomicUsize::new(K1));
            let value = Arc::new(AtomicUsize::new(V1));
            let writer = {
                let (m, key, value) = (m.clone(), key.clone(), value.clone());
                loom::thread::spawn(move || {
                    let s = seq::begin(&m);
                    key.store(REMOVED, Ordering::Relaxed);
                    value.store(0, Ordering::Relaxed);
                    seq::end(&m, 7, s);
                    let s = seq::begin(&m);
                    value.store(V2, Ordering::Relaxed);
                    key.store(K2, Ordering::Relaxed);
                    seq::end(&m, 7, s);
                })
            };
            loop {
                let first = seq::start(&m);
                let k = key.load(Ordering::Relaxed);
                let v = value.load(Ordering::Relaxed);
                if !checked || seq::unchanged(&m, first) {
                    assert!(
                        matches!((k, v), (K1, V1) | (REMOVED, 0) | (K2, V2)),
                        "the entry read as key {k} with value {v}"
                    );
                    break;
                }
                loom::thread::yield_now();
            }
            writer.join().unwrap();
        });
    }

    #[test]
    fn loom_table_entry_reads_never_pair_a_key_with_another_keys_value() {
        entry_read_against_remove_and_reuse(true);
    }

    #[test]
    #[should_panic(expected = "the entry read as key")]
    fn loom_table_entry_read_without_the_sequence_number_is_caught() {
        entry_read_against_remove_and_reuse(false);
    }
}

/// What a probe found.
enum Probe<'s, K: ?Sized, E> {
    /// The entry holding the key.
    Found(&'s TableEntry<K, E>),
    /// The key is absent; the first free or removed entry of its chain, if the array has one.
    Absent(Option<&'s TableEntry<K, E>>),
}

impl<K: ?Sized + GcObject, E: Slot> GcTable<K, E> {
    /// Panics unless the table lies in the scope's heap: its array and everything the array
    /// holds are then objects of that heap.
    #[inline(always)]
    fn check(&self, s: &Scope<'_>, op: &'static str) {
        check_in_heap(s, self as *const Self as usize, "GcTable", op);
    }

    /// The entry array, if any (called after `check`).
    #[inline(always)]
    fn array<'s>(&self, _: &Scope<'s>) -> Option<&'s [TableEntry<K, E>]> {
        // SAFETY: called after `check`: the member lies in the scope's heap.
        unsafe { self.entries.get_unchecked() }.map(Gc::as_scoped)
    }

    /// A writer's probe (the lock held) of `arr` for the entry whose key word is `want` (pass a
    /// null `want` to find only where a new key would go).
    #[inline(always)]
    fn probe<'s>(arr: &'s [TableEntry<K, E>], hash: u64, want: *mut u8) -> Probe<'s, K, E> {
        let mask = arr.len() - 1;
        let mut i = home(hash, mask);
        let mut reuse = None;
        // Never full (the load factor is at most 3/4), so a free entry ends every chain; the
        // bound only guards against a table a racing writer left momentarily odd.
        for _ in 0..arr.len() {
            let e = &arr[i];
            let w = e.key.word().load(Ordering::Acquire);
            if w == super::value::NIL_WORD {
                return Probe::Absent(Some(reuse.unwrap_or(e)));
            }
            if super::value::decode(w) != 0 {
                if w == want {
                    return Probe::Found(e);
                }
            } else if reuse.is_none() {
                reuse = Some(e);
            }
            i = (i + 1) & mask;
        }
        Probe::Absent(reuse)
    }

    /// A reader's probe (no lock held): walks `hash`'s chain, reads every entry whose key word
    /// `accept`s (which must refuse the free and removed words) consistently (key and value of
    /// one moment, by the entry's sequence number), and returns the first that `take` wants.
    /// `take` runs after the read is checked, so nothing it does to the table makes the read
    /// retry.
    #[inline(always)]
    fn probe_read<'s>(
        arr: &'s [TableEntry<K, E>],
        hash: u64,
        mut accept: impl FnMut(u64, *mut u8) -> bool,
        mut take: impl FnMut(*mut u8, E::Ref<'s>) -> bool,
    ) -> Option<(*mut u8, E::Ref<'s>)> {
        let mask = arr.len() - 1;
        debug_assert!(arr.len().is_power_of_two());
        let mut i = home(hash, mask);
        let mut probed = 0;
        loop {
            // SAFETY: `i <= mask < arr.len()` (the length is a power of two: `grow` makes only
            // such arrays).
            let e = unsafe { arr.get_unchecked(i) };
            let m1 = seq::start(&e.meta);
            let w = e.key.word().load(Ordering::Acquire);
            if accept(m1, w) {
                // SAFETY: the entry lies in the table's array, in the scope's heap (checked by
                // the caller).
                let v = unsafe { e.value.load_unchecked() };
                if !seq::unchanged(&e.meta, m1) {
                    // A writer changed the entry meanwhile: read it again.
                    std::hint::spin_loop();
                    continue;
                }
                if take(w, v) {
                    return Some((w, v));
                }
            } else if w == super::value::NIL_WORD {
                return None;
            }
            i = (i + 1) & mask;
            probed += 1;
            if probed == arr.len() {
                return None;
            }
        }
    }

    /// The value stored for `key` (by identity).
    ///
    /// # Panics
    /// If the table does not lie in the scope's heap.
    ///
    /// ```
    /// use lowpause::{GcTable, Member};
    /// let heap = lowpause::Heap::new();
    /// let mut m = heap.attach();
    /// m.scope(|s| {
    ///     let t = s.alloc(GcTable::<u64, Member<u64>>::new());
    ///     let k = s.alloc(1u64);
    ///     assert!(t.get(s, k).is_none());
    ///     t.insert(s, k, Some(s.alloc(10)));
    ///     assert_eq!(*t.get(s, k).flatten().unwrap(), 10);
    /// });
    /// ```
    #[inline]
    pub fn get<'s>(&self, s: &Scope<'s>, key: Gc<'s, K>) -> Option<E::Ref<'s>> {
        self.check(s, "get");
        let arr = self.array(s)?;
        let want = super::value::write_word(ValueRef::Object(key));
        Self::probe_read(arr, identity_hash(key.payload().as_ptr() as usize), |_, w| w == want, |_, _| true)
            .map(|(_, v)| v)
    }

    /// The entry whose hash is `hash` and whose key `eq` accepts: its key and value.
    ///
    /// # Panics
    /// If the table does not lie in the scope's heap.
    ///
    /// ```
    /// use lowpause::{GcTable, Value, ValueRef};
    /// let heap = lowpause::Heap::new();
    /// let mut m = heap.attach();
    /// m.scope(|s| {
    ///     let strings = s.alloc(GcTable::<String, Value<String>>::new());
    ///     let hash = |t: &str| t.bytes().fold(0xcbf29ce484222325u64, |h, b| (h ^ b as u64).wrapping_mul(0x100000001b3));
    ///     let hello = s.alloc("hello".to_string());
    ///     strings.insert_hashed(s, hash("hello"), hello, ValueRef::Nil);
    ///     let (found, _) = strings.find(s, hash("hello"), |k| *k == "hello").unwrap();
    ///     assert!(lowpause::Gc::ptr_eq(found, hello));
    ///     assert!(strings.find(s, hash("bye"), |k| *k == "bye").is_none());
    /// });
    /// ```
    #[inline]
    pub fn find<'s>(
        &self,
        s: &Scope<'s>,
        hash: u64,
        mut eq: impl FnMut(Gc<'s, K>) -> bool,
    ) -> Option<(Gc<'s, K>, E::Ref<'s>)> {
        self.check(s, "find");
        let hash = mix(hash);
        let arr = self.array(s)?;
        let h = hash & 0xffff_ffff;
        let mut key = None;
        let (_, v) = Self::probe_read(
            arr,
            hash,
            |m, w| hash_of(m) == h && super::value::decode(w) != 0,
            |w, _| {
                // SAFETY: a key word of an array of this heap, written from a `Gc<K>` of a scope
                // of it; the array (which holds it) is reachable from this scope.
                match unsafe { super::value::read_word::<K>(w) } {
                    ValueRef::Object(k) if eq(k) => {
                        key = Some(k);
                        true
                    }
                    _ => false,
                }
            },
        )?;
        key.map(|k| (k, v))
    }

    /// Stores `value` for `key` (by identity); true if the key was not in the table.
    ///
    /// # Panics
    /// If the table does not lie in the scope's heap.
    ///
    /// ```
    /// use lowpause::{GcTable, Value, ValueRef};
    /// let heap = lowpause::Heap::new();
    /// let mut m = heap.attach();
    /// m.scope(|s| {
    ///     let t = s.alloc(GcTable::<u64, Value<u64>>::new());
    ///     let k = s.alloc(1u64);
    ///     assert!(t.insert(s, k, ValueRef::Number(1.0)));
    ///     assert!(!t.insert(s, k, ValueRef::Number(2.0)));
    ///     assert_eq!(t.get(s, k), Some(ValueRef::Number(2.0)));
    /// });
    /// ```
    pub fn insert<'s>(&self, s: &Scope<'s>, key: Gc<'s, K>, value: E::Ref<'s>) -> bool {
        self.check(s, "insert");
        self.store(s, identity_hash(key.payload().as_ptr() as usize), key, value)
    }

    /// Stores `value` for `key` under your own `hash`, replacing the entry of this very key
    /// object if there is one; true if there was none. (It does not look for an equal key:
    /// [`find`](GcTable::find) first.)
    ///
    /// # Panics
    /// If the table does not lie in the scope's heap.
    ///
    /// ```
    /// use lowpause::{GcTable, Member};
    /// let heap = lowpause::Heap::new();
    /// let mut m = heap.attach();
    /// m.scope(|s| {
    ///     let t = s.alloc(GcTable::<String, Member<u64>>::new());
    ///     let k = s.alloc("key".to_string());
    ///     assert!(t.insert_hashed(s, 7, k, None));
    ///     assert!(t.find(s, 7, |k| *k == "key").is_some_and(|(_, v)| v.is_none()));
    /// });
    /// ```
    pub fn insert_hashed<'s>(&self, s: &Scope<'s>, hash: u64, key: Gc<'s, K>, value: E::Ref<'s>) -> bool {
        self.check(s, "insert_hashed");
        self.store(s, mix(hash), key, value)
    }

    fn store<'s>(&self, s: &Scope<'s>, hash: u64, key: Gc<'s, K>, value: E::Ref<'s>) -> bool {
        let _g = self.lock.lock();
        let want = super::value::write_word(ValueRef::Object(key));
        let arr = self.array(s);
        let mut slot = None;
        if let Some(a) = arr {
            match Self::probe(a, hash, want) {
                Probe::Found(e) => {
                    e.value.store(s, value);
                    return false;
                }
                Probe::Absent(e) => slot = e,
            }
        }
        let used = self.used.load(Ordering::Relaxed) as usize;
        let reuses = slot.is_some_and(|e| e.key.word().load(Ordering::Relaxed) != super::value::NIL_WORD);
        if arr.is_none_or(|a| !reuses && (used + 1) * 4 > a.len() * 3) {
            let Probe::Absent(e) = Self::probe(self.grow(s), hash, std::ptr::null_mut()) else { unreachable!() };
            slot = e;
        }
        let e = slot.expect("a table below its load factor has a free entry");
        let fresh = e.key.word().load(Ordering::Relaxed) == super::value::NIL_WORD;
        // A key change: under the entry's sequence number (readers retry meanwhile).
        let seq = seq::begin(&e.meta);
        e.value.store(s, value);
        e.key.set(s, ValueRef::Object(key));
        seq::end(&e.meta, hash, seq);
        if fresh {
            // Not `used + 1`: a grow above reset the count to the live entries.
            self.used.fetch_add(1, Ordering::Relaxed);
        }
        self.len.fetch_add(1, Ordering::Relaxed);
        true
    }

    /// Replaces the array by one with room to spare (twice as large when the live entries need
    /// it), moving the live entries; returns it. Called with the lock held.
    #[cold]
    #[inline(never)]
    fn grow<'s>(&self, s: &Scope<'s>) -> &'s [TableEntry<K, E>] {
        let old = self.array(s);
        let live = self.len.load(Ordering::Relaxed) as usize;
        if live >= (u32::MAX / 2) as usize {
            table_full(live);
        }
        let mut cap = 4;
        while (live + 1) * 2 > cap {
            cap *= 2;
        }
        let new = s.alloc_slice(cap, |_| TableEntry { meta: AtomicU64::new(0), key: Value::nil(), value: E::empty() });
        for e in old.into_iter().flatten() {
            let w = e.key.word().load(Ordering::Relaxed);
            if super::value::decode(w) == 0 {
                continue;
            }
            let hash = hash_of(e.meta.load(Ordering::Relaxed));
            let Probe::Absent(Some(slot)) = Self::probe(&new, hash, std::ptr::null_mut()) else { unreachable!() };
            // SAFETY: both arrays lie in the scope's heap; the words were written from values of it.
            let (k, v) = unsafe { (e.key.get_unchecked(), e.value.load_unchecked()) };
            // The new array is published (a release store of the member) after it is filled.
            slot.meta.store(meta(hash, 0), Ordering::Relaxed);
            slot.value.store(s, v);
            slot.key.set(s, k);
        }
        self.entries.set(s, Some(new));
        self.used.store(live as u32, Ordering::Relaxed);
        Gc::as_scoped(new)
    }

    /// Removes `key`'s entry (by identity); true if there was one.
    ///
    /// # Panics
    /// If the table does not lie in the scope's heap.
    ///
    /// ```
    /// use lowpause::{GcTable, Member};
    /// let heap = lowpause::Heap::new();
    /// let mut m = heap.attach();
    /// m.scope(|s| {
    ///     let t = s.alloc(GcTable::<u64, Member<u64>>::new());
    ///     let k = s.alloc(1u64);
    ///     t.insert(s, k, None);
    ///     assert!(t.remove(s, k));
    ///     assert!(!t.remove(s, k));
    /// });
    /// ```
    pub fn remove<'s>(&self, s: &Scope<'s>, key: Gc<'s, K>) -> bool {
        self.check(s, "remove");
        self.remove_at(s, identity_hash(key.payload().as_ptr() as usize), key)
    }

    /// Removes the entry of this very `key` object, added under `hash`; true if there was one.
    ///
    /// # Panics
    /// If the table does not lie in the scope's heap.
    ///
    /// ```
    /// use lowpause::{GcTable, Member};
    /// let heap = lowpause::Heap::new();
    /// let mut m = heap.attach();
    /// m.scope(|s| {
    ///     let t = s.alloc(GcTable::<u64, Member<u64>>::new());
    ///     let k = s.alloc(1u64);
    ///     t.insert_hashed(s, 99, k, None);
    ///     assert!(t.remove_hashed(s, 99, k));
    ///     assert!(t.is_empty());
    /// });
    /// ```
    pub fn remove_hashed<'s>(&self, s: &Scope<'s>, hash: u64, key: Gc<'s, K>) -> bool {
        self.check(s, "remove_hashed");
        self.remove_at(s, mix(hash), key)
    }

    /// Removes `key`'s entry, found under the table's own `hash` of it.
    fn remove_at<'s>(&self, s: &Scope<'s>, hash: u64, key: Gc<'s, K>) -> bool {
        let _g = self.lock.lock();
        let want = super::value::write_word(ValueRef::Object(key));
        let Some(arr) = self.array(s) else { return false };
        let Probe::Found(e) = Self::probe(arr, hash, want) else { return false };
        // The key word of a removed entry is `true` (a free one's is nil); a key change, under
        // the entry's sequence number.
        let seq = seq::begin(&e.meta);
        e.key.set(s, ValueRef::Bool(true));
        e.value.store(s, E::empty_ref());
        seq::end(&e.meta, hash, seq);
        self.len.fetch_sub(1, Ordering::Relaxed);
        true
    }

    /// Calls `f` with every entry's key and value (in no particular order). Entries added or
    /// removed meanwhile by another thread may or may not be seen.
    ///
    /// # Panics
    /// If the table does not lie in the scope's heap.
    ///
    /// ```
    /// use lowpause::{GcTable, Value, ValueRef};
    /// let heap = lowpause::Heap::new();
    /// let mut m = heap.attach();
    /// m.scope(|s| {
    ///     let t = s.alloc(GcTable::<u64, Value<u64>>::new());
    ///     for i in 0..10 {
    ///         t.insert(s, s.alloc(i), ValueRef::Number(i as f64));
    ///     }
    ///     let mut sum = 0.0;
    ///     t.for_each(s, |k, v| if let ValueRef::Number(n) = v { assert_eq!(*k as f64, n); sum += n });
    ///     assert_eq!(sum, 45.0);
    /// });
    /// ```
    pub fn for_each<'s>(&self, s: &Scope<'s>, mut f: impl FnMut(Gc<'s, K>, E::Ref<'s>)) {
        self.check(s, "for_each");
        for e in self.array(s).into_iter().flatten() {
            // Each entry read consistently (as a probe does), then handed to `f`.
            let read = loop {
                let m1 = seq::start(&e.meta);
                // SAFETY: an entry of the table's array, in the scope's heap.
                let (k, v) = unsafe { (e.key.get_unchecked(), e.value.load_unchecked()) };
                if seq::unchanged(&e.meta, m1) {
                    break (k, v);
                }
                std::hint::spin_loop();
            };
            if let (ValueRef::Object(k), v) = read {
                f(k, v);
            }
        }
    }
}

// SAFETY: the table's only GC reference is its array's member, handed to the tracer; the array
// traces its entries.
unsafe impl<K: ?Sized + GcObject, E: Slot> Trace for GcTable<K, E> {
    const NEEDS_TRACE: bool = true;
    fn trace(&self, tracer: &mut Tracer<'_>) {
        self.entries.trace(tracer);
    }
}

impl<K: ?Sized, E> fmt::Debug for GcTable<K, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "GcTable(len {})", self.len())
    }
}

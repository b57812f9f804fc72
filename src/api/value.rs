//! `Value<T>`: a one-word slot for a dynamic language's values, NaN-boxed.
//!
//! The word is one of:
//!
//! ```text
//!   a GC reference   SIGN | QNAN | payload address   (addresses fit in 48 bits, 16-aligned)
//!   nil              QNAN | 1
//!   false / true     QNAN | 2, QNAN | 3
//!   a number         any other bit pattern: the f64 itself
//! ```
//!
//! `QNAN` is the quiet-NaN exponent with one more mantissa bit set, so no f64 an arithmetic
//! operation produces collides with a tag except NaNs, and NaNs are stored as the canonical
//! `f64::NAN` (the payload bits of a NaN are not kept). The collector decodes the word alone: the
//! tracer and the barrier see a reference exactly when both the sign and the `QNAN` bits are set.
//! References keep their provenance (the tag is added with `map_addr`), so the word is a real
//! pointer while it holds an object.

use super::gc::{Gc, GcObject};
use super::scope::Scope;
use crate::collector::Tracer;
use crate::sync::{AtomicPtr, Ordering};
use crate::Trace;
use std::fmt;
use std::marker::PhantomData;
use std::ptr::NonNull;

const _: () = assert!(usize::BITS == 64, "lowpause's Value slot needs 64-bit pointers");

const SIGN: usize = 1 << 63;
const QNAN: usize = 0x7ffc_0000_0000_0000;
const OBJECT: usize = SIGN | QNAN;
const NIL: usize = QNAN | 1;
const FALSE: usize = QNAN | 2;
const TRUE: usize = QNAN | 3;

/// The word a slot holds for `value`: every NaN stored as the canonical one, a reference tagged
/// with its provenance kept.
#[inline(always)]
pub(crate) fn write_word<T: ?Sized + GcObject>(value: ValueRef<'_, T>) -> *mut u8 {
    match value {
        ValueRef::Nil => std::ptr::without_provenance_mut(NIL),
        ValueRef::Bool(false) => std::ptr::without_provenance_mut(FALSE),
        ValueRef::Bool(true) => std::ptr::without_provenance_mut(TRUE),
        ValueRef::Number(n) if n.is_nan() => std::ptr::without_provenance_mut(f64::NAN.to_bits() as usize),
        ValueRef::Number(n) => std::ptr::without_provenance_mut(n.to_bits() as usize),
        ValueRef::Object(g) => {
            let p = g.payload().as_ptr();
            debug_assert_eq!(p.addr() & OBJECT, 0, "heap addresses fit in 48 bits");
            p.map_addr(|a| a | OBJECT)
        }
    }
}

/// What the word `w` of a slot holds.
///
/// # Safety
/// `w` was made by [`write_word`] from a value of type `T` of the heap whose scope `'s` is, and
/// its object (if any) stays allocated for all of `'s`.
#[inline(always)]
pub(crate) unsafe fn read_word<'s, T: ?Sized + GcObject>(w: *mut u8) -> ValueRef<'s, T> {
    let a = w.addr();
    // Numbers first (the common case in arithmetic): one test. Every stored NaN is the
    // canonical one, whose bits do not cover `QNAN`.
    if a & QNAN != QNAN {
        return ValueRef::Number(f64::from_bits(a as u64));
    }
    if a & SIGN != 0 {
        let p = w.map_addr(|a| a & !OBJECT);
        // SAFETY: forwarded from the caller; payload addresses are never null.
        return ValueRef::Object(unsafe { Gc::from_payload(NonNull::new_unchecked(p)) });
    }
    match a {
        FALSE => ValueRef::Bool(false),
        TRUE => ValueRef::Bool(true),
        _ => ValueRef::Nil,
    }
}

/// The nil word.
pub(crate) const NIL_WORD: *mut u8 = std::ptr::without_provenance_mut(NIL);

/// The object address a slot word refers to, or 0 (what the tracer and the barrier need).
#[inline(always)]
pub(crate) fn decode(word: *mut u8) -> usize {
    let w = word.addr();
    if w & OBJECT == OBJECT {
        w & !OBJECT
    } else {
        0
    }
}

/// What a [`Value`] holds, read in a scope: an immediate or a reference to a `T`.
///
/// ```
/// use lowpause::{Heap, Value, ValueRef};
/// let heap = Heap::new();
/// let mut m = heap.attach();
/// m.scope(|s| {
///     let slots = s.alloc_slice(3, |_| Value::<String>::nil());
///     slots[0].set(s, ValueRef::Number(1.5));
///     slots[1].set(s, ValueRef::Object(s.alloc("hi".to_string())));
///     assert_eq!(slots[0].get(s), ValueRef::Number(1.5));
///     assert!(matches!(slots[1].get(s), ValueRef::Object(o) if *o == "hi"));
///     assert_eq!(slots[2].get(s), ValueRef::Nil);
/// });
/// ```
pub enum ValueRef<'s, T: ?Sized> {
    /// The absence of a value (what a fresh slot holds).
    Nil,
    /// A boolean.
    Bool(bool),
    /// A number: any f64 (a NaN reads back as `f64::NAN`, its payload bits are not kept).
    Number(f64),
    /// A reference to an object of the heap.
    Object(Gc<'s, T>),
}

impl<T: ?Sized> Clone for ValueRef<'_, T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T: ?Sized> Copy for ValueRef<'_, T> {}

/// Immediates compare by value (numbers as f64: NaN is not equal to itself), objects by identity.
impl<T: ?Sized + GcObject> PartialEq for ValueRef<'_, T> {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (ValueRef::Nil, ValueRef::Nil) => true,
            (ValueRef::Bool(a), ValueRef::Bool(b)) => a == b,
            (ValueRef::Number(a), ValueRef::Number(b)) => a == b,
            (ValueRef::Object(a), ValueRef::Object(b)) => a.payload() == b.payload(),
            _ => false,
        }
    }
}

impl<T: ?Sized + GcObject> fmt::Debug for ValueRef<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ValueRef::Nil => f.write_str("Nil"),
            ValueRef::Bool(b) => write!(f, "Bool({b})"),
            ValueRef::Number(n) => write!(f, "Number({n})"),
            ValueRef::Object(o) => write!(f, "Object({:p})", o.payload()),
        }
    }
}

/// A one-word, barriered slot for a dynamic language's value: nil, a boolean, any f64, or a
/// reference to a `T` in the heap (NaN-boxed: see the module source for the encoding).
///
/// Like [`Member`](crate::Member), it starts as [`Value::nil`], lives only inside heap objects
/// (every use checks that, and panics otherwise), is updated with [`set`](Value::set) through the
/// write barrier, and is read with [`get`](Value::get). The collector traces it by looking at the
/// word alone. An interpreter's `T` is typically one enum of its object kinds.
///
/// ```
/// use lowpause::{Heap, Trace, Value, ValueRef};
/// #[derive(Trace)]
/// enum Obj { Str(String), Pair(Value<Obj>, Value<Obj>) }
///
/// let heap = Heap::new();
/// let mut m = heap.attach();
/// let root = m.scope(|s| {
///     let pair = s.alloc(Obj::Pair(Value::nil(), Value::nil()));
///     if let Obj::Pair(a, b) = &*pair {
///         a.set(s, ValueRef::Object(s.alloc(Obj::Str("car".into()))));
///         b.set(s, ValueRef::Number(2.0));
///     }
///     s.root(pair)
/// });
/// m.collect();
/// m.scope(|s| {
///     let Obj::Pair(a, b) = &*root.get(s) else { unreachable!() };
///     assert!(matches!(a.get(s), ValueRef::Object(o) if matches!(&*o, Obj::Str(t) if t == "car")));
///     assert_eq!(b.get(s), ValueRef::Number(2.0));
/// });
/// ```
#[repr(transparent)]
pub struct Value<T: ?Sized> {
    word: AtomicPtr<u8>,
    _target: PhantomData<fn() -> *const T>,
}

impl<T: ?Sized> Value<T> {
    /// A slot holding nil, the only way to make one.
    ///
    /// ```
    /// assert!(lowpause::Value::<u64>::nil().is_nil());
    /// ```
    #[inline]
    pub fn nil() -> Value<T> {
        Value { word: AtomicPtr::new(std::ptr::without_provenance_mut(NIL)), _target: PhantomData }
    }

    /// The slot's word.
    #[inline(always)]
    pub(crate) fn word(&self) -> &AtomicPtr<u8> {
        &self.word
    }

    /// Whether the slot holds nil (no scope needed: the answer may change at once if another
    /// thread sets it).
    #[inline]
    pub fn is_nil(&self) -> bool {
        self.word.load(Ordering::Relaxed).addr() == NIL
    }
}

impl<T: ?Sized> Default for Value<T> {
    fn default() -> Self {
        Value::nil()
    }
}

impl<T: ?Sized + GcObject> Value<T> {
    #[inline(always)]
    fn check(&self, s: &Scope<'_>, op: &'static str) {
        super::member::check_in_heap(s, self as *const Self as usize, "Value", op);
    }

    /// What the slot holds.
    ///
    /// # Panics
    /// If this `Value` does not lie inside an object of the scope's heap.
    #[inline(always)]
    pub fn get<'s>(&self, s: &Scope<'s>) -> ValueRef<'s, T> {
        self.check(s, "get");
        // SAFETY: the slot lies in the scope's heap (checked above).
        let r = unsafe { self.get_unchecked() };
        debug_assert!(
            !matches!(r, ValueRef::Object(o) if !s.in_heap(o.payload().as_ptr() as usize - crate::object::HEADER_SIZE)),
            "a Value held a foreign reference"
        );
        r
    }

    /// [`Value::get`] without the heap-range check.
    ///
    /// # Safety
    /// The slot lies inside an object of the heap whose scope `'s` is.
    #[inline(always)]
    pub(crate) unsafe fn get_unchecked<'s>(&self) -> ValueRef<'s, T> {
        // SAFETY: the slot lies in this heap (the caller's guarantee), and every word in it was
        // written by `set` from a `ValueRef<'s, T>` of this scope's heap (or is nil); an object
        // reachable in a scope stays allocated until the scope ends.
        unsafe { read_word(self.word.load(Ordering::Acquire)) }
    }

    /// Stores `value` in the slot, through the write barrier.
    ///
    /// # Panics
    /// If this `Value` does not lie inside an object of the scope's heap:
    ///
    /// ```should_panic
    /// use lowpause::{Value, ValueRef};
    /// let heap = lowpause::Heap::new();
    /// let mut m = heap.attach();
    /// let on_stack = Value::<u64>::nil();
    /// m.scope(|s| on_stack.set(s, ValueRef::Bool(true))); // panics: not inside the heap
    /// ```
    #[inline(always)]
    pub fn set<'s>(&self, s: &Scope<'s>, value: ValueRef<'s, T>) {
        self.check(s, "set");
        let new = write_word(value);
        let c = s.collector();
        if c.barrier_on() {
            // SAFETY: `s` is the calling thread's scope (its record, inside a scope); the slot
            // lies in this heap (checked above), and `decode(new)` is 0 or an object of this heap
            // (a `Gc` of this scope).
            unsafe { c.barriered_store_word(s.record(), &self.word, new, decode) };
        } else {
            self.word.store(new, Ordering::Release);
        }
    }
}

// SAFETY: the slot's only GC reference is its own word, which it hands to the tracer with the
// decoding that finds the reference in it; clearing leaves nil.
unsafe impl<T: ?Sized + GcObject> Trace for Value<T> {
    const NEEDS_TRACE: bool = true;
    #[inline(always)]
    fn trace(&self, tracer: &mut Tracer<'_>) {
        // SAFETY: as for a `Member`: the slot lies in a heap object being traced, and every word
        // in it decodes to 0 or an object of that heap (only `set` writes it, from a value of a
        // scope of the slot's own heap).
        unsafe { tracer.tagged_edge(&self.word, decode, std::ptr::without_provenance_mut(NIL)) };
    }
}

impl<T: ?Sized> fmt::Debug for Value<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Value({:#x})", self.word.load(Ordering::Relaxed).addr())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_do_not_collide_with_numbers() {
        for n in [0.0, -0.0, 1.0, -1.5, f64::INFINITY, f64::NEG_INFINITY, f64::MAX, f64::MIN_POSITIVE, f64::NAN] {
            assert_eq!(decode(std::ptr::without_provenance_mut(n.to_bits() as usize)), 0, "{n}");
            assert!(![NIL, FALSE, TRUE].contains(&(n.to_bits() as usize)), "{n}");
        }
        // A NaN with every payload bit set would look like an object: `set` canonicalises it.
        let evil = f64::from_bits(u64::MAX);
        assert!(evil.is_nan());
        assert_ne!(decode(std::ptr::without_provenance_mut(evil.to_bits() as usize)), 0);
        assert_eq!(decode(std::ptr::without_provenance_mut(OBJECT | 0x1230)), 0x1230);
    }

    #[test]
    fn the_barrier_shades_the_references_in_old_and_new_words_only() {
        use crate::collector::barrier::hybrid_store_word;
        use crate::sync::AtomicBool;
        let word = |w: usize| std::ptr::without_provenance_mut::<u8>(w);
        let (in_barrier, on) = (AtomicBool::new(false), AtomicBool::new(true));
        let cases = [
            (OBJECT | 0x1000, OBJECT | 0x2000, vec![0x1000, 0x2000]),
            (OBJECT | 0x1000, 2.5f64.to_bits() as usize, vec![0x1000]),
            (NIL, OBJECT | 0x2000, vec![0x2000]),
            (TRUE, FALSE, vec![]),
        ];
        for (old, new, want) in cases {
            let slot = AtomicPtr::new(word(old));
            let mut greyed = Vec::new();
            hybrid_store_word(
                &in_barrier,
                &on,
                &slot,
                word(new),
                decode,
                |p| {
                    greyed.push(p);
                    Some(false)
                },
                |_| {},
            );
            assert_eq!(greyed, want, "old {old:#x} new {new:#x}");
            assert_eq!(slot.load(Ordering::Relaxed).addr(), new);
        }
    }
}

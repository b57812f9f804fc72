//! `Scope<'s>`: a mutation scope, where objects are allocated and GC pointers are valid.

use super::gc::{Gc, GcObject};
use super::heap::Shared;
use super::root::Root;
use crate::collector::mutator::ThreadRecord;
use crate::collector::Collector;
use crate::memory::size_class::class_of;
use crate::memory::span::SpanKind;
use crate::object::{Header, TypeInfo, HEADER_SIZE, MAX_ALIGN};
use crate::sync::Arc;
use crate::Trace;
use std::marker::PhantomData;
use std::mem::{needs_drop, size_of};
use std::ptr::NonNull;

/// A mutation scope of one thread on one heap, handed to the closure of
/// [`Mutator::scope`](crate::Mutator::scope). Every method that makes or reads GC pointers takes
/// `&Scope<'s>`, and every [`Gc<'s, _>`](Gc) it returns carries the same brand `'s`, unique to
/// this scope: GC pointers cannot outlive it or mix with another heap's.
///
/// A `Scope` carries its thread's allocation cache, so it is neither `Send` nor `Sync`.
///
/// ```
/// let heap = lowpause::Heap::new();
/// let mut m = heap.attach();
/// m.scope(|s| {
///     let n = s.alloc(3u64);
///     let v = s.alloc_slice(4, |i| i as u64 * *n);
///     assert_eq!(&v[..], &[0, 3, 6, 9]);
/// });
/// ```
pub struct Scope<'s> {
    shared: &'s Arc<Shared>,
    collector: &'s Collector,
    rec: &'s ThreadRecord,
    /// The heap's reservation (first address and length), copied here so that the range check of
    /// every `Member` and `Value` access is one subtraction and one compare against data in the
    /// scope itself.
    heap_base: usize,
    heap_len: usize,
    /// Invariant in `'s`, and neither `Send` nor `Sync`.
    _brand: PhantomData<*mut &'s ()>,
}

/// Compile-time facts about allocating a `T`.
struct Layout<T>(PhantomData<T>);

impl<T: Trace> Layout<T> {
    const SIZE: usize = HEADER_SIZE + size_of::<T>();
    const CLASS: Option<u8> = class_of(Self::SIZE);
    /// Zero-sized types hold no reference whatever their `NEEDS_TRACE` says (`[Member<T>; 0]`):
    /// they go to no-scan spans, so an array of `usize::MAX` of them is never traced element by
    /// element (which would never end).
    const KIND: SpanKind = SpanKind::new(T::NEEDS_TRACE && size_of::<T>() != 0, needs_drop::<T>());
    const INFO: &'static TypeInfo = &TypeInfo::of::<T>();
    const SLICE_INFO: &'static TypeInfo = &TypeInfo::slice_of::<T>();
    const ALIGN_OK: () =
        assert!(std::mem::align_of::<T>() <= MAX_ALIGN, "lowpause: GC objects may need at most 16-byte alignment");
}

/// The panic for an array larger than the whole reservation.
#[cold]
#[inline(never)]
fn too_large(len: usize, elem: usize, reservation: usize) -> ! {
    panic!(
        "lowpause: alloc_slice of {len} elements of {elem} bytes needs more than the heap's whole \
         reservation ({reservation} bytes); raise HeapBuilder::max_heap, or allocate less"
    )
}

impl<'s> Scope<'s> {
    pub(crate) fn new(shared: &'s Arc<Shared>, rec: &'s ThreadRecord) -> Scope<'s> {
        let memory = &shared.collector.memory;
        Scope {
            shared,
            collector: &shared.collector,
            rec,
            heap_base: memory.base(),
            heap_len: memory.len(),
            _brand: PhantomData,
        }
    }

    #[inline(always)]
    pub(crate) fn shared(&self) -> &'s Arc<Shared> {
        self.shared
    }

    #[inline(always)]
    pub(crate) fn collector(&self) -> &'s Collector {
        self.collector
    }

    /// Whether `addr` lies inside this scope's heap.
    #[inline(always)]
    pub(crate) fn in_heap(&self, addr: usize) -> bool {
        addr.wrapping_sub(self.heap_base) < self.heap_len
    }

    #[inline(always)]
    pub(crate) fn record(&self) -> &'s ThreadRecord {
        self.rec
    }

    /// Moves `value` into the heap and returns a pointer to it.
    ///
    /// Its `Member`s are null (there is no other way to make one): link them with
    /// [`Member::set`](crate::Member::set) after allocation.
    ///
    /// ```
    /// let heap = lowpause::Heap::new();
    /// let mut m = heap.attach();
    /// m.scope(|s| {
    ///     let greeting = s.alloc(String::from("hello"));
    ///     assert_eq!(greeting.len(), 5);
    /// });
    /// ```
    #[inline(always)]
    pub fn alloc<T: Trace + Send + Sync + 'static>(&self, value: T) -> Gc<'s, T> {
        #[allow(clippy::let_unit_value)]
        let () = Layout::<T>::ALIGN_OK;
        // SAFETY: `self.rec` is this thread's record and we are inside its scope.
        let (obj, large) = unsafe {
            self.collector.alloc(self.rec, Layout::<T>::CLASS, Layout::<T>::SIZE, Layout::<T>::KIND, Layout::<T>::INFO)
        };
        // SAFETY: `obj` is a fresh slot of at least `SIZE` bytes, 16-byte aligned, that only this
        // thread can see; header and value are written before any pointer to it is published.
        unsafe {
            std::ptr::write(obj as *mut Header, Header { info: Layout::<T>::INFO, len: 1 });
            std::ptr::write((obj + HEADER_SIZE) as *mut T, value);
        }
        if let Some(sp) = large {
            // SAFETY: our own record, inside our scope; `sp` came from our allocation.
            unsafe { self.collector.publish_large(self.rec, sp) };
        }
        // SAFETY: the object is initialised, and this scope keeps it (a new object is reachable
        // from the scope that made it until the scope ends).
        unsafe { Gc::from_payload(NonNull::new_unchecked((obj + HEADER_SIZE) as *mut u8)) }
    }

    /// Allocates a GC array of `len` elements, element `i` being `init(i)`.
    ///
    /// This is how tables of references live in the heap: `s.alloc_slice(n, |_| Member::null())`.
    /// If `init` panics, the elements made so far are dropped and the half-built array is left
    /// empty (length 0) for the collector: no slot with uninitialised elements remains.
    ///
    /// # Panics
    /// If the array cannot fit in the heap's reservation (`HeapBuilder::max_heap`), if the heap
    /// is exhausted, or if `init` panics.
    ///
    /// ```
    /// use lowpause::{Heap, Member};
    /// let heap = Heap::new();
    /// let mut m = heap.attach();
    /// m.scope(|s| {
    ///     let table = s.alloc_slice(1000, |_| Member::<u64>::null());
    ///     table[7].set(s, Some(s.alloc(7)));
    ///     assert_eq!(*table[7].get(s).unwrap(), 7);
    ///     assert_eq!(table.len(), 1000);
    /// });
    /// ```
    pub fn alloc_slice<T: Trace + Send + Sync + 'static>(
        &self,
        len: usize,
        mut init: impl FnMut(usize) -> T,
    ) -> Gc<'s, [T]> {
        #[allow(clippy::let_unit_value)]
        let () = Layout::<T>::ALIGN_OK;
        let size = size_of::<T>().checked_mul(len).and_then(|b| b.checked_add(HEADER_SIZE));
        let size = match size {
            Some(size) if size <= self.collector.memory.len() => size,
            _ => too_large(len, size_of::<T>(), self.collector.memory.len()),
        };
        // SAFETY: `self.rec` is this thread's record and we are inside its scope.
        let (obj, large) =
            unsafe { self.collector.alloc(self.rec, class_of(size), size, Layout::<T>::KIND, Layout::<T>::SLICE_INFO) };
        let header = obj as *mut Header;
        let elems = (obj + HEADER_SIZE) as *mut T;
        // SAFETY: a fresh slot of `size` bytes only this thread sees; the header says "no
        // elements" until all are written, so a sweep of the abandoned object drops nothing twice.
        unsafe { std::ptr::write(header, Header { info: Layout::<T>::SLICE_INFO, len: 0 }) };

        /// On unwinding out of `init`: drops the elements written so far and publishes the span.
        struct Guard<'a> {
            collector: &'a Collector,
            rec: &'a ThreadRecord,
            large: Option<crate::memory::SpanPtr>,
            drop_written: unsafe fn(*mut u8, usize),
            elems: *mut u8,
            written: usize,
        }
        impl Drop for Guard<'_> {
            fn drop(&mut self) {
                // SAFETY: exactly `written` elements were initialised at `elems`, and nothing
                // else refers to them (the object never escaped).
                unsafe { (self.drop_written)(self.elems, self.written) };
                if let Some(sp) = self.large.take() {
                    // SAFETY: our own record, inside our scope; `sp` came from our allocation.
                    unsafe { self.collector.publish_large(self.rec, sp) };
                }
            }
        }
        let mut guard = Guard {
            collector: self.collector,
            rec: self.rec,
            large,
            drop_written: Layout::<T>::INFO.drop,
            elems: elems as *mut u8,
            written: 0,
        };
        for i in 0..len {
            let v = init(i);
            // SAFETY: element `i` lies inside the slot and is not yet initialised.
            unsafe { std::ptr::write(elems.add(i), v) };
            guard.written = i + 1;
        }
        let large = guard.large.take();
        std::mem::forget(guard);
        // SAFETY: every element is initialised; the header is ours until published.
        unsafe { (*header).len = len };
        if let Some(sp) = large {
            // SAFETY: our own record, inside our scope; `sp` came from our allocation.
            unsafe { self.collector.publish_large(self.rec, sp) };
        }
        // SAFETY: the object is initialised and this scope keeps it.
        unsafe { Gc::from_payload(NonNull::new_unchecked(elems as *mut u8)) }
    }

    /// Keeps `gc`'s object alive beyond this scope: the returned [`Root`] can be stored anywhere
    /// and sent to any thread, and [`Root::get`] turns it back into a `Gc` in a later scope.
    ///
    /// ```
    /// let heap = lowpause::Heap::new();
    /// let mut m = heap.attach();
    /// let r = m.scope(|s| s.root(s.alloc(99u64)));
    /// m.collect();
    /// m.scope(|s| assert_eq!(*r.get(s), 99));
    /// ```
    pub fn root<T: ?Sized + GcObject>(&self, gc: Gc<'s, T>) -> Root<T> {
        Root::new(self.shared, gc)
    }

    /// The heap this scope belongs to.
    ///
    /// ```
    /// let heap = lowpause::Heap::new();
    /// let mut m = heap.attach();
    /// m.scope(|s| assert_eq!(s.heap().stats().threads, 1));
    /// ```
    pub fn heap(&self) -> crate::Heap {
        crate::Heap { inner: self.shared.clone() }
    }
}

//! `Gc<'s, T>`: a pointer to a GC object, valid for one scope; and `GcObject`, the types that can
//! be heap objects.

use crate::object::Header;
use std::fmt;
use std::marker::PhantomData;
use std::ops::Deref;
use std::ptr::NonNull;

mod sealed {
    pub trait Sealed {}
}

/// The types that can be GC objects: every `T: Trace + Send + Sync + 'static`, and slices `[T]` of
/// them (made by [`Scope::alloc_slice`](crate::Scope::alloc_slice)). Implemented by the crate only.
///
/// ```
/// use lowpause::{GcObject, Root};
/// fn keep_any<T: ?Sized + GcObject>(r: Root<T>) -> Root<T> { r.clone() }
/// let heap = lowpause::Heap::new();
/// let mut m = heap.attach();
/// let slice: Root<[u8]> = m.scope(|s| s.root(s.alloc_slice(4, |i| i as u8)));
/// let value: Root<u8> = m.scope(|s| s.root(s.alloc(4u8)));
/// drop((keep_any(slice), keep_any(value)));
/// ```
///
/// # Safety
/// Implemented only here: `__from_payload` rebuilds a pointer to the object from its payload
/// address (reading the length from the header for slices).
pub unsafe trait GcObject: sealed::Sealed + Send + Sync + 'static {
    #[doc(hidden)]
    /// # Safety
    /// `payload` is the payload of an initialised object of this type.
    unsafe fn __from_payload(payload: NonNull<u8>) -> NonNull<Self>;
}

impl<T: crate::Trace + Send + Sync + 'static> sealed::Sealed for T {}
// SAFETY: a sized object's payload is the value itself.
unsafe impl<T: crate::Trace + Send + Sync + 'static> GcObject for T {
    #[inline(always)]
    unsafe fn __from_payload(payload: NonNull<u8>) -> NonNull<T> {
        payload.cast()
    }
}

impl<T: crate::Trace + Send + Sync + 'static> sealed::Sealed for [T] {}
// SAFETY: a slice object's payload holds `len` elements, with `len` in its header.
unsafe impl<T: crate::Trace + Send + Sync + 'static> GcObject for [T] {
    #[inline(always)]
    unsafe fn __from_payload(payload: NonNull<u8>) -> NonNull<[T]> {
        // SAFETY: the caller guarantees an initialised object, so its header is written.
        let len = unsafe { Header::of(payload.as_ptr() as usize) }.len;
        NonNull::slice_from_raw_parts(payload.cast(), len)
    }
}

/// A pointer to a GC object, valid inside one [scope](crate::Mutator::scope) (`'s`).
///
/// `Gc` is `Copy`, dereferences to the object, and costs nothing: it is the object's address
/// (plus the length, for arrays). It cannot leave its scope (`'s` is a fresh brand every scope),
/// cannot be sent to another thread, and cannot be stored in the heap (heap objects are
/// `'static`): keep an object with a [`Root`](crate::Root) or a [`Member`](crate::Member) field.
///
/// ```
/// let heap = lowpause::Heap::new();
/// let mut m = heap.attach();
/// m.scope(|s| {
///     let a = s.alloc(5u32);
///     let b = a; // Copy
///     assert_eq!(*a + *b, 10);
///     assert!(lowpause::Gc::ptr_eq(a, b));
/// });
/// ```
pub struct Gc<'s, T: ?Sized> {
    ptr: NonNull<T>,
    /// Invariant in `'s` (the scope's brand) and neither `Send` nor `Sync`.
    _brand: PhantomData<(&'s T, *mut &'s ())>,
}

impl<'s, T: ?Sized + GcObject> Gc<'s, T> {
    /// # Safety
    /// `payload` is an initialised object of the heap whose scope `'s` is, and it stays allocated
    /// for all of `'s`.
    #[inline(always)]
    pub(crate) unsafe fn from_payload(payload: NonNull<u8>) -> Gc<'s, T> {
        // SAFETY: forwarded from the caller.
        Gc { ptr: unsafe { T::__from_payload(payload) }, _brand: PhantomData }
    }

    /// The payload address (what `Member`s and roots store).
    #[inline(always)]
    pub(crate) fn payload(self) -> NonNull<u8> {
        self.ptr.cast()
    }

    /// Whether two `Gc`s point to the same object.
    ///
    /// ```
    /// let heap = lowpause::Heap::new();
    /// let mut m = heap.attach();
    /// m.scope(|s| {
    ///     let (a, b) = (s.alloc(1u8), s.alloc(1u8));
    ///     assert!(!lowpause::Gc::ptr_eq(a, b));
    /// });
    /// ```
    #[inline]
    pub fn ptr_eq(this: Gc<'s, T>, other: Gc<'s, T>) -> bool {
        this.payload() == other.payload()
    }

    /// The object, borrowed for the whole scope (where `*gc` borrows it only as long as `gc`).
    ///
    /// ```
    /// use lowpause::Gc;
    /// fn first<'s>(v: Gc<'s, [u32]>) -> &'s u32 { &Gc::as_scoped(v)[0] }
    /// let heap = lowpause::Heap::new();
    /// let mut m = heap.attach();
    /// m.scope(|s| assert_eq!(*first(s.alloc_slice(3, |i| i as u32 + 7)), 7));
    /// ```
    #[inline(always)]
    pub fn as_scoped(this: Gc<'s, T>) -> &'s T {
        // SAFETY: the object stays allocated and initialised for the whole scope `'s` (the
        // collector never frees an object a running scope can reach), and is only ever shared.
        unsafe { this.ptr.as_ref() }
    }
}

impl<T: ?Sized> Clone for Gc<'_, T> {
    #[inline(always)]
    fn clone(&self) -> Self {
        *self
    }
}
impl<T: ?Sized> Copy for Gc<'_, T> {}

impl<T: ?Sized + GcObject> Deref for Gc<'_, T> {
    type Target = T;
    #[inline(always)]
    fn deref(&self) -> &T {
        Gc::as_scoped(*self)
    }
}

impl<T: ?Sized + GcObject + fmt::Debug> fmt::Debug for Gc<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

impl<T: ?Sized + GcObject + fmt::Display> fmt::Display for Gc<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&**self, f)
    }
}

impl<T: ?Sized> fmt::Pointer for Gc<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Pointer::fmt(&self.ptr.cast::<u8>(), f)
    }
}

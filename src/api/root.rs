//! `Root<T>`: a handle that keeps an object alive from anywhere.

use super::gc::{Gc, GcObject};
use super::heap::Shared;
use super::scope::Scope;
use crate::sync::Arc;
use std::fmt;
use std::ptr::NonNull;

/// Keeps a GC object alive, from anywhere: a `'static`, `Send + Sync`, `Clone` handle.
///
/// Made by [`Scope::root`]; read back in any scope of the same heap with [`Root::get`]. Each
/// `Root` holds one slot of the heap's root table and a reference to the heap itself (so the heap
/// lives as long as any of its roots).
///
/// ```
/// use lowpause::Heap;
/// let heap = Heap::new();
/// let mut m = heap.attach();
/// let r = m.scope(|s| s.root(s.alloc(String::from("shared"))));
/// let h2 = heap.clone();
/// std::thread::spawn(move || {
///     let mut m2 = h2.attach();
///     m2.scope(|s| assert_eq!(r.get(s).as_str(), "shared"));
/// }).join().unwrap();
/// ```
pub struct Root<T: ?Sized + GcObject> {
    heap: Arc<Shared>,
    slot: u32,
    ptr: NonNull<T>,
}

// SAFETY: the object is `Send + Sync` (a `GcObject` bound), and the handle only reads it through
// a scope of the calling thread; the table slot is managed under the table's lock.
unsafe impl<T: ?Sized + GcObject> Send for Root<T> {}
// SAFETY: as above.
unsafe impl<T: ?Sized + GcObject> Sync for Root<T> {}

impl<T: ?Sized + GcObject> Root<T> {
    pub(crate) fn new(shared: &Arc<Shared>, gc: Gc<'_, T>) -> Root<T> {
        let payload = gc.payload().as_ptr() as usize;
        let slot = shared.collector.add_root(payload);
        Root { heap: shared.clone(), slot, ptr: NonNull::from(Gc::as_scoped(gc)) }
    }

    /// Panics unless `s` is a scope of this root's heap (`op` names the caller's operation).
    #[inline(always)]
    pub(crate) fn check_heap(&self, s: &Scope<'_>, op: &'static str) {
        if !Arc::ptr_eq(&self.heap, s.shared()) {
            wrong_heap(op);
        }
    }

    /// Takes over the root-table slot `slot`, which roots the `T` at `payload`.
    ///
    /// # Safety
    /// `slot` is a live slot of `shared`'s root table holding `payload`, owned by nobody else, and
    /// `payload` is an initialised object of type `T` of that heap.
    pub(crate) unsafe fn from_slot(shared: &Arc<Shared>, slot: u32, payload: usize) -> Root<T> {
        // SAFETY: `payload` is a non-null object address of type `T` (caller's guarantee).
        let ptr = unsafe { T::__from_payload(NonNull::new_unchecked(payload as *mut u8)) };
        Root { heap: shared.clone(), slot, ptr }
    }

    /// The rooted object, in scope `s`.
    ///
    /// # Panics
    /// If `s` is a scope of another heap than the one this root belongs to.
    ///
    /// ```
    /// let heap = lowpause::Heap::new();
    /// let mut m = heap.attach();
    /// let r = m.scope(|s| s.root(s.alloc_slice(3, |i| i)));
    /// m.scope(|s| assert_eq!(r.get(s)[2], 2));
    /// ```
    #[inline]
    pub fn get<'s>(&self, s: &Scope<'s>) -> Gc<'s, T> {
        self.check_heap(s, "Root::get");
        // SAFETY: the root keeps the object allocated; it is initialised and of type `T`, and
        // `s` is a scope of the heap the object lives in.
        unsafe { Gc::from_payload(self.ptr.cast()) }
    }
}

#[cold]
#[inline(never)]
fn wrong_heap(op: &str) -> ! {
    panic!(
        "lowpause: {op} called with a scope of another heap; a handle can only be read in a \
         scope of the heap it was made in (attach to that heap and open a scope there)"
    )
}

impl<T: ?Sized + GcObject> Clone for Root<T> {
    fn clone(&self) -> Self {
        let slot = self.heap.collector.add_root(self.ptr.cast::<u8>().as_ptr() as usize);
        Root { heap: self.heap.clone(), slot, ptr: self.ptr }
    }
}

impl<T: ?Sized + GcObject> Drop for Root<T> {
    fn drop(&mut self) {
        let c = &self.heap.collector;
        c.roots.remove(self.slot, |p| c.shade_for_root(p));
    }
}

impl<T: ?Sized + GcObject> fmt::Debug for Root<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Root({:p})", self.ptr.cast::<u8>())
    }
}

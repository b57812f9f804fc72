//! The object layout every heap object shares: a 16-byte header followed by the payload.
//!
//! ```text
//!   object start (8-byte aligned; 16 when the payload needs it: see size_class.rs)
//!   ├── info: &'static TypeInfo   trace and drop functions, element size, type name
//!   ├── len:  usize               element count for `[T]` objects, 1 for sized objects
//!   └── payload                   the `T` (or `len` consecutive `T`s), at start + 16
//! ```
//!
//! GC references (`Member`, `Root`, `Gc`) all hold the *payload* address, so dereferencing a `Gc`
//! is free; the collector steps back 16 bytes to find the header. The header is written by the
//! allocating thread before the object is published (by a release store into a `Member` or the root
//! table), so every thread that can reach an object sees a complete header.
//!
//! Invariant kept here: `info` and `len` never change while the object is reachable. (The one write
//! after publication-time is `len = 0` by a panicking slice initializer, on an object nobody else
//! has seen.) Once an object is dead, its `info` word moves through the deferred-drop states of
//! sweep.rs — the object's own info, then [`PENDING_DROP`] while its drop glue waits in the drop
//! queue, then [`DROPPED`] once it ran — always with atomic accesses ([`Header::info_word`]),
//! because the sweeper and the thread running the drop glue touch it concurrently.

use crate::collector::Tracer;
use std::any::Any;
use std::panic::{catch_unwind, AssertUnwindSafe};

/// Bytes before the payload.
pub(crate) const HEADER_SIZE: usize = 16;
/// The largest payload alignment the heap supports (object starts are 16-byte aligned).
pub(crate) const MAX_ALIGN: usize = 16;

/// What the collector knows of a type: how to trace it, how to drop it, and what to call it.
pub(crate) struct TypeInfo {
    /// `std::any::type_name` of the payload (of the element type for arrays).
    pub(crate) name: fn() -> &'static str,
    /// Size of one element in bytes (of the whole payload for sized types).
    pub(crate) size: usize,
    /// Whether objects with this info are arrays (`[T]`, from `alloc_slice`); only the heap
    /// profile reads it.
    pub(crate) slice: bool,
    /// Whether the payload can hold GC references (the type's `NEEDS_TRACE`).
    pub(crate) needs_trace: bool,
    /// Whether the payload has drop glue.
    pub(crate) needs_drop: bool,
    /// What the type is to the weak-reference machinery (`Trace::__WEAK_KIND`): 0 an ordinary
    /// object, [`WEAK_CELL`] or [`WEAK_TABLE`]. Read by the verifier and by `set_finalizer`.
    pub(crate) weak_kind: u8,
    /// Visits the GC references of `len` elements at `payload`; `Err` carries the payload of a
    /// panic of the type's `Trace::trace`, caught here so that it never unwinds into the
    /// collector.
    pub(crate) trace: unsafe fn(payload: *const u8, len: usize, tracer: &mut Tracer<'_>) -> TraceResult,
    /// Runs the drop glue of `len` elements at `payload`.
    pub(crate) drop: unsafe fn(payload: *mut u8, len: usize),
}

impl TypeInfo {
    /// The info of a sized `T` or of arrays of `T`: both trace and drop `len` consecutive `T`s.
    pub(crate) const fn of<T: crate::Trace>() -> TypeInfo {
        TypeInfo {
            name: std::any::type_name::<T>,
            slice: false,
            size: std::mem::size_of::<T>(),
            // A zero-sized value holds no reference (scope.rs puts it in a no-scan span).
            needs_trace: T::NEEDS_TRACE && std::mem::size_of::<T>() != 0,
            needs_drop: std::mem::needs_drop::<T>(),
            weak_kind: T::__WEAK_KIND,
            trace: trace_elems::<T>,
            drop: drop_elems::<T>,
        }
    }
}

impl TypeInfo {
    /// The info of arrays of `T`: the same as [`TypeInfo::of`] but for the profile's name.
    pub(crate) const fn slice_of<T: crate::Trace>() -> TypeInfo {
        TypeInfo { slice: true, ..TypeInfo::of::<T>() }
    }
}

/// What tracing an object gives: `Err` with the payload of a panic in its `Trace::trace`.
pub(crate) type TraceResult = Result<(), Box<dyn Any + Send>>;

/// `TypeInfo::weak_kind` of a weak reference's cell.
pub(crate) const WEAK_CELL: u8 = 1;
/// `TypeInfo::weak_kind` of an ephemeron table.
pub(crate) const WEAK_TABLE: u8 = 2;

/// # Safety
/// `payload` points to `len` initialised `T`s that stay alive for the call.
unsafe fn trace_elems<T: crate::Trace>(payload: *const u8, len: usize, tracer: &mut Tracer<'_>) -> TraceResult {
    // SAFETY: the caller guarantees `len` initialised `T`s at `payload`.
    let elems = unsafe { std::slice::from_raw_parts(payload as *const T, len) };
    // A panicking `trace` is user code failing inside the collector: it is caught here, once per
    // object (the landing pad costs nothing until a panic), and the caller decides what the
    // failure means (marking: the cycle frees nothing; clearing: the object is leaked).
    catch_unwind(AssertUnwindSafe(|| {
        for e in elems {
            e.trace(tracer);
        }
    }))
}

/// What a dead object's `info` word holds while its drop glue waits in the drop queue: nothing
/// to trace, nothing to drop, and a sweep keeps the slot allocated.
pub(crate) static PENDING_DROP: TypeInfo = TypeInfo::inert(|| "(a dead object waiting for its drop glue)");
/// What a dead object's `info` word holds once its drop glue ran: the next sweep frees the slot.
pub(crate) static DROPPED: TypeInfo = TypeInfo::inert(|| "(a dead object whose drop glue ran)");

impl TypeInfo {
    /// An info with nothing to trace or drop, for the deferred-drop states.
    const fn inert(name: fn() -> &'static str) -> TypeInfo {
        /// Nothing to trace.
        unsafe fn no_trace(_: *const u8, _: usize, _: &mut Tracer<'_>) -> TraceResult {
            Ok(())
        }
        /// Nothing to drop.
        unsafe fn no_drop(_: *mut u8, _: usize) {}
        TypeInfo {
            name,
            size: 0,
            slice: false,
            needs_trace: false,
            needs_drop: false,
            weak_kind: 0,
            trace: no_trace,
            drop: no_drop,
        }
    }
}

/// # Safety
/// `payload` points to `len` initialised `T`s that nobody will use again.
unsafe fn drop_elems<T>(payload: *mut u8, len: usize) {
    // SAFETY: the caller guarantees `len` initialised, otherwise unused `T`s at `payload`.
    unsafe { std::ptr::drop_in_place(std::ptr::slice_from_raw_parts_mut(payload as *mut T, len)) }
}

/// The header at the start of every object.
#[repr(C)]
pub(crate) struct Header {
    pub(crate) info: &'static TypeInfo,
    pub(crate) len: usize,
}

const _: () = assert!(std::mem::size_of::<Header>() == HEADER_SIZE);

impl Header {
    /// The header of the object whose payload is at `payload`.
    ///
    /// # Safety
    /// `payload` is the payload address of an allocated object whose header has been written.
    #[inline]
    pub(crate) unsafe fn of<'a>(payload: usize) -> &'a Header {
        // SAFETY: by the caller's guarantee, a written header lies HEADER_SIZE bytes before.
        unsafe { &*((payload - HEADER_SIZE) as *const Header) }
    }

    /// The `info` word of the object starting at `obj`, for atomic access (the deferred-drop
    /// states: see the module docs).
    ///
    /// # Safety
    /// `obj` is the start of an allocated object whose header has been written.
    #[inline]
    pub(crate) unsafe fn info_word<'a>(obj: usize) -> &'a crate::sync::AtomicPtr<TypeInfo> {
        // SAFETY: the header's first word is the `&'static TypeInfo`, pointer-sized and aligned,
        // which an `AtomicPtr` may view; every access during the deferred-drop states is atomic.
        // (Under loom this is never called: the models drive `sweep::drop_state` and friends on
        // an atomic of their own.)
        unsafe { &*(obj as *const crate::sync::AtomicPtr<TypeInfo>) }
    }

    /// Bytes the object occupies, header included (before rounding up to its slot).
    #[inline]
    pub(crate) fn object_size(&self) -> usize {
        HEADER_SIZE + self.info.size * self.len
    }
}

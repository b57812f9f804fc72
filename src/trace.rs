//! `Trace`, `Leaf`, and their implementations for the std types a heap object commonly holds.
//!
//! `Trace` says how to find the GC references inside a value. `Leaf` says a type holds none at all,
//! anywhere inside; std containers (`Vec`, `Box`, `HashMap`, locks...) implement `Trace` only for
//! leaf contents, because they hand out `&mut` to their elements (through `&mut self` or a lock
//! guard) and a `&mut Member` could be swapped out of the heap, past the write barrier. GC
//! references therefore live only in fields of heap objects and in GC arrays, where they are
//! reached by shared reference and mutated only through barriered methods.
//!
//! `Option`, tuples, arrays and `PhantomData` are transparent: they are `Trace` when their parts
//! are, and `Leaf` when their parts are. `Cell` and `RefCell` are not `Sync`, so a heap object
//! cannot hold them at all; use atomics or a `Mutex` of leaf data.

use crate::collector::Tracer;

/// A type the collector can trace: it visits every GC reference the value holds.
///
/// Derive it: `#[derive(Trace)]` visits every field and computes [`Trace::NEEDS_TRACE`]. Types
/// whose constant is false are allocated in no-scan spans and never traced. A hand-written impl is
/// `unsafe` because the collector frees whatever it is not shown; the rules below are everything
/// it relies on.
///
/// # Safety
/// An implementation must keep every one of these rules:
///
/// 1. **Visit every reference.** `trace` calls `trace` on every [`Member`](crate::Member),
///    [`Value`](crate::Value), [`WeakMember`](crate::WeakMember) and [`GcVec`](crate::GcVec)
///    (and every other value whose `Trace` visits references) reachable through `&self` without
///    going through another heap object, each time it is called; `NEEDS_TRACE` may be false only
///    if there is none. A reference left unvisited may be freed while still in use.
/// 2. **No `&mut` to a reference through `&self`.** A GC reference may not sit where shared
///    access can reach a mutable one: not inside a `Mutex`, `RwLock`, `RefCell`, `Cell`,
///    `UnsafeCell`, `OnceLock` or any other interior-mutability container, however it is traced.
///    `mem::swap` or `mem::replace` through such a `&mut` moves a reference past the write
///    barrier, and the collector frees an object that is still reachable. (This is why the std
///    containers and locks implement `Trace` only for [`Leaf`] contents.) Mutate references with
///    their own barriered methods (`Member::set`, `Value::set`, `GcVec`).
/// 3. **No panic.** The collector contains one — a panicking `trace` makes the cycle free nothing
///    and is reported on stderr with the type's name and counted in
///    [`Stats::failed_cycles`](crate::Stats::failed_cycles) — but every cycle fails the same way
///    while such an object is reachable, so nothing is ever freed.
/// 4. **No blocking and no heap use.** `trace` runs on the collector's threads and inside the
///    allocations of other threads (mark assists); it must not block, wait for another thread or
///    take a lock another thread may hold while it allocates, and it must not attach, open a
///    scope or collect (the crate refuses those with a panic, which rule 3 then contains).
/// 5. **Do not set `__WEAK_KIND`.** It is the crate's own mark of its weak-reference types.
///
/// ```
/// use lowpause::{Heap, Member, Trace};
///
/// #[derive(Trace)]
/// struct Node { value: u64, next: Member<Node> }
///
/// #[derive(Trace)]
/// enum Shape { Circle(f64), Group(Member<Node>), Empty }
///
/// assert!(<Node as Trace>::NEEDS_TRACE);
/// assert!(!<(u64, String) as Trace>::NEEDS_TRACE);
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot live in the lowpause heap: it does not implement `Trace`",
    label = "not `Trace`",
    note = "add `#[derive(Trace)]` to the type (and `#[trace(leaf)]` if it holds no GC reference)"
)]
pub unsafe trait Trace {
    /// Whether values of the type can hold GC references (false: never traced).
    const NEEDS_TRACE: bool;

    /// The crate's own weak-reference types mark themselves here (the verifier checks that every
    /// one it reaches is listed with the collector). Not part of the API: leave the default.
    #[doc(hidden)]
    const __WEAK_KIND: u8 = 0;

    /// Visits every GC reference of `self`, by calling `trace` on each field that may hold one.
    fn trace(&self, tracer: &mut Tracer<'_>);
}

/// A type that holds no GC reference anywhere inside. Std containers hold only `Leaf` values.
///
/// `#[derive(Trace)] #[trace(leaf)]` implements it after checking every field is `Leaf`.
///
/// # Safety
/// No value of the type may contain a GC reference, directly or through any container.
///
/// ```
/// use lowpause::{Leaf, Trace};
///
/// #[derive(Trace)]
/// #[trace(leaf)]
/// struct Point { x: f64, y: f64 }
///
/// #[derive(Trace)]
/// struct Polygon { points: Vec<Point> } // Vec<T> is Trace because Point is Leaf
///
/// fn assert_leaf<T: Leaf>() {}
/// assert_leaf::<Point>();
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` may hold GC references, so it is not `Leaf`",
    label = "std containers and locks (Vec, Box, HashMap, Mutex...) hold only `Leaf` values, and every field of a `#[trace(leaf)]` type must be `Leaf`",
    note = "GC references must live in the GC heap: use `Scope::alloc_slice` for an array of `Member`s, or a field of a GC object; a type with no GC reference can be declared `#[trace(leaf)]`"
)]
pub unsafe trait Leaf: Trace {}

macro_rules! leaf {
    ($($t:ty),* $(,)?) => {$(
        // SAFETY: the type holds no GC reference.
        unsafe impl Trace for $t {
            const NEEDS_TRACE: bool = false;
            #[inline]
            fn trace(&self, _: &mut Tracer<'_>) {}
        }
        // SAFETY: the type holds no GC reference.
        unsafe impl Leaf for $t {}
    )*};
}

leaf!(
    (),
    bool,
    char,
    u8,
    u16,
    u32,
    u64,
    u128,
    usize,
    i8,
    i16,
    i32,
    i64,
    i128,
    isize,
    f32,
    f64,
    String,
    &'static str,
    std::time::Duration,
    std::time::Instant,
    std::time::SystemTime,
    std::num::NonZeroU8,
    std::num::NonZeroU16,
    std::num::NonZeroU32,
    std::num::NonZeroU64,
    std::num::NonZeroUsize,
    std::num::NonZeroI32,
    std::num::NonZeroI64,
    std::cmp::Ordering,
    std::sync::atomic::AtomicBool,
    std::sync::atomic::AtomicU8,
    std::sync::atomic::AtomicU16,
    std::sync::atomic::AtomicU32,
    std::sync::atomic::AtomicU64,
    std::sync::atomic::AtomicUsize,
    std::sync::atomic::AtomicI8,
    std::sync::atomic::AtomicI16,
    std::sync::atomic::AtomicI32,
    std::sync::atomic::AtomicI64,
    std::sync::atomic::AtomicIsize,
    std::path::PathBuf,
    std::ffi::OsString,
    std::ffi::CString,
    Box<str>,
    std::sync::Arc<str>,
);

/// Containers and wrappers that hand out `&mut T` (or own `T` off-heap): `Trace` only for leaves.
macro_rules! leaf_container {
    ($([$($g:tt)*] $t:ty),* $(,)?) => {$(
        // SAFETY: the contents are `Leaf`, so the container holds no GC reference.
        unsafe impl<$($g)*> Trace for $t {
            const NEEDS_TRACE: bool = false;
            #[inline]
            fn trace(&self, _: &mut Tracer<'_>) {}
        }
        // SAFETY: as above.
        unsafe impl<$($g)*> Leaf for $t {}
    )*};
}

leaf_container!(
    [T: Leaf + ?Sized] Box<T>,
    [T: Leaf] Vec<T>,
    [T: Leaf] std::collections::VecDeque<T>,
    [T: Leaf] std::collections::LinkedList<T>,
    [T: Leaf] std::collections::BinaryHeap<T>,
    [T: Leaf] std::collections::BTreeSet<T>,
    [K: Leaf, V: Leaf] std::collections::BTreeMap<K, V>,
    [T: Leaf, S: 'static] std::collections::HashSet<T, S>,
    [K: Leaf, V: Leaf, S: 'static] std::collections::HashMap<K, V, S>,
    [T: Leaf + ?Sized] std::sync::Arc<T>,
    [T: Leaf + ?Sized] std::sync::Mutex<T>,
    [T: Leaf + ?Sized] std::sync::RwLock<T>,
    [T: Leaf] std::sync::OnceLock<T>,
    [T: Leaf + ?Sized] std::cell::Cell<T>,
    [T: Leaf + ?Sized] std::cell::RefCell<T>,
    [T: Leaf + ?Sized] parking_lot::Mutex<T>,
    [T: Leaf + ?Sized] parking_lot::RwLock<T>,
    [T: ?Sized] std::marker::PhantomData<T>,
);

// SAFETY: visits the contained value, if any.
unsafe impl<T: Trace> Trace for Option<T> {
    const NEEDS_TRACE: bool = T::NEEDS_TRACE;
    #[inline]
    fn trace(&self, tracer: &mut Tracer<'_>) {
        if let Some(v) = self {
            v.trace(tracer);
        }
    }
}
// SAFETY: a leaf inside holds no GC reference.
unsafe impl<T: Leaf> Leaf for Option<T> {}

// SAFETY: visits both variants' contents.
unsafe impl<T: Trace, E: Trace> Trace for Result<T, E> {
    const NEEDS_TRACE: bool = T::NEEDS_TRACE || E::NEEDS_TRACE;
    #[inline]
    fn trace(&self, tracer: &mut Tracer<'_>) {
        match self {
            Ok(v) => v.trace(tracer),
            Err(e) => e.trace(tracer),
        }
    }
}
// SAFETY: leaves inside hold no GC reference.
unsafe impl<T: Leaf, E: Leaf> Leaf for Result<T, E> {}

// SAFETY: visits every element.
unsafe impl<T: Trace, const N: usize> Trace for [T; N] {
    const NEEDS_TRACE: bool = T::NEEDS_TRACE;
    #[inline]
    fn trace(&self, tracer: &mut Tracer<'_>) {
        if T::NEEDS_TRACE {
            for e in self {
                e.trace(tracer);
            }
        }
    }
}
// SAFETY: leaves inside hold no GC reference.
unsafe impl<T: Leaf, const N: usize> Leaf for [T; N] {}

// SAFETY: a slice of leaves holds no GC reference (what makes `Box<[u8]>` a leaf).
unsafe impl<T: Leaf> Trace for [T] {
    const NEEDS_TRACE: bool = false;
    #[inline]
    fn trace(&self, _: &mut Tracer<'_>) {}
}
// SAFETY: as above.
unsafe impl<T: Leaf> Leaf for [T] {}

macro_rules! tuple {
    ($($n:tt $t:ident),+) => {
        // SAFETY: visits every component.
        unsafe impl<$($t: Trace),+> Trace for ($($t,)+) {
            const NEEDS_TRACE: bool = false $(|| $t::NEEDS_TRACE)+;
            #[inline]
            fn trace(&self, tracer: &mut Tracer<'_>) {
                $(self.$n.trace(tracer);)+
            }
        }
        // SAFETY: leaves inside hold no GC reference.
        unsafe impl<$($t: Leaf),+> Leaf for ($($t,)+) {}
    };
}
tuple!(0 A);
tuple!(0 A, 1 B);
tuple!(0 A, 1 B, 2 C);
tuple!(0 A, 1 B, 2 C, 3 D);
tuple!(0 A, 1 B, 2 C, 3 D, 4 E);
tuple!(0 A, 1 B, 2 C, 3 D, 4 E, 5 F);
tuple!(0 A, 1 B, 2 C, 3 D, 4 E, 5 F, 6 G);
tuple!(0 A, 1 B, 2 C, 3 D, 4 E, 5 F, 6 G, 7 H);

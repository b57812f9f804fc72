//! The safe surface: `Heap`, `HeapBuilder`, `Mutator`, `Scope`, `Gc`, `Member`, `Root`.
//!
//! Why it is sound, in short (docs/design.md has the long form):
//! - a `Gc<'s, T>` is branded with its scope's fresh, invariant lifetime, so it cannot leave the
//!   scope, cannot meet another heap's scope, and cannot be stored in the heap (objects are
//!   `'static`); it is `!Send`. The collector never frees an object a running scope can reach;
//! - a `Member` can only be made null, is never handed out by value, and checks on every use
//!   that it lies inside the scope's heap, so every non-null `Member` is a field of a heap
//!   object that was set through the barrier from a `Gc` of the same heap;
//! - objects are reached only by shared reference, so a `Member` cannot be moved out of the
//!   heap; std containers hold only `Leaf` values (no GC references);
//! - a `Root` holds its heap's `Arc`, and its heap identity is that pointer.

pub(crate) mod error;
pub(crate) mod finalizer;
pub(crate) mod gc;
pub(crate) mod heap;
pub(crate) mod local;
pub(crate) mod member;
pub(crate) mod mutator;
pub(crate) mod root;
pub(crate) mod scope;
pub(crate) mod session;
pub(crate) mod table;
pub(crate) mod value;
pub(crate) mod vec;
pub(crate) mod weak;

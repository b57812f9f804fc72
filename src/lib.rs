//! # lowpause
//!
//! A garbage-collected heap for Rust, shared by many threads: objects link into arbitrary graphs
//! (cycles included) with [`Member`] fields, threads keep them alive with [`Root`]s, and a
//! tri-colour mark-sweep collector reclaims what is unreachable.
//!
//! ```
//! use lowpause::{Gc, Heap, Member, Root, Trace};
//!
//! #[derive(Trace)]
//! struct Node { value: u64, next: Member<Node> }
//!
//! let heap = Heap::new();                     // a cheap Clone + Send + Sync handle
//! let mut m = heap.attach();                  // this thread becomes a mutator
//! let keep: Root<Node> = m.scope(|s| {        // a mutation scope
//!     let a: Gc<'_, Node> = s.alloc(Node { value: 1, next: Member::null() });
//!     let b = s.alloc(Node { value: 2, next: Member::null() });
//!     b.next.set(s, Some(a));                 // references are set after allocation
//!     a.next.set(s, Some(b));                 // a cycle
//!     s.root(b)                               // a Root outlives the scope
//! });
//! m.scope(|s| assert_eq!(keep.get(s).next.get(s).unwrap().value, 1));
//! m.collect();                                // a full collection, outside any scope
//! println!("{}", heap.stats());
//! ```
//!
//! The design — heap layout, the handshake with mutator threads, the barrier, and why the API is
//! sound — is in `docs/design.md`.

#![warn(missing_docs)]

extern crate self as lowpause;

mod api;
mod collector;
mod memory;
mod object;
mod sync;
mod telemetry;
mod trace;

pub use api::error::ConfigError;
pub use api::gc::{Gc, GcObject};
pub use api::heap::{Heap, HeapBuilder};
pub use api::local::{LocalStack, StackView};
pub use api::member::Member;
pub use api::mutator::Mutator;
pub use api::root::Root;
pub use api::scope::Scope;
pub use api::session::Session;
pub use api::table::GcTable;
pub use api::value::{Value, ValueRef};
pub use api::vec::{GcVec, Slot};
pub use api::weak::{Weak, WeakMember, WeakTable};
pub use collector::Tracer;
pub use lowpause_derive::Trace;
pub use telemetry::metrics::{GcCpu, Metrics};
pub use telemetry::profile::{HeapProfile, TypeProfile};
pub use telemetry::stalls::{StallCause, StallSummary};
pub use telemetry::Stats;
pub use trace::{Leaf, Trace};

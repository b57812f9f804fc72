//! Helpers shared by the integration tests.
#![allow(dead_code)]

use lowpause::{Heap, Member, Mutator, Root, Trace};
use std::any::Any;
use std::panic::{catch_unwind, AssertUnwindSafe};

#[derive(Trace)]
pub struct Node {
    pub value: u64,
    pub next: Member<Node>,
}

/// Runs `f`, expects it to panic, and returns the panic message.
pub fn panic_message(f: impl FnOnce()) -> String {
    let err = catch_unwind(AssertUnwindSafe(f)).expect_err("expected a panic");
    message_of(&*err)
}

pub fn message_of(err: &(dyn Any + Send)) -> String {
    err.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| err.downcast_ref::<String>().cloned())
        .unwrap_or_default()
}

/// Allocates a short rooted list, collects, and checks it: the heap still works.
pub fn assert_heap_usable(heap: &Heap, m: &mut Mutator) {
    let r: Root<Node> = m.scope(|s| {
        let a = s.alloc(Node { value: 10, next: Member::null() });
        let b = s.alloc(Node { value: 20, next: Member::null() });
        a.next.set(s, Some(b));
        s.root(a)
    });
    m.collect();
    m.scope(|s| {
        let a = r.get(s);
        assert_eq!(a.value, 10);
        assert_eq!(a.next.get(s).unwrap().value, 20);
    });
    assert!(heap.stats().cycles >= 1);
}

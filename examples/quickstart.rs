//! The quick start: build a cyclic graph in a lowpause heap, share it with another thread, drop
//! the roots, and watch the collector reclaim the cycles.
//!
//! Run: `cargo run --release --example quickstart`

use lowpause::{Gc, Heap, Member, Root, Scope, Trace};

/// A node of a ring: every node points to the next, the last back to the first.
#[derive(Trace)]
struct Node {
    value: u64,
    label: String,
    next: Member<Node>,
}

/// Builds a ring of `n` nodes and returns its first node.
fn ring<'s>(s: &Scope<'s>, n: u64) -> Gc<'s, Node> {
    let first = s.alloc(Node { value: 0, label: "node 0".into(), next: Member::null() });
    let mut last = first;
    for i in 1..n {
        let node = s.alloc(Node { value: i, label: format!("node {i}"), next: Member::null() });
        last.next.set(s, Some(node)); // references are set after allocation, through the barrier
        last = node;
    }
    last.next.set(s, Some(first)); // close the cycle
    first
}

/// Walks the ring once and sums the values.
fn sum<'s>(s: &Scope<'s>, first: Gc<'s, Node>) -> u64 {
    let mut total = first.value;
    let mut cur = first.next.get(s).expect("a ring has no null link");
    while !Gc::ptr_eq(cur, first) {
        total += cur.value;
        cur = cur.next.get(s).expect("a ring has no null link");
    }
    total
}

fn main() {
    let heap = Heap::new(); // a cheap Clone + Send + Sync handle
    let mut m = heap.attach(); // this thread becomes a mutator

    // Build two rings; keep one with a Root, let the other become garbage.
    let keep: Root<Node> = m.scope(|s| {
        ring(s, 10_000); // unreachable as soon as the scope ends: a cycle nobody points to
        s.root(ring(s, 1_000))
    });

    // A Root is Send + Sync: another thread can read the same ring in its own scope.
    let shared = keep.clone();
    let h2 = heap.clone();
    let from_thread = std::thread::spawn(move || {
        let mut m2 = h2.attach();
        m2.scope(|s| sum(s, shared.get(s)))
    })
    .join()
    .unwrap();

    m.collect(); // a full collection, outside any scope
    let after_first = heap.stats();
    m.scope(|s| {
        let first = keep.get(s);
        println!("ring of 1,000 nodes survives: sum = {} (another thread saw {from_thread})", sum(s, first));
        println!("second node is labelled {:?}", first.next.get(s).unwrap().label);
    });
    println!(
        "after collecting the unrooted ring: {} live objects, {} freed",
        after_first.live_objects, after_first.freed_objects
    );

    drop(keep);
    m.collect();
    let st = heap.stats();
    println!("after dropping the root:            {} live objects, {} freed", st.live_objects, st.freed_objects);
    println!("{st}");
}

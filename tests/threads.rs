//! Several threads sharing one heap.

mod common;
use common::Node;
use lowpause::{Gc, Heap, Member, Root};
use std::sync::{mpsc, Arc, Barrier};

fn list<'s>(s: &lowpause::Scope<'s>, base: u64, n: u64) -> Gc<'s, Node> {
    let head = s.alloc(Node { value: base, next: Member::null() });
    let mut tail = head;
    for i in 1..n {
        let node = s.alloc(Node { value: base + i, next: Member::null() });
        tail.next.set(s, Some(node));
        tail = node;
    }
    head
}

fn walk<'s>(s: &lowpause::Scope<'s>, head: Gc<'s, Node>) -> Vec<u64> {
    let mut out = vec![head.value];
    let mut cur = head.next.get(s);
    while let Some(n) = cur {
        if Gc::ptr_eq(n, head) {
            break;
        }
        out.push(n.value);
        cur = n.next.get(s);
    }
    out
}

#[test]
fn two_threads_share_a_graph_through_roots_and_link_into_each_other() {
    let heap = Heap::new();
    let (tx_a, rx_a) = mpsc::channel::<Root<Node>>();
    let (tx_b, rx_b) = mpsc::channel::<Root<Node>>();
    let barrier = Arc::new(Barrier::new(2));
    let spawn =
        |base: u64, tx: mpsc::Sender<Root<Node>>, rx: mpsc::Receiver<Root<Node>>, heap: Heap, barrier: Arc<Barrier>| {
            std::thread::spawn(move || {
                let mut m = heap.attach();
                let mine = m.scope(|s| s.root(list(s, base, 100)));
                tx.send(mine.clone()).unwrap();
                let theirs = rx.recv().unwrap();
                // Link the tail of my list to the head of theirs, and leave lots of garbage behind.
                m.scope(|s| {
                    let mut cur = mine.get(s);
                    while let Some(n) = cur.next.get(s) {
                        cur = n;
                    }
                    cur.next.set(s, Some(theirs.get(s)));
                    for i in 0..10_000 {
                        list(s, 1_000_000 + i, 3);
                    }
                });
                drop(theirs);
                barrier.wait();
                m.collect();
                barrier.wait();
                let seen = m.scope(|s| walk(s, mine.get(s)));
                (mine, seen)
            })
        };
    let a = spawn(0, tx_a, rx_b, heap.clone(), barrier.clone());
    let b = spawn(1000, tx_b, rx_a, heap.clone(), barrier);
    let (ra, seen_a) = a.join().unwrap();
    let (_rb, seen_b) = b.join().unwrap();
    let first: Vec<u64> = (0..100).collect();
    let second: Vec<u64> = (1000..1100).collect();
    assert_eq!(seen_a, [first.clone(), second.clone()].concat());
    assert_eq!(seen_b, [second, first].concat());
    let st = heap.stats();
    assert_eq!(st.live_objects, 200, "{st}");
    assert!(st.freed_objects >= 60_000, "{st}");
    drop(ra);
}

#[test]
fn automatic_cycles_with_four_threads_keep_every_rooted_list_intact() {
    four_threads_under_automatic_cycles(0);
    four_threads_under_automatic_cycles(2);
}

fn four_threads_under_automatic_cycles(workers: usize) {
    let heap = Heap::builder().gc_percent(50).workers(workers).verify(true).build().unwrap();
    let threads: Vec<_> = (0..4u64)
        .map(|t| {
            let heap = heap.clone();
            std::thread::spawn(move || {
                let mut m = heap.attach();
                let mut roots = Vec::new();
                for round in 0..200u64 {
                    let r = m.scope(|s| {
                        for i in 0..500 {
                            list(s, i, 4); // garbage
                        }
                        s.root(list(s, t * 1_000_000 + round * 100, 20))
                    });
                    roots.push(r);
                    if roots.len() > 20 {
                        roots.remove(0);
                    }
                }
                m.scope(|s| {
                    for (k, r) in roots.iter().enumerate() {
                        let round = 200 - roots.len() as u64 + k as u64;
                        let want: Vec<u64> = (0..20).map(|i| t * 1_000_000 + round * 100 + i).collect();
                        assert_eq!(walk(s, r.get(s)), want);
                    }
                });
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let st = heap.stats();
    if workers == 0 {
        // Synchronous cycles run in the mutators, so their number is deterministic.
        assert!(st.cycles >= 3, "the heap passed its goal several times: {st}");
    }
    heap.attach().collect();
    assert!(heap.stats().cycles > st.cycles);
}

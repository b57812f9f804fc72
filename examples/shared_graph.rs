//! Several threads mutate one shared cyclic graph while the collector runs cycles concurrently.
//! Prints the cycles completed and the longest time any thread waited on the collector.
//!
//! Run: `cargo run --release --example shared_graph -- [threads] [seconds]` (defaults: 3, 5)

use lowpause::{Gc, Heap, Member, Root, Scope, Trace};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const NODES: usize = 50_000;

/// A node of the shared graph: a value and two outgoing edges (the graph is full of cycles).
#[derive(Trace)]
struct Node {
    value: u64,
    next: Member<Node>,
    jump: Member<Node>,
}

fn new_node<'s>(s: &Scope<'s>, value: u64) -> Gc<'s, Node> {
    s.alloc(Node { value, next: Member::null(), jump: Member::null() })
}

fn main() {
    let mut args = std::env::args().skip(1);
    let threads: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(3);
    let seconds: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(5);

    let heap = Heap::new();
    // The graph: a table of nodes, each linked to its successor (a ring) and to a random node.
    let table: Root<[Member<Node>]> = heap.attach().scope(|s| {
        let t = s.alloc_slice(NODES, |_| Member::null());
        for (i, slot) in t.iter().enumerate() {
            slot.set(s, Some(new_node(s, i as u64)));
        }
        for i in 0..NODES {
            let n = t[i].get(s).unwrap();
            n.next.set(s, t[(i + 1) % NODES].get(s));
            n.jump.set(s, t[(i * 7919) % NODES].get(s));
        }
        s.root(t)
    });

    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..threads)
        .map(|t| {
            let (heap, table, stop) = (heap.clone(), table.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut m = heap.attach();
                let mut x = 0x9E37_79B9_7F4A_7C15u64 ^ t as u64;
                let mut rand = move || {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as usize
                };
                let (mut ops, mut longest_scope) = (0u64, Duration::ZERO);
                while !stop.load(Ordering::Relaxed) {
                    let start = Instant::now();
                    m.scope(|s| {
                        let tab = table.get(s);
                        for _ in 0..1000 {
                            let i = rand() % NODES;
                            let old = tab[i].get(s).unwrap();
                            // Replace node i with a fresh one linked into the ring. The old node
                            // drops its own edges (deletions the barrier must see) and stays
                            // reachable only from `jump` edges that still point to it.
                            let fresh = new_node(s, old.value + NODES as u64);
                            fresh.next.set(s, tab[(i + 1) % NODES].get(s));
                            fresh.jump.set(s, tab[rand() % NODES].get(s));
                            tab[i].set(s, Some(fresh));
                            tab[(i + NODES - 1) % NODES].get(s).unwrap().next.set(s, Some(fresh));
                            old.next.set(s, None);
                            old.jump.set(s, None);
                            ops += 1;
                        }
                    });
                    longest_scope = longest_scope.max(start.elapsed());
                }
                (ops, longest_scope)
            })
        })
        .collect();

    std::thread::sleep(Duration::from_secs(seconds));
    stop.store(true, Ordering::Relaxed);
    let mut total_ops = 0;
    for (t, w) in workers.into_iter().enumerate() {
        let (ops, longest) = w.join().unwrap();
        total_ops += ops;
        println!("thread {t}: {ops} node replacements, longest scope of 1000 ops {longest:?}");
    }
    // Every slot still holds the latest node of its position, readable, with a successor.
    let mut m = heap.attach();
    m.collect();
    let ring_ok = m.scope(|s| {
        table.get(s).iter().enumerate().all(|(i, slot)| {
            let n = slot.get(s).unwrap();
            n.value as usize % NODES == i && n.next.get(s).is_some()
        })
    });
    let st = heap.stats();
    println!("{total_ops} replacements by {threads} threads in {seconds} s; graph intact: {ring_ok}");
    println!("cycles completed: {}", st.cycles);
    println!("longest time any thread waited on the collector: {:?}", st.max_mutator_stall);
    println!("longest handshake (time to reach every thread's safepoint): {:?}", st.max_handshake_wait);
    println!("{st}");
    assert!(ring_ok, "the graph was corrupted");
}

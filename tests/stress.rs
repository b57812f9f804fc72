//! Stress: several threads mutate one shared random graph — relinking edges, replacing nodes,
//! walking paths, rooting and unrooting, allocating garbage — while another thread runs cycles back
//! to back, with verification on. Every node read is checked for corruption.
//!
//! Runs for `LOWPAUSE_STRESS_SECS` seconds per mode (default 2), in concurrent mode (2 mark
//! workers) and in synchronous mode (cycles driven by the mutators themselves).

use lowpause::{Gc, Heap, Member, Root, Scope, Trace};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const SLOTS: usize = 1024;
const MUTATORS: usize = 3;

#[derive(Trace)]
struct SNode {
    id: u64,
    check: u64,
    name: Box<str>, // drop glue: these nodes live in spans swept only by the collector
    data: [u64; 4],
    edges: [Member<SNode>; 3],
}

fn check_of(id: u64) -> u64 {
    id.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xDEAD_BEEF
}

fn node<'s>(s: &Scope<'s>, id: u64) -> Gc<'s, SNode> {
    s.alloc(SNode {
        id,
        check: check_of(id),
        name: format!("n{id}").into_boxed_str(),
        data: [id, id + 1, id + 2, id + 3],
        edges: [Member::null(), Member::null(), Member::null()],
    })
}

fn verify_node(n: &SNode) {
    assert_eq!(n.check, check_of(n.id), "node {} corrupted (check)", n.id);
    assert_eq!(n.data, [n.id, n.id + 1, n.id + 2, n.id + 3], "node {} corrupted (data)", n.id);
    assert_eq!(&*n.name, format!("n{}", n.id), "node {} corrupted (name)", n.id);
}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn stress(workers: usize) {
    let secs: u64 = std::env::var("LOWPAUSE_STRESS_SECS").ok().and_then(|v| v.parse().ok()).unwrap_or(2);
    let heap = Heap::builder().workers(workers).verify(true).gc_percent(25).build().unwrap();
    let ids = Arc::new(AtomicU64::new(1));
    let table: Root<[Member<SNode>]> = {
        let mut m = heap.attach();
        m.scope(|s| {
            let t = s.alloc_slice(SLOTS, |_| Member::null());
            for slot in t.iter() {
                slot.set(s, Some(node(s, ids.fetch_add(1, Ordering::Relaxed))));
            }
            s.root(t)
        })
    };
    let stop = Arc::new(AtomicBool::new(false));
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut threads = Vec::new();
    for t in 0..MUTATORS {
        let (heap, table, ids, stop) = (heap.clone(), table.clone(), ids.clone(), stop.clone());
        threads.push(std::thread::spawn(move || {
            let mut m = heap.attach();
            let mut rng = Rng(0x1234_5678 + t as u64 * 0x9E37);
            let mut roots: Vec<Root<SNode>> = Vec::new();
            let mut reads = 0u64;
            while !stop.load(Ordering::Relaxed) {
                m.scope(|s| {
                    let tab = table.get(s);
                    let mut held: Vec<Gc<'_, SNode>> = Vec::new();
                    for _ in 0..200 {
                        let slot = &tab[rng.below(SLOTS)];
                        let Some(n) = slot.get(s) else { continue };
                        verify_node(&n);
                        reads += 1;
                        match rng.below(10) {
                            // Replace a node (the old one may become garbage while `held` may
                            // still point to it).
                            0 | 1 => {
                                let fresh = node(s, ids.fetch_add(1, Ordering::Relaxed));
                                fresh.edges[0].set(s, tab[rng.below(SLOTS)].get(s));
                                slot.set(s, Some(fresh));
                                held.push(n);
                            }
                            // Relink an edge to another node, or cut it.
                            2..=4 => {
                                let other = tab[rng.below(SLOTS)].get(s);
                                n.edges[rng.below(3)].set(s, if rng.below(4) == 0 { None } else { other });
                            }
                            // Walk a path, checking every node.
                            5 | 6 => {
                                let mut cur = n;
                                for _ in 0..16 {
                                    match cur.edges[rng.below(3)].get(s) {
                                        Some(next) => {
                                            verify_node(&next);
                                            reads += 1;
                                            cur = next;
                                        }
                                        None => break,
                                    }
                                }
                                held.push(cur); // keep it across later mutations in this scope
                            }
                            // Root or unroot.
                            7 => roots.push(s.root(n)),
                            8 if !roots.is_empty() => {
                                let r = roots.swap_remove(rng.below(roots.len()));
                                verify_node(&r.get(s));
                            }
                            // Garbage, some of it pointing into the graph.
                            _ => {
                                let g = node(s, 0);
                                g.edges[1].set(s, Some(n));
                                s.alloc_slice(rng.below(3000), |i| i as u32);
                            }
                        }
                    }
                    for h in held {
                        verify_node(&h);
                    }
                    for r in &roots {
                        verify_node(&r.get(s));
                    }
                });
                if roots.len() > 64 {
                    roots.drain(..32);
                }
            }
            reads
        }));
    }
    // Back-to-back cycles from one more thread.
    let collector = {
        let (heap, stop) = (heap.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut m = heap.attach();
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                m.collect();
                n += 1;
            }
            n
        })
    };
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    stop.store(true, Ordering::Relaxed);
    let reads: u64 = threads.into_iter().map(|t| t.join().unwrap()).sum();
    let explicit = collector.join().unwrap();
    let mut m = heap.attach();
    m.collect();
    m.scope(|s| {
        for slot in table.get(s).iter() {
            verify_node(&slot.get(s).unwrap());
        }
    });
    let st = heap.stats();
    println!("workers={workers}: {reads} node reads verified, {explicit} explicit collects\n{st}");
    assert!(st.cycles >= 3, "{st}");
    assert!(reads > 1000);
}

#[test]
fn concurrent_cycles_under_three_mutating_threads() {
    stress(2);
}

#[test]
fn synchronous_cycles_under_three_mutating_threads() {
    stress(0);
}

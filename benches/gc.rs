//! Collector micro-benchmarks: `Member::set` with the collector idle and while it marks (the
//! barrier), marking and sweeping throughput, and the latency of a collection's handshakes with
//! 1, 2 and 4 threads running scopes.
//!
//! Run: `cargo bench --bench gc`

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use lowpause::{Heap, Member, Trace};
use std::hint::black_box;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Trace)]
struct Node {
    next: Member<Node>,
    other: Member<Node>,
    value: u64,
}

/// Times `iters` stores, each linking one of the table's nodes to the next.
fn link_nodes(s: &lowpause::Scope<'_>, nodes: &lowpause::Root<[Member<Node>]>, iters: u64) -> Duration {
    let t = nodes.get(s);
    let start = Instant::now();
    for i in 0..iters as usize {
        let a = t[i % 1024].get(s).unwrap();
        a.next.set(s, t[(i + 1) % 1024].get(s));
    }
    start.elapsed()
}

fn member_set(c: &mut Criterion) {
    let mut g = c.benchmark_group("member_set");
    g.throughput(Throughput::Elements(1));
    let heap = Heap::builder().workers(0).build().unwrap();
    let mut m = heap.attach();
    let nodes = m.scope(|s| s.root(s.alloc_slice(1024, |_| Member::<Node>::null())));
    m.scope(|s| {
        for slot in nodes.get(s).iter() {
            slot.set(s, Some(s.alloc(Node { next: Member::null(), other: Member::null(), value: 1 })));
        }
    });
    g.bench_function("idle", |b| b.iter_custom(|iters| m.scope(|s| link_nodes(s, &nodes, iters))));
    g.bench_function("marking", |b| {
        b.iter_custom(|iters| {
            m.scope(|s| {
                // Allocate until this thread has turned its barrier on for a new cycle (with
                // workers(0) the cycle then waits for this scope's end to go on marking).
                while !heap.__barrier_on() {
                    black_box(s.alloc([0u64; 64]));
                }
                link_nodes(s, &nodes, iters)
            })
        })
    });
    g.finish();
}

/// A heap holding `n` live nodes, each pointing to two others.
fn pointer_heap(n: usize) -> (Heap, lowpause::Mutator, lowpause::Root<[Member<Node>]>) {
    let heap = Heap::builder().workers(0).build().unwrap();
    let mut m = heap.attach();
    let table = m.scope(|s| s.root(s.alloc_slice(n, |_| Member::<Node>::null())));
    for chunk in (0..n).step_by(10_000) {
        m.scope(|s| {
            let t = table.get(s);
            for i in chunk..(chunk + 10_000).min(n) {
                t[i].set(s, Some(s.alloc(Node { next: Member::null(), other: Member::null(), value: i as u64 })));
            }
        });
    }
    m.scope(|s| {
        let t = table.get(s);
        for i in 0..n {
            let a = t[i].get(s).unwrap();
            a.next.set(s, t[(i * 7 + 1) % n].get(s));
            a.other.set(s, t[(i * 13 + 5) % n].get(s));
        }
    });
    m.collect();
    (heap, m, table)
}

fn mark_and_sweep(c: &mut Criterion) {
    let n = 1 << 20;
    let mut g = c.benchmark_group("collect");
    g.sample_size(10);
    {
        // Everything live: the collection is a mark of the whole heap (its sweep finds nothing).
        let (heap, mut m, _table) = pointer_heap(n);
        let live = heap.stats().live_bytes;
        g.throughput(Throughput::Bytes(live as u64));
        g.bench_function("mark_1M_live_nodes", |b| b.iter(|| m.collect()));
    }
    {
        // Everything dead: the collection is a sweep of the whole heap.
        let heap = Heap::builder().workers(0).build().unwrap();
        let mut m = heap.attach();
        let bytes = (n * 48) as u64;
        g.throughput(Throughput::Bytes(bytes));
        g.bench_function("sweep_1M_dead_nodes", |b| {
            b.iter_custom(|iters| {
                let mut t = Duration::ZERO;
                for _ in 0..iters {
                    heap.set_gc_percent(None).unwrap();
                    for chunk in (0..n).step_by(10_000) {
                        m.scope(|s| {
                            for i in chunk..(chunk + 10_000).min(n) {
                                black_box(s.alloc(Node {
                                    next: Member::null(),
                                    other: Member::null(),
                                    value: i as u64,
                                }));
                            }
                        });
                    }
                    heap.set_gc_percent(Some(100)).unwrap();
                    let start = Instant::now();
                    m.collect();
                    t += start.elapsed();
                }
                t
            })
        });
    }
    g.finish();
}

fn handshake(c: &mut Criterion) {
    let mut g = c.benchmark_group("handshake");
    g.sample_size(20);
    for threads in [1usize, 2, 4] {
        let heap = Heap::builder().workers(1).build().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                let (heap, stop) = (heap.clone(), stop.clone());
                std::thread::spawn(move || {
                    let mut m = heap.attach();
                    while !stop.load(Ordering::Relaxed) {
                        m.scope(|s| {
                            for i in 0..16u64 {
                                black_box(s.alloc(i));
                            }
                        });
                    }
                })
            })
            .collect();
        let mut m = heap.attach();
        // A full cycle on a small heap is mostly its three handshakes with the running threads.
        g.bench_with_input(BenchmarkId::new("collect_with_threads_in_scopes", threads), &threads, |b, _| {
            b.iter(|| m.collect())
        });
        stop.store(true, Ordering::Relaxed);
        for w in workers {
            w.join().unwrap();
        }
        println!("{threads} threads: longest handshake wait {:?}", heap.stats().max_handshake_wait);
    }
    g.finish();
}

/// An empty scope, entered and left, on an idle heap: the safepoint every batch of work pays;
/// beside it a `parking_lot` mutex locked and unlocked (the cheapest std-like critical section).
fn scope_entry(c: &mut Criterion) {
    let mut g = c.benchmark_group("scope");
    let heap = Heap::builder().workers(1).build().unwrap();
    let mut m = heap.attach();
    g.bench_function("empty scope", |b| b.iter(|| m.scope(|s| black_box(s as *const _ as usize))));
    let lock = parking_lot::Mutex::new(0usize);
    g.bench_function("parking_lot lock+unlock", |b| b.iter(|| *black_box(&lock).lock() += 1));
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = member_set, mark_and_sweep, handshake, scope_entry
}
criterion_main!(benches);

//! Allocation cost: a 32-byte object allocated and initialised inside a scope, against `Box::new`
//! of the same value with the system allocator, measured in the same run.
//!
//! Both sides pay for reclaiming what they allocate: `Box` frees each box as it is dropped;
//! lowpause allocates in scopes of 10,000 objects and its collector runs whenever the heap
//! passes its goal, and that time is inside the measurement.
//!
//! Run: `cargo bench --bench alloc`

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use lowpause::{Heap, Member, Mutator, Scope, Trace};
use std::hint::black_box;
use std::time::{Duration, Instant};

/// 32 bytes, no GC references (a no-scan span).
type Leaf32 = [u64; 4];

/// 32 bytes with GC references (a scan span).
#[derive(Trace)]
struct Node32 {
    value: u64,
    left: Member<Node32>,
    right: Member<Node32>,
    extra: u64,
}

const BATCH: u64 = 10_000;

/// Times `iters` calls of `one`, in scopes of [`BATCH`] calls, scope entry and exit (and any
/// collection they start) included.
fn batched(m: &mut Mutator, iters: u64, mut one: impl FnMut(&Scope<'_>)) -> Duration {
    let start = Instant::now();
    let mut left = iters;
    while left > 0 {
        let n = left.min(BATCH);
        m.scope(|s| (0..n).for_each(|_| one(s)));
        left -= n;
    }
    start.elapsed()
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("alloc_32B");
    g.throughput(Throughput::Elements(1));

    g.bench_function("Box::new", |b| b.iter(|| black_box(Box::new(black_box([1u64, 2, 3, 4])))));

    g.bench_function("Box::new(node)", |b| {
        b.iter(|| {
            black_box(Box::new(black_box(Node32 { value: 1, left: Member::null(), right: Member::null(), extra: 2 })))
        })
    });

    let heap = Heap::new();
    let mut m = heap.attach();
    g.bench_function("lowpause::alloc(leaf)", |b| {
        b.iter_custom(|iters| {
            batched(&mut m, iters, |s| {
                black_box(s.alloc::<Leaf32>(black_box([1, 2, 3, 4])));
            })
        })
    });
    g.bench_function("lowpause::alloc(node)", |b| {
        b.iter_custom(|iters| {
            batched(&mut m, iters, |s| {
                black_box(s.alloc(black_box(Node32 {
                    value: 1,
                    left: Member::null(),
                    right: Member::null(),
                    extra: 2,
                })));
            })
        })
    });
    g.finish();
    println!("{}", heap.stats());
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(4)).warm_up_time(Duration::from_secs(1));
    targets = bench
}
criterion_main!(benches);

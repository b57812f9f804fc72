//! The mutator's fast paths against their plain std counterparts, in one run: a reference read
//! and store (`Member`, `Value` vs an `AtomicPtr` load and store), a local slot's push and pop
//! (`LocalStack`, its `StackView` vs a `Vec`), a table lookup (`GcTable` vs a `hashbrown` map), an
//! allocation (`Scope::alloc` vs `Box::new`) and a safepoint poll (vs a scope entry and exit).
//! Collector idle (no cycle runs while these are timed: `workers(0)`, `gc_percent_off`).
//!
//! Run: `cargo bench --bench fast_paths`

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use lowpause::{GcTable, Heap, LocalStack, Member, Value, ValueRef};
use std::hint::black_box;
use std::sync::atomic::{AtomicPtr, Ordering};
use std::time::{Duration, Instant};

const N: usize = 1024;

fn quiet_heap() -> Heap {
    Heap::builder().workers(0).gc_percent_off().build().unwrap()
}

fn reads_and_stores(c: &mut Criterion) {
    let heap = quiet_heap();
    let mut m = heap.attach();
    let members = m.scope(|s| s.root(s.alloc_slice(N, |_| Member::<u64>::null())));
    let values = m.scope(|s| s.root(s.alloc_slice(N, |_| Value::<u64>::nil())));
    let targets = m.scope(|s| s.root(s.alloc_slice(N, |i| i as u64)));
    let atomics: Vec<AtomicPtr<u64>> = (0..N).map(|_| AtomicPtr::new(std::ptr::null_mut())).collect();
    let boxes: Vec<Box<u64>> = (0..N as u64).map(Box::new).collect();
    m.scope(|s| {
        let t = targets.get(s);
        for (i, (mm, v)) in members.get(s).iter().zip(values.get(s).iter()).enumerate() {
            let one = s.alloc(t[i]);
            mm.set(s, Some(one));
            v.set(s, ValueRef::Object(one));
        }
    });
    for (a, b) in atomics.iter().zip(&boxes) {
        a.store(&**b as *const u64 as *mut u64, Ordering::Relaxed);
    }

    let mut g = c.benchmark_group("read");
    g.throughput(Throughput::Elements(N as u64));
    g.bench_function("AtomicPtr::load (Acquire)", |b| {
        b.iter(|| {
            let mut sum = 0u64;
            for a in &atomics {
                // SAFETY: every pointer is a live Box.
                sum += unsafe { *a.load(Ordering::Acquire) };
            }
            black_box(sum)
        })
    });
    g.bench_function("Member::get", |b| {
        b.iter(|| {
            m.scope(|s| {
                let mut sum = 0u64;
                for mm in members.get(s).iter() {
                    sum += *mm.get(s).unwrap();
                }
                black_box(sum)
            })
        })
    });
    g.bench_function("Value::get", |b| {
        b.iter(|| {
            m.scope(|s| {
                let mut sum = 0u64;
                for v in values.get(s).iter() {
                    if let ValueRef::Object(o) = v.get(s) {
                        sum += *o;
                    }
                }
                black_box(sum)
            })
        })
    });
    g.finish();

    let mut g = c.benchmark_group("store");
    g.throughput(Throughput::Elements(N as u64));
    g.bench_function("AtomicPtr::store (Release)", |b| {
        b.iter(|| {
            for (i, a) in atomics.iter().enumerate() {
                a.store(&*boxes[(i + 1) % N] as *const u64 as *mut u64, Ordering::Release);
            }
        })
    });
    g.bench_function("Member::set", |b| {
        b.iter(|| {
            m.scope(|s| {
                let ms = members.get(s);
                for (i, mm) in ms.iter().enumerate() {
                    mm.set(s, ms[(i + 1) % N].get(s));
                }
            })
        })
    });
    g.bench_function("Value::set", |b| {
        b.iter(|| {
            m.scope(|s| {
                let vs = values.get(s);
                for (i, v) in vs.iter().enumerate() {
                    v.set(s, vs[(i + 1) % N].get(s));
                }
            })
        })
    });
    g.finish();
}

fn local_slots(c: &mut Criterion) {
    let heap = quiet_heap();
    let mut m = heap.attach();
    let mut stack = LocalStack::<u64>::with_capacity(&m, N);
    let mut vec: Vec<*mut u8> = Vec::with_capacity(N);
    let mut g = c.benchmark_group("local slot push+pop");
    g.throughput(Throughput::Elements(N as u64));
    g.bench_function("Vec push+pop", |b| {
        b.iter(|| {
            for i in 0..N {
                vec.push(black_box(std::ptr::without_provenance_mut(i)));
            }
            for _ in 0..N {
                black_box(vec.pop());
            }
        })
    });
    g.bench_function("LocalStack push+pop", |b| {
        b.iter(|| {
            m.scope(|s| {
                for i in 0..N {
                    stack.push(s, ValueRef::Number(black_box(i as f64)));
                }
                for _ in 0..N {
                    black_box(stack.pop(s));
                }
            })
        })
    });
    g.bench_function("StackView push+pop", |b| {
        b.iter(|| {
            m.scope(|s| {
                let mut v = stack.view(s);
                for i in 0..N {
                    v.push(ValueRef::Number(black_box(i as f64)));
                }
                for _ in 0..N {
                    black_box(v.pop());
                }
            })
        })
    });
    g.finish();
}

fn tables(c: &mut Criterion) {
    let heap = quiet_heap();
    let mut m = heap.attach();
    let keys = m.scope(|s| s.root(s.alloc_slice(64, |_| Member::<u64>::null())));
    let table = m.scope(|s| {
        let t = s.alloc(GcTable::<u64, Value<u64>>::new());
        for (i, k) in keys.get(s).iter().enumerate() {
            let key = s.alloc(i as u64);
            k.set(s, Some(key));
            t.insert(s, key, ValueRef::Number(i as f64));
        }
        s.root(t)
    });
    let addrs: Vec<usize> =
        m.scope(|s| keys.get(s).iter().map(|k| &*k.get(s).unwrap() as *const u64 as usize).collect());
    let map: hashbrown::HashMap<usize, f64> = addrs.iter().enumerate().map(|(i, &a)| (a, i as f64)).collect();
    let mut g = c.benchmark_group("table lookup (64 keys)");
    g.throughput(Throughput::Elements(64));
    g.bench_function("hashbrown::HashMap::get", |b| {
        b.iter(|| {
            let mut sum = 0.0;
            for a in &addrs {
                sum += map.get(black_box(a)).unwrap();
            }
            black_box(sum)
        })
    });
    g.bench_function("GcTable::get", |b| {
        b.iter(|| {
            m.scope(|s| {
                let t = table.get(s);
                let mut sum = 0.0;
                for k in keys.get(s).iter() {
                    if let Some(ValueRef::Number(n)) = t.get(s, k.get(s).unwrap()) {
                        sum += n;
                    }
                }
                black_box(sum)
            })
        })
    });
    g.finish();
}

fn allocation(c: &mut Criterion) {
    let heap = quiet_heap();
    let mut m = heap.attach();
    let mut g = c.benchmark_group("allocate 32 bytes");
    g.throughput(Throughput::Elements(1));
    g.bench_function("Box::new", |b| b.iter(|| black_box(Box::new(black_box([1u64; 4])))));
    g.bench_function("Scope::alloc", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            let mut left = iters;
            while left > 0 {
                // Collect between chunks, untimed, so the heap stays small.
                let n = left.min(1 << 16);
                total += m.scope(|s| {
                    let start = Instant::now();
                    for _ in 0..n {
                        black_box(s.alloc(black_box([1u64; 2])));
                    }
                    start.elapsed()
                });
                m.collect();
                left -= n;
            }
            total
        })
    });
    g.finish();
}

fn safepoints(c: &mut Criterion) {
    let heap = quiet_heap();
    let mut m = heap.attach();
    let mut g = c.benchmark_group("safepoint");
    g.throughput(Throughput::Elements(1));
    g.bench_function("Mutator::scope (empty)", |b| b.iter(|| m.scope(|s| black_box(s as *const _ as usize))));
    g.bench_function("Session::safepoint", |b| {
        b.iter_custom(|iters| {
            m.session(|sess| {
                let start = Instant::now();
                for _ in 0..iters {
                    sess.safepoint();
                }
                start.elapsed()
            })
        })
    });
    g.bench_function("Session::scope (empty)", |b| {
        b.iter_custom(|iters| {
            m.session(|sess| {
                let start = Instant::now();
                for _ in 0..iters {
                    sess.scope(|s| black_box(s as *const _ as usize));
                }
                start.elapsed()
            })
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_millis(300)).measurement_time(Duration::from_secs(2)).sample_size(20);
    targets = reads_and_stores, local_slots, tables, allocation, safepoints
}
criterion_main!(benches);

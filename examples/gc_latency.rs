//! gc-latency (../shared/BENCHMARKS.md §1 and §1b): a window of W = 200,000 message slots, N =
//! 2,000,000 messages, each stored into slot `i % W`; every store (allocation included) is timed.
//!
//! Run: `cargo run --release --example gc_latency -- [--ptr] [--impl lowpause|box]`
//!
//! `--ptr`: each message is a cyclic ring of 16 nodes `{ next, a: [u64; 7] }` instead of 1,024
//! bytes. `--impl box`: the same loop with `Box` and the system allocator (for the pointer variant,
//! a 16-node chain of boxes: `Box` cannot make a cycle), as a baseline measured in the same build.
//!
//! lowpause runs the loop in scopes of 64 messages; the time of entering and leaving each scope is
//! charged to the messages it borders, so every safepoint is inside a measured store.
//! `GC_LATENCY_TOP=1` also lists the slowest pushes and their indices.

use lowpause::{Gc, GcObject, Heap, Member, Mutator, Root, Scope, Trace};
use std::time::{Duration, Instant};

const W: usize = 200_000;
const N: usize = 2_000_000;
const BATCH: usize = 64;

#[derive(Trace)]
struct PNode {
    next: Member<PNode>,
    a: [u64; 7],
}

struct BNode {
    next: Option<Box<BNode>>,
    a: [u64; 7],
}

fn percentile(sorted: &[u64], q: f64) -> f64 {
    let rank = ((sorted.len() as f64) * q).ceil() as usize;
    sorted[rank.max(1) - 1] as f64 / 1000.0
}

fn report(name: &str, imp: &str, total: Duration, mut lat: Vec<u64>, check: u64, extra: &str) {
    if std::env::var("GC_LATENCY_TOP").is_ok() {
        let mut idx: Vec<usize> = (0..lat.len()).collect();
        idx.sort_by_key(|&i| std::cmp::Reverse(lat[i]));
        for &i in idx.iter().take(12) {
            eprintln!("slow push {i}: {} us", lat[i] / 1000);
        }
    }
    lat.sort_unstable();
    println!(
        "RESULT bench={name} impl={imp} total_ms={:.1} n={N} w={W} max_us={:.1} p99_us={:.2} p999_us={:.2} p9999_us={:.1} check={check}{extra}",
        total.as_secs_f64() * 1e3,
        *lat.last().unwrap() as f64 / 1000.0,
        percentile(&lat, 0.99),
        percentile(&lat, 0.999),
        percentile(&lat, 0.9999),
    );
}

fn run_box(ptr: bool) -> (Duration, Vec<u64>, u64) {
    let mut lat = vec![0u64; N];
    let start = Instant::now();
    let check;
    if ptr {
        let mut slots: Vec<Option<Box<BNode>>> = (0..W).map(|_| None).collect();
        for i in 0..N {
            let t = Instant::now();
            let mut head: Option<Box<BNode>> = None;
            for j in (0..16).rev() {
                head = Some(Box::new(BNode { next: head, a: std::array::from_fn(|k| ((i + j + k) % 256) as u64) }));
            }
            slots[i % W] = head;
            lat[i] = t.elapsed().as_nanos() as u64;
        }
        check = slots
            .iter()
            .map(|s| {
                let (mut sum, mut cur) = (0, s.as_deref());
                while let Some(n) = cur {
                    sum += n.a[0];
                    cur = n.next.as_deref();
                }
                sum
            })
            .sum();
    } else {
        let mut slots: Vec<Option<Box<[u8; 1024]>>> = (0..W).map(|_| None).collect();
        for i in 0..N {
            let t = Instant::now();
            slots[i % W] = Some(Box::new([(i % 256) as u8; 1024]));
            lat[i] = t.elapsed().as_nanos() as u64;
        }
        check = slots.iter().map(|s| s.as_ref().map_or(0, |m| m[0] as u64 + m[1023] as u64)).sum();
    }
    (start.elapsed(), lat, check)
}

/// Stores messages `0..N` into `table[i % W]` with `make(s, i)`, in scopes of `BATCH`, timing
/// every store; scope entry and exit are charged to the messages they border.
fn timed_pushes<T: ?Sized + GcObject>(
    m: &mut Mutator,
    table: &Root<[Member<T>]>,
    lat: &mut [u64],
    make: impl for<'s> Fn(&Scope<'s>, usize) -> Gc<'s, T>,
) -> Duration {
    let start = Instant::now();
    let mut prev = start;
    for b in (0..N).step_by(BATCH) {
        m.scope(|s| {
            let t = table.get(s);
            for i in b..(b + BATCH).min(N) {
                t[i % W].set(s, Some(make(s, i)));
                let now = Instant::now();
                lat[i] = (now - prev).as_nanos() as u64;
                prev = now;
            }
        });
        let now = Instant::now();
        lat[(b + BATCH).min(N) - 1] += (now - prev).as_nanos() as u64;
        prev = now;
    }
    start.elapsed()
}

fn run_lowpause(heap: &Heap, ptr: bool) -> (Duration, Vec<u64>, u64) {
    let mut m = heap.attach();
    let mut lat = vec![0u64; N];
    if ptr {
        let table = m.scope(|s| s.root(s.alloc_slice(W, |_| Member::<PNode>::null())));
        let total = timed_pushes(&mut m, &table, &mut lat, |s, i| {
            let nodes: [_; 16] = std::array::from_fn(|j| {
                s.alloc(PNode { next: Member::null(), a: std::array::from_fn(|k| ((i + j + k) % 256) as u64) })
            });
            for j in 0..16 {
                nodes[j].next.set(s, Some(nodes[(j + 1) % 16]));
            }
            nodes[0]
        });
        let check = m.scope(|s| {
            table
                .get(s)
                .iter()
                .map(|slot| {
                    let first = slot.get(s).unwrap();
                    let (mut sum, mut cur) = (first.a[0], first.next.get(s).unwrap());
                    for _ in 1..16 {
                        sum += cur.a[0];
                        cur = cur.next.get(s).unwrap();
                    }
                    assert!(Gc::ptr_eq(cur, first), "a ring did not close after 16 steps");
                    sum
                })
                .sum()
        });
        return (total, lat, check);
    }
    let table = m.scope(|s| s.root(s.alloc_slice(W, |_| Member::<[u8]>::null())));
    let total = timed_pushes(&mut m, &table, &mut lat, |s, i| s.alloc_slice(1024, |_| (i % 256) as u8));
    let check =
        m.scope(|s| table.get(s).iter().map(|slot| slot.get(s).map_or(0, |m| m[0] as u64 + m[1023] as u64)).sum());
    (total, lat, check)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let ptr = args.iter().any(|a| a == "--ptr");
    let imp = args.iter().position(|a| a == "--impl").and_then(|i| args.get(i + 1)).map_or("lowpause", |s| s.as_str());
    let name = if ptr { "gc-latency-ptr" } else { "gc-latency" };
    let want = if ptr { 407_974_912 } else { 50_995_904 };
    match imp {
        "box" => {
            let (total, lat, check) = run_box(ptr);
            report(name, "box", total, lat, check, "");
            assert_eq!(check, want);
        }
        "lowpause" => {
            let arg = |flag: &str| args.iter().position(|a| a == flag).and_then(|i| args.get(i + 1));
            let mut b = Heap::builder();
            if let Some(p) = arg("--gc-percent") {
                b = b.gc_percent(p.parse().expect("--gc-percent takes a number"));
            }
            if let Some(mb) = arg("--memory-limit-mb") {
                b = b.memory_limit(mb.parse::<usize>().expect("--memory-limit-mb takes a number") << 20);
            }
            if let Some(n) = arg("--workers") {
                b = b.workers(n.parse().expect("--workers takes a number"));
            }
            if let Some(n) = arg("--idle-workers") {
                b = b.idle_workers(n.parse().expect("--idle-workers takes a number"));
            }
            let heap = b.build().unwrap_or_else(|e| panic!("{e}"));
            let (total, lat, check) = run_lowpause(&heap, ptr);
            let st = heap.stats();
            let extra = format!(
                " cycles={} max_stall_us={:.1} max_handshake_us={:.1} live_mb={:.1} heap_committed_mb={:.0} workers={}",
                st.cycles,
                st.max_mutator_stall.as_secs_f64() * 1e6,
                st.max_handshake_wait.as_secs_f64() * 1e6,
                st.live_bytes as f64 / (1 << 20) as f64,
                st.heap_committed as f64 / (1 << 20) as f64,
                st.workers
            );
            report(name, "lowpause", total, lat, check, &extra);
            eprintln!("{}", heap.metrics());
            assert_eq!(check, want);
        }
        other => panic!("unknown --impl {other}: use lowpause or box"),
    }
}

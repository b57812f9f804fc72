//! The workloads of ../shared/BENCHMARKS.md, shared by the examples: each for lowpause and for
//! `Box` (the system allocator, every node an individual allocation). `compare.rs` adds the other
//! Rust GC crates from `others.rs`.
//!
//! Timing uses `Instant` in-process; percentiles are nearest-rank over all samples.
#![allow(dead_code)] // each example uses the workloads it runs

pub mod lp;

use std::sync::Arc;
use std::time::Duration;

/// gc-latency: message slots and messages.
pub const W: usize = 200_000;
pub const N: usize = 2_000_000;
/// The checks BENCHMARKS.md gives.
pub const LATENCY_CHECK: u64 = 50_995_904;
pub const LATENCY_PTR_CHECK: u64 = 407_974_912;

/// One workload run: total time, per-operation latencies (gc-latency only), and its check value.
pub struct Run {
    pub total: Duration,
    pub lat: Vec<u64>,
    pub check: u64,
}

/// Nearest-rank quantile of sorted nanosecond samples, in microseconds.
pub fn percentile_us(sorted: &[u64], q: f64) -> f64 {
    let rank = ((sorted.len() as f64) * q).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1] as f64 / 1000.0
}

/// The RESULT line of BENCHMARKS.md (latency statistics when the run has samples).
pub fn result_line(bench: &str, imp: &str, run: &Run, extra: &str) -> String {
    let mut line = format!("RESULT bench={bench} impl={imp} total_ms={:.1}", run.total.as_secs_f64() * 1e3);
    if !run.lat.is_empty() {
        let mut lat = run.lat.clone();
        lat.sort_unstable();
        line += &format!(
            " n={N} w={W} max_us={:.1} p99_us={:.2} p999_us={:.2} p9999_us={:.1}",
            *lat.last().unwrap() as f64 / 1000.0,
            percentile_us(&lat, 0.99),
            percentile_us(&lat, 0.999),
            percentile_us(&lat, 0.9999),
        );
    }
    line + &format!(" check={}{extra}", run.check)
}

/// What lowpause adds after `check`.
pub fn lowpause_extra(heap: &lowpause::Heap) -> String {
    let m = heap.metrics();
    format!(
        " cycles={} gc_cpu_pct={:.1} max_stall_us={:.1} heap_peak_mb={:.1} live_mb={:.1} mmu_10ms={:.3}",
        m.cycles,
        m.gc_cpu_fraction * 100.0,
        m.longest_stall.map_or(0.0, |(_, d)| d.as_secs_f64() * 1e6),
        m.peak_heap as f64 / (1 << 20) as f64,
        m.live_bytes as f64 / (1 << 20) as f64,
        m.mmu_10ms,
    )
}

/// Times stores `0..lat.len()` in batches of `batch`. `run_batch(range, record)` makes one batch's
/// stores, calling `record(i)` right after store `i`, and then whatever boundary follows a batch
/// (a scope exit, a collection step); the boundary's time is charged to the batch's last store, so
/// every safepoint lies inside a measured store. Returns the total time.
pub fn timed_batches(
    lat: &mut [u64],
    batch: usize,
    mut run_batch: impl FnMut(std::ops::Range<usize>, &mut dyn FnMut(usize)),
) -> Duration {
    let start = std::time::Instant::now();
    let mut prev = start;
    for b in (0..lat.len()).step_by(batch) {
        let end = (b + batch).min(lat.len());
        run_batch(b..end, &mut |i| {
            let now = std::time::Instant::now();
            lat[i] = (now - prev).as_nanos() as u64;
            prev = now;
        });
        let now = std::time::Instant::now();
        lat[end - 1] += (now - prev).as_nanos() as u64;
        prev = now;
    }
    start.elapsed()
}

/// Parses `--flag value` from the command line.
pub fn arg<T: std::str::FromStr>(flag: &str) -> Option<T> {
    let args: Vec<String> = std::env::args().collect();
    let v = args.iter().position(|a| a == flag).and_then(|i| args.get(i + 1))?;
    Some(v.parse().unwrap_or_else(|_| panic!("{flag} takes a value, not {v:?}")))
}

/// Whether `--flag` is on the command line.
pub fn flag(flag: &str) -> bool {
    std::env::args().any(|a| a == flag)
}

/// A lowpause heap configured from the command line: `--gc-percent`, `--memory-limit-mb`,
/// `--workers`, `--idle-workers`.
pub fn heap_from_args() -> lowpause::Heap {
    let mut b = lowpause::Heap::builder();
    if let Some(p) = arg("--gc-percent") {
        b = b.gc_percent(p);
    }
    if let Some(mb) = arg::<usize>("--memory-limit-mb") {
        b = b.memory_limit(mb << 20);
    }
    if let Some(n) = arg("--workers") {
        b = b.workers(n);
    }
    if let Some(n) = arg("--idle-workers") {
        b = b.idle_workers(n);
    }
    b.build().unwrap_or_else(|e| panic!("{e}"))
}

// ---- Box and Arc baselines -----------------------------------------------------------------

/// gc-latency and binary-trees with an owning pointer (`Box` or `Arc`) and the system allocator;
/// `$extra` items go into the same module.
macro_rules! owned_pointer_workloads {
    ($name:ident, $ptr:ident, $($extra:item)*) => {
        pub mod $name {
            use super::*;
            use std::time::Instant;

            struct BNode {
                next: Option<$ptr<BNode>>,
                a: [u64; 7],
            }

            /// gc-latency (for the pointer variant, a 16-node chain: the pointer cannot make a cycle).
            pub fn latency(ptr: bool) -> Run {
                let mut lat = vec![0u64; N];
                let start = Instant::now();
                let check;
                if ptr {
                    let mut slots: Vec<Option<$ptr<BNode>>> = (0..W).map(|_| None).collect();
                    for i in 0..N {
                        let t = Instant::now();
                        let mut head: Option<$ptr<BNode>> = None;
                        for j in (0..16).rev() {
                            head = Some($ptr::new(BNode { next: head, a: std::array::from_fn(|k| ((i + j + k) % 256) as u64) }));
                        }
                        slots[i % W] = head;
                        lat[i] = t.elapsed().as_nanos() as u64;
                    }
                    let total = start.elapsed();
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
                    return Run { total, lat, check };
                }
                let mut slots: Vec<Option<$ptr<[u8; 1024]>>> = (0..W).map(|_| None).collect();
                for i in 0..N {
                    let t = Instant::now();
                    slots[i % W] = Some($ptr::new([(i % 256) as u8; 1024]));
                    lat[i] = t.elapsed().as_nanos() as u64;
                }
                let total = start.elapsed();
                check = slots.iter().map(|s| s.as_ref().map_or(0, |m| m[0] as u64 + m[1023] as u64)).sum();
                Run { total, lat, check }
            }

            struct Node {
                left: Option<$ptr<Node>>,
                right: Option<$ptr<Node>>,
            }

            fn bottom_up(d: u32) -> $ptr<Node> {
                if d == 0 {
                    $ptr::new(Node { left: None, right: None })
                } else {
                    $ptr::new(Node { left: Some(bottom_up(d - 1)), right: Some(bottom_up(d - 1)) })
                }
            }

            fn check(t: &Node) -> u64 {
                1 + t.left.as_deref().map_or(0, check) + t.right.as_deref().map_or(0, check)
            }

            /// binary-trees at `max_depth`, printing the benchmark's lines if `print`.
            pub fn binary_trees(max_depth: u32, print: bool) -> Run {
                let start = Instant::now();
                let stretch = check(&bottom_up(max_depth + 1));
                if print {
                    println!("stretch tree of depth {}\t check: {stretch}", max_depth + 1);
                }
                let long_lived = bottom_up(max_depth);
                for d in (4..=max_depth).step_by(2) {
                    let iters = 1u64 << (max_depth - d + 4);
                    let sum: u64 = (0..iters).map(|_| check(&bottom_up(d))).sum();
                    if print {
                        println!("{iters}\t trees of depth {d}\t check: {sum}");
                    }
                }
                let ll = check(&long_lived);
                if print {
                    println!("long lived tree of depth {max_depth}\t check: {ll}");
                }
                Run { total: start.elapsed(), lat: Vec::new(), check: ll }
            }

            $($extra)*
        }
    };
}

owned_pointer_workloads!(arc, Arc,);
owned_pointer_workloads! {
    boxed,
    Box,
    struct GNode {
        left: Option<Box<GNode>>,
        right: Option<Box<GNode>>,
        #[allow(dead_code)]
        i: i32,
        #[allow(dead_code)]
        j: i32,
    }

    fn populate(depth: u32, node: &mut GNode) {
        if depth > 0 {
            let mut l = Box::new(GNode { left: None, right: None, i: 0, j: 0 });
            let mut r = Box::new(GNode { left: None, right: None, i: 0, j: 0 });
            populate(depth - 1, &mut l);
            populate(depth - 1, &mut r);
            node.left = Some(l);
            node.right = Some(r);
        }
    }

    fn make_tree(depth: u32) -> Box<GNode> {
        if depth == 0 {
            Box::new(GNode { left: None, right: None, i: 0, j: 0 })
        } else {
            Box::new(GNode { left: Some(make_tree(depth - 1)), right: Some(make_tree(depth - 1)), i: 0, j: 0 })
        }
    }

    fn count(n: &GNode) -> u64 {
        1 + n.left.as_deref().map_or(0, count) + n.right.as_deref().map_or(0, count)
    }
    /// GCBench; the check is the long-lived tree's node count.
    pub fn gcbench() -> Run {
        use super::gcbench::*;
        let start = Instant::now();
        drop(make_tree(STRETCH_DEPTH));
        let mut long_lived = Box::new(GNode { left: None, right: None, i: 0, j: 0 });
        populate(LONG_LIVED_DEPTH, &mut long_lived);
        let array: Vec<f64> = (0..ARRAY_SIZE).map(array_value).collect();
        for d in (MIN_DEPTH..=MAX_DEPTH).step_by(2) {
            for _ in 0..num_iters(d) {
                let mut t = Box::new(GNode { left: None, right: None, i: 0, j: 0 });
                populate(d, &mut t);
            }
            for _ in 0..num_iters(d) {
                drop(make_tree(d));
            }
        }
        let check = count(&long_lived);
        assert!(check == tree_size(LONG_LIVED_DEPTH) && array[1000] == 1.0 / 1000.0, "GCBench failed");
        Run { total: start.elapsed(), lat: Vec::new(), check }
    }
}

/// GCBench's parameters (Ellis and Kovac, modified by Boehm).
pub mod gcbench {
    pub const STRETCH_DEPTH: u32 = 18;
    pub const LONG_LIVED_DEPTH: u32 = 16;
    pub const ARRAY_SIZE: usize = 500_000;
    pub const MIN_DEPTH: u32 = 4;
    pub const MAX_DEPTH: u32 = 16;

    pub fn tree_size(d: u32) -> u64 {
        (1 << (d + 1)) - 1
    }

    pub fn num_iters(d: u32) -> u64 {
        2 * tree_size(STRETCH_DEPTH) / tree_size(d)
    }

    /// `array[i] = 1.0 / i` for the first half, 0 for the rest.
    pub fn array_value(i: usize) -> f64 {
        if i < ARRAY_SIZE / 2 {
            1.0 / i as f64
        } else {
            0.0
        }
    }
}

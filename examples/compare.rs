//! The workloads of ../shared/BENCHMARKS.md, in one process, on lowpause and on what a Rust user
//! would otherwise pick: `Box` and `Arc` (the system allocator; for the ring variant a chain,
//! since neither can make a cycle), and the GC crates `gc`, `dumpster` and `gc-arena`. Prints one
//! side-by-side table.
//!
//! Run: `cargo run --release --example compare -- [--impls box,arc,lowpause,gc,dumpster,gc-arena]
//! [--workloads latency,latency-ptr,binary-trees,gcbench] [--depth 21]`
//!
//! Peak memory per run is the process's peak resident set (`VmHWM`), reset before each run
//! (`/proc/self/clear_refs`) after freed memory was handed back (`malloc_trim`): what that run
//! added on top of what the process held already.

#[path = "workloads/others.rs"]
mod others;
mod workloads;

use std::sync::Arc;
use std::time::Instant;
use workloads::{arg, percentile_us, Run, LATENCY_CHECK, LATENCY_PTR_CHECK, N, W};

mod arc {
    use super::*;

    struct ANode {
        next: Option<Arc<ANode>>,
        a: [u64; 7],
    }

    pub fn latency(ptr: bool) -> Run {
        let mut lat = vec![0u64; N];
        let start = Instant::now();
        if ptr {
            let mut slots: Vec<Option<Arc<ANode>>> = vec![None; W];
            for (i, l) in lat.iter_mut().enumerate() {
                let t = Instant::now();
                let mut head = None;
                for j in (0..16).rev() {
                    head = Some(Arc::new(ANode { next: head, a: std::array::from_fn(|k| ((i + j + k) % 256) as u64) }));
                }
                slots[i % W] = head;
                *l = t.elapsed().as_nanos() as u64;
            }
            let total = start.elapsed();
            let check = slots
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
        let mut slots: Vec<Option<Arc<[u8; 1024]>>> = vec![None; W];
        for (i, l) in lat.iter_mut().enumerate() {
            let t = Instant::now();
            slots[i % W] = Some(Arc::new([(i % 256) as u8; 1024]));
            *l = t.elapsed().as_nanos() as u64;
        }
        let total = start.elapsed();
        let check = slots.iter().map(|s| s.as_ref().map_or(0, |m| m[0] as u64 + m[1023] as u64)).sum();
        Run { total, lat, check }
    }

    struct Node {
        left: Option<Arc<Node>>,
        right: Option<Arc<Node>>,
    }

    fn bottom_up(d: u32) -> Arc<Node> {
        if d == 0 {
            Arc::new(Node { left: None, right: None })
        } else {
            Arc::new(Node { left: Some(bottom_up(d - 1)), right: Some(bottom_up(d - 1)) })
        }
    }

    fn check(t: &Node) -> u64 {
        1 + t.left.as_deref().map_or(0, check) + t.right.as_deref().map_or(0, check)
    }

    pub fn binary_trees(max_depth: u32) -> Run {
        let start = Instant::now();
        check(&bottom_up(max_depth + 1));
        let long_lived = bottom_up(max_depth);
        for d in (4..=max_depth).step_by(2) {
            for _ in 0..1u64 << (max_depth - d + 4) {
                check(&bottom_up(d));
            }
        }
        Run { total: start.elapsed(), lat: Vec::new(), check: check(&long_lived) }
    }
}

/// Hands freed memory back and resets the peak resident set, so the next reading is this run's.
fn reset_peak_rss() {
    // SAFETY: malloc_trim only returns free heap memory to the OS.
    unsafe { libc::malloc_trim(0) };
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// The peak resident set since the last reset, in MiB.
fn peak_rss_mib() -> f64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// One cell: total time, and for latency runs the worst and p99.9 push, and peak memory.
fn cell(run: &Run, rss: f64) -> String {
    let ms = run.total.as_secs_f64() * 1e3;
    if run.lat.is_empty() {
        return format!("{ms:.0} ms, {rss:.0} MiB");
    }
    let mut lat = run.lat.clone();
    lat.sort_unstable();
    format!(
        "{ms:.0} ms, max {:.2} ms, p99.9 {:.1} µs, {rss:.0} MiB",
        *lat.last().unwrap() as f64 / 1e6,
        percentile_us(&lat, 0.999)
    )
}

fn main() {
    let impls: String = arg("--impls").unwrap_or_else(|| "box,arc,lowpause,gc,dumpster,gc-arena".into());
    let loads: String = arg("--workloads").unwrap_or_else(|| "latency,latency-ptr,binary-trees,gcbench".into());
    let depth: u32 = arg("--depth").unwrap_or(21);
    let loads: Vec<&str> = loads.split(',').collect();
    let mut rows = Vec::new();
    for imp in impls.split(',') {
        let mut cells = Vec::new();
        for &load in &loads {
            reset_peak_rss();
            let heap = (imp == "lowpause").then(workloads::heap_from_args);
            let run = match (imp, load) {
                ("box", "latency") => workloads::boxed::latency(false),
                ("box", "latency-ptr") => workloads::boxed::latency(true),
                ("box", "binary-trees") => workloads::boxed::binary_trees(depth, false),
                ("box", "gcbench") => workloads::boxed::gcbench(),
                ("arc", "latency") => arc::latency(false),
                ("arc", "latency-ptr") => arc::latency(true),
                ("arc", "binary-trees") => arc::binary_trees(depth),
                ("lowpause", "latency") => workloads::lp::latency(heap.as_ref().unwrap(), false),
                ("lowpause", "latency-ptr") => workloads::lp::latency(heap.as_ref().unwrap(), true),
                ("lowpause", "binary-trees") => workloads::lp::binary_trees(heap.as_ref().unwrap(), depth, false),
                ("lowpause", "gcbench") => workloads::lp::gcbench(heap.as_ref().unwrap()),
                ("gc", "latency") => others::gc_crate::latency(false),
                ("gc", "latency-ptr") => others::gc_crate::latency(true),
                ("gc", "binary-trees") => others::gc_crate::binary_trees(depth),
                ("gc", "gcbench") => others::gc_crate::gcbench(),
                ("dumpster", "latency") => others::dumpster_crate::latency(false),
                ("dumpster", "latency-ptr") => others::dumpster_crate::latency(true),
                ("dumpster", "binary-trees") => others::dumpster_crate::binary_trees(depth),
                ("dumpster", "gcbench") => others::dumpster_crate::gcbench(),
                ("gc-arena", "latency") => others::arena::latency(false),
                ("gc-arena", "latency-ptr") => others::arena::latency(true),
                ("gc-arena", "binary-trees") => others::arena::binary_trees(depth),
                ("gc-arena", "gcbench") => others::arena::gcbench(),
                _ => {
                    cells.push("—".to_string());
                    continue;
                }
            };
            let rss = peak_rss_mib();
            let want = match load {
                "latency" => Some(LATENCY_CHECK),
                "latency-ptr" => Some(LATENCY_PTR_CHECK),
                "binary-trees" => Some((1 << (depth + 1)) - 1),
                "gcbench" => Some(workloads::gcbench::tree_size(workloads::gcbench::LONG_LIVED_DEPTH)),
                _ => None,
            };
            assert_eq!(Some(run.check), want, "{imp} {load}: wrong check value");
            let bench = if load == "latency" {
                "gc-latency".to_string()
            } else {
                load.replace("latency-ptr", "gc-latency-ptr")
            };
            let extra = heap.as_ref().map_or(String::new(), workloads::lowpause_extra);
            eprintln!("{}", workloads::result_line(&bench, imp, &run, &extra));
            cells.push(cell(&run, rss));
        }
        rows.push((imp.to_string(), cells));
    }
    println!();
    println!("| impl | {} |", loads.join(" | "));
    println!("|---|{}", "---|".repeat(loads.len()));
    for (imp, cells) in rows {
        println!("| {imp} | {} |", cells.join(" | "));
    }
}

//! `LOWPAUSE_TRACE=1` prints one line per cycle; this test runs a real workload in a child process
//! (this same test binary, re-executed) with the variable set, parses every line, and checks that
//! every field is present and consistent.

use lowpause::{Heap, Member};
use std::process::Command;

const CHILD: &str = "LOWPAUSE_TRACE_TEST_CHILD";

/// The child's workload: a rooted window of arrays replaced many times, then explicit cycles.
fn workload(workers: usize) {
    let heap = Heap::builder().workers(workers).build().unwrap();
    let mut m = heap.attach();
    let table = m.scope(|s| s.root(s.alloc_slice(2000, |_| Member::<[u64]>::null())));
    for round in 0..200 {
        m.scope(|s| {
            let t = table.get(s);
            for i in 0..2000 {
                t[i].set(s, Some(s.alloc_slice(32, |k| (round + k) as u64)));
            }
        });
    }
    m.collect();
    m.collect();
    println!("cycles={}", heap.stats().cycles);
}

struct Line {
    cycle: u64,
    at_s: f64,
    share: f64,
    clock: Vec<f64>,
    cpu: Vec<f64>,
    cpu_total: f64,
    heap: Vec<u64>,
    goal: u64,
    roots: u64,
    threads: u64,
    workers: u64,
}

/// Parses `gc N @Ts P%: a+b+c+d ms clock, as/bg/idle+s+o=t ms cpu, x->y->z MiB, g MiB goal, r roots, n threads, w workers`.
fn parse(line: &str) -> Line {
    let bad = || -> ! { panic!("malformed trace line: {line}") };
    let mut parts: Vec<&str> = line.split(", ").collect();
    // An optional last field: how long a request waited on a thread inside a scope.
    if parts.len() == 8 {
        let waited = parts.pop().unwrap();
        let ms = waited.strip_prefix("waited ").and_then(|w| w.split_once(" ms on thread ")).unwrap_or_else(|| bad());
        if ms.0.parse::<f64>().map_or(true, |ms| ms < 0.1) || !ms.1.ends_with("'s scope") {
            bad();
        }
    }
    if parts.len() != 7 {
        bad();
    }
    let head: Vec<&str> = parts[0].split(' ').collect();
    // head: ["gc", N, "@Ts", "P%:", "a+b+c+d", "ms", "clock"]
    if head.len() != 7 || head[0] != "gc" || head[5] != "ms" || head[6] != "clock" {
        bad();
    }
    let nums =
        |s: &str, sep: &str| s.split(sep).map(|x| x.parse::<f64>().unwrap_or_else(|_| bad())).collect::<Vec<_>>();
    let cpu_field = parts[1].strip_suffix(" ms cpu").unwrap_or_else(|| bad());
    let (cpu_parts, cpu_total) = cpu_field.split_once('=').unwrap_or_else(|| bad());
    let heap = parts[2].strip_suffix(" MiB").unwrap_or_else(|| bad());
    let count =
        |s: &str, unit: &str| s.strip_suffix(unit).unwrap_or_else(|| bad()).parse::<u64>().unwrap_or_else(|_| bad());
    Line {
        cycle: head[1].parse::<u64>().unwrap_or_else(|_| bad()),
        at_s: head[2]
            .strip_prefix('@')
            .and_then(|s| s.strip_suffix('s'))
            .unwrap_or_else(|| bad())
            .parse::<f64>()
            .unwrap(),
        share: head[3].strip_suffix("%:").unwrap_or_else(|| bad()).parse::<f64>().unwrap(),
        clock: nums(head[4], "+"),
        cpu: cpu_parts
            .split_once('+')
            .map(|(mark, rest)| [nums(mark, "/"), nums(rest, "+")].concat())
            .unwrap_or_else(|| bad()),
        cpu_total: cpu_total.parse::<f64>().unwrap_or_else(|_| bad()),
        heap: heap.split("->").map(|x| x.parse::<u64>().unwrap_or_else(|_| bad())).collect(),
        goal: count(parts[3], " MiB goal"),
        roots: count(parts[4], " roots"),
        threads: count(parts[5], " threads"),
        workers: count(parts[6], " workers"),
    }
}

fn run_child(workers: usize) -> (Vec<Line>, u64) {
    let exe = std::env::current_exe().unwrap();
    let out = Command::new(exe)
        .args(["--exact", "child_process_workload", "--nocapture", "--test-threads=1"])
        .env(CHILD, workers.to_string())
        .env("LOWPAUSE_TRACE", "1")
        .output()
        .unwrap();
    assert!(out.status.success(), "child failed: {}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let cycles: u64 = stdout
        .lines()
        .find_map(|l| l.split("cycles=").nth(1))
        .expect("the child reports its cycle count")
        .parse()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    (stderr.lines().filter(|l| l.starts_with("gc ")).map(parse).collect(), cycles)
}

#[test]
fn child_process_workload() {
    if let Ok(w) = std::env::var(CHILD) {
        workload(w.parse().unwrap());
    }
}

#[test]
fn every_cycle_prints_one_consistent_trace_line() {
    for workers in [0, 1] {
        let (lines, cycles) = run_child(workers);
        // Every cycle the child counted printed its line first; a cycle that ended while the
        // child was exiting may add one more.
        assert!(lines.len() as u64 >= cycles, "one line per completed cycle (workers={workers})");
        assert!(cycles >= 3, "the workload passes its goal several times (workers={workers})");
        let mut prev_at = 0.0;
        for (i, l) in lines.iter().enumerate() {
            assert_eq!(l.cycle, i as u64 + 1, "cycles are numbered in order");
            assert!(l.at_s >= prev_at, "timestamps grow");
            prev_at = l.at_s;
            assert!((0.0..=100.0).contains(&l.share));
            assert_eq!(l.clock.len(), 4, "handshake+snapshot+mark+sweep");
            assert!(l.clock.iter().all(|&c| c >= 0.0));
            assert_eq!(l.cpu.len(), 5, "assist/workers/idle+sweep+other");
            let sum: f64 = l.cpu.iter().sum();
            assert!((sum - l.cpu_total).abs() < 0.005, "CPU shares sum to the total: {sum} vs {}", l.cpu_total);
            assert_eq!(l.heap.len(), 3, "start->mark end->live");
            assert!(l.heap[1] >= l.heap[2], "the heap at the end of marking holds everything marked");
            assert!(l.heap[0] >= l.heap[2], "the heap at the start holds what the cycle found live");
            assert!(l.heap[1] >= l.heap[0], "nothing is freed while marking");
            assert!(l.goal >= 4, "the goal is at least 4 MiB");
            // A cycle that ends while the child is exiting may see its root and thread gone.
            let (roots, threads) = if (i as u64) < cycles { (1, 1) } else { (l.roots.min(1), l.threads.min(1)) };
            assert_eq!(l.roots, roots);
            assert_eq!(l.threads, threads);
            assert_eq!(l.workers, workers as u64);
        }
    }
}

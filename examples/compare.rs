//! The workloads of ../shared/BENCHMARKS.md, in one process, on lowpause and on what a Rust user
//! would otherwise pick: `Box` and `Arc` (the system allocator; for the ring variant a chain,
//! since neither can make a cycle), and the GC crates `gc`, `dumpster` and `gc-arena`. Prints one
//! side-by-side table.
//!
//! Run: `cargo run --release --example compare -- [--impls box,arc,lowpause,gc,dumpster,gc-arena]
//! [--workloads latency,latency-ptr,binary-trees,gcbench] [--depth 21]`
//!
//! Each (impl, workload) pair runs in a child process (this program, re-executed), so that no run
//! inherits another's heap, and its peak memory is that process's peak resident set (`VmHWM`).

#[path = "workloads/others.rs"]
mod others;
mod workloads;

use workloads::{arg, percentile_us, Run, LATENCY_CHECK, LATENCY_PTR_CHECK};

/// The peak resident set of this process, in MiB.
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

/// Runs one workload on one implementation in this process; prints its RESULT line on stderr and
/// its table cell on stdout (`CELL ...`).
fn child(imp: &str, load: &str, depth: u32) {
    let heap = (imp == "lowpause").then(workloads::heap_from_args);
    let run = match (imp, load) {
        ("box", "latency") => workloads::boxed::latency(false),
        ("box", "latency-ptr") => workloads::boxed::latency(true),
        ("box", "binary-trees") => workloads::boxed::binary_trees(depth, false),
        ("box", "gcbench") => workloads::boxed::gcbench(),
        ("arc", "latency") => workloads::arc::latency(false),
        ("arc", "latency-ptr") => workloads::arc::latency(true),
        ("arc", "binary-trees") => workloads::arc::binary_trees(depth, false),
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
            println!("CELL —");
            return;
        }
    };
    let want = match load {
        "latency" => LATENCY_CHECK,
        "latency-ptr" => LATENCY_PTR_CHECK,
        "binary-trees" => (1 << (depth + 1)) - 1,
        _ => workloads::gcbench::tree_size(workloads::gcbench::LONG_LIVED_DEPTH),
    };
    assert_eq!(run.check, want, "{imp} {load}: wrong check value");
    let bench = match load {
        "latency" => "gc-latency",
        "latency-ptr" => "gc-latency-ptr",
        other => other,
    };
    let extra = heap.as_ref().map_or(String::new(), workloads::lowpause_extra);
    eprintln!("{}", workloads::result_line(bench, imp, &run, &extra));
    println!("CELL {}", cell(&run, peak_rss_mib()));
}

fn main() {
    let impls: String = arg("--impls").unwrap_or_else(|| "box,arc,lowpause,gc,dumpster,gc-arena".into());
    let loads: String = arg("--workloads").unwrap_or_else(|| "latency,latency-ptr,binary-trees,gcbench".into());
    let depth: u32 = arg("--depth").unwrap_or(21);
    if workloads::flag("--child") {
        return child(&impls, &loads, depth);
    }
    let loads: Vec<&str> = loads.split(',').collect();
    // The heap settings and depth pass through to the children; each gets its own pair.
    let mut passed = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--impls" | "--workloads" => {
                args.next();
            }
            _ => passed.push(a),
        }
    }
    let mut rows = Vec::new();
    for imp in impls.split(',') {
        let mut cells = Vec::new();
        for &load in &loads {
            let out = std::process::Command::new(std::env::current_exe().unwrap())
                .args(&passed)
                .args(["--child", "--impls", imp, "--workloads", load])
                .stderr(std::process::Stdio::inherit())
                .output()
                .expect("could not run the child process");
            let stdout = String::from_utf8_lossy(&out.stdout);
            let cell = stdout.lines().find_map(|l| l.strip_prefix("CELL ")).map(str::to_owned);
            cells.push(cell.unwrap_or_else(|| format!("failed ({})", out.status)));
        }
        rows.push((imp.to_string(), cells));
    }
    println!("| impl | {} |", loads.join(" | "));
    println!("|---|{}", "---|".repeat(loads.len()));
    for (imp, cells) in rows {
        println!("| {imp} | {} |", cells.join(" | "));
    }
}

//! binary-trees (../shared/BENCHMARKS.md §2a, the Computer Language Benchmarks Game definition) at
//! depth 21: every node an individual allocation, one mutator thread.
//!
//! Run: `cargo run --release --example binary_trees -- [--impl lowpause|box] [--depth N]`
//! (heap settings as for gc_latency: `--gc-percent`, `--memory-limit-mb`, `--workers`).

mod workloads;

use workloads::arg;

fn main() {
    let depth: u32 = arg("--depth").unwrap_or(21);
    let imp: String = arg("--impl").unwrap_or_else(|| "lowpause".into());
    match imp.as_str() {
        "box" => {
            let run = workloads::boxed::binary_trees(depth, true);
            println!("{}", workloads::result_line("binary-trees", "box", &run, ""));
        }
        "lowpause" => {
            let heap = workloads::heap_from_args();
            let run = workloads::lp::binary_trees(&heap, depth, true);
            println!("{}", workloads::result_line("binary-trees", "lowpause", &run, &workloads::lowpause_extra(&heap)));
            println!("{}", heap.metrics());
        }
        other => panic!("unknown --impl {other}: use lowpause or box"),
    }
}

//! GCBench (../shared/BENCHMARKS.md §2b; Ellis and Kovac, modified by Boehm): a stretch tree of
//! depth 18, a long-lived tree of depth 16 and a long-lived array of 500,000 doubles, then trees
//! of depth 4 to 16 built top-down and bottom-up and dropped. Fails unless the long-lived data is
//! intact.
//!
//! Run: `cargo run --release --example gcbench -- [--impl lowpause|box]`

mod workloads;

use workloads::arg;

fn main() {
    let imp: String = arg("--impl").unwrap_or_else(|| "lowpause".into());
    match imp.as_str() {
        "box" => {
            let run = workloads::boxed::gcbench();
            println!("{}", workloads::result_line("gcbench", "box", &run, ""));
        }
        "lowpause" => {
            let heap = workloads::heap_from_args();
            let run = workloads::lp::gcbench(&heap);
            println!("{}", workloads::result_line("gcbench", "lowpause", &run, &workloads::lowpause_extra(&heap)));
            println!("{}", heap.metrics());
        }
        other => panic!("unknown --impl {other}: use lowpause or box"),
    }
}

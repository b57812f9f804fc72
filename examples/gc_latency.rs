//! gc-latency (../shared/BENCHMARKS.md §1 and §1b): a window of W = 200,000 message slots, N =
//! 2,000,000 messages, each stored into slot `i % W`; every store (allocation included) is timed.
//!
//! Run: `cargo run --release --example gc_latency -- [--ptr] [--impl lowpause|box] [--svg FILE]`
//!
//! `--ptr`: each message is a cyclic ring of 16 nodes `{ next, a: [u64; 7] }` instead of 1,024
//! bytes. `--impl box`: the same loop with `Box` and the system allocator (for the pointer variant,
//! a 16-node chain of boxes: `Box` cannot make a cycle), as a baseline measured in the same build.
//! Heap settings: `--gc-percent N`, `--memory-limit-mb N`, `--workers N`, `--idle-workers N`.
//!
//! Prints the RESULT line, then (lowpause) the collector's report: stalls by cause, MMU, GC CPU.
//! Writes an SVG (default `target/gc_latency.svg`) with the push-latency distribution and the heap
//! over time, sampled every millisecond by a separate thread. `GC_LATENCY_TOP=1` also lists the
//! slowest pushes and their indices.

mod workloads;

use plotters::prelude::*;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use workloads::{arg, flag, Run, LATENCY_CHECK, LATENCY_PTR_CHECK};

/// Heap size samples `(ms since start, MiB in use)`, taken by a thread until `stop`.
fn sample_heap(heap: lowpause::Heap, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<Vec<(f64, f64)>> {
    std::thread::spawn(move || {
        let start = Instant::now();
        let mut v = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            v.push((start.elapsed().as_secs_f64() * 1e3, heap.stats().heap_in_use as f64 / (1 << 20) as f64));
            std::thread::sleep(Duration::from_millis(1));
        }
        v
    })
}

/// Writes the latency distribution (latency at each percentile, in nines) and the heap over time.
fn plot(path: &str, title: &str, run: &Run, heap: &[(f64, f64)]) -> Result<(), Box<dyn std::error::Error>> {
    let mut lat = run.lat.clone();
    lat.sort_unstable();
    let n = lat.len();
    // x = number of nines of the percentile: 0 = median, 1 = p90, 2 = p99, ... up to the maximum.
    let max_nines = (n as f64).log10();
    let points: Vec<(f64, f64)> = (0..=600)
        .map(|k| {
            let nines = max_nines * k as f64 / 600.0;
            let q = 1.0 - 0.5 * 10f64.powf(-nines);
            let idx = ((n as f64 * q).ceil() as usize).clamp(1, n) - 1;
            (nines, (lat[idx] as f64 / 1000.0).max(0.01))
        })
        .collect();
    let root = SVGBackend::new(path, (900, 900)).into_drawing_area();
    root.fill(&WHITE)?;
    let (top, bottom) = root.split_vertically(450);
    let ymax = points.last().map_or(1.0, |p| p.1) * 2.0;
    let mut c = ChartBuilder::on(&top)
        .caption(format!("{title}: push latency by percentile"), ("sans-serif", 20))
        .margin(10)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..max_nines, (0.01f64..ymax).log_scale())?;
    c.configure_mesh()
        .x_desc("percentile (0 = p50, 1 = p90, 2 = p99, 3 = p99.9, ...)")
        .y_desc("latency (µs)")
        .draw()?;
    c.draw_series(LineSeries::new(points, &BLUE))?;
    let tmax = heap.last().map_or(1.0, |p| p.0).max(1.0);
    let hmax = heap.iter().map(|p| p.1).fold(1.0, f64::max) * 1.1;
    let mut c = ChartBuilder::on(&bottom)
        .caption("heap in use over time", ("sans-serif", 20))
        .margin(10)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..tmax, 0f64..hmax)?;
    c.configure_mesh().x_desc("time (ms)").y_desc("MiB").draw()?;
    c.draw_series(LineSeries::new(heap.iter().copied(), &RED))?;
    root.present()?;
    Ok(())
}

fn main() {
    let ptr = flag("--ptr");
    let imp: String = arg("--impl").unwrap_or_else(|| "lowpause".into());
    let name = if ptr { "gc-latency-ptr" } else { "gc-latency" };
    let want = if ptr { LATENCY_PTR_CHECK } else { LATENCY_CHECK };
    let svg: String = arg("--svg").unwrap_or_else(|| format!("target/{}.svg", name.replace('-', "_")));
    let (run, extra, heap_samples, heap) = match imp.as_str() {
        "box" => (workloads::boxed::latency(ptr), String::new(), Vec::new(), None),
        "lowpause" => {
            let heap = workloads::heap_from_args();
            let stop = Arc::new(AtomicBool::new(false));
            let sampler = sample_heap(heap.clone(), stop.clone());
            let run = workloads::lp::latency(&heap, ptr);
            stop.store(true, Ordering::Relaxed);
            let samples = sampler.join().unwrap();
            (run, workloads::lowpause_extra(&heap), samples, Some(heap))
        }
        other => panic!("unknown --impl {other}: use lowpause or box"),
    };
    if std::env::var("GC_LATENCY_TOP").is_ok() {
        let mut idx: Vec<usize> = (0..run.lat.len()).collect();
        idx.sort_by_key(|&i| std::cmp::Reverse(run.lat[i]));
        for &i in idx.iter().take(12) {
            eprintln!("slow push {i}: {} us", run.lat[i] / 1000);
        }
    }
    println!("{}", workloads::result_line(name, &imp, &run, &extra));
    if let Some(heap) = heap {
        println!("{}", heap.metrics());
    }
    match plot(&svg, &format!("{name} ({imp})"), &run, &heap_samples) {
        Ok(()) => println!("plot: {svg}"),
        Err(e) => eprintln!("could not write {svg}: {e}"),
    }
    assert_eq!(run.check, want, "wrong check value");
}

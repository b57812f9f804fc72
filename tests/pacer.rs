//! The pacer's settings on a real heap: bad values are refused with an error naming them, the
//! settings change at run time, gc_percent off starts no cycle, the memory limit bounds what the
//! heap maps (the scavenger returning pages when it drops), and the metrics are consistent.
//! The pacer's arithmetic itself is tested with synthetic rates in src/collector/pacer/sim.rs.

use lowpause::{Heap, Member};

const MIB: usize = 1 << 20;

#[test]
fn bad_settings_are_refused_by_name_and_leave_the_heap_unchanged() {
    let e = Heap::builder().memory_limit(4 * MIB).build().unwrap_err();
    assert!(e.to_string().contains("memory_limit 4194304"), "{e}");
    assert!(Heap::builder().memory_limit(8 * MIB).build().is_ok());
    let heap = Heap::new();
    let e = heap.set_gc_percent(Some(-5)).unwrap_err();
    assert!(e.to_string().contains("gc_percent -5"), "{e}");
    let e = heap.set_gc_percent(Some(100_001)).unwrap_err();
    assert!(e.to_string().contains("gc_percent 100001"), "{e}");
    let e = heap.set_memory_limit(Some(1)).unwrap_err();
    assert!(e.to_string().contains("memory_limit 1 bytes"), "{e}");
    let m = heap.metrics();
    assert_eq!((m.gc_percent, m.memory_limit), (Some(100), None), "a refused setting changes nothing");
}

#[test]
fn settings_change_the_goal_at_run_time() {
    let heap = Heap::builder().workers(0).build().unwrap();
    let mut m = heap.attach();
    let keep = m.scope(|s| s.root(s.alloc_slice(10 * MIB / 8, |i| i as u64)));
    m.collect();
    let goal100 = heap.metrics().heap_goal.unwrap();
    assert!(goal100 >= 20 * MIB, "10 MiB live at gc_percent 100: goal {goal100}");
    heap.set_gc_percent(Some(50)).unwrap();
    let goal50 = heap.metrics().heap_goal.unwrap();
    assert!(goal50 < goal100 * 8 / 10, "gc_percent 50 lowers the goal: {goal50} vs {goal100}");
    heap.set_memory_limit(Some(12 * MIB)).unwrap();
    let limited = heap.metrics().heap_goal.unwrap();
    assert!(limited < 12 * MIB && limited > 10 * MIB, "the limit sets the goal: {limited}");
    heap.set_gc_percent(None).unwrap();
    heap.set_memory_limit(None).unwrap();
    assert_eq!(heap.metrics().heap_goal, None, "gc_percent off and no limit: no goal");
    drop(keep);
}

#[test]
fn with_gc_percent_off_and_no_limit_no_cycle_starts() {
    let heap = Heap::builder().workers(0).gc_percent_off().build().unwrap();
    let mut m = heap.attach();
    for _ in 0..64 {
        m.scope(|s| {
            for _ in 0..16 {
                s.alloc_slice(64 << 10, |_| 0u8);
            }
        });
    }
    assert_eq!(heap.metrics().cycles, 0, "1 GiB allocated, no cycle");
    m.collect();
    assert_eq!(heap.metrics().cycles, 1, "collect still works");
}

/// A window of `live` bytes of 64 KiB arrays, replaced `rounds` times over, one scope per MiB;
/// returns the most the heap mapped after any scope.
fn churn(heap: &Heap, live: usize, rounds: usize) -> usize {
    let mut m = heap.attach();
    let slots = live / (64 << 10);
    let table = m.scope(|s| s.root(s.alloc_slice(slots, |_| Member::<[u8]>::null())));
    let mut peak = 0;
    for r in 0..rounds * slots / 16 {
        m.scope(|s| {
            let t = table.get(s);
            for k in 0..16 {
                t[(r * 16 + k) % slots].set(s, Some(s.alloc_slice((64 << 10) - 16, |_| r as u8)));
            }
        });
        peak = peak.max(heap.metrics().mapped_bytes);
    }
    peak
}

#[test]
fn the_memory_limit_bounds_what_the_heap_maps() {
    // 16 MiB live at gc_percent 100 would let the heap reach 32 MiB; the limit holds it to 24.
    let heap = Heap::builder().workers(0).memory_limit(24 * MIB).build().unwrap();
    let peak = churn(&heap, 16 * MIB, 20);
    let m = heap.metrics();
    assert!(m.cycles > 20, "{} cycles", m.cycles);
    assert!(peak <= 24 * MIB + 24 * MIB / 20, "mapped up to {} MiB under a 24 MiB limit", peak / MIB);
    let free = Heap::builder().workers(0).build().unwrap();
    let unlimited = churn(&free, 16 * MIB, 20);
    assert!(unlimited > peak + 4 * MIB, "without the limit it maps {} MiB", unlimited / MIB);
}

#[test]
fn lowering_the_limit_returns_free_pages_to_the_os() {
    // gc_percent off and no limit: no goal, so the scavenger keeps every free page.
    let heap = Heap::builder().workers(0).gc_percent_off().build().unwrap();
    let mut m = heap.attach();
    for _ in 0..8 {
        m.scope(|s| {
            for _ in 0..64 {
                s.alloc_slice((64 << 10) - 16, |_| 1u8);
            }
        });
    }
    m.collect();
    let before = heap.metrics();
    assert!(before.mapped_bytes >= 16 * MIB, "garbage left {} MiB mapped", before.mapped_bytes / MIB);
    heap.set_memory_limit(Some(8 * MIB)).unwrap();
    let after = heap.metrics();
    assert!(after.mapped_bytes <= 8 * MIB, "mapped {} MiB after lowering the limit", after.mapped_bytes / MIB);
    assert!(after.released_bytes > 0 && after.scavenged_bytes >= before.mapped_bytes - after.mapped_bytes);
    // Released pages are reused like any others.
    m.scope(|s| {
        let a = s.alloc_slice(1 << 20, |i| i as u8);
        assert_eq!(a[12345], (12345 % 256) as u8);
    });
}

#[test]
fn metrics_are_consistent() {
    let heap = Heap::builder().workers(1).build().unwrap();
    churn(&heap, 8 * MIB, 10);
    let m = heap.metrics();
    assert!(m.cycles > 0);
    assert!(m.freed_bytes <= m.allocated_bytes);
    assert!(m.peak_heap >= m.live_bytes);
    assert!((0.0..=1.0).contains(&m.gc_cpu_fraction));
    assert!(m.gc_cpu.total() > std::time::Duration::ZERO);
    assert!(m.mmu_1ms <= m.mmu_10ms + 1e-9 && m.mmu_10ms <= m.mmu_100ms + 1e-9, "MMU grows with the window");
    for s in [m.handshake_wait, m.assist, m.allocation_wait] {
        assert!(s.p99 <= s.p999 && s.p999 <= s.max && s.max <= s.total);
    }
    let report = m.to_string();
    for field in ["cycles", "GC CPU", "stalls, handshake wait", "mark assist", "allocation wait", "MMU"] {
        assert!(report.contains(field), "report lacks {field}: {report}");
    }
}

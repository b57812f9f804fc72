//! Allocating several GiB of garbage while a small live set stays rooted keeps the process's
//! resident memory a small multiple of the live set: freed slots and pages are reused.
//! (Its own test binary, so no other test's memory is counted.)
//!
//! It runs in synchronous mode, where every cycle starts at the trigger and finishes before the
//! heap can grow further, so the bound measures reuse, not pacing. In concurrent mode the heap
//! may overshoot its goal while a cycle runs (at this loop's several GB/s, by tens of MiB): that
//! overshoot is the pacer's to bound with assists, and is measured there.

use lowpause::{Heap, Member, Root};

fn rss_bytes() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse::<usize>().unwrap() * 1024
}

#[test]
fn garbage_does_not_grow_resident_memory() {
    const LIVE_SLOTS: usize = 4096;
    const SLOT_BYTES: usize = 4096; // 16 MiB live
    const TOTAL: usize = 6 << 30; // 6 GiB allocated in all
    let before = rss_bytes();
    let heap = Heap::builder().workers(0).build().unwrap();
    let mut m = heap.attach();
    let table: Root<[Member<[u8]>]> = m.scope(|s| s.root(s.alloc_slice(LIVE_SLOTS, |_| Member::null())));
    let mut allocated = 0usize;
    let mut i = 0usize;
    while allocated < TOTAL {
        m.scope(|s| {
            let t = table.get(s);
            for _ in 0..1024 {
                // Mostly small objects replacing live ones, plus short-lived large ones.
                let v = s.alloc_slice(SLOT_BYTES, |_| i as u8);
                t[i % LIVE_SLOTS].set(s, Some(v));
                if i % 64 == 0 {
                    s.alloc_slice(256 << 10, |_| 0u8);
                    allocated += 256 << 10;
                }
                allocated += SLOT_BYTES;
                i += 1;
            }
        });
    }
    m.collect();
    let st = heap.stats();
    let live = LIVE_SLOTS * SLOT_BYTES;
    let grown = rss_bytes().saturating_sub(before);
    println!("{st}\nresident growth {} MiB for {} MiB live", grown >> 20, live >> 20);
    assert!(st.cycles >= 50, "{st}");
    assert!(st.allocated_bytes >= TOTAL, "{st}");
    assert!(grown < 4 * live, "resident memory grew by {grown} bytes for a live set of {live}: {st}");
    // And the live data is the latest generation.
    m.scope(|s| {
        let t = table.get(s);
        for (k, slot) in t.iter().enumerate() {
            let v = slot.get(s).unwrap();
            assert_eq!(v.len(), SLOT_BYTES);
            // Slot k was last written by iteration j: the latest j < i with j % LIVE_SLOTS == k.
            let j = i - 1 - (i - 1 - k) % LIVE_SLOTS;
            assert_eq!(v[0], j as u8, "slot {k}");
        }
    });
}

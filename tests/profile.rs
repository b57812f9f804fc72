//! The heap profile by type: live counts come from a marking cycle, allocation counts from
//! sampling (exact at a profile rate of 1).

use lowpause::{Heap, HeapProfile, Member, Trace, TypeProfile};

#[derive(Trace)]
struct Node {
    next: Member<Node>,
    value: u64,
}

#[derive(Trace)]
struct Garbage {
    _payload: [u64; 4],
}

fn row<'p>(p: &'p HeapProfile, name: &str) -> &'p TypeProfile {
    p.types.iter().find(|t| t.name == name).unwrap_or_else(|| panic!("no row for `{name}` in\n{p}"))
}

/// A rooted list of `n` nodes, each with a String hanging off a table, and garbage beside it.
fn build(heap: &Heap, n: usize) -> HeapProfile {
    let mut m = heap.attach();
    let (list, table) = m.scope(|s| {
        let head = s.alloc(Node { next: Member::null(), value: 0 });
        let table = s.alloc_slice(n, |_| Member::<String>::null());
        (s.root(head), s.root(table))
    });
    m.scope(|s| {
        let mut tail = list.get(s);
        for i in 1..n {
            let node = s.alloc(Node { next: Member::null(), value: i as u64 });
            tail.next.set(s, Some(node));
            tail = node;
            table.get(s)[i].set(s, Some(s.alloc(format!("node {i}"))));
            s.alloc(Garbage { _payload: [i as u64; 4] });
        }
    });
    let p = m.heap_profile();
    // The graph is intact after the profiling cycle.
    m.scope(|s| {
        let (mut node, mut count) = (Some(list.get(s)), 0);
        while let Some(n) = node {
            assert_eq!(n.value, count);
            count += 1;
            node = n.next.get(s);
        }
        assert_eq!(count as usize, n);
    });
    p
}

#[test]
fn live_and_allocated_counts_are_exact_at_rate_one() {
    for workers in [0, 1] {
        let heap = Heap::builder().workers(workers).profile_rate(1).verify(true).build().unwrap();
        let p = build(&heap, 1000);
        let node = row(&p, "profile::Node");
        assert_eq!((node.live_objects, node.allocated_objects), (1000, 1000), "workers={workers}\n{p}");
        let strings = row(&p, "alloc::string::String");
        assert_eq!((strings.live_objects, strings.allocated_objects), (999, 999));
        let table = row(&p, "[lowpause::api::member::Member<alloc::string::String>]");
        assert_eq!((table.live_objects, table.allocated_objects), (1, 1));
        assert!(table.live_bytes >= 8 * 1000, "the table's slot holds its 1000 members");
        let garbage = row(&p, "profile::Garbage");
        assert_eq!((garbage.live_objects, garbage.allocated_objects), (0, 999), "garbage is not live");
        // Bytes are heap slots: at least the header and payload, at most twice that.
        let object = 16 + std::mem::size_of::<Node>() as u64;
        assert!(node.live_bytes >= 1000 * object && node.live_bytes < 2000 * object, "{p}");
        assert_eq!(node.live_bytes, node.allocated_bytes, "all nodes live, same slots");
        assert_eq!(p.live_bytes(), p.types.iter().map(|t| t.live_bytes).sum::<u64>());
        assert!(p.cycle >= 1);
        // Sorted by live bytes, and printed in that order.
        assert!(p.types.windows(2).all(|w| w[0].live_bytes >= w[1].live_bytes), "{p}");
        let text = p.to_string();
        assert!(text.find("[lowpause").unwrap() < text.find("profile::Garbage").unwrap(), "{text}");
        assert!(text.contains("every allocation recorded"), "{text}");
    }
}

#[test]
fn a_second_profile_counts_only_what_is_still_live() {
    let heap = Heap::builder().workers(1).profile_rate(0).build().unwrap();
    let mut m = heap.attach();
    let root = m.scope(|s| {
        let table = s.alloc_slice(100, |_| Member::<u64>::null());
        for (i, slot) in table.iter().enumerate() {
            slot.set(s, Some(s.alloc(i as u64)));
        }
        s.root(table)
    });
    let first = m.heap_profile();
    assert_eq!(row(&first, "u64").live_objects, 100);
    assert_eq!(row(&first, "u64").allocated_objects, 0, "rate 0 samples nothing");
    assert!(first.to_string().contains("allocations not sampled"));
    m.scope(|s| {
        for slot in root.get(s).iter().skip(40) {
            slot.set(s, None);
        }
    });
    let second = m.heap_profile();
    assert!(second.cycle > first.cycle);
    assert_eq!(row(&second, "u64").live_objects, 40);
}

#[test]
fn sampled_allocations_estimate_the_true_count() {
    // 64 MiB of 48-byte objects at the default rate (512 KiB): ~128 samples of ~10 900 each.
    let heap = Heap::builder().workers(1).build().unwrap();
    let mut m = heap.attach();
    let n = 64 << 20 >> 6;
    for _ in 0..16 {
        m.scope(|s| {
            for i in 0..n / 16 {
                s.alloc([i as u64; 4]);
            }
        });
    }
    let p = m.heap_profile();
    let est = row(&p, "[u64; 4]").allocated_objects as f64;
    assert!((est - n as f64).abs() < 0.35 * n as f64, "estimate {est} of {n}\n{p}");
}

#[test]
fn profiling_during_concurrent_mutation_counts_between_the_stable_and_the_total() {
    let heap = Heap::builder().workers(1).profile_rate(1).verify(true).build().unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let churner = {
        let (heap, stop) = (heap.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut m = heap.attach();
            let ring = m.scope(|s| s.root(s.alloc_slice(256, |_| Member::<Node>::null())));
            let mut i = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                m.scope(|s| {
                    for _ in 0..64 {
                        let n = s.alloc(Node { next: Member::null(), value: i });
                        ring.get(s)[(i % 256) as usize].set(s, Some(n));
                        i += 1;
                    }
                });
            }
        })
    };
    let mut m = heap.attach();
    let _stable = m.scope(|s| s.root(s.alloc_slice(500, |_| Member::<Node>::null())));
    m.scope(|s| {
        for slot in _stable.get(s).iter() {
            slot.set(s, Some(s.alloc(Node { next: Member::null(), value: 7 })));
        }
    });
    for _ in 0..3 {
        let p = m.heap_profile();
        let nodes = row(&p, "profile::Node");
        // The 500 stable nodes plus at most the 256 in the ring (and a few replaced mid-mark).
        assert!(nodes.live_objects >= 500, "{p}");
        assert!(nodes.live_objects <= nodes.allocated_objects, "{p}");
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    churner.join().unwrap();
}

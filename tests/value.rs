//! `Value<T>`: immediates round-trip, references keep their targets alive through cycles (with the
//! checkmark verifier on), the barrier shades what a `Value` store overwrites, and NaNs whose bits
//! would look like a reference are stored as numbers.

use lowpause::{Heap, Trace, Value, ValueRef};
use std::sync::atomic::{AtomicUsize, Ordering};

static DROPS: AtomicUsize = AtomicUsize::new(0);

#[derive(Trace)]
struct Obj {
    id: u64,
    next: Value<Obj>,
}

impl Drop for Obj {
    fn drop(&mut self) {
        DROPS.fetch_add(1, Ordering::Relaxed);
    }
}

#[test]
fn immediates_and_references_round_trip_through_cycles() {
    for workers in [0, 1] {
        let heap = Heap::builder().workers(workers).verify(true).build().unwrap();
        let mut m = heap.attach();
        let evil_nan = f64::from_bits(u64::MAX);
        let slots = m.scope(|s| {
            let slots = s.alloc_slice(8, |_| Value::<Obj>::nil());
            slots[1].set(s, ValueRef::Bool(true));
            slots[2].set(s, ValueRef::Bool(false));
            slots[3].set(s, ValueRef::Number(-0.5));
            slots[4].set(s, ValueRef::Number(f64::INFINITY));
            slots[5].set(s, ValueRef::Number(evil_nan));
            let a = s.alloc(Obj { id: 7, next: Value::nil() });
            a.next.set(s, ValueRef::Object(s.alloc(Obj { id: 8, next: Value::nil() })));
            slots[6].set(s, ValueRef::Object(a));
            s.root(slots)
        });
        m.collect();
        m.collect();
        m.scope(|s| {
            let v = slots.get(s);
            assert_eq!(v[0].get(s), ValueRef::Nil);
            assert_eq!(v[1].get(s), ValueRef::Bool(true));
            assert_eq!(v[2].get(s), ValueRef::Bool(false));
            assert_eq!(v[3].get(s), ValueRef::Number(-0.5));
            assert_eq!(v[4].get(s), ValueRef::Number(f64::INFINITY));
            assert!(matches!(v[5].get(s), ValueRef::Number(n) if n.is_nan()), "a NaN stays a number");
            let ValueRef::Object(a) = v[6].get(s) else { panic!("slot 6 lost its object") };
            assert_eq!(a.id, 7);
            let ValueRef::Object(b) = a.next.get(s) else { panic!("the chain was broken") };
            assert_eq!(b.id, 8);
            assert!(v[7].is_nil());
        });
    }
}

#[test]
fn an_object_held_only_by_a_value_lives_until_the_value_moves_on() {
    let heap = Heap::builder().workers(0).verify(true).build().unwrap();
    let mut m = heap.attach();
    let holder = m.scope(|s| {
        let h = s.alloc(Obj { id: 1, next: Value::nil() });
        h.next.set(s, ValueRef::Object(s.alloc(Obj { id: 2, next: Value::nil() })));
        s.root(h)
    });
    let before = DROPS.load(Ordering::Relaxed);
    m.collect();
    assert_eq!(heap.stats().live_objects, 2);
    m.scope(|s| holder.get(s).next.set(s, ValueRef::Number(3.0)));
    m.collect();
    assert_eq!(heap.stats().live_objects, 1, "the unreferenced object was freed");
    assert!(DROPS.load(Ordering::Relaxed) > before);
}

#[test]
fn concurrent_cycles_with_values_rewritten_keep_every_reachable_object() {
    // A second thread runs cycles back to back (marking on a worker) while this thread moves
    // objects between Values inside its scopes, and the verifier checks every cycle. A stress
    // test: the exact interleaving that needs the barrier is rare here, so the barrier's decoding
    // of tagged words is pinned down by the unit test in src/api/value.rs.
    let heap = Heap::builder().workers(1).verify(true).build().unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let collector = {
        let (heap, stop) = (heap.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut m = heap.attach();
            while !stop.load(Ordering::Relaxed) {
                m.collect();
            }
        })
    };
    let mut m = heap.attach();
    // Ballast, so that marking takes long enough to overlap the mutations.
    let _ballast = m.scope(|s| {
        let b = s.alloc_slice(50_000, |_| Value::<Obj>::nil());
        for v in b.iter() {
            v.set(s, ValueRef::Object(s.alloc(Obj { id: 0, next: Value::nil() })));
        }
        s.root(b)
    });
    let table = m.scope(|s| s.root(s.alloc_slice(512, |_| Value::<Obj>::nil())));
    // Until 20 cycles have run during the mutations (or a bound that means they did not).
    let mut round = 0u64;
    while heap.stats().cycles < 20 {
        round += 1;
        assert!(round < 5_000_000, "cycles do not advance while a thread mutates");
        m.scope(|s| {
            let t = table.get(s);
            for k in 0..64 {
                let i = (round as usize * 64 + k) % 512;
                let j = (i * 7 + round as usize) % 512;
                match (i + round as usize) % 4 {
                    0 => t[i].set(s, ValueRef::Object(s.alloc(Obj { id: round, next: Value::nil() }))),
                    1 => t[i].set(s, t[j].get(s)),
                    2 => t[i].set(s, ValueRef::Number(i as f64)),
                    _ => {
                        // Move a reference out of one slot into an object, then drop it there:
                        // only the barrier's shading of the old value keeps it alive.
                        let v = t[j].get(s);
                        t[j].set(s, ValueRef::Nil);
                        if let ValueRef::Object(o) = t[i].get(s) {
                            o.next.set(s, v);
                        } else {
                            t[j].set(s, v);
                        }
                    }
                }
            }
        });
    }
    stop.store(true, Ordering::Relaxed);
    collector.join().expect("no cycle found a reachable object unmarked");
    m.collect();
    m.scope(|s| {
        let mut seen = 0;
        for v in table.get(s).iter() {
            let mut cur = v.get(s);
            for _ in 0..8 {
                let ValueRef::Object(o) = cur else { break };
                assert!(o.id <= round);
                seen += 1;
                cur = o.next.get(s);
            }
        }
        assert!(seen > 0);
    });
}

//! `GcTable`: a property test against a shadow map (identity and hashed keys, removals, growth,
//! collections with the verifier on), concurrent writers, and the foreign-heap check.

mod common;

use common::{assert_heap_usable, panic_message};
use lowpause::{GcTable, Heap, Member, Root, Trace, Value, ValueRef};
use proptest::prelude::*;
use std::collections::HashMap;
use std::sync::Arc;

#[derive(Trace)]
#[trace(leaf)]
struct Obj(u64);

#[derive(Trace)]
struct Holder {
    by_id: GcTable<Obj, Value<Obj>>,
    by_hash: GcTable<Obj, Member<Obj>>,
}

#[derive(Clone, Debug)]
enum Op {
    Insert(usize, Option<u64>),
    Remove(usize),
    /// Insert under a deliberately colliding hash (`k % 3`), found by content.
    InsertHashed(usize, u64),
    RemoveHashed(usize),
    Collect,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        5 => (0..40usize, proptest::option::of(0..1000u64)).prop_map(|(k, v)| Op::Insert(k, v)),
        2 => (0..40usize).prop_map(Op::Remove),
        3 => (0..40usize, 0..1000u64).prop_map(|(k, v)| Op::InsertHashed(k, v)),
        1 => (0..40usize).prop_map(Op::RemoveHashed),
        1 => Just(Op::Collect),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 40, ..ProptestConfig::default() })]
    #[test]
    fn gc_table_matches_a_shadow_map(ops in proptest::collection::vec(op(), 1..120), workers in 0..2usize) {
        let heap = Heap::builder().workers(workers).verify(true).build().unwrap();
        let mut m = heap.attach();
        let holder = m.scope(|s| s.root(s.alloc(Holder { by_id: GcTable::new(), by_hash: GcTable::new() })));
        // The keys: objects 0..40, rooted only through this vector of roots.
        let keys: Vec<Root<Obj>> = m.scope(|s| (0..40).map(|i| s.root(s.alloc(Obj(i)))).collect());
        let mut by_id: HashMap<usize, Option<u64>> = HashMap::new();
        let mut by_hash: HashMap<usize, u64> = HashMap::new();
        for op in ops {
            m.scope(|s| {
                let h = holder.get(s);
                match op {
                    Op::Insert(k, v) => {
                        let value = match v {
                            Some(x) => ValueRef::Object(s.alloc(Obj(x))),
                            None => ValueRef::Number(k as f64),
                        };
                        let new = h.by_id.insert(s, keys[k].get(s), value);
                        assert_eq!(new, by_id.insert(k, v).is_none());
                    }
                    Op::Remove(k) => assert_eq!(h.by_id.remove(s, keys[k].get(s)), by_id.remove(&k).is_some()),
                    Op::InsertHashed(k, v) => {
                        let new = h.by_hash.insert_hashed(s, k as u64 % 3, keys[k].get(s), Some(s.alloc(Obj(v))));
                        assert_eq!(new, by_hash.insert(k, v).is_none());
                    }
                    Op::RemoveHashed(k) => {
                        assert_eq!(h.by_hash.remove_hashed(s, k as u64 % 3, keys[k].get(s)), by_hash.remove(&k).is_some())
                    }
                    Op::Collect => {}
                }
            });
            if matches!(op, Op::Collect) {
                m.collect();
            }
            m.scope(|s| {
                let h = holder.get(s);
                assert_eq!(h.by_id.len(), by_id.len());
                assert_eq!(h.by_hash.len(), by_hash.len());
                for (k, key) in keys.iter().enumerate() {
                    let got = h.by_id.get(s, key.get(s));
                    match (by_id.get(&k), got) {
                        (None, None) => {}
                        (Some(None), Some(ValueRef::Number(n))) => assert_eq!(n, k as f64),
                        (Some(Some(x)), Some(ValueRef::Object(o))) => assert_eq!(o.0, *x),
                        (want, got) => panic!("key {k}: want {want:?}, got {got:?}"),
                    }
                    let found = h.by_hash.find(s, k as u64 % 3, |key| key.0 == k as u64);
                    match (by_hash.get(&k), found) {
                        (None, None) => {}
                        (Some(x), Some((key, Some(v)))) => {
                            assert_eq!(key.0, k as u64);
                            assert_eq!(v.0, *x);
                        }
                        (want, got) => panic!("hashed key {k}: want {want:?}, got {:?}", got.map(|(k, _)| k.0)),
                    }
                }
                let mut seen = 0;
                h.by_id.for_each(s, |_, _| seen += 1);
                assert_eq!(seen, by_id.len());
            });
        }
        drop(keys);
        m.collect();
    }
}

/// Four threads insert disjoint keys into one table at once, with collections running: no entry
/// is lost, none appears twice.
#[test]
fn concurrent_writers_lose_nothing() {
    let heap = Heap::builder().verify(true).build().unwrap();
    let mut m = heap.attach();
    let table = Arc::new(m.scope(|s| s.root(s.alloc(GcTable::<Obj, Value<Obj>>::new()))));
    let threads: Vec<_> = (0..4u64)
        .map(|t| {
            let (heap, table) = (heap.clone(), table.clone());
            std::thread::spawn(move || {
                let mut m = heap.attach();
                let mut keys = Vec::new();
                for i in 0..2000u64 {
                    let k = m.scope(|s| {
                        let k = s.alloc(Obj(t * 10_000 + i));
                        table.get(s).insert(s, k, ValueRef::Number((t * 10_000 + i) as f64));
                        s.root(k)
                    });
                    keys.push(k);
                    if i % 500 == 0 {
                        m.collect();
                    }
                }
                keys
            })
        })
        .collect();
    let keys: Vec<Root<Obj>> = threads.into_iter().flat_map(|t| t.join().unwrap()).collect();
    m.collect();
    m.scope(|s| {
        let t = table.get(s);
        assert_eq!(t.len(), 8000);
        for k in &keys {
            let k = k.get(s);
            assert_eq!(t.get(s, k), Some(ValueRef::Number(k.0 as f64)));
        }
        let mut n = 0;
        t.for_each(s, |_, _| n += 1);
        assert_eq!(n, 8000);
    });
}

#[test]
fn a_table_of_another_heap_panics_with_the_operation_and_both_heaps_stay_usable() {
    let (heap, other) = (Heap::new(), Heap::new());
    let (mut m, mut mo) = (heap.attach(), other.attach());
    let table = m.scope(|s| s.root(s.alloc(GcTable::<Obj, Value<Obj>>::new())));
    let key = mo.scope(|s| s.root(s.alloc(Obj(1))));
    // Inside a scope of each heap, the table of one is handed the scope of the other.
    for op in ["insert", "get", "find", "remove", "for_each"] {
        let msg = panic_message(|| {
            m.scope(|sa| {
                let t = table.get(sa);
                mo.scope(|s| match op {
                    "insert" => _ = t.insert(s, key.get(s), ValueRef::Nil),
                    "get" => _ = t.get(s, key.get(s)),
                    "find" => _ = t.find(s, 1, |_| true),
                    "remove" => _ = t.remove(s, key.get(s)),
                    _ => t.for_each(s, |_, _| {}),
                })
            })
        });
        assert!(msg.contains(&format!("GcTable::{op}")) && msg.contains("not inside this scope's heap"), "{msg}");
    }
    drop(table);
    assert_heap_usable(&heap, &mut m);
    assert_heap_usable(&other, &mut mo);
}

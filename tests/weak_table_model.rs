//! Property test of `WeakTable` against a shadow map: random inserts, removals, lookups, keys
//! dropped and collections, with the checkmark verifier on. After every step each live key reads
//! exactly the shadow's value (objects included, checked by id), and after a collection the table
//! holds exactly the entries whose keys are still rooted.

use lowpause::{Heap, Root, Trace, ValueRef, WeakTable};
use proptest::prelude::*;
use std::collections::HashMap;

#[derive(Trace)]
#[trace(leaf)]
struct Obj(u64);

#[derive(Clone, Debug)]
enum Op {
    Insert(usize, Option<u64>),
    Remove(usize),
    DropKey(usize),
    Collect,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..6usize, proptest::option::of(0..1000u64)).prop_map(|(k, v)| Op::Insert(k, v)),
        1 => (0..6usize).prop_map(Op::Remove),
        2 => (0..6usize).prop_map(Op::DropKey),
        2 => Just(Op::Collect),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]
    #[test]
    fn weak_table_matches_a_shadow_map(ops in proptest::collection::vec(op(), 1..40), workers in 0..2usize) {
        let heap = Heap::builder().workers(workers).verify(true).build().unwrap();
        let mut m = heap.attach();
        let table = m.scope(|s| s.root(WeakTable::<Obj, Obj>::new_in(s)));
        let mut keys: Vec<Option<Root<Obj>>> = (0..6).map(|_| None).collect();
        // Shadow: key slot -> value (None: nil-less number marker; Some(id): an object of that id).
        let mut shadow: HashMap<usize, Option<u64>> = HashMap::new();
        let mut next_id = 0;
        for op in ops {
            match op {
                Op::Insert(k, v) => {
                    next_id += 1;
                    let id = next_id;
                    let root = m.scope(|s| {
                        let key = match &keys[k] { Some(r) => r.get(s), None => s.alloc(Obj(id)) };
                        let value = match v {
                            Some(x) => ValueRef::Object(s.alloc(Obj(x))),
                            None => ValueRef::Number(k as f64),
                        };
                        table.get(s).insert(s, key, value);
                        s.root(key)
                    });
                    keys[k] = Some(root);
                    shadow.insert(k, v);
                }
                Op::Remove(k) => {
                    let had = match &keys[k] {
                        Some(r) => m.scope(|s| table.get(s).remove(s, r.get(s))),
                        None => false,
                    };
                    prop_assert_eq!(had, shadow.remove(&k).is_some());
                }
                Op::DropKey(k) => {
                    keys[k] = None;
                    shadow.remove(&k);
                }
                Op::Collect => {
                    m.collect();
                    let len = m.scope(|s| table.get(s).len());
                    prop_assert_eq!(len, shadow.len(), "entries of dropped keys must go at a collection");
                }
            }
            for (k, r) in keys.iter().enumerate() {
                let Some(r) = r else { continue };
                let got = m.scope(|s| match table.get(s).get(s, r.get(s)) {
                    None => None,
                    Some(ValueRef::Number(n)) => Some((n, None)),
                    Some(ValueRef::Object(o)) => Some((-1.0, Some(o.0))),
                    Some(other) => panic!("unexpected value {other:?}"),
                });
                let want = shadow.get(&k).map(|v| match v { Some(id) => (-1.0, Some(*id)), None => (k as f64, None) });
                prop_assert_eq!(got, want);
            }
        }
    }
}

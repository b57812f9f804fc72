//! The model test: random programs of allocations, links, unlinks, roots, scope boundaries and
//! collections, run against the real heap and a shadow graph. After every collection, every
//! object reachable from the roots is intact (length, payload, edges), every unreachable object
//! has been dropped exactly once, and no reachable object has been dropped.
//!
//! Objects are GC arrays of `Cell`s of varied lengths (1 to 2100 cells: several size classes and
//! large objects); each cell has one outgoing edge. Every program runs twice, in synchronous mode
//! and with a background marker, with verification (checkmark) on.

use lowpause::{Gc, Heap, Member, Root, Scope, Trace};
use proptest::prelude::*;
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

type DropLog = Arc<Mutex<HashMap<u64, u32>>>;

#[derive(Trace)]
struct Cell {
    owner: u64,
    idx: u32,
    edge: Member<[Cell]>,
    log: Option<DropLog>,
}

impl Drop for Cell {
    fn drop(&mut self) {
        assert!(self.edge.is_null(), "a destructor saw a non-null member");
        if let Some(log) = &self.log {
            *log.lock().unwrap().entry(self.owner).or_default() += 1;
        }
    }
}

#[derive(Clone, Debug)]
enum Op {
    Alloc(u8),
    Link { src: usize, cell: usize, dst: usize },
    Unlink { src: usize, cell: usize },
    Root(usize),
    Unroot(usize),
    EndScope,
    Collect,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => any::<u8>().prop_map(Op::Alloc),
        5 => (any::<usize>(), any::<usize>(), any::<usize>()).prop_map(|(src, cell, dst)| Op::Link { src, cell, dst }),
        2 => (any::<usize>(), any::<usize>()).prop_map(|(src, cell)| Op::Unlink { src, cell }),
        2 => any::<usize>().prop_map(Op::Root),
        2 => any::<usize>().prop_map(Op::Unroot),
        1 => Just(Op::EndScope),
        1 => Just(Op::Collect),
    ]
}

const LENGTHS: [usize; 8] = [1, 2, 3, 7, 20, 100, 700, 2100];

struct Shadow {
    /// id → outgoing edge of each cell.
    objects: HashMap<u64, Vec<Option<u64>>>,
    roots: Vec<(u64, Root<[Cell]>)>,
    next_id: u64,
}

impl Shadow {
    fn reachable(&self) -> BTreeSet<u64> {
        let mut seen = BTreeSet::new();
        let mut stack: Vec<u64> = self.roots.iter().map(|(id, _)| *id).collect();
        while let Some(id) = stack.pop() {
            if seen.insert(id) {
                stack.extend(self.objects[&id].iter().flatten());
            }
        }
        seen
    }
}

/// Checks one object against the shadow.
fn check_object(s: &Scope<'_>, id: u64, obj: Gc<'_, [Cell]>, shadow: &Shadow) {
    let edges = &shadow.objects[&id];
    assert_eq!(obj.len(), edges.len(), "object {id} has the wrong length");
    for (i, c) in obj.iter().enumerate() {
        assert_eq!((c.owner, c.idx as usize), (id, i), "object {id} cell {i} corrupted");
        assert_eq!(c.log.is_some(), i == 0);
        let got = c.edge.get(s).map(|t| t[0].owner);
        assert_eq!(got, edges[i], "object {id} cell {i} edge");
    }
}

fn run(ops: Vec<Op>) {
    run_with(ops.clone(), 0);
    run_with(ops, 1);
}

/// Runs the program with `workers` background markers (0: synchronous), verification on.
fn run_with(ops: Vec<Op>, workers: usize) {
    let heap = Heap::builder().max_heap(1 << 30).workers(workers).verify(true).build().unwrap();
    let mut m = heap.attach();
    let log: DropLog = Arc::default();
    let mut shadow = Shadow { objects: HashMap::new(), roots: Vec::new(), next_id: 0 };
    let mut ops = ops.into_iter().peekable();
    while ops.peek().is_some() {
        // One scope: run ops until a boundary.
        let boundary = m.scope(|s| {
            // Everything reachable from the roots, by id, as local Gc pointers.
            let mut locals: Vec<(u64, Gc<'_, [Cell]>)> = Vec::new();
            let mut seen = BTreeSet::new();
            let mut stack: Vec<Gc<'_, [Cell]>> = shadow.roots.iter().map(|(_, r)| r.get(s)).collect();
            while let Some(o) = stack.pop() {
                if seen.insert(o[0].owner) {
                    locals.push((o[0].owner, o));
                    stack.extend(o.iter().filter_map(|c| c.edge.get(s)));
                }
            }
            for op in ops.by_ref() {
                match op {
                    Op::Alloc(k) => {
                        let len = LENGTHS[k as usize % LENGTHS.len()];
                        let id = shadow.next_id;
                        shadow.next_id += 1;
                        let l = log.clone();
                        let obj = s.alloc_slice(len, |i| Cell {
                            owner: id,
                            idx: i as u32,
                            edge: Member::null(),
                            log: (i == 0).then(|| l.clone()),
                        });
                        shadow.objects.insert(id, vec![None; len]);
                        locals.push((id, obj));
                    }
                    Op::Link { src, cell, dst } if !locals.is_empty() => {
                        let (sid, so) = locals[src % locals.len()];
                        let (did, d) = locals[dst % locals.len()];
                        let c = cell % so.len();
                        so[c].edge.set(s, Some(d));
                        shadow.objects.get_mut(&sid).unwrap()[c] = Some(did);
                    }
                    Op::Unlink { src, cell } if !locals.is_empty() => {
                        let (sid, so) = locals[src % locals.len()];
                        let c = cell % so.len();
                        so[c].edge.set(s, None);
                        shadow.objects.get_mut(&sid).unwrap()[c] = None;
                    }
                    Op::Root(k) if !locals.is_empty() => {
                        let (id, o) = locals[k % locals.len()];
                        shadow.roots.push((id, s.root(o)));
                    }
                    Op::Unroot(k) if !shadow.roots.is_empty() => {
                        let k = k % shadow.roots.len();
                        shadow.roots.swap_remove(k);
                    }
                    Op::EndScope => return false,
                    Op::Collect => return true,
                    _ => {}
                }
            }
            false
        });
        if boundary {
            m.collect();
            verify(&heap, &mut m, &shadow, &log);
        }
    }
    m.collect();
    verify(&heap, &mut m, &shadow, &log);
}

fn verify(heap: &Heap, m: &mut lowpause::Mutator, shadow: &Shadow, log: &DropLog) {
    let reachable = shadow.reachable();
    let drops = log.lock().unwrap().clone();
    for id in shadow.objects.keys() {
        let n = drops.get(id).copied().unwrap_or(0);
        if reachable.contains(id) {
            assert_eq!(n, 0, "reachable object {id} was dropped");
        } else {
            assert_eq!(n, 1, "unreachable object {id} dropped {n} times");
        }
    }
    m.scope(|s| {
        let mut seen = BTreeSet::new();
        let mut stack: Vec<Gc<'_, [Cell]>> = shadow.roots.iter().map(|(_, r)| r.get(s)).collect();
        while let Some(o) = stack.pop() {
            let id = o[0].owner;
            if seen.insert(id) {
                check_object(s, id, o, shadow);
                stack.extend(o.iter().filter_map(|c| c.edge.get(s)));
            }
        }
        assert_eq!(seen, reachable);
    });
    let st = heap.stats();
    assert_eq!(st.live_objects, reachable.len(), "{st}");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]
    #[test]
    fn the_heap_matches_its_shadow_model(ops in proptest::collection::vec(op(), 1..300)) {
        run(ops);
    }
}

#[test]
fn a_long_fixed_program() {
    let mut ops = Vec::new();
    let mut x: u64 = 0x9E3779B97F4A7C15;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x as usize
    };
    for i in 0..5000 {
        ops.push(match next() % 16 {
            0..=3 => Op::Alloc(next() as u8),
            4..=9 => Op::Link { src: next(), cell: next(), dst: next() },
            10 | 11 => Op::Unlink { src: next(), cell: next() },
            12 => Op::Root(next()),
            13 => Op::Unroot(next()),
            14 => Op::EndScope,
            _ if i % 3 == 0 => Op::Collect,
            _ => Op::EndScope,
        });
    }
    run(ops);
}

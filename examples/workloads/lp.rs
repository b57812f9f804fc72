//! The workloads on lowpause. Each runs in scopes of bounded work (a batch of messages, one tree),
//! so the collector's handshakes are answered promptly.

use super::gcbench::*;
use super::{timed_batches, Run, N, W};
use lowpause::{Gc, GcObject, Heap, Member, Mutator, Root, Scope, Trace};
use std::time::{Duration, Instant};

/// Messages per scope in gc-latency.
const BATCH: usize = 64;

#[derive(Trace)]
struct PNode {
    next: Member<PNode>,
    a: [u64; 7],
}

/// Stores messages `0..N` into `table[i % W]` with `make(s, i)`, in scopes of `BATCH`, timing
/// every store (scope boundaries included, see [`timed_batches`]).
fn timed_pushes<T: ?Sized + GcObject>(
    m: &mut Mutator,
    table: &Root<[Member<T>]>,
    lat: &mut [u64],
    make: impl for<'s> Fn(&Scope<'s>, usize) -> Gc<'s, T>,
) -> Duration {
    timed_batches(lat, BATCH, |range, record| {
        m.scope(|s| {
            let t = table.get(s);
            for i in range {
                t[i % W].set(s, Some(make(s, i)));
                record(i);
            }
        })
    })
}

/// gc-latency (`ptr`: the ring variant).
pub fn latency(heap: &Heap, ptr: bool) -> Run {
    let mut m = heap.attach();
    let mut lat = vec![0u64; N];
    if ptr {
        let table = m.scope(|s| s.root(s.alloc_slice(W, |_| Member::<PNode>::null())));
        let total = timed_pushes(&mut m, &table, &mut lat, |s, i| {
            let nodes: [_; 16] = std::array::from_fn(|j| {
                s.alloc(PNode { next: Member::null(), a: std::array::from_fn(|k| ((i + j + k) % 256) as u64) })
            });
            for j in 0..16 {
                nodes[j].next.set(s, Some(nodes[(j + 1) % 16]));
            }
            nodes[0]
        });
        let check = m.scope(|s| {
            table
                .get(s)
                .iter()
                .map(|slot| {
                    let first = slot.get(s).unwrap();
                    let (mut sum, mut cur) = (first.a[0], first.next.get(s).unwrap());
                    for _ in 1..16 {
                        sum += cur.a[0];
                        cur = cur.next.get(s).unwrap();
                    }
                    assert!(Gc::ptr_eq(cur, first), "a ring did not close after 16 steps");
                    sum
                })
                .sum()
        });
        return Run { total, lat, check };
    }
    let table = m.scope(|s| s.root(s.alloc_slice(W, |_| Member::<[u8]>::null())));
    let total = timed_pushes(&mut m, &table, &mut lat, |s, i| s.alloc_slice(1024, |_| (i % 256) as u8));
    let check =
        m.scope(|s| table.get(s).iter().map(|slot| slot.get(s).map_or(0, |m| m[0] as u64 + m[1023] as u64)).sum());
    Run { total, lat, check }
}

#[derive(Trace)]
struct Node {
    left: Member<Node>,
    right: Member<Node>,
}

fn bottom_up<'s>(s: &Scope<'s>, d: u32) -> Gc<'s, Node> {
    if d == 0 {
        s.alloc(Node { left: Member::null(), right: Member::null() })
    } else {
        let (l, r) = (bottom_up(s, d - 1), bottom_up(s, d - 1));
        let n = s.alloc(Node { left: Member::null(), right: Member::null() });
        n.left.set(s, Some(l));
        n.right.set(s, Some(r));
        n
    }
}

fn check<'s>(s: &Scope<'s>, t: Gc<'s, Node>) -> u64 {
    1 + t.left.get(s).map_or(0, |l| check(s, l)) + t.right.get(s).map_or(0, |r| check(s, r))
}

/// binary-trees at `max_depth`, one scope per tree, printing the benchmark's lines if `print`.
pub fn binary_trees(heap: &Heap, max_depth: u32, print: bool) -> Run {
    let mut m = heap.attach();
    let start = Instant::now();
    let stretch = m.scope(|s| check(s, bottom_up(s, max_depth + 1)));
    if print {
        println!("stretch tree of depth {}\t check: {stretch}", max_depth + 1);
    }
    let long_lived = m.scope(|s| s.root(bottom_up(s, max_depth)));
    for d in (4..=max_depth).step_by(2) {
        let iters = 1u64 << (max_depth - d + 4);
        let sum: u64 = (0..iters).map(|_| m.scope(|s| check(s, bottom_up(s, d)))).sum();
        if print {
            println!("{iters}\t trees of depth {d}\t check: {sum}");
        }
    }
    let ll = m.scope(|s| check(s, long_lived.get(s)));
    if print {
        println!("long lived tree of depth {max_depth}\t check: {ll}");
    }
    Run { total: start.elapsed(), lat: Vec::new(), check: ll }
}

#[derive(Trace)]
struct GNode {
    left: Member<GNode>,
    right: Member<GNode>,
    i: i32,
    j: i32,
}

fn gnode<'s>(s: &Scope<'s>) -> Gc<'s, GNode> {
    s.alloc(GNode { left: Member::null(), right: Member::null(), i: 0, j: 0 })
}

/// Boehm's Populate: grows a tree top-down under an existing node.
fn populate<'s>(s: &Scope<'s>, depth: u32, node: Gc<'s, GNode>) {
    if depth > 0 {
        let (l, r) = (gnode(s), gnode(s));
        node.left.set(s, Some(l));
        node.right.set(s, Some(r));
        populate(s, depth - 1, l);
        populate(s, depth - 1, r);
    }
}

/// Boehm's MakeTree: builds a tree bottom-up.
fn make_tree<'s>(s: &Scope<'s>, depth: u32) -> Gc<'s, GNode> {
    let n = gnode(s);
    if depth > 0 {
        n.left.set(s, Some(make_tree(s, depth - 1)));
        n.right.set(s, Some(make_tree(s, depth - 1)));
    }
    n
}

fn count<'s>(s: &Scope<'s>, n: Gc<'s, GNode>) -> u64 {
    debug_assert_eq!((n.i, n.j), (0, 0));
    1 + n.left.get(s).map_or(0, |l| count(s, l)) + n.right.get(s).map_or(0, |r| count(s, r))
}

/// GCBench, one scope per tree; the check is the long-lived tree's node count.
pub fn gcbench(heap: &Heap) -> Run {
    let mut m = heap.attach();
    let start = Instant::now();
    m.scope(|s| {
        make_tree(s, STRETCH_DEPTH);
    });
    let long_lived = m.scope(|s| {
        let root = gnode(s);
        populate(s, LONG_LIVED_DEPTH, root);
        s.root(root)
    });
    let array = m.scope(|s| s.root(s.alloc_slice(ARRAY_SIZE, array_value)));
    for d in (MIN_DEPTH..=MAX_DEPTH).step_by(2) {
        for _ in 0..num_iters(d) {
            m.scope(|s| populate(s, d, gnode(s)));
        }
        for _ in 0..num_iters(d) {
            m.scope(|s| {
                make_tree(s, d);
            });
        }
    }
    let (check, a1000) = m.scope(|s| (count(s, long_lived.get(s)), array.get(s)[1000]));
    assert!(check == tree_size(LONG_LIVED_DEPTH) && a1000 == 1.0 / 1000.0, "GCBench failed");
    Run { total: start.elapsed(), lat: Vec::new(), check }
}

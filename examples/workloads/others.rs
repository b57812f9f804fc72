//! The workloads on the Rust GC crates a user would otherwise pick: `gc` (thread-local
//! mark-sweep, stop-the-world), `dumpster` (reference counting with cycle detection; its
//! thread-local `unsync` flavour) and `gc-arena` (incremental mark-sweep in an arena whose roots
//! are visited between `mutate` calls). Each is written the way its documentation recommends;
//! gc-arena is given a chance to collect (`collect_debt`) after every batch of 64 messages or
//! every tree, as lowpause gets a safepoint at every scope boundary.

use crate::workloads::gcbench::*;
use crate::workloads::{timed_batches, Run, N, W};
use std::time::Instant;

/// Times `N` pushes made by `push(i)`.
fn timed(mut push: impl FnMut(usize)) -> (std::time::Duration, Vec<u64>) {
    let mut lat = vec![0u64; N];
    let start = Instant::now();
    for (i, l) in lat.iter_mut().enumerate() {
        let t = Instant::now();
        push(i);
        *l = t.elapsed().as_nanos() as u64;
    }
    (start.elapsed(), lat)
}

fn byte(i: usize, j: usize, k: usize) -> u64 {
    ((i + j + k) % 256) as u64
}

/// The workloads for a crate whose `Gc<T>` is a reference-counted or rooted smart pointer with
/// `Gc::new`, `Deref`, `Clone` and `Gc::ptr_eq`, mutated through a `RefCell`-like `Cell` (`gc`
/// and `dumpster` both fit).
macro_rules! smart_pointer_workloads {
    ($name:ident, gc: $($gc:ident)::+, cell: $($cell:ident)::+, derive($($derive:ident),*)) => {
        pub mod $name {
            use super::*;
            type Gc<T> = $($gc)::+<T>;
            type Cell<T> = $($cell)::+<T>;
            #[derive($($derive),*)]
            struct PNode {
                next: Cell<Option<Gc<PNode>>>,
                a: [u64; 7],
            }

            pub fn latency(ptr: bool) -> Run {
                if ptr {
                    let mut slots: Vec<Option<Gc<PNode>>> = vec![None; W];
                    let (total, lat) = timed(|i| {
                        let nodes: Vec<Gc<PNode>> = (0..16)
                            .map(|j| Gc::new(PNode { next: Cell::new(None), a: std::array::from_fn(|k| byte(i, j, k)) }))
                            .collect();
                        for j in 0..16 {
                            *nodes[j].next.borrow_mut() = Some(nodes[(j + 1) % 16].clone());
                        }
                        slots[i % W] = Some(nodes[0].clone());
                    });
                    let check = slots
                        .iter()
                        .map(|s| {
                            let first = s.clone().unwrap();
                            let (mut sum, mut cur) = (0, first.clone());
                            for _ in 0..16 {
                                sum += cur.a[0];
                                let next = cur.next.borrow().clone().unwrap();
                                cur = next;
                            }
                            assert!(Gc::ptr_eq(&cur, &first));
                            sum
                        })
                        .sum();
                    return Run { total, lat, check };
                }
                let mut slots: Vec<Option<Gc<[u8; 1024]>>> = vec![None; W];
                let (total, lat) = timed(|i| slots[i % W] = Some(Gc::new([(i % 256) as u8; 1024])));
                let check = slots.iter().map(|s| s.as_ref().map_or(0, |m| m[0] as u64 + m[1023] as u64)).sum();
                Run { total, lat, check }
            }

            #[derive($($derive),*)]
            struct Node {
                left: Option<Gc<Node>>,
                right: Option<Gc<Node>>,
            }

            fn bottom_up(d: u32) -> Gc<Node> {
                if d == 0 {
                    Gc::new(Node { left: None, right: None })
                } else {
                    Gc::new(Node { left: Some(bottom_up(d - 1)), right: Some(bottom_up(d - 1)) })
                }
            }

            fn check(t: &Node) -> u64 {
                1 + t.left.as_deref().map_or(0, check) + t.right.as_deref().map_or(0, check)
            }

            pub fn binary_trees(max_depth: u32) -> Run {
                let start = Instant::now();
                check(&bottom_up(max_depth + 1));
                let long_lived = bottom_up(max_depth);
                for d in (4..=max_depth).step_by(2) {
                    for _ in 0..1u64 << (max_depth - d + 4) {
                        check(&bottom_up(d));
                    }
                }
                Run { total: start.elapsed(), lat: Vec::new(), check: check(&long_lived) }
            }

            #[derive($($derive),*)]
            struct GNode {
                left: Cell<Option<Gc<GNode>>>,
                right: Cell<Option<Gc<GNode>>>,
                i: i32,
                j: i32,
            }

            fn gnode(l: Option<Gc<GNode>>, r: Option<Gc<GNode>>) -> Gc<GNode> {
                Gc::new(GNode { left: Cell::new(l), right: Cell::new(r), i: 0, j: 0 })
            }

            fn populate(depth: u32, node: &Gc<GNode>) {
                if depth > 0 {
                    let (l, r) = (gnode(None, None), gnode(None, None));
                    *node.left.borrow_mut() = Some(l.clone());
                    *node.right.borrow_mut() = Some(r.clone());
                    populate(depth - 1, &l);
                    populate(depth - 1, &r);
                }
            }

            fn make_tree(depth: u32) -> Gc<GNode> {
                if depth == 0 {
                    gnode(None, None)
                } else {
                    gnode(Some(make_tree(depth - 1)), Some(make_tree(depth - 1)))
                }
            }

            fn count(n: &GNode) -> u64 {
                assert_eq!((n.i, n.j), (0, 0));
                1 + n.left.borrow().as_deref().map_or(0, count) + n.right.borrow().as_deref().map_or(0, count)
            }

            pub fn gcbench() -> Run {
                let start = Instant::now();
                drop(make_tree(STRETCH_DEPTH));
                let long_lived = gnode(None, None);
                populate(LONG_LIVED_DEPTH, &long_lived);
                let array: Gc<Vec<f64>> = Gc::new((0..ARRAY_SIZE).map(array_value).collect());
                for d in (MIN_DEPTH..=MAX_DEPTH).step_by(2) {
                    for _ in 0..num_iters(d) {
                        populate(d, &gnode(None, None));
                    }
                    for _ in 0..num_iters(d) {
                        drop(make_tree(d));
                    }
                }
                let check = count(&long_lived);
                assert!(check == tree_size(LONG_LIVED_DEPTH) && array[1000] == 1.0 / 1000.0);
                Run { total: start.elapsed(), lat: Vec::new(), check }
            }
        }
    };
}

// The `gc` crate's derive (synstructure 0.12) puts its impls inside a const block.
#[allow(non_local_definitions)]
mod gc_impl {
    use super::*;
    use gc::{Finalize, Trace};
    smart_pointer_workloads!(gc_crate, gc: gc::Gc, cell: gc::GcCell, derive(Trace, Finalize));
}
pub use gc_impl::gc_crate;

use dumpster::Trace;
smart_pointer_workloads!(dumpster_crate, gc: dumpster::unsync::Gc, cell: std::cell::RefCell, derive(Trace));

pub mod arena {
    use super::*;
    use gc_arena::{Arena, Collect, Gc, Lock, Mutation, Rootable};

    const BATCH: usize = 64;

    #[derive(Collect, Clone, Copy)]
    #[collect(no_drop)]
    struct PNode<'gc> {
        next: Option<Gc<'gc, Lock<PNode<'gc>>>>,
        a: [u64; 7],
    }

    type PRef<'gc> = Gc<'gc, Lock<PNode<'gc>>>;

    /// gc-latency: batches of 64 pushes per `mutate_root`, then `collect_debt`; the time of the
    /// collection is charged to the batch's last push.
    pub fn latency(ptr: bool) -> Run {
        let mut lat = vec![0u64; N];
        if ptr {
            let mut arena = Arena::<Rootable![Vec<Option<PRef<'_>>>]>::new(|_| vec![None; W]);
            let total = timed_batches(&mut lat, BATCH, |range, record| {
                arena.mutate_root(|mc, slots| {
                    for i in range {
                        let nodes: Vec<PRef<'_>> = (0..16)
                            .map(|j| {
                                Gc::new(mc, Lock::new(PNode { next: None, a: std::array::from_fn(|k| byte(i, j, k)) }))
                            })
                            .collect();
                        for j in 0..16 {
                            let a = nodes[j].get().a;
                            nodes[j].unlock(mc).set(PNode { next: Some(nodes[(j + 1) % 16]), a });
                        }
                        slots[i % W] = Some(nodes[0]);
                        record(i);
                    }
                });
                arena.collect_debt();
            });
            let check = arena.mutate(|_, slots| {
                slots
                    .iter()
                    .map(|s| {
                        let first = s.unwrap();
                        let (mut sum, mut cur) = (0, first);
                        for _ in 0..16 {
                            let n = cur.get();
                            sum += n.a[0];
                            cur = n.next.unwrap();
                        }
                        assert!(Gc::ptr_eq(cur, first));
                        sum
                    })
                    .sum()
            });
            return Run { total, lat, check };
        }
        let mut arena = Arena::<Rootable![Vec<Option<Gc<'_, [u8; 1024]>>>]>::new(|_| vec![None; W]);
        let total = timed_batches(&mut lat, BATCH, |range, record| {
            arena.mutate_root(|mc, slots| {
                for i in range {
                    slots[i % W] = Some(Gc::new(mc, [(i % 256) as u8; 1024]));
                    record(i);
                }
            });
            arena.collect_debt();
        });
        let check = arena.mutate(|_, slots| slots.iter().map(|s| s.map_or(0, |m| m[0] as u64 + m[1023] as u64)).sum());
        Run { total, lat, check }
    }

    #[derive(Collect)]
    #[collect(no_drop)]
    struct Node<'gc> {
        left: Option<Gc<'gc, Node<'gc>>>,
        right: Option<Gc<'gc, Node<'gc>>>,
    }

    fn bottom_up<'gc>(mc: &Mutation<'gc>, d: u32) -> Gc<'gc, Node<'gc>> {
        if d == 0 {
            Gc::new(mc, Node { left: None, right: None })
        } else {
            Gc::new(mc, Node { left: Some(bottom_up(mc, d - 1)), right: Some(bottom_up(mc, d - 1)) })
        }
    }

    fn check(t: &Node<'_>) -> u64 {
        1 + t.left.map_or(0, |l| check(&l)) + t.right.map_or(0, |r| check(&r))
    }

    pub fn binary_trees(max_depth: u32) -> Run {
        let start = Instant::now();
        let mut arena = Arena::<Rootable![Option<Gc<'_, Node<'_>>>]>::new(|_| None);
        arena.mutate(|mc, _| check(&bottom_up(mc, max_depth + 1)));
        arena.collect_debt();
        arena.mutate_root(|mc, root| *root = Some(bottom_up(mc, max_depth)));
        for d in (4..=max_depth).step_by(2) {
            for _ in 0..1u64 << (max_depth - d + 4) {
                arena.mutate(|mc, _| check(&bottom_up(mc, d)));
                arena.collect_debt();
            }
        }
        let check = arena.mutate(|_, root| check(&root.unwrap()));
        Run { total: start.elapsed(), lat: Vec::new(), check }
    }

    #[derive(Collect, Clone, Copy)]
    #[collect(no_drop)]
    struct GNode<'gc> {
        left: Option<GRef<'gc>>,
        right: Option<GRef<'gc>>,
        i: i32,
        j: i32,
    }

    type GRef<'gc> = Gc<'gc, Lock<GNode<'gc>>>;

    fn gnode<'gc>(mc: &Mutation<'gc>, left: Option<GRef<'gc>>, right: Option<GRef<'gc>>) -> GRef<'gc> {
        Gc::new(mc, Lock::new(GNode { left, right, i: 0, j: 0 }))
    }

    fn populate<'gc>(mc: &Mutation<'gc>, depth: u32, node: GRef<'gc>) {
        if depth > 0 {
            let (l, r) = (gnode(mc, None, None), gnode(mc, None, None));
            node.unlock(mc).set(GNode { left: Some(l), right: Some(r), i: 0, j: 0 });
            populate(mc, depth - 1, l);
            populate(mc, depth - 1, r);
        }
    }

    fn make_tree<'gc>(mc: &Mutation<'gc>, depth: u32) -> GRef<'gc> {
        if depth == 0 {
            gnode(mc, None, None)
        } else {
            gnode(mc, Some(make_tree(mc, depth - 1)), Some(make_tree(mc, depth - 1)))
        }
    }

    fn count(n: GRef<'_>) -> u64 {
        let n = n.get();
        assert_eq!((n.i, n.j), (0, 0));
        1 + n.left.map_or(0, count) + n.right.map_or(0, count)
    }

    #[derive(Collect)]
    #[collect(no_drop)]
    struct Roots<'gc> {
        tree: Option<GRef<'gc>>,
        array: Option<Gc<'gc, Vec<f64>>>,
    }

    pub fn gcbench() -> Run {
        let start = Instant::now();
        let mut arena = Arena::<Rootable![Roots<'_>]>::new(|_| Roots { tree: None, array: None });
        arena.mutate(|mc, _| {
            make_tree(mc, STRETCH_DEPTH);
        });
        arena.collect_debt();
        arena.mutate_root(|mc, r| {
            let t = gnode(mc, None, None);
            populate(mc, LONG_LIVED_DEPTH, t);
            r.tree = Some(t);
            r.array = Some(Gc::new(mc, (0..ARRAY_SIZE).map(array_value).collect()));
        });
        for d in (MIN_DEPTH..=MAX_DEPTH).step_by(2) {
            for _ in 0..num_iters(d) {
                arena.mutate(|mc, _| populate(mc, d, gnode(mc, None, None)));
                arena.collect_debt();
            }
            for _ in 0..num_iters(d) {
                arena.mutate(|mc, _| {
                    make_tree(mc, d);
                });
                arena.collect_debt();
            }
        }
        let (check, a) = arena.mutate(|_, r| (count(r.tree.unwrap()), r.array.unwrap()[1000]));
        assert!(check == tree_size(LONG_LIVED_DEPTH) && a == 1.0 / 1000.0);
        Run { total: start.elapsed(), lat: Vec::new(), check }
    }
}

//! A second, independent attack on the API from safe code (an adversarial review of the issue-10
//! fixes), kept as regression tests. No test uses `unsafe`. Each names the attack it makes; the
//! ones that found a break say what it was. Heaps reserve 256 MiB so the file runs under valgrind.
mod common;
use common::{assert_heap_usable, message_of, panic_message, within, Node};
use lowpause::*;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

// A1: an array whose byte size is within a page of usize::MAX: the page count times the page
// size wraps to 0 in Memory::alloc_large.
#[test]
fn a1_huge_alloc_slice_near_usize_max() {
    let heap = Heap::builder().max_heap(256 << 20).workers(0).build().unwrap();
    let mut m = heap.attach();
    let msg = panic_message(|| {
        m.scope(|s| {
            let len = usize::MAX - 16; // header + len bytes == usize::MAX
            let a = s.alloc_slice(len, |i| if i < 4 { 1u8 } else { panic!("init reached element {i}") });
            let _ = a.len();
        })
    });
    eprintln!("a1 message: {msg}");
    let usable = catch_unwind(AssertUnwindSafe(|| assert_heap_usable(&heap, &mut m)));
    eprintln!("a1 heap usable afterwards: {:?}; stats: {}", usable.is_ok(), heap.stats());
    let metrics = catch_unwind(AssertUnwindSafe(|| format!("{}", heap.metrics())));
    eprintln!("a1 metrics: {:?}", metrics.map_err(|e| message_of(&*e)));
    assert!(msg.starts_with("lowpause: "), "{msg}");
    assert!(usable.is_ok());
}

// A1b: an array of 2^63 bytes: `sample_left -= size as isize` overflows (debug builds).
#[test]
fn a1b_alloc_slice_of_2_pow_63_bytes() {
    let heap = Heap::builder().max_heap(256 << 20).workers(0).build().unwrap();
    let mut m = heap.attach();
    let msg = panic_message(|| {
        m.scope(|s| {
            let a = s.alloc_slice(1usize << 63, |_| 0u8);
            let _ = a.len();
        })
    });
    eprintln!("a1b message: {msg}");
    assert!(msg.starts_with("lowpause: "), "{msg}");
    assert_heap_usable(&heap, &mut m);
}

// A3: a GC array of zero-sized elements that need tracing (`[Member<_>; 0]`) and a huge length:
// building it costs nothing (the writes are no-ops), but the marker splits it into chunks of
// 32 KiB / max(size, 1) = 32768 elements each, so marking it takes 2^49 work items.
#[test]
fn a3_zero_sized_traced_elements_with_huge_length_sync() {
    a3(0)
}
#[test]
fn a3_zero_sized_traced_elements_with_huge_length_concurrent() {
    a3(1)
}
fn a3(workers: usize) {
    {
        let heap = Heap::builder().max_heap(256 << 20).workers(workers).build().unwrap();
        within(20, "collect with a huge array of ZSTs that need tracing", move || {
            let mut m = heap.attach();
            let t0 = Instant::now();
            let r = m.scope(|s| s.root(s.alloc_slice(usize::MAX, |_| -> [Member<Node>; 0] { [] })));
            eprintln!("a3 workers {workers}: built in {:?}", t0.elapsed());
            let t0 = Instant::now();
            m.collect();
            eprintln!("a3 workers {workers}: collected in {:?}", t0.elapsed());
            m.scope(|s| assert_eq!(r.get(s).len(), usize::MAX));
            drop(r);
            assert_heap_usable(&heap, &mut m);
        });
    }
}

// ---------------------------------------------------------------------------------------------
// A2: a destructor on the drop thread drops the heap's last handle (taken from a static).
// design.md §5 / workers.rs: the collector "is then torn down on the drop thread when the
// destructor returns"; Shared::drop says "only possible through a hand-written Trace impl".

static A2_HEAP: Mutex<Option<Heap>> = Mutex::new(None);
static A2_STARTED: AtomicBool = AtomicBool::new(false);
static A2_GO: AtomicBool = AtomicBool::new(false);
static A2_TEARDOWN_DROPS: AtomicUsize = AtomicUsize::new(0);

#[derive(Trace)]
struct A2Killer {
    _x: u64,
}
impl Drop for A2Killer {
    fn drop(&mut self) {
        A2_STARTED.store(true, Ordering::SeqCst);
        while !A2_GO.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(1));
        }
        // The last handle, dropped here on the drop thread.
        drop(A2_HEAP.lock().unwrap().take());
    }
}
#[derive(Trace)]
struct A2Counted {
    _x: u64,
}
impl Drop for A2Counted {
    fn drop(&mut self) {
        A2_TEARDOWN_DROPS.fetch_add(1, Ordering::SeqCst);
    }
}

#[test]
fn a2_last_handle_dropped_by_a_destructor_on_the_drop_thread() {
    let heap = Heap::builder().max_heap(256 << 20).workers(1).gc_percent(1).build().unwrap();
    *A2_HEAP.lock().unwrap() = Some(heap.clone());
    let mut m = heap.attach();
    m.scope(|s| {
        s.alloc(A2Killer { _x: 0 });
    });
    // Let allocation trigger cycles so that the drop thread (not `collect`) runs the destructor.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !A2_STARTED.load(Ordering::SeqCst) {
        assert!(Instant::now() < deadline, "the destructor never ran");
        m.scope(|s| {
            s.alloc_slice(4096, |_| 0u8);
        });
        std::thread::sleep(Duration::from_millis(1));
    }
    // Objects still allocated when the heap goes must be dropped at teardown.
    m.scope(|s| {
        for _ in 0..10 {
            s.alloc(A2Counted { _x: 1 });
        }
    });
    let weak_probe = m.scope(|s| Weak::new(s, s.alloc(0u64)));
    drop(m);
    drop(heap);
    drop(weak_probe); // a Weak holds a Root: drop it too
    A2_GO.store(true, Ordering::SeqCst);
    let deadline = Instant::now() + Duration::from_secs(5);
    while A2_TEARDOWN_DROPS.load(Ordering::SeqCst) < 10 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    let n = A2_TEARDOWN_DROPS.load(Ordering::SeqCst);
    eprintln!("a2: {n} of 10 objects dropped at teardown");
    assert_eq!(n, 10, "the heap was never torn down: its objects were never dropped");
}

// ---------------------------------------------------------------------------------------------
// A4: synchronous mode, nested scopes of two heaps. Heap B's queued drop glue runs at B's scope
// entry, while the thread is inside a scope of heap A. A destructor that waits for a thread
// that collects heap A (the docs: "One may block, or wait for a thread that enters a scope or
// collects: that holds up no cycle") then deadlocks: A's cycle waits for this thread.

static A4_REQUESTS: Mutex<Option<mpsc::Sender<mpsc::Sender<()>>>> = Mutex::new(None);
static A4_ANSWERED: AtomicUsize = AtomicUsize::new(0);

#[derive(Trace)]
struct A4Waits {
    _x: u64,
}
impl Drop for A4Waits {
    fn drop(&mut self) {
        let req = A4_REQUESTS.lock().unwrap().clone();
        if let Some(req) = req {
            let (tx, rx) = mpsc::channel();
            req.send(tx).unwrap();
            if rx.recv_timeout(Duration::from_secs(8)).is_ok() {
                A4_ANSWERED.fetch_add(1, Ordering::SeqCst);
            } else {
                A4_TIMEOUTS.fetch_add(1, Ordering::SeqCst);
            }
        }
    }
}

#[test]
fn a4_nested_sync_destructor_waiting_for_a_collector_of_the_outer_heap() {
    let ha = Heap::builder().max_heap(256 << 20).workers(0).build().unwrap();
    let hb = Heap::builder().max_heap(256 << 20).workers(0).build().unwrap();
    // A helper thread attached to heap A: on request it enters a scope, allocates and collects.
    let (tx, rx) = mpsc::channel::<mpsc::Sender<()>>();
    let ha2 = ha.clone();
    std::thread::spawn(move || {
        let mut m = ha2.attach();
        for reply in rx {
            m.scope(|s| {
                s.alloc(1u64);
            });
            m.collect();
            let _ = reply.send(());
        }
    });
    *A4_REQUESTS.lock().unwrap() = Some(tx);
    within(20, "a4", move || {
        let (mut ma, mut mb) = (ha.attach(), hb.attach());
        // Garbage with a waiting destructor in heap B, swept (queued) by a cycle of B.
        mb.scope(|s| {
            s.alloc(A4Waits { _x: 0 });
        });
        hb.set_gc_percent(Some(1)).unwrap();
        let t0 = Instant::now();
        // B's cycles run at its scope boundaries nested inside A's scope, and queue the drop glue.
        ma.scope(|_sa| {
            for _ in 0..200 {
                mb.scope(|s| {
                    s.alloc_slice(8192, |_| 0u8);
                });
                if A4_ANSWERED.load(Ordering::SeqCst) + A4_TIMEOUTS.load(Ordering::SeqCst) > 0 {
                    break;
                }
            }
        });
        // B's drop glue runs on B's drop thread, never at this thread's boundaries inside A's
        // scope: the destructor waits for the helper, whose collection of A waits only until
        // this thread has left A's scope (above).
        while A4_ANSWERED.load(Ordering::SeqCst) + A4_TIMEOUTS.load(Ordering::SeqCst) == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
        eprintln!("a4: answered {} in {:?}", A4_ANSWERED.load(Ordering::SeqCst), t0.elapsed());
        assert_eq!(
            A4_ANSWERED.load(Ordering::SeqCst),
            1,
            "the destructor's helper never answered (deadlock broken only by its timeout)"
        );
    });
}
static A4_TIMEOUTS: AtomicUsize = AtomicUsize::new(0);

// ---------------------------------------------------------------------------------------------
// A5: misuse messages name the operation. `Weak::get` through another heap's scope.
#[test]
fn a5_weak_get_through_another_heaps_scope_names_weak_get() {
    let (ha, hb) = (
        Heap::builder().max_heap(256 << 20).workers(0).build().unwrap(),
        Heap::builder().max_heap(256 << 20).workers(0).build().unwrap(),
    );
    let (mut ma, mut mb) = (ha.attach(), hb.attach());
    let (w, _keep) = ma.scope(|s| {
        let o = s.alloc(5u64);
        (Weak::new(s, o), s.root(o))
    });
    let msg = panic_message(|| {
        mb.scope(|s| {
            let _ = w.get(s);
        })
    });
    eprintln!("a5 message: {msg}");
    assert!(msg.contains("Weak::get"), "{msg}");
}

// ---------------------------------------------------------------------------------------------
// A6: finalizer torture: resurrection into a static Root, re-registration from the finalizer,
// two finalizers on one object, a finalizer on a slice, a finalizer on an object holding a
// table and weak members, a finalizer that stores its object as a key into a table, a
// finalizer that collects, weak references to finalized objects. Values checked throughout.

#[derive(Trace)]
struct Fin {
    id: u64,
    child: Member<Node>,
    weak: WeakMember<Node>,
    table: Member<WeakTable<Node, Node>>,
    data: Vec<u64>,
}

static A6_RESURRECTED: Mutex<Vec<Root<Fin>>> = Mutex::new(Vec::new());
static A6_RUNS: AtomicUsize = AtomicUsize::new(0);

fn a6_body(heap: Heap) {
    let mut m = heap.attach();
    let table = m.scope(|s| s.root(WeakTable::<Fin, Node>::new_in(s)));
    let weaks = m.scope(|s| {
        let mut weaks = Vec::new();
        for id in 0..20u64 {
            let f = s.alloc(Fin {
                id,
                child: Member::null(),
                weak: WeakMember::null(),
                table: Member::null(),
                data: vec![id; 16],
            });
            let c = s.alloc(Node { value: id * 10, next: Member::null() });
            f.child.set(s, Some(c));
            f.weak.set(s, Some(c));
            let t = WeakTable::new_in(s);
            t.insert(s, c, ValueRef::Object(s.alloc(Node { value: id * 100, next: Member::null() })));
            f.table.set(s, Some(t));
            weaks.push(Weak::new(s, f));
            let table = table.clone();
            let fin = move |heap: &Heap, r: Root<Fin>| {
                A6_RUNS.fetch_add(1, Ordering::SeqCst);
                let mut m = heap.attach();
                m.scope(|s| {
                    let f = r.get(s);
                    assert_eq!(f.data, vec![f.id; 16]);
                    let c = f.child.get(s).unwrap();
                    assert_eq!(c.value, f.id * 10);
                    // The weak member still sees the child (it is reachable from f).
                    assert!(f.weak.get(s).is_some());
                    match f.table.get(s).unwrap().get(s, c) {
                        Some(ValueRef::Object(v)) => assert_eq!(v.value, f.id * 100),
                        other => panic!("table lost a value: {other:?}"),
                    }
                    match f.id % 4 {
                        0 => A6_RESURRECTED.lock().unwrap().push(r.clone()),
                        1 => s.set_finalizer(f, |_, r| {
                            A6_RUNS.fetch_add(1, Ordering::SeqCst);
                            drop(r)
                        }),
                        2 => table.get(s).insert(s, f, ValueRef::Object(c)),
                        _ => {}
                    }
                });
                if r_id_is(&r, heap) == 3 {
                    m.collect();
                }
            };
            s.set_finalizer(f, fin);
            if id % 5 == 0 {
                // A second finalizer on the same object.
                s.set_finalizer(f, |_, _| {
                    A6_RUNS.fetch_add(1, Ordering::SeqCst);
                });
            }
        }
        // A finalizer on an array.
        let arr = s.alloc_slice(7, |i| Node { value: i as u64, next: Member::null() });
        s.set_finalizer(arr, |heap, r| {
            A6_RUNS.fetch_add(1, Ordering::SeqCst);
            heap.attach().scope(|s| {
                let a = r.get(s);
                assert_eq!(a.len(), 7);
                for (i, n) in a.iter().enumerate() {
                    assert_eq!(n.value, i as u64);
                }
            });
        });
        weaks
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    // 20 first finalizers + 3 second ones (id 0 is resurrected for good) + 5 re-registered + 1 array.
    while A6_RUNS.load(Ordering::SeqCst) < 29 {
        assert!(Instant::now() < deadline, "finalizers did not all run: {}", A6_RUNS.load(Ordering::SeqCst));
        m.collect();
        std::thread::sleep(Duration::from_millis(2));
    }
    for _ in 0..3 {
        m.collect();
    }
    m.scope(|s| {
        // Weak references to finalized objects were cleared, even for resurrected ones.
        for w in &weaks {
            assert!(w.get(s).is_none(), "a weak reference saw a finalized object");
        }
        for r in A6_RESURRECTED.lock().unwrap().iter() {
            let f = r.get(s);
            assert_eq!(f.data, vec![f.id; 16]);
            assert_eq!(f.child.get(s).unwrap().value, f.id * 10);
        }
    });
    A6_RESURRECTED.lock().unwrap().clear();
    assert_eq!(heap.stats().finalizer_panics, 0, "a finalizer's check failed");
    drop(table);
    assert_heap_usable(&heap, &mut m);
    eprintln!("a6: {} finalizer runs, {}", A6_RUNS.load(Ordering::SeqCst), heap.stats());
}

fn r_id_is(r: &Root<Fin>, heap: &Heap) -> u64 {
    let _ = heap;
    let _ = r;
    3
}

#[test]
fn a6_finalizer_torture() {
    let _g = A6_SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    for w in [0, 1] {
        A6_RUNS.store(0, Ordering::SeqCst);
        let heap = Heap::builder().max_heap(256 << 20).workers(w).verify(true).build().unwrap();
        within(60, "a6", move || a6_body(heap));
    }
}
static A6_SERIAL: Mutex<()> = Mutex::new(());

// ---------------------------------------------------------------------------------------------
// A7: `impl Debug for WeakTable` holds the table's entries lock (a collector lock: termination
// rounds take it in `ephemeron_scan`) while it calls the caller's `fmt::Write`. A writer that
// waits for another thread then blocks that thread inside the collector. Synchronous mode,
// deterministic: W is inside a scope (holding the snapshot back); T enters (answering the
// snapshot) and formats the table into a writer that waits for W's scope exit; W's exit drives
// the cycle into a termination round, which waits for the table's lock.

struct WaitingWriter<'a> {
    until: &'a AtomicBool,
    waited: Duration,
}
impl std::fmt::Write for WaitingWriter<'_> {
    fn write_str(&mut self, _: &str) -> std::fmt::Result {
        let t0 = Instant::now();
        while !self.until.load(Ordering::SeqCst) && t0.elapsed() < Duration::from_secs(3) {
            std::thread::sleep(Duration::from_millis(1));
        }
        self.waited += t0.elapsed();
        Ok(())
    }
}

#[test]
fn a7_debug_of_a_weak_table_runs_user_code_under_a_collector_lock() {
    let heap = Heap::builder().max_heap(256 << 20).workers(0).build().unwrap();
    within(30, "a7", move || {
        let mut t = heap.attach();
        let (table, _key) = t.scope(|s| {
            let tb = WeakTable::<Node, Node>::new_in(s);
            let k = s.alloc(Node { value: 1, next: Member::null() });
            tb.insert(s, k, ValueRef::Nil);
            (s.root(tb), s.root(k))
        });
        let w_inside = Arc::new(AtomicBool::new(false));
        let w_may_exit = Arc::new(AtomicBool::new(false));
        let w_exited = Arc::new(AtomicBool::new(false));
        let w_exit_time = Arc::new(Mutex::new(Duration::ZERO));
        let h2 = heap.clone();
        let w_alloc = Arc::new(AtomicBool::new(false));
        let w_allocated = Arc::new(AtomicBool::new(false));
        let (wa, wd) = (w_alloc.clone(), w_allocated.clone());
        let (wi, wm, we, wt) = (w_inside.clone(), w_may_exit.clone(), w_exited.clone(), w_exit_time.clone());
        let w = std::thread::spawn(move || {
            let mut m = h2.attach();
            let t0 = m.scope(|s| {
                wi.store(true, Ordering::SeqCst);
                while !wa.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(1));
                }
                // Slow paths: answer "barrier on" (never the snapshot: no scope boundary).
                for _ in 0..4 {
                    s.alloc_slice(1 << 16, |_| 0u8);
                }
                wd.store(true, Ordering::SeqCst);
                while !wm.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(1));
                }
                Instant::now()
            });
            *wt.lock().unwrap() = t0.elapsed();
            we.store(true, Ordering::SeqCst);
        });
        while !w_inside.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(1));
        }
        // Request a cycle (W inside holds its snapshot back), then enter: T answers the snapshot.
        heap.set_gc_percent(Some(1)).unwrap();
        t.scope(|s| {
            s.alloc_slice(1 << 16, |_| 0u8);
        });
        w_alloc.store(true, Ordering::SeqCst);
        while !w_allocated.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(1));
        }
        let waited = t.scope(|s| {
            let tb = table.get(s);
            w_may_exit.store(true, Ordering::SeqCst);
            let mut wr = WaitingWriter { until: &w_exited, waited: Duration::ZERO };
            use std::fmt::Write;
            let _ = write!(wr, "{:?}", &*tb);
            wr.waited
        });
        w.join().unwrap();
        let exit = *w_exit_time.lock().unwrap();
        eprintln!("a7: T's writer waited {waited:?}; W's scope exit took {exit:?}");
        assert!(exit < Duration::from_secs(1), "W's scope exit was held up by another thread's Debug writer: {exit:?}");
    });
}

// ---------------------------------------------------------------------------------------------
// A8: GcVec shared by threads: concurrent push / pop / set / truncate / get while other threads
// collect, attach and detach. Elements carry their own index: a read must always see a
// well-formed object (verify on).

#[derive(Trace)]
struct Shared {
    v: GcVec<Member<Node>>,
    vals: GcVec<Value<Node>>,
}

fn a8_body(heap: Heap, threads: usize, rounds: usize) {
    let mut m = heap.attach();
    let shared = m.scope(|s| s.root(s.alloc(Shared { v: GcVec::new(), vals: GcVec::new() })));
    let stop = Arc::new(AtomicBool::new(false));
    let mut hs = Vec::new();
    for t in 0..threads {
        let (heap, shared, stop) = (heap.clone(), shared.clone(), stop.clone());
        hs.push(std::thread::spawn(move || {
            let mut i = 0u64;
            while !stop.load(Ordering::SeqCst) && (i as usize) < rounds {
                // Attach afresh now and then (attach/detach races with cycles).
                let mut m = heap.attach();
                for _ in 0..20 {
                    i += 1;
                    m.scope(|s| {
                        let sh = shared.get(s);
                        let n = s.alloc(Node { value: i * 1000 + t as u64, next: Member::null() });
                        n.next.set(s, Some(s.alloc(Node { value: i, next: Member::null() })));
                        match i % 7 {
                            0..=2 => sh.v.push(s, Some(n)),
                            3 => {
                                if let Some(Some(g)) = sh.v.pop(s) {
                                    assert_eq!(g.next.get(s).unwrap().value, g.value / 1000);
                                }
                            }
                            4 => {
                                let len = sh.v.len();
                                if len > 0 {
                                    let _ = std::panic::catch_unwind(AssertUnwindSafe(|| {
                                        sh.v.set(s, (i as usize) % len, Some(n))
                                    }));
                                }
                            }
                            5 => sh.v.truncate(s, (i as usize) % 50),
                            _ => {
                                sh.vals.push(
                                    s,
                                    if i % 2 == 0 {
                                        ValueRef::Object(n)
                                    } else {
                                        ValueRef::Number(f64::from_bits(u64::MAX))
                                    },
                                );
                                if sh.vals.len() > 64 {
                                    sh.vals.truncate(s, 0);
                                }
                            }
                        }
                        for j in 0..sh.v.len() {
                            if let Some(Some(g)) = sh.v.get(s, j) {
                                assert_eq!(g.next.get(s).unwrap().value, g.value / 1000, "a torn element");
                            }
                        }
                        for j in 0..sh.vals.len() {
                            match sh.vals.get(s, j) {
                                Some(ValueRef::Object(g)) => assert_eq!(g.next.get(s).unwrap().value, g.value / 1000),
                                Some(ValueRef::Number(x)) => assert!(x.is_nan()),
                                Some(ValueRef::Nil) | None => {}
                                Some(other) => panic!("{other:?}"),
                            }
                        }
                    });
                }
                if t == 0 {
                    m.collect();
                }
            }
        }));
    }
    for h in hs {
        h.join().unwrap();
    }
    stop.store(true, Ordering::SeqCst);
    m.collect();
    drop(shared);
    assert_heap_usable(&heap, &mut m);
    eprintln!("a8: {}", heap.stats());
}

#[test]
fn a8_gcvec_shared_by_threads() {
    for w in [0, 1] {
        let heap = Heap::builder().max_heap(256 << 20).workers(w).verify(true).gc_percent(5).build().unwrap();
        let rounds = std::env::var("A8_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(20000);
        within(600, "a8", move || a8_body(heap, 4, rounds));
    }
}

// ---------------------------------------------------------------------------------------------
// A9: `find`'s `eq` does everything: allocates enough to run cycles, removes and re-inserts
// entries of the same table, replaces the value of the candidate, looks up recursively, and
// drives the collector with idle_step. The returned key and value must stay valid.

fn a9_body(heap: Heap) {
    let mut m = heap.attach();
    let (table, keys) = m.scope(|s| {
        let t = WeakTable::<Node, Node>::new_in(s);
        let mut keys = Vec::new();
        for i in 0..8u64 {
            let k = s.alloc(Node { value: i, next: Member::null() });
            t.insert_hashed(s, 7, k, ValueRef::Object(s.alloc(Node { value: 100 + i, next: Member::null() })));
            keys.push(s.root(k));
        }
        (s.root(t), keys)
    });
    for round in 0..20u64 {
        m.scope(|s| {
            let t = table.get(s);
            let mut calls = 0;
            let found = t.find(s, 7, |k| {
                calls += 1;
                // Garbage, to run cycles (synchronous mode: in this allocation).
                for _ in 0..64 {
                    s.alloc_slice(1024, |_| 0u64);
                }
                let _ = s.heap().idle_step(Instant::now() + Duration::from_millis(1));
                // Remove the candidate's entry and put it back with a new value.
                let was = t.remove(s, k);
                let _ = was;
                t.insert_hashed(
                    s,
                    7,
                    k,
                    ValueRef::Object(s.alloc(Node { value: 1000 + k.value, next: Member::null() })),
                );
                // A nested lookup on the same table.
                let _ = t.find(s, 7, |k2| k2.value == 99);
                k.value == round % 8
            });
            let (k, v) = found.expect("the key is rooted");
            assert_eq!(k.value, round % 8);
            // The value returned is the one read before `eq` replaced it: it must still be valid.
            match v {
                ValueRef::Object(v) => assert!(v.value == 100 + k.value || v.value == 1000 + k.value, "{}", v.value),
                other => panic!("{other:?}"),
            }
            let _ = calls;
        });
        m.collect();
    }
    drop((table, keys));
    assert_heap_usable(&heap, &mut m);
}

#[test]
fn a9_find_eq_that_does_everything() {
    for w in [0, 1] {
        let heap = Heap::builder().max_heap(256 << 20).workers(w).verify(true).gc_percent(1).build().unwrap();
        within(120, "a9", move || a9_body(heap));
    }
}

// ---------------------------------------------------------------------------------------------
// A10: destructors that use a heap's handles: drop and clone Roots and Weaks of the same heap
// (from statics), call idle_step, stats, set_memory_limit; on the drop thread and at scope
// boundaries; while cycles run (verify on).

static A10_ROOTS: Mutex<Vec<Root<Node>>> = Mutex::new(Vec::new());
static A10_HEAP: Mutex<Option<Heap>> = Mutex::new(None);
static A10_RAN: AtomicUsize = AtomicUsize::new(0);

#[derive(Trace)]
struct A10Busy {
    n: u64,
}
impl Drop for A10Busy {
    fn drop(&mut self) {
        A10_RAN.fetch_add(1, Ordering::SeqCst);
        let heap = A10_HEAP.lock().unwrap().clone();
        let mut roots = A10_ROOTS.lock().unwrap();
        if let Some(r) = roots.pop() {
            let c = r.clone();
            drop(r);
            if self.n % 2 == 0 {
                roots.push(c);
            }
        }
        drop(roots);
        if let Some(h) = heap {
            let _ = h.idle_step(Instant::now() + Duration::from_micros(200));
            let _ = h.stats();
            let _ = h.set_memory_limit(if self.n % 3 == 0 { Some(64 << 20) } else { None });
        }
    }
}

fn a10_body(heap: Heap) {
    *A10_HEAP.lock().unwrap() = Some(heap.clone());
    let mut m = heap.attach();
    m.scope(|s| {
        for i in 0..200u64 {
            let n = s.alloc(Node { value: i, next: Member::null() });
            n.next.set(s, Some(s.alloc(Node { value: i + 1, next: Member::null() })));
            A10_ROOTS.lock().unwrap().push(s.root(n));
        }
    });
    for round in 0..50u64 {
        m.scope(|s| {
            for i in 0..50 {
                s.alloc(A10Busy { n: round * 50 + i });
            }
            for _ in 0..16 {
                s.alloc_slice(2048, |_| 0u64);
            }
        });
        if round % 5 == 0 {
            m.collect();
        }
        m.scope(|s| {
            for r in A10_ROOTS.lock().unwrap().iter() {
                let n = r.get(s);
                assert_eq!(n.next.get(s).unwrap().value, n.value + 1);
            }
        });
    }
    m.collect();
    *A10_HEAP.lock().unwrap() = None;
    A10_ROOTS.lock().unwrap().clear();
    assert_heap_usable(&heap, &mut m);
    eprintln!("a10: {} destructors, {}", A10_RAN.load(Ordering::SeqCst), heap.stats());
}

#[test]
fn a10_destructors_using_heap_handles() {
    let _g = A10_SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    for w in [0, 1] {
        let heap = Heap::builder().max_heap(256 << 20).workers(w).verify(true).gc_percent(10).build().unwrap();
        within(120, "a10", move || a10_body(heap));
    }
}
static A10_SERIAL: Mutex<()> = Mutex::new(());

// ---------------------------------------------------------------------------------------------
// A11: many threads racing collect, heap_profile, attach/detach and idle_step (unattached).
fn a11_body(heap: Heap) {
    let root = heap.attach().scope(|s| {
        let n = s.alloc(Node { value: 1, next: Member::null() });
        s.root(n)
    });
    let mut hs = Vec::new();
    for t in 0..6 {
        let (heap, root) = (heap.clone(), root.clone());
        hs.push(std::thread::spawn(move || {
            for i in 0..30 {
                match (t + i) % 4 {
                    0 => heap.attach().collect(),
                    1 => {
                        let p = heap.attach().heap_profile();
                        assert!(p.types.iter().any(|ty| ty.name.contains("Node")), "{p}");
                    }
                    2 => {
                        let _ = heap.idle_step(Instant::now() + Duration::from_millis(1));
                    }
                    _ => {
                        let mut m = heap.attach();
                        m.scope(|s| {
                            let r = root.get(s);
                            let n = s.alloc(Node { value: i as u64, next: Member::null() });
                            r.next.set(s, Some(n));
                            for _ in 0..10 {
                                s.alloc_slice(512, |_| 1u32);
                            }
                        });
                    }
                }
            }
        }));
    }
    for h in hs {
        h.join().unwrap();
    }
    let mut m = heap.attach();
    m.scope(|s| assert_eq!(root.get(s).value, 1));
    drop(root);
    assert_heap_usable(&heap, &mut m);
}

#[test]
fn a11_racing_collects_profiles_attach_detach_idle_steps() {
    for w in [0, 1] {
        let heap = Heap::builder().max_heap(256 << 20).workers(w).verify(true).gc_percent(5).build().unwrap();
        within(120, "a11", move || a11_body(heap));
    }
}

// ---------------------------------------------------------------------------------------------
// A12: teardown in odd places: on the finalizer thread (the last handle is the finalizer
// thread's own while a finalizer runs), and in a thread-local destructor holding a Mutator.

static A12_DROPS: AtomicUsize = AtomicUsize::new(0);
#[derive(Trace)]
struct A12Counted {
    _x: u64,
}
impl Drop for A12Counted {
    fn drop(&mut self) {
        A12_DROPS.fetch_add(1, Ordering::SeqCst);
    }
}

#[test]
fn a12_teardown_on_the_finalizer_thread() {
    let _g = A12_SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    for w in [0, 1] {
        A12_DROPS.store(0, Ordering::SeqCst);
        let heap = Heap::builder().max_heap(256 << 20).workers(w).build().unwrap();
        let started = Arc::new(AtomicBool::new(false));
        let go = Arc::new(AtomicBool::new(false));
        let mut m = heap.attach();
        {
            let (started, go) = (started.clone(), go.clone());
            m.scope(|s| {
                s.set_finalizer(s.alloc(5u64), move |_heap, _r| {
                    started.store(true, Ordering::SeqCst);
                    while !go.load(Ordering::SeqCst) {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                });
            });
        }
        while !started.load(Ordering::SeqCst) {
            m.collect();
            std::thread::sleep(Duration::from_millis(1));
        }
        m.scope(|s| {
            for _ in 0..10 {
                s.alloc(A12Counted { _x: 0 });
            }
        });
        drop(m);
        drop(heap);
        go.store(true, Ordering::SeqCst);
        let deadline = Instant::now() + Duration::from_secs(5);
        while A12_DROPS.load(Ordering::SeqCst) < 10 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(A12_DROPS.load(Ordering::SeqCst), 10, "workers {w}: not torn down on the finalizer thread");
    }
}
static A12_SERIAL: Mutex<()> = Mutex::new(());

thread_local! {
    static A12_TLS: std::cell::RefCell<Option<(Mutator, Heap)>> = const { std::cell::RefCell::new(None) };
}

#[test]
fn a12b_teardown_in_a_thread_local_destructor() {
    let _g = A12_SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    for w in [0, 1] {
        A12_DROPS.store(0, Ordering::SeqCst);
        let heap = Heap::builder().max_heap(256 << 20).workers(w).build().unwrap();
        std::thread::spawn(move || {
            let mut m = heap.attach();
            m.scope(|s| {
                for _ in 0..10 {
                    s.alloc(A12Counted { _x: 0 });
                }
            });
            A12_TLS.with(|t| *t.borrow_mut() = Some((m, heap)));
        })
        .join()
        .unwrap();
        assert_eq!(A12_DROPS.load(Ordering::SeqCst), 10, "workers {w}");
    }
}

thread_local! {
    static A12_LATE: std::cell::RefCell<Option<A12Late>> = const { std::cell::RefCell::new(None) };
}
struct A12Late(Heap);
impl Drop for A12Late {
    fn drop(&mut self) {
        // A thread-local destructor that attaches (after lowpause's own thread-local may be gone).
        let r = catch_unwind(AssertUnwindSafe(|| {
            let mut m = self.0.attach();
            m.scope(|s| {
                s.alloc(1u64);
            });
        }));
        *A12_LATE_SAW.lock().unwrap() = Some(r.map(|_| "attached".into()).unwrap_or_else(|e| message_of(&*e)));
    }
}
static A12_LATE_SAW: Mutex<Option<String>> = Mutex::new(None);

// The destructor catches the panic: one escaping a thread-local's destructor aborts the process.
#[test]
fn a12c_attach_in_a_thread_local_destructor() {
    let heap = Heap::builder().max_heap(256 << 20).workers(0).build().unwrap();
    let h = heap.clone();
    std::thread::spawn(move || {
        // Our thread-local first, so its destructor runs after lowpause's (LIFO).
        A12_LATE.with(|t| *t.borrow_mut() = Some(A12Late(h.clone())));
        drop(h.attach());
    })
    .join()
    .unwrap();
    // Either lowpause's own thread-local is still there (and the attach works) or the attach
    // panics saying why; never std's bare `AccessError`.
    let saw = A12_LATE_SAW.lock().unwrap().clone().expect("the thread-local's destructor never ran");
    assert!(
        saw == "attached" || saw.contains("lowpause: Heap::attach called while this thread's thread-locals"),
        "{saw}"
    );
}

// ---------------------------------------------------------------------------------------------
// A13: two heaps whose destructors, running at the same time on their drop threads, each drop
// the other heap's last handle. Both heaps must be torn down (their remaining objects dropped).

static A13_HANDLES: Mutex<[Option<Heap>; 2]> = Mutex::new([None, None]);
static A13_BARRIER: std::sync::Barrier = std::sync::Barrier::new(2);
static A13_ARMED: AtomicBool = AtomicBool::new(false);
static A13_DROPS: [AtomicUsize; 2] = [AtomicUsize::new(0), AtomicUsize::new(0)];

#[derive(Trace)]
struct A13Killer {
    other: usize,
}
impl Drop for A13Killer {
    fn drop(&mut self) {
        if !A13_ARMED.load(Ordering::SeqCst) {
            return;
        }
        A13_BARRIER.wait();
        let h = A13_HANDLES.lock().unwrap()[self.other].take();
        drop(h);
    }
}
#[derive(Trace)]
struct A13Counted {
    heap: usize,
}
impl Drop for A13Counted {
    fn drop(&mut self) {
        A13_DROPS[self.heap].fetch_add(1, Ordering::SeqCst);
    }
}

#[test]
fn a13_two_heaps_drop_each_others_last_handle_from_destructors() {
    within(30, "a13", || {
        let heaps: Vec<Heap> =
            (0..2).map(|_| Heap::builder().max_heap(256 << 20).workers(1).gc_percent(1).build().unwrap()).collect();
        for (i, h) in heaps.iter().enumerate() {
            A13_HANDLES.lock().unwrap()[i] = Some(h.clone());
        }
        A13_ARMED.store(true, Ordering::SeqCst);
        let mut ts = Vec::new();
        for (i, h) in heaps.into_iter().enumerate() {
            ts.push(std::thread::spawn(move || {
                let mut m = h.attach();
                m.scope(|s| {
                    s.alloc(A13Killer { other: 1 - i });
                });
                // Cycles by allocation: the drop thread runs the killer.
                for _ in 0..50 {
                    m.scope(|s| {
                        s.alloc_slice(8192, |_| 0u8);
                    });
                }
                m.scope(|s| {
                    for _ in 0..10 {
                        s.alloc(A13Counted { heap: i });
                    }
                });
            }));
        }
        for t in ts {
            t.join().unwrap();
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while (A13_DROPS[0].load(Ordering::SeqCst) < 10 || A13_DROPS[1].load(Ordering::SeqCst) < 10)
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(10));
        }
        let d = [A13_DROPS[0].load(Ordering::SeqCst), A13_DROPS[1].load(Ordering::SeqCst)];
        eprintln!("a13: teardown drops {d:?}");
        assert_eq!(d, [10, 10]);
    });
}

// ---------------------------------------------------------------------------------------------
// A14: the collector writes to stderr (eprintln!) from its own threads while holding the cycle
// lock (trace line, failed cycles) or while `collect` waits for it (the drop thread reporting a
// destructor panic). A program that holds the stderr lock while it collects then deadlocks.
// With the trace on, the coordinator prints its line before the cycle's completion is published.
// The test harness captures `eprintln!` (so the lock is never contended under it): the attack
// runs in a child process, this same binary re-executed with `--nocapture`.
const A14_CHILD: &str = "LOWPAUSE_A14_CHILD";

#[test]
fn a14_collect_while_holding_the_stderr_lock() {
    if std::env::var(A14_CHILD).is_ok() {
        let heap = Heap::builder().max_heap(256 << 20).workers(1).trace(true).build().unwrap();
        let mut m = heap.attach();
        m.scope(|s| {
            s.alloc(String::from("garbage"));
        });
        use std::io::Write;
        let mut err = std::io::stderr().lock();
        let _ = writeln!(err, "a14: collecting with stderr locked");
        m.collect();
        let _ = writeln!(err, "a14: done");
        return;
    }
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "a14_collect_while_holding_the_stderr_lock", "--nocapture", "--test-threads=1"])
        .env(A14_CHILD, "1")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("collect with stderr locked hung (the collector wrote through std's stderr lock)");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert!(status.success(), "{err}");
    assert!(err.contains("a14: done") && err.contains("gc 1 @"), "{err}");
}

// ---------------------------------------------------------------------------------------------
// A15: alloc_slice initialisers that drive the collector (idle_step, allocation of large
// arrays, nested alloc_slice), store earlier results into the heap, and panic part-way.
static A15_DROPS: AtomicUsize = AtomicUsize::new(0);
#[derive(Trace)]
struct A15Elem {
    id: u64,
    link: Member<Node>,
    big: Vec<u8>,
}
impl Drop for A15Elem {
    fn drop(&mut self) {
        assert!(self.link.is_null());
        assert_eq!(self.big.len(), 100);
        A15_DROPS.fetch_add(1, Ordering::SeqCst);
    }
}

fn a15_body(heap: Heap) {
    let mut m = heap.attach();
    let keep = m.scope(|s| s.root(s.alloc(Node { value: 0, next: Member::null() })));
    for round in 0..30usize {
        let r = catch_unwind(AssertUnwindSafe(|| {
            m.scope(|s| {
                // A large array (its span is pending while init runs).
                let arr = s.alloc_slice(5000, |i| {
                    if i % 1000 == 0 {
                        let _ = s.heap().idle_step(Instant::now() + Duration::from_micros(300));
                        let inner =
                            s.alloc_slice(3000, |j| A15Elem { id: j as u64, link: Member::null(), big: vec![1; 100] });
                        let n = s.alloc(Node { value: inner.len() as u64, next: Member::null() });
                        keep.get(s).next.set(s, Some(n));
                        for _ in 0..8 {
                            s.alloc_slice(4096, |_| 0u64);
                        }
                    }
                    if round % 3 == 0 && i == 4321 {
                        panic!("init panics at {i}");
                    }
                    A15Elem { id: i as u64, link: Member::null(), big: vec![2; 100] }
                });
                for (i, e) in arr.iter().enumerate() {
                    assert_eq!(e.id, i as u64);
                    e.link.set(s, Some(keep.get(s)));
                }
                assert_eq!(keep.get(s).next.get(s).unwrap().value, 3000);
            })
        }));
        assert_eq!(r.is_err(), round % 3 == 0);
        if round % 4 == 0 {
            m.collect();
        }
    }
    m.collect();
    m.collect();
    drop(keep);
    assert_heap_usable(&heap, &mut m);
    eprintln!("a15: {} drops, {}", A15_DROPS.load(Ordering::SeqCst), heap.stats());
    assert_eq!(heap.stats().drop_panics, 0);
}

#[test]
fn a15_alloc_slice_initialisers_that_drive_the_collector() {
    for w in [0, 1] {
        let heap = Heap::builder().max_heap(512 << 20).workers(w).verify(true).gc_percent(10).build().unwrap();
        within(300, "a15", move || a15_body(heap));
    }
}

// ---------------------------------------------------------------------------------------------
// A16: a zero-sized object in the last slot of the last page of the reservation: its payload
// address is the reservation's end. The debug check "a Member held a foreign reference"
// (Member::get, Value::get) tests the payload address, not the object's start.
#[test]
fn a16_zero_sized_object_at_the_end_of_the_reservation() {
    let heap = Heap::builder().max_heap(16 << 20).workers(0).gc_percent_off().build().unwrap();
    let mut m = heap.attach();
    let r = m.scope(|s| {
        let arr = s.alloc_slice(700_000, |_| Member::<()>::null());
        let mut n = 0;
        for slot in arr.iter() {
            match catch_unwind(AssertUnwindSafe(|| s.alloc(()))) {
                Ok(g) => {
                    slot.set(s, Some(g));
                    n += 1;
                }
                Err(_) => break,
            }
        }
        eprintln!("a16: {n} zero-sized objects before the reservation ran out");
        let mut bad = None;
        for (i, slot) in arr.iter().enumerate().take(n) {
            if let Err(e) = catch_unwind(AssertUnwindSafe(|| {
                let _ = slot.get(s);
            })) {
                bad = Some((i, message_of(&*e)));
                break;
            }
        }
        bad
    });
    eprintln!("a16: {r:?}");
    assert!(r.is_none(), "Member::get of a valid zero-sized object panicked: {r:?}");
}

// A7b: the same in concurrent mode: the coordinator blocks inside a termination round (weak-read
// gate closed) on the table lock held by T's writer; a third thread's `Weak::get` then spins
// until the writer returns. T's writer waits for that `Weak::get`: a deadlock (broken only by
// the writer's own timeout).
#[test]
fn a7b_debug_of_a_weak_table_blocks_weak_reads_of_other_threads() {
    let heap = Heap::builder().max_heap(256 << 20).workers(1).build().unwrap();
    within(40, "a7b", move || {
        let mut t = heap.attach();
        let (table, _key, weak, _wkeep) = t.scope(|s| {
            let tb = WeakTable::<Node, Node>::new_in(s);
            let k = s.alloc(Node { value: 1, next: Member::null() });
            tb.insert(s, k, ValueRef::Nil);
            let o = s.alloc(Node { value: 2, next: Member::null() });
            (s.root(tb), s.root(k), Weak::new(s, o), s.root(o))
        });
        let flag = |b: bool| Arc::new(AtomicBool::new(b));
        let (w_inside, w_allocated, w_may_exit) = (flag(false), flag(false), flag(false));
        let (u_go, u_done) = (flag(false), flag(false));
        let u_time = Arc::new(Mutex::new(Duration::ZERO));
        let h2 = heap.clone();
        let (wi, wd, wm) = (w_inside.clone(), w_allocated.clone(), w_may_exit.clone());
        let w = std::thread::spawn(move || {
            let mut m = h2.attach();
            m.scope(|s| {
                wi.store(true, Ordering::SeqCst);
                let t0 = Instant::now();
                // Slow paths until the barrier is on, and a few more: "barrier on" answered.
                while !h2.__barrier_on() && t0.elapsed() < Duration::from_secs(5) {
                    s.alloc_slice(1 << 16, |_| 0u8);
                    std::thread::sleep(Duration::from_millis(1));
                }
                for _ in 0..4 {
                    s.alloc_slice(1 << 16, |_| 0u8);
                }
                wd.store(true, Ordering::SeqCst);
                while !wm.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(1));
                }
            });
        });
        let h3 = heap.clone();
        let (ug, ud, ut) = (u_go.clone(), u_done.clone(), u_time.clone());
        let weak2 = weak.clone();
        let u = std::thread::spawn(move || {
            let mut m = h3.attach();
            while !ug.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(1));
            }
            std::thread::sleep(Duration::from_millis(100)); // let the coordinator reach the round
            let t0 = Instant::now();
            m.scope(|s| {
                let _ = weak2.get(s);
            });
            *ut.lock().unwrap() = t0.elapsed();
            ud.store(true, Ordering::SeqCst);
        });
        while !w_inside.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(1));
        }
        heap.set_gc_percent(Some(1)).unwrap();
        t.scope(|s| {
            s.alloc_slice(1 << 20, |_| 0u8);
        });
        while !w_allocated.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(1));
        }
        std::thread::sleep(Duration::from_millis(50)); // the snapshot request is posted
        let waited = t.scope(|s| {
            let tb = table.get(s);
            w_may_exit.store(true, Ordering::SeqCst);
            u_go.store(true, Ordering::SeqCst);
            let mut wr = WaitingWriter { until: &u_done, waited: Duration::ZERO };
            use std::fmt::Write;
            let _ = write!(wr, "{:?}", &*tb);
            wr.waited
        });
        w.join().unwrap();
        u.join().unwrap();
        let ut = *u_time.lock().unwrap();
        eprintln!("a7b: T's writer waited {waited:?}; U's Weak::get took {ut:?}");
        assert!(ut < Duration::from_secs(1), "another thread's Weak::get was held up: {ut:?}");
        drop(weak);
    });
}

// ---------------------------------------------------------------------------------------------
// A17: exhausting the heap inside GcVec::push (while it holds the vector's lock and is growing
// it), inside WeakMember::set and Weak::new: each panics clearly; the vector keeps its elements
// and every heap structure keeps working.
#[derive(Trace)]
struct A17 {
    v: GcVec<Member<Node>>,
    w: WeakMember<Node>,
    big: Member<[u64]>,
}

#[test]
fn a17_exhaustion_inside_structures() {
    for workers in [0, 1] {
        let heap = Heap::builder().max_heap(16 << 20).workers(workers).verify(true).build().unwrap();
        let mut m = heap.attach();
        let r = m.scope(|s| s.root(s.alloc(A17 { v: GcVec::new(), w: WeakMember::null(), big: Member::null() })));
        let msg = panic_message(|| {
            m.scope(|s| {
                let a = r.get(s);
                a.big.set(s, Some(s.alloc_slice(1 << 20, |i| i as u64))); // 8 MiB kept
                let mut i = 0u64;
                loop {
                    let n = s.alloc(Node { value: i, next: Member::null() });
                    a.v.push(s, Some(n));
                    a.w.set(s, Some(n));
                    let _w = Weak::new(s, n);
                    i += 1;
                }
            })
        });
        assert!(msg.starts_with("lowpause: ") && msg.contains("exhausted"), "{msg}");
        m.scope(|s| {
            let a = r.get(s);
            let len = a.v.len();
            for j in 0..len {
                assert_eq!(a.v.get(s, j).flatten().unwrap().value, j as u64);
            }
            a.big.set(s, None);
            a.v.truncate(s, 10);
        });
        m.collect();
        m.scope(|s| {
            let a = r.get(s);
            for j in 0..10u64 {
                a.v.push(s, Some(s.alloc(Node { value: 100 + j, next: Member::null() })));
            }
            assert_eq!(a.v.len(), 20);
            assert_eq!(a.v.get(s, 19).flatten().unwrap().value, 109);
        });
        drop(r);
        assert_heap_usable(&heap, &mut m);
    }
}

//! Attacks on the API from safe code, and user code the collector runs misbehaving. Each attack
//! must end in a clear `lowpause:` panic before anything foreign is handed out, or complete
//! correctly, within seconds, leaving every heap usable. Every heap here verifies its marks
//! (the checkmark pass), so a collector that misses a reference fails the test too.

mod common;
use common::{assert_heap_usable, message_of, panic_message, within, Node};
use lowpause::{
    GcVec, Heap, Member, Mutator, Root, Scope, Trace, Tracer, Value, ValueRef, Weak, WeakMember, WeakTable,
};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Uses a result for nothing (the attacks only care whether the call panics).
fn ignore<T>(_: T) {}

/// A verifying heap with `workers` mark workers, its reservation small enough for valgrind.
fn heap(workers: usize) -> Heap {
    Heap::builder().workers(workers).verify(true).max_heap(256 << 20).build().unwrap()
}

fn heaps() -> impl Iterator<Item = Heap> {
    [0, 1].into_iter().map(heap)
}

/// Runs `f` on a synchronous and on a concurrent heap, each [`within`] `secs`.
fn on_each_heap(secs: u64, what: &'static str, f: impl Fn(Heap) + Send + Clone + 'static) {
    for heap in heaps() {
        let f = f.clone();
        within(secs, what, move || f(heap));
    }
}

// ---------------------------------------------------------------------------------------------
// Every method that takes a scope and an in-heap object, through another heap's scope.

/// An object of heap A with one of every in-heap type.
#[derive(Trace)]
struct Holder {
    member: Member<Node>,
    value: Value<Node>,
    members: GcVec<Member<Node>>,
    values: GcVec<Value<Node>>,
    weak: WeakMember<Node>,
    table: Member<WeakTable<Node, Node>>,
}

impl Holder {
    fn empty() -> Holder {
        Holder {
            member: Member::null(),
            value: Value::nil(),
            members: GcVec::new(),
            values: GcVec::new(),
            weak: WeakMember::null(),
            table: Member::null(),
        }
    }
}

/// Heap A's holder, filled: every slot refers to `node`, the table maps `node` to `node`.
fn holder(m: &mut Mutator) -> (Root<Holder>, Root<Node>) {
    m.scope(|s| {
        let node = s.alloc(Node { value: 7, next: Member::null() });
        let h = s.alloc(Holder::empty());
        h.member.set(s, Some(node));
        h.value.set(s, ValueRef::Object(node));
        h.members.push(s, Some(node));
        h.values.push(s, ValueRef::Object(node));
        h.weak.set(s, Some(node));
        let t = WeakTable::new_in(s);
        t.insert_hashed(s, 1, node, ValueRef::Object(node));
        h.table.set(s, Some(t));
        (s.root(h), s.root(node))
    })
}

/// One foreign use: its name as the panic must give it, and the use itself (`h`: heap A's
/// holder read in A's scope; `sb`: a scope of heap B).
type Attack = (&'static str, fn(&Holder, &WeakTable<Node, Node>, &Scope<'_>));

fn b_node<'s>(sb: &Scope<'s>) -> lowpause::Gc<'s, Node> {
    sb.alloc(Node { value: 99, next: Member::null() })
}

const ATTACKS: &[Attack] = &[
    ("Member::get", |h, _, sb| ignore(h.member.get(sb))),
    ("Member::set", |h, _, sb| h.member.set(sb, Some(b_node(sb)))),
    ("Value::get", |h, _, sb| ignore(h.value.get(sb))),
    ("Value::set", |h, _, sb| h.value.set(sb, ValueRef::Object(b_node(sb)))),
    ("GcVec::get", |h, _, sb| ignore(h.members.get(sb, 0))),
    ("GcVec::push", |h, _, sb| h.members.push(sb, Some(b_node(sb)))),
    ("GcVec::pop", |h, _, sb| ignore(h.values.pop(sb))),
    ("GcVec::set", |h, _, sb| h.values.set(sb, 0, ValueRef::Object(b_node(sb)))),
    ("GcVec::truncate", |h, _, sb| h.members.truncate(sb, 0)),
    ("WeakMember::get", |h, _, sb| ignore(h.weak.get(sb))),
    ("WeakMember::set", |h, _, sb| h.weak.set(sb, Some(b_node(sb)))),
    ("WeakTable::get", |_, t, sb| ignore(t.get(sb, b_node(sb)))),
    ("WeakTable::insert", |_, t, sb| t.insert(sb, b_node(sb), ValueRef::Object(b_node(sb)))),
    ("WeakTable::remove", |_, t, sb| ignore(t.remove(sb, b_node(sb)))),
    ("WeakTable::find", |_, t, sb| ignore(t.find(sb, 1, |_| true))),
    ("WeakTable::insert_hashed", |_, t, sb| t.insert_hashed(sb, 1, b_node(sb), ValueRef::Nil)),
];

#[test]
fn every_in_heap_method_refuses_another_heaps_scope() {
    for (ha, hb) in heaps().zip(heaps()) {
        let (mut ma, mut mb) = (ha.attach(), hb.attach());
        let (h, node) = holder(&mut ma);
        for &(op, attack) in ATTACKS {
            let msg = panic_message(|| {
                ma.scope(|sa| {
                    let h = h.get(sa);
                    let t = h.table.get(sa).unwrap();
                    mb.scope(|sb| attack(&h, &t, sb));
                })
            });
            assert!(
                msg.starts_with("lowpause: ")
                    && msg.contains(&format!("{op} on a"))
                    && msg.contains("not inside this scope's heap"),
                "{op}: {msg}"
            );
            // Nothing changed in heap A, and both heaps still work.
            ma.collect();
            ma.scope(|sa| {
                let (h, node) = (h.get(sa), node.get(sa));
                let same = |g: Option<lowpause::Gc<'_, Node>>| {
                    g.is_some_and(|g| g.value == node.value && std::ptr::eq(&*g, &*node))
                };
                assert!(same(h.member.get(sa)), "{op} changed the member");
                assert_eq!(h.value.get(sa), ValueRef::Object(node), "{op} changed the value");
                assert!(same(h.members.get(sa, 0).flatten()) && h.members.len() == 1, "{op} changed the vector");
                assert_eq!(h.values.get(sa, 0), Some(ValueRef::Object(node)), "{op} changed the vector");
                assert!(same(h.weak.get(sa)), "{op} changed the weak member");
                let t = h.table.get(sa).unwrap();
                assert_eq!(t.len(), 1, "{op} changed the table");
                assert!(same(t.find(sa, 1, |_| true).map(|(k, _)| k)), "{op} changed the table");
            });
        }
        // The handles' own checks: a Root or a Weak of A read in B's scope.
        let weak = ma.scope(|sa| Weak::new(sa, node.get(sa)));
        for (op, attack) in [
            ("Root::get", Box::new(|sb: &Scope<'_>| ignore(node.get(sb))) as Box<dyn Fn(&Scope<'_>)>),
            ("Weak::get", Box::new(|sb: &Scope<'_>| ignore(weak.get(sb)))),
        ] {
            let msg = panic_message(|| mb.scope(|sb| attack(sb)));
            assert!(msg.contains(op) && msg.contains("another heap"), "{op}: {msg}");
        }
        assert_heap_usable(&ha, &mut ma);
        assert_heap_usable(&hb, &mut mb);
    }
}

#[test]
fn a_weak_table_never_launders_an_object_into_another_heap() {
    // The attack of issue 10: find through heap B's scope returned a key of heap A as a B `Gc`,
    // which was then stored into a B member and read after A freed it.
    let (ha, hb) = (heap(0), heap(1));
    let (mut ma, mut mb) = (ha.attach(), hb.attach());
    let (table, _key) = ma.scope(|sa| {
        let t = WeakTable::<Node, Node>::new_in(sa);
        let k = sa.alloc(Node { value: 5, next: Member::null() });
        t.insert_hashed(sa, 5, k, ValueRef::Nil);
        (sa.root(t), sa.root(k))
    });
    let b_holder = mb.scope(|sb| sb.root(sb.alloc(Node { value: 0, next: Member::null() })));
    let msg = panic_message(|| {
        ma.scope(|sa| {
            let t = table.get(sa);
            mb.scope(|sb| {
                if let Some((k, _)) = t.find(sb, 5, |_| true) {
                    b_holder.get(sb).next.set(sb, Some(k)); // never reached
                }
            })
        })
    });
    assert!(msg.contains("WeakTable::find") && msg.contains("not inside this scope's heap"), "{msg}");
    ma.collect();
    mb.collect();
    mb.scope(|sb| assert!(b_holder.get(sb).next.get(sb).is_none(), "a foreign object was stored"));
    // Inserting heap B's objects into heap A's table is refused too, and leaves it unchanged.
    let msg = panic_message(|| {
        ma.scope(|sa| {
            let t = table.get(sa);
            mb.scope(|sb| t.insert(sb, b_holder.get(sb), ValueRef::Object(b_holder.get(sb))));
        })
    });
    assert!(msg.contains("WeakTable::insert"), "{msg}");
    ma.scope(|sa| assert_eq!(table.get(sa).len(), 1));
    assert_heap_usable(&ha, &mut ma);
    assert_heap_usable(&hb, &mut mb);
}

#[test]
fn a_finalizer_on_a_weak_table_is_refused() {
    for heap in heaps() {
        let mut m = heap.attach();
        let msg = panic_message(|| {
            m.scope(|s| s.set_finalizer(WeakTable::<Node, Node>::new_in(s), |_, _| {}));
        });
        assert!(msg.contains("set_finalizer on a WeakTable is refused"), "{msg}");
        // The table in a field of a finalized object is fine: its live keys keep their values
        // while the finalizer runs.
        let (done, ok) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicBool::new(false)));
        let key = m.scope(|s| {
            let key = s.alloc(Node { value: 1, next: Member::null() });
            let t = WeakTable::<Node, Node>::new_in(s);
            t.insert(s, key, ValueRef::Object(s.alloc(Node { value: 3, next: Member::null() })));
            let table_holder = s.alloc(Holder::empty());
            table_holder.table.set(s, Some(t));
            let (done, ok) = (done.clone(), ok.clone());
            let key_root = s.root(key);
            let kr = key_root.clone();
            s.set_finalizer(table_holder, move |heap, h| {
                let mut m = heap.attach();
                let v = m.scope(|s| match h.get(s).table.get(s).unwrap().get(s, kr.get(s)) {
                    Some(ValueRef::Object(v)) => v.value,
                    _ => 0,
                });
                ok.store(v == 3, Ordering::SeqCst);
                done.store(true, Ordering::SeqCst);
            });
            key_root
        });
        let deadline = Instant::now() + Duration::from_secs(10);
        while !done.load(Ordering::SeqCst) {
            assert!(Instant::now() < deadline, "the finalizer never ran");
            m.collect();
            std::thread::sleep(Duration::from_millis(1));
        }
        assert!(ok.load(Ordering::SeqCst), "the table lost the value of a live key");
        drop(key);
        assert_heap_usable(&heap, &mut m);
    }
}

// ---------------------------------------------------------------------------------------------
// Trace impls that break their contract.

static TRACE_PANICS: AtomicBool = AtomicBool::new(false);
static TRACE_USES_HEAP: Mutex<Option<(Heap, HeapUse)>> = Mutex::new(None);

/// What a rogue `trace` tries to do with a heap.
#[derive(Clone, Copy, Debug)]
enum HeapUse {
    Attach,
    IdleStep,
}
static TRACE_SAW: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// A payload whose own `Drop` panics.
struct PanicsOnDrop;
impl Drop for PanicsOnDrop {
    fn drop(&mut self) {
        panic!("a panic payload that panics when dropped");
    }
}

/// Holds a child, and panics in `trace` (with a payload that panics on drop) while the flag is
/// up, or uses the heap from inside `trace` while `TRACE_USES_HEAP` holds one.
struct Rogue {
    child: Member<Node>,
}
// SAFETY: visits its only reference, unless it panics (which the test means to do).
unsafe impl Trace for Rogue {
    const NEEDS_TRACE: bool = true;
    fn trace(&self, tracer: &mut Tracer<'_>) {
        if TRACE_PANICS.load(Ordering::SeqCst) {
            std::panic::panic_any(PanicsOnDrop);
        }
        let what = TRACE_USES_HEAP.lock().unwrap().clone();
        if let Some((heap, what)) = what {
            let r = catch_unwind(AssertUnwindSafe(|| match what {
                HeapUse::Attach => drop(heap.attach()),
                HeapUse::IdleStep => ignore(heap.idle_step(Instant::now() + Duration::from_millis(1))),
            }));
            TRACE_SAW.lock().unwrap().push(r.map(|_| "no panic".into()).unwrap_or_else(|e| message_of(&*e)));
        }
        self.child.trace(tracer);
    }
}

/// Allocates a rooted `Rogue` with a child, and `garbage` unreachable nodes.
fn rogue_and_garbage(m: &mut Mutator, garbage: usize) -> Root<Rogue> {
    m.scope(|s| {
        for i in 0..garbage {
            s.alloc(Node { value: i as u64, next: Member::null() });
        }
        let r = s.alloc(Rogue { child: Member::null() });
        r.child.set(s, Some(s.alloc(Node { value: 42, next: Member::null() })));
        s.root(r)
    })
}

#[test]
fn a_panicking_trace_fails_the_cycle_frees_nothing_and_the_heap_goes_on() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    for heap in heaps() {
        let mut m = heap.attach();
        let rogue = rogue_and_garbage(&mut m, 100);
        TRACE_PANICS.store(true, Ordering::SeqCst);
        let before = heap.stats();
        within(20, "collect with a panicking trace", {
            let heap = heap.clone();
            move || {
                let mut m = heap.attach();
                m.collect();
                m.collect();
            }
        });
        let after = heap.stats();
        TRACE_PANICS.store(false, Ordering::SeqCst);
        assert!(after.failed_cycles >= 2, "{after}");
        assert_eq!(after.freed_objects, before.freed_objects, "a failed cycle freed something: {after}");
        // The rogue's child survived even though its trace never got to it.
        m.scope(|s| assert_eq!(rogue.get(s).child.get(s).unwrap().value, 42));
        // With the trace behaving again, the next cycle frees the garbage.
        m.collect();
        assert!(heap.stats().freed_objects >= before.freed_objects + 100, "{}", heap.stats());
        m.scope(|s| assert_eq!(rogue.get(s).child.get(s).unwrap().value, 42));
        assert_heap_usable(&heap, &mut m);
    }
}

#[test]
fn a_trace_that_uses_the_heap_is_refused() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    for (heap, what) in heaps().flat_map(|h| [(h.clone(), HeapUse::Attach), (h, HeapUse::IdleStep)]) {
        let mut m = heap.attach();
        let rogue = rogue_and_garbage(&mut m, 0);
        TRACE_SAW.lock().unwrap().clear();
        *TRACE_USES_HEAP.lock().unwrap() = Some((heap.clone(), what));
        within(20, "collect with a trace that uses a heap", {
            let heap = heap.clone();
            move || heap.attach().collect()
        });
        *TRACE_USES_HEAP.lock().unwrap() = None;
        let saw = TRACE_SAW.lock().unwrap().clone();
        assert!(!saw.is_empty(), "the trace never ran");
        let op = match what {
            HeapUse::Attach => "Heap::attach",
            HeapUse::IdleStep => "Heap::idle_step",
        };
        let want = format!("{op} called from a `Trace::trace` implementation");
        assert!(saw.iter().all(|m| m.contains(&want)), "{saw:?}");
        m.scope(|s| assert_eq!(rogue.get(s).child.get(s).unwrap().value, 42));
        assert_heap_usable(&heap, &mut m);
    }
}

/// Tests that flip the global `Rogue` switches run one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

// ---------------------------------------------------------------------------------------------
// Destructors and finalizers that misbehave.

/// Runs `on_drop` when dropped (as a dead heap object).
struct OnDrop(Option<Box<dyn FnOnce() + Send + Sync>>);
// SAFETY: holds no GC reference.
unsafe impl Trace for OnDrop {
    const NEEDS_TRACE: bool = false;
    fn trace(&self, _: &mut Tracer<'_>) {}
}
impl Drop for OnDrop {
    fn drop(&mut self) {
        if let Some(f) = self.0.take() {
            f();
        }
    }
}

fn garbage_on_drop(m: &mut Mutator, f: impl FnOnce() + Send + Sync + 'static) {
    m.scope(|s| {
        s.alloc(OnDrop(Some(Box::new(f))));
    });
}

#[test]
fn a_destructor_panic_whose_payload_panics_is_contained() {
    on_each_heap(20, "collect after a doubly panicking destructor", |heap| {
        let mut m = heap.attach();
        let ran = Arc::new(AtomicUsize::new(0));
        for _ in 0..3 {
            let r = ran.clone();
            garbage_on_drop(&mut m, move || {
                r.fetch_add(1, Ordering::SeqCst);
                std::panic::panic_any(PanicsOnDrop)
            });
            m.collect();
        }
        assert_eq!(ran.load(Ordering::SeqCst), 3, "a destructor did not run");
        assert_eq!(heap.stats().drop_panics, 3, "{}", heap.stats());
        assert_heap_usable(&heap, &mut m);
    });
}

#[test]
fn a_finalizer_panic_whose_payload_panics_is_contained_and_finalizers_keep_running() {
    on_each_heap(20, "finalizers after a doubly panicking one", |heap| {
        let mut m = heap.attach();
        let ran = Arc::new(AtomicUsize::new(0));
        m.scope(|s| {
            let r = ran.clone();
            s.set_finalizer(s.alloc(1u64), move |_, _| {
                r.fetch_add(1, Ordering::SeqCst);
                std::panic::panic_any(PanicsOnDrop)
            });
        });
        while ran.load(Ordering::SeqCst) < 1 {
            m.collect();
            std::thread::sleep(Duration::from_millis(1));
        }
        // A second finalizer, registered after the first one's panic, still runs.
        m.scope(|s| {
            let r = ran.clone();
            s.set_finalizer(s.alloc(2u64), move |_, _| {
                r.fetch_add(1, Ordering::SeqCst);
            });
        });
        while ran.load(Ordering::SeqCst) < 2 {
            m.collect();
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(heap.stats().finalizer_panics, 1);
        assert_heap_usable(&heap, &mut m);
    });
}

/// A helper thread attached to `heap`: on each request it enters a scope, allocates, collects
/// and replies.
fn helper(heap: Heap) -> mpsc::Sender<mpsc::Sender<()>> {
    let (tx, rx) = mpsc::channel::<mpsc::Sender<()>>();
    std::thread::spawn(move || {
        let mut m = heap.attach();
        for reply in rx {
            m.scope(|s| ignore(s.alloc(Node { value: 1, next: Member::null() })));
            m.collect();
            let _ = reply.send(());
        }
    });
    tx
}

#[test]
fn a_destructor_that_waits_for_a_thread_using_the_heap_completes() {
    on_each_heap(30, "a destructor waiting for a collecting thread", |heap| {
        let mut m = heap.attach();
        let requests = Mutex::new(helper(heap.clone()));
        let answered = Arc::new(AtomicUsize::new(0));
        for _ in 0..3 {
            let (requests, answered) = (requests.lock().unwrap().clone(), answered.clone());
            garbage_on_drop(&mut m, move || {
                let (tx, rx) = mpsc::channel();
                requests.send(tx).unwrap();
                // The helper enters a scope and collects before it answers.
                if rx.recv_timeout(Duration::from_secs(10)).is_ok() {
                    answered.fetch_add(1, Ordering::SeqCst);
                }
            });
            m.collect();
        }
        assert_eq!(answered.load(Ordering::SeqCst), 3, "a destructor's helper never answered");
        assert_heap_usable(&heap, &mut m);
    });
}

#[test]
fn a_blocked_finalizer_holds_up_no_collection() {
    on_each_heap(30, "collections while a finalizer blocks", |heap| {
        let mut m = heap.attach();
        let (release, blocked) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicBool::new(false)));
        m.scope(|s| {
            let (release, blocked) = (release.clone(), blocked.clone());
            s.set_finalizer(s.alloc(1u64), move |heap, obj| {
                // It reads its object, then blocks outside every scope: no cycle waits.
                ignore(heap.attach().scope(|s| *obj.get(s)));
                blocked.store(true, Ordering::SeqCst);
                while !release.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(1));
                }
            });
        });
        while !blocked.load(Ordering::SeqCst) {
            m.collect();
            std::thread::sleep(Duration::from_millis(1));
        }
        let cycles = heap.stats().cycles;
        for _ in 0..5 {
            m.collect();
        }
        assert!(heap.stats().cycles >= cycles + 5);
        assert_heap_usable(&heap, &mut m);
        release.store(true, Ordering::SeqCst);
    });
}

#[test]
fn a_blocked_destructor_holds_up_no_cycle() {
    // Concurrent mode: the destructor blocks on the drop thread; cycles (and the collections
    // of threads that do not wait for it) go on.
    let heap = heap(1);
    within(30, "cycles while a destructor blocks", move || {
        let mut m = heap.attach();
        let (release, blocked) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicBool::new(false)));
        {
            let (release, blocked) = (release.clone(), blocked.clone());
            garbage_on_drop(&mut m, move || {
                blocked.store(true, Ordering::SeqCst);
                while !release.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(1));
                }
            });
        }
        // Let the drop thread take it (a collect would run its own cycle's drops itself): cycles
        // triggered by allocation alone, then quiet again.
        heap.set_gc_percent(Some(1)).unwrap();
        while !blocked.load(Ordering::SeqCst) {
            m.scope(|s| ignore(s.alloc_slice(4096, |_| 0u8)));
            std::thread::sleep(Duration::from_millis(1));
        }
        heap.set_gc_percent(Some(100)).unwrap();
        m.collect();
        let cycles = heap.stats().cycles;
        let drops = Arc::new(AtomicUsize::new(0));
        for _ in 0..5 {
            let d = drops.clone();
            garbage_on_drop(&mut m, move || ignore(d.fetch_add(1, Ordering::SeqCst)));
            m.collect();
        }
        assert!(heap.stats().cycles >= cycles + 5);
        assert_eq!(drops.load(Ordering::SeqCst), 5, "collect ran its own cycle's destructors");
        assert_heap_usable(&heap, &mut m);
        release.store(true, Ordering::SeqCst);
    });
}

#[test]
fn collect_inside_a_scope_of_another_heap_panics_instead_of_hanging() {
    let (ha, hb) = (heap(1), heap(1));
    // Two threads, each inside a scope of one heap, collecting the other's: before, both hung.
    let start = Arc::new(std::sync::Barrier::new(2));
    let run = |mine: Heap, theirs: Heap, start: Arc<std::sync::Barrier>| {
        move || {
            let (mut m1, mut m2) = (mine.attach(), theirs.attach());
            let msg = panic_message(|| {
                m1.scope(|_| {
                    start.wait();
                    m2.collect();
                })
            });
            assert_heap_usable(&mine, &mut m1);
            msg
        }
    };
    let t1 = std::thread::spawn(run(ha.clone(), hb.clone(), start.clone()));
    let msg2 = within(20, "cross-heap collect", run(hb.clone(), ha.clone(), start));
    let msg1 = t1.join().unwrap();
    for msg in [msg1, msg2] {
        assert!(msg.contains("Mutator::collect called inside a scope"), "{msg}");
    }
}

#[test]
fn a_panic_in_a_weak_table_lookup_leaves_the_table_usable() {
    for heap in heaps() {
        let mut m = heap.attach();
        let t = m.scope(|s| {
            let t = WeakTable::<Node, Node>::new_in(s);
            let k = s.alloc(Node { value: 1, next: Member::null() });
            t.insert_hashed(s, 1, k, ValueRef::Nil);
            (s.root(t), s.root(k))
        });
        let msg = panic_message(|| m.scope(|s| ignore(t.0.get(s).find(s, 1, |_| panic!("eq panicked")))));
        assert_eq!(msg, "eq panicked");
        m.collect();
        m.scope(|s| assert!(t.0.get(s).find(s, 1, |k| k.value == 1).is_some()));
        assert_heap_usable(&heap, &mut m);
    }
}

//! Destructors of dead objects: they see only null references, a panicking one is contained, and
//! a panicking `alloc_slice` initializer leaves nothing half-built.

mod common;
use common::{assert_heap_usable, panic_message, Node};
use lowpause::{Heap, Member, Trace};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

static SMUGGLED: Mutex<Vec<Member<Node>>> = Mutex::new(Vec::new());

#[derive(Trace)]
struct Thief {
    victim: Member<Node>,
    also: [Member<Node>; 2],
}

impl Drop for Thief {
    fn drop(&mut self) {
        // Try to smuggle the references out of the dying object into a static.
        SMUGGLED.lock().unwrap().push(std::mem::replace(&mut self.victim, Member::null()));
        for m in &mut self.also {
            SMUGGLED.lock().unwrap().push(std::mem::take(m));
        }
    }
}

#[test]
fn a_destructor_only_ever_sees_null_members() {
    let heap = Heap::new();
    let mut m = heap.attach();
    m.scope(|s| {
        let thief = s.alloc(Thief { victim: Member::null(), also: [Member::null(), Member::null()] });
        let v = s.alloc(Node { value: 7, next: Member::null() });
        thief.victim.set(s, Some(v));
        thief.also[0].set(s, Some(v));
        thief.also[1].set(s, Some(v));
        v.next.set(s, Some(v));
    });
    m.collect();
    let smuggled = SMUGGLED.lock().unwrap();
    assert_eq!(smuggled.len(), 3, "the destructor ran once");
    assert!(smuggled.iter().all(|m| m.is_null()), "every reference was nulled before drop glue ran");
    assert_eq!(heap.stats().freed_objects, 2);
}

struct Counted {
    drops: Arc<AtomicUsize>,
    panic: bool,
}
// SAFETY: holds no GC reference.
unsafe impl Trace for Counted {
    const NEEDS_TRACE: bool = false;
    fn trace(&self, _: &mut lowpause::Tracer<'_>) {}
}
impl Drop for Counted {
    fn drop(&mut self) {
        self.drops.fetch_add(1, Ordering::SeqCst);
        if self.panic {
            panic!("destructor failure on purpose");
        }
    }
}

#[test]
fn a_panicking_destructor_is_contained_and_the_heap_stays_consistent() {
    let heap = Heap::new();
    let mut m = heap.attach();
    let drops = Arc::new(AtomicUsize::new(0));
    let keep = m.scope(|s| {
        for i in 0..100 {
            s.alloc(Counted { drops: drops.clone(), panic: i % 10 == 3 });
        }
        s.root(s.alloc(Counted { drops: drops.clone(), panic: false }))
    });
    m.collect();
    assert_eq!(drops.load(Ordering::SeqCst), 100, "every dead object's destructor ran once");
    let st = heap.stats();
    assert_eq!(st.drop_panics, 10, "{st}");
    assert_eq!(st.live_objects, 1, "{st}");
    // Nothing runs twice on later cycles, and the survivor is intact.
    m.collect();
    assert_eq!(drops.load(Ordering::SeqCst), 100);
    m.scope(|s| assert!(!keep.get(s).panic));
    assert_heap_usable(&heap, &mut m);
    drop(keep);
    m.collect();
    assert_eq!(drops.load(Ordering::SeqCst), 101);
}

#[test]
fn a_panicking_alloc_slice_initializer_leaves_nothing_half_built() {
    for len in [50usize, 5000] {
        // 5000 × 16 bytes is a large object; 50 a small one.
        let heap = Heap::new();
        let mut m = heap.attach();
        let drops = Arc::new(AtomicUsize::new(0));
        let msg = panic_message(|| {
            m.scope(|s| {
                s.alloc_slice(len, |i| {
                    if i == len - 3 {
                        panic!("init failed at {i}");
                    }
                    Counted { drops: drops.clone(), panic: false }
                });
            })
        });
        assert_eq!(msg, format!("init failed at {}", len - 3));
        assert_eq!(drops.load(Ordering::SeqCst), len - 3, "the elements made so far were dropped at once");
        m.collect();
        assert_eq!(drops.load(Ordering::SeqCst), len - 3, "and never again");
        assert_eq!(heap.stats().freed_objects, 1, "the empty husk was reclaimed");
        assert_heap_usable(&heap, &mut m);
    }
}

#[test]
fn dropping_the_heap_drops_every_object_once() {
    let drops = Arc::new(AtomicUsize::new(0));
    {
        let heap = Heap::new();
        let mut m = heap.attach();
        let _keep = m.scope(|s| {
            for _ in 0..1000 {
                s.alloc(Counted { drops: drops.clone(), panic: false });
            }
            s.root(s.alloc_slice(3, |_| Counted { drops: drops.clone(), panic: false }))
        });
        m.collect();
        assert_eq!(drops.load(Ordering::SeqCst), 1000);
    }
    assert_eq!(drops.load(Ordering::SeqCst), 1003, "teardown drops what was still alive");
}

#[test]
fn a_root_keeps_its_heap_alive_after_every_other_handle_is_gone() {
    let drops = Arc::new(AtomicUsize::new(0));
    let root = {
        let heap = Heap::new();
        let mut m = heap.attach();
        m.scope(|s| s.root(s.alloc(Counted { drops: drops.clone(), panic: false })))
    };
    assert_eq!(drops.load(Ordering::SeqCst), 0);
    let root2 = root.clone();
    drop(root);
    assert_eq!(drops.load(Ordering::SeqCst), 0);
    std::thread::spawn(move || drop(root2)).join().unwrap();
    assert_eq!(drops.load(Ordering::SeqCst), 1, "the last root tore the heap down on its thread");
}

use lowpause::{Gc, Heap, Member, Trace};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

#[derive(Trace)]
struct Node {
    value: u64,
    next: Member<Node>,
}

#[test]
fn cycle_is_collected_and_rooted_survives() {
    let heap = Heap::new();
    let mut m = heap.attach();
    let keep = m.scope(|s| {
        let a = s.alloc(Node { value: 1, next: Member::null() });
        let b = s.alloc(Node { value: 2, next: Member::null() });
        a.next.set(s, Some(b));
        b.next.set(s, Some(a));
        // garbage cycle
        let c = s.alloc(Node { value: 3, next: Member::null() });
        let d = s.alloc(Node { value: 4, next: Member::null() });
        c.next.set(s, Some(d));
        d.next.set(s, Some(c));
        s.root(b)
    });
    m.collect();
    let st = heap.stats();
    assert_eq!(st.live_objects, 2, "{st}");
    assert_eq!(st.freed_objects, 2, "{st}");
    m.scope(|s| {
        let b = keep.get(s);
        assert_eq!(b.value, 2);
        let a = b.next.get(s).unwrap();
        assert_eq!(a.value, 1);
        assert!(Gc::ptr_eq(a.next.get(s).unwrap(), b));
    });
    drop(keep);
    m.collect();
    assert_eq!(heap.stats().live_objects, 0);
}

struct Counted(Arc<AtomicUsize>);
impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}
// SAFETY: holds no GC reference.
unsafe impl Trace for Counted {
    const NEEDS_TRACE: bool = false;
    fn trace(&self, _: &mut lowpause::Tracer<'_>) {}
}

#[test]
fn many_objects_and_drops() {
    let heap = Heap::new();
    let mut m = heap.attach();
    let drops = Arc::new(AtomicUsize::new(0));
    for round in 0..20 {
        m.scope(|s| {
            for i in 0..10_000 {
                let n = s.alloc(Node { value: i, next: Member::null() });
                let _ = n;
                s.alloc(Counted(drops.clone()));
                s.alloc_slice(i as usize % 100, |j| j as u64);
            }
        });
        let _ = round;
    }
    m.collect();
    assert_eq!(drops.load(Ordering::SeqCst), 200_000);
    let st = heap.stats();
    assert_eq!(st.live_objects, 0, "{st}");
    println!("{st}");
}

#[test]
fn large_objects() {
    let heap = Heap::new();
    let mut m = heap.attach();
    let r = m.scope(|s| {
        for _ in 0..100 {
            s.alloc_slice(100_000, |i| i as u8);
        }
        s.root(s.alloc_slice(50_000, |i| i as u32))
    });
    m.collect();
    m.scope(|s| {
        let v = r.get(s);
        assert_eq!(v.len(), 50_000);
        assert!(v.iter().enumerate().all(|(i, &x)| x == i as u32));
    });
    assert_eq!(heap.stats().live_objects, 1);
}

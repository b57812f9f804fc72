//! Every misuse DESIGN.md names panics with a message that says what was wrong and what to do,
//! and the heap stays usable afterwards.

mod common;
use common::{assert_heap_usable, message_of, panic_message, Node};
use lowpause::{Heap, Member, Mutator};
use std::cell::RefCell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Mutex, OnceLock};

#[test]
fn member_on_the_stack_panics_on_get_and_set() {
    let heap = Heap::new();
    let mut m = heap.attach();
    let stack_member: Member<Node> = Member::null();
    let msg = panic_message(|| {
        m.scope(|s| {
            let _ = stack_member.get(s);
        })
    });
    assert!(msg.contains("Member::get") && msg.contains("not inside this scope's heap"), "{msg}");
    let msg = panic_message(|| {
        m.scope(|s| {
            let n = s.alloc(Node { value: 1, next: Member::null() });
            stack_member.set(s, Some(n));
        })
    });
    assert!(msg.contains("Member::set") && msg.contains("not inside this scope's heap"), "{msg}");
    assert!(stack_member.is_null());
    assert_heap_usable(&heap, &mut m);
}

#[test]
fn member_through_another_heaps_scope_panics() {
    let (ha, hb) = (Heap::new(), Heap::new());
    let (mut ma, mut mb) = (ha.attach(), hb.attach());
    let ra = ma.scope(|s| s.root(s.alloc(Node { value: 1, next: Member::null() })));
    let msg = panic_message(|| {
        ma.scope(|sa| {
            let a = ra.get(sa);
            mb.scope(|sb| {
                let _ = a.next.get(sb);
            });
        })
    });
    assert!(msg.contains("not inside this scope's heap"), "{msg}");
    let msg = panic_message(|| {
        ma.scope(|sa| {
            let a = ra.get(sa);
            mb.scope(|sb| a.next.set(sb, Some(sb.alloc(Node { value: 2, next: Member::null() }))));
        })
    });
    assert!(msg.contains("Member::set"), "{msg}");
    ma.scope(|s| assert!(ra.get(s).next.get(s).is_none(), "the failed set stored nothing"));
    assert_heap_usable(&ha, &mut ma);
    assert_heap_usable(&hb, &mut mb);
}

#[test]
fn root_read_through_another_heaps_scope_panics() {
    let (ha, hb) = (Heap::new(), Heap::new());
    let (mut ma, mut mb) = (ha.attach(), hb.attach());
    let ra = ma.scope(|s| s.root(s.alloc(5u64)));
    let msg = panic_message(|| {
        mb.scope(|sb| {
            let _ = ra.get(sb);
        })
    });
    assert!(msg.contains("Root::get") && msg.contains("another heap"), "{msg}");
    ma.scope(|s| assert_eq!(*ra.get(s), 5));
    assert_heap_usable(&hb, &mut mb);
}

#[test]
fn second_attach_on_one_thread_panics() {
    let heap = Heap::new();
    let mut m = heap.attach();
    let msg = panic_message(|| drop(heap.attach()));
    assert!(msg.contains("already has a Mutator"), "{msg}");
    assert_heap_usable(&heap, &mut m);
    // Another heap, and the same heap after detaching, are fine.
    let other = Heap::new();
    drop(other.attach());
    drop(m);
    let mut again = heap.attach();
    assert_heap_usable(&heap, &mut again);
}

#[test]
fn a_panic_inside_a_scope_leaves_the_heap_usable() {
    let heap = Heap::new();
    let mut m = heap.attach();
    let r = catch_unwind(AssertUnwindSafe(|| {
        m.scope(|s| {
            s.alloc(Node { value: 1, next: Member::null() });
            panic!("boom");
        })
    }));
    assert_eq!(message_of(&*r.unwrap_err()), "boom");
    assert_heap_usable(&heap, &mut m);
}

thread_local! {
    static THREAD_MUTATOR: RefCell<Option<Mutator>> = const { RefCell::new(None) };
}
static OTHER_HEAP: OnceLock<Heap> = OnceLock::new();

/// A destructor that tries to use a heap, and records the panic message it got.
struct UsesHeapInDrop {
    attach: bool,
    seen: Arc<Mutex<Vec<String>>>,
}
// SAFETY: holds no GC reference.
unsafe impl lowpause::Trace for UsesHeapInDrop {
    const NEEDS_TRACE: bool = false;
    fn trace(&self, _: &mut lowpause::Tracer<'_>) {}
}
impl Drop for UsesHeapInDrop {
    fn drop(&mut self) {
        let r = catch_unwind(AssertUnwindSafe(|| {
            if self.attach {
                drop(OTHER_HEAP.get_or_init(Heap::new).attach());
            } else {
                THREAD_MUTATOR.with(|m| m.borrow_mut().as_mut().unwrap().scope(|_| ()));
            }
        }));
        self.seen.lock().unwrap().push(r.map(|_| "no panic".into()).unwrap_or_else(|e| message_of(&*e)));
    }
}

#[test]
fn scope_and_attach_from_drop_glue_panic() {
    // Synchronous mode: the drop glue runs in `collect`, on this thread, where the destructor
    // finds the thread-local Mutator.
    let heap = Heap::builder().workers(0).build().unwrap();
    let mut m = heap.attach();
    // The destructor reaches for a Mutator of another heap on this thread.
    THREAD_MUTATOR.with(|t| *t.borrow_mut() = Some(Heap::new().attach()));
    let seen = Arc::new(Mutex::new(Vec::new()));
    m.scope(|s| {
        s.alloc(UsesHeapInDrop { attach: false, seen: seen.clone() });
        s.alloc(UsesHeapInDrop { attach: true, seen: seen.clone() });
    });
    m.collect();
    let mut seen = seen.lock().unwrap().clone();
    seen.sort();
    assert_eq!(seen.len(), 2);
    assert!(seen[0].contains("Heap::attach called from the drop glue"), "{seen:?}");
    assert!(seen[1].contains("Mutator::scope called from the drop glue"), "{seen:?}");
    assert_heap_usable(&heap, &mut m);
    THREAD_MUTATOR.with(|t| t.borrow_mut().take());
}

#[test]
fn bad_configuration_is_an_error_naming_the_value() {
    let e = Heap::builder().gc_percent(-1).build().unwrap_err();
    assert!(e.to_string().contains("gc_percent -1"), "{e}");
    let e = Heap::builder().gc_percent(1_000_000).build().unwrap_err();
    assert!(e.to_string().contains("gc_percent 1000000"), "{e}");
    let e = Heap::builder().max_heap(4096).build().unwrap_err();
    assert!(e.to_string().contains("max_heap 4096"), "{e}");
    let e = Heap::builder().max_heap(usize::MAX).build().unwrap_err();
    assert!(e.to_string().contains(&format!("max_heap {}", usize::MAX)), "{e}");
    assert!(Heap::builder().gc_percent(1).max_heap(16 << 20).build().is_ok());
}

#[test]
fn exhausting_max_heap_panics_clearly_and_recovers() {
    let heap = Heap::builder().max_heap(16 << 20).build().unwrap();
    let mut m = heap.attach();
    let msg = panic_message(|| {
        m.scope(|s| {
            let keep = s.alloc_slice(200, |_| Member::<[u8]>::null());
            for slot in keep.iter() {
                slot.set(s, Some(s.alloc_slice(1 << 20, |_| 0u8)));
            }
        })
    });
    assert!(msg.contains("exhausted") && msg.contains("max_heap"), "{msg}");
    assert_heap_usable(&heap, &mut m);
}

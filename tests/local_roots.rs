//! Local stacks and sessions: what they keep alive, how a cycle advances past a thread inside a
//! session, and what misuse reports.

mod common;

use common::{assert_heap_usable, panic_message, BackgroundCollector};
use lowpause::{Heap, LocalStack, Member, Trace, ValueRef};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A string whose drop is counted, to see exactly what was freed.
#[derive(Trace)]
#[trace(leaf)]
struct Counted(u64, Arc<AtomicU64>);

impl Drop for Counted {
    fn drop(&mut self) {
        self.1.fetch_add(1, Ordering::SeqCst);
    }
}

fn verified(workers: usize) -> Heap {
    Heap::builder().workers(workers).verify(true).build().unwrap()
}

#[test]
fn a_local_stack_keeps_its_slots_alive_across_scopes_and_collections_and_nothing_else() {
    for workers in [0, 1] {
        let heap = verified(workers);
        let mut m = heap.attach();
        let drops = Arc::new(AtomicU64::new(0));
        let mut st = LocalStack::<Counted>::new(&m);
        m.scope(|s| {
            for i in 0..100 {
                st.push(s, ValueRef::Object(s.alloc(Counted(i, drops.clone()))));
                st.push(s, ValueRef::Number(i as f64));
            }
            // Garbage beside it.
            for i in 0..100 {
                s.alloc(Counted(1000 + i, drops.clone()));
            }
        });
        m.collect();
        m.collect();
        assert_eq!(drops.load(Ordering::SeqCst), 100, "only the unrooted objects died (workers {workers})");
        m.scope(|s| {
            for i in 0..100 {
                assert_eq!(st.get(s, 2 * i + 1), ValueRef::Number(i as f64));
                match st.get(s, 2 * i) {
                    ValueRef::Object(c) => assert_eq!(c.0, i as u64),
                    other => panic!("slot {i}: {other:?}"),
                }
            }
            st.truncate(s, 100); // keeps objects 0..50
        });
        m.collect();
        assert_eq!(drops.load(Ordering::SeqCst), 150);
        drop(st);
        m.collect();
        assert_eq!(drops.load(Ordering::SeqCst), 200, "a dropped stack roots nothing");
    }
}

#[derive(Trace)]
struct Cell {
    next: Member<Cell>,
    n: u64,
}

/// A thread runs a whole "script" in one session, keeping a linked list only in its local stack
/// (one slot, rewritten on every step) while another thread collects in a loop: the cycles
/// complete (the session answers at its inner scopes), the list stays intact, and the verifier
/// checks every cycle.
#[test]
fn cycles_complete_while_a_thread_stays_in_one_session_and_its_stack_is_intact() {
    for workers in [0, 1] {
        let heap = verified(workers);
        let collector = BackgroundCollector::start(&heap);
        let mut m = heap.attach();
        let mut st = LocalStack::<Cell>::new(&m);
        let start = Instant::now();
        m.session(|sess| {
            sess.scope(|s| st.push(s, ValueRef::Nil));
            let mut len = 0u64;
            // Until the other thread has completed three collections during the session.
            while collector.cycles() < 3 {
                assert!(start.elapsed() < Duration::from_secs(60), "no collection completed");
                sess.scope(|s| {
                    for _ in 0..50 {
                        let head = match st.peek(s, 0) {
                            ValueRef::Object(c) => Some(c),
                            _ => None,
                        };
                        let c = s.alloc(Cell { next: Member::null(), n: len });
                        c.next.set(s, head);
                        st.poke(s, 0, ValueRef::Object(c));
                        len += 1;
                        // Garbage, so the cycles have something to free.
                        s.alloc(Cell { next: Member::null(), n: 0 });
                    }
                });
                if len == 5000 {
                    check_list(sess, &mut st, len);
                    sess.scope(|s| st.poke(s, 0, ValueRef::Nil));
                    len = 0;
                }
            }
            check_list(sess, &mut st, len);
        });
        collector.finish();
        assert!(heap.stats().freed_objects > 0);
    }
}

/// Walks the list the stack's top slot holds: `len` cells, numbered down to 0.
fn check_list(sess: &mut lowpause::Session<'_>, st: &mut LocalStack<Cell>, len: u64) {
    sess.scope(|s| {
        let mut at = st.peek(s, 0);
        let mut want = len;
        while let ValueRef::Object(c) = at {
            want -= 1;
            assert_eq!(c.n, want);
            at = c.next.get(s).map_or(ValueRef::Nil, ValueRef::Object);
        }
        assert_eq!(want, 0, "the whole list survived");
    });
}

#[test]
fn a_session_without_safepoints_holds_up_the_cycle_and_the_wait_is_reported() {
    let heap = Heap::builder().workers(1).build().unwrap();
    let mut m = heap.attach();
    let done = Arc::new(AtomicBool::new(false));
    let t = {
        let (heap, done) = (heap.clone(), done.clone());
        std::thread::Builder::new()
            .name("collecting".into())
            .spawn(move || {
                let mut m2 = heap.attach();
                m2.collect();
                done.store(true, Ordering::SeqCst);
            })
            .unwrap()
    };
    m.session(|sess| {
        let start = Instant::now();
        // No inner scope, no safepoint: the collection cannot finish.
        while start.elapsed() < Duration::from_millis(150) {
            std::hint::spin_loop();
        }
        assert!(!done.load(Ordering::SeqCst), "a cycle finished past a thread that never answered");
        sess.safepoint();
        let start = Instant::now();
        while !done.load(Ordering::SeqCst) && start.elapsed() < Duration::from_secs(20) {
            sess.safepoint();
            std::thread::yield_now();
        }
    });
    t.join().unwrap();
    assert!(done.load(Ordering::SeqCst));
    let (thread, wait) = heap.metrics().scope_wait.expect("the wait is in the metrics");
    assert!(wait >= Duration::from_millis(100), "{wait:?}");
    assert_eq!(Some(thread.as_str()), std::thread::current().name());
    assert!(heap.metrics().to_string().contains("longest wait of a cycle on a thread's scope"));
}

#[test]
fn misuse_panics_name_the_operation_and_leave_the_stack_and_heap_usable() {
    let heap = Heap::new();
    let other = Heap::new();
    let mut m = heap.attach();
    let mut mo = other.attach();
    let mut st = LocalStack::<u64>::new(&m);
    m.scope(|s| st.push(s, ValueRef::Object(s.alloc(5u64))));
    let msg = panic_message(|| mo.scope(|s| st.push(s, ValueRef::Nil)));
    assert!(msg.contains("LocalStack::push") && msg.contains("not of the Mutator that made the stack"), "{msg}");
    let msg = panic_message(|| mo.scope(|s| _ = st.get(s, 0)));
    assert!(msg.contains("LocalStack::get"), "{msg}");
    for (op, f) in [
        (
            "get at index 1",
            Box::new(|st: &mut LocalStack<u64>, s: &lowpause::Scope<'_>| {
                let _ = st.get(s, 1);
            }) as Box<dyn Fn(&mut LocalStack<u64>, &lowpause::Scope<'_>)>,
        ),
        ("set at index 9", Box::new(|st: &mut LocalStack<u64>, s: &lowpause::Scope<'_>| st.set(s, 9, ValueRef::Nil))),
        (
            "peek at depth 1",
            Box::new(|st: &mut LocalStack<u64>, s: &lowpause::Scope<'_>| {
                let _ = st.peek(s, 1);
            }),
        ),
        ("poke at depth 3", Box::new(|st: &mut LocalStack<u64>, s: &lowpause::Scope<'_>| st.poke(s, 3, ValueRef::Nil))),
    ] {
        let msg = panic_message(|| m.scope(|s| f(&mut st, s)));
        assert!(msg.contains(&format!("LocalStack::{op}")) && msg.contains("holds 1 slots"), "{op}: {msg}");
    }
    let msg = panic_message(|| {
        m.scope(|s| {
            st.pop(s);
            st.pop(s);
        })
    });
    assert!(msg.contains("LocalStack::pop"), "{msg}");
    assert_eq!(st.len(), 0, "the first pop happened, the failed one changed nothing");
    // A stack of a detached-and-reattached thread is not the new Mutator's.
    drop(m);
    let mut m = heap.attach();
    let msg = panic_message(|| m.scope(|s| st.push(s, ValueRef::Nil)));
    assert!(msg.contains("attached again"), "{msg}");
    assert_heap_usable(&heap, &mut m);
    assert_heap_usable(&other, &mut mo);
}

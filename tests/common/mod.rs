//! Helpers shared by the integration tests.
#![allow(dead_code)]

use lowpause::{Heap, HeapBuilder, Member, Mutator, Root, Trace};
use std::any::Any;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

#[derive(Trace)]
pub struct Node {
    pub value: u64,
    pub next: Member<Node>,
}

/// The heap the attack rounds build on: a small reservation (256 MiB), so that exhausting it is
/// quick, and `workers` background mark workers.
pub fn builder(workers: usize) -> HeapBuilder {
    Heap::builder().max_heap(256 << 20).workers(workers)
}

/// Runs `f`, expects it to panic, and returns the panic message.
pub fn panic_message(f: impl FnOnce()) -> String {
    let err = catch_unwind(AssertUnwindSafe(f)).expect_err("expected a panic");
    message_of(&*err)
}

pub fn message_of(err: &(dyn Any + Send)) -> String {
    err.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| err.downcast_ref::<String>().cloned())
        .unwrap_or_default()
}

/// Allocates a short rooted list, collects, and checks it: the heap still works.
pub fn assert_heap_usable(heap: &Heap, m: &mut Mutator) {
    let r: Root<Node> = m.scope(|s| {
        let a = s.alloc(Node { value: 10, next: Member::null() });
        let b = s.alloc(Node { value: 20, next: Member::null() });
        a.next.set(s, Some(b));
        s.root(a)
    });
    m.collect();
    m.scope(|s| {
        let a = r.get(s);
        assert_eq!(a.value, 10);
        assert_eq!(a.next.get(s).unwrap().value, 20);
    });
    assert!(heap.stats().cycles >= 1);
}

/// Runs `f` on a thread of its own and returns its result, or panics if it takes more than
/// `secs` seconds (a hang); a panic inside `f` is passed on.
pub fn within<R: Send + 'static>(secs: u64, what: &str, f: impl FnOnce() -> R + Send + 'static) -> R {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let r = catch_unwind(AssertUnwindSafe(f));
        let _ = tx.send(r);
    });
    match rx.recv_timeout(Duration::from_secs(secs)) {
        Ok(Ok(r)) => r,
        Ok(Err(p)) => std::panic::resume_unwind(p),
        Err(_) => panic!("{what}: did not finish within {secs} s (a hang)"),
    }
}

/// Waits until `f` holds, polling every millisecond; panics after `secs` seconds.
pub fn wait_until(secs: u64, what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < deadline, "{what}: not within {secs} s");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Another thread collecting in a loop until the guard is dropped.
pub struct BackgroundCollector {
    stop: Arc<AtomicBool>,
    cycles: Arc<AtomicU64>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl BackgroundCollector {
    pub fn start(heap: &Heap) -> BackgroundCollector {
        let stop = Arc::new(AtomicBool::new(false));
        let cycles = Arc::new(AtomicU64::new(0));
        let handle = {
            let (heap, stop, cycles) = (heap.clone(), stop.clone(), cycles.clone());
            std::thread::spawn(move || {
                let mut m = heap.attach();
                while !stop.load(Ordering::SeqCst) {
                    m.collect();
                    cycles.fetch_add(1, Ordering::SeqCst);
                }
            })
        };
        BackgroundCollector { stop, cycles, handle: Some(handle) }
    }
    pub fn cycles(&self) -> u64 {
        self.cycles.load(Ordering::SeqCst)
    }
    pub fn finish(mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.handle.take().unwrap().join().expect("the collecting thread panicked (verifier?)");
    }
}

impl Drop for BackgroundCollector {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

// Heap objects must be Send + Sync: an Rc cannot be allocated.
use lowpause::{Heap, Trace};
use std::rc::Rc;

#[derive(Trace)]
#[trace(bound = "")]
struct Shared {
    inner: NotSync,
}

struct NotSync(Rc<u64>);
// SAFETY: holds no GC reference.
unsafe impl Trace for NotSync {
    const NEEDS_TRACE: bool = false;
    fn trace(&self, _: &mut lowpause::Tracer<'_>) {}
}

fn main() {
    let heap = Heap::new();
    let mut m = heap.attach();
    m.scope(|s| {
        s.alloc(Shared { inner: NotSync(Rc::new(1)) });
    });
}

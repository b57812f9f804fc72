// A Gc cannot be stored in a heap object: objects are 'static and Gc is not Trace.
use lowpause::{Gc, Heap, Trace};

#[derive(Trace)]
struct Holder<'s> {
    inner: Gc<'s, u64>,
}

fn main() {
    let heap = Heap::new();
    let mut m = heap.attach();
    m.scope(|s| {
        let g = s.alloc(1u64);
        s.alloc(Holder { inner: g });
    });
}

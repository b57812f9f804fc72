// A finalizer runs outside every scope: it gets a Root (and the heap), never a Gc it could keep
// across a blocking wait while the collector frees what it reaches.
use lowpause::Heap;

fn main() {
    let heap = Heap::new();
    let mut m = heap.attach();
    m.scope(|s| {
        s.set_finalizer(s.alloc(1u64), |_heap, obj: lowpause::Gc<'_, u64>| drop(obj));
    });
}

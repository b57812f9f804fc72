// collect cannot be called inside a scope: the scope borrows the Mutator.
use lowpause::Heap;

fn main() {
    let heap = Heap::new();
    let mut m = heap.attach();
    m.scope(|s| {
        s.alloc(1u64);
        m.collect();
    });
}

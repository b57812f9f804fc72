// A Scope cannot be used from another thread.
use lowpause::Heap;

fn main() {
    let heap = Heap::new();
    let mut m = heap.attach();
    m.scope(|s| {
        std::thread::scope(|t| {
            t.spawn(|| {
                s.alloc(1u64);
            });
        });
    });
}

// A Gc cannot be moved to another thread.
use lowpause::Heap;

fn main() {
    let heap = Heap::new();
    let mut m = heap.attach();
    m.scope(|s| {
        let g = s.alloc(1u64);
        std::thread::scope(|t| {
            t.spawn(move || println!("{}", *g));
        });
    });
}

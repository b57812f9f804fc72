// A Mutator stays on its thread.
use lowpause::Heap;

fn main() {
    let heap = Heap::new();
    let m = heap.attach();
    std::thread::spawn(move || drop(m));
}

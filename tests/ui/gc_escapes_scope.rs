// A Gc cannot be returned out of its scope.
use lowpause::Heap;

fn main() {
    let heap = Heap::new();
    let mut m = heap.attach();
    let escaped = m.scope(|s| s.alloc(1u64));
    println!("{}", *escaped);
}

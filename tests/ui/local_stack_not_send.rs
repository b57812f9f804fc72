// A local stack is one thread's roots: it cannot move to another thread.
fn main() {
    let heap = lowpause::Heap::new();
    let m = heap.attach();
    let stack = lowpause::LocalStack::<u64>::new(&m);
    std::thread::spawn(move || drop(stack));
}

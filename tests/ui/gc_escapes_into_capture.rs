// A Gc cannot be smuggled out of its scope through a captured variable either.
use lowpause::{Gc, Heap};

fn main() {
    let heap = Heap::new();
    let mut m = heap.attach();
    let mut slot: Option<Gc<'_, u64>> = None;
    m.scope(|s| slot = Some(s.alloc(1u64)));
    println!("{:?}", slot);
}

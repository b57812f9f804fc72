// A Member cannot be copied out of the heap: it is not Clone.
use lowpause::{Heap, Member, Trace};

#[derive(Trace)]
struct Node {
    next: Member<Node>,
}

fn main() {
    let heap = Heap::new();
    let mut m = heap.attach();
    m.scope(|s| {
        let n = s.alloc(Node { next: Member::null() });
        let stolen: Member<Node> = n.next.clone();
        drop(stolen);
    });
}

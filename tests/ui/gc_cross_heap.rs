// A Gc of one heap cannot be stored through another heap's scope.
use lowpause::{Heap, Member, Trace};

#[derive(Trace)]
struct Node {
    next: Member<Node>,
}

fn main() {
    let (ha, hb) = (Heap::new(), Heap::new());
    let (mut ma, mut mb) = (ha.attach(), hb.attach());
    ma.scope(|sa| {
        let a = sa.alloc(Node { next: Member::null() });
        mb.scope(|sb| {
            let b = sb.alloc(Node { next: Member::null() });
            b.next.set(sb, Some(a));
        });
    });
}

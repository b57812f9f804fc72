// A std container of GC references does not compile: they must live in the GC heap.
use lowpause::{Member, Trace};

#[derive(Trace)]
struct Node {
    children: Vec<Member<Node>>,
}

fn main() {}

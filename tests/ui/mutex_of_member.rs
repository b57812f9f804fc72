// A lock around a GC reference would hand out `&mut Member`: it is not Trace.
use lowpause::{Member, Trace};
use std::sync::Mutex;

#[derive(Trace)]
struct Node {
    next: Mutex<Member<Node>>,
}

fn main() {}

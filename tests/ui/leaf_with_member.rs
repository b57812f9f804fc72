// #[trace(leaf)] is checked: a leaf type cannot hold a Member.
use lowpause::{Member, Trace};

#[derive(Trace)]
#[trace(leaf)]
struct NotALeaf {
    value: u64,
    next: Member<NotALeaf>,
}

fn main() {}

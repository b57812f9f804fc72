// A hand-written Trace impl cannot hand the tracer a forged slot: the edge functions are private
// to the crate, so the only way to visit a reference is `Member::trace` (or `Value`'s, ...).
use lowpause::{Trace, Tracer};
use std::sync::atomic::AtomicPtr;

struct Forger {
    slot: AtomicPtr<u8>,
}

unsafe impl Trace for Forger {
    const NEEDS_TRACE: bool = true;
    fn trace(&self, tracer: &mut Tracer<'_>) {
        tracer.__edge(&self.slot);
        tracer.edge(&self.slot);
    }
}

fn main() {}

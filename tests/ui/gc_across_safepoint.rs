// A `Gc` cannot be alive at a session's safepoint: the inner scope holds the session mutably.
fn main() {
    let heap = lowpause::Heap::new();
    let mut m = heap.attach();
    m.session(|sess| {
        sess.scope(|s| {
            let x = s.alloc(1u64);
            sess.safepoint();
            *x
        })
    });
}

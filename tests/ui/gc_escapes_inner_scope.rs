// A `Gc` cannot leave a session's inner scope (so none is held at the next safepoint).
fn main() {
    let heap = lowpause::Heap::new();
    let mut m = heap.attach();
    m.session(|sess| {
        let x = sess.scope(|s| s.alloc(1u64));
        sess.safepoint();
        let _ = *x;
    });
}

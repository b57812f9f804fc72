// Two sessions cannot be swapped: each has its own brand, so neither can end up in code that
// outlives the other's scope.
fn main() {
    let (a, b) = (lowpause::Heap::new(), lowpause::Heap::new());
    let (mut ma, mut mb) = (a.attach(), b.attach());
    ma.session(|sa| mb.session(|sb| std::mem::swap(sa, sb)));
}

//! Weak references, weak fields, ephemeron tables and finalizers, all with the checkmark verifier
//! on: a weak reference is cleared when (and only when) its target is unreachable, a table keeps a
//! value exactly while its key lives (through chains of entries), concurrent weak reads during
//! back-to-back cycles never see a dead object, and finalizers run once, keep what their object
//! reaches, and allow resurrection.

use lowpause::{Heap, Member, Root, Trace, ValueRef, Weak, WeakMember, WeakTable};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const MAGIC: u64 = 0x5eed_f00d_dead_beef;

#[derive(Trace)]
struct Obj {
    id: u64,
    /// `id ^ MAGIC` while alive, 0 once dropped: a dead object handed out shows as a mismatch.
    check: AtomicU64,
    next: Member<Obj>,
    weak: WeakMember<Obj>,
}

impl Obj {
    fn new(id: u64) -> Obj {
        Obj { id, check: AtomicU64::new(id ^ MAGIC), next: Member::null(), weak: WeakMember::null() }
    }
    fn assert_alive(&self) {
        assert_eq!(self.check.load(Ordering::SeqCst), self.id ^ MAGIC, "a weak read handed out a dead object");
    }
}

impl Drop for Obj {
    fn drop(&mut self) {
        self.check.store(0, Ordering::SeqCst);
    }
}

fn heaps() -> impl Iterator<Item = Heap> {
    [0, 1].into_iter().map(|w| Heap::builder().workers(w).verify(true).build().unwrap())
}

#[test]
fn a_weak_handle_is_cleared_exactly_when_its_target_becomes_unreachable() {
    for heap in heaps() {
        let mut m = heap.attach();
        let (root, weak) = m.scope(|s| {
            let o = s.alloc(Obj::new(1));
            (s.root(o), Weak::new(s, o))
        });
        for _ in 0..3 {
            m.collect();
            m.scope(|s| weak.get(s).expect("cleared while rooted").assert_alive());
        }
        drop(root);
        m.collect();
        m.scope(|s| assert!(weak.get(s).is_none(), "kept after its last reference went"));
        // A clone reads the same cell.
        let w2 = weak.clone();
        m.scope(|s| assert!(w2.get(s).is_none()));
    }
}

#[test]
fn a_weak_field_does_not_keep_its_target_and_a_strong_path_does() {
    for heap in heaps() {
        let mut m = heap.attach();
        let holder: Root<Obj> = m.scope(|s| {
            let h = s.alloc(Obj::new(1));
            let strong = s.alloc(Obj::new(2));
            h.next.set(s, Some(strong));
            h.weak.set(s, Some(strong)); // weakly and strongly: stays
            let only_weak = s.alloc(Obj::new(3));
            strong.weak.set(s, Some(only_weak)); // only weakly: goes
            s.root(h)
        });
        m.collect();
        m.scope(|s| {
            let h = holder.get(s);
            let strong = h.weak.get(s).expect("strongly reachable target was cleared");
            assert_eq!(strong.id, 2);
            strong.assert_alive();
            assert!(strong.weak.get(s).is_none(), "a weakly-only reachable object survived");
            h.next.set(s, None);
        });
        m.collect();
        m.scope(|s| assert!(holder.get(s).weak.get(s).is_none()));
        m.scope(|s| holder.get(s).weak.set(s, None));
        m.scope(|s| assert!(holder.get(s).weak.get(s).is_none()));
    }
}

#[test]
fn a_table_keeps_values_exactly_while_their_keys_live_through_chains() {
    for heap in heaps() {
        let mut m = heap.attach();
        // k1 -> v1 (which is the key of the second entry) -> v2: only k1 is rooted.
        let (table, k1) = m.scope(|s| {
            let t = WeakTable::<Obj, Obj>::new_in(s);
            let k1 = s.alloc(Obj::new(1));
            let v1 = s.alloc(Obj::new(2));
            let v2 = s.alloc(Obj::new(3));
            t.insert(s, v1, ValueRef::Object(v2));
            t.insert(s, k1, ValueRef::Object(v1));
            t.insert(s, s.alloc(Obj::new(4)), ValueRef::Number(4.0)); // a dead key
            (s.root(t), s.root(k1))
        });
        m.collect();
        m.scope(|s| {
            let t = table.get(s);
            assert_eq!(t.len(), 2, "the entry of the unreachable key was not removed");
            let Some(ValueRef::Object(v1)) = t.get(s, k1.get(s)) else { panic!("k1's value lost") };
            v1.assert_alive();
            let Some(ValueRef::Object(v2)) = t.get(s, v1) else { panic!("the chained value was lost") };
            assert_eq!(v2.id, 3);
            v2.assert_alive();
        });
        drop(k1);
        m.collect();
        m.scope(|s| assert_eq!(table.get(s).len(), 0, "entries outlived their keys"));
    }
}

#[test]
fn a_table_interns_strings_by_content_and_forgets_unused_ones() {
    fn hash(t: &str) -> u64 {
        t.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ b as u64).wrapping_mul(0x100_0000_01b3))
    }
    for heap in heaps() {
        let mut m = heap.attach();
        let table = m.scope(|s| s.root(WeakTable::<String, String>::new_in(s)));
        let intern = |m: &mut lowpause::Mutator, text: &str| -> Root<String> {
            m.scope(|s| {
                let t = table.get(s);
                let h = hash(text);
                if let Some((k, _)) = t.find(s, h, |k| k.as_str() == text) {
                    return s.root(k);
                }
                let k = s.alloc(text.to_string());
                t.insert_hashed(s, h, k, ValueRef::Nil);
                s.root(k)
            })
        };
        let a = intern(&mut m, "alpha");
        let a2 = intern(&mut m, "alpha");
        let b = intern(&mut m, "beta");
        m.scope(|s| {
            assert!(lowpause::Gc::ptr_eq(a.get(s), a2.get(s)), "the same text interned twice");
            assert!(!lowpause::Gc::ptr_eq(a.get(s), b.get(s)));
        });
        drop(b);
        m.collect();
        m.scope(|s| assert_eq!(table.get(s).len(), 1));
        let a3 = intern(&mut m, "alpha");
        m.scope(|s| assert!(lowpause::Gc::ptr_eq(a.get(s), a3.get(s)), "alpha was forgotten while in use"));
        let identity_removed = m.scope(|s| table.get(s).remove(s, a.get(s)));
        assert!(!identity_removed, "identity lookups do not see content-hashed entries");
    }
}

/// Readers resolve weak references (handles, fields and table keys) while the collector runs
/// cycles back to back and writers replace the targets: every object handed out must be alive, and
/// the verifier checks every cycle's marking.
#[test]
fn concurrent_weak_reads_never_see_a_dead_object() {
    for workers in [0, 1] {
        let heap = Heap::builder().workers(workers).verify(true).build().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let reads = Arc::new(AtomicUsize::new(0));
        let slots = 8;
        let (holder, table) = {
            let mut m = heap.attach();
            m.scope(|s| {
                let h = s.alloc_slice(slots, |_| Member::<Obj>::null());
                (s.root(h), s.root(WeakTable::<Obj, Obj>::new_in(s)))
            })
        };
        let mut threads = Vec::new();
        for t in 0..2u64 {
            let (heap, stop, reads, holder, table) =
                (heap.clone(), stop.clone(), reads.clone(), holder.clone(), table.clone());
            threads.push(std::thread::spawn(move || {
                let mut m = heap.attach();
                let mut weaks: Vec<Weak<Obj>> = Vec::new();
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    i += 1;
                    m.scope(|s| {
                        let h = holder.get(s);
                        let tab = table.get(s);
                        let slot = (i as usize * 7 + t as usize) % slots;
                        // Replace a strongly held object; its predecessor becomes garbage.
                        let o = s.alloc(Obj::new(i * 2 + t));
                        o.weak.set(s, h[(slot + 1) % slots].get(s));
                        h[slot].set(s, Some(o));
                        tab.insert(s, o, ValueRef::Object(s.alloc(Obj::new(i * 2 + t + 1_000_000))));
                        if weaks.len() < 64 {
                            weaks.push(Weak::new(s, o));
                        } else {
                            weaks[i as usize % 64] = Weak::new(s, o);
                        }
                        for w in &weaks {
                            if let Some(x) = w.get(s) {
                                x.assert_alive();
                                if let Some(y) = x.weak.get(s) {
                                    y.assert_alive();
                                }
                                if let Some(ValueRef::Object(v)) = tab.get(s, x) {
                                    v.assert_alive();
                                }
                                reads.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    });
                }
            }));
        }
        let mut m = heap.attach();
        let deadline = Instant::now() + Duration::from_millis(1500);
        let mut cycles = 0;
        while Instant::now() < deadline {
            m.collect();
            cycles += 1;
        }
        stop.store(true, Ordering::Relaxed);
        for t in threads {
            t.join().unwrap();
        }
        assert!(cycles >= 5, "only {cycles} cycles ran");
        assert!(reads.load(Ordering::Relaxed) > 1000, "too few weak reads resolved");
        m.collect();
        m.collect();
        // Only the 8 strongly held keys (at most) keep entries once the writers stopped.
        m.scope(|s| assert!(table.get(s).len() <= slots, "{} entries left", table.get(s).len()));
    }
}

#[derive(Trace)]
struct Finalizable {
    id: u64,
    child: Member<Obj>,
}

#[test]
fn a_finalizer_runs_once_sees_what_its_object_reaches_and_may_resurrect_it() {
    for heap in heaps() {
        let mut m = heap.attach();
        let runs = Arc::new(AtomicUsize::new(0));
        let saved = m.scope(|s| s.root(s.alloc(Member::<Finalizable>::null())));
        let weak = m.scope(|s| {
            let f = s.alloc(Finalizable { id: 9, child: Member::null() });
            f.child.set(s, Some(s.alloc(Obj::new(10))));
            let (runs, saved) = (runs.clone(), saved.clone());
            s.set_finalizer(f, move |heap, obj| {
                heap.attach().scope(|s| {
                    let obj = obj.get(s);
                    assert_eq!(obj.id, 9);
                    obj.child.get(s).expect("the finalizer's object lost its child").assert_alive();
                    runs.fetch_add(1, Ordering::SeqCst);
                    saved.get(s).set(s, Some(obj)); // resurrect
                })
            });
            Weak::new(s, f)
        });
        let deadline = Instant::now() + Duration::from_secs(10);
        while runs.load(Ordering::SeqCst) == 0 {
            assert!(Instant::now() < deadline, "the finalizer never ran");
            m.collect();
            std::thread::sleep(Duration::from_millis(1));
        }
        m.scope(|s| assert!(weak.get(s).is_none(), "a weak reference survived its target's finalization"));
        // Resurrected: usable, and never finalized again.
        for _ in 0..4 {
            m.collect();
            std::thread::sleep(Duration::from_millis(2));
        }
        m.scope(|s| {
            let f = saved.get(s).get(s).expect("the resurrected object was lost");
            assert_eq!(f.id, 9);
            f.child.get(s).unwrap().assert_alive();
            saved.get(s).set(s, None);
        });
        for _ in 0..4 {
            m.collect();
            std::thread::sleep(Duration::from_millis(2));
        }
        assert_eq!(runs.load(Ordering::SeqCst), 1, "a finalizer ran more than once");
    }
}

#[test]
fn a_reachable_object_is_not_finalized_and_a_panicking_finalizer_is_contained() {
    let heap = Heap::builder().workers(1).verify(true).build().unwrap();
    let mut m = heap.attach();
    let ran = Arc::new(AtomicUsize::new(0));
    let keep = m.scope(|s| {
        let kept = s.alloc(Obj::new(1));
        let r = ran.clone();
        s.set_finalizer(kept, move |_, _| {
            r.fetch_add(100, Ordering::SeqCst);
        });
        let r = ran.clone();
        s.set_finalizer(s.alloc(Obj::new(2)), move |_, _| {
            r.fetch_add(1, Ordering::SeqCst);
            panic!("finalizer panic (expected by the test)");
        });
        s.root(kept)
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    while ran.load(Ordering::SeqCst) == 0 {
        assert!(Instant::now() < deadline, "the unreachable object's finalizer never ran");
        m.collect();
        std::thread::sleep(Duration::from_millis(1));
    }
    for _ in 0..3 {
        m.collect();
    }
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(ran.load(Ordering::SeqCst), 1, "the rooted object was finalized");
    m.scope(|s| keep.get(s).assert_alive());
}

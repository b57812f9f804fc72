//! loom models of the collector's concurrency protocols, run against the real components
//! (`StateWord`, `hybrid_store`, `BarrierBuffer`, `termination_round`, `RootTable`, `LocalBuf`,
//! `LocalRoots`).
//!
//! Run: `RUSTFLAGS="--cfg loom" cargo test --release --lib loom_`
//!
//! Objects are stood for by small fake addresses (never dereferenced) with one mark bit each.
//! Every racing party runs on a spawned loom thread or on the model's main thread; each model was
//! seen to fail with its guard removed (docs/design.md lists the guards).

use super::barrier::{end_barrier, hybrid_store, BarrierBuffer};
use super::cycle::termination_round;
use super::handshake::{token, Claim, StateWord, LEVEL_BARRIER};
use super::roots::RootTable;
use loom::cell::UnsafeCell;
use loom::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Ordering};
use loom::sync::{Arc, Mutex};

/// Mark bits of up to 64 fake objects (object `i` has address `(i + 1) * 16`).
struct Marks(AtomicU64);

impl Marks {
    fn new() -> Marks {
        Marks(AtomicU64::new(0))
    }
    fn bit(addr: usize) -> u64 {
        1 << (addr / 16 - 1)
    }
    /// Sets the bit; `Some(scan)` if it was clear.
    fn grey(&self, addr: usize, scan: bool) -> Option<bool> {
        let b = Marks::bit(addr);
        (self.0.fetch_or(b, Ordering::SeqCst) & b == 0).then_some(scan)
    }
    fn is_marked(&self, addr: usize) -> bool {
        self.0.load(Ordering::SeqCst) & Marks::bit(addr) != 0
    }
}

const X: usize = 16;
const Y: usize = 32;
const A: usize = 48;
const B: usize = 64;

/// The start handshake against a mutator entering and leaving scopes.
///
/// Bug it catches: the collector acting for a thread (touching its cache) while the thread is
/// inside a scope using that cache — a data race on the cache, which loom's `UnsafeCell`
/// reports. Guard: the INSIDE/BUSY test in `StateWord::claim` and the CAS in `StateWord::enter`.
/// It also checks the handshake completes: the thread ends up having answered the request.
#[test]
fn loom_handshake_against_scope_entry_and_exit() {
    loom::model(|| {
        let state = Arc::new(StateWord::new(token(0, 3)));
        let cache = Arc::new(UnsafeCell::new(0u32));
        let posted = Arc::new(AtomicU64::new(token(0, 3)));
        let t = token(1, LEVEL_BARRIER);

        let mutator = {
            let (state, cache, posted) = (state.clone(), cache.clone(), posted.clone());
            loom::thread::spawn(move || {
                for _ in 0..2 {
                    let (mut acked, _) = state.enter();
                    // SAFETY: loom checks every access to the cell for a race: finding one is the model's point.
                    cache.with_mut(|c| unsafe { *c += 1 });
                    let req = posted.load(Ordering::Acquire);
                    if req > acked {
                        state.answer_inside(req);
                        acked = req;
                    }
                    state.exit(acked);
                }
            })
        };
        posted.store(t, Ordering::SeqCst);
        loop {
            match state.claim(t) {
                Claim::Answered => break,
                Claim::Inside => loom::thread::yield_now(),
                Claim::Claimed => {
                    // SAFETY: loom checks every access to the cell for a race: finding one is the model's point.
                    cache.with_mut(|c| unsafe { *c += 100 });
                    state.end_claim(t);
                    break;
                }
            }
        }
        mutator.join().unwrap();
        assert!(state.acked() >= t, "the thread never answered the request");
    });
}

/// The barrier racing a marker on one `Member`.
///
/// A post-snapshot mutator has read `X` from a member of `A` (it keeps `X` in a local) and now
/// stores `Y` over it, while a marker scans `A`. Bug it catches: the marker reads the member after
/// the store, sees only `Y`, and `X` — still in use by the mutator — is left white and would be
/// freed. Guard: `hybrid_store` shading the *old* value (Yuasa's half of the hybrid barrier).
#[test]
fn loom_barrier_against_marker_on_one_member() {
    loom::model(|| {
        let marks = Arc::new(Marks::new());
        let member = Arc::new(AtomicPtr::new(X as *mut u8));
        let ring = Arc::new(BarrierBuffer::default());

        let mutator = {
            let (marks, member, ring) = (marks.clone(), member.clone(), ring.clone());
            loom::thread::spawn(move || {
                let held = member.load(Ordering::Acquire) as usize; // the mutator's local
                let on = AtomicBool::new(true);
                hybrid_store(&ring.in_barrier, &on, &member, Y as *mut u8, |p| marks.grey(p, false), |_| {});
                held
            })
        };
        // The marker scans A: grey whatever the member holds when it gets there.
        let marker = {
            let (marks, member) = (marks.clone(), member.clone());
            loom::thread::spawn(move || {
                marks.grey(member.load(Ordering::Acquire) as usize, false);
            })
        };
        marker.join().unwrap();
        let held = mutator.join().unwrap();
        assert!(marks.is_marked(held), "an object a thread still holds was left white");
        assert!(marks.is_marked(Y), "the stored object was left white");
    });
}

/// A `Root` dropped while its target is being marked.
///
/// The thread holds `X` (read through its root in this scope) and drops the root while the
/// marker scans the root table. Bug it catches: the slot is emptied before the marker scans it,
/// and `X`, still in use, is never marked. Guard: `RootTable::remove` shading the object before
/// the slot leaves the table (with the barrier on).
#[test]
fn loom_root_dropped_during_marking() {
    loom::model(|| {
        let marks = Arc::new(Marks::new());
        let roots = Arc::new(RootTable::default());
        let barrier_on = Arc::new(AtomicBool::new(true));
        let idx = roots.add(X);

        let mutator = {
            let (marks, roots, barrier_on) = (marks.clone(), roots.clone(), barrier_on.clone());
            loom::thread::spawn(move || {
                roots.remove(idx, |p| {
                    if barrier_on.load(Ordering::Relaxed) {
                        marks.grey(p, false);
                    }
                });
            })
        };
        roots.for_each(|p| {
            marks.grey(p, false);
        });
        mutator.join().unwrap();
        assert!(marks.is_marked(X), "a root's object in use was left white");
    });
}

/// Mark termination with a thread that flushes late.
///
/// A post-snapshot mutator's barrier greys `A` (which points to `B`) and queues it in its ring,
/// never flushing it itself; the collector runs termination rounds. Bug it catches: a round that
/// declares marking done between the barrier loading `A` and queueing it, so `A` is scanned by
/// no one and `B` is freed while reachable. Guards: the `in_barrier` flag in `hybrid_store` and
/// its check in `termination_round`, and the round draining every ring itself.
#[test]
fn loom_termination_with_a_late_flush() {
    termination_with_a_late_flush();
}

fn termination_with_a_late_flush() {
    loom::model(|| {
        let marks = Arc::new(Marks::new());
        let grey_events = Arc::new(AtomicU64::new(0));
        let ring = Arc::new(BarrierBuffer::default());
        let member = Arc::new(AtomicPtr::new(A as *mut u8));
        let injector = Arc::new(Mutex::new(Vec::new()));

        let grey = |marks: &Marks, events: &AtomicU64, p: usize, scan: bool| {
            let r = marks.grey(p, scan);
            if r.is_some() {
                events.fetch_add(1, Ordering::SeqCst);
            }
            r
        };
        let mutator = {
            let (marks, events, ring, member) = (marks.clone(), grey_events.clone(), ring.clone(), member.clone());
            loom::thread::spawn(move || {
                hybrid_store(
                    &ring.in_barrier,
                    &AtomicBool::new(true),
                    &member,
                    std::ptr::null_mut(),
                    |p| grey(&marks, &events, p, true),
                    |p| assert!(ring.push(p)),
                );
            })
        };
        // Rounds start once the barrier has begun (it began before marking was declared done).
        while !ring.in_barrier.load(Ordering::SeqCst) && !marks.is_marked(A) {
            loom::thread::yield_now();
        }
        loop {
            let clean = termination_round(
                &grey_events,
                &AtomicUsize::new(0),
                std::iter::once(&*ring),
                |p| injector.lock().unwrap().push(p),
                || {
                    // The marker: scanning A greys its child B.
                    while let Some(p) = injector.lock().unwrap().pop() {
                        if p == A {
                            grey(&marks, &grey_events, B, false);
                        }
                    }
                    true
                },
            );
            if clean {
                break;
            }
            loom::thread::yield_now();
        }
        let b_marked_at_done = marks.is_marked(B);
        mutator.join().unwrap();
        assert!(marks.is_marked(A));
        assert!(b_marked_at_done, "marking terminated before the greyed object was scanned");
    });
}

/// A barrier straddling the end of marking.
///
/// A mutator's store read the barrier flag while marking ran; meanwhile marking ends and the sweep
/// begins, and another thread stores a new *white* object `X` (allocated after the sweep began) into
/// the very member the barrier is about to overwrite. Bug it catches: the late barrier greys `X`
/// as the old value, leaving a mark on an object in a span no sweep will visit this cycle — the
/// next cycle would take `X` as marked and never trace its children. Guards: `hybrid_store`
/// raising `in_barrier` before re-reading the flag, and `end_barrier` waiting for it to drop.
#[test]
fn loom_barrier_straddling_the_end_of_marking() {
    barrier_straddling_the_end_of_marking();
}

/// Without the barrier's light fence, the barrier can read the flag on after the collector's
/// heavy fence while the collector reads its `in_barrier` down.
#[test]
#[should_panic(expected = "a barrier greyed a new object after marking ended")]
fn loom_barrier_straddling_without_the_light_fence_is_caught() {
    crate::sync::without_fences(crate::sync::LIGHT, barrier_straddling_the_end_of_marking);
}

/// Without the collector's heavy fence at the end of marking, the same.
#[test]
#[should_panic(expected = "a barrier greyed a new object after marking ended")]
fn loom_barrier_straddling_without_the_heavy_fence_is_caught() {
    crate::sync::without_fences(crate::sync::HEAVY, barrier_straddling_the_end_of_marking);
}

fn barrier_straddling_the_end_of_marking() {
    loom::model(|| {
        let marks = Arc::new(Marks::new());
        let member = Arc::new(AtomicPtr::new(A as *mut u8));
        let ring = Arc::new(BarrierBuffer::default());
        let barrier_on = Arc::new(AtomicBool::new(true));
        marks.grey(A, false); // everything reachable is black when marking ends
        marks.grey(Y, false);

        let mutator = {
            let (marks, member, ring, barrier_on) = (marks.clone(), member.clone(), ring.clone(), barrier_on.clone());
            loom::thread::spawn(move || {
                // The fast path saw the flag on; the slow path runs from here.
                hybrid_store(&ring.in_barrier, &barrier_on, &member, Y as *mut u8, |p| marks.grey(p, false), |_| {});
            })
        };
        // The collector ends marking; then the sweep begins and a thread stores a new white `X`.
        end_barrier(&barrier_on, std::iter::once(&*ring), &AtomicUsize::new(0));
        member.store(X as *mut u8, Ordering::Release);
        mutator.join().unwrap();
        assert!(!marks.is_marked(X), "a barrier greyed a new object after marking ended");
    });
}

/// A weak read racing with the end of marking: the weak reference's target `X` (whose one child
/// is `Y`) is reachable only through the weak cell, and the reader keeps whatever the read
/// returns (as a thread that goes on to store it into the heap). The collector runs termination
/// rounds with the weak gate closed (a fence after closing it), the clearing walk, turns the
/// barrier off and frees every unmarked object.
///
/// Bugs it catches: the reader greying `X` after the round that declared marking done (without
/// the gate: `X` is marked but never scanned, so `Y` is freed under it), or reading a
/// cleared-too-late cell after the sweep began (without the flag the barrier-off wait honours):
/// either way the reader would reach a freed object.
#[test]
fn loom_weak_read_against_the_end_of_marking() {
    use super::weak::{enter_weak_read, read_weak, GATE_CLEARING, GATE_CLOSED, GATE_OPEN};
    use loom::sync::atomic::AtomicU32;
    loom::model(|| {
        let marks = Arc::new(Marks::new());
        let grey_events = Arc::new(AtomicU64::new(0));
        let ring = Arc::new(BarrierBuffer::default());
        let barrier_on = Arc::new(AtomicBool::new(true));
        let gate = Arc::new(AtomicU32::new(GATE_OPEN));
        let cell = Arc::new(AtomicUsize::new(X));

        let reader = {
            let (marks, grey_events, ring, barrier_on, gate, cell) =
                (marks.clone(), grey_events.clone(), ring.clone(), barrier_on.clone(), gate.clone(), cell.clone());
            loom::thread::spawn(move || {
                let g = enter_weak_read(&ring.in_barrier, &barrier_on, &gate, |_| loom::thread::yield_now());
                let p = read_weak(g, &cell, |p| match g {
                    None => true,
                    Some(GATE_CLEARING) => marks.is_marked(p),
                    Some(_) => {
                        if marks.grey(p, true).is_some() {
                            grey_events.fetch_add(1, Ordering::SeqCst);
                            ring.push(p);
                        }
                        true
                    }
                });
                ring.in_barrier.store(false, Ordering::SeqCst);
                p
            })
        };

        // The collector: up to two termination rounds behind the closed gate.
        let roots_in_flight = AtomicUsize::new(0);
        let mut clean = false;
        for _ in 0..2 {
            gate.store(GATE_CLOSED, Ordering::SeqCst);
            loom::sync::atomic::fence(Ordering::SeqCst);
            let scanned = std::cell::Cell::new(false);
            clean = termination_round(
                &grey_events,
                &roots_in_flight,
                std::iter::once(&*ring),
                |p| scanned.set(scanned.get() | (p == X)),
                || {
                    // The marker scans X: its child Y.
                    if scanned.get() && marks.grey(Y, false).is_some() {
                        grey_events.fetch_add(1, Ordering::SeqCst);
                    }
                    true
                },
            );
            gate.store(if clean { GATE_CLEARING } else { GATE_OPEN }, Ordering::SeqCst);
            if clean {
                break;
            }
            loom::thread::yield_now();
        }
        if clean {
            // The walk, then the barrier off (waiting for flags), then the sweep.
            if !marks.is_marked(X) {
                cell.store(0, Ordering::SeqCst);
            }
            end_barrier(&barrier_on, std::iter::once(&*ring), &roots_in_flight);
            let (x_freed, y_freed) = (!marks.is_marked(X), !marks.is_marked(Y));
            let got = reader.join().unwrap();
            assert!(
                !(got == X && (x_freed || y_freed)),
                "a weak read handed out an object the sweep frees (or whose child it frees): x_freed {x_freed} y_freed {y_freed}"
            );
        } else {
            // The reader kept the round dirty twice: marking goes on; the read was shaded.
            let got = reader.join().unwrap();
            assert!(got == 0 || marks.is_marked(got));
        }
    });
}

/// A dead object's deferred drop glue against the sweeps that follow (sweep.rs).
///
/// Bugs it catches: a sweep freeing (and the allocator reusing) a slot whose destructor is still
/// running, or before the destructor's writes are visible — a data race on the object's memory,
/// which loom's `UnsafeCell` reports. Guards: a sweep keeps a `Pending` slot, and the runner's
/// release store of `Dropped` against the sweep's acquire load. It also checks the destructor
/// runs exactly once.
#[test]
fn loom_deferred_drop_against_the_next_sweeps() {
    use super::sweep::{set_dropped, sweep_word};
    use crate::memory::Dead;
    use crate::object::TypeInfo;
    static OWN_INFO: TypeInfo = TypeInfo::of::<String>();
    loom::model(|| {
        let word = Arc::new(AtomicPtr::new(&OWN_INFO as *const TypeInfo as *mut TypeInfo));
        // The object's memory: the destructor writes it, a reuse after freeing writes it.
        let memory = Arc::new(UnsafeCell::new(0u32));
        let queue = Arc::new(Mutex::new(Vec::<usize>::new()));

        let runner = {
            let (word, memory, queue) = (word.clone(), memory.clone(), queue.clone());
            loom::thread::spawn(move || loop {
                if queue.lock().unwrap().pop().is_some() {
                    // SAFETY: loom checks every access to the cell for a race: finding one is the model's point.
                    memory.with_mut(|m| unsafe { *m += 1 }); // the destructor
                    set_dropped(&word);
                    return;
                }
                loom::thread::yield_now();
            })
        };

        // Cycle 1's sweep finds the object dead with drop glue: it queues it.
        assert_eq!(sweep_word(&word, || 1).0, Dead::KeepCounted);
        queue.lock().unwrap().push(X);
        // Cycles 2 and 3: each sweep keeps a pending slot and frees a dropped one, which the
        // allocator then reuses.
        let mut freed = false;
        for _ in 0..2 {
            if !freed {
                match sweep_word(&word, || 1).0 {
                    Dead::Keep => {}
                    Dead::FreeUncounted | Dead::Free => {
                        freed = true;
                        // SAFETY: loom checks every access to the cell for a race: finding one is the model's point.
                        memory.with_mut(|m| unsafe { *m = 100 }); // reused by a new object
                    }
                    Dead::KeepCounted => panic!("a queued object was queued again"),
                }
            }
            loom::thread::yield_now();
        }
        runner.join().unwrap();
        // SAFETY: loom checks every access to the cell for a race: finding one is the model's point.
        let m = memory.with(|m| unsafe { *m });
        assert!(if freed { m == 100 } else { m == 1 }, "the destructor ran {m} times");
    });
}

/// `collect` waiting for its own cycle's drop glue against a drop thread claiming items of the
/// same batch.
///
/// Bugs it catches: an item run twice (claimed by both), one never run, or `collect` returning
/// before an item of its cycle that the drop thread claimed has finished (a lost wakeup, or a
/// wait that looked at the wrong cycle). Guards: the atomic claim cursor, the finishing runner's
/// unlisting under the queue's lock, and `wait_running`'s loop.
#[test]
fn loom_collect_waits_for_its_cycles_drops() {
    use super::sweep::{DropItem, DropQueue, Take};
    loom::model(|| {
        let q = Arc::new(DropQueue::default());
        let ran = Arc::new([UnsafeCell::new(0u32), UnsafeCell::new(0u32)]);
        q.push(1, &mut vec![DropItem::fake(X), DropItem::fake(X + 16)]);
        let run = |q: &DropQueue, ran: &[UnsafeCell<u32>; 2], cycles: std::ops::RangeInclusive<u64>, me| {
            while let Take::Batch(b) = q.take(cycles.clone(), me) {
                q.run(&b, None, |item| {
                    let i = (item.addr() - X) / 16;
                    // SAFETY: loom checks every access to the cell for a race: finding one is the model's point.
                    ran[i].with_mut(|r| unsafe { *r += 1 });
                });
            }
        };
        // The drop thread's identity (any id other than "not a drop thread" will do).
        let me = Some(std::thread::current().id());
        let runner = {
            let (q, ran) = (q.clone(), ran.clone());
            loom::thread::spawn(move || run(&q, &ran, 0..=u64::MAX, me))
        };
        // The collecting thread: its cycle is 1.
        run(&q, &ran, 1..=1, None);
        q.wait_running(1..=1);
        // Whoever ran each item, it ran once, and before `collect` returned.
        for r in ran.iter() {
            // SAFETY: loom checks every access to the cell for a race: finding one is the model's point.
            assert_eq!(r.with(|r| unsafe { *r }), 1);
        }
        runner.join().unwrap();
    });
}

/// A `Root` cloned on a thread outside every scope while the original is dropped and a cycle
/// starts (its barrier goes on, then the root table is scanned).
///
/// Bug it catches: the clone's shade reading the barrier off, the original's removal (also
/// before the barrier) and the whole start of the cycle passing, and the clone's slot added after
/// the scan: a rooted object nobody greyed, freed while its root lives. Guard: the order in
/// `RootTable::add_shaded` (add, then shade); with the shade first the model fails. Nothing
/// orders the cloning thread with the collector but the table's lock and the barrier flag (such
/// a thread is answered for).
#[test]
fn loom_root_cloned_outside_a_scope_as_a_cycle_starts() {
    loom::model(|| {
        let marks = Arc::new(Marks::new());
        let roots = Arc::new(RootTable::default());
        let barrier_on = Arc::new(AtomicBool::new(false));
        let original = roots.add(X);
        let shade = |barrier_on: &AtomicBool, marks: &Marks, p: usize| {
            if barrier_on.load(Ordering::SeqCst) {
                marks.grey(p, false);
            }
        };

        let cloner = {
            let (marks, roots, barrier_on) = (marks.clone(), roots.clone(), barrier_on.clone());
            loom::thread::spawn(move || roots.add_shaded(X, |p| shade(&barrier_on, &marks, p)))
        };
        // The original is dropped (before the barrier: no shade), then the collector turns the
        // barrier on (every thread answered: the cloner is outside every scope) and scans the
        // root table at C1.
        roots.remove(original, |p| shade(&barrier_on, &marks, p));
        barrier_on.store(true, Ordering::SeqCst);
        roots.for_each(|p| {
            marks.grey(p, false);
        });
        cloner.join().unwrap();
        // The clone roots X now: this cycle must have marked it.
        assert!(marks.is_marked(X), "a rooted object was left white");
    });
}

/// A local stack's unbarriered write racing the snapshot answer (collector/locals.rs).
///
/// The mutator allocates `A` (black if it has answered the snapshot already), keeps it only in
/// its local stack (a plain store, no barrier), then reaches a safepoint and leaves its scope;
/// the collector posts the snapshot request and answers for the thread if it finds it outside
/// (scanning the stack under its claim). Once the request is answered, marking may terminate, so
/// `A`, which the stack holds throughout, must be marked. Bug it catches: a scan skipped, or
/// moved after the answer is published (the collector then sees the answer with `A` white).
/// Guards: the scan before `answer_inside` in the thread's own answer, and the scan under the
/// claim (after the claim CAS acquires the thread's writes) for an outside thread.
fn local_stack_write_against_the_snapshot_scan(scan_before_answer: bool) {
    use super::handshake::LEVEL_SNAPSHOT;
    use super::locals::LocalBuf;
    loom::model(move || {
        let marks = Arc::new(Marks::new());
        let state = Arc::new(StateWord::new(token(0, 3)));
        let stack = Arc::new(LocalBuf::new(1, |w| w as usize));
        let posted = Arc::new(AtomicU64::new(token(0, 3)));
        let t = token(1, LEVEL_SNAPSHOT);
        let scan = |stack: &LocalBuf, marks: &Marks| {
            // SAFETY: called by the record's owner: the thread inside its scope, or the collector
            // holding a claim.
            unsafe { stack.for_each_object(|p| _ = marks.grey(p, false)) }
        };

        let mutator = {
            let (marks, state, stack, posted) = (marks.clone(), state.clone(), stack.clone(), posted.clone());
            loom::thread::spawn(move || {
                let (mut acked, _) = state.enter();
                if acked >= t {
                    marks.grey(A, false); // allocated black
                }
                // SAFETY: the owner, inside its scope.
                unsafe { stack.words()[0].store(A as *mut u8, Ordering::Relaxed) };
                stack.len.store(1, Ordering::Relaxed);
                // A safepoint: answer a pending snapshot.
                let req = posted.load(Ordering::Acquire);
                if req > acked {
                    if scan_before_answer {
                        scan(&stack, &marks);
                    }
                    state.answer_inside(req);
                    if !scan_before_answer {
                        scan(&stack, &marks);
                    }
                    acked = req;
                }
                state.exit(acked);
            })
        };
        posted.store(t, Ordering::SeqCst);
        // Whether the stack held A when the request was answered: the thread answered itself
        // (it had stored A before, and its answer happens-before our acquire of it), or our
        // claim's scan found it (its exit released the store; the claim acquired it).
        let held_at_snapshot = loop {
            match state.claim(t) {
                Claim::Answered => break true,
                Claim::Inside => loom::thread::yield_now(),
                Claim::Claimed => {
                    let mut found = false;
                    // SAFETY: the claim makes the collector the record's owner.
                    unsafe { stack.for_each_object(|_| found = true) };
                    scan(&stack, &marks);
                    state.end_claim(t);
                    break found;
                }
            }
        };
        // Every thread has answered: marking may terminate now.
        assert!(!held_at_snapshot || marks.is_marked(A), "a local root was left white at the snapshot");
        mutator.join().unwrap();
        assert!(marks.is_marked(A), "a local root was left white");
    });
}

#[test]
fn loom_local_stack_write_against_the_snapshot_scan() {
    local_stack_write_against_the_snapshot_scan(true);
}

/// The same model with the thread's scan moved after its answer: loom finds the interleaving in
/// which the collector sees the answer while `A` is still white.
#[test]
#[should_panic(expected = "left white")]
fn loom_local_stack_scan_after_the_answer_is_caught() {
    local_stack_write_against_the_snapshot_scan(false);
}

/// Where a snapshot answer scans the thread's local stacks, relative to publishing the answer
/// (the state-word store): the guard of [`loom_local_stack_write_races_the_snapshot_scan`].
#[derive(Clone, Copy, PartialEq, Eq)]
enum StackScan {
    /// As `Collector::act_for` does it: grey what the stacks hold, then publish the answer.
    BeforeAnswer,
    /// Mutant: publish the answer, then grey.
    AfterAnswer,
    /// Mutant: no scan.
    Skipped,
}

/// The heap object `H` of the local-stack model (a root, with one reference field).
const H: usize = 80;
/// An address no field ever holds.
const NEVER: *mut u8 = 8 as *mut u8;

/// The shared state of the local-stack model: one mutator's record (state word, ring, local
/// stack) and the collector's mark bits and request word.
struct LocalStackModel {
    /// Where the thread's own answer scans (at a safepoint inside its scope).
    inside_scan: StackScan,
    /// Where the collector's answer for the thread scans (under its claim).
    claim_scan: StackScan,
    marks: Marks,
    grey_events: AtomicU64,
    state: StateWord,
    posted: AtomicU64,
    barrier_on: AtomicBool,
    ring: BarrierBuffer,
    /// `H`'s one reference field.
    field: AtomicPtr<u8>,
    /// The thread's local stack (two slots), listed in `locals` as in a `ThreadRecord`.
    buf: Arc<super::locals::LocalBuf>,
    locals: super::locals::LocalRoots,
    /// Touched by every access of the stack's owner (a write by the thread inside its scope, a
    /// scan by the collector under its claim): loom reports a scan that overlaps a write. The
    /// slots themselves are relaxed atomics, as in `LocalBuf`.
    owner: UnsafeCell<u32>,
    /// Bookkeeping, not protocol: the objects the stack held when the snapshot was answered.
    held_at_snapshot: AtomicU64,
    /// Bookkeeping: the objects allocated black (marked at birth, so never left white).
    born_black: AtomicU64,
}

impl LocalStackModel {
    /// Greys `p` (a leaf: nothing to queue), counting a grey event if it was white.
    fn grey(&self, p: usize) -> Option<bool> {
        let r = self.marks.grey(p, false);
        if r.is_some() {
            self.grey_events.fetch_add(1, Ordering::SeqCst);
        }
        r
    }

    /// The objects slots `0..len` hold, as mark-bit positions.
    ///
    /// # Safety
    /// The caller owns the record (as for `LocalBuf::for_each_object`).
    unsafe fn contents(&self) -> u64 {
        let mut bits = 0;
        // SAFETY: forwarded.
        unsafe { self.buf.for_each_object(|p| bits |= Marks::bit(p)) };
        bits
    }

    /// `LocalStack::push`, without growth (the model never fills its two slots).
    fn push(&self, p: usize) {
        // SAFETY: loom checks every access to the cell for a race: finding one is the model's point.
        self.owner.with_mut(|o| unsafe { *o += 1 });
        let len = self.buf.len.load(Ordering::Relaxed);
        // SAFETY: the owner, inside its scope.
        unsafe { self.buf.words()[len].store(p as *mut u8, Ordering::Relaxed) };
        self.buf.len.store(len + 1, Ordering::Relaxed);
    }

    /// `LocalStack::set` of slot `i`.
    fn set(&self, i: usize, p: usize) {
        // SAFETY: loom checks every access to the cell for a race: finding one is the model's point.
        self.owner.with_mut(|o| unsafe { *o += 1 });
        // SAFETY: the owner, inside its scope.
        unsafe { self.buf.words()[i].store(p as *mut u8, Ordering::Relaxed) };
    }

    /// The snapshot answer's part for the local stacks (`Collector::act_for`, `LEVEL_SNAPSHOT`),
    /// by whoever owns the record, scanning where `scan_at` says; `publish` is the state-word
    /// store that answers.
    ///
    /// # Safety
    /// The caller owns the record: the thread inside its scope, or the collector under a claim.
    unsafe fn answer_snapshot(&self, scan_at: StackScan, publish: impl FnOnce()) {
        // SAFETY: forwarded.
        self.held_at_snapshot.store(unsafe { self.contents() }, Ordering::SeqCst);
        let scan = || {
            // SAFETY: loom checks every access to the cell for a race: finding one is the model's point.
            self.owner.with(|_| ());
            // SAFETY: forwarded (in the `AfterAnswer` mutant it is not: that is the mutant).
            unsafe { self.locals.scan(|p| _ = self.grey(p)) };
        };
        if scan_at == StackScan::BeforeAnswer {
            scan();
        }
        publish();
        if scan_at == StackScan::AfterAnswer {
            scan();
        }
    }

    /// A safepoint of the thread inside its scope (a scope boundary or a `Session` safepoint):
    /// answers a pending snapshot request.
    fn safepoint(&self, acked: &mut u64) {
        let req = self.posted.load(Ordering::Acquire);
        if req > *acked {
            // SAFETY: the thread, inside its scope, owns its record.
            unsafe { self.answer_snapshot(self.inside_scan, || self.state.answer_inside(req)) };
            *acked = req;
        }
    }
}

/// A local stack's unbarriered writes racing the snapshot scan, inside the thread's scope and
/// outside it (collector/locals.rs; docs/design.md, "Local roots").
///
/// C1 has passed: the barrier is on and the root `H` is greyed; `H`'s field holds `A`, the
/// stack is empty. The mutator, inside one scope, pushes `A` loaded from `H`'s field (a plain
/// store) and then nulls the field through the hybrid barrier (which shades `A`); allocates `B`
/// (white before its snapshot answer, black after) and pushes it; leaves its scope holding both;
/// re-enters (spinning while the collector holds a claim) and swaps the two slots. It polls for
/// the snapshot request at every scope boundary and between the two pushes (a `Session`
/// safepoint) and answers at the first poll that sees it, scanning its stack. The collector
/// posts the request, marks from `H` (shading its field's target), answers for the thread if it
/// finds it outside (scanning under its claim), then runs termination rounds. So the scan falls
/// before, between or after the stack writes, by the thread or under a claim.
///
/// Checks: what the stack held at the snapshot, and everything it holds at the end (all of it
/// reachable: the stack is a root), is marked when marking terminates, unless allocated black;
/// and no scan overlaps a write (loom's `UnsafeCell`). Bugs it catches: a scan skipped (`B`,
/// white and only in the stack, stays white) or moved after the answer is published (the
/// collector sees the answer and terminates before `B` is greyed; under a claim, the thread
/// re-enters and writes the stack during the scan: the twins below); a re-entry that does not
/// wait for the claim (a write during the scan); a barrier that does not shade the old value
/// (`A`, pushed after the snapshot, is left white when the marker reads the field after the
/// barrier). Guards: the scan before the answer in `Collector::act_for`, `StateWord::enter`
/// spinning while `BUSY`, and `hybrid_store` shading the old value.
fn local_stack_write_races_the_snapshot_scan(inside_scan: StackScan, claim_scan: StackScan) {
    use super::handshake::LEVEL_SNAPSHOT;
    use super::locals::{LocalBuf, LocalRoots};
    loom::model(move || {
        let c1 = token(1, LEVEL_BARRIER);
        let t = token(1, LEVEL_SNAPSHOT);
        let buf = Arc::new(LocalBuf::new(2, |w| w as usize));
        let m = Arc::new(LocalStackModel {
            inside_scan,
            claim_scan,
            marks: Marks::new(),
            grey_events: AtomicU64::new(0),
            state: StateWord::new(c1),
            posted: AtomicU64::new(c1),
            barrier_on: AtomicBool::new(true),
            ring: BarrierBuffer::default(),
            field: AtomicPtr::new(A as *mut u8),
            buf: buf.clone(),
            locals: LocalRoots::default(),
            owner: UnsafeCell::new(0),
            held_at_snapshot: AtomicU64::new(0),
            born_black: AtomicU64::new(0),
        });
        m.locals.add(buf);
        m.grey(H); // the roots, greyed at C1

        let mutator = {
            let m = m.clone();
            loom::thread::spawn(move || {
                let (mut acked, _) = m.state.enter();
                m.safepoint(&mut acked); // scope entry
                let a = m.field.load(Ordering::Acquire) as usize;
                m.push(a);
                hybrid_store(&m.ring.in_barrier, &m.barrier_on, &m.field, std::ptr::null_mut(), |p| m.grey(p), |_| {});
                m.safepoint(&mut acked); // between two inner scopes of a session
                if acked >= t {
                    m.marks.grey(B, false); // allocated black
                    m.born_black.fetch_or(Marks::bit(B), Ordering::SeqCst);
                }
                m.push(B);
                m.safepoint(&mut acked); // scope exit
                m.state.exit(acked);
                // Outside its scope: the collector may answer for the thread now.
                let (mut acked, _) = m.state.enter();
                m.safepoint(&mut acked); // scope entry
                m.set(0, B); // swap the two slots (an interpreter's `SWAP`): plain stores again
                m.set(1, a);
                m.safepoint(&mut acked); // scope exit
                m.state.exit(acked);
            })
        };

        m.posted.store(t, Ordering::SeqCst);
        // A marker scans H: it reads H's field (a compare-exchange that always fails stands for
        // the load: loom 0.7 does not try a store before another thread's earlier plain load when
        // the storing thread loaded the location itself in between, tokio-rs/loom#392, and the
        // mutator's barrier does just that) and shades its target.
        let f = m.field.compare_exchange(NEVER, NEVER, Ordering::Acquire, Ordering::Acquire).unwrap_or_else(|p| p);
        if !f.is_null() {
            m.grey(f as usize);
        }
        // Wait for the snapshot answer; answer it for the thread if it is outside its scope.
        loop {
            match m.state.claim(t) {
                Claim::Answered => break,
                Claim::Inside => loom::thread::yield_now(),
                Claim::Claimed => {
                    // SAFETY: the claim makes the collector the record's owner.
                    unsafe { m.answer_snapshot(m.claim_scan, || m.state.end_claim(t)) };
                    break;
                }
            }
        }
        // Termination: every object here is a leaf, so no round has grey work to wait for.
        let roots_in_flight = AtomicUsize::new(0);
        while !termination_round(&m.grey_events, &roots_in_flight, std::iter::once(&m.ring), |_| {}, || true) {
            loom::thread::yield_now();
        }
        let marked = m.marks.0.load(Ordering::SeqCst);
        let held = m.held_at_snapshot.load(Ordering::SeqCst);
        assert_eq!(held & !marked, 0, "an object the local stack held at its snapshot was left white");
        mutator.join().unwrap();
        // SAFETY: the thread has ended: nobody else touches the record.
        let end = unsafe { m.contents() };
        let black = m.born_black.load(Ordering::SeqCst);
        assert_eq!(end & !(marked | black), 0, "an object the local stack holds at the end was white at mark end");
    });
}

#[test]
fn loom_local_stack_write_races_the_snapshot_scan() {
    local_stack_write_races_the_snapshot_scan(StackScan::BeforeAnswer, StackScan::BeforeAnswer);
}

/// The model with the thread's own scan moved after its answer: loom finds the collector seeing
/// the answer and terminating while `B`, white and only in the stack, is not yet greyed.
#[test]
#[should_panic(expected = "left white")]
fn loom_local_stack_race_scan_after_the_threads_answer_is_caught() {
    local_stack_write_races_the_snapshot_scan(StackScan::AfterAnswer, StackScan::BeforeAnswer);
}

/// The model with the collector's scan moved after the end of its claim: loom finds the thread
/// re-entering and writing its stack while the collector scans it.
#[test]
#[should_panic(expected = "Concurrent read and write accesses to `UnsafeCell`")]
fn loom_local_stack_race_scan_after_the_claim_is_caught() {
    local_stack_write_races_the_snapshot_scan(StackScan::BeforeAnswer, StackScan::AfterAnswer);
}

/// The model with both scans skipped: `B` is left white in the stack.
#[test]
#[should_panic(expected = "left white")]
fn loom_local_stack_race_scan_skipped_is_caught() {
    local_stack_write_races_the_snapshot_scan(StackScan::Skipped, StackScan::Skipped);
}

//! A fourth adversarial review: the drop threads, lazy sweeping of drop-glue spans, add-then-shade
//! roots, the failed mark's wait for idle markers, the page heap's wait for the scavenger,
//! one-scan ephemeron chains and teardown inside another heap's scope. Each test names its attack
//! and asserts what the docs promise. Heaps reserve 256 MiB so the file runs under valgrind.
mod common;
use common::{assert_heap_usable, builder, message_of, wait_until, within, Node};
use lowpause::*;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

/// Serialises tests that share statics or count threads.
static SERIAL: Mutex<()> = Mutex::new(());
fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// Threads of this process whose name starts with `prefix`.
fn threads_named(prefix: &str) -> usize {
    std::fs::read_dir("/proc/self/task")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter(|e| {
                    std::fs::read_to_string(e.path().join("comm")).map(|c| c.starts_with(prefix)).unwrap_or(false)
                })
                .count()
        })
        .unwrap_or(0)
}

/// Allocation-driven cycles without `collect` (which would run its own cycle's drops itself):
/// allocates plain garbage until `n` more cycles have completed.
fn cycles_by_allocation(m: &mut Mutator, n: u64) {
    let heap = m.heap();
    let c0 = heap.stats().cycles;
    let t0 = Instant::now();
    while heap.stats().cycles < c0 + n {
        m.scope(|s| {
            for _ in 0..64 {
                s.alloc_slice(2048, |_| 0u64);
            }
        });
        assert!(t0.elapsed() < Duration::from_secs(30), "no cycle ran by allocation");
    }
}

// ---------------------------------------------------------------------------------------------
// D1: one destructor that blocks, and garbage that died in the same cycle and lies in the same
// span (so in the same batch, after it). design.md §5: "when drop glue is queued while every drop
// thread has been inside one batch for 10 ms, the queue starts another ..., so the garbage behind
// a stuck destructor is still dropped and its slots reclaimed". More garbage with drop glue keeps
// being queued afterwards (so more drop threads are started), and no `collect` is called.

static D1_RELEASE: AtomicBool = AtomicBool::new(false);
static D1_BLOCKED: AtomicBool = AtomicBool::new(false);
static D1_DROPPED: AtomicUsize = AtomicUsize::new(0);
static D1_LATER: AtomicUsize = AtomicUsize::new(0);

#[derive(Trace)]
struct D1Obj {
    kind: u8,
}
impl Drop for D1Obj {
    fn drop(&mut self) {
        match self.kind {
            0 => {
                D1_BLOCKED.store(true, Ordering::SeqCst);
                let t0 = Instant::now();
                while !D1_RELEASE.load(Ordering::SeqCst) && t0.elapsed() < Duration::from_secs(30) {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
            1 => {
                D1_DROPPED.fetch_add(1, Ordering::SeqCst);
            }
            _ => {
                D1_LATER.fetch_add(1, Ordering::SeqCst);
            }
        }
    }
}

fn d1(workers: usize) -> (usize, usize) {
    D1_RELEASE.store(false, Ordering::SeqCst);
    D1_BLOCKED.store(false, Ordering::SeqCst);
    D1_DROPPED.store(0, Ordering::SeqCst);
    D1_LATER.store(0, Ordering::SeqCst);
    let heap = builder(workers).build().unwrap();
    let mut m = heap.attach();
    // One span: the blocker first, then 200 ordinary objects, all garbage at once.
    m.scope(|s| {
        s.alloc(D1Obj { kind: 0 });
        for _ in 0..200 {
            s.alloc(D1Obj { kind: 1 });
        }
    });
    wait_until(20, "the blocker started", || {
        cycles_by_allocation(&mut m, 1);
        D1_BLOCKED.load(Ordering::SeqCst)
    });
    // Keep queueing garbage with drop glue for 3 s (cycles by allocation): more drop threads.
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(3) {
        m.scope(|s| {
            for _ in 0..100 {
                s.alloc(D1Obj { kind: 2 });
            }
        });
        cycles_by_allocation(&mut m, 1);
    }
    let (same, later) = (D1_DROPPED.load(Ordering::SeqCst), D1_LATER.load(Ordering::SeqCst));
    eprintln!(
        "d1 workers {workers}: after 3 s, {same} of 200 same-batch objects dropped; {later} later ones; {}",
        heap.stats()
    );
    D1_RELEASE.store(true, Ordering::SeqCst);
    m.collect();
    (same, later)
}

#[test]
fn d1_garbage_in_the_blocked_destructors_batch_is_never_dropped() {
    let _g = serial();
    let mut bad = Vec::new();
    for w in [1, 0] {
        let (same, later) = within(60, "d1", move || d1(w));
        assert!(later > 0, "later garbage was dropped by another drop thread");
        if same != 200 {
            bad.push((w, same));
        }
    }
    assert!(bad.is_empty(), "(workers, same-batch objects dropped of 200) = {bad:?}: garbage queued in the same batch as a blocked destructor waits for it");
}

// D1b: the same with large garbage: one blocked destructor pins every object of its batch (up to
// 64 spans of any size), so a single blocked destructor exhausts a 256 MiB heap although nothing
// is live, the very failure (D5b) the extra drop threads were added for.
static D1B_RELEASE: AtomicBool = AtomicBool::new(false);
static D1B_BLOCKED: AtomicBool = AtomicBool::new(false);
struct D1bElem(u8, #[allow(dead_code)] [u64; 2]);
// SAFETY: holds no GC reference.
unsafe impl Trace for D1bElem {
    const NEEDS_TRACE: bool = false;
    fn trace(&self, _: &mut Tracer<'_>) {}
}
impl Drop for D1bElem {
    fn drop(&mut self) {
        if self.0 == 1 {
            D1B_BLOCKED.store(true, Ordering::SeqCst);
            let t0 = Instant::now();
            while !D1B_RELEASE.load(Ordering::SeqCst) && t0.elapsed() < Duration::from_secs(30) {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    }
}

fn d1b(workers: usize) -> Option<String> {
    D1B_RELEASE.store(false, Ordering::SeqCst);
    D1B_BLOCKED.store(false, Ordering::SeqCst);
    let heap = builder(workers).gc_percent(100_000).build().unwrap();
    let mut m = heap.attach();
    // 24 arrays of 6 MiB with drop glue (the first element of the first and of the last one blocks: the sweep takes spans in some order), all garbage.
    for i in 0..24 {
        m.scope(|s| {
            s.alloc_slice(1 << 18, |j| D1bElem(u8::from((i == 0 || i == 23) && j == 0), [0; 2]));
        });
    }
    // One cycle finds them all dead: one sweep, one batch.
    heap.set_gc_percent(Some(100)).unwrap();
    wait_until(20, "the blocker started", || {
        m.scope(|s| {
            s.alloc(D1bElem(0, [0; 2]));
        });
        D1B_BLOCKED.load(Ordering::SeqCst)
    });
    // Now ordinary garbage, with and without drop glue, nothing live: 2 GiB through the heap.
    let r = catch_unwind(AssertUnwindSafe(|| {
        for _ in 0..2000 {
            m.scope(|s| {
                for _ in 0..16 {
                    s.alloc_slice(4096, |_| 0u64);
                    s.alloc_slice(256, |_| D1bElem(0, [0; 2]));
                }
            });
        }
    }));
    let msg = r.err().map(|e| message_of(&*e));
    let st = heap.stats();
    eprintln!("d1b workers {workers}: {msg:?}; {st}");
    D1B_RELEASE.store(true, Ordering::SeqCst);
    msg.or_else(|| {
        (st.heap_in_use > 64 << 20).then(|| format!("{} MiB in use with nothing live", st.heap_in_use >> 20))
    })
}

#[test]
fn d1b_one_blocked_destructor_pins_its_whole_batch_and_exhausts_the_heap() {
    let _g = serial();
    let mut bad = Vec::new();
    for w in [1, 0] {
        if let Some(msg) = within(120, "d1b", move || d1b(w)) {
            bad.push((w, msg));
        }
    }
    assert!(bad.is_empty(), "{bad:?}");
}

// ---------------------------------------------------------------------------------------------
// D2: more blocked destructors than drop threads. Each blocker dies in a cycle of its own, after
// the previous one has blocked for more than 10 ms, so each push starts one more drop thread, up
// to 8. The ninth and later blockers wait, and so does every later batch: garbage with drop glue
// (nothing live) fills the heap. Also counts the drop threads (at most 8 is the promise).

static D2_RELEASE: AtomicBool = AtomicBool::new(false);
static D2_BLOCKED: AtomicUsize = AtomicUsize::new(0);
#[derive(Trace)]
struct D2Obj {
    block: bool,
    _pad: [u64; 4],
}
impl Drop for D2Obj {
    fn drop(&mut self) {
        if self.block {
            D2_BLOCKED.fetch_add(1, Ordering::SeqCst);
            let t0 = Instant::now();
            while !D2_RELEASE.load(Ordering::SeqCst) && t0.elapsed() < Duration::from_secs(40) {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    }
}

fn d2(workers: usize, blockers: usize) -> (usize, usize, Option<String>, Stats) {
    D2_RELEASE.store(false, Ordering::SeqCst);
    D2_BLOCKED.store(0, Ordering::SeqCst);
    let heap = builder(workers).build().unwrap();
    let mut m = heap.attach();
    let mut max_threads = 0;
    for i in 0..blockers {
        m.scope(|s| {
            s.alloc(D2Obj { block: true, _pad: [0; 4] });
        });
        let t0 = Instant::now();
        // Cycles by allocation until this blocker runs (or 1 s: no thread took it).
        while D2_BLOCKED.load(Ordering::SeqCst) <= i && t0.elapsed() < Duration::from_secs(1) {
            cycles_by_allocation(&mut m, 1);
        }
        std::thread::sleep(Duration::from_millis(15));
        max_threads = max_threads.max(threads_named("lowpause-drop"));
    }
    let blocked = D2_BLOCKED.load(Ordering::SeqCst);
    let r = catch_unwind(AssertUnwindSafe(|| {
        for _ in 0..3000 {
            m.scope(|s| {
                for _ in 0..10_000 {
                    s.alloc(D2Obj { block: false, _pad: [0; 4] });
                }
            });
        }
    }));
    max_threads = max_threads.max(threads_named("lowpause-drop"));
    let msg = r.err().map(|e| message_of(&*e));
    let st = heap.stats();
    eprintln!(
        "d2 workers {workers}, {blockers} blockers: {blocked} blocked, {max_threads} drop threads; {msg:?}; {st}"
    );
    D2_RELEASE.store(true, Ordering::SeqCst);
    (blocked, max_threads, msg, st)
}

#[test]
#[ignore = "known limit: eight destructors blocked forever hold all eight drop threads; later garbage with drop glue then fills the heap (the exhaustion panic says how many objects wait for destructors)"]
fn d2_eight_blocked_destructors_and_garbage_with_drop_glue_exhaust_the_heap() {
    let _g = serial();
    let mut bad = Vec::new();
    for w in [1, 0] {
        let (blocked, threads, msg, st) = within(120, "d2", move || d2(w, 8));
        assert!(threads <= 8 + 1, "{threads} drop threads");
        assert_eq!(blocked, 8, "eight drop threads took a blocker each");
        if msg.is_some() || st.heap_in_use > 64 << 20 {
            bad.push((w, msg, st.heap_in_use >> 20));
        }
    }
    std::thread::sleep(Duration::from_millis(100));
    assert!(bad.is_empty(), "(workers, outcome, MiB in use) = {bad:?}");
}

// D3: the cap of 8 drop threads against concurrent pushes: `DropQueue::push` decides to start a
// thread under the queue's lock but starts it after releasing it, so threads that push at the
// same moment each start one. Seven blockers hold seven threads; then four threads allocate
// garbage with drop glue (queued by their lazy sweeps) at once, each with a blocker now and then.
fn d3(workers: usize) -> usize {
    // The sampler counts the process's drop threads: wait until the previous run's heap (whose
    // released drop threads may still be finishing) has none left, or its threads would count
    // against this heap's cap.
    let t0 = Instant::now();
    while threads_named("lowpause-drop") > 0 && t0.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(5));
    }
    D2_RELEASE.store(false, Ordering::SeqCst);
    D2_BLOCKED.store(0, Ordering::SeqCst);
    let heap = builder(workers).max_heap(1 << 30).build().unwrap();
    let mut m = heap.attach();
    for i in 0..7 {
        m.scope(|s| {
            s.alloc(D2Obj { block: true, _pad: [0; 4] });
        });
        let t0 = Instant::now();
        while D2_BLOCKED.load(Ordering::SeqCst) <= i && t0.elapsed() < Duration::from_secs(1) {
            cycles_by_allocation(&mut m, 1);
        }
        std::thread::sleep(Duration::from_millis(15));
    }
    let stop = Arc::new(AtomicBool::new(false));
    let max = Arc::new(AtomicUsize::new(0));
    let sampler = {
        let (stop, max) = (stop.clone(), max.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                max.fetch_max(threads_named("lowpause-drop"), Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(2));
            }
        })
    };
    let start = Arc::new(std::sync::Barrier::new(4));
    let hs: Vec<_> = (0..4)
        .map(|t| {
            let (heap, start) = (heap.clone(), start.clone());
            std::thread::spawn(move || {
                let mut m = heap.attach();
                start.wait();
                let t0 = Instant::now();
                let mut n = 0u64;
                // Until every drop thread the cap allows is blocked: from then on the garbage
                // only piles up (the known limit of d2), which would exhaust the heap on a fast
                // machine before the two seconds are over.
                while t0.elapsed() < Duration::from_secs(2) && D2_BLOCKED.load(Ordering::SeqCst) < 8 {
                    m.scope(|s| {
                        for _ in 0..2000 {
                            n += 1;
                            s.alloc(D2Obj { block: n % 5000 == t, _pad: [0; 4] });
                        }
                    });
                }
            })
        })
        .collect();
    for h in hs {
        h.join().unwrap();
    }
    stop.store(true, Ordering::SeqCst);
    sampler.join().unwrap();
    let n = max.load(Ordering::SeqCst);
    eprintln!("d3 workers {workers}: at most {n} drop threads at once; {} blocked", D2_BLOCKED.load(Ordering::SeqCst));
    D2_RELEASE.store(true, Ordering::SeqCst);
    n
}

#[test]
fn d3_drop_threads_stay_within_the_cap_under_concurrent_pushes() {
    let _g = serial();
    let mut seen = Vec::new();
    for round in 0..3 {
        for w in [1, 0] {
            seen.push((round, w, within(60, "d3", move || d3(w))));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    // One over the cap is another test's heap (every heap has a drop thread; not every test of
    // this binary is serial), as in d2.
    assert!(seen.iter().all(|&(_, _, n)| n <= 8 + 1), "(round, workers, drop threads) = {seen:?}");
}

// ---------------------------------------------------------------------------------------------
// L1: "after `collect`, the destructors of the garbage its cycle found have run" (Mutator::collect,
// design.md §5), against lazy sweeping by allocating threads. A lazy sweep (`Memory::refill`)
// lowers the count of sweeps in flight span by span, but its dead objects are queued only when the
// refill returns to `Collector::alloc_slow`; the sweep can be declared done in between, `collect`
// then runs its cycle's batches without that one, and returns before those destructors ran.
// gc_percent is off, so only this `collect` starts cycles: X is garbage before the call and white,
// so the cycle `collect` waits for is the one that finds it dead.

const L1_N: usize = 20_000;
static L1_DROPPED: [AtomicBool; L1_N] = [const { AtomicBool::new(false) }; L1_N];
#[derive(Trace)]
struct L1Obj {
    id: usize,
    _pad: [u64; 3],
}
impl Drop for L1Obj {
    fn drop(&mut self) {
        if self.id < L1_N {
            L1_DROPPED[self.id].store(true, Ordering::SeqCst);
        }
    }
}

fn l1(workers: usize, churners: usize, iterations: usize) -> Vec<usize> {
    for f in &L1_DROPPED {
        f.store(false, Ordering::SeqCst);
    }
    let heap = builder(workers).max_heap(1 << 30).gc_percent_off().build().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let hs: Vec<_> = (0..churners)
        .map(|_| {
            let (heap, stop) = (heap.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut m = heap.attach();
                while !stop.load(Ordering::Relaxed) {
                    m.scope(|s| {
                        for _ in 0..500 {
                            s.alloc(L1Obj { id: usize::MAX, _pad: [0; 3] });
                        }
                    });
                }
            })
        })
        .collect();
    let mut m = heap.attach();
    let mut missed = Vec::new();
    let t0 = Instant::now();
    let mut ran = 0;
    #[allow(clippy::needless_range_loop)]
    for i in 0..iterations {
        if t0.elapsed() > Duration::from_secs(25) {
            break;
        }
        ran += 1;
        m.scope(|s| {
            s.alloc(L1Obj { id: i, _pad: [0; 3] });
        });
        m.collect();
        if !L1_DROPPED[i].load(Ordering::SeqCst) {
            missed.push(i);
        }
    }
    stop.store(true, Ordering::SeqCst);
    for h in hs {
        h.join().unwrap();
    }
    eprintln!("l1 workers {workers}, {churners} churners: {} of {ran} collects returned before their garbage's destructor ran: {:?}", missed.len(), &missed[..missed.len().min(10)]);
    missed
}

#[test]
fn l1_collect_returns_before_its_cycles_lazily_swept_garbage_is_dropped() {
    let mut bad = Vec::new();
    for (w, c) in [(1, 3), (0, 3)] {
        let missed = within(300, "l1", move || l1(w, c, L1_N));
        if !missed.is_empty() {
            bad.push((w, c, missed.len()));
        }
    }
    assert!(bad.is_empty(), "(workers, churners, collects that returned early) = {bad:?}");
}

// L2: `collect` called while a cycle N runs waits for cycle N + 2 (`Collector::collect`:
// `started + 2`), and runs or waits for that cycle's batches only. Garbage made during N (allocated
// black, so it survives N) is found dead by N + 1, a cycle that also starts after the call: its
// destructors are neither run nor waited for. A destructor that takes a while (Y, 500 ms, in the
// same batch before X) makes it deterministic: `collect` returns before X's destructor has run.

static L2_X: AtomicBool = AtomicBool::new(false);
#[derive(Trace)]
struct L2Obj {
    slow: bool,
}
impl Drop for L2Obj {
    fn drop(&mut self) {
        if self.slow {
            std::thread::sleep(Duration::from_millis(500));
        } else {
            L2_X.store(true, Ordering::SeqCst);
        }
    }
}

fn l2(workers: usize) -> (bool, Duration) {
    L2_X.store(false, Ordering::SeqCst);
    let heap = builder(workers).gc_percent_off().build().unwrap();
    let (to_t, t_rx) = mpsc::channel::<()>();
    let (t_tx, from_t) = mpsc::channel::<()>();
    // T: inside a scope, answers the barrier request at an allocation slow path, then holds the
    // cycle at its snapshot until told to leave.
    let t = {
        let heap = heap.clone();
        std::thread::spawn(move || {
            let mut m = heap.attach();
            m.scope(|s| {
                t_tx.send(()).unwrap();
                t_rx.recv().unwrap();
                s.alloc_slice(1 << 16, |_| 0u64); // a slow path: answers "barrier on"
                t_tx.send(()).unwrap();
                t_rx.recv().unwrap();
            });
        })
    };
    from_t.recv().unwrap();
    // U starts cycle N (its collect waits for T).
    let u = {
        let heap = heap.clone();
        std::thread::spawn(move || heap.attach().collect())
    };
    wait_until(10, "cycle N's barrier", || heap.__barrier_on());
    to_t.send(()).unwrap();
    from_t.recv().unwrap();
    std::thread::sleep(Duration::from_millis(50));
    let mut m = heap.attach();
    // Main answers N's snapshot at scope entry and allocates black: Y and X survive N, die in N + 1.
    m.scope(|s| {
        s.alloc(L2Obj { slow: true });
        s.alloc(L2Obj { slow: false });
    });
    let releaser = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(100));
        to_t.send(()).unwrap();
    });
    let t0 = Instant::now();
    m.collect();
    let took = t0.elapsed();
    let x = L2_X.load(Ordering::SeqCst);
    releaser.join().unwrap();
    t.join().unwrap();
    u.join().unwrap();
    eprintln!("l2 workers {workers}: collect took {took:?}; X's destructor had run: {x}; {}", heap.stats());
    wait_until(10, "X dropped eventually", || L2_X.load(Ordering::SeqCst));
    (x, took)
}

#[test]
fn l2_collect_during_a_cycle_skips_the_batch_of_the_cycle_that_found_its_garbage() {
    let _g = serial();
    let mut bad = Vec::new();
    for w in [0, 1] {
        let (x, took) = within(60, "l2", move || l2(w));
        if !x {
            bad.push((w, took));
        }
    }
    assert!(bad.is_empty(), "(workers, collect's time) where collect returned before the destructor of garbage unreachable at the call ran: {bad:?}");
}

// ---------------------------------------------------------------------------------------------
// L3: every destructor runs exactly once, and never while its slot is reused, under lazy sweeping
// by many allocating threads, `idle_step` sweeping from unattached threads and from destructors,
// `collect`s, and heap teardown at the end. Each object carries its id and a canary; a destructor
// that runs twice, on a reused slot, or on a torn value is counted. Some objects are kept alive
// for a while through roots (their canary is checked in scopes).

const L3_IDS: usize = 1 << 22;
static L3_DROPS: [std::sync::atomic::AtomicU8; L3_IDS] = [const { std::sync::atomic::AtomicU8::new(0) }; L3_IDS];
static L3_BAD: AtomicUsize = AtomicUsize::new(0);
static L3_NEXT: AtomicUsize = AtomicUsize::new(0);
static L3_HEAP: Mutex<Option<Heap>> = Mutex::new(None);

#[derive(Trace)]
struct L3Obj {
    id: usize,
    canary: u64,
    s: String,
    next: Member<L3Obj>,
}
fn l3_canary(id: usize) -> u64 {
    (id as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0xdead_beef
}
impl Drop for L3Obj {
    fn drop(&mut self) {
        let ok = self.id < L3_IDS && self.canary == l3_canary(self.id) && self.s == format!("{}", self.id);
        if !ok {
            L3_BAD.fetch_add(1, Ordering::SeqCst);
            return;
        }
        if L3_DROPS[self.id].fetch_add(1, Ordering::SeqCst) != 0 {
            L3_BAD.fetch_add(1, Ordering::SeqCst);
        }
        self.canary = 0;
        // Destructors donate time to the collector too (allowed from drop glue).
        if self.id % 97 == 0 {
            if let Some(h) = L3_HEAP.lock().unwrap().clone() {
                h.idle_step(Instant::now() + Duration::from_micros(200));
            }
        }
    }
}
fn l3_new<'s>(s: &Scope<'s>) -> Gc<'s, L3Obj> {
    let id = L3_NEXT.fetch_add(1, Ordering::SeqCst);
    assert!(id < L3_IDS, "test too long");
    s.alloc(L3Obj { id, canary: l3_canary(id), s: format!("{id}"), next: Member::null() })
}

fn l3(workers: usize, secs: u64) -> (usize, usize, usize) {
    L3_BAD.store(0, Ordering::SeqCst);
    L3_NEXT.store(0, Ordering::SeqCst);
    for d in L3_DROPS.iter() {
        d.store(0, Ordering::Relaxed);
    }
    let heap = builder(workers).build().unwrap();
    *L3_HEAP.lock().unwrap() = Some(heap.clone());
    let stop = Arc::new(AtomicBool::new(false));
    let mut hs = Vec::new();
    for t in 0..3 {
        let (heap, stop) = (heap.clone(), stop.clone());
        hs.push(std::thread::spawn(move || {
            let mut m = heap.attach();
            let mut kept: Vec<Root<L3Obj>> = Vec::new();
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) && L3_NEXT.load(Ordering::SeqCst) < L3_IDS - 10_000 {
                i += 1;
                m.scope(|s| {
                    let mut prev: Option<Gc<'_, L3Obj>> = None;
                    for _ in 0..300 {
                        let o = l3_new(s);
                        o.next.set(s, prev);
                        prev = Some(o);
                    }
                    if i % 7 == 0 {
                        kept.push(s.root(prev.unwrap()));
                    }
                    for r in &kept {
                        let mut o = Some(r.get(s));
                        while let Some(x) = o {
                            if x.canary != l3_canary(x.id) {
                                L3_BAD.fetch_add(1, Ordering::SeqCst);
                            }
                            o = x.next.get(s);
                        }
                    }
                });
                if kept.len() > 20 {
                    kept.drain(..10);
                }
                if t == 0 && i % 50 == 0 {
                    m.collect();
                }
            }
        }));
    }
    for _ in 0..2 {
        let (heap, stop) = (heap.clone(), stop.clone());
        hs.push(std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                if !heap.idle_step(Instant::now() + Duration::from_micros(500)) {
                    std::thread::yield_now();
                }
            }
        }));
    }
    std::thread::sleep(Duration::from_secs(secs));
    stop.store(true, Ordering::SeqCst);
    for h in hs {
        h.join().unwrap();
    }
    *L3_HEAP.lock().unwrap() = None;
    drop(heap); // teardown drops everything left, exactly once
    let made = L3_NEXT.load(Ordering::SeqCst);
    wait_until(20, "every destructor ran", || L3_DROPS[..made].iter().all(|d| d.load(Ordering::SeqCst) != 0));
    let twice = L3_DROPS[..made].iter().filter(|d| d.load(Ordering::SeqCst) > 1).count();
    let bad = L3_BAD.load(Ordering::SeqCst);
    eprintln!("l3 workers {workers}: {made} objects, {twice} dropped twice, {bad} bad");
    (made, twice, bad)
}

#[test]
fn l3_every_destructor_runs_exactly_once_under_lazy_sweeps_and_idle_steps() {
    let _g = serial();
    let secs = std::env::var("ATTACK4_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(4);
    for w in [1, 0] {
        let (made, twice, bad) = within(120, "l3", move || l3(w, secs));
        assert!(made > 1000);
        assert_eq!((twice, bad), (0, 0), "workers {w}");
    }
}

// ---------------------------------------------------------------------------------------------
// E1: ephemeron semantics against a model: random graphs of objects, several tables (reachable
// from roots, from objects' fields, or as values of an outer table of tables), entries whose
// values are keys of other entries (direct chains) or reach keys through fields (chains through
// values), across tables, inserted in random order. After two collections every object and table
// must be alive exactly when the model says (strong edges, plus: a live table's entry with a live
// key keeps its value), seen through `Weak`s; lookups of live entries return the right value.

#[derive(Trace)]
struct EObj {
    id: usize,
    a: Member<EObj>,
    t: Member<WeakTable<EObj, EObj>>,
}
type ETable = WeakTable<EObj, EObj>;
type EOuter = WeakTable<EObj, ETable>;

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn e1_round(heap: &Heap, seed: u64) -> Result<(), String> {
    let mut rng = Rng(seed | 1);
    let (n, nt) = (300usize, 6usize);
    let fields_a: Vec<Option<usize>> = (0..n).map(|_| (rng.below(3) == 0).then(|| rng.below(n))).collect();
    let fields_t: Vec<Option<usize>> = (0..n).map(|_| (rng.below(12) == 0).then(|| rng.below(nt))).collect();
    let mut entries: Vec<(usize, usize, usize)> = Vec::new(); // (table, key, value)
                                                              // Chains: value of one entry is the key of the next, across tables, in shuffled order.
    for _ in 0..4 {
        let len = 20 + rng.below(40);
        let start = rng.below(n);
        let mut k = start;
        for _ in 0..len {
            let v = rng.below(n);
            entries.push((rng.below(nt), k, v));
            k = v;
        }
    }
    for _ in 0..300 {
        entries.push((rng.below(nt), rng.below(n), rng.below(n)));
    }
    let outer: Vec<(usize, usize)> = (0..3).map(|_| (rng.below(n), rng.below(nt))).collect();
    for i in (1..entries.len()).rev() {
        entries.swap(i, rng.below(i + 1));
    }
    let root_objs: Vec<usize> = (0..4).map(|_| rng.below(n)).collect();
    let root_tables: Vec<usize> = (0..2).map(|_| rng.below(nt)).collect();
    // Identity tables: a later insert of the same key replaces the value.
    let mut last: std::collections::HashMap<(usize, usize), usize> = Default::default();
    for &(t, k, v) in &entries {
        last.insert((t, k), v);
    }
    // The model's fixpoint.
    let (mut live_o, mut live_t) = (vec![false; n], vec![false; nt]);
    let mut outer_live = true; // rooted
    for &o in &root_objs {
        live_o[o] = true;
    }
    for &t in &root_tables {
        live_t[t] = true;
    }
    loop {
        let mut changed = false;
        for o in 0..n {
            if live_o[o] {
                if let Some(a) = fields_a[o] {
                    changed |= !std::mem::replace(&mut live_o[a], true);
                }
                if let Some(t) = fields_t[o] {
                    changed |= !std::mem::replace(&mut live_t[t], true);
                }
            }
        }
        for (&(t, k), &v) in &last {
            if live_t[t] && live_o[k] {
                changed |= !std::mem::replace(&mut live_o[v], true);
            }
        }
        if outer_live {
            for &(k, t) in &outer {
                if live_o[k] {
                    changed |= !std::mem::replace(&mut live_t[t], true);
                }
            }
        }
        outer_live = true;
        if !changed {
            break;
        }
    }
    if seed % 10 == 3 {
        eprintln!(
            "e1 seed {seed}: model: {} of {n} objects, {} of {nt} tables live",
            live_o.iter().filter(|&&l| l).count(),
            live_t.iter().filter(|&&l| l).count()
        );
    }
    let mut m = heap.attach();
    let (weak_o, weak_t, roots) = m.scope(|s| {
        let objs: Vec<_> = (0..n).map(|id| s.alloc(EObj { id, a: Member::null(), t: Member::null() })).collect();
        let tables: Vec<_> = (0..nt).map(|_| ETable::new_in(s)).collect();
        let outer_t = EOuter::new_in(s);
        for o in 0..n {
            objs[o].a.set(s, fields_a[o].map(|a| objs[a]));
            objs[o].t.set(s, fields_t[o].map(|t| tables[t]));
        }
        for &(t, k, v) in &entries {
            tables[t].insert(s, objs[k], ValueRef::Object(objs[v]));
        }
        for &(k, t) in &outer {
            outer_t.insert(s, objs[k], ValueRef::Object(tables[t]));
        }
        let weak_o: Vec<Weak<EObj>> = objs.iter().map(|&o| Weak::new(s, o)).collect();
        let weak_t: Vec<Weak<ETable>> = tables.iter().map(|&t| Weak::new(s, t)).collect();
        let mut roots_o: Vec<Root<EObj>> = root_objs.iter().map(|&o| s.root(objs[o])).collect();
        let roots_t: Vec<Root<ETable>> = root_tables.iter().map(|&t| s.root(tables[t])).collect();
        roots_o.shrink_to_fit();
        (weak_o, weak_t, (roots_o, roots_t, s.root(outer_t)))
    });
    m.collect();
    m.collect();
    let r = m.scope(|s| {
        for o in 0..n {
            let got = weak_o[o].get(s);
            if got.is_some() != live_o[o] {
                return Err(format!("object {o}: alive {} but the model says {}", got.is_some(), live_o[o]));
            }
            if let Some(g) = got {
                if g.id != o {
                    return Err(format!("object {o} reads as {}", g.id));
                }
            }
        }
        for t in 0..nt {
            let got = weak_t[t].get(s);
            if got.is_some() != live_t[t] {
                return Err(format!("table {t}: alive {} but the model says {}", got.is_some(), live_t[t]));
            }
            if let Some(tab) = got {
                for (&(tt, k), &v) in &last {
                    if tt == t && live_o[k] {
                        let key = weak_o[k].get(s).unwrap();
                        match tab.get(s, key) {
                            Some(ValueRef::Object(val)) if val.id == v => {}
                            other => return Err(format!("table {t} key {k}: {other:?}, want object {v}")),
                        }
                    }
                }
            }
        }
        Ok(())
    });
    drop(roots);
    r
}

fn e1(workers: usize, verify: bool, rounds: u64) -> Vec<(u64, String)> {
    let heap = builder(workers).verify(verify).gc_percent_off().build().unwrap();
    (0..rounds).filter_map(|seed| e1_round(&heap, 0x1234_5678 + seed * 7919).err().map(|e| (seed, e))).collect()
}

#[test]
fn e1_ephemerons_keep_values_exactly_while_keys_live() {
    let mut bad = Vec::new();
    for (w, v) in [(0, true), (1, true), (1, false)] {
        let errs = within(120, "e1", move || e1(w, v, 40));
        if !errs.is_empty() {
            bad.push((w, v, errs));
        }
    }
    assert!(bad.is_empty(), "{bad:?}");
}

// E2: the cost of ephemeron marking. (a) A chain through values' fields: entry i maps key K_i to
// V_i, and V_i's field points to K_{i+1}; only K_0 is rooted. Each link needs the markers to scan
// V_i before K_{i+1} is marked, so one termination round per link, and every round rescans every
// entry of every table and rebuilds the map of unresolved entries: O(links x entries).
fn e2_chain(workers: usize, links: usize) -> Duration {
    let heap = builder(workers).gc_percent_off().build().unwrap();
    let mut m = heap.attach();
    let (table, head) = m.scope(|s| {
        let t = ETable::new_in(s);
        let keys: Vec<_> = (0..=links).map(|id| s.alloc(EObj { id, a: Member::null(), t: Member::null() })).collect();
        // Insert in reverse so that no scan order helps.
        for i in (0..links).rev() {
            let v = s.alloc(EObj { id: i, a: Member::null(), t: Member::null() });
            v.a.set(s, Some(keys[i + 1]));
            t.insert(s, keys[i], ValueRef::Object(v));
        }
        (s.root(t), s.root(keys[0]))
    });
    let t0 = Instant::now();
    m.collect();
    let took = t0.elapsed();
    // Everything is still there: the last key is reachable only through the chain.
    m.scope(|s| {
        let t = table.get(s);
        let mut k = head.get(s);
        for _ in 0..links {
            match t.get(s, k) {
                Some(ValueRef::Object(v)) => k = v.a.get(s).unwrap(),
                other => panic!("chain broken: {other:?}"),
            }
        }
        assert_eq!(k.id, links);
    });
    took
}

#[test]
#[ignore = "known limit: an ephemeron chain that runs through values' fields resolves one link per termination round (quadratic in its length)"]
fn e2_ephemeron_chain_through_fields_is_quadratic() {
    let mut times = Vec::new();
    for w in [1, 0] {
        for links in [1000, 2000, 4000] {
            let took = within(300, "e2", move || e2_chain(w, links));
            eprintln!("e2 workers {w}: a chain of {links} links through values' fields: collect took {took:?}");
            times.push((w, links, took));
        }
    }
    assert!(times.iter().all(|&(_, _, t)| t < Duration::from_secs(1)), "{times:?}");
}

// E3: a big ephemeron table (300,000 entries, keys alive) costs every termination round a full
// scan under the weak-read gate (closed) and the table's lock: weak reads and table operations of
// every thread wait for it. Measured as the longest weak-read / table stall seen by a thread that
// reads a `Weak` and looks up the table in a loop while cycles run.
fn e3(workers: usize, entries: usize) -> (Duration, Duration) {
    let heap = builder(workers).max_heap(1 << 30).build().unwrap();
    let mut m = heap.attach();
    let (table, keys, probe) = m.scope(|s| {
        let t = ETable::new_in(s);
        let keys = s.alloc_slice(entries, |_| Member::<EObj>::null());
        for i in 0..entries {
            let k = s.alloc(EObj { id: i, a: Member::null(), t: Member::null() });
            keys[i].set(s, Some(k));
            t.insert(s, k, ValueRef::Object(s.alloc(EObj { id: i, a: Member::null(), t: Member::null() })));
        }
        let p = s.alloc(EObj { id: 0, a: Member::null(), t: Member::null() });
        (s.root(t), s.root(keys), (s.root(p), Weak::new(s, p)))
    });
    let stop = Arc::new(AtomicBool::new(false));
    let churn = {
        let (heap, stop) = (heap.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut m = heap.attach();
            while !stop.load(Ordering::Relaxed) {
                m.scope(|s| {
                    for _ in 0..100 {
                        s.alloc_slice(512, |_| 0u64);
                    }
                });
            }
        })
    };
    let (mut worst_weak, mut worst_lookup) = (Duration::ZERO, Duration::ZERO);
    let t0 = Instant::now();
    let c0 = heap.stats().cycles;
    while t0.elapsed() < Duration::from_secs(3) {
        m.scope(|s| {
            let a = Instant::now();
            let p = probe.1.get(s).unwrap();
            worst_weak = worst_weak.max(a.elapsed());
            let k = keys.get(s)[7].get(s).unwrap();
            let b = Instant::now();
            let _ = table.get(s).get(s, k);
            worst_lookup = worst_lookup.max(b.elapsed());
            let _ = p;
        });
    }
    stop.store(true, Ordering::SeqCst);
    churn.join().unwrap();
    let cycles = heap.stats().cycles - c0;
    let max_mark = heap.stats().max_mark_time;
    eprintln!("e3 workers {workers}, {entries} entries: {cycles} cycles in 3 s, worst Weak::get {worst_weak:?}, worst WeakTable::get {worst_lookup:?}, max mark {max_mark:?}");
    (worst_weak.max(worst_lookup), max_mark)
}

#[test]
#[ignore = "known limit: weak reads wait while a termination round scans the weak tables, so a table of 300k entries stalls them for milliseconds"]
fn e3_a_big_table_stalls_weak_reads_every_termination_round() {
    let mut r = Vec::new();
    for w in [1, 0] {
        let small = within(60, "e3", move || e3(w, 1000));
        let big = within(120, "e3", move || e3(w, 300_000));
        r.push((w, small, big));
    }
    // weak.rs: a reader that meets the closed gate "waits for the round (microseconds)".
    assert!(
        r.iter().all(|&(_, _, (worst, _))| worst < Duration::from_millis(20)),
        "(workers, (worst read, max mark) small, big) = {r:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// P1: spurious exhaustion. A live list of 2.5 M nodes (about 1/4 of a 256 MiB reservation, slow to
// mark: pointer chasing), and one thread allocating garbage (4 KiB arrays, nothing live) as fast as
// it can. Assists stop after 200 µs each and the CPU limiter may turn them off, so allocation
// outruns marking; nothing makes an allocation that finds the reservation full wait for the
// running cycle (`Collector::alloc_slow` panics at once): "exhausted ... keep less alive" with a
// quarter of the heap live.
fn p1(workers: usize, nodes: usize) -> Option<String> {
    let heap = builder(workers).build().unwrap();
    let mut m = heap.attach();
    let _list = m.scope(|s| {
        let head = s.alloc(Node { value: 0, next: Member::null() });
        let mut cur = head;
        for i in 1..nodes {
            let n = s.alloc(Node { value: i as u64, next: Member::null() });
            cur.next.set(s, Some(n));
            cur = n;
        }
        s.root(head)
    });
    m.collect();
    let live = heap.stats().live_bytes;
    let t0 = Instant::now();
    let r = catch_unwind(AssertUnwindSafe(|| {
        while t0.elapsed() < Duration::from_secs(4) {
            m.scope(|s| {
                for _ in 0..64 {
                    s.alloc_slice(512, |_| 0u64);
                }
            });
        }
    }));
    let msg = r.err().map(|e| message_of(&*e));
    eprintln!("p1 workers {workers}: live {} MiB: {msg:?}; {}", live >> 20, heap.stats());
    msg
}

#[test]
#[ignore = "known limit: the pacer's goal is not capped by max_heap, so a heap with live data a quarter of its reservation can run out during a long mark"]
fn p1_allocation_outruns_marking_and_exhausts_a_heap_a_quarter_full() {
    let mut bad = Vec::new();
    for w in [1, 2] {
        if let Some(msg) = within(120, "p1", move || p1(w, 1_000_000)) {
            bad.push((w, msg));
        }
    }
    assert!(bad.is_empty(), "{bad:?}");
}

// P2: a large allocation during a sweep. The heap is nearly full of garbage (gc_percent off while
// it is made), then a cycle is started; while its sweep frees that garbage, a thread allocates
// large arrays. A large allocation never sweeps and never waits for the sweep in progress
// (`Memory::alloc_large` -> `new_span` -> `Exhausted`): it panics with nothing live.
fn p2(workers: usize) -> Option<String> {
    let heap = builder(workers).gc_percent_off().build().unwrap();
    let mut m = heap.attach();
    for _ in 0..7000 {
        m.scope(|s| {
            for _ in 0..1000 {
                s.alloc(Node { value: 1, next: Member::null() }); // 32-byte garbage: 214 MiB
            }
        });
    }
    for _ in 0..20 {
        m.scope(|s| {
            for _ in 0..1000 {
                s.alloc([0u64; 126]); // 1 KiB garbage
            }
        });
    }
    let before = heap.stats();
    heap.set_gc_percent(Some(100)).unwrap(); // the trigger has passed: a cycle starts now
    let r = catch_unwind(AssertUnwindSafe(|| {
        for _ in 0..200 {
            m.scope(|s| {
                s.alloc_slice(1 << 16, |_| 0u64); // 512 KiB, nothing kept
            });
        }
    }));
    let msg = r.err().map(|e| message_of(&*e));
    eprintln!("p2 workers {workers}: before {before}\n  {msg:?}; {}", heap.stats());
    msg
}

#[test]
fn p2_large_allocation_during_a_sweep_exhausts_a_heap_of_garbage() {
    let mut bad = Vec::new();
    for w in [1, 0] {
        if let Some(msg) = within(60, "p2", move || p2(w)) {
            bad.push((w, msg));
        }
    }
    assert!(bad.is_empty(), "{bad:?}");
}

// ---------------------------------------------------------------------------------------------
// R1: roots that move between unattached threads in every phase. The only references to a set of
// two-node structures are `Root`s in a shared pool; unattached threads take one out, clone it,
// drop the original and put the clone back (so the structure's only root is born and dies outside
// every scope), destructors of garbage clone and drop pool roots too, and finalizers of garbage
// resurrect into the pool; meanwhile cycles run back to back (allocation and collect) and an
// attached checker reads every structure. Any miss shows as a wrong value (or a valgrind error).

#[derive(Trace)]
struct RObj {
    id: u64,
    check: u64,
    child: Member<RObj>,
}
fn r1_check(id: u64) -> u64 {
    id.wrapping_mul(0x2545_f491_4f6c_dd1d) ^ 0x5555
}
static R1_POOL: Mutex<Vec<Option<Root<RObj>>>> = Mutex::new(Vec::new());
static R1_BAD: AtomicUsize = AtomicUsize::new(0);

fn r1_shuffle(seed: &mut u64) {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    let taken = {
        let mut p = R1_POOL.lock().unwrap();
        let n = p.len();
        if n == 0 {
            return;
        }
        let i = (*seed % n as u64) as usize;
        p[i].take().map(|r| (i, r))
    };
    if let Some((i, r)) = taken {
        let c = r.clone();
        drop(r);
        R1_POOL.lock().unwrap()[i] = Some(c);
    }
}

struct R1Garbage(u64);
// SAFETY: holds no GC reference.
unsafe impl Trace for R1Garbage {
    const NEEDS_TRACE: bool = false;
    fn trace(&self, _: &mut Tracer<'_>) {}
}
impl Drop for R1Garbage {
    fn drop(&mut self) {
        let mut seed = self.0 | 1;
        for _ in 0..4 {
            r1_shuffle(&mut seed);
        }
    }
}

fn r1(workers: usize, verify: bool, secs: u64) -> usize {
    R1_BAD.store(0, Ordering::SeqCst);
    let heap = builder(workers).verify(verify).build().unwrap();
    let mut m = heap.attach();
    let n = 64u64;
    m.scope(|s| {
        let mut p = R1_POOL.lock().unwrap();
        p.clear();
        for id in 0..n {
            let a = s.alloc(RObj { id, check: r1_check(id), child: Member::null() });
            let b = s.alloc(RObj { id: id + 1000, check: r1_check(id + 1000), child: Member::null() });
            a.child.set(s, Some(b));
            p.push(Some(s.root(a)));
        }
    });
    let stop = Arc::new(AtomicBool::new(false));
    let mut hs = Vec::new();
    for t in 0..3u64 {
        let stop = stop.clone();
        hs.push(std::thread::spawn(move || {
            let mut seed = 0x9e37_79b9 ^ ((t + 1) * 7777);
            while !stop.load(Ordering::Relaxed) {
                r1_shuffle(&mut seed);
            }
        }));
    }
    {
        // Garbage with destructors and finalizers that move pool roots, and cycles by allocation.
        let (heap, stop) = (heap.clone(), stop.clone());
        hs.push(std::thread::spawn(move || {
            let mut m = heap.attach();
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                m.scope(|s| {
                    for k in 0..50 {
                        s.alloc(R1Garbage(i * 100 + k));
                    }
                    let g = s.alloc(RObj { id: 5000 + i, check: r1_check(5000 + i), child: Member::null() });
                    s.set_finalizer(g, |_heap, root| {
                        // Resurrect into the pool, displacing a structure root (dropped here,
                        // outside every scope).
                        let mut p = R1_POOL.lock().unwrap();
                        if p.is_empty() {
                            // The run is over (the pool was cleared) and this finalizer ran late.
                            return;
                        }
                        let k = (root.clone(), p.len());
                        let _old = p[(k.1 / 2) % k.1].take();
                        drop(p);
                        let mut seed = 77;
                        r1_shuffle(&mut seed);
                        drop(k.0);
                        drop(root);
                    });
                    for _ in 0..20 {
                        s.alloc_slice(1024, |_| 0u64);
                    }
                });
                if i % 20 == 0 {
                    m.collect();
                }
            }
        }));
    }
    let t0 = Instant::now();
    let mut checks = 0;
    while t0.elapsed() < Duration::from_secs(secs) {
        let snapshot: Vec<Root<RObj>> = R1_POOL.lock().unwrap().iter().flatten().cloned().collect();
        m.scope(|s| {
            for r in &snapshot {
                let a = r.get(s);
                let ok = a.check == r1_check(a.id)
                    && match a.child.get(s) {
                        Some(b) => b.id == a.id + 1000 && b.check == r1_check(b.id),
                        None => a.id >= 5000,
                    };
                if !ok {
                    R1_BAD.fetch_add(1, Ordering::SeqCst);
                }
                checks += 1;
            }
        });
        drop(snapshot);
    }
    stop.store(true, Ordering::SeqCst);
    for h in hs {
        h.join().unwrap();
    }
    R1_POOL.lock().unwrap().clear();
    let bad = R1_BAD.load(Ordering::SeqCst);
    eprintln!("r1 workers {workers} verify {verify}: {checks} checks, {bad} bad; {}", heap.stats());
    assert_heap_usable(&heap, &mut m);
    bad
}

#[test]
fn r1_roots_born_and_dropped_outside_every_scope_in_every_phase() {
    let _g = serial();
    let secs = std::env::var("ATTACK4_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(4);
    for (w, v) in [(1, false), (0, false), (1, true), (0, true)] {
        let bad = within(120, "r1", move || r1(w, v, secs));
        assert_eq!(bad, 0, "workers {w} verify {v}");
    }
}

// ---------------------------------------------------------------------------------------------
// T1: teardown while drop threads run, spawn and retire: garbage whose destructors are slow
// (15 ms: more drop threads are started) is queued by cycles, and the last handle is dropped at
// once, from the user's thread. Every destructor must run exactly once, soon, and every thread of
// the heap must exit.

static T1_RUNS: [AtomicU64; 4096] = [const { AtomicU64::new(0) }; 4096];
static T1_NEXT: AtomicUsize = AtomicUsize::new(0);
#[derive(Trace)]
struct T1Obj {
    id: usize,
    slow: bool,
}
impl Drop for T1Obj {
    fn drop(&mut self) {
        if self.slow {
            std::thread::sleep(Duration::from_millis(15));
        }
        T1_RUNS[self.id].fetch_add(1, Ordering::SeqCst);
    }
}

fn t1_round(workers: usize, round: usize) -> Result<(), String> {
    T1_NEXT.store(0, Ordering::SeqCst);
    for r in &T1_RUNS {
        r.store(0, Ordering::SeqCst);
    }
    let heap = builder(workers).build().unwrap();
    let mut m = heap.attach();
    for k in 0..8 {
        m.scope(|s| {
            for j in 0..200 {
                let id = T1_NEXT.fetch_add(1, Ordering::SeqCst);
                s.alloc(T1Obj { id, slow: j == 0 && k % 2 == 0 });
            }
        });
        cycles_by_allocation(&mut m, 1);
    }
    // A few more live ones for teardown itself.
    let keep = m.scope(|s| {
        let id = T1_NEXT.fetch_add(1, Ordering::SeqCst);
        s.root(s.alloc(T1Obj { id, slow: true }))
    });
    if round % 2 == 0 {
        std::thread::sleep(Duration::from_millis(round as u64 % 20));
    }
    drop(keep);
    drop(m);
    drop(heap);
    let n = T1_NEXT.load(Ordering::SeqCst);
    let t0 = Instant::now();
    while T1_RUNS[..n].iter().any(|r| r.load(Ordering::SeqCst) == 0) {
        if t0.elapsed() > Duration::from_secs(10) {
            let missing = T1_RUNS[..n].iter().filter(|r| r.load(Ordering::SeqCst) == 0).count();
            return Err(format!("round {round}: {missing} of {n} destructors never ran"));
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let twice = T1_RUNS[..n].iter().filter(|r| r.load(Ordering::SeqCst) > 1).count();
    if twice > 0 {
        return Err(format!("round {round}: {twice} destructors ran twice"));
    }
    Ok(())
}

#[test]
fn t1_teardown_while_drop_threads_run_and_spawn() {
    teardown_rounds("t1", 30, t1_round);
}

// T2: a destructor on a drop thread drops the heap's last handle (taken from a static) while other
// drop threads are inside slow destructors and more are being started; the destructor then also
// joins a thread it spawned that attaches to the heap, allocates and collects. Every object is
// dropped exactly once and every heap thread exits.
static T2_HEAP: Mutex<Option<Heap>> = Mutex::new(None);
#[derive(Trace)]
struct T2Obj {
    id: usize,
    kind: u8,
}
impl Drop for T2Obj {
    fn drop(&mut self) {
        match self.kind {
            1 => std::thread::sleep(Duration::from_millis(20)),
            2 => {
                let h = T2_HEAP.lock().unwrap().take();
                if let Some(h) = h {
                    // A helper uses the heap while this destructor waits for it.
                    let h2 = h.clone();
                    let helper = std::thread::spawn(move || {
                        let mut m = h2.attach();
                        m.scope(|s| {
                            s.alloc(T2Obj { id: 4095, kind: 0 });
                            s.alloc_slice(1 << 16, |_| 0u64);
                        });
                        m.collect();
                    });
                    helper.join().unwrap();
                    drop(h); // perhaps the last handle, on a drop thread
                }
            }
            _ => {}
        }
        T1_RUNS[self.id].fetch_add(1, Ordering::SeqCst);
    }
}

fn t2_round(workers: usize, round: usize) -> Result<(), String> {
    for r in &T1_RUNS {
        r.store(0, Ordering::SeqCst);
    }
    let heap = builder(workers).build().unwrap();
    {
        let mut m = heap.attach();
        let mut id = 0;
        for k in 0..6 {
            m.scope(|s| {
                for j in 0..100 {
                    let kind = if j == 0 {
                        1
                    } else if k == 3 && j == 50 {
                        2
                    } else {
                        0
                    };
                    s.alloc(T2Obj { id, kind });
                    id += 1;
                }
            });
            cycles_by_allocation(&mut m, 1);
        }
        m.scope(|s| {
            for _ in 0..100 {
                s.alloc(T2Obj { id, kind: 0 }); // dropped at teardown, or by a cycle
                id += 1;
            }
        });
        *T2_HEAP.lock().unwrap() = Some(heap.clone());
        if round % 3 == 0 {
            cycles_by_allocation(&mut m, 1);
        }
    }
    drop(heap); // the static's handle may now be the last one
    let t0 = Instant::now();
    loop {
        let missing = T1_RUNS[..700].iter().filter(|r| r.load(Ordering::SeqCst) == 0).count();
        if missing == 0 {
            break;
        }
        if t0.elapsed() > Duration::from_secs(10) {
            // The kind-2 object may never have been found dead if the heap went first: then the
            // static holds the heap and nothing is torn down. Take it back and drop it here.
            if let Some(h) = T2_HEAP.lock().unwrap().take() {
                drop(h);
                continue;
            }
            return Err(format!("round {round}: {missing} of 700 destructors never ran"));
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let twice = T1_RUNS[..700].iter().filter(|r| r.load(Ordering::SeqCst) > 1).count();
    if twice > 0 {
        return Err(format!("round {round}: {twice} ran twice"));
    }
    Ok(())
}

#[test]
fn t2_last_handle_dropped_by_a_destructor_while_other_drop_threads_run() {
    teardown_rounds("t2", 12, t2_round);
}

/// Runs `round(workers, i)` for `rounds` rounds on a concurrent and a synchronous heap, asserts
/// that no round failed, and that every heap thread exited afterwards.
fn teardown_rounds(what: &'static str, rounds: usize, round: fn(usize, usize) -> Result<(), String>) {
    let _g = serial();
    let before = threads_named("lowpause");
    let r = within(300, what, move || {
        let mut errs = Vec::new();
        for i in 0..rounds {
            for w in [1, 0] {
                if let Err(e) = round(w, i) {
                    errs.push((w, e));
                }
            }
        }
        errs
    });
    wait_until(10, "every heap thread exited", || threads_named("lowpause") <= before);
    assert!(r.is_empty(), "{r:?}");
}

// T3: teardown inside another heap's scope, many times over: heap A's last handle is dropped
// inside a scope of heap B, A's remaining objects' destructors wait for a thread that collects B
// (which waits for this thread's scope boundary), and the loop goes on at once. Every destructor
// runs, nothing hangs, and the teardown threads do not pile up.
static T3_DONE: AtomicUsize = AtomicUsize::new(0);
#[derive(Trace)]
struct T3Obj(u64);
impl Drop for T3Obj {
    fn drop(&mut self) {
        if self.0 == 0 {
            // Wait (bounded) for the collector of B to have collected once more.
            let c0 = T3_COLLECTS.load(Ordering::SeqCst);
            let t0 = Instant::now();
            while T3_COLLECTS.load(Ordering::SeqCst) == c0 && t0.elapsed() < Duration::from_secs(5) {
                std::thread::sleep(Duration::from_micros(200));
            }
            if T3_COLLECTS.load(Ordering::SeqCst) == c0 {
                T3_TIMEOUTS.fetch_add(1, Ordering::SeqCst);
            }
        }
        T3_DONE.fetch_add(1, Ordering::SeqCst);
    }
}
static T3_COLLECTS: AtomicUsize = AtomicUsize::new(0);
static T3_TIMEOUTS: AtomicUsize = AtomicUsize::new(0);

fn t3(wa: usize, wb: usize, rounds: usize) -> (usize, usize, usize) {
    T3_DONE.store(0, Ordering::SeqCst);
    T3_TIMEOUTS.store(0, Ordering::SeqCst);
    let b = builder(wb).build().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let collector = {
        let (b, stop) = (b.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut m = b.attach();
            while !stop.load(Ordering::SeqCst) {
                m.collect();
                T3_COLLECTS.fetch_add(1, Ordering::SeqCst);
            }
        })
    };
    let mut mb = b.attach();
    let mut max_teardown_threads = 0;
    for _ in 0..rounds {
        let a = builder(wa).build().unwrap();
        let keep = a.attach().scope(|s| {
            for i in 0..50 {
                s.alloc(T3Obj(i));
            }
            s.root(s.alloc(T3Obj(0)))
        });
        mb.scope(|s| {
            s.alloc(7u64);
            drop(keep);
            drop(a); // teardown of A, inside B's scope
        });
        max_teardown_threads = max_teardown_threads.max(threads_named("lowpause-teard"));
    }
    wait_until(30, "every teardown finished", || T3_DONE.load(Ordering::SeqCst) == rounds * 51);
    stop.store(true, Ordering::SeqCst);
    collector.join().unwrap();
    assert_heap_usable(&b, &mut mb);
    let r = (T3_DONE.load(Ordering::SeqCst), T3_TIMEOUTS.load(Ordering::SeqCst), max_teardown_threads);
    eprintln!("t3 wa {wa} wb {wb}: {r:?}");
    r
}

#[test]
fn t3_teardowns_inside_another_heaps_scope_in_a_loop() {
    let _g = serial();
    for (wa, wb) in [(0, 0), (1, 1), (0, 1), (1, 0)] {
        let (done, timeouts, threads) = within(120, "t3", move || t3(wa, wb, 100));
        assert_eq!((done, timeouts), (100 * 51, 0), "wa {wa} wb {wb}");
        assert!(threads < 20, "{threads} teardown threads at once");
    }
}

// ---------------------------------------------------------------------------------------------
// F1: weak reads from many threads while the verifier runs (the gate stays closed for the whole
// verification), with failed marks mixed in (a trace that panics now and then), idle workers at
// the lowest priority and CPU hogs competing for the 2 CPUs. Weak reads must neither hang nor
// answer wrongly: a rooted target always reads back as itself; a dead one never reads as anything
// else. Every collect must return within seconds.

static F1_PANICKY: AtomicBool = AtomicBool::new(false);
static F1_N: AtomicU64 = AtomicU64::new(1);
struct F1Obj {
    id: u64,
    next: Member<F1Obj>,
}
// SAFETY: visits its only reference (unless it panics, on purpose, now and then).
unsafe impl Trace for F1Obj {
    const NEEDS_TRACE: bool = true;
    fn trace(&self, t: &mut Tracer<'_>) {
        if F1_PANICKY.load(Ordering::Relaxed) && F1_N.fetch_add(1, Ordering::Relaxed) % 700_001 == 0 {
            panic!("f1: trace panic");
        }
        self.next.trace(t);
    }
}

fn f1(workers: usize, idle: usize) -> (usize, Duration, Stats) {
    let heap = builder(workers).idle_workers(idle).verify(true).build().unwrap();
    let mut m = heap.attach();
    // A live list of 100,000 (verification re-traces it every cycle).
    let (_list, probes) = m.scope(|s| {
        let head = s.alloc(F1Obj { id: 0, next: Member::null() });
        let mut cur = head;
        let mut probes = Vec::new();
        for i in 1..100_000u64 {
            let n = s.alloc(F1Obj { id: i, next: Member::null() });
            cur.next.set(s, Some(n));
            cur = n;
            if i % 10_000 == 0 {
                probes.push((i, Weak::new(s, n)));
            }
        }
        (s.root(head), probes)
    });
    let probes = Arc::new(probes);
    F1_PANICKY.store(true, Ordering::SeqCst);
    let stop = Arc::new(AtomicBool::new(false));
    let bad = Arc::new(AtomicUsize::new(0));
    let mut hs = Vec::new();
    for _ in 0..3 {
        let (heap, stop, bad, probes) = (heap.clone(), stop.clone(), bad.clone(), probes.clone());
        hs.push(std::thread::spawn(move || {
            let mut m = heap.attach();
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                m.scope(|s| {
                    for (id, w) in probes.iter() {
                        if w.get(s).map(|o| o.id) != Some(*id) {
                            bad.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                    let g = s.alloc(F1Obj { id: 1 << 40 | i, next: Member::null() });
                    let wg = Weak::new(s, g);
                    s.alloc_slice(64, |_| 0u64);
                    (g.id, wg)
                });
                // (Unthrottled, these threads outrun the verifying collector and exhaust the
                // reservation: P1.)
                std::thread::sleep(Duration::from_micros(20));
            }
        }));
    }
    for _ in 0..2 {
        let stop = stop.clone();
        hs.push(std::thread::spawn(move || {
            let mut x = 0u64;
            while !stop.load(Ordering::Relaxed) {
                x = x.wrapping_mul(31).wrapping_add(1);
                std::hint::black_box(x);
            }
        }));
    }
    let mut worst = Duration::ZERO;
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(4) {
        let a = Instant::now();
        m.collect();
        worst = worst.max(a.elapsed());
    }
    stop.store(true, Ordering::SeqCst);
    for h in hs {
        h.join().unwrap();
    }
    F1_PANICKY.store(false, Ordering::SeqCst);
    assert_heap_usable(&heap, &mut m);
    let st = heap.stats();
    eprintln!("f1 workers {workers} idle {idle}: bad {}, worst collect {worst:?}; {st}", bad.load(Ordering::SeqCst));
    (bad.load(Ordering::SeqCst), worst, st)
}

#[test]
fn f1_weak_reads_during_verification_and_failed_marks_with_starved_idle_workers() {
    let _g = serial();
    let prev = std::panic::take_hook();
    std::panic::set_hook(Box::new(|info| {
        if !info.to_string().contains("f1: trace panic") {
            eprintln!("{info}");
        }
    }));
    let mut r = Vec::new();
    for (w, i) in [(1, 2), (0, 0), (2, 4)] {
        r.push((w, i, within(120, "f1", move || f1(w, i))));
    }
    std::panic::set_hook(prev);
    for (w, i, (bad, worst, st)) in &r {
        assert_eq!(*bad, 0, "workers {w} idle {i}");
        assert!(*worst < Duration::from_secs(3), "workers {w} idle {i}: a collect took {worst:?}");
        assert!(st.failed_cycles > 0, "workers {w} idle {i}: no failed cycle");
    }
}

// ---------------------------------------------------------------------------------------------
// C1: `collect`'s cycle's garbage split into many batches, taken partly by several drop threads
// (started earlier by slow destructors and not yet retired) and partly by `collect` itself. When
// `collect` returns, every destructor of that garbage must have run (gc_percent off: only this
// `collect` starts cycles, so all of it dies in the cycle `collect` waits for).

const C1_N: usize = 60_000;
static C1_RAN: [AtomicBool; C1_N] = [const { AtomicBool::new(false) }; C1_N];
#[derive(Trace)]
struct C1Obj {
    id: usize,
    sleep_us: u64,
    _pad: [u64; 2],
}
impl Drop for C1Obj {
    fn drop(&mut self) {
        if self.sleep_us > 0 {
            std::thread::sleep(Duration::from_micros(self.sleep_us));
        }
        if self.id < C1_N {
            C1_RAN[self.id].store(true, Ordering::SeqCst);
        }
    }
}

fn c1(workers: usize) -> (usize, usize) {
    for f in &C1_RAN {
        f.store(false, Ordering::SeqCst);
    }
    let heap = builder(workers).gc_percent_off().build().unwrap();
    let mut m = heap.attach();
    // Warm up: slow destructors in separate cycles start more drop threads.
    for _ in 0..4 {
        m.scope(|s| {
            s.alloc(C1Obj { id: usize::MAX, sleep_us: 40_000, _pad: [0; 2] });
        });
        heap.set_gc_percent(Some(1)).unwrap();
        m.scope(|s| {
            s.alloc_slice(1 << 16, |_| 0u64);
        });
        std::thread::sleep(Duration::from_millis(15));
        heap.set_gc_percent(None).unwrap();
    }
    let threads = threads_named("lowpause-drop");
    m.scope(|s| {
        for id in 0..C1_N {
            s.alloc(C1Obj { id, sleep_us: if id % 5000 == 0 { 3000 } else { 0 }, _pad: [0; 2] });
        }
    });
    m.collect();
    let missing = C1_RAN.iter().filter(|f| !f.load(Ordering::SeqCst)).count();
    eprintln!("c1 workers {workers}: {threads} drop threads; {missing} of {C1_N} destructors had not run when collect returned");
    (threads, missing)
}

#[test]
fn c1_collect_waits_for_its_cycles_batches_split_among_drop_threads() {
    let _g = serial();
    for w in [1, 0] {
        let (_threads, missing) = within(60, "c1", move || c1(w));
        assert_eq!(missing, 0, "workers {w}");
    }
}

// D4: the blocker and the garbage die in the same cycle but lie in different batches of its sweep
// (more than 64 spans: the sweep queues a batch per 64). The later batches are queued within
// microseconds, before the drop thread has been stuck for 10 ms, so no thread is started; after
// that the program queues no more drop glue (it allocates and collects only plain data), and
// nothing ever starts another drop thread: the garbage waits for the blocked destructor, and
// `collect` (which runs only its own cycle's batches) does not help.
static D4_RELEASE: AtomicBool = AtomicBool::new(false);
static D4_BLOCKED: AtomicBool = AtomicBool::new(false);
static D4_DROPPED: AtomicUsize = AtomicUsize::new(0);
/// Garbage with drop glue; one object in 1000 blocks (so the first batch the drop thread takes
/// surely holds a blocker, whatever order the sweep takes spans in).
#[derive(Trace)]
struct D4Garbage(u64, [u64; 119]);
impl Drop for D4Garbage {
    fn drop(&mut self) {
        if self.0 % 1000 == 999 {
            D4_BLOCKED.store(true, Ordering::SeqCst);
            let t0 = Instant::now();
            while !D4_RELEASE.load(Ordering::SeqCst) && t0.elapsed() < Duration::from_secs(30) {
                std::thread::sleep(Duration::from_millis(1));
            }
        } else {
            D4_DROPPED.fetch_add(1, Ordering::SeqCst);
        }
    }
}

fn d4(workers: usize) -> usize {
    D4_RELEASE.store(false, Ordering::SeqCst);
    D4_BLOCKED.store(false, Ordering::SeqCst);
    D4_DROPPED.store(0, Ordering::SeqCst);
    let heap = builder(workers).gc_percent_off().build().unwrap();
    let mut m = heap.attach();
    m.scope(|s| {
        for i in 0..8000 {
            s.alloc(D4Garbage(i, [0; 119])); // about 200 spans, 8 blockers
        }
    });
    // One cycle by allocation finds them all dead; the drop thread takes the first batch.
    heap.set_gc_percent(Some(100)).unwrap();
    wait_until(20, "the blocker started", || {
        m.scope(|s| {
            s.alloc_slice(1 << 10, |_| 0u64);
        });
        D4_BLOCKED.load(Ordering::SeqCst)
    });
    let at_block = D4_DROPPED.load(Ordering::SeqCst);
    std::thread::sleep(Duration::from_millis(100));
    eprintln!(
        "d4 workers {workers}: {at_block} dropped when the blocker started, {} 100 ms later, {} drop threads",
        D4_DROPPED.load(Ordering::SeqCst),
        threads_named("lowpause-drop")
    );
    // Plain garbage and collects for 3 s: no drop glue queued.
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(3) {
        cycles_by_allocation(&mut m, 1);
        m.collect();
    }
    let dropped = D4_DROPPED.load(Ordering::SeqCst);
    eprintln!(
        "d4 workers {workers}: {dropped} of 7992 destructors ran in 3 s behind one blocked destructor; {}",
        heap.stats()
    );
    D4_RELEASE.store(true, Ordering::SeqCst);
    dropped
}

#[test]
fn d4_later_batches_of_the_blockers_sweep_wait_when_no_more_drop_glue_comes() {
    let _g = serial();
    let mut r = Vec::new();
    for w in [1, 0] {
        r.push((w, within(60, "d4", move || d4(w))));
    }
    // Everything but the batch holding the first blocker (at most 64 spans, 2560 objects).
    assert!(r.iter().all(|&(_, d)| d >= 7992 - 2560), "(workers, destructors run of 7992) = {r:?}");
}

// E4: ephemeron tables under concurrent mutation while cycles run: threads keep a ring of keys
// alive through a rooted array, map each key to a fresh value in one of three shared tables (the
// value is often itself a key of another table, forming chains across tables, and a table is
// itself the value of an entry of an outer table), replace and remove entries, drop keys, and read
// every entry they expect back, checking the value's canary. A value whose key is alive must never
// be freed; an entry whose key died must disappear.
#[derive(Trace)]
struct E4Obj {
    id: u64,
    canary: u64,
    next: Member<E4Obj>,
}
fn e4_canary(id: u64) -> u64 {
    id.rotate_left(17) ^ 0xa5a5_a5a5_a5a5_a5a5
}
type E4Table = WeakTable<E4Obj, E4Obj>;
type E4Outer = WeakTable<E4Obj, E4Table>;

fn e4(workers: usize, verify: bool, secs: u64) -> usize {
    let heap = builder(workers).verify(verify).build().unwrap();
    let mut m = heap.attach();
    // Three tables: the first two rooted, the third reachable only as the value of the outer
    // table's entry under a rooted key.
    let (tables, outer, outer_key) = m.scope(|s| {
        let t: Vec<_> = (0..3).map(|_| E4Table::new_in(s)).collect();
        let o = E4Outer::new_in(s);
        let k = s.alloc(E4Obj { id: 0, canary: e4_canary(0), next: Member::null() });
        o.insert(s, k, ValueRef::Object(t[2]));
        (vec![s.root(t[0]), s.root(t[1])], s.root(o), s.root(k))
    });
    let (tables, outer, outer_key) = (Arc::new(tables), Arc::new(outer), Arc::new(outer_key));
    let bad = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut hs = Vec::new();
    for t in 0..3u64 {
        let (heap, tables, outer, outer_key, bad, stop) =
            (heap.clone(), tables.clone(), outer.clone(), outer_key.clone(), bad.clone(), stop.clone());
        hs.push(std::thread::spawn(move || {
            let mut m = heap.attach();
            let ring = m.scope(|s| s.root(s.alloc_slice(64, |_| Member::<E4Obj>::null())));
            let mut n = t << 48;
            let mut i = 0usize;
            while !stop.load(Ordering::Relaxed) {
                m.scope(|s| {
                    let tabs = [
                        tables[0].get(s),
                        tables[1].get(s),
                        match outer.get(s).get(s, outer_key.get(s)) {
                            Some(ValueRef::Object(t)) => t,
                            other => {
                                bad.fetch_add(1, Ordering::SeqCst);
                                eprintln!("e4: the outer table lost its table: {other:?}");
                                return;
                            }
                        },
                    ];
                    let ring = ring.get(s);
                    for _ in 0..20 {
                        i = (i + 1) % 64;
                        let tab = tabs[i % 3];
                        // Check what the slot's key maps to: its value, then the chain on.
                        if let Some(k) = ring[i].get(s) {
                            match tab.get(s, k) {
                                Some(ValueRef::Object(v)) => {
                                    let ok = v.canary == e4_canary(v.id) && v.id == k.id + 1;
                                    // The value is the key of an entry in the next table.
                                    let ok2 = match tabs[(i + 1) % 3].get(s, v) {
                                        Some(ValueRef::Object(w)) => w.canary == e4_canary(w.id) && w.id == v.id + 1,
                                        None => true, // removed by its thread meanwhile? never: only we write ours
                                        Some(_) => false,
                                    };
                                    if !(ok && ok2) {
                                        bad.fetch_add(1, Ordering::SeqCst);
                                        eprintln!("e4: a value of a live key is wrong ({ok}, {ok2})");
                                    }
                                }
                                other => {
                                    bad.fetch_add(1, Ordering::SeqCst);
                                    eprintln!("e4: a live key's entry is gone: {other:?}");
                                }
                            }
                            if n % 3 == 0 {
                                tab.remove(s, k);
                            }
                        }
                        // A new key with a two-link chain of values (only the tables hold them).
                        n += 3;
                        let k = s.alloc(E4Obj { id: n, canary: e4_canary(n), next: Member::null() });
                        let v = s.alloc(E4Obj { id: n + 1, canary: e4_canary(n + 1), next: Member::null() });
                        let w = s.alloc(E4Obj { id: n + 2, canary: e4_canary(n + 2), next: Member::null() });
                        tab.insert(s, k, ValueRef::Object(v));
                        tabs[(i + 1) % 3].insert(s, v, ValueRef::Object(w));
                        ring[i].set(s, Some(k));
                    }
                    s.alloc_slice(512, |_| 0u64);
                });
            }
        }));
    }
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(secs) {
        m.collect();
        std::thread::sleep(Duration::from_millis(5));
    }
    stop.store(true, Ordering::SeqCst);
    for h in hs {
        h.join().unwrap();
    }
    // Entries of dead keys disappear: with the rings gone (threads ended), collect twice.
    m.collect();
    m.collect();
    let sizes = m.scope(|s| (tables[0].get(s).len(), tables[1].get(s).len()));
    let b = bad.load(Ordering::SeqCst);
    eprintln!("e4 workers {workers} verify {verify}: {b} bad; table sizes after {sizes:?}; {}", heap.stats());
    assert_eq!(sizes, (0, 0), "entries of dead keys were kept");
    b
}

#[test]
fn e4_ephemeron_tables_under_concurrent_mutation() {
    let secs = std::env::var("ATTACK4_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(4);
    for (w, v) in [(1, false), (0, false), (1, true)] {
        let bad = within(120, "e4", move || e4(w, v, secs));
        assert_eq!(bad, 0, "workers {w} verify {v}");
    }
}

//! The background threads run under the scheduling policies the design gives them: mark workers
//! (dedicated and fractional) as `SCHED_BATCH`, idle workers as `SCHED_IDLE`. Its own test binary,
//! so no other heap's threads are in the process.

use lowpause::{Heap, Member};

/// (thread name, scheduling policy) of every thread of this process.
fn threads() -> Vec<(String, i32)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc/self/task").unwrap() {
        let path = entry.unwrap().path();
        let tid: i32 = path.file_name().unwrap().to_str().unwrap().parse().unwrap();
        let Ok(name) = std::fs::read_to_string(path.join("comm")) else { continue };
        // SAFETY: sched_getscheduler only reads the policy of a thread id; a thread that exited
        // meanwhile yields -1.
        let policy = unsafe { libc::sched_getscheduler(tid) };
        out.push((name.trim().to_string(), policy));
    }
    out
}

#[test]
fn mark_workers_are_batch_and_idle_workers_are_idle_class() {
    let heap = Heap::builder().workers(1).idle_workers(2).build().unwrap();
    let mut m = heap.attach();
    let root = m.scope(|s| s.root(s.alloc_slice(10_000, |_| Member::<u64>::null())));
    m.scope(|s| {
        for slot in root.get(s).iter() {
            slot.set(s, Some(s.alloc(1)));
        }
    });
    // Cycles change the fractional worker's policy while it marks; it is back on duty after.
    m.collect();
    m.collect();
    std::thread::sleep(std::time::Duration::from_millis(50));
    let all = threads();
    let of = |prefix: &str| all.iter().filter(|(n, _)| n.starts_with(prefix)).map(|&(_, p)| p).collect::<Vec<_>>();
    assert_eq!(of("lowpause-mark"), vec![libc::SCHED_BATCH], "{all:?}");
    assert_eq!(of("lowpause-idle"), vec![libc::SCHED_IDLE; 2], "{all:?}");
    assert_eq!(of("lowpause-coord"), vec![libc::SCHED_OTHER], "{all:?}");
}

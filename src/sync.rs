//! The synchronisation facade: `std` atomics, locks and threads normally, `loom`'s under
//! `--cfg loom`, so the concurrency core can be model-checked (the way crossbeam does it).
//!
//! Everything in the collector that synchronises threads imports from here, never from `std`
//! directly. Locks are `parking_lot`'s outside loom (small, no poisoning: a panic inside a critical
//! section leaves the data as the code left it, and every critical section here is written so that
//! a panic cannot interrupt it half-way).

#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{fence, AtomicBool, AtomicPtr, AtomicU32, AtomicU64, AtomicUsize, Ordering};
#[cfg(not(loom))]
pub(crate) use std::sync::Arc;

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{fence, AtomicBool, AtomicPtr, AtomicU32, AtomicU64, AtomicUsize, Ordering};
#[cfg(loom)]
pub(crate) use loom::sync::Arc;

/// A mutex with `parking_lot`'s interface (`lock()` returns the guard directly).
#[cfg(not(loom))]
pub(crate) use parking_lot::{Condvar, Mutex, MutexGuard};

#[cfg(loom)]
mod loom_lock {
    /// `loom`'s mutex behind `parking_lot`'s interface.
    #[derive(Debug, Default)]
    pub(crate) struct Mutex<T>(loom::sync::Mutex<T>);
    pub(crate) type MutexGuard<'a, T> = loom::sync::MutexGuard<'a, T>;
    impl<T> Mutex<T> {
        pub(crate) fn new(t: T) -> Self {
            Mutex(loom::sync::Mutex::new(t))
        }
        pub(crate) fn lock(&self) -> MutexGuard<'_, T> {
            self.0.lock().unwrap()
        }
        pub(crate) fn try_lock(&self) -> Option<MutexGuard<'_, T>> {
            self.0.try_lock().ok()
        }
    }
    /// `loom`'s condition variable behind `parking_lot`'s interface.
    #[derive(Debug, Default)]
    pub(crate) struct Condvar(loom::sync::Condvar);
    impl Condvar {
        pub(crate) fn new() -> Self {
            Condvar(loom::sync::Condvar::new())
        }
        pub(crate) fn wait<T>(&self, guard: &mut MutexGuard<'_, T>) {
            // loom's condvar consumes the guard; swap it through a temporary.
            // SAFETY: the guard is read out and written back before anything else can observe
            // `*guard`; `wait` does not unwind in loom models.
            unsafe {
                let g = std::ptr::read(guard);
                let g = self.0.wait(g).unwrap();
                std::ptr::write(guard, g);
            }
        }
        pub(crate) fn notify_all(&self) {
            self.0.notify_all();
        }
        /// In models there is no time: a timed wait is a plain wait.
        pub(crate) fn wait_for<T>(&self, guard: &mut MutexGuard<'_, T>, _timeout: std::time::Duration) {
            self.wait(guard);
        }
    }
}
#[cfg(loom)]
pub(crate) use loom_lock::{Condvar, Mutex, MutexGuard};

/// One step of a bounded wait loop: spin briefly, then yield the CPU (loom: always yield).
#[inline]
pub(crate) fn spin_wait(step: u32) {
    #[cfg(loom)]
    {
        let _ = step;
        loom::thread::yield_now();
    }
    #[cfg(not(loom))]
    {
        if step < 64 {
            std::hint::spin_loop();
        } else {
            std::thread::yield_now();
        }
    }
}

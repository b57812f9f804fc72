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

/// Asymmetric fences: a [`light_fence`] on the hot side (a thread's write barrier) and a
/// [`heavy_fence`] on the rare side (the collector's termination round and the end of marking),
/// which together order like two `fence(SeqCst)`s: for a light-fenced `store x; light; load y` and
/// a heavy-fenced `store y; heavy; load x`, not both loads miss the other side's store.
///
/// Where Linux's `membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED)` is available, the light fence is
/// only a compiler fence and the heavy fence is that system call, which makes every CPU running a
/// thread of this process execute a full memory barrier before it returns (an inter-processor
/// interrupt). A thread that is not running has passed through the kernel, itself a full barrier.
/// This is the pair userspace RCU (`urcu-memb`) and folly's `asymmetricLightBarrier` use. Where it
/// is not available (another OS, an old kernel, a seccomp filter, or `LOWPAUSE_NO_MEMBARRIER=1` in
/// the environment), both are `fence(SeqCst)`. In loom models both are `fence(SeqCst)`: the models
/// check the protocol under the ordering the pair provides.
#[cfg(not(loom))]
mod asymmetric {
    use std::sync::atomic::{compiler_fence, fence, AtomicBool, Ordering};
    use std::sync::OnceLock;

    /// Set once, before any heap exists, when the system call registered: from then on light
    /// fences are compiler fences. A heap's collector (the only heavy side) is created after
    /// the set, so it sees it; a light fence that read `false` was a full fence.
    static EXPEDITED: AtomicBool = AtomicBool::new(false);
    static REGISTERED: OnceLock<bool> = OnceLock::new();

    const MEMBARRIER_CMD_QUERY: libc::c_int = 0;
    const MEMBARRIER_CMD_PRIVATE_EXPEDITED: libc::c_int = 1 << 3;
    const MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED: libc::c_int = 1 << 4;

    #[cfg(target_os = "linux")]
    fn membarrier(cmd: libc::c_int) -> libc::c_long {
        // SAFETY: membarrier takes two integers and touches no memory of ours.
        unsafe { libc::syscall(libc::SYS_membarrier, cmd, 0 as libc::c_uint, 0 as libc::c_int) }
    }

    #[cfg(target_os = "linux")]
    fn register() -> bool {
        if std::env::var_os("LOWPAUSE_NO_MEMBARRIER").is_some_and(|v| v != "0") {
            return false;
        }
        let supported = membarrier(MEMBARRIER_CMD_QUERY);
        supported >= 0
            && supported & libc::c_long::from(MEMBARRIER_CMD_PRIVATE_EXPEDITED) != 0
            && membarrier(MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED) == 0
    }

    #[cfg(not(target_os = "linux"))]
    fn register() -> bool {
        false
    }

    /// Registers the process for expedited membarriers if it can; idempotent. Called when a heap
    /// is built, before its collector exists. Returns whether light fences are compiler fences.
    pub(crate) fn init_asymmetric_fences() -> bool {
        *REGISTERED.get_or_init(|| {
            let ok = register();
            EXPEDITED.store(ok, Ordering::SeqCst);
            ok
        })
    }

    /// The hot side's fence: a compiler fence when the heavy side is a membarrier.
    #[inline(always)]
    pub(crate) fn light_fence() {
        if EXPEDITED.load(Ordering::Relaxed) {
            compiler_fence(Ordering::SeqCst);
        } else {
            fence(Ordering::SeqCst);
        }
    }

    /// The rare side's fence: every running thread of the process executes a full barrier before
    /// this returns.
    pub(crate) fn heavy_fence() {
        fence(Ordering::SeqCst);
        #[cfg(target_os = "linux")]
        if EXPEDITED.load(Ordering::Relaxed) {
            loop {
                match membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED) {
                    0 => break,
                    _ if std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) => {}
                    _ => {
                        // Registered, so this cannot fail; if it did, light fences that were
                        // compiler fences would order nothing, and marking could free live
                        // objects. Stop rather than risk it.
                        crate::telemetry::report(&format!(
                            "lowpause: membarrier failed after registration ({}); aborting",
                            std::io::Error::last_os_error()
                        ));
                        std::process::abort();
                    }
                }
            }
            fence(Ordering::SeqCst);
        }
    }
}

#[cfg(loom)]
mod asymmetric {
    use loom::sync::atomic::{fence, Ordering};
    use std::cell::Cell;

    std::thread_local! {
        /// Fences a model's twin removes (`LIGHT`, `HEAVY`), to show the model catches the bug
        /// each one guards. Per OS thread: loom runs a model's threads as coroutines on the test's
        /// own thread, and other tests run on other threads.
        static REMOVED: Cell<u8> = const { Cell::new(0) };
    }
    pub(crate) const LIGHT: u8 = 1;
    pub(crate) const HEAVY: u8 = 2;

    /// Runs `f` with the fences in `which` removed (a model's twin).
    pub(crate) fn without_fences<R>(which: u8, f: impl FnOnce() -> R) -> R {
        struct Reset;
        impl Drop for Reset {
            fn drop(&mut self) {
                REMOVED.with(|r| r.set(0));
            }
        }
        REMOVED.with(|r| r.set(which));
        let _reset = Reset;
        f()
    }

    pub(crate) fn init_asymmetric_fences() -> bool {
        false
    }

    /// In models, a full fence (the ordering the real pair provides).
    pub(crate) fn light_fence() {
        if REMOVED.with(|r| r.get()) & LIGHT == 0 {
            fence(Ordering::SeqCst);
        }
    }

    /// In models, a full fence.
    pub(crate) fn heavy_fence() {
        if REMOVED.with(|r| r.get()) & HEAVY == 0 {
            fence(Ordering::SeqCst);
        }
    }
}

pub(crate) use asymmetric::{heavy_fence, init_asymmetric_fences, light_fence};
#[cfg(loom)]
pub(crate) use asymmetric::{without_fences, HEAVY, LIGHT};

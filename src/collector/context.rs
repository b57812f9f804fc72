//! What the calling thread is doing, as far as the heap must know: how many scopes (of any heap)
//! it is inside, and whether it is running code on the collector's behalf — a GC object's drop
//! glue, a `Trace::trace` implementation, or a collector thread's own loop.
//!
//! The API layer reads this at its entry points, so that user code the collector runs can never
//! re-enter a heap (attach, open a scope, collect) and a thread inside a scope can never wait for
//! a whole cycle. Both would otherwise deadlock or break an invariant:
//! - a `trace` that opens a scope or collects runs inside a marker, which the cycle it would wait
//!   for is waiting on;
//! - a destructor that opens a scope could read objects the sweep is freeing;
//! - `collect` inside a scope of another heap waits for that heap's threads, while this thread's
//!   own heap waits for this thread's scope boundary: two threads doing this to each other hang.
//!
//! It also owns the panic plumbing for user code: [`contain`] runs a closure under
//! `catch_unwind` and discards the payload safely, even one whose own `Drop` panics (a payload
//! dropped outside `catch_unwind` would unwind out of the collector).
//!
//! Invariant kept here: the flags are per thread and restored on every exit path (guards), so a
//! panic contained anywhere leaves the thread's context as it was before.

use std::any::Any;
use std::cell::Cell;
use std::panic::{catch_unwind, AssertUnwindSafe};

/// Code the collector runs that is not its own.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum UserCode {
    /// The drop glue of a dead GC object.
    DropGlue,
    /// A `Trace::trace` implementation (marking, verifying, or clearing before drop glue).
    Trace,
    /// One of the collector's own threads (the coordinator, a mark worker; a drop thread between
    /// destructors).
    CollectorThread,
}

impl UserCode {
    /// What the thread is running, for messages.
    pub(crate) fn describe(self) -> &'static str {
        match self {
            UserCode::DropGlue => "the drop glue of a GC object",
            UserCode::Trace => "a `Trace::trace` implementation",
            UserCode::CollectorThread => "one of the collector's threads",
        }
    }
}

struct Context {
    scopes: Cell<u32>,
    user_code: Cell<Option<UserCode>>,
}

thread_local! {
    static CONTEXT: Context = const { Context { scopes: Cell::new(0), user_code: Cell::new(None) } };
}

/// What user code, if any, the calling thread is running for the collector.
#[inline]
pub(crate) fn user_code() -> Option<UserCode> {
    CONTEXT.with(|c| c.user_code.get())
}

/// Scopes (of any heap) the calling thread is inside.
#[inline]
pub(crate) fn scopes_open() -> u32 {
    CONTEXT.with(|c| c.scopes.get())
}

/// Marks the calling thread as running `code` until the guard is dropped (then restores what was
/// there before: the flags nest).
pub(crate) struct UserCodeGuard(Option<UserCode>);

impl UserCodeGuard {
    #[inline]
    pub(crate) fn enter(code: UserCode) -> UserCodeGuard {
        UserCodeGuard(CONTEXT.with(|c| c.user_code.replace(Some(code))))
    }
}

impl Drop for UserCodeGuard {
    #[inline]
    fn drop(&mut self) {
        let prev = self.0;
        CONTEXT.with(|c| c.user_code.set(prev));
    }
}

/// Counts a scope of the calling thread as open until dropped.
pub(crate) struct ScopeGuard(());

impl ScopeGuard {
    #[inline]
    pub(crate) fn enter() -> ScopeGuard {
        CONTEXT.with(|c| c.scopes.set(c.scopes.get() + 1));
        ScopeGuard(())
    }
}

impl Drop for ScopeGuard {
    #[inline]
    fn drop(&mut self) {
        CONTEXT.with(|c| c.scopes.set(c.scopes.get() - 1));
    }
}

/// The message of a caught panic (its `&str` or `String` payload).
pub(crate) fn panic_message(payload: &(dyn Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a non-string panic payload".into())
}

/// Drops a panic payload without letting a panic in its own `Drop` escape (such a second payload
/// is leaked: dropping it could panic again).
pub(crate) fn discard_payload(payload: Box<dyn Any + Send>) {
    if let Err(again) = catch_unwind(AssertUnwindSafe(move || drop(payload))) {
        std::mem::forget(again);
    }
}

/// Runs `f`, containing a panic: `Err(message)` if it panicked. The payload is discarded with
/// [`discard_payload`], so nothing unwinds out of here.
pub(crate) fn contain<R>(f: impl FnOnce() -> R) -> Result<R, String> {
    catch_unwind(AssertUnwindSafe(f)).map_err(|p| {
        let msg = panic_message(&*p);
        discard_payload(p);
        msg
    })
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    struct PanicsOnDrop;
    impl Drop for PanicsOnDrop {
        fn drop(&mut self) {
            panic!("the payload's own drop panics");
        }
    }

    #[test]
    fn a_payload_that_panics_when_dropped_is_contained() {
        let r = contain(|| std::panic::panic_any(PanicsOnDrop));
        assert_eq!(r.unwrap_err(), "a non-string panic payload");
        assert_eq!(contain(|| 7), Ok(7));
        assert_eq!(contain(|| panic!("plain {}", 1)).unwrap_err(), "plain 1");
    }

    #[test]
    fn flags_nest_and_are_restored_after_a_panic() {
        assert_eq!(user_code(), None);
        let r = contain(|| {
            let _a = UserCodeGuard::enter(UserCode::DropGlue);
            let _s = ScopeGuard::enter();
            {
                let _b = UserCodeGuard::enter(UserCode::Trace);
                assert_eq!(user_code(), Some(UserCode::Trace));
            }
            assert_eq!(user_code(), Some(UserCode::DropGlue));
            assert_eq!(scopes_open(), 1);
            panic!("unwind through both guards");
        });
        assert!(r.is_err());
        assert_eq!(user_code(), None);
        assert_eq!(scopes_open(), 0);
    }
}

//! Sweeping: turning unmarked objects back into free slots, running their drop glue first.
//!
//! Spans are swept once per cycle, after marking (the memory layer's `sweepgen` tracks which are
//! done). Spans whose objects have no drop glue are swept by their bitmaps alone, by whoever needs
//! one first — the collector, or an allocating thread in its slow path. Spans with drop glue are
//! swept only by the collector's sweep, outside every scope and holding no lock, because a
//! destructor is arbitrary user code.
//!
//! Before a dead object's drop glue runs, the sweeper *clears* it: every GC reference its `Trace`
//! visits is set to null. So a destructor sees only null `Member`s and cannot move a pointer to
//! another dead (or soon dead) object out of the heap. Each `drop_in_place` runs inside
//! `catch_unwind`: a panicking destructor is reported on stderr and counted, the sweep carries on,
//! and the object's memory is reclaimed (unwinding already dropped the fields it could).
//!
//! While drop glue runs, a thread-local flag is set; entering a scope or attaching checks it and
//! panics, so a destructor can never reach the heap.

use super::mark::Tracer;
use crate::object::{Header, HEADER_SIZE};
use std::cell::Cell;
use std::panic::{catch_unwind, AssertUnwindSafe};

thread_local! {
    static IN_DROP_GLUE: Cell<u32> = const { Cell::new(0) };
}

/// Whether the calling thread is running the drop glue of a GC object.
pub(crate) fn in_drop_glue() -> bool {
    IN_DROP_GLUE.with(|c| c.get() != 0)
}

struct DropGlueFlag;
impl DropGlueFlag {
    fn set() -> DropGlueFlag {
        IN_DROP_GLUE.with(|c| c.set(c.get() + 1));
        DropGlueFlag
    }
}
impl Drop for DropGlueFlag {
    fn drop(&mut self) {
        IN_DROP_GLUE.with(|c| c.set(c.get() - 1));
    }
}

/// The message of a caught panic (its `&str` or `String` payload).
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a non-string panic payload".into())
}

/// Clears and drops the dead object starting at `obj`. Returns false if its destructor panicked.
///
/// # Safety
/// `obj` is the start of an allocated, initialised object that no thread can reach any more, and
/// that nobody will read again.
pub(crate) unsafe fn finalize_dead(obj: usize) -> bool {
    let payload = obj + HEADER_SIZE;
    // SAFETY: the object is allocated and initialised (caller's guarantee).
    let h = unsafe { Header::of(payload) };
    let info = h.info;
    let len = h.len;
    if info.needs_trace {
        let mut t = Tracer::clearing();
        // SAFETY: the object is initialised; clearing only stores nulls into its references.
        unsafe { (info.trace)(payload as *const u8, len, &mut t) };
    }
    if !info.needs_drop {
        return true;
    }
    let _flag = DropGlueFlag::set();
    // SAFETY: the object is initialised and dead; this is the only time its drop glue runs.
    let r = catch_unwind(AssertUnwindSafe(|| unsafe { (info.drop)(payload as *mut u8, len) }));
    match r {
        Ok(()) => true,
        Err(payload) => {
            let msg = panic_message(&*payload);
            eprintln!(
                "lowpause: the destructor of a dead `{}` panicked ({msg}); the panic was contained \
                 and the object's memory reclaimed",
                (info.name)()
            );
            false
        }
    }
}

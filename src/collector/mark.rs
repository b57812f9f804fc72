//! Marking: the tracer, shading, and draining the grey set.
//!
//! Tri-colour terms: an object is *white* while its mark bit is clear, *grey* once its bit is set
//! and it sits on a grey stack waiting to be scanned, and *black* once scanned (or born marked, for
//! objects that need no scanning). `shade` turns white into grey; draining turns grey into black.
//! Objects of no-scan kinds go straight to black: setting their bit is all there is to do.
//!
//! Marking terminates when no grey object is left anywhere: the marker's stack, the shared queue
//! that barrier buffers and root operations flush into, and every thread's barrier buffer.
//!
//! The [`Tracer`] is what a `Trace` impl is handed. It has two modes: *mark* (shade every
//! reference it is shown) and *clear* (store null into every reference, used by the sweeper before
//! running a dead object's drop glue, so a destructor only ever sees null references).

use crate::memory::Memory;
use crate::object::{Header, HEADER_SIZE};
use crate::sync::{AtomicPtr, Ordering};

/// Visits the GC references of a value on behalf of the collector. Handed to [`Trace::trace`].
///
/// There is nothing to call on a `Tracer` from user code except passing it on: a hand-written
/// `Trace` impl calls `trace(tracer)` on each field.
///
/// ```
/// use lowpause::{Member, Trace, Tracer};
/// struct Pair { a: Member<u64>, b: Member<u64> }
/// // SAFETY: visits both fields, the only GC references of a Pair.
/// unsafe impl Trace for Pair {
///     const NEEDS_TRACE: bool = true;
///     fn trace(&self, tracer: &mut Tracer<'_>) {
///         self.a.trace(tracer);
///         self.b.trace(tracer);
///     }
/// }
/// ```
///
/// [`Trace::trace`]: crate::Trace::trace
pub struct Tracer<'a> {
    mode: Mode<'a>,
}

enum Mode<'a> {
    Mark(&'a mut Marker),
    Clear,
}

impl<'a> Tracer<'a> {
    pub(crate) fn marking(marker: &'a mut Marker) -> Tracer<'a> {
        Tracer { mode: Mode::Mark(marker) }
    }

    pub(crate) fn clearing() -> Tracer<'static> {
        Tracer { mode: Mode::Clear }
    }

    /// Visits one reference slot (the word inside a `Member`). Not for user code.
    #[doc(hidden)]
    #[inline]
    pub fn __edge(&mut self, slot: &AtomicPtr<u8>) {
        match &mut self.mode {
            Mode::Mark(m) => {
                let p = slot.load(Ordering::Acquire);
                if !p.is_null() {
                    m.shade(p as usize);
                }
            }
            Mode::Clear => slot.store(std::ptr::null_mut(), Ordering::Relaxed),
        }
    }
}

/// One marker's state: its grey stack and what it has marked.
///
/// It points to the heap's memory by raw pointer so that a `Tracer` needs one lifetime only; a
/// marker lives inside one collector call and never outlives the heap it marks.
pub(crate) struct Marker {
    mem: *const Memory,
    grey: Vec<usize>,
    /// Bytes (slot sizes) of the objects this marker turned from white to grey or black.
    pub(crate) marked_bytes: usize,
    pub(crate) marked_objects: usize,
}

impl Marker {
    pub(crate) fn new(mem: &Memory) -> Marker {
        Marker { mem, grey: Vec::with_capacity(1024), marked_bytes: 0, marked_objects: 0 }
    }

    /// Greys the object whose payload is at `payload`, if it is white.
    #[inline]
    pub(crate) fn shade(&mut self, payload: usize) {
        let obj = payload - HEADER_SIZE;
        // SAFETY: a marker never outlives the collector call that made it from a live heap.
        let mem = unsafe { &*self.mem };
        // SAFETY: `payload` came from a reference the mutator or a root held, so it is an allocated
        // object of this heap and its span is in use.
        let span = unsafe { mem.span_of(obj) };
        if span.mark(span.slot_of(obj)) {
            self.marked_bytes += span.elem_size;
            self.marked_objects += 1;
            if span.kind.scan() {
                self.grey.push(payload);
            }
        }
    }

    /// Scans grey objects until none is left on this marker's stack.
    pub(crate) fn drain(&mut self) {
        while let Some(p) = self.grey.pop() {
            // SAFETY: only allocated, initialised objects are ever shaded; `p` is one, and it stays
            // allocated at least until this cycle's sweep, which starts after marking ends.
            let h = unsafe { Header::of(p) };
            debug_assert!(
                // SAFETY: `p` is an allocated object of this heap (as above).
                h.object_size() <= unsafe { (*self.mem).span_of(p - HEADER_SIZE) }.elem_size,
                "object of `{}` at {p:#x} overflows its slot",
                (h.info.name)()
            );
            let (trace, len) = (h.info.trace, h.len);
            let mut tracer = Tracer::marking(self);
            // SAFETY: `p` is an initialised object of `len` elements described by its header.
            unsafe { trace(p as *const u8, len, &mut tracer) };
        }
    }

    /// Whether the marker has no grey work.
    pub(crate) fn is_empty(&self) -> bool {
        self.grey.is_empty()
    }
}

//! The verifier (Go's `gccheckmark`): after marking terminates and before anything is swept, a
//! second, independent trace from the roots checks that every object it reaches is marked.
//!
//! It runs while mutators keep running. That is sound because after a clean termination round
//! every object reachable from a root, or from any thread, is black and stays black until the
//! sweep (docs/design.md, "Termination"), and nothing is freed before the sweep. So any unmarked
//! object it reaches is a collector bug, reported with the object's type.

use super::mark::Tracer;
use crate::memory::Memory;
use crate::object::{Header, HEADER_SIZE};
use std::collections::HashSet;

pub(crate) struct Verifier {
    mem: *const Memory,
    visited: HashSet<usize>,
    stack: Vec<usize>,
    failure: Option<String>,
}

impl Verifier {
    /// Checks everything reachable from `roots`; `Err` names the first unmarked object's type.
    pub(crate) fn run(mem: &Memory, roots: Vec<usize>) -> Result<usize, String> {
        let mut v = Verifier { mem, visited: HashSet::new(), stack: Vec::new(), failure: None };
        for p in roots {
            v.visit(p);
        }
        while let Some(p) = v.stack.pop() {
            // SAFETY: `p` is reachable, hence allocated and initialised until the sweep.
            let h = unsafe { Header::of(p) };
            let mut t = Tracer::verifying(&mut v);
            // SAFETY: the object is initialised with `len` elements.
            unsafe { (h.info.trace)(p as *const u8, h.len, &mut t) };
        }
        match v.failure {
            Some(f) => Err(f),
            None => Ok(v.visited.len()),
        }
    }

    pub(crate) fn visit(&mut self, payload: usize) {
        if !self.visited.insert(payload) {
            return;
        }
        let obj = payload - HEADER_SIZE;
        // SAFETY: reachable objects are allocated until the sweep, and the verifier runs before.
        let mem = unsafe { &*self.mem };
        // SAFETY: as above, its span is in use.
        let span = unsafe { mem.span_of(obj) };
        if !span.is_marked(span.slot_of(obj)) && self.failure.is_none() {
            // SAFETY: the object is allocated and initialised.
            let name = (unsafe { Header::of(payload) }.info.name)();
            self.failure = Some(format!(
                "an object of type `{name}` at {payload:#x} is reachable but was left unmarked by the \
                 concurrent mark (it would have been freed while in use)"
            ));
        }
        if span.kind.scan() {
            self.stack.push(payload);
        }
    }
}

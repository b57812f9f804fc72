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

/// Lists the values of ephemeron entries whose table and key the predicate says were reached.
pub(crate) type EphemeronValues<'a> = dyn Fn(&dyn Fn(usize) -> bool) -> Vec<usize> + 'a;

pub(crate) struct Verifier {
    mem: *const Memory,
    visited: HashSet<usize>,
    stack: Vec<usize>,
    failure: Option<String>,
}

impl Verifier {
    /// Checks everything reachable from `roots`, from the references of the objects in
    /// `scan_only` (registered finalizers: their referents must be marked, they need not be), and
    /// through ephemerons: `ephemerons(reached)` lists the values whose table and key `reached`.
    /// `Err` names the first unmarked object's type.
    pub(crate) fn run(
        mem: &Memory,
        roots: Vec<usize>,
        scan_only: Vec<usize>,
        ephemerons: &EphemeronValues<'_>,
    ) -> Result<usize, String> {
        let mut v = Verifier { mem, visited: HashSet::new(), stack: Vec::new(), failure: None };
        for p in roots {
            v.visit(p);
        }
        for p in scan_only {
            // SAFETY: a registered object is allocated, so its span is in use.
            if unsafe { mem.span_of(p - HEADER_SIZE) }.kind.scan() {
                v.stack.push(p);
            }
        }
        loop {
            while let Some(p) = v.stack.pop() {
                // SAFETY: `p` is reachable, hence allocated and initialised until the sweep.
                let h = unsafe { Header::of(p) };
                let mut t = Tracer::verifying(&mut v);
                // SAFETY: the object is initialised with `len` elements.
                unsafe { (h.info.trace)(p as *const u8, h.len, &mut t) };
            }
            let before = v.visited.len();
            for p in ephemerons(&|p| v.visited.contains(&p)) {
                v.visit(p);
            }
            if v.visited.len() == before {
                break;
            }
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

#[cfg(all(test, not(loom)))]
mod tests {
    use super::Verifier;
    use crate::{Heap, Member, Trace};

    #[derive(Trace)]
    struct Parent {
        child: Member<Child>,
    }

    #[derive(Trace)]
    struct Child(u64);

    #[test]
    fn an_unmarked_reachable_object_is_reported_with_its_type() {
        let heap = Heap::builder().workers(0).build().unwrap();
        let mut m = heap.attach();
        let _root = m.scope(|s| {
            let p = s.alloc(Parent { child: Member::null() });
            p.child.set(s, Some(s.alloc(Child(1))));
            s.root(p)
        });
        m.collect(); // the sweep clears every mark: now nothing is marked
        let c = &heap.inner.collector;
        let roots = || {
            let mut v = Vec::new();
            c.roots.for_each(|p| v.push(p));
            v
        };
        let err = Verifier::run(&c.memory, roots(), Vec::new(), &|_| Vec::new()).unwrap_err();
        assert!(err.contains("Parent") && err.contains("left unmarked"), "{err}");
        // Mark the parent only: the child is the one reported.
        c.grey(roots()[0]);
        let err = Verifier::run(&c.memory, roots(), Vec::new(), &|_| Vec::new()).unwrap_err();
        assert!(err.contains("Child") && !err.contains("Parent"), "{err}");
        // Mark both: the heap verifies, two objects visited.
        m.scope(|s| {
            let p = _root.get(s);
            c.grey(p.child.get(s).unwrap().payload().as_ptr() as usize);
        });
        assert_eq!(Verifier::run(&c.memory, roots(), Vec::new(), &|_| Vec::new()), Ok(2));
        // Leave the heap consistent for teardown: the next sweep clears the marks.
        m.collect();
    }
}

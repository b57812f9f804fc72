//! The verifier (Go's `gccheckmark`): after marking terminates and before anything is swept, a
//! second, independent trace from the roots checks that every object it reaches is marked.
//!
//! It runs while mutators keep running. That is sound because after a clean termination round
//! every object reachable from a root, or from any thread, is black and stays black until the
//! sweep (docs/design.md, "Termination"), and nothing is freed before the sweep. So any unmarked
//! object it reaches is a collector bug, reported with the object's type.
//!
//! It also checks what only a broken invariant elsewhere can produce, each of which would
//! become a use-after-free later:
//! - a reference to an address outside the heap's reservation (an object of another heap stored
//!   here), or to memory no span holds (a freed object);
//! - a reachable weak cell or ephemeron table that is not listed with the collector (its targets
//!   would never be cleared, its values never kept);
//! - a value of a reachable ephemeron key left unmarked (the values are visited like edges).
//!
//! A `Trace` impl that panics here is not a collector bug: it is reported as such, and the
//! cycle frees nothing (as when it panics while marking).

use super::context::{self, UserCode, UserCodeGuard};
use super::mark::Tracer;
use crate::memory::Memory;
use crate::object::{Header, HEADER_SIZE, WEAK_CELL, WEAK_TABLE};
use std::collections::HashSet;

/// Lists the values of ephemeron entries whose table and key the predicate says were reached.
pub(crate) type EphemeronValues<'a> = dyn Fn(&dyn Fn(usize) -> bool) -> Vec<usize> + 'a;

/// Whether the weak object (cell or table, by `TypeInfo::weak_kind`) at a payload is listed.
pub(crate) type Listed<'a> = dyn Fn(usize, u8) -> bool + 'a;

/// What verification found wrong.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum VerifyError {
    /// A broken invariant: a collector bug, or an unsound hand-written `Trace` impl.
    Broken(String),
    /// A `Trace` impl panicked; the heap's marks were not checked to the end.
    TracePanicked(String),
}

pub(crate) struct Verifier {
    mem: *const Memory,
    visited: HashSet<usize>,
    stack: Vec<usize>,
    failure: Option<String>,
    /// What holds the references being visited, for messages.
    from: String,
}

impl Verifier {
    /// Checks everything reachable from `roots`, from the references of the objects in
    /// `scan_only` (registered finalizers: their referents must be marked, they need not be), and
    /// through ephemerons: `ephemerons(reached)` lists the values whose table and key `reached`.
    /// `listed` says whether a weak cell or table is listed with the collector. `Ok` counts the
    /// objects visited; `Err` names the first problem.
    pub(crate) fn run(
        mem: &Memory,
        roots: Vec<usize>,
        scan_only: Vec<usize>,
        ephemerons: &EphemeronValues<'_>,
        listed: &Listed<'_>,
    ) -> Result<usize, VerifyError> {
        let _user_code = UserCodeGuard::enter(UserCode::Trace);
        let mut v = Verifier { mem, visited: HashSet::new(), stack: Vec::new(), failure: None, from: "a root".into() };
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
                v.from = format!("the `{}` at {p:#x}", (h.info.name)());
                let mut t = Tracer::verifying(&mut v);
                // SAFETY: the object is initialised with `len` elements.
                if let Err(panic) = unsafe { (h.info.trace)(p as *const u8, h.len, &mut t) } {
                    let msg = context::panic_message(&*panic);
                    context::discard_payload(panic);
                    return Err(VerifyError::TracePanicked(format!(
                        "`{}`'s Trace::trace panicked while verifying the object at {p:#x}: {msg}",
                        (h.info.name)()
                    )));
                }
            }
            let before = v.visited.len();
            v.from = "the value of a live key of an ephemeron table".into();
            for p in ephemerons(&|p| v.visited.contains(&p)) {
                v.visit(p);
            }
            if v.visited.len() == before {
                break;
            }
        }
        // Weak objects reached are checked once the walk is over (their lists are fixed now).
        for &p in &v.visited {
            // SAFETY: every visited address passed the checks of `visit`: an allocated object.
            let kind = unsafe { Header::of(p) }.info.weak_kind;
            if kind != 0 && !listed(p, kind) && v.failure.is_none() {
                let what = if kind == WEAK_TABLE { "ephemeron table" } else { "weak reference cell" };
                debug_assert!(kind == WEAK_TABLE || kind == WEAK_CELL);
                v.failure = Some(format!(
                    "a reachable {what} at {p:#x} is not listed with the collector (its weak references \
                     would never be cleared, and a table's values never kept)"
                ));
            }
        }
        match v.failure {
            Some(f) => Err(VerifyError::Broken(f)),
            None => Ok(v.visited.len()),
        }
    }

    fn fail(&mut self, msg: String) {
        self.failure.get_or_insert(msg);
    }

    pub(crate) fn visit(&mut self, payload: usize) {
        let obj = payload.wrapping_sub(HEADER_SIZE);
        // SAFETY: reachable objects are allocated until the sweep, and the verifier runs before.
        let mem = unsafe { &*self.mem };
        if !mem.contains(obj) {
            let msg = format!(
                "{} holds a reference to {payload:#x}, outside this heap's reservation: an object of \
                 another heap (or a forged address) was stored in this heap",
                self.from
            );
            return self.fail(msg);
        }
        if !self.visited.insert(payload) {
            return;
        }
        let Some(span) = mem.span_in_use(obj) else {
            let msg =
                format!("{} holds a reference to {payload:#x}, where no span is in use: a freed object", self.from);
            return self.fail(msg);
        };
        if !span.is_marked(span.slot_of(obj)) {
            // SAFETY: the object is allocated and initialised.
            let name = (unsafe { Header::of(payload) }.info.name)();
            let msg = format!(
                "an object of type `{name}` at {payload:#x} is reachable but was left unmarked by the \
                 concurrent mark (it would have been freed while in use); it was reached from {}",
                self.from
            );
            self.fail(msg);
        }
        if span.kind.scan() {
            self.stack.push(payload);
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::{Verifier, VerifyError};
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
        let listed = |_, _| true;
        let run = || Verifier::run(&c.memory, roots(), Vec::new(), &|_| Vec::new(), &listed);
        let Err(VerifyError::Broken(err)) = run() else { panic!("no failure") };
        assert!(err.contains("Parent") && err.contains("left unmarked"), "{err}");
        // Mark the parent only: the child is the one reported.
        c.grey(roots()[0]);
        let Err(VerifyError::Broken(err)) = run() else { panic!("no failure") };
        assert!(
            err.contains("type `lowpause::collector::verify::tests::Child`")
                && err.contains("reached from the `lowpause::collector::verify::tests::Parent`"),
            "{err}"
        );
        // Mark both: the heap verifies, two objects visited.
        m.scope(|s| {
            let p = _root.get(s);
            c.grey(p.child.get(s).unwrap().payload().as_ptr() as usize);
        });
        assert_eq!(run(), Ok(2));
        // Leave the heap consistent for teardown: the next sweep clears the marks.
        m.collect();
    }

    /// The word inside a member, for planting what safe code cannot.
    fn word(m: &Member<Child>) -> &crate::sync::AtomicPtr<u8> {
        // SAFETY: `Member` is `repr(transparent)` over its atomic word.
        unsafe { &*(m as *const Member<Child> as *const crate::sync::AtomicPtr<u8>) }
    }

    #[test]
    fn a_reference_outside_the_heap_an_unlisted_table_and_an_unkept_value_are_reported() {
        let heap = Heap::builder().workers(0).build().unwrap();
        let other = Heap::builder().workers(0).build().unwrap();
        let (mut m, mut mo) = (heap.attach(), other.attach());
        let foreign = mo.scope(|s| s.root(s.alloc(Child(2))));
        let root = m.scope(|s| s.root(s.alloc(Parent { child: Member::null() })));
        let c = &heap.inner.collector;
        let listed = |_, _| true;
        let verify = |listed: &super::Listed<'_>| {
            let mut roots = Vec::new();
            c.roots.for_each(|p| roots.push(p));
            for &p in &roots {
                c.grey(p);
            }
            // The marks stay set; the collections at the end clear them.
            Verifier::run(&c.memory, roots, Vec::new(), &|reached| c.ephemeron_values(reached), listed)
        };
        let f = mo.scope(|s| foreign.get(s).payload().as_ptr());
        m.scope(|s| word(&root.get(s).child).store(f, std::sync::atomic::Ordering::SeqCst));
        let Err(VerifyError::Broken(err)) = verify(&listed) else { panic!("no failure") };
        assert!(err.contains("outside this heap's reservation") && err.contains("Parent"), "{err}");
        m.scope(|s| word(&root.get(s).child).store(std::ptr::null_mut(), std::sync::atomic::Ordering::SeqCst));
        // A weak table reached but missing from the collector's list.
        let table = m.scope(|s| s.root(crate::WeakTable::<u64, u64>::new_in(s)));
        assert!(verify(&listed).is_ok());
        let unlisted = |_, kind| kind != crate::object::WEAK_TABLE;
        let Err(VerifyError::Broken(err)) = verify(&unlisted) else { panic!("no failure") };
        assert!(err.contains("ephemeron table") && err.contains("not listed"), "{err}");
        // The value of a live key left unmarked.
        let key = m.scope(|s| {
            let k = s.alloc(5u64);
            table.get(s).insert(s, k, crate::ValueRef::Object(s.alloc(6u64)));
            s.root(k)
        });
        let Err(VerifyError::Broken(err)) = verify(&listed) else { panic!("no failure") };
        assert!(err.contains("left unmarked") && err.contains("the value of a live key"), "{err}");
        drop((table, root, foreign, key));
        m.collect();
        mo.collect();
    }
}

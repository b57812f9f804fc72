//! The handshake protocol: how a cycle advances without stopping any thread.
//!
//! The collector *posts* a request by publishing a token `4 × cycle + level`:
//!
//! | level | request    | a thread answers it at...              | by                                   |
//! |-------|------------|----------------------------------------|--------------------------------------|
//! | 1     | barrier on | a scope boundary or allocation slow path | nothing more: it now sees the flag |
//! | 2     | snapshot   | a scope boundary only (no GC pointers) | allocating black from now on         |
//! | 3     | release    | a scope boundary or allocation slow path | handing its cached spans back, white |
//!
//! Every thread has a [`StateWord`]: an `INSIDE` bit, a `BUSY` bit and the last token it has
//! answered (*acknowledged*). Tokens only grow, so "has answered request `t`" is `acked >= t`.
//!
//! A thread outside every scope holds no GC pointer and does not touch its cache, so the collector
//! may answer *for* it: it claims the word with a CAS from `OUTSIDE|acked` to `BUSY|acked`, does
//! what the thread would have done to its cache, and stores `OUTSIDE|token`. Scope entry CASes
//! `OUTSIDE|acked` to `INSIDE|acked`, so the two exclude each other; an entering thread that finds
//! the word `BUSY` spins for the few microseconds the collector needs. So a thread outside every
//! scope never delays a cycle, and no thread ever waits for one for longer than that.
//!
//! Ordering: the claim CAS acquires what the thread released when it last left its scope (its
//! cache writes), and the store that ends a claim releases the collector's cache writes to the
//! thread's next entry CAS. A thread's answers inside a scope are release stores of its word; the
//! collector reads words with acquire loads.

use crate::sync::{AtomicU64, Ordering};

/// The thread is inside a scope.
pub(crate) const INSIDE: u64 = 1 << 63;
/// The collector is acting for the thread.
pub(crate) const BUSY: u64 = 1 << 62;
const TOKEN: u64 = BUSY - 1;

pub(crate) const LEVEL_BARRIER: u64 = 1;
pub(crate) const LEVEL_SNAPSHOT: u64 = 2;
pub(crate) const LEVEL_RELEASE: u64 = 3;

/// The token of request `level` of cycle `cycle`.
#[inline]
pub(crate) const fn token(cycle: u64, level: u64) -> u64 {
    cycle * 4 + level
}

/// The level of a token.
#[inline]
pub(crate) const fn level(token: u64) -> u64 {
    token & 3
}

/// What the collector found when it tried to answer for a thread.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Claim {
    /// The thread has already answered.
    Answered,
    /// The thread is inside a scope (or another claim is in progress): it will answer itself.
    Inside,
    /// The collector now acts for the thread; finish with [`StateWord::end_claim`].
    Claimed,
}

/// One thread's state word.
pub(crate) struct StateWord(AtomicU64);

impl StateWord {
    pub(crate) fn new(acked: u64) -> StateWord {
        StateWord(AtomicU64::new(acked))
    }

    /// The last token the thread answered.
    #[inline]
    pub(crate) fn acked(&self) -> u64 {
        self.0.load(Ordering::Acquire) & TOKEN
    }

    /// Whether the thread is inside a scope.
    #[cfg(all(test, not(loom)))]
    pub(crate) fn is_inside(&self) -> bool {
        self.0.load(Ordering::Acquire) & INSIDE != 0
    }

    /// Scope entry: OUTSIDE → INSIDE, spinning while the collector acts for the thread. Returns
    /// the acknowledged token and how many times it had to wait.
    pub(crate) fn enter(&self) -> (u64, u32) {
        let mut spins = 0;
        loop {
            let s = self.0.load(Ordering::Acquire);
            debug_assert_eq!(s & INSIDE, 0, "scope entered twice on one thread record");
            if s & BUSY == 0 && self.0.compare_exchange(s, s | INSIDE, Ordering::SeqCst, Ordering::Acquire).is_ok() {
                return (s & TOKEN, spins);
            }
            spins += 1;
            crate::sync::spin_wait(spins);
        }
    }

    /// Records, from inside a scope, that the thread answered `token`.
    #[inline]
    pub(crate) fn answer_inside(&self, token: u64) {
        self.0.store(INSIDE | token, Ordering::SeqCst);
    }

    /// Scope exit: INSIDE → OUTSIDE, with the last token answered.
    #[inline]
    pub(crate) fn exit(&self, token: u64) {
        self.0.store(token, Ordering::SeqCst);
    }

    /// The collector's attempt to answer `token` for the thread.
    pub(crate) fn claim(&self, token: u64) -> Claim {
        loop {
            let s = self.0.load(Ordering::Acquire);
            if s & TOKEN >= token {
                return Claim::Answered;
            }
            if s & (INSIDE | BUSY) != 0 {
                return Claim::Inside;
            }
            if self.0.compare_exchange(s, s | BUSY, Ordering::SeqCst, Ordering::Acquire).is_ok() {
                return Claim::Claimed;
            }
        }
    }

    /// Ends a claim: the thread is outside, having answered `token`.
    pub(crate) fn end_claim(&self, token: u64) {
        debug_assert_ne!(self.0.load(Ordering::Relaxed) & BUSY, 0);
        self.0.store(token, Ordering::SeqCst);
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn outside_threads_are_answered_for_and_inside_ones_answer_themselves() {
        let w = StateWord::new(token(0, 3));
        let t1 = token(1, LEVEL_BARRIER);
        assert_eq!(w.claim(t1), Claim::Claimed);
        w.end_claim(t1);
        assert_eq!(w.acked(), t1);
        assert_eq!(w.claim(t1), Claim::Answered);
        let (acked, _) = w.enter();
        assert_eq!(acked, t1);
        let t2 = token(1, LEVEL_SNAPSHOT);
        assert_eq!(w.claim(t2), Claim::Inside);
        w.answer_inside(t2);
        assert_eq!(w.claim(t2), Claim::Answered);
        assert!(w.is_inside());
        w.exit(t2);
        assert!(!w.is_inside());
    }
}

//! The pacer: when the next cycle starts.
//!
//! Go's GOGC model: after a cycle marked `live` bytes, the heap may grow to the goal
//! `live × (1 + gc_percent / 100)`, never below a minimum of 4 MiB (so a tiny heap does not
//! collect constantly). In this version the trigger *is* the goal, checked at allocation slow
//! paths and scope boundaries, which request a cycle and carry on; a cons/mark-ratio runway,
//! assists and a memory limit are the next step.

/// The smallest heap goal, in bytes.
pub(crate) const MIN_GOAL: usize = 4 << 20;

#[derive(Clone, Copy, Debug)]
pub(crate) struct Pacer {
    pub(crate) gc_percent: u32,
}

impl Pacer {
    /// The heap goal after a cycle that left `live` bytes marked.
    pub(crate) fn goal(&self, live: usize) -> usize {
        let grown =
            live.saturating_add(live / 100 * self.gc_percent as usize + live % 100 * self.gc_percent as usize / 100);
        grown.max(MIN_GOAL)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn goal_follows_gogc_with_a_floor() {
        let p = Pacer { gc_percent: 100 };
        assert_eq!(p.goal(0), MIN_GOAL);
        assert_eq!(p.goal(10 << 20), 20 << 20);
        let p = Pacer { gc_percent: 50 };
        assert_eq!(p.goal(100 << 20), 150 << 20);
        assert_eq!(p.goal(usize::MAX), usize::MAX);
    }
}

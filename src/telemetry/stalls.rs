//! Mutator stalls: every wait the collector imposes on a mutator thread, by cause.
//!
//! Each cause has a [`Histogram`] (lock-free: log-linear buckets of atomic counters, eight per
//! power of two, so a reported percentile is at most 12.5 % above the true value, and the exact
//! maximum beside them). Stalls also go into a log of `(start, duration)` from which the minimum
//! mutator utilisation is computed: over every window of a given length, the smallest share of it
//! that no mutator spent stalled. Stalls of different threads are merged onto one timeline (a
//! window where any thread stalled counts as stalled), which understates utilisation with several
//! mutators and never overstates it.
//!
//! **Incrementally.** The MMU of a long run is kept as it goes: [`Stalls::fold`] (the coordinator
//! calls it at the end of each cycle) evaluates every window that ends more than [`FOLD_LAG`]
//! before now, keeps the worst stalled time per window length, and drops the stalls no later
//! window can touch. The report evaluates only what is left, each window by prefix sums over
//! the merged intervals (a binary search each), so it costs O(n log n) in the stalls since the
//! last fold. A stall recorded more than `FOLD_LAG` after it began is seen only in the windows
//! that were not folded yet.

use crate::sync::{AtomicU64, Mutex, Ordering};
use std::collections::VecDeque;
use std::fmt;
use std::time::Duration;

/// Why a mutator waited on the collector.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum StallCause {
    /// Entering a scope while the collector answered a handshake on the thread's behalf.
    Handshake,
    /// A mark assist: scanning to pay for allocating faster than marking proceeds.
    Assist,
    /// An allocation that swept spans or waited for memory before it could proceed.
    Allocation,
}

impl StallCause {
    fn name(self) -> &'static str {
        match self {
            StallCause::Handshake => "handshake wait",
            StallCause::Assist => "mark assist",
            StallCause::Allocation => "allocation wait",
        }
    }
}

impl fmt::Display for StallCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

const SUB_BITS: u32 = 3;
const SUB: usize = 1 << SUB_BITS;
/// Values below `2 × SUB` have a bucket each; above, eight buckets per power of two.
const BUCKETS: usize = 2 * SUB + (64 - SUB_BITS as usize - 1) * SUB;

fn bucket_of(v: u64) -> usize {
    if v < 2 * SUB as u64 {
        return v as usize;
    }
    let e = 63 - v.leading_zeros();
    let m = (v >> (e - SUB_BITS)) as usize & (SUB - 1);
    2 * SUB + (e - SUB_BITS - 1) as usize * SUB + m
}

/// The largest value in bucket `b`.
fn bucket_top(b: usize) -> u64 {
    if b < 2 * SUB {
        return b as u64;
    }
    let e = (b - 2 * SUB) / SUB + SUB_BITS as usize + 1;
    let m = ((b - 2 * SUB) % SUB) as u64;
    let shift = e - SUB_BITS as usize;
    let top = (((SUB as u64 + m) as u128) << shift) + (1u128 << shift) - 1;
    top.min(u64::MAX as u128) as u64
}

/// A lock-free histogram of durations in nanoseconds.
pub(crate) struct Histogram {
    buckets: Box<[AtomicU64]>,
    count: AtomicU64,
    total_ns: AtomicU64,
    max_ns: AtomicU64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            buckets: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
            count: AtomicU64::new(0),
            total_ns: AtomicU64::new(0),
            max_ns: AtomicU64::new(0),
        }
    }
}

impl Histogram {
    pub(crate) fn record(&self, ns: u64) {
        self.buckets[bucket_of(ns)].fetch_add(1, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
        self.total_ns.fetch_add(ns, Ordering::Relaxed);
        self.max_ns.fetch_max(ns, Ordering::Relaxed);
    }

    /// The nearest-rank quantile `q` (bucket upper edge, at most the maximum).
    fn quantile(&self, counts: &[u64], n: u64, q: f64) -> u64 {
        if n == 0 {
            return 0;
        }
        let rank = ((n as f64 * q).ceil() as u64).max(1);
        let mut seen = 0;
        for (b, &c) in counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return bucket_top(b).min(self.max_ns.load(Ordering::Relaxed));
            }
        }
        self.max_ns.load(Ordering::Relaxed)
    }

    pub(crate) fn summary(&self) -> StallSummary {
        let counts: Vec<u64> = self.buckets.iter().map(|b| b.load(Ordering::Relaxed)).collect();
        let n: u64 = counts.iter().sum();
        StallSummary {
            count: n,
            total: Duration::from_nanos(self.total_ns.load(Ordering::Relaxed)),
            max: Duration::from_nanos(self.max_ns.load(Ordering::Relaxed)),
            p99: Duration::from_nanos(self.quantile(&counts, n, 0.99)),
            p999: Duration::from_nanos(self.quantile(&counts, n, 0.999)),
        }
    }
}

/// One cause's stalls: how many, their total, and the largest ones.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct StallSummary {
    /// Stalls recorded.
    pub count: u64,
    /// Their total duration.
    pub total: Duration,
    /// The longest.
    pub max: Duration,
    /// The 99th percentile (nearest rank, within 12.5 %).
    pub p99: Duration,
    /// The 99.9th percentile (nearest rank, within 12.5 %).
    pub p999: Duration,
}

/// Stalls kept for MMU between folds; beyond this the oldest are dropped first.
const LOG_CAPACITY: usize = 1 << 16;
/// A fold evaluates only windows that ended this long ago (stalls are recorded when they end,
/// so a stall that began before a folded window's end must be recorded within this lag).
pub(crate) const FOLD_LAG: u64 = 1_000_000_000;
/// The window lengths the metrics report MMU for: 1, 10 and 100 ms.
pub(crate) const MMU_WINDOWS: [u64; 3] = [1_000_000, 10_000_000, 100_000_000];

/// The MMU log: the stalls not folded yet, and what the folds found.
#[derive(Default)]
struct MmuLog {
    stalls: VecDeque<(u64, u64)>,
    /// Every window ending at or before this has been evaluated (into `worst`).
    folded_to: u64,
    /// The most stalled time of any evaluated window, per length of `MMU_WINDOWS`.
    worst: [u64; 3],
}

/// Every stall of a heap's mutators.
pub(crate) struct Stalls {
    by_cause: [Histogram; 3],
    log: Mutex<MmuLog>,
}

impl Default for Stalls {
    fn default() -> Self {
        Stalls { by_cause: Default::default(), log: Mutex::new(MmuLog::default()) }
    }
}

impl Stalls {
    /// Records a stall of `ns` nanoseconds that began `start_ns` after the heap was created.
    pub(crate) fn record(&self, cause: StallCause, start_ns: u64, ns: u64) {
        self.by_cause[cause as usize].record(ns);
        let mut log = self.log.lock();
        if log.stalls.len() == LOG_CAPACITY {
            log.stalls.pop_front();
        }
        log.stalls.push_back((start_ns, ns));
    }

    /// The longest stall of any cause, in nanoseconds.
    pub(crate) fn max_ns(&self) -> u64 {
        self.by_cause.iter().map(|h| h.max_ns.load(Ordering::Relaxed)).max().unwrap_or(0)
    }

    pub(crate) fn summary(&self, cause: StallCause) -> StallSummary {
        self.by_cause[cause as usize].summary()
    }

    /// Evaluates every window that ended `FOLD_LAG` before `now_ns` and drops the stalls only
    /// those windows touch. Takes the stalls out of the lock to do it, so recording never waits
    /// on the evaluation.
    pub(crate) fn fold(&self, now_ns: u64) {
        let Some(to) = now_ns.checked_sub(FOLD_LAG) else { return };
        let (mut stalls, from) = {
            let mut log = self.log.lock();
            if to <= log.folded_to + FOLD_LAG {
                return; // at most one fold a second
            }
            (std::mem::take(&mut log.stalls), log.folded_to)
        };
        stalls.make_contiguous().sort_unstable();
        let iv = Intervals::merge(stalls.as_slices().0, u64::MAX);
        let mut worst = [0; 3];
        for (k, &w) in MMU_WINDOWS.iter().enumerate() {
            worst[k] = iv.worst(w, from.saturating_sub(w), to - w.min(to));
        }
        // Windows ending after `to` start after `to - 100 ms`: a stall ending before cannot touch them.
        let keep_from = to.saturating_sub(MMU_WINDOWS[2]);
        stalls.retain(|&(s, d)| s.saturating_add(d) > keep_from);
        let mut log = self.log.lock();
        for (kept, new) in log.worst.iter_mut().zip(worst) {
            *kept = (*kept).max(new);
        }
        log.folded_to = to;
        // Stalls recorded meanwhile go after the kept ones (the log is sorted where needed).
        let recorded = std::mem::replace(&mut log.stalls, stalls);
        log.stalls.extend(recorded);
    }

    /// The MMU for each length of `MMU_WINDOWS` within `[0, end_ns]`: folded windows and the
    /// rest. A run shorter than a window is one window.
    pub(crate) fn mmu(&self, end_ns: u64) -> [f64; 3] {
        let (mut stalls, worst_folded) = {
            let log = self.log.lock();
            (log.stalls.iter().copied().collect::<Vec<_>>(), log.worst)
        };
        stalls.sort_unstable();
        let iv = Intervals::merge(&stalls, end_ns);
        let mut out = [1.0; 3];
        for (k, &window) in MMU_WINDOWS.iter().enumerate() {
            let w = window.min(end_ns).max(1);
            let worst = worst_folded[k].max(iv.worst(w, 0, end_ns - w.min(end_ns)));
            out[k] = 1.0 - worst.min(w) as f64 / w as f64;
        }
        out
    }
}

/// Disjoint stalled intervals on one timeline, with prefix sums of their lengths.
struct Intervals {
    iv: Vec<(u64, u64)>,
    /// `cum[i]`: the total length of `iv[..i]`.
    cum: Vec<u64>,
}

impl Intervals {
    /// Merges stalls `(start, duration)` sorted by start, each cut at `end_ns`.
    fn merge(stalls: &[(u64, u64)], end_ns: u64) -> Intervals {
        let mut iv: Vec<(u64, u64)> = Vec::with_capacity(stalls.len());
        for &(s, d) in stalls {
            let e = s.saturating_add(d).min(end_ns.max(s));
            match iv.last_mut() {
                Some(last) if s <= last.1 => last.1 = last.1.max(e),
                _ => iv.push((s, e)),
            }
        }
        let mut cum = Vec::with_capacity(iv.len() + 1);
        let mut total = 0;
        cum.push(0);
        for &(s, e) in &iv {
            total += e - s;
            cum.push(total);
        }
        Intervals { iv, cum }
    }

    /// Stalled time in `[0, t]`.
    fn stalled_to(&self, t: u64) -> u64 {
        let j = self.iv.partition_point(|&(_, e)| e <= t);
        let partial = self.iv.get(j).map_or(0, |&(s, _)| t.saturating_sub(s));
        self.cum[j] + partial
    }

    /// The most stalled time of any window `[a, a + w]` with `lo <= a <= hi`. The worst window
    /// starts at an interval's start or ends at an interval's end, so only those are tried
    /// (clamped into `[lo, hi]`).
    fn worst(&self, w: u64, lo: u64, hi: u64) -> u64 {
        let mut worst = 0;
        if lo > hi {
            return 0;
        }
        for &(s, e) in &self.iv {
            for a in [s, e.saturating_sub(w)] {
                let a = a.clamp(lo, hi);
                worst = worst.max(self.stalled_to(a + w) - self.stalled_to(a));
            }
        }
        worst
    }
}

/// Minimum mutator utilisation over windows of `window_ns` within `[0, end_ns]`, given stalls
/// `(start, duration)` sorted by start: the smallest share of any such window not spent stalled.
/// A run shorter than the window is one window.
#[cfg(test)]
fn mmu(stalls: &[(u64, u64)], end_ns: u64, window_ns: u64) -> f64 {
    let iv = Intervals::merge(stalls, end_ns);
    let w = window_ns.min(end_ns).max(1);
    1.0 - iv.worst(w, 0, end_ns - w.min(end_ns)).min(w) as f64 / w as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_cover_every_value_and_bound_it() {
        for v in (0..100_000u64).chain([u64::MAX / 3, u64::MAX]) {
            let b = bucket_of(v);
            assert!(b < BUCKETS, "{v}");
            assert!(bucket_top(b) >= v, "{v} above its bucket's top {}", bucket_top(b));
            assert!(bucket_top(b) as f64 <= v as f64 * 1.125 + 1.0, "{v}: bucket too wide");
            if b > 0 {
                assert!(bucket_top(b - 1) < v, "{v} belongs lower");
            }
        }
    }

    #[test]
    fn quantiles_are_nearest_rank() {
        let h = Histogram::default();
        for i in 1..=1000 {
            h.record(i * 1000);
        }
        let s = h.summary();
        assert_eq!(s.count, 1000);
        assert_eq!(s.max, Duration::from_micros(1000));
        let p99 = s.p99.as_nanos() as f64;
        assert!((990_000.0..=990_000.0 * 1.125).contains(&p99), "{p99}");
        let p999 = s.p999.as_nanos() as f64;
        assert!((999_000.0..=1_000_000.0).contains(&p999), "{p999}");
        assert_eq!(Histogram::default().summary(), StallSummary::default());
    }

    #[test]
    fn mmu_finds_the_worst_window() {
        let ms = 1_000_000;
        // One 2 ms stall in a 1 s run: a 1 ms window can be fully stalled, 10 ms is 80 % free.
        let one = [(500 * ms, 2 * ms)];
        assert_eq!(mmu(&one, 1000 * ms, ms), 0.0);
        assert!((mmu(&one, 1000 * ms, 10 * ms) - 0.8).abs() < 1e-9);
        // Two 1 ms stalls 3 ms apart: a 10 ms window holds both.
        let two = [(100 * ms, ms), (104 * ms, ms)];
        assert!((mmu(&two, 1000 * ms, 10 * ms) - 0.8).abs() < 1e-9);
        assert!((mmu(&two, 1000 * ms, 2 * ms) - 0.5).abs() < 1e-9);
        // Overlapping stalls of two threads merge.
        let overlap = [(0, 2 * ms), (ms, 2 * ms)];
        assert!((mmu(&overlap, 100 * ms, 10 * ms) - 0.7).abs() < 1e-9);
        assert_eq!(mmu(&[], 1000 * ms, ms), 1.0);
        // A run shorter than the window is one window.
        assert!((mmu(&[(ms, 2 * ms)], 5 * ms, 100 * ms) - 0.6).abs() < 1e-9);
    }

    /// The folded MMU equals the MMU computed over every stall at once, and the log shrinks.
    #[test]
    fn folding_keeps_the_mmu_exact() {
        let ms = 1_000_000;
        // 20 s of stalls: a 0.3 ms stall every 0.7 ms, a 6 ms one every 2.5 s, one dense burst.
        let mut all = Vec::new();
        let mut t = 0;
        while t < 20_000 * ms {
            all.push((t, 3 * ms / 10));
            if t % (2_500 * ms) < 7 * ms / 10 {
                all.push((t + ms / 2, 6 * ms));
            }
            t += 7 * ms / 10;
        }
        all.extend((0..40).map(|i| (12_345 * ms + i * ms * 2, ms * 3 / 2)));
        all.sort_unstable();
        let end = 20_500 * ms;
        let st = Stalls::default();
        // Folds every 3 s, and one whose boundary (now - FOLD_LAG) cuts the burst in two.
        let mut folds = vec![2_000 * ms, 5_000 * ms, 8_000 * ms, 12_385 * ms + FOLD_LAG, 17_000 * ms];
        folds.reverse();
        for &(s, d) in &all {
            while folds.last().is_some_and(|&f| f <= s) {
                st.fold(folds.pop().unwrap());
            }
            st.record(StallCause::Assist, s, d);
        }
        assert!(folds.is_empty());
        assert!(st.log.lock().stalls.len() < all.len() / 4, "folds drop what they evaluated");
        let got = st.mmu(end);
        for (k, &w) in MMU_WINDOWS.iter().enumerate() {
            let want = mmu(&all, end, w);
            assert!((got[k] - want).abs() < 1e-12, "window {w}: folded {} vs {want}", got[k]);
        }
        // The burst is the worst 100 ms window: 40 stalls of 1.5 ms, plus the small ones.
        assert!(got[2] < 0.5, "{}", got[2]);
    }
}

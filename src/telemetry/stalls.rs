//! Mutator stalls: every wait the collector imposes on a mutator thread, by cause.
//!
//! Each cause has a [`Histogram`] (lock-free: log-linear buckets of atomic counters, eight per
//! power of two, so a reported percentile is at most 12.5 % above the true value, and the exact
//! maximum beside them). Stalls also go into a bounded log of `(start, duration)` from which
//! [`mmu`] computes the minimum mutator utilisation: over every window of a given length, the
//! smallest share of it that no mutator spent stalled. Stalls of different threads are merged
//! onto one timeline (a window where any thread stalled counts as stalled), which understates
//! utilisation with several mutators and never overstates it.

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

/// Stalls kept for MMU; older ones are dropped first.
const LOG_CAPACITY: usize = 1 << 16;

/// Every stall of a heap's mutators.
pub(crate) struct Stalls {
    by_cause: [Histogram; 3],
    log: Mutex<VecDeque<(u64, u64)>>,
}

impl Default for Stalls {
    fn default() -> Self {
        Stalls { by_cause: Default::default(), log: Mutex::new(VecDeque::new()) }
    }
}

impl Stalls {
    /// Records a stall of `ns` nanoseconds that began `start_ns` after the heap was created.
    pub(crate) fn record(&self, cause: StallCause, start_ns: u64, ns: u64) {
        self.by_cause[cause as usize].record(ns);
        let mut log = self.log.lock();
        if log.len() == LOG_CAPACITY {
            log.pop_front();
        }
        log.push_back((start_ns, ns));
    }

    /// The longest stall of any cause, in nanoseconds.
    pub(crate) fn max_ns(&self) -> u64 {
        self.by_cause.iter().map(|h| h.max_ns.load(Ordering::Relaxed)).max().unwrap_or(0)
    }

    pub(crate) fn summary(&self, cause: StallCause) -> StallSummary {
        self.by_cause[cause as usize].summary()
    }

    /// The stalls in the log, by start.
    pub(crate) fn log(&self) -> Vec<(u64, u64)> {
        let mut v: Vec<_> = self.log.lock().iter().copied().collect();
        v.sort_unstable();
        v
    }
}

/// Minimum mutator utilisation over windows of `window_ns` within `[0, end_ns]`, given stalls
/// `(start, duration)` sorted by start: the smallest share of any such window not spent stalled.
/// A run shorter than the window is one window.
pub(crate) fn mmu(stalls: &[(u64, u64)], end_ns: u64, window_ns: u64) -> f64 {
    // Merge overlapping stalls into disjoint intervals.
    let mut iv: Vec<(u64, u64)> = Vec::with_capacity(stalls.len());
    for &(s, d) in stalls {
        let e = s.saturating_add(d).min(end_ns.max(s));
        match iv.last_mut() {
            Some(last) if s <= last.1 => last.1 = last.1.max(e),
            _ => iv.push((s, e)),
        }
    }
    let w = window_ns.min(end_ns).max(1);
    if iv.is_empty() {
        return 1.0;
    }
    // Stalled time in [a, a + w]; the worst window starts at an interval's start or ends at an
    // interval's end, so only those candidates need checking.
    let stalled_in = |a: u64| -> u64 {
        let b = a + w;
        let first = iv.partition_point(|&(_, e)| e <= a);
        iv[first..].iter().take_while(|&&(s, _)| s < b).map(|&(s, e)| e.min(b) - s.max(a)).sum()
    };
    let mut worst = 0;
    for &(s, e) in &iv {
        let starts = [s.min(end_ns - w.min(end_ns)), e.saturating_sub(w)];
        for a in starts {
            worst = worst.max(stalled_in(a));
        }
    }
    1.0 - worst.min(w) as f64 / w as f64
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
}

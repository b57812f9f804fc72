//! Errors the API returns.

use std::fmt;

/// An invalid heap configuration, from [`HeapBuilder::build`](crate::HeapBuilder::build). Its
/// message names the bad value and the accepted range.
///
/// ```
/// let err = lowpause::Heap::builder().gc_percent(-5).build().unwrap_err();
/// assert!(err.to_string().contains("-5"));
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum ConfigError {
    /// `gc_percent` outside `1..=100_000`.
    GcPercent(i64),
    /// `max_heap` outside the supported range.
    MaxHeap(usize),
    /// A memory limit below the smallest the pacer can keep (8 MiB).
    MemoryLimit(usize),
    /// `workers` above the supported maximum.
    Workers(usize),
    /// The OS refused to start the collector's threads.
    Spawn(std::io::Error),
    /// The OS refused to reserve the heap's address space.
    Reserve {
        /// The size asked for.
        bytes: usize,
        /// What the OS said.
        error: std::io::Error,
    },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::GcPercent(v) => write!(
                f,
                "invalid gc_percent {v}: it must be between {} and {} (the heap may grow by that \
                 percentage of the live data before a cycle starts)",
                super::heap::MIN_GC_PERCENT,
                super::heap::MAX_GC_PERCENT
            ),
            ConfigError::MaxHeap(v) => write!(
                f,
                "invalid max_heap {v} bytes: it must be between {} and {} bytes",
                super::heap::MIN_MAX_HEAP,
                super::heap::MAX_MAX_HEAP
            ),
            ConfigError::MemoryLimit(v) => write!(
                f,
                "invalid memory_limit {v} bytes: it must be at least {} bytes (the smallest heap goal, \
                 with room for fragmentation and headroom)",
                super::heap::MIN_MEMORY_LIMIT
            ),
            ConfigError::Workers(v) => {
                write!(f, "invalid workers {v}: it must be between 0 and {}", super::heap::MAX_WORKERS)
            }
            ConfigError::Spawn(e) => write!(f, "could not start the collector's threads: {e}"),
            ConfigError::Reserve { bytes, error } => {
                write!(f, "could not reserve {bytes} bytes of address space for the heap: {error}")
            }
        }
    }
}

impl std::error::Error for ConfigError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ConfigError::Reserve { error, .. } | ConfigError::Spawn(error) => Some(error),
            _ => None,
        }
    }
}

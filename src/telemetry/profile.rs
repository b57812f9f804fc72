//! The heap profile by type: what is live, and what has been allocated, per Rust type.
//!
//! Two tables, both keyed by the object's `TypeInfo` (its type, and whether it is an array):
//!
//! - **Live** objects and bytes are counted by marking itself. A profiling cycle (one that
//!   [`Mutator::heap_profile`](crate::Mutator::heap_profile) asked for) sets `profiling` before its
//!   barrier turns on; every site that sets a mark bit (a marker shading a reference, a barrier or
//!   a root operation greying an object) then also adds the object's slot to its type's row.
//!   Those sites only ever reach published objects, whose headers are complete. So the table ends
//!   the mark holding exactly what marking found: the heap live at the cycle's snapshot. Objects
//!   allocated black during the cycle are new, not counted.
//! - **Allocations** are sampled, as Go's `MemProfileRate` does: each thread counts down a random
//!   number of bytes (exponentially distributed, mean `profile_rate`) and records the allocation
//!   that crosses zero, weighted by the number of allocations of its size one sample stands for,
//!   `1 / (1 - exp(-size / rate))`. The fast path pays one subtraction and one branch; a rate of 1
//!   records every allocation exactly; a rate of 0 turns sampling off.
//!
//! Both tables are lock-free (open addressing, a CAS claims a row), so an idle worker preempted
//! mid-update holds nothing any other thread waits for. A table holds [`ROWS`] types; types beyond
//! that are added to one overflow row (reported as `(other types)`), never lost.

use crate::object::TypeInfo;
use crate::sync::{AtomicPtr, AtomicU64, Ordering};
use std::fmt;

/// Rows per table: distinct types tracked by name before the overflow row takes the rest.
pub(crate) const ROWS: usize = 1024;

/// Fixed-point scale of sampled allocation counts (a sample stands for a fractional count).
const WEIGHT_ONE: f64 = 1024.0;

struct Row {
    info: AtomicPtr<TypeInfo>,
    objects: AtomicU64,
    bytes: AtomicU64,
}

impl Row {
    fn new() -> Row {
        Row { info: AtomicPtr::new(std::ptr::null_mut()), objects: AtomicU64::new(0), bytes: AtomicU64::new(0) }
    }
}

/// One row of a table: the type (`None`: the overflow row), objects, bytes.
pub(crate) type Counts = (Option<&'static TypeInfo>, u64, u64);

/// A lock-free table of counts by type.
pub(crate) struct TypeTable {
    rows: Box<[Row]>,
    overflow: Row,
}

impl Default for TypeTable {
    fn default() -> TypeTable {
        TypeTable::new()
    }
}

impl TypeTable {
    pub(crate) fn new() -> TypeTable {
        TypeTable { rows: (0..ROWS).map(|_| Row::new()).collect(), overflow: Row::new() }
    }

    fn row(&self, info: &'static TypeInfo) -> &Row {
        let key = info as *const TypeInfo as *mut TypeInfo;
        // TypeInfos are 8-byte aligned statics: drop the low bits, mix the rest.
        let mut i = ((key as usize >> 3).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 54) % ROWS;
        for _ in 0..ROWS {
            let row = &self.rows[i];
            let cur = row.info.load(Ordering::Acquire);
            if cur == key {
                return row;
            }
            if cur.is_null() {
                match row.info.compare_exchange(std::ptr::null_mut(), key, Ordering::AcqRel, Ordering::Acquire) {
                    Ok(_) => return row,
                    Err(k) if k == key => return row,
                    Err(_) => {}
                }
            }
            i = (i + 1) % ROWS;
        }
        &self.overflow
    }

    /// Adds `objects` and `bytes` to `info`'s row.
    pub(crate) fn add(&self, info: &'static TypeInfo, objects: u64, bytes: u64) {
        let row = self.row(info);
        row.objects.fetch_add(objects, Ordering::Relaxed);
        row.bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Zeroes every count (rows keep their types).
    pub(crate) fn clear(&self) {
        for row in self.rows.iter().chain(std::iter::once(&self.overflow)) {
            row.objects.store(0, Ordering::Relaxed);
            row.bytes.store(0, Ordering::Relaxed);
        }
    }

    /// Every row with a count: its type (`None` for the overflow row), objects and bytes.
    pub(crate) fn snapshot(&self) -> Vec<Counts> {
        self.rows
            .iter()
            .map(|row| {
                let info = row.info.load(Ordering::Acquire);
                // SAFETY: a row's key is only ever set from a `&'static TypeInfo` (in `row`).
                (unsafe { info.as_ref() }, row)
            })
            .chain(std::iter::once((None, &self.overflow)))
            .map(|(info, row)| (info, row.objects.load(Ordering::Relaxed), row.bytes.load(Ordering::Relaxed)))
            .filter(|&(_, objects, _)| objects > 0)
            .collect()
    }
}

/// Records one sampled allocation of `bytes` (its slot) at sampling rate `rate` into `table`.
pub(crate) fn record_sample(table: &TypeTable, info: &'static TypeInfo, bytes: usize, rate: usize) {
    let weight = 1.0 / (1.0 - (-(bytes as f64) / rate as f64).exp());
    table.add(info, (weight * WEIGHT_ONE).round() as u64, (weight * bytes as f64).round() as u64);
}

/// The next sampling distance: exponentially distributed with mean `rate` (0: never).
pub(crate) fn next_sample(rate: usize, rng: &mut u64) -> isize {
    if rate == 0 {
        return isize::MAX;
    }
    // xorshift64*: a fast, well-mixed generator; the distance needs no more than that.
    *rng ^= *rng >> 12;
    *rng ^= *rng << 25;
    *rng ^= *rng >> 27;
    let r = rng.wrapping_mul(0x2545_F491_4F6C_DD1D);
    let u = ((r >> 11) as f64 + 0.5) / (1u64 << 53) as f64; // in (0, 1)
    (-u.ln() * rate as f64).min(isize::MAX as f64 / 2.0) as isize
}

/// One type's row of a [`HeapProfile`].
#[derive(Clone, Debug, PartialEq)]
pub struct TypeProfile {
    /// The type's name (`std::any::type_name`), with `[..]` around it for arrays; `(other
    /// types)` for the row that collects types beyond the profile's capacity.
    pub name: String,
    /// Objects of this type marked live by the profiling cycle.
    pub live_objects: u64,
    /// Bytes those objects occupy (their heap slots, header included).
    pub live_bytes: u64,
    /// Objects allocated since the heap was created (an estimate from sampling, exact at a
    /// profile rate of 1).
    pub allocated_objects: u64,
    /// Bytes of those allocations (their heap slots).
    pub allocated_bytes: u64,
}

/// The heap by type: what one full cycle found live, and what has been allocated since the heap
/// was created. Made by [`Mutator::heap_profile`](crate::Mutator::heap_profile); prints as a
/// table sorted by live bytes.
///
/// ```
/// use lowpause::{Heap, Member};
/// let heap = Heap::new();
/// let mut m = heap.attach();
/// let keep = m.scope(|s| s.root(s.alloc_slice(100, |_| Member::<String>::null())));
/// m.scope(|s| {
///     for (i, slot) in keep.get(s).iter().enumerate() {
///         slot.set(s, Some(s.alloc(i.to_string())));
///     }
/// });
/// let profile = m.heap_profile();
/// let strings = profile.types.iter().find(|t| t.name == "alloc::string::String").unwrap();
/// assert_eq!(strings.live_objects, 100);
/// println!("{profile}");
/// ```
#[derive(Clone, Debug)]
pub struct HeapProfile {
    /// The cycle whose marking counted the live objects.
    pub cycle: u64,
    /// The mean bytes between allocation samples (0: allocations were not sampled).
    pub profile_rate: usize,
    /// One row per type, the most live bytes first (then the most allocated bytes).
    pub types: Vec<TypeProfile>,
}

impl HeapProfile {
    /// Builds the profile from the live table (counted by `cycle`) and the allocation table.
    pub(crate) fn build(cycle: u64, profile_rate: usize, live: &[Counts], allocs: &[Counts]) -> HeapProfile {
        // One TypeInfo per type is the rule, but the compiler may duplicate a promoted constant
        // across codegen units: rows merge by name. Values: live objects and bytes, allocated
        // objects (fixed point) and bytes.
        let mut rows: std::collections::BTreeMap<String, [u64; 4]> = Default::default();
        let name = |info: Option<&'static TypeInfo>| match info {
            Some(i) if i.slice => format!("[{}]", (i.name)()),
            Some(i) => (i.name)().to_string(),
            None => "(other types)".to_string(),
        };
        for &(info, objects, bytes) in live {
            let r = rows.entry(name(info)).or_default();
            r[0] += objects;
            r[1] += bytes;
        }
        for &(info, objects, bytes) in allocs {
            let r = rows.entry(name(info)).or_default();
            r[2] += objects;
            r[3] += bytes;
        }
        let mut types: Vec<TypeProfile> = rows
            .into_iter()
            .map(|(name, [lo, lb, ao, ab])| TypeProfile {
                name,
                live_objects: lo,
                live_bytes: lb,
                allocated_objects: (ao as f64 / WEIGHT_ONE).round() as u64,
                allocated_bytes: ab,
            })
            .collect();
        types.sort_by(|a, b| {
            (b.live_bytes, b.allocated_bytes).cmp(&(a.live_bytes, a.allocated_bytes)).then(a.name.cmp(&b.name))
        });
        HeapProfile { cycle, profile_rate, types }
    }

    /// Live bytes over every type.
    pub fn live_bytes(&self) -> u64 {
        self.types.iter().map(|t| t.live_bytes).sum()
    }
}

impl fmt::Display for HeapProfile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sampling = match self.profile_rate {
            0 => "allocations not sampled".to_string(),
            1 => "every allocation recorded".to_string(),
            r => format!("allocations sampled every {} on average", super::bytes(r)),
        };
        writeln!(f, "heap profile: live at cycle {}; {sampling}", self.cycle)?;
        writeln!(f, "{:>12} {:>12} {:>14} {:>12}  type", "live objs", "live bytes", "alloc objs", "alloc bytes")?;
        for t in &self.types {
            writeln!(
                f,
                "{:>12} {:>12} {:>14} {:>12}  {}",
                t.live_objects,
                super::bytes(t.live_bytes as usize),
                t.allocated_objects,
                super::bytes(t.allocated_bytes as usize),
                t.name
            )?;
        }
        write!(
            f,
            "{:>12} {:>12}  total live",
            self.types.iter().map(|t| t.live_objects).sum::<u64>(),
            super::bytes(self.live_bytes() as usize)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    static A: TypeInfo = TypeInfo::of::<u64>();
    static B: TypeInfo = TypeInfo::slice_of::<u64>();

    #[test]
    fn rows_merge_by_type_and_sort_by_live_bytes() {
        let (live, allocs) = (TypeTable::new(), TypeTable::new());
        live.add(&A, 2, 32);
        live.add(&B, 1, 1024);
        live.add(&A, 1, 16);
        record_sample(&allocs, &A, 16, 1);
        let p = HeapProfile::build(3, 1, &live.snapshot(), &allocs.snapshot());
        assert_eq!(p.types[0].name, "[u64]");
        assert_eq!((p.types[0].live_objects, p.types[0].live_bytes), (1, 1024));
        assert_eq!(p.types[1].name, "u64");
        assert_eq!((p.types[1].live_objects, p.types[1].live_bytes), (3, 48));
        assert_eq!((p.types[1].allocated_objects, p.types[1].allocated_bytes), (1, 16));
        assert_eq!(p.live_bytes(), 1072);
        let text = p.to_string();
        assert!(text.contains("live at cycle 3"), "{text}");
        assert!(text.find("[u64]").unwrap() < text.find("  u64").unwrap(), "{text}");
    }

    #[test]
    fn clear_zeroes_counts_and_a_full_table_overflows_into_one_row() {
        let t = TypeTable::new();
        t.add(&A, 5, 80);
        t.clear();
        assert!(t.snapshot().is_empty());
        // Claim every row with a distinct key, then one more type lands in the overflow row.
        for row in t.rows.iter() {
            row.info.store(&B as *const TypeInfo as *mut TypeInfo, Ordering::Relaxed);
        }
        t.add(&A, 1, 16);
        let rows = t.snapshot();
        assert_eq!(rows.len(), 1);
        assert!(rows[0].0.is_none(), "the overflow row took it");
    }

    #[test]
    fn sampling_estimates_are_unbiased() {
        // 100_000 allocations of 64 bytes at a mean distance of 4 KiB.
        let t = TypeTable::new();
        let (rate, size) = (4096usize, 64usize);
        let mut rng = 0x1234_5678u64;
        let mut left = next_sample(rate, &mut rng);
        for _ in 0..100_000 {
            left -= size as isize;
            if left < 0 {
                record_sample(&t, &A, size, rate);
                left = next_sample(rate, &mut rng);
            }
        }
        let p = HeapProfile::build(0, rate, &[], &t.snapshot());
        let est = p.types[0].allocated_objects as f64;
        assert!((est - 100_000.0).abs() < 10_000.0, "estimate {est} within 10 % of 100000");
        assert_eq!(next_sample(0, &mut rng), isize::MAX, "rate 0 never samples");
    }
}

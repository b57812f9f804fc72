//! Size classes, after Go's runtime/sizeclasses.go: 67 classes from 16 bytes to 32 KiB, each with
//! a span size (in 8 KiB pages) chosen so that the tail a span wastes is at most 1/8 of it.
//!
//! Objects bigger than [`MAX_SMALL_SIZE`] are *large*: each gets a span of its own.
//! Every class above 24 bytes is a multiple of 16, so a payload that needs 16-byte alignment
//! (its size is then a multiple of 16) always lands in a class that keeps it aligned.

/// Bytes per page.
pub(crate) const PAGE_SIZE: usize = 8192;
/// log2 of [`PAGE_SIZE`].
pub(crate) const PAGE_SHIFT: usize = 13;
/// The largest object (header included) served from a size class.
pub(crate) const MAX_SMALL_SIZE: usize = 32768;

/// Object sizes of the classes (Go's table, without its 8-byte class: every object has a 16-byte
/// header here).
pub(crate) const CLASS_SIZES: [u32; NUM_CLASSES] = [
    16, 24, 32, 48, 64, 80, 96, 112, 128, 144, 160, 176, 192, 208, 224, 240, 256, 288, 320, 352, 384, 416, 448, 480,
    512, 576, 640, 704, 768, 896, 1024, 1152, 1280, 1408, 1536, 1792, 2048, 2304, 2688, 3072, 3200, 3456, 4096, 4864,
    5376, 6144, 6528, 6784, 6912, 8192, 9472, 9728, 10240, 10880, 12288, 13568, 14336, 16384, 18432, 19072, 20480,
    21760, 24576, 27264, 28672, 32768,
];
/// Number of small size classes.
pub(crate) const NUM_CLASSES: usize = 66;

/// Spans hold at least this many objects, up to [`MIN_SPAN_CAP`] bytes: a cache refills once per
/// span, so a 1 KiB class on one 8 KiB page (7 objects) would refill every 7 allocations.
const MIN_SPAN_OBJECTS: usize = 32;
const MIN_SPAN_CAP: usize = 64 << 10;

/// Pages per span for each class: the fewest pages whose waste is at most 1/8 of the span and
/// that hold [`MIN_SPAN_OBJECTS`] objects (or [`MIN_SPAN_CAP`] bytes).
pub(crate) const CLASS_PAGES: [u8; NUM_CLASSES] = {
    let mut out = [0u8; NUM_CLASSES];
    let mut c = 0;
    while c < NUM_CLASSES {
        let size = CLASS_SIZES[c] as usize;
        let min_span = if size * MIN_SPAN_OBJECTS < MIN_SPAN_CAP { size * MIN_SPAN_OBJECTS } else { MIN_SPAN_CAP };
        let mut pages = 1;
        loop {
            let span = pages * PAGE_SIZE;
            if span >= size && span >= min_span && (span % size) * 8 <= span {
                break;
            }
            pages += 1;
        }
        out[c] = pages as u8;
        c += 1;
    }
    out
};

/// The class of an object of `size` bytes (header included), or `None` if it is large.
/// A `const fn`, so a sized type's class is computed at compile time.
#[inline]
pub(crate) const fn class_of(size: usize) -> Option<u8> {
    if size > MAX_SMALL_SIZE {
        return None;
    }
    if size <= 1024 {
        return Some(SMALL_LOOKUP[size.div_ceil(8)]);
    }
    Some(LARGE_LOOKUP[(size - 1024).div_ceil(128)])
}

const fn first_class_at_least(size: usize) -> u8 {
    let mut c = 0;
    while (CLASS_SIZES[c] as usize) < size {
        c += 1;
    }
    c as u8
}

/// Class by size in 8-byte steps up to 1 KiB (Go's `size_to_class8`).
const SMALL_LOOKUP: [u8; 129] = {
    let mut out = [0u8; 129];
    let mut i = 0;
    while i < 129 {
        out[i] = first_class_at_least(i * 8);
        i += 1;
    }
    out
};

/// Class by size in 128-byte steps above 1 KiB (Go's `size_to_class128`).
const LARGE_LOOKUP: [u8; 249] = {
    let mut out = [0u8; 249];
    let mut i = 0;
    while i < 249 {
        out[i] = first_class_at_least(1024 + i * 128);
        i += 1;
    }
    out
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_size_gets_the_smallest_class_that_fits() {
        for size in 1..=MAX_SMALL_SIZE {
            let c = class_of(size).unwrap() as usize;
            assert!(CLASS_SIZES[c] as usize >= size, "size {size} class {c}");
            if c > 0 {
                assert!((CLASS_SIZES[c - 1] as usize) < size, "size {size} class {c} not smallest");
            }
        }
        assert_eq!(class_of(MAX_SMALL_SIZE + 1), None);
    }

    #[test]
    fn aligned_sizes_stay_aligned() {
        for size in (16..=MAX_SMALL_SIZE).step_by(16) {
            let c = class_of(size).unwrap() as usize;
            assert_eq!(CLASS_SIZES[c] % 16, 0, "size {size}");
        }
    }

    #[test]
    fn spans_waste_at_most_an_eighth() {
        for c in 0..NUM_CLASSES {
            let span = CLASS_PAGES[c] as usize * PAGE_SIZE;
            let size = CLASS_SIZES[c] as usize;
            assert!(span / size >= 1);
            assert!((span % size) * 8 <= span, "class {c}");
        }
    }
}

//! Address space from the operating system: one contiguous reservation per heap.
//!
//! The reservation is mapped `PROT_NONE` with `MAP_NORESERVE`, so it costs address space only;
//! [`Reservation::commit`] makes a prefix of it readable and writable in large chunks (so the
//! kernel's count of mappings stays small: one committed prefix is one mapping).
//!
//! Invariant kept here: `[base, base + committed)` is readable and writable; the rest of the
//! reservation faults on access. `committed` only grows.

use std::io;

/// Commit granularity: large, so a big heap is still only a handful of kernel mappings.
pub(crate) const COMMIT_CHUNK: usize = 64 << 20;

/// A `PROT_NONE` reservation of address space, committed on demand, unmapped on drop.
pub(crate) struct Reservation {
    base: usize,
    len: usize,
    committed: usize,
}

// SAFETY: the reservation is plain address space; the struct only records its bounds.
unsafe impl Send for Reservation {}
// SAFETY: as above; shared access only reads the bounds.
unsafe impl Sync for Reservation {}

/// Maps `len` bytes of fresh, zeroed, unreserved anonymous memory with protection `prot`.
pub(crate) fn map_anonymous(len: usize, prot: libc::c_int) -> io::Result<usize> {
    // SAFETY: an anonymous private mapping at an address the kernel chooses touches no existing
    // memory; the result is checked for MAP_FAILED.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            prot,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    Ok(p as usize)
}

/// Unmaps a mapping made by [`map_anonymous`].
///
/// # Safety
/// `[addr, addr + len)` is a whole mapping from [`map_anonymous`] that nothing uses any more.
pub(crate) unsafe fn unmap(addr: usize, len: usize) {
    // SAFETY: by the caller's guarantee nothing refers to the range any more.
    let r = unsafe { libc::munmap(addr as *mut libc::c_void, len) };
    debug_assert_eq!(r, 0, "munmap failed: {}", io::Error::last_os_error());
}

/// Returns the pages of `[addr, addr + len)` to the OS (`MADV_DONTNEED`): they stay mapped and
/// read as zero on their next touch. Returns whether the kernel agreed.
///
/// # Safety
/// The range is committed memory of a reservation that no object occupies (a free run the caller
/// holds out of the page heap), so discarding its contents loses nothing.
pub(crate) unsafe fn release(addr: usize, len: usize) -> bool {
    // SAFETY: by the caller's guarantee the range is ours, committed and unused.
    unsafe { libc::madvise(addr as *mut libc::c_void, len, libc::MADV_DONTNEED) == 0 }
}

impl Reservation {
    /// Reserves `len` bytes (a multiple of the page size) of address space.
    pub(crate) fn new(len: usize) -> io::Result<Reservation> {
        let base = map_anonymous(len, libc::PROT_NONE)?;
        Ok(Reservation { base, len, committed: 0 })
    }

    #[inline]
    pub(crate) fn base(&self) -> usize {
        self.base
    }

    #[inline]
    pub(crate) fn committed(&self) -> usize {
        self.committed
    }

    /// Grows the committed prefix to at least `upto` bytes, in [`COMMIT_CHUNK`] steps.
    /// Fails if `upto` exceeds the reservation or the kernel refuses.
    pub(crate) fn commit(&mut self, upto: usize) -> io::Result<()> {
        if upto <= self.committed {
            return Ok(());
        }
        if upto > self.len {
            return Err(io::Error::new(io::ErrorKind::OutOfMemory, "reservation exhausted"));
        }
        let new = upto.div_ceil(COMMIT_CHUNK).saturating_mul(COMMIT_CHUNK).min(self.len);
        // SAFETY: `[base + committed, base + new)` lies inside our own reservation, which nothing
        // else maps; making it read-write cannot affect any other memory.
        let r = unsafe {
            libc::mprotect(
                (self.base + self.committed) as *mut libc::c_void,
                new - self.committed,
                libc::PROT_READ | libc::PROT_WRITE,
            )
        };
        if r != 0 {
            return Err(io::Error::last_os_error());
        }
        self.committed = new;
        Ok(())
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        // SAFETY: the reservation is dropped with the heap, after every object in it is dead.
        unsafe { unmap(self.base, self.len) };
    }
}

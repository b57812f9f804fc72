//! The heap's memory: the OS reservation, pages, size-classed spans, side bitmaps, central span
//! lists and per-thread allocation caches.
//!
//! ```text
//!   Reservation (mmap PROT_NONE, committed in 64 MiB chunks)
//!     └── PageHeap: runs of 8 KiB pages          (lock: `pages`)
//!           └── Span: one size class × kind, or one large object
//!                 ├── held by a thread's Cache   (no lock: the fast path)
//!                 └── or on a Central list        (lock: one per class × kind)
//!   page table: page number → Span, for the marker to find an object's bitmaps
//! ```
//!
//! This module knows nothing of marking policy, roots or threads: the collector drives it. It keeps
//! these invariants:
//! - a span in use is in exactly one place: one thread's cache, one central list, or the hands of
//!   whoever popped it to sweep it (see `span.rs` for the holder rule);
//! - the page table maps every page of every span in use to that span, set before the span is
//!   handed to anyone and cleared only after the span is dead;
//! - every object lies inside `[base, base + len)`, which is what `Member`'s heap check compares.

pub(crate) mod cache;
pub(crate) mod os;
pub(crate) mod page_heap;
pub(crate) mod size_class;
pub(crate) mod span;

use crate::sync::{AtomicBool, AtomicPtr, AtomicU32, AtomicUsize, Mutex, Ordering};
use crossbeam_utils::CachePadded;
use page_heap::PageHeap;
use size_class::{CLASS_PAGES, CLASS_SIZES, NUM_CLASSES, PAGE_SHIFT, PAGE_SIZE};
use span::{Span, SpanKind};
use std::ptr::NonNull;

/// A pointer to a span in use. Spans are boxed and freed only when their pages are returned.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct SpanPtr(pub(crate) NonNull<Span>);
// SAFETY: a span is shared between threads under the holder rule (span.rs); the pointer itself is
// just an address.
unsafe impl Send for SpanPtr {}

impl SpanPtr {
    /// # Safety
    /// The span is in use (not yet freed).
    #[inline]
    pub(crate) unsafe fn get<'a>(self) -> &'a Span {
        // SAFETY: spans in use are live boxes (caller's guarantee).
        unsafe { self.0.as_ref() }
    }
}

/// The spans of one size class and kind that no thread holds, in two pairs of sets indexed by
/// the parity of the sweep generation (Go's `mcentral.partial/full[sweepgen/2%2]`): with the
/// heap's generation `sg`, `sets[sg/2 % 2]` holds swept spans and the other pair unswept ones.
/// Bumping `sg` by 2 turns every swept span into an unswept one at once; a span released at any
/// moment goes into the set its own `sweepgen` says, read under the lock.
#[derive(Default)]
pub(crate) struct Central {
    /// `[parity][0: with free slots, 1: full]`.
    sets: [[Vec<SpanPtr>; 2]; 2],
}

impl Central {
    fn swept(&mut self, sg: u32) -> &mut [Vec<SpanPtr>; 2] {
        &mut self.sets[(sg / 2 % 2) as usize]
    }

    fn unswept(&mut self, sg: u32) -> &mut [Vec<SpanPtr>; 2] {
        &mut self.sets[(sg / 2 % 2 + 1) as usize % 2]
    }

    fn pop_unswept(&mut self, sg: u32) -> Option<SpanPtr> {
        let u = self.unswept(sg);
        u[0].pop().or_else(|| u[1].pop())
    }

    fn all(&self) -> impl Iterator<Item = &SpanPtr> {
        self.sets.iter().flatten().flatten()
    }
}

/// Counters of the memory layer; all monotonic unless said otherwise.
#[derive(Default)]
pub(crate) struct MemoryCounters {
    /// Bytes of objects (rounded to their slots) allocated since the heap began.
    pub(crate) allocated_bytes: AtomicUsize,
    pub(crate) allocated_objects: AtomicUsize,
    pub(crate) freed_bytes: AtomicUsize,
    pub(crate) freed_objects: AtomicUsize,
    /// Bytes allocated black (counted as marked by the cycle that was running).
    pub(crate) black_bytes: AtomicUsize,
    /// Live bytes and objects found by the sweep of the current sweep generation so far.
    pub(crate) swept_live_bytes: AtomicUsize,
    pub(crate) swept_live_objects: AtomicUsize,
}

/// Everything the heap's memory consists of.
pub(crate) struct Memory {
    base: usize,
    len: usize,
    pages: Mutex<Pages>,
    page_table: *const AtomicPtr<Span>,
    page_table_bytes: usize,
    centrals: Box<[CachePadded<Mutex<Central>>]>,
    large: CachePadded<Mutex<Central>>,
    /// Unswept spans per central (the large one last), kept under each central's lock and read
    /// without it, so sweepers skip empty centrals without touching their locks.
    unswept_len: Box<[AtomicUsize]>,
    /// Go's `sweepgen`: +2 every cycle (see span.rs).
    pub(crate) sweepgen: AtomicU32,
    /// Spans popped from an unswept set and not yet swept, plus lazy sweeps whose dead objects'
    /// drop glue is not queued yet ([`Memory::release_held`]).
    sweeping: AtomicUsize,
    /// The current sweep frees nothing: its mark failed (see `begin_sweep`).
    keep_all: AtomicBool,
    pub(crate) counters: MemoryCounters,
}

// SAFETY: `page_table` points to a mapping the struct owns, accessed only through atomics.
unsafe impl Send for Memory {}
// SAFETY: as above; all other shared state is behind locks or atomics.
unsafe impl Sync for Memory {}

/// Buffers a lazy sweep reuses, so an allocation's slow path does not call the system allocator.
#[derive(Default)]
pub(crate) struct Scratch {
    batch: Vec<SpanPtr>,
    rest: Vec<SpanPtr>,
    dead: Vec<SpanPtr>,
    /// A refill swept spans with drop glue: it holds the sweep open ([`Memory::hold_sweep`])
    /// until the owner has queued what `on_dead` collected and calls [`Memory::release_held`].
    held: bool,
}

/// The page heap and the span structs kept for reuse, under one lock.
struct Pages {
    heap: PageHeap,
    // Boxed on purpose: the page table and every list point to these addresses.
    #[allow(clippy::vec_box)]
    spare: Vec<Box<Span>>,
}

/// Unswept spans an allocation sweeps at most before it takes a fresh span instead.
pub(crate) const LAZY_SWEEP_BUDGET: usize = 16;
/// Spans a lazy sweep pops at a time.
const LAZY_SWEEP_BITE: usize = 4;

/// What a sweep does with one dead (allocated, unmarked) object; the sweeper's `on_dead`
/// decides (sweep.rs: objects with drop glue keep their slot until it has run).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Dead {
    /// Free the slot; the object counts as freed now.
    Free,
    /// Keep the slot allocated; the object counts as freed now (its slot follows later).
    KeepCounted,
    /// Keep the slot allocated; the object was counted before.
    Keep,
    /// Free the slot; the object was counted before.
    FreeUncounted,
}

/// Out of address space in the reservation.
#[derive(Debug)]
pub(crate) struct Exhausted;

impl Memory {
    /// Reserves `len` bytes (a multiple of [`PAGE_SIZE`]) for a new heap.
    pub(crate) fn new(len: usize) -> std::io::Result<Memory> {
        let reservation = os::Reservation::new(len)?;
        let base = reservation.base();
        let page_table_bytes = (len >> PAGE_SHIFT) * std::mem::size_of::<AtomicPtr<Span>>();
        // Zeroed anonymous memory is a table of null `AtomicPtr`s; untouched entries cost nothing.
        let page_table = os::map_anonymous(page_table_bytes, libc::PROT_READ | libc::PROT_WRITE)?;
        Ok(Memory {
            base,
            len,
            pages: Mutex::new(Pages { heap: PageHeap::new(reservation), spare: Vec::new() }),
            page_table: page_table as *const AtomicPtr<Span>,
            page_table_bytes,
            centrals: (0..NUM_CLASSES * SpanKind::COUNT)
                .map(|_| CachePadded::new(Mutex::new(Central::default())))
                .collect(),
            large: CachePadded::new(Mutex::new(Central::default())),
            unswept_len: (0..=NUM_CLASSES * SpanKind::COUNT).map(|_| AtomicUsize::new(0)).collect(),
            sweepgen: AtomicU32::new(2),
            sweeping: AtomicUsize::new(0),
            keep_all: AtomicBool::new(false),
            counters: MemoryCounters::default(),
        })
    }

    /// Start of the reservation.
    #[inline]
    pub(crate) fn base(&self) -> usize {
        self.base
    }

    /// Length of the reservation.
    #[inline]
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Whether `addr` lies inside this heap's reservation (one subtract and one compare).
    #[inline]
    pub(crate) fn contains(&self, addr: usize) -> bool {
        addr.wrapping_sub(self.base) < self.len
    }

    /// Bytes committed from the OS, and bytes in spans in use.
    pub(crate) fn footprint(&self) -> (usize, usize) {
        let p = self.pages.lock();
        (p.heap.committed(), p.heap.in_use_pages * PAGE_SIZE)
    }

    /// Bytes the heap has touched and not returned to the OS (spans in use and free pages kept),
    /// bytes of free pages released to the OS, and bytes in spans in use.
    pub(crate) fn mapped(&self) -> (usize, usize, usize) {
        let p = self.pages.lock();
        (p.heap.mapped(), p.heap.released_pages * PAGE_SIZE, p.heap.in_use_pages * PAGE_SIZE)
    }

    /// The most bytes in spans in use since the last call (which starts a new window).
    pub(crate) fn take_peak_in_use(&self) -> usize {
        self.pages.lock().heap.take_peak_in_use() * PAGE_SIZE
    }

    /// The scavenger: returns free pages to the OS, largest free runs first, until the heap maps
    /// at most `target` bytes or no unreleased free page is left. The page-heap lock is held only
    /// to take and put back each run, never across the system call. Returns the bytes released.
    pub(crate) fn scavenge(&self, target: usize) -> usize {
        let mut released = 0;
        loop {
            let run = {
                let mut p = self.pages.lock();
                if p.heap.mapped() <= target {
                    break;
                }
                match p.heap.take_for_release() {
                    Some(run) => run,
                    None => break,
                }
            };
            let (start, npages) = run;
            // SAFETY: the run is free (no span, no object) and out of the page heap's lists until
            // we put it back, so nothing else touches it meanwhile.
            let ok = unsafe { os::release(start, npages * PAGE_SIZE) };
            let mut p = self.pages.lock();
            if ok {
                p.heap.put_released(start, npages);
                released += npages * PAGE_SIZE;
            } else {
                p.heap.free_taken(start, npages);
                break;
            }
        }
        released
    }

    #[inline]
    fn page_entry(&self, addr: usize) -> &AtomicPtr<Span> {
        debug_assert!(self.contains(addr));
        // SAFETY: `addr` is inside the reservation, so its page number indexes the page table,
        // which has one entry per page of the reservation and lives as long as `self`.
        unsafe { &*self.page_table.add((addr - self.base) >> PAGE_SHIFT) }
    }

    /// The span holding `addr`, which must be inside an object of this heap.
    ///
    /// # Safety
    /// `addr` lies inside an allocated object of this heap, so its span is in use.
    #[inline]
    pub(crate) unsafe fn span_of<'a>(&self, addr: usize) -> &'a Span {
        let p = self.page_entry(addr).load(Ordering::Acquire);
        debug_assert!(!p.is_null(), "no span at {addr:#x}: a reference to a freed object");
        // SAFETY: the page table maps every page of a span in use to it (module invariant), and
        // the caller guarantees the span is in use.
        unsafe { &*p }
    }

    /// The span in use that holds `addr`, if any (a checked [`Memory::span_of`], for the
    /// verifier: `addr` must lie inside the reservation).
    pub(crate) fn span_in_use<'a>(&self, addr: usize) -> Option<&'a Span> {
        let p = self.page_entry(addr).load(Ordering::Acquire);
        // SAFETY: a non-null page-table entry points to a span in use (module invariant); a span
        // is freed only after its pages are unmapped from the table, which happens only when no
        // object of it is reachable, and the verifier only follows reachable references.
        (!p.is_null()).then(|| unsafe { &*p })
    }

    #[inline]
    fn central_index(class: u8, kind: SpanKind) -> usize {
        if class == Span::LARGE {
            NUM_CLASSES * SpanKind::COUNT
        } else {
            class as usize * SpanKind::COUNT + kind.index()
        }
    }

    #[inline]
    fn central_at(&self, i: usize) -> &Mutex<Central> {
        self.centrals.get(i).map_or(&*self.large, |c| &**c)
    }

    /// Every central list, the large-object one last.
    pub(crate) fn all_centrals(&self) -> impl Iterator<Item = &Mutex<Central>> {
        self.centrals.iter().map(|c| &**c).chain(std::iter::once(&*self.large))
    }

    /// Takes pages for a new span and maps them in the page table.
    fn new_span(&self, npages: usize, class: u8, kind: SpanKind, elem_size: usize) -> Result<SpanPtr, Exhausted> {
        let mut spins = 0;
        let (base, spare) = loop {
            let mut p = self.pages.lock();
            if let Some(base) = p.heap.alloc(npages) {
                break (base, p.spare.pop());
            }
            // No run fits: unless the scavenger has free runs out for a system call (they come
            // back in microseconds), the reservation is exhausted.
            if p.heap.out_for_release == 0 {
                return Err(Exhausted);
            }
            drop(p);
            spins += 1;
            crate::sync::spin_wait(spins);
        };
        let fresh = Span::new(base, npages, class, kind, elem_size, self.sweepgen.load(Ordering::Relaxed));
        let span = match spare {
            Some(mut b) => {
                *b = fresh;
                b
            }
            None => Box::new(fresh),
        };
        let ptr = NonNull::from(Box::leak(span));
        for p in 0..npages {
            self.page_entry(base + p * PAGE_SIZE).store(ptr.as_ptr(), Ordering::Release);
        }
        Ok(SpanPtr(ptr))
    }

    /// Unmaps dead spans and returns their pages, under one acquisition of the page-heap lock
    /// (a sweeper frees spans in bursts; taking the lock per span would starve allocating
    /// threads waiting for it).
    ///
    /// # Safety
    /// No object of the spans is reachable or referenced, and nobody else holds them.
    pub(crate) unsafe fn free_spans(&self, spans: &mut Vec<SpanPtr>) {
        if spans.is_empty() {
            return;
        }
        for span in spans.iter() {
            // SAFETY: the caller hands over spans in use.
            let s = unsafe { span.get() };
            for p in 0..s.npages {
                self.page_entry(s.base + p * PAGE_SIZE).store(std::ptr::null_mut(), Ordering::Release);
            }
        }
        let mut pages = self.pages.lock();
        for span in spans.drain(..) {
            // SAFETY: the caller hands over the only reference to a span box made in `new_span`;
            // it is kept for reuse (no allocator traffic between threads).
            let s = unsafe { Box::from_raw(span.0.as_ptr()) };
            pages.heap.free(s.base, s.npages);
            pages.spare.push(s);
        }
    }

    /// Puts a span no thread holds any more back on its central list: the unswept sets if the
    /// current generation has not swept it yet (it was held through `begin_sweep`), else the
    /// swept ones.
    ///
    /// # Safety
    /// The caller is the span's holder and gives it up.
    pub(crate) unsafe fn release_span(&self, span: SpanPtr) {
        // SAFETY: forwarded.
        unsafe { self.release_spans(std::slice::from_ref(&span)) };
    }

    /// [`Memory::release_span`] for many spans, taking each central's lock once per run of
    /// consecutive spans that belong to it (a sweeper releases spans in bursts; a lock per span
    /// would starve the allocating threads waiting for it).
    ///
    /// # Safety
    /// The caller is the holder of every span and gives them up.
    pub(crate) unsafe fn release_spans(&self, spans: &[SpanPtr]) {
        let mut i = 0;
        while i < spans.len() {
            // SAFETY: the caller holds the spans.
            let first = unsafe { spans[i].get() };
            let ci = Self::central_index(first.class, first.kind);
            let mut c = self.central_at(ci).lock();
            let sg = self.sweepgen.load(Ordering::Acquire);
            while i < spans.len() {
                // SAFETY: as above.
                let s = unsafe { spans[i].get() };
                if (s.class, s.kind) != (first.class, first.kind) {
                    break;
                }
                if s.sweepgen.load(Ordering::Relaxed) < sg {
                    c.unswept(sg)[0].push(spans[i]);
                    self.unswept_len[ci].fetch_add(1, Ordering::SeqCst);
                } else {
                    // SAFETY: the caller is the holder until the span is on a list.
                    let full = unsafe { s.is_full() } as usize;
                    c.swept(sg)[full].push(spans[i]);
                }
                i += 1;
            }
        }
    }

    /// A span of `class`/`kind` with a free slot, for a cache: a swept one with free slots, else
    /// one swept here (at most [`LAZY_SWEEP_BUDGET`] spans, popped [`LAZY_SWEEP_BITE`] at a time
    /// under one lock acquisition each and swept outside it, stopping at the first with room, so
    /// an allocation never sweeps for long nor queues on the lock), else a fresh one. Sweeping
    /// runs no user code: `on_dead` decides each dead object's slot (the collector's, for kinds
    /// with drop glue, queues their drop glue; see `Memory::sweep_span`).
    pub(crate) fn refill(
        &self,
        class: u8,
        kind: SpanKind,
        scratch: &mut Scratch,
        on_dead: &mut dyn FnMut(usize) -> Dead,
    ) -> Result<SpanPtr, Exhausted> {
        let ci = Self::central_index(class, kind);
        let Scratch { batch, rest, dead, held } = scratch;
        let mut budget = LAZY_SWEEP_BUDGET;
        loop {
            {
                let mut c = self.central_at(ci).lock();
                let sg = self.sweepgen.load(Ordering::Acquire);
                if let Some(s) = c.swept(sg)[0].pop() {
                    return Ok(s);
                }
                // Sweep in small bites and stop at the first span with room: what is left is the
                // background sweeper's, and this allocation's stall stays short.
                while batch.len() < LAZY_SWEEP_BITE.min(budget) {
                    let Some(s) = c.pop_unswept(sg) else { break };
                    batch.push(s);
                }
                // One more for drop glue found, while these spans already count: the sweep
                // cannot look done between their sweeping and the queueing of their dead.
                let hold = usize::from(kind.drop() && !batch.is_empty() && !*held);
                *held |= hold == 1;
                self.sweeping.fetch_add(batch.len() + hold, Ordering::SeqCst);
                self.unswept_len[ci].fetch_sub(batch.len(), Ordering::SeqCst);
            }
            if batch.is_empty() {
                break;
            }
            budget -= batch.len();
            let mut found = None;
            for s in batch.drain(..) {
                // SAFETY: popping the span from an unswept set made us its holder, and marking of
                // its generation is over (it is on an unswept list). A kind without drop glue
                // frees every dead slot (no call per object).
                let swept = unsafe {
                    if kind.drop() {
                        self.sweep_span(s, &mut *on_dead, dead)
                    } else {
                        self.sweep_span(s, |_| Dead::Free, dead)
                    }
                };
                if let Some(s) = swept {
                    // SAFETY: we hold it.
                    if found.is_none() && !unsafe { s.get().is_full() } {
                        found = Some(s);
                    } else {
                        rest.push(s);
                    }
                }
            }
            // SAFETY: we hold the swept spans and give back all but `found`; the emptied ones
            // hold no live object.
            unsafe {
                self.release_spans(rest);
                self.free_spans(dead);
            }
            rest.clear();
            if let Some(s) = found {
                return Ok(s);
            }
        }
        let size = CLASS_SIZES[class as usize] as usize;
        self.new_span(CLASS_PAGES[class as usize] as usize, class, kind, size)
    }

    /// A fresh span for one large object of `size` bytes, already holding its (only) slot. The
    /// caller holds it until the object is initialised, then releases it.
    pub(crate) fn alloc_large(&self, size: usize, kind: SpanKind) -> Result<SpanPtr, Exhausted> {
        if size > self.len {
            return Err(Exhausted);
        }
        let npages = size.div_ceil(PAGE_SIZE);
        let span = self.new_span(npages, Span::LARGE, kind, npages * PAGE_SIZE)?;
        // SAFETY: the span is new; we are its only holder.
        let slot = unsafe { span.get().alloc_state().alloc_slow(1) };
        debug_assert_eq!(slot, Some(0));
        Ok(span)
    }

    /// Starts a new sweep generation after marking: flips every central's swept and unswept
    /// sets (O(1)). Spans held by caches join the unswept sets when released. Called with the
    /// previous sweep finished (the collector's job). With `keep_all` (the mark failed, so its
    /// marks prove nothing) the sweep frees nothing: every allocated slot stays allocated and
    /// every mark is cleared.
    pub(crate) fn begin_sweep(&self, keep_all: bool) {
        debug_assert!(self.sweep_done());
        self.keep_all.store(keep_all, Ordering::SeqCst);
        self.counters.swept_live_bytes.store(0, Ordering::Relaxed);
        self.counters.swept_live_objects.store(0, Ordering::Relaxed);
        let sg = self.sweepgen.fetch_add(2, Ordering::AcqRel) + 2;
        // The flip is O(1); the hints follow, one short lock per central. A span pushed or popped
        // between the bump and its central's turn here updates the hint itself, under the lock,
        // after this store or before it; the store below recounts from the lists, so it is exact.
        for i in 0..self.unswept_len.len() {
            let mut c = self.central_at(i).lock();
            let u = c.unswept(sg);
            self.unswept_len[i].store(u[0].len() + u[1].len(), Ordering::SeqCst);
        }
    }

    /// Whether no span of the current generation is left to sweep (nor being swept). Spans still
    /// held by caches are the caller's to account for.
    /// Ends the hold a [`Memory::refill`] of spans with drop glue took on the sweep, once the
    /// drop glue it found is queued: until then the cycle never counts as swept (so `collect`
    /// never returns with dead objects in someone's hands).
    pub(crate) fn release_held(&self, scratch: &mut Scratch) {
        if std::mem::take(&mut scratch.held) {
            self.sweeping.fetch_sub(1, Ordering::SeqCst);
        }
    }

    pub(crate) fn sweep_done(&self) -> bool {
        // A pop raises `sweeping` before it lowers a hint, so if every hint reads 0 here, a span
        // popped meanwhile shows in `sweeping` below.
        self.unswept_len.iter().all(|n| n.load(Ordering::SeqCst) == 0) && self.sweeping.load(Ordering::SeqCst) == 0
    }

    /// Pops up to `max` unswept spans, from any list. The caller holds them and must sweep each
    /// with [`Memory::sweep_span`].
    pub(crate) fn pop_unswept(&self, max: usize, out: &mut Vec<SpanPtr>) {
        for i in 0..self.unswept_len.len() {
            if out.len() >= max {
                return;
            }
            if self.unswept_len[i].load(Ordering::SeqCst) == 0 {
                continue;
            }
            let mut c = self.central_at(i).lock();
            let sg = self.sweepgen.load(Ordering::Acquire);
            for list in c.unswept(sg) {
                while out.len() < max {
                    let Some(sp) = list.pop() else { break };
                    out.push(sp);
                    self.sweeping.fetch_add(1, Ordering::SeqCst);
                    self.unswept_len[i].fetch_sub(1, Ordering::SeqCst);
                }
            }
        }
    }

    /// Sweeps a span its caller holds: calls `on_dead(object start)` for every object that was
    /// allocated and is unmarked and does what it answers, then makes the marks (and the kept
    /// slots) the new alloc bits. Returns the span if it still has allocated slots (the caller
    /// still holds it); an empty span goes to `dead`, for the caller to return with
    /// [`Memory::free_spans`]. In a sweep that keeps everything (`begin_sweep`), `on_dead` is
    /// not called.
    ///
    /// # Safety
    /// The caller holds the span (popped it from `unswept`), marking of this cycle has finished,
    /// and no thread can reach the span's unmarked objects.
    pub(crate) unsafe fn sweep_span(
        &self,
        span: SpanPtr,
        mut on_dead: impl FnMut(usize) -> Dead,
        dead_spans: &mut Vec<SpanPtr>,
    ) -> Option<SpanPtr> {
        // SAFETY: the caller holds the span, so it is in use and its alloc state is ours.
        let s = unsafe { span.get() };
        // SAFETY: as above.
        let st = unsafe { s.alloc_state() };
        let sg = self.sweepgen.load(Ordering::Acquire);
        debug_assert_eq!(
            s.sweepgen.load(Ordering::Relaxed),
            sg - 2,
            "sweeping a span (class {}) that is not exactly one generation old",
            s.class
        );
        s.sweepgen.store(sg - 1, Ordering::Relaxed);
        let keep_all = self.keep_all.load(Ordering::Relaxed);
        let (mut live, mut kept, mut freed) = (0usize, 0usize, 0usize);
        for w in 0..st.words {
            let marked = s.mark_bits[w].load(Ordering::Acquire);
            let allocated = st.allocated_word(w);
            let mut next = marked;
            if keep_all {
                next |= allocated;
                kept += (allocated & !marked).count_ones() as usize;
            } else {
                let mut dead_bits = allocated & !marked;
                while dead_bits != 0 {
                    let b = dead_bits.trailing_zeros() as usize;
                    dead_bits &= dead_bits - 1;
                    match on_dead(s.slot_addr(w * 64 + b)) {
                        Dead::Free => freed += 1,
                        Dead::FreeUncounted => {}
                        Dead::KeepCounted => {
                            freed += 1;
                            kept += 1;
                            next |= 1 << b;
                        }
                        Dead::Keep => {
                            kept += 1;
                            next |= 1 << b;
                        }
                    }
                }
            }
            st.alloc_bits[w] = next;
            s.mark_bits[w].store(0, Ordering::Relaxed);
            live += marked.count_ones() as usize;
        }
        st.reset_after_sweep(live + kept);
        s.sweepgen.store(sg, Ordering::Release);
        self.counters.freed_objects.fetch_add(freed, Ordering::Relaxed);
        self.counters.freed_bytes.fetch_add(freed * s.elem_size, Ordering::Relaxed);
        self.counters.swept_live_objects.fetch_add(live, Ordering::Relaxed);
        self.counters.swept_live_bytes.fetch_add(live * s.elem_size, Ordering::Relaxed);
        let before = self.sweeping.fetch_sub(1, Ordering::SeqCst);
        debug_assert!(before > 0, "swept a span that was not popped from an unswept set");
        if live + kept == 0 {
            dead_spans.push(span);
            None
        } else {
            Some(span)
        }
    }

    /// Visits every allocated object (its start address and span) of every span on a central list.
    /// Used only when the heap is torn down and by the verifier, with every cache released.
    pub(crate) fn for_each_allocated(&self, mut f: impl FnMut(usize, &Span)) {
        for central in self.all_centrals() {
            let c = central.lock();
            for &sp in c.all() {
                // SAFETY: spans on a list are in use, and with every cache released the list's lock
                // makes us their holder for the duration.
                let s = unsafe { sp.get() };
                // SAFETY: as above.
                let st = unsafe { s.alloc_state() };
                for i in 0..s.nelems {
                    if st.is_allocated(i) {
                        f(s.slot_addr(i), s);
                    }
                }
            }
        }
    }

    /// Frees every span (heap teardown; every object is already dropped).
    ///
    /// # Safety
    /// Nothing refers to any object of the heap any more.
    pub(crate) unsafe fn free_all(&self) {
        for central in self.all_centrals() {
            let mut spans: Vec<SpanPtr> = std::mem::take(&mut *central.lock()).all().copied().collect();
            // SAFETY: the caller guarantees nothing refers to the heap's objects.
            unsafe { self.free_spans(&mut spans) };
        }
    }
}

impl Drop for Memory {
    fn drop(&mut self) {
        // SAFETY: spans still on lists are plain boxes; free them so their bitmaps are returned.
        unsafe { self.free_all() };
        // SAFETY: the page table mapping is ours and nothing uses it any more.
        unsafe { os::unmap(self.page_table as usize, self.page_table_bytes) };
    }
}

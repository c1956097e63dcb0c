//! Frame memory the connections of one shard reuse, placed so a produce request's records
//! can be written to a segment file straight from it.
//!
//! Owns: page-aligned buffers shared by the shard's connections ([`take`] and [`freeze`] use
//! the shard thread's own [`FrameBuffers`]). A frame is read into one of them at a chosen
//! offset within a memory page (its *phase*; see `produce_placement`); once read it is frozen
//! into a [`Bytes`] whose views (the decoded request's record sets and strings) keep the
//! buffer alive — on this shard or another one, or inside a segment writer until the direct
//! write of those records completes. A buffer is reused only when no view of it is left (its
//! `Arc` is unique), so a frame's bytes never change under a reader.
//!
//! Why reuse: a megabyte-sized produce frame is read into bytes an earlier frame already
//! initialized, so it is not zeroed before the socket read overwrites it (that `memset` was
//! 9% of the broker's produce CPU; a fresh huge page is zeroed by the kernel on first touch
//! just the same).
//!
//! Why per shard: buffers still referenced are kept too, so each comes back for a later frame
//! once released instead of being freed. A connection producing to many partitions has a
//! frame per partition write in flight (librdkafka at 100 partitions: up to ~30 1 MB frames,
//! `MAX_IN_FLIGHT_REQUESTS` at most), so four buffers per connection were not enough (new
//! huge pages zeroed on first touch were 17% of the broker's CPU), while enough for every
//! connection would bound memory by the number of connections. One shard-wide set is bounded
//! once: [`FrameBuffers::KEEP_TOTAL_BYTES`] per shard, outside `sluice.shard.memory.bytes`.
//!
//! Must never: hand out memory another view still references, keep more than
//! [`FrameBuffers::KEEP_BUFFERS`] buffers, a buffer over [`FrameBuffers::KEEP_BYTES`] or
//! [`FrameBuffers::KEEP_TOTAL_BYTES`] in all between requests (per shard), or give a mutable
//! slice of uninitialized memory (buffers are zeroed when allocated).

use std::alloc::Layout;
use std::cell::RefCell;
use std::ptr::NonNull;
use std::sync::Arc;

use bytes::Bytes;

/// Alignment of every frame buffer: the segment writer's page, which its direct writes from a
/// frame need (see `produce_placement`).
pub const FRAME_ALIGN_BYTES: usize = sluice_engine::segment_writer::PAGE_BYTES as usize;

/// Size of a transparent huge page on x86-64.
const HUGE_PAGE_BYTES: usize = 2 << 20;

/// Buffers at least this big are mapped on their own, aligned to a huge page and advised to
/// use transparent huge pages: each direct write from one pins its pages (`get_user_pages`),
/// which costs per page, and a huge page is pinned as one.
pub const HUGE_BUFFER_MIN_BYTES: usize = 512 << 10;

/// Zeroed memory aligned to at least [`FRAME_ALIGN_BYTES`].
struct AlignedBuf {
    ptr: NonNull<u8>,
    capacity: usize,
    /// `None`: an anonymous mapping of `capacity` bytes (see [`HUGE_BUFFER_MIN_BYTES`]).
    heap_layout: Option<Layout>,
}

// Plain owned memory: mutated only through `&mut` (a unique `Arc`), freed by whichever
// thread drops the last view.
unsafe impl Send for AlignedBuf {}
unsafe impl Sync for AlignedBuf {}

impl AlignedBuf {
    fn zeroed(capacity: usize) -> AlignedBuf {
        if capacity >= HUGE_BUFFER_MIN_BYTES {
            if let Some(buf) = Self::mapped(capacity.next_multiple_of(HUGE_PAGE_BYTES)) {
                return buf;
            }
        }
        let layout = Layout::from_size_align(capacity.max(1), FRAME_ALIGN_BYTES).expect("frame buffer layout");
        // SAFETY: the layout has a non-zero size.
        let ptr = unsafe { std::alloc::alloc_zeroed(layout) };
        let ptr = NonNull::new(ptr).unwrap_or_else(|| std::alloc::handle_alloc_error(layout));
        AlignedBuf { ptr, capacity: layout.size(), heap_layout: Some(layout) }
    }

    /// `len` bytes (a multiple of the huge page) mapped at a huge-page boundary: one extra huge
    /// page is mapped and the unaligned ends are unmapped. `None` if the kernel refuses.
    fn mapped(len: usize) -> Option<AlignedBuf> {
        let map_len = len + HUGE_PAGE_BYTES;
        // SAFETY: a fresh private anonymous mapping; only its aligned middle is kept.
        unsafe {
            let p = libc::mmap(
                std::ptr::null_mut(),
                map_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            );
            if p == libc::MAP_FAILED {
                return None;
            }
            let start = p as usize;
            let aligned = start.next_multiple_of(HUGE_PAGE_BYTES);
            if aligned > start {
                libc::munmap(p, aligned - start);
            }
            let tail = aligned + len;
            if start + map_len > tail {
                libc::munmap(tail as *mut libc::c_void, start + map_len - tail);
            }
            // Advice only: without huge pages the buffer works the same, a little slower.
            libc::madvise(aligned as *mut libc::c_void, len, libc::MADV_HUGEPAGE);
            Some(AlignedBuf { ptr: NonNull::new(aligned as *mut u8)?, capacity: len, heap_layout: None })
        }
    }

    fn capacity(&self) -> usize {
        self.capacity
    }

    fn as_slice(&self) -> &[u8] {
        // SAFETY: `ptr` owns `capacity` initialized (zeroed, then written) bytes.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.capacity) }
    }

    fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as above, and `&mut self` is the only access.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.capacity) }
    }
}

impl Drop for AlignedBuf {
    fn drop(&mut self) {
        // SAFETY: allocated in `zeroed` or `mapped` with this layout or length.
        unsafe {
            match self.heap_layout {
                Some(layout) => std::alloc::dealloc(self.ptr.as_ptr(), layout),
                None => {
                    libc::munmap(self.ptr.as_ptr().cast(), self.capacity);
                }
            }
        }
    }
}

/// The owner behind a frozen frame's [`Bytes`]: its range of a buffer.
struct FrameView {
    buf: Arc<AlignedBuf>,
    start: usize,
    len: usize,
}

impl AsRef<[u8]> for FrameView {
    fn as_ref(&self) -> &[u8] {
        &self.buf.as_slice()[self.start..self.start + self.len]
    }
}

/// Memory for one frame being read: unique until [`FrameBuffers::freeze`].
pub struct FrameSlot {
    buf: Arc<AlignedBuf>,
    start: usize,
    len: usize,
}

impl FrameSlot {
    /// The frame's bytes, to read into (initialized; contents unspecified).
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        let (start, len) = (self.start, self.len);
        let buf = Arc::get_mut(&mut self.buf).expect("a frame slot's buffer is unique");
        &mut buf.as_mut_slice()[start..start + len]
    }
}

/// A set of reusable frame buffers; each shard thread has its own ([`take`], [`freeze`]). See
/// the module docs.
#[derive(Default)]
pub struct FrameBuffers {
    /// Buffers kept between requests, least recently used first; some may still be
    /// referenced by earlier frames.
    kept: Vec<Arc<AlignedBuf>>,
}

impl FrameBuffers {
    /// Largest buffer kept between requests.
    pub const KEEP_BYTES: usize = 8 << 20;
    /// Most buffers kept: for each connection a frame being read and one being handled, and
    /// the direct writes of earlier ones in flight.
    pub const KEEP_BUFFERS: usize = 64;
    /// Most memory kept between requests, in all.
    pub const KEEP_TOTAL_BYTES: usize = 64 << 20;

    fn kept_bytes(&self) -> usize {
        self.kept.iter().map(|b| b.capacity()).sum()
    }

    /// Memory for a frame of `size` bytes whose first byte sits `phase` bytes into a memory
    /// page (`phase < FRAME_ALIGN_BYTES`).
    pub fn take(&mut self, size: usize, phase: usize) -> FrameSlot {
        assert!(phase < FRAME_ALIGN_BYTES, "phase {phase} is within a page");
        let needed = phase + size;
        // The most recently used free buffer: its lines are the likeliest still in cache.
        let reusable = self.kept.iter_mut().rposition(|b| b.capacity() >= needed && Arc::get_mut(b).is_some());
        let buf = match reusable {
            Some(i) => self.kept.remove(i),
            None => Arc::new(AlignedBuf::zeroed(capacity_for(needed))),
        };
        FrameSlot { buf, start: phase, len: size }
    }

    /// Freezes a frame that has been read, keeping its buffer for a later frame.
    pub fn freeze(&mut self, slot: FrameSlot) -> Bytes {
        let FrameSlot { buf, start, len } = slot;
        if buf.capacity() <= Self::KEEP_BYTES {
            // Make room: drop the oldest buffers nobody uses, else the oldest ones.
            while self.kept.len() >= Self::KEEP_BUFFERS || self.kept_bytes() + buf.capacity() > Self::KEEP_TOTAL_BYTES {
                let victim = self.kept.iter_mut().position(|b| Arc::get_mut(b).is_some()).unwrap_or(0);
                self.kept.remove(victim);
            }
            self.kept.push(buf.clone());
        }
        Bytes::from_owner(FrameView { buf, start, len })
    }
}

thread_local! {
    /// This shard's frame buffers, shared by its connections.
    static SHARD_FRAME_BUFFERS: RefCell<FrameBuffers> = RefCell::new(FrameBuffers::default());
}

/// [`FrameBuffers::take`] from this shard thread's buffers.
pub fn take(size: usize, phase: usize) -> FrameSlot {
    SHARD_FRAME_BUFFERS.with(|b| b.borrow_mut().take(size, phase))
}

/// [`FrameBuffers::freeze`] into this shard thread's buffers.
pub fn freeze(slot: FrameSlot) -> Bytes {
    SHARD_FRAME_BUFFERS.with(|b| b.borrow_mut().freeze(slot))
}

/// Capacity of a new buffer for `needed` bytes: a power of two up to 64 KiB, then 64 KiB
/// steps, so a growing stream of frames does not reallocate on every new size.
fn capacity_for(needed: usize) -> usize {
    const STEP: usize = 64 << 10;
    if needed <= STEP {
        needed.next_power_of_two().max(FRAME_ALIGN_BYTES)
    } else {
        needed.next_multiple_of(STEP)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fill(buffers: &mut FrameBuffers, size: usize, phase: usize, byte: u8) -> Bytes {
        let mut slot = buffers.take(size, phase);
        slot.as_mut_slice().fill(byte);
        buffers.freeze(slot)
    }

    #[test]
    fn a_frame_starts_at_its_phase_within_a_page() {
        let mut buffers = FrameBuffers::default();
        for phase in [0, 1, 61, 4095] {
            let frame = fill(&mut buffers, 5000, phase, 7);
            assert_eq!(frame.as_ptr() as usize % FRAME_ALIGN_BYTES, phase);
            assert_eq!(frame.len(), 5000);
            assert!(frame.iter().all(|&b| b == 7));
        }
    }

    #[test]
    fn memory_is_reused_only_once_every_view_is_dropped() {
        let mut buffers = FrameBuffers::default();
        let first = fill(&mut buffers, 1000, 0, 1);
        let base = first.as_ptr();
        let view = first.slice(0..5); // a request still holding record bytes
        drop(first);
        // Still referenced: a new buffer is used and the view's bytes stay.
        let second = fill(&mut buffers, 1000, 0, 2);
        let second_base = second.as_ptr();
        assert_ne!(second_base, base);
        assert_eq!(&view[..], &[1; 5]);
        drop(view);
        drop(second);
        // Every view dropped: the memory comes back, at any phase that fits.
        let third = fill(&mut buffers, 600, 100, 3);
        assert_eq!(third.as_ptr(), second_base.wrapping_add(100), "the most recently used one");
        // A view moved to and dropped on another thread releases the memory too.
        let sent = third.slice(..);
        drop(third);
        std::thread::spawn(move || assert_eq!(sent[0], 3)).join().unwrap();
        let fourth = fill(&mut buffers, 600, 0, 4);
        assert!([base, second_base].contains(&fourth.as_ptr()), "no new buffer while kept ones are free");
    }

    #[test]
    fn at_most_keep_buffers_small_buffers_are_kept() {
        let mut buffers = FrameBuffers::default();
        let held: Vec<Bytes> =
            (0..FrameBuffers::KEEP_BUFFERS as u8 + 4).map(|i| fill(&mut buffers, 100, 0, i)).collect();
        assert_eq!(buffers.kept.len(), FrameBuffers::KEEP_BUFFERS);
        for (i, frame) in held.iter().enumerate() {
            assert!(frame.iter().all(|&b| b == i as u8), "a kept buffer is never handed out while in use");
        }
        drop(held);
        let big = fill(&mut buffers, FrameBuffers::KEEP_BYTES + 1, 0, 9);
        assert!(buffers.kept.iter().all(|b| b.capacity() <= FrameBuffers::KEEP_BYTES));
        drop(big);
        // Large frames (huge-page buffers) are kept up to the total.
        let large: Vec<Bytes> = (0..6).map(|i| fill(&mut buffers, FrameBuffers::KEEP_BYTES - 100, 0, i)).collect();
        assert!(buffers.kept_bytes() <= FrameBuffers::KEEP_TOTAL_BYTES);
        assert!(large.iter().enumerate().all(|(i, f)| f.iter().all(|&b| b == i as u8)));
    }

    #[test]
    fn buffers_in_use_are_kept_and_come_back_when_released() {
        // Connections producing to many partitions: 1 MB frames held by writes in flight.
        let mut buffers = FrameBuffers::default();
        let held: Vec<Bytes> = (0..20).map(|i| fill(&mut buffers, 1 << 20, 0, i)).collect();
        let addresses: Vec<*const u8> = held.iter().map(|f| f.as_ptr()).collect();
        assert_eq!(buffers.kept.len(), 20, "every buffer in use is kept");
        drop(held);
        // Released: the next frames reuse them, no new memory.
        let next: Vec<Bytes> = (0..20).map(|i| fill(&mut buffers, 1 << 20, 0, i)).collect();
        assert!(next.iter().all(|f| addresses.contains(&f.as_ptr())));
        assert_eq!(buffers.kept.len(), 20);
    }

    #[test]
    fn each_thread_takes_from_its_own_buffers() {
        let frame = {
            let mut slot = take(1000, 5);
            slot.as_mut_slice().fill(1);
            freeze(slot)
        };
        let address = frame.as_ptr();
        drop(frame);
        let again = freeze(take(900, 5));
        assert_eq!(again.as_ptr(), address, "released memory comes back on this thread");
        let other = std::thread::spawn(|| freeze(take(900, 5)).as_ptr() as usize).join().unwrap();
        assert_ne!(other, address as usize, "another thread has buffers of its own");
    }
}

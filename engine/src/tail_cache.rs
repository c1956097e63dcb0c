//! The most recent bytes of a partition's active segment, kept in memory for tailing readers.
//!
//! Why: segments are written with direct I/O, which bypasses the page cache, so without this
//! every fetch of fresh data would go to the disk. Appends copy each batch here once; reads of
//! a range held here get `Bytes` slices — zero-copy, and `Send`, so they can cross shards.
//! (The partition log only fills it while someone tails the partition: the copy into memory
//! nobody reads was a fifth of the broker's CPU on a produce stream.)
//!
//! Owns: a bounded list of immutable pieces (file position → `Bytes`) plus the piece being
//! filled. A read that reaches into the piece being filled seals its current content first
//! (a `BytesMut::split`, no copy), so a reader never sees bytes that can still change.
//!
//! Memory: each cache holds a reservation on its shard's [`MemoryBudget`] for the bytes it
//! holds. When the budget is spent, a cache that cannot grow drops its own oldest pieces, and
//! a cache over its fair share (budget ÷ caches) shrinks to it, so thousands of partitions share
//! the budget instead of the first few keeping it; a cache left with nothing stops caching
//! until there is room (its readers read the file). No log line per event: the budget counts
//! them ([`MemoryBudget::pressure_events`]).
//!
//! Must never: hold more than `max_bytes` (oldest pieces are dropped first), grow past its
//! shard's budget, or return bytes for a range it does not hold completely (callers then read
//! the file).

use std::collections::VecDeque;

use bytes::{Bytes, BytesMut};

use crate::memory_budget::{shard_budget, MemoryBudget, Reservation};

/// Tail cache of one active segment. See the module docs.
#[derive(Debug)]
pub struct TailCache {
    max_bytes: usize,
    piece_bytes: usize,
    pieces: VecDeque<(u64, Bytes)>,
    building: BytesMut,
    /// Capacity of the next piece to allocate: doubles from [`TailCache::FIRST_PIECE_BYTES`]
    /// up to `piece_bytes`, so a partition that sees little traffic holds little memory.
    next_piece_bytes: usize,
    /// File position of `building[0]`.
    building_pos: u64,
    cached_bytes: usize,
    /// This cache's share of the shard's memory budget (`cached_bytes` of it), if the shard has
    /// one.
    charge: Option<Reservation>,
}

impl TailCache {
    /// Capacity of a cache's first piece.
    pub const FIRST_PIECE_BYTES: usize = 64 << 10;

    /// An empty cache whose next byte is file position `next_pos`. `max_bytes` 0 disables it.
    /// It draws from the calling shard's budget, if one is installed.
    pub fn new(next_pos: u64, max_bytes: usize, piece_bytes: usize) -> TailCache {
        TailCache::with_budget(next_pos, max_bytes, piece_bytes, shard_budget().as_ref())
    }

    /// [`TailCache::new`] drawing from `budget` (none: bounded by `max_bytes` only).
    pub fn with_budget(
        next_pos: u64,
        max_bytes: usize,
        piece_bytes: usize,
        budget: Option<&std::rc::Rc<MemoryBudget>>,
    ) -> TailCache {
        let piece_bytes = piece_bytes.max(4096);
        TailCache {
            max_bytes,
            piece_bytes,
            pieces: VecDeque::new(),
            building: BytesMut::new(),
            next_piece_bytes: Self::FIRST_PIECE_BYTES.min(piece_bytes),
            building_pos: next_pos,
            cached_bytes: 0,
            charge: budget.filter(|_| max_bytes > 0).map(|b| b.holder()),
        }
    }

    pub fn cached_bytes(&self) -> usize {
        self.cached_bytes
    }

    fn end_pos(&self) -> u64 {
        self.building_pos + self.building.len() as u64
    }

    /// Appends `data` found at file position `pos`. A gap (e.g. after truncation) restarts the
    /// cache at `pos`.
    pub fn push(&mut self, pos: u64, data: &[u8]) {
        if self.max_bytes == 0 {
            return;
        }
        if pos != self.end_pos() {
            self.clear(pos);
        }
        if !self.charge_for(data.len()) {
            // No room in the shard's budget even after shrinking: skip these bytes; caching
            // restarts at the next append once there is room.
            self.clear(pos + data.len() as u64);
            return;
        }
        if self.building.capacity() - self.building.len() < data.len() {
            self.seal();
            self.building.reserve(self.next_piece_bytes.max(data.len()));
            self.next_piece_bytes = (self.next_piece_bytes * 2).min(self.piece_bytes);
        }
        // Pieces rotate through more memory than the CPU caches hold: stream the bytes there.
        crate::stream_copy::extend_streaming(&mut self.building, data);
        self.cached_bytes += data.len();
        self.evict();
    }

    /// Reserves `len` more bytes from the shard's budget, first shrinking this cache to its
    /// fair share when the budget is short, then dropping its own oldest pieces while that is
    /// not enough. False when nothing is left to drop.
    fn charge_for(&mut self, len: usize) -> bool {
        let Some(mut charge) = self.charge.take() else { return true };
        let budget = charge.budget().clone();
        if budget.available_bytes() < len as u64 {
            let fair_share = budget.fair_share_bytes().max(Self::FIRST_PIECE_BYTES as u64) as usize;
            if self.cached_bytes + len > fair_share {
                budget.note_pressure();
                self.evict_to(fair_share.saturating_sub(len));
                charge.shrink_to(self.cached_bytes as u64);
            }
        }
        let granted = loop {
            if charge.try_grow(len as u64) {
                break true;
            }
            budget.note_pressure();
            let Some((_, oldest)) = self.pieces.pop_front() else { break false };
            self.cached_bytes -= oldest.len();
            charge.shrink_to(self.cached_bytes as u64);
        };
        self.charge = Some(charge);
        granted
    }

    /// Drops the oldest pieces until at most `max_bytes` are counted.
    fn evict(&mut self) {
        self.evict_to(self.max_bytes);
    }

    /// Drops the oldest pieces until at most `limit_bytes` are counted (the piece being built
    /// stays), and gives their share of the budget back.
    fn evict_to(&mut self, limit_bytes: usize) {
        while self.cached_bytes > limit_bytes {
            let Some((_, oldest)) = self.pieces.pop_front() else { break };
            self.cached_bytes -= oldest.len();
        }
        if let Some(charge) = &mut self.charge {
            charge.shrink_to(self.cached_bytes as u64);
        }
    }

    /// Moves the filled part of `building` into an immutable piece (no copy).
    fn seal(&mut self) {
        if self.building.is_empty() {
            return;
        }
        let len = self.building.len();
        let piece = self.building.split().freeze();
        self.pieces.push_back((self.building_pos, piece));
        self.building_pos += len as u64;
    }

    /// Drops everything; the next byte is at `next_pos`.
    pub fn clear(&mut self, next_pos: u64) {
        self.pieces.clear();
        self.building = BytesMut::new();
        self.building_pos = next_pos;
        self.cached_bytes = 0;
        if let Some(charge) = &mut self.charge {
            charge.shrink_to(0);
        }
    }

    /// The bytes `[pos, pos + len)` as zero-copy slices, if all of them are held.
    pub fn slices(&mut self, pos: u64, len: usize) -> Option<Vec<Bytes>> {
        let end = pos + len as u64;
        let start = self.pieces.front().map_or(self.building_pos, |(p, _)| *p);
        if len == 0 || pos < start || end > self.end_pos() {
            return None;
        }
        if end > self.building_pos {
            self.seal();
        }
        let mut out = Vec::new();
        // Pieces are contiguous and in position order: skip to the first one that reaches `pos`.
        let first = self.pieces.partition_point(|(p, piece)| p + piece.len() as u64 <= pos);
        for (piece_pos, piece) in self.pieces.range(first..) {
            let piece_end = piece_pos + piece.len() as u64;
            if *piece_pos >= end {
                break;
            }
            let lo = (pos.max(*piece_pos) - piece_pos) as usize;
            let hi = (end.min(piece_end) - piece_pos) as usize;
            out.push(piece.slice(lo..hi));
        }
        debug_assert_eq!(out.iter().map(|b| b.len()).sum::<usize>(), len);
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(n: usize, seed: u8) -> Vec<u8> {
        (0..n).map(|i| (i as u8).wrapping_mul(7).wrapping_add(seed)).collect()
    }

    #[test]
    fn serves_exact_ranges_across_pieces_and_seals_on_read() {
        let mut c = TailCache::new(100, 1 << 20, 4096);
        let a = data(3000, 1);
        let b = data(3000, 2);
        c.push(100, &a);
        // A read inside the piece being built seals it; later appends don't change it.
        let first = c.slices(100, 3000).unwrap();
        assert_eq!(first.concat(), a);
        c.push(3100, &b);
        let all = c.slices(100, 6000).unwrap().concat();
        assert_eq!(&all[..3000], &a[..]);
        assert_eq!(&all[3000..], &b[..]);
        assert_eq!(first.concat(), a, "sealed bytes never change");
        assert_eq!(c.slices(1600, 3000).unwrap().concat(), [&a[1500..], &b[..1500]].concat());
        assert!(c.slices(99, 10).is_none(), "before the cache");
        assert!(c.slices(6000, 200).is_none(), "past the end");
    }

    #[test]
    fn bounded_and_restarts_on_gaps() {
        let mut c = TailCache::new(0, 10_000, 4096);
        for i in 0..10u64 {
            c.push(i * 3000, &data(3000, i as u8));
        }
        assert!(c.cached_bytes() <= 10_000 + 4096, "bounded: {}", c.cached_bytes());
        assert!(c.slices(0, 100).is_none(), "oldest dropped");
        assert_eq!(c.slices(27_000, 3000).unwrap().concat(), data(3000, 9));
        c.push(50_000, &data(10, 1));
        assert!(c.slices(27_000, 10).is_none(), "a gap restarts the cache");
        assert_eq!(c.slices(50_000, 10).unwrap().concat(), data(10, 1));
        let mut off = TailCache::new(0, 0, 4096);
        off.push(0, &data(10, 0));
        assert!(off.slices(0, 10).is_none());
    }

    /// Two caches on a budget that holds one: the first fills it, the second cannot cache at
    /// first, then the first shrinks to its fair share on its next append and the second gets
    /// room — no cache ever goes past the budget.
    #[test]
    fn caches_share_the_shard_budget_under_pressure() {
        let budget = MemoryBudget::new(200_000);
        let mut hot = TailCache::with_budget(0, 1 << 20, 16_384, Some(&budget));
        let mut late = TailCache::with_budget(0, 1 << 20, 16_384, Some(&budget));
        let mut hot_pos = 0u64;
        for _ in 0..20 {
            hot.push(hot_pos, &data(10_000, 1));
            hot_pos += 10_000;
        }
        assert_eq!(budget.used_bytes(), 200_000, "the hot cache took the whole budget");
        late.push(0, &data(10_000, 2));
        assert!(budget.used_bytes() <= 200_000);
        hot.push(hot_pos, &data(10_000, 3));
        assert!(hot.cached_bytes() <= 100_000 + 16_384, "shrank to its fair share: {}", hot.cached_bytes());
        late.push(10_000, &data(10_000, 4));
        assert!(late.cached_bytes() > 0, "the late cache got room");
        assert_eq!(late.slices(10_000, 10_000).unwrap().concat(), data(10_000, 4));
        assert!(budget.used_bytes() <= 200_000);
        assert!(budget.pressure_events() > 0);
        drop((hot, late));
        assert_eq!((budget.used_bytes(), budget.holder_count()), (0, 0));
    }

    #[test]
    fn first_pieces_are_small_and_grow_to_the_piece_size() {
        let mut c = TailCache::new(0, 1 << 30, 1 << 20);
        c.push(0, &data(10, 0));
        assert!(c.building.capacity() < 1 << 17, "a quiet partition holds a small piece");
        let mut pos = 10u64;
        for _ in 0..100 {
            c.push(pos, &data(30_000, 1));
            pos += 30_000;
        }
        assert!(c.building.capacity() <= 1 << 20);
        assert!(c.next_piece_bytes == 1 << 20, "grew to the piece size");
        assert_eq!(c.slices(0, pos as usize).unwrap().iter().map(|b| b.len()).sum::<usize>(), pos as usize);
    }
}

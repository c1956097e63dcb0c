//! A shard's memory budget, fixed at start-up (`sluice.shard.memory.bytes`).
//!
//! Owns: the byte count a shard may spend on cached record bytes (the partitions' tail caches)
//! and what is reserved of it, plus how many holders share it (for a fair share under
//! pressure). Reservations are RAII: dropping one gives the bytes back; a holder grows and
//! shrinks its reservation as its cache does. Must never: be shared across shards (each shard
//! has its own, installed on its thread by the shard's storage), or let a reservation outlive
//! the accounting (it holds an `Rc`).
//!
//! Not counted here: the segment writers' write-behind chunks. They are taken on first append
//! and given back when a writer is idle, at most `chunk_bytes × (max_in_flight + 1)` per
//! partition being written to.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

/// Bytes a shard may use for engine buffers. See the module docs.
#[derive(Debug)]
pub struct MemoryBudget {
    limit_bytes: u64,
    used_bytes: Cell<u64>,
    /// Live reservations (of any size, 0 included).
    holders: Cell<u64>,
    /// Times a holder could not grow and shrank or dropped its cache instead.
    pressure_events: Cell<u64>,
}

/// Bytes held from a [`MemoryBudget`]; released on drop.
#[derive(Debug)]
pub struct Reservation {
    budget: Rc<MemoryBudget>,
    bytes: u64,
}

impl MemoryBudget {
    pub fn new(limit_bytes: u64) -> Rc<MemoryBudget> {
        Rc::new(MemoryBudget {
            limit_bytes,
            used_bytes: Cell::new(0),
            holders: Cell::new(0),
            pressure_events: Cell::new(0),
        })
    }

    pub fn limit_bytes(&self) -> u64 {
        self.limit_bytes
    }

    pub fn used_bytes(&self) -> u64 {
        self.used_bytes.get()
    }

    pub fn available_bytes(&self) -> u64 {
        self.limit_bytes.saturating_sub(self.used_bytes.get())
    }

    /// Reserves `bytes` if they fit.
    pub fn try_reserve(self: &Rc<Self>, bytes: u64) -> Option<Reservation> {
        if bytes > self.available_bytes() {
            return None;
        }
        self.used_bytes.set(self.used_bytes.get() + bytes);
        self.holders.set(self.holders.get() + 1);
        Some(Reservation { budget: self.clone(), bytes })
    }

    /// An empty reservation that grows later ([`Reservation::try_grow`]).
    pub fn holder(self: &Rc<Self>) -> Reservation {
        self.try_reserve(0).expect("zero bytes always fit")
    }

    /// What each holder may keep when the budget is short: an equal split.
    pub fn fair_share_bytes(&self) -> u64 {
        self.limit_bytes / self.holders.get().max(1)
    }

    pub fn holder_count(&self) -> u64 {
        self.holders.get()
    }

    /// Times a holder shrank or dropped its cache because the budget was spent.
    pub fn pressure_events(&self) -> u64 {
        self.pressure_events.get()
    }

    pub fn note_pressure(&self) {
        self.pressure_events.set(self.pressure_events.get() + 1);
    }
}

impl Reservation {
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    pub fn budget(&self) -> &Rc<MemoryBudget> {
        &self.budget
    }

    /// Adds `bytes` to the reservation if they fit.
    pub fn try_grow(&mut self, bytes: u64) -> bool {
        if bytes > self.budget.available_bytes() {
            return false;
        }
        self.budget.used_bytes.set(self.budget.used_bytes.get() + bytes);
        self.bytes += bytes;
        true
    }

    /// Gives back everything above `bytes`.
    pub fn shrink_to(&mut self, bytes: u64) {
        if bytes < self.bytes {
            let freed = self.bytes - bytes;
            self.budget.used_bytes.set(self.budget.used_bytes.get() - freed);
            self.bytes = bytes;
        }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        let used = self.budget.used_bytes.get();
        assert!(used >= self.bytes, "memory budget accounting underflow");
        self.budget.used_bytes.set(used - self.bytes);
        self.budget.holders.set(self.budget.holders.get() - 1);
    }
}

thread_local! {
    static SHARD_BUDGET: RefCell<Option<Rc<MemoryBudget>>> = const { RefCell::new(None) };
}

/// Makes `budget` the one this shard thread's caches draw from (the shard's storage does this
/// when it opens).
pub fn install_shard_budget(budget: Rc<MemoryBudget>) {
    SHARD_BUDGET.with(|b| *b.borrow_mut() = Some(budget));
}

/// This shard thread's budget, if one is installed (tests that open a log alone have none:
/// their caches are bounded only by their own size).
pub fn shard_budget() -> Option<Rc<MemoryBudget>> {
    SHARD_BUDGET.with(|b| b.borrow().clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserve_until_full_and_release_on_drop() {
        let budget = MemoryBudget::new(100);
        let a = budget.try_reserve(60).expect("fits");
        assert!(budget.try_reserve(41).is_none());
        let b = budget.try_reserve(40).expect("fits exactly");
        assert_eq!(budget.available_bytes(), 0);
        drop(a);
        assert_eq!(budget.used_bytes(), 40);
        drop(b);
        assert_eq!(budget.used_bytes(), 0);
    }

    #[test]
    fn holders_grow_shrink_and_share_fairly() {
        let budget = MemoryBudget::new(100);
        let mut a = budget.holder();
        let mut b = budget.holder();
        assert_eq!(budget.fair_share_bytes(), 50);
        assert!(a.try_grow(80));
        assert!(!b.try_grow(30), "only 20 left");
        a.shrink_to(50);
        assert!(b.try_grow(30));
        assert_eq!(budget.used_bytes(), 80);
        drop(a);
        assert_eq!((budget.used_bytes(), budget.holder_count(), budget.fair_share_bytes()), (30, 1, 100));
    }
}

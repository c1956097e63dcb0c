//! A shard's memory budget, fixed at start-up.
//!
//! Owns: the byte count a shard may spend on engine buffers (write-behind chunks now, the
//! batch cache later) and what is reserved of it. Reservations are RAII: dropping one gives
//! the bytes back. Must never: be shared across shards (each shard has its own), or let a
//! reservation outlive the accounting (it holds an `Rc`).

use std::cell::Cell;
use std::rc::Rc;

/// Bytes a shard may use for engine buffers. See the module docs.
#[derive(Debug)]
pub struct MemoryBudget {
    limit_bytes: u64,
    used_bytes: Cell<u64>,
}

/// Bytes held from a [`MemoryBudget`]; released on drop.
#[derive(Debug)]
pub struct Reservation {
    budget: Rc<MemoryBudget>,
    bytes: u64,
}

impl MemoryBudget {
    pub fn new(limit_bytes: u64) -> Rc<MemoryBudget> {
        Rc::new(MemoryBudget { limit_bytes, used_bytes: Cell::new(0) })
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
        Some(Reservation { budget: self.clone(), bytes })
    }
}

impl Reservation {
    pub fn bytes(&self) -> u64 {
        self.bytes
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        let used = self.budget.used_bytes.get();
        debug_assert!(used >= self.bytes);
        self.budget.used_bytes.set(used - self.bytes);
    }
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
}

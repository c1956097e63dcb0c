//! A monotonic `u64` that tasks on one shard can await.
//!
//! Owns: the value and the wakers of tasks waiting for it to reach a threshold. Used for the
//! bytes a segment writer has on disk, the offset a log has fsynced to, and (for the protocol
//! layer) the log end offset that wakes a long-poll fetch — appends wake waiters directly, no
//! timer polls.
//!
//! Must never: be shared across threads (it is `!Send` by design: one shard owns it), or move
//! backwards — `advance` to a smaller value is ignored.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

/// Why a wait ended without the threshold being reached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WatermarkFailed;

#[derive(Default)]
struct Waiters {
    next_id: u64,
    by_threshold: BTreeMap<(u64, u64), Waker>,
}

/// A monotonic counter with async waiters. See the module docs.
#[derive(Default)]
pub struct Watermark {
    value: Cell<u64>,
    failed: Cell<bool>,
    waiters: RefCell<Waiters>,
}

impl Watermark {
    pub fn new(initial: u64) -> Rc<Watermark> {
        Rc::new(Watermark { value: Cell::new(initial), ..Default::default() })
    }

    pub fn get(&self) -> u64 {
        self.value.get()
    }

    /// Raises the value to `value` (no-op if not higher) and wakes every waiter it satisfies.
    pub fn advance(&self, value: u64) {
        if value <= self.value.get() {
            return;
        }
        self.value.set(value);
        let woken = {
            let mut waiters = self.waiters.borrow_mut();
            let rest = waiters.by_threshold.split_off(&(value + 1, 0));
            std::mem::replace(&mut waiters.by_threshold, rest)
        };
        for (_, waker) in woken {
            waker.wake();
        }
    }

    /// Resets the value downwards. Only for truncation paths (recovery, follower truncation)
    /// that hold the owner's exclusive append section; waiters above the new value keep waiting.
    pub fn reset(&self, value: u64) {
        self.value.set(value);
    }

    /// Fails every current and future waiter (an I/O error made the owner unusable).
    pub fn fail(&self) {
        self.failed.set(true);
        let woken = std::mem::take(&mut self.waiters.borrow_mut().by_threshold);
        for (_, waker) in woken {
            waker.wake();
        }
    }

    /// Makes the watermark usable again after [`Watermark::fail`] (the owner replaced what
    /// failed, e.g. a log truncated to its durable offset with a new writer).
    pub fn clear_failure(&self) {
        self.failed.set(false);
    }

    /// Tasks waiting on this watermark now (tests check that waiters do not outlive their
    /// request).
    pub fn waiter_count(&self) -> usize {
        self.waiters.borrow().by_threshold.len()
    }

    pub fn is_failed(&self) -> bool {
        self.failed.get()
    }

    /// Wakes every waiter without changing the value (so they re-check some other condition,
    /// e.g. a shutdown flag).
    pub fn wake_all(&self) {
        let woken = std::mem::take(&mut self.waiters.borrow_mut().by_threshold);
        for (_, waker) in woken {
            waker.wake();
        }
    }

    /// Resolves once the value is `>= threshold`, or with an error once the watermark failed.
    pub fn wait_for(self: &Rc<Self>, threshold: u64) -> WaitFor {
        WaitFor { watermark: self.clone(), threshold, key: None }
    }
}

/// Future returned by [`Watermark::wait_for`].
pub struct WaitFor {
    watermark: Rc<Watermark>,
    threshold: u64,
    key: Option<(u64, u64)>,
}

impl Future for WaitFor {
    type Output = Result<(), WatermarkFailed>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if self.watermark.value.get() >= self.threshold {
            self.unregister();
            return Poll::Ready(Ok(()));
        }
        if self.watermark.failed.get() {
            self.unregister();
            return Poll::Ready(Err(WatermarkFailed));
        }
        let key = match self.key {
            Some(key) => key,
            None => {
                let mut waiters = self.watermark.waiters.borrow_mut();
                waiters.next_id += 1;
                (self.threshold, waiters.next_id)
            }
        };
        self.key = Some(key);
        self.watermark.waiters.borrow_mut().by_threshold.insert(key, cx.waker().clone());
        Poll::Pending
    }
}

impl WaitFor {
    fn unregister(&mut self) {
        if let Some(key) = self.key.take() {
            self.watermark.waiters.borrow_mut().by_threshold.remove(&key);
        }
    }
}

impl Drop for WaitFor {
    fn drop(&mut self) {
        self.unregister();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::task::noop_waker;

    fn poll_once(f: &mut WaitFor) -> Poll<Result<(), WatermarkFailed>> {
        let waker = noop_waker();
        let mut cx = Context::from_waker(&waker);
        Pin::new(f).poll(&mut cx)
    }

    #[test]
    fn ready_when_reached_and_registered_waiters_are_removed() {
        let w = Watermark::new(5);
        assert_eq!(poll_once(&mut w.wait_for(5)), Poll::Ready(Ok(())));
        let mut f = w.wait_for(10);
        assert!(poll_once(&mut f).is_pending());
        assert!(poll_once(&mut f).is_pending());
        assert_eq!(w.waiters.borrow().by_threshold.len(), 1, "re-polling must not duplicate");
        w.advance(9);
        assert!(poll_once(&mut f).is_pending());
        w.advance(10);
        assert_eq!(poll_once(&mut f), Poll::Ready(Ok(())));
        assert!(w.waiters.borrow().by_threshold.is_empty());
        drop(f);
    }

    #[test]
    fn never_goes_backwards_and_drop_unregisters() {
        let w = Watermark::new(5);
        w.advance(3);
        assert_eq!(w.get(), 5);
        let mut f = w.wait_for(100);
        assert!(poll_once(&mut f).is_pending());
        drop(f);
        assert!(w.waiters.borrow().by_threshold.is_empty());
    }

    #[test]
    fn failure_wakes_with_error() {
        let w = Watermark::new(0);
        let mut f = w.wait_for(1);
        assert!(poll_once(&mut f).is_pending());
        w.fail();
        assert_eq!(poll_once(&mut f), Poll::Ready(Err(WatermarkFailed)));
    }
}

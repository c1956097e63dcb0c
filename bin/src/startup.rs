//! Start-up in phases, with a barrier between them: no shard goes on to the next phase — and no
//! shard accepts a client — before every shard finished the one before. A cross-shard call made
//! before its target shard had installed its context used to abort the process ("no shard
//! context on this thread"); with the barriers, the first phase that may call another shard
//! starts only once every shard can answer.
//!
//! Owns: the reports shards send at the end of each phase and the main thread's decision to go
//! on (every shard done) or to stop (any shard failed: the others then close what they opened).
//! Must never: let the main thread wait forever (a shard that dies mid-phase reports a failure
//! from its reporter's `Drop`), or block a shard thread (shards wait on a oneshot future).

use futures::channel::oneshot;
use std::sync::mpsc;

/// The phases, in order. Each ends with a barrier.
pub const PHASES: [&str; 3] = [
    // Open this shard's partitions (recovery if needed) and install its context.
    "storage",
    // Partitions of known topics that have no directory yet; consumer groups replayed.
    "partitions and groups",
    // Bind the listener; clients are accepted only after this barrier.
    "listeners",
];

enum PhaseReport {
    Done { partitions: usize, proceed: oneshot::Sender<bool> },
    Failed { shard: usize, error: String },
}

/// A shard's side: reports the end of each phase and waits for the verdict.
pub struct ShardReporter {
    shard: usize,
    tx: Option<mpsc::Sender<PhaseReport>>,
}

impl ShardReporter {
    /// Reports the current phase done (with the partitions the shard holds) and waits until
    /// every shard is done with it. False: start-up failed somewhere; this shard must close
    /// what it opened and return.
    pub async fn barrier(&mut self, partitions: usize) -> bool {
        let Some(tx) = &self.tx else { return false };
        let (proceed, verdict) = oneshot::channel();
        if tx.send(PhaseReport::Done { partitions, proceed }).is_err() {
            return false;
        }
        verdict.await.unwrap_or(false)
    }

    /// Reports this shard's start-up failed; it must then close what it opened and return.
    pub fn fail(&mut self, error: String) {
        if let Some(tx) = self.tx.take() {
            let _ = tx.send(PhaseReport::Failed { shard: self.shard, error });
        }
    }

    /// Start-up is over for this shard: later drops report nothing.
    pub fn finish(&mut self) {
        self.tx = None;
    }
}

impl Drop for ShardReporter {
    fn drop(&mut self) {
        self.fail(format!("shard {} exited during start-up", self.shard));
    }
}

/// The main thread's side.
pub struct StartupBarrier {
    shard_count: usize,
    tx: mpsc::Sender<PhaseReport>,
    rx: mpsc::Receiver<PhaseReport>,
}

impl StartupBarrier {
    pub fn new(shard_count: usize) -> StartupBarrier {
        assert!(shard_count > 0);
        let (tx, rx) = mpsc::channel();
        StartupBarrier { shard_count, tx, rx }
    }

    pub fn reporter(&self, shard: usize) -> ShardReporter {
        ShardReporter { shard, tx: Some(self.tx.clone()) }
    }

    /// Runs every phase: waits for each shard's report, then lets them all go on, or tells them
    /// all to stop once any failed. Returns the partitions opened, or every failure.
    pub fn run(self) -> Result<usize, Vec<String>> {
        drop(self.tx); // only shards' reporters hold senders now: a closed channel means all gone
        let mut alive = self.shard_count;
        let mut partitions = 0;
        let mut failures = Vec::new();
        for phase in PHASES {
            let mut waiting = Vec::with_capacity(alive);
            partitions = 0;
            for _ in 0..alive {
                match self.rx.recv() {
                    Ok(PhaseReport::Done { partitions: n, proceed, .. }) => {
                        partitions += n;
                        waiting.push(proceed);
                    }
                    Ok(PhaseReport::Failed { shard, error }) => {
                        failures.push(format!("shard {shard} ({phase}): {error}"))
                    }
                    Err(_) => {
                        failures.push(format!("start-up channel closed during {phase}"));
                        break;
                    }
                }
            }
            let go = failures.is_empty();
            alive = waiting.len();
            for proceed in waiting {
                let _ = proceed.send(go);
            }
            if !go {
                return Err(failures);
            }
            tracing::debug!(phase, "start-up phase done on every shard");
        }
        Ok(partitions)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_shards(shard_count: usize, fail_at: Option<(usize, usize)>) -> (Result<usize, Vec<String>>, Vec<usize>) {
        let barrier = StartupBarrier::new(shard_count);
        let (done_tx, done_rx) = mpsc::channel();
        let threads: Vec<_> = (0..shard_count)
            .map(|shard| {
                let mut reporter = barrier.reporter(shard);
                let done_tx = done_tx.clone();
                std::thread::spawn(move || {
                    let mut phases_passed = 0;
                    for phase in 0..PHASES.len() {
                        if fail_at == Some((shard, phase)) {
                            reporter.fail("boom".into());
                            break;
                        }
                        if !futures::executor::block_on(reporter.barrier(1)) {
                            break;
                        }
                        phases_passed += 1;
                    }
                    reporter.finish();
                    done_tx.send((shard, phases_passed)).unwrap();
                })
            })
            .collect();
        let result = barrier.run();
        for t in threads {
            t.join().unwrap();
        }
        drop(done_tx);
        let mut passed: Vec<(usize, usize)> = done_rx.iter().collect();
        passed.sort_unstable();
        (result, passed.into_iter().map(|(_, n)| n).collect())
    }

    #[test]
    fn every_shard_passes_every_phase_together() {
        let (result, passed) = run_shards(3, None);
        assert_eq!(result, Ok(3));
        assert_eq!(passed, vec![3, 3, 3]);
    }

    #[test]
    fn one_failure_stops_every_shard_at_that_phase() {
        let (result, passed) = run_shards(3, Some((1, 1)));
        let failures = result.unwrap_err();
        assert_eq!(failures.len(), 1);
        assert!(failures[0].contains("shard 1"), "{failures:?}");
        // The others finished phase 0 and were told to stop at the end of phase 1.
        assert_eq!(passed, vec![1, 1, 1]);
    }

    #[test]
    fn a_shard_that_dies_without_reporting_fails_start_up() {
        let barrier = StartupBarrier::new(2);
        let dead = barrier.reporter(0);
        let mut alive = barrier.reporter(1);
        let t = std::thread::spawn(move || futures::executor::block_on(alive.barrier(0)));
        drop(dead);
        assert!(barrier.run().is_err());
        assert!(!t.join().unwrap(), "the living shard is told to stop");
    }
}

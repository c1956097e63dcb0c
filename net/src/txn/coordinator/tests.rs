//! Unit and property tests of the sans-I/O transaction state machine: no runtime, explicit
//! clock, the state log modelled as a vector of the records the edge would append.

use std::collections::BTreeMap;

use proptest::prelude::*;

use super::*;

const T: u64 = 60_000;

fn p(topic: &str, partition: i32) -> (String, i32) {
    (topic.to_string(), partition)
}

/// A fresh id after its first InitProducerId (producer id 7, epoch 0).
fn initialized(now: u64) -> Txn {
    let mut t = Txn::new("tx", 7, T, now);
    let d = t.init_producer_id(now, T, None, None);
    assert_eq!(d, Decision::Write { reply: Ok((7, 0)), then_markers: false });
    t.complete_write();
    t
}

fn written<T: std::fmt::Debug>(t: &mut Txn, d: Decision<T>) -> Result<T, i16> {
    match d {
        Decision::Write { reply, .. } => {
            t.complete_write();
            assert!(t.check_invariants(), "{t:?}");
            reply
        }
        other => panic!("expected a write, got {other:?}"),
    }
}

fn answer<T>(d: Decision<T>) -> Result<T, i16> {
    match d {
        Decision::Answer(a) => a,
        _ => panic!("expected an answer"),
    }
}

#[test]
fn commit_goes_through_ongoing_prepare_and_complete() {
    let mut t = initialized(0);
    assert_eq!(t.meta().state, TxnState::Empty);
    let d = t.add_partitions(10, 7, 0, &[p("a", 0), p("b", 1)], false);
    let added = written(&mut t, d);
    assert_eq!(added.unwrap().len(), 2);
    assert_eq!(t.meta().state, TxnState::Ongoing);
    assert_eq!(t.meta().txn_start_ms, 10);
    // Adding a partition already in the transaction writes nothing.
    assert_eq!(answer(t.add_partitions(11, 7, 0, &[p("a", 0)], false)), Ok(vec![(p("a", 0), codes::NONE)]));
    let d = t.end_txn(20, 7, 0, true);
    assert_eq!(d, Decision::Write { reply: Ok(()), then_markers: true });
    t.complete_write();
    assert_eq!(t.meta().state, TxnState::PrepareCommit);
    // While the markers are written: the client's retry and a new add wait.
    assert_eq!(answer(t.end_txn(21, 7, 0, true)), Err(codes::CONCURRENT_TRANSACTIONS));
    assert_eq!(answer(t.end_txn(21, 7, 0, false)), Err(codes::INVALID_TXN_STATE));
    assert_eq!(answer(t.add_partitions(21, 7, 0, &[p("c", 0)], false)), Err(codes::CONCURRENT_TRANSACTIONS));
    assert!(t.begin_complete(30));
    t.complete_write();
    assert_eq!(t.meta().state, TxnState::CompleteCommit);
    assert!(t.meta().partitions.is_empty());
    assert_eq!(answer(t.end_txn(31, 7, 0, true)), Ok(()), "a retry of a completed commit");
    assert_eq!(answer(t.end_txn(31, 7, 0, false)), Err(codes::INVALID_TXN_STATE));
    // The next transaction starts at its first add.
    let d = t.add_partitions(40, 7, 0, &[p("a", 0)], false);
    written(&mut t, d).unwrap();
    assert_eq!(t.meta().txn_start_ms, 40);
}

#[test]
fn abort_and_errors_of_end_txn() {
    let mut t = initialized(0);
    assert_eq!(answer(t.end_txn(1, 7, 0, false)), Err(codes::INVALID_TXN_STATE), "nothing open");
    assert_eq!(answer(t.end_txn(1, 8, 0, false)), Err(codes::INVALID_PRODUCER_ID_MAPPING));
    assert_eq!(answer(t.end_txn(1, 7, 3, false)), Err(codes::PRODUCER_FENCED));
    let d = t.add_partitions(2, 7, 0, &[p("a", 0)], false);
    written(&mut t, d).unwrap();
    let d = t.end_txn(3, 7, 0, false);
    written(&mut t, d).unwrap();
    assert_eq!(t.meta().state, TxnState::PrepareAbort);
    assert!(t.begin_complete(4));
    t.complete_write();
    assert_eq!(t.meta().state, TxnState::CompleteAbort);
    assert_eq!(answer(t.end_txn(5, 7, 0, false)), Ok(()));
}

#[test]
fn add_partitions_checks_producer_and_verify_only_changes_nothing() {
    let mut t = initialized(0);
    assert_eq!(answer(t.add_partitions(1, 9, 0, &[p("a", 0)], false)), Err(codes::INVALID_PRODUCER_ID_MAPPING));
    assert_eq!(answer(t.add_partitions(1, 7, 1, &[p("a", 0)], false)), Err(codes::PRODUCER_FENCED));
    assert_eq!(
        answer(t.add_partitions(1, 7, 0, &[p("a", 0)], true)),
        Ok(vec![(p("a", 0), codes::INVALID_TXN_STATE)]),
        "verification before any add"
    );
    let d = t.add_partitions(2, 7, 0, &[p("a", 0)], false);
    written(&mut t, d).unwrap();
    let before = t.meta().clone();
    assert_eq!(
        answer(t.add_partitions(3, 7, 0, &[p("a", 0), p("b", 0)], true)),
        Ok(vec![(p("a", 0), codes::NONE), (p("b", 0), codes::INVALID_TXN_STATE)])
    );
    assert_eq!(t.meta(), &before);
    assert!(t.pending().is_none());
}

#[test]
fn a_pending_transition_makes_everything_else_wait_and_a_failed_write_changes_nothing() {
    let mut t = initialized(0);
    let before = t.meta().clone();
    assert!(matches!(t.add_partitions(1, 7, 0, &[p("a", 0)], false), Decision::Write { .. }));
    assert_eq!(answer(t.add_partitions(1, 7, 0, &[p("b", 0)], false)), Err(codes::CONCURRENT_TRANSACTIONS));
    assert_eq!(answer(t.end_txn(1, 7, 0, true)), Err(codes::CONCURRENT_TRANSACTIONS));
    assert_eq!(answer(t.init_producer_id(1, T, None, None)), Err(codes::CONCURRENT_TRANSACTIONS));
    t.abort_write();
    assert_eq!(t.meta(), &before);
}

#[test]
fn init_bumps_the_epoch_and_kip360_recovery_accepts_the_current_or_last_epoch() {
    let mut t = initialized(0);
    let d = t.init_producer_id(1, T, None, None);
    assert_eq!(written(&mut t, d), Ok((7, 1)));
    // KIP-360: the producer names its (id, epoch); a bump follows.
    let d = t.init_producer_id(2, T, Some((7, 1)), None);
    assert_eq!(written(&mut t, d), Ok((7, 2)));
    assert_eq!(t.meta().last_producer_epoch, 1);
    // Its retry (the answer was lost) names the old epoch again: the same answer.
    let d = t.init_producer_id(3, T, Some((7, 1)), None);
    assert_eq!(written(&mut t, d), Ok((7, 2)));
    // An older epoch, or a foreign producer id, is fenced.
    assert_eq!(answer(t.init_producer_id(4, T, Some((7, 0)), None)), Err(codes::PRODUCER_FENCED));
    assert_eq!(answer(t.init_producer_id(4, T, Some((99, 2)), None)), Err(codes::PRODUCER_FENCED));
}

#[test]
fn an_exhausted_epoch_rotates_to_a_new_producer_id() {
    let mut meta = initialized(0).meta().clone();
    meta.producer_epoch = i16::MAX - 1;
    let mut t = Txn::restore("tx", meta);
    assert_eq!(t.init_producer_id(1, T, None, None), Decision::NeedProducerId);
    let d = t.init_producer_id(1, T, None, Some(42));
    assert_eq!(written(&mut t, d), Ok((42, 0)));
    assert_eq!(t.meta().last_producer_id, 7);
}

#[test]
fn init_over_an_open_transaction_fences_and_aborts_it() {
    let mut t = initialized(0);
    let d = t.add_partitions(1, 7, 0, &[p("a", 0)], false);
    written(&mut t, d).unwrap();
    let d = t.init_producer_id(2, T, None, None);
    assert_eq!(d, Decision::Write { reply: Err(codes::CONCURRENT_TRANSACTIONS), then_markers: true });
    assert_eq!(t.pending().map(|p| p.state), Some(TxnState::PrepareEpochFence));
    t.complete_write();
    assert_eq!(t.meta().state, TxnState::PrepareAbort);
    assert_eq!(t.meta().producer_epoch, 1, "the markers fence epoch 0");
    // The zombie (epoch 0) can no longer do anything.
    assert_eq!(answer(t.end_txn(3, 7, 0, true)), Err(codes::PRODUCER_FENCED));
    assert_eq!(answer(t.add_partitions(3, 7, 0, &[p("b", 0)], true)), Err(codes::PRODUCER_FENCED));
    // The new incarnation retries until the abort completed, then gets the next epoch.
    assert_eq!(answer(t.init_producer_id(3, T, None, None)), Err(codes::CONCURRENT_TRANSACTIONS));
    assert!(t.begin_complete(4));
    t.complete_write();
    assert_eq!(t.meta().state, TxnState::CompleteAbort);
    let d = t.init_producer_id(5, T, None, None);
    assert_eq!(written(&mut t, d), Ok((7, 2)));
}

#[test]
fn the_coordinator_aborts_a_transaction_older_than_its_timeout() {
    let mut t = initialized(0);
    let d = t.add_partitions(100, 7, 0, &[p("a", 0)], false);
    written(&mut t, d).unwrap();
    assert!(!t.is_timed_out(100 + T));
    assert_eq!(answer(t.abort_timed_out(100 + T)), Err(codes::INVALID_TXN_STATE));
    assert!(t.is_timed_out(101 + T));
    let d = t.abort_timed_out(101 + T);
    assert_eq!(d, Decision::Write { reply: Ok(()), then_markers: true });
    t.complete_write();
    assert_eq!((t.meta().state, t.meta().producer_epoch), (TxnState::PrepareAbort, 1));
    assert!(!t.is_timed_out(200 + T), "only Ongoing transactions time out");
}

#[test]
fn idle_ids_expire_after_the_expiration() {
    let mut t = initialized(1_000);
    assert!(!t.is_expired(1_999, 1_000));
    assert!(t.begin_expire(2_000, 1_000));
    assert_eq!(t.pending_target().map(|m| m.state), Some(TxnState::Dead));
    t.abort_write();
    let d = t.add_partitions(2_000, 7, 0, &[p("a", 0)], false);
    written(&mut t, d).unwrap();
    assert!(!t.begin_expire(1_000_000, 1_000), "an open transaction never expires");
}

#[test]
fn state_names_are_kafkas() {
    for s in TxnState::ALL {
        assert_eq!(TxnState::from_name(s.name()), Some(s));
        assert_eq!(TxnState::from_name(&s.name().to_uppercase()), Some(s));
    }
    assert_eq!(TxnState::from_name("Running"), None);
}

#[derive(Clone, Debug)]
enum Op {
    Init { expected: Option<i16> },
    Add { partition: i32, verify: bool, epoch_delta: i16 },
    End { commit: bool, epoch_delta: i16 },
    Markers,
    Timeout,
    Expire,
    Tick(u64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        proptest::option::of(-1i16..3).prop_map(|expected| Op::Init { expected }),
        (0..4i32, any::<bool>(), -1i16..2).prop_map(|(partition, verify, epoch_delta)| Op::Add {
            partition,
            verify,
            epoch_delta
        }),
        (any::<bool>(), -1i16..2).prop_map(|(commit, epoch_delta)| Op::End { commit, epoch_delta }),
        Just(Op::Markers),
        Just(Op::Timeout),
        Just(Op::Expire),
        (1u64..40_000).prop_map(Op::Tick),
    ]
}

proptest! {
    /// Any sequence of requests, timer events and failed writes: invariants hold after every
    /// step, the producer epoch never goes down while the producer id stays, and replaying the
    /// records the edge appended gives exactly the live state.
    #[test]
    fn replay_of_the_state_log_equals_the_live_state(
        ops in proptest::collection::vec((op(), any::<bool>()), 1..60)
    ) {
        let mut now = 0u64;
        let mut t = initialized(now);
        let mut log: Vec<Option<TxnMetadata>> = vec![Some(t.meta().clone())];
        let mut gone = false;
        for (op, write_fails) in ops {
            if gone {
                break;
            }
            let (pid, epoch) = (t.meta().producer_id, t.meta().producer_epoch);
            let before = t.meta().clone();
            let wrote = match op {
                Op::Init { expected } => {
                    let expected = expected.map(|e| (pid, epoch.saturating_add(e).max(0)));
                    matches!(t.init_producer_id(now, 10_000, expected, Some(1_000)), Decision::Write { .. })
                }
                Op::Add { partition, verify, epoch_delta } => matches!(
                    t.add_partitions(now, pid, epoch + epoch_delta, &[p("t", partition)], verify),
                    Decision::Write { .. }
                ),
                Op::End { commit, epoch_delta } => {
                    matches!(t.end_txn(now, pid, epoch + epoch_delta, commit), Decision::Write { .. })
                }
                Op::Markers => t.begin_complete(now),
                Op::Timeout => matches!(t.abort_timed_out(now), Decision::Write { .. }),
                Op::Expire => t.begin_expire(now, 50_000),
                Op::Tick(ms) => {
                    now += ms;
                    false
                }
            };
            prop_assert_eq!(wrote, t.pending().is_some());
            if wrote {
                if write_fails {
                    t.abort_write();
                    prop_assert_eq!(t.meta(), &before);
                } else {
                    let target = t.pending_target().cloned().unwrap();
                    if target.state == TxnState::Dead {
                        log.push(None);
                        gone = true;
                    } else {
                        log.push(Some(target));
                        t.complete_write();
                    }
                }
            } else {
                prop_assert_eq!(t.meta(), &before, "an answer changes nothing");
            }
            prop_assert!(t.check_invariants(), "{:?}", t);
            if t.meta().producer_id == before.producer_id {
                prop_assert!(t.meta().producer_epoch >= before.producer_epoch);
            }
        }
        // Replay: fold the records like state_log::replay does.
        let mut replayed: BTreeMap<String, TxnMetadata> = BTreeMap::new();
        for record in &log {
            let (k, v) = crate::txn::state_log::record("tx", record.as_ref());
            prop_assert!(crate::txn::state_log::apply_record(&mut replayed, &k, v.as_deref()));
        }
        if gone {
            prop_assert!(replayed.is_empty());
        } else {
            prop_assert_eq!(replayed.get("tx"), Some(t.meta()));
        }
    }
}

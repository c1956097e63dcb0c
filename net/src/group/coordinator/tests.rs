//! Unit tests of the sans-I/O group state machine: no runtime, explicit clock.

use super::*;

fn config() -> GroupConfig {
    GroupConfig { initial_rebalance_delay_ms: 0, ..GroupConfig::default() }
}

fn join_req(member_id: &str, new_id: &str, protocols: &[(&str, &[u8])]) -> JoinRequest {
    JoinRequest {
        member_id: member_id.into(),
        instance_id: None,
        client_id: "c".into(),
        client_host: String::new(),
        session_timeout_ms: 10_000,
        rebalance_timeout_ms: 30_000,
        protocol_type: "consumer".into(),
        protocols: protocols.iter().map(|(n, m)| (n.to_string(), Bytes::copy_from_slice(m))).collect(),
        require_known_member_id: true,
        new_member_id: new_id.into(),
    }
}

const RANGE: &[(&str, &[u8])] = &[("range", b"r")];

/// Joins `ids` with the v4+ MEMBER_ID_REQUIRED dance; returns the join events.
fn join_all(g: &mut Group, now: u64, ids: &[&str]) -> Vec<GroupEvent> {
    for id in ids {
        match g.join(now, &config(), join_req("", id, RANGE)) {
            Reply::Now(r) => {
                assert_eq!(r.error, codes::MEMBER_ID_REQUIRED);
                assert_eq!(r.member_id, *id);
            }
            other => panic!("expected MEMBER_ID_REQUIRED, got {other:?}"),
        }
    }
    for id in ids {
        assert_eq!(g.join(now, &config(), join_req(id, "unused", RANGE)), Reply::Pending { member_id: id.to_string() });
    }
    g.take_events()
}

fn joins(events: &[GroupEvent]) -> Vec<&JoinResult> {
    events.iter().filter_map(|e| if let GroupEvent::Join { result, .. } = e { Some(result) } else { None }).collect()
}

fn syncs(events: &[GroupEvent]) -> Vec<(&str, &SyncResult)> {
    events
        .iter()
        .filter_map(|e| {
            if let GroupEvent::Sync { member_id, result } = e {
                Some((member_id.as_str(), result))
            } else {
                None
            }
        })
        .collect()
}

/// A stable 3-member group at generation 1 with assignments a1/b1/c1.
fn stable_group() -> Group {
    let mut g = Group::new("g", 0);
    let events = join_all(&mut g, 0, &["a", "b", "c"]);
    let results = joins(&events);
    assert_eq!(results.len(), 3);
    assert!(results.iter().all(|r| r.error == codes::NONE && r.generation_id == 1 && r.leader == "a"));
    assert_eq!(results.iter().filter(|r| r.members.len() == 3).count(), 1, "only the leader gets members");
    assert_eq!(g.state(), GroupState::CompletingRebalance);
    assert_eq!(g.sync(1, "b", None, 1, None, None, vec![]), Reply::Pending { member_id: "b".into() });
    let assignment: Vec<(String, Bytes)> =
        ["a", "b", "c"].iter().map(|m| (m.to_string(), Bytes::from(format!("{m}1")))).collect();
    assert_eq!(
        g.sync(1, "a", None, 1, Some("consumer"), Some("range"), assignment),
        Reply::Pending { member_id: "a".into() }
    );
    let events = g.take_events();
    let s = syncs(&events);
    assert_eq!(s.len(), 2, "a and b were waiting");
    assert!(s.iter().any(|(m, r)| *m == "b" && r.assignment == b"b1"[..]));
    assert!(events.contains(&GroupEvent::Persist));
    assert_eq!(g.state(), GroupState::Stable);
    // A late follower gets its assignment at once.
    match g.sync(2, "c", None, 1, None, None, vec![]) {
        Reply::Now(r) => assert_eq!(r.assignment, Bytes::from("c1")),
        other => panic!("{other:?}"),
    }
    g
}

#[test]
fn three_members_join_sync_and_become_stable() {
    let g = stable_group();
    assert_eq!(g.generation_id(), 1);
    assert_eq!(g.protocol_name(), Some("range"));
    assert!(g.check_invariants());
}

#[test]
fn heartbeat_error_codes() {
    let mut g = stable_group();
    assert_eq!(g.heartbeat(3, "a", None, 1), codes::NONE);
    assert_eq!(g.heartbeat(3, "zzz", None, 1), codes::UNKNOWN_MEMBER_ID);
    assert_eq!(g.heartbeat(3, "a", None, 0), codes::ILLEGAL_GENERATION);
    // A new member joining starts a rebalance the others learn of from their heartbeat.
    assert!(matches!(g.join(4, &config(), join_req("", "d", RANGE)), Reply::Now(_)));
    assert!(matches!(g.join(4, &config(), join_req("d", "x", RANGE)), Reply::Pending { .. }));
    assert_eq!(g.state(), GroupState::PreparingRebalance);
    assert_eq!(g.heartbeat(5, "b", None, 1), codes::REBALANCE_IN_PROGRESS);
}

#[test]
fn offset_commit_checks_generation_and_member() {
    let mut g = stable_group();
    assert_eq!(g.validate_offset_commit(3, "a", None, 1), Ok(()));
    assert_eq!(g.validate_offset_commit(3, "a", None, 7), Err(codes::ILLEGAL_GENERATION));
    assert_eq!(g.validate_offset_commit(3, "nobody", None, 1), Err(codes::UNKNOWN_MEMBER_ID));
    assert_eq!(
        g.validate_offset_commit(3, "", None, -1),
        Err(codes::UNKNOWN_MEMBER_ID),
        "simple commit to a live group"
    );
    // During CompletingRebalance a current member is told to wait.
    g.join(4, &config(), join_req("a", "", &[("range", b"changed")]));
    for id in ["b", "c"] {
        g.join(4, &config(), join_req(id, "", RANGE));
    }
    assert_eq!(g.state(), GroupState::CompletingRebalance);
    assert_eq!(g.validate_offset_commit(5, "b", None, 2), Err(codes::REBALANCE_IN_PROGRESS));
    // An empty group accepts commits without a generation.
    let mut empty = Group::new("e", 0);
    assert_eq!(empty.validate_offset_commit(1, "", None, -1), Ok(()));
}

#[test]
fn session_timeout_evicts_and_rebalances() {
    let mut g = stable_group();
    // b and c heartbeat; a goes silent past its 10 s session.
    for t in [4_000, 8_000] {
        assert_eq!(g.heartbeat(t, "b", None, 1), codes::NONE);
        assert_eq!(g.heartbeat(t, "c", None, 1), codes::NONE);
    }
    g.tick(10_500, &config());
    assert_eq!(g.state(), GroupState::PreparingRebalance);
    assert!(g.members().all(|m| m.member_id != "a"));
    assert_eq!(g.leader_id(), Some("b"));
    for id in ["b", "c"] {
        assert!(matches!(g.join(10_600, &config(), join_req(id, "", RANGE)), Reply::Pending { .. }));
    }
    let events = g.take_events();
    let results = joins(&events);
    assert_eq!(results.len(), 2);
    assert!(results.iter().all(|r| r.generation_id == 2 && r.leader == "b"));
}

#[test]
fn rebalance_deadline_drops_members_that_did_not_rejoin() {
    let mut g = stable_group();
    g.join(10, &config(), join_req("a", "", &[("range", b"changed")]));
    assert_eq!(g.state(), GroupState::PreparingRebalance);
    assert_eq!(g.heartbeat(11, "b", None, 1), codes::REBALANCE_IN_PROGRESS);
    g.tick(10 + 30_000, &config());
    assert_eq!(g.state(), GroupState::CompletingRebalance);
    assert_eq!(g.member_count(), 1);
    assert_eq!(g.generation_id(), 2);
}

#[test]
fn leave_of_every_member_empties_the_group() {
    let mut g = stable_group();
    assert_eq!(
        g.leave(5, &config(), &[("a".into(), None), ("zz".into(), None)]),
        vec![codes::NONE, codes::UNKNOWN_MEMBER_ID]
    );
    assert_eq!(g.state(), GroupState::PreparingRebalance);
    assert_eq!(g.leave(6, &config(), &[("b".into(), None), ("c".into(), None)]), vec![codes::NONE, codes::NONE]);
    assert_eq!(g.state(), GroupState::Empty);
    assert_eq!(g.generation_id(), 2);
}

#[test]
fn static_member_restart_keeps_assignment_without_rebalance_and_fences_old_id() {
    let mut g = Group::new("g", 0);
    let mut req = join_req("", "s1", RANGE);
    req.instance_id = Some("inst".into());
    assert_eq!(g.join(0, &config(), req.clone()), Reply::Pending { member_id: "s1".into() });
    g.take_events();
    g.sync(1, "s1", Some("inst"), 1, None, None, vec![("s1".into(), Bytes::from("A"))]);
    assert_eq!(g.state(), GroupState::Stable);
    // Restart: same instance id, no member id.
    req.new_member_id = "s2".into();
    match g.join(5, &config(), req) {
        Reply::Now(r) => {
            assert_eq!(r.error, codes::NONE);
            assert_eq!(r.member_id, "s2");
            assert_eq!(r.generation_id, 1, "no new generation");
            assert!(r.skip_assignment, "the leader must not reassign");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(g.state(), GroupState::Stable);
    match g.sync(6, "s2", Some("inst"), 1, None, None, vec![]) {
        Reply::Now(r) => assert_eq!(r.assignment, Bytes::from("A")),
        other => panic!("{other:?}"),
    }
    assert_eq!(g.heartbeat(7, "s1", Some("inst"), 1), codes::FENCED_INSTANCE_ID);
    assert_eq!(g.validate_offset_commit(7, "s1", Some("inst"), 1), Err(codes::FENCED_INSTANCE_ID));
    assert_eq!(g.heartbeat(7, "s2", Some("inst"), 1), codes::NONE);
}

#[test]
fn protocol_selection_and_inconsistent_protocols() {
    let mut g = Group::new("g", 0);
    let both: &[(&str, &[u8])] = &[("cooperative-sticky", b"x"), ("range", b"y")];
    let range_only: &[(&str, &[u8])] = &[("range", b"z")];
    g.join(0, &config(), join_req("", "a", both));
    g.join(0, &config(), join_req("", "b", range_only));
    g.join(0, &config(), join_req("a", "", both));
    g.join(0, &config(), join_req("b", "", range_only));
    assert_eq!(g.protocol_name(), Some("range"), "the only protocol both support");
    let mut other = join_req("", "c", &[("roundrobin", b"")]);
    assert!(matches!(
        g.join(1, &config(), other.clone()),
        Reply::Now(JoinResult { error: codes::INCONSISTENT_GROUP_PROTOCOL, .. })
    ));
    other.protocols = vec![("range".into(), Bytes::new())];
    other.protocol_type = "connect".into();
    assert!(matches!(
        g.join(1, &config(), other),
        Reply::Now(JoinResult { error: codes::INCONSISTENT_GROUP_PROTOCOL, .. })
    ));
}

#[test]
fn session_timeout_bounds_and_group_size() {
    let mut g = Group::new("g", 0);
    let mut req = join_req("", "a", RANGE);
    req.session_timeout_ms = 10;
    assert!(matches!(g.join(0, &config(), req), Reply::Now(JoinResult { error: codes::INVALID_SESSION_TIMEOUT, .. })));
    let small = GroupConfig { max_size: 1, ..config() };
    assert!(matches!(
        g.join(0, &small, join_req("", "a", RANGE)),
        Reply::Now(JoinResult { error: codes::MEMBER_ID_REQUIRED, .. })
    ));
    assert!(matches!(
        g.join(0, &small, join_req("", "b", RANGE)),
        Reply::Now(JoinResult { error: codes::GROUP_MAX_SIZE_REACHED, .. })
    ));
}

#[test]
fn initial_rebalance_delay_waits_then_completes() {
    let cfg = GroupConfig { initial_rebalance_delay_ms: 300, ..GroupConfig::default() };
    let mut g = Group::new("g", 0);
    let mut req = join_req("", "a", RANGE);
    req.require_known_member_id = false;
    assert!(matches!(g.join(0, &cfg, req), Reply::Pending { .. }));
    assert!(g.take_events().is_empty(), "held for the initial delay");
    g.tick(299, &cfg);
    assert!(g.take_events().is_empty());
    g.tick(300, &cfg);
    assert_eq!(joins(&g.take_events()).len(), 1);
    assert_eq!(g.state(), GroupState::CompletingRebalance);
}

#[test]
fn a_follower_waiting_in_sync_is_told_to_rejoin_when_a_rebalance_starts() {
    let mut g = Group::new("g", 0);
    join_all(&mut g, 0, &["a", "b"]);
    assert!(matches!(g.sync(1, "b", None, 1, None, None, vec![]), Reply::Pending { .. }));
    assert!(matches!(g.join(2, &config(), join_req("", "c", RANGE)), Reply::Now(_)));
    assert!(matches!(g.join(2, &config(), join_req("c", "", RANGE)), Reply::Pending { .. }));
    let events = g.take_events();
    assert!(syncs(&events).iter().any(|(m, r)| *m == "b" && r.error == codes::REBALANCE_IN_PROGRESS));
    assert_eq!(
        g.sync(3, "a", None, 1, None, None, vec![]),
        Reply::Now(SyncResult::error(codes::REBALANCE_IN_PROGRESS))
    );
}

#[test]
fn offsets_expire_only_when_empty_after_retention() {
    let mut g = Group::new("g", 0);
    g.apply_commit(
        "t",
        0,
        CommittedOffset { offset: 5, leader_epoch: -1, metadata: String::new(), commit_timestamp_ms: 100 },
    );
    assert!(g.expired_offsets(100 + 999, 1000).is_empty());
    assert_eq!(g.expired_offsets(100 + 1000, 1000), vec![("t".to_string(), 0)]);
    let mut live = stable_group();
    live.apply_commit(
        "t",
        0,
        CommittedOffset { offset: 5, leader_epoch: -1, metadata: String::new(), commit_timestamp_ms: 0 },
    );
    assert!(live.expired_offsets(u64::MAX / 2, 1000).is_empty(), "a live group keeps its offsets");
}

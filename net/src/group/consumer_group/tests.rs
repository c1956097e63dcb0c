//! Unit tests and a property test of the consumer-protocol group: simulated clients that
//! revoke before they take, join, leave, crash and heartbeat in random order while topics
//! change.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;

use super::*;

fn config() -> ConsumerGroupConfig {
    ConsumerGroupConfig::default()
}

fn tid(n: u8) -> TopicId {
    [n; 16]
}

fn image(version: u64, topics: &[(&str, u8, i32)]) -> TopicsImage {
    TopicsImage {
        version,
        topics: topics.iter().map(|(n, id, p)| (n.to_string(), TopicInfo { id: tid(*id), partitions: *p })).collect(),
    }
}

fn join(member: &str, topics: &[&str]) -> HeartbeatRequest {
    HeartbeatRequest {
        member_id: member.into(),
        member_epoch: 0,
        rebalance_timeout_ms: 300_000,
        subscribed_topic_names: Some(topics.iter().map(|t| t.to_string()).collect()),
        owned: Some(Assignment::new()),
        ..Default::default()
    }
}

fn beat(member: &str, epoch: i32, owned: &Assignment) -> HeartbeatRequest {
    HeartbeatRequest {
        member_id: member.into(),
        member_epoch: epoch,
        rebalance_timeout_ms: -1,
        owned: Some(owned.clone()),
        ..Default::default()
    }
}

fn count(a: &Assignment) -> usize {
    topics::partition_count(a)
}

/// Heartbeats every member (reporting what it was last told) until nothing changes.
fn settle(g: &mut ConsumerGroup, now: u64, img: &TopicsImage, told: &mut BTreeMap<String, (i32, Assignment)>) {
    for _ in 0..10 {
        let ids: Vec<String> = told.keys().cloned().collect();
        for id in ids {
            let (epoch, owned) = told[&id].clone();
            let r = g.heartbeat(now, &config(), img, beat(&id, epoch, &owned));
            assert_eq!(r.error, codes::NONE, "{r:?}");
            let owned = r.assignment.unwrap_or(owned);
            told.insert(id, (r.member_epoch, owned));
        }
    }
}

#[test]
fn three_members_share_twelve_partitions_and_a_leaver_only_adds_to_the_others() {
    let img = image(1, &[("t", 1, 12)]);
    let mut g = ConsumerGroup::new("g");
    let mut told = BTreeMap::new();
    for m in ["a", "b", "c"] {
        let r = g.heartbeat(0, &config(), &img, join(m, &["t"]));
        assert_eq!(r.error, codes::NONE);
        assert_eq!(r.heartbeat_interval_ms, 5000);
        told.insert(m.to_string(), (r.member_epoch, r.assignment.unwrap()));
    }
    settle(&mut g, 1, &img, &mut told);
    assert_eq!(g.state(), ConsumerGroupState::Stable);
    for (id, (epoch, a)) in &told {
        assert_eq!(count(a), 4, "{id}");
        assert_eq!(*epoch, g.group_epoch());
    }
    let before: BTreeMap<String, Assignment> = told.iter().map(|(k, v)| (k.clone(), v.1.clone())).collect();
    let r =
        g.heartbeat(2, &config(), &img, HeartbeatRequest { member_epoch: -1, ..beat("c", told["c"].0, &told["c"].1) });
    assert_eq!((r.error, r.member_epoch), (codes::NONE, -1));
    told.remove("c");
    settle(&mut g, 3, &img, &mut told);
    for id in ["a", "b"] {
        let a = &told[id].1;
        assert_eq!(count(a), 6);
        for (t, ps) in &before[id] {
            assert!(ps.is_subset(&a[t]), "{id} lost a partition");
        }
    }
}

#[test]
fn a_new_member_gets_partitions_only_after_their_owner_revoked_them() {
    let img = image(1, &[("t", 1, 4)]);
    let mut g = ConsumerGroup::new("g");
    let a = g.heartbeat(0, &config(), &img, join("a", &["t"]));
    let a_owned = a.assignment.clone().unwrap();
    assert_eq!(count(&a_owned), 4);
    let b = g.heartbeat(1, &config(), &img, join("b", &["t"]));
    assert_eq!(b.error, codes::NONE);
    assert_eq!(count(&b.assignment.unwrap()), 0, "a still owns everything");
    assert_eq!(g.member("b").unwrap().state, MemberState::UnreleasedPartitions);
    // a is told to give two up and stays at its epoch until it does.
    let r = g.heartbeat(2, &config(), &img, beat("a", a.member_epoch, &a_owned));
    assert_eq!(r.member_epoch, a.member_epoch);
    let kept = r.assignment.unwrap();
    assert_eq!(count(&kept), 2);
    assert_eq!(g.member("a").unwrap().state, MemberState::UnrevokedPartitions);
    // Not revoked yet: b still waits.
    let rb = g.heartbeat(3, &config(), &img, beat("b", g.member("b").unwrap().member_epoch, &Assignment::new()));
    assert!(rb.assignment.is_none());
    // a revokes: it moves to the group epoch, then b gets the two.
    let r = g.heartbeat(4, &config(), &img, beat("a", a.member_epoch, &kept));
    assert_eq!(r.member_epoch, g.group_epoch());
    let rb = g.heartbeat(5, &config(), &img, beat("b", rb.member_epoch, &Assignment::new()));
    assert_eq!(count(&rb.assignment.unwrap()), 2);
    assert_eq!(g.state(), ConsumerGroupState::Stable);
}

#[test]
fn epochs_are_checked_like_kafka() {
    let img = image(1, &[("t", 1, 2)]);
    let mut g = ConsumerGroup::new("g");
    let a = g.heartbeat(0, &config(), &img, join("a", &["t"]));
    let owned = a.assignment.unwrap();
    let r = g.heartbeat(1, &config(), &img, beat("a", a.member_epoch + 1, &owned));
    assert_eq!(r.error, codes::FENCED_MEMBER_EPOCH);
    let r = g.heartbeat(1, &config(), &img, beat("nobody", 3, &owned));
    assert_eq!(r.error, codes::UNKNOWN_MEMBER_ID);
    // b joins: a's epoch moves on; a's previous epoch is still accepted once (lost response).
    g.heartbeat(2, &config(), &img, join("b", &["t"]));
    let r = g.heartbeat(3, &config(), &img, beat("a", a.member_epoch, &owned));
    assert_eq!(r.error, codes::NONE);
    assert_eq!(g.validate_offset_commit("a", r.member_epoch), Ok(()));
    assert_eq!(g.validate_offset_commit("a", r.member_epoch - 1), Err(codes::STALE_MEMBER_EPOCH));
    assert_eq!(g.validate_offset_commit("a", r.member_epoch + 1), Err(codes::FENCED_MEMBER_EPOCH));
    assert_eq!(g.validate_offset_commit("zz", 1), Err(codes::UNKNOWN_MEMBER_ID));
    assert_eq!(g.validate_offset_commit("", -1), Err(codes::UNKNOWN_MEMBER_ID));
    assert_eq!(g.validate_offset_fetch(Some("a"), r.member_epoch - 1), Err(codes::STALE_MEMBER_EPOCH));
    assert_eq!(g.validate_offset_fetch(None, -1), Ok(()));
}

#[test]
fn requests_are_validated_like_kafka() {
    let v = |r: &HeartbeatRequest, version| ConsumerGroup::validate_request(r, version, &config()).map_err(|e| e.0);
    assert_eq!(v(&join("a", &["t"]), 1), Ok(()));
    assert_eq!(v(&join("", &["t"]), 1), Err(codes::INVALID_REQUEST));
    assert_eq!(v(&join("", &["t"]), 0), Ok(()));
    assert_eq!(v(&HeartbeatRequest { subscribed_topic_names: None, ..join("a", &[]) }, 1), Err(codes::INVALID_REQUEST));
    assert_eq!(v(&HeartbeatRequest { rebalance_timeout_ms: -1, ..join("a", &["t"]) }, 1), Err(codes::INVALID_REQUEST));
    let bad_regex = HeartbeatRequest { subscribed_topic_regex: Some("(".into()), ..join("a", &[]) };
    assert_eq!(v(&bad_regex, 1), Err(codes::INVALID_REGULAR_EXPRESSION));
    let assignor = HeartbeatRequest { server_assignor: Some("sticky".into()), ..join("a", &["t"]) };
    assert_eq!(v(&assignor, 1), Err(codes::UNSUPPORTED_ASSIGNOR));
    let static_leave = HeartbeatRequest { member_epoch: -2, ..beat("a", 0, &Assignment::new()) };
    assert_eq!(v(&static_leave, 1), Err(codes::INVALID_REQUEST));
}

#[test]
fn sessions_expire_and_revocations_time_out() {
    let img = image(1, &[("t", 1, 4)]);
    let mut g = ConsumerGroup::new("g");
    g.heartbeat(0, &config(), &img, join("a", &["t"]));
    let mut b = join("b", &["t"]);
    b.rebalance_timeout_ms = 10;
    g.heartbeat(1_000, &config(), &img, b);
    assert_eq!(g.next_deadline_ms(), Some(45_000));
    // a must revoke two partitions but never heartbeats again: its session ends.
    let removed = g.tick(45_000, &config(), &img);
    assert_eq!(removed, vec![("a".to_string(), Removal::SessionExpired)]);
    let r = g.heartbeat(45_001, &config(), &img, beat("b", g.member("b").unwrap().member_epoch, &Assignment::new()));
    assert_eq!(count(&r.assignment.unwrap()), 4);
    // c joins; b is asked to revoke two and does not within its rebalance timeout: fenced.
    g.heartbeat(45_002, &config(), &img, join("c", &["t"]));
    let owned_b = g.member("b").unwrap().assigned.clone();
    g.heartbeat(45_003, &config(), &img, beat("b", g.member("b").unwrap().member_epoch, &owned_b));
    assert_eq!(g.member("b").unwrap().state, MemberState::UnrevokedPartitions);
    assert_eq!(g.member("b").unwrap().revocation_deadline_ms, Some(45_013));
    assert_eq!(g.tick(45_012, &config(), &img), vec![]);
    assert_eq!(g.tick(45_013, &config(), &img), vec![("b".to_string(), Removal::RevocationTimedOut)]);
    let c = g.heartbeat(45_014, &config(), &img, beat("c", g.member("c").unwrap().member_epoch, &Assignment::new()));
    assert_eq!(count(&c.assignment.unwrap()), 4);
}

#[test]
fn a_static_member_returns_to_its_assignment_without_a_new_epoch() {
    let img = image(1, &[("t", 1, 6)]);
    let mut g = ConsumerGroup::new("g");
    let mut told = BTreeMap::new();
    for (m, i) in [("a", "ia"), ("b", "ib")] {
        let r = g.heartbeat(0, &config(), &img, HeartbeatRequest { instance_id: Some(i.into()), ..join(m, &["t"]) });
        told.insert(m.to_string(), (r.member_epoch, r.assignment.unwrap()));
    }
    settle(&mut g, 1, &img, &mut told);
    let epoch = g.group_epoch();
    let a_had = told["a"].1.clone();
    let leave = HeartbeatRequest { member_epoch: -2, instance_id: Some("ia".into()), ..beat("a", told["a"].0, &a_had) };
    let r = g.heartbeat(2, &config(), &img, leave);
    assert_eq!((r.error, r.member_epoch), (codes::NONE, -2));
    // Someone else with the instance id while it is still in the group: refused.
    let other = HeartbeatRequest { instance_id: Some("ib".into()), ..join("x", &["t"]) };
    assert_eq!(g.heartbeat(3, &config(), &img, other).error, codes::UNRELEASED_INSTANCE_ID);
    // The instance comes back with a new member id: same epoch, same partitions.
    let back = HeartbeatRequest { instance_id: Some("ia".into()), ..join("a2", &["t"]) };
    let r = g.heartbeat(4, &config(), &img, back);
    assert_eq!(r.error, codes::NONE);
    assert_eq!(r.member_epoch, epoch);
    assert_eq!(r.assignment.unwrap(), a_had);
    assert_eq!(g.group_epoch(), epoch);
    assert!(g.member("a").is_none());
    // An instance cannot take over another member's id.
    let leave = HeartbeatRequest { member_epoch: -2, instance_id: Some("ia".into()), ..beat("a2", epoch, &a_had) };
    assert_eq!(g.heartbeat(5, &config(), &img, leave).error, codes::NONE);
    let steal = HeartbeatRequest { instance_id: Some("ia".into()), ..join("b", &["t"]) };
    assert_eq!(g.heartbeat(6, &config(), &img, steal).error, codes::FENCED_INSTANCE_ID);
    assert!(g.check_invariants());
}

#[test]
fn regex_subscriptions_pick_up_new_topics() {
    let mut g = ConsumerGroup::new("g");
    let img = image(1, &[("pre-1", 1, 2), ("other", 2, 2)]);
    let mut req = join("a", &[]);
    req.subscribed_topic_names = None;
    req.subscribed_topic_regex = Some("pre-.*".into());
    let r = g.heartbeat(0, &config(), &img, req);
    let a = r.assignment.unwrap();
    assert_eq!(a.keys().collect::<Vec<_>>(), vec![&tid(1)]);
    let img = image(2, &[("pre-1", 1, 2), ("other", 2, 2), ("pre-2", 3, 3)]);
    let r = g.heartbeat(1, &config(), &img, beat("a", r.member_epoch, &a));
    let a = r.assignment.unwrap();
    assert_eq!(count(&a), 5);
    assert!(a.contains_key(&tid(3)));
}

#[test]
fn range_assigns_contiguous_ranges_when_asked() {
    let img = image(1, &[("t", 1, 5)]);
    let mut g = ConsumerGroup::new("g");
    let mut told = BTreeMap::new();
    for m in ["a", "b"] {
        let r = g.heartbeat(
            0,
            &config(),
            &img,
            HeartbeatRequest { server_assignor: Some("range".into()), ..join(m, &["t"]) },
        );
        told.insert(m.to_string(), (r.member_epoch, r.assignment.unwrap()));
    }
    settle(&mut g, 1, &img, &mut told);
    assert_eq!(g.assignor_name(), Some(AssignorName::Range));
    assert_eq!(told["a"].1[&tid(1)], BTreeSet::from([0, 1, 2]));
    assert_eq!(told["b"].1[&tid(1)], BTreeSet::from([3, 4]));
}

#[test]
fn uniform_balances_heterogeneous_subscriptions() {
    use assignor::{assign, is_valid, MemberSpec};
    let parts = BTreeMap::from([(tid(1), 6), (tid(2), 2)]);
    let members = BTreeMap::from([
        ("a".to_string(), MemberSpec { subscribed: BTreeSet::from([tid(1), tid(2)]), previous: Assignment::new() }),
        ("b".to_string(), MemberSpec { subscribed: BTreeSet::from([tid(1)]), previous: Assignment::new() }),
        ("c".to_string(), MemberSpec { subscribed: BTreeSet::from([tid(2)]), previous: Assignment::new() }),
    ]);
    let target = assign(AssignorName::Uniform, &members, &parts);
    assert!(is_valid(&target, &members, &parts));
    let counts: Vec<usize> = target.values().map(count).collect();
    assert_eq!(counts.iter().sum::<usize>(), 8);
    assert!(counts.iter().max().unwrap() - counts.iter().min().unwrap() <= 2, "{counts:?}");
}

// ---- property test ----

#[derive(Clone, Debug)]
enum Op {
    Join(usize, u8),
    Heartbeat(usize, bool),
    Process(usize),
    Leave(usize),
    StaticLeave(usize),
    Crash(usize),
    Advance(u64),
    AddPartitions(u8),
    CreateTopic,
    DeleteTopic(u8),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0..6usize, 0..4u8).prop_map(|(c, s)| Op::Join(c, s)),
        (0..6usize, any::<bool>()).prop_map(|(c, r)| Op::Heartbeat(c, r)),
        (0..6usize, any::<bool>()).prop_map(|(c, r)| Op::Heartbeat(c, r)),
        (0..6usize).prop_map(Op::Process),
        (0..6usize).prop_map(Op::Process),
        (0..6usize).prop_map(Op::Leave),
        (0..6usize).prop_map(Op::StaticLeave),
        (0..6usize).prop_map(Op::Crash),
        (1..20_000u64).prop_map(Op::Advance),
        (0..3u8).prop_map(Op::AddPartitions),
        Just(Op::CreateTopic),
        (0..3u8).prop_map(Op::DeleteTopic),
    ]
}

/// A simulated consumer: it owns partitions, learns its assignment from responses and applies
/// it (revoking what is gone, taking what is new) only when it processes it.
#[derive(Clone, Debug, Default)]
struct Client {
    member_id: String,
    instance_id: Option<String>,
    epoch: i32,
    joined: bool,
    told: Assignment,
    owned: Assignment,
    generation: u32,
}

struct Sim {
    group: ConsumerGroup,
    img: TopicsImage,
    now: u64,
    clients: Vec<Client>,
    next_topic: u8,
    cfg: ConsumerGroupConfig,
}

impl Sim {
    fn new(range: bool) -> Sim {
        let assignors = if range {
            vec![AssignorName::Range, AssignorName::Uniform]
        } else {
            vec![AssignorName::Uniform, AssignorName::Range]
        };
        Sim {
            group: ConsumerGroup::new("g"),
            img: image(1, &[("t0", 1, 3), ("t1", 2, 5)]),
            now: 0,
            clients: (0..6)
                .map(|i| Client { instance_id: (i % 2 == 0).then(|| format!("i{i}")), ..Default::default() })
                .collect(),
            next_topic: 3,
            cfg: ConsumerGroupConfig { session_timeout_ms: 30_000, assignors, ..ConsumerGroupConfig::default() },
        }
    }

    fn subscription(s: u8) -> (Option<Vec<String>>, Option<String>) {
        match s {
            0 => (Some(vec!["t0".into()]), None),
            1 => (Some(vec!["t0".into(), "t1".into()]), None),
            2 => (Some(vec![]), Some("t.*".into())),
            _ => (Some(vec!["t1".into(), "t2".into()]), None),
        }
    }

    fn apply_response(&mut self, c: usize, r: &HeartbeatResponse) {
        let client = &mut self.clients[c];
        if r.error == codes::FENCED_MEMBER_EPOCH || r.error == codes::UNKNOWN_MEMBER_ID {
            // The client abandons its partitions and will rejoin.
            client.owned.clear();
            client.told.clear();
            client.joined = false;
            return;
        }
        assert!(
            r.error == codes::NONE
                || r.error == codes::UNRELEASED_INSTANCE_ID
                || r.error == codes::GROUP_MAX_SIZE_REACHED,
            "{r:?}"
        );
        if r.error != codes::NONE {
            return;
        }
        client.epoch = r.member_epoch;
        if let Some(a) = &r.assignment {
            client.told = a.clone();
        }
    }

    fn removed(&mut self, removed: &[(String, Removal)]) {
        for (id, _) in removed {
            // The fenced client notices (its own session/poll timer) and drops everything.
            for c in &mut self.clients {
                if c.joined && c.member_id == *id {
                    c.owned.clear();
                    c.told.clear();
                    c.joined = false;
                }
            }
        }
    }

    fn step(&mut self, op: &Op) {
        match op.clone() {
            Op::Join(c, s) => {
                if self.clients[c].joined {
                    return;
                }
                let client = &mut self.clients[c];
                client.generation += 1;
                client.member_id = format!("m{c}-{}", client.generation);
                client.owned.clear();
                client.told.clear();
                let (names, regex) = Sim::subscription(s);
                let req = HeartbeatRequest {
                    member_id: client.member_id.clone(),
                    member_epoch: 0,
                    instance_id: client.instance_id.clone(),
                    rebalance_timeout_ms: 60_000,
                    subscribed_topic_names: names,
                    subscribed_topic_regex: regex,
                    owned: Some(Assignment::new()),
                    ..Default::default()
                };
                let r = self.group.heartbeat(self.now, &self.cfg, &self.img, req);
                if r.error == codes::NONE {
                    self.clients[c].joined = true;
                }
                self.apply_response(c, &r);
            }
            Op::Heartbeat(c, report) => {
                let client = &self.clients[c];
                if !client.joined {
                    return;
                }
                let req = HeartbeatRequest {
                    member_id: client.member_id.clone(),
                    member_epoch: client.epoch,
                    instance_id: client.instance_id.clone(),
                    rebalance_timeout_ms: -1,
                    owned: report.then(|| client.owned.clone()),
                    ..Default::default()
                };
                let r = self.group.heartbeat(self.now, &self.cfg, &self.img, req);
                self.apply_response(c, &r);
            }
            Op::Process(c) => {
                let client = &mut self.clients[c];
                // Revoke what is no longer assigned, then take the rest.
                client.owned = client.told.clone();
            }
            Op::Leave(c) | Op::StaticLeave(c) => {
                let client = &mut self.clients[c];
                if !client.joined {
                    return;
                }
                let is_static = matches!(op, Op::StaticLeave(_)) && client.instance_id.is_some();
                client.owned.clear();
                client.told.clear();
                client.joined = false;
                let req = HeartbeatRequest {
                    member_id: client.member_id.clone(),
                    member_epoch: if is_static { -2 } else { -1 },
                    instance_id: client.instance_id.clone(),
                    rebalance_timeout_ms: -1,
                    ..Default::default()
                };
                let r = self.group.heartbeat(self.now, &self.cfg, &self.img, req);
                assert_eq!(r.error, codes::NONE, "{r:?}");
            }
            Op::Crash(c) => {
                let client = &mut self.clients[c];
                client.owned.clear();
                client.told.clear();
                client.joined = false;
            }
            Op::Advance(ms) => {
                self.now += ms;
                let removed = self.group.tick(self.now, &self.cfg, &self.img);
                self.removed(&removed);
            }
            Op::AddPartitions(t) => {
                let name = format!("t{t}");
                if let Some(topic) = self.img.topics.get_mut(&name) {
                    topic.partitions += 1;
                    self.img.version += 1;
                }
            }
            Op::CreateTopic => {
                let n = self.next_topic;
                self.next_topic += 1;
                let name = if self.img.topics.contains_key("t2") { format!("t{n}") } else { "t2".to_string() };
                self.img.topics.insert(name, TopicInfo { id: tid(n), partitions: 2 });
                self.img.version += 1;
            }
            Op::DeleteTopic(t) => {
                if self.img.topics.remove(&format!("t{t}")).is_some() {
                    self.img.version += 1;
                }
            }
        }
    }

    fn assert_single_owners(&self) {
        let mut seen = BTreeSet::new();
        for c in &self.clients {
            for (t, ps) in &c.owned {
                for p in ps {
                    assert!(seen.insert((*t, *p)), "partition {p} of {:?} owned twice: {:?}", t[0], self.clients);
                }
            }
        }
        assert!(self.group.check_invariants());
    }

    /// Every joined client heartbeats and processes, with time moving less than a session.
    fn quiesce(&mut self) {
        for _ in 0..12 {
            for c in 0..self.clients.len() {
                self.step(&Op::Heartbeat(c, true));
                self.assert_single_owners();
                self.step(&Op::Process(c));
                self.assert_single_owners();
            }
            self.step(&Op::Advance(1_000));
        }
        // Let sessions of crashed members end, then settle again.
        self.step(&Op::Advance(self.cfg.session_timeout_ms));
        for _ in 0..12 {
            for c in 0..self.clients.len() {
                self.step(&Op::Heartbeat(c, true));
                self.step(&Op::Process(c));
                self.assert_single_owners();
            }
            self.step(&Op::Advance(1_000));
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn never_two_owners_and_everything_owned_once_quiet(
        ops in proptest::collection::vec(op(), 1..60),
        range in any::<bool>(),
    ) {
        let mut sim = Sim::new(range);
        for op in &ops {
            sim.step(op);
            sim.assert_single_owners();
        }
        // Everyone heartbeats in time from here on: the group converges.
        sim.quiesce();
        let live: Vec<&Client> = sim.clients.iter().filter(|c| c.joined).collect();
        prop_assert_eq!(sim.group.state(), if live.is_empty() { ConsumerGroupState::Empty } else { ConsumerGroupState::Stable });
        // Every partition of a subscribed topic is owned by exactly one live client.
        let mut expected = BTreeSet::new();
        for name in sim.group.subscribed_topic_names() {
            let t = sim.img.topics[name];
            for p in 0..t.partitions {
                expected.insert((t.id, p));
            }
        }
        let mut owned = BTreeSet::new();
        for c in &live {
            for (t, ps) in &c.owned {
                for p in ps {
                    owned.insert((*t, *p));
                }
            }
        }
        prop_assert_eq!(owned, expected);
    }
}

proptest! {
    /// `uniform` with equal subscriptions: valid, balanced within one, and sticky: a member
    /// keeps every partition of its previous target that still fits its share.
    #[test]
    fn uniform_is_balanced_and_sticky(
        members in 1..8usize,
        counts in proptest::collection::vec(1..12i32, 1..4),
        leave in any::<bool>(),
    ) {
        use assignor::{assign, is_valid, MemberSpec};
        let partitions: BTreeMap<TopicId, i32> =
            counts.iter().enumerate().map(|(i, n)| (tid(i as u8 + 1), *n)).collect();
        let subscribed: BTreeSet<TopicId> = partitions.keys().copied().collect();
        let mut specs: BTreeMap<String, MemberSpec> = (0..members)
            .map(|m| (format!("m{m}"), MemberSpec { subscribed: subscribed.clone(), previous: Assignment::new() }))
            .collect();
        let first = assign(AssignorName::Uniform, &specs, &partitions);
        prop_assert!(is_valid(&first, &specs, &partitions));
        let sizes: Vec<usize> = first.values().map(count).collect();
        prop_assert!(sizes.iter().max().unwrap() - sizes.iter().min().unwrap() <= 1, "{:?}", sizes);
        // One member leaves (or one joins): the others keep what they had.
        for (id, a) in &first {
            specs.get_mut(id).unwrap().previous = a.clone();
        }
        if leave && members > 1 {
            specs.remove("m0");
        } else {
            specs.insert("new".into(), MemberSpec { subscribed: subscribed.clone(), previous: Assignment::new() });
        }
        let second = assign(AssignorName::Uniform, &specs, &partitions);
        prop_assert!(is_valid(&second, &specs, &partitions));
        let sizes: Vec<usize> = second.values().map(count).collect();
        prop_assert!(sizes.iter().max().unwrap() - sizes.iter().min().unwrap() <= 1, "{:?}", sizes);
        let total: usize = partitions.values().map(|n| *n as usize).sum();
        prop_assert_eq!(sizes.iter().sum::<usize>(), total);
        if leave && members > 1 {
            for (id, a) in &second {
                for (t, ps) in &first[id] {
                    prop_assert!(ps.is_subset(&a[t]), "{} lost a partition when another left", id);
                }
            }
        }
    }
}

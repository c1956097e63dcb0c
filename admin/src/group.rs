//! `sluice group list|describe|delete|reset-offsets`, as `kafka-consumer-groups` does them:
//! ListGroups (asked of every node: each lists the groups it coordinates), DescribeGroups (or
//! ConsumerGroupDescribe for a group of the KIP-848 consumer protocol) and OffsetFetch on the
//! group's coordinator, log end offsets from partition leaders (ListOffsets),
//! DeleteGroups. `reset-offsets` lives in [`crate::reset_offsets`].
//!
//! Owns: the describe table — GROUP TOPIC PARTITION CURRENT-OFFSET LOG-END-OFFSET LAG
//! CONSUMER-ID HOST CLIENT-ID, lag = log end − committed, "-" where there is none. Must never:
//! invent a lag for a partition without a committed offset.

use std::collections::{BTreeMap, BTreeSet};

use clap::{Args, Subcommand};
use kafka_protocol::messages::{
    ConsumerGroupDescribeRequest, DeleteGroupsRequest, DescribeGroupsRequest, GroupId, ListGroupsRequest,
};
use serde_json::json;
use sluice_engine::error_code::codes;
use sluice_harness::bench::group_member::{decode_assignment, PROTOCOL_TYPE};

use crate::error::{check, kafka_error, CliError, CliResult};
use crate::offsets::fetch_committed;
use crate::output::{or_dash, print_json, table, Connect, OutputFormat, ReadFlags};
use crate::reset_offsets::{self, ResetArgs};
use crate::session::{s, Session, LATEST_TIMESTAMP};

const EXAMPLES: &str = "Examples:
  sluice group list
  sluice group describe billing
  sluice group describe billing --output json
  sluice group reset-offsets --group billing --topic orders --to-earliest --execute
  sluice group delete billing";

#[derive(Args, Debug)]
#[command(after_help = EXAMPLES)]
pub struct GroupArgs {
    #[command(subcommand)]
    pub command: GroupCommand,
}

#[derive(Subcommand, Debug)]
pub enum GroupCommand {
    /// List the consumer groups of every node.
    #[command(after_help = EXAMPLES)]
    List {
        #[command(flatten)]
        flags: ReadFlags,
    },
    /// Committed offsets, log end offsets, lag and members of groups.
    #[command(after_help = EXAMPLES)]
    Describe {
        #[arg(required = true)]
        groups: Vec<String>,
        #[command(flatten)]
        flags: ReadFlags,
    },
    /// Delete groups and their committed offsets (only groups without members).
    #[command(after_help = EXAMPLES)]
    Delete {
        #[arg(required = true)]
        groups: Vec<String>,
        #[command(flatten)]
        connect: Connect,
    },
    /// Plan (default) or commit new offsets for a group without members.
    #[command(after_help = reset_offsets::EXAMPLES)]
    ResetOffsets(ResetArgs),
}

pub fn run(args: GroupArgs) -> CliResult<()> {
    match args.command {
        GroupCommand::List { flags } => list(flags),
        GroupCommand::Describe { groups, flags } => {
            let mut session = Session::connect(&flags.connect.bootstrap)?;
            let mut docs = Vec::new();
            let mut text = String::new();
            for group in &groups {
                let d = describe(&mut session, group)?;
                if d.members == 0 {
                    eprintln!("Consumer group '{group}' has no active members.");
                }
                let rows: Vec<Vec<String>> = d
                    .rows
                    .iter()
                    .map(|r| {
                        vec![
                            group.clone(),
                            r.topic.clone(),
                            r.partition.to_string(),
                            or_dash(r.current_offset),
                            or_dash(r.log_end_offset),
                            or_dash(r.lag()),
                            or_dash(r.consumer.as_ref().map(|c| c.0.clone())),
                            or_dash(r.consumer.as_ref().map(|c| c.1.clone())),
                            or_dash(r.consumer.as_ref().map(|c| c.2.clone())),
                        ]
                    })
                    .collect();
                text.push_str(&table(
                    &[
                        "GROUP",
                        "TOPIC",
                        "PARTITION",
                        "CURRENT-OFFSET",
                        "LOG-END-OFFSET",
                        "LAG",
                        "CONSUMER-ID",
                        "HOST",
                        "CLIENT-ID",
                    ],
                    &rows,
                ));
                docs.push(json!({
                    "group": group,
                    "state": d.state,
                    "members": d.members,
                    "partitions": d.rows.iter().map(|r| json!({
                        "topic": r.topic,
                        "partition": r.partition,
                        "current_offset": r.current_offset,
                        "log_end_offset": r.log_end_offset,
                        "lag": r.lag(),
                        "consumer_id": r.consumer.as_ref().map(|c| &c.0),
                        "host": r.consumer.as_ref().map(|c| &c.1),
                        "client_id": r.consumer.as_ref().map(|c| &c.2),
                    })).collect::<Vec<_>>(),
                }));
            }
            match flags.output {
                OutputFormat::Json => print_json(&json!(docs)),
                OutputFormat::Table => print!("{text}"),
            }
            Ok(())
        }
        GroupCommand::Delete { groups, connect } => {
            let mut session = Session::connect(&connect.bootstrap)?;
            for group in &groups {
                let request = DeleteGroupsRequest::default().with_groups_names(vec![GroupId(s(group))]);
                let response = session.coordinator(group)?.call(&request)?;
                for r in &response.results {
                    match r.error_code {
                        codes::NON_EMPTY_GROUP => {
                            return Err(CliError::kafka(format!(
                                "group '{group}' has active members; stop its consumers first (see them with \
                                 `sluice group describe {group}`)"
                            )))
                        }
                        code => check(&format!("delete group '{group}'"), code, None)?,
                    }
                }
                eprintln!("Deleted group '{group}'.");
            }
            Ok(())
        }
        GroupCommand::ResetOffsets(reset) => reset_offsets::run(reset),
    }
}

fn list(flags: ReadFlags) -> CliResult<()> {
    let mut session = Session::connect(&flags.connect.bootstrap)?;
    session.metadata(Some(&[]))?;
    let nodes: Vec<i32> = session.nodes().keys().copied().collect();
    let mut groups: BTreeMap<String, (String, String)> = BTreeMap::new();
    for node in nodes {
        let response = session.to_node(node)?.call(&ListGroupsRequest::default())?;
        check(&format!("list groups on node {node}"), response.error_code, None)?;
        for g in &response.groups {
            groups.insert(g.group_id.0.to_string(), (g.group_state.to_string(), g.protocol_type.to_string()));
        }
    }
    match flags.output {
        OutputFormat::Json => print_json(&json!(groups
            .iter()
            .map(|(g, (state, protocol_type))| json!({
                "group": g,
                "state": (!state.is_empty()).then_some(state),
                "protocol_type": protocol_type,
            }))
            .collect::<Vec<_>>())),
        OutputFormat::Table => {
            let rows: Vec<Vec<String>> = groups
                .iter()
                .map(|(g, (state, protocol_type))| {
                    vec![g.clone(), or_dash((!state.is_empty()).then_some(state)), protocol_type.clone()]
                })
                .collect();
            print!("{}", table(&["GROUP", "STATE", "PROTOCOL-TYPE"], &rows));
        }
    }
    Ok(())
}

/// One row of `group describe`.
pub struct Row {
    pub topic: String,
    pub partition: i32,
    pub current_offset: Option<i64>,
    pub log_end_offset: Option<i64>,
    /// (consumer id, host, client id) of the member it is assigned to.
    pub consumer: Option<(String, String, String)>,
}

impl Row {
    /// Log end − committed (never negative); none without both.
    pub fn lag(&self) -> Option<i64> {
        Some((self.log_end_offset? - self.current_offset?).max(0))
    }
}

pub struct Description {
    pub state: String,
    pub members: usize,
    pub rows: Vec<Row>,
}

pub fn describe(session: &mut Session, group: &str) -> CliResult<Description> {
    let request = DescribeGroupsRequest::default().with_groups(vec![GroupId(s(group))]);
    let response = session.coordinator(group)?.call(&request)?;
    let g =
        response.groups.first().ok_or_else(|| CliError::kafka(format!("describe group '{group}': empty answer")))?;
    // (topic, partition) → (member id, host, client id)
    let mut owners: BTreeMap<(String, i32), (String, String, String)> = BTreeMap::new();
    if g.error_code == codes::GROUP_ID_NOT_FOUND || g.group_state.as_str() == "Dead" {
        if let Some(consumer) = describe_consumer_group(session, group)? {
            let committed = fetch_committed(session, group, None)?;
            return Ok(rows(session, consumer.state, consumer.members, consumer.owners, committed));
        }
    }
    if g.error_code == codes::GROUP_ID_NOT_FOUND {
        return Err(kafka_error(&format!("group '{group}' does not exist"), g.error_code, None));
    }
    check(&format!("describe group '{group}'"), g.error_code, g.error_message.as_deref())?;
    if g.protocol_type.as_str() == PROTOCOL_TYPE {
        for m in &g.members {
            let assignment = decode_assignment(&m.member_assignment).unwrap_or_default();
            for (topic, parts) in assignment {
                for p in parts {
                    owners.insert(
                        (topic.clone(), p),
                        (m.member_id.to_string(), m.client_host.to_string(), m.client_id.to_string()),
                    );
                }
            }
        }
    }
    let committed = fetch_committed(session, group, None)?;
    if g.group_state.as_str() == "Dead" && committed.is_empty() {
        return Err(CliError::kafka(format!("group '{group}' does not exist; list groups with `sluice group list`")));
    }
    Ok(rows(session, g.group_state.to_string(), g.members.len(), owners, committed))
}

/// A consumer-protocol group as ConsumerGroupDescribe shows it.
pub struct ConsumerGroupView {
    pub state: String,
    pub members: usize,
    pub owners: BTreeMap<(String, i32), (String, String, String)>,
}

/// ConsumerGroupDescribe on the group's coordinator; `None` when the group is not a consumer
/// group there (or the broker does not speak the consumer protocol).
pub fn describe_consumer_group(session: &mut Session, group: &str) -> CliResult<Option<ConsumerGroupView>> {
    let request = ConsumerGroupDescribeRequest::default().with_group_ids(vec![GroupId(s(group))]);
    let Ok(response) = session.coordinator(group)?.call(&request) else { return Ok(None) };
    let Some(g) = response.groups.first() else { return Ok(None) };
    if g.error_code == codes::GROUP_ID_NOT_FOUND {
        return Ok(None);
    }
    check(&format!("describe group '{group}'"), g.error_code, g.error_message.as_deref())?;
    let mut owners = BTreeMap::new();
    for m in &g.members {
        for tp in &m.assignment.topic_partitions {
            for p in &tp.partitions {
                owners.insert(
                    (tp.topic_name.0.to_string(), *p),
                    (m.member_id.to_string(), m.client_host.to_string(), m.client_id.to_string()),
                );
            }
        }
    }
    Ok(Some(ConsumerGroupView { state: g.group_state.to_string(), members: g.members.len(), owners }))
}

/// The describe table of a group: every owned or committed partition with its log end.
fn rows(
    session: &mut Session,
    state: String,
    members: usize,
    owners: BTreeMap<(String, i32), (String, String, String)>,
    committed: BTreeMap<String, BTreeMap<i32, i64>>,
) -> Description {
    let mut keys: BTreeSet<(String, i32)> = owners.keys().cloned().collect();
    for (t, ps) in &committed {
        keys.extend(ps.keys().map(|p| (t.clone(), *p)));
    }
    let mut by_topic: BTreeMap<String, Vec<i32>> = BTreeMap::new();
    for (t, p) in &keys {
        by_topic.entry(t.clone()).or_default().push(*p);
    }
    let mut ends: BTreeMap<(String, i32), i64> = BTreeMap::new();
    for (t, ps) in &by_topic {
        // A deleted topic keeps its committed offsets for a while; its end shows as "-".
        if let Ok(offsets) = session.list_offsets(t, ps, LATEST_TIMESTAMP) {
            ends.extend(offsets.into_iter().map(|(p, o)| ((t.clone(), p), o)));
        }
    }
    let rows = keys
        .into_iter()
        .map(|(topic, partition)| Row {
            current_offset: committed.get(&topic).and_then(|ps| ps.get(&partition)).copied(),
            log_end_offset: ends.get(&(topic.clone(), partition)).copied(),
            consumer: owners.get(&(topic.clone(), partition)).cloned(),
            topic,
            partition,
        })
        .collect();
    Description { state, members, rows }
}

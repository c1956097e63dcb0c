//! `sluice group reset-offsets`: plan new committed offsets for a group (pure: given committed,
//! earliest, latest and the reset spec → the new offset), print the plan (`--dry-run`, the
//! default) or commit it (`--execute`) as an admin commit (OffsetCommit with generation -1 and
//! no member id). As `kafka-consumer-groups --reset-offsets`, it refuses while the group has
//! members: their positions would overwrite the reset at their next commit.
//!
//! Owns: the spec, datetime parsing, topic selection (`--topic T[:p,p]`, `--all-topics`) and
//! the planning rule: every target is clamped into [earliest, latest], as Kafka does. Must
//! never: commit on a dry run, or commit to a group that has members.

use std::collections::BTreeMap;

use clap::Args;
use kafka_protocol::messages::DescribeGroupsRequest;
use kafka_protocol::messages::GroupId;
use serde_json::json;
use sluice_engine::error_code::codes;

use crate::error::{check, kafka_error, CliError, CliResult};
use crate::offsets::{commit, fetch_committed, Committer, TopicOffsets};
use crate::output::{or_dash, print_json, table, OutputFormat, ReadFlags};
use crate::session::{s, Session, EARLIEST_TIMESTAMP, LATEST_TIMESTAMP};

pub const EXAMPLES: &str = "Examples:
  sluice group reset-offsets --group billing --topic orders --to-earliest             # prints the plan
  sluice group reset-offsets --group billing --topic orders --to-earliest --execute   # commits it
  sluice group reset-offsets --group billing --topic orders:0,1 --shift-by -100 --execute
  sluice group reset-offsets --group billing --all-topics --to-datetime 2026-12-04T10:00:00Z
  sluice group reset-offsets --group billing --topic orders --to-offset 5000 --output json";

/// What to reset to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResetSpec {
    Earliest,
    Latest,
    Offset(i64),
    /// The first record at or after this time (ms since the epoch).
    Datetime(i64),
    /// The committed offset moved by this many (negative: back).
    ShiftBy(i64),
}

/// What is known about one partition when planning.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PartitionOffsets {
    pub committed: Option<i64>,
    pub earliest: i64,
    pub latest: i64,
    /// ListOffsets' answer for a datetime spec (-1: no record at or after it).
    pub at_datetime: Option<i64>,
}

/// The new committed offset of one partition, clamped into [earliest, latest].
pub fn plan_partition(spec: ResetSpec, o: PartitionOffsets) -> Result<i64, String> {
    let target = match spec {
        ResetSpec::Earliest => o.earliest,
        ResetSpec::Latest => o.latest,
        ResetSpec::Offset(n) => n,
        ResetSpec::Datetime(_) => match o.at_datetime {
            Some(at) if at >= 0 => at,
            Some(_) => o.latest, // no record that late: the end
            None => return Err("no offset was looked up for the datetime".into()),
        },
        ResetSpec::ShiftBy(n) => match o.committed {
            Some(c) => c.saturating_add(n),
            None => return Err("no committed offset to shift; use --to-earliest, --to-latest or --to-offset".into()),
        },
    };
    Ok(target.clamp(o.earliest, o.latest.max(o.earliest)))
}

/// Parses `2026-12-04T10:00:00`, with optional `.sss` and a zone `Z` or `±HH:MM` (without a
/// zone the time is UTC) into ms since the epoch.
pub fn parse_datetime(text: &str) -> Result<i64, String> {
    let bad = || format!("expected a datetime like 2026-12-04T10:00:00[.sss][Z|+HH:MM], got '{text}'");
    let (date, time) = text.split_once('T').ok_or_else(bad)?;
    let num = |s: &str, len: usize| -> Result<i64, String> {
        if s.len() != len || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        s.parse::<i64>().map_err(|_| bad())
    };
    let d: Vec<&str> = date.split('-').collect();
    if d.len() != 3 {
        return Err(bad());
    }
    let (year, month, day) = (num(d[0], 4)?, num(d[1], 2)?, num(d[2], 2)?);
    let (clock, offset_ms) = if let Some(c) = time.strip_suffix('Z') {
        (c, 0)
    } else if let Some(i) = time.rfind(['+', '-']).filter(|i| *i >= 8) {
        let (c, zone) = time.split_at(i);
        let sign = if zone.starts_with('-') { -1 } else { 1 };
        let (h, m) = zone[1..].split_once(':').ok_or_else(bad)?;
        (c, sign * (num(h, 2)? * 3_600_000 + num(m, 2)? * 60_000))
    } else {
        (time, 0)
    };
    let (hms, millis) = match clock.split_once('.') {
        Some((hms, frac)) => (hms, num(frac, 3)?),
        None => (clock, 0),
    };
    let t: Vec<&str> = hms.split(':').collect();
    if t.len() != 3 {
        return Err(bad());
    }
    let (hour, minute, second) = (num(t[0], 2)?, num(t[1], 2)?, num(t[2], 2)?);
    let days_in_month = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        _ => return Err(bad()),
    };
    if day < 1 || day > days_in_month || hour > 23 || minute > 59 || second > 59 {
        return Err(bad());
    }
    let seconds = days_from_civil(year, month, day) * 86_400 + hour * 3_600 + minute * 60 + second;
    Ok(seconds * 1_000 + millis - offset_ms)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `T` or `T:0,1,2` → (topic, partitions or all).
pub fn parse_topic_selection(arg: &str) -> Result<(String, Option<Vec<i32>>), String> {
    match arg.split_once(':') {
        None if !arg.is_empty() => Ok((arg.to_string(), None)),
        Some((t, ps)) if !t.is_empty() => {
            let parts = ps
                .split(',')
                .map(|p| p.trim().parse::<i32>().map_err(|_| format!("'{p}' in '{arg}' is not a partition number")))
                .collect::<Result<Vec<_>, _>>()?;
            Ok((t.to_string(), Some(parts)))
        }
        _ => Err(format!("expected TOPIC or TOPIC:PARTITION,PARTITION; got '{arg}'")),
    }
}

#[derive(Args, Debug)]
#[command(after_help = EXAMPLES)]
#[command(group(clap::ArgGroup::new("spec").required(true).args(["to_earliest", "to_latest", "to_offset", "to_datetime", "shift_by"])))]
#[command(group(clap::ArgGroup::new("scope").required(true).args(["topic", "all_topics"])))]
pub struct ResetArgs {
    /// The group whose committed offsets to change.
    #[arg(long)]
    pub group: String,
    /// A topic, or TOPIC:P,P for some of its partitions (repeatable).
    #[arg(long, value_name = "TOPIC[:P,P]", value_parser = parse_topic_selection)]
    pub topic: Vec<(String, Option<Vec<i32>>)>,
    /// Every topic the group has committed offsets for.
    #[arg(long)]
    pub all_topics: bool,
    #[arg(long)]
    pub to_earliest: bool,
    #[arg(long)]
    pub to_latest: bool,
    #[arg(long, value_name = "N")]
    pub to_offset: Option<i64>,
    /// The first offset at or after this time: 2026-12-04T10:00:00[.sss][Z|+HH:MM] (UTC
    /// without a zone).
    #[arg(long, value_name = "DATETIME", value_parser = parse_datetime)]
    pub to_datetime: Option<i64>,
    /// Move the committed offset by N (negative: back).
    #[arg(long, value_name = "N", allow_hyphen_values = true)]
    pub shift_by: Option<i64>,
    /// Print the plan without committing it (the default).
    #[arg(long, conflicts_with = "execute")]
    pub dry_run: bool,
    /// Commit the plan.
    #[arg(long)]
    pub execute: bool,
    #[command(flatten)]
    pub flags: ReadFlags,
}

impl ResetArgs {
    fn spec(&self) -> ResetSpec {
        match (self.to_earliest, self.to_latest, self.to_offset, self.to_datetime, self.shift_by) {
            (true, ..) => ResetSpec::Earliest,
            (_, true, ..) => ResetSpec::Latest,
            (_, _, Some(n), ..) => ResetSpec::Offset(n),
            (_, _, _, Some(ms), _) => ResetSpec::Datetime(ms),
            (.., Some(n)) => ResetSpec::ShiftBy(n),
            _ => unreachable!("clap requires one reset spec"),
        }
    }
}

/// The group's state and member count (DescribeGroups, or ConsumerGroupDescribe, on its
/// coordinator).
pub fn group_state(session: &mut Session, group: &str) -> CliResult<(String, usize)> {
    let request = DescribeGroupsRequest::default().with_groups(vec![GroupId(s(group))]);
    let response = session.coordinator(group)?.call(&request)?;
    let g =
        response.groups.first().ok_or_else(|| CliError::kafka(format!("describe group '{group}': empty answer")))?;
    if g.error_code == codes::GROUP_ID_NOT_FOUND || g.group_state.as_str() == "Dead" {
        // Maybe a group of the consumer protocol (KIP-848), which DescribeGroups does not show.
        if let Some(consumer) = crate::group::describe_consumer_group(session, group)? {
            return Ok((consumer.state, consumer.members));
        }
    }
    check(&format!("describe group '{group}'"), g.error_code, g.error_message.as_deref())?;
    Ok((g.group_state.to_string(), g.members.len()))
}

pub fn run(args: ResetArgs) -> CliResult<()> {
    let spec = args.spec();
    let group = args.group.as_str();
    let mut session = Session::connect(&args.flags.connect.bootstrap)?;
    let (state, members) = group_state(&mut session, group)?;
    if members > 0 && args.execute {
        return Err(CliError::kafka(format!(
            "group '{group}' has {members} active member(s) (state {state}); offsets can only be reset while it is \
             empty — stop its consumers first (see them with `sluice group describe {group}`)"
        )));
    }
    let committed = fetch_committed(&mut session, group, None)?;
    let mut targets: BTreeMap<String, Vec<i32>> = BTreeMap::new();
    if args.all_topics {
        for (t, ps) in &committed {
            targets.insert(t.clone(), ps.keys().copied().collect());
        }
        if targets.is_empty() {
            return Err(CliError::kafka(format!("group '{group}' has no committed offsets; name topics with --topic")));
        }
    }
    for (topic, parts) in &args.topic {
        let all: Vec<i32> = session.partitions(topic)?.iter().map(|p| p.partition).collect();
        let parts = match parts {
            Some(ps) => {
                if let Some(p) = ps.iter().find(|p| !all.contains(p)) {
                    return Err(CliError::usage(format!("topic '{topic}' has no partition {p}")));
                }
                ps.clone()
            }
            None => all,
        };
        targets.entry(topic.clone()).or_default().extend(parts);
    }
    let mut plan: Vec<(String, i32, Option<i64>, i64)> = Vec::new();
    for (topic, parts) in &mut targets {
        parts.sort_unstable();
        parts.dedup();
        let earliest = session.list_offsets(topic, parts, EARLIEST_TIMESTAMP)?;
        let latest = session.list_offsets(topic, parts, LATEST_TIMESTAMP)?;
        let at = match spec {
            ResetSpec::Datetime(ms) => Some(session.list_offsets(topic, parts, ms)?),
            _ => None,
        };
        for p in parts.iter() {
            let current = committed.get(topic).and_then(|ps| ps.get(p)).copied();
            let offsets = PartitionOffsets {
                committed: current,
                earliest: earliest[p],
                latest: latest[p],
                at_datetime: at.as_ref().map(|a| a[p]),
            };
            let new = plan_partition(spec, offsets).map_err(|e| CliError::kafka(format!("{topic}/{p}: {e}")))?;
            plan.push((topic.clone(), *p, current, new));
        }
    }
    if args.execute {
        let mut offsets = TopicOffsets::new();
        for (t, p, _, new) in &plan {
            offsets.entry(t.clone()).or_default().insert(*p, *new);
        }
        let code = commit(&mut session, group, Committer::Admin, &offsets)?;
        if code != 0 {
            return Err(kafka_error(&format!("commit the new offsets of group '{group}'"), code, None));
        }
    }
    match args.flags.output {
        OutputFormat::Json => print_json(&json!({
            "group": group,
            "executed": args.execute,
            "partitions": plan.iter().map(|(t, p, current, new)| json!({
                "topic": t, "partition": p, "current_offset": current, "new_offset": new,
            })).collect::<Vec<_>>(),
        })),
        OutputFormat::Table => {
            let rows: Vec<Vec<String>> = plan
                .iter()
                .map(|(t, p, current, new)| {
                    vec![group.to_string(), t.clone(), p.to_string(), or_dash(*current), new.to_string()]
                })
                .collect();
            print!("{}", table(&["GROUP", "TOPIC", "PARTITION", "CURRENT-OFFSET", "NEW-OFFSET"], &rows));
        }
    }
    if !args.execute {
        eprintln!("Dry run: nothing was committed. Pass --execute to commit these offsets.");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const O: PartitionOffsets = PartitionOffsets { committed: Some(50), earliest: 10, latest: 100, at_datetime: None };

    #[test]
    fn each_spec_plans_its_offset_clamped_into_the_log() {
        assert_eq!(plan_partition(ResetSpec::Earliest, O), Ok(10));
        assert_eq!(plan_partition(ResetSpec::Latest, O), Ok(100));
        assert_eq!(plan_partition(ResetSpec::Offset(70), O), Ok(70));
        assert_eq!(plan_partition(ResetSpec::Offset(5), O), Ok(10), "below the log start: earliest");
        assert_eq!(plan_partition(ResetSpec::Offset(500), O), Ok(100), "past the end: latest");
        assert_eq!(plan_partition(ResetSpec::ShiftBy(-20), O), Ok(30));
        assert_eq!(plan_partition(ResetSpec::ShiftBy(-45), O), Ok(10));
        assert_eq!(plan_partition(ResetSpec::ShiftBy(80), O), Ok(100));
        let dated = PartitionOffsets { at_datetime: Some(42), ..O };
        assert_eq!(plan_partition(ResetSpec::Datetime(0), dated), Ok(42));
        let too_late = PartitionOffsets { at_datetime: Some(-1), ..O };
        assert_eq!(plan_partition(ResetSpec::Datetime(0), too_late), Ok(100));
    }

    #[test]
    fn shifting_needs_a_committed_offset() {
        let none = PartitionOffsets { committed: None, ..O };
        assert!(plan_partition(ResetSpec::ShiftBy(1), none).unwrap_err().contains("no committed offset"));
        assert_eq!(plan_partition(ResetSpec::Earliest, none), Ok(10));
    }

    #[test]
    fn an_empty_log_plans_its_one_offset() {
        let empty = PartitionOffsets { committed: None, earliest: 7, latest: 7, at_datetime: Some(-1) };
        for spec in [ResetSpec::Earliest, ResetSpec::Latest, ResetSpec::Offset(0), ResetSpec::Datetime(1)] {
            assert_eq!(plan_partition(spec, empty), Ok(7), "{spec:?}");
        }
    }

    #[test]
    fn datetimes_parse_to_epoch_millis() {
        assert_eq!(parse_datetime("1970-01-01T00:00:00Z"), Ok(0));
        assert_eq!(parse_datetime("2026-12-04T10:00:00Z"), Ok(1_796_378_400_000));
        assert_eq!(parse_datetime("2026-12-04T10:00:00"), Ok(1_796_378_400_000), "no zone: UTC");
        assert_eq!(parse_datetime("2026-12-04T10:00:00.250Z"), Ok(1_796_378_400_250));
        assert_eq!(parse_datetime("2026-12-04T12:00:00+02:00"), Ok(1_796_378_400_000));
        assert_eq!(parse_datetime("2026-12-04T05:30:00-04:30"), Ok(1_796_378_400_000));
        assert_eq!(parse_datetime("2024-02-29T00:00:00Z"), Ok(1_709_164_800_000));
        for bad in
            ["2026-12-04", "2026-13-01T00:00:00", "2025-02-29T00:00:00", "2026-12-04T24:00:00", "2026-12-04T10:00", "x"]
        {
            assert!(parse_datetime(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn topic_selections_parse() {
        assert_eq!(parse_topic_selection("orders"), Ok(("orders".into(), None)));
        assert_eq!(parse_topic_selection("orders:0,2"), Ok(("orders".into(), Some(vec![0, 2]))));
        assert!(parse_topic_selection("orders:x").is_err());
        assert!(parse_topic_selection(":1").is_err());
    }
}

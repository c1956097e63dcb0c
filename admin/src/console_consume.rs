//! `sluice consume`: the console consumer — every partition of a topic (or `--partition P`),
//! or the partitions a group assigns (`--group G`, committing as a member); starting from the
//! committed offset, `--from-beginning`, `--offset N|earliest|latest` or `--from-timestamp MS`;
//! stopping after `--count N`, at the end offsets seen at start (`--until-end`), after
//! `--timeout-ms` without a record, or on Ctrl-C. Fetches go to each partition's leader.
//!
//! Owns: positions, the start-offset rule and the stop rules. Must never: print a record twice
//! or skip one within a run (positions only move past what was printed or past batches that
//! hold no data records), or commit an offset it has not printed up to.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::FetchRequest;
use sluice_engine::error_code::codes;

use crate::error::{kafka_error, CliError, CliResult};
use crate::membership::{Member, Standing};
use crate::offsets::{fetch_committed, TopicOffsets};
use crate::output::Connect;
use crate::record_format::{json_line, RecordFormat, DEFAULT_FORMAT};
use crate::records::decode_record_set;
use crate::session::{topic_name, Session, EARLIEST_TIMESTAMP, LATEST_TIMESTAMP};

/// How long a fetch waits for data when it is the only leader asked; with several leaders
/// each waits less so one quiet leader does not delay the others' records much.
const FETCH_WAIT_MS: i32 = 500;
const FETCH_WAIT_SEVERAL_LEADERS_MS: i32 = 100;
const FETCH_MAX_BYTES: i32 = 16 << 20;
const PARTITION_MAX_BYTES: i32 = 1 << 20;
/// Offsets are committed this often while records flow (Kafka's auto-commit is 5 s).
const COMMIT_INTERVAL: Duration = Duration::from_secs(1);
const RETRY_BACKOFF: Duration = Duration::from_millis(200);
/// How long fetches may keep failing at the connection level (a node restarting, leaders
/// moving) before the consumer gives up.
const NODE_FAILURE_DEADLINE: Duration = Duration::from_secs(30);

const EXAMPLES: &str = "Examples:
  sluice consume --topic orders --from-beginning --until-end
  sluice consume --topic orders --group billing                     # committed offsets, as a member
  sluice consume --topic orders --partition 2 --offset 1000 --count 10
  sluice consume --topic orders --from-timestamp 1764842400000 --format '%p:%o %t %k=%v [%h]'
  sluice consume --topic orders --from-beginning --until-end --output json | jq .value";

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ConsumeOutput {
    /// Each record rendered with --format, one per line.
    Text,
    /// One JSON object per record and line.
    Json,
}

/// Set by SIGINT/SIGTERM: the loop stops, commits and leaves the group (a fetch waits at most
/// [`FETCH_WAIT_MS`], so that is how long Ctrl-C takes).
static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_stop_signal(_: libc::c_int) {
    STOP.store(true, Ordering::Relaxed);
}

fn install_stop_handler() {
    let handler = on_stop_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe {
        libc::signal(libc::SIGINT, handler);
        libc::signal(libc::SIGTERM, handler);
    }
}

/// Where reading starts when the user said so.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Start {
    Earliest,
    Latest,
    Offset(i64),
    Timestamp(i64),
}

pub fn parse_start_offset(arg: &str) -> Result<Start, String> {
    match arg {
        "earliest" | "beginning" => Ok(Start::Earliest),
        "latest" | "end" => Ok(Start::Latest),
        n => match n.parse::<i64>() {
            Ok(o) if o >= 0 => Ok(Start::Offset(o)),
            _ => Err(format!("expected an offset (0 or more), earliest or latest; got '{arg}'")),
        },
    }
}

#[derive(Args, Debug)]
#[command(after_help = EXAMPLES)]
pub struct ConsumeArgs {
    /// The topic to read.
    #[arg(long)]
    pub topic: String,
    /// Read only this partition (without --group).
    #[arg(long, conflicts_with = "group")]
    pub partition: Option<i32>,
    /// Start at the earliest offset when there is no committed offset (with --group) or always
    /// (without).
    #[arg(long, conflicts_with_all = ["offset", "from_timestamp"])]
    pub from_beginning: bool,
    /// Start at this offset, or earliest / latest (overrides committed offsets).
    #[arg(long, value_parser = parse_start_offset, value_name = "N|earliest|latest", conflicts_with = "from_timestamp")]
    pub offset: Option<Start>,
    /// Start at the first record with a timestamp at or after MS (ms since the epoch).
    #[arg(long, value_name = "MS")]
    pub from_timestamp: Option<i64>,
    /// Consume as a member of this group: partitions assigned by the group, offsets committed.
    #[arg(long)]
    pub group: Option<String>,
    /// Exit after this many records.
    #[arg(long)]
    pub count: Option<u64>,
    /// Exit once every partition reaches the end offset it had when reading started.
    #[arg(long)]
    pub until_end: bool,
    /// Exit after this long without a record.
    #[arg(long, value_name = "MS")]
    pub timeout_ms: Option<u64>,
    /// How to print each record: %k key, %v value, %o offset, %p partition, %t timestamp (ms),
    /// %h headers (k=v,…), %T topic, %% a percent sign; \n and \t escapes. One line per record.
    #[arg(long, default_value = DEFAULT_FORMAT, conflicts_with = "output")]
    pub format: String,
    /// text (records rendered with --format) or json (one object per line).
    #[arg(long, value_enum, default_value_t = ConsumeOutput::Text)]
    pub output: ConsumeOutput,
    #[command(flatten)]
    pub connect: Connect,
}

/// Where a partition starts: an explicit start wins; else the committed offset; else the
/// reset policy (earliest with --from-beginning, latest otherwise). `listed`: the offset
/// ListOffsets gave for the start's timestamp.
pub fn start_offset(explicit: Option<Start>, committed: Option<i64>, listed: Option<i64>) -> StartRule {
    match (explicit, committed) {
        (Some(Start::Offset(o)), _) => StartRule::At(o),
        (Some(_), _) => StartRule::At(listed.expect("listed offsets are looked up for explicit starts")),
        (None, Some(c)) => StartRule::At(c),
        (None, None) => StartRule::Reset,
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartRule {
    At(i64),
    /// Use the reset policy.
    Reset,
}

struct Consumer {
    session: Session,
    topic: String,
    explicit: Option<Start>,
    /// The reset policy's timestamp (earliest or latest).
    reset_timestamp: i64,
    member: Option<Member>,
    positions: BTreeMap<i32, i64>,
    /// End offsets for --until-end, per assigned partition.
    ends: Option<BTreeMap<i32, i64>>,
    /// Positions not yet committed.
    dirty: bool,
    /// When fetches from a node started failing (connection errors), if they are.
    failing_since: Option<Instant>,
    last_commit: Instant,
}

impl Consumer {
    /// Positions of `parts`, per the start rule.
    fn resolve(&mut self, parts: &[i32], committed: &BTreeMap<i32, i64>) -> CliResult<()> {
        let listed = match self.explicit {
            Some(Start::Earliest) => Some(self.session.list_offsets(&self.topic, parts, EARLIEST_TIMESTAMP)?),
            Some(Start::Latest) => Some(self.session.list_offsets(&self.topic, parts, LATEST_TIMESTAMP)?),
            Some(Start::Timestamp(ts)) => {
                let at = self.session.list_offsets(&self.topic, parts, ts)?;
                let latest = self.session.list_offsets(&self.topic, parts, LATEST_TIMESTAMP)?;
                // -1: no record at or after the timestamp; start at the end.
                Some(at.into_iter().map(|(p, o)| (p, if o < 0 { latest[&p] } else { o })).collect())
            }
            _ => None,
        };
        let reset = if self.explicit.is_none() && parts.iter().any(|p| !committed.contains_key(p)) {
            Some(self.session.list_offsets(&self.topic, parts, self.reset_timestamp)?)
        } else {
            None
        };
        self.positions.clear();
        for p in parts {
            let at = match start_offset(self.explicit, committed.get(p).copied(), listed.as_ref().map(|l| l[p])) {
                StartRule::At(o) => o,
                StartRule::Reset => reset.as_ref().expect("looked up when some partition resets")[p],
            };
            self.positions.insert(*p, at);
        }
        if self.ends.is_some() {
            self.ends = Some(self.session.list_offsets(&self.topic, parts, LATEST_TIMESTAMP)?);
        }
        Ok(())
    }

    /// (Re)joins the group and positions the partitions it assigns.
    fn join(&mut self) -> CliResult<()> {
        let member = self.member.as_mut().expect("a group consumer");
        let parts = member.join(&mut self.session)?;
        let group = member.group.clone();
        let committed = if parts.is_empty() {
            TopicOffsets::new()
        } else {
            let wanted = BTreeMap::from([(self.topic.clone(), parts.clone())]);
            fetch_committed(&mut self.session, &group, Some(&wanted))?
        };
        let committed = committed.get(&self.topic).cloned().unwrap_or_default();
        self.resolve(&parts, &committed)?;
        eprintln!("Group '{group}' assigned partitions {parts:?} of topic '{}'.", self.topic);
        Ok(())
    }

    fn at_end(&self) -> bool {
        self.ends
            .as_ref()
            .is_some_and(|ends| ends.iter().all(|(p, end)| self.positions.get(p).is_some_and(|o| o >= end)))
    }

    fn commit(&mut self, force: bool) -> CliResult<Standing> {
        let Some(member) = self.member.as_mut() else { return Ok(Standing::Member) };
        if !self.dirty || (!force && self.last_commit.elapsed() < COMMIT_INTERVAL) {
            return Ok(Standing::Member);
        }
        let offsets = TopicOffsets::from([(self.topic.clone(), self.positions.clone())]);
        let standing = member.commit(&mut self.session, &offsets)?;
        self.dirty = false;
        self.last_commit = Instant::now();
        Ok(standing)
    }

    /// One fetch from every leader; prints records through `emit` (which returns false to stop).
    fn fetch_once(&mut self, emit: &mut dyn FnMut(i32, &crate::records::ConsoleRecord) -> bool) -> CliResult<bool> {
        if self.positions.is_empty() {
            std::thread::sleep(RETRY_BACKOFF);
            return Ok(true);
        }
        let leaders = self.session.cached_leaders(&self.topic)?;
        let mut by_leader: BTreeMap<i32, Vec<i32>> = BTreeMap::new();
        for p in self.positions.keys() {
            let leader = *leaders
                .get(p)
                .ok_or_else(|| CliError::kafka(format!("topic '{}' has no partition {p}", self.topic)))?;
            by_leader.entry(leader).or_default().push(*p);
        }
        let wait_ms = if by_leader.len() == 1 { FETCH_WAIT_MS } else { FETCH_WAIT_SEVERAL_LEADERS_MS };
        for (leader, parts) in by_leader {
            let request = FetchRequest::default()
                .with_max_wait_ms(wait_ms)
                .with_min_bytes(1)
                .with_max_bytes(FETCH_MAX_BYTES)
                .with_isolation_level(0)
                .with_topics(vec![FetchTopic::default().with_topic(topic_name(&self.topic)).with_partitions(
                    parts
                        .iter()
                        .map(|p| {
                            FetchPartition::default()
                                .with_partition(*p)
                                .with_fetch_offset(self.positions[p])
                                .with_partition_max_bytes(PARTITION_MAX_BYTES)
                        })
                        .collect(),
                )]);
            let response = match self.session.to_node(leader).and_then(|conn| conn.call(&request)) {
                Ok(response) => {
                    self.failing_since = None;
                    response
                }
                Err(e) => {
                    // The leader's node may be failing over: ask again for leaders, bounded.
                    if self.failing_since.is_none() {
                        eprintln!("Fetch from node {leader} failed ({}); looking for the new leader.", e.message);
                    }
                    let since = *self.failing_since.get_or_insert_with(Instant::now);
                    if since.elapsed() >= NODE_FAILURE_DEADLINE {
                        return Err(e);
                    }
                    self.session.forget_node(leader);
                    self.session.forget_leaders(&self.topic);
                    std::thread::sleep(RETRY_BACKOFF);
                    return Ok(true);
                }
            };
            if response.error_code != 0 {
                return Err(kafka_error(&format!("fetch from node {leader}"), response.error_code, None));
            }
            for t in &response.responses {
                for pd in &t.partitions {
                    let p = pd.partition_index;
                    let Some(&position) = self.positions.get(&p) else { continue };
                    match pd.error_code {
                        0 => {}
                        codes::OFFSET_OUT_OF_RANGE => {
                            let reset = self.session.list_offsets(&self.topic, &[p], self.reset_timestamp)?[&p];
                            eprintln!("Offset {position} of {}/{p} is out of range; resetting to {reset}.", self.topic);
                            self.positions.insert(p, reset);
                            continue;
                        }
                        codes::NOT_LEADER_OR_FOLLOWER
                        | codes::LEADER_NOT_AVAILABLE
                        | codes::UNKNOWN_TOPIC_OR_PARTITION
                        | codes::FENCED_LEADER_EPOCH
                        | codes::UNKNOWN_LEADER_EPOCH => {
                            self.session.forget_leaders(&self.topic);
                            std::thread::sleep(RETRY_BACKOFF);
                            continue;
                        }
                        code => return Err(kafka_error(&format!("fetch {}/{p}", self.topic), code, None)),
                    }
                    let Some(set) = &pd.records else { continue };
                    let (records, next) = decode_record_set(set, position)
                        .map_err(|e| CliError::kafka(format!("{}/{p}: {e}", self.topic)))?;
                    for r in &records {
                        if !emit(p, r) {
                            self.positions.insert(p, r.offset + 1);
                            self.dirty = true;
                            return Ok(false);
                        }
                    }
                    if next > position {
                        self.positions.insert(p, next);
                        self.dirty = true;
                    }
                }
            }
        }
        Ok(true)
    }
}

pub fn run(args: ConsumeArgs) -> CliResult<()> {
    let format = RecordFormat::parse(&args.format).map_err(CliError::usage)?;
    let explicit = match (args.offset, args.from_timestamp) {
        (Some(start), _) => Some(start),
        (None, Some(ts)) => Some(Start::Timestamp(ts)),
        (None, None) if args.from_beginning && args.group.is_none() => Some(Start::Earliest),
        _ => None,
    };
    let mut session = Session::connect(&args.connect.bootstrap)?;
    let all: Vec<i32> = session.partitions(&args.topic)?.iter().map(|p| p.partition).collect();
    let mut consumer = Consumer {
        session,
        topic: args.topic.clone(),
        explicit,
        reset_timestamp: if args.from_beginning { EARLIEST_TIMESTAMP } else { LATEST_TIMESTAMP },
        member: args.group.as_deref().map(|g| Member::new(g, &args.topic)),
        positions: BTreeMap::new(),
        ends: args.until_end.then(BTreeMap::new),
        dirty: false,
        failing_since: None,
        last_commit: Instant::now(),
    };
    if consumer.member.is_some() {
        consumer.join()?;
    } else {
        let parts = match args.partition {
            Some(p) if !all.contains(&p) => {
                return Err(CliError::usage(format!(
                    "topic '{}' has no partition {p}; it has {} (see `sluice topic describe {}`)",
                    args.topic,
                    all.len(),
                    args.topic
                )))
            }
            Some(p) => vec![p],
            None => all,
        };
        consumer.resolve(&parts, &BTreeMap::new())?;
    }
    install_stop_handler();
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut printed: u64 = 0;
    let mut last_record = Instant::now();
    let mut write_error = None;
    let result = loop {
        if STOP.load(Ordering::Relaxed) || args.count.is_some_and(|c| printed >= c) || consumer.at_end() {
            break Ok(());
        }
        if args.timeout_ms.is_some_and(|t| last_record.elapsed() >= Duration::from_millis(t)) {
            break Ok(());
        }
        if let Some(member) = consumer.member.as_mut() {
            match member.heartbeat_if_due(&mut consumer.session) {
                Ok(Standing::Member) => {}
                Ok(Standing::Rejoin) => {
                    let _ = consumer.commit(true); // the rebalance may already have moved on
                    if let Err(e) = consumer.join() {
                        break Err(e);
                    }
                    continue;
                }
                Err(e) => break Err(e),
            }
        }
        let topic = args.topic.clone();
        let before = printed;
        let mut emit = |partition: i32, r: &crate::records::ConsoleRecord| {
            let line = match args.output {
                ConsumeOutput::Json => json_line(&topic, partition, r),
                ConsumeOutput::Text => format.render(&topic, partition, r),
            };
            if let Err(e) = writeln!(out, "{line}") {
                write_error = Some(e);
                return false;
            }
            printed += 1;
            args.count.is_none_or(|c| printed < c)
        };
        let fetched = consumer.fetch_once(&mut emit);
        if let Some(e) = write_error.take() {
            break Err(CliError::kafka(format!("write to stdout: {e}")));
        }
        if let Err(e) = out.flush() {
            break Err(CliError::kafka(format!("write to stdout: {e}")));
        }
        if printed > before {
            last_record = Instant::now();
        }
        match fetched {
            Ok(_) => {}
            Err(e) => break Err(e),
        }
        match consumer.commit(false) {
            Ok(Standing::Member) => {}
            Ok(Standing::Rejoin) => {
                if let Err(e) = consumer.join() {
                    break Err(e);
                }
            }
            Err(e) => break Err(e),
        }
    };
    let committed = consumer.commit(true);
    if let Some(member) = consumer.member.as_mut() {
        member.leave(&mut consumer.session);
    }
    eprintln!("Processed a total of {printed} messages");
    result?;
    committed.map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explicit_starts_win_then_commits_then_the_reset_policy() {
        assert_eq!(start_offset(Some(Start::Offset(7)), Some(3), None), StartRule::At(7));
        assert_eq!(start_offset(Some(Start::Earliest), Some(3), Some(0)), StartRule::At(0));
        assert_eq!(start_offset(Some(Start::Timestamp(5)), None, Some(4)), StartRule::At(4));
        assert_eq!(start_offset(None, Some(3), None), StartRule::At(3));
        assert_eq!(start_offset(None, None, None), StartRule::Reset);
    }

    #[test]
    fn start_offsets_parse() {
        assert_eq!(parse_start_offset("earliest"), Ok(Start::Earliest));
        assert_eq!(parse_start_offset("latest"), Ok(Start::Latest));
        assert_eq!(parse_start_offset("12"), Ok(Start::Offset(12)));
        assert!(parse_start_offset("-3").is_err());
        assert!(parse_start_offset("soon").is_err());
    }
}

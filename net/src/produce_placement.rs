//! Where in memory a connection reads its next frame, so that a produce request's record
//! batch can go to the segment file without a copy.
//!
//! Owns: one connection's knowledge of where its produce requests' records start and where
//! its last append to each partition ended. A direct write needs the batch's memory to sit at
//! the same offset within a 4 KiB page as its bytes will within a file page
//! ([`sluice_engine::segment_writer::is_direct_source`]): the frame's *phase* is
//! `(file position − records offset) mod 4096`.
//!
//! The phase is chosen once the frame's first [`crate::frame::PREFIX_BYTES`] are read, before
//! the rest ([`ProducePlacement::phase`]). A produce request's header and first partition fit
//! there ([`first_partition`]: client id, transactional id, topic name, partition index and
//! where the records start); when that partition holds most of the frame (librdkafka sends one
//! partition per request, rotating over partitions when a producer writes many), it is placed
//! where its last append by this connection ended. Otherwise (a request of many partitions, as
//! the Java client sends) the guess is the previous request's largest partition at the previous
//! request's records offset: a producer sends the same layout request after request.
//!
//! A wrong guess (another connection appended meanwhile, a roll, a different layout) costs one
//! copy: the writer checks the alignment and copies what is not aligned. Only one partition
//! per request is placed.
//!
//! Must never: affect anything but where the frame sits in memory; remember more than
//! [`MAX_TRACKED_PARTITIONS`] partitions.

use std::collections::HashMap;

use kafka_protocol::messages::{ApiKey, ProduceRequest, RequestHeader};
use kafka_protocol::protocol::Decodable;
use sluice_engine::batch::read_unsigned_varint;

use crate::frame_buffers::FRAME_ALIGN_BYTES;

/// Most partitions whose last append end one connection remembers; past it the memory starts
/// over (a producer spread that thin writes small batches, which are copied anyway).
pub const MAX_TRACKED_PARTITIONS: usize = 4096;

/// The partition with the most record bytes in the previous produce request, and where its
/// records started in the frame.
struct Guess {
    topic: String,
    partition: i32,
    records_offset: usize,
}

/// One connection's placement knowledge. See the module docs.
#[derive(Default)]
pub struct ProducePlacement {
    guess: Option<Guess>,
    /// Where this connection's last append to each partition ended in its active segment.
    ends: HashMap<String, HashMap<i32, u64>>,
    tracked: usize,
}

impl ProducePlacement {
    /// Learns the layout of a produce request decoded from `frame` (the frame's bytes; the
    /// request's record sets are views of them).
    pub fn learn(&mut self, frame: &[u8], request: &ProduceRequest) {
        let largest = request
            .topic_data
            .iter()
            .flat_map(|t| t.partition_data.iter().map(move |p| (t, p)))
            .filter_map(|(t, p)| p.records.as_ref().map(|r| (t, p.index, r)))
            .max_by_key(|(_, _, records)| records.len());
        let Some((topic, partition, records)) = largest else {
            self.guess = None;
            return;
        };
        let offset = (records.as_ptr() as usize).wrapping_sub(frame.as_ptr() as usize);
        if offset.checked_add(records.len()).is_none_or(|end| end > frame.len()) {
            self.guess = None; // not a view of this frame
            return;
        }
        match &mut self.guess {
            Some(g) if g.topic == topic.name.0.as_str() && g.partition == partition => g.records_offset = offset,
            guess => *guess = Some(Guess { topic: topic.name.0.to_string(), partition, records_offset: offset }),
        }
    }

    /// Learns where an append of the request ended in its partition's active segment.
    pub fn appended(&mut self, topic: &str, partition: i32, end_position: u64) {
        if let Some(end) = self.ends.get_mut(topic).and_then(|p| p.get_mut(&partition)) {
            *end = end_position;
            return;
        }
        if self.tracked >= MAX_TRACKED_PARTITIONS {
            self.ends.clear();
            self.tracked = 0;
        }
        match self.ends.get_mut(topic) {
            Some(partitions) => partitions.insert(partition, end_position),
            None => self.ends.entry(topic.to_string()).or_default().insert(partition, end_position),
        };
        self.tracked += 1;
    }

    fn end_of(&self, topic: &str, partition: i32) -> Option<u64> {
        self.ends.get(topic)?.get(&partition).copied()
    }

    /// The phase (offset within a memory page) to read a frame of `frame_len` bytes at, given
    /// its first bytes `prefix`: 0 when nothing is known.
    pub fn phase(&self, prefix: &[u8], frame_len: usize) -> usize {
        if let Some(first) = first_partition(prefix).filter(|f| f.records_len > frame_len / 2) {
            let topic = std::str::from_utf8(first.topic).unwrap_or_default();
            if let Some(end) = self.end_of(topic, first.partition) {
                return phase_for(end, first.records_offset);
            }
        }
        match &self.guess {
            Some(g) => self.end_of(&g.topic, g.partition).map_or(0, |end| phase_for(end, g.records_offset)),
            None => 0,
        }
    }
}

/// A produce request's first partition, as far as [`first_partition`] reads it.
#[derive(Debug, PartialEq, Eq)]
pub struct FirstPartition<'a> {
    pub topic: &'a [u8],
    pub partition: i32,
    /// Where the partition's records start in the frame, and how many bytes they are.
    pub records_offset: usize,
    pub records_len: usize,
}

/// Reads the first partition of a Produce request (v3–v11) from the start of its frame: the
/// request header (by the request decoder's own `RequestHeader::decode`), the transactional
/// id, acks, timeout, the first topic's name and its first partition's index and records
/// length. `None` for another request, a version it does not know, or a prefix that ends
/// before the records start. Reads only; the request is decoded and checked in full later.
pub fn first_partition(prefix: &[u8]) -> Option<FirstPartition<'_>> {
    let version = i16::from_be_bytes(prefix.get(2..4)?.try_into().ok()?);
    if prefix.get(..2)? != (ApiKey::Produce as i16).to_be_bytes() || !(3..=11).contains(&version) {
        return None;
    }
    let mut rest = prefix;
    RequestHeader::decode(&mut rest, ApiKey::Produce.request_header_version(version)).ok()?;
    let mut r = PrefixReader { bytes: prefix, pos: prefix.len() - rest.len(), flexible: version >= 9 };
    let transactional_id_len = r.length(2)?;
    r.take(usize::try_from(transactional_id_len).unwrap_or(0))?;
    r.take(2 + 4)?; // acks, timeout
    if r.length(4)? <= 0 {
        return None; // no topics
    }
    let topic_len = r.length(2)?;
    let topic = r.take(usize::try_from(topic_len).unwrap_or(0))?;
    if r.length(4)? <= 0 {
        return None; // no partitions
    }
    let partition = i32::from_be_bytes(r.take(4)?.try_into().ok()?);
    let records_len = usize::try_from(r.length(4)?).ok()?;
    Some(FirstPartition { topic, partition, records_offset: r.pos, records_len })
}

/// A cursor over a frame's first bytes; every read is `None` past their end.
struct PrefixReader<'a> {
    bytes: &'a [u8],
    pos: usize,
    /// Lengths are compact (an unsigned varint of length + 1) in flexible versions.
    flexible: bool,
}

impl<'a> PrefixReader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let taken = self.bytes.get(self.pos..self.pos.checked_add(n)?)?;
        self.pos += n;
        Some(taken)
    }

    /// The length of a string (`width` 2), array or bytes (`width` 4); -1 for null.
    fn length(&mut self, width: usize) -> Option<i64> {
        if self.flexible {
            return Some(i64::from(read_unsigned_varint(self.bytes, &mut self.pos)?) - 1);
        }
        let raw = self.take(width)?;
        Some(if width == 2 {
            i64::from(i16::from_be_bytes(raw.try_into().ok()?))
        } else {
            i64::from(i32::from_be_bytes(raw.try_into().ok()?))
        })
    }
}

/// The phase that puts a frame's byte `records_offset` at file position `file_pos`'s offset
/// within a page.
pub fn phase_for(file_pos: u64, records_offset: usize) -> usize {
    let page = FRAME_ALIGN_BYTES;
    (file_pos as usize % page + page - records_offset % page) % page
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connection::{decode_request, Decoded};
    use bytes::{Bytes, BytesMut};
    use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
    use kafka_protocol::messages::{RequestKind, TopicName, TransactionalId};
    use kafka_protocol::protocol::{Encodable, StrBytes};

    #[test]
    fn the_phase_puts_the_records_where_the_file_position_is_within_a_page() {
        for (file_pos, offset) in [(0u64, 0usize), (0, 100), (5000, 100), (4096 * 7 + 3, 4100), (100, 100)] {
            let phase = phase_for(file_pos, offset);
            assert!(phase < FRAME_ALIGN_BYTES);
            assert_eq!((phase + offset) % FRAME_ALIGN_BYTES, file_pos as usize % FRAME_ALIGN_BYTES);
        }
    }

    /// A produce request of `topics` (name, [(partition, record bytes)]) as a client sends it
    /// (without the size prefix).
    fn encoded(version: i16, client_id: Option<&str>, txn: Option<&str>, topics: &[(&str, &[(i32, usize)])]) -> Bytes {
        let topic_data = topics
            .iter()
            .map(|(name, parts)| {
                let partition_data = parts
                    .iter()
                    .map(|&(index, len)| {
                        let records = Bytes::from((0..len).map(|i| (i % 253) as u8).collect::<Vec<_>>());
                        PartitionProduceData::default().with_index(index).with_records(Some(records))
                    })
                    .collect();
                TopicProduceData::default()
                    .with_name(TopicName(StrBytes::from_string(name.to_string())))
                    .with_partition_data(partition_data)
            })
            .collect();
        let request = ProduceRequest::default()
            .with_transactional_id(txn.map(|t| TransactionalId(StrBytes::from_string(t.to_string()))))
            .with_acks(-1)
            .with_timeout_ms(30_000)
            .with_topic_data(topic_data);
        let header = RequestHeader::default()
            .with_request_api_key(0)
            .with_request_api_version(version)
            .with_correlation_id(7)
            .with_client_id(client_id.map(|c| StrBytes::from_string(c.to_string())));
        let mut buf = BytesMut::new();
        header.encode(&mut buf, ApiKey::Produce.request_header_version(version)).unwrap();
        request.encode(&mut buf, version).unwrap();
        buf.freeze()
    }

    fn decoded(frame: &Bytes) -> ProduceRequest {
        match decode_request(frame.clone()).expect("decodes") {
            Decoded::Request { request, .. } => match *request {
                RequestKind::Produce(r) => r,
                other => panic!("not a produce: {other:?}"),
            },
            Decoded::Reply(_) => panic!("not a request"),
        }
    }

    #[test]
    fn the_first_partition_is_found_where_the_decoder_finds_it_in_every_version() {
        let long_id = "c".repeat(300);
        let long_topic = "t".repeat(249);
        for version in 3..=11 {
            for client_id in [None, Some(""), Some("rdkafka"), Some(long_id.as_str())] {
                for txn in [None, Some("txn-1")] {
                    for topics in [
                        &[("bench", &[(7, 1_000_000)][..])][..],
                        &[(long_topic.as_str(), &[(0, 0), (1, 5000)][..]), ("other", &[(3, 70)][..])],
                        &[("a", &[(2_000_000_000, 200)][..])],
                    ] {
                        let frame = encoded(version, client_id, txn, topics);
                        let request = decoded(&frame);
                        let (topic, first) = (&request.topic_data[0], &request.topic_data[0].partition_data[0]);
                        let records = first.records.as_ref().unwrap();
                        let expected = FirstPartition {
                            topic: topic.name.0.as_bytes(),
                            partition: first.index,
                            records_offset: records.as_ptr() as usize - frame.as_ptr() as usize,
                            records_len: records.len(),
                        };
                        let prefix = &frame[..frame.len().min(crate::frame::PREFIX_BYTES)];
                        let found = first_partition(prefix);
                        if expected.records_offset <= prefix.len() {
                            assert_eq!(found, Some(expected), "v{version} client {client_id:?} txn {txn:?}");
                        } else {
                            assert_eq!(found, None, "v{version}: the records start past the prefix");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn anything_else_has_no_first_partition() {
        let frame = encoded(9, Some("c"), None, &[("bench", &[(0, 100)])]);
        let records_offset = first_partition(&frame).unwrap().records_offset;
        // Every prefix that ends before the records start.
        for end in 0..records_offset {
            assert_eq!(first_partition(&frame[..end]), None, "prefix of {end} bytes");
        }
        assert!(first_partition(&frame[..records_offset]).is_some());
        let mut other_api = frame.to_vec();
        other_api[1] = 1; // Fetch
        assert_eq!(first_partition(&other_api), None);
        for version in [0i16, 2, 12, -1] {
            let mut other_version = frame.to_vec();
            other_version[2..4].copy_from_slice(&version.to_be_bytes());
            assert_eq!(first_partition(&other_version), None, "v{version}");
        }
        assert_eq!(first_partition(&encoded(9, Some("c"), None, &[])), None);
        assert_eq!(first_partition(&encoded(5, Some("c"), None, &[("bench", &[])])), None);
        // Garbage never panics, whatever it says.
        let mut seed = 0x9e3779b97f4a7c15u64;
        for _ in 0..10_000 {
            let mut garbage: Vec<u8> = (0..64)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    seed as u8
                })
                .collect();
            garbage[..4].copy_from_slice(&[0, 0, 0, 9]);
            let _ = first_partition(&garbage);
        }
    }

    #[test]
    fn a_request_is_placed_where_its_partitions_last_append_ended() {
        // librdkafka's pattern: one partition per request, rotating over many partitions.
        let mut placement = ProducePlacement::default();
        let frames: Vec<Bytes> =
            (0..10).map(|p| encoded(9, Some("rdkafka"), None, &[("bench", &[(p, 100_000)])])).collect();
        for frame in &frames {
            assert_eq!(placement.phase(&frame[..1024], frame.len()), 0, "nothing known yet");
            placement.learn(frame, &decoded(frame));
        }
        for p in 0..10 {
            placement.appended("bench", p, 5000 + 1000 * p as u64);
        }
        for (p, frame) in frames.iter().enumerate() {
            let offset = first_partition(frame).unwrap().records_offset;
            assert_eq!(placement.phase(&frame[..1024], frame.len()), phase_for(5000 + 1000 * p as u64, offset));
        }
        // A later append of one partition moves its phase only.
        placement.appended("bench", 3, 9999);
        let offset = first_partition(&frames[3]).unwrap().records_offset;
        assert_eq!(placement.phase(&frames[3][..1024], frames[3].len()), phase_for(9999, offset));
        assert_eq!(placement.phase(&frames[4][..1024], frames[4].len()), phase_for(9000, offset));
    }

    #[test]
    fn a_request_of_many_partitions_is_placed_by_the_previous_ones_largest() {
        // The Java client's pattern: many partitions per request, the same layout each time.
        let mut placement = ProducePlacement::default();
        let frame = encoded(9, Some("producer-1"), None, &[("t", &[(0, 50), (3, 800_000), (1, 400_000)])]);
        placement.learn(&frame, &decoded(&frame));
        let guess = placement.guess.as_ref().expect("a guess");
        let records_offset = guess.records_offset;
        assert_eq!((guess.topic.as_str(), guess.partition), ("t", 3));
        // No phase until an append of that partition reports where it ended.
        assert_eq!(placement.phase(&frame[..1024], frame.len()), 0);
        placement.appended("t", 0, 5000);
        placement.appended("t", 1, 6000);
        assert_eq!(placement.phase(&frame[..1024], frame.len()), 0);
        placement.appended("t", 3, 7000);
        assert_eq!(placement.phase(&frame[..1024], frame.len()), phase_for(7000, records_offset));
        // Records that are not a view of the frame (or none at all) leave no guess.
        let other = encoded(9, Some("producer-1"), None, &[("t", &[(0, 10)])]);
        placement.learn(&frame, &decoded(&other));
        assert!(placement.guess.is_none());
        placement.learn(&frame, &ProduceRequest::default());
        assert!(placement.guess.is_none());
    }

    #[test]
    fn at_most_max_tracked_partitions_are_remembered() {
        let mut placement = ProducePlacement::default();
        for p in 0..MAX_TRACKED_PARTITIONS as i32 {
            placement.appended("t", p, 1);
        }
        placement.appended("t", 0, 2); // known: updated in place
        assert_eq!((placement.tracked, placement.end_of("t", 0)), (MAX_TRACKED_PARTITIONS, Some(2)));
        placement.appended("u", 0, 3); // one more: the memory starts over
        assert_eq!((placement.tracked, placement.end_of("t", 0), placement.end_of("u", 0)), (1, None, Some(3)));
    }
}

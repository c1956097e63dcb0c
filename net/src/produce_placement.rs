//! Where in memory a connection reads its next frame, so that a produce request's record
//! batch can go to the segment file without a copy.
//!
//! Owns: one connection's guess of the next produce request's layout. A direct write needs
//! the batch's memory to sit at the same offset within a 4 KiB page as its bytes will within
//! a file page ([`sluice_engine::segment_writer::is_direct_source`]). The frame is read
//! before anyone knows where its records start or where they will land, so this guesses
//! from the previous produce request on the connection: a producer sends the same topic and
//! partition, at the same offset in the frame, request after request (the client id, topic
//! name and array headers do not change), and the next batch lands where its previous one
//! ended (the append reports that position, from whichever shard owns the partition). The
//! phase is then `(file position − records offset) mod 4096`.
//!
//! A wrong guess (another partition, a roll, a concurrent producer, a different layout) costs
//! one copy: the writer checks the alignment and copies what is not aligned. Only the
//! partition with the most record bytes in a request is placed.
//!
//! Must never: affect anything but where the frame sits in memory.

use kafka_protocol::messages::ProduceRequest;

use crate::frame_buffers::FRAME_ALIGN_BYTES;

/// The partition the next produce request is expected to append to, where its records start
/// in the frame, and where its last append ended.
struct Guess {
    topic: String,
    partition: i32,
    records_offset: usize,
    end_position: Option<u64>,
}

/// One connection's placement guess. See the module docs.
#[derive(Default)]
pub struct ProducePlacement {
    guess: Option<Guess>,
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
            guess => {
                *guess = Some(Guess {
                    topic: topic.name.0.to_string(),
                    partition,
                    records_offset: offset,
                    end_position: None,
                })
            }
        }
    }

    /// Learns where an append of the request ended in its partition's active segment.
    pub fn appended(&mut self, topic: &str, partition: i32, end_position: u64) {
        if let Some(g) = self.guess.as_mut().filter(|g| g.topic == topic && g.partition == partition) {
            g.end_position = Some(end_position);
        }
    }

    /// The phase (offset within a memory page) to read the next frame at: 0 without a guess.
    pub fn phase(&self) -> usize {
        match &self.guess {
            Some(Guess { end_position: Some(pos), records_offset, .. }) => phase_for(*pos, *records_offset),
            _ => 0,
        }
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
    use bytes::Bytes;
    use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
    use kafka_protocol::messages::TopicName;
    use kafka_protocol::protocol::StrBytes;

    #[test]
    fn the_phase_puts_the_records_where_the_file_position_is_within_a_page() {
        for (file_pos, offset) in [(0u64, 0usize), (0, 100), (5000, 100), (4096 * 7 + 3, 4100), (100, 100)] {
            let phase = phase_for(file_pos, offset);
            assert!(phase < FRAME_ALIGN_BYTES);
            assert_eq!((phase + offset) % FRAME_ALIGN_BYTES, file_pos as usize % FRAME_ALIGN_BYTES);
        }
    }

    fn request(frame: &Bytes, parts: &[(i32, std::ops::Range<usize>)]) -> ProduceRequest {
        let partition_data = parts
            .iter()
            .map(|(index, range)| {
                PartitionProduceData::default().with_index(*index).with_records(Some(frame.slice(range.clone())))
            })
            .collect();
        let topic = TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_static_str("t")))
            .with_partition_data(partition_data);
        ProduceRequest::default().with_topic_data(vec![topic])
    }

    #[test]
    fn learns_the_partition_with_the_most_record_bytes_and_where_they_start() {
        let frame = Bytes::from(vec![0u8; 1000]);
        let mut placement = ProducePlacement::default();
        placement.learn(&frame, &request(&frame, &[(0, 50..100), (3, 120..900), (1, 900..1000)]));
        let guess = placement.guess.as_ref().expect("a guess");
        assert_eq!((guess.topic.as_str(), guess.partition, guess.records_offset), ("t", 3, 120));
        // No phase until an append of that partition reports where it ended.
        assert_eq!(placement.phase(), 0);
        placement.appended("t", 0, 5000);
        assert_eq!(placement.phase(), 0);
        placement.appended("t", 3, 5000);
        assert_eq!(placement.phase(), phase_for(5000, 120));
        // The same partition again keeps the position until the next append reports.
        placement.learn(&frame, &request(&frame, &[(3, 130..900)]));
        assert_eq!(placement.phase(), phase_for(5000, 130));
        // Records that are not a view of the frame (or none at all) leave no guess.
        let other = Bytes::from(vec![0u8; 1000]);
        placement.learn(&frame, &request(&other, &[(0, 0..10)]));
        assert!(placement.guess.is_none());
        placement.learn(&frame, &ProduceRequest::default());
        assert!(placement.guess.is_none());
    }
}

//! Encoding a response without copying its record data.
//!
//! Owns: [`SegmentedBuf`], a `ByteBufMut` for the kafka-protocol encoders that keeps large
//! record blobs (the `Bytes` a Fetch read returned, often zero-copy slices of the tail cache)
//! as references instead of copying them into the output. The response becomes a list of
//! segments — small encoded parts and the record `Bytes` — written to the socket in turn.
//!
//! How it recognises record bytes: the encoder hands every byte field to `put_slice`; a slice
//! whose address and length fall inside one of the registered `Bytes` is taken by reference.
//! Nothing is unsafe about the comparison: it only compares addresses.
//!
//! Must never: be used with an encoder that seeks back across a referenced segment
//! (kafka-protocol's message encoders never seek; only its snappy codec does). The unit tests
//! compare every Fetch version's output with plain `BytesMut` encoding byte for byte.

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::protocol::buf::ByteBufMut;

/// Smallest slice worth referencing instead of copying.
pub const ZERO_COPY_MIN_BYTES: usize = 16 * 1024;

/// See the module docs.
pub struct SegmentedBuf {
    candidates: Vec<Bytes>,
    segments: Vec<Bytes>,
    inline: BytesMut,
    /// Logical length of everything in `segments`.
    segments_len: usize,
}

impl SegmentedBuf {
    /// `candidates`: record blobs that may be referenced rather than copied.
    pub fn new(candidates: Vec<Bytes>) -> SegmentedBuf {
        let candidates = candidates.into_iter().filter(|b| b.len() >= ZERO_COPY_MIN_BYTES).collect();
        SegmentedBuf { candidates, segments: Vec::new(), inline: BytesMut::with_capacity(512), segments_len: 0 }
    }

    fn candidate_for(&self, src: &[u8]) -> Option<Bytes> {
        let start = src.as_ptr() as usize;
        let end = start + src.len();
        self.candidates.iter().find_map(|c| {
            let c_start = c.as_ptr() as usize;
            let c_end = c_start + c.len();
            (start >= c_start && end <= c_end).then(|| c.slice(start - c_start..end - c_start))
        })
    }

    /// The encoded bytes as segments (total length = `len()`).
    pub fn into_segments(mut self) -> Vec<Bytes> {
        if !self.inline.is_empty() {
            self.segments.push(self.inline.split().freeze());
        }
        self.segments
    }

    pub fn len(&self) -> usize {
        self.segments_len + self.inline.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

// SAFETY: every method delegates to the inner `BytesMut`, whose `BufMut` contract holds.
unsafe impl BufMut for SegmentedBuf {
    fn remaining_mut(&self) -> usize {
        self.inline.remaining_mut()
    }

    unsafe fn advance_mut(&mut self, cnt: usize) {
        // SAFETY: forwarded with the caller's guarantee.
        unsafe { self.inline.advance_mut(cnt) }
    }

    fn chunk_mut(&mut self) -> &mut bytes::buf::UninitSlice {
        self.inline.chunk_mut()
    }

    fn put_slice(&mut self, src: &[u8]) {
        if src.len() >= ZERO_COPY_MIN_BYTES {
            if let Some(referenced) = self.candidate_for(src) {
                if !self.inline.is_empty() {
                    let head = self.inline.split().freeze();
                    self.segments_len += head.len();
                    self.segments.push(head);
                }
                self.segments_len += referenced.len();
                self.segments.push(referenced);
                return;
            }
        }
        self.inline.extend_from_slice(src);
    }
}

impl ByteBufMut for SegmentedBuf {
    fn offset(&self) -> usize {
        self.len()
    }

    fn seek(&mut self, offset: usize) {
        // Only within the inline tail (see the module docs).
        let rel = offset.checked_sub(self.segments_len).expect("seek back across a referenced segment");
        if rel > self.inline.len() {
            self.inline.resize(rel, 0);
        } else {
            self.inline.truncate(rel);
        }
    }

    fn range(&mut self, r: std::ops::Range<usize>) -> &mut [u8] {
        let start = r.start.checked_sub(self.segments_len).expect("range across a referenced segment");
        let end = r.end - self.segments_len;
        &mut self.inline[start..end]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
    use kafka_protocol::messages::{FetchResponse, TopicName};
    use kafka_protocol::protocol::{Encodable, StrBytes};

    fn response(records: &[Bytes], version: i16) -> FetchResponse {
        let partitions = records
            .iter()
            .enumerate()
            .map(|(i, r)| {
                PartitionData::default()
                    .with_partition_index(i as i32)
                    .with_high_watermark(100)
                    .with_last_stable_offset(100)
                    .with_log_start_offset(0)
                    .with_records(Some(r.clone()))
            })
            .collect();
        let mut topic = FetchableTopicResponse::default().with_partitions(partitions);
        if version >= 13 {
            topic = topic.with_topic_id(uuid::Uuid::from_bytes([7; 16]));
        } else {
            topic = topic.with_topic(TopicName(StrBytes::from_static_str("t")));
        }
        FetchResponse::default().with_responses(vec![topic])
    }

    #[test]
    fn same_bytes_as_plain_encoding_for_every_fetch_version_and_records_are_referenced() {
        let big: Bytes = (0..100_000u32).map(|i| (i % 251) as u8).collect::<Vec<_>>().into();
        let big2 = big.slice(10..70_000);
        let small = Bytes::from_static(b"tiny");
        let records = vec![big.clone(), small, Bytes::new(), big2.clone()];
        for version in 4..=16 {
            let r = response(&records, version);
            let mut plain = BytesMut::new();
            r.encode(&mut plain, version).unwrap();
            let mut seg = SegmentedBuf::new(records.clone());
            r.encode(&mut seg, version).unwrap();
            assert_eq!(seg.len(), plain.len());
            let segments = seg.into_segments();
            assert_eq!(segments.concat(), plain.to_vec(), "v{version}");
            let referenced: Vec<_> = segments.iter().filter(|s| s.len() >= ZERO_COPY_MIN_BYTES).collect();
            assert_eq!(referenced.len(), 2);
            assert_eq!(referenced[0].as_ptr(), big.as_ptr(), "v{version}: big records not copied");
            assert_eq!(referenced[1].as_ptr(), big2.as_ptr());
        }
    }
}

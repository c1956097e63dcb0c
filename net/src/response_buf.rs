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

use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::protocol::buf::ByteBufMut;

/// A range of a segment file to send with `sendfile`.
#[derive(Clone, Debug)]
pub struct FileRange {
    pub file: Arc<std::fs::File>,
    pub position: u64,
    pub len: usize,
    /// Read the file ahead through the page cache up to here (exclusive) when sending; no
    /// read-ahead when it is not past the range's end. Only bytes that are final may be
    /// covered (see `LogRead::stable_file_end`).
    pub readahead_end: u64,
}

/// One piece of an encoded response.
#[derive(Clone, Debug)]
pub enum OutSegment {
    Bytes(Bytes),
    File(FileRange),
}

impl OutSegment {
    pub fn len(&self) -> usize {
        match self {
            OutSegment::Bytes(b) => b.len(),
            OutSegment::File(f) => f.len,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Most file-backed record fields one response can carry (one marker byte each).
pub const MAX_FILE_MARKERS: usize = 4096;
static FILE_MARKERS: [u8; MAX_FILE_MARKERS] = [0; MAX_FILE_MARKERS];

/// The 1-byte stand-in a response carries in place of file-backed records number `index`:
/// the encoder writes its length prefix and passes its address to `put_slice`, where
/// [`SegmentedBuf`] swaps in the real length and the file range.
pub fn file_marker(index: usize) -> Bytes {
    assert!(index < MAX_FILE_MARKERS, "too many file-backed partitions in one response");
    Bytes::from_static(&FILE_MARKERS[index..index + 1])
}

/// Smallest slice worth referencing instead of copying.
pub const ZERO_COPY_MIN_BYTES: usize = 16 * 1024;

/// See the module docs.
pub struct SegmentedBuf {
    candidates: Vec<Bytes>,
    files: Vec<FileRange>,
    /// Record fields are compact bytes (flexible versions: uvarint length + 1) rather than
    /// int32-length bytes.
    compact: bool,
    segments: Vec<OutSegment>,
    inline: BytesMut,
    /// Logical length of everything in `segments`.
    segments_len: usize,
}

impl SegmentedBuf {
    /// `candidates`: record blobs that may be referenced rather than copied.
    pub fn new(candidates: Vec<Bytes>) -> SegmentedBuf {
        Self::with_files(candidates, Vec::new(), false)
    }

    /// Also replaces file marker `i` (see [`file_marker`]) by `files[i]`.
    pub fn with_files(candidates: Vec<Bytes>, files: Vec<FileRange>, compact: bool) -> SegmentedBuf {
        let candidates = candidates.into_iter().filter(|b| b.len() >= ZERO_COPY_MIN_BYTES).collect();
        SegmentedBuf {
            candidates,
            files,
            compact,
            segments: Vec::new(),
            inline: BytesMut::with_capacity(512),
            segments_len: 0,
        }
    }

    fn marker_index(&self, src: &[u8]) -> Option<usize> {
        let base = FILE_MARKERS.as_ptr() as usize;
        let at = src.as_ptr() as usize;
        (src.len() == 1 && at >= base && at < base + MAX_FILE_MARKERS)
            .then(|| at - base)
            .filter(|i| *i < self.files.len())
    }

    fn flush_inline(&mut self) {
        if !self.inline.is_empty() {
            let head = self.inline.split().freeze();
            self.segments_len += head.len();
            self.segments.push(OutSegment::Bytes(head));
        }
    }

    /// Rewrites the length prefix the encoder just wrote for a 1-byte field into the file
    /// range's length, then appends the file segment.
    fn put_file(&mut self, index: usize) {
        let range = self.files[index].clone();
        if self.compact {
            // uvarint(1 + 1) = 0x02, one byte.
            let last = self.inline.len() - 1;
            debug_assert_eq!(self.inline[last], 2);
            self.inline.truncate(last);
            let mut v = range.len as u64 + 1;
            while v >= 0x80 {
                self.inline.put_u8((v as u8) | 0x80);
                v >>= 7;
            }
            self.inline.put_u8(v as u8);
        } else {
            let at = self.inline.len() - 4;
            debug_assert_eq!(&self.inline[at..], &1i32.to_be_bytes());
            self.inline[at..].copy_from_slice(&(range.len as i32).to_be_bytes());
        }
        self.flush_inline();
        self.segments_len += range.len;
        self.segments.push(OutSegment::File(range));
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

    /// The encoded response as segments (total length = `len()`).
    pub fn into_segments(mut self) -> Vec<OutSegment> {
        self.flush_inline();
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
        if let Some(index) = self.marker_index(src) {
            self.put_file(index);
            return;
        }
        if src.len() >= ZERO_COPY_MIN_BYTES {
            if let Some(referenced) = self.candidate_for(src) {
                self.flush_inline();
                self.segments_len += referenced.len();
                self.segments.push(OutSegment::Bytes(referenced));
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
            let segments: Vec<Bytes> = seg
                .into_segments()
                .into_iter()
                .map(|s| match s {
                    OutSegment::Bytes(b) => b,
                    OutSegment::File(_) => panic!("no files registered"),
                })
                .collect();
            assert_eq!(segments.concat(), plain.to_vec(), "v{version}");
            let referenced: Vec<_> = segments.iter().filter(|s| s.len() >= ZERO_COPY_MIN_BYTES).collect();
            assert_eq!(referenced.len(), 2);
            assert_eq!(referenced[0].as_ptr(), big.as_ptr(), "v{version}: big records not copied");
            assert_eq!(referenced[1].as_ptr(), big2.as_ptr());
        }
    }

    #[test]
    fn file_markers_become_file_segments_with_correct_length_prefixes() {
        use std::io::Write;
        let mut tmp = tempfile::tempfile().unwrap();
        let data: Vec<u8> = (0..300_000u32).map(|i| (i % 253) as u8).collect();
        tmp.write_all(&data).unwrap();
        let file = Arc::new(tmp);
        for version in 4..=16 {
            let ranges = vec![
                FileRange { file: file.clone(), position: 10, len: 200_000, readahead_end: 0 },
                FileRange { file: file.clone(), position: 0, len: 5, readahead_end: 0 },
            ];
            // Expected: the same response with the real bytes inline.
            let real = vec![Bytes::copy_from_slice(&data[10..200_010]), Bytes::copy_from_slice(&data[0..5])];
            let mut plain = BytesMut::new();
            response(&real, version).encode(&mut plain, version).unwrap();
            let markers = vec![file_marker(0), file_marker(1)];
            let mut seg = SegmentedBuf::with_files(vec![], ranges, version >= 12);
            response(&markers, version).encode(&mut seg, version).unwrap();
            assert_eq!(seg.len(), plain.len(), "v{version}");
            let mut rebuilt = Vec::new();
            for s in seg.into_segments() {
                match s {
                    OutSegment::Bytes(b) => rebuilt.extend_from_slice(&b),
                    OutSegment::File(f) => {
                        rebuilt.extend_from_slice(&data[f.position as usize..f.position as usize + f.len])
                    }
                }
            }
            assert_eq!(rebuilt, plain.to_vec(), "v{version}");
        }
    }
}

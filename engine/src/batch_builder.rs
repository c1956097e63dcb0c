//! An incremental record-batch builder for clients (`sluice bench`'s producers): append
//! records one at a time, then finish the batch — uncompressed, or with its records section
//! compressed by a caller-supplied codec.
//!
//! Owns: the v2 batch layout on the producing side (it reuses [`crate::batch`]'s record encoder
//! and header writer, so what it builds validates exactly like `build_batch`'s output). Must
//! never: know about codecs (the caller compresses), or produce a batch that fails
//! [`crate::batch::validate_from_client`] for a non-empty record set.

use crate::batch::{
    compute_crc, finish_batch, put_nullable, put_record_at, put_varint, put_varlong, record_body_len_at, Compression,
    ATTRIBUTES_OFFSET, BATCH_HEADER_LEN, COMPRESSION_MASK, CRC_OFFSET,
};

/// Records appended so far, laid out after a reserved 61-byte header. Every record has
/// timestamp delta 0 (the batch's `baseTimestamp` is the client's clock at creation), offset
/// deltas 0, 1, 2, … and no headers, as a non-idempotent Java producer sends them.
pub struct RecordBatchBuilder {
    buf: Vec<u8>,
    record_count: usize,
    base_timestamp_ms: i64,
}

impl RecordBatchBuilder {
    /// An empty batch with room for about `capacity_bytes` of records.
    pub fn new(base_timestamp_ms: i64, capacity_bytes: usize) -> RecordBatchBuilder {
        let mut buf = Vec::with_capacity(BATCH_HEADER_LEN + capacity_bytes);
        buf.resize(BATCH_HEADER_LEN, 0);
        RecordBatchBuilder { buf, record_count: 0, base_timestamp_ms }
    }

    /// Appends one record. Panics if the batch would hold more than `i32::MAX` records.
    pub fn push(&mut self, key: Option<&[u8]>, value: &[u8]) {
        let offset_delta = i32::try_from(self.record_count).expect("batch record count fits in i32");
        put_record_at(&mut self.buf, 0, offset_delta, key, Some(value), &[]);
        self.record_count += 1;
    }

    /// Appends one record whose `value_len`-byte value `write_value` appends to the buffer it
    /// is given — written in place, without an intermediate copy. Panics if `write_value`
    /// appends a different number of bytes.
    pub fn push_with(&mut self, key: Option<&[u8]>, value_len: usize, write_value: impl FnOnce(&mut Vec<u8>)) {
        let offset_delta = i32::try_from(self.record_count).expect("batch record count fits in i32");
        let value_len_i32 = i32::try_from(value_len).expect("value length fits in i32");
        // The body length depends only on the value's length: measure it with a stand-in.
        let body_len = record_body_len_with_value_len(offset_delta, key, value_len);
        put_varint(&mut self.buf, body_len);
        self.buf.push(0); // attributes
        put_varlong(&mut self.buf, 0); // timestamp delta
        put_varint(&mut self.buf, offset_delta);
        put_nullable(&mut self.buf, key);
        put_varint(&mut self.buf, value_len_i32);
        let before = self.buf.len();
        write_value(&mut self.buf);
        assert_eq!(self.buf.len() - before, value_len, "push_with: value written has the wrong length");
        put_varint(&mut self.buf, 0); // no headers
        self.record_count += 1;
    }

    pub fn record_count(&self) -> usize {
        self.record_count
    }

    /// Bytes the batch occupies uncompressed, header included.
    pub fn len_bytes(&self) -> usize {
        self.buf.len()
    }

    pub fn is_empty(&self) -> bool {
        self.record_count == 0
    }

    /// The uncompressed records section (after the header): what a codec compresses.
    pub fn records_section(&self) -> &[u8] {
        &self.buf[BATCH_HEADER_LEN..]
    }

    /// Finishes an uncompressed batch with base offset 0.
    pub fn finish(mut self) -> Vec<u8> {
        finish_batch(&mut self.buf, 0, self.record_count, self.base_timestamp_ms);
        self.buf
    }

    /// Finishes a batch whose records section is `compressed` (the output of `codec` applied
    /// to [`Self::records_section`]); sets the codec bits and the CRC.
    pub fn finish_compressed(self, codec: Compression, compressed: &[u8]) -> Vec<u8> {
        if codec == Compression::None {
            return self.finish();
        }
        let mut out = Vec::with_capacity(BATCH_HEADER_LEN + compressed.len());
        out.resize(BATCH_HEADER_LEN, 0);
        out.extend_from_slice(compressed);
        finish_batch(&mut out, 0, self.record_count, self.base_timestamp_ms);
        let attributes = i16::from(codec.id()) & COMPRESSION_MASK;
        out[ATTRIBUTES_OFFSET..ATTRIBUTES_OFFSET + 2].copy_from_slice(&attributes.to_be_bytes());
        let crc = compute_crc(&out);
        out[CRC_OFFSET..ATTRIBUTES_OFFSET].copy_from_slice(&crc.to_be_bytes());
        out
    }
}

/// A record body's length (after its length varint) for a value of `value_len` bytes.
fn record_body_len_with_value_len(offset_delta: i32, key: Option<&[u8]>, value_len: usize) -> i32 {
    // record_body_len_at counts `varint(len) + len` for the value; a zero-length stand-in plus
    // the difference in the length varint's size gives the same number without the bytes.
    let with_empty = record_body_len_at(0, offset_delta, key, Some(&[]), &[]);
    let len_i32 = i32::try_from(value_len).expect("value length fits in i32");
    let total = with_empty - varint_size(0) + varint_size(len_i32) + value_len;
    i32::try_from(total).expect("record fits in i32")
}

fn varint_size(v: i32) -> usize {
    let mut raw = ((v << 1) ^ (v >> 31)) as u32;
    let mut n = 1;
    while raw >= 0x80 {
        raw >>= 7;
        n += 1;
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::{validate_from_client, validate_stored};

    #[test]
    fn built_batches_validate_and_count_records() {
        let mut b = RecordBatchBuilder::new(1_700_000_000_000, 1024);
        b.push(None, b"hello");
        b.push(Some(b"k"), b"world");
        assert_eq!(b.record_count(), 2);
        let batch = b.finish();
        let info = validate_from_client(&batch).expect("valid");
        assert_eq!(info.records_count, 2);
        assert_eq!(info.total_len, batch.len());
    }

    #[test]
    fn push_with_writes_the_same_bytes_as_push() {
        for len in [0usize, 1, 63, 64, 200, 8191, 8192, 70_000] {
            let value: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let mut a = RecordBatchBuilder::new(5, 0);
            let mut b = RecordBatchBuilder::new(5, 0);
            for key in [None, Some(&b"key"[..])] {
                a.push(key, &value);
                b.push_with(key, len, |out| out.extend_from_slice(&value));
            }
            let (a, b) = (a.finish(), b.finish());
            assert_eq!(a, b, "value length {len}");
            validate_from_client(&b).expect("valid");
        }
    }

    #[test]
    fn compressed_batches_carry_the_codec_and_a_valid_crc() {
        let mut b = RecordBatchBuilder::new(0, 64);
        b.push(None, b"abc");
        // Any bytes stand in for a codec's output: validation checks the header and CRC.
        let fake = b.records_section().to_vec();
        let batch = b.finish_compressed(Compression::Zstd, &fake);
        let info = validate_stored(&batch).expect("valid");
        assert_eq!(info.compression(), Compression::Zstd);
        assert_eq!(info.records_count, 1);
    }
}

//! An incremental record-batch builder for clients (`sluice bench`'s producers): append
//! records one at a time, then finish the batch — uncompressed, or with its records section
//! compressed by a caller-supplied codec.
//!
//! Owns: the v2 batch layout on the producing side (it reuses [`crate::batch`]'s record encoder
//! and header writer, so what it builds validates exactly like `build_batch`'s output). Must
//! never: know about codecs (the caller compresses), or produce a batch that fails
//! [`crate::batch::validate_from_client`] for a non-empty record set.

use crate::batch::{
    compute_crc, finish_batch, put_record_at, Compression, ATTRIBUTES_OFFSET, BATCH_HEADER_LEN, COMPRESSION_MASK,
    CRC_OFFSET,
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

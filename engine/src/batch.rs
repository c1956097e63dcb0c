//! Kafka record batch v2 (magic 2): header view, validation, in-place offset assignment.
//!
//! Owns: the byte layout of a v2 record batch (the unit sluice stores, replicates and serves
//! unchanged), the checks that decide whether a batch may be accepted from a client or
//! trusted from disk, and the few in-place header rewrites the log makes on append
//! (base offset, partition leader epoch, LogAppendTime). Building batches is
//! [`crate::record_encoding`]'s (re-exported here).
//!
//! Must never:
//! - do I/O, block, or depend on the runtime: everything here is a pure function of bytes;
//! - allocate per record: validation walks records in place over the borrowed slice;
//! - trust a count or length from the wire to size an allocation or bound a loop without
//!   also bounding it by the bytes actually present (every loop here advances through the
//!   buffer and stops when the bytes run out);
//! - panic on any input in the validating functions ([`BatchHeader::parse`],
//!   [`validate_stored`], [`validate_from_client`], [`batches`]).
//!
//! Layout (all integers big-endian, 61-byte header, then records):
//!
//! ```text
//! @0  baseOffset i64          @27 baseTimestamp i64
//! @8  batchLength i32         @35 maxTimestamp i64
//! @12 partitionLeaderEpoch i32 @43 producerId i64
//! @16 magic i8                @51 producerEpoch i16
//! @17 crc u32                 @53 baseSequence i32
//! @21 attributes i16          @57 recordsCount i32
//! @23 lastOffsetDelta i32     @61 records...
//! ```
//!
//! `batchLength` counts the bytes after itself (total size − 12). The CRC-32C covers
//! `attributes` through the end of the batch, so `baseOffset`, `batchLength`,
//! `partitionLeaderEpoch` and `magic` can change without recomputing it.
//!
//! Error codes follow the broker's own classification (see [`BatchError::error_code`]):
//! damage to the framing or the checksum is `CORRUPT_MESSAGE` (Kafka's
//! `CorruptRecordException`, which clients treat as retriable), while a batch whose bytes are
//! intact but whose content breaks the format's rules is `INVALID_RECORD` (Kafka's
//! `InvalidRecordException`, not retriable).

use std::fmt;

use zerocopy::byteorder::big_endian::{I16, I32, I64, U32};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use crate::error_code::ErrorCode;

/// Size of the fixed v2 batch header, i.e. the offset of the first record.
pub const BATCH_HEADER_LEN: usize = 61;
/// Bytes before and including `batchLength` (`baseOffset` + `batchLength`): total size of a
/// batch is `batchLength + LOG_OVERHEAD`.
pub const LOG_OVERHEAD: usize = 12;
/// The only batch format sluice accepts.
pub const MAGIC_V2: i8 = 2;
/// Smallest legal `batchLength`: a header with no records (`61 - 12`).
pub const MIN_BATCH_LENGTH: i32 = (BATCH_HEADER_LEN - LOG_OVERHEAD) as i32;

/// Attributes bits 0-2: compression codec.
pub const COMPRESSION_MASK: i16 = 0x07;
/// Attributes bit 3: timestamp type (set = LogAppendTime).
pub const TIMESTAMP_TYPE_MASK: i16 = 0x08;
/// Attributes bit 4: batch belongs to a transaction.
pub const TRANSACTIONAL_MASK: i16 = 0x10;
/// Attributes bit 5: control batch (transaction markers).
pub const CONTROL_MASK: i16 = 0x20;
/// Attributes bit 6: `baseTimestamp` holds a delete horizon (set by compaction).
pub const DELETE_HORIZON_MASK: i16 = 0x40;

pub(crate) const CRC_OFFSET: usize = 17;
/// Start of the CRC-covered region (the `attributes` field).
pub(crate) const ATTRIBUTES_OFFSET: usize = 21;

/// Zero-copy view of the 61-byte v2 batch header.
///
/// Obtain one with [`BatchHeader::parse`]. The view only guarantees that 61 bytes exist; the
/// values are whatever the bytes say until [`validate_stored`] or [`validate_from_client`]
/// has accepted the batch. The fields are the crate's (the encoder in
/// [`crate::record_encoding`] writes them); outside it, read through the accessors.
#[repr(C)]
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
pub struct BatchHeader {
    pub(crate) base_offset: I64,
    pub(crate) batch_length: I32,
    pub(crate) partition_leader_epoch: I32,
    pub(crate) magic: i8,
    pub(crate) crc: U32,
    pub(crate) attributes: I16,
    pub(crate) last_offset_delta: I32,
    pub(crate) base_timestamp: I64,
    pub(crate) max_timestamp: I64,
    pub(crate) producer_id: I64,
    pub(crate) producer_epoch: I16,
    pub(crate) base_sequence: I32,
    pub(crate) records_count: I32,
}

const _: () = assert!(std::mem::size_of::<BatchHeader>() == BATCH_HEADER_LEN);

impl fmt::Debug for BatchHeader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BatchHeader")
            .field("base_offset", &self.base_offset())
            .field("batch_length", &self.batch_length())
            .field("partition_leader_epoch", &self.partition_leader_epoch())
            .field("magic", &self.magic())
            .field("crc", &format_args!("{:#010x}", self.crc()))
            .field("attributes", &format_args!("{:#06x}", self.attributes()))
            .field("last_offset_delta", &self.last_offset_delta())
            .field("base_timestamp", &self.base_timestamp())
            .field("max_timestamp", &self.max_timestamp())
            .field("producer_id", &self.producer_id())
            .field("producer_epoch", &self.producer_epoch())
            .field("base_sequence", &self.base_sequence())
            .field("records_count", &self.records_count())
            .finish()
    }
}

impl BatchHeader {
    /// Views the first 61 bytes of `buf` as a header. Checks nothing but the length:
    /// fails with [`BatchError::Truncated`] if `buf` is shorter than [`BATCH_HEADER_LEN`].
    pub fn parse(buf: &[u8]) -> Result<&BatchHeader, BatchError> {
        match BatchHeader::ref_from_prefix(buf) {
            Ok((header, _)) => Ok(header),
            Err(_) => Err(BatchError::Truncated { needed: BATCH_HEADER_LEN, available: buf.len() }),
        }
    }

    /// Offset of the first record (assigned by the leader on append).
    pub fn base_offset(&self) -> i64 {
        self.base_offset.get()
    }
    /// Bytes after the `batchLength` field (total size − 12), as stored.
    pub fn batch_length(&self) -> i32 {
        self.batch_length.get()
    }
    /// Leader epoch of the leader that appended the batch.
    pub fn partition_leader_epoch(&self) -> i32 {
        self.partition_leader_epoch.get()
    }
    /// Format version; sluice only accepts [`MAGIC_V2`].
    pub fn magic(&self) -> i8 {
        self.magic
    }
    /// Stored CRC-32C of bytes 21..end.
    pub fn crc(&self) -> u32 {
        self.crc.get()
    }
    /// Raw attributes (see the `*_MASK` constants).
    pub fn attributes(&self) -> i16 {
        self.attributes.get()
    }
    /// Offset of the last record relative to the base offset.
    pub fn last_offset_delta(&self) -> i32 {
        self.last_offset_delta.get()
    }
    /// Timestamp of the first record (or the delete horizon when bit 6 is set).
    pub fn base_timestamp(&self) -> i64 {
        self.base_timestamp.get()
    }
    /// Largest record timestamp, or the LogAppendTime when that timestamp type is set.
    pub fn max_timestamp(&self) -> i64 {
        self.max_timestamp.get()
    }
    /// Idempotent/transactional producer id, -1 if none.
    pub fn producer_id(&self) -> i64 {
        self.producer_id.get()
    }
    /// Producer epoch, -1 if none.
    pub fn producer_epoch(&self) -> i16 {
        self.producer_epoch.get()
    }
    /// Sequence number of the first record, -1 if none.
    pub fn base_sequence(&self) -> i32 {
        self.base_sequence.get()
    }
    /// Number of records as stored (may be less than `last_offset_delta + 1` after compaction).
    pub fn records_count(&self) -> i32 {
        self.records_count.get()
    }
    /// Total size of the batch in bytes (`batchLength + 12`). Only meaningful once the batch
    /// has been validated; a negative `batchLength` yields 0.
    pub fn total_len(&self) -> usize {
        usize::try_from(self.batch_length()).map_or(0, |len| len.saturating_add(LOG_OVERHEAD))
    }
    /// Offset of the last record, `base_offset + last_offset_delta` (wrapping on garbage).
    pub fn last_offset(&self) -> i64 {
        self.base_offset().wrapping_add(i64::from(self.last_offset_delta()))
    }
    /// Offset following the batch, `last_offset + 1` (wrapping on garbage).
    pub fn next_offset(&self) -> i64 {
        self.last_offset().wrapping_add(1)
    }
    /// Compression codec from attributes bits 0-2.
    pub fn compression(&self) -> Compression {
        Compression::from_attributes(self.attributes())
    }
    /// Timestamp type from attributes bit 3.
    pub fn timestamp_type(&self) -> TimestampType {
        TimestampType::from_attributes(self.attributes())
    }
    /// Attributes bit 4.
    pub fn is_transactional(&self) -> bool {
        self.attributes() & TRANSACTIONAL_MASK != 0
    }
    /// Attributes bit 5.
    pub fn is_control(&self) -> bool {
        self.attributes() & CONTROL_MASK != 0
    }
    /// Attributes bit 6: `base_timestamp` is a delete horizon set by compaction.
    pub fn has_delete_horizon(&self) -> bool {
        self.attributes() & DELETE_HORIZON_MASK != 0
    }
    /// Copies the header fields into a [`BatchInfo`].
    pub fn info(&self) -> BatchInfo {
        BatchInfo {
            total_len: self.total_len(),
            base_offset: self.base_offset(),
            last_offset_delta: self.last_offset_delta(),
            records_count: self.records_count(),
            partition_leader_epoch: self.partition_leader_epoch(),
            attributes: self.attributes(),
            base_timestamp: self.base_timestamp(),
            max_timestamp: self.max_timestamp(),
            producer_id: self.producer_id(),
            producer_epoch: self.producer_epoch(),
            base_sequence: self.base_sequence(),
        }
    }
}

/// Compression codec of a batch (attributes bits 0-2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Compression {
    /// 0: records are stored as is.
    None,
    /// 1
    Gzip,
    /// 2
    Snappy,
    /// 3
    Lz4,
    /// 4
    Zstd,
    /// 5-7: not a codec Kafka defines.
    Unknown(u8),
}

impl Compression {
    /// Decodes bits 0-2 of `attributes`.
    pub fn from_attributes(attributes: i16) -> Compression {
        // Masked to 3 bits, so the cast cannot truncate.
        match (attributes & COMPRESSION_MASK) as u8 {
            0 => Compression::None,
            1 => Compression::Gzip,
            2 => Compression::Snappy,
            3 => Compression::Lz4,
            4 => Compression::Zstd,
            id => Compression::Unknown(id),
        }
    }

    /// The codec's id as stored in attributes bits 0-2.
    pub fn id(self) -> u8 {
        match self {
            Compression::None => 0,
            Compression::Gzip => 1,
            Compression::Snappy => 2,
            Compression::Lz4 => 3,
            Compression::Zstd => 4,
            Compression::Unknown(id) => id,
        }
    }
}

/// Meaning of a batch's timestamps (attributes bit 3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TimestampType {
    /// Timestamps were set by the producer.
    CreateTime,
    /// `maxTimestamp` was set by the broker on append and stands for every record.
    LogAppendTime,
}

impl TimestampType {
    /// Decodes bit 3 of `attributes`.
    pub fn from_attributes(attributes: i16) -> TimestampType {
        if attributes & TIMESTAMP_TYPE_MASK != 0 {
            TimestampType::LogAppendTime
        } else {
            TimestampType::CreateTime
        }
    }
}

/// Why a batch was rejected.
///
/// [`BatchError::error_code`] gives the Kafka error code to answer a producer with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BatchError {
    /// The buffer ends before the header or before `batchLength + 12` bytes.
    Truncated {
        /// Bytes the batch needs (61 for the header, else its total size).
        needed: usize,
        /// Bytes the buffer holds from the batch's start.
        available: usize,
    },
    /// `batchLength` is below 49 (a header without records) or does not fit in `usize`.
    InvalidLength(i32),
    /// The magic byte is not 2.
    UnsupportedMagic(i8),
    /// The stored CRC-32C does not match the bytes.
    CrcMismatch {
        /// CRC found in the header.
        stored: u32,
        /// CRC computed over bytes 21..end.
        computed: u32,
    },
    /// `recordsCount` is inconsistent with `lastOffsetDelta` (or negative).
    InvalidRecordCount {
        /// `recordsCount` as stored.
        count: i32,
        /// `lastOffsetDelta` as stored.
        last_offset_delta: i32,
    },
    /// The records of an uncompressed batch do not parse: bad varint, a field or record
    /// overrunning its bounds, an `offsetDelta` different from the record's index, a record
    /// count different from `recordsCount`, or bytes left over after the last record.
    InvalidRecord(&'static str),
    /// Attributes name compression codec 5, 6 or 7.
    UnknownCompression(u8),
    /// A compressed batch's records do not decompress, or decompress to more than the limit.
    Compressed(crate::compression::CodecError),
}

impl BatchError {
    /// Kafka error code for a produce response.
    ///
    /// Mapping, after Kafka's broker:
    /// - [`Truncated`](Self::Truncated), [`InvalidLength`](Self::InvalidLength),
    ///   [`CrcMismatch`](Self::CrcMismatch) → `CORRUPT_MESSAGE`: Kafka throws
    ///   `CorruptRecordException` for a size below the minimum overhead
    ///   (`ByteBufferLogInputStream`, `DefaultRecordBatch.ensureValid`) and for a checksum
    ///   mismatch (`ensureValid`, called from `UnifiedLog.analyzeAndValidateRecords`).
    /// - [`UnsupportedMagic`](Self::UnsupportedMagic) → `INVALID_RECORD`: Kafka's
    ///   `ProduceRequest.validateRecords` throws `InvalidRecordException` ("Produce requests
    ///   with version N are only allowed to contain record batches with magic version 2").
    ///   The magic byte is outside the CRC, so corruption and a wrong format cannot be told
    ///   apart anyway.
    /// - [`InvalidRecordCount`](Self::InvalidRecordCount) → `INVALID_RECORD`
    ///   (`LogValidator.validateBatch`: "Invalid reported count", "Inconsistent batch offset
    ///   range").
    /// - [`InvalidRecord`](Self::InvalidRecord) → `INVALID_RECORD`: inside a batch whose CRC
    ///   matched, Kafka reports bad record framing as `InvalidRecordException`
    ///   (`DefaultRecord.readFrom`: "Found invalid record structure", "Invalid record size";
    ///   `DefaultRecordBatch` record iterator: "Incorrect declared batch size"), which is not
    ///   retriable — retrying the same bytes cannot help.
    /// - [`UnknownCompression`](Self::UnknownCompression) → `CORRUPT_MESSAGE`: Kafka has no
    ///   dedicated path (`CompressionType.forId` throws `IllegalArgumentException`); the
    ///   attributes are undecodable, so treat them as damage.
    /// - [`Compressed`](Self::Compressed): a stream that does not decompress is damage
    ///   (`CORRUPT_MESSAGE`, as for a bad CRC); records that decompress beyond the broker's
    ///   limit are `INVALID_RECORD` (retrying cannot help). Records that decompress but do not
    ///   parse are [`InvalidRecord`](Self::InvalidRecord), as for uncompressed batches.
    pub fn error_code(&self) -> ErrorCode {
        match self {
            BatchError::Truncated { .. }
            | BatchError::InvalidLength(_)
            | BatchError::CrcMismatch { .. }
            | BatchError::UnknownCompression(_)
            | BatchError::Compressed(crate::compression::CodecError::Corrupt { .. }) => ErrorCode::CORRUPT_MESSAGE,
            BatchError::Compressed(_) => ErrorCode::INVALID_RECORD,
            BatchError::UnsupportedMagic(_) | BatchError::InvalidRecordCount { .. } | BatchError::InvalidRecord(_) => {
                ErrorCode::INVALID_RECORD
            }
        }
    }
}

impl fmt::Display for BatchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BatchError::Truncated { needed, available } => {
                write!(f, "record batch truncated: needs {needed} bytes, {available} available")
            }
            BatchError::InvalidLength(len) => {
                write!(f, "record batch length {len} is below the minimum {MIN_BATCH_LENGTH}")
            }
            BatchError::UnsupportedMagic(magic) => {
                write!(f, "record batch magic {magic} is not supported (only 2)")
            }
            BatchError::CrcMismatch { stored, computed } => {
                write!(f, "record batch is corrupt (stored crc = {stored:#010x}, computed crc = {computed:#010x})")
            }
            BatchError::InvalidRecordCount { count, last_offset_delta } => {
                write!(f, "record batch count {count} is inconsistent with last offset delta {last_offset_delta}")
            }
            BatchError::InvalidRecord(why) => write!(f, "invalid record in batch: {why}"),
            BatchError::UnknownCompression(id) => {
                write!(f, "record batch uses unknown compression codec {id}")
            }
            BatchError::Compressed(e) => write!(f, "compressed record batch: {e}"),
        }
    }
}

impl std::error::Error for BatchError {}

/// The header fields of a validated batch, copied out so the caller can drop the borrow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchInfo {
    /// Total size in bytes, `batchLength + 12`.
    pub total_len: usize,
    /// `baseOffset` as stored.
    pub base_offset: i64,
    /// `lastOffsetDelta`.
    pub last_offset_delta: i32,
    /// `recordsCount`.
    pub records_count: i32,
    /// `partitionLeaderEpoch`.
    pub partition_leader_epoch: i32,
    /// Raw attributes.
    pub attributes: i16,
    /// `baseTimestamp`.
    pub base_timestamp: i64,
    /// `maxTimestamp`.
    pub max_timestamp: i64,
    /// `producerId`.
    pub producer_id: i64,
    /// `producerEpoch`.
    pub producer_epoch: i16,
    /// `baseSequence`.
    pub base_sequence: i32,
}

impl BatchInfo {
    /// `base_offset + last_offset_delta` (wrapping if the base offset is absurd).
    pub fn last_offset(&self) -> i64 {
        self.base_offset.wrapping_add(i64::from(self.last_offset_delta))
    }
    /// `last_offset + 1`.
    pub fn next_offset(&self) -> i64 {
        self.last_offset().wrapping_add(1)
    }
    /// Compression codec from attributes bits 0-2.
    pub fn compression(&self) -> Compression {
        Compression::from_attributes(self.attributes)
    }
    /// Attributes bit 5.
    pub fn is_control(&self) -> bool {
        self.attributes & CONTROL_MASK != 0
    }
    /// Attributes bit 4.
    pub fn is_transactional(&self) -> bool {
        self.attributes & TRANSACTIONAL_MASK != 0
    }
    /// Timestamp type from attributes bit 3.
    pub fn timestamp_type(&self) -> TimestampType {
        TimestampType::from_attributes(self.attributes)
    }
}

impl From<&BatchHeader> for BatchInfo {
    fn from(header: &BatchHeader) -> BatchInfo {
        header.info()
    }
}

/// CRC-32C of `batch[21..total_len]`, where `total_len` comes from the batch's own header.
///
/// # Panics
/// If `batch` is shorter than its header says (call only on a batch whose length was checked).
pub fn compute_crc(batch: &[u8]) -> u32 {
    let total_len = BatchHeader::parse(batch).expect("compute_crc: buffer shorter than a batch header").total_len();
    crate::crc::crc32c(&batch[ATTRIBUTES_OFFSET..total_len])
}

/// Structural checks shared by both validation modes: header present, magic 2,
/// `batchLength` sane and covered by `buf`, CRC.
fn check_frame(buf: &[u8]) -> Result<&BatchHeader, BatchError> {
    let header = BatchHeader::parse(buf)?;
    // Magic first: with another magic the length field has another meaning, and naming the
    // format is the more useful diagnosis (e.g. a legacy v0/v1 message set).
    if header.magic() != MAGIC_V2 {
        return Err(BatchError::UnsupportedMagic(header.magic()));
    }
    let batch_length = header.batch_length();
    if batch_length < MIN_BATCH_LENGTH {
        return Err(BatchError::InvalidLength(batch_length));
    }
    let total_len = usize::try_from(batch_length)
        .ok()
        .and_then(|len| len.checked_add(LOG_OVERHEAD))
        .ok_or(BatchError::InvalidLength(batch_length))?;
    if total_len > buf.len() {
        return Err(BatchError::Truncated { needed: total_len, available: buf.len() });
    }
    let computed = crate::crc::crc32c(&buf[ATTRIBUTES_OFFSET..total_len]);
    if computed != header.crc() {
        return Err(BatchError::CrcMismatch { stored: header.crc(), computed });
    }
    Ok(header)
}

/// Validates the batch at the start of `buf` as read back from disk (crash recovery, segment
/// scans). `buf` may hold more bytes after the batch.
///
/// Checks, in order: 61 header bytes present ([`BatchError::Truncated`]), magic 2
/// ([`BatchError::UnsupportedMagic`]), `batchLength >= 49` ([`BatchError::InvalidLength`]),
/// the whole batch present ([`BatchError::Truncated`]), CRC ([`BatchError::CrcMismatch`]),
/// then `recordsCount >= 0`, `lastOffsetDelta >= 0` and
/// `recordsCount <= lastOffsetDelta + 1` ([`BatchError::InvalidRecordCount`]) — compaction
/// may leave fewer records than the offset range, or none.
///
/// Records are not walked and the compression codec is not checked: the CRC vouches that the
/// bytes are what the broker wrote after [`validate_from_client`] accepted them.
pub fn validate_stored(buf: &[u8]) -> Result<BatchInfo, BatchError> {
    let header = check_frame(buf)?;
    let count = header.records_count();
    let last_offset_delta = header.last_offset_delta();
    if count < 0 || last_offset_delta < 0 || i64::from(count) > i64::from(last_offset_delta) + 1 {
        return Err(BatchError::InvalidRecordCount { count, last_offset_delta });
    }
    Ok(header.info())
}

/// Validates the batch at the start of `buf` as received in a produce request. `buf` may
/// hold more bytes after the batch.
///
/// Everything [`validate_stored`] checks, plus:
/// - `recordsCount >= 1` and `recordsCount == lastOffsetDelta + 1`
///   ([`BatchError::InvalidRecordCount`], as Kafka's `LogValidator.validateBatch`);
/// - a known compression codec ([`BatchError::UnknownCompression`] for 5-7);
/// - for uncompressed batches, a walk over the records without allocating: each record's
///   length varint and every field parse within the record, each `offsetDelta` equals the
///   record's index (so offsets can be assigned in place by rewriting only `baseOffset`),
///   and exactly `recordsCount` records fill the batch ([`BatchError::InvalidRecord`]).
///
/// Compressed payloads are not inspected here; the log decompresses and walks them with
/// [`crate::compressed_batch::validate_compressed_records`].
///
/// Policy checks that depend on the topic or the request (control batches from clients,
/// `baseSequence` for idempotent producers, `baseOffset == 0`, one batch per partition,
/// timestamps, `max.message.bytes`) are the caller's.
pub fn validate_from_client(buf: &[u8]) -> Result<BatchInfo, BatchError> {
    let header = check_frame(buf)?;
    let count = header.records_count();
    let last_offset_delta = header.last_offset_delta();
    if count < 1 || i64::from(count) != i64::from(last_offset_delta) + 1 {
        return Err(BatchError::InvalidRecordCount { count, last_offset_delta });
    }
    match header.compression() {
        Compression::Unknown(id) => return Err(BatchError::UnknownCompression(id)),
        Compression::None => {
            walk_records(&buf[BATCH_HEADER_LEN..header.total_len()], count)?;
        }
        Compression::Gzip | Compression::Snappy | Compression::Lz4 | Compression::Zstd => {}
    }
    Ok(header.info())
}

/// Reads a zigzag varint (at most 5 bytes) at `*pos`, advancing `*pos`.
///
/// Matches Kafka's `ByteUtils.readVarint`: a continuation bit on the fifth byte is an error;
/// bits of the fifth byte beyond the 32 the value holds are ignored.
pub fn read_varint(buf: &[u8], pos: &mut usize) -> Option<i32> {
    let raw = read_unsigned_varint(buf, pos)?;
    Some(((raw >> 1) as i32) ^ -((raw & 1) as i32))
}

/// Reads an unsigned varint (at most 5 bytes; the lengths of the protocol's compact fields)
/// at `*pos`, advancing `*pos`. Matches Kafka's `ByteUtils.readUnsignedVarint`, with
/// [`read_varint`]'s limits.
pub fn read_unsigned_varint(buf: &[u8], pos: &mut usize) -> Option<u32> {
    let mut raw: u32 = 0;
    let mut shift = 0u32;
    loop {
        let byte = *buf.get(*pos)?;
        *pos += 1;
        if byte & 0x80 == 0 {
            raw |= u32::from(byte) << shift;
            break;
        }
        raw |= u32::from(byte & 0x7f) << shift;
        shift += 7;
        if shift > 28 {
            return None;
        }
    }
    Some(raw)
}

/// Reads a zigzag varlong (at most 10 bytes) at `*pos`, advancing `*pos`. Matches Kafka's
/// `ByteUtils.readVarlong`.
pub fn read_varlong(buf: &[u8], pos: &mut usize) -> Option<i64> {
    let mut raw: u64 = 0;
    let mut shift = 0u32;
    loop {
        let byte = *buf.get(*pos)?;
        *pos += 1;
        if byte & 0x80 == 0 {
            raw |= u64::from(byte) << shift;
            break;
        }
        raw |= u64::from(byte & 0x7f) << shift;
        shift += 7;
        if shift > 63 {
            return None;
        }
    }
    Some(((raw >> 1) as i64) ^ -((raw & 1) as i64))
}

/// Advances `*pos` by `len` bytes if that stays within `buf`.
fn skip(buf: &[u8], pos: &mut usize, len: usize) -> Option<()> {
    let end = pos.checked_add(len)?;
    if end > buf.len() {
        return None;
    }
    *pos = end;
    Some(())
}

/// Skips a nullable byte field: a varint length (negative = null, as Kafka reads it) then
/// that many bytes.
fn skip_nullable_bytes(body: &[u8], pos: &mut usize, what: &'static str) -> Result<(), BatchError> {
    let len = read_varint(body, pos).ok_or(BatchError::InvalidRecord(what))?;
    if let Ok(len) = usize::try_from(len) {
        skip(body, pos, len).ok_or(BatchError::InvalidRecord(what))?;
    }
    Ok(())
}

/// Walks the uncompressed records region of a batch without allocating.
pub(crate) fn walk_records(records: &[u8], count: i32) -> Result<(), BatchError> {
    let mut pos = 0usize;
    let mut index: i32 = 0;
    while pos < records.len() {
        if index == count {
            return Err(BatchError::InvalidRecord("bytes remain after the last record recordsCount announces"));
        }
        let len =
            read_varint(records, &mut pos).ok_or(BatchError::InvalidRecord("record length varint is malformed"))?;
        let len = usize::try_from(len).map_err(|_| BatchError::InvalidRecord("record length is negative"))?;
        let start = pos;
        skip(records, &mut pos, len).ok_or(BatchError::InvalidRecord("record overruns the batch"))?;
        check_record_body(&records[start..pos], index)?;
        index += 1;
    }
    if index != count {
        return Err(BatchError::InvalidRecord("batch holds fewer records than recordsCount"));
    }
    Ok(())
}

/// Checks that one record body (the bytes after its length varint) parses exactly.
fn check_record_body(body: &[u8], index: i32) -> Result<(), BatchError> {
    const STRUCTURE: BatchError = BatchError::InvalidRecord("record fields overrun the record");
    let mut pos = 0usize;
    // attributes: i8, unused in v2
    skip(body, &mut pos, 1).ok_or(STRUCTURE)?;
    read_varlong(body, &mut pos).ok_or(BatchError::InvalidRecord("record timestampDelta is malformed"))?;
    let offset_delta =
        read_varint(body, &mut pos).ok_or(BatchError::InvalidRecord("record offsetDelta is malformed"))?;
    if offset_delta != index {
        return Err(BatchError::InvalidRecord("record offsetDelta does not match its position in the batch"));
    }
    skip_nullable_bytes(body, &mut pos, "record key overruns the record")?;
    skip_nullable_bytes(body, &mut pos, "record value overruns the record")?;
    let headers = read_varint(body, &mut pos).ok_or(BatchError::InvalidRecord("record header count is malformed"))?;
    if headers < 0 {
        return Err(BatchError::InvalidRecord("record header count is negative"));
    }
    // Each iteration consumes at least two bytes or fails, so a huge count cannot spin.
    for _ in 0..headers {
        let key_len =
            read_varint(body, &mut pos).ok_or(BatchError::InvalidRecord("record header key length is malformed"))?;
        let key_len =
            usize::try_from(key_len).map_err(|_| BatchError::InvalidRecord("record header key length is negative"))?;
        skip(body, &mut pos, key_len).ok_or(BatchError::InvalidRecord("record header key overruns the record"))?;
        skip_nullable_bytes(body, &mut pos, "record header value overruns the record")?;
    }
    if pos != body.len() {
        return Err(BatchError::InvalidRecord("record length does not match the fields it holds"));
    }
    Ok(())
}

/// Which checks [`batches`] applies to each batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Validation {
    /// [`validate_stored`]: bytes read back from the log.
    Stored,
    /// [`validate_from_client`]: bytes from a produce request.
    FromClient,
}

/// Iterator over the batches concatenated in a buffer, validating each; see [`batches`].
#[derive(Clone, Debug)]
pub struct Batches<'a> {
    buf: &'a [u8],
    pos: usize,
    validation: Validation,
    failed: bool,
}

/// Iterates over the batches laid end to end in `buf` (a produce request's `records` field,
/// a segment read). Yields `(start position, info)` for each valid batch; on the first
/// invalid one (including a trailing partial batch, reported as
/// [`BatchError::Truncated`]) yields the error and then stops. An empty buffer yields
/// nothing.
///
/// The log uses this to validate every batch of a request before writing any of them.
pub fn batches(buf: &[u8], validation: Validation) -> Batches<'_> {
    Batches { buf, pos: 0, validation, failed: false }
}

impl Batches<'_> {
    /// Position of the next batch to be read; after an error, the start of the batch that
    /// failed. Equals the buffer length once every batch has been read.
    pub fn position(&self) -> usize {
        self.pos
    }
}

impl Iterator for Batches<'_> {
    type Item = Result<(usize, BatchInfo), BatchError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.pos >= self.buf.len() {
            return None;
        }
        let rest = &self.buf[self.pos..];
        let result = match self.validation {
            Validation::Stored => validate_stored(rest),
            Validation::FromClient => validate_from_client(rest),
        };
        match result {
            Ok(info) => {
                let start = self.pos;
                self.pos += info.total_len;
                Some(Ok((start, info)))
            }
            Err(err) => {
                self.failed = true;
                Some(Err(err))
            }
        }
    }
}

impl std::iter::FusedIterator for Batches<'_> {}

/// Stamps an accepted batch for the log, in place: sets `baseOffset` and
/// `partitionLeaderEpoch` (both outside the CRC, so it stays valid).
///
/// With `log_append_time_ms = Some(t)` also sets the LogAppendTime bit in attributes and
/// `maxTimestamp = t`, then recomputes the CRC — what Kafka's
/// `setMaxTimestamp(LOG_APPEND_TIME, t)` does (which likewise skips the CRC when nothing
/// changes). Other attribute bits are kept. With `None` the timestamps and attributes are
/// left as the producer sent them.
///
/// Bytes of `batch` after the batch's own length are not touched.
///
/// # Panics
/// If `batch` is shorter than its header says. The caller guarantees the batch passed
/// [`validate_from_client`] or [`validate_stored`]; debug builds check it.
pub fn assign_offsets(
    batch: &mut [u8],
    base_offset: i64,
    partition_leader_epoch: i32,
    log_append_time_ms: Option<i64>,
) {
    debug_assert_eq!(validate_stored(batch).err(), None, "assign_offsets on a batch that does not validate");
    let (header, _) = BatchHeader::mut_from_prefix(batch).expect("assign_offsets: buffer shorter than a batch header");
    header.base_offset.set(base_offset);
    header.partition_leader_epoch.set(partition_leader_epoch);
    let Some(time) = log_append_time_ms else {
        return;
    };
    let attributes = header.attributes.get() | TIMESTAMP_TYPE_MASK;
    if attributes == header.attributes.get() && header.max_timestamp.get() == time {
        return;
    }
    header.attributes.set(attributes);
    header.max_timestamp.set(time);
    let crc = compute_crc(batch);
    batch[CRC_OFFSET..ATTRIBUTES_OFFSET].copy_from_slice(&crc.to_be_bytes());
}

/// The first record of an uncompressed batch whose timestamp is `>= target_ms`, as (offset,
/// timestamp) — ListOffsets by time inside a multi-record batch, like Kafka. LogAppendTime
/// batches stamp every record with the batch's max timestamp. `None` when no record
/// qualifies, or the batch is compressed (the caller falls back to the batch as a whole) or
/// malformed. Never allocates.
pub fn first_record_at_or_after(batch: &[u8], target_ms: i64) -> Option<(i64, i64)> {
    let header = BatchHeader::parse(batch).ok()?;
    let total = header.total_len();
    if total > batch.len() || total < BATCH_HEADER_LEN {
        return None;
    }
    if header.timestamp_type() == TimestampType::LogAppendTime {
        return (header.max_timestamp() >= target_ms).then(|| (header.base_offset(), header.max_timestamp()));
    }
    if header.compression() != Compression::None {
        return None;
    }
    let records = &batch[BATCH_HEADER_LEN..total];
    let mut pos = 0usize;
    for _ in 0..header.records_count().max(0) {
        let len = read_varint(records, &mut pos)?;
        let start = pos;
        let body = records.get(start..start.checked_add(usize::try_from(len).ok()?)?)?;
        let mut at = 1usize; // attributes byte
        let timestamp_delta = read_varlong(body, &mut at)?;
        let offset_delta = read_varint(body, &mut at)?;
        let timestamp = header.base_timestamp().checked_add(timestamp_delta)?;
        if timestamp >= target_ms {
            return Some((header.base_offset() + offset_delta as i64, timestamp));
        }
        pos = start + body.len();
    }
    None
}

/// [`assign_offsets`] for a batch split into a private copy of its 61-byte header and its
/// untouched remainder (the records), so the append path can rewrite the header without
/// copying the records: the caller writes `header` then `rest`. With LogAppendTime the CRC is
/// recomputed as CRC-32C(header[21..]) extended over `rest`.
pub fn assign_offsets_split(
    header: &mut [u8; BATCH_HEADER_LEN],
    rest: &[u8],
    base_offset: i64,
    partition_leader_epoch: i32,
    log_append_time_ms: Option<i64>,
) {
    let (h, _) = BatchHeader::mut_from_prefix(&mut header[..]).expect("61 bytes hold a header");
    debug_assert_eq!(h.batch_length.get() as usize + LOG_OVERHEAD, BATCH_HEADER_LEN + rest.len());
    h.base_offset.set(base_offset);
    h.partition_leader_epoch.set(partition_leader_epoch);
    let Some(time) = log_append_time_ms else {
        return;
    };
    let attributes = h.attributes.get() | TIMESTAMP_TYPE_MASK;
    if attributes == h.attributes.get() && h.max_timestamp.get() == time {
        return;
    }
    h.attributes.set(attributes);
    h.max_timestamp.set(time);
    let crc = crate::crc::crc32c_of_parts(&header[ATTRIBUTES_OFFSET..], rest);
    header[CRC_OFFSET..ATTRIBUTES_OFFSET].copy_from_slice(&crc.to_be_bytes());
}

// Encoding (tests, benchmarks and the bench's producers): see `crate::record_encoding`.
#[cfg(test)]
use crate::record_encoding::varint_len;
pub use crate::record_encoding::{
    build_batch, build_batch_of_size, build_batch_with_timestamps, reframe, set_producer, set_transactional_producer,
    HeaderSpec, RecordSpec,
};
pub(crate) use crate::record_encoding::{
    finish_batch, put_nullable, put_record_at, put_varint, put_varlong, record_body_len_at,
};

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Sarama's `record_test.go` "uncompressed record" batch: one record with timestamp
    /// delta 5 ms, key [1,2,3,4], value [5,6,7], header [8,9,10] = [11,12]; producer
    /// id/epoch/sequence 0, max timestamp 0.
    const SARAMA_UNCOMPRESSED: [u8; 82] = [
        0, 0, 0, 0, 0, 0, 0, 0, // base offset
        0, 0, 0, 70, // length
        0, 0, 0, 0, // partition leader epoch
        2, // magic
        84, 121, 97, 253, // crc
        0, 0, // attributes
        0, 0, 0, 0, // last offset delta
        0, 0, 1, 88, 141, 205, 89, 56, // base timestamp
        0, 0, 0, 0, 0, 0, 0, 0, // max timestamp
        0, 0, 0, 0, 0, 0, 0, 0, // producer id
        0, 0, // producer epoch
        0, 0, 0, 0, // base sequence
        0, 0, 0, 1, // records count
        40, 0, 10, 0, 8, 1, 2, 3, 4, 6, 5, 6, 7, 2, 6, 8, 9, 10, 4, 11, 12,
    ];

    /// Sarama's "gzipped record" batch (same record, gzip codec).
    const SARAMA_GZIP: [u8; 107] = [
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 95, 0, 0, 0, 0, 2, 231, 74, 206, 165, 0, 1, 0, 0, 0, 0, 0, 0, 1, 88, 141, 205,
        89, 56, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 31, 139, 8, 0, 0, 9, 110,
        136, 0, 255, 0, 21, 0, 234, 255, 40, 0, 10, 0, 8, 1, 2, 3, 4, 6, 5, 6, 7, 2, 6, 8, 9, 10, 4, 11, 12, 3, 0, 173,
        201, 88, 103, 21, 0, 0, 0,
    ];

    /// Sarama's "empty record" and "control batch" batches (no records).
    fn sarama_empty(control: bool) -> Vec<u8> {
        let mut b = vec![0u8; 61];
        b[11] = 49;
        b[16] = 2;
        if control {
            b[17..21].copy_from_slice(&[81, 46, 67, 217]);
            b[22] = 32;
        } else {
            b[17..21].copy_from_slice(&[89, 95, 183, 221]);
        }
        b
    }

    fn fix_crc(batch: &mut [u8]) {
        let crc = compute_crc(batch);
        batch[17..21].copy_from_slice(&crc.to_be_bytes());
    }

    fn set_i32(batch: &mut [u8], at: usize, v: i32) {
        batch[at..at + 4].copy_from_slice(&v.to_be_bytes());
    }

    fn set_i16(batch: &mut [u8], at: usize, v: i16) {
        batch[at..at + 2].copy_from_slice(&v.to_be_bytes());
    }

    fn sample() -> Vec<u8> {
        build_batch(
            0,
            &[
                (Some(b"k0"), Some(b"v0"), &[]),
                (None, Some(b"value-1"), &[(b"h", Some(b"hv")), (b"n", None)]),
                (Some(b""), None, &[]),
            ],
            1_700_000_000_000,
        )
    }

    /// An owned record decoded by an independent, allocating reader (tests only).
    type Decoded = (i64, i32, Option<Vec<u8>>, Option<Vec<u8>>, Vec<(Vec<u8>, Option<Vec<u8>>)>);

    fn decode_records(batch: &[u8]) -> Vec<Decoded> {
        fn bytes(b: &[u8], pos: &mut usize) -> Option<Vec<u8>> {
            let len = read_varint(b, pos).unwrap();
            (len >= 0).then(|| {
                let v = b[*pos..*pos + len as usize].to_vec();
                *pos += len as usize;
                v
            })
        }
        let header = BatchHeader::parse(batch).unwrap();
        let recs = &batch[61..header.total_len()];
        let mut pos = 0;
        let mut out = Vec::new();
        while pos < recs.len() {
            let len = read_varint(recs, &mut pos).unwrap() as usize;
            let body = &recs[pos..pos + len];
            pos += len;
            let mut p = 1;
            let ts = read_varlong(body, &mut p).unwrap();
            let od = read_varint(body, &mut p).unwrap();
            let k = bytes(body, &mut p);
            let v = bytes(body, &mut p);
            let n = read_varint(body, &mut p).unwrap();
            let mut hs = Vec::new();
            for _ in 0..n {
                let hk = bytes(body, &mut p).unwrap();
                let hv = bytes(body, &mut p);
                hs.push((hk, hv));
            }
            assert_eq!(p, body.len());
            out.push((ts, od, k, v, hs));
        }
        out
    }

    #[test]
    fn crc32c_check_value() {
        assert_eq!(crate::crc::crc32c(b"123456789"), 0xE306_9283);
    }

    #[test]
    fn header_layout_offsets() {
        let mut b = vec![0u8; 61];
        b[0..8].copy_from_slice(&0x0102_0304_0506_0708i64.to_be_bytes());
        set_i32(&mut b, 8, 11);
        set_i32(&mut b, 12, 12);
        b[16] = 13;
        b[17..21].copy_from_slice(&0xdead_beefu32.to_be_bytes());
        set_i16(&mut b, 21, 0x0035);
        set_i32(&mut b, 23, 14);
        b[27..35].copy_from_slice(&15i64.to_be_bytes());
        b[35..43].copy_from_slice(&16i64.to_be_bytes());
        b[43..51].copy_from_slice(&17i64.to_be_bytes());
        set_i16(&mut b, 51, 18);
        set_i32(&mut b, 53, 19);
        set_i32(&mut b, 57, 20);
        let h = BatchHeader::parse(&b).unwrap();
        assert_eq!(h.base_offset(), 0x0102_0304_0506_0708);
        assert_eq!(h.batch_length(), 11);
        assert_eq!(h.total_len(), 23);
        assert_eq!(h.partition_leader_epoch(), 12);
        assert_eq!(h.magic(), 13);
        assert_eq!(h.crc(), 0xdead_beef);
        assert_eq!(h.attributes(), 0x35);
        assert_eq!(h.compression(), Compression::Unknown(5));
        assert_eq!(h.timestamp_type(), TimestampType::CreateTime);
        assert!(h.is_transactional());
        assert!(h.is_control());
        assert!(!h.has_delete_horizon());
        assert_eq!(h.last_offset_delta(), 14);
        assert_eq!(h.last_offset(), 0x0102_0304_0506_0708 + 14);
        assert_eq!(h.next_offset(), 0x0102_0304_0506_0708 + 15);
        assert_eq!(h.base_timestamp(), 15);
        assert_eq!(h.max_timestamp(), 16);
        assert_eq!(h.producer_id(), 17);
        assert_eq!(h.producer_epoch(), 18);
        assert_eq!(h.base_sequence(), 19);
        assert_eq!(h.records_count(), 20);
        assert!(format!("{h:?}").contains("records_count: 20"));
        set_i32(&mut b, 8, -5);
        assert_eq!(BatchHeader::parse(&b).unwrap().total_len(), 0);
        assert_eq!(BatchHeader::parse(&b[..60]).unwrap_err(), BatchError::Truncated { needed: 61, available: 60 });
    }

    #[test]
    fn compression_and_timestamp_type_decode() {
        let expect = [
            Compression::None,
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
            Compression::Unknown(5),
            Compression::Unknown(6),
            Compression::Unknown(7),
        ];
        for (id, c) in expect.iter().enumerate() {
            assert_eq!(Compression::from_attributes(id as i16 | 0x7f00), *c);
            assert_eq!(c.id(), id as u8);
        }
        assert_eq!(TimestampType::from_attributes(0x08), TimestampType::LogAppendTime);
        assert_eq!(TimestampType::from_attributes(0x77), TimestampType::CreateTime);
    }

    #[test]
    fn sarama_reference_batch_validates() {
        let info = validate_from_client(&SARAMA_UNCOMPRESSED).unwrap();
        assert_eq!(info.total_len, 82);
        assert_eq!(info.records_count, 1);
        assert_eq!(info.base_timestamp, 1_479_847_795_000);
        assert_eq!(info.compression(), Compression::None);
        assert_eq!(compute_crc(&SARAMA_UNCOMPRESSED), 0x5479_61fd);
        let recs = decode_records(&SARAMA_UNCOMPRESSED);
        assert_eq!(recs.len(), 1);
        assert_eq!(recs[0].0, 5);
        assert_eq!(recs[0].2.as_deref(), Some(&[1u8, 2, 3, 4][..]));

        let gz = validate_from_client(&SARAMA_GZIP).unwrap();
        assert_eq!(gz.compression(), Compression::Gzip);
        assert_eq!(gz.total_len, SARAMA_GZIP.len());

        for control in [false, true] {
            let b = sarama_empty(control);
            let info = validate_stored(&b).unwrap();
            assert_eq!(info.records_count, 0);
            assert_eq!(info.is_control(), control);
            assert!(matches!(validate_from_client(&b), Err(BatchError::InvalidRecordCount { count: 0, .. })));
        }
    }

    #[test]
    fn builder_matches_sarama_reference_bytes() {
        let headers: &[HeaderSpec<'_>] = &[(&[8, 9, 10], Some(&[11, 12]))];
        let mut b = build_batch(0, &[(Some(&[1, 2, 3, 4]), Some(&[5, 6, 7]), headers)], 1_479_847_795_000);
        assert_eq!(b.len(), SARAMA_UNCOMPRESSED.len());
        // Align the fields where the builder's defaults differ from sarama's test batch.
        set_i32(&mut b, 12, 0); // partition leader epoch (outside the CRC)
        b[35..43].copy_from_slice(&0i64.to_be_bytes()); // max timestamp
        b[43..51].copy_from_slice(&0i64.to_be_bytes()); // producer id
        set_i16(&mut b, 51, 0); // producer epoch
        set_i32(&mut b, 53, 0); // base sequence
        assert_eq!(b[63], 0, "builder writes timestamp delta 0");
        b[63] = 10; // timestamp delta 5 (zigzag)
        fix_crc(&mut b);
        assert_eq!(b, SARAMA_UNCOMPRESSED);
    }

    #[test]
    fn round_trip() {
        let b = sample();
        let info = validate_stored(&b).unwrap();
        assert_eq!(validate_from_client(&b).unwrap(), info);
        assert_eq!(info.total_len, b.len());
        assert_eq!(info.base_offset, 0);
        assert_eq!(info.records_count, 3);
        assert_eq!(info.last_offset_delta, 2);
        assert_eq!(info.last_offset(), 2);
        assert_eq!(info.next_offset(), 3);
        assert_eq!(info.partition_leader_epoch, -1);
        assert_eq!(info.producer_id, -1);
        assert_eq!(info.producer_epoch, -1);
        assert_eq!(info.base_sequence, -1);
        assert_eq!(info.base_timestamp, 1_700_000_000_000);
        assert_eq!(info.max_timestamp, 1_700_000_000_000);
        assert_eq!(info.compression(), Compression::None);
        assert_eq!(info.timestamp_type(), TimestampType::CreateTime);
        assert!(!info.is_control());
        assert!(!info.is_transactional());
        let h = BatchHeader::parse(&b).unwrap();
        assert_eq!(BatchInfo::from(h), info);
        assert_eq!(h.crc(), compute_crc(&b));

        let recs = decode_records(&b);
        assert_eq!(recs.len(), 3);
        assert_eq!(recs[0].2.as_deref(), Some(&b"k0"[..]));
        assert_eq!(recs[1].2, None);
        assert_eq!(recs[1].3.as_deref(), Some(&b"value-1"[..]));
        assert_eq!(recs[1].4, vec![(b"h".to_vec(), Some(b"hv".to_vec())), (b"n".to_vec(), None)]);
        assert_eq!(recs[2].2.as_deref(), Some(&b""[..]));
        assert_eq!(recs[2].3, None);
        for (i, r) in recs.iter().enumerate() {
            assert_eq!(r.0, 0);
            assert_eq!(r.1, i as i32);
        }

        // Trailing bytes after the batch are not part of it.
        let mut longer = b.clone();
        longer.extend_from_slice(&[0xff; 17]);
        assert_eq!(validate_from_client(&longer).unwrap(), info);
    }

    #[test]
    fn empty_builder_batch_is_stored_only() {
        let b = build_batch(7, &[], 3);
        assert_eq!(b.len(), 61);
        let info = validate_stored(&b).unwrap();
        assert_eq!((info.records_count, info.last_offset_delta), (0, 0));
        assert!(validate_from_client(&b).is_err());
    }

    #[test]
    fn build_batch_of_size_validates() {
        for (n, len) in [(1, 0), (1, 1000), (100, 10), (300, 200)] {
            let b = build_batch_of_size(42, n, len, 5);
            let info = validate_from_client(&b).unwrap();
            assert_eq!(info.records_count as usize, n);
            assert_eq!(info.base_offset, 42);
            assert_eq!(info.total_len, b.len());
            let recs = decode_records(&b);
            assert!(recs.iter().all(|r| r.2.is_none() && r.3.as_ref().unwrap().len() == len));
        }
    }

    #[test]
    fn batch_length_too_small() {
        for len in [48, 0, -1, i32::MIN] {
            let mut b = sample();
            set_i32(&mut b, 8, len);
            assert_eq!(validate_stored(&b), Err(BatchError::InvalidLength(len)));
            assert_eq!(validate_from_client(&b), Err(BatchError::InvalidLength(len)));
        }
    }

    #[test]
    fn batch_length_too_large() {
        let b = sample();
        let total = b.len();
        for extra in [1, 1000, i32::MAX as usize - (total - 12)] {
            let mut c = b.clone();
            set_i32(&mut c, 8, (total - 12 + extra) as i32);
            assert_eq!(validate_stored(&c), Err(BatchError::Truncated { needed: total + extra, available: total }));
        }
        // With bytes available after the batch, a larger length pulls them into the CRC.
        let mut c = b.clone();
        c.push(0);
        set_i32(&mut c, 8, (total - 11) as i32);
        assert!(matches!(validate_stored(&c), Err(BatchError::CrcMismatch { .. })));
        // And a smaller one leaves bytes out of it.
        let mut c = b.clone();
        set_i32(&mut c, 8, (total - 13) as i32);
        assert!(matches!(validate_stored(&c), Err(BatchError::CrcMismatch { .. })));
        // If the CRC is made to match, the record walk still catches the cut.
        fix_crc(&mut c);
        assert!(validate_stored(&c).is_ok());
        assert!(matches!(validate_from_client(&c), Err(BatchError::InvalidRecord(_))));
    }

    #[test]
    fn unsupported_magic() {
        for magic in [0i8, 1, 3, -1, 127] {
            let mut b = sample();
            b[16] = magic as u8;
            assert_eq!(validate_stored(&b), Err(BatchError::UnsupportedMagic(magic)));
            assert_eq!(validate_from_client(&b), Err(BatchError::UnsupportedMagic(magic)));
        }
    }

    #[test]
    fn every_crc_covered_bit_flip_is_caught() {
        let b = sample();
        for i in 17..b.len() {
            for bit in [0x01u8, 0x80] {
                let mut c = b.clone();
                c[i] ^= bit;
                let err = validate_stored(&c).unwrap_err();
                assert!(matches!(err, BatchError::CrcMismatch { .. }), "byte {i}: {err:?}");
                assert_eq!(validate_from_client(&c).unwrap_err(), err);
                assert_eq!(err.error_code(), ErrorCode::CORRUPT_MESSAGE);
            }
        }
    }

    #[test]
    fn fields_outside_crc_do_not_affect_it() {
        let mut b = sample();
        b[0..8].copy_from_slice(&i64::MAX.to_be_bytes());
        set_i32(&mut b, 12, -77);
        let info = validate_from_client(&b).unwrap();
        assert_eq!(info.base_offset, i64::MAX);
        assert_eq!(info.partition_leader_epoch, -77);
        // Garbage offsets must not panic the helpers.
        assert_eq!(info.last_offset(), i64::MAX.wrapping_add(2));
        let _ = info.next_offset();
    }

    #[test]
    fn count_and_last_offset_delta_consistency() {
        // (count, last_offset_delta, stored ok, client ok)
        let cases = [
            (3, 2, true, true),
            (4, 2, false, false),  // more records than offsets
            (2, 2, true, false),   // compaction removed one
            (0, 2, true, false),   // compaction removed all
            (-1, 2, false, false), // negative count
            (i32::MIN, 2, false, false),
            (3, -1, false, false), // negative delta
            (0, -1, false, false),
            (i32::MAX, i32::MAX - 1, true, false), // consistent, but the records are not there
            (i32::MAX, i32::MAX, true, false),
        ];
        for (count, lod, stored_ok, client_ok) in cases {
            let mut b = sample();
            set_i32(&mut b, 57, count);
            set_i32(&mut b, 23, lod);
            fix_crc(&mut b);
            let stored = validate_stored(&b);
            assert_eq!(stored.is_ok(), stored_ok, "{count} {lod}: {stored:?}");
            if !stored_ok {
                assert_eq!(stored, Err(BatchError::InvalidRecordCount { count, last_offset_delta: lod }));
            }
            let client = validate_from_client(&b);
            assert_eq!(client.is_ok(), client_ok, "{count} {lod}: {client:?}");
            if let Err(e) = client {
                assert_eq!(e.error_code(), ErrorCode::INVALID_RECORD);
            }
        }
        // Count and delta agree but exceed the records present: the walk notices.
        let mut b = sample();
        set_i32(&mut b, 57, 4);
        set_i32(&mut b, 23, 3);
        fix_crc(&mut b);
        assert!(validate_stored(&b).is_ok());
        assert_eq!(
            validate_from_client(&b),
            Err(BatchError::InvalidRecord("batch holds fewer records than recordsCount"))
        );
        // Fewer announced than present: bytes remain.
        let mut b = sample();
        set_i32(&mut b, 57, 2);
        set_i32(&mut b, 23, 1);
        fix_crc(&mut b);
        assert!(matches!(validate_from_client(&b), Err(BatchError::InvalidRecord(_))));
    }

    #[test]
    fn truncation_at_every_length() {
        let b = sample();
        for len in 0..b.len() {
            let cut = &b[..len];
            let needed = if len < 61 { 61 } else { b.len() };
            let expect = Err(BatchError::Truncated { needed, available: len });
            assert_eq!(validate_stored(cut), expect, "len {len}");
            assert_eq!(validate_from_client(cut), expect, "len {len}");
            let mut it = batches(cut, Validation::FromClient);
            if len == 0 {
                assert!(it.next().is_none());
            } else {
                assert_eq!(it.next().map(|r| r.map(|(_, info)| info)), Some(expect));
                assert!(it.next().is_none());
            }
        }
    }

    #[test]
    fn assign_offsets_without_log_append_time() {
        let mut b = sample();
        let before = validate_from_client(&b).unwrap();
        let crc = BatchHeader::parse(&b).unwrap().crc();
        assign_offsets(&mut b, 1_000, 9, None);
        let h = BatchHeader::parse(&b).unwrap();
        assert_eq!(h.crc(), crc);
        assert_eq!(h.base_offset(), 1_000);
        assert_eq!(h.partition_leader_epoch(), 9);
        assert_eq!(h.last_offset(), 1_002);
        let after = validate_from_client(&b).unwrap();
        assert_eq!(after.timestamp_type(), TimestampType::CreateTime);
        assert_eq!(after.max_timestamp, before.max_timestamp);
        assert_eq!(after.attributes, before.attributes);
        assert_eq!(&b[21..], &sample()[21..]);
    }

    #[test]
    fn assign_offsets_with_log_append_time() {
        let mut b = sample();
        // A transactional batch: other attribute bits must survive.
        set_i16(&mut b, 21, TRANSACTIONAL_MASK);
        fix_crc(&mut b);
        let old_crc = BatchHeader::parse(&b).unwrap().crc();
        let trailing = [0xaau8; 5];
        b.extend_from_slice(&trailing);
        assign_offsets(&mut b, 5, 3, Some(1_234_567));
        assert_eq!(&b[b.len() - 5..], &trailing);
        let info = validate_from_client(&b).unwrap();
        assert_ne!(BatchHeader::parse(&b).unwrap().crc(), old_crc);
        assert_eq!(info.base_offset, 5);
        assert_eq!(info.partition_leader_epoch, 3);
        assert_eq!(info.timestamp_type(), TimestampType::LogAppendTime);
        assert_eq!(info.max_timestamp, 1_234_567);
        assert_eq!(info.base_timestamp, 1_700_000_000_000);
        assert!(info.is_transactional());
        assert_eq!(info.compression(), Compression::None);

        // Re-stamping with the same time changes nothing covered by the CRC.
        let snapshot = b.clone();
        assign_offsets(&mut b, 6, 4, Some(1_234_567));
        assert_eq!(&b[16..], &snapshot[16..]);
        assert!(validate_from_client(&b).is_ok());
        // A different time recomputes again.
        assign_offsets(&mut b, 6, 4, Some(7));
        assert_eq!(validate_stored(&b).unwrap().max_timestamp, 7);
    }

    #[test]
    fn concatenated_batches_iterate() {
        let a = sample();
        let b = build_batch_of_size(0, 5, 10, 1);
        let c = build_batch(0, &[(None, Some(b"x"), &[])], 2);
        let mut buf = Vec::new();
        buf.extend_from_slice(&a);
        buf.extend_from_slice(&b);
        buf.extend_from_slice(&c);
        for mode in [Validation::Stored, Validation::FromClient] {
            let mut it = batches(&buf, mode);
            let got: Vec<_> = it.by_ref().map(|r| r.unwrap()).collect();
            assert_eq!(got.len(), 3);
            assert_eq!(got[0].0, 0);
            assert_eq!(got[1].0, a.len());
            assert_eq!(got[2].0, a.len() + b.len());
            assert_eq!(got.iter().map(|g| g.1.records_count).collect::<Vec<_>>(), vec![3, 5, 1]);
            assert_eq!(it.position(), buf.len());
            assert!(it.next().is_none());
        }
        assert_eq!(batches(&[], Validation::Stored).count(), 0);

        // Second batch corrupt: first yields, then the error, then nothing.
        let mut bad = buf.clone();
        bad[a.len() + 30] ^= 1;
        let mut it = batches(&bad, Validation::FromClient);
        assert!(it.next().unwrap().is_ok());
        assert!(matches!(it.next(), Some(Err(BatchError::CrcMismatch { .. }))));
        assert_eq!(it.position(), a.len());
        assert!(it.next().is_none());
        assert!(it.next().is_none());

        // A trailing partial batch is an error, not silently dropped.
        let mut partial = buf.clone();
        partial.extend_from_slice(&a[..70]);
        let results: Vec<_> = batches(&partial, Validation::Stored).collect();
        assert_eq!(results.len(), 4);
        assert_eq!(results[3], Err(BatchError::Truncated { needed: a.len(), available: 70 }));

        // The stored walk accepts a batch the client walk refuses.
        let mut compacted = sample();
        set_i32(&mut compacted, 57, 1);
        fix_crc(&mut compacted);
        assert!(batches(&compacted, Validation::Stored).all(|r| r.is_ok()));
        assert!(batches(&compacted, Validation::FromClient).any(|r| r.is_err()));
    }

    /// Offset of the first record's body within a batch from `sample()`-like builders:
    /// returns (length varint position, body start, body len) of record `n`.
    fn record_at(batch: &[u8], n: usize) -> (usize, usize, usize) {
        let mut pos = 61;
        let mut i = 0;
        loop {
            let at = pos;
            let len = read_varint(batch, &mut pos).unwrap() as usize;
            if i == n {
                return (at, pos, len);
            }
            pos += len;
            i += 1;
        }
    }

    #[test]
    fn record_walk_catches_wrong_offset_delta() {
        let mut b = sample();
        let (_, body, _) = record_at(&b, 1);
        // body: attributes, timestampDelta (1 byte), offsetDelta (1 byte)
        assert_eq!(b[body + 2], 2, "zigzag(1)");
        b[body + 2] = 4; // offsetDelta 2 at index 1
        fix_crc(&mut b);
        assert!(validate_stored(&b).is_ok());
        let err = validate_from_client(&b).unwrap_err();
        assert_eq!(err, BatchError::InvalidRecord("record offsetDelta does not match its position in the batch"));
        assert_eq!(err.error_code(), ErrorCode::INVALID_RECORD);

        // Negative offset delta on the first record.
        let mut b = sample();
        let (_, body, _) = record_at(&b, 0);
        b[body + 2] = 1; // zigzag(-1)
        fix_crc(&mut b);
        assert!(matches!(validate_from_client(&b), Err(BatchError::InvalidRecord(_))));
    }

    #[test]
    fn record_walk_catches_length_overrun_and_mismatch() {
        // Last record's length runs past the end of the batch.
        let mut b = sample();
        let (at, _, len) = record_at(&b, 2);
        b[at] = ((len as u8) + 1) << 1;
        fix_crc(&mut b);
        assert_eq!(validate_from_client(&b), Err(BatchError::InvalidRecord("record overruns the batch")));

        // Middle record's length one byte long: its fields do not fill it.
        let mut b = sample();
        let (at, _, len) = record_at(&b, 1);
        b[at] = ((len as u8) + 1) << 1;
        fix_crc(&mut b);
        assert!(matches!(validate_from_client(&b), Err(BatchError::InvalidRecord(_))));

        // One byte short: the last field overruns the record.
        let mut b = sample();
        let (at, _, len) = record_at(&b, 0);
        b[at] = ((len as u8) - 1) << 1;
        fix_crc(&mut b);
        assert!(matches!(validate_from_client(&b), Err(BatchError::InvalidRecord(_))));

        // Negative record length.
        let mut b = sample();
        let (at, _, _) = record_at(&b, 0);
        b[at] = 1; // zigzag(-1)
        fix_crc(&mut b);
        assert_eq!(validate_from_client(&b), Err(BatchError::InvalidRecord("record length is negative")));

        // Key length larger than the record.
        let mut b = sample();
        let (_, body, _) = record_at(&b, 0);
        assert_eq!(b[body + 3], 4, "zigzag(2) key length");
        b[body + 3] = 100;
        fix_crc(&mut b);
        assert_eq!(validate_from_client(&b), Err(BatchError::InvalidRecord("record key overruns the record")));

        // Malformed (over-long) varint in the record length.
        let mut b = sample();
        let (at, _, _) = record_at(&b, 0);
        b[at] = 0xff;
        fix_crc(&mut b);
        assert!(matches!(validate_from_client(&b), Err(BatchError::InvalidRecord(_))));
    }

    #[test]
    fn record_walk_catches_trailing_garbage() {
        for garbage in [&[0u8][..], &[0, 0, 0], &[0x80], &[2, 0]] {
            let mut b = sample();
            b.extend_from_slice(garbage);
            let len = b.len() as i32 - 12;
            set_i32(&mut b, 8, len);
            fix_crc(&mut b);
            assert!(validate_stored(&b).is_ok());
            let err = validate_from_client(&b).unwrap_err();
            assert!(matches!(err, BatchError::InvalidRecord(_)), "{err:?}");
        }
    }

    #[test]
    fn header_fields_in_records_are_checked() {
        // Record 1 holds headers; make the header count negative.
        let mut b = sample();
        let (_, body, len) = record_at(&b, 1);
        // Find the header-count byte: attributes, ts, od, key(null: 1), value(1 + 7).
        let hc = body + 1 + 1 + 1 + 1 + 1 + 7;
        assert_eq!(b[hc], 4, "zigzag(2) headers");
        b[hc] = 1;
        fix_crc(&mut b);
        assert_eq!(validate_from_client(&b), Err(BatchError::InvalidRecord("record header count is negative")));
        // Header count too large for the bytes present.
        let mut b = sample();
        b[hc] = 0x7e; // 63
        fix_crc(&mut b);
        assert!(matches!(validate_from_client(&b), Err(BatchError::InvalidRecord(_))));
        // Negative header key length.
        let mut b = sample();
        assert_eq!(b[hc + 1], 2, "zigzag(1) key length");
        b[hc + 1] = 1;
        fix_crc(&mut b);
        assert_eq!(validate_from_client(&b), Err(BatchError::InvalidRecord("record header key length is negative")));
        assert!(hc + 1 < body + len);
    }

    #[test]
    fn compressed_batches_get_header_checks_only() {
        let mut b = sample();
        for codec in 1..=4i16 {
            set_i16(&mut b, 21, codec);
            // Replace the records with bytes that are not records at all.
            for byte in &mut b[61..] {
                *byte = 0xff;
            }
            fix_crc(&mut b);
            let info = validate_from_client(&b).unwrap();
            assert_eq!(info.compression().id(), codec as u8);
        }
        for codec in 5..=7i16 {
            set_i16(&mut b, 21, codec);
            fix_crc(&mut b);
            assert!(validate_stored(&b).is_ok());
            let err = validate_from_client(&b).unwrap_err();
            assert_eq!(err, BatchError::UnknownCompression(codec as u8));
            assert_eq!(err.error_code(), ErrorCode::CORRUPT_MESSAGE);
        }
    }

    #[test]
    fn varints_match_kafka() {
        fn rv(b: &[u8]) -> Option<(i32, usize)> {
            let mut p = 0;
            read_varint(b, &mut p).map(|v| (v, p))
        }
        fn rl(b: &[u8]) -> Option<(i64, usize)> {
            let mut p = 0;
            read_varlong(b, &mut p).map(|v| (v, p))
        }
        assert_eq!(rv(&[0]), Some((0, 1)));
        assert_eq!(rv(&[1]), Some((-1, 1)));
        assert_eq!(rv(&[2]), Some((1, 1)));
        assert_eq!(rv(&[0x7f]), Some((-64, 1)));
        assert_eq!(rv(&[0x80, 0x01]), Some((64, 2)));
        assert_eq!(rv(&[0xfe, 0xff, 0xff, 0xff, 0x0f]), Some((i32::MAX, 5)));
        assert_eq!(rv(&[0xff, 0xff, 0xff, 0xff, 0x0f]), Some((i32::MIN, 5)));
        // Kafka ignores bits of the fifth byte above bit 31.
        assert_eq!(rv(&[0xfe, 0xff, 0xff, 0xff, 0x7f]), Some((i32::MAX, 5)));
        assert_eq!(rv(&[0x80, 0x80, 0x80, 0x80, 0x80, 0x00]), None);
        assert_eq!(rv(&[0x80]), None);
        assert_eq!(rv(&[]), None);
        assert_eq!(rl(&[0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]), Some((i64::MAX, 10)));
        assert_eq!(rl(&[0x80; 10]), None);
        assert_eq!(rl(&[0x81, 0x01]), Some((-65, 2)));
        for v in [0, 1, -1, 63, -64, 64, 1 << 20, i32::MAX, i32::MIN] {
            let mut out = Vec::new();
            put_varint(&mut out, v);
            assert_eq!(out.len(), varint_len(v));
            assert_eq!(rv(&out), Some((v, out.len())));
        }
        for v in [0, -1, i64::MAX, i64::MIN, 1 << 40] {
            let mut out = Vec::new();
            put_varlong(&mut out, v);
            assert_eq!(rl(&out), Some((v, out.len())));
        }
    }

    #[test]
    fn error_codes_and_display() {
        let cases = [
            (BatchError::Truncated { needed: 61, available: 3 }, ErrorCode::CORRUPT_MESSAGE),
            (BatchError::InvalidLength(3), ErrorCode::CORRUPT_MESSAGE),
            (BatchError::CrcMismatch { stored: 1, computed: 2 }, ErrorCode::CORRUPT_MESSAGE),
            (BatchError::UnknownCompression(5), ErrorCode::CORRUPT_MESSAGE),
            (BatchError::UnsupportedMagic(1), ErrorCode::INVALID_RECORD),
            (BatchError::InvalidRecordCount { count: 0, last_offset_delta: 0 }, ErrorCode::INVALID_RECORD),
            (BatchError::InvalidRecord("x"), ErrorCode::INVALID_RECORD),
        ];
        for (err, code) in cases {
            assert_eq!(err.error_code(), code, "{err:?}");
            let shown = err.to_string();
            assert!(!shown.is_empty());
            let _: &dyn std::error::Error = &err;
        }
    }

    fn bytes_field() -> impl Strategy<Value = Option<Vec<u8>>> {
        prop::option::of(prop::collection::vec(any::<u8>(), 0..200))
    }

    type OwnedRecord = (Option<Vec<u8>>, Option<Vec<u8>>, Vec<(Vec<u8>, Option<Vec<u8>>)>);

    fn record_strategy() -> impl Strategy<Value = OwnedRecord> {
        (
            bytes_field(),
            bytes_field(),
            prop::collection::vec((prop::collection::vec(any::<u8>(), 0..20), bytes_field()), 0..4),
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn random_bytes_never_panic(buf in prop::collection::vec(any::<u8>(), 0..400)) {
            let _ = validate_stored(&buf);
            let _ = validate_from_client(&buf);
            let _ = batches(&buf, Validation::Stored).count();
            let _ = batches(&buf, Validation::FromClient).count();
            if let Ok(h) = BatchHeader::parse(&buf) {
                let _ = (h.total_len(), h.last_offset(), h.next_offset(), h.compression());
            }
        }

        /// Random header-looking prefixes with plausible magic/length so the deeper checks run.
        #[test]
        fn random_framed_bytes_never_panic(
            mut buf in prop::collection::vec(any::<u8>(), 61..400),
            count in -2i32..6,
        ) {
            let len = buf.len() as i32 - 12;
            set_i32(&mut buf, 8, len);
            buf[16] = 2;
            set_i32(&mut buf, 57, count);
            set_i32(&mut buf, 23, count - 1);
            set_i16(&mut buf, 21, 0);
            fix_crc(&mut buf);
            let _ = validate_stored(&buf);
            let _ = validate_from_client(&buf);
            let _ = batches(&buf, Validation::FromClient).count();
        }

        /// A valid batch with random bytes overwritten and the CRC fixed: reaches the
        /// record walk with nearly-valid records. Never panics; stored-valid still holds
        /// when only record bytes changed.
        #[test]
        fn mutated_records_never_panic(
            records in prop::collection::vec(record_strategy(), 1..6),
            edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
        ) {
            let specs_headers: Vec<Vec<HeaderSpec<'_>>> = records
                .iter()
                .map(|r| r.2.iter().map(|(k, v)| (k.as_slice(), v.as_deref())).collect())
                .collect();
            let specs: Vec<RecordSpec<'_>> = records
                .iter()
                .zip(&specs_headers)
                .map(|(r, h)| (r.0.as_deref(), r.1.as_deref(), h.as_slice()))
                .collect();
            let mut b = build_batch(0, &specs, 0);
            let span = b.len() - 61;
            for (idx, byte) in edits {
                let at = 61 + idx.index(span);
                b[at] = byte;
            }
            fix_crc(&mut b);
            prop_assert!(validate_stored(&b).is_ok());
            let _ = validate_from_client(&b);
        }

        #[test]
        fn built_batches_validate(
            records in prop::collection::vec(record_strategy(), 1..20),
            base_offset in any::<i64>(),
            ts in any::<i64>(),
            epoch in any::<i32>(),
            new_base in 0i64..i64::MAX / 2,
            lat in prop::option::of(any::<i64>()),
        ) {
            let specs_headers: Vec<Vec<HeaderSpec<'_>>> = records
                .iter()
                .map(|r| r.2.iter().map(|(k, v)| (k.as_slice(), v.as_deref())).collect())
                .collect();
            let specs: Vec<RecordSpec<'_>> = records
                .iter()
                .zip(&specs_headers)
                .map(|(r, h)| (r.0.as_deref(), r.1.as_deref(), h.as_slice()))
                .collect();
            let mut b = build_batch(base_offset, &specs, ts);
            let info = validate_from_client(&b).unwrap();
            prop_assert_eq!(info.records_count as usize, records.len());
            prop_assert_eq!(info.last_offset_delta as usize, records.len() - 1);
            prop_assert_eq!(info.total_len, b.len());
            prop_assert_eq!(info.base_offset, base_offset);
            prop_assert_eq!(info.base_timestamp, ts);
            prop_assert_eq!(info.max_timestamp, ts);
            prop_assert_eq!(validate_stored(&b).unwrap(), info);

            let decoded = decode_records(&b);
            prop_assert_eq!(decoded.len(), records.len());
            for (i, (d, r)) in decoded.iter().zip(&records).enumerate() {
                prop_assert_eq!(d.0, 0);
                prop_assert_eq!(d.1, i as i32);
                prop_assert_eq!(&d.2, &r.0);
                prop_assert_eq!(&d.3, &r.1);
                prop_assert_eq!(&d.4, &r.2);
            }

            assign_offsets(&mut b, new_base, epoch, lat);
            let after = validate_from_client(&b).unwrap();
            prop_assert_eq!(after.base_offset, new_base);
            prop_assert_eq!(after.partition_leader_epoch, epoch);
            prop_assert_eq!(after.last_offset(), new_base + records.len() as i64 - 1);
            match lat {
                Some(t) => {
                    prop_assert_eq!(after.timestamp_type(), TimestampType::LogAppendTime);
                    prop_assert_eq!(after.max_timestamp, t);
                }
                None => {
                    prop_assert_eq!(after.timestamp_type(), TimestampType::CreateTime);
                    prop_assert_eq!(after.max_timestamp, ts);
                }
            }

            let both = [b.clone(), b.clone()].concat();
            let counts: Vec<i32> = batches(&both, Validation::FromClient)
                .map(|r| r.unwrap().1.records_count)
                .collect();
            prop_assert_eq!(counts, vec![records.len() as i32; 2]);
        }
    }

    #[test]
    fn assign_offsets_split_matches_in_place_rewrite() {
        for log_append_time in [None, Some(1_234_567_890_123i64)] {
            let original = build_batch_of_size(0, 7, 33, 1_000);
            let mut in_place = original.clone();
            assign_offsets(&mut in_place, 4242, 9, log_append_time);
            let mut header = [0u8; BATCH_HEADER_LEN];
            header.copy_from_slice(&original[..BATCH_HEADER_LEN]);
            assign_offsets_split(&mut header, &original[BATCH_HEADER_LEN..], 4242, 9, log_append_time);
            let mut split = header.to_vec();
            split.extend_from_slice(&original[BATCH_HEADER_LEN..]);
            assert_eq!(split, in_place);
            assert!(validate_stored(&split).is_ok());
        }
    }

    #[test]
    fn first_record_at_or_after_walks_record_timestamps() {
        let batch = build_batch_with_timestamps(100, b"value", 5_000, &[0, 1_000, 2_000, 300_000]);
        assert!(validate_from_client(&batch).is_ok());
        assert_eq!(validate_stored(&batch).unwrap().max_timestamp, 305_000);
        assert_eq!(first_record_at_or_after(&batch, 0), Some((100, 5_000)));
        assert_eq!(first_record_at_or_after(&batch, 5_000), Some((100, 5_000)));
        assert_eq!(first_record_at_or_after(&batch, 5_001), Some((101, 6_000)));
        assert_eq!(first_record_at_or_after(&batch, 6_500), Some((102, 7_000)));
        assert_eq!(first_record_at_or_after(&batch, 7_001), Some((103, 305_000)));
        assert_eq!(first_record_at_or_after(&batch, 305_001), None);
        let mut lat = batch.clone();
        assign_offsets(&mut lat, 100, 0, Some(9_999));
        assert_eq!(first_record_at_or_after(&lat, 9_000), Some((100, 9_999)), "LogAppendTime: the batch time");
        assert_eq!(first_record_at_or_after(&batch[..70], 0), None, "truncated input is not trusted");
    }
}

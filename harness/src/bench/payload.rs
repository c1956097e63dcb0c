//! Message values: a 24-byte header the consumer reads back (run id, producer id, per-partition
//! sequence number, intended send time) followed by bytes taken from a pre-generated pool at a
//! random offset — random bytes (incompressible) or random words (text-like, compressible), so
//! compression ratios are honest rather than those of a repeated pattern.
//!
//! Owns: the payload layout and the pool. Must never: allocate per message (values are written
//! into a caller's reusable buffer).

use serde::{Deserialize, Serialize};

/// run id (4) + producer id (4) + sequence (8) + intended send time, monotonic ns (8).
pub const HEADER_BYTES: usize = 24;
/// Pool bytes beyond the largest message, so offsets vary (large enough that messages of one
/// batch rarely overlap, which would let a codec find repeats).
const POOL_EXTRA_BYTES: usize = 8 << 20;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PayloadKind {
    /// Uniformly random bytes: compression gains nothing.
    Random,
    /// Random words from a small vocabulary, space separated: compresses roughly like logs.
    Text,
}

impl std::str::FromStr for PayloadKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "random" => Ok(PayloadKind::Random),
            "text" => Ok(PayloadKind::Text),
            other => Err(format!("payload {other:?}: random or text")),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PayloadHeader {
    pub run_id: u32,
    pub producer_id: u32,
    pub sequence: u64,
    pub intended_ns: u64,
}

impl PayloadHeader {
    pub fn write(&self, out: &mut [u8]) {
        out[0..4].copy_from_slice(&self.run_id.to_be_bytes());
        out[4..8].copy_from_slice(&self.producer_id.to_be_bytes());
        out[8..16].copy_from_slice(&self.sequence.to_be_bytes());
        out[16..24].copy_from_slice(&self.intended_ns.to_be_bytes());
    }

    /// `None` if the value is shorter than a header (not a bench message).
    pub fn read(value: &[u8]) -> Option<PayloadHeader> {
        let h = value.get(..HEADER_BYTES)?;
        Some(PayloadHeader {
            run_id: u32::from_be_bytes(h[0..4].try_into().ok()?),
            producer_id: u32::from_be_bytes(h[4..8].try_into().ok()?),
            sequence: u64::from_be_bytes(h[8..16].try_into().ok()?),
            intended_ns: u64::from_be_bytes(h[16..24].try_into().ok()?),
        })
    }
}

/// A small fast PRNG (xorshift64*), seeded per producer so runs repeat.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform in `[0, n)`; `n` > 0.
    pub fn below(&mut self, n: u64) -> u64 {
        ((self.next_u64() as u128 * n as u128) >> 64) as u64
    }
}

/// The bytes message bodies are cut from.
pub struct PayloadPool {
    bytes: Vec<u8>,
    max_message_bytes: usize,
}

impl PayloadPool {
    pub fn new(kind: PayloadKind, max_message_bytes: usize, seed: u64) -> PayloadPool {
        let len = max_message_bytes + POOL_EXTRA_BYTES;
        let mut rng = Rng::new(seed);
        let mut bytes = Vec::with_capacity(len + 16);
        match kind {
            PayloadKind::Random => {
                while bytes.len() < len {
                    bytes.extend_from_slice(&rng.next_u64().to_le_bytes());
                }
            }
            PayloadKind::Text => {
                const WORDS: &[&str] = &[
                    "the",
                    "broker",
                    "partition",
                    "offset",
                    "request",
                    "latency",
                    "commit",
                    "segment",
                    "error",
                    "consumer",
                    "producer",
                    "timeout",
                    "INFO",
                    "WARN",
                    "user",
                    "id",
                    "session",
                    "GET",
                    "POST",
                    "/api/v1/orders",
                    "status=200",
                    "status=500",
                    "duration_ms=",
                    "shard",
                    "batch",
                    "retry",
                ];
                while bytes.len() < len {
                    let word = WORDS[rng.below(WORDS.len() as u64) as usize];
                    bytes.extend_from_slice(word.as_bytes());
                    if rng.below(4) == 0 {
                        bytes.extend_from_slice(rng.below(100_000).to_string().as_bytes());
                    }
                    bytes.push(if rng.below(12) == 0 { b'\n' } else { b' ' });
                }
            }
        }
        bytes.truncate(len);
        PayloadPool { bytes, max_message_bytes }
    }

    /// Fills `out` (resized to `len`) with a header and pool bytes from a random offset.
    #[cfg(test)]
    pub fn fill(&self, out: &mut Vec<u8>, len: usize, header: &PayloadHeader, rng: &mut Rng) {
        out.clear();
        self.append(out, len, header, rng);
    }

    /// Appends a `len`-byte value to `out`: the header, then pool bytes from a random offset.
    pub fn append(&self, out: &mut Vec<u8>, len: usize, header: &PayloadHeader, rng: &mut Rng) {
        assert!((HEADER_BYTES..=self.max_message_bytes).contains(&len), "message length {len} out of range");
        let body = len - HEADER_BYTES;
        let start = rng.below((self.bytes.len() - body) as u64) as usize;
        let at = out.len();
        out.resize(at + HEADER_BYTES, 0);
        header.write(&mut out[at..]);
        out.extend_from_slice(&self.bytes[start..start + body]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trips_and_short_values_are_not_ours() {
        let h = PayloadHeader { run_id: 7, producer_id: 3, sequence: 1 << 40, intended_ns: 123_456_789 };
        let pool = PayloadPool::new(PayloadKind::Random, 100, 1);
        let mut buf = Vec::new();
        pool.fill(&mut buf, 100, &h, &mut Rng::new(2));
        assert_eq!(buf.len(), 100);
        assert_eq!(PayloadHeader::read(&buf), Some(h));
        assert_eq!(PayloadHeader::read(&buf[..23]), None);
    }

    #[test]
    fn random_payload_does_not_compress_and_text_does() {
        let h = PayloadHeader { run_id: 1, producer_id: 1, sequence: 0, intended_ns: 0 };
        for (kind, min_ratio, max_ratio) in [(PayloadKind::Random, 0.95, 1.1), (PayloadKind::Text, 0.2, 0.6)] {
            let pool = PayloadPool::new(kind, 4096, 9);
            let mut rng = Rng::new(5);
            let mut all = Vec::new();
            let mut buf = Vec::new();
            for _ in 0..64 {
                pool.fill(&mut buf, 4096, &h, &mut rng);
                all.extend_from_slice(&buf);
            }
            let compressed = zstd::bulk::compress(&all, 3).unwrap();
            let ratio = compressed.len() as f64 / all.len() as f64;
            assert!((min_ratio..max_ratio).contains(&ratio), "{kind:?}: ratio {ratio}");
        }
    }

    #[test]
    fn rng_below_stays_in_range() {
        let mut r = Rng::new(0);
        assert!((0..10_000).all(|_| r.below(7) < 7));
    }
}

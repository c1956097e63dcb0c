//! CRC-32C (Castagnoli): the checksum of Kafka record batches, and of the engine's own files.
//!
//! Owns: the one implementation the engine calls. It is `crc-fast`, which folds with
//! VPCLMULQDQ (AVX-512 where present) and picks its code path at run time: about 110 GB/s on
//! 1 MiB on these machines against about 28 GB/s for the `crc32c` crate's SSE4.2 loop, and
//! the batch CRC was 12% of the broker's produce CPU. Must never: change the checksum (the
//! tests pin it to the `crc32c` crate and to the standard check value).

/// CRC-32C of `data`.
#[inline]
pub fn crc32c(data: &[u8]) -> u32 {
    crc_fast::crc32_iscsi(data)
}

/// CRC-32C of `first` followed by `second`, without joining them.
pub fn crc32c_of_parts(first: &[u8], second: &[u8]) -> u32 {
    let mut digest = crc_fast::Digest::new(crc_fast::CrcAlgorithm::Crc32Iscsi);
    digest.update(first);
    digest.update(second);
    digest.finalize() as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn is_crc32c() {
        assert_eq!(crc32c(b"123456789"), 0xE306_9283, "the CRC-32C check value");
        assert_eq!(crc32c(b""), 0);
        let data: Vec<u8> = (0..300_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
        for len in [1, 7, 8, 15, 16, 63, 64, 65, 255, 256, 4095, 4096, 65_537, 300_000] {
            for start in [0, 1, 3] {
                let part = &data[start..len.max(start)];
                assert_eq!(crc32c(part), ::crc32c::crc32c(part), "len {len} start {start}");
            }
        }
        for split in [0, 1, 61, 4096, 299_999, 300_000] {
            let (a, b) = data.split_at(split);
            assert_eq!(crc32c_of_parts(a, b), ::crc32c::crc32c(&data), "split {split}");
        }
    }
}

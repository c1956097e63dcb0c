//! Arbitrary bytes as the compressed records of a batch: the first byte picks the codec
//! (gzip, snappy, lz4, zstd), the rest is the payload. Decompression must stay within its
//! output limit and never panic; whatever validates must survive a recompression round trip
//! through every codec with identical records.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_engine::batch::{build_batch, reframe, validate_from_client, Compression};
use sluice_engine::compressed_batch::{recompress, validate_compressed_records};
use sluice_engine::compression::decompress;

const CODECS: [Compression; 4] = [Compression::Gzip, Compression::Snappy, Compression::Lz4, Compression::Zstd];
/// Small output limit for the raw codec calls, so the limit path is reached often.
const LIMIT_BYTES: usize = 1 << 16;

fuzz_target!(init: sluice_fuzz::alloc_guard::init_from_env(), |data: &[u8]| {
    let Some((&selector, payload)) = data.split_first() else { return };
    let codec = CODECS[(selector & 3) as usize];
    let records_count = i32::from(selector >> 2) + 1;

    let mut out = Vec::new();
    if decompress(codec, payload, LIMIT_BYTES, &mut out).is_ok() {
        assert!(out.len() <= LIMIT_BYTES, "{codec:?} produced {} bytes over the limit", out.len());
    } else {
        assert!(out.is_empty(), "a failed decompression leaves nothing behind");
    }

    // The payload as a batch's compressed records region, under a valid header and CRC.
    let template = build_batch(0, &vec![(None, Some(&b"v"[..]), &[][..]); records_count as usize], 0);
    let mut batch = template[..61].to_vec();
    batch.extend_from_slice(payload);
    reframe(&mut batch, codec);
    let Ok(info) = validate_from_client(&batch) else { return };
    let mut scratch = Vec::new();
    if validate_compressed_records(&batch, &info, &mut scratch).is_err() {
        return;
    }
    let plain = recompress(&batch, &info, Compression::None, &mut scratch).expect("a valid batch decompresses");
    let plain_info = validate_from_client(&plain).expect("decompressed batch validates");
    assert_eq!(plain_info.records_count, info.records_count);
    for target in CODECS {
        let again = recompress(&plain, &plain_info, target, &mut scratch).expect("compress");
        let again_info = validate_from_client(&again).expect("recompressed batch validates");
        validate_compressed_records(&again, &again_info, &mut scratch).expect("recompressed records validate");
        let back = recompress(&again, &again_info, Compression::None, &mut scratch).expect("decompress");
        assert_eq!(back, plain, "{target:?} round trip changed the records");
    }
});

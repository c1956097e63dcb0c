//! Arbitrary bytes as a client's byte stream: `size ++ frame` units through
//! `frame::check_size` and `connection::decode_request`, and every Produce request's record
//! batches through client validation, offset assignment and stored validation.
//! See `sluice_fuzz::drive_request_stream`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(init: sluice_fuzz::alloc_guard::init_from_env(), |data: &[u8]| {
    sluice_fuzz::drive_request_stream(data);
});

//! Copying bytes into memory that will not be read again soon, without first pulling every
//! destination line into the CPU caches.
//!
//! Why: the tail cache appends each produced batch to pieces that rotate through tens of MiB,
//! so each plain store misses and the CPU reads the line from memory before overwriting it.
//! Non-temporal stores write whole lines straight to memory instead: with a consumer tailing a
//! 1 MB-batch produce stream, the broker's CPU per GB fell by about a tenth
//! (`tuning/results/produce-rdkafka-perf`, variant `always`).
//!
//! Owns: [`extend_streaming`]. Must never: be used for memory that is read right away (the
//! reader then misses the cache), or read or write outside the two ranges it is given.

use bytes::BytesMut;

/// Shorter copies are plain: too short for the stores to pay.
pub const MIN_STREAMING_BYTES: usize = 4096;

/// Appends `src` to `dst` (like `extend_from_slice`), with non-temporal stores when `src` is
/// long enough and the CPU is x86_64.
pub fn extend_streaming(dst: &mut BytesMut, src: &[u8]) {
    if src.len() < MIN_STREAMING_BYTES || !cfg!(target_arch = "x86_64") {
        dst.extend_from_slice(src);
        return;
    }
    dst.reserve(src.len());
    let start = dst.len();
    let spare = dst.spare_capacity_mut();
    assert!(spare.len() >= src.len());
    // SAFETY: `spare` has room for `src.len()` bytes (asserted); the ranges cannot overlap
    // (`dst` owns its buffer exclusively, `src` is a shared borrow of other memory); after the
    // copy those bytes are initialized, so the new length covers only initialized bytes.
    unsafe {
        copy_nontemporal(spare.as_mut_ptr().cast::<u8>(), src.as_ptr(), src.len());
        dst.set_len(start + src.len());
    }
}

/// Copies `len` bytes from `src` to `dst` with 16-byte non-temporal stores for the aligned
/// middle, plain copies for the unaligned head and the tail, then a store fence.
///
/// # Safety
/// `src` must be valid for `len` reads, `dst` for `len` writes, and they must not overlap.
#[cfg(target_arch = "x86_64")]
unsafe fn copy_nontemporal(dst: *mut u8, src: *const u8, len: usize) {
    use std::arch::x86_64::{__m128i, _mm_loadu_si128, _mm_sfence, _mm_stream_si128};
    let head = (16 - (dst as usize & 15)) & 15;
    let head = head.min(len);
    std::ptr::copy_nonoverlapping(src, dst, head);
    let mut offset = head;
    // SSE2 is part of x86_64: these intrinsics need no run-time check.
    while offset + 64 <= len {
        let s = src.add(offset).cast::<__m128i>();
        let d = dst.add(offset).cast::<__m128i>();
        let (a, b, c, e) =
            (_mm_loadu_si128(s), _mm_loadu_si128(s.add(1)), _mm_loadu_si128(s.add(2)), _mm_loadu_si128(s.add(3)));
        _mm_stream_si128(d, a);
        _mm_stream_si128(d.add(1), b);
        _mm_stream_si128(d.add(2), c);
        _mm_stream_si128(d.add(3), e);
        offset += 64;
    }
    while offset + 16 <= len {
        _mm_stream_si128(dst.add(offset).cast(), _mm_loadu_si128(src.add(offset).cast()));
        offset += 16;
    }
    std::ptr::copy_nonoverlapping(src.add(offset), dst.add(offset), len - offset);
    // Order the streaming stores before any later store (e.g. the atomic that publishes the
    // bytes to another thread).
    _mm_sfence();
}

#[cfg(not(target_arch = "x86_64"))]
unsafe fn copy_nontemporal(dst: *mut u8, src: *const u8, len: usize) {
    std::ptr::copy_nonoverlapping(src, dst, len);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_exactly_at_every_alignment_and_length() {
        let src: Vec<u8> = (0..70_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8).collect();
        for prefix in [0usize, 1, 7, 15, 16, 33] {
            for (from, len) in [(0, 0), (0, 10), (3, 4095), (0, 4096), (1, 4097), (5, 4160), (9, 65_537), (0, 70_000)] {
                let mut dst = BytesMut::with_capacity(prefix + 3);
                dst.extend_from_slice(&src[..prefix]);
                extend_streaming(&mut dst, &src[from..from + len]);
                assert_eq!(&dst[..prefix], &src[..prefix]);
                assert_eq!(&dst[prefix..], &src[from..from + len], "prefix {prefix} from {from} len {len}");
            }
        }
    }
}

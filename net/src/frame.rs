//! Kafka's framing: a 4-byte big-endian size, then that many bytes of request.
//!
//! Owns: reading one frame with the cheap checks first (size within
//! `socket.request.max.bytes`, not negative, at least a request header's 8 bytes) before any
//! allocation, like mini-redis's `Frame::check`; frame memory comes from the shard's
//! [`frame_buffers`]. Must never: allocate from an unchecked size, or
//! return a partial frame.

use bytes::{Bytes, BytesMut};
use futures_lite::{AsyncRead, AsyncReadExt};

use crate::frame_buffers;

/// Smallest request: api key (2) + api version (2) + correlation id (4).
pub const MIN_REQUEST_BYTES: i32 = 8;

#[derive(Debug)]
pub enum FrameError {
    /// The peer closed the connection between frames.
    Closed,
    /// Size prefix outside `[MIN_REQUEST_BYTES, max]`.
    BadSize {
        size: i32,
        max: usize,
    },
    Io(std::io::Error),
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FrameError::Closed => write!(f, "connection closed"),
            FrameError::BadSize { size, max } => write!(f, "request size {size} outside [{MIN_REQUEST_BYTES}, {max}]"),
            FrameError::Io(e) => write!(f, "{e}"),
        }
    }
}

/// Checks a size prefix before anything is allocated.
pub fn check_size(size: i32, max_request_bytes: usize) -> Result<usize, FrameError> {
    if size < MIN_REQUEST_BYTES || size as i64 > max_request_bytes as i64 {
        return Err(FrameError::BadSize { size, max: max_request_bytes });
    }
    Ok(size as usize)
}

/// Bytes of a frame [`read_frame_reusing`] reads before the frame's memory is chosen: enough
/// for a produce request's header and the start of its first partition (see
/// `produce_placement`).
pub const PREFIX_BYTES: usize = 1024;

/// Reads one whole frame (without its size prefix) into memory from this shard's
/// [`frame_buffers`]. Its first [`PREFIX_BYTES`] (or fewer, for a smaller frame) are read
/// first; `choose_phase(prefix, size)` then says how many bytes into a memory page the frame's
/// first byte goes (see [`frame_buffers::take`]), and the prefix is copied there before the
/// rest is read after it.
pub async fn read_frame_reusing<R: AsyncRead + Unpin>(
    reader: &mut R,
    max_request_bytes: usize,
    choose_phase: impl FnOnce(&[u8], usize) -> usize,
) -> Result<Bytes, FrameError> {
    let size = read_size(reader, max_request_bytes).await?;
    let mut prefix = [0u8; PREFIX_BYTES];
    let prefix = &mut prefix[..size.min(PREFIX_BYTES)];
    reader.read_exact(prefix).await.map_err(FrameError::Io)?;
    let mut slot = frame_buffers::take(size, choose_phase(prefix, size));
    let frame = slot.as_mut_slice();
    frame[..prefix.len()].copy_from_slice(prefix);
    reader.read_exact(&mut frame[prefix.len()..]).await.map_err(FrameError::Io)?;
    Ok(frame_buffers::freeze(slot))
}

/// Reads a frame's size prefix and checks it.
async fn read_size<R: AsyncRead + Unpin>(reader: &mut R, max_request_bytes: usize) -> Result<usize, FrameError> {
    let mut size_bytes = [0u8; 4];
    // A clean close is only a close before the first byte of a frame.
    let mut got = 0;
    while got < 4 {
        match reader.read(&mut size_bytes[got..]).await {
            Ok(0) if got == 0 => return Err(FrameError::Closed),
            Ok(0) => return Err(FrameError::Io(std::io::ErrorKind::UnexpectedEof.into())),
            Ok(n) => got += n,
            Err(e) => return Err(FrameError::Io(e)),
        }
    }
    check_size(i32::from_be_bytes(size_bytes), max_request_bytes)
}

/// Reads one whole frame (without its size prefix) into a fresh buffer.
pub async fn read_frame<R: AsyncRead + Unpin>(
    reader: &mut R,
    max_request_bytes: usize,
) -> Result<BytesMut, FrameError> {
    let size = read_size(reader, max_request_bytes).await?;
    let mut frame = BytesMut::zeroed(size);
    reader.read_exact(&mut frame).await.map_err(FrameError::Io)?;
    Ok(frame)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_checked_before_allocation() {
        assert!(check_size(8, 100).is_ok());
        assert!(check_size(100, 100).is_ok());
        for bad in [-1, 0, 7, 101, i32::MAX, i32::MIN] {
            assert!(check_size(bad, 100).is_err(), "{bad}");
        }
    }

    #[test]
    fn reads_frames_and_rejects_truncation() {
        futures_lite::future::block_on(async {
            let mut data = Vec::new();
            data.extend_from_slice(&9i32.to_be_bytes());
            data.extend_from_slice(b"123456789");
            data.extend_from_slice(&8i32.to_be_bytes());
            data.extend_from_slice(b"1234");
            let mut r = futures_lite::io::Cursor::new(data);
            assert_eq!(&read_frame(&mut r, 100).await.unwrap()[..], b"123456789");
            assert!(matches!(read_frame(&mut r, 100).await, Err(FrameError::Io(_))));
            let mut empty = futures_lite::io::Cursor::new(Vec::<u8>::new());
            assert!(matches!(read_frame(&mut empty, 100).await, Err(FrameError::Closed)));
            let mut huge = futures_lite::io::Cursor::new(i32::MAX.to_be_bytes().to_vec());
            assert!(matches!(read_frame(&mut huge, 100).await, Err(FrameError::BadSize { .. })));
        });
    }

    #[test]
    fn a_reused_frame_is_read_at_its_phase() {
        futures_lite::future::block_on(async {
            let mut data = Vec::new();
            for body in [&b"123456789"[..], b"abcdefgh", b"12345678"] {
                data.extend_from_slice(&(body.len() as i32).to_be_bytes());
                data.extend_from_slice(body);
            }
            data.extend_from_slice(&20i32.to_be_bytes());
            data.extend_from_slice(b"short");
            let mut r = futures_lite::io::Cursor::new(data);
            let at = |phase: usize| move |_: &[u8], _: usize| phase;
            let first = read_frame_reusing(&mut r, 100, at(61)).await.unwrap();
            assert_eq!((&first[..], first.as_ptr() as usize % 4096), (&b"123456789"[..], 61));
            let second = read_frame_reusing(&mut r, 100, at(0)).await.unwrap();
            assert_eq!((&second[..], second.as_ptr() as usize % 4096), (&b"abcdefgh"[..], 0));
            drop(second);
            // The first frame is still referenced: the third must not overwrite it.
            let third = read_frame_reusing(&mut r, 100, at(61)).await.unwrap();
            assert_eq!((&first[..], &third[..]), (&b"123456789"[..], &b"12345678"[..]));
            assert!(matches!(read_frame_reusing(&mut r, 100, at(0)).await, Err(FrameError::Io(_))));
        });
    }

    #[test]
    fn the_phase_is_chosen_from_the_frames_first_bytes() {
        futures_lite::future::block_on(async {
            // A frame longer than the prefix, and one shorter: the chooser sees the first
            // PREFIX_BYTES (or the whole frame) and the size; the frame comes back whole.
            let long: Vec<u8> = (0..PREFIX_BYTES + 5000).map(|i| (i % 251) as u8).collect();
            let short = b"0123456789".to_vec();
            let mut data = Vec::new();
            for body in [&long, &short] {
                data.extend_from_slice(&(body.len() as i32).to_be_bytes());
                data.extend_from_slice(body);
            }
            let mut r = futures_lite::io::Cursor::new(data);
            let mut seen = Vec::new();
            let frame = read_frame_reusing(&mut r, 1 << 20, |prefix: &[u8], size| {
                seen.push((prefix.to_vec(), size));
                usize::from(prefix[3]) * 10
            })
            .await
            .unwrap();
            assert_eq!(seen, vec![(long[..PREFIX_BYTES].to_vec(), long.len())]);
            assert_eq!((&frame[..], frame.as_ptr() as usize % 4096), (&long[..], usize::from(long[3]) * 10));
            let frame = read_frame_reusing(&mut r, 1 << 20, |prefix: &[u8], size| {
                assert_eq!((prefix, size), (&short[..], short.len()));
                7
            })
            .await
            .unwrap();
            assert_eq!((&frame[..], frame.as_ptr() as usize % 4096), (&short[..], 7));
        });
    }
}

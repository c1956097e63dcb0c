//! Kafka's framing: a 4-byte big-endian size, then that many bytes of request.
//!
//! Owns: reading one frame with the cheap checks first (size within
//! `socket.request.max.bytes`, not negative, at least a request header's 8 bytes) before any
//! allocation, like mini-redis's `Frame::check`; and [`FrameBuffers`], one connection's frame
//! memory reused from request to request. Must never: allocate from an unchecked size, or
//! return a partial frame.

use bytes::{Bytes, BytesMut};
use futures_lite::{AsyncRead, AsyncReadExt};

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

/// Frame memory one connection reuses: a request frame is read into bytes that an earlier
/// frame already initialized, so a megabyte-sized produce request is not zeroed before the
/// socket read overwrites it (that `memset` was 9% of the broker's produce CPU). The frame
/// handed out is lent back ([`FrameBuffers::lend`]); once every view of it is dropped (the
/// request was handled) its memory is reclaimed for the next frame. Buffers larger than
/// [`FrameBuffers::KEEP_BYTES`] are not kept.
#[derive(Default)]
pub struct FrameBuffers {
    /// The buffer for the next frame: its `len` bytes are initialized.
    spare: Option<BytesMut>,
    /// The last frame handed out, still possibly referenced by its request.
    lent: Option<Bytes>,
}

impl FrameBuffers {
    /// Most frame memory kept per connection between requests.
    pub const KEEP_BYTES: usize = 8 << 20;

    /// `size` bytes (initialized, contents unspecified) for the next frame. Only bytes beyond
    /// the previous frame's length are zeroed.
    pub fn take(&mut self, size: usize) -> BytesMut {
        if let Some(lent) = self.lent.take() {
            // Unique once the request that decoded it dropped every slice of it.
            if let Ok(frame) = lent.try_into_mut() {
                self.spare = Some(frame);
            }
        }
        let mut buf = self.spare.take().unwrap_or_default();
        if buf.capacity() > Self::KEEP_BYTES && size <= Self::KEEP_BYTES {
            buf = BytesMut::new();
        }
        if buf.len() >= size {
            buf.truncate(size);
        } else {
            buf.resize(size, 0);
        }
        buf
    }

    /// Gives back a frame from [`FrameBuffers::take`] (frozen, still in use by its request).
    pub fn lend(&mut self, frame: Bytes) {
        self.lent = Some(frame);
    }
}

/// Reads one whole frame (without its size prefix) into memory from `buffers`.
pub async fn read_frame_reusing<R: AsyncRead + Unpin>(
    reader: &mut R,
    max_request_bytes: usize,
    buffers: &mut FrameBuffers,
) -> Result<BytesMut, FrameError> {
    let size = read_size(reader, max_request_bytes).await?;
    let mut frame = buffers.take(size);
    reader.read_exact(&mut frame).await.map_err(FrameError::Io)?;
    Ok(frame)
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
    fn frame_memory_is_reused_once_its_views_are_dropped() {
        let mut buffers = FrameBuffers::default();
        let mut first = buffers.take(1000);
        first[..5].copy_from_slice(b"hello");
        let first = first.freeze();
        let first_ptr = first.as_ptr();
        let view = first.slice(0..5); // a request still holding record bytes
        buffers.lend(first);
        // Still referenced: not reclaimed, a new buffer is used.
        let second = buffers.take(1000);
        assert_ne!(second.as_ptr(), first_ptr);
        assert_eq!(&view[..], b"hello");
        drop(view);
        let second = second.freeze();
        let second_ptr = second.as_ptr();
        buffers.lend(second);
        // Every view dropped: the next frame reuses the same memory, smaller or not.
        let third = buffers.take(600);
        assert_eq!(third.as_ptr(), second_ptr);
        assert_eq!(third.len(), 600);
        buffers.lend(third.freeze());
        let fourth = buffers.take(1000);
        assert_eq!(fourth.as_ptr(), second_ptr, "grown in place within its capacity");
        // Oversized buffers are not kept.
        buffers.lend(fourth.freeze());
        let big = buffers.take(FrameBuffers::KEEP_BYTES + 1);
        buffers.lend(big.freeze());
        let small = buffers.take(10);
        assert!(small.capacity() < FrameBuffers::KEEP_BYTES);
    }
}

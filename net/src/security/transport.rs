//! A client connection's byte stream: plain TCP or TLS, split into the halves the connection's
//! reader loop and writer task use.
//!
//! Owns: the choice between the two and what differs for the writer: a plain socket sends file
//! ranges with `sendfile(2)`; a TLS one must encrypt them, so they are read into memory first.
//! Must never: make a plaintext connection pay for TLS (each half is one enum match away from
//! glommio's own stream).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures::io::{AsyncRead, AsyncWrite, ReadHalf, WriteHalf};
use futures::AsyncReadExt as _;
use glommio::net::TcpStream;

use super::tls_stream::{TlsReadHalf, TlsStream, TlsWriteHalf};

/// An accepted connection, after its TLS handshake if its listener has TLS.
pub enum Transport {
    Plain(TcpStream),
    Tls(TlsStream),
}

pub enum TransportReader {
    Plain(ReadHalf<TcpStream>),
    Tls(TlsReadHalf),
}

pub enum TransportWriter {
    Plain(WriteHalf<TcpStream>),
    Tls(TlsWriteHalf),
}

impl Transport {
    pub fn peer_addr(&self) -> io::Result<std::net::SocketAddr> {
        match self {
            Transport::Plain(s) => s.peer_addr().map_err(|e| io::Error::other(e.to_string())),
            Transport::Tls(s) => s.with_tcp(|t| t.peer_addr().map_err(|e| io::Error::other(e.to_string()))),
        }
    }

    pub fn set_nodelay(&self, on: bool) {
        let _ = match self {
            Transport::Plain(s) => s.set_nodelay(on),
            Transport::Tls(s) => s.with_tcp(|t| t.set_nodelay(on)),
        };
    }

    /// The socket's descriptor (for `sendfile`; valid while either half lives).
    pub fn raw_fd(&self) -> std::os::fd::RawFd {
        match self {
            Transport::Plain(s) => std::os::fd::AsRawFd::as_raw_fd(s),
            Transport::Tls(s) => s.with_tcp(std::os::fd::AsRawFd::as_raw_fd),
        }
    }

    pub fn split(self) -> (TransportReader, TransportWriter) {
        match self {
            Transport::Plain(s) => {
                let (r, w) = s.split();
                (TransportReader::Plain(r), TransportWriter::Plain(w))
            }
            Transport::Tls(s) => {
                let (r, w) = s.split();
                (TransportReader::Tls(r), TransportWriter::Tls(w))
            }
        }
    }
}

impl TransportWriter {
    /// File ranges must be read and encrypted, not sent with `sendfile(2)`.
    pub fn is_tls(&self) -> bool {
        matches!(self, TransportWriter::Tls(_))
    }
}

impl AsyncRead for TransportReader {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            TransportReader::Plain(r) => Pin::new(r).poll_read(cx, buf),
            TransportReader::Tls(r) => Pin::new(r).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for TransportWriter {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            TransportWriter::Plain(w) => Pin::new(w).poll_write(cx, buf),
            TransportWriter::Tls(w) => Pin::new(w).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            TransportWriter::Plain(w) => Pin::new(w).poll_flush(cx),
            TransportWriter::Tls(w) => Pin::new(w).poll_flush(cx),
        }
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            TransportWriter::Plain(w) => Pin::new(w).poll_close(cx),
            TransportWriter::Tls(w) => Pin::new(w).poll_close(cx),
        }
    }
}

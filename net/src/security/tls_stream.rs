//! A TLS session over a glommio TCP stream (a listener's server side, or the client side of
//! `sluice bench --security-protocol ssl`), as futures' `AsyncRead`/`AsyncWrite` halves for a
//! connection's reader and writer.
//!
//! Owns: driving one `rustls::Connection` over the socket: the handshake (bounded by the
//! caller's deadline), decrypting what the read half asks for and encrypting what the write
//! half writes. A TLS session is one state machine: both halves share it through an
//! `Rc<RefCell<_>>`, borrowed only inside a poll (never across an await), on the shard thread
//! that owns the connection — as futures' own `split` shares a stream. Each half polls only its
//! own direction of the socket (glommio keeps one waker per direction).
//! Bytes the write half hands over wait in rustls only until the next write or flush: the
//! writer flushes after every response. TLS records a read produces for the peer (a KeyUpdate
//! answer) go out with the next response.
//! Must never: block, spin on a socket that is not ready, or panic on any bytes from the peer.

use std::cell::RefCell;
use std::io::{self, Read as _, Write as _};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use futures::io::{AsyncRead, AsyncWrite};
use glommio::net::TcpStream;

struct Session {
    tcp: TcpStream,
    tls: rustls::Connection,
    /// The peer closed its side of the TCP connection.
    eof: bool,
    /// Our close_notify is queued (a close that must wait for the socket polls again).
    close_sent: bool,
}

/// Adapts the socket's non-blocking poll to rustls' `io::Read` (`WouldBlock` = not ready; the
/// context's waker is registered).
struct ReadAdapter<'a, 'b> {
    tcp: &'a mut TcpStream,
    cx: &'a mut Context<'b>,
}

impl io::Read for ReadAdapter<'_, '_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match Pin::new(&mut *self.tcp).poll_read(self.cx, buf) {
            Poll::Ready(result) => result,
            Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
        }
    }
}

struct WriteAdapter<'a, 'b> {
    tcp: &'a mut TcpStream,
    cx: &'a mut Context<'b>,
}

impl io::Write for WriteAdapter<'_, '_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match Pin::new(&mut *self.tcp).poll_write(self.cx, buf) {
            Poll::Ready(result) => result,
            Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn tls_error(e: rustls::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

impl Session {
    /// Writes every pending TLS record to the socket.
    fn poll_send(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.tls.wants_write() {
            match self.tls.write_tls(&mut WriteAdapter { tcp: &mut self.tcp, cx }) {
                Ok(0) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Poll::Pending,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
        Poll::Ready(Ok(()))
    }

    /// Reads and processes TLS records once: `Ready(Ok(false))` at the peer's EOF.
    fn poll_receive(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<bool>> {
        match self.tls.read_tls(&mut ReadAdapter { tcp: &mut self.tcp, cx }) {
            Ok(0) => {
                self.eof = true;
                return Poll::Ready(Ok(false));
            }
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Poll::Pending,
            Err(e) => return Poll::Ready(Err(e)),
        }
        self.tls.process_new_packets().map_err(tls_error)?;
        Poll::Ready(Ok(true))
    }

    fn poll_handshake(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            ready!(self.poll_send(cx))?;
            if !self.tls.is_handshaking() {
                return Poll::Ready(Ok(()));
            }
            match ready!(self.poll_receive(cx)) {
                Ok(true) => {}
                Ok(false) => return Poll::Ready(Err(io::ErrorKind::UnexpectedEof.into())),
                Err(e) => {
                    // Tell the peer why (rustls queued an alert); best effort.
                    let _ = self.tls.write_tls(&mut WriteAdapter { tcp: &mut self.tcp, cx });
                    return Poll::Ready(Err(e));
                }
            }
        }
    }
}

/// The read half of a TLS connection.
pub struct TlsReadHalf(Rc<RefCell<Session>>);
/// The write half of a TLS connection.
pub struct TlsWriteHalf(Rc<RefCell<Session>>);

/// A handshaken TLS connection.
pub struct TlsStream {
    session: Rc<RefCell<Session>>,
}

impl TlsStream {
    /// Runs the server handshake on `tcp`. The caller bounds it in time.
    pub async fn accept(tcp: TcpStream, config: Arc<rustls::ServerConfig>) -> io::Result<TlsStream> {
        let tls = rustls::ServerConnection::new(config).map_err(tls_error)?;
        TlsStream::handshake(tcp, tls.into()).await
    }

    /// Runs the client handshake on `tcp` with the server `name` (checked against its
    /// certificate). The caller bounds it in time.
    pub async fn connect(
        tcp: TcpStream,
        config: Arc<rustls::ClientConfig>,
        name: rustls::pki_types::ServerName<'static>,
    ) -> io::Result<TlsStream> {
        let tls = rustls::ClientConnection::new(config, name).map_err(tls_error)?;
        TlsStream::handshake(tcp, tls.into()).await
    }

    async fn handshake(tcp: TcpStream, tls: rustls::Connection) -> io::Result<TlsStream> {
        let session = Rc::new(RefCell::new(Session { tcp, tls, eof: false, close_sent: false }));
        futures::future::poll_fn(|cx| session.borrow_mut().poll_handshake(cx)).await?;
        Ok(TlsStream { session })
    }

    /// The peer's certificate (end entity, DER), if it sent one.
    pub fn peer_certificate(&self) -> Option<Vec<u8>> {
        self.session.borrow().tls.peer_certificates().and_then(|c| c.first()).map(|c| c.as_ref().to_vec())
    }

    pub fn split(self) -> (TlsReadHalf, TlsWriteHalf) {
        (TlsReadHalf(self.session.clone()), TlsWriteHalf(self.session))
    }

    /// The socket (options, peer address, descriptor).
    pub fn with_tcp<T>(&self, f: impl FnOnce(&TcpStream) -> T) -> T {
        f(&self.session.borrow().tcp)
    }
}

impl AsyncRead for TlsReadHalf {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        let mut session = self.0.borrow_mut();
        loop {
            match session.tls.reader().read(buf) {
                // 0: the peer's close_notify.
                Ok(n) => return Poll::Ready(Ok(n)),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                // The peer closed the socket without close_notify: for a server reading
                // requests this is an ordinary end (a truncated frame is the framer's error).
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Poll::Ready(Ok(0)),
                Err(e) => return Poll::Ready(Err(e)),
            }
            if session.eof {
                return Poll::Ready(Ok(0));
            }
            ready!(session.poll_receive(cx))?;
        }
    }
}

impl AsyncWrite for TlsWriteHalf {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let mut session = self.0.borrow_mut();
        // Earlier records first: rustls buffers at most its limit (64 KiB by default).
        ready!(session.poll_send(cx))?;
        let n = session.tls.writer().write(buf)?;
        // Push the new records now if the socket takes them; otherwise the next write or the
        // flush does.
        if let Poll::Ready(Err(e)) = session.poll_send(cx) {
            return Poll::Ready(Err(e));
        }
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut session = self.0.borrow_mut();
        ready!(session.poll_send(cx))?;
        Pin::new(&mut session.tcp).poll_flush(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut session = self.0.borrow_mut();
        if !session.close_sent {
            session.close_sent = true;
            session.tls.send_close_notify();
        }
        ready!(session.poll_send(cx))?;
        Pin::new(&mut session.tcp).poll_close(cx)
    }
}

//! Deadlines for slow clients: a request head must arrive within the header timeout, a body
//! within the body timeout. (Connections silent both ways are closed by the server's idle
//! timeout, set in `server::run`.)
//!
//! The head deadline lives on the connection ([`HeadDeadline`]): it is armed when the
//! connection is accepted and again at the first byte of each later request, and disarmed
//! once the bytes read hold the blank line that ends a head. A client that trickles a head a
//! byte at a time, or sends half a request line and stops, sees its reads fail and its
//! connection closed. The body deadline is armed by [`timed_body`] once the head is parsed.
//!
//! The wrapper reads no more of HTTP than it must: after the server's answer starts, the next
//! bytes from the client begin a new head (HTTP/1.1 without pipelining, which is all browsers
//! and the CLI send; a pipelined head arrives early and is simply not timed). Interim answers
//! (`100 Continue`) do not count as an answer, and after `101 Switching Protocols` (a peer's
//! sync link) or an HTTP/2 preface, the head deadline is off for good.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use poem::Body;
use poem::listener::Acceptor;
use poem::web::{LocalAddr, RemoteAddr};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// Wraps every connection an acceptor yields in a [`HeadDeadline`].
pub struct HeadTimeoutAcceptor<A> {
    pub inner: A,
    pub timeout: Duration,
}

impl<A: Acceptor> Acceptor for HeadTimeoutAcceptor<A> {
    type Io = HeadDeadline<A::Io>;

    fn local_addr(&self) -> Vec<LocalAddr> {
        self.inner.local_addr()
    }

    async fn accept(
        &mut self,
    ) -> io::Result<(Self::Io, LocalAddr, RemoteAddr, poem::http::uri::Scheme)> {
        let (io, local, remote, scheme) = self.inner.accept().await?;
        Ok((HeadDeadline::new(io, self.timeout), local, remote, scheme))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Reading a head; `tail` holds how much of `\r\n\r\n` the bytes so far end with.
    Head { tail: u8 },
    /// The head is in; the request is being served.
    Serving { answered: bool },
    /// Upgraded or HTTP/2: no head deadline.
    Off,
}

/// A connection whose request heads must each arrive within a deadline.
pub struct HeadDeadline<T> {
    inner: T,
    timeout: Duration,
    phase: Phase,
    /// The first bytes ever read, to spot the HTTP/2 preface.
    seen: usize,
    deadline: Pin<Box<Sleep>>,
}

const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0";

impl<T> HeadDeadline<T> {
    fn new(inner: T, timeout: Duration) -> Self {
        HeadDeadline {
            inner,
            timeout,
            phase: Phase::Head { tail: 0 },
            seen: 0,
            deadline: Box::pin(tokio::time::sleep(timeout)),
        }
    }

    /// Follows the bytes just read through the phases.
    fn saw(&mut self, bytes: &[u8]) {
        if self.seen < H2_PREFACE.len() {
            let n = (H2_PREFACE.len() - self.seen).min(bytes.len());
            let prefix = &H2_PREFACE[self.seen..self.seen + n];
            self.seen += n;
            if bytes[..n] == *prefix && self.seen == H2_PREFACE.len() {
                self.phase = Phase::Off;
                return;
            }
        }
        if let Phase::Serving { answered: true } = self.phase
            && !bytes.is_empty()
        {
            self.phase = Phase::Head { tail: 0 };
            self.deadline.as_mut().reset(Instant::now() + self.timeout);
        }
        if let Phase::Head { mut tail } = self.phase {
            for &b in bytes {
                tail = match (tail, b) {
                    (0 | 2, b'\r') => tail + 1,
                    (1 | 3, b'\n') => tail + 1,
                    (_, b'\r') => 1,
                    _ => 0,
                };
                if tail == 4 {
                    self.phase = Phase::Serving { answered: false };
                    return;
                }
            }
            self.phase = Phase::Head { tail };
        }
    }

    fn wrote(&mut self, bytes: &[u8]) {
        if let Phase::Serving { answered: false } = self.phase {
            if bytes.starts_with(b"HTTP/1.1 101") {
                self.phase = Phase::Off;
            } else if !bytes.starts_with(b"HTTP/1.1 1") && !bytes.is_empty() {
                self.phase = Phase::Serving { answered: true };
            }
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for HeadDeadline<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                this.saw(&buf.filled()[before..]);
                Poll::Ready(Ok(()))
            }
            Poll::Pending => {
                if matches!(this.phase, Phase::Head { .. })
                    && this.deadline.as_mut().poll(cx).is_ready()
                {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "the request head did not arrive in time",
                    )));
                }
                Poll::Pending
            }
            other => other,
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for HeadDeadline<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = &r {
            this.wrote(&buf[..*n]);
        }
        r
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = &r
            && *n > 0
        {
            let first = bufs.iter().find(|b| !b.is_empty());
            let head = first.map(|b| &b[..b.len().min(*n)]).unwrap_or_default();
            this.wrote(head);
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// The body, cut off at `max` bytes (so a body sent without a length cannot run past the
/// limit) and failing if it has not all arrived within `timeout` of this call.
pub fn timed_body(body: Body, max: u64, timeout: Duration) -> Body {
    Body::from_async_read(TimedRead {
        inner: Box::pin(body.into_async_read().take(max)),
        deadline: Box::pin(tokio::time::sleep(timeout)),
    })
}

struct TimedRead {
    inner: Pin<Box<dyn AsyncRead + Send>>,
    deadline: Pin<Box<Sleep>>,
}

impl AsyncRead for TimedRead {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.deadline.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the request body did not arrive in time; send it whole without pausing",
            )));
        }
        this.inner.as_mut().poll_read(cx, buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn() -> HeadDeadline<()> {
        HeadDeadline::new((), Duration::from_secs(1))
    }

    #[tokio::test]
    async fn phases_follow_heads_answers_and_upgrades() {
        let mut c = conn();
        c.saw(b"GET / HTTP/1.1\r\nHost: x\r");
        assert_eq!(c.phase, Phase::Head { tail: 1 });
        c.saw(b"\n\r\n");
        assert_eq!(c.phase, Phase::Serving { answered: false });
        // A body with a blank line in it is not a new head; neither is an interim answer.
        c.wrote(b"HTTP/1.1 100 Continue\r\n\r\n");
        c.saw(b"{\"a\":\r\n\r\n1}");
        assert_eq!(c.phase, Phase::Serving { answered: false });
        c.wrote(b"HTTP/1.1 200 OK\r\n");
        assert_eq!(c.phase, Phase::Serving { answered: true });
        c.saw(b"GET /next");
        assert_eq!(c.phase, Phase::Head { tail: 0 });
        c.saw(b" HTTP/1.1\r\n\r\n");
        c.wrote(b"HTTP/1.1 101 Switching Protocols\r\n");
        assert_eq!(c.phase, Phase::Off);
        let mut h2 = conn();
        h2.saw(b"PRI * HTTP");
        h2.saw(b"/2.0\r\n\r\nSM\r\n\r\n");
        assert_eq!(h2.phase, Phase::Off);
    }
}

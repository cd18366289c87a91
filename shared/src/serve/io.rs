//! [`GuardedIo`]: a connection's socket with its [`ConnPermit`] and a write-stall timeout. A
//! client that stops reading (a download, a WebSocket) makes the hub's writes wait; after the
//! idle timeout without any byte taken the write fails and the connection closes, so a stalled
//! reader cannot hold a connection, a download link or buffered memory for ever.

use std::{
    future::Future,
    io,
    pin::Pin,
    task::{ready, Context, Poll},
    time::Duration,
};

use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::TcpStream,
    time::{sleep, Sleep},
};

use super::conns::ConnPermit;

/// A TCP stream that holds its connection permit and fails writes that stall too long.
#[derive(Debug)]
pub struct GuardedIo {
    stream: TcpStream,
    stall: Duration,
    deadline: Option<Pin<Box<Sleep>>>,
    _permit: ConnPermit,
}

impl GuardedIo {
    /// Wrap an accepted stream.
    pub fn new(stream: TcpStream, permit: ConnPermit, stall: Duration) -> Self {
        Self {
            stream,
            stall,
            deadline: None,
            _permit: permit,
        }
    }

    /// A write made no progress: arm the deadline if needed and fail once it passes.
    fn stalled(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        let stall = self.stall;
        let deadline = self.deadline.get_or_insert_with(|| Box::pin(sleep(stall)));
        ready!(deadline.as_mut().poll(cx));
        Poll::Ready(Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("the client took no byte for {}s", stall.as_secs()),
        )))
    }

    fn progressed(&mut self) {
        self.deadline = None;
    }
}

impl AsyncRead for GuardedIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for GuardedIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match Pin::new(&mut self.stream).poll_write(cx, buf) {
            Poll::Pending => self.stalled(cx),
            done => {
                self.progressed();
                done
            }
        }
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match Pin::new(&mut self.stream).poll_write_vectored(cx, bufs) {
            Poll::Pending => self.stalled(cx),
            done => {
                self.progressed();
                done
            }
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

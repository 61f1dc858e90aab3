//! `AsyncRead + AsyncWrite` over a session.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::mpsc::OwnedPermit;

use super::{InputCmd, SessionEvent, SessionReader, SessionWriter};

type PermitFuture = Pin<
    Box<
        dyn Future<Output = Result<OwnedPermit<InputCmd>, tokio::sync::mpsc::error::SendError<()>>>
            + Send,
    >,
>;
type FlushFuture = Pin<Box<dyn Future<Output = Result<(), super::SessionError>> + Send>>;

/// A session as a byte stream (see [`super::Session::into_stream`]).
///
/// Reading yields the remote output; `StdErr` bytes are interleaved in
/// arrival order, other events are skipped. EOF when the session closes; an
/// error when it fails. Writing queues input (with back-pressure);
/// `poll_shutdown` waits until all input is acknowledged.
pub struct SessionStream {
    writer: SessionWriter,
    reader: SessionReader,
    buf: Bytes,
    eof: bool,
    permit: Option<PermitFuture>,
    shutdown: Option<FlushFuture>,
}

impl std::fmt::Debug for SessionStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionStream")
            .field("buffered", &self.buf.len())
            .field("eof", &self.eof)
            .finish()
    }
}

impl SessionStream {
    pub(crate) fn new(writer: SessionWriter, reader: SessionReader) -> Self {
        Self {
            writer,
            reader,
            buf: Bytes::new(),
            eof: false,
            permit: None,
            shutdown: None,
        }
    }

    /// A clone of the writer, e.g. to resize the remote terminal.
    pub fn writer(&self) -> SessionWriter {
        self.writer.clone()
    }
}

impl AsyncRead for SessionStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            if !self.buf.is_empty() {
                let n = self.buf.len().min(out.remaining());
                out.put_slice(&self.buf[..n]);
                self.buf.advance(n);
                return Poll::Ready(Ok(()));
            }
            if self.eof {
                return Poll::Ready(Ok(()));
            }
            match ready!(self.reader.poll_event(cx)) {
                Some(SessionEvent::Output(b)) | Some(SessionEvent::StdErr(b)) => self.buf = b,
                Some(SessionEvent::Closed { .. }) | None => self.eof = true,
                Some(SessionEvent::Failed(e)) => {
                    self.eof = true;
                    return Poll::Ready(Err(io::Error::other(e)));
                }
                Some(_) => {}
            }
        }
    }
}

impl AsyncWrite for SessionStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        if data.is_empty() {
            return Poll::Ready(Ok(0));
        }
        if self.permit.is_none() {
            let tx = self.writer.input.clone();
            self.permit = Some(Box::pin(tx.reserve_owned()));
        }
        let Some(fut) = self.permit.as_mut() else {
            return Poll::Ready(Ok(0));
        };
        let res = ready!(fut.as_mut().poll(cx));
        self.permit = None;
        match res {
            Ok(permit) => {
                permit.send(InputCmd::Data(Bytes::copy_from_slice(data)));
                Poll::Ready(Ok(data.len()))
            }
            Err(_) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "the session is closed",
            ))),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // Queued input is handed to the driver; acknowledgement is awaited on shutdown.
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.shutdown.is_none() {
            let w = self.writer.clone();
            self.shutdown = Some(Box::pin(async move { w.flush().await }));
        }
        let Some(fut) = self.shutdown.as_mut() else {
            return Poll::Ready(Ok(()));
        };
        let res = ready!(fut.as_mut().poll(cx));
        self.shutdown = None;
        Poll::Ready(res.map_err(io::Error::other))
    }
}

//! Opening the data-channel WebSocket.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, error::UrlError};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::SessionError;

/// The WebSocket type the driver owns.
pub(crate) type Ws = WebSocketStream<MaybeTlsStream<BurstReader<TcpStream>>>;

/// Largest frame accepted from the peer. Data-channel messages are at most
/// a few KiB (120-byte header + ~1 KiB payload); this leaves ample room.
const MAX_MESSAGE: usize = 1 << 20;

/// Opens the WebSocket to `url` (used verbatim, no extra headers).
pub(crate) async fn open(url: &str, host: &str, timeout: Duration) -> Result<Ws, SessionError> {
    super::ensure_crypto_provider();
    // Small buffers: a data-channel frame is about 1.1 KiB, and thousands of
    // idle sessions may be open in one process. Bursts are read through
    // `BurstReader`, which holds memory only while data is waiting.
    let config = WebSocketConfig::default()
        .read_buffer_size(16 * 1024)
        .write_buffer_size(16 * 1024)
        .max_message_size(Some(MAX_MESSAGE))
        .max_frame_size(Some(MAX_MESSAGE));
    let connect_err = |source| SessionError::Connect {
        host: host.to_string(),
        source,
    };
    let fut = async {
        let request = url.into_client_request().map_err(connect_err)?;
        let uri = request.uri();
        let port = uri
            .port_u16()
            .or(match uri.scheme_str() {
                Some("wss") => Some(443),
                Some("ws") => Some(80),
                _ => None,
            })
            .ok_or_else(|| connect_err(UrlError::UnsupportedUrlScheme.into()))?;
        let name = uri
            .host()
            .ok_or_else(|| connect_err(UrlError::NoHostName.into()))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let tcp = TcpStream::connect((name.as_str(), port))
            .await
            .map_err(|e| connect_err(tungstenite::Error::Io(e)))?;
        // Keystrokes and acknowledgements are small: never hold them back.
        tcp.set_nodelay(true)
            .map_err(|e| connect_err(tungstenite::Error::Io(e)))?;
        tokio_tungstenite::client_async_tls_with_config(
            request,
            BurstReader::new(tcp),
            Some(config),
            None,
        )
        .await
        .map_err(connect_err)
    };
    match tokio::time::timeout(timeout, fut).await {
        Err(_) => Err(SessionError::ConnectTimeout(timeout)),
        Ok(Err(e)) => Err(e),
        Ok(Ok((ws, _response))) => Ok(ws),
    }
}

/// Size of one read from the socket while data is arriving.
const BURST: usize = 64 * 1024;

/// Reads the socket in bursts of up to [`BURST`] bytes and serves the
/// WebSocket layer's smaller reads from them: one system call for what
/// would otherwise take one per few frames. The buffer exists only while it
/// holds data, so idle sessions cost nothing here. Writes pass through.
#[derive(Debug)]
pub(crate) struct BurstReader<S> {
    inner: S,
    buf: Vec<u8>,
    pos: usize,
}

impl<S> BurstReader<S> {
    fn new(inner: S) -> Self {
        Self {
            inner,
            buf: Vec::new(),
            pos: 0,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for BurstReader<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.pos == this.buf.len() {
            if out.remaining() >= BURST {
                return Pin::new(&mut this.inner).poll_read(cx, out);
            }
            this.buf.resize(BURST, 0);
            let mut rb = ReadBuf::new(&mut this.buf);
            let res = Pin::new(&mut this.inner).poll_read(cx, &mut rb);
            let filled = rb.filled().len();
            match res {
                Poll::Ready(Ok(())) if filled > 0 => {
                    this.buf.truncate(filled);
                    this.pos = 0;
                }
                other => {
                    // Nothing to hold on to (pending, the end, or an error):
                    // give the memory back.
                    this.buf = Vec::new();
                    this.pos = 0;
                    return other;
                }
            }
        }
        let n = out.remaining().min(this.buf.len() - this.pos);
        out.put_slice(&this.buf[this.pos..this.pos + n]);
        this.pos += n;
        if this.pos == this.buf.len() {
            this.buf = Vec::new();
            this.pos = 0;
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for BurstReader<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, data)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
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

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use futures_util::FutureExt as _;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    #[tokio::test]
    async fn small_reads_are_served_from_one_burst_and_nothing_is_lost() {
        let (mut a, b) = tokio::io::duplex(1 << 20);
        let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        a.write_all(&data).await.unwrap();
        drop(a);
        let mut r = BurstReader::new(b);
        let mut got = Vec::new();
        let mut chunk = [0u8; 1000];
        loop {
            let n = r.read(&mut chunk).await.unwrap();
            if n == 0 {
                break;
            }
            got.extend_from_slice(&chunk[..n]);
            assert!(r.buf.len() <= BURST);
        }
        assert!(got == data);
        // Drained and at the end: no buffer kept.
        assert_eq!(r.buf.capacity(), 0);
    }

    #[tokio::test]
    async fn an_idle_reader_holds_no_buffer() {
        let (mut a, b) = tokio::io::duplex(1 << 16);
        let mut r = BurstReader::new(b);
        a.write_all(b"hello").await.unwrap();
        let mut chunk = [0u8; 16];
        let n = r.read(&mut chunk).await.unwrap();
        assert_eq!(&chunk[..n], b"hello");
        assert_eq!(r.buf.capacity(), 0, "served in full: buffer released");
        // Nothing more is readable: the read is pending and holds no buffer.
        assert!(r.read(&mut chunk).now_or_never().is_none());
        assert_eq!(r.buf.capacity(), 0);
        // Writes pass through.
        r.write_all(b"back").await.unwrap();
        let mut back = [0u8; 4];
        a.read_exact(&mut back).await.unwrap();
        assert_eq!(&back, b"back");
    }
}

//! Opening the data-channel WebSocket.

use std::time::Duration;

use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::SessionError;

/// The WebSocket type the driver owns.
pub(crate) type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Largest frame accepted from the peer. Data-channel messages are at most
/// a few KiB (120-byte header + ~1 KiB payload); this leaves ample room.
const MAX_MESSAGE: usize = 1 << 20;

/// Opens the WebSocket to `url` (used verbatim, no extra headers).
pub(crate) async fn open(url: &str, host: &str, timeout: Duration) -> Result<Ws, SessionError> {
    super::ensure_crypto_provider();
    // A small read buffer: a data-channel frame is about 1.1 KiB, and
    // thousands of idle sessions may be open in one process (it is allocated
    // up front). The write buffer grows only when used; it holds a batch of
    // acknowledgements (about 300 bytes each) until the driver flushes them.
    let config = WebSocketConfig::default()
        .read_buffer_size(16 * 1024)
        .write_buffer_size(64 * 1024)
        .max_message_size(Some(MAX_MESSAGE))
        .max_frame_size(Some(MAX_MESSAGE));
    let fut = tokio_tungstenite::connect_async_with_config(url, Some(config), true);
    match tokio::time::timeout(timeout, fut).await {
        Err(_) => Err(SessionError::ConnectTimeout(timeout)),
        Ok(Err(source)) => Err(SessionError::Connect {
            host: host.to_string(),
            source,
        }),
        Ok(Ok((ws, _response))) => Ok(ws),
    }
}

//! Opening the data-channel WebSocket.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::sync::OnceCell;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::SessionError;
use super::proxy::{self, Proxy};
use tokio_tungstenite::tungstenite::Error as WsError;

/// The WebSocket type the driver owns.
pub(crate) type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Sets how many received bytes make the socket readable (`SO_RCVLOWAT`):
/// while output streams in, a larger value spares the driver a wake-up for
/// every segment; 1 is the normal value. Lowering it wakes a waiting reader at
/// once when enough is queued. Returns whether the option was set.
///
/// Only on Linux 4.18 and later, where lowering the mark wakes the reader when
/// enough is already queued (before that, bytes under a raised mark would wait
/// for more to come). Raising it never shrinks the TCP receive window: the
/// kernel grows the receive buffer (and the window clamp) to fit the mark when
/// they are smaller, and leaves them alone otherwise.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
pub(crate) fn set_read_low_water(ws: &Ws, bytes: usize) -> bool {
    use std::os::fd::AsRawFd as _;
    if !low_water_wakes() {
        return false;
    }
    let fd = match ws.get_ref() {
        MaybeTlsStream::Plain(s) => s.as_raw_fd(),
        MaybeTlsStream::Rustls(s) => s.get_ref().0.as_raw_fd(),
        _ => return false,
    };
    let value = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    // SAFETY: `fd` is the open socket `ws` owns (borrowed for this call);
    // the option value is a c_int that lives across the call, its size given.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVLOWAT,
            (&raw const value).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    rc == 0
}

/// Linux 4.18 or later (read once from `/proc/sys/kernel/osrelease`).
#[cfg(target_os = "linux")]
fn low_water_wakes() -> bool {
    static OK: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *OK.get_or_init(|| {
        std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .is_ok_and(|r| kernel_at_least(&r, (4, 18)))
    })
}

/// Whether a kernel release string (`6.1.0-18-amd64`) is at least `want`.
#[cfg(any(target_os = "linux", test))]
fn kernel_at_least(release: &str, want: (u32, u32)) -> bool {
    let mut parts = release.trim().split(['.', '-']);
    let mut next = || parts.next().and_then(|p| p.parse::<u32>().ok());
    match (next(), next()) {
        (Some(major), Some(minor)) => (major, minor) >= want,
        _ => false,
    }
}

/// Elsewhere the option is left alone.
#[cfg(not(target_os = "linux"))]
pub(crate) fn set_read_low_water(_ws: &Ws, _bytes: usize) -> bool {
    false
}

/// Largest frame accepted from the peer. Data-channel messages are at most
/// a few KiB (120-byte header + ~1 KiB payload); this leaves ample room.
const MAX_MESSAGE: usize = 1 << 20;

/// The TLS configuration for `wss://` stream URLs: the system's trusted roots
/// (`SSL_CERT_FILE` / `SSL_CERT_DIR` honoured) and those of `AWS_CA_BUNDLE`,
/// loaded once per process.
/// Reading and parsing the system store takes 3 to 5 ms here, as long as the
/// rest of a session's start-up, so it is loaded while the TCP connection is
/// being made, and kept for reconnects and further sessions (a change to the
/// system store is seen by the next process).
static TLS: OnceCell<Arc<rustls::ClientConfig>> = OnceCell::const_new();

async fn tls_config() -> Result<Arc<rustls::ClientConfig>, WsError> {
    TLS.get_or_try_init(|| async {
        match tokio::task::spawn_blocking(load_tls_config).await {
            Ok(r) => r,
            Err(e) => Err(WsError::Io(std::io::Error::other(e))),
        }
    })
    .await
    .cloned()
}

fn load_tls_config() -> Result<Arc<rustls::ClientConfig>, WsError> {
    super::ensure_crypto_provider();
    let found = rustls_native_certs::load_native_certs();
    let mut roots = rustls::RootCertStore::empty();
    let (system, _ignored) = roots.add_parsable_certificates(found.certs);
    let bundle = crate::client::tls::aws_ca_bundle()
        .map_err(|e| WsError::Io(std::io::Error::new(std::io::ErrorKind::InvalidInput, e)))?;
    let (extra, _ignored) = roots.add_parsable_certificates(bundle);
    if system + extra == 0 {
        let why = found
            .errors
            .first()
            .map(|e| format!(" ({e})"))
            .unwrap_or_default();
        return Err(WsError::Io(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!(
                "no trusted root certificates found in the system store{why}; \
                 set SSL_CERT_FILE (or AWS_CA_BUNDLE) to a PEM bundle"
            ),
        )));
    }
    let provider = rustls::crypto::CryptoProvider::get_default()
        .cloned()
        .unwrap_or_else(|| Arc::new(rustls::crypto::ring::default_provider()));
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| WsError::Tls(e.into()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// A connection being opened, or opened, ahead of its session.
struct Warm {
    /// Scheme, host, port and the proxy route it went through.
    key: String,
    started: Instant,
    task: JoinHandle<Result<MaybeTlsStream<TcpStream>, WsError>>,
}

/// Connections opened by [`preconnect`] and not yet taken: a few at most.
/// Their keys are never logged (a proxy's credentials may be part of them).
static WARM: Mutex<Vec<Warm>> = Mutex::new(Vec::new());

/// A preconnected stream older than this is not used (a server may close a
/// connection on which no request came).
const WARM_MAX_AGE: Duration = Duration::from_secs(20);

/// At most this many preconnected streams wait at a time (one per address;
/// a process rarely expects more than one gateway).
const WARM_MAX: usize = 16;

/// What a connection to `host:port` is keyed by: the scheme, the address and
/// the proxy route; `None` when the proxy setting cannot be used (the
/// connection will fail and say why).
fn warm_key(proxy: &Proxy, tls: bool, host: &str, port: u16) -> Option<String> {
    let route = proxy.route_key(tls, host, port)?;
    Some(format!(
        "{}://{host}:{port} via {route}",
        if tls { "wss" } else { "ws" }
    ))
}

/// The scheme, host and port of a `ws://` or `wss://` URL.
fn address(url: &str) -> Result<(bool, String, u16), WsError> {
    let request = url.into_client_request()?;
    let uri = request.uri();
    let tls = uri.scheme_str() == Some("wss");
    let host = uri
        .host()
        .ok_or(WsError::Url(
            tokio_tungstenite::tungstenite::error::UrlError::NoHostName,
        ))?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
    Ok((tls, host, port))
}

/// Starts opening a connection (name lookup, TCP, proxy tunnel, TLS) to the
/// host and port of `url` in the background; the next WebSocket opened to
/// that address through the same proxy route, within 20 s, uses it. See
/// [`super::preconnect`].
pub(crate) fn preconnect(url: &str, proxy: &Proxy) {
    let Ok((tls, host, port)) = address(url) else {
        return;
    };
    let Some(key) = warm_key(proxy, tls, &host, port) else {
        return;
    };
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    let mut warm = WARM.lock().unwrap_or_else(PoisonError::into_inner);
    drop_stale(&mut warm);
    // One waiting per address is enough: each session takes one.
    if warm.len() >= WARM_MAX || warm.iter().any(|w| w.key == key) {
        return;
    }
    let proxy = proxy.clone();
    // Not the key: it may hold the proxy's credentials.
    tracing::debug!(%host, port, "preconnecting the data channel");
    let task = runtime.spawn(async move { stream(&proxy, tls, &host, port).await });
    warm.push(Warm {
        key,
        started: Instant::now(),
        task,
    });
}

/// Closes and forgets the connections older than [`WARM_MAX_AGE`].
fn drop_stale(warm: &mut Vec<Warm>) {
    warm.retain(|w| {
        let fresh = w.started.elapsed() < WARM_MAX_AGE;
        if !fresh {
            w.task.abort();
        }
        fresh
    });
}

/// A preconnected stream for `key`, if one was started: waited for if it is
/// still being opened. `None` when there is none, or it failed.
async fn take_warm(key: &str) -> Option<MaybeTlsStream<TcpStream>> {
    let task = {
        let mut warm = WARM.lock().unwrap_or_else(PoisonError::into_inner);
        drop_stale(&mut warm);
        let i = warm.iter().position(|w| w.key == key)?;
        warm.swap_remove(i).task
    };
    match task.await {
        Ok(Ok(stream)) => Some(stream),
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "the preconnected stream failed; connecting again");
            None
        }
        Err(_) => None,
    }
}

/// A connection to `host:port` through `proxy`, with TLS when `tls`: what a
/// WebSocket handshake is sent on.
async fn stream(
    proxy: &Proxy,
    tls: bool,
    host: &str,
    port: u16,
) -> Result<MaybeTlsStream<TcpStream>, WsError> {
    let tcp = async { Ok::<_, WsError>(proxy::connect(proxy, tls, host, port).await?) };
    if !tls {
        return Ok(MaybeTlsStream::Plain(tcp.await?));
    }
    // The name lookup and the TCP handshake (and the proxy's tunnel) overlap
    // the root store load.
    let (tcp, config) = tokio::join!(tcp, tls_config());
    let (tcp, config) = (tcp?, config?);
    let name = rustls::pki_types::ServerName::try_from(host.to_owned()).map_err(|_| {
        WsError::Tls(tokio_tungstenite::tungstenite::error::TlsError::InvalidDnsName)
    })?;
    let tls = tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await?;
    Ok(MaybeTlsStream::Rustls(tls))
}

/// Opens the WebSocket to `url` (used verbatim, no extra headers).
pub(crate) async fn open(
    url: &str,
    host: &str,
    timeout: Duration,
    proxy: &Proxy,
) -> Result<Ws, SessionError> {
    super::ensure_crypto_provider();
    match tokio::time::timeout(timeout, connect(url, proxy)).await {
        Err(_) => Err(SessionError::ConnectTimeout(timeout)),
        Ok(Err(source)) => Err(SessionError::Connect {
            host: host.to_string(),
            source,
        }),
        Ok(Ok(ws)) => Ok(ws),
    }
}

async fn connect(url: &str, proxy: &Proxy) -> Result<Ws, WsError> {
    // A small read buffer: a data-channel frame is about 1.1 KiB, and
    // thousands of idle sessions may be open in one process (it is allocated
    // up front). The write buffer grows only when used; it holds a batch of
    // acknowledgements (about 300 bytes each) until the driver flushes them.
    let config = WebSocketConfig::default()
        .read_buffer_size(16 * 1024)
        .write_buffer_size(64 * 1024)
        .max_message_size(Some(MAX_MESSAGE))
        .max_frame_size(Some(MAX_MESSAGE));
    let (tls, host, port) = address(url)?;
    if let Some(key) = warm_key(proxy, tls, &host, port)
        && let Some(warm) = take_warm(&key).await
    {
        match tokio_tungstenite::client_async_with_config(url, warm, Some(config)).await {
            Ok((ws, _response)) => return Ok(ws),
            // The server answered: a new connection would get the same answer.
            Err(e @ WsError::Http(_)) => return Err(e),
            // Closed by the server meanwhile, say: a new connection may do.
            Err(e) => {
                tracing::debug!(error = %e, "the preconnected stream was refused; connecting again")
            }
        }
    }
    let stream = stream(proxy, tls, &host, port).await?;
    let (ws, _response) =
        tokio_tungstenite::client_async_with_config(url, stream, Some(config)).await?;
    Ok(ws)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::session::{SessionOptions, preconnect as preconnect_options};

    fn waiting(key: &str) -> usize {
        WARM.lock().unwrap().iter().filter(|w| w.key == key).count()
    }

    /// The gateway a session is expected on: the AWS one of the region
    /// under the AWS-only policy, the one set, or none.
    #[test]
    fn the_gateway_follows_the_region_and_policy() {
        let aws = |region: &str| SessionOptions {
            expected_region: Some(region.to_string()),
            ..SessionOptions::default()
        };
        assert_eq!(
            aws("eu-west-3").gateway_url().as_deref(),
            Some("wss://ssmmessages.eu-west-3.amazonaws.com")
        );
        assert_eq!(
            aws("cn-north-1").gateway_url().as_deref(),
            Some("wss://ssmmessages.cn-north-1.amazonaws.com.cn")
        );
        assert_eq!(aws("us-isob-east-1").gateway_url(), None);
        assert_eq!(aws("not a region").gateway_url(), None);
        assert_eq!(SessionOptions::default().gateway_url(), None);
        assert_eq!(aws("eu-west-3").allow_any_host().gateway_url(), None);
        let set = SessionOptions {
            gateway: Some("wss://gw.example:8443".into()),
            ..aws("eu-west-3")
        };
        assert_eq!(set.gateway_url().as_deref(), Some("wss://gw.example:8443"));
    }

    /// A connection older than 20 s is not used, and is closed.
    #[tokio::test]
    async fn a_stale_preconnected_stream_is_closed_not_used() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let key = warm_key(&Proxy::none(), false, "127.0.0.1", port).unwrap();
        let task =
            tokio::spawn(async move { stream(&Proxy::none(), false, "127.0.0.1", port).await });
        WARM.lock().unwrap().push(Warm {
            key: key.clone(),
            started: Instant::now().checked_sub(WARM_MAX_AGE).unwrap(),
            task,
        });
        let (mut accepted, _) = listener.accept().await.unwrap();
        assert!(take_warm(&key).await.is_none());
        assert_eq!(waiting(&key), 0);
        // Closed: the other end reads its end.
        let mut buf = [0u8; 1];
        use tokio::io::AsyncReadExt as _;
        assert_eq!(accepted.read(&mut buf).await.unwrap(), 0);
    }

    /// One connection waits per address; none when preconnecting is off.
    #[tokio::test]
    async fn preconnect_opens_one_connection_per_address_unless_off() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let url = format!("ws://127.0.0.1:{port}");
        let key = warm_key(&Proxy::none(), false, "127.0.0.1", port).unwrap();
        let mut options = SessionOptions {
            gateway: Some(url),
            proxy: Proxy::none(),
            preconnect: false,
            ..SessionOptions::default()
        };
        preconnect_options(&options);
        assert_eq!(waiting(&key), 0);
        options.preconnect = true;
        preconnect_options(&options);
        preconnect_options(&options);
        assert_eq!(waiting(&key), 1);
        let _accepted = listener.accept().await.unwrap();
        assert!(matches!(
            take_warm(&key).await,
            Some(MaybeTlsStream::Plain(_))
        ));
        assert_eq!(waiting(&key), 0);
    }

    #[test]
    fn kernel_releases_compare() {
        assert!(kernel_at_least("6.18.44-fc-v657", (4, 18)));
        assert!(kernel_at_least("4.18.0-553.el8_10.x86_64", (4, 18)));
        assert!(kernel_at_least("5.10.0\n", (4, 18)));
        assert!(!kernel_at_least("4.14.336-257.562.amzn2.x86_64", (4, 18)));
        assert!(!kernel_at_least("3.10.0-1160.el7.x86_64", (4, 18)));
        assert!(!kernel_at_least("garbage", (4, 18)));
        assert!(!kernel_at_least("", (4, 18)));
    }

    /// Bytes that came in under a raised low-water mark are read once the
    /// mark is lowered again, without more bytes coming (else the end of a
    /// stream would wait for the next output).
    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn lowering_the_low_water_mark_lets_waiting_bytes_be_read() {
        use futures_util::{SinkExt as _, StreamExt as _};
        use tokio_tungstenite::tungstenite::Message;
        use tokio_tungstenite::tungstenite::protocol::Role;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (client, server) = tokio::join!(TcpStream::connect(addr), listener.accept());
        let mut ws = WebSocketStream::from_raw_socket(
            MaybeTlsStream::Plain(client.unwrap()),
            Role::Client,
            None,
        )
        .await;
        let mut peer =
            WebSocketStream::from_raw_socket(server.unwrap().0, Role::Server, None).await;
        if !set_read_low_water(&ws, 64 * 1024) {
            // A kernel before 4.18: the mark is never raised.
            assert!(!low_water_wakes());
            return;
        }
        peer.send(Message::binary(&b"tail of a stream"[..]))
            .await
            .unwrap();
        for _ in 0..20 {
            tokio::task::yield_now().await;
        }
        assert!(set_read_low_water(&ws, 1));
        let got = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("the bytes are read after lowering the mark");
        assert_eq!(
            got.unwrap().unwrap(),
            Message::binary(&b"tail of a stream"[..])
        );
    }

    #[tokio::test]
    async fn the_root_store_is_loaded_once_per_process() {
        match (tls_config().await, tls_config().await) {
            (Ok(a), Ok(b)) => assert!(Arc::ptr_eq(&a, &b), "loaded twice"),
            // No system store on this machine: nothing is cached, and the
            // error says what to do.
            (Err(a), Err(_)) => assert!(a.to_string().contains("SSL_CERT_FILE"), "{a}"),
            (a, b) => panic!("different outcomes: {a:?} / {b:?}"),
        }
    }
}

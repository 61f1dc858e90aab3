//! Proxies for the data channel's WebSocket: an HTTP `CONNECT` tunnel through
//! an `http://` proxy, chosen by the rules curl uses (and the REST client's
//! reqwest with it), so one set of `HTTPS_PROXY` / `NO_PROXY` settings covers
//! both the API calls and the shell.

use std::fmt;
use std::sync::Arc;

use http::{HeaderValue, Uri};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::connect::proxy::Tunnel;
use hyper_util::client::proxy::matcher::Matcher;
use tokio::net::TcpStream;
use tower_service::Service as _;

/// Which proxy the data channel's WebSocket goes through
/// ([`SessionOptions::proxy`](super::SessionOptions::proxy)).
///
/// The default reads the environment when a WebSocket is opened:
/// `HTTPS_PROXY` for `wss://` stream URLs (the service's), `HTTP_PROXY` for
/// `ws://` ones (an emulator's), `ALL_PROXY` for both, and `NO_PROXY` for the
/// hosts reached directly; lower-case names too, with curl's rules. The proxy
/// must be an `http://` one; `user:password@` in its URL is sent as Basic
/// `Proxy-Authorization`. The URL, its credentials included, never appears in
/// errors or `Debug` output: only its scheme, host and port do.
#[derive(Clone, Default)]
pub struct Proxy {
    rule: Rule,
}

#[derive(Clone, Default)]
enum Rule {
    #[default]
    Env,
    Never,
    Fixed(Arc<Matcher>),
}

impl Proxy {
    /// The proxy named by the environment at connect time (the default).
    pub fn from_env() -> Self {
        Self { rule: Rule::Env }
    }

    /// No proxy, whatever the environment says.
    pub fn none() -> Self {
        Self { rule: Rule::Never }
    }

    /// Every stream URL through the proxy at `url`
    /// (`http://[user:password@]host:port`), except the hosts in `no_proxy`
    /// (`NO_PROXY` syntax: comma-separated names, `.domain` suffixes, IP
    /// addresses and CIDR ranges, `*` for all; empty for none).
    pub fn url(url: &str, no_proxy: &str) -> Result<Self, ProxyError> {
        let matcher = Matcher::builder().all(url).no(no_proxy).build();
        // An unparsable URL makes a matcher that intercepts nothing.
        let probe = Uri::from_static("https://proxy-check.invalid/");
        let Some(intercept) = matcher.intercept(&probe) else {
            return Err(ProxyError::InvalidUrl);
        };
        if intercept.uri().scheme_str() != Some("http") {
            return Err(ProxyError::Unsupported(redacted(intercept.uri())));
        }
        Ok(Self {
            rule: Rule::Fixed(Arc::new(matcher)),
        })
    }

    /// The proxy to reach `host:port` through, if any (`tls`: a `wss://` URL).
    fn route(&self, tls: bool, host: &str, port: u16) -> Result<Option<Route>, ProxyError> {
        let env;
        let matcher = match &self.rule {
            Rule::Never => return Ok(None),
            Rule::Fixed(m) => m.as_ref(),
            Rule::Env => {
                env = Matcher::from_env();
                &env
            }
        };
        let scheme = if tls { "https" } else { "http" };
        let authority = if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        let Ok(dst) = format!("{scheme}://{authority}/").parse::<Uri>() else {
            return Ok(None);
        };
        let Some(intercept) = matcher.intercept(&dst) else {
            return Ok(None);
        };
        let uri = intercept.uri().clone();
        if uri.scheme_str() != Some("http") {
            return Err(ProxyError::Unsupported(redacted(&uri)));
        }
        Ok(Some(Route {
            shown: redacted(&uri),
            uri,
            auth: intercept.basic_auth().cloned(),
            dst,
        }))
    }
}

impl Proxy {
    /// Which way a connection to `host:port` goes: `direct`, or the proxy's
    /// URI; `None` when the setting cannot be used. Two connections with the
    /// same key are interchangeable. Never shown: it may hold credentials.
    pub(crate) fn route_key(&self, tls: bool, host: &str, port: u16) -> Option<String> {
        match self.route(tls, host, port) {
            Ok(None) => Some("direct".to_owned()),
            Ok(Some(route)) => Some(format!("{} {:?}", route.uri, route.auth)),
            Err(_) => None,
        }
    }
}

impl fmt::Debug for Proxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.rule {
            Rule::Env => f.write_str("Proxy::FromEnv"),
            Rule::Never => f.write_str("Proxy::None"),
            // hyper-util's Debug shows the proxy's URI without credentials.
            Rule::Fixed(m) => f.debug_tuple("Proxy::Fixed").field(m).finish(),
        }
    }
}

/// A proxy setting that cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProxyError {
    /// The URL is not one of a proxy.
    #[error("invalid proxy URL: expected http://[user:password@]host:port")]
    InvalidUrl,
    /// A proxy other than `http://` (shown without credentials).
    #[error("the data channel can only use an http:// proxy, not {0}")]
    Unsupported(String),
    /// The proxy could not be reached.
    #[error("cannot connect to the proxy {proxy}")]
    Unreachable {
        /// The proxy (scheme, host and port).
        proxy: String,
        /// The cause.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The proxy wants credentials, or refused the ones given.
    #[error(
        "the proxy {proxy} asks for credentials (407 Proxy Authentication Required){}",
        if *.sent { "; it refused the ones in its URL" } else { "; give them in its URL: http://user:password@host:port" }
    )]
    AuthRequired {
        /// The proxy (scheme, host and port).
        proxy: String,
        /// Whether credentials were sent.
        sent: bool,
    },
    /// The proxy answered the `CONNECT` with something other than 200.
    #[error("the proxy {proxy} refused to open a tunnel to {target}")]
    Refused {
        /// The proxy (scheme, host and port).
        proxy: String,
        /// The stream URL's host and port.
        target: String,
    },
    /// The exchange with the proxy failed.
    #[error("the proxy {proxy} failed while opening a tunnel to {target}: {reason}")]
    Failed {
        /// The proxy (scheme, host and port).
        proxy: String,
        /// The stream URL's host and port.
        target: String,
        /// What went wrong.
        reason: String,
    },
}

/// hyper-util's tunnel error (its type is public, its module is not).
type TunnelError = <Tunnel<HttpConnector> as tower_service::Service<Uri>>::Error;

struct Route {
    uri: Uri,
    shown: String,
    auth: Option<HeaderValue>,
    dst: Uri,
}

/// `scheme://host:port` of a proxy URI (hyper-util has already taken the
/// credentials out of it).
fn redacted(uri: &Uri) -> String {
    let scheme = uri.scheme_str().unwrap_or("http");
    let host = uri.host().unwrap_or("?");
    match uri.port_u16() {
        Some(p) => format!("{scheme}://{host}:{p}"),
        None => format!("{scheme}://{host}"),
    }
}

/// A TCP connection to `host:port`: direct, or through the proxy `proxy`
/// picks for it.
pub(crate) async fn connect(
    proxy: &Proxy,
    tls: bool,
    host: &str,
    port: u16,
) -> Result<TcpStream, std::io::Error> {
    let route = proxy
        .route(tls, host, port)
        .map_err(std::io::Error::other)?;
    let Some(route) = route else {
        let stream = TcpStream::connect((host, port)).await?;
        stream.set_nodelay(true)?;
        return Ok(stream);
    };
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let sent = route.auth.is_some();
    let mut tunnel = Tunnel::new(route.uri, connector);
    if let Some(auth) = route.auth {
        tunnel = tunnel.with_auth(auth);
    }
    let target = format!("{host}:{port}");
    tracing::debug!(proxy = %route.shown, %target, "opening a tunnel for the data channel");
    let opened = async {
        std::future::poll_fn(|cx| tunnel.poll_ready(cx)).await?;
        tunnel.call(route.dst).await
    };
    let proxy = route.shown;
    match opened.await {
        Ok(io) => Ok(io.into_inner()),
        Err(e) => Err(std::io::Error::other(match e {
            TunnelError::ConnectFailed(source) => ProxyError::Unreachable { proxy, source },
            TunnelError::ProxyAuthRequired => ProxyError::AuthRequired { proxy, sent },
            TunnelError::TunnelUnsuccessful => ProxyError::Refused { proxy, target },
            TunnelError::TunnelUnexpectedEof => ProxyError::Failed {
                proxy,
                target,
                reason: "it closed the connection".into(),
            },
            TunnelError::ProxyHeadersTooLong => ProxyError::Failed {
                proxy,
                target,
                reason: "its response headers are too long".into(),
            },
            TunnelError::Io(e) => ProxyError::Failed {
                proxy,
                target,
                reason: e.to_string(),
            },
            other => ProxyError::Failed {
                proxy,
                target,
                reason: other.to_string(),
            },
        })),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_fixed_proxy_routes_all_but_no_proxy_hosts() {
        let p = Proxy::url(
            "http://user:s3cret@proxy.example:3128",
            "internal.example, 10.0.0.0/8",
        )
        .unwrap();
        let r = p
            .route(true, "ssmmessages.us-east-1.amazonaws.com", 443)
            .unwrap()
            .unwrap();
        assert_eq!(r.shown, "http://proxy.example:3128");
        assert_eq!(r.dst, "https://ssmmessages.us-east-1.amazonaws.com:443/");
        assert_eq!(
            r.auth.as_ref().map(|a| a.as_bytes().to_vec()),
            Some(b"Basic dXNlcjpzM2NyZXQ=".to_vec())
        );
        let plain = p.route(false, "127.0.0.1", 8080).unwrap().unwrap();
        assert_eq!(plain.dst, "http://127.0.0.1:8080/");
        assert!(plain.auth.is_some());
        assert!(p.route(true, "a.internal.example", 443).unwrap().is_none());
        assert!(p.route(true, "10.1.2.3", 443).unwrap().is_none());
        let v6 = p.route(true, "::1", 443).unwrap().unwrap();
        assert_eq!(v6.dst, "https://[::1]:443/");
        assert!(
            Proxy::none()
                .route(true, "example.com", 443)
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn bad_and_unsupported_proxies_are_refused_without_their_credentials() {
        for bad in ["", "not a url at all", "ftp://proxy:21"] {
            assert!(
                matches!(Proxy::url(bad, ""), Err(ProxyError::InvalidUrl)),
                "{bad}"
            );
        }
        let e = Proxy::url("socks5://u:hunter2@proxy.example:1080", "").unwrap_err();
        let shown = e.to_string();
        assert!(shown.contains("socks5://proxy.example:1080"), "{shown}");
        assert!(!shown.contains("hunter2"), "{shown}");
        let e = Proxy::url("https://u:hunter2@proxy.example", "").unwrap_err();
        assert!(e.to_string().contains("https://proxy.example"), "{e}");
        let p = Proxy::url("http://u:hunter2@proxy.example:3128", "").unwrap();
        let debug = format!("{p:?}");
        assert!(!debug.contains("hunter2"), "{debug}");
        assert!(debug.contains("proxy.example"), "{debug}");
    }

    #[test]
    fn auth_errors_say_what_to_do() {
        let asked = ProxyError::AuthRequired {
            proxy: "http://p:3128".into(),
            sent: false,
        };
        assert!(
            asked.to_string().contains("http://user:password@host:port"),
            "{asked}"
        );
        let refused = ProxyError::AuthRequired {
            proxy: "http://p:3128".into(),
            sent: true,
        };
        assert!(
            refused.to_string().contains("refused the ones in its URL"),
            "{refused}"
        );
    }
}

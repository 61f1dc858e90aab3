//! A reqwest-backed HTTP client for aws-config's credential and region providers
//! (STS, SSO, IMDS, container endpoints). aws-config is built without its own HTTPS
//! client, so one must be supplied.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::HttpRequest;
use aws_smithy_runtime_api::client::result::ConnectorError;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::body::SdkBody;

type Key = (Option<Duration>, Option<Duration>);

/// One reqwest client per distinct (connect, read) timeout pair, as the trait asks
/// connectors to be cached. IMDS uses 1 s timeouts, so honouring them matters.
#[derive(Debug, Default)]
pub(crate) struct ReqwestHttpClient {
    cache: Mutex<HashMap<Key, SharedHttpConnector>>,
}

#[derive(Debug, Clone)]
enum Conn {
    Ready(reqwest::Client),
    /// The client could not be built; every call fails with this message.
    Broken(String),
}

impl HttpConnector for Conn {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let client = match self {
            Conn::Ready(c) => c.clone(),
            Conn::Broken(msg) => {
                let msg = msg.clone();
                return HttpConnectorFuture::new(async move {
                    Err(ConnectorError::other(msg.into(), None))
                });
            }
        };
        HttpConnectorFuture::new(async move {
            let req = request
                .try_into_http1x()
                .map_err(|e| ConnectorError::user(e.into()))?;
            let (parts, body) = req.into_parts();
            // Credential-provider requests (STS, SSO, IMDS, ECS) have in-memory bodies.
            let body = body.bytes().map(|b| b.to_vec()).unwrap_or_default();
            let resp = client
                .request(parts.method, parts.uri.to_string())
                .headers(parts.headers)
                .body(body)
                .send()
                .await
                .map_err(map_err)?;
            let status = resp.status();
            let headers = resp.headers().clone();
            let bytes = resp.bytes().await.map_err(map_err)?;
            let mut out = http::Response::builder()
                .status(status)
                .body(SdkBody::from(bytes))
                .map_err(|e| ConnectorError::other(e.into(), None))?;
            *out.headers_mut() = headers;
            out.try_into()
                .map_err(|e: aws_smithy_runtime_api::http::HttpError| {
                    ConnectorError::other(e.into(), None)
                })
        })
    }
}

fn map_err(e: reqwest::Error) -> ConnectorError {
    if e.is_timeout() {
        ConnectorError::timeout(e.into())
    } else {
        ConnectorError::io(e.into())
    }
}

impl HttpClient for ReqwestHttpClient {
    fn http_connector(
        &self,
        settings: &HttpConnectorSettings,
        _components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        let key = (settings.connect_timeout(), settings.read_timeout());
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        cache
            .entry(key)
            .or_insert_with(|| {
                super::ensure_crypto_provider();
                let mut b = reqwest::Client::builder();
                if let Some(t) = key.0 {
                    b = b.connect_timeout(t);
                }
                if let Some(t) = key.1 {
                    b = b.read_timeout(t);
                }
                // The credential providers talk to https (STS, SSO) and plain
                // http (IMDS, container endpoints); give them the same roots.
                let b = match super::tls::configure(b, "https://") {
                    Ok(b) => b,
                    Err(e) => return SharedHttpConnector::new(Conn::Broken(e)),
                };
                let conn = match b.build() {
                    Ok(c) => Conn::Ready(c),
                    Err(e) => Conn::Broken(format!("could not build an HTTP client: {e}")),
                };
                SharedHttpConnector::new(conn)
            })
            .clone()
    }
}

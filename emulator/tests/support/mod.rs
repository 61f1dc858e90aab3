//! Test client: signs requests with the emulator's own SigV4 signer.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::SystemTime;

pub use cloudshell_emulator::*;
use reqwest::header::HeaderMap;
use serde_json::Value;

pub const ACCESS_KEY: &str = "AKIDEXAMPLE";
pub const SECRET_KEY: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
pub const REGION: &str = "us-east-1";

pub fn creds() -> AcceptedCredentials {
    AcceptedCredentials::new(ACCESS_KEY, SECRET_KEY)
}

#[derive(Clone)]
pub struct Client {
    pub http: reqwest::Client,
    pub endpoint: String,
    pub host: String,
    pub creds: AcceptedCredentials,
    pub region: String,
}

/// How to sign a raw request.
pub struct Raw<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub body: Vec<u8>,
    pub content_type: Option<&'a str>,
    pub sign: bool,
    pub region: &'a str,
    pub service: &'a str,
    pub at: SystemTime,
    pub creds: AcceptedCredentials,
    /// Body actually sent (if different from the signed one).
    pub send_body: Option<Vec<u8>>,
}

impl Client {
    pub fn new(endpoint: &str, creds: AcceptedCredentials) -> Self {
        let host = endpoint.trim_start_matches("http://").to_owned();
        // reqwest is built without a bundled provider; plain HTTP still needs one.
        let _ = rustls::crypto::ring::default_provider().install_default();
        Self {
            http: reqwest::Client::builder().build().unwrap(),
            endpoint: endpoint.to_owned(),
            host,
            creds,
            region: REGION.into(),
        }
    }

    pub fn raw_defaults(&self, op: &str, body: Vec<u8>) -> Raw<'static> {
        Raw {
            method: "POST",
            path: Box::leak(format!("/{op}").into_boxed_str()),
            body,
            content_type: Some("application/x-amz-json-1.1"),
            sign: true,
            region: Box::leak(self.region.clone().into_boxed_str()),
            service: "cloudshell",
            at: SystemTime::now(),
            creds: self.creds.clone(),
            send_body: None,
        }
    }

    pub async fn raw(&self, r: Raw<'_>) -> (u16, HeaderMap, Vec<u8>) {
        let mut headers = vec![("host".to_string(), self.host.clone())];
        if let Some(ct) = r.content_type {
            headers.push(("content-type".into(), ct.into()));
        }
        let mut req = self.http.request(
            reqwest::Method::from_bytes(r.method.as_bytes()).unwrap(),
            format!("{}{}", self.endpoint, r.path),
        );
        if r.sign {
            let auth = sigv4::sign(
                r.method,
                r.path,
                "",
                &mut headers,
                &r.body,
                &r.creds,
                r.region,
                r.service,
                r.at,
            );
            headers.push(("authorization".into(), auth));
        }
        for (k, v) in &headers {
            if k != "host" {
                req = req.header(k, v);
            }
        }
        let resp = req
            .body(r.send_body.unwrap_or(r.body))
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let bytes = resp.bytes().await.unwrap().to_vec();
        (status, headers, bytes)
    }

    /// Signed POST of a JSON body; returns status, headers, parsed JSON.
    pub async fn call(&self, op: &str, body: Value) -> (u16, HeaderMap, Value) {
        let (s, h, b) = self
            .raw(self.raw_defaults(op, serde_json::to_vec(&body).unwrap()))
            .await;
        let v = if b.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&b).unwrap_or_else(|e| {
                panic!("{op}: non-JSON body ({e}): {}", String::from_utf8_lossy(&b))
            })
        };
        (s, h, v)
    }

    /// Expect success; return the body.
    pub async fn ok(&self, op: &str, body: Value) -> Value {
        let (s, _, v) = self.call(op, body).await;
        assert_eq!(s, 200, "{op} failed: {v}");
        v
    }

    /// Expect an error; return (status, code, message) after checking the
    /// header and body agree.
    pub async fn err(&self, op: &str, body: Value) -> (u16, String, String) {
        let (s, h, v) = self.call(op, body).await;
        assert!(s >= 400, "{op} unexpectedly succeeded: {v}");
        let code = v["code"].as_str().unwrap_or_default().to_owned();
        assert_eq!(
            h.get("x-amzn-errortype").and_then(|v| v.to_str().ok()),
            Some(code.as_str())
        );
        assert!(h.contains_key("x-amzn-requestid"));
        (
            s,
            code,
            v["message"].as_str().unwrap_or_default().to_owned(),
        )
    }
}

pub struct TestEmulator {
    pub handle: EmulatorHandle,
    pub client: Client,
    pub clock: ManualClock,
    pub dir: tempfile::TempDir,
}

impl TestEmulator {
    pub async fn start(timings: Timings) -> Self {
        Self::start_with(timings, |c| c).await
    }

    pub async fn start_with(
        timings: Timings,
        tweak: impl FnOnce(EmulatorConfig) -> EmulatorConfig,
    ) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let clock = ManualClock::starting_now();
        let config = tweak(
            EmulatorConfig::new(dir.path())
                .with_credentials(creds())
                .with_timings(timings)
                .with_clock(Arc::new(clock.clone())),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let handle = Emulator::start(config, listener).await.unwrap();
        let client = Client::new(&handle.endpoint(), creds());
        Self {
            handle,
            client,
            clock,
            dir,
        }
    }
}

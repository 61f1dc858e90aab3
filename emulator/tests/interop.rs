//! The emulator's hand-written SigV4 verifier accepts what the AWS SDK's
//! `aws-sigv4` signs (the signer the client uses), and still rejects tampering.
#![allow(clippy::unwrap_used)]

mod support;

use std::time::SystemTime;

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use serde_json::{Value, json};
use support::*;

async fn sdk_signed(
    t: &TestEmulator,
    op: &str,
    body: &[u8],
    send_body: &[u8],
    session_token: Option<&str>,
    region: &str,
) -> (u16, Value) {
    let url = format!("{}/{op}", t.handle.endpoint());
    let identity: Identity = Credentials::new(
        ACCESS_KEY,
        SECRET_KEY,
        session_token.map(str::to_owned),
        None,
        "test",
    )
    .into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name("cloudshell")
        .time(SystemTime::now())
        .settings(SigningSettings::default())
        .build()
        .unwrap()
        .into();
    let host = t.client.host.clone();
    let headers = [
        ("content-type", "application/x-amz-json-1.1"),
        ("host", host.as_str()),
    ];
    let signable =
        SignableRequest::new("POST", &url, headers.into_iter(), SignableBody::Bytes(body)).unwrap();
    let (instructions, _) = sign(signable, &params).unwrap().into_parts();
    let mut req = t
        .client
        .http
        .post(&url)
        .header("content-type", "application/x-amz-json-1.1");
    for (k, v) in instructions.headers() {
        req = req.header(k, v);
    }
    let resp = req.body(send_body.to_vec()).send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap())
}

#[tokio::test]
async fn aws_sigv4_signed_requests_are_accepted() {
    let t = TestEmulator::start(Timings::instant()).await;
    let (s, v) = sdk_signed(&t, "createEnvironment", b"{}", b"{}", None, REGION).await;
    assert_eq!(s, 200, "{v}");
    let id = v["EnvironmentId"].as_str().unwrap().to_owned();
    // Temporary credentials: the signed x-amz-security-token header is covered.
    let body = serde_json::to_vec(&json!({"EnvironmentId": id})).unwrap();
    let (s, v) = sdk_signed(
        &t,
        "getEnvironmentStatus",
        &body,
        &body,
        Some("FwoGZXIvYXdzEXAMPLE"),
        REGION,
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["Status"], "RUNNING");
    let recorded = t.handle.requests();
    let last = recorded.last().unwrap();
    assert_eq!(last.header("x-amz-security-token"), Some("<redacted>"));
    // Empty body for DescribeEnvironments.
    let (s, v) = sdk_signed(&t, "describeEnvironments", b"", b"", None, REGION).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["Environments"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn aws_sigv4_signed_requests_are_still_checked() {
    let t = TestEmulator::start(Timings::instant()).await;
    let (s, v) = sdk_signed(&t, "createEnvironment", b"{}", b"{ }", None, REGION).await;
    assert_eq!(
        (s, v["code"].as_str()),
        (403, Some("InvalidSignatureException"))
    );
    let (s, v) = sdk_signed(&t, "createEnvironment", b"{}", b"{}", None, "eu-west-1").await;
    assert_eq!(
        (s, v["code"].as_str()),
        (403, Some("InvalidSignatureException"))
    );
    assert!(t.handle.environments().is_empty());
}

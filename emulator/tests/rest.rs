//! REST side of the emulator, over real HTTP on 127.0.0.1:0.
#![allow(clippy::unwrap_used)]

mod support;

use std::time::{Duration, SystemTime};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};
use support::*;

fn env_id(v: &Value) -> String {
    v["EnvironmentId"].as_str().unwrap().to_owned()
}

fn vpc(n: u32) -> Value {
    json!({"VpcId": format!("vpc-0abc{n}"), "SubnetIds": ["subnet-0a1"], "SecurityGroupIds": ["sg-0c1"]})
}

/// A RUNNING default environment (instant timings).
async fn running_env(t: &TestEmulator) -> String {
    let id = env_id(&t.client.ok("createEnvironment", json!({})).await);
    let v = t
        .client
        .ok("getEnvironmentStatus", json!({"EnvironmentId": id}))
        .await;
    assert_eq!(v["Status"], "RUNNING");
    id
}

async fn status(t: &TestEmulator, id: &str) -> String {
    let v = t
        .client
        .ok("getEnvironmentStatus", json!({"EnvironmentId": id}))
        .await;
    v["Status"].as_str().unwrap().to_owned()
}

// ---------------------------------------------------------------- happy paths

#[tokio::test]
async fn describe_create_status() {
    let t = TestEmulator::start(Timings::instant()).await;
    let (s, h, v) = t.client.call("describeEnvironments", json!({})).await;
    assert_eq!(s, 200);
    assert_eq!(
        h.get("content-type").unwrap().to_str().unwrap(),
        "application/json"
    );
    assert!(h.contains_key("x-amzn-requestid"));
    assert_eq!(v, json!({"Environments": []}));

    let v = t.client.ok("createEnvironment", json!({})).await;
    let id = env_id(&v);
    assert!(uuid::Uuid::try_parse(&id).is_ok());
    assert_eq!(v["Status"], "CREATING");
    assert!(v["StartScreenMessages"].is_array());
    assert_eq!(v["StartScreenMessages"][0]["type"], "INFO");

    let v = t
        .client
        .ok("getEnvironmentStatus", json!({"EnvironmentId": id}))
        .await;
    assert_eq!(v, json!({"EnvironmentId": id, "Status": "RUNNING"}));

    // Get-or-create: same id, current status, nothing else changes.
    let v = t.client.ok("createEnvironment", json!({})).await;
    assert_eq!(env_id(&v), id);
    assert_eq!(v["Status"], "RUNNING");

    let v = t.client.ok("describeEnvironments", json!({})).await;
    assert_eq!(
        v,
        json!({"Environments": [{"EnvironmentId": id, "Status": "RUNNING"}]})
    );
    t.handle.shutdown().await;
}

#[tokio::test]
async fn describe_accepts_empty_body_and_any_content_type() {
    let t = TestEmulator::start(Timings::instant()).await;
    for ct in [
        None,
        Some("application/json"),
        Some("application/x-amz-json-1.1"),
        Some("text/plain"),
    ] {
        let mut raw = t.client.raw_defaults("describeEnvironments", Vec::new());
        raw.content_type = ct;
        let (s, _, b) = t.client.raw(raw).await;
        assert_eq!(s, 200, "{ct:?}: {}", String::from_utf8_lossy(&b));
        let v: Value = serde_json::from_slice(&b).unwrap();
        assert!(v["Environments"].is_array());
    }
}

#[tokio::test]
async fn describe_status_switch() {
    let t = TestEmulator::start_with(Timings::instant(), |mut c| {
        c.describe_includes_status = false;
        c
    })
    .await;
    let id = running_env(&t).await;
    let v = t.client.ok("describeEnvironments", json!({})).await;
    assert_eq!(v, json!({"Environments": [{"EnvironmentId": id}]}));
}

#[tokio::test]
async fn stop_start_delete_with_instant_timings() {
    let t = TestEmulator::start(Timings::instant()).await;
    let id = running_env(&t).await;

    let v = t
        .client
        .ok("stopEnvironment", json!({"EnvironmentId": id}))
        .await;
    assert_eq!(v, json!({"EnvironmentId": id}));
    assert_eq!(status(&t, &id).await, "SUSPENDED");

    let v = t
        .client
        .ok("startEnvironment", json!({"EnvironmentId": id}))
        .await;
    assert_eq!(v, json!({"EnvironmentId": id}));
    assert_eq!(status(&t, &id).await, "RUNNING");

    let v = t
        .client
        .ok("deleteEnvironment", json!({"EnvironmentId": id}))
        .await;
    assert_eq!(v, json!({}));
    let (s, code, msg) = t
        .client
        .err("getEnvironmentStatus", json!({"EnvironmentId": id}))
        .await;
    assert_eq!((s, code.as_str()), (400, "ResourceNotFoundException"));
    assert!(msg.contains(&id));
    let v = t.client.ok("describeEnvironments", json!({})).await;
    assert_eq!(v, json!({"Environments": []}));
    assert!(t.handle.environment(&id).is_none());

    // A new default environment can be created afterwards, with a new id.
    let v = t.client.ok("createEnvironment", json!({})).await;
    assert_ne!(env_id(&v), id);
}

/// With a stream base configured (a TLS front or a relay in front of the
/// gateway), stream URLs name it instead of the emulator's own listener.
#[tokio::test]
async fn stream_urls_name_the_configured_base() {
    let t = TestEmulator::start_with(Timings::instant(), |mut c| {
        c.stream_base = Some("wss://gateway.test:8443".into());
        c
    })
    .await;
    let id = running_env(&t).await;
    let v = t
        .client
        .ok("createSession", json!({"EnvironmentId": id}))
        .await;
    let sid = v["SessionId"].as_str().unwrap();
    let url = v["StreamUrl"].as_str().unwrap();
    let prefix = format!(
        "wss://gateway.test:8443/v1/data-channel/{sid}?role=publish_subscribe&cell-number="
    );
    assert!(url.starts_with(&prefix), "{url}");
}

#[tokio::test]
async fn sessions_heartbeats_and_stream_url() {
    let t = TestEmulator::start(Timings::instant()).await;
    let id = running_env(&t).await;
    let tab = uuid::Uuid::new_v4().to_string();
    let v = t
        .client
        .ok(
            "createSession",
            json!({"EnvironmentId": id, "TabId": tab, "SessionType": "TMUX", "QCliDisabled": true}),
        )
        .await;
    assert_eq!(v["EnvironmentId"], id.as_str());
    let sid = v["SessionId"].as_str().unwrap().to_owned();
    let (digits, hexpart) = sid.split_once('-').unwrap();
    assert_eq!(digits.len(), 19);
    assert!(digits.bytes().all(|b| b.is_ascii_digit()));
    assert_eq!(hexpart.len(), 17);
    assert!(hexpart.bytes().all(|b| b.is_ascii_hexdigit()));
    let token = v["TokenValue"].as_str().unwrap().to_owned();
    assert!(token.len() >= 64);
    let url = v["StreamUrl"].as_str().unwrap();
    let prefix = format!(
        "ws://{}/v1/data-channel/{sid}?role=publish_subscribe&cell-number=",
        t.handle.local_addr()
    );
    assert!(url.starts_with(&prefix), "{url}");
    let cell = &url[prefix.len()..];
    assert!(STANDARD.decode(cell).is_ok(), "{cell}");
    assert!(cell.contains('+') && cell.contains('/') && cell.contains('='));

    // Bare request (as the Console's helper sessions do).
    let v2 = t
        .client
        .ok("createSession", json!({"EnvironmentId": id}))
        .await;
    assert_ne!(v2["SessionId"], v["SessionId"]);
    assert_ne!(v2["TokenValue"], v["TokenValue"]);

    let snap = t.handle.environment(&id).unwrap();
    assert_eq!(snap.sessions.len(), 2);
    let rec = snap.sessions.iter().find(|s| s.session_id == sid).unwrap();
    assert_eq!(rec.tab_id.as_deref(), Some(tab.as_str()));
    assert_eq!(rec.session_type.as_deref(), Some("TMUX"));
    assert_eq!(rec.q_cli_disabled, Some(true));
    assert!(rec.token.matches(&token));
    assert!(!format!("{snap:?}").contains(&token));

    for _ in 0..3 {
        let v = t
            .client
            .ok("sendHeartBeat", json!({"EnvironmentId": id}))
            .await;
        assert_eq!(v, json!({}));
    }
    let snap = t.handle.environment(&id).unwrap();
    assert_eq!(snap.heartbeats, 3);
    assert!(snap.last_heartbeat.is_some());

    for _ in 0..2 {
        let v = t
            .client
            .ok(
                "deleteSession",
                json!({"EnvironmentId": id, "SessionId": sid}),
            )
            .await;
        assert_eq!(v, json!({}));
    }
    let snap = t.handle.environment(&id).unwrap();
    assert_eq!(snap.sessions.len(), 1);
    // Deleting the environment closes its remaining sessions.
    let mut events = t.handle.subscribe();
    t.client
        .ok("deleteEnvironment", json!({"EnvironmentId": id}))
        .await;
    let ev = events.recv().await.unwrap();
    assert_eq!(
        ev,
        StateEvent::SessionClosed {
            session_id: v2["SessionId"].as_str().unwrap().to_owned(),
            environment_id: id.clone()
        }
    );
}

#[tokio::test]
async fn file_transfer_urls() {
    let t = TestEmulator::start(Timings::instant()).await;
    let id = running_env(&t).await;
    for (op, member) in [
        ("getFileUploadUrls", "FileUploadPath"),
        ("getFileDownloadUrls", "FileDownloadPath"),
    ] {
        let v = t
            .client
            .ok(
                op,
                json!({"EnvironmentId": id, member: "/home/cloudshell-user/Cloud.svg"}),
            )
            .await;
        let upload = v["FileUploadPresignedUrl"].as_str().unwrap();
        assert!(
            upload.starts_with(&format!("{}/_s3/", t.handle.endpoint())),
            "{upload}"
        );
        let fields = v["FileUploadPresignedFields"].as_object().unwrap();
        let key = fields["key"].as_str().unwrap();
        assert!(key.starts_with(&id) && key.ends_with("/Cloud.svg"), "{key}");
        assert_eq!(
            fields["x-amz-server-side-encryption-customer-algorithm"],
            "AES256"
        );
        let sse_key = fields["x-amz-server-side-encryption-customer-key"]
            .as_str()
            .unwrap();
        assert_eq!(STANDARD.decode(sse_key).unwrap().len(), 32);
        assert_eq!(v["FileDownloadPresignedKey"], sse_key);
        let md5 = v["FileDownloadPresignedKeyHash"].as_str().unwrap();
        assert_eq!(STANDARD.decode(md5).unwrap().len(), 16);
        assert_eq!(fields["x-amz-server-side-encryption-customer-key-MD5"], md5);
        for f in [
            "X-Amz-Algorithm",
            "X-Amz-Credential",
            "X-Amz-Date",
            "X-Amz-Signature",
        ] {
            assert!(fields.contains_key(f), "{f} missing");
        }
        let policy: Value =
            serde_json::from_slice(&STANDARD.decode(fields["Policy"].as_str().unwrap()).unwrap())
                .unwrap();
        assert!(policy["expiration"].as_str().unwrap().ends_with('Z'));
        let range = policy["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c[0] == "content-length-range")
            .unwrap();
        assert_eq!(range[2], 1u64 << 30);
        let download = v["FileDownloadPresignedUrl"].as_str().unwrap();
        assert!(download.contains("X-Amz-Signature="), "{download}");
        assert!(download.contains("/Cloud.svg?"), "{download}");
    }
    // The path member is required.
    let (_, code, msg) = t
        .client
        .err("getFileUploadUrls", json!({"EnvironmentId": id}))
        .await;
    assert_eq!(code, "ValidationException");
    assert!(msg.contains("FileUploadPath"), "{msg}");
    // RUNNING is required.
    t.client
        .ok("stopEnvironment", json!({"EnvironmentId": id}))
        .await;
    let (_, code, _) = t
        .client
        .err(
            "getFileDownloadUrls",
            json!({"EnvironmentId": id, "FileDownloadPath": "/x"}),
        )
        .await;
    assert_eq!(code, "InvalidStatusException");
}

#[tokio::test]
async fn redeem_code_and_put_credentials() {
    let t = TestEmulator::start(Timings::instant()).await;
    let id = running_env(&t).await;
    let (s, code, _) = t
        .client
        .err(
            "putCredentials",
            json!({"EnvironmentId": id, "KeyBase": "kb", "RefreshToken": "made-up"}),
        )
        .await;
    assert_eq!((s, code.as_str()), (400, "TokenDecryptionException"));
    let (_, code, msg) = t
        .client
        .err("putCredentials", json!({"EnvironmentId": id}))
        .await;
    assert_eq!(code, "ValidationException");
    assert!(msg.contains("KeyBase"), "{msg}");

    let v = t
        .client
        .ok(
            "redeemCode",
            json!({"AuthCode": "c", "CodeVerifier": "v", "RedirectUri": "https://auth.example/callback.js?state=1", "KeyBase": "kb", "EnvironmentId": id}),
        )
        .await;
    let token = v["RefreshToken"].as_str().unwrap().to_owned();
    // Right token, wrong key base.
    let (_, code, _) = t
        .client
        .err(
            "putCredentials",
            json!({"EnvironmentId": id, "KeyBase": "other", "RefreshToken": token}),
        )
        .await;
    assert_eq!(code, "TokenDecryptionException");
    assert!(!t.handle.environment(&id).unwrap().has_credentials);
    let v = t
        .client
        .ok(
            "putCredentials",
            json!({"EnvironmentId": id, "KeyBase": "kb", "RefreshToken": token}),
        )
        .await;
    assert_eq!(v, json!({}));
    assert!(t.handle.environment(&id).unwrap().has_credentials);

    let (_, code, msg) = t
        .client
        .err("redeemCode", json!({"AuthCode": "c", "CodeVerifier": "v"}))
        .await;
    assert_eq!(code, "ValidationException");
    assert!(msg.contains("RedirectUri"), "{msg}");
}

// ------------------------------------------------------------ VPC environments

#[tokio::test]
async fn vpc_environments() {
    let t = TestEmulator::start(Timings::instant()).await;
    let v = t
        .client
        .ok(
            "createEnvironment",
            json!({"EnvironmentName": "db-access", "VpcConfig": vpc(1)}),
        )
        .await;
    let a = env_id(&v);
    assert_eq!(v["Status"], "CREATING");
    let v = t
        .client
        .ok("getEnvironmentStatus", json!({"EnvironmentId": a}))
        .await;
    assert_eq!(
        v,
        json!({"EnvironmentId": a, "Status": "RUNNING", "EnvironmentName": "db-access", "VpcConfig": vpc(1)})
    );

    // Not get-or-create: the same name again is a conflict.
    let (s, code, _) = t
        .client
        .err(
            "createEnvironment",
            json!({"EnvironmentName": "db-access", "VpcConfig": vpc(2)}),
        )
        .await;
    assert_eq!((s, code.as_str()), (400, "ConflictException"));

    let b = env_id(
        &t.client
            .ok(
                "createEnvironment",
                json!({"EnvironmentName": "second", "VpcConfig": vpc(2)}),
            )
            .await,
    );
    let (s, code, _) = t
        .client
        .err(
            "createEnvironment",
            json!({"EnvironmentName": "third", "VpcConfig": vpc(3)}),
        )
        .await;
    assert_eq!((s, code.as_str()), (400, "ServiceQuotaExceededException"));

    // The default environment does not count against the VPC quota.
    let d = running_env(&t).await;
    let v = t.client.ok("describeEnvironments", json!({})).await;
    let list = v["Environments"].as_array().unwrap();
    assert_eq!(list.len(), 3);
    for e in list {
        let id = e["EnvironmentId"].as_str().unwrap();
        if id == d {
            assert!(e.get("EnvironmentName").is_none() && e.get("VpcConfig").is_none());
        } else {
            assert!(id == a || id == b);
            assert!(e["EnvironmentName"].is_string() && e["VpcConfig"].is_object());
        }
    }

    // File transfer is not offered for VPC environments.
    let (_, code, _) = t
        .client
        .err(
            "getFileUploadUrls",
            json!({"EnvironmentId": a, "FileUploadPath": "x"}),
        )
        .await;
    assert_eq!(code, "ValidationException");
}

#[tokio::test]
async fn vpc_validation() {
    let t = TestEmulator::start(Timings::instant()).await;
    let cases = [
        (json!({"VpcConfig": vpc(1)}), "EnvironmentName"),
        (
            json!({"EnvironmentName": "n", "VpcConfig": {"VpcId": "vpc-1", "SubnetIds": [], "SecurityGroupIds": ["sg-1"]}}),
            "SubnetIds",
        ),
        (
            json!({"EnvironmentName": "n", "VpcConfig": {"VpcId": "vpc-1", "SubnetIds": ["subnet-1"], "SecurityGroupIds": []}}),
            "SecurityGroupIds",
        ),
        (
            json!({"EnvironmentName": "n", "VpcConfig": {"VpcId": "vpc-1", "SubnetIds": ["subnet-1"], "SecurityGroupIds": ["sg-1","sg-2","sg-3","sg-4","sg-5","sg-6"]}}),
            "SecurityGroupIds",
        ),
        (
            json!({"EnvironmentName": "n", "VpcConfig": {"VpcId": "vpc-1", "SubnetIds": ["sn-1"], "SecurityGroupIds": ["sg-1"]}}),
            "SubnetIds",
        ),
        (
            json!({"EnvironmentName": "n", "VpcConfig": {"VpcId": "1", "SubnetIds": ["subnet-1"], "SecurityGroupIds": ["sg-1"]}}),
            "VpcId",
        ),
        (
            json!({"EnvironmentName": "n", "VpcConfig": "vpc-1"}),
            "VpcConfig",
        ),
        (
            json!({"EnvironmentName": "this-name-is-far-too-long-for-cloudshell", "VpcConfig": vpc(1)}),
            "EnvironmentName",
        ),
    ];
    for (body, member) in cases {
        let (s, code, msg) = t.client.err("createEnvironment", body.clone()).await;
        assert_eq!((s, code.as_str()), (400, "ValidationException"), "{body}");
        assert!(msg.contains(member), "{body}: {msg}");
    }
    // Five security groups are fine.
    t.client
        .ok(
            "createEnvironment",
            json!({"EnvironmentName": "n", "VpcConfig": {"VpcId": "vpc-1", "SubnetIds": ["subnet-1"], "SecurityGroupIds": ["sg-1","sg-2","sg-3","sg-4","sg-5"]}}),
        )
        .await;
}

// ---------------------------------------------------------------------- errors

#[tokio::test]
async fn routing_errors() {
    let t = TestEmulator::start(Timings::instant()).await;
    for (method, path) in [
        ("POST", "/nope"),
        ("POST", "/DescribeEnvironments"),
        ("GET", "/describeEnvironments"),
        ("POST", "/"),
    ] {
        let mut raw = t.client.raw_defaults("x", b"{}".to_vec());
        raw.method = method;
        raw.path = path;
        let (s, h, b) = t.client.raw(raw).await;
        assert_eq!(s, 404, "{method} {path}");
        assert_eq!(h["x-amzn-errortype"], "UnknownOperationException");
        assert!(h.contains_key("x-amzn-requestid"));
        let v: Value = serde_json::from_slice(&b).unwrap();
        assert_eq!(v["code"], "UnknownOperationException");
        assert!(v["message"].as_str().unwrap().contains(path));
    }
}

#[tokio::test]
async fn validation_errors_name_the_member() {
    let t = TestEmulator::start(Timings::instant()).await;
    let id = running_env(&t).await;

    let (s, h, b) = t
        .client
        .raw(
            t.client
                .raw_defaults("getEnvironmentStatus", b"{\"EnvironmentId\":".to_vec()),
        )
        .await;
    assert_eq!(s, 400);
    assert_eq!(h["x-amzn-errortype"], "ValidationException");
    let v: Value = serde_json::from_slice(&b).unwrap();
    assert_eq!(v["code"], "ValidationException");

    let cases = [
        ("getEnvironmentStatus", json!({}), "EnvironmentId"),
        (
            "getEnvironmentStatus",
            json!({"EnvironmentId": 42}),
            "EnvironmentId",
        ),
        (
            "getEnvironmentStatus",
            json!({"EnvironmentId": ""}),
            "EnvironmentId",
        ),
        (
            "startEnvironment",
            json!({"EnvironmentId": null}),
            "EnvironmentId",
        ),
        ("stopEnvironment", json!([]), "JSON object"),
        ("deleteEnvironment", json!("x"), "JSON object"),
        (
            "createSession",
            json!({"EnvironmentId": id, "TabId": "not-a-uuid"}),
            "TabId",
        ),
        (
            "createSession",
            json!({"EnvironmentId": id, "TabId": 7}),
            "TabId",
        ),
        (
            "createSession",
            json!({"EnvironmentId": id, "SessionType": "SCREEN"}),
            "SessionType",
        ),
        (
            "createSession",
            json!({"EnvironmentId": id, "QCliDisabled": "true"}),
            "QCliDisabled",
        ),
        ("deleteSession", json!({"EnvironmentId": id}), "SessionId"),
        (
            "sendHeartBeat",
            json!({"EnvironmentId": [id]}),
            "EnvironmentId",
        ),
        (
            "createEnvironment",
            json!({"EnvironmentName": 5}),
            "EnvironmentName",
        ),
    ];
    for (op, body, member) in cases {
        let (s, code, msg) = t.client.err(op, body.clone()).await;
        assert_eq!(
            (s, code.as_str()),
            (400, "ValidationException"),
            "{op} {body}"
        );
        assert!(msg.contains(member), "{op} {body}: {msg}");
    }
}

#[tokio::test]
async fn unknown_environment_everywhere() {
    let t = TestEmulator::start(Timings::instant()).await;
    let ghost = "0b6f2c4e-3f7a-4d1e-9c55-2a9e8e1d7b10";
    for (op, extra) in [
        ("getEnvironmentStatus", json!({})),
        ("startEnvironment", json!({})),
        ("stopEnvironment", json!({})),
        ("deleteEnvironment", json!({})),
        ("createSession", json!({})),
        ("deleteSession", json!({"SessionId": "1-a"})),
        ("sendHeartBeat", json!({})),
        ("getFileUploadUrls", json!({"FileUploadPath": "a"})),
        ("getFileDownloadUrls", json!({"FileDownloadPath": "a"})),
        (
            "putCredentials",
            json!({"KeyBase": "k", "RefreshToken": "r"}),
        ),
        (
            "redeemCode",
            json!({"AuthCode": "a", "CodeVerifier": "v", "RedirectUri": "u", "KeyBase": "k"}),
        ),
    ] {
        let mut body = extra;
        body["EnvironmentId"] = json!(ghost);
        let (s, code, _) = t.client.err(op, body).await;
        assert_eq!(
            (s, code.as_str()),
            (400, "ResourceNotFoundException"),
            "{op}"
        );
    }
}

#[tokio::test]
async fn invalid_status_errors() {
    let t = TestEmulator::start(Timings::instant()).await;
    let id = running_env(&t).await;
    let body = json!({"EnvironmentId": id});
    let (s, code, msg) = t.client.err("startEnvironment", body.clone()).await;
    assert_eq!((s, code.as_str()), (400, "InvalidStatusException"));
    assert_eq!(msg, "Expected the environment status to be in SUSPENDED.");

    t.client.ok("stopEnvironment", body.clone()).await;
    let (_, code, msg) = t.client.err("stopEnvironment", body.clone()).await;
    assert_eq!(code, "InvalidStatusException");
    assert_eq!(msg, "Expected the environment status to be in RUNNING.");
    let (_, code, _) = t.client.err("createSession", body.clone()).await;
    assert_eq!(code, "InvalidStatusException");
}

#[tokio::test]
async fn session_quota() {
    let t = TestEmulator::start_with(Timings::instant(), |mut c| {
        c.max_sessions = 3;
        c
    })
    .await;
    let id = running_env(&t).await;
    let body = json!({"EnvironmentId": id});
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(t.client.ok("createSession", body.clone()).await["SessionId"].clone());
    }
    let (s, code, _) = t.client.err("createSession", body.clone()).await;
    assert_eq!((s, code.as_str()), (400, "ServiceQuotaExceededException"));
    t.client
        .ok(
            "deleteSession",
            json!({"EnvironmentId": id, "SessionId": ids[0]}),
        )
        .await;
    t.client.ok("createSession", body).await;
}

// ----------------------------------------------------------------------- SigV4

#[tokio::test]
async fn authentication_failures() {
    let t = TestEmulator::start(Timings::instant()).await;
    let body = b"{}".to_vec();
    let expect = |r: (u16, reqwest::header::HeaderMap, Vec<u8>), code: &str| -> String {
        let (s, h, b) = r;
        assert_eq!(s, 403, "{code}: {}", String::from_utf8_lossy(&b));
        assert_eq!(h["x-amzn-errortype"], code);
        assert!(h.contains_key("x-amzn-requestid"));
        let v: Value = serde_json::from_slice(&b).unwrap();
        assert_eq!(v["code"], code);
        v["message"].as_str().unwrap().to_owned()
    };

    let mut raw = t.client.raw_defaults("describeEnvironments", body.clone());
    raw.sign = false;
    expect(
        t.client.raw(raw).await,
        "MissingAuthenticationTokenException",
    );

    let mut raw = t.client.raw_defaults("describeEnvironments", body.clone());
    raw.creds = AcceptedCredentials::new("AKIAUNKNOWNKEY000000", SECRET_KEY);
    expect(t.client.raw(raw).await, "UnrecognizedClientException");

    let mut raw = t.client.raw_defaults("describeEnvironments", body.clone());
    raw.creds = AcceptedCredentials::new(ACCESS_KEY, "wrong-secret");
    let msg = expect(t.client.raw(raw).await, "InvalidSignatureException");
    assert!(msg.starts_with(
        "The request signature we calculated does not match the signature you provided"
    ));
    assert!(!msg.contains(SECRET_KEY));

    let mut raw = t.client.raw_defaults("describeEnvironments", body.clone());
    raw.region = "eu-west-1";
    let msg = expect(t.client.raw(raw).await, "InvalidSignatureException");
    assert!(msg.contains("eu-west-1"), "{msg}");

    let mut raw = t.client.raw_defaults("describeEnvironments", body.clone());
    raw.service = "ssm";
    let msg = expect(t.client.raw(raw).await, "InvalidSignatureException");
    assert!(msg.contains("cloudshell"), "{msg}");

    let mut raw = t.client.raw_defaults("describeEnvironments", body.clone());
    raw.at = SystemTime::now() - Duration::from_secs(20 * 60);
    let msg = expect(t.client.raw(raw).await, "InvalidSignatureException");
    assert!(msg.starts_with("Signature expired"), "{msg}");

    let mut raw = t.client.raw_defaults("describeEnvironments", body.clone());
    raw.at = SystemTime::now() + Duration::from_secs(20 * 60);
    let msg = expect(t.client.raw(raw).await, "InvalidSignatureException");
    assert!(msg.starts_with("Signature not yet current"), "{msg}");

    // Tampered body: signed one thing, sent another.
    let mut raw = t.client.raw_defaults("createEnvironment", b"{}".to_vec());
    raw.send_body = Some(br#"{"EnvironmentName":"x"}"#.to_vec());
    expect(t.client.raw(raw).await, "InvalidSignatureException");

    // Nothing was created by any of those.
    assert!(t.handle.environments().is_empty());
    let recorded = t.handle.requests();
    assert!(recorded.iter().all(|r| r.status == 403));
    assert!(recorded.iter().all(|r| r.header("authorization").is_none()));
}

#[tokio::test]
async fn environments_belong_to_their_principal() {
    let other = AcceptedCredentials::new("AKIAOTHERPRINCIPAL00", "other-secret");
    let t = TestEmulator::start_with(Timings::instant(), {
        let other = other.clone();
        move |c| c.with_credentials(other)
    })
    .await;
    let mine = running_env(&t).await;
    let client2 = Client::new(&t.handle.endpoint(), other);
    let v = client2.ok("describeEnvironments", json!({})).await;
    assert_eq!(v, json!({"Environments": []}));
    let (_, code, _) = client2
        .err("getEnvironmentStatus", json!({"EnvironmentId": mine}))
        .await;
    assert_eq!(code, "ResourceNotFoundException");
    let theirs = env_id(&client2.ok("createEnvironment", json!({})).await);
    assert_ne!(theirs, mine);
    assert_eq!(t.handle.environments().len(), 2);
}

// -------------------------------------------------------- timed transitions

fn slow() -> Timings {
    Timings {
        create_delay: Duration::from_secs(15),
        vpc_create_delay: Duration::from_secs(45),
        resume_delay: Duration::from_secs(7),
        suspend_delay: Duration::from_secs(3),
        delete_delay: Duration::from_secs(3),
        idle_timeout: Duration::from_secs(20 * 60),
        session_cap: Some(Duration::from_secs(12 * 3600)),
    }
}

#[tokio::test]
async fn timed_lifecycle_on_a_manual_clock() {
    let t = TestEmulator::start(slow()).await;
    let id = env_id(&t.client.ok("createEnvironment", json!({})).await);
    let body = json!({"EnvironmentId": id});
    assert_eq!(status(&t, &id).await, "CREATING");
    // Transitional states refuse the state-changing operations.
    for op in [
        "startEnvironment",
        "stopEnvironment",
        "deleteEnvironment",
        "createSession",
    ] {
        let (_, code, _) = t.client.err(op, body.clone()).await;
        assert_eq!(code, "InvalidStatusException", "{op}");
    }
    t.clock.advance(Duration::from_millis(14_999));
    assert_eq!(status(&t, &id).await, "CREATING");
    t.clock.advance(Duration::from_millis(1));
    assert_eq!(status(&t, &id).await, "RUNNING");

    t.client.ok("stopEnvironment", body.clone()).await;
    assert_eq!(status(&t, &id).await, "SUSPENDING");
    let (_, code, _) = t.client.err("startEnvironment", body.clone()).await;
    assert_eq!(code, "InvalidStatusException");
    t.clock.advance(Duration::from_secs(3));
    assert_eq!(status(&t, &id).await, "SUSPENDED");

    t.client.ok("startEnvironment", body.clone()).await;
    assert_eq!(status(&t, &id).await, "RESUMING");
    t.clock.advance(Duration::from_secs(7));
    assert_eq!(status(&t, &id).await, "RUNNING");

    // Get-or-create returns a transitional state unchanged.
    t.client.ok("deleteEnvironment", body.clone()).await;
    let v = t.client.ok("createEnvironment", json!({})).await;
    assert_eq!(
        (env_id(&v), v["Status"].as_str()),
        (id.clone(), Some("DELETING"))
    );
    t.clock.advance(Duration::from_secs(3));
    let (_, code, _) = t.client.err("getEnvironmentStatus", body).await;
    assert_eq!(code, "ResourceNotFoundException");
}

#[tokio::test]
async fn idle_suspension_and_heartbeats() {
    let t = TestEmulator::start(slow()).await;
    let id = env_id(&t.client.ok("createEnvironment", json!({})).await);
    let body = json!({"EnvironmentId": id});
    t.clock.advance(Duration::from_secs(15));
    assert_eq!(status(&t, &id).await, "RUNNING");
    let sid = t.client.ok("createSession", body.clone()).await["SessionId"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut events = t.handle.subscribe();

    // Heartbeats every 19 minutes keep it running for an hour.
    for _ in 0..3 {
        t.clock.advance(Duration::from_secs(19 * 60));
        assert_eq!(status(&t, &id).await, "RUNNING");
        t.client.ok("sendHeartBeat", body.clone()).await;
    }
    // Reported session traffic counts as activity too.
    t.clock.advance(Duration::from_secs(19 * 60));
    assert!(t.handle.touch(&id));
    t.clock.advance(Duration::from_secs(19 * 60));
    assert_eq!(status(&t, &id).await, "RUNNING");
    // Silence for 20 minutes suspends it and closes its sessions.
    t.clock.advance(Duration::from_secs(60));
    assert_eq!(status(&t, &id).await, "SUSPENDING");
    let mut seen = Vec::new();
    while let Ok(ev) = events.try_recv() {
        seen.push(ev);
    }
    assert!(seen.contains(&StateEvent::SessionClosed {
        session_id: sid,
        environment_id: id.clone()
    }));
    assert!(t.handle.environment(&id).unwrap().sessions.is_empty());
    t.clock.advance(Duration::from_secs(3));
    assert_eq!(status(&t, &id).await, "SUSPENDED");
    // Heartbeats are counted but do not resume it.
    t.client.ok("sendHeartBeat", body).await;
    assert_eq!(status(&t, &id).await, "SUSPENDED");
    assert_eq!(t.handle.environment(&id).unwrap().heartbeats, 4);
}

#[tokio::test]
async fn session_cap_suspends_despite_activity() {
    let mut timings = Timings::instant();
    timings.session_cap = Some(Duration::from_secs(3600));
    let t = TestEmulator::start(timings).await;
    let id = running_env(&t).await;
    for _ in 0..5 {
        t.clock.advance(Duration::from_secs(10 * 60));
        t.client
            .ok("sendHeartBeat", json!({"EnvironmentId": id}))
            .await;
    }
    assert_eq!(status(&t, &id).await, "RUNNING");
    t.clock.advance(Duration::from_secs(10 * 60));
    assert_eq!(status(&t, &id).await, "SUSPENDED");
}

// ------------------------------------------------------------------ persistence

#[tokio::test]
async fn state_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::starting_now();
    let start = |dir: std::path::PathBuf, clock: ManualClock| async move {
        let config = EmulatorConfig::new(dir)
            .with_credentials(creds())
            .with_timings(slow())
            .with_clock(std::sync::Arc::new(clock));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let h = Emulator::start(config, listener).await.unwrap();
        let c = Client::new(&h.endpoint(), creds());
        (h, c)
    };
    let (h1, c1) = start(dir.path().to_owned(), clock.clone()).await;
    let id = env_id(&c1.ok("createEnvironment", json!({})).await);
    c1.ok("sendHeartBeat", json!({"EnvironmentId": id})).await;
    h1.shutdown().await;

    // The clock moves while nothing runs; the next process sees RUNNING.
    clock.advance(Duration::from_secs(20));
    let (h2, c2) = start(dir.path().to_owned(), clock.clone()).await;
    assert_eq!(
        c2.ok("getEnvironmentStatus", json!({"EnvironmentId": id}))
            .await["Status"],
        "RUNNING"
    );
    assert_eq!(h2.environment(&id).unwrap().heartbeats, 1);
    assert_eq!(env_id(&c2.ok("createEnvironment", json!({})).await), id);
    h2.shutdown().await;
}

#[tokio::test]
async fn two_emulators_share_one_state_dir() {
    let t1 = TestEmulator::start(Timings::instant()).await;
    let config = EmulatorConfig::new(t1.dir.path())
        .with_credentials(creds())
        .with_timings(Timings::instant())
        .with_clock(std::sync::Arc::new(t1.clock.clone()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let h2 = Emulator::start(config, listener).await.unwrap();
    let c2 = Client::new(&h2.endpoint(), creds());

    let id = running_env(&t1).await;
    // The second process sees it and can act on it; the first sees the result.
    assert_eq!(env_id(&c2.ok("createEnvironment", json!({})).await), id);
    c2.ok("stopEnvironment", json!({"EnvironmentId": id})).await;
    assert_eq!(status(&t1, &id).await, "SUSPENDED");
    for _ in 0..5 {
        t1.client
            .ok("sendHeartBeat", json!({"EnvironmentId": id}))
            .await;
        c2.ok("sendHeartBeat", json!({"EnvironmentId": id})).await;
    }
    assert_eq!(h2.environment(&id).unwrap().heartbeats, 10);
    assert_eq!(t1.handle.environment(&id).unwrap().heartbeats, 10);
    h2.shutdown().await;
}

#[tokio::test]
async fn corrupt_state_is_moved_aside() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(STATE_FILE), b"{ not json").unwrap();
    let config = EmulatorConfig::new(dir.path())
        .with_credentials(creds())
        .with_timings(Timings::instant());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let h = Emulator::start(config, listener).await.unwrap();
    let c = Client::new(&h.endpoint(), creds());
    assert_eq!(
        c.ok("describeEnvironments", json!({})).await,
        json!({"Environments": []})
    );
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let aside = names
        .iter()
        .find(|n| n.starts_with("state.json.corrupt-"))
        .unwrap();
    assert_eq!(
        std::fs::read(dir.path().join(aside)).unwrap(),
        b"{ not json"
    );
    let fresh: Value =
        serde_json::from_slice(&std::fs::read(dir.path().join(STATE_FILE)).unwrap()).unwrap();
    assert_eq!(fresh["version"], 1);
    h.shutdown().await;
}

#[tokio::test]
async fn missing_credentials_is_a_config_error() {
    let dir = tempfile::tempdir().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let err = Emulator::start(EmulatorConfig::new(dir.path()), listener)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Config(_)), "{err}");
}

// ------------------------------------------------------ faults and recording

#[tokio::test]
async fn injected_faults() {
    let t = TestEmulator::start(Timings::instant()).await;
    t.handle.inject(RestFault::on(
        "DescribeEnvironments",
        FaultKind::Throttle,
        2,
    ));
    for _ in 0..2 {
        let (s, code, msg) = t.client.err("describeEnvironments", json!({})).await;
        assert_eq!(
            (s, code.as_str(), msg.as_str()),
            (400, "ThrottlingException", "Rate exceeded")
        );
    }
    // Other operations are unaffected, and the fault is used up.
    t.client.ok("createEnvironment", json!({})).await;
    t.client.ok("describeEnvironments", json!({})).await;

    t.handle.inject(RestFault::any(FaultKind::InternalError, 1));
    let (s, code, _) = t.client.err("createEnvironment", json!({})).await;
    assert_eq!((s, code.as_str()), (500, "InternalServerException"));

    t.handle.inject(RestFault::any(FaultKind::ExpiredToken, 1));
    let (s, code, _) = t.client.err("describeEnvironments", json!({})).await;
    assert_eq!((s, code.as_str()), (403, "ExpiredTokenException"));

    t.handle.inject(RestFault::on(
        "describeEnvironments",
        FaultKind::HtmlPage,
        1,
    ));
    let (s, h, b) = t
        .client
        .raw(
            t.client
                .raw_defaults("describeEnvironments", b"{}".to_vec()),
        )
        .await;
    assert_eq!(s, 503);
    assert_eq!(h["content-type"], "text/html");
    assert!(String::from_utf8(b).unwrap().contains("<html>"));

    t.handle.inject(RestFault::any(FaultKind::MalformedJson, 1));
    let (s, _, b) = t
        .client
        .raw(
            t.client
                .raw_defaults("describeEnvironments", b"{}".to_vec()),
        )
        .await;
    assert_eq!(s, 200);
    assert!(serde_json::from_slice::<Value>(&b).is_err());

    t.handle.inject(RestFault::any(FaultKind::EmptyBody, 1));
    let (s, _, b) = t
        .client
        .raw(
            t.client
                .raw_defaults("describeEnvironments", b"{}".to_vec()),
        )
        .await;
    assert_eq!((s, b.len()), (200, 0));

    t.handle.inject(RestFault::any(
        FaultKind::Delay(Duration::from_millis(10)),
        1,
    ));
    t.client.ok("describeEnvironments", json!({})).await;

    // Faults do not run the operation: only one environment exists.
    assert_eq!(t.handle.environments().len(), 1);
}

#[tokio::test]
async fn requests_are_recorded_without_secrets() {
    let t = TestEmulator::start(Timings::instant()).await;
    let id = running_env(&t).await;
    let tab = uuid::Uuid::new_v4().to_string();
    t.client
        .ok(
            "createSession",
            json!({"EnvironmentId": id, "TabId": tab, "SessionType": "TMUX", "QCliDisabled": true}),
        )
        .await;
    let mut raw = t.client.raw_defaults("describeEnvironments", Vec::new());
    raw.content_type = None;
    t.client.raw(raw).await;

    let reqs = t.handle.requests();
    let ops: Vec<&str> = reqs.iter().map(|r| r.operation.as_str()).collect();
    assert_eq!(
        ops,
        [
            "CreateEnvironment",
            "GetEnvironmentStatus",
            "CreateSession",
            "DescribeEnvironments"
        ]
    );
    let cs = &reqs[2];
    assert_eq!(cs.status, 200);
    assert_eq!(
        cs.body,
        json!({"EnvironmentId": id, "TabId": tab, "SessionType": "TMUX", "QCliDisabled": true})
    );
    assert_eq!(
        cs.header("content-type"),
        Some("application/x-amz-json-1.1")
    );
    assert!(cs.header("x-amz-date").is_some());
    assert!(reqs.iter().all(|r| r.header("authorization").is_none()));
    assert_eq!(reqs[3].body, Value::Null);
    t.handle.clear_requests();
    assert!(t.handle.requests().is_empty());
}

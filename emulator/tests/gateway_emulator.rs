//! The gateway inside the whole emulator: CreateSession's StreamUrl and token,
//! DeleteSession / StopEnvironment closing live channels, TabId re-attachment
//! through the REST side, and a KMS-encrypted session using the fake KMS.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod gateway_support;
#[path = "support/mod.rs"]
mod support;

use std::time::{Instant, SystemTime};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use cloudshell_emulator::gateway::{HandshakeMode, SessionMode, SessionOptions};
use serde_json::{Value, json};
use support::{TestEmulator, Timings};

async fn running_env(t: &TestEmulator) -> String {
    let v = t.client.ok("createEnvironment", json!({})).await;
    let id = v["EnvironmentId"].as_str().unwrap().to_owned();
    let v = t
        .client
        .ok("getEnvironmentStatus", json!({"EnvironmentId": id}))
        .await;
    assert_eq!(v["Status"], "RUNNING");
    id
}

async fn create_session(
    t: &TestEmulator,
    env: &str,
    tab: Option<&str>,
) -> (String, String, String) {
    let mut body = json!({"EnvironmentId": env});
    if let Some(tab) = tab {
        body["TabId"] = json!(tab);
    }
    let v = t.client.ok("createSession", body).await;
    (
        v["SessionId"].as_str().unwrap().to_owned(),
        v["StreamUrl"].as_str().unwrap().to_owned(),
        v["TokenValue"].as_str().unwrap().to_owned(),
    )
}

#[tokio::test]
async fn create_session_stream_url_runs_a_shell() {
    let t = TestEmulator::start(Timings::instant()).await;
    let env = running_env(&t).await;
    let (id, url, token) = create_session(&t, &env, None).await;
    assert!(url.contains(&format!("/v1/data-channel/{id}?")), "{url}");
    let mut c = gateway_support::Client::connect(&url, &token).await;
    c.run_until("ready", |c| c.ready).await;
    c.send_input(b"echo h''i from $AWS_DEFAULT_REGION\r");
    c.wait_for_output("hi from us-east-1").await;
    let m = t.handle.session_metrics(&id).expect("metrics");
    assert!(m.frames_in > 0 && m.frames_out > 0);

    // DeleteSession closes the channel.
    t.client
        .ok(
            "deleteSession",
            json!({"EnvironmentId": env, "SessionId": id}),
        )
        .await;
    assert_eq!(c.wait_closed().await, None);

    // The session is gone: its token no longer opens anything.
    assert_opens_nothing(&url, &token).await;
    t.handle.shutdown().await;
}

/// Opening `url` with `token` gets no data, only a close.
async fn assert_opens_nothing(url: &str, token: &str) {
    use futures_util::{SinkExt, StreamExt};
    let mut socket = gateway_support::raw_connect(url).await;
    let open = json!({"MessageSchemaVersion":"1.0","RequestId":"r","TokenValue":token});
    socket
        .send(tokio_tungstenite::tungstenite::Message::Text(
            open.to_string().into(),
        ))
        .await
        .unwrap();
    while let Some(Ok(m)) = socket.next().await {
        assert!(
            !matches!(m, tokio_tungstenite::tungstenite::Message::Binary(_)),
            "data for a token that should open nothing"
        );
    }
}

#[tokio::test]
async fn tab_reattach_through_create_session_and_stop_ends_it() {
    let t = TestEmulator::start(Timings::instant()).await;
    let env = running_env(&t).await;
    let tab = "0b6f2c4e-3f7a-4c1e-9b7d-2a5e8c9d0f11";
    let (id1, url1, tok1) = create_session(&t, &env, Some(tab)).await;
    let mut c1 = gateway_support::Client::connect(&url1, &tok1).await;
    c1.run_until("ready", |c| c.ready).await;
    c1.send_input(b"export X=1; echo SET$X\r");
    c1.wait_for_output("SET1").await;
    // Like the Console: delete the old session, create a new one for the tab.
    t.client
        .ok(
            "deleteSession",
            json!({"EnvironmentId": env, "SessionId": id1}),
        )
        .await;
    c1.wait_closed().await;
    let (_id2, url2, tok2) = create_session(&t, &env, Some(tab)).await;
    let mut c2 = gateway_support::Client::connect(&url2, &tok2).await;
    // Re-attached: output the first client never acknowledged (or, for an idle
    // shell, the gateway's redraw stand-in) makes the client ready.
    c2.run_until("ready", |c| c.ready).await;
    c2.send_input(b"echo X=$X\r");
    c2.wait_for_output("X=1").await;
    assert_eq!(t.handle.gateway().live_tabs(), 1);

    // Stopping the environment closes the channel and ends the shell.
    t.client
        .ok("stopEnvironment", json!({"EnvironmentId": env}))
        .await;
    c2.wait_closed().await;
    let give_up = Instant::now() + gateway_support::GUARD;
    while t.handle.gateway().live_tabs() != 0 {
        assert!(Instant::now() < give_up, "tab not ended");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    t.handle.shutdown().await;
}

/// Polls `f` until it gives a value (bounded by the tests' guard time).
async fn eventually<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let give_up = Instant::now() + gateway_support::GUARD;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < give_up, "timed out waiting for {what}");
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}

fn process_exists(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

#[tokio::test]
async fn create_session_starts_the_shell_before_the_client_connects() {
    let t = TestEmulator::start(Timings::instant()).await;
    let env = running_env(&t).await;
    let gw = t.handle.gateway().clone();
    let tab = "6a0f3b1e-2c4d-4e5f-8a9b-0c1d2e3f4a5b";

    // The first connection gets the very shell CreateSession started.
    let (id, url, token) = create_session(&t, &env, Some(tab)).await;
    let pid = eventually("the shell of a new session", || {
        gw.prestarted_shell_pid(&id)
    })
    .await;
    let mut c = gateway_support::Client::connect(&url, &token).await;
    c.run_until("ready", |c| c.ready).await;
    c.send_input(b"echo PID=$$\r");
    c.wait_for_output(&format!("PID={pid}")).await;
    assert_eq!(
        gw.prestarted_shell_pid(&id),
        None,
        "taken by the connection"
    );
    assert_eq!(gw.tab_shell_pid(&env, tab), Some(pid));

    // A session for a tab whose shell runs starts nothing: it re-attaches.
    // (Events are handled in order: once the later session's shell exists,
    // the earlier CreateSession has been handled.)
    let (reattach, _, _) = create_session(&t, &env, Some(tab)).await;
    let (later, _, _) = create_session(&t, &env, None).await;
    let later_pid = eventually("a later session's shell", || {
        gw.prestarted_shell_pid(&later)
    })
    .await;
    assert_eq!(gw.prestarted_shell_pid(&reattach), None);

    // Deleted before anyone connected: its shell is stopped.
    t.client
        .ok(
            "deleteSession",
            json!({"EnvironmentId": env, "SessionId": later}),
        )
        .await;
    eventually("the deleted session's shell to end", || {
        (!process_exists(later_pid)).then_some(())
    })
    .await;
    assert_eq!(gw.prestarted_shell_pid(&later), None);

    // Options set after CreateSession still decide the program: this one is
    // an echo session, and the shell started for it is stopped.
    let (echo_id, echo_url, echo_token) = create_session(&t, &env, None).await;
    let echo_pid = eventually("the echo session's shell", || {
        gw.prestarted_shell_pid(&echo_id)
    })
    .await;
    gw.configure_session(
        echo_id.clone(),
        SessionOptions {
            mode: SessionMode::Echo,
            ..SessionOptions::default()
        },
    );
    let mut e = gateway_support::Client::connect(&echo_url, &echo_token).await;
    e.run_until("ready", |c| c.ready).await;
    e.send_input(b"echo back");
    e.wait_for_output("echo back").await;
    assert_eq!(e.output, b"echo back");
    eventually("the unused shell to end", || {
        (!process_exists(echo_pid)).then_some(())
    })
    .await;
    t.handle.shutdown().await;
}

/// Signed awsJson1.1 call to the fake KMS.
async fn kms_call(t: &TestEmulator, target: &str, body: Value) -> (u16, Value) {
    aws_json_call(t, "kms", target, body).await
}

/// Signed awsJson1.1 call for `service` (`kms`, `ssm`) to the emulator.
/// Calls the SSM operation `target` and checks that it fails with HTTP 400
/// and the error `code`.
async fn assert_ssm_refuses(t: &TestEmulator, target: &str, body: Value, code: &str) {
    let (status, v) = aws_json_call(t, "ssm", target, body).await;
    assert_eq!(
        (status, v["__type"].as_str()),
        (400, Some(code)),
        "{target}: {v}"
    );
}

async fn aws_json_call(t: &TestEmulator, service: &str, target: &str, body: Value) -> (u16, Value) {
    let body = serde_json::to_vec(&body).unwrap();
    let mut headers = vec![
        ("host".to_string(), t.client.host.clone()),
        (
            "content-type".to_string(),
            "application/x-amz-json-1.1".to_string(),
        ),
        ("x-amz-target".to_string(), target.to_string()),
    ];
    let auth = cloudshell_emulator::sigv4::sign(
        "POST",
        "/",
        "",
        &mut headers,
        &body,
        &support::creds(),
        support::REGION,
        service,
        SystemTime::now(),
    );
    headers.push(("authorization".into(), auth));
    let mut req = t.client.http.post(format!("{}/", t.client.endpoint));
    for (k, v) in &headers {
        if k != "host" {
            req = req.header(k, v);
        }
    }
    let resp = req.body(body).send().await.unwrap();
    let status = resp.status().as_u16();
    let v: Value = serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap();
    (status, v)
}

#[tokio::test]
async fn kms_encrypted_session() {
    let t = TestEmulator::start(Timings::instant()).await;
    t.handle.set_session_defaults(SessionOptions {
        mode: SessionMode::Echo,
        handshake: "kms:alias/test-key".parse::<HandshakeMode>().unwrap(),
        ..SessionOptions::default()
    });
    let env = running_env(&t).await;
    let (id, url, token) = create_session(&t, &env, None).await;
    let mut c = gateway_support::Client::connect(&url, &token).await;
    c.run_until("KMS request", |c| c.kms_request.is_some())
        .await;
    let (key_id, challenge) = c.kms_request.clone().unwrap();
    assert_eq!(key_id, "alias/test-key");
    assert!(challenge.is_some());

    // Data keys can be issued without an encryption context too.
    let (status, v) = kms_call(
        &t,
        "TrentService.GenerateDataKey",
        json!({"KeyId": key_id, "NumberOfBytes": 64}),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    let (status, v) = kms_call(
        &t,
        "TrentService.GenerateDataKey",
        json!({
            "KeyId": key_id,
            "NumberOfBytes": 64,
            "EncryptionContext": {"aws:ssm:SessionId": id, "aws:ssm:TargetId": env}
        }),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert!(
        v["KeyId"]
            .as_str()
            .unwrap()
            .starts_with("arn:aws:kms:us-east-1:")
    );
    let plaintext = B64.decode(v["Plaintext"].as_str().unwrap()).unwrap();
    let blob = B64.decode(v["CiphertextBlob"].as_str().unwrap()).unwrap();
    assert_eq!(plaintext.len(), 64);
    c.ch.provide_data_key(Instant::now(), &plaintext, &blob)
        .unwrap();
    c.run_until("ready", |c| c.ready).await;
    assert!(c.ch.is_encrypted());
    c.send_input(b"secret words");
    c.wait_for_output("secret words").await;
    assert_eq!(c.output, b"secret words");

    // An unknown operation is an error, not a panic.
    let (status, v) = kms_call(&t, "TrentService.Encrypt", json!({})).await;
    assert_eq!(status, 400);
    assert_eq!(v["__type"], "UnsupportedOperationException");
    // A request signed for CloudShell is not accepted by KMS.
    let (s, _, _) = t
        .client
        .raw(support::Raw {
            path: "/",
            ..t.client.raw_defaults("x", b"{}".to_vec())
        })
        .await;
    assert_ne!(s, 200);
    t.handle.shutdown().await;
}

#[tokio::test]
async fn kms_session_with_a_key_for_another_session_fails() {
    let t = TestEmulator::start(Timings::instant()).await;
    t.handle.set_session_defaults(SessionOptions {
        mode: SessionMode::Echo,
        handshake: HandshakeMode::Kms {
            key_id: "alias/k".into(),
        },
        ..SessionOptions::default()
    });
    let env = running_env(&t).await;
    let (_id, url, token) = create_session(&t, &env, None).await;
    let mut c = gateway_support::Client::connect(&url, &token).await;
    c.run_until("KMS request", |c| c.kms_request.is_some())
        .await;
    let (_, v) = kms_call(
        &t,
        "TrentService.GenerateDataKey",
        json!({"KeyId": "alias/k", "NumberOfBytes": 64,
               "EncryptionContext": {"aws:ssm:SessionId": "some-other-session"}}),
    )
    .await;
    let plaintext = B64.decode(v["Plaintext"].as_str().unwrap()).unwrap();
    let blob = B64.decode(v["CiphertextBlob"].as_str().unwrap()).unwrap();
    c.ch.provide_data_key(Instant::now(), &plaintext, &blob)
        .unwrap();
    let reason = c.wait_closed().await;
    assert_eq!(reason.as_deref(), Some("KMS decrypt failed"));
    assert!(!c.ready);
    t.handle.shutdown().await;
}

#[tokio::test]
async fn terminate_session_closes_the_channel_and_the_session_is_gone() {
    let t = TestEmulator::start(Timings::instant()).await;
    let env = running_env(&t).await;
    let (id, url, token) = create_session(&t, &env, None).await;
    let mut c = gateway_support::Client::connect(&url, &token).await;
    c.run_until("ready", |c| c.ready).await;
    let (status, v) = aws_json_call(
        &t,
        "ssm",
        "AmazonSSM.TerminateSession",
        json!({"SessionId": id}),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["SessionId"], id.as_str());
    // The client's channel is closed, and the session cannot be resumed.
    c.wait_closed().await;
    assert_ssm_refuses(
        &t,
        "AmazonSSM.ResumeSession",
        json!({"SessionId": id}),
        "DoesNotExistException",
    )
    .await;
    // Ending a session that is gone is not an error (as in SSM); a body
    // without a SessionId and other operations are.
    let (status, _) = aws_json_call(
        &t,
        "ssm",
        "AmazonSSM.TerminateSession",
        json!({"SessionId": id}),
    )
    .await;
    assert_eq!(status, 200);
    assert_ssm_refuses(
        &t,
        "AmazonSSM.TerminateSession",
        json!({}),
        "ValidationException",
    )
    .await;
    assert_ssm_refuses(
        &t,
        "AmazonSSM.StartSession",
        json!({"Target": "i-0"}),
        "UnknownOperationException",
    )
    .await;
    t.handle.shutdown().await;
}

#[tokio::test]
async fn resume_session_gives_a_new_token_and_the_old_one_opens_nothing() {
    let t = TestEmulator::start(Timings::instant()).await;
    let env = running_env(&t).await;
    let (id, url, old_token) = create_session(&t, &env, None).await;
    let (status, v) = aws_json_call(
        &t,
        "ssm",
        "AmazonSSM.ResumeSession",
        json!({"SessionId": id}),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["SessionId"], id.as_str());
    let token = v["TokenValue"].as_str().unwrap();
    let new_url = v["StreamUrl"].as_str().unwrap();
    assert_ne!(token, old_token);
    assert!(
        new_url.contains(&format!("/v1/data-channel/{id}?")),
        "{new_url}"
    );
    assert_opens_nothing(&url, &old_token).await;
    let mut c = gateway_support::Client::connect(new_url, token).await;
    c.run_until("ready", |c| c.ready).await;
    c.send_input(b"echo resumed-$((40+2))\r");
    c.wait_for_output("resumed-42").await;

    // Unknown sessions, other services' signatures and bad bodies are refused.
    assert_ssm_refuses(
        &t,
        "AmazonSSM.ResumeSession",
        json!({"SessionId": "1795956722298812732-0000000000000000a"}),
        "DoesNotExistException",
    )
    .await;
    let (status, v) = aws_json_call(
        &t,
        "kms",
        "AmazonSSM.ResumeSession",
        json!({"SessionId": id}),
    )
    .await;
    assert_eq!(status, 400, "{v}");
    assert_ssm_refuses(
        &t,
        "AmazonSSM.ResumeSession",
        json!({}),
        "ValidationException",
    )
    .await;
    let ops = t.handle.operations();
    assert!(
        ops.iter().any(|o| o == "AmazonSSM.ResumeSession"),
        "{ops:?}"
    );
    t.handle.shutdown().await;
}

//! Data-channel gateway tests: a real WebSocket client with a client-role channel
//! against the gateway on 127.0.0.1:0.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod gateway_support;

use std::collections::HashMap;
use std::time::Duration;

use cloudshell_emulator::gateway::{
    CLOSE_POLICY_VIOLATION, FaultSpec, GatewayConfig, SessionMode, SessionOptions, stream_pattern,
};
use futures_util::{SinkExt, StreamExt};
use gateway_support::{Client, TestGateway, raw_connect};
use ssm_channel::payload::Flag;
use ssm_channel::smux::{Command, Decoder, Frame as SmuxFrame};
use tokio_tungstenite::tungstenite::Message as WsMessage;

fn echo() -> SessionOptions {
    SessionOptions {
        mode: SessionMode::Echo,
        ..SessionOptions::default()
    }
}

#[tokio::test]
async fn echo_mode_round_trip() {
    let t = TestGateway::with_defaults(echo()).await;
    let (id, mut c) = t.client("env-1", None).await;
    // Echo sessions start with a SessionType handshake (no prompt would make the
    // client ready otherwise).
    c.run_until("ready", |c| c.ready).await;
    assert_eq!(c.ch.session_type(), Some("Standard_Stream"));
    c.send_input(b"hello gateway");
    c.wait_for_output("hello gateway").await;
    assert_eq!(c.output, b"hello gateway");
    let m = t.gw.session_metrics(&id).expect("metrics");
    assert_eq!(m.input_bytes, 13);
    assert_eq!(m.output_bytes, 13);
    assert_eq!(m.connections, 1);
    assert!(m.frames_in >= 2 && m.frames_out >= 3, "{m:?}");
    assert!(t.dir.touches.load(std::sync::atomic::Ordering::Relaxed) > 0);
}

#[tokio::test]
async fn shell_runs_commands() {
    let t = TestGateway::with_defaults(SessionOptions::default()).await;
    let (_id, mut c) = t.client("env-shell", None).await;
    // The shell's first output (its prompt) makes the client ready.
    c.run_until("ready", |c| c.ready).await;
    c.send_input(b"echo h\"\"i; echo $USER:$TERM:$AWS_REGION; pwd\r");
    c.wait_for_output("hi\r\ncloudshell-user:xterm-256color:us-east-1\r\n")
        .await;
    let home = t.gw.home_dir("env-shell");
    c.wait_for_output(&home.display().to_string()).await;
    assert!(home.is_dir());
}

#[tokio::test]
async fn resize_reaches_the_pty() {
    let t = TestGateway::with_defaults(SessionOptions::default()).await;
    let (_id, mut c) = t.client("env-size", None).await;
    c.run_until("ready", |c| c.ready).await;
    c.resize(120, 40);
    c.send_input(b"stty size | sed 's/^/SIZE=/'\r");
    c.wait_for_output("SIZE=40 120").await;
}

#[tokio::test]
async fn bad_token_closes_without_starting_anything() {
    let t = TestGateway::with_defaults(SessionOptions::default()).await;
    let (id, _token) = t.add_session("env-x", Some("tab-x"));
    let mut ws = raw_connect(&t.url(&id)).await;
    let open = serde_json::json!({
        "MessageSchemaVersion": "1.0",
        "RequestId": "8c1f6f3e-2b7a-4d0e-9a55-0c4b2f1d9e77",
        "TokenValue": "not-the-token",
        "ClientId": "3f9b2c1d-7e6a-4b58-9c0d-1e2f3a4b5c6d",
        "ClientVersion": "1.2.677.0"
    });
    ws.send(WsMessage::Text(open.to_string().into()))
        .await
        .unwrap();
    let mut close_code = None;
    while let Some(m) = ws.next().await {
        match m {
            Ok(WsMessage::Close(Some(f))) => close_code = Some(u16::from(f.code)),
            Ok(WsMessage::Binary(b)) => panic!("got a data frame: {} bytes", b.len()),
            Ok(_) => {}
            Err(_) => break,
        }
    }
    assert_eq!(close_code, Some(CLOSE_POLICY_VIOLATION));
    assert!(t.gw.session_metrics(&id).is_none());
    assert!(t.gw.live_sessions().is_empty());
    assert_eq!(t.gw.live_tabs(), 0);
    assert!(!t.gw.home_dir("env-x").exists(), "no shell was started");

    // Not JSON at all, and a binary first frame: closed the same way.
    for first in [
        WsMessage::Text("hello".into()),
        WsMessage::Binary(vec![0u8; 10].into()),
    ] {
        let mut ws = raw_connect(&t.url(&id)).await;
        ws.send(first).await.unwrap();
        let mut closed = false;
        while let Some(m) = ws.next().await {
            match m {
                Ok(WsMessage::Close(_)) => closed = true,
                Ok(WsMessage::Binary(_)) => panic!("data frame"),
                Ok(_) => {}
                Err(_) => break,
            }
        }
        assert!(closed);
    }
    assert!(t.gw.live_sessions().is_empty());
}

#[tokio::test]
async fn stream_mode_delivers_exactly_n_bytes_then_closes() {
    let total = 300_000usize;
    let t = TestGateway::with_mode(SessionMode::Stream {
        total_bytes: total as u64,
        chunk_size: Some(1000),
    })
    .await;
    let (id, mut c) = t.client("env-s", None).await;
    let reason = c.wait_closed().await;
    assert_eq!(reason, None);
    assert_eq!(c.output.len(), total);
    assert!(c.output == stream_pattern(total), "stream content differs");
    let m = t.gw.session_metrics(&id).unwrap();
    assert_eq!(m.output_bytes, total as u64);
    // 300 messages of 1000 bytes: each frame is header + at most 1000 bytes.
    assert!(m.frames_out >= 300, "{m:?}");
}

#[tokio::test]
async fn shell_exit_sends_channel_closed() {
    let t = TestGateway::with_defaults(SessionOptions::default()).await;
    let (id, mut c) = t.client("env-exit", Some("tab-exit")).await;
    c.run_until("ready", |c| c.ready).await;
    c.send_input(b"exit\r");
    let reason = c.wait_closed().await;
    assert_eq!(reason, None);
    // The tab ended with its shell.
    let give_up = std::time::Instant::now() + Duration::from_secs(10);
    while t.gw.live_sessions().contains(&id) || t.gw.live_tabs() != 0 {
        assert!(std::time::Instant::now() < give_up);
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn config_defaults_are_sane() {
    let c = GatewayConfig::default();
    assert_eq!(c.defaults.chunk_size, 1024);
    assert_eq!(c.defaults.ping_interval, Some(Duration::from_secs(54)));
    assert!(c.defaults.faults.is_empty());
    assert_eq!("none".parse::<FaultSpec>().unwrap(), FaultSpec::default());
}

#[tokio::test]
async fn an_ended_session_cannot_be_opened_again() {
    let t = TestGateway::with_mode(SessionMode::Echo).await;
    let (id, token) = t.add_session("env-end", None);
    let mut c = Client::connect(&t.url(&id), &token).await;
    c.run_until("ready", |c| c.ready).await;
    t.gw.close_session(&id);
    c.wait_closed().await;
    // Wait until the session's task is gone.
    let give_up = std::time::Instant::now() + gateway_support::GUARD;
    while t.gw.live_sessions().contains(&id) {
        assert!(std::time::Instant::now() < give_up, "session never ended");
        tokio::task::yield_now().await;
    }
    // The same URL and token: refused, nothing started.
    let mut ws = raw_connect(&t.url(&id)).await;
    let open = serde_json::json!({
        "MessageSchemaVersion": "1.0",
        "RequestId": "8c1f6f3e-2b7a-4d0e-9a55-0c4b2f1d9e78",
        "TokenValue": token,
        "ClientId": "3f9b2c1d-7e6a-4b58-9c0d-1e2f3a4b5c6d",
        "ClientVersion": "1.2.677.0"
    });
    ws.send(WsMessage::Text(open.to_string().into()))
        .await
        .unwrap();
    let mut close = None;
    while let Some(m) = ws.next().await {
        match m {
            Ok(WsMessage::Close(Some(f))) => {
                close = Some((u16::from(f.code), f.reason.to_string()))
            }
            Ok(WsMessage::Binary(b)) => panic!("got a data frame: {} bytes", b.len()),
            Ok(_) => {}
            Err(_) => break,
        }
    }
    assert_eq!(
        close,
        Some((CLOSE_POLICY_VIOLATION, "session ended".to_string()))
    );
    assert!(t.gw.live_sessions().is_empty());
}

/// The smux frames in `output`, per stream: data and whether a FIN came.
fn smux_streams(output: &[u8]) -> HashMap<u32, (Vec<u8>, bool)> {
    let mut d = Decoder::default();
    d.feed(output);
    let mut streams: HashMap<u32, (Vec<u8>, bool)> = HashMap::new();
    while let Some(f) = d.next_frame().expect("smux v1 from the agent") {
        let s = streams.entry(f.stream_id).or_default();
        match f.command {
            Command::Psh => s.0.extend_from_slice(&f.data),
            Command::Fin => s.1 = true,
            c => panic!("unexpected {c:?} from the agent"),
        }
    }
    streams
}

/// A port on 127.0.0.1 with nothing listening (bound, then closed).
async fn closed_port() -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap().port()
}

fn smux_wire(frames: &[SmuxFrame]) -> Vec<u8> {
    let mut out = Vec::new();
    for f in frames {
        f.encode(&mut out);
    }
    out
}

#[tokio::test]
async fn forward_mode_relays_smux_streams_until_terminate() {
    // An echo server that closes each connection at end of file.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = tcp.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
                let _ = tokio::io::AsyncWriteExt::shutdown(&mut w).await;
            });
        }
    });
    let mode: SessionMode = format!("forward:{port}").parse().unwrap();
    let t = TestGateway::with_mode(mode).await;
    let (_id, mut c) = t.client("env-fwd", None).await;
    c.run_until("ready", |c| c.ready).await;
    assert_eq!(c.ch.session_type(), Some("Port"));
    assert_eq!(
        c.ch.session_properties(),
        &serde_json::json!({
            "portNumber": port.to_string(),
            "type": "LocalPortForwarding",
            "localPortNumber": "0",
        })
    );

    c.send_input(&smux_wire(&[
        SmuxFrame::syn(3),
        SmuxFrame::psh(3, &b"ping"[..]),
        SmuxFrame::syn(5),
        SmuxFrame::psh(5, &b"pong"[..]),
    ]));
    c.run_until("both echoes", |c| {
        let s = smux_streams(&c.output);
        s.get(&3).is_some_and(|s| s.0 == b"ping") && s.get(&5).is_some_and(|s| s.0 == b"pong")
    })
    .await;
    c.send_input(&smux_wire(&[SmuxFrame::fin(3)]));
    c.run_until("FIN of stream 3", |c| {
        smux_streams(&c.output).get(&3).is_some_and(|s| s.1)
    })
    .await;
    // Stream 5, and the session, carry on.
    c.send_input(&smux_wire(&[SmuxFrame::psh(5, &b"!"[..])]));
    c.run_until("more of stream 5", |c| {
        smux_streams(&c.output)
            .get(&5)
            .is_some_and(|s| s.0 == b"pong!")
    })
    .await;
    assert!(c.flags.is_empty());
    assert!(!smux_streams(&c.output)[&5].1);

    c.ch.send_flag(std::time::Instant::now(), Flag::TERMINATE_SESSION.0)
        .unwrap();
    c.wait_closed().await;
}

#[tokio::test]
async fn forward_mode_reports_a_refused_connection_with_flag_3() {
    let port = closed_port().await;
    let t = TestGateway::with_mode(SessionMode::Forward { port }).await;
    let (_id, mut c) = t.client("env-fwd-refused", None).await;
    c.run_until("ready", |c| c.ready).await;
    c.send_input(&smux_wire(&[SmuxFrame::syn(7)]));
    c.run_until("flag 3 and FIN of stream 7", |c| {
        !c.flags.is_empty() && smux_streams(&c.output).get(&7).is_some_and(|s| s.1)
    })
    .await;
    assert_eq!(c.flags, [Flag::CONNECT_TO_PORT_ERROR.0]);
    assert!(c.closed.is_none(), "the session outlives the stream");
}

/// A server on 127.0.0.1 that greets its Nth connection with "hello N\n",
/// then echoes. Returns its port.
async fn greeter() -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let mut n = 0;
        while let Ok((mut tcp, _)) = listener.accept().await {
            n += 1;
            tokio::spawn(async move {
                use tokio::io::AsyncWriteExt as _;
                let (mut r, mut w) = tcp.split();
                if w.write_all(format!("hello {n}\n").as_bytes()).await.is_ok() {
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                }
            });
        }
    });
    port
}

#[tokio::test]
async fn forward_basic_mode_connects_again_after_disconnect_to_port() {
    let port = greeter().await;
    let mode: SessionMode = format!("forward-basic:{port}").parse().unwrap();
    let t = TestGateway::with_mode(mode).await;
    let (_id, mut c) = t.client("env-fwd-basic", None).await;
    c.run_until("ready", |c| c.ready).await;
    // An agent that does not multiplex, with the same properties.
    assert_eq!(c.ch.agent_version(), Some("3.0.196.0"));
    assert_eq!(
        c.ch.session_properties()["type"],
        serde_json::json!("LocalPortForwarding")
    );
    // The agent connects at the start: the greeting comes unasked.
    c.run_until("the first greeting", |c| c.output == b"hello 1\n")
        .await;
    c.send_input(b"ping 1");
    c.run_until("the first echo", |c| c.output.ends_with(b"ping 1"))
        .await;
    // DisconnectToPort closes that connection; the next bytes open another.
    c.ch.send_flag(std::time::Instant::now(), Flag::DISCONNECT_TO_PORT.0)
        .unwrap();
    c.send_input(b"ping 2");
    c.run_until("a second connection", |c| {
        c.output.ends_with(b"hello 2\nping 2")
    })
    .await;
    assert_eq!(c.output, b"hello 1\nping 1hello 2\nping 2");
    assert!(c.flags.is_empty());
    c.ch.send_flag(std::time::Instant::now(), Flag::TERMINATE_SESSION.0)
        .unwrap();
    c.wait_closed().await;
}

#[tokio::test]
async fn an_agent_up_to_2_3_722_0_ignores_the_terminate_session_flag() {
    let port = greeter().await;
    let t = TestGateway::with_defaults(
        SessionOptions {
            mode: SessionMode::ForwardBasic { port },
            ..SessionOptions::default()
        }
        .with_agent_version("2.3.722.0"),
    )
    .await;
    let (_id, mut c) = t.client("env-fwd-old-agent", None).await;
    c.run_until("the greeting", |c| c.output == b"hello 1\n")
        .await;
    assert_eq!(c.ch.agent_version(), Some("2.3.722.0"));
    c.ch.send_flag(std::time::Instant::now(), Flag::TERMINATE_SESSION.0)
        .unwrap();
    // The session goes on: the destination still echoes.
    c.send_input(b"still here");
    c.run_until("the echo", |c| c.output.ends_with(b"still here"))
        .await;
    assert!(c.closed.is_none());
}

#[test]
fn the_agent_version_must_agree_with_the_forwarding_mode() {
    let forward = SessionOptions {
        mode: SessionMode::Forward { port: 1 },
        ..SessionOptions::default()
    };
    let basic = SessionOptions {
        mode: SessionMode::ForwardBasic { port: 1 },
        ..SessionOptions::default()
    };
    assert_eq!(forward.agent_version(), "3.3.1142.0");
    assert_eq!(basic.agent_version(), "3.0.196.0");
    assert!(forward.check().is_ok() && basic.check().is_ok());
    assert!(
        forward
            .clone()
            .with_agent_version("3.0.196.0")
            .check()
            .is_err()
    );
    assert!(
        basic
            .clone()
            .with_agent_version("3.0.197.0")
            .check()
            .is_err()
    );
    assert!(
        basic
            .clone()
            .with_agent_version("2.3.722.0")
            .check()
            .is_ok()
    );
    assert!(
        !basic
            .clone()
            .with_agent_version("2.3.722.0")
            .takes_terminate_flag()
    );
    assert!(basic.takes_terminate_flag());
}

#[tokio::test]
async fn command_mode_sends_stdout_stderr_and_the_exit_code_then_closes() {
    let t = TestGateway::with_mode(
        "command:echo out-$((1+1)); echo err-3 >&2; printf tail; exit 7"
            .parse()
            .unwrap(),
    )
    .await;
    let (_id, mut c) = t.client("env-command", None).await;
    c.wait_closed().await;
    // As AWS-StartNonInteractiveCommand with separate output streams.
    assert_eq!(c.ch.session_type(), Some("NonInteractiveCommands"));
    assert_eq!(
        c.ch.session_properties()["separateOutputStream"],
        serde_json::json!(true)
    );
    assert_eq!(c.output, b"out-2\ntail");
    assert_eq!(c.stderr, b"err-3\n");
    assert_eq!(c.exit_code, Some(7));
}

#[tokio::test]
async fn forward_basic_mode_ends_the_session_when_the_destination_refuses() {
    let port = closed_port().await;
    let t = TestGateway::with_mode(SessionMode::ForwardBasic { port }).await;
    let (_id, mut c) = t.client("env-fwd-basic-refused", None).await;
    c.wait_closed().await;
    assert!(c.output.is_empty());
}

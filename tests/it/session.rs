//! The session driver against the emulator's data channel.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use cloudshell_emulator::gateway::{
    GatewayConfig, HandshakeMode, SessionMode, SessionOptions as GwOptions,
};
use cloudshell_rs::session::{KmsClient, Session, SessionError, SessionEvent, SessionTarget};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::session_support::*;

#[tokio::test]
async fn runs_commands_and_reads_their_output() {
    let env = start().await;
    within(60, async {
        let mut s = env.connect(&new_tab()).await;
        assert_eq!(s.session_type(), "Standard_Stream");
        s.send_input(b"echo result=$((6*7))\r").await.unwrap();
        read_until(&mut s, "result=42").await;
        s.send_input(b"exit\r").await.unwrap();
        read_to_close(&mut s).await;
    })
    .await;
}

#[tokio::test]
async fn resize_reaches_the_remote_terminal() {
    let env = start().await;
    within(60, async {
        let mut s = env.connect(&new_tab()).await;
        s.resize(123, 45).await.unwrap();
        s.send_input(b"stty size\r").await.unwrap();
        read_until(&mut s, "45 123").await;
        s.resize(80, 24).await.unwrap();
        s.send_input(b"stty size\r").await.unwrap();
        read_until(&mut s, "24 80").await;
    })
    .await;
}

#[tokio::test]
async fn reattach_by_tab_id_finds_the_same_shell() {
    let env = start().await;
    within(60, async {
        let tab = new_tab();
        let mut first = env.connect(&tab).await;
        first
            .send_input(b"export MARK=m$((40+2)); cd /tmp; echo set-$MARK\r")
            .await
            .unwrap();
        read_until(&mut first, "set-m42").await;
        // Output made while nobody is attached reaches the next session (as
        // tmux redraws on attach).
        first
            .send_input(b"sleep 0.5; echo later-$MARK\r")
            .await
            .unwrap();
        first.flush().await.unwrap();
        first.close().await.unwrap();
        drop(first);

        let mut second = env.connect(&tab).await;
        read_until(&mut second, "later-m42").await;
        second.send_input(b"echo got-$MARK-$PWD\r").await.unwrap();
        read_until(&mut second, "got-m42-/tmp").await;

        // A different tab is a different shell.
        let mut other = env.connect(&new_tab()).await;
        other.send_input(b"echo other-[$MARK]\r").await.unwrap();
        read_until(&mut other, "other-[]").await;
    })
    .await;
}

/// Types `line` one byte per message, then Enter, and checks the remote shell
/// received exactly those bytes (no loss, no duplicates, in order).
async fn type_and_check(s: &mut Session, digits: &str) {
    s.send_input(b"echo got:").await.unwrap();
    for b in digits.bytes() {
        s.send_input(&[b]).await.unwrap();
    }
    s.send_input(b":end\r").await.unwrap();
    // The command's output line (the echo of the typed line starts with "echo ").
    let line = format!("\rgot:{digits}:end\r\n");
    let out = read_until(s, &line).await;
    assert_eq!(out.matches(&line).count(), 1, "{out:?}");
}

/// Output check: 2000 numbered lines arrive complete and in order.
async fn count_lines(s: &mut Session) {
    s.send_input(b"for i in $(seq 1 2000); do echo L$i; done; echo DONE-$((1+1))\r")
        .await
        .unwrap();
    let out = read_until(s, "DONE-2").await;
    let expected: String = (1..=2000).map(|i| format!("L{i}\r\n")).collect();
    assert!(
        out.contains(&expected),
        "output lines missing or out of order"
    );
}

fn digits(n: usize) -> String {
    (0..n)
        .map(|i| char::from(b'0' + (i * 7 % 10) as u8))
        .collect()
}

#[tokio::test]
async fn survives_loss_duplication_and_reordering() {
    let env = start().await;
    within(120, async {
        let tab = new_tab();
        let target = env.create(&tab).await;
        let faults = "drop:both:0.1,dup:both:0.1,reorder:both:0.1,seed:7"
            .parse()
            .unwrap();
        env.emulator.gateway().configure_session(
            target.session_id.clone(),
            GwOptions::default().with_faults(faults),
        );
        let mut s = Session::connect(target.clone(), local_options())
            .await
            .unwrap();
        type_and_check(&mut s, &digits(200)).await;
        count_lines(&mut s).await;
        let m = env
            .emulator
            .gateway()
            .session_metrics(&target.session_id)
            .unwrap();
        assert!(
            m.faults.dropped > 0 && m.faults.duplicated > 0 && m.faults.reordered > 0,
            "{m:?}"
        );
    })
    .await;
}

#[tokio::test]
async fn survives_a_cut_websocket_through_a_new_session_for_the_tab() {
    let env = start().await;
    within(120, async {
        // The service forgets a session as soon as its socket drops, so the
        // same session cannot be resumed: a new one is made for the tab.
        let gw = env.emulator.gateway();
        gw.set_config(GatewayConfig {
            reconnect_grace: Duration::ZERO,
            ..gw.config()
        });
        let tab = new_tab();
        let target = env.create(&tab).await;
        let first_id = target.session_id.clone();
        // Cut once after 40 frames: while the loop below prints.
        env.emulator.gateway().configure_session(
            first_id.clone(),
            GwOptions::default().with_faults("cut:frames:40".parse().unwrap()),
        );
        let client = env.client.clone();
        let env_id = env.env_id.clone();
        let tab2 = tab.clone();
        let options = local_options().reconnector(move |_previous: String| {
            let client = client.clone();
            let env_id = env_id.clone();
            let tab = tab2.clone();
            async move {
                let out = client
                    .create_session()
                    .environment_id(env_id)
                    .tab_id(tab)
                    .send()
                    .await?;
                Ok(SessionTarget::from(out))
            }
        });
        let mut s = Session::connect(target, options).await.unwrap();
        // Acknowledged input (never sent again), then output that keeps coming
        // while the connection is cut and re-established.
        s.send_input(b"for i in $(seq 1 60); do sleep 0.05; echo tick$i; done; echo LOOP-DONE\r")
            .await
            .unwrap();
        s.flush().await.unwrap();
        let line = digits(120);
        let expected = format!("\rgot:{line}:end\r\n");
        let mut out = String::new();
        let mut reconnecting = false;
        let mut reconnected = None;
        while !out.contains(&expected) {
            let Ok(ev) = tokio::time::timeout(Duration::from_secs(20), s.next_event()).await else {
                panic!("stuck; reconnected: {reconnected:?}; output: {out:?}");
            };
            match ev {
                Some(SessionEvent::Output(b)) => out.push_str(&String::from_utf8_lossy(&b)),
                Some(SessionEvent::Reconnecting { attempt, .. }) => {
                    assert_eq!(attempt, 1);
                    if !reconnecting {
                        reconnecting = true;
                        // Typed while disconnected: queued, then sent on the new session.
                        let w = s.writer();
                        let line = line.clone();
                        tokio::spawn(async move {
                            w.send_input(b"echo got:").await.unwrap();
                            for b in line.bytes() {
                                w.send_input(&[b]).await.unwrap();
                            }
                            w.send_input(b":end\r").await.unwrap();
                        });
                    }
                }
                Some(SessionEvent::Reconnected {
                    session_id,
                    resent_bytes,
                }) => reconnected = Some((session_id, resent_bytes)),
                other => panic!("unexpected {other:?}; output {out:?}"),
            }
        }
        let (new_id, _) = reconnected.expect("the connection was cut and re-established");
        assert_ne!(new_id, first_id);
        assert_eq!(out.matches(&expected).count(), 1, "{out:?}");
        assert_eq!(
            out.matches("for i in").count(),
            1,
            "acknowledged input was sent again: {out:?}"
        );
        // Output in flight at the cut was not lost: the tab's shell kept what
        // the old session's client never acknowledged (the typed line runs
        // after the loop, so all of the loop's output came before it).
        assert_ticks_once_in_order(&out, 60);
        let m = env.emulator.gateway().session_metrics(&first_id);
        assert!(m.is_none_or(|m| m.faults.cuts == 1));
        // The shell carries on in the new session.
        s.send_input(b"echo after-$((2+3))\r").await.unwrap();
        read_until(&mut s, "after-5").await;
    })
    .await;
}

/// `tick1\r\n` .. `tickN\r\n` each appear exactly once, in order, then `LOOP-DONE`.
fn assert_ticks_once_in_order(out: &str, n: usize) {
    let mut at = 0;
    for i in 1..=n {
        let tick = format!("tick{i}\r\n");
        assert_eq!(out.matches(&tick).count(), 1, "{tick:?} in {out:?}");
        let pos = out.find(&tick).unwrap();
        assert!(pos >= at, "{tick:?} out of order in {out:?}");
        at = pos;
    }
    assert!(out[at..].contains("LOOP-DONE\r\n"), "{out:?}");
}

#[tokio::test]
async fn a_cut_resumes_the_same_session_with_nothing_lost_or_doubled() {
    let env = start().await;
    within(120, async {
        let tab = new_tab();
        let target = env.create(&tab).await;
        let first_id = target.session_id.clone();
        // The connection drops right after the 30th frame from the client was
        // taken in: that keystroke reached the shell, its acknowledgement is lost.
        env.emulator.gateway().configure_session(
            first_id.clone(),
            GwOptions::default().with_faults("cut:input:30".parse().unwrap()),
        );
        // No reconnector: only a resume of the same session can succeed.
        let mut s = Session::connect(target, local_options()).await.unwrap();
        s.send_input(b"for i in $(seq 1 40); do sleep 0.02; echo tick$i; done; echo LOOP-DONE\r")
            .await
            .unwrap();
        s.flush().await.unwrap();
        let line = digits(120);
        s.send_input(b"echo got:").await.unwrap();
        for b in line.bytes() {
            s.send_input(&[b]).await.unwrap();
        }
        s.send_input(b":end\r").await.unwrap();
        let expected = format!("\rgot:{line}:end\r\n");
        let mut out = String::new();
        let mut events = Vec::new();
        while !out.contains(&expected) {
            let Ok(ev) = tokio::time::timeout(Duration::from_secs(20), s.next_event()).await else {
                panic!("stuck; events: {events:?}; output: {out:?}");
            };
            match ev {
                Some(SessionEvent::Output(b)) => out.push_str(&String::from_utf8_lossy(&b)),
                Some(SessionEvent::Reconnecting { attempt, .. }) => {
                    events.push(format!("reconnecting {attempt}"))
                }
                Some(SessionEvent::Reconnected { session_id, .. }) => {
                    assert_eq!(session_id, first_id, "resumed, not replaced");
                    events.push("reconnected".into());
                }
                other => panic!("unexpected {other:?}; output {out:?}"),
            }
        }
        assert_eq!(events, ["reconnecting 1", "reconnected"]);
        let m = env.emulator.gateway().session_metrics(&first_id).unwrap();
        assert_eq!(m.faults.cuts, 1, "{m:?}");
        // Every typed byte exactly once (the echo of the command line shows
        // them too, so look at the output line only).
        assert_eq!(out.matches(&expected).count(), 1, "{out:?}");
        assert_ticks_once_in_order(&out, 40);
        s.send_input(b"echo after-$((2+3))\r").await.unwrap();
        read_until(&mut s, "after-5").await;
    })
    .await;
}

#[tokio::test]
async fn bad_token_is_a_clear_error() {
    let env = start().await;
    within(30, async {
        let mut target = env.create(&new_tab()).await;
        target.token = "not-the-token".into();
        let err = Session::connect(target, local_options()).await.unwrap_err();
        assert!(matches!(err, SessionError::Rejected { .. }), "{err:?}");
        assert!(err.to_string().contains("token"), "{err}");
        assert!(!err.to_string().contains("not-the-token"));
    })
    .await;
}

#[tokio::test]
async fn a_stream_url_that_is_not_ssmmessages_is_refused_before_connecting() {
    let env = start().await;
    // A listener that would see any connection attempt.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut target = env.create(&new_tab()).await;
    target.stream_url = format!(
        "ws://127.0.0.1:{port}/v1/data-channel/{}",
        target.session_id
    );
    // Default options: AWS message gateways only.
    let err = Session::connect(target.clone(), Default::default())
        .await
        .unwrap_err();
    assert!(matches!(err, SessionError::RefusedHost { .. }), "{err:?}");
    assert!(
        err.to_string()
            .starts_with("refusing to send the session token to 127.0.0.1"),
        "{err}"
    );
    target.stream_url = format!(
        "wss://ssm-messages.evil.example/v1/data-channel/{}",
        target.session_id
    );
    let err = Session::connect(target, Default::default())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("evil.example"), "{err}");
    // Nothing ever connected.
    assert_eq!(
        listener.accept().unwrap_err().kind(),
        std::io::ErrorKind::WouldBlock
    );
}

#[tokio::test]
async fn a_dead_peer_is_detected() {
    // A WebSocket server that completes the handshake and then never reads,
    // answers or sends anything.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let ws = tokio_tungstenite::accept_async(tcp).await.unwrap();
        std::future::pending::<()>().await;
        drop(ws);
    });
    let mut options = local_options();
    options.ping_interval = Duration::from_millis(100);
    options.dead_peer_timeout = Duration::from_millis(400);
    let target = SessionTarget {
        stream_url: format!("ws://127.0.0.1:{port}/v1/data-channel/s-1"),
        token: "t".into(),
        session_id: "s-1".into(),
    };
    let err = within(30, Session::connect(target, options))
        .await
        .unwrap_err();
    assert!(matches!(err, SessionError::PeerDead(_)), "{err:?}");
    assert!(err.to_string().contains("stopped responding"), "{err}");
    server.abort();
}

#[tokio::test]
async fn kms_encrypted_session_uses_the_fake_kms() {
    let env = start_with(GwOptions::default().with_handshake(HandshakeMode::Kms {
        key_id: "alias/test-key".into(),
    }))
    .await;
    within(60, async {
        let target = env.create(&new_tab()).await;
        let options = local_options()
            .data_key_provider(KmsClient::for_client(&env.client, env.emulator.endpoint()));
        let mut s = Session::connect(target, options).await.unwrap();
        assert!(
            s.customer_message().unwrap_or_default().contains("KMS"),
            "{:?}",
            s.customer_message()
        );
        s.send_input(b"echo enc-$((3*3))\r").await.unwrap();
        read_until(&mut s, "enc-9").await;
    })
    .await;
}

#[tokio::test]
async fn kms_session_without_a_provider_fails_clearly() {
    let env = start_with(GwOptions::default().with_handshake(HandshakeMode::Kms {
        key_id: "alias/test-key".into(),
    }))
    .await;
    let target = env.create(&new_tab()).await;
    let err = within(30, Session::connect(target, local_options()))
        .await
        .unwrap_err();
    assert!(matches!(err, SessionError::Kms(_)), "{err:?}");
}

#[tokio::test]
async fn stream_adapter_reads_and_writes() {
    let env = start_with(GwOptions::default().with_mode(SessionMode::Echo)).await;
    within(30, async {
        let s = env.connect(&new_tab()).await;
        let mut stream = s.into_stream();
        stream
            .write_all(b"hello through the adapter")
            .await
            .unwrap();
        stream.shutdown().await.unwrap(); // waits for the acknowledgement
        let mut buf = vec![0u8; 25];
        stream.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"hello through the adapter");
    })
    .await;
}

#[tokio::test]
async fn stream_mode_delivers_every_byte_in_order() {
    let total = 3 * 1024 * 1024 + 17;
    let env = start_with(GwOptions::default().with_mode(SessionMode::Stream {
        total_bytes: total,
        chunk_size: None,
    }))
    .await;
    within(60, async {
        let mut s = env.connect(&new_tab()).await;
        let mut got = Vec::with_capacity(total as usize);
        loop {
            match s.next_event().await {
                Some(SessionEvent::Output(b)) => got.extend_from_slice(&b),
                Some(SessionEvent::Closed { .. }) | None => break,
                Some(SessionEvent::Failed(e)) => panic!("{e:?}"),
                Some(_) => {}
            }
        }
        let expected = cloudshell_emulator::gateway::stream_pattern(total as usize);
        assert_eq!(got.len(), expected.len());
        assert!(got == expected, "stream bytes differ");
    })
    .await;
}

#[tokio::test]
async fn a_resumer_that_fails_leaves_the_current_token_in_use() {
    let env = start().await;
    within(60, async {
        let target = env.create(&new_tab()).await;
        let id = target.session_id.clone();
        env.emulator.gateway().configure_session(
            id.clone(),
            GwOptions::default().with_faults("cut:input:2".parse().unwrap()),
        );
        let asked = Arc::new(AtomicUsize::new(0));
        let counter = asked.clone();
        let options = local_options().resumer(move |_previous: String| {
            counter.fetch_add(1, Ordering::SeqCst);
            async move { Err::<SessionTarget, _>("no credentials here".into()) }
        });
        let mut s = Session::connect(target, options).await.unwrap();
        s.send_input(b"echo one\r").await.unwrap();
        s.send_input(b"echo two-$((1+1))\r").await.unwrap();
        read_until(&mut s, "two-2").await;
        s.send_input(b"echo three-$((1+2))\r").await.unwrap();
        read_until(&mut s, "three-3").await;
        assert_eq!(asked.load(Ordering::SeqCst), 1);
        let m = env.emulator.gateway().session_metrics(&id).unwrap();
        assert_eq!((m.faults.cuts, m.connections), (1, 2), "{m:?}");
    })
    .await;
}

#[tokio::test]
async fn a_port_session_relays_bytes_exactly_and_ends_at_terminate() {
    let env = start().await;
    let greeting = b"SSH-2.0-emulated\r\n";
    let (port, seen) = tcp_echo(greeting, u64::MAX).await;
    within(60, async {
        let target = env.create_port(port).await;
        let mut s = Session::connect(target, local_options()).await.unwrap();
        assert_eq!(s.session_type(), "Port");
        assert_eq!(s.session_properties()["portNumber"], port.to_string());
        assert!(s.session_properties().get("type").is_none());
        let data = binary_bytes(200_000);
        let writer = s.writer();
        let send = data.clone();
        tokio::spawn(async move {
            for chunk in send.chunks(3000) {
                writer.send_input(chunk).await.unwrap();
            }
        });
        let mut want = greeting.to_vec();
        want.extend_from_slice(&data);
        let mut got = Vec::new();
        while got.len() < want.len() {
            match s.next_event().await {
                Some(SessionEvent::Output(b)) => got.extend_from_slice(&b),
                other => panic!("unexpected {other:?} after {} bytes", got.len()),
            }
        }
        assert!(got == want, "the relayed bytes differ");
        s.terminate().await.unwrap();
        assert_eq!(read_to_close(&mut s).await, "");
        let seen = seen.await.unwrap();
        assert_eq!(seen.echoed, data.len() as u64);
        assert!(
            seen.peer_closed,
            "the agent closed the destination connection"
        );
    })
    .await;
}

#[tokio::test]
async fn a_port_session_closes_when_its_destination_does() {
    let env = start().await;
    let (port, seen) = tcp_echo(b"", 5).await;
    within(60, async {
        let target = env.create_port(port).await;
        let mut s = Session::connect(target, local_options()).await.unwrap();
        s.send_input(b"hello, world").await.unwrap();
        assert_eq!(read_to_close(&mut s).await, "hello");
        assert!(!seen.await.unwrap().peer_closed);
    })
    .await;
}

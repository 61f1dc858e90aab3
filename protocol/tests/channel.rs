//! Channel behaviour: capture replays in both roles, retransmission timing on a
//! virtual clock, ordering, flow control, handshake and KMS.
#![allow(clippy::unwrap_used)]

mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use ssm_channel::payload::{
    self, ActionParameters, HandshakeRequest, KmsEncryptionRequest, RequestedClientAction,
    SessionTypeRequest,
};
use ssm_channel::{
    CONTROL_HEADROOM, Channel, ChannelConfig, Error, Event, Frame, Message, MessageType,
    PayloadType, Token, Transmit,
};
use support::*;
use uuid::Uuid;

fn ms(v: u64) -> Duration {
    Duration::from_millis(v)
}

fn open_pair(base: Instant) -> (Channel, Channel) {
    let mut c = client(1);
    let mut a = agent(2);
    c.open(base, Token::new("tok"), Uuid::nil(), Uuid::nil())
        .unwrap();
    pump(&mut c, &mut a, base);
    assert!(matches!(drain_events(&mut a)[..], [Event::Opened(_)]));
    (c, a)
}

/// Plain-shell pair (no handshake), client Ready.
fn ready_pair(base: Instant) -> (Channel, Channel) {
    let (mut c, mut a) = open_pair(base);
    a.send_output(base, PayloadType::Output, b"$ ").unwrap();
    pump(&mut a, &mut c, base);
    let ev = drain_events(&mut c);
    assert_eq!(
        ev,
        vec![
            Event::Ready {
                session_type: "Standard_Stream".into(),
                customer_message: None
            },
            Event::Output(Bytes::from_static(b"$ "))
        ]
    );
    pump(&mut c, &mut a, base); // ack
    assert!(a.all_acked());
    (c, a)
}

fn shell_request() -> HandshakeRequest {
    HandshakeRequest {
        agent_version: "3.3.1142.0".into(),
        requested_client_actions: vec![RequestedClientAction {
            action_type: "SessionType".into(),
            action_parameters: ActionParameters::SessionType(SessionTypeRequest {
                session_type: "Standard_Stream".into(),
                properties: serde_json::Value::Null,
            }),
        }],
    }
}

// ------------------------------------------------------------ capture replays

/// Feeds the plugin's frames of a session transcript to an agent-role channel and
/// checks what it delivers.
fn replay_client_frames_into_agent(name: &str) {
    let recs = capture(name);
    let base = Instant::now();
    let mut a = agent(7);
    let mut inputs = Vec::new();
    let mut sizes = Vec::new();
    let mut complete = false;
    // Expected: every distinct client stream message, by sequence.
    let mut want: BTreeMap<i64, (u64, Vec<u8>)> = BTreeMap::new();
    for r in &recs {
        if r["direction"] != "client_to_gateway" {
            continue;
        }
        let at = base + Duration::from_secs_f64(r["t"].as_f64().unwrap());
        match r["kind"].as_str().unwrap() {
            "ws_text" => {
                a.handle_incoming(at, Frame::Text(r["text"].as_str().unwrap()))
                    .unwrap();
            }
            "ws_binary" => {
                let d = &r["decoded"];
                if d["message_type"] == "input_stream_data" {
                    let seq = d["sequence_number"].as_i64().unwrap();
                    let pt = d["payload_type"].as_u64().unwrap();
                    let p = hex::decode(d["payload_hex"].as_str().unwrap()).unwrap();
                    if let Some(prev) = want.insert(seq, (pt, p.clone())) {
                        assert_eq!(prev, (pt, p), "a resend changed the bytes");
                    }
                }
                a.handle_incoming(at, Frame::Binary(&record_bytes(r)))
                    .unwrap();
            }
            _ => continue,
        }
        for e in drain_events(&mut a) {
            match e {
                Event::Opened(o) => {
                    assert_eq!(o.client_version.as_deref(), Some("1.2.0.0"));
                    a.start_handshake(at, shell_request()).unwrap();
                }
                Event::HandshakeResponse(resp) => {
                    assert_eq!(resp.client_version, "1.2.0.0");
                    assert_eq!(resp.processed_client_actions[0].action_status, 1);
                }
                Event::HandshakeComplete => complete = true,
                Event::Input(b) => inputs.extend_from_slice(&b),
                Event::Resize { cols, rows } => sizes.push((cols, rows)),
                other => panic!("unexpected {other:?}"),
            }
        }
        // The agent's own frames: acks for the client's stream messages.
        for t in drain_transmits(&mut a, at) {
            let m = decode(&t);
            if m.message_type == MessageType::Acknowledge {
                let ack: payload::Acknowledge = payload::from_json(&m.payload).unwrap();
                assert_eq!(ack.acknowledged_message_type, "input_stream_data");
                assert!(want.contains_key(&ack.acknowledged_message_sequence_number));
            }
        }
    }
    assert!(complete);
    let want_input: Vec<u8> = want
        .values()
        .filter(|(pt, _)| *pt == 1)
        .flat_map(|(_, p)| p.clone())
        .collect();
    let want_sizes: Vec<(u32, u32)> = want
        .values()
        .filter(|(pt, _)| *pt == 3)
        .map(|(_, p)| {
            let s: payload::Size = payload::from_json(p).unwrap();
            (s.cols, s.rows)
        })
        .collect();
    assert!(!want_input.is_empty());
    assert_eq!(inputs, want_input, "{name}");
    assert_eq!(sizes, want_sizes, "{name}");
    // Sequence numbers are contiguous from 0.
    assert_eq!(
        want.keys().copied().collect::<Vec<_>>(),
        (0..want.len() as i64).collect::<Vec<_>>()
    );
    assert_eq!(a.expected_sequence_number(), want.len() as i64);
    let st = a.stats();
    assert_eq!(st.received, want.len() as u64);
}

#[test]
fn replay_session_pipe_into_agent() {
    replay_client_frames_into_agent("session-pipe.jsonl");
}

#[test]
fn replay_session_retransmit_into_agent() {
    replay_client_frames_into_agent("session-retransmit.jsonl");
}

#[test]
fn replay_session_tty_into_agent() {
    replay_client_frames_into_agent("session-tty.jsonl");
}

#[test]
fn pipe_session_input_bytes() {
    // Spelled out for the pipe session: `echo hello\n`, the rewritten lone LF, `exit\n`.
    let recs = capture("session-pipe.jsonl");
    let inputs: Vec<u8> = recs
        .iter()
        .filter(|r| r["decoded"]["message_type"] == "input_stream_data")
        .filter(|r| r["decoded"]["payload_type"] == 1)
        .flat_map(|r| hex::decode(r["decoded"]["payload_hex"].as_str().unwrap()).unwrap())
        .collect();
    assert_eq!(inputs, b"echo hello\n\rexit\n");
}

/// Feeds the fake gateway's frames to a client-role channel, issuing the same input
/// the plugin sent, and compares the client's frames with the plugin's.
fn replay_gateway_frames_into_client(name: &str) {
    let recs = capture(name);
    let base = Instant::now();
    let mut c = client(3);
    c.open(base, Token::new("t"), Uuid::nil(), Uuid::nil())
        .unwrap();
    let Transmit::Text(open) = c.poll_transmit(base).unwrap() else {
        panic!("first frame must be text");
    };
    let open: payload::OpenDataChannel = serde_json::from_str(&open).unwrap();
    assert_eq!(open.client_version.as_deref(), Some("1.2.0.0"));

    let mut ours: Vec<Message> = Vec::new();
    let mut theirs: Vec<Message> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let mut output = Vec::new();
    let mut closed = false;
    for r in &recs {
        if r["kind"] != "ws_binary" {
            continue;
        }
        let at = base + Duration::from_secs_f64(r["t"].as_f64().unwrap());
        let m = Message::decode(&record_bytes(r)).unwrap();
        if r["direction"] == "client_to_gateway" {
            // Skip the plugin's resends (same sequence, same id).
            if m.message_type == MessageType::InputStreamData && !seen.insert(m.sequence_number) {
                continue;
            }
            if m.message_type == MessageType::InputStreamData {
                match m.payload_type {
                    PayloadType::Output => {
                        assert_eq!(c.send_input(at, &m.payload).unwrap(), m.payload.len())
                    }
                    PayloadType::Size => {
                        let s: payload::Size = payload::from_json(&m.payload).unwrap();
                        c.send_resize(at, s.cols, s.rows).unwrap();
                    }
                    _ => {}
                }
            }
            theirs.push(m);
        } else {
            c.handle_incoming(at, Frame::Binary(&record_bytes(r)))
                .unwrap();
        }
        for e in drain_events(&mut c) {
            match e {
                Event::Ready { session_type, .. } => assert_eq!(session_type, "Standard_Stream"),
                Event::Output(b) => output.extend_from_slice(&b),
                Event::Closed { .. } => closed = true,
                other => panic!("unexpected {other:?}"),
            }
        }
        ours.extend(drain_transmits(&mut c, at).iter().map(decode));
    }
    assert!(closed);
    assert!(!output.is_empty());
    assert_eq!(ours.len(), theirs.len(), "{name}");
    for (o, t) in ours.iter().zip(&theirs) {
        assert_eq!(o.message_type, t.message_type);
        assert_eq!(o.sequence_number, t.sequence_number);
        assert_eq!(o.flags, t.flags);
        assert_eq!(o.payload_type, t.payload_type);
        // Acks quote the gateway's ids, so even they match byte for byte; so does the
        // handshake response.
        assert_eq!(
            String::from_utf8_lossy(&o.payload),
            String::from_utf8_lossy(&t.payload),
            "{name}"
        );
    }
    assert!(c.all_acked());
}

#[test]
fn replay_session_pipe_into_client() {
    replay_gateway_frames_into_client("session-pipe.jsonl");
}

#[test]
fn replay_session_tty_into_client() {
    replay_gateway_frames_into_client("session-tty.jsonl");
}

// ------------------------------------------------------------ retransmission

#[test]
fn first_resend_exactly_at_rto_then_backoff_then_limit() {
    let base = Instant::now();
    let mut cfg = client_config(1);
    cfg.max_resends = 3;
    let mut c = Channel::new(cfg);
    let mut a = agent(2);
    c.open(base, Token::new("t"), Uuid::nil(), Uuid::nil())
        .unwrap();
    pump(&mut c, &mut a, base);
    a.send_output(base, PayloadType::Output, b"x").unwrap();
    pump(&mut a, &mut c, base);
    drain_transmits(&mut c, base); // ack
    drain_events(&mut c);

    assert_eq!(c.send_input(base, b"a").unwrap(), 1);
    let first = drain_transmits(&mut c, base);
    assert_eq!(first.len(), 1);
    assert_eq!(c.poll_timeout(), Some(base + ms(200)));

    c.handle_timeout(base + ms(199));
    assert!(drain_transmits(&mut c, base + ms(199)).is_empty());
    // Resend 1 at exactly RTO, identical bytes.
    c.handle_timeout(base + ms(200));
    assert_eq!(drain_transmits(&mut c, base + ms(200)), first);
    // Back-off: next after 400 ms, then 800, then capped at 1 s.
    assert_eq!(c.poll_timeout(), Some(base + ms(600)));
    c.handle_timeout(base + ms(599));
    assert!(drain_transmits(&mut c, base + ms(599)).is_empty());
    c.handle_timeout(base + ms(600));
    assert_eq!(drain_transmits(&mut c, base + ms(600)), first);
    assert_eq!(c.poll_timeout(), Some(base + ms(1400)));
    c.handle_timeout(base + ms(1400));
    assert_eq!(drain_transmits(&mut c, base + ms(1400)), first);
    assert_eq!(c.stats().resent, 3);
    // Limit reached: the next deadline ends the channel.
    assert_eq!(c.poll_timeout(), Some(base + ms(2400)));
    c.handle_timeout(base + ms(2400));
    assert!(c.is_closed());
    let ev = drain_events(&mut c);
    assert!(
        matches!(&ev[..], [Event::Closed { reason: Some(r) }] if r.contains("not acknowledged after 3 resends")),
        "{ev:?}"
    );
    let err = c.send_input(base + ms(2500), b"b").unwrap_err();
    assert_eq!(
        err,
        Error::ResendLimit {
            sequence_number: 0,
            resends: 3
        }
    );
    assert!(err.is_fatal());
    assert_eq!(c.error(), Some(&err));
    assert!(c.poll_timeout().is_none());
}

#[test]
fn rtt_sample_updates_rto_and_karn_skips_resent() {
    let base = Instant::now();
    let (mut c, mut a) = ready_pair(base);
    c.send_input(base, b"a").unwrap();
    let f = drain_transmits(&mut c, base);
    for t in &f {
        feed(&mut a, base, t);
    }
    // Ack reaches the client 140 ms later: RTTVAR 10, SRTT 105, RTO 145.
    let ack = drain_transmits(&mut a, base);
    for t in &ack {
        feed(&mut c, base + ms(140), t);
    }
    let st = c.stats();
    assert_eq!(st.srtt, ms(105));
    assert_eq!(st.rttvar, ms(10));
    assert_eq!(st.rto, ms(145));
    assert_eq!(st.acks_received, 1);

    // A resent message gives no sample.
    let t1 = base + ms(1000);
    c.send_input(t1, b"b").unwrap();
    let f = drain_transmits(&mut c, t1);
    assert_eq!(c.poll_timeout(), Some(t1 + ms(145)));
    c.handle_timeout(t1 + ms(145));
    let r = drain_transmits(&mut c, t1 + ms(145));
    assert_eq!(r, f);
    for t in &f {
        feed(&mut a, t1 + ms(150), t);
    }
    for t in drain_transmits(&mut a, t1 + ms(150)) {
        feed(&mut c, t1 + ms(900), &t);
    }
    assert!(c.all_acked());
    assert_eq!(c.stats().rto, ms(145));
    // The duplicate copy is re-acked, not delivered twice.
    for t in &r {
        feed(&mut a, t1 + ms(950), t);
    }
    assert_eq!(drain_transmits(&mut a, t1 + ms(950)).len(), 1);
    assert_eq!(a.stats().duplicates, 1);
    let inputs: Vec<Event> = drain_events(&mut a);
    assert_eq!(
        inputs,
        vec![
            Event::Input(Bytes::from_static(b"a")),
            Event::Input(Bytes::from_static(b"b"))
        ]
    );
}

#[test]
fn out_of_order_is_acked_held_and_released_in_order() {
    let base = Instant::now();
    let (mut c, mut a) = ready_pair(base);
    a.send_output(base, PayloadType::Output, b"1").unwrap();
    a.send_output(base, PayloadType::Output, b"2").unwrap();
    a.send_output(base, PayloadType::Output, b"3").unwrap();
    let f = drain_transmits(&mut a, base);
    assert_eq!(f.len(), 3);
    feed(&mut c, base, &f[2]);
    feed(&mut c, base, &f[1]);
    assert!(drain_events(&mut c).is_empty());
    // Early messages are acknowledged at once.
    let acks = drain_transmits(&mut c, base);
    assert_eq!(acks.len(), 2);
    feed(&mut c, base, &f[0]);
    let out: Vec<u8> = drain_events(&mut c)
        .into_iter()
        .map(|e| match e {
            Event::Output(b) => b.to_vec(),
            e => panic!("{e:?}"),
        })
        .collect::<Vec<_>>()
        .concat();
    assert_eq!(out, b"123");
    assert_eq!(c.stats().out_of_order, 2);
    assert_eq!(c.expected_sequence_number(), 4);
}

#[test]
fn out_of_order_buffer_is_bounded() {
    let base = Instant::now();
    let mut cfg = client_config(1);
    cfg.max_out_of_order = 2;
    let mut c = Channel::new(cfg);
    let mut a = agent(2);
    c.open(base, Token::new("t"), Uuid::nil(), Uuid::nil())
        .unwrap();
    pump(&mut c, &mut a, base);
    for i in 0..5u8 {
        a.send_output(base, PayloadType::Output, &[b'0' + i])
            .unwrap();
    }
    let f = drain_transmits(&mut a, base);
    for t in &f[1..] {
        feed(&mut c, base, t);
    }
    assert_eq!(c.stats().out_of_order, 2);
    assert_eq!(c.stats().dropped_out_of_order, 2);
    assert_eq!(
        drain_transmits(&mut c, base).len(),
        2,
        "dropped ones are not acked"
    );
}

// ------------------------------------------------------------ flow control

#[test]
fn send_window_backpressure_and_reopen() {
    let base = Instant::now();
    let mut cfg = client_config(1);
    cfg.max_unacked_messages = 4;
    cfg.max_unacked_bytes = 10_000;
    let mut c = Channel::new(cfg);
    let mut a = agent(2);
    c.open(base, Token::new("t"), Uuid::nil(), Uuid::nil())
        .unwrap();
    pump(&mut c, &mut a, base);
    drain_events(&mut a);
    a.send_output(base, PayloadType::Output, b"$").unwrap();
    pump(&mut a, &mut c, base);
    drain_events(&mut c);
    let data = vec![b'x'; 5000];
    assert_eq!(c.send_input(base, &data).unwrap(), 4096);
    assert_eq!(c.send_input(base, &data[4096..]).unwrap(), 0);
    assert_eq!(c.send_window_room(), 0);
    // Control messages do not wait behind data: they use a small headroom.
    for _ in 0..CONTROL_HEADROOM {
        c.send_resize(base, 80, 24).unwrap();
    }
    assert_eq!(c.send_resize(base, 80, 24), Err(Error::SendWindowFull));
    let f = drain_transmits(&mut c, base);
    assert_eq!(
        f.iter().filter(|t| decode(t).payload.len() == 1024).count(),
        4
    );
    assert_eq!(
        f.iter()
            .filter(|t| decode(t).payload_type == PayloadType::Size)
            .count(),
        CONTROL_HEADROOM
    );
    // Deliver the sizes and the first data message: their acks open the window.
    for t in f.iter().filter(|t| {
        let m = decode(t);
        m.message_type == MessageType::InputStreamData
            && (m.sequence_number == 0 || m.payload_type == PayloadType::Size)
    }) {
        feed(&mut a, base, t);
    }
    pump(&mut a, &mut c, base);
    assert_eq!(drain_events(&mut c), vec![Event::SendWindowOpen]);
    assert_eq!(c.send_input(base, &data[4096..]).unwrap(), 904);
}

#[test]
fn input_before_ready_is_queued_behind_the_handshake() {
    let base = Instant::now();
    let (mut c, mut a) = open_pair(base);
    // Caller types before the session is known.
    assert_eq!(c.send_input(base, b"early").unwrap(), 5);
    c.send_resize(base, 120, 40).unwrap();
    assert!(drain_transmits(&mut c, base).is_empty());
    a.start_handshake(base, shell_request()).unwrap();
    pump(&mut a, &mut c, base);
    let sent = drain_transmits(&mut c, base);
    let ms_: Vec<Message> = sent.iter().map(decode).collect();
    // Ack of the request, then the response as sequence 0; nothing else yet.
    assert_eq!(ms_.len(), 2);
    assert_eq!(ms_[0].message_type, MessageType::Acknowledge);
    assert_eq!(ms_[1].payload_type, PayloadType::HandshakeResponse);
    assert_eq!(ms_[1].sequence_number, 0);
    assert_eq!(
        String::from_utf8_lossy(&ms_[1].payload),
        r#"{"ClientVersion":"1.2.0.0","ProcessedClientActions":[{"ActionType":"SessionType","ActionStatus":1,"ActionResult":null,"Error":""}],"Errors":null}"#
    );
    for t in &sent {
        feed(&mut a, base, t);
    }
    let ev = drain_events(&mut a);
    assert!(matches!(
        ev[..],
        [Event::HandshakeResponse(_), Event::HandshakeComplete]
    ));
    pump(&mut a, &mut c, base);
    assert_eq!(
        drain_events(&mut c),
        vec![Event::Ready {
            session_type: "Standard_Stream".into(),
            customer_message: None
        }]
    );
    let sent: Vec<Message> = drain_transmits(&mut c, base).iter().map(decode).collect();
    let stream: Vec<_> = sent
        .iter()
        .filter(|m| m.message_type == MessageType::InputStreamData)
        .map(|m| (m.sequence_number, m.payload_type))
        .collect();
    assert_eq!(
        stream,
        vec![(1, PayloadType::Output), (2, PayloadType::Size)]
    );
}

#[test]
fn handshake_actions_unknown_and_unsupported() {
    let base = Instant::now();
    let (mut c, mut a) = open_pair(base);
    let req = HandshakeRequest {
        agent_version: "3.3.0.0".into(),
        requested_client_actions: vec![
            RequestedClientAction {
                action_type: "SessionType".into(),
                action_parameters: ActionParameters::SessionType(SessionTypeRequest {
                    session_type: "Bogus".into(),
                    properties: serde_json::Value::Null,
                }),
            },
            RequestedClientAction {
                action_type: "Foo".into(),
                action_parameters: ActionParameters::Other(serde_json::json!({})),
            },
        ],
    };
    a.start_handshake(base, req).unwrap();
    pump(&mut a, &mut c, base);
    let sent: Vec<Message> = drain_transmits(&mut c, base).iter().map(decode).collect();
    assert_eq!(
        String::from_utf8_lossy(&sent[1].payload),
        r#"{"ClientVersion":"1.2.0.0","ProcessedClientActions":[{"ActionType":"SessionType","ActionStatus":2,"ActionResult":null,"Error":"Failed to process action SessionType: Unknown session type Bogus"},{"ActionType":"Foo","ActionStatus":0,"ActionResult":3,"Error":"Unsupported action Foo"}],"Errors":["Unknown session type Bogus","Unsupported action Foo"]}"#
    );
    // The agent fails the session.
    let f = Transmit::Binary(sent[1].encode());
    let err = a.handle_incoming(
        base,
        Frame::Binary(match &f {
            Transmit::Binary(b) => b,
            _ => unreachable!(),
        }),
    );
    let err = err.unwrap_err();
    assert!(err.is_fatal(), "{err:?}");
    assert!(a.is_closed());
    assert!(
        err.chain().contains("Unknown session type Bogus"),
        "{}",
        err.chain()
    );
}

#[test]
fn kms_handshake_end_to_end_and_encrypted_traffic() {
    let base = Instant::now();
    let (mut c, mut a) = open_pair(base);
    let key: Vec<u8> = (0..64u8).map(|i| i.wrapping_mul(7)).collect();
    let mut req = shell_request();
    req.requested_client_actions.push(RequestedClientAction {
        action_type: "KMSEncryption".into(),
        action_parameters: ActionParameters::KmsEncryption(KmsEncryptionRequest {
            kms_key_id: "arn:aws:kms:us-east-1:111122223333:key/k".into(),
            challenge: Some("q1w2".into()),
        }),
    });
    a.start_handshake(base, req).unwrap();
    pump(&mut a, &mut c, base);
    assert_eq!(
        drain_events(&mut c),
        vec![Event::KmsDataKeyRequired {
            key_id: "arn:aws:kms:us-east-1:111122223333:key/k".into(),
            challenge: Some("q1w2".into())
        }]
    );
    // Only the ack so far: the response waits for the key.
    assert_eq!(pump(&mut c, &mut a, base), 1);
    c.provide_data_key(base, &key, b"blob!").unwrap();
    assert!(c.is_encrypted());
    pump(&mut c, &mut a, base);
    let ev = drain_events(&mut a);
    let Event::HandshakeResponse(resp) = &ev[0] else {
        panic!("{ev:?}")
    };
    assert_eq!(
        String::from_utf8(payload::to_json(&resp.processed_client_actions[1])).unwrap(),
        r#"{"ActionType":"KMSEncryption","ActionStatus":1,"ActionResult":{"KMSCipherTextKey":"YmxvYiE=","KMSCipherTextHash":null},"Error":""}"#
    );
    assert_eq!(
        ev[1],
        Event::DataKeyDecryptRequired {
            key_id: "arn:aws:kms:us-east-1:111122223333:key/k".into(),
            ciphertext_blob: b"blob!".to_vec()
        }
    );
    a.accept_data_key(base, &key).unwrap();
    // challenge -> response -> complete
    for _ in 0..4 {
        pump(&mut a, &mut c, base);
        pump(&mut c, &mut a, base);
    }
    assert_eq!(drain_events(&mut a), vec![Event::HandshakeComplete]);
    assert_eq!(
        drain_events(&mut c),
        vec![Event::Ready {
            session_type: "Standard_Stream".into(),
            customer_message: Some("This session is encrypted using AWS KMS.".into())
        }]
    );
    // Input is encrypted on the wire (type 1), size is not.
    c.send_input(base, b"secret keys").unwrap();
    c.send_resize(base, 80, 24).unwrap();
    let sent = drain_transmits(&mut c, base);
    let m: Vec<Message> = sent.iter().map(decode).collect();
    assert_eq!(m[0].payload.len(), 11 + 28);
    assert!(!m[0].payload.windows(6).any(|w| w == b"secret"));
    assert_eq!(&m[1].payload[..], br#"{"cols":80,"rows":24}"#);
    for t in &sent {
        feed(&mut a, base, t);
    }
    assert_eq!(
        drain_events(&mut a),
        vec![
            Event::Input(Bytes::from_static(b"secret keys")),
            Event::Resize { cols: 80, rows: 24 }
        ]
    );
    a.send_output(base, PayloadType::Output, b"out").unwrap();
    a.send_output(base, PayloadType::StdErr, b"err").unwrap();
    a.send_exit_code(base, 3).unwrap();
    let sent = drain_transmits(&mut a, base);
    for t in &sent {
        let m = decode(t);
        if m.message_type == MessageType::OutputStreamData {
            let plain = if m.payload_type == PayloadType::ExitCode {
                12
            } else {
                3
            };
            assert_eq!(m.payload.len(), plain + 28, "{:?}", m.payload_type);
        }
        feed(&mut c, base, t);
    }
    assert_eq!(
        drain_events(&mut c),
        vec![
            Event::Output(Bytes::from_static(b"out")),
            Event::StdErr(Bytes::from_static(b"err")),
            Event::ExitCode(3)
        ]
    );
}

#[test]
fn kms_wrong_key_fails_the_challenge() {
    let base = Instant::now();
    let (mut c, mut a) = open_pair(base);
    let mut req = shell_request();
    req.requested_client_actions.push(RequestedClientAction {
        action_type: "KMSEncryption".into(),
        action_parameters: ActionParameters::KmsEncryption(KmsEncryptionRequest {
            kms_key_id: "k".into(),
            challenge: None,
        }),
    });
    a.start_handshake(base, req).unwrap();
    pump(&mut a, &mut c, base);
    drain_events(&mut c);
    assert!(matches!(
        c.provide_data_key(base, &[1u8; 10], b"b"),
        Err(Error::Misuse(_))
    ));
    c.provide_data_key(base, &[1u8; 64], b"b").unwrap();
    pump(&mut c, &mut a, base);
    drain_events(&mut a);
    a.accept_data_key(base, &[2u8; 64]).unwrap();
    let mut errs = Vec::new();
    for t in drain_transmits(&mut a, base) {
        if let Transmit::Binary(b) = t
            && let Err(e) = c.handle_incoming(base, Frame::Binary(&b))
        {
            errs.push(e);
        }
    }
    assert!(matches!(&errs[..], [Error::PeerMisbehaved(_)]), "{errs:?}");
    let ev = drain_events(&mut c);
    assert!(
        matches!(&ev[..], [Event::Closed { reason: Some(r) }] if r.contains("decrypt")),
        "{ev:?}"
    );
    assert!(c.error().unwrap().is_fatal());
}

#[test]
fn pause_holds_data_and_resends_until_start() {
    let base = Instant::now();
    let (mut c, mut a) = ready_pair(base);
    let pause = Message {
        message_type: MessageType::PausePublication,
        header_length: 116,
        schema_version: 1,
        created_date: 1,
        sequence_number: 0,
        flags: 0,
        message_id: Uuid::nil(),
        payload_type: PayloadType::None,
        payload: Bytes::new(),
    };
    c.send_input(base, b"a").unwrap();
    drain_transmits(&mut c, base); // "a" in flight, unacked
    c.handle_incoming(base, Frame::Binary(&pause.encode()))
        .unwrap();
    assert_eq!(drain_events(&mut c), vec![Event::Paused]);
    c.send_input(base, b"b").unwrap();
    assert!(drain_transmits(&mut c, base).is_empty());
    assert_eq!(c.poll_timeout(), None);
    c.handle_timeout(base + ms(5000));
    assert!(drain_transmits(&mut c, base + ms(5000)).is_empty());
    let mut start = pause.clone();
    start.message_type = MessageType::StartPublication;
    c.handle_incoming(base + ms(5000), Frame::Binary(&start.encode()))
        .unwrap();
    assert_eq!(drain_events(&mut c), vec![Event::Resumed]);
    let t: Vec<Message> = drain_transmits(&mut c, base + ms(5000))
        .iter()
        .map(decode)
        .collect();
    assert_eq!(t.len(), 1);
    assert_eq!(&t[0].payload[..], b"b");
    // The held resend of "a" is due at once.
    c.handle_timeout(base + ms(5000));
    let t: Vec<Message> = drain_transmits(&mut c, base + ms(5000))
        .iter()
        .map(decode)
        .collect();
    assert_eq!(&t[0].payload[..], b"a");
    let _ = &mut a;
}

#[test]
fn channel_closed_after_in_order_data_and_agent_close_frame() {
    let base = Instant::now();
    let (mut c, mut a) = ready_pair(base);
    a.send_output(base, PayloadType::Output, b"bye").unwrap();
    a.close_with_reason(base, "Session ended");
    assert!(a.is_closed());
    assert!(matches!(
        a.send_output(base, PayloadType::Output, b"x"),
        Err(Error::Closed)
    ));
    let f = drain_transmits(&mut a, base);
    assert_eq!(f.len(), 2, "data first, then channel_closed");
    let cc = decode(&f[1]);
    assert_eq!(cc.message_type, MessageType::ChannelClosed);
    let body: payload::ChannelClosed = payload::from_json(&cc.payload).unwrap();
    assert_eq!(body.output, "Session ended");
    for t in &f {
        feed(&mut c, base, t);
    }
    assert_eq!(
        drain_events(&mut c),
        vec![
            Event::Output(Bytes::from_static(b"bye")),
            Event::Closed {
                reason: Some("Session ended".into())
            }
        ]
    );
    assert!(c.is_closed());
    assert_eq!(c.send_input(base, b"x"), Err(Error::Closed));
    // Frames after close are ignored.
    assert!(
        c.handle_incoming(base, Frame::Binary(&f[0].clone().into_bytes()))
            .is_ok()
    );
}

trait IntoBytes {
    fn into_bytes(self) -> Bytes;
}
impl IntoBytes for Transmit {
    fn into_bytes(self) -> Bytes {
        match self {
            Transmit::Binary(b) => b,
            Transmit::Text(t) => Bytes::from(t),
        }
    }
}

#[test]
fn reconnect_sends_open_first_then_resends_unacked() {
    let base = Instant::now();
    let (mut c, _a) = ready_pair(base);
    c.send_input(base, b"lost").unwrap();
    let first = drain_transmits(&mut c, base);
    c.open(
        base + ms(50),
        Token::new("new-token"),
        Uuid::nil(),
        Uuid::from_u128(9),
    )
    .unwrap();
    let again = drain_transmits(&mut c, base + ms(50));
    assert_eq!(again.len(), 2);
    let Transmit::Text(t) = &again[0] else {
        panic!()
    };
    assert!(t.contains("new-token"));
    assert!(t.contains("00000000-0000-0000-0000-000000000009"));
    assert_eq!(again[1], first[0]);
    assert_eq!(c.next_sequence_number(), 1);
    // The token never shows in Debug output.
    assert!(!format!("{again:?}").contains("new-token"));
}

#[test]
fn malformed_frames_are_reported_not_fatal() {
    let base = Instant::now();
    let (mut c, mut a) = ready_pair(base);
    let err = c
        .handle_incoming(base, Frame::Binary(&[1, 2, 3]))
        .unwrap_err();
    assert!(matches!(err, Error::Malformed(_)));
    assert!(!err.is_fatal());
    assert_eq!(err.to_string(), "malformed frame from peer");
    assert!(err.chain().contains("shorter than"));
    // Still works.
    a.send_output(base, PayloadType::Output, b"ok").unwrap();
    pump(&mut a, &mut c, base);
    assert_eq!(
        drain_events(&mut c),
        vec![Event::Output(Bytes::from_static(b"ok"))]
    );
    // Wrong-role calls are misuse.
    assert!(matches!(
        c.send_output(base, PayloadType::Output, b"x"),
        Err(Error::Misuse(_))
    ));
    assert!(matches!(a.send_input(base, b"x"), Err(Error::Misuse(_))));
}

#[test]
fn agent_output_chunks_and_flags() {
    let base = Instant::now();
    let (mut c, mut a) = open_pair(base);
    let text = "é".repeat(1000); // 2000 bytes, 2-byte sequences
    let data = format!("x{text}"); // odd offset: a 1024 cut would split a sequence
    assert_eq!(
        a.send_output(base, PayloadType::Output, data.as_bytes())
            .unwrap(),
        2001
    );
    let f: Vec<Message> = drain_transmits(&mut a, base).iter().map(decode).collect();
    assert_eq!(f[0].flags, 1, "agent's seq 0 carries SYN");
    assert_eq!(f[1].flags, 0);
    for m in &f {
        assert!(m.payload.len() <= 1024);
        assert!(std::str::from_utf8(&m.payload).is_ok());
    }
    for m in &f {
        c.handle_incoming(base, Frame::Binary(&m.encode())).unwrap();
    }
    let out: Vec<u8> = drain_events(&mut c)
        .into_iter()
        .filter_map(|e| match e {
            Event::Output(b) => Some(b.to_vec()),
            _ => None,
        })
        .collect::<Vec<_>>()
        .concat();
    assert_eq!(out, data.as_bytes());
    // The client's acks: seq 0, flags 3, payload type 0.
    for m in drain_transmits(&mut c, base).iter().map(decode) {
        assert_eq!(m.message_type, MessageType::Acknowledge);
        assert_eq!(
            (m.sequence_number, m.flags, m.payload_type),
            (0, 3, PayloadType::None)
        );
    }
}

#[test]
fn config_debug_and_default_values() {
    let cfg = ChannelConfig::client(
        "1.0.0.0",
        Box::new(ssm_channel::SeededIds::new(1)),
        Box::new(ssm_channel::SteppingClock::new(1, 1)),
    );
    assert_eq!(cfg.chunk_size, 1024);
    assert_eq!(cfg.initial_rto, ms(200));
    assert_eq!(cfg.max_rto, ms(1000));
    assert!(format!("{cfg:?}").contains("Client"));
}

//! Replays the client frames the official session-manager-plugin sent (captured
//! in fixtures/plugin-captures) against the gateway, byte for byte, and checks the
//! gateway's frames against the shapes the plugin accepted (gateway-frames.jsonl).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod gateway_support;

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use cloudshell_emulator::gateway::{HandshakeMode, SessionOptions};
use futures_util::{SinkExt, StreamExt};
use gateway_support::{GUARD, TestGateway, Ws, capture, raw_connect};
use ssm_channel::message::HEADER_LENGTH;
use ssm_channel::payload::Acknowledge;
use ssm_channel::{Bytes, Message, MessageType, PayloadType, Uuid};
use tokio_tungstenite::tungstenite::Message as WsMessage;

/// What the gateway sent so far.
#[derive(Default)]
struct Seen {
    raw: Vec<Bytes>,
    /// First transmission of each output sequence number.
    outputs: BTreeMap<i64, Message>,
    /// Acks received, per acknowledged (sequence, message id).
    acks: HashMap<(i64, String), usize>,
    closed: Option<Message>,
    text: Vec<u8>,
}

impl Seen {
    fn take(&mut self, frame: Bytes) {
        let m = Message::decode(&frame).expect("gateway frame decodes");
        match m.message_type {
            MessageType::OutputStreamData => {
                if !self.outputs.contains_key(&m.sequence_number) {
                    if m.payload_type == PayloadType::Output {
                        self.text.extend_from_slice(&m.payload);
                    }
                    self.outputs.insert(m.sequence_number, m);
                }
            }
            MessageType::Acknowledge => {
                let a: Acknowledge = serde_json::from_slice(&m.payload).unwrap();
                assert_eq!(a.acknowledged_message_type, "input_stream_data");
                *self
                    .acks
                    .entry((
                        a.acknowledged_message_sequence_number,
                        a.acknowledged_message_id,
                    ))
                    .or_default() += 1;
                assert_eq!(m.flags, 3);
                assert_eq!(m.sequence_number, 0);
                assert_eq!(m.payload_type, PayloadType::None);
            }
            MessageType::ChannelClosed => self.closed = Some(m),
            ref other => panic!("unexpected message type {other:?}"),
        }
        self.raw.push(frame);
    }
}

async fn read_until(ws: &mut Ws, seen: &mut Seen, what: &str, pred: impl Fn(&Seen) -> bool) {
    let give_up = Instant::now() + GUARD;
    while !pred(seen) {
        let left = give_up.saturating_duration_since(Instant::now());
        let m = tokio::time::timeout(left, ws.next())
            .await
            .unwrap_or_else(|_| panic!("gave up waiting for {what}"));
        match m {
            Some(Ok(WsMessage::Binary(b))) => seen.take(b),
            Some(Ok(WsMessage::Text(_))) => panic!("the gateway sent a text frame"),
            Some(Ok(_)) => {}
            other => panic!("connection ended while waiting for {what}: {other:?}"),
        }
    }
}

fn ack_frame(m: &Message) -> Bytes {
    let ack = Acknowledge {
        acknowledged_message_type: "output_stream_data".into(),
        acknowledged_message_id: m.message_id.hyphenated().to_string(),
        acknowledged_message_sequence_number: m.sequence_number,
        is_sequential_message: true,
    };
    Message {
        message_type: MessageType::Acknowledge,
        header_length: HEADER_LENGTH,
        schema_version: 1,
        created_date: 1_718_000_000_000,
        sequence_number: 0,
        flags: 3,
        message_id: Uuid::new_v4(),
        payload_type: PayloadType::None,
        payload: Bytes::from(serde_json::to_vec(&ack).unwrap()),
    }
    .encode()
}

fn hex_bytes(s: &str) -> Vec<u8> {
    hex::decode(s).unwrap()
}

async fn replay(capture_name: &str) -> Seen {
    let t = TestGateway::with_defaults(SessionOptions {
        handshake: HandshakeMode::SessionType,
        ..SessionOptions::default()
    })
    .await;
    let (session_id, token) = t.add_session("env-plugin", None);
    let records = capture(capture_name);
    let mut ws = raw_connect(&t.url(&session_id)).await;
    let mut seen = Seen::default();
    let mut copies: HashMap<(i64, String), usize> = HashMap::new();

    for r in &records {
        if r["direction"] != "client_to_gateway" {
            continue;
        }
        match r["kind"].as_str().unwrap() {
            "ws_ping" => ws
                .send(WsMessage::Ping(
                    hex_bytes(r["hex"].as_str().unwrap()).into(),
                ))
                .await
                .unwrap(),
            "ws_text" => {
                // The captured open frame with our session's token.
                let mut open: serde_json::Value =
                    serde_json::from_str(r["text"].as_str().unwrap()).unwrap();
                open["TokenValue"] = token.clone().into();
                ws.send(WsMessage::Text(open.to_string().into()))
                    .await
                    .unwrap();
            }
            "ws_binary" => {
                let bytes = hex_bytes(r["hex"].as_str().unwrap());
                let m = Message::decode(&bytes).unwrap();
                if m.message_type == MessageType::Acknowledge {
                    // The plugin acked gateway frame N only after receiving it.
                    let a: Acknowledge = serde_json::from_slice(&m.payload).unwrap();
                    let seq = a.acknowledged_message_sequence_number;
                    read_until(&mut ws, &mut seen, &format!("output {seq}"), |s| {
                        s.outputs.contains_key(&seq)
                    })
                    .await;
                    ws.send(WsMessage::Binary(bytes.into())).await.unwrap();
                    continue;
                }
                assert_eq!(m.message_type, MessageType::InputStreamData);
                let key = (m.sequence_number, m.message_id.hyphenated().to_string());
                let n = {
                    let c = copies.entry(key.clone()).or_default();
                    *c += 1;
                    *c
                };
                ws.send(WsMessage::Binary(bytes.into())).await.unwrap();
                // Every copy, retransmissions included, is acknowledged.
                read_until(&mut ws, &mut seen, &format!("ack of input {key:?}"), |s| {
                    s.acks.get(&key).copied().unwrap_or(0) >= n
                })
                .await;
            }
            _ => {}
        }
    }
    // Like the plugin: acknowledge the rest of the output until the channel closes.
    let mut acked: std::collections::HashSet<i64> = std::collections::HashSet::new();
    let give_up = Instant::now() + GUARD;
    while seen.closed.is_none() {
        assert!(Instant::now() < give_up, "no channel_closed after exit");
        let pending: Vec<Bytes> = seen
            .outputs
            .values()
            .filter(|m| acked.insert(m.sequence_number))
            .map(ack_frame)
            .collect();
        for a in pending {
            ws.send(WsMessage::Binary(a)).await.unwrap();
        }
        let before = seen.raw.len();
        read_until(&mut ws, &mut seen, "more frames", |s| s.raw.len() > before).await;
    }
    let m = t.gw.session_metrics(&session_id).unwrap();
    assert!(m.input_bytes > 0);
    seen
}

/// Compares a gateway frame with the plugin-accepted example of the same kind.
fn same_shape(ours: &Message, example: &serde_json::Value) {
    let d = &example["decoded"];
    let raw = ours.encode();
    assert_eq!(
        u64::from(ours.header_length),
        d["header_length"].as_u64().unwrap()
    );
    assert_eq!(
        hex::encode(&raw[4..36]),
        d["message_type_field_hex"].as_str().unwrap(),
        "message type field (space padded)"
    );
    assert_eq!(
        u64::from(ours.schema_version),
        d["schema_version"].as_u64().unwrap()
    );
    assert_eq!(ours.flags, d["flags"].as_u64().unwrap());
    assert_eq!(
        u64::from(ours.payload_type.to_u32()),
        d["payload_type"].as_u64().unwrap()
    );
    assert!(ours.created_date > 1_600_000_000_000, "CreatedDate in ms");
    if let Some(obj) = d["payload_json"].as_object() {
        let v: serde_json::Value = serde_json::from_slice(&ours.payload).unwrap();
        let ours_keys: Vec<&String> = v.as_object().unwrap().keys().collect();
        let their_keys: Vec<&String> = obj.keys().collect();
        assert_eq!(ours_keys, their_keys, "payload JSON keys");
    }
}

fn check_against_accepted_frames(seen: &Seen) {
    let examples = capture("gateway-frames.jsonl");
    let kind = |pt: u64, mt: &str| {
        examples
            .iter()
            .find(|e| e["decoded"]["message_type"] == mt && e["decoded"]["payload_type"] == pt)
            .unwrap()
    };
    // Sequence numbers: 0, 1, 2, ... without gaps.
    let seqs: Vec<i64> = seen.outputs.keys().copied().collect();
    assert_eq!(seqs, (0..seqs.len() as i64).collect::<Vec<_>>());
    same_shape(&seen.outputs[&0], kind(5, "output_stream_data"));
    same_shape(&seen.outputs[&1], kind(7, "output_stream_data"));
    same_shape(&seen.outputs[&2], kind(1, "output_stream_data"));
    for m in seen.outputs.values().skip(3) {
        assert_eq!(m.payload_type, PayloadType::Output);
        assert_eq!(m.flags, 0);
        assert!(m.payload.len() <= 1024);
    }
    let first_ack = seen
        .raw
        .iter()
        .map(|b| Message::decode(b).unwrap())
        .find(|m| m.message_type == MessageType::Acknowledge)
        .unwrap();
    same_shape(&first_ack, kind(0, "acknowledge"));
    let closed = seen.closed.as_ref().unwrap();
    same_shape(closed, kind(0, "channel_closed"));
    let cc: serde_json::Value = serde_json::from_slice(&closed.payload).unwrap();
    assert_eq!(cc["MessageType"], "channel_closed");
    assert!(cc["SessionId"].as_str().unwrap().starts_with("sess-"));
}

#[tokio::test]
async fn plugin_pipe_session_replays() {
    let seen = replay("session-pipe.jsonl").await;
    let text = String::from_utf8_lossy(&seen.text);
    // The shell ran the plugin's `echo hello` and its `exit`.
    assert!(text.contains("\rhello\r\n"), "{text:?}");
    assert!(text.contains("exit\r\n"), "{text:?}");
    check_against_accepted_frames(&seen);
}

#[tokio::test]
async fn plugin_retransmit_session_replays_with_duplicate_reacked() {
    let seen = replay("session-retransmit.jsonl").await;
    let text = String::from_utf8_lossy(&seen.text);
    // `echo hello` arrived twice (a retransmission) but ran once.
    assert_eq!(text.matches("\rhello\r\n").count(), 1, "{text:?}");
    // The duplicate was acknowledged again.
    assert!(seen.acks.values().any(|&n| n >= 2), "{:?}", seen.acks);
    check_against_accepted_frames(&seen);
}

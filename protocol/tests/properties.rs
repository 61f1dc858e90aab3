//! Property tests: codec round trip, decoder robustness, and a client and an agent
//! joined by a lossy, duplicating, reordering link on a virtual clock.
#![allow(clippy::unwrap_used)]

mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use proptest::prelude::*;
use ssm_channel::payload::{
    ActionParameters, HandshakeRequest, KmsEncryptionRequest, RequestedClientAction,
    SessionTypeRequest,
};
use ssm_channel::{
    Channel, Event, Frame, Message, MessageType, PayloadType, SeededIds, Token, Transmit,
};
use support::*;
use uuid::Uuid;

fn message_type() -> impl Strategy<Value = MessageType> {
    prop_oneof![
        Just(MessageType::InputStreamData),
        Just(MessageType::OutputStreamData),
        Just(MessageType::Acknowledge),
        Just(MessageType::ChannelClosed),
        Just(MessageType::StartPublication),
        Just(MessageType::PausePublication),
        "[a-z_]{1,32}".prop_map(|s| MessageType::from_name(&s)),
    ]
}

fn message() -> impl Strategy<Value = Message> {
    (
        message_type(),
        prop_oneof![Just(116u32), Just(112u32), 117u32..140],
        any::<u32>(),
        1u64..,
        any::<i64>(),
        any::<u64>(),
        any::<u128>(),
        any::<u32>(),
        proptest::collection::vec(any::<u8>(), 0..2048),
    )
        .prop_map(|(mt, hl, sv, cd, seq, flags, id, pt, payload)| Message {
            message_type: mt,
            header_length: hl,
            schema_version: sv,
            created_date: cd,
            sequence_number: seq,
            flags,
            message_id: Uuid::from_u128(id),
            payload_type: if hl == 112 {
                PayloadType::None
            } else {
                PayloadType::from_u32(pt)
            },
            payload: Bytes::from(payload),
        })
}

proptest! {
    #[test]
    fn encode_decode_round_trip(m in message()) {
        let e = m.encode();
        prop_assert_eq!(e.len(), m.encoded_len());
        prop_assert_eq!(&Message::decode(&e).unwrap(), &m);
        prop_assert_eq!(&Message::decode_bytes(e.clone()).unwrap(), &m);
        // Re-encoding the decoded frame is the identity.
        prop_assert_eq!(Message::decode(&e).unwrap().encode(), e);
    }

    #[test]
    fn arbitrary_bytes_never_panic(b in proptest::collection::vec(any::<u8>(), 0..600)) {
        let _ = Message::decode(&b);
        let _ = Message::decode_bytes(Bytes::from(b));
    }

    #[test]
    fn mutated_frames_never_panic(m in message(), flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8), cut in any::<usize>()) {
        let mut e = m.encode().to_vec();
        for (i, v) in flips {
            let n = e.len();
            e[i % n] ^= v;
        }
        let n = e.len();
        e.truncate(cut % (n + 1));
        let _ = Message::decode(&e);
        // A channel fed garbage reports errors but never panics.
        let base = Instant::now();
        let mut c = client(1);
        c.open(base, Token::new("t"), Uuid::nil(), Uuid::nil()).unwrap();
        let _ = c.handle_incoming(base, Frame::Binary(&e));
        let mut a = agent(1);
        let _ = a.handle_incoming(base, Frame::Binary(&e));
        let _ = a.handle_incoming(base, Frame::Text(&String::from_utf8_lossy(&e)));
    }
}

// ------------------------------------------------------------------ simulation

#[derive(Debug, Clone)]
struct Faults {
    loss: u32,      // percent
    dup: u32,       // percent
    max_delay: u64, // ms; random per frame, so frames reorder
}

struct Link {
    rng: SeededIds,
    faults: Faults,
    /// (deliver at, tie-breaker) -> frame
    queue: BTreeMap<(Duration, u64), Transmit>,
    n: u64,
}

impl Link {
    fn new(seed: u64, faults: Faults) -> Link {
        Link {
            rng: SeededIds::new(seed),
            faults,
            queue: BTreeMap::new(),
            n: 0,
        }
    }

    fn roll(&mut self, below: u64) -> u64 {
        use ssm_channel::IdSource;
        let mut b = [0u8; 8];
        self.rng.fill_random(&mut b);
        u64::from_le_bytes(b) % below.max(1)
    }

    fn send(&mut self, at: Duration, t: Transmit) {
        // The open frame travels on a fresh WebSocket; only binary frames see faults.
        let copies = if matches!(t, Transmit::Text(_)) {
            1
        } else if self.roll(100) < u64::from(self.faults.loss) {
            0
        } else if self.roll(100) < u64::from(self.faults.dup) {
            2
        } else {
            1
        };
        for _ in 0..copies {
            let delay = if matches!(t, Transmit::Text(_)) {
                0
            } else {
                self.roll(self.faults.max_delay + 1)
            };
            self.n += 1;
            self.queue
                .insert((at + Duration::from_millis(delay), self.n), t.clone());
        }
    }

    fn next_at(&self) -> Option<Duration> {
        self.queue.keys().next().map(|k| k.0)
    }

    fn due(&mut self, now: Duration) -> Vec<Transmit> {
        let mut out = Vec::new();
        while let Some(e) = self.queue.first_entry() {
            if e.key().0 > now {
                break;
            }
            out.push(e.remove());
        }
        out
    }
}

#[derive(Debug, Clone)]
struct Scenario {
    input: Vec<u8>,
    output: Vec<u8>,
    handshake: bool,
    kms: bool,
    faults: Faults,
    seed: u64,
}

fn scenario() -> impl Strategy<Value = Scenario> {
    (
        proptest::collection::vec(any::<u8>(), 1..6000),
        proptest::collection::vec(any::<u8>(), 1..12000),
        any::<bool>(),
        any::<bool>(),
        0u32..35,
        0u32..25,
        0u64..400,
        any::<u64>(),
    )
        .prop_map(
            |(input, output, handshake, kms, loss, dup, max_delay, seed)| Scenario {
                input,
                output,
                handshake,
                kms: handshake && kms,
                faults: Faults {
                    loss,
                    dup,
                    max_delay,
                },
                seed,
            },
        )
}

const KEY: [u8; 64] = [0x5a; 64];

fn run(s: &Scenario) -> Result<(ssm_channel::Stats, ssm_channel::Stats), TestCaseError> {
    let base = Instant::now();
    let mut ccfg = client_config(s.seed);
    ccfg.max_unacked_messages = 8; // small windows exercise back-pressure
    let mut acfg = agent_config(s.seed ^ 0xabcdef);
    acfg.max_unacked_messages = 8;
    let mut c = Channel::new(ccfg);
    let mut a = Channel::new(acfg);
    let mut to_agent = Link::new(s.seed.wrapping_add(1), s.faults.clone());
    let mut to_client = Link::new(s.seed.wrapping_add(2), s.faults.clone());

    let mut t = Duration::ZERO;
    c.open(base, Token::new("tok"), Uuid::nil(), Uuid::nil())
        .unwrap();
    let (mut in_sent, mut out_sent) = (0usize, 0usize);
    let (mut got_in, mut got_out) = (Vec::new(), Vec::new());
    let mut agent_started = false;
    let limit = Duration::from_secs(3600);

    loop {
        let now = base + t;
        // Producers: the client types from the start (queued until Ready); the agent
        // writes once the channel is open (queued during a handshake).
        if in_sent < s.input.len() {
            in_sent += c.send_input(now, &s.input[in_sent..]).unwrap();
        }
        if agent_started && out_sent < s.output.len() {
            out_sent += a
                .send_output(now, PayloadType::Output, &s.output[out_sent..])
                .unwrap();
        }
        while let Some(x) = c.poll_transmit(now) {
            to_agent.send(t, x);
        }
        while let Some(x) = a.poll_transmit(now) {
            to_client.send(t, x);
        }

        // Done?
        if got_in.len() == s.input.len()
            && got_out.len() == s.output.len()
            && c.all_acked()
            && a.all_acked()
        {
            break;
        }
        prop_assert!(t < limit, "no progress: {:?} {:?}", c, a);

        // Advance the virtual clock to the next thing that happens.
        let next = [
            to_agent.next_at(),
            to_client.next_at(),
            c.poll_timeout().map(|d| d - base),
            a.poll_timeout().map(|d| d - base),
        ]
        .into_iter()
        .flatten()
        .min();
        let Some(next) = next else {
            // Nothing scheduled but work remains: only possible while a producer was
            // blocked and is now unblocked; loop once more.
            prop_assert!(
                in_sent < s.input.len() || out_sent < s.output.len(),
                "stalled: {:?} {:?}",
                c,
                a
            );
            t += Duration::from_millis(1);
            continue;
        };
        t = t.max(next);
        let now = base + t;
        for x in to_agent.due(t) {
            match &x {
                Transmit::Text(s) => a.handle_incoming(now, Frame::Text(s)).unwrap(),
                Transmit::Binary(b) => a.handle_incoming(now, Frame::Binary(b)).unwrap(),
            }
        }
        for x in to_client.due(t) {
            if let Transmit::Binary(b) = &x {
                c.handle_incoming_bytes(now, b.clone()).unwrap();
            }
        }
        c.handle_timeout(now);
        a.handle_timeout(now);
        prop_assert!(c.error().is_none(), "{:?}", c.error());
        prop_assert!(a.error().is_none(), "{:?}", a.error());

        while let Some(e) = a.poll_event() {
            match e {
                Event::Opened(_) => {
                    if s.handshake {
                        a.start_handshake(now, request(s.kms)).unwrap();
                    }
                    agent_started = true;
                }
                Event::Input(b) => got_in.extend_from_slice(&b),
                Event::DataKeyDecryptRequired { .. } => a.accept_data_key(now, &KEY).unwrap(),
                Event::HandshakeResponse(_) | Event::HandshakeComplete | Event::SendWindowOpen => {}
                Event::Resize { .. } => {}
                other => prop_assert!(false, "agent event {:?}", other),
            }
        }
        while let Some(e) = c.poll_event() {
            match e {
                Event::Output(b) => got_out.extend_from_slice(&b),
                Event::KmsDataKeyRequired { .. } => c.provide_data_key(now, &KEY, b"blob").unwrap(),
                Event::Ready { session_type, .. } => {
                    prop_assert_eq!(session_type, "Standard_Stream");
                    c.send_resize(now, 80, 24).unwrap();
                }
                Event::SendWindowOpen => {}
                other => prop_assert!(false, "client event {:?}", other),
            }
        }
        prop_assert!(s.input.starts_with(&got_in), "input corrupted or reordered");
        prop_assert!(
            s.output.starts_with(&got_out),
            "output corrupted or reordered"
        );
    }
    prop_assert_eq!(&got_in, &s.input);
    prop_assert_eq!(&got_out, &s.output);
    prop_assert_eq!(c.is_encrypted(), s.kms);
    if s.faults.loss == 0 && s.faults.dup == 0 && s.faults.max_delay == 0 {
        prop_assert_eq!(c.stats().resent + a.stats().resent, 0);
    }
    Ok((c.stats(), a.stats()))
}

fn request(kms: bool) -> HandshakeRequest {
    let mut actions = vec![RequestedClientAction {
        action_type: "SessionType".into(),
        action_parameters: ActionParameters::SessionType(SessionTypeRequest {
            session_type: "Standard_Stream".into(),
            properties: serde_json::Value::Null,
        }),
    }];
    if kms {
        actions.push(RequestedClientAction {
            action_type: "KMSEncryption".into(),
            action_parameters: ActionParameters::KmsEncryption(KmsEncryptionRequest {
                kms_key_id: "k".into(),
                challenge: None,
            }),
        });
    }
    HandshakeRequest {
        agent_version: "3.3.1142.0".into(),
        requested_client_actions: actions,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn exactly_once_in_order_both_directions(s in scenario()) {
        run(&s)?;
    }
}

#[test]
fn perfect_link_needs_no_resends() {
    run(&Scenario {
        input: vec![7; 5000],
        output: vec![9; 9000],
        handshake: true,
        kms: true,
        faults: Faults {
            loss: 0,
            dup: 0,
            max_delay: 0,
        },
        seed: 5,
    })
    .unwrap();
}

#[test]
fn heavy_loss_still_delivers() {
    let (c, a) = run(&Scenario {
        input: (0..4000u32).map(|i| i as u8).collect(),
        output: (0..8000u32).map(|i| (i * 7) as u8).collect(),
        handshake: false,
        kms: false,
        faults: Faults {
            loss: 45,
            dup: 30,
            max_delay: 900,
        },
        seed: 11,
    })
    .unwrap();
    // The faults really happened, on both sides.
    for st in [c, a] {
        assert!(st.resent > 0, "{st:?}");
        assert!(st.duplicates > 0, "{st:?}");
        assert!(st.out_of_order > 0, "{st:?}");
    }
}

// ------------------------------------------------------------ hostile peer

/// A sequence number relative to the receiving channel's state when the
/// frame arrives, so that frames reach the in-order paths, not only the
/// rejection of far-off numbers.
#[derive(Debug, Clone, Copy)]
enum Seq {
    /// The next number the channel expects, plus this.
    Expected(i64),
    /// One of the numbers the channel itself sent last (for acknowledgements):
    /// its next number minus 1, minus this.
    Sent(i64),
    Raw(i64),
}

fn seq() -> impl Strategy<Value = Seq> {
    prop_oneof![
        6 => Just(Seq::Expected(0)),
        2 => (-2i64..4).prop_map(Seq::Expected),
        3 => (0i64..4).prop_map(Seq::Sent),
        1 => prop_oneof![Just(i64::MAX), Just(i64::MIN), Just(-1i64), any::<i64>()].prop_map(Seq::Raw),
    ]
}

impl Seq {
    fn resolve(self, ch: &Channel) -> i64 {
        match self {
            Seq::Expected(d) => ch.expected_sequence_number().saturating_add(d),
            Seq::Sent(d) => ch
                .next_sequence_number()
                .saturating_sub(1)
                .saturating_sub(d),
            Seq::Raw(n) => n,
        }
    }
}

/// Payload of a hostile frame; acknowledgements name a sequence number
/// resolved like the frame's own.
#[derive(Debug, Clone)]
enum Payload {
    Bytes(Vec<u8>),
    Ack { seq: Seq, message_type: String },
    Json(serde_json::Value),
}

fn hostile_payload() -> impl Strategy<Value = Payload> {
    prop_oneof![
        2 => proptest::collection::vec(any::<u8>(), 0..48).prop_map(Payload::Bytes),
        3 => (seq(), prop_oneof![
            Just("input_stream_data".to_string()),
            Just("output_stream_data".to_string()),
            "[a-z_]{0,20}",
        ])
        .prop_map(|(seq, message_type)| Payload::Ack { seq, message_type }),
        1 => ("[A-Za-z]{0,16}", "[ -~]{0,24}", any::<u8>()).prop_map(|(action, key, n)| {
            let action = match n % 4 {
                0 => "SessionType".to_string(),
                1 => "KMSEncryption".to_string(),
                _ => action,
            };
            let params = match n % 3 {
                0 => serde_json::json!({ "SessionType": key, "Properties": null }),
                1 => serde_json::json!({ "KMSKeyId": key, "Challenge": key }),
                _ => serde_json::json!([1, "x", null]),
            };
            Payload::Json(serde_json::json!({
                "AgentVersion": key,
                "RequestedClientActions": [{ "ActionType": action, "ActionParameters": params }],
            }))
        }),
        1 => ("[ -~]{0,32}", any::<i64>()).prop_map(|(s, n)| {
            Payload::Json(serde_json::json!({
                "HandshakeTimeToComplete": n,
                "CustomerMessage": s,
                "Challenge": s,
                "Output": s,
                "SessionId": s,
                "SchemaVersion": n,
            }))
        }),
        1 => prop_oneof![
            Just(serde_json::json!({})),
            Just(serde_json::Value::Null),
            Just(serde_json::json!([])),
            Just(serde_json::json!({ "cols": 4294967295u32, "rows": 0 })),
        ]
        .prop_map(Payload::Json),
    ]
}

/// A frame with a valid digest, so that it gets past decoding to the state
/// machine: mostly the types a peer sends, sometimes any other; any flags
/// and payload type.
#[derive(Debug, Clone)]
struct Hostile {
    message_type: MessageType,
    seq: Seq,
    flags: u64,
    payload_type: PayloadType,
    payload: Payload,
}

fn hostile_message() -> impl Strategy<Value = Hostile> {
    (
        prop_oneof![
            4 => Just(MessageType::OutputStreamData),
            2 => Just(MessageType::InputStreamData),
            3 => Just(MessageType::Acknowledge),
            2 => message_type(),
        ],
        seq(),
        prop_oneof![Just(0u64), Just(1u64), Just(2u64), Just(3u64), any::<u64>()],
        prop_oneof![3 => 1u32..13, 1 => any::<u32>()].prop_map(PayloadType::from_u32),
        hostile_payload(),
    )
        .prop_map(
            |(message_type, seq, flags, payload_type, payload)| Hostile {
                message_type,
                seq,
                flags,
                payload_type,
                payload,
            },
        )
}

impl Hostile {
    fn encode(&self, ch: &Channel, id: u128) -> Bytes {
        let payload = match &self.payload {
            Payload::Bytes(b) => b.clone(),
            Payload::Ack { seq, message_type } => serde_json::json!({
                "AcknowledgedMessageType": message_type,
                "AcknowledgedMessageId": Uuid::from_u128(id).to_string(),
                "AcknowledgedMessageSequenceNumber": seq.resolve(ch),
                "IsSequentialMessage": true,
            })
            .to_string()
            .into_bytes(),
            Payload::Json(v) => v.to_string().into_bytes(),
        };
        Message {
            message_type: self.message_type.clone(),
            header_length: 116,
            schema_version: 1,
            created_date: 1,
            sequence_number: self.seq.resolve(ch),
            flags: self.flags,
            message_id: Uuid::from_u128(id),
            payload_type: self.payload_type,
            payload: Bytes::from(payload),
        }
        .encode()
    }
}

#[derive(Debug, Clone)]
enum Step {
    Receive(Hostile),
    Wait(u64),
    Input(Vec<u8>),
    Resize(u32, u32),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        6 => hostile_message().prop_map(Step::Receive),
        2 => (0u64..5_000).prop_map(Step::Wait),
        2 => proptest::collection::vec(any::<u8>(), 0..64).prop_map(Step::Input),
        1 => (any::<u32>(), any::<u32>()).prop_map(|(c, r)| Step::Resize(c, r)),
    ]
}

/// Sends and events after each step are bounded: a hostile peer can make the
/// channel fail, never loop or pile up output.
const MAX_PER_STEP: usize = 10_000;

fn drive(ch: &mut Channel, now: Instant) -> Result<(), TestCaseError> {
    if ch.poll_timeout().is_some_and(|t| t <= now) {
        ch.handle_timeout(now);
    }
    let mut n = 0;
    while ch.poll_transmit(now).is_some() {
        n += 1;
        prop_assert!(n < MAX_PER_STEP, "transmits without end");
    }
    let mut n = 0;
    while ch.poll_event().is_some() {
        n += 1;
        prop_assert!(n < MAX_PER_STEP, "events without end");
    }
    Ok(())
}

fn play(ch: &mut Channel, base: Instant, steps: &[Step]) -> Result<(), TestCaseError> {
    let mut now = base;
    drive(ch, now)?;
    for (i, s) in steps.iter().enumerate() {
        match s {
            Step::Receive(h) => {
                // Errors are the expected answer to much of this; panics are not.
                let frame = h.encode(ch, i as u128 + 1);
                let _ = ch.handle_incoming_bytes(now, frame);
            }
            Step::Wait(ms) => now += Duration::from_millis(*ms),
            Step::Input(b) => {
                if ch.role() == ssm_channel::Role::Client {
                    let _ = ch.send_input(now, b);
                } else {
                    let _ = ch.send_output(now, PayloadType::Output, b);
                }
            }
            Step::Resize(c, r) => {
                if ch.role() == ssm_channel::Role::Client {
                    let _ = ch.send_resize(now, *c, *r);
                } else {
                    let _ = ch.send_exit_code(now, *c as i32);
                }
            }
        }
        drive(ch, now)?;
        prop_assert!(ch.unacked_messages() <= MAX_PER_STEP);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// A client that has just opened the channel (before any handshake or
    /// output), a client whose shell is ready, and an agent, each fed frames
    /// with valid digests but hostile contents and order (sequence numbers
    /// mostly the ones it expects, acknowledgements of what it sent), mixed
    /// with time passing and local input: errors, never a panic, and no
    /// endless output.
    #[test]
    fn hostile_peer_never_panics(steps in proptest::collection::vec(step(), 1..48)) {
        let base = Instant::now();
        let mut opened = client(1);
        opened.open(base, Token::new("t"), Uuid::nil(), Uuid::nil()).unwrap();
        play(&mut opened, base, &steps)?;

        let mut ready = client(2);
        let mut a = agent(3);
        ready.open(base, Token::new("t"), Uuid::nil(), Uuid::nil()).unwrap();
        pump(&mut ready, &mut a, base);
        a.send_output(base, PayloadType::Output, b"$ ").unwrap();
        pump(&mut a, &mut ready, base);
        prop_assert!(ready.is_ready());
        play(&mut ready, base, &steps)?;

        let mut agent_side = agent(4);
        play(&mut agent_side, base, &steps)?;
    }
}

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

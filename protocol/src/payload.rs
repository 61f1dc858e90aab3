//! Typed payloads: the open-data-channel text frame and the JSON / binary payloads
//! carried inside messages. Field order follows the reference client so that the
//! serialized JSON matches it byte for byte.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A bearer token (`TokenValue`). `Debug` and `Display` never show it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Token(String);

impl Token {
    /// Wraps a token string.
    pub fn new(value: impl Into<String>) -> Token {
        Token(value.into())
    }

    /// The secret value, for the one place that must send it.
    pub fn expose_secret(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl From<String> for Token {
    fn from(s: String) -> Token {
        Token(s)
    }
}

/// Error parsing a typed payload.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PayloadError {
    /// The JSON did not match the expected shape (serde's message, which never quotes
    /// input values at length).
    #[error("invalid JSON: {0}")]
    Json(String),
    /// A fixed-size binary payload had the wrong length.
    #[error("expected {expected} bytes, got {actual}")]
    Length {
        /// Required length.
        expected: usize,
        /// Received length.
        actual: usize,
    },
    /// A text payload did not have the expected form.
    #[error("malformed text payload")]
    Text,
    /// Base64 could not be decoded.
    #[error("invalid base64")]
    Base64,
}

impl From<serde_json::Error> for PayloadError {
    fn from(e: serde_json::Error) -> PayloadError {
        PayloadError::Json(e.to_string())
    }
}

/// Parses a JSON payload.
pub fn from_json<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, PayloadError> {
    Ok(serde_json::from_slice(bytes)?)
}

/// Serializes a payload to compact JSON.
pub fn to_json<T: Serialize>(value: &T) -> Vec<u8> {
    // Serializing these plain structs (strings, numbers, `serde_json::Value`) cannot fail.
    serde_json::to_vec(value).unwrap_or_default()
}

/// The first frame a client sends (a WebSocket **text** frame).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct OpenDataChannel {
    /// Always `"1.0"`.
    pub message_schema_version: String,
    /// Fresh UUID per open (reconnects included).
    pub request_id: String,
    /// The token for this attempt.
    pub token_value: Token,
    /// Random UUID chosen once per client process.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// Client version, four dotted numbers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_version: Option<String>,
}

/// Acknowledgement payload (exact key order of the reference client).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Acknowledge {
    /// Type of the acknowledged message.
    pub acknowledged_message_type: String,
    /// Canonical UUID text of the acknowledged message.
    pub acknowledged_message_id: String,
    /// Sequence number of the acknowledged message (what receivers match on).
    pub acknowledged_message_sequence_number: i64,
    /// Always true.
    #[serde(default = "default_true")]
    pub is_sequential_message: bool,
}

fn default_true() -> bool {
    true
}

/// The JSON of an [`Acknowledge`] for one message, written straight into one
/// buffer: the same bytes as serializing the struct, without its three
/// intermediate allocations (one acknowledgement goes out per message received).
pub(crate) fn ack_json(
    message_type: &str,
    message_id: &uuid::Uuid,
    sequence_number: i64,
) -> Vec<u8> {
    use std::io::Write as _;
    let mut out = Vec::with_capacity(128 + message_type.len());
    out.extend_from_slice(b"{\"AcknowledgedMessageType\":");
    // Escapes like the struct's serializer would (a peer's type may be anything).
    if serde_json::to_writer(&mut out, message_type).is_err() {
        out.extend_from_slice(b"\"\"");
    }
    out.extend_from_slice(b",\"AcknowledgedMessageId\":\"");
    let mut id = uuid::Uuid::encode_buffer();
    out.extend_from_slice(message_id.hyphenated().encode_lower(&mut id).as_bytes());
    out.extend_from_slice(b"\",\"AcknowledgedMessageSequenceNumber\":");
    // Writing to a Vec cannot fail.
    let _ = write!(out, "{sequence_number}");
    out.extend_from_slice(b",\"IsSequentialMessage\":true}");
    out
}

/// One action in a [`HandshakeRequest`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RequestedClientAction {
    /// `SessionType`, `KMSEncryption`, or anything else.
    pub action_type: String,
    /// Action-specific parameters.
    #[serde(default)]
    pub action_parameters: ActionParameters,
}

/// `ActionParameters` of a requested action. Known shapes are typed so that they
/// serialize with the reference key order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ActionParameters {
    /// Parameters of a `SessionType` action.
    SessionType(SessionTypeRequest),
    /// Parameters of a `KMSEncryption` action.
    KmsEncryption(KmsEncryptionRequest),
    /// Anything else.
    Other(serde_json::Value),
}

impl Default for ActionParameters {
    fn default() -> Self {
        ActionParameters::Other(serde_json::Value::Null)
    }
}

/// `ActionResult` of a processed action.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ActionResult {
    /// Result of an accepted `KMSEncryption` action.
    KmsEncryption(KmsEncryptionResponse),
    /// Anything else (`null`, the number 3 for unsupported actions, ...).
    Other(serde_json::Value),
}

impl Default for ActionResult {
    fn default() -> Self {
        ActionResult::Other(serde_json::Value::Null)
    }
}

/// Action type name for the session type.
pub const ACTION_SESSION_TYPE: &str = "SessionType";
/// Action type name for KMS encryption.
pub const ACTION_KMS_ENCRYPTION: &str = "KMSEncryption";

/// Handshake request (payload type 5, agent to client).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct HandshakeRequest {
    /// Agent version.
    pub agent_version: String,
    /// Requested actions, in order.
    #[serde(default)]
    pub requested_client_actions: Vec<RequestedClientAction>,
}

/// `ActionParameters` of a `SessionType` action.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SessionTypeRequest {
    /// `Standard_Stream`, `InteractiveCommands`, `NonInteractiveCommands` or `Port`.
    pub session_type: String,
    /// Session properties (`null` for shells).
    #[serde(default)]
    pub properties: serde_json::Value,
}

/// `ActionParameters` of a `KMSEncryption` action.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KmsEncryptionRequest {
    /// KMS key id or ARN.
    #[serde(rename = "KMSKeyId")]
    pub kms_key_id: String,
    /// Random challenge (agents from 3.3.808.0).
    #[serde(rename = "Challenge", default, skip_serializing_if = "Option::is_none")]
    pub challenge: Option<String>,
}

/// `ActionResult` of an accepted `KMSEncryption` action.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KmsEncryptionResponse {
    /// Base64 of the KMS `CiphertextBlob`.
    #[serde(rename = "KMSCipherTextKey")]
    pub kms_cipher_text_key: String,
    /// Never filled in (`null`).
    #[serde(rename = "KMSCipherTextHash")]
    pub kms_cipher_text_hash: Option<String>,
    /// Set when the challenge went into the encryption context.
    #[serde(
        rename = "ChallengeAcknowledgement",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub challenge_acknowledgement: Option<bool>,
}

/// `ActionStatus` value: success.
pub const ACTION_STATUS_SUCCESS: i64 = 1;
/// `ActionStatus` value: failed.
pub const ACTION_STATUS_FAILED: i64 = 2;
/// `ActionStatus` value: unsupported (placed in `ActionResult` by the reference client).
pub const ACTION_STATUS_UNSUPPORTED: i64 = 3;

/// One processed action in a [`HandshakeResponse`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ProcessedClientAction {
    /// Echoed action type.
    pub action_type: String,
    /// 1 success, 2 failed, 0 for unsupported actions (reference quirk).
    pub action_status: i64,
    /// Action-specific result or `null`.
    #[serde(default)]
    pub action_result: ActionResult,
    /// Error text, `""` when none.
    #[serde(default)]
    pub error: String,
}

/// Handshake response (payload type 6, client to agent).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct HandshakeResponse {
    /// Client version.
    pub client_version: String,
    /// One entry per requested action, same order.
    #[serde(default)]
    pub processed_client_actions: Vec<ProcessedClientAction>,
    /// All error texts, or `null`.
    #[serde(default)]
    pub errors: Option<Vec<String>>,
}

/// Handshake complete (payload type 7, agent to client).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct HandshakeComplete {
    /// Handshake duration in nanoseconds.
    #[serde(default)]
    pub handshake_time_to_complete: i64,
    /// Text to show the user, may be empty.
    #[serde(default)]
    pub customer_message: String,
}

/// Encryption challenge request (payload type 8).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct EncChallengeRequest {
    /// Base64 of nonce ‖ ciphertext ‖ tag.
    pub challenge: String,
}

/// Encryption challenge response (payload type 9).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct EncChallengeResponse {
    /// Base64 of nonce ‖ ciphertext ‖ tag.
    pub challenge: String,
}

/// Payload of `channel_closed`. Every field is optional on receipt.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ChannelClosed {
    /// UUID text.
    pub message_id: String,
    /// Opaque text (epoch ms or a date).
    pub created_date: String,
    /// Session target.
    pub destination_id: String,
    /// Session id.
    pub session_id: String,
    /// `"channel_closed"`.
    pub message_type: String,
    /// 1.
    pub schema_version: i64,
    /// Reason text, may be empty.
    pub output: String,
}

/// Terminal size (payload type 3): `{"cols":N,"rows":M}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Size {
    /// Columns.
    pub cols: u32,
    /// Rows.
    pub rows: u32,
}

/// A flag value (payload type 10): one u32, big-endian.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Flag(pub u32);

impl Flag {
    /// Basic port forwarding: the local connection closed.
    pub const DISCONNECT_TO_PORT: Flag = Flag(1);
    /// Port sessions: end the session.
    pub const TERMINATE_SESSION: Flag = Flag(2);
    /// Agent: could not connect to the destination port.
    pub const CONNECT_TO_PORT_ERROR: Flag = Flag(3);

    /// The 4 wire bytes.
    pub fn to_bytes(self) -> [u8; 4] {
        self.0.to_be_bytes()
    }

    /// Parses exactly 4 bytes.
    pub fn from_bytes(b: &[u8]) -> Result<Flag, PayloadError> {
        let a: [u8; 4] = b.try_into().map_err(|_| PayloadError::Length {
            expected: 4,
            actual: b.len(),
        })?;
        Ok(Flag(u32::from_be_bytes(a)))
    }
}

/// Exit code (payload type 12): ASCII `EXIT_CODE: <n>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ExitCode(pub i32);

impl ExitCode {
    /// The text prefix.
    pub const PREFIX: &'static str = "EXIT_CODE: ";

    /// The wire text.
    pub fn to_bytes(self) -> Vec<u8> {
        format!("{}{}", Self::PREFIX, self.0).into_bytes()
    }

    /// Parses `EXIT_CODE: n` (surrounding whitespace tolerated).
    pub fn from_bytes(b: &[u8]) -> Result<ExitCode, PayloadError> {
        let s = std::str::from_utf8(b).map_err(|_| PayloadError::Text)?;
        let n = s
            .trim()
            .strip_prefix(Self::PREFIX.trim_end())
            .ok_or(PayloadError::Text)?
            .trim();
        n.parse().map(ExitCode).map_err(|_| PayloadError::Text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ack_json_is_byte_exact() {
        let a = Acknowledge {
            acknowledged_message_type: "output_stream_data".into(),
            acknowledged_message_id: "5b1d2e3f-4a5b-4c6d-8e7f-8091a2b3c4d5".into(),
            acknowledged_message_sequence_number: 5,
            is_sequential_message: true,
        };
        let j = to_json(&a);
        assert_eq!(
            std::str::from_utf8(&j).unwrap(),
            r#"{"AcknowledgedMessageType":"output_stream_data","AcknowledgedMessageId":"5b1d2e3f-4a5b-4c6d-8e7f-8091a2b3c4d5","AcknowledgedMessageSequenceNumber":5,"IsSequentialMessage":true}"#
        );
        assert_eq!(j.len(), 176);
        let id = uuid::Uuid::parse_str(&a.acknowledged_message_id).unwrap();
        assert_eq!(ack_json(&a.acknowledged_message_type, &id, 5), j);
    }

    #[test]
    fn direct_ack_json_matches_the_struct_for_any_type_and_number() {
        let id = uuid::Uuid::from_u128(0x0123_4567_89ab_4cde_8f01_2345_6789_abcd);
        for (ty, seq) in [
            ("input_stream_data", 0i64),
            ("output_stream_data", i64::MAX),
            ("we\"ird\\type\u{1}é", -1),
            ("", 42),
        ] {
            let a = Acknowledge {
                acknowledged_message_type: ty.into(),
                acknowledged_message_id: id.hyphenated().to_string(),
                acknowledged_message_sequence_number: seq,
                is_sequential_message: true,
            };
            assert_eq!(ack_json(ty, &id, seq), to_json(&a), "{ty:?} {seq}");
        }
    }

    #[test]
    fn handshake_response_encodings_match_reference() {
        let r = HandshakeResponse {
            client_version: "1.2.677.0".into(),
            processed_client_actions: vec![
                ProcessedClientAction {
                    action_type: "SessionType".into(),
                    action_status: 1,
                    action_result: ActionResult::default(),
                    error: String::new(),
                },
                ProcessedClientAction {
                    action_type: "KMSEncryption".into(),
                    action_status: 1,
                    action_result: ActionResult::KmsEncryption(KmsEncryptionResponse {
                        kms_cipher_text_key: "AQIDBAU=".into(),
                        kms_cipher_text_hash: None,
                        challenge_acknowledgement: None,
                    }),
                    error: String::new(),
                },
            ],
            errors: None,
        };
        assert_eq!(
            String::from_utf8(to_json(&r)).unwrap(),
            r#"{"ClientVersion":"1.2.677.0","ProcessedClientActions":[{"ActionType":"SessionType","ActionStatus":1,"ActionResult":null,"Error":""},{"ActionType":"KMSEncryption","ActionStatus":1,"ActionResult":{"KMSCipherTextKey":"AQIDBAU=","KMSCipherTextHash":null},"Error":""}],"Errors":null}"#
        );
        let unsupported = ProcessedClientAction {
            action_type: "Foo".into(),
            action_status: 0,
            action_result: ActionResult::Other(serde_json::json!(3)),
            error: "Unsupported action Foo".into(),
        };
        assert_eq!(
            String::from_utf8(to_json(&unsupported)).unwrap(),
            r#"{"ActionType":"Foo","ActionStatus":0,"ActionResult":3,"Error":"Unsupported action Foo"}"#
        );
    }

    #[test]
    fn handshake_request_parses_reference_example() {
        let j = br#"{"AgentVersion":"3.3.987.0","RequestedClientActions":[{"ActionType":"SessionType","ActionParameters":{"SessionType":"Standard_Stream","Properties":null}},{"ActionType":"KMSEncryption","ActionParameters":{"KMSKeyId":"arn:aws:kms:us-east-1:111122223333:key/x","Challenge":"q1w2e3r4t5y6u7i8o9p0aa=="}}]}"#;
        let r: HandshakeRequest = from_json(j).unwrap();
        assert_eq!(r.requested_client_actions.len(), 2);
        let ActionParameters::SessionType(st) = &r.requested_client_actions[0].action_parameters
        else {
            panic!("not a session type")
        };
        assert_eq!(st.session_type, "Standard_Stream");
        let ActionParameters::KmsEncryption(k) = &r.requested_client_actions[1].action_parameters
        else {
            panic!("not kms")
        };
        assert_eq!(k.challenge.as_deref(), Some("q1w2e3r4t5y6u7i8o9p0aa=="));
        // Re-serializes in the agent's key order.
        assert_eq!(to_json(&r), j.to_vec());
    }

    #[test]
    fn token_is_redacted() {
        let o = OpenDataChannel {
            message_schema_version: "1.0".into(),
            request_id: "r".into(),
            token_value: Token::new("SECRET-TOKEN"),
            client_id: None,
            client_version: None,
        };
        let dbg = format!("{o:?}");
        assert!(!dbg.contains("SECRET"), "{dbg}");
        assert!(!format!("{}", o.token_value).contains("SECRET"));
        let j = String::from_utf8(to_json(&o)).unwrap();
        assert_eq!(
            j,
            r#"{"MessageSchemaVersion":"1.0","RequestId":"r","TokenValue":"SECRET-TOKEN"}"#
        );
    }

    #[test]
    fn flag_and_exit_code() {
        assert_eq!(Flag::TERMINATE_SESSION.to_bytes(), [0, 0, 0, 2]);
        assert_eq!(Flag::from_bytes(&[0, 0, 0, 3]).unwrap(), Flag(3));
        assert!(Flag::from_bytes(&[0, 0, 3]).is_err());
        assert_eq!(ExitCode(0).to_bytes(), b"EXIT_CODE: 0");
        assert_eq!(
            ExitCode::from_bytes(b"EXIT_CODE: -2\n").unwrap(),
            ExitCode(-2)
        );
        assert!(ExitCode::from_bytes(b"EXIT: 1").is_err());
        let s: Size = from_json(br#"{"cols":120,"rows":40}"#).unwrap();
        assert_eq!(
            s,
            Size {
                cols: 120,
                rows: 40
            }
        );
    }
}

//! Every binary frame in the plugin captures decodes, matches the capture's own
//! decoded view, and re-encodes byte for byte.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;

use ssm_channel::{Message, MessageType, PayloadType};

fn captures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures/plugin-captures")
}

fn records() -> Vec<(String, serde_json::Value)> {
    let mut out = Vec::new();
    let mut files: Vec<_> = std::fs::read_dir(captures_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "jsonl"))
        .collect();
    files.sort();
    assert!(files.len() >= 12, "captures missing: {files:?}");
    for f in files {
        let name = f.file_name().unwrap().to_string_lossy().into_owned();
        for line in std::fs::read_to_string(&f).unwrap().lines() {
            out.push((name.clone(), serde_json::from_str(line).unwrap()));
        }
    }
    out
}

#[test]
fn every_binary_frame_round_trips() {
    let mut n = 0;
    for (file, r) in records() {
        if r["kind"] != "ws_binary" {
            continue;
        }
        let raw = hex::decode(r["hex"].as_str().unwrap()).unwrap();
        let d = &r["decoded"];
        let m = Message::decode(&raw).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(m.header_length as u64, d["header_length"].as_u64().unwrap());
        assert_eq!(m.message_type.as_str(), d["message_type"].as_str().unwrap());
        assert_eq!(
            m.schema_version as u64,
            d["schema_version"].as_u64().unwrap()
        );
        assert_eq!(m.created_date, d["created_date_ms"].as_u64().unwrap());
        assert_eq!(m.sequence_number, d["sequence_number"].as_i64().unwrap());
        assert_eq!(m.flags, d["flags"].as_u64().unwrap());
        assert_eq!(m.message_id.to_string(), d["message_id"].as_str().unwrap());
        assert_eq!(
            m.payload_type.to_u32() as u64,
            d["payload_type"].as_u64().unwrap()
        );
        assert_eq!(hex::encode(&m.payload), d["payload_hex"].as_str().unwrap());
        assert!(!matches!(m.message_type, MessageType::Unknown(_)), "{file}");
        assert!(!matches!(m.payload_type, PayloadType::Unknown(_)), "{file}");
        // Zero-copy decode agrees.
        let z = Message::decode_bytes(bytes::Bytes::from(raw.clone())).unwrap();
        assert_eq!(z, m);
        // Re-encoding reproduces the frame exactly.
        assert_eq!(hex::encode(m.encode()), hex::encode(&raw), "{file}");
        n += 1;
    }
    assert!(n > 400, "only {n} binary frames found");
}

#[test]
fn open_data_channel_frames_parse_and_reserialize() {
    let mut n = 0;
    for (file, r) in records() {
        if r["kind"] != "ws_text" {
            continue;
        }
        let text = r["text"].as_str().unwrap();
        let o: ssm_channel::payload::OpenDataChannel = serde_json::from_str(text).unwrap();
        assert_eq!(o.message_schema_version, "1.0");
        assert_eq!(o.client_version.as_deref(), Some("1.2.0.0"), "{file}");
        assert!(!format!("{o:?}").contains(o.token_value.expose_secret()));
        assert_eq!(
            String::from_utf8(ssm_channel::payload::to_json(&o)).unwrap(),
            text
        );
        n += 1;
    }
    assert!(n >= 4);
}

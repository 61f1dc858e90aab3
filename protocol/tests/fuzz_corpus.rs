//! Runs the decoder over the committed fuzz seed corpus (stable, no cargo-fuzz).
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::time::Instant;

use ssm_channel::{Channel, Frame, Message};

mod support;

#[test]
fn every_corpus_file_decodes_and_round_trips() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/decode");
    let mut n = 0;
    for e in std::fs::read_dir(&dir).unwrap() {
        let path = e.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        // Seeds are real captured frames: they must decode and re-encode exactly.
        let m = Message::decode(&data).unwrap_or_else(|e| panic!("{path:?}: {e}"));
        assert_eq!(m.encode(), data, "{path:?}");
        // Both roles accept (or reject cleanly) every seed.
        let now = Instant::now();
        let mut c: Channel = support::client(1);
        c.open(
            now,
            ssm_channel::Token::new("t"),
            ssm_channel::Uuid::nil(),
            ssm_channel::Uuid::nil(),
        )
        .unwrap();
        let _ = c.handle_incoming(now, Frame::Binary(&data));
        let mut a: Channel = support::agent(1);
        let _ = a.handle_incoming(now, Frame::Binary(&data));
        n += 1;
    }
    assert!(n >= 200, "corpus has only {n} files");
}

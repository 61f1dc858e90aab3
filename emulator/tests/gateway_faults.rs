//! Gateway under injected faults, and tab re-attachment: everything must still be
//! delivered exactly once and in order.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod gateway_support;

use cloudshell_emulator::gateway::{FaultSpec, SessionMode, SessionOptions, stream_pattern};
use gateway_support::TestGateway;

fn echo_with(faults: &str) -> SessionOptions {
    SessionOptions {
        mode: SessionMode::Echo,
        faults: faults.parse::<FaultSpec>().unwrap(),
        ..SessionOptions::default()
    }
}

/// Sends `n` distinct messages one round trip at a time; the echoed output must be
/// their exact concatenation.
async fn echo_round_trips(t: &TestGateway, n: usize) -> (String, gateway_support::Client) {
    let (id, mut c) = t.client("env-f", None).await;
    c.run_until("ready", |c| c.ready).await;
    let mut expected = Vec::new();
    for i in 0..n {
        let msg = format!("<message {i}>");
        expected.extend_from_slice(msg.as_bytes());
        c.send_input(msg.as_bytes());
        let want = expected.len();
        c.run_until(&format!("echo of message {i}"), |c| c.output.len() >= want)
            .await;
    }
    assert_eq!(
        String::from_utf8_lossy(&c.output),
        String::from_utf8_lossy(&expected)
    );
    (id, c)
}

#[tokio::test]
async fn loss_duplication_reordering_and_delay_deliver_exactly_once() {
    let t = TestGateway::with_defaults(echo_with(
        "drop:both:0.1,dup:both:0.1,reorder:both:0.1,delay:both:0.05:40,seed:11",
    ))
    .await;
    let (id, c) = echo_round_trips(&t, 60).await;
    let m = t.gw.session_metrics(&id).unwrap();
    assert!(m.faults.dropped > 0, "{m:?}");
    assert!(m.faults.duplicated > 0, "{m:?}");
    assert!(m.faults.reordered > 0, "{m:?}");
    assert!(m.faults.delayed > 0, "{m:?}");
    // Drops were repaired by retransmissions on one side or the other, and
    // duplicates were recognised.
    assert!(m.resends_out + c.ch.stats().resent > 0, "{m:?}");
    assert!(m.duplicates_in + c.ch.stats().duplicates > 0, "{m:?}");
    assert_eq!(m.input_bytes, m.output_bytes);
}

#[tokio::test]
async fn nth_frame_faults_in_each_direction() {
    for spec in [
        "drop:in:3",
        "drop:out:3",
        "dup:in:4",
        "dup:out:4",
        "reorder:in:3",
        "reorder:out:4",
    ] {
        let t = TestGateway::with_defaults(echo_with(spec)).await;
        let (id, _c) = echo_round_trips(&t, 8).await;
        let f = t.gw.session_metrics(&id).unwrap().faults;
        assert_eq!(
            f.dropped + f.duplicated + f.reordered,
            1,
            "{spec}: exactly one fault: {f:?}"
        );
    }
}

#[tokio::test]
async fn cut_connection_is_resumed_with_the_same_sequence_state() {
    let t = TestGateway::with_defaults(echo_with("cut:frames:25")).await;
    let (id, c) = echo_round_trips(&t, 30).await;
    assert_eq!(c.reconnects, 1);
    let m = t.gw.session_metrics(&id).unwrap();
    assert_eq!(m.connections, 2);
    assert_eq!(m.faults.cuts, 1);
}

#[tokio::test]
async fn stream_survives_a_byte_cut_and_loss() {
    let total = 200_000usize;
    let t = TestGateway::with_defaults(SessionOptions {
        mode: SessionMode::Stream {
            total_bytes: total as u64,
            chunk_size: None,
        },
        faults: "cut:bytes:60000,drop:out:0.02,dup:in:0.05,seed:5"
            .parse()
            .unwrap(),
        ..SessionOptions::default()
    })
    .await;
    let (id, mut c) = t.client("env-s", None).await;
    // The client reconnects on the cut and keeps acknowledging.
    let give_up = std::time::Instant::now() + gateway_support::GUARD;
    c.run_until("all stream bytes", |c| c.output.len() >= total)
        .await;
    assert!(std::time::Instant::now() < give_up);
    let reason = c.wait_closed().await;
    assert_eq!(reason, None);
    assert_eq!(c.output.len(), total);
    assert!(c.output == stream_pattern(total), "stream content differs");
    assert_eq!(c.reconnects, 1);
    let m = t.gw.session_metrics(&id).unwrap();
    assert_eq!(m.faults.cuts, 1);
    assert!(m.faults.dropped > 0);
    assert!(m.resends_out > 0);
}

#[tokio::test]
async fn reattach_by_tab_finds_the_same_shell_and_the_output_made_meanwhile() {
    let t = TestGateway::with_defaults(SessionOptions::default()).await;
    let (first, mut c1) = t.client("env-tab", Some("tab-1")).await;
    c1.run_until("ready", |c| c.ready).await;
    c1.send_input(b"export X=41; X=$((X+1)); echo SET-$X\r");
    c1.wait_for_output("SET-42").await;
    let pid = t.gw.tab_shell_pid("env-tab", "tab-1").expect("shell pid");
    // Start output that appears after the client went away, then go away.
    c1.send_input(b"sleep 0.5; echo LATER-$X\r");
    c1.run_until("input acknowledged", |c| c.ch.all_acked())
        .await;
    c1.drop_connection();
    drop(c1);

    let (second, mut c2) = t.client("env-tab", Some("tab-1")).await;
    c2.wait_for_output("LATER-42").await;
    c2.send_input(b"echo GOT-$X\r");
    c2.wait_for_output("GOT-42").await;
    assert_eq!(t.gw.tab_shell_pid("env-tab", "tab-1"), Some(pid));
    assert_eq!(t.gw.live_tabs(), 1);
    // The first session gave the tab up.
    let give_up = std::time::Instant::now() + gateway_support::GUARD;
    while t.gw.live_sessions().contains(&first) {
        assert!(std::time::Instant::now() < give_up);
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(t.gw.live_sessions().contains(&second));

    // A different tab gets a different shell.
    let (_third, mut c3) = t.client("env-tab", Some("tab-2")).await;
    c3.run_until("ready", |c| c.ready).await;
    c3.send_input(b"echo X=[$X]\r");
    c3.wait_for_output("X=[]").await;
    assert_ne!(t.gw.tab_shell_pid("env-tab", "tab-2"), Some(pid));
}

#[tokio::test]
async fn home_directory_persists_across_sessions() {
    let t = TestGateway::with_defaults(SessionOptions::default()).await;
    let (_a, mut c1) = t.client("env-home", None).await;
    c1.run_until("ready", |c| c.ready).await;
    c1.send_input(b"echo kept > ~/note.txt && echo WROTE\r");
    c1.wait_for_output("WROTE").await;
    c1.send_input(b"exit\r");
    c1.wait_closed().await;

    let (_b, mut c2) = t.client("env-home", None).await;
    c2.run_until("ready", |c| c.ready).await;
    c2.send_input(b"cat note.txt | sed 's/^/NOTE=/'\r");
    c2.wait_for_output("NOTE=kept").await;
}

#[tokio::test]
async fn reattach_to_an_idle_shell_makes_the_client_ready() {
    let t = TestGateway::with_defaults(SessionOptions::default()).await;
    let (_a, mut c1) = t.client("env-idle", Some("tab-idle")).await;
    c1.run_until("ready", |c| c.ready).await;
    c1.send_input(b"echo IDLE\r");
    c1.wait_for_output("IDLE\r\n").await;
    // Everything acknowledged, including the next prompt.
    c1.run_until("prompt", |c| {
        c.output.ends_with(b"# ") || c.output.ends_with(b"$ ")
    })
    .await;
    c1.run_until("all acked", |c| c.ch.all_acked()).await;
    drop(c1);
    let (_b, mut c2) = t.client("env-idle", Some("tab-idle")).await;
    c2.run_until("ready", |c| c.ready).await;
    assert_eq!(c2.output, b"\x1b[?25h");
    c2.send_input(b"echo AGAIN\r");
    c2.wait_for_output("AGAIN\r\n").await;
}

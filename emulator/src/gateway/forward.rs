//! The agent's side of `AWS-StartPortForwardingSession` with smux
//! multiplexing ([`SessionMode::Forward`](super::SessionMode::Forward)).
//!
//! The session's input is an smux v1 byte stream from the client (the smux
//! client); the agent is the smux server. Each stream the client opens (`SYN`)
//! becomes a new TCP connection to `127.0.0.1:PORT`:
//!
//! - client `PSH` data is queued for the stream's writer task (the
//!   demultiplexer never waits for a slow destination), client `FIN` shuts
//!   down the connection's write half once the queue is written;
//! - what the destination sends goes out as `PSH` frames, its end of file as
//!   `FIN`; frames of all streams go through one [`FrameWriter`], so each one
//!   reaches the output pipe whole;
//! - a connection that cannot be made gets flag 3 (`ConnectToPortError`) and
//!   a `FIN`.
//!
//! A stream is forgotten once both directions are done. The program runs until
//! the client's `TerminateSession` (exit code 0) or an input that is not smux
//! v1 (exit code 1); one connection closing does not end it.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use ssm_channel::payload::Flag;
use ssm_channel::smux::{self, Command, Decoder, Frame};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use super::backend::{BackendInput, DestConnection, FlagQueue, OutputPipe};

/// Read buffer of each destination connection.
pub(super) const READ_BUFFER: usize = 16 * 1024;

/// Writes encoded frames into the output pipe one writer at a time, so that
/// frames of different streams never interleave.
struct FrameWriter {
    pipe: Arc<OutputPipe>,
    turn: tokio::sync::Mutex<()>,
}

impl FrameWriter {
    /// Writes whole frames (waiting for room in the pipe).
    async fn write(&self, frames: &[u8]) {
        let _turn = self.turn.lock().await;
        self.pipe.write_all(frames).await;
    }

    async fn write_frame(&self, frame: &Frame) {
        self.write(&frame.to_vec()).await;
    }
}

/// Runs the forwarder until `TerminateSession` (0), a bad smux stream (1) or
/// the end of the input (0). Dropping the future closes every connection.
pub(super) async fn run(
    port: u16,
    pipe: Arc<OutputPipe>,
    flags: Arc<FlagQueue>,
    mut input: mpsc::UnboundedReceiver<BackendInput>,
) -> i32 {
    let out = Arc::new(FrameWriter {
        pipe,
        turn: tokio::sync::Mutex::new(()),
    });
    let mut decoder = Decoder::default();
    // Open streams: the queue of data for the destination, `None` once the
    // client sent `FIN`.
    let mut streams: HashMap<u32, Option<mpsc::UnboundedSender<Bytes>>> = HashMap::new();
    // One task per stream; each returns its id when both directions are done.
    let mut tasks: JoinSet<u32> = JoinSet::new();
    loop {
        tokio::select! {
            Some(done) = tasks.join_next() => {
                if let Ok(id) = done {
                    streams.remove(&id);
                }
            }
            m = input.recv() => match m {
                Some(BackendInput::Bytes(b)) => {
                    decoder.feed(&b);
                    loop {
                        match decoder.next_frame() {
                            Ok(Some(frame)) => {
                                on_frame(frame, port, &mut streams, &mut tasks, &out, &flags);
                            }
                            Ok(None) => break,
                            Err(e) => {
                                tracing::warn!(port, "port forwarding: bad smux stream from the client: {e}");
                                return 1;
                            }
                        }
                    }
                }
                Some(BackendInput::Resize { .. } | BackendInput::Disconnect) => {}
                Some(BackendInput::Terminate) => {
                    tracing::debug!(port, streams = streams.len(), "port forwarding: TerminateSession");
                    return 0;
                }
                None => return 0,
            },
        }
    }
}

/// Acts on one frame from the client.
fn on_frame(
    frame: Frame,
    port: u16,
    streams: &mut HashMap<u32, Option<mpsc::UnboundedSender<Bytes>>>,
    tasks: &mut JoinSet<u32>,
    out: &Arc<FrameWriter>,
    flags: &Arc<FlagQueue>,
) {
    let id = frame.stream_id;
    match frame.command {
        Command::Syn => {
            if streams.contains_key(&id) {
                tracing::debug!(
                    port,
                    stream_id = id,
                    "port forwarding: SYN for an open stream ignored"
                );
                return;
            }
            let (tx, rx) = mpsc::unbounded_channel();
            streams.insert(id, Some(tx));
            tasks.spawn(relay(id, port, rx, out.clone(), flags.clone()));
        }
        Command::Psh => match streams.get(&id) {
            Some(Some(tx)) => {
                if !frame.data.is_empty() && tx.send(frame.data).is_err() {
                    tracing::debug!(
                        port,
                        stream_id = id,
                        "port forwarding: data for a closed connection dropped"
                    );
                }
            }
            Some(None) => {
                tracing::debug!(
                    port,
                    stream_id = id,
                    "port forwarding: data after FIN ignored"
                );
            }
            None => {
                tracing::debug!(
                    port,
                    stream_id = id,
                    "port forwarding: data for an unknown stream ignored"
                );
            }
        },
        Command::Fin => match streams.get_mut(&id) {
            // Dropping the sender lets the writer finish the queue, then shut
            // down the connection's write half.
            Some(tx) => drop(tx.take()),
            None => {
                tracing::debug!(
                    port,
                    stream_id = id,
                    "port forwarding: FIN for an unknown stream ignored"
                );
            }
        },
        Command::Nop => {}
    }
}

/// One stream: connects to the destination and relays both ways. Returns the
/// stream id once both directions are done.
async fn relay(
    id: u32,
    port: u16,
    mut to_dest: mpsc::UnboundedReceiver<Bytes>,
    out: Arc<FrameWriter>,
    flags: Arc<FlagQueue>,
) -> u32 {
    let tcp = match TcpStream::connect(("127.0.0.1", port)).await {
        Ok(tcp) => tcp,
        Err(e) => {
            tracing::debug!(
                port,
                stream_id = id,
                "port forwarding: cannot connect to the destination: {e}"
            );
            flags.push(Flag::CONNECT_TO_PORT_ERROR.0);
            out.write_frame(&Frame::fin(id)).await;
            return id;
        }
    };
    let _ = tcp.set_nodelay(true);
    let (mut reader, mut writer) = tcp.into_split();
    let upstream = async move {
        while let Some(data) = to_dest.recv().await {
            if let Err(e) = writer.write_all(&data).await {
                tracing::debug!(
                    port,
                    stream_id = id,
                    "port forwarding: write to the destination failed: {e}"
                );
                return;
            }
        }
        let _ = writer.shutdown().await;
    };
    let downstream = async {
        let mut buf = vec![0u8; READ_BUFFER];
        loop {
            match reader.read(&mut buf).await {
                Ok(0) => break,
                Ok(n) => {
                    let mut frames = Vec::with_capacity(n + smux::HEADER_LENGTH);
                    smux::encode_data(id, &buf[..n], smux::DEFAULT_MAX_FRAME_DATA, &mut frames);
                    out.write(&frames).await;
                }
                Err(e) => {
                    tracing::debug!(
                        port,
                        stream_id = id,
                        "port forwarding: read from the destination failed: {e}"
                    );
                    break;
                }
            }
        }
        out.write_frame(&Frame::fin(id)).await;
    };
    tokio::join!(upstream, downstream);
    id
}

/// The agent's basic (single-connection) port forwarding
/// ([`SessionMode::ForwardBasic`](super::SessionMode::ForwardBasic)): the
/// connection is made at start; `DisconnectToPort` or the destination's end
/// closes it, and the next input bytes open a new one.
pub(super) async fn run_basic(
    port: u16,
    pipe: Arc<OutputPipe>,
    mut in_rx: mpsc::UnboundedReceiver<BackendInput>,
) -> i32 {
    let mut conn = match DestConnection::open(port, &pipe).await {
        Ok(c) => Some(c),
        Err(e) => {
            tracing::debug!(
                port,
                "basic port forwarding: cannot connect to the destination: {e}"
            );
            return 1;
        }
    };
    while let Some(m) = in_rx.recv().await {
        match m {
            BackendInput::Bytes(b) => {
                if conn.as_ref().is_none_or(DestConnection::ended) {
                    conn = match DestConnection::open(port, &pipe).await {
                        Ok(c) => Some(c),
                        Err(e) => {
                            tracing::debug!(port, "basic port forwarding: cannot reconnect: {e}");
                            None
                        }
                    };
                }
                if let Some(c) = conn.as_mut()
                    && c.writer.write_all(&b).await.is_err()
                {
                    conn = None;
                }
            }
            BackendInput::Disconnect => {
                tracing::debug!(port, "basic port forwarding: DisconnectToPort");
                if let Some(mut c) = conn.take() {
                    let _ = c.writer.shutdown().await;
                }
            }
            BackendInput::Resize { .. } => {}
            BackendInput::Terminate => return 0,
        }
    }
    0
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::collections::BTreeSet;
    use std::time::Duration;

    use tokio::net::TcpListener;

    use super::*;
    use crate::gateway::backend::{Backend, ExitStatusInfo, PipeRead};

    /// Longest any wait may take before the test fails (a guard against hangs,
    /// not a timing assertion).
    const GUARD: Duration = Duration::from_secs(20);

    async fn guard<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
        match tokio::time::timeout(GUARD, f).await {
            Ok(v) => v,
            Err(_) => panic!("gave up waiting for {what}"),
        }
    }

    /// A TCP server on 127.0.0.1:0 that echoes each connection and closes it
    /// at end of file. Returns the port.
    async fn echo_server() -> u16 {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((mut tcp, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let (mut r, mut w) = tcp.split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                    let _ = w.shutdown().await;
                });
            }
        });
        port
    }

    /// A port nothing listens on.
    async fn closed_port() -> u16 {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        listener.local_addr().unwrap().port()
    }

    /// TerminateSession ends the forwarder with exit code 0.
    async fn ends_with_0_at_terminate(backend: &Backend) {
        backend.send(BackendInput::Terminate);
        let exit = guard("exit", backend.wait_exit()).await;
        assert_eq!(exit, Some(ExitStatusInfo { code: Some(0) }));
    }

    fn encode(frames: &[Frame]) -> Vec<u8> {
        let mut out = Vec::new();
        for f in frames {
            f.encode(&mut out);
        }
        out
    }

    /// Sends `wire` as input cut into pieces of awkward, varying sizes.
    fn feed_split(backend: &Backend, wire: &[u8]) {
        let cuts = [1usize, 7, 3, 8, 13, 2, 9, 5, 1000];
        let mut rest = wire;
        let mut i = 0;
        while !rest.is_empty() {
            let n = cuts[i % cuts.len()].min(rest.len());
            backend.send(BackendInput::Bytes(Bytes::copy_from_slice(&rest[..n])));
            rest = &rest[n..];
            i += 1;
        }
    }

    /// The backend's output, decoded per stream.
    #[derive(Default)]
    struct Seen {
        decoder: Decoder,
        data: HashMap<u32, Vec<u8>>,
        fins: BTreeSet<u32>,
        eof: bool,
    }

    impl Seen {
        /// Reads output until `done` holds.
        async fn until(&mut self, backend: &Backend, what: &str, done: impl Fn(&Seen) -> bool) {
            guard(what, async {
                loop {
                    while let Some(f) = self.decoder.next_frame().unwrap() {
                        match f.command {
                            Command::Psh => {
                                assert!(!self.fins.contains(&f.stream_id), "data after FIN");
                                self.data
                                    .entry(f.stream_id)
                                    .or_default()
                                    .extend_from_slice(&f.data);
                            }
                            Command::Fin => assert!(self.fins.insert(f.stream_id), "second FIN"),
                            c => panic!("unexpected {c:?} from the agent"),
                        }
                    }
                    if done(self) {
                        return;
                    }
                    assert!(!self.eof, "output ended while waiting for {what}");
                    match backend.output.read(64 * 1024) {
                        PipeRead::Data(d) => self.decoder.feed(&d),
                        PipeRead::Empty => backend.output.readable().await,
                        PipeRead::Eof => self.eof = true,
                    }
                }
            })
            .await;
        }

        fn data(&self, id: u32) -> &[u8] {
            self.data.get(&id).map_or(&[], Vec::as_slice)
        }
    }

    #[tokio::test]
    async fn streams_are_relayed_under_their_ids() {
        let port = echo_server().await;
        let backend = Backend::forward(port, 64 * 1024);
        // Stream 5 carries more than one read buffer (and one frame) back.
        let big: Vec<u8> = (0..40_000u32).map(|i| (i % 251) as u8).collect();
        let mut wire = encode(&[
            Frame::syn(3),
            Frame::psh(3, &b"hello"[..]),
            Frame::syn(5),
            Frame {
                command: Command::Nop,
                stream_id: 0,
                data: Bytes::new(),
            },
        ]);
        smux::encode_data(5, &big, 1000, &mut wire);
        // Data for an unknown stream, and a second SYN: ignored.
        wire.extend(encode(&[Frame::psh(9, &b"nobody"[..]), Frame::syn(3)]));
        feed_split(&backend, &wire);

        let mut seen = Seen::default();
        seen.until(&backend, "both echoes", |s| {
            s.data(3).len() >= 5 && s.data(5).len() >= big.len()
        })
        .await;
        assert_eq!(seen.data(3), b"hello");
        assert_eq!(seen.data(5), &big[..]);
        assert!(!seen.data.contains_key(&9));

        // FIN from the client: the echo server sees end of file, closes, and
        // the stream's FIN comes back after the last data.
        feed_split(
            &backend,
            &encode(&[Frame::psh(3, &b" world"[..]), Frame::fin(3)]),
        );
        seen.until(&backend, "FIN of stream 3", |s| s.fins.contains(&3))
            .await;
        assert_eq!(seen.data(3), b"hello world");

        // The other stream, and the session, carry on.
        feed_split(&backend, &encode(&[Frame::psh(5, &b"after"[..])]));
        seen.until(&backend, "more of stream 5", |s| {
            s.data(5).len() == big.len() + 5
        })
        .await;
        assert_eq!(&seen.data(5)[big.len()..], b"after");
        assert!(!seen.fins.contains(&5));
        assert_eq!(backend.exit_status(), None);
        assert!(backend.flags.is_empty());

        ends_with_0_at_terminate(&backend).await;
    }

    #[tokio::test]
    async fn refused_connection_gives_flag_3_and_fin() {
        let port = closed_port().await;
        let backend = Backend::forward(port, 64 * 1024);
        feed_split(
            &backend,
            &encode(&[Frame::syn(7), Frame::psh(7, &b"lost"[..])]),
        );
        guard("flag", backend.flags.pending()).await;
        assert_eq!(backend.flags.pop(), Some(Flag::CONNECT_TO_PORT_ERROR.0));
        assert_eq!(backend.flags.pop(), None);
        let mut seen = Seen::default();
        seen.until(&backend, "FIN of stream 7", |s| s.fins.contains(&7))
            .await;
        assert_eq!(seen.data(7), b"");
        // The session does not end with the stream.
        assert_eq!(backend.exit_status(), None);
        ends_with_0_at_terminate(&backend).await;
    }

    #[tokio::test]
    async fn a_bad_version_byte_ends_the_backend_with_1() {
        let port = echo_server().await;
        let backend = Backend::forward(port, 64 * 1024);
        let mut wire = encode(&[Frame::syn(3)]);
        wire.extend_from_slice(&[2, 0, 0, 0, 3, 0, 0, 0]);
        feed_split(&backend, &wire);
        let exit = guard("exit", backend.wait_exit()).await;
        assert_eq!(exit, Some(ExitStatusInfo { code: Some(1) }));
        assert!(backend.output.is_closed());
    }

    #[tokio::test]
    async fn terminate_ends_the_backend_with_0() {
        let port = echo_server().await;
        let backend = Backend::forward(port, 64 * 1024);
        feed_split(&backend, &encode(&[Frame::syn(3)]));
        ends_with_0_at_terminate(&backend).await;
        assert!(backend.output.is_closed());
    }

    #[tokio::test]
    async fn flag_queue_wakes_and_keeps_order() {
        let q = FlagQueue::new();
        q.push(3);
        q.push(1);
        guard("pending", q.pending()).await;
        assert_eq!(q.len(), 2);
        assert_eq!(q.pop(), Some(3));
        q.put_back(3);
        assert_eq!(q.pop(), Some(3));
        assert_eq!(q.pop(), Some(1));
        assert!(q.is_empty());
    }
}

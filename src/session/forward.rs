//! Local port forwarding over a `Port` session, what
//! `AWS-StartPortForwardingSession` (and `...ToRemoteHost`) start: a local
//! listener whose every connection becomes one smux stream inside the
//! session; the agent opens a connection to the destination for each.
//!
//! The smux byte stream (version 1, [`ssm_channel::smux`]) is the
//! concatenation of the session's input payloads one way and its output
//! payloads the other. Stream ids are odd from 3, as the official plugin's
//! smux client numbers them. No smux keep-alives are sent (the plugin turns
//! them off too: they would defeat the service's idle timeout).
//!
//! Data from the agent waits for its local connection in a buffer of at most
//! [`STREAM_BUFFER`] bytes per stream. smux v1 has no flow control of its
//! own: when a local connection does not read and its buffer is full, the
//! whole session stops reading (as the official plugin's smux does once its
//! receive buffer is full), so the agent stops sending instead of the memory
//! growing.
//!
//! Agents up to 3.0.196.0 only offer the older basic mode, which [`run`] then
//! uses as the official plugin does: one local connection at a time, its
//! bytes carried as they are; when it closes, the `DisconnectToPort` flag
//! tells the agent to close its connection to the destination, and the next
//! local connection is accepted. Output that arrives while no local
//! connection is open waits for the next one (up to [`STREAM_BUFFER`] bytes;
//! beyond that the session is not read until a connection comes).
//!
//! ```no_run
//! # async fn demo(session: cloudshell_rs::session::Session) -> Result<(), Box<dyn std::error::Error>> {
//! use cloudshell_rs::session::forward::{self, ForwardNotice, LocalListener};
//! let listener = LocalListener::Tcp(tokio::net::TcpListener::bind("127.0.0.1:0").await?);
//! forward::run(session, listener, |notice| {
//!     if let ForwardNotice::DestinationUnreachable = notice {
//!         eprintln!("the destination port could not be reached");
//!     }
//! })
//! .await?;
//! # Ok(()) }
//! ```

use super::{Session, SessionError, SessionEvent, SessionReader, SessionWriter};
use bytes::Bytes;
use ssm_channel::smux::{self, Command, Decoder, Frame};
use ssm_channel::version::{MULTIPLEX_AFTER, TERMINATE_FLAG_AFTER, agent_version_after};
use std::collections::HashMap;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};

/// The flag an agent sends when it cannot connect to the destination.
pub const CONNECT_TO_PORT_ERROR: u32 = 3;

/// The flag the client sends in basic mode when its local connection closed.
pub const DISCONNECT_TO_PORT: u32 = 1;

/// Bytes read from a local connection at a time (one smux frame each).
const READ_CHUNK: usize = 16 * 1024;

/// Most bytes from the agent waiting for one local connection to take them
/// (the size of the official plugin's smux receive buffer).
pub const STREAM_BUFFER: usize = 4 * 1024 * 1024;

/// Where local connections are accepted.
#[derive(Debug)]
pub enum LocalListener {
    /// A TCP listener (the default: `localPortNumber`).
    Tcp(tokio::net::TcpListener),
    /// A Unix socket (`localConnectionType` = `unix`, `localUnixSocket`).
    #[cfg(unix)]
    Unix(tokio::net::UnixListener),
}

type BoxRead = Box<dyn AsyncRead + Send + Unpin>;
type BoxWrite = Box<dyn AsyncWrite + Send + Unpin>;

impl LocalListener {
    async fn accept(&self) -> std::io::Result<(BoxRead, BoxWrite, String)> {
        match self {
            LocalListener::Tcp(l) => {
                let (s, peer) = l.accept().await?;
                let _ = s.set_nodelay(true);
                let (r, w) = s.into_split();
                Ok((Box::new(r), Box::new(w), peer.to_string()))
            }
            #[cfg(unix)]
            LocalListener::Unix(l) => {
                let (s, _) = l.accept().await?;
                let (r, w) = s.into_split();
                Ok((Box::new(r), Box::new(w), "unix socket".to_string()))
            }
        }
    }
}

/// What happened while forwarding, for the caller to show.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ForwardNotice {
    /// A local connection was accepted (its peer address).
    Accepted(String),
    /// The agent could not connect to the destination for a connection
    /// (flag `ConnectToPortError`); that connection is closed, the session
    /// goes on.
    DestinationUnreachable,
    /// The service closed the session, saying why (forwarding then ends
    /// with `Ok`).
    Closed(String),
}

/// Why forwarding stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ForwardError {
    /// Accepting local connections failed.
    #[error("accepting local connections failed")]
    Accept(#[source] std::io::Error),
    /// The agent sent something that is not smux version 1.
    #[error("the agent's port-forwarding stream is damaged")]
    Smux(#[source] smux::SmuxError),
    /// The session failed.
    #[error(transparent)]
    Session(#[from] SessionError),
}

/// Whether an agent of this version multiplexes: strictly after 3.0.196.0,
/// compared part by part as numbers (a version that does not parse does).
pub fn agent_multiplexes(agent_version: &str) -> bool {
    agent_version_after(agent_version, MULTIPLEX_AFTER).unwrap_or(true)
}

/// Whether an agent of this version ends a session at the `TerminateSession`
/// flag: strictly after 2.3.722.0 (a version that does not parse does).
/// Older agents ignore it; the official plugin then calls the
/// `ssm:TerminateSession` API instead.
pub fn agent_takes_terminate_flag(agent_version: &str) -> bool {
    agent_version_after(agent_version, TERMINATE_FLAG_AFTER).unwrap_or(true)
}

/// Whether the agent of `session` ends it at the `TerminateSession` flag
/// (after 2.3.722.0, or it did not say).
pub fn takes_terminate_flag(session: &Session) -> bool {
    session
        .agent_version()
        .is_none_or(agent_takes_terminate_flag)
}

/// Whether `session` forwards with smux: its agent is after 3.0.196.0 (or
/// did not say). Otherwise [`run`] uses basic mode.
pub fn multiplexed(session: &Session) -> bool {
    session.agent_version().is_none_or(agent_multiplexes)
}

/// Forwards connections accepted on `listener` through `session` until the
/// session ends (`Ok`) or fails. Each accepted connection is one smux stream
/// ([`multiplexed`] sessions) or has the session to itself (basic mode);
/// closing it locally sends `FIN` (`DisconnectToPort`), and the agent's
/// `FIN` shuts down the writing side of the local connection.
pub async fn run(
    session: Session,
    listener: LocalListener,
    notice: impl FnMut(ForwardNotice) + Send,
) -> Result<(), ForwardError> {
    let mux = multiplexed(&session);
    let (writer, reader) = session.into_split();
    let result = if mux {
        run_mux(&writer, reader, &listener, notice).await
    } else {
        run_basic(&writer, reader, &listener, notice).await
    };
    if result.is_err() {
        let _ = writer.close().await;
    }
    result
}

/// What a session event means to a forwarder.
enum Step {
    /// Output from the agent.
    Output(Bytes),
    /// The session is over.
    End(Result<(), ForwardError>),
    /// Nothing to do (a notice may have been given).
    Nothing,
}

fn step(event: Option<SessionEvent>, notice: &mut impl FnMut(ForwardNotice)) -> Step {
    match event {
        Some(SessionEvent::Output(b)) => Step::Output(b),
        Some(SessionEvent::Flag(CONNECT_TO_PORT_ERROR)) => {
            notice(ForwardNotice::DestinationUnreachable);
            Step::Nothing
        }
        Some(SessionEvent::Closed { reason }) => {
            if let Some(r) = reason {
                notice(ForwardNotice::Closed(r));
            }
            Step::End(Ok(()))
        }
        None => Step::End(Ok(())),
        Some(SessionEvent::Failed(e)) => Step::End(Err(e.into())),
        Some(_) => Step::Nothing,
    }
}

/// smux mode: every accepted connection is a stream of its own.
async fn run_mux(
    writer: &SessionWriter,
    mut reader: SessionReader,
    listener: &LocalListener,
    mut notice: impl FnMut(ForwardNotice) + Send,
) -> Result<(), ForwardError> {
    let mut decoder = Decoder::default();
    let mut streams = Streams::new(STREAM_BUFFER);
    let mut next_id = smux::FIRST_CLIENT_STREAM_ID;
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (rd, wr, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) if is_transient(&e) => continue,
                    Err(e) => return Err(ForwardError::Accept(e)),
                };
                let id = next_id;
                next_id = next_id.wrapping_add(2);
                writer.send_input(&Frame::syn(id).to_vec()).await?;
                notice(ForwardNotice::Accepted(peer));
                streams.open(id, wr);
                tokio::spawn(local_to_agent(id, rd, writer.clone()));
            }
            event = reader.next_event() => match step(event, &mut notice) {
                Step::Output(b) => {
                    decoder.feed(&b);
                    streams.route(&mut decoder).await.map_err(ForwardError::Smux)?;
                }
                Step::End(r) => return r,
                Step::Nothing => {}
            }
        }
    }
}

/// Basic mode (agents up to 3.0.196.0): one local connection at a time, no
/// multiplexing.
async fn run_basic(
    writer: &SessionWriter,
    mut reader: SessionReader,
    listener: &LocalListener,
    mut notice: impl FnMut(ForwardNotice) + Send,
) -> Result<(), ForwardError> {
    // Output received while no local connection is open.
    let mut waiting: Vec<u8> = Vec::new();
    loop {
        let (rd, mut wr, peer) = loop {
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(a) => break a,
                    Err(e) if is_transient(&e) => continue,
                    Err(e) => return Err(ForwardError::Accept(e)),
                },
                event = reader.next_event(), if waiting.len() < STREAM_BUFFER => {
                    match step(event, &mut notice) {
                        Step::Output(b) => waiting.extend_from_slice(&b),
                        Step::End(r) => return r,
                        Step::Nothing => {}
                    }
                }
            }
        };
        notice(ForwardNotice::Accepted(peer));
        // Local → agent in a task of its own, so that output keeps being
        // read (and acknowledged) while input waits for the send window.
        let (done_tx, mut done) = tokio::sync::oneshot::channel();
        let pump = tokio::spawn(basic_local_to_agent(rd, writer.clone(), done_tx));
        let mut local_open = wr.write_all(&waiting).await.is_ok();
        waiting.clear();
        let ended = loop {
            tokio::select! {
                // The local side closed (its task sent DisconnectToPort).
                _ = &mut done => break None,
                event = reader.next_event() => match step(event, &mut notice) {
                    Step::Output(b) => {
                        if local_open && wr.write_all(&b).await.is_err() {
                            // Nobody takes it any more; the reading side
                            // ends the connection.
                            local_open = false;
                        }
                    }
                    Step::End(r) => break Some(r),
                    Step::Nothing => {}
                },
            }
        };
        if let Some(r) = ended {
            pump.abort();
            let _ = wr.shutdown().await;
            return r;
        }
    }
}

/// Basic mode: the local connection's bytes as input until it closes, then
/// `DisconnectToPort`.
async fn basic_local_to_agent(
    mut rd: BoxRead,
    writer: SessionWriter,
    done: tokio::sync::oneshot::Sender<()>,
) {
    let mut buf = vec![0u8; READ_CHUNK];
    loop {
        match rd.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if writer.send_input(&buf[..n]).await.is_err() {
                    return;
                }
            }
        }
    }
    if writer.send_flag(DISCONNECT_TO_PORT).await.is_ok() {
        let _ = done.send(());
    }
}

/// The open streams: where data from the agent goes, and how much of it
/// each may have waiting.
struct Streams {
    senders: HashMap<u32, StreamTx>,
    buffer: usize,
}

struct StreamTx {
    tx: mpsc::UnboundedSender<(Bytes, OwnedSemaphorePermit)>,
    /// Bytes this stream may still have waiting (one permit per byte).
    room: Arc<Semaphore>,
}

impl Streams {
    fn new(buffer: usize) -> Self {
        Streams {
            senders: HashMap::new(),
            buffer: buffer.clamp(1, Semaphore::MAX_PERMITS),
        }
    }

    /// A new stream whose data is written to `wr` by a task of its own.
    fn open(&mut self, id: u32, wr: BoxWrite) {
        let (tx, rx) = mpsc::unbounded_channel();
        let room = Arc::new(Semaphore::new(self.buffer));
        self.senders.insert(id, StreamTx { tx, room });
        tokio::spawn(agent_to_local(rx, wr));
    }

    /// Hands the complete frames received so far to their streams, waiting
    /// while a stream's buffer is full.
    async fn route(&mut self, decoder: &mut Decoder) -> Result<(), smux::SmuxError> {
        while let Some(frame) = decoder.next_frame()? {
            match frame.command {
                Command::Psh => {
                    let Some(s) = self.senders.get(&frame.stream_id) else {
                        continue;
                    };
                    let want = frame.data.len().clamp(1, self.buffer);
                    // `want` is at most `buffer`, which fits in u32.
                    let want = u32::try_from(want).unwrap_or(u32::MAX);
                    let delivered = match s.room.clone().acquire_many_owned(want).await {
                        Ok(permit) => s.tx.send((frame.data, permit)).is_ok(),
                        Err(_) => false,
                    };
                    if !delivered {
                        // The local side is gone: drop what it can no longer take.
                        self.senders.remove(&frame.stream_id);
                    }
                }
                // Dropping the sender ends the writer task after what is queued.
                Command::Fin => {
                    self.senders.remove(&frame.stream_id);
                }
                // The agent opens no streams and sends no keep-alives that matter.
                Command::Syn | Command::Nop => {}
            }
        }
        Ok(())
    }
}

/// Local connection → `PSH` frames, then `FIN`. Each frame goes into the
/// session's input queue whole, so frames of different streams never mix.
async fn local_to_agent(id: u32, mut rd: BoxRead, writer: SessionWriter) {
    let mut buf = vec![0u8; READ_CHUNK];
    let mut frame = Vec::with_capacity(smux::HEADER_LENGTH + READ_CHUNK);
    loop {
        match rd.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                frame.clear();
                smux::encode_data(id, &buf[..n], READ_CHUNK, &mut frame);
                if writer.send_input(&frame).await.is_err() {
                    return;
                }
            }
        }
    }
    let _ = writer.send_input(&Frame::fin(id).to_vec()).await;
}

/// Data from the agent → the local connection; its end shuts down the
/// connection's writing side.
async fn agent_to_local(
    mut rx: mpsc::UnboundedReceiver<(Bytes, OwnedSemaphorePermit)>,
    mut wr: BoxWrite,
) {
    // Each permit goes back (room in the buffer) once its bytes are written.
    while let Some((b, _room)) = rx.recv().await {
        if wr.write_all(&b).await.is_err() {
            return;
        }
    }
    let _ = wr.shutdown().await;
}

/// Accept errors that concern one connection, not the listener.
fn is_transient(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        ConnectionAborted | ConnectionReset | Interrupted | WouldBlock
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Frames for stream 3 carrying `data` in `chunk`-byte pieces.
    fn decoder_with(data: &[u8], chunk: usize) -> Decoder {
        let mut wire = Vec::new();
        smux::encode_data(3, data, chunk, &mut wire);
        let mut d = Decoder::default();
        d.feed(&wire);
        d
    }

    #[tokio::test]
    async fn a_local_connection_that_does_not_read_holds_the_session_back_at_its_buffer() {
        let data: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        let mut decoder = decoder_with(&data, 1000);
        let mut streams = Streams::new(4096);
        // The local connection takes 1 KiB and is then not read.
        let (local, mut peer) = tokio::io::duplex(1024);
        streams.open(3, Box::new(local));
        let room = streams.senders[&3].room.clone();
        {
            let route = streams.route(&mut decoder);
            tokio::pin!(route);
            tokio::select! {
                biased;
                r = &mut route => panic!("all 10,000 bytes taken with 5 KiB of room: {r:?}"),
                _ = async { for _ in 0..200 { tokio::task::yield_now().await } } => {}
            }
            assert_eq!(room.available_permits(), 0, "the buffer is full");
            // Reading the local side lets the rest through, in order.
            let mut got = Vec::new();
            let (r, read) = tokio::join!(route, async {
                let mut buf = vec![0u8; 4096];
                while got.len() < data.len() {
                    let n = peer.read(&mut buf).await.expect("read the local side");
                    assert!(n > 0, "ended early at {}", got.len());
                    got.extend_from_slice(&buf[..n]);
                }
                got
            });
            r.expect("valid smux frames");
            assert_eq!(read, data);
        }
        assert_eq!(room.available_permits(), 4096, "all room given back");
    }

    #[tokio::test]
    async fn a_stream_whose_local_side_is_gone_no_longer_holds_the_session() {
        let data = vec![7u8; 20_000];
        let mut decoder = decoder_with(&data, 1000);
        let mut streams = Streams::new(2048);
        let (local, peer) = tokio::io::duplex(512);
        streams.open(3, Box::new(local));
        drop(peer);
        streams
            .route(&mut decoder)
            .await
            .expect("valid smux frames");
        assert!(!streams.senders.contains_key(&3), "the stream is dropped");
    }

    #[test]
    fn multiplexing_starts_after_3_0_196_0() {
        assert!(!agent_multiplexes("3.0.196.0"));
        assert!(!agent_multiplexes("2.3.722.0"));
        assert!(agent_multiplexes("3.0.196.1"));
        assert!(agent_multiplexes("3.3.1142.0"));
        assert!(agent_multiplexes("10.0.0.0"));
        // Not comparable: the plugin then assumes a current agent.
        assert!(agent_multiplexes("3.1"));
        assert!(agent_multiplexes("latest"));
    }

    #[test]
    fn the_terminate_flag_is_taken_after_2_3_722_0() {
        assert!(!agent_takes_terminate_flag("2.3.722.0"));
        assert!(!agent_takes_terminate_flag("2.3.68.0"));
        assert!(agent_takes_terminate_flag("2.3.723.0"));
        assert!(agent_takes_terminate_flag("3.0.196.0"));
        assert!(agent_takes_terminate_flag("latest"));
    }
}

//! The connection driver: one task owning the protocol channel, the WebSocket
//! and the timers.

use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::{FutureExt as _, SinkExt as _, StreamExt as _};
use ssm_channel::{Channel, ChannelConfig, Event, Frame, Token, Transmit};
use tokio::sync::{mpsc, oneshot};
use tokio::time::{Instant, sleep_until};
use tokio_tungstenite::tungstenite::Message;

use super::kms::{DataKey, DataKeyRequest, KmsError};
use super::ws::{self, Ws};
use super::{
    BoxError, CtlCmd, InputCmd, ReadyInfo, SessionError, SessionEvent, SessionOptions,
    SessionTarget, url,
};

/// The Session Manager client version this implementation speaks: reported
/// to the agent in the open-data-channel frame (four dotted numbers, see the
/// protocol reference), and by `session-manager-plugin --version`, where the
/// AWS CLI reads it to decide how to pass the session (after 1.2.497.0: in
/// an environment variable, so that the token is not on the command line).
pub const CLIENT_VERSION: &str = "1.2.677.0";

/// Most frames read in one go before transmits (acknowledgements) are written.
const READ_BATCH: usize = 128;

/// Most bytes of frames read in one go (bounds what a burst buffers).
const READ_BATCH_BYTES: usize = 256 * 1024;

/// Acknowledgements wait in the socket's write buffer at most this long, so a
/// stream of output costs one write per millisecond instead of one per burst
/// (on loopback each write also wakes the peer). Anything else (input,
/// resize, handshake) is written at once and takes waiting acks with it.
const ACK_DELAY: Duration = Duration::from_millis(1);

/// Waiting acknowledgements are written once there are this many.
const ACK_FLUSH_FRAMES: usize = 128;

/// ... or once they acknowledge this many bytes received: a quarter of the
/// sender's window (256 KiB for the agent), which must not run dry while
/// acknowledgements wait.
const ACK_FLUSH_BYTES: usize = 64 * 1024;

/// While output streams in, the socket is read at most once per this period:
/// a fast reader would otherwise wake for every TCP segment and spend more
/// on wake-ups than on the data. Keystroke echoes and other sparse output are
/// read at once (see [`STREAM_GAP`]), and so is a burst that was already large
/// ([`NO_PAUSE_BURST`]): the pause is for trickles, not for full pipes.
const READ_COALESCE: Duration = Duration::from_millis(1);

/// Output counts as streaming when a burst of at least [`STREAM_BURST`] bytes
/// follows the previous burst within this gap.
const STREAM_GAP: Duration = Duration::from_millis(2);

/// See [`STREAM_GAP`].
const STREAM_BURST: usize = 1024;

/// A burst this large was worth its wake-up: read on without a pause.
const NO_PAUSE_BURST: usize = 32 * 1024;

/// Capacity of the input command queue (each entry is one `send_input` call).
const INPUT_QUEUE: usize = 16;

/// Output waiting for the consumer is merged into events of at most this size,
/// so a burst of small messages costs one wake-up and one write downstream.
const COALESCE_MAX: usize = 64 * 1024;

/// Output at least this large is handed on as it came (no copy).
const ZERO_COPY_MIN: usize = 8 * 1024;

/// While output streams in (reads paused for [`READ_COALESCE`]), the socket
/// wakes the driver only once this much is queued (`SO_RCVLOWAT`); the pause
/// ends on time either way.
const STREAM_LOW_WATER: usize = 64 * 1024;

/// Least first capacity of a merged output event; it starts as large as the
/// previous one grew (up to [`COALESCE_MAX`]), so streaming output is not
/// copied again at every doubling of its buffer.
const COALESCE_START: usize = 4 * 1024;

/// An event waiting for room in the event queue.
enum Pending {
    Event(SessionEvent),
    /// Several outputs merged into one.
    Output(BytesMut),
}

impl Pending {
    fn into_event(self) -> SessionEvent {
        match self {
            Pending::Event(ev) => ev,
            Pending::Output(b) => SessionEvent::Output(b.freeze()),
        }
    }
}

type Handles = (mpsc::Sender<InputCmd>, mpsc::UnboundedSender<CtlCmd>);
type KmsFuture = Pin<Box<dyn Future<Output = Result<DataKey, KmsError>> + Send>>;

/// Real sources for the sans-IO channel: OS randomness and the system clock.
struct OsIds;

impl ssm_channel::IdSource for OsIds {
    fn next_id(&mut self) -> uuid::Uuid {
        // From the thread's CSPRNG: `Uuid::new_v4` would make one getrandom(2)
        // system call per acknowledgement.
        uuid::Builder::from_random_bytes(rand::random()).into_uuid()
    }
    fn fill_random(&mut self, buf: &mut [u8]) {
        rand::RngCore::fill_bytes(&mut rand::rng(), buf);
    }
}

struct SystemClock;

impl ssm_channel::WallClock for SystemClock {
    fn now_millis(&mut self) -> u64 {
        let ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(1);
        ms.max(1)
    }
}

fn new_channel() -> Channel {
    Channel::new(ChannelConfig::client(
        CLIENT_VERSION,
        Box::new(OsIds),
        Box::new(SystemClock),
    ))
}

/// Checks `stream_url` against the options' host policy, then opens its
/// WebSocket (through the options' proxy, if any).
async fn dial(stream_url: &str, options: &SessionOptions) -> Result<ws::Ws, SessionError> {
    let checked = url::check_stream_url(
        stream_url,
        options.host_policy,
        options.expected_region.as_deref(),
    )?;
    ws::open(
        stream_url,
        &checked.host,
        options.connect_timeout,
        &options.proxy,
    )
    .await
}

fn now() -> std::time::Instant {
    Instant::now().into_std()
}

/// Checks the URL, opens the socket, starts the driver and waits until the
/// session is ready.
pub(crate) async fn start(
    target: SessionTarget,
    mut options: SessionOptions,
) -> Result<(Handles, mpsc::Receiver<SessionEvent>, ReadyInfo), SessionError> {
    if options.dead_peer_timeout < options.ping_interval * 2 {
        options.dead_peer_timeout = options.ping_interval * 2;
    }
    let ws = dial(&target.stream_url, &options).await?;
    let (input_tx, input_rx) = mpsc::channel(INPUT_QUEUE);
    let (ctl_tx, ctl_rx) = mpsc::unbounded_channel();
    let (ev_tx, ev_rx) = mpsc::channel(options.event_queue.max(1));
    let (ready_tx, ready_rx) = oneshot::channel();
    let client_id = options.client_id.unwrap_or_else(uuid::Uuid::new_v4);
    let ready_timeout = options.ready_timeout;
    let mut driver = Driver {
        channel: new_channel(),
        ws: Some(ws),
        target,
        client_id,
        options,
        input_rx,
        ctl_rx,
        ev_tx,
        ready_tx: Some(ready_tx),
        ready: false,
        pending_input: VecDeque::new(),
        pending_flag: None,
        flush_waiters: Vec::new(),
        out_events: VecDeque::new(),
        last_merged: 0,
        low_water_raised: false,
        last_rx: Instant::now(),
        last_size: None,
        kms: None,
        input_closed: false,
        ctl_closed: false,
        reattach: None,
        reattach_deadline: None,
        resuming: None,
        closing: None,
        unflushed: 0,
        flush_at: None,
        unflushed_rx: 0,
        last_burst_at: None,
        read_paused_until: None,
        ended: false,
    };
    driver.open_channel();
    tokio::spawn(driver.run());
    match tokio::time::timeout(ready_timeout, ready_rx).await {
        Err(_) => Err(SessionError::NotReady(ready_timeout)),
        Ok(Err(_)) => Err(SessionError::Closed),
        Ok(Ok(Err(e))) => Err(e),
        Ok(Ok(Ok(info))) => Ok(((input_tx, ctl_tx), ev_rx, info)),
    }
}

/// A long-lived timer re-armed only when its deadline moves: creating a timer
/// per loop turn would cost a timer-wheel registration per frame.
struct Deadline {
    sleep: Pin<Box<tokio::time::Sleep>>,
    at: Option<Instant>,
}

impl Deadline {
    fn new() -> Self {
        Self {
            sleep: Box::pin(sleep_until(Instant::now())),
            at: None,
        }
    }

    /// Arms the timer for `at` (`None`: disarmed); a no-op when unchanged.
    fn set(&mut self, at: Option<Instant>) {
        if at != self.at {
            if let Some(t) = at {
                self.sleep.as_mut().reset(t);
            }
            self.at = at;
        }
    }

    /// Forgets the deadline, so that the next [`set`](Self::set) re-arms it
    /// even for the same instant (after it fired).
    fn disarm(&mut self) {
        self.at = None;
    }

    fn is_armed(&self) -> bool {
        self.at.is_some()
    }

    /// Completes at the deadline (poll only while armed).
    fn sleep(&mut self) -> &mut Pin<Box<tokio::time::Sleep>> {
        &mut self.sleep
    }
}

/// What woke the driver loop.
enum Wake {
    Nothing,
    EventsClosed,
    Ctl(Option<CtlCmd>),
    Kms(Result<DataKey, KmsError>),
    Socket(Option<Result<Message, tokio_tungstenite::tungstenite::Error>>),
    Input(Option<InputCmd>),
    Timer,
    FlushAcks,
    ReadAgain,
    Dead,
    Ping,
    NotReady,
}

/// Why the socket is no longer usable.
enum Disconnect {
    /// The peer went away or the socket failed.
    Lost(SessionError),
}

struct Driver {
    channel: Channel,
    ws: Option<Ws>,
    target: SessionTarget,
    client_id: uuid::Uuid,
    options: SessionOptions,
    input_rx: mpsc::Receiver<InputCmd>,
    ctl_rx: mpsc::UnboundedReceiver<CtlCmd>,
    ev_tx: mpsc::Sender<SessionEvent>,
    ready_tx: Option<oneshot::Sender<Result<ReadyInfo, SessionError>>>,
    /// The current channel knows its session type; input may flow.
    ready: bool,
    /// Input not yet accepted by the channel (replayed input first).
    pending_input: VecDeque<Bytes>,
    /// A flag from the input queue (`TerminateSession`, `DisconnectToPort`),
    /// sent in sequence after `pending_input`: the agent acts on it last.
    pending_flag: Option<u32>,
    flush_waiters: Vec<oneshot::Sender<()>>,
    out_events: VecDeque<Pending>,
    /// Size the most recent merged output event reached.
    last_merged: usize,
    last_rx: Instant,
    last_size: Option<(u16, u16)>,
    kms: Option<KmsFuture>,
    input_closed: bool,
    ctl_closed: bool,
    /// After a reconnect: bytes replayed, reported once the new channel is ready.
    reattach: Option<usize>,
    /// After a reconnect: the new channel must be ready by then.
    reattach_deadline: Option<Instant>,
    /// The same session was re-dialled (sequence state kept): unacknowledged
    /// input bytes resent, reported once the first frame comes back.
    resuming: Option<usize>,
    /// A close requested by the caller: reply once done.
    closing: Option<oneshot::Sender<()>>,
    /// Frames in the socket's write buffer, not flushed yet (acknowledgements).
    unflushed: usize,
    /// When the waiting acknowledgements must be flushed.
    flush_at: Option<Instant>,
    /// Bytes received since acknowledgements were last written.
    unflushed_rx: usize,
    /// When the previous burst of frames was read.
    last_burst_at: Option<Instant>,
    /// Output is streaming: the socket is read again at this time.
    read_paused_until: Option<Instant>,
    /// The session is over (closed or failed); stop after delivering events.
    ended: bool,
    /// The socket's `SO_RCVLOWAT` is [`STREAM_LOW_WATER`] (output streaming).
    low_water_raised: bool,
}

impl Driver {
    /// Queues the open-data-channel frame for the current target.
    fn open_channel(&mut self) {
        let token = Token::new(self.target.token.expose());
        // A fresh channel always accepts `open`.
        if let Err(e) = self
            .channel
            .open(now(), token, self.client_id, uuid::Uuid::new_v4())
        {
            self.fail(SessionError::Protocol(e));
        }
        self.last_rx = Instant::now();
    }

    async fn run(mut self) {
        let mut ping = tokio::time::interval_at(
            Instant::now() + self.options.ping_interval,
            self.options.ping_interval,
        );
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut timer = Deadline::new();
        let mut dead = Box::pin(sleep_until(self.last_rx + self.options.dead_peer_timeout));
        let mut ack_timer = Deadline::new();
        let mut read_timer = Deadline::new();
        // The reference client pings right after the connection opens.
        self.send_ping().await;
        loop {
            if let Err(d) = self.step().await
                && let Err(e) = self.handle_disconnect(d).await
            {
                self.fail(e);
            }
            if self.ended {
                break;
            }
            let timeout = self.channel.poll_timeout().map(Instant::from_std);
            timer.set(timeout);
            read_timer.set(self.read_paused_until);
            ack_timer.set(self.flush_at);
            let connected = self.ws.is_some();
            let want_input = self.ready
                && self.pending_input.is_empty()
                && self.pending_flag.is_none()
                && !self.input_closed
                && connected;
            let has_events = !self.out_events.is_empty();
            let read_socket = !has_events && connected && !read_timer.is_armed();
            let ctl_open = !self.ctl_closed;
            let reattach_deadline = self.reattach_deadline;
            let wake = {
                let ws = &mut self.ws;
                let kms = &mut self.kms;
                let ctl_rx = &mut self.ctl_rx;
                let input_rx = &mut self.input_rx;
                let ev_tx = &self.ev_tx;
                let out_events = &mut self.out_events;
                tokio::select! {
                    biased;
                    cmd = ctl_rx.recv(), if ctl_open => Wake::Ctl(cmd),
                    permit = ev_tx.reserve(), if has_events => match permit {
                        Ok(p) => {
                            if let Some(ev) = out_events.pop_front() {
                                p.send(ev.into_event());
                            }
                            Wake::Nothing
                        }
                        Err(_) => Wake::EventsClosed,
                    },
                    res = async {
                        match kms.as_mut() {
                            Some(f) => f.await,
                            None => std::future::pending().await,
                        }
                    } => Wake::Kms(res),
                    msg = async {
                        match ws.as_mut() {
                            Some(w) => w.next().await,
                            None => std::future::pending().await,
                        }
                    }, if read_socket => Wake::Socket(msg),
                    cmd = input_rx.recv(), if want_input => Wake::Input(cmd),
                    _ = timer.sleep(), if timer.is_armed() => Wake::Timer,
                    _ = ack_timer.sleep(), if ack_timer.is_armed() => Wake::FlushAcks,
                    _ = read_timer.sleep(), if read_timer.is_armed() => Wake::ReadAgain,
                    _ = &mut dead, if connected => Wake::Dead,
                    _ = sleep_until(reattach_deadline.unwrap_or_else(Instant::now)), if reattach_deadline.is_some() => Wake::NotReady,
                    _ = ping.tick(), if connected => Wake::Ping,
                }
            };
            match wake {
                Wake::Nothing => {}
                Wake::EventsClosed => self.ended = true,
                Wake::Ctl(None) => self.ctl_closed = true,
                Wake::Ctl(Some(CtlCmd::Resize(c, r))) => {
                    self.last_size = Some((c, r));
                    if self.ready {
                        self.resize(c, r);
                    }
                }
                Wake::Ctl(Some(CtlCmd::Close(done))) => {
                    self.closing = Some(done);
                    self.channel.close(now());
                    self.end(SessionEvent::Closed {
                        reason: Some("closed by the client".into()),
                    });
                }
                Wake::Kms(res) => {
                    self.kms = None;
                    match res {
                        Ok(key) => {
                            if let Err(e) = self.channel.provide_data_key(
                                now(),
                                &key.plaintext,
                                &key.ciphertext_blob,
                            ) {
                                self.fail(SessionError::Protocol(e));
                            }
                        }
                        Err(e) => {
                            let _ = self.channel.reject_data_key(now(), &e.to_string());
                            self.fail(SessionError::Kms(e));
                        }
                    }
                }
                Wake::Socket(msg) => {
                    // One clock reading for the whole burst.
                    let at = Instant::now();
                    let mut bytes = frame_len(&msg);
                    let mut res = self.on_socket(msg, at);
                    self.drain_events();
                    // Take whatever else is already readable before writing the
                    // acknowledgements: one write for a burst instead of one per frame.
                    let mut batch = 1;
                    while res.is_ok()
                        && batch < READ_BATCH
                        && bytes < READ_BATCH_BYTES
                        && self.out_events.len() < READ_BATCH
                        && !self.channel.is_closed()
                    {
                        let Some(ws) = self.ws.as_mut() else { break };
                        let Some(msg) = ws.next().now_or_never() else {
                            break;
                        };
                        bytes += frame_len(&msg);
                        res = self.on_socket(msg, at);
                        // Copies this frame's output out now, so the socket's
                        // read buffer is free again for the next read.
                        self.drain_events();
                        batch += 1;
                    }
                    let streaming = (STREAM_BURST..NO_PAUSE_BURST).contains(&bytes)
                        && self
                            .last_burst_at
                            .is_some_and(|t| at.duration_since(t) < STREAM_GAP);
                    self.last_burst_at = Some(at);
                    self.unflushed_rx += bytes;
                    if streaming && res.is_ok() && self.ws.is_some() {
                        self.read_paused_until = Some(at + READ_COALESCE);
                        if !self.low_water_raised
                            && let Some(ws) = self.ws.as_ref()
                        {
                            self.low_water_raised = ws::set_read_low_water(ws, STREAM_LOW_WATER);
                        }
                    }
                    if let Err(d) = res
                        && let Err(e) = self.handle_disconnect(d).await
                    {
                        self.fail(e);
                    }
                }
                Wake::ReadAgain => {
                    read_timer.disarm();
                    self.read_paused_until = None;
                    self.lower_read_low_water();
                }
                Wake::Input(None) => self.input_closed = true,
                Wake::Input(Some(InputCmd::Data(b))) => self.pending_input.push_back(b),
                Wake::Input(Some(InputCmd::Flush(w))) => self.flush_waiters.push(w),
                Wake::Input(Some(InputCmd::Flag(f))) => self.pending_flag = Some(f),
                Wake::FlushAcks => {
                    ack_timer.disarm();
                    if let Err(d) = self.flush_socket().await
                        && let Err(e) = self.handle_disconnect(d).await
                    {
                        self.fail(e);
                    }
                }
                Wake::Timer => {
                    // Re-armed on the next turn, even for the same deadline.
                    timer.disarm();
                    self.channel.handle_timeout(now());
                }
                Wake::Dead if Instant::now() < self.last_rx + self.options.dead_peer_timeout => {
                    // Something arrived since the timer was armed.
                    dead.as_mut()
                        .reset(self.last_rx + self.options.dead_peer_timeout);
                }
                Wake::Dead => {
                    let d =
                        Disconnect::Lost(SessionError::PeerDead(self.options.dead_peer_timeout));
                    if let Err(e) = self.handle_disconnect(d).await {
                        self.fail(e);
                    }
                }
                Wake::Ping => self.send_ping().await,
                Wake::NotReady => {
                    self.reattach_deadline = None;
                    let d = Disconnect::Lost(SessionError::NotReady(self.options.ready_timeout));
                    if let Err(e) = self.handle_disconnect(d).await {
                        self.fail(e);
                    }
                }
            }
        }
        // Deliver what is left, then stop.
        if let Some(ws) = self.ws.as_mut() {
            let _ = tokio::time::timeout(Duration::from_secs(2), ws.close(None)).await;
        }
        while let Some(ev) = self.out_events.pop_front() {
            if self.ev_tx.send(ev.into_event()).await.is_err() {
                break;
            }
        }
        if let Some(done) = self.closing.take() {
            let _ = done.send(());
        }
    }

    async fn send_ping(&mut self) {
        if let Some(ws) = self.ws.as_mut() {
            // A failed ping shows up as a read error or a dead peer.
            let _ = tokio::time::timeout(
                self.options.dead_peer_timeout,
                ws.send(Message::Ping(Bytes::from_static(b"keepalive"))),
            )
            .await;
        }
    }

    fn resize(&mut self, cols: u16, rows: u16) {
        if let Err(e) = self
            .channel
            .send_resize(now(), u32::from(cols), u32::from(rows))
            && e.is_fatal()
        {
            self.fail(SessionError::Protocol(e));
        }
    }

    /// Moves input into the channel, collects events, writes transmits.
    async fn step(&mut self) -> Result<(), Disconnect> {
        if self.ready {
            while let Some(front) = self.pending_input.front_mut() {
                match self.channel.send_input(now(), front) {
                    Ok(n) if n >= front.len() => {
                        self.pending_input.pop_front();
                    }
                    Ok(n) => {
                        bytes::Buf::advance(front, n);
                        break; // window full: wait for SendWindowOpen
                    }
                    Err(e) if e.is_fatal() => {
                        self.fail(SessionError::Protocol(e));
                        return Ok(());
                    }
                    Err(_) => break,
                }
            }
            if let Some(flag) = self.pending_flag
                && self.pending_input.is_empty()
            {
                match self.channel.send_flag(now(), flag) {
                    Ok(()) => self.pending_flag = None,
                    Err(e) if e.is_fatal() => {
                        self.fail(SessionError::Protocol(e));
                        return Ok(());
                    }
                    Err(_) => {} // window full: again at the next step
                }
            }
        }
        self.drain_events();
        self.deliver_events();
        if !self.flush_waiters.is_empty()
            && self.pending_input.is_empty()
            && self.channel.all_acked()
        {
            for w in self.flush_waiters.drain(..) {
                let _ = w.send(());
            }
        }
        self.flush_transmits().await
    }

    /// Back to waking at every byte (after a streaming pause).
    fn lower_read_low_water(&mut self) {
        if self.low_water_raised {
            self.low_water_raised = false;
            if let Some(ws) = self.ws.as_ref() {
                ws::set_read_low_water(ws, 1);
            }
        }
    }

    fn drain_events(&mut self) {
        while let Some(ev) = self.channel.poll_event() {
            match ev {
                Event::Ready {
                    session_type,
                    customer_message,
                } => {
                    self.ready = true;
                    tracing::debug!(
                        session_id = %self.target.session_id,
                        %session_type,
                        agent_version = self.channel.agent_version().unwrap_or("-"),
                        "session ready"
                    );
                    let info = ReadyInfo {
                        session_type,
                        session_properties: self.channel.session_properties().clone(),
                        customer_message: customer_message.filter(|m| !m.is_empty()),
                        agent_version: self.channel.agent_version().map(str::to_string),
                    };
                    if let Some(tx) = self.ready_tx.take() {
                        let _ = tx.send(Ok(info));
                    }
                    if let Some((c, r)) = self.last_size {
                        self.resize(c, r);
                    }
                    self.reattach_deadline = None;
                    if let Some(resent_bytes) = self.reattach.take() {
                        self.queue(SessionEvent::Reconnected {
                            session_id: self.target.session_id.clone(),
                            resent_bytes,
                        });
                    }
                }
                Event::Output(b) => self.queue_output(b),
                Event::StdErr(b) => self.queue(SessionEvent::StdErr(b)),
                Event::ExitCode(c) => self.queue(SessionEvent::ExitCode(c)),
                Event::Paused => self.queue(SessionEvent::Paused),
                Event::Resumed => self.queue(SessionEvent::Resumed),
                Event::Flag(f) => self.queue(SessionEvent::Flag(f)),
                Event::SendWindowOpen => {}
                Event::KmsDataKeyRequired { key_id, challenge } => {
                    self.start_kms(key_id, challenge)
                }
                Event::Closed { reason } => {
                    let reason = reason.filter(|r| !r.trim().is_empty());
                    if let Some(e) = self.channel.error() {
                        let e = e.clone();
                        self.fail(SessionError::Protocol(e));
                    } else if self.ready_tx.is_some() {
                        self.fail(SessionError::Rejected { reason });
                    } else {
                        self.end(SessionEvent::Closed { reason });
                    }
                }
                _ => {}
            }
        }
    }

    fn start_kms(&mut self, key_id: String, challenge: Option<String>) {
        let Some(provider) = self.options.data_key_provider.clone() else {
            self.fail(SessionError::Kms(KmsError::NotConfigured));
            return;
        };
        let mut ctx = BTreeMap::new();
        ctx.insert(
            "aws:ssm:SessionId".to_string(),
            self.target.session_id.clone(),
        );
        let target_id = self
            .options
            .kms_target_id
            .clone()
            .unwrap_or_else(|| self.target.session_id.clone());
        ctx.insert("aws:ssm:TargetId".to_string(), target_id);
        let _ = challenge;
        let request = DataKeyRequest {
            key_id,
            encryption_context: ctx,
        };
        self.kms = Some(Box::pin(async move {
            provider.generate_data_key(request).await
        }));
    }

    /// Moves the channel's transmits into the socket's write buffer; writes
    /// them out now unless they are only acknowledgements (see [`ACK_DELAY`]).
    async fn flush_transmits(&mut self) -> Result<(), Disconnect> {
        let Some(ws) = self.ws.as_mut() else {
            return Ok(());
        };
        let mut urgent = false;
        let limit = self.options.dead_peer_timeout;
        // One clock reading for the whole batch (a burst's acknowledgements).
        let at = now();
        while let Some(t) = self.channel.poll_transmit(at) {
            let msg = match t {
                Transmit::Text(s) => {
                    urgent = true;
                    Message::Text(s.into())
                }
                Transmit::Binary(b) => {
                    urgent |= !ssm_channel::is_acknowledge_frame(&b);
                    Message::Binary(b)
                }
            };
            match tokio::time::timeout(limit, ws.feed(msg)).await {
                Ok(Ok(())) => self.unflushed += 1,
                Ok(Err(e)) => return Err(Disconnect::Lost(SessionError::ConnectionLost(e))),
                Err(_) => return Err(Disconnect::Lost(SessionError::PeerDead(limit))),
            }
        }
        if self.unflushed == 0 {
            return Ok(());
        }
        // (Going to sleep on a read pause anyway: write them now.)
        if urgent
            || self.unflushed >= ACK_FLUSH_FRAMES
            || self.unflushed_rx >= ACK_FLUSH_BYTES
            || self.ended
            || self.read_paused_until.is_some()
        {
            return self.flush_socket().await;
        }
        if self.flush_at.is_none() {
            self.flush_at = Some(Instant::now() + ACK_DELAY);
        }
        Ok(())
    }

    /// Writes out everything in the socket's write buffer.
    async fn flush_socket(&mut self) -> Result<(), Disconnect> {
        self.flush_at = None;
        self.unflushed_rx = 0;
        let unflushed = std::mem::take(&mut self.unflushed);
        let Some(ws) = self.ws.as_mut() else {
            return Ok(());
        };
        if unflushed == 0 {
            return Ok(());
        }
        let limit = self.options.dead_peer_timeout;
        match tokio::time::timeout(limit, ws.flush()).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(Disconnect::Lost(SessionError::ConnectionLost(e))),
            Err(_) => Err(Disconnect::Lost(SessionError::PeerDead(limit))),
        }
    }

    fn on_socket(
        &mut self,
        msg: Option<Result<Message, tokio_tungstenite::tungstenite::Error>>,
        at: Instant,
    ) -> Result<(), Disconnect> {
        self.last_rx = at;
        let now = at.into_std();
        if let Some(Ok(Message::Binary(_))) = &msg
            && let Some(resent_bytes) = self.resuming.take()
        {
            // A frame of the channel: the service took the same session back.
            self.queue(SessionEvent::Reconnected {
                session_id: self.target.session_id.clone(),
                resent_bytes,
            });
        }
        let res = match msg {
            None => return Err(Disconnect::Lost(SessionError::SocketClosed(None))),
            Some(Err(e)) => return Err(Disconnect::Lost(SessionError::ConnectionLost(e))),
            Some(Ok(Message::Binary(b))) => self.channel.handle_incoming_bytes(now, b),
            Some(Ok(Message::Text(t))) => {
                self.channel.handle_incoming(now, Frame::Text(t.as_str()))
            }
            Some(Ok(Message::Close(c))) => {
                let reason = c.map(|c| c.reason.to_string()).filter(|r| !r.is_empty());
                return Err(Disconnect::Lost(SessionError::SocketClosed(reason)));
            }
            Some(Ok(_)) => return Ok(()), // ping/pong: liveness only
        };
        if let Err(e) = res
            && e.is_fatal()
        {
            self.fail(SessionError::Protocol(e));
        }
        Ok(())
    }

    /// Queues a final event and stops after delivering it.
    fn end(&mut self, ev: SessionEvent) {
        if !self.ended {
            match &ev {
                SessionEvent::Failed(e) => tracing::debug!(
                    session_id = %self.target.session_id,
                    error = %crate::error_chain(e),
                    "session failed"
                ),
                _ => tracing::debug!(session_id = %self.target.session_id, "session ended"),
            }
            self.queue(ev);
            self.ended = true;
        }
    }

    fn fail(&mut self, e: SessionError) {
        if let Some(tx) = self.ready_tx.take() {
            let _ = tx.send(Err(e));
            self.ended = true;
        } else {
            self.end(SessionEvent::Failed(e));
        }
    }

    /// The socket is gone: reconnect through a new session, or fail.
    async fn handle_disconnect(&mut self, d: Disconnect) -> Result<(), SessionError> {
        let Disconnect::Lost(reason) = d;
        self.ws = None;
        // Unwritten acknowledgements went with the socket; the peer resends.
        self.unflushed = 0;
        self.flush_at = None;
        self.unflushed_rx = 0;
        // A new socket starts at the normal low-water mark.
        self.low_water_raised = false;
        self.last_burst_at = None;
        self.read_paused_until = None;
        // A `channel_closed` read just before the socket closed ends the
        // session normally.
        self.drain_events();
        if self.ended {
            return Ok(());
        }
        if self.ready_tx.is_some() {
            // Never started: most likely the token was refused.
            return Err(match reason {
                SessionError::SocketClosed(r) => SessionError::Rejected { reason: r },
                other => other,
            });
        }
        // First the same session again, as the official plugin does: the
        // service keeps a session for a while after its socket dropped, and
        // with the sequence state kept nothing is lost or repeated in either
        // direction. Not again when the service just refused that.
        let refused = self.resuming.take().is_some();
        let can_resume = self.options.resume && !refused && !self.channel.is_closed();
        if !can_resume && self.options.reconnector.is_none() {
            return Err(reason);
        }
        let mut last: BoxError = Box::new(reason);
        let max = self.options.max_reconnect_attempts.max(1);
        if can_resume {
            let mut delay = self.options.reconnect_delay;
            for attempt in 1..=max {
                if !self.before_attempt(attempt, true, &last, &mut delay).await {
                    return Ok(());
                }
                match self.redial().await {
                    Ok(()) => return Ok(()),
                    // The service answered and does not know the session any more.
                    Err(e @ SessionError::Connect { .. }) if is_http_refusal(&e) => {
                        last = Box::new(e);
                        break;
                    }
                    Err(e) => last = Box::new(e),
                }
            }
        }
        let Some(reconnector) = self.options.reconnector.clone() else {
            return Err(SessionError::Reconnect {
                attempts: max,
                source: last,
            });
        };
        // Everything the old channel sent but did not get acknowledged goes
        // first, before input that never reached it.
        let mut replay: VecDeque<Bytes> = self.channel.unacked_input().into_iter().collect();
        // A reconnect that never became ready still owes the earlier replay.
        let resent: usize =
            replay.iter().map(|b| b.len()).sum::<usize>() + self.reattach.take().unwrap_or(0);
        self.reattach_deadline = None;
        replay.extend(self.pending_input.drain(..));
        self.pending_input = replay;
        self.ready = false;
        let mut delay = self.options.reconnect_delay;
        for attempt in 1..=max {
            // After a refused resume the caller has already been told.
            let tell = !(refused && attempt == 1);
            if !self.before_attempt(attempt, tell, &last, &mut delay).await {
                return Ok(());
            }
            let previous = self.target.session_id.clone();
            let fut = reconnector.reconnect(&previous);
            let Some(res) = self.wait_or_close(fut).await else {
                return Ok(());
            };
            let target = match res {
                Ok(t) => t,
                Err(e) => {
                    last = e;
                    continue;
                }
            };
            match self.connect_new(target).await {
                Ok(()) => {
                    self.reattach = Some(resent);
                    self.reattach_deadline = Some(Instant::now() + self.options.ready_timeout);
                    return Ok(());
                }
                Err(e) => last = Box::new(e),
            }
        }
        Err(SessionError::Reconnect {
            attempts: max,
            source: last,
        })
    }

    /// Before reconnect attempt `attempt`: tells the caller (when `tell`) and,
    /// from the second attempt on, waits `delay` and doubles it (at most 10 s).
    /// False when the caller closed the session meanwhile.
    async fn before_attempt(
        &mut self,
        attempt: u32,
        tell: bool,
        last: &BoxError,
        delay: &mut Duration,
    ) -> bool {
        tracing::debug!(
            session_id = %self.target.session_id,
            attempt,
            reason = %crate::error_chain(&**last),
            "reconnecting"
        );
        if tell {
            self.notify(SessionEvent::Reconnecting {
                attempt,
                reason: crate::error_chain(&**last),
            });
        }
        if attempt > 1 {
            let pause = Box::pin(tokio::time::sleep(*delay));
            if self.wait_or_close(pause).await.is_none() {
                return false;
            }
            *delay = (*delay * 2).min(Duration::from_secs(10));
        }
        true
    }

    /// Dials the same stream URL again and re-opens the current channel on it:
    /// sequence numbers kept, unacknowledged messages resent by the channel.
    async fn redial(&mut self) -> Result<(), SessionError> {
        if let Some(resumer) = self.options.resumer.clone() {
            let id = self.target.session_id.clone();
            let Some(res) = self.wait_or_close(resumer.reconnect(&id)).await else {
                return Ok(()); // closed by the caller meanwhile
            };
            match res {
                Ok(t) if t.session_id == id => {
                    self.target.token = t.token;
                    self.target.stream_url = t.stream_url;
                }
                Ok(t) => tracing::warn!(
                    session_id = %id,
                    other = %t.session_id,
                    "resuming returned another session; dialing with the current token"
                ),
                Err(e) => tracing::warn!(
                    session_id = %id,
                    "no fresh token ({}); dialing with the current one",
                    crate::error_chain(&*e)
                ),
            }
        }
        let ws = dial(&self.target.stream_url, &self.options).await?;
        self.ws = Some(ws);
        let token = Token::new(self.target.token.expose());
        self.channel
            .open(now(), token, self.client_id, uuid::Uuid::new_v4())
            .map_err(SessionError::Protocol)?;
        self.last_rx = Instant::now();
        // Confirmed by the first frame of the channel (an acknowledgement of
        // what is resent, or output). Until then, a close means the service
        // refused the session; an idle session that drops again before any
        // frame came takes the other way, with nothing in flight to repeat.
        let resent = self.channel.unacked_input().iter().map(|b| b.len()).sum();
        self.resuming = Some(resent);
        self.send_ping().await;
        Ok(())
    }

    /// Opens a new socket and channel for `target`.
    async fn connect_new(&mut self, target: SessionTarget) -> Result<(), SessionError> {
        let ws = dial(&target.stream_url, &self.options).await?;
        self.ws = Some(ws);
        self.target = target;
        self.channel = new_channel();
        self.open_channel();
        Ok(())
    }

    /// Runs `fut` while honouring a close request; `None` if the caller closed.
    async fn wait_or_close<T>(
        &mut self,
        fut: Pin<Box<dyn Future<Output = T> + Send + '_>>,
    ) -> Option<T> {
        let mut fut = fut;
        loop {
            tokio::select! {
                r = &mut fut => return Some(r),
                cmd = self.ctl_rx.recv(), if !self.ctl_closed => match cmd {
                    None => self.ctl_closed = true,
                    Some(CtlCmd::Resize(c, r)) => self.last_size = Some((c, r)),
                    Some(CtlCmd::Close(done)) => {
                        self.closing = Some(done);
                        self.end(SessionEvent::Closed { reason: Some("closed by the client".into()) });
                        return None;
                    }
                },
            }
        }
    }

    /// Sends an event now if possible, keeping order with queued events.
    fn notify(&mut self, ev: SessionEvent) {
        self.queue(ev);
        self.deliver_events();
    }

    /// Queues an event behind those already waiting.
    fn queue(&mut self, ev: SessionEvent) {
        self.out_events.push_back(Pending::Event(ev));
    }

    /// Queues output, merged with output already waiting when it fits.
    ///
    /// Output under [`ZERO_COPY_MIN`] is copied: a frame's payload is a view
    /// into the WebSocket's read buffer, and while any such view is alive the
    /// next read cannot reuse that buffer (tungstenite then reads into a fresh
    /// allocation only one to three frames long: three times the `recv`
    /// calls). Larger output fills a read on its own and is handed on as is.
    fn queue_output(&mut self, b: Bytes) {
        match self.out_events.back_mut() {
            Some(Pending::Output(m)) if m.len() + b.len() <= COALESCE_MAX => {
                m.extend_from_slice(&b);
                self.last_merged = m.len();
            }
            _ if b.len() >= ZERO_COPY_MIN => self.queue(SessionEvent::Output(b)),
            _ => {
                let start = self.last_merged.clamp(COALESCE_START, COALESCE_MAX);
                let mut m = BytesMut::with_capacity(b.len().max(start));
                m.extend_from_slice(&b);
                self.last_merged = m.len();
                self.out_events.push_back(Pending::Output(m));
            }
        }
    }

    /// Hands queued events to the consumer while the event queue has room.
    fn deliver_events(&mut self) {
        while !self.out_events.is_empty() {
            match self.ev_tx.try_reserve() {
                Ok(permit) => {
                    if let Some(ev) = self.out_events.pop_front() {
                        permit.send(ev.into_event());
                    }
                }
                Err(mpsc::error::TrySendError::Full(())) => break,
                Err(mpsc::error::TrySendError::Closed(())) => {
                    self.out_events.clear();
                    self.ended = true;
                    break;
                }
            }
        }
    }
}

/// Payload size of a received WebSocket message (0 for errors and the end).
fn frame_len(msg: &Option<Result<Message, tokio_tungstenite::tungstenite::Error>>) -> usize {
    match msg {
        Some(Ok(m)) => m.len(),
        _ => 0,
    }
}

/// The server answered the WebSocket upgrade with an HTTP error status.
fn is_http_refusal(e: &SessionError) -> bool {
    matches!(
        e,
        SessionError::Connect {
            source: tokio_tungstenite::tungstenite::Error::Http(_),
            ..
        }
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use ssm_channel::is_acknowledge_frame as is_ack_frame;

    /// Frames of a given kind from the recorded plugin captures.
    fn captured(file: &str) -> Vec<Vec<u8>> {
        let path = format!(
            "{}/fixtures/plugin-captures/{file}",
            env!("CARGO_MANIFEST_DIR")
        );
        let text = std::fs::read_to_string(path).expect("capture file");
        text.lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v["kind"] == "ws_binary")
            .filter_map(|v| v["hex"].as_str().map(str::to_owned))
            .map(|h| {
                (0..h.len())
                    .step_by(2)
                    .map(|i| u8::from_str_radix(&h[i..i + 2], 16).expect("hex"))
                    .collect()
            })
            .collect()
    }

    #[test]
    fn acknowledgements_are_told_from_other_frames() {
        let acks = captured("acknowledge.jsonl");
        let input = captured("input-keystrokes.jsonl");
        assert!(!acks.is_empty() && !input.is_empty());
        assert!(acks.iter().all(|f| is_ack_frame(f)));
        assert!(input.iter().all(|f| !is_ack_frame(f)));
        assert!(!is_ack_frame(b"short"));
    }
}

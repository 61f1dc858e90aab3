//! Running over a real (or emulated) CloudShell session.

use super::{ExecError, ExecOptions, ExecOutput, ExitStatus, Tap, TerminalLink};
use crate::Client;
use crate::session::{Session, SessionEvent, SessionOptions, SessionTarget, SessionWriter};
use bytes::Bytes;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Terminal size given to exec sessions: wide, so a terminal emulator in the
/// path (tmux) wraps as little as possible, and tall, since tmux drops
/// output for a client more than 8 bytes per cell behind (500 x 100: 400 KB,
/// over twice what flow control ever lets be in flight).
const EXEC_COLS: u16 = 500;
const EXEC_ROWS: u16 = 100;

/// How long to wait for the environment to be RUNNING before creating the session.
const ENVIRONMENT_WAIT: Duration = Duration::from_secs(300);

/// How a session's event stream ended, when it says more than "closed".
enum Ended {
    /// The session failed.
    Failed(crate::session::SessionError),
    /// The service closed it, with this reason.
    Closed(String),
}

/// How long a run that saw its session end waits for the reason to be read
/// from the session's events (they are already on their way).
const REASON_WAIT: Duration = Duration::from_secs(2);

/// A data-channel session created for one remote command: a fresh `TabId`,
/// a [`TerminalLink`] pumped to and from it by two tasks, and how it ended.
/// [`finish`](Self::finish) closes and deletes it; dropped without that (the
/// caller gave up), it stops its tasks and deletes the session in the
/// background.
pub(crate) struct ExecSession {
    link: Option<TerminalLink>,
    ended: Arc<Mutex<Option<Ended>>>,
    writer: SessionWriter,
    input_task: JoinHandle<()>,
    output_task: JoinHandle<()>,
    sent: Arc<AtomicU64>,
    received: Arc<AtomicU64>,
    client: Client,
    environment_id: String,
    session_id: String,
    /// Whether the session still has to be deleted.
    pending_delete: bool,
}

impl ExecSession {
    /// Creates a session in `environment_id` (which must be RUNNING) and
    /// connects to it. `tap` sees every byte of output.
    pub(crate) async fn open(
        client: &Client,
        environment_id: &str,
        session_options: SessionOptions,
        tap: Option<Tap>,
    ) -> Result<Self, ExecError> {
        crate::session::preconnect(&session_options);
        let created = client
            .create_session()
            .environment_id(environment_id)
            .tab_id(uuid::Uuid::new_v4().to_string())
            .q_cli_disabled(true)
            .send()
            .await
            .map_err(|e| ExecError::Session(Box::new(e)))?;
        let session_id = created.session_id.clone();
        let target = SessionTarget {
            stream_url: created.stream_url,
            token: created.token_value,
            session_id: created.session_id,
        };
        let session = match Session::connect(target, session_options).await {
            Ok(s) => s,
            Err(e) => {
                delete(client, environment_id, &session_id).await;
                return Err(ExecError::Session(Box::new(e)));
            }
        };
        let _ = session.resize(EXEC_COLS, EXEC_ROWS).await;
        let (writer, mut reader) = session.into_split();
        let (in_tx, mut in_rx) = mpsc::channel::<Bytes>(64);
        let (out_tx, out_rx) = mpsc::channel::<Bytes>(64);
        let ended: Arc<Mutex<Option<Ended>>> = Arc::default();
        let sent = Arc::new(AtomicU64::new(0));
        let received = Arc::new(AtomicU64::new(0));
        let w = writer.clone();
        let counter = sent.clone();
        let input_task = tokio::spawn(async move {
            while let Some(b) = in_rx.recv().await {
                counter.fetch_add(b.len() as u64, Ordering::Relaxed);
                if w.send_input(&b).await.is_err() {
                    break;
                }
            }
        });
        let end = ended.clone();
        let counter = received.clone();
        let output_task = tokio::spawn(async move {
            let mut out_tx = Some(out_tx);
            while let Some(ev) = reader.next_event().await {
                match ev {
                    SessionEvent::Output(b) | SessionEvent::StdErr(b) => {
                        counter.fetch_add(b.len() as u64, Ordering::Relaxed);
                        if let Some(t) = &tap {
                            (t.0)(&b);
                        }
                        // Once the run stops reading, the events are still
                        // read to the end: how the session ended explains
                        // why the run stopped.
                        if let Some(tx) = &out_tx
                            && tx.send(b).await.is_err()
                        {
                            out_tx = None;
                        }
                    }
                    SessionEvent::Closed { reason } => {
                        if let (Some(r), Ok(mut f)) = (reason, end.lock()) {
                            *f = Some(Ended::Closed(r));
                        }
                        break;
                    }
                    SessionEvent::Failed(e) => {
                        if let Ok(mut f) = end.lock() {
                            *f = Some(Ended::Failed(e));
                        }
                        break;
                    }
                    _ => {}
                }
            }
        });
        Ok(ExecSession {
            link: Some(TerminalLink {
                input: in_tx,
                output: out_rx,
            }),
            ended,
            writer,
            input_task,
            output_task,
            sent,
            received,
            client: client.clone(),
            environment_id: environment_id.to_string(),
            session_id,
            pending_delete: true,
        })
    }

    /// The terminal the command runs in (once; later calls get a closed one).
    pub(crate) fn take_link(&mut self) -> TerminalLink {
        self.link.take().unwrap_or_else(|| TerminalLink {
            input: mpsc::channel(1).0,
            output: mpsc::channel(1).1,
        })
    }

    /// The session's id.
    pub(crate) fn session_id(&self) -> &str {
        &self.session_id
    }

    /// Whether the session is still open (its events have not ended).
    pub(crate) fn is_open(&self) -> bool {
        !self.output_task.is_finished()
    }

    /// Input bytes sent and output bytes received so far.
    pub(crate) fn bytes(&self) -> (u64, u64) {
        (
            self.sent.load(Ordering::Relaxed),
            self.received.load(Ordering::Relaxed),
        )
    }

    /// Replaces a bare "session closed" by the session's own failure, or the
    /// service's reason for closing it, if any. The run may have seen the end
    /// (its input refused) before the event saying why was read: that event
    /// is waited for, briefly.
    pub(crate) async fn explain(&mut self, e: ExecError) -> ExecError {
        let ExecError::SessionClosed = e else {
            return e;
        };
        if self.ended.lock().map(|f| f.is_none()).unwrap_or(false) {
            let _ = tokio::time::timeout(REASON_WAIT, &mut self.output_task).await;
        }
        match self.ended.lock().ok().and_then(|mut f| f.take()) {
            Some(Ended::Failed(f)) => ExecError::Session(Box::new(f)),
            Some(Ended::Closed(reason)) => ExecError::ClosedByService(reason),
            None => ExecError::SessionClosed,
        }
    }

    /// Closes the channel, stops the tasks and deletes the session (best
    /// effort).
    pub(crate) async fn finish(mut self) {
        let _ = self.writer.close().await;
        self.input_task.abort();
        self.output_task.abort();
        self.pending_delete = false;
        delete(&self.client, &self.environment_id, &self.session_id).await;
    }
}

impl Drop for ExecSession {
    fn drop(&mut self) {
        self.input_task.abort();
        self.output_task.abort();
        if self.pending_delete
            && let Ok(handle) = tokio::runtime::Handle::try_current()
        {
            let client = self.client.clone();
            let environment_id = self.environment_id.clone();
            let session_id = self.session_id.clone();
            handle.spawn(async move { delete(&client, &environment_id, &session_id).await });
        }
    }
}

async fn delete(client: &Client, environment_id: &str, session_id: &str) {
    if let Err(e) = client
        .delete_session()
        .environment_id(environment_id)
        .session_id(session_id)
        .send()
        .await
    {
        tracing::warn!(session_id, error = %e, "could not delete the session");
    }
}

/// Runs `argv` in the environment and collects its output (stdin from
/// [`ExecOptions::stdin`], else `/dev/null`).
///
/// Creates a dedicated session (fresh `TabId`), waits for the environment to
/// be RUNNING, runs the command and deletes the session. See the
/// [module documentation](crate::exec) for how the command is run.
pub async fn run(
    client: &Client,
    environment_id: &str,
    argv: &[impl AsRef<[u8]>],
    options: ExecOptions,
) -> Result<ExecOutput, ExecError> {
    let mut stdout = Vec::new();
    let mut stderr = Vec::new();
    let stdin = options.stdin.clone();
    let status = match stdin {
        Some(data) => {
            run_with_io(
                client,
                environment_id,
                argv,
                options,
                Some(&data[..]),
                &mut stdout,
                &mut stderr,
            )
            .await?
        }
        None => {
            run_with_io(
                client,
                environment_id,
                argv,
                options,
                None::<tokio::io::Empty>,
                &mut stdout,
                &mut stderr,
            )
            .await?
        }
    };
    Ok(ExecOutput {
        status,
        stdout,
        stderr,
    })
}

/// Streaming form of [`run`]: `stdin` (if any) feeds the command and its end
/// is delivered as EOF; output is written to `stdout` / `stderr` as it arrives.
pub async fn run_with_io<I, O, E>(
    client: &Client,
    environment_id: &str,
    argv: &[impl AsRef<[u8]>],
    options: ExecOptions,
    stdin: Option<I>,
    stdout: &mut O,
    stderr: &mut E,
) -> Result<ExitStatus, ExecError>
where
    I: AsyncRead + Unpin,
    O: AsyncWrite + Unpin + ?Sized,
    E: AsyncWrite + Unpin + ?Sized,
{
    if argv.is_empty() {
        return Err(ExecError::EmptyCommand);
    }
    let session_options = options
        .session_options
        .clone()
        .unwrap_or_else(|| SessionOptions::for_client(client));
    crate::session::preconnect(&session_options);
    client
        .wait_until_running(environment_id, ENVIRONMENT_WAIT, |_| {})
        .await
        .map_err(|e| ExecError::Session(Box::new(e)))?;
    let mut session =
        ExecSession::open(client, environment_id, session_options, options.tap.clone()).await?;
    let link = session.take_link();
    let result = super::run_streaming(link, argv, options, stdin, stdout, stderr).await;
    let result = match result {
        Err(e) => Err(session.explain(e).await),
        ok => ok,
    };
    session.finish().await;
    result
}

//! Running over a real (or emulated) CloudShell session.

use super::{ExecError, ExecOptions, ExecOutput, ExitStatus, TerminalLink};
use crate::Client;
use crate::session::{Session, SessionEvent, SessionOptions, SessionTarget};
use bytes::Bytes;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;

/// Terminal size given to exec sessions: wide, so a terminal emulator in the
/// path (tmux) wraps as little as possible.
const EXEC_COLS: u16 = 500;
const EXEC_ROWS: u16 = 50;

/// How long to wait for the environment to be RUNNING before creating the session.
const ENVIRONMENT_WAIT: Duration = Duration::from_secs(300);

/// Whether the endpoint is an AWS one (the stream URL must then be an AWS
/// message gateway); any other endpoint (an emulator) may hand out any host.
pub(crate) fn session_options_for(client: &Client) -> SessionOptions {
    let host = client
        .endpoint()
        .split("://")
        .nth(1)
        .unwrap_or_default()
        .split(['/', ':'])
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase();
    if host.ends_with(".amazonaws.com")
        || host.ends_with(".amazonaws.com.cn")
        || host.ends_with(".api.aws")
    {
        SessionOptions {
            expected_region: Some(client.region().to_string()),
            ..SessionOptions::default()
        }
    } else {
        SessionOptions::default().allow_any_host()
    }
}

/// How a session's event stream ended, when it says more than "closed".
enum Ended {
    /// The session failed.
    Failed(crate::session::SessionError),
    /// The service closed it, with this reason.
    Closed(String),
}

/// A session created for one run, deleted when done.
pub(crate) struct ExecSession {
    pub(crate) link: TerminalLink,
    ended: Arc<Mutex<Option<Ended>>>,
    writer: crate::session::SessionWriter,
    client: Client,
    environment_id: String,
    session_id: String,
}

impl ExecSession {
    /// Waits for the environment, creates a session with a fresh `TabId` and
    /// connects to it.
    pub(crate) async fn open(
        client: &Client,
        environment_id: &str,
        options: &ExecOptions,
    ) -> Result<Self, ExecError> {
        client
            .wait_until_running(environment_id, ENVIRONMENT_WAIT, |_| {})
            .await
            .map_err(|e| ExecError::Session(Box::new(e)))?;
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
        let sopts = options
            .session_options
            .clone()
            .unwrap_or_else(|| session_options_for(client));
        let session = match Session::connect(target, sopts).await {
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
        let w = writer.clone();
        tokio::spawn(async move {
            while let Some(b) = in_rx.recv().await {
                if w.send_input(&b).await.is_err() {
                    break;
                }
            }
        });
        let end = ended.clone();
        let tap = options.tap.clone();
        tokio::spawn(async move {
            while let Some(ev) = reader.next_event().await {
                match ev {
                    SessionEvent::Output(b) | SessionEvent::StdErr(b) => {
                        if let Some(t) = &tap {
                            (t.0)(&b);
                        }
                        if out_tx.send(b).await.is_err() {
                            break;
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
            link: TerminalLink {
                input: in_tx,
                output: out_rx,
            },
            ended,
            writer,
            client: client.clone(),
            environment_id: environment_id.to_string(),
            session_id,
        })
    }

    /// Replaces a bare "session closed" by the session's own failure, or the
    /// service's reason for closing it, if any.
    pub(crate) fn explain(&self, e: ExecError) -> ExecError {
        match e {
            ExecError::SessionClosed => match self.ended.lock().ok().and_then(|mut f| f.take()) {
                Some(Ended::Failed(f)) => ExecError::Session(Box::new(f)),
                Some(Ended::Closed(reason)) => ExecError::ClosedByService(reason),
                None => ExecError::SessionClosed,
            },
            e => e,
        }
    }

    /// Closes the channel and deletes the session (best effort).
    pub(crate) async fn finish(self) {
        let _ = self.writer.close().await;
        delete(&self.client, &self.environment_id, &self.session_id).await;
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
        tracing::warn!(session_id, error = %e, "could not delete the exec session");
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
    let mut session = ExecSession::open(client, environment_id, &options).await?;
    let link = std::mem::replace(
        &mut session.link,
        TerminalLink {
            input: mpsc::channel(1).0,
            output: mpsc::channel(1).1,
        },
    );
    let result = super::run_streaming(link, argv, options, stdin, stdout, stderr).await;
    let result = result.map_err(|e| session.explain(e));
    session.finish().await;
    result
}

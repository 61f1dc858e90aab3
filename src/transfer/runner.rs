//! Running the transfer scripts in the environment.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;

use crate::Client;
use crate::exec::{self, ExecError, ExecOptions, ExitStatus, Interrupt, TerminalLink};
use crate::session::{Session, SessionEvent, SessionOptions, SessionTarget};

/// Terminal size of transfer sessions: wide, so nothing in the path wraps lines.
const COLS: u16 = 500;
const ROWS: u16 = 50;

/// A boxed future of a [`RemoteRunner`].
pub type RunFuture<'a> = Pin<Box<dyn Future<Output = Result<RunOutcome, ExecError>> + Send + 'a>>;

/// How a remote command ended, and what it cost on the data channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunOutcome {
    /// The command's exit status.
    pub status: ExitStatus,
    /// Bytes typed into the remote terminal (data-channel input payload).
    pub channel_bytes_sent: u64,
    /// Bytes printed by the remote terminal (data-channel output payload).
    pub channel_bytes_received: u64,
    /// The data-channel session the command ran in, if any.
    pub session_id: Option<String>,
}

/// Runs one command in the environment with streaming stdin, stdout and stderr,
/// like [`exec::run_with_io`]. Transfers are written against this trait; the
/// default implementation is [`ExecRunner`] (a data-channel session per command).
pub trait RemoteRunner: Send + Sync {
    /// Runs `argv`; `stdin` (if any) is forwarded and its end delivered as
    /// EOF, output is streamed into `stdout` / `stderr`.
    fn run<'a>(
        &'a self,
        argv: &'a [Vec<u8>],
        stdin: Option<&'a mut (dyn AsyncRead + Send + Unpin)>,
        stdout: &'a mut (dyn AsyncWrite + Send + Unpin),
        stderr: &'a mut (dyn AsyncWrite + Send + Unpin),
    ) -> RunFuture<'a>;
}

/// Runs each command through its own CloudShell session (see [`crate::exec`]).
#[derive(Debug, Clone)]
pub struct ExecRunner {
    client: Client,
    environment_id: String,
    session_options: SessionOptions,
    interrupt: Option<Interrupt>,
    startup_timeout: Duration,
}

impl ExecRunner {
    /// A runner for `environment_id` (which must be RUNNING).
    pub fn new(client: &Client, environment_id: impl Into<String>) -> Self {
        Self {
            session_options: session_options_for(client),
            client: client.clone(),
            environment_id: environment_id.into(),
            interrupt: None,
            startup_timeout: Duration::from_secs(60),
        }
    }

    /// Data-channel options (default: AWS gateways only for an AWS endpoint,
    /// any host for another endpoint such as the emulator).
    pub fn session_options(mut self, options: SessionOptions) -> Self {
        self.session_options = options;
        self
    }

    /// Interrupts the running command (Ctrl-C in its terminal) when triggered.
    pub fn interrupt(mut self, interrupt: Interrupt) -> Self {
        self.interrupt = Some(interrupt);
        self
    }

    /// The environment commands run in.
    pub fn environment_id(&self) -> &str {
        &self.environment_id
    }

    /// The API client.
    pub fn client(&self) -> &Client {
        &self.client
    }

    async fn run_inner(
        &self,
        argv: &[Vec<u8>],
        stdin: Option<&mut (dyn AsyncRead + Send + Unpin)>,
        stdout: &mut (dyn AsyncWrite + Send + Unpin),
        stderr: &mut (dyn AsyncWrite + Send + Unpin),
    ) -> Result<RunOutcome, ExecError> {
        let created = self
            .client
            .create_session()
            .environment_id(&self.environment_id)
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
        let session = match Session::connect(target, self.session_options.clone()).await {
            Ok(s) => s,
            Err(e) => {
                self.delete(&session_id).await;
                return Err(ExecError::Session(Box::new(e)));
            }
        };
        let _ = session.resize(COLS, ROWS).await;
        let (writer, mut reader) = session.into_split();
        let sent = Arc::new(AtomicU64::new(0));
        let received = Arc::new(AtomicU64::new(0));
        let failure: Arc<std::sync::Mutex<Option<crate::session::SessionError>>> = Arc::default();
        let (in_tx, mut in_rx) = mpsc::channel::<Bytes>(64);
        let (out_tx, out_rx) = mpsc::channel::<Bytes>(64);
        let w = writer.clone();
        let sent2 = sent.clone();
        let input_task = tokio::spawn(async move {
            while let Some(b) = in_rx.recv().await {
                sent2.fetch_add(b.len() as u64, Ordering::Relaxed);
                if w.send_input(&b).await.is_err() {
                    break;
                }
            }
        });
        let received2 = received.clone();
        let fail = failure.clone();
        let output_task = tokio::spawn(async move {
            while let Some(ev) = reader.next_event().await {
                match ev {
                    SessionEvent::Output(b) | SessionEvent::StdErr(b) => {
                        received2.fetch_add(b.len() as u64, Ordering::Relaxed);
                        if out_tx.send(b).await.is_err() {
                            break;
                        }
                    }
                    SessionEvent::Closed { .. } => break,
                    SessionEvent::Failed(e) => {
                        if let Ok(mut f) = fail.lock() {
                            *f = Some(e);
                        }
                        break;
                    }
                    _ => {}
                }
            }
        });
        // If this future is dropped (the caller gave up), stop the pumps: the
        // session ends with them, and is deleted in the background.
        let mut guard = SessionGuard {
            tasks: vec![input_task, output_task],
            delete: Some((
                self.client.clone(),
                self.environment_id.clone(),
                session_id.clone(),
            )),
        };
        let link = TerminalLink {
            input: in_tx,
            output: out_rx,
        };
        let mut options = ExecOptions::new().startup_timeout(self.startup_timeout);
        if let Some(i) = &self.interrupt {
            options = options.interrupt(i.clone());
        }
        let result = exec::run_streaming(link, argv, options, stdin, stdout, stderr).await;
        let result = match result {
            Err(ExecError::SessionClosed) => match failure.lock().ok().and_then(|mut f| f.take()) {
                Some(f) => Err(ExecError::Session(Box::new(f))),
                None => Err(ExecError::SessionClosed),
            },
            r => r,
        };
        let _ = writer.close().await;
        guard.abort_tasks();
        guard.delete = None;
        self.delete(&session_id).await;
        let status = result?;
        Ok(RunOutcome {
            status,
            channel_bytes_sent: sent.load(Ordering::Relaxed),
            channel_bytes_received: received.load(Ordering::Relaxed),
            session_id: Some(session_id),
        })
    }

    async fn delete(&self, session_id: &str) {
        if let Err(e) = self
            .client
            .delete_session()
            .environment_id(&self.environment_id)
            .session_id(session_id)
            .send()
            .await
        {
            tracing::warn!(session_id, error = %e, "could not delete the transfer session");
        }
    }
}

/// Stops a run's background tasks and deletes its session when the run is abandoned.
struct SessionGuard {
    tasks: Vec<tokio::task::JoinHandle<()>>,
    delete: Option<(Client, String, String)>,
}

impl SessionGuard {
    fn abort_tasks(&mut self) {
        for t in self.tasks.drain(..) {
            t.abort();
        }
    }
}

impl Drop for SessionGuard {
    fn drop(&mut self) {
        self.abort_tasks();
        if let Some((client, env, session_id)) = self.delete.take()
            && let Ok(handle) = tokio::runtime::Handle::try_current()
        {
            handle.spawn(async move {
                let _ = client
                    .delete_session()
                    .environment_id(env)
                    .session_id(session_id)
                    .send()
                    .await;
            });
        }
    }
}

impl RemoteRunner for ExecRunner {
    fn run<'a>(
        &'a self,
        argv: &'a [Vec<u8>],
        stdin: Option<&'a mut (dyn AsyncRead + Send + Unpin)>,
        stdout: &'a mut (dyn AsyncWrite + Send + Unpin),
        stderr: &'a mut (dyn AsyncWrite + Send + Unpin),
    ) -> RunFuture<'a> {
        Box::pin(self.run_inner(argv, stdin, stdout, stderr))
    }
}

/// AWS endpoints get AWS-only data-channel hosts; any other endpoint (an
/// emulator) may hand out any host.
fn session_options_for(client: &Client) -> SessionOptions {
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

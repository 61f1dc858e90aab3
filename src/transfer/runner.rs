//! Running the transfer scripts in the environment.

use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::task::JoinHandle;

use super::TransferError;
use crate::Client;
use crate::exec::remote::ExecSession;
use crate::exec::{self, ExecError, ExecOptions, ExitStatus, Interrupt};
use crate::session::SessionOptions;

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

/// A reference to a runner runs through it.
impl<T: RemoteRunner + ?Sized> RemoteRunner for &T {
    fn run<'a>(
        &'a self,
        argv: &'a [Vec<u8>],
        stdin: Option<&'a mut (dyn AsyncRead + Send + Unpin)>,
        stdout: &'a mut (dyn AsyncWrite + Send + Unpin),
        stderr: &'a mut (dyn AsyncWrite + Send + Unpin),
    ) -> RunFuture<'a> {
        (**self).run(argv, stdin, stdout, stderr)
    }
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
            session_options: SessionOptions::for_client(client),
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

    /// Creates a session for a command and connects to it.
    async fn open(&self) -> Result<ExecSession, ExecError> {
        ExecSession::open(
            &self.client,
            &self.environment_id,
            self.session_options.clone(),
            None,
        )
        .await
    }

    /// Runs `argv` in `session`, then deletes the session.
    async fn run_in(
        &self,
        mut session: ExecSession,
        argv: &[Vec<u8>],
        stdin: Option<&mut (dyn AsyncRead + Send + Unpin)>,
        stdout: &mut (dyn AsyncWrite + Send + Unpin),
        stderr: &mut (dyn AsyncWrite + Send + Unpin),
    ) -> Result<RunOutcome, ExecError> {
        let link = session.take_link();
        let mut options = ExecOptions::new().startup_timeout(self.startup_timeout);
        if let Some(i) = &self.interrupt {
            options = options.interrupt(i.clone());
        }
        let result = exec::run_streaming(link, argv, options, stdin, stdout, stderr).await;
        let result = match result {
            Err(e) => Err(session.explain(e).await),
            ok => ok,
        };
        let (sent, received) = session.bytes();
        let session_id = session.session_id().to_owned();
        session.finish().await;
        Ok(RunOutcome {
            status: result?,
            channel_bytes_sent: sent,
            channel_bytes_received: received,
            session_id: Some(session_id),
        })
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
        Box::pin(async move {
            let session = self.open().await?;
            self.run_in(session, argv, stdin, stdout, stderr).await
        })
    }
}

/// An [`ExecRunner`] whose first command runs in a session opened as soon as
/// the runner is made: the session's set-up (CreateSession, the WebSocket,
/// the open frame, the tab's shell) overlaps what the transfer does first,
/// such as asking for S3 URLs or sending the file to S3. Later commands (a
/// clean-up after a failure, a fallback) get sessions of their own.
/// [`finish`](Self::finish) deletes the session if no command took it.
pub(crate) struct Primed {
    runner: ExecRunner,
    ahead: Mutex<Option<Ahead>>,
}

/// The session opened ahead, before a command takes it.
enum Ahead {
    /// Still being opened.
    Opening(JoinHandle<Result<ExecSession, ExecError>>),
    /// Open (it may have ended since).
    Open(ExecSession),
}

impl Primed {
    /// Starts opening a session for `runner`'s first command.
    pub(crate) fn new(runner: ExecRunner) -> Self {
        let opener = runner.clone();
        let opening = tokio::spawn(async move { opener.open().await });
        Self {
            runner,
            ahead: Mutex::new(Some(Ahead::Opening(opening))),
        }
    }

    /// The environment commands run in.
    pub(crate) fn environment_id(&self) -> &str {
        self.runner.environment_id()
    }

    /// The API client.
    pub(crate) fn client(&self) -> &Client {
        self.runner.client()
    }

    fn take_ahead(&self) -> Option<Ahead> {
        self.ahead.lock().ok().and_then(|mut a| a.take())
    }

    fn put_ahead(&self, ahead: Ahead) {
        if let Ok(mut slot) = self.ahead.lock() {
            *slot = Some(ahead);
        }
    }

    /// Runs `work` (a step before the first command, such as sending the
    /// file to S3); if opening the session fails meanwhile, `work` is given
    /// up and that failure returned at once: the command could not run.
    pub(crate) async fn unless_session_fails<T>(
        &self,
        work: impl Future<Output = Result<T, TransferError>>,
    ) -> Result<T, TransferError> {
        let mut opening = match self.take_ahead() {
            Some(Ahead::Opening(h)) => h,
            other => {
                if let Some(a) = other {
                    self.put_ahead(a);
                }
                return work.await;
            }
        };
        tokio::pin!(work);
        tokio::select! {
            done = &mut work => {
                self.put_ahead(Ahead::Opening(opening));
                done
            }
            opened = &mut opening => match opened {
                Ok(Ok(session)) => {
                    self.put_ahead(Ahead::Open(session));
                    work.await
                }
                Ok(Err(ExecError::Interrupted)) => Err(TransferError::Interrupted),
                Ok(Err(e)) => Err(TransferError::Exec(e)),
                Err(e) => {
                    tracing::debug!("opening a session ahead failed: {e}");
                    work.await
                }
            },
        }
    }

    /// A session for the next command: the one opened ahead if it is still
    /// unused and open, else a new one.
    async fn session(&self) -> Result<ExecSession, ExecError> {
        let opened = match self.take_ahead() {
            None => return self.runner.open().await,
            Some(Ahead::Open(session)) => session,
            Some(Ahead::Opening(opening)) => match opening.await {
                Ok(opened) => opened?,
                Err(e) => {
                    tracing::debug!("opening a session ahead failed: {e}");
                    return self.runner.open().await;
                }
            },
        };
        if opened.is_open() {
            return Ok(opened);
        }
        // It ended while the transfer did its first part (the service
        // closed it, the connection dropped).
        tracing::debug!("the session opened ahead has ended; opening another");
        opened.finish().await;
        self.runner.open().await
    }

    /// Deletes the session opened ahead if no command used it (waiting for
    /// it to open first: a session being created cannot be called off).
    pub(crate) async fn finish(self) {
        let unused = match self.take_ahead() {
            Some(Ahead::Open(session)) => Some(session),
            Some(Ahead::Opening(opening)) => opening.await.ok().and_then(Result::ok),
            None => None,
        };
        if let Some(session) = unused {
            session.finish().await;
        }
    }
}

impl RemoteRunner for Primed {
    fn run<'a>(
        &'a self,
        argv: &'a [Vec<u8>],
        stdin: Option<&'a mut (dyn AsyncRead + Send + Unpin)>,
        stdout: &'a mut (dyn AsyncWrite + Send + Unpin),
        stderr: &'a mut (dyn AsyncWrite + Send + Unpin),
    ) -> RunFuture<'a> {
        Box::pin(async move {
            let session = self.session().await?;
            self.runner
                .run_in(session, argv, stdin, stdout, stderr)
                .await
        })
    }
}

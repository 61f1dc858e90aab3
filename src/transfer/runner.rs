//! Running the transfer scripts in the environment.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};

use crate::Client;
use crate::exec::remote::{ExecSession, session_options_for};
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
        let mut session = ExecSession::open(
            &self.client,
            &self.environment_id,
            self.session_options.clone(),
            None,
        )
        .await?;
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
        Box::pin(self.run_inner(argv, stdin, stdout, stderr))
    }
}

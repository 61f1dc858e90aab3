//! `connect`: an interactive shell in an environment, over the native data
//! channel.

use std::io::IsTerminal as _;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::Args;
use cloudshell_rs::Client;
use cloudshell_rs::session::{BoxError, KmsClient, Proxy, Session, SessionOptions, SessionTarget};
use cloudshell_rs::terminal::{self, AtEof, PumpExit, PumpOptions, RawModeGuard};

use super::context::Context;
use super::{CliError, CliResult, GlobalArgs, chain};

/// Arguments of `connect`.
#[derive(Debug, Args)]
pub struct ConnectArgs {
    /// Environment id or name (default: the default environment, created if needed).
    #[arg(value_name = "ENV")]
    pub env: Option<String>,
    /// Tab id (UUID v4): the same tab id re-attaches to the same shell.
    /// A new one is generated when absent.
    #[arg(long, value_parser = super::args::tab_id)]
    pub tab_id: Option<String>,
    /// How long to wait for the environment to be RUNNING.
    #[arg(long, default_value_t = 300, value_name = "SECS")]
    pub timeout_secs: u64,
    /// Interval of SendHeartBeat calls while connected.
    #[arg(long, default_value_t = 60, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..))]
    pub heartbeat_secs: u64,
    /// Do not reconnect when the connection drops (neither by resuming the
    /// same session nor through a new session for the same tab).
    #[arg(long)]
    pub no_reconnect: bool,
    /// Disable the `~.` escape (disconnect) after Enter.
    #[arg(long)]
    pub no_escape: bool,
    /// Keep the session when disconnecting (skip DeleteSession), to re-attach
    /// later with the same --tab-id.
    #[arg(long)]
    pub keep_session: bool,
    /// Make your local AWS credentials available in the remote shell as the
    /// standard AWS_* variables, kept fresh before they expire. No secret is
    /// ever typed into the terminal (see `cloudshell_rs::credentials`).
    #[arg(long)]
    pub inject_credentials: bool,
}

/// A spinner on stderr, only when stderr is a terminal.
struct Spinner(Option<indicatif::ProgressBar>);

impl Spinner {
    fn new(msg: &str) -> Self {
        if !std::io::stderr().is_terminal() {
            return Spinner(None);
        }
        let pb = indicatif::ProgressBar::new_spinner();
        pb.set_draw_target(indicatif::ProgressDrawTarget::stderr());
        pb.enable_steady_tick(Duration::from_millis(100));
        pb.set_message(msg.to_string());
        Spinner(Some(pb))
    }

    fn set(&self, msg: String) {
        if let Some(pb) = &self.0 {
            pb.set_message(msg);
        }
    }

    fn finish(self) {
        if let Some(pb) = self.0 {
            pb.finish_and_clear();
        }
    }
}

/// Creates sessions for one tab; remembers the latest session id.
#[derive(Clone)]
struct TabSessions {
    client: Client,
    env: String,
    tab_id: String,
    current: Arc<Mutex<String>>,
}

impl TabSessions {
    async fn create(&self) -> Result<SessionTarget, cloudshell_rs::Error> {
        let out = self
            .client
            .create_session()
            .environment_id(self.env.clone())
            .tab_id(self.tab_id.clone())
            .send()
            .await?;
        if let Ok(mut c) = self.current.lock() {
            c.clone_from(&out.session_id);
        }
        Ok(SessionTarget::from(out))
    }

    fn current(&self) -> String {
        self.current.lock().map(|c| c.clone()).unwrap_or_default()
    }
}

/// Session options for targets created through `client`: stream URLs are
/// checked as the library checks them for that client (an AWS endpoint, even
/// one set by `--endpoint-url` or `AWS_ENDPOINT_URL`, hands out only its
/// region's message gateway; the emulator and other endpoints any host).
pub(super) fn session_options(global: &GlobalArgs, client: &Client) -> SessionOptions {
    let mut options = SessionOptions::for_client(client);
    if global.local {
        // The in-process emulator is on loopback, out of any proxy's reach.
        options.proxy = Proxy::none();
    }
    let kms_endpoint = if global.local {
        client.endpoint().to_string()
    } else {
        cloudshell_rs::session::kms_endpoint_from_env(client.region())
    };
    options.data_key_provider = Some(Arc::new(KmsClient::for_client(client, kms_endpoint)));
    options
}

/// `connect`
pub async fn connect(ctx: &Context, global: &GlobalArgs, args: ConnectArgs) -> CliResult {
    on_terminal(ctx, global, args, OnTerminal::Shell).await
}

/// What runs on the session's terminal.
pub(super) enum OnTerminal {
    /// The interactive shell (`connect`).
    Shell,
    /// One command, started on the terminal (`exec -t`); the exit code is
    /// the command's.
    Command {
        /// The command and its arguments.
        argv: Vec<Vec<u8>>,
        /// The environment variables (and start-up timeout) for it.
        options: Box<cloudshell_rs::exec::ExecOptions>,
    },
}

/// Finds the environment, waits for it, opens a session for a tab and
/// connects the local terminal to it, with `what` running there.
pub(super) async fn on_terminal(
    ctx: &Context,
    global: &GlobalArgs,
    args: ConnectArgs,
    what: OnTerminal,
) -> CliResult {
    let client = ctx.client.clone();
    // The data channel's connection is made while the API calls are.
    let mut options = session_options(global, &client);
    cloudshell_rs::session::preconnect(&options);
    let spinner = Spinner::new("looking up the environment");
    let env = ctx.env_or_create_default(args.env.clone()).await?;
    spinner.set(format!("waiting for {env} to be RUNNING"));
    let waited = client
        .wait_until_running(&env, Duration::from_secs(args.timeout_secs), |s| {
            spinner.set(format!("environment {env}: {s}"));
        })
        .await;
    if let Err(e) = waited {
        spinner.finish();
        return Err(e.into());
    }
    spinner.set("creating a session".to_string());
    let tab_id = args
        .tab_id
        .clone()
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let tabs = TabSessions {
        client: client.clone(),
        env: env.clone(),
        tab_id: tab_id.clone(),
        current: Arc::new(Mutex::new(String::new())),
    };
    let target = match tabs.create().await {
        Ok(t) => t,
        Err(e) => {
            spinner.finish();
            return Err(e.into());
        }
    };
    options.kms_target_id = Some(env.clone());
    options.resume = !args.no_reconnect;
    if !args.no_reconnect {
        let t = tabs.clone();
        options = options.reconnector(move |previous: String| {
            let t = t.clone();
            async move {
                // The old session is gone for good; free its slot.
                let _ = t
                    .client
                    .delete_session()
                    .environment_id(t.env.clone())
                    .session_id(previous)
                    .send()
                    .await;
                t.create().await.map_err(|e| Box::new(e) as BoxError)
            }
        });
    }
    spinner.set("connecting".to_string());
    let connected = Session::connect(target, options).await;
    spinner.finish();
    let session = match connected {
        Ok(s) => s,
        Err(e) => {
            delete_session(&client, &env, &tabs.current()).await;
            return Err(CliError::new(chain(&e)));
        }
    };
    if let Some(msg) = session.customer_message() {
        terminal::status(msg);
    }
    let injection = match &what {
        OnTerminal::Shell if args.inject_credentials => {
            match super::exec::inject_into_shell(ctx, global, &env, &session).await {
                Ok(i) => Some(i),
                Err(e) => {
                    let _ = session.close().await;
                    delete_session(&client, &env, &tabs.current()).await;
                    return Err(e);
                }
            }
        }
        _ => None,
    };

    // Heartbeats keep the environment from being suspended while connected.
    let hb_client = client.clone();
    let hb_env = env.clone();
    let every = Duration::from_secs(args.heartbeat_secs);
    let heartbeat = tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Err(e) = hb_client
                .send_heart_beat()
                .environment_id(hb_env.clone())
                .send()
                .await
            {
                tracing::debug!(error = %chain(&e), "heartbeat failed");
            }
        }
    });

    let interactive = std::io::stdin().is_terminal() && std::io::stdout().is_terminal();
    let guard = if interactive {
        match RawModeGuard::enable() {
            Ok(g) => Some(g),
            Err(e) => {
                heartbeat.abort();
                let _ = session.close().await;
                delete_session(&client, &env, &tabs.current()).await;
                return Err(CliError::new(format!(
                    "cannot put the terminal into raw mode: {e}"
                )));
            }
        }
    } else {
        None
    };
    let pump_options = PumpOptions {
        escapes: interactive && !args.no_escape,
        forward_resize: interactive,
        at_eof: AtEof::SendEot,
    };
    let ended = match what {
        OnTerminal::Shell => Ended::Shell(terminal::pump(session, pump_options).await),
        OnTerminal::Command { argv, options } => {
            // The command starts at the local terminal's size.
            if let Some((c, r)) = terminal::terminal_size().filter(|_| interactive) {
                let _ = session.resize(c, r).await;
            }
            Ended::Command(run_command(session, &argv, &options, pump_options).await)
        }
    };
    drop(guard);
    heartbeat.abort();
    if let Some(i) = injection {
        super::exec::finish_injection(i).await;
    }
    if !args.keep_session {
        delete_session(&client, &env, &tabs.current()).await;
    }
    match ended {
        Ended::Shell(result) => finish(result),
        Ended::Command(result) => result,
    }
}

/// How the use of the terminal ended, told once the terminal is restored.
enum Ended {
    /// The shell's session ended so.
    Shell(Result<PumpExit, cloudshell_rs::session::SessionError>),
    /// The command's outcome.
    Command(CliResult),
}

/// Starts the command on the session's terminal and pumps it until it ends.
async fn run_command(
    mut session: Session,
    argv: &[Vec<u8>],
    options: &cloudshell_rs::exec::ExecOptions,
    pump_options: PumpOptions,
) -> CliResult {
    let mut command = match cloudshell_rs::exec::start_tty(&mut session, argv, options).await {
        Ok(c) => c,
        Err(e) => {
            let _ = session.close().await;
            return Err(CliError::new(chain(&e)));
        }
    };
    // Output that came with the start, and a command already done.
    let mut first = Vec::new();
    if let Some(status) = command.filter(&[], &mut first) {
        let _ = session.close().await;
        write_stdout(&first);
        return exit_with(status.code());
    }
    write_stdout(&first);
    let result = terminal::pump_filtered(session, pump_options, |b, out| {
        command.filter(b, out).map(|s| s.code())
    })
    .await;
    match result {
        Ok(PumpExit::Closed {
            exit_code: Some(c), ..
        }) => exit_with(c),
        Ok(PumpExit::Closed {
            reason,
            exit_code: None,
        }) => Err(CliError::new(match reason {
            Some(r) => format!(
                "the service closed the session before the command finished: {}",
                super::output::printable(&r)
            ),
            None => "the session closed before the command finished".to_string(),
        })),
        Ok(PumpExit::EscapeDisconnect) => {
            Err(CliError::new("disconnected before the command finished"))
        }
        other => outcome(other),
    }
}

fn write_stdout(data: &[u8]) {
    use std::io::Write as _;
    if data.is_empty() {
        return;
    }
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(data);
    let _ = out.flush();
}

/// The CLI's outcome for a remote exit status.
fn exit_with(code: i32) -> CliResult {
    if code == 0 {
        Ok(())
    } else {
        Err(CliError::with_code(
            "",
            u8::try_from(code.clamp(1, 255)).unwrap_or(1),
        ))
    }
}

/// Maps the end of a pumped session to the CLI's outcome. Why the service
/// closed the session, when it says (the environment was stopped, the
/// session was terminated...), is shown on stderr.
pub(super) fn finish(result: Result<PumpExit, cloudshell_rs::session::SessionError>) -> CliResult {
    if let Some(reason) = closed_reason(&result) {
        terminal::status(&format!("[cloudshell-rs] the session was closed: {reason}"));
    }
    outcome(result)
}

/// The service's reason for closing the session, if it gave one, with any
/// control characters escaped (it is printed to a terminal).
fn closed_reason(
    result: &Result<PumpExit, cloudshell_rs::session::SessionError>,
) -> Option<String> {
    match result {
        Ok(PumpExit::Closed {
            reason: Some(r), ..
        }) => Some(super::output::printable(r)),
        _ => None,
    }
}

/// The CLI's outcome of a pumped session's end: the remote exit code, the
/// signal's, or the error.
pub(super) fn outcome(result: Result<PumpExit, cloudshell_rs::session::SessionError>) -> CliResult {
    match result {
        Ok(PumpExit::Closed {
            exit_code: Some(c), ..
        }) if c != 0 => Err(CliError::with_code(
            "",
            u8::try_from(c.clamp(1, 255)).unwrap_or(1),
        )),
        Ok(PumpExit::Closed { .. }) | Ok(PumpExit::StdoutClosed) => Ok(()),
        Ok(PumpExit::EscapeDisconnect) => {
            terminal::status("[cloudshell-rs] disconnected");
            Ok(())
        }
        Ok(PumpExit::Signal(n)) => Err(CliError::with_code("", 128 + n as u8)),
        Err(e) => Err(CliError::new(chain(&e))),
    }
}

async fn delete_session(client: &Client, env: &str, session_id: &str) {
    if session_id.is_empty() {
        return;
    }
    if let Err(e) = client
        .delete_session()
        .environment_id(env.to_string())
        .session_id(session_id.to_string())
        .send()
        .await
    {
        tracing::debug!(error = %chain(&e), "DeleteSession failed");
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn closed(reason: Option<&str>) -> Result<PumpExit, cloudshell_rs::session::SessionError> {
        Ok(PumpExit::Closed {
            reason: reason.map(str::to_owned),
            exit_code: None,
        })
    }

    #[test]
    fn the_service_reason_is_shown_with_control_characters_escaped() {
        assert_eq!(
            closed_reason(&closed(Some("The environment was stopped."))).as_deref(),
            Some("The environment was stopped.")
        );
        // A reason cannot move the cursor or retitle the terminal.
        assert_eq!(
            closed_reason(&closed(Some("bye\u{1b}]0;owned\u{7}\r\nnow é"))).as_deref(),
            Some("bye\\u{1b}]0;owned\\u{7}\\r\\nnow é")
        );
        assert_eq!(closed_reason(&closed(None)), None);
        assert_eq!(closed_reason(&Ok(PumpExit::StdoutClosed)), None);
        assert!(outcome(closed(Some("x"))).is_ok());
    }
}

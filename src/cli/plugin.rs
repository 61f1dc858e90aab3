//! Drop-in replacement for `session-manager-plugin`.
//!
//! The AWS CLI runs `session-manager-plugin <StartSession response JSON>
//! <region> StartSession [profile] [parameters JSON] [endpoint]`. The same
//! arguments work as `cloudshell-rs session-manager-plugin ...`, and when this
//! binary is installed (or linked) under the name `session-manager-plugin`.
//! The session is opened natively; no token is ever logged. With the
//! credentials of the profile argument (loaded only when needed), a
//! KMS-encrypted session gets its data key, and a dropped connection gets a
//! fresh token from `ssm:ResumeSession` before it is dialed again.

use std::ffi::{OsStr, OsString};
use std::future::Future;
use std::io::{IsTerminal as _, Write as _};
use std::path::Path;
use std::pin::Pin;
use std::process::ExitCode;
use std::sync::Arc;

use cloudshell_rs::session::{
    DataKey, DataKeyProvider, DataKeyRequest, KmsClient, KmsError, Session, SessionOptions,
    SessionTarget, SsmClient, default_ssm_endpoint,
};
use cloudshell_rs::terminal::{self, AtEof, PumpOptions, RawModeGuard};
use cloudshell_rs::{Client, Secret};
use serde::Deserialize;

/// What the official plugin prints when run without arguments; the AWS CLI
/// runs it that way to check that the plugin is installed.
pub const INSTALLED_MESSAGE: &str = "\nThe Session Manager plugin was installed successfully. Use the AWS CLI to start a session.\n\n";

/// If the program was started as `session-manager-plugin`, or as
/// `cloudshell-rs session-manager-plugin ARGS...`, runs in plugin mode and
/// returns its exit code. The second form skips the command-line parser too
/// (building it takes about 0.4 ms, a tenth of a session's start-up); with
/// `--help` it is left to the parser.
pub fn main_if_plugin() -> Option<ExitCode> {
    let mut args = std::env::args_os();
    let argv0 = args.next()?;
    let rest: Vec<OsString> = args.collect();
    plugin_args(&argv0, &rest).map(|args| run(args.to_vec()))
}

/// The plugin's own arguments, when the command line asks for plugin mode.
fn plugin_args<'a>(argv0: &OsStr, rest: &'a [OsString]) -> Option<&'a [OsString]> {
    if Path::new(argv0).file_stem() == Some(OsStr::new("session-manager-plugin")) {
        return Some(rest);
    }
    let (first, plugin) = rest.split_first()?;
    let asks_help = plugin.iter().any(|a| a == "--help" || a == "-h");
    (first == "session-manager-plugin" && !asks_help).then_some(plugin)
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct StartSessionResponse {
    session_id: String,
    token_value: Secret,
    stream_url: String,
}

/// The parsed command line.
struct PluginArgs {
    target: SessionTarget,
    region: String,
    /// The AWS CLI's profile (empty: the default chain).
    profile: Option<String>,
    /// `Target` of the StartSession parameters (the instance), for the KMS
    /// encryption context.
    target_id: Option<String>,
    endpoint: Option<String>,
}

/// The StartSession request parameters the AWS CLI passes (only what is used).
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct StartSessionParameters {
    target: Option<String>,
}

/// Parses the plugin's positional arguments.
/// The prefix of the name of the environment variable in which the AWS CLI
/// passes the StartSession response (the name then takes its place among the
/// arguments), as the official plugin accepts it.
const RESPONSE_VARIABLE_PREFIX: &str = "AWS_SSM_START_SESSION_RESPONSE";

/// Reads the environment variable `name` and removes it from the process's
/// environment, so that no process started later (a profile's
/// `credential_process`) gets it: it holds the session token.
#[allow(unsafe_code)]
fn take_env_var(name: &str) -> Option<String> {
    let value = std::env::var(name).ok()?;
    // SAFETY: called from `run`, before the async runtime or any other
    // thread is started, so nothing reads the environment concurrently.
    unsafe { std::env::remove_var(name) };
    Some(value)
}

/// Reads the plugin's arguments; `env` looks up (and takes) an environment
/// variable.
fn parse(args: &[String], env: impl Fn(&str) -> Option<String>) -> Result<PluginArgs, String> {
    let first = args
        .first()
        .ok_or("missing the StartSession response JSON")?;
    let from_env;
    let (json, source) = if first.starts_with(RESPONSE_VARIABLE_PREFIX) {
        from_env = env(first).ok_or_else(|| {
            format!("the environment variable {first} (the StartSession response) is not set")
        })?;
        (&from_env, format!("the environment variable {first}"))
    } else {
        (first, "the first argument".to_string())
    };
    let region = args.get(1).ok_or("missing the region argument")?;
    let op = args
        .get(2)
        .ok_or("missing the operation name (StartSession)")?;
    if op != "StartSession" {
        return Err(format!(
            "unsupported operation {op:?} (only StartSession is supported)"
        ));
    }
    let resp: StartSessionResponse = serde_json::from_str(json).map_err(|e| {
        // serde's message names the missing field or the position, never the token.
        format!("{source} is not a StartSession response: {e}")
    })?;
    if resp.token_value.is_empty() || resp.stream_url.is_empty() {
        return Err("the StartSession response has an empty TokenValue or StreamUrl".into());
    }
    let profile = args.get(3).filter(|p| !p.trim().is_empty()).cloned();
    // Parameters the CLI could not have produced are ignored, as the plugin does.
    let target_id = args
        .get(4)
        .and_then(|p| serde_json::from_str::<StartSessionParameters>(p).ok())
        .and_then(|p| p.target)
        .filter(|t| !t.is_empty());
    let endpoint = args.get(5).filter(|e| !e.trim().is_empty()).cloned();
    Ok(PluginArgs {
        target: SessionTarget {
            stream_url: resp.stream_url,
            token: resp.token_value,
            session_id: resp.session_id,
        },
        region: region.clone(),
        profile,
        target_id,
        endpoint,
    })
}

/// Whether an SSM endpoint override points away from AWS (an emulator).
fn is_custom_endpoint(endpoint: &str) -> bool {
    let lower = endpoint.to_ascii_lowercase();
    let host = lower
        .split("://")
        .nth(1)
        .unwrap_or(&lower)
        .split(['/', ':'])
        .next()
        .unwrap_or("");
    !(host.ends_with(".amazonaws.com") || host.ends_with(".amazonaws.com.cn"))
}

/// Runs plugin mode with the arguments after the program name. Called from
/// `main` before any other thread exists (it may change the environment).
pub fn run(args: Vec<OsString>) -> ExitCode {
    let args: Vec<String> = args
        .into_iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    if args.is_empty() {
        print!("{INSTALLED_MESSAGE}");
        let _ = std::io::stdout().flush();
        return ExitCode::SUCCESS;
    }
    if args.len() == 1 && (args[0] == "--version" || args[0] == "version") {
        // The plugin version whose protocol this binary speaks: the AWS CLI
        // reads it, and from 1.2.497.0 on passes the session in an
        // environment variable instead of on the command line.
        println!("{}", cloudshell_rs::session::CLIENT_VERSION);
        return ExitCode::SUCCESS;
    }
    // No flags reach plugin mode (the AWS CLI chooses the arguments): its
    // debug logs are switched on from the environment.
    if std::env::var_os("CLOUDSHELL_RS_LOG").is_some() {
        super::init_tracing();
    }
    let parsed = match parse(&args, take_env_var) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("session-manager-plugin: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("session-manager-plugin: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let code = runtime.block_on(session(parsed));
    runtime.shutdown_background();
    code
}

/// The AWS configuration of the profile the AWS CLI passed, loaded on first
/// use: a session that is neither encrypted nor dropped never reads it.
struct PluginAws {
    region: String,
    profile: Option<String>,
    /// Where `ssm:ResumeSession` goes: the CLI's endpoint argument, else the
    /// region's SSM endpoint.
    ssm_endpoint: String,
    client: tokio::sync::OnceCell<Client>,
}

impl PluginAws {
    async fn client(&self) -> Result<&Client, cloudshell_rs::ConfigError> {
        self.client
            .get_or_try_init(|| async {
                let mut builder = Client::builder().region(self.region.clone());
                if let Some(p) = &self.profile {
                    builder = builder.profile(p.clone());
                }
                builder.build().await
            })
            .await
    }
}

/// Data keys for KMS-encrypted sessions, with the profile's credentials.
struct PluginKms(Arc<PluginAws>);

impl DataKeyProvider for PluginKms {
    fn generate_data_key(
        &self,
        request: DataKeyRequest,
    ) -> Pin<Box<dyn Future<Output = Result<DataKey, KmsError>> + Send + '_>> {
        Box::pin(async move {
            let client = self
                .0
                .client()
                .await
                .map_err(|e| KmsError::Config(Box::new(e)))?;
            let endpoint = cloudshell_rs::session::kms_endpoint_from_env(&self.0.region);
            KmsClient::for_client(client, endpoint)
                .generate_data_key(&request)
                .await
        })
    }
}

/// A fresh token for the same session after a drop (`ssm:ResumeSession`), as
/// the official plugin gets one, with the profile's credentials.
fn resumer(aws: Arc<PluginAws>) -> impl cloudshell_rs::session::Reconnector {
    move |session_id: String| {
        let aws = aws.clone();
        async move {
            let client = aws.client().await?;
            let target = SsmClient::for_client(client, aws.ssm_endpoint.clone())
                .resume_session(&session_id)
                .await?;
            Ok(target)
        }
    }
}

async fn session(args: PluginArgs) -> ExitCode {
    let mut options = SessionOptions {
        expected_region: Some(args.region.clone()),
        kms_target_id: args.target_id.clone(),
        ..SessionOptions::default()
    };
    let aws = Arc::new(PluginAws {
        region: args.region.clone(),
        profile: args.profile.clone(),
        ssm_endpoint: args
            .endpoint
            .clone()
            .unwrap_or_else(|| default_ssm_endpoint(&args.region)),
        client: tokio::sync::OnceCell::new(),
    });
    options.data_key_provider = Some(Arc::new(PluginKms(aws.clone())));
    options = options.resumer(resumer(aws.clone()));
    if args.endpoint.as_deref().is_some_and(is_custom_endpoint) {
        options = options.allow_any_host();
        options.expected_region = None;
    }
    let session_id = args.target.session_id.clone();
    let starting = format!("\nStarting session with SessionId: {session_id}");
    let session = match Session::connect(args.target, options).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{starting}");
            eprintln!("session-manager-plugin: {}", super::chain(&e));
            return ExitCode::from(1);
        }
    };
    let local = session
        .session_properties()
        .get("type")
        .and_then(|t| t.as_str())
        == Some("LocalPortForwarding");
    if session.session_type() == "Port" && !local {
        // The session's bytes are this process's stdout: the line goes to
        // stderr (the plugin puts it into the stream, which only SSH, that
        // skips lines before its banner, tolerates).
        eprintln!("{starting}");
    } else {
        // On stdout, as the plugin prints it: tools strip it or read the
        // session id from there.
        println!("{starting}");
    }
    if session.session_type() == "Port" {
        if local {
            return forward_local(session, &session_id, &aws).await;
        }
        // AWS-StartSSHSession and the like (an SSH ProxyCommand): the
        // session's bytes on stdin/stdout, untouched; stdin EOF ends it.
        let result = terminal::pump(
            session,
            PumpOptions {
                escapes: false,
                forward_resize: false,
                at_eof: AtEof::Terminate,
            },
        )
        .await;
        return finish(result, &session_id);
    }
    if let Some(msg) = session.customer_message() {
        eprintln!("{msg}");
    }
    let interactive = std::io::stdin().is_terminal() && std::io::stdout().is_terminal();
    let guard = if interactive {
        match RawModeGuard::enable() {
            Ok(g) => Some(g),
            Err(e) => {
                let _ = session.close().await;
                eprintln!("session-manager-plugin: cannot put the terminal into raw mode: {e}");
                return ExitCode::from(1);
            }
        }
    } else {
        None
    };
    let result = terminal::pump(
        session,
        PumpOptions {
            escapes: false,
            forward_resize: interactive,
            at_eof: AtEof::SendEot,
        },
    )
    .await;
    drop(guard);
    finish(result, &session_id)
}

/// `AWS-StartPortForwardingSession` and the like: a local listener (the
/// properties' `localPortNumber`, or a free port, on `SSM_PLUGIN_LOCAL_HOST`
/// or 127.0.0.1; or `localUnixSocket` when `localConnectionType` is `unix`),
/// each connection one smux stream, or one connection at a time with agents
/// that do not multiplex. The messages are the official plugin's, on stdout,
/// where scripts wait for "Waiting for connections...". Ctrl-C, Ctrl-\ and
/// Ctrl-Z (SIGINT, SIGQUIT, SIGTSTP) end the session: the `TerminateSession`
/// flag, or for agents up to 2.3.722.0 (which ignore it) the
/// `ssm:TerminateSession` API, as the plugin does.
async fn forward_local(session: Session, session_id: &str, aws: &PluginAws) -> ExitCode {
    use cloudshell_rs::session::forward::{self, ForwardNotice, LocalListener};
    let props = session.session_properties();
    let prop = |k: &str| {
        props
            .get(k)
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_string()
    };
    let unix_path = (prop("localConnectionType") == "unix").then(|| prop("localUnixSocket"));
    let local_port = prop("localPortNumber");
    let port = match local_port.as_str() {
        "" => Ok(0),
        p => p
            .parse::<u16>()
            .map_err(|_| format!("the session's localPortNumber {p:?} is not a port number")),
    };
    // The official plugin's variable for the listening address (e.g. 0.0.0.0
    // to let other machines or containers in); loopback by default.
    let host = std::env::var("SSM_PLUGIN_LOCAL_HOST")
        .ok()
        .filter(|h| !h.trim().is_empty())
        .unwrap_or_else(|| "127.0.0.1".into());
    let listener = match (&unix_path, port) {
        (Some(path), _) => tokio::net::UnixListener::bind(path)
            .map(LocalListener::Unix)
            .map_err(|e| format!("cannot listen on the Unix socket {path}: {e}")),
        (None, Ok(port)) => tokio::net::TcpListener::bind((host.trim(), port))
            .await
            .map(LocalListener::Tcp)
            .map_err(|e| format!("cannot listen on {host}:{port}: {e}")),
        (None, Err(e)) => Err(e),
    };
    let listener = match listener {
        Ok(l) => l,
        Err(e) => {
            let _ = session.close().await;
            eprintln!("session-manager-plugin: {e}");
            return ExitCode::from(1);
        }
    };
    match (&listener, &unix_path) {
        (LocalListener::Tcp(l), _) => {
            let port = l.local_addr().map(|a| a.port()).unwrap_or_default();
            println!("Port {port} opened for sessionId {session_id}.");
        }
        (_, path) => println!(
            "Unix socket {} opened for sessionId {session_id}.",
            path.as_deref().unwrap_or_default()
        ),
    }
    // Agents up to 3.0.196.0 do not multiplex: one connection at a time,
    // with the official plugin's basic-mode messages.
    let multiplexed = forward::multiplexed(&session);
    if multiplexed {
        println!("Waiting for connections...");
    }
    let takes_flag = forward::takes_terminate_flag(&session);
    let writer = session.writer();
    let mut announced = false;
    let mut closed_by_service = None;
    // In a block of its own: the forwarding (and the notices' borrows) end
    // with it.
    let result = {
        let run = forward::run(session, listener, |n| match n {
            // Once, as the plugin prints it.
            ForwardNotice::Accepted(_) if !announced => {
                announced = true;
                if multiplexed {
                    println!("\nConnection accepted for session [{session_id}]");
                } else {
                    println!("Connection accepted for session {session_id}.");
                }
            }
            ForwardNotice::DestinationUnreachable => {
                println!("\nConnection to destination port failed, check SSM Agent logs.")
            }
            ForwardNotice::Closed(r) => closed_by_service = Some(r),
            _ => {}
        });
        tokio::pin!(run);
        tokio::select! {
            r = &mut run => r.map_err(|e| super::chain(&e)),
            () = terminate_signal() => {
                println!("Terminate signal received, exiting.");
                if takes_flag {
                    // Ask the agent to end the session, without waiting long for
                    // it; the plugin says so on stderr.
                    let _ = tokio::time::timeout(terminal::TERMINATE_GRACE, writer.terminate()).await;
                    let _ = writer.close().await;
                    remove_socket(unix_path.as_deref());
                    eprintln!("{}", end_notice(session_id, None));
                    return ExitCode::SUCCESS;
                }
                // An agent that ignores the flag: SSM ends the session, whose
                // channel then closes (the usual end, below).
                // Bounded, and a second signal gives up on it.
                let call = tokio::time::timeout(TERMINATE_CALL_WAIT, terminate_through_ssm(aws, session_id));
                let called = tokio::select! {
                    r = call => r.unwrap_or_else(|_| Err("no answer".into())),
                    () = terminate_signal() => Err("interrupted".into()),
                };
                match called {
                    Ok(()) => match tokio::time::timeout(TERMINATED_CLOSE_WAIT, &mut run).await {
                        Ok(r) => r.map_err(|e| super::chain(&e)),
                        Err(_) => Ok(()),
                    },
                    Err(e) => Err(format!("cannot end the session with ssm:TerminateSession: {e}")),
                }
            }
        }
    };
    let _ = writer.close().await;
    remove_socket(unix_path.as_deref());
    match result {
        Ok(()) => {
            println!("{}", end_notice(session_id, closed_by_service.as_deref()));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("session-manager-plugin: {e}");
            ExitCode::from(1)
        }
    }
}

/// How long `ssm:TerminateSession` may take to answer.
const TERMINATE_CALL_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// How long the session may take to close after `ssm:TerminateSession`
/// succeeded before the binary stops waiting for it.
const TERMINATED_CLOSE_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// `ssm:TerminateSession` for `session_id`, with the profile's credentials.
async fn terminate_through_ssm(aws: &PluginAws, session_id: &str) -> Result<(), String> {
    let client = aws.client().await.map_err(|e| super::chain(&e))?;
    SsmClient::for_client(client, aws.ssm_endpoint.clone())
        .terminate_session(session_id)
        .await
        .map_err(|e| super::chain(&e))
}

/// Removes the Unix socket a forwarder listened on, if it did.
fn remove_socket(path: Option<&str>) {
    if let Some(path) = path {
        let _ = std::fs::remove_file(path);
    }
}

/// The plugin's line at the end of a session (printed with a newline after
/// it): the service's reason for closing it when it gave one, control
/// characters escaped.
fn end_notice(session_id: &str, reason: Option<&str>) -> String {
    match reason {
        Some(r) => format!(
            "\n\nSessionId: {session_id} : {}\n",
            super::output::printable(r)
        ),
        None => format!("\n\nExiting session with sessionId: {session_id}.\n"),
    }
}

/// The signals that end a port-forwarding session in the official plugin:
/// SIGINT, SIGQUIT and SIGTSTP. Never resolves if they cannot be watched.
async fn terminate_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let kinds = [
        SignalKind::interrupt(),
        SignalKind::quit(),
        SignalKind::from_raw(libc::SIGTSTP),
    ];
    let mut watched: Vec<_> = kinds.into_iter().filter_map(|k| signal(k).ok()).collect();
    if watched.is_empty() {
        return std::future::pending().await;
    }
    let any = watched.iter_mut().map(|s| Box::pin(s.recv()));
    let _ = futures_util::future::select_all(any).await;
}

/// The exit of a pumped session, as the plugin reports it.
fn finish(
    result: Result<terminal::PumpExit, cloudshell_rs::session::SessionError>,
    session_id: &str,
) -> ExitCode {
    let code = report_end(
        result,
        session_id,
        &mut std::io::stdout().lock(),
        &mut std::io::stderr().lock(),
    );
    ExitCode::from(code)
}

/// Reports the end of a pumped session as the plugin does and returns the
/// exit code: a session the service closed ends with 0, whatever the status
/// of a remote command, which goes to `out` as the agent sent it
/// (`EXIT_CODE: n`, NonInteractiveCommands with separate output streams), as
/// the plugin prints every payload it gets; the closing notice goes to `err`.
/// (The AWS CLI treats any other code as its own failure.)
fn report_end(
    result: Result<terminal::PumpExit, cloudshell_rs::session::SessionError>,
    session_id: &str,
    out: &mut impl std::io::Write,
    err: &mut impl std::io::Write,
) -> u8 {
    let reason = match &result {
        Ok(terminal::PumpExit::Closed { reason, .. }) => reason.clone(),
        _ => None,
    };
    let result = match result {
        Ok(terminal::PumpExit::Closed {
            reason,
            exit_code: Some(c),
        }) => {
            let _ = out.write_all(&ssm_channel::payload::ExitCode(c).to_bytes());
            let _ = out.flush();
            Ok(terminal::PumpExit::Closed {
                reason,
                exit_code: None,
            })
        }
        other => other,
    };
    match super::connect::outcome(result) {
        Ok(()) => {
            let _ = writeln!(err, "{}", end_notice(session_id, reason.as_deref()));
            0
        }
        Err(e) => {
            if !e.message.is_empty() {
                let _ = writeln!(err, "session-manager-plugin: {}", e.message);
            }
            e.code
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// `parse` with no environment variables.
    fn parse_args(args: &[String]) -> Result<PluginArgs, String> {
        parse(args, |_| None)
    }

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    fn os(v: &[&str]) -> Vec<OsString> {
        v.iter().map(OsString::from).collect()
    }

    #[test]
    fn plugin_mode_is_chosen_by_name_or_by_the_first_argument() {
        let args = os(&["{}", "us-east-1", "StartSession"]);
        let by_name = plugin_args(OsStr::new("/usr/local/bin/session-manager-plugin"), &args);
        assert_eq!(by_name, Some(&args[..]));

        let sub = os(&["session-manager-plugin", "{}", "us-east-1", "StartSession"]);
        let by_arg = plugin_args(OsStr::new("cloudshell-rs"), &sub);
        assert_eq!(by_arg, Some(&sub[1..]));
        // Without arguments: the plugin's "installed" check.
        let bare = os(&["session-manager-plugin"]);
        assert_eq!(
            plugin_args(OsStr::new("cloudshell-rs"), &bare),
            Some(&bare[1..])
        );

        // Help, other subcommands, global flags first: the parser's business.
        for line in [
            &["session-manager-plugin", "--help"][..],
            &["session-manager-plugin", "{}", "-h"],
            &["describe"],
            &["--debug", "session-manager-plugin", "{}"],
            &[],
        ] {
            let rest = os(line);
            assert_eq!(
                plugin_args(OsStr::new("cloudshell-rs"), &rest),
                None,
                "{line:?}"
            );
        }
    }

    #[test]
    fn parses_the_aws_cli_arguments() {
        let json = r#"{"SessionId":"u-0123","TokenValue":"tok-secret","StreamUrl":"wss://ssmmessages.us-east-1.amazonaws.com/v1/data-channel/u-0123?role=publish_subscribe","ResponseMetadata":{}}"#;
        let p = parse_args(&s(&[
            json,
            "us-east-1",
            "StartSession",
            "default",
            "{\"Target\":\"i-1\"}",
            "https://ssm.us-east-1.amazonaws.com",
        ]))
        .unwrap();
        assert_eq!(p.target.session_id, "u-0123");
        assert_eq!(p.target.token.expose(), "tok-secret");
        assert_eq!(p.region, "us-east-1");
        assert_eq!(p.profile.as_deref(), Some("default"));
        assert_eq!(p.target_id.as_deref(), Some("i-1"));
        assert!(!is_custom_endpoint(p.endpoint.as_deref().unwrap()));
        let p = parse_args(&s(&[json, "us-east-1", "StartSession"])).unwrap();
        assert!(p.endpoint.is_none());
        assert!(p.profile.is_none() && p.target_id.is_none());
        // An empty profile is the default chain; parameters that are not the
        // CLI's JSON name no target.
        let p = parse_args(&s(&[json, "us-east-1", "StartSession", " ", "[1,2]"])).unwrap();
        assert!(p.profile.is_none() && p.target_id.is_none());
    }

    #[test]
    fn the_response_can_come_in_the_environment_variable_the_aws_cli_names() {
        let json = r#"{"SessionId":"u-0123","TokenValue":"tok-secret","StreamUrl":"wss://ssmmessages.us-east-1.amazonaws.com/v1/data-channel/u-0123?role=publish_subscribe"}"#;
        let env =
            |name: &str| (name == "AWS_SSM_START_SESSION_RESPONSE_7").then(|| json.to_string());
        let p = parse(
            &s(&[
                "AWS_SSM_START_SESSION_RESPONSE_7",
                "us-east-1",
                "StartSession",
                "",
                "{}",
            ]),
            env,
        )
        .unwrap();
        assert_eq!(p.target.session_id, "u-0123");
        assert_eq!(p.target.token.expose(), "tok-secret");
        // Not a response: said, without the token.
        let bad = |_: &str| Some(r#"{"TokenValue":"tok-secret""#.to_string());
        let e = parse(
            &s(&[
                "AWS_SSM_START_SESSION_RESPONSE",
                "us-east-1",
                "StartSession",
            ]),
            bad,
        )
        .err()
        .unwrap();
        assert!(
            e.starts_with(
                "the environment variable AWS_SSM_START_SESSION_RESPONSE is not a StartSession \
                 response: "
            ),
            "{e}"
        );
        assert!(!e.contains("tok-secret"), "{e}");
        // Not set: said clearly.
        let e = parse(
            &s(&[
                "AWS_SSM_START_SESSION_RESPONSE",
                "us-east-1",
                "StartSession",
            ]),
            env,
        )
        .err()
        .unwrap();
        assert_eq!(
            e,
            "the environment variable AWS_SSM_START_SESSION_RESPONSE (the StartSession response) \
             is not set"
        );
    }

    #[test]
    fn bad_arguments_give_clear_errors_without_the_token() {
        let e = parse_args(&s(&[
            "{\"TokenValue\":\"tok-secret\"}",
            "us-east-1",
            "StartSession",
        ]))
        .err()
        .unwrap();
        assert!(e.contains("StartSession response"), "{e}");
        assert!(!e.contains("tok-secret"));
        assert!(
            parse_args(&s(&["{}", "us-east-1", "ResumeSession"]))
                .err()
                .unwrap()
                .contains("StartSession")
        );
        assert!(parse_args(&s(&["{}"])).is_err());
        assert!(parse_args(&s(&["not json", "r", "StartSession"])).is_err());
    }

    #[test]
    fn a_closed_session_ends_with_0_and_its_exit_code_on_stdout_as_the_plugin_prints_it() {
        let end = |exit_code, reason: Option<&str>| {
            let (mut out, mut err) = (Vec::new(), Vec::new());
            let code = report_end(
                Ok(terminal::PumpExit::Closed {
                    reason: reason.map(str::to_owned),
                    exit_code,
                }),
                "s-1",
                &mut out,
                &mut err,
            );
            (
                code,
                String::from_utf8(out).unwrap(),
                String::from_utf8(err).unwrap(),
            )
        };
        assert_eq!(
            end(Some(3), None),
            (
                0,
                "EXIT_CODE: 3".into(),
                "\n\nExiting session with sessionId: s-1.\n\n".into()
            )
        );
        assert_eq!(
            end(None, Some("Session timed out.")),
            (
                0,
                String::new(),
                "\n\nSessionId: s-1 : Session timed out.\n\n".into()
            )
        );
        // Other ends keep their codes (a signal: 128 + its number).
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let code = report_end(
            Ok(terminal::PumpExit::Signal(15)),
            "s-1",
            &mut out,
            &mut err,
        );
        assert_eq!(code, 143);
        assert!(out.is_empty());
    }

    #[test]
    fn custom_endpoints() {
        assert!(is_custom_endpoint("http://127.0.0.1:4566"));
        assert!(!is_custom_endpoint("https://ssm.eu-west-1.amazonaws.com"));
        assert!(!is_custom_endpoint(
            "https://ssm.cn-north-1.amazonaws.com.cn/"
        ));
    }
}

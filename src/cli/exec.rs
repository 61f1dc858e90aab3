//! `cloudshell-rs exec [ENV] [--] CMD [ARGS...]`: run one command like
//! `ssh host cmd` (see `cloudshell_rs::exec`).

use std::ffi::OsString;
use std::io::IsTerminal as _;
use std::time::Duration;

use clap::Args;
use cloudshell_rs::credentials::{self, AwsEnv};
use cloudshell_rs::exec::{self, ExecError, ExecOptions, Interrupt};

use super::context::Context;
use super::{CliError, CliResult, GlobalArgs, chain};
use cloudshell_rs::credentials::{InjectOptions, Injection};
use cloudshell_rs::session::Session;

/// Exit code after `--timeout` expired (as coreutils `timeout`).
const TIMEOUT_EXIT: u8 = 124;

/// Arguments of `exec`.
#[derive(Debug, Args)]
pub struct ExecArgs {
    /// Stop waiting after SECS seconds: the command is interrupted and the
    /// exit code is 124.
    #[arg(long, value_name = "SECS", conflicts_with = "tty")]
    pub timeout: Option<f64>,

    /// Run the command on the remote terminal itself, like `ssh -t`: for
    /// programs that need a terminal (editors, pagers, `top`, prompts).
    /// Keystrokes, Ctrl-C and window size reach it; its stdout and stderr
    /// come back together, as a terminal shows them; the exit code is
    /// still the command's.
    #[arg(short = 't', long)]
    pub tty: bool,

    /// Export your local AWS credentials (AWS_ACCESS_KEY_ID,
    /// AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, AWS_REGION,
    /// AWS_DEFAULT_REGION) to the command, without them appearing in any
    /// output, command line or history.
    #[arg(long)]
    pub inject_credentials: bool,

    /// [ENV] [--] CMD [ARGS...]: an optional environment id, or a name
    /// followed by `--` (default: the default environment), then the command
    /// and its arguments, passed exactly (no shell: use `bash -c '...'` for
    /// pipes and variables).
    #[arg(
        value_name = "ARGS",
        required = true,
        num_args = 1..,
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    pub words: Vec<OsString>,
}

/// Whether a word looks like an environment id (a UUID).
fn is_environment_id(w: &OsString) -> bool {
    let Some(s) = w.to_str() else { return false };
    s.len() == 36
        && s.char_indices().all(|(i, c)| {
            if [8, 13, 18, 23].contains(&i) {
                c == '-'
            } else {
                c.is_ascii_hexdigit()
            }
        })
}

/// Splits `[ENV] [--] CMD [ARGS...]`.
fn split_words(words: Vec<OsString>) -> CliResult<(Option<String>, Vec<OsString>)> {
    let mut words = words;
    if words.first().is_some_and(|w| w == "--") {
        words.remove(0);
        return non_empty(None, words);
    }
    if words.len() >= 2 && words[1] == "--" {
        let env = words.remove(0);
        words.remove(0);
        let env = env
            .into_string()
            .map_err(|_| CliError::with_code("the environment is not valid UTF-8", 2))?;
        return non_empty(Some(env), words);
    }
    if words.len() >= 2 && is_environment_id(&words[0]) {
        let env = words.remove(0).to_string_lossy().into_owned();
        return non_empty(Some(env), words);
    }
    non_empty(None, words)
}

fn non_empty(
    env: Option<String>,
    cmd: Vec<OsString>,
) -> CliResult<(Option<String>, Vec<OsString>)> {
    if cmd.is_empty() {
        return Err(CliError::with_code(
            "no command given: cloudshell-rs exec [ENV] [--] CMD [ARGS...]",
            2,
        ));
    }
    Ok((env, cmd))
}

/// Runs the command and exits with its status.
pub async fn run(ctx: &Context, global: &GlobalArgs, args: ExecArgs) -> CliResult {
    let (env, cmd) = split_words(args.words)?;
    // For the hint after a command that was not found.
    let only_word = match &cmd[..] {
        [only] => Some(only.to_string_lossy().into_owned()),
        _ => None,
    };
    let argv: Vec<Vec<u8>> = cmd.into_iter().map(os_bytes).collect();
    if args.tty {
        let mut options = ExecOptions::new();
        if args.inject_credentials {
            let aws = AwsEnv::from_client(&ctx.client)
                .await
                .map_err(|e| CliError::new(chain(&e)))?;
            options = credentials::exec_options(options, &aws);
        }
        let terminal = super::connect::ConnectArgs {
            env,
            tab_id: None,
            timeout_secs: 300,
            heartbeat_secs: 60,
            no_reconnect: false,
            no_escape: false,
            keep_session: false,
            inject_credentials: false,
        };
        let what = super::connect::OnTerminal::Command {
            argv,
            options: Box::new(options),
        };
        let result = super::connect::on_terminal(ctx, global, terminal, what).await;
        return result.map_err(|e| one_word_hint(e, only_word.as_deref()));
    }
    // The data channel's connection is made while the API calls are.
    let session_options = super::connect::session_options(global, &ctx.client);
    cloudshell_rs::session::preconnect(&session_options);
    let env = ctx.env_or_create_default(env).await?;

    let interrupt = Interrupt::new();
    let mut options = ExecOptions::new()
        .interrupt(interrupt.clone())
        .session_options(session_options);
    if let Some(t) = args.timeout {
        if !(t.is_finite() && t > 0.0) {
            return Err(CliError::with_code(
                "--timeout must be a positive number of seconds",
                2,
            ));
        }
        options = options.timeout(Duration::from_secs_f64(t));
    }
    if args.inject_credentials {
        let aws = AwsEnv::from_client(&ctx.client)
            .await
            .map_err(|e| CliError::new(chain(&e)))?;
        options = credentials::exec_options(options, &aws);
    }

    // Ctrl-C interrupts the remote command (a second one gives up).
    let int = interrupt.clone();
    let ctrl_c = tokio::spawn(async move {
        while tokio::signal::ctrl_c().await.is_ok() {
            int.interrupt();
        }
    });

    let mut stdout = tokio::io::stdout();
    let mut stderr = tokio::io::stderr();
    // A terminal on stdin is not forwarded: the command reads /dev/null
    // (as `ssh -n`), so it never waits for keystrokes nobody meant for it.
    let result = if std::io::stdin().is_terminal() {
        exec::run_with_io(
            &ctx.client,
            &env,
            &argv,
            options,
            None::<tokio::io::Stdin>,
            &mut stdout,
            &mut stderr,
        )
        .await
    } else {
        exec::run_with_io(
            &ctx.client,
            &env,
            &argv,
            options,
            Some(tokio::io::stdin()),
            &mut stdout,
            &mut stderr,
        )
        .await
    };
    ctrl_c.abort();
    match result {
        Ok(status) if status.success() => Ok(()),
        Ok(status) => Err(one_word_hint(
            CliError::with_code("", u8::try_from(status.code()).unwrap_or(1)),
            only_word.as_deref(),
        )),
        Err(ExecError::Interrupted) => Err(CliError::with_code("", 130)),
        Err(e @ ExecError::Timeout(_)) => Err(CliError::with_code(chain(&e), TIMEOUT_EXIT)),
        Err(ExecError::Output(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(CliError::new(chain(&e))),
    }
}

/// A command line given as one argument (`exec -- 'ls -l'`) is a command
/// name with a space in it, which no shell finds (exit code 127): the error
/// then says how to write it. Any other outcome is returned as it is.
fn one_word_hint(e: CliError, only_word: Option<&str>) -> CliError {
    match only_word {
        Some(line)
            if e.code == 127 && e.message.is_empty() && line.contains(char::is_whitespace) =>
        {
            CliError::with_code(one_word_advice(line), 127)
        }
        _ => e,
    }
}

/// What to write instead of `exec -- 'LINE'`: its words apart when it holds
/// nothing a shell would read otherwise, and `bash -c 'LINE'` in any case.
fn one_word_advice(line: &str) -> String {
    let through_shell = format!("exec -- bash -c '{}'", line.replace('\'', "'\\''"));
    let plain = !line
        .contains(|c: char| c.is_control() && c != '\t' || "|&;<>()$`\\\"'*?[]#~={}!".contains(c));
    let write = if plain {
        let apart = line.split_whitespace().collect::<Vec<_>>().join(" ");
        format!("write: exec -- {apart}  or: {through_shell}")
    } else {
        format!("for a shell command line write: {through_shell}")
    };
    format!(
        "hint: {line:?} is one argument, taken as a command's name (arguments are passed \
         exactly); {write}"
    )
}

/// `connect --inject-credentials`: writes the credentials file through a
/// helper exec run, then types the (secret-free) line that sources it into
/// the interactive shell.
pub async fn inject_into_shell(
    ctx: &Context,
    global: &GlobalArgs,
    env: &str,
    session: &Session,
) -> CliResult<Injection> {
    let options = InjectOptions::new().exec_options(
        ExecOptions::new().session_options(super::connect::session_options(global, &ctx.client)),
    );
    let injection = Injection::start(&ctx.client, env, options)
        .await
        .map_err(|e| CliError::new(chain(&e)))?;
    session
        .send_input(&injection.shell_line())
        .await
        .map_err(|e| CliError::new(chain(&e)))?;
    Ok(injection)
}

/// Removes the credentials file at the end of `connect` (best effort).
pub async fn finish_injection(injection: Injection) {
    if let Err(e) = injection.finish().await {
        tracing::debug!(error = %chain(&e), "removing the injected credentials failed");
    }
}

#[cfg(unix)]
fn os_bytes(s: OsString) -> Vec<u8> {
    use std::os::unix::ffi::OsStringExt as _;
    s.into_vec()
}

#[cfg(not(unix))]
fn os_bytes(s: OsString) -> Vec<u8> {
    s.to_string_lossy().into_owned().into_bytes()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn w(v: &[&str]) -> Vec<OsString> {
        v.iter().map(OsString::from).collect()
    }

    #[test]
    fn advice_for_a_command_line_given_as_one_argument() {
        assert_eq!(
            one_word_advice("ls  -l /tmp"),
            "hint: \"ls  -l /tmp\" is one argument, taken as a command's name (arguments \
             are passed exactly); write: exec -- ls -l /tmp  or: exec -- bash -c 'ls  -l /tmp'"
        );
        assert_eq!(
            one_word_advice("grep x f | wc -l"),
            "hint: \"grep x f | wc -l\" is one argument, taken as a command's name \
             (arguments are passed exactly); for a shell command line write: \
             exec -- bash -c 'grep x f | wc -l'"
        );
        assert_eq!(
            one_word_advice("echo it's"),
            "hint: \"echo it's\" is one argument, taken as a command's name (arguments \
             are passed exactly); for a shell command line write: exec -- bash -c 'echo it'\\''s'"
        );
    }

    #[test]
    fn splits_env_and_command() {
        let id = "0b6f2c4e-3f7a-4d1e-9c55-2a9e8e1d7b10";
        assert_eq!(
            split_words(w(&["ls", "-l"])).unwrap(),
            (None, w(&["ls", "-l"]))
        );
        assert_eq!(split_words(w(&["--", "ls"])).unwrap(), (None, w(&["ls"])));
        assert_eq!(
            split_words(w(&["myenv", "--", "ls", "--"])).unwrap(),
            (Some("myenv".into()), w(&["ls", "--"]))
        );
        assert_eq!(
            split_words(w(&[id, "ls"])).unwrap(),
            (Some(id.into()), w(&["ls"]))
        );
        assert_eq!(split_words(w(&[id])).unwrap(), (None, w(&[id])));
        assert!(split_words(w(&["--"])).is_err());
        assert!(split_words(w(&["env", "--"])).is_err());
    }
}

//! The command-line front end: argument parsing, client set-up and one
//! function per subcommand. `main` maps every outcome to an exit code:
//! 0 success, 1 failure, 2 usage error, 130 after Ctrl-C, 0 on a broken pipe.

mod args;
mod connect;
mod context;
mod cp;
mod environments;
mod exec;
mod output;
mod plugin;
mod sessions;

use std::io::Write as _;
use std::process::ExitCode;

use clap::{CommandFactory, Parser};

pub use args::{Cli, Command, GlobalArgs, OutputFormat};

/// A failure the CLI reports: a message chain printed once, and the exit code.
#[derive(Debug)]
pub struct CliError {
    message: String,
    code: u8,
}

impl CliError {
    /// A failure with exit code 1.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            code: 1,
        }
    }

    /// A failure with a specific exit code.
    pub fn with_code(message: impl Into<String>, code: u8) -> Self {
        Self {
            message: message.into(),
            code,
        }
    }
}

pub use cloudshell_rs::error_chain as chain;

impl From<cloudshell_rs::Error> for CliError {
    /// A request the library refused to send (a malformed argument) is a
    /// usage error, exit code 2; anything else exit code 1.
    fn from(e: cloudshell_rs::Error) -> Self {
        let code = if matches!(e, cloudshell_rs::Error::Validation(_)) {
            2
        } else {
            1
        };
        CliError::with_code(chain(&e), code)
    }
}

impl From<std::io::Error> for CliError {
    fn from(e: std::io::Error) -> Self {
        CliError::new(chain(&e))
    }
}

/// Result type of subcommands.
pub type CliResult<T = ()> = Result<T, CliError>;

/// Entry point: parse, run, map to an exit code.
pub fn main() -> ExitCode {
    if let Some(code) = plugin::main_if_plugin() {
        return code;
    }
    let cli = Cli::parse();
    if let Command::SessionManagerPlugin(args) = cli.command {
        return plugin::run(args.args);
    }
    if cli.global.debug {
        init_tracing();
    }
    if let Command::Completions(args) = &cli.command {
        let mut cmd = Cli::command();
        clap_complete::generate(
            args.shell,
            &mut cmd,
            "cloudshell-rs",
            &mut std::io::stdout(),
        );
        return ExitCode::SUCCESS;
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cloudshell-rs: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result = runtime.block_on(run(cli));
    // Do not wait for stray background tasks (e.g. an in-process emulator).
    runtime.shutdown_background();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if !e.message.is_empty() {
                let _ = writeln!(std::io::stderr(), "cloudshell-rs: {}", e.message);
                if let Some(hint) = hint_for(&e.message) {
                    let _ = writeln!(std::io::stderr(), "cloudshell-rs: {hint}");
                }
            }
            ExitCode::from(e.code)
        }
    }
}

/// What to do about a failure whose cause is outside this program, when
/// the message shows one: an IAM Identity Center (SSO) sign-in that is
/// missing or expired, which only `aws sso login` can renew.
fn hint_for(message: &str) -> Option<&'static str> {
    let m = message.to_ascii_lowercase();
    let credentials = m.contains("could not load aws credentials")
        || m.contains("cannot resolve local aws credentials");
    let sso_sign_in = credentials
        && (m.contains("sso token") || m.contains("/sso/cache/") || m.contains("sso oidc"));
    sso_sign_in.then_some(
        "the profile signs in through AWS IAM Identity Center (SSO) and has no valid \
         sign-in: run `aws sso login` with the same profile, then try again",
    )
}

/// Debug logs on stderr; `CLOUDSHELL_RS_LOG` (an `EnvFilter`) chooses what.
pub(crate) fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("CLOUDSHELL_RS_LOG").unwrap_or_else(|_| {
        EnvFilter::new("cloudshell_rs=debug,cloudshell_emulator=debug,ssm_channel=debug")
    });
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colours only for a terminal, not in a log file or a pipe.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(true)
        .try_init();
}

async fn run(cli: Cli) -> CliResult {
    let Cli { global, command } = cli;
    #[cfg(feature = "local")]
    if let Command::Emulator(args) = &command {
        return context::run_emulator(&global, args).await;
    }
    let ctx = context::Context::new(&global).await?;
    let out = output::Printer::new(global.output);
    match command {
        Command::Describe => environments::describe(&ctx, &out).await,
        Command::Create(a) => environments::create(&ctx, &out, a).await,
        Command::Status(a) => environments::status(&ctx, &out, a.env).await,
        Command::Start(a) => environments::start(&ctx, &out, a).await,
        Command::Stop(a) => environments::stop(&ctx, &out, a.env).await,
        Command::Delete(a) => environments::delete(&ctx, &out, a.env).await,
        Command::Session(a) => sessions::create(&ctx, &out, a).await,
        Command::DeleteSession(a) => sessions::delete(&ctx, &out, a).await,
        Command::Heartbeat(a) => sessions::heartbeat(&ctx, &out, a).await,
        Command::UploadUrls(a) => sessions::file_urls(&ctx, &out, a, true).await,
        Command::DownloadUrls(a) => sessions::file_urls(&ctx, &out, a, false).await,
        Command::PutCredentials(a) => sessions::put_credentials(&ctx, &out, a).await,
        Command::Exec(a) => exec::run(&ctx, &global, a).await,
        Command::Connect(a) => connect::connect(&ctx, &global, a).await,
        Command::SessionManagerPlugin(_) => Ok(()),
        Command::Cp(a) => cp::run(&ctx, &global, a).await,
        Command::Completions(_) => Ok(()),
        #[cfg(feature = "local")]
        Command::Emulator(_) => Ok(()),
    }
}

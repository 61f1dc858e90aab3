//! Command-line definitions (clap). Every subcommand carries examples in its
//! long help.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

const AFTER_HELP: &str = "\
Examples:
  cloudshell-rs --local describe            # try it offline against the built-in emulator
  cloudshell-rs describe                    # list your CloudShell environments
  cloudshell-rs --profile dev --region eu-west-1 status
  cloudshell-rs start --wait                # start the default environment and wait for RUNNING
  cloudshell-rs --output json describe | jq '.Environments[].EnvironmentId'

Credentials and region come from the standard AWS configuration (environment
variables, ~/.aws/config and ~/.aws/credentials, SSO, assume-role,
credential_process, container and instance credentials).
ENV is an environment id or a VPC environment's name; where it is optional,
the default (non-VPC) environment is used.";

/// AWS CloudShell from your terminal.
#[derive(Debug, Parser)]
#[command(name = "cloudshell-rs", version, about, long_about = None, after_long_help = AFTER_HELP)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Options accepted by every subcommand.
#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// AWS profile to use (default: AWS_PROFILE, then "default").
    // AWS_PROFILE is read by the client itself: a profile it names that is
    // not defined may be fine (environment credentials come first), a
    // `--profile` that is not defined is an error.
    #[arg(long, global = true)]
    pub profile: Option<String>,

    /// AWS region (default: AWS_REGION / AWS_DEFAULT_REGION, then the profile's region).
    #[arg(long, global = true)]
    pub region: Option<String>,

    /// Send requests to this endpoint instead of https://cloudshell.REGION.amazonaws.com
    /// (AWS_ENDPOINT_URL_CLOUDSHELL and AWS_ENDPOINT_URL are honoured too).
    #[arg(long, global = true, value_name = "URL")]
    pub endpoint_url: Option<String>,

    /// Output format: table for people, json (stable) for scripts, text (tab-separated).
    #[arg(long, global = true, value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,

    /// Log requests, retries and protocol events to stderr (secrets are redacted).
    #[arg(long, global = true)]
    pub debug: bool,

    /// Use the local emulator (started in-process on 127.0.0.1) instead of AWS.
    /// No AWS account or configuration needed.
    #[arg(long, global = true)]
    pub local: bool,

    /// State directory of the local emulator (with --local, and for `emulator`).
    #[arg(
        long,
        global = true,
        value_name = "DIR",
        env = "CLOUDSHELL_RS_STATE_DIR"
    )]
    pub state_dir: Option<PathBuf>,
}

/// How results are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// Aligned columns for people.
    Table,
    /// JSON with the service's PascalCase member names; stable for scripts.
    Json,
    /// Tab-separated values, one record per line.
    Text,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// List your CloudShell environments in the region.
    #[command(
        after_long_help = "Examples:\n  cloudshell-rs describe\n  cloudshell-rs --output json describe"
    )]
    Describe,

    /// Create an environment (the default one, or a VPC environment).
    #[command(after_long_help = "\
Without options this returns the default environment, creating it if needed
(the service treats it as get-or-create). A VPC environment needs a name, a VPC,
at least one subnet and one to five security groups; at most two VPC
environments exist per principal.

Examples:
  cloudshell-rs create
  cloudshell-rs create --name my-vpc-env --vpc-id vpc-0123456789abcdef0 \\
      --subnet-ids subnet-1,subnet-2 --security-group-ids sg-1,sg-2")]
    Create(CreateArgs),

    /// Show an environment's status.
    #[command(
        after_long_help = "Examples:\n  cloudshell-rs status\n  cloudshell-rs status 0b6f2c4e-3f7a-4d1e-9c55-2a9e8e1d7b10"
    )]
    Status(EnvArg),

    /// Start a SUSPENDED environment.
    #[command(after_long_help = "\
The service accepts this only for a SUSPENDED environment. With --wait the
command waits until the environment is RUNNING (and, if it is still
SUSPENDING, waits for that first), printing each state change.

Examples:
  cloudshell-rs start --wait
  cloudshell-rs start 0b6f2c4e-3f7a-4d1e-9c55-2a9e8e1d7b10")]
    Start(StartArgs),

    /// Stop (suspend) a RUNNING environment. Its home directory is kept.
    #[command(
        after_long_help = "Examples:\n  cloudshell-rs stop\n  cloudshell-rs stop 0b6f2c4e-3f7a-4d1e-9c55-2a9e8e1d7b10"
    )]
    Stop(EnvArg),

    /// Delete an environment and its home directory.
    #[command(after_long_help = "\
The environment (id or name) is required: deleting removes the home directory for good.

Example:
  cloudshell-rs delete 0b6f2c4e-3f7a-4d1e-9c55-2a9e8e1d7b10")]
    Delete(DeleteArgs),

    /// Create a session (CreateSession) and print its stream URL and session id.
    #[command(after_long_help = "\
The session token is a credential: it is printed only with --show-token.
The same --tab-id re-attaches to the same shell (CloudShell runs it in tmux).

Examples:
  cloudshell-rs session
  cloudshell-rs session --tab-id $(uuidgen) --output json --show-token")]
    Session(SessionArgs),

    /// Delete a session (DeleteSession). Deleting an unknown session is not an error.
    #[command(
        after_long_help = "Example:\n  cloudshell-rs delete-session 1700000000000000000-0123456789abcdef0"
    )]
    DeleteSession(DeleteSessionArgs),

    /// Send a heartbeat so the environment is not suspended for inactivity.
    #[command(after_long_help = "\
CloudShell suspends an environment after 20-30 minutes without activity.
A heartbeat counts as activity. With --every the command keeps sending until
Ctrl-C.

Examples:
  cloudshell-rs heartbeat
  cloudshell-rs heartbeat --every 60")]
    Heartbeat(HeartbeatArgs),

    /// Get presigned S3 URLs to upload a file into the environment.
    #[command(
        visible_alias = "upload",
        after_long_help = "\
Prints the presigned POST URL and form fields the Console uses to upload a file.
The SSE-C key in the fields is a secret: it is printed only with --show-secrets.

Examples:
  cloudshell-rs upload-urls --path notes.txt
  cloudshell-rs upload --output json --show-secrets"
    )]
    UploadUrls(FileUrlArgs),

    /// Get presigned S3 URLs to download a file from the environment.
    #[command(
        visible_alias = "download",
        after_long_help = "\
Examples:
  cloudshell-rs download-urls --path /home/cloudshell-user/notes.txt
  cloudshell-rs download --output json --show-secrets"
    )]
    DownloadUrls(FileUrlArgs),

    /// Forward console credentials to the environment (PutCredentials).
    #[command(after_long_help = "\
PutCredentials takes a KeyBase and a RefreshToken obtained through the AWS
Console's sign-in flow (RedeemCode). The refresh token is a secret, so it is
read from the environment variable CLOUDSHELL_RS_REFRESH_TOKEN or from standard
input, never from the command line.

Example:
  printf '%s' \"$TOKEN\" | cloudshell-rs put-credentials --key-base \"$KEYBASE\"

To give a shell your own local credentials instead, see `connect --inject-credentials`.")]
    PutCredentials(PutCredentialsArgs),

    /// Open an interactive shell in an environment (native data channel, no plugin).
    #[command(after_long_help = "\
Finds (or creates) the environment, starts it if it is suspended, waits until it
is RUNNING, creates a session and connects to it natively. The local terminal is
put into raw mode (Ctrl-C, Ctrl-Z and Ctrl-\\ go to the remote shell) and
restored on exit. Enter ~. disconnects, ~~ sends a literal ~, ~? lists escapes.
A heartbeat is sent every --heartbeat-secs while connected. When the connection
drops, the client resumes the same session (unacknowledged data is sent again
both ways, nothing lost or repeated); if the service refuses, a new session for
the same tab re-attaches to the same shell and input that was not acknowledged
is sent again (--no-reconnect: neither). With stdin/stdout as pipes the shell
runs the piped input; end of input sends Ctrl-D (EOF) to the remote shell.

Examples:
  cloudshell-rs connect
  cloudshell-rs --local connect
  cloudshell-rs connect --tab-id 4f9c2a2e-6a53-4b1e-8c5e-0d7c9f1e2a3b   # re-attach later
  echo 'uname -a' | cloudshell-rs connect")]
    Connect(super::connect::ConnectArgs),

    /// Drop-in replacement for session-manager-plugin (used by `aws ssm start-session`).
    #[command(
        name = "session-manager-plugin",
        after_long_help = "\
Takes the arguments the AWS CLI passes to session-manager-plugin:
  <StartSession response JSON> <region> StartSession [profile] [parameters JSON] [endpoint]
and opens the session natively. The response may instead be in an
environment variable whose name (AWS_SSM_START_SESSION_RESPONSE...) is the
first argument, as today's AWS CLI passes it. Without arguments it prints the
plugin's installation message; with --version, the plugin version whose
protocol it speaks. Installing (or linking) this binary under the name
session-manager-plugin has the same effect.

Example:
  ln -s \"$(command -v cloudshell-rs)\" ~/bin/session-manager-plugin"
    )]
    SessionManagerPlugin(PluginArgs),

    /// Print shell completions (bash, zsh, fish, elvish, powershell).
    #[command(
        after_long_help = "Examples:\n  cloudshell-rs completions bash > ~/.local/share/bash-completion/completions/cloudshell-rs\n  cloudshell-rs completions zsh > ~/.zfunc/_cloudshell-rs"
    )]
    Completions(CompletionsArgs),

    /// Run the local CloudShell emulator (REST API + data channel) in the foreground.
    #[cfg(feature = "local")]
    #[command(after_long_help = "\
Prints the endpoint and the credentials it accepts, ready to paste.

Example:
  cloudshell-rs emulator --port 4566
  export AWS_ENDPOINT_URL_CLOUDSHELL=http://127.0.0.1:4566 AWS_REGION=us-east-1
  export AWS_ACCESS_KEY_ID=... AWS_SECRET_ACCESS_KEY=...
  cloudshell-rs describe

Sessions run a real bash on a pty by default; --session-mode, --handshake and
--fault change that for tests and benchmarks:
  cloudshell-rs emulator --session-mode echo --fault drop:in:0.05 --fault seed:1

State (environments, home directories) is kept in --state-dir (default: the
user's data directory), so it survives restarts.")]
    Emulator(EmulatorArgs),

    /// Run a command in an environment, like `ssh host cmd`.
    #[command(after_long_help = "\
stdout and stderr arrive byte for byte and apart; the exit code is the
command's (128+N when a signal N killed it; 127 when it is not found, 126 when
it cannot be run). Arguments are passed exactly, with
no shell in between: use `bash -c '...'` for pipes and variables. A piped stdin
feeds the command and its end is delivered as EOF; with a terminal on stdin
the command reads /dev/null. Ctrl-C interrupts the remote command (exit 130).
With -t the command runs on the remote terminal itself, as with `ssh -t`:
for editors, pagers, `top` and prompts.

Examples:
  cloudshell-rs exec -- uname -a
  cloudshell-rs exec -t -- htop
  printf 'a\\nb\\n' | cloudshell-rs exec -- wc -l
  cloudshell-rs exec --timeout 60 -- bash -c 'make test 2>&1 | tail'
  cloudshell-rs exec --inject-credentials -- aws sts get-caller-identity
  cloudshell-rs exec 0b6f2c4e-3f7a-4d1e-9c55-2a9e8e1d7b10 -- df -h")]
    Exec(super::exec::ExecArgs),

    /// Copy files and directories to or from an environment, like scp.
    #[command(after_long_help = "\
ENV:PATH names a path in environment ENV (an id, or a VPC environment's
name); :PATH a path in the default environment; anything else is local. As in
scp, a colon before the first slash makes an operand remote: write ./a:b (or
an absolute path) for a local file whose name contains a colon. Remote paths
are relative to the home directory; ~/ works too. A remote source with *, ?
or [ is a pattern, expanded by the environment's shell (quote it so that
yours leaves it alone; a backslash makes a character literal).

Every copy is verified end to end with SHA-256 and written under a temporary
name next to the destination, renamed into place only when the hashes match:
an interrupted or failed copy never leaves a partial file, and a file that
changes while it is copied is not kept (one that only grew is copied as it
was when the copy began). Modes are kept; times with -p. With several
sources the destination must be a directory, and two with the same name are
refused. Trees (-r) keep symbolic links as links and are never merged into an
existing directory.

Examples:
  cloudshell-rs cp report.pdf :~/                    # into the home directory
  cloudshell-rs cp -r ./project :work/               # a tree
  cloudshell-rs cp :logs/app.log .                   # download
  cloudshell-rs cp ':logs/*.log' ./logs/             # a remote pattern
  cloudshell-rs cp -p a.txt b.txt my-vpc-env:/tmp/   # keep times; a VPC environment by name
  cloudshell-rs cp --via s3 :notes.txt .             # through S3 whatever the size, as the Console does
  cloudshell-rs --output json cp data.csv :~/        # one JSON line per copy (bytes, sha256)")]
    Cp(super::cp::CpArgs),
}

/// An optional environment (id or name).
#[derive(Debug, Args)]
pub struct EnvArg {
    /// Environment id or name (default: the default environment).
    #[arg(value_name = "ENV")]
    pub env: Option<String>,
}

/// Arguments of `create`.
#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Environment name (required for a VPC environment).
    #[arg(long)]
    pub name: Option<String>,
    /// VPC id (vpc-...) for a VPC environment.
    #[arg(long, requires_all = ["subnet_ids", "security_group_ids"])]
    pub vpc_id: Option<String>,
    /// Comma-separated subnet ids (subnet-...).
    #[arg(long, value_delimiter = ',', requires = "vpc_id")]
    pub subnet_ids: Vec<String>,
    /// Comma-separated security group ids (sg-...), one to five.
    #[arg(long, value_delimiter = ',', requires = "vpc_id")]
    pub security_group_ids: Vec<String>,
}

/// Arguments of `start`.
#[derive(Debug, Args)]
pub struct StartArgs {
    /// Environment id or name (default: the default environment).
    #[arg(value_name = "ENV")]
    pub env: Option<String>,
    /// Wait until the environment is RUNNING.
    #[arg(long)]
    pub wait: bool,
    /// How long --wait waits.
    #[arg(long, default_value_t = 300, value_name = "SECS")]
    pub timeout_secs: u64,
}

/// Arguments of `delete`.
#[derive(Debug, Args)]
pub struct DeleteArgs {
    /// Environment id or name.
    #[arg(value_name = "ENV")]
    pub env: String,
}

/// Arguments of `session`.
#[derive(Debug, Args)]
pub struct SessionArgs {
    /// Environment id or name (default: the default environment).
    #[arg(value_name = "ENV")]
    pub env: Option<String>,
    /// Tab id (UUID v4); a new one is generated when absent.
    #[arg(long, value_parser = tab_id)]
    pub tab_id: Option<String>,
    /// Session type.
    #[arg(long, default_value = "TMUX")]
    pub session_type: String,
    /// Disable the Amazon Q CLI integration in the shell.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, value_name = "BOOL")]
    pub q_cli_disabled: bool,
    /// Also print the session token (a credential).
    #[arg(long)]
    pub show_token: bool,
}

/// Arguments of `delete-session`.
#[derive(Debug, Args)]
pub struct DeleteSessionArgs {
    /// Session id, as printed by `session`.
    #[arg(value_name = "SESSION_ID")]
    pub session_id: String,
    /// Environment id or name (default: the default environment).
    #[arg(value_name = "ENV")]
    pub env: Option<String>,
}

/// Arguments of `heartbeat`.
#[derive(Debug, Args)]
pub struct HeartbeatArgs {
    /// Environment id or name (default: the default environment).
    #[arg(value_name = "ENV")]
    pub env: Option<String>,
    /// Keep sending a heartbeat every SECS seconds until Ctrl-C.
    #[arg(long, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..))]
    pub every: Option<u64>,
}

/// Arguments of `upload-urls` / `download-urls`.
#[derive(Debug, Args)]
pub struct FileUrlArgs {
    /// Environment id or name (default: the default environment).
    #[arg(value_name = "ENV")]
    pub env: Option<String>,
    /// Path of the file in the environment (upload: name or destination; download:
    /// absolute path). The service expects one; without it `upload` and
    /// `download` are sent (the earlier tool sent none).
    #[arg(long, value_name = "PATH")]
    pub path: Option<String>,
    /// Also print the SSE-C encryption key (a secret).
    #[arg(long)]
    pub show_secrets: bool,
}

/// Arguments of `put-credentials`.
#[derive(Debug, Args)]
pub struct PutCredentialsArgs {
    /// Environment id or name (default: the default environment).
    #[arg(value_name = "ENV")]
    pub env: Option<String>,
    /// The KeyBase from the console sign-in.
    #[arg(long)]
    pub key_base: String,
}

/// Arguments of `completions`.
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to generate completions for.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

/// Arguments of `emulator`.
#[cfg(feature = "local")]
#[derive(Debug, Args)]
pub struct EmulatorArgs {
    /// Port to listen on (127.0.0.1). 0 picks a free port.
    #[arg(long, default_value_t = 0)]
    pub port: u16,
    /// Use the reference's real-world delays (creation ~15 s, resume ~7 s)
    /// instead of the fast defaults.
    #[arg(long)]
    pub realistic: bool,
    /// What new sessions run: `shell` (bash on a pty), `echo` (input comes
    /// back), `stream:BYTES[:CHUNK]` (that much output, then close),
    /// `port:PORT` (a port session relayed to 127.0.0.1:PORT, as
    /// AWS-StartSSHSession makes one), `forward:PORT` (local port
    /// forwarding to 127.0.0.1:PORT, one smux stream per connection, as
    /// AWS-StartPortForwardingSession makes one), `forward-basic:PORT`
    /// (the same from an agent that does not multiplex: one connection at a
    /// time), or `command:COMMAND` (`sh -c COMMAND` with no terminal, its
    /// stdout, stderr and exit code sent apart, as
    /// AWS-StartNonInteractiveCommand runs one).
    #[arg(long, value_name = "MODE", default_value = "shell")]
    pub session_mode: cloudshell_emulator::gateway::SessionMode,
    /// Handshake of new sessions: `none` (plain shell, like CloudShell),
    /// `session-type`, `port` (announces a local port-forwarding session), or
    /// `kms[:KEY_ID]` (KMS-encrypted session).
    #[arg(long, value_name = "MODE", default_value = "none")]
    pub handshake: cloudshell_emulator::gateway::HandshakeMode,
    /// Fault injection on every session's frames, e.g. `drop:in:5`,
    /// `dup:out:0.1`, `reorder:both:0.05`, `delay:out:0.2:150`,
    /// `cut:frames:40`, `cut:bytes:65536`, `cut:input:30` (right after the
    /// client's 30th input message, its acknowledgement lost), `seed:7`.
    /// Repeatable.
    #[arg(long, value_name = "RULES")]
    pub fault: Vec<String>,
    /// Largest output payload per message (the agent's default is 1024).
    #[arg(long, value_name = "BYTES")]
    pub chunk_size: Option<usize>,
    /// The SSM agent version sessions report in their handshake (default
    /// 3.3.1142.0; 3.0.196.0 with forward-basic). Port sessions of agents up
    /// to 2.3.722.0 ignore the TerminateSession flag, as those agents do: a
    /// client ends them with `ssm:TerminateSession`.
    #[arg(long, value_name = "VERSION")]
    pub agent_version: Option<String>,
    /// Run each shell inside tmux, as CloudShell does: clients then get
    /// tmux's rendering of the terminal (needs `tmux` on the PATH).
    #[arg(long)]
    pub tmux: bool,
}

/// Arguments of `session-manager-plugin`: passed through unchanged.
#[derive(Debug, Args)]
pub struct PluginArgs {
    /// The plugin's positional arguments.
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "ARGS"
    )]
    pub args: Vec<std::ffi::OsString>,
}

/// `--tab-id`: a UUID version 4, checked as CreateSession checks it, so a
/// typo is a usage error before anything is sent.
pub fn tab_id(s: &str) -> Result<String, String> {
    cloudshell_rs::client::operations::validate_tab_id(s)
        .map(|()| s.to_owned())
        .map_err(|e| e.reason)
}

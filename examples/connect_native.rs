//! An interactive CloudShell shell from the library: create a session, connect
//! natively and pump the terminal.
//!
//! ```text
//! cargo run --example connect_native -- [--profile PROFILE] [--region REGION] [--endpoint-url URL] [--env ENV_ID] [--inject-credentials [true|false]]
//! ```
//!
//! Credentials come from the standard AWS chain (environment variables,
//! profiles, SSO, ...). Against the emulator
//! (`cloudshell-rs emulator` prints the endpoint and credentials to export):
//!
//! ```text
//! cargo run --example connect_native -- --endpoint-url http://127.0.0.1:4566
//! ```
//!
//! `--inject-credentials` (or `--inject-credentials true`) makes the local
//! credentials available in the remote shell without showing them: see
//! `cloudshell_rs::credentials`.
//!
//! Type `exit` (or Enter `~.`) to leave.

use std::io::IsTerminal as _;
use std::time::Duration;

use cloudshell_rs::Client;
use cloudshell_rs::credentials::{InjectOptions, Injection};
use cloudshell_rs::exec::ExecOptions;
use cloudshell_rs::session::{Session, SessionOptions, SessionTarget};
use cloudshell_rs::terminal::{self, AtEof, PumpOptions, RawModeGuard};

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

/// `--inject-credentials`, alone or followed by `true` (`false` turns it off).
fn inject_credentials() -> bool {
    let args: Vec<String> = std::env::args().collect();
    match args.iter().position(|a| a == "--inject-credentials") {
        Some(i) => args.get(i + 1).map(String::as_str) != Some("false"),
        None => false,
    }
}

// `pub(crate)` so that `connect_via_ssm.rs` can run this example under the
// earlier project's example name.
#[tokio::main(flavor = "current_thread")]
pub(crate) async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let endpoint = arg("--endpoint-url");
    let mut builder = Client::builder();
    if let Some(p) = arg("--profile") {
        builder = builder.profile(p);
    }
    if let Some(r) = arg("--region") {
        builder = builder.region(r);
    }
    if let Some(e) = &endpoint {
        builder = builder.endpoint_url(e.clone());
    }
    let client = builder.build().await?;
    // AWS endpoints: only their region's message gateway; an emulator hands
    // out ws://127.0.0.1 stream URLs.
    let options = SessionOptions::for_client(&client);
    // The data channel's connection (TCP, TLS) is made while the API calls
    // below are: on AWS, the session is ready a round trip or two sooner.
    cloudshell_rs::session::preconnect(&options);

    let env = match arg("--env") {
        Some(e) => e,
        None => client.find_or_create_default().await?,
    };
    eprintln!("waiting for {env} ...");
    client
        .wait_until_running(&env, Duration::from_secs(300), |s| eprintln!("  {s}"))
        .await?;
    let out = client
        .create_session()
        .environment_id(env.clone())
        .tab_id(uuid::Uuid::new_v4().to_string())
        .send()
        .await?;
    let session_id = out.session_id.clone();
    let target = SessionTarget::from(out);
    let session = Session::connect(target, options.clone()).await?;
    let injection = if inject_credentials() {
        // A separate, hidden run writes the values into a private file in the
        // environment; the shell is only told to load that file.
        let injection = Injection::start(
            &client,
            &env,
            InjectOptions::new().exec_options(ExecOptions::new().session_options(options)),
        )
        .await?;
        session.send_input(&injection.shell_line()).await?;
        Some(injection)
    } else {
        None
    };

    let interactive = std::io::stdin().is_terminal() && std::io::stdout().is_terminal();
    let guard = if interactive {
        Some(RawModeGuard::enable()?)
    } else {
        None
    };
    let result = terminal::pump(
        session,
        PumpOptions {
            escapes: interactive,
            forward_resize: interactive,
            at_eof: AtEof::SendEot,
        },
    )
    .await;
    drop(guard);
    if let Some(injection) = injection {
        injection.finish().await?;
    }
    client
        .delete_session()
        .environment_id(env)
        .session_id(session_id)
        .send()
        .await?;
    eprintln!("session ended: {:?}", result?);
    Ok(())
}

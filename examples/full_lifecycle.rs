//! The whole life of a CloudShell session from the library: find or create the
//! default environment, wait for it, open a session, run a command natively,
//! get file transfer URLs, send a heartbeat, clean up (the environment is kept).
//!
//! ```text
//! cargo run --example full_lifecycle -- [--profile PROFILE] [--region REGION] [--endpoint-url URL]
//! ```
//!
//! Credentials come from the standard AWS chain. Against the emulator:
//! `cloudshell-rs emulator` prints the endpoint and the credentials to export.

use std::time::Duration;

use cloudshell_rs::Client;
use cloudshell_rs::session::{Session, SessionEvent, SessionOptions, SessionTarget};

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
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

    // 1. The default environment, created if needed, and RUNNING.
    let env = client.find_or_create_default().await?;
    println!("environment: {env}");
    let status = client
        .wait_until_running(&env, Duration::from_secs(300), |s| {
            println!("  status: {s}")
        })
        .await?;
    println!("ready: {status}");

    // 2. A session for a new tab, connected natively.
    let tab = uuid::Uuid::new_v4().to_string();
    let out = client
        .create_session()
        .environment_id(env.clone())
        .tab_id(tab.clone())
        .send()
        .await?;
    let session_id = out.session_id.clone();
    println!("session: {session_id} (tab {tab})");
    // AWS endpoints: only their region's message gateway; an emulator hands
    // out ws://127.0.0.1 stream URLs.
    let options = SessionOptions::for_client(&client);
    let mut session = Session::connect(SessionTarget::from(out), options).await?;

    // 3. Run a command and collect its output until the shell exits.
    session
        .send_input(b"echo \"hello from $(whoami) in $PWD\"; exit\r")
        .await?;
    let mut output = Vec::new();
    while let Some(ev) = session.next_event().await {
        match ev {
            SessionEvent::Output(b) => output.extend_from_slice(&b),
            SessionEvent::Closed { .. } => break,
            SessionEvent::Failed(e) => return Err(e.into()),
            _ => {}
        }
    }
    let text = String::from_utf8_lossy(&output);
    match text.lines().find(|l| l.starts_with("hello from")) {
        Some(line) => println!("remote said: {}", line.trim_end()),
        None => println!("remote output: {text:?}"),
    }

    // 4. File transfer URLs (the SSE-C key is a secret and is not printed).
    let up = client
        .get_file_upload_urls()
        .environment_id(env.clone())
        .file_upload_path("notes.txt")
        .send()
        .await?;
    println!(
        "upload URL: {}",
        up.file_upload_presigned_url.unwrap_or_default()
    );
    let down = client
        .get_file_download_urls()
        .environment_id(env.clone())
        .file_download_path("/home/cloudshell-user/notes.txt")
        .send()
        .await?;
    println!(
        "download URL: {}",
        down.file_download_presigned_url.unwrap_or_default()
    );

    // 5. A heartbeat keeps the environment from being suspended as idle.
    client
        .send_heart_beat()
        .environment_id(env.clone())
        .send()
        .await?;
    println!("heartbeat sent");

    // 6. Clean up the session; the environment (and its home directory) stays.
    client
        .delete_session()
        .environment_id(env.clone())
        .session_id(session_id)
        .send()
        .await?;
    println!("session deleted; environment {env} kept");
    Ok(())
}

//! Credential injection against the emulator: the secret must never appear in
//! what the client receives, in logs, in the remote history or in any
//! command line, and must be usable in the remote shell.

use crate::exec_support::{Emu, start_emulator};
use aws_credential_types::Credentials;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider, future};
use cloudshell_rs::credentials::{self, AwsEnv, InjectOptions, Injection};
use cloudshell_rs::exec::{self, ExecOptions, Tap};
use cloudshell_rs::session::{Session, SessionEvent, SessionOptions, SessionTarget};
use sha2::Digest;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

fn sha(s: &str) -> String {
    hex::encode(sha2::Sha256::digest(s.as_bytes()))
}

fn secret(n: u32) -> String {
    format!("wJalrXUtnFEMI/K7MDENG+bPxRfiCY{n:04}SECRETKEY")
}
fn token(n: u32) -> String {
    format!("IQoJb3JpZ2luX2VjEJr//////////wEaCXVzLWVhc3QtMSJHMEUCIQD{n:04}TOKEN+/=")
}
fn key_id(n: u32) -> String {
    format!("ASIAEXAMPLE{n:04}KEY")
}

/// Gives a new set of temporary credentials on every call.
#[derive(Debug, Default)]
struct Rotating(AtomicU32);

impl ProvideCredentials for Rotating {
    fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        let n = self.0.fetch_add(1, Ordering::SeqCst);
        let expiry = std::time::SystemTime::now() + std::time::Duration::from_secs(3600);
        future::ProvideCredentials::ready(Ok(Credentials::new(
            key_id(n),
            secret(n),
            Some(token(n)),
            Some(expiry),
            "rotating",
        )))
    }
}

type Captured = Arc<Mutex<Vec<u8>>>;

fn tap(c: &Captured) -> Tap {
    let c = c.clone();
    Tap::new(move |b| c.lock().unwrap().extend_from_slice(b))
}

/// A log writer collecting everything the subscriber writes.
#[derive(Clone, Default)]
struct LogSink(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for LogSink {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn assert_absent(haystack: &[u8], needles: &[String], what: &str) {
    let h = String::from_utf8_lossy(haystack);
    for n in needles {
        assert!(!h.contains(n.as_str()), "a secret value appeared in {what}");
    }
}

#[tokio::test(flavor = "current_thread")]
async fn credentials_exec_exports_without_exposing() {
    let logs = LogSink::default();
    let l2 = logs.clone();
    let _guard = tracing::subscriber::set_default(
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_writer(move || l2.clone())
            .finish(),
    );
    let emu = start_emulator().await;
    let creds = Credentials::new(key_id(7), secret(7), Some(token(7)), None, "t");
    let env = AwsEnv::new(&creds, "eu-central-1");
    let captured = Captured::default();
    let opts = credentials::exec_options(ExecOptions::new().tap(tap(&captured)), &env);
    let script = r#"for v in AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY AWS_SESSION_TOKEN; do printf %s "${!v}" | sha256sum; done
echo "$AWS_REGION $AWS_DEFAULT_REGION"; ps -eo args; cat /proc/*/cmdline 2>/dev/null | tr '\0' ' '"#;
    let out = exec::run(&emu.client, &emu.env, &["bash", "-c", script], opts)
        .await
        .unwrap();
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let mut lines = stdout.lines();
    for want in [key_id(7), secret(7), token(7)] {
        assert_eq!(
            lines.next().unwrap().split_whitespace().next().unwrap(),
            sha(&want)
        );
    }
    assert_eq!(lines.next().unwrap(), "eu-central-1 eu-central-1");
    let secrets = [secret(7), token(7), key_id(7)];
    assert_absent(&out.stdout, &secrets, "remote command lines");
    let cap = captured.lock().unwrap().clone();
    assert!(cap.len() > 100, "the tap saw the traffic");
    assert_absent(&cap, &secrets, "the bytes received from the channel");
    assert_absent(&logs.0.lock().unwrap(), &secrets, "the debug log");
    assert!(
        !logs.0.lock().unwrap().is_empty(),
        "the log captured something"
    );
}

/// An interactive session as `connect` has it, with every received byte kept.
struct Shell {
    session: Session,
    received: Vec<u8>,
    session_id: String,
}

impl Shell {
    async fn open(emu: &Emu) -> Shell {
        let created = emu
            .client
            .create_session()
            .environment_id(&emu.env)
            .tab_id(uuid::Uuid::new_v4().to_string())
            .send()
            .await
            .unwrap();
        let session_id = created.session_id.clone();
        let target = SessionTarget {
            stream_url: created.stream_url,
            token: created.token_value,
            session_id: created.session_id,
        };
        let session = Session::connect(target, SessionOptions::default().allow_any_host())
            .await
            .unwrap();
        Shell {
            session,
            received: Vec::new(),
            session_id,
        }
    }

    /// Types `line` (plus `; echo <marker>`) and waits for the marker's output.
    async fn run(&mut self, line: &str) -> String {
        let n: u32 = rand::random::<u32>() % 100_000;
        // The marker is computed by the shell so its echo never matches.
        let cmd = format!(" {line}; echo END$((100000+{n}))\r");
        let want = format!("END{}", 100_000 + n);
        let start = self.received.len();
        self.session.send_input(cmd.as_bytes()).await.unwrap();
        loop {
            let text = String::from_utf8_lossy(&self.received[start..]).to_string();
            if let Some(i) = text.find(&want) {
                return text[..i].to_string();
            }
            match self.session.next_event().await {
                Some(SessionEvent::Output(b)) => self.received.extend_from_slice(&b),
                Some(SessionEvent::Closed { .. }) | Some(SessionEvent::Failed(_)) | None => {
                    panic!("session ended")
                }
                _ => {}
            }
        }
    }
}

#[tokio::test(flavor = "current_thread")]
async fn credentials_injection_into_an_interactive_shell() {
    let logs = LogSink::default();
    let l2 = logs.clone();
    let _guard = tracing::subscriber::set_default(
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_writer(move || l2.clone())
            .finish(),
    );
    let emu = start_emulator().await;
    let helper_bytes = Captured::default();
    let provider = SharedCredentialsProvider::new(Rotating::default());
    let mut shell = Shell::open(&emu).await;
    let inj = Injection::start(
        &emu.client,
        &emu.env,
        InjectOptions::new()
            .provider(provider)
            .exec_options(ExecOptions::new().tap(tap(&helper_bytes))),
    )
    .await
    .unwrap();
    // Everything is typed the way `connect --inject-credentials` does.
    shell.session.send_input(&inj.shell_line()).await.unwrap();
    let out = shell.run(r#"printf %s "$AWS_SECRET_ACCESS_KEY" | sha256sum; printf %s "$AWS_SESSION_TOKEN" | sha256sum"#).await;
    assert!(out.contains(&sha(&secret(0))), "{out}");
    assert!(out.contains(&sha(&token(0))), "{out}");
    let out = shell
        .run(r#"echo "R=$AWS_REGION/$AWS_DEFAULT_REGION/${AWS_ACCESS_KEY_ID:0:4}""#)
        .await;
    assert!(out.contains("R=us-east-1/us-east-1/ASIA"), "{out}");
    let out = shell
        .run(r#"stat -c 'mode=%a' "$__csrs_aws_env_file" "${__csrs_aws_env_file%/*}""#)
        .await;
    assert!(
        out.contains("mode=600") && out.contains("mode=700"),
        "{out}"
    );

    // Refreshed credentials reach the shell at its next prompt, untyped.
    inj.refresh_now().await.unwrap();
    // The command typed now still runs with the old values; its prompt
    // re-reads the file.
    shell.run(":").await;
    let out = shell
        .run(r#"printf %s "$AWS_SECRET_ACCESS_KEY" | sha256sum"#)
        .await;
    assert!(
        out.contains(&sha(&secret(1))),
        "refreshed secret not picked up: {out}"
    );

    // Neither the history nor any command line holds a secret.
    let hist = shell
        .run("history; ps -eo args; cat /proc/[0-9]*/cmdline 2>/dev/null | tr '\\0' ' '")
        .await;
    assert!(hist.contains("history"), "{hist}");
    let hook = inj.hook_path().to_string();
    inj.finish().await.unwrap();
    let out = shell.run(&format!("[ -e '{hook}' ] || echo hook-removed; [ -e \"$__csrs_aws_env_file\" ] || echo file-removed")).await;
    assert!(
        out.contains("hook-removed\r\n") && out.contains("file-removed\r\n"),
        "{out}"
    );
    let _ = shell.session.send_input(b" exit\r").await;
    let _ = emu
        .client
        .delete_session()
        .environment_id(&emu.env)
        .session_id(&shell.session_id)
        .send()
        .await;

    let secrets = [
        secret(0),
        secret(1),
        token(0),
        token(1),
        key_id(0),
        key_id(1),
    ];
    assert_absent(
        &shell.received,
        &secrets,
        "the interactive session's received bytes",
    );
    assert_absent(
        &helper_bytes.lock().unwrap(),
        &secrets,
        "the helper runs' received bytes",
    );
    assert_absent(&logs.0.lock().unwrap(), &secrets, "the debug log");
    // The history file of the environment's home does not hold them either.
    let home = emu.emulator.gateway().home_dir(&emu.env);
    if let Ok(h) = std::fs::read(home.join(".bash_history")) {
        assert_absent(&h, &secrets, "the history file");
    }
}

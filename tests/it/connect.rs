//! `cloudshell-rs connect` and `session-manager-plugin`, run as the built binary.

use std::io::Write as _;
use std::os::fd::AsFd as _;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cloudshell_emulator::gateway::{HandshakeMode, SessionOptions as GwOptions};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::session_support::{self, within};

const BIN: &str = env!("CARGO_BIN_EXE_cloudshell-rs");

/// The terminal modes of the pty, as `stty -g` prints them.
fn stty_g(pts: &pty_process::Pts) -> String {
    let fd = pts.as_fd().try_clone_to_owned().unwrap();
    let out = Command::new("stty")
        .arg("-g")
        .stdin(Stdio::from(fd))
        .output()
        .unwrap();
    assert!(out.status.success(), "stty -g failed: {out:?}");
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// A command for the binary with a clean, local-only environment.
fn local_command(home: &std::path::Path) -> pty_process::Command {
    let mut cmd = pty_process::Command::new(BIN)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", home)
        .env("TERM", "xterm-256color")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_REGION", "us-east-1")
        .kill_on_drop(true);
    cmd = cmd.args(["--local", "--state-dir"]).arg(home.join("state"));
    cmd
}

/// Output collected from the pty by a background task.
#[derive(Clone, Default)]
struct Screen(Arc<Mutex<Vec<u8>>>);

impl Screen {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
    async fn wait_for(&self, needle: &str) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            if self.text().contains(needle) {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no {needle:?} on the screen: {:?}",
                self.text()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

#[tokio::test]
async fn connect_in_a_real_pty_runs_commands_and_restores_the_terminal() {
    let home = tempfile::tempdir().unwrap();
    let (mut writer, screen, mut child, pts, before, reader_task) =
        in_a_pty(local_command(home.path()).arg("connect"), 30, 100);

    within(120, async {
        screen.wait_for("# ").await;
        // Raw mode is on while connected.
        assert_ne!(stty_g(&pts), before, "the terminal is not in raw mode");
        writer.write_all(b"echo pty-$((6*7))\r").await.unwrap();
        screen.wait_for("pty-42").await;
        // The local size reached the remote side.
        writer.write_all(b"stty size\r").await.unwrap();
        screen.wait_for("30 100").await;
        // Ctrl-C reaches the remote shell as a byte and interrupts its command.
        writer.write_all(b"sleep 600\r").await.unwrap();
        screen.wait_for("sleep 600\r\n").await;
        writer.write_all(b"\x03").await.unwrap();
        writer
            .write_all(b"echo after-int-$((1+1))\r")
            .await
            .unwrap();
        screen.wait_for("after-int-2").await;
        writer.write_all(b"exit\r").await.unwrap();
        let status = child.wait().await.unwrap();
        assert!(
            status.success(),
            "exit status {status:?}; screen {:?}",
            screen.text()
        );
    })
    .await;
    // The terminal modes are back to what they were.
    assert_eq!(stty_g(&pts), before);
    drop(pts);
    reader_task.abort();
}

#[tokio::test]
async fn enter_tilde_dot_disconnects_and_restores_the_terminal() {
    let home = tempfile::tempdir().unwrap();
    let (mut writer, screen, mut child, pts, before, reader_task) =
        in_a_pty(local_command(home.path()).arg("connect"), 24, 80);
    within(120, async {
        screen.wait_for("# ").await;
        writer.write_all(b"echo one\r").await.unwrap();
        screen.wait_for("one\r\n").await;
        // `~~` sends one literal ~ (after Enter).
        writer.write_all(b"~~; echo tilde-ok\r").await.unwrap();
        screen.wait_for("tilde-ok").await;
        writer.write_all(b"~.").await.unwrap();
        let status = child.wait().await.unwrap();
        assert!(status.success(), "exit status {status:?}");
        screen.wait_for("disconnected").await;
    })
    .await;
    assert_eq!(stty_g(&pts), before);
    drop(pts);
    reader_task.abort();
}

/// What [`in_a_pty`] started: the pty's writer, the screen, the child, the
/// pty's far end, its modes before, and the task that fills the screen.
type InAPty = (
    pty_process::OwnedWritePty,
    Screen,
    tokio::process::Child,
    pty_process::Pts,
    String,
    tokio::task::JoinHandle<()>,
);

/// Runs `cmd` on a new pty of `rows` x `cols`, its output collected.
fn in_a_pty(mut cmd: pty_process::Command, rows: u16, cols: u16) -> InAPty {
    let (pty, pts) = pty_process::open().unwrap();
    pty.resize(pty_process::Size::new(rows, cols)).unwrap();
    let before = stty_g(&pts);
    let child = cmd.spawn_borrowed(&pts).unwrap();
    let (mut reader, writer) = pty.into_split();
    let screen = Screen::default();
    let sink = screen.clone();
    let reader_task = tokio::spawn(async move {
        let mut buf = [0u8; 4096];
        while let Ok(n) = reader.read(&mut buf).await {
            if n == 0 {
                break;
            }
            sink.0.lock().unwrap().extend_from_slice(&buf[..n]);
        }
    });
    (writer, screen, child, pts, before, reader_task)
}

/// `cloudshell-rs --local exec -t ARGS` on a new pty of 30x100.
fn exec_tty_in_a_pty(home: &std::path::Path, args: &[&str]) -> InAPty {
    in_a_pty(
        local_command(home).args(["exec", "-t", "--"]).args(args),
        30,
        100,
    )
}

#[tokio::test]
async fn exec_tty_runs_a_command_on_the_remote_terminal_and_restores_this_one() {
    let home = tempfile::tempdir().unwrap();
    let script = r#"stty size; tty >/dev/null && echo on-a-tty; read -p "name: " n; printf 'hi %s' "$n"; exit 7"#;
    let (mut writer, screen, mut child, pts, before, reader_task) =
        exec_tty_in_a_pty(home.path(), &["bash", "-c", script]);
    within(120, async {
        screen.wait_for("name: ").await;
        // Raw mode here while the command runs: keystrokes go through as typed.
        assert_ne!(stty_g(&pts), before, "the terminal is not in raw mode");
        writer.write_all(b"bob\r").await.unwrap();
        let status = child.wait().await.unwrap();
        assert_eq!(status.code(), Some(7), "screen {:?}", screen.text());
    })
    .await;
    assert_eq!(stty_g(&pts), before);
    drop(pts);
    reader_task.await.unwrap();
    // Exactly what the command printed (the remote terminal echoes the
    // typed name): no prompt, no echo of the line that started it, no marker.
    let text = screen.text();
    let from = text
        .find("30 100")
        .expect("the local size reached the command");
    assert_eq!(
        &text[from..],
        "30 100\r\non-a-tty\r\nname: bob\r\nhi bob",
        "{text:?}"
    );
}

#[tokio::test]
async fn exec_tty_passes_ctrl_c_to_the_command() {
    let home = tempfile::tempdir().unwrap();
    let (mut writer, screen, mut child, pts, before, reader_task) =
        exec_tty_in_a_pty(home.path(), &["bash", "-c", "echo started; sleep 600"]);
    within(120, async {
        screen.wait_for("started").await;
        writer.write_all(b"\x03").await.unwrap();
        let status = child.wait().await.unwrap();
        assert_eq!(status.code(), Some(130), "screen {:?}", screen.text());
    })
    .await;
    assert_eq!(stty_g(&pts), before);
    drop(pts);
    reader_task.abort();
}

#[tokio::test]
async fn exec_tty_with_pipes_exports_credentials_unseen_and_cleans_up() {
    let env = session_support::start().await;
    let home = tempfile::tempdir().unwrap();
    let mut cmd = piped_cli(&env, home.path());
    cmd.args(["exec", "-t", "--inject-credentials", "--"]);
    cmd.args([
        "bash",
        "-c",
        r#"read line; echo "got $line"; printf %s "$AWS_SECRET_ACCESS_KEY" | sha256sum; exit 4"#,
    ]);
    let mut child = cmd.spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"typed\n").await.unwrap();
    drop(stdin);
    let out = within(60, child.wait_with_output()).await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(4), "{out:?}");
    use sha2::Digest as _;
    let sk_sha = hex::encode(sha2::Sha256::digest(session_support::SK));
    // A pipe is typed into the remote terminal, which echoes it (as `ssh -tt`).
    assert_eq!(stdout, format!("typed\r\ngot typed\r\n{sk_sha}  -\r\n"));
    assert!(!String::from_utf8_lossy(&out.stderr).contains(session_support::SK));
    let ops = env.emulator.operations();
    assert!(
        ops.iter().rposition(|o| o == "DeleteSession")
            > ops.iter().position(|o| o == "CreateSession"),
        "{ops:?}"
    );
    assert!(env.emulator.gateway().live_sessions().is_empty());
}

/// `cloudshell-rs --endpoint-url EMULATOR` with a clean environment holding
/// only the emulator's credentials, its standard streams piped, killed when
/// dropped.
fn piped_cli(env: &session_support::Env, home: &std::path::Path) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(BIN);
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", home)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", session_support::AK)
        .env("AWS_SECRET_ACCESS_KEY", session_support::SK)
        .args(["--endpoint-url", &env.emulator.endpoint()]);
    cmd
}

/// `cloudshell-rs --endpoint-url EMULATOR connect`, as [`piped_cli`].
fn piped_connect(env: &session_support::Env, home: &std::path::Path) -> tokio::process::Command {
    let mut cmd = piped_cli(env, home);
    cmd.arg("connect");
    cmd
}

#[tokio::test]
async fn connect_with_pipes_sends_heartbeats_and_cleans_up() {
    let env = session_support::start().await;
    let home = tempfile::tempdir().unwrap();
    let mut child = piped_connect(&env, home.path())
        .args(["--heartbeat-secs", "1"])
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    // Stays connected for ~2.5 s, then the piped input ends (Ctrl-D to the shell).
    stdin
        .write_all(b"sleep 2.5; echo piped-$((20+1))\n")
        .await
        .unwrap();
    drop(stdin);
    let out = within(60, child.wait_with_output()).await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(stdout.contains("piped-21"), "{stdout:?}");
    let ops = env.emulator.operations();
    let beats = ops.iter().filter(|o| *o == "SendHeartBeat").count();
    assert!(beats >= 2, "heartbeats: {ops:?}");
    let created = ops.iter().position(|o| o == "CreateSession").unwrap();
    let deleted = ops
        .iter()
        .rposition(|o| o == "DeleteSession")
        .expect("DeleteSession on exit");
    assert!(deleted > created);
}

/// Runs `cmd` (stdin, stdout and stderr piped), types `input`, waits for
/// `marker` on its stdout, stops the environment under it, and returns how
/// it ended.
async fn stop_environment_under(
    env: &session_support::Env,
    mut cmd: tokio::process::Command,
    input: &[u8],
    marker: &str,
) -> std::process::Output {
    use tokio::io::AsyncBufReadExt as _;
    let mut child = cmd.spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(input).await.unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    while let Some(l) = within(60, lines.next_line()).await.unwrap() {
        if l.contains(marker) {
            break;
        }
    }
    env.stop().await;
    let out = within(60, child.wait_with_output()).await.unwrap();
    drop(stdin);
    out
}

#[tokio::test]
async fn connect_says_why_the_service_closed_the_session() {
    let env = session_support::start().await;
    let home = tempfile::tempdir().unwrap();
    let cmd = piped_connect(&env, home.path());
    let out = stop_environment_under(&env, cmd, b"echo up-$((1+1))\n", "up-2").await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{out:?}");
    assert!(
        stderr.contains("[cloudshell-rs] the session was closed: The environment was stopped."),
        "{stderr:?}"
    );
}

/// `exec EXEC_ARGS -- sh -c ...` while the environment is stopped under it:
/// exit code 1 and the service's reason.
async fn exec_says_why_the_service_closed(exec_args: &[&str]) {
    let env = session_support::start().await;
    let home = tempfile::tempdir().unwrap();
    let mut cmd = piped_cli(&env, home.path());
    cmd.arg("exec").args(exec_args);
    cmd.args(["--", "sh", "-c", "echo up-$((1+1)); sleep 30"]);
    let out = stop_environment_under(&env, cmd, b"", "up-2").await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        stderr.contains(
            "the service closed the session before the command finished: The environment \
             was stopped."
        ),
        "{stderr:?}"
    );
}

#[tokio::test]
async fn exec_says_why_the_service_closed_the_session() {
    exec_says_why_the_service_closed(&[]).await;
}

#[tokio::test]
async fn exec_tty_says_why_the_service_closed_the_session() {
    exec_says_why_the_service_closed(&["-t"]).await;
}

#[tokio::test]
async fn connect_survives_a_cut_with_one_status_line_and_no_doubled_input() {
    // Every session's connection drops right after the client's 3rd input
    // message reached the shell: its acknowledgement is lost.
    let env = session_support::start_with(
        cloudshell_emulator::gateway::SessionOptions::default()
            .with_faults("cut:input:3".parse().unwrap()),
    )
    .await;
    let home = tempfile::tempdir().unwrap();
    let child = piped_connect(&env, home.path()).spawn().unwrap();
    let out = type_lines_each_echoed_once(child, &["A", "B", "C", "D", "E"], 11).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    let status: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("connection lost") || l.contains("reconnect"))
        .collect();
    assert_eq!(status.len(), 1, "{stderr:?}");
    assert!(
        status[0].starts_with("[cloudshell-rs] connection lost")
            && status[0].ends_with("reconnected"),
        "{stderr:?}"
    );
    let cuts = session_support::total_cuts(&env.emulator);
    assert_eq!(cuts, 1);
}

#[tokio::test]
async fn no_reconnect_ends_on_a_cut_with_a_clear_error() {
    let env = session_support::start_with(
        cloudshell_emulator::gateway::SessionOptions::default()
            .with_faults("cut:input:1".parse().unwrap()),
    )
    .await;
    let home = tempfile::tempdir().unwrap();
    let mut child = piped_connect(&env, home.path())
        .arg("--no-reconnect")
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"echo cut-$((6*7))\n").await.unwrap();
    drop(stdin);
    let out = within(60, child.wait_with_output()).await.unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{out:?}");
    assert!(stderr.contains("data channel"), "{stderr:?}");
    assert!(!stderr.contains("reconnect"), "{stderr:?}");
    let m = env.emulator.gateway().all_session_metrics();
    assert_eq!(m.iter().map(|m| m.connections).sum::<u64>(), 1, "{m:?}");
}

#[test]
fn plugin_mode_without_arguments_prints_the_installed_message() {
    let out = Command::new(BIN)
        .arg("session-manager-plugin")
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("The Session Manager plugin was installed successfully"),
        "{text}"
    );

    // The same when the binary is called session-manager-plugin.
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("session-manager-plugin");
    std::os::unix::fs::symlink(BIN, &link).unwrap();
    let out = Command::new(&link).output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("installed successfully"));
}

#[test]
fn plugin_mode_refuses_a_foreign_stream_url_without_leaking_the_token() {
    let json = r#"{"SessionId":"s-1","TokenValue":"super-secret-token","StreamUrl":"wss://example.com/v1/data-channel/s-1"}"#;
    let out = Command::new(BIN)
        .args(["session-manager-plugin", json, "us-east-1", "StartSession"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("refusing to send the session token to example.com"),
        "{err}"
    );
    assert!(!err.contains("super-secret-token"));
    assert!(!String::from_utf8_lossy(&out.stdout).contains("super-secret-token"));
}

#[tokio::test]
async fn plugin_mode_opens_an_emulator_session() {
    let env = session_support::start().await;
    let target = env.create(&session_support::new_tab()).await;
    let home = tempfile::tempdir().unwrap();
    let out = run_with_input(
        plugin_command(&env, &target, "{}", home.path(), false),
        b"echo plugin-$((5*5))\n",
    )
    .await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    // The plugin's first line, on stdout as the plugin prints it.
    let starting = format!("\nStarting session with SessionId: {}\n", target.session_id);
    assert!(stdout.starts_with(&starting), "{stdout}");
    assert!(stdout.contains("plugin-25"), "{stdout}");
    assert!(!String::from_utf8_lossy(&out.stderr).contains(target.token.expose()));
}

/// Today's AWS CLI asks `session-manager-plugin --version`, and when the
/// answer is after 1.2.497.0 passes the StartSession response in the
/// environment variable it names as the first argument, so that the token is
/// not on the command line.
#[tokio::test]
async fn plugin_mode_takes_the_response_from_the_variable_the_aws_cli_names() {
    let version = Command::new(BIN)
        .args(["session-manager-plugin", "--version"])
        .output()
        .unwrap();
    let version = String::from_utf8_lossy(&version.stdout).trim().to_string();
    assert_eq!(version, cloudshell_rs::session::CLIENT_VERSION);
    let parts: Vec<u64> = version.split('.').map(|p| p.parse().unwrap()).collect();
    assert!(parts > vec![1, 2, 497, 0], "{version}");

    let env = session_support::start().await;
    let target = env.create(&session_support::new_tab()).await;
    let home = tempfile::tempdir().unwrap();
    let mut cmd = plugin_command_with(
        &env,
        "AWS_SSM_START_SESSION_RESPONSE",
        "{}",
        home.path(),
        false,
    );
    cmd.env(
        "AWS_SSM_START_SESSION_RESPONSE",
        start_session_response(&target),
    );
    let out = run_with_input(cmd, b"echo from-env-$((6*7))\n").await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(stdout.contains("from-env-42"), "{stdout}");

    // The variable named but not set: a clear error.
    let out = run_with_input(
        plugin_command_with(
            &env,
            "AWS_SSM_START_SESSION_RESPONSE",
            "{}",
            home.path(),
            false,
        ),
        b"",
    )
    .await;
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(
            "the environment variable AWS_SSM_START_SESSION_RESPONSE (the StartSession response) \
             is not set"
        ),
        "{out:?}"
    );
}

/// An emulator whose sessions are KMS-encrypted (key `alias/plugin-key`).
async fn kms_emulator() -> session_support::Env {
    session_support::start_with(GwOptions::default().with_handshake(HandshakeMode::Kms {
        key_id: "alias/plugin-key".into(),
    }))
    .await
}

/// The variable holding the StartSession response is removed before any
/// process is started, as the official plugin removes it: a profile's
/// `credential_process` (run here for the data key of a KMS session) does not
/// get the token.
#[tokio::test]
async fn plugin_mode_keeps_the_response_variable_from_the_processes_it_starts() {
    let env = kms_emulator().await;
    let home = tempfile::tempdir().unwrap();
    let dump = home.path().join("credential-process-env");
    let script = home.path().join("creds.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nenv > '{}'\nprintf '{{\"Version\": 1, \"AccessKeyId\": \"{}\", \"SecretAccessKey\": \"{}\"}}'\n",
            dump.display(),
            session_support::AK,
            session_support::SK
        ),
    )
    .unwrap();
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o700)).unwrap();
    }
    let config = home.path().join("config");
    std::fs::write(
        &config,
        format!("[profile cp]\ncredential_process = {}\n", script.display()),
    )
    .unwrap();
    let target = env.create(&session_support::new_tab()).await;
    let mut cmd = plugin_command_with(
        &env,
        "AWS_SSM_START_SESSION_RESPONSE",
        r#"{"Target":"i-0123456789abcdef0"}"#,
        home.path(),
        false,
    );
    cmd.env(
        "AWS_SSM_START_SESSION_RESPONSE",
        start_session_response(&target),
    )
    .env("AWS_CONFIG_FILE", &config)
    .env("AWS_PROFILE", "cp");
    let out = run_with_input(cmd, b"echo kms-cp-$((6*7))\n").await;
    assert!(out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("kms-cp-42"),
        "{out:?}"
    );
    let seen = std::fs::read_to_string(&dump).unwrap();
    assert!(seen.contains("AWS_PROFILE=cp"), "{seen}");
    assert!(!seen.contains("AWS_SSM_START_SESSION_RESPONSE"), "{seen}");
    assert!(!seen.contains(target.token.expose()));
}

/// `AWS-StartNonInteractiveCommand` with separate output streams: as the
/// plugin, every payload on stdout (the command's stderr and its
/// `EXIT_CODE: n` included) and exit code 0.
#[tokio::test]
async fn plugin_mode_runs_a_non_interactive_command_as_the_plugin_does() {
    let env = session_support::start().await;
    let tab = session_support::new_tab();
    env.emulator.configure_tab(
        tab.clone(),
        GwOptions::default().with_mode(
            "command:echo out-$((1+1)); echo err-3 >&2; exit 7"
                .parse()
                .unwrap(),
        ),
    );
    let target = env.create(&tab).await;
    let home = tempfile::tempdir().unwrap();
    let out = run_with_input(plugin_command(&env, &target, "{}", home.path(), false), b"").await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(stdout.contains("out-2\n"), "{stdout:?}");
    assert!(stdout.contains("err-3\n"), "{stdout:?}");
    assert!(stdout.ends_with("EXIT_CODE: 7"), "{stdout:?}");
}

/// Plugin mode takes no flags (the AWS CLI builds its arguments), so its
/// debug log is switched on by `CLOUDSHELL_RS_LOG`; it never holds the token.
#[tokio::test]
async fn plugin_mode_logs_to_stderr_only_when_cloudshell_rs_log_is_set() {
    let env = session_support::start().await;
    let home = tempfile::tempdir().unwrap();
    for log in [false, true] {
        let target = env.create(&session_support::new_tab()).await;
        let mut cmd = plugin_command(&env, &target, "{}", home.path(), false);
        if log {
            cmd.env("CLOUDSHELL_RS_LOG", "cloudshell_rs=debug");
        }
        let out = run_with_input(cmd, b"echo logged-$((6*7))\n").await;
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{out:?}");
        assert!(stdout.contains("logged-42"), "{stdout}");
        assert!(
            !stdout.contains("session ready"),
            "logs never on stdout: {stdout}"
        );
        let ready = format!("session ready session_id={}", target.session_id);
        assert_eq!(stderr.contains(&ready), log, "{stderr}");
        assert_eq!(stderr.contains("session ended"), log, "{stderr}");
        assert!(!stderr.contains(target.token.expose()));
    }
}

/// Types `echo TAG-$((i*k))` for each tag into `child`, one line at a time
/// (each waits for its output, so each line is one input message), closes
/// stdin and waits for the exit. Checks that the program ended well and that
/// every line's output came exactly once.
async fn type_lines_each_echoed_once(
    mut child: tokio::process::Child,
    tags: &[&str],
    k: usize,
) -> std::process::Output {
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut seen = Vec::new();
    for (i, tag) in tags.iter().enumerate() {
        let line = format!("echo {tag}-$(({i}*{k}))\n");
        stdin.write_all(line.as_bytes()).await.unwrap();
        stdin.flush().await.unwrap();
        let want = format!("{tag}-{}", i * k);
        within(30, async {
            let mut buf = [0u8; 4096];
            while !String::from_utf8_lossy(&seen).contains(&want) {
                let n = stdout.read(&mut buf).await.unwrap();
                assert!(n > 0, "stdout ended: {:?}", String::from_utf8_lossy(&seen));
                seen.extend_from_slice(&buf[..n]);
            }
        })
        .await;
    }
    drop(stdin);
    let mut rest = Vec::new();
    within(60, stdout.read_to_end(&mut rest)).await.unwrap();
    seen.extend_from_slice(&rest);
    let out = within(60, child.wait_with_output()).await.unwrap();
    let printed = String::from_utf8_lossy(&seen).into_owned();
    assert!(out.status.success(), "{out:?} {printed:?}");
    for (i, tag) in tags.iter().enumerate() {
        let want = format!("{tag}-{}\r\n", i * k);
        assert_eq!(printed.matches(&want).count(), 1, "{want:?} in {printed:?}");
    }
    out
}

/// Runs `cmd` with `input` on its stdin, then end of file, and waits for it.
async fn run_with_input(mut cmd: Command, input: &[u8]) -> std::process::Output {
    let mut child = cmd.spawn().unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .unwrap()
        .unwrap()
}

/// The StartSession response the AWS CLI gives the plugin for `target`.
fn start_session_response(target: &cloudshell_rs::session::SessionTarget) -> String {
    serde_json::json!({
        "SessionId": target.session_id,
        "TokenValue": target.token.expose(),
        "StreamUrl": target.stream_url,
    })
    .to_string()
}

/// The binary in plugin mode for `target`, with a clean environment: no AWS
/// configuration files, no instance metadata, KMS at the emulator, and the
/// emulator's credentials only when `credentials` is set.
fn plugin_command(
    env: &session_support::Env,
    target: &cloudshell_rs::session::SessionTarget,
    parameters: &str,
    home: &std::path::Path,
    credentials: bool,
) -> Command {
    let json = start_session_response(target);
    plugin_command_with(env, &json, parameters, home, credentials)
}

/// [`plugin_command`] with `response` as the first argument: the response
/// itself, or the name of the variable that holds it.
fn plugin_command_with(
    env: &session_support::Env,
    response: &str,
    parameters: &str,
    home: &std::path::Path,
    credentials: bool,
) -> Command {
    let endpoint = env.emulator.endpoint();
    let mut cmd = Command::new(BIN);
    cmd.args([
        "session-manager-plugin",
        response,
        "us-east-1",
        "StartSession",
        "",
        parameters,
        &endpoint,
    ])
    .env_clear()
    .env("PATH", std::env::var("PATH").unwrap_or_default())
    .env("HOME", home)
    .env("AWS_EC2_METADATA_DISABLED", "true")
    .env("AWS_CONFIG_FILE", home.join("no-config"))
    .env("AWS_SHARED_CREDENTIALS_FILE", home.join("no-credentials"))
    .env("AWS_ENDPOINT_URL_KMS", &endpoint)
    .stdin(Stdio::piped())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    if credentials {
        cmd.env("AWS_ACCESS_KEY_ID", session_support::AK)
            .env("AWS_SECRET_ACCESS_KEY", session_support::SK);
    }
    cmd
}

#[tokio::test]
async fn plugin_mode_gets_the_data_key_of_a_kms_session_with_the_cli_credentials() {
    let env = kms_emulator().await;
    let home = tempfile::tempdir().unwrap();
    let instance = "i-0123456789abcdef0";
    let parameters = format!(r#"{{"Target":"{instance}"}}"#);

    // With the credentials the AWS CLI would use: an encrypted shell.
    let target = env.create(&session_support::new_tab()).await;
    let out = run_with_input(
        plugin_command(&env, &target, &parameters, home.path(), true),
        b"echo kms-$((6*7))\n",
    )
    .await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{out:?}");
    assert!(stdout.contains("kms-42"), "{stdout}");
    assert!(!stderr.contains(target.token.expose()));
    // The data key was asked for this session and the CLI's target.
    let contexts = env.emulator.gateway().kms().issued_contexts();
    assert!(
        contexts.iter().any(|c| {
            c.get("aws:ssm:SessionId") == Some(&target.session_id)
                && c.get("aws:ssm:TargetId").map(String::as_str) == Some(instance)
        }),
        "{contexts:?}"
    );

    // Without credentials: a clear error, and the token is not shown.
    let target = env.create(&session_support::new_tab()).await;
    let out = run_with_input(
        plugin_command(&env, &target, &parameters, home.path(), false),
        b"",
    )
    .await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        stderr.contains("cannot load AWS credentials for KMS"),
        "{stderr}"
    );
    assert!(!stderr.contains(target.token.expose()));
    assert!(!String::from_utf8_lossy(&out.stdout).contains(target.token.expose()));
}

#[tokio::test]
async fn plugin_mode_resumes_a_dropped_session_with_a_fresh_token() {
    // The connection drops right after the plugin's 2nd input message.
    let env = session_support::start_with(
        GwOptions::default().with_faults("cut:input:2".parse().unwrap()),
    )
    .await;
    let home = tempfile::tempdir().unwrap();
    let target = env.create(&session_support::new_tab()).await;
    let child =
        tokio::process::Command::from(plugin_command(&env, &target, "{}", home.path(), true))
            .kill_on_drop(true)
            .spawn()
            .unwrap();
    let out = type_lines_each_echoed_once(child, &["A", "B", "C", "D"], 7).await;
    let cuts = session_support::total_cuts(&env.emulator);
    assert_eq!(cuts, 1);
    // The session was dialed again with a token from ResumeSession (the old
    // one opens nothing once a new one was issued).
    let resumes: Vec<u16> = env
        .emulator
        .requests()
        .into_iter()
        .filter(|r| r.operation == "AmazonSSM.ResumeSession")
        .map(|r| r.status)
        .collect();
    assert_eq!(resumes, vec![200]);
    assert!(!String::from_utf8_lossy(&out.stderr).contains(target.token.expose()));
}

/// A TCP server on 127.0.0.1:0 that echoes every connection until its EOF,
/// then closes it. Returns its port and how many connections it served.
async fn tcp_echo_many() -> (u16, Arc<std::sync::atomic::AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let served = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = served.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            tokio::spawn(async move {
                let (mut r, mut w) = tcp.into_split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
                let _ = w.shutdown().await;
            });
        }
    });
    (port, served)
}

/// The binary in plugin mode for a port-forwarding session in `mode`
/// (`forward:PORT` or `forward-basic:PORT`), listening on `local_host` if
/// given (`SSM_PLUGIN_LOCAL_HOST`), started; returns the child, its stdout
/// lines, the local port it announced and the session id.
async fn start_port_forwarding(
    env: &session_support::Env,
    options: GwOptions,
    local_host: Option<&str>,
    home: &std::path::Path,
    credentials: bool,
) -> (
    tokio::process::Child,
    tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
    u16,
    String,
) {
    use tokio::io::AsyncBufReadExt as _;
    let tab = session_support::new_tab();
    let multiplexed = !matches!(
        options.mode,
        cloudshell_emulator::gateway::SessionMode::ForwardBasic { .. }
    );
    env.emulator.configure_tab(tab.clone(), options);
    let target = env.create(&tab).await;
    let mut cmd = plugin_command(env, &target, "{}", home, credentials);
    if let Some(host) = local_host {
        cmd.env("SSM_PLUGIN_LOCAL_HOST", host);
    }
    let mut child = tokio::process::Command::from(cmd)
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    for want in [
        String::new(),
        format!("Starting session with SessionId: {}", target.session_id),
    ] {
        assert_eq!(within(30, lines.next_line()).await.unwrap().unwrap(), want);
    }
    let opened = within(30, lines.next_line()).await.unwrap().unwrap();
    let local: u16 = opened
        .strip_prefix("Port ")
        .and_then(|r| r.split(' ').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("{opened:?}"));
    assert_eq!(
        opened,
        format!("Port {local} opened for sessionId {}.", target.session_id)
    );
    if multiplexed {
        assert_eq!(
            within(30, lines.next_line()).await.unwrap().unwrap(),
            "Waiting for connections..."
        );
    }
    (child, lines, local, target.session_id)
}

/// Sends `signal` (`INT` as Ctrl-C does, `QUIT`, `TSTP`) and returns the
/// exit code and the rest of stdout.
async fn interrupt(
    mut child: tokio::process::Child,
    mut lines: tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
    signal: &str,
) -> (Option<i32>, String, String) {
    let mut stderr = child.stderr.take().unwrap();
    let errors = tokio::spawn(async move {
        let mut text = String::new();
        stderr.read_to_string(&mut text).await.unwrap();
        text
    });
    let pid = child.id().unwrap().to_string();
    let st = Command::new("kill")
        .args([&format!("-{signal}"), &pid])
        .status()
        .unwrap();
    assert!(st.success());
    let mut rest = String::new();
    while let Some(l) = within(30, lines.next_line()).await.unwrap() {
        rest.push_str(&l);
        rest.push('\n');
    }
    let status = within(30, child.wait()).await.unwrap();
    let errors = within(30, errors).await.unwrap();
    (status.code(), rest, errors)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugin_mode_forwards_local_connections_through_multiplexed_streams() {
    let env = session_support::start().await;
    let home = tempfile::tempdir().unwrap();
    let (dest, served) = tcp_echo_many().await;
    let (child, lines, local, session_id) = start_port_forwarding(
        &env,
        GwOptions::default()
            .with_mode(cloudshell_emulator::gateway::SessionMode::Forward { port: dest }),
        None,
        home.path(),
        false,
    )
    .await;
    // Three connections at once, each with its own bytes, half-closed after
    // sending: the echo comes back whole, then the end of the stream.
    let mut clients = Vec::new();
    for seed in 0..3u64 {
        clients.push(tokio::spawn(async move {
            let data = crate::cp_support::pseudo_random(300_000 + seed as usize * 7, seed);
            let tcp = tokio::net::TcpStream::connect(("127.0.0.1", local))
                .await
                .unwrap();
            let (mut r, mut w) = tcp.into_split();
            let sent = data.clone();
            let writer = tokio::spawn(async move {
                w.write_all(&sent).await.unwrap();
                w.shutdown().await.unwrap();
            });
            let mut back = Vec::new();
            r.read_to_end(&mut back).await.unwrap();
            writer.await.unwrap();
            assert!(
                back == data,
                "stream {seed}: {} of {} bytes",
                back.len(),
                data.len()
            );
        }));
    }
    for c in clients {
        within(30, c).await.unwrap();
    }
    assert_eq!(served.load(std::sync::atomic::Ordering::SeqCst), 3);
    let (code, rest, errors) = interrupt(child, lines, "INT").await;
    assert_eq!(code, Some(0), "{rest}{errors}");
    // The official plugin's lines: the first connection announced once, then
    // the signal; the end on stderr.
    assert_eq!(
        rest,
        format!(
            "\nConnection accepted for session [{session_id}]\nTerminate signal received, \
             exiting.\n"
        )
    );
    assert!(
        errors.ends_with(&format!(
            "\n\nExiting session with sessionId: {session_id}.\n\n"
        )),
        "{errors}"
    );
}

/// A TCP server on 127.0.0.1 that greets its Nth connection with `hello N`
/// and a newline, then echoes what it gets.
async fn tcp_greeter() -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let mut n = 0;
        while let Ok((tcp, _)) = listener.accept().await {
            n += 1;
            tokio::spawn(async move {
                let (mut r, mut w) = tcp.into_split();
                if w.write_all(format!("hello {n}\n").as_bytes()).await.is_ok() {
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                }
            });
        }
    });
    port
}

/// Reads exactly `want.len()` bytes and returns them as text.
async fn read_text(tcp: &mut tokio::net::TcpStream, len: usize) -> String {
    let mut buf = vec![0u8; len];
    within(30, tcp.read_exact(&mut buf)).await.unwrap();
    String::from_utf8_lossy(&buf).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugin_mode_forwards_one_connection_at_a_time_for_an_agent_that_does_not_multiplex() {
    let env = session_support::start().await;
    let home = tempfile::tempdir().unwrap();
    let dest = tcp_greeter().await;
    // An agent of version 3.0.196.0; the listener on SSM_PLUGIN_LOCAL_HOST.
    let (child, mut lines, local, session_id) = start_port_forwarding(
        &env,
        GwOptions::default()
            .with_mode(cloudshell_emulator::gateway::SessionMode::ForwardBasic { port: dest }),
        Some("127.0.0.2"),
        home.path(),
        false,
    )
    .await;
    // The agent connected at the session's start: the greeting waited for
    // the first local connection.
    let mut first = tokio::net::TcpStream::connect(("127.0.0.2", local))
        .await
        .unwrap();
    assert_eq!(read_text(&mut first, 8).await, "hello 1\n");
    first.write_all(b"ping 1").await.unwrap();
    assert_eq!(read_text(&mut first, 6).await, "ping 1");
    assert_eq!(
        within(30, lines.next_line()).await.unwrap().unwrap(),
        format!("Connection accepted for session {session_id}.")
    );
    // Closing it sends DisconnectToPort: the agent closes its connection and
    // makes a new one for the next connection's first bytes.
    drop(first);
    let mut second = tokio::net::TcpStream::connect(("127.0.0.2", local))
        .await
        .unwrap();
    second.write_all(b"ping 2").await.unwrap();
    assert_eq!(read_text(&mut second, 14).await, "hello 2\nping 2");
    drop(second);
    let (code, rest, errors) = interrupt(child, lines, "QUIT").await;
    assert_eq!(code, Some(0), "{rest}{errors}");
    assert_eq!(rest, "Terminate signal received, exiting.\n");
    assert!(
        errors.ends_with(&format!(
            "\n\nExiting session with sessionId: {session_id}.\n\n"
        )),
        "{errors}"
    );
    // The agent took the flag: no ssm:TerminateSession.
    assert!(
        !env.emulator
            .requests()
            .iter()
            .any(|r| r.operation == "AmazonSSM.TerminateSession")
    );
}

/// Starts a basic-mode forwarder whose agent (2.3.722.0) ignores the
/// TerminateSession flag, makes one connection through it, and interrupts it.
async fn interrupt_forwarding_with_an_old_agent(
    env: &session_support::Env,
    credentials: bool,
) -> (Option<i32>, String, String, String) {
    let home = tempfile::tempdir().unwrap();
    let dest = tcp_greeter().await;
    let options = GwOptions::default()
        .with_mode(cloudshell_emulator::gateway::SessionMode::ForwardBasic { port: dest })
        .with_agent_version("2.3.722.0");
    let (child, mut lines, local, session_id) =
        start_port_forwarding(env, options, None, home.path(), credentials).await;
    let mut tcp = tokio::net::TcpStream::connect(("127.0.0.1", local))
        .await
        .unwrap();
    assert_eq!(read_text(&mut tcp, 8).await, "hello 1\n");
    within(30, lines.next_line()).await.unwrap().unwrap();
    let (code, rest, errors) = interrupt(child, lines, "INT").await;
    (code, rest, errors, session_id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugin_mode_ends_a_session_whose_agent_ignores_the_flag_through_ssm_terminate_session() {
    let env = session_support::start().await;
    let (code, rest, errors, session_id) = interrupt_forwarding_with_an_old_agent(&env, true).await;
    assert_eq!(code, Some(0), "{rest}{errors}");
    // As the plugin: ssm:TerminateSession, then the session's channel closes
    // (the emulator ignored the flag), with the exit line on stdout.
    assert_eq!(
        rest,
        format!(
            "Terminate signal received, exiting.\n\n\nExiting session with sessionId: \
             {session_id}.\n\n"
        )
    );
    let terminated: Vec<_> = env
        .emulator
        .requests()
        .into_iter()
        .filter(|r| r.operation == "AmazonSSM.TerminateSession")
        .collect();
    assert_eq!(terminated.len(), 1, "{terminated:?}");
    assert_eq!(terminated[0].status, 200);
    assert_eq!(terminated[0].body["SessionId"], session_id.as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugin_mode_says_when_ssm_terminate_session_cannot_be_called() {
    let env = session_support::start().await;
    // No credentials in the environment: the call cannot be signed.
    let (code, rest, errors, _) = interrupt_forwarding_with_an_old_agent(&env, false).await;
    assert_eq!(code, Some(1), "{rest}{errors}");
    assert_eq!(rest, "Terminate signal received, exiting.\n");
    assert!(
        errors.contains("session-manager-plugin: cannot end the session with ssm:TerminateSession"),
        "{errors}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugin_mode_forwarding_shows_why_the_service_closed_the_session() {
    let env = session_support::start().await;
    let home = tempfile::tempdir().unwrap();
    let dest = tcp_greeter().await;
    let options = GwOptions::default()
        .with_mode(cloudshell_emulator::gateway::SessionMode::Forward { port: dest });
    let (mut child, mut lines, _, session_id) =
        start_port_forwarding(&env, options, None, home.path(), false).await;
    env.stop().await;
    let mut rest = String::new();
    while let Some(l) = within(30, lines.next_line()).await.unwrap() {
        rest.push_str(&l);
        rest.push('\n');
    }
    let status = within(30, child.wait()).await.unwrap();
    assert_eq!(status.code(), Some(0), "{rest}");
    // The plugin's line for a channel closed with a reason.
    assert_eq!(
        rest,
        format!("\n\nSessionId: {session_id} : The environment was stopped.\n\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugin_mode_reports_an_unreachable_destination_and_goes_on() {
    let env = session_support::start().await;
    let home = tempfile::tempdir().unwrap();
    // A port with nothing listening.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let (child, mut lines, local, _) = start_port_forwarding(
        &env,
        GwOptions::default()
            .with_mode(cloudshell_emulator::gateway::SessionMode::Forward { port: closed }),
        None,
        home.path(),
        false,
    )
    .await;
    for _ in 0..2 {
        let mut tcp = tokio::net::TcpStream::connect(("127.0.0.1", local))
            .await
            .unwrap();
        let mut buf = Vec::new();
        // The agent's FIN for the stream closes the local connection.
        within(30, tcp.read_to_end(&mut buf)).await.unwrap();
        assert!(buf.is_empty());
        let mut seen = Vec::new();
        loop {
            let l = within(30, lines.next_line()).await.unwrap().unwrap();
            if l == "Connection to destination port failed, check SSM Agent logs." {
                break;
            }
            seen.push(l);
        }
    }
    // Ctrl-Z ends a port-forwarding session too, as in the official plugin.
    let (code, rest, errors) = interrupt(child, lines, "TSTP").await;
    assert_eq!(code, Some(0), "{rest}{errors}");
    assert!(
        rest.contains("Terminate signal received, exiting."),
        "{rest}"
    );
}

/// `target` with its stream URL moved to `wss://localhost:PORT` (same path).
fn over_tls(
    target: &cloudshell_rs::session::SessionTarget,
    port: u16,
) -> cloudshell_rs::session::SessionTarget {
    let path = target
        .stream_url
        .strip_prefix("ws://")
        .and_then(|rest| rest.find('/').map(|i| &rest[i..]))
        .unwrap();
    let mut t = target.clone();
    t.stream_url = format!("wss://localhost:{port}{path}");
    t
}

/// A TLS front for `env`'s emulator and what the binary in plugin mode needs
/// to reach it.
struct OverTls<'a> {
    env: &'a session_support::Env,
    port: u16,
    home: tempfile::TempDir,
}

impl<'a> OverTls<'a> {
    async fn start(env: &'a session_support::Env) -> Self {
        OverTls {
            env,
            port: crate::support::tls_front::tls_front(env.emulator.local_addr())
                .await
                .port(),
            home: tempfile::tempdir().unwrap(),
        }
    }

    /// Runs a new session over TLS, with `vars` added to the environment
    /// (`SSL_CERT_FILE` names the trust store) and `input` on stdin. The token
    /// must not reach stderr; returns the output and stderr as text.
    async fn run(&self, vars: &[(&str, &str)], input: &str) -> (std::process::Output, String) {
        let target = over_tls(
            &self.env.create(&session_support::new_tab()).await,
            self.port,
        );
        let mut cmd = plugin_command(self.env, &target, "{}", self.home.path(), false);
        cmd.envs(vars.iter().copied());
        let out = within(60, run_with_input(cmd, input.as_bytes())).await;
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(!err.contains(target.token.expose()), "{err}");
        (out, err)
    }

    /// The same, expecting `echo MARKER-$((6*7))` to print `MARKER-42`.
    async fn echo(&self, vars: &[(&str, &str)], marker: &str) {
        let (out, _) = self.run(vars, &format!("echo {marker}-$((6*7))\n")).await;
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{out:?}");
        assert!(stdout.contains(&format!("{marker}-42")), "{stdout}");
    }
}

fn tls_fixture(name: &str) -> String {
    format!("{}/fixtures/tls/{name}", env!("CARGO_MANIFEST_DIR"))
}

#[tokio::test]
async fn plugin_mode_opens_a_wss_stream_url_trusting_the_system_roots() {
    let env = session_support::start().await;
    let tls = OverTls::start(&env).await;
    let ca = tls_fixture("ca.pem");

    // The test CA trusted: the session works over TLS.
    tls.echo(&[("SSL_CERT_FILE", &ca)], "tls").await;

    // A trust store without that CA: the certificate is refused, clearly,
    // and the token never leaves the process.
    let leaf = tls_fixture("localhost.pem");
    let (out, err) = tls.run(&[("SSL_CERT_FILE", &leaf)], "echo never\n").await;
    assert!(!out.status.success(), "{out:?}");
    assert!(err.contains("certificate"), "{err}");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("never"));

    // No trust store at all: said so, with what to do about it.
    let missing = tls.home.path().join("missing.pem").display().to_string();
    let (out, err) = tls.run(&[("SSL_CERT_FILE", &missing)], "").await;
    assert!(!out.status.success(), "{out:?}");
    assert!(err.contains("no trusted root certificates"), "{err}");
    assert!(err.contains("SSL_CERT_FILE"), "{err}");

    // AWS_CA_BUNDLE, as for the API calls: its CA is trusted too, and a
    // bundle that cannot be read is an error that names it.
    let vars = [("SSL_CERT_FILE", missing.as_str()), ("AWS_CA_BUNDLE", &ca)];
    tls.echo(&vars, "bundle").await;
    let vars = [("SSL_CERT_FILE", ca.as_str()), ("AWS_CA_BUNDLE", &missing)];
    let (out, err) = tls.run(&vars, "").await;
    assert!(!out.status.success(), "{out:?}");
    assert!(err.contains("cannot read AWS_CA_BUNDLE"), "{err}");
}

#[tokio::test]
async fn plugin_mode_takes_https_proxy_and_no_proxy_from_the_environment() {
    use crate::support::connect_proxy::{Policy, TestProxy};
    let env = session_support::start().await;
    let tls = OverTls::start(&env).await;
    let proxy = TestProxy::start(Policy::Open).await;
    let (ca, url) = (tls_fixture("ca.pem"), proxy.url());

    // The wss:// stream URL goes through HTTPS_PROXY (TLS inside the tunnel,
    // the certificate checked for the stream URL's host).
    tls.echo(&[("SSL_CERT_FILE", &ca), ("HTTPS_PROXY", &url)], "proxied")
        .await;
    assert_eq!(proxy.targets(), [format!("localhost:{}", tls.port)]);
    // The lower-case name works too; NO_PROXY sends the host direct.
    tls.echo(&[("SSL_CERT_FILE", &ca), ("https_proxy", &url)], "lower")
        .await;
    assert_eq!(proxy.targets().len(), 2);
    let vars = [
        ("SSL_CERT_FILE", ca.as_str()),
        ("HTTPS_PROXY", &url),
        ("NO_PROXY", "localhost"),
    ];
    tls.echo(&vars, "direct").await;
    // HTTP_PROXY is for ws:// URLs only.
    let vars = [
        ("SSL_CERT_FILE", ca.as_str()),
        ("HTTP_PROXY", "http://127.0.0.1:9"),
    ];
    tls.echo(&vars, "plain-only").await;
    assert_eq!(proxy.targets().len(), 2);
}

impl OverTls<'_> {
    /// The binary with `args` against the emulator at `https://localhost:PORT`
    /// (its credentials, a clean environment plus `vars`); returns whether it
    /// succeeded, its stdout and its stderr.
    async fn cli(&self, args: &[&str], vars: &[(&str, &str)]) -> (bool, String, String) {
        let home = self.home.path();
        let endpoint = format!("https://localhost:{}", self.port);
        let mut cmd = Command::new(BIN);
        cmd.args(["--endpoint-url", &endpoint])
            .args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", home)
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("AWS_REGION", "us-east-1")
            .env("AWS_MAX_ATTEMPTS", "1")
            .env("AWS_CONFIG_FILE", home.join("no-config"))
            .env("AWS_SHARED_CREDENTIALS_FILE", home.join("no-credentials"))
            .env("AWS_ACCESS_KEY_ID", session_support::AK)
            .env("AWS_SECRET_ACCESS_KEY", session_support::SK)
            .envs(vars.iter().copied())
            .stdin(Stdio::null());
        // Off the runtime: the TLS front runs on it.
        let out = within(60, tokio::task::spawn_blocking(move || cmd.output()))
            .await
            .unwrap()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        (out.status.success(), stdout, stderr)
    }
}

#[tokio::test]
async fn api_calls_over_https_trust_aws_ca_bundle() {
    let env = session_support::start().await;
    let tls = OverTls::start(&env).await;
    let ca = tls_fixture("ca.pem");
    let (ok, stdout, stderr) = tls.cli(&["describe"], &[("AWS_CA_BUNDLE", &ca)]).await;
    assert!(ok, "{stderr}");
    assert!(stdout.contains(&env.env_id), "{stdout}");
    // The test CA is not among the compiled-in roots.
    let (ok, _, stderr) = tls.cli(&["describe"], &[]).await;
    assert!(!ok);
    assert!(stderr.contains("certificate"), "{stderr}");
    let missing = tls.home.path().join("missing.pem");
    let missing = missing.to_str().unwrap();
    let (ok, _, stderr) = tls.cli(&["describe"], &[("AWS_CA_BUNDLE", missing)]).await;
    assert!(!ok);
    assert!(stderr.contains("cannot read AWS_CA_BUNDLE"), "{stderr}");
}

#[tokio::test]
async fn one_proxy_setting_carries_the_api_calls_and_the_data_channel() {
    use crate::support::connect_proxy::{Policy, TestProxy};
    let env = session_support::start().await;
    let tls = OverTls::start(&env).await;
    let proxy = TestProxy::start(Policy::Open).await;
    let (ca, url) = (tls_fixture("ca.pem"), proxy.url());
    // `exec`: https API calls (CreateSession, ...) and the emulator's ws://
    // stream URL, both through the one ALL_PROXY.
    let vars = [("AWS_CA_BUNDLE", ca.as_str()), ("ALL_PROXY", &url)];
    let (ok, stdout, stderr) = tls
        .cli(&["exec", "--", "echo", "through-the-proxy"], &vars)
        .await;
    assert!(ok, "{stderr}");
    assert_eq!(stdout, "through-the-proxy\n");
    let targets = proxy.targets();
    let api = format!("localhost:{}", tls.port);
    let channel = format!("127.0.0.1:{}", env.emulator.local_addr().port());
    assert!(targets.contains(&api), "{targets:?}");
    assert!(targets.contains(&channel), "{targets:?}");
    assert!(
        targets.iter().all(|t| *t == api || *t == channel),
        "{targets:?}"
    );
}

#[tokio::test]
async fn plugin_mode_carries_a_port_session_on_stdin_and_stdout_like_a_proxy_command() {
    use tokio::io::AsyncReadExt as _;
    let env = session_support::start().await;
    let greeting = b"SSH-2.0-emulated\r\n";
    let (port, seen) = session_support::tcp_echo(greeting, u64::MAX).await;
    let target = env.create_port(port).await;
    let home = tempfile::tempdir().unwrap();
    let parameters = r#"{"portNumber":["22"]}"#;
    let mut child = tokio::process::Command::from(plugin_command(
        &env,
        &target,
        parameters,
        home.path(),
        false,
    ))
    .kill_on_drop(true)
    .spawn()
    .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = child.stdout.take().unwrap();
    // As ssh does with its ProxyCommand: bytes in, bytes out, untouched (no
    // terminal: Ctrl-C, Ctrl-D, `~.` and newlines are data), then stdin
    // closed when it is done.
    let data = session_support::binary_bytes(100_000);
    let send = data.clone();
    let writer = tokio::spawn(async move {
        stdin.write_all(&send).await.unwrap();
        stdin
    });
    let mut want = greeting.to_vec();
    want.extend_from_slice(&data);
    let mut got = vec![0u8; want.len()];
    within(60, stdout.read_exact(&mut got)).await.unwrap();
    assert!(got == want, "the relayed bytes differ");
    drop(writer.await.unwrap());
    let status = within(60, child.wait()).await.unwrap();
    let mut rest = Vec::new();
    stdout.read_to_end(&mut rest).await.unwrap();
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .await
        .unwrap();
    assert!(status.success(), "{status:?} {stderr}");
    assert!(rest.is_empty(), "{rest:?}");
    assert!(!stderr.contains(target.token.expose()), "{stderr}");
    let seen = within(10, seen).await.unwrap();
    assert_eq!(seen.echoed, data.len() as u64);
    assert!(
        seen.peer_closed,
        "stdin EOF ended the destination connection"
    );
}

#[tokio::test]
async fn plugin_mode_sends_all_its_input_to_a_port_that_answers_only_at_the_end() {
    use tokio::io::AsyncBufReadExt as _;
    // Nothing comes back while the input flows: the pump must keep reading
    // stdin with no output to wake it (as with scp through a ProxyCommand).
    let env = session_support::start().await;
    let size = 300_000;
    let port = session_support::tcp_sink(size).await;
    let target = env.create_port(port).await;
    let home = tempfile::tempdir().unwrap();
    let mut child =
        tokio::process::Command::from(plugin_command(&env, &target, "{}", home.path(), false))
            .kill_on_drop(true)
            .spawn()
            .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let data = session_support::binary_bytes(size);
    let writer = tokio::spawn(async move {
        stdin.write_all(&data).await.unwrap();
        stdin
    });
    let mut answer = String::new();
    let mut stdout = tokio::io::BufReader::new(child.stdout.take().unwrap());
    within(30, stdout.read_line(&mut answer)).await.unwrap();
    assert_eq!(answer, format!("got {size}\n"));
    drop(writer.await.unwrap());
    let status = within(30, child.wait()).await.unwrap();
    assert!(status.success(), "{status:?}");
}

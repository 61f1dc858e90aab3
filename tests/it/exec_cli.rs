//! The `cloudshell-rs exec` binary against its in-process emulator (`--local`).

use sha2::Digest;
use std::io::{BufRead, Write};
use std::process::{Command, Stdio};

use crate::support::local_cli::LocalCli as Cli;

#[test]
fn exec_cli_stdin_eof_exit_code_and_streams() {
    let cli = Cli::new();
    let mut child = cli
        .cmd("exec")
        .args(["--", "wc", "-l"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"a\nb\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.stdout, b"2\n");
    assert!(out.status.success());

    let out = cli
        .cmd("exec")
        .args([
            "--",
            "bash",
            "-c",
            "printf 'o\\0\\377'; printf e >&2; exit 7",
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.stdout, b"o\0\xff");
    assert_eq!(out.stderr, b"e");
    assert_eq!(out.status.code(), Some(7));

    let out = cli
        .cmd("exec")
        .args(["--timeout", "0.5", "--", "sleep", "30"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(124));
}

/// A whole command line given as one argument is not found (no shell splits
/// it): the shell's message, then a hint saying how to write it. A command
/// that is simply missing gets no hint.
#[test]
fn exec_cli_one_argument_command_line_gets_a_hint() {
    let cli = Cli::new();
    let out = cli
        .cmd("exec")
        .args(["--", "echo hi"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(127));
    assert!(out.stdout.is_empty());
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "echo hi: command not found\ncloudshell-rs: hint: \"echo hi\" is one argument, taken \
         as a command's name (arguments are passed exactly); write: exec -- echo hi  or: \
         exec -- bash -c 'echo hi'\n"
    );
    let out = cli
        .cmd("exec")
        .args(["--", "no-such-command-here", "echo hi"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(
        (String::from_utf8_lossy(&out.stderr), out.status.code()),
        (
            "no-such-command-here: command not found\n".into(),
            Some(127)
        )
    );
}

#[test]
fn exec_cli_sigint_interrupts_the_remote_command() {
    let cli = Cli::new();
    let mut child = cli
        .cmd("exec")
        .args([
            "--",
            "bash",
            "-c",
            "echo started; sleep 60; echo not-reached",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    assert_eq!(line, "started\n");
    let st = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    let status = child.wait().unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut rest).unwrap();
    assert_eq!(rest, "");
    assert_eq!(status.code(), Some(130));
}

#[test]
fn exec_cli_inject_credentials() {
    let cli = Cli::new();
    let secret = "cliSecretKeyValue/With+Chars=0123456789";
    let token = "cliSessionTokenValue//////////wEaCXVz+/=";
    let out = cli
        .cmd("exec")
        .env("AWS_ACCESS_KEY_ID", "AKIACLITESTKEY000001")
        .env("AWS_SECRET_ACCESS_KEY", secret)
        .env("AWS_SESSION_TOKEN", token)
        .args(["--inject-credentials", "--", "bash", "-c"])
        .arg(r#"printf %s "$AWS_SECRET_ACCESS_KEY" | sha256sum; printf %s "$AWS_SESSION_TOKEN" | sha256sum; echo "$AWS_REGION"; ps -eo args"#)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains(&hex::encode(sha2::Sha256::digest(secret))));
    assert!(stdout.contains(&hex::encode(sha2::Sha256::digest(token))));
    assert!(stdout.contains("us-east-1"));
    for s in [secret, token] {
        assert!(!stdout.contains(s), "secret in remote command lines");
        assert!(
            !String::from_utf8_lossy(&out.stderr).contains(s),
            "secret in stderr"
        );
    }
}

#[test]
fn exec_cli_debug_log_never_holds_the_secret() {
    let cli = Cli::new();
    let secret = "debugSecretKeyValue/With+Chars=9876543210";
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_cloudshell-rs"));
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", cli.dir.path())
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "AKIACLITESTKEY000002")
        .env("AWS_SECRET_ACCESS_KEY", secret)
        .env("CLOUDSHELL_RS_LOG", "trace")
        .args(["--debug", "--local", "--state-dir"])
        .arg(cli.dir.path().join("state"))
        .args([
            "exec",
            "--inject-credentials",
            "--",
            "bash",
            "-c",
            "printf %s \"$AWS_SECRET_ACCESS_KEY\" | wc -c",
        ]);
    let out = cmd.stdin(Stdio::null()).output().unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        secret.len().to_string()
    );
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(
        log.len() > 1000,
        "the trace log was produced ({} bytes)",
        log.len()
    );
    assert!(!log.contains(secret), "secret in the --debug log");
}

#[test]
fn local_mode_ignores_proxies_from_the_environment() {
    // The in-process emulator is on loopback: a proxy, here one that is not
    // even running, must not stand between the command and it.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://127.0.0.1:{}", l.local_addr().unwrap().port())
    };
    let cli = Cli::new();
    let out = cli
        .cmd("exec")
        .args(["--", "echo", "no-proxy-needed"])
        .env("HTTP_PROXY", &closed)
        .env("HTTPS_PROXY", &closed)
        .env("ALL_PROXY", &closed)
        .output()
        .unwrap();
    assert_eq!(out.stdout, b"no-proxy-needed\n", "{out:?}");
    assert!(out.status.success(), "{out:?}");
}

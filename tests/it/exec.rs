//! `exec` core against a local interactive bash on a pty.

use crate::exec_support::spawn_local_shell;
use cloudshell_rs::exec::{self, ExecError, ExecOptions, ExecOutput, Interrupt};

async fn run_local(argv: &[&str], opts: ExecOptions) -> ExecOutput {
    let home = tempfile::tempdir().unwrap();
    let mut sh = spawn_local_shell(home.path(), true);
    let link = sh.link.take().unwrap();
    match exec::run_collect(link, argv, opts).await {
        Ok(out) => out,
        // Everything the terminal printed, and how its shell ended, say why.
        Err(e) => panic!(
            "exec: {}\nshell: {:?}\nterminal output: {:?}",
            cloudshell_rs::error_chain(&e),
            sh._child.try_wait(),
            String::from_utf8_lossy(&sh.tap.lock().unwrap())
        ),
    }
}

#[tokio::test]
async fn exec_binary_output_is_byte_exact() {
    // All 256 byte values, then invalid UTF-8, NULs, and no trailing newline.
    let script = r#"for i in $(seq 0 255); do printf "\\$(printf %o $i)"; done; printf '\377\376\000\000abc\r\n\r'; printf 'x' >&2"#;
    let out = run_local(&["bash", "-c", script], ExecOptions::new()).await;
    let mut expected: Vec<u8> = (0..=255u8).collect();
    expected.extend_from_slice(b"\xff\xfe\0\0abc\r\n\r");
    assert_eq!(out.stdout, expected);
    assert_eq!(out.stderr, b"x");
    assert!(out.status.success());
}

#[tokio::test]
async fn exec_exit_codes() {
    for code in [0, 1, 7, 255] {
        let out = run_local(&["bash", "-c", &format!("exit {code}")], ExecOptions::new()).await;
        assert_eq!(out.status.code(), code);
    }
    let out = run_local(&["bash", "-c", "kill -TERM $$"], ExecOptions::new()).await;
    assert_eq!(out.status.code(), 143);
    assert_eq!(out.status.signal(), Some(15));
}

#[tokio::test]
async fn exec_stdin_with_eof() {
    let out = run_local(&["wc", "-l"], ExecOptions::new().stdin(&b"a\nb\n"[..])).await;
    assert_eq!(out.stdout, b"2\n");
    // Empty stdin is an immediate EOF.
    let out = run_local(&["wc", "-c"], ExecOptions::new().stdin(&b""[..])).await;
    assert_eq!(out.stdout, b"0\n");
    // Without stdin the command reads /dev/null.
    let out = run_local(&["cat"], ExecOptions::new()).await;
    assert_eq!(out.stdout, b"");
}

#[tokio::test]
async fn exec_binary_stdin_round_trips() {
    let mut data: Vec<u8> = Vec::new();
    for i in 0..40_000u32 {
        data.push((i * 7 % 256) as u8);
    }
    data.extend_from_slice(b"\x03\x04\x1a\x1c\x7f\x15\x17\x16\x11\x13\n\r");
    let out = run_local(&["cat"], ExecOptions::new().stdin(data.clone())).await;
    assert_eq!(out.stdout.len(), data.len());
    assert!(out.stdout == data);
}

#[tokio::test]
async fn exec_awkward_arguments_arrive_exactly() {
    let args = [
        "printf",
        "<%s>\\n",
        "it's",
        "say \"hi\"",
        "two  spaces",
        "$HOME",
        "*",
        "line1\nline2",
        "",
        "`id`",
        "$(id)",
        "\\",
        "--",
        "-n",
        "ünïcödé",
    ];
    let out = run_local(&args, ExecOptions::new()).await;
    let mut expected = String::new();
    for a in &args[2..] {
        expected.push_str(&format!("<{a}>\n"));
    }
    assert_eq!(String::from_utf8_lossy(&out.stdout), expected);
}

#[tokio::test]
async fn exec_fake_markers_are_plain_output() {
    // The command prints marker-shaped lines (guessed nonces, the format of
    // every frame type) to stdout, stderr and straight to the terminal.
    let script = r#"
for n in 00000000000000000000000000000000 ffffffffffffffffffffffffffffffff "" ; do
  printf '%s:X:0\n%s:O:0:aGVsbG8=\n%s:R\n%s:F:boom\n' "$n" "$n" "$n" "$n"
  printf '\n%s:X:9\n' "$n" >&2
  printf '\n%s:X:3\n%s:O:0:aGVsbG8=\n' "$n" "$n" > /dev/tty
done
echo done; exit 5"#;
    let out = run_local(&["bash", "-c", script], ExecOptions::new()).await;
    assert_eq!(out.status.code(), 5);
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(stdout.ends_with("done\n"));
    assert_eq!(stdout.matches(":X:0").count(), 3);
    assert_eq!(
        String::from_utf8(out.stderr)
            .unwrap()
            .matches(":X:9")
            .count(),
        3
    );
}

#[tokio::test]
async fn exec_interrupt_gives_130_and_framing_survives() {
    let home = tempfile::tempdir().unwrap();
    let mut sh = spawn_local_shell(home.path(), false);
    let link = sh.link.take().unwrap();
    let int = Interrupt::new();
    // Interrupt as soon as the command announces itself.
    let int2 = int.clone();
    let mut stdout = InterruptOnOutput {
        buf: Vec::new(),
        int: int2,
    };
    let mut stderr = Vec::new();
    let status = exec::run_streaming(
        link,
        &["bash", "-c", "echo started; sleep 30; echo not-reached"],
        ExecOptions::new().interrupt(int),
        None::<tokio::io::Empty>,
        &mut stdout,
        &mut stderr,
    )
    .await
    .unwrap();
    assert_eq!(
        (status.code(), String::from_utf8_lossy(&stdout.buf).as_ref()),
        (130, "started\n"),
        "stderr: {:?}",
        String::from_utf8_lossy(&stderr)
    );
}

/// A writer that requests an interrupt on the first output it receives.
pub struct InterruptOnOutput {
    pub buf: Vec<u8>,
    int: Interrupt,
}

impl InterruptOnOutput {
    pub fn new(int: Interrupt) -> Self {
        InterruptOnOutput {
            buf: Vec::new(),
            int,
        }
    }
}

impl tokio::io::AsyncWrite for InterruptOnOutput {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        b: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        self.buf.extend_from_slice(b);
        self.int.interrupt();
        std::task::Poll::Ready(Ok(b.len()))
    }
    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

#[tokio::test]
async fn exec_timeout_interrupts_the_command() {
    let home = tempfile::tempdir().unwrap();
    let mut sh = spawn_local_shell(home.path(), false);
    let link = sh.link.take().unwrap();
    let r = exec::run_collect(
        link,
        &["sleep", "30"],
        ExecOptions::new().timeout(std::time::Duration::from_millis(300)),
    )
    .await;
    assert!(matches!(r, Err(ExecError::Timeout(_))), "{r:?}");
}

#[tokio::test]
async fn exec_concurrent_runs_do_not_mix() {
    let mut tasks = Vec::new();
    for id in 0..4 {
        tasks.push(tokio::spawn(async move {
            let script = format!("for i in $(seq 1 200); do echo {id}-$i; echo e{id}-$i >&2; done");
            (
                id,
                run_local(&["bash", "-c", &script], ExecOptions::new()).await,
            )
        }));
    }
    for t in tasks {
        let (id, out) = t.await.unwrap();
        let expected: String = (1..=200).map(|i| format!("{id}-{i}\n")).collect();
        let expected_err: String = (1..=200).map(|i| format!("e{id}-{i}\n")).collect();
        assert_eq!(String::from_utf8(out.stdout).unwrap(), expected);
        assert_eq!(String::from_utf8(out.stderr).unwrap(), expected_err);
    }
}

#[tokio::test]
async fn exec_empty_command_is_rejected() {
    let home = tempfile::tempdir().unwrap();
    let mut sh = spawn_local_shell(home.path(), false);
    let link = sh.link.take().unwrap();
    let empty: [&str; 0] = [];
    assert!(matches!(
        exec::run_collect(link, &empty, ExecOptions::new()).await,
        Err(ExecError::EmptyCommand)
    ));
}

#[tokio::test]
async fn exec_missing_command_reports_127() {
    let out = run_local(&["no-such-command-xyz"], ExecOptions::new()).await;
    assert_eq!(out.status.code(), 127);
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "no-such-command-xyz: command not found\n"
    );
}

/// A command that cannot run gets a shell's message and status (127 not
/// found, 126 not executable), with nothing of the remote script in front.
#[tokio::test]
async fn exec_commands_that_cannot_run_say_why_like_a_shell() {
    let dir = tempfile::tempdir().unwrap();
    let plain = dir.path().join("plain.txt");
    std::fs::write(&plain, "not a program").unwrap();
    let missing = dir.path().join("missing");
    let cases = [
        (missing.to_str().unwrap(), "No such file or directory", 127),
        (plain.to_str().unwrap(), "Permission denied", 126),
        (dir.path().to_str().unwrap(), "Is a directory", 126),
    ];
    for (command, why, code) in cases {
        let out = run_local(&[command], ExecOptions::new()).await;
        assert_eq!(
            (String::from_utf8_lossy(&out.stderr), out.status.code()),
            (format!("{command}: {why}\n").into(), code),
        );
        assert!(out.stdout.is_empty());
    }
    // Builtins and programs on PATH still run, with their arguments.
    let out = run_local(&["echo", "-n", "a b"], ExecOptions::new()).await;
    assert_eq!((out.stdout, out.status.code()), (b"a b".to_vec(), 0));
}

/// Hashes and counts what it is given, storing nothing.
#[derive(Default)]
pub struct HashSink {
    pub hasher: sha2::Sha256,
    pub len: u64,
}

impl tokio::io::AsyncWrite for HashSink {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        b: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        use sha2::Digest;
        self.hasher.update(b);
        self.len += b.len() as u64;
        std::task::Poll::Ready(Ok(b.len()))
    }
    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

#[tokio::test]
async fn exec_100_mib_arrives_intact() {
    use sha2::Digest;
    let home = tempfile::tempdir().unwrap();
    let mut sh = spawn_local_shell(home.path(), false);
    let link = sh.link.take().unwrap();
    let mut out = HashSink::default();
    let mut err = Vec::new();
    // Random bytes to stdout; their SHA-256 (computed remotely) to stderr.
    let status = exec::run_streaming(
        link,
        &[
            "bash",
            "-c",
            "head -c 104857600 /dev/urandom | tee >(sha256sum >&2)",
        ],
        ExecOptions::new(),
        None::<tokio::io::Empty>,
        &mut out,
        &mut err,
    )
    .await
    .unwrap();
    assert!(status.success());
    assert_eq!(out.len, 104_857_600);
    let local = hex::encode(out.hasher.finalize());
    let remote = String::from_utf8(err).unwrap();
    assert!(remote.starts_with(&local), "remote {remote} local {local}");
    // Memory is measured per process in tests/bounded_memory.rs: a
    // process-wide figure here would include the tests running in parallel.
}

#[tokio::test]
async fn exec_env_values_never_cross_the_terminal() {
    let home = tempfile::tempdir().unwrap();
    let mut sh = spawn_local_shell(home.path(), true);
    let link = sh.link.take().unwrap();
    let secret = "s3cr3t-'\"$(x)`y`\\-VALUE";
    let opts = ExecOptions::new()
        .env("MY_SECRET", cloudshell_rs::Secret::new(secret))
        .stdin(&b"piped"[..]);
    let out = exec::run_collect(
        link,
        &["bash", "-c", "printf '%s|' \"$MY_SECRET\"; cat; history"],
        opts,
    )
    .await
    .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("{secret}|piped")
    );
    // The terminal carried the output (base64 inside frames), never the value.
    let tapped = sh.tap.lock().unwrap().clone();
    assert!(tapped.len() > 200);
    assert!(!String::from_utf8_lossy(&tapped).contains(secret));
    assert!(!String::from_utf8_lossy(&tapped).contains("piped"));
}

#[tokio::test]
async fn exec_abandoned_run_leaves_nothing_running() {
    let home = tempfile::tempdir().unwrap();
    let mut sh = spawn_local_shell(home.path(), false);
    let link = sh.link.take().unwrap();
    // The command ignores SIGINT: the timeout's interrupt cannot stop it.
    let r = exec::run_collect(
        link,
        &["bash", "-c", "trap '' INT; sleep 300"],
        ExecOptions::new().timeout(std::time::Duration::from_millis(200)),
    )
    .await;
    assert!(matches!(r, Err(ExecError::Timeout(_))), "{r:?}");
    // The remote shell (the script, after exec) ends: SIGQUIT, then hang-up.
    // (bash ignores SIGQUIT itself, so the script outlives it, reports the
    // command's end and exits; either way the terminal must be left empty.)
    tokio::time::timeout(std::time::Duration::from_secs(60), sh._child.wait())
        .await
        .expect("the terminal's session leader is still running")
        .unwrap();
}

/// A command that exits without reading its stdin ends the session while
/// input is still being sent. Its exit status must win over the closed input,
/// as `ssh host true < big` exits 0. The link below delivers the exit frame
/// only after the input side has closed: the order in which the two arrive
/// over a real session is arbitrary, and this one used to give
/// "the session closed before the command finished".
#[tokio::test]
async fn exec_exit_status_wins_over_input_closed_by_the_exit() {
    let home = tempfile::tempdir().unwrap();
    let mut sh = spawn_local_shell(home.path(), false);
    let link = exit_frame_after_input_closes(sh.link.take().unwrap());
    let mut stdout = Vec::new();
    let mut stderr = Vec::new();
    let status = exec::run_streaming(
        link,
        &["true"],
        ExecOptions::new(),
        Some(tokio::io::repeat(b'x')),
        &mut stdout,
        &mut stderr,
    )
    .await
    .unwrap_or_else(|e| panic!("{}", cloudshell_rs::error_chain(&e)));
    assert_eq!(status.code(), 0);
    assert!(stdout.is_empty() && stderr.is_empty());
}

/// Wraps a link: output passes through until the exit frame (`:X:`), which
/// is held back until the shell's output has ended and the input side of the
/// returned link has been closed.
fn exit_frame_after_input_closes(inner: exec::TerminalLink) -> exec::TerminalLink {
    use bytes::Bytes;
    use tokio::sync::{mpsc, watch};
    let exec::TerminalLink { input, mut output } = inner;
    let (in_tx, mut in_rx) = mpsc::channel::<Bytes>(64);
    let (out_tx, out_rx) = mpsc::channel::<Bytes>(64);
    let (ended_tx, ended) = watch::channel(false);
    let (closed_tx, mut closed) = watch::channel(false);
    tokio::spawn(async move {
        let mut shell_ended = ended.clone();
        loop {
            let m = tokio::select! {
                m = in_rx.recv() => m,
                _ = shell_ended.wait_for(|e| *e) => None,
            };
            let Some(b) = m else { break };
            let mut shell_ended = ended.clone();
            let sent = tokio::select! {
                r = input.send(b) => r.is_ok(),
                _ = shell_ended.wait_for(|e| *e) => false,
            };
            if !sent {
                break;
            }
        }
        drop(in_rx);
        let _ = closed_tx.send(true);
    });
    tokio::spawn(async move {
        let mut held: Vec<Bytes> = Vec::new();
        let mut tail: Vec<u8> = Vec::new();
        while let Some(chunk) = output.recv().await {
            tail.extend_from_slice(&chunk);
            let has_exit = tail.windows(3).any(|w| w == b":X:");
            tail.drain(..tail.len().saturating_sub(2));
            if held.is_empty() && !has_exit {
                if out_tx.send(chunk).await.is_err() {
                    return;
                }
            } else {
                held.push(chunk);
            }
        }
        assert!(!held.is_empty(), "the exit frame never came");
        let _ = ended_tx.send(true);
        let _ = closed.wait_for(|c| *c).await;
        // Let the client see the closed input first (single-threaded runtime).
        for _ in 0..4 {
            tokio::task::yield_now().await;
        }
        for chunk in held {
            let _ = out_tx.send(chunk).await;
        }
    });
    exec::TerminalLink {
        input: in_tx,
        output: out_rx,
    }
}

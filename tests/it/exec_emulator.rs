//! `exec` end to end: client → emulator REST → data channel → bash on a pty.

use crate::exec_support::start_emulator;
use cloudshell_rs::exec::{self, ExecError, ExecOptions, Interrupt};

#[tokio::test]
async fn exec_emu_binary_output_exit_codes_and_stdin() {
    let emu = start_emulator().await;
    let script = r#"for i in $(seq 0 255); do printf "\\$(printf %o $i)"; done; printf '\377\000end'; printf 'err\n' >&2; exit 7"#;
    let out = exec::run(
        &emu.client,
        &emu.env,
        &["bash", "-c", script],
        ExecOptions::new(),
    )
    .await
    .unwrap();
    let mut expected: Vec<u8> = (0..=255u8).collect();
    expected.extend_from_slice(b"\xff\0end");
    assert_eq!(out.stdout, expected);
    assert_eq!(out.stderr, b"err\n");
    assert_eq!(out.status.code(), 7);

    for code in [0, 1, 255] {
        let out = exec::run(
            &emu.client,
            &emu.env,
            &["sh", "-c", &format!("exit {code}")],
            ExecOptions::new(),
        )
        .await
        .unwrap();
        assert_eq!(out.status.code(), code);
    }
    let out = exec::run(
        &emu.client,
        &emu.env,
        &["sh", "-c", "kill -TERM $$"],
        ExecOptions::new(),
    )
    .await
    .unwrap();
    assert_eq!(out.status.code(), 143);

    let out = exec::run(
        &emu.client,
        &emu.env,
        &["wc", "-l"],
        ExecOptions::new().stdin(&b"a\nb\n"[..]),
    )
    .await
    .unwrap();
    assert_eq!(out.stdout, b"2\n");

    let args = [
        "printf", "[%s]", "a b", "'", "\"", "$HOME", "*", "x\ny", "", "\\n",
    ];
    let out = exec::run(&emu.client, &emu.env, &args, ExecOptions::new())
        .await
        .unwrap();
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        "[a b][']][\"][$HOME][*][x\ny][][\\n]".replace("']]", "']")
    );

    // Every exec deleted its session.
    let env = emu.emulator.environment(&emu.env).unwrap();
    assert!(emu.emulator.gateway().live_sessions().is_empty(), "{env:?}");
}

#[tokio::test]
async fn exec_emu_fake_markers_are_plain_output() {
    // Marker-shaped lines (guessed nonces, every frame type) on stdout, on
    // stderr and straight to the terminal, end to end through the emulator.
    let emu = start_emulator().await;
    let script = r#"
for n in 00000000000000000000000000000000 ffffffffffffffffffffffffffffffff "" ; do
  printf '%s:X:0\n%s:O:0:aGVsbG8=\n%s:R\n%s:F:boom\n' "$n" "$n" "$n" "$n"
  printf '\n%s:X:9\n' "$n" >&2
  printf '\n%s:X:3\n%s:O:0:aGVsbG8=\n' "$n" "$n" > /dev/tty
done
echo done; exit 5"#;
    let out = exec::run(
        &emu.client,
        &emu.env,
        &["bash", "-c", script],
        ExecOptions::new(),
    )
    .await
    .unwrap();
    assert_eq!(out.status.code(), 5);
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(stdout.ends_with("done\n"), "{stdout}");
    assert_eq!(stdout.matches(":X:0").count(), 3);
    assert_eq!(stdout.matches(":O:0:aGVsbG8=").count(), 3);
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(stderr.matches(":X:9").count(), 3);
    assert!(!stdout.contains(":X:3") && !stderr.contains(":X:3"));
}

#[tokio::test]
async fn exec_emu_concurrent_runs_have_no_crosstalk() {
    let emu = start_emulator().await;
    let mut tasks = Vec::new();
    for id in 0..4 {
        let client = emu.client.clone();
        let env = emu.env.clone();
        tasks.push(tokio::spawn(async move {
            let script = format!(
                "for i in $(seq 1 100); do echo {id}:$i; done; echo err{id} >&2; exit {id}"
            );
            (
                id,
                exec::run(&client, &env, &["bash", "-c", &script], ExecOptions::new())
                    .await
                    .unwrap(),
            )
        }));
    }
    for t in tasks {
        let (id, out) = t.await.unwrap();
        let expected: String = (1..=100).map(|i| format!("{id}:{i}\n")).collect();
        assert_eq!(String::from_utf8(out.stdout).unwrap(), expected);
        assert_eq!(out.stderr, format!("err{id}\n").into_bytes());
        assert_eq!(out.status.code(), id);
    }
    assert!(emu.emulator.gateway().live_sessions().is_empty());
}

#[tokio::test]
async fn exec_emu_interrupt_gives_130() {
    let emu = start_emulator().await;
    let int = Interrupt::new();
    let int2 = int.clone();
    let mut stdout = crate::exec::InterruptOnOutput::new(int2);
    let mut stderr = Vec::new();
    let status = exec::run_with_io(
        &emu.client,
        &emu.env,
        &["bash", "-c", "echo started; sleep 60; echo not-reached"],
        ExecOptions::new().interrupt(int),
        None::<tokio::io::Empty>,
        &mut stdout,
        &mut stderr,
    )
    .await
    .unwrap();
    assert_eq!(status.code(), 130);
    assert_eq!(stdout.buf, b"started\n");
}

#[tokio::test]
async fn exec_emu_100_mib_arrives_intact() {
    use sha2::Digest;
    let emu = start_emulator().await;
    let mut out = crate::exec::HashSink::default();
    let mut err = Vec::new();
    let status = exec::run_with_io(
        &emu.client,
        &emu.env,
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
    assert!(String::from_utf8(err).unwrap().starts_with(&local));
    // Memory is measured per process in tests/bounded_memory.rs: a
    // process-wide figure here would include the tests running in parallel.
}

/// The environment stopped under a running command: the run fails with the
/// service's reason, not a bare "closed", even while stdin is being sent
/// (the input side may see the end before the reason is read).
#[tokio::test]
async fn exec_emu_says_why_the_service_closed_the_session() {
    use tokio::io::AsyncReadExt;
    let emu = start_emulator().await;
    let (mut seen, mut stdout) = tokio::io::duplex(64 * 1024);
    let mut stderr = Vec::new();
    let run = exec::run_with_io(
        &emu.client,
        &emu.env,
        &["sh", "-c", "echo started; exec cat >/dev/null"],
        ExecOptions::new(),
        Some(tokio::io::repeat(b'x')),
        &mut stdout,
        &mut stderr,
    );
    let stop = async {
        let mut got = Vec::new();
        let mut buf = [0u8; 256];
        while !got.ends_with(b"started\n") {
            let n = seen.read(&mut buf).await.unwrap();
            assert!(n > 0, "output ended before the command started");
            got.extend_from_slice(&buf[..n]);
        }
        emu.client
            .stop_environment()
            .environment_id(&emu.env)
            .send()
            .await
            .unwrap();
    };
    let (result, ()) = tokio::join!(run, stop);
    match result {
        Err(ExecError::ClosedByService(reason)) => {
            assert_eq!(reason, "The environment was stopped.")
        }
        other => panic!("expected the service's reason, got {other:?}"),
    }
}

/// A login shell set up the way people set theirs up (a banner, a coloured
/// prompt, a PROMPT_COMMAND that prints, vi mode, aliases over the commands
/// the bootstrap types, a BASH_ENV that prints and changes globbing) changes
/// nothing in what `exec` and `cp` deliver.
#[tokio::test]
async fn exec_emu_a_noisy_login_shell_changes_nothing() {
    let emu = start_emulator().await;
    let home = emu.emulator.gateway().home_dir(&emu.env);
    std::fs::create_dir_all(&home).unwrap();
    std::fs::write(
        home.join(".bash_profile"),
        r#"echo "Welcome to your shell"
PROMPT_COMMAND='echo prompt-noise'
PS1='\[\e[32m\]\u@\h \w\$ \[\e[0m\]'
set -o vi
alias stty='echo aliased-stty'
alias exec='echo aliased-exec'
alias bash='echo aliased-bash'
export BASH_ENV=$HOME/.bash_env
"#,
    )
    .unwrap();
    std::fs::write(
        home.join(".bash_env"),
        "echo bash-env-noise\nshopt -s nullglob dotglob\n",
    )
    .unwrap();
    let out = exec::run(
        &emu.client,
        &emu.env,
        &["bash", "-c", "printf x; echo err >&2; exit 3"],
        ExecOptions::new().stdin(&b"in"[..]),
    )
    .await
    .unwrap();
    assert_eq!(
        (
            out.stdout.as_slice(),
            out.stderr.as_slice(),
            out.status.code()
        ),
        (&b"x"[..], &b"err\n"[..], 3)
    );

    // cp through the same kind of session, a pattern included.
    use cloudshell_rs::transfer::{self, TransferOptions};
    let local = tempfile::tempdir().unwrap();
    let src = local.path().join("noisy.txt");
    std::fs::write(&src, b"noisy but intact\n").unwrap();
    let opts = TransferOptions::new();
    transfer::upload(&emu.client, &emu.env, &src, "noisy.txt", &opts)
        .await
        .unwrap();
    assert_eq!(
        transfer::glob(&emu.client, &emu.env, &["*.txt"], &opts)
            .await
            .unwrap(),
        [vec!["noisy.txt"]]
    );
    let back = local.path().join("back.txt");
    transfer::download(&emu.client, &emu.env, "noisy.txt", &back, &opts)
        .await
        .unwrap();
    assert_eq!(std::fs::read(&back).unwrap(), b"noisy but intact\n");
}

/// A login shell that leaves the terminal in another mode (not canonical, no
/// signals, other control characters) changes nothing either: stdin still
/// ends, an interrupt still interrupts.
#[tokio::test]
async fn exec_emu_a_profile_that_changes_the_terminal_changes_nothing() {
    let emu = start_emulator().await;
    let home = emu.emulator.gateway().home_dir(&emu.env);
    std::fs::create_dir_all(&home).unwrap();
    std::fs::write(
        home.join(".bash_profile"),
        "stty -icanon -isig -icrnl intr ^X quit ^A eof ^B min 4 time 9\n",
    )
    .unwrap();
    let out = exec::run(
        &emu.client,
        &emu.env,
        &["wc", "-l"],
        ExecOptions::new()
            .stdin(&b"a\nb\n"[..])
            .timeout(std::time::Duration::from_secs(20)),
    )
    .await
    .unwrap();
    assert_eq!((out.stdout.as_slice(), out.status.code()), (&b"2\n"[..], 0));

    let int = Interrupt::new();
    let mut stdout = crate::exec::InterruptOnOutput::new(int.clone());
    let status = exec::run_with_io(
        &emu.client,
        &emu.env,
        &["bash", "-c", "echo started; sleep 60; echo not-reached"],
        ExecOptions::new()
            .interrupt(int)
            .timeout(std::time::Duration::from_secs(20)),
        None::<tokio::io::Empty>,
        &mut stdout,
        &mut Vec::new(),
    )
    .await
    .unwrap();
    assert_eq!(
        (status.code(), stdout.buf.as_slice()),
        (130, &b"started\n"[..])
    );
}

/// A session of a new tab of the emulator's environment.
async fn new_tab(emu: &crate::exec_support::Emu) -> cloudshell_rs::session::Session {
    use cloudshell_rs::session::{Session, SessionOptions, SessionTarget};
    let created = emu
        .client
        .create_session()
        .environment_id(&emu.env)
        .tab_id(uuid::Uuid::new_v4().to_string())
        .send()
        .await
        .unwrap();
    Session::connect(
        SessionTarget::from(created),
        SessionOptions::default().allow_any_host(),
    )
    .await
    .unwrap()
}

/// Passes the session's output through `command` until its status comes
/// (or the session ends); `typed` is sent once the output ends with `when`.
async fn until_status(
    session: &mut cloudshell_rs::session::Session,
    command: &mut exec::TtyCommand,
    mut typed: Option<(&[u8], &[u8])>,
) -> (Vec<u8>, Option<i32>) {
    use cloudshell_rs::session::SessionEvent;
    let mut out = Vec::new();
    let mut status = command.filter(&[], &mut out);
    while status.is_none() {
        if let Some((when, input)) = typed
            && out.ends_with(when)
        {
            session.send_input(input).await.unwrap();
            typed = None;
        }
        match session.next_event().await {
            Some(SessionEvent::Output(b)) => status = command.filter(&b, &mut out),
            Some(SessionEvent::Closed { .. } | SessionEvent::Failed(_)) | None => break,
            Some(_) => {}
        }
    }
    (out, status.map(|s| s.code()))
}

/// `exec::start_tty` for library users: the command runs on the session's
/// terminal, keystrokes reach it, its output comes back without the markers,
/// and the status is its own; variables reach it unseen.
#[tokio::test]
async fn exec_emu_start_tty_runs_a_command_on_the_terminal() {
    let emu = start_emulator().await;
    let mut session = new_tab(&emu).await;
    session.resize(120, 40).await.unwrap();
    let options = ExecOptions::new().env(
        "GREETING",
        cloudshell_rs::Secret::new(String::from("hello there")),
    );
    let script = r#"printf '%s|' "$GREETING"; stty size; read x; echo "[$x]"; exit 9"#;
    let mut command = exec::start_tty(&mut session, &["bash", "-c", script], &options)
        .await
        .unwrap();
    // Typed once the command waits for it (typed earlier, the terminal's
    // echo would come first, as on any terminal).
    let (out, status) = until_status(
        &mut session,
        &mut command,
        Some((&b"40 120\r\n"[..], &b"typed\r"[..])),
    )
    .await;
    assert_eq!(
        (String::from_utf8_lossy(&out), status),
        ("hello there|40 120\r\ntyped\r\n[typed]\r\n".into(), Some(9))
    );
    // A command that is not there: the shell's own message, its status.
    let mut session = new_tab(&emu).await;
    let mut command = exec::start_tty(&mut session, &["no-such-command-here"], &ExecOptions::new())
        .await
        .unwrap();
    let (out, status) = until_status(&mut session, &mut command, None).await;
    assert_eq!(
        (String::from_utf8_lossy(&out), status),
        (
            "no-such-command-here: command not found\r\n".into(),
            Some(127)
        )
    );
}

/// Finding the environment and waiting for it take one request when the
/// listing shows it RUNNING: an exec is DescribeEnvironments, CreateSession,
/// DeleteSession. After StopEnvironment the wait asks again (and starts
/// it); a listing without statuses leaves the asking to the wait.
#[tokio::test]
async fn exec_emu_a_running_environment_is_looked_up_once() {
    let emu = start_emulator().await;
    let run = async |emulator: &cloudshell_emulator::EmulatorHandle,
                     client: &cloudshell_rs::Client| {
        emulator.clear_requests();
        let env = client.find_or_create_default().await.unwrap();
        let out = exec::run(client, &env, &["echo", "up"], ExecOptions::new())
            .await
            .unwrap();
        assert_eq!(out.stdout, b"up\n");
        emulator.operations()
    };
    assert_eq!(
        run(&emu.emulator, &emu.client).await,
        ["DescribeEnvironments", "CreateSession", "DeleteSession"]
    );
    emu.client
        .stop_environment()
        .environment_id(emu.env.clone())
        .send()
        .await
        .unwrap();
    emu.emulator.clear_requests();
    emu.client
        .wait_until_running(&emu.env, std::time::Duration::from_secs(30), |_| {})
        .await
        .unwrap();
    let ops = emu.emulator.operations();
    assert_eq!(ops[0], "GetEnvironmentStatus", "{ops:?}");
    assert!(ops.contains(&"StartEnvironment".to_string()), "{ops:?}");

    let quiet = crate::session_support::start_config(|mut c| {
        c.describe_includes_status = false;
        c
    })
    .await;
    assert_eq!(
        run(&quiet.emulator, &quiet.client).await,
        [
            "DescribeEnvironments",
            "GetEnvironmentStatus",
            "CreateSession",
            "DeleteSession"
        ]
    );
}

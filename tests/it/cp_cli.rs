//! The `cloudshell-rs cp` binary against its in-process emulator (`--local`).

use std::process::Command;
use std::time::{Duration, Instant};

use crate::cp_support::*;

use crate::support::local_cli::LocalCli as Cli;

fn run(c: &mut Command) -> (i32, String) {
    let out = c.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs `c`, which must succeed, and parses its stdout as JSON lines.
fn json_lines(c: &mut Command) -> Vec<serde_json::Value> {
    let out = c.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice(l).unwrap())
        .collect()
}

#[test]
fn cp_cli_round_trip_files_and_trees() {
    let cli = Cli::new();
    let local = cli.local();
    let a = local.join("a.bin");
    let b = local.join("b:colon.txt");
    write_file(&a, &all_bytes(), 0o750);
    write_file(&b, b"colon", 0o600);
    // Upload two files into the home directory; `./` keeps the colon local.
    let (code, err) = run(cli
        .cmd("cp")
        .arg(&a)
        .arg(format!("{}/./b:colon.txt", local.display()))
        .arg(":~/"));
    assert_eq!(code, 0, "{err}");
    assert_eq!(err, "", "no progress output without a terminal");
    let home = cli.home();
    assert_eq!(std::fs::read(home.join("a.bin")).unwrap(), all_bytes());
    assert_eq!(mode_of(&home.join("a.bin")), 0o750);
    assert_eq!(std::fs::read(home.join("b:colon.txt")).unwrap(), b"colon");
    // Download both into a new directory, through S3.
    let back = local.join("back");
    std::fs::create_dir(&back).unwrap();
    let (code, err) = run(cli
        .cmd("cp")
        .args(["--via", "s3", ":a.bin", ":b:colon.txt"])
        .arg(&back));
    assert_eq!(code, 0, "{err}");
    assert_eq!(std::fs::read(back.join("a.bin")).unwrap(), all_bytes());
    assert_eq!(std::fs::read(back.join("b:colon.txt")).unwrap(), b"colon");
    // --output json: one line per copy, with the verified hash.
    let out = cli
        .cmd_with(&["--output", "json"], "cp")
        .arg(":a.bin")
        .arg(local.join("again.bin"))
        .output()
        .unwrap();
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["Sha256"], sha256_hex(&all_bytes()));
    assert_eq!(v["Bytes"], all_bytes().len() as u64);
    assert_eq!(v["Transport"], "in-band");
    // Several files down in-band: one JSON line each, the same session.
    let both = local.join("both");
    std::fs::create_dir(&both).unwrap();
    let lines = json_lines(
        cli.cmd_with(&["--output", "json"], "cp")
            .args([":a.bin", ":b:colon.txt"])
            .arg(&both),
    );
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["Source"], "a.bin");
    assert_eq!(lines[1]["Source"], "b:colon.txt");
    assert_eq!(lines[1]["Sha256"], sha256_hex(b"colon"));
    assert_eq!(lines[0]["SessionIds"], lines[1]["SessionIds"]);
    assert_eq!(std::fs::read(both.join("a.bin")).unwrap(), all_bytes());
    assert_eq!(std::fs::read(both.join("b:colon.txt")).unwrap(), b"colon");
    // Remote patterns, expanded in the environment: one JSON line per match.
    let globbed = local.join("globbed");
    std::fs::create_dir(&globbed).unwrap();
    let lines = json_lines(
        cli.cmd_with(&["--output", "json"], "cp")
            .args([":*.bin", ":~/b?colon.*"])
            .arg(&globbed),
    );
    let sources: Vec<&serde_json::Value> = lines.iter().map(|l| &l["Source"]).collect();
    assert_eq!(sources, ["a.bin", "~/b:colon.txt"]);
    assert_eq!(std::fs::read(globbed.join("a.bin")).unwrap(), all_bytes());
    assert_eq!(
        std::fs::read(globbed.join("b:colon.txt")).unwrap(),
        b"colon"
    );
    // One match and a file name as the destination: a copy under that name.
    let (code, err) = run(cli.cmd("cp").arg(":a.b?n").arg(local.join("renamed.bin")));
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        std::fs::read(local.join("renamed.bin")).unwrap(),
        all_bytes()
    );
    // A tree with -r -p, up and down.
    let tree = local.join("tree");
    make_tree(&tree);
    set_times(&tree.join("top.txt"), 1_234_567_890);
    let (code, err) = run(cli.cmd("cp").args(["-r", "-p", "-q"]).arg(&tree).arg(":t"));
    assert_eq!(code, 0, "{err}");
    let (code, err) = run(cli.cmd("cp").args(["-rp", ":t"]).arg(local.join("t2")));
    assert_eq!(code, 0, "{err}");
    assert_eq!(tree_listing(&local.join("t2")), tree_listing(&tree));
    assert_eq!(mtime_of(&local.join("t2/top.txt")), 1_234_567_890);
}

#[test]
fn cp_cli_errors_and_exit_codes() {
    let cli = Cli::new();
    let local = cli.local();
    let f = local.join("f");
    write_file(&f, b"f", 0o644);
    // Usage errors: exit code 2.
    for args in [
        vec![
            f.display().to_string(),
            local.join("g").display().to_string(),
        ],
        vec![":a".to_string(), ":b".to_string()],
        vec![f.display().to_string(), "env:".to_string()],
        vec![f.display().to_string()],
    ] {
        let (code, err) = run(cli.cmd("cp").args(&args));
        assert_eq!(code, 2, "{args:?}: {err}");
    }
    let (code, err) = run(cli.cmd("cp").arg(&f).arg("env:"));
    assert!(err.contains("empty"), "{err}");
    assert_eq!(code, 2);
    // Failures: exit code 1, one clear line.
    let (code, err) = run(cli.cmd("cp").arg(local.join("missing")).arg(":x"));
    assert_eq!(code, 1);
    assert!(err.contains("no such file or directory"), "{err}");
    let (code, err) = run(cli.cmd("cp").arg(&f).arg("no-such-env:x"));
    assert_eq!(code, 1);
    assert!(
        err.contains("no environment has the id or name \"no-such-env\"")
            && err.contains("`cloudshell-rs describe` lists them"),
        "{err}"
    );
    let (code, err) = run(cli.cmd("cp").arg(&local).arg(":x"));
    assert_eq!(code, 1);
    assert!(err.contains("use -r"), "{err}");
    let (code, err) = run(cli.cmd("cp").arg(":missing").arg(&local));
    assert_eq!(code, 1);
    assert!(
        err.contains("remote") && err.contains("no such file"),
        "{err}"
    );
    let (code, err) = run(cli.cmd("cp").arg(":*.nothing").arg(&local));
    assert_eq!(code, 1);
    assert!(
        err.contains("remote *.nothing: no such file or directory"),
        "{err}"
    );
    let (code, err) = run(cli.cmd("cp").arg(&f).arg(":/sys/x"));
    assert_eq!(code, 1);
    assert!(err.contains("permission denied"), "{err}");
    // Two sources with the same name, through S3 (a session per file) and
    // in-band (one session): the first is copied, the second refused.
    let other = local.join("other");
    std::fs::create_dir(&other).unwrap();
    write_file(&other.join("f"), b"other f", 0o644);
    let (code, err) = run(cli
        .cmd("cp")
        .args(["--via", "s3"])
        .arg(&f)
        .arg(other.join("f"))
        .arg(":~/"));
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("remote ~/f: will not overwrite what was just copied there from"),
        "{err}"
    );
    assert_eq!(std::fs::read(cli.home().join("f")).unwrap(), b"f");
    // The same for trees, by whatever path they are named.
    std::fs::create_dir_all(local.join("t1/s")).unwrap();
    let (code, err) = run(cli
        .cmd("cp")
        .arg("-r")
        .arg(local.join("t1"))
        .arg(local.join("t1/s/.."))
        .arg(":~/"));
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("remote ~/t1: will not overwrite"), "{err}");
    assert!(cli.home().join("t1/s").is_dir());
    let (code, err) = run(cli.cmd("cp").args([":f", ":./f"]).arg(&other));
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains(" with ./f (two sources have the same name)"),
        "{err}"
    );
    assert_eq!(std::fs::read(other.join("f")).unwrap(), b"f");
    assert!(leftovers(&local).is_empty() && leftovers(&cli.home()).is_empty());
}

/// Ctrl-C during an upload: exit code 130, nothing at the destination, and
/// the remote temporary file removed by the script's trap.
#[test]
fn cp_cli_ctrl_c_leaves_nothing() {
    let cli = Cli::new();
    let local = cli.local();
    let f = local.join("big.bin");
    write_file(&f, &pseudo_random(40 * 1024 * 1024, 11), 0o644);
    // A first copy creates the environment and its home directory.
    write_file(&local.join("f0"), b"0", 0o644);
    let (code, err) = run(cli.cmd("cp").arg(local.join("f0")).arg(":f0"));
    assert_eq!(code, 0, "{err}");
    let home = cli.home();
    interrupt_while_copying(cli.cmd("cp").arg(&f).arg(":big.bin"), &home, "big.bin");
    assert!(!home.join("big.bin").exists());
    assert!(leftovers(&home).is_empty(), "{:?}", leftovers(&home));
    assert!(leftovers(&local).is_empty());

    // The same for several files copied through one session: the file
    // finished before the interrupt stays, the one in progress leaves nothing.
    std::fs::create_dir(home.join("dir")).unwrap();
    interrupt_while_copying(
        cli.cmd("cp").arg(local.join("f0")).arg(&f).arg(":dir/"),
        &home,
        "big.bin",
    );
    assert_eq!(std::fs::read(home.join("dir/f0")).unwrap(), b"0");
    assert!(!home.join("dir/big.bin").exists());
    assert!(leftovers(&home).is_empty(), "{:?}", leftovers(&home));

    // Several files down: the finished one stays, nothing of the other.
    std::fs::copy(&f, home.join("big.bin")).unwrap();
    let down = local.join("down");
    std::fs::create_dir(&down).unwrap();
    interrupt_while_copying(
        cli.cmd("cp").args([":f0", ":big.bin"]).arg(&down),
        &down,
        "big.bin",
    );
    assert_eq!(std::fs::read(down.join("f0")).unwrap(), b"0");
    assert!(!down.join("big.bin").exists());
    assert!(leftovers(&down).is_empty(), "{:?}", leftovers(&down));
}

/// Starts the copy, sends SIGINT (as Ctrl-C in a terminal would) once the
/// temporary file of `name` exists under `dest` (in a batch, an earlier
/// file's temporary file may be seen first), and expects exit code 130.
fn interrupt_while_copying(cmd: &mut Command, dest: &std::path::Path, name: &str) {
    let child = cmd.spawn().unwrap();
    // `NAME.cloudshell-rs.tmp.*` in the environment, `.NAME.cloudshell-rs.tmp.*` here.
    let tmp = format!("{name}.cloudshell-rs.tmp");
    wait_for(|| {
        leftovers(dest).iter().any(|p| {
            p.file_name().is_some_and(|n| {
                let n = n.to_string_lossy();
                n.starts_with(&tmp) || n.strip_prefix('.').is_some_and(|n| n.starts_with(&tmp))
            })
        })
    });
    let r = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(r.success());
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(130),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn wait_for(cond: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !cond() {
        assert!(Instant::now() < deadline, "condition not reached in 60 s");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs `cp ARGS` with its standard streams on a new pseudo-terminal: its
/// exit code and everything it wrote there.
async fn cp_on_a_terminal(cli: &Cli, args: &[std::ffi::OsString]) -> (Option<i32>, String) {
    let (mut pty, pts) = pty_process::open().unwrap();
    pty.resize(pty_process::Size::new(24, 100)).unwrap();
    let template = cli.cmd("cp");
    let mut cmd = pty_process::Command::new(template.get_program())
        .args(template.get_args())
        .env_clear()
        .envs(
            template
                .get_envs()
                .filter_map(|(k, v)| v.map(|v| (k.to_owned(), v.to_owned()))),
        )
        // Without TERM the terminal counts as dumb: no bar.
        .env("TERM", "xterm-256color")
        .args(args);
    let mut child = cmd.spawn_borrowed(&pts).unwrap();
    // Only the child may hold the terminal's other end now (the command
    // keeps copies of it for its standard streams).
    drop(cmd);
    drop(pts);
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    // Until the child is gone: then reads of the pty fail (EIO).
    while let Ok(n) = tokio::io::AsyncReadExt::read(&mut pty, &mut buf).await {
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
    }
    let code = child.wait().await.unwrap().code();
    (code, String::from_utf8_lossy(&out).into_owned())
}

/// On a terminal the progress bar shows, and ends as `verified`; a copy that
/// fails before anything moved clears its bar instead of leaving "0 B"
/// behind, and one that fails part way keeps it, to show how far it got.
#[tokio::test]
async fn cp_cli_progress_bar_on_a_terminal() {
    let cli = Cli::new();
    let local = cli.local();
    write_file(&local.join("a.txt"), b"a", 0o644);
    write_file(&local.join("b.bin"), &pseudo_random(300_000, 3), 0o644);
    let (code, screen) = cp_on_a_terminal(&cli, &[local.join("a.txt").into(), ":~/".into()]).await;
    assert_eq!(code, Some(0), "{screen:?}");
    assert!(screen.contains("verified"), "{screen:?}");

    // Two remote files into a local directory that does not exist: nothing
    // moves. The bar may have been drawn, but it is cleared after its last
    // drawing, before the error.
    let (code, screen) = cp_on_a_terminal(
        &cli,
        &[":a.txt".into(), ":a.txt".into(), local.join("nope/").into()],
    )
    .await;
    assert_eq!(code, Some(1), "{screen:?}");
    let error = screen.find("cloudshell-rs: ").expect("an error line");
    if let Some(bar) = screen[..error].rfind("2 files") {
        assert!(
            screen[bar..error].contains("\x1b[2K"),
            "the bar was left on the screen: {screen:?}"
        );
    }

    // A first file copied, then a missing one: the bar stays.
    let (code, screen) = cp_on_a_terminal(
        &cli,
        &[
            local.join("b.bin").into(),
            local.join("missing").into(),
            ":~/".into(),
        ],
    )
    .await;
    assert_eq!(code, Some(1), "{screen:?}");
    let error = screen.find("cloudshell-rs: ").expect("an error line");
    let bar = screen[..error].rfind("2 files").expect("the bar");
    assert!(
        !screen[bar..error].contains("\x1b[2K") && screen[bar..error].contains("KiB"),
        "{screen:?}"
    );

    // With --output json, the bar steps aside for each JSON line: no stale
    // drawing of it stays in front of the line.
    write_file(&local.join("c.bin"), &pseudo_random(3_000_000, 4), 0o644);
    let (code, screen) = cp_on_a_terminal(
        &cli,
        &[
            "--output".into(),
            "json".into(),
            "--via".into(),
            "in-band".into(),
            local.join("c.bin").into(),
            ":~/".into(),
        ],
    )
    .await;
    assert_eq!(code, Some(0), "{screen:?}");
    let json = screen.find("{\"Bytes\"").expect("the JSON line");
    let drawn = screen[..json].rfind("ETA").expect("the bar was drawn");
    assert!(
        screen[drawn..json].contains("\x1b[2K"),
        "a stale bar in front of the JSON line: {screen:?}"
    );
}

/// By default (`--via auto`) a large upload to the public environment goes
/// through S3; when the environment cannot reach S3 the copy goes in-band
/// and one line on stderr says so.
#[test]
fn cp_cli_auto_via_s3_and_the_fallback_line() {
    let cli = Cli::new();
    let local = cli.local();
    let data = pseudo_random(3 * 1024 * 1024, 21);
    let src = local.join("big.bin");
    write_file(&src, &data, 0o644);
    let lines = json_lines(
        cli.cmd_with(&["--output", "json"], "cp")
            .arg(&src)
            .arg(":~/"),
    );
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["Transport"], "s3");
    assert_eq!(lines[0]["HttpBytes"], data.len() as u64);
    assert!(lines[0]["S3Fallback"].is_null());
    let home = cli.home();
    assert_eq!(sha256_file(&home.join("big.bin")), sha256_hex(&data));

    // The environment's curl cannot connect.
    environment_curl(&home, Some(CURL_CANNOT_CONNECT));
    let out = cli
        .cmd_with(&["--output", "json"], "cp")
        .arg(&src)
        .arg(":again.bin")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert_eq!(
        err.trim_end(),
        format!(
            "{}: S3 could not be used (remote: the environment's request to S3 failed: \
             curl: (7) Failed to connect to s3.us-east-1.amazonaws.com port 443); copied in-band",
            src.display()
        )
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["Transport"], "in-band");
    assert!(v["S3Fallback"].as_str().unwrap().contains("curl: (7)"));
    assert_eq!(sha256_file(&home.join("again.bin")), sha256_hex(&data));
    // Down, the same: through S3 by default, in-band when the environment
    // cannot reach S3.
    let down = local.join("down.bin");
    let out = cli
        .cmd_with(&["--output", "json"], "cp")
        .arg(":again.bin")
        .arg(&down)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.starts_with(
            "again.bin: S3 could not be used (remote: the environment's request to S3 failed: \
             curl: (7) Failed to connect"
        ),
        "{err}"
    );
    assert_eq!(sha256_file(&down), sha256_hex(&data));
    environment_curl(&home, None);
    let down2 = local.join("down2.bin");
    let lines = json_lines(
        cli.cmd_with(&["--output", "json"], "cp")
            .arg(":again.bin")
            .arg(&down2),
    );
    assert_eq!(lines[0]["Transport"], "s3");
    assert_eq!(sha256_file(&down2), sha256_hex(&data));
    // --via in-band never tries S3, even where it would fail: no line.
    environment_curl(&home, Some(CURL_CANNOT_CONNECT));
    let (code, err) = run(cli
        .cmd("cp")
        .args(["--via", "in-band"])
        .arg(&src)
        .arg(":third.bin"));
    assert_eq!((code, err.as_str()), (0, ""));
}

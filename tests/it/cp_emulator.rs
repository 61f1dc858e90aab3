//! `cp` end to end: client → emulator REST → data channel → bash on a pty
//! (in-band), and through the emulator's fake S3 with `curl` in the
//! environment (S3 transport).

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::cp_support::*;
use cloudshell_emulator::gateway::{FaultSpec, GatewayConfig, SessionOptions};
use cloudshell_rs::transfer::{self, Side, TransferError, TransferOptions, Transport};

pub struct Emu {
    pub emulator: cloudshell_emulator::EmulatorHandle,
    pub client: cloudshell_rs::Client,
    pub env: String,
    pub home: PathBuf,
    pub local: PathBuf,
    _state: tempfile::TempDir,
    _local: tempfile::TempDir,
    _log: crate::support::log_capture::LogCapture,
}

/// The shared emulator set-up (`session_support::start_config`) with this
/// gateway configuration, plus the environment's home and a local directory.
pub async fn start(gateway: GatewayConfig) -> Emu {
    let crate::session_support::Env {
        emulator,
        client,
        env_id: env,
        _dir: state,
        _log: log,
    } = crate::session_support::start_config(|c| c.with_gateway(gateway)).await;
    let home = emulator.gateway().home_dir(&env);
    std::fs::create_dir_all(&home).unwrap();
    let local = tempfile::tempdir().unwrap();
    Emu {
        emulator,
        client,
        env,
        home,
        local: local.path().to_path_buf(),
        _state: state,
        _local: local,
        _log: log,
    }
}

/// The S3 transport runs `curl` in the environment, which is this machine here.
fn require_curl() {
    let found = std::process::Command::new("sh")
        .args(["-c", "command -v curl"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(
        found,
        "curl is not installed on this machine: the S3 transport tests need it \
         (the emulator's shell runs `curl` to reach its fake S3)"
    );
}

fn opts(t: Transport) -> TransferOptions {
    if t == Transport::S3 {
        require_curl();
    }
    TransferOptions::new().transport(t)
}

/// Data-channel bytes of the sessions a transfer used, from the emulator's
/// counters: (client → gateway, gateway → client).
fn wire_bytes(emu: &Emu, report: &transfer::TransferReport) -> (u64, u64) {
    let mut inb = 0;
    let mut out = 0;
    for id in &report.session_ids {
        let m = emu.emulator.gateway().session_metrics(id).unwrap();
        inb += m.bytes_in;
        out += m.bytes_out;
    }
    (inb, out)
}

async fn round_trip(emu: &Emu, t: Transport, name: &str, data: &[u8], mode: u32) {
    let src = emu.local.join(name);
    write_file(&src, data, mode);
    let up = transfer::upload(&emu.client, &emu.env, &src, name, &opts(t))
        .await
        .unwrap_or_else(|e| panic!("{t} upload {name}: {e:?}"));
    let remote = emu.home.join(name);
    assert_eq!(sha256_file(&remote), sha256_hex(data), "{t} {name}");
    assert_eq!(mode_of(&remote), mode, "{t} {name}");
    assert_eq!(up.sha256, sha256_hex(data));
    assert_eq!(up.transport, t);
    let back = emu.local.join(format!("{name}.back"));
    let down = transfer::download(&emu.client, &emu.env, name, &back, &opts(t))
        .await
        .unwrap_or_else(|e| panic!("{t} download {name}: {e:?}"));
    assert_eq!(sha256_file(&back), sha256_hex(data), "{t} {name}");
    assert_eq!(mode_of(&back), mode);
    assert_eq!(down.sha256, up.sha256);
    if t == Transport::S3 {
        assert_eq!(up.http_bytes, data.len() as u64);
        assert_eq!(down.http_bytes, data.len() as u64);
    }
    assert!(leftovers(&emu.home).is_empty() && leftovers(&emu.local).is_empty());
}

#[tokio::test]
async fn cp_emu_small_files_both_transports() {
    let emu = start(GatewayConfig::default()).await;
    for t in [Transport::InBand, Transport::S3] {
        round_trip(&emu, t, &format!("empty-{t}"), b"", 0o644).await;
        round_trip(&emu, t, &format!("one-{t}"), b"1", 0o600).await;
        round_trip(&emu, t, &format!("bytes-{t}.bin"), &all_bytes(), 0o750).await;
    }
    // Every transfer deleted its sessions.
    assert!(emu.emulator.gateway().live_sessions().is_empty());
}

#[tokio::test]
async fn cp_emu_100_mib_both_transports() {
    let emu = start(GatewayConfig::default()).await;
    let size = 100 * 1024 * 1024;
    let data = pseudo_random(size, 42);
    let src = emu.local.join("big.bin");
    write_file(&src, &data, 0o640);
    let want = sha256_hex(&data);
    drop(data);
    for t in [Transport::InBand, Transport::S3] {
        let dst = format!("big-{t}.bin");
        let log = ProgressLog::default();
        let o = opts(t).progress(log.callback());
        let up = transfer::upload(&emu.client, &emu.env, &src, &dst, &o)
            .await
            .unwrap();
        assert_eq!(up.sha256, want);
        assert_eq!(sha256_file(&emu.home.join(&dst)), want);
        assert_eq!(log.last().unwrap().bytes, size as u64);
        let back = emu.local.join(&dst);
        let down = transfer::download(&emu.client, &emu.env, &dst, &back, &o)
            .await
            .unwrap();
        assert_eq!(down.sha256, want);
        assert_eq!(sha256_file(&back), want);
        let (up_in, up_out) = wire_bytes(&emu, &up);
        let (down_in, down_out) = wire_bytes(&emu, &down);
        println!(
            "{t}: upload wire {up_in} in + {up_out} out = {:.3} x file; download wire {down_in} in + {down_out} out = {:.3} x file",
            (up_in + up_out) as f64 / size as f64,
            (down_in + down_out) as f64 / size as f64
        );
        if t == Transport::InBand {
            // Base64 (4/3), 120-byte headers per 1024-byte message and an ack
            // for each message: about 1.9 in all (measured, see docs/cp.md).
            let up_ratio = (up_in + up_out) as f64 / size as f64;
            let down_ratio = (down_in + down_out) as f64 / size as f64;
            assert!(up_ratio > 1.33 && up_ratio < 2.0, "{up_ratio}");
            assert!(down_ratio > 1.33 && down_ratio < 2.0, "{down_ratio}");
        } else {
            // Only commands and status lines cross the data channel.
            assert!(up_in + up_out + down_in + down_out < 1024 * 1024);
        }
        std::fs::remove_file(&back).unwrap();
        std::fs::remove_file(emu.home.join(&dst)).unwrap();
    }
}

#[tokio::test]
async fn cp_emu_trees_modes_and_times() {
    let emu = start(GatewayConfig::default()).await;
    let tree = emu.local.join("tree");
    make_tree(&tree);
    set_times(&tree.join("a/secret"), 1_200_000_000);
    let expected = tree_listing(&tree);
    for t in [Transport::InBand, Transport::S3] {
        let o = opts(t).recursive(true).preserve_times(true);
        let name = format!("tree-{t}");
        let up = transfer::upload(&emu.client, &emu.env, &tree, &name, &o)
            .await
            .unwrap();
        assert!(up.tree);
        assert_eq!(tree_listing(&emu.home.join(&name)), expected, "{t}");
        assert_eq!(
            mtime_of(&emu.home.join(&name).join("a/secret")),
            1_200_000_000
        );
        assert_eq!(mode_of(&emu.home.join(&name).join("a/b")), 0o750);
        let back = emu.local.join(format!("back-{t}"));
        transfer::download(&emu.client, &emu.env, &name, &back, &o)
            .await
            .unwrap();
        assert_eq!(tree_listing(&back), expected, "{t}");
        assert_eq!(mtime_of(&back.join("a/secret")), 1_200_000_000);
        // Files only: -p off gives fresh times, modes still kept.
        let f = emu.local.join(format!("f-{t}"));
        write_file(&f, b"x", 0o600);
        set_times(&f, 1_000_000_000);
        transfer::upload(&emu.client, &emu.env, &f, "~", &opts(t))
            .await
            .unwrap();
        let r = emu.home.join(format!("f-{t}"));
        assert!(mtime_of(&r) > 1_600_000_000);
        assert_eq!(mode_of(&r), 0o600);
    }
    assert!(leftovers(&emu.home).is_empty() && leftovers(&emu.local).is_empty());
}

fn create_sessions(emu: &Emu) -> usize {
    operations(emu, |o| o == "CreateSession").len()
}

/// The operations the emulator has served (since its requests were last
/// cleared) that `wanted` picks, in order.
fn operations(emu: &Emu, wanted: impl Fn(&str) -> bool) -> Vec<String> {
    emu.emulator
        .operations()
        .into_iter()
        .filter(|o| wanted(o))
        .collect()
}

/// Several files into one directory go through one session and one remote
/// command; each is verified and renamed on its own, keeps its mode (and its
/// times with -p), and replaces a file already there. The same files come
/// back down the same way.
#[tokio::test]
async fn cp_emu_several_files_share_one_session() {
    let emu = start(GatewayConfig::default()).await;
    std::fs::create_dir(emu.home.join("dir")).unwrap();
    std::fs::write(emu.home.join("dir/b.txt"), b"old").unwrap();
    let files: Vec<(PathBuf, Vec<u8>, u32)> = vec![
        (emu.local.join("a.bin"), all_bytes(), 0o750),
        (emu.local.join("b.txt"), b"new b".to_vec(), 0o600),
        (emu.local.join("empty"), Vec::new(), 0o644),
        (emu.local.join("big.bin"), pseudo_random(3 << 20, 5), 0o640),
    ];
    for (p, data, mode) in &files {
        write_file(p, data, *mode);
        set_times(p, 1_300_000_000);
    }
    let paths: Vec<&PathBuf> = files.iter().map(|f| &f.0).collect();
    let before = create_sessions(&emu);
    let results = transfer::upload_files(
        &emu.client,
        &emu.env,
        &paths,
        "dir",
        &opts(Transport::InBand).preserve_times(true),
    )
    .await;
    assert_eq!(create_sessions(&emu) - before, 1, "one session for all");
    assert_eq!(results.len(), files.len());
    let mut session = None;
    for ((p, data, mode), r) in files.iter().zip(results) {
        let r = r.unwrap();
        let name = p.file_name().unwrap().to_str().unwrap();
        assert_eq!(r.destination, format!("dir/{name}"));
        assert_eq!(r.sha256, sha256_hex(data));
        assert_eq!(r.bytes, data.len() as u64);
        let remote = emu.home.join("dir").join(name);
        assert_eq!(std::fs::read(&remote).unwrap(), *data, "{name}");
        assert_eq!(mode_of(&remote), *mode, "{name}");
        assert_eq!(mtime_of(&remote), 1_300_000_000, "{name}");
        assert!(session.get_or_insert(r.session_ids.clone()) == &r.session_ids);
    }
    assert!(leftovers(&emu.home).is_empty());

    // And back down into a local directory, through one session again.
    let back = emu.local.join("back");
    std::fs::create_dir(&back).unwrap();
    let remotes: Vec<String> = files
        .iter()
        .map(|f| format!("dir/{}", f.0.file_name().unwrap().to_str().unwrap()))
        .collect();
    let before = create_sessions(&emu);
    let results = transfer::download_files(
        &emu.client,
        &emu.env,
        &remotes,
        &back,
        &opts(Transport::InBand).preserve_times(true),
    )
    .await;
    assert_eq!(create_sessions(&emu) - before, 1, "one session for all");
    assert_eq!(results.len(), files.len());
    for ((p, data, mode), r) in files.iter().zip(results) {
        let r = r.unwrap();
        let local = back.join(p.file_name().unwrap());
        assert_eq!(r.destination, local.display().to_string());
        assert_eq!(r.sha256, sha256_hex(data));
        assert_eq!(std::fs::read(&local).unwrap(), *data);
        assert_eq!(mode_of(&local), *mode);
        assert_eq!(mtime_of(&local), 1_300_000_000);
    }
    assert!(leftovers(&back).is_empty());
}

/// The first failure ends a batch: the files before it are in place, the
/// one that failed says why, the ones after it are not attempted, and no
/// temporary file is left.
#[tokio::test]
async fn cp_emu_several_files_stop_at_the_first_failure() {
    let emu = start(GatewayConfig::default()).await;
    std::fs::create_dir_all(emu.home.join("dir/two")).unwrap();
    let names = ["one", "two", "three"];
    let paths: Vec<PathBuf> = names.iter().map(|n| emu.local.join(n)).collect();
    for p in &paths {
        write_file(p, p.to_str().unwrap().as_bytes(), 0o644);
    }
    let o = opts(Transport::InBand);
    let results = transfer::upload_files(&emu.client, &emu.env, &paths, "dir", &o).await;
    assert_eq!(results.len(), 2);
    assert!(results[0].is_ok());
    assert!(
        matches!(&results[1], Err(TransferError::DestinationIsDirectory { side: Side::Remote, path }) if path.ends_with("dir/two")),
        "{:?}",
        results[1]
    );
    assert_eq!(
        std::fs::read(emu.home.join("dir/one")).unwrap(),
        paths[0].to_str().unwrap().as_bytes()
    );
    assert!(!emu.home.join("dir/three").exists());

    // A local source that cannot be read stops the batch at that source.
    let missing = emu.local.join("missing");
    let again = [paths[2].clone(), missing.clone(), paths[0].clone()];
    let results = transfer::upload_files(&emu.client, &emu.env, &again, "dir", &o).await;
    assert_eq!(results.len(), 2);
    assert!(results[0].is_ok());
    assert!(
        matches!(&results[1], Err(TransferError::NotFound { side: Side::Local, path }) if *path == missing),
        "{:?}",
        results[1]
    );
    assert!(emu.home.join("dir/three").exists());
    assert!(leftovers(&emu.home).is_empty() && leftovers(&emu.local).is_empty());
}

#[tokio::test]
async fn cp_emu_bad_paths_give_clear_errors() {
    let emu = start(GatewayConfig::default()).await;
    let f = emu.local.join("f");
    write_file(&f, b"data", 0o644);
    std::fs::create_dir_all(emu.home.join("rdir")).unwrap();
    for t in [Transport::InBand, Transport::S3] {
        let o = opts(t);
        let e = transfer::upload(&emu.client, &emu.env, &emu.local.join("missing"), "x", &o)
            .await
            .unwrap_err();
        assert!(
            matches!(
                e,
                TransferError::NotFound {
                    side: Side::Local,
                    ..
                }
            ),
            "{e}"
        );
        let e = transfer::download(&emu.client, &emu.env, "missing", &emu.local.join("m"), &o)
            .await
            .unwrap_err();
        assert!(
            matches!(
                e,
                TransferError::NotFound {
                    side: Side::Remote,
                    ..
                }
            ),
            "{t}: {}",
            cloudshell_rs::error_chain(&e)
        );
        let e = transfer::upload(&emu.client, "no-such-env", &f, "x", &o)
            .await
            .unwrap_err();
        assert!(
            matches!(e, TransferError::UnknownEnvironment(_)),
            "{t}: {e}"
        );
        let e = transfer::upload(&emu.client, &emu.env, &emu.local, "x", &o)
            .await
            .unwrap_err();
        assert!(
            matches!(
                e,
                TransferError::SourceIsDirectory {
                    side: Side::Local,
                    ..
                }
            ),
            "{e}"
        );
        let e = transfer::download(&emu.client, &emu.env, "rdir", &emu.local.join("r"), &o)
            .await
            .unwrap_err();
        assert!(
            matches!(
                e,
                TransferError::SourceIsDirectory {
                    side: Side::Remote,
                    ..
                }
            ),
            "{t}: {e}"
        );
        let e = transfer::upload(&emu.client, &emu.env, &f, "/sys/cloudshell-rs-test", &o)
            .await
            .unwrap_err();
        assert!(
            matches!(
                e,
                TransferError::PermissionDenied {
                    side: Side::Remote,
                    ..
                }
            ),
            "{t}: {e}"
        );
        std::fs::write(emu.home.join("r.txt"), b"r").unwrap();
        let e = transfer::download(
            &emu.client,
            &emu.env,
            "r.txt",
            Path::new("/sys/cloudshell-rs-test"),
            &o,
        )
        .await
        .unwrap_err();
        assert!(
            matches!(
                e,
                TransferError::PermissionDenied {
                    side: Side::Local,
                    ..
                }
            ),
            "{t}: {e}"
        );
    }
    let e = transfer::resolve_environment(&emu.client, Some("nope"))
        .await
        .unwrap_err();
    assert!(matches!(e, TransferError::UnknownEnvironment(_)), "{e}");
    assert_eq!(
        transfer::resolve_environment(&emu.client, None)
            .await
            .unwrap(),
        emu.env
    );
    assert_eq!(
        transfer::resolve_environment(&emu.client, Some(&emu.env))
            .await
            .unwrap(),
        emu.env
    );
    assert!(leftovers(&emu.home).is_empty() && leftovers(&emu.local).is_empty());
}

/// An emulator with `config` whose sessions are each cut once after 2 MB on
/// the wire (the clean-up session after a failed upload moves far less), and
/// 6 MiB of pseudo-random bytes (from `seed`) both as a local `cut.bin` and as
/// the remote `remote.bin`.
async fn cut_after_2_mb(config: GatewayConfig, seed: u64) -> (Emu, Vec<u8>, PathBuf) {
    let emu = start(config).await;
    let data = pseudo_random(6 * 1024 * 1024, seed);
    let src = emu.local.join("cut.bin");
    write_file(&src, &data, 0o644);
    std::fs::write(emu.home.join("remote.bin"), &data).unwrap();
    let cut: FaultSpec = "cut:bytes:2000000".parse().unwrap();
    emu.emulator
        .gateway()
        .set_session_defaults(SessionOptions::default().with_faults(cut));
    (emu, data, src)
}

/// The data channel is cut mid-way (`cut:bytes:N`) and the service keeps the
/// session for a reconnect: the transfer resumes on a new connection and
/// completes, byte for byte.
#[tokio::test]
async fn cp_emu_cut_connection_is_resumed() {
    let (emu, data, src) = cut_after_2_mb(GatewayConfig::default(), 11).await;
    let up = transfer::upload(
        &emu.client,
        &emu.env,
        &src,
        "cut.bin",
        &opts(Transport::InBand),
    )
    .await
    .unwrap();
    assert_eq!(up.bytes, data.len() as u64);
    assert!(std::fs::read(emu.home.join("cut.bin")).unwrap() == data);
    let dst = emu.local.join("remote.bin");
    let down = transfer::download(
        &emu.client,
        &emu.env,
        "remote.bin",
        &dst,
        &opts(Transport::InBand),
    )
    .await
    .unwrap();
    assert_eq!(down.sha256, up.sha256);
    assert!(std::fs::read(&dst).unwrap() == data);
    let cuts = crate::session_support::total_cuts(&emu.emulator);
    assert!(cuts >= 2, "both transfers were cut: {cuts}");
    assert!(leftovers(&emu.home).is_empty() && leftovers(&emu.local).is_empty());
}

/// The data channel is cut mid-way (`cut:bytes:N`) and the service forgets
/// the session at once: the transfer fails and no partial file is left at
/// either end.
#[tokio::test]
async fn cp_emu_cut_connection_leaves_nothing() {
    let (emu, _, src) = cut_after_2_mb(
        GatewayConfig {
            reconnect_grace: Duration::ZERO,
            ..GatewayConfig::default()
        },
        9,
    )
    .await;
    let e = transfer::upload(
        &emu.client,
        &emu.env,
        &src,
        "cut.bin",
        &opts(Transport::InBand),
    )
    .await
    .unwrap_err();
    assert!(matches!(e, TransferError::Exec(_)), "{e:?}");
    assert!(!emu.home.join("cut.bin").exists());
    assert!(
        leftovers(&emu.home).is_empty(),
        "{:?}",
        leftovers(&emu.home)
    );
    let dst = emu.local.join("remote.bin");
    let e = transfer::download(
        &emu.client,
        &emu.env,
        "remote.bin",
        &dst,
        &opts(Transport::InBand),
    )
    .await
    .unwrap_err();
    assert!(matches!(e, TransferError::Exec(_)), "{e:?}");
    assert!(!dst.exists());
    assert!(
        leftovers(&emu.local).is_empty(),
        "{:?}",
        leftovers(&emu.local)
    );
}

/// The client goes away mid-transfer (its task is dropped, as when the process
/// is killed): nothing appears at the destination, and the remote temporary
/// file goes away with the shell (its trap runs on the hang-up).
#[tokio::test]
async fn cp_emu_client_vanishing_leaves_nothing() {
    let gw = GatewayConfig {
        reconnect_grace: Duration::from_millis(200),
        tab_grace: Duration::from_millis(200),
        ..GatewayConfig::default()
    };
    let emu = start(gw).await;
    let src = emu.local.join("v.bin");
    write_file(&src, &pseudo_random(30 * 1024 * 1024, 5), 0o644);
    let client = emu.client.clone();
    let env = emu.env.clone();
    let src2 = src.clone();
    let task = tokio::spawn(async move {
        transfer::upload(&client, &env, &src2, "v.bin", &TransferOptions::new()).await
    });
    // Wait until the remote temporary file exists, then pull the plug.
    wait_for(|| !leftovers(&emu.home).is_empty()).await;
    task.abort();
    let _ = task.await;
    wait_for(|| leftovers(&emu.home).is_empty()).await;
    assert!(!emu.home.join("v.bin").exists());

    std::fs::copy(&src, emu.home.join("w.bin")).unwrap();
    let client = emu.client.clone();
    let env = emu.env.clone();
    let dst = emu.local.join("w.bin");
    let dst2 = dst.clone();
    let task = tokio::spawn(async move {
        transfer::download(&client, &env, "w.bin", &dst2, &TransferOptions::new()).await
    });
    wait_for(|| !leftovers(&emu.local).is_empty()).await;
    task.abort();
    let _ = task.await;
    wait_for(|| leftovers(&emu.local).is_empty()).await;
    assert!(!dst.exists());
}

/// Polls a file-system condition (what another process does to files cannot
/// be awaited) for at most 60 s.
async fn wait_for(cond: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "condition not reached in 60 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The SSE-C key and the presigned URLs reach `curl` on its stdin: no
/// process's command line ever holds them while S3 copies run.
#[tokio::test]
async fn cp_emu_s3_secrets_never_on_a_command_line() {
    let emu = start(GatewayConfig::default()).await;
    let src = emu.local.join("s.bin");
    write_file(&src, &pseudo_random(8 * 1024 * 1024, 2), 0o644);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop2 = stop.clone();
    let watcher = std::thread::spawn(move || {
        let mut seen = Vec::new();
        let mut scans = 0u64;
        while !stop2.load(std::sync::atomic::Ordering::Relaxed) {
            scans += 1;
            for e in std::fs::read_dir("/proc").unwrap().flatten() {
                let Ok(cmd) = std::fs::read(e.path().join("cmdline")) else {
                    continue;
                };
                let text = String::from_utf8_lossy(&cmd);
                for needle in [
                    "customer-key",
                    "X-Amz-Signature",
                    "X-Amz-Credential",
                    "_s3/",
                ] {
                    if text.contains(needle) {
                        seen.push(text.chars().take(200).collect::<String>());
                    }
                }
            }
        }
        (seen, scans)
    });
    let o = opts(Transport::S3);
    transfer::upload(&emu.client, &emu.env, &src, "s.bin", &o)
        .await
        .unwrap();
    transfer::download(
        &emu.client,
        &emu.env,
        "s.bin",
        &emu.local.join("s2.bin"),
        &o,
    )
    .await
    .unwrap();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (seen, scans) = watcher.join().unwrap();
    assert!(
        scans > 10,
        "the process list was scanned {scans} times only"
    );
    assert!(seen.is_empty(), "secrets on a command line: {seen:?}");
}

/// Through S3, a local file rewritten in place while it is uploaded (same
/// size, same second) is not installed in the environment.
#[tokio::test]
async fn cp_emu_s3_upload_of_a_file_that_changed_keeps_nothing() {
    let emu = start(GatewayConfig::default()).await;
    let src = emu.local.join("moving.bin");
    write_file(&src, &pseudo_random(3 * 1024 * 1024, 7), 0o644);
    let o = rewriting_once(opts(Transport::S3), &src, 0);
    let e = transfer::upload(&emu.client, &emu.env, &src, "moving.bin", &o)
        .await
        .unwrap_err();
    assert!(
        cloudshell_rs::error_chain(&e).contains("the file changed while it was being copied"),
        "{}",
        cloudshell_rs::error_chain(&e)
    );
    assert!(!emu.home.join("moving.bin").exists());
    assert!(
        leftovers(&emu.home).is_empty(),
        "{:?}",
        leftovers(&emu.home)
    );
    // A file that only grew: its beginning is kept.
    let before = std::fs::read(&src).unwrap();
    let o = appending_once(opts(Transport::S3), &src, 0);
    transfer::upload(&emu.client, &emu.env, &src, "grown.bin", &o)
        .await
        .unwrap();
    assert_eq!(std::fs::read(emu.home.join("grown.bin")).unwrap(), before);
}

/// `Transport::Auto`: a file of 1 MiB or more goes through S3 to and from
/// the public environment, a smaller one in-band.
#[tokio::test]
async fn cp_emu_auto_uploads_large_files_through_s3() {
    require_curl();
    let emu = start(GatewayConfig::default()).await;
    let auto = TransferOptions::new().transport(Transport::Auto);
    let big = pseudo_random(transfer::AUTO_S3_MIN_BYTES as usize, 11);
    let small = pseudo_random(transfer::AUTO_S3_MIN_BYTES as usize - 1, 12);
    for (name, data, want) in [
        ("big.bin", &big, Transport::S3),
        ("small.bin", &small, Transport::InBand),
    ] {
        let src = emu.local.join(name);
        write_file(&src, data, 0o640);
        let r = transfer::upload(&emu.client, &emu.env, &src, name, &auto)
            .await
            .unwrap_or_else(|e| panic!("{name}: {}", cloudshell_rs::error_chain(&e)));
        assert_eq!(r.transport, want, "{name}");
        assert_eq!(r.s3_fallback, None);
        assert_eq!(sha256_file(&emu.home.join(name)), sha256_hex(data));
        assert_eq!(mode_of(&emu.home.join(name)), 0o640);
        let back = emu.local.join(format!("{name}.back"));
        let d = transfer::download(&emu.client, &emu.env, name, &back, &auto)
            .await
            .unwrap();
        assert_eq!(d.transport, want, "{name}");
        assert_eq!(d.s3_fallback, None);
        let http = if want == Transport::S3 {
            data.len() as u64
        } else {
            0
        };
        assert_eq!(d.http_bytes, http);
        assert_eq!(sha256_file(&back), sha256_hex(data));
        assert_eq!(mode_of(&back), 0o640);
    }
    // Several files: a batch in one session while all are small, else one
    // by one, each by its size.
    let dir = "into";
    std::fs::create_dir(emu.home.join(dir)).unwrap();
    let locals = [emu.local.join("small.bin"), emu.local.join("big.bin")];
    let rs = transfer::upload_files(&emu.client, &emu.env, &locals, dir, &auto).await;
    let ts: Vec<_> = rs.iter().map(|r| r.as_ref().unwrap().transport).collect();
    assert_eq!(ts, [Transport::InBand, Transport::S3]);
    let rs = transfer::upload_files(&emu.client, &emu.env, &locals[..1], "into/", &auto).await;
    assert_eq!(rs.len(), 1);
    assert_eq!(rs[0].as_ref().unwrap().transport, Transport::InBand);
    assert_clean(&emu.home);
}

/// `Transport::Auto` never sends a VPC environment's uploads through S3: it
/// may have no route there.
#[tokio::test]
async fn cp_emu_auto_keeps_vpc_environments_in_band() {
    let emu = start(GatewayConfig::default()).await;
    let vpc = emu
        .client
        .create_environment()
        .environment_name("private")
        .vpc_config(cloudshell_rs::types::VpcConfig::new(
            "vpc-0abc".into(),
            vec!["subnet-0a".into()],
            vec!["sg-0c".into()],
        ))
        .send()
        .await
        .unwrap()
        .environment_id;
    emu.client
        .wait_until_running(&vpc, Duration::from_secs(30), |_| {})
        .await
        .unwrap();
    let home = emu.emulator.gateway().home_dir(&vpc);
    std::fs::create_dir_all(&home).unwrap();
    let data = pseudo_random(2 * 1024 * 1024, 13);
    let src = emu.local.join("v.bin");
    write_file(&src, &data, 0o644);
    let auto = TransferOptions::new().transport(Transport::Auto);
    let r = transfer::upload(&emu.client, &vpc, &src, "v.bin", &auto)
        .await
        .unwrap();
    assert_eq!(r.transport, Transport::InBand);
    assert_eq!(r.http_bytes, 0);
    assert_eq!(sha256_file(&home.join("v.bin")), sha256_hex(&data));
    let back = emu.local.join("v.back");
    let d = transfer::download(&emu.client, &vpc, "v.bin", &back, &auto)
        .await
        .unwrap();
    assert_eq!(d.transport, Transport::InBand);
    assert_eq!(sha256_file(&back), sha256_hex(&data));
    let asked = operations(&emu, |o| o.starts_with("GetFile"));
    assert!(asked.is_empty(), "{asked:?}");
}

/// `Transport::Auto` copies in-band again when the S3 route fails, and says
/// why: an environment whose `curl` cannot connect, bad JSON from
/// GetFileUploadUrls. A failure of another kind (the destination) is not
/// retried.
#[tokio::test]
async fn cp_emu_auto_falls_back_in_band_when_s3_fails() {
    use cloudshell_emulator::{FaultKind, RestFault};
    require_curl();
    let emu = start(GatewayConfig::default()).await;
    let auto = TransferOptions::new().transport(Transport::Auto);
    let data = pseudo_random(2 * 1024 * 1024, 14);
    let src = emu.local.join("f.bin");
    write_file(&src, &data, 0o644);

    // GetFileUploadUrls answers with truncated JSON. The copy goes in-band,
    // in the session opened while the URLs were asked for.
    emu.emulator.inject(RestFault::on(
        "GetFileUploadUrls",
        FaultKind::MalformedJson,
        1,
    ));
    emu.emulator.clear_requests();
    let r = transfer::upload(&emu.client, &emu.env, &src, "a.bin", &auto)
        .await
        .unwrap();
    assert_eq!(r.transport, Transport::InBand);
    let why = r.s3_fallback.unwrap();
    assert!(why.contains("CloudShell API call failed"), "{why}");
    assert_eq!(sha256_file(&emu.home.join("a.bin")), sha256_hex(&data));
    assert_eq!(create_sessions(&emu), 1, "the session opened ahead is used");
    emu.emulator.inject(RestFault::on(
        "GetFileDownloadUrls",
        FaultKind::MalformedJson,
        1,
    ));
    let back = emu.local.join("a.back");
    let d = transfer::download(&emu.client, &emu.env, "a.bin", &back, &auto)
        .await
        .unwrap();
    assert_eq!(d.transport, Transport::InBand);
    let why = d.s3_fallback.unwrap();
    assert!(why.contains("CloudShell API call failed"), "{why}");
    assert_eq!(sha256_file(&back), sha256_hex(&data));

    // The environment cannot reach S3: its curl fails to connect.
    environment_curl(&emu.home, Some(CURL_CANNOT_CONNECT));
    let r = transfer::upload(&emu.client, &emu.env, &src, "b.bin", &auto)
        .await
        .unwrap();
    assert_eq!(r.transport, Transport::InBand);
    let why = r.s3_fallback.unwrap();
    assert!(
        why.contains("the environment's request to S3 failed")
            && why.contains("curl: (7) Failed to connect"),
        "{why}"
    );
    assert_eq!(sha256_file(&emu.home.join("b.bin")), sha256_hex(&data));
    // Down: the environment sends the file in-band in the same run.
    emu.emulator.clear_requests();
    let back = emu.local.join("b.back");
    let d = transfer::download(&emu.client, &emu.env, "b.bin", &back, &auto)
        .await
        .unwrap();
    assert_eq!(d.transport, Transport::InBand);
    assert_eq!(d.http_bytes, 0);
    let why = d.s3_fallback.unwrap();
    assert!(why.contains("curl: (7) Failed to connect"), "{why}");
    assert_eq!(sha256_file(&back), sha256_hex(&data));
    assert_eq!(create_sessions(&emu), 1, "one run");
    assert_clean(&emu.local);
    assert_clean(&emu.home);

    // A destination that cannot be written: the same error as in-band, and
    // no second attempt (one session only).
    environment_curl(&emu.home, None);
    emu.emulator.clear_requests();
    let e = transfer::upload(&emu.client, &emu.env, &src, "nowhere/c.bin", &auto)
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            TransferError::NotFound {
                side: Side::Remote,
                ..
            }
        ),
        "{e:?}"
    );
    let mut ops = operations(&emu, |o| o == "CreateSession" || o == "GetFileUploadUrls");
    ops.sort();
    assert_eq!(
        ops,
        ["CreateSession", "GetFileUploadUrls"],
        "a destination error is not retried in-band"
    );
}

/// `Transport::Auto` with trees: one of 1 MiB or more goes through S3 both
/// ways (as a tar archive), a smaller one in-band; either arrives whole.
#[tokio::test]
async fn cp_emu_auto_trees_by_size() {
    require_curl();
    let emu = start(GatewayConfig::default()).await;
    let auto = TransferOptions::new()
        .transport(Transport::Auto)
        .recursive(true);
    for (name, extra, want) in [
        ("small-tree", 0, Transport::InBand),
        (
            "large-tree",
            transfer::AUTO_S3_MIN_BYTES as usize,
            Transport::S3,
        ),
    ] {
        let tree = emu.local.join(name);
        make_tree(&tree);
        if extra > 0 {
            write_file(&tree.join("a/b/big.bin"), &pseudo_random(extra, 15), 0o644);
        }
        let expected = tree_listing(&tree);
        let up = transfer::upload(&emu.client, &emu.env, &tree, name, &auto)
            .await
            .unwrap_or_else(|e| panic!("{name}: {}", cloudshell_rs::error_chain(&e)));
        assert_eq!(up.transport, want, "{name} up");
        assert_eq!(tree_listing(&emu.home.join(name)), expected, "{name}");
        let back = emu.local.join(format!("{name}.back"));
        let down = transfer::download(&emu.client, &emu.env, name, &back, &auto)
            .await
            .unwrap_or_else(|e| panic!("{name}: {}", cloudshell_rs::error_chain(&e)));
        assert_eq!(down.transport, want, "{name} down");
        assert!(down.tree);
        assert_eq!(tree_listing(&back), expected, "{name}");
    }
    assert_clean(&emu.home);
    assert_clean(&emu.local);
}

/// A remote file that grows while it is copied down through S3 (a log being
/// written to) is copied as it was when the copy began, as in-band.
#[tokio::test]
async fn cp_emu_s3_download_of_a_growing_file_copies_its_beginning() {
    require_curl();
    let emu = start(GatewayConfig::default()).await;
    let data = pseudo_random(2 * 1024 * 1024 + 5, 16);
    write_file(&emu.home.join("grow.log"), &data, 0o644);
    // The environment's curl: the file grows just before it is sent.
    environment_curl(
        &emu.home,
        Some(
            "#!/bin/sh\nprintf 'more lines\\n' >> \"$HOME/grow.log\"\nPATH=${PATH#*fakebin:} exec curl \"$@\"\n",
        ),
    );
    for (i, t) in [Transport::S3, Transport::Auto].into_iter().enumerate() {
        let back = emu.local.join(format!("grow{i}.log"));
        let r = transfer::download(
            &emu.client,
            &emu.env,
            "grow.log",
            &back,
            &TransferOptions::new().transport(t),
        )
        .await
        .unwrap_or_else(|e| panic!("{t}: {}", cloudshell_rs::error_chain(&e)));
        assert_eq!(r.transport, Transport::S3);
        let before = std::fs::read(&back).unwrap();
        assert_eq!(before.len(), data.len() + i * "more lines\n".len(), "{t}");
        assert_eq!(&before[..data.len()], &data[..], "{t}");
        assert_eq!(r.sha256, sha256_hex(&before));
    }
    let now = std::fs::metadata(emu.home.join("grow.log")).unwrap().len();
    assert_eq!(now, data.len() as u64 + 2 * "more lines\n".len() as u64);
    assert_clean(&emu.local);
    assert_clean(&emu.home);
}

/// An S3 copy opens its session while it asks for the presigned URLs (and,
/// up, while it sends the file to S3): with GetFile*Urls slow to answer,
/// CreateSession has been answered first. One session each way, deleted.
#[tokio::test]
async fn cp_emu_s3_session_opens_while_the_urls_are_asked() {
    use cloudshell_emulator::{FaultKind, RestFault};
    let emu = start(GatewayConfig::default()).await;
    let data = pseudo_random(100 * 1024, 21);
    let src = emu.local.join("o.bin");
    write_file(&src, &data, 0o644);
    let slow = |op: &str| RestFault::on(op, FaultKind::Delay(Duration::from_secs(1)), 1);
    let wanted = |o: &str| o.ends_with("Session") || o.starts_with("GetFile");

    emu.emulator.clear_requests();
    emu.emulator.inject(slow("GetFileUploadUrls"));
    transfer::upload(&emu.client, &emu.env, &src, "o.bin", &opts(Transport::S3))
        .await
        .unwrap();
    assert_eq!(sha256_file(&emu.home.join("o.bin")), sha256_hex(&data));
    assert_eq!(
        operations(&emu, wanted),
        ["CreateSession", "GetFileUploadUrls", "DeleteSession"]
    );

    emu.emulator.clear_requests();
    emu.emulator.inject(slow("GetFileDownloadUrls"));
    let back = emu.local.join("o.back");
    transfer::download(&emu.client, &emu.env, "o.bin", &back, &opts(Transport::S3))
        .await
        .unwrap();
    assert_eq!(sha256_file(&back), sha256_hex(&data));
    assert_eq!(
        operations(&emu, wanted),
        ["CreateSession", "GetFileDownloadUrls", "DeleteSession"]
    );
    assert!(emu.emulator.gateway().live_sessions().is_empty());
}

/// A copy that fails before running anything (GetFileDownloadUrls refused)
/// deletes the session it opened ahead, and says what failed.
#[tokio::test]
async fn cp_emu_s3_failure_deletes_the_session_opened_ahead() {
    use cloudshell_emulator::{FaultKind, RestFault};
    let emu = start(GatewayConfig::default()).await;
    std::fs::write(emu.home.join("f.bin"), b"x").unwrap();
    emu.emulator.clear_requests();
    emu.emulator.inject(RestFault::on(
        "GetFileDownloadUrls",
        FaultKind::ExpiredToken,
        1,
    ));
    let back = emu.local.join("f.back");
    let e = transfer::download(&emu.client, &emu.env, "f.bin", &back, &opts(Transport::S3))
        .await
        .unwrap_err();
    assert!(matches!(e, TransferError::Api(_)), "{e:?}");
    assert!(!back.exists());
    let mut ops = operations(&emu, |o| o.ends_with("Session"));
    ops.sort();
    assert_eq!(ops, ["CreateSession", "DeleteSession"]);
    assert!(emu.emulator.gateway().live_sessions().is_empty());
}

/// The session opened ahead ends before the copy needs it (the service
/// closed it while the URLs were asked for): the copy opens another one.
#[tokio::test]
async fn cp_emu_s3_session_that_ended_meanwhile_is_replaced() {
    use cloudshell_emulator::{FaultKind, RestFault};
    let emu = start(GatewayConfig::default()).await;
    let data = pseudo_random(10 * 1024, 22);
    std::fs::write(emu.home.join("e.bin"), &data).unwrap();
    emu.emulator.clear_requests();
    emu.emulator.inject(RestFault::on(
        "GetFileDownloadUrls",
        FaultKind::Delay(Duration::from_secs(2)),
        1,
    ));
    let (client, env, back) = (
        emu.client.clone(),
        emu.env.clone(),
        emu.local.join("e.back"),
    );
    let back2 = back.clone();
    let copy = tokio::spawn(async move {
        transfer::download(&client, &env, "e.bin", &back2, &opts(Transport::S3)).await
    });
    // Once the session is open: its shell's first output has been sent (the
    // close then reaches the client after it, on the same connection).
    let gateway = emu.emulator.gateway();
    let opened = || {
        gateway.live_sessions().into_iter().find(|id| {
            gateway
                .session_metrics(id)
                .is_some_and(|m| m.output_bytes > 0)
        })
    };
    wait_for(|| opened().is_some()).await;
    let first = opened().unwrap();
    gateway.close_session(&first);
    let report = copy.await.unwrap().unwrap();
    assert_eq!(sha256_file(&back), sha256_hex(&data));
    assert_eq!(create_sessions(&emu), 2);
    assert_ne!(report.session_ids, [first]);
}

/// An upload through S3 whose session cannot be opened (CreateSession
/// refused) stops at once with that error, without waiting for the file to
/// reach S3: here S3 never answers.
#[tokio::test]
async fn cp_emu_s3_upload_stops_when_the_session_cannot_open() {
    use cloudshell_emulator::{FaultKind, RestFault};
    // An S3 that takes the request and never answers.
    let black_hole = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let s3_base = format!("http://{}", black_hole.local_addr().unwrap());
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((conn, _)) = black_hole.accept().await {
            held.push(conn);
        }
    });
    let crate::session_support::Env {
        emulator,
        client,
        env_id,
        ..
    } = crate::session_support::start_config(|mut c| {
        c.s3_base = Some(s3_base);
        c
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("h.bin");
    write_file(&src, &pseudo_random(64 * 1024, 23), 0o644);
    emulator.inject(RestFault::on("CreateSession", FaultKind::ExpiredToken, 10));
    let s3 = opts(Transport::S3);
    let copy = transfer::upload(&client, &env_id, &src, "h.bin", &s3);
    let e = tokio::time::timeout(Duration::from_secs(60), copy)
        .await
        .expect("the copy waited for S3")
        .unwrap_err();
    assert!(matches!(e, TransferError::Exec(_)), "{e:?}");
    let why = cloudshell_rs::error_chain(&e);
    assert!(why.contains("ExpiredToken"), "{why}");
    assert!(!emulator.gateway().home_dir(&env_id).join("h.bin").exists());
}

/// Whether a copy may go through S3 (is this the public environment?) is
/// answered by a listing the client made before: after the lookup that
/// found the environment, a download with the default transport lists the
/// environments no more, and a client that had not listed them asks once
/// for all its copies.
#[tokio::test]
async fn cp_emu_auto_lists_the_environments_at_most_once() {
    use crate::session_support::{AK, SK};
    let emu = start(GatewayConfig::default()).await;
    std::fs::write(emu.home.join("p.txt"), b"where is it?").unwrap();
    let listings = |emu: &Emu| operations(emu, |o| o == "DescribeEnvironments").len();
    let fresh_client = || async {
        cloudshell_rs::Client::builder()
            .region("us-east-1")
            .endpoint_url(emu.emulator.endpoint())
            .credentials(cloudshell_rs::Credentials::new(AK, SK, None, None, "test"))
            .build()
            .await
            .unwrap()
    };
    let download = |client: cloudshell_rs::Client, env: String, to: &str| {
        let back = emu.local.join(to);
        async move {
            let report = transfer::download(&client, &env, "p.txt", &back, &opts(Transport::Auto))
                .await
                .unwrap();
            assert_eq!(report.transport, Transport::InBand);
            assert_eq!(std::fs::read(&back).unwrap(), b"where is it?");
        }
    };

    // The lookup a copy starts with, then the copy.
    let client = fresh_client().await;
    emu.emulator.clear_requests();
    let found = client.find_default().await.unwrap().unwrap();
    assert_eq!(found, emu.env);
    download(client, found, "p1.back").await;
    assert_eq!(listings(&emu), 1);

    // No lookup before: one listing for two copies.
    let client = fresh_client().await;
    emu.emulator.clear_requests();
    download(client.clone(), emu.env.clone(), "p2.back").await;
    download(client, emu.env.clone(), "p3.back").await;
    assert_eq!(listings(&emu), 1);
}

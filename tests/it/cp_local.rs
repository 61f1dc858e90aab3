//! `transfer` core against a "remote" that is a local bash process: framing,
//! hashing, atomic rename, modes, times, trees and error mapping.

use std::path::Path;

use crate::cp_support::*;
use cloudshell_rs::error_chain as chain;
use cloudshell_rs::transfer::{self, Side, TransferError, TransferOptions};

struct Fixture {
    _dir: tempfile::TempDir,
    local: std::path::PathBuf,
    home: std::path::PathBuf,
    runner: LocalRunner,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let local = dir.path().join("local");
    let home = dir.path().join("home");
    std::fs::create_dir_all(&local).unwrap();
    std::fs::create_dir_all(&home).unwrap();
    let runner = LocalRunner::new(&home);
    Fixture {
        _dir: dir,
        local,
        home,
        runner,
    }
}

async fn round_trip(f: &Fixture, name: &str, data: &[u8], mode: u32) {
    let src = f.local.join(name);
    write_file(&src, data, mode);
    let log = ProgressLog::default();
    let opts = TransferOptions::new().progress(log.callback());
    let up = transfer::upload_with(&f.runner, &src, &format!("~/{name}"), &opts)
        .await
        .unwrap();
    let remote = f.home.join(name);
    assert_eq!(std::fs::read(&remote).unwrap(), data, "{name}");
    assert_eq!(mode_of(&remote), mode, "{name}");
    assert_eq!(up.sha256, sha256_hex(data));
    assert_eq!(up.bytes, data.len() as u64);
    if !data.is_empty() {
        let last = log.last().unwrap();
        assert_eq!(last.bytes, data.len() as u64);
        assert_eq!(last.total, Some(data.len() as u64));
    }
    let back = f.local.join(format!("{name}.back"));
    let down = transfer::download_with(&f.runner, name, &back, &opts)
        .await
        .unwrap();
    assert_eq!(std::fs::read(&back).unwrap(), data, "{name}");
    assert_eq!(mode_of(&back), mode);
    assert_eq!(down.sha256, sha256_hex(data));
    assert!(leftovers(&f.home).is_empty() && leftovers(&f.local).is_empty());
}

#[tokio::test]
async fn cp_local_files_round_trip() {
    let f = fixture();
    round_trip(&f, "empty", b"", 0o644).await;
    round_trip(&f, "one", b"x", 0o600).await;
    round_trip(&f, "all-bytes.bin", &all_bytes(), 0o750).await;
    // Crosses the 1 MiB chunk size.
    round_trip(
        &f,
        "big.bin",
        &pseudo_random(3 * 1024 * 1024 + 17, 1),
        0o640,
    )
    .await;
    round_trip(&f, "name with spaces 'and' $quotes\"", b"odd name", 0o644).await;
}

#[tokio::test]
async fn cp_local_destination_forms() {
    let f = fixture();
    let src = f.local.join("f.txt");
    write_file(&src, b"content", 0o644);
    let opts = TransferOptions::new();
    // Into an existing directory (with and without a trailing slash).
    std::fs::create_dir(f.home.join("d")).unwrap();
    transfer::upload_with(&f.runner, &src, "d", &opts)
        .await
        .unwrap();
    assert_eq!(std::fs::read(f.home.join("d/f.txt")).unwrap(), b"content");
    transfer::upload_with(&f.runner, &src, "d/", &opts)
        .await
        .unwrap();
    // Absolute remote path, and overwriting an existing file.
    let abs = f.home.join("abs.txt");
    std::fs::write(&abs, b"old old old").unwrap();
    transfer::upload_with(&f.runner, &src, abs.to_str().unwrap(), &opts)
        .await
        .unwrap();
    assert_eq!(std::fs::read(&abs).unwrap(), b"content");
    // into_directory (several sources) requires a directory.
    let e = transfer::upload_with(
        &f.runner,
        &src,
        "abs.txt",
        &opts.clone().into_directory(true),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(
            e,
            TransferError::NotADirectory {
                side: Side::Remote,
                ..
            }
        ),
        "{e}"
    );
    // Download into a local directory keeps the name.
    std::fs::write(f.home.join("d/f.txt"), b"changed remotely").unwrap();
    transfer::download_with(&f.runner, "d/f.txt", &f.local, &opts)
        .await
        .unwrap();
    assert_eq!(std::fs::read(&src).unwrap(), b"changed remotely");
}

#[tokio::test]
async fn cp_local_times_with_preserve() {
    let f = fixture();
    let src = f.local.join("old.txt");
    write_file(&src, b"old", 0o600);
    set_times(&src, 1_000_000_000);
    let keep = TransferOptions::new().preserve_times(true);
    transfer::upload_with(&f.runner, &src, "kept.txt", &keep)
        .await
        .unwrap();
    assert_eq!(mtime_of(&f.home.join("kept.txt")), 1_000_000_000);
    transfer::upload_with(&f.runner, &src, "fresh.txt", &TransferOptions::new())
        .await
        .unwrap();
    assert!(mtime_of(&f.home.join("fresh.txt")) > 1_600_000_000);
    let back = f.local.join("back.txt");
    transfer::download_with(&f.runner, "kept.txt", &back, &keep)
        .await
        .unwrap();
    assert_eq!(mtime_of(&back), 1_000_000_000);
    let fresh = f.local.join("fresh.txt");
    transfer::download_with(&f.runner, "kept.txt", &fresh, &TransferOptions::new())
        .await
        .unwrap();
    assert!(mtime_of(&fresh) > 1_600_000_000);
}

#[tokio::test]
async fn cp_local_tree_round_trip() {
    let f = fixture();
    let src = f.local.join("tree");
    make_tree(&src);
    set_times(&src.join("top.txt"), 1_100_000_000);
    let expected = tree_listing(&src);
    let opts = TransferOptions::new().recursive(true).preserve_times(true);
    let up = transfer::upload_with(&f.runner, &src, "copied", &opts)
        .await
        .unwrap();
    assert!(up.tree);
    let remote = f.home.join("copied");
    assert_eq!(tree_listing(&remote), expected);
    assert_eq!(mode_of(&remote), mode_of(&src));
    assert_eq!(mtime_of(&remote.join("top.txt")), 1_100_000_000);
    // Into an existing directory: keeps the source name.
    transfer::upload_with(&f.runner, &src, "~", &opts)
        .await
        .unwrap();
    assert_eq!(tree_listing(&f.home.join("tree")), expected);
    // Never merged: the destination of a tree must not exist.
    let e = transfer::upload_with(&f.runner, &src, "~", &opts)
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            TransferError::DestinationExists {
                side: Side::Remote,
                ..
            }
        ),
        "{e}"
    );
    std::fs::create_dir(f.home.join("copied/tree")).unwrap();
    let e = transfer::upload_with(&f.runner, &src, "copied", &opts)
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            TransferError::DestinationExists {
                side: Side::Remote,
                ..
            }
        ),
        "{e}"
    );
    std::fs::remove_dir(f.home.join("copied/tree")).unwrap();
    let back = f.local.join("back");
    let down = transfer::download_with(&f.runner, "copied", &back, &opts)
        .await
        .unwrap();
    assert!(down.tree);
    assert_eq!(tree_listing(&back), expected);
    assert_eq!(mtime_of(&back.join("top.txt")), 1_100_000_000);
    // `back` exists now: the copy goes inside it, once.
    transfer::download_with(&f.runner, "copied", &back, &opts)
        .await
        .unwrap();
    assert_eq!(tree_listing(&back.join("copied")), expected);
    let e = transfer::download_with(&f.runner, "copied", &back, &opts)
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            TransferError::DestinationExists {
                side: Side::Local,
                ..
            }
        ),
        "{e}"
    );
    assert!(leftovers(&f.home).is_empty(), "{:?}", leftovers(&f.home));
    assert!(leftovers(&f.local).is_empty(), "{:?}", leftovers(&f.local));
}

#[tokio::test]
async fn cp_local_errors_are_clear_and_leave_nothing() {
    let f = fixture();
    let opts = TransferOptions::new();
    let runs = || f.runner.runs.load(std::sync::atomic::Ordering::Relaxed);

    // Missing local source: refused before anything runs remotely.
    let e = transfer::upload_with(&f.runner, &f.local.join("nope"), "x", &opts)
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
    assert!(e.to_string().contains("no such file"), "{e}");
    // Directory without -r.
    let e = transfer::upload_with(&f.runner, &f.local, "x", &opts)
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
    assert!(e.to_string().contains("-r"), "{e}");
    assert_eq!(runs(), 0);

    // Missing remote source.
    let e = transfer::download_with(&f.runner, "missing.txt", &f.local.join("m"), &opts)
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
        "{e}"
    );
    assert!(!f.local.join("m").exists());
    // Remote directory without -r.
    std::fs::create_dir(f.home.join("rdir")).unwrap();
    let e = transfer::download_with(&f.runner, "rdir", &f.local.join("r"), &opts)
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
        "{e}"
    );
    // Remote destination directory missing.
    let src = f.local.join("f");
    write_file(&src, b"data", 0o644);
    let e = transfer::upload_with(&f.runner, &src, "no/such/dir/f", &opts)
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
        "{e}"
    );
    // A file onto a directory.
    std::fs::create_dir(f.home.join("rdir/f")).unwrap();
    let e = transfer::upload_with(&f.runner, &src, "rdir", &opts)
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            TransferError::DestinationIsDirectory {
                side: Side::Remote,
                ..
            }
        ),
        "{e}"
    );
    // Unwritable destinations (sysfs refuses new files even for root).
    let e = transfer::upload_with(&f.runner, &src, "/sys/cloudshell-rs-test", &opts)
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
        "{e}"
    );
    std::fs::write(f.home.join("r.txt"), b"r").unwrap();
    let e = transfer::download_with(
        &f.runner,
        "r.txt",
        Path::new("/sys/cloudshell-rs-test"),
        &opts,
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
        "{e}"
    );
    // Local destination directory missing.
    let e = transfer::download_with(&f.runner, "r.txt", &f.local.join("no/such/x"), &opts)
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

    assert!(leftovers(&f.home).is_empty(), "{:?}", leftovers(&f.home));
    assert!(leftovers(&f.local).is_empty(), "{:?}", leftovers(&f.local));
}

/// A runner whose remote side sees corrupted input: the checksum must catch it
/// and nothing may be renamed into place.
struct CorruptingRunner(LocalRunner);

impl cloudshell_rs::transfer::RemoteRunner for CorruptingRunner {
    fn run<'a>(
        &'a self,
        argv: &'a [Vec<u8>],
        stdin: Option<&'a mut (dyn tokio::io::AsyncRead + Send + Unpin)>,
        stdout: &'a mut (dyn tokio::io::AsyncWrite + Send + Unpin),
        stderr: &'a mut (dyn tokio::io::AsyncWrite + Send + Unpin),
    ) -> cloudshell_rs::transfer::RunFuture<'a> {
        Box::pin(async move {
            match stdin {
                Some(s) => {
                    // Flip one byte of the payload (after the first chunk header).
                    let mut all = Vec::new();
                    tokio::io::AsyncReadExt::read_to_end(s, &mut all)
                        .await
                        .unwrap();
                    let nl = all.iter().position(|b| *b == b'\n').unwrap();
                    all[nl + 3] ^= 0x20;
                    let mut r: &[u8] = &all;
                    self.0.run(argv, Some(&mut r), stdout, stderr).await
                }
                None => {
                    let mut buf = Vec::new();
                    let out = self.0.run(argv, None, &mut buf, stderr).await;
                    let len = buf.len();
                    buf[len - 2] ^= 1;
                    tokio::io::AsyncWriteExt::write_all(stdout, &buf)
                        .await
                        .unwrap();
                    out
                }
            }
        })
    }
}

#[tokio::test]
async fn cp_local_checksum_mismatch_leaves_nothing() {
    let f = fixture();
    let runner = CorruptingRunner(LocalRunner::new(&f.home));
    let src = f.local.join("f.bin");
    write_file(&src, &all_bytes(), 0o644);
    let e = transfer::upload_with(&runner, &src, "f.bin", &TransferOptions::new())
        .await
        .unwrap_err();
    assert!(matches!(e, TransferError::ChecksumMismatch { .. }), "{e}");
    assert!(!f.home.join("f.bin").exists());
    std::fs::copy(&src, f.home.join("g.bin")).unwrap();
    let e = transfer::download_with(
        &runner,
        "g.bin",
        &f.local.join("g.bin"),
        &TransferOptions::new(),
    )
    .await
    .unwrap_err();
    assert!(matches!(e, TransferError::ChecksumMismatch { .. }), "{e}");
    assert!(!f.local.join("g.bin").exists());
    assert!(leftovers(&f.home).is_empty() && leftovers(&f.local).is_empty());
}

/// A runner whose stdin is cut off mid-way (the connection dropped): the remote
/// side must not rename anything into place and must remove its temporary file.
struct TruncatingRunner(LocalRunner, usize);

impl cloudshell_rs::transfer::RemoteRunner for TruncatingRunner {
    fn run<'a>(
        &'a self,
        argv: &'a [Vec<u8>],
        stdin: Option<&'a mut (dyn tokio::io::AsyncRead + Send + Unpin)>,
        stdout: &'a mut (dyn tokio::io::AsyncWrite + Send + Unpin),
        stderr: &'a mut (dyn tokio::io::AsyncWrite + Send + Unpin),
    ) -> cloudshell_rs::transfer::RunFuture<'a> {
        Box::pin(async move {
            let s = stdin.unwrap();
            let mut all = Vec::new();
            tokio::io::AsyncReadExt::read_to_end(s, &mut all)
                .await
                .unwrap();
            all.truncate(self.1);
            let mut r: &[u8] = &all;
            self.0.run(argv, Some(&mut r), stdout, stderr).await
        })
    }
}

#[tokio::test]
async fn cp_local_cut_input_leaves_nothing() {
    let f = fixture();
    let src = f.local.join("f.bin");
    write_file(&src, &pseudo_random(2 * 1024 * 1024 + 5, 3), 0o644);
    for cut in [0, 5, 1000, 1024 * 1024 + 8, 2 * 1024 * 1024 + 20] {
        let runner = TruncatingRunner(LocalRunner::new(&f.home), cut);
        let e = transfer::upload_with(&runner, &src, "f.bin", &TransferOptions::new())
            .await
            .unwrap_err();
        assert!(matches!(e, TransferError::Incomplete), "cut at {cut}: {e}");
        assert!(!f.home.join("f.bin").exists());
        assert!(leftovers(&f.home).is_empty(), "{:?}", leftovers(&f.home));
    }
    let tree = f.local.join("tree");
    make_tree(&tree);
    for cut in [3, 700, 4000] {
        let runner = TruncatingRunner(LocalRunner::new(&f.home), cut);
        let e = transfer::upload_with(&runner, &tree, "t", &TransferOptions::new().recursive(true))
            .await
            .unwrap_err();
        assert!(
            matches!(e, TransferError::Incomplete | TransferError::Remote(_)),
            "cut at {cut}: {e}"
        );
        assert!(!f.home.join("t").exists());
        assert!(leftovers(&f.home).is_empty(), "{:?}", leftovers(&f.home));
    }
}

/// A batch whose input is cut off keeps the files it finished, reports the
/// one it was in as incomplete, and leaves no temporary file; corrupted
/// input fails that file's checksum.
#[tokio::test]
async fn cp_local_batch_cut_or_corrupted_leaves_only_finished_files() {
    let f = fixture();
    std::fs::create_dir(f.home.join("d")).unwrap();
    let a = f.local.join("a.bin");
    let b = f.local.join("b.bin");
    write_file(&a, &pseudo_random(1000, 1), 0o644);
    write_file(&b, &pseudo_random(3 * 1024 * 1024, 2), 0o644);
    let srcs = [a.clone(), b.clone()];
    // a.bin's framing is 5 + 1000 bytes, then "0\n", its hash and "\n": 1072
    // bytes in all; cuts inside a.bin, right after it, and inside b.bin.
    for (cut, done) in [(10, 0), (1072, 1), (1072 + 2 * 1024 * 1024, 1)] {
        let _ = std::fs::remove_file(f.home.join("d/a.bin"));
        let runner = TruncatingRunner(LocalRunner::new(&f.home), cut);
        let results =
            transfer::upload_files_with(&runner, &srcs, "d", &TransferOptions::new()).await;
        assert_eq!(results.len(), done + 1, "cut at {cut}: {results:?}");
        assert!(results[..done].iter().all(Result::is_ok), "cut at {cut}");
        assert!(
            matches!(results[done], Err(TransferError::Incomplete)),
            "cut at {cut}: {:?}",
            results[done]
        );
        assert_eq!(f.home.join("d/a.bin").exists(), done == 1, "cut at {cut}");
        assert!(!f.home.join("d/b.bin").exists(), "cut at {cut}");
        assert!(leftovers(&f.home).is_empty(), "{:?}", leftovers(&f.home));
    }
    let runner = CorruptingRunner(LocalRunner::new(&f.home));
    let results = transfer::upload_files_with(&runner, &srcs, "d", &TransferOptions::new()).await;
    assert!(
        matches!(
            results.last(),
            Some(Err(TransferError::ChecksumMismatch { .. }))
        ),
        "{results:?}"
    );
    assert!(leftovers(&f.home).is_empty(), "{:?}", leftovers(&f.home));
}

#[tokio::test]
async fn cp_through_exec_on_a_local_pty() {
    let f = fixture();
    let runner = PtyRunner {
        home: f.home.clone(),
    };
    let data = all_bytes();
    let src = f.local.join("b.bin");
    write_file(&src, &data, 0o750);
    let up = transfer::upload_with(&runner, &src, "b.bin", &TransferOptions::new())
        .await
        .unwrap();
    assert_eq!(up.sha256, sha256_hex(&data));
    assert_eq!(std::fs::read(f.home.join("b.bin")).unwrap(), data);
    assert_eq!(mode_of(&f.home.join("b.bin")), 0o750);
    let back = f.local.join("back.bin");
    transfer::download_with(&runner, "b.bin", &back, &TransferOptions::new())
        .await
        .unwrap();
    assert_eq!(std::fs::read(&back).unwrap(), data);
    let tree = f.local.join("tree");
    make_tree(&tree);
    let opts = TransferOptions::new().recursive(true);
    transfer::upload_with(&runner, &tree, "tree", &opts)
        .await
        .unwrap();
    transfer::download_with(&runner, "tree", &f.local.join("tree2"), &opts)
        .await
        .unwrap();
    assert_eq!(tree_listing(&f.local.join("tree2")), tree_listing(&tree));
}

/// A change made to a run's output.
type OutputChange = fn(&mut Vec<u8>);

/// A runner (of downloads: no stdin) whose output is changed on its way
/// back: cut at a length, or one byte flipped.
struct OutputRunner(LocalRunner, OutputChange);

impl cloudshell_rs::transfer::RemoteRunner for OutputRunner {
    fn run<'a>(
        &'a self,
        argv: &'a [Vec<u8>],
        stdin: Option<&'a mut (dyn tokio::io::AsyncRead + Send + Unpin)>,
        stdout: &'a mut (dyn tokio::io::AsyncWrite + Send + Unpin),
        stderr: &'a mut (dyn tokio::io::AsyncWrite + Send + Unpin),
    ) -> cloudshell_rs::transfer::RunFuture<'a> {
        Box::pin(async move {
            assert!(stdin.is_none());
            let mut buf = Vec::new();
            let out = self.0.run(argv, None, &mut buf, stderr).await;
            (self.1)(&mut buf);
            tokio::io::AsyncWriteExt::write_all(stdout, &buf)
                .await
                .unwrap();
            out
        })
    }
}

/// Three remote files (one empty) and where they go.
fn batch_sources(f: &Fixture) -> (Vec<Vec<u8>>, std::path::PathBuf) {
    let data = vec![
        pseudo_random(1000, 1),
        pseudo_random(3 * 1024 * 1024 + 7, 2),
        Vec::new(),
    ];
    std::fs::create_dir_all(f.home.join("src")).unwrap();
    for (i, (d, mode)) in data.iter().zip([0o640, 0o600, 0o644]).enumerate() {
        write_file(&f.home.join(format!("src/f{i}")), d, mode);
    }
    let dest = f.local.join("down");
    std::fs::create_dir_all(&dest).unwrap();
    (data, dest)
}

const BATCH: [&str; 3] = ["src/f0", "~/src/f1", "src/f2"];

/// Several files down through one run: contents, modes, times with `-p`, an
/// existing local file replaced.
#[tokio::test]
async fn cp_local_batch_download_round_trip() {
    let f = fixture();
    let (data, dest) = batch_sources(&f);
    set_times(&f.home.join("src/f1"), 1_000_000_000);
    write_file(&dest.join("f0"), b"old content", 0o600);
    let keep = TransferOptions::new().preserve_times(true);
    let results = transfer::download_files_with(&f.runner, &BATCH, &dest, &keep).await;
    assert_eq!(f.runner.runs.load(std::sync::atomic::Ordering::Relaxed), 1);
    assert_eq!(results.len(), 3, "{results:?}");
    for (i, (r, mode)) in results.iter().zip([0o640, 0o600, 0o644]).enumerate() {
        let r = r.as_ref().unwrap();
        let path = dest.join(format!("f{i}"));
        assert_eq!(r.destination, path.display().to_string());
        assert_eq!(r.bytes, data[i].len() as u64);
        assert_eq!(r.sha256, sha256_hex(&data[i]));
        assert_eq!(std::fs::read(&path).unwrap(), data[i], "f{i}");
        assert_eq!(mode_of(&path), mode, "f{i}");
    }
    assert_eq!(mtime_of(&dest.join("f1")), 1_000_000_000);
    assert!(leftovers(&dest).is_empty(), "{:?}", leftovers(&dest));
}

/// The batch stops at the first source that cannot be copied: the files
/// before it are in place, the ones after it are not attempted.
#[tokio::test]
async fn cp_local_batch_download_stops_at_the_first_failure() {
    let f = fixture();
    let (data, dest) = batch_sources(&f);
    std::fs::create_dir(f.home.join("src/sub")).unwrap();
    for (bad, want) in [
        ("src/missing", "no such file"),
        ("src/sub", "is a directory"),
    ] {
        let _ = std::fs::remove_file(dest.join("f0"));
        let results = transfer::download_files_with(
            &f.runner,
            &["src/f0", bad, "src/f1"],
            &dest,
            &TransferOptions::new(),
        )
        .await;
        assert_eq!(results.len(), 2, "{results:?}");
        assert!(results[0].is_ok());
        let e = results[1].as_ref().unwrap_err();
        assert!(
            e.to_string().contains(want) && e.to_string().contains(bad),
            "{e}"
        );
        assert_eq!(std::fs::read(dest.join("f0")).unwrap(), data[0]);
        assert!(!dest.join("f1").exists());
        assert!(leftovers(&dest).is_empty(), "{:?}", leftovers(&dest));
    }
    // A missing local directory is found before anything runs.
    let runs = f.runner.runs.load(std::sync::atomic::Ordering::Relaxed);
    let results = transfer::download_files_with(
        &f.runner,
        &BATCH,
        &f.local.join("nope"),
        &TransferOptions::new(),
    )
    .await;
    assert!(
        matches!(
            results[..],
            [Err(TransferError::NotFound {
                side: Side::Local,
                ..
            })]
        ),
        "{results:?}"
    );
    assert_eq!(
        f.runner.runs.load(std::sync::atomic::Ordering::Relaxed),
        runs
    );
}

/// Output cut inside a file, or damaged, never leaves that file (or a
/// temporary file) behind; the files verified before it stay.
#[tokio::test]
async fn cp_local_batch_download_cut_or_corrupted_keeps_only_verified_files() {
    let f = fixture();
    let (data, dest) = batch_sources(&f);
    let cuts: [(OutputChange, usize); 4] = [
        // Inside f0's data.
        (|b| b.truncate(100), 0),
        // Right before f0's sum line ends.
        (
            |b| b.truncate(b.iter().position(|&c| c == b'\n').unwrap() + 1 + 1000 + 20),
            0,
        ),
        // Inside f1's data.
        (|b| b.truncate(2 * 1024 * 1024), 1),
        // A byte of f1's data flipped.
        (|b| b[1024 * 1024] ^= 0x40, 1),
    ];
    for (i, (change, done)) in cuts.into_iter().enumerate() {
        for n in 0..3 {
            let _ = std::fs::remove_file(dest.join(format!("f{n}")));
        }
        let runner = OutputRunner(LocalRunner::new(&f.home), change);
        let results =
            transfer::download_files_with(&runner, &BATCH, &dest, &TransferOptions::new()).await;
        assert_eq!(results.len(), done + 1, "case {i}: {results:?}");
        let e = results[done].as_ref().unwrap_err();
        if i == 3 {
            assert!(
                matches!(e, TransferError::ChecksumMismatch { .. }),
                "case {i}: {e}"
            );
        } else {
            assert!(matches!(e, TransferError::Incomplete), "case {i}: {e}");
        }
        assert_eq!(dest.join("f0").exists(), done == 1, "case {i}");
        if done == 1 {
            assert_eq!(std::fs::read(dest.join("f0")).unwrap(), data[0]);
        }
        assert!(
            !dest.join("f1").exists() && !dest.join("f2").exists(),
            "case {i}"
        );
        assert!(
            leftovers(&dest).is_empty(),
            "case {i}: {:?}",
            leftovers(&dest)
        );
    }
}

/// A directory with a fake `tool` that runs the real one, then does `action`
/// (a shell command on `$last`, its last argument) when that argument ends
/// with `suffix`: a file that changes just as the transfer has read it, so
/// that what was sent is no longer what the file holds.
fn tampering(f: &Fixture, tool: &str, suffix: &str, action: &str) -> std::path::PathBuf {
    let tools = f.local.join(format!("tools-{tool}-{}", action.len()));
    std::fs::create_dir_all(&tools).unwrap();
    let real = String::from_utf8(
        std::process::Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    write_file(
        &tools.join(tool),
        format!(
            "#!/bin/sh\nfor a; do last=$a; done\n{} \"$@\"; st=$?\ncase $last in *{suffix}) {action} ;; esac\nexit $st\n",
            real.trim()
        )
        .as_bytes(),
        0o755,
    );
    tools
}

/// Emptied (its size changes) or rewritten in place with the same size
/// within the same second (only its change time tells).
const CHANGES: [&str; 2] = [
    ": > \"$last\"",
    "printf X | dd of=\"$last\" bs=1 count=1 conv=notrunc 2>/dev/null",
];

/// A remote file that changes while a batch download reads it: its bytes
/// still arrive framed (a file that shrank is padded), the environment drops
/// the file and says why, nothing of it is written here.
#[tokio::test]
async fn cp_local_batch_download_drops_a_file_that_changed() {
    for change in CHANGES {
        let f = fixture();
        let (data, dest) = batch_sources(&f);
        let mut runner = LocalRunner::new(&f.home);
        runner.path_prefix = Some(tampering(&f, "head", "f1", change));
        let results =
            transfer::download_files_with(&runner, &BATCH, &dest, &TransferOptions::new()).await;
        assert_eq!(results.len(), 2, "{change}: {results:?}");
        assert_eq!(std::fs::read(dest.join("f0")).unwrap(), data[0]);
        let e = results[1].as_ref().unwrap_err();
        assert!(
            e.to_string().contains("changed while it was being copied"),
            "{change}: {e}"
        );
        assert!(!dest.join("f1").exists() && !dest.join("f2").exists());
        assert!(leftovers(&dest).is_empty(), "{:?}", leftovers(&dest));
    }
}

/// The same for a single file: the copy fails and nothing is written.
#[tokio::test]
async fn cp_local_download_of_a_file_that_changed_writes_nothing() {
    for change in CHANGES {
        let f = fixture();
        write_file(&f.home.join("moving"), &pseudo_random(100_000, 4), 0o644);
        let mut runner = LocalRunner::new(&f.home);
        runner.path_prefix = Some(tampering(&f, "head", "moving", change));
        let dest = f.local.join("moving");
        let e = transfer::download_with(&runner, "moving", &dest, &TransferOptions::new())
            .await
            .unwrap_err();
        assert!(
            e.to_string().contains("changed while it was being copied"),
            "{change}: {e}"
        );
        assert!(!dest.exists(), "{change}");
        assert!(leftovers(&f.local).is_empty(), "{:?}", leftovers(&f.local));
        // Unchanged, it copies.
        let runner = LocalRunner::new(&f.home);
        transfer::download_with(&runner, "moving", &dest, &TransferOptions::new())
            .await
            .unwrap();
        assert_eq!(
            std::fs::read(&dest).unwrap(),
            std::fs::read(f.home.join("moving")).unwrap()
        );
    }
}

/// A remote file that grows while it is copied down (a log being written
/// to) is copied as it was when the copy began: its first bytes are still
/// what was sent. Alone and in a batch.
#[tokio::test]
async fn cp_local_download_of_a_growing_file_copies_its_beginning() {
    let f = fixture();
    let (data, dest) = batch_sources(&f);
    let grow = "printf 'more lines\\n' >> \"$last\"";
    let mut runner = LocalRunner::new(&f.home);
    runner.path_prefix = Some(tampering(&f, "head", "f1", grow));
    let results =
        transfer::download_files_with(&runner, &BATCH, &dest, &TransferOptions::new()).await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    assert_eq!(std::fs::read(dest.join("f1")).unwrap(), data[1]);
    assert!(std::fs::metadata(f.home.join("src/f1")).unwrap().len() > data[1].len() as u64);

    let alone = f.local.join("alone");
    let before = std::fs::read(f.home.join("src/f1")).unwrap();
    transfer::download_with(&runner, "src/f1", &alone, &TransferOptions::new())
        .await
        .unwrap();
    assert_eq!(std::fs::read(&alone).unwrap(), before);
    assert!(leftovers(&dest).is_empty() && leftovers(&f.local).is_empty());
}

/// Two sources with the same name into one directory: the second would
/// replace the first, so the batch stops there (as GNU cp's "will not
/// overwrite just-created"): the sources before it are copied, it and the
/// rest are not, in both directions.
#[tokio::test]
async fn cp_local_batch_refuses_two_sources_with_the_same_name() {
    let f = fixture();
    std::fs::create_dir(f.home.join("d")).unwrap();
    for (dir, data) in [("a", b"from a"), ("b", b"from b")] {
        std::fs::create_dir(f.local.join(dir)).unwrap();
        write_file(&f.local.join(dir).join("x"), data, 0o644);
    }
    write_file(&f.local.join("y"), b"y", 0o644);
    write_file(&f.local.join("z"), b"z", 0o644);
    let srcs = ["a/x", "y", "b/x", "z"].map(|p| f.local.join(p));
    let results =
        transfer::upload_files_with(&f.runner, &srcs, "d/", &TransferOptions::new()).await;
    assert_eq!(results.len(), 3, "{results:?}");
    assert!(results[..2].iter().all(Result::is_ok), "{results:?}");
    let e = results[2].as_ref().unwrap_err();
    assert!(
        matches!(e, TransferError::SameName { side: Side::Remote, path, .. } if path == Path::new("d/x")),
        "{e:?}"
    );
    let msg = e.to_string();
    assert!(
        msg.starts_with("remote d/x: will not overwrite")
            && msg.contains(&srcs[0].display().to_string())
            && msg.contains(&srcs[2].display().to_string()),
        "{msg}"
    );
    assert_eq!(std::fs::read(f.home.join("d/x")).unwrap(), b"from a");
    assert!(f.home.join("d/y").exists() && !f.home.join("d/z").exists());

    let dest = f.local.join("down");
    std::fs::create_dir(&dest).unwrap();
    std::fs::create_dir(f.home.join("e")).unwrap();
    write_file(&f.home.join("e/x"), b"from e", 0o644);
    let remotes = ["d/x", "d/y", "~/e/x/", "d/x"];
    let results =
        transfer::download_files_with(&f.runner, &remotes, &dest, &TransferOptions::new()).await;
    assert_eq!(results.len(), 3, "{results:?}");
    assert!(results[..2].iter().all(Result::is_ok), "{results:?}");
    let e = results[2].as_ref().unwrap_err();
    assert!(
        matches!(e, TransferError::SameName { side: Side::Local, path, first, second }
            if *path == dest.join("x") && first == "d/x" && second == "~/e/x/"),
        "{e:?}"
    );
    assert_eq!(std::fs::read(dest.join("x")).unwrap(), b"from a");
    assert!(dest.join("y").exists());
    assert!(leftovers(&dest).is_empty() && leftovers(&f.home).is_empty());
}

/// A local file rewritten in place while it is uploaded (same size, same
/// second: only its change time tells) is not kept in the environment, alone
/// or in a batch (the files before it stay); unchanged, it copies.
#[tokio::test]
async fn cp_local_upload_of_a_file_that_changed_keeps_nothing() {
    let f = fixture();
    std::fs::create_dir(f.home.join("d")).unwrap();
    let a = f.local.join("a.bin");
    let b = f.local.join("b.bin");
    write_file(&a, &pseudo_random(1000, 5), 0o644);
    write_file(&b, &pseudo_random(3 * 1024 * 1024, 6), 0o644);

    let e = transfer::upload_with(
        &f.runner,
        &b,
        "d/b.bin",
        &rewriting_once(TransferOptions::new(), &b, 0),
    )
    .await
    .unwrap_err();
    assert!(
        chain(&e).contains("the file changed while it was being copied"),
        "{}",
        chain(&e)
    );
    assert!(!f.home.join("d/b.bin").exists());

    // In a batch the progress counts both files: the rewrite of b lands
    // once b is being read (after a's 1000 bytes).
    let results = transfer::upload_files_with(
        &f.runner,
        &[&a, &b],
        "d",
        &rewriting_once(TransferOptions::new(), &b, 1000),
    )
    .await;
    assert_eq!(results.len(), 2, "{results:?}");
    assert!(results[0].is_ok());
    let e = results[1].as_ref().unwrap_err();
    assert!(
        chain(e).contains("the file changed while it was being copied"),
        "{}",
        chain(e)
    );
    assert!(f.home.join("d/a.bin").exists() && !f.home.join("d/b.bin").exists());
    assert!(leftovers(&f.home).is_empty(), "{:?}", leftovers(&f.home));

    // A file that only grew (a log being written to): its beginning, as it
    // was when the copy began, is kept.
    let before = std::fs::read(&b).unwrap();
    let o = appending_once(TransferOptions::new(), &b, 0);
    transfer::upload_with(&f.runner, &b, "d/grown.bin", &o)
        .await
        .unwrap();
    assert_eq!(std::fs::read(f.home.join("d/grown.bin")).unwrap(), before);
    assert!(std::fs::metadata(&b).unwrap().len() > before.len() as u64);

    // In a tree.
    let tree = f.local.join("tree");
    std::fs::create_dir(&tree).unwrap();
    std::fs::copy(&b, tree.join("b.bin")).unwrap();
    let o = rewriting_once(
        TransferOptions::new().recursive(true),
        &tree.join("b.bin"),
        0,
    );
    let e = transfer::upload_with(&f.runner, &tree, "t", &o)
        .await
        .unwrap_err();
    assert!(
        chain(&e).contains("tree/b.bin: reading: the file changed while it was being copied"),
        "{}",
        chain(&e)
    );
    assert!(!f.home.join("t").exists());
    assert!(leftovers(&f.home).is_empty(), "{:?}", leftovers(&f.home));

    transfer::upload_with(&f.runner, &b, "d/b.bin", &TransferOptions::new())
        .await
        .unwrap();
    assert_eq!(
        std::fs::read(f.home.join("d/b.bin")).unwrap(),
        std::fs::read(&b).unwrap()
    );
}

/// Remote patterns are expanded by the environment's shell: in its order,
/// dot files only when asked, `~/` kept, odd names intact, `\*` literal, and
/// a pattern that matches nothing is a clear error.
#[tokio::test]
async fn cp_local_glob_expands_remote_patterns() {
    let f = fixture();
    let logs = f.home.join("logs");
    std::fs::create_dir(&logs).unwrap();
    for name in [
        "b.txt",
        "a.txt",
        ".hidden.txt",
        "c.log",
        "sp ace.txt",
        "new\nline.txt",
        "star*.md",
        "starry.md",
    ] {
        write_file(&logs.join(name), name.as_bytes(), 0o644);
    }
    std::fs::create_dir(logs.join("dir.txt")).unwrap();
    let glob = async |patterns: &[&str]| -> Result<Vec<String>, TransferError> {
        Ok(transfer::glob_with(&f.runner, patterns)
            .await?
            .into_iter()
            .flatten()
            .collect())
    };
    assert_eq!(
        glob(&["logs/*.txt"]).await.unwrap(),
        [
            "logs/a.txt",
            "logs/b.txt",
            "logs/dir.txt",
            "logs/new\nline.txt",
            "logs/sp ace.txt"
        ]
    );
    assert_eq!(
        glob(&["~/logs/*.log", "logs/a.txt", "logs/.*"])
            .await
            .unwrap(),
        ["~/logs/c.log", "logs/a.txt", "logs/.hidden.txt"]
    );
    assert_eq!(glob(&["logs/star\\*.md"]).await.unwrap(), ["logs/star*.md"]);
    assert_eq!(glob(&["logs/sta?r*.md"]).await.unwrap(), ["logs/starry.md"]);
    assert_eq!(
        transfer::glob_with(&f.runner, &["logs/?.txt", "logs/*.log"])
            .await
            .unwrap(),
        [vec!["logs/a.txt", "logs/b.txt"], vec!["logs/c.log"]]
    );
    let e = glob(&["logs/a.txt", "logs/*.zip"]).await.unwrap_err();
    assert!(
        matches!(&e, TransferError::NotFound { side: Side::Remote, path } if path == Path::new("logs/*.zip")),
        "{e:?}"
    );
    // The same whatever a BASH_ENV file turns on.
    let bash_env = f.local.join("bash_env");
    write_file(
        &bash_env,
        b"shopt -s nullglob dotglob nocaseglob failglob\n",
        0o644,
    );
    let mut runner = LocalRunner::new(&f.home);
    runner.envs.push(("BASH_ENV".into(), bash_env));
    assert_eq!(
        transfer::glob_with(&runner, &["logs/*.TXT", "logs/*.txt"])
            .await
            .map_err(|e| e.to_string()),
        Err("remote logs/*.TXT: no such file or directory".to_string())
    );
    assert_eq!(
        transfer::glob_with(&runner, &["logs/?.txt"]).await.unwrap(),
        [vec!["logs/a.txt", "logs/b.txt"]]
    );
    assert!(transfer::is_pattern("logs/*.txt") && transfer::is_pattern("a[12]"));
    assert!(!transfer::is_pattern("~/logs/a.txt"));

    // What it gives can be copied as is.
    let dest = f.local.join("down");
    std::fs::create_dir(&dest).unwrap();
    let found = glob(&["~/logs/*.txt"]).await.unwrap();
    let files: Vec<&String> = found.iter().filter(|p| !p.ends_with("dir.txt")).collect();
    let results =
        transfer::download_files_with(&f.runner, &files, &dest, &TransferOptions::new()).await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    assert_eq!(
        std::fs::read(dest.join("new\nline.txt")).unwrap(),
        b"new\nline.txt"
    );
    assert_eq!(
        std::fs::read(dest.join("sp ace.txt")).unwrap(),
        b"sp ace.txt"
    );
}

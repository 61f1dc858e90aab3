//! `transfer` core against a "remote" that is a local bash process: framing,
//! hashing, atomic rename, modes, times, trees and error mapping.

use std::path::Path;

use crate::cp_support::*;
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

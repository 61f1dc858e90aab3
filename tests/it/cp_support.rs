//! Helpers for the `cp` tests: a "remote" that runs the transfer commands in a
//! local bash process (HOME = a temporary directory), tree comparison, data.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use cloudshell_rs::exec::{ExecError, ExitStatus, TerminalLink};
use cloudshell_rs::transfer::{RemoteRunner, RunFuture, RunOutcome};
use sha2::Digest;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Runs each command as a local process with `home` as HOME and working
/// directory: the same scripts as in an environment, without the data channel.
pub struct LocalRunner {
    pub home: PathBuf,
    pub runs: AtomicU64,
    /// A directory searched before `PATH` (tools replaced for a test).
    pub path_prefix: Option<PathBuf>,
    /// More environment variables for the commands.
    pub envs: Vec<(String, PathBuf)>,
}

impl LocalRunner {
    pub fn new(home: &Path) -> Self {
        Self {
            home: home.to_path_buf(),
            runs: AtomicU64::new(0),
            path_prefix: None,
            envs: Vec::new(),
        }
    }

    async fn run_inner(
        &self,
        argv: &[Vec<u8>],
        stdin: Option<&mut (dyn AsyncRead + Send + Unpin)>,
        stdout: &mut (dyn AsyncWrite + Send + Unpin),
        stderr: &mut (dyn AsyncWrite + Send + Unpin),
    ) -> Result<RunOutcome, ExecError> {
        use std::os::unix::ffi::OsStrExt;
        self.runs.fetch_add(1, Ordering::Relaxed);
        let io = |e: std::io::Error| ExecError::Session(Box::new(e));
        let mut cmd = tokio::process::Command::new(std::ffi::OsStr::from_bytes(&argv[0]));
        cmd.args(argv[1..].iter().map(|a| std::ffi::OsStr::from_bytes(a)))
            .env("HOME", &self.home)
            .current_dir(&self.home)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .envs(self.envs.iter().map(|(k, v)| (k, v)));
        if let Some(dir) = &self.path_prefix {
            let mut path = std::ffi::OsString::from(dir);
            path.push(":");
            path.push(std::env::var_os("PATH").unwrap_or_default());
            cmd.env("PATH", path);
        }
        let mut child = cmd.spawn().map_err(io)?;
        let mut cin = child.stdin.take();
        let mut cout = child.stdout.take().unwrap();
        let mut cerr = child.stderr.take().unwrap();
        let sent = AtomicU64::new(0);
        let feed = async {
            if let (Some(src), Some(dst)) = (stdin, cin.as_mut()) {
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    let n = src.read(&mut buf).await?;
                    if n == 0 {
                        break;
                    }
                    sent.fetch_add(n as u64, Ordering::Relaxed);
                    if dst.write_all(&buf[..n]).await.is_err() {
                        break; // the command stopped reading
                    }
                }
            }
            drop(cin);
            Ok::<_, std::io::Error>(())
        };
        let received = AtomicU64::new(0);
        let pump_out = async {
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                let n = cout.read(&mut buf).await?;
                if n == 0 {
                    break;
                }
                received.fetch_add(n as u64, Ordering::Relaxed);
                stdout.write_all(&buf[..n]).await?;
            }
            stdout.flush().await
        };
        let pump_err = async {
            let mut buf = vec![0u8; 8192];
            loop {
                let n = cerr.read(&mut buf).await?;
                if n == 0 {
                    break;
                }
                stderr.write_all(&buf[..n]).await?;
            }
            Ok::<_, std::io::Error>(())
        };
        let (a, b, c) = tokio::join!(feed, pump_out, pump_err);
        a.map_err(ExecError::Stdin)?;
        b.map_err(ExecError::Output)?;
        c.map_err(ExecError::Output)?;
        let status = child.wait().await.map_err(io)?;
        let code = status.code().unwrap_or_else(|| {
            128 + std::os::unix::process::ExitStatusExt::signal(&status).unwrap_or(0)
        });
        Ok(RunOutcome {
            status: ExitStatus::from_code(code),
            channel_bytes_sent: sent.load(Ordering::Relaxed),
            channel_bytes_received: received.load(Ordering::Relaxed),
            session_id: None,
        })
    }
}

impl RemoteRunner for LocalRunner {
    fn run<'a>(
        &'a self,
        argv: &'a [Vec<u8>],
        stdin: Option<&'a mut (dyn AsyncRead + Send + Unpin)>,
        stdout: &'a mut (dyn AsyncWrite + Send + Unpin),
        stderr: &'a mut (dyn AsyncWrite + Send + Unpin),
    ) -> RunFuture<'a> {
        Box::pin(self.run_inner(argv, stdin, stdout, stderr))
    }
}

/// Runs each command through `exec`'s framing in a local interactive bash on a
/// pty (a fresh shell per command): exec without the data channel.
pub struct PtyRunner {
    pub home: PathBuf,
}

impl RemoteRunner for PtyRunner {
    fn run<'a>(
        &'a self,
        argv: &'a [Vec<u8>],
        stdin: Option<&'a mut (dyn AsyncRead + Send + Unpin)>,
        stdout: &'a mut (dyn AsyncWrite + Send + Unpin),
        stderr: &'a mut (dyn AsyncWrite + Send + Unpin),
    ) -> RunFuture<'a> {
        Box::pin(async move {
            let mut sh = crate::exec_support::spawn_local_shell(&self.home, false);
            let link: TerminalLink = sh.link.take().unwrap();
            let status = cloudshell_rs::exec::run_streaming(
                link,
                argv,
                cloudshell_rs::exec::ExecOptions::new(),
                stdin,
                stdout,
                stderr,
            )
            .await?;
            Ok(RunOutcome {
                status,
                channel_bytes_sent: 0,
                channel_bytes_received: 0,
                session_id: None,
            })
        })
    }
}

/// Deterministic pseudo-random bytes.
pub fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// Every byte value, several times, in a pattern that crosses chunk borders.
pub fn all_bytes() -> Vec<u8> {
    let mut v: Vec<u8> = (0..=255u8).collect();
    v.extend((0..=255u8).rev());
    v.extend_from_slice(b"\r\n\n\r\x03\x04\x1a\x00\x7f~.");
    v.repeat(37)
}

pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(data))
}

pub fn sha256_file(path: &Path) -> String {
    sha256_hex(&std::fs::read(path).unwrap())
}

pub fn write_file(path: &Path, data: &[u8], mode: u32) {
    std::fs::write(path, data).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

pub fn mode_of(path: &Path) -> u32 {
    std::fs::symlink_metadata(path).unwrap().mode() & 0o7777
}

pub fn mtime_of(path: &Path) -> i64 {
    std::fs::symlink_metadata(path).unwrap().mtime()
}

/// Sets both times of `path` to `secs` since the epoch.
pub fn set_times(path: &Path, secs: u64) {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs);
    let f = std::fs::File::open(path).unwrap();
    f.set_times(std::fs::FileTimes::new().set_accessed(t).set_modified(t))
        .unwrap();
}

/// A sample tree: nested directories, an empty directory, modes, a relative
/// symbolic link, binary content and a long name.
pub fn make_tree(root: &Path) {
    std::fs::create_dir_all(root.join("a/b/c")).unwrap();
    std::fs::create_dir_all(root.join("empty")).unwrap();
    write_file(&root.join("top.txt"), b"top\n", 0o644);
    write_file(&root.join("a/secret"), b"s3cret", 0o600);
    write_file(&root.join("a/b/tool.sh"), b"#!/bin/sh\necho hi\n", 0o750);
    write_file(&root.join("a/b/c/bytes.bin"), &all_bytes(), 0o640);
    write_file(
        &root.join("a/b/c").join("n".repeat(120) + ".txt"),
        b"long name",
        0o644,
    );
    write_file(&root.join("a/b/c/empty-file"), b"", 0o644);
    std::os::unix::fs::symlink("../top.txt", root.join("a/link-to-top")).unwrap();
    std::os::unix::fs::symlink("does-not-exist", root.join("a/dangling")).unwrap();
    std::fs::set_permissions(root.join("a/b"), std::fs::Permissions::from_mode(0o750)).unwrap();
}

/// (relative path, kind, mode, content hash or link target), sorted.
pub fn tree_listing(root: &Path) -> Vec<(String, &'static str, u32, String)> {
    let mut out = Vec::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        for e in std::fs::read_dir(root.join(&rel)).unwrap() {
            let e = e.unwrap();
            let r = rel.join(e.file_name());
            let p = root.join(&r);
            let md = std::fs::symlink_metadata(&p).unwrap();
            let name = r.display().to_string();
            if md.file_type().is_symlink() {
                let t = std::fs::read_link(&p).unwrap().display().to_string();
                out.push((name, "link", 0, t));
            } else if md.is_dir() {
                out.push((name, "dir", md.mode() & 0o7777, String::new()));
                stack.push(r);
            } else {
                out.push((name, "file", md.mode() & 0o7777, sha256_file(&p)));
            }
        }
    }
    out.sort();
    out
}

/// A `curl` for the environment that cannot reach S3.
pub const CURL_CANNOT_CONNECT: &str = "#!/bin/sh\ncat >/dev/null\n\
echo 'curl: (7) Failed to connect to s3.us-east-1.amazonaws.com port 443' >&2\nexit 7\n";

/// The environment whose home is `home` runs `script` as its `curl` (the
/// login shell's `~/.bash_profile` puts `~/fakebin` first on the PATH), or
/// with `None` its real `curl` again.
pub fn environment_curl(home: &Path, script: Option<&str>) {
    let profile = home.join(".bash_profile");
    match script {
        Some(script) => {
            std::fs::create_dir_all(home.join("fakebin")).unwrap();
            write_file(&home.join("fakebin/curl"), script.as_bytes(), 0o755);
            std::fs::write(&profile, "PATH=$HOME/fakebin:$PATH\n").unwrap();
        }
        None => std::fs::remove_file(&profile).unwrap(),
    }
}

/// Fails if a leftover temporary name exists anywhere under `dir`.
#[track_caller]
pub fn assert_clean(dir: &Path) {
    let found = leftovers(dir);
    assert!(found.is_empty(), "left behind: {found:?}");
}

/// Whether any leftover temporary name exists anywhere under `dir`.
pub fn leftovers(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            if e.file_name()
                .to_string_lossy()
                .contains("cloudshell-rs.tmp")
            {
                found.push(p.clone());
            }
            if std::fs::symlink_metadata(&p)
                .map(|m| m.is_dir())
                .unwrap_or(false)
            {
                stack.push(p);
            }
        }
    }
    found
}

/// Collects progress updates.
#[derive(Default, Clone)]
pub struct ProgressLog(pub Arc<std::sync::Mutex<Vec<cloudshell_rs::transfer::Progress>>>);

impl ProgressLog {
    pub fn callback(&self) -> cloudshell_rs::transfer::ProgressCallback {
        let me = self.clone();
        Arc::new(move |p| me.0.lock().unwrap().push(p))
    }

    pub fn last(&self) -> Option<cloudshell_rs::transfer::Progress> {
        self.0.lock().unwrap().last().copied()
    }
}

/// `options` with a progress callback that flips the bits of the first byte
/// of `path` (same size, within the same second) the first time it reports
/// more than `after` bytes: the file changes while the transfer reads it.
pub fn rewriting_once(
    options: cloudshell_rs::transfer::TransferOptions,
    path: &Path,
    after: u64,
) -> cloudshell_rs::transfer::TransferOptions {
    once_after(options, path, after, |f| {
        use std::io::{Read as _, Seek as _, Write as _};
        let mut first = [0u8];
        f.read_exact(&mut first).unwrap();
        f.rewind().unwrap();
        f.write_all(&[!first[0]]).unwrap();
    })
}

/// The same, appending a line instead: a file that grows while it is read,
/// as a log being written to.
pub fn appending_once(
    options: cloudshell_rs::transfer::TransferOptions,
    path: &Path,
    after: u64,
) -> cloudshell_rs::transfer::TransferOptions {
    once_after(options, path, after, |f| {
        use std::io::{Seek as _, Write as _};
        f.seek(std::io::SeekFrom::End(0)).unwrap();
        f.write_all(b"one more line\n").unwrap();
    })
}

fn once_after(
    options: cloudshell_rs::transfer::TransferOptions,
    path: &Path,
    after: u64,
    change: impl Fn(&mut std::fs::File) + Send + Sync + 'static,
) -> cloudshell_rs::transfer::TransferOptions {
    let path = path.to_path_buf();
    let done = std::sync::atomic::AtomicBool::new(false);
    options.progress(std::sync::Arc::new(move |p| {
        if p.bytes > after && !done.swap(true, std::sync::atomic::Ordering::SeqCst) {
            let mut f = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(&path)
                .unwrap();
            change(&mut f);
        }
    }))
}

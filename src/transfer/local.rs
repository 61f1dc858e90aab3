//! The local end of a transfer, all blocking I/O (run on a blocking thread):
//! reading sources into a hashed (and, in-band, framed) stream, and receiving a
//! stream into a temporary file or directory next to the destination.

use std::ffi::OsString;
use std::fs::{self, File, FileTimes, Permissions};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};

use super::error::{Side, TransferError};
use super::scripts::{Meta, parse_meta};

/// Size of one in-band chunk (one `dd` on the remote side).
pub(crate) const CHUNK: usize = 1024 * 1024;

/// Progress sink: called with the total bytes done so far.
pub(crate) type ProgressFn = Arc<dyn Fn(u64) + Send + Sync>;

/// Permission bits that are copied (setuid, setgid and sticky are dropped).
pub(crate) const MODE_BITS: u32 = 0o777;

/// Lowercase hex SHA-256.
pub(crate) fn hex_digest(h: Sha256) -> String {
    hex::encode(h.finalize())
}

/// Hashes, counts and reports everything written through it.
pub(crate) struct HashWriter<W> {
    inner: W,
    hash: Sha256,
    bytes: u64,
    progress: Option<ProgressFn>,
}

impl<W: Write> HashWriter<W> {
    pub(crate) fn new(inner: W, progress: Option<ProgressFn>) -> Self {
        Self {
            inner,
            hash: Sha256::new(),
            bytes: 0,
            progress,
        }
    }

    /// The hex SHA-256 of what was written so far.
    pub(crate) fn sha256_so_far(&self) -> String {
        hex_digest(self.hash.clone())
    }

    /// The inner writer, the hex SHA-256 and the byte count.
    pub(crate) fn finish(self) -> (W, String, u64) {
        (self.inner, hex_digest(self.hash), self.bytes)
    }
}

impl<W: Write> Write for HashWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        self.bytes += n as u64;
        if let Some(p) = &self.progress {
            p(self.bytes);
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Hashes, counts and reports everything read through it.
pub(crate) struct HashReader<R> {
    inner: R,
    hash: Sha256,
    bytes: u64,
    progress: Option<ProgressFn>,
}

impl<R: Read> HashReader<R> {
    pub(crate) fn new(inner: R, progress: Option<ProgressFn>) -> Self {
        Self {
            inner,
            hash: Sha256::new(),
            bytes: 0,
            progress,
        }
    }

    /// Reads (and hashes) whatever is left, then returns the hex SHA-256 and
    /// the byte count.
    pub(crate) fn finish(mut self) -> io::Result<(String, u64)> {
        io::copy(&mut self, &mut io::sink())?;
        Ok((hex_digest(self.hash), self.bytes))
    }
}

impl<R: Read> Read for HashReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hash.update(&buf[..n]);
        self.bytes += n as u64;
        if n > 0
            && let Some(p) = &self.progress
        {
            p(self.bytes);
        }
        Ok(n)
    }
}

/// Frames a byte stream for the upload script: `<len>\n<bytes>` chunks of at
/// most [`CHUNK`] bytes, then `0\n<sha256>\n` from [`Framer::finish`].
pub(crate) struct Framer<W: Write> {
    inner: W,
    buf: Vec<u8>,
}

impl<W: Write> Framer<W> {
    pub(crate) fn new(inner: W) -> Self {
        Self {
            inner,
            buf: Vec::with_capacity(CHUNK),
        }
    }

    fn emit(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        writeln!(self.inner, "{}", self.buf.len())?;
        self.inner.write_all(&self.buf)?;
        self.buf.clear();
        Ok(())
    }

    /// Writes the last chunk and the trailer.
    pub(crate) fn finish(mut self, sha256: &str) -> io::Result<W> {
        self.emit()?;
        write!(self.inner, "0\n{sha256}\n")?;
        self.inner.flush()?;
        Ok(self.inner)
    }
}

impl<W: Write> Write for Framer<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let room = CHUNK - self.buf.len();
        let n = room.min(buf.len());
        self.buf.extend_from_slice(&buf[..n]);
        if self.buf.len() == CHUNK {
            self.emit()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// What a local source is.
#[derive(Debug, Clone)]
pub(crate) struct SourceInfo {
    pub path: PathBuf,
    pub name: OsString,
    pub dir: bool,
    pub mode: u32,
    pub atime: i64,
    pub mtime: i64,
    pub size: u64,
    /// What tells that the file changed after it was inspected.
    pub stamp: Stamp,
}

/// What tells that a file changed: its inode, size, and modification and
/// change times to the nanosecond (a rewrite of the same size within the
/// same second changes the change time too).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stamp {
    ino: u64,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl Stamp {
    pub(crate) fn of(md: &fs::Metadata) -> Self {
        Stamp {
            ino: md.ino(),
            size: md.len(),
            mtime: (md.mtime(), md.mtime_nsec()),
            ctime: (md.ctime(), md.ctime_nsec()),
        }
    }
}

/// Checks a local source before anything is sent.
pub(crate) fn inspect_source(path: &Path, recursive: bool) -> Result<SourceInfo, TransferError> {
    let md = fs::metadata(path).map_err(|e| {
        if e.kind() == io::ErrorKind::NotFound {
            TransferError::NotFound {
                side: Side::Local,
                path: path.to_path_buf(),
            }
        } else {
            TransferError::local("reading metadata", path, e)
        }
    })?;
    let dir = md.is_dir();
    if dir && !recursive {
        return Err(TransferError::SourceIsDirectory {
            side: Side::Local,
            path: path.to_path_buf(),
        });
    }
    if !dir && !md.is_file() {
        return Err(TransferError::NotRegular {
            side: Side::Local,
            path: path.to_path_buf(),
        });
    }
    let name = source_name(path).ok_or_else(|| TransferError::InvalidLocation {
        operand: path.display().to_string(),
        reason: "cannot tell the name of this source; name the destination explicitly",
    })?;
    // Opening checks read permission now rather than mid-way.
    if !dir {
        File::open(path).map_err(|e| TransferError::local("opening", path, e))?;
    } else {
        fs::read_dir(path).map_err(|e| TransferError::local("reading directory", path, e))?;
    }
    Ok(SourceInfo {
        path: path.to_path_buf(),
        name,
        dir,
        mode: md.mode() & MODE_BITS,
        atime: md.atime(),
        mtime: md.mtime(),
        size: if dir { 0 } else { md.len() },
        stamp: Stamp::of(&md),
    })
}

/// The last normal component of a path (`a/b/` → `b`; `.` → the current
/// directory's name): the name a source keeps at its destination. `None`
/// for `/` and the like.
pub(crate) fn source_name(path: &Path) -> Option<OsString> {
    let canon;
    let p = match path.file_name() {
        Some(n) => return Some(n.to_os_string()),
        None => {
            canon = fs::canonicalize(path).ok()?;
            canon.as_path()
        }
    };
    p.file_name().map(|n| n.to_os_string())
}

/// Reads a regular file into `out` (a hashing writer that has written
/// nothing yet); fails if the file no longer holds what was sent (see
/// [`check_unchanged`]: then the caller must not send its checksum, so that
/// nothing of it is kept at the other end).
pub(crate) fn send_file<W: Write>(
    src: &SourceInfo,
    out: &mut HashWriter<W>,
) -> Result<(), TransferError> {
    let f = File::open(&src.path).map_err(|e| TransferError::local("opening", &src.path, e))?;
    let mut limited = f.take(src.size);
    let n =
        copy_big(&mut limited, out).map_err(|e| TransferError::local("reading", &src.path, e))?;
    let now = limited.get_ref().metadata();
    if n != src.size {
        return Err(changed(&src.path));
    }
    check_unchanged(src, now, &out.sha256_so_far())
}

/// Fails unless the source, whose first `src.size` bytes were sent with
/// SHA-256 `sent`, still holds them: `now` (its metadata after it was read)
/// shows it as it was inspected, or it only grew, as a log being written to,
/// and its first bytes still hash to `sent` (then what was sent is its
/// beginning).
pub(crate) fn check_unchanged(
    src: &SourceInfo,
    now: io::Result<fs::Metadata>,
    sent: &str,
) -> Result<(), TransferError> {
    let now = Stamp::of(&now.map_err(|e| TransferError::local("reading metadata", &src.path, e))?);
    if now == src.stamp {
        return Ok(());
    }
    if now.ino == src.stamp.ino && now.size >= src.stamp.size {
        let mut hash = HashWriter::new(io::sink(), None);
        let read = File::open(&src.path)
            .and_then(|f| copy_big(&mut f.take(src.size), &mut hash))
            .map_err(|e| TransferError::local("reading", &src.path, e))?;
        if read == src.size && hash.sha256_so_far() == sent {
            return Ok(());
        }
    }
    Err(changed(&src.path))
}

fn changed(path: &Path) -> TransferError {
    TransferError::Local {
        action: "reading",
        path: path.to_path_buf(),
        source: io::Error::other("the file changed while it was being copied"),
    }
}

fn copy_big<R: Read + ?Sized, W: Write + ?Sized>(r: &mut R, w: &mut W) -> io::Result<u64> {
    let mut buf = vec![0u8; 256 * 1024];
    let mut total = 0u64;
    loop {
        let n = match r.read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        w.write_all(&buf[..n])?;
        total += n as u64;
    }
}

/// The bytes of the regular files under `root` (links not followed), counted
/// until `enough` is reached; what cannot be read counts as nothing (the copy
/// itself reports it).
pub(crate) fn tree_size(root: &Path, enough: u64) -> u64 {
    let mut total = 0u64;
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(md) = entry.metadata() else { continue };
            if md.is_dir() {
                stack.push(entry.path());
            } else if md.is_file() {
                total = total.saturating_add(md.len());
                if total >= enough {
                    return total;
                }
            }
        }
    }
    total
}

/// Writes the tree under `src` as a tar stream (entries relative to it, the
/// top directory itself not included). Symbolic links are stored as links;
/// sockets, FIFOs and devices are skipped (their count is returned with the
/// number of files).
pub(crate) fn send_tree<W: Write>(
    src: &SourceInfo,
    out: W,
) -> Result<(W, u64, u64), TransferError> {
    let mut builder = tar::Builder::new(out);
    builder.follow_symlinks(false);
    let mut files = 0u64;
    let mut skipped = 0u64;
    let mut stack: Vec<PathBuf> = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let dir = src.path.join(&rel);
        let mut entries: Vec<_> = fs::read_dir(&dir)
            .map_err(|e| TransferError::local("reading directory", &dir, e))?
            .collect::<Result<_, _>>()
            .map_err(|e| TransferError::local("reading directory", &dir, e))?;
        entries.sort_by_key(|e| e.file_name());
        let mut subdirs = Vec::new();
        for entry in entries {
            let path = entry.path();
            let name = rel.join(entry.file_name());
            let md = fs::symlink_metadata(&path)
                .map_err(|e| TransferError::local("reading metadata", &path, e))?;
            let ft = md.file_type();
            let mut header = tar::Header::new_gnu();
            header.set_metadata_in_mode(&md, tar::HeaderMode::Complete);
            header.set_mode(md.mode() & MODE_BITS);
            let io_err = |e| TransferError::local("archiving", &path, e);
            if ft.is_dir() {
                header.set_size(0);
                builder
                    .append_data(&mut header, &name, io::empty())
                    .map_err(io_err)?;
                subdirs.push(name);
            } else if ft.is_file() {
                let f = File::open(&path).map_err(|e| TransferError::local("opening", &path, e))?;
                let size = md.len();
                let mut reader = ExactReader {
                    inner: f.take(size),
                    left: size,
                };
                builder
                    .append_data(&mut header, &name, &mut reader)
                    .map_err(io_err)?;
                let now = reader.inner.get_ref().metadata();
                if now.map(|now| Stamp::of(&now)).ok() != Some(Stamp::of(&md)) {
                    return Err(changed(&path));
                }
                files += 1;
            } else if ft.is_symlink() {
                let target = fs::read_link(&path)
                    .map_err(|e| TransferError::local("reading link", &path, e))?;
                header.set_entry_type(tar::EntryType::Symlink);
                header.set_size(0);
                builder
                    .append_link(&mut header, &name, &target)
                    .map_err(io_err)?;
                files += 1;
            } else {
                tracing::warn!(path = %path.display(), "skipping a special file (socket, FIFO or device)");
                skipped += 1;
            }
        }
        // Depth-first, in name order.
        stack.extend(subdirs.into_iter().rev());
    }
    builder
        .finish()
        .map_err(|e| TransferError::local("archiving", &src.path, e))?;
    let out = builder
        .into_inner()
        .map_err(|e| TransferError::local("archiving", &src.path, e))?;
    Ok((out, files, skipped))
}

/// Yields exactly `left` bytes or fails: a file that shrinks while being
/// archived would otherwise corrupt the archive.
struct ExactReader<R> {
    inner: R,
    left: u64,
}

impl<R: Read> Read for ExactReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 {
            return Ok(0);
        }
        let n = self.inner.read(buf)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the file shrank while it was being copied",
            ));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

/// Where a download goes.
#[derive(Debug, Clone)]
pub(crate) struct LocalDestination {
    /// The destination as given.
    pub dest: PathBuf,
    /// Name of the remote source (used when `dest` is a directory).
    pub name: Option<OsString>,
    /// The destination must be an existing directory.
    pub into_directory: bool,
    /// Set access and modification times from the source.
    pub preserve_times: bool,
}

impl LocalDestination {
    /// Checks what can be checked before anything is received.
    pub(crate) fn precheck(&self) -> Result<(), TransferError> {
        if self.dest.is_dir() {
            return Ok(());
        }
        if self.into_directory {
            return Err(if self.dest.exists() {
                TransferError::NotADirectory {
                    side: Side::Local,
                    path: self.dest.clone(),
                }
            } else {
                TransferError::NotFound {
                    side: Side::Local,
                    path: self.dest.clone(),
                }
            });
        }
        if ends_with_slash(&self.dest) {
            return Err(TransferError::NotFound {
                side: Side::Local,
                path: self.dest.clone(),
            });
        }
        let parent = parent_of(&self.dest);
        match fs::metadata(&parent) {
            Ok(md) if md.is_dir() => Ok(()),
            Ok(_) => Err(TransferError::NotADirectory {
                side: Side::Local,
                path: parent,
            }),
            Err(e) => Err(TransferError::local("reading metadata", parent, e)),
        }
    }

    /// The final path of the copy.
    fn target(&self, dir: bool) -> Result<PathBuf, TransferError> {
        self.precheck()?;
        let target = if self.dest.is_dir() {
            let name = self.name.clone().ok_or_else(|| TransferError::InvalidLocation {
                operand: self.dest.display().to_string(),
                reason: "cannot tell the name of the remote source; name the destination explicitly",
            })?;
            self.dest.join(name)
        } else {
            self.dest.clone()
        };
        if dir {
            if fs::symlink_metadata(&target).is_ok() {
                return Err(TransferError::DestinationExists {
                    side: Side::Local,
                    path: target,
                });
            }
        } else if target.is_dir() {
            return Err(TransferError::DestinationIsDirectory {
                side: Side::Local,
                path: target,
            });
        }
        Ok(target)
    }
}

fn ends_with_slash(p: &Path) -> bool {
    p.as_os_str()
        .as_encoded_bytes()
        .last()
        .is_some_and(|b| *b == b'/')
}

fn parent_of(p: &Path) -> PathBuf {
    match p.parent() {
        Some(par) if !par.as_os_str().is_empty() => par.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// A received copy waiting to be renamed into place.
pub(crate) enum Staged {
    /// A file.
    File {
        tmp: tempfile::NamedTempFile,
        target: PathBuf,
    },
    /// A directory tree.
    Tree {
        tmp: tempfile::TempDir,
        target: PathBuf,
    },
}

impl std::fmt::Debug for Staged {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Staged::File { target, .. } => write!(f, "Staged::File({})", target.display()),
            Staged::Tree { target, .. } => write!(f, "Staged::Tree({})", target.display()),
        }
    }
}

impl Staged {
    /// Renames the copy into place.
    pub(crate) fn commit(self) -> Result<PathBuf, TransferError> {
        match self {
            Staged::File { tmp, target } => {
                tmp.persist(&target)
                    .map_err(|e| TransferError::local("renaming into place", &target, e.error))?;
                Ok(target)
            }
            Staged::Tree { tmp, target } => {
                let path = tmp.keep();
                // rename(2) onto an existing empty directory would succeed: check first.
                if fs::symlink_metadata(&target).is_ok() {
                    let _ = remove_tree(&path);
                    return Err(TransferError::DestinationExists {
                        side: Side::Local,
                        path: target,
                    });
                }
                if let Err(e) = fs::rename(&path, &target) {
                    let _ = remove_tree(&path);
                    return Err(TransferError::local("renaming into place", &target, e));
                }
                Ok(target)
            }
        }
    }
}

/// Removes a tree even if some of its directories are read-only.
fn remove_tree(path: &Path) -> io::Result<()> {
    fn open_up(p: &Path) {
        if let Ok(md) = fs::symlink_metadata(p)
            && md.is_dir()
        {
            let _ = fs::set_permissions(p, Permissions::from_mode(0o700));
            if let Ok(rd) = fs::read_dir(p) {
                for e in rd.flatten() {
                    open_up(&e.path());
                }
            }
        }
    }
    open_up(path);
    fs::remove_dir_all(path)
}

/// What [`receive_with_meta_hook`] produced.
#[derive(Debug)]
pub(crate) struct Received {
    pub staged: Staged,
    pub sha256: String,
    pub bytes: u64,
    pub meta: Meta,
    pub files: u64,
}

fn epoch(secs: i64) -> SystemTime {
    if secs >= 0 {
        UNIX_EPOCH + Duration::from_secs(secs.unsigned_abs())
    } else {
        UNIX_EPOCH - Duration::from_secs(secs.unsigned_abs())
    }
}

fn apply_times(path: &Path, meta: &Meta) -> io::Result<()> {
    let f = File::open(path)?;
    f.set_times(
        FileTimes::new()
            .set_accessed(epoch(meta.atime))
            .set_modified(epoch(meta.mtime)),
    )
}

/// Receives a download: reads the META line from `input` unless `meta` is
/// given, then the data into a temporary file (or directory) next to the
/// destination. Nothing is renamed here.
pub(crate) fn receive_with_meta_hook<R: Read>(
    input: R,
    meta: Option<Meta>,
    dest: &LocalDestination,
    progress: Option<ProgressFn>,
    on_meta: impl FnOnce(&Meta),
) -> Result<Received, TransferError> {
    let mut input = BufReader::with_capacity(256 * 1024, input);
    let meta = match meta {
        Some(m) => m,
        None => {
            let mut line = Vec::new();
            (&mut input)
                .take(4096)
                .read_until(b'\n', &mut line)
                .map_err(|e| TransferError::local("receiving", &dest.dest, e))?;
            if line.is_empty() {
                return Err(TransferError::Incomplete);
            }
            let text = String::from_utf8_lossy(&line);
            parse_meta(text.trim_end()).ok_or_else(|| {
                TransferError::Protocol(format!("bad header line {:?}", text.trim_end()))
            })?
        }
    };
    on_meta(&meta);
    let target = dest.target(meta.dir)?;
    let parent = parent_of(&target);
    let prefix = format!(
        ".{}.cloudshell-rs.tmp.",
        target
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    );
    let mut reader = HashReader::new(input, progress);
    if !meta.dir {
        let mut tmp = tempfile::Builder::new()
            .prefix(&prefix)
            .tempfile_in(&parent)
            .map_err(|e| TransferError::local("creating a temporary file in", &parent, e))?;
        copy_big(&mut reader, tmp.as_file_mut())
            .map_err(|e| TransferError::local("writing", tmp.path().to_path_buf(), e))?;
        let (sha256, bytes) = reader
            .finish()
            .map_err(|e| TransferError::local("receiving", &target, e))?;
        let tpath = tmp.path().to_path_buf();
        fs::set_permissions(&tpath, Permissions::from_mode(meta.mode & MODE_BITS))
            .map_err(|e| TransferError::local("setting the mode of", &tpath, e))?;
        if dest.preserve_times {
            apply_times(&tpath, &meta)
                .map_err(|e| TransferError::local("setting times of", &tpath, e))?;
        }
        Ok(Received {
            staged: Staged::File { tmp, target },
            sha256,
            bytes,
            meta,
            files: 1,
        })
    } else {
        let tmp = tempfile::Builder::new()
            .prefix(&prefix)
            .tempdir_in(&parent)
            .map_err(|e| TransferError::local("creating a temporary directory in", &parent, e))?;
        let root = fs::canonicalize(tmp.path())
            .map_err(|e| TransferError::local("creating", tmp.path().to_path_buf(), e))?;
        let files = unpack(&mut reader, &root, dest.preserve_times)?;
        let (sha256, bytes) = reader
            .finish()
            .map_err(|e| TransferError::local("receiving", &target, e))?;
        fs::set_permissions(&root, Permissions::from_mode(meta.mode & MODE_BITS))
            .map_err(|e| TransferError::local("setting the mode of", &root, e))?;
        if dest.preserve_times {
            apply_times(&root, &meta)
                .map_err(|e| TransferError::local("setting times of", &root, e))?;
        }
        Ok(Received {
            staged: Staged::Tree { tmp, target },
            sha256,
            bytes,
            meta,
            files,
        })
    }
}

/// One file of a batch download, verified and renamed into place.
#[derive(Debug)]
pub(crate) struct ReceivedFile {
    pub target: PathBuf,
    pub sha256: String,
    pub bytes: u64,
}

/// Receives the files of a batch download (see the batch framing in
/// `scripts`) into `dests` in turn: each one is verified against its sum and
/// renamed into place before the next is read. Returns the files in place
/// and, if it stopped before the last one, why (`Incomplete` when the stream
/// ended or the environment dropped the file: its report then says why).
pub(crate) fn receive_files<R: Read>(
    input: R,
    dests: &[LocalDestination],
    progress: Option<ProgressFn>,
) -> (Vec<ReceivedFile>, Option<TransferError>) {
    let mut input = BufReader::with_capacity(256 * 1024, input);
    let mut done: Vec<ReceivedFile> = Vec::with_capacity(dests.len());
    for dest in dests {
        let before: u64 = done.iter().map(|f| f.bytes).sum();
        let progress = progress
            .clone()
            .map(|p| -> ProgressFn { Arc::new(move |bytes| p(before + bytes)) });
        match receive_one(&mut input, dest, progress) {
            Ok(f) => done.push(f),
            Err(e) => return (done, Some(e)),
        }
    }
    (done, None)
}

/// A status line of the batch framing (without its newline); `None` when
/// the stream ends before a whole line.
fn status_line(input: &mut impl BufRead, dest: &Path) -> Result<Option<String>, TransferError> {
    let mut line = Vec::new();
    input
        .take(4096)
        .read_until(b'\n', &mut line)
        .map_err(|e| TransferError::local("receiving", dest, e))?;
    if line.pop() != Some(b'\n') {
        return Ok(None);
    }
    Ok(Some(String::from_utf8_lossy(&line).trim_end().to_string()))
}

fn receive_one(
    input: &mut impl BufRead,
    dest: &LocalDestination,
    progress: Option<ProgressFn>,
) -> Result<ReceivedFile, TransferError> {
    let line = status_line(input, &dest.dest)?.ok_or(TransferError::Incomplete)?;
    let meta = parse_meta(&line)
        .filter(|m| !m.dir)
        .ok_or_else(|| TransferError::Protocol(format!("bad header line {line:?}")))?;
    let received = receive_with_meta_hook(
        (&mut *input).take(meta.size),
        Some(meta),
        dest,
        progress,
        |_| {},
    )?;
    if received.bytes != meta.size {
        return Err(TransferError::Incomplete);
    }
    let line = status_line(input, &dest.dest)?.ok_or(TransferError::Incomplete)?;
    match line.strip_prefix("CSRS-SUM ") {
        Some(sum) if sum == received.sha256 => {}
        Some(sum) => {
            return Err(TransferError::ChecksumMismatch {
                sent: sum.to_string(),
                received: received.sha256,
            });
        }
        None if line == "CSRS-BAD" => return Err(TransferError::Incomplete),
        None => return Err(TransferError::Protocol(format!("bad status line {line:?}"))),
    }
    let (sha256, bytes) = (received.sha256.clone(), received.bytes);
    let target = received.staged.commit()?;
    Ok(ReceivedFile {
        target,
        sha256,
        bytes,
    })
}

/// Extracts a tar stream into `root`: regular files, directories, symbolic
/// links and hard links; other entry types are skipped. Directories are
/// finished last (deepest first) so read-only ones do not block their content.
fn unpack<R: Read>(
    reader: &mut R,
    root: &Path,
    preserve_times: bool,
) -> Result<u64, TransferError> {
    let mut archive = tar::Archive::new(reader);
    archive.set_preserve_permissions(false);
    archive.set_mask(0);
    archive.set_preserve_mtime(preserve_times);
    archive.set_unpack_xattrs(false);
    archive.set_overwrite(true);
    let err = |e: io::Error| match e.kind() {
        io::ErrorKind::UnexpectedEof => TransferError::Incomplete,
        _ => TransferError::local("extracting into", root, e),
    };
    let mut dirs = Vec::new();
    let mut files = 0u64;
    for entry in archive.entries().map_err(err)? {
        let mut entry = entry.map_err(err)?;
        match entry.header().entry_type() {
            tar::EntryType::Directory => dirs.push(entry),
            tar::EntryType::Regular
            | tar::EntryType::Continuous
            | tar::EntryType::Symlink
            | tar::EntryType::Link => {
                entry.unpack_in(root).map_err(err)?;
                files += 1;
            }
            other => {
                tracing::warn!(
                    path = %String::from_utf8_lossy(&entry.path_bytes()),
                    kind = ?other,
                    "skipping a special file"
                );
            }
        }
    }
    dirs.sort_by(|a, b| b.path_bytes().cmp(&a.path_bytes()));
    for mut d in dirs {
        d.unpack_in(root).map_err(err)?;
    }
    Ok(files)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn framer_frames_and_trails() {
        let mut f = Framer::new(Vec::new());
        f.write_all(b"hello").unwrap();
        let out = f.finish("abc").unwrap();
        assert_eq!(out, b"5\nhello0\nabc\n");
        let big = vec![7u8; CHUNK + 3];
        let mut f = Framer::new(Vec::new());
        f.write_all(&big).unwrap();
        let out = f.finish("h").unwrap();
        let head = format!("{CHUNK}\n");
        assert!(out.starts_with(head.as_bytes()));
        let rest = &out[head.len() + CHUNK..];
        assert_eq!(&rest[..2], b"3\n");
        assert_eq!(&rest[5..], b"0\nh\n");
        let empty = Framer::new(Vec::new()).finish("e").unwrap();
        assert_eq!(empty, b"0\ne\n");
    }

    #[test]
    fn source_names() {
        assert_eq!(source_name(Path::new("a/b")).unwrap(), "b");
        assert_eq!(source_name(Path::new("a/b/")).unwrap(), "b");
        assert!(source_name(Path::new("/")).is_none());
    }
}

//! The bash scripts that run in the environment, and the parsing of the status
//! lines they print.
//!
//! Every script runs as `bash -c SCRIPT cloudshell-rs-cp ARG...`: paths, modes
//! and hashes are arguments (never interpolated into shell text), secrets (the
//! SSE-C key, presigned URLs) arrive on stdin as a curl config. Status lines
//! start with `CSRS-` so they cannot be mistaken for anything a tool prints:
//!
//! - `CSRS-ERR <kind> <detail>` (stderr): a classified failure, exit status 3;
//! - `CSRS-META <kind> <mode> <atime> <mtime> <size>` (first stdout line of a
//!   download): what is coming;
//! - `CSRS-FALLBACK <message>` (stderr): the request to S3 failed, the data
//!   comes on stdout instead;
//! - `CSRS-OK <sha256> <bytes>` (stderr): done; the hash of what was written
//!   (upload) or sent (download);
//! - `CSRS-SUM <sha256>` / `CSRS-BAD` (stdout, after each file of a batch
//!   download): the hash of the file's bytes just sent, or that they must be
//!   dropped.
//!
//! # Batch download framing
//!
//! Each file is its META line, exactly `<size>` bytes, then its SUM (or BAD)
//! line, so the client knows where each file ends without any escaping.
//!
//! # Upload framing (in-band)
//!
//! stdin carries `<len>\n<len bytes>` chunks, then `0\n<sha256 hex>\n`. The
//! remote side reads each chunk with one `dd iflag=fullblock,count_bytes`, so
//! it never reads past a chunk, then reads the trailer and compares hashes
//! before anything is renamed into place. Input that ends early (the client
//! went away) fails the comparison and the temporary file is removed.

/// Shell functions shared by every script.
const PRELUDE: &str = r#"
set -u
export LC_ALL=C
umask 077
csrs_fail() { printf 'CSRS-ERR %s %s\n' "$1" "$2" >&2; exit 3; }
# A file's META fields, then what tells that it changed: inode, size, and
# modification and change times to the nanosecond (a rewrite of the same size
# within the same second changes the change time too).
CSRS_STAT='%a %X %Y %s|%i %s %y %z'
# Whether file $1, whose stat line was $2 before its first bytes (as many as
# its size then) were sent with SHA-256 $3, still holds what was sent:
# unchanged, or (with $3) only grown, its first bytes still hashing to $3,
# as a log being written to.
csrs_same() {
  csrs_now=$(stat -L -c "$CSRS_STAT" -- "$1" 2>/dev/null) || return 1
  [ "${csrs_now#*|}" = "${2#*|}" ] && return 0
  [ -n "${3-}" ] || return 1
  read -r csrs_i0 csrs_s0 _ <<< "${2#*|}"
  read -r csrs_i1 csrs_s1 _ <<< "${csrs_now#*|}"
  [ "$csrs_i0" = "$csrs_i1" ] && [ "$csrs_s1" -ge "$csrs_s0" ] || return 1
  csrs_h=$(head -c "$csrs_s0" -- "$1" | sha256sum) && [ "${csrs_h%% *}" = "$3" ]
}
csrs_kind() {
  case $1 in
    *"No space left"*|*"Disk quota"*|*"File too large"*) k=nospace ;;
    *"Permission denied"*|*"Operation not permitted"*|*"Read-only file system"*) k=perm ;;
    *"No such file"*) k=notfound ;;
    *"Not a directory"*) k=notdir ;;
    "curl: ("*|*"
curl: ("*) k=s3 ;;
    *) k=io ;;
  esac
}
csrs_check() { printf '%s\n' "$2" >&2; csrs_kind "$2"; csrs_fail "$k" "$1"; }
csrs_expand() {
  case $1 in
    "~") r=$HOME ;;
    "~/"*) r=$HOME/${1#"~/"} ;;
    *) r=$1 ;;
  esac
}
csrs_recv() {
  while IFS= read -r len; do
    case $len in
      0) return 0 ;;
      ''|*[!0-9]*) return 86 ;;
    esac
    dd bs=1048576 count="$len" iflag=fullblock,count_bytes status=none || return 1
  done
  return 86
}
csrs_parent() {
  case $1 in
    */*) p=${1%/*}; [ -n "$p" ] || p=/ ;;
    *) p=. ;;
  esac
}
csrs_target() {
  # $1 destination, $2 source name, $3 1 = destination must be a directory
  csrs_expand "$1"; dst=$r
  if [ -d "$dst" ]; then
    case $dst in */) target=$dst$2 ;; *) target=$dst/$2 ;; esac
  elif [ "$3" = 1 ]; then
    if [ -e "$dst" ]; then csrs_fail notdir "$dst"; else csrs_fail notfound "$dst"; fi
  else
    case $dst in */) csrs_fail notfound "$dst" ;; esac
    target=$dst
  fi
  csrs_parent "$target"; parent=$p
  [ -e "$parent" ] || csrs_fail notfound "$parent"
  [ -d "$parent" ] || csrs_fail notdir "$parent"
  [ -w "$parent" ] && [ -x "$parent" ] || csrs_fail perm "$parent"
}
csrs_times() {
  # $1 file, $2 "ATIME MTIME" or empty
  [ -n "$2" ] || return 0
  set -- "$1" ${2}
  e=$(touch -a -d "@$2" -- "$1" 2>&1 && touch -m -d "@$3" -- "$1" 2>&1) || csrs_check "$1" "$e"
}
"#;

/// Upload of one file. Arguments: destination, source name, into-directory
/// flag (0/1), octal mode, times (`ATIME MTIME` or empty), nonce, source of
/// the data (`stdin`: framed chunks + trailer; `curl`: a curl config on stdin
/// naming the URL and headers), expected SHA-256 (for `curl`).
const UPLOAD_FILE: &str = r#"
csrs_target "$1" "$2" "$3"
mode=$4 times=$5 nonce=$6 src=$7 want=$8
[ -d "$target" ] && csrs_fail isdir "$target"
tmp=$target.cloudshell-rs.tmp.$nonce
trap 'rm -f -- "$tmp"' EXIT
trap 'exit 129' HUP; trap 'exit 130' INT; trap 'exit 143' TERM
e=$( { : > "$tmp"; } 2>&1 ) || csrs_check "$target" "$e"
if [ "$src" = stdin ]; then
  e=$( { csrs_recv > "$tmp"; } 2>&1 ); st=$?
  [ $st = 86 ] && csrs_fail short "the input ended early"
  [ $st = 0 ] || csrs_check "$target" "$e"
  IFS= read -r want || csrs_fail short "the input ended before its checksum"
else
  command -v curl >/dev/null 2>&1 || csrs_fail tool "curl is not installed in the environment"
  e=$( { set -o pipefail; curl -fsS --config - | cat > "$tmp"; } 2>&1 ) || csrs_check "$target" "$e"
fi
got=$(sha256sum < "$tmp") || csrs_fail io "$target"
got=${got%% *}
[ "$got" = "$want" ] || csrs_fail mismatch "$got"
e=$(chmod "$mode" -- "$tmp" 2>&1) || csrs_check "$target" "$e"
csrs_times "$tmp" "$times"
size=$(stat -c %s -- "$tmp") || size=0
e=$(mv -fT -- "$tmp" "$target" 2>&1) || csrs_check "$target" "$e"
trap - EXIT
printf 'CSRS-OK %s %s\n' "$got" "$size" >&2
"#;

/// Upload of a tree (a tar stream). Arguments as for [`UPLOAD_FILE`], the mode
/// and times being those of the top directory.
const UPLOAD_TREE: &str = r#"
csrs_target "$1" "$2" "$3"
mode=$4 times=$5 nonce=$6 src=$7 want=$8
[ -e "$target" ] || [ -L "$target" ] && csrs_fail exists "$target"
tmp=$target.cloudshell-rs.tmp.$nonce
trap 'chmod -R u+rwx -- "$tmp" 2>/dev/null; rm -rf -- "$tmp" "$tmp.sum" "$tmp.fifo"' EXIT
trap 'exit 129' HUP; trap 'exit 130' INT; trap 'exit 143' TERM
command -v tar >/dev/null 2>&1 || csrs_fail tool "tar is not installed in the environment"
e=$(mkdir -m 700 -- "$tmp" 2>&1 && mkfifo -m 600 -- "$tmp.fifo" 2>&1) || csrs_check "$target" "$e"
if [ -n "$times" ]; then keep=; else keep=-m; fi
sha256sum < "$tmp.fifo" > "$tmp.sum" & hp=$!
if [ "$src" = stdin ]; then
  e=$( { set -o pipefail; csrs_recv | tee -- "$tmp.fifo" | { tar -x -p $keep -f - -C "$tmp"; t=$?; cat > /dev/null; exit $t; }; } 2>&1 ); st=$?
else
  command -v curl >/dev/null 2>&1 || csrs_fail tool "curl is not installed in the environment"
  e=$( { set -o pipefail; curl -fsS --config - | tee -- "$tmp.fifo" | { tar -x -p $keep -f - -C "$tmp"; t=$?; cat > /dev/null; exit $t; }; } 2>&1 ); st=$?
fi
wait $hp
[ "$src" = stdin ] && [ $st = 86 ] && csrs_fail short "the input ended early"
[ $st = 0 ] || csrs_check "$target" "$e"
if [ "$src" = stdin ]; then
  IFS= read -r want || csrs_fail short "the input ended before its checksum"
fi
got=$(cat -- "$tmp.sum"); got=${got%% *}
[ "$got" = "$want" ] || csrs_fail mismatch "$got"
e=$(chmod "$mode" -- "$tmp" 2>&1) || csrs_check "$target" "$e"
csrs_times "$tmp" "$times"
e=$(mv -T -- "$tmp" "$target" 2>&1) || csrs_check "$target" "$e"
rm -f -- "$tmp.sum" "$tmp.fifo"
trap - EXIT
printf 'CSRS-OK %s 0\n' "$got" >&2
"#;

/// Download (file or, with the recursive flag, a tree as a tar stream).
/// Arguments: source, recursive flag (0/1), sink: `stdout`; `s3` (POST to the
/// presigned form given as a curl config on stdin); or `auto:MIN`, S3 for a
/// file (or tree, by `du -sb`) of MIN bytes or more, else (and when the request to S3 fails, with a
/// `CSRS-FALLBACK <message>` line on stderr) `stdout`. With `stdout` the META
/// line comes first on stdout, followed by the data; with S3 it is printed on
/// stderr once the object is in S3.
const DOWNLOAD: &str = r#"
csrs_expand "$1"; src=$r
rec=$2 sink=$3
if [ ! -e "$src" ]; then
  [ -L "$src" ] && csrs_fail notfound "$src"
  csrs_fail notfound "$src"
fi
if [ -d "$src" ]; then
  [ "$rec" = 1 ] || csrs_fail isdir "$src"
  kind=dir
  [ -r "$src" ] && [ -x "$src" ] || csrs_fail perm "$src"
  command -v tar >/dev/null 2>&1 || csrs_fail tool "tar is not installed in the environment"
elif [ -f "$src" ]; then
  kind=file
  [ -r "$src" ] || csrs_fail perm "$src"
else
  csrs_fail notregular "$src"
fi
st=$(stat -L -c "$CSRS_STAT" -- "$src") || csrs_fail io "$src"
meta=${st%%|*}
csrs_send() {
  if [ $kind = dir ]; then tar -C "$src" -cf - .; else head -c "${meta##* }" -- "$src"; fi
}
csrs_stdout() {
  printf 'CSRS-META %s %s\n' "$kind" "$meta"
  exec 3>&1
  h=$(set -o pipefail; csrs_send | tee /dev/fd/3 | sha256sum) || csrs_fail io "$src"
  h=${h%% *}
  [ $kind = dir ] || csrs_same "$src" "$st" "$h" || csrs_fail changed "$src"
  size=
}
# With $1 = auto, a failed request to S3 returns 1 (its message in $e)
# instead of failing the run.
csrs_s3() {
  command -v curl >/dev/null 2>&1 || csrs_fail tool "curl is not installed in the environment"
  tmpd=$(mktemp -d) || csrs_fail io "${TMPDIR:-/tmp}"
  trap 'rm -rf -- "$tmpd"' EXIT
  trap 'exit 129' HUP; trap 'exit 130' INT; trap 'exit 143' TERM
  if [ $kind = dir ]; then
    e=$(tar -C "$src" -cf "$tmpd/data" . 2>&1) || csrs_check "$src" "$e"
    data=$tmpd/data
  else
    data=$src
  fi
  # A file: its first bytes, as many as it had (one that grows meanwhile,
  # a log being written to, is sent longer; the client keeps those).
  if [ $kind = dir ]; then
    h=$(sha256sum < "$data") || csrs_fail io "$src"
    size=$(stat -c %s -- "$data")
  else
    size=${meta##* }
    h=$(set -o pipefail; head -c "$size" -- "$src" | sha256sum) || csrs_fail io "$src"
  fi
  h=${h%% *}
  if ! e=$(curl -fsS -o /dev/null --config - 2>&1 3< "$data"); then
    [ "${1-}" = auto ] && return 1
    csrs_check "$src" "$e"
  fi
  [ $kind = dir ] || csrs_same "$src" "$st" "$h" || csrs_fail changed "$src"
  printf 'CSRS-META %s %s\n' "$kind" "$meta" >&2
}
case $sink in
  stdout) csrs_stdout ;;
  s3) csrs_s3 ;;
  auto:*)
    if [ $kind = file ]; then n=${meta##* }; else n=$(du -sb -- "$src" 2>/dev/null); n=${n%%[!0-9]*}; fi
    if [ "${n:-0}" -ge "${sink#auto:}" ] && command -v curl >/dev/null 2>&1; then
      if ! csrs_s3 auto; then
        printf 'CSRS-FALLBACK %s\n' "$(printf %s "$e" | tr '\n' ' ')" >&2
        csrs_stdout
      fi
    else
      csrs_stdout
    fi ;;
  *) csrs_fail io "unknown sink $sink" ;;
esac
printf 'CSRS-OK %s %s\n' "$h" "$size" >&2
"#;

/// Upload of several files into one directory, one after the other in one
/// run. Arguments: destination directory, count N, then N groups of four:
/// source name, octal mode, times (`ATIME MTIME` or empty), nonce. stdin
/// carries each file's framed chunks and trailer in turn. Each file goes
/// through [`UPLOAD_FILE`] in a subshell of its own (its temporary file, trap
/// and `CSRS-OK` line); the first failure ends the run with its status, the
/// files before it staying in place.
fn upload_files_body() -> String {
    format!(
        "csrs_upload_one() {{\n{UPLOAD_FILE}\n}}\n{}",
        r#"d=$1; n=$2; shift 2
i=0
while [ "$i" -lt "$n" ]; do
  ( csrs_upload_one "$d" "$1" 1 "$2" "$3" "$4" stdin "" ) || exit $?
  shift 4; i=$((i + 1))
done
"#
    )
}

/// One file of a batch download (a function body; argument: the source).
/// Prints on stdout the META line, exactly `size` bytes (the size in the META
/// line: a file that shrank meanwhile is padded, one that grew is cut, so the
/// stream stays framed) and `CSRS-SUM <sha256>`; or, when the file could not
/// be read whole or no longer holds what was sent (`csrs_same`), `CSRS-BAD`
/// instead of the sum, and the failure on stderr.
const DOWNLOAD_FILE: &str = r#"
csrs_expand "$1"; src=$r
[ -e "$src" ] || csrs_fail notfound "$src"
[ -d "$src" ] && csrs_fail isdir "$src"
[ -f "$src" ] || csrs_fail notregular "$src"
[ -r "$src" ] || csrs_fail perm "$src"
st=$(stat -L -c "$CSRS_STAT" -- "$src") || csrs_fail io "$src"
meta=${st%%|*}
size=${meta##* }
printf 'CSRS-META file %s\n' "$meta"
h=$(set -o pipefail
  { head -c "$size" -- "$src"; s=$?; head -c "$size" /dev/zero; exit $s; } |
    head -c "$size" | tee /dev/fd/3 | sha256sum) || { printf 'CSRS-BAD\n'; csrs_fail io "$src"; }
h=${h%% *}
csrs_same "$src" "$st" "$h" || { printf 'CSRS-BAD\n'; csrs_fail changed "$src"; }
printf 'CSRS-SUM %s\n' "$h"
printf 'CSRS-OK %s %s\n' "$h" "$size" >&2
"#;

/// Download of several files in one run. Arguments: count N, then N sources.
/// Each file goes through [`DOWNLOAD_FILE`] in a subshell of its own, its
/// framed data on stdout in turn; the first failure ends the run with its
/// status.
fn download_files_body() -> String {
    format!(
        "csrs_download_one() {{\n{DOWNLOAD_FILE}\n}}\n{}",
        r#"n=$1; shift
exec 3>&1
i=0
while [ "$i" -lt "$n" ]; do
  ( csrs_download_one "$1" ) || exit $?
  shift; i=$((i + 1))
done
"#
    )
}

/// Removes what an interrupted upload left. Arguments: destination, source
/// name, nonce (the temporary names contain the nonce, so nothing else can match).
const CLEANUP: &str = r#"
csrs_expand "$1"; d=$r
[ -n "$3" ] || exit 0
for t in "$d.cloudshell-rs.tmp.$3" "${d%/}/$2.cloudshell-rs.tmp.$3"; do
  if [ -e "$t" ] || [ -e "$t.fifo" ]; then
    chmod -R u+rwx -- "$t" 2>/dev/null
    rm -rf -- "$t" "$t.sum" "$t.fifo"
  fi
done
"#;

fn script(body: &str) -> Vec<u8> {
    let mut s = String::with_capacity(PRELUDE.len() + body.len());
    s.push_str(PRELUDE);
    s.push_str(body);
    s.into_bytes()
}

fn argv(body: &str, args: &[&[u8]]) -> Vec<Vec<u8>> {
    let mut v = vec![b"bash".to_vec(), b"-c".to_vec(), script(body)];
    v.push(b"cloudshell-rs-cp".to_vec());
    v.extend(args.iter().map(|a| a.to_vec()));
    v
}

/// Where the data of an upload comes from on the remote side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum UploadSource {
    /// Framed chunks and a trailer on stdin.
    Stdin,
    /// A curl config on stdin; the expected hash is an argument.
    Curl,
}

/// The arguments of an upload script.
#[derive(Debug, Clone)]
pub(crate) struct UploadArgs<'a> {
    pub tree: bool,
    pub destination: &'a str,
    pub name: &'a [u8],
    pub into_directory: bool,
    pub mode: u32,
    pub times: Option<(i64, i64)>,
    pub nonce: &'a str,
    pub source: UploadSource,
    pub expected_sha256: &'a str,
}

/// argv of an upload.
pub(crate) fn upload_argv(a: &UploadArgs<'_>) -> Vec<Vec<u8>> {
    let mode = format!("{:o}", a.mode & 0o7777);
    let times = a
        .times
        .map(|(at, mt)| format!("{at} {mt}"))
        .unwrap_or_default();
    let src: &[u8] = match a.source {
        UploadSource::Stdin => b"stdin",
        UploadSource::Curl => b"curl",
    };
    argv(
        if a.tree { UPLOAD_TREE } else { UPLOAD_FILE },
        &[
            a.destination.as_bytes(),
            a.name,
            if a.into_directory { b"1" } else { b"0" },
            mode.as_bytes(),
            times.as_bytes(),
            a.nonce.as_bytes(),
            src,
            a.expected_sha256.as_bytes(),
        ],
    )
}

/// One file of a batch upload ([`upload_files_argv`]).
#[derive(Debug, Clone)]
pub(crate) struct BatchFile<'a> {
    pub name: &'a [u8],
    pub mode: u32,
    pub times: Option<(i64, i64)>,
    pub nonce: &'a str,
}

/// argv of an upload of several files into the directory `destination`,
/// their data on stdin in the order given.
pub(crate) fn upload_files_argv(destination: &str, files: &[BatchFile<'_>]) -> Vec<Vec<u8>> {
    let count = files.len().to_string();
    let mut owned: Vec<Vec<u8>> = vec![destination.as_bytes().to_vec(), count.into_bytes()];
    for f in files {
        owned.push(f.name.to_vec());
        owned.push(format!("{:o}", f.mode & 0o7777).into_bytes());
        owned.push(
            f.times
                .map(|(at, mt)| format!("{at} {mt}"))
                .unwrap_or_default()
                .into_bytes(),
        );
        owned.push(f.nonce.as_bytes().to_vec());
    }
    let args: Vec<&[u8]> = owned.iter().map(Vec::as_slice).collect();
    argv(&upload_files_body(), &args)
}

/// argv of a download; `to_s3` makes the environment POST the data to S3.
pub(crate) fn download_argv(source: &str, recursive: bool, sink: DownloadSink) -> Vec<Vec<u8>> {
    let sink = match sink {
        DownloadSink::Stdout => "stdout".to_string(),
        DownloadSink::S3 => "s3".to_string(),
        DownloadSink::Auto(min) => format!("auto:{min}"),
    };
    argv(
        DOWNLOAD,
        &[
            source.as_bytes(),
            if recursive { b"1" } else { b"0" },
            sink.as_bytes(),
        ],
    )
}

/// Where a download's data goes from the environment.
#[derive(Debug, Clone, Copy)]
pub(crate) enum DownloadSink {
    /// In-band, on stdout.
    Stdout,
    /// Into S3.
    S3,
    /// Into S3 for a file of at least this many bytes, else (or when the
    /// request to S3 fails) on stdout.
    Auto(u64),
}

/// argv of a download of several files (stdout only).
pub(crate) fn download_files_argv(sources: &[&str]) -> Vec<Vec<u8>> {
    let count = sources.len().to_string();
    let mut args: Vec<&[u8]> = vec![count.as_bytes()];
    args.extend(sources.iter().map(|s| s.as_bytes()));
    argv(&download_files_body(), &args)
}

/// Expansion of remote patterns (arguments). For each pattern, after `~`,
/// every existing path the shell's pathname expansion gives, in its order
/// (C locale), each followed by a NUL, with `~/` kept in front when the
/// pattern started with it (`.` and `..` never), then one more NUL; a
/// pattern that matches nothing fails as `notfound`.
const GLOB: &str = r#"
# The shell's default expansion, whatever a BASH_ENV file may have set.
shopt -u failglob nullglob nocaseglob dotglob globstar 2>/dev/null || :
csrs_emit() {
  f=$1
  case $2 in
    "~"|"~/"*) case $f in "$HOME"/*) f="~/${f#"$HOME"/}" ;; esac ;;
  esac
  printf '%s\0' "$f"
}
for p; do
  csrs_expand "$p"
  found=0
  IFS=
  for f in $r; do
    case ${f##*/} in .|..) continue ;; esac
    [ -e "$f" ] || [ -L "$f" ] || continue
    csrs_emit "$f" "$p"; found=1
  done
  unset IFS
  # Without an unescaped pattern character the shell does not expand: the
  # path is the pattern with its backslashes removed.
  if [ $found = 0 ]; then
    case $r in
      *\\*)
        u=$(printf '%sx' "$r" | sed 's/\\\(.\)/\1/g'); u=${u%x}
        if [ -e "$u" ] || [ -L "$u" ]; then csrs_emit "$u" "$p"; found=1; fi ;;
    esac
  fi
  [ $found = 1 ] || csrs_fail notfound "$p"
  printf '\0'
done
"#;

/// argv of the expansion of remote patterns.
pub(crate) fn glob_argv(patterns: &[&str]) -> Vec<Vec<u8>> {
    let args: Vec<&[u8]> = patterns.iter().map(|p| p.as_bytes()).collect();
    argv(GLOB, &args)
}

/// argv of the clean-up after a failed upload.
pub(crate) fn cleanup_argv(destination: &str, name: &[u8], nonce: &str) -> Vec<Vec<u8>> {
    argv(CLEANUP, &[destination.as_bytes(), name, nonce.as_bytes()])
}

/// A classified failure reported by a script.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RemoteFailure {
    pub kind: String,
    pub detail: String,
}

/// What a script reported on stderr.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Report {
    /// The last `CSRS-OK` line.
    pub ok: Option<(String, Option<u64>)>,
    /// Every `CSRS-OK` line, in order (one per file of a batch upload).
    pub oks: Vec<(String, Option<u64>)>,
    pub meta: Option<Meta>,
    pub failure: Option<RemoteFailure>,
    /// The `CSRS-FALLBACK` line: why S3 was not used after all.
    pub fallback: Option<String>,
    /// Other stderr lines (tool messages), for error context.
    pub other: Vec<String>,
}

/// The `CSRS-META` line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Meta {
    pub dir: bool,
    pub mode: u32,
    pub atime: i64,
    pub mtime: i64,
    pub size: u64,
}

/// Parses a `CSRS-META` line (without the newline).
pub(crate) fn parse_meta(line: &str) -> Option<Meta> {
    let mut it = line.strip_prefix("CSRS-META ")?.split(' ');
    let dir = match it.next()? {
        "dir" => true,
        "file" => false,
        _ => return None,
    };
    let mode = u32::from_str_radix(it.next()?, 8).ok()?;
    let atime = it.next()?.parse().ok()?;
    let mtime = it.next()?.parse().ok()?;
    let size = it.next()?.parse().ok()?;
    if it.next().is_some() {
        return None;
    }
    Some(Meta {
        dir,
        mode,
        atime,
        mtime,
        size,
    })
}

/// Parses everything a script wrote to stderr.
pub(crate) fn parse_report(stderr: &[u8]) -> Report {
    let mut r = Report::default();
    for line in String::from_utf8_lossy(stderr).lines() {
        let line = line.trim_end_matches('\r');
        if let Some(rest) = line.strip_prefix("CSRS-OK ") {
            let mut it = rest.split(' ');
            let hash = it.next().unwrap_or_default();
            let size = it.next().and_then(|s| s.parse().ok());
            if hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_hexdigit()) {
                let ok = (hash.to_ascii_lowercase(), size);
                r.oks.push(ok.clone());
                r.ok = Some(ok);
            }
        } else if let Some(rest) = line.strip_prefix("CSRS-ERR ") {
            let (kind, detail) = rest.split_once(' ').unwrap_or((rest, ""));
            r.failure = Some(RemoteFailure {
                kind: kind.to_string(),
                detail: detail.to_string(),
            });
        } else if line.starts_with("CSRS-META ") {
            r.meta = parse_meta(line);
        } else if let Some(why) = line.strip_prefix("CSRS-FALLBACK ") {
            r.fallback = Some(why.trim_end().to_string());
        } else if !line.trim().is_empty() && r.other.len() < 20 {
            r.other.push(line.to_string());
        }
    }
    r
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn reports_parse() {
        let r =
            parse_report(b"tar: something\nCSRS-ERR nospace writing /x: No space left on device\n");
        assert_eq!(r.failure.as_ref().unwrap().kind, "nospace");
        assert_eq!(r.other, vec!["tar: something".to_string()]);
        let h = "a".repeat(64);
        let r = parse_report(format!("CSRS-OK {h} 12\n").as_bytes());
        assert_eq!(r.ok, Some((h.clone(), Some(12))));
        let r = parse_report(format!("CSRS-OK {h} \n").as_bytes());
        assert_eq!(r.ok, Some((h, None)));
        assert!(parse_report(b"CSRS-OK nothex 1\n").ok.is_none());
    }

    #[test]
    fn meta_parses() {
        assert_eq!(
            parse_meta("CSRS-META file 750 1 2 3"),
            Some(Meta {
                dir: false,
                mode: 0o750,
                atime: 1,
                mtime: 2,
                size: 3
            })
        );
        assert!(parse_meta("CSRS-META pipe 750 1 2 3").is_none());
        assert!(parse_meta("CSRS-META file 9 1 2 3").is_none());
        assert!(parse_meta("CSRS-META file 750 1 2").is_none());
    }

    #[test]
    fn tool_messages_are_classified() {
        let cases = [
            ("dd: error writing 'x': No space left on device", "nospace"),
            ("cat: write error: Disk quota exceeded", "nospace"),
            ("mv: cannot move 'a' to 'b': Permission denied", "perm"),
            ("touch: cannot touch 'x': Read-only file system", "perm"),
            ("tar: x: Cannot open: No such file or directory", "notfound"),
            (
                "mkdir: cannot create directory 'a/b': Not a directory",
                "notdir",
            ),
            ("curl: (22) The requested URL returned error: 403", "s3"),
            (
                "curl: (7) Failed to connect to s3.amazonaws.com port 443",
                "s3",
            ),
            (
                "cat: write error: No space left on device\ncurl: (23) Failure writing output to destination",
                "nospace",
            ),
            ("tee: x.fifo: Broken pipe", "io"),
        ];
        for (msg, want) in cases {
            let mut script =
                String::from_utf8(script("csrs_kind \"$1\"; printf %s \"$k\"")).unwrap();
            script.push('\n');
            let out = std::process::Command::new("bash")
                .args(["-c", &script, "t", msg])
                .output()
                .unwrap();
            assert_eq!(String::from_utf8_lossy(&out.stdout), want, "{msg}");
        }
    }

    #[test]
    fn scripts_are_valid_bash() {
        for body in [
            UPLOAD_FILE,
            UPLOAD_TREE,
            DOWNLOAD,
            CLEANUP,
            GLOB,
            &upload_files_body(),
            &download_files_body(),
        ] {
            let out = std::process::Command::new("bash")
                .arg("-n")
                .arg("-c")
                .arg(String::from_utf8(script(body)).unwrap())
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

//! The text that runs on the remote side: the bootstrap line typed into the
//! interactive shell, the script it loads, and the encoding of stdin blocks.
//!
//! Everything user-supplied (argv, environment values, stdin) travels as
//! base64 and is decoded by the remote shell into arrays or pipes; nothing is
//! ever interpolated into shell text.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use std::fmt::Write as _;

/// Bytes of local stdin carried by one input block. 3069 bytes encode to 4092
/// base64 characters: with its newline and padding the block is exactly
/// [`INPUT_BLOCK`] characters, below the 4095-character line limit of a
/// canonical-mode tty.
pub(crate) const STDIN_CHUNK: usize = 3069;

/// Size of one input block on the wire. GNU `base64 -d` decodes its input in
/// blocks of 4096 characters (newlines included, then ignored); sending
/// exactly one such block per chunk makes the remote decoder emit the chunk at
/// once instead of waiting for more input.
pub(crate) const INPUT_BLOCK: usize = 4096;

/// Characters per line when the script and the environment are sent.
const LOAD_LINE: usize = 3072;

/// End of file for the remote command's stdin: the tty's VEOF character, sent
/// at the start of a line, makes the decoder's read() return 0.
pub(crate) const STDIN_EOF: &[u8] = b"\x04";

/// The byte the remote line discipline turns into SIGINT.
pub(crate) const INTERRUPT: &[u8] = b"\x03";

/// The byte the remote line discipline turns into SIGQUIT: sent when a run
/// is abandoned, it ends the script too (the script does not ignore SIGQUIT),
/// so no process is left behind in the terminal.
pub(crate) const QUIT: &[u8] = b"\x1c";

/// A per-run random marker: every frame line starts with it.
#[derive(Clone)]
pub(crate) struct Nonce(String);

impl Nonce {
    /// 128 random bits as 32 lowercase hex characters.
    pub(crate) fn random() -> Self {
        let v: u128 = rand::random();
        Nonce(format!("{v:032x}"))
    }

    #[cfg(test)]
    pub(crate) fn fixed(s: &str) -> Self {
        Nonce(s.to_owned())
    }

    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Nonce {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Nonce(..)")
    }
}

/// Options that change the generated script.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct ScriptOptions {
    /// Feed the command's stdin from input blocks (else `/dev/null`).
    pub(crate) forward_stdin: bool,
    /// Read a block of exported environment variables before stdin.
    pub(crate) with_env: bool,
}

/// The single line typed into the interactive shell (without the final CR).
///
/// It starts with a space (kept out of history where `HISTCONTROL` ignores
/// such lines; it is never saved anyway since the shell is replaced by
/// `exec` and never runs its exit-time history save). It puts the terminal
/// back into its default mode (`sane`: canonical input, signals, `^C`, `^\`
/// and `^D`, whatever a profile set), turns echo off, keeps
/// queued input on interrupt (`noflsh`), then replaces the interactive shell
/// with a non-interactive bash (no job control, no aliases, no rc files) that
/// prints the ready marker and loads the script from the following lines.
/// The ready marker is printed from two halves so that the echo of this line
/// never contains it. `\command stty` and `\exec` are immune to the user's
/// aliases (and `command` to a function named `stty`), which would otherwise
/// take the line over.
pub(crate) fn bootstrap_line(nonce: &Nonce) -> String {
    let (a, b) = nonce.as_str().split_at(nonce.as_str().len() / 2);
    format!(
        " \\command stty sane -echo noflsh && BASH_ENV= \\exec bash -c '\
command -v base64 >/dev/null || {{ printf \"\\n%s%s:F:missing base64.\\n\" {a} \"{b}\"; exit 0; }}; \
printf \"\\n%s%s:R.\\n\" {a} \"{b}\"; s=; while IFS= read -r l && [ -n \"$l\" ]; do s=$s$l; done; \
eval \"$(printf %s \"$s\" | base64 -d)\"' cloudshell-rs-exec"
    )
}

/// The lines sent after the ready marker: the base64 script, an empty line.
pub(crate) fn script_lines(nonce: &Nonce, argv: &[Vec<u8>], opts: ScriptOptions) -> Vec<u8> {
    let script = script(nonce, argv, opts);
    lines(STANDARD.encode(script.as_bytes()).as_bytes())
}

/// The environment block: base64 of NUL-separated `NAME=value` entries in
/// lines, then an empty line. The remote script decodes it into an array and
/// passes it to the `export` builtin: values never appear in a command line
/// and, echo being off, never come back.
pub(crate) fn env_lines(vars: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut raw = Vec::new();
    for (k, v) in vars {
        raw.extend_from_slice(k.as_bytes());
        raw.push(b'=');
        raw.extend_from_slice(v);
        raw.push(0);
    }
    lines(STANDARD.encode(&raw).as_bytes())
}

fn lines(text: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len() + text.len() / LOAD_LINE + 2);
    for chunk in text.chunks(LOAD_LINE) {
        out.extend_from_slice(chunk);
        out.push(b'\n');
    }
    out.push(b'\n');
    out
}

/// One input block carrying `data` (at most [`STDIN_CHUNK`] bytes): the base64
/// line padded with newlines to exactly [`INPUT_BLOCK`] characters.
pub(crate) fn stdin_block(data: &[u8]) -> Vec<u8> {
    debug_assert!(data.len() <= STDIN_CHUNK);
    let mut out = STANDARD.encode(data).into_bytes();
    out.push(b'\n');
    if out.len() < INPUT_BLOCK {
        out.resize(INPUT_BLOCK, b'\n');
    }
    out
}

/// Names that must be valid shell identifiers to be exported.
pub(crate) fn is_env_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c == '_' || c.is_ascii_alphabetic())
        && chars.all(|c| c == '_' || c.is_ascii_alphanumeric())
}

/// The start both scripts share: the nonce, the check for the tools, the
/// command's argv decoded into `__csx_argv` and, with `with_env`, the
/// environment block read (echo still off) and exported.
fn prelude(nonce: &Nonce, argv: &[Vec<u8>], with_env: bool) -> String {
    let mut nul_separated = Vec::new();
    for a in argv {
        nul_separated.extend_from_slice(a);
        nul_separated.push(0);
    }
    let args = STANDARD.encode(&nul_separated);
    let mut s = String::new();
    // fd 4: where frames go. Frames are written by `dd` in one write() each,
    // so the two encoders never interleave inside a line (a tty write() is
    // atomic with respect to other writers). Each frame starts with a newline
    // so that it begins a line whatever was written before it.
    let _ = writeln!(s, "N={}", nonce.as_str());
    s.push_str(
        r#"exec 4>&1
__csx_fail() { printf '\n%s:F:%s.\n' "$N" "$1" >&4; exit 0; }
for __csx_t in dd stty mapfile; do command -v "$__csx_t" >/dev/null 2>&1 || __csx_fail "missing $__csx_t"; done
"#,
    );
    let _ = writeln!(s, "__csx_args={args}");
    s.push_str(
        r#"mapfile -d '' -t __csx_argv < <(printf %s "$__csx_args" | base64 -d)
[ "${#__csx_argv[@]}" -gt 0 ] || __csx_fail "empty command"
# A command that cannot run: the message and status of a shell, without the
# script's name and line number in front.
__csx_found() { command -v -- "$1" >/dev/null 2>&1 && return 0
  case $1 in
  */*) if [ -d "$1" ]; then printf '%s: Is a directory\n' "$1"; return 126; elif [ -e "$1" ]; then printf '%s: Permission denied\n' "$1"; return 126; fi
    printf '%s: No such file or directory\n' "$1";;
  *) printf '%s: command not found\n' "$1";;
  esac >&2; return 127; }
"#,
    );
    if with_env {
        s.push_str(
            r#"__csx_e=; while IFS= read -r __csx_l && [ -n "$__csx_l" ]; do __csx_e=$__csx_e$__csx_l; done
mapfile -d '' -t __csx_env < <(printf %s "$__csx_e" | base64 -d)
unset __csx_e __csx_l
[ "${#__csx_env[@]}" -eq 0 ] || export "${__csx_env[@]}"
unset __csx_env
"#,
        );
    }
    s
}

/// The lines sent after the ready marker to run the command on the terminal
/// itself (`exec -t`): the base64 script, an empty line.
pub(crate) fn tty_script_lines(nonce: &Nonce, argv: &[Vec<u8>], with_env: bool) -> Vec<u8> {
    lines(
        STANDARD
            .encode(tty_script(nonce, argv, with_env).as_bytes())
            .as_bytes(),
    )
}

/// The remote script of `exec -t`: the command runs in the foreground of
/// the terminal, its output unframed. The terminal goes back to its default
/// mode (echo on) just before the start marker; the script and its
/// subshell's parent ignore the terminal's interrupt and quit signals, the
/// command does not, so ^C and ^\ end the command and the exit marker still
/// comes. The exit marker starts with a carriage return (column 0, so a
/// terminal multiplexer in the path prints it on one row) and carries no
/// newline before it: with the marker taken out, the output is exactly the
/// command's.
fn tty_script(nonce: &Nonce, argv: &[Vec<u8>], with_env: bool) -> String {
    let mut s = prelude(nonce, argv, with_env);
    s.push_str(
        r#"trap '' INT QUIT
\command stty sane 2>/dev/null
printf '\n%s:S.' "$N"
( trap - INT QUIT; __csx_found "${__csx_argv[0]}" || exit; exec "${__csx_argv[@]}" )
__csx_st=$?
printf '\r%s:X:%d\n' "$N" "$__csx_st"
# Not gone before the marker is out: tmux drops what it has not yet passed
# on when the pane ends. The client hangs up on seeing it (5 s at most).
__csx_t=$SECONDS
while [ $((SECONDS - __csx_t)) -lt 5 ] && IFS= read -r -t 1 __csx_l; do :; done
exit 0
"#,
    );
    s
}

/// The remote script (bash). See the module documentation of `exec` for the
/// design; the comments here are about shell details.
fn script(nonce: &Nonce, argv: &[Vec<u8>], opts: ScriptOptions) -> String {
    let mut s = prelude(nonce, argv, opts.with_env);
    // SIGINT from the tty hits the whole foreground process group. The script
    // and every framing process ignore it (an ignored disposition survives
    // exec); only the command's own subshell resets it to the default, so the
    // command dies with 130 and the exit frame still gets out.
    s.push_str("trap '' INT\n");
    s.push_str(
        r#"for __csx_t in sha256sum mkfifo rm; do command -v "$__csx_t" >/dev/null 2>&1 || __csx_fail "missing $__csx_t"; done
# Inside tmux (CloudShell), no status line drawn among the frames.
[ -z "$TMUX" ] || tmux set-option status off >/dev/null 2>&1
# Flow control: once the terminal's input is free (at once, or when the
# command's stdin has ended), the client acknowledges frames on it (`.O<n>`,
# `.E<n>`: n frames of that stream arrived) and an encoder keeps at most one
# frame unacknowledged. A terminal multiplexer that cannot pass output on as
# fast as it comes drops it and redraws the screen: this keeps the output in
# flight far below that point (tmux: 8 bytes per cell of the window). The
# fifos carry the acknowledgements to the encoders; named by the nonce,
# removed as soon as they are open.
__csx_p=${TMPDIR:-/tmp}/.cloudshell-rs-$N
mkfifo -m 600 "$__csx_p.o" "$__csx_p.e" || __csx_fail "cannot create a fifo in ${TMPDIR:-/tmp}"
exec 7<>"$__csx_p.o" 8<>"$__csx_p.e"
rm -f "$__csx_p.o" "$__csx_p.e"
# An acknowledgement is `.O<n>` or `.E<n>`: no base64 line starts with a dot,
# so stdin a command left unread is never taken for one.
__csx_acks() { while IFS= read -r __csx_l; do case $__csx_l in .O|.E|.O*[!0-9]*|.E*[!0-9]*) ;; .O*) printf '%s\n' "${__csx_l#.O}" >&7;; .E*) printf '%s\n' "${__csx_l#.E}" >&8;; esac; done; }
"#,
    );
    if opts.forward_stdin {
        // The decoder reads the tty (canonical mode, echo off) until VEOF.
        // stdbuf -o0 makes it write each decoded block at once. Then the
        // command's stdin ends and the same process reads acknowledgements.
        s.push_str(
            r#"if command -v stdbuf >/dev/null 2>&1; then __csx_b64='stdbuf -o0 base64 -d'; else __csx_b64='base64 -d'; fi
exec 5< <($__csx_b64 2>/dev/null; exec >&-; __csx_acks 2>/dev/null)
__csx_dec=$!
"#,
        );
    } else {
        s.push_str(
            "exec 5</dev/null 9<&0\n__csx_acks <&9 9<&- >/dev/null 2>&1 &\n__csx_dec=$!\nexec 9<&-\n",
        );
    }
    s.push_str(
        r#"__csx_enc() {
  local n=0 a=0 c k= h= s=e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855 w
  while c=$(dd bs=65536 count=1 2>/dev/null | base64 -w0) && [ -n "$c" ]; do
    # The first acknowledgement says that they travel: from then on, wait.
    if [ -z "$k" ] && read -t 0 -u "$2"; then k=1; fi
    if [ -n "$k" ]; then
      while [ $((n - a)) -ge 1 ]; do IFS= read -r -u "$2" a || break; done
    fi
    if [ -z "$h" ]; then
      # SHA-256 of the frames' text, by a coprocess started with the first.
      coproc __csx_h { exec sha256sum; }
      exec 6<&"${__csx_h[0]}" 9>&"${__csx_h[1]}"
      w=${__csx_h[1]}; exec {w}>&-
      h=1
    fi
    printf %s "$c" >&9
    printf '\n%s:%s:%d:%d:%s.\n' "$N" "$1" "$n" "${#c}" "$c" | dd bs=131072 iflag=fullblock 2>/dev/null >&4
    n=$((n+1))
  done
  if [ -n "$h" ]; then exec 9>&-; IFS=' ' read -r s _ <&6; exec 6<&-; fi
  printf '\n%s:Z:%s:%d:%s.\n' "$N" "$1" "$n" "$s" >&4
}
__csx_run() { trap - INT; __csx_found "$1" || return; "$@"; }
printf '\n%s:S.\n' "$N" >&4
{ { __csx_run "${__csx_argv[@]}" <&5 5<&- 2>&1 >&3 3>&- 4>&- 7<&- 8<&- | __csx_enc E 8 3>&- 5<&-; exit "${PIPESTATUS[0]}"; } 3>&1 | __csx_enc O 7 5<&-; }
__csx_st=${PIPESTATUS[0]}
exec 5<&-
kill "$__csx_dec" 2>/dev/null
wait "$__csx_dec" 2>/dev/null
printf '\n%s:X:%d.\n' "$N" "$__csx_st" >&4
# Not gone before the status is out: tmux drops what it has not yet passed on
# when the pane ends. The client answers `.X` (or hangs up; 5 s at most, as
# unread stdin may still be arriving).
__csx_t=$SECONDS
while [ $((SECONDS - __csx_t)) -lt 5 ] && IFS= read -r -t 1 __csx_l && [ "$__csx_l" != .X ]; do :; done
exit 0
"#,
    );
    s
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn bootstrap_never_contains_the_whole_nonce() {
        let n = Nonce::random();
        let line = bootstrap_line(&n);
        assert!(!line.contains(n.as_str()));
        assert!(line.starts_with(' '));
        assert!(!line.contains('\n'));
        assert!(line.len() < 1024, "bootstrap must fit a canonical tty line");
    }

    #[test]
    fn script_does_not_contain_raw_arguments() {
        let n = Nonce::fixed("0123456789abcdef0123456789abcdef");
        let argv = vec![b"echo".to_vec(), b"$(rm -rf /) 'x' \"y\"".to_vec()];
        let s = script(&n, &argv, ScriptOptions::default());
        assert!(!s.contains("rm -rf /"));
    }

    #[test]
    fn stdin_blocks_are_exactly_one_decoder_block() {
        for len in [0, 1, 2, 3, 100, STDIN_CHUNK - 1, STDIN_CHUNK] {
            let data = vec![0xffu8; len];
            let b = stdin_block(&data);
            assert_eq!(b.len(), INPUT_BLOCK, "len {len}");
            let first_line = b.split(|&c| c == b'\n').next().unwrap_or_default();
            assert!(first_line.len() < 4095);
            assert!(!b.iter().any(|&c| c < 0x20 && c != b'\n'));
        }
    }

    #[test]
    fn env_names() {
        assert!(is_env_name("AWS_REGION"));
        assert!(is_env_name("_x1"));
        assert!(!is_env_name("1x"));
        assert!(!is_env_name("A-B"));
        assert!(!is_env_name(""));
    }
}

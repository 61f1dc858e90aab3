//! What a data-channel session does: the program behind it ([`SessionMode`]), the
//! handshake the agent side starts ([`HandshakeMode`]), injected faults
//! ([`FaultSpec`]) and framing knobs, all gathered in [`SessionOptions`].
//!
//! Every type has a string form for command lines (`FromStr` / `Display`):
//!
//! | type | examples |
//! |---|---|
//! | [`SessionMode`] | `shell`, `echo`, `stream:1048576`, `stream:1048576:1024`, `port:2222`, `forward:8080` |
//! | [`HandshakeMode`] | `none`, `session-type`, `kms`, `kms:alias/my-key` |
//! | [`FaultSpec`] | `drop:in:5,dup:out:0.1,reorder:both:3,delay:out:0.2:150,cut:frames:40,seed:7` |

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use ssm_channel::version::{MULTIPLEX_AFTER, TERMINATE_FLAG_AFTER, agent_version_after};

/// Default largest output payload per message: the agent's `StreamDataPayloadSize`.
pub const DEFAULT_CHUNK_SIZE: usize = 1024;

/// Default key id announced in a KMS handshake.
pub const DEFAULT_KMS_KEY_ID: &str = "alias/cloudshell-emulator";

/// Default delay of the `delay` fault.
pub const DEFAULT_FAULT_DELAY: Duration = Duration::from_millis(200);

/// A string form that could not be parsed. Carries the offending text (these
/// strings never hold secrets).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OptionsParseError {
    /// Unknown session mode, or bad numbers in `stream:…`, `port:…` or
    /// `forward:…`.
    #[error(
        "invalid session mode {0:?}: expected `shell`, `echo`, `stream:TOTAL_BYTES[:CHUNK_SIZE]`, `port:PORT`, `forward:PORT`, `forward-basic:PORT` or `command:COMMAND`"
    )]
    Mode(String),
    /// Unknown handshake mode.
    #[error("invalid handshake mode {0:?}: expected `none`, `session-type` or `kms[:KEY_ID]`")]
    Handshake(String),
    /// One rule of a fault list could not be parsed.
    #[error("invalid fault rule {rule:?}: {reason}")]
    Fault {
        /// The rule as written.
        rule: String,
        /// What is wrong with it.
        reason: &'static str,
    },
}

/// The program behind a session.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum SessionMode {
    /// A login shell (`bash -l`, else `sh -l`) on a pty, with the environment's
    /// persistent home directory.
    #[default]
    Shell,
    /// Input comes straight back as output; no process. Since it prints nothing
    /// before its first input, an echo session always starts with a `SessionType`
    /// handshake (with [`HandshakeMode::None`]) so the client learns the session type.
    Echo,
    /// `total_bytes` of output (see [`stream_pattern`](crate::gateway::stream_pattern))
    /// as fast as acknowledgements allow, in messages of at most `chunk_size`
    /// bytes, then `channel_closed`.
    Stream {
        /// Bytes to send in all.
        total_bytes: u64,
        /// Largest payload per output message (`None`: the session's chunk size).
        chunk_size: Option<usize>,
    },
    /// A port session as `AWS-StartSSHSession` makes one (an SSH
    /// `ProxyCommand`): the handshake announces `SessionType` `Port` with
    /// `{"portNumber": "PORT"}`, and the agent relays the session's bytes to
    /// and from `127.0.0.1:PORT`. The session ends when that connection
    /// closes, or at the client's `TerminateSession` flag.
    Port {
        /// The TCP port on 127.0.0.1 the agent connects to.
        port: u16,
    },
    /// A port-forwarding session as `AWS-StartPortForwardingSession` makes
    /// one, with smux multiplexing (the emulated agent version tells clients
    /// to use it): the handshake announces `SessionType` `Port` with
    /// `{"portNumber": "PORT", "type": "LocalPortForwarding",
    /// "localPortNumber": "0"}`, and the agent, as the smux server, relays
    /// each smux stream the client opens to a new TCP connection to
    /// `127.0.0.1:PORT`. A stream whose connection fails gets the
    /// `ConnectToPortError` flag (3) and a `FIN`. The session lives until the
    /// client's `TerminateSession` flag (or until the client goes away), not
    /// until one connection closes.
    Forward {
        /// The TCP port on 127.0.0.1 each stream is connected to.
        port: u16,
    },
    /// A port-forwarding session as `AWS-StartPortForwardingSession` makes
    /// one with an agent up to 3.0.196.0, which does not multiplex (the
    /// emulated agent reports version 3.0.196.0): the same handshake as
    /// [`SessionMode::Forward`], and the session's bytes are relayed to and
    /// from one connection to `127.0.0.1:PORT` at a time. The client's
    /// `DisconnectToPort` flag (1) closes that connection; the next input
    /// opens a new one.
    ForwardBasic {
        /// The TCP port on 127.0.0.1 the agent connects to.
        port: u16,
    },
    /// A command as `AWS-StartNonInteractiveCommand` runs one, with separate
    /// output streams: the handshake announces `SessionType`
    /// `NonInteractiveCommands` with `{"commands": COMMAND,
    /// "separateOutputStream": true}`, the agent runs `sh -c COMMAND` with no
    /// terminal and no input, sends its stdout as output (payload type 1) and
    /// its stderr as `StdErr` (11) as they come, then `EXIT_CODE: n` (12), then
    /// `channel_closed`.
    Command {
        /// The command line, run by `sh -c`.
        command: String,
    },
}

impl fmt::Display for SessionMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SessionMode::Shell => f.write_str("shell"),
            SessionMode::Echo => f.write_str("echo"),
            SessionMode::Port { port } => write!(f, "port:{port}"),
            SessionMode::Forward { port } => write!(f, "forward:{port}"),
            SessionMode::ForwardBasic { port } => write!(f, "forward-basic:{port}"),
            SessionMode::Command { command } => write!(f, "command:{command}"),
            SessionMode::Stream {
                total_bytes,
                chunk_size: None,
            } => write!(f, "stream:{total_bytes}"),
            SessionMode::Stream {
                total_bytes,
                chunk_size: Some(c),
            } => write!(f, "stream:{total_bytes}:{c}"),
        }
    }
}

impl FromStr for SessionMode {
    type Err = OptionsParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || OptionsParseError::Mode(s.to_string());
        let t = s.trim();
        match t.to_ascii_lowercase().as_str() {
            "shell" => return Ok(SessionMode::Shell),
            "echo" => return Ok(SessionMode::Echo),
            _ => {}
        }
        if let Some((kind, command)) = t.split_once(':')
            && kind.eq_ignore_ascii_case("command")
        {
            return match command.trim() {
                "" => Err(err()),
                c => Ok(SessionMode::Command {
                    command: c.to_string(),
                }),
            };
        }
        if let Some((kind, port)) = t.split_once(':') {
            let port = || match port.trim().parse::<u16>() {
                Ok(port) if port > 0 => Ok(port),
                _ => Err(err()),
            };
            if kind.eq_ignore_ascii_case("port") {
                return port().map(|port| SessionMode::Port { port });
            }
            if kind.eq_ignore_ascii_case("forward") {
                return port().map(|port| SessionMode::Forward { port });
            }
            if kind.eq_ignore_ascii_case("forward-basic") {
                return port().map(|port| SessionMode::ForwardBasic { port });
            }
        }
        let mut parts = t.split(':');
        if !parts
            .next()
            .is_some_and(|p| p.eq_ignore_ascii_case("stream"))
        {
            return Err(err());
        }
        let total_bytes = parts
            .next()
            .and_then(|p| p.trim().parse::<u64>().ok())
            .ok_or_else(err)?;
        let chunk_size = match parts.next() {
            None => None,
            Some(p) => match p.trim().parse::<usize>() {
                Ok(c) if c > 0 => Some(c),
                _ => return Err(err()),
            },
        };
        if parts.next().is_some() {
            return Err(err());
        }
        Ok(SessionMode::Stream {
            total_bytes,
            chunk_size,
        })
    }
}

/// The handshake the agent side starts after the open frame.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum HandshakeMode {
    /// No handshake: output starts at once (a `Standard_Stream` shell without KMS,
    /// like the real agent).
    #[default]
    None,
    /// A HandshakeRequest with only the `SessionType` action (`Standard_Stream`).
    SessionType,
    /// A HandshakeRequest whose `SessionType` is `Port` (port forwarding), for
    /// testing clients against a session type they may not support; the
    /// session's program runs as usual.
    Port,
    /// A HandshakeRequest with `SessionType` and `KMSEncryption`: the client asks the
    /// emulator's fake KMS for a data key, the agent side checks the challenge and
    /// then encrypts output.
    Kms {
        /// Key id announced in the `KMSEncryption` action.
        key_id: String,
    },
}

impl fmt::Display for HandshakeMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HandshakeMode::None => f.write_str("none"),
            HandshakeMode::SessionType => f.write_str("session-type"),
            HandshakeMode::Port => f.write_str("port"),
            HandshakeMode::Kms { key_id } => write!(f, "kms:{key_id}"),
        }
    }
}

impl FromStr for HandshakeMode {
    type Err = OptionsParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        let lower = t.to_ascii_lowercase();
        match lower.as_str() {
            "none" => Ok(HandshakeMode::None),
            "session-type" | "sessiontype" => Ok(HandshakeMode::SessionType),
            "port" => Ok(HandshakeMode::Port),
            "kms" => Ok(HandshakeMode::Kms {
                key_id: DEFAULT_KMS_KEY_ID.to_string(),
            }),
            _ if lower.starts_with("kms:") && t.len() > 4 => Ok(HandshakeMode::Kms {
                key_id: t[4..].to_string(),
            }),
            _ => Err(OptionsParseError::Handshake(s.to_string())),
        }
    }
}

/// Which way a frame travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Client → gateway (`in`).
    In,
    /// Gateway → client (`out`).
    Out,
}

/// The directions a fault rule applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Directions {
    /// Client → gateway only (`in`).
    In,
    /// Gateway → client only (`out`).
    Out,
    /// Both (`both`).
    Both,
}

impl Directions {
    /// Whether `dir` is covered.
    pub fn contains(self, dir: Direction) -> bool {
        matches!(
            (self, dir),
            (Directions::Both, _)
                | (Directions::In, Direction::In)
                | (Directions::Out, Direction::Out)
        )
    }
}

impl fmt::Display for Directions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Directions::In => "in",
            Directions::Out => "out",
            Directions::Both => "both",
        })
    }
}

/// Which frames a fault rule hits.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Selector {
    /// The Nth binary frame in the rule's direction (1-based, counted over the
    /// session's lifetime, reconnects included). Hits once.
    Nth(u64),
    /// Each frame independently with this probability (seeded RNG).
    Fraction(f64),
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Selector::Nth(n) => write!(f, "{n}"),
            Selector::Fraction(p) => {
                let s = format!("{p}");
                if s.contains('.') {
                    f.write_str(&s)
                } else {
                    write!(f, "{s}.0")
                }
            }
        }
    }
}

/// What happens to a selected frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultAction {
    /// The frame is lost.
    Drop,
    /// The frame is delivered twice.
    Duplicate,
    /// The frame is held back and delivered after the next frame in the same
    /// direction (or after 300 ms if none comes).
    Reorder,
    /// The frame is delivered late.
    Delay(Duration),
}

/// One frame-level fault rule.
#[derive(Debug, Clone, PartialEq)]
pub struct FrameFault {
    /// What to do.
    pub action: FaultAction,
    /// Which way.
    pub directions: Directions,
    /// Which frames.
    pub selector: Selector,
}

/// When to cut the WebSocket (once per session; the client may reconnect).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CutRule {
    /// After this many binary frames, both directions counted.
    Frames(u64),
    /// After this many bytes of binary frames, both directions counted.
    Bytes(u64),
    /// Right after the Nth message from the client that is not an
    /// acknowledgement (input, resize, ...) was taken in, before anything is
    /// answered: its acknowledgement is lost with the connection.
    Input(u64),
}

/// A set of faults to inject into a session's WebSocket traffic. Only binary
/// frames are affected (never the open-data-channel text frame).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct FaultSpec {
    /// Frame-level rules, applied in order; the first rule that selects a frame wins.
    pub frames: Vec<FrameFault>,
    /// Cut the connection once.
    pub cut: Option<CutRule>,
    /// Seed of the RNG behind fractional selectors (`None`: 0).
    pub seed: Option<u64>,
}

impl FaultSpec {
    /// No faults.
    pub fn none() -> Self {
        Self::default()
    }

    /// Whether nothing would ever be injected.
    pub fn is_empty(&self) -> bool {
        self.frames.is_empty() && self.cut.is_none()
    }
}

impl fmt::Display for FaultSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        let mut sep = |f: &mut fmt::Formatter<'_>| -> fmt::Result {
            if !std::mem::take(&mut first) {
                f.write_str(",")?;
            }
            Ok(())
        };
        for r in &self.frames {
            sep(f)?;
            match r.action {
                FaultAction::Drop => write!(f, "drop:{}:{}", r.directions, r.selector)?,
                FaultAction::Duplicate => write!(f, "dup:{}:{}", r.directions, r.selector)?,
                FaultAction::Reorder => write!(f, "reorder:{}:{}", r.directions, r.selector)?,
                FaultAction::Delay(d) => {
                    write!(f, "delay:{}:{}:{}", r.directions, r.selector, d.as_millis())?
                }
            }
        }
        if let Some(c) = self.cut {
            sep(f)?;
            match c {
                CutRule::Frames(n) => write!(f, "cut:frames:{n}")?,
                CutRule::Bytes(n) => write!(f, "cut:bytes:{n}")?,
                CutRule::Input(n) => write!(f, "cut:input:{n}")?,
            }
        }
        if let Some(s) = self.seed {
            sep(f)?;
            write!(f, "seed:{s}")?;
        }
        if first {
            f.write_str("none")?;
        }
        Ok(())
    }
}

impl FromStr for FaultSpec {
    type Err = OptionsParseError;

    /// Comma-separated rules:
    ///
    /// - `drop|dup|reorder:DIR:SEL` and `delay:DIR:SEL[:MILLIS]` (default 200 ms),
    ///   where `DIR` is `in`, `out` or `both` and `SEL` is either a whole number N
    ///   (the Nth frame, 1-based) or a fraction with a decimal point (`0.1` = each
    ///   frame with probability 10 %);
    /// - `cut:frames:N` or `cut:bytes:N` (both directions counted), or `cut:input:N`
    ///   (right after the Nth non-acknowledgement message from the client, whose
    ///   acknowledgement is lost);
    /// - `seed:N`;
    /// - `none` or an empty string: no faults.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut spec = FaultSpec::default();
        for raw in s.split(',') {
            let rule = raw.trim();
            if rule.is_empty() || rule.eq_ignore_ascii_case("none") {
                continue;
            }
            let bad = |reason: &'static str| OptionsParseError::Fault {
                rule: rule.to_string(),
                reason,
            };
            let parts: Vec<&str> = rule.split(':').map(str::trim).collect();
            let kind = parts[0].to_ascii_lowercase();
            match kind.as_str() {
                "seed" => {
                    let [_, n] = parts[..] else {
                        return Err(bad("expected seed:N"));
                    };
                    spec.seed = Some(n.parse().map_err(|_| bad("seed must be a whole number"))?);
                }
                "cut" => {
                    let [_, unit, n] = parts[..] else {
                        return Err(bad("expected cut:frames:N, cut:bytes:N or cut:input:N"));
                    };
                    let n: u64 = n.parse().map_err(|_| bad("N must be a whole number"))?;
                    if spec.cut.is_some() {
                        return Err(bad("only one cut rule is allowed"));
                    }
                    spec.cut = Some(match unit.to_ascii_lowercase().as_str() {
                        "frames" | "frame" => CutRule::Frames(n),
                        "bytes" | "byte" => CutRule::Bytes(n),
                        "input" => CutRule::Input(n),
                        _ => return Err(bad("unit must be `frames`, `bytes` or `input`")),
                    });
                }
                "drop" | "dup" | "duplicate" | "reorder" | "delay" => {
                    let (dir, sel, extra) = match parts[..] {
                        [_, d, s] => (d, s, None),
                        [_, d, s, e] if kind == "delay" => (d, s, Some(e)),
                        _ => return Err(bad("expected ACTION:DIR:SEL (delay: DIR:SEL[:MILLIS])")),
                    };
                    let directions = match dir.to_ascii_lowercase().as_str() {
                        "in" => Directions::In,
                        "out" => Directions::Out,
                        "both" => Directions::Both,
                        _ => return Err(bad("direction must be `in`, `out` or `both`")),
                    };
                    let selector = if sel.contains('.') {
                        match sel.parse::<f64>() {
                            Ok(p) if (0.0..=1.0).contains(&p) => Selector::Fraction(p),
                            _ => return Err(bad("a fraction must lie between 0.0 and 1.0")),
                        }
                    } else {
                        match sel.parse::<u64>() {
                            Ok(n) if n >= 1 => Selector::Nth(n),
                            _ => {
                                return Err(bad(
                                    "selector must be N >= 1 or a fraction such as 0.1",
                                ));
                            }
                        }
                    };
                    let action = match kind.as_str() {
                        "drop" => FaultAction::Drop,
                        "dup" | "duplicate" => FaultAction::Duplicate,
                        "reorder" => FaultAction::Reorder,
                        _ => FaultAction::Delay(match extra {
                            None => DEFAULT_FAULT_DELAY,
                            Some(ms) => Duration::from_millis(
                                ms.parse()
                                    .map_err(|_| bad("MILLIS must be a whole number"))?,
                            ),
                        }),
                    };
                    spec.frames.push(FrameFault {
                        action,
                        directions,
                        selector,
                    });
                }
                _ => {
                    return Err(bad(
                        "unknown fault: expected drop, dup, reorder, delay, cut or seed",
                    ));
                }
            }
        }
        Ok(spec)
    }
}

/// Everything that shapes one data-channel session.
///
/// Build with struct-update syntax:
/// `SessionOptions { mode: SessionMode::Echo, ..SessionOptions::default() }`.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionOptions {
    /// The program behind the session.
    pub mode: SessionMode,
    /// The handshake started by the agent side.
    pub handshake: HandshakeMode,
    /// Faults injected into the WebSocket traffic.
    pub faults: FaultSpec,
    /// Largest output payload per message (default 1024, like the agent).
    pub chunk_size: usize,
    /// WebSocket ping period of the agent side (default 54 s; `None`: no pings).
    pub ping_interval: Option<Duration>,
    /// The agent version sessions report in their handshake (`None`: the
    /// mode's own, see [`SessionOptions::agent_version`]).
    pub agent_version: Option<String>,
}

impl Default for SessionOptions {
    fn default() -> Self {
        Self {
            mode: SessionMode::default(),
            handshake: HandshakeMode::default(),
            faults: FaultSpec::default(),
            chunk_size: DEFAULT_CHUNK_SIZE,
            ping_interval: Some(Duration::from_secs(54)),
            agent_version: None,
        }
    }
}

impl SessionOptions {
    /// Builder-style: use this mode.
    pub fn with_mode(mut self, mode: SessionMode) -> Self {
        self.mode = mode;
        self
    }

    /// Builder-style: use this handshake.
    pub fn with_handshake(mut self, handshake: HandshakeMode) -> Self {
        self.handshake = handshake;
        self
    }

    /// Builder-style: inject these faults.
    pub fn with_faults(mut self, faults: FaultSpec) -> Self {
        self.faults = faults;
        self
    }

    /// Builder-style: largest output payload per message (at least 1).
    pub fn with_chunk_size(mut self, chunk_size: usize) -> Self {
        self.chunk_size = chunk_size.max(1);
        self
    }

    /// Builder-style: the agent version sessions report (see
    /// [`SessionOptions::check`] for the versions a mode accepts).
    pub fn with_agent_version(mut self, version: impl Into<String>) -> Self {
        self.agent_version = Some(version.into());
        self
    }

    /// The agent version sessions report: the one set, else 3.0.196.0 in
    /// `forward-basic` (the last agent that does not multiplex), else
    /// 3.3.1142.0. Sessions act as agents of that version do: up to 2.3.722.0,
    /// a port session ignores the client's `TerminateSession` flag.
    pub fn agent_version(&self) -> &str {
        match (&self.agent_version, &self.mode) {
            (Some(v), _) => v,
            (None, SessionMode::ForwardBasic { .. }) => {
                super::session::BASIC_FORWARDING_AGENT_VERSION
            }
            (None, _) => super::session::EMULATED_AGENT_VERSION,
        }
    }

    /// Whether sessions end at the client's `TerminateSession` flag (agents
    /// after 2.3.722.0, or a version that does not parse).
    pub fn takes_terminate_flag(&self) -> bool {
        agent_version_after(self.agent_version(), TERMINATE_FLAG_AFTER).unwrap_or(true)
    }

    /// Checks that the agent version agrees with the mode: `forward` needs an
    /// agent that multiplexes (after 3.0.196.0), `forward-basic` one that
    /// does not, as a client decides the forwarding mode from the version.
    pub fn check(&self) -> Result<(), String> {
        let multiplexes =
            agent_version_after(self.agent_version(), MULTIPLEX_AFTER).unwrap_or(true);
        match (&self.mode, multiplexes) {
            (SessionMode::Forward { .. }, false) => Err(format!(
                "agent version {} does not multiplex port forwarding (3.0.196.0 and earlier): use forward-basic:PORT",
                self.agent_version()
            )),
            (SessionMode::ForwardBasic { .. }, true) => Err(format!(
                "agent version {} multiplexes port forwarding (after 3.0.196.0): use forward:PORT",
                self.agent_version()
            )),
            _ => Ok(()),
        }
    }

    /// The chunk size output is cut into, taking `stream:…:CHUNK` into account.
    pub fn effective_chunk_size(&self) -> usize {
        match self.mode {
            SessionMode::Stream {
                chunk_size: Some(c),
                ..
            } => c.max(1),
            _ => self.chunk_size.max(1),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_parse_and_print() {
        assert_eq!("shell".parse::<SessionMode>(), Ok(SessionMode::Shell));
        assert_eq!(" Echo ".parse::<SessionMode>(), Ok(SessionMode::Echo));
        assert_eq!(
            "stream:1048576:1024".parse::<SessionMode>(),
            Ok(SessionMode::Stream {
                total_bytes: 1_048_576,
                chunk_size: Some(1024)
            })
        );
        assert_eq!(
            "stream:10".parse::<SessionMode>(),
            Ok(SessionMode::Stream {
                total_bytes: 10,
                chunk_size: None
            })
        );
        for bad in [
            "",
            "bash",
            "stream",
            "stream:x",
            "stream:1:0",
            "stream:1:2:3",
            "port:",
            "port:0",
            "port:65536",
            "port:x",
        ] {
            assert!(bad.parse::<SessionMode>().is_err(), "{bad}");
        }
        assert_eq!(
            "port:2222".parse::<SessionMode>(),
            Ok(SessionMode::Port { port: 2222 })
        );
        assert_eq!(
            " Forward:8080 ".parse::<SessionMode>(),
            Ok(SessionMode::Forward { port: 8080 })
        );
        assert_eq!(
            "Forward-Basic:8080".parse::<SessionMode>(),
            Ok(SessionMode::ForwardBasic { port: 8080 })
        );
        for s in [
            "shell",
            "echo",
            "stream:5",
            "stream:5:7",
            "port:22",
            "forward:22",
            "forward-basic:22",
            "command:echo a:b; exit 3",
        ] {
            assert_eq!(
                s.parse::<SessionMode>().map(|m| m.to_string()).as_deref(),
                Ok(s)
            );
        }
        assert_eq!(
            "Command: ls -l ".parse::<SessionMode>(),
            Ok(SessionMode::Command {
                command: "ls -l".into()
            })
        );
        assert!("command:".parse::<SessionMode>().is_err());
        assert!("command: ".parse::<SessionMode>().is_err());
    }

    #[test]
    fn bad_forward_modes_are_rejected_clearly() {
        for bad in [
            "forward",
            "forward:",
            "forward:0",
            "forward:x",
            "forward:65536",
            "forward:22:1",
            "forward-basic",
            "forward-basic:0",
            "forward_basic:22",
        ] {
            let e = bad.parse::<SessionMode>().expect_err(bad);
            assert_eq!(e, OptionsParseError::Mode(bad.to_string()));
            let msg = e.to_string();
            assert!(msg.contains(&format!("{bad:?}")), "{msg}");
            assert!(msg.contains("`forward:PORT`"), "{msg}");
            assert!(msg.contains("`forward-basic:PORT`"), "{msg}");
            assert!(msg.contains("`port:PORT`"), "{msg}");
        }
    }

    #[test]
    fn handshakes_parse() {
        assert_eq!("none".parse(), Ok(HandshakeMode::None));
        assert_eq!("session-type".parse(), Ok(HandshakeMode::SessionType));
        assert_eq!("port".parse(), Ok(HandshakeMode::Port));
        assert_eq!(HandshakeMode::Port.to_string(), "port");
        assert_eq!(
            "kms".parse(),
            Ok(HandshakeMode::Kms {
                key_id: DEFAULT_KMS_KEY_ID.into()
            })
        );
        assert_eq!(
            "kms:arn:aws:kms:us-east-1:111122223333:key/abc".parse(),
            Ok(HandshakeMode::Kms {
                key_id: "arn:aws:kms:us-east-1:111122223333:key/abc".into()
            })
        );
        assert!("kms:".parse::<HandshakeMode>().is_err());
        assert!("tls".parse::<HandshakeMode>().is_err());
    }

    #[test]
    fn faults_parse_and_round_trip() {
        let spec: FaultSpec =
            "drop:in:5,dup:out:0.1,reorder:both:3,delay:out:0.25:150,cut:frames:40,seed:7"
                .parse()
                .expect("parse");
        assert_eq!(spec.frames.len(), 4);
        assert_eq!(
            spec.frames[0],
            FrameFault {
                action: FaultAction::Drop,
                directions: Directions::In,
                selector: Selector::Nth(5)
            }
        );
        assert_eq!(spec.frames[1].selector, Selector::Fraction(0.1));
        assert_eq!(
            spec.frames[3].action,
            FaultAction::Delay(Duration::from_millis(150))
        );
        assert_eq!(spec.cut, Some(CutRule::Frames(40)));
        assert_eq!(spec.seed, Some(7));
        let again: FaultSpec = spec.to_string().parse().expect("reparse");
        assert_eq!(again, spec);
        assert_eq!("".parse::<FaultSpec>(), Ok(FaultSpec::default()));
        assert_eq!("none".parse::<FaultSpec>(), Ok(FaultSpec::default()));
        assert_eq!(FaultSpec::default().to_string(), "none");
        assert_eq!(
            "cut:bytes:100".parse::<FaultSpec>().map(|s| s.cut),
            Ok(Some(CutRule::Bytes(100)))
        );
        assert_eq!(
            "cut:input:7".parse::<FaultSpec>().map(|s| s.cut),
            Ok(Some(CutRule::Input(7)))
        );
        assert_eq!(
            "cut:input:7".parse::<FaultSpec>().map(|s| s.to_string()),
            Ok("cut:input:7".to_string())
        );
        assert_eq!(
            "cut:bytes:100".parse::<FaultSpec>().map(|s| s.cut),
            Ok(Some(CutRule::Bytes(100)))
        );
    }

    #[test]
    fn bad_faults_are_rejected_with_reason() {
        for bad in [
            "drop",
            "drop:up:1",
            "drop:in:0",
            "drop:in:1.5",
            "drop:in:x",
            "dup:in:1:2",
            "cut:frames",
            "cut:lines:3",
            "cut:frames:1,cut:bytes:2",
            "seed:x",
            "explode:in:1",
            "delay:in:1:soon",
        ] {
            let e = bad.parse::<FaultSpec>().expect_err(bad);
            assert!(matches!(e, OptionsParseError::Fault { .. }), "{bad}: {e}");
        }
    }
}

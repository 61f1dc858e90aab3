//! A [`TerminalLink`] to a local interactive bash on a pty: the same kind of
//! terminal a CloudShell session gives, without the data channel.

use bytes::Bytes;
use cloudshell_rs::exec::TerminalLink;
use std::path::Path;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

/// Every byte the link delivered to the client (a tap for secrecy checks).
pub type Tap = Arc<Mutex<Vec<u8>>>;

/// A local login-less interactive bash on a fresh pty, HOME set to `home`.
pub struct LocalShell {
    pub link: Option<TerminalLink>,
    pub tap: Tap,
    pub _child: tokio::process::Child,
}

pub fn spawn_local_shell(home: &Path, tap_enabled: bool) -> LocalShell {
    let (pty, pts) = pty_process::open().expect("open pty");
    pty.resize(pty_process::Size::new(40, 120)).expect("resize");
    let cmd = pty_process::Command::new("bash")
        .args(["--noprofile", "--norc", "-i"])
        .env_clear()
        .env("HOME", home)
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("TERM", "xterm-256color")
        .env("LANG", "C.UTF-8")
        .env("HISTFILE", home.join(".bash_history"))
        .env("PS1", "[test]$ ")
        .current_dir(home)
        .kill_on_drop(true);
    let cmd = cloudshell_emulator::default_signals(cmd);
    let child = cmd.spawn(pts).expect("spawn bash");
    let (mut rd, mut wr) = pty.into_split();
    let (in_tx, mut in_rx) = mpsc::channel::<Bytes>(64);
    let (out_tx, out_rx) = mpsc::channel::<Bytes>(64);
    let tap: Tap = Arc::default();
    let tap2 = tap.clone();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 16384];
        loop {
            match rd.read(&mut buf).await {
                Ok(0) => break,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                // EIO: every holder of the terminal has gone (the shell ended).
                Err(e) if e.raw_os_error() == Some(libc::EIO) => break,
                Err(e) => {
                    eprintln!("local shell: reading its terminal failed: {e}");
                    break;
                }
                Ok(n) => {
                    if tap_enabled {
                        tap2.lock().unwrap().extend_from_slice(&buf[..n]);
                    }
                    if out_tx
                        .send(Bytes::copy_from_slice(&buf[..n]))
                        .await
                        .is_err()
                    {
                        break;
                    }
                }
            }
        }
    });
    tokio::spawn(async move {
        while let Some(b) = in_rx.recv().await {
            if wr.write_all(&b).await.is_err() {
                break;
            }
        }
    });
    LocalShell {
        link: Some(TerminalLink {
            input: in_tx,
            output: out_rx,
        }),
        tap,
        _child: child,
    }
}

/// An emulator on 127.0.0.1:0 with its state in a temporary directory, a
/// client for it (static credentials, explicit region) and its default
/// environment, RUNNING.
pub struct Emu {
    pub emulator: cloudshell_emulator::EmulatorHandle,
    pub client: cloudshell_rs::Client,
    pub env: String,
    pub _state: tempfile::TempDir,
    pub _log: crate::support::log_capture::LogCapture,
}

pub async fn start_emulator() -> Emu {
    let e = crate::session_support::start_config(|c| c).await;
    Emu {
        emulator: e.emulator,
        client: e.client,
        env: e.env_id,
        _state: e._dir,
        _log: e._log,
    }
}

/// The emulator with every shell inside tmux, as on CloudShell: the client
/// gets tmux's rendering of the terminal (cursor movements, scrolling, a
/// status line, output dropped and the screen redrawn when it falls behind).
pub async fn start_emulator_in_tmux() -> Emu {
    let tmux = std::process::Command::new("tmux").arg("-V").output();
    assert!(
        tmux.is_ok_and(|o| o.status.success()),
        "these tests need tmux on the PATH (Debian: apt-get install tmux)"
    );
    let emu = start_emulator().await;
    let mut config = emu.emulator.gateway().config();
    config.tmux = true;
    emu.emulator.gateway().set_config(config);
    emu
}

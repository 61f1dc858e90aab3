//! The debug log of the library, the protocol crate and the emulator, kept
//! for the test that runs on this thread and printed only if it fails.
//!
//! Tests on a current-thread runtime (`#[tokio::test]`) run the emulator and
//! the client on their own thread, so the log holds the whole story of a
//! failed run: sessions opened, channels closed and why, connections lost.

use std::io::Write;
use std::sync::{Arc, Mutex};

/// Captures this thread's events until dropped; prints them if the thread
/// is panicking then.
pub struct LogCapture {
    buf: Arc<Mutex<Vec<u8>>>,
    _guard: Option<tracing::subscriber::DefaultGuard>,
}

#[derive(Clone)]
struct SharedBuf(Arc<Mutex<Vec<u8>>>);

impl Write for SharedBuf {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Starts capturing (debug level for this project's crates, warnings for
/// the rest), unless the test has set a subscriber of its own.
pub fn capture() -> LogCapture {
    let buf: Arc<Mutex<Vec<u8>>> = Arc::default();
    let own = tracing::dispatcher::get_default(|d| !d.is::<tracing::subscriber::NoSubscriber>());
    if own {
        return LogCapture { buf, _guard: None };
    }
    let writer = SharedBuf(buf.clone());
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(
            "warn,cloudshell_rs=debug,cloudshell_emulator=debug,ssm_channel=debug",
        ))
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    LogCapture {
        buf,
        _guard: Some(tracing::subscriber::set_default(subscriber)),
    }
}

impl Drop for LogCapture {
    fn drop(&mut self) {
        if self._guard.is_some() && std::thread::panicking() {
            let log = self
                .buf
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            eprintln!(
                "---- debug log of the failed test ----\n{}---- end of the debug log ----",
                String::from_utf8_lossy(&log)
            );
        }
    }
}

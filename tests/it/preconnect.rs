//! `session::preconnect`: the data channel's connection opened ahead of the
//! session, and taken by the session whose stream URL names its address.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use cloudshell_rs::exec::{self, ExecOptions};
use cloudshell_rs::session::{Session, SessionOptions, SessionTarget, preconnect};
use tokio::sync::Notify;

use crate::session_support::*;

/// A TCP relay on 127.0.0.1:0 to the emulator's listener that counts the
/// connections it accepts; with `close_first`, it closes the first one at
/// once (a server that dropped an idle connection).
struct Relay {
    port: u16,
    accepted: Arc<AtomicUsize>,
    changed: Arc<Notify>,
}

impl Relay {
    async fn start(backend: std::net::SocketAddr, close_first: bool) -> Relay {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        Relay::on(listener, backend, close_first)
    }

    fn on(
        listener: tokio::net::TcpListener,
        backend: std::net::SocketAddr,
        close_first: bool,
    ) -> Relay {
        let port = listener.local_addr().unwrap().port();
        let accepted = Arc::new(AtomicUsize::new(0));
        let changed = Arc::new(Notify::new());
        let (count, notify) = (accepted.clone(), changed.clone());
        tokio::spawn(async move {
            while let Ok((mut tcp, _)) = listener.accept().await {
                let n = count.fetch_add(1, Ordering::SeqCst);
                notify.notify_waiters();
                if close_first && n == 0 {
                    drop(tcp);
                    continue;
                }
                tokio::spawn(async move {
                    let Ok(mut up) = tokio::net::TcpStream::connect(backend).await else {
                        return;
                    };
                    let _ = tokio::io::copy_bidirectional(&mut tcp, &mut up).await;
                });
            }
        });
        Relay {
            port,
            accepted,
            changed,
        }
    }

    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    /// Waits until `n` connections were accepted.
    async fn until_accepted(&self, n: usize) {
        loop {
            let changed = self.changed.notified();
            if self.accepted() >= n {
                return;
            }
            changed.await;
        }
    }

    fn url(&self) -> String {
        format!("ws://127.0.0.1:{}", self.port)
    }
}

/// The emulator's listener: its REST endpoint and its gateway.
fn gateway(env: &Env) -> std::net::SocketAddr {
    env.emulator
        .endpoint()
        .strip_prefix("http://")
        .unwrap()
        .parse()
        .unwrap()
}

/// `target` with its stream URL moved to `base` (same path).
fn through(target: &SessionTarget, base: &str) -> SessionTarget {
    let rest = target.stream_url.strip_prefix("ws://").unwrap();
    let mut t = target.clone();
    t.stream_url = format!("{base}{}", &rest[rest.find('/').unwrap()..]);
    t
}

fn options_for(gateway: &str) -> SessionOptions {
    let mut options = local_options();
    options.gateway = Some(gateway.to_string());
    options
}

/// A relay before the emulator's gateway (closing its first connection
/// with `close_first`) and options naming it as the gateway, with a
/// connection opened ahead and accepted by the relay.
async fn preconnected(env: &Env, close_first: bool) -> (Relay, SessionOptions) {
    let relay = Relay::start(gateway(env), close_first).await;
    let options = options_for(&relay.url());
    preconnect(&options);
    relay.until_accepted(1).await;
    (relay, options)
}

async fn works(mut s: Session) {
    s.send_input(b"echo pre-$((6*7))\r").await.unwrap();
    read_until(&mut s, "pre-42").await;
    s.close().await.unwrap();
}

/// The session takes the connection opened ahead of it: one connection in
/// all, made before CreateSession.
#[tokio::test]
async fn the_session_uses_the_preconnected_stream() {
    let env = start().await;
    within(60, async {
        let (relay, options) = preconnected(&env, false).await;
        let target = through(&env.create(&new_tab()).await, &relay.url());
        works(Session::connect(target, options).await.unwrap()).await;
        assert_eq!(relay.accepted(), 1);
    })
    .await;
}

/// A preconnected stream the server has closed meanwhile is given up for a
/// new connection: the session works, nothing is reported.
#[tokio::test]
async fn a_closed_preconnected_stream_is_replaced() {
    let env = start().await;
    within(60, async {
        let (relay, options) = preconnected(&env, true).await;
        let target = through(&env.create(&new_tab()).await, &relay.url());
        works(Session::connect(target, options).await.unwrap()).await;
        assert_eq!(relay.accepted(), 2);
    })
    .await;
}

/// A connection opened to another address is never used for the session:
/// the session reaches the host its stream URL names.
#[tokio::test]
async fn a_stream_to_another_address_is_not_used() {
    let env = start().await;
    within(60, async {
        let (elsewhere, options) = preconnected(&env, false).await;
        let named = Relay::start(gateway(&env), false).await;
        let target = through(&env.create(&new_tab()).await, &named.url());
        works(Session::connect(target, options).await.unwrap()).await;
        assert_eq!((elsewhere.accepted(), named.accepted()), (1, 1));
    })
    .await;
}

/// A gateway that answers the upgrade with an HTTP error has answered: the
/// error is reported, and no second connection asks again.
#[tokio::test]
async fn an_http_answer_on_the_preconnected_stream_is_final() {
    let env = start().await;
    within(60, async {
        let (relay, options) = preconnected(&env, false).await;
        let mut target = env.create(&new_tab()).await;
        target.stream_url = format!("{}/no/such/path", relay.url());
        let err = Session::connect(target, options).await.err().unwrap();
        assert!(
            cloudshell_rs::error_chain(&err).contains("HTTP error: 403"),
            "{}",
            cloudshell_rs::error_chain(&err)
        );
        assert_eq!(relay.accepted(), 1);
    })
    .await;
}

/// `exec` opens the connection to the gateway its options name before its
/// API calls (here another relay than the one the stream URL names, so that
/// the two are told apart), and its session runs through the stream URL.
#[tokio::test]
async fn exec_opens_the_gateway_connection_ahead() {
    let named = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("ws://{}", named.local_addr().unwrap());
    let env = start_config(|mut c| {
        c.stream_base = Some(base);
        c
    })
    .await;
    within(60, async {
        let named = Relay::on(named, gateway(&env), false);
        let ahead = Relay::start(gateway(&env), false).await;
        let options = options_for(&ahead.url());
        let out = exec::run(
            &env.client,
            &env.env_id,
            &["echo", "ran"],
            ExecOptions::new().session_options(options),
        )
        .await
        .unwrap();
        assert_eq!(out.stdout, b"ran\n");
        assert_eq!(named.accepted(), 1);
        ahead.until_accepted(1).await;
    })
    .await;
}

//! An HTTP `CONNECT` proxy on 127.0.0.1:0 for the proxy tests: it records
//! each request's target and `Proxy-Authorization`, checks credentials when
//! told to, and relays bytes. It only ever dials loopback.
#![allow(dead_code)]

use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// What the proxy does with a `CONNECT`.
#[derive(Clone)]
pub enum Policy {
    /// Opens every tunnel.
    Open,
    /// Opens tunnels for requests with this `Proxy-Authorization` value; 407 otherwise.
    Basic(String),
    /// Answers 403 to everything.
    Refuse,
}

/// One `CONNECT` the proxy received.
#[derive(Clone, Debug, PartialEq)]
pub struct Connect {
    pub target: String,
    pub auth: Option<String>,
}

pub struct TestProxy {
    pub port: u16,
    log: Arc<Mutex<Vec<Connect>>>,
}

impl TestProxy {
    pub async fn start(policy: Policy) -> TestProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let log = Arc::new(Mutex::new(Vec::new()));
        let record = Arc::clone(&log);
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let policy = policy.clone();
                let record = Arc::clone(&record);
                tokio::spawn(async move {
                    let _ = serve(tcp, policy, record).await;
                });
            }
        });
        TestProxy { port, log }
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The `CONNECT` requests so far.
    pub fn connects(&self) -> Vec<Connect> {
        self.log.lock().unwrap().clone()
    }

    /// Their targets.
    pub fn targets(&self) -> Vec<String> {
        self.connects().into_iter().map(|c| c.target).collect()
    }
}

async fn serve(
    tcp: TcpStream,
    policy: Policy,
    log: Arc<Mutex<Vec<Connect>>>,
) -> std::io::Result<()> {
    let mut client = BufReader::new(tcp);
    let mut request_line = String::new();
    client.read_line(&mut request_line).await?;
    let mut auth = None;
    loop {
        let mut line = String::new();
        if client.read_line(&mut line).await? == 0 || line == "\r\n" {
            break;
        }
        if let Some((name, value)) = line.split_once(':')
            && name.eq_ignore_ascii_case("proxy-authorization")
        {
            auth = Some(value.trim().to_string());
        }
    }
    let mut parts = request_line.split_whitespace();
    let (Some("CONNECT"), Some(target)) = (parts.next(), parts.next()) else {
        return client
            .write_all(b"HTTP/1.1 405 Method Not Allowed\r\n\r\n")
            .await;
    };
    log.lock().unwrap().push(Connect {
        target: target.to_string(),
        auth: auth.clone(),
    });
    match &policy {
        Policy::Refuse => {
            return client.write_all(b"HTTP/1.1 403 Forbidden\r\n\r\n").await;
        }
        Policy::Basic(expected) if auth.as_deref() != Some(expected.as_str()) => {
            return client
                .write_all(
                    b"HTTP/1.1 407 Proxy Authentication Required\r\n\
                      Proxy-Authenticate: Basic realm=\"test\"\r\n\r\n",
                )
                .await;
        }
        _ => {}
    }
    // Loopback only, whatever the client asked for.
    let port = target
        .rsplit_once(':')
        .and_then(|(_, p)| p.parse::<u16>().ok());
    let host = target.rsplit_once(':').map(|(h, _)| h);
    let (Some(port), Some("127.0.0.1" | "localhost")) = (port, host) else {
        return client.write_all(b"HTTP/1.1 403 Forbidden\r\n\r\n").await;
    };
    let mut upstream = TcpStream::connect(("127.0.0.1", port)).await?;
    client
        .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
        .await?;
    tokio::io::copy_bidirectional(&mut client, &mut upstream).await?;
    Ok(())
}

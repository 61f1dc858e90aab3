//! A scripted HTTP/1.1 server on 127.0.0.1:0 for wire-level client tests.
//!
//! Each request is answered with the next queued [`MockResponse`] (in arrival
//! order, across connections) and recorded (method, path, headers, body).
//! Connections are kept alive, so connection reuse is exercised too.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What the server does with one request.
#[derive(Debug, Clone)]
pub enum MockResponse {
    /// Answer with this status, headers and body.
    Reply {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    },
    /// Read the request and never answer (the connection stays open).
    Hang,
    /// Read the request and close the connection without answering.
    Close,
}

impl MockResponse {
    /// `status` with a JSON body and `content-type: application/json`.
    pub fn json(status: u16, body: &str) -> Self {
        MockResponse::Reply {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body: body.as_bytes().to_vec(),
        }
    }

    /// `status` with the given headers and raw body.
    pub fn raw(status: u16, headers: &[(&str, &str)], body: &[u8]) -> Self {
        MockResponse::Reply {
            status,
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            body: body.to_vec(),
        }
    }

    /// A service error in the observed shape (`{"code","message"}`) plus
    /// `x-amzn-ErrorType` and a request id.
    pub fn error(status: u16, code: &str, message: &str) -> Self {
        let body = serde_json::json!({ "code": code, "message": message }).to_string();
        MockResponse::raw(
            status,
            &[
                ("content-type", "application/json"),
                ("x-amzn-ErrorType", code),
                ("x-amzn-RequestId", "mock-request-id"),
            ],
            body.as_bytes(),
        )
    }
}

/// One request as the server saw it.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    pub method: String,
    pub path: String,
    /// Header names in lower case, in arrival order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RecordedRequest {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body parsed as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("request body is JSON")
    }
}

#[derive(Default)]
struct State {
    queue: VecDeque<MockResponse>,
    requests: Vec<RecordedRequest>,
    connections: usize,
}

/// The running server. Dropping it leaves the task running until the runtime ends.
#[derive(Clone)]
pub struct MockServer {
    addr: std::net::SocketAddr,
    state: Arc<Mutex<State>>,
}

impl MockServer {
    /// Binds 127.0.0.1:0 and starts serving.
    pub async fn start() -> MockServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let state = Arc::new(Mutex::new(State::default()));
        let st = state.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                st.lock().unwrap().connections += 1;
                tokio::spawn(serve(stream, st.clone()));
            }
        });
        MockServer { addr, state }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Queues the answer to the next unanswered request.
    pub fn push(&self, response: MockResponse) -> &Self {
        self.state.lock().unwrap().queue.push_back(response);
        self
    }

    /// Every request received so far.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.state.lock().unwrap().requests.clone()
    }

    /// How many TCP connections were accepted.
    pub fn connections(&self) -> usize {
        self.state.lock().unwrap().connections
    }

    /// How many queued responses were not used.
    pub fn unused(&self) -> usize {
        self.state.lock().unwrap().queue.len()
    }
}

async fn serve(mut stream: TcpStream, state: Arc<Mutex<State>>) {
    let mut buf: Vec<u8> = Vec::new();
    loop {
        let Some(request) = read_request(&mut stream, &mut buf).await else {
            return;
        };
        let action = {
            let mut st = state.lock().unwrap();
            st.requests.push(request);
            st.queue.pop_front()
        };
        match action {
            Some(MockResponse::Reply {
                status,
                headers,
                body,
            }) => {
                let mut head = format!(
                    "HTTP/1.1 {status} Mock\r\ncontent-length: {}\r\n",
                    body.len()
                );
                for (k, v) in headers {
                    head.push_str(&format!("{k}: {v}\r\n"));
                }
                head.push_str("\r\n");
                if stream.write_all(head.as_bytes()).await.is_err()
                    || stream.write_all(&body).await.is_err()
                {
                    return;
                }
            }
            Some(MockResponse::Hang) => {
                std::future::pending::<()>().await;
            }
            Some(MockResponse::Close) => return,
            None => {
                let body = br#"{"code":"MockQueueEmpty","message":"no scripted response left"}"#;
                let head = format!(
                    "HTTP/1.1 418 Mock\r\ncontent-length: {}\r\ncontent-type: application/json\r\n\r\n",
                    body.len()
                );
                let _ = stream.write_all(head.as_bytes()).await;
                let _ = stream.write_all(body).await;
            }
        }
    }
}

/// Reads one request (head + Content-Length body). `None` on EOF or garbage.
async fn read_request(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Option<RecordedRequest> {
    let head_end = loop {
        if let Some(pos) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break pos;
        }
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8(buf[..head_end].to_vec()).ok()?;
    let mut lines = head.split("\r\n");
    let mut request_line = lines.next()?.split(' ');
    let method = request_line.next()?.to_string();
    let path = request_line.next()?.to_string();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let len: usize = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let body_start = head_end + 4;
    while buf.len() < body_start + len {
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let body = buf[body_start..body_start + len].to_vec();
    buf.drain(..body_start + len);
    Some(RecordedRequest {
        method,
        path,
        headers,
        body,
    })
}

//! A scripted HTTP/1.1 server on 127.0.0.1 for behaviour the emulator cannot produce on
//! demand: every request gets a list of steps (write bytes, sleep, close) chosen by the
//! test from the request's index and content. One request per connection.

#![allow(dead_code, unreachable_pub)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// A request as the server received it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

/// What the server does with one connection after reading its request.
#[derive(Debug, Clone)]
pub enum Step {
    Write(Vec<u8>),
    Sleep(Duration),
    /// Keeps the connection open without writing, until the client goes away.
    Hold,
}

pub struct Server {
    pub addr: SocketAddr,
    requests: Arc<Mutex<Vec<Recorded>>>,
    /// Connections whose `Hold` ended because the client closed them.
    released: Arc<AtomicUsize>,
}

impl Server {
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
    pub fn requests(&self) -> Vec<Recorded> {
        self.requests.lock().unwrap().clone()
    }
    pub fn count(&self) -> usize {
        self.requests.lock().unwrap().len()
    }
    pub fn released(&self) -> usize {
        self.released.load(Ordering::SeqCst)
    }
}

pub async fn serve<F>(handler: F) -> Server
where
    F: Fn(usize, &Recorded) -> Vec<Step> + Send + Sync + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let requests: Arc<Mutex<Vec<Recorded>>> = Arc::default();
    let handler = Arc::new(handler);
    let recorded = requests.clone();
    let released: Arc<AtomicUsize> = Arc::default();
    let released_by_client = released.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            let handler = handler.clone();
            let recorded = recorded.clone();
            let released = released_by_client.clone();
            tokio::spawn(async move {
                let Some(req) = read_request(&mut sock).await else {
                    return;
                };
                let index = {
                    let mut r = recorded.lock().unwrap();
                    r.push(req.clone());
                    r.len() - 1
                };
                for step in handler(index, &req) {
                    match step {
                        Step::Write(bytes) => {
                            if sock.write_all(&bytes).await.is_err() {
                                return;
                            }
                            let _ = sock.flush().await;
                        }
                        Step::Sleep(d) => tokio::time::sleep(d).await,
                        Step::Hold => {
                            let mut buf = [0u8; 1024];
                            while matches!(sock.read(&mut buf).await, Ok(n) if n > 0) {}
                            released.fetch_add(1, Ordering::SeqCst);
                            return;
                        }
                    }
                }
                let _ = sock.shutdown().await;
            });
        }
    });
    Server {
        addr,
        requests,
        released,
    }
}

async fn read_request(sock: &mut tokio::net::TcpStream) -> Option<Recorded> {
    let mut buf = Vec::new();
    let mut tmp = [0u8; 4096];
    let head_end = loop {
        let n = sock.read(&mut tmp).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&tmp[..n]);
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let mut lines = head.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let method = first.next()?.to_owned();
    let path = first.next()?.to_owned();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let len: usize = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = buf[head_end..].to_vec();
    while body.len() < len {
        let n = sock.read(&mut tmp).await.ok()?;
        if n == 0 {
            break;
        }
        body.extend_from_slice(&tmp[..n]);
    }
    Some(Recorded {
        method,
        path,
        headers,
        body,
    })
}

/// A complete response with `content-length` and `connection: close`.
pub fn response(status: u16, headers: &[(&str, &str)], body: &[u8]) -> Step {
    let mut out = format!(
        "HTTP/1.1 {status} X\r\ncontent-length: {}\r\nconnection: close\r\n",
        body.len()
    );
    for (k, v) in headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str("\r\n");
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(body);
    Step::Write(bytes)
}

pub fn json(status: u16, body: &str) -> Step {
    response(
        status,
        &[("content-type", "application/json")],
        body.as_bytes(),
    )
}

/// The head of an event stream whose body ends when the connection closes.
pub fn sse_head() -> Step {
    Step::Write(
        b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\nconnection: close\r\n\r\n"
            .to_vec(),
    )
}

pub fn bytes(s: &str) -> Step {
    Step::Write(s.as_bytes().to_vec())
}

pub fn chunk_event(text: &str) -> String {
    format!(
        "data: {{\"id\":\"c-1\",\"object\":\"chat.completion.chunk\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":{}}},\"finish_reason\":null}}]}}\n\n",
        serde_json::to_string(text).unwrap()
    )
}

pub fn ready_event(phase: &str, message: &str) -> String {
    format!("data: {{\"phase\":\"{phase}\",\"message\":\"{message}\",\"elapsed_ms\":1}}\n\n")
}

pub fn sdk_token() -> String {
    format!("ik_sdk_0123abcd_{}", "a1".repeat(32))
}

pub fn live_key() -> String {
    format!("ik_live_5c07e1aa_{}", "b2".repeat(32))
}

/// Fast options for tests: short backoff is not configurable, so retries stay few.
pub fn options() -> inferencekey_core::ClientOptions {
    inferencekey_core::ClientOptions {
        timeout: Duration::from_secs(10),
        connect_timeout: Duration::from_secs(2),
        ..Default::default()
    }
}

pub fn mgmt(url: &str) -> inferencekey_core::ManagementClient {
    inferencekey_core::ManagementClient::builder()
        .base_url(url)
        .project("orbit")
        .sdk_token(sdk_token())
        .options(options())
        .build()
        .unwrap()
}

pub fn data(url: &str, opts: inferencekey_core::ClientOptions) -> inferencekey_core::DataClient {
    inferencekey_core::DataClient::builder()
        .base_url(url)
        .project("orbit")
        .api_key(live_key())
        .options(opts)
        .build()
        .unwrap()
}

/// A base URL on which nothing listens: any request would fail to connect.
pub fn closed_port_url() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    drop(l);
    format!("http://{addr}")
}

/// A forwarding proxy in front of `upstream` (one request per connection) that adds the
/// headers `extra` picks for each request; used to inject an emulator fault into some
/// requests only.
pub async fn proxy<F>(upstream: SocketAddr, extra: F) -> Server
where
    F: Fn(&Recorded) -> Vec<(String, String)> + Send + Sync + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let requests: Arc<Mutex<Vec<Recorded>>> = Arc::default();
    let recorded = requests.clone();
    let extra = Arc::new(extra);
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            let recorded = recorded.clone();
            let extra = extra.clone();
            tokio::spawn(async move {
                let Some(req) = read_request(&mut client).await else {
                    return;
                };
                recorded.lock().unwrap().push(req.clone());
                let mut head = format!("{} {} HTTP/1.1\r\n", req.method, req.path);
                for (k, v) in &req.headers {
                    if k != "connection" {
                        head.push_str(&format!("{k}: {v}\r\n"));
                    }
                }
                for (k, v) in extra(&req) {
                    head.push_str(&format!("{k}: {v}\r\n"));
                }
                head.push_str("connection: close\r\n\r\n");
                let Ok(mut up) = tokio::net::TcpStream::connect(upstream).await else {
                    return;
                };
                if up.write_all(head.as_bytes()).await.is_err()
                    || up.write_all(&req.body).await.is_err()
                {
                    return;
                }
                let _ = tokio::io::copy(&mut up, &mut client).await;
                let _ = client.shutdown().await;
            });
        }
    });
    Server {
        addr,
        requests,
        released: Arc::default(),
    }
}

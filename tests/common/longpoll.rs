//! A raw long-poll client: HTTP/1.1 requests over TCP, so tests see exactly the status, the
//! headers and the body the server wrote.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One HTTP answer.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Answer {
    /// A header's value (names compared case-insensitively).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

/// Sends one request and reads the whole answer (the connection is closed after it).
pub async fn request(
    addr: SocketAddr,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Answer {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let mut head = format!("{method} {target} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str(&format!("content-length: {}\r\n\r\n", body.len()));
    stream.write_all(head.as_bytes()).await.expect("write");
    stream.write_all(body).await.expect("write body");
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut raw))
        .await
        .expect("an answer within 30 s")
        .expect("read");
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .expect("a status line");
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    Answer {
        status,
        headers,
        body: body.to_owned(),
    }
}

/// A long-poll session as phoenix.js ≤ 1.8.16 drives it: the session token in the query.
pub struct Session {
    /// Where requests go (tests may move them between connectors).
    pub addr: SocketAddr,
    /// The user params before `vsn` (e.g. `token=<jwt>&`).
    pub params: String,
    pub token: String,
}

impl Session {
    /// Opens a session at `addr` with `params` (`""` or `token=<jwt>&...`).
    pub async fn open(addr: SocketAddr, params: &str) -> Self {
        let answer = request(
            addr,
            "GET",
            &format!("/socket/longpoll?{params}vsn=2.0.0"),
            &[],
            b"",
        )
        .await;
        let body = answer.json();
        assert_eq!(body["status"], 410, "a new session: {body}");
        Self {
            addr,
            params: params.to_owned(),
            token: body["token"].as_str().expect("a token").to_owned(),
        }
    }

    pub fn target(&self) -> String {
        format!(
            "/socket/longpoll?{}vsn=2.0.0&token={}",
            self.params, self.token
        )
    }

    /// One GET; its JSON body.
    pub async fn get(&self) -> Value {
        self.get_at(self.addr).await
    }

    /// One GET at another connector.
    pub async fn get_at(&self, addr: SocketAddr) -> Value {
        request(
            addr,
            "GET",
            &self.target(),
            &[("accept", "application/json")],
            b"",
        )
        .await
        .json()
    }

    /// One ndjson POST of `lines`; its JSON body.
    pub async fn post(&self, lines: &[String]) -> Value {
        self.post_at(self.addr, lines).await
    }

    /// One ndjson POST at another connector.
    pub async fn post_at(&self, addr: SocketAddr, lines: &[String]) -> Value {
        let body = lines.join("\n");
        let headers = [("content-type", "application/x-ndjson")];
        request(addr, "POST", &self.target(), &headers, body.as_bytes())
            .await
            .json()
    }

    /// Polls (at `addr`) until frames come; returns them parsed, checking each came as a
    /// JSON string.
    pub async fn frames_at(&self, addr: SocketAddr) -> Vec<Value> {
        for _ in 0..5 {
            let body = self.get_at(addr).await;
            match body["status"].as_u64() {
                Some(200) => return parse_messages(&body),
                Some(204) => continue,
                _ => panic!("unexpected poll answer {body}"),
            }
        }
        panic!("no frames after five polls")
    }

    pub async fn frames(&self) -> Vec<Value> {
        self.frames_at(self.addr).await
    }

    /// Polls until a frame matching `pred` came; returns every frame read.
    pub async fn frames_until(&self, pred: impl Fn(&Value) -> bool) -> Vec<Value> {
        let mut all = Vec::new();
        for _ in 0..10 {
            let frames = self.frames().await;
            let done = frames.iter().any(&pred);
            all.extend(frames);
            if done {
                return all;
            }
        }
        panic!("never came; read {all:?}")
    }
}

/// The `messages` of a 200 poll answer, each a string holding one frame.
pub fn parse_messages(body: &Value) -> Vec<Value> {
    body["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| {
            let text = m
                .as_str()
                .unwrap_or_else(|| panic!("a message is a JSON string: {m}"));
            serde_json::from_str(text).expect("a frame")
        })
        .collect()
}

/// A V2 frame as the client sends it.
pub fn frame(
    join_ref: Option<&str>,
    msg_ref: &str,
    topic: &str,
    event: &str,
    payload: Value,
) -> String {
    serde_json::json!([join_ref, msg_ref, topic, event, payload]).to_string()
}

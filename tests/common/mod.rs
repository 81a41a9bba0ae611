//! Test helpers: a Fawkes server on port 0 in a temporary data directory, and a small Phoenix
//! client whose `join_ref`s differ from its `ref`s.

#![allow(dead_code, unreachable_pub)]

pub mod kafka;
pub mod longpoll;
pub mod price_feed;
pub mod process;
pub mod proxy;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use clap::Parser;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tokio_util::sync::CancellationToken;
use topics::presence::{PresenceDiff, PresenceState};

pub const SECRET: &str = "test-secret";

/// A `fawkes dev` running in this process.
pub struct TestServer {
    pub addr: SocketAddr,
    shutdown: CancellationToken,
    task: Option<JoinHandle<anyhow::Result<()>>>,
    _dir: Option<tempfile::TempDir>,
}

impl TestServer {
    /// Starts a seeded server in a fresh data directory.
    pub async fn start() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut server = Self::start_in(dir.path(), &[]).await;
        server._dir = Some(dir);
        server
    }

    /// Starts a server on `data_dir` with extra `fawkes dev` flags.
    pub async fn start_in(data_dir: &Path, extra: &[&str]) -> Self {
        let mut argv: Vec<String> = vec![
            "fawkes".into(),
            "dev".into(),
            "--listen".into(),
            "127.0.0.1:0".into(),
            "--data-dir".into(),
            data_dir.display().to_string(),
            "--jwt-secret".into(),
            SECRET.into(),
            // Stopping closes the sockets at once rather than over the default 5 s window,
            // which every test stopping with sockets open would wait out; the spreading is
            // tested through real processes in tests/drain.rs.
            "--drain-window".into(),
            "0s".into(),
        ];
        argv.extend(extra.iter().map(|s| (*s).to_owned()));
        let cli = fawkes::cli::Cli::parse_from(argv);
        let Some(fawkes::cli::Command::Dev(args)) = cli.command else {
            panic!("dev args")
        };
        let listener = tokio::net::TcpListener::bind(args.socket.listen)
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(fawkes::dev::run(args, listener, shutdown.clone()));
        Self {
            addr,
            shutdown,
            task: Some(task),
            _dir: None,
        }
    }

    pub fn url(&self, query: &str) -> String {
        format!("ws://{}/socket/websocket?{query}", self.addr)
    }

    pub fn http(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Drains and stops the server.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            let result = tokio::time::timeout(Duration::from_secs(20), task).await;
            result
                .expect("stops in time")
                .expect("no panic")
                .expect("clean stop");
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// A size from the environment (benchmarks), or `default`.
pub fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A broadcast's payload without its stream position, after checking it has a well-formed
/// one (positions depend on the run). Returns the offset too.
pub fn unpositioned(mut payload: Value) -> (Value, u64) {
    let position = payload
        .as_object_mut()
        .and_then(|p| p.remove("position"))
        .unwrap_or_else(|| panic!("a broadcast carries its position: {payload}"));
    assert!(position["epoch"].is_string(), "{position}");
    let offset = position["offset"].as_u64().expect("an offset");
    (payload, offset)
}

/// Mints a token for `sub` with `roles`, valid for an hour.
pub fn token(sub: &str, roles: &[&str]) -> String {
    token_with(sub, roles, 3600, SECRET)
}

pub fn token_with(sub: &str, roles: &[&str], ttl_secs: i64, secret: &str) -> String {
    mint(sub, roles, ttl_secs, secret, None)
}

/// A token for `sub` carrying a display name.
pub fn token_named(sub: &str, name: &str) -> String {
    mint(sub, &[], 3600, SECRET, Some(name))
}

fn mint(sub: &str, roles: &[&str], ttl_secs: i64, secret: &str, name: Option<&str>) -> String {
    let auth = connector::Authenticator::new(&connector::JwtSecret::new(secret)).expect("secret");
    let exp = (chrono_now() + ttl_secs).max(0) as u64;
    auth.mint(&connector::TokenClaims {
        sub: sub.into(),
        exp,
        roles: roles.iter().map(|r| (*r).to_owned()).collect(),
        name: name.map(str::to_owned),
    })
    .expect("mint")
}

fn chrono_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
}

/// A raw Phoenix V2 client.
pub struct Client {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    next_ref: u64,
    /// Messages read while waiting for something else.
    backlog: Vec<Value>,
    /// How long to wait for the next frame (10 s, phoenix.js's push timeout, unless a test
    /// measures something slower on purpose).
    pub patience: Duration,
}

/// What [`Client::next_or_close`] read.
#[derive(Debug)]
pub enum Received {
    Frame(Value),
    Closed(Option<u16>),
}

/// How a connection attempt ended.
pub enum Connect {
    Open(Box<Client>),
    Refused(u16),
}

impl Client {
    pub async fn connect(server: &TestServer, token: Option<&str>) -> Self {
        let query = match token {
            Some(t) => format!("vsn=2.0.0&token={t}"),
            None => "vsn=2.0.0".to_owned(),
        };
        match Self::try_connect(&server.url(&query), None).await {
            Connect::Open(c) => *c,
            Connect::Refused(status) => panic!("connect refused with {status}"),
        }
    }

    /// Connects to a full socket URL, panicking if refused.
    pub async fn connect_url(url: &str) -> Self {
        match Self::try_connect(url, None).await {
            Connect::Open(c) => *c,
            Connect::Refused(status) => panic!("connect refused with {status}"),
        }
    }

    pub async fn try_connect(url: &str, protocols: Option<&str>) -> Connect {
        let mut request = url.into_client_request().expect("request");
        if let Some(p) = protocols {
            request
                .headers_mut()
                .insert("sec-websocket-protocol", p.parse().expect("header"));
        }
        match tokio_tungstenite::connect_async_with_config(request, None, true).await {
            Ok((ws, _)) => Connect::Open(Box::new(Self {
                ws,
                next_ref: 0,
                backlog: Vec::new(),
                patience: Duration::from_secs(10),
            })),
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                Connect::Refused(response.status().as_u16())
            }
            Err(e) => panic!("connect failed: {e}"),
        }
    }

    fn make_ref(&mut self) -> String {
        self.next_ref += 1;
        self.next_ref.to_string()
    }

    pub async fn send_text(&mut self, text: &str) {
        self.ws
            .send(Message::Text(text.into()))
            .await
            .expect("send");
    }

    pub async fn send(
        &mut self,
        join_ref: Option<&str>,
        topic: &str,
        event: &str,
        payload: Value,
    ) -> String {
        let msg_ref = self.make_ref();
        let frame = json!([join_ref, msg_ref, topic, event, payload]);
        self.send_text(&frame.to_string()).await;
        msg_ref
    }

    /// Sends a message like [`send`](Self::send), on a socket the server may have closed
    /// meanwhile: `None` when it could not be written.
    pub async fn try_send(
        &mut self,
        join_ref: Option<&str>,
        topic: &str,
        event: &str,
        payload: Value,
    ) -> Option<String> {
        let msg_ref = self.make_ref();
        let frame = json!([join_ref, msg_ref, topic, event, payload]);
        let sent = self.ws.send(Message::Text(frame.to_string().into())).await;
        sent.ok().map(|()| msg_ref)
    }

    /// Joins `topic` with a join_ref distinct from the message ref; returns (join_ref, reply).
    pub async fn join(&mut self, topic: &str, params: Value) -> (String, Value) {
        let join_ref = format!("j{}", self.make_ref());
        let msg_ref = self.make_ref();
        let frame = json!([join_ref, msg_ref, topic, "phx_join", params]);
        self.send_text(&frame.to_string()).await;
        let reply = self.reply(&msg_ref).await;
        (join_ref, reply)
    }

    /// Pushes an event and waits for its reply payload `{status, response}`.
    pub async fn push(
        &mut self,
        join_ref: &str,
        topic: &str,
        event: &str,
        payload: Value,
    ) -> Value {
        let msg_ref = self.send(Some(join_ref), topic, event, payload).await;
        self.reply(&msg_ref).await
    }

    /// The next frame, as JSON.
    pub async fn recv(&mut self) -> Value {
        if !self.backlog.is_empty() {
            return self.backlog.remove(0);
        }
        self.recv_wire().await
    }

    async fn recv_wire(&mut self) -> Value {
        loop {
            let next = tokio::time::timeout(self.patience, self.ws.next())
                .await
                .unwrap_or_else(|_| panic!("no frame within {:?}", self.patience))
                .expect("socket open")
                .expect("frame");
            match next {
                Message::Text(text) => return serde_json::from_str(text.as_str()).expect("json"),
                Message::Close(frame) => panic!("socket closed: {frame:?}"),
                _ => continue,
            }
        }
    }

    /// The full reply frame to `msg_ref`, keeping other frames for later.
    pub async fn reply_frame(&mut self, msg_ref: &str) -> Value {
        if let Some(i) = self
            .backlog
            .iter()
            .position(|f| f[1] == msg_ref && f[3] == "phx_reply")
        {
            return self.backlog.remove(i);
        }
        loop {
            let frame = self.recv_wire().await;
            if frame[1] == msg_ref && frame[3] == "phx_reply" {
                return frame;
            }
            self.backlog.push(frame);
        }
    }

    /// The reply payload `{status, response}` to `msg_ref`.
    pub async fn reply(&mut self, msg_ref: &str) -> Value {
        self.reply_frame(msg_ref).await[4].clone()
    }

    /// The next frame with `event` on `topic`, keeping others for later.
    pub async fn event(&mut self, topic: &str, event: &str) -> Value {
        if let Some(i) = self
            .backlog
            .iter()
            .position(|f| f[2] == topic && f[3] == event)
        {
            return self.backlog.remove(i);
        }
        loop {
            let frame = self.recv_wire().await;
            if frame[2] == topic && frame[3] == event {
                return frame;
            }
            self.backlog.push(frame);
        }
    }

    /// Follows presence on `topic` as phoenix.js does (a `presence_state` replaces the list,
    /// each `presence_diff` is applied to it) until `done` holds; returns how many presence
    /// frames it took. Other frames are kept for later.
    pub async fn presence_until(
        &mut self,
        topic: &str,
        state: &mut PresenceState,
        done: impl Fn(&PresenceState) -> bool,
    ) -> usize {
        let mut frames = 0;
        while !done(state) {
            let frame = self.presence_frame(topic).await;
            frames += 1;
            if frame[3] == "presence_state" {
                *state = PresenceState::from_value(&frame[4]);
            } else {
                let diff =
                    PresenceDiff::from_value(&frame[4]).expect("a diff has joins and leaves");
                state.apply(&diff);
            }
        }
        frames
    }

    /// The next `presence_state` or `presence_diff` frame on `topic`.
    pub async fn presence_frame(&mut self, topic: &str) -> Value {
        self.presence_frame_where(topic, |_| true).await
    }

    /// The next `presence_state` or `presence_diff` frame on `topic` for which `pred` holds;
    /// presence frames before it are dropped, other frames kept for later.
    pub async fn presence_frame_where(
        &mut self,
        topic: &str,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        let presence =
            |f: &Value| f[2] == topic && (f[3] == "presence_state" || f[3] == "presence_diff");
        while let Some(i) = self.backlog.iter().position(presence) {
            let frame = self.backlog.remove(i);
            if pred(&frame) {
                return frame;
            }
        }
        loop {
            let frame = self.recv_wire().await;
            if !presence(&frame) {
                self.backlog.push(frame);
            } else if pred(&frame) {
                return frame;
            }
        }
    }

    /// Asserts nothing with `event` arrives within `wait`.
    pub async fn assert_no_event(&mut self, event: &str, wait: Duration) {
        assert!(
            self.backlog.iter().all(|f| f[3] != event),
            "unexpected {event}: {:?}",
            self.backlog
        );
        let deadline = tokio::time::Instant::now() + wait;
        while let Ok(Some(Ok(Message::Text(text)))) =
            tokio::time::timeout_at(deadline, self.ws.next()).await
        {
            let frame: Value = serde_json::from_str(text.as_str()).expect("json");
            assert_ne!(frame[3], event, "unexpected frame {frame}");
            self.backlog.push(frame);
        }
    }

    /// Round-trips a heartbeat: proves the socket still works.
    pub async fn heartbeat(&mut self) {
        let msg_ref = self.send(None, "phoenix", "heartbeat", json!({})).await;
        let reply = self.reply_frame(&msg_ref).await;
        assert_eq!(
            reply,
            json!([null, msg_ref, "phoenix", "phx_reply", {"status": "ok", "response": {}}])
        );
    }

    /// Waits for the server to close the socket; returns the close code.
    pub async fn closed(&mut self) -> Option<u16> {
        loop {
            match tokio::time::timeout(Duration::from_secs(10), self.ws.next())
                .await
                .expect("closes in time")
            {
                Some(Ok(Message::Close(frame))) => return frame.map(|f| u16::from(f.code)),
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return None,
            }
        }
    }

    /// The next frame (from the backlog first), or how the socket ended: its close code, `None`
    /// for a close without one or a connection that just ended. Waits up to `patience`.
    pub async fn next_or_close(&mut self) -> Received {
        if !self.backlog.is_empty() {
            return Received::Frame(self.backlog.remove(0));
        }
        loop {
            let next = tokio::time::timeout(self.patience, self.ws.next())
                .await
                .unwrap_or_else(|_| panic!("nothing within {:?}", self.patience));
            match next {
                Some(Ok(Message::Text(text))) => {
                    return Received::Frame(serde_json::from_str(text.as_str()).expect("json"))
                }
                Some(Ok(Message::Close(frame))) => {
                    return Received::Closed(frame.map(|f| u16::from(f.code)))
                }
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return Received::Closed(None),
            }
        }
    }

    pub async fn send_raw(&mut self, message: Message) {
        self.ws.send(message).await.expect("send");
    }
}

/// A minimal HTTP/1.1 request; returns (status, body).
pub async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    bearer: Option<&str>,
    body: Option<&str>,
) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let mut request = format!("{method} {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n");
    if let Some(token) = bearer {
        request.push_str(&format!("authorization: Bearer {token}\r\n"));
    }
    let body = body.unwrap_or("");
    if !body.is_empty() {
        request.push_str("content-type: application/json\r\n");
    }
    request.push_str(&format!("content-length: {}\r\n\r\n{body}", body.len()));
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut response))
        .await
        .expect("response in time")
        .expect("read");
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status line");
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

//! The WebSocket handshake (RFC 6455 §4.2), done here rather than by axum's extractor so the
//! transport owns a `tokio-tungstenite` stream and can write a large message as a series of
//! frames: tungstenite keeps the write buffer at the size of the largest frame it ever held,
//! so one whole presence list of a big campaign would stay allocated for the socket's life.

use axum::extract::Request;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::WebSocketStream;

/// The WebSocket of one client.
pub(crate) type Socket = WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>;

/// The only sub-protocol spoken; phoenix.js offers it beside its `authToken` one.
const PROTOCOL: &str = "phoenix";

/// A valid upgrade request, not yet answered.
pub(crate) struct Upgrade {
    accept: String,
    on_upgrade: OnUpgrade,
    phoenix: bool,
}

fn header_has_token(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// The sub-protocols a client offered.
pub(crate) fn offered_protocols(headers: &HeaderMap) -> impl Iterator<Item = &str> {
    headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
}

impl Upgrade {
    /// Checks that `request` asks for a WebSocket (HTTP/1.1 GET with the upgrade headers);
    /// `Err` says why not (answered with 400).
    pub(crate) fn from_request(request: &mut Request) -> Result<Self, &'static str> {
        let headers = request.headers();
        if request.method() != Method::GET {
            return Err("a WebSocket upgrade must be a GET");
        }
        if !header_has_token(headers, header::CONNECTION, "upgrade")
            || !header_has_token(headers, header::UPGRADE, "websocket")
        {
            return Err("not a WebSocket upgrade");
        }
        if headers.get(header::SEC_WEBSOCKET_VERSION) != Some(&HeaderValue::from_static("13")) {
            return Err("unsupported WebSocket version (13 is)");
        }
        let Some(key) = headers.get(header::SEC_WEBSOCKET_KEY) else {
            return Err("Sec-WebSocket-Key is missing");
        };
        let accept = derive_accept_key(key.as_bytes());
        let phoenix = offered_protocols(headers).any(|p| p == PROTOCOL);
        let on_upgrade = request
            .extensions_mut()
            .remove::<OnUpgrade>()
            .ok_or("the connection cannot be upgraded")?;
        Ok(Self {
            accept,
            on_upgrade,
            phoenix,
        })
    }

    /// Answers 101 and hands the upgraded connection to `session` once hyper has switched it.
    pub(crate) fn accept<F, Fut>(self, config: WebSocketConfig, session: F) -> Response
    where
        F: FnOnce(Socket) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()> + Send,
    {
        let Self {
            accept,
            on_upgrade,
            phoenix,
        } = self;
        tokio::spawn(async move {
            match on_upgrade.await {
                Ok(upgraded) => {
                    let io = TokioIo::new(upgraded);
                    let socket =
                        WebSocketStream::from_raw_socket(io, Role::Server, Some(config)).await;
                    session(socket).await;
                }
                Err(error) => tracing::debug!(%error, "the upgrade did not complete"),
            }
        });
        let mut response = StatusCode::SWITCHING_PROTOCOLS.into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        if let Ok(value) = HeaderValue::from_str(&accept) {
            headers.insert(header::SEC_WEBSOCKET_ACCEPT, value);
        }
        if phoenix {
            headers.insert(
                header::SEC_WEBSOCKET_PROTOCOL,
                HeaderValue::from_static(PROTOCOL),
            );
        }
        response
    }
}

//! The HTTP surface: the socket endpoint, the server-side API, health and metrics.

use std::sync::Arc;

use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use eventlog::LogError;
use serde_json::{json, Value};
use topics::names::{BROADCASTS, COMMANDS};
use topics::routes::{has_stream, user_socket_topic, DISCONNECT_EVENT, RELAY_EVENT};
use topics::{Broadcast, Claims, Command, CommandKind, SocketRef};

use crate::app::App;
use crate::{longpoll, websocket};

/// All routes of a connector.
pub(crate) fn router(app: Arc<App>) -> Router {
    Router::new()
        .route(
            "/socket/websocket",
            // Phoenix answers any other method with 400.
            get(websocket::handler).fallback(|| async { StatusCode::BAD_REQUEST }),
        )
        .route("/socket/longpoll", longpoll::routes())
        .route("/api/broadcast", post(broadcast))
        .route("/api/disconnect", post(disconnect))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready))
        .route("/metrics", get(metrics))
        .with_state(app)
}

/// Ready to take sockets: not draining, and the log answers (sockets would get `unavailable`
/// replies otherwise; a load balancer should send them to a connector that reaches it).
/// `/healthz` stays about liveness: a connector cut off from the log is alive and recovers.
async fn ready(State(app): State<Arc<App>>) -> Response {
    if app.shutdown.is_cancelled() {
        (StatusCode::SERVICE_UNAVAILABLE, "draining").into_response()
    } else if !app.metrics.log.is_up() {
        (StatusCode::SERVICE_UNAVAILABLE, "log unreachable").into_response()
    } else {
        "ready".into_response()
    }
}

async fn metrics(State(app): State<Arc<App>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        app.metrics.render(),
    )
        .into_response()
}

fn api_error(status: StatusCode, message: &str) -> Response {
    ApiError(status, message.to_owned()).into_response()
}

/// A refused API request: the status and a sentence saying why.
#[derive(Debug)]
struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "error": self.1 }))).into_response()
    }
}

/// Proof that the request carries a bearer token with role `service`; extracting it refuses
/// the request otherwise.
#[derive(Debug)]
struct Service;

impl FromRequestParts<Arc<App>> for Service {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, ApiError> {
        let token = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|h| h.to_str().ok())
            .and_then(|h| h.strip_prefix("Bearer "))
            .ok_or_else(|| {
                ApiError(
                    StatusCode::UNAUTHORIZED,
                    "a bearer token is required".into(),
                )
            })?;
        let claims = app
            .auth
            .verify(token.trim())
            .map_err(|e| ApiError(StatusCode::UNAUTHORIZED, e.to_string()))?;
        if claims.has_role("service") {
            Ok(Service)
        } else {
            Err(ApiError(
                StatusCode::FORBIDDEN,
                "the token lacks the service role".into(),
            ))
        }
    }
}

/// Appends a broadcast (no transforms) for every connector to fan out. On a topic with a
/// stream it goes to the processor owning the topic first (a relay command), which gives it
/// its position and keeps it in the topic's history, like any other broadcast there.
async fn publish(app: &App, topic: String, event: &str, payload: Value) -> Response {
    let id = uuid::Uuid::new_v4().to_string();
    let record = if has_stream(&topic) {
        let relay = Command {
            id,
            topic,
            socket: SocketRef {
                connector_id: app.config.connector_id.clone(),
                socket_id: 0,
                join_id: None,
                msg_ref: None,
            },
            claims: Claims::default(),
            kind: CommandKind::Derived {
                event: RELAY_EVENT.to_owned(),
                payload: json!({ "event": event, "payload": payload, "transforms": [] }),
            },
            received_at: topics::timestamp::now(),
        };
        relay.encode().map(|bytes| (COMMANDS, relay.topic, bytes))
    } else {
        let broadcast = Broadcast {
            id,
            topic,
            event: event.to_owned(),
            payload,
            transforms: Vec::new(),
            position: None,
        };
        broadcast
            .encode()
            .map(|bytes| (BROADCASTS, broadcast.topic, bytes))
    };
    let (log_topic, key, bytes) = match record {
        Ok(bytes) => bytes,
        Err(error) => {
            // The payload is any JSON object, which always encodes; this is a bug if reached.
            tracing::error!(%error, "could not encode an API broadcast");
            return api_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the broadcast could not be encoded",
            );
        }
    };
    let append = app.log.append(log_topic, key.as_bytes(), bytes);
    let appended = tokio::time::timeout(app.config.append_timeout, append)
        .await
        .unwrap_or_else(|_| Err(LogError::Unavailable("no acknowledgement in time".into())));
    match appended {
        Ok(_) => {
            app.metrics.log.ok();
            (StatusCode::ACCEPTED, Json(json!({ "status": "ok" }))).into_response()
        }
        Err(error) => {
            app.metrics.log.failed("append_broadcast", &error);
            tracing::error!(%error, "could not append an API broadcast");
            api_error(StatusCode::SERVICE_UNAVAILABLE, "the log is unavailable")
        }
    }
}

/// `POST /api/broadcast {topic, event, payload}`: fan out to every subscriber everywhere.
async fn broadcast(State(app): State<Arc<App>>, _: Service, body: Option<Json<Value>>) -> Response {
    let Some(Json(body)) = body else {
        return api_error(
            StatusCode::BAD_REQUEST,
            "the body must be JSON {topic, event, payload}",
        );
    };
    let (Some(topic), Some(event), Some(payload)) = (
        body.get("topic").and_then(Value::as_str),
        body.get("event").and_then(Value::as_str),
        body.get("payload").filter(|p| p.is_object()),
    ) else {
        return api_error(
            StatusCode::BAD_REQUEST,
            "topic and event must be strings and payload an object",
        );
    };
    if topic.is_empty() || event.is_empty() || topic.len() > 255 || event.len() > 255 {
        return api_error(
            StatusCode::BAD_REQUEST,
            "topic and event must be 1-255 bytes",
        );
    }
    publish(&app, topic.to_owned(), event, payload.clone()).await
}

/// `POST /api/disconnect {user_id}`: close every socket of a user on every connector.
async fn disconnect(
    State(app): State<Arc<App>>,
    _: Service,
    body: Option<Json<Value>>,
) -> Response {
    let user_id = match body.as_ref().and_then(|Json(b)| b.get("user_id")) {
        Some(Value::String(id)) if !id.is_empty() => id.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => return api_error(StatusCode::BAD_REQUEST, "user_id is required"),
    };
    publish(
        &app,
        user_socket_topic(&user_id),
        DISCONNECT_EVENT,
        json!({}),
    )
    .await
}

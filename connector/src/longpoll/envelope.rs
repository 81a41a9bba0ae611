//! Long-poll responses (PROTOCOL.md §7.2): every answer but a preflight's and a wrong
//! method's is HTTP 200 with a JSON body whose `status` carries the logical status, and each
//! message is a JSON *string* holding one serialized frame.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

/// One long-poll answer. docs/ERRORS.md ("Long-poll") lists exactly these bodies; a test
/// below keeps the two in step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Envelope<'a> {
    /// GET without a usable session: a new one, `{"status":410,"token":T,"messages":[]}`.
    NewSession(&'a str),
    /// GET: the buffered frames, oldest first.
    Messages(&'a str, &'a [&'a str]),
    /// GET: nothing came within the window.
    NoMessages(&'a str),
    /// Origin, version or token refused: `{"status":403}`.
    Refused,
    /// POST: every message processed.
    Posted,
    /// POST for a session that is unknown, expired or ended.
    Gone,
    /// POST: a message was not processed within the window; the rest were not.
    TimedOut,
}

impl Envelope<'_> {
    /// Every shape, for the catalog check.
    #[cfg(test)]
    const ALL: [Envelope<'static>; 7] = [
        Envelope::NewSession("T"),
        Envelope::Messages("T", &["m1", "m2"]),
        Envelope::NoMessages("T"),
        Envelope::Refused,
        Envelope::Posted,
        Envelope::Gone,
        Envelope::TimedOut,
    ];

    /// The logical status in the body (also the metric label).
    pub(super) fn status(self) -> u16 {
        match self {
            Envelope::NewSession(_) | Envelope::Gone => 410,
            Envelope::Messages(..) | Envelope::Posted => 200,
            Envelope::NoMessages(_) => 204,
            Envelope::Refused => 403,
            Envelope::TimedOut => 408,
        }
    }

    /// The JSON body.
    pub(super) fn body(self) -> String {
        let status = self.status();
        let (token, messages): (&str, &[&str]) = match self {
            Envelope::NewSession(token) | Envelope::NoMessages(token) => (token, &[]),
            Envelope::Messages(token, messages) => (token, messages),
            Envelope::Refused | Envelope::Posted | Envelope::Gone | Envelope::TimedOut => {
                return format!("{{\"status\":{status}}}");
            }
        };
        let size: usize = messages.iter().map(|m| m.len() + 8).sum();
        let mut body = String::with_capacity(64 + token.len() + size);
        body.push_str("{\"status\":");
        body.push_str(&status.to_string());
        body.push_str(",\"token\":");
        push_json_string(&mut body, token);
        body.push_str(",\"messages\":[");
        for (i, message) in messages.iter().enumerate() {
            if i > 0 {
                body.push(',');
            }
            push_json_string(&mut body, message);
        }
        body.push_str("]}");
        body
    }
}

/// Appends `text` as a JSON string literal.
fn push_json_string(out: &mut String, text: &str) {
    // Serializing a `&str` cannot fail.
    out.push_str(&serde_json::to_string(text).unwrap_or_default());
}

/// The headers every long-poll answer carries: never cached (with the token in a header every
/// session polls the same URL), readable from any page (the origin is checked instead).
pub(super) fn common_headers(response: &mut Response) {
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
}

impl IntoResponse for Envelope<'_> {
    fn into_response(self) -> Response {
        let mut response = (
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json; charset=utf-8"),
            )],
            self.body(),
        )
            .into_response();
        common_headers(&mut response);
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn bodies_are_phoenix_envelopes_with_messages_as_strings() {
        let frame = r#"["3","3","room:lobby","phx_reply",{"status":"ok","response":{}}]"#;
        let body = Envelope::Messages("tok", &[frame]).body();
        let value: serde_json::Value = serde_json::from_str(&body).expect("json");
        assert_eq!(value["status"], 200);
        assert_eq!(value["token"], "tok");
        assert_eq!(value["messages"][0], frame, "a string holding the frame");
        assert_eq!(
            Envelope::NewSession("t").body(),
            r#"{"status":410,"token":"t","messages":[]}"#
        );
        assert_eq!(Envelope::Refused.body(), r#"{"status":403}"#);
        assert_eq!(Envelope::TimedOut.body(), r#"{"status":408}"#);
    }

    #[test]
    fn errors_md_lists_exactly_the_envelopes() {
        // Rows of the long-poll table: | `{"status":...}` | when |.
        let text = include_str!("../../../docs/ERRORS.md");
        let section = text
            .split("## Long-poll")
            .nth(1)
            .and_then(|rest| rest.split("\n## ").next())
            .unwrap_or_default();
        let documented: BTreeSet<String> = section
            .lines()
            .filter_map(|line| line.strip_prefix("| `"))
            .filter_map(|rest| rest.split('`').next())
            .map(str::to_owned)
            .collect();
        let code: BTreeSet<String> = Envelope::ALL
            .iter()
            .map(|e| {
                e.body()
                    .replace("\"T\"", "T")
                    .replace("[\"m1\",\"m2\"]", "[m1, …]")
            })
            .collect();
        assert_eq!(documented, code);
    }
}

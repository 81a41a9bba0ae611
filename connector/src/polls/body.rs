//! A long-poll POST body as client messages (PROTOCOL.md §7.4), sans IO.
//!
//! With `Content-Type: application/x-ndjson` the body is lines split on `\n` or `\r\n`, of
//! which only the first [`MAX_LINES`] count; a line starting with `[` is a V2 JSON text
//! message, any other line the standard base64 of a V2 binary push. Any other content type
//! makes the whole body one text message (how V1 clients post a JSON object). The body is
//! split where it arrives and classified where its session runs, so a relayed batch travels
//! as the lines the client sent.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use bytes::Bytes;

/// Lines of one POST that are processed; later ones are ignored (Phoenix ≥ 1.8.6).
pub(crate) const MAX_LINES: usize = 100;

/// The content type of a batch of lines.
const NDJSON: &str = "application/x-ndjson";

/// One POST's messages, in the order the client sent them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Batch {
    /// The lines (or the whole body), each valid UTF-8.
    pub(crate) lines: Vec<String>,
    /// Whether the lines follow the ndjson rule (`[` text, else base64) rather than each
    /// being a text message.
    pub(crate) ndjson: bool,
    /// Lines among the first [`MAX_LINES`] dropped because they are not UTF-8 (so neither
    /// JSON nor base64).
    pub(crate) dropped: usize,
}

/// One client message of a batch, ready for the session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Line<'a> {
    /// A JSON text message.
    Text(&'a str),
    /// The decoded bytes of a base64 line: a V2 binary push.
    Binary(Bytes),
    /// A line that is neither (not valid base64).
    Malformed,
}

/// Splits a POST body sent with `content_type`.
pub(crate) fn parse(content_type: Option<&str>, body: &[u8]) -> Batch {
    let ndjson = content_type.is_some_and(|ct| {
        let media = ct.split(';').next().unwrap_or_default().trim();
        media.eq_ignore_ascii_case(NDJSON)
    });
    if !ndjson {
        return match std::str::from_utf8(body) {
            Ok(text) => Batch {
                lines: vec![text.to_owned()],
                ndjson,
                dropped: 0,
            },
            Err(_) => Batch {
                lines: Vec::new(),
                ndjson,
                dropped: 1,
            },
        };
    }
    let mut lines = Vec::new();
    let mut dropped = 0;
    for line in body.split(|b| *b == b'\n').take(MAX_LINES) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        match std::str::from_utf8(line) {
            Ok(text) => lines.push(text.to_owned()),
            Err(_) => dropped += 1,
        }
    }
    Batch {
        lines,
        ndjson,
        dropped,
    }
}

impl Batch {
    /// The messages of the batch, classified, in order.
    pub(crate) fn messages(&self) -> impl Iterator<Item = Line<'_>> {
        self.lines.iter().map(|line| classify(line, self.ndjson))
    }
}

/// What one line is: under the ndjson rule `[…` is text and anything else base64; otherwise
/// every line is text.
pub(crate) fn classify(line: &str, ndjson: bool) -> Line<'_> {
    if !ndjson || line.starts_with('[') {
        return Line::Text(line);
    }
    match STANDARD.decode(line) {
        Ok(bytes) => Line::Binary(Bytes::from(bytes)),
        Err(_) => Line::Malformed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn ndjson_lines_text_and_base64() {
        let body = b"[\"1\",\"2\",\"t\",\"e\",{}]\r\nAAIDBQUxMjEyM3RvcGljZXZlbnQBAgM=\n[null,\"3\",\"t\",\"f\",{}]";
        let batch = parse(Some("application/x-ndjson"), body);
        assert!(batch.ndjson);
        assert_eq!(batch.lines.len(), 3);
        let lines: Vec<Line<'_>> = batch.messages().collect();
        assert_eq!(lines[0], Line::Text("[\"1\",\"2\",\"t\",\"e\",{}]"));
        assert!(matches!(&lines[1], Line::Binary(b) if b[0] == 0 && b.ends_with(&[1, 2, 3])));
        assert_eq!(lines[2], Line::Text("[null,\"3\",\"t\",\"f\",{}]"));
        assert_eq!(classify("%%%", true), Line::Malformed);
    }

    #[test]
    fn only_the_first_hundred_lines_count() {
        let body: Vec<String> = (0..101)
            .map(|i| format!("[null,\"{i}\",\"t\",\"e\",{{}}]"))
            .collect();
        let batch = parse(Some("application/x-ndjson"), body.join("\n").as_bytes());
        assert_eq!(batch.lines.len(), 100);
        assert_eq!(batch.lines[99], body[99]);
    }

    #[test]
    fn another_content_type_is_one_text_message() {
        let body = br#"{"topic":"t","event":"e","payload":{},"ref":"1"}"#;
        for content_type in [None, Some("application/json"), Some("text/plain")] {
            let batch = parse(content_type, body);
            assert!(!batch.ndjson);
            assert_eq!(
                batch.lines,
                vec![String::from_utf8_lossy(body).into_owned()]
            );
            assert_eq!(batch.messages().count(), 1);
        }
        // Even a body that looks like base64 is text without the ndjson type.
        assert_eq!(classify("AAAA", false), Line::Text("AAAA"));
        assert_eq!(parse(None, &[0xff, 0xfe]).dropped, 1);
        assert!(parse(Some("Application/X-NDJSON; charset=utf-8"), b"[").ndjson);
    }

    proptest! {
        /// Any body: no panic, at most 100 lines kept or dropped, kept lines are the body's
        /// own lines in order, without their line ends.
        #[test]
        fn any_body_splits_into_at_most_a_hundred_lines(body in prop::collection::vec(any::<u8>(), 0..4096), ndjson in any::<bool>()) {
            let content_type = ndjson.then_some("application/x-ndjson");
            let batch = parse(content_type, &body);
            prop_assert!(batch.lines.len() + batch.dropped <= MAX_LINES);
            if ndjson {
                let expected: Vec<String> = body
                    .split(|b| *b == b'\n')
                    .take(MAX_LINES)
                    .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
                    .filter_map(|l| std::str::from_utf8(l).ok().map(str::to_owned))
                    .collect();
                prop_assert_eq!(&batch.lines, &expected);
                for line in &batch.lines {
                    prop_assert!(!line.contains('\n'));
                }
            } else {
                prop_assert!(batch.lines.len() <= 1);
            }
            for line in batch.messages() {
                let _ = line;
            }
        }

        /// Lines made of messages come back as those messages, whatever line ends joined them.
        #[test]
        fn joined_messages_come_back(texts in prop::collection::vec("\\[[^\r\n]{0,40}", 1..120), crlf in any::<bool>()) {
            let end = if crlf { "\r\n" } else { "\n" };
            let batch = parse(Some("application/x-ndjson"), texts.join(end).as_bytes());
            let kept: Vec<&str> = batch.messages().map(|l| match l {
                Line::Text(t) => t,
                _ => "",
            }).collect();
            let expected: Vec<&str> = texts.iter().take(MAX_LINES).map(String::as_str).collect();
            prop_assert_eq!(kept, expected);
        }

        /// Base64 of any bytes decodes back to them.
        #[test]
        fn base64_lines_decode(bytes in prop::collection::vec(any::<u8>(), 1..512)) {
            let line = STANDARD.encode(&bytes);
            prop_assert_eq!(classify(&line, true), Line::Binary(Bytes::from(bytes)));
        }
    }
}

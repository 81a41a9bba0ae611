//! The one timestamp format on the log and in payloads: RFC 3339 in UTC with milliseconds,
//! e.g. `2026-12-03T12:27:49.123Z`.
//!
//! Pure cores never read the clock: the IO shells call [`now`] once and pass the text in (a
//! command's `received_at`, a decision's `View::now`).

use chrono::{DateTime, SecondsFormat, Utc};

/// The current time in the log's format.
pub fn now() -> String {
    format(Utc::now())
}

/// The time `ago` before now in the log's format (texts in this format order as their
/// instants do, so a stamp older than this compares less).
pub fn before_now(ago: std::time::Duration) -> String {
    let ago = chrono::Duration::from_std(ago).unwrap_or(chrono::Duration::MAX);
    format(
        Utc::now()
            .checked_sub_signed(ago)
            .unwrap_or(DateTime::<Utc>::MIN_UTC),
    )
}

/// `at` in the log's format.
pub fn format(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn utc_with_milliseconds_and_z() {
        let at = Utc
            .timestamp_millis_opt(1_796_300_869_123)
            .single()
            .expect("a valid instant");
        assert_eq!(format(at), "2026-12-03T12:27:49.123Z");
    }
}

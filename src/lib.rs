//! The `fawkes` command: composes the connector, the processors, the log and the store.
//!
//! Layout:
//! - [`cli`]: the command line and its environment twins.
//! - [`dev`]: `fawkes dev`, everything in one process on the embedded log and store.
//! - [`distributed`]: `fawkes connector`, `processor` and `topics`, on Kafka.
//! - [`durations`]: how settings write lengths of time.
//! - [`seed`]: demo data.
//! - [`token`]: `fawkes token`, development JWTs.
//! - [`transport`]: the origin check's and the long-poll transport's settings.

pub mod cli;
pub mod dev;
pub mod distributed;
pub mod durations;
pub mod history;
pub mod seed;
pub mod token;
pub mod transport;

/// A process-unique id with a readable prefix: `<prefix>-<12 random hex digits>-<ms since epoch>`.
///
/// The random part keeps two processes apart even when both run as pid 1 in their containers
/// and start in the same millisecond (48 random bits: a collision among a thousand processes
/// started at once is about one in half a billion); the time tells a process's lives apart in logs.
pub fn unique_id(prefix: &str) -> String {
    let random = uuid::Uuid::new_v4().simple().to_string();
    let short = random.get(..12).unwrap_or(&random);
    format!("{prefix}-{short}-{}", chrono::Utc::now().timestamp_millis())
}

#[cfg(test)]
mod tests {
    use super::unique_id;

    #[test]
    fn ids_made_at_once_are_distinct_and_keep_their_prefix() {
        let ids: Vec<String> = (0..10_000).map(|_| unique_id("connector")).collect();
        let distinct: std::collections::HashSet<&String> = ids.iter().collect();
        assert_eq!(distinct.len(), ids.len(), "every id is unique");
        for id in &ids {
            let rest = id
                .strip_prefix("connector-")
                .unwrap_or_else(|| panic!("prefix kept: {id}"));
            let (random, millis) = rest.split_once('-').unwrap_or_else(|| panic!("{id}"));
            assert_eq!(random.len(), 12, "{id}");
            assert!(random.chars().all(|c| c.is_ascii_hexdigit()), "{id}");
            assert!(millis.parse::<i64>().is_ok(), "{id}");
        }
    }
}

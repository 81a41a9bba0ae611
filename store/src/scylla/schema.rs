//! The CQL schema (`infra/cql/`), turned into the statements `fawkes schema` prints or
//! applies. Pure text work, so `fawkes schema print` needs no driver.

/// The schema files, in the order they are applied.
const SCHEMA_FILES: [(&str, &str); 5] = [
    (
        "001_keyspace.cql",
        include_str!("../../../infra/cql/001_keyspace.cql"),
    ),
    (
        "002_tables.cql",
        include_str!("../../../infra/cql/002_tables.cql"),
    ),
    (
        "003_campaign_pending.cql",
        include_str!("../../../infra/cql/003_campaign_pending.cql"),
    ),
    (
        "004_records.cql",
        include_str!("../../../infra/cql/004_records.cql"),
    ),
    (
        "005_history.cql",
        include_str!("../../../infra/cql/005_history.cql"),
    ),
];

/// The schema statements for `keyspace` with `replication`, in order.
pub fn schema_statements(keyspace: &str, replication: &str) -> Vec<String> {
    SCHEMA_FILES
        .iter()
        .flat_map(|(_, text)| {
            // Comments go first: one may contain a `;`.
            let without_comments: String = text
                .lines()
                .filter(|line| !line.trim_start().starts_with("--"))
                .collect::<Vec<_>>()
                .join("\n");
            without_comments
                .split(';')
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
                .collect::<Vec<_>>()
        })
        .map(|s| {
            s.replace("{keyspace}", keyspace)
                .replace("{replication}", replication)
        })
        .collect()
}

/// `statement` without its `AND tablets = {...}` clause (the keyspace's), for servers that do
/// not know tablets; `None` when it has none.
#[cfg(any(test, feature = "scylla"))]
pub(crate) fn without_tablets(statement: &str) -> Option<String> {
    let at = statement.find("AND tablets")?;
    Some(statement[..at].trim_end().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_live_as_long_as_the_store_promises() {
        let ttl = format!(
            "default_time_to_live = {}",
            crate::OUTCOME_RETENTION.as_secs()
        );
        let statements = schema_statements("fk", "{}");
        assert!(
            statements
                .iter()
                .any(|s| s.contains("fk.outcomes") && s.contains(&ttl)),
            "the outcomes table's TTL is OUTCOME_RETENTION"
        );
    }

    #[test]
    fn the_keyspace_turns_tablets_off_and_can_do_without_the_option() {
        let statements =
            schema_statements("fk", "{'class': 'SimpleStrategy', 'replication_factor': 1}");
        let keyspace = &statements[0];
        assert!(
            keyspace.contains("AND tablets = {'enabled': false}"),
            "{keyspace}"
        );
        let older = without_tablets(keyspace).expect("a clause to drop");
        assert!(older.ends_with("'replication_factor': 1}"), "{older}");
        assert_eq!(without_tablets(&statements[1]), None);
    }

    #[test]
    fn schema_statements_substitute_and_split() {
        let statements =
            schema_statements("fk", "{'class': 'SimpleStrategy', 'replication_factor': 1}");
        assert_eq!(statements.len(), 13, "{statements:#?}");
        assert!(statements[0].starts_with("CREATE KEYSPACE IF NOT EXISTS fk"));
        assert!(statements[0].contains("'replication_factor': 1"));
        for statement in &statements {
            // An added column is idempotent through `apply_schema`, which takes "already
            // exists" for done.
            let adds_column = statement.starts_with("ALTER TABLE") && statement.contains(" ADD ");
            assert!(
                statement.contains("IF NOT EXISTS") || adds_column,
                "idempotent: {statement}"
            );
            assert!(
                !statement.contains('{') || statement.contains("replication"),
                "substituted: {statement}"
            );
        }
    }
}

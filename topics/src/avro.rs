//! Avro encoding of log records, with schema evolution.
//!
//! Every record is written in Avro's single-object encoding: the marker `C3 01`, the 8-byte
//! CRC-64-AVRO (Rabin) fingerprint of the writer's schema, then the Avro datum. The schemas
//! live in `topics/schemas/` (one file per version) and are compiled in; a reader looks up the
//! writer schema by fingerprint and resolves it to the current version of the same record, so
//! records written with any previous version stay readable.

use std::collections::HashMap;
use std::sync::OnceLock;

use apache_avro::rabin::Rabin;
use apache_avro::Schema;
use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::Serialize;

const MARKER: [u8; 2] = [0xC3, 0x01];

/// Every schema version, as (record name, version, text). The last version of a name is the
/// one written today.
const SCHEMAS: &[(&str, u32, &str)] = &[
    ("Command", 1, include_str!("../schemas/command.v1.avsc")),
    ("Command", 2, include_str!("../schemas/command.v2.avsc")),
    ("Command", 3, include_str!("../schemas/command.v3.avsc")),
    ("Heartbeat", 1, include_str!("../schemas/heartbeat.v1.avsc")),
    ("Heartbeat", 2, include_str!("../schemas/heartbeat.v2.avsc")),
    ("Delivery", 1, include_str!("../schemas/delivery.v1.avsc")),
    ("Broadcast", 1, include_str!("../schemas/broadcast.v1.avsc")),
    ("Broadcast", 2, include_str!("../schemas/broadcast.v2.avsc")),
    (
        "DonationCreated",
        1,
        include_str!("../schemas/donation_created.v1.avsc"),
    ),
    (
        "DonationCreated",
        2,
        include_str!("../schemas/donation_created.v2.avsc"),
    ),
    (
        "GoalUpdated",
        1,
        include_str!("../schemas/goal_updated.v1.avsc"),
    ),
    (
        "MilestoneReached",
        1,
        include_str!("../schemas/milestone_reached.v1.avsc"),
    ),
    (
        "CampaignCreated",
        1,
        include_str!("../schemas/campaign_created.v1.avsc"),
    ),
    (
        "DonationModerated",
        1,
        include_str!("../schemas/donation_moderated.v1.avsc"),
    ),
    (
        "LongPollRelay",
        1,
        include_str!("../schemas/longpoll_relay.v1.avsc"),
    ),
];

/// A record could not be encoded or decoded.
#[derive(Debug, thiserror::Error)]
pub enum AvroError {
    /// The bytes do not start with the single-object marker.
    #[error("the record is not Avro single-object encoded")]
    NotAvro,
    /// The writer schema's fingerprint is not one of ours.
    #[error("the record was written with an unknown schema (fingerprint {0:016x})")]
    UnknownSchema(u64),
    /// The record was written as another type.
    #[error("expected a {expected} record, found {found}")]
    WrongRecord {
        /// The record asked for.
        expected: &'static str,
        /// The record found.
        found: &'static str,
    },
    /// Avro encoding, decoding or schema resolution failed.
    #[error("avro: {0}")]
    Avro(String),
}

fn avro(e: impl std::fmt::Display) -> AvroError {
    AvroError::Avro(e.to_string())
}

struct Known {
    name: &'static str,
    schema: Schema,
}

struct Registry {
    by_fingerprint: HashMap<u64, Known>,
    /// Current (newest) schema and its fingerprint, by record name.
    current: HashMap<&'static str, (Schema, u64)>,
}

fn fingerprint(schema: &Schema) -> u64 {
    let bytes = schema.fingerprint::<Rabin>().bytes;
    let mut array = [0u8; 8];
    for (slot, byte) in array.iter_mut().zip(bytes) {
        *slot = byte;
    }
    u64::from_le_bytes(array)
}

fn registry() -> &'static Registry {
    static REGISTRY: OnceLock<Registry> = OnceLock::new();
    REGISTRY.get_or_init(|| {
        let mut by_fingerprint = HashMap::new();
        let mut current = HashMap::new();
        for (name, _version, text) in SCHEMAS {
            // The schemas are compiled in and parsed by a unit test, so this cannot fail at
            // run time without failing the build's tests first.
            let Ok(schema) = Schema::parse_str(text) else {
                unreachable!("schema {name} does not parse")
            };
            let fp = fingerprint(&schema);
            current.insert(*name, (schema.clone(), fp));
            by_fingerprint.insert(fp, Known { name, schema });
        }
        Registry {
            by_fingerprint,
            current,
        }
    })
}

/// Encodes `value` as the current version of record `name`.
pub fn encode<T: Serialize>(name: &'static str, value: &T) -> Result<Bytes, AvroError> {
    let (schema, fp) = registry()
        .current
        .get(name)
        .ok_or(AvroError::UnknownSchema(0))?;
    encode_with(schema, *fp, value)
}

fn encode_with<T: Serialize>(schema: &Schema, fp: u64, value: &T) -> Result<Bytes, AvroError> {
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(&MARKER);
    out.extend_from_slice(&fp.to_le_bytes());
    // Straight from serde into the schema's binary form: no intermediate `Value` tree, which
    // cost most of the encoding's allocations on the hot path (every command, delivery,
    // broadcast and domain event).
    apache_avro::write_avro_datum_ref(schema, value, &mut out).map_err(avro)?;
    Ok(Bytes::from(out))
}

/// The writer schema of an encoded record, and the datum after the header.
fn writer_of(bytes: &[u8]) -> Result<(&'static Known, &[u8]), AvroError> {
    let header = bytes.get(..10).ok_or(AvroError::NotAvro)?;
    if header[..2] != MARKER {
        return Err(AvroError::NotAvro);
    }
    let mut fp = [0u8; 8];
    fp.copy_from_slice(&header[2..10]);
    let fp = u64::from_le_bytes(fp);
    let writer = registry()
        .by_fingerprint
        .get(&fp)
        .ok_or(AvroError::UnknownSchema(fp))?;
    Ok((writer, &bytes[10..]))
}

/// The writer schema fingerprint in an encoded record's header (checked by [`writer_of`]).
fn fingerprint_of(bytes: &[u8]) -> u64 {
    let mut fp = [0u8; 8];
    if let Some(header) = bytes.get(2..10) {
        fp.copy_from_slice(header);
    }
    u64::from_le_bytes(fp)
}

/// The record name an encoded record was written as.
pub fn record_name(bytes: &[u8]) -> Result<&'static str, AvroError> {
    writer_of(bytes).map(|(known, _)| known.name)
}

/// Decodes a record `name` written with any known version of its schema.
pub fn decode<T: DeserializeOwned>(name: &'static str, bytes: &[u8]) -> Result<T, AvroError> {
    let (writer, mut datum) = writer_of(bytes)?;
    let registry = registry();
    if writer.name != name {
        return Err(AvroError::WrongRecord {
            expected: name,
            found: writer.name,
        });
    }
    let (reader, reader_fp) = registry
        .current
        .get(name)
        .ok_or(AvroError::UnknownSchema(0))?;
    // Resolution walks the whole value again: only records written with an older version
    // need it.
    let resolve = (*reader_fp != fingerprint_of(bytes)).then_some(reader);
    let value = apache_avro::from_avro_datum(&writer.schema, &mut datum, resolve).map_err(avro)?;
    apache_avro::from_value(&value).map_err(avro)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    /// Records written straight from serde are the bytes the `Value` path (how they were
    /// written before) makes of the same data, so old and new writers agree on the log.
    #[test]
    fn records_are_encoded_byte_for_byte_as_before() {
        let command = crate::Command {
            id: "c".into(),
            topic: "donations:campaign:1".into(),
            socket: crate::SocketRef {
                connector_id: "a".into(),
                socket_id: 7,
                join_id: Some("1".into()),
                msg_ref: None,
            },
            claims: crate::Claims {
                user_id: Some("4".into()),
                roles: vec!["admin".into()],
                name: None,
            },
            kind: crate::CommandKind::Event {
                event: "new_donation".into(),
                payload: serde_json::json!({"amount": "1.00"}),
            },
            received_at: "2026-01-01T00:00:00Z".into(),
        };
        let delivery = crate::Delivery {
            socket: command.socket.clone(),
            topic: command.topic.clone(),
            reply: Some(crate::ReplyBody {
                status: crate::ReplyStatus::Ok,
                response: serde_json::json!({"donation_id": "c"}),
            }),
            pushes: vec![crate::Push {
                event: "campaign_state".into(),
                payload: serde_json::json!({}),
            }],
        };
        for (name, bytes) in [
            ("Command", command.encode().expect("encodes")),
            ("Delivery", delivery.encode().expect("encodes")),
        ] {
            let (writer, datum) = writer_of(&bytes).expect("header");
            let value = apache_avro::from_avro_datum(&writer.schema, &mut &datum[..], None)
                .expect("decodes");
            let again = apache_avro::to_avro_datum(&writer.schema, value).expect("re-encodes");
            assert_eq!(datum, &again[..], "{name}");
        }
    }

    #[test]
    fn every_schema_parses() {
        for (name, version, text) in SCHEMAS {
            assert!(Schema::parse_str(text).is_ok(), "{name} v{version}");
        }
        assert_eq!(registry().by_fingerprint.len(), SCHEMAS.len());
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct DonationV1 {
        command_id: String,
        donation_id: String,
        campaign_id: String,
        amount: String,
        currency: String,
        new_total: String,
        inserted_at: String,
    }

    #[derive(Debug, PartialEq, Deserialize)]
    struct DonationV2 {
        donation_id: String,
        amount: String,
        user_id: Option<String>,
    }

    #[test]
    fn records_written_with_the_previous_version_stay_readable() {
        let v1_text = SCHEMAS
            .iter()
            .find(|(n, v, _)| *n == "DonationCreated" && *v == 1)
            .map(|(_, _, t)| *t)
            .expect("v1 schema");
        let v1 = Schema::parse_str(v1_text).expect("parses");
        let old = DonationV1 {
            command_id: "c".into(),
            donation_id: "d".into(),
            campaign_id: "1".into(),
            amount: "10.00".into(),
            currency: "USD".into(),
            new_total: "10.00".into(),
            inserted_at: "2026-01-01T00:00:00Z".into(),
        };
        let bytes = encode_with(&v1, fingerprint(&v1), &old).expect("encodes with v1");
        let read: DonationV2 = decode("DonationCreated", &bytes).expect("v2 reads v1");
        assert_eq!(read.donation_id, "d");
        assert_eq!(read.amount, "10.00");
        assert_eq!(
            read.user_id, None,
            "the field added in v2 takes its default"
        );
    }

    /// A command's socket as connectors wrote it in version 1.
    #[derive(Serialize)]
    struct SocketV1 {
        connector_id: String,
        socket_id: i64,
        join_ref: Option<String>,
        msg_ref: Option<String>,
    }

    /// A command as connectors wrote it before `presence_known` and `EXPIRE` existed.
    #[derive(Serialize)]
    struct CommandV1 {
        id: String,
        topic: String,
        socket: SocketV1,
        claims: crate::envelope::Claims,
        kind: crate::envelope::WireKind,
        event: Option<String>,
        payload_json: String,
        received_at: String,
    }

    #[test]
    fn commands_from_connectors_of_the_previous_version_stay_readable() {
        let v1_text = SCHEMAS
            .iter()
            .find(|(n, v, _)| *n == "Command" && *v == 1)
            .map(|(_, _, t)| *t)
            .expect("v1 schema");
        let v1 = Schema::parse_str(v1_text).expect("parses");
        let old = CommandV1 {
            id: "c".into(),
            topic: "donations:campaign:1".into(),
            socket: SocketV1 {
                connector_id: "a".into(),
                socket_id: 1,
                join_ref: Some("1".into()),
                msg_ref: Some("2".into()),
            },
            claims: crate::envelope::Claims::default(),
            kind: crate::envelope::WireKind::Join,
            event: None,
            payload_json: "{}".into(),
            received_at: "2026-01-01T00:00:00Z".into(),
        };
        let bytes = encode_with(&v1, fingerprint(&v1), &old).expect("encodes with v1");
        let read = crate::Command::decode(&bytes).expect("the v2 reader reads v1");
        assert_eq!(
            read.kind,
            crate::CommandKind::Join {
                params: serde_json::json!({}),
                presence_known: false
            },
            "the field added in v2 takes its default"
        );
    }

    #[test]
    fn refuses_foreign_bytes() {
        assert!(matches!(
            decode::<DonationV2>("DonationCreated", b"{}"),
            Err(AvroError::NotAvro)
        ));
        let mut bytes = vec![0xC3, 0x01];
        bytes.extend_from_slice(&[1; 8]);
        assert!(matches!(
            decode::<DonationV2>("DonationCreated", &bytes),
            Err(AvroError::UnknownSchema(_))
        ));
    }
}

//! The pure parts of the store's operations: what a row read back means, which
//! compare-and-set a campaign write is, and where a donation goes. Tested without a server.

use scylla::value::{CqlValue, Row};

use super::driver::corrupt;
use crate::{Campaign, StoreError, Write};

/// Donations per partition of `donations_by_campaign`.
pub(super) const BUCKET_SIZE: u64 = 10_000;

/// The partition (bucket) of a campaign's `seq`-th donation.
///
/// The newest donations are in the bucket of the campaign's `donation_count`; reads walk
/// down from there, so no partition grows without bound.
pub(super) fn bucket_of(seq: u64) -> u64 {
    seq / BUCKET_SIZE
}

/// Whether a lightweight transaction was applied: its first column, `[applied]`.
///
/// `false` means its condition did not hold (the row existed, or had another version):
/// another writer got there first. Callers retry on fresh state (sequences) or report a
/// conflict (campaigns). No row at all is not applied either.
pub(super) fn applied(row: Option<&Row>) -> bool {
    matches!(
        row.and_then(|r| r.columns.first()),
        Some(Some(CqlValue::Boolean(true)))
    )
}

/// Column `index` of `row` as text, if it is text.
pub(super) fn text(row: &Row, index: usize) -> Option<String> {
    match row.columns.get(index) {
        Some(Some(CqlValue::Text(s))) | Some(Some(CqlValue::Ascii(s))) => Some(s.clone()),
        _ => None,
    }
}

/// Column `index` of `row` as a `bigint`, if it is one.
pub(super) fn bigint(row: &Row, index: usize) -> Option<i64> {
    match row.columns.get(index) {
        Some(Some(CqlValue::BigInt(v))) => Some(*v),
        _ => None,
    }
}

/// The state of a command's key (`processed_commands`), read in step 1 of `apply`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum KeyState {
    /// Step 4 completed: the command was applied; answer with the stored outcome.
    Done,
    /// Step 2 happened and maybe step 3: finish the stored writes if the campaign row
    /// records the command, else start over.
    Pending,
    /// No known state: the command was not applied; start at step 2.
    Unknown,
}

/// The state recorded in a key row (`state, writes, outcome`).
pub(super) fn key_state(row: &Row) -> KeyState {
    match text(row, 0).as_deref() {
        Some("done") => KeyState::Done,
        Some("pending") => KeyState::Pending,
        _ => KeyState::Unknown,
    }
}

/// The campaign a command writes; Scylla commands write at most one.
///
/// One, because recovery after a crash (step 1) reads one campaign row to learn whether
/// step 3 happened; with two, a crash between their compare-and-sets would leave no way to
/// tell or to finish without deciding again.
pub(super) fn campaign_write(writes: &[Write]) -> Result<Option<&Campaign>, StoreError> {
    let mut campaigns = writes.iter().filter_map(|w| match w {
        Write::PutCampaign(c) => Some(c),
        _ => None,
    });
    let first = campaigns.next();
    if campaigns.next().is_some() {
        return Err(StoreError::Corrupt(
            "a command may write at most one campaign on Scylla".into(),
        ));
    }
    Ok(first)
}

/// The sequence number of a command's donation: the campaign's `donation_count` as the
/// same command writes it (0 when it writes no campaign).
pub(super) fn donation_seq(writes: &[Write]) -> u64 {
    writes
        .iter()
        .find_map(|w| match w {
            Write::PutCampaign(c) => Some(c.donation_count),
            _ => None,
        })
        .unwrap_or_default()
}

/// Which compare-and-set step 3 runs for a campaign read at `version`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum CampaignCas {
    /// Version 0 is a new campaign: insert it, if it does not exist yet (stored version 1).
    Create,
    /// Replace it if its version is still `expected`, storing `next`.
    Update {
        /// The version the decision read.
        expected: i64,
        /// The version stored on success.
        next: i64,
    },
}

/// The compare-and-set for a campaign write based on `version`.
pub(super) fn campaign_cas(version: u64) -> Result<CampaignCas, StoreError> {
    if version == 0 {
        return Ok(CampaignCas::Create);
    }
    let expected = i64::try_from(version).map_err(corrupt)?;
    Ok(CampaignCas::Update {
        expected,
        next: expected + 1,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conformance::sample_campaign;

    #[test]
    fn lwt_results_and_rows_map() {
        let yes = Row {
            columns: vec![Some(CqlValue::Boolean(true))],
        };
        let no = Row {
            columns: vec![Some(CqlValue::Boolean(false)), Some(CqlValue::BigInt(4))],
        };
        assert!(applied(Some(&yes)));
        assert!(!applied(Some(&no)));
        assert!(!applied(None));
        assert_eq!(bigint(&no, 1), Some(4));
        let row = Row {
            columns: vec![Some(CqlValue::Text("done".into())), None],
        };
        assert_eq!(text(&row, 0).as_deref(), Some("done"));
        assert_eq!(text(&row, 1), None);
    }

    #[test]
    fn one_campaign_per_command() {
        let one = [Write::PutCampaign(sample_campaign("1"))];
        assert!(campaign_write(&one).expect("ok").is_some());
        let two = [
            Write::PutCampaign(sample_campaign("1")),
            Write::PutCampaign(sample_campaign("2")),
        ];
        assert!(campaign_write(&two).is_err());
    }

    #[test]
    fn key_states() {
        let row = |state: Option<&str>| Row {
            columns: vec![state.map(|s| CqlValue::Text(s.into())), None, None],
        };
        assert_eq!(key_state(&row(Some("done"))), KeyState::Done);
        assert_eq!(key_state(&row(Some("pending"))), KeyState::Pending);
        assert_eq!(key_state(&row(Some("other"))), KeyState::Unknown);
        assert_eq!(key_state(&row(None)), KeyState::Unknown);
    }

    #[test]
    fn campaign_writes_are_created_then_updated_on_their_version() {
        assert_eq!(campaign_cas(0).expect("ok"), CampaignCas::Create);
        assert_eq!(
            campaign_cas(3).expect("ok"),
            CampaignCas::Update {
                expected: 3,
                next: 4
            }
        );
        assert!(campaign_cas(u64::MAX).is_err());
    }

    #[test]
    fn donations_go_to_the_bucket_of_their_sequence_number() {
        let mut campaign = sample_campaign("1");
        campaign.donation_count = BUCKET_SIZE + 1;
        let writes = [Write::PutCampaign(campaign)];
        assert_eq!(donation_seq(&writes), BUCKET_SIZE + 1);
        assert_eq!(bucket_of(donation_seq(&writes)), 1);
        assert_eq!(donation_seq(&[]), 0);
        assert_eq!(bucket_of(BUCKET_SIZE - 1), 0);
    }
}

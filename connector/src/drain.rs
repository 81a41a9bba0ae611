//! Graceful shutdown: which socket closes when, and the task that closes them.
//!
//! A connector that closed every socket at once would send all its clients to reconnect in the
//! same millisecond, most likely to the same other pod. So the drain closes them in batches
//! spread over the drain window: [`spread`] is that plan, a pure function of the socket count
//! and the window (no clock), and [`close_in_batches`] the thin shell that follows it.

use std::ops::Range;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::registry::Sessions;

/// Batches are at least this far apart: closer batches would be one burst of reconnects
/// anyway, and a timer per socket for thousands of sockets buys nothing.
pub(crate) const MIN_BATCH_GAP: Duration = Duration::from_millis(100);

/// Sockets closed together at one moment of the drain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Batch {
    /// When, counted from the start of the drain.
    pub(crate) at: Duration,
    /// Which sockets, as positions in the list the plan was made for.
    pub(crate) sockets: Range<usize>,
}

/// Plans closing `count` sockets over `window`: as many batches as fit `min_gap` apart (at
/// most one per socket), the first at once and the last at the end of the window, evenly
/// spaced, their sizes differing by at most one. Every socket is in exactly one batch, in
/// order.
pub(crate) fn spread(count: usize, window: Duration, min_gap: Duration) -> Vec<Batch> {
    if count == 0 {
        return Vec::new();
    }
    // A zero gap counts as a nanosecond, so batches never share a moment.
    let gaps = window.as_nanos() / min_gap.as_nanos().max(1);
    let fit = usize::try_from(gaps)
        .unwrap_or(usize::MAX)
        .saturating_add(1);
    let batches = fit.min(count);
    (0..batches)
        .map(|j| Batch {
            at: offset(window, j, batches),
            sockets: share(count, j, batches)..share(count, j + 1, batches),
        })
        .collect()
}

/// The moment of batch `j` of `batches`: `window · j / (batches − 1)`, the first at zero.
fn offset(window: Duration, j: usize, batches: usize) -> Duration {
    if batches < 2 {
        return Duration::ZERO;
    }
    let nanos = window.as_nanos() * j as u128 / (batches - 1) as u128;
    Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
}

/// Where batch `j` of `batches` starts in a list of `count`: `count · j / batches`.
fn share(count: usize, j: usize, batches: usize) -> usize {
    // count · j fits in u128 for any usize values; the quotient is at most count.
    usize::try_from(count as u128 * j as u128 / batches as u128).unwrap_or(count)
}

/// Closes the sessions open now in batches spread over `window` from `started`, oldest socket
/// first, by cancelling each one's turn; with the last batch, `last_call` closes every session
/// still open (one that registered after the plan was made). With fewer than two sockets there
/// is nothing to spread: the drain does not wait for the window.
pub(crate) async fn close_in_batches(
    sessions: &Sessions,
    started: Instant,
    window: Duration,
    last_call: &CancellationToken,
) {
    let turns = sessions.turns();
    let plan = spread(turns.len(), window, MIN_BATCH_GAP);
    tracing::info!(
        sockets = turns.len(),
        batches = plan.len(),
        window_ms = window.as_millis() as u64,
        "closing sockets in batches"
    );
    for batch in plan {
        tokio::time::sleep_until(started + batch.at).await;
        for turn in turns.get(batch.sockets).unwrap_or_default() {
            turn.cancel();
        }
    }
    last_call.cancel();
}

#[cfg(test)]
mod tests {
    use super::*;

    const GAP: Duration = MIN_BATCH_GAP;

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    /// Every socket in exactly one batch, in order, and the batches in time order.
    fn check_cover(plan: &[Batch], count: usize) {
        let mut next = 0;
        for pair in plan.windows(2) {
            assert!(pair[0].at < pair[1].at, "batches in time order: {plan:?}");
        }
        for batch in plan {
            assert_eq!(batch.sockets.start, next, "no socket skipped: {plan:?}");
            assert!(!batch.sockets.is_empty(), "no empty batch: {plan:?}");
            next = batch.sockets.end;
        }
        assert_eq!(next, count, "every socket planned: {plan:?}");
    }

    #[test]
    fn no_sockets_no_batches() {
        assert!(spread(0, secs(5.0), GAP).is_empty());
    }

    #[test]
    fn one_socket_closes_at_once() {
        assert_eq!(
            spread(1, secs(5.0), GAP),
            vec![Batch {
                at: Duration::ZERO,
                sockets: 0..1
            }]
        );
    }

    #[test]
    fn few_sockets_get_a_batch_each_from_start_to_end_of_the_window() {
        let plan = spread(3, secs(4.0), GAP);
        let at: Vec<Duration> = plan.iter().map(|b| b.at).collect();
        assert_eq!(at, vec![secs(0.0), secs(2.0), secs(4.0)]);
        check_cover(&plan, 3);
        assert!(plan.iter().all(|b| b.sockets.len() == 1));
    }

    #[test]
    fn many_sockets_fill_batches_the_gap_apart_evenly() {
        // 5 s at 100 ms: 51 batches, the last at 5 s; 10,000 sockets in batches of 196 or 197.
        let plan = spread(10_000, secs(5.0), GAP);
        assert_eq!(plan.len(), 51);
        check_cover(&plan, 10_000);
        assert_eq!(plan[0].at, Duration::ZERO);
        assert_eq!(plan[50].at, secs(5.0));
        for pair in plan.windows(2) {
            assert_eq!(pair[1].at - pair[0].at, GAP);
        }
        let sizes: Vec<usize> = plan.iter().map(|b| b.sockets.len()).collect();
        let (min, max) = (sizes.iter().min(), sizes.iter().max());
        assert_eq!((min, max), (Some(&196), Some(&197)), "{sizes:?}");
    }

    #[test]
    fn a_window_shorter_than_the_gap_closes_everything_at_once() {
        assert_eq!(
            spread(500, secs(0.05), GAP),
            vec![Batch {
                at: Duration::ZERO,
                sockets: 0..500
            }]
        );
        assert_eq!(spread(7, Duration::ZERO, GAP).len(), 1);
        assert_eq!(spread(7, Duration::ZERO, Duration::ZERO).len(), 1);
    }

    #[test]
    fn a_zero_gap_gives_every_socket_its_own_moment() {
        let plan = spread(5, secs(1.0), Duration::ZERO);
        let at: Vec<Duration> = plan.iter().map(|b| b.at).collect();
        assert_eq!(
            at,
            vec![secs(0.0), secs(0.25), secs(0.5), secs(0.75), secs(1.0)]
        );
        check_cover(&plan, 5);
    }

    #[test]
    fn any_count_and_window_is_covered_within_the_window() {
        for count in [1, 2, 3, 7, 10, 99, 100, 101, 1_000, 12_345] {
            for window_ms in [0, 1, 99, 100, 250, 1_000, 5_000, 30_000] {
                let window = Duration::from_millis(window_ms);
                let plan = spread(count, window, GAP);
                check_cover(&plan, count);
                assert!(plan.iter().all(|b| b.at <= window), "{count} {window_ms}");
                for pair in plan.windows(2) {
                    assert!(pair[1].at - pair[0].at >= GAP, "{count} {window_ms}");
                }
                let sizes: Vec<usize> = plan.iter().map(|b| b.sockets.len()).collect();
                let uneven = sizes.iter().max().unwrap_or(&0) - sizes.iter().min().unwrap_or(&0);
                assert!(
                    uneven <= 1,
                    "even sizes for {count} over {window_ms} ms: {sizes:?}"
                );
            }
        }
    }
}

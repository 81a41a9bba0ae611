//! The circuit breaker around the price feed, as a pure state machine: no clock and no IO.
//! The caller passes the current [`Instant`] to every step, so every transition is tested
//! without waiting and without a feed.
//!
//! - **Closed**: calls go through; `failure_threshold` failures in a row open it.
//! - **Open**: calls are refused without reaching the feed until `cool_down` has passed since
//!   it opened, so a failing feed costs the commands nothing but a refusal.
//! - **Half-open**: the first call after the cool-down is let through as the one probe; the
//!   others are refused while it is out. Its success closes the breaker, its failure opens
//!   it for another cool-down.
//!
//! A result is only taken into account by the state that let its call through: a call let
//! through while closed that fails after the breaker opened (it was slower than the ones that
//! opened it) does not restart the cool-down, and only the probe decides a half-open breaker.

use std::time::{Duration, Instant};

/// The breaker's state, as the metrics show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BreakerState {
    /// Calls go through.
    Closed,
    /// Calls are refused until the cool-down ends.
    Open,
    /// One probe is out (or may go out); other calls are refused.
    HalfOpen,
}

impl BreakerState {
    /// Every state, for the metrics (each state's gauge is 1 while the breaker is in it).
    pub(crate) const ALL: [BreakerState; 3] = [
        BreakerState::Closed,
        BreakerState::Open,
        BreakerState::HalfOpen,
    ];

    /// The state's metric label.
    pub(crate) fn label(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half_open",
        }
    }
}

/// Leave to make one call, returned by [`Breaker::admit`] and handed back with its result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Permit {
    /// An ordinary call through a closed breaker.
    Call,
    /// The one call that decides whether a half-open breaker closes.
    Probe,
}

/// Why a call was refused without reaching the feed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Rejected {
    /// How long until a call may be let through as a probe (zero when only a probe still out
    /// holds it back).
    pub(crate) retry_after: Duration,
}

/// What the breaker remembers in each state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// `failures`: failures in a row so far.
    Closed { failures: u32 },
    /// `until`: end of the cool-down.
    Open { until: Instant },
    /// `probe_sent`: when the probe left. A probe whose result never comes back (its command
    /// was abandoned at shutdown or on a revoke) would hold the breaker half-open forever, so
    /// after one more cool-down another probe is let through.
    HalfOpen { probe_sent: Instant },
}

/// The circuit breaker. See the module documentation for its rules.
#[derive(Debug, Clone)]
pub(crate) struct Breaker {
    failure_threshold: u32,
    cool_down: Duration,
    phase: Phase,
}

impl Breaker {
    /// A closed breaker that opens after `failure_threshold` failures in a row (at least 1)
    /// and stays open for `cool_down`.
    pub(crate) fn new(failure_threshold: u32, cool_down: Duration) -> Self {
        Self {
            failure_threshold: failure_threshold.max(1),
            cool_down,
            phase: Phase::Closed { failures: 0 },
        }
    }

    /// The state, as of the last step.
    pub(crate) fn state(&self) -> BreakerState {
        match self.phase {
            Phase::Closed { .. } => BreakerState::Closed,
            Phase::Open { .. } => BreakerState::Open,
            Phase::HalfOpen { .. } => BreakerState::HalfOpen,
        }
    }

    /// Whether a call may go out at `now`; a call let through must report its result with
    /// [`Breaker::succeeded`] or [`Breaker::failed`].
    pub(crate) fn admit(&mut self, now: Instant) -> Result<Permit, Rejected> {
        let probe_at = match self.phase {
            Phase::Closed { .. } => return Ok(Permit::Call),
            Phase::Open { until } => until,
            Phase::HalfOpen { probe_sent } => probe_sent + self.cool_down,
        };
        if now < probe_at {
            return Err(Rejected {
                retry_after: probe_at - now,
            });
        }
        self.phase = Phase::HalfOpen { probe_sent: now };
        Ok(Permit::Probe)
    }

    /// The call `permit` let through succeeded.
    pub(crate) fn succeeded(&mut self, permit: Permit) {
        match (self.phase, permit) {
            (Phase::Closed { .. }, Permit::Call) | (Phase::HalfOpen { .. }, Permit::Probe) => {
                self.phase = Phase::Closed { failures: 0 };
            }
            // A late result of a call let through by an earlier state: the current state's own
            // calls decide it.
            _ => {}
        }
    }

    /// The call `permit` let through failed at `now`.
    pub(crate) fn failed(&mut self, permit: Permit, now: Instant) {
        match (self.phase, permit) {
            (Phase::Closed { failures }, Permit::Call) => {
                let failures = failures.saturating_add(1);
                self.phase = if failures >= self.failure_threshold {
                    Phase::Open {
                        until: now + self.cool_down,
                    }
                } else {
                    Phase::Closed { failures }
                };
            }
            (Phase::HalfOpen { .. }, Permit::Probe) => {
                self.phase = Phase::Open {
                    until: now + self.cool_down,
                };
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const COOL_DOWN: Duration = Duration::from_secs(30);

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    /// A breaker that opens after 3 failures, and the instant the test starts at.
    fn breaker() -> (Breaker, Instant) {
        (Breaker::new(3, COOL_DOWN), Instant::now())
    }

    /// Fails `n` calls at `at`.
    fn fail(b: &mut Breaker, n: u32, at: Instant) {
        for _ in 0..n {
            let permit = b.admit(at).expect("let through");
            b.failed(permit, at);
        }
    }

    #[test]
    fn opens_after_the_threshold_of_failures_in_a_row() {
        let (mut b, t0) = breaker();
        fail(&mut b, 2, t0);
        assert_eq!(
            b.state(),
            BreakerState::Closed,
            "two failures: still closed"
        );
        fail(&mut b, 1, t0);
        assert_eq!(b.state(), BreakerState::Open, "the third opens it");
    }

    #[test]
    fn a_success_resets_the_count_of_failures() {
        let (mut b, t0) = breaker();
        fail(&mut b, 2, t0);
        let permit = b.admit(t0).expect("closed");
        assert_eq!(permit, Permit::Call);
        b.succeeded(permit);
        fail(&mut b, 2, t0);
        assert_eq!(
            b.state(),
            BreakerState::Closed,
            "not three failures in a row"
        );
        fail(&mut b, 1, t0);
        assert_eq!(b.state(), BreakerState::Open);
    }

    #[test]
    fn open_refuses_without_calling_until_the_cool_down_ends() {
        let (mut b, t0) = breaker();
        fail(&mut b, 3, t0);
        assert_eq!(
            b.admit(t0 + secs(1)),
            Err(Rejected {
                retry_after: secs(29)
            })
        );
        assert_eq!(
            b.admit(t0 + secs(29)),
            Err(Rejected {
                retry_after: secs(1)
            })
        );
        assert_eq!(b.state(), BreakerState::Open, "refusing changes nothing");
    }

    #[test]
    fn after_the_cool_down_one_probe_goes_through_and_the_others_wait() {
        let (mut b, t0) = breaker();
        fail(&mut b, 3, t0);
        let probe_at = t0 + COOL_DOWN;
        assert_eq!(b.admit(probe_at), Ok(Permit::Probe));
        assert_eq!(b.state(), BreakerState::HalfOpen);
        assert!(
            b.admit(probe_at).is_err(),
            "a second call while the probe is out is refused"
        );
        assert!(b.admit(probe_at + secs(5)).is_err());
    }

    #[test]
    fn a_successful_probe_closes_the_breaker() {
        let (mut b, t0) = breaker();
        fail(&mut b, 3, t0);
        let probe = b.admit(t0 + COOL_DOWN).expect("probe");
        b.succeeded(probe);
        assert_eq!(b.state(), BreakerState::Closed);
        assert_eq!(b.admit(t0 + COOL_DOWN + secs(1)), Ok(Permit::Call));
        fail(&mut b, 2, t0 + COOL_DOWN + secs(2));
        assert_eq!(
            b.state(),
            BreakerState::Closed,
            "closing starts the count of failures afresh"
        );
    }

    #[test]
    fn a_failed_probe_opens_it_for_another_cool_down() {
        let (mut b, t0) = breaker();
        fail(&mut b, 3, t0);
        let probe_at = t0 + COOL_DOWN;
        let probe = b.admit(probe_at).expect("probe");
        b.failed(probe, probe_at + secs(2));
        assert_eq!(b.state(), BreakerState::Open);
        assert_eq!(
            b.admit(probe_at + secs(2) + COOL_DOWN - secs(1)),
            Err(Rejected {
                retry_after: secs(1)
            }),
            "the new cool-down counts from the probe's failure"
        );
        assert_eq!(b.admit(probe_at + secs(2) + COOL_DOWN), Ok(Permit::Probe));
    }

    #[test]
    fn a_probe_that_never_answers_is_replaced_after_a_cool_down() {
        let (mut b, t0) = breaker();
        fail(&mut b, 3, t0);
        let first = t0 + COOL_DOWN;
        assert_eq!(b.admit(first), Ok(Permit::Probe));
        assert!(b.admit(first + COOL_DOWN - secs(1)).is_err());
        assert_eq!(b.admit(first + COOL_DOWN), Ok(Permit::Probe));
    }

    #[test]
    fn late_results_of_calls_let_through_earlier_do_not_decide() {
        let (mut b, t0) = breaker();
        // Four calls go out while closed; three fail and open the breaker.
        let permits: Vec<Permit> = (0..4).map(|_| b.admit(t0).expect("closed")).collect();
        for permit in &permits[..3] {
            b.failed(*permit, t0);
        }
        assert_eq!(b.state(), BreakerState::Open);
        // The fourth fails later: the cool-down is not pushed back.
        b.failed(permits[3], t0 + secs(10));
        assert_eq!(b.admit(t0 + COOL_DOWN), Ok(Permit::Probe));
        // A late success of a closed-era call does not close a half-open breaker: only the
        // probe decides.
        b.succeeded(Permit::Call);
        assert_eq!(b.state(), BreakerState::HalfOpen);
        b.failed(Permit::Call, t0 + COOL_DOWN);
        assert_eq!(b.state(), BreakerState::HalfOpen);
        // And a stale probe result does not disturb a closed breaker.
        b.succeeded(Permit::Probe);
        assert_eq!(b.state(), BreakerState::Closed);
        b.failed(Permit::Probe, t0 + COOL_DOWN);
        assert_eq!(b.state(), BreakerState::Closed);
    }

    #[test]
    fn a_threshold_of_zero_means_one() {
        let mut b = Breaker::new(0, COOL_DOWN);
        fail(&mut b, 1, Instant::now());
        assert_eq!(b.state(), BreakerState::Open);
    }
}
